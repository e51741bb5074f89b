/* The Prometheus files of packaging/prometheus/: the alert rules are valid and each fires on
 * the series that should raise it, not before its time nor on the healthy series beside it
 * (coral-rules.test.yml, run by promtool test rules); the example scrape config parses. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#define DIR CORAL_SRCDIR "/packaging/prometheus"

/* promtool's words go to stderr: stdout is the TAP stream meson reads */
static int sh(const char *cmd)
{
	char full[512];
	snprintf(full, sizeof(full), "%s 1>&2", cmd);
	int st = system(full);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(prometheus, promtool_is_installed)
{
	cr_assert_eq(sh("command -v promtool >/dev/null"), 0,
		     "promtool is missing: scripts/install-deps.sh installs Debian's prometheus");
}

Test(prometheus, the_alert_rules_are_valid)
{
	cr_expect_eq(sh("promtool check rules " DIR "/coral-rules.yml"), 0);
}

Test(prometheus, each_alert_fires_when_it_should_and_not_before)
{
	cr_expect_eq(sh("promtool test rules " DIR "/coral-rules.test.yml"), 0);
}

Test(prometheus, the_example_scrape_config_parses)
{
	cr_expect_eq(sh("promtool check config --syntax-only " DIR "/prometheus.yml"), 0);
}

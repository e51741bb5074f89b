/* Log tests: the tag on every line and the per-call-site rate limit. */
#include "log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *capture_path(void)
{
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/coral-log-test-%d", (int)getpid());
	return path;
}

static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	if (f)
		fclose(f);
	return n;
}

Test(log, tag_level_and_rate_limit)
{
	const char *path = capture_path();
	cr_assert_not_null(freopen(path, "w", stderr));
	struct coral_log_opts o = {.program = "lmsd", .node_id = 3, .level = CORAL_LOG_INFO,
				   .to_stderr = true, .burst = 5, .interval_ms = 200};
	coral_log_init(&o);
	for (int i = 0; i < 100; i++)
		log_warn("peer sent garbage %d", i);
	log_debug("not shown at info");
	log_info("another call site");
	usleep(250000);
	log_warn("peer sent garbage %d", 100); /* new window: prints the summary, then itself */
	fflush(stderr);
	cr_expect_eq(count_lines(path, "lmsd/node3["), 8, "5 + summary + other site + 1");
	cr_expect_eq(count_lines(path, "peer sent garbage"), 6);
	cr_expect_eq(count_lines(path, "repeated 95 more times"), 1);
	cr_expect_eq(count_lines(path, "not shown"), 0);
	cr_expect_eq(coral_log_suppressed(), 95);
	unlink(path);
}

/* coralctl's table of commands: the completion file shipped in packaging/ is the one
 * coralctl makes from the table, its usage lists every command, and argument counts are
 * checked before anything runs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *run(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t cap = 1 << 16, n = 0;
	char *out = calloc(1, cap);
	size_t k;
	while ((k = fread(out + n, 1, cap - n - 1, p)) > 0)
		n += k;
	*status = pclose(p);
	return out;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	char *buf = calloc(1, 1 << 16);
	fread(buf, 1, (1 << 16) - 1, f);
	fclose(f);
	return buf;
}

Test(coralctl, completion_file_is_made_from_the_table)
{
	int st;
	char *made = run(CORALCTL " completion bash", &st);
	cr_assert_eq(st, 0);
	char *shipped = slurp(CORAL_SRCDIR "/packaging/bash-completion/coralctl");
	cr_expect_str_eq(made, shipped, "packaging/bash-completion/coralctl is stale: "
			 "run coralctl completion bash > packaging/bash-completion/coralctl");
	cr_expect_not_null(strstr(made, "\"status history transfer-leader\""));
	free(made);
	free(shipped);
}

Test(coralctl, usage_lists_commands_and_counts_are_checked)
{
	int st;
	char *u = run(CORALCTL " --help", &st);
	cr_assert_eq(st, 0);
	cr_expect_not_null(strstr(u, "cluster add-node ID HOST:PORT"));
	cr_expect_not_null(strstr(u, "gcs block FILE BLOCK"));
	free(u);
	/* too few arguments: the command's usage, exit 2, before any configuration is read */
	char *e = run(CORALCTL " -c /nonexistent kv put onlykey 2>&1", &st);
	cr_expect_eq(WEXITSTATUS(st), 2);
	cr_expect_not_null(strstr(e, "usage: coralctl kv put KEY VALUE"), "%s", e);
	free(e);
	e = run(CORALCTL " -c /nonexistent grd frob 2>&1", &st);
	cr_expect_eq(WEXITSTATUS(st), 2);
	cr_expect_not_null(strstr(e, "unknown verb: frob"), "%s", e);
	free(e);
}

/* The resource manager's core (daemons/rsrcmgrd/rsrc.c): a session mapped by its attributes,
 * the rule's priority and its window of the week; plans validated with every problem named
 * (a group that can never run is an error, not a hang); the CPU shares of the emphasis
 * method, with sub-plans, as cgroup weights; token buckets. */
#include "rsrc.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct rsrc_rule rules[] = {
	{RSRC_USER, "batch_*", "BATCH", 10, 0, 0, 0},
	{RSRC_PROGRAM, "report", "REPORTS", 5, 0, 0, 0},
	{RSRC_USER, "batch_etl", "ETL", 1, 0, 0, 0},
	/* nightly, Monday to Friday, 22:00 to 06:00 */
	{RSRC_MODULE, "nightly", "MAINTENANCE", 2, 0x3e, 22 * 60, 6 * 60},
};

Test(rsrc, a_session_goes_by_the_rule_of_lowest_priority_that_matches_now)
{
	struct rsrc_session_attrs s = {{[RSRC_USER] = "batch_load", [RSRC_PROGRAM] = "sqlplus"}};
	cr_expect_eq(rsrc_map(rules, 4, &s, 1, 600), 0);
	s.v[RSRC_PROGRAM] = "report";
	cr_expect_eq(rsrc_map(rules, 4, &s, 1, 600), 1, "priority 5 beats 10");
	s.v[RSRC_USER] = "batch_etl";
	cr_expect_eq(rsrc_map(rules, 4, &s, 1, 600), 2, "priority 1 beats both");
	struct rsrc_session_attrs n = {{[RSRC_USER] = "alice", [RSRC_MODULE] = "nightly"}};
	cr_expect_eq(rsrc_map(rules, 4, &n, 2, 23 * 60), 3, "Tuesday 23:00");
	cr_expect_eq(rsrc_map(rules, 4, &n, 3, 5 * 60), 3, "Wednesday 05:00, past midnight");
	cr_expect_eq(rsrc_map(rules, 4, &n, 2, 12 * 60), -1, "Tuesday noon: OTHER");
	cr_expect_eq(rsrc_map(rules, 4, &n, 0, 23 * 60), -1, "Sunday: not in the window's days");
	struct rsrc_session_attrs none = {{0}};
	cr_expect_eq(rsrc_map(rules, 4, &none, 1, 0), -1);
}

static const char groups[][RSRC_NAME_MAX] = {"REPORTS", "ETL"};

static struct rsrc_plan plans[4];

static struct rsrc_directive dir(const char *g, int level, int share)
{
	struct rsrc_directive d = {.level = level, .share = share};
	snprintf(d.group, sizeof(d.group), "%s", g);
	return d;
}

static struct rsrc_catalog catalog(size_t nplans)
{
	return (struct rsrc_catalog){plans, nplans, groups, 2};
}

static void day_plan(void)
{
	memset(plans, 0, sizeof(plans));
	snprintf(plans[0].name, RSRC_NAME_MAX, "DAY");
	plans[0].d[0] = dir("SYS", 1, 50);
	plans[0].d[1] = dir("INTERACTIVE", 2, 60);
	plans[0].d[2] = dir("BATCH", 2, 20);
	plans[0].d[3] = dir("OTHER", 3, 100);
	plans[0].n = 4;
}

Test(rsrc, the_emphasis_method_divides_level_by_level)
{
	day_plan();
	struct rsrc_catalog c = catalog(1);
	char err[512];
	cr_assert_eq(rsrc_validate(&c, "DAY", err, sizeof(err)), 0, "%s", err);
	char g[8][RSRC_NAME_MAX];
	double f[8];
	int n = rsrc_cpu_shares(&c, "DAY", g, f, 8);
	cr_assert_eq(n, 4);
	/* SYS 50%; level 2 shares the other 50%: INTERACTIVE 30%, BATCH 10%; OTHER the 10% left */
	double want[4] = {0.5, 0.3, 0.1, 0.1}, sum = 0;
	for (int i = 0; i < n; i++) {
		cr_expect(fabs(f[i] - want[i]) < 1e-9, "%s: %f", g[i], f[i]);
		sum += f[i];
	}
	cr_expect(fabs(sum - 1) < 1e-9);
	cr_expect_eq(rsrc_weight_v2(0.5), 5000);
	cr_expect_eq(rsrc_weight_v2(0), 1);
	cr_expect_eq(rsrc_shares_v1(0.1), 10240);
}

Test(rsrc, what_the_last_level_leaves_goes_to_every_group_in_proportion)
{
	day_plan();
	plans[0].d[3] = dir("OTHER", 3, 50);
	struct rsrc_catalog c = catalog(1);
	char g[8][RSRC_NAME_MAX];
	double f[8];
	cr_assert_eq(rsrc_cpu_shares(&c, "DAY", g, f, 8), 4);
	/* 5% left: 0.5 + 0.3 + 0.1 + 0.05 = 0.95 had, each gets its part of 0.05 */
	cr_expect(fabs(f[0] - (0.5 + 0.05 * 0.5 / 0.95)) < 1e-9, "%f", f[0]);
	cr_expect(fabs(f[3] - (0.05 + 0.05 * 0.05 / 0.95)) < 1e-9, "%f", f[3]);
}

Test(rsrc, a_sub_plan_divides_its_share)
{
	day_plan();
	plans[0].d[2] = dir("NIGHT_BATCH", 2, 20);
	plans[0].d[2].subplan = true;
	snprintf(plans[1].name, RSRC_NAME_MAX, "NIGHT_BATCH");
	plans[1].d[0] = dir("ETL", 1, 75);
	plans[1].d[1] = dir("BATCH", 1, 25);
	plans[1].n = 2;
	struct rsrc_catalog c = catalog(2);
	char err[512];
	cr_assert_eq(rsrc_validate(&c, "DAY", err, sizeof(err)), 0, "%s", err);
	char g[8][RSRC_NAME_MAX];
	double f[8];
	int n = rsrc_cpu_shares(&c, "DAY", g, f, 8);
	cr_assert_eq(n, 5);
	for (int i = 0; i < n; i++) {
		if (strcmp(g[i], "ETL") == 0)
			cr_expect(fabs(f[i] - 0.075) < 1e-9, "ETL %f", f[i]);
		if (strcmp(g[i], "BATCH") == 0)
			cr_expect(fabs(f[i] - 0.025) < 1e-9, "BATCH %f", f[i]);
	}
}

/* every problem is named, each its own line */
static int problems(const char *plan, size_t nplans, const char *want)
{
	struct rsrc_catalog c = catalog(nplans);
	char err[2048];
	int n = rsrc_validate(&c, plan, err, sizeof(err));
	bool found = false;
	for (const char *p = err; *p && p < err + sizeof(err); p += strlen(p) + 1)
		found |= strstr(p, want) != NULL;
	cr_expect(found, "no problem saying '%s' (%d problems, first: %s)", want, n, err);
	return n;
}

Test(rsrc, a_plan_with_problems_names_each)
{
	day_plan();
	plans[0].d[3] = dir("OTHER", 3, 0);
	cr_expect_geq(problems("DAY", 1, "group OTHER gets no share at any level"), 1);
	day_plan();
	plans[0].d[1].share = 90;
	cr_expect_eq(problems("DAY", 1, "level 2 add up to 110%"), 1);
	day_plan();
	plans[0].d[3] = dir("NOBODY", 3, 100);
	cr_expect_eq(problems("DAY", 1, "group NOBODY does not exist"), 2); /* and no OTHER */
	problems("DAY", 1, "no directive for OTHER");
	day_plan();
	plans[0].d[0].cap = 30;
	problems("DAY", 1, "cap 30% is below its level-1 share 50%");
	day_plan();
	plans[0].d[1].exec_action = RSRC_ACT_SWITCH;
	plans[0].d[1].exec_ms = 1000;
	snprintf(plans[0].d[1].switch_to, RSRC_NAME_MAX, "LOW");
	problems("DAY", 1, "switches to group LOW, which does not exist");
	day_plan();
	plans[0].d[4] = dir("SYS", 4, 10);
	plans[0].n = 5;
	problems("DAY", 1, "group SYS has two directives");
	day_plan();
	plans[0].d[2] = dir("A", 2, 20);
	plans[0].d[2].subplan = true;
	snprintf(plans[1].name, RSRC_NAME_MAX, "A");
	plans[1].d[0] = dir("B", 1, 100);
	plans[1].d[0].subplan = true;
	plans[1].n = 1;
	snprintf(plans[2].name, RSRC_NAME_MAX, "B");
	plans[2].d[0] = dir("A", 1, 100);
	plans[2].d[0].subplan = true;
	plans[2].n = 1;
	problems("DAY", 3, "makes a cycle of plans");
	problems("NOPE", 3, "plan NOPE does not exist");
	char g[8][RSRC_NAME_MAX];
	double f[8];
	struct rsrc_catalog c = catalog(3);
	cr_expect_eq(rsrc_cpu_shares(&c, "DAY", g, f, 8), -1, "shares of a plan that does not validate");
}

Test(rsrc, a_token_bucket_makes_takers_wait_for_their_rate)
{
	struct rsrc_bucket b;
	rsrc_bucket_init(&b, 1000, 100, 0); /* 1000 a second, 100 at most */
	cr_expect_eq(rsrc_bucket_take(&b, 100, 0), 0);
	uint64_t w = rsrc_bucket_take(&b, 50, 0);
	cr_expect_eq(w, 50000000, "50 tokens at 1000/s: 50 ms, not %llu ns", (unsigned long long)w);
	cr_expect_eq(rsrc_bucket_take(&b, 50, 50000000), 0);
	/* idle for a minute: no more than the burst saved up */
	cr_expect_eq(rsrc_bucket_take(&b, 100, 60000000000ull), 0);
	cr_expect_neq(rsrc_bucket_take(&b, 1, 60000000000ull), 0);
	/* a taking past the burst goes through once the bucket is full, never waits forever */
	rsrc_bucket_init(&b, 1000, 100, 0);
	cr_expect_eq(rsrc_bucket_take(&b, 500, 0), 0);
	cr_expect(b.tokens < 0);
	cr_expect_neq(rsrc_bucket_take(&b, 1, 100000000), 0, "in debt after the large one");
}

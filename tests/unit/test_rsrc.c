/* The resource manager's core (daemons/rsrcmgrd/rsrc.c): a session mapped by its attributes,
 * the rule's priority and its window of the week; plans validated with every problem named
 * (a group that can never run is an error, not a hang); the CPU shares of the emphasis
 * method, with sub-plans, as cgroup weights; token buckets. */
#include "rsrc.h"
#include "cgroup.h"
#include "history.h"

#include "util.h"
#include "errors.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct coral_rsrc_rule rules[] = {
	{CORAL_RSRC_USER, "batch_*", "BATCH", 10, 0, 0, 0},
	{CORAL_RSRC_PROGRAM, "report", "REPORTS", 5, 0, 0, 0},
	{CORAL_RSRC_USER, "batch_etl", "ETL", 1, 0, 0, 0},
	/* nightly, Monday to Friday, 22:00 to 06:00 */
	{CORAL_RSRC_MODULE, "nightly", "MAINTENANCE", 2, 0x3e, 22 * 60, 6 * 60},
};

Test(rsrc, a_session_goes_by_the_rule_of_lowest_priority_that_matches_now)
{
	const char *s[CORAL_RSRC_NATTR] = {[CORAL_RSRC_USER] = "batch_load", [CORAL_RSRC_PROGRAM] = "sqlplus"};
	cr_expect_eq(coral_rsrc_map(rules, 4, s, 1, 600), 0);
	s[CORAL_RSRC_PROGRAM] = "report";
	cr_expect_eq(coral_rsrc_map(rules, 4, s, 1, 600), 1, "priority 5 beats 10");
	s[CORAL_RSRC_USER] = "batch_etl";
	cr_expect_eq(coral_rsrc_map(rules, 4, s, 1, 600), 2, "priority 1 beats both");
	const char *n[CORAL_RSRC_NATTR] = {[CORAL_RSRC_USER] = "alice", [CORAL_RSRC_MODULE] = "nightly"};
	cr_expect_eq(coral_rsrc_map(rules, 4, n, 2, 23 * 60), 3, "Tuesday 23:00");
	cr_expect_eq(coral_rsrc_map(rules, 4, n, 3, 5 * 60), 3, "Wednesday 05:00, past midnight");
	cr_expect_eq(coral_rsrc_map(rules, 4, n, 2, 12 * 60), -1, "Tuesday noon: OTHER");
	cr_expect_eq(coral_rsrc_map(rules, 4, n, 0, 23 * 60), -1, "Sunday: not in the window's days");
	const char *none[CORAL_RSRC_NATTR] = {0};
	cr_expect_eq(coral_rsrc_map(rules, 4, none, 1, 0), -1);
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
	struct coral_rsrc_bucket b;
	coral_rsrc_bucket_init(&b, 1000, 100, 0); /* 1000 a second, 100 at most */
	cr_expect_eq(coral_rsrc_bucket_take(&b, 100, 0), 0);
	uint64_t w = coral_rsrc_bucket_take(&b, 50, 0);
	cr_expect_eq(w, 50000000, "50 tokens at 1000/s: 50 ms, not %llu ns", (unsigned long long)w);
	cr_expect_eq(coral_rsrc_bucket_take(&b, 50, 50000000), 0);
	/* idle for a minute: no more than the burst saved up */
	cr_expect_eq(coral_rsrc_bucket_take(&b, 100, 60000000000ull), 0);
	cr_expect_neq(coral_rsrc_bucket_take(&b, 1, 60000000000ull), 0);
	/* a taking past the burst goes through once the bucket is full, never waits forever */
	coral_rsrc_bucket_init(&b, 1000, 100, 0);
	cr_expect_eq(coral_rsrc_bucket_take(&b, 500, 0), 0);
	cr_expect(b.tokens < 0);
	cr_expect_neq(coral_rsrc_bucket_take(&b, 1, 100000000), 0, "in debt after the large one");
}

/* ---- the catalog's text ------------------------------------------------------------------ */

static const char good[] = "# groups\n"
			   "group OLTP\n"
			   "group REPORTS   # trailing comment\n"
			   "rule user=oltp* group=OLTP priority=10\n"
			   "rule module=nightly group=MAINTENANCE days=mon-fri from=22:00 to=06:00\n"
			   "plan DAY\n"
			   "  directive OLTP level=1 share=60 pool=8 queue_timeout=5000\n"
			   "  subplan NIGHT level=1 share=20\n"
			   "  directive OTHER level=2 share=100\n"
			   "plan NIGHT\n"
			   "  directive REPORTS share=80 exec=60000 action=switch:BATCH\n"
			   "  directive OTHER share=20\n";

Test(rsrc, a_catalog_reads_into_groups_rules_and_plans)
{
	static struct rsrc_def d;
	char err[256];
	cr_assert_eq(rsrc_def_parse(good, &d, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(d.ngroups, 2);
	cr_expect_eq(d.nrules, 2);
	cr_expect_eq(d.nplans, 2);
	cr_expect_eq(d.rules[1].attr, CORAL_RSRC_MODULE);
	cr_expect_eq(d.rules[1].days, 0x3e, "mon-fri");
	cr_expect_eq(d.rules[1].from_min, 22 * 60);
	cr_expect_eq(d.rules[1].to_min, 6 * 60);
	cr_expect_eq(d.rules[1].priority, 100, "the default priority");
	cr_expect_eq(d.plans[0].n, 3);
	cr_expect(d.plans[0].d[1].subplan);
	char problems[1024];
	cr_expect_eq(rsrc_def_check(&d, problems, sizeof(problems)), 0, "%s", problems);
	/* a directive found through a sub-plan */
	const struct rsrc_directive *x = rsrc_def_directive(&d, "DAY", "REPORTS");
	cr_assert_not_null(x);
	cr_expect_eq(x->exec_action, RSRC_ACT_SWITCH);
	cr_expect_str_eq(x->switch_to, "BATCH");
	cr_expect_null(rsrc_def_directive(&d, "DAY", "SYS"));
	x = rsrc_def_directive(&d, "DAY", "OLTP");
	cr_assert_not_null(x);
	char t[200];
	rsrc_directive_text(x, t, sizeof(t));
	cr_expect_str_eq(t, "level=1 share=60 pool=8 queue_timeout=5000");
	rsrc_rule_text(&d.rules[1], t, sizeof(t));
	cr_expect_str_eq(t, "module=nightly group=MAINTENANCE priority=100 days=mon,tue,wed,thu,fri from=22:00 to=06:00");
	/* what it says reads back the same */
	static struct rsrc_def again;
	char line[300];
	snprintf(line, sizeof(line), "rule %s\n", t);
	cr_assert_eq(rsrc_def_parse(line, &again, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(memcmp(&again.rules[0], &d.rules[1], sizeof(d.rules[1])), 0);
}

Test(rsrc, the_example_catalog_in_etc_is_good)
{
	FILE *f = fopen(CORAL_SRCDIR "/etc/rsrc-catalog", "r");
	cr_assert_not_null(f);
	static char text[65536];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	static struct rsrc_def d;
	char err[256], problems[2048];
	cr_assert_eq(rsrc_def_parse(text, &d, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(rsrc_def_check(&d, problems, sizeof(problems)), 0, "%s", problems);
	struct rsrc_catalog c = rsrc_def_catalog(&d);
	cr_expect_eq(rsrc_validate(&c, "REPORTING", NULL, 0), 1, "a sub-plan alone has no OTHER: not activated");
	cr_expect_eq(rsrc_validate(&c, "NIGHT", NULL, 0), 0);
}

static void bad(const char *text, const char *want);

Test(rsrc, a_schedule_puts_its_plan_in_force_within_its_window)
{
	static struct rsrc_def d;
	char err[256], problems[1024];
	cr_assert_eq(rsrc_def_parse("plan P\n directive OTHER share=100\n"
				    "schedule P days=mon-fri from=22:00 to=06:00\n"
				    "schedule P days=sat from=10:00 to=12:00\n",
				    &d, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_eq(rsrc_def_check(&d, problems, sizeof(problems)), 0, "%s", problems);
	cr_expect_eq(rsrc_def_scheduled(&d, 1, 23 * 60), 0, "Monday 23:00");
	cr_expect_eq(rsrc_def_scheduled(&d, 2, 5 * 60), 0, "Tuesday 05:00: Monday's window past midnight");
	cr_expect_eq(rsrc_def_scheduled(&d, 1, 5 * 60), -1, "Monday 05:00: Sunday's night has no window");
	cr_expect_eq(rsrc_def_scheduled(&d, 6, 5 * 60), 0, "Saturday 05:00: Friday's night");
	cr_expect_eq(rsrc_def_scheduled(&d, 6, 11 * 60), 1, "Saturday 11:00");
	cr_expect_eq(rsrc_def_scheduled(&d, 6, 12 * 60), -1, "Saturday noon: the window has closed");
	char t[160];
	rsrc_schedule_text(&d.schedules[0], t, sizeof(t));
	cr_expect_str_eq(t, "P days=mon,tue,wed,thu,fri from=22:00 to=06:00");
	/* a schedule of a plan that does not exist, or cannot be activated alone */
	cr_assert_eq(rsrc_def_parse("plan S\n directive SYS share=10\nplan P\n directive OTHER share=50\n subplan S "
				    "share=50\nschedule NOPE from=01:00 to=02:00\nschedule S from=01:00 to=02:00\n",
				    &d, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_eq(rsrc_def_check(&d, problems, sizeof(problems)), 2, "%s", problems);
	cr_expect(strstr(problems, "NOPE"), "%s", problems);
	bad("schedule P from=01:00\n", "from=HH:MM to=HH:MM");
}

static void bad(const char *text, const char *want)
{
	static struct rsrc_def d;
	char err[256];
	cr_expect_eq(rsrc_def_parse(text, &d, err, sizeof(err)), -1, "read: %s", text);
	cr_expect(strstr(err, want), "'%s' says '%s', not '%s'", text, err, want);
}

Test(rsrc, a_bad_catalog_is_refused_at_its_line_with_what_is_wrong)
{
	bad("group OLTP\nfrobnicate X\n", "line 2: unknown definition 'frobnicate'");
	bad("directive OLTP share=5\n", "line 1: directive outside a plan");
	bad("plan P\n directive OLTP share=abc\n", "line 2: share=abc: a whole number from 0 to 100");
	bad("plan P\n directive OLTP share=101\n", "from 0 to 100");
	bad("plan P\n directive OLTP colour=red\n", "unknown word 'colour'");
	bad("plan P\n directive OLTP action=explode\n", "action=explode");
	bad("plan P\n subplan Q pool=3\n", "a sub-plan has a level and a share only");
	bad("plan P\n directive OLTP pool=3 scope=world\n", "scope=world");
	bad("rule user=a group=G days=someday\n", "days=someday");
	bad("rule user=a group=G from=08:00\n", "both from= and to=");
	bad("rule user=a group=G from=25:00 to=01:00\n", "HH:MM");
	bad("rule group=G\n", "names the attribute");
	bad("rule user=a\n", "names its group");
	bad("rule user=a program=b group=G\n", "one attribute");
	bad("group bad/name\n", "group NAME");
	bad("plan P\nplan P\n", "defined twice");
	char big[2000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bad(big, "longer than");
	/* what reads but does not hold together */
	static struct rsrc_def d;
	char err[256], problems[1024];
	cr_assert_eq(rsrc_def_parse("group SYS\ngroup A\ngroup A\nrule user=x group=NOPE\nplan P\n directive A "
				    "share=50\n",
				    &d, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_geq(rsrc_def_check(&d, problems, sizeof(problems)), 4);
	size_t at = 0;
	const char *want[] = {"group SYS is a system group", "group A is defined twice", "group NOPE, which does not exist",
			      "no directive for OTHER"};
	for (size_t i = 0; i < 4; i++) {
		cr_expect(at < sizeof(problems) && strstr(problems + at, want[i]), "problem %zu: '%s' wanted", i, want[i]);
		at += strlen(problems + at) + 1;
	}
}

/* ---- the pool (libcommon's rsrc_sga.c, on the heap) -------------------------------------- */

static struct coral_rsrc *pool_section(uint32_t limit, uint32_t timeout_ms)
{
	static struct coral_rsrc *r;
	if (r == NULL)
		r = malloc(sizeof(*r));
	cr_assert_not_null(r);
	coral_rsrc_init(r);
	int g = coral_rsrc_group_find(r, "BATCH");
	atomic_store(&r->groups[g].pool, limit);
	atomic_store(&r->groups[g].queue_timeout_ms, timeout_ms);
	r->nrules = 1;
	r->rules[0] = (struct coral_rsrc_rule){.attr = CORAL_RSRC_PROGRAM, .pattern = "batch", .group = "BATCH"};
	const char *a[CORAL_RSRC_NATTR] = {[CORAL_RSRC_PROGRAM] = "batch"};
	for (int i = 0; i < 6; i++)
		coral_rsrc_sess_open(r, i, 100 + (uint32_t)i, a);
	return r;
}

static struct coral_rsrc *pr;
static _Atomic int admitted[8], nadmitted;

static void *queued_call(void *arg)
{
	int slot = (int)(intptr_t)arg;
	if (coral_rsrc_call_begin(pr, slot, -1) == 0)
		admitted[atomic_fetch_add(&nadmitted, 1)] = slot;
	return NULL;
}

Test(rsrc, a_pool_admits_its_limit_and_queues_the_rest_in_order)
{
	pr = pool_section(2, 0);
	int g = coral_rsrc_group_find(pr, "BATCH");
	cr_expect_eq(atomic_load(&pr->groups[g].sessions), 6);
	cr_expect_eq(coral_rsrc_call_begin(pr, 0, -1), 0);
	cr_expect_eq(coral_rsrc_call_begin(pr, 1, -1), 0);
	cr_expect_eq(coral_rsrc_call_begin(pr, 1, -1), CORAL_EINVAL, "a call under way already");
	pthread_t t[3];
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(pthread_create(&t[i], NULL, queued_call, (void *)(intptr_t)(2 + i)), 0);
		while (atomic_load(&pr->groups[g].queued) != (uint32_t)i + 1)
			usleep(1000);
	}
	cr_expect_eq(atomic_load(&nadmitted), 0);
	/* one place at a time: each admission seen before the next place is given */
	cr_expect_eq(coral_rsrc_call_end(pr, 0), 0);
	cr_expect_eq(coral_rsrc_call_end(pr, 0), CORAL_EINVAL, "no call under way");
	while (atomic_load(&nadmitted) < 1)
		usleep(1000);
	cr_expect_eq(coral_rsrc_call_end(pr, 1), 0);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	cr_expect_eq(admitted[0], 2);
	cr_expect_eq(admitted[1], 3);
	cr_expect_eq(atomic_load(&pr->groups[g].active), 2);
	cr_expect_eq(coral_rsrc_call_end(pr, 2), 0);
	pthread_join(t[2], NULL);
	cr_expect_eq(admitted[2], 4);
	cr_expect_eq(atomic_load(&pr->groups[g].active_max), 2);
	cr_expect_eq(atomic_load(&pr->groups[g].queued_total), 3);
	/* a session whose process is gone: its call's place back, once */
	cr_expect(coral_rsrc_sess_reap(pr, 3));
	cr_expect(!coral_rsrc_sess_reap(pr, 3));
	cr_expect_eq(atomic_load(&pr->groups[g].active), 1);
	cr_expect_eq(coral_rsrc_call_end(pr, 3), CORAL_EINVAL, "reaped already");
	coral_rsrc_call_end(pr, 4);
	cr_expect_eq(atomic_load(&pr->groups[g].active), 0);
}

Test(rsrc, a_queued_call_leaves_at_its_timeout_and_a_limit_raised_admits_the_queue)
{
	pr = pool_section(1, 150);
	int g = coral_rsrc_group_find(pr, "BATCH");
	cr_expect_eq(coral_rsrc_call_begin(pr, 0, -1), 0);
	uint64_t t0 = coral_now_mono_ns();
	cr_expect_eq(coral_rsrc_call_begin(pr, 1, -1), CORAL_ETIMEDOUT, "the group's 150 ms");
	uint64_t ms = (coral_now_mono_ns() - t0) / 1000000;
	cr_expect(ms >= 140 && ms < 2000, "%llu ms", (unsigned long long)ms);
	cr_expect_eq(coral_rsrc_call_begin(pr, 1, 20), CORAL_ETIMEDOUT, "the caller's 20 ms, shorter");
	cr_expect_eq(atomic_load(&pr->groups[g].queued), 0);
	cr_expect_eq(atomic_load(&pr->groups[g].timeouts), 2);
	/* no timeout: waits until the limit rises */
	atomic_store(&pr->groups[g].queue_timeout_ms, 0);
	atomic_store(&nadmitted, 0);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, queued_call, (void *)(intptr_t)1), 0);
	while (atomic_load(&pr->groups[g].queued) != 1)
		usleep(1000);
	atomic_store(&pr->groups[g].pool, 2);
	coral_rsrc_group_admit(pr, (uint32_t)g);
	pthread_join(t, NULL);
	cr_expect_eq(atomic_load(&nadmitted), 1);
	cr_expect_eq(atomic_load(&pr->groups[g].active), 2);
	/* a group with no limit counts its calls, queues nothing */
	int o = coral_rsrc_group_find(pr, "OTHER");
	const char *a[CORAL_RSRC_NATTR] = {[CORAL_RSRC_PROGRAM] = "other"};
	coral_rsrc_sess_open(pr, 7, 7, a);
	cr_expect_eq(atomic_load(&pr->sess[7].group), (uint32_t)o + 1);
	cr_expect_eq(coral_rsrc_call_begin(pr, 7, -1), 0);
	cr_expect_eq(atomic_load(&pr->groups[o].active), 1);
	cr_expect_eq(coral_rsrc_call_end(pr, 7), 0);
	/* a group the plan does not name is governed by OTHER's directive */
	atomic_store(&pr->groups[g].governs, (uint32_t)o);
	cr_expect_eq(coral_rsrc_call_begin(pr, 2, -1), 0, "OTHER has no limit");
	cr_expect_eq(atomic_load(&pr->groups[o].active), 1);
	coral_rsrc_call_end(pr, 2);
	cr_expect_eq(atomic_load(&pr->groups[o].active), 0);
}

Test(rsrc, io_limits_pace_a_group_s_reads_and_redo)
{
	pr = pool_section(0, 0);
	int g = coral_rsrc_group_find(pr, "BATCH");
	/* no limit: counted, no wait */
	cr_expect_eq(coral_rsrc_io_charge(pr, 0, 1, 8192), 0);
	cr_expect_eq(atomic_load(&pr->groups[g].io_reqs), 1);
	/* 20 reads a second: 12 reads take about half a second (2 kept at the start) */
	coral_rsrc_io_limit(pr, (uint32_t)g, 20, 0);
	uint64_t t0 = coral_now_mono_ns();
	for (int i = 0; i < 12; i++)
		coral_rsrc_io_charge(pr, 0, 1, 8192);
	uint64_t ms = (coral_now_mono_ns() - t0) / 1000000;
	cr_expect(ms >= 400 && ms < 3000, "12 reads at 20/s in %llu ms", (unsigned long long)ms);
	cr_expect_gt(atomic_load(&pr->sess[0].io_wait_ns), 0);
	cr_expect_gt(atomic_load(&pr->groups[g].io_waits), 0);
	/* 1 MB a second: 512 KiB of redo in 64 pieces takes about half a second */
	coral_rsrc_io_limit(pr, (uint32_t)g, 0, 1);
	t0 = coral_now_mono_ns();
	for (int i = 0; i < 64; i++)
		coral_rsrc_io_charge(pr, 1, 0, 8192);
	ms = (coral_now_mono_ns() - t0) / 1000000;
	cr_expect(ms >= 350 && ms < 3000, "512 KiB at 1 MB/s in %llu ms", (unsigned long long)ms);
	/* another group is not held back */
	const char *a[CORAL_RSRC_NATTR] = {[CORAL_RSRC_PROGRAM] = "other"};
	coral_rsrc_sess_open(pr, 7, 7, a);
	cr_expect_eq(coral_rsrc_io_charge(pr, 7, 100, 1 << 20), 0);
}

static _Atomic int px_got = -1;

static void *px_waiter(void *arg)
{
	uint32_t g = 0;
	if (coral_rsrc_px_request(pr, (int)(intptr_t)arg, 3, -1, &g) == 0)
		atomic_store(&px_got, (int)g);
	return NULL;
}

Test(rsrc, parallel_servers_are_granted_up_to_max_dop_and_queued_in_order)
{
	pr = pool_section(0, 0);
	int g = coral_rsrc_group_find(pr, "BATCH");
	pr->px_total = 4;
	uint32_t got;
	/* more than the pool: clamped to it */
	cr_expect_eq(coral_rsrc_px_request(pr, 0, 16, -1, &got), 0);
	cr_expect_eq(got, 4);
	cr_expect_eq(coral_rsrc_px_request(pr, 0, 1, -1, &got), CORAL_EINVAL, "servers held already");
	/* none free: a statement waits its turn and is granted when they come back */
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, px_waiter, (void *)(intptr_t)1), 0);
	while (pr->px_qlen != 1)
		usleep(1000);
	cr_expect_eq(coral_rsrc_px_request(pr, 2, 1, 50, &got), CORAL_ETIMEDOUT, "behind the queued one, 50 ms");
	cr_expect_eq(coral_rsrc_px_release(pr, 0), 4);
	pthread_join(t, NULL);
	cr_expect_eq(atomic_load(&px_got), 3);
	cr_expect_eq(pr->px_used, 3);
	/* the group's max_dop */
	atomic_store(&pr->groups[g].max_dop, 1);
	cr_expect_eq(coral_rsrc_px_request(pr, 2, 8, -1, &got), 0);
	cr_expect_eq(got, 1);
	cr_expect_geq(atomic_load(&pr->groups[g].px_downgraded), 2);
	cr_expect_eq(atomic_load(&pr->groups[g].px_timeouts), 1);
	/* a session whose process is gone gives its servers back */
	cr_expect(coral_rsrc_sess_reap(pr, 1));
	cr_expect_eq(pr->px_used, 1);
	coral_rsrc_px_release(pr, 2);
	cr_expect_eq(pr->px_used, 0);
}

Test(rsrc, a_plan_replayed_against_recorded_demand_says_what_it_would_have_done)
{
	static struct rsrc_def d;
	static struct rsrc_hist h;
	char err[256];
	cr_assert_eq(rsrc_def_parse("group A\nplan P\n directive A share=50 pool=2 io_iops=10 exec=1000 action=cancel\n"
				    " directive OTHER share=50\nplan Q\n directive OTHER share=100\n",
				    &d, err, sizeof(err)),
		     0, "%s", err);
	rsrc_hist_init(&h, 100);
	/* 10 seconds: A with 4 calls under way, 30 reads a second; one 3 s call ended */
	for (uint64_t sec = 100; sec < 110; sec++)
		rsrc_hist_sample(&h, sec, 5, "A", 4, (sec - 99) * 7, (sec - 99) * 30, 0);
	rsrc_hist_call(&h, 109, 5, 3000);
	rsrc_hist_call(&h, 109, 5, 50);
	struct rsrc_sim out[8];
	int n = rsrc_simulate(&h, &d, "P", 0, 2, out, 8);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(out[0].group, "A");
	cr_expect_eq(out[0].demand_max, 4);
	cr_expect_eq(out[0].queued_seconds, 10);
	cr_expect_eq(out[0].queued_call_seconds, 20);
	cr_expect_eq(out[0].io_seconds, 9, "the first second's reads are its baseline");
	cr_expect_eq(out[0].io_excess_reqs, 9 * 20);
	cr_expect_eq(out[0].calls_past_exec, 1);
	/* under Q, A falls under OTHER: nothing limits it */
	n = rsrc_simulate(&h, &d, "Q", 0, 2, out, 8);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(out[0].governed_by, "OTHER");
	cr_expect_eq(out[0].queued_seconds, 0);
	cr_expect_eq(out[0].calls_past_exec, 0);
	/* the last 3 seconds only */
	n = rsrc_simulate(&h, &d, "P", 3, 2, out, 8);
	cr_expect_eq(out[0].seconds, 3);
	cr_expect_eq(rsrc_simulate(&h, &d, "NOPE", 0, 2, out, 8), -1);
}

/* The dry run's CPU: each second the node's CPUs shared by the plan's shares and caps among
 * the groups that used some, what one leaves going to the others. */
Test(rsrc, a_plan_replayed_says_how_much_cpu_it_would_have_held_back)
{
	static struct rsrc_def d;
	static struct rsrc_hist h;
	char err[256];
	cr_assert_eq(rsrc_def_parse("group A\ngroup B\nplan P\n directive A share=60\n directive B share=20\n"
				    " directive OTHER level=2 share=100\n"
				    "plan CAPPED\n directive A share=50 cap=50\n directive B share=50\n"
				    " directive OTHER level=2 share=100\n",
				    &d, err, sizeof(err)),
		     0, "%s", err);
	rsrc_hist_init(&h, 100);
	/* 10 s in which A and B each used a whole CPU of 2 (the machine saturated by both), then
	 * 10 s in which only A used 1.8 CPUs (B idle) */
	for (uint64_t sec = 100; sec < 120; sec++) {
		rsrc_hist_sample(&h, sec, 5, "A", 1, 0, 0, 0);
		rsrc_hist_sample(&h, sec, 6, "B", sec < 110, 0, 0, 0);
		rsrc_hist_cpu(&h, sec, 5, sec < 110 ? 1000 : 1800);
		if (sec < 110)
			rsrc_hist_cpu(&h, sec, 6, 1000);
	}
	struct rsrc_sim out[8];
	int n = rsrc_simulate(&h, &d, "P", 0, 2, out, 8);
	cr_assert_eq(n, 2);
	const struct rsrc_sim *a = strcmp(out[0].group, "A") == 0 ? &out[0] : &out[1], *b = a == &out[0] ? &out[1] : &out[0];
	cr_expect_eq(a->cpu_ms, 10 * 1000 + 10 * 1800);
	cr_expect_eq(b->cpu_ms, 10 * 1000);
	/* saturated: 60/20 (OTHER's 20 unused) of 2000 ms; A wanted 1000 of its 1500, B gets
	 * the 1000 A left: nobody is held back */
	cr_expect_eq(a->cpu_held_ms, 0);
	cr_expect_eq(b->cpu_held_ms, 0);
	/* capped at 50% (1000 ms a second): A is held back 800 ms a second when alone */
	n = rsrc_simulate(&h, &d, "CAPPED", 0, 2, out, 8);
	a = strcmp(out[0].group, "A") == 0 ? &out[0] : &out[1];
	b = a == &out[0] ? &out[1] : &out[0];
	cr_expect_eq(a->cap, 50);
	cr_expect_eq(a->cpu_held_ms, 10 * 800, "%llu", (unsigned long long)a->cpu_held_ms);
	cr_expect_eq(a->cpu_held_seconds, 10);
	cr_expect_eq(a->cpu_would_ms, 20 * 1000);
	cr_expect_eq(b->cpu_held_ms, 0);
	/* on one CPU, saturated by A and B each wanting a whole one: 60:20, so 75/25, under P */
	n = rsrc_simulate(&h, &d, "P", 0, 1, out, 8);
	a = strcmp(out[0].group, "A") == 0 ? &out[0] : &out[1];
	b = a == &out[0] ? &out[1] : &out[0];
	cr_expect_eq(a->cpu_would_ms, 10 * 750 + 10 * 1000, "%llu", (unsigned long long)a->cpu_would_ms);
	cr_expect_eq(b->cpu_would_ms, 10 * 250, "%llu", (unsigned long long)b->cpu_would_ms);
	cr_expect_eq(b->cpu_held_seconds, 10);
	cr_expect_eq(b->cpu_held_ms, 10 * 750);
	cr_expect_eq(a->cpu_held_ms, 10 * 250 + 10 * 800);
	cr_expect(a->share > 0.59 && a->share < 0.61, "%f", a->share);
}

/* ---- cgroups (cgroup.c) over a made-up hierarchy ---------------------------------------- */

/* A directory standing for a cgroup hierarchy's root of version v (1: cpu.shares at the root;
 * 2: cgroup.controllers naming cpu), with the node's cgroup and one per group made ahead with
 * their interface files (the kernel makes those in a real one). */
static void fake_hierarchy(int v, char *root, size_t n, struct coral_rsrc *r)
{
	snprintf(root, n, "/tmp/coral-cgtest-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), v == 1 ? "cd %s && touch cpu.shares tasks && mkdir coral-t-n1"
					  : "cd %s && echo 'cpu io memory' > cgroup.controllers && touch cgroup.subtree_control "
					    "cgroup.procs && mkdir coral-t-n1 && touch coral-t-n1/cgroup.subtree_control",
		 root);
	cr_assert_eq(system(cmd), 0);
	for (uint32_t i = 0; i < r->ngroups; i++) {
		if (r->groups[i].name[0] == '\0')
			continue;
		snprintf(cmd, sizeof(cmd), "mkdir %s/coral-t-n1/%s && cd %s/coral-t-n1/%s && touch %s", root,
			 r->groups[i].name, root, r->groups[i].name,
			 v == 1 ? "cpu.shares cpu.cfs_period_us cpu.cfs_quota_us tasks" : "cpu.weight cpu.max cgroup.procs");
		cr_assert_eq(system(cmd), 0);
	}
}

static void file_is(const char *root, const char *rel, const char *want)
{
	char p[512], got[128] = "";
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	FILE *f = fopen(p, "r");
	cr_assert_not_null(f, "%s", p);
	if (fgets(got, sizeof(got), f) == NULL)
		got[0] = '\0';
	fclose(f);
	got[strcspn(got, "\n")] = '\0';
	cr_expect_str_eq(got, want, "%s", p);
}

/* The plan's shares and caps written as each version wants them, and a session's thread (v1)
 * or process (v2) placed in its group's cgroup: the v2 path is taken on a machine whose cpu
 * controller is bound to v1 (as this one), where the kernel could not be asked. */
Test(rsrc, the_shares_and_caps_are_written_as_each_cgroup_version_wants)
{
	static struct rsrc_def d;
	char err[256];
	cr_assert_eq(rsrc_def_parse("plan P\n directive BATCH share=60 cap=30\n directive OTHER share=40\n", &d, err,
				    sizeof(err)),
		     0, "%s", err);
	for (int v = 1; v <= 2; v++) {
		static struct coral_rsrc r;
		coral_rsrc_init(&r);
		int b = coral_rsrc_group_find(&r, "BATCH"), o = coral_rsrc_group_find(&r, "OTHER");
		for (uint32_t i = 0; i < r.ngroups; i++)
			atomic_store(&r.groups[i].governs, i);
		atomic_store(&r.groups[b].share_ppm, 600000);
		atomic_store(&r.groups[o].share_ppm, 400000);
		r.nrules = 1;
		r.rules[0] = (struct coral_rsrc_rule){.attr = CORAL_RSRC_PROGRAM, .pattern = "batch", .group = "BATCH"};
		const char *a[CORAL_RSRC_NATTR] = {[CORAL_RSRC_PROGRAM] = "batch"};
		coral_rsrc_sess_open(&r, 0, 7, a);
		char root[64], want[64];
		fake_hierarchy(v, root, sizeof(root), &r);
		static struct rsrc_cg cg;
		rsrc_cg_init(&cg, "auto", root, "t", 1);
		cr_assert_eq(cg.mode, v == 1 ? RSRC_CG_V1 : RSRC_CG_V2, "%s", cg.why);
		rsrc_cg_plan(&cg, &r, &d, "P");
		rsrc_cg_place(&cg, &r, true);
		if (v == 1) {
			snprintf(want, sizeof(want), "%u", rsrc_shares_v1(0.6));
			file_is(root, "coral-t-n1/BATCH/cpu.shares", want);
			snprintf(want, sizeof(want), "%d", 30 * cg.ncpus * 1000);
			file_is(root, "coral-t-n1/BATCH/cpu.cfs_quota_us", want);
			file_is(root, "coral-t-n1/BATCH/cpu.cfs_period_us", "100000");
			file_is(root, "coral-t-n1/OTHER/cpu.cfs_quota_us", "-1");
			snprintf(want, sizeof(want), "%d", (int)gettid());
			file_is(root, "coral-t-n1/BATCH/tasks", want);
		} else {
			file_is(root, "cgroup.subtree_control", "+cpu");
			file_is(root, "coral-t-n1/cgroup.subtree_control", "+cpu");
			snprintf(want, sizeof(want), "%u", rsrc_weight_v2(0.6));
			file_is(root, "coral-t-n1/BATCH/cpu.weight", want);
			snprintf(want, sizeof(want), "%d 100000", 30 * cg.ncpus * 1000);
			file_is(root, "coral-t-n1/BATCH/cpu.max", want);
			file_is(root, "coral-t-n1/OTHER/cpu.max", "max 100000");
			snprintf(want, sizeof(want), "%d", (int)getpid());
			file_is(root, "coral-t-n1/BATCH/cgroup.procs", want);
		}
		cr_expect_eq(cg.moves, 1);
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
		cr_expect_eq(system(cmd), 0);
	}
	/* neither: off, saying why, and nothing written */
	static struct rsrc_cg off;
	rsrc_cg_init(&off, "auto", "/nonexistent-cgroup-root", "t", 1);
	cr_expect_eq(off.mode, RSRC_CG_OFF);
	cr_expect(strstr(off.why, "not enforced"), "%s", off.why);
}

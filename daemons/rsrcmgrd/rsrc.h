/* The resource manager's core (no I/O): consumer groups, the rules that map a session to a
 * group, plans with their per-group directives and their validation, the CPU share
 * arithmetic (DBRM's emphasis method: levels, each sharing what the levels above left), and the catalog's text (what an operator loads: groups, rules, plans).
 * The rules and their matching are in libcommon's rsrc_sga.h, as sessions match them too.
 * This file decides, it does not act: rsrcmgrd.c keeps the catalog in raftd's store and puts
 * the plan in force into the SGA. */
#ifndef CORAL_RSRC_H
#define CORAL_RSRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rsrc_sga.h"

#define RSRC_NAME_MAX 32
#define RSRC_GROUPS_MAX 64
#define RSRC_RULES_MAX 256
#define RSRC_DIRECTIVES_MAX 64
#define RSRC_LEVELS 8

/* The groups every plan may name without creating them. */
#define RSRC_SYS "SYS"
#define RSRC_INTERACTIVE "INTERACTIVE"
#define RSRC_BATCH "BATCH"
#define RSRC_MAINTENANCE "MAINTENANCE"
#define RSRC_OTHER "OTHER"

enum rsrc_exec_action { RSRC_ACT_NONE, RSRC_ACT_SWITCH, RSRC_ACT_CANCEL_CALL, RSRC_ACT_KILL_SESSION };

/* One group's directive in a plan (or a sub-plan's, when `subplan` is set: its share is
 * divided among that plan's groups). 0 in a limit: no limit. */
struct rsrc_directive {
	char group[RSRC_NAME_MAX];
	bool subplan;
	int level;                   /* 1..RSRC_LEVELS */
	int share;                   /* percent of what its level has, 0..100 */
	int cap;                     /* utilization cap, percent of the machine; 0: none */
	int pool;                    /* active sessions at once; 0: no pool */
	bool pool_cluster;           /* ... across every node (scope=cluster), not on each */
	int queue_timeout_ms;
	int max_dop;
	int idle_ms, idle_blocker_ms;
	int exec_ms;
	enum rsrc_exec_action exec_action;
	char switch_to[RSRC_NAME_MAX];
	int io_mbps, io_iops;
};

struct rsrc_plan {
	char name[RSRC_NAME_MAX];
	struct rsrc_directive d[RSRC_DIRECTIVES_MAX];
	size_t n;
};

/* Where plans and groups are looked up while validating (sub-plans, switch targets). */
struct rsrc_catalog {
	const struct rsrc_plan *plans;
	size_t nplans;
	const char (*groups)[RSRC_NAME_MAX];   /* custom groups; the system ones are known */
	size_t ngroups;
};

/* Every problem of plan `name` in the catalog, one line each ("group X: ...") into out
 * (NUL-separated lines, at most outsz bytes); how many. A plan with problems must not be
 * activated: a group that can never run, shares that add up past 100 at a level, a group
 * or sub-plan that does not exist, a cycle of sub-plans, a cap below a share, a switch to a
 * group that does not exist, no directive for OTHER. */
int rsrc_validate(const struct rsrc_catalog *c, const char *name, char *out, size_t outsz);

/* The share of the machine each group of plan `name` is guaranteed when every group is busy
 * (sub-plans expanded), as fractions summing to 1: level 1 shares its percentages of the
 * whole, level 2 of what level 1 left, and so on; what the last level leaves goes to every
 * group in proportion to what it has. groups[] and frac[] get up to max entries; how many,
 * or -1 if the plan does not validate. */
int rsrc_cpu_shares(const struct rsrc_catalog *c, const char *name, char (*groups)[RSRC_NAME_MAX], double *frac,
		    size_t max);
/* A fraction as a cgroup v2 cpu.weight (1..10000) and a v1 cpu.shares (2..262144). */
uint32_t rsrc_weight_v2(double frac);
uint32_t rsrc_shares_v1(double frac);

/* ---- the catalog ---------------------------------------------------------------------- */

#define RSRC_PLANS_MAX 16
#define RSRC_SCHEDULES_MAX 32

/* A window of the week in which a plan is in force, whatever plan was activated. */
struct rsrc_schedule {
	char plan[RSRC_NAME_MAX];
	uint8_t days;                /* bit 0 Sunday; 0: every day */
	uint16_t from_min, to_min;   /* to < from: past midnight */
};

/* Everything an operator defines: custom groups, the mapping rules, the plans. */
struct rsrc_def {
	char groups[RSRC_GROUPS_MAX][RSRC_NAME_MAX];
	size_t ngroups;
	struct coral_rsrc_rule rules[CORAL_RSRC_RULES];
	size_t nrules;
	struct rsrc_plan plans[RSRC_PLANS_MAX];
	size_t nplans;
	struct rsrc_schedule schedules[RSRC_SCHEDULES_MAX];
	size_t nschedules;
};

/* Parses a catalog's text (rsrcmgrd(8), CATALOG: one definition a line; `#` comments):
 *   group NAME
 *   rule ATTR=PATTERN group=GROUP [priority=N] [days=mon-fri|sat,sun|...] [from=HH:MM to=HH:MM]
 *   plan NAME
 *   directive GROUP [level=N] [share=PCT] [cap=PCT] [pool=N] [scope=node|cluster]
 *             [queue_timeout=MS] [max_dop=N]
 *             [idle=MS] [idle_blocker=MS] [exec=MS action=cancel|kill|switch:GROUP]
 *             [io_mbps=N] [io_iops=N]
 *   subplan PLAN [level=N] [share=PCT]
 *   schedule PLAN [days=...] from=HH:MM to=HH:MM
 * (directives and sub-plans belong to the plan above them). 0, or -1 with "line N: what is
 * wrong" in err. The text is only read: every plan's validation is rsrc_def_check's. */
int rsrc_def_parse(const char *text, struct rsrc_def *out, char *err, size_t errsz);
/* The catalog view of a definition (for rsrc_validate and rsrc_cpu_shares). */
struct rsrc_catalog rsrc_def_catalog(const struct rsrc_def *d);
/* Every problem of the definition: each plan's (rsrc_validate), rules that name a group that
 * does not exist, custom groups named twice or as a system group. NUL-separated lines in out;
 * how many. A definition with problems is not loaded. */
int rsrc_def_check(const struct rsrc_def *d, char *out, size_t outsz);
/* A plan's directive for group (sub-plans searched too, the first met), or NULL. */
const struct rsrc_directive *rsrc_def_directive(const struct rsrc_def *d, const char *plan, const char *group);
const struct rsrc_plan *rsrc_def_plan(const struct rsrc_def *d, const char *name);
/* A directive as catalog text ("level=1 share=75 pool=4 ..."), for the operator. */
void rsrc_directive_text(const struct rsrc_directive *x, char *buf, size_t n);
void rsrc_rule_text(const struct coral_rsrc_rule *r, char *buf, size_t n);
void rsrc_schedule_text(const struct rsrc_schedule *x, char *buf, size_t n);
/* The schedule whose window holds this time of the week (day 0-6 from Sunday, minute of the
 * day), the first in the catalog's order: its index, or -1 (the activated plan is in force). */
int rsrc_def_scheduled(const struct rsrc_def *d, int day, int minute);



#endif

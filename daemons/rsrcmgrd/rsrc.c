/* The resource manager's core (rsrc.h). */
#include "rsrc.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const system_groups[] = {RSRC_SYS, RSRC_INTERACTIVE, RSRC_BATCH, RSRC_MAINTENANCE, RSRC_OTHER};

/* ---- plans -------------------------------------------------------------------------- */

static const struct rsrc_plan *find_plan(const struct rsrc_catalog *c, const char *name)
{
	for (size_t i = 0; i < c->nplans; i++)
		if (strcmp(c->plans[i].name, name) == 0)
			return &c->plans[i];
	return NULL;
}

static bool group_exists(const struct rsrc_catalog *c, const char *name)
{
	for (size_t i = 0; i < sizeof(system_groups) / sizeof(system_groups[0]); i++)
		if (strcmp(system_groups[i], name) == 0)
			return true;
	for (size_t i = 0; i < c->ngroups; i++)
		if (strcmp(c->groups[i], name) == 0)
			return true;
	return false;
}

struct problems {
	char *out;
	size_t size, used;
	int n;
	bool as_subplan;     /* the plan is checked as a part of another: it needs no OTHER */
};

static void problem(struct problems *p, const char *fmt, ...)
{
	p->n++;
	if (p->out == NULL || p->used >= p->size)
		return;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(p->out + p->used, p->size - p->used, fmt, ap);
	va_end(ap);
	if (k < 0)
		return;
	p->used += (size_t)k + 1 < p->size - p->used ? (size_t)k + 1 : p->size - p->used;
}

/* depth-first through sub-plans: stack holds the plans being walked (a cycle if met again) */
static void validate_plan(const struct rsrc_catalog *c, const struct rsrc_plan *pl, const struct rsrc_plan **stack,
			  int depth, struct problems *p)
{
	int sum[RSRC_LEVELS + 1] = {0};
	bool other = false;
	for (size_t i = 0; i < pl->n; i++) {
		const struct rsrc_directive *d = &pl->d[i];
		for (size_t j = 0; j < i; j++)
			if (strcmp(pl->d[j].group, d->group) == 0 && pl->d[j].subplan == d->subplan)
				problem(p, "plan %s: %s %s has two directives", pl->name, d->subplan ? "sub-plan" : "group",
					d->group);
		if (d->level < 1 || d->level > RSRC_LEVELS) {
			problem(p, "plan %s: %s: level %d is not 1 to %d", pl->name, d->group, d->level, RSRC_LEVELS);
			continue;
		}
		if (d->share < 0 || d->share > 100)
			problem(p, "plan %s: %s: share %d%% is not 0 to 100", pl->name, d->group, d->share);
		sum[d->level] += d->share;
		if (d->cap < 0 || d->cap > 100)
			problem(p, "plan %s: %s: utilization cap %d%% is not 0 to 100", pl->name, d->group, d->cap);
		if (d->pool < 0 || d->max_dop < 0 || d->queue_timeout_ms < 0 || d->exec_ms < 0 || d->idle_ms < 0 ||
		    d->idle_blocker_ms < 0 || d->io_mbps < 0 || d->io_iops < 0)
			problem(p, "plan %s: %s: a limit is negative", pl->name, d->group);
		if (d->exec_action == RSRC_ACT_SWITCH && !group_exists(c, d->switch_to))
			problem(p, "plan %s: %s: switches to group %s, which does not exist", pl->name, d->group,
				d->switch_to[0] ? d->switch_to : "(none)");
		if (d->pool_cluster && d->pool == 0)
			problem(p, "plan %s: %s: scope=cluster without a pool", pl->name, d->group);
		if (d->exec_action != RSRC_ACT_NONE && d->exec_ms == 0)
			problem(p, "plan %s: %s: an execution-time action without a time limit", pl->name, d->group);
		if (d->subplan) {
			const struct rsrc_plan *sub = find_plan(c, d->group);
			if (sub == NULL) {
				problem(p, "plan %s: sub-plan %s does not exist", pl->name, d->group);
				continue;
			}
			bool cycle = false;
			for (int k = 0; k < depth; k++)
				cycle |= stack[k] == sub;
			if (cycle || sub == pl) {
				problem(p, "plan %s: sub-plan %s makes a cycle of plans", pl->name, d->group);
				continue;
			}
			if (depth + 1 < 16) {
				stack[depth] = pl;
				validate_plan(c, sub, stack, depth + 1, p);
			}
		} else {
			if (!group_exists(c, d->group))
				problem(p, "plan %s: group %s does not exist", pl->name, d->group);
			other |= strcmp(d->group, RSRC_OTHER) == 0;
		}
		if (d->cap > 0 && d->share > 0 && d->level == 1 && d->cap < d->share)
			problem(p, "plan %s: %s: utilization cap %d%% is below its level-1 share %d%%", pl->name, d->group,
				d->cap, d->share);
	}
	for (int l = 1; l <= RSRC_LEVELS; l++)
		if (sum[l] > 100)
			problem(p, "plan %s: the shares of level %d add up to %d%%, past 100", pl->name, l, sum[l]);
	if (depth == 0 && !other && !p->as_subplan)
		problem(p, "plan %s: no directive for OTHER: sessions no rule maps could never run", pl->name);
}

/* ---- shares --------------------------------------------------------------------------- */

struct share_acc {
	char (*groups)[RSRC_NAME_MAX];
	double *frac;
	size_t n, max;
};

static void add_share(struct share_acc *a, const char *group, double f)
{
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->groups[i], group) == 0) {
			a->frac[i] += f;
			return;
		}
	if (a->n < a->max) {
		snprintf(a->groups[a->n], RSRC_NAME_MAX, "%s", group);
		a->frac[a->n++] = f;
	}
}

/* Every group plan pl names, its sub-plans' too, in the list with 0 (a validated plan: no
 * cycle; the walk is bounded anyway). */
static void list_groups(const struct rsrc_catalog *c, const struct rsrc_plan *pl, struct share_acc *a)
{
	const struct rsrc_plan *stack[16];
	size_t sp = 0;
	stack[sp++] = pl;
	while (sp > 0) {
		const struct rsrc_plan *p = stack[--sp];
		for (size_t i = 0; i < p->n; i++) {
			const struct rsrc_plan *sub = p->d[i].subplan ? find_plan(c, p->d[i].group) : NULL;
			if (sub && sp < 16)
				stack[sp++] = sub;
			else if (!p->d[i].subplan)
				add_share(a, p->d[i].group, 0);
		}
	}
}

/* Divides `whole` among plan pl's directives by levels; returns what the last level left. */
static double divide(const struct rsrc_catalog *c, const struct rsrc_plan *pl, double whole, struct share_acc *a,
		     int depth)
{
	double left = whole;
	for (int l = 1; l <= RSRC_LEVELS; l++) {
		double had = left;
		for (size_t i = 0; i < pl->n; i++) {
			const struct rsrc_directive *d = &pl->d[i];
			if (d->level != l || d->share <= 0)
				continue;
			double f = had * d->share / 100.0;
			left -= f;
			if (d->subplan) {
				const struct rsrc_plan *sub = find_plan(c, d->group);
				if (sub && depth < 16) {
					double back = divide(c, sub, f, a, depth + 1);
					left += back; /* what the sub-plan leaves goes on down this plan */
				}
			} else {
				add_share(a, d->group, f);
			}
		}
	}
	return left;
}

/* The shares of a validated plan's groups (rsrc_cpu_shares). */
static int compute_shares(const struct rsrc_catalog *c, const struct rsrc_plan *pl, char (*groups)[RSRC_NAME_MAX],
			  double *frac, size_t max)
{
	struct share_acc a = {groups, frac, 0, max};
	list_groups(c, pl, &a);
	double left = divide(c, pl, 1.0, &a, 0);
	double sum = 0;
	for (size_t i = 0; i < a.n; i++)
		sum += frac[i];
	for (size_t i = 0; i < a.n; i++)
		frac[i] += sum > 0 ? left * frac[i] / sum : left / (double)a.n;
	return (int)a.n;
}

int rsrc_cpu_shares(const struct rsrc_catalog *c, const char *name, char (*groups)[RSRC_NAME_MAX], double *frac,
		    size_t max)
{
	if (rsrc_validate(c, name, NULL, 0) != 0)
		return -1;
	return compute_shares(c, find_plan(c, name), groups, frac, max);
}

static int validate(const struct rsrc_catalog *c, const char *name, char *out, size_t outsz, bool as_subplan)
{
	struct problems p = {out, outsz, 0, 0, as_subplan};
	if (out && outsz)
		out[0] = '\0';
	const struct rsrc_plan *pl = find_plan(c, name);
	if (pl == NULL) {
		problem(&p, "plan %s does not exist", name);
		return p.n;
	}
	const struct rsrc_plan *stack[16];
	validate_plan(c, pl, stack, 0, &p);
	if (p.n == 0) {
		/* a group whose share comes to nothing at every level can never run once the machine
		 * is busy: an error, not a hang (its cap or pool cannot make it run) */
		char g[RSRC_GROUPS_MAX][RSRC_NAME_MAX];
		double f[RSRC_GROUPS_MAX];
		int n = compute_shares(c, pl, g, f, RSRC_GROUPS_MAX);
		for (int i = 0; i < n; i++)
			if (f[i] <= 0)
				problem(&p, "plan %s: group %s gets no share at any level, nor of what is left over: it "
					    "could never run on a busy machine", name, g[i]);
	}
	return p.n;
}

int rsrc_validate(const struct rsrc_catalog *c, const char *name, char *out, size_t outsz)
{
	return validate(c, name, out, outsz, false);
}

uint32_t rsrc_weight_v2(double frac)
{
	double w = round(frac * 10000.0);
	return w < 1 ? 1 : w > 10000 ? 10000 : (uint32_t)w;
}

uint32_t rsrc_shares_v1(double frac)
{
	double s = round(frac * 102400.0);
	return s < 2 ? 2 : s > 262144 ? 262144 : (uint32_t)s;
}

/* ---- the catalog's text ------------------------------------------------------------------ */

static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct parse {
	int line;
	char *err;
	size_t errsz;
};

static int perr(struct parse *p, const char *fmt, ...)
{
	int k = snprintf(p->err, p->errsz, "line %d: ", p->line);
	if (k >= 0 && (size_t)k < p->errsz) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err + k, p->errsz - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= RSRC_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

static int int_arg(struct parse *p, const char *key, const char *v, int lo, int hi, int *out)
{
	char *end;
	long x = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || x < lo || x > hi)
		return perr(p, "%s=%s: a whole number from %d to %d is wanted", key, v, lo, hi);
	*out = (int)x;
	return 0;
}

static int day_arg(const char *s)
{
	for (int i = 0; i < 7; i++)
		if (strcmp(s, day_names[i]) == 0)
			return i;
	return -1;
}

/* "mon-fri", "sat,sun", "mon,wed-fri" as bits (bit 0 Sunday) */
static int days_arg(struct parse *p, const char *v, uint8_t *out)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%s", v);
	uint8_t bits = 0;
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(t, '-');
		if (dash)
			*dash = '\0';
		int a = day_arg(t), b = dash ? day_arg(dash + 1) : a;
		if (a < 0 || b < 0)
			return perr(p, "days=%s: days are sun mon tue wed thu fri sat, as mon-fri or sat,sun", v);
		for (int d = a;; d = (d + 1) % 7) {
			bits |= (uint8_t)(1u << d);
			if (d == b)
				break;
		}
	}
	*out = bits;
	return 0;
}

static int time_arg(struct parse *p, const char *key, const char *v, uint16_t *out)
{
	unsigned h, m;
	char c;
	if (sscanf(v, "%u:%u%c", &h, &m, &c) != 2 || h > 24 || m > 59 || (h == 24 && m != 0))
		return perr(p, "%s=%s: a time of day HH:MM is wanted", key, v);
	*out = (uint16_t)((h * 60 + m) % 1440);
	return 0;
}

/* A window's word (days=, from=, to=): 1 taken, 0 not a window's word, -1 wrong. */
static int window_word(struct parse *p, const char *k, const char *v, uint8_t *days, uint16_t *from, uint16_t *to,
		       bool *has_from, bool *has_to)
{
	if (strcmp(k, "days") == 0)
		return days_arg(p, v, days) ? -1 : 1;
	if (strcmp(k, "from") == 0) {
		*has_from = true;
		return time_arg(p, k, v, from) ? -1 : 1;
	}
	if (strcmp(k, "to") == 0) {
		*has_to = true;
		return time_arg(p, k, v, to) ? -1 : 1;
	}
	return 0;
}

/* " days=mon,tue from=HH:MM to=HH:MM" after what buf holds (k bytes of n) */
static void window_text(char *buf, size_t n, int k, uint8_t days, uint16_t from, uint16_t to, bool always)
{
	if (days && k >= 0 && (size_t)k < n) {
		k += snprintf(buf + k, n - (size_t)k, " days=");
		bool first = true;
		for (int i = 0; i < 7 && k >= 0 && (size_t)k < n; i++)
			if (days & (1u << i)) {
				k += snprintf(buf + k, n - (size_t)k, "%s%s", first ? "" : ",", day_names[i]);
				first = false;
			}
	}
	if ((always || from || to) && k >= 0 && (size_t)k < n)
		snprintf(buf + k, n - (size_t)k, " from=%02u:%02u to=%02u:%02u", from / 60u, from % 60u, to / 60u,
			 to % 60u);
}

static int parse_rule(struct parse *p, struct rsrc_def *d, char **w, int nw)
{
	if (d->nrules >= CORAL_RSRC_RULES)
		return perr(p, "more than %d rules", CORAL_RSRC_RULES);
	struct coral_rsrc_rule r = {.attr = -1, .priority = 100};
	bool from = false, to = false;
	for (int i = 1; i < nw; i++) {
		char *eq = strchr(w[i], '=');
		if (eq == NULL)
			return perr(p, "'%s': rule words are KEY=VALUE", w[i]);
		*eq = '\0';
		const char *k = w[i], *v = eq + 1;
		int a = coral_rsrc_attr_parse(k);
		if (a >= 0) {
			if (r.attr >= 0)
				return perr(p, "a rule matches one attribute (user, program, machine, service or module)");
			if (*v == '\0' || strlen(v) >= CORAL_RSRC_ATTR)
				return perr(p, "%s=: a pattern of 1 to %d bytes is wanted", k, CORAL_RSRC_ATTR - 1);
			r.attr = a;
			snprintf(r.pattern, sizeof(r.pattern), "%s", v);
		} else if (strcmp(k, "group") == 0) {
			if (!name_ok(v))
				return perr(p, "group=%s: not a group name", v);
			snprintf(r.group, sizeof(r.group), "%s", v);
		} else if (strcmp(k, "priority") == 0) {
			if (int_arg(p, k, v, 0, 1000000, &r.priority))
				return -1;
		} else if ((a = window_word(p, k, v, &r.days, &r.from_min, &r.to_min, &from, &to)) != 0) {
			if (a < 0)
				return -1;
		} else {
			return perr(p, "rule: unknown word '%s' (user program machine service module group priority days "
				       "from to)", k);
		}
	}
	if (r.attr < 0)
		return perr(p, "a rule names the attribute it matches: user=, program=, machine=, service= or module=");
	if (r.group[0] == '\0')
		return perr(p, "a rule names its group: group=NAME");
	if (from != to)
		return perr(p, "a rule's window has both from= and to=");
	if (from && r.from_min == r.to_min)
		return perr(p, "a rule's window from=%02u:%02u to the same time is empty", r.from_min / 60,
			    r.from_min % 60);
	d->rules[d->nrules++] = r;
	return 0;
}

static int parse_directive(struct parse *p, struct rsrc_plan *pl, bool subplan, char **w, int nw)
{
	if (nw < 2 || !name_ok(w[1]))
		return perr(p, "%s: the %s's name is wanted first", w[0], subplan ? "plan" : "group");
	if (pl->n >= RSRC_DIRECTIVES_MAX)
		return perr(p, "plan %s: more than %d directives", pl->name, RSRC_DIRECTIVES_MAX);
	struct rsrc_directive x = {.subplan = subplan, .level = 1};
	snprintf(x.group, sizeof(x.group), "%s", w[1]);
	for (int i = 2; i < nw; i++) {
		char *eq = strchr(w[i], '=');
		if (eq == NULL)
			return perr(p, "'%s': directive words are KEY=VALUE", w[i]);
		*eq = '\0';
		const char *k = w[i], *v = eq + 1;
		static const struct {
			const char *key;
			size_t off;
			int lo, hi;
		} ints[] = {
			{"level", offsetof(struct rsrc_directive, level), 1, RSRC_LEVELS},
			{"share", offsetof(struct rsrc_directive, share), 0, 100},
			{"cap", offsetof(struct rsrc_directive, cap), 0, 100},
			{"pool", offsetof(struct rsrc_directive, pool), 0, 100000},
			{"queue_timeout", offsetof(struct rsrc_directive, queue_timeout_ms), 0, 86400000},
			{"max_dop", offsetof(struct rsrc_directive, max_dop), 0, 4096},
			{"idle", offsetof(struct rsrc_directive, idle_ms), 0, 86400000},
			{"idle_blocker", offsetof(struct rsrc_directive, idle_blocker_ms), 0, 86400000},
			{"exec", offsetof(struct rsrc_directive, exec_ms), 0, 86400000},
			{"io_mbps", offsetof(struct rsrc_directive, io_mbps), 0, 1000000},
			{"io_iops", offsetof(struct rsrc_directive, io_iops), 0, 10000000},
		};
		bool done = false;
		for (size_t j = 0; j < sizeof(ints) / sizeof(ints[0]) && !done; j++)
			if (strcmp(k, ints[j].key) == 0) {
				if (subplan && j > 1)
					return perr(p, "subplan %s: a sub-plan has a level and a share only", x.group);
				if (int_arg(p, k, v, ints[j].lo, ints[j].hi, (int *)((char *)&x + ints[j].off)))
					return -1;
				done = true;
			}
		if (done)
			continue;
		if (strcmp(k, "scope") == 0 && !subplan) {
			if (strcmp(v, "cluster") != 0 && strcmp(v, "node") != 0)
				return perr(p, "scope=%s: node (each node's pool) or cluster (one pool across them)", v);
			x.pool_cluster = strcmp(v, "cluster") == 0;
			continue;
		}
		if (strcmp(k, "action") == 0 && !subplan) {
			if (strcmp(v, "cancel") == 0)
				x.exec_action = RSRC_ACT_CANCEL_CALL;
			else if (strcmp(v, "kill") == 0)
				x.exec_action = RSRC_ACT_KILL_SESSION;
			else if (strncmp(v, "switch:", 7) == 0 && name_ok(v + 7)) {
				x.exec_action = RSRC_ACT_SWITCH;
				snprintf(x.switch_to, sizeof(x.switch_to), "%s", v + 7);
			} else
				return perr(p, "action=%s: cancel, kill or switch:GROUP", v);
			continue;
		}
		return perr(p, "%s %s: unknown word '%s'", w[0], x.group, k);
	}
	pl->d[pl->n++] = x;
	return 0;
}

static int parse_schedule(struct parse *p, struct rsrc_def *d, char **w, int nw)
{
	if (nw < 2 || !name_ok(w[1]))
		return perr(p, "schedule PLAN [days=...] from=HH:MM to=HH:MM");
	if (d->nschedules >= RSRC_SCHEDULES_MAX)
		return perr(p, "more than %d schedules", RSRC_SCHEDULES_MAX);
	struct rsrc_schedule x = {0};
	snprintf(x.plan, sizeof(x.plan), "%s", w[1]);
	bool from = false, to = false;
	for (int i = 2; i < nw; i++) {
		char *eq = strchr(w[i], '=');
		if (eq == NULL)
			return perr(p, "'%s': schedule words are KEY=VALUE", w[i]);
		*eq = '\0';
		const char *k = w[i], *v = eq + 1;
		int a = window_word(p, k, v, &x.days, &x.from_min, &x.to_min, &from, &to);
		if (a < 0)
			return -1;
		if (a == 0)
			return perr(p, "schedule: unknown word '%s' (days from to)", k);
	}
	if (!from || !to)
		return perr(p, "a schedule has its window: from=HH:MM to=HH:MM");
	if (x.from_min == x.to_min)
		return perr(p, "a schedule's window from=%02u:%02u to the same time is empty", x.from_min / 60u,
			    x.from_min % 60u);
	d->schedules[d->nschedules++] = x;
	return 0;
}

int rsrc_def_scheduled(const struct rsrc_def *d, int day, int minute)
{
	for (size_t i = 0; i < d->nschedules; i++) {
		const struct rsrc_schedule *x = &d->schedules[i];
		/* a window past midnight belongs to the day it began on */
		bool in;
		int dd = day;
		if (x->from_min < x->to_min) {
			in = minute >= x->from_min && minute < x->to_min;
		} else {
			in = minute >= x->from_min || minute < x->to_min;
			if (minute < x->to_min)
				dd = (day + 6) % 7;
		}
		if (in && (x->days == 0 || (x->days & (1u << dd))))
			return (int)i;
	}
	return -1;
}

void rsrc_schedule_text(const struct rsrc_schedule *x, char *buf, size_t n)
{
	window_text(buf, n, snprintf(buf, n, "%s", x->plan), x->days, x->from_min, x->to_min, true);
}

int rsrc_def_parse(const char *text, struct rsrc_def *d, char *err, size_t errsz)
{
	memset(d, 0, sizeof(*d));
	struct parse p = {0, err, errsz};
	if (err && errsz)
		err[0] = '\0';
	struct rsrc_plan *plan = NULL;
	const char *at = text;
	while (*at) {
		p.line++;
		const char *nl = strchr(at, '\n');
		size_t len = nl ? (size_t)(nl - at) : strlen(at);
		char line[1024];
		if (len >= sizeof(line))
			return perr(&p, "longer than %zu bytes", sizeof(line) - 1);
		memcpy(line, at, len);
		line[len] = '\0';
		at += len + (nl ? 1 : 0);
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *w[40];
		int nw = 0;
		char *save = NULL;
		for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
			if (nw == 40)
				return perr(&p, "more than 40 words");
			w[nw++] = t;
		}
		if (nw == 0)
			continue;
		if (strcmp(w[0], "group") == 0) {
			if (nw != 2 || !name_ok(w[1]))
				return perr(&p, "group NAME (letters, digits, _ - ., up to %d)", RSRC_NAME_MAX - 1);
			if (d->ngroups >= RSRC_GROUPS_MAX - 5)
				return perr(&p, "more than %d custom groups", RSRC_GROUPS_MAX - 5);
			snprintf(d->groups[d->ngroups++], RSRC_NAME_MAX, "%s", w[1]);
			plan = NULL;
		} else if (strcmp(w[0], "rule") == 0) {
			if (parse_rule(&p, d, w, nw))
				return -1;
			plan = NULL;
		} else if (strcmp(w[0], "plan") == 0) {
			if (nw != 2 || !name_ok(w[1]))
				return perr(&p, "plan NAME (letters, digits, _ - ., up to %d)", RSRC_NAME_MAX - 1);
			if (d->nplans >= RSRC_PLANS_MAX)
				return perr(&p, "more than %d plans", RSRC_PLANS_MAX);
			for (size_t i = 0; i < d->nplans; i++)
				if (strcmp(d->plans[i].name, w[1]) == 0)
					return perr(&p, "plan %s is defined twice", w[1]);
			plan = &d->plans[d->nplans++];
			snprintf(plan->name, sizeof(plan->name), "%s", w[1]);
		} else if (strcmp(w[0], "schedule") == 0) {
			if (parse_schedule(&p, d, w, nw))
				return -1;
			plan = NULL;
		} else if (strcmp(w[0], "directive") == 0 || strcmp(w[0], "subplan") == 0) {
			if (plan == NULL)
				return perr(&p, "%s outside a plan: a 'plan NAME' line comes first", w[0]);
			if (parse_directive(&p, plan, w[0][0] == 's', w, nw))
				return -1;
		} else {
			return perr(&p, "unknown definition '%s' (group, rule, plan, directive, subplan, schedule)", w[0]);
		}
	}
	return 0;
}

struct rsrc_catalog rsrc_def_catalog(const struct rsrc_def *d)
{
	return (struct rsrc_catalog){d->plans, d->nplans, (const char(*)[RSRC_NAME_MAX])d->groups, d->ngroups};
}

const struct rsrc_plan *rsrc_def_plan(const struct rsrc_def *d, const char *name)
{
	struct rsrc_catalog c = rsrc_def_catalog(d);
	return find_plan(&c, name);
}

int rsrc_def_check(const struct rsrc_def *d, char *out, size_t outsz)
{
	struct problems p = {out, outsz, 0, 0, false};
	if (out && outsz)
		out[0] = '\0';
	struct rsrc_catalog c = rsrc_def_catalog(d);
	for (size_t i = 0; i < d->ngroups; i++) {
		for (size_t j = 0; j < sizeof(system_groups) / sizeof(system_groups[0]); j++)
			if (strcmp(d->groups[i], system_groups[j]) == 0)
				problem(&p, "group %s is a system group: it is there without being defined", d->groups[i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(d->groups[i], d->groups[j]) == 0)
				problem(&p, "group %s is defined twice", d->groups[i]);
	}
	for (size_t i = 0; i < d->nrules; i++)
		if (!group_exists(&c, d->rules[i].group))
			problem(&p, "rule %zu maps to group %s, which does not exist", i + 1, d->rules[i].group);
	for (size_t i = 0; i < d->nschedules; i++) {
		const char *pl = d->schedules[i].plan;
		if (find_plan(&c, pl) == NULL)
			problem(&p, "schedule %zu puts plan %s in force, which does not exist", i + 1, pl);
		else if (rsrc_validate(&c, pl, NULL, 0) != 0)
			problem(&p, "schedule %zu puts plan %s in force, which cannot be activated alone (its own "
				    "problems, or no directive for OTHER)", i + 1, pl);
	}
	for (size_t i = 0; i < d->nplans; i++) {
		/* a plan some other plan takes as a sub-plan needs no directive for OTHER (it cannot
		 * be activated alone without one: rsrc_validate says so then) */
		bool sub = false;
		for (size_t j = 0; j < d->nplans; j++)
			for (size_t k = 0; k < d->plans[j].n; k++)
				sub |= d->plans[j].d[k].subplan && strcmp(d->plans[j].d[k].group, d->plans[i].name) == 0;
		char buf[2048];
		int n = validate(&c, d->plans[i].name, buf, sizeof(buf), sub);
		for (size_t at = 0; n > 0 && at < sizeof(buf) && buf[at]; at += strlen(buf + at) + 1)
			problem(&p, "%s", buf + at);
	}
	return p.n;
}

const struct rsrc_directive *rsrc_def_directive(const struct rsrc_def *d, const char *plan, const char *group)
{
	struct rsrc_catalog c = rsrc_def_catalog(d);
	const struct rsrc_plan *stack[16];
	size_t sp = 0;
	const struct rsrc_plan *pl = find_plan(&c, plan);
	if (pl)
		stack[sp++] = pl;
	while (sp > 0) {
		const struct rsrc_plan *x = stack[--sp];
		for (size_t i = 0; i < x->n; i++) {
			if (!x->d[i].subplan && strcmp(x->d[i].group, group) == 0)
				return &x->d[i];
			const struct rsrc_plan *sub = x->d[i].subplan ? find_plan(&c, x->d[i].group) : NULL;
			if (sub && sp < 16)
				stack[sp++] = sub;
		}
	}
	return NULL;
}

void rsrc_directive_text(const struct rsrc_directive *x, char *buf, size_t n)
{
	int k = snprintf(buf, n, "level=%d share=%d", x->level, x->share);
#define ADD(cond, ...)                                                                                                 \
	do {                                                                                                           \
		if ((cond) && k >= 0 && (size_t)k < n)                                                                 \
			k += snprintf(buf + k, n - (size_t)k, __VA_ARGS__);                                            \
	} while (0)
	ADD(x->cap, " cap=%d", x->cap);
	ADD(x->pool, " pool=%d", x->pool);
	ADD(x->pool && x->pool_cluster, " scope=cluster");
	ADD(x->queue_timeout_ms, " queue_timeout=%d", x->queue_timeout_ms);
	ADD(x->max_dop, " max_dop=%d", x->max_dop);
	ADD(x->idle_ms, " idle=%d", x->idle_ms);
	ADD(x->idle_blocker_ms, " idle_blocker=%d", x->idle_blocker_ms);
	ADD(x->exec_ms, " exec=%d", x->exec_ms);
	ADD(x->exec_action == RSRC_ACT_CANCEL_CALL, " action=cancel");
	ADD(x->exec_action == RSRC_ACT_KILL_SESSION, " action=kill");
	ADD(x->exec_action == RSRC_ACT_SWITCH, " action=switch:%s", x->switch_to);
	ADD(x->io_mbps, " io_mbps=%d", x->io_mbps);
	ADD(x->io_iops, " io_iops=%d", x->io_iops);
#undef ADD
}

void rsrc_rule_text(const struct coral_rsrc_rule *r, char *buf, size_t n)
{
	int k = snprintf(buf, n, "%s=%s group=%s priority=%d", coral_rsrc_attr_name(r->attr), r->pattern, r->group,
			 r->priority);
	window_text(buf, n, k, r->days, r->from_min, r->to_min, false);
}

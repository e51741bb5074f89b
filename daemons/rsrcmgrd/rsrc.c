/* The resource manager's core (rsrc.h). */
#include "rsrc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const system_groups[] = {RSRC_SYS, RSRC_INTERACTIVE, RSRC_BATCH, RSRC_MAINTENANCE, RSRC_OTHER};

/* ---- mapping ------------------------------------------------------------------------ */

static bool pattern_matches(const char *pattern, const char *v)
{
	size_t n = strlen(pattern);
	if (n > 0 && pattern[n - 1] == '*')
		return strncmp(pattern, v, n - 1) == 0;
	return strcmp(pattern, v) == 0;
}

static bool in_window(const struct rsrc_rule *r, int day, int minute)
{
	if (r->days && !(r->days & (1u << day)))
		return false;
	if (r->from_min == 0 && r->to_min == 0)
		return true;
	if (r->from_min <= r->to_min)
		return minute >= r->from_min && minute < r->to_min;
	return minute >= r->from_min || minute < r->to_min; /* past midnight */
}

int rsrc_map(const struct rsrc_rule *rules, size_t n, const struct rsrc_session_attrs *s, int day, int minute)
{
	int best = -1;
	for (size_t i = 0; i < n; i++) {
		const struct rsrc_rule *r = &rules[i];
		if ((unsigned)r->attr >= RSRC_NATTR)
			continue;
		const char *v = s->v[r->attr];
		if (v == NULL || v[0] == '\0' || !pattern_matches(r->pattern, v) || !in_window(r, day, minute))
			continue;
		if (best < 0 || r->priority < rules[best].priority)
			best = (int)i;
	}
	return best;
}

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
	if (depth == 0 && !other)
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

int rsrc_validate(const struct rsrc_catalog *c, const char *name, char *out, size_t outsz)
{
	struct problems p = {out, outsz, 0, 0};
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

/* ---- token buckets --------------------------------------------------------------------- */

void rsrc_bucket_init(struct rsrc_bucket *b, double rate, double burst, uint64_t now_ns)
{
	*b = (struct rsrc_bucket){.rate = rate, .burst = burst, .tokens = burst, .at_ns = now_ns};
}

uint64_t rsrc_bucket_take(struct rsrc_bucket *b, double n, uint64_t now_ns)
{
	if (now_ns > b->at_ns) {
		b->tokens += b->rate * (double)(now_ns - b->at_ns) / 1e9;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->at_ns = now_ns;
	}
	if (b->tokens >= n || (n > b->burst && b->tokens >= b->burst)) {
		b->tokens -= n;
		return 0;
	}
	if (b->rate <= 0)
		return UINT64_MAX;
	double need = (n > b->burst ? b->burst : n) - b->tokens;
	uint64_t wait = (uint64_t)ceil(need / b->rate * 1e9);
	b->waited_ns += wait;
	return wait ? wait : 1;
}

/* The groups' recorded demand and its replay against a plan (history.h). */
#include "history.h"

#include <stdio.h>
#include <string.h>

void rsrc_hist_init(struct rsrc_hist *h, uint64_t now_sec)
{
	memset(h, 0, sizeof(*h));
	h->sec0 = now_sec;
}

/* The slot of second now_sec, the ring moved on to it (seconds skipped are empty). */
static struct rsrc_hist_sec *second(struct rsrc_hist *h, uint64_t now_sec, uint32_t g)
{
	if (now_sec < h->sec0)
		now_sec = h->sec0;
	uint64_t ahead = now_sec - h->sec0;
	if (ahead > RSRC_HIST_SECONDS)
		ahead = RSRC_HIST_SECONDS;
	for (uint64_t i = 0; i < ahead; i++) {
		h->at = (h->at + 1) % RSRC_HIST_SECONDS;
		memset(h->s[h->at], 0, sizeof(h->s[h->at]));
		if (h->filled < RSRC_HIST_SECONDS)
			h->filled++;
	}
	h->sec0 = now_sec;
	if (h->filled == 0)
		h->filled = 1;
	return &h->s[h->at][g];
}

void rsrc_hist_sample(struct rsrc_hist *h, uint64_t now_sec, uint32_t g, const char *name, uint32_t demand,
		      uint64_t calls, uint64_t io_reqs, uint64_t io_bytes)
{
	if (g >= RSRC_GROUPS_MAX)
		return;
	if (strncmp(h->names[g], name, RSRC_NAME_MAX) != 0) {
		/* a new group at this index: its counters start here, its past is another's */
		snprintf(h->names[g], RSRC_NAME_MAX, "%s", name);
		for (size_t i = 0; i < RSRC_HIST_SECONDS; i++)
			memset(&h->s[i][g], 0, sizeof(h->s[i][g]));
		h->last_calls[g] = calls;
		h->last_reqs[g] = io_reqs;
		h->last_bytes[g] = io_bytes;
	}
	struct rsrc_hist_sec *x = second(h, now_sec, g);
	if (demand > x->demand)
		x->demand = demand > UINT16_MAX ? UINT16_MAX : (uint16_t)demand;
	if (calls >= h->last_calls[g])
		x->calls += (uint32_t)(calls - h->last_calls[g]);
	if (io_reqs >= h->last_reqs[g])
		x->io_reqs += (uint32_t)(io_reqs - h->last_reqs[g]);
	if (io_bytes >= h->last_bytes[g])
		x->io_bytes += io_bytes - h->last_bytes[g];
	h->last_calls[g] = calls;
	h->last_reqs[g] = io_reqs;
	h->last_bytes[g] = io_bytes;
}

static int bucket_of(uint64_t ms)
{
	if (ms < 100)
		return 0;
	int k = 1;
	for (uint64_t top = 200; ms >= top && k < RSRC_DUR_BUCKETS - 1; top *= 2)
		k++;
	return k;
}

/* the shortest a call in bucket k ran */
static uint64_t bucket_floor(int k)
{
	return k == 0 ? 0 : 100ull << (k - 1);
}

void rsrc_hist_call(struct rsrc_hist *h, uint64_t now_sec, uint32_t g, uint64_t dur_ms)
{
	if (g >= RSRC_GROUPS_MAX)
		return;
	second(h, now_sec, g)->dur[bucket_of(dur_ms)]++;
}

void rsrc_hist_cpu(struct rsrc_hist *h, uint64_t now_sec, uint32_t g, uint32_t ms)
{
	if (g >= RSRC_GROUPS_MAX || h->names[g][0] == '\0')
		return;
	second(h, now_sec, g)->cpu_ms += ms;
}

/* One second's CPU (cap_total ms) shared among the groups that wanted some (want[g]): each
 * gets at most what it wanted and its cap; what is left after those satisfied goes to the
 * others by their shares (equal parts where no share is known), until nobody can take more. */
static void share_second(const double *want, const double *w, const double *cap, double total, double *got)
{
	bool open_[RSRC_GROUPS_MAX];
	for (int g = 0; g < RSRC_GROUPS_MAX; g++) {
		got[g] = 0;
		open_[g] = want[g] > 0;
	}
	double left = total;
	for (int round = 0; round < RSRC_GROUPS_MAX && left > 1e-9; round++) {
		double sw = 0;
		int nopen = 0;
		for (int g = 0; g < RSRC_GROUPS_MAX; g++)
			if (open_[g]) {
				sw += w[g];
				nopen++;
			}
		if (nopen == 0)
			break;
		bool settled = false;
		double given = 0;
		for (int g = 0; g < RSRC_GROUPS_MAX; g++) {
			if (!open_[g])
				continue;
			double fair = left * (sw > 0 ? w[g] / sw : 1.0 / nopen);
			double need = want[g] - got[g];
			if (cap[g] > 0 && cap[g] - got[g] < need)
				need = cap[g] - got[g];
			if (need <= fair) {
				got[g] += need;
				given += need;
				open_[g] = false;
				settled = true;
			}
		}
		left -= given;
		if (!settled) {
			/* nobody is satisfied by a fair part: each takes its part of what is left */
			for (int g = 0; g < RSRC_GROUPS_MAX; g++)
				if (open_[g])
					got[g] += left * (sw > 0 ? w[g] / sw : 1.0 / nopen);
			break;
		}
	}
}

int rsrc_simulate(const struct rsrc_hist *h, const struct rsrc_def *d, const char *plan, uint32_t seconds,
		  uint32_t ncpu, struct rsrc_sim *out, size_t max)
{
	if (rsrc_def_plan(d, plan) == NULL)
		return -1;
	size_t n = 0;
	uint32_t span = seconds && seconds < h->filled ? seconds : (uint32_t)h->filled;
	/* each recorded group's part under saturation and cap: its own directive's, or (none)
	 * OTHER's, shared equally by the groups under it */
	char gn[RSRC_GROUPS_MAX][RSRC_NAME_MAX];
	double fr[RSRC_GROUPS_MAX];
	struct rsrc_catalog cat = rsrc_def_catalog(d);
	int nf = rsrc_cpu_shares(&cat, plan, gn, fr, RSRC_GROUPS_MAX);
	double w[RSRC_GROUPS_MAX] = {0}, cap[RSRC_GROUPS_MAX] = {0}, total = (ncpu ? ncpu : 1) * 1000.0;
	int under_other = 0;
	double other = 0;
	for (int k = 0; k < nf; k++)
		if (strcmp(gn[k], RSRC_OTHER) == 0)
			other = fr[k];
	for (uint32_t g = 0; g < RSRC_GROUPS_MAX; g++) {
		if (h->names[g][0] == '\0')
			continue;
		const struct rsrc_directive *x = rsrc_def_directive(d, plan, h->names[g]);
		bool own = false;
		for (int k = 0; k < nf; k++)
			if (strcmp(gn[k], h->names[g]) == 0) {
				w[g] = fr[k];
				own = true;
			}
		if (!own && strcmp(h->names[g], RSRC_OTHER) != 0)
			under_other++;
		if (x == NULL)
			x = rsrc_def_directive(d, plan, RSRC_OTHER);
		cap[g] = x && x->cap ? x->cap / 100.0 * total : 0;
	}
	for (uint32_t g = 0; g < RSRC_GROUPS_MAX; g++) {
		if (h->names[g][0] == '\0' || strcmp(h->names[g], RSRC_OTHER) == 0)
			continue;
		bool own = false;
		for (int k = 0; k < nf; k++)
			own |= strcmp(gn[k], h->names[g]) == 0;
		if (!own)
			w[g] = other / (under_other + 1);  /* OTHER's part, shared with OTHER itself */
	}
	for (uint32_t g = 0; g < RSRC_GROUPS_MAX; g++)
		if (strcmp(h->names[g], RSRC_OTHER) == 0 && under_other)
			w[g] = other / (under_other + 1);
	double got_sum[RSRC_GROUPS_MAX] = {0}, held_sum[RSRC_GROUPS_MAX] = {0};
	uint32_t held_secs[RSRC_GROUPS_MAX] = {0};
	for (uint32_t i = 0; i < span; i++) {
		const struct rsrc_hist_sec *row = h->s[(h->at + RSRC_HIST_SECONDS - i) % RSRC_HIST_SECONDS];
		double want[RSRC_GROUPS_MAX], got[RSRC_GROUPS_MAX];
		for (int g = 0; g < RSRC_GROUPS_MAX; g++)
			want[g] = h->names[g][0] ? row[g].cpu_ms : 0;
		share_second(want, w, cap, total, got);
		for (int g = 0; g < RSRC_GROUPS_MAX; g++) {
			got_sum[g] += got[g];
			double held = want[g] - got[g];
			if (held > 0.5) {
				held_sum[g] += held;
				held_secs[g]++;
			}
		}
	}
	for (uint32_t g = 0; g < RSRC_GROUPS_MAX && n < max; g++) {
		if (h->names[g][0] == '\0')
			continue;
		struct rsrc_sim *r = &out[n];
		memset(r, 0, sizeof(*r));
		snprintf(r->group, sizeof(r->group), "%s", h->names[g]);
		const struct rsrc_directive *x = rsrc_def_directive(d, plan, r->group);
		snprintf(r->governed_by, sizeof(r->governed_by), "%s", x ? r->group : RSRC_OTHER);
		if (x == NULL)
			x = rsrc_def_directive(d, plan, RSRC_OTHER);
		if (x) {
			r->pool = x->pool;
			r->io_iops = x->io_iops;
			r->io_mbps = x->io_mbps;
			r->exec_ms = x->exec_ms;
			r->action = (int)x->exec_action;
		}
		uint64_t demand_sum = 0;
		for (uint32_t i = 0; i < span; i++) {
			const struct rsrc_hist_sec *s =
				&h->s[(h->at + RSRC_HIST_SECONDS - i) % RSRC_HIST_SECONDS][g];
			r->seconds++;
			demand_sum += s->demand;
			if (s->demand > r->demand_max)
				r->demand_max = s->demand;
			r->calls += s->calls;
			r->cpu_ms += s->cpu_ms;
			if (r->pool && s->demand > (uint32_t)r->pool) {
				r->queued_seconds++;
				r->queued_call_seconds += s->demand - (uint32_t)r->pool;
			}
			bool io = false;
			if (r->io_iops && s->io_reqs > (uint32_t)r->io_iops) {
				io = true;
				r->io_excess_reqs += s->io_reqs - (uint32_t)r->io_iops;
			}
			uint64_t bps = (uint64_t)r->io_mbps * 1048576ull;
			if (r->io_mbps && s->io_bytes > bps) {
				io = true;
				r->io_excess_bytes += s->io_bytes - bps;
			}
			r->io_seconds += io;
			for (int k = 0; r->exec_ms && r->action != RSRC_ACT_NONE && k < RSRC_DUR_BUCKETS; k++)
				if (bucket_floor(k) >= (uint64_t)r->exec_ms)
					r->calls_past_exec += s->dur[k];
		}
		r->demand_avg = r->seconds ? (double)demand_sum / r->seconds : 0;
		r->cpu_would_ms = (uint64_t)(got_sum[g] + 0.5);
		r->cpu_held_ms = (uint64_t)(held_sum[g] + 0.5);
		r->cpu_held_seconds = held_secs[g];
		r->cap = x ? x->cap : 0;
		r->share = w[g];
		if (r->seconds && (r->calls || r->demand_max || r->cpu_ms))
			n++;
	}
	return (int)n;
}

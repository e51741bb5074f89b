/* The standbys' gate for commits, its core (gate.h). */
#include "gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_desc(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a > b ? -1 : a < b;
}

/* The synchronous part: the gate LSN of the named standbys; false when short of k. */
static bool sync_lsn(const struct gate_conf *c, const struct gate_standby *s, int n, uint64_t *lsn, int *have,
		     uint64_t *worst)
{
	uint64_t acks[CORAL_SYNC_MAX];
	int m = 0;
	for (int i = 0; i < c->spec.n; i++)
		for (int j = 0; j < n; j++)
			if (s[j].connected && strcmp(s[j].name, c->spec.names[i]) == 0 && m < CORAL_SYNC_MAX) {
				acks[m++] = s[j].acked;
				break;
			}
	*have = m;
	if (m < c->spec.k)
		return false;
	if (c->spec.any) {
		qsort(acks, (size_t)m, sizeof(acks[0]), cmp_desc);
		*lsn = acks[c->spec.k - 1];
		*worst = acks[c->spec.k - 1];
	} else {
		/* FIRST: the first k connected, in the order given */
		uint64_t low = UINT64_MAX;
		for (int i = 0; i < c->spec.k; i++)
			if (acks[i] < low)
				low = acks[i];
		*lsn = *worst = low;
	}
	return true;
}

enum gate_event gate_eval(struct gate *g, const struct gate_conf *c, const struct gate_standby *s, int n,
			  uint64_t durable, uint64_t now_ns, bool *on, uint64_t *lsn)
{
	bool want_sync = c->spec.k > 0, want_rpo = c->max_lag_bytes > 0 || c->max_lag_ms > 0;
	uint64_t gate = UINT64_MAX;
	bool short_ = false;
	char why[200] = "";
	if (want_sync) {
		uint64_t l = 0, worst = 0;
		int have = 0;
		if (sync_lsn(c, s, n, &l, &have, &worst)) {
			gate = l;
		} else {
			short_ = true;
			snprintf(why, sizeof(why), "%d of the %d sync standbys needed (%s %d of", have, c->spec.k,
				 c->spec.any ? "ANY" : "FIRST", c->spec.k);
			for (int i = 0; i < c->spec.n; i++)
				snprintf(why + strlen(why), sizeof(why) - strlen(why), "%s%s", i ? ", " : " ",
					 c->spec.names[i]);
			snprintf(why + strlen(why), sizeof(why) - strlen(why), ") connected");
		}
	}
	if (want_rpo) {
		int best = -1;
		for (int i = 0; i < n; i++)
			if (s[i].connected && (best < 0 || s[i].acked > s[best].acked))
				best = i;
		if (best < 0) {
			if (!short_)
				snprintf(why, sizeof(why), "no standby connected to hold the RPO to");
			short_ = true;
		} else {
			uint64_t r = c->max_lag_bytes > 0 ? s[best].acked + c->max_lag_bytes : UINT64_MAX;
			if (c->max_lag_ms > 0 && s[best].lag_ms > c->max_lag_ms)
				r = s[best].acked;
			if (r < gate)
				gate = r;
		}
	}
	*on = false;
	*lsn = 0;
	enum gate_event ev = GATE_NONE;
	if (!want_sync && !want_rpo) {
		g->fallen = false;
		g->short_since_ns = 0;
		g->on = false;
		return GATE_NONE;
	}
	if (short_) {
		if (g->short_since_ns == 0)
			g->short_since_ns = now_ns;
		if (!g->fallen && c->fallback_ms > 0 && now_ns - g->short_since_ns >= c->fallback_ms * 1000000ull) {
			g->fallen = true;
			g->switches++;
			snprintf(g->why, sizeof(g->why), "%s for %llu ms: commits no longer wait (async)", why,
				 (unsigned long long)c->fallback_ms);
			ev = GATE_FELL_BACK;
		}
		if (g->fallen) {
			g->on = false;
			return ev;
		}
		/* strict: commits wait where the gate was */
		*on = true;
		*lsn = g->on ? g->lsn : 0;
		g->on = true;
		g->lsn = *lsn;
		return ev;
	}
	g->short_since_ns = 0;
	if (g->fallen) {
		/* back once the standbys have caught up: else every commit would wait for the backlog */
		uint64_t behind = durable > gate ? durable - gate : 0;
		if (gate != UINT64_MAX && behind > c->catch_up) {
			g->on = false;
			return GATE_NONE;
		}
		g->fallen = false;
		g->switches++;
		snprintf(g->why, sizeof(g->why), "the standbys are back and caught up: commits wait for them again");
		ev = GATE_RESUMED;
	}
	*on = true;
	/* it may go back (FIRST's first standby gone, the next one behind): commits that passed it
	 * were acknowledged as asked when they did; the next ones wait for the new set */
	*lsn = gate == UINT64_MAX ? durable : gate;
	g->on = true;
	g->lsn = *lsn;
	return ev;
}

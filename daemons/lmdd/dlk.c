/* The deadlock coordinator's protocol (see dlk.h). A cycle found in the graph may be made of
 * stale edges: a master reports at its own tick, and a wait it reported may have been granted
 * since, the lock in its way let go. So a cycle found is a suspect, and every master in it is
 * asked for its waits on that resource now (a probe). A session waiting in a cycle cannot let
 * go of what it holds, so a cycle whose every wait is still there, the same wait (lock and
 * since), in the answers held at each answer: it is real. */
#include "dlk.h"

#include "errors.h"

#include <stdlib.h>
#include <string.h>

#define PENDING 16             /* victims asked for lately: not chosen again meanwhile */
#define PENDING_MS 1000

struct suspect {
	uint64_t probe;            /* its probe's id; 0: the slot is free */
	uint64_t at_ms;
	int n, victim;
	struct wfg_edge cycle[WFG_CYCLE_MAX];
	bool fresh[WFG_CYCLE_MAX]; /* edge i's resource answered the probe */
	struct wfg_owner from;     /* the session it was found from (maybe not in it) */
	struct wfg_owner also[8];  /* sessions whose search found a cycle with this victim meanwhile */
	int nalso;
	bool by_sweep;             /* found by the sweep, not at a report */
};

struct dlk {
	struct dlk_conf conf;
	struct dlk_ops ops;
	struct wfg *g;
	struct suspect sus[DLK_SUSPECTS];
	/* a victim asked for is the wait at its master as it stood (lock, master and since): the
	 * same lock waiting again elsewhere (the rebuild put it back at a new master, the
	 * victim's refusal lost with the old one) is another wait, chosen again at once */
	struct pending {
		uint64_t lkid, since_ms, at_ms;
		uint32_t master;
	} pending[PENDING];
	uint64_t probe_seq, now_ms, swept_ms;
	uint32_t sweep_at;         /* the sweep's place in the graph's edges */
	bool sweeping;
	uint64_t lost;             /* nodes lost (bit id-1) */
	struct wfg_edge *kept;     /* a report without the lost nodes' waits */
	uint32_t nkept;
	struct dlk_stats st;
};

struct dlk *dlk_new(const struct dlk_conf *conf, const struct dlk_ops *ops)
{
	if (conf == NULL || ops == NULL || ops->probe == NULL || ops->victim == NULL || conf->max_edges == 0)
		return NULL;
	struct dlk *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->conf = *conf;
	if (d->conf.sweep_waiters == 0)
		d->conf.sweep_waiters = 1;
	d->ops = *ops;
	d->g = wfg_new(conf->max_edges);
	if (d->g == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

void dlk_free(struct dlk *d)
{
	if (d == NULL)
		return;
	wfg_free(d->g);
	free(d->kept);
	free(d);
}

static void dismiss_broken(struct dlk *d);

static bool is_lost(const struct dlk *d, uint32_t node) { return node >= 1 && node <= 64 && (d->lost >> (node - 1)) & 1; }

void dlk_node_lost(struct dlk *d, uint32_t node, bool lost)
{
	if (node < 1 || node > 64)
		return;
	if (lost) {
		d->lost |= 1ull << (node - 1);
		wfg_drop_waiter_node(d->g, node);
		dismiss_broken(d);
	} else {
		d->lost &= ~(1ull << (node - 1));
	}
}

const struct dlk_stats *dlk_stats(const struct dlk *d) { return &d->st; }
const struct wfg *dlk_graph(const struct dlk *d) { return d->g; }

uint32_t dlk_probing(const struct dlk *d)
{
	uint32_t n = 0;
	for (int i = 0; i < DLK_SUSPECTS; i++)
		n += d->sus[i].probe != 0;
	return n;
}

void dlk_drop_master(struct dlk *d, uint32_t master)
{
	wfg_drop_master(d->g, master);
	dismiss_broken(d);
}

static bool victim_pending(const struct dlk *d, const struct wfg_edge *e)
{
	for (int i = 0; i < PENDING; i++) {
		const struct pending *p = &d->pending[i];
		if (p->lkid == e->lkid && p->master == e->master && p->since_ms == e->since_ms &&
		    d->now_ms - p->at_ms < PENDING_MS)
			return true;
	}
	return false;
}

static bool same_res(const struct wfg_edge *a, const struct wfg_edge *b)
{
	return a->master == b->master && a->len == b->len && memcmp(a->name, b->name, a->len) == 0;
}

/* Every master of suspect s is asked for its waits on the resources of the cycle now, under
 * a new probe id (an answer to an older probe does not count). */
static void send_probes(struct dlk *d, struct suspect *s)
{
	s->probe = ++d->probe_seq;
	s->at_ms = d->now_ms;
	memset(s->fresh, 0, sizeof(s->fresh));
	for (int i = 0; i < s->n; i++) {
		bool asked = false;
		for (int j = 0; j < i && !asked; j++)
			asked = same_res(&s->cycle[j], &s->cycle[i]);
		if (!asked)
			d->ops.probe(d->ops.arg, s->cycle[i].master, s->cycle[i].name, s->cycle[i].len, s->probe);
	}
}

static void suspect_cycle(struct dlk *d, struct wfg_owner from, const struct wfg_edge *cyc, int len, int v)
{
	struct suspect *free_slot = NULL;
	for (int i = 0; i < DLK_SUSPECTS; i++) {
		struct suspect *s = &d->sus[i];
		const struct wfg_edge *sv = &s->cycle[s->victim];
		if (s->probe != 0 && sv->lkid == cyc[v].lkid && sv->master == cyc[v].master && sv->since_ms == cyc[v].since_ms) {
			/* this victim's cycle is being probed already; should it prove stale, the
			 * search from `from` is made again (another cycle may pass through it) */
			if (s->nalso < 8)
				s->also[s->nalso++] = from;
			return;
		}
		if (s->probe == 0 && free_slot == NULL)
			free_slot = s;
	}
	if (free_slot == NULL) {
		d->st.probes_lapsed++;  /* the sweep finds it again once a slot frees, if it is real */
		return;
	}
	free_slot->from = from;
	free_slot->nalso = 0;
	free_slot->by_sweep = d->sweeping;
	free_slot->n = len;
	free_slot->victim = v;
	memcpy(free_slot->cycle, cyc, (size_t)len * sizeof(cyc[0]));
	send_probes(d, free_slot);
}

/* A cycle through each of sessions w[0..n), looked for in the graph: one found (and not
 * already being broken) becomes a suspect. */
static void search_from(struct dlk *d, const struct wfg_owner *w, uint32_t n)
{
	struct wfg_edge cyc[WFG_CYCLE_MAX];
	for (uint32_t i = 0; i < n; i++) {
		bool again = false;
		for (uint32_t j = 0; j < i && !again; j++)
			again = w[j].node == w[i].node && w[j].session == w[i].session;
		if (again)
			continue;
		int len = wfg_cycle_from(d->g, w[i], cyc);
		if (len == 0)
			continue;
		int v = wfg_victim(cyc, len);
		if (!victim_pending(d, &cyc[v]))
			suspect_cycle(d, w[i], cyc, len, v);
	}
}

static bool whole(const struct dlk *d, const struct suspect *s)
{
	for (int k = 0; k < s->n; k++)
		if (!wfg_has(d->g, &s->cycle[k]))
			return false;
	return true;
}

/* Suspect s (its probe over) is not a deadlock any more. A real cycle through the same
 * victim, or through a session a search started from (the first cycle it finds may be this
 * stale one, and a shorter cycle may leave it out), may be there too: looked for again from
 * each, in the graph as it is now. */
static void dismiss(struct dlk *d, struct suspect *s)
{
	d->st.phantoms++;
	struct wfg_owner w[WFG_CYCLE_MAX + 9];
	int nw = s->n;
	for (int k = 0; k < nw; k++)
		w[k] = s->cycle[k].waiter;
	w[nw++] = s->from;
	for (int k = 0; k < s->nalso; k++)
		w[nw++] = s->also[k];
	search_from(d, w, (uint32_t)nw);
}

/* A master's answer to probe `probe` for name[len] is in the graph: the suspects it answers
 * for are settled once every resource in them has answered. */
static void probe_answered(struct dlk *d, uint32_t master, uint64_t probe, const uint8_t *name, size_t len)
{
	for (int i = 0; i < DLK_SUSPECTS; i++) {
		struct suspect *s = &d->sus[i];
		if (s->probe != probe)
			continue;
		bool all = true;
		for (int k = 0; k < s->n; k++) {
			const struct wfg_edge *e = &s->cycle[k];
			if (e->master == master && e->len == len && memcmp(e->name, name, len) == 0)
				s->fresh[k] = true;
			all = all && s->fresh[k];
		}
		if (!all)
			continue;
		s->probe = 0;
		if (whole(d, s)) {
			const struct wfg_edge *ve = &s->cycle[s->victim];
			if (victim_pending(d, ve))
				continue;
			struct pending *p = &d->pending[d->st.deadlocks % PENDING];
			p->lkid = ve->lkid;
			p->master = ve->master;
			p->since_ms = ve->since_ms;
			p->at_ms = d->now_ms;
			d->st.deadlocks++;
			d->st.swept += s->by_sweep;
			d->ops.victim(d->ops.arg, s->cycle, s->n, s->victim, s->by_sweep);
			continue;
		}
		dismiss(d, s);
	}
}

/* Suspects no longer whole in the graph after a master's reports went (it left the map, or a
 * node was lost) are dismissed at once: their probes could never all be answered, and a
 * cycle through the same waits at their new masters is looked for now, not at the lapse. */
static void dismiss_broken(struct dlk *d)
{
	for (int i = 0; i < DLK_SUSPECTS; i++) {
		struct suspect *s = &d->sus[i];
		if (s->probe != 0 && !whole(d, s)) {
			s->probe = 0;
			dismiss(d, s);
		}
	}
}

int dlk_report(struct dlk *d, uint32_t master, const uint8_t *name, size_t len, const struct wfg_edge *e, uint32_t n,
	       uint64_t probe, uint64_t now_ms)
{
	if (name == NULL || len == 0 || len > WFG_NAME_MAX || (n > 0 && e == NULL))
		return CORAL_EINVAL;
	d->now_ms = now_ms;
	if (d->lost) {
		/* a lost node's waits, from a master that has not learnt of its loss yet: left out */
		if (n > d->nkept) {
			struct wfg_edge *k = realloc(d->kept, n * sizeof(*k));
			if (k == NULL)
				return CORAL_ENOMEM;
			d->kept = k;
			d->nkept = n;
		}
		uint32_t m = 0;
		for (uint32_t i = 0; i < n; i++)
			if (!is_lost(d, e[i].waiter.node))
				d->kept[m++] = e[i];
		e = d->kept;
		n = m;
	}
	int rc = wfg_set(d->g, master, name, len, e, n);
	if (rc != 0) {
		d->st.full += rc == CORAL_EFULL;
		return rc;
	}
	if (probe != 0)
		probe_answered(d, master, probe, name, len);
	struct wfg_owner *w = malloc(((size_t)n + 1) * sizeof(*w));
	if (w == NULL)
		return 0;  /* the sweep looks at it */
	for (uint32_t i = 0; i < n; i++)
		w[i] = e[i].waiter;
	search_from(d, w, n);
	free(w);
	return 0;
}

void dlk_tick(struct dlk *d, uint64_t now_ms)
{
	d->now_ms = now_ms;
	/* a probe not answered within probe_ms (a message lost, a master gone) is sent again
	 * while its cycle is still whole in the graph, else dropped */
	for (int i = 0; i < DLK_SUSPECTS; i++) {
		struct suspect *s = &d->sus[i];
		if (s->probe == 0 || now_ms - s->at_ms < d->conf.probe_ms)
			continue;
		d->st.probes_lapsed++;
		if (whole(d, s))
			send_probes(d, s);
		else
			s->probe = 0;
	}
	/* The sweep: a slice of the graph's waiters searched again, so that a cycle the searches
	 * at each report missed (their order, a lost message, no room to probe it) is found
	 * within a bound all the same. */
	uint32_t ne = wfg_edges(d->g);
	if (d->conf.sweep_ms == 0 || now_ms - d->swept_ms < d->conf.sweep_ms || ne == 0)
		return;
	d->swept_ms = now_ms;
	uint32_t k = 0, max = d->conf.sweep_waiters;
	struct wfg_owner *w = malloc((size_t)max * sizeof(*w));
	if (w == NULL)
		return;
	if (d->sweep_at >= ne)
		d->sweep_at = 0;
	for (; d->sweep_at < ne && k < max; d->sweep_at++)
		w[k++] = wfg_edge_at(d->g, d->sweep_at)->waiter;
	d->sweeping = true;
	search_from(d, w, k);
	d->sweeping = false;
	free(w);
}

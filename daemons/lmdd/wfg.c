/* The global wait-for graph (wfg.h): the edges in one array, each tagged with the master and
 * resource that reported it, so that a report replaces exactly its own. A search for a
 * cycle walks the edges out of each session depth first (the graph is small: one edge per
 * pair of a waiting lock and a lock in its way). */
#include "wfg.h"

#include "errors.h"

#include <stdlib.h>
#include <string.h>

/* The edges are kept in order of their waiter (node, session), so that a search finds a
 * session's waits by bisection instead of a scan of the whole graph (a search visits many
 * sessions: scanning every edge for each made it the graph's size times the sessions). */
struct wfg {
	struct wfg_edge *e;
	struct wfg_edge *tmp;   /* wfg_set's merge */
	uint32_t n, cap;
};

static int owner_cmp(struct wfg_owner a, struct wfg_owner b)
{
	if (a.node != b.node)
		return a.node < b.node ? -1 : 1;
	return a.session < b.session ? -1 : a.session > b.session;
}

/* The first edge whose waiter is not before o. */
static uint32_t lower_bound(const struct wfg *g, struct wfg_owner o)
{
	uint32_t lo = 0, hi = g->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (owner_cmp(g->e[mid].waiter, o) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int edge_cmp(const void *a, const void *b)
{
	return owner_cmp(((const struct wfg_edge *)a)->waiter, ((const struct wfg_edge *)b)->waiter);
}

struct wfg *wfg_new(uint32_t max_edges)
{
	if (max_edges == 0)
		return NULL;
	struct wfg *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->e = calloc(max_edges, sizeof(*g->e));
	g->tmp = calloc(max_edges, sizeof(*g->tmp));
	if (g->e == NULL || g->tmp == NULL) {
		free(g->e);
		free(g->tmp);
		free(g);
		return NULL;
	}
	g->cap = max_edges;
	return g;
}

void wfg_free(struct wfg *g)
{
	if (g == NULL)
		return;
	free(g->e);
	free(g->tmp);
	free(g);
}

uint32_t wfg_edges(const struct wfg *g) { return g->n; }
const struct wfg_edge *wfg_edge_at(const struct wfg *g, uint32_t i) { return i < g->n ? &g->e[i] : NULL; }

static bool same_res(const struct wfg_edge *e, uint32_t master, const uint8_t *name, size_t len)
{
	return e->master == master && e->len == len && memcmp(e->name, name, len) == 0;
}

int wfg_set(struct wfg *g, uint32_t master, const uint8_t *name, size_t len, const struct wfg_edge *e, uint32_t n)
{
	if (len == 0 || len > WFG_NAME_MAX)
		return CORAL_EINVAL;
	uint32_t old = 0;
	for (uint32_t i = 0; i < g->n; i++)
		old += same_res(&g->e[i], master, name, len);
	if (g->n - old + n > g->cap)
		return CORAL_EFULL;
	uint32_t k = 0;
	for (uint32_t i = 0; i < g->n; i++)
		if (!same_res(&g->e[i], master, name, len))
			g->e[k++] = g->e[i];
	/* the new edges, in order, merged in (the rest stayed in order) */
	struct wfg_edge *add = g->tmp;
	for (uint32_t i = 0; i < n; i++) {
		add[i] = e[i];
		add[i].master = master;
		memcpy(add[i].name, name, len);
		add[i].len = (uint8_t)len;
	}
	qsort(add, n, sizeof(*add), edge_cmp);
	/* merged from the back into e (room for k + n): what is kept moves only up, over slots
	 * already read */
	uint32_t i = k, j = n, w = k + n;
	while (j > 0) {
		if (i > 0 && edge_cmp(&g->e[i - 1], &add[j - 1]) > 0)
			g->e[--w] = g->e[--i];
		else
			g->e[--w] = add[--j];
	}
	g->n = k + n;
	return 0;
}

void wfg_drop_master(struct wfg *g, uint32_t master)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < g->n; i++)
		if (g->e[i].master != master)
			g->e[k++] = g->e[i];
	g->n = k;
}

void wfg_drop_waiter_node(struct wfg *g, uint32_t node)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < g->n; i++)
		if (g->e[i].waiter.node != node)
			g->e[k++] = g->e[i];
	g->n = k;
}

static bool same_owner(struct wfg_owner a, struct wfg_owner b) { return a.node == b.node && a.session == b.session; }

/* Depth-first from `at`, the path so far in path[0..depth): true once an edge leads back to
 * the start. seen[]: the sessions already searched without success (as the waiter of edge i). */
static bool dfs(const struct wfg *g, struct wfg_owner start, struct wfg_owner at, struct wfg_edge *path, int depth,
		int *len, uint8_t *dead)
{
	if (depth >= WFG_CYCLE_MAX)
		return false;
	for (uint32_t i = lower_bound(g, at); i < g->n && same_owner(g->e[i].waiter, at); i++) {
		const struct wfg_edge *e = &g->e[i];
		if (dead[i])
			continue;
		path[depth] = *e;
		if (same_owner(e->holder, start)) {
			*len = depth + 1;
			return true;
		}
		bool on_path = false;
		for (int d = 0; d < depth && !on_path; d++)
			on_path = same_owner(path[d].waiter, e->holder);
		if (on_path)
			continue;  /* a cycle that does not pass through start: another search finds it */
		if (dfs(g, start, e->holder, path, depth + 1, len, dead))
			return true;
		dead[i] = 1;   /* nothing back to start beyond this edge */
	}
	return false;
}

/* The position of owner o as a waiter in cycle[0..len), or -1. */
static int pos_in(const struct wfg_edge *cycle, int len, struct wfg_owner o)
{
	for (int i = 0; i < len; i++)
		if (same_owner(cycle[i].waiter, o))
			return i;
	return -1;
}

/* A cycle with a chord (an edge from one of its sessions to another further round than the
 * next) is cut down to the shorter cycle through the chord, until none is left. Why: the
 * search can walk the long way round, through a session that waits only behind another's
 * request (queued ahead of it); chosen as the victim, it would be refused while the cycle
 * through the chord went on. */
static int shorten(const struct wfg *g, struct wfg_edge *cycle, int len)
{
	for (;;) {
		int best_k = 1, bi = -1, bj = -1;
		uint32_t be = 0;
		for (int c = 0; c < len; c++)
		for (uint32_t x = lower_bound(g, cycle[c].waiter); x < g->n && same_owner(g->e[x].waiter, cycle[c].waiter); x++) {
			int i = c;
			int j = pos_in(cycle, len, g->e[x].holder);
			if (j < 0)
				continue;
			int k = (j - i + len) % len;
			if (k > best_k) {
				best_k = k;
				bi = i;
				bj = j;
				be = x;
			}
		}
		if (bi < 0)
			return len;
		/* the chord, then the cycle from its holder round to the chord's waiter */
		struct wfg_edge tmp[WFG_CYCLE_MAX];
		int n = 0;
		tmp[n++] = g->e[be];
		for (int p = bj; p != bi; p = (p + 1) % len)
			tmp[n++] = cycle[p];
		memcpy(cycle, tmp, (size_t)n * sizeof(tmp[0]));
		len = n;
	}
}

int wfg_cycle_from(const struct wfg *g, struct wfg_owner from, struct wfg_edge *cycle)
{
	if (g->n == 0)
		return 0;
	uint8_t *dead = calloc(g->n, 1);
	if (dead == NULL)
		return 0;
	int len = 0;
	bool found = dfs(g, from, from, cycle, 0, &len, dead);
	free(dead);
	return found ? shorten(g, cycle, len) : 0;
}

uint32_t wfg_waiters(const struct wfg *g, struct wfg_owner *out, uint32_t max)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < g->n && n < max; i++)
		if (i == 0 || !same_owner(g->e[i - 1].waiter, g->e[i].waiter))
			out[n++] = g->e[i].waiter;  /* (a waiter's edges are together) */
	return n;
}

bool wfg_has(const struct wfg *g, const struct wfg_edge *e)
{
	for (uint32_t i = lower_bound(g, e->waiter); i < g->n && same_owner(g->e[i].waiter, e->waiter); i++) {
		const struct wfg_edge *x = &g->e[i];
		if (same_res(x, e->master, e->name, e->len) && x->lkid == e->lkid && x->since_ms == e->since_ms &&
		    same_owner(x->holder, e->holder))
			return true;
	}
	return false;
}

int wfg_victim(const struct wfg_edge *cycle, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++) {
		const struct wfg_edge *a = &cycle[i], *b = &cycle[best];
		bool better = a->prio != b->prio ? a->prio < b->prio
			      : a->held != b->held ? a->held < b->held
			      : a->since_ms != b->since_ms ? a->since_ms > b->since_ms
			      : a->waiter.node != b->waiter.node ? a->waiter.node > b->waiter.node
								  : a->waiter.session > b->waiter.session;
		if (better)
			best = i;
	}
	return best;
}

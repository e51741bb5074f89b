/* The global wait-for graph, as the deadlock coordinator keeps it (pure, no I/O): every
 * master reports, for each resource whose waits changed, the edges "this waiting lock's
 * session waits for that session" it sees there (wholly replacing what it said of that
 * resource before); the graph is the union. After each report the coordinator asks for a
 * cycle through the sessions that report touched: a deadlock, whose victim is the wait that
 * costs least to undo (ges.c refuses it with CORAL_EDEADLK at its master). */
#ifndef CORAL_LMDD_WFG_H
#define CORAL_LMDD_WFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WFG_NAME_MAX 64
#define WFG_CYCLE_MAX 32

struct wfg_owner {
	uint32_t node;
	uint64_t session;
};

struct wfg_edge {
	struct wfg_owner waiter, holder;
	uint32_t master;        /* where the waiting lock is queued */
	uint64_t lkid;          /* the waiting lock (its requester node's id) */
	uint64_t since_ms;      /* when it began waiting (the master's clock) */
	uint32_t held;          /* locks the waiter's session holds on that master */
	int32_t prio;           /* the waiter's session's priority (the lowest is the victim first) */
	uint8_t name[WFG_NAME_MAX];
	uint8_t len;
};

struct wfg;

/* At most max_edges edges at once (a report that would pass it is refused). */
struct wfg *wfg_new(uint32_t max_edges);
void wfg_free(struct wfg *g);
/* Master `master`'s edges for resource name[len] are now e[0..n) (n 0: none). 0, or
 * CORAL_EFULL (nothing changed). */
int wfg_set(struct wfg *g, uint32_t master, const uint8_t *name, size_t len, const struct wfg_edge *e, uint32_t n);
/* Everything master `master` reported goes (it left, or reports all again). */
void wfg_drop_master(struct wfg *g, uint32_t master);
/* Every wait of a session of node `node` goes (the node was lost). */
void wfg_drop_waiter_node(struct wfg *g, uint32_t node);
uint32_t wfg_edges(const struct wfg *g);
/* Edge i (0 <= i < wfg_edges), in the order of their waiters (node, session). */
const struct wfg_edge *wfg_edge_at(const struct wfg *g, uint32_t i);
/* A cycle of waits found from session `from` (its edges in order, up to WFG_CYCLE_MAX), or
 * 0. It has no chord: one found through a session that a shorter cycle skips is cut down to
 * that one (which may not pass through `from`). */
int wfg_cycle_from(const struct wfg *g, struct wfg_owner from, struct wfg_edge *cycle);
/* The distinct waiting sessions, up to max, into out; how many. */
uint32_t wfg_waiters(const struct wfg *g, struct wfg_owner *out, uint32_t max);
/* Whether the graph holds edge e as it stood: the same master, resource, waiting lock and
 * wait (since_ms), waiter and holder. */
bool wfg_has(const struct wfg *g, const struct wfg_edge *e);
/* The edge of the cycle to break: the wait of the lowest priority, then the one that undoes
 * least — its session holds the fewest locks, then it has waited the shortest (the newest),
 * then the highest node and session. */
int wfg_victim(const struct wfg_edge *cycle, int n);

#endif

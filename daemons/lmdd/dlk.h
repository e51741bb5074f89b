/* The deadlock coordinator's protocol, as a pure core (no I/O, no clock of its own): the
 * wait-for graph the masters' reports make (wfg.h), the cycles found in it, each a suspect
 * until every master in it has answered a probe with its waits now, the victims asked for,
 * and the sweep that finds cycles the searches at each report missed. lmdd feeds it reports
 * and ticks and sends what it asks through dlk_ops; the GES model test (tests/sim) drives
 * the same code. The reasoning is in lmdd(8), DEADLOCKS. */
#ifndef CORAL_LMDD_DLK_H
#define CORAL_LMDD_DLK_H

#include "wfg.h"

#include <stdbool.h>
#include <stdint.h>

#define DLK_SUSPECTS 16        /* cycles being probed at once */

struct dlk_conf {
	uint32_t max_edges;        /* the graph's bound (a report beyond it is not looked at) */
	uint32_t probe_ms;         /* a probe not answered by then is sent again, or dropped */
	uint32_t sweep_ms;         /* the sweep's interval (0: no sweep) */
	uint32_t sweep_waiters;    /* waiters searched from at each sweep */
};

struct dlk_ops {
	/* Ask master for its waits on name[len] now, answered with dlk_report(..., probe). */
	void (*probe)(void *arg, uint32_t master, const uint8_t *name, size_t len, uint64_t probe);
	/* A deadlock: cycle[0..n), whose wait cycle[v] is to be refused at its master.
	 * by_sweep: found by the sweep, not when it closed. */
	void (*victim)(void *arg, const struct wfg_edge *cycle, int n, int v, bool by_sweep);
	void *arg;
};

struct dlk_stats {
	uint64_t deadlocks;        /* cycles confirmed, victims asked for */
	uint64_t phantoms;         /* cycles gone when probed */
	uint64_t probes_lapsed;    /* probes not answered in time, or no room to probe */
	uint64_t swept;            /* deadlocks the sweep found first */
	uint64_t full;             /* reports refused: the graph was full */
};

struct dlk;

struct dlk *dlk_new(const struct dlk_conf *conf, const struct dlk_ops *ops);
void dlk_free(struct dlk *d);
/* Master `master`'s waits on name[len] are now e[0..n) (probe: the probe this answers, 0 for
 * none). 0, or CORAL_EFULL (the graph is full: not looked at), CORAL_EINVAL. */
int dlk_report(struct dlk *d, uint32_t master, const uint8_t *name, size_t len, const struct wfg_edge *e, uint32_t n,
	       uint64_t probe, uint64_t now_ms);
/* Everything master reported goes (it left the map). */
void dlk_drop_master(struct dlk *d, uint32_t master);
/* Node `node` was lost (lost: true) or is a member again: a lost node's sessions wait for
 * nothing any more (their requests go at every master as it learns of the loss), so their
 * waits are dropped, and left out of every report until then, from masters that have not
 * learnt of it yet: a cycle through one is no deadlock (what it holds goes at its recovery). */
void dlk_node_lost(struct dlk *d, uint32_t node, bool lost);
/* Lapsed probes, and the sweep. */
void dlk_tick(struct dlk *d, uint64_t now_ms);
const struct dlk_stats *dlk_stats(const struct dlk *d);
const struct wfg *dlk_graph(const struct dlk *d);
uint32_t dlk_probing(const struct dlk *d);

#endif

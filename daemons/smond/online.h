/* smond: the recovery of a node lost while others run (see online.c). The loop starts one
 * when grdd counts a loss in the directory and collects it when its thread is done; the
 * status request reads the one under way. */
#ifndef SMOND_ONLINE_H
#define SMOND_ONLINE_H

#include "cluster.h"
#include "conf.h"
#include "grd.h"
#include "history.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define ONLINE_MS 20 /* how often the loop looks for a loss, or at the recovery under way */

enum online_phase { ONL_FENCE = 1, ONL_REBUILD, ONL_CLAIM, ONL_READ, ONL_RELEASE, ONL_APPLY, ONL_PEERS, ONL_CLOSE,
		   ONL_CLAIMER, ONL_FLUSH };

struct smond_online {
	const struct coral_conf *conf;
	const struct coral_node_conf *node;
	struct coral_grd_dir *dir;
	struct coral_grd_map_sga *map;
	struct coral_cluster_sga *cl;
	struct rcv_history *history;    /* each recovery, once over, is recorded here */
	/* the recovery under way: its thread, and what it has done so far (ev under mu) */
	pthread_t th;
	bool running;
	_Atomic bool finished, stop;
	_Atomic int phase;
	_Atomic uint64_t blocks, blocks_done;
	uint64_t mask;                  /* the lost nodes it recovers (bit id-1) */
	uint64_t seqs[CORAL_MAX_NODES]; /* ... the count of each one's loss */
	char who[96];                   /* "node 3", "nodes 2 and 3" */
	uint64_t started_ns, apply_ns;
	pthread_mutex_t mu;
	struct rcv_event ev;
};

int smond_online_init(struct smond_online *o);
/* In the loop: collects a finished recovery, starts the next one due. */
void smond_online_step(struct smond_online *o);
/* Stops the one under way (at its next step) and waits for it. */
void smond_online_fini(struct smond_online *o);
/* The recovery under way: false if none. */
bool smond_online_current(struct smond_online *o, struct rcv_event *ev, const char **phase, uint64_t *done,
			  uint64_t *eta_ms);

/* A node starting again after its previous incarnation was lost: waits (bounded by wait_ms)
 * until the survivors have recovered its thread (its checkpoint at the thread's end, end).
 * 0 when recovered, CORAL_ETIMEDOUT if not by then. */
int smond_online_wait_own(const struct coral_conf *conf, uint32_t thread, uint64_t end, int64_t wait_ms);

#endif

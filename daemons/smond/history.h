/* smond: what its recoveries did, kept for coralctl recovery status|history (a bounded ring:
 * the last RECOVERY_HISTORY, oldest dropped first). */
#ifndef SMOND_HISTORY_H
#define SMOND_HISTORY_H

#include <stdint.h>

#define RECOVERY_HISTORY 64

struct rcv_event {
	char kind[24];         /* "cold start", "lost node", "dead transaction", "ended session"
				* (revoked by rsrcmgrd), "not recovered" */
	uint64_t at_ms;        /* wall clock, when it began */
	char result[200];      /* "done", or what stopped it */
	uint32_t threads;
	uint64_t records, bytes, blocks, applied, skipped, txns, txns_open, undone, kept;
	uint64_t read_ms, apply_ms, total_ms;
	uint32_t session;
	int32_t pid;
	/* a lost node's recovery: ms from detection to the end of each phase */
	uint32_t lost_node;
	uint64_t lost_inc;
	bool claimer;
	uint64_t fence_ms, rebuild_ms, first_pass_ms, release_ms, done_ms;
};

struct rcv_history {
	struct rcv_event ev[RECOVERY_HISTORY];
	uint64_t n;            /* ever recorded */
};

static inline void rcv_history_add(struct rcv_history *h, const struct rcv_event *e)
{
	h->ev[h->n++ % RECOVERY_HISTORY] = *e;
}

#endif

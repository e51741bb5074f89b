/* grdd's core: mastering, remastering and rebuild as a state machine that does no I/O. The
 * daemon (grdd.c) and the model test (tests/sim/grd-sim.c) feed it messages from other
 * nodes, committed map records, the cluster view and the clock, and carry out what it asks
 * through the ops: send a message, store a record in raftd's config store with
 * compare-and-swap, answer a client. The directory and the map it works on are given as
 * pointers, in the SGA for the daemon and on the heap for the model.
 *
 * A move (join, manual, affinity): the coordinator (the grdd next to the Raft leader)
 * sends FREEZE to each current master of what moves; each freezes only those buckets and
 * resources, ships their entries to the new masters under the bandwidth budget; each new
 * master stages them and reports READY; when every pair is ready the coordinator commits
 * the next map version with compare-and-swap. A node that applies a version newer than the
 * one it froze at unfreezes: the moved entries are dropped at the old master and made live
 * at the new one. Before the commit a move can be cancelled (ABORT); a frozen master whose
 * coordinator goes quiet commits a version that moves nothing, so the coordinator's own
 * compare-and-swap fails and nothing stays frozen.
 *
 * A leave (eviction, removal): no state can be shipped from the lost node. The next version
 * drops it and lists it as lost; the new masters of its buckets rebuild them from what every
 * survivor reports it holds there; a resource in such a bucket that nobody reports needs
 * instance recovery and is refused until the lost node is marked recovered. */
#ifndef CORAL_GRDD_CORE_H
#define CORAL_GRDD_CORE_H

#include "conf.h"
#include "grd.h"
#include "grd_msg.h"
#include "map.h"

#include <stdbool.h>
#include <stdint.h>

#define GRD_HISTORY 256
#define GRD_QUEUE 64
#define GRD_RECENT_MOVES 16

enum grd_store_kind { GRD_STORE_INIT = 1, GRD_STORE_MOVE, GRD_STORE_LEAVE, GRD_STORE_ABANDON,
		      GRD_STORE_RECOVERED };

struct grd_answer {
	uint32_t master;
	uint64_t version;
	int mode;
	uint32_t attempts;
	uint64_t elapsed_us;
};

struct grd_core_ops {
	/* to may be the node itself: the caller delivers that back through grd_core_recv */
	int (*send)(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len);
	/* put GRD_MAP_KEY = buf if its mod index is expect_index; completes with
	 * grd_core_store_done(cookie). Returns nonzero if it could not even be sent. */
	int (*store)(void *arg, const uint8_t *buf, size_t len, uint64_t expect_index, uint64_t cookie);
	void (*answer)(void *arg, uint64_t cookie, int code, const char *error, const struct grd_answer *a);
	void (*remastered)(void *arg, uint64_t cookie, int code, const char *error,
			   const Coral__GrdRemasterReply *r);
	void (*log)(void *arg, int level, const char *msg);   /* level: a CORAL_LOG_* */
	void *arg;
};

struct grd_member {
	uint32_t id;
	uint64_t incarnation;
	uint64_t instance;  /* its SGA: a new one is a restarted node */
	bool active;
	bool reachable;   /* its grdd answers on the interconnect */
};

struct grd_stats {
	uint64_t requests, granted, retried, refused, served, not_master, frozen_refusals;
	uint64_t recovery_refusals, full_refusals, proposals, dropped_unowned, shipped_entries;
	uint64_t shipped_bytes, staged_entries, rebuilt_entries, abandoned, store_conflicts;
	uint64_t msgs_refused;
	uint64_t records_refused;   /* map records that disagree with raftd's membership: never applied */
};

struct grd_core;

struct grd_core *grd_core_new(uint32_t self, const struct coral_grd_conf *conf,
			      struct coral_grd_map_sga *map, struct coral_grd_dir *dir,
			      struct coral_grd_dir *held, const struct grd_core_ops *ops);
void grd_core_free(struct grd_core *c);
/* How long the coordinator holds a leave of restarted members for a silent kept member
 * (coordinate.c): as long as raftd may take to evict that member if it is dead too. */
void grd_core_set_leave_hold(struct grd_core *c, uint64_t ms);

/* The cluster as raftd sees it: the leader (whose grdd coordinates), whether this node is
 * fenced, and every member with its incarnation. */
void grd_core_set_cluster(struct grd_core *c, uint32_t leader, bool fenced,
			  const struct grd_member *m, size_t n);
/* The committed map record (GRD_MAP_KEY at index), or none (buf NULL) once the store has
 * been read and the key is absent. Older versions are ignored. */
void grd_core_apply(struct grd_core *c, const uint8_t *buf, size_t len, uint64_t index);
void grd_core_store_done(struct grd_core *c, uint64_t cookie, int code, uint64_t index);
void grd_core_recv(struct grd_core *c, uint32_t from, uint8_t type, const uint8_t *data, size_t len);
/* Sets the clocks without doing the tick's work (the daemon calls it before each input). */
void grd_core_clock(struct grd_core *c, uint64_t now_ms, uint64_t wall_ms);
/* now_ms: a monotonic clock; wall_ms: the real clock, only written into records. */
void grd_core_tick(struct grd_core *c, uint64_t now_ms, uint64_t wall_ms);

/* Client requests: acquire (op 1) or release (op 2) a resource from this node. */
int grd_core_lock(struct grd_core *c, const struct coral_resid *id, int op, int mode, uint64_t cookie);
/* coralctl grd remaster / cancel / recovered, on any node (forwarded to the coordinator). */
void grd_core_remaster(struct grd_core *c, const Coral__GrdRemasterRequest *req, uint64_t cookie);

/* Would this node grant a request for id now? (the model test's invariant) */
bool grd_core_serving(struct grd_core *c, const struct coral_resid *id);
uint64_t grd_core_version(const struct grd_core *c);
uint32_t grd_core_coordinator(const struct grd_core *c);
const struct grd_stats *grd_core_stats(const struct grd_core *c);
/* One line on the move this node coordinates, or "" */
void grd_core_move_line(const struct grd_core *c, char *buf, size_t n);
/* History of applied versions, oldest first; returns the number copied. */
size_t grd_core_history(const struct grd_core *c, Coral__GrdHistoryItem *out, size_t max);
/* Fills a GrdEntry from a directory entry (arrays point into *storage). */
struct grd_entry_buf {
	Coral__GrdRes id;
	Coral__GrdHolder h[CORAL_MAX_NODES], *hp[CORAL_MAX_NODES];
	Coral__GrdConvert cv[CORAL_GRD_CONVQ], *cvp[CORAL_GRD_CONVQ];
	Coral__GrdAffinity af[CORAL_GRD_AFF], *afp[CORAL_GRD_AFF];
};
void grd_entry_to_msg(const struct coral_grd_entry *e, Coral__GrdEntry *m, struct grd_entry_buf *b);

#endif

/* replicad's two sides of redo shipping, wired on its event loop (the protocol's core is
 * ship.c, the messages repl_msg.c), and the standby's apply (standby_apply.c).
 *
 * The senders (a primary node, primary.c and sender.c): one connection to each standby of
 * [replication] standby for this node's redo thread. The standby speaks first (a
 * challenge), the sender proves the token and says which thread, the standby proves it too
 * and says what its copy holds; then the durable bytes of the thread are read from its files
 * in shared storage and sent in ranges, at most a window unacknowledged, lz4 when it shrinks
 * them, and the standby acknowledges what it made durable. The set holds the log writer's
 * recycling at what the standbys have (their slots, each up to [replication]
 * slot_max_bytes) and keeps the gate synchronous commits wait at.
 *
 * The receiver (a standby node): listens on base_port+7; one connection per primary thread
 * (a newer one for the same thread replaces the older); the copies are kept under
 * SHARED_DIR/standby/PRIMARY_CLUSTER/redo/thread_N, appended where they end, synced once
 * per batch of messages, acknowledged after the sync. */
#ifndef CORAL_REPLICAD_REPL_H
#define CORAL_REPLICAD_REPL_H

#include "conf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* What a standby's receiver (the event loop) knows that its apply (a thread of its own)
 * reads: the primary's threads (from the hellos), how far each copy is durable, the last
 * mark of each; and back, the highest SCN the apply has seen (the acks' hint). */
struct standby_feed {
	pthread_mutex_t mu;
	bool known[CORAL_MAX_NODES + 1];
	uint64_t durable[CORAL_MAX_NODES + 1];
	uint64_t mark_lsn[CORAL_MAX_NODES + 1], mark_scn[CORAL_MAX_NODES + 1];
	_Atomic uint64_t max_scn;
	_Atomic bool finished;         /* the apply finished (a failover): no more redo is taken */
	_Atomic uint64_t primary_epoch; /* the highest site epoch a primary's hello said */
	_Atomic uint64_t took_over;    /* this standby took over at this site epoch (0: not) */
	/* the primary said the copy needs seeding (a thread's redo it lacks is recycled there):
	 * the thread and its LSN, 0 when not (a seed clears it) */
	_Atomic uint32_t need_seed_thread;
	_Atomic uint64_t need_seed_lsn;
};

struct coral_daemon;
struct coral_redo;
struct log_writer;
struct receiver;

/* A primary node's standbys (primary.c): NULL with nothing to do (no standby named), or on
 * error (logged; *rc the code). */
struct ship_set;
struct ship_set *ship_set_new(struct coral_daemon *d, struct coral_redo *redo, struct log_writer *w, int *rc);
/* The log writer made more durable (any thread may call it). */
void ship_set_kick(struct ship_set *set);
void ship_set_free(struct ship_set *set);

struct receiver *receiver_new(struct coral_daemon *d, int *rc);
void receiver_free(struct receiver *r);
struct standby_feed *receiver_feed(struct receiver *r);
/* Before a seed: thread t's copy is to begin at LSN from (the primary's checkpoint) if it
 * holds nothing before it (a copy that is empty starts there; its connection is closed so
 * that the primary resumes from there). false: the copy ends before from with something in
 * it (it goes on from where it is). */
bool receiver_seed_thread(struct receiver *r, uint32_t t, uint64_t from);
/* A switchover (switchover.c): step (ReplSwitch) sent to thread t's primary node, 0 or
 * CORAL_ECONN without a connection; and what the thread says: its connection (a count that
 * moves with each new one: 0 none), whether the node said its thread is closed and where it
 * ends, and what the copy has durable. */
int receiver_switch_send(struct receiver *r, uint32_t t, uint32_t step, uint64_t epoch, const char *why);
void receiver_switch_state(struct receiver *r, uint32_t t, uint64_t *conn, bool *ready, uint64_t *end,
			   uint64_t *durable);
void receiver_switch_clear(struct receiver *r);

/* The standby's apply (standby_apply.c): a thread of its own that reads the copies up to
 * what is durable, applies what apply.c releases to the copy of the data files under
 * SHARED/standby/PRIMARY/, and keeps its state there (apply.state); seeding makes that copy. */
struct applier;
struct applier *applier_new(struct coral_daemon *d, struct receiver *r, int *rc);
void applier_free(struct applier *a);
/* Starts a seed from the primary's shared storage at source (checked first: 0, or an error
 * and why in msg); its end shows in the status. */
int applier_seed(struct applier *a, const char *source, char *msg, size_t msgsz);
/* The primary is gone (a failover): applies everything the copies hold, every horizon
 * lifted, and takes no more redo from the primary, for good. 0, or an error and why. */
int applier_finish(struct applier *a, char *msg, size_t msgsz);
/* The primary is gone: finish, then the copy's data files become this cluster's own under
 * the next site epoch; the old primary is fenced when it comes back. */
int applier_failover(struct applier *a, char *msg, size_t msgsz);
/* The site epoch this standby took over at (0: not), and whether it is seeded and applying
 * (not finished). */
uint64_t applier_took_over(struct applier *a);
bool applier_applying(struct applier *a);
struct Coral__StandbyApply;
/* strings point into buffers of the caller's (state, source: 256 bytes each) */
void applier_status(struct applier *a, struct Coral__StandbyApply *out, char *state, char *source);

/* The threads each side ships or keeps, as status entries (at most max; strings point into
 * the side's state, valid until its next event). */
#include "repl.pb-c.h"
#include <stddef.h>
size_t ship_set_threads(struct ship_set *set, Coral__StandbyThread *out, size_t max);
void ship_set_commit(struct ship_set *set, Coral__StandbyCommit *out);
size_t receiver_threads(struct receiver *r, Coral__StandbyThread *out, size_t max, uint64_t *bad_hellos);

#endif

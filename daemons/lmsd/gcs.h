/* The Global Cache Service as a state machine that does no I/O of its own: lmsd (lmsd.c) and
 * the model test (tests/sim/gcs_sim.c) feed it session requests, messages from other nodes
 * and the clock, and carry out what it asks through the ops (send, read or write a block,
 * force the redo log). Its state is the buffer cache (the node's images and modes) and,
 * for the blocks this node masters, entries in the resource directory. Both are given as
 * pointers: in the SGA for the daemon, on the heap for the model.
 *
 * The protocol. A requester sends REQ(rid) to the block's master. The master serialises the
 * requests for a block: it queues them in order and runs one operation at a time, numbered
 * by gen. For X it first invalidates the S holders (INV, INV_ACK); then the current image
 * comes from the disk (GRANT: read it), from the requester's own copy (GRANT: keep), or from
 * the node holding it (FWD): that node ships it straight to the requester (BLOCK), keeping a
 * past image if it was dirty (its redo is forced first). The requester installs the block and
 * answers the master (ACK), which completes the operation and starts the next. A master that
 * is the holder ships itself: two messages (2-way) instead of three (3-way).
 *
 * Loss: every message is retried from one end. The requester resends REQ until the block
 * comes; the master resends the current phase of an operation (INV, FWD or GRANT) until it
 * is acknowledged. Receivers tell stale from current by gen (a holder ignores a FWD or INV
 * older than the grant it holds; the master ignores an ACK or INV_ACK not of the operation in
 * progress) and duplicates by rid (a requester that already has the block only ACKs again).
 * A holder asked to ship what it no longer has says NOT_HERE: it dropped the image after
 * writing it back, so the disk is current. Nothing is granted twice: the master moves a mode
 * only when the operation's ACK comes, and only one operation per block is under way.
 *
 * Write-back: the holder of the current image writes it (checkpoint or replacement) and
 * reports WRITTEN(scn) to the master, which tells the past-image holders to drop images at
 * or below that SCN (PI_DROP, PI_ACK).
 *
 * A node's loss (gcs_core_node_lost, on every survivor). As a holder, a survivor ships
 * nothing to the lost node from then on. As a master: the lost node leaves every queue;
 * an invalidation that waited for it goes on without it; an operation for it that had not
 * reached the transfer is dropped. The blocks of buckets the lost node mastered are rebuilt
 * here: REPORT_REQ asks each survivor (this node too) for what it holds of them; it answers
 * with REPORTs of up to 200 images each (mode or past image, and the highest operation number
 * it has seen), a few at a time so that no queue overflows, and REPORT_END with their count;
 * asked again until the count matches. The current holder is then the X holder, else an S
 * holder (S images are all the same image); a block that only past images remain of needs
 * instance recovery. A transfer to the lost node under way from a survivor's image is
 * settled by asking that survivor (QUERY, answered with a REPORT): if it still holds the
 * block, the operation is dropped and nothing needs recovery; if it shipped it, the lost
 * node had the current image and the block needs recovery. Once all is settled,
 * gcs_core_loss_settled says so; smond recovers the blocks marked CORAL_GRDE_RECOVERY and
 * clears the mark. A requester never waits on the master's memory of the lost node: queued
 * requests start when their requester asks again. */
#ifndef CORAL_LMSD_GCS_H
#define CORAL_LMSD_GCS_H

#include "bufcache.h"
#include "grd.h"
#include "gcs_msg.h"

#include <stdbool.h>
#include <stdint.h>

#define GCS_MODE_CR 3                 /* a session's read-only copy */
#define GCS_MAX_WAITS 1024            /* blocks this node is asking for at once */
#define GCS_MAX_WAITERS 64            /* sessions waiting for one block */

/* How a session's request was served (latency is kept for each). */
enum gcs_served { GCS_SERVED_LOCAL = 1, GCS_SERVED_2WAY, GCS_SERVED_3WAY, GCS_SERVED_DISK,
		  GCS_SERVED_CR, GCS_SERVED_NKINDS };

/* A block a checkpoint writes: its image (header sealed with scn by the writer). */
struct gcs_write {
	uint32_t file;
	uint64_t block, scn;
	uint8_t *data;
};

/* Blocks one checkpoint writes at most (the rest at the next, at once); their images are
 * copied for the writer, GCS_CKPT_BATCH blocks of memory. */
#define GCS_CKPT_BATCH 256

struct gcs_ops {
	/* to may be this node: the caller delivers that back through gcs_core_recv */
	int (*send)(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len);
	uint32_t (*master)(void *arg, uint32_t file, uint64_t block, uint64_t *version);
	/* reads a block from its data file, checked; 0 or a CORAL_E* code */
	int (*read)(void *arg, uint32_t file, uint64_t block, uint8_t *data);
	/* writes a block (header sealed with scn); durable only after sync */
	int (*write)(void *arg, uint32_t file, uint64_t block, uint8_t *data, uint64_t scn);
	int (*sync)(void *arg);
	/* a checkpoint's blocks written and synced without waiting: 0 and gcs_core_synced
	 * follows with the result (the images stay where they are until then), or an error (then
	 * ops.write and ops.sync are used); NULL: those only */
	int (*flush_start)(void *arg, const struct gcs_write *w, uint32_t n);
	/* the node's redo up to lsn: 0 if it is durable already, 1 if it became durable in the
	 * call, CORAL_EPENDING if the log writer was asked and gcs_core_log_ready follows once it
	 * is durable (lmsd never waits in its loop), or a negative CORAL_E* code */
	int (*log_force)(void *arg, uint64_t lsn);
	/* a session's request is over: code 0 with the buffer (pinned: 0 none, 1 shared, 2
	 * exclusive) or an error */
	void (*done)(void *arg, uint64_t cookie, int code, uint32_t buf, int pinned, int served);
	void (*log)(void *arg, int level, const char *msg);   /* level: a CORAL_LOG_* */
	/* the lost node whose bucket the block's was (coral_grd_where.lost_owner), or 0; NULL:
	 * none ever (the model test without losses) */
	uint32_t (*lost_owner)(void *arg, uint32_t file, uint64_t block);
	/* whether a node is on the directory's ring (a member of the published map); NULL: every
	 * node is. A node not on it yet is served nothing: lost then, it is not recorded as
	 * lost (it mastered nothing), so nothing of it may need recovery. */
	bool (*on_ring)(void *arg, uint32_t node);
	void *arg;
};

#define GCS_HIST 160
struct gcs_hist {
	uint64_t n, sum_us;
	uint32_t b[GCS_HIST];
};
void gcs_hist_add(struct gcs_hist *h, uint64_t us);
uint64_t gcs_hist_pct(const struct gcs_hist *h, double pct);

struct gcs_stats {
	uint64_t requests, local_hits, two_way, three_way, disk_reads, busy, retries, lost, stale;
	uint64_t invalidations, pi_kept, pi_dropped, writes, write_errors, log_forces, cr_served;
	uint64_t inv_held;      /* INVs left unanswered: the dirty image could not be written */
	uint64_t log_waits;     /* ships and INVs that waited for their redo to become durable */
	uint64_t write_waits;   /* blocks the checkpoint found pinned or shipping, written at the unpin */
	uint64_t shipped, deferred, mastered, not_master, timeouts, full, refused_msgs;
	struct gcs_hist lat[GCS_SERVED_NKINDS];
};

struct gcs_core;

struct gcs_core *gcs_core_new(uint32_t self, struct coral_cache *cache, struct coral_grd_dir *dir,
			      const struct gcs_ops *ops, uint32_t retry_ms, uint32_t timeout_ms);
void gcs_core_free(struct gcs_core *c);
/* The arg of the ops it was made with (the daemon, for its receive path). */
void *gcs_core_arg(const struct gcs_core *c);

/* The clock (milliseconds for timers, microseconds for latency); set before each input. */
void gcs_core_clock(struct gcs_core *c, uint64_t now_us);

/* A session asks for a block in mode (CORAL_BL_S, CORAL_BL_X or GCS_MODE_CR). Answered
 * through ops.done, at once or later. */
void gcs_core_get(struct gcs_core *c, uint32_t file, uint64_t block, int mode, uint64_t cookie);
/* A message from node `from` (this node included); type is GCS_NET_MSG (others are refused). */
void gcs_core_recv(struct gcs_core *c, uint32_t from, uint8_t type, const uint8_t *data, size_t len);
/* The redo asked for by a log force has become durable (or the log writer has failed):
 * the ships and invalidations waiting for it go on. */
void gcs_core_log_ready(struct gcs_core *c);
/* Retries, timeouts, transfers that waited for pins, and past-image drops still owed. */
void gcs_core_tick(struct gcs_core *c);
/* Node `lost`, incarnation inc, is out (raftd evicted it); survivors: the active members
 * (bit id-1), this node included; seq: the directory's count of the loss, given back by
 * gcs_core_loss_settled. Again for the same incarnation: nothing new. */
void gcs_core_node_lost(struct gcs_core *c, uint32_t lost, uint64_t inc, uint64_t seq, uint64_t survivors);
/* A lost node of that incarnation is back (a new incarnation is a member): it is shipped to
 * again. */
void gcs_core_node_back(struct gcs_core *c, uint32_t node);
/* This node's own incarnation was evicted: every image in the cache goes, unwritten (a pinned
 * one stays until its pin goes, in mode N and clean), and what was under way with it. */
void gcs_core_self_lost(struct gcs_core *c);
/* Whether the loss of `lost` is settled at this master (*seq: its count). */
bool gcs_core_loss_settled(const struct gcs_core *c, uint32_t lost, uint64_t *seq);
/* Whether every image here that may hold the lost node's changes unwritten (a dirty image
 * that came dirty from another node, or a past image, when the loss was learnt) is on disk
 * now, or no longer held here (*seq: the loss's count; *left: the blocks still to write). */
bool gcs_core_loss_flushed(const struct gcs_core *c, uint32_t lost, uint64_t *seq, uint32_t *left);
/* Transfers waiting for a session's pin: their count (lmsd polls them sooner while any). */
uint32_t gcs_core_deferred(const struct gcs_core *c);
/* Writes back every dirty current image that is not pinned and whose redo is durable;
 * returns how many were written. With ops.sync_start the sync runs off the loop and the
 * images are clean (and their masters told) at gcs_core_synced; no checkpoint starts while
 * one's sync is under way. */
int gcs_core_checkpoint(struct gcs_core *c);
void gcs_core_synced(struct gcs_core *c, int rc);
/* The redo thread's checkpoint: the least first-change LSN of the images here (current or
 * past) whose changes are not all on disk, or tail (the thread's end, read before: a change
 * begun since is marked with an LSN at or past it) if there is none. */
uint64_t gcs_core_ckpt_lsn(struct gcs_core *c, uint64_t tail);

const struct gcs_stats *gcs_core_stats(const struct gcs_core *c);
uint32_t gcs_core_waits(const struct gcs_core *c);

#endif

/* The buffer cache in the SGA: a configured number of block buffers, one header each, hash
 * chains with a robust latch per chain, the node's SCN and the cache's counters. Sessions
 * (libcoral) look blocks up and pin them under the chain latch without a system call when
 * the node's mode already covers what they want; everything that changes a buffer's mode,
 * contents from outside or chain membership is done by lmsd alone (its GCS core), also under
 * the latch. So a buffer's state is: read under the latch by anyone, written under the latch
 * by lmsd, except the data of a buffer pinned exclusively, which its session writes.
 *
 * Replacement (lmsd): a clock sweep over buffers that are not pinned, not past images still
 * needed, not waiting to be shipped; a dirty current image is written back first. */
#ifndef CORAL_BUFCACHE_H
#define CORAL_BUFCACHE_H

#include "sga.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_BUF_XPIN 0x80000000u   /* pins: exclusive pin bit; the rest counts shared pins */

enum {
	CORAL_BUFF_VALID = 1 << 0,     /* holds an image of (file, block) */
	CORAL_BUFF_DIRTY = 1 << 1,     /* newer than the disk: this node must write it back */
	CORAL_BUFF_PI = 1 << 2,        /* a past image: kept until a newer image is on disk */
	CORAL_BUFF_SHIPWAIT = 1 << 3,  /* a transfer waits for the pins to go: no new pins */
	CORAL_BUFF_CR = 1 << 4,        /* a consistent-read copy: read-only, not known to the master */
	CORAL_BUFF_UNACKED = 1 << 5,   /* the master has not confirmed our ACK of the grant: the
					* buffer is kept (not released) until it does */
	CORAL_BUFF_SYNCING = 1 << 6,   /* written back, its data file's sync under way: it does
					* not leave the node before (another node's newer write
					* could otherwise be overwritten by this one's) */
	CORAL_BUFF_WRITEWAIT = 1 << 7, /* the checkpoint found it dirty and exclusively pinned (or
					* about to be shipped): no new exclusive pin until lmsd has
					* copied it to write (a hot block is written all the same) */
};
enum { CORAL_ROLE_LOCAL, CORAL_ROLE_GLOBAL };

struct coral_buf {
	uint32_t file;
	uint32_t next;                 /* hash chain: index + 1, 0 ends */
	uint64_t block;
	_Atomic uint32_t pins;         /* shared pin count | CORAL_BUF_XPIN */
	_Atomic uint32_t wake;         /* futex word, bumped on every unpin */
	_Atomic uint32_t waiters;      /* sessions sleeping on wake */
	uint8_t mode;                  /* CORAL_BL_N/S/X granted to this node */
	uint8_t role;                  /* local until the image has been dirty on two nodes */
	uint16_t flags;                /* CORAL_BUFF_* */
	uint64_t scn;                  /* SCN of the image (of its last change) */
	uint64_t gen;                  /* the master's operation that granted the mode */
	uint64_t redo_lsn;             /* redo up to here covers the image: forced before a ship */
	uint64_t rid;                  /* the request the image came with */
	/* a transfer asked for while the buffer was pinned (lmsd only) */
	uint64_t ship_rid, ship_gen;
	uint32_t ship_to;
	uint8_t ship_mode, ship_kind;
	uint8_t ref;                   /* clock reference bit */
	uint8_t ack_pi;                /* UNACKED: the ACK's "the sender kept a PI" */
	uint32_t ack_from;             /* UNACKED: the node that shipped it (0: disk); a CR copy:
					* the node that served it (sessions read it again there) */
	uint32_t clone;                /* X-pinned by an open transaction that changed it: index + 1
					* of its consistent image (the image before the transaction's
					* first change), 0: none. Set by the pin's holder, dropped
					* with the X pin, both under the latch */
	uint64_t ack_ms;               /* UNACKED: when the ACK was last sent */
	/* where this node's redo of the changes to the image not yet on disk begins, plus one
	 * (0: none; a thread's first record is at LSN 0): set by the session that dirties it,
	 * before its redo is appended; cleared when the image is written, or freed. The thread's
	 * checkpoint is the least of these. */
	uint64_t first_lsn;
} __attribute__((aligned(64)));

struct coral_cache_stats {
	_Atomic uint64_t gets, local_hits, misses, fills, evictions, writes, write_errors;
	_Atomic uint64_t pin_waits, full, cr_copies;
	_Atomic uint64_t dead_sessions, dead_pins;   /* pins of sessions whose process died, released */
	_Atomic uint64_t dead_txns, dead_txn_changes; /* their open transactions smond took back */
	_Atomic uint64_t revoked;                     /* live sessions revoked (rsrcmgrd), reclaimed */
	/* consistent images of blocks under change: made, served to readers, not made because
	 * every one was in use (those readers wait for the change's end), lost ones given back */
	_Atomic uint64_t clones, clone_reads, clone_full, clone_leaks;
};

/* A consistent image of a block an open transaction has changed (Oracle builds the same from
 * undo): made by the transaction's session from the buffer just before its first change of
 * the block, so that a consistent read of it — on this node, or asked by another node — is
 * answered at once with the last committed image instead of waiting for the transaction's
 * end. A fixed number ([cache] cr_clones) in the SGA: with none free the change goes on
 * without one and readers of that block wait as before (counted in clone_full). `state` is
 * 0 when free, else the buffer's index + 1 in its upper half and the image's allocation
 * number in its lower: taken and given back only under the block's chain latch. */
struct coral_clone {
	_Atomic uint64_t state;
	uint64_t scn;                  /* the image's SCN */
};

/* The sessions of the node's processes and the pins each holds, so that lmsd can release the
 * pins of a session whose process died (as PMON cleans up after a dead process): a pinned
 * buffer is never shipped, written or evicted, and a pin nobody will drop would hold its
 * block on this node for good. A pin is recorded in the same hold of the block's chain latch
 * that takes it (by the session on the fast path, by lmsd when it pins for a session) and
 * cleared in the one that drops it, so lmsd, under that latch, never releases a pin twice. */
#define CORAL_CACHE_SESSIONS 1024     /* session slots per node */
#define CORAL_CACHE_SLOT_PINS 64      /* pins per session (libcoral's CORAL_SESSION_MAX_PINS) */
#define CORAL_PINREC_X 0x80000000u    /* a record: buffer index + 1, | this bit for an X pin */
struct coral_sess_slot {
	_Atomic int32_t pid;           /* 0: free; -pid while the process claims it */
	uint32_t id;                   /* the session's number (redo records, lmsd requests) */
	uint64_t start;                /* coral_pid_start() of the process: a reused pid is not it */
	_Atomic uint32_t spinning;     /* counted in the cache's spinners */
	/* the process died with a transaction open (txn_first set): lmsd leaves the slot and
	 * its pins to smond, which takes the transaction back, then releases them and frees
	 * the slot (1: waiting for smond) */
	_Atomic uint32_t txn_dead;
	/* the open transaction's first change: the thread's LSN before it, plus one (0: none).
	 * The thread's checkpoint stays at or before it, so that recovery finds the undo of
	 * every change of a transaction that may still roll back. */
	_Atomic uint64_t txn_first;
	_Atomic uint32_t pins[CORAL_CACHE_SLOT_PINS];
	/* Revoking a live session (rsrcmgrd(8), LIMITS: a session ended by the resource manager):
	 * its transaction taken back, its pins and locks released, as for a dead process, while
	 * the process lives on with its session open (its calls fail). busy counts the session's
	 * libcoral calls under way; revoked is CORAL_REVOKE_* bits. Nothing of the slot is touched
	 * while busy: a call sees the revocation as it enters (both sides are sequentially
	 * consistent: either the call sees it, or the reaper sees the call). */
	_Atomic uint32_t busy;
	_Atomic uint32_t revoked;
};

#define CORAL_REVOKE_ASKED 1u   /* the reaper takes it over once no call is under way */
#define CORAL_REVOKE_DONE 2u    /* its transaction, pins and locks are gone */
#define CORAL_REVOKE_CLOSED 4u  /* the session closed first: the reaper frees the slot when done */

struct coral_cache {
	uint32_t nbuf, nchain, block_size, pad;
	uint64_t off_bufs, off_latches, off_heads, off_data, off_sess; /* from the start of this struct */
	uint64_t off_clones, off_clone_data;
	uint32_t nclone;               /* [cache] cr_clones */
	_Atomic uint32_t clone_hint;   /* where the next search for a free one starts */
	_Atomic uint32_t clones_used;
	_Atomic uint64_t scn;          /* the node's SCN: a Lamport clock */
	uint32_t hand;                 /* clock hand (lmsd) */
	uint32_t free_head;            /* index + 1 of the first buffer never used (lmsd) */
	_Atomic uint32_t valid, dirty, pis;
	_Atomic int32_t lmsd_pid;
	_Atomic uint32_t spinners;     /* sessions spinning for lmsd's answer ([cache] spin_us) */
	_Atomic uint64_t since_inc;    /* the node's incarnation when this cache began to serve (lmsd):
					* evicted since (coral_cluster_evicted_inc), it is void */
	struct coral_cache_stats st;
};

/* Whether the cache's images belong to an incarnation of the node that was evicted (the
 * other nodes recover what it held): nothing of it may be written, shipped or changed. */
static inline bool coral_cache_void(struct coral_cache *c, uint64_t evicted_inc)
{
	uint64_t since = atomic_load(&c->since_inc);
	return since != 0 && evicted_inc >= since;
}

size_t coral_cache_size(uint32_t nbuf, uint32_t block_size, uint32_t nclone);
/* Initialises a cache in memory of coral_cache_size() bytes (the SGA, or the heap for tests). */
int coral_cache_init(struct coral_cache *c, size_t size, uint32_t nbuf, uint32_t block_size, uint32_t nclone);

size_t coral_cache_sga_size(const struct coral_conf *conf);
int coral_cache_sga_init(void *section, size_t size, const struct coral_conf *conf,
			 const struct coral_node_conf *node);
void coral_cache_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_cache *coral_cache_sga(const struct coral_sga *sga);

static inline struct coral_buf *coral_cache_buf(struct coral_cache *c, uint32_t i)
{
	return (struct coral_buf *)((char *)c + c->off_bufs) + i;
}
static inline uint8_t *coral_cache_data(struct coral_cache *c, uint32_t i)
{
	return (uint8_t *)c + c->off_data + (size_t)i * c->block_size;
}
static inline uint32_t coral_cache_index(struct coral_cache *c, const struct coral_buf *b)
{
	return (uint32_t)(b - coral_cache_buf(c, 0));
}
static inline struct coral_sess_slot *coral_cache_sess(struct coral_cache *c, uint32_t i)
{
	return (struct coral_sess_slot *)((char *)c + c->off_sess) + i;
}
/* A session slot for the calling process's session id (its index), or -1 when all
 * CORAL_CACHE_SESSIONS are taken. */
int coral_cache_sess_claim(struct coral_cache *c, uint32_t id);
/* Frees the slot as its session closes (a revoked slot not yet reclaimed: when it is). */
void coral_cache_sess_free(struct coral_cache *c, int slot);
/* A call of the session enters: CORAL_ECANCELED if its slot is revoked (nothing held any
 * more), else 0 and the call is counted in busy until coral_cache_sess_leave. */
int coral_cache_sess_enter(struct coral_cache *c, int slot);
void coral_cache_sess_leave(struct coral_cache *c, int slot);
/* Asks for the revocation of slot `slot` if it still holds session `id` of a live process:
 * 0, or CORAL_ENOENT (not that session any more). */
int coral_cache_sess_revoke(struct coral_cache *c, int slot, uint32_t id);
/* Whether the reaper may reclaim the slot now as if its process had died: revocation asked,
 * not done, and no call under way. */
bool coral_cache_sess_revocable(struct coral_sess_slot *s);
/* The reaper (lmsd, or smond for an open transaction) has released what a revoked slot held:
 * freed if its session closed meanwhile, else marked done (its close frees it). */
void coral_cache_sess_revoke_done(struct coral_sess_slot *s);
uint32_t coral_cache_chain(const struct coral_cache *c, uint32_t file, uint64_t block);
void coral_cache_lock(struct coral_cache *c, uint32_t chain);
void coral_cache_unlock(struct coral_cache *c, uint32_t chain);
/* Tests only (NULL elsewhere): called after every unlock, where a session on another CPU
 * could step in; the GCS model runs a session's fast path there. */
extern void (*coral_cache_unlock_hook)(struct coral_cache *c);

/* With the chain latch held: the current buffer of a block (not a past image nor a CR copy),
 * or its past image (pi true). NULL if none. */
struct coral_buf *coral_cache_find(struct coral_cache *c, uint32_t file, uint64_t block, bool pi);

/* The node that served a CR copy of the block still in this cache (0: none): where sessions
 * may read the block's next CR copies themselves. Takes the latch. */
uint32_t coral_cache_cr_source(struct coral_cache *c, uint32_t file, uint64_t block);

/* The hash chains' heads (buffer index + 1, 0 ends), one per chain, each under its latch:
 * lmsd links and unlinks buffers (lmsd/cache.c), everyone else only follows them. */
uint32_t *coral_cache_heads(struct coral_cache *c);

/* Pins under the latch: shared (mode S reads) or exclusive (X writes). False if pins held
 * by others conflict. */
bool coral_buf_try_pin(struct coral_buf *b, bool exclusive);
/* Drops a pin (takes the latch itself) and wakes sessions waiting for one; rec, if not NULL,
 * is the pin's record in a session slot, cleared in the same latch hold. */
void coral_cache_unpin(struct coral_cache *c, struct coral_buf *b, bool exclusive);
void coral_cache_unpin_rec(struct coral_cache *c, struct coral_buf *b, bool exclusive, _Atomic uint32_t *rec);
/* Drops the pin recorded at rec if the record still reads v (a pin record of a session
 * slot: buffer index + 1, CORAL_PINREC_X for an exclusive pin), clearing it in the same
 * latch hold; false if it changed meanwhile. */
bool coral_cache_unpin_if(struct coral_cache *c, struct coral_buf *b, _Atomic uint32_t *rec, uint32_t v);
/* Sleeps until the buffer's pins change or timeout_ms passes (futex on wake). */
void coral_buf_wait(struct coral_buf *b, uint32_t seen, int timeout_ms);
/* Wakes the sessions waiting on b (coral_buf_wait) after a mark that held them went. */
void coral_buf_wake(struct coral_buf *b);

/* Consistent images. With the chain latch held by the session that holds b in X, before its
 * transaction's first change of it: b's image kept as its consistent image (0; also if one is
 * kept already), or CORAL_EFULL when every one is in use (counted; readers then wait). */
int coral_cache_clone_make(struct coral_cache *c, struct coral_buf *b);
/* With the chain latch held: b's consistent image (its bytes, the whole block, and *scn), or
 * NULL when it has none (not pinned in X by a transaction that changed it, or none was free). */
const uint8_t *coral_cache_clone_of(struct coral_cache *c, const struct coral_buf *b, uint64_t *scn);
/* lmsd, now and then: images whose buffer no longer points at them (a process that died in
 * the latch hold that took one) are given back; the number given back. */
uint32_t coral_cache_clone_sweep(struct coral_cache *c);

/* The SCN: next for a change, and merged with one that came in a message. */
uint64_t coral_scn_next(struct coral_cache *c);
/* A commit's SCN on a buffer it changed, before the buffer's pin goes (libcoral's commit,
 * smond's rollback of a dead process's transaction): whoever changes it next, here or on
 * another node, does so above the commit. Never lowers it. */
void coral_cache_stamp_scn(struct coral_cache *c, struct coral_buf *b, uint64_t scn);
uint64_t coral_scn_observe(struct coral_cache *c, uint64_t seen);
static inline uint64_t coral_scn_current(const struct coral_cache *c)
{
	return atomic_load_explicit(&c->scn, memory_order_acquire);
}

#endif

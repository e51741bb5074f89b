/* The SGA section of lmdd's requester side: the locks the node's sessions hold or wait for,
 * wherever they are mastered, and the fast table of the resources this node masters. It
 * lives in the SGA, not in lmdd, so that a restarted lmdd still knows them: it puts every
 * one back at its master (lmdd(8), RESTART), finds the sessions that ended meanwhile, and
 * answers their next conversion or unlock.
 *
 * The fast path (lmdd(8), FAST PATH): a session grants itself a lock on a resource this
 * node masters, converts and unlocks it, without a system call, while nothing waits on the
 * resource. Such a lock is an own lock in state CORAL_GES_OWN_FAST, listed in its resource's
 * entry of the fast table; the entry and the lock are written under the entry's bucket
 * mutex only (robust: a process that dies holding it leaves the bucket marked dirty, and
 * nothing is fast there until lmdd has repaired it). As soon as a request would have to
 * wait, or comes from another node, lmdd takes the resource over (imports its fast locks
 * into its queues: they become CORAL_GES_OWN_LMDD) and the entry says so (slow) until the
 * resource is idle again. Every other own lock is lmdd's alone to write. */
#ifndef CORAL_GES_OWN_H
#define CORAL_GES_OWN_H

#include "conf.h"
#include "sga.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_GES_OWN_MAX 8192     /* locks of the node's sessions at once */
#define CORAL_GES_NAME_MAX 64
#define CORAL_GES_LVB 32

#define CORAL_GES_FAST_BUCKETS 1024 /* the fast table's buckets, each with its mutex */
#define CORAL_GES_FAST_WAYS 4       /* resources a bucket has entries for */
#define CORAL_GES_FAST_HOLDERS 8    /* fast locks on one resource at once */
#define CORAL_GES_BUCKET_BYTES (65536 / 8) /* a bit for each of grdd's buckets (grd.h) */

/* An own lock's state (its `used`): claimed by compare-and-swap, so that sessions (fast
 * locks) and lmdd (the others) take free ones side by side. */
enum { CORAL_GES_OWN_FREE, CORAL_GES_OWN_LMDD, CORAL_GES_OWN_FAST };

struct coral_ges_own_lock {
	_Atomic uint8_t used;
	uint8_t dying, has_lvb, len;
	int8_t mode;              /* granted (-1: not yet) */
	uint8_t orphan;           /* an operation waited when the lmdd before died: it is
				   * cancelled once the lock is put back */
	int8_t prio;              /* its session's priority for deadlock victims */
	uint8_t async;            /* the operation under way was asked asynchronously: it ends
				   * as an event on the session's subscription */
	uint32_t session, slot;   /* the session's id and its slot index + 1 */
	uint32_t master;          /* where it was last sent */
	uint32_t op, want, flags, timeout_ms, resends;
	uint16_t fast_b;          /* a fast lock's bucket + 1, written last: 0 while it is made */
	uint64_t lkid;
	uint64_t cookie;          /* the session's request waiting (lmdd's own table: not valid
				   * after a restart of lmdd) */
	uint64_t resend_ms;
	uint8_t name[CORAL_GES_NAME_MAX];
	uint8_t lvb[CORAL_GES_LVB];   /* the value the operation under way writes */
	/* the value block as this lock last read (granted with CORAL_LOCK_VALBLK) or wrote it:
	 * told to a new master by the rebuild, which takes it from a CW, PR, PW or EX holder */
	uint8_t lvb_cur[CORAL_GES_LVB];
	uint8_t lvb_cur_valid;
	uint64_t tag;             /* the session's number for the lock call that made it */
	/* since when (monotonic ms) its master has said it is in the way of a queued request
	 * (a blocking notification), 0: in nobody's way; the master says when that ends. Read
	 * by rsrcmgrd for the idle-blocker limit. */
	_Atomic uint64_t blocking_ms;
};

/* A resource in the fast table: its fast locks (own lock index + 1) and value block, or
 * (slow) lmdd has it in its queues and every request goes there. One with no fast lock is
 * kept while its value block has a state (written, or made invalid), as lmdd keeps it. */
struct coral_ges_fast_res {
	uint8_t used, slow, len, nholders;
	uint8_t lvb_valid, lvb_written;
	uint16_t holders[CORAL_GES_FAST_HOLDERS];
	uint8_t name[CORAL_GES_NAME_MAX];
	uint8_t lvb[CORAL_GES_LVB];
};

struct coral_ges_fast_bucket {
	pthread_mutex_t mu;
	uint32_t overflow;        /* resources lmdd has here with no entry: nothing new is fast */
	uint8_t dirty;            /* a process died holding mu: nothing fast until repaired */
	struct coral_ges_fast_res res[CORAL_GES_FAST_WAYS];
} __attribute__((aligned(64)));

struct coral_ges_own {
	uint32_t capacity;
	_Atomic uint32_t nused;
	_Atomic uint64_t next_seq; /* lock ids are made from it: never reused on the node */
	int32_t lmdd_pid;         /* the lmdd that last served (0: none yet) */
	uint32_t nbuckets;
	/* the map version the fast path is open for (0: closed), set by lmdd once every lock
	 * is back at its master for it */
	_Atomic uint64_t fast_version;
	/* what the fast path did: grants, conversions, unlocks, NOQUEUE refusals, calls sent to
	 * lmdd instead (fallbacks), resources lmdd took over, buckets repaired */
	_Atomic uint64_t fast_grants, fast_converts, fast_unlocks, fast_refused, fast_fallbacks;
	_Atomic uint64_t fast_imports, fast_repairs;
	uint64_t buckets_off;     /* the fast table, from the section's start */
	/* grdd buckets whose resources may have had a value block at a lost master (one that
	 * this node got from a lost node, or from a node that had it so): a resource new here
	 * in one starts with its value block not valid, never zeros taken for that value.
	 * lmdd writes it as the map moves; sessions read it (bit b % 8 of byte b / 8). */
	uint8_t inherited[CORAL_GES_BUCKET_BYTES];
	struct coral_ges_own_lock locks[];
};

size_t coral_ges_own_sga_size(const struct coral_conf *conf);
int coral_ges_own_sga_init(void *section, size_t size, const struct coral_conf *conf, const struct coral_node_conf *node);
void coral_ges_own_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_ges_own *coral_ges_own_sga(const struct coral_sga *sga);

static inline struct coral_ges_fast_bucket *coral_ges_fast_buckets(struct coral_ges_own *o)
{
	return (struct coral_ges_fast_bucket *)((uint8_t *)o + o->buckets_off);
}

/* Where the resource name[len] is in grdd's map and the fast table: its resource id (as
 * for blocks, of type "EQ") and its bucket. */
struct coral_resid;
void coral_ges_resid(const void *name, size_t len, struct coral_resid *r);
uint32_t coral_ges_fast_bucket_of(const void *name, size_t len);

/* Whether grdd's bucket b may have held a value block lost with its master. */
static inline bool coral_ges_inherited(const struct coral_ges_own *o, uint32_t b)
{
	return b < CORAL_GES_BUCKET_BYTES * 8 && (__atomic_load_n(&o->inherited[b / 8], __ATOMIC_RELAXED) >> (b % 8)) & 1;
}

/* The DLM's compatibility of two modes (0 NL .. 5 EX), and whether `to` is at most as
 * strong as `from` (it gets along with everything `from` does). */
extern const bool coral_ges_compat_matrix[6][6];
bool coral_ges_not_stronger(int to, int from);

/* An own lock claimed in `state` (its lock id new, the rest zero, mode -1), or NULL when
 * every one is taken. */
struct coral_ges_own_lock *coral_ges_own_claim(struct coral_ges_own *o, uint8_t state);
void coral_ges_own_free(struct coral_ges_own *o, struct coral_ges_own_lock *l);
/* Lock lkid if it is in use (in either state), else NULL. */
struct coral_ges_own_lock *coral_ges_own_find(struct coral_ges_own *o, uint64_t lkid);

/* Takes bucket b's mutex (a dead holder's bucket is marked dirty): false if it cannot be
 * taken (a mutex that cannot be made consistent: logged; nothing is done there). */
bool coral_ges_fast_lock_bucket(struct coral_ges_own *o, uint32_t b);
void coral_ges_fast_unlock_bucket(struct coral_ges_own *o, uint32_t b);
/* The entry of name[len] in bucket b, or NULL. */
struct coral_ges_fast_res *coral_ges_fast_find(struct coral_ges_fast_bucket *bk, const void *name, size_t len);

/* The session's side of the fast path. CORAL_GES_SLOW: not here, ask lmdd (the resource is
 * mastered elsewhere, lmdd has it, the request would wait, the table is full, the fast path
 * is closed); otherwise the call's answer: 0, or CORAL_EHELD for a NOQUEUE request in the
 * way of a fast lock (a conversion refused so keeps its mode). `self` is the node, `map`
 * grdd's. flags are GES_F_*: only VALBLK and NOQUEUE change anything here. */
#define CORAL_GES_SLOW 1
#define CORAL_GES_F_NOQUEUE (1u << 0) /* lmdd's GES_F_* (ges.h) */
#define CORAL_GES_F_VALBLK (1u << 3)
struct coral_grd_map_sga;
int coral_ges_fast_lock(struct coral_ges_own *o, const struct coral_grd_map_sga *map, uint32_t self,
			const void *name, size_t len, int mode, unsigned flags, uint32_t session, uint32_t slot,
			int prio, uint64_t *lkid, uint8_t *lvb, bool *lvb_valid);
int coral_ges_fast_convert(struct coral_ges_own *o, uint64_t lkid, uint32_t session, uint32_t slot, int mode,
			   unsigned flags, const uint8_t *lvb_write, uint8_t *lvb_read, bool *lvb_valid);
int coral_ges_fast_unlock(struct coral_ges_own *o, uint64_t lkid, uint32_t session, uint32_t slot,
			  const uint8_t *lvb_write);
/* Takes fast lock l (its bucket's mutex held) out of its entry and frees it: lost=true when
 * its session died (a PW or EX one leaves the value block invalid). */
void coral_ges_fast_drop(struct coral_ges_own *o, struct coral_ges_own_lock *l, bool lost);

#endif

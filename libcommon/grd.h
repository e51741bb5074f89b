/* The global resource directory's shared structures: resource ids, lock modes, the bucket
 * map and the directory itself. grdd is the only writer of the map; lmsd, lmdd, grdd and
 * coralctl read it from the SGA without IPC. The directory holds the master-side state of
 * the resources this node masters (and, in a second table of the same shape, what this node
 * holds), in bounded tables with a latch per bucket.
 *
 * Mastering: resource -> bucket = hash(resource) % 65536; bucket -> master by consistent
 * hashing of the committed member list onto a ring of 256 virtual nodes per node, looked up
 * with 8 probes per bucket (multi-probe consistent hashing: a bucket goes to the virtual node
 * nearest after any of its 8 probe points). One probe is plain consistent hashing, whose
 * spread with 256 virtual nodes is about 6% (1/sqrt(256)) per node, so 3 or 16 nodes land
 * outside +-10% of even; 8 probes bring the worst node within 4% while keeping the property
 * that a join moves buckets only to the new node and a leave only from the leaver. Explicit
 * overrides (bucket -> node, resource -> node) come on top. */
#ifndef CORAL_GRD_H
#define CORAL_GRD_H

#include "conf.h"
#include "sga.h"
#include "sync.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_GRD_BUCKETS 65536u
/* The key of grdd's map record in raftd's config store (grdd writes it; raftd reads it for a
 * rejoin). */
#define CORAL_GRD_MAP_KEY "grd/map"
#define CORAL_GRD_VNODES 256u
#define CORAL_GRD_PROBES 8u
#define CORAL_GRD_CONVQ 8
#define CORAL_GRD_AFF 4
#define CORAL_GRD_LVB 32
#define CORAL_GRD_MAX_LOST 16

/* A resource: a two-letter type and two ids, as in Oracle's [id1, id2, type]. A block is
 * BL:file:block; an enqueue any other type (TX, TM, UL...). */
struct coral_resid {
	uint16_t type;
	uint16_t pad;
	uint32_t id1;
	uint64_t id2;
};
#define CORAL_RES_TYPE(a, b) ((uint16_t)(((uint16_t)(uint8_t)(a) << 8) | (uint8_t)(b)))
#define CORAL_RES_BLOCK CORAL_RES_TYPE('B', 'L')

static inline bool coral_resid_is_block(const struct coral_resid *r)
{
	return r->type == CORAL_RES_BLOCK;
}
static inline bool coral_resid_eq(const struct coral_resid *a, const struct coral_resid *b)
{
	return a->type == b->type && a->id1 == b->id1 && a->id2 == b->id2;
}
uint64_t coral_resid_hash(const struct coral_resid *r);
static inline uint32_t coral_resid_bucket(const struct coral_resid *r)
{
	return (uint32_t)(coral_resid_hash(r) % CORAL_GRD_BUCKETS);
}
/* "BL:1:42", "TX:7:9". Returns 0 or CORAL_EINVAL with the reason in err. */
int coral_resid_parse(const char *s, struct coral_resid *out, char *err, size_t errsz);
void coral_resid_format(const struct coral_resid *r, char *buf, size_t n);

/* Modes. Blocks: N, S, X. Enqueues: NL, CR, CW, PR, PW, EX (compatibility as in the DLM).
 * Mode 0 is "not held" for both. */
enum { CORAL_BL_N, CORAL_BL_S, CORAL_BL_X, CORAL_BL_NMODES };
enum { CORAL_LK_NL, CORAL_LK_CR, CORAL_LK_CW, CORAL_LK_PR, CORAL_LK_PW, CORAL_LK_EX, CORAL_LK_NMODES };
bool coral_grd_compatible(bool block, int held, int want);
const char *coral_grd_mode_name(bool block, int mode);
int coral_grd_mode_parse(bool block, const char *s);   /* -1 if unknown */
/* Modes whose holder may have changed the protected data: lost with their holder. */
bool coral_grd_mode_writes(bool block, int mode);

/* ---- the bucket map --------------------------------------------------------------- */

/* What the map is (owners per bucket, overrides, lost nodes) is computed and published by
 * grdd (daemons/grdd/map.c); every other program only looks it up. */

/* A node lost without handing over its buckets: the buckets it mastered are rebuilt, and a
 * resource in them that no survivor reports needs instance recovery. */
struct coral_grd_lost {
	uint32_t node;
	uint64_t incarnation;
	uint64_t since_version;
	uint32_t nring;                 /* the members of the version before the loss */
	uint32_t ring[CORAL_MAX_NODES];
};

/* The map as published in the SGA. */
struct coral_grd_map_sga {
	struct coral_seq seq;           /* grdd writes under it; readers retry */
	uint64_t version;               /* 0: no map agreed yet; nothing is mastered */
	uint64_t record_index;          /* raftd index of the record it came from */
	uint64_t published_ns;
	uint32_t nmembers;
	uint32_t members[CORAL_MAX_NODES];
	uint32_t nlost;
	struct coral_grd_lost lost[CORAL_GRD_MAX_LOST];
	uint32_t res_cap;               /* slots in the resource-override table (power of two) */
	uint32_t nres;
	uint32_t nbo;
	uint8_t owner[CORAL_GRD_BUCKETS];   /* node id per bucket, overrides applied */
	uint8_t lost_owner[CORAL_GRD_BUCKETS]; /* lost node whose bucket this was, or 0 */
	/* counters (grdd writes, coralctl and metrics read; not under seq) */
	_Atomic uint64_t remasters[8];  /* by cause, enum coral_grd_cause */
	_Atomic uint64_t remastered_buckets, remastered_resources, remaster_bytes;
	_Atomic uint64_t moves_cancelled, moves_failed;
	/* then res_cap slots of struct coral_grd_res_slot */
};

struct coral_grd_res_slot {
	struct coral_resid id;
	uint32_t node;                  /* 0: empty */
	uint32_t lost;                  /* mastered by this lost node through an override: the
					 * bucket's master rebuilds it */
};

enum coral_grd_cause {
	CORAL_GRD_CAUSE_INIT, CORAL_GRD_CAUSE_JOIN, CORAL_GRD_CAUSE_LEAVE, CORAL_GRD_CAUSE_MANUAL,
	CORAL_GRD_CAUSE_AFFINITY, CORAL_GRD_CAUSE_ABANDON, CORAL_GRD_CAUSE_RECOVERED,
	CORAL_GRD_NCAUSES
};
const char *coral_grd_cause_name(int cause);

size_t coral_grd_map_sga_size(const struct coral_conf *conf);
int coral_grd_map_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node);
void coral_grd_map_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_grd_map_sga *coral_grd_map_sga(const struct coral_sga *sga);

/* The resource-override slots after the map (grdd's publication writes them). */
struct coral_grd_res_slot *coral_grd_map_slots(const struct coral_grd_map_sga *m);
uint32_t coral_grd_map_slot_of(const struct coral_grd_map_sga *m, const struct coral_resid *id);

/* The master of a resource: node id (0 when no map is agreed yet), the map version it was
 * read at, and the lost node if the bucket belonged to one. Lock-free. */
struct coral_grd_where {
	uint32_t master;
	uint64_t version;
	uint32_t bucket;
	uint32_t lost_owner;
	bool overridden;
};
void coral_grd_lookup(const struct coral_grd_map_sga *m, const struct coral_resid *r,
		      struct coral_grd_where *out);

/* ---- the directory ------------------------------------------------------------------ */

enum {
	CORAL_GRDE_USED = 1 << 0,
	CORAL_GRDE_FROZEN = 1 << 1,     /* moving: not served until the next map version */
	CORAL_GRDE_STAGED = 1 << 2,     /* received in a move, live once that move commits */
	CORAL_GRDE_RECOVERY = 1 << 3,   /* a lost holder may have changed it: not granted */
	CORAL_GRDE_LRU = 1 << 4,        /* on the LRU list (no holders, evictable) */
	CORAL_GRDE_LVB = 1 << 5,        /* the lock value block is valid */
	CORAL_GRDE_MARK = 1 << 6,       /* made only to mark a resource frozen: not state, never
					 * shipped (an unknown resource must stay unknown) */
};

struct coral_grd_aff {
	uint32_t node;
	uint32_t count;
};

struct coral_grd_conv {
	uint8_t node, mode;
	uint16_t have;                  /* blocks: the mode the requester said it holds */
	uint32_t pad2;
	uint64_t rid;                   /* blocks: the requester's request id */
};

/* One resource's master-side state (or, in the held table, this node's own hold). */
struct coral_grd_entry {
	struct coral_resid id;
	uint32_t bucket;
	uint32_t next;                  /* hash chain: index + 1, 0 ends */
	uint32_t lru_prev, lru_next;    /* index + 1, under the directory's lru latch */
	uint16_t flags;
	uint8_t nconv;
	uint8_t recovery_node;          /* the lost node that made it need recovery */
	uint32_t pad;
	uint64_t holders;               /* bit id-1: node holds a mode above 0 */
	uint64_t pi;                    /* bit id-1: node keeps a past image */
	uint64_t move_id;               /* staged: the move that brought it */
	uint8_t mode[CORAL_MAX_NODES];  /* per node, index id-1 */
	struct coral_grd_conv conv[CORAL_GRD_CONVQ]; /* converting queue, in order */
	uint8_t lvb[CORAL_GRD_LVB];
	struct coral_grd_aff aff[CORAL_GRD_AFF];     /* heavy hitters: accesses per node */
	uint64_t accesses, grants;
	uint64_t last_ns, moved_ns;
	uint64_t scn;
	/* blocks (lmsd, the Global Cache Service): the node with the current image (0: the disk
	 * has it), the operation under way and its number, the SCN last written to disk */
	uint8_t cur;
	uint8_t op_phase, op_node, op_mode;
	uint32_t op_tries;
	uint64_t op_rid, op_inv, op_sent_ms;
	uint64_t gen, disk_scn;
} __attribute__((aligned(64)));

enum { CORAL_GRDB_ACTIVE, CORAL_GRDB_FROZEN, CORAL_GRDB_REBUILDING };

/* A node's loss as this node's directory sees it. grdd counts a loss (seq, with the lost
 * incarnation) before it publishes the map that names it; the buckets the lost node mastered
 * are then refused here for blocks no survivor reported (no entry) until smond, having read
 * the lost thread, has made an entry needing recovery for each block it must recover and
 * sets released = seq. smond's part for a loss is over when done = seq. lmsd says gcs = seq
 * once the blocks' state at this master is rebuilt from the survivors' reports and what was
 * under way with the lost node is settled (smond waits for it). */
struct coral_grd_loss {
	_Atomic uint64_t seq, released, done, incarnation;
	_Atomic uint64_t gcs;          /* = seq: lmsd has rebuilt and settled its blocks' state */
	_Atomic uint64_t flushed;      /* = seq: lmsd has written every image here that may hold
					* the lost node's changes (gcs_core_loss_flushed) */
	_Atomic uint64_t flush_left;   /* ... the blocks still to write */
};

struct coral_grd_dir {
	uint32_t capacity;
	uint32_t pad;
	uint64_t off_latches, off_heads, off_entries;   /* from the start of this struct */
	pthread_mutex_t lru_latch;      /* free list, LRU list, used */
	uint32_t free_head;             /* index + 1 */
	uint32_t lru_head, lru_tail;    /* most recently used first */
	uint32_t used, lru_len;
	_Atomic uint8_t bstate[CORAL_GRD_BUCKETS]; /* CORAL_GRDB_*, written by grdd */
	_Atomic uint64_t finds, inserts, evictions, refused_full, removes, latch_repairs;
	struct coral_grd_loss loss[CORAL_MAX_NODES]; /* index id-1 */
	/* then: latches[CORAL_GRD_BUCKETS], heads[CORAL_GRD_BUCKETS] (uint32), entries */
};

size_t coral_grd_dir_size(uint32_t capacity);

/* Whether a block with no entry here, in a bucket lost_owner mastered (coral_grd_lookup),
 * must wait for its recovery: the loss is not released yet. */
static inline bool coral_grd_loss_pending(const struct coral_grd_dir *d, uint32_t lost_owner)
{
	if (lost_owner == 0 || lost_owner > CORAL_MAX_NODES)
		return false;
	const struct coral_grd_loss *l = &d->loss[lost_owner - 1];
	return atomic_load(&l->released) != atomic_load(&l->seq);
}
/* Initialises a directory in memory of coral_grd_dir_size(capacity) bytes (SGA or heap). */
int coral_grd_dir_init(struct coral_grd_dir *d, size_t size, uint32_t capacity);

size_t coral_grd_dir_sga_size(const struct coral_conf *conf);
int coral_grd_dir_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node);
size_t coral_grd_held_sga_size(const struct coral_conf *conf);
int coral_grd_held_sga_init(void *section, size_t size, const struct coral_conf *conf,
			    const struct coral_node_conf *node);
void coral_grd_dir_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_grd_dir *coral_grd_dir_sga(const struct coral_sga *sga, const char *section);

/* Bucket latch: every access to a bucket's chain and entries holds it. */
void coral_grd_dir_lock(struct coral_grd_dir *d, uint32_t bucket);
void coral_grd_dir_unlock(struct coral_grd_dir *d, uint32_t bucket);

/* With the bucket latch held. */
struct coral_grd_entry *coral_grd_dir_find(struct coral_grd_dir *d, const struct coral_resid *id);
/* A new, empty entry (find first). At capacity, evicts the least recently used entry with no
 * holders; if there is none, returns NULL and counts the refusal (CORAL_EFULL). */
struct coral_grd_entry *coral_grd_dir_insert(struct coral_grd_dir *d, const struct coral_resid *id);
void coral_grd_dir_remove(struct coral_grd_dir *d, struct coral_grd_entry *e);
/* After changing an entry: puts it on the LRU list when it has no holders, takes it off
 * otherwise, and marks it most recently used. */
void coral_grd_dir_touch(struct coral_grd_dir *d, struct coral_grd_entry *e);
/* The first entry of a bucket's chain and the next one (with the latch held). */
struct coral_grd_entry *coral_grd_dir_first(struct coral_grd_dir *d, uint32_t bucket);
struct coral_grd_entry *coral_grd_dir_next(struct coral_grd_dir *d, const struct coral_grd_entry *e);
struct coral_grd_entry *coral_grd_dir_entry(struct coral_grd_dir *d, uint32_t index);

/* Holder bookkeeping. */
void coral_grd_entry_set_mode(struct coral_grd_entry *e, uint32_t node, int mode);
int coral_grd_entry_mode(const struct coral_grd_entry *e, uint32_t node);
/* Counts an access from node in the bounded heavy-hitter slots (space-saving: a node not
 * in a full table replaces the smallest count and inherits it). */
void coral_grd_entry_access(struct coral_grd_entry *e, uint32_t node);
/* The node with most accesses other than `except`, its count, and the largest count of any
 * other node (the master included). */
void coral_grd_entry_top(const struct coral_grd_entry *e, uint32_t except, uint32_t *node,
			 uint32_t *count, uint32_t *others);
void coral_grd_entry_decay(struct coral_grd_entry *e);
/* A block whose GCS operation (lmsd's) is under way (latch held): a move ships the entry
 * only once it is over, as the operation may have moved the image already. */
static inline bool coral_grd_entry_busy(const struct coral_grd_entry *e)
{
	return e->op_phase != 0;
}

#endif

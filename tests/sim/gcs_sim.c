/* The GCS model. Each node has a GCS core, a small buffer cache and a directory on the heap;
 * the disk is one array of block images; the network holds messages with a delivery time,
 * drops some (never to oneself, as lmsd's local queue does not), and delivers due ones in a
 * random order. Sessions on every node take random blocks in S, X or as CR copies, hold
 * them a few steps and, under X, write a new value (its redo goes into the node's log). The
 * caches are small so that replacement, write-back and past images all happen.
 *
 * Checked after every step:
 *  - at most one node holds a block in X, and no node holds it in S while one holds X;
 *  - a session that pins a block reads the last value written to it (a CR copy: a value at
 *    least as new as when it asked);
 *  - a past image disappears only once the disk holds an image at least as new;
 *  - the disk never goes back to an older image;
 *  - a node ships an image only after the redo of its own changes to it is durable;
 *  - no node's redo checkpoint passes a change of its that the disk does not have;
 *  - (every 32nd step) were every node lost now, instance recovery (smond's recovery.c)
 *    of every thread from its checkpoint over the disk's images gives every block the
 *    value of its last durable change.
 * In half the runs of three nodes or more (unless GCS_SIM_LOSSES=0), one node is lost at a
 * random step (kill -9: its cache, its unsynced writes and the redo it had not made durable
 * are gone; nothing it sent is delivered after), and with five nodes or more a second one in
 * half of those, soon after: often while the first one's recovery is under way. The
 * survivors' cores rebuild what it mastered and settle what was under way with it
 * (gcs_core_node_lost), grdd's marking is done as grdd does it, and once every survivor has
 * settled, smond's online recovery of every node lost and not yet recovered (online.c:
 * release, then apply over the disk from every thread's checkpoint) runs in one step: every
 * block it recovers must hold the value of its last durable change, and the sessions go on
 * reading the last values. A loss before the lost threads close starts it again, with all of
 * them. They close (their checkpoints move to their ends) once every survivor's lmsd has
 * written what may hold their changes (gcs_core_loss_flushed); from then on the check of a
 * recovery of every node above reads none of their changes, so one that only a survivor's
 * unwritten image held shows up there.
 * In the runs without a loss (three nodes or more, unless GCS_SIM_RESTARTS=0), a node's lmsd
 * restarts once or twice at random steps, as lmsd(8)'s RESTART says it does: the new lmsd
 * has the SGA (the cache and the directory as they were, pins included) but none of the old
 * one's memory (a new core over them), so it escalates: the node is fenced at once (its
 * sessions' calls fail, a change under a held pin is refused, the redo not durable yet
 * never becomes so), the writes its predecessor had issued land or not, its peers' messages
 * are dropped (lmsd's kit_recv while out of the cluster) while what its predecessor sent
 * before it died may still arrive, and a while later (the lease) raftd evicts it: the others
 * settle and recover it as a lost node, its grdd drops the buckets it no longer masters and
 * its lmsd drops the cache unwritten (gcs_core_self_lost). Once its recovery is closed it
 * joins again under a new incarnation (gcs_core_node_back on the others), with an empty
 * cache, and may be given blocks to master again. The invariants hold throughout.
 * Now and then a block's master moves to another node as grdd moves it (remaster.c's
 * freeze, ship and commit, in one step here): the old master's bucket freezes, the entry is
 * copied to the new master once no operation is under way on it (or the move is abandoned
 * after a while), and the map switches. Queued requests stay behind and are asked again.
 * At the end the network heals, every session finishes, every node writes back, and the
 * disk must hold the last value of every block. */
#include "gcs_sim.h"

#include "bufcache.h"
#include "errors.h"
#include "gcs.h"
#include "gcs.pb-c.h"
#include "grd.h"
#include "recovery.h"
#include "redo.h"
#include "storage.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_MAX_NODES 6
#define SIM_BLOCKS 6
#define SIM_BS 512
#define SIM_NBUF 10
#define SIM_NCLONE 3     /* fewer than the blocks a transaction may change: some changes go without one */
#define SIM_SESSIONS 3
#define SIM_MSGS 20000
#define SIM_PIS 256

struct sim_msg {
	uint32_t from, to;
	uint64_t at;
	size_t len;
	uint8_t *data;
};

enum { SS_IDLE, SS_WAIT, SS_HOLD, SS_COMMIT };

struct sim_session {
	int state;
	uint32_t block;
	int mode;          /* S, X or CR */
	uint64_t hold_until;
	uint32_t buf;
	int pinned;
	uint64_t cr_floor; /* CR: the last committed value when it asked */
	uint64_t wrote;    /* SS_COMMIT: the value it changed the block to, X pin kept */
	bool answered;
	int code, ans_pinned;
	uint32_t ans_buf;
	bool stepping;     /* in session_step: the unlock hook leaves it alone */
};

struct sim_node {
	uint32_t id;
	bool dead;            /* lost: nothing of it runs or arrives any more */
	bool out;             /* its lmsd restarted: out of the cluster until it joins again */
	uint64_t inc;         /* its incarnation (a new one when it joins again) */
	uint64_t evict_at;    /* out, not yet evicted: when raftd evicts it */
	uint64_t rejoin_at;   /* evicted and recovered: when it joins again (0: not yet) */
	struct coral_cache *cache;
	struct coral_grd_dir *dir;
	struct gcs_core *core;
	uint64_t lsn, durable;
	uint64_t force_to;    /* asked of the log writer, not yet durable */
	bool syncing;         /* a checkpoint's flush under way (ops.flush_start) */
	bool flush_failed;    /* ... and one of its writes failed */
	bool pending[SIM_BLOCKS];             /* written, not yet synced to the disk */
	uint64_t pend_scn[SIM_BLOCKS];
	uint8_t pend[SIM_BLOCKS][SIM_BS];
	uint64_t lastmod[SIM_BLOCKS];   /* lsn of this node's last change to the block */
	uint64_t lastval[SIM_BLOCKS];   /* ... and the value it wrote */
	/* this node's changes to each block, (value, LSN), while the disk may not have them: the
	 * thread's checkpoint must never pass the oldest of them */
	struct sim_change { uint64_t value, lsn; } *undisk[SIM_BLOCKS];
	uint32_t nundisk[SIM_BLOCKS], capundisk[SIM_BLOCKS];
	/* the node's redo thread: every change, with the value it replaced */
	struct sim_rec { uint64_t lsn, scn, newv, oldv, old_slot; uint32_t block; } *log;
	uint32_t nlog, caplog;
	uint32_t exp_upto;    /* records folded into the model's expected blocks */
	struct sim_session s[SIM_SESSIONS];
};

struct sim_pi {
	uint32_t node, block;
	uint64_t scn;
};

struct sim {
	uint64_t rng;
	uint32_t n;
	uint64_t now_ms;
	struct sim_node nodes[SIM_MAX_NODES];
	uint8_t disk[SIM_BLOCKS][SIM_BS];
	uint64_t disk_scn[SIM_BLOCKS];
	uint64_t truth[SIM_BLOCKS];
	/* the value as of the last X pin let go after a change (its transaction's end): a CR read
	 * must never see a newer one (readers do not see uncommitted changes, and are answered
	 * from the block's consistent image rather than wait) */
	uint64_t committed[SIM_BLOCKS];
	uint32_t truth_by[SIM_BLOCKS];  /* the node that wrote it, and at which LSN */
	uint64_t truth_lsn[SIM_BLOCKS];
	uint64_t nchecks;
	uint64_t expect[SIM_BLOCKS][9];  /* the blocks as their durable changes leave them */
	uint64_t next_value;
	struct sim_msg msgs[SIM_MSGS];
	uint32_t nmsgs;
	int loss_pct, delay_max;
	int write_fail_pct;     /* data-file writes that fail (a full or failing disk) */
	int log_slow_pct;       /* log forces that are not durable at once (lmsd's loop goes on) */
	int interleave_pct;     /* how often a session steps in where a latch is let go */
	bool healing;           /* the end: sessions step in only to finish */
	struct sim_pi pis[SIM_PIS];
	uint32_t npis;
	char *err;
	size_t errsz;
	bool failed;
	struct gcs_sim_result *r;
	uint32_t current_node;  /* whose core is running (for send's from) */
	uint32_t master[SIM_BLOCKS];
	uint32_t lost_owner[SIM_BLOCKS]; /* the lost node whose block it was, until recovered */
	uint32_t dead;          /* the last node lost (0: none) */
	uint64_t pending;       /* the nodes lost and not yet recovered (bit id-1) */
	uint32_t ndead;
	uint64_t dead_ckpt[SIM_MAX_NODES]; /* a lost node's thread's checkpoint */
	bool recovering;        /* lost, not yet recovered */
	bool applied;           /* ... its blocks recovered: the thread closes once every survivor
				 * has written what may hold its changes */
	uint32_t kill_step;     /* when (0: never) */
	uint32_t kill_step2;    /* a second node's loss (0: none), maybe during the first's recovery */
	uint32_t restart_step[2]; /* an lmsd's restarts (0: none) */
	struct gcs_ops ops[SIM_MAX_NODES];
	uint32_t nrestarts;     /* ... done */
	uint32_t joining;       /* a node not on the directory's ring until join_ms: served nothing */
	uint64_t join_ms;
	uint64_t map_version;
	bool movable[SIM_BLOCKS];   /* its bucket holds no other block of the model */
	struct {
		bool on;
		uint32_t block, from, to;
		uint64_t since_ms;
	} mv;
};

static uint64_t rnd(struct sim *s)
{
	uint64_t x = s->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return s->rng = x;
}
static uint32_t rndn(struct sim *s, uint32_t n) { return (uint32_t)(rnd(s) % n); }

static bool trace;

static void fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct sim *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	s->failed = true;
	int off = snprintf(s->err, s->errsz, "t=%llu ms: ", (unsigned long long)s->now_ms);
	if (off < 0 || (size_t)off >= s->errsz)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err + off, s->errsz - (size_t)off, fmt, ap);
	va_end(ap);
}

static uint64_t value_of(const uint8_t *data)
{
	uint64_t v;
	memcpy(&v, data + sizeof(struct coral_block_hdr), sizeof(v));
	return v;
}

/* ---- ops ------------------------------------------------------------------------------ */

struct sim_arg {
	struct sim *s;
	struct sim_node *node;
};
static struct sim_arg args[SIM_MAX_NODES];

static int op_send(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	(void)type;
	struct sim_arg *a = arg;
	struct sim *s = a->s;
	uint32_t from = a->node->id;
	/* a ship must come after the redo of the sender's own changes is durable */
	Coral__GcsMsg *m = coral__gcs_msg__unpack(NULL, len, buf);
	if (m != NULL) {
		if ((m->kind == GCS_BLOCK || m->kind == GCS_CR_BLOCK) && m->block < SIM_BLOCKS &&
		    a->node->lastmod[m->block] > a->node->durable && m->kind == GCS_BLOCK && m->dirty)
			fail(s, "node %u shipped block %llu before its redo (lsn %llu) was durable (%llu)", from,
			     (unsigned long long)m->block, (unsigned long long)a->node->lastmod[m->block],
			     (unsigned long long)a->node->durable);
		coral__gcs_msg__free_unpacked(m, NULL);
	}
	s->r->msgs++;
	if (to != from && (int)rndn(s, 100) < s->loss_pct) {
		s->r->lost++;
		return 0;
	}
	if (s->nmsgs >= SIM_MSGS) {
		s->r->lost++;
		return 0;
	}
	uint8_t *copy = malloc(len ? len : 1);
	if (copy == NULL)
		return CORAL_ENOMEM;
	memcpy(copy, buf, len);
	s->msgs[s->nmsgs++] = (struct sim_msg){from, to, s->now_ms + rndn(s, (uint32_t)s->delay_max + 1), len, copy};
	return 0;
}

static uint32_t op_master(void *arg, uint32_t file, uint64_t block, uint64_t *version)
{
	struct sim_arg *a = arg;
	(void)file;
	*version = a->s->map_version;
	return block < SIM_BLOCKS ? a->s->master[block] : 0;
}

static bool op_on_ring(void *arg, uint32_t node)
{
	struct sim_arg *a = arg;
	return node != a->s->joining || a->s->now_ms >= a->s->join_ms;
}

static uint32_t op_lost_owner(void *arg, uint32_t file, uint64_t block)
{
	struct sim_arg *a = arg;
	(void)file;
	return block < SIM_BLOCKS ? a->s->lost_owner[block] : 0;
}

static int op_read(void *arg, uint32_t file, uint64_t block, uint8_t *data)
{
	struct sim_arg *a = arg;
	(void)file;
	if (block >= SIM_BLOCKS)
		return CORAL_ENOENT;
	memcpy(data, a->s->disk[block], SIM_BS);
	return 0;
}

static int op_write(void *arg, uint32_t file, uint64_t block, uint8_t *data, uint64_t scn)
{
	struct sim_arg *a = arg;
	struct sim *s = a->s;
	(void)file;
	if (block >= SIM_BLOCKS)
		return CORAL_ENOENT;
	if ((int)rndn(s, 100) < s->write_fail_pct) {
		s->r->write_errors++;
		return CORAL_EIO;
	}
	/* the log first: an image whose redo is not durable must not reach the disk */
	if (value_of(data) == a->node->lastval[block] && a->node->lastmod[block] > a->node->durable)
		fail(s, "node %u wrote block %llu before its redo (lsn %llu) was durable (%llu)", a->node->id,
		     (unsigned long long)block, (unsigned long long)a->node->lastmod[block],
		     (unsigned long long)a->node->durable);
	/* written, not yet on the shared disk: the storage is taken as incoherent (another
	 * node's read does not see it, and it lands only at this node's sync, perhaps over a
	 * newer image another node wrote and synced meanwhile, which the checks then catch) */
	memcpy(a->node->pend[block], data, SIM_BS);
	((struct coral_block_hdr *)a->node->pend[block])->scn = scn;
	a->node->pend_scn[block] = scn;
	a->node->pending[block] = true;
	s->r->writes_back++;
	return 0;
}

/* A node's written blocks reach the disk (its sync), or are lost (a failed sync). */
static void land(struct sim *s, struct sim_node *nd, bool lost)
{
	for (uint32_t block = 0; block < SIM_BLOCKS; block++) {
		if (!nd->pending[block])
			continue;
		nd->pending[block] = false;
		if (lost)
			continue;
		uint64_t scn = nd->pend_scn[block];
		const uint8_t *data = nd->pend[block];
		if (scn < s->disk_scn[block])
			fail(s, "node %u wrote block %u at scn %llu over a newer one (%llu)", nd->id, block,
			     (unsigned long long)scn, (unsigned long long)s->disk_scn[block]);
		if (value_of(data) < value_of(s->disk[block]))
			fail(s, "node %u wrote value %llu to block %u over a newer value %llu", nd->id,
			     (unsigned long long)value_of(data), block, (unsigned long long)value_of(s->disk[block]));
		memcpy(s->disk[block], data, SIM_BS);
		s->disk_scn[block] = scn;
	}
}

static int op_sync(void *arg)
{
	struct sim_arg *a = arg;
	land(a->s, a->node, false);
	return 0;
}

/* As lmsd's: a checkpoint's blocks are written and synced off the loop, ending a few steps
 * later (log_step), now and then failing; one start in four is refused (the core then
 * writes and syncs in the call). */
static int op_flush_start(void *arg, const struct gcs_write *w, uint32_t n)
{
	struct sim_arg *a = arg;
	if (rndn(a->s, 4) == 0)
		return CORAL_EBUSY;
	a->node->flush_failed = false;
	for (uint32_t k = 0; k < n && !a->node->flush_failed; k++)
		a->node->flush_failed = op_write(arg, w[k].file, w[k].block, w[k].data, w[k].scn) != 0;
	a->node->syncing = true;
	return 0;
}

/* As lmsd's: durable at once, or asked for and made durable by a later step (log_step),
 * which then calls gcs_core_log_ready as lmsd's log waiter does. */
static int op_log_force(void *arg, uint64_t lsn)
{
	struct sim_arg *a = arg;
	struct sim *s = a->s;
	if (lsn <= a->node->durable)
		return 0;
	if (a->node->force_to >= lsn || (int)rndn(s, 100) < s->log_slow_pct) {
		if (lsn > a->node->force_to)
			a->node->force_to = lsn;
		s->r->log_pending++;
		return CORAL_EPENDING;
	}
	a->node->durable = lsn;
	return 1;
}

static void log_step(struct sim *s)
{
	for (uint32_t i = 0; i < s->n; i++) {
		struct sim_node *nd = &s->nodes[i];
		if (nd->dead || nd->out)
			continue;
		if (nd->syncing && (s->healing || rndn(s, 4) == 0)) {
			nd->syncing = false;
			s->r->syncs_async++;
			bool lost = nd->flush_failed || (!s->healing && rndn(s, 10) == 0);
			land(s, nd, lost);
			gcs_core_synced(nd->core, lost ? CORAL_EIO : 0);
		}
		if (nd->force_to > nd->durable && (s->healing || rndn(s, 4) == 0)) {
			nd->durable = nd->force_to;
			gcs_core_log_ready(nd->core);
		}
	}
}

static void op_done(void *arg, uint64_t cookie, int code, uint32_t buf, int pinned, int served)
{
	struct sim_arg *a = arg;
	struct sim_session *ss = &a->node->s[(cookie & 0xffffffffu) % SIM_SESSIONS];
	(void)served;
	ss->answered = true;
	ss->code = code;
	ss->ans_buf = buf;
	ss->ans_pinned = pinned;
}

/* ---- sessions -------------------------------------------------------------------------- */

/* What libcoral's fast path does: under the chain latch, pin the current buffer if its mode
 * covers the request and no transfer waits for it; a CR read of a block an open transaction
 * is changing is answered from its consistent image (3, its value in *v). */
static int fast_pin_v(struct sim_node *nd, uint32_t block, int mode, uint32_t *buf, uint64_t *v)
{
	struct coral_cache *c = nd->cache;
	uint32_t ch = coral_cache_chain(c, 1, block);
	coral_cache_lock(c, ch);
	struct coral_buf *b = coral_cache_find(c, 1, block, false);
	int want = mode == GCS_MODE_CR ? CORAL_BL_S : mode;
	int pinned = 0;
	if (b && mode == GCS_MODE_CR && v != NULL && b->mode >= want && (b->flags & CORAL_BUFF_SHIPWAIT)) {
		/* a ship waits for the pins: a CR read copies without a pin (its consistent image,
		 * or the buffer when no X pin changes it) */
		uint64_t scn;
		const uint8_t *img = coral_cache_clone_of(c, b, &scn);
		if (img == NULL && !(atomic_load(&b->pins) & CORAL_BUF_XPIN))
			img = coral_cache_data(c, coral_cache_index(c, b));
		if (img != NULL) {
			*v = value_of(img);
			pinned = 3;
		}
	} else if (b && b->mode >= want && !(b->flags & CORAL_BUFF_SHIPWAIT)) {
		bool excl = mode == CORAL_BL_X;
		uint64_t scn;
		const uint8_t *img;
		if (coral_buf_try_pin(b, excl)) {
			pinned = excl ? 2 : 1;
			*buf = coral_cache_index(c, b);
			if (excl)
				(void)coral_cache_clone_make(c, b); /* libcoral keeps it from the X pin on */
		} else if (mode == GCS_MODE_CR && v != NULL && (img = coral_cache_clone_of(c, b, &scn)) != NULL) {
			*v = value_of(img);
			pinned = 3;
		}
	}
	coral_cache_unlock(c, ch);
	return pinned;
}
static int fast_pin(struct sim_node *nd, uint32_t block, int mode, uint32_t *buf)
{
	return fast_pin_v(nd, block, mode, buf, NULL);
}

static void cr_check(struct sim *s, struct sim_node *nd, struct sim_session *ss, uint64_t v, const char *how)
{
	if (v < ss->cr_floor || v > s->committed[ss->block])
		fail(s, "node %u: CR read of block %u (%s) saw %llu, outside [%llu, %llu] (last written %llu)", nd->id,
		     ss->block, how, (unsigned long long)v, (unsigned long long)ss->cr_floor,
		     (unsigned long long)s->committed[ss->block], (unsigned long long)s->truth[ss->block]);
	s->r->cr_reads++;
}

/* A session's CR read, at once or after a wait: pinned, or answered from the image. */
static void pinned_now(struct sim *s, struct sim_node *nd, struct sim_session *ss);
static bool cr_or_pinned(struct sim *s, struct sim_node *nd, struct sim_session *ss)
{
	uint64_t v = 0;
	ss->pinned = fast_pin_v(nd, ss->block, ss->mode, &ss->buf, &v);
	if (ss->pinned == 3) {
		cr_check(s, nd, ss, v, "from its consistent image");
		s->r->clone_reads++;
		ss->pinned = 0;
		ss->state = SS_IDLE;
		return true;
	}
	if (ss->pinned) {
		pinned_now(s, nd, ss);
		return true;
	}
	return false;
}

static void pinned_now(struct sim *s, struct sim_node *nd, struct sim_session *ss)
{
	struct coral_buf *b = coral_cache_buf(nd->cache, ss->buf);
	uint64_t v = value_of(coral_cache_data(nd->cache, ss->buf));
	if (nd->id == s->joining && s->now_ms < s->join_ms)
		fail(s, "node %u was served block %u before it came on the ring", nd->id, ss->block);
	if (b->block != ss->block)
		fail(s, "node %u: session got buffer of block %llu for block %u", nd->id,
		     (unsigned long long)b->block, ss->block);
	if (ss->mode == GCS_MODE_CR) {
		cr_check(s, nd, ss, v, "a copy");
	} else if (v != s->truth[ss->block]) {
		fail(s, "node %u: %s read of block %u saw %llu, last written %llu", nd->id,
		     ss->mode == CORAL_BL_X ? "X" : "S", ss->block, (unsigned long long)v,
		     (unsigned long long)s->truth[ss->block]);
	} else {
		s->r->reads++;
	}
	ss->state = SS_HOLD;
	ss->hold_until = s->now_ms + rndn(s, 4);
	if (trace)
		fprintf(stderr, "%llu: node %u pins blk %u mode %d val %llu (buffer %u flags %#x mode %d gen %llu)\n",
			(unsigned long long)s->now_ms, nd->id, ss->block, ss->mode, (unsigned long long)v, ss->buf,
			b->flags, b->mode, (unsigned long long)b->gen);
}

static void run_core(struct sim *s, struct sim_node *nd) { s->current_node = nd->id; }

static void log_add(struct sim_node *nd, struct sim_rec r)
{
	if (nd->nlog == nd->caplog) {
		uint32_t cap = nd->caplog ? 2 * nd->caplog : 256;
		struct sim_rec *p = realloc(nd->log, cap * sizeof(*p));
		if (p == NULL)
			abort();
		nd->log = p;
		nd->caplog = cap;
	}
	nd->log[nd->nlog++] = r;
}

static void undisk_add(struct sim_node *nd, uint32_t block, uint64_t value, uint64_t lsn)
{
	if (nd->nundisk[block] == nd->capundisk[block]) {
		uint32_t cap = nd->capundisk[block] ? 2 * nd->capundisk[block] : 64;
		struct sim_change *p = realloc(nd->undisk[block], cap * sizeof(*p));
		if (p == NULL)
			abort();
		nd->undisk[block] = p;
		nd->capundisk[block] = cap;
	}
	nd->undisk[block][nd->nundisk[block]++] = (struct sim_change){value, lsn};
}

/* A session lets its block go: under X it writes a new value first (the data, then the
 * header fields under the latch, as libcoral does), unless it was one that locked the block
 * and changed nothing (one in four): then an image only this node's X buffer would hold, if
 * lmsd had let a dirty copy go unwritten, shows up as a lost value. */
static void session_release(struct sim *s, struct sim_node *nd, struct sim_session *ss)
{
	struct coral_cache *c = nd->cache;
	struct coral_buf *b = coral_cache_buf(c, ss->buf);
	if (ss->mode == CORAL_BL_X && b->mode != CORAL_BL_X)
		fail(s, "node %u: block %u pinned X but the buffer is in mode %d", nd->id, ss->block, b->mode);
	if (ss->mode == CORAL_BL_X && rndn(s, 4) != 0) {
		/* as libcoral: dirty, with where its redo will begin, before the redo exists */
		uint32_t pch = coral_cache_chain(c, 1, ss->block);
		coral_cache_lock(c, pch);
		/* the transaction's first change: the image as it was kept for CR reads (libcoral's
		 * modify; none free: CR readers wait as for an X pin without a change) */
		(void)coral_cache_clone_make(c, b);
		if (b->first_lsn == 0)
			b->first_lsn = nd->lsn + 1 + 1;
		coral_cache_unlock(c, pch);
		uint64_t v = ++s->next_value;
		uint8_t *data = coral_cache_data(c, ss->buf);
		uint64_t old = value_of(data), old_slot;
		memcpy(data + sizeof(struct coral_block_hdr), &v, sizeof(v));
		/* and in one of eight slots: a recovery that missed an older change of the block
		 * leaves its slot behind (the first word alone would be overwritten anyway) */
		uint8_t *slot = data + sizeof(struct coral_block_hdr) + 8 * (1 + v % 8);
		memcpy(&old_slot, slot, 8);
		memcpy(slot, &v, 8);
		s->truth[ss->block] = v;
		s->truth_by[ss->block] = nd->id;
		s->truth_lsn[ss->block] = nd->lsn + 1;
		uint32_t ch = coral_cache_chain(c, 1, ss->block);
		coral_cache_lock(c, ch);
		b->scn = coral_scn_next(c);
		if (!(b->flags & CORAL_BUFF_DIRTY)) {
			b->flags |= CORAL_BUFF_DIRTY;
			atomic_fetch_add(&c->dirty, 1);
		}
		b->redo_lsn = ++nd->lsn;
		nd->lastmod[ss->block] = nd->lsn;
		nd->lastval[ss->block] = v;
		undisk_add(nd, ss->block, v, nd->lsn);
		log_add(nd, (struct sim_rec){nd->lsn, b->scn, v, old, old_slot, ss->block});
		coral_cache_unlock(c, ch);
		s->r->writes++;
		if (trace)
			fprintf(stderr, "%llu: node %u writes blk %u val %llu scn %llu\n", (unsigned long long)s->now_ms,
				nd->id, ss->block, (unsigned long long)v, (unsigned long long)b->scn);
		/* half the time the transaction ends some steps later (its commit waits for the
		 * log): the X pin is kept, and CR readers meanwhile get the image before it */
		if (rndn(s, 2) == 0) {
			ss->wrote = v;
			ss->state = SS_COMMIT;
			ss->hold_until = s->now_ms + 1 + rndn(s, 4);
			return;
		}
		s->committed[ss->block] = v;
	}
	ss->state = SS_IDLE;
	coral_cache_unpin(c, b, ss->pinned == 2);
}

/* The transaction's end: committed, its X pin (and the block's consistent image) let go. A
 * node lost meanwhile took the change with it, or recovery kept it (see committed_settle). */
static void session_commit(struct sim *s, struct sim_node *nd, struct sim_session *ss)
{
	if (s->truth[ss->block] == ss->wrote)
		s->committed[ss->block] = ss->wrote;
	ss->state = SS_IDLE;
	coral_cache_unpin(nd->cache, coral_cache_buf(nd->cache, ss->buf), true);
}

/* After a loss: the model keeps a lost node's durable changes (recovery here has no undo), so
 * a block it was changing reads as its last durable value; and a change that never became
 * durable is gone. */
static bool pending(const struct sim *s, uint32_t node);
static void committed_settle(struct sim *s)
{
	for (uint32_t b = 0; b < SIM_BLOCKS; b++)
		if (s->committed[b] > s->truth[b] || pending(s, s->truth_by[b]))
			s->committed[b] = s->truth[b];
}

static void session_step_(struct sim *s, struct sim_node *nd, uint32_t k);
static void session_step(struct sim *s, struct sim_node *nd, uint32_t k)
{
	nd->s[k].stepping = true;
	session_step_(s, nd, k);
	nd->s[k].stepping = false;
}

static void session_step_(struct sim *s, struct sim_node *nd, uint32_t k)
{
	struct sim_session *ss = &nd->s[k];
	switch (ss->state) {
	case SS_IDLE: {
		if (rndn(s, 100) >= 30)
			return;
		ss->block = rndn(s, SIM_BLOCKS);
		uint32_t r = rndn(s, 100);
		ss->mode = r < 45 ? CORAL_BL_X : r < 90 ? CORAL_BL_S : GCS_MODE_CR;
		ss->cr_floor = s->committed[ss->block];
		if (cr_or_pinned(s, nd, ss))
			return;
		ss->state = SS_WAIT;
		ss->answered = false;
		run_core(s, nd);
		gcs_core_get(nd->core, 1, ss->block, ss->mode, (uint64_t)nd->id << 32 | k);
		return;
	}
	case SS_WAIT:
		if (!ss->answered)
			return;
		ss->answered = false;
		if (ss->code != 0) {
			s->r->failures++;
			ss->state = SS_IDLE;
			return;
		}
		if (ss->ans_pinned) {
			ss->buf = ss->ans_buf;
			ss->pinned = ss->ans_pinned;
			if (ss->pinned == 2) {
				/* as libcoral after lmsd's answer: the X pin's consistent image */
				uint32_t ch = coral_cache_chain(nd->cache, 1, ss->block);
				coral_cache_lock(nd->cache, ch);
				(void)coral_cache_clone_make(nd->cache, coral_cache_buf(nd->cache, ss->buf));
				coral_cache_unlock(nd->cache, ch);
			}
			pinned_now(s, nd, ss);
			return;
		}
		if (cr_or_pinned(s, nd, ss))
			return;
		run_core(s, nd);
		gcs_core_get(nd->core, 1, ss->block, ss->mode, (uint64_t)nd->id << 32 | k);
		return;
	case SS_HOLD:
		if (s->now_ms >= ss->hold_until)
			session_release(s, nd, ss);
		return;
	case SS_COMMIT:
		if (s->now_ms >= ss->hold_until)
			session_commit(s, nd, ss);
		return;
	}
}

/* Sessions run on other CPUs than lmsd: wherever a latch is let go (in the middle of a GCS
 * operation too), one of that node's sessions may take its fast path — pin a block its
 * node's mode covers, change it under X, unpin — before lmsd goes on. */
static struct sim *hook_sim;
static bool in_hook;

static void unlock_hook(struct coral_cache *c)
{
	struct sim *s = hook_sim;
	if (s == NULL || in_hook || s->failed || (int)rndn(s, 100) >= s->interleave_pct)
		return;
	struct sim_node *nd = NULL;
	for (uint32_t i = 0; i < s->n; i++)
		if (s->nodes[i].cache == c)
			nd = &s->nodes[i];
	if (nd == NULL || nd->out || nd->dead)
		return;  /* a fenced node's sessions pin nothing (libcoral waits for the fence first) */
	in_hook = true;
	struct sim_session *ss = &nd->s[rndn(s, SIM_SESSIONS)];
	if (ss->stepping) {
		in_hook = false;
		return;
	}
	if (ss->state == SS_IDLE && !s->healing) {
		ss->block = rndn(s, SIM_BLOCKS);
		ss->mode = rndn(s, 2) ? CORAL_BL_X : CORAL_BL_S;
		ss->pinned = fast_pin(nd, ss->block, ss->mode, &ss->buf);
		if (ss->pinned) {
			s->r->interleaved++;
			pinned_now(s, nd, ss);
			if (rndn(s, 2))
				session_release(s, nd, ss);
		}
	} else if (ss->state == SS_HOLD) {
		s->r->interleaved++;
		session_release(s, nd, ss);
	} else if (ss->state == SS_IDLE && !s->healing && rndn(s, 2)) {
		/* a CR read on the fast path, in the middle of lmsd's work */
		ss->block = rndn(s, SIM_BLOCKS);
		ss->mode = GCS_MODE_CR;
		ss->cr_floor = s->committed[ss->block];
		if (cr_or_pinned(s, nd, ss)) {
			s->r->interleaved++;
			if (ss->state == SS_HOLD)
				session_release(s, nd, ss);
		}
	}
	in_hook = false;
}

/* ---- remastering ----------------------------------------------------------------------- */

static uint32_t block_bucket(uint32_t block)
{
	struct coral_resid id = {.type = CORAL_RES_BLOCK, .id1 = 1, .id2 = block};
	return coral_resid_bucket(&id);
}

static void set_frozen(struct coral_grd_dir *d, uint32_t bucket, bool frozen)
{
	atomic_store(&d->bstate[bucket], frozen ? CORAL_GRDB_FROZEN : CORAL_GRDB_ACTIVE);
	coral_grd_dir_lock(d, bucket);
	for (struct coral_grd_entry *e = coral_grd_dir_first(d, bucket); e; e = coral_grd_dir_next(d, e)) {
		if (frozen)
			e->flags |= CORAL_GRDE_FROZEN;
		else
			e->flags &= (uint16_t)~CORAL_GRDE_FROZEN;
	}
	coral_grd_dir_unlock(d, bucket);
}

/* The entry has arrived: what grdd's entry_from_msg keeps of a block (holders, past images,
 * the current holder, the operation number, the disk's SCN; not the queue). */
static void move_entry(struct sim *s, uint32_t bucket, const struct coral_grd_entry *src)
{
	struct coral_grd_dir *d = s->nodes[s->mv.to - 1].dir;
	coral_grd_dir_lock(d, bucket);
	struct coral_grd_entry *e = coral_grd_dir_find(d, &src->id);
	if (e == NULL)
		e = coral_grd_dir_insert(d, &src->id);
	if (e == NULL) {
		coral_grd_dir_unlock(d, bucket);
		fail(s, "the directory of node %u is full", s->mv.to);
		return;
	}
	e->holders = src->holders;
	e->pi = src->pi;
	memcpy(e->mode, src->mode, sizeof(e->mode));
	e->cur = src->cur;
	e->gen = src->gen;
	e->disk_scn = src->disk_scn;
	e->nconv = 0;
	e->op_phase = 0;
	coral_grd_dir_unlock(d, bucket);
}

static void remaster_step(struct sim *s)
{
	if (!s->mv.on) {
		if (s->healing || rndn(s, 100) != 0)
			return;
		uint32_t b = rndn(s, SIM_BLOCKS);
		uint32_t to = 1 + rndn(s, s->n);
		if (!s->movable[b] || to == s->master[b] || s->nodes[to - 1].dead || s->lost_owner[b] || s->recovering ||
		    s->nodes[to - 1].out || s->nodes[s->master[b] - 1].out)
			return;
		s->mv.on = true;
		s->mv.block = b;
		s->mv.from = s->master[b];
		s->mv.to = to;
		s->mv.since_ms = s->now_ms;
		set_frozen(s->nodes[s->mv.from - 1].dir, block_bucket(b), true);
		return;
	}
	uint32_t bucket = block_bucket(s->mv.block);
	struct coral_grd_dir *d = s->nodes[s->mv.from - 1].dir;
	struct coral_resid id = {.type = CORAL_RES_BLOCK, .id1 = 1, .id2 = s->mv.block};
	coral_grd_dir_lock(d, bucket);
	struct coral_grd_entry *e = coral_grd_dir_find(d, &id);
	bool busy = e && coral_grd_entry_busy(e);
	struct coral_grd_entry copy;
	if (e)
		copy = *e;
	coral_grd_dir_unlock(d, bucket);
	if (busy) {
		if (s->now_ms - s->mv.since_ms > 500) {
			/* the coordinator gives up: nothing moves */
			set_frozen(d, bucket, false);
			s->mv.on = false;
			s->r->moves_abandoned++;
		}
		return;
	}
	if (e)
		move_entry(s, bucket, &copy);
	s->master[s->mv.block] = s->mv.to;
	s->map_version++;
	coral_grd_dir_lock(d, bucket);
	e = coral_grd_dir_find(d, &id);
	if (e)
		coral_grd_dir_remove(d, e);
	coral_grd_dir_unlock(d, bucket);
	set_frozen(d, bucket, false);
	s->mv.on = false;
	s->r->moves++;
	if (trace)
		fprintf(stderr, "%llu: block %u's master moves from %u to %u\n", (unsigned long long)s->now_ms, s->mv.block,
			s->mv.from, s->mv.to);
}


static void add_thread(struct sim *s, struct recovery *r, const struct sim_node *nd, uint64_t ck);
static uint64_t thread_ckpt(const struct sim *s, const struct sim_node *nd);

/* ---- a node's loss ---------------------------------------------------------------------- */

static uint64_t nbit(uint32_t n) { return 1ull << (n - 1); }

/* What grdd's forget_holds does to a survivor's entries (rebuild.c). */
static void grdd_forget(struct coral_grd_dir *d, uint32_t lost)
{
	for (uint32_t i = 0; i < d->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(d, i);
		if (!(e->flags & CORAL_GRDE_USED))
			continue;
		uint32_t b = e->bucket;
		coral_grd_dir_lock(d, b);
		if ((e->flags & CORAL_GRDE_USED) &&
		    (((e->holders | e->pi) & nbit(lost)) || e->cur == lost || e->op_node == lost)) {
			if (e->cur == lost || (e->op_node == lost && e->op_phase == 2) || e->mode[lost - 1] == CORAL_BL_X ||
			    (e->pi & nbit(lost))) {
				e->flags |= CORAL_GRDE_RECOVERY;
				e->recovery_node = (uint8_t)lost;
			}
			coral_grd_entry_set_mode(e, lost, 0);
			e->pi &= ~nbit(lost);
			coral_grd_dir_touch(d, e);
		}
		coral_grd_dir_unlock(d, b);
	}
}

static void evict(struct sim *s, uint32_t d);

static void kill_node(struct sim *s)
{
	uint32_t d = 1 + rndn(s, s->n);
	while (s->nodes[d - 1].dead || s->nodes[d - 1].out)
		d = 1 + d % s->n;
	struct sim_node *nd = &s->nodes[d - 1];
	s->dead_ckpt[d - 1] = gcs_core_ckpt_lsn(nd->core, nd->lsn + 1);
	if (s->dead_ckpt[d - 1] > nd->durable + 1)
		s->dead_ckpt[d - 1] = nd->durable + 1;
	nd->dead = true;
	s->dead = d;
	s->ndead++;
	evict(s, d);
	s->r->losses++;
	if (trace)
		fprintf(stderr, "%llu: node %u lost (checkpoint %llu, durable %llu)\n", (unsigned long long)s->now_ms, d,
			(unsigned long long)s->dead_ckpt[d - 1], (unsigned long long)nd->durable);
}

/* What the survivors do at raftd's eviction of node d (dead from now on), and what is gone
 * with it: the redo it had not made durable, its past images. */
static void evict(struct sim *s, uint32_t d)
{
	struct sim_node *nd = &s->nodes[d - 1];
	/* a move under way is given up: the loss makes a new map (grdd's commit_leave) */
	if (s->mv.on) {
		set_frozen(s->nodes[s->mv.from - 1].dir, block_bucket(s->mv.block), false);
		s->mv.on = false;
		s->r->moves_abandoned++;
	}
	nd->dead = true;
	s->pending |= nbit(d);
	s->recovering = true;
	s->applied = false; /* a recovery under way starts again, with this node too (online.c) */
	/* its unsynced writes never land; the redo it had not made durable is gone */
	memset(nd->pending, 0, sizeof(nd->pending));
	nd->syncing = false;
	while (nd->nlog > 0 && nd->log[nd->nlog - 1].lsn > nd->durable)
		nd->nlog--;
	if (nd->exp_upto > nd->nlog)
		nd->exp_upto = nd->nlog;
	uint32_t k = 0;
	for (uint32_t j = 0; j < s->npis; j++)
		if (s->pis[j].node != d)
			s->pis[k++] = s->pis[j];
	s->npis = k;
	uint64_t survivors = 0;
	for (uint32_t i = 0; i < s->n; i++)
		if (!s->nodes[i].dead && !s->nodes[i].out)
			survivors |= nbit(i + 1);
	/* the map: its blocks get new masters and are lost until recovered */
	uint32_t next = rndn(s, s->n);
	for (uint32_t b = 0; b < SIM_BLOCKS; b++) {
		if (s->master[b] != d)
			continue;
		while (s->nodes[next % s->n].dead || s->nodes[next % s->n].out)
			next++;
		s->master[b] = 1 + next++ % s->n;
		s->lost_owner[b] = d;
		if (trace)
			fprintf(stderr, "%llu: block %u's master is %u now\n", (unsigned long long)s->now_ms, b, s->master[b]);
	}
	s->map_version++;
	for (uint32_t i = 0; i < s->n; i++) {
		struct sim_node *m = &s->nodes[i];
		if (m->dead || m->out)
			continue;
		struct coral_grd_loss *L = &m->dir->loss[d - 1];
		atomic_store(&L->incarnation, nd->inc);
		uint64_t seq = atomic_fetch_add(&L->seq, 1) + 1;
		grdd_forget(m->dir, d);
		run_core(s, m);
		gcs_core_node_lost(m->core, d, nd->inc, seq, survivors);
	}
}

/* ---- an lmsd's restart ----------------------------------------------------------------- */

static void add_stats(struct gcs_sim_result *out, const struct gcs_core *c)
{
	const struct gcs_stats *st = gcs_core_stats(c);
	out->two_way += st->two_way;
	out->three_way += st->three_way;
	out->disk_reads += st->disk_reads;
	out->invalidations += st->invalidations;
	out->retries += st->retries;
	out->inv_held += st->inv_held;
	out->log_waits += st->log_waits;
}

/* Node d's lmsd is killed and the supervisor starts another over the same SGA, which
 * escalates (lmsd.c's lmsd_init and escalate): the node is out of the cluster from now on. */
static void restart_lmsd(struct sim *s)
{
	uint32_t d = 1 + rndn(s, s->n);
	while (s->nodes[d - 1].dead || s->nodes[d - 1].out)
		d = 1 + d % s->n;
	struct sim_node *nd = &s->nodes[d - 1];
	nd->out = true;  /* first: no session steps in from here on (unlock_hook) */
	/* the thread's checkpoint stays where the dead lmsd left it: nothing moves it now */
	s->dead_ckpt[d - 1] = gcs_core_ckpt_lsn(nd->core, nd->lsn + 1);
	if (s->dead_ckpt[d - 1] > nd->durable + 1)
		s->dead_ckpt[d - 1] = nd->durable + 1;
	/* the writes it had issued are in the page cache and land; those it had not, never */
	land(s, nd, rndn(s, 2) == 0);
	nd->syncing = false;
	/* fenced at once (raftd's leave): the redo not durable yet never becomes so */
	nd->force_to = nd->durable;
	while (nd->nlog > 0 && nd->log[nd->nlog - 1].lsn > nd->durable)
		nd->nlog--;
	if (nd->exp_upto > nd->nlog)
		nd->exp_upto = nd->nlog;
	for (uint32_t b = 0; b < SIM_BLOCKS; b++) {
		while (nd->nundisk[b] > 0 && nd->undisk[b][nd->nundisk[b] - 1].lsn > nd->durable)
			nd->nundisk[b]--;
		if (nd->lastmod[b] > nd->durable)
			nd->lastmod[b] = 0;
	}
	nd->lsn = nd->durable;
	/* its sessions: a wait's answer never comes (libcoral gives up on that call, asks again
	 * after the rejoin); a change under a held pin is refused, the pin let go */
	for (uint32_t k = 0; k < SIM_SESSIONS; k++) {
		struct sim_session *ss = &nd->s[k];
		if (ss->state == SS_HOLD || ss->state == SS_COMMIT)
			coral_cache_unpin(nd->cache, coral_cache_buf(nd->cache, ss->buf), ss->pinned == 2);
		/* a change under way: it stays if durable (recovery), else goes (committed_settle) */
		if (ss->state == SS_COMMIT && s->truth[ss->block] == ss->wrote)
			s->committed[ss->block] = ss->wrote;
		/* an answer that came with a pin before the lmsd died: the session has it (the
		 * socket kept it) and lets it go with its failed call */
		if (ss->state == SS_WAIT && ss->answered && ss->code == 0 && ss->ans_pinned)
			coral_cache_unpin(nd->cache, coral_cache_buf(nd->cache, ss->ans_buf), ss->ans_pinned == 2);
		ss->state = SS_IDLE;
		ss->answered = false;
	}
	/* a new lmsd: the SGA as it was, nothing of the old one's memory */
	add_stats(s->r, nd->core);
	gcs_core_free(nd->core);
	nd->core = gcs_core_new(nd->id, nd->cache, nd->dir, &s->ops[d - 1], 20, 100000);
	gcs_core_clock(nd->core, s->now_ms * 1000 + 1000000);
	nd->evict_at = s->now_ms + 1 + rndn(s, 300);
	nd->rejoin_at = 0;
	s->nrestarts++;
	s->r->restarts++;
	if (trace)
		fprintf(stderr, "%llu: node %u's lmsd restarts: the node leaves (checkpoint %llu, durable %llu)\n",
			(unsigned long long)s->now_ms, d, (unsigned long long)s->dead_ckpt[d - 1],
			(unsigned long long)nd->durable);
}

static bool pending(const struct sim *s, uint32_t node);

/* A node out after its lmsd's restart: evicted when its lease runs out (the others settle
 * and recover it; its grdd drops the buckets it no longer masters, its lmsd the cache),
 * then, once its recovery is closed, back under a new incarnation. */
static void out_step(struct sim *s)
{
	for (uint32_t i = 0; i < s->n; i++) {
		struct sim_node *nd = &s->nodes[i];
		uint32_t d = i + 1;
		if (!nd->out)
			continue;
		if (!nd->dead) {
			if (s->now_ms < nd->evict_at)
				continue;
			evict(s, d);
			for (uint32_t k = 0; k < nd->dir->capacity; k++) {
				struct coral_grd_entry *e = coral_grd_dir_entry(nd->dir, k);
				if (!(e->flags & CORAL_GRDE_USED))
					continue;
				uint32_t bk = e->bucket;
				coral_grd_dir_lock(nd->dir, bk);
				if ((e->flags & CORAL_GRDE_USED) &&
				    (e->id.id2 >= SIM_BLOCKS || s->master[e->id.id2] != d))
					coral_grd_dir_remove(nd->dir, e);
				coral_grd_dir_unlock(nd->dir, bk);
			}
			run_core(s, nd);
			gcs_core_self_lost(nd->core);
			if (trace)
				fprintf(stderr, "%llu: node %u evicted (incarnation %llu)\n", (unsigned long long)s->now_ms, d,
					(unsigned long long)nd->inc);
			continue;
		}
		if (pending(s, d))
			continue;
		if (nd->rejoin_at == 0) {
			nd->rejoin_at = s->now_ms + 1 + rndn(s, 100);
			continue;
		}
		if (s->now_ms < nd->rejoin_at)
			continue;
		nd->inc++;
		nd->dead = false;
		nd->out = false;
		nd->rejoin_at = 0;
		for (uint32_t j = 0; j < s->n; j++) {
			struct sim_node *m = &s->nodes[j];
			if (m == nd || m->dead || m->out)
				continue;
			run_core(s, m);
			gcs_core_node_back(m->core, d);
		}
		if (trace)
			fprintf(stderr, "%llu: node %u joins again (incarnation %llu)\n", (unsigned long long)s->now_ms, d,
				(unsigned long long)nd->inc);
	}
}

static bool any_out(const struct sim *s)
{
	for (uint32_t i = 0; i < s->n; i++)
		if (s->nodes[i].out)
			return true;
	return false;
}

/* The newest durable change of block b in any thread: what recovery must give it. */
static uint64_t last_durable(const struct sim *s, uint32_t b)
{
	uint64_t v = 0;
	for (uint32_t i = 0; i < s->n; i++) {
		const struct sim_node *nd = &s->nodes[i];
		for (uint32_t k = 0; k < nd->nlog; k++)
			if (nd->log[k].block == b && nd->log[k].lsn <= nd->durable && nd->log[k].newv > v)
				v = nd->log[k].newv;
	}
	return v;
}

/* smond's online recovery (online.c), in one step once every survivor's lmsd has settled:
 * the first pass over every thread from its checkpoint (the survivors' live), the release,
 * then each marked block from the disk, written and released. */
static void close_step(struct sim *s);

static bool pending(const struct sim *s, uint32_t node)
{
	return node >= 1 && node <= SIM_MAX_NODES && (s->pending & nbit(node));
}

/* Whether ok holds for every survivor and every node lost and not yet recovered (each pair
 * looked at, even after one fails: ok may publish what it finds). */
static bool every_survivor(struct sim *s, bool (*ok)(struct sim_node *m, uint32_t lost))
{
	bool all = true;
	for (uint32_t d = 1; d <= s->n; d++)
		for (uint32_t i = 0; i < s->n && pending(s, d); i++)
			if (!s->nodes[i].dead)
				all &= ok(&s->nodes[i], d);
	return all;
}

/* lmsd's check_losses: the loss settled at this master is published in the directory */
static bool settled_at(struct sim_node *m, uint32_t d)
{
	struct coral_grd_loss *L = &m->dir->loss[d - 1];
	uint64_t seq;
	if (gcs_core_loss_settled(m->core, d, &seq) && seq == atomic_load(&L->seq))
		atomic_store(&L->gcs, seq);
	return atomic_load(&L->gcs) == atomic_load(&L->seq);
}

static bool flushed_at(struct sim_node *m, uint32_t d)
{
	uint64_t seq;
	uint32_t left;
	return gcs_core_loss_flushed(m->core, d, &seq, &left) && seq == atomic_load(&m->dir->loss[d - 1].seq);
}

static void smond_step(struct sim *s)
{
	if (s->applied) {
		close_step(s);
		return;
	}
	if (!every_survivor(s, settled_at))
		return;
	struct recovery *r = recovery_new(1 << 26);
	for (uint32_t i = 0; i < s->n; i++)
		if (!s->nodes[i].dead)
			recovery_set_live(r, i + 1);
	for (uint32_t i = 0; i < s->n; i++)
		add_thread(s, r, &s->nodes[i], thread_ckpt(s, &s->nodes[i]));
	recovery_plan(r);
	for (uint32_t b = 0; b < SIM_BLOCKS; b++) {
		struct coral_grd_dir *dir = s->nodes[s->master[b] - 1].dir;
		struct coral_resid id = {.type = CORAL_RES_BLOCK, .id1 = 1, .id2 = b};
		uint32_t bk = coral_resid_bucket(&id);
		coral_grd_dir_lock(dir, bk);
		struct coral_grd_entry *e = coral_grd_dir_find(dir, &id);
		if (pending(s, s->lost_owner[b]) && recovery_needs(r, 1, b)) {
			if (e == NULL)
				e = coral_grd_dir_insert(dir, &id);
			if (e == NULL)
				fail(s, "the directory of node %u is full", s->master[b]);
			else if (!(e->flags & CORAL_GRDE_RECOVERY) && e->holders == 0 && e->pi == 0 &&
				 (e->cur == 0 || pending(s, e->cur)) && e->op_phase == 0) {
				e->flags |= CORAL_GRDE_RECOVERY;
				e->recovery_node = (uint8_t)s->lost_owner[b];
			}
		}
		/* of a lost bucket, the current image with a survivor, or no change since the
		 * checkpoints: nothing to do (online.c's release) */
		if (e && pending(s, s->lost_owner[b]) && (e->flags & CORAL_GRDE_RECOVERY) && pending(s, e->recovery_node) &&
		    !(e->op_phase != 0 && (pending(s, e->op_node) || pending(s, e->cur))) &&
		    ((e->cur != 0 && !pending(s, e->cur)) || !recovery_needs(r, 1, b))) {
			e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
			e->recovery_node = 0;
			if (pending(s, e->cur))
				e->cur = 0;
		}
		/* one whose current image a survivor has is released as it is (online.c's apply) */
		if (e && (e->flags & CORAL_GRDE_RECOVERY) && pending(s, e->recovery_node) && e->cur != 0 &&
		    !pending(s, e->cur) && !(e->op_phase != 0 && pending(s, e->op_node))) {
			e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
			e->recovery_node = 0;
		}
		uint32_t d = e ? e->recovery_node : 0;
		bool todo = e && (e->flags & CORAL_GRDE_RECOVERY) && pending(s, d);
		coral_grd_dir_unlock(dir, bk);
		if (!todo)
			continue;
		uint8_t img[SIM_BS];
		memcpy(img, s->disk[b], SIM_BS);
		struct coral_block_hdr *h = (struct coral_block_hdr *)img;
		int64_t i = recovery_find(r, 1, b);
		if (i >= 0 && recovery_apply(r, (uint64_t)i, img, SIM_BS) != 0)
			fail(s, "recovery could not apply block %u", b);
		uint64_t want = last_durable(s, b);
		if (value_of(img) < want || value_of(img) > s->truth[b])
			fail(s, "the recovery of node %u gave block %u the value %llu, not its last durable %llu (last "
			     "written %llu)", d, b, (unsigned long long)value_of(img), (unsigned long long)want,
			     (unsigned long long)s->truth[b]);
		if (h->scn != s->disk_scn[b]) {
			if (h->scn < s->disk_scn[b])
				fail(s, "the recovery of node %u would take block %u's disk back", d, b);
			memcpy(s->disk[b], img, SIM_BS);
			s->disk_scn[b] = h->scn;
			s->r->recovered_blocks++;
		}
		if (trace)
			fprintf(stderr, "%llu: recovery of node %u: block %u from %llu to %llu (entry cur %u op %u for %u)\n",
				(unsigned long long)s->now_ms, d, b, (unsigned long long)s->truth[b],
				(unsigned long long)value_of(img), e ? e->cur : 0, e ? e->op_phase : 0, e ? e->op_node : 0);
		/* the lost node's changes that were not durable are gone (a CR read asked before
		 * may have been promised one of them); a survivor's newer one stays (a grant to it
		 * under way: its X image, still unacknowledged, is newer than what the disk and
		 * the durable redo give) */
		if (pending(s, s->truth_by[b]))
			s->truth[b] = value_of(img);
		for (uint32_t i = 0; i < s->n; i++)
			for (uint32_t k = 0; k < SIM_SESSIONS; k++)
				if (s->nodes[i].s[k].block == b && s->nodes[i].s[k].cr_floor > s->truth[b])
					s->nodes[i].s[k].cr_floor = s->truth[b];
		coral_grd_dir_lock(dir, bk);
		e = coral_grd_dir_find(dir, &id);
		if (e && (e->flags & CORAL_GRDE_RECOVERY) && pending(s, e->recovery_node)) {
			e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
			e->recovery_node = 0;
			if (e->op_phase != 0 && (pending(s, e->op_node) || pending(s, e->cur))) {
				e->op_phase = 0;
				e->op_node = 0;
			}
			if (pending(s, e->cur))
				e->cur = 0;
			if (h->scn > e->disk_scn)
				e->disk_scn = h->scn;
			coral_grd_dir_touch(dir, e);
		}
		coral_grd_dir_unlock(dir, bk);
	}
	recovery_free(r);
	/* a last write of the lost node that never became durable is gone (nothing else held
	 * it: a ship waits for the redo) */
	for (uint32_t b = 0; b < SIM_BLOCKS; b++) {
		uint32_t by = s->truth_by[b];
		if (!pending(s, by) || s->truth_lsn[b] <= s->nodes[by - 1].durable)
			continue;
		s->truth[b] = last_durable(s, b);
		for (uint32_t i = 0; i < s->n; i++)
			for (uint32_t k = 0; k < SIM_SESSIONS; k++)
				if (s->nodes[i].s[k].block == b && s->nodes[i].s[k].cr_floor > s->truth[b])
					s->nodes[i].s[k].cr_floor = s->truth[b];
	}
	for (uint32_t d = 1; d <= s->n; d++)
		for (uint32_t i = 0; i < s->n && pending(s, d); i++) {
			struct coral_grd_loss *L = &s->nodes[i].dir->loss[d - 1];
			atomic_store(&L->released, atomic_load(&L->seq));
		}
	committed_settle(s);
	s->applied = true;
	if (trace)
		fprintf(stderr, "%llu: the lost nodes' blocks recovered (%#llx)\n", (unsigned long long)s->now_ms,
			(unsigned long long)s->pending);
}

/* The claimer closes the lost thread (its checkpoint at its end: no recovery reads it
 * again) once every survivor's lmsd has written what may hold its changes; grdd drops the
 * node from the lost list everywhere. From then on the check of a recovery of every node
 * reads none of its changes: one that only a survivor's unwritten image held shows up. */
static void close_step(struct sim *s)
{
	if (!every_survivor(s, flushed_at))
		return;
	for (uint32_t d = 1; d <= s->n; d++) {
		if (!pending(s, d))
			continue;
		const struct sim_node *nd = &s->nodes[d - 1];
		s->dead_ckpt[d - 1] = nd->durable + 1;
		for (uint32_t i = 0; i < s->n; i++) {
			struct coral_grd_loss *L = &s->nodes[i].dir->loss[d - 1];
			atomic_store(&L->done, atomic_load(&L->seq));
		}
		if (trace)
			fprintf(stderr, "%llu: node %u recovered, its thread closed at %llu\n", (unsigned long long)s->now_ms,
				d, (unsigned long long)s->dead_ckpt[d - 1]);
	}
	for (uint32_t b = 0; b < SIM_BLOCKS; b++)
		s->lost_owner[b] = 0;
	s->map_version++;
	s->pending = 0;
	s->recovering = false;
	s->applied = false;
}

/* ---- invariants ----------------------------------------------------------------------- */

/* Every node's redo checkpoint is at or before each of its changes the disk lacks: a
 * recovery of the node's thread from there would find them (values only grow, so a disk
 * value at or past a change's holds it). */
static void check_ckpt(struct sim *s)
{
	for (uint32_t i = 0; i < s->n && !s->failed; i++) {
		struct sim_node *nd = &s->nodes[i];
		if (nd->dead || nd->out)
			continue;
		uint64_t ck = gcs_core_ckpt_lsn(nd->core, nd->lsn + 1);
		for (uint32_t b = 0; b < SIM_BLOCKS; b++) {
			uint64_t on_disk = value_of(s->disk[b]);
			uint32_t k = 0;
			while (k < nd->nundisk[b] && nd->undisk[b][k].value <= on_disk)
				k++;
			if (k > 0) {
				memmove(nd->undisk[b], nd->undisk[b] + k, (nd->nundisk[b] - k) * sizeof(nd->undisk[b][0]));
				nd->nundisk[b] -= k;
			}
			if (nd->nundisk[b] > 0 && nd->undisk[b][0].lsn < ck)
				fail(s, "node %u's checkpoint (LSN %llu) passed its change at LSN %llu to block %u (value %llu), "
				     "which the disk (value %llu) does not have", nd->id, (unsigned long long)ck,
				     (unsigned long long)nd->undisk[b][0].lsn, b, (unsigned long long)nd->undisk[b][0].value,
				     (unsigned long long)on_disk);
		}
	}
}

/* If every node were lost now: instance recovery (smond's recovery.c) of every thread from
 * its checkpoint to its durable end, over the images on the disk, must give every block the
 * value of its last durable change (each change is its own committed transaction here: its
 * commit record goes out with it), and leave the blocks it does not touch at that value. */
/* Node nd's thread from LSN ck to its durable end, into r: each change with its undo, and its
 * commit (each change is its own committed transaction here). */
static void add_thread(struct sim *s, struct recovery *r, const struct sim_node *nd, uint64_t ck)
{
	uint32_t lo = 0, hi = nd->nlog;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (nd->log[mid].lsn < ck)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t k = lo; k < nd->nlog; k++) {
		const struct sim_rec *x = &nd->log[k];
		if (x->lsn > nd->durable)
			break;
		uint32_t k8 = (uint32_t)(1 + x->newv % 8);
		/* the change's two records, as libcoral would write them */
		for (int part = 0; part < 2; part++) {
			struct coral_redo_rec h = {.magic = CORAL_REDO_MAGIC, .type = CORAL_REDO_CHANGE,
						   .flags = (uint8_t)((part ? 0 : CORAL_REDO_F_BEGIN) | CORAL_REDO_F_UNDO),
						   .lsn = x->lsn, .scn = x->scn, .session = 1, .file = 1,
						   .block = x->block, .offset = part ? 8 * k8 : 0, .nbytes = 8};
			uint64_t bytes[2] = {x->newv, part ? x->old_slot : x->oldv};
			h.len = (uint32_t)(sizeof(h) + sizeof(bytes));
			if (recovery_add_record(r, nd->id, &h, (const uint8_t *)bytes) != 0)
				fail(s, "recovery refused a record of node %u", nd->id);
		}
		struct coral_redo_rec cm = {.magic = CORAL_REDO_MAGIC, .type = CORAL_REDO_COMMIT, .lsn = x->lsn,
					    .scn = x->scn, .session = 1, .len = sizeof(cm)};
		recovery_add_record(r, nd->id, &cm, NULL);
	}
}

/* The thread's checkpoint: the core's, or the lost node's when it was lost. */
static uint64_t thread_ckpt(const struct sim *s, const struct sim_node *nd)
{
	return nd->dead || nd->out ? s->dead_ckpt[nd->id - 1] : gcs_core_ckpt_lsn(nd->core, nd->lsn + 1);
}

static void check_recovery(struct sim *s)
{
	struct recovery *r = recovery_new(1 << 26);
	uint64_t (*expect)[9] = s->expect;
	for (uint32_t i = 0; i < s->n && !s->failed; i++) {
		struct sim_node *nd = &s->nodes[i];
		/* what is durable now, folded in once */
		for (; nd->exp_upto < nd->nlog && nd->log[nd->exp_upto].lsn <= nd->durable; nd->exp_upto++) {
			const struct sim_rec *x = &nd->log[nd->exp_upto];
			uint32_t k8 = (uint32_t)(1 + x->newv % 8);
			if (x->newv > expect[x->block][0])
				expect[x->block][0] = x->newv;
			if (x->newv > expect[x->block][k8])
				expect[x->block][k8] = x->newv;
		}
		add_thread(s, r, nd, thread_ckpt(s, nd));
	}
	uint64_t nb = recovery_plan(r);
	for (uint32_t b = 0; b < SIM_BLOCKS && !s->failed; b++) {
		uint8_t img[SIM_BS];
		memcpy(img, s->disk[b], SIM_BS);
		for (uint64_t i = 0; i < nb; i++) {
			uint32_t f;
			uint64_t blk;
			recovery_block(r, i, &f, &blk);
			if (blk == b && recovery_apply(r, i, img, SIM_BS) != 0)
				fail(s, "recovery could not apply block %u", b);
		}
		for (uint32_t w = 0; w < 9 && !s->failed; w++) {
			uint64_t got;
			memcpy(&got, img + sizeof(struct coral_block_hdr) + 8 * w, 8);
			if (got != expect[b][w])
				fail(s, "if every node were lost now, recovery would give block %u word %u the value %llu (disk "
				     "%llu), not the last durable %llu", b, w, (unsigned long long)got,
				     (unsigned long long)value_of(s->disk[b]), (unsigned long long)expect[b][w]);
		}
	}
	recovery_free(r);
}

static void check(struct sim *s)
{
	check_ckpt(s);
	if (s->nchecks++ % 32 == 0)
		check_recovery(s);
	for (uint32_t blk = 0; blk < SIM_BLOCKS; blk++) {
		uint32_t x = 0, sh = 0, xnode = 0;
		for (uint32_t i = 0; i < s->n; i++) {
			if (s->nodes[i].dead)
				continue;
			struct coral_cache *c = s->nodes[i].cache;
			uint32_t ch = coral_cache_chain(c, 1, blk);
			coral_cache_lock(c, ch);
			struct coral_buf *b = coral_cache_find(c, 1, blk, false);
			if (b && b->mode == CORAL_BL_X) {
				x++;
				xnode = i + 1;
			} else if (b && b->mode == CORAL_BL_S) {
				sh++;
			}
			coral_cache_unlock(c, ch);
		}
		if (x > 1)
			fail(s, "block %u held in X by %u nodes", blk, x);
		if (x == 1 && sh > 0)
			fail(s, "block %u held in X by node %u and in S by %u other nodes", blk, xnode, sh);
	}
	/* consistent images: each kept only while its buffer is pinned in X, and counted */
	for (uint32_t i = 0; i < s->n; i++) {
		struct coral_cache *c = s->nodes[i].cache;
		if (s->nodes[i].dead || c == NULL)
			continue;
		uint32_t with = 0;
		for (uint32_t k = 0; k < c->nbuf; k++) {
			const struct coral_buf *b = coral_cache_buf(c, k);
			if (b->clone == 0)
				continue;
			with++;
			if (!(atomic_load(&b->pins) & CORAL_BUF_XPIN))
				fail(s, "node %u: buffer %u (block %llu) keeps a consistent image with no X pin", i + 1, k,
				     (unsigned long long)b->block);
		}
		if (with != atomic_load(&c->clones_used))
			fail(s, "node %u: %u buffers keep a consistent image, %u counted in use", i + 1, with,
			     atomic_load(&c->clones_used));
	}
	/* past images: any that vanished must be covered by the disk */
	struct sim_pi now[SIM_PIS];
	uint32_t nnow = 0;
	for (uint32_t i = 0; i < s->n; i++) {
		if (s->nodes[i].dead)
			continue;
		struct coral_cache *c = s->nodes[i].cache;
		for (uint32_t k = 0; k < c->nbuf; k++) {
			struct coral_buf *b = coral_cache_buf(c, k);
			if ((b->flags & CORAL_BUFF_VALID) && (b->flags & CORAL_BUFF_PI) && nnow < SIM_PIS)
				now[nnow++] = (struct sim_pi){i + 1, (uint32_t)b->block, b->scn};
		}
	}
	for (uint32_t k = 0; k < s->npis; k++) {
		bool still = false;
		for (uint32_t j = 0; j < nnow && !still; j++)
			still = now[j].node == s->pis[k].node && now[j].block == s->pis[k].block &&
				now[j].scn == s->pis[k].scn;
		if (!still) {
			/* taken back as the node's current image (its ship went unacknowledged) */
			struct coral_cache *c = s->nodes[s->pis[k].node - 1].cache;
			struct coral_buf *cb = coral_cache_find(c, 1, s->pis[k].block, false);
			if (cb && cb->scn >= s->pis[k].scn)
				still = true;
		}
		/* superseded by a newer past image of the block on the same node */
		for (uint32_t j = 0; j < nnow && !still; j++)
			still = now[j].node == s->pis[k].node && now[j].block == s->pis[k].block &&
				now[j].scn > s->pis[k].scn;
		if (!still) {
			if (s->disk_scn[s->pis[k].block] < s->pis[k].scn)
				fail(s, "node %u dropped its past image of block %u (scn %llu) with the disk at scn %llu",
				     s->pis[k].node, s->pis[k].block, (unsigned long long)s->pis[k].scn,
				     (unsigned long long)s->disk_scn[s->pis[k].block]);
			s->r->pi_dropped++;
		}
	}
	for (uint32_t j = 0; j < nnow; j++) {
		bool known = false;
		for (uint32_t k = 0; k < s->npis && !known; k++)
			known = now[j].node == s->pis[k].node && now[j].block == s->pis[k].block &&
				now[j].scn == s->pis[k].scn;
		if (!known)
			s->r->pi_kept++;
	}
	memcpy(s->pis, now, nnow * sizeof(now[0]));
	s->npis = nnow;
}

static void deliver(struct sim *s, bool all)
{
	/* due messages, in a random order */
	for (;;) {
		uint32_t due[64], ndue = 0;
		for (uint32_t k = 0; k < s->nmsgs && ndue < 64; k++)
			if (all || s->msgs[k].at <= s->now_ms)
				due[ndue++] = k;
		if (ndue == 0)
			return;
		uint32_t k = due[rndn(s, ndue)];
		struct sim_msg m = s->msgs[k];
		s->msgs[k] = s->msgs[--s->nmsgs];
		struct sim_node *nd = &s->nodes[m.to - 1];
		if (nd->dead || nd->out || s->nodes[m.from - 1].dead) {
			/* the lost node's connections are gone (its incarnation is fenced off); a node
			 * out of the cluster answers nobody (lmsd's kit_recv), though what its dead lmsd
			 * sent may still arrive until it is evicted */
			free(m.data);
			continue;
		}
		if (trace) {
			Coral__GcsMsg *x = coral__gcs_msg__unpack(NULL, m.len, m.data);
			if (x) {
				fprintf(stderr, "%llu: %u->%u %s blk %llu rid %llu gen %llu req %u mode %u dirty %d from %u bscn %llu val %llu\n",
					(unsigned long long)s->now_ms, m.from, m.to, gcs_kind_name((int)x->kind),
					(unsigned long long)x->block, (unsigned long long)x->rid % 100000,
					(unsigned long long)x->gen, x->requester, x->mode, x->dirty, x->from,
					(unsigned long long)x->block_scn,
					x->data.len ? (unsigned long long)value_of(x->data.data) : 0ull);
				coral__gcs_msg__free_unpacked(x, NULL);
			}
		}
		run_core(s, nd);
		gcs_core_recv(nd->core, m.from, GCS_NET_MSG, m.data, m.len);
		free(m.data);
		check(s);
		if (s->failed || all)
			return;
	}
}

int gcs_sim_run(uint64_t seed, uint32_t nodes, uint32_t steps, struct gcs_sim_result *out, char *err,
		size_t errsz)
{
	memset(out, 0, sizeof(*out));
	if (nodes < 2 || nodes > SIM_MAX_NODES) {
		snprintf(err, errsz, "nodes must be 2..%d", SIM_MAX_NODES);
		return 1;
	}
	struct sim *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errsz, "out of memory");
		return 1;
	}
	s->rng = seed * 0x9e3779b97f4a7c15ull + 1;
	trace = getenv("GCS_SIM_TRACE") != NULL;
	s->n = nodes;
	s->err = err;
	s->errsz = errsz;
	s->r = out;
	s->loss_pct = 2 + (int)rndn(s, 8);
	s->delay_max = 1 + (int)rndn(s, 6);
	s->interleave_pct = 5 + (int)rndn(s, 30);
	s->write_fail_pct = (int)rndn(s, 3) == 0 ? 0 : 5 + (int)rndn(s, 40);
	s->log_slow_pct = (int)rndn(s, 4) == 0 ? 0 : 10 + (int)rndn(s, 80);
	hook_sim = s;
	coral_cache_unlock_hook = unlock_hook;
	err[0] = 0;
	s->map_version = 1;
	/* half the runs of three nodes or more lose one (drawn apart: the rest of the run is
	 * the same seed's) */
	const char *losses = getenv("GCS_SIM_LOSSES");
	if (!(losses && losses[0] == '0') && nodes >= 3 && seed % 2 == 0 && steps > 10)
		s->kill_step = 1 + (uint32_t)((seed * 0x9e3779b97f4a7c15ull >> 20) % (steps - 1));
	/* in a third of the runs the last node comes on the ring late: its sessions wait */
	if (seed % 3 == 1) {
		s->joining = nodes;
		s->join_ms = 50 + (seed * 0x94d049bb133111ebull >> 33) % 500;
	}
	/* with five nodes or more (a quorum survives two), a second loss in half of those runs,
	 * soon after the first: often while its recovery is under way */
	if (s->kill_step && nodes >= 5 && seed % 4 == 0) {
		uint64_t after = 1 + (seed * 0xbf58476d1ce4e5b9ull >> 24) % 300;
		if (s->kill_step + after < steps)
			s->kill_step2 = s->kill_step + (uint32_t)after;
	}
	/* in the runs without a loss, a node's lmsd restarts, in half of them twice */
	const char *restarts = getenv("GCS_SIM_RESTARTS");
	if (!(restarts && restarts[0] == '0') && nodes >= 3 && s->kill_step == 0 && steps > 10) {
		uint64_t h = seed * 0xd6e8feb86659fd93ull;
		s->restart_step[0] = 1 + (uint32_t)((h >> 17) % (steps / 2));
		if ((h >> 61) & 1)
			s->restart_step[1] = s->restart_step[0] + 1 + (uint32_t)((h >> 29) % (steps / 2));
	}
	for (uint32_t b = 0; b < SIM_BLOCKS; b++) {
		coral_block_format(s->disk[b], SIM_BS, 1, b, 0);
		s->master[b] = 1 + (uint32_t)((b * 2654435761u) % nodes);
		s->movable[b] = true;
		for (uint32_t o = 0; o < SIM_BLOCKS; o++)
			if (o != b && block_bucket(o) == block_bucket(b))
				s->movable[b] = false;
	}
	struct gcs_ops ops = {.send = op_send, .master = op_master, .read = op_read, .write = op_write, .sync = op_sync,
			      .flush_start = op_flush_start, .log_force = op_log_force, .done = op_done,
			      .lost_owner = op_lost_owner, .on_ring = op_on_ring};
	for (uint32_t i = 0; i < nodes; i++) {
		struct sim_node *nd = &s->nodes[i];
		nd->id = i + 1;
		size_t cs = coral_cache_size(SIM_NBUF, SIM_BS, SIM_NCLONE);
		nd->cache = aligned_alloc(64, (cs + 63) & ~(size_t)63);
		size_t ds = coral_grd_dir_size(64);
		nd->dir = aligned_alloc(64, (ds + 63) & ~(size_t)63);
		if (nd->cache == NULL || nd->dir == NULL || coral_cache_init(nd->cache, cs, SIM_NBUF, SIM_BS, SIM_NCLONE) != 0 ||
		    coral_grd_dir_init(nd->dir, ds, 64) != 0) {
			snprintf(err, errsz, "cannot set up node %u", i + 1);
			s->failed = true;
			break;
		}
		args[i] = (struct sim_arg){s, nd};
		nd->inc = 1;
		s->ops[i] = ops;
		s->ops[i].arg = &args[i];
		nd->core = gcs_core_new(nd->id, nd->cache, nd->dir, &s->ops[i], 20, 100000);
		gcs_core_clock(nd->core, 1000);
	}
	for (uint32_t t = 0; t < steps && !s->failed; t++) {
		s->now_ms++;
		for (uint32_t i = 0; i < nodes; i++)
			gcs_core_clock(s->nodes[i].core, s->now_ms * 1000 + 1000000);
		deliver(s, false);
		log_step(s);
		for (uint32_t i = 0; i < nodes && !s->failed; i++)
			for (uint32_t k = 0; k < SIM_SESSIONS && !s->nodes[i].dead && !s->nodes[i].out; k++)
				session_step(s, &s->nodes[i], k);
		for (uint32_t i = 0; i < nodes; i++)
			if (!s->nodes[i].dead && !s->nodes[i].out)
				gcs_core_tick(s->nodes[i].core);
		if (rndn(s, 60) == 0) {
			uint32_t i = rndn(s, nodes);
			if (!s->nodes[i].dead && !s->nodes[i].out)
				gcs_core_checkpoint(s->nodes[i].core);
		}
		remaster_step(s);
		if (t + 1 >= s->kill_step && s->kill_step && s->ndead == 0 && !s->mv.on)
			kill_node(s);
		else if (t + 1 >= s->kill_step2 && s->kill_step2 && s->ndead == 1 && !s->mv.on)
			kill_node(s);
		else if (s->nrestarts < 2 && s->restart_step[s->nrestarts] && t + 1 >= s->restart_step[s->nrestarts] &&
			 !s->mv.on && !s->recovering && !any_out(s))
			restart_lmsd(s);
		out_step(s);
		if (s->recovering)
			smond_step(s);
		check(s);
	}
	/* heal: no more loss; let every session finish (a move under way ends first) */
	s->loss_pct = 0;
	s->write_fail_pct = 0;
	s->healing = true;
	for (uint32_t t = 0; t < 20000 && !s->failed; t++) {
		s->now_ms++;
		if (s->mv.on)
			remaster_step(s);
		for (uint32_t i = 0; i < nodes; i++)
			gcs_core_clock(s->nodes[i].core, s->now_ms * 1000 + 1000000);
		deliver(s, false);
		log_step(s);
		out_step(s);
		if (s->recovering)
			smond_step(s);
		bool busy = s->nmsgs > 0 || s->mv.on || s->recovering || any_out(s);
		for (uint32_t i = 0; i < nodes; i++) {
			if (s->nodes[i].dead || s->nodes[i].out)
				continue;
			for (uint32_t k = 0; k < SIM_SESSIONS; k++) {
				struct sim_session *ss = &s->nodes[i].s[k];
				if (ss->state != SS_IDLE) {
					session_step(s, &s->nodes[i], k);
					busy = true;
				}
			}
			gcs_core_tick(s->nodes[i].core);
			if (gcs_core_waits(s->nodes[i].core) || gcs_core_deferred(s->nodes[i].core))
				busy = true;
		}
		/* a session may have stepped in during the ticks */
		for (uint32_t i = 0; i < nodes; i++)
			for (uint32_t k = 0; k < SIM_SESSIONS && !s->nodes[i].dead; k++)
				busy |= s->nodes[i].s[k].state != SS_IDLE;
		check(s);
		if (!busy)
			break;
	}
	for (uint32_t i = 0; i < nodes && !s->failed; i++)
		for (uint32_t k = 0; k < SIM_SESSIONS && !s->nodes[i].dead; k++)
			if (s->nodes[i].s[k].state != SS_IDLE) {
				uint32_t b = s->nodes[i].s[k].block;
				struct coral_resid id = {.type = CORAL_RES_BLOCK, .id1 = 1, .id2 = b};
				const struct coral_grd_entry *e = coral_grd_dir_find(s->nodes[s->master[b] - 1].dir, &id);
				fail(s, "node %u session %u never finished (state %d, block %u; at its master %u: %s%s%s cur %u op %u "
				     "for %u gen %llu holders %#llx pi %#llx queue %u)", i + 1, k, s->nodes[i].s[k].state, b,
				     s->master[b], e ? "entry" : "no entry",
				     e && (e->flags & CORAL_GRDE_RECOVERY) ? " in recovery" : "",
				     s->lost_owner[b] ? " lost owner" : "", e ? e->cur : 0, e ? e->op_phase : 0,
				     e ? e->op_node : 0, e ? (unsigned long long)e->gen : 0ull,
				     e ? (unsigned long long)e->holders : 0ull, e ? (unsigned long long)e->pi : 0ull,
				     e ? e->nconv : 0);
			}
	/* every node reads every block once more: each must see the last value written (no
	 * session steps in any more: they would keep writing) */
	s->interleave_pct = 0;
	for (uint32_t b = 0; b < SIM_BLOCKS && !s->failed; b++) {
		for (uint32_t i = 0; i < nodes && !s->failed; i++) {
			struct sim_node *nd = &s->nodes[i];
			if (nd->dead)
				continue;
			struct sim_session *ss = &nd->s[0];
			ss->block = b;
			ss->mode = CORAL_BL_S;
			ss->state = SS_WAIT;
			ss->answered = false;
			ss->pinned = fast_pin(nd, b, CORAL_BL_S, &ss->buf);
			if (ss->pinned)
				pinned_now(s, nd, ss);
			else
				gcs_core_get(nd->core, 1, b, CORAL_BL_S, (uint64_t)nd->id << 32);
			for (uint32_t t = 0; t < 20000 && ss->state != SS_IDLE && !s->failed; t++) {
				s->now_ms++;
				if (s->mv.on)
					remaster_step(s);
				for (uint32_t j = 0; j < nodes; j++)
					gcs_core_clock(s->nodes[j].core, s->now_ms * 1000 + 1000000);
				deliver(s, false);
				log_step(s);
				if (ss->state == SS_HOLD || ss->state == SS_COMMIT)
					ss->hold_until = 0;
				session_step(s, nd, 0);
				for (uint32_t j = 0; j < nodes; j++)
					if (!s->nodes[j].dead)
						gcs_core_tick(s->nodes[j].core);
				check(s);
			}
			if (ss->state != SS_IDLE)
				fail(s, "the final read of block %u on node %u never finished", b, i + 1);
		}
	}
	/* write everything back: the disk must then hold the last value of every block (unless
	 * the newest image is a past image whose ship was refused: then the read above saw it) */
	for (uint32_t i = 0; i < nodes && !s->failed; i++) {
		struct sim_node *nd = &s->nodes[i];
		if (nd->dead)
			continue;
		gcs_core_checkpoint(nd->core);
		if (nd->syncing) {
			nd->syncing = false;
			land(s, nd, nd->flush_failed);
			gcs_core_synced(nd->core, nd->flush_failed ? CORAL_EIO : 0);
		}
	}
	for (uint32_t b = 0; b < SIM_BLOCKS && !s->failed; b++)
		if (value_of(s->disk[b]) > s->truth[b])
			fail(s, "after the final checkpoint block %u holds %llu on disk, last written %llu", b,
			     (unsigned long long)value_of(s->disk[b]), (unsigned long long)s->truth[b]);
	for (uint32_t i = 0; i < nodes; i++) {
		struct sim_node *nd = &s->nodes[i];
		if (nd->core)
			add_stats(out, nd->core);
		if (nd->cache) {
			out->evictions += atomic_load(&nd->cache->st.evictions);
			out->clone_served += atomic_load(&nd->cache->st.clone_reads);
			if (!nd->dead && atomic_load(&nd->cache->clones_used) != 0 && !s->failed)
				fail(s, "node %u: %u consistent images still in use at the end", nd->id,
				     atomic_load(&nd->cache->clones_used));
		}
		gcs_core_free(nd->core);
		free(nd->cache);
		free(nd->dir);
		for (uint32_t b = 0; b < SIM_BLOCKS; b++)
			free(nd->undisk[b]);
		free(nd->log);
	}
	for (uint32_t k = 0; k < s->nmsgs; k++)
		free(s->msgs[k].data);
	int rc = s->failed ? 1 : 0;
	coral_cache_unlock_hook = NULL;
	hook_sim = NULL;
	free(s);
	return rc;
}

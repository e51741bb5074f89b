/* The Global Cache Service core (see gcs.h for the protocol). Three roles in one file, each
 * a group of handlers: the requester (sessions' waits, installing what comes), the holder
 * (shipping, invalidation, past images, write-back) and the master (queue and operations in
 * the directory entry). Every handler checks the message's kind-specific fields before use;
 * a message that makes no sense is counted and dropped.
 *
 * The invariant that keeps it safe under loss and reordering: the master's view of a node
 * may be higher than the truth (it thinks a node holds what it has dropped), never lower.
 * Everything that lowers it is either the node's own answer to the operation in progress or
 * a release tagged with the operation number it was granted at. */
#include "gcs.h"
#include "cache.h"
#include "log.h"
#include "errors.h"
#include "storage.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GCS_MAX_OPS 4096      /* blocks this node masters with an operation under way */
#define GCS_MAX_PIDROP 4096   /* blocks whose past images are still to be dropped */
#define GCS_OP_TRIES 20       /* an operation re-sent this often is logged */
#define GCS_TRACE_MAX 20000000 /* lines in a trace file (a few GB) */

enum { OP_IDLE, OP_INV, OP_XFER };
enum { SHIP_FWD = 1, SHIP_INV };

struct gcs_waiter {
	uint64_t cookie;
	uint8_t mode;
};

struct gcs_wait {
	bool used, cr;
	uint8_t want;
	uint32_t file;
	uint64_t block;
	uint64_t rid;
	uint32_t master;
	uint64_t asked;               /* every master this request (rid) went to (bit id-1) */
	uint64_t sent_ms, first_us, deadline_ms;
	uint32_t pos;                 /* its place in live[] */
	int code;                     /* why it waits again (CORAL_EFULL), the error at its deadline */
	uint32_t nw;
	struct gcs_waiter w[GCS_MAX_WAITERS];
};

struct gcs_blk {
	uint32_t file;
	uint64_t block;
};

/* A block written back, until its data file is synced. */
struct gcs_written {
	uint32_t buf, file;
	uint64_t block, scn, gen;
	uint64_t lsn;         /* the redo the image holds ends here */
};

#define GCS_MAX_QUERY 1024   /* transfers to a lost node being settled with their shipper */
#define GCS_REPORT_REC 32    /* a REPORT's image: file u32, mode u8, past image u8, pad, block, gen, scn */
#define GCS_REPORT_BATCH 200 /* images in one REPORT */
#define GCS_REPORT_BATCHES 16 /* REPORTs a job sends in one go (then at the next tick) */
#define GCS_MAX_REPORT_JOBS (2 * CORAL_MAX_NODES)

/* Holder: the reports one master asked for about one loss, under way. */
struct gcs_report_job {
	bool active;
	uint32_t to, lost, next;
	uint64_t inc, count;
};

/* A node's loss, at this node as a master rebuilding the blocks of its buckets. */
struct gcs_loss {
	uint64_t inc;                 /* the lost incarnation; 0: none */
	uint64_t seq;                 /* the directory's count of the loss */
	uint64_t waiting;             /* survivors whose reports have not all come */
	uint64_t asked_ms;            /* REPORT_REQ last sent */
	uint64_t since_ms, asks;      /* learnt at; REPORT_REQ rounds */
	uint32_t got[CORAL_MAX_NODES];/* reports received from each survivor */
	bool settled;
	/* the images here that may hold the lost node's changes unwritten (gcs_core_loss_flushed) */
	struct gcs_flush *flush;      /* sorted by block; scn 0 once written */
	uint32_t nflush, left;
	uint64_t flush_ms;            /* last look at the cache, and checkpoint asked for */
	bool flush_failed;            /* no memory to list them: never flushed */
};

/* An image the disk must reach before the lost node's thread may close: the block written
 * at scn or newer. */
struct gcs_flush {
	uint32_t file;
	uint64_t block, scn;
};
static void flush_written(struct gcs_core *c, uint32_t file, uint64_t block, uint64_t scn);

struct gcs_query {
	uint32_t file, lost, to;
	uint64_t block, inc, sent_ms;
};

struct gcs_core {
	uint32_t self;
	struct coral_cache *cache;
	struct coral_grd_dir *dir;
	struct gcs_ops ops;
	uint32_t retry_ms, timeout_ms;
	uint64_t now_us, now_ms;
	uint64_t next_rid;
	struct gcs_wait *waits;
	/* the waits in use, densely, and the free ones: a lookup touches only live waits (a
	 * wait is a kilobyte; scanning the whole table on every message was a megabyte) */
	uint32_t live[GCS_MAX_WAITS], nwaits;
	uint32_t freeidx[GCS_MAX_WAITS], nfree;
	uint32_t *deferred;
	uint32_t ndeferred;
	uint32_t *wwait;              /* buffers marked CORAL_BUFF_WRITEWAIT: written at their unpin */
	uint32_t nwwait;
	uint8_t *scratch;             /* one block: what is shipped or written is copied here */
	uint8_t *scratch2;            /* one more, for a disk image to compare with */
	uint32_t *ckpt;               /* checkpoint: the buffers to write */
	struct gcs_written *ckpt_w;   /* ... those written, waiting for their sync */
	struct gcs_write *ckpt_io;    /* ... what ops.flush_start writes: their images, */
	uint8_t *ckpt_data;           /* ... copied here (GCS_CKPT_BATCH blocks) */
	uint32_t nckpt_w;
	bool ckpt_syncing;            /* written and synced off the loop (ops.flush_start) */
	uint32_t *unacked;            /* buffers whose grant's ACK the master has not confirmed */
	uint32_t nunacked;
	struct gcs_blk ops_list[GCS_MAX_OPS];
	uint32_t nops;
	struct gcs_blk pidrop[GCS_MAX_PIDROP];
	uint32_t npidrop;
	struct gcs_stats st;
	bool ckpt_wanted;             /* a wait found no free buffer: the tick writes back */
	struct gcs_loss loss[CORAL_MAX_NODES];
	uint64_t lost_mask;           /* nodes lost: nothing is shipped to them */
	uint64_t early_ask[CORAL_MAX_NODES];  /* masters that asked for reports on a loss not seen here yet */
	struct gcs_query query[GCS_MAX_QUERY];
	uint32_t nquery;
	struct gcs_report_job jobs[GCS_MAX_REPORT_JOBS];
	FILE *trace;                  /* CORAL_GCS_TRACE: every message and image change, for debugging */
	uint64_t trace_lines;         /* bounded: the trace stops at GCS_TRACE_MAX lines */
};

/* The trace (lmsd(8), ENVIRONMENT): one line per message sent or received and per change
 * of a block's image in this cache, wall-clock stamped so that the nodes' files merge. */
static void tr(struct gcs_core *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tr(struct gcs_core *c, const char *fmt, ...)
{
	if (++c->trace_lines > GCS_TRACE_MAX) {
		fprintf(c->trace, "trace stopped after %d lines\n", GCS_TRACE_MAX);
		fclose(c->trace);
		c->trace = NULL;
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(c->trace, "%lld.%06ld n%u ", (long long)ts.tv_sec, ts.tv_nsec / 1000, c->self);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(c->trace, fmt, ap);
	va_end(ap);
	fputc('\n', c->trace);
	fflush(c->trace);
}
#define TR(c, ...) do { if ((c)->trace) tr((c), __VA_ARGS__); } while (0)

static void tr_msg(struct gcs_core *c, const char *dir, uint32_t peer, const Coral__GcsMsg *m)
{
	tr(c, "%s %u %s %u:%llu rid %llu gen %llu mode %u req %u bscn %llu dirty %d code %d scn %llu", dir, peer,
	   gcs_kind_name((int)m->kind), m->file, (unsigned long long)m->block, (unsigned long long)m->rid,
	   (unsigned long long)m->gen, m->mode, m->requester, (unsigned long long)m->block_scn, (int)m->dirty,
	   (int)m->code, (unsigned long long)m->scn);
}

static uint64_t bit(uint32_t node) { return 1ull << (node - 1); }

static void logf_(struct gcs_core *c, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void logf_(struct gcs_core *c, int level, const char *fmt, ...)
{
	if (c->ops.log == NULL)
		return;
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	c->ops.log(c->ops.arg, level, buf);
}

/* ---- latency histogram: 8 buckets per power of two ------------------------------------ */

void gcs_hist_add(struct gcs_hist *h, uint64_t us)
{
	h->n++;
	h->sum_us += us;
	int b = us == 0 ? 0 : (int)(8.0 * log2((double)us + 1.0));
	if (b >= GCS_HIST)
		b = GCS_HIST - 1;
	h->b[b]++;
}

uint64_t gcs_hist_pct(const struct gcs_hist *h, double pct)
{
	if (h->n == 0)
		return 0;
	uint64_t want = (uint64_t)ceil((double)h->n * pct / 100.0), seen = 0;
	for (int b = 0; b < GCS_HIST; b++) {
		seen += h->b[b];
		if (seen >= want)
			return (uint64_t)(pow(2.0, (b + 1) / 8.0) - 1.0);
	}
	return 0;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

struct gcs_core *gcs_core_new(uint32_t self, struct coral_cache *cache, struct coral_grd_dir *dir,
			      const struct gcs_ops *ops, uint32_t retry_ms, uint32_t timeout_ms)
{
	struct gcs_core *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->waits = calloc(GCS_MAX_WAITS, sizeof(*c->waits));
	c->deferred = calloc(cache->nbuf, sizeof(*c->deferred));
	c->wwait = calloc(cache->nbuf, sizeof(*c->wwait));
	c->scratch = malloc(cache->block_size);
	c->scratch2 = malloc(cache->block_size);
	c->unacked = calloc(cache->nbuf, sizeof(*c->unacked));
	c->ckpt = calloc(cache->nbuf, sizeof(*c->ckpt));
	c->ckpt_w = calloc(GCS_CKPT_BATCH, sizeof(*c->ckpt_w));
	c->ckpt_io = calloc(GCS_CKPT_BATCH, sizeof(*c->ckpt_io));
	c->ckpt_data = malloc((size_t)GCS_CKPT_BATCH * cache->block_size);
	if (c->waits == NULL || c->deferred == NULL || c->wwait == NULL || c->scratch == NULL || c->scratch2 == NULL || c->unacked == NULL ||
	    c->ckpt == NULL || c->ckpt_w == NULL || c->ckpt_io == NULL || c->ckpt_data == NULL) {
		gcs_core_free(c);
		return NULL;
	}
	for (uint32_t i = 0; i < GCS_MAX_WAITS; i++)
		c->freeidx[c->nfree++] = GCS_MAX_WAITS - 1 - i;
	c->self = self;
	c->cache = cache;
	c->dir = dir;
	c->ops = *ops;
	c->retry_ms = retry_ms ? retry_ms : 200;
	c->timeout_ms = timeout_ms ? timeout_ms : 10000;
	/* request ids start from the clock so that a restarted lmsd never reuses one */
	c->next_rid = 1;
	const char *trace = getenv("CORAL_GCS_TRACE");
	if (trace && trace[0]) {
		char path[4096];
		snprintf(path, sizeof(path), "%s.%u", trace, self);
		c->trace = fopen(path, "a");
	}
	return c;
}

void *gcs_core_arg(const struct gcs_core *c)
{
	return c->ops.arg;
}

void gcs_core_free(struct gcs_core *c)
{
	if (c == NULL)
		return;
	free(c->waits);
	free(c->deferred);
	free(c->wwait);
	free(c->scratch);
	free(c->scratch2);
	free(c->unacked);
	free(c->ckpt);
	free(c->ckpt_w);
	free(c->ckpt_io);
	free(c->ckpt_data);
	for (uint32_t n = 0; n < CORAL_MAX_NODES; n++)
		free(c->loss[n].flush);
	if (c->trace)
		fclose(c->trace);
	free(c);
}

void gcs_core_clock(struct gcs_core *c, uint64_t now_us)
{
	c->now_us = now_us;
	c->now_ms = now_us / 1000;
	if (c->next_rid < now_us)
		c->next_rid = now_us;
}

const struct gcs_stats *gcs_core_stats(const struct gcs_core *c) { return &c->st; }
uint32_t gcs_core_waits(const struct gcs_core *c) { return c->nwaits; }
uint32_t gcs_core_deferred(const struct gcs_core *c) { return c->ndeferred + c->nwwait; }

/* ---- messages ----------------------------------------------------------------------- */

/* a CR read told "ask again" while the image moves asks again this soon (ms), not after
 * gcs_retry_ms: see cr_soon */
#define GCS_CR_BUSY_MS 5
struct gcs_wait;
static void cr_soon(struct gcs_core *c, struct gcs_wait *w);

static void send_msg(struct gcs_core *c, uint32_t to, Coral__GcsMsg *m)
{
	m->scn = coral_scn_current(c->cache);
	size_t n;
	uint8_t stackbuf[512];
	uint8_t *buf = gcs_msg_pack(m, stackbuf, sizeof(stackbuf), &n);
	if (buf == NULL)
		return;
	if (c->trace)
		tr_msg(c, "send", to, m);
	if (c->ops.send(c->ops.arg, to, GCS_NET_MSG, buf, n) != 0)
		c->st.lost++;
	if (buf != stackbuf)
		free(buf);
}

static void msg_init(Coral__GcsMsg *m, int kind, uint32_t file, uint64_t block)
{
	coral__gcs_msg__init(m);
	m->kind = (uint32_t)kind;
	m->file = file;
	m->block = block;
}

static struct coral_resid resid(uint32_t file, uint64_t block)
{
	return (struct coral_resid){.type = CORAL_RES_BLOCK, .id1 = file, .id2 = block};
}

/* ---- buffers (holder and requester side) ------------------------------------------- */

/* Adds buffer index i to a set of at most cap (one entry per buffer: never more). */
static void idx_set_add(uint32_t *set, uint32_t *n, uint32_t cap, uint32_t i)
{
	for (uint32_t k = 0; k < *n; k++)
		if (set[k] == i)
			return;
	if (*n < cap)
		set[(*n)++] = i;
}

static void defer_add(struct gcs_core *c, uint32_t i)
{
	idx_set_add(c->deferred, &c->ndeferred, c->cache->nbuf, i);
}

/* Drops buffer i (unlinked, invalid). Latch not held. */
static void buf_free(struct gcs_core *c, uint32_t i)
{
	struct coral_buf *b = coral_cache_buf(c->cache, i);
	if (!(b->flags & CORAL_BUFF_VALID))
		return;
	TR(c, "free %u:%llu buf %u flags %#x mode %u scn %llu", b->file, (unsigned long long)b->block, i, b->flags,
	   b->mode, (unsigned long long)b->scn);
	atomic_fetch_sub(&c->cache->valid, 1);
	if (b->flags & CORAL_BUFF_DIRTY)
		atomic_fetch_sub(&c->cache->dirty, 1);
	if (b->flags & CORAL_BUFF_PI)
		atomic_fetch_sub(&c->cache->pis, 1);
	lmsd_cache_unlink(c->cache, i);
}

/* Latch held, no pins: the current buffer b is to leave this cache once the latch is
 * dropped (shipped, invalidated or evicted; freed perhaps only after a write-back). Its mode
 * goes to N now, so that no session pins it in between: a session's fast path pins any
 * current buffer whose mode covers its request, and a change made to a buffer that has been
 * copied for shipping, or released to the master, is lost. (It was: coral-bank lost a
 * transfer when a clean block in X was shipped and a session changed it before the free.) */
static void retire_locked(struct coral_buf *b) { b->mode = CORAL_BL_N; }

/* The next past image of (file, block) along the chain after p (or the first, p NULL).
 * Latch held. A node may keep several generations of one block's past images for a while
 * (one pinned when a newer one was made, or one taken back and shipped again). */
static struct coral_buf *next_pi(struct gcs_core *c, uint32_t file, uint64_t block, struct coral_buf *p)
{
	if (p == NULL)
		return coral_cache_find(c->cache, file, block, true);
	for (uint32_t nx = p->next; nx != 0;) {
		struct coral_buf *q = coral_cache_buf(c->cache, nx - 1);
		if (q->file == file && q->block == block && (q->flags & CORAL_BUFF_VALID) &&
		    (q->flags & CORAL_BUFF_PI) && !(q->flags & CORAL_BUFF_CR))
			return q;
		nx = q->next;
	}
	return NULL;
}

/* Past images of a block at or below scn are dropped (a newer image is on disk); returns
 * how many are left. */
static int drop_pis(struct gcs_core *c, uint32_t file, uint64_t block, uint64_t scn)
{
	uint32_t ch = coral_cache_chain(c->cache, file, block);
	for (;;) {
		struct coral_buf *victim = NULL;
		int left = 0;
		coral_cache_lock(c->cache, ch);
		for (struct coral_buf *p = next_pi(c, file, block, NULL); p; p = next_pi(c, file, block, p)) {
			if (victim == NULL && p->scn <= scn && atomic_load(&p->pins) == 0)
				victim = p;
			else
				left++;
		}
		coral_cache_unlock(c->cache, ch);
		if (victim == NULL)
			return left;
		buf_free(c, coral_cache_index(c->cache, victim));
		c->st.pi_dropped++;
	}
}

/* The newest past image of a block, or NULL (latch held). */
static struct coral_buf *newest_pi(struct gcs_core *c, uint32_t file, uint64_t block)
{
	struct coral_buf *best = NULL;
	for (struct coral_buf *p = next_pi(c, file, block, NULL); p; p = next_pi(c, file, block, p))
		if (best == NULL || p->scn > best->scn)
			best = p;
	return best;
}

/* Write-back in steps, so a checkpoint writes and syncs many blocks at once, off the loop:
 * the image is copied (to dst) while no session can be changing it (no exclusive pin) after
 * the redo that made it is durable; then written and synced; then the buffer is clean if it
 * did not change meanwhile, this node's older past images go, and the master hears of it.
 * *w: what is written (the buffer may be another block's by the time it is synced: a
 * checkpoint's sync runs off the loop). */
static int wb_copy(struct gcs_core *c, struct coral_buf *b, uint8_t *dst, struct gcs_written *w)
{
	uint32_t i = coral_cache_index(c->cache, b);
	uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
	uint64_t forced = 0;
	for (;;) {
		coral_cache_lock(c->cache, ch);
		bool busy = (atomic_load(&b->pins) & CORAL_BUF_XPIN) != 0;
		uint64_t lsn = b->redo_lsn;
		if (!busy && lsn <= forced) {
			memcpy(dst, coral_cache_data(c->cache, i), c->cache->block_size);
			*w = (struct gcs_written){i, b->file, b->block, b->scn, b->gen, lsn};
			coral_cache_unlock(c->cache, ch);
			TR(c, "wb-copy %u:%llu scn %llu flags %#x", w->file, (unsigned long long)w->block,
			   (unsigned long long)w->scn, b->flags);
			break;
		}
		coral_cache_unlock(c->cache, ch);
		if (busy)
			return CORAL_EBUSY;
		int rc = c->ops.log_force(c->ops.arg, lsn);
		if (rc < 0)
			return rc;  /* CORAL_EPENDING: asked for, written once it is durable */
		c->st.log_forces += (uint64_t)rc;
		forced = lsn;
	}
	return 0;
}

static int wb_write(struct gcs_core *c, uint32_t file, uint64_t block, uint8_t *data, uint64_t scn)
{
	int rc = c->ops.write(c->ops.arg, file, block, data, scn);
	if (rc != 0) {
		c->st.write_errors++;
		logf_(c, CORAL_LOG_WARNING, "writing block %u:%llu back failed: %s", file, (unsigned long long)block,
		      coral_strerror(rc));
	}
	return rc;
}

static void wb_done(struct gcs_core *c, const struct gcs_written *w)
{
	c->st.writes++;
	atomic_fetch_add(&c->cache->st.writes, 1);
	struct coral_buf *b = coral_cache_buf(c->cache, w->buf);
	uint32_t ch = coral_cache_chain(c->cache, w->file, w->block);
	coral_cache_lock(c->cache, ch);
	TR(c, "written %u:%llu scn %llu now %llu flags %#x", w->file, (unsigned long long)w->block,
	   (unsigned long long)w->scn, (unsigned long long)b->scn, b->flags);
	if ((b->flags & CORAL_BUFF_VALID) && b->file == w->file && b->block == w->block &&
	    (b->flags & CORAL_BUFF_DIRTY)) {
		if (b->scn == w->scn) {
			b->flags &= (uint16_t)~CORAL_BUFF_DIRTY;
			b->first_lsn = 0;
			atomic_fetch_sub(&c->cache->dirty, 1);
		} else if (b->first_lsn != 0 && b->first_lsn <= w->lsn) {
			/* changed since the copy: every change the copy holds is on disk, and the
			 * next began at or after its end. Else a block changed all the time, written
			 * again and again, held the thread's checkpoint where it first became dirty */
			b->first_lsn = w->lsn + 1;
		}
	}
	coral_cache_unlock(c->cache, ch);
	uint32_t file = w->file;
	uint64_t block = w->block, scn = w->scn;
	drop_pis(c, file, block, scn);
	flush_written(c, file, block, scn);
	Coral__GcsMsg m;
	msg_init(&m, GCS_WRITTEN, file, block);
	m.block_scn = scn;
	m.gen = w->gen;
	uint64_t v;
	uint32_t master = c->ops.master(c->ops.arg, file, block, &v);
	if (master)
		send_msg(c, master, &m);
}

static int write_back(struct gcs_core *c, struct coral_buf *b)
{
	struct gcs_written w;
	int rc = wb_copy(c, b, c->scratch, &w);
	if (rc == 0)
		rc = wb_write(c, w.file, w.block, c->scratch, w.scn);
	if (rc == 0)
		rc = c->ops.sync(c->ops.arg);
	if (rc == 0)
		wb_done(c, &w);
	return rc;
}

/* The checkpoint found b dirty and exclusively pinned, or about to be shipped. A hot block
 * may never be found otherwise (its sessions pin it again at once, or it goes from node to
 * node, a past image left behind each time): this node's checkpoint, and a lost node's
 * recovery waiting for the images here that may hold its changes, would wait for ever. So
 * no new exclusive pin is given (sessions wait as for a pin: a copy takes microseconds) and
 * it is written at its unpin, before any ship. Latch held. */
static void wwait_mark(struct gcs_core *c, struct coral_buf *b)
{
	if (b->flags & CORAL_BUFF_WRITEWAIT)
		return;
	b->flags |= CORAL_BUFF_WRITEWAIT;
	idx_set_add(c->wwait, &c->nwwait, c->cache->nbuf, coral_cache_index(c->cache, b));
	c->st.write_waits++;
}

/* The mark goes, and the sessions waiting on it are woken. Latch not held. */
static void wwait_clear(struct gcs_core *c, struct coral_buf *b)
{
	uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
	coral_cache_lock(c->cache, ch);
	bool had = (b->flags & CORAL_BUFF_WRITEWAIT) != 0;
	b->flags &= (uint16_t)~CORAL_BUFF_WRITEWAIT;
	coral_cache_unlock(c->cache, ch);
	if (had)
		coral_buf_wake(b);
}

/* The marked buffers whose exclusive pin went: written now, on the loop (a few a second
 * at most: a block is marked once a checkpoint). One whose redo is not durable yet waits
 * for it (gcs_core_log_ready); a failed write leaves it dirty for the next checkpoint. */
static void run_write_waits(struct gcs_core *c)
{
	for (uint32_t k = 0; k < c->nwwait;) {
		struct coral_buf *b = coral_cache_buf(c->cache, c->wwait[k]);
		uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
		coral_cache_lock(c->cache, ch);
		uint16_t f = b->flags;
		bool want = (f & CORAL_BUFF_VALID) && (f & CORAL_BUFF_WRITEWAIT) && (f & CORAL_BUFF_DIRTY) &&
			    !(f & CORAL_BUFF_PI);
		bool busy = (atomic_load(&b->pins) & CORAL_BUF_XPIN) || (f & CORAL_BUFF_SYNCING);
		coral_cache_unlock(c->cache, ch);
		if (want && busy) {
			k++;
			continue;
		}
		int rc = want ? write_back(c, b) : 0;
		if (rc == CORAL_EPENDING || rc == CORAL_EBUSY) {
			k++;
			continue;
		}
		c->wwait[k] = c->wwait[--c->nwwait];
		wwait_clear(c, b);
	}
}

static void send_release(struct gcs_core *c, uint32_t file, uint64_t block, uint64_t gen)
{
	Coral__GcsMsg m;
	msg_init(&m, GCS_RELEASE, file, block);
	m.gen = gen;
	m.mode = CORAL_BL_N;
	uint64_t v;
	uint32_t master = c->ops.master(c->ops.arg, file, block, &v);
	if (master)
		send_msg(c, master, &m);
}

/* A free buffer: one never used, one freed, or a victim of the clock sweep (a clean current
 * image, released to its master; a dirty one is left to the checkpoint). -1 when every
 * buffer is pinned, dirty, a past image, or waiting to ship. */
static int64_t buf_alloc(struct gcs_core *c)
{
	struct coral_cache *k = c->cache;
	if (k->free_head >= 1 && k->free_head <= k->nbuf)
		return (int64_t)(k->free_head++ - 1);
	for (uint32_t n = 0; n < 2 * k->nbuf + 1; n++) {
		uint32_t i = k->hand;
		k->hand = (k->hand + 1) % k->nbuf;
		struct coral_buf *b = coral_cache_buf(k, i);
		if (!(b->flags & CORAL_BUFF_VALID))
			return i;
		if (atomic_load(&b->pins) != 0 ||
		    (b->flags & (CORAL_BUFF_SHIPWAIT | CORAL_BUFF_PI | CORAL_BUFF_UNACKED)))
			continue;
		if (b->flags & CORAL_BUFF_CR) {
			buf_free(c, i);
			return i;
		}
		if (b->ref) {
			b->ref = 0;
			continue;
		}
		if (b->flags & CORAL_BUFF_DIRTY) {
			/* not written here (that would stop the loop): the checkpoint the tick runs
			 * makes it clean, and replaceable */
			c->ckpt_wanted = true;
			continue;
		}
		/* the look above was unlatched: sessions pin current buffers on their own */
		uint32_t ch = coral_cache_chain(k, b->file, b->block);
		coral_cache_lock(k, ch);
		bool idle = atomic_load(&b->pins) == 0 &&
			    !(b->flags & (CORAL_BUFF_SHIPWAIT | CORAL_BUFF_PI | CORAL_BUFF_UNACKED | CORAL_BUFF_DIRTY));
		if (idle)
			retire_locked(b);
		coral_cache_unlock(k, ch);
		if (!idle)
			continue;
		uint32_t file = b->file;
		uint64_t block = b->block, gen = b->gen;
		/* past images stay: a clean S copy may be newer than the disk */
		buf_free(c, i);
		send_release(c, file, block, gen);
		atomic_fetch_add(&k->st.evictions, 1);
		return i;
	}
	c->st.full++;
	atomic_fetch_add(&k->st.full, 1);
	return -1;
}

/* ---- the requester ------------------------------------------------------------------ */

static struct gcs_wait *wait_find(struct gcs_core *c, uint32_t file, uint64_t block, bool cr)
{
	for (uint32_t k = 0; k < c->nwaits; k++) {
		struct gcs_wait *w = &c->waits[c->live[k]];
		if (w->file == file && w->block == block && w->cr == cr)
			return w;
	}
	return NULL;
}

/* A CR copy must be at least as new as the moment its session asked: CR requests are never
 * merged, so several CR waits of one block are told apart by request id. */
static struct gcs_wait *wait_find_rid(struct gcs_core *c, uint32_t file, uint64_t block, bool cr, uint64_t rid)
{
	if (!cr)
		return wait_find(c, file, block, false);
	for (uint32_t k = 0; k < c->nwaits; k++) {
		struct gcs_wait *w = &c->waits[c->live[k]];
		if (w->cr && w->file == file && w->block == block && w->rid == rid)
			return w;
	}
	return NULL;
}

static struct gcs_wait *wait_new(struct gcs_core *c, uint32_t file, uint64_t block, bool cr)
{
	if (c->nfree == 0)
		return NULL;
	uint32_t i = c->freeidx[--c->nfree];
	struct gcs_wait *w = &c->waits[i];
	memset(w, 0, sizeof(*w));
	w->used = true;
	w->cr = cr;
	w->file = file;
	w->block = block;
	w->first_us = c->now_us;
	w->deadline_ms = c->now_ms + c->timeout_ms;
	w->pos = c->nwaits;
	c->live[c->nwaits++] = i;
	return w;
}

static void wait_free(struct gcs_core *c, struct gcs_wait *w)
{
	uint32_t i = (uint32_t)(w - c->waits), last = c->live[--c->nwaits];
	c->live[w->pos] = last;
	c->waits[last].pos = w->pos;
	w->used = false;
	c->freeidx[c->nfree++] = i;
}

static void send_req(struct gcs_core *c, struct gcs_wait *w)
{
	uint64_t v;
	w->master = c->ops.master(c->ops.arg, w->file, w->block, &v);
	w->sent_ms = c->now_ms;
	if (w->master == 0)
		return; /* no map yet: the tick asks again */
	if (w->master <= CORAL_MAX_NODES)
		w->asked |= bit(w->master);
	Coral__GcsMsg m;
	msg_init(&m, w->cr ? GCS_CR_REQ : GCS_REQ, w->file, w->block);
	m.rid = w->rid;
	m.requester = c->self;
	m.mode = w->want;
	m.map_version = v;
	send_msg(c, w->master, &m);
}

static void wait_start(struct gcs_core *c, struct gcs_wait *w, uint8_t want)
{
	w->want = want;
	w->rid = ++c->next_rid;
	w->asked = 0;
	c->st.requests++;
	send_req(c, w);
}

static void done(struct gcs_core *c, uint64_t cookie, int code, uint32_t buf, int pinned, int served)
{
	c->ops.done(c->ops.arg, cookie, code, buf, pinned, served);
}

static void fail_wait(struct gcs_core *c, struct gcs_wait *w, int code)
{
	for (uint32_t k = 0; k < w->nw; k++)
		done(c, w->w[k].cookie, code, 0, 0, 0);
	wait_free(c, w);
}

/* No buffer for what came: every one is pinned, a past image, in transit or unconfirmed.
 * The sender has been told no (its image stays where it is, the master moves nothing), so
 * the wait asks again under a new request id after gcs_retry_ms, and the tick runs a
 * checkpoint first: blocks written back become replaceable, and the other nodes' write-backs
 * have the past images here dropped. The sessions fail only at their deadline. */
static void wait_full(struct gcs_core *c, struct gcs_wait *w)
{
	c->ckpt_wanted = true;
	w->code = CORAL_EFULL;
	w->rid = ++c->next_rid;
	w->asked = 0;
	w->sent_ms = c->now_ms;
}

/* The block came (buffer b, mode covers want): every waiter the mode covers is answered,
 * pinned where it can be; a waiter for X that got only S asks again. */
static void wait_complete(struct gcs_core *c, struct gcs_wait *w, struct coral_buf *b, int served)
{
	uint32_t i = coral_cache_index(c->cache, b);
	uint64_t us = c->now_us > w->first_us ? c->now_us - w->first_us : 0;
	gcs_hist_add(&c->st.lat[served], us);
	switch (served) {
	case GCS_SERVED_2WAY: c->st.two_way++; break;
	case GCS_SERVED_3WAY: c->st.three_way++; break;
	case GCS_SERVED_DISK: c->st.disk_reads++; break;
	case GCS_SERVED_CR: c->st.cr_served++; break;
	default: break;
	}
	struct gcs_waiter again[GCS_MAX_WAITERS];
	uint32_t nagain = 0, nserved = 0;
	struct {
		uint64_t cookie;
		int pinned;
	} res[GCS_MAX_WAITERS];
	uint32_t ch = coral_cache_chain(c->cache, w->file, w->block);
	coral_cache_lock(c->cache, ch);
	for (uint32_t k = 0; k < w->nw; k++) {
		struct gcs_waiter *x = &w->w[k];
		int want = x->mode == GCS_MODE_CR ? CORAL_BL_S : x->mode;
		if (!w->cr && b->mode < want) {
			again[nagain++] = *x;
			continue;
		}
		bool excl = x->mode == CORAL_BL_X;
		res[nserved].cookie = x->cookie;
		res[nserved++].pinned = coral_buf_try_pin(b, excl) ? (excl ? 2 : 1) : 0;
	}
	coral_cache_unlock(c->cache, ch);
	/* answered once the latch is gone: lmsd may take it again there (to drop a pin whose
	 * session went away) */
	for (uint32_t k = 0; k < nserved; k++)
		done(c, res[k].cookie, 0, i, res[k].pinned, served);
	bool cr = w->cr;
	uint32_t file = w->file;
	uint64_t block = w->block;
	wait_free(c, w);
	if (nagain) {
		struct gcs_wait *n = wait_new(c, file, block, cr);
		if (n == NULL) {
			for (uint32_t k = 0; k < nagain; k++)
				done(c, again[k].cookie, CORAL_EBUSY, 0, 0, 0);
			return;
		}
		memcpy(n->w, again, nagain * sizeof(again[0]));
		n->nw = nagain;
		wait_start(c, n, CORAL_BL_X);
	}
}

void gcs_core_get(struct gcs_core *c, uint32_t file, uint64_t block, int mode, uint64_t cookie)
{
	if (mode != CORAL_BL_S && mode != CORAL_BL_X && mode != GCS_MODE_CR) {
		done(c, cookie, CORAL_EINVAL, 0, 0, 0);
		return;
	}
	atomic_fetch_add(&c->cache->st.gets, 1);
	uint32_t ch = coral_cache_chain(c->cache, file, block);
	coral_cache_lock(c->cache, ch);
	struct coral_buf *b = coral_cache_find(c->cache, file, block, false);
	int want = mode == GCS_MODE_CR ? CORAL_BL_S : mode;
	if (b && b->mode >= want && !(b->flags & CORAL_BUFF_SHIPWAIT)) {
		bool excl = mode == CORAL_BL_X;
		/* none while the checkpoint waits to copy it: the session waits as for a pin */
		int pinned = !(excl && (b->flags & CORAL_BUFF_WRITEWAIT)) && coral_buf_try_pin(b, excl) ? (excl ? 2 : 1) : 0;
		b->ref = 1;
		coral_cache_unlock(c->cache, ch);
		c->st.local_hits++;
		atomic_fetch_add(&c->cache->st.local_hits, 1);
		gcs_hist_add(&c->st.lat[GCS_SERVED_LOCAL], 0);
		done(c, cookie, 0, coral_cache_index(c->cache, b), pinned, GCS_SERVED_LOCAL);
		return;
	}
	coral_cache_unlock(c->cache, ch);
	atomic_fetch_add(&c->cache->st.misses, 1);
	bool cr = mode == GCS_MODE_CR;
	struct gcs_wait *w = cr ? NULL : wait_find(c, file, block, false);
	if (w != NULL) {
		if (w->nw >= GCS_MAX_WAITERS) {
			c->st.busy++;
			done(c, cookie, CORAL_EBUSY, 0, 0, 0);
			return;
		}
		w->w[w->nw++] = (struct gcs_waiter){cookie, (uint8_t)mode};
		return;
	}
	w = wait_new(c, file, block, cr);
	if (w == NULL) {
		c->st.busy++;
		done(c, cookie, CORAL_EBUSY, 0, 0, 0);
		return;
	}
	w->w[w->nw++] = (struct gcs_waiter){cookie, (uint8_t)mode};
	wait_start(c, w, (uint8_t)(cr ? GCS_MODE_CR : mode));
}

static void send_ack_raw(struct gcs_core *c, uint32_t file, uint64_t block, uint64_t rid, uint64_t gen,
			 uint32_t master, int mode, uint32_t from, bool pi_kept, bool again)
{
	Coral__GcsMsg m;
	msg_init(&m, GCS_ACK, file, block);
	m.rid = rid;
	m.gen = gen;
	m.requester = c->self;
	m.mode = (uint32_t)mode;
	m.from = from;
	m.dirty = pi_kept;
	m.code = again ? 1 : 0;     /* a repeated ACK: the master confirms it (ACKED) */
	send_msg(c, master, &m);
}

static void send_ack(struct gcs_core *c, const Coral__GcsMsg *in, uint32_t master, int mode,
		     uint32_t from, bool pi_kept)
{
	send_ack_raw(c, in->file, in->block, in->rid, in->gen, master, mode, from, pi_kept, true);
}

/* The ACK of a grant may be lost; until the master confirms it (ACKED, or any later
 * operation on the block) the buffer stays, so that the master never believes an older
 * holder has the newest image after this node changed it, wrote it back and dropped it. */
static void unacked_add(struct gcs_core *c, struct coral_buf *b, uint32_t from, bool pi)
{
	uint32_t i = coral_cache_index(c->cache, b);
	b->flags |= CORAL_BUFF_UNACKED;
	b->ack_from = from;
	b->ack_pi = pi;
	b->ack_ms = c->now_ms;
	idx_set_add(c->unacked, &c->nunacked, c->cache->nbuf, i);
}

/* Latch held. Any message of a later operation on the block confirms the grant too. */
static void confirm(struct coral_buf *b, uint64_t gen)
{
	if (b != NULL && (b->flags & CORAL_BUFF_UNACKED) && gen >= b->gen)
		b->flags &= (uint16_t)~CORAL_BUFF_UNACKED;
}

/* Where an image for a request is to go: the current buffer, or a new one. Latch not held. */
static struct coral_buf *install_target(struct gcs_core *c, uint32_t file, uint64_t block)
{
	uint32_t ch = coral_cache_chain(c->cache, file, block);
	coral_cache_lock(c->cache, ch);
	struct coral_buf *b = coral_cache_find(c->cache, file, block, false);
	coral_cache_unlock(c->cache, ch);
	if (b != NULL)
		return b;
	int64_t i = buf_alloc(c);
	if (i < 0)
		return NULL;
	b = coral_cache_buf(c->cache, (uint32_t)i);
	/* the sweep may have freed a buffer of the same block: look again after linking */
	b->flags = 0;
	b->mode = CORAL_BL_N;
	lmsd_cache_link(c->cache, (uint32_t)i, file, block);
	return b;
}

static void mark_valid(struct gcs_core *c, bool was_valid)
{
	if (!was_valid)
		atomic_fetch_add(&c->cache->valid, 1);
}

/* GRANT: the disk image, or the requester's own copy, is current. */
static void r_grant(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	bool cr = m->mode == GCS_MODE_CR;
	struct gcs_wait *w = wait_find_rid(c, m->file, m->block, cr, m->rid);
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	if (w == NULL || w->rid != m->rid) {
		if (cr)
			return;
		coral_cache_lock(c->cache, ch);
		struct coral_buf *b = coral_cache_find(c->cache, m->file, m->block, false);
		int mode = b && b->rid == m->rid ? b->mode : -1;
		coral_cache_unlock(c->cache, ch);
		/* a duplicate: say again; else refuse it for good (no wait of this node will ever
		 * have that request id again), so the master can go on without guessing */
		send_ack_raw(c, m->file, m->block, m->rid, m->gen, from, mode >= 0 ? mode : CORAL_BL_N, 0,
			     false, mode >= 0);
		if (mode < 0)
			c->st.stale++;
		return;
	}
	if (cr) {
		/* this node may hold the current image itself (the master says so): copied first,
		 * as finding a buffer for the copy may replace the very buffer that holds it */
		coral_cache_lock(c->cache, ch);
		struct coral_buf *own = NULL;
		if (m->from == c->self) {
			own = coral_cache_find(c->cache, m->file, m->block, false);
			if (own == NULL || own->mode == CORAL_BL_N)
				own = newest_pi(c, m->file, m->block);
		}
		bool busy = own && (atomic_load(&own->pins) & CORAL_BUF_XPIN);
		/* a cached image's SCN is its header's; the header in the data is set only
		 * when the block is written */
		uint64_t own_scn = own ? own->scn : 0;
		bool own_pi = own && (own->flags & CORAL_BUFF_PI);
		/* being changed by an open transaction here: its consistent image */
		const uint8_t *img = busy ? coral_cache_clone_of(c->cache, own, &own_scn) : NULL;
		if (img != NULL) {
			memcpy(c->scratch2, img, c->cache->block_size);
			busy = false;
		} else if (own && !busy)
			memcpy(c->scratch2, coral_cache_data(c->cache, coral_cache_index(c->cache, own)),
			       c->cache->block_size);
		coral_cache_unlock(c->cache, ch);
		if (busy) {
			w->sent_ms = c->now_ms; /* being changed here: ask again */
			cr_soon(c, w);
			return;
		}
		int64_t i = buf_alloc(c);
		if (i < 0) {
			wait_full(c, w);
			return;
		}
		struct coral_buf *b = coral_cache_buf(c->cache, (uint32_t)i);
		uint8_t *data = coral_cache_data(c->cache, (uint32_t)i);
		int rc = 0;
		if (own_pi) {
			/* only a past image is left here (the current one went since the master
			 * looked): the disk may hold a newer one */
			rc = c->ops.read(c->ops.arg, m->file, m->block, data);
			if (rc == 0 && ((const struct coral_block_hdr *)data)->scn >= own_scn)
				own = NULL;
			rc = 0;
		}
		if (own)
			memcpy(data, c->scratch2, c->cache->block_size);
		else if (!own_pi)
			rc = c->ops.read(c->ops.arg, m->file, m->block, data);
		if (rc != 0) {
			fail_wait(c, w, rc);
			return;
		}
		b->flags = 0;
		lmsd_cache_link(c->cache, (uint32_t)i, m->file, m->block);
		coral_cache_lock(c->cache, ch);
		b->flags = CORAL_BUFF_VALID | CORAL_BUFF_CR;
		b->mode = CORAL_BL_N;
		b->scn = own ? own_scn : ((const struct coral_block_hdr *)data)->scn;
		b->ack_from = own ? c->self : 0;
		coral_cache_unlock(c->cache, ch);
		mark_valid(c, false);
		atomic_fetch_add(&c->cache->st.cr_copies, 1);
		wait_complete(c, w, b, GCS_SERVED_CR);
		return;
	}
	if (m->from == c->self) {
		/* the master counts this node as holding the current image: if only a past image
		 * is left (its ship went unacknowledged), that is the newest there is */
		coral_cache_lock(c->cache, ch);
		struct coral_buf *cur = coral_cache_find(c->cache, m->file, m->block, false);
		struct coral_buf *p = cur ? NULL : newest_pi(c, m->file, m->block);
		if (p != NULL) {
			/* ... unless the disk has one at least as new (this node's current image
			 * was the disk's when it let it go) */
			uint64_t pscn = p->scn;
			coral_cache_unlock(c->cache, ch);
			int rc = c->ops.read(c->ops.arg, m->file, m->block, c->scratch2);
			coral_cache_lock(c->cache, ch);
			if (rc == 0 && ((const struct coral_block_hdr *)c->scratch2)->scn >= pscn)
				p = NULL;
		}
		if (p != NULL) {
			TR(c, "pi-reclaim %u:%llu scn %llu", m->file, (unsigned long long)m->block,
			   (unsigned long long)p->scn);
			p->flags &= (uint16_t)~CORAL_BUFF_PI;
			p->flags |= CORAL_BUFF_DIRTY;
			p->mode = CORAL_BL_S;
			atomic_fetch_sub(&c->cache->pis, 1);
			atomic_fetch_add(&c->cache->dirty, 1);
		}
		coral_cache_unlock(c->cache, ch);
	}
	struct coral_buf *b = install_target(c, m->file, m->block);
	if (b == NULL) {
		send_ack(c, m, from, CORAL_BL_N, 0, false);
		wait_full(c, w);
		return;
	}
	uint32_t i = coral_cache_index(c->cache, b);
	bool was_valid = (b->flags & CORAL_BUFF_VALID) != 0;
	int served = GCS_SERVED_2WAY;
	if (!was_valid || b->mode == CORAL_BL_N) {
		uint8_t *data = coral_cache_data(c->cache, i);
		int rc = c->ops.read(c->ops.arg, m->file, m->block, data);
		if (rc != 0) {
			if (!was_valid)
				lmsd_cache_unlink(c->cache, i);
			send_ack(c, m, from, CORAL_BL_N, 0, false);
			logf_(c, CORAL_LOG_WARNING, "block %u:%llu cannot be read: %s", m->file,
			      (unsigned long long)m->block, coral_strerror(rc));
			fail_wait(c, w, rc);
			return;
		}
		coral_cache_lock(c->cache, ch);
		b->scn = ((const struct coral_block_hdr *)data)->scn;
		coral_cache_unlock(c->cache, ch);
		served = GCS_SERVED_DISK;
		atomic_fetch_add(&c->cache->st.fills, 1);
	}
	coral_cache_lock(c->cache, ch);
	b->flags |= CORAL_BUFF_VALID;
	/* a ship or invalidation that waited here belongs to an operation the master has ended
	 * since (it grants a newer one): it must not run, nor keep the sessions off the block */
	if ((b->flags & CORAL_BUFF_SHIPWAIT) && b->ship_gen <= m->gen)
		b->flags &= (uint16_t)~CORAL_BUFF_SHIPWAIT;
	b->mode = (uint8_t)m->mode;
	b->gen = m->gen;
	b->rid = m->rid;
	b->ref = 1;
	unacked_add(c, b, 0, false);
	coral_cache_unlock(c->cache, ch);
	TR(c, "grant-install %u:%llu buf %u served %d mode %u scn %llu flags %#x", m->file,
	   (unsigned long long)m->block, i, served, b->mode, (unsigned long long)b->scn, b->flags);
	mark_valid(c, was_valid);
	coral_scn_observe(c->cache, b->scn);
	/* the waiting sessions first: the acknowledgement is off their path */
	int mode = b->mode;
	wait_complete(c, w, b, served);
	send_ack_raw(c, m->file, m->block, m->rid, m->gen, from, mode, 0, false, false);
}

/* BLOCK: an image shipped by its holder (from the master itself: 2-way). */
static void r_block(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	struct gcs_wait *w = wait_find(c, m->file, m->block, false);
	uint64_t v;
	uint32_t master = c->ops.master(c->ops.arg, m->file, m->block, &v);
	if (m->data.len != c->cache->block_size || m->mode < CORAL_BL_S || m->mode > CORAL_BL_X) {
		c->st.refused_msgs++;
		return;
	}
	if (w == NULL || w->rid != m->rid) {
		coral_cache_lock(c->cache, ch);
		struct coral_buf *b = coral_cache_find(c->cache, m->file, m->block, false);
		int mode = b && b->rid == m->rid ? b->mode : -1;
		coral_cache_unlock(c->cache, ch);
		if (master)
			send_ack_raw(c, m->file, m->block, m->rid, m->gen, master, mode >= 0 ? mode : CORAL_BL_N,
				     from, mode >= 0 && m->dirty, mode >= 0);
		if (mode < 0)
			c->st.stale++;
		return;
	}
	if (w->asked & c->lost_mask) {
		/* shipped on the word of a master lost since: if this node had installed it after
		 * reporting what it holds, the new master would not know; its sender keeps it (a
		 * past image if dirty: reported) and this node asks the new master again */
		c->st.stale++;
		w->sent_ms = 0;
		return;
	}
	struct coral_buf *b = install_target(c, m->file, m->block);
	if (b == NULL) {
		/* refused: the image is not lost, its sender keeps it (a past image if dirty) and
		 * the master still counts it as the holder */
		if (master)
			send_ack_raw(c, m->file, m->block, m->rid, m->gen, master, CORAL_BL_N, from, false, false);
		wait_full(c, w);
		return;
	}
	uint32_t i = coral_cache_index(c->cache, b);
	bool was_valid = (b->flags & CORAL_BUFF_VALID) != 0;
	bool was_dirty = (b->flags & CORAL_BUFF_DIRTY) != 0;
	coral_cache_lock(c->cache, ch);
	memcpy(coral_cache_data(c->cache, i), m->data.data, m->data.len);
	b->flags = CORAL_BUFF_VALID | (m->dirty ? CORAL_BUFF_DIRTY : 0);
	b->mode = (uint8_t)m->mode;
	b->gen = m->gen;
	b->rid = m->rid;
	b->scn = m->block_scn;
	b->redo_lsn = 0;
	/* an image on disk has none of this node's changes left to recover; a dirty one may
	 * hold some this buffer held (kept: the checkpoint stays behind them) */
	if (!m->dirty)
		b->first_lsn = 0;
	b->role = m->dirty ? CORAL_ROLE_GLOBAL : CORAL_ROLE_LOCAL;
	b->ref = 1;
	unacked_add(c, b, from, m->dirty);
	coral_cache_unlock(c->cache, ch);
	TR(c, "block-install %u:%llu buf %u was %d/%d mode %u scn %llu", m->file, (unsigned long long)m->block, i,
	   was_valid, was_dirty, b->mode, (unsigned long long)b->scn);
	mark_valid(c, was_valid);
	if (m->dirty && !was_dirty)
		atomic_fetch_add(&c->cache->dirty, 1);
	else if (!m->dirty && was_dirty)
		atomic_fetch_sub(&c->cache->dirty, 1);
	coral_scn_observe(c->cache, m->block_scn);
	/* the waiting sessions first: the acknowledgement is off their path. A transfer is
	 * 2-way when it took two messages: the master shipped, or this node is the master and
	 * asked the holder */
	int mode = b->mode;
	wait_complete(c, w, b, from == w->master || w->master == c->self ? GCS_SERVED_2WAY : GCS_SERVED_3WAY);
	if (master)
		send_ack_raw(c, m->file, m->block, m->rid, m->gen, master, mode, from, m->dirty, false);
}

static void r_cr_block(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	struct gcs_wait *w = wait_find_rid(c, m->file, m->block, true, m->rid);
	if (w == NULL || w->rid != m->rid || m->data.len != c->cache->block_size) {
		c->st.stale++;
		return;
	}
	int64_t i = buf_alloc(c);
	if (i < 0) {
		wait_full(c, w);
		return;
	}
	struct coral_buf *b = coral_cache_buf(c->cache, (uint32_t)i);
	b->flags = 0;
	memcpy(coral_cache_data(c->cache, (uint32_t)i), m->data.data, m->data.len);
	lmsd_cache_link(c->cache, (uint32_t)i, m->file, m->block);
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	coral_cache_lock(c->cache, ch);
	b->flags = CORAL_BUFF_VALID | CORAL_BUFF_CR;
	b->mode = CORAL_BL_N;
	b->scn = m->block_scn;
	b->ack_from = from;
	coral_cache_unlock(c->cache, ch);
	mark_valid(c, false);
	atomic_fetch_add(&c->cache->st.cr_copies, 1);
	coral_scn_observe(c->cache, m->block_scn);
	wait_complete(c, w, b, GCS_SERVED_CR);
}

static void r_acked(struct gcs_core *c, const Coral__GcsMsg *m)
{
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	coral_cache_lock(c->cache, ch);
	confirm(coral_cache_find(c->cache, m->file, m->block, false), m->gen);
	coral_cache_unlock(c->cache, ch);
}

/* A CR read told "ask again" because the image is moving between nodes (or a session holds it
 * in X without a consistent image): that lasts a transfer, not a retry timer (a reader never
 * waits for a writer's transaction): asked again at the next tick. */
static void cr_soon(struct gcs_core *c, struct gcs_wait *w)
{
	if (c->now_ms + GCS_CR_BUSY_MS >= c->retry_ms && c->retry_ms > GCS_CR_BUSY_MS)
		w->sent_ms = c->now_ms + GCS_CR_BUSY_MS - c->retry_ms;
}

static void r_retry(struct gcs_core *c, const Coral__GcsMsg *m)
{
	struct gcs_wait *w = wait_find_rid(c, m->file, m->block, m->mode == GCS_MODE_CR, m->rid);
	if (w == NULL || w->rid != m->rid)
		return;
	if (m->code == CORAL_ENOTMASTER || m->code == CORAL_EFROZEN)
		c->st.not_master++;
	else
		c->st.busy++;
	/* at the deadline the session hears why it waited: the block's recovery */
	if (m->code == CORAL_ERECOVERY || m->code == CORAL_EJOINING)
		w->code = m->code;
	w->sent_ms = c->now_ms; /* asked again after retry_ms, at the master of that moment */
	if (w->cr && m->code == CORAL_EBUSY)
		cr_soon(c, w);
}

/* ---- the holder --------------------------------------------------------------------- */

struct img {
	uint32_t file;
	uint64_t block, scn;
};
static struct img img_of(const struct coral_buf *b) { return (struct img){b->file, b->block, b->scn}; }

static void send_block(struct gcs_core *c, uint32_t to, struct img b, const uint8_t *data,
		       uint64_t rid, uint64_t gen, int mode, bool dirty, int kind)
{
	Coral__GcsMsg m;
	msg_init(&m, kind, b.file, b.block);
	m.rid = rid;
	m.gen = gen;
	m.mode = (uint32_t)mode;
	m.block_scn = b.scn;
	m.dirty = dirty;
	m.from = c->self;
	m.data.data = (uint8_t *)data;
	m.data.len = c->cache->block_size;
	c->st.shipped++;
	send_msg(c, to, &m);
}

/* Ships the current image b to `to` for an X or S request, once no session pins it and the
 * redo that made it is durable; otherwise it waits (deferred). Latch not held. */
static void ship_now(struct gcs_core *c, struct coral_buf *b, uint32_t to, int want, uint64_t rid,
		     uint64_t gen)
{
	uint32_t i = coral_cache_index(c->cache, b);
	uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
	uint64_t forced = 0;
	bool dirty;
	struct img snap;
	bool pending = false;
	for (;;) {
		coral_cache_lock(c->cache, ch);
		if (b->flags & CORAL_BUFF_SYNCING)
			pending = true;
		if (atomic_load(&b->pins) != 0 || pending) {
			b->flags |= CORAL_BUFF_SHIPWAIT;
			b->ship_rid = rid;
			b->ship_gen = gen;
			b->ship_to = to;
			b->ship_mode = (uint8_t)want;
			b->ship_kind = SHIP_FWD;
			coral_cache_unlock(c->cache, ch);
			defer_add(c, i);
			if (pending)
				c->st.log_waits++;
			else
				c->st.deferred++;
			return;
		}
		dirty = (b->flags & CORAL_BUFF_DIRTY) != 0;
		uint64_t lsn = b->redo_lsn;
		if (!dirty || lsn <= forced)
			break;
		coral_cache_unlock(c->cache, ch);
		/* the redo that made this image must be durable before anyone else can see it: asked
		 * for, the ship waits with the block (no session pins it meanwhile) */
		int rc = c->ops.log_force(c->ops.arg, lsn);
		c->st.log_forces += rc > 0 ? (uint64_t)rc : 0;
		if (rc == CORAL_EPENDING) {
			pending = true;
			continue;
		}
		if (rc < 0) {
			logf_(c, CORAL_LOG_WARNING, "log force failed: block %u:%llu not shipped", b->file,
			      (unsigned long long)b->block);
			return;
		}
		forced = lsn;
	}
	/* latched, unpinned: copy and change hands in one step */
	memcpy(c->scratch, coral_cache_data(c->cache, i), c->cache->block_size);
	b->flags &= (uint16_t)~CORAL_BUFF_SHIPWAIT;
	snap = img_of(b);
	bool free_it = false;
	if (want == CORAL_BL_X) {
		if (dirty) {
			b->flags |= CORAL_BUFF_PI;
			b->flags &= (uint16_t)~CORAL_BUFF_DIRTY;
			b->mode = CORAL_BL_N;
			b->role = CORAL_ROLE_GLOBAL;
			b->ship_gen = gen;
			atomic_fetch_sub(&c->cache->dirty, 1);
			atomic_fetch_add(&c->cache->pis, 1);
			c->st.pi_kept++;
			/* the older past images here go below: this one holds their changes, and
			 * the checkpoint must stay behind the first of them, not only its own */
			for (struct coral_buf *p = next_pi(c, b->file, b->block, NULL); p;
			     p = next_pi(c, b->file, b->block, p))
				if (p != b && p->first_lsn != 0 && (b->first_lsn == 0 || p->first_lsn < b->first_lsn))
					b->first_lsn = p->first_lsn;
		} else {
			free_it = true;
			retire_locked(b);
		}
	} else if (b->mode > CORAL_BL_S) {
		b->mode = CORAL_BL_S;
	}
	coral_cache_unlock(c->cache, ch);
	TR(c, "ship %u:%llu to %u want %d dirty %d scn %llu pins %u", snap.file, (unsigned long long)snap.block, to,
	   want, dirty, (unsigned long long)snap.scn, atomic_load(&b->pins));
	if (free_it) {
		/* a clean current image is the disk's: older past images here are covered by it,
		 * and must go, or a repeated FWD would find one and ship it as the newest */
		buf_free(c, i);
		drop_pis(c, snap.file, snap.block, snap.scn);
		flush_written(c, snap.file, snap.block, snap.scn);
	} else if (want == CORAL_BL_X && dirty && snap.scn > 0) {
		/* the new past image holds every change the older ones here hold: only the newest
		 * is ever used (reshipped, taken back, or read by recovery), so the older go now
		 * instead of filling the cache and the block's hash chain until the next write */
		drop_pis(c, snap.file, snap.block, snap.scn - 1);
	}
	send_block(c, to, snap, c->scratch, rid, gen, want, want == CORAL_BL_X && dirty, GCS_BLOCK);
}

static void send_to_master(struct gcs_core *c, Coral__GcsMsg *m)
{
	uint64_t v;
	uint32_t master = c->ops.master(c->ops.arg, m->file, m->block, &v);
	if (master)
		send_msg(c, master, m);
}

/* The buffer goes (already retired from mode 'was'); a dirty one is written first. If that
 * write fails the image stays, in its mode, and the master hears nothing: its resend of the
 * INV tries again, so no change leaves this node before it is on disk. */
static void inv_now(struct gcs_core *c, struct coral_buf *b, uint64_t gen, int was)
{
	uint32_t file = b->file;
	uint64_t block = b->block;
	/* h_inv and run_deferred let only a clean copy come here (a dirty one waits for the
	 * checkpoint); written here all the same if it is not, rather than lost */
	int rc = (b->flags & CORAL_BUFF_DIRTY) ? write_back(c, b) : 0;
	if (rc != 0) {
		uint32_t ch = coral_cache_chain(c->cache, file, block);
		coral_cache_lock(c->cache, ch);
		bool same = (b->flags & CORAL_BUFF_VALID) && b->file == file && b->block == block;
		if (same)
			b->mode = (uint8_t)was;
		if (same && rc == CORAL_EPENDING) {
			/* its redo is not durable yet: the INV waits for it with the block */
			b->flags |= CORAL_BUFF_SHIPWAIT;
			b->ship_gen = gen;
			b->ship_kind = SHIP_INV;
		}
		coral_cache_unlock(c->cache, ch);
		if (same && rc == CORAL_EPENDING) {
			defer_add(c, coral_cache_index(c->cache, b));
			c->st.log_waits++;
		} else {
			c->st.inv_held++;
		}
		return;
	}
	buf_free(c, coral_cache_index(c->cache, b));
	c->st.invalidations++;
	Coral__GcsMsg m;
	msg_init(&m, GCS_INV_ACK, file, block);
	m.gen = gen;
	send_to_master(c, &m);
}

static void h_fwd(struct gcs_core *c, const Coral__GcsMsg *m)
{
	if (m->requester < 1 || m->requester > CORAL_MAX_NODES || m->requester == c->self ||
	    (m->mode != CORAL_BL_S && m->mode != CORAL_BL_X)) {
		c->st.refused_msgs++;
		return;
	}
	if (c->lost_mask & bit(m->requester)) {
		/* sent before its master knew of the loss: the image stays here (settled by QUERY) */
		c->st.stale++;
		return;
	}
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	coral_cache_lock(c->cache, ch);
	struct coral_buf *b = coral_cache_find(c->cache, m->file, m->block, false);
	if (b != NULL && b->gen >= m->gen) {
		coral_cache_unlock(c->cache, ch);
		c->st.stale++;
		return;
	}
	confirm(b, m->gen);
	if (b != NULL && b->mode >= CORAL_BL_S) {
		coral_cache_unlock(c->cache, ch);
		ship_now(c, b, m->requester, (int)m->mode, m->rid, m->gen);
		return;
	}
	/* no current image: a past image is the newest there is (the master still counts this
	 * node as holding it: its ship was not acknowledged, or was refused), else the disk */
	struct coral_buf *p = newest_pi(c, m->file, m->block);
	if (p != NULL) {
		memcpy(c->scratch, coral_cache_data(c->cache, coral_cache_index(c->cache, p)),
		       c->cache->block_size);
		struct img snap = img_of(p);
		coral_cache_unlock(c->cache, ch);
		/* unless the disk holds an image at least as new: then this node's current image
		 * was the disk's when it let it go, and the disk is what the requester needs */
		int rc = c->ops.read(c->ops.arg, m->file, m->block, c->scratch2);
		if (rc != 0 || ((const struct coral_block_hdr *)c->scratch2)->scn < snap.scn) {
			send_block(c, m->requester, snap, c->scratch, m->rid, m->gen, (int)m->mode, true, GCS_BLOCK);
			return;
		}
		ch = coral_cache_chain(c->cache, m->file, m->block);
		coral_cache_lock(c->cache, ch);
	}
	coral_cache_unlock(c->cache, ch);
	Coral__GcsMsg a;
	msg_init(&a, GCS_NOT_HERE, m->file, m->block);
	a.gen = m->gen;
	a.rid = m->rid;
	send_to_master(c, &a);
}

/* A CR request forwarded here as to the current holder: answered with a copy, or a retry
 * (being changed), or a grant (the requester reads the disk, which has what this node last
 * held). */
static void cr_answer(struct gcs_core *c, const Coral__GcsMsg *m, int kind, int code)
{
	Coral__GcsMsg a;
	msg_init(&a, kind, m->file, m->block);
	a.rid = m->rid;
	a.mode = GCS_MODE_CR;
	a.code = code;
	send_msg(c, m->requester, &a);
}

static void h_cr_fwd(struct gcs_core *c, const Coral__GcsMsg *m)
{
	if (m->requester < 1 || m->requester > CORAL_MAX_NODES) {
		c->st.refused_msgs++;
		return;
	}
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	coral_cache_lock(c->cache, ch);
	struct coral_buf *b = coral_cache_find(c->cache, m->file, m->block, false);
	bool pi_only = false;
	if ((b == NULL || b->mode == CORAL_BL_N) && m->code == CORAL_EBUSY) {
		/* forwarded while an operation moves the block: this node let it go meanwhile */
		coral_cache_unlock(c->cache, ch);
		cr_answer(c, m, GCS_RETRY, CORAL_EBUSY);
		return;
	}
	if (b == NULL || b->mode == CORAL_BL_N) {
		b = newest_pi(c, m->file, m->block);
		pi_only = b != NULL;
	}
	if (b != NULL && (atomic_load(&b->pins) & CORAL_BUF_XPIN)) {
		/* being changed by an open transaction: its consistent image (the last committed)
		 * at once; without one (none was free, or an X pin outside a transaction, held for
		 * a moment) a copy now could be torn: the requester asks again */
		uint64_t scn = 0;
		const uint8_t *img = coral_cache_clone_of(c->cache, b, &scn);
		if (img == NULL) {
			coral_cache_unlock(c->cache, ch);
			cr_answer(c, m, GCS_RETRY, CORAL_EBUSY);
			return;
		}
		memcpy(c->scratch, img, c->cache->block_size);
		struct img snap = {m->file, m->block, scn};
		coral_cache_unlock(c->cache, ch);
		send_block(c, m->requester, snap, c->scratch, m->rid, 0, GCS_MODE_CR, false, GCS_CR_BLOCK);
		return;
	}
	if (b == NULL) {
		coral_cache_unlock(c->cache, ch);
		cr_answer(c, m, GCS_GRANT, 0);
		return;
	}
	memcpy(c->scratch, coral_cache_data(c->cache, coral_cache_index(c->cache, b)), c->cache->block_size);
	struct img snap = img_of(b);
	coral_cache_unlock(c->cache, ch);
	if (pi_only) {
		/* only a past image is left here: the current one went since the master looked,
		 * or it was a copy this node let go (written first if dirty) whose release the
		 * master took for a stale one. The disk may hold a newer image than the past one:
		 * then the requester reads the disk (as a requester that finds only its own past
		 * image does, h_block) */
		int rc = c->ops.read(c->ops.arg, m->file, m->block, c->scratch2);
		if (rc == 0 && ((const struct coral_block_hdr *)c->scratch2)->scn >= snap.scn) {
			cr_answer(c, m, GCS_GRANT, 0);
			return;
		}
	}
	send_block(c, m->requester, snap, c->scratch, m->rid, 0, GCS_MODE_CR, false, GCS_CR_BLOCK);
}

static void h_inv(struct gcs_core *c, const Coral__GcsMsg *m)
{
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	coral_cache_lock(c->cache, ch);
	struct coral_buf *b = coral_cache_find(c->cache, m->file, m->block, false);
	if (b != NULL && b->gen >= m->gen) {
		coral_cache_unlock(c->cache, ch);
		c->st.stale++;
		return;
	}
	confirm(b, m->gen);
	bool dirty = b != NULL && (b->flags & CORAL_BUFF_DIRTY);
	if (b != NULL && (atomic_load(&b->pins) != 0 || dirty)) {
		/* a pin goes first; a dirty copy is written by the next checkpoint, off the loop */
		b->flags |= CORAL_BUFF_SHIPWAIT;
		b->ship_gen = m->gen;
		b->ship_kind = SHIP_INV;
		coral_cache_unlock(c->cache, ch);
		defer_add(c, coral_cache_index(c->cache, b));
		c->st.deferred++;
		if (dirty)
			c->ckpt_wanted = true;
		return;
	}
	int was = b != NULL ? b->mode : CORAL_BL_N;
	if (b != NULL)
		retire_locked(b);
	coral_cache_unlock(c->cache, ch);
	if (b != NULL) {
		inv_now(c, b, m->gen, was);
		return;
	}
	Coral__GcsMsg a;
	msg_init(&a, GCS_INV_ACK, m->file, m->block);
	a.gen = m->gen;
	send_to_master(c, &a);
}

static void h_pi_drop(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	int left = drop_pis(c, m->file, m->block, m->block_scn);
	flush_written(c, m->file, m->block, m->block_scn);
	Coral__GcsMsg a;
	msg_init(&a, GCS_PI_ACK, m->file, m->block);
	a.block_scn = m->block_scn;
	a.dirty = left > 0;
	send_msg(c, from, &a);
}

/* Whether an image still waits for its redo to become durable (asked for again: the log
 * waiter calls gcs_core_log_ready when it is), or for the sync of its write-back
 * (gcs_core_synced). Latch not held. */
static bool io_pending(struct gcs_core *c, struct coral_buf *b)
{
	uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
	coral_cache_lock(c->cache, ch);
	bool syncing = (b->flags & CORAL_BUFF_SYNCING) != 0;
	uint64_t lsn = (b->flags & CORAL_BUFF_DIRTY) ? b->redo_lsn : 0;
	coral_cache_unlock(c->cache, ch);
	return syncing || (lsn != 0 && c->ops.log_force(c->ops.arg, lsn) == CORAL_EPENDING);
}

/* Transfers and invalidations that waited for a session's pin or for the log. */
static void run_deferred(struct gcs_core *c)
{
	run_write_waits(c);  /* first: a marked block is written before it is shipped */
	for (uint32_t k = 0; k < c->ndeferred;) {
		uint32_t i = c->deferred[k];
		struct coral_buf *b = coral_cache_buf(c->cache, i);
		if (io_pending(c, b)) {
			k++;
			continue;
		}
		uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
		coral_cache_lock(c->cache, ch);
		if ((b->flags & CORAL_BUFF_SHIPWAIT) && b->gen >= b->ship_gen) {
			/* its operation is over: this node was granted a newer one since */
			b->flags &= (uint16_t)~CORAL_BUFF_SHIPWAIT;
			c->st.stale++;
		}
		bool waiting = (b->flags & CORAL_BUFF_VALID) && (b->flags & CORAL_BUFF_SHIPWAIT);
		bool ready = waiting && atomic_load(&b->pins) == 0;
		if (ready && b->ship_kind == SHIP_INV && (b->flags & CORAL_BUFF_DIRTY)) {
			ready = false;             /* written by the checkpoint first */
			c->ckpt_wanted = true;
		}
		bool inv = ready && b->ship_kind == SHIP_INV;
		int was = b->mode;
		if (inv) {
			b->flags &= (uint16_t)~CORAL_BUFF_SHIPWAIT;
			retire_locked(b);
		}
		coral_cache_unlock(c->cache, ch);
		if (waiting && !ready) {
			k++;
			continue;
		}
		c->deferred[k] = c->deferred[--c->ndeferred];
		if (!ready)
			continue;
		if (inv) {
			inv_now(c, b, b->ship_gen, was);
		} else {
			ship_now(c, b, b->ship_to, b->ship_mode, b->ship_rid, b->ship_gen);
		}
	}
}

/* ---- the master --------------------------------------------------------------------- */

static void op_track(struct gcs_core *c, uint32_t file, uint64_t block)
{
	for (uint32_t k = 0; k < c->nops; k++)
		if (c->ops_list[k].file == file && c->ops_list[k].block == block)
			return;
	if (c->nops < GCS_MAX_OPS)
		c->ops_list[c->nops++] = (struct gcs_blk){file, block};
}

static void m_send(struct gcs_core *c, uint32_t to, int kind, const struct coral_grd_entry *e)
{
	Coral__GcsMsg m;
	msg_init(&m, kind, e->id.id1, e->id.id2);
	m.rid = e->op_rid;
	m.gen = e->gen;
	m.requester = e->op_node;
	m.mode = e->op_mode;
	m.from = e->cur;   /* GRANT: 0 the disk is current, else the requester's own image is */
	send_msg(c, to, &m);
}

/* The image moves: from the node holding it (FWD), or the disk / the requester's copy. */
static void m_xfer(struct gcs_core *c, struct coral_grd_entry *e)
{
	e->op_phase = OP_XFER;
	e->op_sent_ms = c->now_ms;
	if (e->cur != 0 && e->cur != e->op_node)
		m_send(c, e->cur, GCS_FWD, e);
	else
		m_send(c, e->op_node, GCS_GRANT, e);
}

static void m_drive(struct gcs_core *c, struct coral_grd_entry *e)
{
	e->op_sent_ms = c->now_ms;
	if (e->op_phase == OP_INV && e->op_inv == 0) {
		m_xfer(c, e); /* those it waited for were lost */
	} else if (e->op_phase == OP_INV) {
		for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
			if (e->op_inv & bit(n))
				m_send(c, n, GCS_INV, e);
	} else if (e->op_phase == OP_XFER) {
		m_xfer(c, e);
	}
}

/* The next queued request becomes the operation, unless a move has frozen the block: then
 * the queue stays behind, and its requesters ask the new master. */
static void m_start_next(struct gcs_core *c, struct coral_grd_entry *e)
{
	if ((e->flags & CORAL_GRDE_FROZEN) || atomic_load(&c->dir->bstate[e->bucket]) != CORAL_GRDB_ACTIVE)
		return;
	while (e->op_phase == OP_IDLE && e->nconv > 0) {
		struct coral_grd_conv q = e->conv[0];
		memmove(&e->conv[0], &e->conv[1], (size_t)(e->nconv - 1) * sizeof(e->conv[0]));
		e->nconv--;
		e->gen++;
		e->op_node = q.node;
		e->op_mode = q.mode;
		e->op_rid = q.rid;
		e->op_tries = 0;
		e->op_inv = 0;
		if (q.mode == CORAL_BL_X) {
			for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
				if (n != q.node && n != e->cur && (e->holders & bit(n)))
					e->op_inv |= bit(n);
		}
		op_track(c, (uint32_t)e->id.id1, e->id.id2);
		if (e->op_inv) {
			e->op_phase = OP_INV;
			c->st.invalidations += (uint64_t)__builtin_popcountll(e->op_inv);
			m_drive(c, e);
		} else {
			m_xfer(c, e);
		}
	}
}

static void m_done(struct gcs_core *c, struct coral_grd_entry *e)
{
	e->op_phase = OP_IDLE;
	e->op_node = 0;
	e->grants++;
	m_start_next(c, e);
}

/* How m_entry() is asked: to start or queue something (a request), or to finish the
 * operation under way (its answers, and the tick's resends). */
enum { M_SERVE, M_SERVE_CREATE, M_FINISH };

/* Whether an entry (latched) may be used as asked. A move freezes a bucket or a resource
 * (grdd): nothing new starts there, but an operation under way is finished, and grdd ships
 * the entry only once none is (coral_grd_entry_busy), so that the new master takes over
 * a holder and modes that are true. Shipped in the middle of an operation, the entry told
 * the new master that the old holder still had the block after it had shipped it: the new
 * master granted it again from the disk, two nodes changed it in X, and coral-bank lost
 * transfers (in about one run in six of integration-lmsd under ASan). */
static int m_usable(const struct coral_grd_entry *e, int bstate, int how)
{
	bool frozen = bstate != CORAL_GRDB_ACTIVE || (e->flags & CORAL_GRDE_FROZEN);
	if (e->flags & CORAL_GRDE_RECOVERY)
		return CORAL_ERECOVERY;
	if (e->flags & (CORAL_GRDE_STAGED | CORAL_GRDE_MARK))
		return CORAL_EFROZEN;
	if (frozen && !(how == M_FINISH && bstate != CORAL_GRDB_REBUILDING && e->op_phase != OP_IDLE))
		return CORAL_EFROZEN;
	return 0;
}

/* The entry of a block this node masters and serves now, latched; NULL (unlatched) if not. */
static struct coral_grd_entry *m_entry(struct gcs_core *c, const Coral__GcsMsg *m, int how, uint32_t *bucket,
				       int *why)
{
	struct coral_resid id = resid(m->file, m->block);
	*bucket = coral_resid_bucket(&id);
	*why = 0;
	uint64_t v;
	if (c->ops.master(c->ops.arg, m->file, m->block, &v) != c->self) {
		*why = CORAL_ENOTMASTER;
		return NULL;
	}
	int bs = atomic_load(&c->dir->bstate[*bucket]);
	if (bs != CORAL_GRDB_ACTIVE && how != M_FINISH) {
		*why = CORAL_EFROZEN;
		return NULL;
	}
	/* a block of a lost node's bucket waits for its rebuild here: an entry that only some
	 * survivors' reports have made so far would grant it from the disk while another
	 * survivor holds its current image */
	uint32_t lo = c->ops.lost_owner ? c->ops.lost_owner(c->ops.arg, m->file, m->block) : 0;
	if (lo >= 1 && lo <= CORAL_MAX_NODES &&
	    atomic_load(&c->dir->loss[lo - 1].gcs) != atomic_load(&c->dir->loss[lo - 1].seq)) {
		*why = CORAL_ERECOVERY;
		return NULL;
	}
	coral_grd_dir_lock(c->dir, *bucket);
	/* again under the latch: grdd freezes a bucket before it takes the latch to mark its
	 * entries, so an entry created or an operation started from here on is seen by grdd */
	bs = atomic_load(&c->dir->bstate[*bucket]);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, &id);
	/* a block of a lost node's bucket that no survivor reported: the disk may lack that
	 * node's committed changes until smond has looked at its thread */
	bool pending = e == NULL && c->ops.lost_owner &&
		       coral_grd_loss_pending(c->dir, c->ops.lost_owner(c->ops.arg, m->file, m->block));
	if (e == NULL && how == M_SERVE_CREATE && bs == CORAL_GRDB_ACTIVE && !pending)
		e = coral_grd_dir_insert(c->dir, &id);
	if (e == NULL) {
		coral_grd_dir_unlock(c->dir, *bucket);
		*why = bs != CORAL_GRDB_ACTIVE ? CORAL_EFROZEN
		       : pending		    ? CORAL_ERECOVERY
		       : how == M_SERVE_CREATE	    ? CORAL_EFULL
						    : CORAL_ENOENT;
		return NULL;
	}
	*why = m_usable(e, bs, how);
	if (*why != 0) {
		coral_grd_dir_unlock(c->dir, *bucket);
		return NULL;
	}
	return e;
}

static void m_unlock(struct gcs_core *c, struct coral_grd_entry *e, uint32_t bucket)
{
	coral_grd_dir_touch(c->dir, e);
	coral_grd_dir_unlock(c->dir, bucket);
}

static void m_req(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, bool cr)
{
	if (!cr && m->mode != CORAL_BL_S && m->mode != CORAL_BL_X) {
		c->st.refused_msgs++;
		return;
	}
	uint32_t bucket;
	int why = c->ops.on_ring && !c->ops.on_ring(c->ops.arg, from) ? CORAL_EJOINING : 0;
	struct coral_grd_entry *e = why ? NULL : m_entry(c, m, M_SERVE_CREATE, &bucket, &why);
	if (e == NULL) {
		Coral__GcsMsg a;
		msg_init(&a, GCS_RETRY, m->file, m->block);
		a.rid = m->rid;
		a.mode = m->mode;
		a.code = why;
		if (why == CORAL_ENOTMASTER || why == CORAL_EFROZEN)
			c->st.not_master++;
		else
			c->st.busy++;
		send_msg(c, from, &a);
		return;
	}
	c->st.mastered++;
	if (cr && e->op_phase != OP_IDLE && e->cur == 0) {
		/* the image is on its way from the disk to the operation's requester, who may
		 * commit over it before the operation completes: asked again then */
		m_unlock(c, e, bucket);
		Coral__GcsMsg a;
		msg_init(&a, GCS_RETRY, m->file, m->block);
		a.rid = m->rid;
		a.mode = GCS_MODE_CR;
		a.code = CORAL_EBUSY;
		c->st.busy++;
		send_msg(c, from, &a);
		return;
	}
	if (cr) {
		/* a read-only copy: from the current holder, else the disk; nothing changes hands */
		Coral__GcsMsg a;
		msg_init(&a, e->cur && e->cur != from ? GCS_CR_FWD : GCS_GRANT, m->file, m->block);
		a.rid = m->rid;
		a.requester = from;
		a.mode = GCS_MODE_CR;
		a.from = e->cur;
		/* an operation under way (the holder's image waits for its transaction to let it
		 * go, or is on its way): the holder answers while it still has the current image
		 * (or its consistent image), and says "ask again" once it has let it go, never
		 * with a past image or the disk then (the new holder may have committed over them) */
		a.code = e->op_phase != OP_IDLE ? CORAL_EBUSY : 0;
		uint32_t to = e->cur && e->cur != from ? e->cur : from;
		if (a.code != 0 && e->cur == from) {
			/* the requester's node holds the current image itself, its ship to the
			 * operation's requester waiting for its sessions' pins: it answers itself as
			 * a holder does (never with a past image or the disk while the image moves) */
			msg_init(&a, GCS_CR_FWD, m->file, m->block);
			a.rid = m->rid;
			a.requester = from;
			a.mode = GCS_MODE_CR;
			a.from = e->cur;
			a.code = CORAL_EBUSY;
		}
		m_unlock(c, e, bucket);
		send_msg(c, to, &a);
		return;
	}
	coral_grd_entry_access(e, from);
	if (e->op_phase != OP_IDLE && e->op_node == from) {
		if (m->rid == e->op_rid) {
			m_drive(c, e); /* the requester asked again: something was lost */
		} else if (m->rid > e->op_rid && m->mode <= e->op_mode) {
			e->op_rid = m->rid; /* a newer request of the same node: this op serves it */
			m_drive(c, e);
		} else if (m->rid > e->op_rid) {
			goto queue;
		}
		m_unlock(c, e, bucket);
		return;
	}
queue:
	for (uint8_t k = 0; k < e->nconv; k++) {
		if (e->conv[k].node == from) {
			if (m->rid > e->conv[k].rid) {
				e->conv[k].rid = m->rid;
				e->conv[k].mode = (uint8_t)m->mode;
			}
			/* nothing under way (a recovery or a loss ended the operation): go on */
			m_start_next(c, e);
			m_unlock(c, e, bucket);
			return;
		}
	}
	if (e->nconv >= CORAL_GRD_CONVQ) {
		m_unlock(c, e, bucket);
		Coral__GcsMsg a;
		msg_init(&a, GCS_RETRY, m->file, m->block);
		a.rid = m->rid;
		a.mode = m->mode;
		a.code = CORAL_EBUSY;
		c->st.busy++;
		send_msg(c, from, &a);
		return;
	}
	e->conv[e->nconv++] = (struct coral_grd_conv){.node = (uint8_t)from, .mode = (uint8_t)m->mode,
						       .rid = m->rid};
	m_start_next(c, e);
	m_unlock(c, e, bucket);
}

static void m_ack(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, struct coral_grd_entry *e)
{
	bool current = e->op_phase == OP_XFER && m->gen == e->gen && from == e->op_node &&
		       m->rid == e->op_rid;
	if (m->code == 1 && (current || m->gen < e->gen || e->op_phase == OP_IDLE)) {
		/* a repeated ACK: confirm it, whether it completes the operation now or did */
		Coral__GcsMsg a;
		msg_init(&a, GCS_ACKED, m->file, m->block);
		a.gen = m->gen;
		send_msg(c, from, &a);
	}
	if (!current) {
		c->st.stale++;
		return;
	}
	uint32_t src = e->cur;
	int got = (int)m->mode;
	if (got < CORAL_BL_S) {
		/* the requester could not take it: nothing moved (the source keeps what it has) */
	} else if (e->op_mode == CORAL_BL_X) {
		if (src && src != from) {
			coral_grd_entry_set_mode(e, src, CORAL_BL_N);
			if (m->dirty)
				e->pi |= bit(src);
		}
		coral_grd_entry_set_mode(e, from, got);
		e->cur = (uint8_t)from;
	} else {
		if (src && src != from && coral_grd_entry_mode(e, src) > CORAL_BL_S)
			coral_grd_entry_set_mode(e, src, CORAL_BL_S);
		if (coral_grd_entry_mode(e, from) < got)
			coral_grd_entry_set_mode(e, from, got);
	}
	m_done(c, e);
}

static void m_inv_ack(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, struct coral_grd_entry *e)
{
	if (e->op_phase != OP_INV || m->gen != e->gen || !(e->op_inv & bit(from))) {
		c->st.stale++;
		return;
	}
	e->op_inv &= ~bit(from);
	coral_grd_entry_set_mode(e, from, CORAL_BL_N);
	if (e->op_inv == 0)
		m_xfer(c, e);
}

static void m_not_here(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, struct coral_grd_entry *e)
{
	if (e->op_phase != OP_XFER || m->gen != e->gen || from != e->cur) {
		c->st.stale++;
		return;
	}
	/* it wrote its image back before dropping it: the disk is current */
	coral_grd_entry_set_mode(e, from, CORAL_BL_N);
	e->cur = 0;
	m_xfer(c, e);
}

static void m_release(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, struct coral_grd_entry *e)
{
	/* only a release of the latest grant is believed: an older one may have been overtaken
	 * by a newer grant to the same node */
	if (e->op_phase == OP_IDLE && m->gen == e->gen) {
		coral_grd_entry_set_mode(e, from, CORAL_BL_N);
		if (e->cur == from)
			e->cur = 0;
	} else {
		c->st.stale++;
	}
}

static void pidrop_track(struct gcs_core *c, uint32_t file, uint64_t block)
{
	for (uint32_t k = 0; k < c->npidrop; k++)
		if (c->pidrop[k].file == file && c->pidrop[k].block == block)
			return;
	if (c->npidrop < GCS_MAX_PIDROP)
		c->pidrop[c->npidrop++] = (struct gcs_blk){file, block};
}

static void m_send_pidrops(struct gcs_core *c, struct coral_grd_entry *e)
{
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (!(e->pi & bit(n)))
			continue;
		Coral__GcsMsg a;
		msg_init(&a, GCS_PI_DROP, (uint32_t)e->id.id1, e->id.id2);
		a.block_scn = e->disk_scn;
		send_msg(c, n, &a);
	}
}

static void m_written(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, struct coral_grd_entry *e)
{
	(void)from;
	if (m->block_scn > e->disk_scn)
		e->disk_scn = m->block_scn;
	if (e->pi) {
		m_send_pidrops(c, e);
		pidrop_track(c, m->file, m->block);
	}
}

static void m_pi_ack(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, struct coral_grd_entry *e)
{
	(void)c;
	if (!m->dirty)
		e->pi &= ~bit(from);
}

/* The answers to a master's operation: each handler runs with the block's entry latched,
 * only if this node masters and serves the block now. */
typedef void (*m_handler)(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, struct coral_grd_entry *e);

static void m_with_entry(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m, int how, m_handler fn)
{
	uint32_t bucket;
	int why;
	struct coral_grd_entry *e = m_entry(c, m, how, &bucket, &why);
	if (e == NULL)
		return;
	fn(c, from, m, e);
	m_unlock(c, e, bucket);
}

/* ---- dispatch ------------------------------------------------------------------------ */

static void k_req(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_req(c, from, m, false); }
static void k_cr_req(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_req(c, from, m, true); }
static void k_ack(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_with_entry(c, from, m, M_FINISH, m_ack); }
static void k_inv_ack(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_with_entry(c, from, m, M_FINISH, m_inv_ack); }
static void k_not_here(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_with_entry(c, from, m, M_FINISH, m_not_here); }
static void k_release(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_with_entry(c, from, m, M_SERVE, m_release); }
static void k_written(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_with_entry(c, from, m, M_SERVE, m_written); }
static void k_pi_ack(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { m_with_entry(c, from, m, M_SERVE, m_pi_ack); }
static void k_retry(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { (void)from; r_retry(c, m); }
static void k_acked(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { (void)from; r_acked(c, m); }
static void k_fwd(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { (void)from; h_fwd(c, m); }
static void k_cr_fwd(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { (void)from; h_cr_fwd(c, m); }
static void k_inv(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m) { (void)from; h_inv(c, m); }

/* ---- a node's loss (see gcs.h) ------------------------------------------------------- */

static void loss_ask(struct gcs_core *c, uint32_t lost)
{
	struct gcs_loss *L = &c->loss[lost - 1];
	L->asked_ms = c->now_ms;
	L->asks++;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (!(L->waiting & bit(n)))
			continue;
		Coral__GcsMsg q;
		msg_init(&q, GCS_REPORT_REQ, 0, 0);
		q.requester = lost;
		q.gen = L->inc;
		send_msg(c, n, &q);
	}
}

static void query_send(struct gcs_core *c, struct gcs_query *q)
{
	Coral__GcsMsg m;
	msg_init(&m, GCS_QUERY, q->file, q->block);
	m.requester = q->lost;
	m.gen = q->inc;
	q->sent_ms = c->now_ms;
	send_msg(c, q->to, &m);
}

static void mark_recovery(struct coral_grd_entry *e, uint32_t lost)
{
	e->flags |= CORAL_GRDE_RECOVERY;
	e->recovery_node = (uint8_t)lost;
}

/* One entry this node masters (latched), once every survivor has reported. */
static void loss_settle_entry(struct gcs_core *c, struct coral_grd_entry *e, uint32_t lost)
{
	uint32_t file = (uint32_t)e->id.id1;
	uint64_t block = e->id.id2, v;
	if (c->ops.master(c->ops.arg, file, block, &v) != c->self)
		return;
	uint8_t k2 = 0;
	for (uint8_t k = 0; k < e->nconv; k++)
		if (e->conv[k].node != lost)
			e->conv[k2++] = e->conv[k];
	e->nconv = k2;
	if (c->ops.lost_owner && c->ops.lost_owner(c->ops.arg, file, block) == lost) {
		/* rebuilt from the reports: the current image is the X holder's, else the S
		 * holder that wrote it (it said so); with clean S copies or past images only, the
		 * lost node may have been the writer: recovery makes the disk current from the
		 * disk and every thread's redo */
		uint32_t xh = 0;
		for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
			if (n != lost && (e->holders & bit(n)) && e->mode[n - 1] == CORAL_BL_X)
				xh = n;
		bool writer = e->cur != 0 && e->cur != lost && (e->holders & bit(e->cur));
		if (xh)
			e->cur = (uint8_t)xh;
		else if (!writer && e->cur != lost)
			e->cur = 0;
		if (e->cur == 0 && ((e->holders | e->pi) & ~bit(lost)))
			mark_recovery(e, lost);
	}
	/* the lost node had the current image (in S too: the last writer keeps a shared image
	 * dirty), or may have: smond recovers it (grdd marks the same) */
	if (e->cur == lost || e->mode[lost - 1] == CORAL_BL_X)
		mark_recovery(e, lost);
	if (e->op_phase == OP_XFER && e->cur == lost && e->op_node != 0 && e->op_node != lost &&
	    c->nquery < GCS_MAX_QUERY) {
		/* the lost node was shipping it to a survivor: did the image arrive (its ACK may
		 * come later, or never)? */
		struct gcs_query *q = &c->query[c->nquery++];
		*q = (struct gcs_query){file, lost, e->op_node, block, c->loss[lost - 1].inc, 0};
		query_send(c, q);
	}
	if (e->op_phase != OP_IDLE && e->op_node == lost) {
		if (e->op_phase == OP_XFER && e->cur != 0 && e->cur != lost) {
			/* did its holder ship it before it heard of the loss? */
			mark_recovery(e, lost);
			if (c->nquery < GCS_MAX_QUERY) {
				struct gcs_query *q = &c->query[c->nquery++];
				*q = (struct gcs_query){file, lost, e->cur, block, c->loss[lost - 1].inc, 0};
				query_send(c, q);
			}
		} else {
			if (e->op_phase == OP_XFER) {
				/* granted from the disk or its own copy: it may have changed it */
				e->cur = (uint8_t)lost;
				mark_recovery(e, lost);
			}
			e->op_phase = OP_IDLE;
			e->op_node = 0;
		}
	}
	coral_grd_entry_set_mode(e, lost, 0);
	if (e->op_phase == OP_INV && (e->op_inv & bit(lost)))
		e->op_inv &= ~bit(lost);
	if (!(e->flags & CORAL_GRDE_RECOVERY)) {
		if (e->op_phase == OP_INV && e->op_inv == 0)
			m_xfer(c, e);
		else
			m_start_next(c, e);
	}
	coral_grd_dir_touch(c->dir, e);
}

static bool loss_queries(const struct gcs_core *c, uint32_t lost)
{
	for (uint32_t k = 0; k < c->nquery; k++)
		if (c->query[k].lost == lost)
			return true;
	return false;
}

/* Whether an entry has anything to do with the lost node (read unlatched: a hint only; an
 * entry a message changes meanwhile is one the lost node is no longer part of, or one the
 * message's handler settles). */
static bool loss_involves(struct gcs_core *c, const struct coral_grd_entry *e, uint32_t lost)
{
	if (((e->holders | e->pi) & bit(lost)) || e->cur == lost || e->op_node == lost || e->mode[lost - 1] ||
	    (e->op_phase == OP_INV && (e->op_inv & bit(lost))))
		return true;
	for (uint8_t k = 0; k < e->nconv && k < CORAL_GRD_CONVQ; k++)
		if (e->conv[k].node == lost)
			return true;
	return c->ops.lost_owner && c->ops.lost_owner(c->ops.arg, (uint32_t)e->id.id1, e->id.id2) == lost;
}

static void loss_settle(struct gcs_core *c, uint32_t lost)
{
	for (uint32_t i = 0; i < c->dir->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->dir, i);
		if (!(e->flags & CORAL_GRDE_USED) || !coral_resid_is_block(&e->id))
			continue;
		/* unlatched first, a hint: grdd and smond change an entry under its latch, and
		 * only this loop changes who holds it */
		if (!loss_involves(c, e, lost))
			continue;
		uint32_t b = e->bucket;
		coral_grd_dir_lock(c->dir, b);
		if ((e->flags & CORAL_GRDE_USED) && coral_resid_is_block(&e->id) && e->bucket == b &&
		    loss_involves(c, e, lost))
			loss_settle_entry(c, e, lost);
		coral_grd_dir_unlock(c->dir, b);
	}
	struct gcs_loss *L = &c->loss[lost - 1];
	L->settled = !loss_queries(c, lost);
	logf_(c, CORAL_LOG_INFO, "node %u's loss: blocks of its buckets rebuilt from every survivor's report in %llu ms "
	      "(%llu rounds of asking)%s", lost, (unsigned long long)(c->now_ms - L->since_ms), (unsigned long long)L->asks,
	      L->settled ? "" : "; transfers to it under way asked about");
}

/* Holder: the reports asked for, a few batches per call (the tick calls again), so that
 * no burst overflows the interconnect's queue to the master or the local queue: each
 * REPORT carries up to GCS_REPORT_BATCH images (gcs.h), and REPORT_END their count. */
static void report_pump(struct gcs_core *c)
{
	static uint8_t recs[GCS_REPORT_BATCH * GCS_REPORT_REC];
	for (uint32_t k = 0; k < GCS_MAX_REPORT_JOBS; k++) {
		struct gcs_report_job *j = &c->jobs[k];
		for (uint32_t batches = 0; j->active && batches < GCS_REPORT_BATCHES; batches++) {
			uint32_t n = 0;
			while (j->next < c->cache->nbuf && n < GCS_REPORT_BATCH) {
				struct coral_buf *b = coral_cache_buf(c->cache, j->next++);
				uint32_t file = b->file;
				uint64_t block = b->block, v;
				if (!(b->flags & CORAL_BUFF_VALID) || (b->flags & CORAL_BUFF_CR))
					continue;
				if (c->ops.lost_owner(c->ops.arg, file, block) != j->lost ||
				    c->ops.master(c->ops.arg, file, block, &v) != j->to)
					continue;
				uint32_t ch = coral_cache_chain(c->cache, file, block);
				coral_cache_lock(c->cache, ch);
				bool pi = (b->flags & CORAL_BUFF_PI) != 0;
				bool ok = (b->flags & CORAL_BUFF_VALID) && b->file == file && b->block == block &&
					  (pi || b->mode >= CORAL_BL_S);
				uint8_t *r = recs + (size_t)n * GCS_REPORT_REC;
				memset(r, 0, GCS_REPORT_REC);
				memcpy(r, &file, 4);
				r[4] = pi ? 0 : b->mode;
				r[5] = pi;
				r[6] = !pi && (b->flags & CORAL_BUFF_DIRTY); /* the writer of a shared image */
				memcpy(r + 8, &block, 8);
				memcpy(r + 16, &b->gen, 8);  /* the lost master's operations go on from the highest */
				memcpy(r + 24, &b->scn, 8);
				coral_cache_unlock(c->cache, ch);
				n += ok;
			}
			if (n > 0) {
				Coral__GcsMsg r;
				msg_init(&r, GCS_REPORT, 0, 0);
				r.requester = j->lost;
				r.gen = j->inc;
				r.data.data = recs;
				r.data.len = (size_t)n * GCS_REPORT_REC;
				send_msg(c, j->to, &r);
				j->count += n;
			}
			if (j->next >= c->cache->nbuf) {
				Coral__GcsMsg e;
				msg_init(&e, GCS_REPORT_END, 0, 0);
				e.requester = j->lost;
				e.gen = j->inc;
				e.rid = j->count;
				send_msg(c, j->to, &e);
				j->active = false;
			}
		}
	}
}

/* ---- what the lost node's thread needs before it closes ---------------------------------
 * Recovery moves the lost thread's checkpoint to its end: from then on no recovery reads its
 * changes again. A change of the lost node that is in no image the recovery rebuilt is in a
 * survivor's image, unwritten: a dirty current image that came here dirty from another node
 * (role global), or a past image (its newer image elsewhere has it too, and may be on its way
 * here or to a third node while the lists are made). Every such block is listed when this
 * node learns of the loss, and crossed off once the disk has it at that SCN or newer (this
 * node wrote it, or a write elsewhere dropped the past image here), or once this node holds
 * no dirty or past image of it any more (written, or recovered, by whoever had it). Only
 * then does this node's smond say its part is done. Without it, a survivor lost after the
 * recovery took the lost node's changes it held with it. */

static int flush_cmp(const void *a, const void *b)
{
	const struct gcs_flush *x = a, *y = b;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	return x->block < y->block ? -1 : x->block > y->block;
}

static void flush_list(struct gcs_core *c, struct gcs_loss *L)
{
	L->flush = malloc((size_t)c->cache->nbuf * sizeof(*L->flush));
	if (L->flush == NULL) {
		L->flush_failed = true;
		logf_(c, CORAL_LOG_ERROR, "no memory to list the images that may hold the lost node's changes: its "
			  "recovery cannot end here");
		return;
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->cache->nbuf; i++) {
		struct coral_buf *b = coral_cache_buf(c->cache, i);
		/* unlatched first: most buffers are clean. One clean now holds no other node's
		 * unwritten change: only this loop installs images from other nodes, and a session
		 * that dirties it later adds only this node's own */
		uint16_t f = b->flags;
		if (!(f & CORAL_BUFF_VALID) || !(f & (CORAL_BUFF_PI | CORAL_BUFF_DIRTY)))
			continue;
		uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
		coral_cache_lock(c->cache, ch);
		f = b->flags;
		bool want = (f & CORAL_BUFF_VALID) && !(f & CORAL_BUFF_CR) &&
			    ((f & CORAL_BUFF_PI) || ((f & CORAL_BUFF_DIRTY) && b->role == CORAL_ROLE_GLOBAL));
		if (want)
			L->flush[n++] = (struct gcs_flush){b->file, b->block, b->scn ? b->scn : 1};
		coral_cache_unlock(c->cache, ch);
	}
	qsort(L->flush, n, sizeof(*L->flush), flush_cmp);
	/* one per block: the newest image's SCN (it holds every older one's changes) */
	uint32_t m = 0;
	for (uint32_t k = 0; k < n; k++) {
		if (m > 0 && flush_cmp(&L->flush[m - 1], &L->flush[k]) == 0) {
			if (L->flush[k].scn > L->flush[m - 1].scn)
				L->flush[m - 1].scn = L->flush[k].scn;
		} else {
			L->flush[m++] = L->flush[k];
		}
	}
	L->nflush = L->left = m;
	L->flush_ms = 0;
	if (m > 0)
		c->ckpt_wanted = true;
}

/* The disk has (file, block) at scn or newer. */
static void flush_written(struct gcs_core *c, uint32_t file, uint64_t block, uint64_t scn)
{
	for (uint32_t n = 0; n < CORAL_MAX_NODES; n++) {
		struct gcs_loss *L = &c->loss[n];
		if (L->left == 0 || L->flush == NULL)
			continue;
		struct gcs_flush key = {file, block, 0};
		struct gcs_flush *f = bsearch(&key, L->flush, L->nflush, sizeof(key), flush_cmp);
		if (f != NULL && f->scn != 0 && scn >= f->scn) {
			f->scn = 0;
			L->left--;
		}
	}
}

/* Now and then: the listed blocks this node no longer holds dirty or as a past image are
 * crossed off, and a checkpoint writes the dirty ones. */
static void flush_tick(struct gcs_core *c, struct gcs_loss *L)
{
	if (L->left == 0 || L->flush == NULL || c->now_ms - L->flush_ms < 100)
		return;
	L->flush_ms = c->now_ms;
	uint32_t reads = 0;
	for (uint32_t k = 0; k < L->nflush; k++) {
		struct gcs_flush *f = &L->flush[k];
		if (f->scn == 0)
			continue;
		uint32_t ch = coral_cache_chain(c->cache, f->file, f->block);
		coral_cache_lock(c->cache, ch);
		struct coral_buf *b = coral_cache_find(c->cache, f->file, f->block, false);
		bool dirty = b != NULL && (b->flags & CORAL_BUFF_DIRTY);
		bool pi = next_pi(c, f->file, f->block, NULL) != NULL;
		coral_cache_unlock(c->cache, ch);
		/* a past image alone: its newer image may have been recovered and written by smond,
		 * which tells no past image's holder; the disk says (a few blocks a round: read on
		 * the loop, which a cold page cache would stall) */
		if (!dirty && pi && reads < 16) {
			reads++;
			const struct coral_block_hdr *h = (const struct coral_block_hdr *)c->scratch2;
			if (c->ops.read(c->ops.arg, f->file, f->block, c->scratch2) == 0 && h->scn >= f->scn) {
				drop_pis(c, f->file, f->block, h->scn);
				pi = false;
			}
		}
		if (!dirty && !pi) {
			f->scn = 0;
			L->left--;
		}
	}
	if (L->left > 0)
		c->ckpt_wanted = true;
}

bool gcs_core_loss_flushed(const struct gcs_core *c, uint32_t lost, uint64_t *seq, uint32_t *left)
{
	if (lost < 1 || lost > CORAL_MAX_NODES)
		return false;
	const struct gcs_loss *L = &c->loss[lost - 1];
	*seq = L->seq;
	*left = L->left;
	return L->inc != 0 && !L->flush_failed && L->left == 0;
}

static void h_report_req(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m);

void gcs_core_node_lost(struct gcs_core *c, uint32_t lost, uint64_t inc, uint64_t seq, uint64_t survivors)
{
	if (lost < 1 || lost > CORAL_MAX_NODES || lost == c->self)
		return;
	c->lost_mask |= bit(lost);
	struct gcs_loss *L = &c->loss[lost - 1];
	if (L->inc == inc && L->seq == seq)
		return;
	free(L->flush);
	*L = (struct gcs_loss){.inc = inc, .seq = seq, .waiting = (survivors | bit(c->self)) & ~bit(lost),
			       .since_ms = c->now_ms};
	/* a request the lost node had as master is asked again under a new number: an image
	 * shipped on the lost master's word (its number) is then refused wherever it arrives,
	 * even after the request went to the new master, which rebuilt the block's state from
	 * reports that did not count it */
	for (uint32_t k = 0; k < c->nwaits; k++) {
		struct gcs_wait *w = &c->waits[c->live[k]];
		if (w->asked & bit(lost)) {
			w->rid = ++c->next_rid;
			w->asked = 0;
			w->sent_ms = 0;
		}
	}
	flush_list(c, L);
	loss_ask(c, lost);
	/* the masters that asked before this node knew */
	uint64_t asked = c->early_ask[lost - 1];
	c->early_ask[lost - 1] = 0;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (!(asked & bit(n)))
			continue;
		Coral__GcsMsg q;
		msg_init(&q, GCS_REPORT_REQ, 0, 0);
		q.requester = lost;
		q.gen = inc;
		h_report_req(c, n, &q);
	}
}

void gcs_core_self_lost(struct gcs_core *c)
{
	uint64_t dropped = 0, kept = 0;
	for (uint32_t i = 0; i < c->cache->nbuf; i++) {
		struct coral_buf *b = coral_cache_buf(c->cache, i);
		if (!(b->flags & CORAL_BUFF_VALID))
			continue;
		uint32_t file = b->file;
		uint64_t block = b->block;
		uint32_t ch = coral_cache_chain(c->cache, file, block);
		coral_cache_lock(c->cache, ch);
		bool same = (b->flags & CORAL_BUFF_VALID) && b->file == file && b->block == block;
		bool free_it = false;
		if (same) {
			if (b->flags & CORAL_BUFF_DIRTY) {
				b->flags &= (uint16_t)~CORAL_BUFF_DIRTY;
				atomic_fetch_sub(&c->cache->dirty, 1);
			}
			b->flags &= (uint16_t)~(CORAL_BUFF_SHIPWAIT | CORAL_BUFF_UNACKED | CORAL_BUFF_WRITEWAIT);
			b->first_lsn = 0;
			retire_locked(b);
			free_it = atomic_load(&b->pins) == 0;
			kept += !free_it;
		}
		coral_cache_unlock(c->cache, ch);
		if (free_it) {
			buf_free(c, i);
			dropped++;
		}
	}
	c->ndeferred = 0;
	c->nwwait = 0;
	c->nunacked = 0;
	c->nops = 0;
	c->npidrop = 0;
	c->nquery = 0;
	memset(c->jobs, 0, sizeof(c->jobs));
	logf_(c, CORAL_LOG_NOTICE, "cache dropped after this node's eviction: %llu images, %llu still pinned (in mode N)",
	      (unsigned long long)dropped, (unsigned long long)kept);
}

void gcs_core_node_back(struct gcs_core *c, uint32_t node)
{
	if (node >= 1 && node <= CORAL_MAX_NODES)
		c->lost_mask &= ~bit(node);
}

bool gcs_core_loss_settled(const struct gcs_core *c, uint32_t lost, uint64_t *seq)
{
	if (lost < 1 || lost > CORAL_MAX_NODES)
		return false;
	const struct gcs_loss *L = &c->loss[lost - 1];
	*seq = L->seq;
	return L->inc != 0 && L->settled;
}

/* Holder: what this node holds of the blocks of the lost node's buckets that the asker
 * masters now, and their count. Only once this node has seen the loss itself (its map
 * names the lost owner): before, it would say it holds nothing. */
static void h_report_req(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	uint32_t lost = m->requester;
	if (lost < 1 || lost > CORAL_MAX_NODES || c->ops.lost_owner == NULL) {
		c->st.refused_msgs++;
		return;
	}
	if (c->loss[lost - 1].inc != m->gen) {
		/* answered once this node sees the loss (else at the master's next ask) */
		c->early_ask[lost - 1] |= bit(from);
		return;
	}
	/* asked again: the job starts over (the master counts again from nothing) */
	struct gcs_report_job *j = NULL;
	for (uint32_t k = 0; k < GCS_MAX_REPORT_JOBS && j == NULL; k++)
		if (c->jobs[k].active && c->jobs[k].to == from && c->jobs[k].lost == lost)
			j = &c->jobs[k];
	for (uint32_t k = 0; k < GCS_MAX_REPORT_JOBS && j == NULL; k++)
		if (!c->jobs[k].active)
			j = &c->jobs[k];
	if (j == NULL)
		return; /* asked again later */
	*j = (struct gcs_report_job){.active = true, .to = from, .lost = lost, .inc = m->gen};
	report_pump(c);
}

/* Holder: a transfer to a lost node was under way from here: is the block still here? */
static void h_query(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	uint32_t ch = coral_cache_chain(c->cache, m->file, m->block);
	coral_cache_lock(c->cache, ch);
	struct coral_buf *b = coral_cache_find(c->cache, m->file, m->block, false);
	Coral__GcsMsg r;
	msg_init(&r, GCS_REPORT, m->file, m->block);
	r.requester = m->requester;
	r.gen = m->gen;
	r.mode = b ? b->mode : 0;
	r.code = 1;
	coral_cache_unlock(c->cache, ch);
	send_msg(c, from, &r);
}

static void m_query_answer(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	uint32_t lost = m->requester;
	uint32_t k = 0;
	while (k < c->nquery && !(c->query[k].lost == lost && c->query[k].to == from && c->query[k].file == m->file &&
				  c->query[k].block == m->block && c->query[k].inc == m->gen))
		k++;
	if (k == c->nquery)
		return;
	c->query[k] = c->query[--c->nquery];
	struct coral_resid id = resid(m->file, m->block);
	uint32_t bucket = coral_resid_bucket(&id);
	coral_grd_dir_lock(c->dir, bucket);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, &id);
	if (e && e->op_phase == OP_XFER && e->cur == lost && e->op_node == from) {
		if (m->mode >= e->op_mode) {
			/* it arrived: the transfer is over. In X the survivor has the current image
			 * (dirty, as it came); an S copy is clean, the lost node kept the image dirty:
			 * recovery still makes the disk current */
			coral_grd_entry_set_mode(e, from, e->op_mode);
			if (e->op_mode == CORAL_BL_X) {
				e->cur = (uint8_t)from;
				if ((e->flags & CORAL_GRDE_RECOVERY) && e->recovery_node == lost) {
					e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
					e->recovery_node = 0;
				}
			}
			if (e->flags & CORAL_GRDE_RECOVERY) {
				e->op_phase = OP_IDLE; /* the queue goes on once recovered */
				e->op_node = 0;
				e->grants++;
			} else {
				m_done(c, e);
			}
		}
		/* else it did not: the lost node had it; recovered, it comes from the disk */
		coral_grd_dir_touch(c->dir, e);
	} else if (e && e->op_phase == OP_XFER && e->op_node == lost && e->cur == from) {
		e->op_phase = OP_IDLE;
		e->op_node = 0;
		if (m->mode >= CORAL_BL_S) {
			/* still there: nothing reached the lost node */
			if ((e->flags & CORAL_GRDE_RECOVERY) && e->recovery_node == lost) {
				e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
				e->recovery_node = 0;
			}
			m_start_next(c, e);
		} else {
			e->cur = (uint8_t)lost; /* shipped: the lost node had the current image */
			mark_recovery(e, lost);
		}
		coral_grd_dir_touch(c->dir, e);
	}
	coral_grd_dir_unlock(c->dir, bucket);
	struct gcs_loss *L = &c->loss[lost - 1];
	if (L->waiting == 0 && !loss_queries(c, lost) && !L->settled) {
		L->settled = true;
		logf_(c, CORAL_LOG_INFO, "node %u's loss: transfers to it settled %llu ms after it", lost,
		      (unsigned long long)(c->now_ms - L->since_ms));
	}
}

/* Master: a survivor's image of a block of the lost node's bucket (or its answer to a QUERY). */
static void m_report(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	uint32_t lost = m->requester;
	if (lost < 1 || lost > CORAL_MAX_NODES || lost == from || m->mode > CORAL_BL_X) {
		c->st.refused_msgs++;
		return;
	}
	if (m->code == 1) {
		m_query_answer(c, from, m);
		return;
	}
	struct gcs_loss *L = &c->loss[lost - 1];
	if (L->inc != m->gen || !(L->waiting & bit(from)))
		return;
	if (m->data.len % GCS_REPORT_REC != 0 || m->data.len / GCS_REPORT_REC > GCS_REPORT_BATCH) {
		c->st.refused_msgs++;
		return;
	}
	for (size_t k = 0; k < m->data.len / GCS_REPORT_REC; k++) {
		const uint8_t *r = m->data.data + k * GCS_REPORT_REC;
		uint32_t file;
		uint64_t block, gen;
		memcpy(&file, r, 4);
		memcpy(&block, r + 8, 8);
		memcpy(&gen, r + 16, 8);
		uint8_t mode = r[4];
		bool pi = r[5] != 0, dirty = r[6] != 0;
		if (mode > CORAL_BL_X) {
			c->st.refused_msgs++;
			continue;
		}
		struct coral_resid id = resid(file, block);
		uint32_t bucket = coral_resid_bucket(&id);
		coral_grd_dir_lock(c->dir, bucket);
		struct coral_grd_entry *e = coral_grd_dir_find(c->dir, &id);
		if (e == NULL)
			e = coral_grd_dir_insert(c->dir, &id);
		if (e != NULL) {
			/* a holder ignores an operation numbered at or below the grant it holds */
			if (gen > e->gen)
				e->gen = gen;
			if (pi)
				e->pi |= bit(from);
			else if (mode > e->mode[from - 1])
				coral_grd_entry_set_mode(e, from, mode);
			if (!pi && dirty && mode >= CORAL_BL_S)
				e->cur = (uint8_t)from;
			coral_grd_dir_touch(c->dir, e);
		} else {
			logf_(c, CORAL_LOG_WARNING,
			      "node %u's loss: the directory is full; block %u:%llu held by node %u is not recorded", lost,
			      file, (unsigned long long)block, from);
		}
		coral_grd_dir_unlock(c->dir, bucket);
		L->got[from - 1]++;
	}
}

static void m_report_end(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m)
{
	uint32_t lost = m->requester;
	if (lost < 1 || lost > CORAL_MAX_NODES) {
		c->st.refused_msgs++;
		return;
	}
	struct gcs_loss *L = &c->loss[lost - 1];
	if (L->inc != m->gen || !(L->waiting & bit(from)))
		return;
	if (L->got[from - 1] != m->rid) {
		/* some report went missing: all of them again */
		L->got[from - 1] = 0;
		L->asked_ms = 0;
		return;
	}
	L->waiting &= ~bit(from);
	if (L->waiting == 0)
		loss_settle(c, lost);
}

/* The tick's part: reports asked again, survivors lost meanwhile not waited for, queries
 * asked again. */
static void loss_tick(struct gcs_core *c)
{
	report_pump(c);
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		struct gcs_loss *L = &c->loss[n - 1];
		flush_tick(c, L);
		if (L->inc == 0 || L->waiting == 0)
			continue;
		L->waiting &= ~c->lost_mask;
		if (L->waiting == 0)
			loss_settle(c, n);
		else if (c->now_ms - L->asked_ms >= c->retry_ms)
			loss_ask(c, n);
	}
	for (uint32_t k = 0; k < c->nquery;) {
		struct gcs_query *q = &c->query[k];
		if (c->lost_mask & bit(q->to)) {
			/* its shipper was lost too: recovery reads both threads */
			uint32_t lost = q->lost;
			*q = c->query[--c->nquery];
			if (c->loss[lost - 1].waiting == 0 && !loss_queries(c, lost))
				c->loss[lost - 1].settled = true;
			continue;
		}
		if (c->now_ms - q->sent_ms >= c->retry_ms)
			query_send(c, q);
		k++;
	}
}

/* Who may send a kind: any node of the cluster, or only the requester the message names
 * (a request, and its acknowledgement of the grant). The handlers check the rest against
 * the operation in progress. */
enum { FROM_ANY, FROM_REQUESTER };

static const struct gcs_handler {
	uint8_t from;
	void (*fn)(struct gcs_core *c, uint32_t from, const Coral__GcsMsg *m);
} gcs_handlers[GCS_NKINDS] = {
	/* the master's side */
	[GCS_REQ] = {FROM_REQUESTER, k_req},
	[GCS_CR_REQ] = {FROM_REQUESTER, k_cr_req},
	[GCS_ACK] = {FROM_REQUESTER, k_ack},
	[GCS_INV_ACK] = {FROM_ANY, k_inv_ack},
	[GCS_NOT_HERE] = {FROM_ANY, k_not_here},
	[GCS_RELEASE] = {FROM_ANY, k_release},
	[GCS_WRITTEN] = {FROM_ANY, k_written},
	[GCS_PI_ACK] = {FROM_ANY, k_pi_ack},
	/* the requester's */
	[GCS_GRANT] = {FROM_ANY, r_grant},
	[GCS_BLOCK] = {FROM_ANY, r_block},
	[GCS_CR_BLOCK] = {FROM_ANY, r_cr_block},
	[GCS_RETRY] = {FROM_ANY, k_retry},
	[GCS_ACKED] = {FROM_ANY, k_acked},
	/* the holder's */
	[GCS_FWD] = {FROM_ANY, k_fwd},
	[GCS_CR_FWD] = {FROM_ANY, k_cr_fwd},
	[GCS_INV] = {FROM_ANY, k_inv},
	[GCS_PI_DROP] = {FROM_ANY, h_pi_drop},
	/* a node's loss */
	[GCS_REPORT_REQ] = {FROM_ANY, h_report_req},
	[GCS_REPORT] = {FROM_ANY, m_report},
	[GCS_REPORT_END] = {FROM_ANY, m_report_end},
	[GCS_QUERY] = {FROM_ANY, h_query},
};

void gcs_core_recv(struct gcs_core *c, uint32_t from, uint8_t type, const uint8_t *data, size_t len)
{
	Coral__GcsMsg *m = gcs_msg_decode(type, data, len, &c->st.refused_msgs);
	if (m == NULL)
		return;
	const struct gcs_handler *h = m->kind < GCS_NKINDS ? &gcs_handlers[m->kind] : NULL;
	if (h == NULL || h->fn == NULL || from < 1 || from > CORAL_MAX_NODES ||
	    (h->from == FROM_REQUESTER && m->requester != from)) {
		c->st.refused_msgs++;
		gcs_msg_free(m);
		return;
	}
	coral_scn_observe(c->cache, m->scn);
	if (c->trace)
		tr_msg(c, "recv", from, m);
	h->fn(c, from, m);
	gcs_msg_free(m);
}

static void resend_acks(struct gcs_core *c)
{
	for (uint32_t k = 0; k < c->nunacked;) {
		struct coral_buf *b = coral_cache_buf(c->cache, c->unacked[k]);
		uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
		coral_cache_lock(c->cache, ch);
		bool still = (b->flags & CORAL_BUFF_VALID) && (b->flags & CORAL_BUFF_UNACKED) &&
			     !(b->flags & (CORAL_BUFF_PI | CORAL_BUFF_CR));
		if (!still) {
			b->flags &= (uint16_t)~CORAL_BUFF_UNACKED;
			coral_cache_unlock(c->cache, ch);
			c->unacked[k] = c->unacked[--c->nunacked];
			continue;
		}
		bool due = c->now_ms - b->ack_ms >= c->retry_ms;
		uint32_t file = b->file, from = b->ack_from;
		uint64_t block = b->block, rid = b->rid, gen = b->gen;
		int mode = b->mode;
		bool pi = b->ack_pi;
		if (due)
			b->ack_ms = c->now_ms;
		coral_cache_unlock(c->cache, ch);
		if (due) {
			uint64_t v;
			uint32_t master = c->ops.master(c->ops.arg, file, block, &v);
			if (master)
				send_ack_raw(c, file, block, rid, gen, master, mode, from, pi, true);
		}
		k++;
	}
}

void gcs_core_log_ready(struct gcs_core *c) { run_deferred(c); }

void gcs_core_tick(struct gcs_core *c)
{
	if (c->ckpt_wanted && !c->ckpt_syncing) {
		c->ckpt_wanted = false;
		gcs_core_checkpoint(c);
	}
	run_deferred(c);
	resend_acks(c);
	loss_tick(c);
	/* requester: ask again, or give up (backwards: a wait given up is replaced in live[]
	 * by the last one, already seen) */
	for (uint32_t k = c->nwaits; k-- > 0;) {
		struct gcs_wait *w = &c->waits[c->live[k]];
		if (c->now_ms >= w->deadline_ms) {
			c->st.timeouts++;
			fail_wait(c, w, w->code ? w->code : CORAL_ETIMEDOUT);
			continue;
		}
		if (c->now_ms - w->sent_ms >= c->retry_ms) {
			c->st.retries++;
			send_req(c, w);
		}
	}
	/* master: operations whose messages went unanswered */
	for (uint32_t k = 0; k < c->nops;) {
		Coral__GcsMsg probe;
		msg_init(&probe, 0, c->ops_list[k].file, c->ops_list[k].block);
		uint32_t bucket;
		int why;
		struct coral_grd_entry *e = m_entry(c, &probe, M_FINISH, &bucket, &why);
		if (e == NULL && (why == CORAL_ERECOVERY || why == CORAL_EFROZEN)) {
			/* kept: its answer may have been refused meanwhile, and nothing else asks
			 * again once the block is recovered (a requester acknowledges a grant once) */
			k++;
			continue;
		}
		if (e == NULL || e->op_phase == OP_IDLE) {
			if (e)
				m_unlock(c, e, bucket);
			c->ops_list[k] = c->ops_list[--c->nops];
			continue;
		}
		if (c->now_ms - e->op_sent_ms >= c->retry_ms) {
			/* never abandoned: the requester answers every grant, with an ACK or a
			 * refusal; a node that does not answer at all is evicted, and recovery
			 * rebuilds the block's state */
			if (++e->op_tries == GCS_OP_TRIES)
				logf_(c, CORAL_LOG_NOTICE, "block %u:%llu: operation %llu for node %u unanswered after %u tries",
				      (uint32_t)e->id.id1, (unsigned long long)e->id.id2,
				      (unsigned long long)e->gen, e->op_node, e->op_tries);
			c->st.lost++;
			m_drive(c, e);
		}
		m_unlock(c, e, bucket);
		k++;
	}
	/* master: past images still to be dropped */
	for (uint32_t k = 0; k < c->npidrop;) {
		Coral__GcsMsg probe;
		msg_init(&probe, 0, c->pidrop[k].file, c->pidrop[k].block);
		uint32_t bucket;
		int why;
		struct coral_grd_entry *e = m_entry(c, &probe, M_SERVE, &bucket, &why);
		if (e == NULL || e->pi == 0) {
			if (e)
				m_unlock(c, e, bucket);
			c->pidrop[k] = c->pidrop[--c->npidrop];
			continue;
		}
		m_send_pidrops(c, e);
		m_unlock(c, e, bucket);
		k++;
	}
}

/* The SYNCING mark of a block written back, while it is still that block. */
static void mark_syncing(struct gcs_core *c, const struct gcs_written *w, bool on)
{
	struct coral_buf *b = coral_cache_buf(c->cache, w->buf);
	uint32_t ch = coral_cache_chain(c->cache, w->file, w->block);
	coral_cache_lock(c->cache, ch);
	if ((b->flags & CORAL_BUFF_VALID) && b->file == w->file && b->block == w->block) {
		if (on)
			b->flags |= CORAL_BUFF_SYNCING;
		else
			b->flags &= (uint16_t)~CORAL_BUFF_SYNCING;
	}
	coral_cache_unlock(c->cache, ch);
}

int gcs_core_checkpoint(struct gcs_core *c)
{
	if (c->ckpt_syncing)
		return 0;  /* the last one's sync is under way */
	uint32_t *list = c->ckpt;
	uint32_t n = 0;
	uint64_t lsn = 0;
	for (uint32_t i = 0; i < c->cache->nbuf; i++) {
		struct coral_buf *b = coral_cache_buf(c->cache, i);
		uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
		coral_cache_lock(c->cache, ch);
		/* an invalidation waits for the write of its dirty copy: that is written too */
		bool inv = (b->flags & CORAL_BUFF_SHIPWAIT) && b->ship_kind == SHIP_INV;
		bool cand = (b->flags & CORAL_BUFF_VALID) && (b->flags & CORAL_BUFF_DIRTY) && !(b->flags & CORAL_BUFF_PI);
		bool want = cand && (!(b->flags & CORAL_BUFF_SHIPWAIT) || inv) && !(atomic_load(&b->pins) & CORAL_BUF_XPIN);
		if (cand && !want)
			wwait_mark(c, b);
		if (want && b->redo_lsn > lsn)
			lsn = b->redo_lsn;
		coral_cache_unlock(c->cache, ch);
		if (want)
			list[n++] = i;
	}
	if (n == 0)
		return 0;
	/* one log force and one sync for all of them */
	if (lsn) {
		/* not durable yet: the images whose redo is are written now, the rest next time */
		int rc = c->ops.log_force(c->ops.arg, lsn);
		if (rc < 0 && rc != CORAL_EPENDING)
			return 0;
		c->st.log_forces += rc > 0 ? (uint64_t)rc : 0;
	}
	uint32_t m = 0;
	for (uint32_t k = 0; k < n && m < GCS_CKPT_BATCH; k++) {
		struct coral_buf *b = coral_cache_buf(c->cache, list[k]);
		uint8_t *dst = c->ckpt_data + (size_t)m * c->cache->block_size;
		if (wb_copy(c, b, dst, &c->ckpt_w[m]) == 0) {
			wwait_clear(c, b);  /* copied: marked at an earlier checkpoint */
			c->ckpt_io[m] = (struct gcs_write){c->ckpt_w[m].file, c->ckpt_w[m].block, c->ckpt_w[m].scn, dst};
			m++;
		}
	}
	if (m == GCS_CKPT_BATCH)
		c->ckpt_wanted = true;  /* more than a batch: the next one at the tick after */
	c->nckpt_w = m;
	if (m == 0)
		return 0;
	/* written and synced off the loop where lmsd can (gcs_core_synced follows), the blocks
	 * staying here until it is done */
	if (c->ops.flush_start && c->ops.flush_start(c->ops.arg, c->ckpt_io, m) == 0) {
		c->ckpt_syncing = true;
		for (uint32_t k = 0; k < m; k++)
			mark_syncing(c, &c->ckpt_w[k], true);
		return (int)m;
	}
	uint32_t w = 0;
	for (uint32_t k = 0; k < m; k++)
		if (wb_write(c, c->ckpt_io[k].file, c->ckpt_io[k].block, c->ckpt_io[k].data, c->ckpt_io[k].scn) == 0)
			c->ckpt_w[w++] = c->ckpt_w[k];
	c->nckpt_w = w;
	c->ckpt_syncing = true;
	gcs_core_synced(c, c->ops.sync(c->ops.arg));
	return (int)w;
}

uint64_t gcs_core_ckpt_lsn(struct gcs_core *c, uint64_t tail)
{
	uint64_t ckpt = tail;
	for (uint32_t i = 0; i < c->cache->nbuf; i++) {
		struct coral_buf *b = coral_cache_buf(c->cache, i);
		uint32_t ch = coral_cache_chain(c->cache, b->file, b->block);
		coral_cache_lock(c->cache, ch);
		uint64_t f = (b->flags & CORAL_BUFF_VALID) ? b->first_lsn : 0;
		coral_cache_unlock(c->cache, ch);
		if (f != 0 && f - 1 < ckpt)
			ckpt = f - 1;
	}
	return ckpt;
}

void gcs_core_synced(struct gcs_core *c, int rc)
{
	if (!c->ckpt_syncing)
		return;
	c->ckpt_syncing = false;
	for (uint32_t k = 0; k < c->nckpt_w; k++) {
		mark_syncing(c, &c->ckpt_w[k], false);
		if (rc == 0)
			wb_done(c, &c->ckpt_w[k]);
	}
	c->nckpt_w = 0;
	if (rc != 0) {
		c->st.write_errors++;
		logf_(c, CORAL_LOG_WARNING, "a checkpoint's sync failed: %s (its blocks stay dirty)", coral_strerror(rc));
	}
	run_deferred(c);
}

/* Redo: the ring in the SGA (appenders, waiters), what the log writer (replicad's
 * log_writer.c) needs of it, and a reader of a node's thread. */
#include "redo.h"
#include "crc32c.h"
#include "errors.h"
#include "sync.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint64_t align8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }
static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static long futex(_Atomic uint32_t *addr, int op, uint32_t val, int timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
	return syscall(SYS_futex, (uint32_t *)addr, op, val, timeout_ms >= 0 ? &ts : NULL, NULL, 0);
}

size_t coral_redo_size(uint64_t ring)
{
	return align64(sizeof(struct coral_redo)) + (size_t)ring;
}

int coral_redo_init(struct coral_redo *r, size_t size, uint64_t ring, uint32_t thread)
{
	if (size < coral_redo_size(ring) || ring < 65536)
		return CORAL_EINVAL;
	memset(r, 0, sizeof(*r));
	r->size = ring;
	r->off_ring = align64(sizeof(struct coral_redo));
	r->thread = thread;
	return coral_mutex_init_shared(&r->latch);
}

size_t coral_redo_sga_size(const struct coral_conf *conf)
{
	return coral_redo_size((uint64_t)conf->cache.redo_buffer);
}

int coral_redo_sga_init(void *section, size_t size, const struct coral_conf *conf,
			const struct coral_node_conf *node)
{
	return coral_redo_init(section, size, (uint64_t)conf->cache.redo_buffer, (uint32_t)node->id);
}

void coral_redo_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_redo *r = section;
	*used = atomic_load(&r->tail) - atomic_load(&r->durable);
	*capacity = r->size;
}

struct coral_redo *coral_redo_sga(const struct coral_sga *sga)
{
	size_t sz;
	return coral_sga_section(sga, "redo", &sz);
}

static uint8_t *ring(struct coral_redo *r) { return (uint8_t *)r + r->off_ring; }

static void ring_put(struct coral_redo *r, uint64_t lsn, const void *src, size_t n)
{
	size_t at = (size_t)(lsn % r->size), first = r->size - at < n ? r->size - at : n;
	memcpy(ring(r) + at, src, first);
	if (first < n)
		memcpy(ring(r), (const uint8_t *)src + first, n - first);
}

static void ring_get(struct coral_redo *r, uint64_t lsn, void *dst, size_t n)
{
	size_t at = (size_t)(lsn % r->size), first = r->size - at < n ? r->size - at : n;
	memcpy(dst, ring(r) + at, first);
	if (first < n)
		memcpy((uint8_t *)dst + first, ring(r), n - first);
}

static void repair_latch(void *arg) { (void)arg; }

void coral_redo_kick(struct coral_redo *r)
{
	atomic_fetch_add(&r->work_seq, 1);
	futex(&r->work_seq, FUTEX_WAKE, INT_MAX, -1);
}

void coral_redo_set_fenced(struct coral_redo *r, bool fenced)
{
	atomic_store(&r->fenced, fenced ? 1u : 0u);
	atomic_fetch_add(&r->durable_seq, 1);
	futex(&r->durable_seq, FUTEX_WAKE, INT_MAX, -1);
}

uint64_t coral_redo_drop_tail(struct coral_redo *r)
{
	coral_mutex_lock(&r->latch, repair_latch, NULL);
	uint64_t d = atomic_load(&r->durable), t = atomic_load(&r->tail);
	atomic_store(&r->tail, d);
	coral_mutex_unlock(&r->latch);
	atomic_fetch_add(&r->dropped, t - d);
	return t - d;
}

void coral_redo_mark(struct coral_redo *r, _Atomic uint64_t *clock, uint64_t *lsn, uint64_t *scn)
{
	coral_mutex_lock(&r->latch, repair_latch, NULL);
	*scn = atomic_load(clock);
	*lsn = atomic_load(&r->tail);
	coral_mutex_unlock(&r->latch);
}

int coral_redo_append(struct coral_redo *r, uint8_t type, uint8_t flags, uint64_t scn, uint32_t session,
		      uint32_t file, uint64_t block, uint32_t offset, const void *bytes, const void *before,
		      uint32_t nbytes, int timeout_ms, uint64_t *lsn)
{
	return coral_redo_append_clocked(r, NULL, type, flags, &scn, session, file, block, offset, bytes, before, nbytes,
					 timeout_ms, lsn);
}

int coral_redo_append_clocked(struct coral_redo *r, _Atomic uint64_t *clock, uint8_t type, uint8_t flags,
			      uint64_t *scn_io, uint32_t session, uint32_t file, uint64_t block, uint32_t offset,
			      const void *bytes, const void *before, uint32_t nbytes, int timeout_ms, uint64_t *lsn)
{
	uint64_t scn = *scn_io;
	if (nbytes > CORAL_REDO_MAX_BYTES)
		return CORAL_EINVAL;
	flags = (uint8_t)((flags & ~CORAL_REDO_F_UNDO) | (before ? CORAL_REDO_F_UNDO : 0));
	uint32_t nbody = before ? 2 * nbytes : nbytes;
	uint64_t len = align8(sizeof(struct coral_redo_rec) + nbody);
	if (len > r->size / 2)
		return CORAL_EINVAL;
	if (atomic_load(&r->writer_pid) == 0)
		return CORAL_ENOTRUNNING;
	struct coral_redo_rec h = {.magic = CORAL_REDO_MAGIC, .len = (uint32_t)len, .type = type, .flags = flags,
				   .scn = scn, .session = session, .file = file, .block = block,
				   .offset = offset, .nbytes = nbytes};
	static const uint8_t zeros[8];
	size_t padn = (size_t)(len - sizeof(h) - nbody);
	uint64_t deadline = coral_now_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	uint64_t tail;
	for (;;) {
		coral_mutex_lock(&r->latch, repair_latch, NULL);
		if (atomic_load(&r->closed) && (type == CORAL_REDO_CHANGE || type == CORAL_REDO_COMMIT) &&
		    !(flags & CORAL_REDO_F_ROLLBACK)) {
			coral_mutex_unlock(&r->latch);
			return CORAL_EFENCED;
		}
		tail = atomic_load(&r->tail);
		if (tail + len - atomic_load(&r->durable) <= r->size)
			break;
		coral_mutex_unlock(&r->latch);
		/* the ring is full: wait for the log writer to make room */
		atomic_fetch_add(&r->full_waits, 1);
		int rc = coral_redo_wait(r, atomic_load(&r->durable) + 1, 10);
		if (rc != 0 && rc != CORAL_ETIMEDOUT)
			return rc;
		if (coral_now_mono_ns() > deadline)
			return CORAL_ETIMEDOUT;
	}
	h.lsn = tail + len;
	if (clock)
		h.scn = *scn_io = atomic_fetch_add(clock, 1) + 1;
	uint32_t crc = coral_crc32c(0, &h, sizeof(h));
	crc = coral_crc32c(crc, bytes, nbytes);
	if (before)
		crc = coral_crc32c(crc, before, nbytes);
	h.crc = coral_crc32c(crc, zeros, padn);
	ring_put(r, tail, &h, sizeof(h));
	if (nbytes)
		ring_put(r, tail + sizeof(h), bytes, nbytes);
	if (before && nbytes)
		ring_put(r, tail + sizeof(h) + nbytes, before, nbytes);
	if (padn)
		ring_put(r, tail + sizeof(h) + nbody, zeros, padn);
	atomic_store_explicit(&r->tail, tail + len, memory_order_release);
	coral_mutex_unlock(&r->latch);
	atomic_fetch_add(&r->records, 1);
	atomic_fetch_add(&r->bytes, len);
	if (type == CORAL_REDO_COMMIT)
		atomic_fetch_add(&r->commits, 1);
	*lsn = tail + len;
	return 0;
}

uint64_t coral_redo_close(struct coral_redo *r, bool closed)
{
	coral_mutex_lock(&r->latch, repair_latch, NULL);
	atomic_store(&r->closed, closed ? 1u : 0u);
	uint64_t tail = atomic_load(&r->tail);
	coral_mutex_unlock(&r->latch);
	return tail;
}

int coral_redo_poll(struct coral_redo *r, uint64_t lsn)
{
	if (atomic_load(&r->durable) >= lsn)
		return 0;
	if (atomic_load(&r->fenced))
		return CORAL_EFENCED;
	int io = atomic_load(&r->io_error);
	if (io != 0 && coral_now_mono_ns() - atomic_load(&r->io_error_since_ns) >=
			       (uint64_t)atomic_load(&r->fail_after_ms) * 1000000ull)
		return io;
	uint64_t f = atomic_load(&r->force_to);
	while (f < lsn && !atomic_compare_exchange_weak(&r->force_to, &f, lsn))
		;
	coral_redo_kick(r);
	return CORAL_EPENDING;
}

int coral_redo_wait(struct coral_redo *r, uint64_t lsn, int timeout_ms)
{
	uint64_t deadline = coral_now_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	for (;;) {
		uint32_t seq = atomic_load(&r->durable_seq);
		int rc = coral_redo_poll(r, lsn);
		if (rc != CORAL_EPENDING)
			return rc;
		uint64_t now = coral_now_mono_ns();
		if (now >= deadline)
			return CORAL_ETIMEDOUT;
		int ms = (int)((deadline - now) / 1000000ull) + 1;
		atomic_fetch_add(&r->waiters, 1);
		futex(&r->durable_seq, FUTEX_WAIT, seq, ms < 100 ? ms : 100);
		atomic_fetch_sub(&r->waiters, 1);
	}
}

int coral_redo_gate_wait(struct coral_redo *r, uint64_t lsn, int timeout_ms)
{
	if (!atomic_load(&r->gate_on) || atomic_load(&r->gate_lsn) >= lsn)
		return 0;
	uint64_t t0 = coral_now_mono_ns(), deadline = t0 + (uint64_t)timeout_ms * 1000000ull;
	int rc = 0;
	atomic_fetch_add(&r->gate_waiters, 1);
	atomic_fetch_add(&r->gate_waits, 1);
	for (;;) {
		uint32_t seq = atomic_load(&r->gate_seq);
		if (!atomic_load(&r->gate_on) || atomic_load(&r->gate_lsn) >= lsn)
			break;
		uint64_t now = coral_now_mono_ns();
		if (now >= deadline) {
			atomic_fetch_add(&r->gate_timeouts, 1);
			rc = CORAL_ETIMEDOUT;
			break;
		}
		int ms = (int)((deadline - now) / 1000000ull) + 1;
		futex(&r->gate_seq, FUTEX_WAIT, seq, ms < 100 ? ms : 100);
	}
	atomic_fetch_sub(&r->gate_waiters, 1);
	atomic_fetch_add(&r->gate_wait_us, (coral_now_mono_ns() - t0) / 1000);
	return rc;
}

void coral_redo_gate_set(struct coral_redo *r, bool on, uint64_t lsn)
{
	bool was = atomic_load(&r->gate_on) != 0;
	uint64_t old = atomic_load(&r->gate_lsn);
	if (was == on && (!on || old == lsn))
		return;
	atomic_store(&r->gate_lsn, lsn);
	atomic_store(&r->gate_on, on ? 1u : 0u);
	atomic_fetch_add(&r->gate_seq, 1);
	if (atomic_load(&r->gate_waiters) > 0)
		futex(&r->gate_seq, FUTEX_WAKE, INT_MAX, -1);
}

/* ---- for the log writer (replicad/log_writer.c) --------------------------------------------- */

void coral_redo_seg_path(const char *dir, uint64_t seg, char *out, size_t n)
{
	snprintf(out, n, "%s/%08llu.redo", dir, (unsigned long long)seg);
}

int coral_redo_thread_dir(const char *shared_dir, uint32_t thread, char *out, size_t n)
{
	int k = snprintf(out, n, "%s/redo/thread_%u", shared_dir, thread);
	return k < 0 || (size_t)k >= n ? CORAL_EINVAL : 0;
}

void coral_redo_ring_read(const struct coral_redo *r, uint64_t lsn, void *dst, size_t n)
{
	ring_get((struct coral_redo *)r, lsn, dst, n);
}

const uint8_t *coral_redo_ring_at(const struct coral_redo *r, uint64_t lsn, uint64_t *contiguous)
{
	size_t i = (size_t)(lsn % r->size);
	*contiguous = r->size - i;
	return ring((struct coral_redo *)r) + i;
}

void coral_redo_start_at(struct coral_redo *r, uint64_t end)
{
	coral_mutex_lock(&r->latch, repair_latch, NULL);
	atomic_store(&r->base, end);
	atomic_store(&r->tail, end);
	atomic_store(&r->durable, end);
	coral_mutex_unlock(&r->latch);
}

void coral_redo_await_work(struct coral_redo *r, uint32_t seq, int wait_ms)
{
	if (wait_ms > 0)
		futex(&r->work_seq, FUTEX_WAIT, seq, wait_ms);
}

void coral_redo_io_error(struct coral_redo *r, int code, uint64_t seg)
{
	int was = atomic_exchange(&r->io_error, code);
	if (code != 0 && was == 0)
		atomic_store(&r->io_error_since_ns, coral_now_mono_ns());
	atomic_store(&r->io_error_seg, seg);
	if (code != was) {
		atomic_fetch_add(&r->durable_seq, 1);
		futex(&r->durable_seq, FUTEX_WAKE, INT_MAX, -1);
	}
}

void coral_redo_made_durable(struct coral_redo *r, uint64_t lsn, uint64_t scn, uint64_t commits, uint64_t sync_us)
{
	atomic_store(&r->durable_scn, scn);
	atomic_store_explicit(&r->durable, lsn, memory_order_release);
	atomic_fetch_add(&r->durable_seq, 1);
	futex(&r->durable_seq, FUTEX_WAKE, INT_MAX, -1);
	atomic_fetch_add(&r->syncs, 1);
	atomic_fetch_add(&r->sync_us, sync_us);
	if (commits) {
		atomic_fetch_add(&r->commits_synced, commits);
		int b = 0;
		while (b < CORAL_REDO_BATCH_BUCKETS - 1 && (1ull << (b + 1)) <= commits)
			b++;
		atomic_fetch_add(&r->batch[b], 1);
		uint64_t mx = atomic_load(&r->max_batch);
		while (commits > mx && !atomic_compare_exchange_weak(&r->max_batch, &mx, commits))
			;
	}
}

/* ---- reading a thread back ------------------------------------------------------------- */

struct reader {
	char dir[CORAL_STR_MAX + 64];
	uint64_t segsize, pos;
	int fd;
	uint64_t fd_seg;
	/* read ahead: a record is two small reads, a system call each without it (recovery
	 * read 8 MiB/s so) */
	uint8_t *buf;
	size_t cap, len;
	uint64_t at;          /* the thread's LSN of buf[0] */
};
#define READ_AHEAD (1u << 20)

/* Reads n bytes of the thread at r->pos; returns bytes read (short at the end). */
static size_t rd(struct reader *r, void *dst, size_t n)
{
	size_t got = 0;
	while (got < n) {
		if (r->buf && r->pos >= r->at && r->pos < r->at + r->len) {
			size_t k = (size_t)(r->at + r->len - r->pos);
			if (k > n - got)
				k = n - got;
			memcpy((uint8_t *)dst + got, r->buf + (r->pos - r->at), k);
			got += k;
			r->pos += k;
			continue;
		}
		uint64_t seg = r->pos / r->segsize, off = r->pos % r->segsize;
		if (r->fd < 0 || r->fd_seg != seg) {
			if (r->fd >= 0)
				close(r->fd);
			char p[sizeof(r->dir) + 32];
			coral_redo_seg_path(r->dir, seg, p, sizeof(p));
			r->fd = open(p, O_RDONLY | O_CLOEXEC);
			r->fd_seg = seg;
			if (r->fd < 0)
				return got;
		}
		if (r->buf) {
			size_t want = r->cap;
			if (want > r->segsize - off)
				want = (size_t)(r->segsize - off);
			ssize_t k = pread(r->fd, r->buf, want, (off_t)off);
			if (k <= 0)
				return got;
			r->at = r->pos;
			r->len = (size_t)k;
			continue;
		}
		size_t want = n - got;
		if (want > r->segsize - off)
			want = (size_t)(r->segsize - off);
		ssize_t k = pread(r->fd, (uint8_t *)dst + got, want, (off_t)off);
		if (k <= 0)
			return got;
		got += (size_t)k;
		r->pos += (uint64_t)k;
	}
	return got;
}

#define PROBE_MAX (64ull << 20) /* how far past a bad record a whole one is looked for */

/* The record at LSN at: 1 and *h, body if it is whole and valid; 0 at the end of the files;
 * -1 if it is torn or damaged (*why says how). */
static int read_rec(struct reader *r, uint64_t at, struct coral_redo_rec *h, uint8_t *body, const char **why)
{
	r->pos = at;
	size_t got = rd(r, h, sizeof(*h));
	if (got != sizeof(*h)) {
		if (got == 0)
			return 0;
		*why = "a record's header is not whole";
		return -1;
	}
	/* zeros: the end of what was written (the log writer writes a segment's zeros ahead of
	 * its records; bytes it never wrote read as zeros, never as a record) */
	static const struct coral_redo_rec zero;
	if (memcmp(h, &zero, sizeof(*h)) == 0)
		return 0;
	if (h->magic != CORAL_REDO_MAGIC || h->len < sizeof(*h) || h->len > sizeof(*h) + 2 * CORAL_REDO_MAX_BYTES + 8 ||
	    h->len % 8 != 0 || h->lsn != at + h->len ||
	    (uint64_t)h->nbytes * ((h->flags & CORAL_REDO_F_UNDO) ? 2 : 1) > h->len - sizeof(*h)) {
		*why = "a record's header is damaged";
		return -1;
	}
	size_t rest = h->len - sizeof(*h);
	if (rd(r, body, rest) != rest) {
		*why = "a record is not whole";
		return -1;
	}
	uint32_t crc = h->crc;
	h->crc = 0;
	uint32_t c = coral_crc32c(coral_crc32c(0, h, sizeof(*h)), body, rest);
	h->crc = crc;
	if (c != crc) {
		*why = "a record's checksum is wrong";
		return -1;
	}
	return 1;
}

int64_t coral_redo_scan(const char *shared_dir, uint32_t thread, uint64_t segment_size, uint64_t from,
			coral_redo_visit_fn fn, void *arg, uint64_t *end_lsn, char *err, size_t errsz)
{
	struct reader r = {.segsize = segment_size, .fd = -1, .cap = READ_AHEAD};
	if (err && errsz)
		err[0] = '\0';
	if (coral_redo_thread_dir(shared_dir, thread, r.dir, sizeof(r.dir)) != 0) {
		if (err)
			snprintf(err, errsz, "shared_dir is too long");
		return CORAL_EINVAL;
	}
	if (segment_size == 0 || from % 8 != 0) {
		if (err)
			snprintf(err, errsz, "no segment size, or LSN %llu is not a record's start", (unsigned long long)from);
		return CORAL_EINVAL;
	}
	r.buf = malloc(READ_AHEAD); /* without it, reads go straight to the files */
	uint8_t *body = malloc(2 * CORAL_REDO_MAX_BYTES + 64);
	if (body == NULL) {
		free(r.buf);
		return CORAL_ENOMEM;
	}
	int64_t n = 0;
	uint64_t end = from;
	const char *why = NULL;
	struct coral_redo_rec h;
	int v;
	while ((v = read_rec(&r, end, &h, body, &why)) == 1) {
		if (fn && fn(arg, &h, body) != 0)
			break;
		end = h.lsn;
		n++;
	}
	uint64_t follows = 0;
	if (why) {
		/* a torn last write has nothing whole after it; a valid record further on means the
		 * thread is damaged in the middle, and what follows would be lost without a word */
		for (uint64_t at = end + 8; at < end + PROBE_MAX && follows == 0; at += 8) {
			struct coral_redo_rec p;
			r.pos = at;
			if (rd(&r, &p, sizeof(p)) != sizeof(p))
				break;
			const char *w2;
			if (p.magic == CORAL_REDO_MAGIC && p.lsn == at + p.len && read_rec(&r, at, &p, body, &w2) == 1)
				follows = at;
		}
	}
	if (why && err)
		snprintf(err, errsz, "%s at LSN %llu (segment %llu)%s", why, (unsigned long long)end,
			 (unsigned long long)(end / segment_size),
			 follows ? ", and a whole record follows: the thread is damaged in the middle" : "");
	if (follows && err) {
		size_t l = strlen(err);
		snprintf(err + l, errsz - l, " (at LSN %llu)", (unsigned long long)follows);
	}
	if (r.fd >= 0)
		close(r.fd);
	free(body);
	free(r.buf);
	if (end_lsn)
		*end_lsn = end;
	return follows ? CORAL_ECORRUPT : n;
}

/* ---- the thread's checkpoint file ------------------------------------------------------ */

static uint32_t ckpt_crc(const struct coral_redo_ckpt *c)
{
	struct coral_redo_ckpt x = *c;
	x.crc = 0;
	return coral_crc32c(0, &x, sizeof(x));
}

int coral_redo_ckpt_write(const char *thread_dir, uint32_t thread, uint64_t lsn, uint64_t ns, uint64_t scn,
			  char *err, size_t errsz)
{
	struct coral_redo_ckpt c = {CORAL_REDO_CKPT_MAGIC, thread, lsn, ns, scn, 0, 0};
	c.crc = ckpt_crc(&c);
	return coral_write_file_atomic(thread_dir, "checkpoint", &c, sizeof(c), 0640, err, errsz);
}

int coral_redo_ckpt_read(const char *shared_dir, uint32_t thread, struct coral_redo_ckpt *out, char *err,
			 size_t errsz)
{
	memset(out, 0, sizeof(*out));
	char dir[PATH_MAX], path[PATH_MAX + 16];
	if (coral_redo_thread_dir(shared_dir, thread, dir, sizeof(dir)) != 0)
		return CORAL_EINVAL;
	snprintf(path, sizeof(path), "%s/checkpoint", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		return CORAL_EIO;
	}
	struct coral_redo_ckpt c;
	ssize_t n = read(fd, &c, sizeof(c));
	close(fd);
	if (n != (ssize_t)sizeof(c) || c.magic != CORAL_REDO_CKPT_MAGIC || c.crc != ckpt_crc(&c) || c.thread != thread) {
		snprintf(err, errsz, "%s is damaged (or not thread %u's)", path, thread);
		return CORAL_ECORRUPT;
	}
	*out = c;
	return 0;
}

int coral_redo_segments(const char *shared_dir, uint32_t thread, uint64_t *n, uint64_t *first, uint64_t *last)
{
	*n = *first = *last = 0;
	char dir[PATH_MAX];
	if (coral_redo_thread_dir(shared_dir, thread, dir, sizeof(dir)) != 0)
		return CORAL_EINVAL;
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : CORAL_EIO;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		unsigned long long seq;
		char tail[8];
		if (sscanf(e->d_name, "%llu.%7s", &seq, tail) != 2 || strcmp(tail, "redo") != 0)
			continue;
		if (*n == 0 || seq < *first)
			*first = seq;
		if (*n == 0 || seq > *last)
			*last = seq;
		(*n)++;
	}
	closedir(d);
	return 0;
}

int coral_redo_threads(const char *shared_dir, uint32_t *ids, int max)
{
	char path[CORAL_STR_MAX + 16];
	snprintf(path, sizeof(path), "%s/redo", shared_dir);
	DIR *d = opendir(path);
	if (d == NULL)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < max) {
		unsigned id;
		char rest;
		if (sscanf(e->d_name, "thread_%u%c", &id, &rest) == 1 && id > 0)
			ids[n++] = id;
	}
	closedir(d);
	return n;
}

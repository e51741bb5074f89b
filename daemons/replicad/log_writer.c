/* The log writer (see log_writer.h). */
#include "log_writer.h"

#include "errors.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct log_writer {
	struct coral_redo *r;
	char dir[CORAL_STR_MAX + 64];
	uint64_t segsize;
	int fd;
	uint64_t fd_seg;
	char error[CORAL_STR_MAX + 160];  /* the last failure: the cause and the file */
	uint32_t thread;
	uint64_t ckpt_kept, ckpt_kept_ns;  /* the checkpoint last written to the thread's directory */
	uint64_t recycle_from;             /* the first segment that may still exist */
	uint64_t recycled;                 /* segments removed */
};

static int scan_end_fn(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	(void)bytes;
	*(uint64_t *)arg = rec->lsn;
	return 0;
}

/* A new ring starts where the thread's last whole record ends; what follows is cut. The
 * thread is read from its kept checkpoint (everything before it is on the data files and
 * whole), unless the checkpoint is past the files' end. */
static int start_at_end(struct log_writer *w, const char *shared_dir, uint32_t thread, char *err, size_t errsz)
{
	uint64_t last = 0, end = 0, from = 0;
	struct coral_redo_ckpt k;
	char kerr[CORAL_STR_MAX + 64];
	if (coral_redo_ckpt_read(shared_dir, thread, &k, kerr, sizeof(kerr)) == 0 && k.lsn > 0) {
		char p[sizeof(w->dir) + 32];
		struct stat st;
		coral_redo_seg_path(w->dir, k.lsn / w->segsize, p, sizeof(p));
		if (stat(p, &st) == 0 && (uint64_t)st.st_size >= k.lsn % w->segsize) {
			from = k.lsn;
			w->ckpt_kept = k.lsn;
			atomic_store(&w->r->ckpt_lsn, k.lsn);
			atomic_store(&w->r->ckpt_ns, k.ns);
		}
	}
	int64_t n = coral_redo_scan(shared_dir, thread, w->segsize, from, scan_end_fn, &last, &end, err, errsz);
	if (n < 0)
		return (int)n;
	err[0] = '\0';
	uint64_t seg = end / w->segsize;
	char p[sizeof(w->dir) + 32];
	coral_redo_seg_path(w->dir, seg, p, sizeof(p));
	if (truncate(p, (off_t)(end % w->segsize)) != 0 && errno != ENOENT) {
		snprintf(err, errsz, "cannot cut %s at the end of its last whole record: %s", p, strerror(errno));
		return CORAL_EIO;
	}
	for (uint64_t k = seg + 1;; k++) {
		coral_redo_seg_path(w->dir, k, p, sizeof(p));
		if (unlink(p) != 0)
			break;
	}
	coral_redo_start_at(w->r, end);
	return 0;
}

int log_writer_open(struct coral_redo *r, const char *shared_dir, uint32_t thread, uint64_t segment_size,
		    struct log_writer **out, char *err, size_t errsz)
{
	struct log_writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return CORAL_ENOMEM;
	w->r = r;
	w->thread = thread;
	w->segsize = segment_size;
	w->fd = -1;
	if (coral_redo_thread_dir(shared_dir, thread, w->dir, sizeof(w->dir)) != 0 || coral_mkdir_p(w->dir, 0750) != 0) {
		snprintf(err, errsz, "cannot create the redo thread directory %s: %s", w->dir, strerror(errno));
		free(w);
		return CORAL_EIO;
	}
	uint64_t nseg, first, last;
	if (coral_redo_segments(shared_dir, thread, &nseg, &first, &last) == 0 && nseg > 0)
		w->recycle_from = first;
	if (atomic_load(&r->tail) == 0 && atomic_load(&r->base) == 0) {
		int rc = start_at_end(w, shared_dir, thread, err, errsz);
		if (rc != 0) {
			free(w);
			return rc;
		}
	}
	atomic_store(&r->writer_pid, (int32_t)getpid());
	*out = w;
	return 0;
}

static int seg_fd(struct log_writer *w, uint64_t seg)
{
	if (w->fd >= 0 && w->fd_seg == seg)
		return w->fd;
	if (w->fd >= 0) {
		fdatasync(w->fd);
		close(w->fd);
	}
	char p[sizeof(w->dir) + 32];
	coral_redo_seg_path(w->dir, seg, p, sizeof(p));
	w->fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	w->fd_seg = seg;
	if (w->fd >= 0) {
		/* a new segment's name must survive a crash too */
		int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return w->fd;
}

/* The commits and the highest SCN in [d, t); CORAL_ECORRUPT if the ring is not records. */
static int count(struct coral_redo *r, uint64_t d, uint64_t t, uint64_t *commits, uint64_t *scn)
{
	for (uint64_t at = d; at < t;) {
		struct coral_redo_rec h;
		coral_redo_ring_read(r, at, &h, sizeof(h));
		if (h.magic != CORAL_REDO_MAGIC || h.len < sizeof(h) || at + h.len > t)
			return CORAL_ECORRUPT;
		if (h.type == CORAL_REDO_COMMIT)
			(*commits)++;
		if (h.scn > *scn)
			*scn = h.scn;
		at += h.len;
	}
	return 0;
}

/* A write, sync or open of segment seg failed with errno e: the real cause and the file are
 * kept for the log, and published so that committers give up with it. */
static int64_t failed(struct log_writer *w, uint64_t seg, const char *what, int e)
{
	char p[sizeof(w->dir) + 32];
	coral_redo_seg_path(w->dir, seg, p, sizeof(p));
	snprintf(w->error, sizeof(w->error), "%s %s: %s", what, p, strerror(e));
	int code = coral_err_from_errno(e);
	atomic_fetch_add(&w->r->errors, 1);
	coral_redo_io_error(w->r, code, seg);
	return code;
}

const char *log_writer_error(const struct log_writer *w) { return w->error; }

int log_writer_keep_ckpt(struct log_writer *w, bool now)
{
	uint64_t lsn = atomic_load(&w->r->ckpt_lsn), t = coral_now_mono_ns();
	/* at most once a second: recovery reads a little more redo if the file lags */
	if (lsn <= w->ckpt_kept || (!now && t - w->ckpt_kept_ns < 1000000000ull))
		return 0;
	char err[CORAL_STR_MAX + 160];
	int rc = coral_redo_ckpt_write(w->dir, w->thread, lsn, atomic_load(&w->r->ckpt_ns), err, sizeof(err));
	if (rc != 0) {
		snprintf(w->error, sizeof(w->error), "%s", err);
		return rc;
	}
	w->ckpt_kept = lsn;
	w->ckpt_kept_ns = t;
	/* segments wholly below the kept checkpoint hold nothing recovery reads: recycled
	 * (every change in them is on the data files, and no open transaction began there) */
	uint64_t below = lsn / w->segsize;
	for (; w->recycle_from < below; w->recycle_from++) {
		char p[sizeof(w->dir) + 32];
		coral_redo_seg_path(w->dir, w->recycle_from, p, sizeof(p));
		if (unlink(p) == 0)
			w->recycled++;
		else if (errno != ENOENT) {
			snprintf(w->error, sizeof(w->error), "recycling %s: %s", p, strerror(errno));
			return coral_err_from_errno(errno);
		}
	}
	return 0;
}

uint64_t log_writer_recycled(const struct log_writer *w) { return w->recycled; }

int64_t log_writer_step(struct log_writer *w, int wait_ms)
{
	struct coral_redo *r = w->r;
	uint32_t seq = atomic_load(&r->work_seq);
	uint64_t d = atomic_load(&r->durable);
	uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (t == d) {
		coral_redo_await_work(r, seq, wait_ms);
		return 0;
	}
	uint64_t t0 = coral_now_mono_ns();
	uint64_t commits = 0, scn = atomic_load(&r->durable_scn);
	if (count(r, d, t, &commits, &scn) != 0) {
		atomic_fetch_add(&r->errors, 1);
		return CORAL_ECORRUPT;
	}
	for (uint64_t at = d; at < t;) {
		uint64_t seg = at / w->segsize, off = at % w->segsize, in_ring;
		const uint8_t *src = coral_redo_ring_at(r, at, &in_ring);
		uint64_t n = t - at;
		if (n > w->segsize - off)
			n = w->segsize - off;
		if (n > in_ring)
			n = in_ring;
		int fd = seg_fd(w, seg);
		if (fd < 0)
			return failed(w, seg, "opening", errno);
		ssize_t k = pwrite(fd, src, (size_t)n, (off_t)off);
		if (k != (ssize_t)n)
			return failed(w, seg, "writing", k < 0 ? errno : ENOSPC); /* short: the device filled */
		at += n;
	}
	if (fdatasync(w->fd) != 0)
		return failed(w, w->fd_seg, "syncing", errno);
	if (atomic_load(&r->io_error) != 0)
		coral_redo_io_error(r, 0, 0);
	coral_redo_made_durable(r, t, scn, commits, (coral_now_mono_ns() - t0) / 1000);
	return (int64_t)(t - d);
}

void log_writer_close(struct log_writer *w)
{
	if (w == NULL)
		return;
	if (w->fd >= 0) {
		fdatasync(w->fd);
		close(w->fd);
	}
	free(w);
}

/* The log writer (see log_writer.h). */
#include "log_writer.h"

#include "thread_file.h"

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
	struct thread_file f;
	char error[CORAL_STR_MAX + 160];  /* the last failure: the cause and the file */
	uint32_t thread;
	uint64_t ckpt_kept, ckpt_kept_ns;  /* the checkpoint last written to the thread's directory */
	uint64_t recycle_from;             /* the first segment that may still exist */
	uint64_t recycled;                 /* segments removed */
	_Atomic uint64_t hold;             /* a standby's slot: nothing at or past it is recycled */
};

/* A new ring starts where the thread's last whole record ends; what follows is cut. The
 * thread is read from its kept checkpoint (everything before it is on the data files and
 * whole), unless the checkpoint is past the files' end. */
static int start_at_end(struct log_writer *w, const char *shared_dir, uint32_t thread, _Atomic uint64_t *clock,
			char *err, size_t errsz)
{
	uint64_t end = 0, from = 0;
	struct coral_redo_ckpt k;
	char kerr[CORAL_STR_MAX + 64];
	if (coral_redo_ckpt_read(shared_dir, thread, &k, kerr, sizeof(kerr)) == 0 && k.lsn > 0) {
		char p[sizeof(w->f.dir) + 32];
		struct stat st;
		thread_file_seg_path(&w->f, k.lsn / w->f.segsize, p, sizeof(p));
		if (stat(p, &st) == 0 && (uint64_t)st.st_size >= k.lsn % w->f.segsize) {
			from = k.lsn;
			w->ckpt_kept = k.lsn;
			atomic_store(&w->r->ckpt_lsn, k.lsn);
			atomic_store(&w->r->ckpt_ns, k.ns);
		}
	}
	uint64_t scn = k.scn;
	int rc = thread_file_cut_at_end(&w->f, shared_dir, from, &end, &scn, err, errsz);
	if (rc != 0)
		return rc;
	coral_redo_start_at(w->r, end);
	/* the node's SCN clock starts above every SCN of its thread: the records it appends
	 * from now on keep the thread in SCN order (coral_redo_append_clocked) */
	atomic_store(&w->r->durable_scn, scn);
	if (clock) {
		uint64_t cur = atomic_load(clock);
		while (scn > cur && !atomic_compare_exchange_weak(clock, &cur, scn))
			;
	}
	return 0;
}

int log_writer_open(struct coral_redo *r, _Atomic uint64_t *clock, const char *shared_dir, uint32_t thread,
		    uint64_t segment_size, struct log_writer **out, char *err, size_t errsz)
{
	struct log_writer *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return CORAL_ENOMEM;
	w->r = r;
	w->thread = thread;
	atomic_store(&w->hold, UINT64_MAX);
	int frc = thread_file_open(&w->f, shared_dir, thread, segment_size, err, errsz);
	if (frc != 0) {
		free(w);
		return frc;
	}
	uint64_t nseg, first, last;
	if (coral_redo_segments(shared_dir, thread, &nseg, &first, &last) == 0 && nseg > 0)
		w->recycle_from = first;
	if (atomic_load(&r->tail) == 0 && atomic_load(&r->base) == 0) {
		int rc = start_at_end(w, shared_dir, thread, clock, err, errsz);
		if (rc != 0) {
			free(w);
			return rc;
		}
	}
	atomic_store(&r->writer_pid, (int32_t)getpid());
	*out = w;
	return 0;
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
	char p[sizeof(w->f.dir) + 32];
	thread_file_seg_path(&w->f, seg, p, sizeof(p));
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
	int rc = coral_redo_ckpt_write(w->f.dir, w->thread, lsn, atomic_load(&w->r->ckpt_ns),
				       atomic_load(&w->r->durable_scn), err, sizeof(err));
	if (rc != 0) {
		snprintf(w->error, sizeof(w->error), "%s", err);
		return rc;
	}
	w->ckpt_kept = lsn;
	w->ckpt_kept_ns = t;
	/* segments wholly below the kept checkpoint hold nothing recovery reads: recycled
	 * (every change in them is on the data files, and no open transaction began there) */
	uint64_t hold = atomic_load(&w->hold);
	uint64_t below = (hold < lsn ? hold : lsn) / w->f.segsize;
	for (; w->recycle_from < below; w->recycle_from++) {
		char p[sizeof(w->f.dir) + 32];
		thread_file_seg_path(&w->f, w->recycle_from, p, sizeof(p));
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

void log_writer_hold(struct log_writer *w, uint64_t lsn) { atomic_store(&w->hold, lsn); }

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
		uint64_t in_ring;
		const uint8_t *src = coral_redo_ring_at(r, at, &in_ring);
		uint64_t n = t - at < in_ring ? t - at : in_ring;
		const char *what = "";
		int e = thread_file_write(&w->f, at, src, (size_t)n, &what);
		if (e != 0)
			return failed(w, w->f.err_seg, what, e);
		at += n;
	}
	int e = thread_file_sync(&w->f);
	if (e != 0)
		return failed(w, w->f.err_seg, "syncing", e);
	if (atomic_load(&r->io_error) != 0)
		coral_redo_io_error(r, 0, 0);
	coral_redo_made_durable(r, t, scn, commits, (coral_now_mono_ns() - t0) / 1000);
	return (int64_t)(t - d);
}

void log_writer_close(struct log_writer *w)
{
	if (w == NULL)
		return;
	thread_file_close(&w->f);
	free(w);
}

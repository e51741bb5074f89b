/* A redo thread's files, written (thread_file.h). A segment is written ahead of its data
 * with zeros, ZERO_AHEAD at a time: an fdatasync of bytes inside the file's size writes the
 * data alone, where one that grows the file must write its size too (ext4 without a journal:
 * a second write of the device's; with one: a journal commit). Growing it once a chunk
 * instead of at every commit took a fifth off the log writer's syncs and 3-10% onto the
 * bank's transfers on this machine. Readers take a record header of zeros for the end of
 * the thread (redo.c). */
#include "thread_file.h"

#include "errors.h"
#include "redo.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

int thread_file_open(struct thread_file *f, const char *shared_dir, uint32_t thread, uint64_t segment_size,
		     char *err, size_t errsz)
{
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->segsize = segment_size;
	f->thread = thread;
	if (coral_redo_thread_dir(shared_dir, thread, f->dir, sizeof(f->dir)) != 0 || coral_mkdir_p(f->dir, 0750) != 0) {
		snprintf(err, errsz, "cannot create the redo thread directory %s: %s", f->dir, strerror(errno));
		return CORAL_EIO;
	}
	return 0;
}

void thread_file_seg_path(const struct thread_file *f, uint64_t seg, char *out, size_t n)
{
	coral_redo_seg_path(f->dir, seg, out, n);
}

static int seg_fd(struct thread_file *f, uint64_t seg)
{
	if (f->fd >= 0 && f->fd_seg == seg)
		return f->fd;
	if (f->fd >= 0) {
		fdatasync(f->fd);
		close(f->fd);
	}
	char p[sizeof(f->dir) + 32];
	coral_redo_seg_path(f->dir, seg, p, sizeof(p));
	f->fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
	f->fd_seg = seg;
	if (f->fd >= 0) {
		struct stat st;
		f->size = fstat(f->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
		coral_own_like_dir(f->fd, p, f->dir);
		/* a new segment's name must survive a crash too */
		int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return f->fd;
}

#define ZERO_AHEAD (1u << 20)

/* Zeros from the segment's size to the next ZERO_AHEAD boundary past `end` (never past the
 * segment's end), once the data reaches the size: only bytes past every byte written. The
 * size a segment reaches is a function of how far it was written, so a standby's copy of a
 * segment is the same file as the primary's. */
static int zero_ahead(struct thread_file *f, int fd, uint64_t end)
{
	static const uint8_t zeros[64 << 10];
	if (end < f->size)
		return 0;
	uint64_t to = (end / ZERO_AHEAD + 1) * ZERO_AHEAD;
	if (to > f->segsize)
		to = f->segsize;
	while (f->size < to) {
		size_t k = to - f->size > sizeof(zeros) ? sizeof(zeros) : (size_t)(to - f->size);
		ssize_t w = pwrite(fd, zeros, k, (off_t)f->size);
		if (w <= 0)
			return w < 0 ? errno : ENOSPC;
		f->size += (uint64_t)w;
	}
	return 0;
}

/* The part of [at, end) in at's segment: its segment, offset there and length. */
static uint64_t span(const struct thread_file *f, uint64_t at, uint64_t end, uint64_t *seg, uint64_t *off)
{
	*seg = at / f->segsize;
	*off = at % f->segsize;
	uint64_t k = end - at;
	return k > f->segsize - *off ? f->segsize - *off : k;
}

int thread_file_write(struct thread_file *f, uint64_t lsn, const void *buf, size_t n, const char **what)
{
	const uint8_t *src = buf;
	for (uint64_t at = lsn, end = lsn + n; at < end;) {
		uint64_t seg, off, k = span(f, at, end, &seg, &off);
		f->err_seg = seg;
		int fd = seg_fd(f, seg);
		if (fd < 0) {
			*what = "opening";
			return errno;
		}
		ssize_t w = pwrite(fd, src + (at - lsn), (size_t)k, (off_t)off);
		if (w != (ssize_t)k) {
			*what = "writing";
			return w < 0 ? errno : ENOSPC; /* short: the device filled */
		}
		if (off + k > f->size)
			f->size = off + k;
		/* the zeros ahead are for speed alone: a device too full for them still takes the
		 * records (the file grows with them then, as it always did) */
		(void)zero_ahead(f, fd, off + k);
		at += k;
	}
	return 0;
}

int thread_file_sync(struct thread_file *f)
{
	if (f->fd < 0)
		return 0;
	f->err_seg = f->fd_seg;
	return fdatasync(f->fd) != 0 ? errno : 0;
}

static int scan_end_fn(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	(void)bytes;
	uint64_t *scn = arg;
	if (rec->scn > *scn)
		*scn = rec->scn;
	return 0;
}

int thread_file_cut_at_end(struct thread_file *f, const char *shared_dir, uint64_t from, uint64_t *end,
			   uint64_t *scn, char *err, size_t errsz)
{
	uint64_t top = scn ? *scn : 0;
	*end = 0;
	int64_t n = coral_redo_scan(shared_dir, f->thread, f->segsize, from, scan_end_fn, &top, end, err, errsz);
	if (scn)
		*scn = top;
	if (n < 0)
		return (int)n;
	err[0] = '\0';
	uint64_t seg = *end / f->segsize;
	char p[sizeof(f->dir) + 32];
	coral_redo_seg_path(f->dir, seg, p, sizeof(p));
	if (truncate(p, (off_t)(*end % f->segsize)) != 0 && errno != ENOENT) {
		snprintf(err, errsz, "cannot cut %s at the end of its last whole record: %s", p, strerror(errno));
		return CORAL_EIO;
	}
	for (uint64_t k = seg + 1;; k++) {
		coral_redo_seg_path(f->dir, k, p, sizeof(p));
		if (unlink(p) != 0)
			break;
	}
	return 0;
}

int thread_file_read(struct thread_file *f, uint64_t lsn, void *buf, size_t n)
{
	uint8_t *dst = buf;
	for (uint64_t at = lsn, end = lsn + n; at < end;) {
		uint64_t seg, off, k = span(f, at, end, &seg, &off);
		f->err_seg = seg;
		if (f->fd < 0 || f->fd_seg != seg) {
			if (f->fd >= 0)
				close(f->fd);
			char p[sizeof(f->dir) + 32];
			coral_redo_seg_path(f->dir, seg, p, sizeof(p));
			f->fd = open(p, O_RDONLY | O_CLOEXEC);
			f->fd_seg = seg;
			if (f->fd < 0)
				return errno;
		}
		ssize_t r = pread(f->fd, dst + (at - lsn), (size_t)k, (off_t)off);
		if (r < 0)
			return errno;
		if (r != (ssize_t)k)
			return ENODATA;
		at += k;
	}
	return 0;
}

void thread_file_close(struct thread_file *f)
{
	if (f->fd >= 0) {
		fdatasync(f->fd);
		close(f->fd);
	}
	f->fd = -1;
}

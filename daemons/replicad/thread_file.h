/* A redo thread's files as a writer sees them: SHARED_DIR/redo/thread_N/SEQ.redo, segments
 * of a fixed size, each covering a fixed range of LSNs (redo.h). Bytes are written at their
 * LSN, across segments as needed, then synced; a new segment's name is synced with its
 * directory. The primary's log writer writes its own thread so; a standby's replicad writes
 * its copies of the primary's threads the same way. */
#ifndef CORAL_REPLICAD_THREAD_FILE_H
#define CORAL_REPLICAD_THREAD_FILE_H

#include "conf.h"

#include <stddef.h>
#include <stdint.h>

struct thread_file {
	char dir[CORAL_STR_MAX + 64];
	uint64_t segsize;
	uint32_t thread;
	int fd;              /* the segment last written (-1: none) */
	uint64_t fd_seg;
	uint64_t size;       /* fd's segment's size: data, then zeros ahead (thread_file.c) */
	uint64_t err_seg;    /* the segment of the last failure */
};

/* The thread's directory under shared_dir, created if missing. CORAL_EIO with why in err. */
int thread_file_open(struct thread_file *f, const char *shared_dir, uint32_t thread, uint64_t segment_size,
		     char *err, size_t errsz);
/* Writes n bytes at LSN lsn, and zeros ahead of them up to the next MiB of the segment when
 * they pass what the segment holds (if the device has room for them). 0, or an errno (the
 * segment in err_seg; a short write is ENOSPC: the device filled). `what` says which step
 * failed ("opening", "writing"). */
int thread_file_write(struct thread_file *f, uint64_t lsn, const void *buf, size_t n, const char **what);
/* fdatasync of the segment last written. 0 or an errno (err_seg says which). */
int thread_file_sync(struct thread_file *f);
/* The path of segment seg, for messages. */
void thread_file_seg_path(const struct thread_file *f, uint64_t seg, char *out, size_t n);
/* Where the thread's last whole record ends, reading from `from` (a record's start); the
 * files are cut there (a torn last write removed, later segments too). *scn (if not NULL) is
 * raised to the highest SCN of the records read. */
int thread_file_cut_at_end(struct thread_file *f, const char *shared_dir, uint64_t from, uint64_t *end,
			   uint64_t *scn, char *err, size_t errsz);
/* Reads n bytes at LSN lsn (a reader's thread_file: its fd is opened read-only, apart from
 * any writer's). 0, or an errno: ENOENT when a segment is gone (recycled), ENODATA when a
 * segment ends before lsn + n. */
int thread_file_read(struct thread_file *f, uint64_t lsn, void *buf, size_t n);
void thread_file_close(struct thread_file *f);

#endif

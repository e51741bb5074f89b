/* Redo: the node's redo buffer in the SGA and its redo thread in shared storage.
 *
 * Sessions (libcoral) append checksummed records to a ring in the SGA under one robust latch;
 * a record's LSN is its end offset in the thread's byte stream. The log writer (replicad)
 * copies whatever has been appended to the thread's current segment file with one write and
 * one fdatasync, then advances the durable LSN and wakes every waiter at once: every commit
 * that arrived during the previous sync rides on the next one (group commit). Waiters sleep
 * on a futex in the SGA; lmsd forces the log the same way before it ships a dirty block.
 *
 * The thread: SHARED_DIR/redo/thread_N/SEQ.redo, segments of [cache] redo_segment bytes each
 * covering a fixed range of LSNs (segment k holds [k*size, (k+1)*size)); a record may cross
 * from one segment into the next. */
#ifndef CORAL_REDO_H
#define CORAL_REDO_H

#include "conf.h"
#include "sga.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CORAL_REDO_CHANGE = 1, CORAL_REDO_COMMIT = 2 };
/* A change record's flags. UNDO: the bytes the change replaced follow its new bytes (as
 * many), so that recovery can take back a change whose transaction never committed. BEGIN:
 * the first change of its session's transaction (a session whose earlier transaction has no
 * commit record by then abandoned it). */
/* F_ROLLBACK: a rollback's change or commit; a thread closed for a switchover still takes
 * them (a transaction it refused is taken back: nothing past the switchover's end commits) */
enum { CORAL_REDO_F_UNDO = 1, CORAL_REDO_F_BEGIN = 2, CORAL_REDO_F_ROLLBACK = 4 };

#define CORAL_REDO_MAGIC 0x4f444552u /* "REDO" */
#define CORAL_REDO_MAX_BYTES 65536   /* largest change one record carries */

/* On disk and in the ring, 8-byte aligned; bytes follow (the new ones, then with UNDO the
 * old ones), then padding to 8. */
struct coral_redo_rec {
	uint32_t magic;
	uint32_t len;          /* whole record, padding included */
	uint32_t crc;          /* CRC32C of the record with crc zero */
	uint8_t type;
	uint8_t flags;         /* CORAL_REDO_F_* */
	uint8_t pad[2];
	uint64_t lsn;          /* end of this record in the thread */
	uint64_t scn;
	uint32_t session;
	uint32_t file;
	uint64_t block;
	uint32_t offset;
	uint32_t nbytes;
};

#define CORAL_REDO_BATCH_BUCKETS 8 /* commits per sync: 1, 2-3, 4-7, ... 128+ */

struct coral_redo {
	uint64_t size;                 /* ring bytes */
	uint64_t off_ring;
	uint32_t thread;               /* the node id */
	_Atomic uint32_t fenced;       /* the log writer stopped: the node is fenced (waits fail) */
	pthread_mutex_t latch;         /* appenders; protects tail and the ring bytes past durable */
	_Atomic uint64_t tail;         /* LSN after the last appended record */
	_Atomic uint64_t durable;      /* LSN up to which the thread is on disk */
	_Atomic uint64_t durable_scn;  /* highest SCN in durable redo */
	_Atomic uint64_t base;         /* LSN the ring started at (after a restart) */
	_Atomic uint32_t durable_seq;  /* futex: bumped when durable moves */
	_Atomic uint32_t work_seq;     /* futex: bumped when there is something to write */
	_Atomic uint32_t waiters;      /* sleeping on durable_seq */
	_Atomic int32_t writer_pid;    /* the log writer (0: none yet) */
	_Atomic uint64_t force_to;     /* highest LSN anyone waits for */
	/* the log writer cannot write: the cause (a CORAL_E* code, 0: none), since when, and the
	 * segment; waiters give up with the cause once it has lasted fail_after_ms */
	_Atomic int32_t io_error;
	_Atomic uint64_t io_error_since_ns, io_error_seg;
	_Atomic uint32_t fail_after_ms;
	/* the thread's checkpoint (lmsd): recovery of this node reads its redo from ckpt_lsn;
	 * every change before it is on disk. ckpt_ns: when it was taken (wall clock) */
	_Atomic uint64_t ckpt_lsn, ckpt_ns;
	/* the incarnation of this node the log writer last wrote under (0: none, or its tail was
	 * dropped since): once raftd evicts it, the tail appended under it is dropped */
	_Atomic uint64_t writer_inc;
	_Atomic uint64_t dropped;      /* bytes appended and dropped so, never durable */
	/* the standbys' gate for commits (replicad): while gate_on, a commit returns only once
	 * gate_lsn has reached its LSN (synchronous: k standbys have it durable; the RPO: the best
	 * standby is close enough). gate_seq is the futex bumped when either moves. */
	_Atomic uint32_t gate_on;
	_Atomic uint32_t gate_seq;
	_Atomic uint64_t gate_lsn;
	_Atomic uint32_t gate_waiters;  /* commits waiting at the gate now */
	_Atomic uint64_t gate_waits, gate_wait_us, gate_timeouts;
	/* this cluster was failed over from (a standby took over at this site epoch, replicad
	 * learned it): no change and no commit is taken (0: none) */
	_Atomic uint64_t site_fenced;
	/* this cluster is a standby that has not taken over (replicad): no change is taken */
	_Atomic uint32_t standby;
	/* a switchover is under way (replicad, coral_redo_close): the thread takes no more
	 * changes and commits; set under the latch, so that no record gets past the end told */
	_Atomic uint32_t closed;
	/* counters */
	_Atomic uint64_t records, commits, bytes, syncs, sync_us, full_waits, errors;
	_Atomic uint64_t commits_synced;
	_Atomic uint64_t batch[CORAL_REDO_BATCH_BUCKETS];
	_Atomic uint64_t max_batch;
	/* then the ring */
};

size_t coral_redo_sga_size(const struct coral_conf *conf);
int coral_redo_sga_init(void *section, size_t size, const struct coral_conf *conf,
			const struct coral_node_conf *node);
void coral_redo_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_redo *coral_redo_sga(const struct coral_sga *sga);
/* For tests: a redo buffer in memory of coral_redo_size(ring) bytes. */
size_t coral_redo_size(uint64_t ring);
int coral_redo_init(struct coral_redo *r, size_t size, uint64_t ring, uint32_t thread);

/* Appends one record; returns 0 and its LSN, or CORAL_ETIMEDOUT when the ring stayed full
 * (no log writer) for timeout_ms, CORAL_EINVAL for a change too large. before (NULL: none)
 * holds the nbytes the change replaces (the record gets CORAL_REDO_F_UNDO). */
int coral_redo_append(struct coral_redo *r, uint8_t type, uint8_t flags, uint64_t scn, uint32_t session,
		      uint32_t file, uint64_t block, uint32_t offset, const void *bytes, const void *before,
		      uint32_t nbytes, int timeout_ms, uint64_t *lsn);
/* Closes the thread to changes and commits (closed: a switchover; appends of them fail with
 * CORAL_EFENCED from now on) or opens it again; returns the tail then: every record appended
 * before ends by it. */
uint64_t coral_redo_close(struct coral_redo *r, bool closed);
/* The same with the record's SCN taken from the node's SCN clock (atomic increment) under the
 * redo latch, into *scn: a thread's records are then in SCN order as well as LSN order, which
 * is what lets a standby know, from a mark (coral_redo_mark), that it has every record of a
 * thread up to an SCN. Sessions append so. */
int coral_redo_append_clocked(struct coral_redo *r, _Atomic uint64_t *clock, uint8_t type, uint8_t flags,
			      uint64_t *scn, uint32_t session, uint32_t file, uint64_t block, uint32_t offset,
			      const void *bytes, const void *before, uint32_t nbytes, int timeout_ms, uint64_t *lsn);
/* A mark of the thread: every record whose SCN is at most *scn (the clock now) ends at or
 * before *lsn (the tail now), both read under the latch; records appended later get higher
 * SCNs (if appended with coral_redo_append_clocked). */
void coral_redo_mark(struct coral_redo *r, _Atomic uint64_t *clock, uint64_t *lsn, uint64_t *scn);
/* Waits until everything up to lsn is durable; CORAL_ETIMEDOUT after timeout_ms,
 * CORAL_EFENCED at once while the log writer is stopped by a fence, and the writer's cause
 * (CORAL_ENOSPC, CORAL_EROFS, CORAL_EIO) once it has failed to write for fail_after_ms. A
 * wait given up so may still become durable if the writer succeeds later. */
int coral_redo_wait(struct coral_redo *r, uint64_t lsn, int timeout_ms);
/* A commit durable at lsn waits at the standbys' gate (if on) until it passes lsn: 0, or
 * CORAL_ETIMEDOUT after timeout_ms (its redo stays durable here). */
int coral_redo_gate_wait(struct coral_redo *r, uint64_t lsn, int timeout_ms);
/* replicad: the gate is on at lsn, or off; waiters are woken when it moves. */
void coral_redo_gate_set(struct coral_redo *r, bool on, uint64_t lsn);
/* The same without waiting: 0 if durable, the error coral_redo_wait would give now, else
 * the log writer is asked to write up to lsn and CORAL_EPENDING. */
int coral_redo_poll(struct coral_redo *r, uint64_t lsn);
/* The log writer: stopped (or resumed) because the node is fenced (unfenced); waiters are
 * woken to see it. */
void coral_redo_set_fenced(struct coral_redo *r, bool fenced);

/* The log writer, while fenced, after an eviction of the incarnation it wrote under: what
 * was appended and is not durable is dropped (the next record goes where it began); returns
 * its bytes. Its waiters have been told CORAL_EFENCED, and libcoral fails their commits
 * (evicted since the transaction began). */
uint64_t coral_redo_drop_tail(struct coral_redo *r);

/* Wakes a log writer waiting for work (shutdown). */
void coral_redo_kick(struct coral_redo *r);

/* For the log writer (replicad/log_writer.c). The thread's directory under shared_dir, and a
 * segment's file in it. */
int coral_redo_thread_dir(const char *shared_dir, uint32_t thread, char *out, size_t n);
void coral_redo_seg_path(const char *dir, uint64_t seg, char *out, size_t n);
/* n bytes of the ring from lsn; the ring's bytes at lsn, and how many follow contiguously. */
void coral_redo_ring_read(const struct coral_redo *r, uint64_t lsn, void *dst, size_t n);
const uint8_t *coral_redo_ring_at(const struct coral_redo *r, uint64_t lsn, uint64_t *contiguous);
/* A new ring goes on where the thread's files end. */
void coral_redo_start_at(struct coral_redo *r, uint64_t end);
/* Sleeps up to wait_ms unless work_seq has moved past seq. */
void coral_redo_await_work(struct coral_redo *r, uint32_t seq, int wait_ms);
/* The writer failed to write segment seg (code a CORAL_E*), or wrote again (code 0):
 * waiters are woken to see it. */
void coral_redo_io_error(struct coral_redo *r, int code, uint64_t seg);
/* Everything up to lsn is durable (its highest SCN scn, commits commits, after a sync of
 * sync_us): waiters are woken and the counters kept. */
void coral_redo_made_durable(struct coral_redo *r, uint64_t lsn, uint64_t scn, uint64_t commits, uint64_t sync_us);

/* The thread's checkpoint kept in its directory (SHARED_DIR/redo/thread_N/checkpoint): the
 * LSN recovery reads the thread from, about when that redo was written, and an SCN at least
 * the highest of the thread's records when it was written (a restarted node's SCN clock
 * starts above it, so that the thread stays in SCN order). Written whole
 * (a temporary file, fsync, rename, the directory fsync'd) by the log writer as lmsd moves
 * it; read by recovery and coralctl. A missing file is LSN 0 (read the whole thread). */
struct coral_redo_ckpt {
	uint32_t magic;        /* CORAL_REDO_CKPT_MAGIC */
	uint32_t thread;
	uint64_t lsn, ns;
	uint64_t scn;
	uint32_t pad;
	uint32_t crc;          /* CRC32C of the rest, this field zero */
};
#define CORAL_REDO_CKPT_MAGIC 0x54504b43u /* "CKPT" */
int coral_redo_ckpt_write(const char *thread_dir, uint32_t thread, uint64_t lsn, uint64_t ns, uint64_t scn,
			  char *err, size_t errsz);
int coral_redo_ckpt_read(const char *shared_dir, uint32_t thread, struct coral_redo_ckpt *out, char *err,
			 size_t errsz);

/* The thread's segment files: how many, and the first and last sequence numbers. */
int coral_redo_segments(const char *shared_dir, uint32_t thread, uint64_t *n, uint64_t *first, uint64_t *last);
/* The threads in shared_dir/redo (thread_N directories) into ids (at most max); how many. */
int coral_redo_threads(const char *shared_dir, uint32_t *ids, int max);

/* Reading a thread back (recovery, the log writer's start, coral-bank's check): calls fn for
 * every valid record from LSN from (a record's start: 0, or a checkpoint); stops at the end
 * of the files, at the first torn or damaged record, or when fn returns non-zero. Returns
 * records read, or < 0; *end_lsn gets the end of the last valid record. err says why it
 * stopped if that was not the end of the files (a record that is not whole, or whose header,
 * LSN or checksum is wrong: a torn last write, or damage), "" otherwise. If a whole record
 * follows the bad one (within 64 MiB), the thread is damaged in the middle: CORAL_ECORRUPT
 * (the records before it were visited), and err says where both are. */
typedef int (*coral_redo_visit_fn)(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes);
int64_t coral_redo_scan(const char *shared_dir, uint32_t thread, uint64_t segment_size, uint64_t from,
			coral_redo_visit_fn fn, void *arg, uint64_t *end_lsn, char *err, size_t errsz);
/* The old bytes of a change record with CORAL_REDO_F_UNDO (NULL without). */
static inline const uint8_t *coral_redo_undo(const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	return (rec->flags & CORAL_REDO_F_UNDO) ? bytes + rec->nbytes : NULL;
}

#endif

/* The log writer: group-commits the node's redo ring (SGA, libcommon/redo.h) to its redo
 * thread in shared storage, SHARED_DIR/redo/thread_N/SEQ.redo. Whatever has been appended
 * since the last sync goes out with one write per segment touched and one fdatasync; then
 * the durable LSN moves and every committer waiting for it is woken at once. */
#ifndef CORAL_REPLICAD_LOG_WRITER_H
#define CORAL_REPLICAD_LOG_WRITER_H

#include "redo.h"

#include <stdbool.h>
#include <stdint.h>

struct log_writer;

/* Opens the node's thread under shared_dir (creating it); a new ring (a new SGA) goes on
 * where the thread's files end, a torn last record cut off, and the node's SCN clock (if
 * not NULL) is raised above the thread's highest SCN. */
int log_writer_open(struct coral_redo *r, _Atomic uint64_t *clock, const char *shared_dir, uint32_t thread,
		    uint64_t segment_size, struct log_writer **out, char *err, size_t errsz);
/* Writes and syncs what is there; waits up to wait_ms for work when there is none. Returns
 * the number of bytes made durable, or a negative CORAL_E* code. */
int64_t log_writer_step(struct log_writer *w, int wait_ms);
void log_writer_close(struct log_writer *w);
/* Keeps lmsd's checkpoint (the SGA's) in the thread's directory if it moved: at most once a
 * second unless now; then removes the segments wholly below it. 0, or the error
 * (log_writer_error says which file). */
int log_writer_keep_ckpt(struct log_writer *w, bool now);
/* Segments removed so far. */
uint64_t log_writer_recycled(const struct log_writer *w);
/* A standby's slot (any thread): segments holding LSN lsn or later are not recycled, even
 * below the checkpoint, until the standby has them; UINT64_MAX: no slot. */
void log_writer_hold(struct log_writer *w, uint64_t lsn);
/* The last failure, with its cause and file ("writing SEG: No space left on device"). */
const char *log_writer_error(const struct log_writer *w);

#endif

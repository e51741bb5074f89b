/* A standby's apply, its core (no I/O): which changes of the primary's redo threads may be
 * applied to the standby's copy of the data files, and when.
 *
 * Only committed transactions are applied, whole, and only once every transaction that
 * committed before them (by SCN) is known: the copy then always holds exactly the
 * transactions whose commit SCN is at most the applied SCN, a state the primary was in (a
 * consistent cut: SCNs are a Lamport clock, so nothing a transaction saw has a higher SCN).
 *
 * How: the records of each thread are added in LSN order, which is also SCN order (sessions
 * take SCNs under the redo latch). A thread's horizon is the highest SCN up to which every
 * one of its records is known: the last record added, or a mark the primary sent (an idle
 * thread: "every record of SCN at most S ends at or before L", with L added). The horizon of
 * the whole is the lowest of the primary's threads'. Changes are kept per transaction
 * (thread, session) until its commit record; a committed transaction is released once its
 * commit SCN is at most the horizon. A transaction that never commits (its node was lost and
 * instance recovery took it back on the primary, without redo) is never applied: by
 * libcoral's contract no committed change was made on top of it. A session's BEGIN while it
 * has an open transaction abandons that one (the primary's recovery took it back).
 *
 * Applying a released batch block by block (apply_block): the changes with an SCN above the
 * image's, in SCN order, so that applying again (after a restart, from the resume LSNs) does
 * nothing twice. */
#ifndef CORAL_REPLICAD_APPLY_H
#define CORAL_REPLICAD_APPLY_H

#include "redo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct apply;

struct apply_change {
	uint64_t scn;
	uint64_t block;
	uint32_t file;
	uint32_t offset;     /* in the block's payload */
	uint32_t nbytes;
	const uint8_t *bytes;
};

struct apply_stats {
	uint64_t records, changes, commits;
	uint64_t txns_applied, changes_applied;   /* released */
	uint64_t txns_abandoned;                  /* a BEGIN of the same session came first */
	uint64_t changes_before;                  /* of transactions applied before the resume LSN */
	uint64_t disorder;                        /* records with an SCN below their thread's horizon */
	uint64_t open_txns, pending_bytes;        /* held now */
	uint64_t applied_scn;                     /* the copy holds every transaction up to it */
};

/* max_bytes bounds the bytes of changes held for open and unreleased transactions
 * (CORAL_EFULL past it). */
struct apply *apply_new(uint64_t max_bytes);
void apply_free(struct apply *a);

/* Thread t belongs to the primary: the horizon waits for it. */
void apply_thread(struct apply *a, uint32_t t);
/* Where thread t is read from: its resume LSN (below; 0 for a new copy). */
void apply_start(struct apply *a, uint32_t t, uint64_t lsn, uint64_t applied_scn);
/* A record of thread t (in LSN order from where its reading started). CORAL_EFULL, or
 * CORAL_EINVAL for a thread not declared. */
int apply_add(struct apply *a, uint32_t t, const struct coral_redo_rec *rec, const uint8_t *bytes);
/* The primary's mark of thread t, once every record up to its LSN is added. */
void apply_mark(struct apply *a, uint32_t t, uint64_t scn);
/* The horizon, and (if not NULL) the thread holding it lowest. */
uint64_t apply_horizon(const struct apply *a, uint32_t *lowest);

/* The changes of every committed transaction up to the horizon, sorted by (file, block,
 * SCN): how many, in *out (valid until apply_done). 0: nothing to apply (apply_done still
 * moves the applied SCN to the horizon). A batch not done is handed out again. */
size_t apply_release(struct apply *a, const struct apply_change **out);
/* The SCN the released batch brings the copy to. A copy written in part (a crash in the
 * middle of a batch) holds some of its transactions and not others: it is a state the
 * primary was in again only once a later batch reaches this SCN, which the caller must
 * keep (the wiring writes it to its state file before the batch). */
uint64_t apply_batch_scn(const struct apply *a);
/* The batch was applied and made durable: its memory is freed, the applied SCN moves. */
void apply_done(struct apply *a);

/* Where thread t must be read again from after a restart so that every transaction not yet
 * applied is seen whole (the first record of the oldest held, else the end of what was
 * added). */
uint64_t apply_resume_lsn(const struct apply *a, uint32_t t);
const struct apply_stats *apply_stats(const struct apply *a);

/* Applies the changes [first, first + n) of one block (sorted by SCN) to its image (block_size
 * bytes, header included): those above the image's SCN. The image's SCN becomes the last
 * one applied. CORAL_ECORRUPT if a change does not fit the payload (the image is left as it
 * was). How many were applied. */
int apply_block(const struct apply_change *first, size_t n, uint8_t *image, uint32_t block_size);

#endif

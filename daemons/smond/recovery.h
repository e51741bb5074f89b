/* Instance recovery's core (smond): what the redo threads of lost nodes say must be done to
 * the blocks, and doing it to images in memory. No I/O but the reading of threads; no event
 * loop. Used by smond and by the tests.
 *
 * First pass: every record of each thread from its checkpoint to its last valid record is
 * added (recovery_add_record, or recovery_read_thread). Changes are grouped into
 * transactions per (thread, session): a change flagged BEGIN opens one, a commit record
 * closes it as committed; a transaction with no commit record by the end of its thread (or
 * followed by another BEGIN of the same session) never committed. recovery_plan then sorts
 * the changes by block and SCN: the blocks that have any are the recovery set.
 *
 * Second pass, block by block (recovery_apply): from the newest image there is (disk, or a
 * survivor's past image), every change with a higher SCN is applied in SCN order (threads
 * merged: a block's SCNs are ordered across nodes, as a block carries its SCN from node to
 * node); then the changes of transactions that never committed are taken back, newest first,
 * from the old bytes their records carry. By libcoral's contract (coral.h) nothing was
 * changed on top of an uncommitted change, so the old bytes are exactly what to restore (if
 * a committed change was made after one all the same, that one stays: committed work is never
 * taken away). A
 * block that was rolled back gets an SCN above every SCN of the threads read. Applying is
 * safe to repeat: changes at or below the image's SCN are skipped, and a rollback restores
 * the same bytes again. */
#ifndef SMOND_RECOVERY_H
#define SMOND_RECOVERY_H

#include "redo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct recovery;

struct recovery_stats {
	uint64_t records, bytes;       /* read from the threads */
	uint64_t changes, commits;
	uint64_t txns, txns_open;      /* transactions seen; those that never committed */
	uint64_t blocks;               /* the recovery set (after recovery_plan) */
	uint64_t applied, skipped;     /* changes applied / already in the image */
	uint64_t undone;               /* changes taken back */
	uint64_t kept;                 /* uncommitted changes left: committed ones were made on them */
	uint64_t max_scn;
};

/* max_bytes bounds the change bytes held in memory (CORAL_EFULL past it). */
struct recovery *recovery_new(uint64_t max_bytes);
void recovery_free(struct recovery *r);

/* Before its records: thread `thread` is a running node's (online recovery of another): its
 * transactions open at its end are still running, never taken back. */
int recovery_set_live(struct recovery *r, uint32_t thread);

/* First pass. A record of thread `thread` (records of one thread in LSN order). */
int recovery_add_record(struct recovery *r, uint32_t thread, const struct coral_redo_rec *rec, const uint8_t *bytes);
/* Reads thread `thread` from LSN from to its last valid record; *end gets that record's end,
 * why (if not NULL) why it stopped where it did ("" at the files' end). Records read, or < 0. */
int64_t recovery_read_thread(struct recovery *r, const char *shared_dir, uint32_t thread, uint64_t segment_size,
			     uint64_t from, uint64_t *end, char *why, size_t whysz);

/* Ends the first pass: sorts the changes by (file, block, SCN). Returns the number of blocks
 * in the recovery set; recovery_block names the i-th. */
uint64_t recovery_plan(struct recovery *r);
void recovery_block(const struct recovery *r, uint64_t i, uint32_t *file, uint64_t *block);
/* Whether (file, block) is in the recovery set (after recovery_plan); its index, or -1. */
bool recovery_needs(const struct recovery *r, uint32_t file, uint64_t block);
int64_t recovery_find(const struct recovery *r, uint32_t file, uint64_t block);

/* Second pass for the i-th block: image is the block (block_size bytes, header included),
 * the newest one there is; it is brought up to date and rolled back in place, and its header
 * SCN set (the caller seals and writes it). Changes that do not fit the block are an error
 * (CORAL_ECORRUPT), and the image is then left as it was. Safe to call from several threads
 * for different blocks. */
int recovery_apply(struct recovery *r, uint64_t i, uint8_t *image, uint32_t block_size);

const struct recovery_stats *recovery_stats(const struct recovery *r);

#endif

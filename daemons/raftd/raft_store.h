/* raftd's durable storage in a node-local directory: the Raft log in segment files of
 * checksummed records, and the latest snapshot in a file of its own.
 *
 * A record is [u32 length][u32 CRC32C][u8 kind][payload]; kinds are an entry (term, index,
 * type, data) and the hard state (term, vote, commit). The hard state rides in the log so
 * that term and vote are written atomically (one checksummed record) and made durable by
 * the same sync as the entries. At start the segments are read in order: a last record cut
 * short or damaged is a torn write and is truncated; a bad record anywhere before that
 * refuses to start, as does a log that ends before the committed index. Committed data is
 * never silently dropped. Snapshots are written to a temporary file, synced, renamed, and
 * the directory synced. */
#ifndef CORAL_RAFTD_RAFT_STORE_H
#define CORAL_RAFTD_RAFT_STORE_H

#include "raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct raft_store;

struct raft_store_stats {
	uint64_t segments, log_bytes, entries, first_index, last_index;
	uint64_t syncs, bytes_written, torn_bytes_truncated;
};

/* Opens (creating if needed) and reads the directory. On error *out is NULL and err says
 * what is wrong and what to do. */
int raft_store_open(struct raft_store **out, const char *dir, size_t segment_bytes, char *err,
		    size_t errsz);
void raft_store_close(struct raft_store *s);

/* What was recovered, for raft_init(). Valid until the next call that changes the store. */
void raft_store_boot(const struct raft_store *s, struct raft_boot *boot);
/* True if the store holds nothing yet (a node that has never run). */
bool raft_store_empty(const struct raft_store *s);

/* Appends entries (cutting the log at entries[0].index first if it holds that index) and,
 * if hs is not NULL, the hard state. Written, not yet durable: call raft_store_sync. */
int raft_store_append(struct raft_store *s, const struct raft_entry *entries, size_t n,
		      const struct raft_hard_state *hs);
/* One fdatasync for everything appended since the last. */
int raft_store_sync(struct raft_store *s);

/* Makes snap durable, then drops log segments wholly covered by it (all of them if
 * log_reset). */
int raft_store_save_snapshot(struct raft_store *s, const struct raft_snapshot *snap, bool log_reset);

void raft_store_stats(const struct raft_store *s, struct raft_store_stats *st);
const char *raft_store_error(const struct raft_store *s);

#endif

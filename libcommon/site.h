/* A site's epoch and its fence: replicad writes them, coralctl standby rejoin reads them.
 * The epoch, SHARED/site_epoch (a number; 1 when the file is missing), goes up by one at each
 * takeover (a failover or a switchover), written by the standby that takes over. An old
 * primary that learns of it (its standby refuses it, saying the epoch it took over at, or
 * tells it at the end of a switchover) writes SHARED/fenced (the epoch and why) and from then
 * on takes no change and no commit, across restarts, until coralctl standby rejoin makes it a
 * standby of the new primary. */
#ifndef CORAL_SITE_H
#define CORAL_SITE_H

#include <stddef.h>
#include <stdint.h>

uint64_t coral_site_epoch_read(const char *shared_dir);
int coral_site_epoch_write(const char *shared_dir, uint64_t epoch, char *err, size_t errsz);
/* The fence: its epoch (0: not fenced) and why. */
uint64_t coral_site_fence_read(const char *shared_dir, char *why, size_t whysz);
int coral_site_fence_write(const char *shared_dir, uint64_t epoch, const char *why, char *err, size_t errsz);
/* The witness ([replication] witness_file): the last takeover, "EPOCH CLUSTER", written whole.
 * read: 0 with them, CORAL_ENOENT when there is none yet, CORAL_EIO when it cannot be read
 * (the site that wrote it unreachable), CORAL_ECORRUPT. */
int coral_site_witness_read(const char *path, uint64_t *epoch, char *cluster, size_t clustersz);
int coral_site_witness_write(const char *path, uint64_t epoch, const char *cluster, char *err, size_t errsz);

#endif

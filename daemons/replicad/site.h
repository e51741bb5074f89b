/* A site's epoch and its fence (replicad). The epoch, SHARED/site_epoch (a number; 1 when
 * the file is missing), goes up by one at each failover, written by the standby that takes
 * over. An old primary that learns of a failover (its standby refuses it, saying the epoch it
 * took over at) writes SHARED/fenced (the epoch and why) and from then on takes no change and
 * no commit, across restarts, until it is made a standby of the new primary. */
#ifndef CORAL_REPLICAD_SITE_H
#define CORAL_REPLICAD_SITE_H

#include <stddef.h>
#include <stdint.h>

uint64_t site_epoch_read(const char *shared_dir);
int site_epoch_write(const char *shared_dir, uint64_t epoch, char *err, size_t errsz);
/* The fence: its epoch (0: not fenced) and why. */
uint64_t site_fence_read(const char *shared_dir, char *why, size_t whysz);
int site_fence_write(const char *shared_dir, uint64_t epoch, const char *why, char *err, size_t errsz);

#endif

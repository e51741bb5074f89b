/* lmsd's own changes to the buffer cache (see cache.c). */
#ifndef CORAL_LMSD_CACHE_H
#define CORAL_LMSD_CACHE_H

#include "bufcache.h"
#include "grd.h"

#include <stdint.h>

/* Links buffer i (not valid) into the block's chain; unlinks it and clears it. Both take the
 * chain latch. */
void lmsd_cache_link(struct coral_cache *c, uint32_t i, uint32_t file, uint64_t block);
void lmsd_cache_unlink(struct coral_cache *c, uint32_t i);
/* Releases the pins of sessions whose process is gone (or whose pid names another process
 * now) and frees their slots; the number of sessions found dead (*pins: pins released). A
 * dead session with a transaction open keeps its slot and X pins: it is marked for smond,
 * which takes the transaction back first (smond/deadtxn.c). */
int lmsd_sess_reap(struct coral_cache *c, uint64_t *pins);
/* Whether a session revoked by the resource manager can be reclaimed now (no call of it under
 * way, no transaction of it left to smond): a cheap look, every 50 ms, so that what an ended
 * session held goes then rather than at the next reap (once a second). */
bool lmsd_sess_revoke_pending(struct coral_cache *c);

#endif

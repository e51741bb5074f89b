/* lmsd's log waiter: a GCS core must not ship or write back an image before the redo that
 * made it is durable, and lmsd's event loop must not stop while the log writer works (or
 * cannot write at all). A force here asks the log writer and returns at once; a thread waits
 * for the redo and wakes the loop through an eventfd when it is durable, or when the writer
 * has failed for [cache] log_error_ms. */
#ifndef CORAL_LMSD_LOGWAIT_H
#define CORAL_LMSD_LOGWAIT_H

#include "redo.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct lmsd_logwait;

/* on_ready runs in the loop's thread after the redo asked for is durable (or has failed). */
struct lmsd_logwait *lmsd_logwait_new(struct event_base *base, struct coral_redo *redo,
				      void (*on_ready)(void *arg), void *arg, char *err, size_t errsz);
/* 0 if the redo up to lsn is durable, the log writer's error if it cannot write, else
 * CORAL_EPENDING: asked for, on_ready follows. */
int lmsd_logwait_force(struct lmsd_logwait *w, uint64_t lsn);
/* Forces that had to wait, and how long they waited in all (microseconds). */
void lmsd_logwait_stats(const struct lmsd_logwait *w, uint64_t *waits, uint64_t *wait_us);
void lmsd_logwait_free(struct lmsd_logwait *w);

#endif

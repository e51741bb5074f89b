/* lmsd's log waiter (see logwait.h) on a worker thread (worker.c): the loop asks, the worker
 * waits for the redo to be durable and the loop hears of it. One target LSN, the highest
 * asked for: redo is durable in order, so one wait covers every force below it. */
#include "logwait.h"
#include "worker.h"

#include "errors.h"
#include "util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct lmsd_logwait {
	struct coral_redo *redo;
	void (*on_ready)(void *arg);
	void *arg;
	struct lmsd_worker *w;
	pthread_mutex_t mu;
	uint64_t want;          /* the LSN to wait for */
	uint64_t asked_ns;      /* when the current wait was asked for */
	uint64_t waits, wait_us;
};

/* In the worker: until the highest LSN asked for is durable, or the log writer has failed
 * (coral_redo_wait gives its cause once it has lasted log_error_ms). */
static int wait_redo(void *arg, const _Atomic bool *stop)
{
	struct lmsd_logwait *lw = arg;
	int rc;
	for (;;) {
		pthread_mutex_lock(&lw->mu);
		uint64_t want = lw->want;
		pthread_mutex_unlock(&lw->mu);
		rc = coral_redo_wait(lw->redo, want, 100);  /* in slices, so that a stop is seen */
		if (rc != CORAL_ETIMEDOUT || atomic_load(stop))
			break;
	}
	pthread_mutex_lock(&lw->mu);
	lw->waits++;
	lw->wait_us += (coral_now_mono_ns() - lw->asked_ns) / 1000u;
	lw->asked_ns = coral_now_mono_ns();
	pthread_mutex_unlock(&lw->mu);
	return rc;
}

static void ready(void *arg, int rc)
{
	(void)rc;  /* the core asks again: durable, or the writer's error at once */
	struct lmsd_logwait *lw = arg;
	lw->on_ready(lw->arg);
}

struct lmsd_logwait *lmsd_logwait_new(struct event_base *base, struct coral_redo *redo,
				      void (*on_ready)(void *arg), void *arg, char *err, size_t errsz)
{
	struct lmsd_logwait *lw = calloc(1, sizeof(*lw));
	if (lw == NULL)
		return NULL;
	lw->redo = redo;
	lw->on_ready = on_ready;
	lw->arg = arg;
	pthread_mutex_init(&lw->mu, NULL);
	lw->w = lmsd_worker_new(base, "log waiter", wait_redo, ready, lw, err, errsz);
	if (lw->w == NULL) {
		lmsd_logwait_free(lw);
		return NULL;
	}
	return lw;
}

int lmsd_logwait_force(struct lmsd_logwait *lw, uint64_t lsn)
{
	int rc = coral_redo_poll(lw->redo, lsn);
	if (rc != CORAL_EPENDING)
		return rc;
	pthread_mutex_lock(&lw->mu);
	bool more = lsn > lw->want;
	if (more)
		lw->want = lsn;
	if (!lmsd_worker_busy(lw->w))
		lw->asked_ns = coral_now_mono_ns();
	pthread_mutex_unlock(&lw->mu);
	if (more || !lmsd_worker_busy(lw->w))
		lmsd_worker_kick(lw->w);
	return CORAL_EPENDING;
}

void lmsd_logwait_stats(const struct lmsd_logwait *lw, uint64_t *waits, uint64_t *wait_us)
{
	struct lmsd_logwait *m = (struct lmsd_logwait *)lw;
	pthread_mutex_lock(&m->mu);
	*waits = lw->waits;
	*wait_us = lw->wait_us;
	pthread_mutex_unlock(&m->mu);
}

void lmsd_logwait_free(struct lmsd_logwait *lw)
{
	if (lw == NULL)
		return;
	lmsd_worker_free(lw->w);
	pthread_mutex_destroy(&lw->mu);
	free(lw);
}

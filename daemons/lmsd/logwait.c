/* lmsd's log waiter (see logwait.h): the event loop asks, a thread waits for the redo to be
 * durable and wakes the loop. One thread, one target LSN (the highest asked for): redo is
 * durable in order, so one wait covers every force below it. */
#include "logwait.h"

#include "errors.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct lmsd_logwait {
	struct coral_redo *redo;
	void (*on_ready)(void *arg);
	void *arg;
	int efd;
	struct event *ev;
	pthread_t thr;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t want;          /* the LSN to wait for; 0: none */
	uint64_t asked_ns;      /* when the wait for want began */
	bool stop;
	uint64_t waits, wait_us;
};

static void *waiter(void *arg)
{
	struct lmsd_logwait *w = arg;
	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		uint64_t want = w->want;
		if (want == 0) {
			pthread_cond_wait(&w->cv, &w->mu);
			continue;
		}
		pthread_mutex_unlock(&w->mu);
		/* in slices, so that a stop is seen; the writer's failure ends the wait too */
		int rc = coral_redo_wait(w->redo, want, 100);
		pthread_mutex_lock(&w->mu);
		if (rc == CORAL_ETIMEDOUT)
			continue;
		w->waits++;
		w->wait_us += (coral_now_mono_ns() - w->asked_ns) / 1000u;
		if (w->want <= want)
			w->want = 0;
		else
			w->asked_ns = coral_now_mono_ns();
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: the loop has a wake-up pending already */
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void on_efd(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct lmsd_logwait *w = arg;
	uint64_t n;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: woken already */
	}
	w->on_ready(w->arg);
}

struct lmsd_logwait *lmsd_logwait_new(struct event_base *base, struct coral_redo *redo,
				      void (*on_ready)(void *arg), void *arg, char *err, size_t errsz)
{
	struct lmsd_logwait *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	w->redo = redo;
	w->on_ready = on_ready;
	w->arg = arg;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		snprintf(err, errsz, "eventfd: %s", strerror(errno));
		lmsd_logwait_free(w);
		return NULL;
	}
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, on_efd, w);
	if (w->ev == NULL || event_add(w->ev, NULL) != 0) {
		snprintf(err, errsz, "cannot watch the log waiter's eventfd");
		lmsd_logwait_free(w);
		return NULL;
	}
	int rc = pthread_create(&w->thr, NULL, waiter, w);
	if (rc != 0) {
		snprintf(err, errsz, "cannot start the log waiter thread: %s", strerror(rc));
		lmsd_logwait_free(w);
		return NULL;
	}
	w->started = true;
	return w;
}

int lmsd_logwait_force(struct lmsd_logwait *w, uint64_t lsn)
{
	int rc = coral_redo_poll(w->redo, lsn);
	if (rc != CORAL_EPENDING)
		return rc;
	pthread_mutex_lock(&w->mu);
	if (w->want == 0)
		w->asked_ns = coral_now_mono_ns();
	if (lsn > w->want) {
		w->want = lsn;
		pthread_cond_signal(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return CORAL_EPENDING;
}

void lmsd_logwait_stats(const struct lmsd_logwait *w, uint64_t *waits, uint64_t *wait_us)
{
	struct lmsd_logwait *m = (struct lmsd_logwait *)w;
	pthread_mutex_lock(&m->mu);
	*waits = w->waits;
	*wait_us = w->wait_us;
	pthread_mutex_unlock(&m->mu);
}

void lmsd_logwait_free(struct lmsd_logwait *w)
{
	if (w == NULL)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thr, NULL);
	}
	if (w->ev)
		event_free(w->ev);
	if (w->efd >= 0)
		close(w->efd);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}

/* lmsd's worker threads (see worker.h): a mutex and a condition variable to be kicked, an
 * eventfd to report back to the loop. */
#include "worker.h"

#include "errors.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct lmsd_worker {
	int (*run)(void *arg, const _Atomic bool *stop);
	void (*done)(void *arg, int rc);
	void *arg;
	char name[32];
	int efd;
	struct event *ev;
	pthread_t thr;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool kicked;            /* a job asked for and not yet begun */
	bool running;
	_Atomic bool stop;
	_Atomic int rc;         /* the last job's result */
	_Atomic bool busy;      /* kicked, running, or its done not yet called */
};

static void *thread_main(void *arg)
{
	struct lmsd_worker *w = arg;
	pthread_mutex_lock(&w->mu);
	while (!atomic_load(&w->stop)) {
		if (!w->kicked) {
			pthread_cond_wait(&w->cv, &w->mu);
			continue;
		}
		w->kicked = false;
		w->running = true;
		pthread_mutex_unlock(&w->mu);
		atomic_store(&w->rc, w->run(w->arg, &w->stop));
		pthread_mutex_lock(&w->mu);
		w->running = false;
		uint64_t one = 1;
		if (write(w->efd, &one, sizeof(one)) < 0) {
			/* the counter is saturated: a wake-up is pending already */
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void on_efd(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct lmsd_worker *w = arg;
	uint64_t n;
	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: woken already */
	}
	pthread_mutex_lock(&w->mu);
	bool more = w->kicked || w->running;
	pthread_mutex_unlock(&w->mu);
	if (!more)
		atomic_store(&w->busy, false);
	w->done(w->arg, atomic_load(&w->rc));
}

struct lmsd_worker *lmsd_worker_new(struct event_base *base, const char *name,
				    int (*run)(void *arg, const _Atomic bool *stop),
				    void (*done)(void *arg, int rc), void *arg, char *err, size_t errsz)
{
	struct lmsd_worker *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	w->run = run;
	w->done = done;
	w->arg = arg;
	coral_strlcpy(w->name, name, sizeof(w->name));
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		snprintf(err, errsz, "%s: eventfd: %s", name, strerror(errno));
		lmsd_worker_free(w);
		return NULL;
	}
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, on_efd, w);
	if (w->ev == NULL || event_add(w->ev, NULL) != 0) {
		snprintf(err, errsz, "%s: cannot watch its eventfd", name);
		lmsd_worker_free(w);
		return NULL;
	}
	int rc = pthread_create(&w->thr, NULL, thread_main, w);
	if (rc != 0) {
		snprintf(err, errsz, "%s: cannot start its thread: %s", name, strerror(rc));
		lmsd_worker_free(w);
		return NULL;
	}
	w->started = true;
	return w;
}

void lmsd_worker_kick(struct lmsd_worker *w)
{
	atomic_store(&w->busy, true);
	pthread_mutex_lock(&w->mu);
	w->kicked = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

bool lmsd_worker_busy(const struct lmsd_worker *w) { return atomic_load(&w->busy); }

void lmsd_worker_free(struct lmsd_worker *w)
{
	if (w == NULL)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->mu);
		atomic_store(&w->stop, true);
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

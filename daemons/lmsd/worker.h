/* A thread of lmsd's for what must not stop its event loop (waiting for the redo, syncing
 * data files): the loop kicks it, it runs its job, and the loop hears of the result through
 * an eventfd. One job at a time; a kick while it runs makes it run once more after. */
#ifndef CORAL_LMSD_WORKER_H
#define CORAL_LMSD_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct lmsd_worker;

/* run: in the thread; returns a CORAL_E* code (stop says the worker is being freed: return
 * soon). done: in the loop's thread, with what run returned. */
struct lmsd_worker *lmsd_worker_new(struct event_base *base, const char *name,
				    int (*run)(void *arg, const _Atomic bool *stop),
				    void (*done)(void *arg, int rc), void *arg, char *err, size_t errsz);
void lmsd_worker_kick(struct lmsd_worker *w);
/* Whether a job is asked for or under way (its done not yet called). */
bool lmsd_worker_busy(const struct lmsd_worker *w);
void lmsd_worker_free(struct lmsd_worker *w);

#endif

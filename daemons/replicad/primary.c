/* A primary node's standbys (repl.h, sender.h): one sender per standby named in
 * [replication] standby; the slot over all of them (the log writer recycles nothing a
 * standby still holding its slot lacks); the gate for this node's commits (gate.c) from the
 * standbys' acknowledgements, set in the SGA's redo section where sessions wait
 * (coral_redo_gate_wait), evaluated at every acknowledgement and every 100 ms, with
 * [replication] sync and the RPO read again each time (they are reloadable); the switches
 * of mode in the history. The log writer's thread kicks the set through an eventfd when it
 * made more durable. */
#include "gate.h"
#include "history.h"
#include "log_writer.h"
#include "repl.h"
#include "sender.h"
#include "site.h"

#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "redo.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct ship_set {
	struct coral_daemon *d;
	struct coral_redo *redo;
	struct log_writer *w;
	struct sender *s[CORAL_STANDBY_MAX];
	int n;
	int kick_fd;
	struct event *ev_kick;
	struct gate gate;
	char sync_seen[CORAL_STR_MAX];  /* [replication] sync as last evaluated */
	bool sync_known;
	char mode[CORAL_STR_MAX + 64], rpo[96];
	bool evaluating;
	uint64_t epoch;                  /* this site's epoch */
	uint64_t fenced;                 /* a failover happened at this epoch (0: none) */
	char fenced_why[512];
	bool opened;                     /* a standby answered, or open_wait_ms passed */
	uint64_t open_deadline_ns;
	uint64_t witness_ns;             /* [replication] witness_file last read */
	bool was_closed;                 /* found closed for a switchover at the start: a standby's
					  * answer opens it, not the witness */
};

static void witness_check(struct ship_set *set);

static void mode_text(struct ship_set *set, const struct gate_conf *c)
{
	if (c->spec.k == 0)
		snprintf(set->mode, sizeof(set->mode), "async");
	else
		snprintf(set->mode, sizeof(set->mode), "sync %s%s", set->d->conf.replication.sync,
			 set->gate.fallen ? ", fallen back to async" : "");
	set->rpo[0] = '\0';
	if (c->max_lag_bytes)
		snprintf(set->rpo, sizeof(set->rpo), "at most %llu bytes behind", (unsigned long long)c->max_lag_bytes);
	if (c->max_lag_ms)
		snprintf(set->rpo + strlen(set->rpo), sizeof(set->rpo) - strlen(set->rpo), "%sat most %llu ms behind",
			 set->rpo[0] ? ", " : "", (unsigned long long)c->max_lag_ms);
}

void ship_set_changed(struct ship_set *set)
{
	if (set == NULL || set->evaluating)
		return;
	set->evaluating = true;
	const struct coral_replication_conf *rc = &set->d->conf.replication;
	uint64_t durable = atomic_load(&set->redo->durable), now = coral_now_mono_ns();
	/* the slot: the lowest of the standbys that hold one */
	uint64_t hold = UINT64_MAX, from;
	for (int i = 0; i < set->n; i++)
		if (sender_slot(set->s[i], durable, &from) && from < hold)
			hold = from;
	log_writer_hold(set->w, hold);
	/* the gate */
	struct gate_conf c;
	memset(&c, 0, sizeof(c));
	char why[200];
	if (coral_sync_spec_parse(rc->sync, &c.spec, why, sizeof(why)) != 0)
		memset(&c.spec, 0, sizeof(c.spec)); /* the configuration was checked: not reached */
	c.fallback_ms = (uint64_t)rc->sync_fallback_ms;
	c.max_lag_bytes = (uint64_t)rc->max_lag_bytes;
	c.max_lag_ms = (uint64_t)rc->max_lag_ms;
	c.catch_up = (uint64_t)rc->chunk > 65536 ? (uint64_t)rc->chunk : 65536;
	if (!set->sync_known || strcmp(set->sync_seen, rc->sync) != 0) {
		if (set->sync_known)
			repl_history_add("sync changed", "[replication] sync: '%s' -> '%s'", set->sync_seen, rc->sync);
		set->sync_known = true;
		coral_strlcpy(set->sync_seen, rc->sync, sizeof(set->sync_seen));
		set->gate.fallen = false;
		set->gate.short_since_ns = 0;
	}
	struct gate_standby gs[CORAL_STANDBY_MAX];
	for (int i = 0; i < set->n; i++) {
		gs[i].name = sender_name(set->s[i]);
		gs[i].connected = sender_connected(set->s[i]);
		gs[i].acked = sender_acked(set->s[i]);
		gs[i].lag_ms = sender_lag_ms(set->s[i], now);
	}
	bool on;
	uint64_t lsn;
	witness_check(set);
	enum gate_event ev = gate_eval(&set->gate, &c, gs, set->n, durable, now, &on, &lsn);
	if (!set->opened) {
		/* starting: no commit until a standby has said whether it took over */
		bool heard = false;
		for (int i = 0; i < set->n; i++)
			heard = heard || sender_answered(set->s[i]);
		if (heard) {
			set->opened = true;
		} else if (now >= set->open_deadline_ns) {
			set->opened = true;
			log_warn("no standby answered within [replication] open_wait_ms (%lld): commits are taken without "
				 "knowing whether one took over", (long long)rc->open_wait_ms);
			repl_history_add("opened blind", "no standby answered within open_wait_ms (%lld ms): a failover "
					 "there would not be known here", (long long)rc->open_wait_ms);
		} else {
			on = true;
			lsn = 0;
		}
	}
	if (ev == GATE_FELL_BACK) {
		log_warn("commits fall back to asynchronous: %s", set->gate.why);
		repl_history_add("fell back", "%s", set->gate.why);
	} else if (ev == GATE_RESUMED) {
		log_notice("commits are synchronous again: %s", set->gate.why);
		repl_history_add("sync again", "%s", set->gate.why);
	}
	coral_redo_gate_set(set->redo, on, lsn);
	mode_text(set, &c);
	set->evaluating = false;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct ship_set *set = arg;
	(void)what;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug("eventfd: %s", strerror(errno));
	for (int i = 0; i < set->n; i++)
		sender_pump(set->s[i]);
	ship_set_changed(set);
}

/* The witness, once a second: a takeover newer than this site's epoch by another cluster
 * fences this one, even when its standby is out of reach; one that says nothing newer opens a
 * starting node at once (a witness not there yet is written, this site's epoch in it). */
static void witness_check(struct ship_set *set)
{
	const char *w = set->d->conf.replication.witness_file;
	uint64_t now = coral_now_mono_ns();
	if (w[0] == '\0' || set->fenced || (set->witness_ns && now - set->witness_ns < 1000000000ull))
		return;
	set->witness_ns = now;
	uint64_t e = 0;
	char who[256], err[CORAL_ERRMSG_MAX];
	const char *me = set->d->conf.cluster.name;
	int rc = coral_site_witness_read(w, &e, who, sizeof(who));
	if (rc == CORAL_ENOENT && coral_site_witness_write(w, set->epoch, me, err, sizeof(err)) == 0) {
		rc = 0;
		e = set->epoch;
		coral_strlcpy(who, me, sizeof(who));
	}
	if (rc == 0 && e > set->epoch && strcmp(who, me) != 0) {
		char why[600];
		snprintf(why, sizeof(why), "the witness %s says cluster %s took over at site epoch %llu", w, who,
			 (unsigned long long)e);
		ship_set_fence(set, e, why);
		return;
	}
	if (rc == 0 && !set->opened && !set->was_closed) {
		set->opened = true;
		log_info("the witness %s says no cluster took over after site epoch %llu: commits are taken", w,
			 (unsigned long long)set->epoch);
		repl_history_add("opened", "the witness %s knows of no takeover after site epoch %llu", w,
				 (unsigned long long)set->epoch);
	}
}

void ship_set_fence(struct ship_set *set, uint64_t epoch, const char *why)
{
	if (set->fenced >= epoch)
		return;
	char err[CORAL_ERRMSG_MAX];
	set->fenced = epoch;
	coral_strlcpy(set->fenced_why, why, sizeof(set->fenced_why));
	atomic_store(&set->redo->site_fenced, epoch);
	if (coral_site_fence_write(set->d->conf.storage.shared_dir, epoch, why, err, sizeof(err)) != 0)
		log_error("the fence cannot be kept in the shared storage (%s): it holds until replicad stops", err);
	log_error("this cluster was failed over from: %s; no change and no commit is taken from now on", why);
	repl_history_add("fenced", "%s", why);
}

uint64_t ship_set_epoch(const struct ship_set *set) { return set->epoch; }

void ship_set_kick(struct ship_set *set)
{
	if (set == NULL)
		return;
	uint64_t one = 1;
	if (write(set->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return;
}

struct ship_set *ship_set_new(struct coral_daemon *d, struct coral_redo *redo, struct log_writer *w, int *rc)
{
	const struct coral_replication_conf *rcf = &d->conf.replication;
	*rc = 0;
	if (strcmp(rcf->role, "primary") == 0)
		atomic_store(&redo->standby, 0u); /* none left from an earlier configuration */
	if (strcmp(rcf->role, "primary") != 0 || rcf->standby[0] == '\0') {
		coral_redo_gate_set(redo, false, 0); /* none left from an earlier configuration */
		char why[512];
		uint64_t f = coral_site_fence_read(d->conf.storage.shared_dir, why, sizeof(why));
		atomic_store(&redo->site_fenced, strcmp(rcf->role, "primary") == 0 ? f : 0);
		if (f && strcmp(rcf->role, "primary") == 0)
			log_error("this cluster was failed over from (site epoch %llu: %s): no change and no commit is taken",
				  (unsigned long long)f, why);
		return NULL;
	}
	struct ship_set *set = calloc(1, sizeof(*set));
	if (set == NULL) {
		*rc = CORAL_ENOMEM;
		return NULL;
	}
	set->d = d;
	set->redo = redo;
	set->w = w;
	set->epoch = coral_site_epoch_read(d->conf.storage.shared_dir);
	set->fenced = coral_site_fence_read(d->conf.storage.shared_dir, set->fenced_why, sizeof(set->fenced_why));
	atomic_store(&redo->site_fenced, set->fenced);
	/* a switchover the replicad before this one was in: the standby abandoned it when the
	 * connection broke, or took over, which its answer to the next hello says (commits wait
	 * for that answer: open_wait_ms) */
	if (atomic_load(&redo->closed) && !set->fenced) {
		set->was_closed = true;
		coral_redo_close(redo, false);
		log_notice("the thread was closed for a switchover when replicad stopped: open again (a standby that took "
			   "over says so at the next hello, before any commit)");
	}
	if (set->fenced) {
		log_error("this cluster was failed over from (site epoch %llu: %s): no change and no commit is taken",
			  (unsigned long long)set->fenced, set->fenced_why);
		repl_history_add("fenced", "at the start, from the shared storage: site epoch %llu: %s",
				 (unsigned long long)set->fenced, set->fenced_why);
	}
	set->open_deadline_ns = coral_now_mono_ns() + (uint64_t)rcf->open_wait_ms * 1000000ull;
	set->opened = rcf->open_wait_ms == 0;
	set->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	set->ev_kick = set->kick_fd >= 0 ? event_new(d->base, set->kick_fd, EV_READ | EV_PERSIST, on_kick, set) : NULL;
	if (set->ev_kick == NULL) {
		*rc = CORAL_ESYS;
		ship_set_free(set);
		return NULL;
	}
	event_add(set->ev_kick, NULL);
	/* until each standby says what it has, everything the thread holds is kept (each slot's
	 * bound still applies) */
	log_writer_hold(w, 0);
	static char hosts[CORAL_STANDBY_MAX][CORAL_STR_MAX];
	int ports[CORAL_STANDBY_MAX];
	char why[200];
	int n = coral_standby_list(rcf->standby, hosts, ports, CORAL_STANDBY_MAX, why, sizeof(why));
	for (int i = 0; i < n && *rc == 0; i++)
		if ((set->s[set->n] = sender_new(d, set, redo, hosts[i], ports[i], rc)) != NULL)
			set->n++;
	if (*rc != 0) {
		ship_set_free(set);
		return NULL;
	}
	ship_set_changed(set);
	return set;
}

void ship_set_free(struct ship_set *set)
{
	if (set == NULL)
		return;
	for (int i = 0; i < set->n; i++)
		sender_free(set->s[i]);
	if (set->ev_kick)
		event_free(set->ev_kick);
	if (set->kick_fd >= 0)
		close(set->kick_fd);
	free(set);
}

size_t ship_set_threads(struct ship_set *set, Coral__StandbyThread *out, size_t max)
{
	if (set == NULL)
		return 0;
	size_t k = 0;
	for (int i = 0; i < set->n && k < max; i++)
		sender_status(set->s[i], &out[k++]);
	return k;
}

void ship_set_commit(struct ship_set *set, Coral__StandbyCommit *o)
{
	coral__standby_commit__init(o);
	if (set == NULL)
		return;
	ship_set_changed(set);
	struct coral_redo *r = set->redo;
	o->mode = set->mode;
	o->rpo = set->rpo;
	o->gate_on = atomic_load(&r->gate_on) != 0;
	o->gate_lsn = atomic_load(&r->gate_lsn);
	o->durable = atomic_load(&r->durable);
	o->waiting = atomic_load(&r->gate_waiters);
	o->waits = atomic_load(&r->gate_waits);
	o->wait_us = atomic_load(&r->gate_wait_us);
	o->timeouts = atomic_load(&r->gate_timeouts);
	o->fallen_back = set->gate.fallen;
	o->switches = set->gate.switches;
	o->last_switch = set->gate.why;
	o->site_epoch = set->epoch;
	o->fenced_epoch = set->fenced;
	o->fenced_why = set->fenced_why;
	o->opened = set->opened;
	o->closed_at = atomic_load(&r->closed) ? atomic_load(&r->tail) : 0;
}

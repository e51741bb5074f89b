/* A switchover, on the standby (coralctl standby switchover): the primary's nodes close their
 * threads over the replication connections (each says where its thread ends), the standby
 * waits until it has every thread durable to that end, then takes over as a failover does
 * (everything applied, the copy's files its own, the next site epoch) with nothing missing;
 * the old primary's nodes are told and fence themselves; this cluster is the primary from
 * then on (SHARED/role), and its replicad starts again in that role. A connection that breaks
 * before the takeover, or wait_ms passing, abandons it: the primary's nodes are told to open
 * their threads again (a node that did not hear it opens at its next welcome).
 *
 *   closing   step 1 sent to every thread the primary has; each node's answer (the end)
 *   taking    every end durable here: applier_failover
 *   done      step 2 (the epoch) sent; answered; SHARED/role = primary */
#include "repl.h"
#include "switchover.h"

#include "ctl.pb-c.h"
#include "daemon.h"
#include "errors.h"
#include "history.h"
#include "log.h"
#include "util.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct switchover {
	struct coral_daemon *d;
	struct receiver *r;
	struct applier *a;
	struct event *tick;
	bool active;
	uint64_t conn_id, req_id;      /* coralctl's request, answered at the end */
	uint64_t deadline_ns, started_ns;
	uint32_t threads[CORAL_MAX_NODES];
	uint32_t nthreads;
	uint64_t conn[CORAL_MAX_NODES + 1]; /* each thread's connection when it began */
};

static void answer(struct switchover *s, int rc, const char *msg)
{
	if (rc != 0) {
		coral_daemon_answer_error(s->d, s->conn_id, s->req_id, rc, "%s", msg);
		return;
	}
	Coral__StandbyActionReply ar = CORAL__STANDBY_ACTION_REPLY__INIT;
	ar.result = (char *)msg;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_STANDBY_SWITCHOVER;
	resp.standby_switchover = &ar;
	coral_daemon_answer(s->d, s->conn_id, s->req_id, &resp);
}

/* Nothing happened: the primary's nodes open their threads again. */
static void abandon(struct switchover *s, int rc, const char *why)
{
	for (uint32_t i = 0; i < s->nthreads; i++)
		receiver_switch_send(s->r, s->threads[i], 3, 0, why);
	s->active = false;
	evtimer_del(s->tick);
	char msg[CORAL_ERRMSG_MAX];
	snprintf(msg, sizeof(msg), "the switchover is abandoned: %s; the primary takes commits again", why);
	log_warn("%s", msg);
	repl_history_add("switchover", "abandoned: %s", why);
	answer(s, rc, msg);
}

static void take_over(struct switchover *s)
{
	char msg[CORAL_ERRMSG_MAX];
	int rc = applier_failover(s->a, msg, sizeof(msg));
	if (rc != 0) {
		char why[CORAL_ERRMSG_MAX + 64];
		snprintf(why, sizeof(why), "the takeover failed (%s)", msg);
		abandon(s, rc, why);
		return;
	}
	uint64_t epoch = applier_took_over(s->a);
	char why[128];
	snprintf(why, sizeof(why), "standby %s took over", s->d->conf.cluster.name);
	uint32_t told = 0;
	for (uint32_t i = 0; i < s->nthreads; i++)
		told += receiver_switch_send(s->r, s->threads[i], 2, epoch, why) == 0;
	s->active = false;
	evtimer_del(s->tick);
	uint64_t ms = (coral_now_mono_ns() - s->started_ns) / 1000000ull;
	char out[CORAL_ERRMSG_MAX + 256];
	snprintf(out, sizeof(out),
		 "switched over in %llu ms: this cluster is the primary at site epoch %llu with every commit of "
		 "cluster %s (each of its %u threads closed and here to its end); %u of its nodes told to fence "
		 "themselves (the others learn it when they reach this cluster); replicad starts again to ship "
		 "this cluster's redo to the standbys it names",
		 (unsigned long long)ms, (unsigned long long)epoch, s->d->conf.replication.primary_cluster, s->nthreads,
		 told);
	log_notice("%s", out);
	repl_history_add("switchover", "took over from %s at site epoch %llu in %llu ms",
			 s->d->conf.replication.primary_cluster, (unsigned long long)epoch, (unsigned long long)ms);
	answer(s, 0, out);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct switchover *s = arg;
	(void)fd, (void)what;
	if (!s->active)
		return;
	uint32_t ready = 0;
	char why[256];
	for (uint32_t i = 0; i < s->nthreads; i++) {
		uint32_t t = s->threads[i];
		uint64_t conn, end, durable;
		bool r;
		receiver_switch_state(s->r, t, &conn, &r, &end, &durable);
		if (conn != s->conn[t]) {
			snprintf(why, sizeof(why), "the connection of thread %u broke", t);
			abandon(s, CORAL_ECONN, why);
			return;
		}
		ready += r && durable >= end;
	}
	if (ready == s->nthreads) {
		take_over(s);
		return;
	}
	if (coral_now_mono_ns() > s->deadline_ns) {
		snprintf(why, sizeof(why), "%u of the primary's %u threads were closed and here to their end in time",
			 ready, s->nthreads);
		abandon(s, CORAL_ETIMEDOUT, why);
		return;
	}
	struct timeval tv = {0, 10000};
	evtimer_add(s->tick, &tv);
}

struct switchover *switchover_new(struct coral_daemon *d, struct receiver *r, struct applier *a)
{
	if (r == NULL || a == NULL)
		return NULL;
	struct switchover *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->d = d;
	s->r = r;
	s->a = a;
	s->tick = evtimer_new(d->base, on_tick, s);
	if (s->tick == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void switchover_free(struct switchover *s)
{
	if (s == NULL)
		return;
	event_free(s->tick);
	free(s);
}

int switchover_start(struct switchover *s, uint64_t conn_id, uint64_t req_id, uint32_t wait_ms, char *msg,
		     size_t msgsz)
{
	if (s == NULL) {
		snprintf(msg, msgsz, "this node is not a standby ([replication] role)");
		return CORAL_EINVAL;
	}
	if (s->active) {
		snprintf(msg, msgsz, "a switchover is under way already");
		return CORAL_EBUSY;
	}
	if (applier_took_over(s->a)) {
		snprintf(msg, msgsz, "this standby took over already, at site epoch %llu",
			 (unsigned long long)applier_took_over(s->a));
		return CORAL_EEXIST;
	}
	if (!applier_applying(s->a)) {
		snprintf(msg, msgsz, "the standby is not applying (not seeded, seeding, or finished: coralctl standby "
			 "status): a switchover needs a copy that follows the primary");
		return CORAL_ENOTRUNNING;
	}
	struct standby_feed *f = receiver_feed(s->r);
	s->nthreads = 0;
	char missing[128] = "";
	pthread_mutex_lock(&f->mu);
	for (uint32_t t = 1; t <= CORAL_MAX_NODES; t++)
		if (f->known[t])
			s->threads[s->nthreads++] = t;
	pthread_mutex_unlock(&f->mu);
	for (uint32_t i = 0; i < s->nthreads; i++) {
		uint64_t end, durable;
		bool r;
		receiver_switch_state(s->r, s->threads[i], &s->conn[s->threads[i]], &r, &end, &durable);
		if (s->conn[s->threads[i]] == 0) {
			size_t n = strlen(missing);
			snprintf(missing + n, sizeof(missing) - n, "%s%u", n ? ", " : "", s->threads[i]);
		}
	}
	if (s->nthreads == 0 || missing[0]) {
		snprintf(msg, msgsz,
			 s->nthreads == 0 ? "no primary node has connected: nothing to switch over from (a primary that is "
					    "gone takes coralctl standby failover)"
					  : "the primary's threads %s are not connected: every node of the primary must be up "
					    "for a switchover (one that is gone takes coralctl standby failover)",
			 missing);
		return CORAL_ENOTRUNNING;
	}
	receiver_switch_clear(s->r);
	for (uint32_t i = 0; i < s->nthreads; i++)
		receiver_switch_send(s->r, s->threads[i], 1, 0, NULL);
	s->active = true;
	s->conn_id = conn_id;
	s->req_id = req_id;
	s->started_ns = coral_now_mono_ns();
	s->deadline_ns = s->started_ns + (uint64_t)(wait_ms ? wait_ms : 30000) * 1000000ull;
	log_notice("a switchover from cluster %s: its %u threads are asked to close", s->d->conf.replication.primary_cluster,
		   s->nthreads);
	repl_history_add("switchover", "asked of %s's %u nodes", s->d->conf.replication.primary_cluster, s->nthreads);
	struct timeval tv = {0, 10000};
	evtimer_add(s->tick, &tv);
	return 0;
}

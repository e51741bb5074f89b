/* replicad: the node's redo. How it is wired: a worker thread runs the log writer
 * (log_writer.c), which group-commits the redo buffer in the SGA to the node's redo thread
 * in shared storage and wakes every committer waiting for it, and stops writing while the
 * node is fenced; the event loop ships the thread to a standby (sender.c) on a primary, or
 * keeps the primary's threads (receiver.c) on a standby, and answers control requests
 * (standby status). The standby's apply, sync modes, seeding and role changes are later
 * parts of this daemon (issue 20). */
#include "cluster.h"
#include "ctl.h"
#include "daemon.h"
#include "errors.h"
#include "bufcache.h"
#include "copy.h"
#include "log.h"
#include "log_writer.h"
#include "metrics.h"
#include "history.h"
#include "repl.h"
#include "switchover.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct replicad {
	struct coral_daemon *d;
	struct coral_redo *redo;
	struct coral_cluster_sga *cl;
	struct log_writer *w;
	struct ship_set *ships;
	struct receiver *receiver;
	struct applier *applier;
	struct switchover *sw;
	pthread_t thread;
	bool started;
	_Atomic bool stop;
	_Atomic uint64_t last_error_ms;
};

/* Follows raftd's fence: a fenced node writes nothing to its redo thread in shared storage
 * (once evicted, another node's instance recovery reads that thread), and its committers
 * are told at once instead of timing out. True while fenced. */
static bool writer_fenced(struct replicad *r)
{
	bool fenced = coral_cluster_fenced(r->cl);
	if (fenced != (atomic_load(&r->redo->fenced) != 0)) {
		char why[192];
		bool joining = coral_cluster_fence_reason(r->cl, why, sizeof(why));
		if (fenced && joining)
			log_info("the node is fenced until it has joined: no redo written yet");
		else if (fenced)
			log_warn("the node is fenced (%s): redo writes stop (%llu bytes appended, not durable)", why,
				 (unsigned long long)(atomic_load(&r->redo->tail) - atomic_load(&r->redo->durable)));
		else
			log_notice("the node is unfenced: redo is written");
		coral_redo_set_fenced(r->redo, fenced);
	}
	return fenced;
}

/* While fenced: once raftd has evicted the incarnation the writer wrote under, the redo
 * appended under it and not durable is not the thread's any more. The others recovered
 * the thread without it and its sessions' commits failed (libcoral: evicted since the
 * transaction began); written after the node joins again it would lie past the thread's
 * checkpoint as changes nobody applied, for the next recovery of this thread to apply over
 * newer images. So it is dropped here, while fenced, before any session of the next
 * incarnation can append (replicad(8), RESTART). */
static void drop_evicted_tail(struct replicad *r)
{
	struct coral_cluster_view v;
	coral_cluster_read(r->cl, &v);
	uint64_t wi = atomic_load(&r->redo->writer_inc);
	if (wi == 0 || v.evicted_inc < wi)
		return;
	uint64_t n = coral_redo_drop_tail(r->redo);
	atomic_store(&r->redo->writer_inc, 0);
	if (n > 0)
		log_warn("incarnation %llu of this node was evicted: the %llu bytes of redo appended under it and not "
			 "written are dropped (the other nodes recovered the thread without them; their commits failed)",
			 (unsigned long long)wi, (unsigned long long)n);
}

/* Unfenced: the incarnation written under from now on. */
static void note_incarnation(struct replicad *r)
{
	struct coral_cluster_view v;
	coral_cluster_read(r->cl, &v);
	uint64_t wi = atomic_load(&r->redo->writer_inc);
	if (v.incarnation == 0 || wi == v.incarnation)
		return;
	if (wi != 0 && v.evicted_inc >= wi && atomic_load(&r->redo->tail) > atomic_load(&r->redo->durable))
		log_error("this node's incarnation %llu was evicted while no log writer ran: the redo appended under it "
			  "and not written cannot be told from the next incarnation's, and is written (the next recovery "
			  "of this thread may apply changes whose commits failed)", (unsigned long long)wi);
	atomic_store(&r->redo->writer_inc, v.incarnation);
}

/* The writer: nothing else runs in this thread, so a slow disk never stalls the loop. */
static void *writer_main(void *arg)
{
	struct replicad *r = arg;
	uint64_t errors = 0, ckpt_errors = 0, recycled = 0;
	bool was_fenced = true;
	while (!atomic_load(&r->stop)) {
		if (writer_fenced(r)) {
			drop_evicted_tail(r);
			was_fenced = true;
			struct timespec ts = {0, 10 * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		if (was_fenced) {
			note_incarnation(r);
			was_fenced = false;
		}
		int64_t n = log_writer_step(r->w, 50);
		if (n > 0)
			ship_set_kick(r->ships);
		if (n >= 0 && log_writer_keep_ckpt(r->w, false) != 0 && ckpt_errors++ % 100 == 0)
			log_error("the redo thread's checkpoint cannot be kept: %s", log_writer_error(r->w));
		if (log_writer_recycled(r->w) != recycled) {
			log_info("%llu redo segment(s) recycled, wholly below the checkpoint",
				 (unsigned long long)(log_writer_recycled(r->w) - recycled));
			recycled = log_writer_recycled(r->w);
		}
		if (n < 0) {
			/* nothing is acknowledged that is not durable: committers give up with the cause
			 * after [cache] log_error_ms and the writer tries again, so that the node goes
			 * on when space returns; the error is logged, not hidden */
			if (errors++ % 100 == 0)
				log_error("the redo thread cannot be written (%s): %s; trying again", coral_strerror((int)n),
					  log_writer_error(r->w));
			struct timespec ts = {0, 10 * 1000000L};
			nanosleep(&ts, NULL);
		} else if (n > 0 && errors > 0) {
			log_notice("the redo thread is written again after %llu failed attempts", (unsigned long long)errors);
			errors = 0;
		}
	}
	/* what is appended before a clean stop still goes out, unless fenced */
	while (!writer_fenced(r) && log_writer_step(r->w, 0) > 0)
		;
	if (!writer_fenced(r))
		log_writer_keep_ckpt(r->w, true);
	return NULL;
}

static int replicad_init(struct coral_daemon *d)
{
	struct replicad *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return CORAL_ENOMEM;
	d->svc = r;
	r->d = d;
	r->redo = coral_redo_sga(&d->sga);
	r->cl = coral_cluster_sga(&d->sga);
	if (r->redo == NULL) {
		log_error("the SGA has no redo section: restart the node");
		return CORAL_EVERSION;
	}
	char err[CORAL_ERRMSG_MAX];
	struct coral_cache *cache = coral_cache_sga(&d->sga);
	int rc = log_writer_open(r->redo, cache ? &cache->scn : NULL, d->conf.storage.shared_dir, (uint32_t)d->node->id,
					(uint64_t)d->conf.cache.redo_segment, &r->w, err, sizeof(err));
	if (rc != 0) {
		log_error("redo thread %lld: %s", (long long)d->node->id, err);
		return rc;
	}
	atomic_store(&r->redo->fail_after_ms, (uint32_t)d->conf.cache.log_error_ms);
	/* a cluster that took over its primary's copy: its node's clock starts above every SCN
	 * the copy holds (else its redo could sit below them for long, and a standby seeded
	 * from it would wait that long to be consistent) */
	struct coral_conf *pc = malloc(sizeof(*pc));
	struct coral_copy_state cst;
	if (pc && cache && d->conf.replication.primary_cluster[0]) {
		coral_copy_conf(&d->conf, pc);
		if (coral_copy_state_read(pc->storage.shared_dir, &cst) == 0 && cst.took_over)
			coral_scn_observe(cache, cst.applied_scn > cst.torn_scn ? cst.applied_scn : cst.torn_scn);
	}
	free(pc);
	log_info("redo thread %lld opened at LSN %llu under %s/redo", (long long)d->node->id,
		 (unsigned long long)atomic_load(&r->redo->durable), d->conf.storage.shared_dir);
	r->ships = ship_set_new(d, r->redo, r->w, &rc);
	if (rc == 0)
		r->receiver = receiver_new(d, &rc);
	if (rc == 0)
		r->applier = applier_new(d, r->receiver, &rc);
	if (rc != 0)
		return rc;
	r->sw = switchover_new(d, r->receiver, r->applier);
	if (pthread_create(&r->thread, NULL, writer_main, r) != 0)
		return CORAL_ESYS;
	r->started = true;
	return 0;
}

static void replicad_fini(struct coral_daemon *d)
{
	struct replicad *r = d->svc;
	if (r == NULL)
		return;
	if (r->started) {
		atomic_store(&r->stop, true);
		coral_redo_kick(r->redo);
		pthread_join(r->thread, NULL);
	}
	ship_set_free(r->ships);
	switchover_free(r->sw);
	applier_free(r->applier);
	receiver_free(r->receiver);
	if (r->redo)
		atomic_store(&r->redo->writer_pid, 0);
	log_writer_close(r->w);
	free(r);
	d->svc = NULL;
}

/* coralctl standby status: the thread this node ships (a primary) or the copies it keeps (a
 * standby). */
static void h_standby(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct replicad *r = d->svc;
	Coral__StandbyThread th[CORAL_MAX_NODES];
	Coral__StandbyThread *thp[CORAL_MAX_NODES];
	Coral__StandbyStatusReply st = CORAL__STANDBY_STATUS_REPLY__INIT;
	st.role = d->conf.replication.role;
	uint64_t bad = 0;
	size_t n = ship_set_threads(r->ships, th, CORAL_MAX_NODES);
	n += receiver_threads(r->receiver, th + n, CORAL_MAX_NODES - n, &bad);
	bool standby = strcmp(d->conf.replication.role, "standby") == 0;
	st.cluster = standby ? d->conf.replication.primary_cluster : d->conf.replication.standby;
	for (size_t i = 0; i < n; i++)
		thp[i] = &th[i];
	st.threads = thp;
	st.n_threads = n;
	st.bad_hellos = bad;
	Coral__StandbyApply ap;
	char state[256], source[256];
	if (r->applier) {
		applier_status(r->applier, &ap, state, source);
		st.apply = &ap;
	}
	Coral__StandbyCommit cm;
	if (r->ships) {
		ship_set_commit(r->ships, &cm);
		st.commit = &cm;
	}
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_STANDBY_STATUS;
	resp.standby_status = &st;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* Per thread, labelled thread="N": how far the standby is behind (a primary's view) and what
 * the copies hold (a standby's). */
static void replicad_metrics(struct coral_daemon *d, struct coral_metrics_slot *m)
{
	struct replicad *r = d->svc;
	if (r == NULL)
		return;
	Coral__StandbyThread th[CORAL_MAX_NODES];
	uint64_t bad = 0;
	size_t n = ship_set_threads(r->ships, th, CORAL_MAX_NODES);
	n += receiver_threads(r->receiver, th + n, CORAL_MAX_NODES - n, &bad);
	for (size_t i = 0; i < n; i++) {
		char l[32];
		snprintf(l, sizeof(l), "thread=\"%u\"", th[i].thread);
		coral_metrics_put(m, "coral_standby_connected", l, CORAL_METRIC_GAUGE, th[i].connected,
				  "1 while the thread's replication connection is up");
		coral_metrics_put(m, "coral_standby_durable_lsn", l, CORAL_METRIC_GAUGE, (double)th[i].durable,
				  "primary: the thread's durable LSN; standby: its copy's");
		coral_metrics_put(m, "coral_standby_lag_bytes", l, CORAL_METRIC_GAUGE, (double)th[i].lag_bytes,
				  "redo durable on the primary and not yet on the standby");
		coral_metrics_put(m, "coral_standby_lag_seconds", l, CORAL_METRIC_GAUGE, (double)th[i].lag_ms / 1000.0,
				  "how long the oldest redo the standby lacks has been durable on the primary");
		coral_metrics_put(m, "coral_standby_shipped_bytes_total", l, CORAL_METRIC_COUNTER,
				  (double)th[i].sent_bytes, "redo bytes sent (primary) or written (standby)");
		coral_metrics_put(m, "coral_standby_slot_drops_total", l, CORAL_METRIC_COUNTER, (double)th[i].slot_drops,
				  "slots dropped past [replication] slot_max_bytes");
	}
	if (r->receiver)
		coral_metrics_put(m, "coral_standby_bad_hellos_total", NULL, CORAL_METRIC_COUNTER, (double)bad,
				  "replication connections refused (no or a wrong hello, too many)");
	if (r->applier) {
		Coral__StandbyApply ap;
		char state[256], source[256];
		applier_status(r->applier, &ap, state, source);
		coral_metrics_put(m, "coral_standby_applied_scn", NULL, CORAL_METRIC_GAUGE, (double)ap.applied_scn,
				  "the standby's copy holds every transaction committed up to this SCN");
		coral_metrics_put(m, "coral_standby_consistent", NULL, CORAL_METRIC_GAUGE, ap.consistent,
				  "1 while the copy is a state the primary was in");
		coral_metrics_put(m, "coral_standby_apply_lag_seconds", NULL, CORAL_METRIC_GAUGE, (double)ap.lag_ms / 1000.0,
				  "how long redo has waited to be applied");
		coral_metrics_put(m, "coral_standby_txns_applied_total", NULL, CORAL_METRIC_COUNTER, (double)ap.txns_applied,
				  "transactions applied to the standby's copy");
		coral_metrics_put(m, "coral_standby_open_txns", NULL, CORAL_METRIC_GAUGE, (double)ap.open_txns,
				  "transactions held by the apply, not committed yet");
	}
}

/* The answer of an admin request that says what it did in a line (seed, finish). */
static void answer_action(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req, int rc,
			  const char *msg, Coral__CtlResponse__BodyCase body)
{
	if (rc != 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), rc, "%s", msg);
		return;
	}
	log_notice("%s", msg);
	Coral__StandbyActionReply ar = CORAL__STANDBY_ACTION_REPLY__INIT;
	ar.result = (char *)msg;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = body;
	if (body == CORAL__CTL_RESPONSE__BODY_STANDBY_SEED)
		resp.standby_seed = &ar;
	else if (body == CORAL__CTL_RESPONSE__BODY_STANDBY_FINISH)
		resp.standby_finish = &ar;
	else
		resp.standby_failover = &ar;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* coralctl standby seed DIR (admin): the copy of the primary's data files made from DIR;
 * answered once it has started (its end shows in standby status). */
static void h_seed(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct replicad *r = d->svc;
	char msg[CORAL_ERRMSG_MAX];
	const char *src = req->standby_seed->source ? req->standby_seed->source : "";
	int rc = applier_seed(r->applier, src, msg, sizeof(msg));
	answer_action(d, conn, req, rc, msg, CORAL__CTL_RESPONSE__BODY_STANDBY_SEED);
}

/* coralctl standby finish (admin): the primary is gone; apply everything, take no more. */
static void h_finish(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct replicad *r = d->svc;
	char msg[CORAL_ERRMSG_MAX];
	int rc = applier_finish(r->applier, msg, sizeof(msg));
	answer_action(d, conn, req, rc, msg, CORAL__CTL_RESPONSE__BODY_STANDBY_FINISH);
}

/* coralctl standby failover (admin): finish, then the copy is this cluster's. */
static void h_failover(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct replicad *r = d->svc;
	char msg[CORAL_ERRMSG_MAX];
	int rc = applier_failover(r->applier, msg, sizeof(msg));
	answer_action(d, conn, req, rc, msg, CORAL__CTL_RESPONSE__BODY_STANDBY_FAILOVER);
}

/* coralctl standby switchover (admin, on the standby): answered at its end. */
static void h_switchover(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct replicad *r = d->svc;
	char msg[CORAL_ERRMSG_MAX];
	int rc = switchover_start(r->sw, conn, coral_ctl_request_id(req), req->standby_switchover->wait_ms, msg,
				  sizeof(msg));
	if (rc != 0)
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), rc, "%s", msg);
}

/* coralctl standby history: the replication events this replicad saw, oldest first. */
static void h_history(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	static struct repl_event ev[REPL_HISTORY];
	static Coral__StandbyEvent m[REPL_HISTORY];
	static Coral__StandbyEvent *mp[REPL_HISTORY];
	size_t n = repl_history_get(ev, REPL_HISTORY);
	for (size_t i = 0; i < n; i++) {
		coral__standby_event__init(&m[i]);
		m[i].at_ms = ev[i].at_ms;
		m[i].kind = ev[i].kind;
		m[i].text = ev[i].text;
		mp[i] = &m[i];
	}
	Coral__StandbyHistoryReply h = CORAL__STANDBY_HISTORY_REPLY__INIT;
	h.events = mp;
	h.n_events = n;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_STANDBY_HISTORY;
	resp.standby_history = &h;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static const struct coral_daemon_request replicad_requests[] = {
	{CORAL__CTL_REQUEST__BODY_STANDBY_HISTORY, false, h_history, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_STANDBY_STATUS, false, h_standby, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_STANDBY_SEED, true, h_seed, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_STANDBY_FINISH, true, h_finish, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_STANDBY_FAILOVER, true, h_failover, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_STANDBY_SWITCHOVER, true, h_switchover, NULL, NULL},
};

static const struct coral_daemon_def replicad_def = {
	.id = CORAL_D_REPLICAD,
	.service = "log writer: group commit of the node's redo thread; its shipping to a standby; on a standby, the "
		   "copies of the primary's threads and their apply",
	.service_ready = true,
	.init = replicad_init,
	.fini = replicad_fini,
	.requests = replicad_requests,
	.nrequests = CORAL_ARRAY_LEN(replicad_requests),
	.metrics = replicad_metrics,
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &replicad_def);
}

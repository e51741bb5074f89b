/* smond: instance recovery. Its wiring on the daemon kit and the cold start; the recovery
 * itself is recovery.c.
 *
 * Cold start: a starting smond tries the instance lock exclusive (storage.h). It gets it only
 * if no instance runs anywhere in the cluster (every running smond and lmsd holds it shared),
 * which is the case after every node was stopped or lost together. Then, before its node's
 * lmsd starts (smond is started before it, and lmsd waits for the lock shared), it recovers
 * every redo thread in shared storage: each is read from its kept checkpoint to its last
 * valid record, the changes are applied to the data files' blocks in SCN order across
 * threads, the transactions without a commit record are taken back, the blocks written and
 * synced, and each thread's checkpoint moved to its end. A thread closed cleanly (its
 * checkpoint at its end) costs nothing. Then smond holds the lock shared for its life.
 *
 * While the node runs, smond recovers the nodes lost while others run, with every other
 * survivor (online.c), and takes back the open transactions of processes that died
 * (deadtxn.c). A node starting again after its own loss waits for the survivors to have
 * recovered its thread before its lmsd starts. */
#include "ctl.h"
#include "daemon.h"
#include "deadtxn.h"
#include "errors.h"
#include "history.h"
#include "online.h"
#include "log.h"
#include "recovery.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <dirent.h>
#include <event2/event.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct smond {
	int lock_fd;
	struct smond_deadtxn dt;
	struct event *ev_dt;
	struct rcv_history history;
	bool cold_start_ran;
	struct smond_online online;
	bool online_ready;
	struct event *ev_online;
};

static void on_online(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	smond_online_step(arg);
}

static void on_deadtxn(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	smond_deadtxn_step(arg);
}

static uint64_t ms_since(uint64_t t0) { return (coral_now_mono_ns() - t0) / 1000000ull; }

/* Applies the recovery set to the data files; 0, or the first failure (in err). */
static int apply_all(struct recovery *r, const struct coral_conf *conf, char *err, size_t errsz)
{
	static struct coral_ctlfile cf; /* large: not on the stack */
	int rc = coral_ctlfile_load(conf, &cf, err, errsz);
	if (rc != 0)
		return rc;
	int fds[CORAL_MAX_DATAFILES];
	for (uint32_t k = 0; k < cf.nfiles; k++)
		fds[k] = -1;
	uint8_t *img = malloc(cf.block_size);
	if (img == NULL)
		return CORAL_ENOMEM;
	uint64_t nb = recovery_plan(r);
	for (uint64_t i = 0; i < nb && rc == 0; i++) {
		uint32_t file;
		uint64_t block;
		recovery_block(r, i, &file, &block);
		uint32_t k = 0;
		while (k < cf.nfiles && cf.files[k].id != file)
			k++;
		if (k == cf.nfiles) {
			snprintf(err, errsz, "block %u:%llu: no data file %u in the control file", file,
				 (unsigned long long)block, file);
			rc = CORAL_ENOENT;
			break;
		}
		if (fds[k] < 0) {
			char path[CORAL_STR_MAX + 64];
			coral_datafile_path(conf, cf.files[k].name, path, sizeof(path));
			fds[k] = open(path, O_RDWR | O_CLOEXEC);
			if (fds[k] < 0) {
				snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
				rc = CORAL_EIO;
				break;
			}
		}
		rc = coral_block_read(fds[k], cf.block_size, file, block, img, err, errsz);
		if (rc == 0 && (rc = recovery_apply(r, i, img, cf.block_size)) != 0)
			snprintf(err, errsz, "block %u:%llu: its redo does not fit it: %s", file, (unsigned long long)block,
				 coral_strerror(rc));
		if (rc == 0)
			rc = coral_block_write(fds[k], cf.block_size, img, err, errsz);
	}
	for (uint32_t k = 0; k < cf.nfiles; k++) {
		if (fds[k] < 0)
			continue;
		if (rc == 0 && fdatasync(fds[k]) != 0) {
			snprintf(err, errsz, "syncing data file %s: %s", cf.files[k].name, strerror(errno));
			rc = coral_err_from_errno(errno);
		}
		close(fds[k]);
	}
	free(img);
	return rc;
}

/* Recovers every thread (the lock is held exclusive); what it did goes into ev. */
static int cold_recover(const struct coral_conf *conf, struct rcv_event *ev, char *err, size_t errsz)
{
	const char *shared = conf->storage.shared_dir;
	uint64_t segsize = (uint64_t)conf->cache.redo_segment;
	uint32_t ids[CORAL_MAX_NODES * 4];
	uint64_t ends[CORAL_MAX_NODES * 4];
	int n = coral_redo_threads(shared, ids, (int)CORAL_ARRAY_LEN(ids));
	uint64_t t0 = coral_now_mono_ns();
	struct recovery *r = recovery_new((uint64_t)conf->recovery.max_memory);
	if (r == NULL)
		return CORAL_ENOMEM;
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		struct coral_redo_ckpt k;
		char why[256] = "";
		if (coral_redo_ckpt_read(shared, ids[i], &k, why, sizeof(why)) != 0) {
			/* no usable checkpoint: the whole thread (still correct, only longer) */
			log_warn("cold start: thread %u's checkpoint cannot be read (%s): reading it whole", ids[i], why);
			k.lsn = 0;
		}
		int64_t got = recovery_read_thread(r, shared, ids[i], segsize, k.lsn, &ends[i], why, sizeof(why));
		if (got < 0) {
			snprintf(err, errsz, "reading redo thread %u: %s%s%s", ids[i], coral_strerror((int)got),
				 why[0] ? ": " : "", why);
			rc = (int)got;
			break;
		}
		log_info("cold start: thread %u: %lld records from LSN %llu to %llu%s%s", ids[i], (long long)got,
			 (unsigned long long)k.lsn, (unsigned long long)ends[i], why[0] ? "; it ends with " : "", why);
	}
	uint64_t t_read = ms_since(t0);
	if (rc == 0)
		rc = apply_all(r, conf, err, errsz);
	const struct recovery_stats *st = recovery_stats(r);
	if (rc == 0) {
		/* every change up to each thread's end is on disk now */
		for (int i = 0; i < n && rc == 0; i++) {
			char dir[CORAL_STR_MAX + 64];
			coral_redo_thread_dir(shared, ids[i], dir, sizeof(dir));
			rc = coral_redo_ckpt_write(dir, ids[i], ends[i], coral_now_real_ns(), st->max_scn, err, errsz);
		}
	}
	*ev = (struct rcv_event){.kind = "cold start", .at_ms = coral_now_real_ns() / 1000000ull - ms_since(t0),
				 .threads = (uint32_t)n, .records = st->records, .bytes = st->bytes,
				 .blocks = st->blocks, .applied = st->applied, .skipped = st->skipped, .txns = st->txns,
				 .txns_open = st->txns_open, .undone = st->undone, .kept = st->kept, .read_ms = t_read,
				 .apply_ms = ms_since(t0) - t_read, .total_ms = ms_since(t0)};
	if (rc == 0)
		log_info("cold start: %d threads recovered in %llu ms (read %llu ms: %llu records, %llu bytes; %llu blocks: "
			 "%llu changes applied, %llu already on disk; %llu transactions of %llu never committed: %llu "
			 "changes taken back%s)",
			 n, (unsigned long long)ms_since(t0), (unsigned long long)t_read,
			 (unsigned long long)st->records, (unsigned long long)st->bytes, (unsigned long long)st->blocks,
			 (unsigned long long)st->applied, (unsigned long long)st->skipped,
			 (unsigned long long)st->txns_open, (unsigned long long)st->txns, (unsigned long long)st->undone,
			 st->kept ? "; some left: committed changes were made on them" : "");
	recovery_free(r);
	return rc;
}

struct count_changes {
	uint64_t changes, commits;
};

static int count_fn(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	(void)bytes;
	struct count_changes *c = arg;
	c->changes += rec->type == CORAL_REDO_CHANGE;
	c->commits += rec->type == CORAL_REDO_COMMIT;
	return 0;
}

/* Not a cold start: other instances run. If this node's own thread has changes after its
 * checkpoint, its previous incarnation ended without writing them back (killed, or lost):
 * the survivors recover it once raftd has evicted that incarnation, which this smond waits
 * for ([recovery] rejoin_wait_ms) before the node's lmsd starts. Past that, committed
 * changes of it may be missing from the data files: said loudly, and recorded. */
static void check_own_thread(struct smond *m, const struct coral_conf *conf, uint32_t thread)
{
	struct coral_redo_ckpt k;
	char err[256];
	if (coral_redo_ckpt_read(conf->storage.shared_dir, thread, &k, err, sizeof(err)) != 0)
		k.lsn = 0;
	struct count_changes c = {0};
	uint64_t end;
	int64_t n = coral_redo_scan(conf->storage.shared_dir, thread, (uint64_t)conf->cache.redo_segment, k.lsn, count_fn,
				    &c, &end, err, sizeof(err));
	if (n <= 0 || c.changes == 0)
		return;
	log_notice("redo thread %u has %llu changes after its checkpoint (LSN %llu to %llu): this node's previous "
		   "incarnation ended without writing them back; waiting up to %lld ms for the survivors to recover it",
		   thread, (unsigned long long)c.changes, (unsigned long long)k.lsn, (unsigned long long)end,
		   (long long)conf->recovery.rejoin_wait_ms);
	uint64_t t0 = coral_now_mono_ns();
	if (smond_online_wait_own(conf, thread, end, conf->recovery.rejoin_wait_ms) == 0) {
		log_info("redo thread %u: recovered by the survivors (waited %llu ms)", thread,
			 (unsigned long long)ms_since(t0));
		return;
	}
	log_error("redo thread %u has %llu changes (%llu commit records, LSN %llu to %llu) after its checkpoint that no "
		  "recovery applied within [recovery] rejoin_wait_ms: this node's previous incarnation ended without "
		  "writing them back while other nodes ran, and the survivors have not recovered it (were they "
		  "running? see coralctl recovery history on them): its committed changes to blocks no survivor "
		  "held may be missing from the data files",
		  thread, (unsigned long long)c.changes, (unsigned long long)c.commits, (unsigned long long)k.lsn,
		  (unsigned long long)end);
	struct rcv_event ev = {.kind = "not recovered", .at_ms = coral_now_real_ns() / 1000000ull, .threads = 1,
			       .records = (uint64_t)n, .txns = c.commits};
	snprintf(ev.result, sizeof(ev.result), "thread %u: %llu changes after the checkpoint (LSN %llu to %llu) not applied",
		 thread, (unsigned long long)c.changes, (unsigned long long)k.lsn, (unsigned long long)end);
	rcv_history_add(&m->history, &ev);
}

static int smond_init(struct coral_daemon *d)
{
	struct smond *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return CORAL_ENOMEM;
	m->lock_fd = -1;
	d->svc = m;
	char err[CORAL_STR_MAX + 256];
	int rc = coral_instance_lock(&d->conf, true, 0, &m->lock_fd, err, sizeof(err));
	if (rc == 0) {
		log_info("cold start: no instance runs in the cluster; recovering every redo thread first");
		struct rcv_event ev = {.kind = "cold start"};
		rc = cold_recover(&d->conf, &ev, err, sizeof(err));
		snprintf(ev.result, sizeof(ev.result), "%s", rc == 0 ? "done" : err);
		rcv_history_add(&m->history, &ev);
		m->cold_start_ran = true;
		if (rc != 0) {
			log_error("cold start: recovery failed, nothing is served: %s", err);
			return rc;
		}
	} else if (rc != CORAL_EBUSY) {
		log_error("the instance lock: %s", err);
		return rc;
	} else {
		check_own_thread(m, &d->conf, (uint32_t)d->node->id);
	}
	/* from exclusive (or nothing) to shared: this node's instance runs from now */
	rc = coral_instance_lock(&d->conf, false, (int)d->conf.supervisor.ready_timeout_ms, &m->lock_fd, err,
				 sizeof(err));
	if (rc != 0) {
		log_error("the instance lock: %s", err);
		return rc;
	}
	/* the transactions of processes that die while the node runs */
	m->dt = (struct smond_deadtxn){&d->conf, coral_cache_sga(&d->sga), coral_redo_sga(&d->sga), &m->history};
	m->ev_dt = event_new(d->base, -1, EV_PERSIST, on_deadtxn, &m->dt);
	struct timeval tv = {0, DEADTXN_MS * 1000};
	if (m->ev_dt == NULL || event_add(m->ev_dt, &tv) != 0)
		return CORAL_ENOMEM;
	/* the nodes lost while this one runs */
	m->online = (struct smond_online){.conf = &d->conf, .node = d->node, .dir = coral_grd_dir_sga(&d->sga, "grd_dir"),
					  .map = coral_grd_map_sga(&d->sga), .cl = coral_cluster_sga(&d->sga),
					  .history = &m->history};
	if (m->online.dir == NULL || m->online.map == NULL || m->online.cl == NULL) {
		log_error("the SGA has no grd_dir, grd_map or cluster section: restart the node");
		return CORAL_EVERSION;
	}
	if (smond_online_init(&m->online) != 0)
		return CORAL_ESYS;
	/* the recovery of a lost node walks the whole directory: not at a page fault an entry */
	coral_sga_prefault(&d->sga, "grd_dir");
	m->online_ready = true;
	m->ev_online = event_new(d->base, -1, EV_PERSIST, on_online, &m->online);
	struct timeval to = {0, ONLINE_MS * 1000};
	if (m->ev_online == NULL || event_add(m->ev_online, &to) != 0)
		return CORAL_ENOMEM;
	return 0;
}

static void smond_fini(struct coral_daemon *d)
{
	struct smond *m = d->svc;
	if (m == NULL)
		return;
	if (m->ev_dt)
		event_free(m->ev_dt);
	if (m->ev_online)
		event_free(m->ev_online);
	if (m->online_ready)
		smond_online_fini(&m->online);
	if (m->lock_fd >= 0)
		close(m->lock_fd);
	free(m);
	d->svc = NULL;
}

static void event_msg(const struct rcv_event *e, Coral__RecoveryEvent *x);

/* coralctl recovery status|history: the recoveries this smond made, oldest first, and the
 * one under way. */
/* recovery status as metrics: every figure is a level (current_*: the recovery under way,
 * present only while one runs; current_at_seconds is when it began) */
static const char *const recovery_gauges[] = {"dead_pending", "cold_start_ran", "current_*", NULL};

static void h_recovery(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct smond *m = d->svc;
	const struct rcv_history *h = &m->history;
	uint64_t first = h->n > RECOVERY_HISTORY ? h->n - RECOVERY_HISTORY : 0;
	size_t n = (size_t)(h->n - first);
	Coral__RecoveryEvent *ev = calloc(n ? n : 1, sizeof(*ev));
	Coral__RecoveryEvent **evp = calloc(n ? n : 1, sizeof(*evp));
	Coral__RecoveryReply r = CORAL__RECOVERY_REPLY__INIT;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	if (ev == NULL || evp == NULL) {
		free(ev);
		free(evp);
		resp.code = CORAL_ENOMEM;
		resp.error = (char *)"out of memory";
		coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		event_msg(&h->ev[(first + i) % RECOVERY_HISTORY], &ev[i]);
		evp[i] = &ev[i];
	}
	r.events = evp;
	r.n_events = n;
	r.dead_pending = smond_deadtxn_pending(&m->dt);
	r.cold_start_ran = m->cold_start_ran;
	struct rcv_event cur;
	const char *phase;
	uint64_t done, eta;
	Coral__RecoveryEvent curm;
	if (m->online_ready && smond_online_current(&m->online, &cur, &phase, &done, &eta)) {
		event_msg(&cur, &curm);
		curm.phase = (char *)phase;
		curm.blocks_done = done;
		curm.eta_ms = eta;
		r.current = &curm;
	}
	resp.body_case = CORAL__CTL_RESPONSE__BODY_RECOVERY;
	resp.recovery = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
	free(ev);
	free(evp);
}

static void event_msg(const struct rcv_event *e, Coral__RecoveryEvent *x)
{
	coral__recovery_event__init(x);
	x->kind = (char *)e->kind;
	x->at_ms = e->at_ms;
	x->result = (char *)e->result;
	x->threads = e->threads;
	x->records = e->records;
	x->bytes = e->bytes;
	x->blocks = e->blocks;
	x->applied = e->applied;
	x->skipped = e->skipped;
	x->txns = e->txns;
	x->txns_open = e->txns_open;
	x->undone = e->undone;
	x->kept = e->kept;
	x->read_ms = e->read_ms;
	x->apply_ms = e->apply_ms;
	x->total_ms = e->total_ms;
	x->session = e->session;
	x->pid = e->pid;
	x->lost_node = e->lost_node;
	x->lost_incarnation = e->lost_inc;
	x->claimer = e->claimer;
	x->fence_ms = e->fence_ms;
	x->rebuild_ms = e->rebuild_ms;
	x->first_pass_ms = e->first_pass_ms;
	x->release_ms = e->release_ms;
	x->done_ms = e->done_ms;
}

static const struct coral_daemon_request smond_requests[] = {
	{CORAL__CTL_REQUEST__BODY_RECOVERY, false, h_recovery, "recovery", recovery_gauges},
};

static const struct coral_daemon_def smond_def = {
	.id = CORAL_D_SMOND,
	.service = "instance recovery: at a cold start, of nodes lost while others run, of dead processes' "
		   "transactions",
	.service_ready = true,
	.init = smond_init,
	.fini = smond_fini,
	.requests = smond_requests,
	.nrequests = CORAL_ARRAY_LEN(smond_requests),
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &smond_def);
}

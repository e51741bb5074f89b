/* lmsd: the Global Cache Service daemon. How it is wired: the kit (libcommon/kit.c) carries
 * the GCS core's (gcs.c) messages over the interconnect (base_port+3) to the lmsd of every
 * other node and ticks it; the core's operations read and write blocks of the shared data
 * files and force redo through the log writer (replicad) before a dirty block leaves;
 * sessions' block requests come on the Unix socket (h_get), coralctl's gcs requests too
 * (ctl.c), and other nodes' sessions' consistent-read copies on base_port+4 (cr.c). */
#include "lmsd.h"
#include "logwait.h"
#include "worker.h"

#include "bufcache.h"
#include "cache.h"
#include "cluster.h"
#include "ctl.h"
#include "daemon.h"
#include "errors.h"
#include "frame.h"
#include "grd.h"
#include "ipc.h"
#include "kit.h"
#include "log.h"
#include "net.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <event2/event.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 2

/* A waiting session's request keeps where a pin taken for it is recorded (+1; 0: nowhere). */
enum { W_SESSION, W_SLOT, W_PIN };

static struct gcs_core *core(struct lmsd *l) { return coral_kit_core(&l->kit); }

/* ---- core ops ------------------------------------------------------------------------- */

static int op_send(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	struct lmsd *l = arg;
	return coral_kit_send(&l->kit, to, type, buf, len);
}

static uint32_t op_lost_owner(void *arg, uint32_t file, uint64_t block)
{
	struct lmsd *l = arg;
	struct coral_resid r = {.type = CORAL_RES_BLOCK, .id1 = file, .id2 = block};
	struct coral_grd_where w;
	coral_grd_lookup(l->map, &r, &w);
	return w.lost_owner;
}

static bool op_on_ring(void *arg, uint32_t node)
{
	struct lmsd *l = arg;
	uint32_t n = l->map->nmembers;
	for (uint32_t i = 0; i < n && i < CORAL_MAX_NODES; i++)
		if (l->map->members[i] == node)
			return true;
	return false;
}

static uint32_t op_master(void *arg, uint32_t file, uint64_t block, uint64_t *version)
{
	struct lmsd *l = arg;
	struct coral_resid r = {.type = CORAL_RES_BLOCK, .id1 = file, .id2 = block};
	struct coral_grd_where w;
	coral_grd_lookup(l->map, &r, &w);
	*version = w.version;
	return w.master;
}

/* The data file of an id, opened once (the control file is read again for a new id). */
static int file_fd(struct lmsd *l, uint32_t file)
{
	if (file == 0 || file > CORAL_MAX_DATAFILES)
		return CORAL_ENOENT;
	if (l->fds[file] > 0)
		return l->fds[file];
	struct coral_ctlfile *cf = malloc(sizeof(*cf));
	if (cf == NULL)
		return CORAL_ENOMEM;
	char err[CORAL_ERRMSG_MAX];
	int rc = coral_ctlfile_load(&l->d->conf, cf, err, sizeof(err));
	if (rc != 0) {
		log_warn("control file: %s", err);
		free(cf);
		return rc;
	}
	rc = CORAL_ENOENT;
	for (uint32_t i = 0; i < cf->nfiles; i++) {
		if (cf->files[i].id != file)
			continue;
		char path[CORAL_STR_MAX + 64];
		coral_datafile_path(&l->d->conf, cf->files[i].name, path, sizeof(path));
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			log_warn("cannot open data file %s: %s", path, strerror(errno));
			rc = CORAL_EIO;
		} else {
			l->fds[file] = fd;
			free(l->paths[file]);
			l->paths[file] = strdup(path);
			rc = fd;
		}
		break;
	}
	free(cf);
	return rc;
}

static int op_read(void *arg, uint32_t file, uint64_t block, uint8_t *data)
{
	struct lmsd *l = arg;
	int fd = file_fd(l, file);
	if (fd < 0)
		return fd;
	char err[CORAL_ERRMSG_MAX];
	int rc = coral_block_read(fd, l->cache->block_size, file, block, data, err, sizeof(err));
	if (rc == CORAL_EINVAL)
		log_info("block %u:%llu asked for: %s", file, (unsigned long long)block, err);  /* a session's mistake */
	else if (rc != 0)
		log_error("block %u:%llu: %s", file, (unsigned long long)block, err);
	return rc;
}

static int op_write(void *arg, uint32_t file, uint64_t block, uint8_t *data, uint64_t scn)
{
	struct lmsd *l = arg;
	int fd = file_fd(l, file);
	if (fd < 0)
		return fd;
	struct coral_block_hdr *h = (struct coral_block_hdr *)data;
	if (h->file != file || h->block != block)
		return CORAL_EINVAL;
	/* a fenced node writes nothing to the shared files: the majority may have evicted it
	 * and be recovering its blocks (asked here, not only at the tick, as raftd may have
	 * fenced the node since); nor does one whose cache an eviction made void, even once
	 * it is a member again (its images are older than what the others recovered) */
	if (l->escalating || coral_cluster_fenced(l->cl) || coral_cache_void(l->cache, coral_cluster_evicted_inc(l->cl)))
		return CORAL_EFENCED;
	h->scn = scn;
	char err[CORAL_ERRMSG_MAX];
	int rc = coral_block_write(fd, l->cache->block_size, data, err, sizeof(err));
	if (rc != 0)
		log_error("writing block %u:%llu to %s: %s", file, (unsigned long long)block,
			  l->paths[file] ? l->paths[file] : "?", err);
	else
		l->unsynced[file] = true;
	return rc;
}

static int sync_file(struct lmsd *l, uint32_t f)
{
	if (fdatasync(l->fds[f]) == 0)
		return 0;
	int rc = coral_err_from_errno(errno);
	log_error("syncing data file %u (%s): %s", f, l->paths[f] ? l->paths[f] : "?", strerror(errno));
	return rc;
}

static int op_sync(void *arg)
{
	struct lmsd *l = arg;
	int rc = 0;
	for (uint32_t f = 1; f <= CORAL_MAX_DATAFILES; f++) {
		if (!l->unsynced[f])
			continue;
		int r = sync_file(l, f);
		if (r != 0) {
			rc = r;
			continue;
		}
		l->unsynced[f] = false;
	}
	return rc;
}

/* A checkpoint's blocks, in the flusher's thread: each written (not by a fenced node), then
 * each file written once synced. Any failure fails the whole: the blocks stay dirty and the
 * next checkpoint writes them again. */
static int flush_run(void *arg, const _Atomic bool *stop)
{
	(void)stop;  /* a flush is not cut short */
	struct lmsd *l = arg;
	int rc = 0;
	uint32_t files[GCS_CKPT_BATCH], nfiles = 0;
	for (uint32_t k = 0; k < l->nflush && rc == 0; k++) {
		const struct gcs_write *w = &l->flush[k];
		if (coral_cluster_fenced(l->cl) || coral_cache_void(l->cache, coral_cluster_evicted_inc(l->cl))) {
			rc = CORAL_EFENCED;
			break;
		}
		((struct coral_block_hdr *)w->data)->scn = w->scn;
		char err[CORAL_ERRMSG_MAX];
		rc = coral_block_write(l->fds[w->file], l->cache->block_size, w->data, err, sizeof(err));
		if (rc != 0) {
			log_error("writing block %u:%llu to %s: %s", w->file, (unsigned long long)w->block,
				  l->paths[w->file] ? l->paths[w->file] : "?", err);
			break;
		}
		bool seen = false;
		for (uint32_t f = 0; f < nfiles && !seen; f++)
			seen = files[f] == w->file;
		if (!seen)
			files[nfiles++] = w->file;
	}
	for (uint32_t f = 0; f < nfiles && rc == 0; f++)
		rc = sync_file(l, files[f]);
	return rc;
}

/* The redo thread's checkpoint, published in the SGA for the log writer (which keeps it in
 * the thread's directory) and coralctl: every change of this node before it is on disk or
 * in an image another node keeps (a past image here holds its checkpoint back until the
 * disk has a newer image). Never past the durable end of the thread. */
static void publish_ckpt(struct lmsd *l)
{
	uint64_t tail = atomic_load(&l->redo->tail), now = coral_now_real_ns();
	uint64_t ck = gcs_core_ckpt_lsn(core(l), tail);
	/* ... and at or before the first change of every open transaction: recovery may have
	 * to take it back, from the old bytes in its redo */
	for (uint32_t i = 0; i < CORAL_CACHE_SESSIONS; i++) {
		struct coral_sess_slot *ss = coral_cache_sess(l->cache, i);
		uint64_t f = atomic_load(&ss->pid) != 0 ? atomic_load(&ss->txn_first) : 0;
		if (f != 0 && f - 1 < ck)
			ck = f - 1;
	}
	uint64_t durable = atomic_load(&l->redo->durable);
	if (ck > durable)
		ck = durable;
	/* when the redo at the checkpoint was written, about: the last sample of the thread's
	 * end at or before it (one a checkpoint, LSN_HIST of them) */
	struct lmsd_lsn_at *h = l->lsn_hist;
	uint32_t last = (l->nlsn_hist + LSN_HIST - 1) % LSN_HIST;
	if (l->nlsn_hist == 0 || h[last].lsn != tail)
		h[l->nlsn_hist++ % LSN_HIST] = (struct lmsd_lsn_at){tail, now};
	uint64_t at = now;
	uint32_t n = l->nlsn_hist < LSN_HIST ? l->nlsn_hist : LSN_HIST;
	for (uint32_t k = 0; k < n; k++) {
		const struct lmsd_lsn_at *e = &h[(l->nlsn_hist - 1 - k) % LSN_HIST];
		at = e->ns;
		if (e->lsn <= ck)
			break;
	}
	if (ck >= atomic_load(&l->redo->ckpt_lsn)) {
		atomic_store(&l->redo->ckpt_lsn, ck);
		atomic_store(&l->redo->ckpt_ns, ck == tail ? now : at);
	}
}

static void flush_done(void *arg, int rc)
{
	struct lmsd *l = arg;
	gcs_core_synced(core(l), rc);
	publish_ckpt(l);
}

/* Starts the writing and syncing of a checkpoint's blocks; the flusher reports to
 * flush_done. The files are opened here, in the loop. */
static int op_flush_start(void *arg, const struct gcs_write *w, uint32_t n)
{
	struct lmsd *l = arg;
	if (l->flusher == NULL || l->stopping || lmsd_worker_busy(l->flusher) || coral_cluster_fenced(l->cl))
		return CORAL_EBUSY;
	for (uint32_t k = 0; k < n; k++)
		if (file_fd(l, w[k].file) < 0)
			return CORAL_EIO;
	l->flush = w;
	l->nflush = n;
	lmsd_worker_kick(l->flusher);
	return 0;
}

/* Never waits in the loop: the log waiter thread wakes it (on_log_ready) once the redo is
 * durable. Only the last checkpoint of a clean stop waits, the loop being over. */
static int op_log_force(void *arg, uint64_t lsn)
{
	struct lmsd *l = arg;
	if (atomic_load(&l->redo->durable) >= lsn)
		return 0;
	int rc = l->logwait && !l->stopping ? lmsd_logwait_force(l->logwait, lsn)
					    : coral_redo_wait(l->redo, lsn, (int)l->d->conf.cache.commit_timeout_ms);
	if (rc == CORAL_EPENDING)
		return rc;
	if (rc != 0 && coral_now_mono_ns() >= l->log_warned_ns + 1000000000ull) {
		l->log_warned_ns = coral_now_mono_ns();
		log_warn("log force to LSN %llu: %s%s", (unsigned long long)lsn, coral_strerror(rc),
			 rc == CORAL_ETIMEDOUT ? " (is replicad running?)" : " (the log writer cannot write: replicad's log says why)");
	}
	return rc == 0 ? 1 : rc;
}

static void on_log_ready(void *arg)
{
	struct lmsd *l = arg;
	gcs_core_log_ready(core(l));
}

/* The record of a pin taken for the waiting session, in its slot (NULL: it gave none, or
 * the slot is another session's now). No latch: gcs.c may hold the block's already, and
 * nothing else writes this entry meanwhile (the session waits for this answer; the reaper of
 * dead sessions' pins is lmsd itself). Only an empty entry is taken, so that the late answer
 * of a session that gave up cannot overwrite a pin it recorded since. */
static _Atomic uint32_t *pin_record(struct lmsd *l, const struct coral_wait *w, uint32_t buf, int pinned)
{
	uint32_t slot = w->aux[W_SLOT], pin = w->aux[W_PIN];
	if (slot == 0 || slot > CORAL_CACHE_SESSIONS || pin == 0 || pin > CORAL_CACHE_SLOT_PINS)
		return NULL;
	struct coral_sess_slot *ss = coral_cache_sess(l->cache, slot - 1);
	if (atomic_load(&ss->pid) <= 0 || ss->id != w->aux[W_SESSION])
		return NULL;
	_Atomic uint32_t *rec = &ss->pins[pin - 1];
	uint32_t empty = 0;
	return atomic_compare_exchange_strong(rec, &empty, (buf + 1) | (pinned == 2 ? CORAL_PINREC_X : 0)) ? rec
													      : NULL;
}

static void op_done(void *arg, uint64_t cookie, int code, uint32_t buf, int pinned, int served)
{
	struct lmsd *l = arg;
	struct coral_wait wt, *w = &wt;
	if (!coral_kit_wait_take(&l->kit, cookie, w)) {
		/* the session went away: a pin taken for it is dropped again */
		if (code == 0 && pinned)
			coral_cache_unpin(l->cache, coral_cache_buf(l->cache, buf), pinned == 2);
		return;
	}
	if (code != 0) {
		struct coral_grd_where gw = {0};
		if (code == CORAL_ETIMEDOUT)
			gw.version = l->map->version;
		/* a wait on a recovery, or for this node to come on the ring, is a timeout to the
		 * session (coral.h), said as such */
		bool waited = code == CORAL_ERECOVERY || code == CORAL_EJOINING;
		coral_daemon_answer_error(l->d, w->conn, w->req_id, waited ? CORAL_ETIMEDOUT : code,
					  "%s%s", coral_strerror(waited ? CORAL_ETIMEDOUT : code),
					  code == CORAL_ETIMEDOUT && gw.version == 0
						  ? " (no bucket map agreed yet: is grdd up on every node? coralctl grd status)"
					  : code == CORAL_ETIMEDOUT ? " (coralctl gcs block FILE BLOCK shows its master and holders)"
					  : code == CORAL_EFULL ? ": no free buffer until the deadline, every one pinned, a past "
								  "image or in transit (coralctl cache; [cache] buffers)"
					  : code == CORAL_ERECOVERY ? ": the block waits for a lost node's recovery (coralctl "
								      "recovery status, on any survivor)"
					  : code == CORAL_EJOINING ? ": this node is not on the directory's ring yet: its masters "
								     "serve it nothing until grdd's join commits (coralctl grd status)"
					  : code == CORAL_EINVAL ? " (a block past the end of its data file: coralctl datafile "
								   "list gives their sizes)"
								: "");
		return;
	}
	Coral__GcsGetReply r = CORAL__GCS_GET_REPLY__INIT;
	r.buf = buf;
	r.pinned = (uint32_t)pinned;
	r.kind = (uint32_t)served;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GCS_GET;
	resp.gcs_get = &r;
	_Atomic uint32_t *rec = pinned ? pin_record(l, w, buf, pinned) : NULL;
	if (coral_daemon_answer(l->d, w->conn, w->req_id, &resp) != 0 && pinned)
		coral_cache_unpin_rec(l->cache, coral_cache_buf(l->cache, buf), pinned == 2, rec);
}

/* ---- the tick ------------------------------------------------------------------------- */

/* Nodes' losses as grdd counted them in the directory: each new one is handed to the core
 * (the survivors: raftd's active members), and its settling told to smond. A lost node
 * that is a member again, in a new incarnation, is shipped to again. */
static void check_losses(struct lmsd *l, const struct coral_cluster_view *v)
{
	uint64_t survivors = 0;
	for (uint32_t i = 0; i < v->nmembers; i++)
		if (v->members[i].state == CORAL_MEMBER_ACTIVE && v->members[i].id >= 1 && v->members[i].id <= CORAL_MAX_NODES)
			survivors |= 1ull << (v->members[i].id - 1);
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		struct coral_grd_loss *L = &l->dir->loss[n - 1];
		uint64_t seq = atomic_load(&L->seq), inc = atomic_load(&L->incarnation);
		if (n == l->self || seq == 0)
			continue;
		for (uint32_t i = 0; i < v->nmembers; i++)
			if (v->members[i].id == n && v->members[i].state == CORAL_MEMBER_ACTIVE &&
			    v->members[i].incarnation != inc)
				gcs_core_node_back(core(l), n);
		if (seq == atomic_load(&L->done))
			continue;
		/* grdd counts a loss just before it publishes the map that names it: the reports
		 * are made from that map */
		if (seq != l->loss_seen[n - 1] && memchr(l->map->lost_owner, (int)n, CORAL_GRD_BUCKETS) != NULL) {
			log_notice("node %u (incarnation %llu) lost: rebuilding the state of the blocks it mastered from "
				   "the survivors' reports", n, (unsigned long long)inc);
			gcs_core_node_lost(core(l), n, inc, seq, survivors & ~(1ull << (n - 1)));
			l->loss_seen[n - 1] = seq;
		}
		uint64_t s;
		if (gcs_core_loss_settled(core(l), n, &s) && s == seq && atomic_load(&L->gcs) != seq)
			atomic_store(&L->gcs, seq);
		uint32_t left = 0;
		bool flushed = gcs_core_loss_flushed(core(l), n, &s, &left);
		if (s == seq) {
			atomic_store(&L->flush_left, left);
			if (flushed && atomic_load(&L->flushed) != seq)
				atomic_store(&L->flushed, seq);
		}
	}
}

/* An eviction of this node made its cache void: the others have recovered what it held.
 * Everything goes, unwritten (their changes are in the redo the others applied); then the
 * cache serves again under the incarnation the node rejoins with. */
static void check_own_eviction(struct lmsd *l, const struct coral_cluster_view *v)
{
	uint64_t ev = coral_cluster_evicted_inc(l->cl);
	if (coral_cache_void(l->cache, ev)) {
		log_warn("this node's incarnation %llu was evicted: the other nodes recover what it held; its "
			 "cache (%u images, %u dirty, %u past images) is dropped unwritten",
			 (unsigned long long)ev, atomic_load(&l->cache->valid), atomic_load(&l->cache->dirty),
			 atomic_load(&l->cache->pis));
		gcs_core_self_lost(core(l));
		atomic_store(&l->cache->since_inc, 0);
	}
	if (atomic_load(&l->cache->since_inc) == 0 && v != NULL && !v->fenced && v->incarnation > ev)
		atomic_store(&l->cache->since_inc, v->incarnation);
}

/* Escalation (lmsd(8), RESTART): raftd is asked, once a second, to have the node leave;
 * it ends when the eviction has made the cache void (check_own_eviction dropped it). */
static void escalate(struct lmsd *l)
{
	uint64_t now = coral_now_mono_ns() / 1000000ull;
	if (coral_cache_void(l->cache, coral_cluster_evicted_inc(l->cl)) || atomic_load(&l->cache->since_inc) == 0) {
		log_notice("the node left the cluster after lmsd pid %d died (%llu ms): its cache is dropped; it "
			   "serves again once the others have recovered it and it has joined under a new incarnation",
			   (int)l->escalated_from, (unsigned long long)(now - l->escalate_since_ms));
		l->escalating = false;
		return;
	}
	if (l->escalate_sent_ms != 0 && now - l->escalate_sent_ms < 1000)
		return;
	l->escalate_sent_ms = now;
	char sock[CORAL_STR_MAX + 64], reason[128], err[CORAL_ERRMSG_MAX];
	coral_conf_sock_path(l->d->node, "raftd", sock, sizeof(sock));
	snprintf(reason, sizeof(reason), "lmsd pid %d died with block transfers under way; they cannot be resumed",
		 (int)l->escalated_from);
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__RaftLeaveRequest body = CORAL__RAFT_LEAVE_REQUEST__INIT;
	hdr.sender = (char *)"lmsd";
	req.hdr = &hdr;
	body.reason = reason;
	req.body_case = CORAL__CTL_REQUEST__BODY_RAFT_LEAVE;
	req.raft_leave = &body;
	Coral__CtlResponse *resp = NULL;
	int rc = coral_ctl_call(sock, &req, (size_t)l->d->conf.cluster.max_frame, 500, &resp, err, sizeof(err));
	if (rc == 0 && resp->code != 0) {
		rc = resp->code;
		snprintf(err, sizeof(err), "%s", resp->error ? resp->error : coral_strerror(rc));
	}
	coral_ctl_response_free(resp);
	if (rc != 0)
		log_warn("asking raftd that the node leave the cluster: %s (asked again in 1 s)", err);
}

static void on_tick(void *arg, const struct coral_cluster_view *v)
{
	struct lmsd *l = arg;
	check_own_eviction(l, v);
	if (l->escalating) {
		escalate(l);
		if (l->escalating)
			return;  /* nothing served, shipped, written or reaped until the node has left */
	}
	if (v != NULL)
		check_losses(l, v);
	bool fenced = coral_cluster_fenced(l->cl);
	if (fenced != l->fenced) {
		char why[192];
		bool joining = coral_cluster_fence_reason(l->cl, why, sizeof(why));
		if (fenced && joining)
			log_info("the node is fenced until it has joined (%s): no block requests served yet", why);
		else if (fenced)
			log_warn("the node is fenced (%s): no block requests are served and no blocks written "
				 "until it is unfenced", why);
		else
			log_notice("the node is unfenced: serving block requests");
		l->fenced = fenced;
	}
	struct gcs_core *c = l->core;  /* the kit has brought its clock to now */
	gcs_core_tick(c);
	uint64_t now = coral_now_mono_ns() / 1000000ull;
	/* past images and dirty buffers filling the cache: write back sooner, so that their
	 * masters can have the past images dropped */
	uint32_t pressure = atomic_load(&l->cache->pis) + atomic_load(&l->cache->dirty);
	if (pressure > l->cache->nbuf / 4 && now + (uint64_t)l->d->conf.cache.checkpoint_ms >= l->next_checkpoint_ms + 50)
		l->next_checkpoint_ms = now;
	if (now >= l->next_checkpoint_ms && !l->fenced) {
		l->next_checkpoint_ms = now + (uint64_t)l->d->conf.cache.checkpoint_ms;
		int n = gcs_core_checkpoint(c);
		if (n > 0)
			log_debug("checkpoint: %d blocks written back", n);
		publish_ckpt(l);
	}
	/* once a second: the pins of sessions whose process died go (a pinned buffer is never
	 * shipped, written back or evicted); at once, those of a session the resource manager
	 * ended (rsrcmgrd(8), LIMITS), looked for every 50 ms */
	bool revoked = false;
	if (now >= l->next_revoke_ms) {
		l->next_revoke_ms = now + 50;
		revoked = lmsd_sess_revoke_pending(l->cache);
	}
	if (now >= l->next_reap_ms || revoked) {
		l->next_reap_ms = now + 1000;
		uint64_t pins = 0;
		int dead = lmsd_sess_reap(l->cache, &pins);
		if (dead > 0)
			log_notice("%d session%s of processes that died: %llu pinned block%s released", dead,
				   dead == 1 ? "" : "s", (unsigned long long)pins, pins == 1 ? "" : "s");
		uint32_t lost = coral_cache_clone_sweep(l->cache);
		if (lost > 0)
			log_notice("%u consistent image%s of blocks no longer under change given back (a process died "
				   "taking one)", lost, lost == 1 ? "" : "s");
	}
}

/* ---- control requests ------------------------------------------------------------------ */

static void h_get(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmsd *l = d->svc;
	const Coral__GcsGetRequest *g = req->gcs_get;
	if (g->file == 0 || (g->mode != CORAL_BL_S && g->mode != CORAL_BL_X && g->mode != GCS_MODE_CR)) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EINVAL,
					  "a block request needs a data file id and mode S (1), X (2) or CR (3)");
		return;
	}
	if (l->escalating) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EFENCED,
					  "node %u is leaving the cluster: its lmsd restarted after pid %d died, and the "
					  "others recover what it held before it joins again", l->self, (int)l->escalated_from);
		return;
	}
	if (coral_cluster_fenced(l->cl)) {
		char why[192];
		coral_cluster_fence_reason(l->cl, why, sizeof(why));
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EFENCED, "node %u is fenced (%s)", l->self, why);
		return;
	}
	uint64_t cookie = coral_kit_wait_add(&l->kit, conn, req, (uint32_t[3]){g->session, g->slot, g->pin});
	if (cookie == 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EBUSY, "too many block requests waiting");
		return;
	}
	gcs_core_get(core(l), g->file, g->block, (int)g->mode, cookie);
}

static const struct coral_daemon_request lmsd_requests[] = {
	{CORAL__CTL_REQUEST__BODY_GCS_GET, false, h_get, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GCS_STATS, false, lmsd_h_stats, "gcs", lmsd_gauges},
	{CORAL__CTL_REQUEST__BODY_GCS_BLOCK, false, lmsd_h_block, NULL, NULL},
};

/* ---- lifecycle ------------------------------------------------------------------------- */

static void kit_clock(void *c, uint64_t mono_ns, uint64_t real_ns)
{
	(void)real_ns;
	gcs_core_clock(c, mono_ns / 1000ull);
}

static void kit_recv(void *c, uint32_t from, uint8_t type, const uint8_t *data, size_t len)
{
	struct lmsd *l = gcs_core_arg(c);
	if (l->escalating) {
		l->dropped_out++;
		return;  /* the others recover what this node held: nothing is answered from it */
	}
	/* out of the cluster (evicted, or not a member under its incarnation yet): the SGA's
	 * cache and directory are an evicted incarnation's, or nothing yet, and the others
	 * master and recover its blocks; a grant or a ship from them would hand out an image
	 * older than theirs. Only a member under its incarnation, with a cache that serves
	 * since then, answers its peers (a fence without eviction, no quorum a moment, still
	 * answers: lmsd(8), Fencing) */
	char why[8];
	if ((coral_cluster_fenced(l->cl) && coral_cluster_fence_reason(l->cl, why, sizeof(why))) ||
	    atomic_load(&l->cache->since_inc) == 0 || coral_cache_void(l->cache, coral_cluster_evicted_inc(l->cl))) {
		l->dropped_out++;
		return;
	}
	gcs_core_recv(c, from, type, data, len);
}

static const struct coral_kit_def lmsd_kit = {
	.port = CORAL_PORT_LMSD, .tick_ms = TICK_MS, .selfq = 4096, .waits = 4096,
	.clock = kit_clock, .recv = kit_recv, .tick = on_tick,
};

static int lmsd_init(struct coral_daemon *d)
{
	struct lmsd *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return CORAL_ENOMEM;
	d->svc = l;
	l->d = d;
	l->lock_fd = -1;
	l->self = (uint32_t)d->node->id;
	l->cl = coral_cluster_sga(&d->sga);
	l->map = coral_grd_map_sga(&d->sga);
	l->dir = coral_grd_dir_sga(&d->sga, "grd_dir");
	l->cache = coral_cache_sga(&d->sga);
	l->redo = coral_redo_sga(&d->sga);
	if (!l->cl || !l->map || !l->dir || !l->cache || !l->redo) {
		log_error("the SGA has no cluster, grd_map, grd_dir, cache or redo section: restart the node");
		return CORAL_EVERSION;
	}
	/* a node's loss walks the whole directory: not at a page fault an entry (sga.h) */
	coral_sga_prefault(&d->sga, "grd_dir");
	/* the instance lock, shared, for lmsd's life: no cold-start recovery begins while it
	 * serves, and it serves nothing while one runs (see smond) */
	char lerr[CORAL_STR_MAX + 256];
	int rc = coral_instance_lock(&d->conf, false, (int)d->conf.supervisor.ready_timeout_ms, &l->lock_fd, lerr,
				     sizeof(lerr));
	if (rc != 0) {
		log_error("the instance lock: %s", lerr);
		return rc;
	}
	/* an lmsd before this one, with the cache serving: it died (or was killed as hung) with
	 * transfers under way that nobody can finish, so the node leaves (escalate) */
	int32_t prev = atomic_exchange(&l->cache->lmsd_pid, (int32_t)getpid());
	if (prev != 0 && atomic_load(&l->cache->since_inc) != 0 &&
	    !coral_cache_void(l->cache, coral_cluster_evicted_inc(l->cl))) {
		l->escalating = true;
		l->escalated_from = prev;
		l->escalate_since_ms = coral_now_mono_ns() / 1000000ull;
		log_error("lmsd pid %d ended while the cache served (incarnation %llu): the block transfers it had "
			  "under way cannot be resumed; the node leaves the cluster, the others recover what it held, "
			  "and it joins again with an empty cache", (int)prev,
			  (unsigned long long)atomic_load(&l->cache->since_inc));
	}
	rc = coral_kit_init(&l->kit, d, &lmsd_kit, l);
	if (rc != 0)
		return rc;
	struct gcs_ops ops = {
		.send = op_send, .master = op_master, .read = op_read, .write = op_write, .sync = op_sync,
		.flush_start = op_flush_start,
		.log_force = op_log_force, .done = op_done, .log = coral_kit_log, .lost_owner = op_lost_owner, .on_ring = op_on_ring, .arg = l,
	};
	l->core = gcs_core_new(l->self, l->cache, l->dir, &ops, (uint32_t)d->conf.cache.gcs_retry_ms,
			       (uint32_t)d->conf.cache.get_timeout_ms);
	char err[256];
	l->logwait = lmsd_logwait_new(d->base, l->redo, on_log_ready, l, err, sizeof(err));
	if (l->logwait != NULL)
		l->flusher = lmsd_worker_new(d->base, "checkpoint writer", flush_run, flush_done, l, err, sizeof(err));
	if (l->logwait == NULL || l->flusher == NULL) {
		log_error("%s", err);
		return CORAL_ESYS;
	}
	rc = coral_kit_start(&l->kit, l->core);
	if (rc != 0)
		return rc;
	l->next_checkpoint_ms = coral_now_mono_ns() / 1000000ull + (uint64_t)d->conf.cache.checkpoint_ms;
	return lmsd_cr_start(l);
}

static void lmsd_fini(struct coral_daemon *d)
{
	struct lmsd *l = d->svc;
	if (l == NULL)
		return;
	/* dirty images go to disk on a clean stop (a crash leaves them to instance recovery):
	 * the log forces of this last checkpoint wait */
	l->stopping = true;
	lmsd_worker_free(l->flusher);  /* a flush under way ends first (its blocks are on disk,
					* or stay dirty and are written again below) */
	l->flusher = NULL;
	if (l->core) {
		gcs_core_synced(core(l), CORAL_ECANCELED);
		/* batch by batch, each waiting (a bound: sessions may still be changing blocks) */
		for (uint32_t k = 0; k <= l->cache->nbuf / GCS_CKPT_BATCH + 1; k++)
			if (gcs_core_checkpoint(core(l)) <= 0)
				break;
		publish_ckpt(l);
	}
	lmsd_logwait_free(l->logwait);
	if (l->lock_fd >= 0)
		close(l->lock_fd); /* after the last checkpoint's writes */
	coral_ipc_server_free(l->cr_srv);
	SSL_CTX_free(l->cr_tls);
	free(l->cr_scratch);
	coral_kit_fini(&l->kit);
	gcs_core_free(l->core);
	for (int i = 0; i <= CORAL_MAX_DATAFILES; i++) {
		if (l->fds[i] > 0)
			close(l->fds[i]);
		free(l->paths[i]);
	}
	free(l);
	d->svc = NULL;
}

static const struct coral_daemon_def lmsd_def = {
	.id = CORAL_D_LMSD,
	.service = "Global Cache Service: block modes, 2-way and 3-way transfers, past images, write-back",
	.service_ready = true,
	.init = lmsd_init,
	.fini = lmsd_fini,
	.requests = lmsd_requests,
	.nrequests = CORAL_ARRAY_LEN(lmsd_requests),
	/* a connection per session slot, and a few for coralctl */
	.min_clients = CORAL_CACHE_SESSIONS + 8,
	.clients_limit = "the node's 1024 session slots and [lmsd] max_clients",
	.metrics = lmsd_metrics,
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &lmsd_def);
}

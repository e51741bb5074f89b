/* lmsd: the Global Cache Service daemon. It runs the GCS core (gcs.c) on the SGA's buffer
 * cache and grdd's directory, carries its messages over the interconnect (base_port+3) to the
 * lmsd of every other node, reads and writes blocks of the shared data files, forces redo
 * through the log writer (replicad) before it ships a dirty block, and answers libcoral
 * sessions' block requests and coralctl's gcs requests on its Unix socket, and other nodes'
 * sessions' consistent-read copies on base_port+4 ([cache] cr_direct). */
#include "gcs.h"

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
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 2

struct lmsd {
	struct coral_daemon *d;
	struct coral_kit kit;
	uint32_t self;
	struct gcs_core *core;
	struct coral_cluster_sga *cl;
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir;
	struct coral_cache *cache;
	struct coral_redo *redo;
	bool fenced;                       /* the node is fenced: no sessions served, no writes */
	uint64_t next_checkpoint_ms, next_reap_ms;
	int fds[CORAL_MAX_DATAFILES + 1];
	bool unsynced[CORAL_MAX_DATAFILES + 1];
	struct coral_ipc_server *cr_srv;   /* base_port+4: CR copies for other nodes' sessions */
	uint64_t cr_direct, cr_direct_refused;
};

/* A waiting session's request keeps where a pin taken for it is recorded (+1; 0: nowhere). */
enum { W_SESSION, W_SLOT, W_PIN };

static struct gcs_core *core(struct lmsd *l) { return coral_kit_core(&l->kit); }

/* ---- core ops ------------------------------------------------------------------------- */

static int op_send(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	struct lmsd *l = arg;
	return coral_kit_send(&l->kit, to, type, buf, len);
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
	if (rc != 0)
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
	 * fenced the node since) */
	if (coral_cluster_fenced(l->cl))
		return CORAL_EFENCED;
	h->scn = scn;
	char err[CORAL_ERRMSG_MAX];
	int rc = coral_block_write(fd, l->cache->block_size, data, err, sizeof(err));
	if (rc != 0)
		log_error("writing block %u:%llu: %s", file, (unsigned long long)block, err);
	else
		l->unsynced[file] = true;
	return rc;
}

static int op_sync(void *arg)
{
	struct lmsd *l = arg;
	int rc = 0;
	for (int f = 1; f <= CORAL_MAX_DATAFILES; f++) {
		if (!l->unsynced[f])
			continue;
		if (fdatasync(l->fds[f]) != 0) {
			log_error("syncing data file %d: %s", f, strerror(errno));
			rc = CORAL_EIO;
			continue;
		}
		l->unsynced[f] = false;
	}
	return rc;
}

static int op_log_force(void *arg, uint64_t lsn)
{
	struct lmsd *l = arg;
	if (atomic_load(&l->redo->durable) >= lsn)
		return 0;
	int rc = coral_redo_wait(l->redo, lsn, (int)l->d->conf.cache.commit_timeout_ms);
	if (rc != 0)
		log_warn("log force to LSN %llu: %s (is replicad running?)", (unsigned long long)lsn, coral_strerror(rc));
	return rc == 0 ? 1 : rc;
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
		coral_daemon_answer_error(l->d, w->conn, w->req_id, code, "%s%s", coral_strerror(code),
					  code == CORAL_ETIMEDOUT && gw.version == 0
						  ? " (no bucket map agreed yet: is grdd up on every node? coralctl grd status)"
					  : code == CORAL_ETIMEDOUT ? " (coralctl gcs block FILE BLOCK shows its master and holders)"
					  : code == CORAL_EFULL ? ": no free buffer until the deadline, every one pinned, a past "
								  "image or in transit (coralctl cache; [cache] buffers)"
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

static void on_tick(void *arg, const struct coral_cluster_view *v)
{
	(void)v;
	struct lmsd *l = arg;
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
	}
	/* once a second: the pins of sessions whose process died go (a pinned buffer is never
	 * shipped, written back or evicted) */
	if (now >= l->next_reap_ms) {
		l->next_reap_ms = now + 1000;
		uint64_t pins = 0;
		int dead = lmsd_sess_reap(l->cache, &pins);
		if (dead > 0)
			log_notice("%d session%s of processes that died: %llu pinned block%s released", dead,
				   dead == 1 ? "" : "s", (unsigned long long)pins, pins == 1 ? "" : "s");
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

static void kind_stats(Coral__GcsKindStats *k, Coral__GcsKindStats **kp, const char *name,
		       const struct gcs_hist *h)
{
	coral__gcs_kind_stats__init(k);
	k->kind = (char *)name;
	k->count = h->n;
	k->avg_us = h->n ? h->sum_us / h->n : 0;
	k->p99_us = gcs_hist_pct(h, 99.0);
	*kp = k;
}

static void h_stats(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmsd *l = d->svc;
	const struct gcs_stats *s = gcs_core_stats(l->core);
	Coral__GcsStatsReply r = CORAL__GCS_STATS_REPLY__INIT;
	/* local hits are counted in the SGA: most never reach lmsd */
	r.requests = atomic_load(&l->cache->st.gets);
	r.local_hits = atomic_load(&l->cache->st.local_hits);
	r.two_way = s->two_way;
	r.three_way = s->three_way;
	r.disk_reads = s->disk_reads;
	r.busy = s->busy;
	r.retries = s->retries;
	r.lost = s->lost;
	r.stale = s->stale;
	r.invalidations = s->invalidations;
	r.pi_kept = s->pi_kept;
	r.pi_dropped = s->pi_dropped;
	r.writes = s->writes;
	r.log_forces = s->log_forces;
	r.cr_served = s->cr_served;
	r.shipped = s->shipped;
	r.deferred = s->deferred;
	r.scn = coral_scn_current(l->cache);
	r.mastered = s->mastered;
	r.not_master = s->not_master;
	r.cr_direct = l->cr_direct;
	r.cr_direct_refused = l->cr_direct_refused;
	static const char *const names[GCS_SERVED_NKINDS] = {"?", "local", "2-way", "3-way", "disk", "cr"};
	Coral__GcsKindStats k[GCS_SERVED_NKINDS], *kp[GCS_SERVED_NKINDS];
	size_t n = 0;
	/* local hits are served in the sessions (no latency to speak of): counted above */
	for (int i = GCS_SERVED_2WAY; i < GCS_SERVED_NKINDS; i++, n++)
		kind_stats(&k[n], &kp[n], names[i], &s->lat[i]);
	r.kinds = kp;
	r.n_kinds = n;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GCS_STATS;
	resp.gcs_stats = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static void h_block(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmsd *l = d->svc;
	const Coral__GcsBlockRequest *q = req->gcs_block;
	Coral__GcsBlockReply r = CORAL__GCS_BLOCK_REPLY__INIT;
	struct coral_resid id = {.type = CORAL_RES_BLOCK, .id1 = q->file, .id2 = q->block};
	struct coral_grd_where w;
	coral_grd_lookup(l->map, &id, &w);
	r.master = w.master;
	r.map_version = w.version;
	Coral__GcsHolder h[CORAL_MAX_NODES], *hp[CORAL_MAX_NODES];
	char op[96] = "";
	size_t nh = 0;
	if (w.master == l->self) {
		uint32_t bucket = coral_resid_bucket(&id);
		coral_grd_dir_lock(l->dir, bucket);
		struct coral_grd_entry *e = coral_grd_dir_find(l->dir, &id);
		if (e != NULL) {
			r.found = true;
			for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
				int mode = coral_grd_entry_mode(e, n);
				bool pi = (e->pi >> (n - 1)) & 1;
				if (mode == 0 && !pi && e->cur != n)
					continue;
				coral__gcs_holder__init(&h[nh]);
				h[nh].node = n;
				h[nh].mode = (char *)coral_grd_mode_name(true, mode);
				h[nh].pi = pi;
				h[nh].current = e->cur == n;
				hp[nh] = &h[nh];
				nh++;
			}
			r.gen = e->gen;
			r.disk_scn = e->disk_scn;
			r.queued = e->nconv;
			if (e->op_phase)
				snprintf(op, sizeof(op), "%s for node %u in %s (operation %llu)",
					 e->op_phase == 1 ? "invalidating" : "transferring", e->op_node,
					 coral_grd_mode_name(true, e->op_mode), (unsigned long long)e->gen);
		}
		coral_grd_dir_unlock(l->dir, bucket);
	}
	r.holders = hp;
	r.n_holders = nh;
	r.op = op;
	uint32_t ch = coral_cache_chain(l->cache, q->file, q->block);
	coral_cache_lock(l->cache, ch);
	struct coral_buf *b = coral_cache_find(l->cache, q->file, q->block, false);
	struct coral_buf *p = coral_cache_find(l->cache, q->file, q->block, true);
	r.local_mode = (char *)coral_grd_mode_name(true, b ? b->mode : 0);
	r.local_scn = b ? b->scn : p ? p->scn : 0;
	r.local_dirty = b && (b->flags & CORAL_BUFF_DIRTY);
	r.local_pi = p != NULL;
	r.local_pins = b ? (atomic_load(&b->pins) & ~CORAL_BUF_XPIN) + ((atomic_load(&b->pins) & CORAL_BUF_XPIN) ? 1 : 0) : 0;
	coral_cache_unlock(l->cache, ch);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GCS_BLOCK;
	resp.gcs_block = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* ---- consistent-read copies for other nodes' sessions ([cache] cr_direct) --------------- */

/* A session of another node asks for a CR copy straight from this node, which it last saw
 * holding the block. This node's current image in S or X is the newest there is (an X holder
 * has the only current image; S holders exist only while no node holds X), so a copy taken
 * now is at least as new as the moment the session asked. A block being changed (X pin) or
 * not held here is refused; the session then takes the full path through its own lmsd. The
 * port carries nothing else: no control request is accepted on it. */
static void on_cr_frame(void *arg, struct coral_ipc_conn *conn, const uint8_t *data, uint32_t len)
{
	struct lmsd *l = arg;
	/* a CR request is a few dozen bytes: decoded on the stack (no malloc, nothing to free);
	 * anything bigger fails to decode and is refused */
	_Alignas(16) uint8_t mem[1024];
	struct coral_pb_arena ar;
	coral_pb_arena_init(&ar, mem, sizeof(mem));
	Coral__CtlRequest *req = coral_ctl_request_decode_in(&ar, data, len);
	if (req == NULL || req->body_case != CORAL__CTL_REQUEST__BODY_GCS_CR_READ) {
		coral_ipc_conn_refuse(conn, "not a consistent-read request");
		return;
	}
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__GcsCrReadReply r = CORAL__GCS_CR_READ_REPLY__INIT;
	hdr.sender_node = l->self;
	hdr.sender = (char *)l->d->name;
	hdr.request_id = coral_ctl_request_id(req);
	resp.hdr = &hdr;
	uint32_t file = req->gcs_cr_read->file;
	uint64_t block = req->gcs_cr_read->block;
	uint32_t ch = coral_cache_chain(l->cache, file, block);
	/* a fenced node serves no copies: the full path elsewhere gives the current one */
	bool fenced = coral_cluster_fenced(l->cl);
	coral_cache_lock(l->cache, ch);
	struct coral_buf *b = coral_cache_find(l->cache, file, block, false);
	bool held = b != NULL && b->mode >= CORAL_BL_S && !fenced;
	/* a shared pin keeps sessions from changing the image while the socket copies it
	 * straight out of the buffer (a session wanting X waits those microseconds, as behind
	 * a local reader); the pin goes before this handler returns, so nothing of lmsd's own
	 * ever finds it */
	bool pinned = held && coral_buf_try_pin(b, false);
	if (pinned)
		r.scn = b->scn;
	coral_cache_unlock(l->cache, ch);
	if (pinned) {
		l->cr_direct++;
		r.data.data = (uint8_t *)coral_cache_data(l->cache, coral_cache_index(l->cache, b));
		r.data.len = l->cache->block_size;
		resp.body_case = CORAL__CTL_RESPONSE__BODY_GCS_CR_READ;
		resp.gcs_cr_read = &r;
	} else {
		l->cr_direct_refused++;
		resp.code = held ? CORAL_EBUSY : CORAL_ENOENT;
		resp.error = held ? "being changed here" : "not held here";
	}
	coral_ipc_conn_send(conn, &resp.base);
	if (pinned)
		coral_cache_unpin(l->cache, b, false);
}

static int cr_start(struct lmsd *l)
{
	const struct coral_conf *conf = &l->d->conf;
	if (!conf->cache.cr_direct || conf->tls.enabled)
		return 0;
	struct coral_ipc_server_opts o = {
		.tcp_host = l->d->node->host,
		.tcp_port = (int)(l->d->node->base_port + CORAL_PORT_LMSD_CR),
		.max_frame = (size_t)conf->cluster.max_frame,
		/* the same bounds as the daemon's own socket ([lmsd] max_clients, out_queue) */
		.max_clients = (int)conf->daemon[CORAL_D_LMSD].max_clients,
		.out_queue = (size_t)conf->daemon[CORAL_D_LMSD].out_queue,
		.on_frame = on_cr_frame,
		.arg = l,
	};
	char err[256];
	l->cr_srv = coral_ipc_server_new(l->d->base, &o, err, sizeof(err));
	if (l->cr_srv == NULL) {
		log_error("consistent-read port: %s", err);
		return CORAL_ESYS;
	}
	return 0;
}

static const struct coral_daemon_request lmsd_requests[] = {
	{CORAL__CTL_REQUEST__BODY_GCS_GET, false, h_get},
	{CORAL__CTL_REQUEST__BODY_GCS_STATS, false, h_stats},
	{CORAL__CTL_REQUEST__BODY_GCS_BLOCK, false, h_block},
};

/* ---- lifecycle ------------------------------------------------------------------------- */

static void kit_clock(void *c, uint64_t mono_ns, uint64_t real_ns)
{
	(void)real_ns;
	gcs_core_clock(c, mono_ns / 1000ull);
}

static void kit_recv(void *c, uint32_t from, uint8_t type, const uint8_t *data, size_t len)
{
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
	atomic_store(&l->cache->lmsd_pid, (int32_t)getpid());
	int rc = coral_kit_init(&l->kit, d, &lmsd_kit, l);
	if (rc != 0)
		return rc;
	struct gcs_ops ops = {
		.send = op_send, .master = op_master, .read = op_read, .write = op_write, .sync = op_sync,
		.log_force = op_log_force, .done = op_done, .log = coral_kit_log, .arg = l,
	};
	l->core = gcs_core_new(l->self, l->cache, l->dir, &ops, (uint32_t)d->conf.cache.gcs_retry_ms,
			       (uint32_t)d->conf.cache.get_timeout_ms);
	rc = coral_kit_start(&l->kit, l->core);
	if (rc != 0)
		return rc;
	l->next_checkpoint_ms = coral_now_mono_ns() / 1000000ull + (uint64_t)d->conf.cache.checkpoint_ms;
	return cr_start(l);
}

static void lmsd_fini(struct coral_daemon *d)
{
	struct lmsd *l = d->svc;
	if (l == NULL)
		return;
	/* dirty images go to disk on a clean stop (a crash leaves them to instance recovery) */
	if (l->core)
		gcs_core_checkpoint(core(l));
	coral_ipc_server_free(l->cr_srv);
	coral_kit_fini(&l->kit);
	gcs_core_free(l->core);
	for (int i = 0; i <= CORAL_MAX_DATAFILES; i++)
		if (l->fds[i] > 0)
			close(l->fds[i]);
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
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &lmsd_def);
}

/* grdd: the global resource directory daemon. It runs the core (core.c) on the SGA's map and
 * directory, carries its messages over the interconnect (base_port+2) to the grdd of every
 * other node, keeps the map record in raftd's config store (read, watched, written with
 * compare-and-swap through raftd's Unix socket), follows the cluster view raftd publishes in
 * the SGA, and answers coralctl's grd requests. */
#include "core.h"

#include "cluster.h"
#include "ctl.h"
#include "daemon.h"
#include "errors.h"
#include "grd.h"
#include "kit.h"
#include "kv.h"
#include "log.h"
#include "net.h"
#include "util.h"

#include <event2/event.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 10

struct grdd {
	struct coral_daemon *d;
	struct coral_kit kit;
	uint32_t self;
	struct grd_core *core;
	struct coral_ctl_client *raft;
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir, *held;
	bool read_done, get_out, watch_out;
	bool raft_answered;  /* the current connection to raftd has answered */
	uint64_t watch_index, raft_retry_ms;
};

static uint64_t now_ms(void) { return coral_now_mono_ns() / 1000000ull; }
static struct grd_core *core(struct grdd *g) { return coral_kit_core(&g->kit); }

/* ---- core ops ------------------------------------------------------------------------- */

static int op_send(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	struct grdd *g = arg;
	return coral_kit_send(&g->kit, to, type, buf, len);
}

static void on_store_done(void *arg, int err, const Coral__CtlResponse *resp)
{
	uint64_t *cookie = arg;
	struct grdd *g = (struct grdd *)(uintptr_t)cookie[1];
	int code = err != 0 ? err : resp->code;
	uint64_t index = err == 0 && resp->kv ? resp->kv->index : 0;
	if (code != 0 && code != CORAL_ECONFLICT)
		log_warn("storing the map in raftd failed: %s", err ? coral_strerror(err) : resp->error);
	grd_core_store_done(core(g), cookie[0], code, index);
	free(cookie);
}

static int op_store(void *arg, const uint8_t *buf, size_t len, uint64_t expect_index, uint64_t cookie)
{
	struct grdd *g = arg;
	struct coral_kv_req r;
	coral_kv_cas(&r, GRD_MAP_KEY, buf, len, expect_index);
	coral_kv_from(&r, "grdd", g->self);
	uint64_t *ck = malloc(2 * sizeof(uint64_t));
	if (ck == NULL)
		return CORAL_ENOMEM;
	ck[0] = cookie;
	ck[1] = (uint64_t)(uintptr_t)g;
	int rc = g->raft ? coral_ctl_client_call(g->raft, &r.req, 5000, on_store_done, ck) : CORAL_ECLOSED;
	if (rc != 0)
		free(ck);
	return rc;
}

static void op_answer(void *arg, uint64_t cookie, int code, const char *error, const struct grd_answer *a)
{
	struct grdd *g = arg;
	struct coral_wait wt, *w = &wt;
	if (!coral_kit_wait_take(&g->kit, cookie, w))
		return;
	if (code != 0) {
		coral_daemon_answer_error(g->d, w->conn, w->req_id, code, "%s", error ? error : coral_strerror(code));
		return;
	}
	Coral__GrdLockReply r = CORAL__GRD_LOCK_REPLY__INIT;
	r.master = a->master;
	r.map_version = a->version;
	r.attempts = a->attempts;
	r.elapsed_us = (coral_now_mono_ns() - w->started_ns) / 1000;
	char mode[8] = "";
	r.mode = mode;
	snprintf(mode, sizeof(mode), "%d", a->mode);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GRD_LOCK;
	resp.grd_lock = &r;
	coral_daemon_answer(g->d, w->conn, w->req_id, &resp);
}

static void op_remastered(void *arg, uint64_t cookie, int code, const char *error,
			  const Coral__GrdRemasterReply *rr)
{
	struct grdd *g = arg;
	struct coral_wait wt, *w = &wt;
	if (!coral_kit_wait_take(&g->kit, cookie, w))
		return;
	if (code != 0) {
		coral_daemon_answer_error(g->d, w->conn, w->req_id, code, "%s", error && error[0] ? error : coral_strerror(code));
		return;
	}
	Coral__GrdRemasterReply empty = CORAL__GRD_REMASTER_REPLY__INIT;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GRD_REMASTER;
	resp.grd_remaster = rr ? (Coral__GrdRemasterReply *)rr : &empty;
	coral_daemon_answer(g->d, w->conn, w->req_id, &resp);
}

/* ---- raftd: the map record ----------------------------------------------------------- */

static void raft_call(struct grdd *g, struct coral_kv_req *r, int timeout, coral_ctl_done_fn fn)
{
	coral_kv_from(r, "grdd", g->self);
	if (g->raft == NULL || coral_ctl_client_call(g->raft, &r->req, timeout, fn, g) != 0) {
		g->get_out = g->watch_out = false;
		g->raft_retry_ms = now_ms() + 200;
	}
}

static void on_get(void *arg, int err, const Coral__CtlResponse *resp)
{
	struct grdd *g = arg;
	g->get_out = false;
	g->raft_answered |= err == 0;
	int code = err ? err : resp->code;
	if (code == CORAL_ENOENT) {
		g->read_done = true;
		g->watch_index = resp->kv ? resp->kv->index : 0;
		grd_core_apply(core(g), NULL, 0, 0);
		return;
	}
	if (code != 0 || resp->kv == NULL) {
		g->raft_retry_ms = now_ms() + 200;
		return;
	}
	g->read_done = true;
	g->watch_index = resp->kv->index;
	if (resp->kv->n_kv == 1)
		grd_core_apply(core(g), resp->kv->kv[0]->value.data, resp->kv->kv[0]->value.len,
			       resp->kv->kv[0]->mod_index);
	else
		grd_core_apply(core(g), NULL, 0, 0);
}

static void raft_poll(struct grdd *g);

static void on_watch(void *arg, int err, const Coral__CtlResponse *resp)
{
	struct grdd *g = arg;
	g->watch_out = false;
	g->raft_answered |= err == 0;
	int code = err ? err : resp->code;
	if (code != 0 || resp->watch == NULL) {
		if (code != CORAL_ETIMEDOUT)
			g->raft_retry_ms = now_ms() + 200;
		return;
	}
	const Coral__WatchReply *w = resp->watch;
	if (w->compacted) {
		g->read_done = false; /* read the key again */
		return;
	}
	for (size_t i = 0; i < w->n_events; i++) {
		const Coral__WatchEvent *e = w->events[i];
		if (strcmp(e->key, GRD_MAP_KEY) == 0 && !e->deleted && e->value_index != 0)
			grd_core_apply(core(g), e->value.data, e->value.len, e->value_index);
	}
	if (w->index > g->watch_index)
		g->watch_index = w->index;
	raft_poll(g); /* watch again now: the next version may be committed before the tick */
}

static void raft_poll(struct grdd *g)
{
	if (g->get_out || g->watch_out || now_ms() < g->raft_retry_ms)
		return;
	struct coral_kv_req r;
	if (!g->read_done) {
		coral_kv_get(&r, GRD_MAP_KEY, false);
		g->get_out = true;
		raft_call(g, &r, 5000, on_get);
		return;
	}
	coral_kv_watch(&r, GRD_MAP_KEY, false, g->watch_index, 10000);
	g->watch_out = true;
	raft_call(g, &r, 12000, on_watch);
}

/* ---- the tick ------------------------------------------------------------------------- */

/* The connection to the node's raftd is made again once it is gone (raftd killed or
 * restarted by the supervisor): without this grdd stayed deaf to the map record for good,
 * and a grdd that had not read the map yet stayed at map version 0 (the main job, killing
 * the leader's raftd, showed it in about one run in four). The key is read again: changes
 * made meanwhile were not watched. */
static void raft_reconnect(struct grdd *g)
{
	if (g->raft != NULL && !coral_ctl_client_closed(g->raft))
		return;
	if (g->raft != NULL) {
		coral_ctl_client_free(g->raft);
		g->raft = NULL;
		if (g->raft_answered)  /* once per loss, not for each refused attempt after it */
			log_notice("connection to raftd lost: connecting again");
		g->raft_answered = false;
	}
	char sock[CORAL_STR_MAX + 32];
	coral_conf_sock_path(g->d->node, "raftd", sock, sizeof(sock));
	g->raft = coral_ctl_client_new(g->d->base, sock, (size_t)g->d->conf.cluster.max_frame);
	if (g->raft == NULL)
		return;  /* not listening yet: the next tick tries again */
	g->get_out = g->watch_out = false;
	g->read_done = false;
	g->raft_retry_ms = 0;
}

static void on_tick(void *arg, const struct coral_cluster_view *vp)
{
	struct grdd *g = arg;
	const struct coral_cluster_view v = *vp;
	raft_reconnect(g);
	struct grd_member m[CORAL_MAX_NODES];
	size_t n = 0;
	for (uint32_t i = 0; i < v.nmembers && i < CORAL_MAX_NODES; i++) {
		const struct coral_member_view *mv = &v.members[i];
		m[n].id = mv->id;
		m[n].incarnation = mv->incarnation;
		m[n].active = mv->state == CORAL_MEMBER_ACTIVE;
		m[n].reachable = mv->id == g->self;
		if (g->kit.net && mv->id != g->self) {
			struct coral_net_peer_stats st;
			coral_net_peer_stats(g->kit.net, mv->id, &st);
			m[n].reachable = st.out_up && st.in_up;
		}
		n++;
	}
	grd_core_set_cluster(g->core, v.fenced ? 0 : v.leader, v.fenced, m, n);
	grd_core_tick(g->core, now_ms(), coral_now_real_ns() / 1000000ull);
	raft_poll(g);
}

/* ---- control requests ------------------------------------------------------------------ */

static void h_status(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	Coral__GrdStatusReply r = CORAL__GRD_STATUS_REPLY__INIT;
	uint32_t seq;
	uint32_t per[CORAL_MAX_NODES + 1];
	uint32_t members[CORAL_MAX_NODES];
	uint32_t nm;
	uint32_t lost = 0, nres, nbo;
	do {
		seq = coral_seq_read_begin(&g->map->seq);
		memset(per, 0, sizeof(per));
		lost = 0;
		for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
			per[g->map->owner[b] <= CORAL_MAX_NODES ? g->map->owner[b] : 0]++;
			lost += g->map->lost_owner[b] != 0;
		}
		r.map_version = g->map->version;
		nm = g->map->nmembers;
		memcpy(members, g->map->members, sizeof(members));
		nres = g->map->nres;
		nbo = g->map->nbo;
	} while (coral_seq_read_retry(&g->map->seq, seq));
	Coral__GrdNodeStat ns[CORAL_MAX_NODES], *nsp[CORAL_MAX_NODES];
	double sum = 0, sq = 0;
	for (uint32_t i = 0; i < nm && i < CORAL_MAX_NODES; i++) {
		coral__grd_node_stat__init(&ns[i]);
		ns[i].node = members[i];
		ns[i].buckets = per[members[i]];
		if (members[i] == g->self) {
			ns[i].resources = g->dir->used;
			ns[i].capacity = g->dir->capacity;
		}
		nsp[i] = &ns[i];
		sum += per[members[i]];
		sq += (double)per[members[i]] * per[members[i]];
	}
	r.nodes = nsp;
	r.n_nodes = nm;
	if (nm > 0) {
		double mean = sum / nm, var = sq / nm - mean * mean;
		r.load_stddev_pct = mean > 0 ? 100.0 * sqrt(var > 0 ? var : 0) / mean : 0;
	}
	r.node_id = g->self;
	r.coordinator = grd_core_coordinator(g->core);
	uint64_t rem[CORAL_GRD_NCAUSES];
	char *causes[CORAL_GRD_NCAUSES];
	for (int i = 0; i < CORAL_GRD_NCAUSES; i++) {
		rem[i] = atomic_load(&g->map->remasters[i]);
		causes[i] = (char *)coral_grd_cause_name(i);
	}
	r.remasters = rem;
	r.n_remasters = CORAL_GRD_NCAUSES;
	r.causes = causes;
	r.n_causes = CORAL_GRD_NCAUSES;
	r.resources = g->dir->used;
	r.capacity = g->dir->capacity;
	r.evictions = atomic_load(&g->dir->evictions);
	r.refused_full = atomic_load(&g->dir->refused_full);
	r.held = g->held->used;
	r.held_capacity = g->held->capacity;
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
		int s = atomic_load(&g->dir->bstate[b]);
		r.frozen_buckets += s == CORAL_GRDB_FROZEN;
		r.rebuilding_buckets += s == CORAL_GRDB_REBUILDING;
	}
	r.lost_buckets = lost;
	r.res_overrides = nres;
	r.bucket_overrides = nbo;
	char move[256];
	grd_core_move_line(g->core, move, sizeof(move));
	r.move = move;
	const struct grd_stats *st = grd_core_stats(g->core);
	r.requests = st->requests;
	r.granted = st->granted;
	r.retried = st->retried;
	r.refused = st->refused;
	r.remastered_buckets = atomic_load(&g->map->remastered_buckets);
	r.remastered_resources = atomic_load(&g->map->remastered_resources);
	r.remaster_bytes = atomic_load(&g->map->remaster_bytes);
	r.moves_cancelled = atomic_load(&g->map->moves_cancelled);
	r.moves_failed = atomic_load(&g->map->moves_failed);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GRD_STATUS;
	resp.grd_status = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static void h_resource(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	struct coral_resid id;
	char err[256];
	if (coral_resid_parse(req->grd_resource->id, &id, err, sizeof(err)) != 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EINVAL, "%s", err);
		return;
	}
	struct coral_grd_where w;
	coral_grd_lookup(g->map, &id, &w);
	Coral__GrdResourceReply r = CORAL__GRD_RESOURCE_REPLY__INIT;
	char ids[64];
	coral_resid_format(&id, ids, sizeof(ids));
	r.id = ids;
	r.bucket = w.bucket;
	r.master = w.master;
	r.map_version = w.version;
	r.overridden = w.overridden;
	r.lost_owner = w.lost_owner;
	Coral__GrdEntry em;
	struct grd_entry_buf eb;
	uint8_t lvb[CORAL_GRD_LVB];
	char state[96] = "not mastered here";
	if (w.master == g->self) {
		int bs = atomic_load(&g->dir->bstate[w.bucket]);
		coral_grd_dir_lock(g->dir, w.bucket);
		struct coral_grd_entry *e = coral_grd_dir_find(g->dir, &id);
		if (e) {
			grd_entry_to_msg(e, &em, &eb);
			memcpy(lvb, e->lvb, sizeof(lvb)); /* copied: the answer is packed after unlock */
			em.lvb.data = lvb;
			r.entry = &em;
			r.found = true;
			snprintf(state, sizeof(state), "%s", (e->flags & CORAL_GRDE_RECOVERY) ? "needs recovery"
							   : (e->flags & CORAL_GRDE_FROZEN) ? "frozen (moving)"
							   : (e->flags & CORAL_GRDE_STAGED) ? "staged" : "active");
		} else {
			snprintf(state, sizeof(state), "%s", w.lost_owner ? "unknown since its master was lost: needs recovery"
							     : "no entry (never requested, or evicted while unheld)");
		}
		coral_grd_dir_unlock(g->dir, w.bucket);
		if (bs != CORAL_GRDB_ACTIVE)
			snprintf(state, sizeof(state), "bucket %s", bs == CORAL_GRDB_FROZEN ? "frozen (moving)" : "being rebuilt");
	}
	r.state = state;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GRD_RESOURCE;
	resp.grd_resource = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

struct topent {
	uint64_t accesses;
	uint32_t index;
};

static int top_cmp(const void *a, const void *b)
{
	const struct topent *x = a, *y = b;
	return x->accesses < y->accesses ? 1 : x->accesses > y->accesses ? -1 : 0;
}

static void h_top(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	uint32_t want = req->grd_top->count ? req->grd_top->count : 10;
	if (want > 100)
		want = 100;
	struct topent top[101];
	size_t n = 0;
	for (uint32_t i = 0; i < g->dir->capacity; i++) {
		const struct coral_grd_entry *e = coral_grd_dir_entry(g->dir, i);
		if (!(e->flags & CORAL_GRDE_USED) || e->accesses == 0)
			continue;
		if (n < want) {
			top[n++] = (struct topent){e->accesses, i};
			qsort(top, n, sizeof(top[0]), top_cmp);
		} else if (e->accesses > top[n - 1].accesses) {
			top[n - 1] = (struct topent){e->accesses, i};
			qsort(top, n, sizeof(top[0]), top_cmp);
		}
	}
	Coral__GrdTopItem it[100], *itp[100];
	Coral__GrdAffinity af[100][CORAL_GRD_AFF], *afp[100][CORAL_GRD_AFF];
	char ids[100][64];
	for (size_t i = 0; i < n; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(g->dir, top[i].index);
		coral_grd_dir_lock(g->dir, e->bucket);
		coral__grd_top_item__init(&it[i]);
		coral_resid_format(&e->id, ids[i], sizeof(ids[i]));
		it[i].id = ids[i];
		it[i].accesses = e->accesses;
		it[i].master = g->self;
		size_t na = 0;
		for (int k = 0; k < CORAL_GRD_AFF; k++) {
			if (e->aff[k].node == 0)
				continue;
			coral__grd_affinity__init(&af[i][na]);
			af[i][na].node = e->aff[k].node;
			af[i][na].count = e->aff[k].count;
			afp[i][na] = &af[i][na];
			na++;
		}
		coral_grd_dir_unlock(g->dir, e->bucket);
		it[i].affinity = afp[i];
		it[i].n_affinity = na;
		itp[i] = &it[i];
	}
	Coral__GrdTopReply r = CORAL__GRD_TOP_REPLY__INIT;
	r.items = itp;
	r.n_items = n;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GRD_TOP;
	resp.grd_top = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static void h_remaster(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	uint64_t cookie = coral_kit_wait_add(&g->kit, conn, req, NULL);
	if (cookie == 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EBUSY, "too many requests waiting");
		return;
	}
	grd_core_remaster(core(g), req->grd_remaster, cookie);
}

static void h_history(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	static Coral__GrdHistoryItem items[GRD_HISTORY];
	Coral__GrdHistoryItem *ip[GRD_HISTORY];
	size_t n = grd_core_history(g->core, items, GRD_HISTORY);
	for (size_t i = 0; i < n; i++)
		ip[i] = &items[i];
	Coral__GrdHistoryReply r = CORAL__GRD_HISTORY_REPLY__INIT;
	r.items = ip;
	r.n_items = n;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GRD_HISTORY;
	resp.grd_history = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static void h_lock(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	const Coral__GrdLockRequest *l = req->grd_lock;
	struct coral_resid id;
	char err[256];
	if (coral_resid_parse(l->id, &id, err, sizeof(err)) != 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EINVAL, "%s", err);
		return;
	}
	bool block = coral_resid_is_block(&id);
	int mode = 0;
	if (l->op == 1) {
		mode = coral_grd_mode_parse(block, l->mode ? l->mode : "");
		if (mode <= 0) {
			coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EINVAL,
						  "'%s' is not a mode to acquire %s in: %s", l->mode ? l->mode : "", l->id,
						  block ? "S or X" : "CR, CW, PR, PW or EX");
			return;
		}
	} else if (l->op != 2) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EINVAL, "op is 1 (acquire) or 2 (release)");
		return;
	}
	uint64_t cookie = coral_kit_wait_add(&g->kit, conn, req, NULL);
	if (cookie == 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EBUSY, "too many requests waiting");
		return;
	}
	int rc = grd_core_lock(core(g), &id, (int)l->op, mode, cookie);
	if (rc != 0) {
		struct coral_wait dropped;
		coral_kit_wait_take(&g->kit, cookie, &dropped);
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), rc, "max_pending (%lld) requests are in flight, "
					  "or one for %s is", (long long)d->conf.grd.max_pending, l->id);
	}
}

static const struct coral_daemon_request grdd_requests[] = {
	{CORAL__CTL_REQUEST__BODY_GRD_STATUS, false, h_status},
	{CORAL__CTL_REQUEST__BODY_GRD_RESOURCE, false, h_resource},
	{CORAL__CTL_REQUEST__BODY_GRD_TOP, false, h_top},
	{CORAL__CTL_REQUEST__BODY_GRD_REMASTER, true, h_remaster},
	{CORAL__CTL_REQUEST__BODY_GRD_HISTORY, false, h_history},
	{CORAL__CTL_REQUEST__BODY_GRD_LOCK, true, h_lock},
};

/* ---- start and stop --------------------------------------------------------------------- */

static void kit_clock(void *c, uint64_t mono_ns, uint64_t real_ns)
{
	grd_core_clock(c, mono_ns / 1000000ull, real_ns / 1000000ull);
}

static void kit_recv(void *c, uint32_t from, uint8_t type, const uint8_t *data, size_t len)
{
	grd_core_recv(c, from, type, data, len);
}

static const struct coral_kit_def grdd_kit = {
	.port = CORAL_PORT_GRDD, .tick_ms = TICK_MS, .selfq = 4096, .waits = 1024,
	.clock = kit_clock, .recv = kit_recv, .tick = on_tick,
};

static int grdd_init(struct coral_daemon *d)
{
	struct grdd *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return CORAL_ENOMEM;
	d->svc = g;
	g->d = d;
	g->self = (uint32_t)d->node->id;
	g->map = coral_grd_map_sga(&d->sga);
	g->dir = coral_grd_dir_sga(&d->sga, "grd_dir");
	g->held = coral_grd_dir_sga(&d->sga, "grd_held");
	if (!g->map || !g->dir || !g->held) {
		log_error("the SGA has no grd_map, grd_dir or grd_held section: restart the node");
		return CORAL_EVERSION;
	}
	int rc = coral_kit_init(&g->kit, d, &grdd_kit, g);
	if (rc != 0)
		return rc;
	struct grd_core_ops ops = {
		.send = op_send, .store = op_store, .answer = op_answer, .remastered = op_remastered,
		.log = coral_kit_log, .arg = g,
	};
	g->core = grd_core_new(g->self, &d->conf.grd, g->map, g->dir, g->held, &ops);
	raft_reconnect(g);  /* raftd not listening yet: the tick connects later */
	return coral_kit_start(&g->kit, g->core);
}

static void grdd_fini(struct coral_daemon *d)
{
	struct grdd *g = d->svc;
	if (g == NULL)
		return;
	if (g->raft)
		coral_ctl_client_free(g->raft);
	coral_kit_fini(&g->kit);
	grd_core_free(g->core);
	free(g);
	d->svc = NULL;
}

static const struct coral_daemon_def grdd_def = {
	.id = CORAL_D_GRDD,
	.service = "global resource directory: bucket map, mastering, remastering, rebuild",
	.service_ready = true,
	.init = grdd_init,
	.fini = grdd_fini,
	.requests = grdd_requests,
	.nrequests = CORAL_ARRAY_LEN(grdd_requests),
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &grdd_def);
}

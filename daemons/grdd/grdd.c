/* grdd: the global resource directory daemon. How it is wired: the kit (libcommon/kit.c)
 * carries the core's (core.c and its parts) messages over the interconnect (base_port+2) to
 * the grdd of every other node and hands it raftd's cluster view each tick; the map record
 * lives in raftd's config store (read, watched, written with compare-and-swap through the
 * raftd client, libcommon/kv.c); coralctl's grd requests are answered by ctl.c. */
#include "grdd.h"

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
#include <stdlib.h>
#include <string.h>

#define TICK_MS 10

static uint64_t now_ms(void) { return coral_now_mono_ns() / 1000000ull; }
static struct grd_core *core(struct grdd *g) { return grdd_core(g); }

/* ---- core ops ------------------------------------------------------------------------- */

static int op_send(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	struct grdd *g = arg;
	return coral_kit_send(&g->kit, to, type, buf, len);
}

static void on_store_done(void *arg, int err, const Coral__CtlResponse *resp)
{
	struct grdd *g = arg;
	int code = err != 0 ? err : resp->code;
	uint64_t index = err == 0 && resp->kv ? resp->kv->index : 0;
	if (code != 0 && code != CORAL_ECONFLICT)
		log_warn("storing the map in raftd failed: %s", err ? coral_strerror(err) : resp->error);
	grd_core_store_done(core(g), g->store_cookie, code, index);
}

static int op_store(void *arg, const uint8_t *buf, size_t len, uint64_t expect_index, uint64_t cookie)
{
	struct grdd *g = arg;
	struct coral_kv_req r;
	coral_kv_cas(&r, GRD_MAP_KEY, buf, len, expect_index);
	coral_kv_from(&r, "grdd", g->self);
	g->store_cookie = cookie;
	return g->raft ? coral_ctl_client_call(g->raft, &r.req, 5000, on_store_done, g) : CORAL_ECLOSED;
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
		m[n].instance = mv->instance;
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

/* grd status's figures that are levels, not counts (the rest are counters) */
static const char *const grd_gauges[] = {"map_version", "coordinator", "load_stddev_pct", "resources",
	"capacity", "held", "held_capacity", "frozen_buckets", "rebuilding_buckets", "lost_buckets",
	"res_overrides", "bucket_overrides", "node_id", NULL};

static const struct coral_daemon_request grdd_requests[] = {
	{CORAL__CTL_REQUEST__BODY_GRD_STATUS, false, grdd_h_status, "grd", grd_gauges},
	{CORAL__CTL_REQUEST__BODY_GRD_RESOURCE, false, grdd_h_resource, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GRD_TOP, false, grdd_h_top, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GRD_REMASTER, true, grdd_h_remaster, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GRD_HISTORY, false, grdd_h_history, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GRD_LOCK, true, grdd_h_lock, NULL, NULL},
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
	/* a node's loss and a remaster walk the whole directory: not at a page fault an entry */
	coral_sga_prefault(&d->sga, "grd_dir");
	coral_sga_prefault(&d->sga, "grd_held");
	int rc = coral_kit_init(&g->kit, d, &grdd_kit, g);
	if (rc != 0)
		return rc;
	struct grd_core_ops ops = {
		.send = op_send, .store = op_store, .answer = op_answer, .remastered = op_remastered,
		.log = coral_kit_log, .arg = g,
	};
	g->core = grd_core_new(g->self, &d->conf.grd, g->map, g->dir, g->held, &ops);
	if (g->core == NULL)
		return CORAL_ENOMEM;
	/* a dead member that never rejoins is evicted by a new leader once evict_grace_ms of
	 * silence and lease_ms (+ drift) of leadership have passed: hold that long, and 1 s */
	const struct coral_raft_conf *raft = &d->conf.raft;
	int64_t wait = raft->evict_grace_ms > raft->lease_ms ? raft->evict_grace_ms : raft->lease_ms;
	grd_core_set_leave_hold(g->core, (uint64_t)(wait + raft->lease_drift_ms + 1000));
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

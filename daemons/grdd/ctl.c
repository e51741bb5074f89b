/* grdd's control requests (coralctl grd ...): the directory's status, one resource, the
 * most accessed resources, the map's history, answered at once from the SGA and the core;
 * remaster and lock, answered when the core is done (a cookie of the kit's table). */
#include "grdd.h"

#include "errors.h"
#include "grd.h"
#include "log.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A consistent look at the map: buckets per node, lost buckets, members, overrides. */
struct map_look {
	uint64_t version;
	uint32_t per[CORAL_MAX_NODES + 1];
	uint32_t members[CORAL_MAX_NODES];
	uint32_t nm, lost, nres, nbo;
};

static void look_at_map(const struct coral_grd_map_sga *map, struct map_look *m)
{
	uint32_t seq;
	do {
		seq = coral_seq_read_begin(&map->seq);
		memset(m, 0, sizeof(*m));
		for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
			m->per[map->owner[b] <= CORAL_MAX_NODES ? map->owner[b] : 0]++;
			m->lost += map->lost_owner[b] != 0;
		}
		m->version = map->version;
		m->nm = map->nmembers < CORAL_MAX_NODES ? map->nmembers : CORAL_MAX_NODES;
		memcpy(m->members, map->members, sizeof(m->members));
		m->nres = map->nres;
		m->nbo = map->nbo;
	} while (coral_seq_read_retry(&map->seq, seq));
}

/* Buckets per member, and how even they are (standard deviation in % of the mean). */
static void node_stats(const struct grdd *g, const struct map_look *m, Coral__GrdNodeStat *ns,
		       Coral__GrdNodeStat **nsp, Coral__GrdStatusReply *r)
{
	double sum = 0, sq = 0;
	for (uint32_t i = 0; i < m->nm; i++) {
		uint32_t id = m->members[i], b = m->per[id <= CORAL_MAX_NODES ? id : 0];
		coral__grd_node_stat__init(&ns[i]);
		ns[i].node = id;
		ns[i].buckets = b;
		if (id == g->self) {
			ns[i].resources = g->dir->used;
			ns[i].capacity = g->dir->capacity;
		}
		nsp[i] = &ns[i];
		sum += b;
		sq += (double)b * b;
	}
	r->nodes = nsp;
	r->n_nodes = m->nm;
	if (m->nm > 0) {
		double mean = sum / m->nm, var = sq / m->nm - mean * mean;
		r->load_stddev_pct = mean > 0 ? 100.0 * sqrt(var > 0 ? var : 0) / mean : 0;
	}
}

void grdd_h_status(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	Coral__GrdStatusReply r = CORAL__GRD_STATUS_REPLY__INIT;
	struct map_look m;
	look_at_map(g->map, &m);
	r.map_version = m.version;
	Coral__GrdNodeStat ns[CORAL_MAX_NODES], *nsp[CORAL_MAX_NODES];
	node_stats(g, &m, ns, nsp, &r);
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
	r.lost_buckets = m.lost;
	r.res_overrides = m.nres;
	r.bucket_overrides = m.nbo;
	char move[256];
	grd_core_move_line(g->core, move, sizeof(move));
	r.move = move;
	const struct grd_stats *st = grd_core_stats(g->core);
	r.requests = st->requests;
	r.granted = st->granted;
	r.retried = st->retried;
	r.refused = st->refused;
	r.records_refused = st->records_refused;
	r.messages_refused = st->msgs_refused;
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

void grdd_h_resource(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
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

void grdd_h_top(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
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

void grdd_h_remaster(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct grdd *g = d->svc;
	uint64_t cookie = coral_kit_wait_add(&g->kit, conn, req, NULL);
	if (cookie == 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EBUSY, "too many requests waiting");
		return;
	}
	grd_core_remaster(grdd_core(g), req->grd_remaster, cookie);
}

void grdd_h_history(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
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

void grdd_h_lock(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
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
	int rc = grd_core_lock(grdd_core(g), &id, (int)l->op, mode, cookie);
	if (rc != 0) {
		struct coral_wait dropped;
		coral_kit_wait_take(&g->kit, cookie, &dropped);
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), rc, "max_pending (%lld) requests are in flight, "
					  "or one for %s is", (long long)d->conf.grd.max_pending, l->id);
	}
}


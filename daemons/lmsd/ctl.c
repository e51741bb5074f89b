/* lmsd's status requests: coralctl gcs stats (counters and latency by how requests were
 * served) and gcs block (a block's master, holders and this node's image of it). */
#include "lmsd.h"
#include "logwait.h"

#include "errors.h"
#include "metrics.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static const char *const kind_names[GCS_SERVED_NKINDS] = {"?", "local", "2-way", "3-way", "disk", "cr"};

/* gcs stats' figures that are levels, not counts (the rest are counters) */
const char *const lmsd_gauges[] = {"scn", "inv_held", NULL};

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

void lmsd_h_stats(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
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
	r.cr_port_refused = l->cr_port_refused;
	r.dropped_out = l->dropped_out;
	r.write_errors = s->write_errors;
	r.inv_held = s->inv_held;
	r.log_waits = s->log_waits;
	r.write_waits = s->write_waits;
	uint64_t waits;   /* the waiter's wake-ups: not reported */
	lmsd_logwait_stats(l->logwait, &waits, &r.log_wait_us);
	Coral__GcsKindStats k[GCS_SERVED_NKINDS], *kp[GCS_SERVED_NKINDS];
	size_t n = 0;
	/* local hits are served in the sessions (no latency to speak of): counted above */
	for (int i = GCS_SERVED_2WAY; i < GCS_SERVED_NKINDS; i++, n++)
		kind_stats(&k[n], &kp[n], kind_names[i], &s->lat[i]);
	r.kinds = kp;
	r.n_kinds = n;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GCS_STATS;
	resp.gcs_stats = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* The latency of the requests lmsd served, by how, as Prometheus histograms. */
void lmsd_metrics(struct coral_daemon *d, struct coral_metrics_slot *ms)
{
	struct lmsd *l = d->svc;
	if (l == NULL || l->core == NULL)
		return;
	const struct gcs_stats *s = gcs_core_stats(l->core);
	for (int i = GCS_SERVED_2WAY; i < GCS_SERVED_NKINDS; i++) {
		char label[40];
		snprintf(label, sizeof(label), "kind=\"%s\"", kind_names[i]);
		coral_metrics_put_hist_log8(ms, "coral_gcs_request_seconds", label, s->lat[i].b, GCS_HIST, s->lat[i].n,
					    s->lat[i].sum_us, "block requests lmsd served, by how: their latency");
	}
}

void lmsd_h_block(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
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


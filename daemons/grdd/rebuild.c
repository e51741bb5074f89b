/* grdd's core: rebuilding a lost node's buckets at their new masters from what every
 * survivor reports it holds there; what nobody reports needs instance recovery. */

#include "core_int.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rebuild after a loss ------------------------------------------------------------ */

struct report_buf {
	Coral__GrdEntry ents[GRD_CHUNK_ENTRIES], *entp[GRD_CHUNK_ENTRIES];
	Coral__GrdRes ids[GRD_CHUNK_ENTRIES];
	Coral__GrdHolder hs[GRD_CHUNK_ENTRIES], *hps[GRD_CHUNK_ENTRIES];
	size_t n;
};

static void report_flush(struct grd_core *c, struct report_buf *rb, uint32_t to,
			 const Coral__GrdReportRequest *q, bool last)
{
	Coral__GrdReport r = CORAL__GRD_REPORT__INIT;
	r.version = version(c);
	r.lost_node = q->lost_node;
	r.rebuild_id = q->rebuild_id;
	r.last = last;
	r.entries = rb->entp;
	r.n_entries = rb->n;
	grd_send_msg(c, to, GRD_MSG_REPORT, (const ProtobufCMessage *)&r);
	rb->n = 0;
}

static bool in_rebuild(const struct coral_grd_entry *e, const uint8_t *bitmap, size_t bmlen,
		       Coral__GrdRes *const *res, size_t nres)
{
	if (bitmap && e->bucket / 8 < bmlen && (bitmap[e->bucket / 8] & (1u << (e->bucket % 8))))
		return true;
	for (size_t i = 0; i < nres; i++) {
		struct coral_resid x;
		if (grd_res_from_msg(res[i], &x) && coral_resid_eq(&x, &e->id))
			return true;
	}
	return false;
}

/* What this node holds of what a rebuilding master asks for, in chunks. */
static void report_to(struct grd_core *c, uint32_t to, const Coral__GrdReportRequest *q)
{
	struct report_buf *rb = calloc(1, sizeof(*rb));
	if (rb == NULL)
		return;
	for (uint32_t i = 0; i < c->held->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->held, i);
		/* unlatched first, a hint (the latch below makes it exact): most of what this node
		 * holds is in no bucket being rebuilt */
		if (!(e->flags & CORAL_GRDE_USED) ||
		    !in_rebuild(e, q->buckets.data, q->buckets.len, q->resources, q->n_resources))
			continue;
		uint32_t b = e->bucket;
		coral_grd_dir_lock(c->held, b);
		if ((e->flags & CORAL_GRDE_USED) &&
		    in_rebuild(e, q->buckets.data, q->buckets.len, q->resources, q->n_resources)) {
			size_t n = rb->n;
			coral__grd_entry__init(&rb->ents[n]);
			grd_res_to_msg(&e->id, &rb->ids[n]);
			rb->ents[n].id = &rb->ids[n];
			coral__grd_holder__init(&rb->hs[n]);
			rb->hs[n].node = c->self;
			rb->hs[n].mode = (uint32_t)coral_grd_entry_mode(e, c->self);
			rb->hs[n].pi = (e->pi & bit(c->self)) != 0;
			rb->hps[n] = &rb->hs[n];
			rb->ents[n].holders = &rb->hps[n];
			rb->ents[n].n_holders = 1;
			rb->entp[n] = &rb->ents[n];
			if (++rb->n == GRD_CHUNK_ENTRIES)
				report_flush(c, rb, to, q, false);
		}
		coral_grd_dir_unlock(c->held, b);
	}
	report_flush(c, rb, to, q, true);
	free(rb);
}

void grd_on_report_req(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdReportRequest *q = msg;
	report_to(c, from, q);
}

static void rebuild_install(struct grd_core *c, uint32_t from, const Coral__GrdEntry *m)
{
	struct coral_resid id;
	if (!grd_res_from_msg(m->id, &id))
		return;
	uint32_t b = coral_resid_bucket(&id);
	coral_grd_dir_lock(c->dir, b);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, &id);
	if (e == NULL)
		e = coral_grd_dir_insert(c->dir, &id);
	if (e != NULL) {
		for (size_t i = 0; i < m->n_holders; i++)
			if (m->holders[i]->node == from) {
				coral_grd_entry_set_mode(e, from, (int)m->holders[i]->mode);
				if (m->holders[i]->pi)
					e->pi |= bit(from);
			}
		coral_grd_dir_touch(c->dir, e);
		c->st.rebuilt_entries++;
	} else {
		grd_log(c, CORAL_LOG_WARNING, "rebuild: the directory is full; a resource reported by node %u is not recorded", from);
	}
	coral_grd_dir_unlock(c->dir, b);
}

static void rebuild_finish(struct grd_core *c, struct grd_rebuild *rb)
{
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		if (rb->bitmap[b / 8] & (1u << (b % 8)))
			atomic_store(&c->dir->bstate[b], CORAL_GRDB_ACTIVE);
	free(rb->bitmap);
	free(rb->res);
	grd_log(c, CORAL_LOG_INFO, "rebuilt %u buckets of lost node %u at map version %llu", rb->buckets, rb->lost,
	     (unsigned long long)rb->version);
	*rb = c->rebuild[--c->nrebuild];
}

void grd_on_report(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdReport *r = msg;
	for (size_t i = 0; i < c->nrebuild; i++) {
		struct grd_rebuild *rb = &c->rebuild[i];
		if (rb->id != r->rebuild_id || !(rb->waiting & bit(from)))
			continue;
		for (size_t k = 0; k < r->n_entries; k++)
			rebuild_install(c, from, r->entries[k]);
		if (r->last) {
			rb->waiting &= ~bit(from);
			if (rb->waiting == 0)
				rebuild_finish(c, rb);
		}
		return;
	}
}

static void rebuild_ask(struct grd_core *c, struct grd_rebuild *rb)
{
	Coral__GrdReportRequest q = CORAL__GRD_REPORT_REQUEST__INIT;
	q.version = rb->version;
	q.lost_node = rb->lost;
	q.rebuild_id = rb->id;
	q.buckets.data = rb->bitmap;
	q.buckets.len = CORAL_GRD_BUCKETS / 8;
	Coral__GrdRes *rs = calloc(rb->nres + 1, sizeof(*rs));
	Coral__GrdRes **rp = calloc(rb->nres + 1, sizeof(*rp));
	if (rs == NULL || rp == NULL) {
		free(rs);
		free(rp);
		return;
	}
	for (size_t i = 0; i < rb->nres; i++) {
		grd_res_to_msg(&rb->res[i], &rs[i]);
		rp[i] = &rs[i];
	}
	q.resources = rp;
	q.n_resources = rb->nres;
	rb->asked_ms = c->now_ms;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
		if (rb->waiting & bit(n))
			grd_send_msg(c, n, GRD_MSG_REPORT_REQ, (const ProtobufCMessage *)&q);
	free(rs);
	free(rp);
}

void grd_rebuild_tick(struct grd_core *c)
{
	for (size_t i = 0; i < c->nrebuild;) {
		struct grd_rebuild *rb = &c->rebuild[i];
		/* a survivor lost meanwhile will not answer; the next version covers its part */
		for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
			if ((rb->waiting & bit(n)) && !member_active(c, n))
				rb->waiting &= ~bit(n);
		if (rb->waiting == 0) {
			rebuild_finish(c, rb);
			continue;
		}
		if (c->now_ms - rb->asked_ms >= 500)
			rebuild_ask(c, rb);
		i++;
	}
}

/* A lost node's holds on what this node masters: gone, and what it may have changed needs
 * recovery. Then the buckets this node inherits from it are rebuilt from the survivors. */
/* A node lost: its holds leave every entry here (those in a mode that may have changed the
 * data mark the entry as needing recovery), and the buckets and override resources it
 * mastered that this node masters now are rebuilt from every survivor's report. Normally
 * the record lists it as lost and the map's lost_owner says which buckets were its. If this
 * node skipped the versions between its loss and its recovery (watches coalesce), it is
 * already recovered: then old_owner (this node's previous map) and old's overrides say
 * what was its, and nothing is marked as needing recovery. */
/* The lost node's holds leave every entry this node masters; with nothing to rebuild from
 * (old_owner NULL), one it held in a mode that writes, or as a past image, needs recovery. */
static void forget_holds(struct grd_core *c, uint32_t lost, bool mark_recovery)
{
	for (uint32_t i = 0; i < c->dir->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->dir, i);
		if (!(e->flags & CORAL_GRDE_USED) ||
		    !(((e->holders | e->pi) & bit(lost)) || e->cur == lost || e->op_node == lost))
			continue;
		coral_grd_dir_lock(c->dir, e->bucket);
		if ((e->flags & CORAL_GRDE_USED) && (((e->holders | e->pi) & bit(lost)) || e->cur == lost ||
						     (e->op_node == lost && e->op_phase == 2))) {
			bool block = coral_resid_is_block(&e->id);
			/* a block's current image with the lost node (in S too: the last writer
			 * of a shared image keeps it dirty), or on its way there (lmsd's operation
			 * in its transfer phase: the image may have arrived and been changed) */
			bool had = block && (e->cur == lost || (e->op_node == lost && e->op_phase == 2));
			if (mark_recovery && (had || coral_grd_mode_writes(block, e->mode[lost - 1]) || (e->pi & bit(lost)))) {
				e->flags |= CORAL_GRDE_RECOVERY;
				e->recovery_node = (uint8_t)lost;
			}
			coral_grd_entry_set_mode(e, lost, 0);
			e->pi &= ~bit(lost);
			coral_grd_dir_touch(c->dir, e);
		}
		coral_grd_dir_unlock(c->dir, e->bucket);
	}
}

/* What this node rebuilds for the lost node: the buckets it masters now that the lost node
 * owned (by old_owner, or the map's lost owners), and the resources it mastered through
 * overrides. False when there is nothing, or no memory. */
static bool rebuild_scope(struct grd_core *c, struct grd_rebuild *rb, uint32_t lost, const uint8_t *old_owner,
			  const Coral__GrdMapRecord *old)
{
	rb->bitmap = calloc(CORAL_GRD_BUCKETS / 8, 1);
	const Coral__GrdMapRecord *ro = old_owner ? old : c->rec;
	size_t nro = old_owner ? (old ? old->n_res_overrides : 0) : c->rec->n_lost_res_overrides;
	rb->res = calloc(nro + 1, sizeof(*rb->res));
	if (rb->bitmap == NULL || rb->res == NULL)
		return false;
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		if ((old_owner ? old_owner[b] : c->map->lost_owner[b]) == lost && c->map->owner[b] == c->self) {
			/* moves refuse REBUILDING buckets until the rebuild ends */
			atomic_store(&c->dir->bstate[b], CORAL_GRDB_REBUILDING);
			rb->bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
			rb->buckets++;
		}
	for (size_t i = 0; i < nro; i++) {
		const Coral__GrdResOverride *o = old_owner ? ro->res_overrides[i] : ro->lost_res_overrides[i];
		struct coral_resid id;
		struct coral_grd_where w;
		if (o->node != lost || !grd_res_from_msg(o->id, &id))
			continue;
		coral_grd_lookup(c->map, &id, &w);
		if (w.master == c->self)
			rb->res[rb->nres++] = id;
	}
	return rb->buckets != 0 || rb->nres != 0;
}

/* This node is a survivor too: its own holds in what is rebuilt, straight from its table. */
static void report_own(struct grd_core *c, const struct grd_rebuild *rb)
{
	for (uint32_t i = 0; i < c->held->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->held, i);
		if (!(e->flags & CORAL_GRDE_USED))
			continue;
		bool mine = rb->bitmap[e->bucket / 8] & (1u << (e->bucket % 8));
		for (size_t k = 0; k < rb->nres && !mine; k++)
			mine = coral_resid_eq(&rb->res[k], &e->id);
		if (!mine)
			continue;
		coral_grd_dir_lock(c->held, e->bucket);
		if (e->flags & CORAL_GRDE_USED) {
			Coral__GrdEntry m;
			struct grd_entry_buf eb;
			grd_entry_to_msg(e, &m, &eb);
			rebuild_install(c, c->self, &m);
		}
		coral_grd_dir_unlock(c->held, e->bucket);
	}
}

/* A node lost: what it held leaves the entries here, and the buckets and resources it
 * mastered that this node masters now are rebuilt from every survivor's report. */
void grd_on_new_lost(struct grd_core *c, uint32_t lost, const uint8_t *old_owner,
			const Coral__GrdMapRecord *old)
{
	if (bit(lost) == 0)
		return; /* not a node id: a damaged record */
	forget_holds(c, lost, old_owner == NULL);
	if (c->nrebuild >= CORAL_GRD_MAX_LOST)
		return;
	struct grd_rebuild *rb = &c->rebuild[c->nrebuild];
	memset(rb, 0, sizeof(*rb));
	if (!rebuild_scope(c, rb, lost, old_owner, old)) {
		free(rb->bitmap);
		free(rb->res);
		return;
	}
	c->nrebuild++;
	rb->id = ((uint64_t)c->self << 48) | (c->next_move_seq++ & 0xffffffffffffull);
	rb->lost = lost;
	rb->version = version(c);
	/* every active member reports, not only those on the ring: a node that has joined but
	 * does not master anything yet may hold resources all the same */
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].active && c->members[i].id != c->self)
			rb->waiting |= bit(c->members[i].id);
	report_own(c, rb);
	if (rb->waiting == 0)
		rebuild_finish(c, rb);
	else
		rebuild_ask(c, rb);
}

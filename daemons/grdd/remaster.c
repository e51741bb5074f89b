/* grdd's core: a move at the coordinator. What changes master is planned (buckets and
 * resources per current master), frozen at its current masters (FREEZE), shipped by them
 * (move.c), and committed with compare-and-swap once every pair is READY; or aborted
 * (ABORT), with an answer to whoever asked. */

#include "core_int.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
void grd_move_clear(struct grd_move *mv)
{
	if (mv->next)
		grd_record_free(mv->next);
	free(mv->packed);
	memset(mv, 0, sizeof(*mv));
}

/* ---- the coordinator ------------------------------------------------------------------ */

static uint64_t new_move_id(struct grd_core *c)
{
	/* unique across coordinators: the node id in the top bits */
	return ((uint64_t)c->self << 48) | ((version(c) & 0xffffff) << 24) | (c->next_move_seq++ & 0xffffff);
}

void grd_remaster_answer(struct grd_core *c, bool has_origin, uint32_t origin, uint64_t cookie,
			    int code, const char *err, const Coral__GrdRemasterReply *r)
{
	if (!has_origin || origin == 0)
		return;
	if (origin == c->self) {
		c->ops.remastered(c->ops.arg, cookie, code, err, r);
		return;
	}
	Coral__GrdRemasterAns a = CORAL__GRD_REMASTER_ANS__INIT;
	a.cookie = cookie;
	a.code = code;
	a.error = (char *)(err ? err : "");
	a.reply = (Coral__GrdRemasterReply *)r;
	grd_send_msg(c, origin, GRD_MSG_REMASTER_ANS, (const ProtobufCMessage *)&a);
}

void grd_move_reply(struct grd_core *c, Coral__GrdRemasterReply *r)
{
	coral__grd_remaster_reply__init(r);
	r->move_id = c->mv.id;
	r->buckets = c->mv.buckets;
	r->resources = c->mv.resources;
	r->entries = c->mv.entries;
	r->bytes = c->mv.bytes;
	r->elapsed_us = (c->now_ms - c->mv.started_ms) * 1000;
	r->detail = c->mv.detail;
}

void grd_move_abort(struct grd_core *c, int code, const char *why)
{
	struct grd_move *mv = &c->mv;
	if (mv->state == MV_IDLE)
		return;
	Coral__GrdAbort a = CORAL__GRD_ABORT__INIT;
	a.move_id = mv->id;
	a.reason = (char *)why;
	if (!mv->dry_run) {
		uint64_t notify = mv->sources | mv->dests;
		for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
			if (notify & bit(n))
				grd_send_msg(c, n, GRD_MSG_ABORT, (const ProtobufCMessage *)&a);
		if (code == CORAL_ECANCELED)
			atomic_fetch_add(&c->map->moves_cancelled, 1);
		else
			atomic_fetch_add(&c->map->moves_failed, 1);
	}
	grd_log(c, CORAL_LOG_NOTICE, "move %llu (%s) abandoned: %s", (unsigned long long)mv->id,
	     coral_grd_cause_name(mv->cause), why);
	Coral__GrdRemasterReply r;
	grd_move_reply(c, &r);
	grd_remaster_answer(c, mv->has_origin, mv->origin, mv->origin_cookie, code, why, &r);
	grd_move_clear(mv);
	c->replan_after_ms = c->now_ms + GRD_REPLAN_MS;
}

static void move_commit(struct grd_core *c)
{
	struct grd_move *mv = &c->mv;
	if (mv->dry_run) {
		Coral__GrdRemasterReply r;
		grd_move_reply(c, &r);
		grd_remaster_answer(c, mv->has_origin, mv->origin, mv->origin_cookie, 0, NULL, &r);
		grd_move_clear(mv);
		return;
	}
	mv->next->moved_buckets = mv->buckets;
	mv->next->moved_resources = mv->resources;
	mv->next->moved_entries = mv->entries;
	mv->next->moved_bytes = mv->bytes;
	mv->next->freeze_ms = c->now_ms - mv->started_ms;
	mv->state = MV_COMMITTING;
	if (grd_record_store(c, mv->next, GRD_STORE_MOVE) != 0)
		grd_move_abort(c, CORAL_ECONN, "the map could not be sent to raftd");
}

void grd_on_ready(struct grd_core *c, uint32_t from, const void *msg)
{
	(void)from;
	const Coral__GrdReady *r = msg;
	struct grd_move *mv = &c->mv;
	if (mv->state != MV_FREEZING || r->move_id != mv->id)
		return;
	if (r->code != 0) {
		char why[256];
		snprintf(why, sizeof(why), "node %u: %s", r->dest ? r->dest : r->source, r->error);
		grd_move_abort(c, r->code, why);
		return;
	}
	if (r->source < 1 || r->source > CORAL_MAX_NODES)
		return;
	uint64_t need = mv->dry_run ? 0 : bit(r->dest);
	if (mv->dry_run) {
		if (!(mv->sources & bit(r->source)))
			return;
		mv->sources &= ~bit(r->source);
	} else {
		if (!(mv->need[r->source - 1] & need))
			return;
		mv->need[r->source - 1] &= ~need;
	}
	mv->entries += r->entries;
	mv->bytes += r->bytes;
	for (uint32_t n = 0; n < CORAL_MAX_NODES; n++)
		if (mv->need[n])
			return;
	if (mv->dry_run && mv->sources)
		return;
	move_commit(c);
}

/* Starts a move from the current record to `next` (members/overrides edited). */
/* What a move freezes, per current master (source): buckets and resources, each with its
 * new master. */
struct move_plan {
	Coral__GrdMoveItem **items[CORAL_MAX_NODES];
	size_t nitems[CORAL_MAX_NODES], cap[CORAL_MAX_NODES];
	Coral__GrdRes *resv;              /* the resources' ids the items point to */
	size_t nresv;
	bool oom;
};

static Coral__GrdMoveItem *plan_add(struct move_plan *p, uint32_t src, uint32_t to)
{
	uint32_t s = src - 1;
	if (p->nitems[s] == p->cap[s]) {
		size_t nc = p->cap[s] ? p->cap[s] * 2 : 64;
		Coral__GrdMoveItem **q = realloc(p->items[s], nc * sizeof(*q));
		if (q == NULL) {
			p->oom = true;
			return NULL;
		}
		p->items[s] = q;
		p->cap[s] = nc;
	}
	Coral__GrdMoveItem *it = calloc(1, sizeof(*it));
	if (it == NULL) {
		p->oom = true;
		return NULL;
	}
	coral__grd_move_item__init(it);
	it->to = to;
	p->items[s][p->nitems[s]++] = it;
	return it;
}

static void plan_free(struct move_plan *p)
{
	for (uint32_t n = 0; n < CORAL_MAX_NODES; n++) {
		for (size_t i = 0; i < p->nitems[n]; i++)
			free(p->items[n][i]);
		free(p->items[n]);
	}
	free(p->resv);
}

/* Buckets whose owner changes from an active member to another. */
static void plan_buckets(struct grd_core *c, struct move_plan *p, const uint8_t *newo)
{
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS && !p->oom; b++) {
		uint32_t from = c->scratch_owner[b], to = newo[b];
		if (from == to || from == 0 || to == 0 || !member_active(c, from))
			continue;
		Coral__GrdMoveItem *it = plan_add(p, from, to);
		if (it)
			it->bucket = b;
		c->mv.buckets += it != NULL;
	}
}

/* Resources whose master changes through an override, in either version. */
static void plan_resources(struct grd_core *c, struct move_plan *p, const Coral__GrdMapRecord *next, const uint8_t *newo)
{
	for (int pass = 0; pass < 2 && !p->oom; pass++) {
		const Coral__GrdMapRecord *r = pass == 0 ? next : c->rec;
		for (size_t i = 0; i < r->n_res_overrides && !p->oom; i++) {
			struct coral_resid id;
			if (!grd_res_from_msg(r->res_overrides[i]->id, &id))
				continue;
			uint32_t from = grd_rec_master(c->rec, c->scratch_owner, &id);
			uint32_t to = grd_rec_master(next, newo, &id);
			if (from == to || from == 0 || to == 0 || !member_active(c, from))
				continue;
			bool dup = false;
			for (size_t k = 0; k < p->nresv && !dup; k++) {
				struct coral_resid x;
				grd_res_from_msg(&p->resv[k], &x);
				dup = coral_resid_eq(&x, &id);
			}
			if (dup)
				continue;
			grd_res_to_msg(&id, &p->resv[p->nresv]);
			Coral__GrdMoveItem *it = plan_add(p, from, to);
			if (it) {
				it->is_res = true;
				it->id = &p->resv[p->nresv++];
				c->mv.resources++;
			}
		}
	}
}

/* The sources, and per source the destinations still to report ready. */
static void plan_need(struct grd_move *mv, const struct move_plan *p)
{
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (p->nitems[n - 1] == 0)
			continue;
		mv->sources |= bit(n);
		for (size_t i = 0; i < p->nitems[n - 1]; i++)
			mv->need[n - 1] |= bit(p->items[n - 1][i]->to);
		mv->dests |= mv->need[n - 1];
	}
}

/* A FREEZE to every source; the sources it could not be sent to. */
static uint64_t send_freezes(struct grd_core *c, const struct move_plan *p)
{
	uint64_t unreachable = 0;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (p->nitems[n - 1] == 0)
			continue;
		Coral__GrdFreeze f = CORAL__GRD_FREEZE__INIT;
		f.move_id = c->mv.id;
		f.base_version = c->mv.base_version;
		f.coordinator = c->self;
		f.items = p->items[n - 1];
		f.n_items = p->nitems[n - 1];
		f.dry_run = c->mv.dry_run;
		if (grd_send_msg(c, n, GRD_MSG_FREEZE, (const ProtobufCMessage *)&f) != 0)
			unreachable |= bit(n);
	}
	return unreachable;
}

static void move_init(struct grd_core *c, int cause, bool dry_run, bool has_origin, uint32_t origin, uint64_t cookie,
		      const char *detail)
{
	struct grd_move *mv = &c->mv;
	memset(mv, 0, sizeof(*mv));
	mv->id = new_move_id(c);
	mv->base_version = version(c);
	mv->cause = cause;
	mv->dry_run = dry_run;
	mv->started_ms = c->now_ms;
	mv->deadline_ms = c->now_ms + (uint64_t)c->conf->freeze_timeout_ms;
	mv->has_origin = has_origin;
	mv->origin = origin;
	mv->origin_cookie = cookie;
	coral_strlcpy(mv->detail, detail, sizeof(mv->detail));
}

/* Starts moving to record next: what changes master is frozen at its current master, which
 * ships it to the new one; the commit comes once every pair is ready. next is the move's. */
void grd_move_start(struct grd_core *c, Coral__GrdMapRecord *next, int cause, bool dry_run,
		       bool has_origin, uint32_t origin, uint64_t cookie, const char *detail)
{
	struct grd_move *mv = &c->mv;
	struct move_plan p = {0};
	uint8_t *newo = malloc(CORAL_GRD_BUCKETS);
	p.resv = calloc(next->n_res_overrides + c->rec->n_res_overrides + 1, sizeof(*p.resv));
	p.oom = newo == NULL || p.resv == NULL;
	move_init(c, cause, dry_run, has_origin, origin, cookie, detail);
	if (!p.oom) {
		grd_rec_owners(c->rec, c->scratch_owner);
		grd_rec_owners(next, newo);
		plan_buckets(c, &p, newo);
		plan_resources(c, &p, next, newo);
	}
	free(newo);
	if (p.oom) {
		plan_free(&p);
		grd_record_free(next);
		memset(mv, 0, sizeof(*mv));
		grd_remaster_answer(c, has_origin, origin, cookie, CORAL_ENOMEM, "out of memory", NULL);
		return;
	}
	mv->next = next;
	grd_record_stamp(c, next, cause, mv->id, detail, grd_wall_ms(c));
	mv->state = MV_FREEZING;
	plan_need(mv, &p);
	/* send after the bookkeeping: a freeze sent to this node is delivered back later */
	uint64_t unreachable = send_freezes(c, &p);
	plan_free(&p);
	if (dry_run)
		memset(mv->need, 0, sizeof(mv->need));
	grd_log(c, CORAL_LOG_INFO, "move %llu (%s%s): %u buckets, %u resources from version %llu: %s",
		(unsigned long long)mv->id, coral_grd_cause_name(cause), dry_run ? ", dry run" : "",
		mv->buckets, mv->resources, (unsigned long long)mv->base_version, detail);
	if (unreachable) {
		grd_move_abort(c, CORAL_ENOTCONN, "the freeze could not be sent to every current master");
		return;
	}
	if (mv->sources == 0) /* nothing held anywhere moves: commit (or answer) at once */
		move_commit(c);
}


void grd_core_move_line(const struct grd_core *c, char *buf, size_t n)
{
	const struct grd_move *mv = &c->mv;
	if (mv->state == MV_IDLE) {
		snprintf(buf, n, "%s", "");
		return;
	}
	snprintf(buf, n, "move %llu (%s) %s: %u buckets, %u resources, %llu entries so far, %llu ms",
		 (unsigned long long)mv->id, coral_grd_cause_name(mv->cause),
		 mv->state == MV_FREEZING ? "shipping" : "committing", mv->buckets, mv->resources,
		 (unsigned long long)mv->entries, (unsigned long long)(c->now_ms - mv->started_ms));
}

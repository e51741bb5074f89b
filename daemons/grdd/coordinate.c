/* grdd's core: the coordinator (the grdd next to the Raft leader). It plans moves (joins,
 * operator remasters, affinity), drives them (freeze, ready, commit with compare-and-swap,
 * abort), and commits the versions a leave, an init or a recovery needs. */

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
static void move_start(struct grd_core *c, Coral__GrdMapRecord *next, int cause, bool dry_run,
		       bool has_origin, uint32_t origin, uint64_t cookie, const char *detail)
{
	struct grd_move *mv = &c->mv;
	uint8_t *newo = malloc(CORAL_GRD_BUCKETS);
	if (newo == NULL) {
		grd_record_free(next);
		grd_remaster_answer(c, has_origin, origin, cookie, CORAL_ENOMEM, "out of memory", NULL);
		return;
	}
	grd_rec_owners(c->rec, c->scratch_owner);
	grd_rec_owners(next, newo);
	/* per source, the items it gives away */
	Coral__GrdMoveItem **items[CORAL_MAX_NODES] = {0};
	size_t nitems[CORAL_MAX_NODES] = {0}, cap[CORAL_MAX_NODES] = {0};
	Coral__GrdRes *resv = calloc(next->n_res_overrides + c->rec->n_res_overrides + 1, sizeof(*resv));
	size_t nresv = 0;
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
	bool oom = resv == NULL;
#define ADD_ITEM(src, fill)                                                                   \
	do {                                                                                  \
		uint32_t s_ = (src) - 1;                                                      \
		if (nitems[s_] == cap[s_]) {                                                  \
			size_t nc_ = cap[s_] ? cap[s_] * 2 : 64;                              \
			Coral__GrdMoveItem **p_ = realloc(items[s_], nc_ * sizeof(*p_));      \
			if (p_ == NULL) { oom = true; break; }                                \
			items[s_] = p_;                                                       \
			cap[s_] = nc_;                                                        \
		}                                                                             \
		Coral__GrdMoveItem *it_ = calloc(1, sizeof(*it_));                            \
		if (it_ == NULL) { oom = true; break; }                                       \
		coral__grd_move_item__init(it_);                                              \
		fill;                                                                         \
		items[s_][nitems[s_]++] = it_;                                                \
	} while (0)
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS && !oom; b++) {
		uint32_t from = c->scratch_owner[b], to = newo[b];
		if (from == to || from == 0 || to == 0 || !member_active(c, from))
			continue;
		ADD_ITEM(from, (it_->bucket = b, it_->to = to));
		mv->buckets++;
	}
	/* resources whose master changes through an override */
	for (int pass = 0; pass < 2 && !oom; pass++) {
		const Coral__GrdMapRecord *r = pass == 0 ? next : c->rec;
		for (size_t i = 0; i < r->n_res_overrides && !oom; i++) {
			struct coral_resid id;
			if (!grd_res_from_msg(r->res_overrides[i]->id, &id))
				continue;
			uint32_t from = grd_rec_master(c->rec, c->scratch_owner, &id);
			uint32_t to = grd_rec_master(next, newo, &id);
			if (from == to || from == 0 || to == 0 || !member_active(c, from))
				continue;
			bool dup = false;
			for (size_t k = 0; k < nresv; k++) {
				struct coral_resid x;
				grd_res_from_msg(&resv[k], &x);
				dup |= coral_resid_eq(&x, &id);
			}
			if (dup)
				continue;
			grd_res_to_msg(&id, &resv[nresv]);
			Coral__GrdRes *rp = &resv[nresv++];
			ADD_ITEM(from, (it_->is_res = true, it_->id = rp, it_->to = to));
			mv->resources++;
		}
	}
#undef ADD_ITEM
	free(newo);
	if (oom) {
		for (uint32_t n = 0; n < CORAL_MAX_NODES; n++) {
			for (size_t i = 0; i < nitems[n]; i++)
				free(items[n][i]);
			free(items[n]);
		}
		free(resv);
		grd_record_free(next);
		memset(mv, 0, sizeof(*mv));
		grd_remaster_answer(c, has_origin, origin, cookie, CORAL_ENOMEM, "out of memory", NULL);
		return;
	}
	mv->next = next;
	grd_record_stamp(c, next, cause, mv->id, detail, grd_wall_ms(c));
	mv->state = MV_FREEZING;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (nitems[n - 1] == 0)
			continue;
		mv->sources |= bit(n);
		for (size_t i = 0; i < nitems[n - 1]; i++)
			mv->need[n - 1] |= bit(items[n - 1][i]->to);
		mv->dests |= mv->need[n - 1];
	}
	/* send after the bookkeeping: a freeze sent to this node is delivered back later */
	uint64_t unreachable = 0;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (nitems[n - 1] == 0)
			continue;
		Coral__GrdFreeze f = CORAL__GRD_FREEZE__INIT;
		f.move_id = mv->id;
		f.base_version = mv->base_version;
		f.coordinator = c->self;
		f.items = items[n - 1];
		f.n_items = nitems[n - 1];
		f.dry_run = dry_run;
		if (grd_send_msg(c, n, GRD_MSG_FREEZE, (const ProtobufCMessage *)&f) != 0)
			unreachable |= bit(n);
		for (size_t i = 0; i < nitems[n - 1]; i++)
			free(items[n - 1][i]);
		free(items[n - 1]);
	}
	free(resv);
	if (dry_run)
		memset(mv->need, 0, sizeof(mv->need));
	grd_log(c, CORAL_LOG_INFO, "move %llu (%s%s): %u buckets, %u resources from version %llu: %s",
	     (unsigned long long)mv->id, coral_grd_cause_name(cause), dry_run ? ", dry run" : "",
	     mv->buckets, mv->resources, (unsigned long long)mv->base_version, detail);
	if (unreachable) {
		char why[96];
		snprintf(why, sizeof(why), "the freeze could not be sent to every current master");
		grd_move_abort(c, CORAL_ENOTCONN, why);
		return;
	}
	if (mv->sources == 0) /* nothing held anywhere moves: commit (or answer) at once */
		move_commit(c);
}

/* The records are edited in place with protobuf-c's own allocator (malloc), since they were
 * unpacked with it and are freed with free_unpacked. */

static void start_request(struct grd_core *c, struct grd_request_q *q)
{
	const Coral__GrdRemasterRequest *req = &q->req;
	char err[256];
	if (c->rec == NULL) {
		grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOTRUNNING, "no map has been agreed yet", NULL);
		return;
	}
	if (req->recovered) {
		Coral__GrdMapRecord *n = grd_rec_edit(c);
		bool found = false;
		/* every entry of the node (it may have been lost more than once), keeping the
		 * order: a later loss wins the buckets two lost nodes owned in turn */
		size_t kept = 0;
		for (size_t i = 0; n && i < n->n_lost; i++) {
			if (n->lost[i]->node == req->node) {
				grd_msg_free(n->lost[i]);
				found = true;
			} else {
				n->lost[kept++] = n->lost[i];
			}
		}
		if (n)
			n->n_lost = kept;
		if (n && found) {
			size_t k = 0;
			for (size_t i = 0; i < n->n_lost_bucket_overrides; i++) {
				if (n->lost_bucket_overrides[i]->node == req->node)
					free(n->lost_bucket_overrides[i]);
				else
					n->lost_bucket_overrides[k++] = n->lost_bucket_overrides[i];
			}
			n->n_lost_bucket_overrides = k;
			k = 0;
			for (size_t i = 0; i < n->n_lost_res_overrides; i++) {
				if (n->lost_res_overrides[i]->node == req->node) {
					free(n->lost_res_overrides[i]->id);
					free(n->lost_res_overrides[i]);
				} else {
					n->lost_res_overrides[k++] = n->lost_res_overrides[i];
				}
			}
			n->n_lost_res_overrides = k;
		}
		if (!n || !found) {
			if (n)
				grd_record_free(n);
			snprintf(err, sizeof(err), "node %u is not listed as lost at map version %llu", req->node,
				 (unsigned long long)version(c));
			grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOENT, err, NULL);
			return;
		}
		snprintf(err, sizeof(err), "node %u marked recovered", req->node);
		move_start(c, n, CORAL_GRD_CAUSE_RECOVERED, false, true, q->origin, q->cookie, err);
		return;
	}
	if (!in_u32(c->rec->members, c->rec->n_members, req->node) || !member_active(c, req->node)) {
		snprintf(err, sizeof(err), "node %u is not an active member of map version %llu", req->node,
			 (unsigned long long)version(c));
		grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_EINVAL, err, NULL);
		return;
	}
	Coral__GrdMapRecord *n = grd_rec_edit(c);
	if (n == NULL) {
		grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOMEM, "out of memory", NULL);
		return;
	}
	struct coral_resid id;
	int64_t bucket;
	int rc;
	grd_rec_owners(c->rec, c->scratch_owner);
	if (coral_parse_int(q->target, &bucket)) {
		if (bucket < 0 || bucket >= (int64_t)CORAL_GRD_BUCKETS) {
			grd_record_free(n);
			snprintf(err, sizeof(err), "bucket %lld is out of range 0-%u", (long long)bucket, CORAL_GRD_BUCKETS - 1);
			grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_EINVAL, err, NULL);
			return;
		}
		/* an override equal to what the ring gives is no override: drop it */
		uint8_t *ring = malloc(CORAL_GRD_BUCKETS);
		if (ring == NULL) {
			grd_record_free(n);
			grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOMEM, "out of memory", NULL);
			return;
		}
		grd_map_compute(n->members, n->n_members, NULL, 0, ring);
		if (c->scratch_owner[bucket] == req->node) {
			free(ring);
			grd_record_free(n);
			Coral__GrdRemasterReply r = CORAL__GRD_REMASTER_REPLY__INIT;
			snprintf(err, sizeof(err), "bucket %lld is already mastered by node %u", (long long)bucket, req->node);
			r.map_version = version(c);
			r.detail = err;
			grd_remaster_answer(c, true, q->origin, q->cookie, 0, NULL, &r);
			return;
		}
		rc = grd_set_bucket_override(n, (uint32_t)bucket, ring[bucket] == req->node ? 0 : req->node,
					 (size_t)c->conf->max_overrides);
		free(ring);
		snprintf(err, sizeof(err), "bucket %lld from node %u to node %u", (long long)bucket,
			 c->scratch_owner[bucket], req->node);
	} else if (coral_resid_parse(q->target, &id, err, sizeof(err)) == 0) {
		uint32_t bo = c->scratch_owner[coral_resid_bucket(&id)];
		uint32_t now = grd_rec_master(c->rec, c->scratch_owner, &id);
		if (now == req->node) {
			grd_record_free(n);
			Coral__GrdRemasterReply r = CORAL__GRD_REMASTER_REPLY__INIT;
			snprintf(err, sizeof(err), "%s is already mastered by node %u", q->target, now);
			r.map_version = version(c);
			r.detail = err;
			grd_remaster_answer(c, true, q->origin, q->cookie, 0, NULL, &r);
			return;
		}
		rc = grd_set_res_override(n, &id, bo == req->node ? 0 : req->node, (size_t)c->conf->max_overrides);
		snprintf(err, sizeof(err), "%s from node %u to node %u", q->target, now, req->node);
	} else {
		grd_record_free(n);
		grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_EINVAL, err, NULL);
		return;
	}
	if (rc != 0) {
		grd_record_free(n);
		snprintf(err, sizeof(err), rc == CORAL_EFULL ? "the map already carries max_overrides (%lld) overrides of that kind"
							     : "out of memory", (long long)c->conf->max_overrides);
		grd_remaster_answer(c, true, q->origin, q->cookie, rc, err, NULL);
		return;
	}
	move_start(c, n, q->cause, req->dry_run, true, q->origin, q->cookie, err);
}

static void enqueue_request(struct grd_core *c, const Coral__GrdRemasterRequest *req, uint32_t origin,
			    uint64_t cookie, int cause)
{
	if (req->cancel) {
		if (c->mv.state == MV_FREEZING) {
			char why[96];
			snprintf(why, sizeof(why), "cancelled by an operator on node %u", origin);
			uint64_t id = c->mv.id;
			grd_move_abort(c, CORAL_ECANCELED, why);
			Coral__GrdRemasterReply r = CORAL__GRD_REMASTER_REPLY__INIT;
			r.move_id = id;
			r.detail = why;
			grd_remaster_answer(c, true, origin, cookie, 0, NULL, &r);
		} else {
			grd_remaster_answer(c, true, origin, cookie, c->mv.state == MV_COMMITTING ? CORAL_EBUSY : CORAL_ENOENT,
					c->mv.state == MV_COMMITTING ? "the move is being committed and can no longer be cancelled"
								     : "no move is in flight", NULL);
		}
		return;
	}
	if (c->nqueue >= GRD_QUEUE) {
		grd_remaster_answer(c, true, origin, cookie, CORAL_EBUSY, "the remaster queue is full", NULL);
		return;
	}
	struct grd_request_q *q = &c->queue[c->nqueue++];
	memset(q, 0, sizeof(*q));
	q->req = *req;
	coral_strlcpy(q->target, req->target ? req->target : "", sizeof(q->target));
	q->req.target = q->target;
	q->origin = origin;
	q->cookie = cookie;
	q->cause = cause;
	grd_coordinate(c); /* start it now if nothing else is in flight, not at the next tick */
}

void grd_core_remaster(struct grd_core *c, const Coral__GrdRemasterRequest *req, uint64_t cookie)
{
	if (c->leader == 0) {
		c->ops.remastered(c->ops.arg, cookie, CORAL_ENOTLEADER, "no Raft leader, so no coordinator: retry", NULL);
		return;
	}
	if (c->leader != c->self) {
		Coral__GrdRemasterFwd f = CORAL__GRD_REMASTER_FWD__INIT;
		f.cookie = cookie;
		f.req = (Coral__GrdRemasterRequest *)req;
		grd_send_msg(c, c->leader, GRD_MSG_REMASTER_FWD, (const ProtobufCMessage *)&f);
		return;
	}
	enqueue_request(c, req, c->self, cookie, CORAL_GRD_CAUSE_MANUAL);
}

void grd_on_propose(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdPropose *p = msg;
	(void)from;
	if (c->leader != c->self || p->version != version(c) || c->nqueue >= GRD_QUEUE / 2)
		return;
	char target[96];
	struct coral_resid id;
	if (!grd_res_from_msg(p->id, &id))
		return;
	coral_resid_format(&id, target, sizeof(target));
	for (size_t i = 0; i < c->nqueue; i++)
		if (strcmp(c->queue[i].target, target) == 0)
			return;
	Coral__GrdRemasterRequest req = CORAL__GRD_REMASTER_REQUEST__INIT;
	req.target = target;
	req.node = p->to;
	enqueue_request(c, &req, 0, 0, CORAL_GRD_CAUSE_AFFINITY); /* origin 0: nobody waits */
}

/* Members that should be on the ring: the active ones whose grdd is reachable (a member
 * already on the ring stays while it is active: only raftd's eviction takes it off). */
static size_t wanted_members(const struct grd_core *c, uint32_t *out)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nmembers; i++) {
		const struct grd_member *m = &c->members[i];
		bool on_ring = c->rec && in_u32(c->rec->members, c->rec->n_members, m->id);
		if (m->active && (m->reachable || on_ring || m->id == c->self))
			out[n++] = m->id;
	}
	return n;
}

/* Records in l which buckets the lost node owned in the current version: the ring (members)
 * of that version and, of the buckets its ring position gave it, those an override gave to
 * another node. The record frees both arrays. */
static int lost_buckets(struct grd_core *c, Coral__GrdLost *l)
{
	l->ring = malloc((c->rec->n_members + 1) * sizeof(uint32_t));
	if (l->ring == NULL)
		return CORAL_ENOMEM;
	memcpy(l->ring, c->rec->members, c->rec->n_members * sizeof(uint32_t));
	l->n_ring = c->rec->n_members;
	if (c->rec->n_bucket_overrides == 0)
		return 0;
	l->away = malloc(c->rec->n_bucket_overrides * sizeof(uint32_t));
	if (l->away == NULL)
		return CORAL_ENOMEM;
	grd_map_compute(c->rec->members, c->rec->n_members, NULL, 0, c->scratch_owner);
	for (size_t i = 0; i < c->rec->n_bucket_overrides; i++) {
		const Coral__GrdBucketOverride *o = c->rec->bucket_overrides[i];
		if (o->bucket < CORAL_GRD_BUCKETS && o->node != l->node &&
		    c->scratch_owner[o->bucket] == l->node)
			l->away[l->n_away++] = o->bucket;
	}
	return 0;
}

void grd_coordinate(struct grd_core *c)
{
	if (c->leader != c->self || c->fenced || !c->store_read || c->store_busy)
		return;
	if (c->mv.state != MV_IDLE) {
		if (c->mv.state == MV_FREEZING && c->now_ms >= c->mv.deadline_ms)
			grd_move_abort(c, CORAL_ETIMEDOUT, "not every node was ready within freeze_timeout_ms");
		return;
	}
	uint32_t want[CORAL_MAX_NODES];
	size_t nwant = wanted_members(c, want);
	if (nwant == 0)
		return;
	if (c->rec == NULL) {
		Coral__GrdMapRecord r = CORAL__GRD_MAP_RECORD__INIT;
		r.version = 1;
		r.members = want;
		r.n_members = nwant;
		r.cause = CORAL_GRD_CAUSE_INIT;
		r.coordinator = c->self;
		r.at_ms = grd_wall_ms(c);
		r.detail = (char *)"first map";
		c->store_busy = true;
		if (grd_record_store(c, &r, GRD_STORE_INIT) != 0)
			c->store_busy = false;
		return;
	}
	if (c->now_ms < c->replan_after_ms)
		return;
	if (version(c) < c->await_version && c->now_ms < c->await_until_ms)
		return;
	/* departures first: nothing can be shipped from a lost node, so no freeze */
	uint32_t keep[CORAL_MAX_NODES];
	size_t nkeep = 0;
	bool departed = false;
	for (size_t i = 0; i < c->rec->n_members; i++) {
		if (in_u32(want, nwant, c->rec->members[i]))
			keep[nkeep++] = c->rec->members[i];
		else
			departed = true;
	}
	if (departed) {
		Coral__GrdMapRecord *n = grd_rec_edit(c);
		if (n == NULL)
			return;
		char detail[160];
		int off = snprintf(detail, sizeof(detail), "lost");
		for (size_t i = 0; i < c->rec->n_members; i++) {
			uint32_t d = c->rec->members[i];
			if (in_u32(want, nwant, d))
				continue;
			off += snprintf(detail + off, sizeof(detail) - (size_t)off, " node %u", d);
			if (off >= (int)sizeof(detail))
				off = (int)sizeof(detail) - 1;
			if (n->n_lost < CORAL_GRD_MAX_LOST) {
				Coral__GrdLost **p = realloc(n->lost, (n->n_lost + 1) * sizeof(*p));
				Coral__GrdLost *l = malloc(sizeof(*l));
				if (p == NULL || l == NULL) {
					free(l);
					if (p)
						n->lost = p;
					break;
				}
				n->lost = p;
				coral__grd_lost__init(l);
				l->node = d;
				l->incarnation = member_inc(c, d);
				l->since_version = version(c) + 1;
				n->lost[n->n_lost++] = l;
				if (lost_buckets(c, l) != 0)
					break;
			}
			/* its overrides go with it, kept to know what was its: those buckets and
			 * resources are rebuilt by their new masters */
			for (size_t k = 0; k < n->n_bucket_overrides;) {
				if (n->bucket_overrides[k]->node != d) {
					k++;
					continue;
				}
				Coral__GrdBucketOverride **p = realloc(n->lost_bucket_overrides,
					(n->n_lost_bucket_overrides + 1) * sizeof(*p));
				if (p == NULL)
					break;
				n->lost_bucket_overrides = p;
				p[n->n_lost_bucket_overrides++] = n->bucket_overrides[k];
				n->bucket_overrides[k] = n->bucket_overrides[--n->n_bucket_overrides];
			}
			for (size_t k = 0; k < n->n_res_overrides;) {
				if (n->res_overrides[k]->node != d) {
					k++;
					continue;
				}
				Coral__GrdResOverride **p = realloc(n->lost_res_overrides,
					(n->n_lost_res_overrides + 1) * sizeof(*p));
				if (p == NULL)
					break;
				n->lost_res_overrides = p;
				p[n->n_lost_res_overrides++] = n->res_overrides[k];
				n->res_overrides[k] = n->res_overrides[--n->n_res_overrides];
			}
		}
		if (grd_set_members(n, keep, nkeep) != 0) {
			grd_record_free(n);
			return;
		}
		grd_record_stamp(c, n, CORAL_GRD_CAUSE_LEAVE, 0, detail, grd_wall_ms(c));
		grd_rec_owners(c->rec, c->scratch_owner);
		uint8_t *newo = malloc(CORAL_GRD_BUCKETS);
		if (newo) {
			grd_rec_owners(n, newo);
			for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
				n->moved_buckets += c->scratch_owner[b] != newo[b];
			free(newo);
		}
		grd_log(c, CORAL_LOG_NOTICE, "map version %llu: %s; %u buckets get new masters and are rebuilt",
		     (unsigned long long)n->version, detail, n->moved_buckets);
		c->store_busy = true;
		if (grd_record_store(c, n, GRD_STORE_LEAVE) != 0)
			c->store_busy = false;
		grd_record_free(n);
		return;
	}
	if (nkeep < nwant) {
		Coral__GrdMapRecord *n = grd_rec_edit(c);
		if (n == NULL || grd_set_members(n, want, nwant) != 0) {
			if (n)
				grd_record_free(n);
			return;
		}
		char detail[160];
		int off = snprintf(detail, sizeof(detail), "joined");
		for (size_t i = 0; i < nwant; i++)
			if (!in_u32(keep, nkeep, want[i])) {
				off += snprintf(detail + off, sizeof(detail) - (size_t)off, " node %u", want[i]);
				if (off >= (int)sizeof(detail))
					off = (int)sizeof(detail) - 1;
			}
		move_start(c, n, CORAL_GRD_CAUSE_JOIN, false, false, 0, 0, detail);
		return;
	}
	if (c->nqueue > 0) {
		struct grd_request_q q = c->queue[0];
		memmove(&c->queue[0], &c->queue[1], (c->nqueue - 1) * sizeof(c->queue[0]));
		c->nqueue--;
		for (size_t i = 0; i < c->nqueue; i++)
			c->queue[i].req.target = c->queue[i].target;
		q.req.target = q.target;
		start_request(c, &q);
	}
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

void grd_core_store_done(struct grd_core *c, uint64_t cookie, int code, uint64_t index)
{
	(void)index;
	if (code == CORAL_ECONFLICT)
		c->st.store_conflicts++;
	switch (cookie) {
	case GRD_STORE_INIT:
	case GRD_STORE_LEAVE:
		c->store_busy = false;
		if (code == 0) {
			/* do not plan again on the old record before this one comes back applied */
			c->await_version = version(c) + 1;
			c->await_until_ms = c->now_ms + 2000;
		} else {
			grd_log(c, CORAL_LOG_NOTICE, "storing the map failed: %s", coral_strerror(code));
			c->replan_after_ms = c->now_ms + GRD_REPLAN_MS;
		}
		return;
	case GRD_STORE_MOVE:
		if (c->mv.state != MV_COMMITTING)
			return;
		if (code != 0) {
			grd_move_abort(c, code, code == CORAL_ECONFLICT ? "the map changed while the move was prepared"
								    : coral_strerror(code));
			return;
		}
		/* answered once the record is applied here (it carries the new version) */
		return;
	case GRD_STORE_ABANDON:
		if (code == 0)
			c->st.abandoned++;
		c->src.abandon_sent = false;
		return;
	}
}

void grd_on_remaster_fwd(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdRemasterFwd *f = msg;
	if (f->req == NULL)
		c->st.msgs_refused++;
	else if (c->leader != c->self)
		grd_remaster_answer(c, true, from, f->cookie, CORAL_ENOTLEADER, "the coordinator changed: retry", NULL);
	else
		enqueue_request(c, f->req, from, f->cookie, CORAL_GRD_CAUSE_MANUAL);
}

void grd_on_remaster_ans(struct grd_core *c, uint32_t from, const void *msg)
{
	(void)from;
	const Coral__GrdRemasterAns *a = msg;
	c->ops.remastered(c->ops.arg, a->cookie, a->code, a->error, a->reply);
}

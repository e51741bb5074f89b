/* grdd's core: the coordinator (the grdd next to the Raft leader). Its step commits the
 * first map and the versions a leave needs, starts a join's move, and takes the queue of
 * requests (operator remasters and recovery marks, affinity proposals) one at a time; a move
 * itself is driven by remaster.c. */

#include "core_int.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Drops every entry of lost node `node` from the record (it may have been lost more than
 * once), keeping the order (a later loss wins the buckets two lost nodes owned in turn), and
 * the overrides it had; false if it was not listed. */
static bool drop_lost(Coral__GrdMapRecord *n, uint32_t node)
{
	bool found = false;
	size_t kept = 0;
	for (size_t i = 0; i < n->n_lost; i++) {
		if (n->lost[i]->node == node) {
			grd_msg_free(n->lost[i]);
			found = true;
		} else {
			n->lost[kept++] = n->lost[i];
		}
	}
	n->n_lost = kept;
	if (!found)
		return false;
	size_t k = 0;
	for (size_t i = 0; i < n->n_lost_bucket_overrides; i++) {
		if (n->lost_bucket_overrides[i]->node == node)
			free(n->lost_bucket_overrides[i]);
		else
			n->lost_bucket_overrides[k++] = n->lost_bucket_overrides[i];
	}
	n->n_lost_bucket_overrides = k;
	k = 0;
	for (size_t i = 0; i < n->n_lost_res_overrides; i++) {
		if (n->lost_res_overrides[i]->node == node) {
			free(n->lost_res_overrides[i]->id);
			free(n->lost_res_overrides[i]);
		} else {
			n->lost_res_overrides[k++] = n->lost_res_overrides[i];
		}
	}
	n->n_lost_res_overrides = k;
	return true;
}

/* coralctl grd recovered NODE: the node's buckets are no longer refused as needing recovery. */
static void start_recovered(struct grd_core *c, struct grd_request_q *q)
{
	char err[256];
	Coral__GrdMapRecord *n = grd_rec_edit(c);
	if (n == NULL || !drop_lost(n, q->req.node)) {
		if (n)
			grd_record_free(n);
		snprintf(err, sizeof(err), "node %u is not listed as lost at map version %llu", q->req.node,
			 (unsigned long long)version(c));
		grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOENT, err, NULL);
		return;
	}
	snprintf(err, sizeof(err), "node %u marked recovered", q->req.node);
	grd_move_start(c, n, CORAL_GRD_CAUSE_RECOVERED, false, true, q->origin, q->cookie, err);
}

/* The override moving bucket to the request's node: 0 (made), 1 (nothing to move: err says
 * why) or a CORAL_E* code (err says why). */
static int edit_bucket(struct grd_core *c, const struct grd_request_q *q, Coral__GrdMapRecord *n, int64_t bucket,
		       char *err, size_t errsz)
{
	uint32_t node = q->req.node;
	if (bucket < 0 || bucket >= (int64_t)CORAL_GRD_BUCKETS) {
		snprintf(err, errsz, "bucket %lld is out of range 0-%u", (long long)bucket, CORAL_GRD_BUCKETS - 1);
		return CORAL_EINVAL;
	}
	if (c->scratch_owner[bucket] == node) {
		snprintf(err, errsz, "bucket %lld is already mastered by node %u", (long long)bucket, node);
		return 1;
	}
	/* an override equal to what the ring gives is no override: drop it */
	uint8_t *ring = malloc(CORAL_GRD_BUCKETS);
	if (ring == NULL) {
		snprintf(err, errsz, "out of memory");
		return CORAL_ENOMEM;
	}
	grd_map_compute(n->members, n->n_members, NULL, 0, ring);
	int rc = grd_set_bucket_override(n, (uint32_t)bucket, ring[bucket] == node ? 0 : node, (size_t)c->conf->max_overrides);
	free(ring);
	snprintf(err, errsz, "bucket %lld from node %u to node %u", (long long)bucket, c->scratch_owner[bucket], node);
	return rc;
}

/* The same for a resource. */
static int edit_resource(struct grd_core *c, const struct grd_request_q *q, Coral__GrdMapRecord *n,
			 const struct coral_resid *id, char *err, size_t errsz)
{
	uint32_t node = q->req.node;
	uint32_t bo = c->scratch_owner[coral_resid_bucket(id)];
	uint32_t now = grd_rec_master(c->rec, c->scratch_owner, id);
	if (now == node) {
		snprintf(err, errsz, "%s is already mastered by node %u", q->target, now);
		return 1;
	}
	int rc = grd_set_res_override(n, id, bo == node ? 0 : node, (size_t)c->conf->max_overrides);
	snprintf(err, errsz, "%s from node %u to node %u", q->target, now, node);
	return rc;
}

/* An operator's remaster (or an affinity proposal, or a recovery mark): a move to the next
 * version, or an answer saying why there is none. */
static void start_request(struct grd_core *c, struct grd_request_q *q)
{
	const Coral__GrdRemasterRequest *req = &q->req;
	char err[256];
	if (c->rec == NULL) {
		grd_remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOTRUNNING, "no map has been agreed yet", NULL);
		return;
	}
	if (req->recovered) {
		start_recovered(c, q);
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
	if (coral_parse_int(q->target, &bucket))
		rc = edit_bucket(c, q, n, bucket, err, sizeof(err));
	else if (coral_resid_parse(q->target, &id, err, sizeof(err)) == 0)
		rc = edit_resource(c, q, n, &id, err, sizeof(err));
	else
		rc = CORAL_EINVAL;
	if (rc == 0) {
		grd_move_start(c, n, q->cause, req->dry_run, true, q->origin, q->cookie, err);
		return;
	}
	grd_record_free(n);
	if (rc == 1) {
		Coral__GrdRemasterReply r = CORAL__GRD_REMASTER_REPLY__INIT;
		r.map_version = version(c);
		r.detail = err;
		grd_remaster_answer(c, true, q->origin, q->cookie, 0, NULL, &r);
		return;
	}
	if (rc == CORAL_EFULL)
		snprintf(err, sizeof(err), "the map already carries max_overrides (%lld) overrides of that kind",
			 (long long)c->conf->max_overrides);
	else if (rc == CORAL_ENOMEM)
		snprintf(err, sizeof(err), "out of memory");
	grd_remaster_answer(c, true, q->origin, q->cookie, rc, err, NULL);
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

/* The first map: the members there are now. */
/* The incarnation member id had when it came on the ring of record r, and its SGA; 0: not
 * known (a record of an older version). */
static uint64_t ring_inc(const Coral__GrdMapRecord *r, uint32_t id)
{
	if (r == NULL || r->n_member_incs != r->n_members)
		return 0;
	for (size_t i = 0; i < r->n_members; i++)
		if (r->members[i] == id)
			return r->member_incs[i];
	return 0;
}

static uint64_t ring_instance(const Coral__GrdMapRecord *r, uint32_t id)
{
	if (r == NULL || r->n_member_instances != r->n_members)
		return 0;
	for (size_t i = 0; i < r->n_members; i++)
		if (r->members[i] == id)
			return r->member_instances[i];
	return 0;
}

/* Whether member id of the record restarted since: raftd has it with another SGA. */
static bool restarted(const struct grd_core *c, uint32_t id)
{
	uint64_t was = ring_instance(c->rec, id), now = member_instance(c, id);
	return was != 0 && now != 0 && was != now;
}

/* n's members' incarnations and SGAs, as raftd has them now (a member kept from the record
 * has the same SGA, or it would not have been kept). */
static int set_member_incs(struct grd_core *c, Coral__GrdMapRecord *n)
{
	uint64_t *a = malloc((n->n_members + 1) * sizeof(uint64_t));
	uint64_t *b = malloc((n->n_members + 1) * sizeof(uint64_t));
	if (a == NULL || b == NULL) {
		free(a);
		free(b);
		return CORAL_ENOMEM;
	}
	for (size_t i = 0; i < n->n_members; i++) {
		a[i] = member_inc(c, n->members[i]);
		b[i] = member_instance(c, n->members[i]);
	}
	free(n->member_incs);
	free(n->member_instances);
	n->member_incs = a;
	n->n_member_incs = n->n_members;
	n->member_instances = b;
	n->n_member_instances = n->n_members;
	return 0;
}

static void commit_first(struct grd_core *c, uint32_t *want, size_t nwant)
{
	Coral__GrdMapRecord r = CORAL__GRD_MAP_RECORD__INIT;
	uint64_t incs[CORAL_MAX_NODES], insts[CORAL_MAX_NODES];
	for (size_t i = 0; i < nwant; i++) {
		incs[i] = member_inc(c, want[i]);
		insts[i] = member_instance(c, want[i]);
	}
	r.version = 1;
	r.members = want;
	r.n_members = nwant;
	r.member_incs = incs;
	r.n_member_incs = nwant;
	r.member_instances = insts;
	r.n_member_instances = nwant;
	r.cause = CORAL_GRD_CAUSE_INIT;
	r.coordinator = c->self;
	r.at_ms = grd_wall_ms(c);
	r.detail = (char *)"first map";
	c->store_busy = true;
	if (grd_record_store(c, &r, GRD_STORE_INIT) != 0)
		c->store_busy = false;
}

/* Adds lost node d to the record, with what it owned; false when out of memory. */
static bool add_lost(struct grd_core *c, Coral__GrdMapRecord *n, uint32_t d)
{
	if (n->n_lost >= CORAL_GRD_MAX_LOST)
		return true;
	Coral__GrdLost **p = realloc(n->lost, (n->n_lost + 1) * sizeof(*p));
	Coral__GrdLost *l = malloc(sizeof(*l));
	if (p)
		n->lost = p;
	if (p == NULL || l == NULL) {
		free(l);
		return false;
	}
	coral__grd_lost__init(l);
	l->node = d;
	/* the incarnation that was lost: raftd's (evicted), or, for a node restarted since, the
	 * one it had on the ring */
	l->incarnation = restarted(c, d) && ring_inc(c->rec, d) ? ring_inc(c->rec, d) : member_inc(c, d);
	l->since_version = version(c) + 1;
	n->lost[n->n_lost++] = l;
	return lost_buckets(c, l) == 0;
}

/* A lost node's overrides go with it, kept to know what was its: those buckets and
 * resources are rebuilt by their new masters. */
static void keep_lost_overrides(Coral__GrdMapRecord *n, uint32_t d)
{
	for (size_t k = 0; k < n->n_bucket_overrides;) {
		if (n->bucket_overrides[k]->node != d) {
			k++;
			continue;
		}
		Coral__GrdBucketOverride **p = realloc(n->lost_bucket_overrides, (n->n_lost_bucket_overrides + 1) * sizeof(*p));
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
		Coral__GrdResOverride **p = realloc(n->lost_res_overrides, (n->n_lost_res_overrides + 1) * sizeof(*p));
		if (p == NULL)
			break;
		n->lost_res_overrides = p;
		p[n->n_lost_res_overrides++] = n->res_overrides[k];
		n->res_overrides[k] = n->res_overrides[--n->n_res_overrides];
	}
}

/* " node A node B" for the nodes of list a that are not in b, after prefix. */
static void nodes_line(char *buf, size_t n, const char *prefix, const uint32_t *a, size_t na, const uint32_t *b,
		       size_t nb)
{
	int off = snprintf(buf, n, "%s", prefix);
	for (size_t i = 0; i < na; i++) {
		if (in_u32(b, nb, a[i]))
			continue;
		off += snprintf(buf + off, n - (size_t)off, " node %u", a[i]);
		if (off >= (int)n)
			off = (int)n - 1;
	}
}

/* Departures: nothing can be shipped from a lost node, so no freeze; the next version drops
 * it (keep: the members that stay) and lists it as lost. A member restarted since it came
 * on the ring (raftd has it with another SGA) is lost too, and joins again after. */
static void commit_leave(struct grd_core *c, const uint32_t *keep, size_t nkeep)
{
	Coral__GrdMapRecord *n = grd_rec_edit(c);
	if (n == NULL)
		return;
	char detail[160];
	nodes_line(detail, sizeof(detail), "lost", c->rec->members, c->rec->n_members, keep, nkeep);
	for (size_t i = 0; i < c->rec->n_members; i++) {
		uint32_t d = c->rec->members[i];
		if (in_u32(keep, nkeep, d))
			continue;
		if (!add_lost(c, n, d))
			break;
		keep_lost_overrides(n, d);
	}
	if (grd_set_members(n, keep, nkeep) != 0 || set_member_incs(c, n) != 0) {
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
}

/* Every member restarted (a cold start): the members and their incarnations anew. */
static void commit_restart(struct grd_core *c, const uint32_t *want, size_t nwant)
{
	Coral__GrdMapRecord *n = grd_rec_edit(c);
	if (n == NULL)
		return;
	if (grd_set_members(n, want, nwant) != 0 || set_member_incs(c, n) != 0) {
		grd_record_free(n);
		return;
	}
	grd_record_stamp(c, n, CORAL_GRD_CAUSE_JOIN, 0, "every member restarted (a cold start)", grd_wall_ms(c));
	grd_log(c, CORAL_LOG_NOTICE, "map version %llu: every member restarted (a cold start): the ring is made again",
		(unsigned long long)n->version);
	c->store_busy = true;
	if (grd_record_store(c, n, GRD_STORE_LEAVE) != 0)
		c->store_busy = false;
	grd_record_free(n);
}

/* Arrivals: a move, frozen and shipped as any other. */
static void start_join(struct grd_core *c, uint32_t *want, size_t nwant, const uint32_t *keep, size_t nkeep)
{
	Coral__GrdMapRecord *n = grd_rec_edit(c);
	if (n == NULL || grd_set_members(n, want, nwant) != 0 || set_member_incs(c, n) != 0) {
		if (n)
			grd_record_free(n);
		return;
	}
	char detail[160];
	nodes_line(detail, sizeof(detail), "joined", want, nwant, keep, nkeep);
	grd_move_start(c, n, CORAL_GRD_CAUSE_JOIN, false, false, 0, 0, detail);
}

/* The coordinator's step: the first map, then departures, then arrivals, then the queue of
 * requests (operator remasters, affinity proposals), one change at a time. */
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
		commit_first(c, want, nwant);
		return;
	}
	if (c->now_ms < c->replan_after_ms)
		return;
	if (version(c) < c->await_version && c->now_ms < c->await_until_ms)
		return;
	uint32_t keep[CORAL_MAX_NODES];
	size_t nkeep = 0;
	for (size_t i = 0; i < c->rec->n_members; i++) {
		uint32_t id = c->rec->members[i];
		if (in_u32(want, nwant, id) && !restarted(c, id))
			keep[nkeep++] = id;
	}
	if (nkeep == 0 && c->rec->n_members > 0) {
		/* every member restarted since the record was made: a cold start, whose smond
		 * recovered every thread before any lmsd served (storage.h: the instance lock).
		 * Nothing is lost; the ring is the members there are, under their incarnations */
		commit_restart(c, want, nwant);
		return;
	}
	if (nkeep < c->rec->n_members) {
		/* members restarted while a kept one's grdd does not answer: likely the whole
		 * cluster coming back (a cold start) with that one's join not yet in raftd; wait
		 * a little for it rather than count the others as lost (a spurious recovery that
		 * holds up their joins) */
		bool silent = false;
		for (size_t i = 0; i < nkeep; i++)
			for (size_t k = 0; k < c->nmembers; k++)
				silent |= c->members[k].id == keep[i] && keep[i] != c->self && !c->members[k].reachable;
		bool restart = false;
		for (size_t i = 0; i < c->rec->n_members; i++)
			restart |= restarted(c, c->rec->members[i]);
		if (restart && silent) {
			if (c->leave_hold_ms == 0)
				c->leave_hold_ms = c->now_ms;
			if (c->now_ms - c->leave_hold_ms < c->leave_hold_max_ms)
				return;
		}
		c->leave_hold_ms = 0;
		commit_leave(c, keep, nkeep);
		return;
	}
	c->leave_hold_ms = 0;
	if (nkeep < nwant) {
		start_join(c, want, nwant, keep, nkeep);
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

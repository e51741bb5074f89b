/* grdd's core: a master serving requests for the resources it masters (granting, queueing,
 * refusing what is frozen, staged or needs recovery), and this node's own requests to other
 * masters (the client side), each bounded, retried and answered once. */

#include "core_int.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int held_record(struct grd_core *c, const struct coral_resid *id, int op, int mode);

bool grd_core_serving(struct grd_core *c, const struct coral_resid *id)
{
	if (c->fenced || c->rec == NULL)
		return false;
	struct coral_grd_where w;
	coral_grd_lookup(c->map, id, &w);
	if (w.master != c->self || atomic_load(&c->dir->bstate[w.bucket]) != CORAL_GRDB_ACTIVE)
		return false;
	coral_grd_dir_lock(c->dir, w.bucket);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, id);
	bool ok = e == NULL ? !coral_grd_loss_pending(c->dir, w.lost_owner) && !grd_rebuilding_res(c, id)
			    : !(e->flags & (CORAL_GRDE_FROZEN | CORAL_GRDE_STAGED | CORAL_GRDE_RECOVERY));
	coral_grd_dir_unlock(c->dir, w.bucket);
	return ok;
}

/* A master's answer to a request: a code, the map version to retry at (frozen or not the
 * master), the mode granted, and why. */
struct verdict {
	int code;
	uint64_t retry;
	int mode;
	char why[200];
};

static void verdict(struct verdict *v, int code, uint64_t retry, int mode, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void verdict(struct verdict *v, int code, uint64_t retry, int mode, const char *fmt, ...)
{
	v->code = code;
	v->retry = retry;
	v->mode = mode;
	v->why[0] = '\0';
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->why, sizeof(v->why), fmt, ap);
		va_end(ap);
	}
}

static void reply(struct grd_core *c, uint32_t to, uint64_t req_id, const struct verdict *v)
{
	Coral__GrdReply r = CORAL__GRD_REPLY__INIT;
	r.req_id = req_id;
	r.code = v->code;
	r.error = (char *)v->why;
	r.map_version = version(c);
	r.retry_version = v->retry;
	r.master = c->self;
	r.mode = (uint32_t)v->mode;
	if (v->code == 0)
		c->st.served++;
	else if (v->code == CORAL_ENOTMASTER)
		c->st.not_master++;
	else if (v->code == CORAL_EFROZEN)
		c->st.frozen_refusals++;
	else if (v->code == CORAL_ERECOVERY)
		c->st.recovery_refusals++;
	else if (v->code == CORAL_EFULL)
		c->st.full_refusals++;
	grd_send_msg(c, to, GRD_MSG_REPLY, (const ProtobufCMessage *)&r);
}

static void maybe_propose(struct grd_core *c, struct coral_grd_entry *e)
{
	if (!c->conf->affinity || c->leader == 0)
		return;
	uint32_t node, count, others;
	coral_grd_entry_top(e, 0, &node, &count, &others);
	if (node == 0 || node == c->self || count < (uint32_t)c->conf->affinity_threshold ||
	    (uint64_t)count < (uint64_t)others * (uint64_t)c->conf->affinity_ratio)
		return;
	uint64_t now_ns = c->now_ms * 1000000ull;
	if (e->moved_ns != 0 && now_ns - e->moved_ns < (uint64_t)c->conf->affinity_cooldown_ms * 1000000ull)
		return;
	e->moved_ns = now_ns; /* also keeps us from proposing again before the cooldown */
	Coral__GrdPropose p = CORAL__GRD_PROPOSE__INIT;
	Coral__GrdRes r;
	grd_res_to_msg(&e->id, &r);
	p.id = &r;
	p.to = node;
	p.count = count;
	p.version = version(c);
	c->st.proposals++;
	grd_send_msg(c, c->leader, GRD_MSG_PROPOSE, (const ProtobufCMessage *)&p);
}

/* A resource (not a whole bucket: those are marked REBUILDING) still being rebuilt here. */
bool grd_rebuilding_res(const struct grd_core *c, const struct coral_resid *id)
{
	for (size_t i = 0; i < c->nrebuild; i++)
		for (size_t k = 0; k < c->rebuild[i].nres; k++)
			if (coral_resid_eq(&c->rebuild[i].res[k], id))
				return true;
	return false;
}

/* What is decided before the latch: a fenced node, a request of another map version, a
 * resource mastered elsewhere, a bucket moving or being rebuilt. True if decided. */
static bool decide_unlatched(struct grd_core *c, const Coral__GrdRequest *q, const char *rs,
			     const struct coral_grd_where *w, struct verdict *v)
{
	uint64_t ver = version(c);
	if (c->fenced)
		verdict(v, CORAL_EFENCED, 0, 0, "node %u is fenced", c->self);
	else if (q->map_version != ver)
		verdict(v, CORAL_ENOTMASTER, q->map_version > ver ? q->map_version : ver, 0,
			"node %u is at map version %llu, the request at %llu", c->self, (unsigned long long)ver,
			(unsigned long long)q->map_version);
	else if (w->master != c->self)
		verdict(v, CORAL_ENOTMASTER, ver, 0, "%s is mastered by node %u at version %llu", rs, w->master,
			(unsigned long long)ver);
	else if (atomic_load(&c->dir->bstate[w->bucket]) != CORAL_GRDB_ACTIVE)
		verdict(v, CORAL_EFROZEN, ver + 1, 0, "bucket %u is %s", w->bucket,
			atomic_load(&c->dir->bstate[w->bucket]) == CORAL_GRDB_FROZEN ? "moving" : "being rebuilt");
	else
		return false;
	return true;
}

/* The resource's entry (latch held), made if need be; NULL with the verdict given when the
 * request is decided without one (moving, needs recovery, a release of nothing, full). */
static struct coral_grd_entry *entry_for(struct grd_core *c, const Coral__GrdRequest *q, const struct coral_resid *id,
					 const char *rs, const struct coral_grd_where *w, struct verdict *v)
{
	uint64_t ver = version(c);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, id);
	if (e && (e->flags & (CORAL_GRDE_FROZEN | CORAL_GRDE_STAGED)))
		verdict(v, CORAL_EFROZEN, ver + 1, 0, "%s is moving", rs);
	else if (e && (e->flags & CORAL_GRDE_RECOVERY))
		verdict(v, CORAL_ERECOVERY, 0, 0,
			"%s was held by lost node %u in a mode that may have changed it: it needs instance "
			"recovery before it is granted", rs, e->recovery_node);
	else if (e == NULL && grd_rebuilding_res(c, id))
		verdict(v, CORAL_EFROZEN, ver, 0, "%s is being rebuilt after its master was lost", rs);
	else if (e == NULL && coral_grd_loss_pending(c->dir, w->lost_owner))
		verdict(v, CORAL_ERECOVERY, 0, 0,
			"%s was mastered by lost node %u and no survivor holds it: it needs instance "
			"recovery before it is granted", rs, w->lost_owner);
	else if (e == NULL && q->op == 2)
		verdict(v, 0, 0, 0, NULL);
	else if (e == NULL && (e = coral_grd_dir_insert(c->dir, id)) == NULL)
		verdict(v, CORAL_EFULL, 0, 0,
			"the directory of node %u is full (%u entries, all with holders): raise [grd] "
			"directory_entries", c->self, c->dir->capacity);
	else
		return e;
	return NULL;
}

/* A release, or a grant if no other node holds the resource in an incompatible mode. */
static void grant(struct grd_core *c, uint32_t from, const Coral__GrdRequest *q, struct coral_grd_entry *e,
		  bool block, const char *rs, struct verdict *v)
{
	coral_grd_entry_access(e, from);
	coral_grd_dir_touch(c->dir, e);
	if (q->op == 2) {
		coral_grd_entry_set_mode(e, from, 0);
		e->pi &= ~bit(from);
		verdict(v, 0, 0, 0, NULL);
		return;
	}
	int want = (int)q->mode;
	if (want < 0 || want >= (block ? CORAL_BL_NMODES : CORAL_LK_NMODES)) {
		verdict(v, CORAL_EINVAL, 0, 0, "mode %d is not a mode of %s", want, rs);
		return;
	}
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (n != from && (e->holders & bit(n)) && !coral_grd_compatible(block, e->mode[n - 1], want)) {
			verdict(v, CORAL_EHELD, 0, 0, "%s is held by node %u in %s", rs, n,
				coral_grd_mode_name(block, e->mode[n - 1]));
			return;
		}
	}
	coral_grd_entry_set_mode(e, from, want);
	e->grants++;
	if (from != c->self)
		maybe_propose(c, e);
	verdict(v, 0, 0, want, NULL);
}

/* A request at this master: acquire (op 1) or release (op 2) a resource for node `from`. */
void grd_on_request(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdRequest *q = msg;
	struct coral_resid id;
	if (!grd_res_from_msg(q->id, &id) || (q->op != 1 && q->op != 2)) {
		c->st.msgs_refused++;
		return;
	}
	char rs[64];
	coral_resid_format(&id, rs, sizeof(rs));
	struct coral_grd_where w;
	coral_grd_lookup(c->map, &id, &w);
	struct verdict v;
	if (!decide_unlatched(c, q, rs, &w, &v)) {
		coral_grd_dir_lock(c->dir, w.bucket);
		struct coral_grd_entry *e = entry_for(c, q, &id, rs, &w, &v);
		if (e != NULL)
			grant(c, from, q, e, coral_resid_is_block(&id), rs, &v);
		coral_grd_dir_unlock(c->dir, w.bucket);
	}
	reply(c, from, q->req_id, &v);
}

/* ---- the client side ------------------------------------------------------------------ */

static void pending_send(struct grd_core *c, struct grd_pending *p)
{
	struct coral_grd_where w;
	coral_grd_lookup(c->map, &p->id, &w);
	p->attempts++;
	p->sent_ms = c->now_ms;
	if (w.master == 0) {
		p->waiting_reply = false;
		p->retry_at_ms = c->now_ms + GRD_RETRY_MS;
		return;
	}
	p->master = w.master;
	p->req_id = c->next_req_id++;
	p->waiting_reply = true;
	Coral__GrdRequest q = CORAL__GRD_REQUEST__INIT;
	Coral__GrdRes r;
	grd_res_to_msg(&p->id, &r);
	q.req_id = p->req_id;
	q.map_version = w.version;
	q.id = &r;
	q.op = (uint32_t)p->op;
	q.mode = (uint32_t)p->mode;
	grd_send_msg(c, w.master, GRD_MSG_REQUEST, (const ProtobufCMessage *)&q);
}

static void pending_done(struct grd_core *c, struct grd_pending *p, int code, const char *err,
			 uint32_t master, uint64_t ver, int mode)
{
	struct grd_answer a = {master, ver, mode, p->attempts, (c->now_ms - p->started_ms) * 1000};
	if (code == 0)
		c->st.granted++;
	else
		c->st.refused++;
	p->used = false;
	c->npending_used--;
	c->ops.answer(c->ops.arg, p->cookie, code, err, &a);
}

int grd_core_lock(struct grd_core *c, const struct coral_resid *id, int op, int mode, uint64_t cookie)
{
	c->st.requests++;
	/* one request per resource at a time from a node: answers of overlapping requests
	 * could otherwise be applied to the held table in another order than the master's */
	for (size_t i = 0; c->npending_used && i < c->npending_cap; i++)
		if (c->pending[i].used && coral_resid_eq(&c->pending[i].id, id))
			return CORAL_EBUSY;
	/* a release stops the use first: the held table never claims more than the master knows */
	if (op == 2)
		held_record(c, id, 2, 0);
	for (size_t i = 0; i < c->npending_cap; i++) {
		struct grd_pending *p = &c->pending[i];
		if (p->used)
			continue;
		memset(p, 0, sizeof(*p));
		p->used = true;
		c->npending_used++;
		p->cookie = cookie;
		p->id = *id;
		p->op = op;
		p->mode = mode;
		p->started_ms = c->now_ms;
		pending_send(c, p);
		return 0;
	}
	return CORAL_EBUSY;
}

/* Keeps this node's own table of what it holds: reported to a new master after a loss. */
static int held_record(struct grd_core *c, const struct coral_resid *id, int op, int mode)
{
	uint32_t b = coral_resid_bucket(id);
	coral_grd_dir_lock(c->held, b);
	struct coral_grd_entry *e = coral_grd_dir_find(c->held, id);
	int rc = 0;
	if (op == 2) {
		if (e)
			coral_grd_dir_remove(c->held, e);
	} else {
		if (e == NULL)
			e = coral_grd_dir_insert(c->held, id);
		if (e == NULL) {
			rc = CORAL_EFULL;
		} else {
			coral_grd_entry_set_mode(e, c->self, mode);
			coral_grd_dir_touch(c->held, e);
		}
	}
	coral_grd_dir_unlock(c->held, b);
	return rc;
}

void grd_on_reply(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdReply *r = msg;
	struct grd_pending *p = NULL;
	for (size_t i = 0; i < c->npending_cap; i++)
		if (c->pending[i].used && c->pending[i].waiting_reply && c->pending[i].req_id == r->req_id) {
			p = &c->pending[i];
			break;
		}
	if (p == NULL || from != p->master)
		return; /* late: an earlier attempt's answer */
	p->waiting_reply = false;
	if (r->code == 0) {
		int rc = held_record(c, &p->id, p->op, (int)r->mode);
		if (rc != 0) {
			/* granted but not recordable: give it back rather than hold it unreported */
			Coral__GrdRequest q = CORAL__GRD_REQUEST__INIT;
			Coral__GrdRes rr;
			grd_res_to_msg(&p->id, &rr);
			q.req_id = 0;
			q.map_version = r->map_version;
			q.id = &rr;
			q.op = 2;
			grd_send_msg(c, from, GRD_MSG_REQUEST, (const ProtobufCMessage *)&q);
			pending_done(c, p, rc, "this node's table of held resources is full: raise [grd] held_entries",
				     from, r->map_version, 0);
			return;
		}
		pending_done(c, p, 0, NULL, from, r->map_version, (int)r->mode);
		return;
	}
	if (r->code == CORAL_ENOTMASTER || r->code == CORAL_EFROZEN) {
		c->st.retried++;
		p->wait_version = r->retry_version;
		p->retry_at_ms = c->now_ms + GRD_RETRY_MS;
		return;
	}
	pending_done(c, p, r->code, r->error, from, r->map_version, 0);
}

void grd_pending_tick(struct grd_core *c)
{
	for (size_t i = 0; c->npending_used && i < c->npending_cap; i++) {
		struct grd_pending *p = &c->pending[i];
		if (!p->used)
			continue;
		if (c->now_ms - p->started_ms >= (uint64_t)c->conf->request_timeout_ms) {
			char err[160];
			snprintf(err, sizeof(err), "no master answered within request_timeout_ms (%lld ms, %u attempts, map version %llu)",
				 (long long)c->conf->request_timeout_ms, p->attempts,
				 (unsigned long long)version(c));
			pending_done(c, p, CORAL_ETIMEDOUT, err, 0, version(c), 0);
			continue;
		}
		if (p->waiting_reply) {
			if (c->now_ms - p->sent_ms >= GRD_RESEND_MS)
				pending_send(c, p); /* lost or late: ask again (acquire and release are idempotent) */
			continue;
		}
		/* retry once the map has reached the version the master named, or after a longer
		 * wait if it has not (the master may be the one behind) */
		if (c->now_ms >= p->retry_at_ms &&
		    (version(c) >= p->wait_version || c->now_ms >= p->retry_at_ms + 10 * GRD_RETRY_MS))
			pending_send(c, p);
	}
}

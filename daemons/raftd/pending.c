/* raftd's pending-request table: every request waiting for consensus (a write to commit, a
 * read to reach its index, a forward to be answered, a watch to see a change) holds a slot,
 * bounded by [raft] max_pending; a full table refuses new requests as busy. A request is
 * answered once, by its origin's answer function (the control socket, HTTP, a forward from
 * a follower: set by main.c), and its slot freed. */
#include "raftd.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pending_init(struct raftd *r)
{
	r->npend = (size_t)r->rc->max_pending;
	r->pend = calloc(r->npend, sizeof(*r->pend));
	r->pend_free = calloc(r->npend, sizeof(*r->pend_free));
	if (r->pend == NULL || r->pend_free == NULL)
		return CORAL_ENOMEM;
	for (size_t k = 0; k < r->npend; k++)   /* lowest slots first: pend_hi stays small */
		r->pend_free[r->nfree++] = (uint32_t)(r->npend - 1 - k);
	return 0;
}

void pending_fini(struct raftd *r)
{
	for (size_t k = 0; r->pend && k < r->npend; k++)
		if (r->pend[k].state != PS_FREE)
			pending_answer(r, &r->pend[k], CORAL_ECLOSED, "raftd is stopping");
	free(r->pend);
	free(r->pend_free);
	r->pend = NULL;
	r->pend_free = NULL;
}

struct pending *pending_new(struct raftd *r, uint8_t type, uint8_t origin, int timeout_ms)
{
	if (r->nfree == 0) {
		r->refused_busy++;
		return NULL;
	}
	size_t k = r->pend_free[--r->nfree];
	struct pending *p = &r->pend[k];
	memset(p, 0, sizeof(*p));
	if (++r->pend_gen == 0)
		r->pend_gen = 1;                 /* id 0 is never handed out */
	p->id = (uint64_t)k | (uint64_t)r->pend_gen << 32;
	p->type = type;
	p->origin = origin;
	p->deadline_ns = coral_now_mono_ns() + (uint64_t)timeout_ms * 1000000ull;
	p->state = PS_NEW;
	r->pend_used++;
	if (k + 1 > r->pend_hi)
		r->pend_hi = k + 1;
	return p;
}

struct pending *pending_find(struct raftd *r, uint64_t id)
{
	size_t k = (size_t)(id & 0xffffffffu);
	if (k >= r->npend || r->pend[k].id != id || r->pend[k].state == PS_FREE)
		return NULL;
	return &r->pend[k];
}

static void pending_release(struct raftd *r, struct pending *p)
{
	size_t k = (size_t)(p->id & 0xffffffffu);
	free(p->cmd);
	memset(p, 0, sizeof(*p));
	r->pend_free[r->nfree++] = (uint32_t)k;
	r->pend_used--;
	while (r->pend_hi > 0 && r->pend[r->pend_hi - 1].state == PS_FREE)
		r->pend_hi--;
}

void pending_answer(struct raftd *r, struct pending *p, int code, const char *error)
{
	switch (p->origin) {
	case OR_CTL:
	case OR_HTTP:
	case OR_FWD:
		r->answer[p->origin](r, p, code, error);
		break;
	case OR_INTERNAL:
		if (code != 0 && code != CORAL_ETIMEDOUT)
			log_info("%s of node %u: %s", p->type == RQ_JOIN ? "join" : "eviction", p->node ? p->node : r->self,
				 error ? error : coral_strerror(code));
		if (p->type == RQ_JOIN && code != 0)
			r->join_pending = false;
		break;
	}
	pending_release(r, p);
}

void pending_check_applied(struct raftd *r)
{
	for (size_t k = 0; k < r->pend_hi; k++) {
		struct pending *p = &r->pend[k];
		if (p->state == PS_APPLY && p->index <= r->raft.applied)
			pending_answer(r, p, p->code, p->code ? p->error : NULL);
	}
}

void pending_watch_notify(struct raftd *r)
{
	for (size_t k = 0; k < r->pend_hi; k++) {
		struct pending *p = &r->pend[k];
		if (p->state != PS_WATCH)
			continue;
		const struct reg_change *ch[1];
		size_t n;
		if (!registry_changes(&r->reg, p->index, p->key, p->watch_members, ch, 1, &n) || n > 0)
			pending_answer(r, p, 0, NULL);
	}
}

/* A request forwarded to a leader that is no longer the leader would otherwise wait out its
 * whole timeout (the old leader may be dead, its socket not yet known closed). It is answered
 * at once, as etcd does: whether the old leader committed it is unknown, so the client is
 * told to check and retry rather than having it sent again on its behalf. */
void pending_leader_changed(struct raftd *r, uint32_t leader)
{
	for (size_t k = 0; k < r->pend_hi; k++) {
		struct pending *p = &r->pend[k];
		if (p->state != PS_FORWARDED || p->fwd_to == leader)
			continue;
		char why[160];
		snprintf(why, sizeof(why),
			 "the leader changed (node %u, now %s) before it answered: the request may or "
			 "may not have taken effect; retry", p->fwd_to, leader ? "another" : "none known");
		pending_answer(r, p, CORAL_ENOTLEADER, why);
	}
}

void pending_expire(struct raftd *r)
{
	uint64_t now = coral_now_mono_ns();
	for (size_t k = 0; k < r->pend_hi; k++) {
		struct pending *p = &r->pend[k];
		if (p->state == PS_FREE || now < p->deadline_ns)
			continue;
		if (p->state == PS_WATCH)
			pending_answer(r, p, 0, NULL); /* a long poll ends with no events */
		else
			pending_answer(r, p, CORAL_ETIMEDOUT,
				       p->state == PS_FORWARDED ? "the leader did not answer in time"
								: "not committed in time (no quorum?)");
	}
}


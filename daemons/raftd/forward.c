/* raftd's forwarding: a follower hands what only the leader can do (a write, a ReadIndex,
 * an operator's membership change or leadership transfer) to the leader over the
 * interconnect, and answers its client when the leader has answered and this node has
 * applied as far. On the leader, a forwarded request becomes a pending request of origin
 * OR_FWD, answered back to the follower. */
#include "raftd.h"

#include "errors.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>

int forward_send(struct raftd *r, struct pending *p, Coral__RaftForwardKind kind, const uint8_t *data, size_t len)
{
	uint32_t leader = r->raft.leader;
	if (leader == 0 || leader == r->self) {
		snprintf(p->error, sizeof(p->error), "no leader known (an election is under way): retry");
		return CORAL_ENOTLEADER;
	}
	Coral__RaftForward f = CORAL__RAFT_FORWARD__INIT;
	f.req_id = p->id;
	f.kind = kind;
	f.data.data = (uint8_t *)data;
	f.data.len = len;
	size_t n;
	uint8_t *buf = raftd_msg_pack(&f.base, NULL, 0, &n);
	if (buf == NULL)
		return CORAL_ENOMEM;
	int rc = coral_net_send(r->net, leader, MSG_FORWARD, buf, n);
	free(buf);
	if (rc != 0) {
		snprintf(p->error, sizeof(p->error), "cannot reach the leader (node %u): %s", leader,
			 coral_strerror(rc));
		return rc;
	}
	p->state = PS_FORWARDED;
	p->fwd_to = leader;
	return 0;
}

static void answer(struct raftd *r, uint32_t to, uint64_t req_id, int code, const char *error, uint64_t index)
{
	Coral__RaftForwardResp a = CORAL__RAFT_FORWARD_RESP__INIT;
	a.req_id = req_id;
	a.code = code;
	a.error = (char *)(error ? error : "");
	a.index = index;
	a.leader = r->raft.leader;
	uint8_t buf[512];
	if (raftd_msg_size(&a.base) > sizeof(buf))
		a.error = (char *)"";
	size_t n;
	raftd_msg_pack(&a.base, buf, sizeof(buf), &n);
	coral_net_send(r->net, to, MSG_FORWARD_RESP, buf, n);
}

void forward_answer(struct raftd *r, struct pending *p, int code, const char *error)
{
	answer(r, p->fwd_node, p->fwd_req, code, error, p->index);
}

/* What a forwarded request is filed as in the leader's pending table. */
static uint8_t filed_as(Coral__RaftForwardKind kind)
{
	switch (kind) {
	case CORAL__RAFT_FORWARD_KIND__FORWARD_READ: return RQ_KV_GET;
	case CORAL__RAFT_FORWARD_KIND__FORWARD_TRANSFER: return RQ_TRANSFER;
	case CORAL__RAFT_FORWARD_KIND__FORWARD_ADD_NODE: return RQ_ADD_NODE;
	case CORAL__RAFT_FORWARD_KIND__FORWARD_REMOVE_NODE: return RQ_REMOVE_NODE;
	default: return RQ_KV_PUT;
	}
}

static int submit(struct raftd *r, struct pending *p, const Coral__RaftForward *f)
{
	if (f->kind == CORAL__RAFT_FORWARD_KIND__FORWARD_READ)
		return raftd_submit_read(r, p);
	if (f->kind < CORAL__RAFT_FORWARD_KIND__FORWARD_WRITE || f->kind > CORAL__RAFT_FORWARD_KIND__FORWARD_REMOVE_NODE) {
		snprintf(p->error, sizeof(p->error), "unknown forward kind %d", (int)f->kind);
		return CORAL_EINVAL;
	}
	Coral__RegCmd *cmd = raft_cmd_decode(f->data.data, f->data.len);
	if (cmd == NULL)
		return CORAL_EDECODE;
	int rc = f->kind == CORAL__RAFT_FORWARD_KIND__FORWARD_WRITE ? raftd_submit_write(r, p, cmd)
								     : raftd_admin(r, p, f->kind, cmd);
	raft_cmd_free(cmd);
	return rc;
}

void forward_recv(struct raftd *r, uint32_t from, const Coral__RaftForward *f)
{
	if (!raftd_is_leader(r)) {
		answer(r, from, f->req_id, CORAL_ENOTLEADER, "not the leader any more", 0);
		return;
	}
	struct pending *p = pending_new(r, filed_as(f->kind), OR_FWD, 5000);
	if (p == NULL) {
		answer(r, from, f->req_id, CORAL_EBUSY, "the leader's request table is full", 0);
		return;
	}
	p->fwd_node = from;
	p->fwd_req = f->req_id;
	int rc = submit(r, p, f);
	if (rc != 0)
		pending_answer(r, p, rc, p->error[0] ? p->error : coral_strerror(rc));
}

void forward_recv_answer(struct raftd *r, const Coral__RaftForwardResp *a)
{
	struct pending *p = pending_find(r, a->req_id);
	if (p == NULL || p->state != PS_FORWARDED)
		return;
	if (a->code != 0) {
		pending_answer(r, p, a->code, a->error);
	} else {
		/* answered once this node has applied as far: reads see the write */
		p->index = a->index;
		p->state = PS_APPLY;
		pending_check_applied(r);
	}
}

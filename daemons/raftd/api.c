/* raftd's control requests on its Unix socket (coralctl raft, cluster, kv) and their
 * answers. Each becomes a pending request (pending.c) of origin OR_CTL; reads go through
 * ReadIndex unless stale is asked for; writes on a follower are forwarded to the leader
 * (forward.c) and answered once this node has applied them. The kv operation is shared with
 * the HTTP API (http.c). */
#include "raftd.h"
#include "http_route.h"
#include "httpserve.h"
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- answers over the control socket -------------------------------------------------- */

static void fill_kv(Coral__RegKV *o, const struct reg_kv *kv)
{
	coral__reg_kv__init(o);
	o->key = kv->key;
	o->value.data = kv->value;
	o->value.len = kv->vlen;
	o->create_index = kv->create_index;
	o->mod_index = kv->mod_index;
}

void api_answer_ctl(struct raftd *r, struct pending *p, int code, const char *error)
{
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.code = code;
	resp.error = (char *)(error ? error : "");
	Coral__KvReply kr = CORAL__KV_REPLY__INIT;
	Coral__RegKV *kvs = NULL, **kvp = NULL;
	Coral__MembersReply mr = CORAL__MEMBERS_REPLY__INIT;
	Coral__Member mem[CORAL_MAX_NODES], *memp[CORAL_MAX_NODES];
	Coral__WatchReply wr = CORAL__WATCH_REPLY__INIT;
	Coral__WatchEvent *wev = NULL, **wevp = NULL;
	if (code == 0) {
		switch (p->type) {
		case RQ_KV_GET: {
			const struct reg_kv *kv = registry_get(&r->reg, p->key);
			if (kv == NULL) {
				resp.code = CORAL_ENOENT;
				char buf[REG_KEY_MAX + 16];
				snprintf(buf, sizeof(buf), "no key '%s'", p->key);
				resp.error = buf;
				coral_daemon_answer(r->d, p->conn_id, p->request_id, &resp);
				return;
			}
			kvs = calloc(1, sizeof(*kvs));
			kvp = calloc(1, sizeof(*kvp));
			if (kvs && kvp) {
				fill_kv(kvs, kv);
				kvp[0] = kvs;
				kr.kv = kvp;
				kr.n_kv = 1;
			}
			kr.index = r->raft.applied;
			resp.body_case = CORAL__CTL_RESPONSE__BODY_KV;
			resp.kv = &kr;
			break;
		}
		case RQ_KV_LIST: {
			size_t first, n;
			registry_range(&r->reg, p->key, &first, &n);
			if (n > 10000)
				n = 10000; /* one frame; use a longer prefix for more */
			kvs = calloc(n ? n : 1, sizeof(*kvs));
			kvp = calloc(n ? n : 1, sizeof(*kvp));
			if (kvs && kvp) {
				for (size_t i = 0; i < n; i++) {
					fill_kv(&kvs[i], &r->reg.kv[first + i]);
					kvp[i] = &kvs[i];
				}
				kr.kv = kvp;
				kr.n_kv = n;
			}
			kr.index = r->raft.applied;
			resp.body_case = CORAL__CTL_RESPONSE__BODY_KV;
			resp.kv = &kr;
			break;
		}
		case RQ_KV_PUT:
		case RQ_KV_DEL:
			kr.index = p->index;
			resp.body_case = CORAL__CTL_RESPONSE__BODY_KV;
			resp.kv = &kr;
			break;
		case RQ_MEMBERS:
			mr.epoch = r->reg.epoch;
			mr.leader = r->raft.leader;
			for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
				const struct reg_member *m = &r->reg.members[id];
				bool in_raft = raft_conf_is_voter(&r->raft.conf, id) ||
					       raft_conf_is_learner(&r->raft.conf, id);
				if (m->state == CORAL_MEMBER_NONE && !in_raft)
					continue;
				Coral__Member *o = &mem[mr.n_members];
				coral__member__init(o);
				o->id = id;
				o->address = (char *)m->address;
				o->incarnation = m->incarnation;
				o->state = (char *)coral_member_state_name(m->state);
				o->reason = (char *)m->reason;
				o->raft_role = (char *)raftd_role_of(r, id);
				o->changed_index = m->changed_index;
				o->changed_ns = m->changed_ns;
				memp[mr.n_members++] = o;
			}
			mr.members = memp;
			resp.body_case = CORAL__CTL_RESPONSE__BODY_MEMBERS;
			resp.members = &mr;
			break;
		case RQ_WATCH: {
			const struct reg_change *ch[256];
			size_t n = 0;
			bool ok = registry_changes(&r->reg, p->index, p->key, p->watch_members, ch, 256, &n);
			wr.compacted = !ok;
			wr.index = r->raft.applied;
			wev = calloc(n ? n : 1, sizeof(*wev));
			wevp = calloc(n ? n : 1, sizeof(*wevp));
			if (wev && wevp) {
				for (size_t i = 0; i < n; i++) {
					coral__watch_event__init(&wev[i]);
					wev[i].key = ch[i]->key;
					wev[i].deleted = ch[i]->deleted;
					wev[i].index = ch[i]->index;
					const struct reg_kv *kv = ch[i]->deleted ? NULL : registry_get(&r->reg, ch[i]->key);
					if (kv) { /* the value now, which may be newer than the change */
						wev[i].value.data = kv->value;
						wev[i].value.len = kv->vlen;
						wev[i].value_index = kv->mod_index;
					}
					wevp[i] = &wev[i];
				}
				wr.events = wevp;
				wr.n_events = n;
			}
			resp.body_case = CORAL__CTL_RESPONSE__BODY_WATCH;
			resp.watch = &wr;
			break;
		}
		default:
			break;
		}
	}
	coral_daemon_answer(r->d, p->conn_id, p->request_id, &resp);
	free(kvs);
	free(kvp);
	free(wev);
	free(wevp);
}

/* ---- control requests ------------------------------------------------------------------- */

static int timeout_ms(const struct raftd *r) { return (int)r->conf->cluster.ipc_timeout_ms; }

void raftd_status_fill(struct raftd *r, Coral__RaftStatusReply *st, Coral__RaftPeer *peers,
		       Coral__RaftPeer **peerp)
{
	coral__raft_status_reply__init(st);
	st->node_id = r->self;
	st->role = (char *)raft_role_name(r->raft.role);
	st->term = r->raft.term;
	st->leader = r->raft.leader;
	st->commit = r->raft.committed;
	st->applied = r->raft.applied;
	st->last_index = raft_last_index(&r->raft);
	st->snapshot_index = r->raft.snap.index;
	st->snapshot_bytes = r->raft.snap.len;
	if (!r->io_busy) {  /* the store's counters belong to the I/O thread while it runs */
		struct raft_store_stats ss;
		raft_store_stats(r->store, &ss);
		st->log_bytes = ss.log_bytes;
		st->log_segments = ss.segments;
	}
	st->epoch = r->reg.epoch;
	st->incarnation = r->incarnation;
	st->fenced = r->fenced;
	st->fence_reason = r->fence_reason;
	struct coral_cluster_view v;
	coral_cluster_read(r->sga, &v);
	uint64_t now = coral_now_mono_ns();
	st->lease_left_ms = v.lease_until_ns > now ? (int64_t)((v.lease_until_ns - now) / 1000000) : 0;
	st->syncs = r->syncs;
	st->entries_synced = r->entries_synced;
	st->pending = r->pend_used;
	st->proposals = r->proposals;
	st->refused_busy = r->refused_busy;
	struct coral_http_stats hs;
	coral_http_server_stats(r->http, &hs);
	st->http_clients = hs.clients;
	st->http_clients_max = hs.max_clients;
	st->http_full = hs.full;
	st->http_closed_idle = hs.evicted;
	size_t n = 0;
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
		bool voter = raft_conf_is_voter(&r->raft.conf, id), learner = raft_conf_is_learner(&r->raft.conf, id);
		if (!voter && !learner)
			continue;
		Coral__RaftPeer *p = &peers[n];
		coral__raft_peer__init(p);
		p->id = id;
		p->role = voter ? "voter" : "learner";
		if (id == r->self) {
			p->match = raft_last_index(&r->raft);
			p->connected = true;
			p->last_error = "";
		} else {
			if (r->raft.role == RAFT_LEADER) {
				p->match = r->raft.pr[id - 1].match;
				p->next = r->raft.pr[id - 1].next;
				p->lag = raft_last_index(&r->raft) - p->match;
			}
			struct coral_net_peer_stats ns;
			coral_net_peer_stats(r->net, id, &ns);
			p->phi = phi_value(&r->peers[id].phi, now);
			p->suspected = p->phi > (double)r->rc->phi_threshold;
			p->connected = ns.out_up && ns.in_up;
			p->rtt_us = ns.rtt_avg_us;
			p->msgs_out = ns.msgs_out;
			p->msgs_in = ns.msgs_in;
			p->bytes_out = ns.bytes_out;
			p->bytes_in = ns.bytes_in;
			p->reconnects = ns.reconnects;
			p->incarnation = ns.incarnation;
			p->last_heard_ms = r->peers[id].last_heard_ns
				? (now - r->peers[id].last_heard_ns) / 1000000 : UINT64_MAX;
			p->last_error = (char *)"";
			static char errs[CORAL_MAX_NODES + 1][160];
			coral_strlcpy(errs[id], ns.last_error, sizeof(errs[id]));
			p->last_error = errs[id];
		}
		peerp[n++] = p;
	}
	st->peers = peerp;
	st->n_peers = n;
}

/* raft status's figures that are levels, not counts (the rest are counters) */
static const char *const raft_gauges[] = {"node_id", "term", "leader", "commit", "applied", "last_index",
	"snapshot_index", "log_bytes", "log_segments", "snapshot_bytes", "epoch", "incarnation", "fenced",
	"lease_left_ms", "pending", "http_clients", "http_clients_max", NULL};

static void h_raft_status(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	static Coral__RaftPeer peers[CORAL_MAX_NODES];
	static Coral__RaftPeer *peerp[CORAL_MAX_NODES];
	Coral__RaftStatusReply st;
	raftd_status_fill(r, &st, peers, peerp);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_RAFT_STATUS;
	resp.raft_status = &st;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static void h_raft_history(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	size_t cap = (size_t)r->rc->history_size;
	Coral__RaftHistoryEvent *ev = calloc(r->hist_n ? r->hist_n : 1, sizeof(*ev));
	Coral__RaftHistoryEvent **evp = calloc(r->hist_n ? r->hist_n : 1, sizeof(*evp));
	if (ev == NULL || evp == NULL) {
		free(ev);
		free(evp);
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_ENOMEM, "out of memory");
		return;
	}
	for (size_t i = 0; i < r->hist_n; i++) {
		const struct history_event *h = &r->hist[(r->hist_start + i) % cap];
		coral__raft_history_event__init(&ev[i]);
		ev[i].at_ns = h->at_ns;
		ev[i].term = h->term;
		ev[i].kind = (char *)h->kind;
		ev[i].node = h->node;
		ev[i].reason = (char *)h->reason;
		ev[i].epoch = h->epoch;
		evp[i] = &ev[i];
	}
	Coral__RaftHistoryReply hr = CORAL__RAFT_HISTORY_REPLY__INIT;
	hr.events = evp;
	hr.n_events = r->hist_n;
	hr.dropped = r->hist_dropped;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_RAFT_HISTORY;
	resp.raft_history = &hr;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
	free(ev);
	free(evp);
}

static struct pending *ctl_pending(struct raftd *r, uint8_t type, uint64_t conn,
				   const Coral__CtlRequest *req)
{
	struct pending *p = pending_new(r, type, OR_CTL, timeout_ms(r));
	if (p == NULL) {
		coral_daemon_answer_error(r->d, conn, coral_ctl_request_id(req), CORAL_EBUSY,
					  "raftd has max_pending (%lld) requests waiting: retry",
					  (long long)r->rc->max_pending);
		return NULL;
	}
	p->conn_id = conn;
	p->request_id = coral_ctl_request_id(req);
	return p;
}

static void h_transfer(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	struct pending *p = ctl_pending(r, RQ_TRANSFER, conn, req);
	if (p == NULL)
		return;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.node = req->raft_transfer->to;
	int rc = raftd_admin(r, p, CORAL__RAFT_FORWARD_KIND__FORWARD_TRANSFER, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

static void h_members(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	struct pending *p = ctl_pending(r, RQ_MEMBERS, conn, req);
	if (p == NULL)
		return;
	p->stale = req->members->stale;
	int rc = raftd_submit_read(r, p);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

static void h_add_node(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	struct pending *p = ctl_pending(r, RQ_ADD_NODE, conn, req);
	if (p == NULL)
		return;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = REG_MEMBER_ADD;
	c.node = req->add_node->id;
	c.address = req->add_node->address;
	c.reason = (char *)"added by operator";
	c.at_ns = coral_now_real_ns();
	int rc = raftd_admin(r, p, CORAL__RAFT_FORWARD_KIND__FORWARD_ADD_NODE, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

static void h_remove_node(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	struct pending *p = ctl_pending(r, RQ_REMOVE_NODE, conn, req);
	if (p == NULL)
		return;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = REG_MEMBER_REMOVE;
	c.node = req->remove_node->id;
	c.reason = (char *)"removed by operator";
	c.at_ns = coral_now_real_ns();
	int rc = raftd_admin(r, p, CORAL__RAFT_FORWARD_KIND__FORWARD_REMOVE_NODE, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

/* The name of a local process (its /proc/PID/comm), or "?". */
static void proc_name(int pid, char *out, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL || fgets(out, (int)n, f) == NULL)
		coral_strlcpy(out, "?", n);
	if (f)
		fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

/* Shared by the control socket and HTTP: a kv operation on a pending request. */
int api_kv_submit(struct raftd *r, struct pending *p, Coral__KvOp op, const char *key,
		  const uint8_t *value, size_t vlen, bool cas, uint64_t expect_index)
{
	if (!coral_strlcpy(p->key, key, sizeof(p->key))) {
		snprintf(p->error, sizeof(p->error), "key longer than %d bytes", REG_KEY_MAX - 1);
		return CORAL_EINVAL;
	}
	if (op == CORAL__KV_OP__KV_GET || op == CORAL__KV_OP__KV_LIST) {
		p->type = op == CORAL__KV_OP__KV_GET ? RQ_KV_GET : RQ_KV_LIST;
		return raftd_submit_read(r, p);
	}
	if (op != CORAL__KV_OP__KV_PUT && op != CORAL__KV_OP__KV_DEL) {
		snprintf(p->error, sizeof(p->error), "unknown kv operation %d", (int)op);
		return CORAL_EINVAL;
	}
	if (vlen > (size_t)r->rc->kv_max_value) {
		snprintf(p->error, sizeof(p->error), "value of %zu bytes is larger than kv_max_value (%lld)",
			 vlen, (long long)r->rc->kv_max_value);
		return CORAL_ETOOBIG;
	}
	if (key[0] == '\0' || key[0] == '@') {
		snprintf(p->error, sizeof(p->error), "a key is not empty and does not start with '@'");
		return CORAL_EINVAL;
	}
	bool put = op == CORAL__KV_OP__KV_PUT;
	p->type = put ? RQ_KV_PUT : RQ_KV_DEL;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = put ? REG_PUT : REG_DEL;
	c.key = (char *)key;
	c.value.data = (uint8_t *)value;
	c.value.len = vlen;
	c.cas = cas && put;
	c.expect_index = expect_index;
	return raftd_submit_write(r, p, &c);
}

static void h_kv(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	const Coral__KvRequest *k = req->kv;
	bool write = k->op == CORAL__KV_OP__KV_PUT || k->op == CORAL__KV_OP__KV_DEL;
	const struct coral_ipc_peer *peer = coral_ipc_conn_peer(coral_ipc_server_conn(d->ipc, conn));
	if (write && !peer->admin) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EPERM,
					  "kv put and del need admin rights");
		return;
	}
	/* a daemon's own keys: only that daemon writes them (the peer's process, by SO_PEERCRED's
	 * pid, not the name a request gives itself) */
	const char *owner = write && k->key ? raftd_key_owner(k->key) : NULL;
	char who[32];
	if (owner)
		proc_name((int)peer->pid, who, sizeof(who));
	if (owner && strcmp(who, owner) != 0) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EPERM,
					  "%s is kept by %s and written by it only (this request came from pid %d, %s)",
					  k->key, owner, (int)peer->pid, who);
		return;
	}
	struct pending *p = ctl_pending(r, RQ_KV_GET, conn, req);
	if (p == NULL)
		return;
	p->stale = k->stale;
	int rc = api_kv_submit(r, p, k->op, k->key, k->value.data, k->value.len, k->cas, k->expect_index);
	if (rc != 0)
		pending_answer(r, p, rc, p->error[0] ? p->error : coral_strerror(rc));
}

/* A daemon of this node that cannot resume asks that the node leave (RaftLeaveRequest):
 * only the node's own daemons and supervisor, by the peer's process, not by what it says. */
static void h_leave(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	const struct coral_ipc_peer *peer = coral_ipc_conn_peer(coral_ipc_server_conn(d->ipc, conn));
	static const char *const allowed[] = {"lmsd", "lmdd", "grdd", "smond", "replicad", "rsrcmgrd", "coral-node"};
	char who[32];
	proc_name((int)peer->pid, who, sizeof(who));
	bool ok = false;
	for (size_t i = 0; i < CORAL_ARRAY_LEN(allowed); i++)
		ok |= strcmp(who, allowed[i]) == 0;
	if (!ok) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EPERM,
					  "only this node's daemons ask it to leave the cluster (this request came from "
					  "pid %d, %s)", (int)peer->pid, who);
		return;
	}
	char reason[160];
	snprintf(reason, sizeof(reason), "%s (pid %d): %.120s", who, (int)peer->pid,
		 req->raft_leave->reason ? req->raft_leave->reason : "");
	raftd_leave(r, reason);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static void h_watch(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = d->svc;
	const Coral__WatchRequest *w = req->watch;
	int ms = w->timeout_ms ? (int)w->timeout_ms : 30000;
	if (ms > 600000)
		ms = 600000;
	struct pending *p = pending_new(r, RQ_WATCH, OR_CTL, ms);
	if (p == NULL) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EBUSY, "too many requests waiting");
		return;
	}
	p->conn_id = conn;
	p->request_id = coral_ctl_request_id(req);
	p->index = w->after_index;
	p->watch_members = w->members;
	coral_strlcpy(p->key, w->prefix, sizeof(p->key));
	p->state = PS_WATCH;
	/* asking past what is applied here (UINT64_MAX: "from now on") is answered at once with
	 * the current index, to watch after */
	if (p->index > r->raft.applied)
		pending_answer(r, p, 0, NULL);
	else
		pending_watch_notify(r);
}

const struct coral_daemon_request raftd_requests[] = {
	{CORAL__CTL_REQUEST__BODY_RAFT_STATUS, false, h_raft_status, "raft", raft_gauges},
	{CORAL__CTL_REQUEST__BODY_RAFT_HISTORY, false, h_raft_history, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_RAFT_TRANSFER, true, h_transfer, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_MEMBERS, false, h_members, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_ADD_NODE, true, h_add_node, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_REMOVE_NODE, true, h_remove_node, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_KV, false, h_kv, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_WATCH, false, h_watch, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_RAFT_LEAVE, true, h_leave, NULL, NULL},
};
const size_t raftd_nrequests = sizeof(raftd_requests) / sizeof(raftd_requests[0]);


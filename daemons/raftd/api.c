/* raftd's interfaces: the pending-request table every waiting request lives in (bounded by
 * [raft] max_pending), the control requests on the Unix socket (coralctl raft, cluster,
 * kv), and the HTTP/JSON API on evhttp (/v1/kv, /v1/members, /v1/status). Reads go through
 * ReadIndex unless stale is asked for; writes on a follower are forwarded to the leader
 * over the interconnect and answered once this node has applied them. */
#include "raftd.h"
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the pending table ---------------------------------------------------------------- */

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

static const char *raft_role_of(const struct raftd *r, uint32_t id)
{
	if (raft_conf_is_voter(&r->raft.conf, id))
		return "voter";
	if (raft_conf_is_learner(&r->raft.conf, id))
		return "learner";
	return "none";
}

static void answer_ctl(struct raftd *r, struct pending *p, int code, const char *error)
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
				o->raft_role = (char *)raft_role_of(r, id);
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

/* ---- answers over HTTP ---------------------------------------------------------------- */

static int http_status(int code)
{
	switch (code) {
	case 0: return 200;
	case CORAL_ENOENT: return 404;
	case CORAL_EINVAL: return 400;
	case CORAL_EDECODE: return 400;
	case CORAL_ETOOBIG: return 413;
	case CORAL_EEXIST: return 409;
	case CORAL_EPERM: return 403;
	case CORAL_ENOTLEADER: return 503;
	case CORAL_EBUSY: return 503;
	case CORAL_EFULL: return 507;
	case CORAL_ETIMEDOUT: return 504;
	case CORAL_ERETRY: return 503;
	default: return 500;
	}
}

static json_t *json_value(const uint8_t *v, size_t len, const char **field)
{
	json_t *s = json_stringn((const char *)v, len);
	if (s) {
		*field = "value";
		return s;
	}
	char *b = malloc(4 * ((len + 2) / 3) + 1);
	if (b == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)b, v, (int)len);
	s = json_string(b);
	free(b);
	*field = "value_base64";
	return s;
}

static json_t *json_kv(const struct reg_kv *kv)
{
	const char *field;
	json_t *o = json_object();
	json_object_set_new(o, "key", json_string(kv->key));
	json_t *v = json_value(kv->value, kv->vlen, &field);
	if (v)
		json_object_set_new(o, field, v);
	json_object_set_new(o, "create_index", json_integer((json_int_t)kv->create_index));
	json_object_set_new(o, "mod_index", json_integer((json_int_t)kv->mod_index));
	return o;
}

static json_t *json_members(struct raftd *r)
{
	json_t *o = json_object(), *arr = json_array();
	json_object_set_new(o, "epoch", json_integer((json_int_t)r->reg.epoch));
	json_object_set_new(o, "leader", json_integer(r->raft.leader));
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
		const struct reg_member *m = &r->reg.members[id];
		bool in_raft = raft_conf_is_voter(&r->raft.conf, id) || raft_conf_is_learner(&r->raft.conf, id);
		if (m->state == CORAL_MEMBER_NONE && !in_raft)
			continue;
		json_t *e = json_object();
		json_object_set_new(e, "id", json_integer(id));
		json_object_set_new(e, "address", json_string(m->address));
		json_object_set_new(e, "incarnation", json_integer((json_int_t)m->incarnation));
		json_object_set_new(e, "state", json_string(coral_member_state_name(m->state)));
		json_object_set_new(e, "raft", json_string(raft_role_of(r, id)));
		json_object_set_new(e, "reason", json_string(m->reason));
		json_array_append_new(arr, e);
	}
	json_object_set_new(o, "members", arr);
	return o;
}

static json_t *json_status(struct raftd *r)
{
	json_t *o = json_object();
	json_object_set_new(o, "node", json_integer(r->self));
	json_object_set_new(o, "role", json_string(raft_role_name(r->raft.role)));
	json_object_set_new(o, "term", json_integer((json_int_t)r->raft.term));
	json_object_set_new(o, "leader", json_integer(r->raft.leader));
	json_object_set_new(o, "commit", json_integer((json_int_t)r->raft.committed));
	json_object_set_new(o, "applied", json_integer((json_int_t)r->raft.applied));
	json_object_set_new(o, "last_index", json_integer((json_int_t)raft_last_index(&r->raft)));
	json_object_set_new(o, "epoch", json_integer((json_int_t)r->reg.epoch));
	json_object_set_new(o, "incarnation", json_integer((json_int_t)r->incarnation));
	json_object_set_new(o, "fenced", json_boolean(r->fenced));
	if (r->fenced)
		json_object_set_new(o, "fence_reason", json_string(r->fence_reason));
	return o;
}

static void http_send_json(struct evhttp_request *req, int status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	struct evbuffer *out = evbuffer_new();
	if (text && out) {
		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", out);
	if (out)
		evbuffer_free(out);
	free(text);
}

static void http_error(struct raftd *r, struct evhttp_request *req, int code, const char *error)
{
	json_t *o = json_object();
	json_object_set_new(o, "error", json_string(error ? error : coral_strerror(code)));
	json_object_set_new(o, "code", json_string(coral_strerror(code)));
	if (r->raft.leader)
		json_object_set_new(o, "leader", json_integer(r->raft.leader));
	http_send_json(req, http_status(code), o);
	json_decref(o);
}

static void answer_http(struct raftd *r, struct pending *p, int code, const char *error)
{
	struct evhttp_request *req = p->http;
	if (req == NULL)
		return;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
	if (code != 0) {
		http_error(r, req, code, error);
		return;
	}
	json_t *o = NULL;
	switch (p->type) {
	case RQ_KV_GET: {
		const struct reg_kv *kv = registry_get(&r->reg, p->key);
		if (kv == NULL) {
			char buf[REG_KEY_MAX + 16];
			snprintf(buf, sizeof(buf), "no key '%s'", p->key);
			http_error(r, req, CORAL_ENOENT, buf);
			return;
		}
		o = json_kv(kv);
		break;
	}
	case RQ_KV_LIST: {
		size_t first, n;
		registry_range(&r->reg, p->key, &first, &n);
		o = json_object();
		json_t *arr = json_array();
		for (size_t i = 0; i < n && i < 10000; i++)
			json_array_append_new(arr, json_kv(&r->reg.kv[first + i]));
		json_object_set_new(o, "kvs", arr);
		json_object_set_new(o, "index", json_integer((json_int_t)r->raft.applied));
		break;
	}
	case RQ_MEMBERS:
		o = json_members(r);
		break;
	default:
		o = json_object();
		json_object_set_new(o, "index", json_integer((json_int_t)p->index));
		break;
	}
	http_send_json(req, 200, o);
	json_decref(o);
}

void pending_answer(struct raftd *r, struct pending *p, int code, const char *error)
{
	switch (p->origin) {
	case OR_CTL: answer_ctl(r, p, code, error); break;
	case OR_HTTP: answer_http(r, p, code, error); break;
	case OR_FWD: raftd_answer_forward(r, p, code, error); break;
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

/* ---- control requests ------------------------------------------------------------------- */

static struct raftd *svc(struct coral_daemon *d) { return d->svc; }

static uint64_t req_id(const Coral__CtlRequest *req) { return req->hdr ? req->hdr->request_id : 0; }

static int timeout_ms(struct raftd *r) { return (int)r->conf->cluster.ipc_timeout_ms; }

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

static void h_raft_status(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = svc(d);
	static Coral__RaftPeer peers[CORAL_MAX_NODES];
	static Coral__RaftPeer *peerp[CORAL_MAX_NODES];
	Coral__RaftStatusReply st;
	raftd_status_fill(r, &st, peers, peerp);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_RAFT_STATUS;
	resp.raft_status = &st;
	coral_daemon_answer(d, conn, req_id(req), &resp);
}

static void h_raft_history(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = svc(d);
	size_t cap = (size_t)r->rc->history_size;
	Coral__RaftHistoryEvent *ev = calloc(r->hist_n ? r->hist_n : 1, sizeof(*ev));
	Coral__RaftHistoryEvent **evp = calloc(r->hist_n ? r->hist_n : 1, sizeof(*evp));
	if (ev == NULL || evp == NULL) {
		free(ev);
		free(evp);
		coral_daemon_answer_error(d, conn, req_id(req), CORAL_ENOMEM, "out of memory");
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
	coral_daemon_answer(d, conn, req_id(req), &resp);
	free(ev);
	free(evp);
}

static struct pending *ctl_pending(struct raftd *r, uint8_t type, uint64_t conn,
				   const Coral__CtlRequest *req)
{
	struct pending *p = pending_new(r, type, OR_CTL, timeout_ms(r));
	if (p == NULL) {
		coral_daemon_answer_error(r->d, conn, req_id(req), CORAL_EBUSY,
					  "raftd has max_pending (%lld) requests waiting: retry",
					  (long long)r->rc->max_pending);
		return NULL;
	}
	p->conn_id = conn;
	p->request_id = req_id(req);
	return p;
}

static void h_transfer(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = svc(d);
	struct pending *p = ctl_pending(r, RQ_ADD_NODE, conn, req);
	if (p == NULL)
		return;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.node = req->raft_transfer->to;
	int rc = raftd_admin(r, p, 3, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

static void h_members(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = svc(d);
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
	struct raftd *r = svc(d);
	struct pending *p = ctl_pending(r, RQ_ADD_NODE, conn, req);
	if (p == NULL)
		return;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = REG_MEMBER_ADD;
	c.node = req->add_node->id;
	c.address = req->add_node->address;
	c.reason = (char *)"added by operator";
	c.at_ns = coral_now_real_ns();
	int rc = raftd_admin(r, p, 4, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

static void h_remove_node(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = svc(d);
	struct pending *p = ctl_pending(r, RQ_REMOVE_NODE, conn, req);
	if (p == NULL)
		return;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = REG_MEMBER_REMOVE;
	c.node = req->remove_node->id;
	c.reason = (char *)"removed by operator";
	c.at_ns = coral_now_real_ns();
	int rc = raftd_admin(r, p, 5, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

/* Shared by the control socket and HTTP: a kv operation on a pending request. */
static int kv_submit(struct raftd *r, struct pending *p, uint32_t op, const char *key,
		     const uint8_t *value, size_t vlen, bool cas, uint64_t expect_index)
{
	if (!coral_strlcpy(p->key, key, sizeof(p->key))) {
		snprintf(p->error, sizeof(p->error), "key longer than %d bytes", REG_KEY_MAX - 1);
		return CORAL_EINVAL;
	}
	if (op == 1 || op == 4) {
		p->type = op == 1 ? RQ_KV_GET : RQ_KV_LIST;
		return raftd_submit_read(r, p);
	}
	if (op != 2 && op != 3) {
		snprintf(p->error, sizeof(p->error), "unknown kv operation %u", op);
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
	p->type = op == 2 ? RQ_KV_PUT : RQ_KV_DEL;
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = op == 2 ? REG_PUT : REG_DEL;
	c.key = (char *)key;
	c.value.data = (uint8_t *)value;
	c.value.len = vlen;
	c.cas = cas && op == 2;
	c.expect_index = expect_index;
	return raftd_submit_write(r, p, &c);
}

static void h_kv(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = svc(d);
	const Coral__KvRequest *k = req->kv;
	bool write = k->op == 2 || k->op == 3;
	if (write && !coral_ipc_conn_peer(coral_ipc_server_conn(d->ipc, conn))->admin) {
		coral_daemon_answer_error(d, conn, req_id(req), CORAL_EPERM,
					  "kv put and del need admin rights");
		return;
	}
	struct pending *p = ctl_pending(r, RQ_KV_GET, conn, req);
	if (p == NULL)
		return;
	p->stale = k->stale;
	int rc = kv_submit(r, p, k->op, k->key, k->value.data, k->value.len, k->cas, k->expect_index);
	if (rc != 0)
		pending_answer(r, p, rc, p->error[0] ? p->error : coral_strerror(rc));
}

static void h_watch(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct raftd *r = svc(d);
	const Coral__WatchRequest *w = req->watch;
	int ms = w->timeout_ms ? (int)w->timeout_ms : 30000;
	if (ms > 600000)
		ms = 600000;
	struct pending *p = pending_new(r, RQ_WATCH, OR_CTL, ms);
	if (p == NULL) {
		coral_daemon_answer_error(d, conn, req_id(req), CORAL_EBUSY, "too many requests waiting");
		return;
	}
	p->conn_id = conn;
	p->request_id = req_id(req);
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
	{CORAL__CTL_REQUEST__BODY_RAFT_STATUS, false, h_raft_status},
	{CORAL__CTL_REQUEST__BODY_RAFT_HISTORY, false, h_raft_history},
	{CORAL__CTL_REQUEST__BODY_RAFT_TRANSFER, true, h_transfer},
	{CORAL__CTL_REQUEST__BODY_MEMBERS, false, h_members},
	{CORAL__CTL_REQUEST__BODY_ADD_NODE, true, h_add_node},
	{CORAL__CTL_REQUEST__BODY_REMOVE_NODE, true, h_remove_node},
	{CORAL__CTL_REQUEST__BODY_KV, false, h_kv},
	{CORAL__CTL_REQUEST__BODY_WATCH, false, h_watch},
};
const size_t raftd_nrequests = sizeof(raftd_requests) / sizeof(raftd_requests[0]);

/* ---- HTTP ------------------------------------------------------------------------------- */

struct http_ctx {
	struct raftd *r;
};
static struct http_ctx g_http;

static void http_client_gone(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	struct pending *p = pending_find(g_http.r, (uint64_t)(uintptr_t)arg);
	if (p)
		p->http = NULL;  /* libevent frees the request; the answer is dropped */
}

static void http_cb(struct evhttp_request *req, void *arg)
{
	struct raftd *r = arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evhttp_uri *u = evhttp_uri_parse(uri);
	if (u == NULL) {
		http_error(r, req, CORAL_EINVAL, "bad URI");
		return;
	}
	const char *path = evhttp_uri_get_path(u);
	const char *query = evhttp_uri_get_query(u);
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	if (query)
		evhttp_parse_query_str(query, &q);
	bool stale = evhttp_find_header(&q, "stale") && strcmp(evhttp_find_header(&q, "stale"), "0") != 0;
	const char *prefix = evhttp_find_header(&q, "prefix");
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct pending *p = NULL;
	int rc = 0;
	if (path && strcmp(path, "/v1/status") == 0 && cmd == EVHTTP_REQ_GET) {
		json_t *o = json_status(r);
		http_send_json(req, 200, o);
		json_decref(o);
		goto out;
	}
	bool kv = path && strncmp(path, "/v1/kv", 6) == 0 && (path[6] == '\0' || path[6] == '/');
	bool members = path && strcmp(path, "/v1/members") == 0;
	if (!kv && !members) {
		http_error(r, req, CORAL_ENOENT, "unknown path: use /v1/kv/KEY, /v1/members, /v1/status");
		goto out;
	}
	p = pending_new(r, RQ_MEMBERS, OR_HTTP, timeout_ms(r));
	if (p == NULL) {
		http_error(r, req, CORAL_EBUSY, "too many requests waiting (max_pending): retry");
		goto out;
	}
	p->http = req;
	p->stale = stale;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), http_client_gone,
				      (void *)(uintptr_t)p->id);
	if (members) {
		if (cmd != EVHTTP_REQ_GET) {
			rc = CORAL_EINVAL;
			snprintf(p->error, sizeof(p->error), "/v1/members takes GET");
		} else {
			rc = raftd_submit_read(r, p);
		}
	} else {
		char *key = path[6] ? evhttp_uridecode(path + 7, 0, NULL) : strdup("");
		if (key == NULL) {
			rc = CORAL_ENOMEM;
		} else if (cmd == EVHTTP_REQ_GET && (key[0] == '\0' || prefix)) {
			rc = kv_submit(r, p, 4, prefix ? prefix : key, NULL, 0, false, 0);
		} else if (cmd == EVHTTP_REQ_GET) {
			rc = kv_submit(r, p, 1, key, NULL, 0, false, 0);
		} else if (cmd == EVHTTP_REQ_PUT || cmd == EVHTTP_REQ_POST) {
			struct evbuffer *in = evhttp_request_get_input_buffer(req);
			size_t len = evbuffer_get_length(in);
			if (len > (size_t)r->rc->kv_max_value) {
				rc = CORAL_ETOOBIG;
				snprintf(p->error, sizeof(p->error), "value of %zu bytes is larger than kv_max_value", len);
			} else {
				const uint8_t *v = len ? evbuffer_pullup(in, (ssize_t)len) : (const uint8_t *)"";
				rc = kv_submit(r, p, 2, key, v, len, false, 0);
			}
		} else if (cmd == EVHTTP_REQ_DELETE) {
			rc = kv_submit(r, p, 3, key, NULL, 0, false, 0);
		} else {
			rc = CORAL_EINVAL;
			snprintf(p->error, sizeof(p->error), "method not supported on /v1/kv");
		}
		free(key);
	}
	if (rc != 0)
		pending_answer(r, p, rc, p->error[0] ? p->error : coral_strerror(rc));
out:
	evhttp_clear_headers(&q);
	evhttp_uri_free(u);
}

int api_http_start(struct raftd *r, char *err, size_t errsz)
{
	g_http.r = r;
	r->http = evhttp_new(r->d->base);
	if (r->http == NULL) {
		snprintf(err, errsz, "cannot create the HTTP server");
		return CORAL_ENOMEM;
	}
	evhttp_set_allowed_methods(r->http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST |
				   EVHTTP_REQ_DELETE);
	evhttp_set_max_body_size(r->http, (ev_ssize_t)r->rc->kv_max_value + 1);
	evhttp_set_timeout(r->http, 60);
	evhttp_set_gencb(r->http, http_cb, r);
	int port = (int)(r->d->node->base_port + CORAL_PORT_RAFTD_HTTP);
	if (evhttp_bind_socket(r->http, r->d->node->host, (ev_uint16_t)port) != 0) {
		snprintf(err, errsz, "cannot listen on %s:%d", r->d->node->host, port);
		evhttp_free(r->http);
		r->http = NULL;
		return CORAL_ESYS;
	}
	return 0;
}

void api_http_stop(struct raftd *r)
{
	if (r->http)
		evhttp_free(r->http);
	r->http = NULL;
}

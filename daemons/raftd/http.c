/* raftd's HTTP/JSON API on base_port+1 (/v1/kv/KEY, /v1/members, /v1/status): each request
 * becomes a pending request of origin OR_HTTP, answered as JSON once consensus is done.
 *
 * Who may do what: a write or delete needs an identity, the token of [raft] http_token_file
 * (Authorization: Bearer TOKEN, compared in constant time) or, with [tls] on (HTTPS on the
 * same port), the client certificate the cluster's CA signed, which the handshake already
 * required. Reads need none unless http_open_reads is off. Keys a daemon keeps (grd/ and the
 * prefixes of the daemons to come) are never written over HTTP, only by their daemon through
 * its Unix socket. Headers, body and idle time are bounded. */
#include "raftd.h"
#include "http_route.h"

#include "errors.h"
#include "httpauth.h"
#include "httpserve.h"
#include "log.h"
#include "util.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <event2/bufferevent_ssl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		json_object_set_new(e, "raft", json_string(raftd_role_of(r, id)));
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

void http_answer(struct raftd *r, struct pending *p, int code, const char *error)
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

/* Answers a request refused for want of an identity (401 none given, 403 a wrong one). */
static void refuse(struct raftd *r, struct evhttp_request *req, int status, const char *why)
{
	json_t *o = json_object();
	json_object_set_new(o, "error", json_string(why));
	json_object_set_new(o, "code", json_string(coral_strerror(CORAL_EPERM)));
	if (status == 401)
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
	http_send_json(req, status, o);
	json_decref(o);
	r->http_refused++;
}

/* What the request is (http_route.c), then done: answered at once, or submitted and
 * answered by http_answer once consensus is done. */
static void http_cb(struct evhttp_request *req, void *arg)
{
	struct raftd *r = arg;
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	struct http_route_conf hc = {r->http_token, coral_http_server_tls(r->http), r->rc->http_open_reads,
				     (size_t)r->rc->kv_max_value};
	struct http_route_in in = {http_route_method((int)evhttp_request_get_command(req)), evhttp_request_get_uri(req),
				   evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"),
				   evbuffer_get_length(body)};
	struct http_route rt;
	http_route(&hc, &in, &rt);
	struct pending *p = NULL;
	if (rt.kind == HR_REFUSED) {
		refuse(r, req, rt.code, rt.error);
	} else if (rt.kind == HR_ERROR) {
		http_error(r, req, rt.code, rt.error);
	} else if (rt.kind == HR_STATUS) {
		json_t *o = json_status(r);
		http_send_json(req, 200, o);
		json_decref(o);
	} else if ((p = pending_new(r, RQ_MEMBERS, OR_HTTP, (int)r->conf->cluster.ipc_timeout_ms)) == NULL) {
		http_error(r, req, CORAL_EBUSY, "too many requests waiting (max_pending): retry");
	} else {
		p->http = req;
		p->stale = rt.stale;
		evhttp_connection_set_closecb(evhttp_request_get_connection(req), http_client_gone,
					      (void *)(uintptr_t)p->id);
		int rc;
		switch (rt.kind) {
		case HR_MEMBERS: rc = raftd_submit_read(r, p); break;
		case HR_KV_LIST: rc = api_kv_submit(r, p, CORAL__KV_OP__KV_LIST, rt.key, NULL, 0, false, 0); break;
		case HR_KV_GET: rc = api_kv_submit(r, p, CORAL__KV_OP__KV_GET, rt.key, NULL, 0, false, 0); break;
		case HR_KV_DEL: rc = api_kv_submit(r, p, CORAL__KV_OP__KV_DEL, rt.key, NULL, 0, false, 0); break;
		default: {
			size_t len = in.body_len;
			const uint8_t *v = len ? evbuffer_pullup(body, (ssize_t)len) : (const uint8_t *)"";
			rc = api_kv_submit(r, p, CORAL__KV_OP__KV_PUT, rt.key, v, len, false, 0);
		}
		}
		if (rc != 0)
			pending_answer(r, p, rc, p->error[0] ? p->error : coral_strerror(rc));
	}
	http_route_free(&rt);
}

/* The token of [raft] http_token_file (httpauth.h). */
static int load_token(struct raftd *r, char *err, size_t errsz)
{
	return coral_token_load(r->rc->http_token_file, "[raft] http_token_file", &r->http_token, err, errsz);
}

int http_start(struct raftd *r, char *err, size_t errsz)
{
	g_http.r = r;
	int rc = load_token(r, err, errsz);
	if (rc != 0)
		return rc;
	struct coral_http_opts o = {
		.host = r->rc->http_bind[0] ? r->rc->http_bind : r->d->node->host,
		.port = (int)(r->d->node->base_port + CORAL_PORT_RAFTD_HTTP),
		.methods = EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE,
		.max_body = (long)r->rc->kv_max_value + 1,
		.max_header = (long)r->rc->http_max_header,
		.idle_ms = (int)r->rc->http_idle_ms,
		.max_clients = (int)r->rc->http_max_clients,
		.what = "raftd HTTP",
		.cb = http_cb,
		.arg = r,
	};
	r->http = coral_http_server_start(r->d->base, r->conf, r->d->node, &o, err, errsz);
	if (r->http == NULL) {
		http_stop(r);
		return CORAL_ESYS;
	}
	return 0;
}

void http_stop(struct raftd *r)
{
	coral_http_server_stop(r->http);
	r->http = NULL;
	coral_token_free(r->http_token);
	r->http_token = NULL;
}

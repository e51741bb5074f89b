/* raftd's HTTP requests classified (see http_route.h). The identity check compares the token
 * in constant time; keys a daemon keeps are refused whatever the identity. */
#include "http_route.h"
#include "httpauth.h"

#include "errors.h"
#include "util.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/* Keys a daemon keeps, by prefix. */
static const struct {
	const char *prefix, *owner;
} owned_keys[] = {
	{"grd/", "grdd"}, {"lmsd/", "lmsd"}, {"lmdd/", "lmdd"}, {"smond/", "smond"}, {"replicad/", "replicad"},
	{"rsrcmgrd/", "rsrcmgrd"},
	/* claims and ends of lost nodes' recoveries: the raftd history names them from these */
	{"recovery/", "smond"},
};

const char *raftd_key_owner(const char *key)
{
	for (size_t i = 0; i < CORAL_ARRAY_LEN(owned_keys); i++)
		if (strncmp(key, owned_keys[i].prefix, strlen(owned_keys[i].prefix)) == 0)
			return owned_keys[i].owner;
	return NULL;
}

enum { ID_NONE, ID_WRONG, ID_OK };

static int identity(const struct http_route_conf *c, const char *h)
{
	if (c->cert_verified)
		return ID_OK;
	switch (coral_bearer_check(c->token, h)) {
	case CORAL_BEARER_NONE: return ID_NONE;
	case CORAL_BEARER_OK: return ID_OK;
	default: return ID_WRONG;
	}
}

static void set(struct http_route *r, int kind, int code, const char *error)
{
	r->kind = kind;
	r->code = code;
	coral_strlcpy(r->error, error ? error : coral_strerror(code), sizeof(r->error));
}

static void route_kv(const struct http_route_conf *c, const struct http_route_in *in, const char *path,
		     const char *prefix, struct http_route *r)
{
	r->key = path[6] ? evhttp_uridecode(path + 7, 0, NULL) : strdup("");
	if (r->key == NULL)
		return set(r, HR_ERROR, CORAL_ENOMEM, NULL);
	const char *owner = raftd_key_owner(r->key);
	bool read = in->method == HR_GET;
	if (owner && !read) {
		char why[sizeof(r->error)];
		snprintf(why, sizeof(why), "%.64s is kept by %s: it writes it itself, through its Unix socket; never over HTTP",
			 r->key, owner);
		return set(r, HR_ERROR, CORAL_EPERM, why);
	}
	if (read && (r->key[0] == '\0' || prefix)) {
		if (prefix) {
			char *p = strdup(prefix);
			if (p == NULL)
				return set(r, HR_ERROR, CORAL_ENOMEM, NULL);
			free(r->key);
			r->key = p;
		}
		return set(r, HR_KV_LIST, 0, "");
	}
	if (read)
		return set(r, HR_KV_GET, 0, "");
	if (in->method == HR_PUT || in->method == HR_POST) {
		if (in->body_len > c->max_value) {
			char why[sizeof(r->error)];
			snprintf(why, sizeof(why), "value of %zu bytes is larger than kv_max_value", in->body_len);
			return set(r, HR_ERROR, CORAL_ETOOBIG, why);
		}
		return set(r, HR_KV_PUT, 0, "");
	}
	if (in->method == HR_DELETE)
		return set(r, HR_KV_DEL, 0, "");
	set(r, HR_ERROR, CORAL_EINVAL, "method not supported on /v1/kv");
}

static void route_path(const struct http_route_conf *c, const struct http_route_in *in, const char *path,
		       const char *prefix, struct http_route *r)
{
	bool write = in->method != HR_GET && in->method != HR_HEAD;
	int id = !write && c->open_reads ? ID_OK : identity(c, in->authorization);
	if (id == ID_NONE)
		return set(r, HR_REFUSED, 401,
			   c->token ? "this needs an identity: Authorization: Bearer TOKEN ([raft] http_token_file)"
				    : "HTTP takes no writes here: no [raft] http_token_file (and [tls] is off); use coralctl kv");
	if (id == ID_WRONG)
		return set(r, HR_REFUSED, 403, "wrong token");
	if (path && strcmp(path, "/v1/status") == 0 && in->method == HR_GET)
		return set(r, HR_STATUS, 0, "");
	if (path && strcmp(path, "/v1/members") == 0)
		return in->method == HR_GET ? set(r, HR_MEMBERS, 0, "")
					    : set(r, HR_ERROR, CORAL_EINVAL, "/v1/members takes GET");
	if (path && strncmp(path, "/v1/kv", 6) == 0 && (path[6] == '\0' || path[6] == '/'))
		return route_kv(c, in, path, prefix, r);
	set(r, HR_ERROR, CORAL_ENOENT, "unknown path: use /v1/kv/KEY, /v1/members, /v1/status");
}

void http_route(const struct http_route_conf *c, const struct http_route_in *in, struct http_route *out)
{
	memset(out, 0, sizeof(*out));
	struct evhttp_uri *u = in->uri ? evhttp_uri_parse(in->uri) : NULL;
	if (u == NULL)
		return set(out, HR_ERROR, CORAL_EINVAL, "bad URI");
	const char *query = evhttp_uri_get_query(u);
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	if (query)
		evhttp_parse_query_str(query, &q);
	const char *stale = evhttp_find_header(&q, "stale");
	out->stale = stale && strcmp(stale, "0") != 0;
	route_path(c, in, evhttp_uri_get_path(u), evhttp_find_header(&q, "prefix"), out);
	evhttp_clear_headers(&q);
	evhttp_uri_free(u);
}

int http_route_method(int evhttp_cmd)
{
	switch (evhttp_cmd) {
	case EVHTTP_REQ_GET: return HR_GET;
	case EVHTTP_REQ_HEAD: return HR_HEAD;
	case EVHTTP_REQ_PUT: return HR_PUT;
	case EVHTTP_REQ_POST: return HR_POST;
	case EVHTTP_REQ_DELETE: return HR_DELETE;
	default: return HR_OTHER;
	}
}

void http_route_free(struct http_route *r)
{
	free(r->key);
	r->key = NULL;
}

/* What raftd's HTTP front makes of a request before anything is submitted: who is asking
 * (a verified client certificate, the token, a wrong one, nothing), what is asked (status,
 * members, a key's get, list, put or delete), and what is refused and why (no identity, a key
 * a daemon keeps, a value over kv_max_value, an unknown path or method). No I/O and no raftd
 * state: http.c acts on the answer, and tests/fuzz/fuzz_http.c drives it directly. */
#ifndef CORAL_RAFTD_HTTP_ROUTE_H
#define CORAL_RAFTD_HTTP_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

enum {
	HR_ERROR,       /* code: a CORAL_E* code, error: why */
	HR_REFUSED,     /* no identity (code 401) or a wrong one (403) */
	HR_STATUS,
	HR_MEMBERS,
	HR_KV_GET,
	HR_KV_LIST,     /* key: the prefix */
	HR_KV_PUT,
	HR_KV_DEL,
};

/* What the HTTP front was configured with. */
struct http_route_conf {
	const char *token;      /* [raft] http_token_file's token, or NULL */
	bool cert_verified;     /* HTTPS: the handshake required a certificate of the cluster's CA */
	bool open_reads;        /* [raft] http_open_reads */
	size_t max_value;       /* [raft] kv_max_value */
};

/* The request: its method (HR_GET...), URI, Authorization header (or NULL), body size. */
enum { HR_GET, HR_HEAD, HR_PUT, HR_POST, HR_DELETE, HR_OTHER };
/* HR_GET... of libevent's enum evhttp_cmd_type. */
int http_route_method(int evhttp_cmd);
struct http_route_in {
	int method;
	const char *uri;
	const char *authorization;
	size_t body_len;
};

struct http_route {
	int kind;
	int code;
	bool stale;             /* ?stale=1: a follower may answer a read */
	char *key;              /* HR_KV_*: decoded (malloc'd) */
	char error[256];
};

void http_route(const struct http_route_conf *c, const struct http_route_in *in, struct http_route *out);
void http_route_free(struct http_route *r);

/* The daemon that keeps a key (grd/ is grdd's, and each daemon to come has its NAME/), or
 * NULL: such a key is written only by that daemon, through its Unix socket. */
const char *raftd_key_owner(const char *key);

#endif

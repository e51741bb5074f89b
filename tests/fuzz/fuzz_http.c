/* The HTTP front of raftd's API: libevent's request parser under raftd's limits (header and
 * body size, methods) fed the bytes as a client connection, then raftd's own router
 * (daemons/raftd/http_route.c: identity, path, key, owner, limits) on what it parsed, with
 * its promises checked on every request: no write without the token, no write of a key a
 * daemon keeps, no value over kv_max_value. */
#include "fuzz.h"
#include "http_route.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#define TOKEN "fuzz-token-0123456789abcdef"
#define MAX_VALUE 4096

static void front(struct evhttp_request *req, void *arg)
{
	(void)arg;
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	struct http_route_in in = {http_route_method((int)evhttp_request_get_command(req)), evhttp_request_get_uri(req), auth,
				   evbuffer_get_length(evhttp_request_get_input_buffer(req))};
	/* open reads on, then off: the same request both ways */
	for (int open = 0; open < 2; open++) {
		struct http_route_conf c = {TOKEN, false, open == 1, MAX_VALUE};
		struct http_route r;
		http_route(&c, &in, &r);
		bool write = r.kind == HR_KV_PUT || r.kind == HR_KV_DEL;
		bool any = write || r.kind == HR_KV_GET || r.kind == HR_KV_LIST || r.kind == HR_MEMBERS ||
			   r.kind == HR_STATUS;
		bool token = auth != NULL && strcmp(auth, "Bearer " TOKEN) == 0;
		if (write && !token)
			abort();        /* a write without the token */
		if (any && !open && !token)
			abort();        /* a read without it, reads being closed */
		if (write && raftd_key_owner(r.key) != NULL)
			abort();        /* a daemon's key written over HTTP */
		if (r.kind == HR_KV_PUT && in.body_len > MAX_VALUE)
			abort();
		if ((r.kind == HR_ERROR || r.kind == HR_REFUSED) && r.error[0] == '\0')
			abort();        /* refused without a word */
		http_route_free(&r);
	}
	evhttp_send_reply(req, 200, "OK", NULL);
}

/* One server for the process, listening on a Unix socket of the target's directory, under
 * raftd's limits; each input is one client connection. */
static struct event_base *base;
static struct sockaddr_un where = {.sun_family = AF_UNIX};

static void server(void)
{
	base = event_base_new();
	struct evhttp *http = evhttp_new(base);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
	evhttp_set_max_headers_size(http, 8192);
	evhttp_set_max_body_size(http, 65537);
	evhttp_set_gencb(http, front, NULL);
	snprintf(where.sun_path, sizeof(where.sun_path), "%s/http.sock", fuzz_tmpdir());
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&where, sizeof(where)) != 0 || listen(lfd, 16) != 0 ||
	    evhttp_accept_socket(http, lfd) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (base == NULL)
		server();
	if (len > 60000)
		len = 60000;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&where, sizeof(where)) != 0)
		abort();
	size_t off = 0;
	for (int i = 0; i < 64; i++) {
		if (off < len) {
			ssize_t n = send(fd, data + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
		} else if (off == len) {
			shutdown(fd, SHUT_WR);
			off++;
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		char sink[4096];
		while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
	}
	close(fd);
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}

/* The HTTP front of raftd's API: libevent's request parser under raftd's limits (header and
 * body size, methods) fed the bytes as a client connection, and what raftd does with a
 * request before it reaches consensus: the URI and its query parsed, the key decoded, its
 * owner looked up, the Authorization header compared. */
#include "fuzz.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>

static void front(struct evhttp_request *req, void *arg)
{
	(void)arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evhttp_uri *u = uri ? evhttp_uri_parse(uri) : NULL;
	if (u) {
		const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
		struct evkeyvalq q;
		TAILQ_INIT(&q);
		if (query)
			evhttp_parse_query_str(query, &q);
		(void)evhttp_find_header(&q, "prefix");
		if (path && strncmp(path, "/v1/kv/", 7) == 0) {
			char *key = evhttp_uridecode(path + 7, 0, NULL);
			if (key && strncmp(key, "grd/", 4) == 0)
				key[0] = 'G';
			free(key);
		}
		evhttp_clear_headers(&q);
		evhttp_uri_free(u);
	}
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	if (auth && strncmp(auth, "Bearer ", 7) == 0)
		(void)strlen(auth + 7);
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	(void)evbuffer_pullup(in, -1);
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

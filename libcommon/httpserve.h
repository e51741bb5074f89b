/* The HTTP ports' one server shape (raftd's API on base_port+1, coral-node's metrics on
 * base_port+6): libevent's evhttp with bounded headers, body and idle time, HTTPS with the
 * cluster's client certificates when [tls] is on, and a bound on the connections held at
 * once. At the bound the connection silent longest is closed if it has been silent 3 s;
 * if none has, the port stops accepting (new clients wait in the kernel's backlog) until one
 * closes or falls silent: an idle crowd on an open port cannot take the daemon's descriptors,
 * which its control socket, its peers and its files need. libevent 2.1 has no connection
 * limit of its own and does not say when a connection is freed: the count is taken from the
 * kernel (httpserve.c). */
#ifndef CORAL_HTTPSERVE_H
#define CORAL_HTTPSERVE_H

#include "conf.h"

#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coral_http_opts {
	const char *host;     /* address to listen on */
	int port;
	int methods;          /* EVHTTP_REQ_* allowed */
	long max_body;        /* bytes of a request body; 0: none */
	long max_header;      /* bytes of a request's headers */
	int idle_ms;          /* an idle connection is closed after this */
	int max_clients;      /* connections held at once (>= 1) */
	const char *what;     /* names the port in log lines: "raftd HTTP", "metrics" */
	void (*cb)(struct evhttp_request *req, void *arg);
	void *arg;
};

struct coral_http_stats {
	uint32_t clients;     /* connections open now */
	uint32_t max_clients;
	uint64_t accepted;    /* connections accepted since start */
	uint64_t full;        /* times the bound was reached and accepting paused */
	uint64_t evicted;     /* connections closed at the bound for being silent (3 s or more) */
};

struct coral_http_server;

/* Listens as o says; HTTPS when conf's [tls] is on. NULL with why in err. */
struct coral_http_server *coral_http_server_start(struct event_base *base, const struct coral_conf *conf,
						  const struct coral_node_conf *node, const struct coral_http_opts *o,
						  char *err, size_t errsz);
void coral_http_server_stop(struct coral_http_server *s);
bool coral_http_server_tls(const struct coral_http_server *s);
/* clients counted afresh (a look at this process's sockets) */
void coral_http_server_stats(struct coral_http_server *s, struct coral_http_stats *out);

#endif

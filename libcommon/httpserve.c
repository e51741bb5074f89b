/* The HTTP ports' server (httpserve.h). */
#include "httpserve.h"

#include "errors.h"
#include "log.h"
#include "net.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

struct coral_http_server {
	struct evhttp *http;
	struct evconnlistener *lev;
	struct event *recheck;   /* while paused: counts again until below the bound */
	SSL_CTX *ssl;
	char what[32];
	int port;
	uint32_t clients, max_clients;
	uint64_t accepted, full, evicted;
	bool paused;
};

/* At the bound, a connection that has sent nothing for this long is closed to make room. */
#define EVICT_IDLE_MS 3000

/* What count_clients saw: how many, and the one that has been silent longest. */
struct clients_seen {
	uint32_t n;
	int idlest_fd;
	uint32_t idlest_ms;
};

/* The connections evhttp holds, as the kernel has them: this process's TCP sockets whose
 * local port is the server's, the listener left out. libevent 2.1 does not say when it
 * frees a connection (a pass-through filter's free callback would, but a filter holds back
 * a reply written later, which raftd's answers after consensus are), so the count since the
 * last look only grows; it is taken again here when it reaches the bound. */
static uint32_t count_clients(const struct coral_http_server *s, struct clients_seen *seen)
{
	struct clients_seen none;
	if (seen == NULL)
		seen = &none;
	seen->n = 0;
	seen->idlest_fd = -1;
	seen->idlest_ms = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return s->clients;
	int lfd = s->lev ? (int)evconnlistener_get_fd(s->lev) : -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end != '\0' || end == e->d_name || fd == lfd || fd == dirfd(d))
			continue;
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (getsockname((int)fd, (struct sockaddr *)&ss, &len) != 0)
			continue;
		int port = ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
			   : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						      : -1;
		if (port != s->port)
			continue;
		seen->n++;
		struct tcp_info ti;
		socklen_t tl = sizeof(ti);
		/* one shut down already (FIN sent) is on its way out, not a candidate again */
		if (getsockopt((int)fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state == TCP_ESTABLISHED &&
		    ti.tcpi_last_data_recv > seen->idlest_ms) {
			seen->idlest_ms = ti.tcpi_last_data_recv;
			seen->idlest_fd = (int)fd;
		}
	}
	closedir(d);
	return seen->n;
}

/* At the bound: the connection silent longest, if silent EVICT_IDLE_MS, is shut down (evhttp
 * sees its end and frees it), so that a crowd of idle clients cannot keep the port from
 * everyone else. True if one was. */
static bool evict_idlest(struct coral_http_server *s, const struct clients_seen *seen)
{
	if (seen->idlest_fd < 0 || seen->idlest_ms < EVICT_IDLE_MS)
		return false;
	if (shutdown(seen->idlest_fd, SHUT_RDWR) != 0)
		return false;
	s->evicted++;
	log_info("%s: at its bound of %u connections: closed one silent for %u ms", s->what, s->max_clients,
		 seen->idlest_ms);
	return true;
}

static void recheck(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral_http_server *s = arg;
	struct clients_seen seen;
	s->clients = count_clients(s, &seen);
	if (s->clients < s->max_clients || evict_idlest(s, &seen)) {
		s->paused = false;
		evconnlistener_enable(s->lev);
		log_info("%s: %u connections, below the bound: accepting again", s->what, s->clients);
		return;
	}
	struct timeval tv = {0, 200000};
	evtimer_add(s->recheck, &tv);
}

/* Called by evhttp for each connection it accepted, before it sets the socket. */
static struct bufferevent *conn_new(struct event_base *base, void *arg)
{
	struct coral_http_server *s = arg;
	s->accepted++;
	if (++s->clients >= s->max_clients) {
		struct clients_seen seen;
		s->clients = count_clients(s, &seen); /* this one's socket is open already */
		if (s->clients >= s->max_clients && evict_idlest(s, &seen))
			s->clients--;
		if (s->clients >= s->max_clients && !s->paused && s->lev && s->recheck) {
			s->paused = true;
			s->full++;
			evconnlistener_disable(s->lev);
			log_warn("%s: %u connections, the bound (max_clients): not accepting until one closes", s->what,
				 s->clients);
			struct timeval tv = {0, 200000};
			evtimer_add(s->recheck, &tv);
		}
	}
	if (s->ssl == NULL)
		return NULL; /* evhttp makes its plain one */
	SSL *ssl = SSL_new(s->ssl);
	return ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
		   : NULL;
}

struct coral_http_server *coral_http_server_start(struct event_base *base, const struct coral_conf *conf,
						  const struct coral_node_conf *node, const struct coral_http_opts *o,
						  char *err, size_t errsz)
{
	struct coral_http_server *s = calloc(1, sizeof(*s));
	if (s == NULL || (s->http = evhttp_new(base)) == NULL) {
		snprintf(err, errsz, "%s: cannot create the HTTP server", o->what);
		free(s);
		return NULL;
	}
	snprintf(s->what, sizeof(s->what), "%s", o->what);
	s->port = o->port;
	s->recheck = evtimer_new(base, recheck, s);
	s->max_clients = (uint32_t)(o->max_clients > 0 ? o->max_clients : 1);
	evhttp_set_allowed_methods(s->http, (ev_uint16_t)o->methods);
	evhttp_set_max_body_size(s->http, (ev_ssize_t)o->max_body);
	evhttp_set_max_headers_size(s->http, (ev_ssize_t)o->max_header);
	struct timeval idle = {o->idle_ms / 1000, (o->idle_ms % 1000) * 1000};
	evhttp_set_timeout_tv(s->http, &idle);
	evhttp_set_gencb(s->http, o->cb, o->arg);
	if (conf->tls.enabled && (s->ssl = coral_tls_ctx_from_conf(conf, node, err, errsz)) == NULL) {
		coral_http_server_stop(s);
		return NULL;
	}
	evhttp_set_bevcb(s->http, conn_new, s);
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(s->http, o->host, (ev_uint16_t)o->port);
	if (bound == NULL) {
		snprintf(err, errsz, "%s: cannot listen on %s:%d", o->what, o->host, o->port);
		coral_http_server_stop(s);
		return NULL;
	}
	s->lev = evhttp_bound_socket_get_listener(bound);
	return s;
}

void coral_http_server_stop(struct coral_http_server *s)
{
	if (s == NULL)
		return;
	if (s->recheck)
		event_free(s->recheck);
	if (s->http)
		evhttp_free(s->http);
	if (s->ssl)
		SSL_CTX_free(s->ssl); /* each connection's SSL holds its own reference */
	free(s);
}

bool coral_http_server_tls(const struct coral_http_server *s)
{
	return s && s->ssl;
}

void coral_http_server_stats(struct coral_http_server *s, struct coral_http_stats *out)
{
	if (s)
		s->clients = count_clients(s, NULL);
	out->clients = s ? s->clients : 0;
	out->max_clients = s ? s->max_clients : 0;
	out->accepted = s ? s->accepted : 0;
	out->full = s ? s->full : 0;
	out->evicted = s ? s->evicted : 0;
}

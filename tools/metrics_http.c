/* coral-node's metrics port (metrics_http.h). Who may scrape: the holder of the token of
 * [metrics] token_file (Authorization: Bearer TOKEN, as Prometheus sends it with
 * authorization.credentials_file), or with [tls] on (HTTPS on the port) a client whose
 * certificate the cluster's CA signed, which the handshake requires; anyone only with
 * open_reads. Headers are bounded, bodies refused, idle connections closed. */
#include "metrics_http.h"

#include "errors.h"
#include "httpauth.h"
#include "httpserve.h"
#include "log.h"
#include "metrics.h"
#include "net.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_http {
	struct coral_http_server *http;
	char *token;
	bool open;
	const struct coral_sga *sga;
	uint32_t node;
	uint64_t scrapes, refused;
};

static void answer_text(struct evhttp_request *req, int status, const char *reason, const char *text)
{
	struct evbuffer *b = evbuffer_new();
	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add(b, text, strlen(text));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; charset=utf-8");
	evhttp_send_reply(req, status, reason, b);
	evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *m = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		answer_text(req, 404, "Not Found", "only /metrics is served here\n");
		return;
	}
	if (!m->open && !coral_http_server_tls(m->http)) {
		const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
		enum coral_bearer id = coral_bearer_check(m->token, h);
		if (id != CORAL_BEARER_OK) {
			m->refused++;
			if (id == CORAL_BEARER_NONE)
				evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
			answer_text(req, id == CORAL_BEARER_NONE ? 401 : 403, id == CORAL_BEARER_NONE ? "Unauthorized" : "Forbidden",
				    m->token ? (id == CORAL_BEARER_NONE ? "this needs an identity: Authorization: Bearer TOKEN "
									    "([metrics] token_file)\n"
									  : "wrong token\n")
					     : "the metrics need an identity and none is configured: set [metrics] "
					       "token_file (or [tls], or open_reads = yes)\n");
			return;
		}
	}
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (f == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	int rc = coral_metrics_render(m->sga, m->node, f);
	m->scrapes++;
	fprintf(f, "# HELP coral_metrics_scrapes_total scrapes of this node's metrics port answered\n"
		   "# TYPE coral_metrics_scrapes_total counter\ncoral_metrics_scrapes_total{node=\"%u\"} %llu\n"
		   "# HELP coral_metrics_refused_total scrapes refused for want of an identity\n"
		   "# TYPE coral_metrics_refused_total counter\ncoral_metrics_refused_total{node=\"%u\"} %llu\n",
		m->node, (unsigned long long)m->scrapes, m->node, (unsigned long long)m->refused);
	struct coral_http_stats hs;
	coral_http_server_stats(m->http, &hs);
	fprintf(f, "# HELP coral_metrics_clients connections to this node's metrics port open now\n"
		   "# TYPE coral_metrics_clients gauge\ncoral_metrics_clients{node=\"%u\"} %u\n"
		   "# HELP coral_metrics_clients_max the connections the metrics port holds at once ([metrics] max_clients)\n"
		   "# TYPE coral_metrics_clients_max gauge\ncoral_metrics_clients_max{node=\"%u\"} %u\n"
		   "# HELP coral_metrics_full_total times the metrics port held max_clients and stopped accepting\n"
		   "# TYPE coral_metrics_full_total counter\ncoral_metrics_full_total{node=\"%u\"} %llu\n"
		   "# HELP coral_metrics_closed_idle_total connections closed at the bound for being silent\n"
		   "# TYPE coral_metrics_closed_idle_total counter\ncoral_metrics_closed_idle_total{node=\"%u\"} %llu\n",
		m->node, hs.clients, m->node, hs.max_clients, m->node, (unsigned long long)hs.full, m->node,
		(unsigned long long)hs.evicted);
	fclose(f);
	if (rc != 0) {
		answer_text(req, 503, "Service Unavailable", coral_strerror(rc));
	} else {
		struct evbuffer *b = evbuffer_new();
		if (b) {
			evbuffer_add(b, text, len);
			evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
					  "text/plain; version=0.0.4; charset=utf-8");
			evhttp_send_reply(req, 200, "OK", b);
			evbuffer_free(b);
		} else {
			evhttp_send_error(req, 500, NULL);
		}
	}
	free(text);
}

struct metrics_http *metrics_http_start(struct event_base *base, const struct coral_conf *conf,
					const struct coral_node_conf *node, const struct coral_sga *sga,
					char *err, size_t errsz)
{
	err[0] = '\0';
	const struct coral_metrics_conf *mc = &conf->metrics;
	if (!mc->enabled)
		return NULL;
	struct metrics_http *m = calloc(1, sizeof(*m));
	if (m == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	m->sga = sga;
	m->node = (uint32_t)node->id;
	m->open = mc->open_reads != 0;
	int rc = coral_token_load(mc->token_file, "[metrics] token_file", &m->token, err, errsz);
	const char *host = mc->bind[0] ? mc->bind : node->host;
	int port = (int)(node->base_port + CORAL_PORT_METRICS);
	struct coral_http_opts o = {
		.host = host, .port = port, .methods = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, .max_body = 0,
		.max_header = 8192, .idle_ms = (int)mc->idle_ms, .max_clients = (int)mc->max_clients,
		.what = "metrics", .cb = on_request, .arg = m,
	};
	if (rc == 0 && (m->http = coral_http_server_start(base, conf, node, &o, err, errsz)) == NULL)
		rc = CORAL_ESYS;
	if (rc != 0) {
		metrics_http_stop(m);
		return NULL;
	}
	bool tls = coral_http_server_tls(m->http);
	if (m->token == NULL && !m->open && !tls)
		log_warn("metrics on %s:%d refuse every scrape: no identity is configured ([metrics] token_file, [tls] "
			 "or open_reads)", host, port);
	else
		log_info("metrics on %s://%s:%d/metrics (%s)", tls ? "https" : "http", host, port,
			 m->open ? "open to anyone" : tls ? "client certificates" : "bearer token");
	return m;
}

void metrics_http_stop(struct metrics_http *m)
{
	if (m == NULL)
		return;
	coral_http_server_stop(m->http);
	coral_token_free(m->token);
	free(m);
}

/* coralctl top: a live view of the whole cluster, refreshed each second, in the spirit of
 * crm_mon. Each node's figures are its Prometheus exposition (metrics.h): read from the SGA
 * when the node runs on this machine, else fetched from its metrics port (base_port+6) with
 * the token of [metrics] token_file (with [tls] on, over HTTPS with the certificate of a node
 * of this machine); rates and latency percentiles are the differences
 * between two refreshes. q (or ^C) leaves. Not a terminal: one frame per refresh, plain. */
#include "coralctl.h"

#include "errors.h"
#include "httpauth.h"
#include "metrics.h"
#include "net.h"
#include "sga.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/ssl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct sample {
	char *key;    /* name{labels} */
	double v;
};

struct scrape {
	struct sample *s;
	size_t n, cap;
	bool ok;
	char err[160];
	uint64_t at_ns;
};

static void scrape_free(struct scrape *sc)
{
	for (size_t i = 0; i < sc->n; i++)
		free(sc->s[i].key);
	free(sc->s);
	memset(sc, 0, sizeof(*sc));
}

static void parse(struct scrape *sc, const char *text)
{
	const char *p = text;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		if (len > 0 && p[0] != '#') {
			const char *sp = memrchr(p, ' ', len);
			if (sp && sc->n < 100000) {
				if (sc->n == sc->cap) {
					size_t cap = sc->cap ? sc->cap * 2 : 512;
					struct sample *ns = realloc(sc->s, cap * sizeof(*ns));
					if (ns == NULL)
						return;
					sc->s = ns;
					sc->cap = cap;
				}
				sc->s[sc->n].key = strndup(p, (size_t)(sp - p));
				sc->s[sc->n].v = strtod(sp + 1, NULL);
				if (sc->s[sc->n].key)
					sc->n++;
			}
		}
		p += len + (eol ? 1 : 0);
	}
}

/* The sum of the samples of metric name whose labels hold every fragment of lab (NULL: all);
 * NAN when there is none. */
static double get(const struct scrape *sc, const char *name, const char *lab)
{
	double sum = NAN;
	size_t nl = strlen(name);
	for (size_t i = 0; i < sc->n; i++) {
		const char *k = sc->s[i].key;
		if (strncmp(k, name, nl) != 0 || (k[nl] != '{' && k[nl] != '\0'))
			continue;
		if (lab && strstr(k + nl, lab) == NULL)
			continue;
		sum = isnan(sum) ? sc->s[i].v : sum + sc->s[i].v;
	}
	return sum;
}

/* ---- fetching a node's exposition ------------------------------------------------------ */

static bool fetch_local(const struct coral_node_conf *node, char **text)
{
	struct coral_sga sga;
	if (coral_sga_attach(&sga, &ctx.conf, node, true) != 0)
		return false;
	size_t len = 0;
	FILE *f = open_memstream(text, &len);
	int rc = f ? coral_metrics_render(&sga, (uint32_t)node->id, f) : CORAL_ENOMEM;
	if (f)
		fclose(f);
	coral_sga_detach(&sga);
	if (rc != 0) {
		free(*text);
		*text = NULL;
	}
	return rc == 0;
}

/* With [tls] on the metrics port is HTTPS and wants a client certificate of the cluster's
 * CA: coralctl shows the certificate of a node of this machine, and checks that the server
 * shows the one of the node it asked. */
static SSL_CTX *top_tls(char *err, size_t errsz)
{
	static SSL_CTX *tls;
	static bool tried;
	static char why[256];
	if (!tried) {
		tried = true;
		const struct coral_node_conf *mine = NULL;
		for (int i = 0; i < ctx.conf.nnodes && mine == NULL; i++)
			if (coral_host_is_local(ctx.conf.nodes[i].host))
				mine = &ctx.conf.nodes[i];
		if (mine == NULL)
			snprintf(why, sizeof(why), "[tls] is on and no node of the file is on this machine, whose "
						   "certificate would let coralctl in");
		else
			tls = coral_tls_ctx_from_conf(&ctx.conf, mine, why, sizeof(why)); /* NULL: why says it */
	}
	if (tls == NULL)
		snprintf(err, errsz, "%s", why);
	return tls;
}

struct top_conn {
	int fd;
	SSL *ssl;
};

static bool conn_write(struct top_conn *c, const char *buf, size_t len)
{
	if (c->ssl)
		return SSL_write(c->ssl, buf, (int)len) == (int)len;
	return write(c->fd, buf, len) == (ssize_t)len;
}

/* bytes read; 0 at the end; -1 on an error */
static ssize_t conn_read(struct top_conn *c, char *buf, size_t len)
{
	if (c->ssl == NULL)
		return read(c->fd, buf, len);
	int r = SSL_read(c->ssl, buf, (int)(len > INT_MAX ? INT_MAX : len));
	if (r > 0)
		return r;
	int e = SSL_get_error(c->ssl, r);
	return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static bool fetch_http(const struct coral_node_conf *node, const char *token, char **text, char *err, size_t errsz)
{
	SSL_CTX *tls = NULL;
	if (ctx.conf.tls.enabled && (tls = top_tls(err, errsz)) == NULL)
		return false;
	char port[16];
	snprintf(port, sizeof(port), "%lld", (long long)(node->base_port + CORAL_PORT_METRICS));
	const char *host = ctx.conf.metrics.bind[0] ? ctx.conf.metrics.bind : node->host;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
		snprintf(err, errsz, "cannot resolve %s", host);
		return false;
	}
	struct top_conn c = {.fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)};
	struct timeval tv = {1, 0};
	if (c.fd >= 0) {
		setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (c.fd < 0 || connect(c.fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		snprintf(err, errsz, "metrics port %s:%s: %s", host, port, strerror(errno));
		freeaddrinfo(ai);
		if (c.fd >= 0)
			close(c.fd);
		return false;
	}
	freeaddrinfo(ai);
	if (tls) {
		char why[160];
		c.ssl = SSL_new(tls);
		/* evhttp closes without a TLS close_notify: the end of the answer is the socket's
		 * end, checked against Content-Length below */
		if (c.ssl)
			SSL_set_options(c.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
		if (c.ssl == NULL || SSL_set_fd(c.ssl, c.fd) != 1 || SSL_connect(c.ssl) != 1) {
			snprintf(err, errsz, "metrics port %s:%s: the TLS handshake failed", host, port);
			if (c.ssl)
				SSL_free(c.ssl);
			close(c.fd);
			return false;
		}
		if (coral_tls_peer_is(c.ssl, (uint32_t)node->id, why, sizeof(why)) != 0) {
			snprintf(err, errsz, "metrics port %s:%s: %s", host, port, why);
			SSL_free(c.ssl);
			close(c.fd);
			return false;
		}
	}
	char req[512];
	int n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.0\r\nHost: %s\r\n%s%s%sConnection: close\r\n\r\n", host,
			 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
	bool ok = n > 0 && n < (int)sizeof(req) && conn_write(&c, req, (size_t)n);
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	while (ok && buf) {
		if (len + 4096 > cap) {
			char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
			if (nb == NULL) {
				ok = false;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = conn_read(&c, buf + len, cap - len - 1);
		if (r <= 0) {
			ok = r == 0;
			break;
		}
		len += (size_t)r;
	}
	if (c.ssl) {
		SSL_shutdown(c.ssl);
		SSL_free(c.ssl);
	}
	close(c.fd);
	if (!ok || buf == NULL) {
		snprintf(err, errsz, "metrics port %s:%s: no answer", host, port);
		free(buf);
		return false;
	}
	buf[len] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	int status = 0;
	sscanf(buf, "HTTP/%*s %d", &status);
	if (status != 200 || body == NULL) {
		snprintf(err, errsz, "metrics port %s:%s answered %d%s", host, port, status,
			 status == 401 || status == 403 ? " (the token of [metrics] token_file)" : "");
		free(buf);
		return false;
	}
	long want = -1;
	const char *cl_hdr = strcasestr(buf, "\r\nContent-Length:");
	if (cl_hdr && cl_hdr < body)
		want = atol(cl_hdr + 17);
	if (want >= 0 && (size_t)want != strlen(body + 4)) {
		snprintf(err, errsz, "metrics port %s:%s: the answer was cut short (%zu of %ld bytes)", host, port,
			 strlen(body + 4), want);
		free(buf);
		return false;
	}
	memmove(buf, body + 4, strlen(body + 4) + 1);
	*text = buf;
	return true;
}

/* --scrape: every node through its metrics port, as Prometheus reads it, even on this machine */
static bool top_scrape;

static void fetch(const struct coral_node_conf *node, const char *token, const char *token_err, struct scrape *sc)
{
	char *text = NULL;
	sc->at_ns = coral_now_mono_ns();
	if ((!top_scrape && fetch_local(node, &text)) || (token_err[0] == '\0' && fetch_http(node, token, &text, sc->err, sizeof(sc->err)))) {
		parse(sc, text);
		sc->ok = true;
	} else if (token_err[0] && sc->err[0] == '\0') {
		snprintf(sc->err, sizeof(sc->err), "not on this machine; %s", token_err);
	}
	free(text);
}

/* ---- the frame ------------------------------------------------------------------------- */

/* A counter's rate between two scrapes, or NAN. */
static double rate(const struct scrape *now, const struct scrape *before, const char *name, const char *lab)
{
	if (!now->ok || !before->ok || now->at_ns <= before->at_ns)
		return NAN;
	double a = get(now, name, lab), b = get(before, name, lab);
	if (isnan(a) || isnan(b) || a < b)
		return NAN;
	return (a - b) / ((double)(now->at_ns - before->at_ns) / 1e9);
}

/* The 99th percentile, in microseconds, of the requests of this kind served between the two
 * scrapes (the bound of the bucket it falls in), or NAN. */
static double p99_us(const struct scrape *now, const struct scrape *before, const char *kind)
{
	char lab[96];
	snprintf(lab, sizeof(lab), "kind=\"%s\",le=\"+Inf\"", kind);
	double total = get(now, "coral_gcs_request_seconds_bucket", lab) - get(before, "coral_gcs_request_seconds_bucket", lab);
	if (!(total > 0))
		return NAN;
	for (int k = 1; k <= CORAL_METRICS_BUCKETS; k++) {
		double le = (double)((1ull << k) - 1) / 1e6;
		snprintf(lab, sizeof(lab), "kind=\"%s\",le=\"%.9g\"", kind, le);
		double c = get(now, "coral_gcs_request_seconds_bucket", lab) -
			   get(before, "coral_gcs_request_seconds_bucket", lab);
		if (c >= 0.99 * total)
			return le * 1e6;
	}
	return INFINITY;
}

static void num(char *buf, size_t n, double v, const char *fmt)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else if (isinf(v))
		snprintf(buf, n, ">16s");
	else
		snprintf(buf, n, fmt, v);
}

static void dur_us(char *buf, size_t n, double us)
{
	if (isnan(us) || isinf(us))
		num(buf, n, us, "");
	else if (us >= 1000000)
		snprintf(buf, n, "%.1fs", us / 1e6);
	else if (us >= 1000)
		snprintf(buf, n, "%.1fms", us / 1e3);
	else
		snprintf(buf, n, "%.0fus", us);
}

static const char *node_state(const struct scrape *sc)
{
	static const char *const st[] = {"down", "starting", "running", "degraded", "stopping"};
	for (size_t i = 0; i < CORAL_ARRAY_LEN(st); i++) {
		char lab[48];
		snprintf(lab, sizeof(lab), "state=\"%s\"", st[i]);
		if (get(sc, "coral_node_state", lab) == 1)
			return st[i];
	}
	return "?";
}

static void frame(FILE *out, struct scrape *now, struct scrape *before, bool tty)
{
	int nn = ctx.conf.nnodes;
	uint32_t leader = 0;
	double term = NAN, epoch = NAN;
	for (int i = 0; i < nn; i++) {
		double l = get(&now[i], "coral_cluster_leader", NULL);
		if (l > 0 && !isnan(l)) {
			leader = (uint32_t)l;
			epoch = get(&now[i], "coral_cluster_epoch", NULL);
		}
	}
	for (int i = 0; i < nn; i++)
		if (leader && ctx.conf.nodes[i].id == (int64_t)leader)
			term = get(&now[i], "coral_raft_term", NULL);
	char when[32];
	time_t t = time(NULL);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
	if (tty)
		fputs("\033[H\033[2J", out);
	char lt[64] = "no leader known";
	if (leader) {
		char ts[24], es[24];
		num(ts, sizeof(ts), term, "%.0f");
		num(es, sizeof(es), epoch, "%.0f");
		snprintf(lt, sizeof(lt), "leader: node %u (term %s, epoch %s)", leader, ts, es);
	}
	fprintf(out, "coral top   cluster %s, %d nodes   %s   %s%s\n\n", ctx.conf.cluster.name, nn, lt, when,
		tty ? "   q: quit" : "");
	fprintf(out, "%-14s %-9s %-6s %-6s %-5s %-8s %9s %9s %6s %8s %8s %8s %8s %8s  %-22s %s\n", "NODE", "STATE",
		"FENCED", "LEADER", "UP", "RESTARTS", "COMMIT/s", "GETS/s", "LOCAL%", "2-WAY/s", "p99", "3-WAY/s", "p99",
		"GES/s", "RECOVERY", "FULLEST TABLE");
	for (int i = 0; i < nn; i++) {
		const struct coral_node_conf *node = &ctx.conf.nodes[i];
		struct scrape *sc = &now[i], *bf = &before[i];
		char name[40];
		char idl[24];
		snprintf(idl, sizeof(idl), "%lld", (long long)node->id);
		snprintf(name, sizeof(name), strcmp(idl, node->label) ? "%s (%s)" : "%s", idl, node->label);
		if (!sc->ok) {
			fprintf(out, "%-14s %-9s %s\n", name, "?", sc->err[0] ? sc->err : "not running here");
			continue;
		}
		double up = get(sc, "coral_daemon_up", NULL), restarts = get(sc, "coral_daemon_restarts_total", NULL);
		double gets = rate(sc, bf, "coral_cache_gets_total", NULL), hits = rate(sc, bf, "coral_cache_local_hits_total", NULL);
		char c[6][16], p2[16], p3[16], rec[40] = "-", full[48] = "-";
		num(c[0], 16, rate(sc, bf, "coral_redo_commits_total", NULL), "%.0f");
		num(c[1], 16, gets, "%.0f");
		num(c[2], 16, gets > 0 ? 100.0 * hits / gets : NAN, "%.1f");
		num(c[3], 16, rate(sc, bf, "coral_gcs_two_way_total", NULL), "%.0f");
		num(c[4], 16, rate(sc, bf, "coral_gcs_three_way_total", NULL), "%.0f");
		num(c[5], 16, rate(sc, bf, "coral_ges_requests_total", NULL), "%.0f");
		dur_us(p2, sizeof(p2), bf->ok ? p99_us(sc, bf, "2-way") : NAN);
		dur_us(p3, sizeof(p3), bf->ok ? p99_us(sc, bf, "3-way") : NAN);
		double at = get(sc, "coral_recovery_current_at_seconds", NULL);
		if (!isnan(at))
			snprintf(rec, sizeof(rec), "running %.0fs, %.0f blocks", (double)time(NULL) - at,
				 get(sc, "coral_recovery_current_blocks_done", NULL));
		double worst = -1;
		for (size_t k = 0; k < sc->n; k++) {
			const char *key = sc->s[k].key;
			const char *sec = strstr(key, "section=\"");
			if (strncmp(key, "coral_sga_entries{", 18) != 0 || sec == NULL || strstr(sec, "\"redo\"") || strstr(sec, "\"proc\"") ||
			    strstr(sec, "\"metrics\""))
				continue;
			char lab[64];
			const char *end = strchr(sec + 9, '"');
			if (end == NULL || end - sec > 60)
				continue;
			snprintf(lab, sizeof(lab), "%.*s", (int)(end - sec + 1), sec);
			double cap = get(sc, "coral_sga_capacity", lab);
			if (cap > 0 && sc->s[k].v / cap > worst) {
				worst = sc->s[k].v / cap;
				snprintf(full, sizeof(full), "%.*s %.0f%%", (int)(end - sec - 9), sec + 9, 100 * worst);
			}
		}
		char ups[16], rs[16];
		num(ups, sizeof(ups), up, "%.0f/7");
		num(rs, sizeof(rs), restarts, "%.0f");
		fprintf(out, "%-14s %-9s %-6s %-6s %-5s %-8s %9s %9s %6s %8s %8s %8s %8s %8s  %-22s %s\n", name,
			node_state(sc), get(sc, "coral_node_fenced", NULL) == 1 ? "yes" : "no",
			leader && (int64_t)leader == node->id ? "*" : "", ups, rs, c[0], c[1], c[2], c[3], p2, c[4], p3, c[5],
			rec, full);
	}
	fprintf(out, "\n%-14s", "DAEMONS");
	for (int d = 0; d < CORAL_NDAEMONS; d++)
		fprintf(out, " %-12s", coral_daemon_names[d]);
	fprintf(out, "\n");
	for (int i = 0; i < nn; i++) {
		if (!now[i].ok)
			continue;
		fprintf(out, "node %-9lld", (long long)ctx.conf.nodes[i].id);
		for (int d = 0; d < CORAL_NDAEMONS; d++) {
			char lab[40], cell[24];
			snprintf(lab, sizeof(lab), "daemon=\"%s\"", coral_daemon_names[d]);
			double u = get(&now[i], "coral_daemon_up", lab), r = get(&now[i], "coral_daemon_restarts_total", lab);
			snprintf(cell, sizeof(cell), "%s %.0fr", get(&now[i], "coral_daemon_failed", lab) == 1 ? "FAILED"
								 : u == 1 ? "up" : "DOWN",
				 isnan(r) ? 0 : r);
			fprintf(out, " %-12s", cell);
		}
		fprintf(out, "\n");
	}
	fflush(out);
}

/* ---- the loop -------------------------------------------------------------------------- */

static volatile sig_atomic_t top_stop;
static void on_sig(int sig)
{
	(void)sig;
	top_stop = 1;
}

int run_top(int argc, char **argv)
{
	int interval_ms = 1000;
	long count = -1;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc)
			interval_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			count = atol(argv[++i]);
		else if (strcmp(argv[i], "--scrape") == 0)
			top_scrape = true;
		else
			return coralctl_usage_error();
	}
	if (interval_ms < 100 || interval_ms > 3600000) {
		fprintf(stderr, "coralctl: --interval is in ms, from 100 to 3600000\n");
		return 2;
	}
	char *token = NULL, token_err[CORAL_ERRMSG_MAX] = "";
	coral_token_load(ctx.conf.metrics.token_file, "[metrics] token_file", &token, token_err, sizeof(token_err));
	bool tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
	struct termios saved;
	if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	} else {
		tty = false;
	}
	struct sigaction sa = {.sa_handler = on_sig};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int nn = ctx.conf.nnodes;
	struct scrape *now = calloc((size_t)nn, sizeof(*now)), *before = calloc((size_t)nn, sizeof(*before));
	if (now == NULL || before == NULL)
		top_stop = 1;
	for (long f = 0; !top_stop && (count < 0 || f < count); f++) {
		for (int i = 0; i < nn; i++) {
			scrape_free(&before[i]);
			before[i] = now[i];
			memset(&now[i], 0, sizeof(now[i]));
			fetch(&ctx.conf.nodes[i], token, token_err, &now[i]);
		}
		frame(stdout, now, before, tty);
		if (!tty && count != 1)
			printf("\n");
		if (count >= 0 && f + 1 >= count)
			break;
		uint64_t until = coral_now_mono_ns() + (uint64_t)interval_ms * 1000000ull;
		while (!top_stop) {
			uint64_t t = coral_now_mono_ns();
			if (t >= until)
				break;
			struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
			int r = poll(&p, tty ? 1 : 0, (int)((until - t) / 1000000ull) + 1);
			char ch;
			if (r > 0 && read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
				top_stop = 1;
		}
	}
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	for (int i = 0; i < nn && now && before; i++) {
		scrape_free(&now[i]);
		scrape_free(&before[i]);
	}
	free(now);
	free(before);
	coral_token_free(token);
	return 0;
}

/* The interconnect (see net.h). */
#include "net.h"
#include "conf.h"
#include "errors.h"
#include "frame.h"
#include "log.h"
#include "net.pb-c.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <lz4.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

enum { T_HELLO = 1, T_HELLO_ACK, T_PING, T_PONG, T_GOODBYE };
enum { F_LZ4 = 1 };
#define Z_SKIP_MAX 64             /* payloads sent as they are after lz4 stopped paying */
#define HDR 6   /* length, type, flags */

struct coral_net;

/* One TCP connection, either direction. */
struct conn {
	struct coral_net *net;
	struct bufferevent *bev;
	SSL *ssl;
	bool outbound;
	bool established;     /* hello accepted */
	bool closing;
	int in_cb;
	uint32_t peer;        /* outbound: whom we dialed; inbound: set by the hello */
	uint64_t incarnation; /* inbound: the peer's, from its hello */
	struct event *timeout;
	struct conn *next;    /* list of inbound connections not yet identified */
};

struct peer {
	bool known;
	char host[256];
	int port;
	struct conn *out;     /* our dial */
	struct conn *in;      /* its dial, once identified */
	struct event *redial;
	int backoff_ms;
	uint64_t min_incarnation;
	uint64_t ping_sent_ns;
	/* compression that did not pay: the next z_skip payloads go as they are, and each
	 * further miss doubles the skip (up to Z_SKIP_MAX); a payload that compresses ends it */
	uint32_t z_skip, z_backoff;
	struct coral_net_peer_stats st;
};

struct coral_net {
	struct coral_net_opts o;
	char cluster[64], daemon[32];
	struct event_base *base;
	struct evconnlistener *lis;
	SSL_CTX *ssl;
	struct peer peers[CORAL_NET_MAX_PEERS + 1];
	struct conn *pending;     /* inbound, hello not seen yet */
	struct event *ping;
	uint64_t rng;
	uint8_t *zbuf;            /* compression scratch */
	size_t zcap;
};

static uint64_t next_rand(struct coral_net *n)
{
	return coral_splitmix64(&n->rng); /* reproducible jitter from the configured seed */
}

static struct peer *peer_of(struct coral_net *n, uint32_t id)
{
	if (id == 0 || id > CORAL_NET_MAX_PEERS || !n->peers[id].known)
		return NULL;
	return &n->peers[id];
}

static void set_error(struct peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct peer *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->st.last_error, sizeof(p->st.last_error), fmt, ap);
	va_end(ap);
}

/* ---- connections -------------------------------------------------------------------- */

static void schedule_redial(struct coral_net *n, uint32_t id);

static void conn_free(struct conn *c)
{
	struct coral_net *n = c->net;
	if (c->outbound) {
		struct peer *p = &n->peers[c->peer];
		if (p->out == c) {
			p->out = NULL;
			p->st.out_up = false;
			if (c->established && n->o.on_link)
				n->o.on_link(n->o.arg, c->peer, false);
		}
	} else {
		if (c->peer && n->peers[c->peer].in == c) {
			n->peers[c->peer].in = NULL;
			n->peers[c->peer].st.in_up = false;
		}
		for (struct conn **pp = &n->pending; *pp; pp = &(*pp)->next)
			if (*pp == c) {
				*pp = c->next;
				break;
			}
	}
	if (c->timeout)
		event_free(c->timeout);
	if (c->bev)
		bufferevent_free(c->bev); /* frees the SSL too (BEV_OPT_CLOSE_ON_FREE) */
	free(c);
}

/* Closes now, or at the end of the callback that is running on it. */
static void conn_close(struct conn *c)
{
	if (c->closing) {
		if (c->in_cb == 0)
			conn_free(c); /* a goodbye was waiting to go out; the peer went first */
		return;
	}
	c->closing = true;
	bool redial = c->outbound && c->net->peers[c->peer].known;
	uint32_t id = c->peer;
	struct coral_net *n = c->net;
	if (c->in_cb == 0)
		conn_free(c);
	else if (c->outbound && n->peers[id].out == c) {
		n->peers[id].out = NULL; /* a new dial may start; this one is freed on return */
		n->peers[id].st.out_up = false;
		if (c->established && n->o.on_link)
			n->o.on_link(n->o.arg, id, false);
	}
	if (redial)
		schedule_redial(n, id);
}

static int write_frame(struct conn *c, uint8_t type, uint8_t flags, const void *a, size_t alen,
		       const void *b, size_t blen)
{
	size_t len = 2 + alen + blen;
	if (len > c->net->o.max_frame)
		return CORAL_ETOOBIG;
	uint8_t hdr[HDR];
	uint32_t be = htonl((uint32_t)len);
	memcpy(hdr, &be, 4);
	hdr[4] = type;
	hdr[5] = flags;
	if (c->ssl == NULL) {
		struct iovec v[3] = {{hdr, HDR}};
		int n = 1;
		if (alen)
			v[n++] = (struct iovec){(void *)a, alen};
		if (blen)
			v[n++] = (struct iovec){(void *)b, blen};
		return coral_bev_send(c->bev, v, n);
	}
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (evbuffer_add(out, hdr, HDR) != 0 || (alen && evbuffer_add(out, a, alen) != 0) ||
	    (blen && evbuffer_add(out, b, blen) != 0))
		return CORAL_ENOMEM;
	return 0;
}

static int write_pb(struct conn *c, uint8_t type, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		return CORAL_ENOMEM;
	protobuf_c_message_pack(m, buf);
	int rc = write_frame(c, type, 0, buf, len, NULL, 0);
	free(buf);
	return rc;
}

static uint64_t cur_epoch(struct coral_net *n)
{
	return n->o.epoch ? n->o.epoch(n->o.arg) : 0;
}

static void send_ack(struct conn *c, int code, const char *error)
{
	Coral__NetHelloAck a = CORAL__NET_HELLO_ACK__INIT;
	a.code = code;
	a.error = (char *)(error ? error : "");
	a.node_id = c->net->o.node_id;
	a.incarnation = c->net->o.incarnation;
	a.epoch = cur_epoch(c->net);
	write_pb(c, code == 0 ? T_HELLO_ACK : T_GOODBYE, &a.base);
}

static int check_cert(struct conn *c, uint32_t id, char *why, size_t whysz)
{
	return c->ssl == NULL ? 0 : coral_tls_peer_is(c->ssl, id, why, whysz);
}

int coral_tls_peer_is(SSL *ssl, uint32_t id, char *why, size_t whysz)
{
	X509 *cert = SSL_get1_peer_certificate(ssl);
	if (cert == NULL) {
		snprintf(why, whysz, "no certificate presented");
		return CORAL_EPERM;
	}
	char cn[128] = "";
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
	X509_free(cert);
	char want[32];
	snprintf(want, sizeof(want), "node%u", id);
	if (strcmp(cn, want) != 0) {
		snprintf(why, whysz, "certificate names '%s', expected '%s'", cn, want);
		return CORAL_EPERM;
	}
	return 0;
}

static void on_hello(struct conn *c, const uint8_t *data, size_t len)
{
	struct coral_net *n = c->net;
	Coral__NetHello *h = coral__net_hello__unpack(NULL, len, data);
	char why[256] = "";
	int code = 0;
	struct peer *p = NULL;
	if (h == NULL) {
		code = CORAL_EDECODE;
		snprintf(why, sizeof(why), "undecodable hello");
	} else if (strcmp(h->cluster, n->cluster) != 0) {
		code = CORAL_ECLUSTER;
		snprintf(why, sizeof(why), "wrong cluster: '%s' dialed cluster '%s'", h->cluster, n->cluster);
	} else if (h->version != CORAL_NET_VERSION) {
		code = CORAL_EVERSION;
		snprintf(why, sizeof(why), "protocol version %u, this node speaks %u", h->version,
			 CORAL_NET_VERSION);
	} else if (strcmp(h->daemon, n->daemon) != 0) {
		code = CORAL_EINVAL;
		snprintf(why, sizeof(why), "%s dialed %s", h->daemon, n->daemon);
	} else if (h->to_node != n->o.node_id) {
		code = CORAL_EINVAL;
		snprintf(why, sizeof(why), "dialed node %u but reached node %u", h->to_node, n->o.node_id);
	} else if ((p = peer_of(n, h->node_id)) == NULL) {
		code = CORAL_ENOENT;
		snprintf(why, sizeof(why), "node %u is not a known peer", h->node_id);
	} else if (h->incarnation < p->min_incarnation) {
		code = CORAL_EEVICTED;
		snprintf(why, sizeof(why), "incarnation %llu of node %u was evicted; rejoin with a new one",
			 (unsigned long long)h->incarnation, h->node_id);
	} else {
		code = check_cert(c, h->node_id, why, sizeof(why));
	}
	if (code != 0) {
		log_warn("refused a connection from node %u: %s", h ? h->node_id : 0, why);
		if (p)
			p->st.refused++;
		send_ack(c, code, why);
		if (h)
			coral__net_hello__free_unpacked(h, NULL);
		/* let the goodbye go out, then close */
		c->closing = true;
		bufferevent_disable(c->bev, EV_READ);
		return;
	}
	for (struct conn **pp = &n->pending; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (p->in && p->in != c) {
		/* a redial replaces the previous connection (the old one is half-dead) */
		struct conn *old = p->in;
		p->in = NULL;
		old->peer = 0;
		conn_close(old);
	}
	c->peer = h->node_id;
	c->incarnation = h->incarnation;
	c->established = true;
	p->in = c;
	p->st.in_up = true;
	p->st.incarnation = h->incarnation;
	if (c->timeout) {
		event_free(c->timeout);
		c->timeout = NULL;
	}
	send_ack(c, 0, NULL);
	log_debug("node %u (incarnation %llu) connected", h->node_id,
		  (unsigned long long)h->incarnation);
	coral__net_hello__free_unpacked(h, NULL);
}

static void on_ack(struct conn *c, uint8_t type, const uint8_t *data, size_t len)
{
	struct coral_net *n = c->net;
	struct peer *p = &n->peers[c->peer];
	Coral__NetHelloAck *a = coral__net_hello_ack__unpack(NULL, len, data);
	if (a == NULL) {
		set_error(p, "undecodable hello answer");
		conn_close(c);
		return;
	}
	char why[256];
	if (type == T_GOODBYE || a->code != 0) {
		int code = a->code ? a->code : CORAL_ECLOSED;
		set_error(p, "refused by node %u: %s", c->peer, a->error);
		log_warn("node %u refused us: %s", c->peer, a->error);
		p->st.refused++;
		uint32_t id = c->peer;
		coral__net_hello_ack__free_unpacked(a, NULL);
		conn_close(c);
		if (n->o.on_refused)
			n->o.on_refused(n->o.arg, id, code, p->st.last_error);
		return;
	}
	if (a->node_id != c->peer) {
		set_error(p, "dialed node %u at %s:%d but node %u answered", c->peer, p->host, p->port,
			  a->node_id);
		log_warn("%s", p->st.last_error);
		coral__net_hello_ack__free_unpacked(a, NULL);
		conn_close(c);
		return;
	}
	coral__net_hello_ack__free_unpacked(a, NULL);
	if (check_cert(c, c->peer, why, sizeof(why)) != 0) {
		set_error(p, "node %u: %s", c->peer, why);
		log_warn("refusing node %u: %s", c->peer, why);
		conn_close(c);
		return;
	}
	c->established = true;
	p->st.out_up = true;
	p->backoff_ms = 0;
	p->st.last_error[0] = '\0';
	if (c->timeout) {
		event_free(c->timeout);
		c->timeout = NULL;
	}
	log_debug("connected to node %u", c->peer);
	if (n->o.on_link)
		n->o.on_link(n->o.arg, c->peer, true);
}

static void deliver(struct conn *c, uint8_t type, uint8_t flags, const uint8_t *data, size_t len)
{
	struct coral_net *n = c->net;
	struct peer *p = &n->peers[c->peer];
	if (c->incarnation < p->min_incarnation) {
		p->st.dropped++;
		return;
	}
	p->st.msgs_in++;
	p->st.bytes_in += len + HDR;
	if (flags & F_LZ4) {
		uint32_t raw;
		if (len < 4) {
			conn_close(c);
			return;
		}
		memcpy(&raw, data, 4);
		raw = ntohl(raw);
		if (raw > n->o.max_frame) {
			log_warn("node %u sent a compressed frame of %u bytes: closing", c->peer, raw);
			conn_close(c);
			return;
		}
		uint8_t *buf = malloc(raw ? raw : 1);
		if (buf == NULL)
			return;
		int got = LZ4_decompress_safe((const char *)data + 4, (char *)buf, (int)len - 4, (int)raw);
		if (got != (int)raw) {
			log_warn("node %u sent a bad lz4 frame: closing", c->peer);
			free(buf);
			conn_close(c);
			return;
		}
		n->o.on_msg(n->o.arg, c->peer, c->incarnation, type, buf, raw);
		free(buf);
		return;
	}
	n->o.on_msg(n->o.arg, c->peer, c->incarnation, type, data, len);
}

static void on_frame(struct conn *c, uint8_t type, uint8_t flags, const uint8_t *data, size_t len)
{
	struct coral_net *n = c->net;
	if (!c->established) {
		if (!c->outbound && type == T_HELLO)
			on_hello(c, data, len);
		else if (c->outbound && (type == T_HELLO_ACK || type == T_GOODBYE))
			on_ack(c, type, data, len);
		else
			conn_close(c);
		return;
	}
	struct peer *p = &n->peers[c->peer];
	switch (type) {
	case T_PING:
		write_frame(c, T_PONG, 0, data, len, NULL, 0);
		return;
	case T_PONG:
		if (len == 8 && c->outbound) {
			uint64_t sent;
			memcpy(&sent, data, 8);
			uint64_t now = coral_now_mono_ns();
			if (sent == p->ping_sent_ns && now >= sent) {
				p->st.rtt_us = (now - sent) / 1000;
				p->st.rtt_avg_us = p->st.rtt_avg_us ? (p->st.rtt_avg_us * 7 + p->st.rtt_us) / 8
								    : p->st.rtt_us;
			}
		}
		return;
	case T_GOODBYE:
		on_ack(c, type, data, len);
		return;
	default:
		if (type >= CORAL_NET_APP && !c->outbound)
			deliver(c, type, flags, data, len);
		return;
	}
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	c->in_cb++;
	while (!c->closing) {
		uint8_t hdr[HDR];
		if (evbuffer_copyout(in, hdr, HDR) < HDR)
			break;
		uint32_t len;
		memcpy(&len, hdr, 4);
		len = ntohl(len);
		if (len < 2 || len > c->net->o.max_frame + 8) {
			log_warn("frame of %u bytes from %s: closing", len,
			       c->outbound ? "a peer we dialed" : "a peer");
			conn_close(c);
			break;
		}
		size_t have = evbuffer_get_length(in);
		if (have < 4 + (size_t)len &&
		    (c->ssl != NULL || coral_bev_read_more(bev, 4 + (size_t)len - have) == 0 ||
		     evbuffer_get_length(in) < 4 + (size_t)len))
			break;
		const uint8_t *data = evbuffer_pullup(in, 4 + (ssize_t)len);
		if (data == NULL)
			break;
		on_frame(c, hdr[4], hdr[5], data + HDR, len - 2);
		evbuffer_drain(in, 4 + (size_t)len);
	}
	c->in_cb--;
	if (c->closing && c->in_cb == 0 && (c->established || c->outbound ||
					     evbuffer_get_length(bufferevent_get_output(bev)) == 0))
		conn_free(c);
}

static void conn_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (c->closing && c->in_cb == 0)
		conn_free(c); /* a refused hello's goodbye has gone out */
}

/* The last OpenSSL error: libevent keeps a bufferevent's own, OpenSSL the thread's. */
static void ssl_errors(struct bufferevent *bev, char *buf, size_t bufsz)
{
	unsigned long e;
	buf[0] = '\0';
	while (bev && (e = bufferevent_get_openssl_error(bev)) != 0)
		if (ERR_GET_LIB(e) != 0)   /* libevent also queues bare SSL_get_error codes */
			ERR_error_string_n(e, buf, bufsz);
	while ((e = ERR_get_error()) != 0)
		ERR_error_string_n(e, buf, bufsz);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	struct coral_net *n = c->net;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->outbound) {
			int one = 1;
			setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			Coral__NetHello h = CORAL__NET_HELLO__INIT;
			h.cluster = n->cluster;
			h.daemon = n->daemon;
			h.node_id = n->o.node_id;
			h.to_node = c->peer;
			h.incarnation = n->o.incarnation;
			h.epoch = cur_epoch(n);
			h.version = CORAL_NET_VERSION;
			write_pb(c, T_HELLO, &h.base);
		}
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		char tls[160] = "";
		if (c->ssl) {
			long v = SSL_get_verify_result(c->ssl);
			if (v != X509_V_OK)
				snprintf(tls, sizeof(tls), "peer certificate: %s",
					 X509_verify_cert_error_string(v));
			else
				ssl_errors(c->bev, tls, sizeof(tls));
			if (tls[0] == '\0' && !c->established)
				snprintf(tls, sizeof(tls), "handshake or hello failed (peer closed)");
		}
		int e = EVUTIL_SOCKET_ERROR();
		if (c->outbound) {
			struct peer *p = &n->peers[c->peer];
			if (!c->established) {
				p->st.connect_failures++;
				if (tls[0])
					set_error(p, "TLS with node %u failed: %s", c->peer, tls);
				else if (what & BEV_EVENT_ERROR)
					set_error(p, "connect to %s:%d: %s", p->host, p->port,
						  evutil_socket_error_to_string(e));
				else
					set_error(p, "node %u closed the connection during the hello", c->peer);
				if (tls[0])
					log_warn("%s", p->st.last_error);
			} else {
				set_error(p, "connection to node %u lost", c->peer);
				log_notice("%s", p->st.last_error);
			}
		} else if (tls[0]) {
			log_warn("refused an inbound TLS connection: %s", tls);
		}
		conn_close(c);
	}
}

static void conn_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn *c = arg;
	if (c->established)
		return;
	if (c->outbound)
		set_error(&c->net->peers[c->peer], "connect/hello to node %u timed out", c->peer);
	conn_close(c);
}

static struct conn *conn_new(struct coral_net *n, evutil_socket_t fd, bool outbound, uint32_t peer)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->net = n;
	c->outbound = outbound;
	c->peer = peer;
	int opts = BEV_OPT_CLOSE_ON_FREE;
	if (n->ssl) {
		c->ssl = SSL_new(n->ssl);
		if (c->ssl == NULL) {
			free(c);
			return NULL;
		}
		c->bev = bufferevent_openssl_socket_new(n->base, fd, c->ssl,
							outbound ? BUFFEREVENT_SSL_CONNECTING
								 : BUFFEREVENT_SSL_ACCEPTING,
							opts);
	} else {
		c->bev = bufferevent_socket_new(n->base, fd, opts);
	}
	if (c->bev == NULL) {
		if (c->ssl)
			SSL_free(c->ssl);
		free(c);
		return NULL;
	}
	bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, n->o.max_frame + 64);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->timeout = evtimer_new(n->base, conn_timeout, c);
	if (c->timeout) {
		struct timeval tv = {n->o.connect_timeout_ms / 1000, (n->o.connect_timeout_ms % 1000) * 1000};
		evtimer_add(c->timeout, &tv);
	}
	return c;
}

static void dial(struct coral_net *n, uint32_t id)
{
	struct peer *p = &n->peers[id];
	if (!p->known || p->out)
		return;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%d", p->port);
	int rc = getaddrinfo(p->host, port, &hints, &ai);
	if (rc != 0 || ai == NULL) {
		set_error(p, "cannot resolve %s: %s", p->host, gai_strerror(rc));
		p->st.connect_failures++;
		schedule_redial(n, id);
		return;
	}
	struct conn *c = conn_new(n, -1, true, id);
	if (c == NULL) {
		freeaddrinfo(ai);
		schedule_redial(n, id);
		return;
	}
	p->out = c;
	p->st.reconnects++;
	if (bufferevent_socket_connect(c->bev, ai->ai_addr, (int)ai->ai_addrlen) != 0) {
		set_error(p, "connect to %s:%d failed at once", p->host, p->port);
		p->st.connect_failures++;
		conn_close(c);
	}
	freeaddrinfo(ai);
}

/* The redial timer carries the peer id in a small struct so the callback finds the net. */
struct redial_arg {
	struct coral_net *net;
	uint32_t id;
};

static void redial_fire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct redial_arg *ra = arg;
	dial(ra->net, ra->id);
}

static void schedule_redial(struct coral_net *n, uint32_t id)
{
	struct peer *p = &n->peers[id];
	if (!p->known || p->redial == NULL || evtimer_pending(p->redial, NULL))
		return;
	int b = p->backoff_ms ? p->backoff_ms * 2 : n->o.reconnect_min_ms;
	if (b > n->o.reconnect_max_ms)
		b = n->o.reconnect_max_ms;
	p->backoff_ms = b;
	int jitter = b / 4 ? (int)(next_rand(n) % (uint64_t)(b / 4 + 1)) : 0;
	int ms = b + jitter;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(p->redial, &tv);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	(void)lis;
	(void)sa;
	(void)salen;
	struct coral_net *n = arg;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int pending = 0;
	for (struct conn *c = n->pending; c; c = c->next)
		pending++;
	if (pending >= 2 * CORAL_NET_MAX_PEERS) {
		log_warn("too many connections without a hello: refusing one");
		evutil_closesocket(fd);
		return;
	}
	struct conn *c = conn_new(n, fd, false, 0);
	if (c == NULL) {
		evutil_closesocket(fd);
		return;
	}
	c->next = n->pending;
	n->pending = c;
}

static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral_net *n = arg;
	uint64_t now = coral_now_mono_ns();
	for (uint32_t id = 1; id <= CORAL_NET_MAX_PEERS; id++) {
		struct peer *p = &n->peers[id];
		if (p->known && p->out && p->out->established) {
			p->ping_sent_ns = now;
			write_frame(p->out, T_PING, 0, &now, 8, NULL, 0);
		}
	}
}

/* ---- public ------------------------------------------------------------------------- */

static SSL_CTX *tls_ctx(const struct coral_net_opts *o, char *err, size_t errsz)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	char e[200];
	if (ctx == NULL) {
		snprintf(err, errsz, "TLS: cannot create a context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
		ssl_errors(NULL, e, sizeof(e));
		snprintf(err, errsz, "TLS: cannot load CA file %s: %s", o->ca_file, e);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
		ssl_errors(NULL, e, sizeof(e));
		snprintf(err, errsz, "TLS: cannot load certificate %s: %s", o->cert_file, e);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ssl_errors(NULL, e, sizeof(e));
		snprintf(err, errsz, "TLS: key %s does not load or match the certificate: %s",
			 o->key_file, e);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *coral_tls_ctx_from_conf(const struct coral_conf *conf, const struct coral_node_conf *node, char *err,
				 size_t errsz)
{
	struct coral_net_opts o;
	struct coral_net_files files;
	if (!conf->tls.enabled) {
		snprintf(err, errsz, "[tls] is not enabled");
		return NULL;
	}
	if (coral_net_opts_from_conf(&o, &files, conf, node, "tls", 0, 0, 0, err, errsz) != 0)
		return NULL;
	return tls_ctx(&o, err, errsz);
}

struct coral_net *coral_net_new(struct event_base *base, const struct coral_net_opts *o, char *err,
				size_t errsz)
{
	struct coral_net *n = calloc(1, sizeof(*n));
	if (n == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	n->o = *o;
	coral_strlcpy(n->cluster, o->cluster, sizeof(n->cluster));
	coral_strlcpy(n->daemon, o->daemon, sizeof(n->daemon));
	n->o.cluster = n->cluster;
	n->o.daemon = n->daemon;
	n->base = base;
	n->rng = o->seed ^ ((uint64_t)o->node_id << 32);
	if (o->ca_file && o->ca_file[0]) {
		n->ssl = tls_ctx(o, err, errsz);
		if (n->ssl == NULL) {
			free(n);
			return NULL;
		}
	}
	for (uint32_t id = 1; id <= CORAL_NET_MAX_PEERS; id++) {
		struct redial_arg *ra = malloc(sizeof(*ra));
		if (ra == NULL)
			goto nomem;
		ra->net = n;
		ra->id = id;
		n->peers[id].redial = evtimer_new(base, redial_fire, ra);
		if (n->peers[id].redial == NULL) {
			free(ra);
			goto nomem;
		}
	}
	n->lis = coral_tcp_listen(base, o->listen_host, o->listen_port, on_accept, n, err, errsz);
	if (n->lis == NULL) {
		coral_net_free(n);
		return NULL;
	}
	n->ping = event_new(base, -1, EV_PERSIST, ping_cb, n);
	if (n->ping) {
		struct timeval tv = {o->ping_interval_ms / 1000, (o->ping_interval_ms % 1000) * 1000};
		event_add(n->ping, &tv);
	}
	return n;
nomem:
	snprintf(err, errsz, "out of memory");
	coral_net_free(n);
	return NULL;
}

void coral_net_free(struct coral_net *n)
{
	if (n == NULL)
		return;
	for (uint32_t id = 1; id <= CORAL_NET_MAX_PEERS; id++) {
		struct peer *p = &n->peers[id];
		p->known = false;
		if (p->out)
			conn_free(p->out);
		if (p->in)
			conn_free(p->in);
		if (p->redial) {
			free(event_get_callback_arg(p->redial));
			event_free(p->redial);
		}
	}
	while (n->pending)
		conn_free(n->pending);
	if (n->lis)
		evconnlistener_free(n->lis);
	if (n->ping)
		event_free(n->ping);
	if (n->ssl)
		SSL_CTX_free(n->ssl);
	free(n->zbuf);
	free(n);
}

int coral_net_add_peer(struct coral_net *n, uint32_t id, const char *host, int port)
{
	if (id == 0 || id > CORAL_NET_MAX_PEERS || id == n->o.node_id)
		return CORAL_EINVAL;
	struct peer *p = &n->peers[id];
	bool moved = p->known && (strcmp(p->host, host) != 0 || p->port != port);
	if (p->known && !moved)
		return 0;
	if (!coral_strlcpy(p->host, host, sizeof(p->host)))
		return CORAL_EINVAL;
	p->port = port;
	p->known = true;
	p->st.known = true;
	if (moved && p->out)
		conn_close(p->out);
	else
		dial(n, id);
	return 0;
}

void coral_net_remove_peer(struct coral_net *n, uint32_t id)
{
	struct peer *p = peer_of(n, id);
	if (p == NULL)
		return;
	p->known = false;
	p->st.known = false;
	evtimer_del(p->redial);
	if (p->out)
		conn_close(p->out);
	if (p->in)
		conn_close(p->in);
}

int coral_net_send(struct coral_net *n, uint32_t to, uint8_t type, const void *data, size_t len)
{
	struct peer *p = peer_of(n, to);
	if (p == NULL || type < CORAL_NET_APP)
		return p == NULL ? CORAL_ENOENT : CORAL_EINVAL;
	if (p->out == NULL || !p->out->established || p->out->closing) {
		p->st.dropped++;
		return CORAL_ENOTCONN;
	}
	struct evbuffer *out = bufferevent_get_output(p->out->bev);
	if (evbuffer_get_length(out) >= n->o.send_queue) {
		p->st.busy++;
		return CORAL_EBUSY;
	}
	int rc;
	bool try_z = n->o.compress_above && len > n->o.compress_above && len < (size_t)LZ4_MAX_INPUT_SIZE;
	if (try_z && p->z_skip > 0) {
		p->z_skip--;
		p->st.not_compressed++;
		try_z = false;
	}
	if (try_z) {
		size_t bound = (size_t)LZ4_compressBound((int)len);
		if (bound > n->zcap) {
			uint8_t *z = realloc(n->zbuf, bound);
			if (z == NULL)
				return CORAL_ENOMEM;
			n->zbuf = z;
			n->zcap = bound;
		}
		int zlen = LZ4_compress_default(data, (char *)n->zbuf, (int)len, (int)bound);
		if (zlen > 0 && (size_t)zlen + 4 < len) {
			uint32_t raw = htonl((uint32_t)len);
			rc = write_frame(p->out, type, F_LZ4, &raw, 4, n->zbuf, (size_t)zlen);
			if (rc == 0) {
				p->st.compressed++;
				p->st.msgs_out++;
				p->st.bytes_out += HDR + 4 + (size_t)zlen;
			}
			p->z_backoff = 0;
			return rc;
		}
		/* incompressible (random or already compressed bytes): lz4 spent a few
		 * microseconds per 8 KiB for nothing, and such payloads tend to come in runs */
		p->z_backoff = p->z_backoff ? (p->z_backoff * 2 > Z_SKIP_MAX ? Z_SKIP_MAX : p->z_backoff * 2) : 1;
		p->z_skip = p->z_backoff;
		p->st.not_compressed++;
	}
	rc = write_frame(p->out, type, 0, data, len, NULL, 0);
	if (rc == 0) {
		p->st.msgs_out++;
		p->st.bytes_out += HDR + len;
	}
	return rc;
}

void coral_net_set_incarnation(struct coral_net *n, uint64_t inc)
{
	n->o.incarnation = inc;
	for (uint32_t id = 1; id <= CORAL_NET_MAX_PEERS; id++) {
		struct peer *p = &n->peers[id];
		p->backoff_ms = 0;
		if (p->out)
			conn_close(p->out); /* redials with the new hello */
		else if (p->known && !evtimer_pending(p->redial, NULL))
			dial(n, id);
	}
}

void coral_net_fence_peer(struct coral_net *n, uint32_t id, uint64_t min_incarnation)
{
	struct peer *p = peer_of(n, id);
	if (p == NULL || min_incarnation <= p->min_incarnation)
		return;
	p->min_incarnation = min_incarnation;
	p->st.min_incarnation = min_incarnation;
	if (p->in && p->in->incarnation < min_incarnation) {
		struct conn *c = p->in;
		char why[160];
		snprintf(why, sizeof(why), "incarnation %llu of node %u was evicted; rejoin with a new one",
			 (unsigned long long)c->incarnation, id);
		send_ack(c, CORAL_EEVICTED, why);
		p->in = NULL;
		p->st.in_up = false;
		c->peer = 0;
		c->established = false;
		c->closing = true;      /* freed once the goodbye is written */
		bufferevent_disable(c->bev, EV_READ);
		c->next = n->pending;   /* keep it owned until then */
		n->pending = c;
	}
}

void coral_net_peer_stats(const struct coral_net *n, uint32_t id, struct coral_net_peer_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (id == 0 || id > CORAL_NET_MAX_PEERS)
		return;
	const struct peer *p = &n->peers[id];
	*st = p->st;
	st->known = p->known;
	if (p->out && p->out->bev)
		st->queued = evbuffer_get_length(bufferevent_get_output(p->out->bev));
}

int coral_net_opts_from_conf(struct coral_net_opts *o, struct coral_net_files *files,
			     const struct coral_conf *conf, const struct coral_node_conf *node,
			     const char *daemon, int port_offset, uint64_t incarnation, uint64_t seed,
			     char *err, size_t errsz)
{
	const struct coral_tls_conf *tls = &conf->tls;
	const struct coral_interconnect_conf *ic = &conf->interconnect;
	char *out[3] = {files->ca, files->cert, files->key};
	const char *pat[3] = {tls->ca_file, tls->cert_file, tls->key_file};
	for (int i = 0; i < 3 && tls->enabled; i++) {
		if (coral_conf_tls_path(pat[i], node->id, out[i], sizeof(files->ca)) != 0 ||
		    access(out[i], R_OK) != 0) {
			snprintf(err, errsz, "[tls] '%s' (for node %lld: '%s') is not a readable file", pat[i],
				 (long long)node->id, out[i]);
			return CORAL_ECONFIG;
		}
	}
	*o = (struct coral_net_opts){
		.cluster = conf->cluster.name, .daemon = daemon, .node_id = (uint32_t)node->id,
		.incarnation = incarnation, .listen_host = node->host,
		.listen_port = (int)(node->base_port + port_offset),
		.max_frame = (size_t)conf->cluster.max_frame, .send_queue = (size_t)ic->send_queue,
		.compress_above = (size_t)ic->compress_above,
		.reconnect_min_ms = (int)ic->reconnect_min_ms, .reconnect_max_ms = (int)ic->reconnect_max_ms,
		.ping_interval_ms = (int)ic->ping_interval_ms,
		.connect_timeout_ms = (int)ic->connect_timeout_ms, .seed = seed,
		.ca_file = tls->enabled ? files->ca : NULL,
		.cert_file = tls->enabled ? files->cert : NULL,
		.key_file = tls->enabled ? files->key : NULL,
	};
	return 0;
}

void coral_net_add_conf_peers(struct coral_net *net, const struct coral_conf *conf, uint32_t self,
			      int port_offset)
{
	for (int i = 0; i < conf->nnodes; i++) {
		const struct coral_node_conf *n = &conf->nodes[i];
		if ((uint32_t)n->id != self)
			coral_net_add_peer(net, (uint32_t)n->id, n->host, (int)(n->base_port + port_offset));
	}
}

/* The receiver: a standby node keeps copies of the primary's redo threads (repl.h). Nothing
 * is read from a connection but the hello until the primary has proved it holds the token
 * and named a cluster and thread this standby takes; the welcome then proves the standby
 * holds it too (the primary ships to nobody else). Connections without a hello are bounded
 * and closed after [interconnect] connect_timeout_ms. */
#include "history.h"
#include "repl.h"
#include "site.h"
#include "repl_msg.h"

#include "ship.h"
#include "thread_file.h"

#include "daemon.h"
#include "errors.h"
#include "frame.h"
#include "httpauth.h"
#include "log.h"
#include "net.h"
#include "redo.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <dirent.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RX_MAX_CONNS (2 * CORAL_MAX_NODES)

struct rconn;

/* One primary thread's copy. */
struct rx_thread {
	bool open;
	uint32_t thread;
	struct thread_file f;
	struct ship_rx rx;
	struct rconn *conn;
	uint64_t primary_durable;      /* as the last range said */
	uint64_t conn_seq;             /* moves with each welcomed connection */
	uint64_t told_scn;             /* the highest SCN an acknowledgement told its node */
	bool switch_ready;             /* a switchover: the node closed its thread ... */
	uint64_t switch_end;           /* ... which ends here */
	uint64_t wire_bytes, bytes, connects;
	char peer[64];
	char last_error[256];
};

struct rconn {
	struct receiver *r;
	struct bufferevent *bev;
	struct event *ev_hello;
	uint8_t nonce[REPL_NONCE];
	uint8_t hello_nonce[REPL_NONCE]; /* the primary's, from its hello: signed in a switchover */
	char cluster[256];               /* the primary's, from its hello */
	struct rx_thread *t;           /* set once welcomed */
	char peer[64];
	struct rconn *prev, *next;     /* every connection of the receiver */
};

struct receiver {
	struct coral_daemon *d;
	const struct coral_replication_conf *rc;
	char *token;
	SSL_CTX *ssl;
	struct evconnlistener *lis;
	char dir[CORAL_STR_MAX + 300]; /* SHARED/standby/PRIMARY */
	size_t max_frame;
	struct rx_thread threads[CORAL_MAX_NODES + 1];
	int nconns;
	struct rconn *conns;
	uint64_t bad_hellos, refused_conns;
	uint8_t *buf;                  /* a range's bytes, decompressed */
	size_t buf_cap;
	struct standby_feed feed;
	struct event *ev_tick;         /* idle threads are told the highest SCN (tell_idle) */
};

static void conn_close(struct rconn *c)
{
	if (c->t) {
		ship_rx_disconnected(&c->t->rx);
		c->t->conn = NULL;
	}
	if (c->ev_hello)
		event_free(c->ev_hello);
	bufferevent_free(c->bev);
	c->r->nconns--;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* Refuses the hello with the reason (the primary logs it), then closes once it has gone. */
static void on_refused_sent(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_close(arg);
}

static void refuse_signed(struct rconn *c, int code, const char *why, const uint8_t *mac)
{
	c->r->bad_hellos++;
	log_warn("replication connection from %s refused: %s", c->peer, why);
	Coral__ReplWelcome w = CORAL__REPL_WELCOME__INIT;
	w.code = code;
	w.error = (char *)why;
	w.site_epoch = atomic_load(&c->r->feed.took_over);
	if (mac)
		w.mac = (ProtobufCBinaryData){REPL_MAC, (uint8_t *)mac};
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_WELCOME;
	m.welcome = &w;
	repl_send(c->bev, &m, c->r->max_frame);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, on_refused_sent, NULL, c);
}

static void refuse(struct rconn *c, int code, const char *why) { refuse_signed(c, code, why, NULL); }

static void send_msg(struct rconn *c, Coral__ReplMsg *m) { repl_send(c->bev, m, c->r->max_frame); }

static void publish(struct receiver *r, struct rx_thread *t)
{
	pthread_mutex_lock(&r->feed.mu);
	r->feed.durable[t->thread] = t->rx.durable;
	pthread_mutex_unlock(&r->feed.mu);
}

static void send_ack(struct rconn *c)
{
	Coral__ReplAck a = CORAL__REPL_ACK__INIT;
	a.durable = c->t->rx.durable;
	a.scn = atomic_load(&c->r->feed.max_scn);
	c->t->told_scn = a.scn;
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_ACK;
	m.ack = &a;
	send_msg(c, &m);
}

/* Every 200 ms: a thread whose node ships nothing (idle) is acknowledged again when another
 * thread brought a higher SCN, so that its node's clock follows and its next mark lets the
 * apply pass that SCN (without it, a commit on one node waited for every other node to do
 * something). */
static void tell_idle(evutil_socket_t fd, short what, void *arg)
{
	struct receiver *r = arg;
	(void)fd, (void)what;
	uint64_t top = atomic_load(&r->feed.max_scn);
	for (uint32_t i = 1; i <= CORAL_MAX_NODES; i++) {
		struct rx_thread *t = &r->threads[i];
		if (t->open && t->conn && top > t->told_scn)
			send_ack(t->conn);
	}
}

/* The thread's copy, opened at its first hello: it holds what its files hold up to the last
 * whole record (a torn tail, from a crash of this node, is cut and asked again). */
static int thread_open(struct receiver *r, uint32_t id, char *err, size_t errsz)
{
	struct rx_thread *t = &r->threads[id];
	if (t->open)
		return 0;
	int rc = thread_file_open(&t->f, r->dir, id, (uint64_t)r->d->conf.cache.redo_segment, err, errsz);
	uint64_t end = 0, first = 0;
	char p[sizeof(t->f.dir) + 16];
	snprintf(p, sizeof(p), "%s/first_lsn", t->f.dir);
	FILE *f = rc == 0 ? fopen(p, "r") : NULL;
	if (f) {
		unsigned long long v;
		if (fscanf(f, "%llu", &v) == 1)
			first = v;
		fclose(f);
	}
	if (rc == 0)
		rc = thread_file_cut_at_end(&t->f, r->dir, first, &end, NULL, err, errsz);
	if (rc == 0 && end < first)
		end = first;
	if (rc != 0)
		return rc;
	ship_rx_init(&t->rx, end);
	t->thread = id;
	t->open = true;
	publish(r, t);
	log_info("the copy of the primary's thread %u holds %llu bytes (%s)", id, (unsigned long long)end, t->f.dir);
	return 0;
}

static void on_hello(struct rconn *c, const Coral__ReplHello *h)
{
	struct receiver *r = c->r;
	char why[300];
	if (h->version != REPL_VERSION) {
		snprintf(why, sizeof(why), "protocol version %u (this standby: %u)", h->version, REPL_VERSION);
		refuse(c, CORAL_EVERSION, why);
		return;
	}
	if (strcmp(h->cluster, r->rc->primary_cluster) != 0) {
		snprintf(why, sizeof(why), "cluster '%.64s' is not this standby's primary ('%s')", h->cluster,
			 r->rc->primary_cluster);
		refuse(c, CORAL_ECLUSTER, why);
		return;
	}
	if (h->thread == 0 || h->thread > CORAL_MAX_NODES) {
		snprintf(why, sizeof(why), "thread %u is out of range 1-%d", h->thread, CORAL_MAX_NODES);
		refuse(c, CORAL_EINVAL, why);
		return;
	}
	if (!repl_mac_ok(r->token, "primary", c->nonce, h->cluster, h->thread, &h->mac) || h->nonce.len != REPL_NONCE) {
		refuse(c, CORAL_EPERM, "the hello does not prove the token of [replication] token_file");
		return;
	}
	if (h->site_epoch > atomic_load(&r->feed.primary_epoch))
		atomic_store(&r->feed.primary_epoch, h->site_epoch);
	if (atomic_load(&r->feed.finished)) {
		/* said to a primary that proved the token, and proved back: an old primary fences
		 * itself on it, so nobody else may make it say so */
		uint64_t e = atomic_load(&r->feed.took_over);
		if (e)
			snprintf(why, sizeof(why), "this standby took over (a failover or a switchover, site epoch %llu): the "
				 "old primary takes no more commits", (unsigned long long)e);
		else
			snprintf(why, sizeof(why), "this standby has finished its apply (a failover under way): it takes no "
				 "more redo from this primary");
		uint8_t mac[REPL_MAC];
		repl_mac(r->token, "standby", h->nonce.data, h->cluster, h->thread, mac);
		refuse_signed(c, CORAL_EFENCED, why, mac);
		return;
	}
	char err[CORAL_ERRMSG_MAX];
	if (thread_open(r, h->thread, err, sizeof(err)) != 0) {
		log_error("the copy of thread %u cannot be opened: %s", h->thread, err);
		refuse(c, CORAL_EIO, "the standby cannot open its copy of the thread (see its log)");
		return;
	}
	struct rx_thread *t = &r->threads[h->thread];
	if (t->conn) {
		log_notice("thread %u: a new connection from %s replaces the one from %s", h->thread, c->peer,
			   t->conn->peer);
		conn_close(t->conn);
	}
	t->conn = c;
	c->t = t;
	memcpy(c->hello_nonce, h->nonce.data, REPL_NONCE);
	snprintf(c->cluster, sizeof(c->cluster), "%s", h->cluster);
	t->connects++;
	t->conn_seq++;
	t->switch_ready = false;
	pthread_mutex_lock(&r->feed.mu);
	for (size_t i = 0; i < h->n_threads; i++)
		if (h->threads[i] >= 1 && h->threads[i] <= CORAL_MAX_NODES)
			r->feed.known[h->threads[i]] = true;
	r->feed.known[h->thread] = true;
	pthread_mutex_unlock(&r->feed.mu);
	t->primary_durable = h->durable;
	snprintf(t->peer, sizeof(t->peer), "%s", c->peer);
	evtimer_del(c->ev_hello);
	uint8_t mac[REPL_MAC];
	repl_mac(r->token, "standby", h->nonce.data, h->cluster, h->thread, mac);
	Coral__ReplWelcome w = CORAL__REPL_WELCOME__INIT;
	w.mac = (ProtobufCBinaryData){REPL_MAC, mac};
	w.durable = t->rx.durable;
	w.received = t->rx.received;
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_WELCOME;
	m.welcome = &w;
	send_msg(c, &m);
	log_info("thread %u from %s: its copy has %llu durable, the primary %llu", h->thread, c->peer,
		 (unsigned long long)t->rx.durable, (unsigned long long)h->durable);
}

/* A range: appended where the copy ends, or asked again from there. Returns whether
 * something was written, or a CORAL_E* code (the connection is then closed). */
static int on_data(struct rconn *c, const Coral__ReplData *dm)
{
	struct receiver *r = c->r;
	struct rx_thread *t = c->t;
	int rc = repl_data_bytes(dm, r->buf, r->buf_cap);
	if (rc != 0) {
		snprintf(t->last_error, sizeof(t->last_error), "a range that does not decode (from %llu, %u bytes)",
			 (unsigned long long)dm->from, dm->raw_len);
		return rc;
	}
	t->wire_bytes += dm->bytes.len;
	if (dm->durable > t->primary_durable)
		t->primary_durable = dm->durable;
	uint64_t skip = 0;
	switch (ship_rx_range(&t->rx, dm->from, dm->raw_len, &skip)) {
	case SHIP_APPEND: {
		const char *what = "";
		int e = thread_file_write(&t->f, t->rx.received, r->buf + skip, dm->raw_len - skip, &what);
		if (e != 0) {
			char p[sizeof(t->f.dir) + 32];
			thread_file_seg_path(&t->f, t->f.err_seg, p, sizeof(p));
			snprintf(t->last_error, sizeof(t->last_error), "%s %s: %s", what, p, strerror(e));
			log_error("thread %u: %s; the primary sends it again", t->thread, t->last_error);
			return coral_err_from_errno(e);
		}
		t->bytes += dm->raw_len - skip;
		ship_rx_written(&t->rx, dm->from + dm->raw_len);
		return 1;
	}
	case SHIP_DUPLICATE:
		send_ack(c);
		return 0;
	case SHIP_GAP: {
		Coral__ReplResend q = CORAL__REPL_RESEND__INIT;
		q.from = t->rx.received;
		Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
		m.body_case = CORAL__REPL_MSG__BODY_RESEND;
		m.resend = &q;
		send_msg(c, &m);
		return 0;
	}
	case SHIP_GAP_ASKED:
		return 0;
	}
	return 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct rconn *c = arg;
	(void)bev;
	Coral__ReplMsg *m;
	int rc;
	bool wrote = false;
	while ((rc = repl_next(c->bev, c->r->max_frame, &m)) != 0) {
		if (rc < 0) {
			log_warn("replication connection from %s: %s: closed", c->peer, coral_strerror(rc));
			if (c->t == NULL)
				c->r->bad_hellos++;
			conn_close(c);
			return;
		}
		int e = 0;
		if (m->body_case == CORAL__REPL_MSG__BODY_HELLO && c->t == NULL) {
			on_hello(c, m->hello);
			coral__repl_msg__free_unpacked(m, NULL);
			if (c->t == NULL)
				return; /* refused: nothing more is read */
			continue;
		}
		if (m->body_case == CORAL__REPL_MSG__BODY_DATA && c->t != NULL) {
			e = on_data(c, m->data);
		} else if (m->body_case == CORAL__REPL_MSG__BODY_NEED_SEED && c->t != NULL) {
			snprintf(c->t->last_error, sizeof(c->t->last_error),
				 "the primary recycled this thread's redo from LSN %llu on: the copy needs seeding again",
				 (unsigned long long)m->need_seed->lsn);
			if (atomic_load(&c->r->feed.need_seed_thread) == 0) {
				log_error("thread %u: %s", c->t->thread, c->t->last_error);
				repl_history_add("needs seed", "thread %u: the primary recycled its redo from LSN %llu",
						 c->t->thread, (unsigned long long)m->need_seed->lsn);
			}
			atomic_store(&c->r->feed.need_seed_lsn, m->need_seed->lsn);
			atomic_store(&c->r->feed.need_seed_thread, c->t->thread);
		} else if (m->body_case == CORAL__REPL_MSG__BODY_SWITCHOVER_READY && c->t != NULL) {
			c->t->switch_ready = true;
			c->t->switch_end = m->switchover_ready->end;
		} else if (m->body_case == CORAL__REPL_MSG__BODY_MARK && c->t != NULL) {
			pthread_mutex_lock(&c->r->feed.mu);
			if (m->mark->scn > c->r->feed.mark_scn[c->t->thread]) {
				c->r->feed.mark_lsn[c->t->thread] = m->mark->lsn;
				c->r->feed.mark_scn[c->t->thread] = m->mark->scn;
			}
			pthread_mutex_unlock(&c->r->feed.mu);
		} else
			e = CORAL_EINVAL;
		coral__repl_msg__free_unpacked(m, NULL);
		if (e < 0) {
			if (e == CORAL_EINVAL)
				log_warn("replication connection from %s: a message out of turn: closed", c->peer);
			if (c->t == NULL)
				c->r->bad_hellos++;
			conn_close(c);
			return;
		}
		if (e > 0)
			wrote = true;
	}
	if (!wrote)
		return;
	/* one sync for every range of this batch, then the acknowledgement */
	struct rx_thread *t = c->t;
	int e = thread_file_sync(&t->f);
	if (e != 0) {
		char p[sizeof(t->f.dir) + 32];
		thread_file_seg_path(&t->f, t->f.err_seg, p, sizeof(p));
		snprintf(t->last_error, sizeof(t->last_error), "syncing %s: %s", p, strerror(e));
		log_error("thread %u: %s; nothing past %llu is acknowledged", t->thread, t->last_error,
			  (unsigned long long)t->rx.durable);
		conn_close(c);
		return;
	}
	ship_rx_synced(&t->rx, t->rx.received);
	publish(c->r, t);
	send_ack(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		struct rconn *c = arg;
		if (c->t)
			log_info("thread %u: the primary's connection from %s ended (the copy has %llu durable)",
				 c->t->thread, c->peer, (unsigned long long)c->t->rx.durable);
		conn_close(c);
	}
}

static void on_hello_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rconn *c = arg;
	(void)fd, (void)what;
	c->r->bad_hellos++;
	log_warn("replication connection from %s: no hello within [interconnect] connect_timeout_ms: closed", c->peer);
	conn_close(c);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct receiver *r = arg;
	(void)lis, (void)salen;
	if (r->nconns >= RX_MAX_CONNS) {
		/* full: the oldest connection that has not said hello goes (a primary's never
		 * does), else the new one is refused */
		struct rconn *old = NULL;
		for (struct rconn *c = r->conns; c; c = c->next)
			if (c->t == NULL)
				old = c; /* the list is newest first */
		r->refused_conns++;
		if (old == NULL) {
			log_warn("replication port: %d connections, every one a primary's: one more refused", r->nconns);
			close(fd);
			return;
		}
		log_warn("replication port: %d connections already: the oldest without a hello (%s) is closed", r->nconns,
			 old->peer);
		conn_close(old);
	}
	struct rconn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	int one = 1; /* an acknowledgement goes at once: a synchronous commit waits on it */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->r = r;
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
		port = ntohs(((struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
		port = ntohs(((struct sockaddr_in6 *)sa)->sin6_port);
	}
	snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	if (r->ssl) {
		SSL *ssl = SSL_new(r->ssl);
		c->bev = ssl ? bufferevent_openssl_socket_new(r->d->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
							      BEV_OPT_CLOSE_ON_FREE)
			     : NULL;
	} else {
		c->bev = bufferevent_socket_new(r->d->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	c->ev_hello = evtimer_new(r->d->base, on_hello_timeout, c);
	if (c->bev == NULL || c->ev_hello == NULL || repl_nonce(c->nonce) != 0) {
		if (c->bev)
			bufferevent_free(c->bev);
		else
			close(fd);
		if (c->ev_hello)
			event_free(c->ev_hello);
		free(c);
		return;
	}
	r->nconns++;
	c->next = r->conns;
	if (r->conns)
		r->conns->prev = c;
	r->conns = c;
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, r->max_frame + 64);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	int ms = (int)r->d->conf.interconnect.connect_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(c->ev_hello, &tv);
	Coral__ReplChallenge ch = CORAL__REPL_CHALLENGE__INIT;
	ch.version = REPL_VERSION;
	ch.cluster = r->d->conf.cluster.name;
	ch.nonce = (ProtobufCBinaryData){REPL_NONCE, c->nonce};
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_CHALLENGE;
	m.challenge = &ch;
	send_msg(c, &m);
}

struct receiver *receiver_new(struct coral_daemon *d, int *rc)
{
	const struct coral_replication_conf *rcf = &d->conf.replication;
	*rc = 0;
	/* a primary that names a primary cluster took over from it (a failover or a switchover):
	 * its receiver is there to tell that cluster's old primary so, with its epoch */
	bool standby = strcmp(rcf->role, "standby") == 0;
	if (!standby && rcf->primary_cluster[0] == '\0')
		return NULL;
	struct receiver *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		*rc = CORAL_ENOMEM;
		return NULL;
	}
	r->d = d;
	r->rc = rcf;
	pthread_mutex_init(&r->feed.mu, NULL);
	r->max_frame = (size_t)d->conf.cluster.max_frame;
	r->buf_cap = (size_t)rcf->chunk > (4u << 20) ? (size_t)rcf->chunk : (4u << 20);
	r->buf = malloc(r->buf_cap);
	snprintf(r->dir, sizeof(r->dir), "%s/standby/%s", d->conf.storage.shared_dir, rcf->primary_cluster);
	char err[CORAL_ERRMSG_MAX];
	if (r->buf == NULL) {
		*rc = CORAL_ENOMEM;
		goto fail;
	}
	if ((*rc = coral_token_load(rcf->token_file, "[replication] token_file", &r->token, err, sizeof(err))) != 0) {
		log_error("%s", err);
		goto fail;
	}
	if (d->conf.tls.enabled && (r->ssl = coral_tls_ctx_from_conf(&d->conf, d->node, err, sizeof(err))) == NULL) {
		log_error("replication over TLS: %s", err);
		*rc = CORAL_ECONFIG;
		goto fail;
	}
	if (coral_mkdir_p(r->dir, 0750) != 0) {
		log_error("cannot create %s: %s", r->dir, strerror(errno));
		*rc = CORAL_EIO;
		goto fail;
	}
	struct timeval every = {0, 200000};
	r->ev_tick = event_new(d->base, -1, EV_PERSIST, tell_idle, r);
	if (r->ev_tick == NULL || event_add(r->ev_tick, &every) != 0) {
		*rc = CORAL_ESYS;
		goto fail;
	}
	int port = (int)d->node->base_port + CORAL_PORT_REPLICAD;
	r->lis = coral_tcp_listen(d->base, d->node->host, port, on_accept, r, err, sizeof(err));
	if (r->lis == NULL) {
		log_error("the standby's receiver: %s", err);
		*rc = CORAL_ESYS;
		goto fail;
	}
	if (!standby) {
		atomic_store(&r->feed.finished, true);
		atomic_store(&r->feed.took_over, coral_site_epoch_read(d->conf.storage.shared_dir));
		log_info("a primary that took over from cluster %s: its old primary is refused on %s:%d (site epoch %llu)",
			 rcf->primary_cluster, d->node->host, port, (unsigned long long)atomic_load(&r->feed.took_over));
		return r;
	}
	log_info("standby of cluster %s: receiving its redo on %s:%d into %s", rcf->primary_cluster, d->node->host, port,
		 r->dir);
	return r;
fail:
	receiver_free(r);
	return NULL;
}

void receiver_free(struct receiver *r)
{
	if (r == NULL)
		return;
	while (r->conns)
		conn_close(r->conns);
	for (int i = 0; i <= CORAL_MAX_NODES; i++)
		if (r->threads[i].open)
			thread_file_close(&r->threads[i].f);
	if (r->ev_tick)
		event_free(r->ev_tick);
	if (r->lis)
		evconnlistener_free(r->lis);
	if (r->ssl)
		SSL_CTX_free(r->ssl);
	coral_token_free(r->token);
	free(r->buf);
	pthread_mutex_destroy(&r->feed.mu);
	free(r);
}

struct standby_feed *receiver_feed(struct receiver *r) { return r ? &r->feed : NULL; }

bool receiver_seed_thread(struct receiver *r, uint32_t id, uint64_t from)
{
	char err[CORAL_ERRMSG_MAX];
	if (id < 1 || id > CORAL_MAX_NODES || thread_open(r, id, err, sizeof(err)) != 0)
		return false;
	struct rx_thread *t = &r->threads[id];
	if (t->rx.received >= from)
		return true;
	if (t->rx.received > 0) {
		/* a copy that ends before the checkpoint (the primary recycled what it lacked:
		 * seeded again): what it holds is older than the seed's files, so it goes, and
		 * the copy starts at the seed's LSN */
		if (t->conn)
			conn_close(t->conn);
		thread_file_close(&t->f);
		t->open = false;
		DIR *d = opendir(t->f.dir);
		struct dirent *e;
		while (d && (e = readdir(d)) != NULL) {
			size_t n = strlen(e->d_name);
			if (n > 5 && strcmp(e->d_name + n - 5, ".redo") == 0) {
				char p[sizeof(t->f.dir) + 300];
				snprintf(p, sizeof(p), "%s/%s", t->f.dir, e->d_name);
				unlink(p);
			}
		}
		if (d)
			closedir(d);
		log_notice("the copy of thread %u ended at LSN %llu, before the seed's %llu: it starts anew there", id,
			   (unsigned long long)t->rx.received, (unsigned long long)from);
	}
	/* an empty copy: it starts at the seed's LSN (kept in the copy's directory, for the
	 * cut at a restart) */
	char p[sizeof(t->f.dir) + 16];
	snprintf(p, sizeof(p), "%s/first_lsn", t->f.dir);
	FILE *f = fopen(p, "w");
	if (f == NULL || fprintf(f, "%llu\n", (unsigned long long)from) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		if (f)
			fclose(f);
		return false;
	}
	fclose(f);
	if (t->conn)
		conn_close(t->conn);
	if (!t->open && thread_open(r, id, err, sizeof(err)) != 0)
		return false;
	ship_rx_init(&t->rx, from);
	publish(r, t);
	log_info("the copy of thread %u starts at LSN %llu (the seed's)", id, (unsigned long long)from);
	return true;
}

int receiver_switch_send(struct receiver *r, uint32_t id, uint32_t step, uint64_t epoch, const char *why)
{
	if (id < 1 || id > CORAL_MAX_NODES || r->threads[id].conn == NULL)
		return CORAL_ECONN;
	Coral__ReplSwitch w = CORAL__REPL_SWITCH__INIT;
	w.step = step;
	w.epoch = epoch;
	w.why = (char *)(why ? why : "");
	struct rconn *c = r->threads[id].conn;
	uint8_t mac[REPL_MAC];
	repl_switch_mac(r->token, c->hello_nonce, c->cluster, id, step, epoch, mac);
	w.mac = (ProtobufCBinaryData){REPL_MAC, mac};
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_SWITCHOVER;
	m.switchover = &w;
	send_msg(c, &m);
	return 0;
}

void receiver_switch_state(struct receiver *r, uint32_t id, uint64_t *conn, bool *ready, uint64_t *end,
			   uint64_t *durable)
{
	const struct rx_thread *t = &r->threads[id];
	*conn = t->conn ? t->conn_seq : 0;
	*ready = t->conn && t->switch_ready;
	*end = t->switch_end;
	*durable = t->rx.durable;
}

void receiver_switch_clear(struct receiver *r)
{
	for (int i = 0; i <= CORAL_MAX_NODES; i++)
		r->threads[i].switch_ready = false;
}

size_t receiver_threads(struct receiver *r, Coral__StandbyThread *out, size_t max, uint64_t *bad_hellos)
{
	if (r == NULL)
		return 0;
	*bad_hellos = r->bad_hellos + r->refused_conns;
	size_t n = 0;
	for (uint32_t i = 1; i <= CORAL_MAX_NODES && n < max; i++) {
		struct rx_thread *t = &r->threads[i];
		if (!t->open)
			continue;
		Coral__StandbyThread *o = &out[n++];
		coral__standby_thread__init(o);
		o->thread = i;
		o->connected = t->conn != NULL;
		o->peer = t->peer;
		o->durable = t->rx.durable;
		o->received = t->rx.received;
		o->lag_bytes = t->primary_durable > t->rx.durable ? t->primary_durable - t->rx.durable : 0;
		o->sent_bytes = t->bytes;
		o->wire_bytes = t->wire_bytes;
		o->gaps = t->rx.gaps;
		o->connects = t->connects;
		o->last_error = t->last_error;
	}
	return n;
}

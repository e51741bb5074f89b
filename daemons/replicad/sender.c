/* A sender: a primary node's redo thread shipped to one standby (repl.h, sender.h; the set
 * of them is primary.c). One connection, dialed again [replication] reconnect_ms after it
 * fails or breaks (up to 30 s apart while the standby keeps refusing), closed when the
 * standby stays silent through two resends. What is sent is read from the thread's files,
 * never from the SGA's ring: only durable bytes go, and a resend after a reconnect finds them
 * wherever the ring has moved since; marks of the thread follow for the standby's apply. A
 * refusal that says the standby took over, with its proof of the token, fences this node. */
#include "history.h"
#include "repl.h"
#include "repl_msg.h"
#include "sender.h"

#include "log_writer.h"
#include "ship.h"
#include "thread_file.h"

#include "bufcache.h"
#include "daemon.h"
#include "errors.h"
#include "frame.h"
#include "httpauth.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "redo.h"
#include "util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <lz4.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum sstate { S_IDLE, S_DIALING, S_HELLO, S_SHIPPING };

#define LAG_SAMPLES 64

struct sender {
	struct coral_daemon *d;
	struct ship_set *set;
	const struct coral_replication_conf *rc;
	struct coral_redo *redo;
	struct coral_cache *cache;     /* the node's SCN clock */
	uint32_t thread;
	char name[64];                 /* the standby's [cluster] name, from its challenge */
	char peer_label[CORAL_STR_MAX + 96];
	uint64_t mark_lsn, mark_scn;   /* the last mark sent */
	uint64_t marks;
	char host[CORAL_STR_MAX];
	int port;
	char peer[CORAL_STR_MAX + 16];
	char *token;
	SSL_CTX *ssl;
	size_t max_frame;
	struct thread_file rf;         /* reads the thread's durable bytes */
	struct ship_tx tx;
	enum sstate state;
	struct bufferevent *bev;
	uint8_t nonce[REPL_NONCE];     /* the standby signs it in its welcome */
	struct event *ev_retry, *ev_tick, *ev_hello;
	int backoff_ms;
	uint64_t progress_ns;          /* the last ack that moved, or the connection's start */
	uint64_t ack_ns;               /* the last ack at all (a standby that answers nothing is gone) */
	/* when durable passed each LSN, for the lag in ms */
	struct { uint64_t lsn, ns; } lag[LAG_SAMPLES];
	unsigned lag_head, lag_n;
	uint8_t *rbuf, *cbuf;
	size_t cbuf_cap;
	/* the slot */
	bool slot_dropped;
	uint64_t slot_drops;
	/* counters */
	uint64_t wire_bytes, connects, refusals;
	bool need_seed;
	bool answered;                 /* a welcome came (or a refusal) since the start */
	/* a switchover this standby asked for: the node's thread closed at switch_end, told
	 * once durable (switch_told) */
	bool switching, switch_told;
	uint64_t switch_end;
	char last_error[256];
};

static void dial(struct sender *s);

/* A connection given up after a last message: freed once that has gone, or on an error. */
static void on_sent_close(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void on_sent_error(struct bufferevent *bev, short what, void *arg)
{
	(void)what, (void)arg;
	bufferevent_free(bev);
}

/* The standby is told it needs seeding (it can say so, or seed itself again), and the
 * connection goes once that has been sent. */
static void tell_need_seed(struct sender *s, uint64_t from)
{
	Coral__ReplNeedSeed ns = CORAL__REPL_NEED_SEED__INIT;
	ns.lsn = from;
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_NEED_SEED;
	m.need_seed = &ns;
	repl_send(s->bev, &m, s->max_frame);
	struct bufferevent *bev = s->bev;
	s->bev = NULL;
	bufferevent_setcb(bev, NULL, on_sent_close, on_sent_error, NULL);
	bufferevent_disable(bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}
static void switch_reopen(struct sender *s, const char *why);

static void schedule_retry(struct sender *s)
{
	struct timeval tv = {s->backoff_ms / 1000, (s->backoff_ms % 1000) * 1000};
	evtimer_add(s->ev_retry, &tv);
}

/* Ends the connection; the next dial comes after the backoff (longer when refused). */
static void drop(struct sender *s, bool refused)
{
	if (s->bev) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	evtimer_del(s->ev_hello);
	bool was = s->state == S_SHIPPING;
	if (was)
		ship_tx_disconnected(&s->tx);
	s->state = S_IDLE;
	if (was)
		ship_set_changed(s->set);
	if (refused) {
		s->refusals++;
		s->backoff_ms = s->backoff_ms * 2 > 30000 ? 30000 : s->backoff_ms * 2;
	}
	schedule_retry(s);
}

/* Segments at or past what the standby has stay until it has them, unless that holds more
 * than slot_max_bytes: then the slot is dropped (once, logged) and the thread recycles as if
 * there were no such standby; it needs seeding again if what it lacks goes. */
bool sender_slot(struct sender *s, uint64_t durable, uint64_t *from)
{
	uint64_t behind = durable > s->tx.acked ? durable - s->tx.acked : 0;
	if (behind > (uint64_t)s->rc->slot_max_bytes) {
		if (!s->slot_dropped) {
			s->slot_dropped = true;
			s->slot_drops++;
			log_warn("the slot of standby %s on thread %u is dropped: it lacks %llu bytes of redo, more than "
				 "[replication] slot_max_bytes (%lld); the thread's segments are recycled without it (the "
				 "standby may need seeding again)", s->peer, s->thread, (unsigned long long)behind,
				 (long long)s->rc->slot_max_bytes);
			repl_history_add("slot dropped", "standby %s%s%s, thread %u: it lacked %llu bytes, more than "
					 "slot_max_bytes (%lld)", s->name, s->name[0] ? "@" : "", s->peer, s->thread,
					 (unsigned long long)behind, (long long)s->rc->slot_max_bytes);
		}
		return false;
	}
	if (s->slot_dropped)
		log_notice("the slot of standby %s on thread %u holds again (it lacks %llu bytes)", s->peer, s->thread,
			   (unsigned long long)behind);
	s->slot_dropped = false;
	*from = s->tx.acked;
	return true;
}

static void note_durable(struct sender *s, uint64_t durable, uint64_t now)
{
	unsigned last = (s->lag_head + LAG_SAMPLES - 1) % LAG_SAMPLES;
	if (s->lag_n > 0 && s->lag[last].lsn >= durable)
		return;
	/* at most one sample per 10 ms: the lag is told in ms, the ring spans 640 ms at least */
	if (s->lag_n > 0 && now - s->lag[last].ns < 10000000ull) {
		s->lag[last].lsn = durable;
		return;
	}
	s->lag[s->lag_head].lsn = durable;
	s->lag[s->lag_head].ns = now;
	s->lag_head = (s->lag_head + 1) % LAG_SAMPLES;
	if (s->lag_n < LAG_SAMPLES)
		s->lag_n++;
}

/* How long the oldest byte the standby lacks has been durable here. */
static uint64_t lag_ms(const struct sender *s, uint64_t now)
{
	if (s->tx.acked >= s->tx.durable)
		return 0;
	uint64_t since = 0;
	for (unsigned i = 0; i < s->lag_n; i++) {
		unsigned k = (s->lag_head + LAG_SAMPLES - s->lag_n + i) % LAG_SAMPLES;
		if (s->lag[k].lsn > s->tx.acked) {
			since = s->lag[k].ns;
			break;
		}
	}
	if (since == 0 && s->lag_n > 0)
		since = s->lag[(s->lag_head + LAG_SAMPLES - s->lag_n) % LAG_SAMPLES].ns;
	return since && now > since ? (now - since) / 1000000 : 0;
}

/* A mark of the thread for the standby's apply (coral_redo_mark), once what it covers is
 * durable here: an idle thread does not hold the standby's horizon back. */
static void send_mark(struct sender *s)
{
	if (s->state != S_SHIPPING || s->cache == NULL)
		return;
	uint64_t lsn, scn;
	coral_redo_mark(s->redo, &s->cache->scn, &lsn, &scn);
	if (lsn > atomic_load(&s->redo->durable) || (lsn == s->mark_lsn && scn == s->mark_scn))
		return; /* not durable yet: the next tick takes another */
	Coral__ReplMark mk = CORAL__REPL_MARK__INIT;
	mk.lsn = lsn;
	mk.scn = scn;
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_MARK;
	m.mark = &mk;
	if (repl_send(s->bev, &m, s->max_frame) == 0) {
		s->mark_lsn = lsn;
		s->mark_scn = scn;
		s->marks++;
	}
}

/* Sends what the window allows of what is durable. */
static void pump(struct sender *s)
{
	uint64_t now = coral_now_mono_ns();
	uint64_t durable = atomic_load(&s->redo->durable);
	ship_tx_durable(&s->tx, durable);
	note_durable(s, durable, now);
	if (s->state != S_SHIPPING)
		return;
	if (s->switching && !s->switch_told && durable >= s->switch_end) {
		/* everything before the close is durable here: the standby takes over once it has
		 * it too (what follows, a rollback's records, is never applied there) */
		Coral__ReplSwitchReady r = CORAL__REPL_SWITCH_READY__INIT;
		r.end = s->switch_end;
		Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
		m.body_case = CORAL__REPL_MSG__BODY_SWITCHOVER_READY;
		m.switchover_ready = &r;
		repl_send(s->bev, &m, s->max_frame);
		s->switch_told = true;
	}
	uint64_t from, to;
	while (ship_tx_next(&s->tx, &from, &to)) {
		size_t n = (size_t)(to - from);
		int e = thread_file_read(&s->rf, from, s->rbuf, n);
		if (e != 0) {
			char p[sizeof(s->rf.dir) + 32];
			thread_file_seg_path(&s->rf, s->rf.err_seg, p, sizeof(p));
			if (e == ENOENT) {
				if (!s->need_seed)
					repl_history_add("needs seed", "standby %s lacks thread %u's redo from LSN %llu, "
							 "recycled here: seed it again", s->name[0] ? s->name : s->peer,
							 s->thread, (unsigned long long)from);
				s->need_seed = true;
				snprintf(s->last_error, sizeof(s->last_error),
					 "the standby needs seeding: thread %u's redo at LSN %llu is recycled (%s)", s->thread,
					 (unsigned long long)from, p);
			} else {
				snprintf(s->last_error, sizeof(s->last_error), "reading %s: %s", p, strerror(e));
			}
			log_error("shipping to the standby %s stops: %s", s->peer, s->last_error);
			if (e == ENOENT)
				tell_need_seed(s, from);
			drop(s, true);
			return;
		}
		s->need_seed = false;
		Coral__ReplData dm = CORAL__REPL_DATA__INIT;
		dm.from = from;
		dm.raw_len = (uint32_t)n;
		dm.durable = durable;
		size_t c = repl_compress(s->rbuf, n, s->cbuf, s->cbuf_cap);
		dm.lz4 = c > 0;
		dm.bytes.data = c > 0 ? s->cbuf : s->rbuf;
		dm.bytes.len = c > 0 ? c : n;
		Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
		m.body_case = CORAL__REPL_MSG__BODY_DATA;
		m.data = &dm;
		if (repl_send(s->bev, &m, s->max_frame) != 0) {
			snprintf(s->last_error, sizeof(s->last_error), "a range of %zu bytes does not fit in a frame", n);
			log_error("shipping to the standby %s stops: %s", s->peer, s->last_error);
			drop(s, true);
			return;
		}
		s->wire_bytes += dm.bytes.len;
		ship_tx_sent(&s->tx, to);
	}
}

static void on_challenge(struct sender *s, const Coral__ReplChallenge *c)
{
	if (c->version != REPL_VERSION || c->nonce.len != REPL_NONCE) {
		snprintf(s->last_error, sizeof(s->last_error), "the standby speaks protocol version %u (this node: %u)",
			 c->version, REPL_VERSION);
		log_error("standby %s: %s", s->peer, s->last_error);
		drop(s, true);
		return;
	}
	coral_strlcpy(s->name, c->cluster ? c->cluster : "", sizeof(s->name));
	uint8_t mac[REPL_MAC];
	repl_mac(s->token, "primary", c->nonce.data, s->d->conf.cluster.name, s->thread, mac);
	if (repl_nonce(s->nonce) != 0) {
		drop(s, false);
		return;
	}
	Coral__ReplHello h = CORAL__REPL_HELLO__INIT;
	h.version = REPL_VERSION;
	h.cluster = s->d->conf.cluster.name;
	h.thread = s->thread;
	h.mac = (ProtobufCBinaryData){REPL_MAC, mac};
	h.nonce = (ProtobufCBinaryData){REPL_NONCE, s->nonce};
	h.durable = atomic_load(&s->redo->durable);
	uint32_t ids[CORAL_MAX_NODES];
	for (int i = 0; i < s->d->conf.nnodes; i++)
		ids[i] = (uint32_t)s->d->conf.nodes[i].id;
	h.threads = ids;
	h.n_threads = (size_t)s->d->conf.nnodes;
	h.site_epoch = ship_set_epoch(s->set);
	Coral__ReplMsg m = CORAL__REPL_MSG__INIT;
	m.body_case = CORAL__REPL_MSG__BODY_HELLO;
	m.hello = &h;
	repl_send(s->bev, &m, s->max_frame);
	s->state = S_HELLO;
}

static void on_welcome(struct sender *s, const Coral__ReplWelcome *w)
{
	s->answered = true;
	if (w->code == CORAL_EFENCED && w->site_epoch > ship_set_epoch(s->set) &&
	    repl_mac_ok(s->token, "standby", s->nonce, s->d->conf.cluster.name, s->thread, &w->mac)) {
		snprintf(s->last_error, sizeof(s->last_error), "standby %s took over at site epoch %llu: %s",
			 s->name[0] ? s->name : s->peer, (unsigned long long)w->site_epoch, w->error);
		ship_set_fence(s->set, w->site_epoch, s->last_error);
		drop(s, true);
		return;
	}
	if (w->code != 0) {
		snprintf(s->last_error, sizeof(s->last_error), "the standby refused thread %u: %s", s->thread,
			 w->error);
		log_error("standby %s: %s", s->peer, s->last_error);
		drop(s, true);
		return;
	}
	if (!repl_mac_ok(s->token, "standby", s->nonce, s->d->conf.cluster.name, s->thread, &w->mac)) {
		snprintf(s->last_error, sizeof(s->last_error),
			 "the standby did not prove it holds [replication] token_file: nothing is shipped to it");
		log_error("standby %s: %s", s->peer, s->last_error);
		drop(s, true);
		return;
	}
	ship_tx_durable(&s->tx, atomic_load(&s->redo->durable));
	int rc = ship_tx_connected(&s->tx, w->durable, w->received);
	if (rc != 0) {
		snprintf(s->last_error, sizeof(s->last_error),
			 "its copy of thread %u (durable %llu, written %llu) %s (this thread is durable up to %llu): "
			 "it is not a copy of this history and is not written over; seed the standby again",
			 s->thread, (unsigned long long)w->durable, (unsigned long long)w->received,
			 rc == CORAL_EDIVERGED ? "goes past this one's" : "is inconsistent",
			 (unsigned long long)s->tx.durable);
		log_error("standby %s: %s", s->peer, s->last_error);
		drop(s, true);
		return;
	}
	evtimer_del(s->ev_hello);
	if (s->switching)
		switch_reopen(s, "the standby answered anew without having taken over");
	s->state = S_SHIPPING;
	s->connects++;
	s->backoff_ms = (int)s->rc->reconnect_ms;
	s->progress_ns = s->ack_ns = coral_now_mono_ns();
	if (!s->need_seed) /* said until a range goes again (pump) */
		s->last_error[0] = '\0';
	s->mark_lsn = s->mark_scn = 0;
	log_info("shipping thread %u to the standby %s from LSN %llu (it has %llu durable; this node %llu)", s->thread,
		 s->peer, (unsigned long long)w->received, (unsigned long long)w->durable,
		 (unsigned long long)s->tx.durable);
	ship_set_changed(s->set);
	pump(s);
}

/* The thread opened again: the switchover did not happen (logged, in the history). */
static void switch_reopen(struct sender *s, const char *why)
{
	coral_redo_close(s->redo, false);
	s->switching = false;
	log_notice("the switchover to standby %s is abandoned (%s): the thread takes changes and commits again",
		   s->name[0] ? s->name : s->peer, why);
	repl_history_add("switchover", "abandoned (%s): the thread is open again", why);
	ship_set_changed(s->set);
}

/* A switchover, asked by the standby over this connection (its hello proved the token both
 * ways): close the thread and say where it ends; fence once it took over; or open again. */
static void on_switch(struct sender *s, const Coral__ReplSwitch *w)
{
	const char *who = s->name[0] ? s->name : s->peer;
	if (!repl_switch_mac_ok(s->token, s->nonce, s->d->conf.cluster.name, s->thread, w->step, w->epoch, &w->mac)) {
		/* (not the standby that proved the token at the hello: nothing is closed or fenced) */
		log_error("standby %s: a switchover step %u without the standby's proof of the token: ignored", who, w->step);
		return;
	}
	if (w->step == 1) {
		s->switch_end = coral_redo_close(s->redo, true);
		s->switching = true;
		s->switch_told = false;
		log_notice("standby %s asks for a switchover: the thread takes no more changes or commits; it ends at "
			   "LSN %llu", who, (unsigned long long)s->switch_end);
		repl_history_add("switchover", "asked by standby %s: the thread closed at LSN %llu", who,
				 (unsigned long long)s->switch_end);
		ship_set_changed(s->set);
		pump(s);
	} else if (w->step == 2 && w->epoch > ship_set_epoch(s->set)) {
		char why[300];
		snprintf(why, sizeof(why), "a switchover: standby %s took over at site epoch %llu with this cluster's "
			 "thread %u to LSN %llu", who, (unsigned long long)w->epoch, s->thread,
			 (unsigned long long)s->switch_end);
		s->switching = false;
		ship_set_fence(s->set, w->epoch, why);
	} else if (w->step == 3 && s->switching) {
		char why[300];
		snprintf(why, sizeof(why), "by the standby: %.200s", w->why ? w->why : "");
		switch_reopen(s, why);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct sender *s = arg;
	(void)bev;
	Coral__ReplMsg *m;
	int rc;
	while (s->bev && (rc = repl_next(s->bev, s->max_frame, &m)) != 0) {
		if (rc < 0) {
			snprintf(s->last_error, sizeof(s->last_error), "an undecodable frame from the standby: %s",
				 coral_strerror(rc));
			log_error("standby %s: %s", s->peer, s->last_error);
			drop(s, true);
			return;
		}
		bool bad = false;
		int e = 0;
		switch (m->body_case) {
		case CORAL__REPL_MSG__BODY_CHALLENGE:
			if (s->state != S_DIALING)
				bad = true;
			else
				on_challenge(s, m->challenge);
			break;
		case CORAL__REPL_MSG__BODY_WELCOME:
			if (s->state != S_HELLO)
				bad = true;
			else
				on_welcome(s, m->welcome);
			break;
		case CORAL__REPL_MSG__BODY_ACK:
			if (s->state != S_SHIPPING) {
				bad = true;
				break;
			}
			s->ack_ns = coral_now_mono_ns();
			if (m->ack->durable > s->tx.acked)
				s->progress_ns = s->ack_ns;
			if ((e = ship_tx_ack(&s->tx, m->ack->durable)) == 0) {
				ship_set_changed(s->set);
				pump(s);
				/* the standby has another thread this far: this node's clock follows, so
				 * that its next mark lets the standby apply up to there */
				if (s->cache && m->ack->scn > atomic_load(&s->cache->scn)) {
					coral_scn_observe(s->cache, m->ack->scn);
					send_mark(s);
				}
			}
			break;
		case CORAL__REPL_MSG__BODY_RESEND:
			if (s->state != S_SHIPPING) {
				bad = true;
				break;
			}
			if ((e = ship_tx_resend(&s->tx, m->resend->from)) == 0)
				pump(s);
			break;
		case CORAL__REPL_MSG__BODY_SWITCHOVER:
			if (s->state != S_SHIPPING)
				bad = true;
			else
				on_switch(s, m->switchover);
			break;
		default:
			bad = true;
		}
		coral__repl_msg__free_unpacked(m, NULL);
		if (bad || e != 0) {
			snprintf(s->last_error, sizeof(s->last_error), "the standby sent %s",
				 bad ? "a message out of turn" : "an acknowledgement or resend of bytes never sent");
			log_error("standby %s: %s", s->peer, s->last_error);
			drop(s, true);
			return;
		}
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct sender *s = arg;
	if (what & BEV_EVENT_CONNECTED) {
		/* acknowledgements and small ranges go at once: a synchronous commit waits on them */
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return; /* the standby speaks first */
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		int e = EVUTIL_SOCKET_ERROR();
		if (s->state == S_SHIPPING)
			log_warn("the connection to the standby %s broke (thread %u acknowledged up to %llu)", s->peer,
				 s->thread, (unsigned long long)s->tx.acked);
		snprintf(s->last_error, sizeof(s->last_error), "%s",
			 (what & BEV_EVENT_EOF) ? "the standby closed the connection"
						: (e ? evutil_socket_error_to_string(e) : "connection failed"));
		drop(s, false);
	}
}

static void on_hello_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct sender *s = arg;
	(void)fd, (void)what;
	snprintf(s->last_error, sizeof(s->last_error), "no answer to the hello within [interconnect] connect_timeout_ms");
	drop(s, false);
}

static void dial(struct sender *s)
{
	struct addrinfo *ai;
	char err[256];
	if (coral_tcp_resolve(s->host, s->port, 0, &ai, err, sizeof(err)) != 0) {
		snprintf(s->last_error, sizeof(s->last_error), "%s", err);
		schedule_retry(s);
		return;
	}
	if (s->ssl) {
		SSL *ssl = SSL_new(s->ssl);
		s->bev = ssl ? bufferevent_openssl_socket_new(s->d->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
							      BEV_OPT_CLOSE_ON_FREE)
			     : NULL;
	} else {
		s->bev = bufferevent_socket_new(s->d->base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (s->bev == NULL) {
		freeaddrinfo(ai);
		schedule_retry(s);
		return;
	}
	bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	int rc = bufferevent_socket_connect(s->bev, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	s->state = S_DIALING;
	if (rc != 0) {
		drop(s, false);
		return;
	}
	int ms = (int)s->d->conf.interconnect.connect_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(s->ev_hello, &tv);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	dial(arg);
}

/* Every 100 ms: what the log writer made durable without a kick reaching us, the lag's
 * samples, and the stall: bytes outstanding and nothing acknowledged for stall_ms are sent
 * again from what the standby has (lost on the way, or its ask for them lost). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sender *s = arg;
	(void)fd, (void)what;
	uint64_t now = coral_now_mono_ns();
	if (s->state == S_SHIPPING && s->tx.high > s->tx.acked &&
	    now - s->ack_ns > 3 * (uint64_t)s->rc->stall_ms * 1000000ull) {
		/* connected, and silent through two resends: it is gone (a stopped process, a dead
		 * host behind a live route); the sync standbys' count must say so */
		snprintf(s->last_error, sizeof(s->last_error), "no acknowledgement for %lld ms with redo outstanding",
			 3 * (long long)s->rc->stall_ms);
		log_warn("standby %s: %s: the connection is closed", s->peer, s->last_error);
		drop(s, false);
		return;
	}
	if (s->state == S_SHIPPING && s->tx.high > s->tx.acked &&
	    now - s->progress_ns > (uint64_t)s->rc->stall_ms * 1000000ull) {
		log_warn("thread %u: nothing acknowledged by the standby %s for %lld ms: sending again from %llu",
			 s->thread, s->peer, (long long)s->rc->stall_ms, (unsigned long long)s->tx.acked);
		ship_tx_stalled(&s->tx);
		s->progress_ns = now;
	}
	ship_set_changed(s->set);
	pump(s);
	send_mark(s);
}

void sender_pump(struct sender *s) { pump(s); }

bool sender_connected(const struct sender *s) { return s->state == S_SHIPPING; }

bool sender_answered(const struct sender *s) { return s->answered; }

uint64_t sender_acked(const struct sender *s) { return s->tx.acked; }

const char *sender_name(const struct sender *s) { return s->name; }

uint64_t sender_lag_ms(struct sender *s, uint64_t now)
{
	uint64_t durable = atomic_load(&s->redo->durable);
	ship_tx_durable(&s->tx, durable);
	note_durable(s, durable, now);
	return lag_ms(s, now);
}

struct sender *sender_new(struct coral_daemon *d, struct ship_set *set, struct coral_redo *redo, const char *host,
			  int port, int *rc)
{
	const struct coral_replication_conf *rcf = &d->conf.replication;
	*rc = 0;
	struct sender *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*rc = CORAL_ENOMEM;
		return NULL;
	}
	s->d = d;
	s->set = set;
	s->rc = rcf;
	s->redo = redo;
	s->cache = coral_cache_sga(&d->sga);
	s->thread = (uint32_t)d->node->id;
	s->max_frame = (size_t)d->conf.cluster.max_frame;
	s->backoff_ms = (int)rcf->reconnect_ms;
	coral_strlcpy(s->host, host, sizeof(s->host));
	s->port = port;
	snprintf(s->peer, sizeof(s->peer), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	char err[CORAL_ERRMSG_MAX];
	size_t chunk = (size_t)rcf->chunk;
	if (chunk + 256 > s->max_frame) {
		log_error("[replication] chunk (%zu) does not fit in [cluster] max_frame (%zu)", chunk, s->max_frame);
		*rc = CORAL_ECONFIG;
		goto fail;
	}
	if ((*rc = coral_token_load(rcf->token_file, "[replication] token_file", &s->token, err, sizeof(err))) != 0) {
		log_error("%s", err);
		goto fail;
	}
	if (d->conf.tls.enabled && (s->ssl = coral_tls_ctx_from_conf(&d->conf, d->node, err, sizeof(err))) == NULL) {
		log_error("replication over TLS: %s", err);
		*rc = CORAL_ECONFIG;
		goto fail;
	}
	if ((*rc = thread_file_open(&s->rf, d->conf.storage.shared_dir, s->thread, (uint64_t)d->conf.cache.redo_segment,
				    err, sizeof(err))) != 0) {
		log_error("%s", err);
		goto fail;
	}
	ship_tx_init(&s->tx, (uint64_t)rcf->window, chunk);
	s->rbuf = malloc(chunk);
	s->cbuf_cap = (size_t)LZ4_compressBound((int)chunk);
	s->cbuf = malloc(s->cbuf_cap);
	s->ev_retry = evtimer_new(d->base, on_retry, s);
	s->ev_hello = evtimer_new(d->base, on_hello_timeout, s);
	s->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, s);
	if (!s->rbuf || !s->cbuf || !s->ev_retry || !s->ev_hello || !s->ev_tick) {
		*rc = CORAL_ENOMEM;
		goto fail;
	}
	struct timeval tv = {0, 100000};
	evtimer_add(s->ev_tick, &tv);
	log_info("thread %u ships to the standby %s (window %lld bytes, slot at most %lld)", s->thread, s->peer,
		 (long long)rcf->window, (long long)rcf->slot_max_bytes);
	dial(s);
	return s;
fail:
	sender_free(s);
	return NULL;
}

void sender_free(struct sender *s)
{
	if (s == NULL)
		return;
	if (s->bev)
		bufferevent_free(s->bev);
	if (s->ev_retry)
		event_free(s->ev_retry);
	if (s->ev_hello)
		event_free(s->ev_hello);
	if (s->ev_tick)
		event_free(s->ev_tick);
	if (s->ssl)
		SSL_CTX_free(s->ssl);
	thread_file_close(&s->rf);
	coral_token_free(s->token);
	free(s->rbuf);
	free(s->cbuf);
	free(s);
}

void sender_status(struct sender *s, Coral__StandbyThread *t)
{
	uint64_t now = coral_now_mono_ns();
	uint64_t durable = atomic_load(&s->redo->durable);
	ship_tx_durable(&s->tx, durable);
	note_durable(s, durable, now);
	coral__standby_thread__init(t);
	t->thread = s->thread;
	t->connected = s->state == S_SHIPPING;
	snprintf(s->peer_label, sizeof(s->peer_label), "%s%s%s", s->name, s->name[0] ? "@" : "", s->peer);
	t->peer = s->peer_label;
	t->durable = durable;
	t->sent = s->tx.high;
	t->acked = s->tx.acked;
	t->lag_bytes = durable > s->tx.acked ? durable - s->tx.acked : 0;
	t->lag_ms = lag_ms(s, now);
	t->sent_bytes = s->tx.sent_bytes;
	t->resent_bytes = s->tx.resent_bytes;
	t->wire_bytes = s->wire_bytes;
	t->gaps = s->tx.gaps;
	t->connects = s->connects;
	t->refusals = s->refusals;
	t->slot_bytes = s->slot_dropped ? 0 : t->lag_bytes;
	t->slot_dropped = s->slot_dropped;
	t->slot_drops = s->slot_drops;
	t->last_error = s->last_error;
	t->needs_seed = s->need_seed;
}

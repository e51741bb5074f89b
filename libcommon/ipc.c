/* Unix-socket server and async client (see ipc.h). */
#include "ipc.h"
#include "errors.h"
#include "ctl.pb-c.h"
#include "frame.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct coral_ipc_conn {
	struct coral_ipc_server *srv;
	struct bufferevent *bev;
	struct coral_ipc_peer peer;
	bool paused;       /* not read until its output drains */
	bool closing;
	bool in_cb;
	uint64_t id;       /* never reused: answers sent later find the client by it */
	uint64_t active_ns; /* when it last sent a frame or was sent one */
	bool keep;          /* never closed for being idle (coral_ipc_conn_keep) */
	uint32_t waiting;   /* requests to be answered later (coral_ipc_conn_waiting): not idle */
	uint64_t tag;       /* the owner's */
	SSL *ssl;           /* a TLS client's session (freed with bev) */
	struct coral_ipc_conn *prev, *next;
};

struct coral_ipc_server {
	struct event_base *base;
	struct evconnlistener *lis;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	bool tcp;
	size_t max_frame;
	int max_clients;
	size_t out_queue;
	int64_t admin_uid, admin_gid;
	int64_t idle_ms;         /* clients idle longer are closed (0: never) */
	SSL_CTX *ssl_ctx;        /* TLS clients (TCP only) */
	char limit[128];         /* what caps the clients, for a refused one */
	struct event *ev_idle;
	coral_ipc_frame_fn on_frame;
	void *arg;
	struct coral_ipc_counters ctr;
	int nconns;
	uint64_t next_id;
	struct coral_ipc_conn *conns;
};

bool coral_ipc_is_admin(uid_t uid, gid_t gid, int64_t admin_uid, int64_t admin_gid)
{
	if (uid == 0 || uid == geteuid())
		return true;
	if (admin_uid >= 0 && (int64_t)uid == admin_uid)
		return true;
	return admin_gid >= 0 && (int64_t)gid == admin_gid;
}

static void coral__count(_Atomic uint64_t *c)
{
	if (c)
		atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void coral__conn_free(struct coral_ipc_conn *c)
{
	struct coral_ipc_server *s = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	if (s->ctr.clients)
		atomic_store(s->ctr.clients, (uint32_t)s->nconns);
	bufferevent_free(c->bev);
	free(c);
}

struct ssl_st *coral_ipc_conn_ssl(const struct coral_ipc_conn *conn) { return conn->ssl; }

void coral_ipc_conn_set_tag(struct coral_ipc_conn *c, uint64_t tag) { c->tag = tag; }
uint64_t coral_ipc_conn_tag(const struct coral_ipc_conn *c) { return c->tag; }

void coral_ipc_conn_refuse(struct coral_ipc_conn *c, const char *reason)
{
	if (c->closing)
		return;
	log_warn("closing client pid %d uid %d: %s", (int)c->peer.pid, (int)c->peer.uid, reason);
	coral__count(c->srv->ctr.refused);
	c->closing = true;
	if (!c->in_cb)
		coral__conn_free(c);
}

static void coral__conn_read(struct bufferevent *bev, void *arg)
{
	struct coral_ipc_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	c->in_cb = true;
	while (!c->closing && !c->paused) {
		const uint8_t *data;
		uint32_t len;
		int rc = coral_frame_next(in, c->srv->max_frame, &data, &len);
		if (rc == 0)
			break;
		if (rc < 0) {
			char why[128];
			snprintf(why, sizeof(why), "bad frame: %s", coral_strerror(rc));
			coral_ipc_conn_refuse(c, why);
			break;
		}
		coral__count(c->srv->ctr.frames);
		c->active_ns = coral_now_mono_ns();
		c->srv->on_frame(c->srv->arg, c, data, len);
		coral_frame_consume(in, len);
	}
	c->in_cb = false;
	if (c->closing)
		coral__conn_free(c);
}

static void coral__conn_write(struct bufferevent *bev, void *arg)
{
	struct coral_ipc_conn *c = arg;
	/* Called when the output has drained (write low-watermark 0): read again. */
	if (c->paused) {
		c->paused = false;
		bufferevent_enable(bev, EV_READ);
		coral__conn_read(bev, c);
	}
}

static void coral__conn_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct coral_ipc_conn *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (what & BEV_EVENT_ERROR)
			log_debug("client pid %d: %s", (int)c->peer.pid, strerror(errno));
		coral__conn_free(c);
	}
}

/* A client refused at the door is told why (a response with no header, which a client
 * takes as the answer to whatever it asks first) before the connection closes. */
static void coral__tell_and_close(int fd, int code, const char *why)
{
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.code = code;
	resp.error = (char *)why;
	uint8_t *buf;
	size_t len;
	if (coral_frame_encode(&resp.base, 1 << 16, &buf, &len) == 0) {
		ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)n; /* a full buffer: the client hears only the close */
		free(buf);
	}
	close(fd);
}

/* Closes clients idle past the bound: a client that connects and says nothing does not hold
 * a slot for long. */
static void coral__idle_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral_ipc_server *s = arg;
	if (s->idle_ms <= 0)
		return;
	uint64_t now = coral_now_mono_ns(), bound = (uint64_t)s->idle_ms * 1000000ull;
	for (struct coral_ipc_conn *c = s->conns, *next; c; c = next) {
		next = c->next;
		bool busy = evbuffer_get_length(bufferevent_get_output(c->bev)) > 0;
		if (!busy && !c->keep && c->waiting == 0 && now - c->active_ns > bound) {
			log_info("closing client pid %d uid %d: idle for %lld ms", (int)c->peer.pid, (int)c->peer.uid,
				 (long long)s->idle_ms);
			coral__count(s->ctr.idle_closed);
			coral__conn_free(c);
		}
	}
}

static void coral__accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
			  int salen, void *arg)
{
	(void)lis;
	(void)sa;
	(void)salen;
	struct coral_ipc_server *s = arg;
	struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
	socklen_t cl = sizeof(cred);
	if (s->tcp) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
		log_warn("refusing a client: cannot read its credentials: %s", strerror(errno));
		coral__count(s->ctr.refused);
		close(fd);
		return;
	}
	bool admin = !s->tcp && coral_ipc_is_admin(cred.uid, cred.gid, s->admin_uid, s->admin_gid);
	/* the last slot is kept for an admin (coralctl), so clients of other users cannot lock
	 * the operator out; idle ones are closed by the idle timer */
	int cap = admin || s->tcp || s->max_clients < 2 ? s->max_clients : s->max_clients - 1;
	if (s->nconns >= cap) {
		char why[256];
		snprintf(why, sizeof(why), "%s serves %d clients already: the limit of %s%s", s->limit, s->nconns,
			 s->limit + strlen(s->limit) + 1, admin ? "" : " (one more slot is kept for an admin)");
		log_warn("refusing client pid %d uid %d: %s", (int)cred.pid, (int)cred.uid, why);
		coral__count(s->ctr.refused);
		coral__tell_and_close(fd, CORAL_EBUSY, why);
		return;
	}
	struct coral_ipc_conn *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = NULL;
	if (c != NULL && s->ssl_ctx != NULL) {
		SSL *ssl = SSL_new(s->ssl_ctx);
		bev = ssl ? bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
							   BEV_OPT_CLOSE_ON_FREE)
			  : NULL;
		if (bev == NULL && ssl != NULL)
			SSL_free(ssl);
		c->ssl = ssl;
	} else if (c != NULL) {
		bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev == NULL) {
		free(c);
		close(fd);
		coral__count(s->ctr.refused);
		return;
	}
	c->srv = s;
	c->bev = bev;
	c->id = ++s->next_id;
	c->peer.pid = cred.pid;
	c->peer.uid = cred.uid;
	c->peer.gid = cred.gid;
	c->peer.admin = admin;
	c->active_ns = coral_now_mono_ns();
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	if (s->ctr.clients)
		atomic_store(s->ctr.clients, (uint32_t)s->nconns);
	bufferevent_setcb(bev, coral__conn_read, coral__conn_write, coral__conn_event, c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static struct coral_ipc_server *coral__server_alloc(struct event_base *base,
						  const struct coral_ipc_server_opts *o)
{
	struct coral_ipc_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->base = base;
	s->max_frame = o->max_frame;
	s->max_clients = o->max_clients;
	s->out_queue = o->out_queue;
	s->admin_uid = o->admin_uid;
	s->admin_gid = o->admin_gid;
	s->idle_ms = o->idle_ms;
	s->ssl_ctx = o->tcp_host ? o->ssl_ctx : NULL;
	/* "WHO\0LIMIT": who serves, and the option that caps the clients */
	snprintf(s->limit, sizeof(s->limit), "%s", o->who ? o->who : "this daemon");
	size_t w = strlen(s->limit) + 1;
	if (w < sizeof(s->limit))
		snprintf(s->limit + w, sizeof(s->limit) - w, "%s", o->limit ? o->limit : "max_clients");
	s->on_frame = o->on_frame;
	s->arg = o->arg;
	s->ctr = o->counters;
	s->ev_idle = event_new(base, -1, EV_PERSIST, coral__idle_tick, s);
	struct timeval tv = {1, 0};
	if (s->ev_idle == NULL || event_add(s->ev_idle, &tv) != 0) {
		if (s->ev_idle)
			event_free(s->ev_idle);
		free(s);
		return NULL;
	}
	return s;
}

static struct coral_ipc_server *coral__server_tcp(struct event_base *base,
						const struct coral_ipc_server_opts *o, char *err,
						size_t errsz)
{
	struct coral_ipc_server *s = coral__server_alloc(base, o);
	if (s == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	s->tcp = true;
	s->lis = coral_tcp_listen(base, o->tcp_host, o->tcp_port, coral__accept, s, err, errsz);
	if (s->lis == NULL) {
		event_free(s->ev_idle);
		free(s);
		return NULL;
	}
	return s;
}

struct coral_ipc_server *coral_ipc_server_new(struct event_base *base,
					      const struct coral_ipc_server_opts *o, char *err,
					      size_t errsz)
{
	if (o->tcp_port > 0)
		return coral__server_tcp(base, o, err, errsz);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (!coral_strlcpy(sun.sun_path, o->path, sizeof(sun.sun_path))) {
		snprintf(err, errsz, "socket path %s is too long", o->path);
		return NULL;
	}
	/* A socket file left by a killed daemon: remove it only if nobody answers on it (our
	 * pidfile lock already says no live twin of ours owns it). */
	int probe;
	if (coral_ipc_connect(o->path, &probe) == 0) {
		close(probe);
		snprintf(err, errsz, "another process is serving %s", o->path);
		return NULL;
	}
	unlink(o->path);
	struct coral_ipc_server *s = coral__server_alloc(base, o);
	if (s == NULL) {
		snprintf(err, errsz, "out of memory");
		return NULL;
	}
	coral_strlcpy(s->path, o->path, sizeof(s->path));
	mode_t old = umask(0117); /* socket mode 0660 from the start, no window */
	s->lis = evconnlistener_new_bind(base, coral__accept, s,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 64,
					 (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (s->lis == NULL) {
		snprintf(err, errsz, "cannot listen on %s: %s", o->path, strerror(errno));
		event_free(s->ev_idle);
		free(s);
		return NULL;
	}
	return s;
}

void coral_ipc_server_set_limits(struct coral_ipc_server *s, int max_clients, size_t out_queue,
				 int64_t admin_uid, int64_t admin_gid, int64_t idle_ms)
{
	s->idle_ms = idle_ms;
	s->max_clients = max_clients;
	s->out_queue = out_queue;
	s->admin_uid = admin_uid;
	s->admin_gid = admin_gid;
}

int coral_ipc_server_nclients(const struct coral_ipc_server *s)
{
	return s->nconns;
}

void coral_ipc_server_free(struct coral_ipc_server *s)
{
	if (s == NULL)
		return;
	while (s->conns)
		coral__conn_free(s->conns);
	if (s->ev_idle)
		event_free(s->ev_idle);
	evconnlistener_free(s->lis);
	if (!s->tcp)
		unlink(s->path);
	free(s);
}

void coral_ipc_conn_keep(struct coral_ipc_conn *conn)
{
	if (conn)
		conn->keep = true;
}

void coral_ipc_conn_waiting(struct coral_ipc_conn *conn, bool more)
{
	if (conn == NULL)
		return;
	if (more)
		conn->waiting++;
	else if (conn->waiting > 0)
		conn->waiting--;
}

uint64_t coral_ipc_conn_id(const struct coral_ipc_conn *c)
{
	return c->id;
}

struct coral_ipc_conn *coral_ipc_server_conn(struct coral_ipc_server *s, uint64_t id)
{
	for (struct coral_ipc_conn *c = s->conns; c; c = c->next)
		if (c->id == id && !c->closing)
			return c;
	return NULL;
}

const struct coral_ipc_peer *coral_ipc_conn_peer(const struct coral_ipc_conn *c)
{
	return &c->peer;
}

int coral_ipc_conn_send(struct coral_ipc_conn *c, const ProtobufCMessage *msg)
{
	if (c->closing)
		return CORAL_ECLOSED;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int rc = coral_frame_send(c->bev, msg, c->srv->max_frame);
	if (rc != 0)
		return rc;
	if (evbuffer_get_length(out) > c->srv->out_queue && !c->paused) {
		log_debug("client pid %d is not reading its answers; pausing it", (int)c->peer.pid);
		c->paused = true;
		bufferevent_disable(c->bev, EV_READ);
	}
	return 0;
}

/* ---- async client ----------------------------------------------------------------- */

struct coral_ipc_client {
	struct bufferevent *bev;
	size_t max_frame;
	size_t out_queue;
	coral_ipc_client_frame_fn on_frame;
	coral_ipc_client_close_fn on_close;
	void *arg;
	bool closed;
};

static void coral__client_close(struct coral_ipc_client *c, int err)
{
	if (c->closed)
		return;
	c->closed = true;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (c->on_close)
		c->on_close(c->arg, err);
}

static void coral__client_read(struct bufferevent *bev, void *arg)
{
	struct coral_ipc_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (!c->closed) {
		const uint8_t *data;
		uint32_t len;
		int rc = coral_frame_next(in, c->max_frame, &data, &len);
		if (rc == 0)
			break;
		if (rc < 0) {
			log_warn("server sent a bad frame: %s", coral_strerror(rc));
			coral__client_close(c, rc);
			break;
		}
		c->on_frame(c->arg, data, len);
		coral_frame_consume(in, len);
	}
}

static void coral__client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct coral_ipc_client *c = arg;
	if (what & BEV_EVENT_EOF)
		coral__client_close(c, CORAL_ECLOSED);
	else if (what & BEV_EVENT_ERROR)
		coral__client_close(c, CORAL_ECONN);
}

struct coral_ipc_client *coral_ipc_client_new(struct event_base *base, const char *path,
					      size_t max_frame, size_t out_queue,
					      coral_ipc_client_frame_fn on_frame,
					      coral_ipc_client_close_fn on_close, void *arg)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (!coral_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)))
		return NULL;
	struct coral_ipc_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		free(c);
		return NULL;
	}
	c->max_frame = max_frame;
	c->out_queue = out_queue;
	c->on_frame = on_frame;
	c->on_close = on_close;
	c->arg = arg;
	bufferevent_setcb(c->bev, coral__client_read, NULL, coral__client_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		bufferevent_free(c->bev);
		free(c);
		return NULL;
	}
	return c;
}

int coral_ipc_client_send(struct coral_ipc_client *c, const ProtobufCMessage *msg)
{
	if (c->closed)
		return CORAL_ECLOSED;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) > c->out_queue)
		return CORAL_EBUSY;
	return coral_frame_append(out, msg, c->max_frame);
}

bool coral_ipc_client_closed(const struct coral_ipc_client *c) { return c->closed; }

void coral_ipc_client_free(struct coral_ipc_client *c)
{
	if (c == NULL)
		return;
	bufferevent_free(c->bev);
	free(c);
}

int coral_ipc_connect(const char *path, int *fdp)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (!coral_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)))
		return CORAL_EINVAL;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return CORAL_ESYS;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		int e = errno;
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED)
			return CORAL_ENOTRUNNING;
		if (e == EACCES)
			return CORAL_EPERM;
		return CORAL_ECONN;
	}
	*fdp = fd;
	return 0;
}

/* Frame encoding and decoding (see frame.h). This file and the per-family message files
 * are the only places that call protobuf-c's pack functions. */
#include "frame.h"
#include "errors.h"
#include "util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int coral_frame_check(const uint8_t *buf, size_t avail, size_t max, uint32_t *len)
{
	if (avail < CORAL_FRAME_HDR)
		return 0;
	uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
	if (n == 0)
		return CORAL_EEMPTY;
	if (n > max)
		return CORAL_ETOOBIG;
	*len = n;
	return avail - CORAL_FRAME_HDR >= n ? 1 : 0;
}

int coral_frame_next(struct evbuffer *in, size_t max, const uint8_t **payload, uint32_t *len)
{
	uint8_t hdr[CORAL_FRAME_HDR];
	size_t avail = evbuffer_get_length(in);
	if (avail < CORAL_FRAME_HDR)
		return 0;
	evbuffer_copyout(in, hdr, sizeof(hdr));
	uint32_t n;
	/* Check the header alone first so an oversize frame is refused before we wait for it. */
	int rc = coral_frame_check(hdr, CORAL_FRAME_HDR, max, &n);
	if (rc < 0)
		return rc;
	if (avail - CORAL_FRAME_HDR < n)
		return 0;
	unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)(CORAL_FRAME_HDR + n));
	if (p == NULL)
		return CORAL_ENOMEM;
	*payload = p + CORAL_FRAME_HDR;
	*len = n;
	return 1;
}

void coral_frame_consume(struct evbuffer *in, uint32_t len)
{
	evbuffer_drain(in, CORAL_FRAME_HDR + (size_t)len);
}

static void coral__put_len(uint8_t *p, uint32_t n)
{
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
}

int coral_frame_append(struct evbuffer *out, const ProtobufCMessage *msg, size_t max)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > max || n > UINT32_MAX)
		return CORAL_ETOOBIG;
	if (n == 0) {
		/* An empty message is legal protobuf but an empty frame is not: every Coral
		 * envelope carries a header, so this is a caller bug. */
		return CORAL_EEMPTY;
	}
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, (ev_ssize_t)(n + CORAL_FRAME_HDR), &v, 1) < 1)
		return CORAL_ENOMEM;
	coral__put_len(v.iov_base, (uint32_t)n);
	protobuf_c_message_pack(msg, (uint8_t *)v.iov_base + CORAL_FRAME_HDR);
	v.iov_len = n + CORAL_FRAME_HDR;
	return evbuffer_commit_space(out, &v, 1) == 0 ? 0 : CORAL_ENOMEM;
}

int coral_bev_send(struct bufferevent *bev, const struct iovec *iov, int n)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	size_t sent = 0;
	evutil_socket_t fd = bufferevent_getfd(bev);
	/* straight to the socket when nothing waits before it; never under TLS, whose records
	 * only the bufferevent writes */
	if (evbuffer_get_length(out) == 0 && fd >= 0 && bufferevent_openssl_get_ssl(bev) == NULL) {
		struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
		ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		/* an error is the event loop's to find and report on its own write */
		sent = k > 0 ? (size_t)k : 0;
	}
	for (int i = 0; i < n; i++) {
		if (sent >= iov[i].iov_len) {
			sent -= iov[i].iov_len;
			continue;
		}
		if (evbuffer_add(out, (const uint8_t *)iov[i].iov_base + sent, iov[i].iov_len - sent) != 0)
			return CORAL_ENOMEM;
		sent = 0;
	}
	return 0;
}

int coral_tcp_resolve(const char *host, int port, int passive, struct addrinfo **ai, char *err, size_t errsz)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	*ai = NULL;
	int rc = getaddrinfo(host, ps, &hints, ai);
	if (rc != 0 || *ai == NULL) {
		snprintf(err, errsz, "cannot resolve %s: %s", host, gai_strerror(rc));
		return CORAL_ENOENT;
	}
	return 0;
}

struct evconnlistener *coral_tcp_listen(struct event_base *base, const char *host, int port,
					void (*cb)(struct evconnlistener *, int, struct sockaddr *, int, void *),
					void *arg, char *err, size_t errsz)
{
	struct addrinfo *ai;
	if (coral_tcp_resolve(host, port, 1, &ai, err, errsz) != 0)
		return NULL;
	struct evconnlistener *lis =
		evconnlistener_new_bind(base, cb, arg, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
					64, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (lis == NULL)
		snprintf(err, errsz, "cannot listen on %s:%d: %s", host, port, strerror(errno));
	return lis;
}

size_t coral_bev_read_more(struct bufferevent *bev, size_t need)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct evbuffer *in = bufferevent_get_input(bev);
	/* room for what is missing and for the next few messages behind it */
	size_t want = need + 16384;
	struct evbuffer_iovec v[2];
	if (fd < 0)
		return 0;
	/* a socket bufferevent freezes its input's end (only its own reads add to it): without
	 * lifting that for this read, the reservation fails and the rest of the frame waits for
	 * the loop's next turns, 4 KiB each */
	evbuffer_unfreeze(in, 0);
	int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
	if (nv <= 0) {
		evbuffer_freeze(in, 0);
		return 0;
	}
	struct iovec iov[2];
	for (int i = 0; i < nv; i++)
		iov[i] = (struct iovec){v[i].iov_base, v[i].iov_len};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)nv};
	ssize_t k = recvmsg(fd, &mh, MSG_DONTWAIT);
	size_t got = k > 0 ? (size_t)k : 0;
	for (int i = 0; i < nv; i++) {
		size_t here = got < v[i].iov_len ? got : v[i].iov_len;
		v[i].iov_len = here;
		got -= here;
	}
	evbuffer_commit_space(in, v, nv);
	evbuffer_freeze(in, 0);
	return k > 0 ? (size_t)k : 0;
}

/* A ProtobufCBuffer that copies a message's small pieces into a scratch area and keeps its
 * large ones (a block's bytes) where they are, as iovecs for one sendmsg(): a block-sized
 * answer then leaves without being copied into a packing buffer first. */
#define GATHER_IOV 16
#define GATHER_BIG 1024
struct coral__gather {
	ProtobufCBuffer base;
	struct iovec iov[GATHER_IOV];
	int n;
	bool overflow;
	size_t used;
	uint8_t scratch[2048];
};

static void coral__gather_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	struct coral__gather *g = (struct coral__gather *)b;
	if (len == 0 || g->overflow)
		return;
	struct iovec *last = g->n ? &g->iov[g->n - 1] : NULL;
	if (len < GATHER_BIG && g->used + len <= sizeof(g->scratch)) {
		uint8_t *at = g->scratch + g->used;
		memcpy(at, data, len);
		g->used += len;
		if (last && (uint8_t *)last->iov_base + last->iov_len == at) {
			last->iov_len += len;
			return;
		}
		data = at;
	} else if (len < GATHER_BIG) {
		g->overflow = true;
		return;
	}
	if (g->n == GATHER_IOV) {
		g->overflow = true;
		return;
	}
	g->iov[g->n++] = (struct iovec){(void *)data, len};
}

int coral_frame_send(struct bufferevent *bev, const ProtobufCMessage *msg, size_t max)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t small[4096];
	if (n == 0 || n > max || n > UINT32_MAX)
		return coral_frame_append(bufferevent_get_output(bev), msg, max);
	if (n + CORAL_FRAME_HDR <= sizeof(small)) {
		coral__put_len(small, (uint32_t)n);
		protobuf_c_message_pack(msg, small + CORAL_FRAME_HDR);
		struct iovec v = {small, n + CORAL_FRAME_HDR};
		return coral_bev_send(bev, &v, 1);
	}
	/* a block-sized answer too goes out now rather than at the next loop turn, gathered */
	struct coral__gather gs, *g = &gs;
	g->base.append = coral__gather_append;
	g->n = 0;
	g->used = 0;
	g->overflow = false;
	coral__gather_append(&g->base, CORAL_FRAME_HDR, (const uint8_t[CORAL_FRAME_HDR]){0});
	coral__put_len(g->scratch, (uint32_t)n);
	protobuf_c_message_pack_to_buffer(msg, &g->base);
	if (!g->overflow)
		return coral_bev_send(bev, g->iov, g->n);
	uint8_t *buf = malloc(n + CORAL_FRAME_HDR);
	if (buf == NULL)
		return CORAL_ENOMEM;
	coral__put_len(buf, (uint32_t)n);
	protobuf_c_message_pack(msg, buf + CORAL_FRAME_HDR);
	struct iovec v = {buf, n + CORAL_FRAME_HDR};
	int rc = coral_bev_send(bev, &v, 1);
	free(buf);
	return rc;
}

int coral_frame_encode(const ProtobufCMessage *msg, size_t max, uint8_t **buf, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > max || n > UINT32_MAX)
		return CORAL_ETOOBIG;
	if (n == 0)
		return CORAL_EEMPTY;
	uint8_t *p = malloc(n + CORAL_FRAME_HDR);
	if (p == NULL)
		return CORAL_ENOMEM;
	coral__put_len(p, (uint32_t)n);
	protobuf_c_message_pack(msg, p + CORAL_FRAME_HDR);
	*buf = p;
	*len = n + CORAL_FRAME_HDR;
	return 0;
}

static __thread uint64_t coral__spin_ns;

void coral_frame_spin(uint64_t ns) { coral__spin_ns = ns; }

/* Tries to receive for coral__spin_ns; the bytes read, or -1 (errno set) */
static ssize_t coral__spin_recv(int fd, uint8_t *buf, size_t len)
{
	uint64_t until = coral_now_mono_ns() + coral__spin_ns;
	ssize_t n;
	do {
		n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n >= 0 || errno != EAGAIN)
			return n;
		/* the CPU goes to anything else runnable on it (lmsd, say) */
		sched_yield();
	} while (coral_now_mono_ns() < until);
	return n;
}

static int coral__wait(int fd, short ev, uint64_t deadline_ns)
{
	for (;;) {
		uint64_t now = coral_now_mono_ns();
		if (now >= deadline_ns)
			return CORAL_ETIMEDOUT;
		int ms = (int)((deadline_ns - now + 999999) / 1000000);
		struct pollfd p = {.fd = fd, .events = ev};
		int rc = poll(&p, 1, ms);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return CORAL_ESYS;
	}
}

/* Reads or writes all of buf before the deadline. The system call is tried first and poll()
 * used only when it would block: a request and its answer then cost one send and one
 * receive on an idle connection, not four calls. */
static int coral__io_full(int fd, uint8_t *buf, size_t len, bool writing, uint64_t deadline_ns)
{
	size_t off = 0;
	bool sock = true;
	while (off < len) {
		/* MSG_NOSIGNAL: a peer that went away is an error to report, not a SIGPIPE that
		 * kills the tool */
		ssize_t n;
		if (sock) {
			n = writing ? send(fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT)
				    : recv(fd, buf + off, len - off, MSG_DONTWAIT);
			if (n < 0 && errno == ENOTSOCK) {
				sock = false;
				continue;
			}
		} else {
			int rc = coral__wait(fd, writing ? POLLOUT : POLLIN, deadline_ns);
			if (rc != 0)
				return rc;
			n = writing ? write(fd, buf + off, len - off) : read(fd, buf + off, len - off);
		}
		if (n == 0 && !writing)
			return CORAL_ECLOSED;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!writing && sock && coral__spin_ns > 0) {
					n = coral__spin_recv(fd, buf + off, len - off);
					if (n == 0)
						return CORAL_ECLOSED;
					if (n > 0) {
						off += (size_t)n;
						continue;
					}
				}
				int rc = coral__wait(fd, writing ? POLLOUT : POLLIN, deadline_ns);
				if (rc != 0)
					return rc;
				continue;
			}
			return CORAL_ECLOSED;
		}
		off += (size_t)n;
	}
	return 0;
}

int coral_frame_write_fd(int fd, const uint8_t *buf, size_t len, uint64_t deadline_ns)
{
	return coral__io_full(fd, (uint8_t *)buf, len, true, deadline_ns);
}

static int coral__read_full(int fd, uint8_t *buf, size_t len, uint64_t deadline_ns)
{
	return coral__io_full(fd, buf, len, false, deadline_ns);
}

static void *coral__arena_alloc(void *arg, size_t n)
{
	struct coral_pb_arena *a = arg;
	size_t off = (a->used + 15) & ~(size_t)15;
	if (off > a->cap || n > a->cap - off)
		return NULL;
	a->used = off + n;
	return a->base + off;
}

static void coral__arena_free(void *arg, void *p)
{
	(void)arg;
	(void)p;
}

void coral_pb_arena_init(struct coral_pb_arena *a, void *mem, size_t cap)
{
	a->al = (ProtobufCAllocator){coral__arena_alloc, coral__arena_free, a};
	a->base = mem;
	a->cap = cap;
	a->used = 0;
}

void coral_frame_rd_free(struct coral_frame_rd *rd)
{
	free(rd->buf);
	rd->buf = NULL;
	rd->cap = 0;
}

static int coral__rd_room(struct coral_frame_rd *rd, size_t need)
{
	if (rd->cap >= need)
		return 0;
	size_t cap = rd->cap ? rd->cap : 16384;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(rd->buf, cap);
	if (p == NULL)
		return CORAL_ENOMEM;
	rd->buf = p;
	rd->cap = cap;
	return 0;
}

int coral_sock_blocking(int fd, int slice_ms)
{
	int fl = fcntl(fd, F_GETFL);
	struct timeval tv = {.tv_sec = slice_ms / 1000, .tv_usec = (slice_ms % 1000) * 1000};
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
		return CORAL_ESYS;
	return 0;
}

int coral_frame_pack_rd(struct coral_frame_rd *rd, const ProtobufCMessage *msg, size_t max, size_t *len)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > max || n > UINT32_MAX)
		return CORAL_ETOOBIG;
	if (n == 0)
		return CORAL_EEMPTY;
	if (coral__rd_room(rd, n + CORAL_FRAME_HDR) != 0)
		return CORAL_ENOMEM;
	coral__put_len(rd->buf, (uint32_t)n);
	protobuf_c_message_pack(msg, rd->buf + CORAL_FRAME_HDR);
	*len = n + CORAL_FRAME_HDR;
	return 0;
}

/* One SSL_read or SSL_write, waiting (within the deadline) as long as it wants the socket:
 * the bytes moved, or a CORAL_E* code. */
static ssize_t coral__ssl_io(SSL *ssl, int fd, uint8_t *buf, size_t len, bool writing, uint64_t deadline_ns)
{
	for (;;) {
		ERR_clear_error();
		int n = writing ? SSL_write(ssl, buf, (int)len) : SSL_read(ssl, buf, (int)len);
		if (n > 0)
			return n;
		int e = SSL_get_error(ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN)
			return CORAL_ECLOSED;
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			return e == SSL_ERROR_SYSCALL && errno == EINTR ? 0 : CORAL_ECLOSED;
		int rc = coral__wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ns);
		if (rc != 0)
			return rc;
	}
}

int coral_tls_connect(SSL *ssl, int fd, uint64_t deadline_ns, char *err, size_t errsz)
{
	if (SSL_set_fd(ssl, fd) != 1) {
		snprintf(err, errsz, "TLS: cannot use the socket");
		return CORAL_ESYS;
	}
	for (;;) {
		ERR_clear_error();
		int n = SSL_connect(ssl);
		if (n == 1)
			return 0;
		int e = SSL_get_error(ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			int rc = coral__wait(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ns);
			if (rc != 0) {
				snprintf(err, errsz, "TLS handshake: %s", coral_strerror(rc));
				return rc;
			}
			continue;
		}
		long v = SSL_get_verify_result(ssl);
		unsigned long q = ERR_peek_last_error();
		snprintf(err, errsz, "TLS handshake failed: %s",
			 v != X509_V_OK ? X509_verify_cert_error_string(v)
			 : q	       ? ERR_reason_error_string(q)
					: "the peer closed the connection");
		return CORAL_EPERM;
	}
}

int coral_frame_write_rd(int fd, struct coral_frame_rd *rd, size_t len, uint64_t deadline_ns)
{
	if (rd->ssl == NULL)
		return coral_frame_write_fd(fd, rd->buf, len, deadline_ns);
	for (size_t off = 0; off < len;) {
		ssize_t n = coral__ssl_io(rd->ssl, fd, rd->buf + off, len - off, true, deadline_ns);
		if (n < 0)
			return (int)n;
		off += (size_t)n;
	}
	return 0;
}

int coral_frame_read_rd(int fd, struct coral_frame_rd *rd, size_t max, uint64_t deadline_ns, const uint8_t **payload,
			uint32_t *len)
{
	size_t have = 0;
	bool spun = coral__spin_ns == 0;
	if (coral__rd_room(rd, CORAL_FRAME_HDR) != 0)
		return CORAL_ENOMEM;
	for (;;) {
		uint32_t n = 0;
		int c = coral_frame_check(rd->buf, have, max, &n);
		if (c < 0)
			return c;
		if (c == 1) {
			if (have != CORAL_FRAME_HDR + (size_t)n)
				return CORAL_EDECODE;
			*payload = rd->buf + CORAL_FRAME_HDR;
			*len = n;
			return 0;
		}
		if (have >= CORAL_FRAME_HDR && coral__rd_room(rd, CORAL_FRAME_HDR + (size_t)n) != 0)
			return CORAL_ENOMEM;
		ssize_t k;
		bool spinning = !spun && rd->ssl == NULL;
		if (rd->ssl != NULL) {
			k = coral__ssl_io(rd->ssl, fd, rd->buf + have, rd->cap - have, false, deadline_ns);
			if (k < 0)
				return (int)k;
			if (k == 0)
				continue;  /* interrupted */
			have += (size_t)k;
			continue;
		}
		if (spinning) {
			spun = true;
			k = coral__spin_recv(fd, rd->buf + have, rd->cap - have);
		} else {
			/* poll() for the answer, not a blocking recv(): a task asleep in recv() on a
			 * Unix socket is woken each time the server reads the request off it (its
			 * send buffer has room again: one wait queue serves both directions), so
			 * every call cost the server a wake-up and the caller a context switch for
			 * nothing; a poll() for POLLIN is not woken by that */
			int rc = coral__wait(fd, POLLIN, deadline_ns);
			if (rc != 0)
				return rc;
			k = recv(fd, rd->buf + have, rd->cap - have, MSG_DONTWAIT);
		}
		if (k == 0)
			return CORAL_ECLOSED;
		if (k < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
				return CORAL_ECLOSED;
			/* the receive timeout passed (or the socket does not block after all):
			 * poll() for the rest of the time */
			if (errno != EINTR && !spinning) {
				int rc = coral__wait(fd, POLLIN, deadline_ns);
				if (rc != 0)
					return rc;
			}
			continue;
		}
		have += (size_t)k;
	}
}

int coral_frame_read_fd(int fd, size_t max, uint64_t deadline_ns, uint8_t **payload, uint32_t *len)
{
	uint8_t hdr[CORAL_FRAME_HDR];
	int rc = coral__read_full(fd, hdr, sizeof(hdr), deadline_ns);
	if (rc != 0)
		return rc;
	uint32_t n;
	rc = coral_frame_check(hdr, sizeof(hdr), max, &n);
	if (rc < 0)
		return rc;
	uint8_t *p = malloc(n);
	if (p == NULL)
		return CORAL_ENOMEM;
	rc = coral__read_full(fd, p, n, deadline_ns);
	if (rc != 0) {
		free(p);
		return rc;
	}
	*payload = p;
	*len = n;
	return 0;
}

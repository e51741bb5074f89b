/* Framing, the same on Unix sockets and TCP: a 4-byte big-endian length, then one
 * protobuf-c message. A frame longer than the configured maximum, or of length zero, is
 * refused; the caller closes the connection and counts it. */
#ifndef CORAL_FRAME_H
#define CORAL_FRAME_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_FRAME_HDR 4

struct evbuffer;

/* Looks at the bytes buffered so far. Returns 1 with *len set when a whole frame is there,
 * 0 when more bytes are needed, CORAL_ETOOBIG or CORAL_EEMPTY for a frame to refuse. */
int coral_frame_check(const uint8_t *buf, size_t avail, size_t max, uint32_t *len);

/* The same on an evbuffer; on 1, *payload points at the frame's message bytes, valid until
 * coral_frame_consume(). */
int coral_frame_next(struct evbuffer *in, size_t max, const uint8_t **payload, uint32_t *len);
void coral_frame_consume(struct evbuffer *in, uint32_t len);

/* Packs msg as one frame at the end of out. CORAL_ETOOBIG if it exceeds max. */
int coral_frame_append(struct evbuffer *out, const ProtobufCMessage *msg, size_t max);
/* Sends the bytes of iov on a plain-socket bufferevent: written at once when nothing is
 * queued before them, whatever the socket does not take (or everything, when something is
 * queued or the write fails) queued in its output buffer for the event loop. A message on an
 * idle connection then leaves now, not one loop iteration and three system calls later.
 * Not for TLS bufferevents (their bytes must go through OpenSSL). */
struct bufferevent;
struct iovec;
int coral_bev_send(struct bufferevent *bev, const struct iovec *iov, int n);
/* Reads at least `need` more bytes (if the socket has them now) straight into a plain-socket
 * bufferevent's input buffer, without waiting for the event loop: libevent 2.1 reads at most
 * 4096 bytes per loop iteration, so an 8 KiB block would take three. Returns the bytes read
 * (0: none there yet; the loop reads the rest, and any end of file or error, itself). Not
 * for TLS bufferevents. */
size_t coral_bev_read_more(struct bufferevent *bev, size_t need);
/* For this thread's next blocking reads (coral_frame_read_fd, so coral_ctl_call_fd): when
 * the answer is not there yet, keep trying for this many ns before sleeping in poll(). An
 * answer expected within a few tens of microseconds is then taken without a wake-up (on a
 * virtual machine an idle CPU's wake-up alone costs about that). 0: sleep at once. */
void coral_frame_spin(uint64_t ns);
/* A bump allocator over the caller's memory for protobuf-c's unpack (pass &a->al): a decoded
 * message then costs no malloc, and freeing it is a no-op (the memory is the caller's). An
 * unpack that does not fit fails (NULL). */
struct coral_pb_arena {
	ProtobufCAllocator al;
	uint8_t *base;
	size_t cap, used;
};
void coral_pb_arena_init(struct coral_pb_arena *a, void *mem, size_t cap);

/* A receive buffer kept from call to call on one blocking connection used one call at a
 * time (a libcoral session's connections): the request is packed into it and the whole
 * answer read into it, usually header and payload in one recv(), with no malloc per call.
 * The socket must block with a receive timeout (coral_sock_blocking): the thread sleeps in
 * recv() itself, where a non-blocking socket costs a recv() that finds nothing, a poll() and
 * then two receives. */
struct coral_frame_rd {
	uint8_t *buf;
	size_t cap;
	struct ssl_st *ssl;     /* set: the next call goes through this TLS session (the CR port
				 * under [tls]), not the plain socket */
};
void coral_frame_rd_free(struct coral_frame_rd *rd);
/* Makes fd blocking, each receive and send waiting at most slice_ms (the reader goes back
 * to its deadline after each slice). */
int coral_sock_blocking(int fd, int slice_ms);
/* Packs msg as one frame into rd's buffer; *len is the frame's length. */
int coral_frame_pack_rd(struct coral_frame_rd *rd, const ProtobufCMessage *msg, size_t max, size_t *len);
/* Reads one frame into rd's buffer before the deadline (spinning first as coral_frame_spin
 * says); *payload stays valid until rd's next use. Bytes beyond the frame are an error
 * (CORAL_EDECODE): one call at a time leaves nothing behind an answer. */
int coral_frame_read_rd(int fd, struct coral_frame_rd *rd, size_t max, uint64_t deadline_ns, const uint8_t **payload,
			uint32_t *len);
/* Writes len bytes of rd's buffer (a frame packed there) before the deadline. */
int coral_frame_write_rd(int fd, struct coral_frame_rd *rd, size_t len, uint64_t deadline_ns);
/* A TLS client handshake on the blocking socket fd before the deadline: 0, or an error and
 * why (the peer's certificate unverified, or no answer). */
int coral_tls_connect(struct ssl_st *ssl, int fd, uint64_t deadline_ns, char *err, size_t errsz);
/* host:port resolved for a stream socket (passive: to listen on); free with freeaddrinfo. */
struct addrinfo;
int coral_tcp_resolve(const char *host, int port, int passive, struct addrinfo **ai, char *err, size_t errsz);
/* A TCP listener on host:port (resolved; address reuse, close-on-exec), accepting into cb.
 * NULL with err set when the name does not resolve or the port cannot be bound. */
struct event_base;
struct evconnlistener;
struct sockaddr;
struct evconnlistener *coral_tcp_listen(struct event_base *base, const char *host, int port,
					void (*cb)(struct evconnlistener *, int, struct sockaddr *, int, void *),
					void *arg, char *err, size_t errsz);
/* coral_frame_append() through coral_bev_send(). */
int coral_frame_send(struct bufferevent *bev, const ProtobufCMessage *msg, size_t max);
/* Packs msg as one frame into a new malloc'ed buffer. */
int coral_frame_encode(const ProtobufCMessage *msg, size_t max, uint8_t **buf, size_t *len);

/* Blocking helpers for tools: whole frames over a file descriptor, within a deadline
 * (CLOCK_MONOTONIC ns). read returns a malloc'ed payload. */
int coral_frame_write_fd(int fd, const uint8_t *buf, size_t len, uint64_t deadline_ns);
int coral_frame_read_fd(int fd, size_t max, uint64_t deadline_ns, uint8_t **payload, uint32_t *len);

#endif

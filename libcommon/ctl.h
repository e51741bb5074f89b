/* The control message family (proto/ctl.proto): the status, ping, config and reload
 * requests every daemon answers. Encoding and decoding live here and nowhere else; the
 * blocking call is what coralctl and coral-node use, the async client is for daemons
 * (request ids, a bounded table of pending calls, a timeout for each). */
#ifndef CORAL_CTL_H
#define CORAL_CTL_H

#include "ctl.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_CTL_MAX_PENDING 64

struct event_base;

Coral__CtlRequest *coral_ctl_request_decode(const uint8_t *data, size_t len);
void coral_ctl_request_free(Coral__CtlRequest *req);
/* Decoded into the caller's arena (frame.h): no malloc, nothing to free; NULL when it does
 * not decode or does not fit (lmsd's consistent-read port decodes each request so). */
struct coral_pb_arena;
Coral__CtlRequest *coral_ctl_request_decode_in(struct coral_pb_arena *ar, const uint8_t *data, size_t len);
Coral__CtlResponse *coral_ctl_response_decode(const uint8_t *data, size_t len);
void coral_ctl_response_free(Coral__CtlResponse *resp);

/* A request whose body is the empty message of that case (status, history, stats), built
 * in mem (memsz bytes, aligned for a message). CORAL_EINVAL for a case with no message. */
int coral_ctl_request_empty(Coral__CtlRequest *req, Coral__CtlRequest__BodyCase body, void *mem, size_t memsz);

/* The request id the caller gave, to be named in the answer (0 if none). */
static inline uint64_t coral_ctl_request_id(const Coral__CtlRequest *req)
{
	return req->hdr ? req->hdr->request_id : 0;
}

/* Short name of the request's body ("status", "ping"...), for logs. */
const char *coral_ctl_request_name(const Coral__CtlRequest *req);

/* Sends one request to the daemon listening at sock and waits for its answer. The caller
 * frees *resp. On error returns a CORAL_E* code and says what to do in err. */
int coral_ctl_call(const char *sock, Coral__CtlRequest *req, size_t max_frame, int timeout_ms,
		   Coral__CtlResponse **resp, char *err, size_t errsz);

/* The same over a connection the caller keeps (coral_ctl_connect), one call at a time; what
 * names the peer in messages. */
int coral_ctl_connect(const char *sock, int *fd, char *err, size_t errsz);
/* A TCP connection to host:port for coral_ctl_call_fd (lmsd's consistent-read port),
 * TCP_NODELAY, given up after timeout_ms. */
int coral_ctl_connect_tcp(const char *host, int port, int timeout_ms, int *fd, char *err, size_t errsz);
int coral_ctl_call_fd(int fd, const char *what, Coral__CtlRequest *req, size_t max_frame, int timeout_ms,
		      Coral__CtlResponse **resp, char *err, size_t errsz);

/* The same through a receive buffer kept by the caller (frame.h: coral_frame_rd), on a
 * connection made blocking with coral_sock_blocking(): a call is then one send and, most
 * of the time, one receive. The answer is decoded with al (NULL: malloc) and freed by the
 * caller with coral__ctl_response__free_unpacked(resp, al). */
struct coral_frame_rd;
int coral_ctl_call_rd(int fd, struct coral_frame_rd *rd, ProtobufCAllocator *al, const char *what, Coral__CtlRequest *req,
		      size_t max_frame, int timeout_ms, Coral__CtlResponse **resp, char *err, size_t errsz);

/* Async client. done is called exactly once per accepted call: with the answer, or with
 * CORAL_ETIMEDOUT / CORAL_ECLOSED and resp NULL. The answer is freed after done returns. */
struct coral_ctl_client;
typedef void (*coral_ctl_done_fn)(void *arg, int err, const Coral__CtlResponse *resp);
struct coral_ctl_client *coral_ctl_client_new(struct event_base *base, const char *sock,
					      size_t max_frame);
/* CORAL_EBUSY when CORAL_CTL_MAX_PENDING calls are already waiting. */
int coral_ctl_client_call(struct coral_ctl_client *cc, Coral__CtlRequest *req, int timeout_ms,
			  coral_ctl_done_fn done, void *arg);
uint64_t coral_ctl_client_late(const struct coral_ctl_client *cc); /* answers after timeout */
/* True once the connection is gone (the daemon exited or restarted): every call fails with
 * CORAL_ECLOSED from then on; free the client and make a new one, outside its callbacks. */
bool coral_ctl_client_closed(const struct coral_ctl_client *cc);
/* Closes the connection; calls still pending are dropped without calling their done. */
void coral_ctl_client_free(struct coral_ctl_client *cc);

#endif

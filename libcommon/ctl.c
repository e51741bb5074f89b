/* Control message family: codecs, blocking call, async client (see ctl.h). */
#include "ctl.h"
#include "errors.h"
#include "frame.h"
#include "ipc.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Coral__CtlRequest *coral_ctl_request_decode(const uint8_t *data, size_t len)
{
	return coral__ctl_request__unpack(NULL, len, data);
}

int coral_ctl_request_empty(Coral__CtlRequest *req, Coral__CtlRequest__BodyCase body, void *mem, size_t memsz)
{
	coral__ctl_request__init(req);
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field(&coral__ctl_request__descriptor, (unsigned)body);
	if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return CORAL_EINVAL;
	const ProtobufCMessageDescriptor *d = f->descriptor;
	if (d->sizeof_message > memsz)
		return CORAL_ETOOBIG;
	protobuf_c_message_init(d, mem);
	/* the body is a oneof: a pointer at the field's offset, and the case that names it */
	*(void **)((char *)req + f->offset) = mem;
	req->body_case = body;
	return 0;
}

Coral__CtlRequest *coral_ctl_request_decode_in(struct coral_pb_arena *ar, const uint8_t *data, size_t len)
{
	return coral__ctl_request__unpack(&ar->al, len, data);
}

void coral_ctl_request_free(Coral__CtlRequest *req)
{
	if (req)
		coral__ctl_request__free_unpacked(req, NULL);
}

Coral__CtlResponse *coral_ctl_response_decode(const uint8_t *data, size_t len)
{
	return coral__ctl_response__unpack(NULL, len, data);
}

void coral_ctl_response_free(Coral__CtlResponse *resp)
{
	if (resp)
		coral__ctl_response__free_unpacked(resp, NULL);
}

const char *coral_ctl_request_name(const Coral__CtlRequest *req)
{
	switch (req->body_case) {
	case CORAL__CTL_REQUEST__BODY_STATUS: return "status";
	case CORAL__CTL_REQUEST__BODY_PING: return "ping";
	case CORAL__CTL_REQUEST__BODY_CONFIG: return "config";
	case CORAL__CTL_REQUEST__BODY_RELOAD: return "reload";
	case CORAL__CTL_REQUEST__BODY_RAFT_STATUS: return "raft status";
	case CORAL__CTL_REQUEST__BODY_RAFT_HISTORY: return "raft history";
	case CORAL__CTL_REQUEST__BODY_RAFT_TRANSFER: return "raft transfer-leader";
	case CORAL__CTL_REQUEST__BODY_MEMBERS: return "cluster members";
	case CORAL__CTL_REQUEST__BODY_ADD_NODE: return "cluster add-node";
	case CORAL__CTL_REQUEST__BODY_REMOVE_NODE: return "cluster remove-node";
	case CORAL__CTL_REQUEST__BODY_RAFT_LEAVE: return "raft leave";
	case CORAL__CTL_REQUEST__BODY_KV: return "kv";
	case CORAL__CTL_REQUEST__BODY_WATCH: return "watch";
	case CORAL__CTL_REQUEST__BODY_GRD_STATUS: return "grd status";
	case CORAL__CTL_REQUEST__BODY_GRD_RESOURCE: return "grd resource";
	case CORAL__CTL_REQUEST__BODY_GRD_TOP: return "grd top";
	case CORAL__CTL_REQUEST__BODY_GRD_REMASTER: return "grd remaster";
	case CORAL__CTL_REQUEST__BODY_GRD_HISTORY: return "grd history";
	case CORAL__CTL_REQUEST__BODY_GRD_LOCK: return "grd lock";
	case CORAL__CTL_REQUEST__BODY_GCS_GET: return "gcs get";
	case CORAL__CTL_REQUEST__BODY_GCS_STATS: return "gcs stats";
	case CORAL__CTL_REQUEST__BODY_GCS_BLOCK: return "gcs block";
	case CORAL__CTL_REQUEST__BODY_RECOVERY: return "recovery";
	default: return "unknown";
	}
}

int coral_ctl_call_rd(int fd, struct coral_frame_rd *rd, ProtobufCAllocator *al, const char *what, Coral__CtlRequest *req,
		      size_t max_frame, int timeout_ms, Coral__CtlResponse **resp, char *err, size_t errsz)
{
	uint64_t now = coral_now_mono_ns(), deadline = now + (uint64_t)timeout_ms * 1000000ull;
	/* the monotonic clock makes an id that a stale answer on a reused descriptor cannot
	 * match, without a process-global counter */
	if (req->hdr)
		req->hdr->request_id = now;
	uint8_t *buf = NULL, *payload = NULL;
	const uint8_t *answer = NULL;
	size_t len = 0;
	uint32_t plen = 0;
	int rc;
	/* a server that refused the connection at the door said why before closing it: that is
	 * read even when the request could not be written */
	if (rd != NULL) {
		rc = coral_frame_pack_rd(rd, &req->base, max_frame, &len);
		int wrc = rc == 0 ? coral_frame_write_rd(fd, rd, len, deadline) : rc;
		if (rc == 0)
			rc = coral_frame_read_rd(fd, rd, max_frame, wrc == 0 ? deadline : now + 100000000ull, &answer, &plen);
		if (rc != 0 && wrc != 0)
			rc = wrc;
	} else {
		rc = coral_frame_encode(&req->base, max_frame, &buf, &len);
		int wrc = rc == 0 ? coral_frame_write_fd(fd, buf, len, deadline) : rc;
		free(buf);
		if (rc == 0)
			rc = coral_frame_read_fd(fd, max_frame, wrc == 0 ? deadline : now + 100000000ull, &payload, &plen);
		if (rc != 0 && wrc != 0)
			rc = wrc;
		answer = payload;
	}
	if (rc != 0) {
		if (rc == CORAL_ETIMEDOUT)
			snprintf(err, errsz, "no answer from %s within %d ms", what, timeout_ms);
		else if (rc == CORAL_ECLOSED)
			snprintf(err, errsz, "%s closed the connection without answering", what);
		else
			snprintf(err, errsz, "%s: %s", what, coral_strerror(rc));
		return rc;
	}
	*resp = coral__ctl_response__unpack(al, plen, answer);
	free(payload);
	if (*resp == NULL) {
		snprintf(err, errsz, "%s sent an answer that could not be decoded", what);
		return CORAL_EDECODE;
	}
	if (req->hdr && (*resp)->hdr && (*resp)->hdr->request_id != req->hdr->request_id) {
		coral__ctl_response__free_unpacked(*resp, al);
		*resp = NULL;
		snprintf(err, errsz, "%s answered another request", what);
		return CORAL_EDECODE;
	}
	return 0;
}

int coral_ctl_call_fd(int fd, const char *what, Coral__CtlRequest *req, size_t max_frame, int timeout_ms,
		      Coral__CtlResponse **resp, char *err, size_t errsz)
{
	return coral_ctl_call_rd(fd, NULL, NULL, what, req, max_frame, timeout_ms, resp, err, errsz);
}

int coral_ctl_connect(const char *sock, int *fd, char *err, size_t errsz)
{
	int rc = coral_ipc_connect(sock, fd);
	if (rc == CORAL_ENOTRUNNING)
		snprintf(err, errsz, "nothing is listening on %s", sock);
	else if (rc == CORAL_EPERM)
		snprintf(err, errsz, "no permission to connect to %s", sock);
	else if (rc != 0)
		snprintf(err, errsz, "cannot connect to %s: %s", sock, coral_strerror(rc));
	return rc;
}

int coral_ctl_connect_tcp(const char *host, int port, int timeout_ms, int *fd, char *err, size_t errsz)
{
	struct addrinfo *ai;
	int rc = coral_tcp_resolve(host, port, 0, &ai, err, errsz);
	if (rc != 0)
		return rc;
	int s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		freeaddrinfo(ai);
		snprintf(err, errsz, "socket: %s", strerror(errno));
		return CORAL_ESYS;
	}
	rc = connect(s, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc != 0 && errno == EINPROGRESS) {
		struct pollfd p = {.fd = s, .events = POLLOUT};
		int e = 0;
		socklen_t el = sizeof(e);
		rc = poll(&p, 1, timeout_ms) == 1 && getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0 ? 0 : -1;
		if (rc != 0)
			errno = e ? e : ETIMEDOUT;
	}
	if (rc != 0) {
		snprintf(err, errsz, "cannot connect to %s:%d: %s", host, port, strerror(errno));
		close(s);
		return errno == ETIMEDOUT ? CORAL_ETIMEDOUT : CORAL_ENOTRUNNING;
	}
	int one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*fd = s;
	return 0;
}

int coral_ctl_call(const char *sock, Coral__CtlRequest *req, size_t max_frame, int timeout_ms,
		   Coral__CtlResponse **resp, char *err, size_t errsz)
{
	int fd;
	int rc = coral_ctl_connect(sock, &fd, err, errsz);
	if (rc != 0)
		return rc;
	rc = coral_ctl_call_fd(fd, sock, req, max_frame, timeout_ms, resp, err, errsz);
	close(fd);
	return rc;
}

/* ---- async client ----------------------------------------------------------------- */

struct coral__pending {
	struct coral_ctl_client *cc;
	uint64_t id;          /* 0: free */
	coral_ctl_done_fn done;
	void *arg;
	struct event *timer;
};

struct coral_ctl_client {
	struct coral_ipc_client *ipc;
	uint64_t next_id;
	uint64_t late;
	struct coral__pending pending[CORAL_CTL_MAX_PENDING];
};

static void coral__finish(struct coral__pending *p, int err, const Coral__CtlResponse *resp)
{
	coral_ctl_done_fn done = p->done;
	void *arg = p->arg;
	p->id = 0;
	evtimer_del(p->timer);
	done(arg, err, resp);
}

static void coral__timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral__pending *p = arg;
	if (p->id != 0)
		coral__finish(p, CORAL_ETIMEDOUT, NULL);
}

static void coral__on_frame(void *arg, const uint8_t *data, uint32_t len)
{
	struct coral_ctl_client *cc = arg;
	Coral__CtlResponse *resp = coral_ctl_response_decode(data, len);
	if (resp == NULL || resp->hdr == NULL) {
		coral_ctl_response_free(resp);
		cc->late++; /* undecodable: nobody to give it to */
		return;
	}
	for (int i = 0; i < CORAL_CTL_MAX_PENDING; i++) {
		struct coral__pending *p = &cc->pending[i];
		if (p->id != 0 && p->id == resp->hdr->request_id) {
			coral__finish(p, 0, resp);
			coral_ctl_response_free(resp);
			return;
		}
	}
	cc->late++; /* an answer to a call that already timed out */
	coral_ctl_response_free(resp);
}

static void coral__on_close(void *arg, int err)
{
	struct coral_ctl_client *cc = arg;
	for (int i = 0; i < CORAL_CTL_MAX_PENDING; i++)
		if (cc->pending[i].id != 0)
			coral__finish(&cc->pending[i], err ? err : CORAL_ECLOSED, NULL);
}

struct coral_ctl_client *coral_ctl_client_new(struct event_base *base, const char *sock,
					      size_t max_frame)
{
	struct coral_ctl_client *cc = calloc(1, sizeof(*cc));
	if (cc == NULL)
		return NULL;
	cc->next_id = 1;
	for (int i = 0; i < CORAL_CTL_MAX_PENDING; i++) {
		cc->pending[i].cc = cc;
		cc->pending[i].timer = evtimer_new(base, coral__timeout, &cc->pending[i]);
		if (cc->pending[i].timer == NULL) {
			coral_ctl_client_free(cc);
			return NULL;
		}
	}
	cc->ipc = coral_ipc_client_new(base, sock, max_frame, max_frame * 2, coral__on_frame,
				       coral__on_close, cc);
	if (cc->ipc == NULL) {
		coral_ctl_client_free(cc);
		return NULL;
	}
	return cc;
}

int coral_ctl_client_call(struct coral_ctl_client *cc, Coral__CtlRequest *req, int timeout_ms,
			  coral_ctl_done_fn done, void *arg)
{
	if (req->hdr == NULL)
		return CORAL_EINVAL;
	struct coral__pending *slot = NULL;
	for (int i = 0; i < CORAL_CTL_MAX_PENDING && slot == NULL; i++)
		if (cc->pending[i].id == 0)
			slot = &cc->pending[i];
	if (slot == NULL)
		return CORAL_EBUSY;
	req->hdr->request_id = cc->next_id++;
	int rc = coral_ipc_client_send(cc->ipc, &req->base);
	if (rc != 0)
		return rc;
	slot->id = req->hdr->request_id;
	slot->done = done;
	slot->arg = arg;
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	evtimer_add(slot->timer, &tv);
	return 0;
}

bool coral_ctl_client_closed(const struct coral_ctl_client *cc) { return coral_ipc_client_closed(cc->ipc); }

uint64_t coral_ctl_client_late(const struct coral_ctl_client *cc)
{
	return cc->late;
}

void coral_ctl_client_free(struct coral_ctl_client *cc)
{
	if (cc == NULL)
		return;
	coral_ipc_client_free(cc->ipc);
	for (int i = 0; i < CORAL_CTL_MAX_PENDING; i++)
		if (cc->pending[i].timer)
			event_free(cc->pending[i].timer);
	free(cc);
}

/* IPC tests: a real Unix-socket server on libevent in a thread, with the blocking client,
 * the async client (request ids, timeouts), refusal of oversize and undecodable frames,
 * the client cap, and backpressure of a client that does not read its answers. */
#include "ctl.h"
#include "errors.h"
#include "frame.h"
#include "ipc.h"
#include "util.h"

#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char sock_path[108];
static struct event_base *base;
static struct coral_ipc_server *srv;
static pthread_t loop_thread;
static _Atomic uint64_t c_frames, c_refused;
static _Atomic uint32_t c_clients;
static char big[8000];

/* The test service: ping is answered, status never is (to test timeouts), config is
 * answered with an 8 KB error text (to fill queues). */
static void on_frame(void *arg, struct coral_ipc_conn *conn, const uint8_t *data, uint32_t len)
{
	(void)arg;
	Coral__CtlRequest *req = coral_ctl_request_decode(data, len);
	if (req == NULL) {
		coral_ipc_conn_refuse(conn, "undecodable request");
		return;
	}
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.request_id = req->hdr ? req->hdr->request_id : 0;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.hdr = &hdr;
	Coral__PingReply pr = CORAL__PING_REPLY__INIT;
	if (req->body_case == CORAL__CTL_REQUEST__BODY_PING) {
		pr.sent_ns = req->ping->sent_ns;
		resp.body_case = CORAL__CTL_RESPONSE__BODY_PING;
		resp.ping = &pr;
		coral_ipc_conn_send(conn, &resp.base);
	} else if (req->body_case == CORAL__CTL_REQUEST__BODY_CONFIG) {
		resp.error = big;
		coral_ipc_conn_send(conn, &resp.base);
	}
	coral_ctl_request_free(req);
}

static void *run_loop(void *arg)
{
	event_base_dispatch(arg);
	return NULL;
}

static void start_server(int max_clients, size_t out_queue, bool threaded)
{
	evthread_use_pthreads();
	memset(big, 'b', sizeof(big) - 1);
	snprintf(sock_path, sizeof(sock_path), "/tmp/coral-ipc-test-%d.sock", (int)getpid());
	atomic_store(&c_frames, 0);
	atomic_store(&c_refused, 0);
	base = event_base_new();
	struct coral_ipc_server_opts o = {
		.path = sock_path, .max_frame = 1 << 20, .max_clients = max_clients,
		.out_queue = out_queue, .admin_uid = -1, .admin_gid = -1, .on_frame = on_frame,
		.counters = {.frames = &c_frames, .refused = &c_refused, .clients = &c_clients},
	};
	char err[256];
	srv = coral_ipc_server_new(base, &o, err, sizeof(err));
	cr_assert_not_null(srv, "%s", err);
	if (threaded)
		pthread_create(&loop_thread, NULL, run_loop, base);
}

static void stop_server(bool threaded)
{
	if (threaded) {
		event_base_loopbreak(base);
		pthread_join(loop_thread, NULL);
	}
	coral_ipc_server_free(srv);
	event_base_free(base);
	cr_expect_neq(access(sock_path, F_OK), 0, "socket removed");
}

static Coral__CtlRequest *ping_req(Coral__CtlRequest *req, Coral__Header *hdr, Coral__PingRequest *p)
{
	coral__header__init(hdr);
	coral__ping_request__init(p);
	coral__ctl_request__init(req);
	p->sent_ns = 77;
	req->hdr = hdr;
	req->body_case = CORAL__CTL_REQUEST__BODY_PING;
	req->ping = p;
	return req;
}

/* True once the peer has closed fd (read returns 0) within ms. */
static bool closed_by_peer(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char buf[256];
	uint64_t end = coral_now_mono_ns() + (uint64_t)ms * 1000000ull;
	while (coral_now_mono_ns() < end) {
		if (poll(&p, 1, 50) > 0) {
			ssize_t n = read(fd, buf, sizeof(buf));
			if (n == 0 || (n < 0 && errno == ECONNRESET))
				return true;
		}
	}
	return false;
}

Test(ipc, blocking_call)
{
	start_server(8, 1 << 20, true);
	Coral__CtlRequest req;
	Coral__Header hdr;
	Coral__PingRequest p;
	Coral__CtlResponse *resp = NULL;
	char err[256];
	for (int i = 0; i < 3; i++) {
		int rc = coral_ctl_call(sock_path, ping_req(&req, &hdr, &p), 1 << 20, 2000, &resp, err,
					sizeof(err));
		cr_assert_eq(rc, 0, "%s", err);
		cr_expect_eq(resp->body_case, CORAL__CTL_RESPONSE__BODY_PING);
		cr_expect_eq(resp->ping->sent_ns, 77);
		cr_expect_eq(resp->hdr->request_id, hdr.request_id);
		coral_ctl_response_free(resp);
	}
	/* no answer: the call times out */
	Coral__StatusRequest sr = CORAL__STATUS_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_STATUS;
	req.status = &sr;
	cr_expect_eq(coral_ctl_call(sock_path, &req, 1 << 20, 100, &resp, err, sizeof(err)),
		     CORAL_ETIMEDOUT);
	cr_expect(strstr(err, "no answer") != NULL, "%s", err);
	stop_server(true);
	cr_expect_eq(coral_ctl_call(sock_path, &req, 1 << 20, 100, &resp, err, sizeof(err)),
		     CORAL_ENOTRUNNING);
}

struct done_count {
	int ok, timedout, other;
	uint64_t ids[4];
};

static void on_done(void *arg, int err, const Coral__CtlResponse *resp)
{
	struct done_count *d = arg;
	if (err == 0 && resp && resp->body_case == CORAL__CTL_RESPONSE__BODY_PING)
		d->ok++;
	else if (err == CORAL_ETIMEDOUT)
		d->timedout++;
	else
		d->other++;
}

Test(ipc, async_calls_with_ids_and_timeouts)
{
	start_server(8, 1 << 20, false);
	struct coral_ctl_client *cc = coral_ctl_client_new(base, sock_path, 1 << 20);
	cr_assert_not_null(cc);
	struct done_count d = {0};
	Coral__CtlRequest req;
	Coral__Header hdr;
	Coral__PingRequest p;
	for (int i = 0; i < 5; i++)
		cr_assert_eq(coral_ctl_client_call(cc, ping_req(&req, &hdr, &p), 2000, on_done, &d), 0);
	Coral__StatusRequest sr = CORAL__STATUS_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_STATUS;
	req.status = &sr;
	cr_assert_eq(coral_ctl_client_call(cc, &req, 100, on_done, &d), 0);
	uint64_t end = coral_now_mono_ns() + 3000000000ull;
	while (d.ok + d.timedout + d.other < 6 && coral_now_mono_ns() < end)
		event_base_loop(base, EVLOOP_ONCE);
	cr_expect_eq(d.ok, 5);
	cr_expect_eq(d.timedout, 1);
	cr_expect_eq(d.other, 0);
	/* the pending table is bounded: the 65th waiting call is refused, not queued */
	int accepted = 0, busy = 0;
	for (int i = 0; i < CORAL_CTL_MAX_PENDING + 1; i++) {
		int rc = coral_ctl_client_call(cc, &req, 50, on_done, &d);
		accepted += rc == 0;
		busy += rc == CORAL_EBUSY;
	}
	cr_expect_eq(accepted, CORAL_CTL_MAX_PENDING);
	cr_expect_eq(busy, 1);
	end = coral_now_mono_ns() + 3000000000ull;
	while (d.timedout < 1 + CORAL_CTL_MAX_PENDING && coral_now_mono_ns() < end)
		event_base_loop(base, EVLOOP_ONCE);
	cr_expect_eq(d.timedout, 1 + CORAL_CTL_MAX_PENDING);
	coral_ctl_client_free(cc);
	stop_server(false);
}

Test(ipc, oversize_frame_closes_the_connection)
{
	start_server(8, 1 << 20, true);
	int fd;
	cr_assert_eq(coral_ipc_connect(sock_path, &fd), 0);
	uint8_t hdr[4] = {0x00, 0x20, 0x00, 0x00}; /* 2 MiB > max_frame */
	cr_assert_eq(write(fd, hdr, 4), 4);
	cr_expect(closed_by_peer(fd, 2000));
	close(fd);
	cr_expect_eq(atomic_load(&c_refused), 1);
	stop_server(true);
}

Test(ipc, zero_and_garbage_frames_close_the_connection)
{
	start_server(8, 1 << 20, true);
	int fd;
	cr_assert_eq(coral_ipc_connect(sock_path, &fd), 0);
	uint8_t zero[4] = {0, 0, 0, 0};
	cr_assert_eq(write(fd, zero, 4), 4);
	cr_expect(closed_by_peer(fd, 2000));
	close(fd);
	cr_assert_eq(coral_ipc_connect(sock_path, &fd), 0);
	uint8_t garbage[] = {0, 0, 0, 5, 0x0f, 0xff, 0xff, 0xff, 0xff};
	cr_assert_eq(write(fd, garbage, sizeof(garbage)), (ssize_t)sizeof(garbage));
	cr_expect(closed_by_peer(fd, 2000));
	close(fd);
	cr_expect_eq(atomic_load(&c_refused), 2);
	stop_server(true);
}

Test(ipc, client_cap)
{
	start_server(2, 1 << 20, true);
	int fds[3];
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(coral_ipc_connect(sock_path, &fds[i]), 0);
		usleep(50000); /* let the server accept in order */
	}
	cr_expect(closed_by_peer(fds[2], 2000), "the third client is refused");
	cr_expect(!closed_by_peer(fds[0], 100), "the first stays");
	cr_expect_eq(atomic_load(&c_refused), 1);
	cr_expect_eq(atomic_load(&c_clients), 2);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	stop_server(true);
}

Test(ipc, slow_reader_is_paused_then_served)
{
	start_server(8, 4096, true);
	int fd;
	cr_assert_eq(coral_ipc_connect(sock_path, &fd), 0);
	/* 100 requests whose answers are 8 KB each; read none of them yet */
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__ConfigRequest cfg = CORAL__CONFIG_REQUEST__INIT;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.hdr = &hdr;
	req.body_case = CORAL__CTL_REQUEST__BODY_CONFIG;
	req.config = &cfg;
	uint8_t *buf;
	size_t len;
	hdr.request_id = 1;
	cr_assert_eq(coral_frame_encode(&req.base, 1 << 20, &buf, &len), 0);
	uint64_t deadline = coral_now_mono_ns() + 5000000000ull;
	/* one write of 100 pipelined requests: 100 small writes would each hold a kernel buffer
	 * of their own against a server that (rightly) no longer reads them */
	uint8_t *all = malloc(100 * len);
	for (int i = 0; i < 100; i++)
		memcpy(all + i * len, buf, len);
	cr_assert_eq(coral_frame_write_fd(fd, all, 100 * len, deadline), 0);
	free(all);
	free(buf);
	usleep(300000);
	uint64_t read_while_stalled = atomic_load(&c_frames);
	cr_expect_lt(read_while_stalled, 100, "the server stopped reading a client that does not read");
	/* now read every answer: the server resumes and answers all 100 */
	int answers = 0;
	while (answers < 100) {
		uint8_t *payload;
		uint32_t plen;
		if (coral_frame_read_fd(fd, 1 << 20, deadline, &payload, &plen) != 0)
			break;
		free(payload);
		answers++;
	}
	cr_expect_eq(answers, 100);
	cr_expect_eq(atomic_load(&c_frames), 100);
	close(fd);
	stop_server(true);
}

Test(ipc, admin_policy)
{
	uid_t me = geteuid();
	cr_expect(coral_ipc_is_admin(0, 0, -1, -1), "root");
	cr_expect(coral_ipc_is_admin(me, 12345, -1, -1), "the daemons' own uid");
	cr_expect(coral_ipc_is_admin(4001, 4001, 4001, -1), "admin_uid");
	cr_expect(coral_ipc_is_admin(4002, 990, -1, 990), "admin_gid");
	if (me != 4003)
		cr_expect(!coral_ipc_is_admin(4003, 4003, 4001, 990), "anyone else is read-only");
}

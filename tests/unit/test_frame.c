/* Framing tests: a frame fed one split at every byte boundary, oversize, zero length,
 * garbage, and a truncated message, through the same evbuffer path the daemons use; the
 * blocking reader, the kept-buffer reader of libcoral's sessions, and the gathered send of
 * a large frame. */
#include "ctl.h"
#include "errors.h"
#include "frame.h"
#include "util.h"

#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint8_t *sample(size_t *len)
{
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.sender = "test";
	hdr.request_id = 424242;
	Coral__PingRequest ping = CORAL__PING_REQUEST__INIT;
	ping.sent_ns = 123456789;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.hdr = &hdr;
	req.body_case = CORAL__CTL_REQUEST__BODY_PING;
	req.ping = &ping;
	uint8_t *buf;
	cr_assert_eq(coral_frame_encode(&req.base, 1 << 20, &buf, len), 0);
	return buf;
}

static void check_decoded(const uint8_t *data, uint32_t len)
{
	Coral__CtlRequest *r = coral_ctl_request_decode(data, len);
	cr_assert_not_null(r);
	cr_expect_eq(r->hdr->request_id, 424242);
	cr_expect_eq(r->body_case, CORAL__CTL_REQUEST__BODY_PING);
	cr_expect_eq(r->ping->sent_ns, 123456789);
	coral_ctl_request_free(r);
}

Test(frame, split_at_every_byte_boundary)
{
	size_t len;
	uint8_t *buf = sample(&len);
	/* two frames back to back, cut once at every position */
	uint8_t two[512];
	cr_assert_lt(2 * len, sizeof(two));
	memcpy(two, buf, len);
	memcpy(two + len, buf, len);
	for (size_t cut = 0; cut <= 2 * len; cut++) {
		struct evbuffer *in = evbuffer_new();
		int frames = 0;
		const uint8_t *p;
		uint32_t n;
		evbuffer_add(in, two, cut);
		while (coral_frame_next(in, 1 << 20, &p, &n) == 1) {
			check_decoded(p, n);
			coral_frame_consume(in, n);
			frames++;
		}
		cr_expect_eq(frames, (int)(cut / len), "cut %zu: %d frames early", cut, frames);
		evbuffer_add(in, two + cut, 2 * len - cut);
		while (coral_frame_next(in, 1 << 20, &p, &n) == 1) {
			check_decoded(p, n);
			coral_frame_consume(in, n);
			frames++;
		}
		cr_expect_eq(frames, 2, "cut %zu", cut);
		cr_expect_eq(evbuffer_get_length(in), 0);
		evbuffer_free(in);
	}
	free(buf);
}

Test(frame, one_byte_at_a_time)
{
	size_t len;
	uint8_t *buf = sample(&len);
	struct evbuffer *in = evbuffer_new();
	int frames = 0;
	for (size_t i = 0; i < len; i++) {
		const uint8_t *p;
		uint32_t n;
		evbuffer_add(in, buf + i, 1);
		int rc = coral_frame_next(in, 1 << 20, &p, &n);
		cr_assert_geq(rc, 0);
		if (rc == 1) {
			check_decoded(p, n);
			coral_frame_consume(in, n);
			frames++;
		}
		cr_expect_eq(frames, i == len - 1 ? 1 : 0);
	}
	evbuffer_free(in);
	free(buf);
}

Test(frame, oversize_refused_from_the_header_alone)
{
	uint8_t hdr[4] = {0x00, 0x10, 0x00, 0x01}; /* 1 MiB + 1 */
	struct evbuffer *in = evbuffer_new();
	evbuffer_add(in, hdr, 4);
	const uint8_t *p;
	uint32_t n;
	cr_expect_eq(coral_frame_next(in, 1 << 20, &p, &n), CORAL_ETOOBIG);
	uint32_t ln;
	cr_expect_eq(coral_frame_check(hdr, 4, 1 << 20, &ln), CORAL_ETOOBIG);
	uint8_t big[4] = {0xff, 0xff, 0xff, 0xff};
	cr_expect_eq(coral_frame_check(big, 4, 1 << 20, &ln), CORAL_ETOOBIG);
	evbuffer_free(in);
}

Test(frame, oversize_refused_when_encoding)
{
	Coral__Header hdr = CORAL__HEADER__INIT;
	char name[2048];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	hdr.sender = name;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.hdr = &hdr;
	uint8_t *buf;
	size_t len;
	cr_expect_eq(coral_frame_encode(&req.base, 1024, &buf, &len), CORAL_ETOOBIG);
	struct evbuffer *out = evbuffer_new();
	cr_expect_eq(coral_frame_append(out, &req.base, 1024), CORAL_ETOOBIG);
	cr_expect_eq(evbuffer_get_length(out), 0, "nothing half-written");
	evbuffer_free(out);
}

Test(frame, zero_length_refused)
{
	uint8_t zero[4] = {0, 0, 0, 0};
	uint32_t n;
	cr_expect_eq(coral_frame_check(zero, 4, 1 << 20, &n), CORAL_EEMPTY);
	Coral__CtlRequest empty = CORAL__CTL_REQUEST__INIT;
	struct evbuffer *out = evbuffer_new();
	cr_expect_eq(coral_frame_append(out, &empty.base, 1024), CORAL_EEMPTY);
	evbuffer_free(out);
}

Test(frame, garbage_does_not_decode)
{
	/* deterministic junk: wire type 7 does not exist */
	uint8_t junk[64];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0xff - i * 7);
	cr_expect_null(coral_ctl_request_decode(junk, sizeof(junk)));
	uint8_t bad_wire[] = {0x0f, 0x01, 0x02};
	cr_expect_null(coral_ctl_request_decode(bad_wire, sizeof(bad_wire)));
}

Test(frame, truncated_message_does_not_decode)
{
	size_t len;
	uint8_t *buf = sample(&len);
	/* the frame claims its true length but the message inside is cut: every strict prefix
	 * that ends inside a field must fail to decode rather than produce a wrong request */
	int undecodable = 0;
	for (size_t cut = 1; cut < len - 4; cut++) {
		Coral__CtlRequest *r = coral_ctl_request_decode(buf + 4, cut);
		if (r == NULL)
			undecodable++;
		else {
			/* a prefix that ends between fields decodes to fewer fields, never wrong ones */
			if (r->hdr && r->hdr->request_id)
				cr_expect_eq(r->hdr->request_id, 424242);
			coral_ctl_request_free(r);
		}
	}
	cr_expect_gt(undecodable, 0);
	free(buf);
}

Test(frame, blocking_fd_roundtrip_and_timeout)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	size_t len;
	uint8_t *buf = sample(&len);
	uint64_t deadline = coral_now_mono_ns() + 1000000000ull;
	cr_assert_eq(coral_frame_write_fd(sv[0], buf, len, deadline), 0);
	uint8_t *payload;
	uint32_t plen;
	cr_assert_eq(coral_frame_read_fd(sv[1], 1 << 20, deadline, &payload, &plen), 0);
	check_decoded(payload, plen);
	free(payload);
	/* nothing more to read: the deadline passes */
	uint64_t t0 = coral_now_mono_ns();
	cr_expect_eq(coral_frame_read_fd(sv[1], 1 << 20, t0 + 50000000ull, &payload, &plen),
		     CORAL_ETIMEDOUT);
	close(sv[0]);
	cr_expect_eq(coral_frame_read_fd(sv[1], 1 << 20, t0 + 1000000000ull, &payload, &plen),
		     CORAL_ECLOSED);
	close(sv[1]);
	free(buf);
}

/* A CR answer with a block of n pseudo-random bytes, packed as one frame */
static uint8_t *big_answer(size_t n, uint8_t **data, size_t *len)
{
	*data = malloc(n);
	cr_assert_not_null(*data);
	uint64_t seed = 7;
	for (size_t i = 0; i < n; i++)
		(*data)[i] = (uint8_t)coral_splitmix64(&seed);
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.request_id = 99;
	Coral__GcsCrReadReply r = CORAL__GCS_CR_READ_REPLY__INIT;
	r.scn = 1234;
	r.data.data = *data;
	r.data.len = n;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.hdr = &hdr;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GCS_CR_READ;
	resp.gcs_cr_read = &r;
	uint8_t *buf;
	cr_assert_eq(coral_frame_encode(&resp.base, 1 << 20, &buf, len), 0);
	return buf;
}

static void check_answer(const uint8_t *payload, uint32_t plen, const uint8_t *data, size_t n)
{
	Coral__CtlResponse *r = coral_ctl_response_decode(payload, plen);
	cr_assert_not_null(r);
	cr_assert_not_null(r->gcs_cr_read);
	cr_expect_eq(r->hdr->request_id, 99);
	cr_expect_eq(r->gcs_cr_read->scn, 1234);
	cr_assert_eq(r->gcs_cr_read->data.len, n);
	cr_expect_eq(memcmp(r->gcs_cr_read->data.data, data, n), 0);
	coral_ctl_response_free(r);
}

struct dribble {
	int fd;
	const uint8_t *buf;
	size_t len;
};

/* writes the frame in 7 pieces, 2 ms apart */
static void *dribble_thread(void *arg)
{
	struct dribble *d = arg;
	size_t step = d->len / 7 + 1;
	for (size_t off = 0; off < d->len; off += step) {
		size_t k = d->len - off < step ? d->len - off : step;
		cr_assert_eq(write(d->fd, d->buf + off, k), (ssize_t)k);
		usleep(2000);
	}
	return NULL;
}

Test(frame, kept_buffer_reader_in_pieces_timeout_trailing_bytes_and_close)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(coral_sock_blocking(sv[1], 20), 0);
	uint8_t *data;
	size_t len, n = 40000;  /* larger than the reader's first buffer: it grows */
	uint8_t *buf = big_answer(n, &data, &len);
	struct coral_frame_rd rd = {0};
	struct dribble d = {sv[0], buf, len};
	pthread_t th;
	pthread_create(&th, NULL, dribble_thread, &d);
	const uint8_t *payload;
	uint32_t plen;
	uint64_t t0 = coral_now_mono_ns();
	cr_assert_eq(coral_frame_read_rd(sv[1], &rd, 1 << 20, t0 + 2000000000ull, &payload, &plen), 0);
	pthread_join(th, NULL);
	check_answer(payload, plen, data, n);
	/* again on the same buffer, whole */
	cr_assert_eq(write(sv[0], buf, len), (ssize_t)len);
	cr_assert_eq(coral_frame_read_rd(sv[1], &rd, 1 << 20, t0 + 2000000000ull, &payload, &plen), 0);
	check_answer(payload, plen, data, n);
	/* nothing comes: the deadline holds though the socket blocks (20 ms slices) */
	t0 = coral_now_mono_ns();
	cr_expect_eq(coral_frame_read_rd(sv[1], &rd, 1 << 20, t0 + 60000000ull, &payload, &plen), CORAL_ETIMEDOUT);
	uint64_t took = coral_now_mono_ns() - t0;
	cr_expect_geq(took, 60000000ull);
	cr_expect_lt(took, 2000000000ull, "a reader past its deadline returns (took %llu ns)", (unsigned long long)took);
	/* two answers where one call expects one: the second is a stale or foreign answer */
	size_t slen;
	uint8_t *small = sample(&slen);
	uint8_t two[512];
	cr_assert_lt(2 * slen, sizeof(two));
	memcpy(two, small, slen);
	memcpy(two + slen, small, slen);
	cr_assert_eq(write(sv[0], two, 2 * slen), (ssize_t)(2 * slen));
	usleep(10000);
	cr_expect_eq(coral_frame_read_rd(sv[1], &rd, 1 << 20, coral_now_mono_ns() + 1000000000ull, &payload, &plen),
		     CORAL_EDECODE);
	/* the request side: packed into the same buffer */
	Coral__PingRequest ping = CORAL__PING_REQUEST__INIT;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_PING;
	req.ping = &ping;
	size_t plen2;
	cr_assert_eq(coral_frame_pack_rd(&rd, &req.base, 1 << 20, &plen2), 0);
	cr_expect_eq(coral_frame_pack_rd(&rd, &req.base, plen2 - CORAL_FRAME_HDR - 1, &plen2), CORAL_ETOOBIG);
	close(sv[0]);
	cr_expect_eq(coral_frame_read_rd(sv[1], &rd, 1 << 20, coral_now_mono_ns() + 1000000000ull, &payload, &plen),
		     CORAL_ECLOSED);
	close(sv[1]);
	coral_frame_rd_free(&rd);
	free(small);
	free(buf);
	free(data);
}

/* coral_frame_send gathers a block-sized message: the block's bytes go to sendmsg() where
 * they are; what the socket does not take at once is queued and the loop sends it */
Test(frame, large_frame_sent_gathered_arrives_whole)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int small = 4096;
	/* a small send buffer: most of a 300 KB answer is queued, not sent at once */
	cr_assert_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	struct event_base *base = event_base_new();
	evutil_make_socket_nonblocking(sv[0]);
	struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	cr_assert_not_null(bev);
	bufferevent_enable(bev, EV_WRITE);
	uint8_t *data;
	size_t len;
	size_t sizes[] = {8192, 300000};
	for (int k = 0; k < 2; k++) {
		size_t n = sizes[k];
		uint8_t *buf = big_answer(n, &data, &len);
		Coral__CtlResponse *resp = coral_ctl_response_decode(buf + CORAL_FRAME_HDR, len - CORAL_FRAME_HDR);
		cr_assert_not_null(resp);
		cr_assert_eq(coral_frame_send(bev, &resp->base, 1 << 20), 0);
		/* the message's memory may change or go once coral_frame_send returns */
		memset(resp->gcs_cr_read->data.data, 0xaa, n);
		coral_ctl_response_free(resp);
		uint8_t *got = malloc(len);
		size_t have = 0;
		while (have < len) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			ssize_t r = recv(sv[1], got + have, len - have, MSG_DONTWAIT);
			if (r > 0)
				have += (size_t)r;
		}
		cr_expect_eq(memcmp(got, buf, len), 0, "the %zu-byte answer arrives as packed", n);
		free(got);
		free(buf);
		free(data);
	}
	bufferevent_free(bev);
	event_base_free(base);
	close(sv[1]);
}

Test(frame, arena_decode_fits_or_fails)
{
	uint8_t *data;
	size_t len;
	uint8_t *buf = big_answer(8192, &data, &len);
	_Alignas(16) static uint8_t mem[8192 + 1024];
	struct coral_pb_arena a;
	coral_pb_arena_init(&a, mem, sizeof(mem));
	Coral__CtlResponse *r = coral__ctl_response__unpack(&a.al, len - CORAL_FRAME_HDR, buf + CORAL_FRAME_HDR);
	cr_assert_not_null(r);
	cr_expect((uint8_t *)r >= mem && (uint8_t *)r < mem + sizeof(mem), "the message is in the arena");
	cr_expect(r->gcs_cr_read->data.data >= mem && r->gcs_cr_read->data.data + 8192 <= mem + sizeof(mem));
	cr_expect_eq(memcmp(r->gcs_cr_read->data.data, data, 8192), 0);
	coral__ctl_response__free_unpacked(r, &a.al);  /* a no-op, as promised */
	/* too small for the block: the decode fails, nothing is written past the arena */
	coral_pb_arena_init(&a, mem, 4096);
	mem[4096] = 0x5a;
	cr_expect_null(coral__ctl_response__unpack(&a.al, len - CORAL_FRAME_HDR, buf + CORAL_FRAME_HDR));
	cr_expect_eq(mem[4096], 0x5a);
	free(buf);
	free(data);
}

/* The rest of a large frame is read without waiting for the event loop's next turns (libevent
 * 2.1 reads 4 KiB per turn): a plain socket bufferevent's input takes it at once, stays
 * usable by the loop afterwards, and an empty socket gives 0. */
Test(frame, rest_of_a_frame_read_at_once_into_a_bufferevent)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct event_base *base = event_base_new();
	evutil_make_socket_nonblocking(sv[0]);
	struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	cr_assert_not_null(bev);
	bufferevent_enable(bev, EV_READ);
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t out[8222], got[8222 + 100];
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + 1);
	cr_assert_eq(write(sv[1], out, sizeof(out)), (ssize_t)sizeof(out));
	size_t k = coral_bev_read_more(bev, sizeof(out));
	cr_expect_eq(k, sizeof(out), "read %zu of %zu bytes at once", k, sizeof(out));
	cr_expect_eq(evbuffer_get_length(in), sizeof(out));
	cr_expect_eq(coral_bev_read_more(bev, 1), 0, "nothing more to read");
	/* the loop's own reads still land behind what was read here */
	cr_assert_eq(write(sv[1], out, 100), 100);
	for (int i = 0; i < 100 && evbuffer_get_length(in) < sizeof(out) + 100; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	cr_assert_eq(evbuffer_get_length(in), sizeof(out) + 100);
	cr_assert_eq(evbuffer_remove(in, got, sizeof(got)), (int)sizeof(got));
	cr_expect_eq(memcmp(got, out, sizeof(out)), 0);
	cr_expect_eq(memcmp(got + sizeof(out), out, 100), 0);
	bufferevent_free(bev);
	event_base_free(base);
	close(sv[1]);
}

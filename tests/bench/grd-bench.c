/* grd-bench: the measuring half of scripts/bench-grd.sh. Each subcommand measures one thing
 * and the peer it is judged against, in the same run, alternating, and prints both and their
 * ratio; nothing is asserted.
 *
 *   grd-bench lookup [-c CONF -n NODE] [ROUNDS] [LOOKUPS]
 *       master lookup from the SGA (a running node's, or a map published in this process)
 *       against a plain array read of the bucket owner and a raw loopback TCP round trip
 *   grd-bench load -c CONF -n NODE COUNT ID1 MODE [WINDOW]
 *       acquires TX:ID1:0 .. TX:ID1:COUNT-1 in MODE through the node's grdd, WINDOW at a time
 *   grd-bench remaster -c CONF -n NODE COUNT
 *       COUNT manual remasters of a resource, then of a bucket, each alternating with a put
 *       of the same size class to raftd's store (one consensus commit, the floor of a move)
 *   grd-bench copy BYTES [ROUNDS]
 *       a raw loopback TCP transfer of BYTES: the floor of shipping that much master state */
#include "conf.h"
#include "ctl.h"
#include "kv.h"
#include "map.h"
#include "errors.h"
#include "grd.h"
#include "sga.h"
#include "util.h"

#include "bench_util.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct coral_conf conf;
static const struct coral_node_conf *node;

/* ---- lookup --------------------------------------------------------------------------- */

static volatile uint64_t sink;

static int cmd_lookup(int argc, char **argv)
{
	int rounds = argc > 0 ? atoi(argv[0]) : 5;
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
	if (rounds < 1 || n < 1000) {
		fprintf(stderr, "grd-bench lookup: ROUNDS >= 1, LOOKUPS >= 1000\n");
		return 2;
	}
	struct coral_sga sga;
	const struct coral_grd_map_sga *m = NULL;
	struct coral_grd_map_sga *own = NULL;
	const char *where;
	char wbuf[128];
	if (node) {
		if (coral_sga_attach(&sga, &conf, node, true) != 0) {
			fprintf(stderr, "grd-bench: %s\n", sga.errmsg);
			return 1;
		}
		m = coral_grd_map_sga(&sga);
		if (m == NULL || m->version == 0) {
			fprintf(stderr, "grd-bench: node %lld has no map published yet\n", (long long)node->id);
			return 1;
		}
		snprintf(wbuf, sizeof(wbuf), "node %lld's SGA, map version %llu, %u resource overrides",
			 (long long)node->id, (unsigned long long)m->version, m->nres);
		where = wbuf;
	} else {
		struct coral_conf cf;
		memset(&cf, 0, sizeof(cf));
		cf.grd.max_overrides = 1024;
		size_t sz = coral_grd_map_sga_size(&cf);
		own = calloc(1, sz);
		if (own == NULL || coral_grd_map_sga_init(own, sz, &cf, NULL) != 0)
			return 1;
		/* three members, 500 resource overrides, one lost node: a busy map */
		struct grd_res_override ro[500];
		for (int i = 0; i < 500; i++)
			ro[i] = (struct grd_res_override){{CORAL_RES_BLOCK, 0, 1, (uint64_t)i * 7}, (uint32_t)(1 + i % 3)};
		struct coral_grd_lost lost = {4, 1, 2, 4, {1, 2, 3, 4}};
		struct grd_map_def d = {.version = 3, .nmembers = 3, .members = {1, 2, 3}, .res = ro,
					      .nres = 500, .lost = &lost, .nlost = 1};
		if (grd_map_publish(own, &d) != 0)
			return 1;
		m = own;
		where = "a map published in this process (3 members, 500 resource overrides, 1 lost node)";
	}
	/* the resources: blocks of a few files and enqueues, in random order */
	struct coral_resid *ids = malloc(n * sizeof(*ids));
	if (ids == NULL)
		return 1;
	uint64_t seed = 42;
	for (size_t i = 0; i < n; i++) {
		uint64_t r = coral_splitmix64(&seed);
		if (r & 1)
			ids[i] = (struct coral_resid){CORAL_RES_BLOCK, 0, (uint32_t)(1 + (r >> 1) % 8), (r >> 8) % 1000000};
		else
			ids[i] = (struct coral_resid){CORAL_RES_TYPE('T', 'X'), 0, (uint32_t)((r >> 1) % 100), (r >> 8) % 100000};
	}
	struct bench_rt *lrt = malloc(sizeof(*lrt));
	if (lrt == NULL || bench_rt_start(lrt, 64, 64) != 0) {
		fprintf(stderr, "grd-bench: loopback socket: %s\n", strerror(errno));
		return 1;
	}
	size_t nrt = 20000;
	uint64_t *t_look = calloc((size_t)rounds, 8), *t_arr = calloc((size_t)rounds, 8), *t_rt = calloc((size_t)rounds, 8);
	if (!t_look || !t_arr || !t_rt)
		return 1;
	printf("master lookup from %s; %zu lookups per round, %d rounds, alternating\n", where, n, rounds);
	printf("%-6s %14s %14s %16s\n", "round", "lookup_ns", "array_ns", "loopback_rt_ns");
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < 3; k++) {
			int which = (k + r) % 3;
			uint64_t t0 = coral_now_mono_ns(), acc = 0;
			if (which == 0) {
				struct coral_grd_where w;
				for (size_t i = 0; i < n; i++) {
					coral_grd_lookup(m, &ids[i], &w);
					acc += w.master;
				}
				t_look[r] = (coral_now_mono_ns() - t0) * 1000 / n;
			} else if (which == 1) {
				/* the floor: the same hash, one byte read, no sequence counter, no overrides */
				for (size_t i = 0; i < n; i++)
					acc += m->owner[coral_resid_bucket(&ids[i])];
				t_arr[r] = (coral_now_mono_ns() - t0) * 1000 / n;
			} else {
				/* what asking a daemon would cost at the least: one 64-byte round trip */
				for (size_t i = 0; i < nrt; i++)
					if (bench_rt_once(lrt) != 0)
						return 1;
				t_rt[r] = (coral_now_mono_ns() - t0) * 1000 / nrt;
			}
			sink += acc;
		}
		printf("%-6d %14.1f %14.1f %16.1f\n", r + 1, t_look[r] / 1000.0, t_arr[r] / 1000.0, t_rt[r] / 1000.0);
	}
	bench_rt_stop(lrt);
	free(lrt);
	double look = bench_median(t_look, (size_t)rounds) / 1000.0, arr = bench_median(t_arr, (size_t)rounds) / 1000.0,
	       rt = bench_median(t_rt, (size_t)rounds) / 1000.0;
	printf("median: lookup %.1f ns (goal < 100 ns), array read %.1f ns, loopback round trip %.0f ns\n", look, arr, rt);
	printf("ratio lookup/array %.2f, lookup/loopback %.4f (a lookup costs 1/%.0f of a round trip)\n", look / arr,
	       look / rt, rt / look);
	free(t_look);
	free(t_arr);
	free(t_rt);
	free(ids);
	free(own);
	if (node)
		coral_sga_detach(&sga);
	return 0;
}

/* ---- load: many locks through grdd's control socket ------------------------------------ */

struct load {
	struct event_base *base;
	struct coral_ctl_client *cc;
	uint64_t next, count, done, ok, failed, id1;
	const char *mode;
	uint32_t window, inflight;
	uint64_t *lat, *sent;
	int first_err;
	char first_msg[256];
};

static void load_pump(struct load *l);

static void load_done(void *arg, int err, const Coral__CtlResponse *resp)
{
	uint64_t *slot = arg;
	struct load *l = (struct load *)(uintptr_t)slot[1];
	uint64_t i = slot[0];
	free(slot);
	l->inflight--;
	l->done++;
	l->lat[i] = coral_now_mono_ns() - l->sent[i];
	int code = err ? err : resp->code;
	if (code == 0) {
		l->ok++;
	} else {
		if (l->failed++ == 0) {
			l->first_err = code;
			snprintf(l->first_msg, sizeof(l->first_msg), "%s", resp && resp->error ? resp->error : coral_strerror(code));
		}
	}
	load_pump(l);
}

static void load_pump(struct load *l)
{
	while (l->inflight < l->window && l->next < l->count) {
		char id[64];
		snprintf(id, sizeof(id), "TX:%llu:%llu", (unsigned long long)l->id1, (unsigned long long)l->next);
		Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
		Coral__Header hdr = CORAL__HEADER__INIT;
		Coral__GrdLockRequest body = CORAL__GRD_LOCK_REQUEST__INIT;
		hdr.sender = "grd-bench";
		req.hdr = &hdr;
		body.id = id;
		body.op = 1;
		body.mode = (char *)l->mode;
		req.body_case = CORAL__CTL_REQUEST__BODY_GRD_LOCK;
		req.grd_lock = &body;
		uint64_t *slot = malloc(2 * sizeof(uint64_t));
		if (slot == NULL)
			break;
		slot[0] = l->next;
		slot[1] = (uint64_t)(uintptr_t)l;
		l->sent[l->next] = coral_now_mono_ns();
		if (coral_ctl_client_call(l->cc, &req, 30000, load_done, slot) != 0) {
			free(slot);
			break;
		}
		l->next++;
		l->inflight++;
	}
	if (l->done == l->count || (l->inflight == 0 && l->next < l->count))
		event_base_loopbreak(l->base);
}

static int cmd_load(int argc, char **argv)
{
	if (argc < 3 || node == NULL) {
		fprintf(stderr, "usage: grd-bench load -c CONF -n NODE COUNT ID1 MODE [WINDOW]\n");
		return 2;
	}
	struct load l = {0};
	l.count = strtoull(argv[0], NULL, 10);
	l.id1 = strtoull(argv[1], NULL, 10);
	l.mode = argv[2];
	l.window = argc > 3 ? (uint32_t)atoi(argv[3]) : 128;
	if (l.count == 0 || l.window == 0 || l.window > 1000) {
		fprintf(stderr, "grd-bench load: COUNT >= 1, 1 <= WINDOW <= 1000\n");
		return 2;
	}
	char sock[CORAL_STR_MAX + 32];
	coral_conf_sock_path(node, "grdd", sock, sizeof(sock));
	l.base = event_base_new();
	l.cc = coral_ctl_client_new(l.base, sock, (size_t)conf.cluster.max_frame);
	l.lat = calloc(l.count, 8);
	l.sent = calloc(l.count, 8);
	if (l.base == NULL || l.cc == NULL || l.lat == NULL || l.sent == NULL)
		return 1;
	uint64_t t0 = coral_now_mono_ns();
	load_pump(&l);
	if (l.done < l.count && l.inflight > 0)
		event_base_dispatch(l.base);
	double secs = (double)(coral_now_mono_ns() - t0) / 1e9;
	printf("node %lld: %llu of %llu TX:%llu:* acquired in %s in %.2f s (%.0f/s, window %u), p50 %.2f ms, p99 %.2f ms",
	       (long long)node->id, (unsigned long long)l.ok, (unsigned long long)l.count,
	       (unsigned long long)l.id1, l.mode, secs, (double)l.ok / secs, l.window,
	       (double)bench_median(l.lat, l.done) / 1e6, (double)bench_pct(l.lat, l.done, 0.99) / 1e6);
	if (l.failed)
		printf("; %llu failed, the first: %s", (unsigned long long)l.failed, l.first_msg);
	printf("\n");
	coral_ctl_client_free(l.cc);
	event_base_free(l.base);
	free(l.lat);
	free(l.sent);
	return l.failed ? 1 : 0;
}

/* ---- remaster: manual moves against a bare consensus write ------------------------------ */

static Coral__CtlResponse *call(const char *daemon, Coral__CtlRequest *req, char *err, size_t errsz)
{
	char sock[CORAL_STR_MAX + 32];
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.sender = "grd-bench";
	req->hdr = &hdr;
	coral_conf_sock_path(node, daemon, sock, sizeof(sock));
	Coral__CtlResponse *resp = NULL;
	int rc = coral_ctl_call(sock, req, (size_t)conf.cluster.max_frame, 30000, &resp, err, errsz);
	req->hdr = NULL;
	if (rc != 0)
		return NULL;
	if (resp->code != 0) {
		snprintf(err, errsz, "%s", resp->error);
		coral_ctl_response_free(resp);
		return NULL;
	}
	return resp;
}

static int remaster_one(const char *target, uint32_t to, uint64_t *ns, uint64_t *freeze_us, char *err, size_t errsz)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GrdRemasterRequest body = CORAL__GRD_REMASTER_REQUEST__INIT;
	body.target = (char *)target;
	body.node = to;
	req.body_case = CORAL__CTL_REQUEST__BODY_GRD_REMASTER;
	req.grd_remaster = &body;
	uint64_t t0 = coral_now_mono_ns();
	Coral__CtlResponse *resp = call("grdd", &req, err, errsz);
	*ns = coral_now_mono_ns() - t0;
	if (resp == NULL)
		return -1;
	*freeze_us = resp->grd_remaster ? resp->grd_remaster->freeze_us : 0;
	coral_ctl_response_free(resp);
	return 0;
}

static int kv_put(int i, uint64_t *ns, char *err, size_t errsz)
{
	char key[64];
	uint8_t val[64] = {0};
	snprintf(key, sizeof(key), "bench/grd/%d", i);
	struct coral_kv_req kr;
	coral_kv_put(&kr, key, val, sizeof(val));
	uint64_t t0 = coral_now_mono_ns();
	Coral__CtlResponse *resp = call("raftd", &kr.req, err, errsz);
	*ns = coral_now_mono_ns() - t0;
	if (resp == NULL)
		return -1;
	coral_ctl_response_free(resp);
	return 0;
}

static int cmd_remaster(int argc, char **argv)
{
	if (argc < 1 || node == NULL) {
		fprintf(stderr, "usage: grd-bench remaster -c CONF -n NODE COUNT\n");
		return 2;
	}
	int count = atoi(argv[0]);
	if (count < 1) {
		fprintf(stderr, "grd-bench remaster: COUNT >= 1\n");
		return 2;
	}
	struct coral_sga sga;
	if (coral_sga_attach(&sga, &conf, node, true) != 0) {
		fprintf(stderr, "grd-bench: %s\n", sga.errmsg);
		return 1;
	}
	const struct coral_grd_map_sga *m = coral_grd_map_sga(&sga);
	if (m == NULL || m->nmembers < 2) {
		fprintf(stderr, "grd-bench: node %lld's map has fewer than two members\n", (long long)node->id);
		return 1;
	}
	uint64_t *mv[2], *fz[2], *put = calloc((size_t)count * 2, 8);
	for (int k = 0; k < 2; k++) {
		mv[k] = calloc((size_t)count, 8);
		fz[k] = calloc((size_t)count, 8);
		if (!mv[k] || !fz[k] || !put)
			return 1;
	}
	char err[CORAL_ERRMSG_MAX];
	int nput = 0, rc = 0;
	uint64_t seed = 7;
	static const char *what[2] = {"resource", "bucket"};
	for (int k = 0; k < 2 && rc == 0; k++) {
		for (int i = 0; i < count; i++) {
			/* a resource or bucket, and a member that is not its master now */
			struct coral_resid id = {CORAL_RES_TYPE('T', 'X'), 0, 900, (uint64_t)i};
			struct coral_grd_where w;
			coral_grd_lookup(m, &id, &w);
			char target[64];
			if (k == 0)
				coral_resid_format(&id, target, sizeof(target));
			else
				snprintf(target, sizeof(target), "%u", (unsigned)(coral_splitmix64(&seed) % CORAL_GRD_BUCKETS));
			uint32_t cur = k == 0 ? w.master : m->owner[atoi(target)];
			uint32_t to = m->members[0];
			for (uint32_t j = 0; j < m->nmembers && to == cur; j++)
				to = m->members[j];
			/* alternate which goes first */
			for (int s = 0; s < 2; s++) {
				bool mover = (s + i) % 2 == 0;
				if (mover && remaster_one(target, to, &mv[k][i], &fz[k][i], err, sizeof(err)) != 0) {
					fprintf(stderr, "grd-bench: remaster %s to node %u: %s\n", target, to, err);
					rc = 1;
					break;
				}
				if (!mover && kv_put(i, &put[nput++], err, sizeof(err)) != 0) {
					fprintf(stderr, "grd-bench: raftd put: %s\n", err);
					rc = 1;
					break;
				}
			}
			if (rc)
				break;
		}
	}
	if (rc == 0) {
		double p = (double)bench_median(put, (size_t)nput) / 1e6;
		printf("raftd put (one consensus commit through the control socket): median %.2f ms over %d\n", p, nput);
		for (int k = 0; k < 2; k++) {
			double a = (double)bench_median(mv[k], (size_t)count) / 1e6, f = (double)bench_median(fz[k], (size_t)count) / 1e3;
			printf("remaster of one %s: median %.2f ms end to end (p99 %.2f ms), frozen %.2f ms; "
			       "ratio to a raftd put %.2f\n",
			       what[k], a, (double)bench_pct(mv[k], (size_t)count, 0.99) / 1e6, f, a / p);
		}
	}
	for (int k = 0; k < 2; k++) {
		free(mv[k]);
		free(fz[k]);
	}
	free(put);
	coral_sga_detach(&sga);
	return rc;
}

/* ---- copy: the raw transfer floor ----------------------------------------------------- */

struct sink_arg {
	int fd;
	size_t bytes;
};

static void *sink_thread(void *arg)
{
	struct sink_arg *s = arg;
	uint8_t buf[65536];
	size_t left = s->bytes;
	while (left > 0) {
		ssize_t k = read(s->fd, buf, left < sizeof(buf) ? left : sizeof(buf));
		if (k <= 0)
			break;
		left -= (size_t)k;
	}
	uint8_t ack = 1;
	(void)!write(s->fd, &ack, 1);
	return NULL;
}

static int cmd_copy(int argc, char **argv)
{
	if (argc < 1) {
		fprintf(stderr, "usage: grd-bench copy BYTES [ROUNDS]\n");
		return 2;
	}
	size_t bytes = strtoull(argv[0], NULL, 10);
	int rounds = argc > 1 ? atoi(argv[1]) : 5;
	if (bytes == 0 || rounds < 1)
		return 2;
	uint8_t *buf = malloc(65536);
	uint64_t *t = calloc((size_t)rounds, 8);
	if (buf == NULL || t == NULL)
		return 1;
	memset(buf, 0x5a, 65536);
	for (int r = 0; r < rounds; r++) {
		struct bench_pair p;
		if (bench_tcp_pair(&p) != 0)
			return 1;
		struct sink_arg s = {p.b, bytes};
		pthread_t th;
		uint64_t t0 = coral_now_mono_ns();
		pthread_create(&th, NULL, sink_thread, &s);
		for (size_t left = bytes; left > 0;) {
			size_t k = left < 65536 ? left : 65536;
			if (bench_full_io(p.a, buf, k, true) != 0)
				return 1;
			left -= k;
		}
		uint8_t ack;
		if (bench_full_io(p.a, &ack, 1, false) != 0)
			return 1;
		t[r] = coral_now_mono_ns() - t0;
		pthread_join(th, NULL);
		close(p.a);
		close(p.b);
	}
	printf("%.3f\n", (double)bench_median(t, (size_t)rounds) / 1e6);
	free(t);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cpath = NULL, *nkey = NULL;
	int i = 1;
	if (argc < 2) {
		fprintf(stderr, "usage: grd-bench lookup|load|remaster|copy ... (see the file's head)\n");
		return 2;
	}
	const char *cmd = argv[i++];
	while (i + 1 < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-c") == 0)
			cpath = argv[i + 1];
		else if (strcmp(argv[i], "-n") == 0)
			nkey = argv[i + 1];
		else
			break;
		i += 2;
	}
	if (cpath) {
		if (coral_conf_load(&conf, cpath) != 0) {
			fprintf(stderr, "grd-bench: %s\n", conf.errmsg);
			return 1;
		}
		node = coral_conf_node(&conf, nkey ? nkey : "1");
		if (node == NULL) {
			fprintf(stderr, "grd-bench: no node %s in %s\n", nkey ? nkey : "1", cpath);
			return 1;
		}
	}
	if (strcmp(cmd, "lookup") == 0)
		return cmd_lookup(argc - i, argv + i);
	if (strcmp(cmd, "load") == 0)
		return cmd_load(argc - i, argv + i);
	if (strcmp(cmd, "remaster") == 0)
		return cmd_remaster(argc - i, argv + i);
	if (strcmp(cmd, "copy") == 0)
		return cmd_copy(argc - i, argv + i);
	fprintf(stderr, "grd-bench: no command %s\n", cmd);
	return 2;
}

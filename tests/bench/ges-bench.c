/* ges-bench: lmdd's global enqueues against Redis, each part alternating with its peer in
 * the same run, every figure printed with the ratio. Asserts nothing (scripts/bench-ges.sh
 * starts the cluster and redis-server and finds the resource names).
 *
 *   ges-bench -c CONF --remote FILE --local FILE [--rounds R] [--seconds S] [--clients N]
 *             [--redis-port P]
 *
 * FILE: resource names, one a line, mastered by node 2 (remote) or node 1 (local); sessions
 * run on node 1.
 *  1. one client: an EX lock + unlock of a remote-mastered resource, against Redis SET NX PX
 *     + a compare-and-delete script (the usual Redis lock) and a raw loopback round trip;
 *     p50 and p99 (goal: Coral's p50 at most 1.2x Redis's pair);
 *  2. N clients (50), each its own session and resource: pairs per second against N Redis
 *     connections, each its own key (goal: at least 0.7x Redis's);
 *  3. a locally mastered lock + unlock against the remote one (goal: 20x faster);
 *  4. deadlock detection: two sessions on nodes 1 and 2 close a cycle; the time from the
 *     second wait to the victim's refusal, p50 and the worst. */
#include "bench_util.h"
#include "coral.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_NAMES 256
#define MAX_CLIENTS 256

static const char *conf;
static int rounds = 5, clients = 50, redis_port;
static double seconds = 2;
static char remote[MAX_NAMES][72], local[MAX_NAMES][72];
static int nremote, nlocal;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int load(const char *path, char names[][72], int *n)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	char line[128];
	while (*n < MAX_NAMES && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		if (line[0] && strlen(line) < 64)
			snprintf(names[(*n)++], 72, "%s", line);
	}
	fclose(f);
	return 0;
}

/* ---- Redis: a client of its protocol, just what a lock needs ---------------------------- */

static int redis_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)redis_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Sends argv as one command and reads one reply line (a simple string, integer or null bulk
 * string: all a lock gets back). 0, or -1. */
static int redis_cmd(int fd, int argc, const char **argv, char *reply, size_t n)
{
	char buf[1024];
	int k = snprintf(buf, sizeof(buf), "*%d\r\n", argc);
	for (int i = 0; i < argc; i++)
		k += snprintf(buf + k, sizeof(buf) - (size_t)k, "$%zu\r\n%s\r\n", strlen(argv[i]), argv[i]);
	if (bench_full_io(fd, buf, (size_t)k, true) != 0)
		return -1;
	size_t got = 0;
	while (got + 1 < n) {
		ssize_t r = read(fd, reply + got, 1);
		if (r <= 0)
			return -1;
		if (reply[got++] == '\n')
			break;
	}
	reply[got] = 0;
	return 0;
}

static const char *const CAD =
	"if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";

/* SET key token NX PX 30000, then the compare-and-delete: 0 when both did their part. */
static int redis_pair(int fd, const char *key, const char *token)
{
	char r[128];
	const char *set[] = {"SET", key, token, "NX", "PX", "30000"};
	if (redis_cmd(fd, 6, set, r, sizeof(r)) != 0 || strncmp(r, "+OK", 3) != 0)
		return -1;
	const char *del[] = {"EVAL", CAD, "1", key, token};
	if (redis_cmd(fd, 5, del, r, sizeof(r)) != 0 || strncmp(r, ":1", 2) != 0)
		return -1;
	return 0;
}

/* ---- Coral ------------------------------------------------------------------------------ */

static struct coral_session *open_session(int node)
{
	struct coral_session *s = NULL;
	if (coral_session_open(conf, node, "bench", "ges-bench", &s) != 0) {
		fprintf(stderr, "ges-bench: session on node %d: %s\n", node, s ? coral_session_error(s) : "no memory");
		exit(1);
	}
	return s;
}

static int coral_pair(struct coral_session *s, const char *name)
{
	uint64_t lk;
	if (coral_lock(s, name, strlen(name), CORAL_LOCK_EX, 0, 10000, &lk, NULL, NULL) != 0)
		return -1;
	return coral_unlock(s, lk, NULL);
}

/* Pairs for `seconds`, their latencies into v (up to cap); how many. kind 0 Coral, 1 Redis,
 * 2 raw round trip. */
struct one {
	struct coral_session *s;
	int fd;
	struct bench_rt *rt;
	const char *name;
};

static size_t run_one(struct one *o, int kind, uint64_t *v, size_t cap)
{
	size_t n = 0;
	uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
	while (n < cap && now_ns() < end) {
		uint64_t t0 = now_ns();
		int rc = kind == 0 ? coral_pair(o->s, o->name) : kind == 1 ? redis_pair(o->fd, o->name, "t") : bench_rt_once(o->rt);
		if (rc != 0) {
			fprintf(stderr, "ges-bench: a %s pair failed%s%s\n", kind == 0 ? "Coral" : kind == 1 ? "Redis" : "raw",
				kind == 0 ? ": " : "", kind == 0 ? coral_session_error(o->s) : "");
			exit(1);
		}
		v[n++] = now_ns() - t0;
	}
	return n;
}

/* ---- many clients ----------------------------------------------------------------------- */

struct client {
	pthread_t t;
	int kind, idx;
	struct coral_session *s;
	int fd;
	uint64_t pairs;
};

static _Atomic int go, halt;

static void *client_main(void *arg)
{
	struct client *c = arg;
	char key[80];
	snprintf(key, sizeof(key), "bench-%d", c->idx);
	const char *name = remote[c->idx % nremote];
	while (!atomic_load(&go))
		sched_yield();
	while (!atomic_load(&halt)) {
		int rc = c->kind == 0 ? coral_pair(c->s, name) : redis_pair(c->fd, key, "t");
		if (rc != 0) {
			fprintf(stderr, "ges-bench: a %s pair failed with %d clients%s%s\n", c->kind ? "Redis" : "Coral", clients,
				c->kind ? "" : ": ", c->kind ? "" : coral_session_error(c->s));
			exit(1);
		}
		c->pairs++;
	}
	return NULL;
}

static double run_many(struct client *cl, int kind)
{
	atomic_store(&go, 0);
	atomic_store(&halt, 0);
	for (int i = 0; i < clients; i++) {
		cl[i].kind = kind;
		cl[i].pairs = 0;
		pthread_create(&cl[i].t, NULL, client_main, &cl[i]);
	}
	uint64_t t0 = now_ns();
	atomic_store(&go, 1);
	struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
	nanosleep(&d, NULL);
	atomic_store(&halt, 1);
	uint64_t total = 0;
	for (int i = 0; i < clients; i++) {
		pthread_join(cl[i].t, NULL);
		total += cl[i].pairs;
	}
	return (double)total / ((double)(now_ns() - t0) / 1e9);
}

/* ---- deadlock detection ----------------------------------------------------------------- */

struct waiter {
	struct coral_session *s;
	const char *name;
	_Atomic int rc;
	_Atomic uint64_t done_ns;
};

static void *wait_main(void *arg)
{
	struct waiter *w = arg;
	uint64_t lk;
	int rc = coral_lock(w->s, w->name, strlen(w->name), CORAL_LOCK_EX, 0, 20000, &lk, NULL, NULL);
	atomic_store(&w->rc, rc);
	atomic_store(&w->done_ns, now_ns());
	if (rc == 0)
		coral_unlock(w->s, lk, NULL);
	return NULL;
}

/* A on node 1 holds x and waits for y; B on node 2 holds y and asks for x: the cycle closes
 * with B's request. ms from then to the first refusal (the victim's). */
static double one_deadlock(struct coral_session *a, struct coral_session *b, const char *x, const char *y)
{
	uint64_t lx, ly;
	if (coral_lock(a, x, strlen(x), CORAL_LOCK_EX, 0, 5000, &lx, NULL, NULL) != 0 ||
	    coral_lock(b, y, strlen(y), CORAL_LOCK_EX, 0, 5000, &ly, NULL, NULL) != 0) {
		fprintf(stderr, "ges-bench: deadlock setup: %s / %s\n", coral_session_error(a), coral_session_error(b));
		exit(1);
	}
	struct waiter wa = {.s = a, .name = y}, wb = {.s = b, .name = x};
	pthread_t ta, tb;
	pthread_create(&ta, NULL, wait_main, &wa);
	struct timespec d = {0, 30 * 1000000};  /* A's wait reported and settled first */
	nanosleep(&d, NULL);
	uint64_t closed = now_ns();
	pthread_create(&tb, NULL, wait_main, &wb);
	/* the victim's refusal ends its wait; then its holder lets go, and the other is granted */
	for (;;) {
		struct timespec p = {0, 200000};
		nanosleep(&p, NULL);
		if ((wa.done_ns && wa.rc == CORAL_ERR_DEADLOCK) || (wb.done_ns && wb.rc == CORAL_ERR_DEADLOCK))
			break;
		if (now_ns() - closed > 10000000000ull) {
			fprintf(stderr, "ges-bench: no deadlock was found in 10 s\n");
			exit(1);
		}
	}
	uint64_t found = wa.rc == CORAL_ERR_DEADLOCK ? wa.done_ns : wb.done_ns;
	if (wa.rc == CORAL_ERR_DEADLOCK)
		coral_unlock(a, lx, NULL);
	else
		coral_unlock(b, ly, NULL);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	if (wa.rc == CORAL_ERR_DEADLOCK)
		coral_unlock(b, ly, NULL);
	else
		coral_unlock(a, lx, NULL);
	return (double)(found - closed) / 1e6;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: ges-bench -c CONF --remote FILE --local FILE [--rounds R] [--seconds S] [--clients N] "
			"[--redis-port P]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *rfile = NULL, *lfile = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[++i] : NULL;
		if (v == NULL)
			usage();
		if (strcmp(a, "-c") == 0) conf = v;
		else if (strcmp(a, "--remote") == 0) rfile = v;
		else if (strcmp(a, "--local") == 0) lfile = v;
		else if (strcmp(a, "--rounds") == 0) rounds = atoi(v);
		else if (strcmp(a, "--seconds") == 0) seconds = atof(v);
		else if (strcmp(a, "--clients") == 0) clients = atoi(v);
		else if (strcmp(a, "--redis-port") == 0) redis_port = atoi(v);
		else usage();
	}
	if (conf == NULL || rfile == NULL || lfile == NULL || rounds < 1 || seconds <= 0 || clients < 1 ||
	    clients > MAX_CLIENTS || redis_port <= 0)
		usage();
	if (load(rfile, remote, &nremote) != 0 || load(lfile, local, &nlocal) != 0 || nremote < 2 || nlocal < 1) {
		fprintf(stderr, "ges-bench: need at least 2 remote and 1 local names (%s, %s)\n", rfile, lfile);
		return 1;
	}
	size_t cap = 2000000;
	uint64_t *v = malloc(cap * sizeof(*v));
	struct client *cl = calloc((size_t)clients, sizeof(*cl));
	if (v == NULL || cl == NULL)
		return 1;

	/* 1 and 3: one client, alternating Coral remote, Redis, raw, Coral local */
	struct one o = {open_session(1), redis_connect(), NULL, remote[0]};
	struct bench_rt *rt = calloc(1, sizeof(*rt));
	if (o.fd < 0 || rt == NULL || bench_rt_start(rt, 64, 64) != 0) {
		fprintf(stderr, "ges-bench: no redis-server on port %d, or no loopback pair\n", redis_port);
		return 1;
	}
	o.rt = rt;
	printf("== one client: EX lock + unlock of a resource mastered on node 2, from a session on node 1;\n"
	       "   Redis: SET NX PX + compare-and-delete (EVAL); raw: a 64-byte loopback TCP round trip;\n"
	       "   local: a resource mastered on node 1. %d rounds of %.1f s, alternating (p50 / p99 us)\n",
	       rounds, seconds);
	double sum_ratio = 0, sum_local = 0;
	for (int r = 0; r < rounds; r++) {
		o.name = remote[0];
		size_t n = run_one(&o, 0, v, cap);
		double c50 = (double)bench_pct(v, n, 0.5) / 1e3, c99 = (double)bench_pct(v, n, 0.99) / 1e3;
		o.name = "bench-lock";
		n = run_one(&o, 1, v, cap);
		double r50 = (double)bench_pct(v, n, 0.5) / 1e3, r99 = (double)bench_pct(v, n, 0.99) / 1e3;
		n = run_one(&o, 2, v, cap);
		double w50 = (double)bench_pct(v, n, 0.5) / 1e3;
		o.name = local[0];
		n = run_one(&o, 0, v, cap);
		double l50 = (double)bench_pct(v, n, 0.5) / 1e3, l99 = (double)bench_pct(v, n, 0.99) / 1e3;
		printf("  round %d: Coral remote %.1f / %.1f, Redis pair %.1f / %.1f, raw %.1f, Coral local %.1f / %.1f: "
		       "remote/Redis %.2fx, remote/local %.1fx\n",
		       r + 1, c50, c99, r50, r99, w50, l50, l99, c50 / r50, c50 / l50);
		sum_ratio += c50 / r50;
		sum_local += c50 / l50;
	}
	printf("  mean: Coral's remote pair at %.2fx Redis's p50 (goal <= 1.2x); a local-master lock %.1fx faster than a "
	       "remote one (goal >= 20x)\n", sum_ratio / rounds, sum_local / rounds);

	/* 2: N clients */
	for (int i = 0; i < clients; i++) {
		cl[i].idx = i;
		cl[i].s = open_session(1);
		cl[i].fd = redis_connect();
		if (cl[i].fd < 0)
			return 1;
	}
	printf("\n== %d clients, each its own session (node 1) and resource (mastered on node 2) or Redis connection and "
	       "key: pairs per second, %d rounds of %.1f s, alternating\n", clients, rounds, seconds);
	double sum_many = 0;
	for (int r = 0; r < rounds; r++) {
		double c = run_many(cl, 0), x = run_many(cl, 1);
		printf("  round %d: Coral %.0f/s, Redis %.0f/s: %.2fx\n", r + 1, c, x, c / x);
		sum_many += c / x;
	}
	printf("  mean: Coral at %.2fx Redis's throughput (goal >= 0.7x)\n", sum_many / rounds);

	/* 4: deadlock detection */
	struct coral_session *a = open_session(1), *b = open_session(2);
	int nd = rounds * 4;
	printf("\n== deadlock detection: a cycle across nodes 1 and 2 closed %d times; from its closing to the victim's "
	       "refusal (ms)\n", nd);
	double *dl = calloc((size_t)nd, sizeof(*dl)), worst = 0;
	for (int i = 0; i < nd; i++) {
		dl[i] = one_deadlock(a, b, remote[(2 * i) % nremote], remote[(2 * i + 1) % nremote]);
		if (dl[i] > worst)
			worst = dl[i];
	}
	uint64_t *us = calloc((size_t)nd, sizeof(*us));
	for (int i = 0; i < nd; i++)
		us[i] = (uint64_t)(dl[i] * 1000);
	printf("  p50 %.1f ms, worst %.1f ms (goal: within [ges] sweep_ms, 100 ms by default)\n",
	       (double)bench_pct(us, (size_t)nd, 0.5) / 1000, worst);
	return 0;
}

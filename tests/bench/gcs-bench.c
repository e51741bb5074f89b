/* gcs-bench: the measuring half of scripts/bench-gcs.sh (cache fusion). It runs against a
 * running cluster of at least three nodes, through libcoral as a database engine would, and
 * measures each figure next to its peer in the same run, alternating, printing both and their
 * ratio. Nothing is asserted.
 *
 *   gcs-bench -c CONF [--rounds R] [--seconds S] [--transfers N] [--redis-port P]
 *             [--pingpong c2,c3,d2,d3] [WHAT...]
 *
 * WHAT (default all of them, in this order):
 * Blocks carry pseudo-random (incompressible) bytes, so each transfer moves all 8 KiB.
 *   pingpong  one block alternating in X between two nodes: 2-way (the pair includes its
 *             master) and 3-way (neither node is its master), clean and dirty (changed and
 *             committed before the other node asks), against a raw loopback TCP round trip
 *             with an 8 KiB reply (--pingpong picks some: c2 clean 2-way ... d3 dirty 3-way),
 *             measured three ways in alternation: placed by the scheduler, with both ends
 *             pinned to one CPU, and with the ends pinned to two CPUs; the ratio column is
 *             against the first, a line after the table gives them against the third; and
 *             the CPU time per transfer summed over the processes it involves (the sessions,
 *             lmsd and replicad of every node) against the raw round trip's (both ends),
 *             which does not depend on where the scheduler puts them
 *   local     a get + release of a block the node already holds (S and X), against an
 *             uncontended mutex lock + unlock and the raw round trip
 *   serve     50 sessions (on nodes 2 and 3) reading consistent-read copies of 1,024 blocks
 *             held in X by node 1: every get is a transfer; against redis-benchmark GET of
 *             8 KiB values at 50 clients (needs --redis-port of a running redis-server);
 *             also the CPU time per get of each side (requesters, server), which varies
 *             less from run to run than the rates on a shared machine
 *   commit    change + commit loops from 1 and from 32 sessions of node 1, against
 *             fdatasync/s of 512-byte appends to a file in the shared directory (the disk the
 *             redo threads are on)
 * Uses the data file "gcsbench" (created with 4,096 blocks if missing). */
#include "coral.h"

#include "conf.h"
#include "grd.h"
#include "sga.h"
#include "storage.h"
#include "util.h"

#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define FILE_BLOCKS 4096
#define SERVE_FIRST 1024
#define SERVE_BLOCKS 1024
#define SERVE_SESSIONS 50
#define LOCAL_BLOCK 2100
#define COMMIT_FIRST 3000
#define COMMIT_MAX 32
#define PP_SEARCH 1000

static const char *conf_path;
static struct coral_conf *conf;
static uint32_t file_id;
static int rounds = 5;
static double seconds = 2.0;
static size_t transfers = 300;
static int redis_port;
static const char *kinds = "c2,c3,d2,d3";
static struct coral_sga sga;
static const struct coral_grd_map_sga *map;

static uint64_t now_ns(void) { return coral_now_mono_ns(); }

static struct coral_session *session(int node)
{
	struct coral_session *s;
	if (coral_session_open(conf_path, node, "bench", "gcs-bench", &s) != 0) {
		fprintf(stderr, "gcs-bench: session on node %d: %s\n", node, coral_session_error(s));
		exit(1);
	}
	return s;
}

static void die_s(struct coral_session *s, const char *what)
{
	fprintf(stderr, "gcs-bench: %s: %s\n", what, coral_session_error(s));
	exit(1);
}

static uint32_t master_of(uint64_t block)
{
	struct coral_resid r = {.type = CORAL_RES_BLOCK, .id1 = file_id, .id2 = block};
	struct coral_grd_where w;
	coral_grd_lookup(map, &r, &w);
	return w.master;
}

static int setup_file(void)
{
	struct coral_ctlfile *cf = malloc(sizeof(*cf));
	char err[CORAL_ERRMSG_MAX];
	if (cf == NULL || coral_ctlfile_load(conf, cf, err, sizeof(err)) != 0) {
		fprintf(stderr, "gcs-bench: control file: %s\n", cf ? err : "out of memory");
		return 1;
	}
	for (uint32_t i = 0; i < cf->nfiles; i++)
		if (strcmp(cf->files[i].name, "gcsbench") == 0 && cf->files[i].blocks >= FILE_BLOCKS)
			file_id = cf->files[i].id;
	free(cf);
	if (file_id == 0 && coral_datafile_create(conf, "gcsbench", FILE_BLOCKS, &file_id, err, sizeof(err)) != 0) {
		fprintf(stderr, "gcs-bench: creating data file gcsbench: %s\n", err);
		return 1;
	}
	return 0;
}

/* Changes the first 8 bytes of a block pinned in X (a counter). */
static void bump(struct coral_session *s, struct coral_block *b)
{
	uint64_t v;
	memcpy(&v, coral_block_data(b), sizeof(v));
	v++;
	if (coral_block_modify(s, b, 0, &v, sizeof(v)) != 0)
		die_s(s, "modify");
}

/* Fills a block's payload with pseudo-random bytes (through node `node`, committed): an
 * incompressible image, so that every transfer carries the whole block as the raw round
 * trip's 8 KiB reply does (an empty block would shrink to a hundred bytes under the
 * interconnect's lz4). */
static void fill_random(struct coral_session *s, uint64_t block, uint64_t seed)
{
	struct coral_block *b;
	if (coral_block_get(s, file_id, block, CORAL_MODE_X, &b) != 0)
		die_s(s, "fill get");
	size_t n = coral_block_payload(s) & ~(size_t)7;
	uint64_t *buf = malloc(n);
	if (buf == NULL)
		exit(1);
	for (size_t i = 0; i < n / 8; i++)
		buf[i] = coral_splitmix64(&seed);
	buf[0] = 0; /* the counter bump() changes */
	if (coral_block_modify(s, b, 0, buf, (uint32_t)n) != 0)
		die_s(s, "fill modify");
	free(buf);
	coral_block_release(s, b);
}

static void print_row(const char *what, uint64_t *v, size_t n, double floor_us)
{
	if (n == 0)
		return;
	double p50 = (double)bench_pct(v, n, 0.5) / 1000.0, p99 = (double)bench_pct(v, n, 0.99) / 1000.0;
	if (floor_us > 0)
		printf("  %-34s n=%-6zu p50 %8.1f us  p99 %8.1f us  p50 ratio %5.2fx\n", what, n, p50, p99, p50 / floor_us);
	else
		printf("  %-34s n=%-6zu p50 %8.1f us  p99 %8.1f us\n", what, n, p50, p99);
}

/* ---- CPU time --------------------------------------------------------------------------- */

/* CPU time of a process in ns, every thread of it (/proc/PID/task/N/schedstat: time on a
 * CPU, to the nanosecond, which the clock-tick figures of /proc/PID/stat are not), or 0 */
static uint64_t proc_cpu_ns(long pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	DIR *d = pid > 0 ? opendir(path) : NULL;
	if (d == NULL)
		return 0;
	uint64_t sum = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char sp[96];
		snprintf(sp, sizeof(sp), "/proc/%ld/task/%s/schedstat", pid, e->d_name);
		FILE *f = fopen(sp, "r");
		unsigned long long ns = 0;
		if (f && fscanf(f, "%llu", &ns) == 1)
			sum += ns;
		if (f)
			fclose(f);
	}
	closedir(d);
	return sum;
}

/* The pid in a daemon's pidfile on node `node`, or 0 */
static long daemon_pid(int node, const char *daemon)
{
	const struct coral_node_conf *n = coral_conf_node_by_id(conf, node);
	if (n == NULL)
		return 0;
	char path[CORAL_STR_MAX + 32];
	snprintf(path, sizeof(path), "%s/%s.pid", n->run_dir, daemon);
	FILE *f = fopen(path, "r");
	long pid = 0;
	if (f == NULL || fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	if (f)
		fclose(f);
	return pid;
}

/* CPU ns of this process (every thread, those ended too) */
static uint64_t self_cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

/* CPU ns a transfer's processes have used: this one (the sessions), and on every node lmsd
 * (the transfer) and replicad (the log force of a dirty block) */
static uint64_t transfer_cpu_ns(void)
{
	uint64_t sum = self_cpu_ns();
	for (int node = 1; node <= 3; node++)
		sum += proc_cpu_ns(daemon_pid(node, "lmsd")) + proc_cpu_ns(daemon_pid(node, "replicad"));
	return sum;
}

/* ---- ping-pong ------------------------------------------------------------------------ */

struct pp {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int turn;
	bool stop;
	bool dirty;
	uint64_t block;
	struct coral_session *s[2];
	uint64_t *lat;
	size_t n, want, skip;
	uint64_t *side_lat[2];    /* optional: each direction's own */
	size_t side_n[2];
};

struct pp_side {
	struct pp *pp;
	int me;
};

static void *pp_thread(void *arg)
{
	struct pp_side *side = arg;
	struct pp *pp = side->pp;
	struct coral_session *s = pp->s[side->me];
	for (;;) {
		pthread_mutex_lock(&pp->mu);
		while (pp->turn != side->me && !pp->stop)
			pthread_cond_wait(&pp->cv, &pp->mu);
		bool stop = pp->stop;
		pthread_mutex_unlock(&pp->mu);
		if (stop)
			break;
		struct coral_block *b;
		uint64_t t0 = now_ns();
		if (coral_block_get(s, file_id, pp->block, CORAL_MODE_X, &b) != 0)
			die_s(s, "ping-pong get");
		uint64_t dt = now_ns() - t0;
		if (pp->dirty)
			bump(s, b);
		coral_block_release(s, b);
		if (pp->dirty && coral_commit(s, NULL) != 0)
			die_s(s, "ping-pong commit");
		pthread_mutex_lock(&pp->mu);
		if (pp->skip > 0)
			pp->skip--;
		else {
			pp->lat[pp->n++] = dt;
			if (pp->side_lat[side->me])
				pp->side_lat[side->me][pp->side_n[side->me]++] = dt;
		}
		if (pp->n >= pp->want)
			pp->stop = true;
		pp->turn = 1 - side->me;
		pthread_cond_broadcast(&pp->cv);
		pthread_mutex_unlock(&pp->mu);
	}
	return NULL;
}

/* n transfers of `block` alternating between the two sessions; latencies appended to lat,
 * and each session's own to lat_a and lat_b (room for n each). */
static size_t pingpong(struct coral_session *a, struct coral_session *b, uint64_t block, bool dirty, uint64_t *lat,
		       size_t n, uint64_t *lat_a, uint64_t *lat_b)
{
	struct pp pp = {.turn = 0, .dirty = dirty, .block = block, .s = {a, b}, .lat = lat, .want = n, .skip = 2,
			.side_lat = {lat_a, lat_b}};
	pthread_mutex_init(&pp.mu, NULL);
	pthread_cond_init(&pp.cv, NULL);
	struct pp_side sides[2] = {{&pp, 0}, {&pp, 1}};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, pp_thread, &sides[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&pp.mu);
	pthread_cond_destroy(&pp.cv);
	return pp.n;
}

static int cmd_pingpong(void)
{
	/* a block mastered by node 1 (2-way between nodes 1 and 2) and one mastered by node 3
	 * (3-way between nodes 1 and 2) */
	int64_t two = -1, three = -1;
	/* the bucket map may still be moving to its three members right after the start */
	for (int tries = 0; tries < 100 && (two < 0 || three < 0); tries++) {
		if (tries > 0)
			usleep(100000);
		two = three = -1;
		for (uint64_t b = 0; b < PP_SEARCH && (two < 0 || three < 0); b++) {
			uint32_t m = master_of(b);
			if (m == 1 && two < 0)
				two = (int64_t)b;
			else if (m == 3 && three < 0)
				three = (int64_t)b;
		}
	}
	if (two < 0 || three < 0) {
		fprintf(stderr, "gcs-bench: no block of the first %d is mastered by node 1 and node 3\n", PP_SEARCH);
		return 1;
	}
	struct coral_session *s1 = session(1), *s2 = session(2);
	fill_random(s1, (uint64_t)two, 7);
	fill_random(s1, (uint64_t)three, 8);
	if (coral_commit(s1, NULL) != 0)
		die_s(s1, "fill commit");
	/* The raw round trip three ways: as the scheduler places it (as before), with both ends
	 * on one CPU, and with the ends on two CPUs. On a small VM the first lands in either of
	 * the other two modes from run to run (11 against 24 us here): ends on one CPU hand the
	 * CPU over without waking another, which two nodes on two machines never can. */
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	enum { RAW, RAW1, RAW2, C2, C3, D2, D3, NK };
	struct bench_rt *rt[RAW2 + 1] = {NULL};
	bench_pin(-1); /* records the CPUs we started with, before any thread is pinned */
	for (int k = RAW; k <= RAW2; k++) {
		if (k == RAW2 && ncpu < 2)
			continue;
		rt[k] = malloc(sizeof(*rt[k]));
		if (rt[k] == NULL || bench_rt_start_on(rt[k], 64, 8192, k == RAW ? -1 : k == RAW1 ? 0 : 1) != 0) {
			fprintf(stderr, "gcs-bench: loopback socket: %s\n", strerror(errno));
			return 1;
		}
	}
	bool pin_failed = false;
	size_t cap = transfers * (size_t)rounds;
	static const char *const names[NK] = {"raw loopback RT (64 B, 8 KiB back)", "  ends on one CPU (pinned)",
					      "  ends on two CPUs (pinned)", "2-way, clean", "3-way, clean",
					      "2-way, dirty (changed, committed)", "3-way, dirty (changed, committed)"};
	uint64_t *lat[NK], *dir[NK][2], cpu[NK] = {0};
	size_t n[NK] = {0}, ndir[NK][2] = {{0}};
	for (int k = 0; k < NK; k++)
		if ((lat[k] = calloc(cap, sizeof(uint64_t))) == NULL || (dir[k][0] = calloc(cap, sizeof(uint64_t))) == NULL ||
		    (dir[k][1] = calloc(cap, sizeof(uint64_t))) == NULL)
			return 1;
	printf("block ping-pong in X between nodes 1 and 2: block %lld (master node 1) for 2-way, block %lld "
	       "(master node 3) for 3-way; %zu transfers per batch, %d rounds, alternating with the raw round trips\n",
	       (long long)two, (long long)three, transfers, rounds);
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < NK; k++) {
			int which = (k + r) % NK;
			static const char *const tag[NK] = {"", "", "", "c2", "c3", "d2", "d3"};
			if (which > RAW2 && strstr(kinds, tag[which]) == NULL)
				continue;
			if (which <= RAW2) {
				if (rt[which] == NULL)
					continue;
				if (bench_pin(which == RAW ? -1 : 0) != 0 && which != RAW)
					pin_failed = true;
				uint64_t c0 = self_cpu_ns(); /* both ends are threads of this process */
				for (size_t i = 0; i < transfers; i++) {
					uint64_t t0 = now_ns();
					if (bench_rt_once(rt[which]) != 0)
						return 1;
					lat[which][n[which]++] = now_ns() - t0;
				}
				cpu[which] += self_cpu_ns() - c0;
				bench_pin(-1);
			} else {
				uint64_t blk = (uint64_t)(which == C2 || which == D2 ? two : three);
				uint64_t c0 = transfer_cpu_ns();
				size_t got = pingpong(s1, s2, blk, which == D2 || which == D3, lat[which] + n[which], transfers,
						      dir[which][0] + ndir[which][0], dir[which][1] + ndir[which][1]);
				n[which] += got;
				cpu[which] += transfer_cpu_ns() - c0;
				/* the sessions alternate, node 1 first */
				ndir[which][0] += (got + 1) / 2;
				ndir[which][1] += got / 2;
			}
		}
	}
	for (int k = RAW; k <= RAW2; k++)
		if (rt[k] != NULL) {
			if (rt[k]->server_pin_failed)
				pin_failed = true;
			bench_rt_stop(rt[k]);
			free(rt[k]);
		}
	double raw = (double)bench_pct(lat[RAW], n[RAW], 0.5) / 1000.0;
	double raw2 = n[RAW2] ? (double)bench_pct(lat[RAW2], n[RAW2], 0.5) / 1000.0 : 0;
	for (int k = 0; k < NK; k++)
		print_row(names[k], lat[k], n[k], k <= RAW2 ? 0 : raw);
	if (pin_failed)
		printf("  (a thread could not be pinned to its CPU: the pinned rows are not what they say)\n");
	if (raw2 > 0 && !pin_failed) {
		printf("  p50 ratios against the raw round trip with its ends on two CPUs (%.1f us):", raw2);
		for (int k = C2; k < NK; k++)
			if (n[k])
				printf("%s %s %.2fx", k == C2 ? "" : ",", names[k], (double)bench_pct(lat[k], n[k], 0.5) / 1000.0 / raw2);
		printf("\n");
	}
	printf("  goals: 2-way p50 <= 3x the raw round trip, 3-way p50 <= 4.5x\n");
	/* CPU per transfer: where the scheduler puts the ends does not change it much, so its
	 * ratio says more on a small shared machine than the latency's (issue 23) */
	double raw_cpu = n[RAW] ? (double)cpu[RAW] / (double)n[RAW] / 1000.0 : 0;
	printf("  CPU per transfer (the sessions, and lmsd and replicad of every node; the raw round trip: "
	       "both its ends), against the raw round trip's %.1f us:\n", raw_cpu);
	for (int k = C2; k < NK; k++)
		if (n[k] && raw_cpu > 0)
			printf("    %-34s %8.1f us  %5.2fx\n", names[k], (double)cpu[k] / (double)n[k] / 1000.0,
			       (double)cpu[k] / (double)n[k] / 1000.0 / raw_cpu);
	printf("  goals: 2-way CPU per transfer <= 3x the raw round trip's, 3-way <= 4.5x\n  by direction:\n");
	static const char *const dirs[NK][2] = {{"", ""}, {"", ""}, {"", ""},
		{"  2-way clean, to node 1 (master)", "  2-way clean, to node 2"},
		{"  3-way clean, to node 1", "  3-way clean, to node 2"},
		{"  2-way dirty, to node 1 (master)", "  2-way dirty, to node 2"},
		{"  3-way dirty, to node 1", "  3-way dirty, to node 2"}};
	for (int k = C2; k < NK; k++)
		for (int d = 0; d < 2; d++)
			print_row(dirs[k][d], dir[k][d], ndir[k][d], raw);
	for (int k = 0; k < NK; k++) {
		free(lat[k]);
		free(dir[k][0]);
		free(dir[k][1]);
	}
	coral_session_close(s1);
	coral_session_close(s2);
	return 0;
}

/* ---- local hits ----------------------------------------------------------------------- */

static int cmd_local(void)
{
	struct coral_session *s = session(1);
	struct coral_block *b;
	for (int mode = CORAL_MODE_S; mode <= CORAL_MODE_X; mode++) {
		if (coral_block_get(s, file_id, LOCAL_BLOCK + (uint64_t)mode, mode, &b) != 0)
			die_s(s, "local get");
		coral_block_release(s, b);
	}
	struct bench_rt *rt = malloc(sizeof(*rt));
	if (rt == NULL || bench_rt_start(rt, 64, 8192) != 0)
		return 1;
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	const size_t hits = 1000000, rts = 2000;
	uint64_t *t[4];
	for (int k = 0; k < 4; k++)
		if ((t[k] = calloc((size_t)rounds, sizeof(uint64_t))) == NULL)
			return 1;
	printf("local hits on node 1: %zu get + release per round, %d rounds, alternating with %zu mutex lock + "
	       "unlock pairs and %zu raw round trips\n", hits, rounds, hits, rts);
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < 4; k++) {
			int which = (k + r) % 4;
			uint64_t t0 = now_ns();
			if (which <= 1) {
				int mode = which == 0 ? CORAL_MODE_S : CORAL_MODE_X;
				for (size_t i = 0; i < hits; i++) {
					if (coral_block_get(s, file_id, LOCAL_BLOCK + (uint64_t)mode, mode, &b) != 0)
						die_s(s, "local get");
					coral_block_release(s, b);
				}
				t[which][r] = (now_ns() - t0) * 1000 / hits;
			} else if (which == 2) {
				for (size_t i = 0; i < hits; i++) {
					pthread_mutex_lock(&mu);
					pthread_mutex_unlock(&mu);
				}
				t[2][r] = (now_ns() - t0) * 1000 / hits;
			} else {
				for (size_t i = 0; i < rts; i++)
					if (bench_rt_once(rt) != 0)
						return 1;
				t[3][r] = (now_ns() - t0) * 1000 / rts;
			}
		}
	}
	bench_rt_stop(rt);
	free(rt);
	struct coral_session_stats st;
	coral_session_stats(s, &st);
	double hs = (double)bench_median(t[0], (size_t)rounds) / 1000.0, hx = (double)bench_median(t[1], (size_t)rounds) / 1000.0;
	double mx = (double)bench_median(t[2], (size_t)rounds) / 1000.0, rtt = (double)bench_median(t[3], (size_t)rounds) / 1000.0;
	printf("  local hit S   %8.1f ns  (%.1fx a mutex pair, 1/%.0f of the raw round trip)\n", hs, hs / mx, rtt / hs);
	printf("  local hit X   %8.1f ns  (%.1fx a mutex pair, 1/%.0f of the raw round trip)\n", hx, hx / mx, rtt / hx);
	printf("  mutex pair    %8.1f ns\n  raw RT 8 KiB  %8.1f ns\n", mx, rtt);
	printf("  goal: a local hit under 1 us (this session: %llu gets, %llu served from the SGA)\n",
	       (unsigned long long)st.gets, (unsigned long long)st.local_hits);
	for (int k = 0; k < 4; k++)
		free(t[k]);
	coral_session_close(s);
	return 0;
}

/* ---- block serving -------------------------------------------------------------------- */

struct server {
	struct coral_session *s;
	pthread_t th;
	uint64_t seed;
	uint64_t deadline;
	uint64_t done;
	uint64_t *lat;
	size_t nlat, cap;
};

static void *serve_thread(void *arg)
{
	struct server *sv = arg;
	while (now_ns() < sv->deadline) {
		uint64_t blk = SERVE_FIRST + coral_splitmix64(&sv->seed) % SERVE_BLOCKS;
		struct coral_block *b;
		uint64_t t0 = now_ns();
		if (coral_block_get(sv->s, file_id, blk, CORAL_MODE_CR, &b) != 0)
			die_s(sv->s, "CR get");
		uint64_t dt = now_ns() - t0;
		coral_block_release(sv->s, b);
		sv->done++;
		if (sv->nlat < sv->cap)
			sv->lat[sv->nlat++] = dt;
	}
	return NULL;
}

/* CPU seconds (user + system) of this process, or of its waited-for children */
static double rusage_s(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of node `node`'s lmsd, or -1 */
static double lmsd_cpu_s(int node)
{
	long pid = daemon_pid(node, "lmsd");
	return pid > 0 ? (double)proc_cpu_ns(pid) / 1e9 : -1;
}

/* CPU seconds redis-server has used (INFO cpu), or -1 */
static double redis_cpu_s(void)
{
	char cmd[128], line[256];
	snprintf(cmd, sizeof(cmd), "redis-cli -p %d info cpu 2>/dev/null", redis_port);
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return -1;
	double sys = -1, user = -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "used_cpu_sys:", 13) == 0)
			sys = strtod(line + 13, NULL);
		else if (strncmp(line, "used_cpu_user:", 14) == 0)
			user = strtod(line + 14, NULL);
	}
	pclose(f);
	return sys < 0 || user < 0 ? -1 : sys + user;
}

/* GETs/s of one redis-benchmark run (8 KiB values, 50 clients), or a negative value. */
static double redis_get_rate(size_t requests)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd),
		 "redis-benchmark -h 127.0.0.1 -p %d -c %d -n %zu -d 8192 -r %d -t get --csv 2>/dev/null", redis_port,
		 SERVE_SESSIONS, requests, SERVE_BLOCKS);
	FILE *f = popen(cmd, "r");
	if (f == NULL)
		return -1;
	char line[512];
	double rps = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "\"GET\",\"", 7) == 0)
			rps = strtod(line + 7, NULL);
	pclose(f);
	return rps;
}

static int cmd_serve(void)
{
	if (redis_port == 0) {
		fprintf(stderr, "gcs-bench serve: needs --redis-port of a running redis-server (scripts/bench-gcs.sh starts one)\n");
		return 1;
	}
	char ping[128];
	snprintf(ping, sizeof(ping), "redis-cli -p %d ping >/dev/null 2>&1", redis_port);
	if (system(ping) != 0) {
		fprintf(stderr, "gcs-bench serve: no redis-server answers on port %d\n", redis_port);
		return 1;
	}
	/* node 1 takes every block in X and fills it: it holds the current images */
	struct coral_session *s1 = session(1);
	for (uint64_t blk = SERVE_FIRST; blk < SERVE_FIRST + SERVE_BLOCKS; blk++) {
		fill_random(s1, blk, blk);
	}
	if (coral_commit(s1, NULL) != 0)
		die_s(s1, "serve setup commit");
	/* redis gets the same number of 8 KiB values */
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "redis-benchmark -h 127.0.0.1 -p %d -c %d -n %d -d 8192 -r %d -t set -q >/dev/null 2>&1",
		 redis_port, SERVE_SESSIONS, SERVE_BLOCKS * 20, SERVE_BLOCKS);
	if (system(cmd) != 0) {
		fprintf(stderr, "gcs-bench: loading redis failed: %s\n", cmd);
		return 1;
	}
	struct server *sv = calloc(SERVE_SESSIONS, sizeof(*sv));
	if (sv == NULL)
		return 1;
	for (int i = 0; i < SERVE_SESSIONS; i++) {
		sv[i].s = session(2 + i % 2);
		sv[i].cap = 200000;
		if ((sv[i].lat = malloc(sv[i].cap * sizeof(uint64_t))) == NULL)
			return 1;
		sv[i].seed = 1000 + (uint64_t)i;
	}
	double *ours = calloc((size_t)rounds, sizeof(double)), *theirs = calloc((size_t)rounds, sizeof(double));
	if (ours == NULL || theirs == NULL)
		return 1;
	size_t redis_n = 100000;
	printf("block serving: %d sessions (nodes 2 and 3) reading CR copies of %d blocks held in X by node 1, "
	       "%.1f s per round, against redis-benchmark GET -d 8192 -c %d; %d rounds, alternating\n",
	       SERVE_SESSIONS, SERVE_BLOCKS, seconds, SERVE_SESSIONS, rounds);
	/* CPU per get, both sides, summed over the rounds: the requesters (this process; the
	 * redis-benchmark child), the server (lmsd of node 1, and those of nodes 2 and 3;
	 * redis-server) */
	double cpu_cl[2] = {0, 0}, cpu_sv[2] = {0, 0}, cpu_other = 0, ops[2] = {0, 0};
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < 2; k++) {
			if ((k + r) % 2 == 0) {
				double c0 = rusage_s(RUSAGE_SELF), l0 = lmsd_cpu_s(1), o0 = lmsd_cpu_s(2) + lmsd_cpu_s(3);
				uint64_t t0 = now_ns(), total = 0;
				for (int i = 0; i < SERVE_SESSIONS; i++) {
					sv[i].deadline = t0 + (uint64_t)(seconds * 1e9);
					sv[i].done = 0;
					pthread_create(&sv[i].th, NULL, serve_thread, &sv[i]);
				}
				for (int i = 0; i < SERVE_SESSIONS; i++) {
					pthread_join(sv[i].th, NULL);
					total += sv[i].done;
				}
				ours[r] = (double)total * 1e9 / (double)(now_ns() - t0);
				cpu_cl[0] += rusage_s(RUSAGE_SELF) - c0;
				cpu_sv[0] += lmsd_cpu_s(1) - l0;
				cpu_other += lmsd_cpu_s(2) + lmsd_cpu_s(3) - o0;
				ops[0] += (double)total;
			} else {
				double r0 = redis_cpu_s(), c0 = rusage_s(RUSAGE_CHILDREN);
				theirs[r] = redis_get_rate(redis_n);
				cpu_cl[1] += rusage_s(RUSAGE_CHILDREN) - c0;
				cpu_sv[1] += redis_cpu_s() - r0;
				ops[1] += (double)redis_n;
				if (theirs[r] <= 0) {
					fprintf(stderr, "gcs-bench: redis-benchmark gave no GET rate\n");
					return 1;
				}
				/* the next Redis run lasts about as long as ours */
				redis_n = (size_t)(theirs[r] * seconds) + 1000;
			}
		}
		printf("  round %d: coral %10.0f CR gets/s   redis %10.0f GETs/s   ratio %.2fx\n", r + 1, ours[r], theirs[r],
		       ours[r] / theirs[r]);
	}
	size_t nall = 0;
	for (int i = 0; i < SERVE_SESSIONS; i++)
		nall += sv[i].nlat;
	uint64_t *all = malloc((nall + 1) * sizeof(uint64_t));
	if (all == NULL)
		return 1;
	nall = 0;
	for (int i = 0; i < SERVE_SESSIONS; i++) {
		memcpy(all + nall, sv[i].lat, sv[i].nlat * sizeof(uint64_t));
		nall += sv[i].nlat;
	}
	double o = 0, t = 0;
	for (int r = 0; r < rounds; r++) {
		o += ours[r];
		t += theirs[r];
	}
	print_row("coral CR get latency (all rounds)", all, nall, 0);
	printf("  mean of rounds: coral %.0f/s, redis %.0f/s, ratio %.2fx (goal >= 0.8x)\n", o / rounds, t / rounds, o / t);
	printf("  CPU per get: coral requesters %.1f us + lmsd of node 1 %.1f us (+ nodes 2, 3: %.1f us); "
	       "redis-benchmark %.1f us + redis-server %.1f us\n",
	       cpu_cl[0] * 1e6 / ops[0], cpu_sv[0] * 1e6 / ops[0], cpu_other * 1e6 / ops[0], cpu_cl[1] * 1e6 / ops[1],
	       cpu_sv[1] * 1e6 / ops[1]);
	for (int i = 0; i < SERVE_SESSIONS; i++) {
		coral_session_close(sv[i].s);
		free(sv[i].lat);
	}
	free(all);
	free(sv);
	free(ours);
	free(theirs);
	coral_session_close(s1);
	return 0;
}

/* ---- commits -------------------------------------------------------------------------- */

struct committer {
	struct coral_session *s;
	pthread_t th;
	uint64_t block, deadline, done;
	uint64_t *lat;
	size_t nlat, cap;
};

static void *commit_thread(void *arg)
{
	struct committer *c = arg;
	while (now_ns() < c->deadline) {
		struct coral_block *b;
		uint64_t t0 = now_ns();
		if (coral_block_get(c->s, file_id, c->block, CORAL_MODE_X, &b) != 0)
			die_s(c->s, "commit get");
		bump(c->s, b);
		coral_block_release(c->s, b);
		if (coral_commit(c->s, NULL) != 0)
			die_s(c->s, "commit");
		c->done++;
		if (c->nlat < c->cap)
			c->lat[c->nlat++] = now_ns() - t0;
	}
	return NULL;
}

static double commit_rate(struct committer *cs, int n)
{
	uint64_t t0 = now_ns(), total = 0;
	for (int i = 0; i < n; i++) {
		cs[i].deadline = t0 + (uint64_t)(seconds * 1e9);
		cs[i].done = 0;
		pthread_create(&cs[i].th, NULL, commit_thread, &cs[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(cs[i].th, NULL);
		total += cs[i].done;
	}
	return (double)total * 1e9 / (double)(now_ns() - t0);
}

static double fsync_rate(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	uint8_t rec[512];
	memset(rec, 0x5a, sizeof(rec));
	uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(seconds * 1e9), n = 0;
	off_t off = 0;
	while (now_ns() < deadline) {
		if (pwrite(fd, rec, sizeof(rec), off) != (ssize_t)sizeof(rec) || fdatasync(fd) != 0) {
			close(fd);
			return -1;
		}
		off += (off_t)sizeof(rec);
		n++;
	}
	double r = (double)n * 1e9 / (double)(now_ns() - t0);
	close(fd);
	unlink(path);
	return r;
}

static int cmd_commit(void)
{
	struct committer *cs = calloc(COMMIT_MAX, sizeof(*cs));
	if (cs == NULL)
		return 1;
	for (int i = 0; i < COMMIT_MAX; i++) {
		cs[i].s = session(1);
		cs[i].block = COMMIT_FIRST + (uint64_t)i;
		cs[i].cap = 100000;
		if ((cs[i].lat = malloc(cs[i].cap * sizeof(uint64_t))) == NULL)
			return 1;
		struct coral_block *b;
		if (coral_block_get(cs[i].s, file_id, cs[i].block, CORAL_MODE_X, &b) != 0)
			die_s(cs[i].s, "commit setup");
		coral_block_release(cs[i].s, b);
	}
	char path[CORAL_STR_MAX + 32];
	snprintf(path, sizeof(path), "%s/gcs-bench.fsync", conf->storage.shared_dir);
	double *f = calloc((size_t)rounds, sizeof(double)), *c1 = calloc((size_t)rounds, sizeof(double)),
	       *c32 = calloc((size_t)rounds, sizeof(double));
	if (!f || !c1 || !c32)
		return 1;
	printf("commits on node 1 (get X, change 8 bytes, release, commit; one block per session), %.1f s per run, "
	       "against fdatasync/s of 512-byte appends to %s; %d rounds, alternating\n", seconds, path, rounds);
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < 3; k++) {
			int which = (k + r) % 3;
			if (which == 0 && (f[r] = fsync_rate(path)) <= 0) {
				fprintf(stderr, "gcs-bench: %s: %s\n", path, strerror(errno));
				return 1;
			}
			if (which == 1)
				c1[r] = commit_rate(cs, 1);
			if (which == 2)
				c32[r] = commit_rate(cs, COMMIT_MAX);
		}
		printf("  round %d: fdatasync %8.0f/s   1 session %8.0f commits/s (%.2fx)   %d sessions %8.0f commits/s (%.2fx)\n",
		       r + 1, f[r], c1[r], c1[r] / f[r], COMMIT_MAX, c32[r], c32[r] / f[r]);
	}
	double sf = 0, s1 = 0, s32 = 0;
	for (int r = 0; r < rounds; r++) {
		sf += f[r];
		s1 += c1[r];
		s32 += c32[r];
	}
	printf("  mean of rounds: fdatasync %.0f/s; 1 session %.0f commits/s (%.2fx); %d sessions %.0f commits/s (%.2fx)\n",
	       sf / rounds, s1 / rounds, s1 / sf, COMMIT_MAX, s32 / rounds, s32 / sf);
	size_t nall = 0;
	for (int i = 0; i < COMMIT_MAX; i++)
		nall += cs[i].nlat;
	uint64_t *all = malloc((nall + 1) * sizeof(uint64_t));
	if (all == NULL)
		return 1;
	print_row("1 session: change + commit", cs[0].lat, cs[0].nlat, 0);
	nall = 0;
	for (int i = 1; i < COMMIT_MAX; i++) {
		memcpy(all + nall, cs[i].lat, cs[i].nlat * sizeof(uint64_t));
		nall += cs[i].nlat;
	}
	print_row("sessions 2-32: change + commit", all, nall, 0);
	for (int i = 0; i < COMMIT_MAX; i++) {
		coral_session_close(cs[i].s);
		free(cs[i].lat);
	}
	free(all);
	free(cs);
	free(f);
	free(c1);
	free(c32);
	return 0;
}

/* ---- main ----------------------------------------------------------------------------- */

static int usage(void)
{
	fprintf(stderr, "usage: gcs-bench -c CONF [--rounds R] [--seconds S] [--transfers N] [--redis-port P] "
			"[--pingpong c2,c3,d2,d3] [pingpong] [local] [serve] [commit]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *what[4];
	int nwhat = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (a[0] != '-') {
			if (nwhat == 4)
				return usage();
			what[nwhat++] = a;
			continue;
		}
		if (v == NULL)
			return usage();
		if (strcmp(a, "-c") == 0) conf_path = v;
		else if (strcmp(a, "--rounds") == 0) rounds = atoi(v);
		else if (strcmp(a, "--seconds") == 0) seconds = strtod(v, NULL);
		else if (strcmp(a, "--transfers") == 0) transfers = strtoull(v, NULL, 10);
		else if (strcmp(a, "--redis-port") == 0) redis_port = atoi(v);
		else if (strcmp(a, "--pingpong") == 0) kinds = v;
		else return usage();
		i++;
	}
	if (conf_path == NULL || rounds < 1 || seconds <= 0 || transfers < 10)
		return usage();
	conf = calloc(1, sizeof(*conf));
	if (conf == NULL || coral_conf_load(conf, conf_path) != 0) {
		fprintf(stderr, "gcs-bench: %s\n", conf ? conf->errmsg : "out of memory");
		return 1;
	}
	if (conf->nnodes < 3) {
		fprintf(stderr, "gcs-bench: needs a cluster of three nodes (ids 1, 2, 3)\n");
		return 1;
	}
	const struct coral_node_conf *n1 = coral_conf_node_by_id(conf, 1);
	if (n1 == NULL || coral_sga_attach(&sga, conf, n1, true) != 0 || (map = coral_grd_map_sga(&sga)) == NULL ||
	    map->version == 0) {
		fprintf(stderr, "gcs-bench: node 1 is not running or has no bucket map yet\n");
		return 1;
	}
	if (setup_file() != 0)
		return 1;
	static const char *const all[] = {"pingpong", "local", "serve", "commit"};
	if (nwhat == 0)
		for (; nwhat < 4; nwhat++)
			what[nwhat] = all[nwhat];
	int rc = 0;
	for (int i = 0; i < nwhat && rc == 0; i++) {
		if (i > 0)
			printf("\n");
		if (strcmp(what[i], "pingpong") == 0) rc = cmd_pingpong();
		else if (strcmp(what[i], "local") == 0) rc = cmd_local();
		else if (strcmp(what[i], "serve") == 0) rc = cmd_serve();
		else if (strcmp(what[i], "commit") == 0) rc = cmd_commit();
		else return usage();
		fflush(stdout);
	}
	coral_sga_detach(&sga);
	return rc;
}

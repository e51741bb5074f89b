/* commit-load: the commit load scripts/bench-standby.sh puts on a primary: P sessions on a
 * node, each changing 8 bytes of its own block of a data file and committing, as fast as it
 * can for S seconds (a single-row insert's worth of redo per commit). Prints one JSON line:
 * commits, commits per second, and the commit latency's median and 99th percentile (from the
 * block's get to the commit's return).
 *
 * Usage: commit-load -c CONF --node N --file ID --sessions P --seconds S */
#include "bench_util.h"
#include "coral.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct worker {
	pthread_t t;
	const char *conf;
	int node, index;
	uint32_t file;
	uint64_t until;
	uint64_t *lat;
	size_t n, cap;
	int rc;
	char err[256];
};

static void *run(void *arg)
{
	struct worker *w = arg;
	struct coral_session *s;
	if (coral_session_open(w->conf, w->node, "bench", "commit-load", &s) != 0) {
		snprintf(w->err, sizeof(w->err), "%s", coral_session_error(s));
		w->rc = 1;
		return NULL;
	}
	for (uint64_t v = 1; now_ns() < w->until; v++) {
		uint64_t t0 = now_ns();
		struct coral_block *b;
		if (coral_block_get(s, w->file, (uint64_t)w->index, CORAL_MODE_X, &b) != 0 ||
		    coral_block_modify(s, b, 0, &v, sizeof(v)) != 0) {
			snprintf(w->err, sizeof(w->err), "%s", coral_session_error(s));
			w->rc = 1;
			break;
		}
		coral_block_release(s, b);
		if (coral_commit(s, NULL) != 0) {
			snprintf(w->err, sizeof(w->err), "%s", coral_session_error(s));
			w->rc = 1;
			break;
		}
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 4096;
			uint64_t *l = realloc(w->lat, w->cap * sizeof(*l));
			if (l == NULL)
				break;
			w->lat = l;
		}
		w->lat[w->n++] = (now_ns() - t0) / 1000;
	}
	coral_session_close(s);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *conf = NULL;
	int node = 1, sessions = 1;
	uint32_t file = 0;
	double seconds = 5;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (strcmp(a, "-c") == 0) conf = v;
		else if (strcmp(a, "--node") == 0) node = atoi(v);
		else if (strcmp(a, "--file") == 0) file = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--sessions") == 0) sessions = atoi(v);
		else if (strcmp(a, "--seconds") == 0) seconds = strtod(v, NULL);
		else {
			fprintf(stderr, "commit-load: unknown option %s\n", a);
			return 2;
		}
	}
	if (conf == NULL || file == 0 || sessions < 1 || sessions > 256 || seconds <= 0) {
		fprintf(stderr, "usage: commit-load -c CONF --node N --file ID --sessions P (1-256) --seconds S\n");
		return 2;
	}
	struct worker *w = calloc((size_t)sessions, sizeof(*w));
	if (w == NULL)
		return 1;
	uint64_t t0 = now_ns(), until = t0 + (uint64_t)(seconds * 1e9);
	for (int i = 0; i < sessions; i++) {
		w[i] = (struct worker){.conf = conf, .node = node, .index = i, .file = file, .until = until};
		if (pthread_create(&w[i].t, NULL, run, &w[i]) != 0)
			return 1;
	}
	size_t total = 0;
	int rc = 0;
	for (int i = 0; i < sessions; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].n;
		if (w[i].rc) {
			fprintf(stderr, "commit-load: session %d: %s\n", i, w[i].err);
			rc = 1;
		}
	}
	double took = (double)(now_ns() - t0) / 1e9;
	uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
	size_t k = 0;
	for (int i = 0; i < sessions; i++) {
		if (w[i].n)
			memcpy(all + k, w[i].lat, w[i].n * sizeof(*all));
		k += w[i].n;
		free(w[i].lat);
	}
	uint64_t p50 = bench_pct(all, total, 0.5), p99 = bench_pct(all, total, 0.99);
	printf("{\"commits\":%zu,\"per_second\":%.1f,\"p50_us\":%llu,\"p99_us\":%llu,\"sessions\":%d}\n", total,
	       (double)total / took, (unsigned long long)p50, (unsigned long long)p99, sessions);
	free(all);
	free(w);
	return rc;
}

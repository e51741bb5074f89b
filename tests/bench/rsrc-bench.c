/* rsrc-bench: the cost of a call bracket of the resource manager (coral_call_begin and
 * coral_call_end) against a mutex pair (pthread_mutex_lock and unlock, uncontended), in the
 * same run, alternating rounds; nothing asserted. Issue 21's goal: under 1 us with no limit.
 *
 *   rsrc-bench [-c CONF -n NODE] [ROUNDS] [PAIRS]
 * With -c, through a session of a running node (libcoral, the plan in force there); without,
 * on a section of the SGA's layout in this process's memory (what libcoral does, minus its
 * pointer checks), both with no limit and under a pool that is never full. */
#include "coral.h"
#include "rsrc_sga.h"
#include "util.h"

#include "bench_util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t per_pair_ns(uint64_t t0, uint64_t t1, long pairs)
{
	return (t1 - t0) / (uint64_t)pairs;
}

static void *idle_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *conf = NULL;
	int node = 0, rounds = 9;
	long pairs = 1000000;
	int pos = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			conf = argv[++i];
		else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
			node = atoi(argv[++i]);
		else if (pos++ == 0)
			rounds = atoi(argv[i]);
		else
			pairs = atol(argv[i]);
	}
	if (rounds < 1 || pairs < 1) {
		fprintf(stderr, "usage: rsrc-bench [-c CONF -n NODE] [ROUNDS] [PAIRS]\n");
		return 2;
	}
	struct coral_session *s = NULL;
	struct coral_rsrc *r = NULL;
	int slot = 0, pooled = 0;
	if (conf) {
		if (coral_session_open(conf, node, "bench", "rsrc-bench", &s) != 0) {
			fprintf(stderr, "rsrc-bench: %s\n", coral_session_error(s));
			return 1;
		}
		char g[64];
		coral_session_group(s, g, sizeof(g));
		printf("rsrc-bench: a session of node %d, in group %s\n", node, g);
	} else {
		r = malloc(sizeof(*r));
		if (r == NULL)
			return 1;
		coral_rsrc_init(r);
		const char *a[CORAL_RSRC_NATTR] = {[CORAL_RSRC_PROGRAM] = "rsrc-bench"};
		coral_rsrc_sess_open(r, 0, 1, a);   /* OTHER: no limit */
		r->nrules = 1;
		r->rules[0] = (struct coral_rsrc_rule){.attr = CORAL_RSRC_PROGRAM, .pattern = "pooled", .group = "BATCH"};
		const char *b[CORAL_RSRC_NATTR] = {[CORAL_RSRC_PROGRAM] = "pooled"};
		coral_rsrc_sess_open(r, 1, 2, b);
		atomic_store(&r->groups[coral_rsrc_group_find(r, "BATCH")].pool, 1000);
		pooled = 1;
		printf("rsrc-bench: a section of the SGA's layout in this process (no node)\n");
	}
	/* a second thread, idle: a single-threaded process's mutex takes glibc's shortcut (no
	 * atomic instruction), which no program with sessions on several threads gets */
	pthread_t idle;
	pthread_create(&idle, NULL, idle_thread, NULL);
	pthread_detach(idle);
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	uint64_t *call = calloc((size_t)rounds, 8), *pool = calloc((size_t)rounds, 8), *mtx = calloc((size_t)rounds, 8);
	if (!call || !pool || !mtx)
		return 1;
	for (int k = 0; k < rounds; k++) {
		uint64_t t0 = coral_now_mono_ns();
		for (long i = 0; i < pairs; i++) {
			if (s) {
				coral_call_begin(s, -1);
				coral_call_end(s);
			} else {
				coral_rsrc_call_begin(r, slot, -1);
				coral_rsrc_call_end(r, slot);
			}
		}
		uint64_t t1 = coral_now_mono_ns();
		call[k] = per_pair_ns(t0, t1, pairs);
		if (pooled) {
			t0 = coral_now_mono_ns();
			for (long i = 0; i < pairs; i++) {
				coral_rsrc_call_begin(r, 1, -1);
				coral_rsrc_call_end(r, 1);
			}
			t1 = coral_now_mono_ns();
			pool[k] = per_pair_ns(t0, t1, pairs);
		}
		t0 = coral_now_mono_ns();
		for (long i = 0; i < pairs; i++) {
			pthread_mutex_lock(&mu);
			pthread_mutex_unlock(&mu);
		}
		t1 = coral_now_mono_ns();
		mtx[k] = per_pair_ns(t0, t1, pairs);
	}
	uint64_t c = bench_median(call, (size_t)rounds), m = bench_median(mtx, (size_t)rounds);
	printf("call bracket, no limit:        %llu ns (median of %d rounds of %ld)\n", (unsigned long long)c, rounds,
	       pairs);
	if (pooled)
		printf("call bracket, pool not full:   %llu ns\n", (unsigned long long)bench_median(pool, (size_t)rounds));
	printf("mutex pair (the peer):         %llu ns\n", (unsigned long long)m);
	printf("ratio call/mutex:              %.2f  (goal: the call under 1000 ns: %s)\n",
	       m ? (double)c / (double)m : 0.0, c < 1000 ? "met" : "not met");
	if (pooled)
		printf("ratio pooled call/mutex:       %.2f\n", m ? (double)bench_median(pool, (size_t)rounds) / (double)m : 0.0);
	if (s)
		coral_session_close(s);
	free(r);
	return 0;
}

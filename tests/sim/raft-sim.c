/* raft-sim: runs the seeded Raft simulation over many seeds and prints what it saw.
 *   raft-sim [--seeds N] [--first S] [--nodes 3|5|both] [--steps N] [--trace]
 * A failing seed is printed with the command that replays it (with --trace for the events). */
#include "raft_sim.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	uint64_t seeds = 10000, first = 1;
	int steps = 1500, nodes = 0;
	bool do_trace = false;
	static const struct option lo[] = {
		{"seeds", required_argument, NULL, 's'}, {"first", required_argument, NULL, 'f'},
		{"nodes", required_argument, NULL, 'n'}, {"steps", required_argument, NULL, 'k'},
		{"trace", no_argument, NULL, 't'},       {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "s:f:n:k:t", lo, NULL)) != -1) {
		switch (c) {
		case 's': seeds = strtoull(optarg, NULL, 10); break;
		case 'f': first = strtoull(optarg, NULL, 10); break;
		case 'n': nodes = strcmp(optarg, "both") == 0 ? 0 : atoi(optarg); break;
		case 'k': steps = atoi(optarg); break;
		case 't': do_trace = true; break;
		default:
			fprintf(stderr, "usage: raft-sim [--seeds N] [--first S] [--nodes 3|5|both] "
					"[--steps N] [--trace]\n");
			return 2;
		}
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t runs = 0, failed = 0, committed = 0, acked = 0, elections = 0, snaps = 0,
		 reads = 0, confs = 0, crashes = 0;
	for (uint64_t seed = first; seed < first + seeds; seed++) {
		int n = nodes ? nodes : (seed % 2 ? 3 : 5);
		struct sim_opts o = {.seed = seed, .nodes = n, .fault_steps = steps, .heal_steps = 600,
				     .membership = true, .snapshots = true,
				     .trace = do_trace ? stdout : NULL};
		struct sim_result r;
		sim_run(&o, &r);
		runs++;
		committed += r.committed;
		acked += r.acked;
		elections += r.elections;
		snaps += r.snapshots_sent;
		reads += r.reads_confirmed;
		confs += r.conf_changes;
		crashes += r.crashes;
		if (!r.ok) {
			failed++;
			printf("FAIL %s\n  replay: raft-sim --first %llu --seeds 1 --nodes %d --steps %d --trace\n",
			       r.error, (unsigned long long)seed, n, steps);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("raft-sim: %llu seeds (%llu..%llu), %d fault steps each, %.1f s\n",
	       (unsigned long long)runs, (unsigned long long)first,
	       (unsigned long long)(first + seeds - 1), steps, secs);
	printf("  per run on average: %.0f entries committed, %.0f proposals acknowledged, %.1f leaders "
	       "elected, %.1f crashes, %.1f snapshots sent, %.1f reads confirmed, %.1f conf changes\n",
	       (double)committed / (double)runs, (double)acked / (double)runs,
	       (double)elections / (double)runs, (double)crashes / (double)runs,
	       (double)snaps / (double)runs, (double)reads / (double)runs, (double)confs / (double)runs);
	printf("%llu passed, %llu failed\n", (unsigned long long)(runs - failed), (unsigned long long)failed);
	return failed ? 1 : 0;
}

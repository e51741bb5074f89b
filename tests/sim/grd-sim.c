/* grd-sim: runs the grdd model over many seeds. Usage: grd-sim [--seeds N] [--first S]
 * [--nodes K] [--steps T]. Prints a failing seed with its violation, and totals. */
#include "grd_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	unsigned long long seeds = 1000, first = 1, nodes = 3, steps = 6000;
	for (int i = 1; i + 1 < argc; i += 2) {
		unsigned long long v = strtoull(argv[i + 1], NULL, 10);
		if (strcmp(argv[i], "--seeds") == 0) seeds = v;
		else if (strcmp(argv[i], "--first") == 0) first = v;
		else if (strcmp(argv[i], "--nodes") == 0) nodes = v;
		else if (strcmp(argv[i], "--steps") == 0) steps = v;
		else { fprintf(stderr, "usage: grd-sim [--seeds N] [--first S] [--nodes K] [--steps T]\n"); return 2; }
	}
	unsigned long long failed = 0;
	struct grd_sim_result tot = {0};
	for (unsigned long long s = first; s < first + seeds; s++) {
		struct grd_sim_result r;
		char err[512];
		if (grd_sim_run(s, (uint32_t)nodes, (uint32_t)steps, &r, err, sizeof(err)) != 0) {
			printf("seed %llu FAILED: %s\n", s, err);
			failed++;
		}
		tot.versions += r.versions; tot.remasters += r.remasters; tot.granted += r.granted;
		tot.refused += r.refused; tot.recovery_refusals += r.recovery_refusals;
		tot.joins += r.joins; tot.losses += r.losses; tot.cancelled += r.cancelled;
	}
	printf("%llu passed, %llu failed; per run: %.1f map versions, %.1f remasters committed, %.1f cancelled, "
	       "%.1f grants, %.1f refusals (%.1f needing recovery), %.2f joins, %.2f losses\n",
	       seeds - failed, failed, (double)tot.versions / seeds, (double)tot.remasters / seeds,
	       (double)tot.cancelled / seeds, (double)tot.granted / seeds, (double)tot.refused / seeds,
	       (double)tot.recovery_refusals / seeds, (double)tot.joins / seeds, (double)tot.losses / seeds);
	return failed ? 1 : 0;
}

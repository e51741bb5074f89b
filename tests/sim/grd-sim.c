/* grd-sim: runs the grdd model over many seeds. Usage: grd-sim [--seeds N] [--first S]
 * [--nodes K] [--steps T]. Prints a failing seed with its violation, and totals. */
#include "grd_sim.h"
#include "sim_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct sim_args a = {1000, 1, 3, 6000};
	if (sim_args_parse(argc, argv, "grd-sim", &a) != 0)
		return 2;
	unsigned long long seeds = a.seeds, first = a.first, nodes = a.nodes, steps = a.steps;
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

/* ges-sim: runs the GES model over many seeds. Usage: ges-sim [--seeds N] [--first S]
 * [--nodes K] [--steps T] (T in ms). Prints a failing seed with its violation, and totals. */
#include "ges_sim.h"
#include "sim_args.h"

#include <stdio.h>

int main(int argc, char **argv)
{
	struct sim_args a = {200, 1, 3, 20000};
	if (sim_args_parse(argc, argv, "ges-sim", &a) != 0)
		return 2;
	unsigned long long failed = 0;
	struct ges_sim_result tot = {0};
	uint32_t worst = 0, clean = 0, bound = 0;
	for (unsigned long long s = a.first; s < a.first + a.seeds; s++) {
		struct ges_sim_result r;
		char err[512];
		if (ges_sim_run(s, (uint32_t)a.nodes, (uint32_t)a.steps, &r, err, sizeof(err)) != 0) {
			printf("seed %llu FAILED: %s\n", s, err);
			failed++;
		}
		tot.grants += r.grants; tot.transfers += r.transfers; tot.deadlocks += r.deadlocks;
		tot.phantoms += r.phantoms; tot.swept += r.swept; tot.lapsed += r.lapsed;
		tot.coordinator_changes += r.coordinator_changes; tot.messages += r.messages;
		tot.node_losses += r.node_losses; tot.lvb_valid += r.lvb_valid; tot.lvb_invalid += r.lvb_invalid;
		tot.lvb_recovered += r.lvb_recovered;
		if (r.worst_ms > worst)
			worst = r.worst_ms;
		if (r.worst_clean_ms > clean)
			clean = r.worst_clean_ms;
		bound = r.bound_ms;
	}
	double n = (double)a.seeds;
	printf("%llu passed, %llu failed; per run: %.0f transfers, %.0f grants, %.1f deadlocks broken (%.2f found only "
	       "by the sweep), %.1f phantom cycles dismissed, %.2f probes lapsed, %.2f coordinator changes, %.0f "
	       "messages; longest in a real cycle %u ms (bound %u ms), %u ms when no connection broke meanwhile\n",
	       a.seeds - failed, failed, tot.transfers / n, tot.grants / n, tot.deadlocks / n, tot.swept / n,
	       tot.phantoms / n, tot.lapsed / n, tot.coordinator_changes / n, tot.messages / n, worst, bound, clean);
	printf("node losses %llu; value blocks read valid %llu, not valid %llu; taken from a holder's copy after a "
	       "rebuild %llu\n", (unsigned long long)tot.node_losses, (unsigned long long)tot.lvb_valid,
	       (unsigned long long)tot.lvb_invalid, (unsigned long long)tot.lvb_recovered);
	return failed ? 1 : 0;
}

/* gcs-sim: runs the GCS model over many seeds. Usage: gcs-sim [--seeds N] [--first S]
 * [--nodes K] [--steps T]. Prints a failing seed with its violation, and totals. */
#include "gcs_sim.h"
#include "sim_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct sim_args a = {200, 1, 3, 4000};
	if (sim_args_parse(argc, argv, "gcs-sim", &a) != 0)
		return 2;
	unsigned long long seeds = a.seeds, first = a.first, nodes = a.nodes, steps = a.steps;
	unsigned long long failed = 0;
	struct gcs_sim_result t = {0};
	for (unsigned long long s = first; s < first + seeds; s++) {
		struct gcs_sim_result r;
		char err[512];
		if (gcs_sim_run(s, (uint32_t)nodes, (uint32_t)steps, &r, err, sizeof(err)) != 0) {
			printf("seed %llu FAILED: %s\n", s, err);
			failed++;
		}
		t.reads += r.reads; t.writes += r.writes; t.cr_reads += r.cr_reads; t.failures += r.failures;
		t.msgs += r.msgs; t.lost += r.lost; t.two_way += r.two_way; t.three_way += r.three_way;
		t.disk_reads += r.disk_reads; t.pi_kept += r.pi_kept; t.pi_dropped += r.pi_dropped;
		t.writes_back += r.writes_back; t.invalidations += r.invalidations; t.retries += r.retries;
		t.evictions += r.evictions; t.interleaved += r.interleaved;
		t.moves += r.moves; t.moves_abandoned += r.moves_abandoned;
		t.write_errors += r.write_errors; t.inv_held += r.inv_held;
		t.log_pending += r.log_pending; t.log_waits += r.log_waits; t.syncs_async += r.syncs_async;
		t.losses += r.losses; t.recovered_blocks += r.recovered_blocks; t.restarts += r.restarts;
		t.clone_reads += r.clone_reads; t.clone_served += r.clone_served;
	}
	double n = (double)seeds;
	printf("%llu passed, %llu failed; per run: %.0f reads, %.0f writes, %.0f CR reads, %.1f failed gets, "
	       "%.0f messages (%.0f lost), %.0f 2-way, %.0f 3-way, %.0f disk reads, %.0f PIs kept, %.0f dropped, "
	       "%.0f write-backs, %.0f invalidations, %.0f retries, %.0f evictions, %.0f session steps inside lmsd's operations, %.1f masters moved (%.1f moves given up), %.1f failed writes (%.2f invalidations held for one), %.0f log forces not durable at once (%.0f ships and INVs waited for one), %.1f checkpoint syncs off the loop, %.2f nodes lost (%.1f blocks their recovery wrote), %.2f lmsd restarts, %.0f CR reads from a consistent image (%.0f in all, other nodes' included)\n",
	       seeds - failed, failed, t.reads / n, t.writes / n, t.cr_reads / n, t.failures / n, t.msgs / n,
	       t.lost / n, t.two_way / n, t.three_way / n, t.disk_reads / n, t.pi_kept / n, t.pi_dropped / n,
	       t.writes_back / n, t.invalidations / n, t.retries / n, t.evictions / n,
	       t.interleaved / n, t.moves / n, t.moves_abandoned / n, t.write_errors / n, t.inv_held / n, t.log_pending / n, t.log_waits / n, t.syncs_async / n, t.losses / n, t.recovered_blocks / n, t.restarts / n, t.clone_reads / n, t.clone_served / n);
	return failed ? 1 : 0;
}

/* The GES model over a few hundred seeds (ges-sim runs more by hand): with three nodes or
 * more, each run loses one. */
#include "ges_sim.h"

#include "sim_scale.h"

#include <criterion/criterion.h>
#include <stdio.h>

static void seeds(uint64_t first, int n, uint32_t nodes)
{
	n = sim_seeds(n);
	struct ges_sim_result t = {0};
	uint32_t worst = 0;
	for (int i = 0; i < n; i++) {
		struct ges_sim_result r;
		char err[512];
		int rc = ges_sim_run(first + (uint64_t)i, nodes, 20000, &r, err, sizeof(err));
		cr_assert_eq(rc, 0, "seed %llu: %s", (unsigned long long)(first + (uint64_t)i), err);
		t.deadlocks += r.deadlocks;
		t.phantoms += r.phantoms;
		t.transfers += r.transfers;
		t.coordinator_changes += r.coordinator_changes;
		t.lapsed += r.lapsed;
		t.node_losses += r.node_losses;
		t.lvb_valid += r.lvb_valid;
		t.lvb_invalid += r.lvb_invalid;
		t.lvb_recovered += r.lvb_recovered;
		if (r.worst_ms > worst)
			worst = r.worst_ms;
	}
	/* the schedule must deadlock, and stale cycles must turn up, or the checks prove nothing */
	cr_assert_gt(t.deadlocks, (uint64_t)n * 10, "only %llu deadlocks", (unsigned long long)t.deadlocks);
	cr_assert_gt(t.phantoms, (uint64_t)n, "only %llu phantom cycles", (unsigned long long)t.phantoms);
	cr_assert_gt(t.transfers, (uint64_t)n * 1000);
	cr_assert_gt(t.coordinator_changes, 0);
	cr_assert_gt(t.lapsed, 0);
	/* with three nodes or more every run loses one; value blocks are read valid and, after a
	 * loss, not valid, and some are taken from a holder's copy */
	cr_assert_gt(t.lvb_valid, (uint64_t)n * 1000);
	if (nodes >= 3) {
		cr_assert_eq(t.node_losses, (uint64_t)n);
		cr_assert_gt(t.lvb_invalid, 0);
		cr_assert_gt(t.lvb_recovered, 0);
	}
	fprintf(stderr, "%d seeds x %u nodes: %llu transfers, %llu deadlocks, %llu phantoms, %llu coordinator changes, "
		"%llu node losses, value blocks %llu valid / %llu not valid reads, %llu taken from a copy; longest in a "
		"real cycle %u ms\n", n, nodes, (unsigned long long)t.transfers, (unsigned long long)t.deadlocks,
		(unsigned long long)t.phantoms, (unsigned long long)t.coordinator_changes,
		(unsigned long long)t.node_losses, (unsigned long long)t.lvb_valid, (unsigned long long)t.lvb_invalid,
		(unsigned long long)t.lvb_recovered, worst);
}

Test(ges_sim, three_nodes, .timeout = 600) { seeds(1, 200, 3); }
Test(ges_sim, five_nodes, .timeout = 600) { seeds(500001, 100, 5); }
Test(ges_sim, two_nodes, .timeout = 600) { seeds(900001, 50, 2); }

/* The grdd model over a few hundred seeds (grd-sim runs more by hand). */
#include "grd_sim.h"

#include "sim_scale.h"

#include <criterion/criterion.h>
#include <stdio.h>

static void seeds(uint64_t first, int n, uint32_t nodes)
{
	n = sim_seeds(n);
	uint64_t remasters = 0, versions = 0, granted = 0, losses = 0, joins = 0;
	for (int i = 0; i < n; i++) {
		struct grd_sim_result r;
		char err[512];
		int rc = grd_sim_run(first + (uint64_t)i, nodes, 6000, &r, err, sizeof(err));
		cr_assert_eq(rc, 0, "seed %llu: %s", (unsigned long long)(first + (uint64_t)i), err);
		remasters += r.remasters;
		versions += r.versions;
		granted += r.granted;
		losses += r.losses;
		joins += r.joins;
	}
	/* the schedule must actually move things, or the invariant proves nothing */
	cr_assert_gt(remasters, (uint64_t)n / 2, "only %llu remasters committed", (unsigned long long)remasters);
	cr_assert_gt(granted, (uint64_t)n * 50);
	cr_assert_gt(losses, 0);
	cr_assert_gt(joins, 0);
	fprintf(stderr, "%d seeds x %u nodes: %llu versions, %llu remasters, %llu grants, %llu joins, %llu losses\n", n,
	       nodes, (unsigned long long)versions, (unsigned long long)remasters, (unsigned long long)granted,
	       (unsigned long long)joins, (unsigned long long)losses);
}

Test(grd_sim, three_nodes, .timeout = 600) { seeds(1, 30, 3); }
Test(grd_sim, four_nodes, .timeout = 600) { seeds(100001, 15, 4); }

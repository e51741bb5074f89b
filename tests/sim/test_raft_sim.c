/* The Raft simulation in the test suite: 200 seeds with 3 voters and 200 with 5, faults for
 * 1,000 steps each. tools: raft-sim runs more (the note quotes a 10,000-seed run). */
#include "raft_sim.h"

#include "sim_scale.h"

#include <criterion/criterion.h>

static void run_seeds(int nodes, uint64_t first, uint64_t count)
{
	int failed = 0;
	count = (uint64_t)sim_seeds((int)count);
	for (uint64_t seed = first; seed < first + count; seed++) {
		struct sim_opts o = {.seed = seed, .nodes = nodes, .fault_steps = 1000, .heal_steps = 600,
				     .membership = true, .snapshots = true};
		struct sim_result r;
		sim_run(&o, &r);
		if (!r.ok) {
			failed++;
			cr_log_error("%s (replay: raft-sim --first %llu --seeds 1 --nodes %d --steps 1000 --trace)",
				     r.error, (unsigned long long)seed, nodes);
		}
	}
	cr_expect_eq(failed, 0, "%d of %llu seeds failed", failed, (unsigned long long)count);
}

Test(raft_sim, three_nodes_seeds_1_100, .timeout = 300) { run_seeds(3, 1, 100); }
Test(raft_sim, three_nodes_seeds_101_200, .timeout = 300) { run_seeds(3, 101, 100); }
Test(raft_sim, five_nodes_seeds_1_100, .timeout = 300) { run_seeds(5, 1, 100); }
Test(raft_sim, five_nodes_seeds_101_200, .timeout = 300) { run_seeds(5, 101, 100); }

Test(raft_sim, a_run_is_reproducible)
{
	struct sim_opts o = {.seed = 4242, .nodes = 5, .fault_steps = 800, .heal_steps = 400,
			     .membership = true, .snapshots = true};
	struct sim_result a, b;
	sim_run(&o, &a);
	sim_run(&o, &b);
	cr_expect(a.ok, "%s", a.error);
	cr_expect_eq(a.committed, b.committed);
	cr_expect_eq(a.acked, b.acked);
	cr_expect_eq(a.elections, b.elections);
	cr_expect_eq(a.crashes, b.crashes);
	cr_expect_gt(a.acked, 0, "the run did real work");
	cr_expect_gt(a.elections, 1, "and went through elections");
}

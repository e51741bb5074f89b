/* The GES model test (ges_sim.c): one seeded run of several lmdd masters (the real GES core,
 * ges.c) and the deadlock coordinator (the real dlk.c) over an in-memory network with random
 * delays, lost probes, coordinator changes and the loss of a node (the rebuild at new masters,
 * the lost node's locks held until its recovery), sessions taking two locks in random order
 * (so that they deadlock) and writing value blocks, and the invariants checked after every
 * millisecond. GES_SIM_TRACE=1
 * in the environment prints every report, probe, victim and loss. */
#ifndef CORAL_GES_SIM_H
#define CORAL_GES_SIM_H

#include <stddef.h>
#include <stdint.h>

struct ges_sim_result {
	uint64_t grants, deadlocks, victims_refused, phantoms, swept, lapsed, coordinator_changes;
	uint64_t messages, transfers, lost;
	uint64_t node_losses;      /* nodes lost (one a run of three nodes or more) */
	uint64_t lost_cycles;      /* victims of cycles through the lost node, before the coordinator knew */
	uint64_t lvb_valid, lvb_invalid, lvb_recovered; /* grants read a valid/invalid value block;
				    * values a rebuild took from a holder's copy */
	uint32_t worst_ms;         /* the longest a session sat in a real cycle */
	uint32_t worst_clean_ms;   /* the same, among cycles no broken connection touched */
	uint32_t bound_ms;         /* what it was allowed */
};

/* 0 when every invariant held; CORAL_EINVAL with the violation in err otherwise. steps: ms. */
int ges_sim_run(uint64_t seed, uint32_t nodes, uint32_t steps, struct ges_sim_result *out, char *err, size_t errsz);

#endif

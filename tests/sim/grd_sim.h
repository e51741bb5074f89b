/* The grdd model test (grd_sim.c): one seeded run of several grdd cores over an in-memory
 * network and config store, with the safety invariants checked after every step. */
#ifndef CORAL_GRD_SIM_H
#define CORAL_GRD_SIM_H

#include <stddef.h>
#include <stdint.h>

struct grd_sim_result {
	uint64_t requests, granted, refused, recovery_refusals;
	uint64_t remasters, cancelled, versions, messages, joins, losses;
};

/* 0 when every invariant held; CORAL_EINVAL with the violation in err otherwise. */
int grd_sim_run(uint64_t seed, uint32_t nodes, uint32_t steps, struct grd_sim_result *out,
		char *err, size_t errsz);

#endif

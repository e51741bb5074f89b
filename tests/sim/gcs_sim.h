/* The GCS model: several nodes' GCS cores (daemons/lmsd/gcs.c) over an in-memory network
 * that loses, delays and reorders messages, under sessions reading and writing a few hot
 * blocks, with the invariants checked after every step. One seed is one reproducible run. */
#ifndef CORAL_GCS_SIM_H
#define CORAL_GCS_SIM_H

#include <stddef.h>
#include <stdint.h>

struct gcs_sim_result {
	uint64_t reads, writes, cr_reads, failures, msgs, lost, two_way, three_way, disk_reads;
	uint64_t pi_kept, pi_dropped, writes_back, invalidations, retries, evictions;
	uint64_t interleaved;   /* session fast paths run where lmsd had let a latch go */
	uint64_t moves, moves_abandoned;   /* masters moved, and moves given up on a busy block */
	uint64_t write_errors;  /* data-file writes the model failed */
	uint64_t inv_held;      /* INVs held back: a dirty image could not be written */
	uint64_t log_pending;   /* log forces answered 'asked for, not durable yet' */
	uint64_t syncs_async;   /* checkpoints' syncs that ended steps after they began */
	uint64_t log_waits;     /* ships and INVs that waited for the log so */
	uint64_t losses, recovered_blocks;  /* nodes lost, and blocks their recovery wrote */
	uint64_t restarts;      /* lmsd restarts (each: the node left, was recovered, joined again) */
	uint64_t clone_reads;   /* CR reads a session answered from a consistent image on its node */
	uint64_t clone_served;  /* ... and all such, by the sessions and by lmsd for other nodes */
};

/* 0 if every invariant held; else nonzero with the violation (and the step) in err. */
int gcs_sim_run(uint64_t seed, uint32_t nodes, uint32_t steps, struct gcs_sim_result *out, char *err,
		size_t errsz);

#endif

/* A deterministic, seeded simulation of several Raft cores in one process: an in-memory
 * network that loses, delays, reorders and duplicates messages, symmetric and asymmetric
 * partitions, crashes that lose whatever was not yet durable, restarts from what was,
 * membership changes, leadership transfers, ReadIndex and snapshots, all while the faults
 * go on. Every step checks Election Safety, Leader Append-Only, Log Matching, Leader
 * Completeness and State Machine Safety; after the faults heal, a leader must emerge and
 * every acknowledged proposal must be applied on every member. The same seed replays the
 * same run. */
#ifndef CORAL_RAFT_SIM_H
#define CORAL_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct sim_opts {
	uint64_t seed;
	int nodes;            /* 3 or 5 voters at the start */
	int fault_steps;      /* steps with faults */
	int heal_steps;       /* steps after healing for a leader and catch-up */
	bool membership;      /* add and remove nodes during faults */
	bool snapshots;       /* compact logs, so InstallSnapshot happens */
	FILE *trace;          /* event trace, or NULL */
};

struct sim_result {
	bool ok;
	char error[512];      /* the first violation, with seed and step */
	uint64_t committed;   /* entries committed by the end */
	uint64_t acked;       /* proposals acknowledged to "clients" */
	uint64_t elections;   /* leaders elected */
	uint64_t snapshots_sent, reads_confirmed, conf_changes, crashes;
};

void sim_run(const struct sim_opts *o, struct sim_result *res);

#endif

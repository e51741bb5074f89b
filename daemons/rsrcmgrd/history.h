/* The recorded demand of the node's consumer groups (the last RSRC_HIST_SECONDS seconds, a
 * second at a time) and its replay against a plan: what that plan would have queued,
 * throttled or acted on (coralctl rsrc plan simulate). Pure: rsrcmgrd samples, this keeps
 * and computes. */
#ifndef CORAL_RSRC_HISTORY_H
#define CORAL_RSRC_HISTORY_H

#include "rsrc.h"

#include <stddef.h>
#include <stdint.h>

#define RSRC_HIST_SECONDS 300
#define RSRC_DUR_BUCKETS 16   /* bucket 0: calls under 100 ms; k: 100 ms x 2^(k-1) to x 2^k */

/* One group's second. */
struct rsrc_hist_sec {
	uint16_t demand;              /* calls under way and queued, the most seen in the second */
	uint16_t pad;
	uint32_t cpu_ms;              /* CPU time its sessions' threads used in the second */
	uint32_t calls;               /* calls begun */
	uint32_t io_reqs;             /* block reads charged */
	uint32_t dur[RSRC_DUR_BUCKETS]; /* calls that ended, by how long they ran */
	uint64_t io_bytes;
};

struct rsrc_hist {
	char names[RSRC_GROUPS_MAX][RSRC_NAME_MAX];   /* by the SGA's group index */
	uint64_t last_calls[RSRC_GROUPS_MAX], last_reqs[RSRC_GROUPS_MAX], last_bytes[RSRC_GROUPS_MAX];
	uint64_t sec0;                /* the second (monotonic) of slot `at` */
	size_t at, filled;
	struct rsrc_hist_sec s[RSRC_HIST_SECONDS][RSRC_GROUPS_MAX];
};

void rsrc_hist_init(struct rsrc_hist *h, uint64_t now_sec);
/* A sample of group g at second now_sec: its name, calls under way and queued, and its
 * counters since the start (calls begun, block reads and bytes charged). */
void rsrc_hist_sample(struct rsrc_hist *h, uint64_t now_sec, uint32_t g, const char *name, uint32_t demand,
		      uint64_t calls, uint64_t io_reqs, uint64_t io_bytes);
/* A call of group g that ended after dur_ms, at second now_sec. */
void rsrc_hist_call(struct rsrc_hist *h, uint64_t now_sec, uint32_t g, uint64_t dur_ms);
/* CPU time (ms) group g's sessions used, counted at second now_sec. */
void rsrc_hist_cpu(struct rsrc_hist *h, uint64_t now_sec, uint32_t g, uint32_t ms);

/* What plan would have done to one group's recorded demand. */
struct rsrc_sim {
	char group[RSRC_NAME_MAX];
	char governed_by[RSRC_NAME_MAX];   /* the group whose directive it falls under */
	int pool, io_iops, io_mbps, exec_ms, action;
	uint32_t seconds;                  /* seconds with a record */
	uint32_t demand_max;
	double demand_avg;
	uint64_t calls;
	uint32_t queued_seconds;           /* seconds in which demand was past the pool */
	uint64_t queued_call_seconds;      /* sum of the demand past it */
	uint32_t io_seconds;               /* seconds past an I/O limit */
	uint64_t io_excess_reqs, io_excess_bytes;
	uint64_t calls_past_exec;          /* calls that ran past exec= (at least, by bucket) */
	/* CPU: what its sessions used, what the plan would have given them of it, each second
	 * the node's CPUs shared by the plan's shares and caps among the groups that wanted
	 * them (work-conserving: what one leaves goes to the others), and the difference */
	uint64_t cpu_ms, cpu_would_ms, cpu_held_ms;
	uint32_t cpu_held_seconds;         /* seconds in which it would have been held back */
	int cap;                           /* its directive's cap (% of the node; 0: none) */
	double share;                      /* its part of the node under saturation */
};

/* Replays the last `seconds` (at most what is recorded) against plan (which must validate in
 * d) on a node of ncpu CPUs: one entry per group with a record, into out[max]; how many, or
 * -1 (no such plan). The CPU a group used is taken as what it wanted: a group the plan in
 * force held back wanted more than the record shows. */
int rsrc_simulate(const struct rsrc_hist *h, const struct rsrc_def *d, const char *plan, uint32_t seconds,
		  uint32_t ncpu, struct rsrc_sim *out, size_t max);

#endif

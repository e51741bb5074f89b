/* The cluster view in the SGA: what raftd has committed about membership (members, their
 * incarnations and states, the epoch, the leader) and whether this node is fenced. raftd is
 * the only writer; every other daemon and coralctl reads it without locks or IPC through
 * the sequence counter, and must stop serving while `fenced` is set. */
#ifndef CORAL_CLUSTER_H
#define CORAL_CLUSTER_H

#include "conf.h"
#include "sga.h"
#include "sync.h"
#include "util.h"

#include <stdbool.h>
#include <stdint.h>

enum coral_member_state {
	CORAL_MEMBER_NONE,
	CORAL_MEMBER_JOINING,   /* added, not yet running as a member */
	CORAL_MEMBER_ACTIVE,
	CORAL_MEMBER_EVICTED,   /* this incarnation is out; a new one may join */
	CORAL_MEMBER_REMOVED,   /* out for good; the id is never reused */
	CORAL_MEMBER_NSTATES
};
const char *coral_member_state_name(int state);

struct coral_member_view {
	uint32_t id;
	uint8_t state;
	uint64_t incarnation;
	uint64_t instance;         /* its SGA at its last join: new when the whole node restarted */
};

struct coral_cluster_view {
	uint64_t epoch;
	uint64_t term;
	uint32_t leader;           /* 0: none known */
	uint64_t commit, applied;
	uint64_t incarnation;      /* this node's */
	bool fenced;
	bool joining;              /* fenced only because it is not a member (yet, or again) */
	char fence_reason[128];
	uint64_t lease_until_ns;   /* CLOCK_MONOTONIC */
	uint64_t evicted_inc;      /* the newest incarnation of this node raftd has seen evicted: a
				    * cache serving since an incarnation at or below it was recovered
				    * by the others and must not be used (lmsd, libcoral) */
	uint32_t nmembers;
	struct coral_member_view members[CORAL_MAX_NODES];
	uint64_t updates;
};

struct coral_cluster_sga {
	struct coral_seq seq;
	struct coral_cluster_view v;
};

size_t coral_cluster_sga_size(const struct coral_conf *conf);
int coral_cluster_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node);
void coral_cluster_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);

struct coral_cluster_sga *coral_cluster_sga(const struct coral_sga *sga);
/* Whether this node is fenced: raftd says so, or the lease raftd last published has run out
 * (raftd died or hangs, and nobody renews it: the majority evicts the node lease_drift_ms
 * later). Read without the sequence counter (a byte and an aligned word), as the data paths
 * (libcoral, lmsd, the log writer) ask on every call. */
static inline bool coral_cluster_fenced(const struct coral_cluster_sga *c)
{
	if (c == NULL)
		return false;
	if (__atomic_load_n(&c->v.fenced, __ATOMIC_ACQUIRE))
		return true;
	uint64_t until = __atomic_load_n(&c->v.lease_until_ns, __ATOMIC_ACQUIRE);
	return until != 0 && coral_now_mono_ns() > until;
}
/* The newest evicted incarnation of this node (read as coral_cluster_fenced does). */
static inline uint64_t coral_cluster_evicted_inc(const struct coral_cluster_sga *c)
{
	return c ? __atomic_load_n(&c->v.evicted_inc, __ATOMIC_ACQUIRE) : 0;
}

/* Why coral_cluster_fenced() said so, into buf; true if only because the node has not
 * joined (every start: logged as news, not as a warning). */
bool coral_cluster_fence_reason(const struct coral_cluster_sga *c, char *buf, size_t n);
/* A consistent copy of the view (retries while raftd is writing). */
void coral_cluster_read(const struct coral_cluster_sga *c, struct coral_cluster_view *out);
/* raftd only. */
void coral_cluster_publish(struct coral_cluster_sga *c, const struct coral_cluster_view *v);

#endif

/* The Raft core: a pure state machine in the manner of etcd/raft. It does no I/O and reads
 * no clock: the host feeds it ticks, messages and proposals, then collects a "ready" batch
 * (hard state and entries to persist, a snapshot to install, messages to send once those
 * are durable, committed entries to apply, confirmed reads), carries it out, and calls
 * raft_advance(). That is what lets a seeded simulation run many cores in one process.
 *
 * Features: randomized election timeouts, pre-vote, check-quorum with a leader lease that
 * makes voters ignore disruptive candidates, pipelined and batched replication with a
 * bounded in-flight window, commit of current-term entries by counting, snapshots and
 * InstallSnapshot, one-server-at-a-time membership changes (learners first, promoted once
 * caught up; ids never reused), leadership transfer, ReadIndex, and a bound on the
 * uncommitted log that pushes back on proposers.
 *
 * Node ids are 1..RAFT_MAX_NODES; a configuration is a set of bitmasks over them. */
#ifndef CORAL_RAFT_H
#define CORAL_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_MAX_NODES 64
#define RAFT_MAX_INFLIGHT 64     /* append messages in flight per follower */
#define RAFT_MAX_READS 1024      /* ReadIndex requests waiting for confirmation */

enum raft_role { RAFT_FOLLOWER, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

enum raft_entry_type {
	RAFT_ENTRY_NORMAL,
	RAFT_ENTRY_NOOP,         /* appended by every new leader */
	RAFT_ENTRY_ADD_LEARNER,  /* data: node id, 4 bytes big-endian */
	RAFT_ENTRY_PROMOTE,      /* learner becomes voter */
	RAFT_ENTRY_REMOVE,       /* voter or learner leaves for good */
	RAFT_ENTRY_BOOTSTRAP,    /* index 1 of a new cluster: data is the founders' voter mask,
				  * 8 bytes little-endian; replicated to joiners like any entry */
};

struct raft_entry {
	uint64_t term;
	uint64_t index;
	uint8_t type;
	uint32_t len;
	uint8_t *data;
};

struct raft_conf {
	uint64_t voters;    /* bit (id-1) */
	uint64_t learners;
	uint64_t removed;   /* ids that may never come back */
};

struct raft_snapshot {
	uint64_t index;
	uint64_t term;
	struct raft_conf conf;
	uint8_t *data;
	size_t len;
};

struct raft_hard_state {
	uint64_t term;
	uint32_t vote;
	uint64_t commit;
};

enum raft_msg_type {
	RAFT_MSG_APPEND,
	RAFT_MSG_APPEND_RESP,
	RAFT_MSG_VOTE,
	RAFT_MSG_VOTE_RESP,
	RAFT_MSG_PREVOTE,
	RAFT_MSG_PREVOTE_RESP,
	RAFT_MSG_SNAPSHOT,
	RAFT_MSG_HEARTBEAT,
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_TIMEOUT_NOW,
	RAFT_MSG_NTYPES
};

struct raft_msg {
	uint8_t type;
	bool reject;
	bool transfer;          /* VOTE: campaign started by a leadership transfer */
	uint32_t from, to;
	uint64_t term;
	uint64_t index;         /* APPEND: prev index; VOTE: last index; APPEND_RESP: match or rejected index */
	uint64_t log_term;      /* APPEND: prev term; VOTE: last term */
	uint64_t commit;        /* APPEND, HEARTBEAT */
	uint64_t hint;          /* APPEND_RESP reject: the follower's last index */
	uint64_t ctx;           /* HEARTBEAT(_RESP): ReadIndex round */
	struct raft_entry *entries;   /* owned by the message */
	size_t n_entries;
	struct raft_snapshot *snap;   /* SNAPSHOT, owned by the message */
};

struct raft_read_state {
	uint64_t ctx;     /* the caller's id for the read */
	uint64_t index;   /* serve the read once applied >= index */
};

/* Why the core changed leader or role, for the history raftd keeps. */
enum raft_event {
	RAFT_EV_NONE,
	RAFT_EV_ELECTED,              /* this node won an election */
	RAFT_EV_STEPDOWN_TERM,        /* saw a higher term */
	RAFT_EV_STEPDOWN_QUORUM,      /* check-quorum: no majority heard within an election timeout */
	RAFT_EV_STEPDOWN_REMOVED,     /* removed from the configuration */
	RAFT_EV_ELECTION_TIMEOUT,     /* started an election */
	RAFT_EV_TRANSFER,             /* started an election on a leadership transfer */
	RAFT_EV_LEADER_LOST,          /* started an election early: the leader's link closed */
};

struct raft_ready {
	bool hs_changed;
	struct raft_hard_state hs;
	const struct raft_snapshot *snapshot;   /* persist it, restore the state machine from it;
						 * then drop stored entries up to its index */
	bool log_reset;                         /* with snapshot: drop every stored entry */
	const struct raft_entry *entries;       /* persist; storage is cut at entries[0].index first */
	size_t n_entries;
	struct raft_msg *msgs;                  /* send after the above is durable */
	size_t n_msgs;
	const struct raft_entry *committed;     /* apply, in order */
	size_t n_committed;
	const struct raft_read_state *reads;
	size_t n_reads;
};

struct raft_opts {
	uint32_t id;
	int election_ticks;      /* election timeout, randomized in [n, 2n) */
	int heartbeat_ticks;
	bool pre_vote;
	bool check_quorum;
	bool auto_promote;       /* the leader promotes a learner once it has caught up */
	size_t max_batch;        /* entries per append message */
	size_t max_inflight;     /* <= RAFT_MAX_INFLIGHT */
	size_t max_uncommitted;  /* bytes of uncommitted entry data before proposals are refused */
	size_t max_msgs;         /* outgoing messages held between two ready batches */
	uint64_t (*rand)(void *arg);
	void *rand_arg;
};

/* What the host recovered from storage. A new cluster's founders boot with one entry,
 * made by raft_bootstrap_entry(), and hard state {term 1, vote 0, commit 1}; a node that
 * joins boots empty and learns everything from the leader. */
struct raft_boot {
	struct raft_hard_state hs;
	struct raft_snapshot snap;          /* data is copied */
	const struct raft_entry *entries;   /* snap.index+1 .. ; copied */
	size_t n_entries;
};

struct raft_progress {
	uint64_t match, next;
	uint8_t state;           /* probe, replicate, snapshot */
	bool active;             /* heard from within the current election timeout */
	bool probe_sent;
	uint64_t pending_snap;
	int snap_ticks;
	uint64_t inflight[RAFT_MAX_INFLIGHT];  /* ring of last indexes of messages in flight */
	size_t in_start, in_count;
};

struct raft_pending_read {
	uint64_t ctx, index, round;
	uint64_t acks;   /* voters that answered a heartbeat of this round or later */
};

struct raft {
	struct raft_opts o;
	enum raft_role role;
	uint64_t term;
	uint32_t vote;
	uint32_t leader;
	struct raft_conf conf;
	uint64_t conf_index;       /* index of the entry that set conf (0: snapshot) */
	uint64_t pending_conf;     /* leader: index of an uncommitted conf entry, 0 if none */

	/* the log: snapshot, then entries[0..n) holding snap.index+1 .. */
	struct raft_snapshot snap;
	struct raft_entry *log;
	size_t n, cap;
	uint64_t committed, applied;
	uint64_t stable;           /* last index the host has made durable */
	size_t uncommitted_bytes;

	int election_elapsed, heartbeat_elapsed, randomized_timeout;
	uint32_t lost_leader;      /* raft_leader_lost() hurried the next election */
	uint64_t votes_for, votes_against;
	uint32_t transferee;
	int transfer_elapsed;
	struct raft_progress pr[RAFT_MAX_NODES];

	struct raft_pending_read reads[RAFT_MAX_READS];
	size_t n_reads;
	uint64_t read_round;
	struct raft_read_state ready_reads[RAFT_MAX_READS];
	size_t n_ready_reads;

	/* what the next ready batch carries */
	struct raft_hard_state last_hs;
	bool snap_pending;         /* snap must be handed to the host */
	bool log_reset;            /* ... and the host's stored entries are all stale */
	struct raft_msg *msgs;
	size_t n_msgs, cap_msgs;
	uint64_t dropped_msgs;
	size_t ready_entries_from; /* index of the first entry in the current batch, for advance */

	enum raft_event last_event;
	uint32_t last_event_peer;
};

int raft_init(struct raft *r, const struct raft_opts *o, const struct raft_boot *boot);
void raft_free(struct raft *r);

void raft_tick(struct raft *r);

/* The host saw its connection to `peer` close (a process that dies closes its sockets).
 * If peer is this follower's leader and pre-vote is on, the leader's lease is taken as
 * over and an election starts within 1 to election_ticks ticks instead of a full
 * randomized timeout. Safe without pre-vote's help only if the leader is dead; with it, a
 * leader still heard by a majority keeps them from granting, so nothing is disrupted. */
void raft_leader_lost(struct raft *r, uint32_t peer);
/* m is not consumed: its entries and snapshot are copied as needed. */
void raft_step(struct raft *r, const struct raft_msg *m);

/* Leader only. CORAL_ENOTLEADER, CORAL_EBUSY (uncommitted bound, transfer under way, or
 * another configuration change not yet committed), CORAL_EINVAL. */
int raft_propose(struct raft *r, const void *data, uint32_t len, uint64_t *index);
int raft_propose_conf(struct raft *r, enum raft_entry_type type, uint32_t node, uint64_t *index);
int raft_transfer_leader(struct raft *r, uint32_t to);
int raft_read_index(struct raft *r, uint64_t ctx);

bool raft_has_ready(const struct raft *r);
void raft_ready(struct raft *r, struct raft_ready *rd);
void raft_advance(struct raft *r, const struct raft_ready *rd);

/* The host applied everything up to index and took a snapshot of its state machine:
 * entries up to index are dropped and data becomes what lagging followers are sent. */
int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len);

uint64_t raft_last_index(const struct raft *r);
uint64_t raft_term_at(const struct raft *r, uint64_t index); /* 0: unknown */
const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index);
bool raft_conf_is_voter(const struct raft_conf *c, uint32_t id);
bool raft_conf_is_learner(const struct raft_conf *c, uint32_t id);
int raft_conf_voters(const struct raft_conf *c);

/* Fills e (index 1, term 1) with the founding configuration; buf holds its data. */
void raft_bootstrap_entry(struct raft_entry *e, uint8_t buf[8], uint64_t voters);

void raft_msg_free(struct raft_msg *m);
const char *raft_role_name(enum raft_role role);
const char *raft_msg_name(int type);

#endif

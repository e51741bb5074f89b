/* Deterministic unit tests of the Raft core with scripted message delivery: the commit
 * rule of section 3.6.2 (the "Figure 8" condition), proposals and their refusals, the
 * bound on uncommitted data, one configuration change at a time, ids never reused, a
 * lone voter, leadership transfer, and the election hurried when the leader's link closes
 * (harmless when only one follower lost it). */
#include "errors.h"
#include "raft.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define N 3

static uint64_t seed_state[N + 1];

static uint64_t rnd(void *arg)
{
	uint64_t *s = arg;
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

struct net {
	struct raft r[N + 1];
	struct raft_msg q[4096];
	size_t nq;
};

static struct net *net_new(int nodes, size_t max_batch, const struct raft_entry *extra1,
			   uint64_t term)
{
	struct net *n = calloc(1, sizeof(*n));
	uint64_t voters = (1ull << nodes) - 1;
	for (int id = 1; id <= nodes; id++) {
		uint8_t buf[8];
		struct raft_entry log[2];
		raft_bootstrap_entry(&log[0], buf, voters);
		size_t nlog = 1;
		if (id == 1 && extra1)
			log[nlog++] = *extra1;
		seed_state[id] = (uint64_t)id * 977;
		struct raft_opts o = {.id = (uint32_t)id, .election_ticks = 10, .heartbeat_ticks = 2,
				      .pre_vote = true, .check_quorum = true, .auto_promote = true,
				      .max_batch = max_batch, .max_inflight = 8, .max_uncommitted = 1024,
				      .max_msgs = 1024, .rand = rnd, .rand_arg = &seed_state[id]};
		struct raft_boot b = {.hs = {.term = term, .commit = 1}, .entries = log, .n_entries = nlog};
		cr_assert_eq(raft_init(&n->r[id], &o, &b), 0);
	}
	return n;
}

static void net_free(struct net *n, int nodes)
{
	for (size_t i = 0; i < n->nq; i++)
		raft_msg_free(&n->q[i]);
	for (int id = 1; id <= nodes; id++)
		raft_free(&n->r[id]);
	free(n);
}

/* Carries out every ready batch (storage is implicit: durable at once), queueing messages. */
static void flush(struct net *n, int nodes)
{
	for (int round = 0; round < 8; round++)
		for (int id = 1; id <= nodes; id++) {
			struct raft *r = &n->r[id];
			if (!raft_has_ready(r))
				continue;
			struct raft_ready rd;
			raft_ready(r, &rd);
			for (size_t i = 0; i < rd.n_msgs && n->nq < 4096; i++) {
				n->q[n->nq] = rd.msgs[i];
				rd.msgs[i].entries = NULL; /* moved into the queue */
				rd.msgs[i].n_entries = 0;
				rd.msgs[i].snap = NULL;
				n->nq++;
			}
			raft_advance(r, &rd);
		}
}

/* Delivers queued messages accepted by allow(); the others are dropped. */
static void deliver(struct net *n, int nodes, bool (*allow)(const struct raft_msg *))
{
	while (n->nq > 0) {
		struct raft_msg m = n->q[0];
		memmove(n->q, n->q + 1, (n->nq - 1) * sizeof(n->q[0]));
		n->nq--;
		if (!allow || allow(&m))
			raft_step(&n->r[m.to], &m);
		raft_msg_free(&m);
		flush(n, nodes);
	}
}

static void elect(struct net *n, int nodes, int who)
{
	for (int t = 0; t < 40 && n->r[who].role != RAFT_LEADER; t++) {
		raft_tick(&n->r[who]); /* only the chosen one's clock runs */
		flush(n, nodes);
		deliver(n, nodes, NULL);
	}
	cr_assert_eq(n->r[who].role, RAFT_LEADER, "node %d was not elected", who);
}

static uint32_t watched_to;
static bool only_to_watched(const struct raft_msg *m)
{
	return m->to == watched_to || m->from == watched_to;
}

Test(raft_core, leader_never_commits_an_older_term_entry_by_counting)
{
	/* node 1 holds an entry of term 2 at index 2 that nobody else has; it wins term 4 */
	uint8_t data[8] = "older";
	struct raft_entry old = {.term = 2, .index = 2, .type = RAFT_ENTRY_NORMAL, .len = 8, .data = data};
	struct net *n = net_new(N, 1, &old, 3);
	/* the election must not replicate anything yet: let only votes through */
	for (int t = 0; t < 40 && n->r[1].role != RAFT_LEADER; t++) {
		raft_tick(&n->r[1]);
		flush(n, N);
		for (size_t i = 0; i < n->nq; i++) {
			struct raft_msg *m = &n->q[i];
			if (m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_VOTE ||
			    m->type == RAFT_MSG_PREVOTE_RESP || m->type == RAFT_MSG_VOTE_RESP) {
				raft_step(&n->r[m->to], m);
				raft_msg_free(m);
				flush(n, N);
			} else {
				raft_msg_free(m);
			}
		}
		n->nq = 0;
	}
	cr_assert_eq(n->r[1].role, RAFT_LEADER);
	cr_assert_eq(n->r[1].term, 4);
	cr_assert_eq(raft_term_at(&n->r[1], 3), 4, "the new leader's no-op");
	/* replicate to node 2 one entry per message (max_batch 1): first index 2 (term 2) */
	watched_to = 2;
	bool saw_match2 = false;
	for (int t = 0; t < 20 && n->r[1].committed < 3; t++) {
		raft_tick(&n->r[1]);
		flush(n, N);
		while (n->nq > 0) {
			struct raft_msg m = n->q[0];
			memmove(n->q, n->q + 1, (n->nq - 1) * sizeof(n->q[0]));
			n->nq--;
			if (only_to_watched(&m))
				raft_step(&n->r[m.to], &m);
			raft_msg_free(&m);
			flush(n, N);
			if (n->r[1].pr[1].match == 2) {
				saw_match2 = true;
				/* a majority (1 and 2) holds index 2, but it is of term 2: not committed */
				cr_expect_lt(n->r[1].committed, 2, "committed an older-term entry by counting");
			}
		}
	}
	cr_expect(saw_match2, "node 2 held index 2 alone for a moment");
	cr_expect_eq(n->r[1].committed, 3, "committing the term-4 no-op commits index 2 with it");
	net_free(n, N);
}

Test(raft_core, proposals_and_refusals)
{
	struct net *n = net_new(N, 64, NULL, 1);
	uint64_t idx;
	cr_expect_eq(raft_propose(&n->r[2], "x", 1, &idx), CORAL_ENOTLEADER);
	elect(n, N, 1);
	cr_expect_eq(raft_propose(&n->r[1], "hello", 5, &idx), 0);
	flush(n, N);
	deliver(n, N, NULL);
	cr_expect_geq(n->r[1].committed, idx);
	cr_expect_geq(n->r[2].committed, idx, "followers learn the commit");
	/* no follower answers: uncommitted data piles up to the bound, then proposals are refused */
	char blob[300];
	memset(blob, 'b', sizeof(blob));
	int ok = 0, busy = 0;
	for (int i = 0; i < 10; i++) {
		int rc = raft_propose(&n->r[1], blob, sizeof(blob), &idx);
		ok += rc == 0;
		busy += rc == CORAL_EBUSY;
	}
	cr_expect_eq(ok, 3, "3 x 300 bytes fit under the 1024-byte bound, a fourth does not");
	cr_expect_eq(busy, 7);
	flush(n, N);
	deliver(n, N, NULL);
	cr_expect_eq(raft_propose(&n->r[1], blob, sizeof(blob), &idx), 0, "accepted again once committed");
	net_free(n, N);
}

Test(raft_core, one_configuration_change_at_a_time_and_ids_never_reused)
{
	struct net *n = net_new(N, 64, NULL, 1);
	elect(n, N, 1);
	flush(n, N);
	deliver(n, N, NULL); /* commit the no-op: changes may start */
	uint64_t idx;
	cr_expect_eq(raft_propose_conf(&n->r[1], RAFT_ENTRY_REMOVE, 3, &idx), 0);
	cr_expect_eq(raft_propose_conf(&n->r[1], RAFT_ENTRY_ADD_LEARNER, 9, &idx), CORAL_EBUSY,
		     "a second change waits for the first");
	flush(n, N);
	deliver(n, N, NULL);
	cr_expect(!raft_conf_is_voter(&n->r[1].conf, 3));
	cr_expect_eq(raft_propose_conf(&n->r[1], RAFT_ENTRY_ADD_LEARNER, 3, &idx), CORAL_EINVAL,
		     "a removed id never comes back");
	cr_expect_eq(raft_propose_conf(&n->r[1], RAFT_ENTRY_PROMOTE, 2, &idx), CORAL_EINVAL,
		     "only learners are promoted");
	cr_expect_eq(raft_propose_conf(&n->r[1], RAFT_ENTRY_ADD_LEARNER, 9, &idx), 0);
	cr_expect(raft_conf_is_learner(&n->r[1].conf, 9));
	net_free(n, N);
}

Test(raft_core, a_lone_voter_commits_on_its_own_sync)
{
	struct net *n = net_new(1, 64, NULL, 1);
	elect(n, 1, 1);
	uint64_t idx;
	cr_assert_eq(raft_propose(&n->r[1], "solo", 4, &idx), 0);
	cr_expect_lt(n->r[1].committed, idx, "not before it is durable");
	flush(n, 1);
	cr_expect_eq(n->r[1].committed, idx);
	cr_expect_eq(n->r[1].applied, idx);
	net_free(n, 1);
}

Test(raft_core, leadership_transfer)
{
	struct net *n = net_new(N, 64, NULL, 1);
	elect(n, N, 1);
	flush(n, N);
	deliver(n, N, NULL);
	cr_assert_eq(raft_transfer_leader(&n->r[1], 3), 0);
	uint64_t idx;
	cr_expect_eq(raft_propose(&n->r[1], "x", 1, &idx), CORAL_EBUSY, "no proposals while handing over");
	flush(n, N);
	deliver(n, N, NULL);
	cr_expect_eq(n->r[3].role, RAFT_LEADER);
	cr_expect_eq(n->r[1].role, RAFT_FOLLOWER);
	cr_expect_eq(n->r[3].last_event, RAFT_EV_ELECTED);
	cr_expect_eq(n->r[1].leader, 3);
	net_free(n, N);
}

Test(raft_core, check_quorum_steps_down_an_isolated_leader)
{
	struct net *n = net_new(N, 64, NULL, 1);
	elect(n, N, 1);
	for (int t = 0; t < 25; t++) {
		raft_tick(&n->r[1]);
		flush(n, N);
		for (size_t i = 0; i < n->nq; i++)
			raft_msg_free(&n->q[i]); /* cut off: nothing arrives */
		n->nq = 0;
	}
	cr_expect_eq(n->r[1].role, RAFT_FOLLOWER);
	cr_expect_eq(n->r[1].last_event, RAFT_EV_STEPDOWN_QUORUM);
	net_free(n, N);
}

static bool not_from_or_to_1(const struct raft_msg *m) { return m->from != 1 && m->to != 1; }

Test(raft_core, leader_lost_hurries_the_election_and_is_ignored_otherwise)
{
	struct net *n = net_new(N, 64, NULL, 1);
	elect(n, N, 1);
	flush(n, N);
	deliver(n, N, NULL);
	cr_assert_eq(n->r[2].leader, 1);
	/* about a node that is not the leader, or on the leader itself: nothing changes */
	int before = n->r[2].randomized_timeout;
	raft_leader_lost(&n->r[2], 3);
	raft_leader_lost(&n->r[1], 2);
	cr_expect_eq(n->r[2].randomized_timeout, before);
	cr_expect_eq(n->r[2].lost_leader, 0);
	/* node 1 dies: both followers hear its link close and one of them wins within an
	 * election timeout (10 ticks), where a full randomized timeout is 10-19 */
	raft_leader_lost(&n->r[2], 1);
	raft_leader_lost(&n->r[3], 1);
	int t = 0;
	for (; t < 10 && n->r[2].role != RAFT_LEADER && n->r[3].role != RAFT_LEADER; t++) {
		raft_tick(&n->r[2]);
		raft_tick(&n->r[3]);
		flush(n, N);
		deliver(n, N, not_from_or_to_1);
	}
	cr_expect(n->r[2].role == RAFT_LEADER || n->r[3].role == RAFT_LEADER,
		  "no new leader %d ticks after the leader's link closed", t);
	int w = n->r[2].role == RAFT_LEADER ? 2 : 3;
	cr_expect_eq(n->r[w].term, 3);
	net_free(n, N);
}

Test(raft_core, leader_lost_by_one_follower_does_not_disrupt_a_live_leader)
{
	struct net *n = net_new(N, 64, NULL, 1);
	elect(n, N, 1);
	flush(n, N);
	deliver(n, N, NULL);
	uint64_t term = n->r[1].term;
	/* only node 3 lost its link to the leader; node 2 still hears it, so node 3's
	 * pre-vote fails and nobody's term moves */
	raft_leader_lost(&n->r[3], 1);
	for (int t = 0; t < 12; t++) {
		raft_tick(&n->r[3]);
		flush(n, N);
		deliver(n, N, NULL);
	}
	cr_expect_eq(n->r[1].role, RAFT_LEADER);
	cr_expect_eq(n->r[1].term, term);
	cr_expect_eq(n->r[2].term, term);
	net_free(n, N);
}

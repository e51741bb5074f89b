/* raftd on real processes: three nodes from etc/coral.conf (ports, names and directories of
 * their own) under coral-node. The cluster forms and elects a leader; kill -9 of the
 * leader's raftd is followed by a new leader committing within 2 s and the killed node
 * rejoining under a new incarnation; a follower stopped with SIGSTOP past the grace period
 * is evicted (epoch up, history says why by phi) and after SIGCONT finds itself fenced and
 * rejoins with a new incarnation. */
#include "raft_harness.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void setup(void)
{
	cl_prepare("rt", NULL);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
}

TestSuite(raftd, .init = setup, .fini = cl_teardown, .timeout = 120);

Test(raftd, cluster_forms_elects_and_replicates)
{
	int leader = wait_leader(10000, 0xe);
	cr_assert_gt(leader, 0, "no leader agreed by all three nodes within 10 s");
	json_t *m = ctl_json(1, "cluster members");
	cr_assert_not_null(m, "%s", res.out);
	cr_expect_geq(jint(m, "epoch"), 3, "three joins, three epochs");
	for (int id = 1; id <= 3; id++) {
		json_t *e = member(m, id);
		cr_assert_not_null(e);
		cr_expect_str_eq(jstr(e, "state"), "active");
		cr_expect_str_eq(json_string_value(json_object_get(e, "raft")), "voter");
	}
	json_decref(m);
	/* a write through a follower is readable, linearizably, on every node */
	int follower = leader == 1 ? 2 : 1;
	cr_assert_eq(run("%s -c %s -n %d kv put conf/x 42", CORALCTL, cl.conf, follower)->code, 0, "%s", res.out);
	for (int n = 1; n <= 3; n++) {
		cr_assert_eq(run("%s -c %s -n %d kv get conf/x", CORALCTL, cl.conf, n)->code, 0, "%s", res.out);
		cr_expect_str_eq(res.out, "42\n");
	}
	cr_expect_eq(run("%s -c %s -n 1 kv get nothing/here", CORALCTL, cl.conf)->code, 1);
	cr_expect(strstr(res.out, "no key") != NULL, "%s", res.out);
}

Test(raftd, leader_kill_9_new_leader_commits_within_2s_and_old_one_rejoins)
{
	int leader = wait_leader(10000, 0xe);
	cr_assert_gt(leader, 0);
	json_t *st = ctl_json(leader, "raft status");
	int64_t inc = jint(st, "incarnation");
	json_decref(st);
	int other = leader == 1 ? 2 : 1;
	pid_t pid = raftd_pid(leader);
	cr_assert_gt(pid, 0);
	uint64_t t0 = coral_now_mono_ns();
	cr_assert_eq(kill(pid, SIGKILL), 0);
	uint64_t took = 0;
	while (coral_now_mono_ns() - t0 < 10000000000ull) {
		if (run("%s -c %s -n %d kv put failover/x 1", CORALCTL, cl.conf, other)->code == 0) {
			took = (coral_now_mono_ns() - t0) / 1000000ull;
			break;
		}
		usleep(20000);
	}
	cr_assert_gt(took, 0, "no write committed within 10 s of the leader's death");
	fprintf(stderr, "failover: first commit %llu ms after kill -9 of the leader\n",
		(unsigned long long)took);
	cr_expect_lt(took, 2000, "new leader committed only after %llu ms", (unsigned long long)took);
	/* the supervisor restarts it; it rejoins under the next incarnation */
	cr_assert_gt(wait_leader(10000, 0xe), 0, "the cluster did not settle with the old leader back");
	st = ctl_json(leader, "raft status");
	cr_assert_not_null(st);
	cr_expect_eq(jint(st, "incarnation"), inc + 1);
	json_decref(st);
	json_t *m = ctl_json(other, "cluster members");
	cr_assert_not_null(m);
	json_t *e = member(m, leader);
	cr_expect_str_eq(jstr(e, "state"), "active");
	cr_expect_eq(jint(e, "incarnation"), inc + 1);
	json_decref(m);
}

Test(raftd, stopped_follower_is_evicted_then_rejoins_with_a_new_incarnation)
{
	int leader = wait_leader(10000, 0xe);
	cr_assert_gt(leader, 0);
	int victim = leader == 3 ? 2 : 3;
	json_t *m = ctl_json(leader, "cluster members");
	int64_t epoch0 = jint(m, "epoch");
	int64_t inc = jint(member(m, victim), "incarnation");
	json_decref(m);
	pid_t pid = raftd_pid(victim);
	cr_assert_eq(kill(pid, SIGSTOP), 0);
	/* grace 2 s after phi crosses 8, and the victim's lease (2 s + 0.2 s drift) */
	bool evicted = false;
	uint64_t t0 = coral_now_mono_ns();
	while (!evicted && coral_now_mono_ns() - t0 < 15000000000ull) {
		usleep(200000);
		m = ctl_json(leader, "cluster members");
		if (m) {
			evicted = strcmp(json_string_value(json_object_get(member(m, victim), "state")), "evicted") == 0;
			if (evicted)
				cr_expect_gt(jint(m, "epoch"), epoch0, "eviction bumps the epoch");
			json_decref(m);
		}
	}
	uint64_t took = (coral_now_mono_ns() - t0) / 1000000ull;
	if (!evicted)
		run("%s -c %s -n %d raft status; %s -c %s -n %d raft history", CORALCTL, cl.conf, leader,
		    CORALCTL, cl.conf, leader);
	kill(pid, SIGCONT);
	cr_assert(evicted, "node %d was not evicted within 15 s (leader %d):\n%s", victim, leader, res.out);
	cr_expect_geq(took, 2000, "evicted after %llu ms: before its lease could have run out",
		      (unsigned long long)took);
	cr_assert_eq(run("%s -c %s -n %d raft history", CORALCTL, cl.conf, leader)->code, 0);
	cr_expect(strstr(res.out, "eviction") && strstr(res.out, "phi"), "history does not say why:\n%s", res.out);
	/* back from SIGCONT: fenced, then a member again under the next incarnation */
	bool back = false;
	t0 = coral_now_mono_ns();
	while (!back && coral_now_mono_ns() - t0 < 15000000000ull) {
		usleep(200000);
		m = ctl_json(leader, "cluster members");
		if (m) {
			json_t *e = member(m, victim);
			back = strcmp(jstr(e, "state"), "active") == 0 &&
			       jint(e, "incarnation") > inc;
			json_decref(m);
		}
	}
	cr_assert(back, "node %d did not rejoin with a new incarnation", victim);
	cr_assert_eq(run("%s -c %s -n %d raft history", CORALCTL, cl.conf, victim)->code, 0);
	cr_expect(strstr(res.out, "fenced") != NULL, "the stopped node's history has no fencing:\n%s", res.out);
	cr_expect_gt(wait_leader(10000, 0xe), 0);
}

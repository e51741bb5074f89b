/* Membership changes and the config store on real processes. The test's configuration
 * has a fourth node that is not a founder (founders = 1,2,3) and compacts the log every
 * 50 entries, so a node added after a few hundred writes must catch up from a snapshot
 * (InstallSnapshot) before it becomes a voter. Then it is removed, and its id cannot be
 * added again. Watches over raftd's Unix socket (coralctl kv watch) see kv changes under
 * their prefix, in commit order, and membership changes. */
#include "raft_harness.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *edit_four_nodes(char *text)
{
	text = replace_all(text, "founders =\n", "founders = 1,2,3\n");
	text = replace_all(text, "snapshot_entries = 10000", "snapshot_entries = 50");
	char node4[512];
	snprintf(node4, sizeof(node4),
		 "[node.4]\nid = 4\nhost = 127.0.0.1\nbase_port = %d\nrun_dir = %s/node4\n"
		 "sga_size = 64M\nsga_name =\ndata_dir =\n\n[storage]",
		 cl.base_port + 48, cl.dir);
	return replace_all(text, "[storage]", node4);
}

static void setup(void)
{
	cl_prepare("mb", edit_four_nodes);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
}

TestSuite(membership, .init = setup, .fini = cl_teardown, .timeout = 120);

static const char *state_of(int on, int id, int64_t *inc)
{
	static char state[32];
	json_t *m = ctl_json(on, "cluster members");
	json_t *e = m ? member(m, id) : NULL;
	snprintf(state, sizeof(state), "%s/%s", e ? jstr(e, "state") : "none", e ? jstr(e, "raft") : "");
	if (inc)
		*inc = e ? jint(e, "incarnation") : 0;
	json_decref(m);
	return state;
}

Test(membership, added_node_catches_up_from_a_snapshot_votes_and_is_removed_for_good)
{
	int leader = wait_leader(15000, 0xe);
	cr_assert_gt(leader, 0);
	cr_expect_str_eq(state_of(1, 4, NULL), "none/", "node 4 is not a founder");
	/* enough writes for a few compactions */
	cr_assert_eq(run("for i in $(seq 1 160); do %s -c %s -n 1 kv put app/k$i v$i >/dev/null || exit 1; done",
			 CORALCTL, cl.conf)->code,
		     0, "%s", res.out);
	json_t *st = ctl_json(leader, "raft status");
	cr_assert_not_null(st);
	int64_t snap = jint(st, "snapshot_index");
	json_decref(st);
	cr_assert_gt(snap, 100, "the leader did not compact its log (snapshot at %lld)", (long long)snap);
	/* a watch on membership, from now on, in the background */
	char watch_out[128];
	snprintf(watch_out, sizeof(watch_out), "%s/members.watch", cl.dir);
	run("(%s -c %s -n 1 kv watch --members --count 1 --for 20000 > %s 2>&1 &)", CORALCTL, cl.conf,
	    watch_out);
	usleep(300000);
	/* added through a follower: forwarded to the leader */
	int via = leader == 2 ? 3 : 2;
	cr_assert_eq(run("%s -c %s -n %d cluster add-node 4 127.0.0.1:%d", CORALCTL, cl.conf, via,
			 cl.base_port + 48)->code,
		     0, "%s", res.out);
	bool voter = false;
	uint64_t t0 = coral_now_mono_ns();
	while (!voter && coral_now_mono_ns() - t0 < 20000000000ull) {
		usleep(50000);
		voter = strcmp(state_of(leader, 4, NULL), "active/voter") == 0;
	}
	cr_assert(voter, "node 4 is %s 20 s after add-node", state_of(leader, 4, NULL));
	fprintf(stderr, "membership: node 4 active and voting %llu ms after add-node\n",
		(unsigned long long)((coral_now_mono_ns() - t0) / 1000000ull));
	/* it holds what was written before it came, and it got that from a snapshot */
	for (int i = 1; i <= 160; i += 159) {
		cr_assert_eq(run("%s -c %s -n 4 kv get app/k%d", CORALCTL, cl.conf, i)->code, 0, "%s", res.out);
		char want[16];
		snprintf(want, sizeof(want), "v%d\n", i);
		cr_expect_str_eq(res.out, want);
	}
	st = ctl_json(4, "raft status");
	cr_assert_not_null(st);
	cr_expect_geq(jint(st, "snapshot_index"), snap, "node 4 did not install the leader's snapshot");
	json_decref(st);
	cr_assert_eq(run("%s -c %s -n 4 raft history", CORALCTL, cl.conf)->code, 0);
	run("cat %s", watch_out);
	cr_expect(strstr(res.out, "membership changed") != NULL, "the members watch saw nothing: %s", res.out);

	/* removed for good: gone from the voters, and the id is not taken twice */
	cr_assert_eq(run("%s -c %s -n 1 cluster remove-node 4", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	bool removed = false;
	t0 = coral_now_mono_ns();
	while (!removed && coral_now_mono_ns() - t0 < 10000000000ull) {
		usleep(200000);
		removed = strncmp(state_of(leader, 4, NULL), "removed", 7) == 0;
	}
	cr_assert(removed, "node 4 is %s after remove-node", state_of(leader, 4, NULL));
	cr_expect_neq(run("%s -c %s -n 1 cluster add-node 4 127.0.0.1:%d", CORALCTL, cl.conf,
			  cl.base_port + 48)->code,
		      0);
	cr_expect(strstr(res.out, "never reused") != NULL, "%s", res.out);
	cr_expect_gt(wait_leader(10000, 0xe), 0, "the three founders lost their leader");
	cr_expect_eq(run("%s -c %s -n 1 kv put app/after 1", CORALCTL, cl.conf)->code, 0, "%s", res.out);
}

Test(membership, watch_sees_changes_under_its_prefix_in_commit_order)
{
	cr_assert_gt(wait_leader(15000, 0xe), 0);
	cr_assert_eq(run("%s -c %s -n 1 kv put app/start 0", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	unsigned long long from = 0;
	cr_assert_eq(sscanf(res.out, "ok (index %llu)", &from), 1, "%s", res.out);
	char out[128];
	snprintf(out, sizeof(out), "%s/kv.watch", cl.dir);
	/* on another node than the writes, from the index of the first write */
	/* the subshell's own output goes elsewhere too, or run() would wait for it to end */
	run("(%s -c %s -n 3 kv watch app/ --from %llu --count 3 --for 20000 > %s 2>&1; echo \"exit $?\" >> %s) "
	    "</dev/null >/dev/null 2>&1 &",
	    CORALCTL, cl.conf, from, out, out);
	/* the indexes come from each write's answer: other daemons (grdd's map) write too */
	unsigned long long ia = 0, idel = 0, ib = 0;
	cr_assert_eq(run("%s -c %s -n 2 kv put app/a 1", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_assert_eq(sscanf(res.out, "ok (index %llu)", &ia), 1, "%s", res.out);
	cr_assert_eq(run("%s -c %s -n 2 kv put other/x 1", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_assert_eq(run("%s -c %s -n 1 kv del app/a", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_assert_eq(sscanf(res.out, "ok (index %llu)", &idel), 1, "%s", res.out);
	cr_assert_eq(run("%s -c %s -n 2 kv put app/b 2", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_assert_eq(sscanf(res.out, "ok (index %llu)", &ib), 1, "%s", res.out);
	bool done = false;
	uint64_t t0 = coral_now_mono_ns();
	while (!done && coral_now_mono_ns() - t0 < 20000000000ull) {
		usleep(100000);
		run("cat %s", out);
		done = strstr(res.out, "exit ") != NULL;
	}
	cr_assert(done, "the watch did not end: %s", res.out);
	/* the first event shows 1 if it was answered before the delete applied, else says so */
	char want[256], want2[256];
	snprintf(want, sizeof(want), "%llu app/a = 1\n%llu app/a deleted\n%llu app/b = 2\nexit 0\n",
		 ia, idel, ib);
	snprintf(want2, sizeof(want2),
		 "%llu app/a written, deleted since\n%llu app/a deleted\n%llu app/b = 2\nexit 0\n",
		 ia, idel, ib);
	cr_expect(strcmp(res.out, want) == 0 || strcmp(res.out, want2) == 0,
		  "the watch printed:\n%s\nexpected:\n%s", res.out, want);
}

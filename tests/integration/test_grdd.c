/* grdd on three real nodes: the map is agreed, requests from every node go to one master per
 * map version while resources and buckets are remastered under them, a held resource keeps its
 * holders when it moves, and after node 3 is killed and evicted its buckets are rebuilt from
 * what the survivors hold while a resource nobody reports is refused until recovery. */
#include "harness.h"
#include "raft_harness.h"

#include <criterion/criterion.h>
#include <signal.h>

TestSuite(grdd, .init = NULL, .fini = cl_teardown, .timeout = 180);

static int master_of(int on, const char *id)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "grd resource %s", id);
	json_t *r = ctl_json(on, cmd);
	int m = r ? (int)jint(r, "master") : -1;
	json_decref(r);
	return m;
}

/* The first BL:9:k (k from *k) mastered by node want. */
static void find_mastered_by(int want, int *k, char *out, size_t n)
{
	for (; *k < 500; (*k)++) {
		snprintf(out, n, "BL:9:%d", *k);
		if (master_of(1, out) == want) {
			(*k)++;
			return;
		}
	}
	cr_assert_fail("no resource mastered by node %d", want);
}

Test(grdd, remaster_under_load_then_rebuild_after_eviction)
{
	cl_prepare("grd", NULL);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	int64_t want = wait_full_map(3);
	cr_assert_gt(want, 0, "the map of three nodes did not reach every node");

	int k = 0;
	char held3[32], moved3[32];
	find_mastered_by(3, &k, held3, sizeof(held3));
	find_mastered_by(3, &k, moved3, sizeof(moved3));
	cr_assert_eq(run("%s -c %s -n 2 grd lock %s X && %s -c %s -n 2 grd lock %s X", CORALCTL, cl.conf, held3,
			 CORALCTL, cl.conf, moved3)->code, 0, "%s", res.out);
	/* X held by node 2: node 1 is refused with the holder named */
	cr_assert_neq(run("%s -c %s -n 1 grd lock %s S", CORALCTL, cl.conf, held3)->code, 0);
	cr_assert(strstr(res.out, "held by node 2 in X") != NULL, "%s", res.out);

	/* load from every node while resources and buckets move under it */
	cr_assert_eq(run("for n in 1 2 3; do (for i in $(seq 1 15); do for r in BL:7:1 BL:7:2 TX:7:3 BL:7:4; do "
			 "m=S; case $r in TX*) m=PR;; esac; "
			 "o=$(%s -c %s -n $n --json grd lock $r $m 2>/dev/null) && echo \"$r $(echo $o | tr -d ' \\n')\"; "
			 "%s -c %s -n $n grd unlock $r >/dev/null 2>&1; done; done > %s/load$n.txt; touch %s/load$n.done) </dev/null >/dev/null 2>&1 & done",
			 CORALCTL, cl.conf, CORALCTL, cl.conf, cl.dir, cl.dir)->code, 0);
	cr_assert_eq(run("%s -c %s -n 3 --json grd remaster %s 1 --dry-run", CORALCTL, cl.conf, moved3)->code, 0, "%s", res.out);
	json_t *dry = json_loads(res.out, 0, NULL);
	cr_assert_eq(jint(dry, "resources"), 1);
	cr_assert_eq(jint(dry, "entries"), 1, "%s", res.out);
	json_decref(dry);
	cr_assert_eq(run("%s -c %s -n 2 --json grd remaster %s 1", CORALCTL, cl.conf, moved3)->code, 0, "%s", res.out);
	for (int r = 1; r <= 4; r++) {
		char id[32];
		snprintf(id, sizeof(id), r == 3 ? "TX:7:%d" : "BL:7:%d", r);
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "grd resource %s", id);
		json_t *res_ = ctl_json(1, cmd);
		int b = (int)jint(res_, "bucket"), m = (int)jint(res_, "master");
		json_decref(res_);
		cr_assert_eq(run("%s -c %s -n 1 grd remaster %d %d", CORALCTL, cl.conf, b, m % 3 + 1)->code, 0, "%s", res.out);
		cr_assert_eq(run("%s -c %s -n 3 grd remaster %s %d", CORALCTL, cl.conf, id, (m + 1) % 3 + 1)->code, 0, "%s",
			     res.out);
	}
	cr_assert_eq(run("for i in $(seq 1 600); do [ -e %s/load1.done ] && [ -e %s/load2.done ] && [ -e %s/load3.done ] && exit 0; "
			 "sleep 0.2; done; exit 1", cl.dir, cl.dir, cl.dir)->code, 0, "the load loops did not finish");
	/* one master per resource per map version, over every grant seen */
	cr_assert_eq(run("cat %s/load1.txt %s/load2.txt %s/load3.txt | "
			 "sed -n 's/^\\([^ ]*\\) .*\"master\":\\([0-9]*\\).*\"map_version\":\\([0-9]*\\).*/\\1 \\3 \\2/p' | "
			 "sort -u > %s/grants.txt; wc -l < %s/grants.txt; "
			 "cut -d' ' -f1,2 %s/grants.txt | uniq -d | head -3", cl.dir, cl.dir, cl.dir, cl.dir, cl.dir, cl.dir)->code, 0);
	int lines = atoi(res.out);
	char *dup = strchr(res.out, '\n');
	cr_assert_gt(lines, 4, "too few grants recorded: %s", res.out);
	cr_assert(dup && dup[1] == '\0', "two masters for one resource at one version: %s", dup);
	cr_assert_gt(map_version(1), 5);
	/* the moved resource kept its holder */
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "grd resource %s", moved3);
	json_t *mr = ctl_json(1, cmd);
	cr_assert_eq(jint(mr, "master"), 1);
	json_t *holders = json_object_get(json_object_get(mr, "entry"), "holders");
	cr_assert_eq(json_array_size(holders), 1, "%s", res.out);
	cr_assert_eq(jint(json_array_get(holders, 0), "node"), 2);
	cr_assert_str_eq(jstr(json_array_get(holders, 0), "mode"), "X");
	json_decref(mr);

	/* node 3 dies: its buckets are rebuilt from what nodes 1 and 2 report */
	int64_t before = map_version(1);
	cr_assert_eq(run("kill -9 $(cat %s/node3/coral-node.pid) $(cat %s/node3/*.pid | sort -u) 2>/dev/null; true",
			 cl.dir, cl.dir)->code, 0);
	int64_t after = before;
	for (int i = 0; i < 150 && after == before; i++) {
		usleep(100000);
		after = map_version(1);
	}
	cr_assert_gt(after, before, "no new map version after node 3 died");
	json_t *h = ctl_json(1, "grd history");
	bool leave = false;
	for (size_t i = 0; i < json_array_size(h); i++)
		leave |= strcmp(jstr(json_array_get(h, i), "cause"), "leave") == 0;
	cr_assert(leave, "no map version for node 3's loss: %s", res.out);
	json_decref(h);
	int m = 0;
	for (int i = 0; i < 50 && (m = master_of(1, held3)) == 3; i++)
		usleep(100000);
	cr_assert(m == 1 || m == 2, "master of %s is %d", held3, m);
	snprintf(cmd, sizeof(cmd), "grd resource %s", held3);
	json_t *hr = NULL;
	for (int i = 0; i < 50; i++) {
		json_decref(hr);
		hr = ctl_json(m, cmd);
		if (hr && strcmp(jstr(hr, "state"), "active") == 0)
			break;
		usleep(100000);
	}
	cr_assert_str_eq(jstr(hr, "state"), "active", "%s", res.out);
	holders = json_object_get(json_object_get(hr, "entry"), "holders");
	cr_assert_eq(json_array_size(holders), 1, "rebuilt without node 2's hold: %s", res.out);
	cr_assert_eq(jint(json_array_get(holders, 0), "node"), 2);
	json_decref(hr);
	cr_assert_neq(run("%s -c %s -n 1 grd lock %s X", CORALCTL, cl.conf, held3)->code, 0);
	cr_assert(strstr(res.out, "held by node 2") != NULL, "%s", res.out);
	/* the survivors' smond recover node 3 with no operator step: its buckets' resources that
	 * nobody held are granted again, and the last resort has nothing left to do */
	int lost_buckets = -1;
	for (int i = 0; i < 100 && lost_buckets != 0; i++) {
		json_t *st = ctl_json(1, "grd status");
		lost_buckets = st ? (int)jint(st, "lost_buckets") : -1;
		json_decref(st);
		if (lost_buckets != 0)
			usleep(100000);
	}
	cr_assert_eq(lost_buckets, 0, "node 3's buckets still await recovery: %s", res.out);
	cr_assert_eq(run("%s -c %s -n 2 grd lock BL:8:1 S", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_assert_neq(run("%s -c %s -n 2 grd recovered 3", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_assert(strstr(res.out, "not listed as lost") != NULL, "%s", res.out);
	run("%s -c %s stop 3", CORAL_NODE, cl.conf);
}

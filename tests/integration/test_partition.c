/* A node cut off from the others fences itself before the majority evicts it.
 *
 * Node 3 runs in a network namespace of its own, joined to this one by a veth pair:
 * nodes 1 and 2 listen on the host end, node 3 on the namespace end (addresses from
 * 198.18.0.0/15, the range set aside for such tests, so no real network is shadowed).
 * Setting the namespace end down cuts node 3 off in both directions with packets dropped,
 * not refused, as a pulled cable would. The test then compares, by the wall clock every
 * process here shares, when node 3's history says it fenced itself and when the
 * majority's leader applied its eviction; after the link comes back node 3 finds itself
 * evicted and rejoins under a new incarnation. While fenced, node 3 gives its sessions no
 * block (not even one it holds in X), takes no change, makes no commit, and writes no block
 * back to the shared data file. Needs root (ip netns). */
#include "coral_harness.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct {
	char ns[32], host_if[16], ns_if[16];
	char host_ip[20], ns_ip[20];
	bool made;
} px;

static int64_t now_real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Replaces the first occurrence of from after anchor. */
static char *replace_after(char *text, const char *anchor, const char *from, const char *to)
{
	char *a = strstr(text, anchor);
	cr_assert_not_null(a, "no %s in the configuration", anchor);
	char *p = strstr(a, from);
	cr_assert_not_null(p, "no %s after %s", from, anchor);
	size_t fl = strlen(from), tl = strlen(to), n = strlen(text);
	char *out = malloc(n - fl + tl + 1);
	cr_assert_not_null(out);
	size_t head = (size_t)(p - text);
	memcpy(out, text, head);
	memcpy(out + head, to, tl);
	memcpy(out + head + tl, p + fl, n - head - fl + 1);
	free(text);
	return out;
}

static char *edit_hosts(char *text)
{
	char h[40], n[40];
	snprintf(h, sizeof(h), "host = %s", px.host_ip);
	snprintf(n, sizeof(n), "host = %s", px.ns_ip);
	text = replace_after(text, "[node.1]", "host = 127.0.0.1", h);
	text = replace_after(text, "[node.2]", "host = 127.0.0.1", h);
	/* sessions fail at once on a fence instead of waiting for its end: the test is the refusal */
	text = replace_all(text, "restart_wait_ms = 15000", "restart_wait_ms = 0");
	return replace_after(text, "[node.3]", "host = 127.0.0.1", n);
}

static void setup(void)
{
	int pid = (int)getpid();
	unsigned block = (unsigned)pid % 32768u * 4u; /* a /30 of 198.18.0.0/15 */
	snprintf(px.ns, sizeof(px.ns), "coral-part-%d", pid);
	snprintf(px.host_if, sizeof(px.host_if), "crp%dh", pid % 10000000);
	snprintf(px.ns_if, sizeof(px.ns_if), "crp%dn", pid % 10000000);
	snprintf(px.host_ip, sizeof(px.host_ip), "198.%u.%u.%u", 18 + (block >> 16),
		 (block >> 8) & 255, (block & 255) + 1);
	snprintf(px.ns_ip, sizeof(px.ns_ip), "198.%u.%u.%u", 18 + (block >> 16), (block >> 8) & 255,
		 (block & 255) + 2);
	cr_assert_eq(run("ip netns add %s", px.ns)->code, 0, "ip netns (needs root): %s", res.out);
	px.made = true;
	cr_assert_eq(run("ip link add %s type veth peer name %s && ip link set %s netns %s && "
			 "ip addr add %s/30 dev %s && ip link set %s up && "
			 "ip netns exec %s ip addr add %s/30 dev %s && "
			 "ip netns exec %s ip link set %s up && ip netns exec %s ip link set lo up",
			 px.host_if, px.ns_if, px.ns_if, px.ns, px.host_ip, px.host_if, px.host_if,
			 px.ns, px.ns_ip, px.ns_if, px.ns, px.ns_if, px.ns)
			 ->code,
		     0, "veth: %s", res.out);
	cl_prepare("pt", edit_hosts);
	cr_assert_eq(run("%s -c %s start 1 && %s -c %s start 2 && ip netns exec %s %s -c %s start 3",
			 CORAL_NODE, cl.conf, CORAL_NODE, cl.conf, px.ns, CORAL_NODE, cl.conf)
			 ->code,
		     0, "%s", res.out);
}

static void teardown(void)
{
	/* "stop all" only stops the nodes whose address is on this machine, and node 3's
	 * is in the namespace: stop it from there */
	if (run("ip netns exec %s %s -c %s stop 3", px.ns, CORAL_NODE, cl.conf)->code != 0)
		fprintf(stderr, "teardown: node 3: %s\n", res.out);
	cl_teardown();
	if (px.made) {
		run("ip link del %s", px.host_if);
		run("ip netns del %s", px.ns);
	}
}

static int64_t cache_counter(int node, const char *key)
{
	json_t *c = ctl_json(node, "cache");
	int64_t v = c ? jint(c, key) : -1;
	json_decref(c);
	return v;
}

static bool fenced(int node)
{
	json_t *st = ctl_json(node, "raft status");
	bool f = st && json_is_true(json_object_get(st, "fenced"));
	json_decref(st);
	return f;
}

TestSuite(partition, .init = setup, .fini = teardown, .timeout = 120);

/* The block's first 8 payload bytes as a session on `node` reads them (S). */
static uint64_t block_value(int node, uint32_t fid, uint64_t block)
{
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, node, "test", "test_partition", &s), 0, "%s", coral_session_error(s));
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, block, CORAL_MODE_S, &b), 0, "node %d: %s", node, coral_session_error(s));
	uint64_t v;
	memcpy(&v, coral_block_data(b), sizeof(v));
	coral_block_release(s, b);
	coral_session_close(s);
	return v;
}

Test(partition, cut_off_node_fences_itself_before_the_majority_evicts_it)
{
	int leader = wait_leader(15000, 0xe);
	cr_assert_gt(leader, 0, "no leader agreed by all three nodes within 15 s");
	/* node 3 on the ring: the loss of a node that never came on it is not recorded (smond(8)) */
	cr_assert_gt(wait_full_map(3), 0, "the map of three nodes did not reach every node");
	json_t *m = ctl_json(1, "cluster members");
	cr_assert_not_null(m);
	int64_t inc = jint(member(m, 3), "incarnation"), epoch0 = jint(m, "epoch");
	json_decref(m);

	/* node 3 takes block 0 in X, changes and commits it, and keeps it pinned: a pinned
	 * buffer is not written back, so it is still dirty when the node is fenced */
	json_t *df = ctl_json(1, "datafile create pt 4");
	cr_assert_not_null(df, "%s", res.out);
	uint32_t fid = (uint32_t)jint(df, "id");
	json_decref(df);
	struct coral_session *s3;
	cr_assert_eq(coral_session_open(cl.conf, 3, "test", "test_partition", &s3), 0, "%s", coral_session_error(s3));
	struct coral_block *b = x_change_commit(s3, fid, 0, 42);

	int64_t cut = now_real_ms();
	cr_assert_eq(run("ip netns exec %s ip link set %s down", px.ns, px.ns_if)->code, 0, "%s", res.out);
	/* wait for the majority's leader (1 or 2) to apply the eviction */
	int64_t evicted_at = 0, fenced_at = 0;
	int new_leader = -1;
	while (evicted_at == 0 && now_real_ms() - cut < 20000) {
		usleep(100000);
		new_leader = wait_leader(200, 0x6);
		if (new_leader > 0)
			evicted_at = history_at(new_leader, "eviction", 3, cut);
	}
	/* Asked after the eviction was seen, so after it was applied: node 3, still cut off,
	 * must say it is fenced. (A sample taken before looking at the history proves
	 * nothing: on a slow run the eviction can land between the sample and the look.) */
	bool fenced_after_eviction = evicted_at != 0 && fenced(3);

	/* node 3's data path while fenced: the pin goes, and the dirty block stays unwritten
	 * through two checkpoint intervals (1 s each) */
	coral_block_release(s3, b);
	int64_t writes0 = cache_counter(3, "writes");
	static const struct { uint64_t block; int mode; } asks[] = {
		{0, CORAL_MODE_X}, {1, CORAL_MODE_S}, {1, CORAL_MODE_CR}};
	for (size_t k = 0; k < sizeof(asks) / sizeof(asks[0]); k++) {
		struct coral_block *b2 = NULL;
		int rc = coral_block_get(s3, fid, asks[k].block, asks[k].mode, &b2);
		cr_expect_eq(rc, CORAL_ERR_FENCED, "block %llu in mode %d while fenced: %d %s",
			     (unsigned long long)asks[k].block, asks[k].mode, rc, coral_session_error(s3));
		cr_expect(rc != CORAL_ERR_FENCED || strstr(coral_session_error(s3), "fenced"), "%s",
			  coral_session_error(s3));
		if (rc == 0)
			coral_block_release(s3, b2);
	}
	cr_expect_eq(coral_commit(s3, NULL), CORAL_ERR_FENCED, "%s", coral_session_error(s3));
	usleep(2500000);
	cr_expect_eq(cache_counter(3, "writes"), writes0, "node 3 wrote blocks back while fenced");
	cr_expect_geq(cache_counter(3, "dirty"), 1, "node 3's changed block is no longer dirty");
	coral_session_close(s3);
	fenced_at = history_at(3, "fenced", 3, cut);
	run("%s -c %s -n 3 raft status", CORALCTL, cl.conf);
	fprintf(stderr, "partition: node 3 fenced itself %lld ms after the cut, evicted by node %d "
			"%lld ms after the cut\n",
		(long long)(fenced_at ? fenced_at - cut : -1), new_leader,
		(long long)(evicted_at ? evicted_at - cut : -1));
	cr_assert_neq(evicted_at, 0, "the majority did not evict node 3 within 20 s");
	cr_assert_neq(fenced_at, 0, "node 3 never fenced itself; its status:\n%s", res.out);
	cr_expect_lt(fenced_at, evicted_at, "node 3 fenced at +%lld ms, after its eviction at +%lld ms",
		     (long long)(fenced_at - cut), (long long)(evicted_at - cut));
	cr_expect(fenced_after_eviction, "node 3 did not say it was fenced after its eviction");
	m = ctl_json(new_leader, "cluster members");
	cr_assert_not_null(m);
	cr_expect_str_eq(jstr(member(m, 3), "state"), "evicted");
	cr_expect_gt(jint(m, "epoch"), epoch0, "eviction bumps the epoch");
	json_decref(m);
	/* the majority keeps committing without node 3 */
	cr_expect_eq(run("%s -c %s -n %d kv put partition/x 1", CORALCTL, cl.conf, new_leader)->code, 0,
		     "%s", res.out);

	/* healed: node 3 learns it was evicted and comes back as a new incarnation */
	cr_assert_eq(run("ip netns exec %s ip link set %s up", px.ns, px.ns_if)->code, 0, "%s", res.out);
	bool back = false;
	uint64_t t0 = coral_now_mono_ns();
	while (!back && coral_now_mono_ns() - t0 < 20000000000ull) {
		usleep(200000);
		m = ctl_json(new_leader, "cluster members");
		if (m) {
			json_t *e = member(m, 3);
			back = strcmp(jstr(e, "state"), "active") == 0 && jint(e, "incarnation") > inc;
			json_decref(m);
		}
	}
	cr_assert(back, "node 3 did not rejoin with a new incarnation after the link came back");
	cr_expect_gt(wait_leader(10000, 0xe), 0);
	cr_assert_eq(run("%s -c %s -n 3 kv get partition/x", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect_str_eq(res.out, "1\n");

	/* nodes 1 and 2 recovered node 3 while it was cut off (its committed 42 from its redo);
	 * node 3, back, drops the cache of its evicted incarnation unwritten and reads and
	 * changes the block through the others again */
	cr_expect_eq(block_value(1, fid, 0), 42, "node 3's committed change was not recovered");
	for (int i = 0; i < 50 && run("grep -q 'cache dropped after this node' %s/node3/node.log", cl.dir)->code != 0; i++)
		usleep(100000);
	cr_expect_eq(res.code, 0, "node 3 did not drop the cache of its evicted incarnation");
	cr_expect_eq(block_value(3, fid, 0), 42);
	struct coral_session *s3b;
	cr_assert_eq(coral_session_open(cl.conf, 3, "test", "test_partition", &s3b), 0, "%s", coral_session_error(s3b));
	coral_block_release(s3b, x_change_commit(s3b, fid, 0, 43));
	coral_session_close(s3b);
	cr_expect_eq(block_value(1, fid, 0), 43);
}

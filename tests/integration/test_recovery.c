/* Instance recovery on real processes: every node of a three-node cluster killed with
 * SIGKILL (supervisors and daemons) while their caches hold committed changes the data files
 * do not have, and one transaction is open; `coral-node start all` recovers every redo thread
 * (smond, before lmsd serves) and the sessions read exactly what was committed. */
#include "harness.h"
#include "coral_harness.h"
#include "raft_harness.h"

#include "conf.h"
#include "coral.h"
#include "storage.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

TestSuite(recovery, .init = NULL, .fini = cl_teardown, .timeout = 240);

/* Checkpoints far apart: committed changes stay in the caches only. */
static char *rare_checkpoints(char *text) { return replace_all(text, "checkpoint_ms = 1000", "checkpoint_ms = 600000"); }

/* Every node of the configuration (nodes 1..n) started, one leader, the map everywhere. */
static void start_nodes(int n)
{
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000 + (n - 3) * 2500, ((1u << (n + 1)) - 1) & ~1u), 1);
	cr_assert_gt(wait_full_map(n), 0, "the map of %d nodes did not reach every node", n);
}

static void start_all(void) { start_nodes(3); }

static void commit_on(int node, uint32_t fid, uint64_t block, uint64_t v)
{
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, node, "test", "test_recovery", &s), 0, "%s", coral_session_error(s));
	coral_block_release(s, x_change_commit(s, fid, block, v));
	coral_session_close(s);
}

static uint64_t read_on(int node, uint32_t fid, uint64_t block)
{
	return read_u64(cl.conf, node, fid, block, CORAL_MODE_S);
}

/* The first 8 payload bytes of a block as the data file has them. */
static uint64_t on_disk(uint32_t fid, uint64_t block)
{
	static struct coral_conf conf;
	static struct coral_ctlfile cf;
	char err[512];
	cr_assert_eq(coral_conf_load(&conf, cl.conf), 0, "%s", conf.errmsg);
	cr_assert_eq(coral_ctlfile_load(&conf, &cf, err, sizeof(err)), 0, "%s", err);
	char path[CORAL_STR_MAX + 64] = "";
	for (uint32_t k = 0; k < cf.nfiles; k++)
		if (cf.files[k].id == fid)
			coral_datafile_path(&conf, cf.files[k].name, path, sizeof(path));
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "%s", path);
	uint8_t buf[65536];
	cr_assert_eq(coral_block_read(fd, cf.block_size, fid, block, buf, err, sizeof(err)), 0, "%s", err);
	close(fd);
	uint64_t v;
	memcpy(&v, buf + CORAL_BLOCK_HDR, sizeof(v));
	return v;
}

/* A power loss: every process of the three nodes in one kill, then the test's child (killed
 * first, its node's smond could take its open transaction back before the node died: a rollback
 * recovery then saw committed, in one run under ASan) */
static void kill_all(pid_t child)
{
	run("kill -9 $(cat %s/node*/coral-node.pid) $(cat %s/node*/*.pid | sort -u) 2>/dev/null; true", cl.dir, cl.dir);
	kill_nodes(child, 1, 3);
}

#define BANK_ARGS "--accounts 200 --per-block 8 --sessions 2 --readers 0"

/* coral-bank for 60 s in a child process (killed with the cluster). */
static pid_t bank_in_background(void)
{
	pid_t bank = fork();
	cr_assert_geq(bank, 0);
	if (bank == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		dup2(fd, 2);
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "exec %s/tools/coral-bank -c %s " BANK_ARGS " --seconds 60", CORAL_BUILDDIR,
			 cl.conf);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return bank;
}

/* After the restart: smond said it recovered, and a short bank run finds every account's
 * money (200 accounts of 1000) and passes its check. */
static void recovered_and_the_bank_adds_up(void)
{
	cr_assert_eq(run("grep -h 'cold start: 3 threads recovered' %s/node*/node.log", cl.dir)->code, 0,
		     "no smond says it recovered the threads");
	fprintf(stderr, "%s", res.out);
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --json --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0,
		     "%s", res.out);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_expect_eq(jint(b, "total_before"), 200 * 1000, "money was made or lost in the crash: %s", res.out);
	cr_expect(json_is_true(json_object_get(b, "ok")), "%s", res.out);
	json_decref(b);
}

/* A data file of `blocks` blocks, made through node 1. */
static uint32_t new_file(const char *name, int blocks)
{
	char cmd[96];
	snprintf(cmd, sizeof(cmd), "datafile create %s %d", name, blocks);
	json_t *df = ctl_json(1, cmd);
	cr_assert_not_null(df, "%s", res.out);
	uint32_t fid = (uint32_t)jint(df, "id");
	json_decref(df);
	return fid;
}

/* A child process whose session on node `node` changes, in order, the first 8 bytes of each
 * block of ch[i][0] to ch[i][1] in one transaction, releases the blocks and waits, the
 * transaction open, to be killed. Returns once the changes are made. */
struct txn_args {
	int node;
	uint32_t fid;
	const uint64_t (*ch)[2];
	int n;
};

static int open_txn_main(void *arg, int ready)
{
	const struct txn_args *t = arg;
	struct coral_session *s;
	if (coral_session_open(cl.conf, t->node, "test", "open-txn", &s) != 0)
		return 1;
	for (int i = 0; i < t->n; i++) {
		struct coral_block *b = NULL;
		if (coral_block_get(s, t->fid, t->ch[i][0], CORAL_MODE_X, &b) != 0 ||
		    coral_block_modify(s, b, 0, &t->ch[i][1], sizeof(t->ch[i][1])) != 0)
			return 2;
		coral_block_release(s, b);
	}
	if (write(ready, "k", 1) != 1)
		return 3;
	pause();
	return 0;
}

static pid_t open_txn_child(int node, uint32_t fid, const uint64_t (*ch)[2], int n)
{
	struct txn_args t = {node, fid, ch, n};
	return fork_ready(open_txn_main, &t, "the child's transaction did not start");
}

Test(recovery, every_node_killed_then_started_recovers_every_thread)
{
	cl_prepare("rcv", rare_checkpoints);
	start_all();
	uint32_t fid = new_file("rcv", 8);

	commit_on(1, fid, 0, 11);
	commit_on(2, fid, 1, 22);
	commit_on(3, fid, 2, 33);
	/* one block through every node: past images, and changes of three threads merged */
	commit_on(1, fid, 3, 1);
	commit_on(2, fid, 3, 2);
	commit_on(3, fid, 3, 3);
	commit_on(2, fid, 4, 44);

	/* a transaction left open on node 2 (its redo made durable by a later commit there) */
	static const uint64_t open_change[][2] = {{4, 99}};
	pid_t child = open_txn_child(2, fid, open_change, 1);
	commit_on(2, fid, 5, 55);

	for (uint64_t b = 0; b < 6; b++)
		cr_expect_eq(on_disk(fid, b), 0, "block %llu was written before the kill: the test would prove nothing",
			     (unsigned long long)b);
	json_t *r = ctl_json(2, "redo");
	cr_assert_not_null(r, "%s", res.out);
	fprintf(stderr, "node 2 before the kill: checkpoint %lld, durable %lld\n", (long long)jint(r, "checkpoint_lsn"),
		(long long)jint(r, "durable_lsn"));
	json_decref(r);

	/* a power loss of the whole cluster */
	kill_all(child);

	start_all();
	cr_expect_eq(read_on(1, fid, 0), 11);
	cr_expect_eq(read_on(3, fid, 1), 22);
	cr_expect_eq(read_on(2, fid, 2), 33);
	cr_expect_eq(read_on(1, fid, 3), 3, "the block's last committed value, after three nodes' changes");
	cr_expect_eq(read_on(1, fid, 4), 44, "the open transaction's change was not taken back");
	cr_expect_eq(read_on(3, fid, 5), 55);
	cr_expect_eq(on_disk(fid, 3), 3, "recovery wrote the block");
	cr_expect_eq(run("grep -h 'cold start: 3 threads recovered' %s/node*/node.log", cl.dir)->code, 0,
		     "no smond says it recovered the threads");
	fprintf(stderr, "%s", res.out);
	cr_expect(strstr(res.out, "transactions of") != NULL && strstr(res.out, " 1 transactions of") != NULL,
		  "one transaction never committed: %s", res.out);
	/* and the cluster goes on */
	commit_on(2, fid, 3, 4);
	cr_expect_eq(read_on(3, fid, 3), 4);
}

/* coral-bank's transfers on three nodes, and a power loss of the whole cluster (the bank
 * with it) in the middle: after `start all` the money is all there (every transfer whole or
 * not at all: a commit lost with the redo of both its changes durable, or one of them, is
 * taken back), and the bank goes on. */
Test(recovery, the_bank_adds_up_after_the_whole_cluster_was_killed_under_load)
{
	cl_prepare("rcb", rare_checkpoints);
	start_all();
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --json --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0,
		     "%s", res.out);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_assert_eq(jint(b, "total_after"), 200 * 1000, "%s", res.out);
	json_decref(b);

	pid_t bank = bank_in_background();
	sleep(3);
	json_t *g = ctl_json(1, "redo");
	cr_assert_not_null(g, "%s", res.out);
	fprintf(stderr, "node 1 at the kill: %lld commits, checkpoint %lld, durable %lld\n", (long long)jint(g, "commits"),
		(long long)jint(g, "checkpoint_lsn"), (long long)jint(g, "durable_lsn"));
	cr_expect_gt(jint(g, "commits"), 50, "the bank did little before the kill");
	json_decref(g);
	kill_all(bank);
	start_all();
	recovered_and_the_bank_adds_up();
}

/* Segments of 1 MiB: under the bank's load each thread's segments wholly below its kept
 * checkpoint are removed as it moves (redo no longer grows without bound), and a cold start
 * still recovers from the checkpoints. */
static char *small_segments(char *text) { return replace_all(text, "redo_segment = 64M", "redo_segment = 1M"); }

Test(recovery, redo_segments_are_recycled_and_a_cold_start_still_recovers)
{
	cl_prepare("rcs", small_segments);
	cr_assert_eq(run("grep -c 'redo_segment = 1M' %s", cl.conf)->code, 0, "[cache] was not rewritten");
	start_all();
	int64_t first = 0, segs = 0, ckpt = 0, durable = 0;
	for (int round = 0; round < 6 && first == 0; round++) {
		cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 3", CORAL_BUILDDIR, cl.conf)->code, 0,
			     "%s", res.out);
		usleep(1500000); /* a checkpoint, and its keeping by the log writer */
		json_t *r = ctl_json(1, "redo");
		cr_assert_not_null(r, "%s", res.out);
		first = jint(r, "first_segment");
		segs = jint(r, "segments");
		ckpt = jint(r, "checkpoint_kept_lsn");
		durable = jint(r, "durable_lsn");
		json_decref(r);
	}
	fprintf(stderr, "node 1: durable %lld, kept checkpoint %lld, %lld segments from %lld\n", (long long)durable,
		(long long)ckpt, (long long)segs, (long long)first);
	cr_expect_gt(first, 0, "no segment was recycled (durable end %lld)", (long long)durable);
	cr_expect_eq(first, ckpt / (1 << 20), "a segment wholly below the checkpoint is kept, or one above it is gone");
	cr_expect_eq(run("grep -c 'recycled, wholly below the checkpoint' %s/node1/node.log", cl.dir)->code, 0,
		     "replicad does not say it recycled");

	pid_t bank = bank_in_background();
	sleep(2);
	kill_all(bank);
	start_all();
	recovered_and_the_bank_adds_up();
}

/* A process dies (SIGKILL) with a transaction open on node 1: its block stays its own until
 * smond has taken the change back (node 2's read waits for it, and reads what was committed),
 * then the block serves on. Before, lmsd released the dead process's pins and its uncommitted
 * change was read, and built on, by everyone. */
Test(recovery, a_dead_process_s_open_transaction_is_taken_back)
{
	cl_prepare("rcd", NULL);
	start_all();
	uint32_t fid = new_file("rcd", 4);
	commit_on(1, fid, 0, 5);
	commit_on(1, fid, 1, 7);

	static const uint64_t changes[][2] = {{0, 105}, {1, 107}, {0, 107}};
	pid_t child = open_txn_child(1, fid, changes, 3);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	cr_expect_eq(read_on(2, fid, 0), 5, "an uncommitted change of a dead process was read");
	cr_expect_eq(read_on(1, fid, 1), 7);
	json_t *c = ctl_json(1, "cache");
	cr_assert_not_null(c, "%s", res.out);
	cr_expect_eq(jint(c, "dead_transactions"), 1, "%s", res.out);
	cr_expect_eq(jint(c, "dead_transaction_changes"), 3, "%s", res.out);
	json_decref(c);
	cr_expect_eq(run("grep -c 'took back the open transaction' %s/node1/node.log", cl.dir)->code, 0,
		     "smond does not say it took the transaction back");
	json_t *h = ctl_json(1, "recovery history");
	cr_assert_not_null(h, "%s", res.out);
	json_t *last = json_array_get(h, json_array_size(h) - 1);
	cr_expect_str_eq(jstr(last, "kind"), "dead transaction", "%s", res.out);
	cr_expect_eq(jint(last, "undone"), 3, "%s", res.out);
	cr_expect_eq(jint(last, "pid"), child, "%s", res.out);
	json_decref(h);
	commit_on(2, fid, 0, 6);
	cr_expect_eq(read_on(1, fid, 0), 6, "the block serves on");

	/* and a cold start after it replays the taking back, not the change */
	kill_all(0);
	start_all();
	json_t *st = NULL;
	int cold = 0;
	for (int n = 1; n <= 3; n++) {
		st = ctl_json(n, "recovery status");
		cr_assert_not_null(st, "%s", res.out);
		if (json_is_true(json_object_get(st, "cold_start_ran"))) {
			cold++;
			/* the cold start; nodes that came back one by one after it may have been
			 * recovered as lost since, with nothing left to do */
			json_t *h = ctl_json(n, "recovery history"), *l = NULL;
			for (size_t k = 0; h && k < json_array_size(h) && l == NULL; k++)
				if (strcmp(jstr(json_array_get(h, k), "kind"), "cold start") == 0)
					l = json_array_get(h, k);
			cr_expect_not_null(l, "%s", res.out);
			cr_expect_eq(jint(l, "threads"), 3, "%s", res.out);
			cr_expect_str_eq(jstr(l, "result"), "done", "%s", res.out);
			json_decref(h);
		}
		json_decref(st);
	}
	cr_expect_eq(cold, 1, "one smond, the first to start, recovers every thread");
	cr_expect_eq(read_on(3, fid, 0), 6);
	cr_expect_eq(read_on(3, fid, 1), 7);
}

/* A byte of node 1's redo thread damaged in the middle (whole records after it), then every
 * node killed: the cold start refuses to serve anything, and says where the thread is
 * damaged, instead of recovering what comes before and losing what follows. */
Test(recovery, a_thread_damaged_in_the_middle_stops_the_cold_start)
{
	cl_prepare("rcx", rare_checkpoints);
	start_all();
	uint32_t fid = new_file("rcx", 4);
	for (uint64_t v = 1; v <= 20; v++)
		commit_on(1, fid, v % 4, v);
	kill_all(0);
	/* the 100th byte of the thread: inside its first records (a commit record is 56) */
	cr_assert_eq(run("printf 'X' | dd of=%s/shared/redo/thread_1/00000000.redo bs=1 seek=100 conv=notrunc "
			 "2>/dev/null && echo ok", cl.dir)->code, 0, "%s", res.out);
	cr_expect_neq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "the cluster started on a damaged thread");
	cr_expect_eq(run("grep -h 'damaged in the middle' %s/node*/node.log", cl.dir)->code, 0,
		     "no log says the thread is damaged: %s", res.out);
	fprintf(stderr, "%s", res.out);
}

/* Node 3 alone killed while nodes 1 and 2 run, with committed changes only in its cache:
 * nothing recovers its thread yet (that is the recovery of a lost node, not built), and when
 * it starts again its smond says so, loudly, and records it: it is not a silent loss. */
/* The last recovery in a node's history (kind and result), as JSON (free it). */
static json_t *last_recovery(int node)
{
	json_t *h = ctl_json(node, "recovery history");
	cr_assert_not_null(h, "%s", res.out);
	json_t *last = json_incref(json_array_get(h, json_array_size(h) - 1));
	json_decref(h);
	cr_assert_not_null(last, "node %d has no recovery in its history", node);
	return last;
}

/* One node lost while the others run, its cache holding committed changes the data files
 * do not have: a block only it had, one that went through another node first (that node
 * keeps a past image), and an open transaction. The survivors recover it with no operator
 * step and read exactly what was committed. */
Test(recovery, a_node_lost_while_others_run_is_recovered_by_them)
{
	cl_prepare("rco", rare_checkpoints);
	start_all();
	uint32_t fid = new_file("rco", 8);
	commit_on(3, fid, 0, 33);
	commit_on(1, fid, 1, 11);
	commit_on(3, fid, 1, 31);
	commit_on(2, fid, 2, 22);
	commit_on(3, fid, 3, 3);
	static const uint64_t open_change[][2] = {{3, 99}};
	pid_t child = open_txn_child(3, fid, open_change, 1);
	commit_on(3, fid, 4, 44); /* makes the open change's redo durable */
	for (uint64_t b = 0; b < 5; b++)
		cr_expect_eq(on_disk(fid, b), 0, "block %llu was written before the kill: the test would prove nothing",
			     (unsigned long long)b);
	kill_nodes(child, 3, 3);
	wait_recovered(3, 1, 2);
	cr_expect_eq(read_on(1, fid, 0), 33, "a committed change only node 3 had");
	cr_expect_eq(read_on(2, fid, 1), 31, "a block changed on node 1, then node 3");
	cr_expect_eq(read_on(1, fid, 2), 22);
	cr_expect_eq(read_on(2, fid, 3), 3, "the open transaction's change was not taken back");
	cr_expect_eq(read_on(1, fid, 4), 44);
	json_t *ev = last_recovery(1);
	cr_expect_str_eq(jstr(ev, "kind"), "lost node");
	cr_expect_str_eq(jstr(ev, "result"), "done");
	cr_expect_eq(jint(ev, "lost_node"), 3);
	json_decref(ev);
	/* every block is served again, and the cluster goes on */
	commit_on(2, fid, 0, 34);
	cr_expect_eq(read_on(1, fid, 0), 34);
	cr_expect_eq(run("%s/tools/coralctl -c %s -n 1 grd status", CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, " 0 lost buckets awaiting recovery") != NULL, "%s", res.out);
	/* node 3 comes back, with an empty cache, and serves blocks again */
	cr_assert_eq(run("%s -c %s start 3", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_expect_neq(run("grep -h 'that no recovery applied' %s/node3/node.log", cl.dir)->code, 0,
		      "node 3 says its thread was not recovered");
	cr_assert_gt(wait_full_map(3), 0, "node 3 did not join the map again");
	cr_expect_eq(read_on(3, fid, 0), 34);
	commit_on(3, fid, 1, 32);
	cr_expect_eq(read_on(2, fid, 1), 32);
}

/* coral-bank on three nodes, and node 3 killed (supervisor and daemons) in the middle:
 * nodes 1 and 2 go on through its recovery, and the check finds every acknowledged
 * transfer, node 3's included (the indeterminate ones entirely or not at all). A reader per
 * node takes CR copies throughout (many from blocks' consistent images): none torn, none
 * older than the one before. */
Test(recovery, the_bank_goes_on_through_a_node_s_loss)
{
	cl_prepare("rcb", rare_checkpoints);
	start_all();
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --json --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0,
		     "%s", res.out);
	pid_t bank = bank_background(BANK_ARGS " --readers 1 --seconds 14 --ride-through 4000");
	sleep(4);
	kill_nodes(0, 3, 3);
	/* node 3's sessions at most may give up (one may have been in a call until the end) */
	bank_checked(bank, 2);
	wait_recovered(3, 1, 2);
	run("grep -h 'recovery of node 3: done' %s/node1/node.log %s/node2/node.log", cl.dir, cl.dir);
	fprintf(stderr, "%s", res.out);
	/* what remains adds up on nodes 1 and 2 */
	cr_expect_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --nodes 1,2 --json --seconds 1", CORAL_BUILDDIR, cl.conf)->code,
		     0, "%s", res.out);
}

/* Five nodes (a quorum survives two), nodes 4 and 5 killed together, their caches holding
 * committed changes the data files lack: blocks only one of them had, and one changed by
 * node 4 and then node 5 (node 4 keeps a past image), which needs both threads in SCN order.
 * The survivors recover both in one pass (the history says "together" when the two losses
 * came close enough; else the second restarts the first's recovery with both). */
static char *five_nodes(char *text)
{
	text = rare_checkpoints(text);
	/* nodes 4 and 5 in their ports of the test's block (harness.h) */
	int base = cl.base_port + 64;
	char more[1024];
	snprintf(more, sizeof(more),
		 "[node.4]\nid = 4\nhost = 127.0.0.1\nbase_port = %d\nrun_dir = %s/node4\nsga_size = 64M\nsga_name =\n"
		 "data_dir =\n\n[node.5]\nid = 5\nhost = 127.0.0.1\nbase_port = %d\nrun_dir = %s/node5\nsga_size = 64M\n"
		 "sga_name =\ndata_dir =\n\n[storage]",
		 base, cl.dir, base + 16, cl.dir);
	return replace_all(text, "[storage]", more);
}

/* Whether every survivor's history has lost_node's recovery done. */
static bool recovered_everywhere(int lost, int first, int last)
{
	for (int n = first; n <= last; n++) {
		json_t *h = ctl_json(n, "recovery history");
		bool done = false;
		for (size_t i = 0; h && i < json_array_size(h); i++) {
			json_t *e = json_array_get(h, i);
			done |= jint(e, "lost_node") == lost && strncmp(jstr(e, "result"), "done", 4) == 0;
		}
		json_decref(h);
		if (!done)
			return false;
	}
	return true;
}

Test(recovery, two_nodes_lost_together_are_recovered_together, .timeout = 300)
{
	cl_prepare("rc5", five_nodes);
	start_nodes(5);
	uint32_t fid = new_file("rc5", 8);
	commit_on(4, fid, 0, 40);
	commit_on(4, fid, 1, 41);
	commit_on(5, fid, 1, 51);
	commit_on(5, fid, 2, 52);
	commit_on(5, fid, 3, 53);
	commit_on(1, fid, 3, 13);
	commit_on(2, fid, 4, 24);
	for (uint64_t b = 0; b < 5; b++)
		cr_expect_eq(on_disk(fid, b), 0, "block %llu was written before the kill: the test would prove nothing",
			     (unsigned long long)b);
	kill_nodes(0, 4, 5);
	bool done = false;
	for (int i = 0; i < 300 && !done; i++) {
		done = recovered_everywhere(4, 1, 3) && recovered_everywhere(5, 1, 3);
		if (!done)
			usleep(100000);
	}
	run("grep -h 'recovery of node' %s/node1/node.log %s/node2/node.log %s/node3/node.log", cl.dir, cl.dir, cl.dir);
	fprintf(stderr, "%s", res.out);
	cr_assert(done, "nodes 4 and 5 were not both recovered on nodes 1-3");
	cr_expect_eq(read_on(1, fid, 0), 40, "a committed change only node 4 had");
	cr_expect_eq(read_on(2, fid, 1), 51, "a block changed on node 4, then node 5: both lost");
	cr_expect_eq(read_on(3, fid, 2), 52, "a committed change only node 5 had");
	cr_expect_eq(read_on(1, fid, 3), 13, "node 5's change, then node 1's (a survivor has it)");
	cr_expect_eq(read_on(2, fid, 4), 24);
	/* every block is served again */
	commit_on(3, fid, 1, 61);
	cr_expect_eq(read_on(1, fid, 1), 61);
	cr_expect_eq(run("%s/tools/coralctl -c %s -n 1 grd status", CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, " 0 lost buckets awaiting recovery") != NULL, "%s", res.out);
	run("%s/tools/coralctl -c %s -n 1 raft history | grep -i recover", CORAL_BUILDDIR, cl.conf);
	fprintf(stderr, "%s", res.out);
	cr_expect(strstr(res.out, "recovered") != NULL, "raftd's history names no recovery: %s", res.out);
}

/* A node killed alone and started again at once (faster than its eviction): raftd has it
 * under a new incarnation, grdd records the old one as lost, the survivors recover it, and
 * the node's smond waits for that before its lmsd serves. */
Test(recovery, a_node_killed_and_restarted_at_once_is_recovered_before_it_serves)
{
	cl_prepare("rcu", rare_checkpoints);
	start_all();
	uint32_t fid = new_file("rcu", 4);
	commit_on(3, fid, 0, 33);
	commit_on(3, fid, 1, 34);
	kill_nodes(0, 3, 3);
	cr_assert_eq(run("%s -c %s start 3", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_expect_eq(run("grep -h 'recovered by the survivors' %s/node3/node.log", cl.dir)->code, 0,
		     "node 3's smond does not say its thread was recovered before it went on");
	cr_expect_neq(run("grep -h 'that no recovery applied' %s/node3/node.log", cl.dir)->code, 0, "%s", res.out);
	cr_assert_gt(wait_full_map(3), 0, "node 3 did not join the map again");
	cr_expect_eq(read_on(1, fid, 0), 33);
	cr_expect_eq(read_on(3, fid, 1), 34);
	/* node 3 goes on once the claimer wrote recovery/3 done; node 1's smond adds its
	 * history entry when it next reaps its part, which may be a moment later */
	wait_recovered(3, 1, 2);
	json_t *ev = last_recovery(1);
	cr_expect_str_eq(jstr(ev, "kind"), "lost node");
	cr_expect_str_eq(jstr(ev, "result"), "done");
	json_decref(ev);
}

/* Whether any segment of node's redo thread holds the 8 bytes of v. */
static bool thread_holds(int node, uint64_t v)
{
	char dir[CORAL_STR_MAX + 64];
	snprintf(dir, sizeof(dir), "%s/shared/redo/thread_%d", cl.dir, node);
	run("ls %s", dir);
	bool found = false;
	char *names = strdup(res.out), *save = NULL;
	for (char *n = strtok_r(names, "\n", &save); n && !found; n = strtok_r(NULL, "\n", &save)) {
		char path[sizeof(dir) + 256];
		snprintf(path, sizeof(path), "%s/%s", dir, n);
		FILE *f = fopen(path, "rb");
		if (f == NULL)
			continue;
		static uint8_t buf[1 << 22];
		size_t len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		found = memmem(buf, len, &v, sizeof(v)) != NULL;
	}
	free(names);
	return found;
}

/* A commit on node 3 appended while its log writer is stopped, then node 3 leaves (its lmsd
 * killed: it escalates) and is evicted and recovered without that redo: the log writer,
 * let go while the node is still fenced, drops it (replicad(8), RESTART), the commit fails,
 * and once node 3 has joined again and written more, its thread does not hold the change
 * (written then, the next recovery of the thread would apply a change whose commit failed). */
Test(recovery, redo_an_evicted_node_had_not_written_is_dropped_not_written_after_it_rejoins)
{
	cl_prepare("rcd", rare_checkpoints);
	start_all();
	uint32_t fid = new_file("rcd", 4);
	commit_on(3, fid, 0, 33);
	const uint64_t lost = 0x5eadbeef0ddba11ull;
	pid_t replicad = daemon_pid(3, "replicad");
	cr_assert_gt(replicad, 0);
	kill(replicad, SIGSTOP);
	int ready[2];
	cr_assert_eq(pipe(ready), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		struct coral_session *s;
		struct coral_block *b = NULL;
		if (coral_session_open(cl.conf, 3, "test", "lost-commit", &s) != 0 ||
		    coral_block_get(s, fid, 0, CORAL_MODE_X, &b) != 0 || coral_block_modify(s, b, 0, &lost, sizeof(lost)) != 0)
			_exit(2);
		if (write(ready[1], "k", 1) != 1)
			_exit(3);
		_exit(coral_commit(s, NULL) == 0 ? 0 : 1);
	}
	char k;
	cr_assert_eq(read(ready[0], &k, 1), 1, "the child's change was not made");
	usleep(300000);  /* its commit record appended, waiting for the stopped writer */
	pid_t lmsd = daemon_pid(3, "lmsd");
	cr_assert_gt(lmsd, 0);
	kill(lmsd, SIGKILL);
	int i;
	for (i = 0; i < 300; i++) {
		if (run("grep -q 'the node left the cluster after lmsd pid %d' %s/node3/node.log", (int)lmsd, cl.dir)->code == 0)
			break;
		usleep(50000);
	}
	kill(replicad, SIGCONT);
	cr_assert_lt(i, 300, "node 3 did not leave the cluster after its lmsd was killed");
	for (i = 0; i < 100; i++) {
		if (run("grep -q 'bytes of redo appended under it and not written are dropped' %s/node3/node.log", cl.dir)->code == 0)
			break;
		usleep(50000);
	}
	cr_expect_lt(i, 100, "node 3's replicad did not drop the evicted incarnation's redo");
	int st = 0;
	for (i = 0; i < 300 && waitpid(child, &st, WNOHANG) == 0; i++)
		usleep(50000);
	if (i == 300) {
		kill(child, SIGKILL);
		waitpid(child, &st, 0);
	}
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "the commit whose redo was dropped did not fail (status %#x)", st);
	wait_recovered(3, 1, 2);
	cr_assert_gt(wait_full_map(3), 0, "node 3 did not join the map again");
	cr_expect_eq(read_on(1, fid, 0), 33, "the failed commit's change is seen");
	commit_on(3, fid, 1, 34);  /* node 3 writes its thread again */
	cr_expect_eq(read_on(3, fid, 1), 34);
	cr_expect_not(thread_holds(3, lost), "node 3's thread holds the change whose commit failed");
}

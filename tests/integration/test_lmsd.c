/* Cache fusion on three real nodes: coral-bank moves money between accounts in shared blocks
 * from sessions on every node (2-way and 3-way transfers, past images, write-back, group
 * commit) and its check holds (total unchanged, every account exactly as its committed
 * transfers say) while readers on every node take consistent-read copies (never torn, never
 * older than the one before); a block damaged on disk is reported by coralctl datafile list --verify and
 * refused to a session with its file and number, while its neighbours are still served.
 * Also: CR copies straight from the holder, pins of a killed session released, and a node
 * whose raftd stops fenced once its lease runs out. */
#include "harness.h"
#include "coral_harness.h"

#include "conf.h"
#include "ctl.h"
#include "errors.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>

TestSuite(lmsd, .init = NULL, .fini = cl_teardown, .timeout = 240);

/* Three nodes up, with a leader and a bucket map on each (block masters are known). */
static void start_three(const char *prefix, char *(*edit)(char *text))
{
	cl_prepare(prefix, edit);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	for (int i = 0; i < 150 && (map_version(1) < 1 || map_version(2) < 1 || map_version(3) < 1); i++)
		usleep(100000);
	for (int n = 1; n <= 3; n++)
		cr_assert_geq(map_version(n), 1, "node %d has no map", n);
}

/* A small cache and frequent checkpoints: blocks are evicted, written back and shipped
 * clean as well as dirty, while sessions keep pinning them (a clean block in X shipped
 * while a session changed it once lost a transfer; with the default cache it showed in one
 * run of ten, with this one in one of four) */
static char *small_cache(char *text)
{
	text = replace_all(text, "buffers = 2048", "buffers = 96");
	return replace_all(text, "checkpoint_ms = 1000", "checkpoint_ms = 50");
}

Test(lmsd, bank_on_three_nodes_then_a_damaged_block_is_refused)
{
	start_three("lms", small_cache);

	cr_assert_eq(run("%s/tools/coral-bank -c %s --accounts 400 --per-block 8 --sessions 2 --readers 2 --seconds 3 "
			 "--json",
			 CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_expect(json_is_true(json_object_get(b, "ok")), "%s", res.out);
	cr_expect_gt(jint(b, "transfers"), 100, "%s", res.out);
	cr_expect_eq(jint(b, "total_before"), jint(b, "total_after"));
	cr_expect_eq(jint(b, "wrong_accounts"), 0);
	cr_expect_gt(jint(b, "three_way"), 0, "no 3-way transfer: %s", res.out);
	cr_expect_gt(jint(b, "two_way"), 0, "no 2-way transfer: %s", res.out);
	cr_expect_gt(jint(b, "local_hits"), 0, "%s", res.out);
	/* consistent reads meanwhile: never torn, never older than before, some straight
	 * from the holder */
	cr_expect_gt(jint(b, "cr_reads"), 100, "%s", res.out);
	cr_expect_eq(jint(b, "cr_torn"), 0, "%s", res.out);
	cr_expect_eq(jint(b, "cr_went_back"), 0, "%s", res.out);
	cr_expect_eq(jint(b, "wrong_block_totals"), 0, "%s", res.out);
	cr_expect_gt(jint(b, "cr_direct"), 0, "%s", res.out);
	fprintf(stderr, "bank: %s", res.out);
	json_decref(b);

	/* what lmsd, the cache and the redo thread say */
	json_t *g = ctl_json(2, "gcs stats");
	cr_assert_not_null(g, "%s", res.out);
	cr_expect_gt(jint(g, "three_way") + jint(g, "two_way"), 0);
	cr_expect_gt(jint(g, "pi_kept"), 0, "no past image was ever kept");
	json_decref(g);
	json_t *r = ctl_json(3, "redo");
	cr_assert_not_null(r, "%s", res.out);
	cr_expect_gt(jint(r, "commits"), 0);
	cr_expect_eq(jint(r, "durable_lsn"), jint(r, "lsn"), "redo left undurable after the run");
	json_decref(r);

	/* a data file with one damaged block */
	json_t *df = ctl_json(1, "datafile create victim 4");
	cr_assert_not_null(df, "%s", res.out);
	uint32_t fid = (uint32_t)jint(df, "id");
	const char *path = jstr(df, "path");
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(pwrite(fd, "garbage!", 8, 2 * 8192 + 100), 8);
	close(fd);
	json_decref(df);
	cr_expect_eq(run("%s -c %s datafile list --verify", CORALCTL, cl.conf)->code, 1, "%s", res.out);
	cr_expect(strstr(res.out, "victim") != NULL, "%s", res.out);
	fprintf(stderr, "verify: %s", res.out);

	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 2, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	struct coral_block *blk = NULL;
	int rc = coral_block_get(s, fid, 2, CORAL_MODE_S, &blk);
	cr_expect_neq(rc, 0, "a damaged block was served");
	char want[32];
	snprintf(want, sizeof(want), "block %u:2", fid);
	cr_expect(strstr(coral_session_error(s), want) && strstr(coral_session_error(s), "damaged"),
		  "the error does not name the block: %s", coral_session_error(s));
	fprintf(stderr, "damaged block: %s\n", coral_session_error(s));
	/* a block past the end of the file is the caller's mistake, not the disk's, twice */
	for (int i = 0; i < 2; i++) {
		cr_expect_eq(coral_block_get(s, fid, 4, CORAL_MODE_X, &blk), CORAL_ERR_INVAL, "block 4 of a 4-block file: %s",
			     coral_session_error(s));
		cr_expect(strstr(coral_session_error(s), "past the end") != NULL, "%s", coral_session_error(s));
		fprintf(stderr, "past the end: %s\n", coral_session_error(s));
	}
	cr_expect_eq(coral_block_get(s, fid, 1, CORAL_MODE_X, &blk), 0, "%s", coral_session_error(s));
	if (blk) {
		uint64_t v = 42;
		cr_expect_eq(coral_block_modify(s, blk, 0, &v, sizeof(v)), 0, "%s", coral_session_error(s));
		coral_block_release(s, blk);
		cr_expect_eq(coral_commit(s, NULL), 0, "%s", coral_session_error(s));
	}
	coral_session_close(s);
}

/* One session changes a block, in X on node `node`, to value v (committed). */
/* start_three() with the default configuration, and a new 4-block data file: its id */
static uint32_t start_three_with_file_edit(const char *prefix, const char *name, char *(*ed)(char *text))
{
	start_three(prefix, ed);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "datafile create %s 4", name);
	json_t *df = ctl_json(1, cmd);
	cr_assert_not_null(df, "%s", res.out);
	uint32_t fid = (uint32_t)jint(df, "id");
	json_decref(df);
	return fid;
}

static uint32_t start_three_with_file(const char *prefix, const char *name)
{
	return start_three_with_file_edit(prefix, name, NULL);
}

/* Sessions fail at once on a fence instead of waiting for its end: the test is the refusal */
static char *no_restart_wait(char *text) { return replace_all(text, "restart_wait_ms = 15000", "restart_wait_ms = 0"); }

static void put(int node, uint32_t fid, uint64_t v)
{
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, node, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	coral_block_release(s, x_change_commit(s, fid, 0, v));
	coral_session_close(s);
}

/* [cache] cr_direct: a session reads a CR copy through its own lmsd once, then straight from
 * the holder's lmsd; each copy is the newest image; when the block has moved on, the old
 * holder refuses and the session takes the full path, then reads from the new holder. */
Test(lmsd, cr_copies_come_straight_from_the_holder)
{
	uint32_t fid = start_three_with_file("lmc", "crt");

	put(1, fid, 1);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 2, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	struct coral_session_stats st;
	cr_expect_eq(cr_read(s, fid), 1);
	coral_session_stats(s, &st);
	cr_expect_eq(st.cr_direct, 0, "the first copy comes through the session's own lmsd");
	cr_expect_eq(cr_read(s, fid), 1);
	put(1, fid, 2);
	cr_expect_eq(cr_read(s, fid), 2, "a direct copy is the newest image");
	coral_session_stats(s, &st);
	cr_expect_eq(st.cr_direct, 2, "the copies after the first come straight from node 1");

	put(3, fid, 3);  /* the block moves to node 3; node 1 keeps a past image */
	cr_expect_eq(cr_read(s, fid), 3, "a past image is never served as a CR copy");
	coral_session_stats(s, &st);
	cr_expect_eq(st.cr_direct_missed, 1, "node 1 should have refused");
	cr_expect_eq(cr_read(s, fid), 3);
	coral_session_stats(s, &st);
	cr_expect_eq(st.cr_direct, 3, "then straight from node 3");
	coral_session_close(s);

	/* the CR port takes nothing else: a control request closes the connection, as does a CR
	 * read without the hello first, and a hello naming a node that is not a member */
	int fd = -1;
	char err[256];
	cr_assert_eq(coral_ctl_connect_tcp("127.0.0.1", cl.base_port + CORAL_PORT_LMSD_CR, 1000, &fd, err, sizeof(err)), 0,
		     "%s", err);
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__StatusRequest st_req = CORAL__STATUS_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_STATUS;
	req.status = &st_req;
	Coral__CtlResponse *resp = NULL;
	cr_expect_eq(coral_ctl_call_fd(fd, "the CR port", &req, 1 << 20, 2000, &resp, err, sizeof(err)), CORAL_ECLOSED,
		     "a status request on the CR port: %s", err);
	if (resp)
		coral_ctl_response_free(resp);
	close(fd);
	cr_assert_eq(coral_ctl_connect_tcp("127.0.0.1", cl.base_port + CORAL_PORT_LMSD_CR, 1000, &fd, err, sizeof(err)), 0,
		     "%s", err);
	Coral__GcsCrReadRequest rd = CORAL__GCS_CR_READ_REQUEST__INIT;
	rd.file = fid;
	rd.block = 1;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_CR_READ;
	req.gcs_cr_read = &rd;
	resp = NULL;
	cr_expect_eq(coral_ctl_call_fd(fd, "the CR port", &req, 1 << 20, 2000, &resp, err, sizeof(err)), CORAL_ECLOSED,
		     "a CR read without a hello got an answer (%s)", resp && resp->gcs_cr_read ? "a block" : err);
	if (resp)
		coral_ctl_response_free(resp);
	close(fd);
	cr_assert_eq(coral_ctl_connect_tcp("127.0.0.1", cl.base_port + CORAL_PORT_LMSD_CR, 1000, &fd, err, sizeof(err)), 0,
		     "%s", err);
	Coral__GcsCrHello hello = CORAL__GCS_CR_HELLO__INIT;
	hello.cluster = cl.name;
	hello.node = 9;
	hello.incarnation = 1;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_CR_HELLO;
	req.gcs_cr_hello = &hello;
	resp = NULL;
	cr_expect_eq(coral_ctl_call_fd(fd, "the CR port", &req, 1 << 20, 2000, &resp, err, sizeof(err)), CORAL_ECLOSED,
		     "a hello naming node 9 was taken");
	if (resp)
		coral_ctl_response_free(resp);
	close(fd);

	json_t *g = ctl_json(1, "gcs stats");
	cr_assert_not_null(g, "%s", res.out);
	cr_expect_eq(jint(g, "cr_direct"), 2, "%s", res.out);
	cr_expect_eq(jint(g, "cr_direct_refused"), 1, "%s", res.out);
	cr_expect_eq(jint(g, "cr_port_refused"), 3, "%s", res.out);
	json_decref(g);
}

/* A process killed while its session holds blocks pinned (one pinned on the fast path, one
 * pinned by lmsd for it): lmsd releases both within a second or so, and another node then
 * gets them in X (a pinned buffer is never shipped: before, they stayed on node 1 for good).
 * Meanwhile CR reads of both are answered from their consistent images, which go with the
 * pins. */
Test(lmsd, pins_of_a_killed_session_are_released)
{
	uint32_t fid = start_three_with_file("lmk", "pins");
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		struct coral_session *s;
		struct coral_block *a = NULL, *b = NULL;
		char ok = 'n';
		if (coral_session_open(cl.conf, 1, "test", "test_lmsd-victim", &s) == 0 &&
		    coral_block_get(s, fid, 0, CORAL_MODE_X, &a) == 0) {
			coral_block_release(s, a);
			/* block 0 again: the node holds it in X, the fast path pins it; block 1
			 * comes through lmsd, which pins it for the session */
			if (coral_block_get(s, fid, 0, CORAL_MODE_X, &a) == 0 &&
			    coral_block_get(s, fid, 1, CORAL_MODE_X, &b) == 0)
				ok = 'y';
		}
		if (write(p[1], &ok, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	char ok = 0;
	cr_assert_eq(read(p[0], &ok, 1), 1);
	close(p[0]);
	cr_assert_eq(ok, 'y', "the victim session could not pin its blocks");
	json_t *c = ctl_json(1, "cache");
	cr_assert_not_null(c, "%s", res.out);
	cr_expect_geq(jint(c, "session_pins"), 2, "%s", res.out);
	/* each X pin keeps its block's consistent image: a CR read of either, on node 1 or on
	 * node 2, is answered at once while the victim holds them */
	cr_expect_eq(jint(c, "cr_clones_in_use"), 2, "%s", res.out);
	json_decref(c);
	struct coral_session *r1, *r2;
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "reader", &r1), 0, "%s", coral_session_error(r1));
	cr_assert_eq(coral_session_open(cl.conf, 2, "test", "reader", &r2), 0, "%s", coral_session_error(r2));
	for (uint64_t blk = 0; blk < 2; blk++) {
		struct coral_block *b = NULL;
		cr_expect_eq(coral_block_get(r1, fid, blk, CORAL_MODE_CR, &b), 0, "%s", coral_session_error(r1));
		if (b)
			coral_block_release(r1, b);
		b = NULL;
		cr_expect_eq(coral_block_get(r2, fid, blk, CORAL_MODE_CR, &b), 0, "%s", coral_session_error(r2));
		if (b)
			coral_block_release(r2, b);
	}
	coral_session_close(r1);
	coral_session_close(r2);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);

	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 2, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	uint64_t t0 = coral_now_mono_ns();
	for (uint64_t blk = 0; blk < 2; blk++) {
		struct coral_block *b = NULL;
		cr_expect_eq(coral_block_get(s, fid, blk, CORAL_MODE_X, &b), 0, "block %llu: %s", (unsigned long long)blk,
			     coral_session_error(s));
		if (b)
			coral_block_release(s, b);
	}
	double took = (double)(coral_now_mono_ns() - t0) / 1e9;
	cr_expect_lt(took, 8.0, "both blocks within %.1f s (get_timeout_ms is 10 s)", took);
	coral_session_close(s);
	c = ctl_json(1, "cache");
	cr_assert_not_null(c, "%s", res.out);
	cr_expect_eq(jint(c, "dead_sessions"), 1, "%s", res.out);
	cr_expect_eq(jint(c, "dead_session_pins"), 2, "%s", res.out);
	cr_expect_eq(jint(c, "session_pins"), 0, "%s", res.out);
	cr_expect_eq(jint(c, "cr_clones_in_use"), 0, "the images went with the dead session's pins: %s", res.out);
	json_decref(c);
}

/* raftd of node 3 stops (SIGSTOP: as hung as a dead one, without a restart by the
 * supervisor): nobody renews the node's lease, and once it has run out node 3's sessions
 * get nothing, not even the block they hold in X, though raftd never said "fenced". */
Test(lmsd, a_node_whose_raftd_stops_is_fenced_when_its_lease_runs_out)
{
	uint32_t fid = start_three_with_file_edit("lmf", "fen", no_restart_wait);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 3, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	struct coral_block *b = x_change_commit(s, fid, 0, 7);
	coral_block_release(s, b);

	pid_t rp = raftd_pid(3);
	cr_assert_gt(rp, 0);
	uint64_t t0 = coral_now_mono_ns();
	cr_assert_eq(kill(rp, SIGSTOP), 0);
	int rc = 0;
	uint64_t hits = 0;
	while (coral_now_mono_ns() - t0 < 8000000000ull) {
		rc = coral_block_get(s, fid, 0, CORAL_MODE_X, &b);
		if (rc != 0)
			break;
		hits++;
		coral_block_release(s, b);
		usleep(20000);
	}
	uint64_t ms = (coral_now_mono_ns() - t0) / 1000000ull;
	char err[512];
	snprintf(err, sizeof(err), "%s", coral_session_error(s));
	int commit_rc = coral_commit(s, NULL);
	kill(rp, SIGCONT);
	fprintf(stderr, "raftd stopped: block still served %llu times, refused after %llu ms: %s\n",
		(unsigned long long)hits, (unsigned long long)ms, err);
	cr_expect_eq(rc, CORAL_ERR_FENCED, "got %d after %llu ms: %s", rc, (unsigned long long)ms, err);
	cr_expect(strstr(err, "raftd") != NULL, "the error does not point at raftd: %s", err);
	/* the lease is 2 s from the last quorum contact, published every 100 ms */
	cr_expect_geq(ms, 1500, "fenced too early");
	cr_expect_leq(ms, 3000, "fenced too late");
	cr_expect_gt(hits, 10, "the block was not served from the cache before the lease ran out");
	cr_expect_eq(commit_rc, CORAL_ERR_FENCED, "%s", coral_session_error(s));
	coral_session_close(s);
}

/* A block read by another node's session, from a thread (libcoral's calls block). */
struct far_read {
	uint32_t fid;
	int rc;
	uint64_t v;
	char err[256];
	_Atomic bool done;
};

static void *far_read_run(void *arg)
{
	struct far_read *f = arg;
	struct coral_session *s;
	f->rc = coral_session_open(cl.conf, 2, "test", "test_lmsd", &s);
	if (f->rc != 0) {
		snprintf(f->err, sizeof(f->err), "%s", coral_session_error(s));
		return NULL;
	}
	struct coral_block *b = NULL;
	f->rc = coral_block_get(s, f->fid, 0, CORAL_MODE_S, &b);
	snprintf(f->err, sizeof(f->err), "%s", coral_session_error(s));
	if (f->rc == 0) {
		memcpy(&f->v, coral_block_data(b), sizeof(f->v));
		coral_block_release(s, b);
	}
	coral_session_close(s);
	atomic_store(&f->done, true);
	return NULL;
}

/* An S read by a session of node 2 in a thread of its own, which must still be waiting ms
 * later (a transaction holds the block): its thread, to join once the transaction ends. */
static pthread_t far_read_waits(struct far_read *f, int ms)
{
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, far_read_run, f), 0);
	usleep((useconds_t)ms * 1000);
	cr_expect(!atomic_load(&f->done), "node 2's S read read the block (%llu) while a transaction held it",
		  (unsigned long long)f->v);
	return t;
}

/* Node 1's log writer stops (replicad SIGSTOPped) while a session there has changed a block
 * (its redo in the buffer, not durable), and node 2 asks for the block. The session keeps the
 * block until its commit gives up (commit_timeout_ms 1000 for it; the change is then of
 * unknown outcome, and the block released). Node 1's lmsd must not ship the image before its
 * redo is durable, and must not wait for that in its event loop: it answers coralctl at once
 * meanwhile, counting the ship as waiting for the log; once the writer goes on, node 2 gets
 * the block with the change. */
Test(lmsd, a_ship_waits_for_the_log_and_lmsd_serves_on_meanwhile)
{
	uint32_t fid = start_three_with_file("lml", "lwt");
	put(1, fid, 1);
	pid_t rp = daemon_pid(1, "replicad");
	cr_assert_gt(rp, 0);
	char short_conf[200];
	snprintf(short_conf, sizeof(short_conf), "%s/short-commit.conf", cl.dir);
	cr_assert_eq(run("sed 's/^commit_timeout_ms = .*/commit_timeout_ms = 1000/' %s > %s && grep -c "
			 "'commit_timeout_ms = 1000' %s", cl.conf, short_conf, short_conf)->code, 0, "%s", res.out);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(short_conf, 1, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	cr_assert_eq(kill(rp, SIGSTOP), 0);
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, 0, CORAL_MODE_X, &b), 0, "%s", coral_session_error(s));
	uint64_t v = 42;
	cr_assert_eq(coral_block_modify(s, b, 0, &v, sizeof(v)), 0, "%s", coral_session_error(s));
	coral_block_release(s, b);

	struct far_read f = {.fid = fid, .rc = -1};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, far_read_run, &f), 0);
	usleep(200000);
	cr_expect_eq(coral_commit(s, NULL), CORAL_ERR_TIMEDOUT, "%s", coral_session_error(s));
	usleep(300000);
	uint64_t t0 = coral_now_mono_ns();
	json_t *g = ctl_json(1, "gcs stats");
	uint64_t ms = (coral_now_mono_ns() - t0) / 1000000ull;
	kill(rp, SIGCONT);
	cr_assert_not_null(g, "%s", res.out);
	fprintf(stderr, "log writer stopped: coralctl answered in %llu ms, %lld ships waiting for the log\n",
		(unsigned long long)ms, (long long)jint(g, "log_waits"));
	cr_expect_geq(jint(g, "log_waits"), 1, "%s", res.out);
	cr_expect_lt(ms, 2000, "lmsd was stuck in its loop for %llu ms", (unsigned long long)ms);
	json_decref(g);
	pthread_join(t, NULL);
	cr_expect_eq(f.rc, 0, "node 2's read: %s", f.err);
	cr_expect_eq(f.v, 42, "node 2 read %llu", (unsigned long long)f.v);
	coral_session_close(s);
}

/* A clean stop writes every dirty block back (the last checkpoint, batch after batch, each
 * waiting for its redo): after `stop all` and `start all` the changes made on every node are
 * read back from the data files. */
Test(lmsd, a_clean_stop_writes_every_change_back)
{
	uint32_t fid = start_three_with_file("lmr", "rst");
	for (uint64_t b = 0; b < 4; b++) {
		struct coral_session *s;
		int node = 1 + (int)(b % 3);
		cr_assert_eq(coral_session_open(cl.conf, node, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
		coral_block_release(s, x_change_commit(s, fid, b, 100 + b));
		coral_session_close(s);
	}
	cr_assert_eq(run("%s -c %s stop all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	for (int i = 0; i < 150 && (map_version(1) < 1 || map_version(2) < 1 || map_version(3) < 1); i++)
		usleep(100000);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 2, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	for (uint64_t b = 0; b < 4; b++) {
		struct coral_block *blk = NULL;
		cr_assert_eq(coral_block_get(s, fid, b, CORAL_MODE_S, &blk), 0, "%s", coral_session_error(s));
		uint64_t v;
		memcpy(&v, coral_block_data(blk), sizeof(v));
		coral_block_release(s, blk);
		cr_expect_eq(v, 100 + b, "block %llu: %llu after a clean restart", (unsigned long long)b,
			     (unsigned long long)v);
	}
	coral_session_close(s);
}

static json_t *redo_json(int node)
{
	json_t *j = ctl_json(node, "redo");
	cr_assert_not_null(j, "%s", res.out);
	return j;
}

/* The redo thread's checkpoint: a block changed and held in X (so that it cannot be written)
 * keeps node 1's checkpoint at or before its change while the thread goes on; once let go it
 * is written by a checkpoint and the checkpoint reaches the durable end, and the log writer
 * keeps it in the thread's directory. */
Test(lmsd, the_checkpoint_stays_behind_an_unwritten_change_and_then_catches_up)
{
	uint32_t fid = start_three_with_file("lmk", "ckp");
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	json_t *j = redo_json(1);
	int64_t before = jint(j, "lsn");
	json_decref(j);
	struct coral_block *held = x_change_commit(s, fid, 0, 5);  /* left pinned in X */
	for (int i = 0; i < 20; i++)
		coral_block_release(s, x_change_commit(s, fid, 1, 10 + (uint64_t)i));
	usleep(2500000);  /* two checkpoints */
	j = redo_json(1);
	int64_t ckpt = jint(j, "checkpoint_lsn"), durable = jint(j, "durable_lsn");
	fprintf(stderr, "checkpoint with a change held: %lld, durable %lld, the change after %lld\n", (long long)ckpt,
		(long long)durable, (long long)before);
	cr_expect_leq(ckpt, before, "the checkpoint passed a change that is not on disk");
	cr_expect_gt(durable, before);
	json_decref(j);
	coral_block_release(s, held);
	coral_session_close(s);
	int64_t kept = -1;
	for (int i = 0; i < 50; i++) {
		usleep(100000);
		j = redo_json(1);
		ckpt = jint(j, "checkpoint_lsn");
		durable = jint(j, "durable_lsn");
		kept = jint(j, "checkpoint_kept_lsn");
		json_decref(j);
		if (ckpt == durable && kept == ckpt)
			break;
	}
	fprintf(stderr, "checkpoint once let go: %lld (kept %lld), durable %lld\n", (long long)ckpt, (long long)kept,
		(long long)durable);
	cr_expect_eq(ckpt, durable, "every change is on disk: the checkpoint is the durable end");
	cr_expect_eq(kept, ckpt, "the thread's directory does not keep the checkpoint");
}

/* A hot block: two blocks' accounts moved between by sessions on two nodes, each block
 * always pinned or on its way to the other node (a past image left behind each time). The
 * checkpoint still writes it: it takes no new exclusive pin until lmsd has copied it at its
 * unpin, and it is written before it is shipped. Without that, the thread's checkpoint stayed
 * where the bank began (and a lost node's recovery, waiting for these images, for ever). */
Test(lmsd, a_hot_block_passed_between_nodes_is_written_all_the_same)
{
	start_three("lmh", NULL);
	pid_t bank = bank_background("--accounts 16 --per-block 8 --sessions 2 --readers 0 --nodes 1,2 --seconds 8");
	sleep(3);
	int64_t lsn[3];
	for (int n = 1; n <= 2; n++) {
		json_t *j = redo_json(n);
		lsn[n] = jint(j, "lsn");
		json_decref(j);
	}
	int64_t ckpt[3] = {0, 0, 0};
	for (int i = 0; i < 40 && (ckpt[1] <= lsn[1] || ckpt[2] <= lsn[2]); i++) {
		usleep(100000);
		for (int n = 1; n <= 2; n++) {
			json_t *j = redo_json(n);
			ckpt[n] = jint(j, "checkpoint_lsn");
			json_decref(j);
		}
	}
	for (int n = 1; n <= 2; n++) {
		fprintf(stderr, "node %d: the thread at %lld under the bank, its checkpoint at %lld soon after\n", n,
			(long long)lsn[n], (long long)ckpt[n]);
		cr_expect_gt(ckpt[n], lsn[n], "node %d's checkpoint did not pass the changes the bank made (%lld <= %lld)", n,
			     (long long)ckpt[n], (long long)lsn[n]);
	}
	int64_t waits = 0;
	for (int n = 1; n <= 2; n++) {
		json_t *g = ctl_json(n, "gcs stats");
		cr_assert_not_null(g, "%s", res.out);
		waits += jint(g, "write_waits");
		json_decref(g);
	}
	fprintf(stderr, "write waits: %lld\n", (long long)waits);
	cr_expect_gt(waits, 0, "no block was found pinned or shipping by a checkpoint");
	bank_checked(bank, 0);
}

/* libcoral's transactions (coral.h): a block changed and released before the commit stays
 * the transaction's; a session of another node reading it waits, and reads what was there
 * before once the change is rolled back (by coral_rollback, or by closing the session with
 * the transaction open); the same session gets its own block again without waiting for
 * itself. */
Test(lmsd, nobody_sees_an_uncommitted_change_and_rollback_takes_it_back)
{
	uint32_t fid = start_three_with_file("lmr", "rbk");
	put(1, fid, 5);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "test_lmsd", &s), 0, "%s", coral_session_error(s));
	for (int round = 0; round < 2; round++) {
		struct coral_block *b = NULL;
		cr_assert_eq(coral_block_get(s, fid, 0, CORAL_MODE_X, &b), 0, "%s", coral_session_error(s));
		uint64_t v = 99;
		cr_assert_eq(coral_block_modify(s, b, 0, &v, sizeof(v)), 0, "%s", coral_session_error(s));
		coral_block_release(s, b);
		struct coral_block *again = NULL;
		cr_assert_eq(coral_block_get(s, fid, 0, CORAL_MODE_S, &again), 0, "%s", coral_session_error(s));
		cr_expect_eq(*(const uint64_t *)coral_block_data(again), 99, "the session sees its own change");
		coral_block_release(s, again);

		struct far_read f = {.fid = fid, .rc = -1};
		pthread_t t = far_read_waits(&f, 700);
		if (round == 0) {
			cr_expect_eq(coral_rollback(s), 0, "%s", coral_session_error(s));
		} else {
			coral_session_close(s);
			s = NULL;
		}
		pthread_join(t, NULL);
		cr_expect_eq(f.rc, 0, "node 2's read: %s", f.err);
		cr_expect_eq(f.v, 5, "round %d: node 2 read %llu, not what was committed", round, (unsigned long long)f.v);
	}
}

/* Readers never wait for writers (issue 23): a block an open transaction of node 1 changed is
 * read as a CR copy at once, with what was committed before the change, by a session of
 * node 1 (from the block's consistent image in the SGA), of node 2 through its own lmsd (the
 * holder's lmsd answers from the image instead of "ask again") and again straight from node
 * 1's CR port; an S read still waits for the transaction's end. After the commit the CR
 * copies are the new image, and the image is given back. */
Test(lmsd, a_consistent_read_of_a_block_under_change_is_answered_at_once)
{
	uint32_t fid = start_three_with_file("lmi", "cri");
	put(1, fid, 5);
	struct coral_session *w, *r1, *r2;
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "writer", &w), 0, "%s", coral_session_error(w));
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "reader1", &r1), 0, "%s", coral_session_error(r1));
	cr_assert_eq(coral_session_open(cl.conf, 2, "test", "reader2", &r2), 0, "%s", coral_session_error(r2));
	json_t *c = ctl_json(1, "cache");
	cr_assert_not_null(c, "%s", res.out);
	int64_t made0 = jint(c, "cr_clones_made");
	json_decref(c);
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(w, fid, 0, CORAL_MODE_X, &b), 0, "%s", coral_session_error(w));
	uint64_t v = 99;
	cr_assert_eq(coral_block_modify(w, b, 0, &v, sizeof(v)), 0, "%s", coral_session_error(w));
	coral_block_release(w, b);
	/* each of these would wait for the commit (and fail at get_timeout_ms) if readers waited */
	uint64_t t0 = coral_now_mono_ns();
	cr_expect_eq(cr_read(r1, fid), 5, "node 1's CR read saw the uncommitted change");
	cr_expect_eq(cr_read(r2, fid), 5, "node 2's CR read (its own lmsd) saw the uncommitted change");
	cr_expect_eq(cr_read(r2, fid), 5, "node 2's CR read (node 1's CR port) saw the uncommitted change");
	uint64_t ms = (coral_now_mono_ns() - t0) / 1000000ull;
	struct coral_session_stats st;
	coral_session_stats(r2, &st);
	cr_expect_eq(st.cr_direct, 1, "the second read of node 2 came straight from node 1");
	struct far_read f = {.fid = fid, .rc = -1};
	pthread_t t = far_read_waits(&f, 500);
	c = ctl_json(1, "cache");
	cr_assert_not_null(c, "%s", res.out);
	cr_expect_eq(jint(c, "cr_clones_in_use"), 1, "%s", res.out);
	cr_expect_geq(jint(c, "cr_clone_reads"), 3, "%s", res.out);
	json_decref(c);
	cr_expect_eq(coral_commit(w, NULL), 0, "%s", coral_session_error(w));
	pthread_join(t, NULL);
	cr_expect_eq(f.rc, 0, "node 2's S read: %s", f.err);
	cr_expect_eq(f.v, 99);
	cr_expect_eq(cr_read(r2, fid), 99, "after the commit");
	cr_expect_eq(cr_read(r1, fid), 99, "after the commit");
	c = ctl_json(1, "cache");
	cr_assert_not_null(c, "%s", res.out);
	cr_expect_eq(jint(c, "cr_clones_in_use"), 0, "%s", res.out);
	cr_expect_eq(jint(c, "cr_clones_made"), made0 + 1, "one image, made at the first change: %s", res.out);
	json_decref(c);
	fprintf(stderr, "three CR reads of a block under change answered in %llu ms in all\n", (unsigned long long)ms);
	coral_session_close(w);
	coral_session_close(r1);
	coral_session_close(r2);
}

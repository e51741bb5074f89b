/* What the integration tests that link libcoral share on top of raft_harness.h: a session
 * that takes a block in X, changes its first 8 bytes and commits, the block left pinned; a
 * CR read of a block's first 8 bytes; the check of a coral-bank run in the background; the
 * power loss of some nodes, and the wait for the survivors' recovery of one; a child process
 * the test waits for until it is ready.
 * Header-only, like the others. */
#ifndef CORAL_TEST_CORAL_HARNESS_H
#define CORAL_TEST_CORAL_HARNESS_H

#include "coral.h"
#include "raft_harness.h"

#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static inline struct coral_block *x_change_commit(struct coral_session *s, uint32_t fid, uint64_t block,
						  uint64_t v)
{
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, block, CORAL_MODE_X, &b), 0, "%s", coral_session_error(s));
	cr_assert_eq(coral_block_modify(s, b, 0, &v, sizeof(v)), 0, "%s", coral_session_error(s));
	cr_assert_eq(coral_commit(s, NULL), 0, "%s", coral_session_error(s));
	return b;
}

/* A CR copy of block 0 of file fid: its first 8 bytes. */
static inline uint64_t cr_read(struct coral_session *s, uint32_t fid)
{
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, 0, CORAL_MODE_CR, &b), 0, "%s", coral_session_error(s));
	uint64_t v;
	memcpy(&v, coral_block_data(b), sizeof(v));
	coral_block_release(s, b);
	return v;
}

/* coral-bank with `args` (and --json) in the background, its report in DIR/bank.json and its
 * errors in DIR/bank.err (bank_checked reads them). */
/* The first 8 bytes of block `block` of file fid, read in mode by a session of node of the
 * cluster of conf. */
static inline uint64_t read_u64(const char *conf, int node, uint32_t fid, uint64_t block, int mode)
{
	struct coral_session *s;
	cr_assert_eq(coral_session_open(conf, node, "test", "test", &s), 0, "%s", coral_session_error(s));
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, block, mode, &b), 0, "%s", coral_session_error(s));
	uint64_t v;
	memcpy(&v, coral_block_data(b), sizeof(v));
	coral_block_release(s, b);
	coral_session_close(s);
	return v;
}

static inline pid_t bank_background(const char *args)
{
	pid_t bank = fork();
	cr_assert_geq(bank, 0);
	if (bank == 0) {
		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "exec %s/tools/coral-bank -c %s %s --json >%s/bank.json 2>%s/bank.err",
			 CORAL_BUILDDIR, cl.conf, args, cl.dir, cl.dir);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return bank;
}

/* A coral-bank run in the background (`--json >DIR/bank.json 2>DIR/bank.err`) ended: its
 * check passed, the money adds up, it did real work, and at most max_lost sessions gave up. */
static inline void bank_checked(pid_t bank, int max_lost)
{
	int st;
	cr_assert_eq(waitpid(bank, &st, 0), bank);
	run("cat %s/bank.err; cat %s/bank.json", cl.dir, cl.dir);
	fprintf(stderr, "%s\n", res.out);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "coral-bank failed its check: %s", res.out);
	run("cat %s/bank.json", cl.dir);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_expect(json_is_true(json_object_get(b, "ok")), "%s", res.out);
	cr_expect_eq(jint(b, "total_before"), jint(b, "total_after"));
	cr_expect_gt(jint(b, "transfers"), 100, "%s", res.out);
	cr_expect_leq(jint(b, "sessions_lost"), max_lost, "sessions gave up: %s", res.out);
	json_decref(b);
}

/* A child process that runs fn(arg, ready) and exits with what it returns; fn writes a byte
 * to `ready` once it has done what the parent waits for (the parent fails with `what` if it
 * never does). Returns the child's pid. */
static inline pid_t fork_ready(int (*fn)(void *arg, int ready), void *arg, const char *what)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		_exit(fn(arg, p[1]));
	}
	close(p[1]);
	char k;
	cr_assert_eq(read(p[0], &k, 1), 1, "%s", what);
	close(p[0]);
	return pid;
}

/* A power loss of nodes first..last: every supervisor and daemon (and child, if any) gets
 * SIGKILL; their zombies are reaped (this process is their subreaper: a zombie counts as a
 * running daemon). */
static inline void kill_nodes(pid_t child, int first, int last)
{
	if (child > 0)
		kill(child, SIGKILL);
	for (int n = first; n <= last; n++)
		run("kill -9 $(cat %s/node%d/coral-node.pid) $(cat %s/node%d/*.pid | sort -u) 2>/dev/null; true", cl.dir, n,
		    cl.dir, n);
	for (int i = 0; i < 50; i++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		usleep(20000);
	}
}

/* Waits until the survivors' smond say the recovery of `lost` is done. */
static inline void wait_recovered(int lost, int first, int last)
{
	for (int i = 0; i < 300; i++) {
		bool all = true;
		for (int n = first; n <= last; n++)
			all &= run("grep -q 'recovery of node %d: done' %s/node%d/node.log", lost, cl.dir, n)->code == 0;
		if (all)
			return;
		usleep(100000);
	}
	run("grep -h 'recovery of node\\|lost' %s/node1/node.log %s/node2/node.log | tail -20", cl.dir, cl.dir);
	cr_assert_fail("the recovery of node %d did not finish: %s", lost, res.out);
}

#endif

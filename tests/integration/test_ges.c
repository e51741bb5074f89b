/* Global enqueues on three real nodes, through libcoral as a database engine takes them: a
 * lock waits on one node for an incompatible holder on another and is granted once it goes;
 * no-queue and timeouts refuse; the value block goes down with a PW/EX holder and up with a
 * grant; a conversion deadlock is refused to the later conversion, which keeps its mode; a
 * session whose process dies has its locks released, even when their master is lost while
 * they are let go; locks whose master is lost are put back at the new one. coralctl ges
 * resource and ges stats show it. */
#include "harness.h"
#include "coral_harness.h"
#include "ctl.h"
#include "ges_own.h"
#include "sga.h"

#include <criterion/criterion.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

TestSuite(ges, .init = NULL, .fini = cl_teardown, .timeout = 240);

/* Waits until no lmdd of nodes first..last holds its grants for a rebuild. */
static void wait_rebuilt(int first, int last)
{
	for (int i = 0; i < 300; i++) {
		bool all = true;
		for (int n = first; n <= last && all; n++) {
			json_t *j = ctl_json(n, "ges stats");
			all = j && !json_is_true(json_object_get(j, "held"));
			json_decref(j);
		}
		if (all)
			return;
		usleep(50000);
	}
	cr_assert_fail("a rebuild did not end");
}

/* Three nodes with the full map, each lmdd's rebuild for it over: the tests that start here
 * are of the steady state (locks_asked_as_the_cluster_starts_are_granted is of the start) */
static void start_three(void)
{
	cl_prepare("ges", NULL);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	cr_assert_gt(wait_full_map(3), 0, "the map of 3 nodes did not reach every node");
	wait_rebuilt(1, 3);
}

static struct coral_session *open_on(int node)
{
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, node, "test", "test_ges", &s), 0, "%s", coral_session_error(s));
	return s;
}

/* A child process whose session on `node` takes `name` in `mode` (flags, timeout) and, if
 * granted, holds it until killed or hold_ms passes; its exit status is 0 granted, 1 held
 * elsewhere (no-queue), 2 timed out, 3 deadlock, 9 anything else. The pipe says when it
 * asked. */
struct lock_args {
	int node;
	const char *name;
	int mode;
	unsigned flags;
	int timeout_ms, hold_ms;
};

static int lock_main(void *arg, int ready)
{
	const struct lock_args *a = arg;
	struct coral_session *s;
	if (coral_session_open(cl.conf, a->node, "test", "ges-child", &s) != 0 || write(ready, "k", 1) != 1)
		return 9;
	uint64_t lk;
	int rc = coral_lock(s, a->name, strlen(a->name), a->mode, a->flags, a->timeout_ms, &lk, NULL, NULL);
	if (rc == 0 && a->hold_ms > 0)
		usleep((useconds_t)a->hold_ms * 1000);
	return rc == 0 ? 0 : rc == CORAL_ERR_HELD ? 1 : rc == CORAL_ERR_TIMEDOUT ? 2 : rc == CORAL_ERR_DEADLOCK ? 3 : 9;
}

static pid_t lock_child(int node, const char *name, int mode, unsigned flags, int timeout_ms, int hold_ms)
{
	struct lock_args a = {node, name, mode, flags, timeout_ms, hold_ms};
	return fork_ready(lock_main, &a, "the child's session did not open");
}

/* A child's session on node 1 takes `first` in first_mode, says so, then asks for EX on
 * `second` (NULL: converts `first` to EX), waiting up to 30 s: its exit status as
 * lock_child's. */
struct two_step {
	const char *first;
	int first_mode;
	const char *second;
};

static int two_step_main(void *arg, int ready)
{
	const struct two_step *t = arg;
	struct coral_session *s;
	uint64_t l1, l2;
	if (coral_session_open(cl.conf, 1, "test", "ges-child", &s) != 0 ||
	    coral_lock(s, t->first, strlen(t->first), t->first_mode, 0, 0, &l1, NULL, NULL) != 0 || write(ready, "k", 1) != 1)
		return 9;
	int rc = t->second ? coral_lock(s, t->second, strlen(t->second), CORAL_LOCK_EX, 0, 30000, &l2, NULL, NULL)
			   : coral_lock_convert(s, l1, CORAL_LOCK_EX, 0, 30000, NULL, NULL, NULL);
	return rc == 0 ? 0 : rc == CORAL_ERR_HELD ? 1 : rc == CORAL_ERR_TIMEDOUT ? 2 : rc == CORAL_ERR_DEADLOCK ? 3 : 9;
}

/* The child's exit status once it ends within ms (-1: still running). */
static int child_status(pid_t pid, int ms)
{
	int st;
	for (int i = 0; i <= ms / 10; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
		usleep(10000);
	}
	return -1;
}

Test(ges, a_lock_waits_for_an_incompatible_holder_on_another_node_then_is_granted)
{
	start_three();
	struct coral_session *a = open_on(1);
	uint64_t lk;
	cr_assert_eq(coral_lock(a, "row-7", 5, CORAL_LOCK_EX, 0, 0, &lk, NULL, NULL), 0, "%s", coral_session_error(a));
	pid_t b = lock_child(2, "row-7", CORAL_LOCK_PR, 0, 20000, 0);
	cr_expect_eq(child_status(b, 500), -1, "node 2's PR was granted beside node 1's EX");
	cr_expect_eq(run("%s -c %s -n 1 ges resource row-7", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s", res.out);
	cr_expect(strstr(res.out, "waiting") != NULL, "coralctl does not show the waiting request: %s", res.out);
	/* each node's own view: node 1's session holds EX, node 2's asks for PR */
	cr_expect_eq(run("%s -c %s -n 1 ges locks", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "on row-7") && strstr(res.out, ": EX"), "ges locks on node 1: %s", res.out);
	cr_expect_eq(run("%s -c %s -n 2 --json ges locks --waiting", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	json_t *w = json_loads(res.out, 0, NULL);
	cr_expect_not_null(w, "%s", res.out);
	json_t *wl = w ? json_array_get(json_object_get(w, "locks"), 0) : NULL;
	cr_expect(wl && strcmp(jstr(wl, "op"), "lock") == 0 && strcmp(jstr(wl, "want"), "PR") == 0 &&
		  strcmp(jstr(wl, "resource"), "row-7") == 0, "ges locks --waiting on node 2: %s", res.out);
	json_decref(w);
	cr_expect_eq(run("%s -c %s -n 3 ges locks --waiting", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "0 locks") != NULL, "node 3's sessions hold nothing: %s", res.out);
	/* no-queue is refused at once; a timeout refuses after it */
	pid_t c = lock_child(3, "row-7", CORAL_LOCK_CR, CORAL_LOCK_NOQUEUE, 0, 0);
	cr_expect_eq(child_status(c, 5000), 1, "a no-queue request was not refused");
	pid_t d = lock_child(3, "row-7", CORAL_LOCK_EX, 0, 300, 0);
	cr_expect_eq(child_status(d, 5000), 2, "a request past its timeout was not refused");
	cr_assert_eq(coral_unlock(a, lk, NULL), 0, "%s", coral_session_error(a));
	cr_expect_eq(child_status(b, 5000), 0, "node 2's PR was not granted once node 1's EX went");
	cr_expect_eq(coral_unlock(a, lk, NULL), CORAL_ERR_NOENT, "a lock unlocked twice");
	coral_session_close(a);
	cr_expect_eq(run("%s -c %s -n 1 --json ges stats", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s\n", res.out);
}

Test(ges, the_value_block_goes_down_with_the_writer_and_up_with_the_grant)
{
	start_three();
	struct coral_session *a = open_on(1), *b = open_on(3);
	uint64_t la, lb;
	char v[CORAL_LVB_LEN] = "sequence 1000", got[CORAL_LVB_LEN];
	int valid = 0;
	cr_assert_eq(coral_lock(a, "seq-orders", 10, CORAL_LOCK_EX, CORAL_LOCK_VALBLK, 0, &la, got, &valid), 0, "%s",
		     coral_session_error(a));
	cr_expect(valid, "a fresh value block is not valid");
	cr_assert_eq(coral_lock_convert(a, la, CORAL_LOCK_NL, CORAL_LOCK_VALBLK, 0, v, NULL, NULL), 0, "%s",
		     coral_session_error(a));
	cr_assert_eq(coral_lock(b, "seq-orders", 10, CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 0, &lb, got, &valid), 0, "%s",
		     coral_session_error(b));
	cr_expect(valid && strcmp(got, "sequence 1000") == 0, "node 3 read '%.32s' (valid %d)", got, valid);
	cr_expect_eq(coral_unlock(b, lb, NULL), 0);
	cr_expect_eq(coral_unlock(a, la, NULL), 0);
	coral_session_close(a);
	coral_session_close(b);
}

Test(ges, a_conversion_deadlock_is_refused_to_the_later_one_which_keeps_its_mode)
{
	start_three();
	struct coral_session *b = open_on(2);
	uint64_t lb;
	cr_assert_eq(coral_lock(b, "tab-9", 5, CORAL_LOCK_PR, 0, 0, &lb, NULL, NULL), 0, "%s", coral_session_error(b));
	/* node 1 takes PR, then asks for EX in a child: it waits for node 2's PR */
	pid_t a = fork_ready(two_step_main, &(struct two_step){"tab-9", CORAL_LOCK_PR, NULL},
			     "node 1's PR was not granted");
	usleep(300000);  /* its conversion is queued */
	cr_expect_eq(coral_lock_convert(b, lb, CORAL_LOCK_EX, 0, 20000, NULL, NULL, NULL), CORAL_ERR_DEADLOCK, "%s",
		     coral_session_error(b));
	/* node 2 still holds PR: node 1 waits until it lets it go */
	cr_expect_eq(child_status(a, 300), -1, "node 1's EX was granted beside node 2's PR");
	cr_expect_eq(coral_unlock(b, lb, NULL), 0, "%s", coral_session_error(b));
	cr_expect_eq(child_status(a, 5000), 0, "node 1's conversion was not granted once node 2's PR went");
	coral_session_close(b);
}

Test(ges, a_dead_sessions_locks_are_released)
{
	start_three();
	pid_t holder = lock_child(3, "row-1", CORAL_LOCK_EX, 0, 0, 600000);
	usleep(500000);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	struct coral_session *a = open_on(1);
	uint64_t lk;
	int rc = coral_lock(a, "row-1", 5, CORAL_LOCK_EX, 0, 15000, &lk, NULL, NULL);
	cr_expect_eq(rc, 0, "the dead session's EX was not released: %s", coral_session_error(a));
	coral_session_close(a);
}

/* The name of a resource node `want` masters (asked of node 1's lmdd): `prefix` and a number. */
static void name_with_master(int want, const char *prefix, char *name, size_t n)
{
	for (int i = 0; i < 200; i++) {
		snprintf(name, n, "%s%d", prefix, i);
		char cmd[96];
		snprintf(cmd, sizeof(cmd), "ges resource %s", name);
		json_t *j = ctl_json(1, cmd);
		cr_assert_not_null(j, "%s", res.out);
		int master = (int)jint(j, "master");
		json_decref(j);
		if (master == want)
			return;
	}
	cr_assert_fail("no resource of 200 is mastered by node %d", want);
}

static void name_mastered_by(int want, char *name, size_t n) { name_with_master(want, "row-", name, n); }


/* Node 3 masters a lock node 1 holds in EX; node 3 is lost (kill -9 of everything): the
 * new master gets the lock back from node 1 and grants nothing beside it (no-queue refused,
 * a wait times out) until node 1 lets it go; node 3 comes back, the map moves again, and
 * the lock is still held across that second rebuild. */
/* An unlock of a remote master's lock is answered as it leaves the node (lmdd(8)): nothing is
 * lost by it. The same session takes the lock again at once, many times (it never waits on
 * its own lock on the way out); a session on another node waiting for it is granted with the
 * value block the unlock wrote; a session of the master's node then reads it too; and
 * coralctl counts the unlocks so answered. */
Test(ges, an_unlock_answered_as_it_leaves_loses_nothing)
{
	start_three();
	char name[64];
	name_mastered_by(3, name, sizeof(name));
	struct coral_session *a = open_on(1), *c = open_on(3);
	uint64_t la, lc;
	char v[CORAL_LVB_LEN], got[CORAL_LVB_LEN];
	int valid = 0;
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_EX, CORAL_LOCK_VALBLK | CORAL_LOCK_NOQUEUE, 0, &la,
					got, &valid), 0, "round %d: %s", i, coral_session_error(a));
		if (i > 0)
			cr_assert(valid && atoi(got) == i - 1, "round %d read '%.32s' (valid %d)", i, got, valid);
		memset(v, 0, sizeof(v));
		snprintf(v, sizeof(v), "%d", i);
		cr_assert_eq(coral_unlock(a, la, v), 0, "%s", coral_session_error(a));
	}
	/* node 2 waits for node 1's lock; node 1 lets it go with a value */
	cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_EX, CORAL_LOCK_VALBLK, 0, &la, got, &valid), 0, "%s",
		     coral_session_error(a));
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct coral_session *s2;
		uint64_t l2;
		char g2[CORAL_LVB_LEN] = "";
		int v2 = 0;
		if (coral_session_open(cl.conf, 2, "test", "ges-child", &s2) != 0 || write(p[1], "k", 1) != 1)
			_exit(9);
		int rc = coral_lock(s2, name, strlen(name), CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 20000, &l2, g2, &v2);
		_exit(rc != 0 ? 2 : v2 && strcmp(g2, "from node 1") == 0 ? 0 : 1);
	}
	char k;
	cr_assert_eq(read(p[0], &k, 1), 1);
	usleep(300000);  /* node 2's request waits at the master */
	cr_expect_eq(child_status(pid, 0), -1, "node 2 was granted while node 1 held EX");
	memset(v, 0, sizeof(v));
	strcpy(v, "from node 1");
	cr_assert_eq(coral_unlock(a, la, v), 0, "%s", coral_session_error(a));
	cr_expect_eq(child_status(pid, 10000), 0, "node 2's wait did not end granted with node 1's value block");
	/* the master's node reads it too */
	cr_assert_eq(coral_lock(c, name, strlen(name), CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 10000, &lc, got, &valid), 0,
		     "%s", coral_session_error(c));
	cr_expect(valid && strcmp(got, "from node 1") == 0, "node 3 read '%.32s' (valid %d)", got, valid);
	cr_expect_eq(coral_unlock(c, lc, NULL), 0);
	json_t *j = ctl_json(1, "ges stats");
	cr_assert_not_null(j);
	cr_expect_geq(jint(j, "unlocks_early"), 201, "unlocks answered as they left: %lld", (long long)jint(j, "unlocks_early"));
	json_decref(j);
	close(p[0]);
	close(p[1]);
	coral_session_close(a);
	coral_session_close(c);
}

Test(ges, a_lock_whose_master_is_lost_is_put_back_at_the_new_master)
{
	start_three();
	char name[32];
	name_mastered_by(3, name, sizeof(name));
	struct coral_session *a = open_on(1);
	uint64_t lk;
	cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_EX, 0, 0, &lk, NULL, NULL), 0, "%s", coral_session_error(a));
	kill_nodes(0, 3, 3);
	wait_recovered(3, 1, 2);
	wait_rebuilt(1, 2);
	pid_t c = lock_child(2, name, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0);
	cr_expect_eq(child_status(c, 5000), 1, "node 1's EX was forgotten with its lost master: granted again");
	c = lock_child(2, name, CORAL_LOCK_PR, 0, 500, 0);
	cr_expect_eq(child_status(c, 5000), 2, "node 1's EX was forgotten with its lost master: PR granted");
	cr_expect_eq(run("%s -c %s -n 1 ges resource %s", CORALCTL, cl.conf, name)->code, 0, "%s", res.out);
	fprintf(stderr, "%s", res.out);
	/* node 3 again: the map moves its buckets back */
	cr_assert_eq(run("%s -c %s start 3", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_gt(wait_full_map(3), 0, "node 3 did not join the map again");
	wait_rebuilt(1, 3);
	c = lock_child(3, name, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0);
	cr_expect_eq(child_status(c, 5000), 1, "node 1's EX was forgotten when the map moved back");
	pid_t w = lock_child(2, name, CORAL_LOCK_EX, 0, 20000, 0);
	cr_expect_eq(child_status(w, 300), -1, "granted beside node 1's EX");
	cr_expect_eq(coral_unlock(a, lk, NULL), 0, "%s", coral_session_error(a));
	cr_expect_eq(child_status(w, 5000), 0, "node 2 was not granted the lock once node 1 let it go");
	coral_session_close(a);
	cr_expect_eq(run("%s -c %s -n 1 ges stats", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s", res.out);
}

/* How many of node n's lock records are on `name` (dying: only those being let go). */
static int own_records(int n, const char *name, bool dying)
{
	json_t *j = ctl_json(n, "ges locks");
	if (j == NULL)
		return -1;
	int c = 0;
	json_t *l;
	size_t i;
	json_array_foreach(json_object_get(j, "locks"), i, l)
	{
		if (strcmp(jstr(l, "resource"), name) == 0 && (!dying || json_is_true(json_object_get(l, "dying"))))
			c++;
	}
	json_decref(j);
	return c;
}

/* A lock being let go (its session killed) while its master is lost: node 3's lmdd is
 * stopped, so the unlock node 1 sends for the dead session is never answered there; then
 * node 3 is killed. Node 1 puts the lock back at the new master and lets it go there:
 * nothing of it stays on node 1, and node 2 gets it. */
Test(ges, a_lock_let_go_while_its_master_is_lost_is_let_go_at_the_new_master)
{
	start_three();
	char name[32];
	name_mastered_by(3, name, sizeof(name));
	pid_t holder = lock_child(1, name, CORAL_LOCK_EX, 0, 0, 600000);
	int held = 0;
	for (int i = 0; i < 100 && (held = own_records(1, name, false)) < 1; i++)
		usleep(50000);
	cr_assert_eq(held, 1, "the child's lock is not on node 1: %s", res.out);
	usleep(300000);
	pid_t m3 = daemon_pid(3, "lmdd");
	cr_assert_gt(m3, 0);
	kill(m3, SIGSTOP);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	int dying = 0;
	for (int i = 0; i < 100 && (dying = own_records(1, name, true)) < 1; i++)
		usleep(50000);
	cr_assert_eq(dying, 1, "node 1 is not letting the dead session's lock go: %s", res.out);
	kill_nodes(0, 3, 3);
	wait_recovered(3, 1, 2);
	wait_rebuilt(1, 2);
	int left = -1;
	for (int i = 0; i < 100 && (left = own_records(1, name, false)) != 0; i++)
		usleep(100000);
	cr_expect_eq(left, 0, "node 1 still keeps the lock let go: %s", res.out);
	pid_t c = lock_child(2, name, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0);
	cr_expect_eq(child_status(c, 5000), 0, "the lock let go is still held somewhere");
}

/* Kills node n's lmdd and waits for the supervisor's new one. */
static void restart_lmdd(int n)
{
	pid_t old = daemon_pid(n, "lmdd");
	cr_assert_gt(old, 0);
	kill(old, SIGKILL);
	for (int i = 0; i < 100; i++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		pid_t now = daemon_pid(n, "lmdd");
		if (now > 0 && now != old)
			return;
		usleep(100000);
	}
	cr_assert_fail("node %d's lmdd was not restarted", n);
}

/* lmdd restarts, as master and as requester: node 1's session holds EX on a resource node 2
 * masters and one node 1 masters; node 2's lmdd is killed (its queues are gone: node 1 puts
 * its lock back there), then node 1's (its sessions' locks are in the SGA: it puts them all
 * back); nobody else is granted either lock meanwhile, and node 1's session unlocks both by
 * the ids it had. */
Test(ges, locks_outlive_a_restart_of_lmdd_as_master_and_as_requester)
{
	start_three();
	char n1[32], n2[32];
	name_mastered_by(2, n2, sizeof(n2));
	name_mastered_by(1, n1, sizeof(n1));
	struct coral_session *a = open_on(1);
	uint64_t l1, l2;
	cr_assert_eq(coral_lock(a, n1, strlen(n1), CORAL_LOCK_EX, 0, 0, &l1, NULL, NULL), 0, "%s", coral_session_error(a));
	cr_assert_eq(coral_lock(a, n2, strlen(n2), CORAL_LOCK_EX, 0, 0, &l2, NULL, NULL), 0, "%s", coral_session_error(a));
	restart_lmdd(2);
	wait_rebuilt(1, 3);
	cr_expect_eq(child_status(lock_child(3, n2, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0), 5000), 1,
		     "node 2's lmdd restarted and granted %s again", n2);
	restart_lmdd(1);
	wait_rebuilt(1, 3);
	cr_expect_eq(child_status(lock_child(3, n1, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0), 5000), 1,
		     "node 1's lmdd restarted and %s was granted again", n1);
	cr_expect_eq(child_status(lock_child(3, n2, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0), 5000), 1,
		     "node 1's lmdd restarted and %s was granted again", n2);
	cr_expect_eq(coral_unlock(a, l1, NULL), 0, "%s", coral_session_error(a));
	cr_expect_eq(coral_unlock(a, l2, NULL), 0, "%s", coral_session_error(a));
	cr_expect_eq(child_status(lock_child(3, n2, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0), 5000), 0,
		     "%s not granted once unlocked", n2);
	coral_session_close(a);
	run("grep -h 'lmdd restarted\\|an lmdd served before' %s/node*/node.log", cl.dir);
	fprintf(stderr, "%s", res.out);
}

/* Three nodes started and rebuilt, a resource name node 1 masters, a session on `node`. */
static struct coral_session *rebuilt_with_name(char *name, size_t n, int node)
{
	start_three();
	wait_rebuilt(1, 3);
	name_mastered_by(1, name, n);
	return open_on(node);
}

/* A child whose session on `node` takes `name` in NL, says so, converts it to EX (waiting up
 * to 30 s), holds it hold_ms and unlocks it: exit 0 when both went well, 8 when the unlock
 * failed, else as lock_child's. */
static int64_t ges_stat(int node, const char *field);

struct convert_args {
	int node;
	const char *name;
	int hold_ms;
};

static int convert_main(void *arg, int ready)
{
	const struct convert_args *a = arg;
	struct coral_session *s;
	uint64_t lk;
	if (coral_session_open(cl.conf, a->node, "test", "ges-child", &s) != 0 ||
	    coral_lock(s, a->name, strlen(a->name), CORAL_LOCK_NL, 0, 0, &lk, NULL, NULL) != 0 || write(ready, "k", 1) != 1)
		return 9;
	int rc = coral_lock_convert(s, lk, CORAL_LOCK_EX, 0, 30000, NULL, NULL, NULL);
	if (rc != 0) {
		fprintf(stderr, "convert: %s\n", coral_session_error(s));
		return rc == CORAL_ERR_HELD ? 1 : rc == CORAL_ERR_TIMEDOUT ? 2 : rc == CORAL_ERR_DEADLOCK ? 3 : 9;
	}
	usleep((useconds_t)a->hold_ms * 1000);
	if (coral_unlock(s, lk, NULL) != 0) {
		fprintf(stderr, "unlock: %s\n", coral_session_error(s));
		return 8;
	}
	coral_session_close(s);
	return 0;
}

/* A conversion waiting when its node's lmdd is killed -9: on node 2 (the master, node 1,
 * keeps it queued), then on node 1 (the master's queues are gone with it). The restarted
 * lmdd settles it (cancelled where it waited, the lock kept in NL), libcoral asks again, and
 * the call ends as if nothing happened: granted EX once node 3's holder lets go, held (node 3
 * cannot have it meanwhile), unlocked by the id it had. Before, the whole lock was let go
 * (the session believed it held NL, then found no such lock). */
Test(ges, a_conversion_waiting_through_an_lmdd_restart_is_granted_all_the_same)
{
	char name[32];
	struct coral_session *a = rebuilt_with_name(name, sizeof(name), 3);
	for (int requester = 2; requester >= 1; requester--) {
		uint64_t l;
		cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_EX, 0, 0, &l, NULL, NULL), 0, "%s",
			     coral_session_error(a));
		struct convert_args c = {requester, name, 3000};
		pid_t pid = fork_ready(convert_main, &c, "the child's session did not open");
		usleep(500000);  /* (its conversion waits at node 1) */
		restart_lmdd(requester);
		wait_rebuilt(1, 3);
		cr_expect_eq(child_status(pid, 1000), -1, "node %d's conversion ended with its lmdd's restart", requester);
		cr_expect_eq(coral_unlock(a, l, NULL), 0, "%s", coral_session_error(a));
		usleep(1000000);  /* granted to the child, which holds it 3 s */
		cr_expect_eq(child_status(lock_child(3, name, CORAL_LOCK_PR, CORAL_LOCK_NOQUEUE, 0, 0), 5000), 1,
			     "node %d's converted lock is not held after its lmdd's restart", requester);
		cr_expect_eq(child_status(pid, 15000), 0, "node %d's conversion or unlock failed", requester);
		cr_expect_eq(child_status(lock_child(3, name, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0), 5000), 0,
			     "%s not granted once unlocked", name);
		cr_expect_geq(ges_stat(requester, "orphans_settled"), 1, "node %d settled no conversion", requester);
	}
	coral_session_close(a);
}

/* Two sessions on two nodes each hold a row and ask for the other's: a cycle through two
 * masters. The coordinator finds it within a fraction of a second and refuses the newest
 * wait (CORAL_ERR_DEADLOCK: that session keeps its row); once it lets its row go, the other
 * is granted. coralctl ges deadlocks shows the cycle and the victim. */
/* Node 1's session (a child) holds a resource mastered on node 2 and waits for one node 2's
 * session holds (mastered on node 3); node 2's session then asks for the first: a cycle
 * across two nodes and two masters. With equal priorities the newest wait (node 2's) is
 * refused; with node 2's session at priority 10, node 1's wait is. */
static void deadlock_across_nodes(int b_priority)
{
	start_three();
	char ra[32], rb[32];
	name_mastered_by(2, ra, sizeof(ra));
	name_mastered_by(3, rb, sizeof(rb));
	struct coral_session *b = open_on(2);
	cr_assert_eq(coral_session_set_priority(b, 101), CORAL_ERR_INVAL);
	cr_assert_eq(coral_session_set_priority(b, b_priority), 0, "%s", coral_session_error(b));
	uint64_t lb;
	cr_assert_eq(coral_lock(b, rb, strlen(rb), CORAL_LOCK_EX, 0, 0, &lb, NULL, NULL), 0, "%s", coral_session_error(b));
	pid_t a = fork_ready(two_step_main, &(struct two_step){ra, CORAL_LOCK_EX, rb},
			     "node 1's session did not take its first lock");
	usleep(300000);  /* its wait for rb is queued and reported */
	uint64_t t0 = coral_now_mono_ns(), la;
	int rc = coral_lock(b, ra, strlen(ra), CORAL_LOCK_EX, 0, 30000, &la, NULL, NULL);
	uint64_t ms = (coral_now_mono_ns() - t0) / 1000000ull;
	if (b_priority <= 0) {
		fprintf(stderr, "the deadlock was broken %llu ms after it closed\n", (unsigned long long)ms);
		cr_expect_eq(rc, CORAL_ERR_DEADLOCK, "the newest wait was not refused as a deadlock: %s",
			     coral_session_error(b));
		cr_expect_lt(ms, 2000, "the deadlock took %llu ms to break", (unsigned long long)ms);
		cr_expect_eq(child_status(a, 200), -1, "node 1's wait ended before node 2 let its row go");
		cr_expect_eq(coral_unlock(b, lb, NULL), 0, "%s", coral_session_error(b));
		cr_expect_eq(child_status(a, 5000), 0, "node 1's wait was not granted once node 2 let its row go");
	} else {
		/* node 1's wait was the victim: its process ended, its lock went, node 2's was granted */
		cr_expect_eq(rc, 0, "node 2's session of priority %d was not granted: %s", b_priority, coral_session_error(b));
		cr_expect_eq(child_status(a, 5000), 3, "node 1's wait (priority 0) was not the victim");
		cr_expect_lt(ms, 2000, "the deadlock took %llu ms to break", (unsigned long long)ms);
		cr_expect_eq(coral_unlock(b, la, NULL), 0, "%s", coral_session_error(b));
		cr_expect_eq(coral_unlock(b, lb, NULL), 0, "%s", coral_session_error(b));
	}
	coral_session_close(b);
	cr_expect_eq(run("%s -c %s -n 3 ges deadlocks", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s", res.out);
	cr_expect(strstr(res.out, "VICTIM") != NULL, "coralctl ges deadlocks does not show it: %s", res.out);
}

Test(ges, a_deadlock_across_nodes_is_found_and_its_newest_wait_refused) { deadlock_across_nodes(0); }
Test(ges, a_session_of_higher_priority_is_not_the_victim) { deadlock_across_nodes(10); }

/* Clients idle for a second are closed (a waiting lock call is not idle). */
static char *idle_1s(char *text) { return replace_all(text, "client_idle_ms = 60000", "client_idle_ms = 1000"); }

/* Locks asked the moment the cluster's map is whole, while each lmdd may still be putting
 * back what it has for it: each is answered (held until the rebuild ends, then granted),
 * none waits out its timeout. Then a lock that waits longer than [lmdd] client_idle_ms for
 * its holder: its call is not taken for an idle client and closed. */
Test(ges, locks_asked_as_the_cluster_starts_are_granted)
{
	cl_prepare("ges", idle_1s);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	cr_assert_gt(wait_full_map(3), 0, "the map of 3 nodes did not reach every node");
	enum { PER_NODE = 4 };
	pid_t c[3 * PER_NODE];
	char names[3 * PER_NODE][16];
	for (int i = 0; i < 3 * PER_NODE; i++) {
		snprintf(names[i], sizeof(names[i]), "start-%d", i);
		c[i] = lock_child(1 + i % 3, names[i], CORAL_LOCK_EX, 0, 20000, 0);
	}
	for (int i = 0; i < 3 * PER_NODE; i++)
		cr_expect_eq(child_status(c[i], 30000), 0, "the lock on %s asked on node %d as the cluster started",
			     names[i], 1 + i % 3);
	for (int n = 1; n <= 3; n++) {
		json_t *j = ctl_json(n, "ges stats");
		fprintf(stderr, "node %d: %lld messages owed to a peer whose connection was not up yet\n", n,
			j ? (long long)jint(j, "owed_total") : -1);
		json_decref(j);
	}
	pid_t holder = lock_child(1, "idle-wait", CORAL_LOCK_EX, 0, 0, 3500);
	usleep(200000);
	pid_t waiter = lock_child(2, "idle-wait", CORAL_LOCK_EX, 0, 20000, 0);
	cr_expect_eq(child_status(waiter, 15000), 0, "a lock call that waited 3 s with client_idle_ms at 1 s");
	cr_expect_eq(child_status(holder, 5000), 0);
}

/* A node that has joined the cluster but is not on grdd's ring yet (its buckets still to come:
 * here the grdds of nodes 1 and 2, which would move them, are stopped) is granted no lock:
 * evicted then, it would be no loss in the map and nothing would ever release what it held.
 * Its request is refused and asked again until it is on the ring (or its timeout). Evicted
 * off the ring (its lmsd killed), it has nothing to recover and joins again at once. */
Test(ges, a_node_not_yet_on_the_ring_is_granted_no_lock)
{
	cl_prepare("ges", NULL);
	for (int n = 1; n <= 2; n++)
		cr_assert_eq(run("%s -c %s start %d", CORAL_NODE, cl.conf, n)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0x6), 1);
	cr_assert_gt(wait_full_map(2), 0, "the map of nodes 1 and 2");
	pid_t g1 = daemon_pid(1, "grdd"), g2 = daemon_pid(2, "grdd");
	cr_assert(g1 > 0 && g2 > 0);
	kill(g1, SIGSTOP);
	kill(g2, SIGSTOP);
	cr_assert_eq(run("%s -c %s start 3", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	bool member = false;
	for (int i = 0; i < 100 && !member; i++) {
		json_t *st = ctl_json(3, "raft status");
		member = st && !json_is_true(json_object_get(st, "fenced"));
		json_decref(st);
		if (!member)
			usleep(50000);
	}
	cr_expect(member, "node 3 did not join the cluster");
	struct coral_session *s = open_on(3);
	uint64_t lk = 0;
	int rc = coral_lock(s, "joining-1", 9, CORAL_LOCK_EX, 0, 1500, &lk, NULL, NULL);
	cr_expect_eq(rc, CORAL_ERR_TIMEDOUT, "a lock granted to a node not on the ring (%d: %s)", rc,
		     rc ? coral_session_error(s) : "granted");
	json_t *j = ctl_json(3, "ges stats");
	cr_assert_not_null(j, "%s", res.out);
	cr_expect_gt(jint(j, "joining_waits"), 0, "%s", res.out);
	json_decref(j);
	int64_t refused = 0;
	for (int n = 1; n <= 2; n++) {
		j = ctl_json(n, "ges stats");
		refused += j ? jint(j, "joining_refused") : 0;
		json_decref(j);
	}
	cr_expect_gt(refused, 0, "no master refused node 3");
	/* node 3's lmsd killed off the ring: the node leaves and is evicted, with nothing to
	 * recover (it held no block and no lock), so it joins again at once rather than after
	 * [recovery] rejoin_wait_ms (8 s) with an error */
	pid_t lm = daemon_pid(3, "lmsd");
	cr_assert_gt(lm, 0);
	kill(lm, SIGKILL);
	bool left = false, back = false;
	uint64_t t0 = coral_now_mono_ns();
	for (int i = 0; i < 200 && !back; i++) {
		usleep(50000);
		left = left || run("grep -q 'evicted before it came on\\|never came on grdd' %s/node3/node.log", cl.dir)->code == 0;
		if (!left)
			continue;
		json_t *st = ctl_json(3, "raft status");
		back = st && !json_is_true(json_object_get(st, "fenced"));
		json_decref(st);
	}
	uint64_t ms = (coral_now_mono_ns() - t0) / 1000000ull;
	fprintf(stderr, "node 3, evicted off the ring, a member again %llu ms after its lmsd was killed\n",
		(unsigned long long)ms);
	cr_expect(left && back, "node 3 did not leave and join again (left %d)", left);
	cr_expect_lt(ms, 6000, "node 3 waited for a recovery of nothing");
	cr_expect_neq(run("grep -q 'joining anyway' %s/node3/node.log", cl.dir)->code, 0, "%s", res.out);
	coral_session_close(s);
	s = open_on(3);
	kill(g1, SIGCONT);
	kill(g2, SIGCONT);
	cr_assert_gt(wait_full_map(3), 0, "node 3 did not come on the ring");
	rc = coral_lock(s, "joining-1", 9, CORAL_LOCK_EX, 0, 10000, &lk, NULL, NULL);
	cr_expect_eq(rc, 0, "once on the ring: %s", coral_session_error(s));
	if (rc == 0)
		cr_expect_eq(coral_unlock(s, lk, NULL), 0, "%s", coral_session_error(s));
	coral_session_close(s);
}

/* coral-bank with row locks on three nodes: EX on both accounts in random order, on few
 * accounts, so that sessions deadlock often; every deadlock is broken (no session waits out
 * its timeout), the victims try again, and the bank's check passes. */
Test(ges, the_bank_with_row_locks_deadlocks_and_still_adds_up)
{
	start_three();
	cr_expect_eq(run("%s/tools/coral-bank -c %s --accounts 12 --per-block 8 --sessions 2 --readers 0 --seconds 5 "
			 "--row-locks --json", CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s\n", res.out);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_expect(json_is_true(json_object_get(b, "ok")), "%s", res.out);
	cr_expect_gt(jint(b, "transfers"), 100, "%s", res.out);
	cr_expect_gt(jint(b, "deadlocks"), 0, "no deadlock in 5 s of row locks taken in random order: %s", res.out);
	cr_expect_eq(jint(b, "errors"), 0, "%s", res.out);
	/* a session that holds no row lock is in no cycle: refusing it would be a false deadlock */
	cr_expect_eq(jint(b, "false_deadlocks"), 0, "victims that were in no cycle: %s", res.out);
	json_decref(b);
	run("%s -c %s -n 1 ges stats; %s -c %s -n 1 ges deadlocks | head -8", CORALCTL, cl.conf, CORALCTL, cl.conf);
	fprintf(stderr, "%s", res.out);
	/* the graph, as the coordinator has it, asked of another node */
	cr_expect_eq(run("%s -c %s -n 3 --json ges graph", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	json_t *g = json_loads(res.out, 0, NULL);
	cr_expect_not_null(g, "ges graph --json: %s", res.out);
	if (g) {
		cr_expect_eq(jint(g, "coordinator"), 1, "%s", res.out);
		cr_expect(json_is_array(json_object_get(g, "edges")), "%s", res.out);
		json_decref(g);
	}
	cr_expect_eq(run("%s -c %s -n 2 ges graph --dot", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strncmp(res.out, "digraph", 7) == 0, "ges graph --dot: %s", res.out);
}

/* The bank with row locks on three nodes, node 3 killed (kill -9 of everything) in the
 * middle: the row locks its sessions held are held until the survivors have recovered its
 * thread, then released; the survivors' sessions wait through it, deadlocks go on being
 * broken, and the money adds up. A second run on the survivors passes too. */
Test(ges, the_bank_with_row_locks_adds_up_through_a_node_s_loss)
{
	start_three();
	pid_t bank = bank_background("--accounts 24 --per-block 8 --sessions 2 --readers 0 --row-locks --seconds 12 "
				     "--ride-through 4000");
	sleep(4);
	kill_nodes(0, 3, 3);
	bank_checked(bank, 2);
	run("cat %s/bank.json", cl.dir);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_expect_eq(jint(b, "false_deadlocks"), 0, "%s", res.out);
	json_decref(b);
	wait_recovered(3, 1, 2);
	run("%s -c %s -n 1 ges stats", CORALCTL, cl.conf);
	fprintf(stderr, "%s", res.out);
	cr_expect_eq(run("%s/tools/coral-bank -c %s --accounts 24 --per-block 8 --sessions 2 --readers 0 --row-locks "
			 "--nodes 1,2 --seconds 2 --json", CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s\n", res.out);
}

static _Atomic int callback_events;
static _Atomic uint64_t callback_lkid;

static void on_event(void *arg, const struct coral_lock_event *ev)
{
	(void)arg;
	if (ev->kind == CORAL_LOCK_EVENT_BLOCKING) {
		atomic_store(&callback_lkid, ev->lkid);
		atomic_fetch_add(&callback_events, 1);
	}
}

/* A holder hears that its lock is in another's way (a blocking notification), by polling its
 * descriptor or through a callback, and gives way; the waiter is granted. */
Test(ges, a_holder_hears_it_is_in_the_way_and_gives_way)
{
	start_three();
	struct coral_session *a = open_on(1);
	int fd = -1;
	cr_assert_eq(coral_lock_events(a, &fd), 0, "%s", coral_session_error(a));
	cr_assert_geq(fd, 0);
	struct coral_lock_event ev;
	cr_expect_eq(coral_lock_event_next(a, &ev), 0, "an event before anything happened");
	uint64_t lk;
	cr_assert_eq(coral_lock(a, "row-9", 5, CORAL_LOCK_EX, 0, 0, &lk, NULL, NULL), 0, "%s", coral_session_error(a));
	pid_t b = lock_child(2, "row-9", CORAL_LOCK_PR, 0, 20000, 0);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	cr_assert_eq(poll(&p, 1, 5000), 1, "no blocking notification within 5 s");
	int rc = 0;
	for (int i = 0; i < 50 && (rc = coral_lock_event_next(a, &ev)) == 0; i++)
		usleep(10000);
	cr_assert_eq(rc, 1, "%s", coral_session_error(a));
	cr_expect_eq(ev.kind, CORAL_LOCK_EVENT_BLOCKING);
	cr_expect_eq(ev.lkid, lk, "the notification names lock %llu, not the one held (%llu)",
		     (unsigned long long)ev.lkid, (unsigned long long)lk);
	cr_expect_eq(ev.mode, CORAL_LOCK_PR);
	/* giving way: down to PR lets the waiter in */
	cr_assert_eq(coral_lock_convert(a, lk, CORAL_LOCK_PR, 0, 0, NULL, NULL, NULL), 0, "%s", coral_session_error(a));
	cr_expect_eq(child_status(b, 5000), 0, "the waiter was not granted once the holder gave way");
	cr_assert_eq(coral_unlock(a, lk, NULL), 0, "%s", coral_session_error(a));
	coral_session_close(a);
	/* the same through a callback, on node 3 */
	struct coral_session *c = open_on(3);
	cr_assert_eq(coral_lock_on_event(c, on_event, NULL), 0, "%s", coral_session_error(c));
	cr_assert_eq(coral_lock(c, "row-10", 6, CORAL_LOCK_PW, 0, 0, &lk, NULL, NULL), 0, "%s", coral_session_error(c));
	pid_t d = lock_child(1, "row-10", CORAL_LOCK_EX, 0, 20000, 0);
	for (int i = 0; i < 500 && atomic_load(&callback_events) == 0; i++)
		usleep(10000);
	cr_expect_eq(atomic_load(&callback_events), 1, "the callback heard %d notifications", atomic_load(&callback_events));
	cr_expect_eq(atomic_load(&callback_lkid), lk);
	cr_expect_eq(coral_lock_event_next(c, &ev), CORAL_ERR_BUSY, "events taken beside the callback");
	cr_assert_eq(coral_unlock(c, lk, NULL), 0, "%s", coral_session_error(c));
	cr_expect_eq(child_status(d, 5000), 0, "the waiter was not granted once the holder let go");
	coral_session_close(c);
	cr_expect_eq(run("%s -c %s -n 1 --json ges stats", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	json_t *j = json_loads(res.out, 0, NULL);
	cr_expect(j && jint(j, "basts_delivered") >= 1, "node 1's lmdd handed no notification: %s", res.out);
	json_decref(j);
	/* a process that holds no session slot takes, lets go of or hears no session's locks */
	char sock[512];
	snprintf(sock, sizeof(sock), "%s/node1/lmdd.sock", cl.dir);
	for (uint32_t op = 1; op <= 3; op++) {
		Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
		Coral__GesLockRequest g = CORAL__GES_LOCK_REQUEST__INIT;
		g.op = op;
		g.name.data = (uint8_t *)"row-9";
		g.name.len = 5;
		g.lkid = lk;
		g.mode = CORAL_LOCK_EX;
		g.session = 1;
		g.slot = 1;
		req.body_case = CORAL__CTL_REQUEST__BODY_GES_LOCK;
		req.ges_lock = &g;
		Coral__CtlResponse *resp = NULL;
		char err[256];
		cr_assert_eq(coral_ctl_call(sock, &req, 1 << 20, 5000, &resp, err, sizeof(err)), 0, "%s", err);
		cr_expect_eq(resp->code, CORAL_ERR_PERM, "op %u for a slot of another process: %d %s", op, resp->code,
			     resp->error ? resp->error : "");
		coral_ctl_response_free(resp);
	}
}

/* The next event of session s within ms (kind 0: none came). */
static struct coral_lock_event next_event(struct coral_session *s, int fd, int ms)
{
	struct coral_lock_event ev = {0};
	for (int waited = 0; waited <= ms; waited += 10) {
		int rc = coral_lock_event_next(s, &ev);
		cr_assert_geq(rc, 0, "%s", coral_session_error(s));
		if (rc == 1)
			return ev;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, 10);
	}
	ev.kind = 0;
	return ev;
}

/* An asynchronous lock is answered at once with its id; its grant, or its refusal, comes as
 * an event on the session's subscription. */
Test(ges, an_asynchronous_lock_ends_as_an_event)
{
	start_three();
	struct coral_session *a = open_on(1), *b = open_on(2);
	uint64_t la, lb, lt;
	cr_expect_eq(coral_lock_async(b, "row-11", 6, CORAL_LOCK_PR, 0, 0, &lb), CORAL_ERR_INVAL,
		     "an asynchronous lock without a subscription");
	int fd;
	cr_assert_eq(coral_lock_events(b, &fd), 0, "%s", coral_session_error(b));
	cr_assert_eq(coral_lock(a, "row-11", 6, CORAL_LOCK_EX, 0, 0, &la, NULL, NULL), 0, "%s", coral_session_error(a));
	uint64_t t0 = coral_now_mono_ns();
	cr_assert_eq(coral_lock_async(b, "row-11", 6, CORAL_LOCK_PR, 0, 0, &lb), 0, "%s", coral_session_error(b));
	cr_expect_lt((coral_now_mono_ns() - t0) / 1000000ull, 1000, "the asynchronous call waited for the grant");
	cr_expect_eq(next_event(b, fd, 300).kind, 0, "an event before node 1's EX went");
	cr_assert_eq(coral_unlock(a, la, NULL), 0, "%s", coral_session_error(a));
	struct coral_lock_event ev = next_event(b, fd, 5000);
	cr_expect_eq(ev.kind, CORAL_LOCK_EVENT_DONE);
	cr_expect_eq(ev.lkid, lb);
	cr_expect_eq(ev.code, 0);
	cr_expect_eq(ev.mode, CORAL_LOCK_PR);
	/* up to EX asynchronously, while node 1 holds PR: refused after its timeout */
	cr_assert_eq(coral_lock(a, "row-11", 6, CORAL_LOCK_PR, 0, 0, &la, NULL, NULL), 0, "%s", coral_session_error(a));
	cr_assert_eq(coral_lock_convert_async(b, lb, CORAL_LOCK_EX, 0, 300, NULL), 0, "%s", coral_session_error(b));
	ev = next_event(b, fd, 5000);
	cr_expect_eq(ev.kind, CORAL_LOCK_EVENT_DONE);
	cr_expect_eq(ev.code, CORAL_ERR_TIMEDOUT, "the conversion ended with %d", ev.code);
	cr_expect_eq(ev.mode, CORAL_LOCK_PR, "a conversion refused keeps its mode");
	/* a new lock granted at once, asynchronously: the event comes all the same */
	cr_assert_eq(coral_lock_async(b, "row-12", 6, CORAL_LOCK_EX, 0, 0, &lt), 0, "%s", coral_session_error(b));
	ev = next_event(b, fd, 5000);
	cr_expect(ev.kind == CORAL_LOCK_EVENT_DONE && ev.code == 0 && ev.lkid == lt, "row-12: kind %d code %d", ev.kind,
		  ev.code);
	cr_expect_eq(coral_unlock(b, lt, NULL), 0, "%s", coral_session_error(b));
	cr_expect_eq(coral_unlock(b, lb, NULL), 0, "%s", coral_session_error(b));
	cr_expect_eq(coral_unlock(a, la, NULL), 0, "%s", coral_session_error(a));
	coral_session_close(a);
	coral_session_close(b);
}

/* A child attaches node 1's SGA, takes the fast table's mutex of `name` and dies holding it. */
static int die_in_bucket_main(void *arg, int ready)
{
	const char *name = arg;
	struct coral_conf conf;
	struct coral_sga sga;
	if (coral_conf_load(&conf, cl.conf) != 0 ||
	    coral_sga_attach(&sga, &conf, coral_conf_node_by_id(&conf, 1), false) != 0)
		return 9;
	struct coral_ges_own *o = coral_ges_own_sga(&sga);
	if (o == NULL)
		return 9;
	coral_ges_fast_lock_bucket(o, coral_ges_fast_bucket_of(name, strlen(name)));
	if (write(ready, "k", 1) != 1)
		return 9;
	_exit(0);
}

static int64_t ges_stat(int node, const char *field)
{
	json_t *j = ctl_json(node, "ges stats");
	cr_assert_not_null(j, "%s", res.out);
	int64_t v = jint(j, field);
	json_decref(j);
	return v;
}

/* The fast path (lmdd(8), FAST PATH): a lock on a resource node 1 masters is granted,
 * converted and unlocked by its session in shared memory (lmdd counts no request), and shows
 * in coralctl ges resource and ges locks; another node's request makes lmdd take it over (it
 * waits, the holder hears it, converts down through lmdd with a value, the waiter is granted
 * and reads it); once idle it is fast again, value block kept. A session killed holding a
 * fast EX has it released; a process that dies holding a fast table mutex leaves the bucket
 * to lmdd, which repairs it, and the locks there are still granted. */
Test(ges, a_lock_its_node_masters_is_granted_in_shared_memory_until_another_node_asks)
{
	char name[32];
	struct coral_session *a = rebuilt_with_name(name, sizeof(name), 1);
	int fd;
	cr_assert_eq(coral_lock_events(a, &fd), 0, "%s", coral_session_error(a));
	int64_t req0 = ges_stat(1, "requests"), fast0 = ges_stat(1, "fast_grants");
	uint64_t lk;
	cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_EX, CORAL_LOCK_VALBLK, 0, &lk, NULL, NULL), 0, "%s",
		     coral_session_error(a));
	cr_expect_eq(ges_stat(1, "fast_grants"), fast0 + 1, "not granted by the session itself");
	cr_expect_eq(ges_stat(1, "requests"), req0, "lmdd was asked");
	cr_expect_eq(run("%s -c %s -n 1 ges resource %s", CORALCTL, cl.conf, name)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "fast") && strstr(res.out, "EX"), "ges resource does not show the fast lock: %s", res.out);
	cr_expect_eq(run("%s -c %s -n 1 ges locks", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "fast: granted by its session") != NULL, "ges locks: %s", res.out);
	/* node 2 asks: lmdd takes the resource over, node 2 waits, node 1's session hears it */
	pid_t w = lock_child(2, name, CORAL_LOCK_PR, 0, 20000, 0);
	struct coral_lock_event ev = next_event(a, fd, 5000);
	cr_expect_eq(ev.kind, CORAL_LOCK_EVENT_BLOCKING, "no blocking notification for a fast lock taken over");
	cr_expect_eq(ev.lkid, lk);
	cr_expect_eq(child_status(w, 200), -1, "node 2 was granted PR beside a fast EX");
	cr_expect_geq(ges_stat(1, "fast_imports"), 1);
	uint8_t v[CORAL_LVB_LEN];
	memset(v, 0x5a, sizeof(v));
	cr_assert_eq(coral_lock_convert(a, lk, CORAL_LOCK_NL, CORAL_LOCK_VALBLK, 0, v, NULL, NULL), 0, "%s",
		     coral_session_error(a));
	cr_expect_eq(child_status(w, 5000), 0, "node 2 was not granted once the holder went down to NL");
	cr_assert_eq(coral_unlock(a, lk, NULL), 0, "%s", coral_session_error(a));
	/* idle again: back to the fast path, with its value */
	uint8_t r[CORAL_LVB_LEN];
	int valid = 0;
	int64_t fast1 = 0;
	for (int i = 0; i < 100; i++) {
		fast1 = ges_stat(1, "fast_grants");
		cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 0, &lk, r, &valid), 0, "%s",
			     coral_session_error(a));
		bool fast = ges_stat(1, "fast_grants") > fast1;
		cr_assert_eq(coral_unlock(a, lk, NULL), 0, "%s", coral_session_error(a));
		if (fast)
			break;
		fast1 = 0;
		usleep(20000);
	}
	cr_expect_gt(fast1, 0, "the resource did not go back to the fast path");
	cr_expect(valid && memcmp(r, v, sizeof(v)) == 0, "the value block written through lmdd was not kept");
	/* a session killed holding a fast EX */
	pid_t h = lock_child(1, name, CORAL_LOCK_EX, 0, 0, 600000);
	kill(h, SIGKILL);
	waitpid(h, NULL, 0);
	pid_t c = lock_child(3, name, CORAL_LOCK_EX, 0, 15000, 0);
	cr_expect_eq(child_status(c, 15000), 0, "the killed session's fast EX was not released");
	/* a process dies holding the bucket's mutex: lmdd repairs the bucket, the lock is kept */
	cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_EX, 0, 0, &lk, NULL, NULL), 0, "%s",
		     coral_session_error(a));
	pid_t dead = fork_ready(die_in_bucket_main, name, "the child did not take the bucket's mutex");
	waitpid(dead, NULL, 0);
	c = lock_child(1, name, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0);
	cr_expect_eq(child_status(c, 5000), 1, "the EX was lost with the bucket's repair");
	cr_expect_geq(ges_stat(1, "fast_repairs"), 1, "no repair counted");
	cr_expect_eq(coral_unlock(a, lk, NULL), 0, "%s", coral_session_error(a));
	c = lock_child(1, name, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE, 0, 0);
	cr_expect_eq(child_status(c, 5000), 0, "not granted once unlocked");
	coral_session_close(a);
	cr_expect_eq(run("%s -c %s -n 1 ges stats", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s", res.out);
}

/* A value block outlives its master's loss in a holder's copy: node 1's session writes it
 * going down from EX to PR; node 3, its master, is lost; the new master takes the value from
 * node 1's PR (no writer could have passed it) and node 2 reads it, valid. One node 3 had
 * with no lock on it reads as not valid (its value went with node 3). */
Test(ges, a_value_block_outlives_its_masters_loss_in_a_holders_copy)
{
	start_three();
	char name[32];
	name_mastered_by(3, name, sizeof(name));
	struct coral_session *a = open_on(1);
	uint64_t lk;
	uint8_t v[CORAL_LVB_LEN], r[CORAL_LVB_LEN];
	memset(v, 0x3c, sizeof(v));
	cr_assert_eq(coral_lock(a, name, strlen(name), CORAL_LOCK_EX, CORAL_LOCK_VALBLK, 0, &lk, NULL, NULL), 0, "%s",
		     coral_session_error(a));
	cr_assert_eq(coral_lock_convert(a, lk, CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 0, v, NULL, NULL), 0, "%s",
		     coral_session_error(a));
	/* another one node 3 masters, written and let go: nobody holds a copy of it */
	char gone[32];
	name_with_master(3, "lvb-", gone, sizeof(gone));
	uint64_t lg;
	cr_assert_eq(coral_lock(a, gone, strlen(gone), CORAL_LOCK_EX, CORAL_LOCK_VALBLK, 0, &lg, NULL, NULL), 0, "%s",
		     coral_session_error(a));
	cr_assert_eq(coral_unlock(a, lg, v), 0, "%s", coral_session_error(a));
	kill_nodes(0, 3, 3);
	wait_recovered(3, 1, 2);
	wait_rebuilt(1, 2);
	struct coral_session *b = open_on(2);
	uint64_t lb;
	int valid = 0;
	cr_assert_eq(coral_lock(b, name, strlen(name), CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 10000, &lb, r, &valid), 0, "%s",
		     coral_session_error(b));
	cr_expect(valid, "the value block is not valid after its master's loss, though node 1's PR held a copy");
	cr_expect_eq(memcmp(r, v, sizeof(v)), 0, "node 2 read another value than node 1 wrote");
	valid = 1;
	cr_assert_eq(coral_lock(b, gone, strlen(gone), CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 10000, &lb, r, &valid), 0, "%s",
		     coral_session_error(b));
	cr_expect(!valid, "%s's value was lost with its master, yet it reads as valid", gone);
	/* written again, let go; node 3 comes back and the map moves both back to it: the old
	 * masters hand their values over */
	uint8_t w[CORAL_LVB_LEN];
	memset(w, 0x5e, sizeof(w));
	cr_assert_eq(coral_lock_convert(b, lb, CORAL_LOCK_EX, CORAL_LOCK_VALBLK, 10000, NULL, NULL, NULL), 0, "%s",
		     coral_session_error(b));
	cr_assert_eq(coral_unlock(b, lb, w), 0, "%s", coral_session_error(b));
	cr_assert_eq(run("%s -c %s start 3", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_gt(wait_full_map(3), 0, "node 3 did not join the map again");
	wait_rebuilt(1, 3);
	struct coral_session *c = open_on(3);
	uint64_t lc;
	valid = 0;
	cr_assert_eq(coral_lock(c, gone, strlen(gone), CORAL_LOCK_PR, CORAL_LOCK_VALBLK, 10000, &lc, r, &valid), 0, "%s",
		     coral_session_error(c));
	cr_expect(valid && memcmp(r, w, sizeof(w)) == 0, "%s's value did not follow it back to node 3 (valid %d)", gone,
		  valid);
	coral_session_close(c);
	cr_expect_eq(run("%s -c %s -n 1 ges resource %s", CORALCTL, cl.conf, name)->code, 0, "%s", res.out);
	fprintf(stderr, "%s", res.out);
	coral_session_close(b);
	coral_session_close(a);
}

/* ---- the fast path under kill -9 --------------------------------------------------------- */

/* Shared by the test and its racers: what each racer holds on each resource now (its mode
 * + 1, set after the grant and cleared before the unlock), whether it was killed, its
 * operations, and what went wrong. */
#define RACERS 6
#define HIST 2048
struct race {
	_Atomic int holds[RACERS][2];
	_Atomic int killed[RACERS];
	_Atomic long ops[RACERS];
	_Atomic int violations, errors, stop;
	char names[2][32];
	/* each racer's last calls, for the report of a wedge: (what, rc, lock id) */
	struct call {
		char what;
		int rc;
		uint64_t lkid;
	} hist[RACERS][HIST];
	_Atomic int nhist[RACERS];
	_Atomic int pid[RACERS];
};

static void note_call(struct race *r, int i, char what, int rc, uint64_t lkid)
{
	int n = atomic_fetch_add(&r->nhist[i], 1);
	r->hist[i][n % HIST] = (struct call){what, rc, lkid};
}

struct racer_args {
	struct race *r;
	int idx, node;
	unsigned seed;
};

static int racer_main(void *arg, int ready)
{
	const struct racer_args *a = arg;
	struct race *r = a->r;
	struct coral_session *s;
	if (coral_session_open(cl.conf, a->node, "test", "ges-racer", &s) != 0 || write(ready, "k", 1) != 1)
		return 9;
	unsigned seed = a->seed;
	atomic_store(&r->pid[a->idx], getpid());
	while (!atomic_load(&r->stop)) {
		int k = rand_r(&seed) % 2, mode = rand_r(&seed) % 3 == 0 ? CORAL_LOCK_PR : CORAL_LOCK_EX;
		uint64_t lk = 0;
		int lrc = coral_lock(s, r->names[k], strlen(r->names[k]), mode, 0, 10000, &lk, NULL, NULL);
		note_call(r, a->idx, (char)('a' + k), lrc, lk);
		if (lrc != 0) {
			atomic_fetch_add(&r->errors, 1);  /* lmdd restarting, a wait timed out: again */
			usleep(20000);
			continue;
		}
		/* nobody else may hold a mode that does not go with this one */
		for (int o = 0; o < RACERS; o++) {
			int h = atomic_load(&r->holds[o][k]);
			if (o != a->idx && h && !atomic_load(&r->killed[o]) && (mode == CORAL_LOCK_EX || h - 1 == CORAL_LOCK_EX))
				atomic_fetch_add(&r->violations, 1);
		}
		atomic_store(&r->holds[a->idx][k], mode + 1);
		usleep((useconds_t)(rand_r(&seed) % 300));
		atomic_store(&r->holds[a->idx][k], 0);
		int rc = 1;
		for (int t = 0; t < 500 && rc != 0; t++) {
			rc = coral_unlock(s, lk, NULL);
			note_call(r, a->idx, 'u', rc, lk);
			if (rc != 0)
				usleep(20000);
		}
		if (rc != 0)
			return 8;  /* could not let it go for 10 s */
		atomic_fetch_add(&r->ops[a->idx], 1);
	}
	coral_session_close(s);
	return 0;
}

/* Six racers (four on node 1, two on node 2) lock two resources node 1 masters in EX or PR
 * (the fast path, and lmdd taking over whenever one waits or node 2 asks), each checking at
 * every grant that no other holds a mode it conflicts with. For 16 s, every 2 s, a racer
 * (chosen by a seeded draw) is killed -9 and another started in its place, or (twice) node
 * 1's lmdd is. No two conflicting holds are ever seen, and in the 4 quiet
 * seconds after the last fault every racer still makes progress (nothing wedged). */
static char *fast_off(char *text) { return replace_all(text, "fast_path = yes", "fast_path = no"); }

static void race(bool fast)
{
	cl_prepare("ges", fast ? NULL : fast_off);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	cr_assert_gt(wait_full_map(3), 0, "the map of 3 nodes did not reach every node");
	wait_rebuilt(1, 3);
	struct race *r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(r, MAP_FAILED);
	memset(r, 0, sizeof(*r));
	name_with_master(1, "race-a-", r->names[0], sizeof(r->names[0]));
	name_with_master(1, "race-b-", r->names[1], sizeof(r->names[1]));
	pid_t pid[RACERS];
	struct racer_args args[RACERS];
	for (int i = 0; i < RACERS; i++) {
		args[i] = (struct racer_args){r, i, i < 4 ? 1 : 2, 7919u * (unsigned)(i + 1)};
		pid[i] = fork_ready(racer_main, &args[i], "a racer's session did not open");
	}
	unsigned seed = 2026;
	int kills = 0, restarts = 0;
	for (int round = 0; round < 8; round++) {
		usleep(2000000);
		if (round == 2 || round == 5) {
			restart_lmdd(1);
			restarts++;
			continue;
		}
		int v = rand_r(&seed) % RACERS;
		kill(pid[v], SIGKILL);
		waitpid(pid[v], NULL, 0);
		atomic_store(&r->killed[v], 1);
		atomic_store(&r->holds[v][0], 0);
		atomic_store(&r->holds[v][1], 0);
		kills++;
		args[v].seed += 1;
		pid[v] = fork_ready(racer_main, &args[v], "a racer's session did not open");  /* its place */
		atomic_store(&r->killed[v], 0);
	}
	/* quiet: everyone must get on */
	long before[RACERS];
	usleep(1000000);
	for (int i = 0; i < RACERS; i++)
		before[i] = atomic_load(&r->ops[i]);
	usleep(3000000);
	bool stuck = false;
	for (int i = 0; i < RACERS; i++) {
		stuck |= atomic_load(&r->ops[i]) == before[i];
		cr_expect_gt(atomic_load(&r->ops[i]), before[i], "racer %d made no progress in 3 quiet seconds: wedged", i);
	}
	if (stuck) {
		for (int k = 0; k < 2; k++) {
			run("%s -c %s -n 1 ges resource %s", CORALCTL, cl.conf, r->names[k]);
			fprintf(stderr, "%s", res.out);
		}
		for (int n = 1; n <= 2; n++) {
			run("%s -c %s -n %d ges locks", CORALCTL, cl.conf, n);
			fprintf(stderr, "%s", res.out);
		}
		run("grep -h 'lmdd' %s/node1/node.log | grep -v deadlock | tail -60", cl.dir);
		fprintf(stderr, "%s", res.out);
		for (int i = 0; i < RACERS; i++) {
			int n = atomic_load(&r->nhist[i]);
			fprintf(stderr, "racer %d (pid %d, session ~%d):", i, atomic_load(&r->pid[i]), atomic_load(&r->pid[i]) << 8);
			for (int j = n > 16 ? n - 16 : 0; j < n; j++)
				fprintf(stderr, " %c%d:%llu", r->hist[i][j % HIST].what, r->hist[i][j % HIST].rc,
					(unsigned long long)(r->hist[i][j % HIST].lkid % 100000000));
			fprintf(stderr, "\n");
		}
		/* the calls of a racer on a lock node 1 still has for its session (a lock it does
		 * not know it holds: what did it last do with it?) */
		run("%s -c %s -n 1 ges locks", CORALCTL, cl.conf);
		unsigned long long held[32];
		int nheld = 0;
		for (const char *p = res.out; (p = strstr(p, " lock ")) != NULL && nheld < 32; p++)
			if (sscanf(p, " lock %llu", &held[nheld]) == 1)
				nheld++;
		for (int i = 0; i < RACERS; i++) {
			int n = atomic_load(&r->nhist[i]);
			for (int j = n > HIST ? n - HIST : 0; j < n; j++)
				for (int h = 0; h < nheld; h++)
					if (r->hist[i][j % HIST].lkid == held[h]) {
						fprintf(stderr, "racer %d, call %d of %d, on lock %llu:", i, j, n, held[h]);
						for (int k = j - 4 > (n > HIST ? n - HIST : 0) ? j - 4 : (n > HIST ? n - HIST : 0); k < n && k <= j + 4; k++)
							fprintf(stderr, " %c%d:%llu", r->hist[i][k % HIST].what, r->hist[i][k % HIST].rc,
								(unsigned long long)(r->hist[i][k % HIST].lkid % 100000000));
						fprintf(stderr, "\n");
					}
		}
	}
	atomic_store(&r->stop, 1);
	for (int i = 0; i < RACERS; i++)
		cr_expect_eq(child_status(pid[i], 20000), 0, "racer %d ended badly", i);
	long total = 0;
	for (int i = 0; i < RACERS; i++)
		total += atomic_load(&r->ops[i]);
	fprintf(stderr, "%ld lock + unlock pairs, %d racers killed, %d lmdd restarts, %d calls refused meanwhile, %d "
		"conflicting holds seen\n", total, kills, restarts, atomic_load(&r->errors), atomic_load(&r->violations));
	cr_expect_eq(atomic_load(&r->violations), 0, "conflicting holds seen");
	cr_expect_gt(total, 100);
	cr_expect_eq(run("%s -c %s -n 1 ges stats", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "%s", res.out);
	munmap(r, sizeof(*r));
}

/* With lmdd killed too: the calls under way when it dies are settled (lmdd(8), RESTART). An
 * unlock whose answer was lost with lmdd (done by it, then killed) is asked again and
 * answered "no such lock": libcoral takes that as done (before, about one run in four failed
 * there). */
Test(ges, locks_hold_through_kill_9_of_sessions_and_lmdd, .timeout = 300) { race(false); }

Test(ges, the_fast_path_holds_through_kill_9_of_sessions_and_lmdd, .timeout = 300) { race(true); }

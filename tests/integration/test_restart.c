/* Daemon restarts under load, on real processes (issue "a daemon's death is never a wedged
 * block"): coral-bank runs on three nodes while one daemon at a time is killed with SIGKILL
 * on a random node (a seeded schedule: CORAL_TEST_SEED), or lmsd is stopped past the
 * supervisor's hang timeout and killed by it. The supervisor restarts each; a restarted lmsd
 * has the node leave and be recovered by the others (lmsd(8), RESTART). The bank must pass
 * with no session giving up, and a second bank run on the same cluster must pass too (no
 * block left wedged). */
#include "harness.h"
#include "raft_harness.h"
#include "coral_harness.h"

#include <signal.h>
#include <sys/wait.h>

TestSuite(restart, .init = NULL, .fini = cl_teardown, .timeout = 300);

#define BANK_ARGS "--accounts 400 --per-block 8 --sessions 2 --readers 1"

static void start_all(void)
{
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	cr_assert_gt(wait_full_map(3), 0, "the map of 3 nodes did not reach every node");
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --json --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0,
		     "%s", res.out);
}

static pid_t bank_in_background(int seconds)
{
	char args[256];
	snprintf(args, sizeof(args), BANK_ARGS " --seconds %d --ride-through 30000", seconds);
	return bank_background(args);
}

/* The bank's check passed, it did real work, and no session gave up; then a second run on
 * the same cluster passes (nothing wedged). */
static void bank_passed(pid_t bank)
{
	bank_checked(bank, 0);
	for (int n = 1; n <= 3; n++)
		for (int i = 0; i < 150 && map_version(n) <= 0; i++)
			usleep(100000);
	cr_expect_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --json --seconds 2", CORAL_BUILDDIR, cl.conf)->code,
		     0, "the second run failed (a block wedged?): %s", res.out);
}

Test(restart, a_daemon_killed_every_2s_on_a_random_node_under_the_bank)
{
	const char *e = getenv("CORAL_TEST_SEED");
	unsigned seed = e ? (unsigned)strtoul(e, NULL, 10) : 7;
	srand(seed);
	fprintf(stderr, "restart schedule seed %u (CORAL_TEST_SEED)\n", seed);
	cl_prepare("rst", NULL);
	start_all();
	pid_t bank = bank_in_background(22);
	sleep(1);
	static const char *const daemons[] = {"lmsd", "grdd", "replicad", "lmdd", "raftd"};
	bool lmsd_killed = false;
	for (int k = 0; k < 10; k++) {
		/* every daemon once in the first five, lmsd surely among them */
		const char *d = k < 5 ? daemons[k] : daemons[rand() % 5];
		int n = 1 + rand() % 3;
		pid_t pid = daemon_pid(n, d);
		fprintf(stderr, "kill -9 %s on node %d (pid %d)\n", d, n, (int)pid);
		if (pid > 0) {
			kill(pid, SIGKILL);
			lmsd_killed |= strcmp(d, "lmsd") == 0;
		}
		sleep(2);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	bank_passed(bank);
	cr_expect(lmsd_killed);
	/* each lmsd killed had its node leave and be recovered, in the raftd history */
	run("grep -h 'the node left the cluster after lmsd' %s/node*/node.log", cl.dir);
	fprintf(stderr, "%s", res.out);
	run("cat %s/node*/node.log | grep -c 'recovery of node .: done'", cl.dir);
	cr_expect_gt(atoi(res.out), 0, "no recovery after an lmsd was killed");
}

static char *short_hang(char *text) { return replace_all(text, "hang_timeout_ms = 0", "hang_timeout_ms = 2000"); }

Test(restart, a_hung_lmsd_is_killed_by_the_supervisor_and_its_node_recovered)
{
	cl_prepare("rsh", short_hang);
	start_all();
	pid_t bank = bank_in_background(12);
	sleep(2);
	pid_t lmsd = daemon_pid(2, "lmsd");
	cr_assert_gt(lmsd, 0);
	kill(lmsd, SIGSTOP);  /* hung: the supervisor kills it past hang_timeout_ms */
	for (int i = 0; i < 100 && kill(lmsd, 0) == 0; i++) {
		usleep(100000);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	cr_expect_neq(kill(lmsd, 0), 0, "the supervisor did not kill the hung lmsd");
	bank_passed(bank);
	cr_expect_eq(run("grep -h 'the node left the cluster after lmsd pid %d' %s/node2/node.log", (int)lmsd, cl.dir)->code,
		     0, "node 2 did not leave after its hung lmsd was killed");
	cr_expect_eq(run("grep -h 'recovery of node 2: done' %s/node1/node.log", cl.dir)->code, 0);
}

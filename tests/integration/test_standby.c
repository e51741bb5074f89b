/* Redo shipping on real processes: a three-node primary and a one-node standby cluster
 * (its own name, directory, SGA and ports: base_port+48 of the test's range). coral-bank on
 * the primary; every byte each primary thread made durable is then on the standby, the same
 * bytes (its copies compared with the primary's segment files), also when replicad on either
 * side is killed with SIGKILL in the middle. A primary without the token ships nothing. */
#include "harness.h"
#include "coral_harness.h"
#include "raft_harness.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

TestSuite(standby, .init = NULL, .fini = NULL, .timeout = 240);

#define BANK_ARGS "--accounts 200 --per-block 8 --sessions 2 --readers 0"
#define TOKEN "replication-token-0123456789"

static struct {
	char dir[160], conf[200], name[48];
	int port;                    /* the standby's receiver */
} sb;

static const char *primary_token = TOKEN;

/* Small segments, so that shipping crosses them and the primary recycles under the slot. */
static char *small_segments(char *text)
{
	text = replace_all(text, "redo_segment = 64M", "redo_segment = 1M");
	return text;
}

static char *primary_edit(char *text)
{
	char tok[256], to[600];
	write_token("repl.token", primary_token, tok, sizeof(tok));
	snprintf(to, sizeof(to), "role = primary\nstandby = 127.0.0.1:%d\nprimary_cluster =\ntoken_file = %s",
		 cl.base_port + 48 + 7, tok);
	text = replace_all(text, "role = primary\nstandby =\nprimary_cluster =\ntoken_file =", to);
	return small_segments(text);
}

/* The standby: the test's configuration with one node on ports base+48.., its own directory
 * and name, role standby of the test's cluster. */
static void standby_prepare(void)
{
	snprintf(sb.dir, sizeof(sb.dir), "%s/standby", cl.dir);
	cr_assert_eq(mkdir(sb.dir, 0755), 0);
	snprintf(sb.conf, sizeof(sb.conf), "%s/coral.conf", sb.dir);
	snprintf(sb.name, sizeof(sb.name), "%ssb", cl.name);
	char *text = test_conf_text(sb.dir, sb.name, NULL);
	char *n2 = strstr(text, "[node.2]"), *st = strstr(text, "[storage]");
	cr_assert(n2 && st && n2 < st);
	memmove(n2, st, strlen(st) + 1);
	char from[64], to[600], tok[300];
	snprintf(from, sizeof(from), "base_port = %d", cl.base_port);
	snprintf(to, sizeof(to), "base_port = %d", cl.base_port + 48);
	text = replace_all(text, from, to);
	snprintf(tok, sizeof(tok), "%s/repl.token", sb.dir);
	FILE *f = fopen(tok, "w");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", TOKEN);
	fclose(f);
	chmod(tok, 0600);
	snprintf(to, sizeof(to), "role = standby\nstandby =\nprimary_cluster = %s\ntoken_file = %s", cl.name, tok);
	text = replace_all(text, "role = primary\nstandby =\nprimary_cluster =\ntoken_file =", to);
	text = small_segments(text);
	f = fopen(sb.conf, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	free(text);
	sb.port = cl.base_port + 48 + 7;
}

static void start_both(void)
{
	cl_prepare("sb", primary_edit);
	standby_prepare();
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, sb.conf)->code, 0, "%s", res.out);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xe), 1);
	cr_assert_gt(wait_full_map(3), 0);
	cr_assert_eq(run("%s -c %s datafile create bank 64", CORALCTL, cl.conf)->code, 0, "%s", res.out);
}

static void stop_both(void)
{
	if (sb.conf[0] && run("%s -c %s stop all", CORAL_NODE, sb.conf)->code != 0)
		fprintf(stderr, "teardown: %s\n", res.out);
	print_node_log_errors(sb.dir);
	cl_teardown();
	memset(&sb, 0, sizeof(sb));
}

/* A primary node's view of its thread: durable, what the standby acknowledged, connected. */
static bool thread_view(int node, int64_t *durable, int64_t *acked, bool *connected, char *err, size_t errsz)
{
	json_t *j = ctl_json(node, "standby status");
	if (j == NULL)
		return false;
	json_t *t = json_array_get(json_object_get(j, "threads"), 0);
	bool ok = t != NULL;
	if (ok) {
		*durable = jint(t, "durable");
		*acked = jint(t, "acked");
		*connected = json_is_true(json_object_get(t, "connected"));
		snprintf(err, errsz, "%s", jstr(t, "last_error"));
	}
	json_decref(j);
	return ok;
}

/* Every primary thread acknowledged by the standby up to its durable LSN, within ms. */
static void wait_caught_up(int ms)
{
	for (int node = 1; node <= 3; node++) {
		int64_t durable = -1, acked = -2;
		bool connected = false;
		char err[300] = "";
		for (int waited = 0; waited < ms; waited += 100) {
			if (thread_view(node, &durable, &acked, &connected, err, sizeof(err)) && connected && durable > 0 &&
			    acked == durable)
				break;
			usleep(100000);
		}
		cr_assert(connected && acked == durable && durable > 0,
			  "thread %d: durable %lld, the standby has %lld (connected %d; %s)", node, (long long)durable,
			  (long long)acked, connected, err);
	}
}

/* Every segment of every primary thread the standby should have is there, the same bytes;
 * the standby has each thread up to the primary's durable LSN. */
static void copies_equal(void)
{
	for (int t = 1; t <= 3; t++) {
		char pdir[300], sdir[400];
		snprintf(pdir, sizeof(pdir), "%s/shared/redo/thread_%d", cl.dir, t);
		snprintf(sdir, sizeof(sdir), "%s/shared/standby/%s/redo/thread_%d", sb.dir, cl.name, t);
		/* segments the primary still has (older ones it recycled) */
		cr_assert_eq(run("cd %s && ls *.redo", pdir)->code, 0, "%s", res.out);
		char list[4096];
		snprintf(list, sizeof(list), "%s", res.out);
		int n = 0;
		for (char *save = NULL, *seg = strtok_r(list, "\n", &save); seg; seg = strtok_r(NULL, "\n", &save)) {
			cr_expect_eq(run("cmp %s/%s %s/%s", pdir, seg, sdir, seg)->code, 0, "thread %d segment %s: %s", t,
				     seg, res.out);
			n++;
		}
		cr_assert_gt(n, 0);
		/* and nothing on the standby past the primary's last segment */
		cr_expect_eq(run("test \"$(cd %s && ls *.redo | tail -n1)\" = \"$(cd %s && ls *.redo | tail -n1)\"", pdir,
				 sdir)->code,
			     0, "thread %d: the copies end in another segment", t);
	}
}

static int64_t thread_bytes(int node)
{
	int64_t durable = 0, acked = 0;
	bool connected;
	char err[300];
	thread_view(node, &durable, &acked, &connected, err, sizeof(err));
	return durable;
}

Test(standby, every_durable_byte_of_every_primary_thread_is_on_the_standby, .fini = stop_both)
{
	start_both();
	pid_t bank = bank_background(BANK_ARGS " --seconds 6");
	bank_checked(bank, 0);
	wait_caught_up(20000);
	copies_equal();
	/* real redo went out (more than one 1 MiB segment of it in the plain build) */
	int64_t most = 0;
	for (int n = 1; n <= 3; n++)
		if (thread_bytes(n) > most)
			most = thread_bytes(n);
	cr_expect_gt(most, 1 << 18, "the bank wrote %lld bytes of redo on its busiest thread", (long long)most);
	json_t *j = json_loads(run("%s -c %s -n 1 --json standby status", CORALCTL, sb.conf)->out, 0, NULL);
	cr_assert_not_null(j, "%s", res.out);
	cr_expect_str_eq(jstr(j, "role"), "standby");
	cr_expect_eq(json_array_size(json_object_get(j, "threads")), 3, "%s", res.out);
	json_decref(j);
}

/* SIGKILL of the primary's replicad on node 2 (its supervisor starts it again) and of the
 * standby's replicad, each in the middle of the bank: shipping resumes from what the standby
 * has durable and its copies are the primary's threads byte for byte. */
Test(standby, replicad_killed_on_either_side_resumes_without_a_gap, .fini = stop_both)
{
	start_both();
	pid_t bank = bank_background(BANK_ARGS " --seconds 10");
	sleep(2);
	pid_t p = daemon_pid(2, "replicad");
	cr_assert_gt(p, 0);
	kill(p, SIGKILL);
	sleep(2);
	char pidf[300];
	snprintf(pidf, sizeof(pidf), "%s/node1/replicad.pid", sb.dir);
	cr_assert_eq(run("kill -KILL $(cat %s)", pidf)->code, 0, "%s", res.out);
	sleep(2);
	p = daemon_pid(1, "replicad");
	cr_assert_gt(p, 0);
	kill(p, SIGKILL);
	bank_checked(bank, 2);
	wait_caught_up(30000);
	copies_equal();
	/* each side saw the breaks: a node reconnected */
	json_t *j = ctl_json(3, "standby status");
	cr_assert_not_null(j);
	cr_expect_geq(jint(json_array_get(json_object_get(j, "threads"), 0), "connects"), 2, "%s", res.out);
	json_decref(j);
}

/* A primary that holds another token is refused at the hello: nothing of it is written on
 * the standby, the primary says why, the standby counts the refusals. */
Test(standby, a_primary_without_the_token_ships_nothing, .fini = stop_both)
{
	primary_token = "not-the-replication-token-42";
	start_both();
	primary_token = TOKEN;
	int64_t durable = 0, acked = 0;
	bool connected = true;
	char err[300] = "";
	for (int i = 0; i < 50 && strstr(err, "token") == NULL; i++) {
		usleep(100000);
		thread_view(1, &durable, &acked, &connected, err, sizeof(err));
	}
	cr_expect(!connected);
	cr_expect_neq(strstr(err, "token"), NULL, "the primary's last error: %s", err);
	json_t *j = json_loads(run("%s -c %s -n 1 --json standby status", CORALCTL, sb.conf)->out, 0, NULL);
	cr_assert_not_null(j, "%s", res.out);
	cr_expect_eq(json_array_size(json_object_get(j, "threads")), 0, "%s", res.out);
	cr_expect_gt(jint(j, "bad_hellos"), 0, "%s", res.out);
	json_decref(j);
	cr_expect_neq(run("ls %s/shared/standby/%s/redo 2>/dev/null | grep thread", sb.dir, cl.name)->code, 0,
		      "the standby made copies: %s", res.out);
}

static json_t *standby_apply(void)
{
	json_t *j = json_loads(run("%s -c %s -n 1 --json standby status", CORALCTL, sb.conf)->out, 0, NULL);
	if (j == NULL)
		return NULL;
	json_t *a = json_incref(json_object_get(j, "apply"));
	json_decref(j);
	return a;
}

/* The apply has everything the primary committed: every copy caught up, nothing held, the
 * applied SCN steady and a state of the primary's. */
static json_t *wait_applied(int ms)
{
	int64_t last = -1;
	int steady = 0;
	json_t *a = NULL;
	for (int waited = 0; waited < ms; waited += 200) {
		json_decref(a);
		a = standby_apply();
		if (a && json_is_true(json_object_get(a, "consistent")) && jint(a, "open_txns") == 0 &&
		    jint(a, "pending_bytes") == 0 && jint(a, "applied_scn") == last) {
			if (++steady >= 3)
				return a;
		} else {
			steady = 0;
		}
		last = a ? jint(a, "applied_scn") : -1;
		usleep(200000);
	}
	cr_assert_fail("the apply did not settle: %s", a ? json_dumps(a, 0) : "no answer");
	return NULL;
}

/* The payload of every block of the bank's file on the primary (after a clean stop: every
 * change written) and on the standby's copy: the same bytes. */
static void copy_equals_primary(void)
{
	char p[300], s[400];
	snprintf(p, sizeof(p), "%s/shared/bank.dbf", cl.dir);
	snprintf(s, sizeof(s), "%s/shared/standby/%s/bank.dbf", sb.dir, cl.name);
	FILE *a = fopen(p, "r"), *b = fopen(s, "r");
	cr_assert(a && b);
	uint8_t x[8192], y[8192];
	int blocks = 0;
	for (;;) {
		size_t n = fread(x, 1, sizeof(x), a), m = fread(y, 1, sizeof(y), b);
		cr_assert_eq(n, m);
		if (n == 0)
			break;
		cr_expect_eq(memcmp(x + 32, y + 32, n - 32), 0, "block %d differs between the primary and the standby", blocks);
		blocks++;
	}
	fclose(a);
	fclose(b);
	cr_expect_eq(blocks, 64);
}

/* The standby seeded from the primary's shared storage while the primary runs, then the bank
 * on the primary: the standby's copy is a state the primary was in (the bank's check there
 * passes), and once the bank stops, every block holds what the primary's does. */
Test(standby, the_standby_applies_the_primarys_transactions_and_its_copy_adds_up, .fini = stop_both)
{
	start_both();
	/* something committed before the seed */
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0, "%s",
		     res.out);
	cr_assert_eq(run("%s -c %s -n 1 standby seed %s/shared", CORALCTL, sb.conf, cl.dir)->code, 0, "%s", res.out);
	pid_t bank = bank_background(BANK_ARGS " --seconds 6");
	/* meanwhile the copy is checked while the apply goes on */
	int checked = 0;
	for (int i = 0; i < 20; i++) {
		usleep(250000);
		json_t *a = standby_apply();
		if (a && json_is_true(json_object_get(a, "consistent"))) {
			cr_expect_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --check-copy", CORAL_BUILDDIR, sb.conf)->code, 0,
				     "%s", res.out);
			checked++;
		}
		json_decref(a);
	}
	cr_expect_gt(checked, 5, "the copy was a state of the primary's only %d times of 20", checked);
	bank_checked(bank, 0);
	wait_caught_up(20000);
	json_t *a = wait_applied(30000);
	cr_expect_gt(jint(a, "txns_applied"), 1000, "%s", json_dumps(a, 0));
	json_decref(a);
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --check-copy --json", CORAL_BUILDDIR, sb.conf)->code, 0,
		     "%s", res.out);
	cr_assert_eq(run("%s -c %s stop all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	copy_equals_primary();
}

/* The same under SIGKILL: the standby's replicad killed twice in the middle of its apply (a
 * batch half written, the state behind it) and a primary node's replicad once; the copy is a
 * state of the primary's again, and in the end the primary's blocks byte for byte. */
Test(standby, the_apply_killed_in_the_middle_goes_on_and_loses_nothing, .fini = stop_both)
{
	start_both();
	cr_assert_eq(run("%s -c %s -n 1 standby seed %s/shared", CORALCTL, sb.conf, cl.dir)->code, 0, "%s", res.out);
	pid_t bank = bank_background(BANK_ARGS " --seconds 10");
	char pidf[300];
	snprintf(pidf, sizeof(pidf), "%s/node1/replicad.pid", sb.dir);
	for (int i = 0; i < 2; i++) {
		sleep(3);
		cr_assert_eq(run("kill -KILL $(cat %s)", pidf)->code, 0, "%s", res.out);
	}
	sleep(1);
	pid_t p = daemon_pid(3, "replicad");
	cr_assert_gt(p, 0);
	kill(p, SIGKILL);
	bank_checked(bank, 2);
	wait_caught_up(30000);
	json_t *a = wait_applied(30000);
	json_decref(a);
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --check-copy --json", CORAL_BUILDDIR, sb.conf)->code, 0,
		     "%s", res.out);
	cr_assert_eq(run("%s -c %s stop all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	copy_equals_primary();
	/* the restarts went through the apply's state: the log says it went on */
	cr_expect_eq(run("grep -c 'apply goes on from SCN' %s/node1/node.log", sb.dir)->code, 0, "%s", res.out);
}

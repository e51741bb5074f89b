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
/* [replication] sync, sync_fallback_ms and max_lag_bytes for the next start_both (empty: as
 * etc/coral.conf has them) */
static char primary_sync[128], primary_fallback[32], primary_lag[32], primary_slot[32];
/* for the next start_both: each cluster names the other for both roles (a switchover swaps
 * them): the primary its standby's name, the standby the primary's node 1 receiver */
static bool both_roles;
/* for the next start_both: the standby seeds itself again from the primary's storage when told
 * it needs seeding ([replication] reseed_from) */
static bool standby_reseeds;
/* for the next start_both: both clusters name one witness file (DIR/witness) */
static bool with_witness;

static char *witness_edit(char *text)
{
	char line[400];
	snprintf(line, sizeof(line), "witness_file = %s/witness\n", cl.dir);
	return replace_all(text, "witness_file =\n", line);
}

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
	snprintf(to, sizeof(to), "role = primary\nstandby = 127.0.0.1:%d\nprimary_cluster = %s%s\ntoken_file = %s",
		 cl.base_port + 48 + 7, both_roles ? cl.name : "", both_roles ? "sb" : "", tok);
	text = replace_all(text, "role = primary\nstandby =\nprimary_cluster =\ntoken_file =", to);
	char line[200];
	if (primary_sync[0]) {
		snprintf(line, sizeof(line), "sync = %s\n", primary_sync);
		text = replace_all(text, "sync =\n", line);
	}
	if (primary_fallback[0]) {
		snprintf(line, sizeof(line), "sync_fallback_ms = %s\n", primary_fallback);
		text = replace_all(text, "sync_fallback_ms = 0\n", line);
	}
	if (primary_lag[0]) {
		snprintf(line, sizeof(line), "max_lag_bytes = %s\n", primary_lag);
		text = replace_all(text, "max_lag_bytes = 0\n", line);
	}
	if (primary_slot[0]) {
		snprintf(line, sizeof(line), "slot_max_bytes = %s\n", primary_slot);
		text = replace_all(text, "slot_max_bytes = 1G\n", line);
	}
	if (both_roles)
		text = replace_all(text, "open_wait_ms = 10000", "open_wait_ms = 1000");
	if (with_witness)
		text = witness_edit(text);
	primary_sync[0] = primary_fallback[0] = primary_lag[0] = primary_slot[0] = '\0';
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
	char peer[64] = "";
	if (both_roles)
		snprintf(peer, sizeof(peer), "127.0.0.1:%d", cl.base_port + 7);
	snprintf(to, sizeof(to), "role = standby\nstandby = %s\nprimary_cluster = %s\ntoken_file = %s", peer, cl.name, tok);
	text = replace_all(text, "role = primary\nstandby =\nprimary_cluster =\ntoken_file =", to);
	if (both_roles)
		text = replace_all(text, "open_wait_ms = 10000", "open_wait_ms = 1000");
	both_roles = false;
	if (with_witness)
		text = witness_edit(text);
	with_witness = false;
	if (standby_reseeds) {
		char line[400];
		snprintf(line, sizeof(line), "reseed_from = %s/shared\n", cl.dir);
		text = replace_all(text, "reseed_from =\n", line);
		standby_reseeds = false;
	}
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
	/* both stopped before either's logs are read: a sanitizer's report there ends the
	 * program, which must not leave the other cluster running */
	if (sb.conf[0] && run("%s -c %s stop all", CORAL_NODE, sb.conf)->code != 0)
		fprintf(stderr, "teardown: %s\n", res.out);
	if (run("%s -c %s stop all", CORAL_NODE, cl.conf)->code != 0)
		fprintf(stderr, "teardown: %s\n", res.out);
	if (sb.dir[0])
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
			int rc = run("cmp %s/%s %s/%s", pdir, seg, sdir, seg)->code;
			char cmp_out[1024];
			snprintf(cmp_out, sizeof(cmp_out), "%s", res.out);
			char gone[700];
			snprintf(gone, sizeof(gone), "%s/%s", pdir, seg);
			/* recycled on the primary since the listing (its checkpoint moved past it): there
			 * is nothing of the primary's left to compare it with */
			if (rc != 0 && access(gone, F_OK) != 0 && errno == ENOENT)
				continue;
			cr_expect_eq(rc, 0, "thread %d segment %s: %s", t, seg, cmp_out);
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
	/* a standby's sessions change nothing until it takes over, and have nothing to read
	 * before it is seeded; nor does its storage take a data file of its own meanwhile */
	cr_expect_neq(run("%s -c %s datafile create own 4", CORALCTL, sb.conf)->code, 0, "%s", res.out);
	cr_expect_neq(strstr(res.out, "is a standby"), NULL, "%s", res.out);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(sb.conf, 1, "test", "test_standby", &s), 0, "%s", coral_session_error(s));
	struct coral_block *b = NULL;
	cr_expect_eq(coral_block_get(s, 1, 0, CORAL_MODE_X, &b), CORAL_ERR_PERM, "the standby gave a block in X");
	cr_expect_neq(strstr(coral_session_error(s), "is a standby"), NULL, "%s", coral_session_error(s));
	cr_expect_eq(coral_block_get(s, 1, 0, CORAL_MODE_CR, &b), CORAL_ERR_NOENT, "%s", coral_session_error(s));
	cr_expect_neq(strstr(coral_session_error(s), "standby seed"), NULL, "%s", coral_session_error(s));
	coral_session_close(s);
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
static uint32_t file_id_of(const char *name);
static int commit_one(const char *conf, int node, uint32_t fid, uint64_t b, uint64_t v, char *err, size_t errsz);

Test(standby, the_standby_applies_the_primarys_transactions_and_its_copy_adds_up, .fini = stop_both)
{
	standby_reseeds = true; /* the primary's storage for the apply: a data file made after the seed */
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
	/* a session on the standby reads the copy meanwhile: every block a state the primary had
	 * (its balances add up to its total), never older than the one read before; S and X
	 * are refused */
	struct coral_session *s;
	cr_assert_eq(coral_session_open(sb.conf, 1, "test", "test_standby", &s), 0, "%s", coral_session_error(s));
	uint64_t seen[25] = {0}, reads = 0, went_back = 0, busy = 0;
	for (int i = 0; i < 2000; i++) {
		struct coral_block *b;
		uint64_t blk = (uint64_t)i % 25;
		int rc = coral_block_get(s, 1, blk, CORAL_MODE_CR, &b);
		if (rc == CORAL_ERR_BUSY) {
			busy++;
			continue;
		}
		cr_assert_eq(rc, 0, "%s", coral_session_error(s));
		const uint8_t *p = coral_block_data(b);
		int64_t sum = 0, total, v;
		for (int a = 0; a < 8 && blk * 8 + (uint64_t)a < 200; a++) {
			memcpy(&v, p + (size_t)a * 16 + 8, 8);
			sum += v;
		}
		memcpy(&total, p + 8 * 16, 8);
		cr_expect_eq(sum, total, "block %llu read on the standby: balances %lld, total %lld", (unsigned long long)blk,
			     (long long)sum, (long long)total);
		uint64_t scn = coral_block_scn(s, b);
		went_back += scn < seen[blk];
		seen[blk] = scn;
		coral_block_release(s, b);
		reads++;
	}
	fprintf(stderr, "reads on the standby: %llu (%llu while the copy was between states)\n", (unsigned long long)reads,
		(unsigned long long)busy);
	cr_expect_gt(reads, 1000);
	cr_expect_eq(went_back, 0, "a block read on the standby went back");
	struct coral_block *x;
	cr_expect_eq(coral_block_get(s, 1, 0, CORAL_MODE_S, &x), CORAL_ERR_PERM, "%s", coral_session_error(s));
	coral_session_close(s);
	bank_checked(bank, 0);
	wait_caught_up(20000);
	json_t *a = wait_applied(30000);
	cr_expect_gt(jint(a, "txns_applied"), 1000, "%s", json_dumps(a, 0));
	json_decref(a);
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --check-copy --json", CORAL_BUILDDIR, sb.conf)->code, 0,
		     "%s", res.out);
	/* a data file created on the primary after the seed: the apply makes it in the copy (from
	 * the primary's control file, [replication] reseed_from) and applies its changes */
	cr_assert_eq(run("%s -c %s datafile create late 4", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	uint32_t late = file_id_of("late");
	char err[512];
	cr_assert_eq(commit_one(cl.conf, 2, late, 2, 77, err, sizeof(err)), 0, "%s", err);
	uint64_t got = 0;
	for (int i = 0; i < 100 && got != 77; i++) {
		struct coral_session *s;
		struct coral_block *b;
		if (coral_session_open(sb.conf, 1, "test", "test_standby", &s) == 0 &&
		    coral_block_get(s, late, 2, CORAL_MODE_CR, &b) == 0) {
			memcpy(&got, coral_block_data(b), sizeof(got));
			coral_block_release(s, b);
		}
		coral_session_close(s);
		if (got != 77)
			usleep(100000);
	}
	cr_expect_eq(got, 77, "the standby's copy of a data file made after the seed: %s",
		     run("%s -c %s -n 1 standby status", CORALCTL, sb.conf)->out);
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

/* ---- synchronous commit and the RPO ---------------------------------------------------- */

#include <stdatomic.h>
#include <sys/mman.h>

#define CNT_BLOCKS 8

/* Committers: one process per primary node, each adding 1 to the first 8 bytes of its own
 * block of file cnt, commit by commit; acked[n] is the last value whose commit returned. */
static _Atomic uint64_t *acked;

/* The committer of acked[slot]: block `block` of file fid, on node of the cluster of conf. */
static void committer_on(const char *conf, int node, uint32_t fid, uint64_t block, int slot)
{
	struct coral_session *s;
	if (coral_session_open(conf, node, "test", "test_standby", &s) != 0)
		_exit(1);
	for (uint64_t v = 1;; v++) {
		struct coral_block *b;
		if (coral_block_get(s, fid, block, CORAL_MODE_X, &b) != 0)
			_exit(2);
		if (coral_block_modify(s, b, 0, &v, sizeof(v)) != 0)
			_exit(3);
		coral_block_release(s, b);
		if (coral_commit(s, NULL) != 0)
			_exit(4); /* the node is gone, or the gate held it past commit_timeout_ms */
		atomic_store(&acked[slot], v);
	}
}

static void committer(int node, uint32_t fid) { committer_on(cl.conf, node, fid, (uint64_t)(node - 1), node); }

static uint32_t file_id_of(const char *name)
{
	cr_assert_eq(run("%s -c %s --json datafile list", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	json_t *j = json_loads(res.out, 0, NULL);
	cr_assert_not_null(j, "%s", res.out);
	json_t *files = json_object_get(j, "files") ? json_object_get(j, "files") : j;
	uint32_t id = 0;
	for (size_t i = 0; i < json_array_size(files); i++)
		if (strcmp(jstr(json_array_get(files, i), "name"), name) == 0)
			id = (uint32_t)jint(json_array_get(files, i), "id");
	json_decref(j);
	cr_assert_gt(id, 0);
	return id;
}

static uint32_t cnt_file_id(void) { return file_id_of("cnt"); }

static void start_committers(pid_t pids[4])
{
	acked = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(acked, MAP_FAILED);
	uint32_t fid = cnt_file_id();
	for (int n = 1; n <= 3; n++) {
		pids[n] = fork();
		cr_assert_geq(pids[n], 0);
		if (pids[n] == 0)
			committer(n, fid);
	}
}

static void stop_committers(pid_t pids[4])
{
	for (int n = 1; n <= 3; n++) {
		kill(pids[n], SIGKILL);
		waitpid(pids[n], NULL, 0);
	}
}

/* The first 8 payload bytes of block b of the standby's copy of file cnt. */
static uint64_t copy_counter(int b)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/shared/standby/%s/cnt.dbf", sb.dir, cl.name);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	uint8_t blk[8192];
	cr_assert_eq(fseek(f, (long)b * 8192, SEEK_SET), 0);
	cr_assert_eq(fread(blk, 1, sizeof(blk), f), sizeof(blk));
	fclose(f);
	uint64_t v;
	memcpy(&v, blk + 32, 8);
	return v;
}

static void seed_and_wait(void)
{
	cr_assert_eq(run("%s -c %s datafile create cnt %d", CORALCTL, cl.conf, CNT_BLOCKS)->code, 0, "%s", res.out);
	cr_assert_eq(run("%s -c %s -n 1 standby seed %s/shared", CORALCTL, sb.conf, cl.dir)->code, 0, "%s", res.out);
	for (int i = 0; i < 100; i++) {
		json_t *a = standby_apply();
		bool ok = a && strcmp(jstr(a, "state"), "applying") == 0;
		json_decref(a);
		if (ok)
			return;
		usleep(100000);
	}
	cr_assert_fail("the standby did not start applying");
}

static json_t *commit_view(int node)
{
	json_t *j = ctl_json(node, "standby status");
	cr_assert_not_null(j);
	json_t *c = json_incref(json_object_get(j, "commit"));
	json_decref(j);
	cr_assert_not_null(c);
	return c;
}

/* Strict synchronous commit (FIRST 1 of the standby), and every primary node killed with
 * SIGKILL in the middle of the commits: once the standby has applied what it holds (finish,
 * the failover's first step), every commit that returned on the primary is there. */
Test(standby, strict_sync_loses_no_acknowledged_commit_when_every_primary_node_dies, .fini = stop_both)
{
	snprintf(primary_sync, sizeof(primary_sync), "FIRST 1 (sb%dsb)", (int)getpid());
	start_both();
	seed_and_wait();
	json_t *c = commit_view(1);
	cr_expect_neq(strstr(jstr(c, "mode"), "sync FIRST 1"), NULL, "%s", jstr(c, "mode"));
	json_decref(c);
	pid_t pids[4];
	start_committers(pids);
	sleep(3);
	c = commit_view(2);
	cr_expect_gt(jint(c, "waits"), 10, "commits did not wait for the standby: %s", json_dumps(c, 0));
	json_decref(c);
	kill_nodes(0, 1, 3);
	stop_committers(pids);
	uint64_t got[4];
	for (int n = 1; n <= 3; n++)
		got[n] = atomic_load(&acked[n]);
	cr_assert_gt(got[1] + got[2] + got[3], 30, "the committers did too little to tell");
	cr_assert_eq(run("%s -c %s -n 1 standby finish", CORALCTL, sb.conf)->code, 0, "%s", res.out);
	cr_expect_neq(strstr(res.out, "finished"), NULL, "%s", res.out);
	for (int n = 1; n <= 3; n++)
		cr_expect_geq(copy_counter(n - 1), got[n], "node %d: its commit of %llu returned, the standby has %llu", n,
			      (unsigned long long)got[n], (unsigned long long)copy_counter(n - 1));
	/* the standby takes no more redo from this primary */
	cr_assert_eq(run("%s -c %s -n 1 --json standby status", CORALCTL, sb.conf)->code, 0);
	cr_expect_neq(strstr(res.out, "finished (failover)"), NULL, "%s", res.out);
	munmap((void *)acked, 4096);
}

/* With sync_fallback_ms, the standby stopped: commits wait, then fall back to asynchronous
 * after it (recorded with the reason), go on, and wait again once the standby is back and
 * caught up. */
Test(standby, sync_falls_back_after_the_timeout_and_returns_when_the_standby_is_back, .fini = stop_both)
{
	snprintf(primary_sync, sizeof(primary_sync), "FIRST 1 (sb%dsb)", (int)getpid());
	snprintf(primary_fallback, sizeof(primary_fallback), "1500");
	start_both();
	seed_and_wait();
	pid_t pids[4];
	start_committers(pids);
	sleep(1);
	cr_assert_eq(run("%s -c %s stop all", CORAL_NODE, sb.conf)->code, 0, "%s", res.out);
	uint64_t at_stop = atomic_load(&acked[1]);
	sleep(4);
	uint64_t later = atomic_load(&acked[1]);
	cr_expect_gt(later, at_stop + 10, "commits did not go on after the fallback (%llu then %llu)",
		     (unsigned long long)at_stop, (unsigned long long)later);
	json_t *c = commit_view(1);
	cr_expect(json_is_true(json_object_get(c, "fallen_back")), "%s", json_dumps(c, 0));
	json_decref(c);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, sb.conf)->code, 0, "%s", res.out);
	bool again = false;
	for (int i = 0; i < 150 && !again; i++) {
		usleep(100000);
		c = commit_view(1);
		again = !json_is_true(json_object_get(c, "fallen_back")) && jint(c, "switches") >= 2;
		json_decref(c);
	}
	cr_expect(again, "commits did not become synchronous again");
	stop_committers(pids);
	cr_assert_eq(run("%s -c %s -n 1 standby history", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect_neq(strstr(res.out, "fell back"), NULL, "%s", res.out);
	cr_expect_neq(strstr(res.out, "sync again"), NULL, "%s", res.out);
	munmap((void *)acked, 4096);
}

/* Asynchronous with an RPO of 64 KiB: the standby's replicad stopped (SIGSTOP) for a while,
 * commits wait once it lacks more than that; every primary node killed afterwards: what the
 * standby lacks of any node's acknowledged commits is within the bound. */
Test(standby, async_with_an_rpo_loses_at_most_the_bound, .fini = stop_both)
{
	snprintf(primary_lag, sizeof(primary_lag), "64K");
	start_both();
	seed_and_wait();
	pid_t pids[4];
	start_committers(pids);
	sleep(1);
	char pidf[300];
	snprintf(pidf, sizeof(pidf), "%s/node1/replicad.pid", sb.dir);
	cr_assert_eq(run("kill -STOP $(cat %s)", pidf)->code, 0, "%s", res.out);
	uint64_t at_stop = atomic_load(&acked[1]);
	sleep(2);
	uint64_t held = atomic_load(&acked[1]);
	json_t *c = commit_view(1);
	cr_expect_gt(jint(c, "waiting") + jint(c, "waits"), 0, "no commit waited at the RPO: %s", json_dumps(c, 0));
	json_decref(c);
	/* about 64 KiB of commits (each some 200 bytes of redo) went on, then they waited */
	cr_expect_lt(held - at_stop, 2000, "commits went on past the RPO (%llu then %llu)", (unsigned long long)at_stop,
		     (unsigned long long)held);
	cr_assert_eq(run("kill -CONT $(cat %s)", pidf)->code, 0, "%s", res.out);
	sleep(1);
	kill_nodes(0, 1, 3);
	stop_committers(pids);
	cr_assert_eq(run("%s -c %s -n 1 standby finish", CORALCTL, sb.conf)->code, 0, "%s", res.out);
	for (int n = 1; n <= 3; n++) {
		uint64_t want = atomic_load(&acked[n]), have = copy_counter(n - 1);
		/* a commit is some 200 bytes: 64 KiB is at most ~330 of them */
		cr_expect_leq(want - (have < want ? have : want), 400, "node %d: %llu acknowledged, %llu on the standby", n,
			      (unsigned long long)want, (unsigned long long)have);
	}
	munmap((void *)acked, 4096);
}

/* Garbage on the standby's receiver (random bytes, a frame claiming 4 GiB, HTTP, a TLS hello,
 * zeros, half-closed connections), and 200 connections that say nothing: the receiver counts
 * and closes them, replicad does not restart, and the primary's threads keep arriving. */
Test(standby, garbage_and_idle_connections_on_the_receiver_hurt_nothing, .fini = stop_both)
{
	start_both();
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0, "%s",
		     res.out);
	wait_caught_up(20000);
	junk_state = 0x2545f4914f6cdd1dull;
	int conns = 0;
	for (int round = 0; round < 8; round++)
		conns += throw_junk(sb.port, NULL);
	cr_expect_geq(conns, 150);
	/* idle ones: at most 128 held, the rest refused; the held ones closed after the hello's time */
	int idle[200], held = 0;
	for (int i = 0; i < 200; i++)
		if ((idle[i] = junk_connect(sb.port, NULL)) >= 0)
			held++;
	cr_expect_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 2", CORAL_BUILDDIR, cl.conf)->code, 0, "%s",
		     res.out);
	for (int i = 0; i < 200; i++)
		if (idle[i] >= 0)
			close(idle[i]);
	wait_caught_up(20000);
	copies_equal();
	json_t *j = json_loads(run("%s -c %s -n 1 --json standby status", CORALCTL, sb.conf)->out, 0, NULL);
	cr_assert_not_null(j, "%s", res.out);
	cr_expect_gt(jint(j, "bad_hellos"), 100, "%s", res.out);
	json_decref(j);
	cr_expect_eq(run("%s -c %s --json status 1", CORAL_NODE, sb.conf)->code, 0, "the standby is not healthy: %s",
		     res.out);
	cr_expect_eq(run("grep -c 'replicad killed\\|replicad exited' %s/node1/node.log", sb.dir)->code, 1,
		     "replicad restarted: %s", res.out);
}

/* A failover: strict synchronous commit, coral-bank on the primary, every primary node
 * killed with SIGKILL in the middle; the standby finishes and takes over: the bank's accounts
 * there add up and take transfers (the bank passes on the new primary). The old primary,
 * started again, learns of it from the standby and is fenced: it takes no commit, and says
 * why. */
Test(standby, failover_opens_the_standby_and_the_old_primary_is_fenced, .fini = stop_both)
{
	snprintf(primary_sync, sizeof(primary_sync), "FIRST 1 (sb%dsb)", (int)getpid());
	with_witness = true;
	start_both();
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0, "%s",
		     res.out);
	seed_and_wait();
	pid_t bank = bank_background(BANK_ARGS " --seconds 10");
	sleep(3);
	kill_nodes(bank, 1, 3);
	cr_assert_eq(run("%s -c %s -n 1 standby failover", CORALCTL, sb.conf)->code, 0, "%s", res.out);
	cr_expect_neq(strstr(res.out, "took over at site epoch 2"), NULL, "%s", res.out);
	/* the new primary: the accounts add up, and it takes transfers */
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 2 --json", CORAL_BUILDDIR, sb.conf)->code, 0,
		     "the bank on the new primary: %s", res.out);
	json_t *b = json_loads(strchr(res.out, '{'), 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_expect_eq(jint(b, "total_before"), 200 * 1000, "%s", res.out);
	cr_expect_gt(jint(b, "transfers"), 50, "%s", res.out);
	json_decref(b);
	/* the old primary comes back while the new one is out of its reach (stopped): the witness
	 * says a takeover happened, and it is fenced all the same */
	cr_assert_eq(run("%s -c %s stop all", CORAL_NODE, sb.conf)->code, 0, "%s", res.out);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	int fenced = 0;
	for (int i = 0; i < 200 && fenced < 3; i++) {
		usleep(100000);
		fenced = 0;
		for (int n = 1; n <= 3; n++) {
			json_t *j = ctl_json(n, "standby status");
			json_t *c = j ? json_object_get(j, "commit") : NULL;
			fenced += c && jint(c, "fenced_epoch") == 2;
			json_decref(j);
		}
	}
	cr_assert_eq(fenced, 3, "the old primary's nodes did not learn of the failover");
	json_t *j1 = ctl_json(1, "standby status");
	cr_expect_neq(strstr(j1 ? jstr(json_object_get(j1, "commit"), "fenced_why") : "", "witness"), NULL,
		      "fenced but not by the witness: %s", res.out);
	json_decref(j1);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "test_standby", &s), 0, "%s", coral_session_error(s));
	struct coral_block *blk = NULL;
	int rc = coral_block_get(s, 1, 0, CORAL_MODE_X, &blk);
	if (rc == 0) {
		uint64_t v = 7;
		rc = coral_block_modify(s, blk, 0, &v, sizeof(v));
	}
	cr_expect_eq(rc, CORAL_ERR_FENCED, "the old primary took a change: %s", coral_session_error(s));
	cr_expect_neq(strstr(coral_session_error(s), "failed over"), NULL, "%s", coral_session_error(s));
	coral_session_close(s);
	cr_assert_eq(run("%s -c %s -n 2 standby history", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect_neq(strstr(res.out, "fenced"), NULL, "%s", res.out);
	/* for good: the fence is in the old primary's storage */
	cr_expect_eq(run("test -s %s/shared/fenced", cl.dir)->code, 0);
}

/* The slot at its cap: the standby stopped while the primary writes more than
 * slot_max_bytes (1 MiB here) of redo on a thread: the slot is dropped (in the history), the
 * segments are recycled as if there were no standby instead of filling the disk, and the
 * standby, started again, is told it needs seeding. */
Test(standby, a_slot_past_its_cap_is_dropped_and_the_standby_is_told_to_seed_again, .fini = stop_both)
{
	snprintf(primary_slot, sizeof(primary_slot), "1M");
	standby_reseeds = true;
	start_both();
	cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 1", CORAL_BUILDDIR, cl.conf)->code, 0, "%s",
		     res.out);
	wait_caught_up(20000);
	cr_assert_eq(run("%s -c %s stop all", CORAL_NODE, sb.conf)->code, 0, "%s", res.out);
	int dropped = 0;
	for (int round = 0; round < 15 && dropped == 0; round++) {
		cr_assert_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --seconds 3", CORAL_BUILDDIR, cl.conf)->code, 0,
			     "%s", res.out);
		for (int n = 1; n <= 3; n++) {
			json_t *j = ctl_json(n, "standby status");
			json_t *t = j ? json_array_get(json_object_get(j, "threads"), 0) : NULL;
			if (t && json_is_true(json_object_get(t, "slot_dropped")))
				dropped = n;
			json_decref(j);
		}
	}
	cr_assert_gt(dropped, 0, "no slot was dropped: the bank wrote too little redo");
	cr_assert_eq(run("%s -c %s -n %d standby history", CORALCTL, cl.conf, dropped)->code, 0, "%s", res.out);
	cr_expect_neq(strstr(res.out, "slot dropped"), NULL, "%s", res.out);
	/* recycled without the standby as the checkpoint moves on: the segment the standby's copy
	 * ends in goes (1 MiB segments) */
	int64_t durable = 0, acked = 0;
	bool connected;
	char err[300];
	cr_assert(thread_view(dropped, &durable, &acked, &connected, err, sizeof(err)));
	bool gone = false;
	for (int i = 0; i < 60 && !gone; i++) {
		gone = run("test -e %s/shared/redo/thread_%d/%08lld.redo", cl.dir, dropped, (long long)(acked >> 20))->code != 0;
		if (!gone)
			run("%s/tools/coral-bank -c %s " BANK_ARGS " --nodes %d --seconds 1", CORAL_BUILDDIR, cl.conf, dropped);
	}
	cr_assert(gone, "thread %d still holds segment %lld, where the standby's copy ends (LSN %lld)", dropped,
		  (long long)(acked >> 20), (long long)acked);
	/* a sender that still has the segment open reads it all the same: its replicad starts
	 * again without it (the redo is gone, as on a machine that restarted) */
	pid_t p = daemon_pid(dropped, "replicad");
	cr_assert_gt(p, 0);
	kill(p, SIGKILL);
	for (int i = 0; i < 100 && (daemon_pid(dropped, "replicad") <= 0 || daemon_pid(dropped, "replicad") == p); i++)
		usleep(100000);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, sb.conf)->code, 0, "%s", res.out);
	/* the standby's start and the sender's reconnection: seconds on a loaded machine
	 * (ASan), so up to 40 */
	bool told = false;
	for (int i = 0; i < 400 && !told; i++) {
		usleep(100000);
		/* said in the status until the standby has seeded itself again (quickly, with
		 * reseed_from), and kept in the history */
		json_t *j = ctl_json(dropped, "standby status");
		json_t *t = j ? json_array_get(json_object_get(j, "threads"), 0) : NULL;
		told = t && json_is_true(json_object_get(t, "needs_seed")) &&
		       strstr(jstr(t, "last_error"), "needs seeding") != NULL;
		json_decref(j);
		told = told || (run("%s -c %s -n %d standby history", CORALCTL, cl.conf, dropped)->code == 0 &&
				strstr(res.out, "needs seed") != NULL);
	}
	cr_expect(told, "node %d's replicad did not say the standby needs seeding", dropped);
	/* the standby heard it and, with reseed_from, seeded itself from the primary's storage:
	 * its copy is a state of the primary's again, whose accounts add up */
	json_t *a = wait_applied(60000);
	cr_assert_not_null(a, "the standby did not seed itself again: %s", res.out);
	cr_expect_gt(jint(a, "seeded_ms"), 0, "%s", json_dumps(a, 0));
	json_decref(a);
	cr_assert_eq(run("%s -c %s -n 1 standby history", CORALCTL, sb.conf)->code, 0, "%s", res.out);
	cr_expect_neq(strstr(res.out, "needs seed"), NULL, "%s", res.out);
	cr_expect_eq(run("%s/tools/coral-bank -c %s " BANK_ARGS " --check-copy", CORAL_BUILDDIR, sb.conf)->code, 0, "%s",
		     res.out);
}

/* ---- switchover ---------------------------------------------------------------------- */

static json_t *status_of(const char *conf, int node)
{
	if (run("%s -c %s -n %d --json standby status", CORALCTL, conf, node)->code != 0)
		return NULL;
	return json_loads(res.out, 0, NULL);
}

/* The first 8 bytes of block b of file fid, read in CR by a session of node of conf. */
static uint64_t counter_via(const char *conf, int node, uint32_t fid, uint64_t b)
{
	return read_u64(conf, node, fid, b, CORAL_MODE_CR);
}

/* One commit of v to block b on node of conf: 0, or the error. */
static int commit_one(const char *conf, int node, uint32_t fid, uint64_t b, uint64_t v, char *err, size_t errsz)
{
	struct coral_session *s;
	int rc = coral_session_open(conf, node, "test", "test_standby", &s);
	struct coral_block *blk = NULL;
	if (rc == 0)
		rc = coral_block_get(s, fid, b, CORAL_MODE_X, &blk);
	if (rc == 0)
		rc = coral_block_modify(s, blk, 0, &v, sizeof(v));
	if (blk)
		coral_block_release(s, blk);
	if (rc == 0)
		rc = coral_commit(s, NULL);
	snprintf(err, errsz, "%s", coral_session_error(s));
	coral_session_close(s);
	return rc;
}

/* Every node of conf's cluster fenced at epoch (its status says so), within 20 s. */
static void wait_fenced_at(const char *conf, int nodes, int64_t epoch)
{
	int fenced = 0;
	for (int i = 0; i < 200 && fenced < nodes; i++) {
		fenced = 0;
		for (int n = 1; n <= nodes; n++) {
			json_t *j = status_of(conf, n);
			json_t *c = j ? json_object_get(j, "commit") : NULL;
			fenced += c && jint(c, "fenced_epoch") == epoch;
			json_decref(j);
		}
		if (fenced < nodes)
			usleep(100000);
	}
	cr_assert_eq(fenced, nodes, "%d of %d nodes of %s fenced at epoch %lld", fenced, nodes, conf, (long long)epoch);
}

/* Node of conf is the primary, its replicad started again in that role (within 20 s). */
static void wait_primary(const char *conf, int node)
{
	bool ok = false;
	for (int i = 0; i < 200 && !ok; i++) {
		json_t *j = status_of(conf, node);
		ok = j && strcmp(jstr(j, "role"), "primary") == 0 && json_object_get(j, "commit") != NULL;
		json_decref(j);
		if (!ok)
			usleep(100000);
	}
	cr_assert(ok, "node %d of %s did not become the primary: %s", node, conf, res.out);
}

/* A switchover abandoned (a node of the primary stopped), then one under load, and back.
 * Committers on every node of the primary; the standby
 * switches over in the middle: every commit that returned on the old primary is on the new
 * one, which takes commits; the old primary's nodes are fenced. The old primary, stopped,
 * rejoins as a standby of the new one (coralctl standby rejoin, seeded from its storage) and
 * is started; a committer on the new primary, and the switch back: its commits are on the
 * first cluster, which is the primary again and takes commits; the other is fenced. */
Test(standby, a_switchover_and_back_under_load_loses_nothing, .fini = stop_both, .timeout = 300)
{
	both_roles = true;
	start_both();
	seed_and_wait();
	uint32_t fid = cnt_file_id();
	char err[512];
	/* first one abandoned: node 3's replicad stopped, its thread cannot close in time; the
	 * nodes that closed open again, and node 3, woken, takes the close and the abandon */
	pid_t r3 = daemon_pid(3, "replicad");
	cr_assert_gt(r3, 0);
	cr_assert_eq(kill(r3, SIGSTOP), 0);
	int code = run("%s -c %s -n 1 standby switchover --wait-ms 1500", CORALCTL, sb.conf)->code;
	kill(r3, SIGCONT);
	fprintf(stderr, "switchover with node 3 stopped: %s", res.out);
	cr_expect_neq(code, 0, "a switchover went through without node 3's thread: %s", res.out);
	cr_expect_neq(strstr(res.out, "abandoned"), NULL, "%s", res.out);
	for (int n = 1; n <= 3; n++) {
		int rc = -1;
		for (int i = 0; i < 100 && rc != 0; i++)
			if ((rc = commit_one(cl.conf, n, fid, 7, (uint64_t)n, err, sizeof(err))) != 0)
				usleep(100000);
		cr_expect_eq(rc, 0, "node %d of the primary takes no commit after the abandoned switchover: %s", n, err);
	}
	pid_t pids[4];
	start_committers(pids);
	sleep(2);
	cr_assert_eq(run("%s -c %s -n 1 standby switchover", CORALCTL, sb.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "switchover: %s", res.out);
	cr_expect_neq(strstr(res.out, "switched over"), NULL, "%s", res.out);
	usleep(300000);
	stop_committers(pids);
	uint64_t got[4], total = 0;
	for (int n = 1; n <= 3; n++)
		total += got[n] = atomic_load(&acked[n]);
	cr_assert_gt(total, 30, "the committers did too little to tell");
	for (int n = 1; n <= 3; n++) {
		uint64_t v = counter_via(sb.conf, 1, fid, (uint64_t)(n - 1));
		cr_expect(v == got[n] || v == got[n] + 1, "node %d: its commit of %llu returned, the new primary has %llu",
			  n, (unsigned long long)got[n], (unsigned long long)v);
	}
	wait_fenced_at(cl.conf, 3, 2);
	wait_primary(sb.conf, 1);
	cr_assert_eq(commit_one(sb.conf, 1, fid, 5, 4242, err, sizeof(err)), 0, "the new primary: %s", err);
	cr_expect_neq(commit_one(cl.conf, 2, fid, 5, 1, err, sizeof(err)), 0, "the old primary took a commit");
	/* the old primary rejoins as a standby, seeded from the new primary's storage */
	cr_assert_eq(run("%s -c %s stop all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_eq(run("%s -c %s standby rejoin %s/shared", CORALCTL, cl.conf, sb.dir)->code, 0, "%s", res.out);
	fprintf(stderr, "rejoin: %s", res.out);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xe), 1);
	bool applying = false;
	for (int i = 0; i < 300 && !applying; i++) {
		json_t *j = status_of(cl.conf, 1);
		json_t *a = j ? json_object_get(j, "apply") : NULL;
		applying = a && strcmp(jstr(a, "state"), "applying") == 0 && json_is_true(json_object_get(a, "consistent"));
		json_decref(j);
		if (!applying)
			usleep(100000);
	}
	if (!applying) {
		char mine[8192];
		snprintf(mine, sizeof(mine), "%s", res.out);
		run("%s -c %s -n 1 standby status; %s -c %s -n 1 standby history; %s -c %s -n 1 gcs stats | grep -i scn",
		    CORALCTL, sb.conf, CORALCTL, sb.conf, CORALCTL, sb.conf);
		cr_assert_fail("the old primary, a standby now, is not applying: %s\nthe new primary: %s", mine, res.out);
	}
	/* load on the new primary, and the switch back */
	acked[4] = 0;
	pid_t c = fork();
	cr_assert_geq(c, 0);
	if (c == 0)
		committer_on(sb.conf, 1, fid, 6, 4);
	sleep(2);
	cr_assert_eq(run("%s -c %s -n 1 standby switchover", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	fprintf(stderr, "switch back: %s", res.out);
	usleep(300000);
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	uint64_t g = atomic_load(&acked[4]);
	cr_assert_gt(g, 10, "the committer on the new primary did too little to tell");
	uint64_t v = counter_via(cl.conf, 1, fid, 6);
	cr_expect(v == g || v == g + 1, "its commit of %llu returned on the second primary, the first has %llu",
		  (unsigned long long)g, (unsigned long long)v);
	wait_fenced_at(sb.conf, 1, 3);
	for (int n = 1; n <= 3; n++)
		wait_primary(cl.conf, n);
	cr_expect_eq(counter_via(cl.conf, 2, fid, 5), 4242);
	cr_expect_eq(commit_one(cl.conf, 3, fid, 7, 99, err, sizeof(err)), 0, "the first cluster again: %s", err);
	munmap((void *)acked, 4096);
}

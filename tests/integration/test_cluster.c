/* Integration tests: real coral-node supervisors and daemons, three nodes from
 * etc/coral.conf rewritten into a temporary directory with a cluster name (and so SGA
 * names) of their own. Every test stops what it started and removes its directory; the
 * checks look at processes, /dev/shm and the run directories themselves. */
#include "harness.h"
#include "util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CORAL_NODE CORAL_BUILDDIR "/tools/coral-node"
#define CORALCTL CORAL_BUILDDIR "/tools/coralctl"

static const char *const daemons[] = {"raftd", "grdd", "lmsd", "lmdd", "smond", "replicad", "rsrcmgrd"};

static struct {
	char dir[64];
	char conf[128];
	char pristine[128];
	char name[32];
	int base_port;
} cl;

static void write_conf(const char *extra_from, const char *extra_to)
{
	char *text = test_conf_text(cl.dir, cl.name, &cl.base_port);
	/* quicker supervision for tests: 3 restarts, short backoff and grace, hang after 1.5 s */
	text = replace_all(text, "restart_max = 5", "restart_max = 3");
	text = replace_all(text, "restart_backoff_ms = 100", "restart_backoff_ms = 50");
	text = replace_all(text, "stop_grace_ms = 5000", "stop_grace_ms = 2000");
	text = replace_all(text, "hang_timeout_ms = 15000", "hang_timeout_ms = 1500");
	if (extra_from)
		text = replace_all(text, extra_from, extra_to);
	FILE *f = fopen(cl.conf, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	free(text);
}

static void setup(void)
{
	snprintf(cl.dir, sizeof(cl.dir), "/tmp/coral-it-XXXXXX");
	cr_assert_not_null(mkdtemp(cl.dir));
	snprintf(cl.conf, sizeof(cl.conf), "%s/coral.conf", cl.dir);
	snprintf(cl.name, sizeof(cl.name), "it%d", (int)getpid());
	write_conf(NULL, NULL);
	snprintf(cl.pristine, sizeof(cl.pristine), "%s/pristine.conf", cl.dir);
	run("cp %s %s", cl.conf, cl.pristine);
	/* daemons orphaned by a supervisor a test kills are re-parented to this process,
	 * which reaps them, instead of lingering as zombies under an init that may not */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
}

static int count_shm(void)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "coral.%s.", cl.name);
	DIR *d = opendir("/dev/shm");
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	if (d)
		closedir(d);
	return n;
}

/* Files left in the node's run directory other than node.log. */
static int count_run_files(int node)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/node%d", cl.dir, node);
	DIR *d = opendir(path);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.' && strncmp(e->d_name, "node.log", 8) != 0 &&
		     strcmp(e->d_name, "data") != 0; /* durable state stays, by design */
	if (d)
		closedir(d);
	return n;
}

static void teardown(void)
{
	/* the pristine copy: a test may have left cl.conf invalid on purpose */
	struct result *r = run("%s -c %s stop all", CORAL_NODE, cl.pristine);
	if (r->code != 0)
		fprintf(stderr, "teardown: coral-node stop all failed: %s\n", r->out);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		; /* orphans of a killed supervisor were given to us (subreaper) */
	print_node_log_errors(cl.dir);
	run("rm -rf %s", cl.dir);
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 90);

static json_t *status_json(int node)
{
	struct result *r = run("%s -c %s -n %d --json status", CORALCTL, cl.conf, node);
	if (r->code != 0)
		return NULL;
	json_error_t err;
	json_t *j = json_loads(r->out, 0, &err);
	cr_assert_not_null(j, "status is not JSON: %s\n%s", err.text, r->out);
	return j;
}

static json_t *daemon_of(json_t *st, const char *name)
{
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(st, "daemons"), i, d)
		if (strcmp(json_string_value(json_object_get(d, "daemon")), name) == 0)
			return d;
	return NULL;
}

static int dint(json_t *st, const char *name, const char *key)
{
	return (int)json_integer_value(json_object_get(daemon_of(st, name), key));
}

static const char *dstr(json_t *st, const char *name, const char *key)
{
	const char *s = json_string_value(json_object_get(daemon_of(st, name), key));
	return s ? s : "";
}

static void start_all(void)
{
	struct result *r = run("%s -c %s start all", CORAL_NODE, cl.conf);
	cr_assert_eq(r->code, 0, "start failed:\n%s", r->out);
}

Test(cluster, all_21_daemons_come_up_and_stop_leaves_nothing)
{
	start_all();
	pid_t pids[21];
	int n = 0;
	for (int node = 1; node <= 3; node++) {
		json_t *st = status_json(node);
		cr_assert_not_null(st, "node %d status failed: %s", node, res.out);
		cr_expect_str_eq(json_string_value(json_object_get(st, "state")), "running");
		for (int i = 0; i < 7; i++) {
			cr_expect_str_eq(dstr(st, daemons[i], "state"), "ready", "node %d %s", node, daemons[i]);
			pid_t pid = dint(st, daemons[i], "pid");
			cr_expect(coral_pid_is(pid, daemons[i]), "node %d %s pid %d", node, daemons[i], pid);
			/* every daemon's service exists */
			cr_expect(json_is_true(json_object_get(daemon_of(st, daemons[i]), "service_ready")),
				  "node %d %s service_ready", node, daemons[i]);
			pids[n++] = pid;
		}
		json_decref(st);
	}
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			cr_expect_neq(pids[i], pids[j]);
	cr_expect_eq(count_shm(), 3);
	struct result *r = run("%s -c %s -n 3 ping all", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 0, "%s", r->out);
	r = run("%s -c %s stop all", CORAL_NODE, cl.conf);
	cr_assert_eq(r->code, 0, "%s", r->out);
	for (int i = 0; i < n; i++)
		cr_expect(!coral_pid_alive(pids[i]), "pid %d still alive after stop", pids[i]);
	cr_expect_eq(count_shm(), 0, "no /dev/shm segment after stop");
	for (int node = 1; node <= 3; node++)
		cr_expect_eq(count_run_files(node), 0, "node %d left sockets or pidfiles", node);
}

Test(cluster, kill_9_restarts_within_2s)
{
	start_all();
	json_t *st = status_json(2);
	cr_assert_not_null(st);
	pid_t old = dint(st, "lmsd", "pid");
	json_decref(st);
	uint64_t t0 = coral_now_mono_ns();
	cr_assert_eq(kill(old, SIGKILL), 0);
	bool back = false;
	int restarts = -1;
	uint64_t took = 0;
	while (!back && coral_now_mono_ns() - t0 < 5000000000ull) {
		usleep(20000);
		st = status_json(2);
		if (st == NULL)
			continue;
		pid_t now = dint(st, "lmsd", "pid");
		if (now > 0 && now != old && strcmp(dstr(st, "lmsd", "state"), "ready") == 0) {
			back = true;
			took = coral_now_mono_ns() - t0;
			restarts = dint(st, "lmsd", "restarts");
			cr_expect_eq(dint(st, "grdd", "restarts"), 0);
			cr_expect(strstr(dstr(st, "lmsd", "note"), "signal 9") != NULL, "%s",
				  dstr(st, "lmsd", "note"));
		}
		json_decref(st);
	}
	cr_assert(back, "lmsd was not restarted");
	cr_expect_lt(took, 2000000000ull, "restart took %llu ms", (unsigned long long)(took / 1000000));
	cr_expect_eq(restarts, 1);
	cr_log_info("lmsd restarted and ready %llu ms after kill -9",
		    (unsigned long long)(took / 1000000));
}

Test(cluster, crash_loop_reaches_the_cap_and_degrades)
{
	struct result *r = run("CORAL_TEST_CRASH=lmdd %s -c %s start 1", CORAL_NODE, cl.conf);
	cr_assert_eq(r->code, 0, "%s", r->out);
	bool degraded = false;
	json_t *st = NULL;
	uint64_t t0 = coral_now_mono_ns();
	while (!degraded && coral_now_mono_ns() - t0 < 20000000000ull) {
		usleep(100000);
		json_decref(st);
		st = status_json(1);
		degraded = st && strcmp(json_string_value(json_object_get(st, "state")), "degraded") == 0;
	}
	cr_assert(degraded, "node 1 never reported degraded");
	const char *reason = json_string_value(json_object_get(st, "reason"));
	cr_expect(strstr(reason, "lmdd") && strstr(reason, "3 times"), "reason: %s", reason);
	cr_expect_str_eq(dstr(st, "lmdd", "state"), "failed");
	cr_expect_eq(dint(st, "lmdd", "restarts"), 3);
	cr_expect_str_eq(dstr(st, "lmsd", "state"), "ready", "the others keep running");
	json_decref(st);
	r = run("%s -c %s status 1", CORAL_NODE, cl.conf);
	cr_expect_eq(r->code, 1, "status exits 1 when degraded:\n%s", r->out);
	cr_expect(strstr(r->out, "degraded: lmdd") != NULL, "%s", r->out);
	r = run("%s -c %s stop 1", CORAL_NODE, cl.conf);
	cr_expect_eq(r->code, 0);
	cr_expect_eq(count_shm(), 0);
	cr_expect_eq(count_run_files(1), 0);
}

Test(cluster, hung_daemon_is_killed_and_restarted)
{
	struct result *r = run("%s -c %s start 1", CORAL_NODE, cl.conf);
	cr_assert_eq(r->code, 0, "%s", r->out);
	json_t *st = status_json(1);
	pid_t old = dint(st, "smond", "pid");
	json_decref(st);
	kill(old, SIGSTOP); /* hung: alive, but no heartbeat */
	bool back = false;
	uint64_t t0 = coral_now_mono_ns();
	while (!back && coral_now_mono_ns() - t0 < 10000000000ull) {
		usleep(100000);
		st = status_json(1);
		back = st && dint(st, "smond", "pid") != old &&
		       strcmp(dstr(st, "smond", "state"), "ready") == 0 && dint(st, "smond", "restarts") == 1;
		json_decref(st);
	}
	cr_expect(back, "a stopped smond was not replaced");
	cr_expect(!coral_pid_alive(old));
}

Test(cluster, bad_config_starts_nothing)
{
	char bad[160];
	snprintf(bad, sizeof(bad), "%s/bad.conf", cl.dir);
	FILE *f = fopen(bad, "w");
	fprintf(f, "[cluster]\nname = %s\n\n[node.1]\nid = 1\nhost = 127.0.0.1\nbase_port = 9100\n"
		   "run_dir = %s/node1\n\n[node.2]\nid = 1\nhost = 127.0.0.1\nbase_port = 9200\n"
		   "run_dir = %s/node2\n", cl.name, cl.dir, cl.dir);
	fclose(f);
	struct result *r = run("%s -c %s start all", CORAL_NODE, bad);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "bad.conf:11: [node.2] id: duplicate node id 1") != NULL, "%s", r->out);
	cr_expect_eq(count_shm(), 0);
	struct stat sb;
	cr_expect_neq(stat(cl.dir, &sb) == 0 && stat("node1", &sb) == 0, 1);
	char node1[160];
	snprintf(node1, sizeof(node1), "%s/node1", cl.dir);
	cr_expect_neq(stat(node1, &sb), 0, "no run directory created");
	r = run("%s -c %s/missing.conf start all", CORAL_NODE, cl.dir);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "missing.conf: cannot read the file") != NULL, "%s", r->out);
	r = run("%s -c %s -n", CORAL_NODE, bad);
	cr_expect_eq(r->code, 1);
	r = run("%s/daemons/lmsd/lmsd -c %s -n", CORAL_BUILDDIR, bad);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "bad.conf:11") != NULL, "%s", r->out);
}

Test(cluster, coralctl_errors_say_what_to_do)
{
	struct result *r = run("%s -c %s -n 2 status", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "node 2 is not running") && strstr(r->out, "coral-node start 2"), "%s",
		  r->out);
	r = run("%s -c %s -n 2 ping lmsd", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "coral-node start 2") != NULL, "%s", r->out);
	r = run("%s -c %s -n 2 frobnicate", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 2);
	r = run("%s -c %s -n 9 status", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 2);
	r = run("%s -c %s ping nosuchd", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 2);
	r = run("%s -c %s status 2", CORAL_NODE, cl.conf);
	cr_expect_eq(r->code, 3, "not running: LSB status 3");
}

Test(cluster, second_start_refused_and_orphans_cleaned)
{
	struct result *r = run("%s -c %s start 1", CORAL_NODE, cl.conf);
	cr_assert_eq(r->code, 0, "%s", r->out);
	r = run("%s -c %s start 1", CORAL_NODE, cl.conf);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "already running") != NULL, "%s", r->out);
	json_t *st = status_json(1);
	pid_t sup = (pid_t)json_integer_value(json_object_get(st, "supervisor_pid"));
	pid_t raftd = dint(st, "raftd", "pid");
	json_decref(st);
	kill(sup, SIGKILL); /* the supervisor dies; its daemons live on */
	usleep(200000);
	r = run("%s -c %s start 1", CORAL_NODE, cl.conf);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "running without a supervisor") != NULL, "%s", r->out);
	r = run("%s -c %s stop 1", CORAL_NODE, cl.conf);
	cr_expect_eq(r->code, 0);
	cr_expect(strstr(r->out, "orphaned") != NULL, "%s", r->out);
	cr_expect(!coral_pid_alive(raftd));
	cr_expect_eq(count_shm(), 0);
	cr_expect_eq(count_run_files(1), 0);
	r = run("%s -c %s start 1", CORAL_NODE, cl.conf);
	cr_expect_eq(r->code, 0, "starts again after the clean-up: %s", r->out);
}

Test(cluster, sighup_and_reload_apply_reloadable_options)
{
	struct result *r = run("%s -c %s start 1", CORAL_NODE, cl.conf);
	cr_assert_eq(r->code, 0, "%s", r->out);
	write_conf("[lmsd]\nlog_level = info", "[lmsd]\nlog_level = debug");
	json_t *st = status_json(1);
	pid_t sup = (pid_t)json_integer_value(json_object_get(st, "supervisor_pid"));
	json_decref(st);
	kill(sup, SIGHUP); /* the supervisor passes it to every daemon */
	bool seen = false;
	for (int i = 0; i < 50 && !seen; i++) {
		usleep(100000);
		r = run("%s -c %s -n 1 config lmsd", CORALCTL, cl.conf);
		seen = strstr(r->out, "log_level = debug") != NULL;
	}
	cr_expect(seen, "lmsd did not reload on SIGHUP:\n%s", r->out);
	write_conf("max_frame = 4M", "max_frame = 8M");
	r = run("%s -c %s -n 1 reload grdd", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 0, "%s", r->out);
	cr_expect(strstr(r->out, "[cluster] max_frame: 4M -> 8M not applied") != NULL, "%s", r->out);
	r = run("%s -c %s -n 1 --json config grdd", CORALCTL, cl.conf);
	cr_expect(strstr(r->out, "\"max_frame\": \"4M\"") != NULL, "%s", r->out);
	/* an invalid file is refused as a whole and changes nothing */
	FILE *f = fopen(cl.conf, "a");
	fputs("\n[cluster]\nbogus = 1\n", f);
	fclose(f);
	r = run("%s -c %s -n 1 reload lmsd", CORALCTL, cl.conf);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "bogus: unknown option") != NULL, "%s", r->out);
}

Test(cluster, read_only_clients_cannot_reload)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	struct result *r = run("%s -c %s start 1", CORAL_NODE, cl.conf);
	cr_assert_eq(r->code, 0, "%s", r->out);
	/* let an unprivileged user reach the socket: then only SO_PEERCRED stands in its way */
	run("chmod 0755 %s %s/node1 && chmod 0666 %s/node1/lmsd.sock", cl.dir, cl.dir, cl.dir);
	r = run("setpriv --reuid=65534 --regid=65534 --clear-groups %s -c %s -n 1 reload lmsd", CORALCTL,
		cl.conf);
	cr_expect_eq(r->code, 1);
	cr_expect(strstr(r->out, "needs admin rights") != NULL, "%s", r->out);
	r = run("setpriv --reuid=65534 --regid=65534 --clear-groups %s -c %s -n 1 ping lmsd", CORALCTL,
		cl.conf);
	cr_expect_eq(r->code, 0, "read-only requests are allowed: %s", r->out);
}

/* What the raftd integration tests share on top of harness.h: one cluster per test in a
 * temporary directory (its configuration edited by the test, then started, stopped and
 * removed), coralctl --json calls, waiting for an agreed leader, a node's raftd pid and a
 * member's entry. Header-only, like harness.h. */
#ifndef CORAL_TEST_RAFT_HARNESS_H
#define CORAL_TEST_RAFT_HARNESS_H

#include "harness.h"
#include "util.h"

#include <jansson.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define CORAL_NODE CORAL_BUILDDIR "/tools/coral-node"
#define CORALCTL CORAL_BUILDDIR "/tools/coralctl"

static struct {
	char dir[64], conf[128], name[32];
	int base_port;
} cl;

/* Writes the test's configuration: etc/coral.conf with its own directory, name and ports,
 * then edit() (if any) applied. Does not start anything. */
static inline void cl_prepare(const char *prefix, char *(*edit)(char *text))
{
	snprintf(cl.dir, sizeof(cl.dir), "/tmp/coral-%s-XXXXXX", prefix);
	cr_assert_not_null(mkdtemp(cl.dir));
	snprintf(cl.conf, sizeof(cl.conf), "%s/coral.conf", cl.dir);
	snprintf(cl.name, sizeof(cl.name), "%s%d", prefix, (int)getpid());
	char *text = test_conf_text(cl.dir, cl.name, &cl.base_port);
	/* a raftd stopped with SIGSTOP must not be restarted by its supervisor */
	text = replace_all(text, "hang_timeout_ms = 15000", "hang_timeout_ms = 0");
	if (edit)
		text = edit(text);
	FILE *f = fopen(cl.conf, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	free(text);
	/* daemons orphaned by a supervisor are re-parented to this process, which reaps them */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
}

/* A token file in the test's directory (DIR/name, mode 0640) holding token: its path in
 * path. */
static inline void write_token(const char *name, const char *token, char *path, size_t pathsz)
{
	snprintf(path, pathsz, "%s/%s", cl.dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "%s\n", token);
	fclose(f);
	cr_assert_eq(chmod(path, 0640), 0);
}

static inline void cl_teardown(void)
{
	if (run("%s -c %s stop all", CORAL_NODE, cl.conf)->code != 0)
		fprintf(stderr, "teardown: %s\n", res.out);
	print_node_log_errors(cl.dir);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	/* CORAL_TEST_KEEP=1: the directory (logs, redo, data files) stays, for a post-mortem */
	if (getenv("CORAL_TEST_KEEP") && getenv("CORAL_TEST_KEEP")[0] == '1')
		fprintf(stderr, "teardown: kept %s\n", cl.dir);
	else
		run("rm -rf %s", cl.dir);
}

static inline json_t *ctl_json(int node, const char *cmd)
{
	if (run("%s -c %s -n %d --json %s", CORALCTL, cl.conf, node, cmd)->code != 0)
		return NULL;
	return json_loads(res.out, 0, NULL);
}

static inline int64_t jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static inline const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

/* Waits until every node in nodes_mask (bit n for node n) agrees on one leader and is
 * not fenced; returns it, or -1 after ms. */
static inline int wait_leader(int ms, unsigned nodes_mask)
{
	uint64_t end = coral_now_mono_ns() + (uint64_t)ms * 1000000ull;
	while (coral_now_mono_ns() < end) {
		int leader = -1;
		bool ok = true;
		for (int n = 1; n < 32 && ok; n++) {
			if (!(nodes_mask & (1u << n)))
				continue;
			json_t *st = ctl_json(n, "raft status");
			if (st == NULL) {
				ok = false;
				break;
			}
			int l = (int)jint(st, "leader");
			ok = l > 0 && (leader < 0 || l == leader) && !json_is_true(json_object_get(st, "fenced"));
			leader = l;
			json_decref(st);
		}
		if (ok)
			return leader;
		usleep(50000);
	}
	return -1;
}

/* The pid of a daemon of a node (its pid file), or 0. */
static inline pid_t daemon_pid(int node, const char *name)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/node%d/%s.pid", cl.dir, node, name);
	FILE *f = fopen(path, "r");
	int pid = 0;
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	return (pid_t)pid;
}

static inline pid_t raftd_pid(int node) { return daemon_pid(node, "raftd"); }

/* The bucket map version grdd of a node has applied (-1: no answer). */
static inline int64_t map_version(int node)
{
	json_t *s = ctl_json(node, "grd status");
	int64_t v = s ? jint(s, "map_version") : -1;
	json_decref(s);
	return v;
}

/* The version of the first map of node 1 that holds n nodes, once nodes 1..n have all applied
 * it (0 if that does not happen within 15 s). The first map may be made before the last node
 * has joined: a test that compares versions later must start from the full one. */
static inline int64_t wait_full_map(int n)
{
	int64_t want = 0;
	for (int i = 0; i < 150; i++) {
		json_t *st = ctl_json(1, "grd status");
		if (st && (int)json_array_size(json_object_get(st, "nodes")) == n)
			want = jint(st, "map_version");
		json_decref(st);
		bool all = want > 0;
		for (int k = 2; k <= n && all; k++)
			all = map_version(k) >= want;
		if (all)
			return want;
		usleep(100000);
	}
	return 0;
}

/* The entry of member id in a `cluster members --json` answer, or NULL. */
static inline json_t *member(json_t *members, int id)
{
	json_t *arr = json_object_get(members, "members");
	for (size_t i = 0; i < json_array_size(arr); i++)
		if (jint(json_array_get(arr, i), "id") == id)
			return json_array_get(arr, i);
	return NULL;
}

/* The first event of `kind` about `node` in `raft history --json` of node `on`, at or
 * after after_ms (ms since the epoch); its at_ms, or 0. */
static inline int64_t history_at(int on, const char *kind, int node, int64_t after_ms)
{
	json_t *h = ctl_json(on, "raft history");
	int64_t at = 0;
	json_t *arr = json_object_get(h, "events");
	for (size_t i = 0; i < json_array_size(arr) && at == 0; i++) {
		json_t *e = json_array_get(arr, i);
		if (strcmp(jstr(e, "kind"), kind) == 0 && jint(e, "node") == node &&
		    jint(e, "at_ms") >= after_ms)
			at = jint(e, "at_ms");
	}
	json_decref(h);
	return at;
}

#endif

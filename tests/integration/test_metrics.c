/* The metrics port as Prometheus uses it: three nodes, a scrape without the token of
 * [metrics] token_file refused (401), with a wrong one too (403); the exposition parses
 * line by line (promtool check metrics); Debian's prometheus, started here with a scrape
 * config for the three nodes, counts the bank's transfers through its query API (the
 * commits of the redo threads, the 2-way and 3-way transfers, the latency histograms), and
 * sees every daemon up. */
#include "raft_harness.h"
#include "coral_harness.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "metrics-token-of-the-test-0123456789"

static pid_t prom_pid;

static void teardown(void)
{
	if (prom_pid > 0) {
		kill(prom_pid, SIGTERM);
		waitpid(prom_pid, NULL, 0);
		prom_pid = 0;
	}
	cl_teardown();
}

TestSuite(metrics, .fini = teardown, .timeout = 300);

static char token_path[200];

static char *with_token(char *text)
{
	write_token("metrics.token", TOKEN, token_path, sizeof(token_path));
	char line[300];
	snprintf(line, sizeof(line), "\ntoken_file = %s\n", token_path);
	return replace_all(text, "\ntoken_file =\n", line);
}

/* node's metrics port (base_port + 16 (node - 1) + 6): the HTTP status; the body in
 * DIR/scrape.txt */
static int scrape(int node, const char *path, const char *auth)
{
	char hdr[256] = "";
	if (auth)
		snprintf(hdr, sizeof(hdr), "-H 'Authorization: %s'", auth);
	run("curl -s -m 5 -o %s/scrape.txt -w '%%{http_code}' %s 'http://127.0.0.1:%d%s'", cl.dir, hdr,
	    cl.base_port + 16 * (node - 1) + 6, path);
	return atoi(res.out);
}

/* A Prometheus query's single value (sum(...), count(...)), or -1. */
static double prom_query(int port, const char *q)
{
	run("curl -s -m 5 -G 'http://127.0.0.1:%d/api/v1/query' --data-urlencode 'query=%s'", port, q);
	json_t *o = json_loads(res.out, 0, NULL);
	double v = -1;
	json_t *r = o ? json_object_get(json_object_get(o, "data"), "result") : NULL;
	if (json_array_size(r) == 1) {
		json_t *val = json_array_get(json_object_get(json_array_get(r, 0), "value"), 1);
		if (json_is_string(val))
			v = atof(json_string_value(val));
	}
	json_decref(o);
	return v;
}

Test(metrics, prometheus_scrapes_three_nodes_and_counts_the_banks_transfers)
{
	cr_assert_eq(run("command -v prometheus && command -v promtool")->code, 0,
		     "prometheus is not installed (scripts/install-deps.sh installs it): %s", res.out);
	cl_prepare("met", with_token);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	cr_assert_geq(wait_full_map(3), 1, "the map of three nodes did not reach every node");

	/* who may scrape */
	cr_expect_eq(scrape(1, "/metrics", NULL), 401, "no identity");
	cr_expect_eq(scrape(1, "/metrics", "Bearer not-the-token-at-all-no"), 403, "a wrong token");
	cr_expect_eq(scrape(1, "/metrics", "Basic " TOKEN), 403, "not a bearer token");
	cr_expect_eq(scrape(1, "/other", "Bearer " TOKEN), 404);
	run("curl -s -m 5 -X POST --data-binary x -o /dev/null -w '%%{http_code}' -H 'Authorization: Bearer %s' "
	    "'http://127.0.0.1:%d/metrics'", TOKEN, cl.base_port + 6);
	cr_expect_neq(atoi(res.out), 200, "a POST is not served: %s", res.out);
	for (int n = 1; n <= 3; n++) {
		cr_assert_eq(scrape(n, "/metrics", "Bearer " TOKEN), 200, "node %d", n);
		cr_expect_eq(run("promtool check metrics < %s/scrape.txt", cl.dir)->code, 0,
			     "node %d's exposition does not pass promtool: %s", n, res.out);
	}
	/* what coralctl metrics prints is the port's text (the same figures, read from the SGA) */
	cr_expect_eq(run("%s/tools/coralctl -c %s -n 2 metrics | promtool check metrics", CORAL_BUILDDIR,
			 cl.conf)->code, 0, "%s", res.out);
	run("grep -c '^coral_gcs_two_way_total{node=\"1\",daemon=\"lmsd\"}' %s/scrape.txt", cl.dir);
	cr_expect_eq(atoi(res.out), 0, "node 3's scrape carries node 1's figures");
	run("grep -c '^coral_daemon_up{node=\"3\",daemon=\"lmdd\"} 1$' %s/scrape.txt", cl.dir);
	cr_expect_eq(atoi(res.out), 1, "node 3's lmdd is not shown up");

	/* the bank, then Prometheus */
	cr_assert_eq(run("%s/tools/coral-bank -c %s --accounts 400 --per-block 8 --sessions 2 --readers 0 "
			 "--seconds 3 --json", CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_assert(json_is_true(json_object_get(b, "ok")), "%s", res.out);
	double transfers = (double)jint(b, "transfers"), moved = (double)(jint(b, "two_way") + jint(b, "three_way"));
	double redo_commits = (double)jint(b, "redo_commits");
	json_decref(b);
	cr_assert_gt(transfers, 100);

	int port = cl.base_port + 96;  /* a test's own in its block (harness.h) */
	char cfg[300], data[300];
	snprintf(cfg, sizeof(cfg), "%s/prometheus.yml", cl.dir);
	snprintf(data, sizeof(data), "%s/prometheus-data", cl.dir);
	FILE *f = fopen(cfg, "w");
	cr_assert_not_null(f);
	fprintf(f, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
		   "scrape_configs:\n  - job_name: coral\n    authorization:\n      credentials_file: %s\n"
		   "    static_configs:\n      - targets: ['127.0.0.1:%d', '127.0.0.1:%d', '127.0.0.1:%d']\n",
		token_path, cl.base_port + 6, cl.base_port + 22, cl.base_port + 38);
	fclose(f);
	cr_assert_eq(run("promtool check config %s", cfg)->code, 0, "%s", res.out);
	prom_pid = fork();
	cr_assert_geq(prom_pid, 0);
	if (prom_pid == 0) {
		char a1[400], a2[400], a3[64], log[300];
		snprintf(a1, sizeof(a1), "--config.file=%s", cfg);
		snprintf(a2, sizeof(a2), "--storage.tsdb.path=%s", data);
		snprintf(a3, sizeof(a3), "--web.listen-address=127.0.0.1:%d", port);
		snprintf(log, sizeof(log), "%s/prometheus.log", cl.dir);
		freopen(log, "w", stdout);
		freopen(log, "a", stderr);
		execlp("prometheus", "prometheus", a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	double up = -1, commits = -1, gcs = -1, hist = -1;
	for (int i = 0; i < 300; i++) {
		up = prom_query(port, "count(coral_daemon_up{job=\"coral\"} == 1)");
		commits = prom_query(port, "sum(coral_redo_commits_total)");
		gcs = prom_query(port, "sum(coral_gcs_two_way_total) + sum(coral_gcs_three_way_total)");
		hist = prom_query(port, "sum(coral_gcs_request_seconds_count)");
		if (up == 21 && commits >= transfers && gcs >= moved && hist > 0)
			break;
		usleep(100000);
	}
	fprintf(stderr, "prometheus: %.0f daemons up, %.0f commits (bank: %.0f transfers, %.0f commit records), "
			"%.0f 2-way and 3-way (bank: %.0f), %.0f requests in the histograms\n",
		up, commits, transfers, redo_commits, gcs, moved, hist);
	cr_expect_eq(up, 21, "Prometheus does not see 7 daemons up on each of 3 nodes");
	cr_expect_geq(commits, transfers, "the commits Prometheus counts fall short of the bank's transfers");
	cr_expect_leq(commits, redo_commits + 16, "Prometheus counts more commits than the redo threads hold");
	cr_expect_geq(gcs, moved, "the transfers between nodes Prometheus counts fall short of the bank's");
	cr_expect_gt(hist, 0);
	double le = prom_query(port, "histogram_quantile(0.99, sum by (le) (coral_gcs_request_seconds_bucket{kind=\"2-way\"}))");
	fprintf(stderr, "prometheus: 2-way p99 %.6f s\n", le);
	cr_expect(le > 0 && le < 10, "the 2-way p99 from the histogram: %f", le);
}

/* coralctl top in a terminal (tmux): the screen shows the three nodes running, the leader
 * marked, every daemon up; q leaves. */
Test(metrics, coralctl_top_shows_the_three_nodes_and_the_leader)
{
	cr_assert_eq(run("command -v tmux")->code, 0, "tmux is not installed (scripts/install-deps.sh installs it)");
	cl_prepare("top", with_token);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	int leader = wait_leader(15000, 0xE);
	cr_assert_geq(leader, 1);
	char sess[64];
	snprintf(sess, sizeof(sess), "coraltop%d", (int)getpid());
	cr_assert_eq(run("tmux new-session -d -s %s -x 200 -y 40 '%s/tools/coralctl -c %s top'", sess, CORAL_BUILDDIR,
			 cl.conf)->code, 0, "%s", res.out);
	bool seen = false;
	char want[64];
	snprintf(want, sizeof(want), "leader: node %d", leader);
	for (int i = 0; i < 50 && !seen; i++) {
		usleep(200000);
		run("tmux capture-pane -p -t %s", sess);
		seen = strstr(res.out, want) && strstr(res.out, "DAEMONS");
	}
	fprintf(stderr, "coralctl top:\n%s\n", res.out);
	cr_expect(seen, "the screen does not name the leader: %s", res.out);
	int running = 0;
	for (const char *p = res.out; (p = strstr(p, " running ")) != NULL; p++)
		running++;
	cr_expect_eq(running, 3, "three nodes running: %s", res.out);
	cr_expect_null(strstr(res.out, "DOWN"), "a daemon shown down: %s", res.out);
	run("tmux send-keys -t %s q", sess);
	bool gone = false;
	for (int i = 0; i < 30 && !gone; i++) {
		usleep(100000);
		gone = run("tmux has-session -t %s 2>/dev/null", sess)->code != 0;
	}
	cr_expect(gone, "q did not end coralctl top");
	if (!gone)
		run("tmux kill-session -t %s", sess);
	/* the same through the metrics ports, with the token, as from another machine */
	cr_expect_eq(run("%s -c %s top --scrape --count 2 --interval 300", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "leader: node") != NULL, "top --scrape: %s", res.out);
	running = 0;
	for (const char *p = res.out; (p = strstr(p, " running ")) != NULL; p++)
		running++;
	cr_expect_geq(running, 3, "three nodes running through their ports: %s", res.out);
}

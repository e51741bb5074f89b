/* Who may do what, tried as an outsider would against a three-node cluster: HTTP reads are
 * open, an HTTP write without the token of [raft] http_token_file is refused (401), with a
 * wrong one too (403), with the right one it commits; nobody writes grd/map over HTTP, nor
 * through raftd's socket unless it is grdd; an oversized header is refused; and the bank
 * still adds up afterwards, the bucket map unchanged. 100 idle clients on raftd's socket:
 * coralctl is told why it is refused while they hold every slot, and answered once they
 * have been closed for idling; a silent crowd on the HTTP ports is held to their bound; and
 * garbage on every port and socket of a node hurts no daemon. */
#include "raft_harness.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <errno.h>

#define TOKEN "s3cret-token-of-the-test-0123456789"

TestSuite(security, .fini = cl_teardown, .timeout = 240);

static char *with_token(char *text)
{
	char path[160], line[200];
	write_token("http.token", TOKEN, path, sizeof(path));
	snprintf(line, sizeof(line), "http_token_file = %s\n", path);
	return replace_all(text, "http_token_file =\n", line);
}

/* The HTTP status of a request to node 1's API (and its body in res.out after a newline). */
static int http(const char *method, const char *path, const char *auth, const char *body)
{
	char hdr[256] = "";
	if (auth)
		snprintf(hdr, sizeof(hdr), "-H 'Authorization: %s'", auth);
	run("curl -s -m 5 -o /dev/stdout -w '\\n%%{http_code}' -X %s %s %s%s%s 'http://127.0.0.1:%d%s'", method, hdr,
	    body ? "--data-binary '" : "", body ? body : "", body ? "'" : "", cl.base_port + 1, path);
	const char *nl = strrchr(res.out, '\n');
	return nl ? atoi(nl + 1) : -1;
}

Test(security, http_writes_need_an_identity_and_daemon_keys_their_daemon)
{
	cl_prepare("sec", with_token);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	int64_t v0 = wait_full_map(3);
	cr_assert_geq(v0, 1, "the map of three nodes did not reach every node");

	cr_expect_eq(http("GET", "/v1/status", NULL, NULL), 200, "reads are open: %s", res.out);
	cr_expect_eq(http("PUT", "/v1/kv/app/x", NULL, "1"), 401, "no identity: %s", res.out);
	cr_expect_eq(http("DELETE", "/v1/kv/app/x", NULL, NULL), 401, "%s", res.out);
	cr_expect_eq(http("PUT", "/v1/kv/app/x", "Bearer not-the-token-at-all-no", "1"), 403, "%s", res.out);
	cr_expect_eq(http("PUT", "/v1/kv/app/x", "Basic " TOKEN, "1"), 403, "%s", res.out);
	cr_expect_eq(http("PUT", "/v1/kv/app/x", "Bearer " TOKEN, "42"), 200, "the token: %s", res.out);
	cr_expect_eq(run("%s -c %s -n 2 kv get app/x", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strncmp(res.out, "42", 2) == 0, "%s", res.out);

	/* grdd's map: not over HTTP, even with the token; not through the socket but by grdd */
	cr_expect_eq(http("PUT", "/v1/kv/grd/map", "Bearer " TOKEN, "junk"), 403, "%s", res.out);
	cr_expect(strstr(res.out, "kept by grdd") != NULL, "%s", res.out);
	cr_expect_eq(http("DELETE", "/v1/kv/grd/map", "Bearer " TOKEN, NULL), 403, "%s", res.out);
	cr_expect_neq(run("%s -c %s -n 1 kv put grd/map junk", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "written by it only") != NULL, "%s", res.out);
	cr_expect_neq(run("%s -c %s -n 1 kv del grd/map", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	/* nor a recovery's claim or end, which the raftd history and every smond believe */
	cr_expect_neq(run("%s -c %s -n 1 kv put recovery/3 junk", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "kept by smond") != NULL, "%s", res.out);
	cr_expect_eq(http("PUT", "/v1/kv/recovery/3/done/1", "Bearer " TOKEN, "junk"), 403, "%s", res.out);

	/* a header past http_max_header (8K) */
	run("curl -s -m 5 -o /dev/null -w '%%{http_code}' -H \"X-Big: $(head -c 20000 /dev/zero | tr '\\0' a)\" "
	    "'http://127.0.0.1:%d/v1/status'", cl.base_port + 1);
	cr_expect_neq(atoi(res.out), 200, "a 20 KB header was taken: %s", res.out);
	cr_expect_eq(http("GET", "/v1/status", NULL, NULL), 200, "raftd serves on after it: %s", res.out);

	/* nothing of it reached grdd; the bank adds up */
	cr_expect_eq(map_version(1), v0);
	json_t *g = ctl_json(1, "grd status");
	cr_assert_not_null(g);
	cr_expect_eq(jint(g, "records_refused"), 0);
	json_decref(g);
	cr_assert_eq(run("%s/tools/coral-bank -c %s --accounts 200 --per-block 8 --sessions 1 --readers 0 --seconds 2 "
			 "--json", CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	json_t *b = json_loads(res.out, 0, NULL);
	cr_assert_not_null(b, "%s", res.out);
	cr_expect(json_is_true(json_object_get(b, "ok")), "%s", res.out);
	cr_expect_eq(jint(b, "total_before"), jint(b, "total_after"));
	json_decref(b);
}

Test(security, a_token_file_readable_by_others_is_refused_at_start)
{
	cl_prepare("sep", with_token);
	char path[160];
	snprintf(path, sizeof(path), "%s/http.token", cl.dir);
	cr_assert_eq(chmod(path, 0644), 0);
	cr_expect_neq(run("%s -c %s start 1", CORAL_NODE, cl.conf)->code, 0, "raftd started with a world-readable token");
	cr_expect_eq(run("grep -c 'readable or writable by others' %s/node1/node.log", cl.dir)->code, 0,
		     "the log does not say why: %s", res.out);
}

static char *with_short_idle(char *text)
{
	return replace_all(text, "[raftd]\nlog_level = info\nheartbeat_ms = 500\nmax_clients = 64\nout_queue = 1M\n"
				 "client_idle_ms = 60000\n",
			   "[raftd]\nlog_level = info\nheartbeat_ms = 500\nmax_clients = 64\nout_queue = 1M\n"
			   "client_idle_ms = 2000\n");
}

Test(security, idle_clients_do_not_lock_coralctl_out)
{
	cl_prepare("sei", with_short_idle);
	cr_assert_eq(run("grep -c 'client_idle_ms = 2000' %s", cl.conf)->code, 0, "[raftd] was not rewritten");
	cr_assert_eq(run("%s -c %s start 1", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	char path[160];
	snprintf(path, sizeof(path), "%s/node1/raftd.sock", cl.dir);
	int fds[100];
	int n = 0;
	for (int i = 0; i < 100; i++) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert_geq(fd, 0);
		cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0, "%s: %m", path);
		fds[n++] = fd;
	}
	usleep(300000);
	/* every slot taken by the idle ones: coralctl is told why, not "closed without answering" */
	cr_expect_neq(run("%s -c %s -n 1 ping raftd", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect(strstr(res.out, "node 1's raftd serves 64 clients already: the limit of [raftd] max_clients"),
		  "%s", res.out);
	/* closed for idling within client_idle_ms and a tick: coralctl gets in */
	int ok = 1;
	for (int i = 0; i < 60 && (ok = run("%s -c %s -n 1 ping raftd", CORALCTL, cl.conf)->code) != 0; i++)
		usleep(100000);
	cr_expect_eq(ok, 0, "coralctl still locked out 6 s later: %s", res.out);
	char b;
	int closed = 0;
	for (int i = 0; i < n; i++) {
		closed += recv(fds[i], &b, 1, MSG_DONTWAIT) == 0;
		close(fds[i]);
	}
	cr_expect_geq(closed, 60, "only %d of the idle clients were closed", closed);
}

static char *with_few_http_clients(char *text)
{
	text = replace_all(text, "http_max_clients = 128\n", "http_max_clients = 8\n");
	return replace_all(text, "max_clients = 16\n", "max_clients = 4\n");
}

/* count idle TCP connections to 127.0.0.1:port, each kept open (fds[]); how many connected */
static int crowd(int port, int *fds, int count)
{
	int n = 0;
	for (int i = 0; i < count; i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		cr_assert_geq(fd, 0);
		/* non-blocking: past the bound and the backlog, connect stays in progress */
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 || errno == EINPROGRESS)
			n++;
		fds[i] = fd;
	}
	return n;
}

/* A crowd of idle connections on the two HTTP ports (raftd's API, the metrics) holds at most
 * their max_clients: raftd keeps its descriptors and answers coralctl, a commit goes through,
 * the bound and the count are shown; once the crowd has been silent 3 s its members are
 * closed to make room and a real client is answered beside it; once it is gone, both ports
 * answer. */
Test(security, an_idle_crowd_on_the_http_ports_is_held_to_their_bound)
{
	cl_prepare("seh", with_few_http_clients);
	cr_assert_eq(run("grep -c '^http_max_clients = 8$' %s", cl.conf)->code, 0, "not rewritten");
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_gt(wait_leader(20000, 0xE), 0, "no leader");
	static int fds[2][300];
	crowd(cl.base_port + 1, fds[0], 300);
	crowd(cl.base_port + 6, fds[1], 300);
	usleep(500000);
	json_t *st = ctl_json(1, "raft status");
	cr_assert_not_null(st, "%s", res.out);
	cr_expect_leq(jint(st, "http_clients"), 9, "raftd holds %lld HTTP connections", (long long)jint(st, "http_clients"));
	cr_expect_eq(jint(st, "http_clients_max"), 8);
	cr_expect_geq(jint(st, "http_full"), 1);
	json_decref(st);
	char fdcount[64];
	snprintf(fdcount, sizeof(fdcount), "ls /proc/%d/fd | wc -l", (int)raftd_pid(1));
	cr_expect_lt(atoi(run("%s", fdcount)->out), 100, "raftd has %s descriptors", res.out);
	cr_expect_eq(run("%s -c %s -n 1 kv put crowd/k v", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect_eq(run("grep -c 'raftd HTTP: .* not accepting until one closes' %s/node1/node.log", cl.dir)->code, 0,
		     "the log does not say: %s", res.out);
	cr_expect_eq(run("grep -c 'metrics: .* not accepting until one closes' %s/node1/node.log", cl.dir)->code, 0,
		     "the log does not say: %s", res.out);
	/* the crowd stays, silent: past 3 s its members are closed to make room, and a client
	 * that asks gets its answer while the rest of the crowd is still connected */
	sleep(4);
	int code = -1;
	for (int i = 0; i < 5 && (code = http("GET", "/v1/kv/crowd/k", NULL, NULL)) != 200; i++)
		usleep(200000);
	cr_expect_eq(code, 200, "HTTP beside a silent crowd: %s", res.out);
	st = ctl_json(1, "raft status");
	cr_assert_not_null(st, "%s", res.out);
	cr_expect_geq(jint(st, "http_closed_idle"), 1, "no silent connection closed at the bound");
	cr_expect_leq(jint(st, "http_clients"), 9);
	json_decref(st);
	run("curl -s -m 5 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/metrics", cl.base_port + 6);
	cr_expect_str_eq(res.out, "401", "the metrics port beside a silent crowd (no token: 401): %s", res.out);
	for (int p = 0; p < 2; p++)
		for (int i = 0; i < 300; i++)
			close(fds[p][i]);
	for (int i = 0; i < 50 && (code = http("GET", "/v1/kv/crowd/k", NULL, NULL)) != 200; i++)
		usleep(100000);
	cr_expect_eq(code, 200, "HTTP after the crowd left: %s", res.out);
	int mcode = 0;
	for (int i = 0; i < 50; i++) {
		run("curl -s -m 2 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/metrics", cl.base_port + 6);
		if ((mcode = atoi(res.out)) == 401)
			break;
		usleep(100000);
	}
	cr_expect_eq(mcode, 401, "the metrics port after the crowd left (no token: 401): %s", res.out);
}

/* Garbage on every port of node 1 (each TCP port of its range that listens, each daemon's
 * Unix socket): no daemon dies or restarts, the node stays healthy, the cluster keeps its
 * leader and commits. Under ASan+UBSan the harness also reads the node logs for reports. */
Test(security, garbage_on_every_port_is_refused_and_hurts_nobody)
{
	cl_prepare("seg", with_token);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_gt(wait_leader(20000, 0xE), 0, "no leader");
	junk_state = 0x9e3779b97f4a7c15ull;
	int ports = 0, conns = 0;
	for (int off = 0; off < 16; off++) {
		int t = throw_junk(cl.base_port + off, NULL);
		ports += t > 0;
		conns += t;
	}
	static const char *const daemons[] = {"raftd", "grdd", "lmsd", "lmdd", "smond", "replicad", "rsrcmgrd"};
	for (size_t i = 0; i < sizeof(daemons) / sizeof(daemons[0]); i++) {
		char path[200];
		snprintf(path, sizeof(path), "%s/node1/%s.sock", cl.dir, daemons[i]);
		int t = throw_junk(0, path);
		cr_expect_gt(t, 0, "%s's socket took no connection", daemons[i]);
		conns += t;
	}
	fprintf(stderr, "garbage: %d TCP ports listening, %d connections of junk\n", ports, conns);
	cr_expect_geq(ports, 7, "only %d ports of node 1 listen", ports);
	usleep(1500000);
	cr_expect_eq(run("%s -c %s --json status 1", CORAL_NODE, cl.conf)->code, 0, "node 1 not healthy: %s", res.out);
	json_t *st = json_loads(res.out, 0, NULL);
	cr_assert_not_null(st, "%s", res.out);
	json_t *d;
	size_t i;
	json_array_foreach(json_object_get(json_array_get(st, 0), "daemons"), i, d)
	{
		cr_expect_eq(jint(d, "restarts"), 0, "%s restarted after the garbage", jstr(d, "daemon"));
		cr_expect_str_eq(jstr(d, "state"), "ready", "%s", jstr(d, "daemon"));
	}
	json_decref(st);
	cr_assert_gt(wait_leader(20000, 0xE), 0, "no leader after the garbage");
	cr_expect_eq(run("%s -c %s -n 1 kv put after/garbage ok", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect_eq(run("%s -c %s -n 1 ping all", CORALCTL, cl.conf)->code, 0, "%s", res.out);
}

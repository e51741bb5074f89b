/* Mutual TLS between raftd processes: certificates made here with the openssl command
 * (one CA for the cluster, node%n.pem naming each node), [tls] enabled in the test's copy
 * of etc/coral.conf. Three nodes whose certificates the CA signed form a cluster and
 * replicate, and their HTTP API is HTTPS that takes a write from a client certificate of the
 * CA and no connection without one; a node whose certificate comes from another CA is
 * refused by the others, who say so in their logs, and never becomes a member, while the two
 * form the cluster. Sessions read CR copies straight from another node's lmsd over TLS, each
 * end showing its node's certificate; a client without one gets no connection. */
#include "coral_harness.h"

#include "conf.h"
#include "ctl.h"
#include "errors.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *rogue_ca; /* the CA that signs node 3's certificate */

static void make_ca(const char *dir, const char *ca)
{
	cr_assert_eq(run("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
			 "-nodes -days 2 -subj /CN=%s -keyout %s.key -out %s.pem",
			 dir, ca, ca, ca)->code,
		     0, "openssl: %s", res.out);
}

static void make_cert(const char *dir, const char *ca, int node)
{
	cr_assert_eq(run("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
			 "-subj /CN=node%d -keyout node%d.key -out node%d.csr && openssl x509 -req "
			 "-in node%d.csr -CA %s.pem -CAkey %s.key -CAcreateserial -days 2 "
			 "-out node%d.pem",
			 dir, node, node, node, node, ca, ca, node)->code,
		     0, "openssl: %s", res.out);
}

static char *edit_tls(char *text)
{
	char dir[128], conf[512];
	snprintf(dir, sizeof(dir), "%s/tls", cl.dir);
	cr_assert_eq(run("mkdir -p %s", dir)->code, 0);
	make_ca(dir, "ca");
	if (rogue_ca)
		make_ca(dir, rogue_ca);
	for (int n = 1; n <= 3; n++)
		make_cert(dir, n == 3 && rogue_ca ? rogue_ca : "ca", n);
	snprintf(conf, sizeof(conf),
		 "enabled = yes\nca_file = %s/ca.pem\ncert_file = %s/node%%n.pem\n"
		 "key_file = %s/node%%n.key\n",
		 dir, dir, dir);
	return replace_all(text, "enabled = no\nca_file =\ncert_file =\nkey_file =\n", conf);
}

static void start(void)
{
	cl_prepare("tl", edit_tls);
	cr_assert_eq(run("grep -c 'node%%n.pem' %s", cl.conf)->code, 0, "[tls] was not rewritten");
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
}

TestSuite(tls, .fini = cl_teardown, .timeout = 120);

Test(tls, cluster_forms_and_replicates_over_mutual_tls)
{
	start();
	int leader = wait_leader(15000, 0xe);
	cr_assert_gt(leader, 0, "no leader agreed by all three nodes over TLS within 15 s");
	cr_assert_eq(run("%s -c %s -n 3 kv put tls/x yes", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	for (int n = 1; n <= 3; n++) {
		cr_assert_eq(run("%s -c %s -n %d kv get tls/x", CORALCTL, cl.conf, n)->code, 0, "%s", res.out);
		cr_expect_str_eq(res.out, "yes\n");
	}
	/* HTTP is HTTPS: a client certificate of the cluster's CA is the identity that writes */
	char tls[96];
	snprintf(tls, sizeof(tls), "%s/tls", cl.dir);
	run("curl -s -k -m 5 -o /dev/null -w '%%{http_code}' --cert %s/node1.pem --key %s/node1.key -X PUT "
	    "--data-binary 42 https://127.0.0.1:%d/v1/kv/tls/https", tls, tls, cl.base_port + 1);
	cr_expect_str_eq(res.out, "200", "a PUT with the cluster's certificate: %s", res.out);
	cr_assert_eq(run("%s -c %s -n 2 kv get tls/https", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	cr_expect_str_eq(res.out, "42\n");
	/* without a certificate there is no HTTPS connection at all, and plain HTTP gets nowhere */
	run("curl -s -k -m 5 -o /dev/null -w '%%{http_code}' https://127.0.0.1:%d/v1/status", cl.base_port + 1);
	cr_expect_str_eq(res.out, "000", "HTTPS without a client certificate: %s", res.out);
	run("curl -s -m 5 -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/v1/status", cl.base_port + 1);
	cr_expect_str_eq(res.out, "000", "plain HTTP on a TLS cluster: %s", res.out);
	/* the metrics ports are HTTPS too: coralctl top reads them with a node's certificate */
	cr_expect_eq(run("%s -c %s top --scrape --count 1", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	int running = 0;
	for (const char *p = res.out; (p = strstr(p, " running ")) != NULL; p++)
		running++;
	cr_expect_eq(running, 3, "coralctl top --scrape over HTTPS: %s", res.out);
	run("curl -s -k -m 5 -o /dev/null -w '%%{http_code}' --cert %s/node1.pem --key %s/node1.key "
	    "https://127.0.0.1:%d/metrics", tls, tls, cl.base_port + 6);
	cr_expect_str_eq(res.out, "200", "a scrape with the cluster's certificate: %s", res.out);
}

Test(tls, node_with_a_certificate_from_another_ca_is_refused)
{
	rogue_ca = "rogue";
	start();
	int leader = wait_leader(15000, 0x6);
	cr_assert_gt(leader, 0, "nodes 1 and 2 did not elect a leader within 15 s");
	/* node 3 keeps dialling for a while; it never gets in */
	sleep(3);
	json_t *m = ctl_json(leader, "cluster members");
	cr_assert_not_null(m);
	json_t *e = member(m, 3);
	cr_expect(e == NULL || strcmp(jstr(e, "state"), "active") != 0,
		  "node 3 became an active member with a certificate from another CA");
	cr_expect_eq(jint(member(m, 1), "id"), 1);
	json_decref(m);
	json_t *st = ctl_json(3, "raft status");
	cr_assert_not_null(st);
	cr_expect_eq(jint(st, "leader"), 0, "node 3 follows a leader it cannot have reached");
	json_decref(st);
	/* the refusal is in the logs of the nodes it dialled and that dialled it */
	run("grep -h 'TLS with node 3 failed: peer certificate' %s/node1/node.log %s/node2/node.log | head -1",
	    cl.dir, cl.dir);
	cr_expect(strstr(res.out, "TLS with node 3 failed: peer certificate") != NULL,
		  "nodes 1 and 2 did not log why node 3's certificate was refused");
	fprintf(stderr, "tls: %s", res.out);
	run("grep -h 'refused an inbound TLS connection: peer certificate' %s/node1/node.log "
	    "%s/node2/node.log | head -1", cl.dir, cl.dir);
	cr_expect(strstr(res.out, "refused an inbound TLS connection") != NULL,
		  "node 3's connections to nodes 1 and 2 were not refused");
}

/* [cache] cr_direct under [tls]: the CR port is TLS; a session of node 2 reads copies
 * straight from node 1's lmsd (after the first, through its own), and a client that shows no
 * certificate, or speaks plain TCP, is refused before a byte of a block. */
Test(tls, cr_copies_come_straight_from_the_holder_over_tls)
{
	start();
	cr_assert_gt(wait_leader(15000, 0xe), 0);
	for (int i = 0; i < 150 && (map_version(1) < 1 || map_version(2) < 1 || map_version(3) < 1); i++)
		usleep(100000);
	json_t *df = ctl_json(1, "datafile create crt 4");
	cr_assert_not_null(df, "%s", res.out);
	uint32_t fid = (uint32_t)jint(df, "id");
	json_decref(df);
	struct coral_session *w, *s;
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "test_tls", &w), 0, "%s", coral_session_error(w));
	coral_block_release(w, x_change_commit(w, fid, 0, 7));
	cr_assert_eq(coral_session_open(cl.conf, 2, "test", "test_tls", &s), 0, "%s", coral_session_error(s));
	for (int i = 0; i < 3; i++)
		cr_expect_eq(cr_read(s, fid), 7);
	coral_block_release(w, x_change_commit(w, fid, 0, 8));
	cr_expect_eq(cr_read(s, fid), 8, "a direct copy is the newest image");
	struct coral_session_stats st;
	coral_session_stats(s, &st);
	cr_expect_eq(st.cr_direct, 3, "the copies after the first come straight from node 1 over TLS");
	coral_session_close(s);
	coral_session_close(w);
	json_t *g = ctl_json(1, "gcs stats");
	cr_assert_not_null(g, "%s", res.out);
	cr_expect_eq(jint(g, "cr_direct"), 3, "%s", res.out);
	json_decref(g);

	/* no certificate: no TLS connection (under TLS 1.3 the client finishes its side of the
	 * handshake first and hears the server's alert after: it stays a second to read it);
	 * plain TCP: no answer either */
	run("sleep 1 | timeout 5 openssl s_client -connect 127.0.0.1:%d -CAfile %s/tls/ca.pem 2>&1 | "
	    "grep -c -i 'alert\\|errno\\|error'",
	    cl.base_port + CORAL_PORT_LMSD_CR, cl.dir);
	cr_expect_neq(atoi(res.out), 0, "a client without a certificate was not refused: %s", res.out);
	int fd = -1;
	char err[256];
	cr_assert_eq(coral_ctl_connect_tcp("127.0.0.1", cl.base_port + CORAL_PORT_LMSD_CR, 1000, &fd, err, sizeof(err)), 0,
		     "%s", err);
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GcsCrHello hello = CORAL__GCS_CR_HELLO__INIT;
	hello.cluster = (char *)"coral";
	hello.node = 2;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_CR_HELLO;
	req.gcs_cr_hello = &hello;
	Coral__CtlResponse *resp = NULL;
	int rc = coral_ctl_call_fd(fd, "the CR port", &req, 1 << 20, 2000, &resp, err, sizeof(err));
	cr_expect_neq(rc, 0, "a plain hello on the TLS port was answered");
	if (resp)
		coral_ctl_response_free(resp);
	close(fd);
}

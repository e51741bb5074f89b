/* Configuration tests: golden files (tests/unit/conf/NAME.conf gives NAME.expect, either
 * the effective configuration or the error text), reload semantics, and the promise that
 * etc/coral.conf documents every option. CORAL_GOLDEN_UPDATE=1 rewrites the .expect files. */
#include "conf.h"
#include "errors.h"
#include "util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	char *buf = NULL;
	size_t cap = 0;
	FILE *m = open_memstream(&buf, &cap);
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		fwrite(tmp, 1, n, m);
	fclose(f);
	fclose(m);
	return buf;
}

static void golden(const char *name)
{
	cr_assert_eq(chdir(CORAL_SRCDIR "/tests/unit/conf"), 0);
	char path[256], expect_path[256];
	snprintf(path, sizeof(path), "%s.conf", name);
	snprintf(expect_path, sizeof(expect_path), "%s.expect", name);
	static struct coral_conf conf;
	char *got = NULL;
	size_t gotlen = 0;
	FILE *m = open_memstream(&got, &gotlen);
	if (coral_conf_load(&conf, path) == 0)
		coral_conf_print(&conf, m);
	else
		fprintf(m, "error: %s\n", conf.errmsg);
	fclose(m);
	if (getenv("CORAL_GOLDEN_UPDATE")) {
		FILE *f = fopen(expect_path, "w");
		fputs(got, f);
		fclose(f);
	}
	char *want = slurp(expect_path);
	cr_assert_not_null(want, "missing %s", expect_path);
	cr_expect_str_eq(got, want, "%s: got\n%s\nwanted\n%s", name, got, want);
	free(want);
	free(got);
}

#define GOLDEN(id, file) Test(conf_golden, id) { golden(file); }
GOLDEN(minimal, "minimal")
GOLDEN(unknown_option, "unknown-option")
GOLDEN(unknown_section, "unknown-section")
GOLDEN(out_of_range, "out-of-range")
GOLDEN(bad_size, "bad-size")
GOLDEN(duplicate_id, "duplicate-id")
GOLDEN(overlap_ports, "overlap-ports")
GOLDEN(other_host_ports, "other-host-ports")
GOLDEN(bad_address, "bad-address")
GOLDEN(bad_hostname, "bad-hostname")
GOLDEN(missing_file, "missing-file")
GOLDEN(empty, "empty")
GOLDEN(comments_only, "comments-only")
GOLDEN(missing_required, "missing-required")
GOLDEN(set_twice, "set-twice")
GOLDEN(bad_bool, "bad-bool")
GOLDEN(bad_loglevel, "bad-loglevel")
GOLDEN(relative_path, "relative-path")
GOLDEN(syntax_error, "syntax-error")
GOLDEN(tls_missing, "tls-missing")
GOLDEN(tls_bad_pattern, "tls-bad-pattern")
GOLDEN(bad_label, "bad-label")
GOLDEN(no_nodes, "no-nodes")
GOLDEN(block_size, "block-size")
GOLDEN(long_line, "long-line")
GOLDEN(bad_founders, "bad-founders")
GOLDEN(repl_bad_role, "repl-bad-role")
GOLDEN(repl_bad_standby, "repl-bad-standby")
GOLDEN(repl_no_token, "repl-no-token")
GOLDEN(repl_no_primary, "repl-no-primary")
GOLDEN(repl_own_name, "repl-own-name")
GOLDEN(repl_both_roles, "repl-both-roles")
GOLDEN(repl_chunk, "repl-chunk")
GOLDEN(repl_primary, "repl-primary")
GOLDEN(short_election, "short-election")

static void unset_visit(void *arg, const char *section, const struct coral_opt *opt,
			const char *value, bool is_default)
{
	(void)value;
	int *unset = arg;
	if (is_default) {
		(*unset)++;
		cr_log_error("etc/coral.conf does not set [%s] %s", section, opt->name);
	}
}

Test(conf, shipped_example_sets_every_option)
{
	static struct coral_conf conf;
	cr_assert_eq(coral_conf_load(&conf, CORAL_SRCDIR "/etc/coral.conf"), 0, "%s", conf.errmsg);
	cr_expect_eq(conf.nnodes, 3);
	int unset = 0;
	coral_conf_foreach(&conf, unset_visit, &unset);
	cr_expect_eq(unset, 0, "%d options are not in etc/coral.conf", unset);
}

/* The three-machine example as installed: its /etc/coral/ (certificates, token files) made
 * in a temporary directory, the paths pointed there, and it loads with TLS on. */
Test(conf, multi_machine_example_is_valid)
{
	char dir[] = "/tmp/coral-multi-XXXXXX", cmd[512], path[128];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p %s/tls && touch %s/tls/ca.pem %s/tls/node1.pem %s/tls/node1.key %s/tls/node2.pem "
		 "%s/tls/node2.key %s/tls/node3.pem %s/tls/node3.key && sed 's|/etc/coral/|%s/|g' %s > %s/coral.conf",
		 dir, dir, dir, dir, dir, dir, dir, dir, dir, CORAL_SRCDIR "/etc/coral-multi.conf", dir);
	cr_assert_eq(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/coral.conf", dir);
	static struct coral_conf conf;
	int rc = coral_conf_load(&conf, path);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(rc, 0, "%s", conf.errmsg);
	cr_expect_eq(conf.nnodes, 3);
	cr_expect(conf.tls.enabled);
	cr_expect_neq(conf.metrics.token_file[0], '\0');
}

/* The standby example loads, names the cluster of etc/coral.conf as its primary, and does
 * not overlap its ports or directories. */
Test(conf, standby_example_is_valid)
{
	static struct coral_conf sconf, pconf;
	cr_assert_eq(coral_conf_load(&sconf, CORAL_SRCDIR "/etc/coral-standby.conf"), 0, "%s", sconf.errmsg);
	cr_assert_eq(coral_conf_load(&pconf, CORAL_SRCDIR "/etc/coral.conf"), 0, "%s", pconf.errmsg);
	cr_expect_str_eq(sconf.replication.role, "standby");
	cr_expect_str_eq(sconf.replication.primary_cluster, pconf.cluster.name);
	cr_expect_str_neq(sconf.cluster.name, pconf.cluster.name);
	cr_expect_neq(strcmp(sconf.storage.shared_dir, pconf.storage.shared_dir), 0);
	for (int i = 0; i < pconf.nnodes; i++)
		cr_expect(sconf.nodes[0].base_port >= pconf.nodes[i].base_port + CORAL_PORTS_PER_NODE ||
			  sconf.nodes[0].base_port + CORAL_PORTS_PER_NODE <= pconf.nodes[i].base_port);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

struct lines {
	int n;
	char text[16][CORAL_ERRMSG_MAX];
};

static void collect(void *arg, const char *line)
{
	struct lines *l = arg;
	if (l->n < 16)
		coral_strlcpy(l->text[l->n++], line, CORAL_ERRMSG_MAX);
}

Test(conf, reload_applies_only_reloadable_options)
{
	const char *base = "[node.1]\nid = 1\nhost = 127.0.0.1\nbase_port = 9000\nrun_dir = /tmp/x\n";
	char a[] = "/tmp/coral-conf-a-XXXXXX", b[] = "/tmp/coral-conf-b-XXXXXX";
	close(mkstemp(a));
	close(mkstemp(b));
	char text[1024];
	write_file(a, base);
	snprintf(text, sizeof(text), "%s%s", base,
		 "sga_size = 128M\n[lmsd]\nlog_level = debug\n[supervisor]\nrestart_max = 9\n");
	write_file(b, text);
	static struct coral_conf cur, next;
	cr_assert_eq(coral_conf_load(&cur, a), 0, "%s", cur.errmsg);
	cr_assert_eq(coral_conf_load(&next, b), 0, "%s", next.errmsg);
	struct lines l = {0};
	int applied = coral_conf_apply_reload(&cur, &next, collect, &l);
	cr_expect_eq(applied, 1);
	cr_expect_eq(cur.daemon[CORAL_D_LMSD].log_level, 4 /* debug */);
	cr_expect_eq(cur.supervisor.restart_max, 5, "restart_max is not reloadable");
	cr_expect_eq(cur.nodes[0].sga_size, 64 << 20, "node options are not reloadable");
	cr_expect_eq(l.n, 3);
	bool saw_sga = false, saw_level = false;
	for (int i = 0; i < l.n; i++) {
		saw_sga |= strstr(l.text[i], "[node.1] sga_size: 64M -> 128M not applied") != NULL;
		saw_level |= strcmp(l.text[i], "[lmsd] log_level: info -> debug") == 0;
	}
	cr_expect(saw_sga, "sga_size change reported as not applied");
	cr_expect(saw_level, "log_level change reported");
	unlink(a);
	unlink(b);
}

Test(conf, node_lookup_by_id_and_label)
{
	static struct coral_conf conf;
	cr_assert_eq(coral_conf_load(&conf, CORAL_SRCDIR "/tests/unit/conf/minimal.conf"), 0);
	cr_expect_not_null(coral_conf_node(&conf, "7"));
	cr_expect_not_null(coral_conf_node(&conf, "a"));
	cr_expect_null(coral_conf_node(&conf, "8"));
	cr_expect_str_eq(conf.nodes[0].sga_name, "/coral.coral.7");
}

Test(conf, tls_file_per_node)
{
	char out[64];
	cr_assert_eq(coral_conf_tls_path("/etc/coral/node%n.pem", 12, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/etc/coral/node12.pem");
	cr_assert_eq(coral_conf_tls_path("/a/100%%/%n/%n.key", 3, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/a/100%/3/3.key");
	cr_assert_eq(coral_conf_tls_path("/plain.pem", 3, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "/plain.pem");
	cr_expect_eq(coral_conf_tls_path("/x/%d.pem", 3, out, sizeof(out)), -1);
	cr_expect_eq(coral_conf_tls_path("/x/%", 3, out, sizeof(out)), -1);
	cr_expect_eq(coral_conf_tls_path("/a/long/name/%n.pem", 123456, out, 12), -1);
}

Test(util, sizes_and_hosts)
{
	int64_t v;
	cr_expect(coral_parse_size("64M", &v) && v == 64 << 20);
	cr_expect(coral_parse_size("8KiB", &v) && v == 8192);
	cr_expect(coral_parse_size("2G", &v) && v == (int64_t)2 << 30);
	cr_expect(!coral_parse_size("-1", &v));
	cr_expect(!coral_parse_size("99999999999999999999G", &v));
	cr_expect(!coral_parse_size("12X", &v));
	cr_expect(coral_host_is_valid("127.0.0.1"));
	cr_expect(coral_host_is_valid("::1"));
	cr_expect(coral_host_is_valid("db-1.example.com"));
	cr_expect(!coral_host_is_valid("1.2.3"));
	cr_expect(!coral_host_is_valid("-db"));
	cr_expect(!coral_host_is_valid("a..b"));
	cr_expect(coral_host_is_local("127.0.0.1"));
	cr_expect(coral_host_is_local("localhost"));
	cr_expect(!coral_host_is_local("192.0.2.77"));
	cr_expect_str_eq(coral_strerror(CORAL_ETOOBIG), "frame too large");
	cr_expect_str_eq(coral_strerror(0), "success");
	cr_expect_str_eq(coral_strerror(-1), "unknown error");
}

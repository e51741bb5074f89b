/* coralctl: inspect and steer the daemons of a node. It parses one command, reads the SGA
 * or sends one request per daemon over its Unix socket, and prints the answer as text or,
 * with --json, as JSON. Exit status: 0 ok, 1 error, 2 usage. */
#include "coralctl.h"
#include "conf.h"
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "proc.h"
#include "sga.h"
#include "status.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct coral_conf conf;
const struct coral_node_conf *node;
bool opt_json;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: coralctl [-c FILE] [-n NODE] [--json] COMMAND\n"
		"commands:\n"
		"  status                 daemons of the node: pid, state, uptime, restarts, heartbeat\n"
		"  sga                    the node's shared memory: header and sections with fill\n"
		"  config [DAEMON]        effective configuration of the file, or running in DAEMON\n"
		"  ping DAEMON|all        round trip to a daemon over its socket\n"
		"  reload DAEMON|all      re-read the file and apply reloadable options (admin)\n"
		"  raft status            term, role, leader, commit/applied, log, lease, peers (match, lag, phi)\n"
		"  raft history           leader changes, evictions, fencing, with their reasons\n"
		"  raft transfer-leader N hand leadership to voter N (admin)\n"
		"  cluster members [--stale]       members, incarnations, states, epoch\n"
		"  cluster add-node ID HOST:PORT   add a node (a learner, promoted once caught up) (admin)\n"
		"  cluster remove-node ID          remove a node for good; its id is never reused (admin)\n"
		"  kv get KEY [--stale] | put KEY VALUE | del KEY | list [PREFIX]   the config store\n"
		"  kv watch [PREFIX] [--members] [--from INDEX] [--count N] [--for MS]  changes as they commit\n"
		"  grd status|resource ID|top [N]|remaster RES|BUCKET NODE [--dry-run]|remaster --cancel|\n"
		"      recovered NODE|history|lock ID MODE|unlock ID   the global resource directory\n"
		"  datafile create NAME BLOCKS | list [--verify]     data files of the shared storage\n"
		"  gcs stats              cache fusion: requests, local hits, 2-way/3-way, PIs, latency by kind\n"
		"  gcs block FILE BLOCK   a block's master, holders, modes, past images, SCNs\n"
		"  cache                  the node's buffer cache: buffers, dirty, past images, hit ratio\n"
		"  redo                   the node's redo thread: LSN, durable LSN/SCN, group-commit batches\n"
		"NODE: id or label; default $CORAL_NODE, else the first node on this machine.\n"
		"Exit status: 0 ok, 1 error, 2 usage. See coralctl(8).\n");
}

void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	putchar('\n');
	json_decref(j);
}

static Coral__Header hdr = CORAL__HEADER__INIT;

/* One control request to one daemon; on failure prints what to do and returns NULL. */
Coral__CtlResponse *call(int daemon, Coral__CtlRequest *req, char *err, size_t errsz)
{
	int code;
	return call_code(daemon, req, err, errsz, &code);
}

Coral__CtlResponse *call_code(int daemon, Coral__CtlRequest *req, char *err, size_t errsz, int *code)
{
	char sock[CORAL_STR_MAX + 32];
	coral_conf_sock_path(node, coral_daemon_names[daemon], sock, sizeof(sock));
	hdr.sender = "coralctl";
	req->hdr = &hdr;
	Coral__CtlResponse *resp = NULL;
	char why[CORAL_ERRMSG_MAX];
	int rc = coral_ctl_call(sock, req, (size_t)conf.cluster.max_frame,
				(int)conf.cluster.ipc_timeout_ms, &resp, why, sizeof(why));
	*code = rc;
	if (rc != 0) {
		if (rc == CORAL_ENOTRUNNING && !coral_sga_exists(node->sga_name))
			snprintf(err, errsz, "node %lld is not running: coral-node start %lld",
				 (long long)node->id, (long long)node->id);
		else if (rc == CORAL_ENOTRUNNING)
			snprintf(err, errsz, "%s on node %lld is not answering (%s): coral-node status %lld",
				 coral_daemon_names[daemon], (long long)node->id, why, (long long)node->id);
		else
			snprintf(err, errsz, "%s on node %lld: %s", coral_daemon_names[daemon],
				 (long long)node->id, why);
		return NULL;
	}
	if (resp->code != 0) {
		*code = resp->code;
		snprintf(err, errsz, "%s on node %lld refused: %s (%s)", coral_daemon_names[daemon],
			 (long long)node->id, resp->error, coral_strerror(resp->code));
		coral_ctl_response_free(resp);
		return NULL;
	}
	return resp;
}

/* DAEMON or all: fills list and returns its length, or -1 after a usage message. */
static int daemons_arg(const char *arg, int list[CORAL_NDAEMONS])
{
	if (strcmp(arg, "all") == 0) {
		for (int i = 0; i < CORAL_NDAEMONS; i++)
			list[i] = i;
		return CORAL_NDAEMONS;
	}
	int d = coral_daemon_lookup(arg);
	if (d < 0) {
		fprintf(stderr, "coralctl: unknown daemon '%s' (raftd grdd lmsd lmdd smond replicad rsrcmgrd)\n",
			arg);
		return -1;
	}
	list[0] = d;
	return 1;
}

static int cmd_status(void)
{
	struct coral_node_status st;
	char err[CORAL_ERRMSG_MAX];
	if (coral_status_collect(&conf, node, true, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "coralctl: %s\n", err);
		return 1;
	}
	if (opt_json)
		print_json(coral_status_json(&st));
	else
		coral_status_print(stdout, &st);
	return 0;
}

static int cmd_sga(void)
{
	struct coral_sga sga;
	if (coral_sga_attach(&sga, &conf, node, true) != 0) {
		fprintf(stderr, "coralctl: %s\n", sga.errmsg);
		return 1;
	}
	const struct coral_sga_hdr *h = sga.hdr;
	size_t nsub;
	const struct coral_sga_subsys *subs = coral_sga_subsystems(&nsub);
	uint64_t used_bytes = sizeof(*h);
	json_t *secs = json_array();
	char sz[32], total[32];
	coral_format_size((int64_t)h->size, total, sizeof(total));
	if (!opt_json) {
		printf("SGA %s: cluster %s, node %u, layout version %u, %s, created by pid %d\n",
		       sga.name, h->cluster, h->node_id, h->version, total, (int)h->creator_pid);
		printf("  %-12s %12s %12s %10s %10s\n", "SECTION", "OFFSET", "BYTES", "USED", "CAPACITY");
	}
	for (uint32_t i = 0; i < h->nsections && i < nsub; i++) {
		const struct coral_sga_section *s = &h->sections[i];
		uint64_t used = 0, cap = 0;
		const void *p = coral_sga_section(&sga, s->name, NULL);
		if (p && subs[i].fill)
			subs[i].fill(p, &used, &cap);
		used_bytes = s->offset + s->size;
		if (opt_json)
			json_array_append_new(secs, json_pack("{s:s, s:I, s:I, s:I, s:I}", "name", s->name,
							      "offset", (json_int_t)s->offset, "bytes",
							      (json_int_t)s->size, "used", (json_int_t)used,
							      "capacity", (json_int_t)cap));
		else
			printf("  %-12s %12llu %12llu %10llu %10llu\n", s->name,
			       (unsigned long long)s->offset, (unsigned long long)s->size,
			       (unsigned long long)used, (unsigned long long)cap);
	}
	coral_format_size((int64_t)(h->size - used_bytes), sz, sizeof(sz));
	if (opt_json)
		print_json(json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:I, s:o}", "name", sga.name,
				     "cluster", h->cluster, "node", (json_int_t)h->node_id, "version",
				     (json_int_t)h->version, "size", (json_int_t)h->size, "free",
				     (json_int_t)(h->size - used_bytes), "creator_pid", (int)h->creator_pid,
				     "created_ns", (json_int_t)h->created_real_ns, "sections", secs));
	else
		printf("  %llu bytes in sections and header, %s free\n", (unsigned long long)used_bytes, sz);
	coral_sga_detach(&sga);
	return 0;
}

struct cfg_json {
	json_t *root;
};

static void cfg_to_json(void *arg, const char *section, const struct coral_opt *opt,
			const char *value, bool is_default)
{
	(void)is_default;
	struct cfg_json *c = arg;
	json_t *sec = json_object_get(c->root, section);
	if (sec == NULL) {
		sec = json_object();
		json_object_set_new(c->root, section, sec);
	}
	json_object_set_new(sec, opt->name, json_string(value));
}

static int cmd_config(int argc, char **argv)
{
	if (argc == 0) {
		if (!opt_json) {
			coral_conf_print(&conf, stdout);
			return 0;
		}
		struct cfg_json c = {.root = json_object()};
		coral_conf_foreach(&conf, cfg_to_json, &c);
		print_json(c.root);
		return 0;
	}
	int list[CORAL_NDAEMONS];
	if (argc != 1 || daemons_arg(argv[0], list) != 1) {
		if (argc == 1 && strcmp(argv[0], "all") == 0)
			fprintf(stderr, "coralctl: config takes one daemon, not all\n");
		return 2;
	}
	Coral__ConfigRequest cr = CORAL__CONFIG_REQUEST__INIT;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_CONFIG;
	req.config = &cr;
	char err[CORAL_ERRMSG_MAX];
	Coral__CtlResponse *resp = call(list[0], &req, err, sizeof(err));
	if (resp == NULL || resp->body_case != CORAL__CTL_RESPONSE__BODY_CONFIG) {
		fprintf(stderr, "coralctl: %s\n", resp ? "unexpected answer" : err);
		coral_ctl_response_free(resp);
		return 1;
	}
	json_t *root = json_object();
	const char *last = "";
	if (!opt_json)
		printf("; running configuration of %s on node %lld (read from %s)\n", argv[0],
		       (long long)node->id, resp->config->path);
	for (size_t i = 0; i < resp->config->n_items; i++) {
		const Coral__ConfigItem *it = resp->config->items[i];
		if (opt_json) {
			json_t *sec = json_object_get(root, it->section);
			if (sec == NULL) {
				sec = json_object();
				json_object_set_new(root, it->section, sec);
			}
			json_object_set_new(sec, it->name, json_string(it->value));
			continue;
		}
		if (strcmp(last, it->section) != 0)
			printf("\n[%s]\n", it->section);
		last = it->section;
		printf("%s =%s%s%s\n", it->name, *it->value ? " " : "", it->value,
		       it->is_default ? "    ; default" : "");
	}
	if (opt_json)
		print_json(root);
	else
		json_decref(root);
	coral_ctl_response_free(resp);
	return 0;
}

/* Sends req to DAEMON or to every daemon, collecting answers with the wanted body; show
 * prints one answer (as text, or into the JSON array). */
typedef void (*show_fn)(const char *daemon, const Coral__CtlResponse *resp, uint64_t rtt_ns,
			json_t *arr);

static int fan_out(int argc, char **argv, Coral__CtlRequest *req,
		   Coral__CtlResponse__BodyCase want, show_fn show)
{
	int list[CORAL_NDAEMONS], n;
	if (argc != 1 || (n = daemons_arg(argv[0], list)) < 0)
		return 2;
	int rc = 0;
	json_t *arr = json_array();
	for (int i = 0; i < n; i++) {
		const char *name = coral_daemon_names[list[i]];
		char err[CORAL_ERRMSG_MAX];
		uint64_t t0 = coral_now_mono_ns();
		Coral__CtlResponse *resp = call(list[i], req, err, sizeof(err));
		uint64_t rtt = coral_now_mono_ns() - t0;
		if (resp && resp->body_case != want)
			snprintf(err, sizeof(err), "%s on node %lld sent an unexpected answer", name,
				 (long long)node->id);
		if (resp == NULL || resp->body_case != want) {
			rc = 1;
			if (opt_json)
				json_array_append_new(arr, json_pack("{s:s, s:s}", "daemon", name, "error", err));
			else
				fprintf(stderr, "coralctl: %s\n", err);
		} else {
			show(name, resp, rtt, arr);
		}
		coral_ctl_response_free(resp);
	}
	if (opt_json)
		print_json(arr);
	else
		json_decref(arr);
	return rc;
}

static void show_ping(const char *name, const Coral__CtlResponse *resp, uint64_t rtt, json_t *arr)
{
	(void)resp;
	if (opt_json)
		json_array_append_new(arr, json_pack("{s:s, s:I}", "daemon", name, "rtt_us",
						     (json_int_t)(rtt / 1000)));
	else
		printf("%s on node %lld: answered in %llu us\n", name, (long long)node->id,
		       (unsigned long long)(rtt / 1000));
}

static int cmd_ping(int argc, char **argv)
{
	Coral__PingRequest pr = CORAL__PING_REQUEST__INIT;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_PING;
	req.ping = &pr;
	pr.sent_ns = coral_now_mono_ns();
	return fan_out(argc, argv, &req, CORAL__CTL_RESPONSE__BODY_PING, show_ping);
}

static void show_reload(const char *name, const Coral__CtlResponse *resp, uint64_t rtt, json_t *arr)
{
	(void)rtt;
	const Coral__ReloadReply *r = resp->reload;
	if (!opt_json) {
		printf("%s on node %lld: %zu change(s)\n", name, (long long)node->id, r->n_changes);
		for (size_t k = 0; k < r->n_changes; k++)
			printf("  %s\n", r->changes[k]);
		return;
	}
	json_t *ch = json_array();
	for (size_t k = 0; k < r->n_changes; k++)
		json_array_append_new(ch, json_string(r->changes[k]));
	json_array_append_new(arr, json_pack("{s:s, s:o}", "daemon", name, "changes", ch));
}

static int cmd_reload(int argc, char **argv)
{
	Coral__ReloadRequest rr = CORAL__RELOAD_REQUEST__INIT;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_RELOAD;
	req.reload = &rr;
	return fan_out(argc, argv, &req, CORAL__CTL_RESPONSE__BODY_RELOAD, show_reload);
}

Coral__CtlResponse *daemon_call(int daemon, Coral__CtlRequest *req, int want)
{
	return daemon_call_busy(daemon, req, want, 0);
}

Coral__CtlResponse *daemon_call_busy(int daemon, Coral__CtlRequest *req, int want, int busy_ms)
{
	char err[CORAL_ERRMSG_MAX];
	int code = 0;
	uint64_t end = coral_now_mono_ns() + (uint64_t)(busy_ms > 0 ? busy_ms : 0) * 1000000ull;
	Coral__CtlResponse *resp;
	while ((resp = call_code(daemon, req, err, sizeof(err), &code)) == NULL && code == CORAL_EBUSY &&
	       coral_now_mono_ns() < end)
		usleep(50000);
	if (resp == NULL) {
		if (opt_json)
			print_json(json_pack("{s:s}", "error", err));
		else
			fprintf(stderr, "coralctl: %s\n", err);
		return NULL;
	}
	if (want && (int)resp->body_case != want) {
		fprintf(stderr, "coralctl: %s sent an unexpected answer\n", coral_daemon_names[daemon]);
		coral_ctl_response_free(resp);
		return NULL;
	}
	return resp;
}

int main(int argc, char **argv)
{
	const char *path = coral_conf_default_path();
	const char *which = getenv("CORAL_NODE");
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"node", required_argument, NULL, 'n'},
		{"json", no_argument, NULL, 'j'},        {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "+c:n:jh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'n': which = optarg; break;
		case 'j': opt_json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	/* --json may also follow the command */
	int nargs = 0;
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			opt_json = true;
		else
			argv[optind + nargs++] = argv[i];
	}
	if (nargs == 0) {
		usage(stderr);
		return 2;
	}
	struct coral_log_opts lo = {.program = "coralctl", .level = CORAL_LOG_WARNING, .to_stderr = true};
	coral_log_init(&lo);
	if (coral_conf_load(&conf, path) != 0) {
		fprintf(stderr, "coralctl: %s\n", conf.errmsg);
		return 1;
	}
	if (which) {
		node = coral_conf_node(&conf, which);
		if (node == NULL) {
			fprintf(stderr, "coralctl: %s has no node '%s'\n", conf.path, which);
			return 2;
		}
	} else {
		for (int i = 0; i < conf.nnodes && node == NULL; i++)
			if (coral_host_is_local(conf.nodes[i].host))
				node = &conf.nodes[i];
		if (node == NULL) {
			fprintf(stderr, "coralctl: no node of %s is on this machine: give -n NODE\n", conf.path);
			return 2;
		}
	}
	const char *cmd = argv[optind];
	char **rest = argv + optind + 1;
	int nrest = nargs - 1;
	if (strcmp(cmd, "status") == 0 && nrest == 0)
		return cmd_status();
	if (strcmp(cmd, "sga") == 0 && nrest == 0)
		return cmd_sga();
	if (strcmp(cmd, "config") == 0)
		return cmd_config(nrest, rest);
	if (strcmp(cmd, "ping") == 0)
		return cmd_ping(nrest, rest);
	if (strcmp(cmd, "reload") == 0)
		return cmd_reload(nrest, rest);
	if (strcmp(cmd, "raft") == 0)
		return cmd_raft(nrest, rest);
	if (strcmp(cmd, "cluster") == 0)
		return cmd_cluster(nrest, rest);
	if (strcmp(cmd, "kv") == 0)
		return cmd_kv(nrest, rest);
	if (strcmp(cmd, "grd") == 0)
		return cmd_grd(nrest, rest);
	if (strcmp(cmd, "datafile") == 0)
		return cmd_datafile(nrest, rest);
	if (strcmp(cmd, "gcs") == 0)
		return cmd_gcs(nrest, rest);
	if (strcmp(cmd, "cache") == 0)
		return cmd_cache(nrest, rest);
	if (strcmp(cmd, "redo") == 0)
		return cmd_redo(nrest, rest);
	fprintf(stderr, "coralctl: unknown command or wrong arguments: %s\n", cmd);
	usage(stderr);
	return 2;
}

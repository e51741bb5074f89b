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
#include "metrics.h"
#include "status.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct coralctl_ctx ctx;

void coralctl_time(uint64_t ns, char *buf, size_t bufsz)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, bufsz - n, ".%03lluZ", (unsigned long long)(ns / 1000000ull % 1000));
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
	coral_conf_sock_path(ctx.node, coral_daemon_names[daemon], sock, sizeof(sock));
	hdr.sender = "coralctl";
	req->hdr = &hdr;
	Coral__CtlResponse *resp = NULL;
	char why[CORAL_ERRMSG_MAX];
	int rc = coral_ctl_call(sock, req, (size_t)ctx.conf.cluster.max_frame,
				(int)ctx.conf.cluster.ipc_timeout_ms, &resp, why, sizeof(why));
	*code = rc;
	if (rc != 0) {
		if (rc == CORAL_ENOTRUNNING && !coral_sga_exists(ctx.node->sga_name))
			snprintf(err, errsz, "node %lld is not running: coral-node start %lld",
				 (long long)ctx.node->id, (long long)ctx.node->id);
		else if (rc == CORAL_ENOTRUNNING)
			snprintf(err, errsz, "%s on node %lld is not answering (%s): coral-node status %lld",
				 coral_daemon_names[daemon], (long long)ctx.node->id, why, (long long)ctx.node->id);
		else
			snprintf(err, errsz, "%s on node %lld: %s", coral_daemon_names[daemon],
				 (long long)ctx.node->id, why);
		return NULL;
	}
	if (resp->code != 0) {
		*code = resp->code;
		snprintf(err, errsz, "%s on node %lld refused: %s (%s)", coral_daemon_names[daemon],
			 (long long)ctx.node->id, resp->error, coral_strerror(resp->code));
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

static int run_status(int argc, char **argv)
{
	(void)argc, (void)argv;
	struct coral_node_status st;
	char err[CORAL_ERRMSG_MAX];
	if (coral_status_collect(&ctx.conf, ctx.node, true, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "coralctl: %s\n", err);
		return 1;
	}
	if (ctx.json)
		print_json(coral_status_json(&st));
	else
		coral_status_print(stdout, &st);
	return 0;
}

static int run_sga(int argc, char **argv)
{
	(void)argc, (void)argv;
	struct coral_sga sga;
	if (coral_sga_attach(&sga, &ctx.conf, ctx.node, true) != 0) {
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
	if (!ctx.json) {
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
		if (ctx.json)
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
	if (ctx.json)
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

/* The node's metrics in Prometheus' text format, read from the SGA as a scrape of
 * coral-node's metrics port reads them (metrics.h), without asking a daemon. */
static int run_metrics(int argc, char **argv)
{
	(void)argc, (void)argv;
	struct coral_sga sga;
	if (coral_sga_attach(&sga, &ctx.conf, ctx.node, true) != 0) {
		fprintf(stderr, "coralctl: %s\n", sga.errmsg);
		return 1;
	}
	int rc = coral_metrics_render(&sga, (uint32_t)ctx.node->id, stdout);
	coral_sga_detach(&sga);
	if (rc != 0)
		fprintf(stderr, "coralctl: the SGA has no metrics section: %s\n", coral_strerror(rc));
	return rc != 0;
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

static int run_config(int argc, char **argv)
{
	if (argc == 0) {
		if (!ctx.json) {
			coral_conf_print(&ctx.conf, stdout);
			return 0;
		}
		struct cfg_json c = {.root = json_object()};
		coral_conf_foreach(&ctx.conf, cfg_to_json, &c);
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
	if (!ctx.json)
		printf("; running configuration of %s on node %lld (read from %s)\n", argv[0],
		       (long long)ctx.node->id, resp->config->path);
	for (size_t i = 0; i < resp->config->n_items; i++) {
		const Coral__ConfigItem *it = resp->config->items[i];
		if (ctx.json) {
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
	if (ctx.json)
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
				 (long long)ctx.node->id);
		if (resp == NULL || resp->body_case != want) {
			rc = 1;
			if (ctx.json)
				json_array_append_new(arr, json_pack("{s:s, s:s}", "daemon", name, "error", err));
			else
				fprintf(stderr, "coralctl: %s\n", err);
		} else {
			show(name, resp, rtt, arr);
		}
		coral_ctl_response_free(resp);
	}
	if (ctx.json)
		print_json(arr);
	else
		json_decref(arr);
	return rc;
}

static void show_ping(const char *name, const Coral__CtlResponse *resp, uint64_t rtt, json_t *arr)
{
	(void)resp;
	if (ctx.json)
		json_array_append_new(arr, json_pack("{s:s, s:I}", "daemon", name, "rtt_us",
						     (json_int_t)(rtt / 1000)));
	else
		printf("%s on node %lld: answered in %llu us\n", name, (long long)ctx.node->id,
		       (unsigned long long)(rtt / 1000));
}

static int run_ping(int argc, char **argv)
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
	if (!ctx.json) {
		printf("%s on node %lld: %zu change(s)\n", name, (long long)ctx.node->id, r->n_changes);
		for (size_t k = 0; k < r->n_changes; k++)
			printf("  %s\n", r->changes[k]);
		return;
	}
	json_t *ch = json_array();
	for (size_t k = 0; k < r->n_changes; k++)
		json_array_append_new(ch, json_string(r->changes[k]));
	json_array_append_new(arr, json_pack("{s:s, s:o}", "daemon", name, "changes", ch));
}

static int run_reload(int argc, char **argv)
{
	Coral__ReloadRequest rr = CORAL__RELOAD_REQUEST__INIT;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_RELOAD;
	req.reload = &rr;
	return fan_out(argc, argv, &req, CORAL__CTL_RESPONSE__BODY_RELOAD, show_reload);
}

Coral__CtlResponse *daemon_ask(int daemon, Coral__CtlRequest__BodyCase body, int want)
{
	Coral__CtlRequest req;
	_Alignas(16) uint8_t mem[256];
	if (coral_ctl_request_empty(&req, body, mem, sizeof(mem)) != 0) {
		fprintf(stderr, "coralctl: request %d has no empty form\n", (int)body);
		return NULL;
	}
	return daemon_call(daemon, &req, want);
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
		if (ctx.json)
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

/* ---- the commands ------------------------------------------------------------------- */

static int run_completion(int argc, char **argv);

static const struct coralctl_cmd cmds[] = {
	{"status", NULL, -1, 0, 0, "", "daemons of the node: pid, state, uptime, restarts, heartbeat", run_status},
	{"sga", NULL, -1, 0, 0, "", "the node's shared memory: header and sections with fill", run_sga},
	{"top", NULL, -1, 0, 5, "[--interval MS] [--count N] [--scrape]", "a live view of every node: state, leader, daemons, transfers/s and p99, commits/s, recoveries, tables (q quits)", run_top},
	{"metrics", NULL, -1, 0, 0, "", "the node's figures in Prometheus' text format, as its metrics port serves them", run_metrics},
	{"config", NULL, -1, 0, 1, "[DAEMON]", "effective configuration of the file, or running in DAEMON", run_config},
	{"ping", NULL, -1, 1, 1, "DAEMON|all", "round trip to a daemon over its socket", run_ping},
	{"reload", NULL, -1, 1, 1, "DAEMON|all", "re-read the file and apply reloadable options (admin)", run_reload},
	{"raft", "status", CORAL_D_RAFTD, 0, 0, "", "term, role, leader, commit/applied, log, lease, peers (match, lag, phi)", run_raft_status},
	{"raft", "history", CORAL_D_RAFTD, 0, 0, "", "leader changes, evictions, fencing, with their reasons", run_raft_history},
	{"raft", "transfer-leader", CORAL_D_RAFTD, 1, 1, "NODE_ID", "hand leadership to a voter (admin)", run_raft_transfer},
	{"cluster", "members", CORAL_D_RAFTD, 0, 1, "[--stale]", "members, incarnations, states, epoch", run_cluster_members},
	{"cluster", "add-node", CORAL_D_RAFTD, 2, 2, "ID HOST:PORT", "add a node (a learner, promoted once caught up) (admin)", run_cluster_add_node},
	{"cluster", "remove-node", CORAL_D_RAFTD, 1, 1, "ID", "remove a node for good; its id is never reused (admin)", run_cluster_remove_node},
	{"kv", "get", CORAL_D_RAFTD, 1, 2, "KEY [--stale]", "a key of the config store", run_kv_get},
	{"kv", "put", CORAL_D_RAFTD, 2, 2, "KEY VALUE", "write a key (admin)", run_kv_put},
	{"kv", "del", CORAL_D_RAFTD, 1, 1, "KEY", "delete a key (admin)", run_kv_del},
	{"kv", "list", CORAL_D_RAFTD, 0, 2, "[PREFIX] [--stale]", "the keys under a prefix", run_kv_list},
	{"kv", "watch", CORAL_D_RAFTD, 0, 8, "[PREFIX] [--members] [--from INDEX] [--count N] [--for MS]", "changes as they commit", run_kv_watch},
	{"grd", "status", CORAL_D_GRDD, 0, 0, "", "the bucket map, masters, moves, the directory's fill", run_grd_status},
	{"grd", "resource", CORAL_D_GRDD, 1, 1, "ID", "a resource's master, holders and state", run_grd_resource},
	{"grd", "top", CORAL_D_GRDD, 0, 1, "[N]", "the most accessed resources mastered here", run_grd_top},
	{"grd", "remaster", CORAL_D_GRDD, 1, 3, "RESOURCE|BUCKET NODE [--dry-run] | --cancel", "move mastership (admin)", run_grd_remaster},
	{"grd", "recovered", CORAL_D_GRDD, 1, 1, "NODE", "last resort: mark a lost node's resources recovered (admin)", run_grd_recovered},
	{"grd", "history", CORAL_D_GRDD, 0, 0, "", "map versions with their causes", run_grd_history},
	{"grd", "lock", CORAL_D_GRDD, 2, 2, "ID MODE", "acquire a resource from this node (admin)", run_grd_lock},
	{"grd", "unlock", CORAL_D_GRDD, 1, 1, "ID", "release it (admin)", run_grd_unlock},
	{"datafile", "create", -1, 2, 2, "NAME BLOCKS", "format a data file in the shared storage", run_datafile_create},
	{"datafile", "list", -1, 0, 1, "[--verify]", "data files, and with --verify every damaged block", run_datafile_list},
	{"gcs", "stats", CORAL_D_LMSD, 0, 0, "", "cache fusion: requests, local hits, 2-way/3-way, PIs, latency by kind", run_gcs_stats},
	{"gcs", "block", CORAL_D_LMSD, 2, 2, "FILE BLOCK", "a block's master, holders, modes, past images, SCNs", run_gcs_block},
	{"ges", "stats", CORAL_D_LMDD, 0, 0, "", "global enqueues: requests, grants, queues, refusals, value blocks, losses", run_ges_stats},
	{"ges", "resource", CORAL_D_LMDD, 1, 1, "NAME", "a lock resource's master, its granted, converting and waiting locks", run_ges_resource},
	{"ges", "deadlocks", CORAL_D_LMDD, 0, 0, "", "the deadlocks the coordinator found: each cycle of waits and its victim", run_ges_deadlocks},
	{"ges", "locks", CORAL_D_LMDD, 0, 3, "[--waiting] [--session ID]", "the locks this node's sessions hold and ask for, wherever mastered", run_ges_locks},
	{"ges", "graph", CORAL_D_LMDD, 0, 1, "[--dot]", "the live wait-for graph at the coordinator (--dot: Graphviz)", run_ges_graph},
	{"recovery", "status", CORAL_D_SMOND, 0, 0, "", "smond: the cold start's recovery, dead processes' transactions waiting", run_recovery_status},
	{"recovery", "history", CORAL_D_SMOND, 0, 0, "", "smond's recoveries: phases, records, blocks, changes taken back", run_recovery_history},
	{"standby", "status", CORAL_D_REPLICAD, 0, 1, "[--all]", "redo shipping: the thread shipped and the standby's lag (a primary), the copies kept (a standby)", run_standby_status},
	{"standby", "seed", CORAL_D_REPLICAD, 1, 1, "PRIMARY_SHARED_DIR", "on a standby: copy the primary's data files from its shared storage (mounted here) and apply from its checkpoints (admin)", run_standby_seed},
	{"standby", "history", CORAL_D_REPLICAD, 0, 0, "", "replication events: commit mode switches and why, slots dropped, seeds, the apply's stops", run_standby_history},
	{"standby", "finish", CORAL_D_REPLICAD, 0, 0, "", "on a standby whose primary is gone: apply everything the copies hold, take no more redo (admin)", run_standby_finish},
	{"standby", "failover", CORAL_D_REPLICAD, 0, 0, "", "on a standby whose primary is gone: finish, then take over (the copy's data files become this cluster's under the next site epoch) (admin)", run_standby_failover},
	{"standby", "switchover", CORAL_D_REPLICAD, 0, 2, "[--wait-ms MS]", "on the standby its primary ships to: every primary node closes its thread, the standby takes over with all of it, the old primary is fenced; roles swapped (admin)", run_standby_switchover},
	{"standby", "rejoin", -1, 0, 1, "[PRIMARY_SHARED_DIR]", "an old primary, fenced and stopped: set its data aside and make it a standby of primary_cluster (seeded from PRIMARY_SHARED_DIR once started)", run_standby_rejoin},
	{"rsrc", "load", CORAL_D_RSRCMGRD, 1, 2, "FILE|- [--dry-run]", "check a catalog (groups, rules, plans) and keep it in raftd's store for every node (admin)", run_rsrc_load},
	{"rsrc", "activate", CORAL_D_RSRCMGRD, 1, 3, "PLAN|--none [--cause TEXT]", "put a plan of the catalog in force on every node, with the cause recorded (admin)", run_rsrc_activate},
	{"rsrc", "groups", CORAL_D_RSRCMGRD, 0, 0, "", "consumer groups: CPU share and pool under the plan in force, sessions, calls active and queued", run_rsrc_groups},
	{"rsrc", "rules", CORAL_D_RSRCMGRD, 0, 0, "", "the mapping rules, in the catalog's order", run_rsrc_rules},
	{"rsrc", "plans", CORAL_D_RSRCMGRD, 0, 0, "", "the catalog's plans and their directives", run_rsrc_plans},
	{"rsrc", "plan", CORAL_D_RSRCMGRD, 1, 4, "PLAN | simulate PLAN [--seconds N]", "one plan's directives; or what it would have done to the groups' demand of the last minutes (queued, throttled, acted on)", run_rsrc_plan},
	{"rsrc", "schedule", CORAL_D_RSRCMGRD, 0, 0, "", "the schedules' windows (a plan in force within each, whatever plan was activated) and the one open now", run_rsrc_schedule},
	{"rsrc", "sessions", CORAL_D_RSRCMGRD, 0, 0, "", "the node's sessions: group, the rule that put them there, in a call or queued", run_rsrc_sessions},
	{"rsrc", "session", CORAL_D_RSRCMGRD, 1, 1, "ID", "why a session is slow: its group and the rule, its place in a queue, the limits it hit, its CPU share and throttling", run_rsrc_session},
	{"rsrc", "switch", CORAL_D_RSRCMGRD, 2, 2, "SESSION GROUP", "move a session to a group until it closes (admin)", run_rsrc_switch},
	{"rsrc", "kill", CORAL_D_RSRCMGRD, 1, 1, "SESSION", "end a session: its calls fail until it is closed (admin)", run_rsrc_kill},
	{"rsrc", "stats", CORAL_D_RSRCMGRD, 0, 0, "", "the plan in force and why, calls, queueing, timeouts, the plan switches seen", run_rsrc_stats},
	{"cache", NULL, -1, 0, 0, "", "the node's buffer cache: buffers, dirty, past images, hit ratio", run_cache},
	{"redo", NULL, -1, 0, 0, "", "the node's redo thread: LSN, durable LSN/SCN, group-commit batches", run_redo},
	{"completion", "bash", -1, 0, 0, "", "the bash completion script for coralctl, made from this table", run_completion},
};

static void cmd_line(const struct coralctl_cmd *c, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s%s%s", c->area, c->verb ? " " : "", c->verb ? c->verb : "", c->args[0] ? " " : "",
		 c->args);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: coralctl [-c FILE] [-n NODE] [--json] COMMAND\ncommands:\n");
	for (size_t i = 0; i < CORAL_ARRAY_LEN(cmds); i++) {
		char line[160];
		cmd_line(&cmds[i], line, sizeof(line));
		if (strlen(line) > 28)
			fprintf(f, "  %s\n  %28s %s\n", line, "", cmds[i].help);
		else
			fprintf(f, "  %-28s %s\n", line, cmds[i].help);
	}
	fprintf(f, "NODE: id or label; default $CORAL_NODE, else the first node on this machine.\n"
		   "Exit status: 0 ok, 1 error, 2 usage. See coralctl(8).\n");
}

int coralctl_usage_error(void)
{
	char line[160] = "COMMAND";
	if (ctx.cmd)
		cmd_line(ctx.cmd, line, sizeof(line));
	fprintf(stderr, "coralctl: usage: coralctl %s (see coralctl(8))\n", line);
	return 2;
}

/* Words completed after "coralctl": areas, then an area's verbs, then the daemons where a
 * command takes DAEMON, and the options. */
static int run_completion(int argc, char **argv)
{
	(void)argc, (void)argv;
	printf("# bash completion for coralctl; made by 'coralctl completion bash' from its table of commands\n"
	       "_coralctl()\n{\n"
	       "\tlocal cur=${COMP_WORDS[COMP_CWORD]} i area= n=0\n"
	       "\tfor ((i = 1; i < COMP_CWORD; i++)); do\n"
	       "\t\tcase ${COMP_WORDS[i]} in\n"
	       "\t\t-c|-n|--config|--node) ((i++));;\n"
	       "\t\t-*) ;;\n"
	       "\t\t*) [ -z \"$area\" ] && area=${COMP_WORDS[i]}; ((n++));;\n"
	       "\t\tesac\n\tdone\n"
	       "\tcase ${COMP_WORDS[COMP_CWORD-1]} in\n"
	       "\t-c|--config) COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n"
	       "\tesac\n"
	       "\tif [ $n -eq 0 ]; then\n\t\tCOMPREPLY=($(compgen -W \"");
	for (size_t i = 0; i < CORAL_ARRAY_LEN(cmds); i++)
		if (i == 0 || strcmp(cmds[i].area, cmds[i - 1].area) != 0)
			printf("%s%s", i ? " " : "", cmds[i].area);
	printf(" --json -c -n\" -- \"$cur\"))\n\t\treturn\n\tfi\n\tcase $area in\n");
	for (size_t i = 0; i < CORAL_ARRAY_LEN(cmds); i++) {
		if (i > 0 && strcmp(cmds[i].area, cmds[i - 1].area) == 0)
			continue;
		printf("\t%s)", cmds[i].area);
		if (cmds[i].verb) {
			printf(" [ $n -eq 1 ] && COMPREPLY=($(compgen -W \"");
			for (size_t k = i; k < CORAL_ARRAY_LEN(cmds) && strcmp(cmds[k].area, cmds[i].area) == 0; k++)
				printf("%s%s", k > i ? " " : "", cmds[k].verb);
			printf("\" -- \"$cur\"));;\n");
		} else if (strstr(cmds[i].args, "DAEMON")) {
			printf(" [ $n -eq 1 ] && COMPREPLY=($(compgen -W \"");
			for (int d = 0; d < CORAL_NDAEMONS; d++)
				printf("%s ", coral_daemon_names[d]);
			printf("all\" -- \"$cur\"));;\n");
		} else {
			printf(";;\n");
		}
	}
	printf("\tesac\n}\ncomplete -F _coralctl coralctl\n");
	return 0;
}

/* The command argv names: its entry, or NULL (*area_known: the area exists). */
static const struct coralctl_cmd *cmd_find(int argc, char **argv, bool *area_known)
{
	*area_known = false;
	for (size_t i = 0; i < CORAL_ARRAY_LEN(cmds); i++) {
		const struct coralctl_cmd *c = &cmds[i];
		if (strcmp(c->area, argv[0]) != 0)
			continue;
		*area_known = true;
		if (c->verb == NULL || (argc > 1 && strcmp(c->verb, argv[1]) == 0))
			return c;
	}
	return NULL;
}

/* The node addressed: -n, $CORAL_NODE, else the first node of the file on this machine. */
static int pick_node(const char *which)
{
	if (which) {
		ctx.node = coral_conf_node(&ctx.conf, which);
		if (ctx.node == NULL) {
			fprintf(stderr, "coralctl: %s has no node '%s'\n", ctx.conf.path, which);
			return 2;
		}
		return 0;
	}
	for (int i = 0; i < ctx.conf.nnodes && ctx.node == NULL; i++)
		if (coral_host_is_local(ctx.conf.nodes[i].host))
			ctx.node = &ctx.conf.nodes[i];
	if (ctx.node == NULL) {
		fprintf(stderr, "coralctl: no node of %s is on this machine: give -n NODE\n", ctx.conf.path);
		return 2;
	}
	return 0;
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
		case 'j': ctx.json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	/* --json may also follow the command */
	int nargs = 0;
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			ctx.json = true;
		else
			argv[optind + nargs++] = argv[i];
	}
	if (nargs == 0) {
		usage(stderr);
		return 2;
	}
	char **args = argv + optind;
	bool area_known;
	ctx.cmd = cmd_find(nargs, args, &area_known);
	if (ctx.cmd == NULL) {
		fprintf(stderr, "coralctl: %s: %s\n", area_known ? "unknown verb" : "unknown command",
			area_known && nargs > 1 ? args[1] : args[0]);
		usage(stderr);
		return 2;
	}
	int skip = ctx.cmd->verb ? 2 : 1;
	if (nargs - skip < ctx.cmd->min_args || nargs - skip > ctx.cmd->max_args)
		return coralctl_usage_error();
	if (ctx.cmd->run == run_completion)
		return run_completion(0, NULL);
	struct coral_log_opts lo = {.program = "coralctl", .level = CORAL_LOG_WARNING, .to_stderr = true};
	coral_log_init(&lo);
	if (coral_conf_load(&ctx.conf, path) != 0) {
		fprintf(stderr, "coralctl: %s\n", ctx.conf.errmsg);
		return 1;
	}
	int rc = pick_node(which);
	if (rc != 0)
		return rc;
	return ctx.cmd->run(nargs - skip, args + skip);
}

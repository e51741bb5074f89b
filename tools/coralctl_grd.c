/* coralctl's grdd commands: grd status, resource, top, remaster (with --dry-run, --cancel),
 * recovered, history, and the test client's lock and unlock. Each is one request to the
 * node's grdd; a remaster goes on from there to the coordinator (the Raft leader's grdd). */
#include "coralctl.h"
#include "errors.h"
#include "grd.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static Coral__CtlResponse *grdd_call(Coral__CtlRequest *req, int want)
{
	return daemon_call(CORAL_D_GRDD, req, want);
}

static bool parse_node(const char *s, uint32_t *id)
{
	int64_t v;
	if (!coral_parse_int(s, &v) || v < 1 || v > CORAL_MAX_NODES) {
		fprintf(stderr, "coralctl: '%s' is not a node id (1-%d)\n", s, CORAL_MAX_NODES);
		return false;
	}
	*id = (uint32_t)v;
	return true;
}

static json_t *entry_json(const Coral__GrdEntry *e)
{
	bool block = e->id && e->id->type == CORAL_RES_BLOCK;
	json_t *h = json_array(), *a = json_array(), *q = json_array();
	for (size_t i = 0; i < e->n_holders; i++)
		json_array_append_new(h, json_pack("{s:i, s:s, s:b}", "node", (int)e->holders[i]->node, "mode",
						   coral_grd_mode_name(block, (int)e->holders[i]->mode), "pi",
						   e->holders[i]->pi));
	for (size_t i = 0; i < e->n_affinity; i++)
		json_array_append_new(a, json_pack("{s:i, s:i}", "node", (int)e->affinity[i]->node, "count",
						   (int)e->affinity[i]->count));
	for (size_t i = 0; i < e->n_converting; i++)
		json_array_append_new(q, json_pack("{s:i, s:s}", "node", (int)e->converting[i]->node, "mode",
						   coral_grd_mode_name(block, (int)e->converting[i]->mode)));
	return json_pack("{s:o, s:o, s:o, s:I, s:I, s:b, s:i}", "holders", h, "affinity", a, "converting", q,
			 "accesses", (json_int_t)e->accesses, "grants", (json_int_t)e->grants, "lvb_valid",
			 e->lvb_valid, "recovery_node", (int)e->recovery_node);
}

static int grd_status(void)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_GRDD, CORAL__CTL_REQUEST__BODY_GRD_STATUS, CORAL__CTL_RESPONSE__BODY_GRD_STATUS);
	if (resp == NULL)
		return 1;
	const Coral__GrdStatusReply *s = resp->grd_status;
	if (ctx.json) {
		json_t *nodes = json_array(), *rem = json_object();
		for (size_t i = 0; i < s->n_nodes; i++)
			json_array_append_new(nodes, json_pack("{s:i, s:i}", "node", (int)s->nodes[i]->node, "buckets",
							       (int)s->nodes[i]->buckets));
		for (size_t i = 0; i < s->n_remasters && i < s->n_causes; i++)
			json_object_set_new(rem, s->causes[i], json_integer((json_int_t)s->remasters[i]));
		json_t *o = json_pack("{s:i, s:I, s:i, s:o, s:f, s:o, s:I, s:I, s:I, s:I, s:I, s:I}",
				      "node", (int)s->node_id, "map_version", (json_int_t)s->map_version,
				      "coordinator", (int)s->coordinator, "nodes", nodes,
				      "load_stddev_pct", s->load_stddev_pct, "remasters", rem,
				      "resources", (json_int_t)s->resources, "capacity", (json_int_t)s->capacity,
				      "evictions", (json_int_t)s->evictions, "refused_full", (json_int_t)s->refused_full,
				      "held", (json_int_t)s->held, "held_capacity", (json_int_t)s->held_capacity);
		json_object_set_new(o, "frozen_buckets", json_integer(s->frozen_buckets));
		json_object_set_new(o, "rebuilding_buckets", json_integer(s->rebuilding_buckets));
		json_object_set_new(o, "lost_buckets", json_integer(s->lost_buckets));
		json_object_set_new(o, "res_overrides", json_integer(s->res_overrides));
		json_object_set_new(o, "bucket_overrides", json_integer(s->bucket_overrides));
		json_object_set_new(o, "move", json_string(s->move));
		json_object_set_new(o, "requests", json_integer((json_int_t)s->requests));
		json_object_set_new(o, "granted", json_integer((json_int_t)s->granted));
		json_object_set_new(o, "retried", json_integer((json_int_t)s->retried));
		json_object_set_new(o, "refused", json_integer((json_int_t)s->refused));
		json_object_set_new(o, "records_refused", json_integer((json_int_t)s->records_refused));
		json_object_set_new(o, "messages_refused", json_integer((json_int_t)s->messages_refused));
		json_object_set_new(o, "remastered_buckets", json_integer((json_int_t)s->remastered_buckets));
		json_object_set_new(o, "remastered_resources", json_integer((json_int_t)s->remastered_resources));
		json_object_set_new(o, "remaster_bytes", json_integer((json_int_t)s->remaster_bytes));
		json_object_set_new(o, "moves_cancelled", json_integer((json_int_t)s->moves_cancelled));
		json_object_set_new(o, "moves_failed", json_integer((json_int_t)s->moves_failed));
		print_json(o);
		coral_ctl_response_free(resp);
		return 0;
	}
	printf("map version %llu, coordinator node %u (asked node %u)\n", (unsigned long long)s->map_version,
	       s->coordinator, s->node_id);
	printf("buckets per node (of %u):", CORAL_GRD_BUCKETS);
	for (size_t i = 0; i < s->n_nodes; i++)
		printf(" node %u: %u", s->nodes[i]->node, s->nodes[i]->buckets);
	printf("; load stddev %.2f%%\n", s->load_stddev_pct);
	printf("this node's directory: %llu of %llu entries (%.1f%%), %llu evicted, %llu refused when full; holds %llu of %llu\n",
	       (unsigned long long)s->resources, (unsigned long long)s->capacity,
	       s->capacity ? 100.0 * (double)s->resources / (double)s->capacity : 0.0,
	       (unsigned long long)s->evictions, (unsigned long long)s->refused_full, (unsigned long long)s->held,
	       (unsigned long long)s->held_capacity);
	printf("buckets here: %u frozen, %u being rebuilt; cluster: %u lost buckets awaiting recovery; "
	       "overrides: %u resources, %u buckets\n", s->frozen_buckets, s->rebuilding_buckets, s->lost_buckets,
	       s->res_overrides, s->bucket_overrides);
	printf("remasters by cause:");
	for (size_t i = 0; i < s->n_remasters && i < s->n_causes; i++)
		printf(" %s %llu", s->causes[i], (unsigned long long)s->remasters[i]);
	printf("; %llu buckets, %llu resources, %llu bytes moved; %llu moves cancelled, %llu failed\n",
	       (unsigned long long)s->remastered_buckets, (unsigned long long)s->remastered_resources,
	       (unsigned long long)s->remaster_bytes, (unsigned long long)s->moves_cancelled,
	       (unsigned long long)s->moves_failed);
	printf("client requests from this node: %llu, granted %llu, retried %llu, refused %llu\n",
	       (unsigned long long)s->requests, (unsigned long long)s->granted, (unsigned long long)s->retried,
	       (unsigned long long)s->refused);
	if (s->records_refused || s->messages_refused)
		printf("refused: %llu map records that disagree with raftd's membership, %llu messages\n",
		       (unsigned long long)s->records_refused, (unsigned long long)s->messages_refused);
	if (s->move && s->move[0])
		printf("in flight: %s\n", s->move);
	coral_ctl_response_free(resp);
	return 0;
}

static int grd_resource(const char *id)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GrdResourceRequest body = CORAL__GRD_RESOURCE_REQUEST__INIT;
	body.id = (char *)id;
	req.body_case = CORAL__CTL_REQUEST__BODY_GRD_RESOURCE;
	req.grd_resource = &body;
	Coral__CtlResponse *resp = grdd_call(&req, CORAL__CTL_RESPONSE__BODY_GRD_RESOURCE);
	if (resp == NULL)
		return 1;
	const Coral__GrdResourceReply *r = resp->grd_resource;
	/* the entry lives at the master: ask that node's grdd when it runs on this machine */
	Coral__CtlResponse *m = NULL;
	if (r->master != 0 && r->master != (uint32_t)ctx.node->id) {
		char label[16];
		snprintf(label, sizeof(label), "%u", r->master);
		const struct coral_node_conf *mn = coral_conf_node(&ctx.conf, label);
		if (mn && coral_host_is_local(mn->host)) {
			const struct coral_node_conf *keep = ctx.node;
			ctx.node = mn;
			char err[CORAL_ERRMSG_MAX];
			m = call(CORAL_D_GRDD, &req, err, sizeof(err));
			ctx.node = keep;
			if (m && m->body_case == CORAL__CTL_RESPONSE__BODY_GRD_RESOURCE)
				r = m->grd_resource;
		}
	}
	if (ctx.json) {
		json_t *o = json_pack("{s:s, s:i, s:i, s:I, s:b, s:b, s:s, s:i}", "id", r->id, "bucket", (int)r->bucket,
				      "master", (int)r->master, "map_version", (json_int_t)r->map_version,
				      "overridden", r->overridden, "found", r->found, "state", r->state,
				      "lost_owner", (int)r->lost_owner);
		if (r->entry)
			json_object_set_new(o, "entry", entry_json(r->entry));
		print_json(o);
	} else {
		printf("%s: bucket %u, master node %u at map version %llu%s\n", r->id, r->bucket, r->master,
		       (unsigned long long)r->map_version, r->overridden ? " (resource override)" : "");
		printf("state: %s\n", r->state);
		if (r->entry) {
			bool block = r->entry->id && r->entry->id->type == CORAL_RES_BLOCK;
			printf("holders:");
			if (r->entry->n_holders == 0)
				printf(" none");
			for (size_t i = 0; i < r->entry->n_holders; i++)
				printf(" node %u %s%s", r->entry->holders[i]->node,
				       coral_grd_mode_name(block, (int)r->entry->holders[i]->mode),
				       r->entry->holders[i]->pi ? "+PI" : "");
			printf("\naccesses %llu, grants %llu; by node:", (unsigned long long)r->entry->accesses,
			       (unsigned long long)r->entry->grants);
			for (size_t i = 0; i < r->entry->n_affinity; i++)
				printf(" %u:%u", r->entry->affinity[i]->node, r->entry->affinity[i]->count);
			printf("\n");
		}
	}
	if (m)
		coral_ctl_response_free(m);
	coral_ctl_response_free(resp);
	return 0;
}

static int grd_top(int n)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GrdTopRequest body = CORAL__GRD_TOP_REQUEST__INIT;
	body.count = (uint32_t)n;
	req.body_case = CORAL__CTL_REQUEST__BODY_GRD_TOP;
	req.grd_top = &body;
	Coral__CtlResponse *resp = grdd_call(&req, CORAL__CTL_RESPONSE__BODY_GRD_TOP);
	if (resp == NULL)
		return 1;
	const Coral__GrdTopReply *t = resp->grd_top;
	json_t *arr = ctx.json ? json_array() : NULL;
	if (!ctx.json)
		printf("%-24s %10s  %s\n", "RESOURCE", "ACCESSES", "BY NODE (decaying counts)");
	for (size_t i = 0; i < t->n_items; i++) {
		const Coral__GrdTopItem *it = t->items[i];
		if (ctx.json) {
			json_t *a = json_array();
			for (size_t k = 0; k < it->n_affinity; k++)
				json_array_append_new(a, json_pack("{s:i, s:i}", "node", (int)it->affinity[k]->node,
								   "count", (int)it->affinity[k]->count));
			json_array_append_new(arr, json_pack("{s:s, s:I, s:o}", "id", it->id, "accesses",
							     (json_int_t)it->accesses, "affinity", a));
			continue;
		}
		printf("%-24s %10llu ", it->id, (unsigned long long)it->accesses);
		for (size_t k = 0; k < it->n_affinity; k++)
			printf(" node %u: %u", it->affinity[k]->node, it->affinity[k]->count);
		printf("\n");
	}
	if (ctx.json)
		print_json(arr);
	coral_ctl_response_free(resp);
	return 0;
}

static int grd_remaster(const char *target, uint32_t to, bool dry_run, bool cancel, bool recovered)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GrdRemasterRequest body = CORAL__GRD_REMASTER_REQUEST__INIT;
	body.target = (char *)(target ? target : "");
	body.node = to;
	body.dry_run = dry_run;
	body.cancel = cancel;
	body.recovered = recovered;
	req.body_case = CORAL__CTL_REQUEST__BODY_GRD_REMASTER;
	req.grd_remaster = &body;
	Coral__CtlResponse *resp = grdd_call(&req, CORAL__CTL_RESPONSE__BODY_GRD_REMASTER);
	if (resp == NULL)
		return 1;
	const Coral__GrdRemasterReply *r = resp->grd_remaster;
	if (ctx.json) {
		print_json(json_pack("{s:I, s:I, s:i, s:i, s:I, s:I, s:I, s:I, s:s, s:b}", "move_id",
				     (json_int_t)r->move_id, "map_version", (json_int_t)r->map_version, "buckets",
				     (int)r->buckets, "resources", (int)r->resources, "entries", (json_int_t)r->entries,
				     "bytes", (json_int_t)r->bytes, "elapsed_us", (json_int_t)r->elapsed_us,
				     "freeze_us", (json_int_t)r->freeze_us, "detail", r->detail ? r->detail : "",
				     "dry_run", dry_run));
	} else if (cancel) {
		printf("cancelled move %llu: %s\n", (unsigned long long)r->move_id, r->detail);
	} else if (dry_run) {
		printf("would move %u buckets and %u resources (%s): %llu directory entries, %llu bytes\n",
		       r->buckets, r->resources, r->detail, (unsigned long long)r->entries, (unsigned long long)r->bytes);
	} else {
		printf("map version %llu: moved %u buckets and %u resources (%s): %llu entries, %llu bytes in %.1f ms\n",
		       (unsigned long long)r->map_version, r->buckets, r->resources, r->detail,
		       (unsigned long long)r->entries, (unsigned long long)r->bytes, (double)r->elapsed_us / 1000.0);
	}
	coral_ctl_response_free(resp);
	return 0;
}

static int grd_history(void)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_GRDD, CORAL__CTL_REQUEST__BODY_GRD_HISTORY, CORAL__CTL_RESPONSE__BODY_GRD_HISTORY);
	if (resp == NULL)
		return 1;
	const Coral__GrdHistoryReply *h = resp->grd_history;
	json_t *arr = ctx.json ? json_array() : NULL;
	for (size_t i = 0; i < h->n_items; i++) {
		const Coral__GrdHistoryItem *it = h->items[i];
		if (ctx.json) {
			json_t *m = json_array();
			for (size_t k = 0; k < it->n_members; k++)
				json_array_append_new(m, json_integer(it->members[k]));
			json_array_append_new(arr, json_pack("{s:I, s:s, s:I, s:i, s:i, s:I, s:I, s:I, s:i, s:s, s:o}",
				"version", (json_int_t)it->version, "cause", it->cause_name, "at_ms", (json_int_t)it->at_ms,
				"moved_buckets", (int)it->moved_buckets, "moved_resources", (int)it->moved_resources,
				"moved_entries", (json_int_t)it->moved_entries, "moved_bytes", (json_int_t)it->moved_bytes,
				"freeze_ms", (json_int_t)it->freeze_ms, "coordinator", (int)it->coordinator,
				"detail", it->detail, "members", m));
			continue;
		}
		time_t t = (time_t)(it->at_ms / 1000);
		struct tm tm;
		char when[32];
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		printf("v%-5llu %s %-9s %6u buckets %5u resources %8llu entries %9llu bytes %6llu ms  %s\n",
		       (unsigned long long)it->version, when, it->cause_name, it->moved_buckets, it->moved_resources,
		       (unsigned long long)it->moved_entries, (unsigned long long)it->moved_bytes,
		       (unsigned long long)it->freeze_ms, it->detail);
	}
	if (ctx.json)
		print_json(arr);
	coral_ctl_response_free(resp);
	return 0;
}

static int grd_lock(const char *id, int op, const char *mode)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GrdLockRequest body = CORAL__GRD_LOCK_REQUEST__INIT;
	body.id = (char *)id;
	body.op = (uint32_t)op;
	body.mode = (char *)(mode ? mode : "");
	req.body_case = CORAL__CTL_REQUEST__BODY_GRD_LOCK;
	req.grd_lock = &body;
	Coral__CtlResponse *resp = grdd_call(&req, CORAL__CTL_RESPONSE__BODY_GRD_LOCK);
	if (resp == NULL)
		return 1;
	const Coral__GrdLockReply *r = resp->grd_lock;
	if (ctx.json)
		print_json(json_pack("{s:i, s:I, s:i, s:I}", "master", (int)r->master, "map_version",
				     (json_int_t)r->map_version, "attempts", (int)r->attempts, "elapsed_us",
				     (json_int_t)r->elapsed_us));
	else
		printf("%s %s by master node %u at map version %llu (%u attempts, %.2f ms)\n", id,
		       op == 1 ? "granted" : "released", r->master, (unsigned long long)r->map_version, r->attempts,
		       (double)r->elapsed_us / 1000.0);
	coral_ctl_response_free(resp);
	return 0;
}

int run_grd_status(int argc, char **argv)
{
	(void)argc, (void)argv;
	return grd_status();
}

int run_grd_resource(int argc, char **argv)
{
	(void)argc;
	return grd_resource(argv[0]);
}

int run_grd_top(int argc, char **argv)
{
	int64_t n = 10;
	if (argc == 1 && (!coral_parse_int(argv[0], &n) || n < 1 || n > 100)) {
		fprintf(stderr, "coralctl: grd top N takes 1-100\n");
		return 2;
	}
	return grd_top((int)n);
}

int run_grd_history(int argc, char **argv)
{
	(void)argc, (void)argv;
	return grd_history();
}

int run_grd_remaster(int argc, char **argv)
{
	bool dry = false, cancel = false;
	const char *pos[2];
	int np = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dry-run") == 0)
			dry = true;
		else if (strcmp(argv[i], "--cancel") == 0)
			cancel = true;
		else if (np < 2)
			pos[np++] = argv[i];
		else
			return coralctl_usage_error();
	}
	if (cancel && np == 0 && !dry)
		return grd_remaster(NULL, 0, false, true, false);
	uint32_t to;
	if (cancel || np != 2 || !parse_node(pos[1], &to))
		return coralctl_usage_error();
	return grd_remaster(pos[0], to, dry, false, false);
}

int run_grd_recovered(int argc, char **argv)
{
	(void)argc;
	uint32_t n;
	if (!parse_node(argv[0], &n))
		return 2;
	return grd_remaster(NULL, n, false, false, true);
}

int run_grd_lock(int argc, char **argv)
{
	(void)argc;
	return grd_lock(argv[0], 1, argv[1]);
}

int run_grd_unlock(int argc, char **argv)
{
	(void)argc;
	return grd_lock(argv[0], 2, NULL);
}

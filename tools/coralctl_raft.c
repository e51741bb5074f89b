/* coralctl's raftd commands: raft status, history and transfer-leader; cluster members,
 * add-node and remove-node; kv get, put, del and list. Each is one request to the node's
 * raftd, which forwards to the leader what only the leader can do. */
#include "coralctl.h"
#include "kv.h"
#include "cluster.h"
#include "errors.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* A membership change or leadership transfer that raftd refuses as busy (its log write in
 * progress, or the previous change not committed yet) changed nothing: it is asked again for
 * this long, as an operator would, rather than failing on a moment's overlap. */
#define CHANGE_BUSY_MS 5000

static Coral__CtlResponse *raftd_call(Coral__CtlRequest *req, Coral__CtlResponse__BodyCase want)
{
	return daemon_call(CORAL_D_RAFTD, req, want);
}

static bool parse_id(const char *s, uint32_t *id)
{
	int64_t v;
	if (!coral_parse_int(s, &v) || v < 1 || v > CORAL_MAX_NODES)
		return false;
	*id = (uint32_t)v;
	return true;
}

/* ---- raft ----------------------------------------------------------------------------- */

static int raft_status(void)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_RAFTD, CORAL__CTL_REQUEST__BODY_RAFT_STATUS, CORAL__CTL_RESPONSE__BODY_RAFT_STATUS);
	if (resp == NULL)
		return 1;
	const Coral__RaftStatusReply *s = resp->raft_status;
	if (ctx.json) {
		json_t *peers = json_array();
		for (size_t i = 0; i < s->n_peers; i++) {
			const Coral__RaftPeer *p = s->peers[i];
			json_array_append_new(peers, json_pack(
				"{s:i, s:s, s:I, s:I, s:I, s:f, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:s}",
				"id", (int)p->id, "role", p->role, "match", (json_int_t)p->match,
				"lag", (json_int_t)p->lag, "incarnation", (json_int_t)p->incarnation,
				"phi", p->phi, "suspected", p->suspected, "connected", p->connected,
				"rtt_us", (json_int_t)p->rtt_us, "msgs_out", (json_int_t)p->msgs_out,
				"msgs_in", (json_int_t)p->msgs_in, "reconnects", (json_int_t)p->reconnects,
				"last_heard_ms", (json_int_t)(p->last_heard_ms == UINT64_MAX ? -1 : (int64_t)p->last_heard_ms),
				"last_error", p->last_error));
		}
		print_json(json_pack("{s:i, s:s, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, "
				     "s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
				     "node", (int)s->node_id, "role", s->role, "term", (json_int_t)s->term,
				     "leader", (int)s->leader, "commit", (json_int_t)s->commit,
				     "applied", (json_int_t)s->applied, "last_index", (json_int_t)s->last_index,
				     "snapshot_index", (json_int_t)s->snapshot_index,
				     "log_bytes", (json_int_t)s->log_bytes,
				     "log_segments", (json_int_t)s->log_segments,
				     "epoch", (json_int_t)s->epoch, "incarnation", (json_int_t)s->incarnation,
				     "fenced", s->fenced, "fence_reason", s->fence_reason,
				     "lease_left_ms", (json_int_t)s->lease_left_ms,
				     "syncs", (json_int_t)s->syncs, "entries_synced", (json_int_t)s->entries_synced,
				     "pending", (json_int_t)s->pending, "refused_busy", (json_int_t)s->refused_busy,
				     "http_clients", (json_int_t)s->http_clients,
				     "http_clients_max", (json_int_t)s->http_clients_max,
				     "http_full", (json_int_t)s->http_full, "http_closed_idle",
				     (json_int_t)s->http_closed_idle, "peers", peers));
	} else {
		printf("node %u: %s, term %llu, leader %u\n", s->node_id, s->role,
		       (unsigned long long)s->term, s->leader);
		printf("commit %llu, applied %llu, last index %llu, snapshot at %llu (%llu bytes)\n",
		       (unsigned long long)s->commit, (unsigned long long)s->applied,
		       (unsigned long long)s->last_index, (unsigned long long)s->snapshot_index,
		       (unsigned long long)s->snapshot_bytes);
		printf("log %llu bytes in %llu segment(s); %llu syncs for %llu entries",
		       (unsigned long long)s->log_bytes, (unsigned long long)s->log_segments,
		       (unsigned long long)s->syncs, (unsigned long long)s->entries_synced);
		if (s->syncs)
			printf(" (%.1f per sync)", (double)s->entries_synced / (double)s->syncs);
		printf("\nepoch %llu, incarnation %llu, %s", (unsigned long long)s->epoch,
		       (unsigned long long)s->incarnation, s->fenced ? "FENCED: " : "not fenced");
		if (s->fenced)
			printf("%s", s->fence_reason);
		printf(", lease %lld ms left\n", (long long)s->lease_left_ms);
		printf("HTTP: %u of %u connections", s->http_clients, s->http_clients_max);
		if (s->http_full)
			printf(", held the bound %llu time(s)", (unsigned long long)s->http_full);
		if (s->http_closed_idle)
			printf(", %llu silent one(s) closed at the bound", (unsigned long long)s->http_closed_idle);
		printf("\n");
		printf("%-4s %-8s %10s %8s %6s %8s %5s %9s %9s %s\n", "PEER", "ROLE", "MATCH", "LAG", "PHI",
		       "RTT_US", "CONN", "HEARD_MS", "INC", "LAST_ERROR");
		for (size_t i = 0; i < s->n_peers; i++) {
			const Coral__RaftPeer *p = s->peers[i];
			char heard[24];
			if (p->id == s->node_id)
				snprintf(heard, sizeof(heard), "self");
			else if (p->last_heard_ms == UINT64_MAX)
				snprintf(heard, sizeof(heard), "never");
			else
				snprintf(heard, sizeof(heard), "%llu", (unsigned long long)p->last_heard_ms);
			printf("%-4u %-8s %10llu %8llu %6.1f %8llu %5s %9s %9llu %s\n", p->id, p->role,
			       (unsigned long long)p->match, (unsigned long long)p->lag, p->phi,
			       (unsigned long long)p->rtt_us, p->connected ? "yes" : "no", heard,
			       (unsigned long long)p->incarnation, p->last_error);
		}
	}
	coral_ctl_response_free(resp);
	return 0;
}

static int raft_history(void)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_RAFTD, CORAL__CTL_REQUEST__BODY_RAFT_HISTORY, CORAL__CTL_RESPONSE__BODY_RAFT_HISTORY);
	if (resp == NULL)
		return 1;
	const Coral__RaftHistoryReply *h = resp->raft_history;
	json_t *arr = ctx.json ? json_array() : NULL;
	if (!ctx.json && h->dropped)
		printf("(%llu older events dropped: history_size)\n", (unsigned long long)h->dropped);
	for (size_t i = 0; i < h->n_events; i++) {
		const Coral__RaftHistoryEvent *e = h->events[i];
		char t[40];
		coralctl_time(e->at_ns, t, sizeof(t));
		if (ctx.json)
			json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I, s:s, s:i, s:s}", "at", t,
							     "at_ms", (json_int_t)(e->at_ns / 1000000ull),
							     "term", (json_int_t)e->term, "epoch",
							     (json_int_t)e->epoch, "kind", e->kind,
							     "node", (int)e->node, "reason", e->reason));
		else
			printf("%s term %-4llu epoch %-4llu %-9s node %-3u %s\n", t,
			       (unsigned long long)e->term, (unsigned long long)e->epoch, e->kind, e->node,
			       e->reason);
	}
	if (ctx.json)
		print_json(json_pack("{s:o, s:I}", "events", arr, "dropped", (json_int_t)h->dropped));
	coral_ctl_response_free(resp);
	return 0;
}

static int raft_transfer(const char *arg)
{
	uint32_t to;
	if (!parse_id(arg, &to))
		return coralctl_usage_error();
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__RaftTransferRequest body = CORAL__RAFT_TRANSFER_REQUEST__INIT;
	body.to = to;
	req.body_case = CORAL__CTL_REQUEST__BODY_RAFT_TRANSFER;
	req.raft_transfer = &body;
	Coral__CtlResponse *resp = daemon_call_busy(CORAL_D_RAFTD, &req, 0, CHANGE_BUSY_MS);
	if (resp == NULL)
		return 1;
	if (ctx.json)
		print_json(json_pack("{s:i}", "transfer_to", (int)to));
	else
		printf("leadership transfer to node %u started; see coralctl raft status\n", to);
	coral_ctl_response_free(resp);
	return 0;
}

int run_raft_status(int argc, char **argv)
{
	(void)argc, (void)argv;
	return raft_status();
}

int run_raft_history(int argc, char **argv)
{
	(void)argc, (void)argv;
	return raft_history();
}

int run_raft_transfer(int argc, char **argv)
{
	(void)argc;
	return raft_transfer(argv[0]);
}

/* ---- cluster -------------------------------------------------------------------------- */

static int cluster_members(bool stale)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__MembersRequest body = CORAL__MEMBERS_REQUEST__INIT;
	body.stale = stale;
	req.body_case = CORAL__CTL_REQUEST__BODY_MEMBERS;
	req.members = &body;
	Coral__CtlResponse *resp = raftd_call(&req, CORAL__CTL_RESPONSE__BODY_MEMBERS);
	if (resp == NULL)
		return 1;
	const Coral__MembersReply *m = resp->members;
	json_t *arr = ctx.json ? json_array() : NULL;
	if (!ctx.json) {
		printf("epoch %llu, leader node %u\n", (unsigned long long)m->epoch, m->leader);
		printf("%-4s %-22s %-8s %-8s %5s  %s\n", "ID", "ADDRESS", "STATE", "RAFT", "INC", "REASON");
	}
	for (size_t i = 0; i < m->n_members; i++) {
		const Coral__Member *e = m->members[i];
		if (ctx.json)
			json_array_append_new(arr, json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:I}", "id",
							     (int)e->id, "address", e->address, "state",
							     e->state, "raft", e->raft_role, "incarnation",
							     (json_int_t)e->incarnation, "reason", e->reason,
							     "changed_index", (json_int_t)e->changed_index));
		else
			printf("%-4u %-22s %-8s %-8s %5llu  %s\n", e->id, e->address[0] ? e->address : "-",
			       e->state, e->raft_role, (unsigned long long)e->incarnation, e->reason);
	}
	if (ctx.json)
		print_json(json_pack("{s:I, s:i, s:o}", "epoch", (json_int_t)m->epoch, "leader",
				     (int)m->leader, "members", arr));
	coral_ctl_response_free(resp);
	return 0;
}

int run_cluster_members(int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "--stale") != 0)
		return coralctl_usage_error();
	return cluster_members(argc == 1);
}

int run_cluster_add_node(int argc, char **argv)
{
	(void)argc;
	uint32_t id;
	if (!parse_id(argv[0], &id) || strchr(argv[1], ':') == NULL)
		return coralctl_usage_error();
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__AddNodeRequest body = CORAL__ADD_NODE_REQUEST__INIT;
	body.id = id;
	body.address = argv[1];
	req.body_case = CORAL__CTL_REQUEST__BODY_ADD_NODE;
	req.add_node = &body;
	Coral__CtlResponse *resp = daemon_call_busy(CORAL_D_RAFTD, &req, 0, CHANGE_BUSY_MS);
	if (resp == NULL)
		return 1;
	printf("node %u added at %s as a learner; it becomes a voter once caught up\n", id, argv[1]);
	coral_ctl_response_free(resp);
	return 0;
}

int run_cluster_remove_node(int argc, char **argv)
{
	(void)argc;
	uint32_t id;
	if (!parse_id(argv[0], &id))
		return coralctl_usage_error();
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__RemoveNodeRequest body = CORAL__REMOVE_NODE_REQUEST__INIT;
	body.id = id;
	req.body_case = CORAL__CTL_REQUEST__BODY_REMOVE_NODE;
	req.remove_node = &body;
	Coral__CtlResponse *resp = daemon_call_busy(CORAL_D_RAFTD, &req, 0, CHANGE_BUSY_MS);
	if (resp == NULL)
		return 1;
	printf("node %u removed; its id is never reused\n", id);
	coral_ctl_response_free(resp);
	return 0;
}

/* ---- kv ------------------------------------------------------------------------------- */

static void print_value(const ProtobufCBinaryData *v)
{
	fwrite(v->data, 1, v->len, stdout);
	putchar('\n');
}

/* kv watch: long polls, one after another, each shorter than the control timeout; prints
 * every change under the prefix (with --members: membership changes instead) as it commits.
 * Ends after --count events or --for ms, else runs until interrupted. */
int run_kv_watch(int argc, char **argv)
{
	const char *prefix = "";
	bool members = false;
	int64_t count = 0, for_ms = 0, from = 0;
	bool from_given = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--members") == 0)
			members = true;
		else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc && coral_parse_int(argv[i + 1], &from) && from >= 0)
			i++, from_given = true;
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc && coral_parse_int(argv[i + 1], &count) && count > 0)
			i++;
		else if (strcmp(argv[i], "--for") == 0 && i + 1 < argc && coral_parse_int(argv[i + 1], &for_ms) && for_ms > 0)
			i++;
		else if (argv[i][0] != '-' && prefix[0] == '\0')
			prefix = argv[i];
		else
			return coralctl_usage_error();
	}
	int64_t poll = ctx.conf.cluster.ipc_timeout_ms - 500;
	struct coral_kv_req kr;
	coral_kv_watch(&kr, prefix, members, (uint64_t)from, (uint32_t)(poll < 100 ? 100 : poll));
	Coral__WatchRequest *w = &kr.watch;  /* adjusted from poll to poll */
	uint64_t end = for_ms ? coral_now_mono_ns() + (uint64_t)for_ms * 1000000ull : 0;
	int64_t seen = 0;
	/* without --from, start at the current index: only changes from now on */
	bool now_only = !from_given;
	for (;;) {
		if (end) {
			uint64_t now = coral_now_mono_ns();
			if (now >= end)
				return 0;
			if ((end - now) / 1000000ull < w->timeout_ms)
				w->timeout_ms = (uint32_t)((end - now) / 1000000ull) + 1;
		}
		if (now_only)
			w->after_index = UINT64_MAX; /* answered at once with the current index */
		Coral__CtlResponse *resp = raftd_call(&kr.req, CORAL__CTL_RESPONSE__BODY_WATCH);
		if (resp == NULL)
			return 1;
		const Coral__WatchReply *r = resp->watch;
		if (now_only) {
			now_only = false;
			w->after_index = r->index;
			coral_ctl_response_free(resp);
			continue;
		}
		if (r->compacted)
			fprintf(stderr, "coralctl: changes after index %llu are no longer kept (the "
					"watch ring holds the last 4096); going on from index %llu\n",
				(unsigned long long)w->after_index, (unsigned long long)r->index);
		for (size_t i = 0; i < r->n_events && (count == 0 || seen < count); i++, seen++) {
			const Coral__WatchEvent *e = r->events[i];
			bool members = strcmp(e->key, "@members") == 0;
			if (ctx.json) {
				json_t *v = json_stringn((const char *)e->value.data, e->value.len);
				print_json(json_pack("{s:I, s:s, s:o, s:b, s:I}", "index", (json_int_t)e->index,
						     "key", e->key, "value", v ? v : json_null(),
						     "deleted", e->deleted, "value_index",
						     (json_int_t)e->value_index));
			} else if (members) {
				printf("%llu membership changed (coralctl cluster members)\n",
				       (unsigned long long)e->index);
			} else if (e->deleted) {
				printf("%llu %s deleted\n", (unsigned long long)e->index, e->key);
			} else if (e->value_index == 0) {
				printf("%llu %s written, deleted since\n", (unsigned long long)e->index, e->key);
			} else if (e->value_index != e->index) {
				printf("%llu %s written; now (index %llu) = ", (unsigned long long)e->index,
				       e->key, (unsigned long long)e->value_index);
				print_value(&e->value);
			} else {
				printf("%llu %s = ", (unsigned long long)e->index, e->key);
				print_value(&e->value);
			}
			fflush(stdout);
		}
		if (r->index > w->after_index)
			w->after_index = r->index;
		coral_ctl_response_free(resp);
		if (count && seen >= count)
			return 0;
	}
}

/* The answer to a kv request: the value (get), KEY = VALUE lines (list), the index (put,
 * del); with --json, the pairs and the index. */
static int kv_print(struct coral_kv_req *kr)
{
	Coral__CtlResponse *resp = raftd_call(&kr->req, CORAL__CTL_RESPONSE__BODY_KV);
	if (resp == NULL)
		return 1;
	const Coral__KvReply *k = resp->kv;
	if (ctx.json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < k->n_kv; i++) {
			json_t *v = json_stringn((const char *)k->kv[i]->value.data, k->kv[i]->value.len);
			json_array_append_new(arr, json_pack("{s:s, s:o, s:I, s:I}", "key", k->kv[i]->key,
							     "value", v ? v : json_null(), "create_index",
							     (json_int_t)k->kv[i]->create_index, "mod_index",
							     (json_int_t)k->kv[i]->mod_index));
		}
		print_json(json_pack("{s:o, s:I}", "kvs", arr, "index", (json_int_t)k->index));
	} else if (kr->kv.op == CORAL__KV_OP__KV_GET && k->n_kv == 1) {
		print_value(&k->kv[0]->value);
	} else if (kr->kv.op == CORAL__KV_OP__KV_LIST) {
		for (size_t i = 0; i < k->n_kv; i++) {
			printf("%s = ", k->kv[i]->key);
			print_value(&k->kv[i]->value);
		}
	} else {
		printf("ok (index %llu)\n", (unsigned long long)k->index);
	}
	coral_ctl_response_free(resp);
	return 0;
}

/* The positional arguments, and whether --stale was among them; false if anything else
 * starting with -- was. */
static bool stale_arg(int *argc, char **argv, bool *stale)
{
	int n = 0;
	*stale = false;
	for (int i = 0; i < *argc; i++) {
		if (strcmp(argv[i], "--stale") == 0)
			*stale = true;
		else if (strncmp(argv[i], "--", 2) == 0)
			return false;
		else
			argv[n++] = argv[i];
	}
	*argc = n;
	return true;
}

int run_kv_get(int argc, char **argv)
{
	bool stale;
	if (!stale_arg(&argc, argv, &stale) || argc != 1)
		return coralctl_usage_error();
	struct coral_kv_req kr;
	coral_kv_get(&kr, argv[0], stale);
	return kv_print(&kr);
}

int run_kv_list(int argc, char **argv)
{
	bool stale;
	if (!stale_arg(&argc, argv, &stale) || argc > 1)
		return coralctl_usage_error();
	struct coral_kv_req kr;
	coral_kv_list(&kr, argc == 1 ? argv[0] : "", stale);
	return kv_print(&kr);
}

int run_kv_put(int argc, char **argv)
{
	(void)argc;
	struct coral_kv_req kr;
	coral_kv_put(&kr, argv[0], argv[1], strlen(argv[1]));
	return kv_print(&kr);
}

int run_kv_del(int argc, char **argv)
{
	(void)argc;
	struct coral_kv_req kr;
	coral_kv_del(&kr, argv[0]);
	return kv_print(&kr);
}

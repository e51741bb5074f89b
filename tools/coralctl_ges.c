/* coralctl ges stats|resource: global enqueues as lmdd sees them (over its socket): its
 * counters as a master and as a requester, and one resource's queues at its master. */
#include "coralctl.h"
#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ges_stats(void)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_LMDD, CORAL__CTL_REQUEST__BODY_GES_STATS, CORAL__CTL_RESPONSE__BODY_GES_STATS);
	if (resp == NULL)
		return 1;
	const Coral__GesStatsReply *r = resp->ges_stats;
	if (ctx.json) {
		json_t *j = json_object();
		json_object_set_new(j, "node", json_integer((json_int_t)ctx.node->id));
#define F(x) json_object_set_new(j, #x, json_integer((json_int_t)r->x))
		F(requests); F(granted_now); F(queued); F(converts); F(unlocks); F(cancels); F(noqueue_refused);
		F(timeouts); F(conv_deadlocks); F(demoted); F(basts); F(full); F(lvb_writes); F(lvb_invalidated); F(lvb_recovered);
		F(sessions_gone); F(nodes_lost); F(locks_lost); F(resources); F(locks); F(own_locks); F(sent);
		F(not_master); F(joining_refused); F(joining_waits); F(unlocks_early); F(refused_msgs); F(basts_received); F(rebuilt); F(dropped); F(map_version);
		F(victims); F(deadlocks); F(coordinator); F(edges); F(phantoms); F(probes_lapsed); F(swept); F(basts_delivered); F(graph_full);
		F(orphans_settled); F(owed); F(owed_total); F(owed_refused);
		F(fast_grants); F(fast_converts); F(fast_unlocks); F(fast_refused); F(fast_fallbacks); F(fast_imports);
		F(fast_repairs);
		json_object_set_new(j, "held", json_boolean(r->held));
		json_object_set_new(j, "fast_open", json_boolean(r->fast_open));
#undef F
		print_json(j);
	} else {
		printf("node %lld: masters %u resources with %u locks; its sessions hold %u locks\n", (long long)ctx.node->id,
		       r->resources, r->locks, r->own_locks);
		printf("  map version %llu: %s; %llu locks put back here by their holders after the map moved, %llu "
		       "resources given up to their new masters\n", (unsigned long long)r->map_version,
		       r->held ? "REBUILDING (nothing granted until every member has put its locks back)" : "granting",
		       (unsigned long long)r->rebuilt, (unsigned long long)r->dropped);
		printf("  as master: %llu requests (%llu granted at once, %llu queued), %llu conversions, %llu unlocks, "
		       "%llu cancels\n", (unsigned long long)r->requests, (unsigned long long)r->granted_now,
		       (unsigned long long)r->queued, (unsigned long long)r->converts, (unsigned long long)r->unlocks,
		       (unsigned long long)r->cancels);
		printf("  refused: %llu no-queue, %llu timed out, %llu conversion deadlocks (%llu taken down to NL), %llu "
		       "with the tables full\n", (unsigned long long)r->noqueue_refused, (unsigned long long)r->timeouts,
		       (unsigned long long)r->conv_deadlocks, (unsigned long long)r->demoted, (unsigned long long)r->full);
		printf("  blocking notifications: %llu sent, %llu received, %llu handed to subscribed sessions; value blocks: "
		       "%llu written, %llu made invalid, %llu taken from a holder's copy or the old master after a rebuild\n",
		       (unsigned long long)r->basts, (unsigned long long)r->basts_received,
		       (unsigned long long)r->basts_delivered, (unsigned long long)r->lvb_writes,
		       (unsigned long long)r->lvb_invalidated, (unsigned long long)r->lvb_recovered);
		printf("  deadlocks: coordinator node %u%s; %llu waits refused here as victims\n", r->coordinator,
		       r->coordinator == (uint32_t)ctx.node->id ? " (this node)" : "", (unsigned long long)r->victims);
		if (r->coordinator == (uint32_t)ctx.node->id)
			printf("  as coordinator: %u edges in the wait-for graph, %llu deadlocks found (coralctl ges deadlocks); "
			       "%llu cycles gone when probed, %llu probes lapsed, %llu deadlocks the sweep found first, "
			       "%llu reports refused with the graph full ([ges] graph_edges)\n",
			       r->edges, (unsigned long long)r->deadlocks, (unsigned long long)r->phantoms,
			       (unsigned long long)r->probes_lapsed, (unsigned long long)r->swept,
			       (unsigned long long)r->graph_full);
		printf("  fast path (%s): %llu grants, %llu conversions, %llu unlocks, %llu no-queue refusals by the "
		       "sessions themselves; %llu calls went to lmdd instead, %llu resources taken over by lmdd, %llu "
		       "buckets repaired\n", r->fast_open ? "open" : "CLOSED: a rebuild is under way",
		       (unsigned long long)r->fast_grants, (unsigned long long)r->fast_converts,
		       (unsigned long long)r->fast_unlocks, (unsigned long long)r->fast_refused,
		       (unsigned long long)r->fast_fallbacks, (unsigned long long)r->fast_imports,
		       (unsigned long long)r->fast_repairs);
		printf("  losses: %llu sessions, %llu nodes (%llu locks held for recovery), %llu conversions under way at "
		       "an lmdd restart settled; messages: %llu sent, %llu answered 'not the master', %llu refused\n",
		       (unsigned long long)r->sessions_gone, (unsigned long long)r->nodes_lost,
		       (unsigned long long)r->locks_lost, (unsigned long long)r->orphans_settled,
		       (unsigned long long)r->sent, (unsigned long long)r->not_master, (unsigned long long)r->refused_msgs);
		printf("  requests of nodes not yet on grdd's ring refused here %llu; this node's refused so, asked again "
		       "%llu\n", (unsigned long long)r->joining_refused, (unsigned long long)r->joining_waits);
		printf("  unlocks answered as they left for their master %llu\n", (unsigned long long)r->unlocks_early);
		printf("  owed to peers whose connection could not take them: %llu now, %llu in all, %llu refused past "
		       "the bound\n", (unsigned long long)r->owed, (unsigned long long)r->owed_total,
		       (unsigned long long)r->owed_refused);
	}
	coral_ctl_response_free(resp);
	return 0;
}

int run_ges_stats(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return ges_stats();
}

/* The resource at this node's lmdd, or, when another node masters it, at that one's. */
int run_ges_resource(int argc, char **argv)
{
	(void)argc;
	const char *name = argv[0];
	size_t len = strlen(name);
	if (len == 0 || len > 64) {
		fprintf(stderr, "coralctl: a resource name has 1 to 64 bytes\n");
		return 2;
	}
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__GesResourceRequest g = CORAL__GES_RESOURCE_REQUEST__INIT;
	g.name.data = (uint8_t *)name;
	g.name.len = len;
	req.body_case = CORAL__CTL_REQUEST__BODY_GES_RESOURCE;
	req.ges_resource = &g;
	Coral__CtlResponse *resp = daemon_call(CORAL_D_LMDD, &req, CORAL__CTL_RESPONSE__BODY_GES_RESOURCE);
	if (resp == NULL)
		return 1;
	uint32_t master = resp->ges_resource->master;
	if (!resp->ges_resource->here && master != 0 && (int64_t)master != ctx.node->id) {
		const struct coral_node_conf *mn = coral_conf_node_by_id(&ctx.conf, master);
		if (mn != NULL) {
			coral_ctl_response_free(resp);
			ctx.node = mn;
			resp = daemon_call(CORAL_D_LMDD, &req, CORAL__CTL_RESPONSE__BODY_GES_RESOURCE);
			if (resp == NULL)
				return 1;
		}
	}
	const Coral__GesResourceReply *r = resp->ges_resource;
	if (ctx.json) {
		json_t *locks = json_array();
		for (size_t i = 0; i < r->n_locks; i++) {
			const Coral__GesLockInfo *l = r->locks[i];
			json_array_append_new(locks, json_pack("{s:i, s:I, s:I, s:s, s:s, s:s, s:b, s:I}", "node", (int)l->node,
							       "session", (json_int_t)l->session, "lkid", (json_int_t)l->lkid,
							       "granted", l->granted, "requested", l->requested, "queue",
							       l->queue, "lost", l->lost, "waited_ms", (json_int_t)l->waited_ms));
		}
		print_json(json_pack("{s:s, s:i, s:b, s:b, s:o}", "name", name, "master", (int)r->master, "known", r->here,
				     "lvb_valid", r->lvb_valid, "locks", locks));
	} else if (!r->here) {
		printf("%s: mastered by node %u, which has no lock on it\n", name, r->master);
	} else {
		printf("%s: mastered by node %u, value block %s\n", name, r->master, r->lvb_valid ? "valid" : "NOT valid");
		for (size_t i = 0; i < r->n_locks; i++) {
			const Coral__GesLockInfo *l = r->locks[i];
			printf("  %-10s node %u session %llu lock %llu: %s%s%s%s", l->queue, l->node,
			       (unsigned long long)(l->session & 0xffffffffu), (unsigned long long)l->lkid,
			       l->granted[0] ? l->granted : "-", l->requested[0] ? " -> " : "", l->requested,
			       l->lost ? " (its node is lost: held until recovered)" : "");
			if (l->waited_ms)
				printf(", waiting %llu ms", (unsigned long long)l->waited_ms);
			printf("\n");
		}
	}
	coral_ctl_response_free(resp);
	return 0;
}

/* The coordinator of deadlock detection as this node's lmdd knows it; then the request asked
 * of that node's lmdd (NULL: said why). */
static Coral__CtlResponse *ask_coordinator(Coral__CtlRequest__BodyCase body, Coral__CtlResponse__BodyCase want)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_LMDD, CORAL__CTL_REQUEST__BODY_GES_STATS,
					      CORAL__CTL_RESPONSE__BODY_GES_STATS);
	if (resp == NULL)
		return NULL;
	uint32_t coord = resp->ges_stats->coordinator;
	coral_ctl_response_free(resp);
	if (coord != 0 && (int64_t)coord != ctx.node->id) {
		const struct coral_node_conf *cn = coral_conf_node_by_id(&ctx.conf, coord);
		if (cn == NULL) {
			fprintf(stderr, "coralctl: the coordinator, node %u, is not in the configuration\n", coord);
			return NULL;
		}
		ctx.node = cn;
	}
	return daemon_ask(CORAL_D_LMDD, body, want);
}

/* The wait-for graph the coordinator has now: text, --dot (Graphviz), or --json. */
int run_ges_graph(int argc, char **argv)
{
	bool dot = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dot") == 0)
			dot = true;
		else if (strcmp(argv[i], "--json") == 0)
			ctx.json = true;
		else {
			fprintf(stderr, "coralctl ges graph: unknown option %s (--dot or --json)\n", argv[i]);
			return 2;
		}
	}
	Coral__CtlResponse *resp = ask_coordinator(CORAL__CTL_REQUEST__BODY_GES_GRAPH, CORAL__CTL_RESPONSE__BODY_GES_GRAPH);
	if (resp == NULL)
		return 1;
	const Coral__GesGraphReply *r = resp->ges_graph;
	if (ctx.json) {
		json_t *all = json_array();
		for (size_t i = 0; i < r->n_edges; i++) {
			const Coral__GesGraphEdge *e = r->edges[i];
			json_array_append_new(all, json_pack("{s:i, s:I, s:i, s:I, s:s, s:i, s:I, s:I, s:i}", "waiter_node",
							     (int)e->waiter_node, "waiter_session", (json_int_t)e->waiter_session,
							     "holder_node", (int)e->holder_node, "holder_session",
							     (json_int_t)e->holder_session, "resource", e->resource, "master",
							     (int)e->master, "lkid", (json_int_t)e->lkid, "since_ms",
							     (json_int_t)e->since_ms, "held", (int)e->held));
		}
		print_json(json_pack("{s:i, s:i, s:i, s:o}", "coordinator", (int)r->coordinator, "total", (int)r->total,
				     "probing", (int)r->probing, "edges", all));
	} else if (dot) {
		printf("digraph ges_waits {\n  // coordinator node %u; %u edges%s\n", r->coordinator, r->total,
		       r->total > r->n_edges ? " (the first ones only)" : "");
		for (size_t i = 0; i < r->n_edges; i++) {
			const Coral__GesGraphEdge *e = r->edges[i];
			printf("  \"%u/%llu\" -> \"%u/%llu\" [label=\"%s@%u\"];\n", e->waiter_node,
			       (unsigned long long)e->waiter_session, e->holder_node, (unsigned long long)e->holder_session,
			       e->resource, e->master);
		}
		printf("}\n");
	} else {
		printf("coordinator: node %u; %u waits in the graph%s; %u cycles being probed\n", r->coordinator, r->total,
		       r->total > r->n_edges ? " (the first ones listed)" : "", r->probing);
		for (size_t i = 0; i < r->n_edges; i++) {
			const Coral__GesGraphEdge *e = r->edges[i];
			printf("  node %u session %llu waits for node %u session %llu on %s (master node %u, lock %llu)\n",
			       e->waiter_node, (unsigned long long)e->waiter_session, e->holder_node,
			       (unsigned long long)e->holder_session, e->resource, e->master, (unsigned long long)e->lkid);
		}
	}
	coral_ctl_response_free(resp);
	return 0;
}

/* The locks of this node's sessions: held, and asked for, wherever mastered. */
int run_ges_locks(int argc, char **argv)
{
	Coral__GesLocksRequest g = CORAL__GES_LOCKS_REQUEST__INIT;
	for (int i = 0; i < argc; i++) {
		char *end = NULL;
		if (strcmp(argv[i], "--waiting") == 0)
			g.waiting = true;
		else if (strcmp(argv[i], "--json") == 0)
			ctx.json = true;
		else if (strcmp(argv[i], "--session") == 0 && i + 1 < argc &&
			 (g.session = (uint32_t)strtoul(argv[i + 1], &end, 10), end && *end == 0 && g.session != 0))
			i++;
		else {
			fprintf(stderr, "coralctl ges locks: [--waiting] [--session ID] (ID: a session number, as shown)\n");
			return 2;
		}
	}
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_GES_LOCKS;
	req.ges_locks = &g;
	Coral__CtlResponse *resp = daemon_call(CORAL_D_LMDD, &req, CORAL__CTL_RESPONSE__BODY_GES_LOCKS);
	if (resp == NULL)
		return 1;
	const Coral__GesLocksReply *r = resp->ges_locks;
	if (ctx.json) {
		json_t *all = json_array();
		for (size_t i = 0; i < r->n_locks; i++) {
			const Coral__GesOwnLock *l = r->locks[i];
			json_array_append_new(all, json_pack("{s:i, s:I, s:s, s:i, s:s, s:s, s:s, s:b, s:b, s:b}",
							     "session", (int)l->session, "lkid", (json_int_t)l->lkid, "resource",
							     l->resource, "master", (int)l->master, "granted", l->granted, "op",
							     l->op, "want", l->want, "orphan", l->orphan, "dying", l->dying,
							     "fast", l->fast));
		}
		print_json(json_pack("{s:i, s:i, s:o}", "node", (int)ctx.node->id, "total", (int)r->total, "locks", all));
	} else {
		printf("node %lld: %u locks of its sessions%s%s\n", (long long)ctx.node->id, r->total,
		       g.waiting ? " with a request under way" : "", r->total > r->n_locks ? " (the first 4096 listed)" : "");
		for (size_t i = 0; i < r->n_locks; i++) {
			const Coral__GesOwnLock *l = r->locks[i];
			printf("  session %u lock %llu on %s (master node %u): %s%s%s%s%s%s\n", l->session,
			       (unsigned long long)l->lkid, l->resource, l->master, l->granted[0] ? l->granted : "-",
			       l->op[0] ? ", " : "", l->op, l->want[0] ? " to " : "", l->want,
			       l->dying ? " (its session ended: being released)" : l->orphan ? " (orphaned by an lmdd restart)"
			       : l->fast ? " (fast: granted by its session)" : "");
		}
	}
	coral_ctl_response_free(resp);
	return 0;
}

/* The deadlocks found by the coordinator (asked of this node, then of the coordinator). */
int run_ges_deadlocks(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	Coral__CtlResponse *resp = ask_coordinator(CORAL__CTL_REQUEST__BODY_GES_DEADLOCKS,
						   CORAL__CTL_RESPONSE__BODY_GES_DEADLOCKS);
	if (resp == NULL)
		return 1;
	const Coral__GesDeadlocksReply *r = resp->ges_deadlocks;
	if (ctx.json) {
		json_t *all = json_array();
		for (size_t i = 0; i < r->n_deadlocks; i++) {
			const Coral__GesDeadlock *d = r->deadlocks[i];
			json_t *cyc = json_array();
			for (size_t k = 0; k < d->n_cycle; k++) {
				const Coral__GesCycleStep *s = d->cycle[k];
				json_array_append_new(cyc, json_pack("{s:i, s:I, s:s, s:i, s:I}", "node", (int)s->node, "session",
								     (json_int_t)s->session, "resource", s->resource, "master",
								     (int)s->master, "lkid", (json_int_t)s->lkid));
			}
			json_array_append_new(all, json_pack("{s:I, s:i, s:o}", "at_ms", (json_int_t)d->at_ms, "victim",
							     (int)d->victim, "cycle", cyc));
		}
		print_json(json_pack("{s:i, s:o}", "coordinator", (int)r->coordinator, "deadlocks", all));
	} else {
		printf("coordinator: node %u; %zu deadlocks on record\n", r->coordinator, r->n_deadlocks);
		for (size_t i = 0; i < r->n_deadlocks; i++) {
			const Coral__GesDeadlock *d = r->deadlocks[i];
			char when[64];
			coralctl_time(d->at_ms * 1000000ull, when, sizeof(when));
			printf("%s: %zu sessions in a cycle\n", when, d->n_cycle);
			for (size_t k = 0; k < d->n_cycle; k++) {
				const Coral__GesCycleStep *s = d->cycle[k];
				printf("  node %u session %llu waits on %s (master node %u, lock %llu)%s\n", s->node,
				       (unsigned long long)(s->session & 0xffffffffu), s->resource, s->master,
				       (unsigned long long)s->lkid, k == d->victim ? ": VICTIM, refused (CORAL_ERR_DEADLOCK)" : "");
			}
		}
	}
	coral_ctl_response_free(resp);
	return 0;
}

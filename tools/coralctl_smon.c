/* coralctl recovery status|history: what smond's recoveries did on this node (a cold start's
 * recovery of every thread, this node's part of a lost node's recovery, dead processes'
 * transactions taken back) and the one under way. */
#include "coralctl.h"
#include "errors.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static json_t *event_json(const Coral__RecoveryEvent *e)
{
	json_t *j = json_pack("{s:s, s:I, s:s, s:i, s:I, s:I, s:I, s:I, s:I}", "kind", e->kind, "at_ms",
			      (json_int_t)e->at_ms, "result", e->result, "threads", (int)e->threads, "records",
			      (json_int_t)e->records, "bytes", (json_int_t)e->bytes, "blocks", (json_int_t)e->blocks,
			      "applied", (json_int_t)e->applied, "skipped", (json_int_t)e->skipped);
	json_object_set_new(j, "transactions", json_integer((json_int_t)e->txns));
	json_object_set_new(j, "never_committed", json_integer((json_int_t)e->txns_open));
	json_object_set_new(j, "undone", json_integer((json_int_t)e->undone));
	json_object_set_new(j, "kept", json_integer((json_int_t)e->kept));
	json_object_set_new(j, "read_ms", json_integer((json_int_t)e->read_ms));
	json_object_set_new(j, "apply_ms", json_integer((json_int_t)e->apply_ms));
	json_object_set_new(j, "total_ms", json_integer((json_int_t)e->total_ms));
	json_object_set_new(j, "session", json_integer((json_int_t)e->session));
	json_object_set_new(j, "pid", json_integer((json_int_t)e->pid));
	if (e->lost_node) {
		json_object_set_new(j, "lost_node", json_integer((json_int_t)e->lost_node));
		json_object_set_new(j, "lost_incarnation", json_integer((json_int_t)e->lost_incarnation));
		json_object_set_new(j, "claimer", json_boolean(e->claimer));
		json_t *ph = json_pack("{s:I, s:I, s:I, s:I, s:I}", "fence", (json_int_t)e->fence_ms, "rebuild",
				       (json_int_t)e->rebuild_ms, "first_pass", (json_int_t)e->first_pass_ms, "release",
				       (json_int_t)e->release_ms, "apply", (json_int_t)e->done_ms);
		json_object_set_new(j, "phases_ms", ph);
	}
	if (e->phase && e->phase[0]) {
		json_object_set_new(j, "phase", json_string(e->phase));
		json_object_set_new(j, "blocks_done", json_integer((json_int_t)e->blocks_done));
		json_object_set_new(j, "eta_ms", json_integer((json_int_t)e->eta_ms));
	}
	return j;
}

static void event_line(const Coral__RecoveryEvent *e)
{
	time_t t = (time_t)(e->at_ms / 1000);
	struct tm tm;
	char when[32];
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (strcmp(e->kind, "not recovered") == 0)
		printf("%s %-16s %s\n", when, e->kind, e->result);
	else if (e->lost_node)
		printf("%s %-16s node %u (incarnation %llu)%s: fenced +%llu ms, rebuilt +%llu, first pass +%llu (%llu "
		       "records, %llu bytes), unaffected released +%llu, %llu blocks recovered here +%llu (%llu changes "
		       "applied, %llu already on disk, %llu taken back); %llu ms in all: %s\n",
		       when, e->kind, e->lost_node, (unsigned long long)e->lost_incarnation,
		       e->claimer ? ", its thread claimed here" : "", (unsigned long long)e->fence_ms,
		       (unsigned long long)e->rebuild_ms, (unsigned long long)e->first_pass_ms,
		       (unsigned long long)e->records, (unsigned long long)e->bytes, (unsigned long long)e->release_ms,
		       (unsigned long long)e->blocks, (unsigned long long)e->done_ms, (unsigned long long)e->applied,
		       (unsigned long long)e->skipped, (unsigned long long)e->undone, (unsigned long long)e->total_ms,
		       e->result);
	else if (e->session != 0 || e->pid != 0)
		printf("%s %-16s pid %d session %u: %llu changes taken back, %llu left, %llu blocks released, %llu ms: %s\n",
		       when, e->kind, (int)e->pid, e->session, (unsigned long long)e->undone, (unsigned long long)e->kept,
		       (unsigned long long)e->blocks, (unsigned long long)e->total_ms, e->result);
	else
		printf("%s %-16s %u threads, %llu records (%llu bytes) read in %llu ms; %llu blocks: %llu changes applied, "
		       "%llu already on disk; %llu of %llu transactions never committed, %llu changes taken back; %llu ms "
		       "in all: %s\n",
		       when, e->kind, e->threads, (unsigned long long)e->records, (unsigned long long)e->bytes,
		       (unsigned long long)e->read_ms, (unsigned long long)e->blocks, (unsigned long long)e->applied,
		       (unsigned long long)e->skipped, (unsigned long long)e->txns_open, (unsigned long long)e->txns,
		       (unsigned long long)e->undone, (unsigned long long)e->total_ms, e->result);
}

static int recovery(bool history)
{
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_SMOND, CORAL__CTL_REQUEST__BODY_RECOVERY, CORAL__CTL_RESPONSE__BODY_RECOVERY);
	if (resp == NULL)
		return 1;
	const Coral__RecoveryReply *r = resp->recovery;
	if (ctx.json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < r->n_events; i++)
			json_array_append_new(arr, event_json(r->events[i]));
		if (history) {
			print_json(arr);
		} else {
			json_t *j = json_pack("{s:I, s:b, s:I, s:o, s:o}", "node", (json_int_t)ctx.node->id, "cold_start_ran",
					      (int)r->cold_start_ran, "dead_pending", (json_int_t)r->dead_pending, "last",
					      r->n_events ? json_incref(json_array_get(arr, r->n_events - 1)) : json_null(),
					      "current", r->current ? event_json(r->current) : json_null());
			json_decref(arr);
			print_json(j);
		}
	} else if (history) {
		if (r->n_events == 0)
			printf("node %lld: no recovery since smond started\n", (long long)ctx.node->id);
		for (size_t i = 0; i < r->n_events; i++)
			event_line(r->events[i]);
	} else {
		printf("node %lld: %s; %u dead process%s' transaction%s waiting to be taken back\n", (long long)ctx.node->id,
		       r->cold_start_ran ? "smond recovered every redo thread when it started (a cold start)"
					 : "an instance was running when smond started (no cold start)",
		       r->dead_pending, r->dead_pending == 1 ? "" : "es", r->dead_pending == 1 ? "" : "s");
		if (r->n_events > 0) {
			printf("  last: ");
			event_line(r->events[r->n_events - 1]);
		}
		const Coral__RecoveryEvent *c = r->current;
		if (c)
			printf("  under way: node %u (incarnation %llu)%s, phase %s, %llu ms so far; blocks recovered here: "
			       "%llu of %llu%s",
			       c->lost_node, (unsigned long long)c->lost_incarnation, c->claimer ? ", claimed here" : "",
			       c->phase, (unsigned long long)c->total_ms, (unsigned long long)c->blocks_done,
			       (unsigned long long)c->blocks, c->records ? "" : "\n");
		if (c && c->records)
			printf("; %llu redo records read (%llu bytes); about %llu ms left\n", (unsigned long long)c->records,
			       (unsigned long long)c->bytes, (unsigned long long)c->eta_ms);
		if (c == NULL)
			printf("  no recovery of a lost node under way\n");
	}
	coral_ctl_response_free(resp);
	return 0;
}

int run_recovery_status(int argc, char **argv)
{
	(void)argc, (void)argv;
	return recovery(false);
}

int run_recovery_history(int argc, char **argv)
{
	(void)argc, (void)argv;
	return recovery(true);
}

/* coralctl standby status|seed|history|finish|failover|switchover|rejoin: redo shipping as
 * replicad sees it, and the changes of role. On a primary node, the thread it ships (sent,
 * acknowledged durable by the standby, lag in bytes and ms, the slot); on a standby node, the
 * copies of the primary's threads it keeps. --all asks every node of the configuration this
 * machine reaches. rejoin is done here, on the files, with the cluster stopped. */
#include "coralctl.h"
#include "copy.h"
#include "errors.h"
#include "sga.h"
#include "site.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static json_t *thread_json(const Coral__StandbyThread *t)
{
	json_t *j = json_pack("{s:i, s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "thread", (int)t->thread, "connected",
			      (int)t->connected, "peer", t->peer, "durable", (json_int_t)t->durable, "sent",
			      (json_int_t)t->sent, "acked", (json_int_t)t->acked, "received", (json_int_t)t->received,
			      "lag_bytes", (json_int_t)t->lag_bytes, "lag_ms", (json_int_t)t->lag_ms);
	json_object_set_new(j, "sent_bytes", json_integer((json_int_t)t->sent_bytes));
	json_object_set_new(j, "resent_bytes", json_integer((json_int_t)t->resent_bytes));
	json_object_set_new(j, "wire_bytes", json_integer((json_int_t)t->wire_bytes));
	json_object_set_new(j, "gaps", json_integer((json_int_t)t->gaps));
	json_object_set_new(j, "connects", json_integer((json_int_t)t->connects));
	json_object_set_new(j, "refusals", json_integer((json_int_t)t->refusals));
	json_object_set_new(j, "slot_bytes", json_integer((json_int_t)t->slot_bytes));
	json_object_set_new(j, "slot_dropped", json_boolean(t->slot_dropped));
	json_object_set_new(j, "slot_drops", json_integer((json_int_t)t->slot_drops));
	json_object_set_new(j, "last_error", json_string(t->last_error));
	json_object_set_new(j, "needs_seed", json_boolean(t->needs_seed));
	return j;
}

static json_t *apply_json(const Coral__StandbyApply *a)
{
	json_t *j = json_pack("{s:s, s:I, s:b, s:I, s:I, s:i, s:I, s:I}", "state", a->state, "applied_scn",
			      (json_int_t)a->applied_scn, "consistent", (int)a->consistent, "consistent_at",
			      (json_int_t)a->consistent_at, "horizon", (json_int_t)a->horizon, "waiting_for",
			      (int)a->waiting_for, "txns_applied", (json_int_t)a->txns_applied, "changes_applied",
			      (json_int_t)a->changes_applied);
	json_object_set_new(j, "blocks_written", json_integer((json_int_t)a->blocks_written));
	json_object_set_new(j, "open_txns", json_integer((json_int_t)a->open_txns));
	json_object_set_new(j, "pending_bytes", json_integer((json_int_t)a->pending_bytes));
	json_object_set_new(j, "abandoned", json_integer((json_int_t)a->abandoned));
	json_object_set_new(j, "batches", json_integer((json_int_t)a->batches));
	json_object_set_new(j, "lag_ms", json_integer((json_int_t)a->lag_ms));
	json_object_set_new(j, "last_batch_us", json_integer((json_int_t)a->last_batch_us));
	json_object_set_new(j, "seeded_from", json_string(a->seeded_from));
	json_object_set_new(j, "seeded_ms", json_integer((json_int_t)a->seeded_ms));
	json_object_set_new(j, "failed_over_epoch", json_integer((json_int_t)a->failed_over_epoch));
	return j;
}

static void thread_lines(const Coral__StandbyStatusReply *r)
{
	bool standby = strcmp(r->role, "standby") == 0;
	if (standby)
		printf("node %lld: standby of cluster %s; %zu thread cop%s; %llu connection%s refused\n",
		       (long long)ctx.node->id, r->cluster, r->n_threads, r->n_threads == 1 ? "y" : "ies",
		       (unsigned long long)r->bad_hellos, r->bad_hellos == 1 ? "" : "s");
	else if (r->n_threads == 0)
		printf("node %lld: primary; no standby named ([replication] standby)\n", (long long)ctx.node->id);
	else
		printf("node %lld: primary, shipping to the standby %s\n", (long long)ctx.node->id, r->cluster);
	for (size_t i = 0; i < r->n_threads; i++) {
		const Coral__StandbyThread *t = r->threads[i];
		if (standby)
			printf("  thread %u: %s%s; durable %llu, written %llu; %llu bytes behind the primary; %llu bytes "
			       "received (%llu on the wire), %llu gaps, %llu connections\n",
			       t->thread, t->connected ? "connected from " : "not connected", t->connected ? t->peer : "",
			       (unsigned long long)t->durable, (unsigned long long)t->received,
			       (unsigned long long)t->lag_bytes, (unsigned long long)t->sent_bytes,
			       (unsigned long long)t->wire_bytes, (unsigned long long)t->gaps,
			       (unsigned long long)t->connects);
		else
			printf("  thread %u: %s; durable %llu, sent %llu, standby durable %llu; lag %llu bytes, %llu ms; "
			       "slot %s%llu bytes; %llu bytes sent (%llu again, %llu on the wire), %llu connections, %llu "
			       "refusals\n",
			       t->thread, t->connected ? "connected" : "not connected", (unsigned long long)t->durable,
			       (unsigned long long)t->sent, (unsigned long long)t->acked, (unsigned long long)t->lag_bytes,
			       (unsigned long long)t->lag_ms, t->slot_dropped ? "dropped, " : "",
			       (unsigned long long)t->slot_bytes, (unsigned long long)t->sent_bytes,
			       (unsigned long long)t->resent_bytes, (unsigned long long)t->wire_bytes,
			       (unsigned long long)t->connects, (unsigned long long)t->refusals);
		if (t->needs_seed)
			printf("    the standby NEEDS SEEDING: it lacks redo this node has recycled\n");
		if (t->last_error[0])
			printf("    last error: %s\n", t->last_error);
	}
	const Coral__StandbyCommit *c = r->commit;
	if (c) {
		if (c->fenced_epoch)
			printf("  FENCED: this cluster was failed or switched over from (site epoch %llu): %s\n",
			       (unsigned long long)c->fenced_epoch, c->fenced_why);
		else if (c->closed_at)
			printf("  CLOSED for a switchover: no change or commit is taken (the thread's tail %llu)\n",
			       (unsigned long long)c->closed_at);
		printf("  site epoch %llu%s\n", (unsigned long long)c->site_epoch,
		       c->opened ? "" : "; starting: commits wait until a standby answers (open_wait_ms)");
		printf("  commits: %s%s%s; gate %s", c->mode, c->rpo[0] ? "; RPO " : "", c->rpo,
		       c->gate_on ? "on at LSN " : "off");
		if (c->gate_on)
			printf("%llu (durable %llu)", (unsigned long long)c->gate_lsn, (unsigned long long)c->durable);
		printf("; %u waiting now, %llu waited (%llu us in all), %llu gave up; %llu mode switches%s%s\n", c->waiting,
		       (unsigned long long)c->waits, (unsigned long long)c->wait_us, (unsigned long long)c->timeouts,
		       (unsigned long long)c->switches, c->last_switch[0] ? ", the last: " : "", c->last_switch);
	}
	const Coral__StandbyApply *a = r->apply;
	if (a) {
		printf("  apply: %s", a->state);
		if (a->seeded_from[0])
			printf(" (seeded from %s)", a->seeded_from);
		printf("\n    applied SCN %llu (%s), horizon %llu", (unsigned long long)a->applied_scn,
		       a->consistent ? "a state the primary was in"
				     : "not yet a state the primary was in",
		       (unsigned long long)a->horizon);
		if (!a->consistent && a->consistent_at)
			printf(" (consistent from SCN %llu)", (unsigned long long)a->consistent_at);
		if (a->waiting_for)
			printf(", thread %u lowest", a->waiting_for);
		printf("\n    %llu transactions applied (%llu changes, %llu block writes, %llu batches, the last %llu us); "
		       "%llu open (%llu bytes held), %llu never committed; lag %llu ms\n",
		       (unsigned long long)a->txns_applied, (unsigned long long)a->changes_applied,
		       (unsigned long long)a->blocks_written, (unsigned long long)a->batches,
		       (unsigned long long)a->last_batch_us, (unsigned long long)a->open_txns,
		       (unsigned long long)a->pending_bytes, (unsigned long long)a->abandoned, (unsigned long long)a->lag_ms);
	}
}

static int one(json_t *out)
{
	Coral__CtlResponse *resp =
		daemon_ask(CORAL_D_REPLICAD, CORAL__CTL_REQUEST__BODY_STANDBY_STATUS, CORAL__CTL_RESPONSE__BODY_STANDBY_STATUS);
	if (resp == NULL)
		return 1;
	const Coral__StandbyStatusReply *r = resp->standby_status;
	if (out) {
		json_t *arr = json_array();
		for (size_t i = 0; i < r->n_threads; i++)
			json_array_append_new(arr, thread_json(r->threads[i]));
		json_t *j = json_pack("{s:I, s:s, s:s, s:I, s:o}", "node", (json_int_t)ctx.node->id, "role", r->role,
				      "peer", r->cluster, "bad_hellos", (json_int_t)r->bad_hellos, "threads", arr);
		if (r->apply)
			json_object_set_new(j, "apply", apply_json(r->apply));
		if (r->commit) {
			const Coral__StandbyCommit *c = r->commit;
			json_t *cj = json_pack("{s:s, s:s, s:b, s:I, s:I, s:i, s:I, s:I, s:I, s:b, s:I, s:s}", "mode", c->mode,
					       "rpo", c->rpo, "gate_on", (int)c->gate_on, "gate_lsn", (json_int_t)c->gate_lsn,
					       "durable", (json_int_t)c->durable, "waiting", (int)c->waiting, "waits",
					       (json_int_t)c->waits, "wait_us", (json_int_t)c->wait_us, "timeouts",
					       (json_int_t)c->timeouts, "fallen_back", (int)c->fallen_back, "switches",
					       (json_int_t)c->switches, "last_switch", c->last_switch);
			json_object_set_new(cj, "site_epoch", json_integer((json_int_t)c->site_epoch));
			json_object_set_new(cj, "fenced_epoch", json_integer((json_int_t)c->fenced_epoch));
			json_object_set_new(cj, "fenced_why", json_string(c->fenced_why));
			json_object_set_new(cj, "opened", json_boolean(c->opened));
			json_object_set_new(cj, "closed_at", json_integer((json_int_t)c->closed_at));
			json_object_set_new(j, "commit", cj);
		}
		json_array_append_new(out, j);
	} else {
		thread_lines(r);
	}
	coral_ctl_response_free(resp);
	return 0;
}

int run_standby_status(int argc, char **argv)
{
	bool all = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0)
			all = true;
		else
			return coralctl_usage_error();
	}
	json_t *out = ctx.json ? json_array() : NULL;
	int rc = 0;
	if (!all) {
		rc = one(out);
	} else {
		for (int i = 0; i < ctx.conf.nnodes; i++) {
			ctx.node = &ctx.conf.nodes[i];
			if (one(out) != 0)
				rc = 1;
		}
	}
	if (out) {
		if (rc == 0 || json_array_size(out) > 0)
			print_json(all ? out : json_incref(json_array_get(out, 0)));
		if (!all)
			json_decref(out);
	}
	return rc;
}

/* An admin request that answers with a line of what it did. */
static int action(Coral__CtlRequest *req, int want)
{
	Coral__CtlResponse *resp = daemon_call(CORAL_D_REPLICAD, req, want);
	if (resp == NULL)
		return 1;
	const Coral__StandbyActionReply *a = want == CORAL__CTL_RESPONSE__BODY_STANDBY_SEED	 ? resp->standby_seed
					     : want == CORAL__CTL_RESPONSE__BODY_STANDBY_FINISH ? resp->standby_finish
					     : want == CORAL__CTL_RESPONSE__BODY_STANDBY_SWITCHOVER
						     ? resp->standby_switchover
						     : resp->standby_failover;
	if (ctx.json)
		print_json(json_pack("{s:s}", "result", a->result));
	else
		printf("%s\n", a->result);
	coral_ctl_response_free(resp);
	return 0;
}

int run_standby_seed(int argc, char **argv)
{
	(void)argc;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__StandbySeedRequest body = CORAL__STANDBY_SEED_REQUEST__INIT;
	body.source = argv[0];
	req.body_case = CORAL__CTL_REQUEST__BODY_STANDBY_SEED;
	req.standby_seed = &body;
	return action(&req, CORAL__CTL_RESPONSE__BODY_STANDBY_SEED);
}

int run_standby_history(int argc, char **argv)
{
	(void)argc, (void)argv;
	Coral__CtlResponse *resp = daemon_ask(CORAL_D_REPLICAD, CORAL__CTL_REQUEST__BODY_STANDBY_HISTORY,
					      CORAL__CTL_RESPONSE__BODY_STANDBY_HISTORY);
	if (resp == NULL)
		return 1;
	const Coral__StandbyHistoryReply *h = resp->standby_history;
	if (ctx.json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < h->n_events; i++)
			json_array_append_new(arr, json_pack("{s:I, s:s, s:s}", "at_ms", (json_int_t)h->events[i]->at_ms, "kind",
							     h->events[i]->kind, "text", h->events[i]->text));
		print_json(arr);
	} else {
		if (h->n_events == 0)
			printf("node %lld: no replication event since replicad started\n", (long long)ctx.node->id);
		for (size_t i = 0; i < h->n_events; i++) {
			char when[40];
			coralctl_time(h->events[i]->at_ms * 1000000ull, when, sizeof(when));
			printf("%s %-14s %s\n", when, h->events[i]->kind, h->events[i]->text);
		}
	}
	coral_ctl_response_free(resp);
	return 0;
}

int run_standby_finish(int argc, char **argv)
{
	(void)argc, (void)argv;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__StandbyFinishRequest body = CORAL__STANDBY_FINISH_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_STANDBY_FINISH;
	req.standby_finish = &body;
	return action(&req, CORAL__CTL_RESPONSE__BODY_STANDBY_FINISH);
}

int run_standby_failover(int argc, char **argv)
{
	(void)argc, (void)argv;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__StandbyFailoverRequest body = CORAL__STANDBY_FAILOVER_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_STANDBY_FAILOVER;
	req.standby_failover = &body;
	return action(&req, CORAL__CTL_RESPONSE__BODY_STANDBY_FAILOVER);
}

int run_standby_switchover(int argc, char **argv)
{
	uint32_t wait_ms = 30000;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--wait-ms") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || v < 100 || v > 3600000)
				return coralctl_usage_error();
			wait_ms = (uint32_t)v;
		} else {
			return coralctl_usage_error();
		}
	}
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__StandbySwitchoverRequest body = CORAL__STANDBY_SWITCHOVER_REQUEST__INIT;
	body.wait_ms = wait_ms;
	req.body_case = CORAL__CTL_REQUEST__BODY_STANDBY_SWITCHOVER;
	req.standby_switchover = &body;
	/* answered at its end: the closes, the copies catching up, the takeover */
	ctx.conf.cluster.ipc_timeout_ms = (int64_t)wait_ms + 20000;
	return action(&req, CORAL__CTL_RESPONSE__BODY_STANDBY_SWITCHOVER);
}

/* Moves SHARED/name into dir if it is there; 0, or -1 after saying why. */
static int retire(const char *shared, const char *dir, const char *name)
{
	char from[CORAL_STR_MAX + 300], to[2 * CORAL_STR_MAX + 300];
	snprintf(from, sizeof(from), "%s/%s", shared, name);
	snprintf(to, sizeof(to), "%s/%s", dir, name);
	if (rename(from, to) == 0 || errno == ENOENT)
		return 0;
	fprintf(stderr, "coralctl: moving %s to %s: %s\n", from, to, strerror(errno));
	return -1;
}

/* coralctl standby rejoin [PRIMARY_SHARED_DIR]: an old primary, fenced by a failover or a
 * switchover and stopped, becomes a standby of the cluster that took over
 * ([replication] primary_cluster): its data files, control file, redo threads and old copies
 * are moved aside (SHARED/retired-eEPOCH-TIME), its fence with them, and SHARED/role says
 * standby; with PRIMARY_SHARED_DIR its apply seeds itself from there once it starts. */
int run_standby_rejoin(int argc, char **argv)
{
	const struct coral_conf *c = &ctx.conf;
	const char *shared = c->storage.shared_dir;
	if (c->replication.primary_cluster[0] == '\0') {
		fprintf(stderr, "coralctl: [replication] primary_cluster must name the cluster this one rejoins as a standby "
				"(the one that took over)\n");
		return 1;
	}
	char why[512];
	uint64_t fenced = coral_site_fence_read(shared, why, sizeof(why));
	if (fenced == 0) {
		fprintf(stderr, "coralctl: %s holds no fence: only a cluster that was failed or switched over from is made a "
				"standby (its data would be set aside)\n", shared);
		return 1;
	}
	for (int i = 0; i < c->nnodes; i++)
		if (coral_sga_exists(c->nodes[i].sga_name)) {
			fprintf(stderr, "coralctl: node %lld is running (its shared memory %s is here): stop the cluster first "
					"(coral-node -c %s stop all), on every machine\n",
				(long long)c->nodes[i].id, c->nodes[i].sga_name, c->path);
			return 1;
		}
	/* Restartable: the role first, the fence last (the seed's source, in the copy's
	 * directory, after the old copies went). Killed half way, the
	 * cluster is still fenced (it takes no commit) and a second rejoin finishes the move,
	 * into the same directory. */
	char err[CORAL_ERRMSG_MAX];
	if (coral_role_write(shared, "standby", err, sizeof(err)) != 0) {
		fprintf(stderr, "coralctl: %s\n", err);
		return 1;
	}
	char dir[CORAL_STR_MAX + 300], prefix[64];
	snprintf(prefix, sizeof(prefix), "retired-e%llu-", (unsigned long long)fenced);
	dir[0] = '\0';
	DIR *d = opendir(shared);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
			snprintf(dir, sizeof(dir), "%s/%s", shared, e->d_name);  /* a rejoin cut short */
			break;
		}
	if (d)
		closedir(d);
	if (dir[0] == '\0') {
		char when[32];
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(when, sizeof(when), "%Y%m%dT%H%M%SZ", &tm);
		snprintf(dir, sizeof(dir), "%s/%s%s", shared, prefix, when);
		if (mkdir(dir, 0750) != 0) {
			fprintf(stderr, "coralctl: %s: %s\n", dir, strerror(errno));
			return 1;
		}
	}
	int moved = 0;
	d = opendir(shared);
	while (d && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		bool dbf = n > 4 && strcmp(e->d_name + n - 4, ".dbf") == 0;
		if (!dbf)
			continue;
		if (retire(shared, dir, e->d_name) != 0) {
			closedir(d);
			return 1;
		}
		moved++;
	}
	if (d)
		closedir(d);
	static const char *const names[] = {"control", "redo", "standby"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (retire(shared, dir, names[i]) != 0)
			return 1;
	char seed_note[CORAL_STR_MAX + 200] = "";
	if (argc == 1) {
		static struct coral_conf pc;
		coral_copy_conf(c, &pc);
		char line[CORAL_STR_MAX + 2];
		int n = snprintf(line, sizeof(line), "%s\n", argv[0]);
		if (coral_mkdir_p(pc.storage.shared_dir, 0750) != 0 ||
		    coral_write_file_atomic(pc.storage.shared_dir, "seed_from", line, (size_t)n, 0640, err, sizeof(err)) != 0) {
			fprintf(stderr, "coralctl: %s: %s\n", pc.storage.shared_dir, err[0] ? err : strerror(errno));
			return 1;
		}
		snprintf(seed_note, sizeof(seed_note), "; its apply seeds itself from %s once it starts", argv[0]);
	}
	if (retire(shared, dir, "fenced") != 0)
		return 1;
	if (ctx.json)
		print_json(json_pack("{s:s, s:s, s:i, s:I}", "role", "standby", "retired", dir, "data_files", moved, "fenced_epoch",
				     (json_int_t)fenced));
	else
		printf("cluster %s is a standby of %s now (%s/role): its %d data files, control file, redo threads and old "
		       "copies are in %s, with its fence (site epoch %llu)%s. Start it: coral-node -c %s start all%s\n",
		       c->cluster.name, c->replication.primary_cluster, shared, moved, dir, (unsigned long long)fenced,
		       seed_note, c->path,
		       argc == 1 ? "" : "; then seed it: coralctl standby seed PRIMARY_SHARED_DIR");
	return 0;
}

/* coralctl rsrc ...: the resource manager. The catalog (groups, rules, plans) is loaded and
 * a plan activated through any node's rsrcmgrd, which keeps them in raftd's store for every
 * node; the views (groups, rules, plans, sessions, stats) are of the node addressed. */
#include "coralctl.h"
#include "errors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int action(Coral__CtlRequest *req, int want)
{
	Coral__CtlResponse *resp = daemon_call(CORAL_D_RSRCMGRD, req, want);
	if (resp == NULL)
		return 1;
	const Coral__RsrcActionReply *a = want == CORAL__CTL_RESPONSE__BODY_RSRC_LOAD	   ? resp->rsrc_load
					  : want == CORAL__CTL_RESPONSE__BODY_RSRC_ACTIVATE ? resp->rsrc_activate
					  : want == CORAL__CTL_RESPONSE__BODY_RSRC_KILL	   ? resp->rsrc_kill
											    : resp->rsrc_switch;
	if (ctx.json)
		print_json(json_pack("{s:s, s:I}", "result", a->result, "index", (json_int_t)a->index));
	else
		printf("%s\n", a->result);
	coral_ctl_response_free(resp);
	return 0;
}

int run_rsrc_load(int argc, char **argv)
{
	const char *file = NULL;
	bool dry = false;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--dry-run") == 0)
			dry = true;
		else if (file == NULL)
			file = argv[i];
		else
			return coralctl_usage_error();
	}
	if (file == NULL)
		return coralctl_usage_error();
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (f == NULL) {
		fprintf(stderr, "coralctl: %s: %s\n", file, strerror(errno));
		return 1;
	}
	size_t cap = 256 * 1024 + 2, len = 0;
	char *text = malloc(cap);
	if (text == NULL)
		return 1;
	len = fread(text, 1, cap - 1, f);
	if (f != stdin)
		fclose(f);
	if (len >= cap - 1) {
		fprintf(stderr, "coralctl: %s: a catalog has at most 256 KiB\n", file);
		free(text);
		return 1;
	}
	text[len] = '\0';
	if (strlen(text) != len) {
		fprintf(stderr, "coralctl: %s: not text (a NUL byte at %zu)\n", file, strlen(text));
		free(text);
		return 1;
	}
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__RsrcLoadRequest body = CORAL__RSRC_LOAD_REQUEST__INIT;
	body.text = text;
	body.dry_run = dry;
	req.body_case = CORAL__CTL_REQUEST__BODY_RSRC_LOAD;
	req.rsrc_load = &body;
	int rc = action(&req, CORAL__CTL_RESPONSE__BODY_RSRC_LOAD);
	free(text);
	return rc;
}

int run_rsrc_activate(int argc, char **argv)
{
	if (argc < 1 || argc > 3)
		return coralctl_usage_error();
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__RsrcActivateRequest body = CORAL__RSRC_ACTIVATE_REQUEST__INIT;
	body.plan = strcmp(argv[0], "--none") == 0 ? "" : argv[0];
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--cause") == 0 && i + 1 < argc)
			body.cause = argv[++i];
		else
			return coralctl_usage_error();
	}
	req.body_case = CORAL__CTL_REQUEST__BODY_RSRC_ACTIVATE;
	req.rsrc_activate = &body;
	return action(&req, CORAL__CTL_RESPONSE__BODY_RSRC_ACTIVATE);
}

/* A session's number as given on the command line; false if it is not one. */
static bool session_arg(const char *a, uint32_t *id)
{
	char *end;
	unsigned long v = strtoul(a, &end, 10);
	*id = (uint32_t)v;
	return *end == '\0' && a[0] != '\0' && v <= UINT32_MAX;
}

int run_rsrc_kill(int argc, char **argv)
{
	(void)argc;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__RsrcKillRequest body = CORAL__RSRC_KILL_REQUEST__INIT;
	if (!session_arg(argv[0], &body.session))
		return coralctl_usage_error();
	req.body_case = CORAL__CTL_REQUEST__BODY_RSRC_KILL;
	req.rsrc_kill = &body;
	return action(&req, CORAL__CTL_RESPONSE__BODY_RSRC_KILL);
}

int run_rsrc_switch(int argc, char **argv)
{
	(void)argc;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__RsrcSwitchRequest body = CORAL__RSRC_SWITCH_REQUEST__INIT;
	if (!session_arg(argv[0], &body.session))
		return coralctl_usage_error();
	body.group = argv[1];
	req.body_case = CORAL__CTL_REQUEST__BODY_RSRC_SWITCH;
	req.rsrc_switch = &body;
	return action(&req, CORAL__CTL_RESPONSE__BODY_RSRC_SWITCH);
}

/* One of the node's views: rsrcmgrd's status shown by show (with arg); its exit status. */
static int view(int (*show)(const Coral__RsrcStatusReply *r, const void *arg), const void *arg)
{
	Coral__CtlResponse *resp =
		daemon_ask(CORAL_D_RSRCMGRD, CORAL__CTL_REQUEST__BODY_RSRC_STATUS, CORAL__CTL_RESPONSE__BODY_RSRC_STATUS);
	if (resp == NULL)
		return 1;
	int rc = show(resp->rsrc_status, arg);
	coral_ctl_response_free(resp);
	return rc;
}

static json_t *group_json(const Coral__RsrcGroup *g)
{
	json_t *j = json_pack("{s:s, s:b, s:s, s:s, s:f, s:i, s:i}", "name", g->name, "system", (int)g->system,
			      "governed_by", g->governed_by, "directive", g->directive, "cpu_share", g->share_ppm / 1e6,
			      "pool", (int)g->pool, "queue_timeout_ms", (int)g->queue_timeout_ms);
	json_object_set_new(j, "sessions", json_integer(g->sessions));
	json_object_set_new(j, "active", json_integer(g->active));
	json_object_set_new(j, "queued", json_integer(g->queued));
	json_object_set_new(j, "active_max", json_integer(g->active_max));
	json_object_set_new(j, "calls", json_integer((json_int_t)g->calls));
	json_object_set_new(j, "queued_total", json_integer((json_int_t)g->queued_total));
	json_object_set_new(j, "timeouts", json_integer((json_int_t)g->timeouts));
	json_object_set_new(j, "queue_wait_us", json_integer((json_int_t)g->queue_wait_us));
	json_object_set_new(j, "reaped", json_integer((json_int_t)g->reaped));
	json_object_set_new(j, "cgroup", json_string(g->cgroup));
	json_object_set_new(j, "throttled_ms", json_integer((json_int_t)g->throttled_ms));
	json_object_set_new(j, "exec_cancels", json_integer((json_int_t)g->exec_cancels));
	json_object_set_new(j, "exec_switches", json_integer((json_int_t)g->exec_switches));
	json_object_set_new(j, "exec_kills", json_integer((json_int_t)g->exec_kills));
	json_object_set_new(j, "idle_kills", json_integer((json_int_t)g->idle_kills));
	json_object_set_new(j, "idle_blocker_kills", json_integer((json_int_t)g->idle_blocker_kills));
	json_object_set_new(j, "io_reqs", json_integer((json_int_t)g->io_reqs));
	json_object_set_new(j, "io_bytes", json_integer((json_int_t)g->io_bytes));
	json_object_set_new(j, "io_waits", json_integer((json_int_t)g->io_waits));
	json_object_set_new(j, "io_wait_us", json_integer((json_int_t)g->io_wait_us));
	json_object_set_new(j, "max_dop", json_integer(g->max_dop));
	json_object_set_new(j, "cluster_pool", json_integer(g->cluster_pool));
	json_object_set_new(j, "px_requests", json_integer((json_int_t)g->px_requests));
	json_object_set_new(j, "px_downgraded", json_integer((json_int_t)g->px_downgraded));
	json_object_set_new(j, "px_queued", json_integer((json_int_t)g->px_queued));
	json_object_set_new(j, "px_timeouts", json_integer((json_int_t)g->px_timeouts));
	return j;
}

static json_t *strings_json(char **v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static json_t *plan_json(const Coral__RsrcPlan *p)
{
	return json_pack("{s:s, s:o}", "name", p->name, "directives", strings_json(p->directives, p->n_directives));
}

static void plan_head(const Coral__RsrcStatusReply *r)
{
	char when[40] = "";
	if (r->plan_since_ms)
		coralctl_time(r->plan_since_ms * 1000000ull, when, sizeof(when));
	if (r->plan[0])
		printf("node %lld: plan %s in force since %s (%s)\n", (long long)ctx.node->id, r->plan, when, r->cause);
	else
		printf("node %lld: no plan in force (no group is limited)%s%s\n", (long long)ctx.node->id,
		       r->cause[0] ? ": " : "", r->cause);
	if (!r->store_read)
		printf("  raftd's store not read yet: what is shown may not be the cluster's\n");
	if (r->catalog_error[0])
		printf("  refused from the store: %s\n", r->catalog_error);
	printf("  CPU: %s\n", r->cpu);
}

static int show_groups(const Coral__RsrcStatusReply *r, const void *arg)
{
	(void)arg;
	if (ctx.json) {
		json_t *a = json_array();
		for (size_t i = 0; i < r->n_groups; i++)
			json_array_append_new(a, group_json(r->groups[i]));
		print_json(json_pack("{s:s, s:o}", "plan", r->plan, "groups", a));
	} else {
		plan_head(r);
		printf("%-16s %6s %5s %8s %6s %6s %9s %9s %8s %10s %10s  %s\n", "GROUP", "CPU%", "POOL", "SESSIONS",
		       "ACTIVE", "QUEUED", "CALLS", "QUEUED_N", "TIMEOUTS", "WAIT_MS", "THROTTLED", "DIRECTIVE");
		for (size_t i = 0; i < r->n_groups; i++) {
			const Coral__RsrcGroup *g = r->groups[i];
			char pool[16];
			if (g->cluster_pool)
				snprintf(pool, sizeof(pool), "%uc", g->cluster_pool);
			else
				snprintf(pool, sizeof(pool), "%u", g->pool);
			char dir[220];
			if (g->directive[0])
				snprintf(dir, sizeof(dir), "%s", g->directive);
			else if (r->plan[0])
				snprintf(dir, sizeof(dir), "(none: as %s)", g->governed_by);
			else
				dir[0] = '\0';
			printf("%-16s %6.1f %5s %8u %6u %6u %9llu %9llu %8llu %10.1f %10llu  %s\n", g->name,
			       g->share_ppm / 1e4, g->pool || g->cluster_pool ? pool : "-", g->sessions, g->active, g->queued,
			       (unsigned long long)g->calls, (unsigned long long)g->queued_total,
			       (unsigned long long)g->timeouts, g->queue_wait_us / 1e3, (unsigned long long)g->throttled_ms,
			       dir);
		}
	}
	return 0;
}

int run_rsrc_groups(int argc, char **argv)
{
	(void)argc, (void)argv;
	return view(show_groups, NULL);
}

static int show_rules(const Coral__RsrcStatusReply *r, const void *arg)
{
	(void)arg;
	if (ctx.json) {
		print_json(strings_json(r->rules, r->n_rules));
	} else {
		if (r->n_rules == 0)
			printf("no mapping rule: every session is in OTHER\n");
		for (size_t i = 0; i < r->n_rules; i++)
			printf("%3zu  %s\n", i + 1, r->rules[i]);
	}
	return 0;
}

int run_rsrc_rules(int argc, char **argv)
{
	(void)argc, (void)argv;
	return view(show_rules, NULL);
}

static int show_plans(const Coral__RsrcStatusReply *r, const void *arg)
{
	const char *only = arg;
	int rc = 0;
	bool found = false;
	json_t *a = json_array();
	for (size_t i = 0; i < r->n_plans; i++) {
		const Coral__RsrcPlan *p = r->plans[i];
		if (only && strcmp(only, p->name) != 0)
			continue;
		found = true;
		if (ctx.json) {
			json_t *j = plan_json(p);
			json_object_set_new(j, "in_force", json_boolean(strcmp(p->name, r->plan) == 0));
			json_array_append_new(a, j);
			continue;
		}
		printf("plan %s%s\n", p->name, strcmp(p->name, r->plan) == 0 ? "  (in force)" : "");
		for (size_t k = 0; k < p->n_directives; k++)
			printf("  %s\n", p->directives[k]);
	}
	if (only && !found) {
		if (ctx.json)
			print_json(json_pack("{s:s}", "error", "no such plan"));
		else
			fprintf(stderr, "coralctl: no plan %s in the catalog in force (coralctl rsrc plans)\n", only);
		rc = 1;
	} else if (ctx.json) {
		print_json(only ? json_incref(json_array_get(a, 0)) : json_incref(a));
	} else if (!only && r->n_plans == 0) {
		printf("no catalog loaded (coralctl rsrc load FILE)\n");
	}
	json_decref(a);
	return rc;
}

static int plans(const char *only)
{
	return view(show_plans, only);
}

int run_rsrc_plans(int argc, char **argv)
{
	(void)argc, (void)argv;
	return plans(NULL);
}

static int simulate(int argc, char **argv)
{
	if (argc < 1)
		return coralctl_usage_error();
	Coral__RsrcSimulateRequest body = CORAL__RSRC_SIMULATE_REQUEST__INIT;
	body.plan = argv[0];
	for (int i = 1; i < argc; i++) {
		char *end;
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end != '\0' || v < 1 || v > 3600)
				return coralctl_usage_error();
			body.seconds = (uint32_t)v;
		} else {
			return coralctl_usage_error();
		}
	}
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.body_case = CORAL__CTL_REQUEST__BODY_RSRC_SIMULATE;
	req.rsrc_simulate = &body;
	Coral__CtlResponse *resp = daemon_call(CORAL_D_RSRCMGRD, &req, CORAL__CTL_RESPONSE__BODY_RSRC_SIMULATE);
	if (resp == NULL)
		return 1;
	const Coral__RsrcSimulateReply *r = resp->rsrc_simulate;
	if (ctx.json) {
		json_t *a = json_array();
		for (size_t i = 0; i < r->n_groups; i++) {
			const Coral__RsrcSimGroup *g = r->groups[i];
			json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:s}", "group", g->group, "governed_by",
					      g->governed_by, "pool", (int)g->pool, "io_iops", (int)g->io_iops, "io_mbps",
					      (int)g->io_mbps, "exec_ms", (int)g->exec_ms, "action", g->action);
			json_object_set_new(j, "seconds", json_integer(g->seconds));
			json_object_set_new(j, "demand_max", json_integer(g->demand_max));
			json_object_set_new(j, "demand_avg", json_real(g->demand_avg));
			json_object_set_new(j, "calls", json_integer((json_int_t)g->calls));
			json_object_set_new(j, "queued_seconds", json_integer(g->queued_seconds));
			json_object_set_new(j, "queued_call_seconds", json_integer((json_int_t)g->queued_call_seconds));
			json_object_set_new(j, "io_seconds", json_integer(g->io_seconds));
			json_object_set_new(j, "io_excess_reqs", json_integer((json_int_t)g->io_excess_reqs));
			json_object_set_new(j, "io_excess_bytes", json_integer((json_int_t)g->io_excess_bytes));
			json_object_set_new(j, "calls_past_exec", json_integer((json_int_t)g->calls_past_exec));
			json_object_set_new(j, "cpu_ms", json_integer((json_int_t)g->cpu_ms));
			json_object_set_new(j, "cpu_would_ms", json_integer((json_int_t)g->cpu_would_ms));
			json_object_set_new(j, "cpu_held_ms", json_integer((json_int_t)g->cpu_held_ms));
			json_object_set_new(j, "cpu_held_seconds", json_integer(g->cpu_held_seconds));
			json_object_set_new(j, "cap", json_integer(g->cap));
			json_object_set_new(j, "share", json_real(g->share));
			json_array_append_new(a, j);
		}
		print_json(json_pack("{s:s, s:s, s:i, s:i, s:o, s:o}", "plan", r->plan, "plan_now", r->plan_now, "seconds",
				     (int)r->seconds, "ncpu", (int)r->ncpu, "groups", a, "shares",
				     strings_json(r->shares, r->n_shares)));
	} else {
		printf("node %lld: plan %s against the last %u s of recorded demand (in force: %s)\n",
		       (long long)ctx.node->id, r->plan, r->seconds, r->plan_now[0] ? r->plan_now : "none");
		printf("%-14s %-12s %6s %7s %9s %5s %9s %11s %7s %10s %8s\n", "GROUP", "UNDER", "DEMAND", "AVG", "CALLS",
		       "POOL", "QUEUED_S", "QUEUED_CxS", "IO_S", "IO_EXCESS", "PAST_EXEC");
		for (size_t i = 0; i < r->n_groups; i++) {
			const Coral__RsrcSimGroup *g = r->groups[i];
			char pool[16] = "-", past[32] = "-";
			if (g->pool)
				snprintf(pool, sizeof(pool), "%u", g->pool);
			if (g->exec_ms && g->action[0])
				snprintf(past, sizeof(past), "%llu (%s)", (unsigned long long)g->calls_past_exec, g->action);
			printf("%-14s %-12s %6u %7.2f %9llu %5s %9u %11llu %7u %10llu %8s\n", g->group, g->governed_by,
			       g->demand_max, g->demand_avg, (unsigned long long)g->calls, pool, g->queued_seconds,
			       (unsigned long long)g->queued_call_seconds, g->io_seconds,
			       (unsigned long long)g->io_excess_reqs, past);
		}
		if (r->n_groups == 0)
			printf("  no demand recorded yet (rsrcmgrd records the last 5 minutes)\n");
		/* CPU: what each group's sessions used, against what the plan would have given them */
		printf("CPU on %u CPUs (what each group used, taken as what it wanted; what %s would have given it, "
		       "held back, and in how many seconds):\n", r->ncpu, r->plan);
		printf("  %-14s %7s %5s %10s %10s %10s %7s\n", "GROUP", "SHARE%", "CAP%", "USED_S", "WOULD_S", "HELD_S",
		       "HELD_N");
		for (size_t i = 0; i < r->n_groups; i++) {
			const Coral__RsrcSimGroup *g = r->groups[i];
			char cap[16] = "-";
			if (g->cap)
				snprintf(cap, sizeof(cap), "%u", g->cap);
			printf("  %-14s %7.1f %5s %10.2f %10.2f %10.2f %7u\n", g->group, g->share * 100, cap, g->cpu_ms / 1e3,
			       g->cpu_would_ms / 1e3, g->cpu_held_ms / 1e3, g->cpu_held_seconds);
		}
		printf("CPU shares under saturation, now -> under %s:", r->plan);
		for (size_t i = 0; i < r->n_shares; i++)
			printf("%s %s", i ? "," : "", r->shares[i]);
		printf("\n");
	}
	coral_ctl_response_free(resp);
	return 0;
}

int run_rsrc_plan(int argc, char **argv)
{
	if (strcmp(argv[0], "simulate") == 0)
		return simulate(argc - 1, argv + 1);
	if (argc != 1)
		return coralctl_usage_error();
	return plans(argv[0]);
}

static int show_sessions(const Coral__RsrcStatusReply *r, const void *arg)
{
	(void)arg;
	if (ctx.json) {
		json_t *a = json_array();
		for (size_t i = 0; i < r->n_sessions; i++) {
			const Coral__RsrcSession *s = r->sessions[i];
			json_t *j = json_pack("{s:I, s:i, s:s, s:s, s:s, s:I, s:I}", "id", (json_int_t)s->id, "pid", (int)s->pid,
					      "group", s->group, "rule", s->rule, "state", s->state, "since_ms",
					      (json_int_t)s->since_ms, "calls", (json_int_t)s->calls);
			json_object_set_new(j, "attrs", strings_json(s->attrs, s->n_attrs));
			json_object_set_new(j, "cgroup", json_string(s->cgroup));
			json_object_set_new(j, "queue_position", json_integer(s->queue_position));
			json_object_set_new(j, "io_wait_us", json_integer((json_int_t)s->io_wait_us));
			json_object_set_new(j, "px_held", json_integer(s->px_held));
			json_array_append_new(a, j);
		}
		print_json(a);
	} else {
		printf("%-12s %8s %-16s %-10s %9s %9s  %s\n", "SESSION", "PID", "GROUP", "STATE", "SINCE_MS", "CALLS",
		       "ATTRIBUTES / RULE");
		for (size_t i = 0; i < r->n_sessions; i++) {
			const Coral__RsrcSession *s = r->sessions[i];
			printf("%-12u %8d %-16s %-10s %9llu %9llu  ", s->id, (int)s->pid, s->group, s->state,
			       (unsigned long long)s->since_ms, (unsigned long long)s->calls);
			for (size_t k = 0; k < s->n_attrs; k++)
				printf("%s%s", k ? " " : "", s->attrs[k]);
			printf(" / %s\n", s->rule);
		}
	}
	return 0;
}

int run_rsrc_sessions(int argc, char **argv)
{
	(void)argc, (void)argv;
	return view(show_sessions, NULL);
}

static int show_stats(const Coral__RsrcStatusReply *r, const void *arg)
{
	(void)arg;
	if (ctx.json) {
		json_t *g = json_array(), *sw = json_array();
		for (size_t i = 0; i < r->n_groups; i++)
			json_array_append_new(g, group_json(r->groups[i]));
		for (size_t i = 0; i < r->n_switches; i++)
			json_array_append_new(sw, json_pack("{s:I, s:s, s:s, s:s}", "at_ms", (json_int_t)r->switches[i]->at_ms,
							    "plan", r->switches[i]->plan, "previous",
							    r->switches[i]->previous, "cause", r->switches[i]->cause));
		json_t *j = json_pack("{s:I, s:s, s:s, s:I, s:I, s:b, s:I, s:o, s:o}", "node", (json_int_t)ctx.node->id,
				      "plan", r->plan, "cause", r->cause, "plan_since_ms", (json_int_t)r->plan_since_ms,
				      "catalog_index", (json_int_t)r->catalog_index, "store_read", (int)r->store_read,
				      "sessions", (json_int_t)r->n_sessions, "groups", g, "switches", sw);
		json_object_set_new(j, "swept", json_integer((json_int_t)r->swept));
		json_object_set_new(j, "catalog_error", json_string(r->catalog_error));
		json_object_set_new(j, "cpu", json_string(r->cpu));
		json_object_set_new(j, "cgroup_refused", json_integer((json_int_t)r->cgroup_refused));
		json_object_set_new(j, "cgroup_moves", json_integer((json_int_t)r->cgroup_moves));
		json_object_set_new(j, "cgroup_error", json_string(r->cgroup_error));
		json_object_set_new(j, "px_servers", json_integer(r->px_servers));
		json_object_set_new(j, "px_used", json_integer(r->px_used));
		json_object_set_new(j, "px_queued", json_integer(r->px_queued));
		print_json(j);
	} else {
		plan_head(r);
		uint64_t calls = 0, queued = 0, timeouts = 0, wait_us = 0;
		uint32_t active = 0, waiting = 0;
		for (size_t i = 0; i < r->n_groups; i++) {
			calls += r->groups[i]->calls;
			queued += r->groups[i]->queued_total;
			timeouts += r->groups[i]->timeouts;
			wait_us += r->groups[i]->queue_wait_us;
			active += r->groups[i]->active;
			waiting += r->groups[i]->queued;
		}
		printf("  catalog: raftd index %llu, %zu rules, %zu plans; %zu sessions, %u in a call, %u queued\n",
		       (unsigned long long)r->catalog_index, r->n_rules, r->n_plans, r->n_sessions, active, waiting);
		printf("  calls %llu, queued %llu (%.1f ms waited in all), queue timeouts %llu; dead processes' places "
		       "given back %llu\n",
		       (unsigned long long)calls, (unsigned long long)queued, wait_us / 1e3, (unsigned long long)timeouts,
		       (unsigned long long)r->swept);
		printf("  parallel servers: %u of %u held, %u statements queued for them\n", r->px_used, r->px_servers,
		       r->px_queued);
		printf("  cgroups: %llu sessions placed, %llu writes refused%s%s\n", (unsigned long long)r->cgroup_moves,
		       (unsigned long long)r->cgroup_refused, r->cgroup_error[0] ? "; last: " : "", r->cgroup_error);
		printf("  plan switches seen by this rsrcmgrd (oldest first):\n");
		for (size_t i = 0; i < r->n_switches; i++) {
			char when[40];
			coralctl_time(r->switches[i]->at_ms * 1000000ull, when, sizeof(when));
			printf("    %s %s -> %s: %s\n", when, r->switches[i]->previous[0] ? r->switches[i]->previous : "(none)",
			       r->switches[i]->plan[0] ? r->switches[i]->plan : "(none)", r->switches[i]->cause);
		}
	}
	return 0;
}

int run_rsrc_stats(int argc, char **argv)
{
	(void)argc, (void)argv;
	return view(show_stats, NULL);
}

static int show_schedule(const Coral__RsrcStatusReply *r, const void *arg)
{
	(void)arg;
	if (ctx.json) {
		print_json(json_pack("{s:o, s:i, s:s}", "schedules", strings_json(r->schedules, r->n_schedules), "open",
				     (int)r->schedule_open, "plan", r->plan));
	} else {
		plan_head(r);
		if (r->n_schedules == 0)
			printf("  no schedule: the plan activated is in force at every hour\n");
		for (size_t i = 0; i < r->n_schedules; i++)
			printf("  %2zu %s%s\n", i + 1, r->schedules[i], r->schedule_open == i + 1 ? "  (its window is open)" : "");
	}
	return 0;
}

int run_rsrc_schedule(int argc, char **argv)
{
	(void)argc, (void)argv;
	return view(show_schedule, NULL);
}

/* coralctl rsrc session ID: why a session is where it is and waits for what. */
static int show_session(const Coral__RsrcStatusReply *r, const void *arg)
{
	uint32_t id = *(const uint32_t *)arg;
	const Coral__RsrcSession *s = NULL;
	for (size_t i = 0; i < r->n_sessions && s == NULL; i++)
		if (r->sessions[i]->id == id)
			s = r->sessions[i];
	if (s == NULL) {
		if (ctx.json)
			print_json(json_pack("{s:s}", "error", "no such session"));
		else
			fprintf(stderr, "coralctl: no session %u on node %lld (coralctl rsrc sessions lists them)\n", id,
				(long long)ctx.node->id);
		return 1;
	}
	const Coral__RsrcGroup *g = NULL, *gov = NULL;
	for (size_t i = 0; i < r->n_groups; i++)
		if (strcmp(r->groups[i]->name, s->group) == 0)
			g = r->groups[i];
	for (size_t i = 0; g && i < r->n_groups; i++)
		if (strcmp(r->groups[i]->name, g->governed_by) == 0)
			gov = r->groups[i];
	if (gov == NULL)
		gov = g;
	if (ctx.json) {
		json_t *j = json_pack("{s:I, s:i, s:s, s:s, s:s, s:I, s:I, s:s, s:i}", "id", (json_int_t)s->id, "pid",
				      (int)s->pid, "group", s->group, "rule", s->rule, "state", s->state, "since_ms",
				      (json_int_t)s->since_ms, "calls", (json_int_t)s->calls, "cgroup", s->cgroup,
				      "queue_position", (int)s->queue_position);
		json_object_set_new(j, "attrs", strings_json(s->attrs, s->n_attrs));
		json_object_set_new(j, "plan", json_string(r->plan));
		json_object_set_new(j, "governing_group", gov ? group_json(gov) : json_null());
		json_object_set_new(j, "io_wait_us", json_integer((json_int_t)s->io_wait_us));
		print_json(j);
		return 0;
	}
	printf("session %u (pid %d) on node %lld: group %s, by %s\n", s->id, (int)s->pid, (long long)ctx.node->id,
	       s->group, s->rule);
	printf("  attributes:");
	for (size_t k = 0; k < s->n_attrs; k++)
		printf(" %s", s->attrs[k]);
	printf("\n  now: %s for %llu ms; %llu calls so far\n", s->state, (unsigned long long)s->since_ms,
	       (unsigned long long)s->calls);
	if (s->queue_position && gov)
		printf("  waiting: place %u in %s's queue (%u queued): its pool of %u has %u calls under way; a call "
		       "waits at most %u ms%s\n",
		       s->queue_position, s->queue_group, gov->queued, gov->pool, gov->active, gov->queue_timeout_ms,
		       gov->queue_timeout_ms ? "" : " (no queue timeout: as long as it takes)");
	if (!r->plan[0])
		printf("  limits: none (no plan in force)\n");
	else if (gov)
		printf("  limits: plan %s, %s%s%s: %s\n", r->plan, gov->name, strcmp(gov->name, s->group) ? " (its group "
		       "has no directive: OTHER's governs it)" : "", "", gov->directive[0] ? gov->directive : "(none)");
	if (gov)
		printf("  CPU: %s; its group's share %.1f%%%s, held back %llu ms by its cap (%s)\n",
		       s->cgroup[0] ? "in its group's cgroup" : "not in a cgroup", gov->share_ppm / 1e4,
		       s->cgroup[0] ? "" : " (not enforced for it)", (unsigned long long)gov->throttled_ms, r->cpu);
	if (gov)
		printf("  its group's limits hit: %llu calls queued (%.1f ms waited in all), %llu queue timeouts, "
		       "%llu calls cancelled, %llu switched, %llu sessions ended for a long call, %llu for idling, %llu for "
		       "idling in another's way\n",
		       (unsigned long long)gov->queued_total, gov->queue_wait_us / 1e3, (unsigned long long)gov->timeouts,
		       (unsigned long long)gov->exec_cancels, (unsigned long long)gov->exec_switches,
		       (unsigned long long)gov->exec_kills, (unsigned long long)gov->idle_kills,
		       (unsigned long long)gov->idle_blocker_kills);
	printf("  I/O: it waited %.1f ms for its group's tokens", s->io_wait_us / 1e3);
	if (gov)
		printf(" (its group: %llu block reads, %.1f MiB charged, %llu waits, %.1f ms)",
		       (unsigned long long)gov->io_reqs, gov->io_bytes / 1048576.0, (unsigned long long)gov->io_waits,
		       gov->io_wait_us / 1e3);
	printf("\n");
	return 0;
}

int run_rsrc_session(int argc, char **argv)
{
	(void)argc;
	uint32_t id;
	if (!session_arg(argv[0], &id))
		return coralctl_usage_error();
	return view(show_session, &id);
}

/* Node status collection and display (see status.h). */
#include "status.h"
#include "cluster.h"
#include "ctl.h"
#include "errors.h"
#include "sga.h"
#include "util.h"

#include <string.h>

void coral_format_duration(uint64_t ns, char *buf, size_t bufsz)
{
	uint64_t ms = ns / 1000000ull, s = ms / 1000;
	if (s < 60)
		snprintf(buf, bufsz, "%llu.%llus", (unsigned long long)s,
			 (unsigned long long)(ms % 1000) / 100);
	else if (s < 3600)
		snprintf(buf, bufsz, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, bufsz, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
	else
		snprintf(buf, bufsz, "%llud%02lluh", (unsigned long long)(s / 86400),
			 (unsigned long long)(s / 3600 % 24));
}

static void coral__ask(const struct coral_conf *conf, const struct coral_node_conf *node, int i,
		       struct coral_node_status *st)
{
	char sock[CORAL_STR_MAX + 32];
	coral_conf_sock_path(node, coral_daemon_names[i], sock, sizeof(sock));
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.sender = "coralctl";
	Coral__StatusRequest sr = CORAL__STATUS_REQUEST__INIT;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	req.hdr = &hdr;
	req.body_case = CORAL__CTL_REQUEST__BODY_STATUS;
	req.status = &sr;
	Coral__CtlResponse *resp = NULL;
	/* a short timeout: a hung daemon must not hang the status of the whole node */
	int timeout = (int)(conf->cluster.ipc_timeout_ms < 1000 ? conf->cluster.ipc_timeout_ms : 1000);
	int rc = coral_ctl_call(sock, &req, (size_t)conf->cluster.max_frame, timeout, &resp,
				st->d[i].error, sizeof(st->d[i].error));
	if (rc == 0 && resp->code == 0 && resp->body_case == CORAL__CTL_RESPONSE__BODY_STATUS) {
		st->d[i].answered = true;
		coral_strlcpy(st->d[i].service, resp->status->service, sizeof(st->d[i].service));
		st->d[i].service_ready = resp->status->service_ready;
		st->d[i].requests = resp->status->requests;
		st->d[i].refused = resp->status->refused;
		st->d[i].clients = resp->status->clients;
	} else if (rc == 0) {
		snprintf(st->d[i].error, sizeof(st->d[i].error), "%s",
			 resp->error && *resp->error ? resp->error : "unexpected answer");
	}
	coral_ctl_response_free(resp);
}

int coral_status_collect(const struct coral_conf *conf, const struct coral_node_conf *node,
			 bool ask, struct coral_node_status *st, char *err, size_t errsz)
{
	memset(st, 0, sizeof(*st));
	st->node = node;
	coral_strlcpy(st->sga_name, node->sga_name, sizeof(st->sga_name));
	struct coral_sga sga;
	int rc = coral_sga_attach(&sga, conf, node, true);
	if (rc != 0) {
		snprintf(err, errsz, "%s", sga.errmsg);
		return rc;
	}
	struct coral_proc_table *t = coral_proc_table(&sga);
	if (t == NULL) {
		coral_sga_detach(&sga);
		snprintf(err, errsz, "SGA %s has no proc table", node->sga_name);
		return CORAL_EINVAL;
	}
	coral_proc_snapshot(t, &st->snap);
	/* a node fenced (not joined yet, no quorum, or leaving after a daemon could not resume) */
	struct coral_cluster_sga *cl = coral_cluster_sga(&sga);
	st->fenced = coral_cluster_fenced(cl);
	if (st->fenced)
		coral_cluster_fence_reason(cl, st->fence_reason, sizeof(st->fence_reason));
	coral_sga_detach(&sga);
	st->now_mono_ns = coral_now_mono_ns();
	st->supervisor_alive = coral_pid_alive(st->snap.supervisor_pid);
	if (ask)
		for (int i = 0; i < CORAL_NDAEMONS; i++)
			if (st->snap.slot[i].pid > 0)
				coral__ask(conf, node, i, st);
	return 0;
}

static const char *coral__node_state(const struct coral_node_status *st)
{
	if (!st->supervisor_alive)
		return "supervisor-dead";
	return coral_node_state_name((int)st->snap.node_state);
}

int coral_status_health(const struct coral_node_status *st)
{
	if (!st->supervisor_alive || st->snap.node_state != CORAL_NODE_RUNNING)
		return 1;
	for (int i = 0; i < CORAL_NDAEMONS; i++)
		if (st->snap.slot[i].state != CORAL_PROC_READY)
			return 1;
	return 0;
}

void coral_status_print(FILE *out, const struct coral_node_status *st)
{
	fprintf(out, "node %lld [node.%s] %s  supervisor pid %d  SGA %s\n", (long long)st->node->id,
		st->node->label, coral__node_state(st), (int)st->snap.supervisor_pid, st->sga_name);
	if (st->snap.node_state == CORAL_NODE_DEGRADED && st->snap.reason[0])
		fprintf(out, "  degraded: %s\n", st->snap.reason);
	if (st->fenced)
		fprintf(out, "  fenced: %s\n", st->fence_reason);
	fprintf(out, "  %-9s %7s %-10s %8s %8s %9s  %s\n", "DAEMON", "PID", "STATE", "UPTIME",
		"RESTARTS", "HEARTBEAT", "SERVICE");
	for (int i = 0; i < CORAL_NDAEMONS; i++) {
		const struct coral_proc_slot_snap *s = &st->snap.slot[i];
		char up[32] = "-", hb[32] = "-", pid[16] = "-";
		if (s->pid > 0) {
			snprintf(pid, sizeof(pid), "%d", (int)s->pid);
			coral_format_duration(st->now_mono_ns - s->start_mono_ns, up, sizeof(up));
			if (st->now_mono_ns > s->heartbeat_mono_ns)
				coral_format_duration(st->now_mono_ns - s->heartbeat_mono_ns, hb, sizeof(hb));
			else
				coral_strlcpy(hb, "0.0s", sizeof(hb));
		}
		const char *svc = st->d[i].answered ? st->d[i].service
				: st->d[i].error[0]    ? st->d[i].error
				: s->note;
		fprintf(out, "  %-9s %7s %-10s %8s %8u %9s  %s\n", coral_daemon_names[i], pid,
			coral_proc_state_name((int)s->state), up, s->restarts, hb, svc);
	}
}

json_t *coral_status_json(const struct coral_node_status *st)
{
	json_t *daemons = json_array();
	for (int i = 0; i < CORAL_NDAEMONS; i++) {
		const struct coral_proc_slot_snap *s = &st->snap.slot[i];
		json_t *o = json_pack("{s:s, s:i, s:s, s:I, s:s}", "daemon", coral_daemon_names[i],
				      "pid", (int)s->pid, "state", coral_proc_state_name((int)s->state),
				      "restarts", (json_int_t)s->restarts, "note", s->note);
		if (s->pid > 0) {
			json_object_set_new(o, "uptime_ms",
					    json_integer((json_int_t)((st->now_mono_ns - s->start_mono_ns) / 1000000)));
			uint64_t age = st->now_mono_ns > s->heartbeat_mono_ns
					       ? st->now_mono_ns - s->heartbeat_mono_ns : 0;
			json_object_set_new(o, "heartbeat_age_ms", json_integer((json_int_t)(age / 1000000)));
		}
		if (st->d[i].answered) {
			json_object_set_new(o, "service", json_string(st->d[i].service));
			json_object_set_new(o, "service_ready", json_boolean(st->d[i].service_ready));
			json_object_set_new(o, "requests", json_integer((json_int_t)st->d[i].requests));
			json_object_set_new(o, "refused", json_integer((json_int_t)st->d[i].refused));
			json_object_set_new(o, "clients", json_integer((json_int_t)st->d[i].clients));
		} else if (st->d[i].error[0]) {
			json_object_set_new(o, "error", json_string(st->d[i].error));
		}
		json_array_append_new(daemons, o);
	}
	return json_pack("{s:I, s:s, s:s, s:i, s:b, s:s, s:s, s:b, s:s, s:o}", "node", (json_int_t)st->node->id,
			 "label", st->node->label, "state", coral__node_state(st), "supervisor_pid",
			 (int)st->snap.supervisor_pid, "supervisor_alive", st->supervisor_alive,
			 "reason", st->snap.reason, "sga", st->sga_name, "fenced", st->fenced, "fence_reason",
			 st->fenced ? st->fence_reason : "", "daemons", daemons);
}

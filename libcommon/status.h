/* What `coralctl status` and `coral-node status` show: the node state and, per daemon,
 * pid, state, uptime, restarts, heartbeat age (read from the proc table, so a hung daemon
 * still shows up) and the daemon's own status line (asked over its socket). One collector,
 * one text printer and one JSON builder serve both tools. */
#ifndef CORAL_STATUS_H
#define CORAL_STATUS_H

#include "conf.h"
#include "proc.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

struct coral_node_status {
	const struct coral_node_conf *node;
	char sga_name[CORAL_STR_MAX];
	bool supervisor_alive;
	struct coral_proc_snapshot snap;
	uint64_t now_mono_ns;
	bool fenced;                   /* raftd's fence (cluster section), and why */
	char fence_reason[192];
	struct {
		bool answered;
		char service[256];
		bool service_ready;
		uint64_t requests, refused;
		uint32_t clients;
		char error[256];
	} d[CORAL_NDAEMONS];
};

/* Reads the node's proc table; if ask is true also asks every live daemon for its status.
 * Returns CORAL_ENOTRUNNING (with err saying what to do) when the node has no SGA. */
int coral_status_collect(const struct coral_conf *conf, const struct coral_node_conf *node,
			 bool ask, struct coral_node_status *st, char *err, size_t errsz);
void coral_status_print(FILE *out, const struct coral_node_status *st);
json_t *coral_status_json(const struct coral_node_status *st);
/* 0: running and healthy; 1: degraded or a daemon is not ready. */
int coral_status_health(const struct coral_node_status *st);

/* "1h02m", "3.2s": compact durations for tables. */
void coral_format_duration(uint64_t ns, char *buf, size_t bufsz);

#endif

/* The metrics section of the SGA and the Prometheus text exposition of a node (metrics.h).
 * Names follow Prometheus' conventions: coral_ prefix, _total on counters, base units
 * (seconds, bytes), and labels for node, daemon and kind. */
#include "metrics.h"

#include "bufcache.h"
#include "cluster.h"
#include "errors.h"
#include "proc.h"
#include "redo.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

size_t coral_metrics_sga_size(const struct coral_conf *conf)
{
	(void)conf;
	return sizeof(struct coral_metrics_sga);
}

int coral_metrics_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node)
{
	(void)conf;
	(void)node;
	memset(section, 0, size);
	return 0;
}

void coral_metrics_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_metrics_sga *m = section;
	*used = 0;
	*capacity = (uint64_t)CORAL_NDAEMONS * CORAL_METRICS_MAX;
	for (int i = 0; i < CORAL_NDAEMONS; i++)
		*used += m->slot[i].n;
}

struct coral_metrics_sga *coral_metrics_sga(const struct coral_sga *sga)
{
	size_t size = 0;
	void *p = coral_sga_section(sga, "metrics", &size);
	return p && size >= sizeof(struct coral_metrics_sga) ? p : NULL;
}

/* ---- writer ---------------------------------------------------------------------------- */

void coral_metrics_begin(struct coral_metrics_slot *s)
{
	coral_seq_repair(&s->seq);  /* a predecessor killed while it wrote */
	coral_seq_write_begin(&s->seq);
	s->n = s->nh = 0;
	s->dropped = 0;
}

void coral_metrics_end(struct coral_metrics_slot *s, int32_t pid)
{
	s->pid = pid;
	s->at_real_ns = coral_now_real_ns();
	coral_seq_write_end(&s->seq);
}

void coral_metrics_put(struct coral_metrics_slot *s, const char *name, const char *label, int kind,
		       double value, const char *help)
{
	if (s->n >= CORAL_METRICS_MAX) {
		s->dropped++;
		return;
	}
	struct coral_metric *m = &s->m[s->n++];
	coral_strlcpy(m->name, name, sizeof(m->name));
	coral_strlcpy(m->label, label ? label : "", sizeof(m->label));
	coral_strlcpy(m->help, help ? help : name, sizeof(m->help));
	m->kind = (uint32_t)kind;
	m->value = value;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A gauge list entry names a field path, or a prefix of paths when it ends in '*'. */
static bool is_gauge(const char *path, const char *const *gauges)
{
	for (size_t i = 0; gauges && gauges[i]; i++) {
		size_t n = strlen(gauges[i]);
		if (n > 0 && gauges[i][n - 1] == '*' ? strncmp(path, gauges[i], n - 1) == 0
						     : strcmp(path, gauges[i]) == 0)
			return true;
	}
	return false;
}

static void put_field(struct coral_metrics_slot *s, const char *prefix, const char *path, double v,
		      const char *const *gauges, const char *help_from)
{
	char base[64], name[64], help[72];
	coral_strlcpy(base, path, sizeof(base));
	const char *unit = "";
	if (ends_with(base, "_us")) {
		base[strlen(base) - 3] = '\0';
		v /= 1e6;
		unit = "_seconds";
	} else if (ends_with(base, "_ms")) {
		base[strlen(base) - 3] = '\0';
		v /= 1e3;
		unit = "_seconds";
	}
	bool gauge = is_gauge(path, gauges);
	snprintf(name, sizeof(name), "coral_%s_%s%s%s", prefix, base, unit, gauge ? "" : "_total");
	snprintf(help, sizeof(help), "%s of %s", path, help_from);
	coral_metrics_put(s, name, NULL, gauge ? CORAL_METRIC_GAUGE : CORAL_METRIC_COUNTER, v, help);
}

static void put_pb(struct coral_metrics_slot *s, const char *prefix, const char *path0,
		   const ProtobufCMessage *msg, const char *const *gauges, const char *help_from, int depth)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->label == PROTOBUF_C_LABEL_REPEATED)
			continue;
		const void *p = (const char *)msg + f->offset;
		char path[64];
		snprintf(path, sizeof(path), "%s%s%s", path0, path0[0] ? "_" : "", f->name);
		double v;
		switch (f->type) {
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_SINT32:
		case PROTOBUF_C_TYPE_SFIXED32: v = *(const int32_t *)p; break;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_SINT64:
		case PROTOBUF_C_TYPE_SFIXED64: v = (double)*(const int64_t *)p; break;
		case PROTOBUF_C_TYPE_UINT32:
		case PROTOBUF_C_TYPE_FIXED32: v = *(const uint32_t *)p; break;
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64: v = (double)*(const uint64_t *)p; break;
		case PROTOBUF_C_TYPE_FLOAT: v = *(const float *)p; break;
		case PROTOBUF_C_TYPE_DOUBLE: v = *(const double *)p; break;
		case PROTOBUF_C_TYPE_BOOL: v = *(const protobuf_c_boolean *)p ? 1 : 0; break;
		case PROTOBUF_C_TYPE_MESSAGE: {
			const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
			if (sub != NULL && depth < 2)
				put_pb(s, prefix, path, sub, gauges, help_from, depth + 1);
			continue;
		}
		default: continue;  /* strings, bytes, enums: not figures */
		}
		put_field(s, prefix, path, v, gauges, help_from);
	}
}

void coral_metrics_put_pb(struct coral_metrics_slot *s, const char *prefix, const ProtobufCMessage *msg,
			  const char *const *gauges, const char *help_from)
{
	if (msg != NULL)
		put_pb(s, prefix, "", msg, gauges, help_from, 0);
}

void coral_metrics_put_hist_log8(struct coral_metrics_slot *s, const char *name, const char *label,
				 const uint32_t *b, int nb, uint64_t count, uint64_t sum_us, const char *help)
{
	if (s->nh >= CORAL_METRICS_HISTS) {
		s->dropped++;
		return;
	}
	struct coral_metric_hist *h = &s->h[s->nh++];
	coral_strlcpy(h->name, name, sizeof(h->name));
	coral_strlcpy(h->label, label ? label : "", sizeof(h->label));
	coral_strlcpy(h->help, help ? help : name, sizeof(h->help));
	h->count = count;
	h->sum = (double)sum_us / 1e6;
	/* bucket k (1..): values with us + 1 < 2^k, i.e. us <= 2^k - 2 < le = 2^k - 1. The last
	 * of b also holds every larger value: it counts in +Inf only */
	uint64_t cum = 0;
	int next = 0;
	for (int k = 1; k <= CORAL_METRICS_BUCKETS; k++) {
		for (; next < 8 * k && next < nb - 1; next++)
			cum += b[next];
		h->le[k - 1] = cum;
	}
}

/* ---- reader ---------------------------------------------------------------------------- */

/* One family's header, printed once before its first sample. */
static void family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(FILE *out, const char *name, uint32_t node, const char *labels, double v)
{
	fprintf(out, "%s{node=\"%u\"%s%s} %.15g\n", name, node, labels[0] ? "," : "", labels, v);
}

static bool pid_alive(int32_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

struct proc_family {
	const char *name, *type, *help;
};

static double proc_value(int i, const struct coral_proc_slot_snap *p, uint64_t now_mono)
{
	bool alive = pid_alive(p->pid);
	switch (i) {
	case 0: return alive && p->state == CORAL_PROC_READY;
	case 1: return p->restarts;
	case 2: return alive && p->heartbeat_mono_ns && now_mono > p->heartbeat_mono_ns
		       ? (double)(now_mono - p->heartbeat_mono_ns) / 1e9 : 0;
	case 3: return p->requests;
	case 4: return p->refused;
	case 5: return alive ? p->clients : 0;
	default: return p->state == CORAL_PROC_FAILED;
	}
}

static void render_proc(FILE *out, const struct coral_proc_snapshot *snap, uint32_t node)
{
	static const struct proc_family f[] = {
		{"coral_daemon_up", "gauge", "1 when the daemon runs and has reported ready"},
		{"coral_daemon_restarts_total", "counter", "restarts of the daemon by the supervisor"},
		{"coral_daemon_heartbeat_age_seconds", "gauge", "time since the daemon last refreshed its heartbeat"},
		{"coral_daemon_requests_total", "counter", "control requests the daemon answered"},
		{"coral_daemon_refused_total", "counter", "control requests the daemon refused"},
		{"coral_daemon_clients", "gauge", "clients connected to the daemon's socket"},
		{"coral_daemon_failed", "gauge", "1 when the supervisor gave up restarting the daemon"},
	};
	uint64_t now = coral_now_mono_ns();
	for (size_t i = 0; i < CORAL_ARRAY_LEN(f); i++) {
		family(out, f[i].name, f[i].type, f[i].help);
		for (int d = 0; d < CORAL_NDAEMONS; d++) {
			char l[48];
			snprintf(l, sizeof(l), "daemon=\"%s\"", coral_daemon_names[d]);
			sample(out, f[i].name, node, l, proc_value((int)i, &snap->slot[d], now));
		}
	}
	family(out, "coral_node_state", "gauge", "1 for the node's state as the supervisor sees it");
	for (int s = 0; s < CORAL_NODE_NSTATES; s++) {
		char l[48];
		snprintf(l, sizeof(l), "state=\"%s\"", coral_node_state_name(s));
		sample(out, "coral_node_state", node, l, pid_alive(snap->supervisor_pid) ? snap->node_state == (uint32_t)s
											  : s == CORAL_NODE_DOWN);
	}
}

static void one(FILE *out, const char *name, const char *type, const char *help, uint32_t node, double v)
{
	family(out, name, type, help);
	sample(out, name, node, "", v);
}

static void render_cluster(FILE *out, const struct coral_sga *sga, uint32_t node)
{
	struct coral_cluster_sga *c = coral_cluster_sga(sga);
	if (c == NULL)
		return;
	struct coral_cluster_view v;
	coral_cluster_read(c, &v);
	one(out, "coral_node_fenced", "gauge", "1 while this node may not serve (raftd's fence or an expired lease)",
	    node, coral_cluster_fenced(c));
	one(out, "coral_raft_leader_known", "gauge", "1 when this node knows a Raft leader", node, v.leader != 0);
	one(out, "coral_cluster_leader", "gauge", "the Raft leader's node id as this node knows it (0: none)", node, v.leader);
	one(out, "coral_cluster_epoch", "gauge", "the membership epoch", node, (double)v.epoch);
	one(out, "coral_cluster_members", "gauge", "members of the cluster as this node knows them", node, v.nmembers);
	one(out, "coral_node_incarnation", "gauge", "this node's incarnation", node, (double)v.incarnation);
}

static void render_redo(FILE *out, const struct coral_sga *sga, uint32_t node)
{
	struct coral_redo *r = coral_redo_sga(sga);
	if (r == NULL)
		return;
	uint64_t tail = atomic_load(&r->tail), durable = atomic_load(&r->durable), ckpt = atomic_load(&r->ckpt_lsn);
	one(out, "coral_redo_appended_lsn_bytes", "gauge", "LSN after the last redo record appended", node, (double)tail);
	one(out, "coral_redo_durable_lsn_bytes", "gauge", "LSN up to which the redo thread is on disk", node, (double)durable);
	one(out, "coral_redo_checkpoint_distance_bytes", "gauge",
	    "redo bytes a recovery of this node would read: appended LSN minus the checkpoint's", node,
	    tail > ckpt ? (double)(tail - ckpt) : 0);
	one(out, "coral_redo_io_error", "gauge", "the log writer's current error code (0: none)", node,
	    atomic_load(&r->io_error));
	struct { const char *name, *help; double v; } c[] = {
		{"coral_redo_records_total", "redo records appended", (double)atomic_load(&r->records)},
		{"coral_redo_commits_total", "commits appended", (double)atomic_load(&r->commits)},
		{"coral_redo_bytes_total", "redo bytes appended", (double)atomic_load(&r->bytes)},
		{"coral_redo_syncs_total", "syncs of the redo thread", (double)atomic_load(&r->syncs)},
		{"coral_redo_sync_seconds_total", "time spent in syncs of the redo thread",
		 (double)atomic_load(&r->sync_us) / 1e6},
		{"coral_redo_full_waits_total", "appends that waited for room in the redo buffer",
		 (double)atomic_load(&r->full_waits)},
		{"coral_redo_errors_total", "log writer write or sync errors", (double)atomic_load(&r->errors)},
		{"coral_redo_dropped_bytes_total", "redo appended and dropped, never durable (an evicted incarnation's)",
		 (double)atomic_load(&r->dropped)},
	};
	for (size_t i = 0; i < CORAL_ARRAY_LEN(c); i++)
		one(out, c[i].name, "counter", c[i].help, node, c[i].v);
}

static void render_cache(FILE *out, const struct coral_sga *sga, uint32_t node)
{
	struct coral_cache *k = coral_cache_sga(sga);
	if (k == NULL)
		return;
	const struct coral_cache_stats *st = &k->st;
	struct { const char *name, *help; double v; } c[] = {
		{"coral_cache_gets_total", "block requests of the node's sessions", (double)atomic_load(&st->gets)},
		{"coral_cache_local_hits_total", "block requests served from the node's cache without lmsd",
		 (double)atomic_load(&st->local_hits)},
		{"coral_cache_misses_total", "block requests that went to lmsd", (double)atomic_load(&st->misses)},
		{"coral_cache_fills_total", "buffers filled", (double)atomic_load(&st->fills)},
		{"coral_cache_evictions_total", "buffers evicted", (double)atomic_load(&st->evictions)},
		{"coral_cache_writes_total", "buffers written to the data files", (double)atomic_load(&st->writes)},
		{"coral_cache_write_errors_total", "data-file writes that failed", (double)atomic_load(&st->write_errors)},
		{"coral_cache_pin_waits_total", "pins that waited", (double)atomic_load(&st->pin_waits)},
		{"coral_cache_full_total", "requests that found no free buffer", (double)atomic_load(&st->full)},
		{"coral_cache_cr_copies_total", "consistent-read copies made", (double)atomic_load(&st->cr_copies)},
		{"coral_cache_dead_sessions_total", "sessions whose process died, cleaned up",
		 (double)atomic_load(&st->dead_sessions)},
		{"coral_cache_dead_pins_total", "pins of dead sessions released", (double)atomic_load(&st->dead_pins)},
		{"coral_cache_dead_txns_total", "open transactions of dead sessions taken back",
		 (double)atomic_load(&st->dead_txns)},
		{"coral_cache_revoked_sessions_total", "sessions ended by the resource manager, what they held reclaimed",
		 (double)atomic_load(&st->revoked)},
		{"coral_cache_cr_clones_total", "consistent images kept of blocks open transactions changed",
		 (double)atomic_load(&st->clones)},
		{"coral_cache_cr_clone_reads_total", "consistent reads answered from such an image at once",
		 (double)atomic_load(&st->clone_reads)},
		{"coral_cache_cr_clones_full_total", "changes made with every image in use: their readers waited",
		 (double)atomic_load(&st->clone_full)},
	};
	for (size_t i = 0; i < CORAL_ARRAY_LEN(c); i++)
		one(out, c[i].name, "counter", c[i].help, node, c[i].v);
	one(out, "coral_cache_cr_clones_in_use", "gauge", "consistent images of blocks under change in use",
	    node, (double)atomic_load(&k->clones_used));
	one(out, "coral_cache_cr_clones_capacity", "gauge", "consistent images the cache holds at most ([cache] cr_clones)",
	    node, (double)k->nclone);
}

/* Each SGA section's entries in use and capacity: the tables' fill. */
static void render_sections(FILE *out, const struct coral_sga *sga, uint32_t node)
{
	size_t n;
	const struct coral_sga_subsys *ss = coral_sga_subsystems(&n);
	const char *names[] = {"coral_sga_entries", "coral_sga_capacity"};
	const char *helps[] = {"entries in use in an SGA section (its table's fill)", "entries an SGA section holds at most"};
	for (int w = 0; w < 2; w++) {
		family(out, names[w], "gauge", helps[w]);
		for (size_t i = 0; i < n; i++) {
			void *sec = coral_sga_section(sga, ss[i].name, NULL);
			if (sec == NULL || ss[i].fill == NULL)
				continue;
			uint64_t used = 0, cap = 0;
			ss[i].fill(sec, &used, &cap);
			char l[64];
			snprintf(l, sizeof(l), "section=\"%s\"", ss[i].name);
			sample(out, names[w], node, l, (double)(w ? cap : used));
		}
	}
}

/* A consistent copy of a slot, or false when its writer kept it busy. */
static bool slot_copy(const struct coral_metrics_slot *s, struct coral_metrics_slot *out)
{
	for (int tries = 0; tries < 100; tries++) {
		uint32_t v = atomic_load_explicit(&s->seq.v, memory_order_acquire);
		if (v & 1u) {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
			continue;
		}
		memcpy(out, s, sizeof(*out));
		if (!coral_seq_read_retry(&s->seq, v))
			return out->n <= CORAL_METRICS_MAX && out->nh <= CORAL_METRICS_HISTS;
	}
	return false;
}

static void render_slot(FILE *out, const struct coral_metrics_slot *s, const char *daemon, uint32_t node)
{
	char dl[48];
	const char *prev = "";
	for (uint32_t i = 0; i < s->n; i++) {
		const struct coral_metric *m = &s->m[i];
		if (strcmp(m->name, prev) != 0)
			family(out, m->name, m->kind == CORAL_METRIC_GAUGE ? "gauge" : "counter", m->help);
		prev = m->name;
		char l[128];
		snprintf(l, sizeof(l), "daemon=\"%s\"%s%s", daemon, m->label[0] ? "," : "", m->label);
		sample(out, m->name, node, l, m->value);
	}
	prev = "";
	for (uint32_t i = 0; i < s->nh; i++) {
		const struct coral_metric_hist *h = &s->h[i];
		if (strcmp(h->name, prev) != 0)
			family(out, h->name, "histogram", h->help);
		prev = h->name;
		char l[160], name[80];
		snprintf(dl, sizeof(dl), "daemon=\"%s\"%s%s", daemon, h->label[0] ? "," : "", h->label);
		snprintf(name, sizeof(name), "%s_bucket", h->name);
		for (int k = 1; k <= CORAL_METRICS_BUCKETS; k++) {
			snprintf(l, sizeof(l), "%s,le=\"%.9g\"", dl, (double)((1ull << k) - 1) / 1e6);
			sample(out, name, node, l, (double)h->le[k - 1]);
		}
		snprintf(l, sizeof(l), "%s,le=\"+Inf\"", dl);
		sample(out, name, node, l, (double)h->count);
		snprintf(name, sizeof(name), "%s_sum", h->name);
		sample(out, name, node, dl, h->sum);
		snprintf(name, sizeof(name), "%s_count", h->name);
		sample(out, name, node, dl, (double)h->count);
	}
}

int coral_metrics_render(const struct coral_sga *sga, uint32_t node, FILE *out)
{
	struct coral_proc_table *t = coral_proc_table(sga);
	struct coral_metrics_sga *ms = coral_metrics_sga(sga);
	if (t == NULL || ms == NULL)
		return CORAL_ENOTRUNNING;
	struct coral_proc_snapshot snap;
	coral_proc_snapshot(t, &snap);
	render_proc(out, &snap, node);
	render_cluster(out, sga, node);
	render_redo(out, sga, node);
	render_cache(out, sga, node);
	render_sections(out, sga, node);
	struct coral_metrics_slot *copy = malloc(sizeof(*copy));
	if (copy == NULL)
		return CORAL_ENOMEM;
	family(out, "coral_metrics_dropped", "gauge", "figures a daemon could not publish: no room in its slot");
	for (int d = 0; d < CORAL_NDAEMONS; d++) {
		char l[48];
		snprintf(l, sizeof(l), "daemon=\"%s\"", coral_daemon_names[d]);
		bool ok = slot_copy(&ms->slot[d], copy);
		sample(out, "coral_metrics_dropped", node, l, ok ? copy->dropped : 0);
	}
	for (int d = 0; d < CORAL_NDAEMONS; d++) {
		/* only the figures of the daemon running now: a dead one's would look current */
		if (!slot_copy(&ms->slot[d], copy) || copy->pid == 0 || copy->pid != snap.slot[d].pid ||
		    !pid_alive(copy->pid))
			continue;
		render_slot(out, copy, coral_daemon_names[d], node);
	}
	free(copy);
	return 0;
}

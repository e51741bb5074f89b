/* The cluster configuration file: one INI file with [cluster], one [node.LABEL] section per
 * node, [storage], [tls], [supervisor] and one section per daemon. Every section's options
 * are declared once, in a table {name, type, default, min, max, reloadable, help}; parsing,
 * validation, printing (-nv, coralctl config) and reload (SIGHUP) all walk those tables. */
#ifndef CORAL_CONF_H
#define CORAL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CORAL_MAX_NODES 64
#define CORAL_STR_MAX 256
#define CORAL_LABEL_MAX 32
#define CORAL_CLUSTER_NAME_MAX 32
#define CORAL_PORTS_PER_NODE 16   /* base_port .. base_port+15 belong to one node */
/* Offsets from base_port. */
#define CORAL_PORT_RAFTD 0        /* raftd interconnect */
#define CORAL_PORT_RAFTD_HTTP 1   /* raftd HTTP/JSON */
#define CORAL_PORT_GRDD 2         /* grdd interconnect */
#define CORAL_PORT_LMSD 3         /* lmsd interconnect (cache fusion) */
#define CORAL_PORT_LMSD_CR 4      /* lmsd: consistent-read copies for other nodes' sessions */
#define CORAL_PORT_LMDD 5         /* lmdd interconnect (global enqueues) */
#define CORAL_PORT_METRICS 6      /* coral-node: Prometheus metrics */
#define CORAL_PORT_REPLICAD 7     /* replicad: a standby's receiver of the primary's redo */
#define CORAL_MAX_OPTS 48
#define CORAL_ERRMSG_MAX 512

/* The daemons of a node, in start order (raftd first: everyone else needs membership).
 * Stop order is the reverse. The index is the daemon's proc-table slot. */
#define CORAL_DAEMONS(X)   \
	X(RAFTD, raftd)    \
	X(GRDD, grdd)      \
	X(LMSD, lmsd)      \
	X(LMDD, lmdd)      \
	X(SMOND, smond)    \
	X(REPLICAD, replicad) \
	X(RSRCMGRD, rsrcmgrd)

enum coral_daemon_id {
#define CORAL__D_ENUM(up, low) CORAL_D_##up,
	CORAL_DAEMONS(CORAL__D_ENUM)
#undef CORAL__D_ENUM
	CORAL_NDAEMONS
};
extern const char *const coral_daemon_names[CORAL_NDAEMONS];
/* Daemon index for a name, or -1. */
int coral_daemon_lookup(const char *name);

enum coral_opt_type {
	CORAL_OPT_STR,      /* free text; min/max bound the length */
	CORAL_OPT_PATH,     /* absolute path */
	CORAL_OPT_HOST,     /* IPv4/IPv6 literal or host name */
	CORAL_OPT_INT,
	CORAL_OPT_SIZE,     /* bytes, with K/M/G suffixes */
	CORAL_OPT_BOOL,     /* yes/no, true/false, on/off, 1/0 */
	CORAL_OPT_LOGLEVEL, /* debug, info, notice, warning, error */
};

struct coral_opt {
	const char *name;
	enum coral_opt_type type;
	const char *def;    /* NULL: required */
	int64_t min, max;
	bool reloadable;
	size_t off;         /* offset of the int64_t or char[CORAL_STR_MAX] field */
	const char *help;
};

/* What the parser knows about one section instance: which options the file set, where. */
struct coral_sect_meta {
	uint64_t set;                 /* bit i: option i was set in the file */
	int line;                     /* line of the first option seen (0: section absent) */
	int opt_line[CORAL_MAX_OPTS];
};

struct coral_cluster_conf {
	char name[CORAL_STR_MAX];
	int64_t admin_uid;            /* -1: the uid that runs the daemons */
	int64_t admin_gid;            /* -1: none */
	int64_t max_frame;
	int64_t ipc_timeout_ms;
	int64_t log_stderr;
	int64_t log_syslog;
	int64_t log_burst;
	int64_t log_interval_ms;
};

struct coral_node_conf {
	char label[CORAL_LABEL_MAX];  /* LABEL of [node.LABEL] */
	int64_t id;
	char host[CORAL_STR_MAX];
	int64_t base_port;
	char run_dir[CORAL_STR_MAX];
	int64_t sga_size;
	char sga_name[CORAL_STR_MAX]; /* empty in the file: /coral.CLUSTER.ID */
	char data_dir[CORAL_STR_MAX]; /* empty in the file: RUN_DIR/data */
	struct coral_sect_meta meta;
};

struct coral_storage_conf {
	char shared_dir[CORAL_STR_MAX];
	int64_t block_size;
};

struct coral_tls_conf {
	int64_t enabled;
	char ca_file[CORAL_STR_MAX];
	char cert_file[CORAL_STR_MAX];
	char key_file[CORAL_STR_MAX];
};

/* Consensus, failure detection and fencing. Every node must use the same values. */
struct coral_raft_conf {
	int64_t tick_ms;               /* Raft's clock: leader heartbeats go out once a tick */
	int64_t election_timeout_ms;   /* randomized in [t, 2t) */
	int64_t heartbeat_interval_ms; /* failure-detector heartbeats between raftd peers */
	int64_t phi_threshold;
	int64_t phi_window;            /* inter-arrival samples kept per peer */
	int64_t phi_min_stddev_ms;
	int64_t evict_grace_ms;        /* phi above the threshold this long: evict */
	int64_t lease_ms;
	int64_t lease_drift_ms;
	int64_t max_uncommitted;
	int64_t max_batch;
	int64_t max_inflight;
	int64_t segment_size;
	int64_t snapshot_entries;      /* compact after this many applied entries */
	int64_t max_pending;           /* proposals and reads waiting for an answer */
	int64_t kv_max_keys;
	int64_t kv_max_value;
	int64_t history_size;
	char founders[CORAL_STR_MAX];  /* ids that found the cluster; empty: every configured node */
	int64_t http;                  /* serve HTTP/JSON on base_port+1 */
	char http_bind[CORAL_STR_MAX]; /* the address it listens on; empty: the node's host */
	char http_token_file[CORAL_STR_MAX]; /* the admin token HTTP writes must carry */
	int64_t http_open_reads;       /* reads need no identity */
	int64_t http_max_header;       /* bytes of a request's headers */
	int64_t http_idle_ms;          /* a connection idle this long is closed */
	int64_t http_max_clients;      /* connections held at once */
};

/* TCP between the same daemon on every node. */
struct coral_interconnect_conf {
	int64_t send_queue;            /* bytes queued to one peer before senders are refused */
	int64_t reconnect_min_ms;
	int64_t reconnect_max_ms;
	int64_t compress_above;        /* lz4 for payloads above this many bytes; 0: never */
	int64_t ping_interval_ms;      /* round-trip measurement */
	int64_t connect_timeout_ms;
};

/* The resource directory (grdd). Capacities size SGA sections; the rest must be the same on
 * every node. */
struct coral_grd_conf {
	int64_t directory_entries;     /* master-side entries this node's directory holds */
	int64_t held_entries;          /* resources this node holds (reported for rebuilds) */
	int64_t max_overrides;         /* resource overrides (and bucket overrides) in the map */
	int64_t affinity;              /* remaster by affinity */
	int64_t affinity_threshold;    /* accesses from one remote node before a move */
	int64_t affinity_ratio;        /* ... and this many times anyone else's */
	int64_t affinity_window_ms;    /* access counts halve this often */
	int64_t affinity_cooldown_ms;  /* a moved resource stays at least this long */
	int64_t remaster_bandwidth;    /* bytes per second of master state shipped */
	int64_t freeze_timeout_ms;     /* a move not committed by then is abandoned */
	int64_t request_timeout_ms;    /* a client request retried at new versions this long */
	int64_t max_pending;           /* client requests in flight on this node */
};

/* Cache fusion (lmsd), redo (replicad as log writer) and libcoral sessions. Capacities size
 * SGA sections. */
struct coral_cache_conf {
	int64_t buffers;               /* block buffers in the SGA (section cache) */
	int64_t redo_buffer;           /* bytes of redo buffered in the SGA (section redo) */
	int64_t redo_segment;          /* bytes per redo segment file before the next one */
	int64_t gcs_retry_ms;          /* a GCS message unanswered this long is sent again */
	int64_t get_timeout_ms;        /* a session's block request fails after this long */
	int64_t restart_wait_ms;       /* a session waits this long for lmsd's restart or the fence's end */
	int64_t checkpoint_ms;         /* dirty buffers are written back this often */
	int64_t commit_timeout_ms;     /* a commit whose redo is not durable by then fails */
	int64_t log_error_ms;          /* ... and sooner, with the cause, once the log writer has failed this long */
	int64_t cr_direct;             /* sessions read CR copies straight from the holder */
	int64_t spin_us;               /* a session spins this long for lmsd's answer */
	int64_t cr_clones;             /* consistent images of blocks under change, in the SGA */
};

/* Instance recovery (smond). */
struct coral_recovery_conf {
	int64_t workers;               /* threads applying redo to the blocks of a lost node's recovery */
	int64_t max_memory;            /* change bytes one recovery holds in memory */
	int64_t rejoin_wait_ms;        /* a returning node waits this long for its thread's recovery */
	int64_t peers_wait_ms;         /* the claimer waits this long for the other survivors' part */
};

/* Global enqueues (lmdd). */
struct coral_ges_conf {
	int64_t max_resources;         /* resources one node masters */
	int64_t max_locks;             /* locks on them */
	int64_t graph_edges;           /* the deadlock coordinator's wait-for graph */
	int64_t probe_ms;              /* a deadlock probe not answered by then is sent again */
	int64_t sweep_ms;              /* the coordinator sweeps the graph for missed cycles this often */
	int64_t fast_path;             /* sessions grant themselves locks lmdd masters here, in the SGA */
};

/* The resource manager (rsrcmgrd): where it puts the CPU shares of the plan in force. */
struct coral_rsrc_conf {
	char cgroup[16];               /* auto, v1, v2 or off */
	char cgroup_root[CORAL_STR_MAX]; /* the cpu hierarchy's mount; empty: the usual place */
	int64_t px_servers;            /* the node's parallel servers; 0: twice its CPUs */
};

/* The node's Prometheus metrics, served by coral-node on base_port+6. */
struct coral_metrics_conf {
	int64_t enabled;
	char bind[CORAL_STR_MAX];      /* empty: the node's host */
	char token_file[CORAL_STR_MAX];/* the token a scrape must carry */
	int64_t open_reads;            /* no identity needed */
	int64_t idle_ms;
	int64_t max_clients;           /* connections held at once */
};

/* Redo shipping to a standby cluster (replicad). A primary names the standby's receiver; a
 * standby names the primary cluster it takes redo from. Both hold the same token. Each may
 * name both, for the other role: a switchover swaps the roles (SHARED/role). */
struct coral_replication_conf {
	char role[CORAL_STR_MAX];      /* primary or standby (SHARED/role's if it exists) */
	bool role_from_file;           /* ... it does: a switchover or coralctl standby rejoin wrote it */
	char standby[CORAL_STR_MAX];   /* as a primary: HOST:PORT of the standby's receiver; empty: none */
	char primary_cluster[CORAL_STR_MAX]; /* as a standby: the primary cluster's name */
	char token_file[CORAL_STR_MAX];/* the secret both sides prove they hold */
	int64_t window;                /* bytes sent and not acknowledged, at most */
	int64_t chunk;                 /* bytes in one message, at most */
	int64_t slot_max_bytes;        /* redo kept for a standby that lags, at most */
	int64_t reconnect_ms;
	int64_t stall_ms;              /* nothing acknowledged this long: send again */
	char sync[CORAL_STR_MAX];      /* "" (async), FIRST k (a, b) or ANY k (a, b) */
	int64_t sync_fallback_ms;      /* 0: strict; else async after the sync set is short this long */
	int64_t max_lag_bytes;         /* the RPO: commits wait past it (0: none) */
	int64_t max_lag_ms;
	int64_t open_wait_ms;          /* a primary starting waits this long to hear of a failover */
	char reseed_from[CORAL_STR_MAX]; /* a standby told it needs seeding seeds itself from here */
	char witness_file[CORAL_STR_MAX]; /* both sites see it: a takeover writes its epoch there */
};

/* [replication] sync, parsed: commits wait for k of the named standbys (their [cluster]
 * names); FIRST: the first k connected in the order given; ANY: any k. k == 0: async. */
#define CORAL_SYNC_MAX 8
#define CORAL_STANDBY_MAX 8
struct coral_sync_spec {
	int k;
	bool any;
	int n;
	char names[CORAL_SYNC_MAX][64];
};
int coral_sync_spec_parse(const char *s, struct coral_sync_spec *out, char *why, size_t whysz);
/* [replication] standby: HOST:PORT[, HOST:PORT...] (at most CORAL_STANDBY_MAX); how many,
 * or -1 with why. */
int coral_standby_list(const char *s, char hosts[][CORAL_STR_MAX], int *ports, int max, char *why, size_t whysz);

struct coral_supervisor_conf {
	char bin_dir[CORAL_STR_MAX];
	int64_t ready_timeout_ms;
	int64_t stop_grace_ms;
	int64_t restart_max;
	int64_t restart_window_s;
	int64_t restart_backoff_ms;
	int64_t restart_backoff_max_ms;
	int64_t hang_timeout_ms;
};

/* Options every daemon section has. Daemon-specific options join later issues' tables. */
struct coral_daemon_conf {
	int64_t log_level;
	int64_t heartbeat_ms;
	int64_t max_clients;
	int64_t out_queue;
	int64_t client_idle_ms;
};

struct coral_conf {
	char path[CORAL_STR_MAX];
	struct coral_cluster_conf cluster;
	struct coral_storage_conf storage;
	struct coral_tls_conf tls;
	struct coral_supervisor_conf supervisor;
	struct coral_raft_conf raft;
	struct coral_interconnect_conf interconnect;
	struct coral_grd_conf grd;
	struct coral_cache_conf cache;
	struct coral_recovery_conf recovery;
	struct coral_ges_conf ges;
	struct coral_metrics_conf metrics;
	struct coral_replication_conf replication;
	struct coral_rsrc_conf rsrc;
	struct coral_daemon_conf daemon[CORAL_NDAEMONS];
	struct coral_sect_meta cluster_meta, storage_meta, tls_meta, supervisor_meta, raft_meta,
		interconnect_meta, grd_meta, cache_meta, recovery_meta, ges_meta, metrics_meta, replication_meta,
		rsrc_meta;
	struct coral_sect_meta daemon_meta[CORAL_NDAEMONS];
	int nnodes;
	struct coral_node_conf nodes[CORAL_MAX_NODES];
	char errmsg[CORAL_ERRMSG_MAX];
};

/* Reads and validates a file. On error returns CORAL_ECONFIG (or ENOMEM) and leaves
 * "FILE:LINE: [section] option: reason" in conf->errmsg. */
int coral_conf_load(struct coral_conf *conf, const char *path);

/* Default path: $CORAL_CONF, else /etc/coral/coral.conf. */
const char *coral_conf_default_path(void);

/* Node by id (1..) or by label; NULL if none. */
const struct coral_node_conf *coral_conf_node(const struct coral_conf *conf, const char *key);
const struct coral_node_conf *coral_conf_node_by_id(const struct coral_conf *conf, int64_t id);

/* A [tls] file name for node id: "%n" becomes the id and "%%" a percent sign, so that one
 * file serves every node (cert_file = /etc/coral/tls/node%n.pem). 0, or -1 if it does not
 * fit in outsz or has another % sequence. */
int coral_conf_tls_path(const char *pattern, int64_t node_id, char *out, size_t outsz);

/* Walks every option of every section in print order. */
typedef void (*coral_conf_visit_fn)(void *arg, const char *section, const struct coral_opt *opt,
				    const char *value, bool is_default);
void coral_conf_foreach(const struct coral_conf *conf, coral_conf_visit_fn fn, void *arg);

/* Prints the effective configuration in INI form (what -nv shows). */
void coral_conf_print(const struct coral_conf *conf, FILE *out);

/* Applies the reloadable differences of next to cur and reports every difference, applied
 * or not, through fn (one line each). Returns how many options were applied. */
int coral_conf_apply_reload(struct coral_conf *cur, const struct coral_conf *next,
			    void (*fn)(void *arg, const char *line), void *arg);

const char *coral_loglevel_name(int64_t level);

/* Node ids that found the cluster ([raft] founders, or every node), as a bit mask over id-1. */
int coral_conf_founders(const struct coral_conf *conf, uint64_t *mask, char *why, size_t whysz);

/* Unix socket, pidfile and log paths of a daemon on a node. */
void coral_conf_sock_path(const struct coral_node_conf *node, const char *daemon, char *buf,
			  size_t bufsz);
void coral_conf_run_path(const struct coral_node_conf *node, const char *file, char *buf,
			 size_t bufsz);

#endif

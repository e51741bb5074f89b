/* Parsing, validation, printing and reloading of the cluster configuration file. The option
 * tables below are the single declaration of every option; etc/coral.conf and coral.conf(5)
 * document the same names and defaults. */
#include "conf.h"

#include "copy.h"
#include "errors.h"
#include "util.h"

#include <ini.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

const char *const coral_daemon_names[CORAL_NDAEMONS] = {
#define CORAL__D_NAME(up, low) #low,
	CORAL_DAEMONS(CORAL__D_NAME)
#undef CORAL__D_NAME
};

int coral_daemon_lookup(const char *name)
{
	for (int i = 0; i < CORAL_NDAEMONS; i++)
		if (strcmp(coral_daemon_names[i], name) == 0)
			return i;
	return -1;
}

static const char *const coral__loglevels[] = {"error", "warning", "notice", "info", "debug"};

const char *coral_loglevel_name(int64_t level)
{
	if (level < 0 || level >= (int64_t)CORAL_ARRAY_LEN(coral__loglevels))
		return "?";
	return coral__loglevels[level];
}

#define S CORAL_STR_MAX
#define OPT(st, f, type, def, min, max, rel, help) \
	{#f, CORAL_OPT_##type, def, min, max, rel, offsetof(struct st, f), help}

static const struct coral_opt coral__cluster_opts[] = {
	OPT(coral_cluster_conf, name, STR, "coral", 1, CORAL_CLUSTER_NAME_MAX, false,
	    "cluster name; part of every SGA name and checked in every interconnect hello"),
	OPT(coral_cluster_conf, admin_uid, INT, "-1", -1, INT32_MAX, true,
	    "uid allowed to send admin requests (-1: the uid that runs the daemons; root always may)"),
	OPT(coral_cluster_conf, admin_gid, INT, "-1", -1, INT32_MAX, true,
	    "gid whose members may send admin requests (-1: none)"),
	OPT(coral_cluster_conf, max_frame, SIZE, "4M", 1024, 256 << 20, false,
	    "largest message frame accepted on any socket; larger frames close the connection"),
	OPT(coral_cluster_conf, ipc_timeout_ms, INT, "5000", 10, 600000, true,
	    "how long a tool waits for a daemon's answer"),
	OPT(coral_cluster_conf, log_stderr, BOOL, "yes", 0, 1, false, "log to standard error"),
	OPT(coral_cluster_conf, log_syslog, BOOL, "no", 0, 1, false, "log to syslog (facility daemon)"),
	OPT(coral_cluster_conf, log_burst, INT, "20", 1, 100000, true,
	    "messages from one call site allowed per interval before the rest are counted, not printed"),
	OPT(coral_cluster_conf, log_interval_ms, INT, "5000", 100, 3600000, true,
	    "length of the log rate-limit interval"),
};

static const struct coral_opt coral__node_opts[] = {
	OPT(coral_node_conf, id, INT, NULL, 1, CORAL_MAX_NODES, false,
	    "node id, unique in the cluster, never reused"),
	OPT(coral_node_conf, host, HOST, NULL, 0, 0, false, "address the node's daemons listen on"),
	OPT(coral_node_conf, base_port, INT, NULL, 1024, 65535 - CORAL_PORTS_PER_NODE + 1, false,
	    "first of the 16 TCP ports this node uses"),
	OPT(coral_node_conf, run_dir, PATH, NULL, 0, 0, false,
	    "run directory: Unix sockets, pidfiles, logs"),
	OPT(coral_node_conf, sga_size, SIZE, "64M", 1 << 20, (int64_t)64 << 30, false,
	    "size of the node's shared memory segment"),
	OPT(coral_node_conf, sga_name, STR, "", 0, 200, false,
	    "POSIX shm name of the SGA (empty: /coral.CLUSTER.ID)"),
	OPT(coral_node_conf, data_dir, STR, "", 0, 200, false,
	    "node-local durable state: the Raft log, snapshots, incarnation (empty: RUN_DIR/data)"),
};

static const struct coral_opt coral__storage_opts[] = {
	OPT(coral_storage_conf, shared_dir, PATH, "/tmp/coral/shared", 0, 0, false,
	    "shared storage directory: data files, redo threads, control file"),
	OPT(coral_storage_conf, block_size, SIZE, "8K", 512, 32768, false, "data block size"),
};

static const struct coral_opt coral__tls_opts[] = {
	OPT(coral_tls_conf, enabled, BOOL, "no", 0, 1, false, "mutual TLS on the interconnect"),
	OPT(coral_tls_conf, ca_file, STR, "", 0, S - 1, false, "CA certificate (PEM)"),
	OPT(coral_tls_conf, cert_file, STR, "", 0, S - 1, false, "this node's certificate (PEM)"),
	OPT(coral_tls_conf, key_file, STR, "", 0, S - 1, false, "this node's private key (PEM)"),
};

static const struct coral_opt coral__raft_opts[] = {
	OPT(coral_raft_conf, tick_ms, INT, "100", 5, 10000, false,
	    "Raft's clock: the leader sends heartbeats once a tick"),
	OPT(coral_raft_conf, election_timeout_ms, INT, "500", 20, 600000, false,
	    "a follower that hears no leader for this long (randomized up to twice) starts an election"),
	OPT(coral_raft_conf, heartbeat_interval_ms, INT, "100", 5, 60000, false,
	    "failure-detector heartbeats between raftd peers"),
	OPT(coral_raft_conf, phi_threshold, INT, "8", 1, 100, false,
	    "phi-accrual suspicion level above which a peer is suspected"),
	OPT(coral_raft_conf, phi_window, INT, "100", 4, 10000, false,
	    "heartbeat inter-arrival times kept per peer"),
	OPT(coral_raft_conf, phi_min_stddev_ms, INT, "25", 1, 60000, false,
	    "floor of the inter-arrival standard deviation, so a very regular peer is not suspected at once"),
	OPT(coral_raft_conf, evict_grace_ms, INT, "2000", 0, 3600000, false,
	    "a peer suspected this long is evicted by the leader"),
	OPT(coral_raft_conf, lease_ms, INT, "2000", 10, 600000, false,
	    "a node that has not reached a quorum for this long fences itself"),
	OPT(coral_raft_conf, lease_drift_ms, INT, "200", 0, 600000, false,
	    "margin for clock-rate drift added before the leader acts on a lost lease"),
	OPT(coral_raft_conf, max_uncommitted, SIZE, "16M", 4096, (int64_t)1 << 32, false,
	    "uncommitted entry bytes before proposals are refused"),
	OPT(coral_raft_conf, max_batch, INT, "256", 1, 65536, false, "entries per append message"),
	OPT(coral_raft_conf, max_inflight, INT, "32", 1, 64, false,
	    "append messages in flight to one follower"),
	OPT(coral_raft_conf, segment_size, SIZE, "16M", 65536, (int64_t)1 << 32, false,
	    "size at which a Raft log segment is closed and a new one started"),
	OPT(coral_raft_conf, snapshot_entries, INT, "10000", 16, 100000000, false,
	    "applied entries after which the registry is snapshotted and the log compacted"),
	OPT(coral_raft_conf, max_pending, INT, "4096", 16, 1000000, false,
	    "proposals and reads waiting for an answer; more are refused as busy"),
	OPT(coral_raft_conf, kv_max_keys, INT, "100000", 16, 10000000, false,
	    "keys the config store holds; more puts are refused"),
	OPT(coral_raft_conf, kv_max_value, SIZE, "64K", 16, 1 << 20, false,
	    "largest value in the config store"),
	OPT(coral_raft_conf, history_size, INT, "256", 8, 65536, false,
	    "leader changes and evictions kept for coralctl raft history"),
	OPT(coral_raft_conf, founders, STR, "", 0, 200, false,
	    "comma-separated node ids that found the cluster on first start (empty: every node in this file)"),
	OPT(coral_raft_conf, http, BOOL, "yes", 0, 1, false,
	    "serve the HTTP/JSON API on base_port+1"),
	OPT(coral_raft_conf, http_bind, STR, "", 0, 200, false,
	    "address the HTTP API listens on (empty: the node's host)"),
	OPT(coral_raft_conf, http_token_file, STR, "", 0, 200, false,
	    "file holding the token an HTTP write or delete must carry (Authorization: Bearer TOKEN); it must "
	    "not be readable by others. Empty: HTTP takes no writes (with [tls] on, a client certificate of "
	    "the cluster's CA is the identity instead)"),
	OPT(coral_raft_conf, http_open_reads, BOOL, "yes", 0, 1, false,
	    "HTTP reads need no identity (no: the token or a client certificate, as writes do)"),
	OPT(coral_raft_conf, http_max_header, SIZE, "8K", 1024, 1 << 20, false,
	    "bytes of one HTTP request's headers; a longer request is refused (431)"),
	OPT(coral_raft_conf, http_idle_ms, INT, "30000", 100, 3600000, false,
	    "an HTTP connection idle this long is closed"),
	OPT(coral_raft_conf, http_max_clients, INT, "128", 1, 4096, false,
	    "HTTP connections held at once; at the bound the one silent longest is closed if silent 3 s, "
	    "else the port stops accepting until one closes (clients wait in the kernel's backlog), so "
	    "that idle clients cannot take raftd's descriptors nor keep the port from others"),
};

static const struct coral_opt coral__interconnect_opts[] = {
	OPT(coral_interconnect_conf, send_queue, SIZE, "8M", 4096, (int64_t)1 << 32, false,
	    "bytes queued to one peer before senders are told to wait"),
	OPT(coral_interconnect_conf, reconnect_min_ms, INT, "50", 1, 600000, false,
	    "first reconnect delay; doubles with each failure, with jitter"),
	OPT(coral_interconnect_conf, reconnect_max_ms, INT, "2000", 1, 600000, false,
	    "longest reconnect delay"),
	OPT(coral_interconnect_conf, compress_above, SIZE, "4K", 0, 1 << 30, false,
	    "payloads larger than this are compressed with lz4 (0: never)"),
	OPT(coral_interconnect_conf, ping_interval_ms, INT, "1000", 10, 600000, false,
	    "how often the round-trip time to each peer is measured"),
	OPT(coral_interconnect_conf, connect_timeout_ms, INT, "1000", 10, 600000, false,
	    "a connection attempt or hello that takes longer is abandoned"),
};

static const struct coral_opt coral__grd_opts[] = {
	OPT(coral_grd_conf, directory_entries, INT, "16384", 64, 1 << 24, false,
	    "resources whose master-side state this node's directory holds (SGA section grd_dir)"),
	OPT(coral_grd_conf, held_entries, INT, "16384", 64, 1 << 24, false,
	    "resources this node holds, reported to a new master after an eviction (SGA section grd_held)"),
	OPT(coral_grd_conf, max_overrides, INT, "1024", 0, 4096, false,
	    "resource overrides (and, separately, bucket overrides) the map may carry"),
	OPT(coral_grd_conf, affinity, BOOL, "yes", 0, 1, false,
	    "move a resource to the node that uses it most"),
	OPT(coral_grd_conf, affinity_threshold, INT, "100", 1, 1000000000, false,
	    "accesses from one remote node (within the window) before a resource moves to it"),
	OPT(coral_grd_conf, affinity_ratio, INT, "2", 1, 1000, false,
	    "... and that node must have this many times the accesses of any other, the master included"),
	OPT(coral_grd_conf, affinity_window_ms, INT, "10000", 100, 86400000, false,
	    "access counts are halved this often"),
	OPT(coral_grd_conf, affinity_cooldown_ms, INT, "60000", 0, 86400000, false,
	    "a resource moved by affinity stays where it went at least this long"),
	OPT(coral_grd_conf, remaster_bandwidth, SIZE, "32M", 4096, (int64_t)1 << 40, false,
	    "bytes per second of master state a node ships while remastering"),
	OPT(coral_grd_conf, freeze_timeout_ms, INT, "5000", 100, 600000, false,
	    "a move whose new map is not committed by then is abandoned and what it froze is served again"),
	OPT(coral_grd_conf, request_timeout_ms, INT, "5000", 10, 600000, false,
	    "a client request is retried at newer map versions for this long"),
	OPT(coral_grd_conf, max_pending, INT, "1024", 1, 1000000, false,
	    "client requests in flight on a node; more are refused as busy"),
};

static const struct coral_opt coral__cache_opts[] = {
	OPT(coral_cache_conf, buffers, INT, "2048", 16, 1 << 24, false,
	    "block buffers in the SGA (section cache); each is block_size bytes plus a header"),
	OPT(coral_cache_conf, redo_buffer, SIZE, "4M", 65536, (int64_t)1 << 32, false,
	    "bytes of redo buffered in the SGA before the log writer must catch up (section redo)"),
	OPT(coral_cache_conf, redo_segment, SIZE, "64M", 1 << 20, (int64_t)1 << 40, false,
	    "size of one redo segment file of a node's redo thread before the next is started"),
	OPT(coral_cache_conf, gcs_retry_ms, INT, "200", 5, 60000, false,
	    "a cache-fusion message not answered in this long is sent again"),
	OPT(coral_cache_conf, get_timeout_ms, INT, "10000", 10, 600000, false,
	    "a session's request for a block fails with a timeout after this long"),
	OPT(coral_cache_conf, restart_wait_ms, INT, "15000", 0, 600000, false,
	    "a session call that finds the node's lmsd restarting, or the node fenced for a while (a raftd "
	    "restart, a new leader, the node leaving and joining again after an lmsd restart), waits this "
	    "long for it and goes on; past it the call fails and says which and since when (0: fail at once)"),
	OPT(coral_cache_conf, checkpoint_ms, INT, "1000", 10, 3600000, false,
	    "how often lmsd writes dirty buffers back to the data files"),
	OPT(coral_cache_conf, commit_timeout_ms, INT, "10000", 10, 600000, false,
	    "a commit whose redo the log writer has not made durable by then fails"),
	OPT(coral_cache_conf, log_error_ms, INT, "1000", 10, 600000, false,
	    "a commit or log force fails with the log writer's cause (no space, read-only, I/O error) once "
	    "the writer has failed to write the redo thread for this long; the writer keeps trying, so the "
	    "node goes on when the cause goes (a commit failed so may still become durable then)"),
	OPT(coral_cache_conf, cr_direct, BOOL, "yes", 0, 1, false,
	    "sessions read consistent-read copies straight from the node holding the block "
	    "(lmsd listens on base_port+4; off when [tls] is enabled)"),
	OPT(coral_cache_conf, spin_us, INT, "200", 0, 100000, false,
	    "a session waiting for its lmsd spins this long before it sleeps (at most half the "
	    "node's CPUs spin at once; 0: never)"),
	OPT(coral_cache_conf, cr_clones, INT, "256", 0, 65536, false,
	    "consistent images of blocks that open transactions are changing, kept in the SGA (each a "
	    "block): a consistent read of such a block is answered from it at once; with every one in "
	    "use, readers of a block changed meanwhile wait for its transaction's end (0: always)"),
};

static const struct coral_opt coral__supervisor_opts[] = {
	OPT(coral_supervisor_conf, bin_dir, STR, "", 0, S - 1, false,
	    "where the daemon binaries are (empty: next to coral-node, then the build tree)"),
	OPT(coral_supervisor_conf, ready_timeout_ms, INT, "10000", 100, 600000, false,
	    "how long a daemon may take to report ready"),
	OPT(coral_supervisor_conf, stop_grace_ms, INT, "5000", 10, 600000, false,
	    "time between TERM and KILL when stopping a daemon"),
	OPT(coral_supervisor_conf, restart_max, INT, "5", 0, 1000, false,
	    "restarts allowed within restart_window_s before the node is degraded"),
	OPT(coral_supervisor_conf, restart_window_s, INT, "60", 1, 86400, false,
	    "window over which restarts are counted"),
	OPT(coral_supervisor_conf, restart_backoff_ms, INT, "100", 0, 60000, false,
	    "delay before the first restart; doubles with each recent restart"),
	OPT(coral_supervisor_conf, restart_backoff_max_ms, INT, "5000", 0, 600000, false,
	    "longest delay before a restart"),
	OPT(coral_supervisor_conf, hang_timeout_ms, INT, "15000", 0, 3600000, false,
	    "a daemon whose heartbeat is older than this is killed and restarted (0: never)"),
};

static const struct coral_opt coral__recovery_opts[] = {
	OPT(coral_recovery_conf, workers, INT, "2", 1, 64, false,
	    "threads applying redo, by block, in the recovery of a lost node"),
	OPT(coral_recovery_conf, max_memory, SIZE, "1G", 1 << 20, (int64_t)1 << 40, false,
	    "change bytes one recovery holds in memory (past it the recovery fails, loudly)"),
	OPT(coral_recovery_conf, rejoin_wait_ms, INT, "8000", 0, 3600000, false,
	    "a node starting again after its loss waits this long for its thread's recovery"),
	OPT(coral_recovery_conf, peers_wait_ms, INT, "60000", 100, 3600000, false,
	    "the survivor that claimed a lost thread waits this long for the others' part"),
};

static const struct coral_opt coral__ges_opts[] = {
	OPT(coral_ges_conf, max_resources, INT, "65536", 16, 1 << 24, false,
	    "lock resources one node's lmdd masters; a request for a new one past it is refused (tables full)"),
	OPT(coral_ges_conf, max_locks, INT, "262144", 16, 1 << 26, false,
	    "locks on the resources one node masters; a request past it is refused (tables full)"),
	OPT(coral_ges_conf, graph_edges, INT, "65536", 64, 1 << 24, false,
	    "waits the deadlock coordinator keeps in its graph; a master's report past it is not looked at "
	    "(logged, counted)"),
	OPT(coral_ges_conf, probe_ms, INT, "2000", 10, 600000, false,
	    "a deadlock probe not answered by every master in the cycle by then is sent again (if the "
	    "cycle still stands)"),
	OPT(coral_ges_conf, sweep_ms, INT, "100", 10, 60000, false,
	    "the coordinator searches a slice of its graph for cycles this often, so that a deadlock the "
	    "search at each report missed is broken within it"),
	OPT(coral_ges_conf, fast_path, BOOL, "yes", 0, 1, false,
	    "a session grants itself, converts and unlocks a lock on a resource its node masters in the "
	    "SGA, without asking lmdd, while nothing waits on it; no: every call goes to lmdd"),
};

static const struct coral_opt coral__rsrc_opts[] = {
	OPT(coral_rsrc_conf, cgroup, STR, "auto", 2, 15, false,
	    "how rsrcmgrd enforces the plan's CPU shares and caps: v1 (a cgroup per consumer group under the "
	    "cpu controller's hierarchy, each session's thread in its group's), v2 (cpu.weight and cpu.max, "
	    "each session's process in its group's cgroup), auto (v1 where its cpu controller is mounted, "
	    "else v2 where the cpu controller is enabled), off (shares computed and shown, not enforced)"),
	OPT(coral_rsrc_conf, cgroup_root, STR, "", 0, S - 1, false,
	    "the cgroup directory under which rsrcmgrd makes the node's (coral-CLUSTER-nNODE/GROUP); empty: "
	    "/sys/fs/cgroup/cpu for v1, /sys/fs/cgroup or /sys/fs/cgroup/unified for v2"),
	OPT(coral_rsrc_conf, px_servers, INT, "0", 0, 4096, false,
	    "the node's pool of parallel servers that coral_px_request grants from (a statement that "
	    "finds too few free waits its turn); 0: twice the node's CPUs"),
};

static const struct coral_opt coral__metrics_opts[] = {
	OPT(coral_metrics_conf, enabled, BOOL, "yes", 0, 1, false,
	    "coral-node serves the node's Prometheus metrics on base_port+6 (GET /metrics)"),
	OPT(coral_metrics_conf, bind, STR, "", 0, S - 1, false,
	    "the address the metrics port listens on; empty: the node's host"),
	OPT(coral_metrics_conf, token_file, STR, "", 0, S - 1, false,
	    "the token a scrape must carry (Authorization: Bearer TOKEN; Prometheus: authorization "
	    "credentials_file), the first line of a file not readable by others; with [tls] on, the "
	    "client certificate the cluster's CA signed is an identity too"),
	OPT(coral_metrics_conf, open_reads, BOOL, "no", 0, 1, false,
	    "serve the metrics to anyone who asks, without an identity"),
	OPT(coral_metrics_conf, idle_ms, INT, "10000", 100, 3600000, false,
	    "a metrics connection idle this long is closed"),
	OPT(coral_metrics_conf, max_clients, INT, "16", 1, 1024, false,
	    "metrics connections held at once; at the bound the one silent longest is closed if silent 3 s, "
	    "else the port stops accepting until one closes"),
};

static const struct coral_opt coral__replication_opts[] = {
	OPT(coral_replication_conf, role, STR, "primary", 1, 16, false,
	    "primary: this cluster takes writes and ships its redo to the standby named below (if any); "
	    "standby: it receives the redo of primary_cluster on each node's base_port+7; SHARED/role, written "
	    "by a takeover or coralctl standby rejoin, says it instead when it exists"),
	OPT(coral_replication_conf, standby, STR, "", 0, S - 1, false,
	    "as a primary, HOST:PORT of each standby's receiver (a standby node's base_port+7), comma-separated, "
	    "at most 8: every node ships its redo thread to each; empty: no standby (a standby may name one: "
	    "where it ships once a switchover made it the primary)"),
	OPT(coral_replication_conf, primary_cluster, STR, "", 0, S - 1, false,
	    "as a standby, the [cluster] name of the primary whose redo it accepts (a primary may name one: the "
	    "cluster it becomes a standby of after a switchover; its old primary is refused with this "
	    "cluster's epoch)"),
	OPT(coral_replication_conf, token_file, STR, "", 0, S - 1, false,
	    "the secret both sides hold, the first line of a file not readable by others: each side "
	    "proves it holds it (HMAC-SHA256 of the other's challenge), the token itself never crosses "
	    "the network; required when a standby is named or role = standby"),
	OPT(coral_replication_conf, window, SIZE, "4M", 4096, (int64_t)1 << 30, false,
	    "redo bytes sent to the standby and not yet acknowledged durable, at most"),
	OPT(coral_replication_conf, chunk, SIZE, "256K", 512, 4 << 20, false,
	    "redo bytes in one message, at most (lz4-compressed on the way when that shrinks them)"),
	OPT(coral_replication_conf, slot_max_bytes, SIZE, "1G", 1 << 20, (int64_t)1 << 44, false,
	    "redo a primary node keeps for a standby that has not acknowledged it (its slot), at most; "
	    "past it the slot is dropped (logged, counted): the segments are recycled and the standby "
	    "must be seeded again"),
	OPT(coral_replication_conf, reconnect_ms, INT, "500", 10, 600000, false,
	    "a primary node dials the standby again this long after a failed or lost connection"),
	OPT(coral_replication_conf, stall_ms, INT, "2000", 50, 600000, false,
	    "nothing acknowledged this long with redo outstanding: it is sent again from what the standby "
	    "has"),
	OPT(coral_replication_conf, sync, STR, "", 0, S - 1, true,
	    "empty: asynchronous; FIRST k (a, b, c): a commit returns once the first k connected of these "
	    "standbys (their [cluster] names, in priority order) have its redo durable; ANY k (a, b, c): once "
	    "any k have"),
	OPT(coral_replication_conf, sync_fallback_ms, INT, "0", 0, 86400000, true,
	    "0: strict (with fewer than k sync standbys, commits wait: no acknowledged commit is ever missing "
	    "on them); else, after this long short of k (or past the RPO), commits stop waiting (async), "
	    "recorded in the history, until the standbys are back and caught up"),
	OPT(coral_replication_conf, max_lag_bytes, SIZE, "0", 0, (int64_t)1 << 40, true,
	    "the RPO in bytes: commits wait while the best standby lacks more than this of the node's redo "
	    "(flow control; 0: no bound)"),
	OPT(coral_replication_conf, max_lag_ms, INT, "0", 0, 86400000, true,
	    "the RPO in time: commits wait while the oldest redo the best standby lacks is older than this "
	    "(0: no bound)"),
	OPT(coral_replication_conf, open_wait_ms, INT, "10000", 0, 86400000, false,
	    "a primary node starting holds its commits until a standby has answered (and said whether it "
	    "took over: then the node is fenced), at most this long; then it opens without knowing (logged, "
	    "in the history)"),
	OPT(coral_replication_conf, reseed_from, STR, "", 0, S - 1, false,
	    "on a standby, the primary's shared storage as this node sees it (a mount): when the primary says "
	    "the copy needs seeding again (it recycled redo the copy lacks: the slot was dropped), the standby "
	    "seeds itself from there; empty: it says so and waits for coralctl standby seed"),
	OPT(coral_replication_conf, witness_file, STR, "", 0, S - 1, false,
	    "a file both sites see (a third site's mount): a takeover writes its site epoch and cluster there, "
	    "and a primary reads it at its start (it opens at once when it says nothing newer) and every "
	    "second: a newer takeover fences it even when it cannot reach its standby; empty: none"),
};

int coral_sync_spec_parse(const char *s, struct coral_sync_spec *o, char *why, size_t whysz)
{
	memset(o, 0, sizeof(*o));
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0')
		return 0;
	if (strncasecmp(s, "FIRST", 5) == 0 && (s[5] == ' ' || s[5] == '\t')) {
		s += 5;
	} else if (strncasecmp(s, "ANY", 3) == 0 && (s[3] == ' ' || s[3] == '\t')) {
		o->any = true;
		s += 3;
	} else {
		snprintf(why, whysz, "'%s': expected FIRST k (names) or ANY k (names), or nothing for asynchronous", s);
		return CORAL_EINVAL;
	}
	char *end;
	long k = strtol(s, &end, 10);
	if (end == s || k < 1 || k > CORAL_SYNC_MAX) {
		snprintf(why, whysz, "k must be a number from 1 to %d", CORAL_SYNC_MAX);
		return CORAL_EINVAL;
	}
	s = end;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s++ != '(') {
		snprintf(why, whysz, "expected '(' and the standbys' names after k");
		return CORAL_EINVAL;
	}
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_");
		if (n == 0 || n >= sizeof(o->names[0])) {
			snprintf(why, whysz, "a standby's name (its [cluster] name: letters, digits, - and _) expected");
			return CORAL_EINVAL;
		}
		if (o->n == CORAL_SYNC_MAX) {
			snprintf(why, whysz, "at most %d standbys", CORAL_SYNC_MAX);
			return CORAL_EINVAL;
		}
		memcpy(o->names[o->n], s, n);
		o->names[o->n][n] = '\0';
		for (int i = 0; i < o->n; i++)
			if (strcmp(o->names[i], o->names[o->n]) == 0) {
				snprintf(why, whysz, "'%s' is named twice", o->names[i]);
				return CORAL_EINVAL;
			}
		o->n++;
		s += n;
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == ',') {
			s++;
			continue;
		}
		if (*s++ != ')') {
			snprintf(why, whysz, "expected ',' or ')' after a name");
			return CORAL_EINVAL;
		}
		break;
	}
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '\0') {
		snprintf(why, whysz, "'%s' after the list", s);
		return CORAL_EINVAL;
	}
	if (k > o->n) {
		snprintf(why, whysz, "k is %ld but only %d standbys are named", k, o->n);
		return CORAL_EINVAL;
	}
	o->k = (int)k;
	return 0;
}

int coral_standby_list(const char *s, char hosts[][CORAL_STR_MAX], int *ports, int max, char *why, size_t whysz)
{
	char buf[CORAL_STR_MAX];
	coral_strlcpy(buf, s, sizeof(buf));
	int n = 0;
	char *save = NULL;
	for (char *tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		if (n == max) {
			snprintf(why, whysz, "at most %d standbys", max);
			return -1;
		}
		if (!coral_parse_hostport(tok, hosts[n], CORAL_STR_MAX, &ports[n])) {
			snprintf(why, whysz, "'%s' is not HOST:PORT", tok);
			return -1;
		}
		for (int i = 0; i < n; i++)
			if (strcmp(hosts[i], hosts[n]) == 0 && ports[i] == ports[n]) {
				snprintf(why, whysz, "'%s' is named twice", tok);
				return -1;
			}
		n++;
	}
	return n;
}

static const struct coral_opt coral__daemon_opts[] = {
	OPT(coral_daemon_conf, log_level, LOGLEVEL, "info", 0, 4, true,
	    "least severe level logged: debug, info, notice, warning, error"),
	OPT(coral_daemon_conf, heartbeat_ms, INT, "500", 10, 60000, true,
	    "how often the daemon refreshes its heartbeat in the proc table"),
	OPT(coral_daemon_conf, max_clients, INT, "64", 2, 4096, true,
	    "Unix-socket connections served at once, the last kept for an admin; more are refused and told why "
	    "(lmsd serves at least one per session slot, 1024, and a few more)"),
	OPT(coral_daemon_conf, client_idle_ms, INT, "60000", 0, 86400000, true,
	    "a Unix-socket client idle this long is closed (0: never; lmsd's sessions are exempt)"),
	OPT(coral_daemon_conf, out_queue, SIZE, "1M", 4096, 1 << 30, true,
	    "bytes queued to one client before its requests are no longer read"),
};
#undef OPT
#undef S

enum coral__sect_kind {
	SK_CLUSTER, SK_STORAGE, SK_TLS, SK_SUPERVISOR, SK_RAFT, SK_INTERCONNECT, SK_GRD, SK_CACHE, /* one each */
	SK_RECOVERY, SK_GES, SK_METRICS, SK_REPLICATION, SK_RSRC, SK_NODE, SK_DAEMON
};
#define SK_LAST_SINGLE SK_RSRC

struct coral__sect_def {
	const char *name;
	enum coral__sect_kind kind;
	const struct coral_opt *opts;
	size_t nopts;
};

#define SECT(n, k, t) {n, k, t, CORAL_ARRAY_LEN(t)}
static const struct coral__sect_def coral__sections[] = {
	SECT("cluster", SK_CLUSTER, coral__cluster_opts),
	SECT("storage", SK_STORAGE, coral__storage_opts),
	SECT("tls", SK_TLS, coral__tls_opts),
	SECT("supervisor", SK_SUPERVISOR, coral__supervisor_opts),
	SECT("raft", SK_RAFT, coral__raft_opts),
	SECT("interconnect", SK_INTERCONNECT, coral__interconnect_opts),
	SECT("grd", SK_GRD, coral__grd_opts),
	SECT("cache", SK_CACHE, coral__cache_opts),
	SECT("recovery", SK_RECOVERY, coral__recovery_opts),
	SECT("ges", SK_GES, coral__ges_opts),
	SECT("metrics", SK_METRICS, coral__metrics_opts),
	SECT("replication", SK_REPLICATION, coral__replication_opts),
	SECT("rsrc", SK_RSRC, coral__rsrc_opts),
	SECT("node", SK_NODE, coral__node_opts),
	SECT("daemon", SK_DAEMON, coral__daemon_opts),
};
#undef SECT

static const struct coral__sect_def *coral__sect(enum coral__sect_kind k)
{
	return &coral__sections[k];
}

/* Base address and metadata of one section instance. */
static void *coral__sect_base(struct coral_conf *c, enum coral__sect_kind k, int idx,
			      struct coral_sect_meta **meta)
{
	switch (k) {
	case SK_CLUSTER: *meta = &c->cluster_meta; return &c->cluster;
	case SK_STORAGE: *meta = &c->storage_meta; return &c->storage;
	case SK_TLS: *meta = &c->tls_meta; return &c->tls;
	case SK_SUPERVISOR: *meta = &c->supervisor_meta; return &c->supervisor;
	case SK_RAFT: *meta = &c->raft_meta; return &c->raft;
	case SK_INTERCONNECT: *meta = &c->interconnect_meta; return &c->interconnect;
	case SK_GRD: *meta = &c->grd_meta; return &c->grd;
	case SK_CACHE: *meta = &c->cache_meta; return &c->cache;
	case SK_RECOVERY: *meta = &c->recovery_meta; return &c->recovery;
	case SK_GES: *meta = &c->ges_meta; return &c->ges;
	case SK_METRICS: *meta = &c->metrics_meta; return &c->metrics;
	case SK_REPLICATION: *meta = &c->replication_meta; return &c->replication;
	case SK_RSRC: *meta = &c->rsrc_meta; return &c->rsrc;
	case SK_NODE: *meta = &c->nodes[idx].meta; return &c->nodes[idx];
	case SK_DAEMON: *meta = &c->daemon_meta[idx]; return &c->daemon[idx];
	}
	return NULL;
}

static int coral__parse_bool(const char *v, int64_t *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < CORAL_ARRAY_LEN(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) { *out = 1; return 0; }
		if (strcasecmp(v, no[i]) == 0) { *out = 0; return 0; }
	}
	return -1;
}

/* Parses value into the field; on error writes the reason into why. */
static int coral__set_opt(void *base, const struct coral_opt *o, const char *v, char *why,
			  size_t whysz)
{
	char *field = (char *)base + o->off;
	int64_t n = 0;
	switch (o->type) {
	case CORAL_OPT_STR:
	case CORAL_OPT_PATH:
	case CORAL_OPT_HOST: {
		size_t len = strlen(v);
		if (len >= CORAL_STR_MAX) {
			snprintf(why, whysz, "value is longer than %d characters", CORAL_STR_MAX - 1);
			return -1;
		}
		if (o->type == CORAL_OPT_STR && (o->min > 0 || o->max > 0) &&
		    ((int64_t)len < o->min || (int64_t)len > o->max)) {
			snprintf(why, whysz, "length %zu is out of range [%lld, %lld]", len,
				 (long long)o->min, (long long)o->max);
			return -1;
		}
		if (o->type == CORAL_OPT_PATH && v[0] != '/') {
			snprintf(why, whysz, "'%s' is not an absolute path", v);
			return -1;
		}
		if (o->type == CORAL_OPT_HOST && !coral_host_is_valid(v)) {
			snprintf(why, whysz, "'%s' is not an IP address or host name", v);
			return -1;
		}
		memcpy(field, v, len + 1);
		return 0;
	}
	case CORAL_OPT_INT:
		if (!coral_parse_int(v, &n)) {
			snprintf(why, whysz, "'%s' is not an integer", v);
			return -1;
		}
		break;
	case CORAL_OPT_SIZE:
		if (!coral_parse_size(v, &n)) {
			snprintf(why, whysz, "'%s' is not a size (examples: 4096, 64K, 64M, 1G)", v);
			return -1;
		}
		break;
	case CORAL_OPT_BOOL:
		if (coral__parse_bool(v, &n) != 0) {
			snprintf(why, whysz, "'%s' is not yes or no", v);
			return -1;
		}
		break;
	case CORAL_OPT_LOGLEVEL:
		for (n = 0; n < (int64_t)CORAL_ARRAY_LEN(coral__loglevels); n++)
			if (strcasecmp(v, coral__loglevels[n]) == 0)
				break;
		if (n == (int64_t)CORAL_ARRAY_LEN(coral__loglevels)) {
			snprintf(why, whysz, "'%s' is not one of debug, info, notice, warning, error", v);
			return -1;
		}
		break;
	}
	if (n < o->min || n > o->max) {
		snprintf(why, whysz, "%s is out of range [%lld, %lld]", v, (long long)o->min,
			 (long long)o->max);
		return -1;
	}
	memcpy(field, &n, sizeof(n));
	return 0;
}

static void coral__format_opt(const void *base, const struct coral_opt *o, char *buf, size_t bufsz)
{
	const char *field = (const char *)base + o->off;
	int64_t n;
	switch (o->type) {
	case CORAL_OPT_STR:
	case CORAL_OPT_PATH:
	case CORAL_OPT_HOST:
		coral_strlcpy(buf, field, bufsz);
		return;
	default:
		break;
	}
	memcpy(&n, field, sizeof(n));
	switch (o->type) {
	case CORAL_OPT_BOOL: coral_strlcpy(buf, n ? "yes" : "no", bufsz); return;
	case CORAL_OPT_LOGLEVEL: coral_strlcpy(buf, coral_loglevel_name(n), bufsz); return;
	case CORAL_OPT_SIZE: {
		/* print in the unit it was most likely written in: K/M/G when exact */
		static const char suf[] = "GMK";
		for (int i = 0; i < 3; i++) {
			int64_t u = (int64_t)1 << (30 - 10 * i);
			if (n >= u && n % u == 0) {
				snprintf(buf, bufsz, "%lld%c", (long long)(n / u), suf[i]);
				return;
			}
		}
		break;
	}
	default: break;
	}
	snprintf(buf, bufsz, "%lld", (long long)n);
}

/* ---- parsing ---------------------------------------------------------------------- */

struct coral__parse {
	struct coral_conf *conf;
	FILE *f;
	int line;
	bool line_too_long;
	bool failed;
};

static void coral__fail(struct coral__parse *p, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void coral__fail(struct coral__parse *p, int line, const char *fmt, ...)
{
	if (p->failed)
		return; /* keep the first error: later ones are often its echo */
	p->failed = true;
	char msg[CORAL_ERRMSG_MAX - 64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(p->conf->errmsg, sizeof(p->conf->errmsg), "%s:%d: %s", p->conf->path, line, msg);
	else
		snprintf(p->conf->errmsg, sizeof(p->conf->errmsg), "%s: %s", p->conf->path, msg);
}

/* inih calls the reader once per physical line: counting calls gives line numbers, which
 * the system inih's handler does not pass. Long lines are read whole and refused. */
static char *coral__reader(char *str, int num, void *stream)
{
	struct coral__parse *p = stream;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, p->f);
	if (n < 0) {
		free(line);
		return NULL;
	}
	p->line++;
	if (n >= num) {
		if (!p->line_too_long)
			coral__fail(p, p->line, "line is longer than %d characters", num - 2);
		p->line_too_long = true;
		str[0] = '\n';
		str[1] = '\0';
	} else {
		memcpy(str, line, (size_t)n + 1);
	}
	free(line);
	return str;
}

static bool coral__label_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= CORAL_LABEL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '-' || s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return true;
}

static int coral__handler(void *user, const char *section, const char *name, const char *value)
{
	struct coral__parse *p = user;
	struct coral_conf *c = p->conf;
	enum coral__sect_kind kind;
	int idx = 0;

	if (strncmp(section, "node.", 5) == 0) {
		const char *label = section + 5;
		if (!coral__label_ok(label)) {
			coral__fail(p, p->line, "[%s]: node label must be 1-%d letters, digits, - or _",
				    section, CORAL_LABEL_MAX - 1);
			return 0;
		}
		kind = SK_NODE;
		for (idx = 0; idx < c->nnodes; idx++)
			if (strcmp(c->nodes[idx].label, label) == 0)
				break;
		if (idx == c->nnodes) {
			if (c->nnodes == CORAL_MAX_NODES) {
				coral__fail(p, p->line, "[%s]: more than %d nodes", section,
					    CORAL_MAX_NODES);
				return 0;
			}
			c->nnodes++;
			coral_strlcpy(c->nodes[idx].label, label, sizeof(c->nodes[idx].label));
		}
	} else if ((idx = coral_daemon_lookup(section)) >= 0) {
		kind = SK_DAEMON;
	} else {
		idx = 0;
		for (kind = SK_CLUSTER; kind <= SK_LAST_SINGLE; kind++)
			if (strcmp(section, coral__sect(kind)->name) == 0)
				break;
		if (kind > SK_LAST_SINGLE) {
			coral__fail(p, p->line, "[%s]: unknown section (known: cluster, node.LABEL, "
				    "storage, tls, supervisor, raft, interconnect, and one per daemon)", section);
			return 0;
		}
	}

	const struct coral__sect_def *sd = coral__sect(kind);
	struct coral_sect_meta *meta;
	void *base = coral__sect_base(c, kind, idx, &meta);
	size_t i;
	for (i = 0; i < sd->nopts; i++)
		if (strcmp(sd->opts[i].name, name) == 0)
			break;
	if (i == sd->nopts) {
		coral__fail(p, p->line, "[%s] %s: unknown option", section, name);
		return 0;
	}
	if (meta->set & (1ull << i)) {
		coral__fail(p, p->line, "[%s] %s: set twice (first at line %d)", section, name,
			    meta->opt_line[i]);
		return 0;
	}
	char why[256];
	if (coral__set_opt(base, &sd->opts[i], value, why, sizeof(why)) != 0) {
		coral__fail(p, p->line, "[%s] %s: %s", section, name, why);
		return 0;
	}
	meta->set |= 1ull << i;
	meta->opt_line[i] = p->line;
	if (meta->line == 0)
		meta->line = p->line;
	return 1;
}

/* Fills every option the file did not set with its default; a required one is an error. */
static int coral__defaults(struct coral__parse *p, enum coral__sect_kind kind, int idx,
			   const char *secname)
{
	const struct coral__sect_def *sd = coral__sect(kind);
	struct coral_sect_meta *meta;
	void *base = coral__sect_base(p->conf, kind, idx, &meta);
	char why[256];
	for (size_t i = 0; i < sd->nopts; i++) {
		if (meta->set & (1ull << i))
			continue;
		if (sd->opts[i].def == NULL) {
			coral__fail(p, meta->line, "[%s] %s: required option is missing", secname,
				    sd->opts[i].name);
			return -1;
		}
		if (coral__set_opt(base, &sd->opts[i], sd->opts[i].def, why, sizeof(why)) != 0) {
			coral__fail(p, 0, "[%s] %s: bad built-in default: %s", secname,
				    sd->opts[i].name, why);
			return -1;
		}
	}
	return 0;
}

static int coral__node_line(const struct coral_node_conf *n, int opt)
{
	return n->meta.opt_line[opt] ? n->meta.opt_line[opt] : n->meta.line;
}

enum { NODE_ID = 0, NODE_HOST, NODE_BASE_PORT, NODE_RUN_DIR, NODE_SGA_SIZE, NODE_SGA_NAME, NODE_DATA_DIR };

static void coral__validate(struct coral__parse *p)
{
	struct coral_conf *c = p->conf;
	char sec[64];

	for (int k = SK_CLUSTER; k <= SK_LAST_SINGLE && !p->failed; k++)
		coral__defaults(p, (enum coral__sect_kind)k, 0, coral__sect(k)->name);
	for (int d = 0; d < CORAL_NDAEMONS && !p->failed; d++)
		coral__defaults(p, SK_DAEMON, d, coral_daemon_names[d]);
	for (int i = 0; i < c->nnodes && !p->failed; i++) {
		snprintf(sec, sizeof(sec), "node.%s", c->nodes[i].label);
		coral__defaults(p, SK_NODE, i, sec);
	}
	if (p->failed)
		return;
	if (c->nnodes == 0) {
		coral__fail(p, 0, "no [node.LABEL] section: a cluster needs at least one node");
		return;
	}
	if (strspn(c->cluster.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
	    strlen(c->cluster.name)) {
		coral__fail(p, c->cluster_meta.opt_line[0], "[cluster] name: use letters, digits, - and _ only");
		return;
	}
	for (int i = 0; i < c->nnodes; i++) {
		struct coral_node_conf *a = &c->nodes[i];
		if (a->sga_name[0] == '\0')
			snprintf(a->sga_name, sizeof(a->sga_name), "/coral.%s.%lld", c->cluster.name,
				 (long long)a->id);
		else if (a->sga_name[0] != '/' || strchr(a->sga_name + 1, '/') != NULL) {
			coral__fail(p, coral__node_line(a, NODE_SGA_NAME),
				    "[node.%s] sga_name: must be one '/' followed by a name without '/'",
				    a->label);
			return;
		}
		if (a->data_dir[0] == '\0')
			snprintf(a->data_dir, sizeof(a->data_dir), "%s/data", a->run_dir);
		else if (a->data_dir[0] != '/') {
			coral__fail(p, coral__node_line(a, NODE_DATA_DIR),
				    "[node.%s] data_dir: '%s' is not an absolute path", a->label, a->data_dir);
			return;
		}
		char sock[PATH_MAX];
		snprintf(sock, sizeof(sock), "%s/rsrcmgrd.sock", a->run_dir);
		if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
			coral__fail(p, coral__node_line(a, NODE_RUN_DIR),
				    "[node.%s] run_dir: too long for Unix socket paths (at most %zu characters)",
				    a->label, sizeof(((struct sockaddr_un *)0)->sun_path) - 15);
			return;
		}
		for (int j = 0; j < i; j++) {
			struct coral_node_conf *b = &c->nodes[j];
			if (a->id == b->id) {
				coral__fail(p, coral__node_line(a, NODE_ID),
					    "[node.%s] id: duplicate node id %lld (also [node.%s] at line %d)",
					    a->label, (long long)a->id, b->label, coral__node_line(b, NODE_ID));
				return;
			}
			if (strcmp(a->host, b->host) == 0 &&
			    a->base_port < b->base_port + CORAL_PORTS_PER_NODE &&
			    b->base_port < a->base_port + CORAL_PORTS_PER_NODE) {
				coral__fail(p, coral__node_line(a, NODE_BASE_PORT),
					    "[node.%s] base_port: ports %lld-%lld overlap those of [node.%s] "
					    "(%lld-%lld, line %d) on host %s", a->label,
					    (long long)a->base_port, (long long)a->base_port + CORAL_PORTS_PER_NODE - 1,
					    b->label, (long long)b->base_port,
					    (long long)b->base_port + CORAL_PORTS_PER_NODE - 1,
					    coral__node_line(b, NODE_BASE_PORT), a->host);
				return;
			}
			if (strcmp(a->run_dir, b->run_dir) == 0 && strcmp(a->host, b->host) == 0) {
				coral__fail(p, coral__node_line(a, NODE_RUN_DIR),
					    "[node.%s] run_dir: same run directory as [node.%s] on host %s",
					    a->label, b->label, a->host);
				return;
			}
			if (strcmp(a->sga_name, b->sga_name) == 0 && strcmp(a->host, b->host) == 0) {
				coral__fail(p, coral__node_line(a, NODE_SGA_NAME),
					    "[node.%s] sga_name: same SGA name as [node.%s] on host %s",
					    a->label, b->label, a->host);
				return;
			}
		}
	}
	if (c->tls.enabled) {
		const char *files[] = {c->tls.ca_file, c->tls.cert_file, c->tls.key_file};
		const char *names[] = {"ca_file", "cert_file", "key_file"};
		for (int i = 0; i < 3; i++) {
			char one[PATH_MAX];
			/* a name with %n is per node, and only the nodes of this machine have
			 * theirs here: raftd checks its own when it starts */
			if (files[i][0] != '\0' && strchr(files[i], '%') != NULL) {
				if (coral_conf_tls_path(files[i], 1, one, sizeof(one)) != 0) {
					coral__fail(p, c->tls_meta.opt_line[i + 1] ? c->tls_meta.opt_line[i + 1]
										  : c->tls_meta.line,
						    "[tls] %s: '%s': only %%n (node id) and %%%% may follow a %%",
						    names[i], files[i]);
					return;
				}
				continue;
			}
			if (files[i][0] == '\0' || access(files[i], R_OK) != 0) {
				coral__fail(p, c->tls_meta.opt_line[i + 1] ? c->tls_meta.opt_line[i + 1]
									  : c->tls_meta.line,
					    "[tls] %s: TLS is enabled but '%s' is not a readable file",
					    names[i], files[i]);
				return;
			}
		}
	}
	const struct coral_raft_conf *rc = &c->raft;
	if (rc->election_timeout_ms < 3 * rc->tick_ms) {
		coral__fail(p, c->raft_meta.opt_line[1] ? c->raft_meta.opt_line[1] : c->raft_meta.line,
			    "[raft] election_timeout_ms: %lld is less than three "
			    "ticks (tick_ms %lld): elections would start between two heartbeats",
			    (long long)rc->election_timeout_ms, (long long)rc->tick_ms);
		return;
	}
	if (c->interconnect.reconnect_max_ms < c->interconnect.reconnect_min_ms) {
		coral__fail(p, c->interconnect_meta.line,
			    "[interconnect] reconnect_max_ms: less than reconnect_min_ms");
		return;
	}
	uint64_t founders;
	char why[256];
	if (coral_conf_founders(c, &founders, why, sizeof(why)) != 0) {
		coral__fail(p, c->raft_meta.opt_line[18] ? c->raft_meta.opt_line[18] : c->raft_meta.line,
			    "[raft] founders: %s", why);
		return;
	}
	const char *cg = c->rsrc.cgroup;
	if (strcmp(cg, "auto") != 0 && strcmp(cg, "v1") != 0 && strcmp(cg, "v2") != 0 && strcmp(cg, "off") != 0) {
		coral__fail(p, c->rsrc_meta.opt_line[0] ? c->rsrc_meta.opt_line[0] : c->rsrc_meta.line,
			    "[rsrc] cgroup: '%s' is not auto, v1, v2 or off", cg);
		return;
	}
	const struct coral_replication_conf *rp = &c->replication;
	const struct coral_sect_meta *rm = &c->replication_meta;
#define RLINE(i) (rm->opt_line[i] ? rm->opt_line[i] : rm->line)
	bool standby = strcmp(rp->role, "standby") == 0;
	if (!standby && strcmp(rp->role, "primary") != 0) {
		coral__fail(p, RLINE(0), "[replication] role: '%s' is neither primary nor standby", rp->role);
		return;
	}
	if (rp->standby[0] != '\0') {
		static char hosts[CORAL_STANDBY_MAX][CORAL_STR_MAX];
		int ports[CORAL_STANDBY_MAX];
		char why[200];
		if (coral_standby_list(rp->standby, hosts, ports, CORAL_STANDBY_MAX, why, sizeof(why)) < 0) {
			coral__fail(p, RLINE(1), "[replication] standby: %s", why);
			return;
		}
	}
	{
		struct coral_sync_spec spec;
		char why[200];
		if (coral_sync_spec_parse(rp->sync, &spec, why, sizeof(why)) != 0) {
			coral__fail(p, RLINE(9), "[replication] sync: %s", why);
			return;
		}
		if (spec.k > 0 && rp->standby[0] == '\0') {
			coral__fail(p, RLINE(9), "[replication] sync: no standby is named ([replication] standby)");
			return;
		}
		if ((rp->max_lag_bytes > 0 || rp->max_lag_ms > 0) && rp->standby[0] == '\0') {
			coral__fail(p, rp->max_lag_bytes > 0 ? RLINE(11) : RLINE(12),
				    "[replication] max_lag_%s: an RPO needs a standby ([replication] standby)",
				    rp->max_lag_bytes > 0 ? "bytes" : "ms");
			return;
		}
	}
	if (standby && rp->primary_cluster[0] == '\0') {
		coral__fail(p, RLINE(2), "[replication] primary_cluster: a standby must name the primary cluster");
		return;
	}
	if (strcmp(rp->primary_cluster, c->cluster.name) == 0) {
		coral__fail(p, RLINE(2), "[replication] primary_cluster: '%s' is this cluster's own name (a "
			    "standby is a cluster of another name)", rp->primary_cluster);
		return;
	}
	if ((standby || rp->standby[0] != '\0') && rp->token_file[0] == '\0') {
		coral__fail(p, RLINE(3), "[replication] token_file: required to %s (nothing is shipped or "
			    "accepted without an identity)", standby ? "accept a primary's redo" : "ship redo to a standby");
		return;
	}
	if (rp->chunk > rp->window) {
		coral__fail(p, RLINE(5), "[replication] chunk: more than window (%lld)", (long long)rp->window);
		return;
	}
#undef RLINE
	if ((c->storage.block_size & (c->storage.block_size - 1)) != 0) {
		coral__fail(p, c->storage_meta.opt_line[1], "[storage] block_size: %lld is not a power of two",
			    (long long)c->storage.block_size);
		return;
	}
}

int coral_conf_founders(const struct coral_conf *c, uint64_t *mask, char *why, size_t whysz)
{
	*mask = 0;
	if (c->raft.founders[0] == '\0') {
		for (int i = 0; i < c->nnodes; i++)
			*mask |= 1ull << (c->nodes[i].id - 1);
		return 0;
	}
	char buf[CORAL_STR_MAX];
	coral_strlcpy(buf, c->raft.founders, sizeof(buf));
	char *save = NULL;
	for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		int64_t id;
		if (!coral_parse_int(tok, &id) || coral_conf_node_by_id(c, id) == NULL) {
			snprintf(why, whysz, "'%s' is not the id of a node in this file", tok);
			return CORAL_EINVAL;
		}
		*mask |= 1ull << (id - 1);
	}
	if (*mask == 0) {
		snprintf(why, whysz, "no node id given");
		return CORAL_EINVAL;
	}
	return 0;
}

int coral_conf_load(struct coral_conf *conf, const char *path)
{
	memset(conf, 0, sizeof(*conf));
	struct coral__parse p = {.conf = conf};
	if (!coral_strlcpy(conf->path, path, sizeof(conf->path))) {
		snprintf(conf->errmsg, sizeof(conf->errmsg), "%.200s...: path is too long", path);
		return CORAL_ECONFIG;
	}
	p.f = fopen(path, "r");
	if (p.f == NULL) {
		snprintf(conf->errmsg, sizeof(conf->errmsg), "%s: cannot read the file: %s", path,
			 strerror(errno));
		return CORAL_ECONFIG;
	}
	int rc = ini_parse_stream(coral__reader, &p, coral__handler, &p);
	fclose(p.f);
	if (rc > 0 && !p.failed)
		coral__fail(&p, rc, "syntax error: expected [section], name = value, or a # comment");
	else if (rc < 0 && !p.failed)
		coral__fail(&p, 0, "could not parse the file (error %d)", rc);
	if (!p.failed && conf->nnodes == 0 && p.line == 0)
		coral__fail(&p, 0, "the file is empty: a cluster needs [cluster] and at least one [node.LABEL]");
	/* the role a switchover or a rejoin gave the cluster, over the file's */
	char role[16];
	int rr = !p.failed && conf->storage.shared_dir[0] ? coral_role_read(conf->storage.shared_dir, role, sizeof(role))
							   : CORAL_ENOENT;
	if (rr == 0) {
		coral_strlcpy(conf->replication.role, role, sizeof(conf->replication.role));
		conf->replication.role_from_file = true;
	} else if (rr == CORAL_ECORRUPT) {
		coral__fail(&p, 0, "%s/role holds neither primary nor standby (a switchover or coralctl standby rejoin "
			    "writes it): fix or remove it", conf->storage.shared_dir);
	}
	if (!p.failed)
		coral__validate(&p);
	return p.failed ? CORAL_ECONFIG : 0;
}

const char *coral_conf_default_path(void)
{
	const char *e = getenv("CORAL_CONF");
	return e && *e ? e : "/etc/coral/coral.conf";
}

int coral_conf_tls_path(const char *pattern, int64_t node_id, char *out, size_t outsz)
{
	size_t o = 0;
	for (const char *p = pattern; *p; p++) {
		char num[24];
		const char *add = num;
		if (*p != '%') {
			num[0] = *p;
			num[1] = '\0';
		} else if (p[1] == 'n') {
			snprintf(num, sizeof(num), "%lld", (long long)node_id);
			p++;
		} else if (p[1] == '%') {
			add = "%";
			p++;
		} else {
			return -1;
		}
		size_t n = strlen(add);
		if (o + n >= outsz)
			return -1;
		memcpy(out + o, add, n);
		o += n;
	}
	if (outsz == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

const struct coral_node_conf *coral_conf_node_by_id(const struct coral_conf *conf, int64_t id)
{
	for (int i = 0; i < conf->nnodes; i++)
		if (conf->nodes[i].id == id)
			return &conf->nodes[i];
	return NULL;
}

const struct coral_node_conf *coral_conf_node(const struct coral_conf *conf, const char *key)
{
	int64_t id;
	if (coral_parse_int(key, &id)) {
		const struct coral_node_conf *n = coral_conf_node_by_id(conf, id);
		if (n)
			return n;
	}
	for (int i = 0; i < conf->nnodes; i++)
		if (strcmp(conf->nodes[i].label, key) == 0)
			return &conf->nodes[i];
	return NULL;
}

/* ---- walking, printing, reload ---------------------------------------------------- */

static void coral__visit_section(const struct coral_conf *conf, enum coral__sect_kind kind, int idx,
				 const char *secname, coral_conf_visit_fn fn, void *arg)
{
	const struct coral__sect_def *sd = coral__sect(kind);
	struct coral_sect_meta *meta;
	const void *base = coral__sect_base((struct coral_conf *)conf, kind, idx, &meta);
	char val[CORAL_STR_MAX];
	for (size_t i = 0; i < sd->nopts; i++) {
		coral__format_opt(base, &sd->opts[i], val, sizeof(val));
		fn(arg, secname, &sd->opts[i], val, !(meta->set & (1ull << i)));
	}
}

void coral_conf_foreach(const struct coral_conf *conf, coral_conf_visit_fn fn, void *arg)
{
	char sec[64];
	for (int k = SK_CLUSTER; k <= SK_LAST_SINGLE; k++)
		coral__visit_section(conf, (enum coral__sect_kind)k, 0, coral__sect(k)->name, fn, arg);
	for (int i = 0; i < conf->nnodes; i++) {
		snprintf(sec, sizeof(sec), "node.%s", conf->nodes[i].label);
		coral__visit_section(conf, SK_NODE, i, sec, fn, arg);
	}
	for (int d = 0; d < CORAL_NDAEMONS; d++)
		coral__visit_section(conf, SK_DAEMON, d, coral_daemon_names[d], fn, arg);
}

struct coral__print {
	FILE *out;
	char last[64];
};

static void coral__print_one(void *arg, const char *section, const struct coral_opt *opt,
			     const char *value, bool is_default)
{
	struct coral__print *pr = arg;
	if (strcmp(pr->last, section) != 0) {
		fprintf(pr->out, "%s[%s]\n", pr->last[0] ? "\n" : "", section);
		coral_strlcpy(pr->last, section, sizeof(pr->last));
	}
	fprintf(pr->out, "%s =%s%s%s\n", opt->name, *value ? " " : "", value,
		is_default ? "    ; default" : "");
}

void coral_conf_print(const struct coral_conf *conf, FILE *out)
{
	struct coral__print pr = {.out = out};
	fprintf(out, "; effective configuration of %s\n", conf->path);
	coral_conf_foreach(conf, coral__print_one, &pr);
}

static int coral__reload_section(struct coral_conf *cur, const struct coral_conf *next,
				 enum coral__sect_kind kind, int idx, const char *secname,
				 void (*fn)(void *, const char *), void *arg)
{
	const struct coral__sect_def *sd = coral__sect(kind);
	struct coral_sect_meta *m1, *m2;
	char *b1 = coral__sect_base(cur, kind, idx, &m1);
	const char *b2 = coral__sect_base((struct coral_conf *)next, kind, idx, &m2);
	char v1[CORAL_STR_MAX], v2[CORAL_STR_MAX], line[3 * CORAL_STR_MAX];
	int applied = 0;
	for (size_t i = 0; i < sd->nopts; i++) {
		const struct coral_opt *o = &sd->opts[i];
		coral__format_opt(b1, o, v1, sizeof(v1));
		coral__format_opt(b2, o, v2, sizeof(v2));
		if (strcmp(v1, v2) == 0)
			continue;
		if (o->reloadable) {
			size_t sz = (o->type <= CORAL_OPT_HOST) ? CORAL_STR_MAX : sizeof(int64_t);
			memcpy(b1 + o->off, b2 + o->off, sz);
			m1->set = (m1->set & ~(1ull << i)) | (m2->set & (1ull << i));
			applied++;
			snprintf(line, sizeof(line), "[%s] %s: %s -> %s", secname, o->name, v1, v2);
		} else {
			snprintf(line, sizeof(line),
				 "[%s] %s: %s -> %s not applied: not reloadable, restart the daemon",
				 secname, o->name, v1, v2);
		}
		fn(arg, line);
	}
	return applied;
}

int coral_conf_apply_reload(struct coral_conf *cur, const struct coral_conf *next,
			    void (*fn)(void *arg, const char *line), void *arg)
{
	int applied = 0;
	char sec[64];
	for (int k = SK_CLUSTER; k <= SK_LAST_SINGLE; k++)
		applied += coral__reload_section(cur, next, (enum coral__sect_kind)k, 0,
						 coral__sect(k)->name, fn, arg);
	for (int d = 0; d < CORAL_NDAEMONS; d++)
		applied += coral__reload_section(cur, next, SK_DAEMON, d, coral_daemon_names[d], fn, arg);
	/* Nodes are never reloaded: membership changes go through raftd. */
	bool same = cur->nnodes == next->nnodes;
	for (int i = 0; same && i < cur->nnodes; i++) {
		snprintf(sec, sizeof(sec), "node.%s", cur->nodes[i].label);
		same = strcmp(cur->nodes[i].label, next->nodes[i].label) == 0;
		if (same) {
			struct coral_node_conf tmp = cur->nodes[i];
			/* compare through the generic path, then restore: none is reloadable */
			struct coral_conf *c = cur;
			coral__reload_section(c, next, SK_NODE, i, sec, fn, arg);
			cur->nodes[i] = tmp;
		}
	}
	if (!same)
		fn(arg, "[node.*]: the set of nodes changed; not applied: nodes join and leave "
			"through raftd, not by reload");
	return applied;
}

void coral_conf_sock_path(const struct coral_node_conf *node, const char *daemon, char *buf,
			  size_t bufsz)
{
	snprintf(buf, bufsz, "%s/%s.sock", node->run_dir, daemon);
}

void coral_conf_run_path(const struct coral_node_conf *node, const char *file, char *buf,
			 size_t bufsz)
{
	snprintf(buf, bufsz, "%s/%s", node->run_dir, file);
}

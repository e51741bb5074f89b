/* raftd's state, shared by its files: main.c wires the daemon; raftd.c runs consensus (the
 * Raft core, storage through the group-commit thread, the interconnect, heartbeats, phi,
 * leases, eviction, the registry and its publication in the SGA) and takes requests into
 * it; pending.c keeps the table every waiting request lives in; forward.c carries requests
 * from a follower to the leader; api.c serves the control socket and http.c HTTP/JSON;
 * raft_msg.c is the codec. Requests flow one way: api.c and http.c call raftd.c and
 * pending.c; raftd.c and pending.c answer through the functions main.c gives them. */
#ifndef CORAL_RAFTD_H
#define CORAL_RAFTD_H

#include "cluster.h"
#include "daemon.h"
#include "net.h"
#include "phi.h"
#include "raft.h"
#include "registry.h"
#include "raft_msg.h"
#include "raft_store.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct evhttp;
struct evhttp_request;

/* What a waiting request needs to be answered. */
enum req_type { RQ_KV_GET, RQ_KV_LIST, RQ_KV_PUT, RQ_KV_DEL, RQ_MEMBERS, RQ_ADD_NODE,
		RQ_REMOVE_NODE, RQ_TRANSFER, RQ_JOIN, RQ_EVICT, RQ_WATCH };
/* Where a request came from, which says how it is answered (the first three through
 * raftd->answer[]; an internal one, a join or an eviction, is only logged). */
enum origin { OR_CTL, OR_HTTP, OR_FWD, OR_INTERNAL };
struct raftd;
struct pending;
typedef void (*raftd_answer_fn)(struct raftd *r, struct pending *p, int code, const char *error);
enum pstate {
	PS_FREE,
	PS_COMMIT,      /* leader: proposed at (index, term), waiting for it to be applied */
	PS_FORWARDED,   /* sent to the leader, waiting for its answer */
	PS_READINDEX,   /* leader: ReadIndex asked, waiting for the confirmed index */
	PS_APPLY,       /* waiting for applied >= index, then answered from local state */
	PS_WATCH,       /* waiting for a change after index */
	PS_QUEUED,      /* waiting for the I/O thread to free the core (cmd: a write, else a read) */
	PS_NEW,         /* taken, not submitted yet */
};

struct pending {
	uint64_t id;              /* slot | generation << 32 */
	uint8_t state, type, origin;
	uint64_t conn_id, request_id;     /* OR_CTL */
	struct evhttp_request *http;      /* OR_HTTP; NULL once the client has gone */
	uint32_t fwd_node;                /* OR_FWD */
	uint64_t fwd_req;
	uint32_t fwd_to;                  /* PS_FORWARDED: the leader it went to */
	uint64_t deadline_ns;
	uint64_t index, term;
	int code;
	char error[160];
	char key[REG_KEY_MAX];
	bool stale, watch_members;
	uint32_t node;
	uint8_t *cmd;                     /* PS_QUEUED write */
	size_t cmd_len;
};

#define INBOX_MAX 8192   /* messages held while a write is in flight; more are dropped */

struct peerstate {
	struct phi phi;
	uint64_t acked_sent_ns;     /* latest send time of one of our beats this peer answered in our term */
	uint64_t last_answered_ns;  /* leader: when we last answered this peer's beat as leader */
	uint64_t suspect_since_ns;
	uint64_t evict_sent_ns;
	uint64_t last_heard_ns;
};

struct history_event {
	uint64_t at_ns, term, epoch;
	uint32_t node;
	char kind[16];
	char reason[160];
};

struct io_job {
	const struct raft_entry *entries;
	size_t n;
	bool hs;
	struct raft_hard_state hsv;
	const struct raft_snapshot *snap;
	bool log_reset;
	bool sync;
	int rc;
	uint64_t ns;
};

struct coral_http_server;

struct raftd {
	struct coral_daemon *d;
	const struct coral_conf *conf;
	const struct coral_raft_conf *rc;
	uint32_t self;
	uint64_t incarnation;
	uint64_t evicted_inc;        /* the newest incarnation of this node seen evicted (the view's) */
	uint64_t last_bump_ns;
	char data_dir[CORAL_STR_MAX + 16];

	struct raft raft;
	struct raft_store *store;
	struct registry reg;
	struct coral_net *net;
	struct coral_cluster_sga *sga;
	uint64_t rng;

	/* group commit: one job at a time on the I/O thread; the core is not stepped meanwhile */
	pthread_t io_thread;
	pthread_mutex_t io_mu;
	pthread_cond_t io_cv;
	bool io_has_job, io_stop, io_thread_up;
	int io_efd;
	struct event *ev_io;
	bool io_busy;
	struct io_job job;
	struct raft_ready rd;
	uint64_t syncs, entries_synced, sync_ns_total;

	struct raft_msg *inbox;
	size_t in_head, in_count;
	uint64_t inbox_dropped;
	int missed_ticks;
	uint32_t leader_link_lost;   /* for raft_leader_lost() once the core may be stepped */

	struct pending *pend;
	uint32_t *pend_free;            /* free slots, a stack */
	size_t npend, nfree, pend_used, pend_hi, n_queued;
	uint32_t pend_gen;
	uint64_t proposals, refused_busy;

	struct peerstate peers[CORAL_MAX_NODES + 1];
	uint64_t lease_from_ns;     /* follower: send time of the beat the leader last answered */
	uint64_t leader_since_ns;
	uint64_t leader_lease_cache;  /* our lease as leader when last computed */
	uint32_t last_leader;
	enum raft_role last_role;
	bool fenced;
	char fence_reason[128];

	struct history_event *hist;
	size_t hist_start, hist_n;
	uint64_t hist_dropped;

	struct event *ev_tick, *ev_beat;
	struct event *ev_lease;      /* fires when the lease runs out, so fencing is not a tick late */
	struct coral_http_server *http; /* HTTPS with [tls] on: client certificates required */
	char *http_token;            /* [raft] http_token_file's token */
	uint64_t http_refused;       /* HTTP requests refused for want of an identity */
	raftd_answer_fn answer[OR_INTERNAL];
	uint64_t msgs_refused;       /* interconnect messages that did not decode or lied */
	bool join_pending;
	uint64_t join_sent_ns;
	/* a leave a daemon asked for (api.c h_leave): the incarnation that leaves, fenced from
	 * the request, evicted from leave_at_ns */
	uint64_t leave_inc, leave_at_ns, leave_sent_ns, leave_xfer_ns;
	uint64_t rejoin_wait_ns;     /* evicted: since when the join waits for the recovery */
	bool off_ring_said;          /* evicted off grdd's ring: said once (rejoin_allowed) */
	uint64_t evicted_off_ring;   /* the incarnation evicted before it came on grdd's ring (0: none) */
	char leave_reason[160];
};

/* raftd.c: consensus, and the way requests enter it */
int raftd_start(struct raftd *r, struct coral_daemon *d);
void raftd_stop(struct raftd *r);
int raftd_submit_write(struct raftd *r, struct pending *p, const Coral__RegCmd *cmd);
int raftd_submit_read(struct raftd *r, struct pending *p);
int raftd_transfer(struct raftd *r, uint32_t to, char *why, size_t whysz);
int raftd_conf_change(struct raftd *r, enum raft_entry_type type, uint32_t node, char *why,
		      size_t whysz);
/* Operator requests only the leader carries out (forwarded from a follower). */
int raftd_admin(struct raftd *r, struct pending *p, Coral__RaftForwardKind kind, const Coral__RegCmd *cmd);
void raftd_history(struct raftd *r, const char *kind, uint32_t node, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
bool raftd_is_leader(const struct raftd *r);
/* A daemon of this node asked that it leave (see RaftLeaveRequest): fenced now, evicted soon. */
void raftd_leave(struct raftd *r, const char *reason);
const char *raftd_role_of(const struct raftd *r, uint32_t id);

/* pending.c: the table */
int pending_init(struct raftd *r);
void pending_fini(struct raftd *r);     /* answers what still waits: raftd is stopping */
struct pending *pending_new(struct raftd *r, uint8_t type, uint8_t origin, int timeout_ms);
struct pending *pending_find(struct raftd *r, uint64_t id);
/* Answers through the origin's function and frees the slot. */
void pending_answer(struct raftd *r, struct pending *p, int code, const char *error);
void pending_leader_changed(struct raftd *r, uint32_t leader);
void pending_check_applied(struct raftd *r);
void pending_expire(struct raftd *r);
void pending_watch_notify(struct raftd *r);

/* forward.c */
int forward_send(struct raftd *r, struct pending *p, Coral__RaftForwardKind kind, const uint8_t *data, size_t len);
void forward_answer(struct raftd *r, struct pending *p, int code, const char *error);
void forward_recv(struct raftd *r, uint32_t from, const Coral__RaftForward *f);
void forward_recv_answer(struct raftd *r, const Coral__RaftForwardResp *a);

/* api.c: the control socket */
extern const struct coral_daemon_request raftd_requests[];
extern const size_t raftd_nrequests;
void api_answer_ctl(struct raftd *r, struct pending *p, int code, const char *error);
void raftd_status_fill(struct raftd *r, Coral__RaftStatusReply *st, Coral__RaftPeer *peers,
		       Coral__RaftPeer **peerp);
/* A kv operation on a pending request (shared with HTTP); 0, or an error with p->error. */
int api_kv_submit(struct raftd *r, struct pending *p, Coral__KvOp op, const char *key,
		  const uint8_t *value, size_t vlen, bool cas, uint64_t expect_index);

/* http.c */
int http_start(struct raftd *r, char *err, size_t errsz);
void http_stop(struct raftd *r);
void http_answer(struct raftd *r, struct pending *p, int code, const char *error);

#endif

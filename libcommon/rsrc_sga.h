/* The resource manager's SGA section: what rsrcmgrd puts in force on the node and what the
 * node's sessions do under it. rsrcmgrd writes the groups, their limits under the plan in
 * force and the mapping rules; each session (libcoral) maps itself to a group when it opens
 * and enters and leaves its group's active session pool at coral_call_begin/end, here, without
 * asking rsrcmgrd. The rule matching lives here too because both sides run it: a session at
 * its open, rsrcmgrd when the rules change under sessions already open.
 *
 * The pool: a group with a limit admits that many calls at once; the rest queue in the
 * group's FIFO (in order of arrival) and sleep on their own slot's futex until a call ends
 * and admits them, or their queue timeout passes. A group with no limit counts its calls
 * and takes no lock: nothing that does not limit a session costs it a system call. A
 * process that dies in a call, or queued, is taken out by whoever finds it first (rsrcmgrd's
 * sweep, or the session that takes its slot next): the slot's `in_call` is exchanged, so the
 * pool gets its place back exactly once. */
#ifndef CORAL_RSRC_SGA_H
#define CORAL_RSRC_SGA_H

#include "conf.h"
#include "sga.h"
#include "sync.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CORAL_RSRC_NAME 32          /* a group's, a plan's name, with its NUL */
#define CORAL_RSRC_GROUPS 64        /* groups the section knows (system ones included) */
#define CORAL_RSRC_RULES 256
#define CORAL_RSRC_SESSIONS 1024    /* = the cache's session slots: slot i is session slot i */
#define CORAL_RSRC_ATTR 64          /* an attribute's value, with its NUL */

/* What a session says of itself; the attributes a rule matches. */
enum coral_rsrc_attr { CORAL_RSRC_USER, CORAL_RSRC_PROGRAM, CORAL_RSRC_MACHINE, CORAL_RSRC_SERVICE,
		       CORAL_RSRC_MODULE, CORAL_RSRC_NATTR };
const char *coral_rsrc_attr_name(int attr);
int coral_rsrc_attr_parse(const char *name);   /* -1: not an attribute */

/* A mapping rule: attribute `attr` matches `pattern` (exact, or a prefix ending in '*',
 * case-sensitive), within a window of the week (days: bit 0 Sunday .. bit 6 Saturday, 0:
 * every day; from_min..to_min minutes of the day, to_min < from_min wrapping past midnight,
 * both 0: all day); the lowest `priority` wins, then the earlier rule. */
struct coral_rsrc_rule {
	int32_t attr;
	char pattern[CORAL_RSRC_ATTR];
	char group[CORAL_RSRC_NAME];
	int32_t priority;
	uint8_t days;
	uint16_t from_min, to_min;
};

/* The rule that maps a session with attributes v[] (NULL or "": not given), as of a time of
 * the week (day 0-6, Sunday 0; minute 0-1439): its index, or -1 (the session goes to OTHER). */
int coral_rsrc_map(const struct coral_rsrc_rule *rules, size_t n, const char *const v[CORAL_RSRC_NATTR], int day,
		   int minute);

/* A token bucket (I/O limits): rate tokens a second, at most burst kept. */
struct coral_rsrc_bucket {
	double rate, burst, tokens;
	uint64_t at_ns;
	uint64_t waited_ns;          /* how long takers were told to wait, in all */
};
void coral_rsrc_bucket_init(struct coral_rsrc_bucket *b, double rate, double burst, uint64_t now_ns);
/* Takes n tokens at now_ns: 0 if there were enough, else how many ns until there will be
 * (the taker waits that long and tries again; nothing is taken meanwhile). A taking larger
 * than burst is allowed once the bucket is full (it goes below zero), so that nothing waits
 * forever. */
uint64_t coral_rsrc_bucket_take(struct coral_rsrc_bucket *b, double n, uint64_t now_ns);

/* Now as a time of the week in local time: day 0-6 from Sunday, minute of the day. */
void coral_rsrc_time_of_week(int *day, int *minute);

struct coral_rsrc_group {
	char name[CORAL_RSRC_NAME];
	/* the group whose directive governs this one's sessions under the plan in force (itself,
	 * or OTHER's index when the plan names it not) */
	_Atomic uint32_t governs;
	_Atomic uint32_t pool;              /* calls at once on this node; 0: no limit here */
	_Atomic uint32_t cluster_pool;      /* calls at once across the cluster (scope=cluster:
					     * slots taken as lmdd locks by libcoral); 0: none */
	_Atomic uint32_t queue_timeout_ms;  /* 0: a queued call waits as long as it takes */
	_Atomic uint32_t share_ppm;         /* its CPU share under the plan, for the operator */
	pthread_mutex_t mu;                 /* the queue and `active` of a pooled group */
	_Atomic uint32_t active, queued;    /* calls in the group now, and waiting */
	uint32_t qhead, qlen;               /* the FIFO of queued session slots (under mu) */
	uint16_t q[CORAL_RSRC_SESSIONS];
	_Atomic uint32_t sessions;          /* sessions mapped to it */
	_Atomic uint64_t calls, queued_total, timeouts, queue_wait_ns, reaped;
	_Atomic uint32_t active_max;        /* the most at once since the plan came into force */
	/* the limits of its directive rsrcmgrd acted on (rsrcmgrd writes these) */
	_Atomic uint64_t exec_cancels, exec_switches, exec_kills, idle_kills, idle_blocker_kills;
	/* I/O: its limits in force (0: none) and their token buckets (under io_mu), what its
	 * sessions were charged and how long they waited for tokens */
	pthread_mutex_t io_mu;
	struct coral_rsrc_bucket io_req, io_byte;
	_Atomic uint32_t io_iops, io_mbps;
	_Atomic uint64_t io_reqs, io_bytes, io_waits, io_wait_ns;
	_Atomic uint32_t max_dop;           /* parallel servers one of its statements gets (0: any) */
	_Atomic uint64_t px_requests, px_downgraded, px_queued, px_timeouts;
};

struct coral_rsrc_sess {
	_Atomic int32_t pid;                /* 0: free */
	_Atomic int32_t tid;                /* the session's thread (rsrcmgrd puts it in its cgroup) */
	uint64_t start;                     /* coral_pid_start(): a reused pid is not it */
	uint32_t id;                        /* the session's number */
	_Atomic uint32_t group;             /* index + 1 of the group it is mapped to (0: none yet) */
	_Atomic int32_t rule;               /* the rule that mapped it, -1 none, -2 switched by an
					     * operator, -3 by its group's execution-time limit */
	_Atomic uint32_t in_call;           /* 0; else the governing group's index + 1 of its call */
	_Atomic uint32_t admit;             /* futex: 1 once a queued call is admitted */
	_Atomic uint32_t queued_in;         /* index + 1 of the group it queues in (0: none) */
	_Atomic uint64_t since_ns;          /* monotonic: when the call began, queued, or (idle) ended */
	_Atomic uint64_t calls;
	/* the resource manager's limits acted on it (rsrcmgrd writes, the session reads):
	 * cancel_call: the number of the call cancelled (its `calls` then; 0: none); ended: the
	 * session was ended (1: its call ran past its limit, 2: it stayed idle past its limit,
	 * 3: by an operator, coralctl rsrc kill, 4: it stayed idle in another session's way past its
	 * limit); its cache slot is revoked too (bufcache.h) */
	_Atomic uint64_t cancel_call;
	_Atomic uint32_t ended;
	_Atomic uint64_t io_wait_ns;        /* waited for its group's I/O tokens, in all */
	/* parallel servers: held (under the section's px_mu), and the futex of a queued request */
	uint32_t px_held, px_want;
	_Atomic uint32_t px_admit;
	char attrs[CORAL_RSRC_NATTR][CORAL_RSRC_ATTR];
};

struct coral_rsrc {
	struct coral_seq seq;               /* around every write of the tables below */
	pthread_mutex_t wmu;                /* serialises writers (rsrcmgrd, a session's remap) */
	char plan[CORAL_RSRC_NAME];         /* the plan in force ("": none; no limit) */
	_Atomic uint64_t plan_since_ns;     /* wall clock */
	_Atomic uint64_t version;           /* of the catalog in force (raftd's index) */
	uint32_t ngroups, nrules;
	_Atomic int32_t rsrcmgrd_pid;
	/* the node's pool of parallel servers ([rsrc] px_servers) and the statements queued for it,
	 * in order of arrival (a statement waits until the servers it was granted are free) */
	pthread_mutex_t px_mu;
	uint32_t px_total, px_used;
	uint32_t px_qhead, px_qlen;
	uint16_t px_q[CORAL_RSRC_SESSIONS];
	struct coral_rsrc_rule rules[CORAL_RSRC_RULES];
	struct coral_rsrc_group groups[CORAL_RSRC_GROUPS];
	struct coral_rsrc_sess sess[CORAL_RSRC_SESSIONS];
};

size_t coral_rsrc_sga_size(const struct coral_conf *conf);
int coral_rsrc_sga_init(void *section, size_t size, const struct coral_conf *conf, const struct coral_node_conf *node);
void coral_rsrc_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);
struct coral_rsrc *coral_rsrc_sga(const struct coral_sga *sga);
/* Initialises a section in memory (the SGA's, or the heap's for tests): the system groups,
 * no plan. */
void coral_rsrc_init(struct coral_rsrc *r);

/* The group whose directive governs the session at slot (its index), or -1 (no session). */
int coral_rsrc_sess_governing(const struct coral_rsrc *r, int slot);

/* The index of a group by name, or -1. */
int coral_rsrc_group_find(const struct coral_rsrc *r, const char *name);

/* A session takes slot `slot` (the cache's) for its process: what a dead process left there
 * is taken out first. attrs: as coral_rsrc_map's. Then it is mapped. */
void coral_rsrc_sess_open(struct coral_rsrc *r, int slot, uint32_t id, const char *const attrs[CORAL_RSRC_NATTR]);
void coral_rsrc_sess_close(struct coral_rsrc *r, int slot);
/* Maps the session at slot again, as of now (its attributes changed, or the rules): unless
 * an operator switched it (rule -2, which stays). Its call under way, if any, stays where it
 * began. */
void coral_rsrc_sess_map(struct coral_rsrc *r, int slot);
/* Sets one attribute of the session at slot and maps it again. */
void coral_rsrc_sess_set(struct coral_rsrc *r, int slot, int attr, const char *value);
/* A switch of a session to a group, by an operator (rule -2) or by a directive's execution-time
 * limit (rule -3): it stays there until it closes (the rules do not map it again). CORAL_ENOENT:
 * no such group or session. */
int coral_rsrc_sess_switch(struct coral_rsrc *r, int slot, const char *group, int rule);

/* A call of the session at slot begins: at once when its group has room or no limit, else
 * after waiting its turn in the group's queue (the group's queue timeout at most, or
 * timeout_ms if that is shorter and not negative). 0, or CORAL_ETIMEDOUT (not admitted, left
 * the queue), or CORAL_EINVAL (a call already under way, or no session at slot). */
int coral_rsrc_call_begin(struct coral_rsrc *r, int slot, int timeout_ms);
/* When a wait for a place ends: the group's queue timeout, or timeout_ms if that is shorter and
 * not negative (0 for a queue timeout: no bound); UINT64_MAX: no bound. */
uint64_t coral_rsrc_deadline(uint32_t queue_timeout_ms, int timeout_ms, uint64_t now_ns);
/* Ends it: its place goes to the first queued call. CORAL_EINVAL when no call was under way. */
int coral_rsrc_call_end(struct coral_rsrc *r, int slot);
/* Whatever the session at slot holds in its group (a call, a place in the queue) given back,
 * for a session whose process is gone. true if it held something. */
bool coral_rsrc_sess_reap(struct coral_rsrc *r, int slot);
/* Why the session at slot may not go on (0: it may): CORAL_ECANCELED when its call under way
 * was cancelled (past its group's execution-time limit) or the session was ended (past its
 * execution-time or idle limit), with the reason in why. libcoral asks before a session's
 * block gets, changes, commits and lock calls. */
int coral_rsrc_sess_stopped(const struct coral_rsrc *r, int slot, char *why, size_t whysz);

/* Group g's I/O limits put in force (requests and MB a second; 0: none), its buckets full. */
void coral_rsrc_io_limit(struct coral_rsrc *r, uint32_t g, uint32_t iops, uint32_t mbps);
/* Charges the session at slot's governing group with reqs block reads and bytes (of blocks
 * read, or of redo written), waiting for the group's tokens if it has I/O limits (sleeping, a
 * tenth of a second at most at a time): the ns waited. No limit: counted, no wait, no lock. */
uint64_t coral_rsrc_io_charge(struct coral_rsrc *r, int slot, uint32_t reqs, uint64_t bytes);

/* Parallel servers for a statement of the session at slot: at most its governing group's
 * max_dop (and the pool's size), as *granted; when the pool has not that many free, or others
 * queue already, it waits its turn (FIFO) up to its group's queue timeout or timeout_ms if
 * shorter and not negative (CORAL_ETIMEDOUT: none granted). CORAL_EINVAL: dop < 1, or servers
 * held already (coral_rsrc_px_release first). */
int coral_rsrc_px_request(struct coral_rsrc *r, int slot, uint32_t dop, int timeout_ms, uint32_t *granted);
/* Gives the servers back (0 if none were held). */
uint32_t coral_rsrc_px_release(struct coral_rsrc *r, int slot);

/* The node's cgroups (rsrcmgrd(8), CPU) removed where they are empty: coral-node's stop, after
 * an rsrcmgrd killed left them. How many directories went. */
int coral_rsrc_cgroup_cleanup(const struct coral_conf *conf, uint32_t node);

/* Frees the slots of sessions whose process is gone (what they held given back): how many of
 * them held a call or a place in a queue. rsrcmgrd's sweep. */
int coral_rsrc_sweep(struct coral_rsrc *r);
/* Admits queued calls of group g while it has room (after its limit rose, or a plan came in). */
void coral_rsrc_group_admit(struct coral_rsrc *r, uint32_t g);

#endif

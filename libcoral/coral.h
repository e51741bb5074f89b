/* libcoral: the Coral client library for database engines.
 *
 * A session attaches to its node's SGA and talks to the node's lmsd. Blocks of the shared
 * data files are read and written in the node's buffer cache, under the cluster-wide modes of
 * the Global Cache Service (cache fusion): a block wanted in a mode the node already holds is
 * pinned straight from the shared memory, without a system call; anything else is asked of
 * lmsd, which gets the block from another node's cache (2-way or 3-way) or from disk.
 *
 *   struct coral_session *s;
 *   if (coral_session_open("/etc/coral/coral.conf", 1, "app", "bank", &s) != 0) ...
 *   struct coral_block *b;
 *   coral_block_get(s, file, 42, CORAL_MODE_X, &b);       pinned exclusively
 *   const uint8_t *p = coral_block_data(b);               coral_block_payload(s) bytes
 *   coral_block_modify(s, b, 16, &v, sizeof(v));          redo first, then the change
 *   coral_block_release(s, b);                            unpinned; the mode stays cached
 *   coral_commit(s, &scn);                                returns once the redo is durable
 *
 * Every function returns 0 or a negative error code (coral_error_name(), and the session's
 * coral_session_error() says what happened). A session is one thread's: calls on one session
 * must not overlap; open one session per thread. */
#ifndef CORAL_LIBCORAL_H
#define CORAL_LIBCORAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Block modes. S: shared (read); X: exclusive (write); CR: a read-only copy of the current
 * image that takes no mode (it never moves the block away from its holder): at least as new
 * as the moment it was asked for. With [cache] cr_direct (the default; TLS under [tls], the
 * session showing its node's certificate, whose key its process must be able to read) a session
 * that has read a CR copy of a block reads the next ones straight from the node that served
 * it (a request and the block over TCP, into the session's own memory), and goes back to its
 * own lmsd when that node no longer holds the block. */
#define CORAL_MODE_S 1
#define CORAL_MODE_X 2
#define CORAL_MODE_CR 3

/* Error codes a caller acts on (any other: coral_error_name() and coral_session_error()). */
#define CORAL_ERR_INVAL (-999)      /* a bad argument: nothing was done */
#define CORAL_ERR_PERM (-994)       /* e.g. a change to a block not pinned in X */
#define CORAL_ERR_TIMEDOUT (-986)   /* get_timeout_ms or commit_timeout_ms passed */
#define CORAL_ERR_BUSY (-983)       /* lmsd's queue of waiting requests is full: retry */
#define CORAL_ERR_FULL (-982)       /* the session's pins, or the node's sessions */
#define CORAL_ERR_NOTRUNNING (-980) /* the node's lmsd or log writer is not running */
#define CORAL_ERR_FENCED (-974)     /* the node lost its lease or was evicted: see below */
#define CORAL_ERR_CORRUPT (-964)    /* the block on disk fails its checksum */
#define CORAL_ERR_NOENT (-996)      /* no such lock of this session */
#define CORAL_ERR_CANCELED (-966)   /* the request was cancelled */
#define CORAL_ERR_HELD (-965)       /* CORAL_LOCK_NOQUEUE: held in an incompatible mode */
#define CORAL_ERR_DEADLOCK (-959)   /* the wait was chosen to break a deadlock: see below */
#define CORAL_ERR_CLOSED (-984)     /* a subscription to lock events ended (lmdd restarted) */

/* Blocks one session may hold pinned at once. */
#define CORAL_SESSION_MAX_PINS 64

struct coral_session;
struct coral_block;

/* Opens a session on node `node` (its id) of the cluster configured in conf (NULL: $CORAL_CONF
 * or /etc/coral/coral.conf). user and program name the session in logs. On failure *out is
 * still set when memory allowed, so coral_session_error() can say why; close it anyway.
 * A node has room for 1,024 open sessions (beyond, an error whose name is "table full"). If the process dies with
 * blocks pinned, the node's lmsd releases them within about a second; if it dies with a
 * transaction open, smond first takes the transaction back (its blocks wait for that). */
int coral_session_open(const char *conf, int node, const char *user, const char *program,
		       struct coral_session **out);
void coral_session_close(struct coral_session *s);
/* The last error's explanation ("" if none). */
const char *coral_session_error(const struct coral_session *s);
/* A short name for an error code. */
const char *coral_error_name(int code);

/* Block size of the data files, and the bytes of a block a session may use (the rest is the
 * block header: file, block, SCN, checksum). */
size_t coral_block_size(const struct coral_session *s);
size_t coral_block_payload(const struct coral_session *s);

/* Gets block `block` of data file `file` in mode, pinned, waiting as long as [cache]
 * get_timeout_ms allows.
 *
 * While the node is fenced (raftd found no quorum for its lease, or the cluster evicted it,
 * or it has not joined yet, or the lease raftd last renewed has run out because raftd died
 * or hangs), coral_block_get, coral_block_modify and coral_commit fail with
 * CORAL_ERR_FENCED and do nothing: the node serves no block, not even one it holds, and
 * writes neither blocks nor redo to the shared storage, as the majority may be taking its
 * blocks over. A commit that was waiting when the fence came fails with it; its redo becomes
 * durable only if the node is unfenced without having been evicted. If the node was evicted,
 * the other nodes recover what it held (its committed changes from its redo; its open
 * transactions taken back): once it is back, a change or a commit on a block pinned, or in a
 * transaction begun, before the eviction fails with CORAL_ERR_FENCED too (the session rolls
 * back, which the recovery has done already, and starts again); the node's cache of that
 * incarnation is dropped. A session on a node that survives another's loss waits for the
 * blocks being recovered (up to get_timeout_ms, then CORAL_ERR_TIMEDOUT naming the block).
 * A node that has just joined is served no block until grdd has put it on the directory's
 * ring (a session waits for that too, bounded the same way): lost before, it held nothing
 * that would need recovery. A block past the end of its data file is CORAL_ERR_INVAL. */
int coral_block_get(struct coral_session *s, uint32_t file, uint64_t block, int mode,
		    struct coral_block **out);
/* The payload of a pinned block (valid until it is released). */
const void *coral_block_data(const struct coral_block *b);
/* The block's SCN (of its last change). */
uint64_t coral_block_scn(const struct coral_session *s, const struct coral_block *b);
/* Changes len bytes at offset of the payload of a block pinned in X: the change is appended
 * to the node's redo with the bytes it replaces (not yet durable) and then made in the
 * buffer. The first change after a commit opens the session's transaction.
 *
 * Transactions. A block a transaction changed stays pinned in X by its session until the
 * transaction ends (coral_commit, coral_rollback, coral_session_close), even once the caller
 * releases it: no other session, on this node or another, reads or changes it before then
 * (a read in S or CR, or a get in X, waits; a later get of it by the same session returns the
 * same pin). So an uncommitted change is seen by its own session only, and no committed change
 * is ever made on top of one: taking an uncommitted change back (coral_rollback, or instance
 * recovery after a node's loss, which rolls back every transaction without a durable commit
 * record) restores bytes nobody else has changed since, and never takes away another
 * session's committed work. A transaction changes at most CORAL_SESSION_MAX_PINS blocks (the
 * pins a session holds) and 4 MiB of old bytes (then CORAL_ERR_FULL: commit more often).
 * Blocks are taken in an order of the caller's: two sessions that take the same two blocks
 * in opposite orders wait for each other until get_timeout_ms. */
int coral_block_modify(struct coral_session *s, struct coral_block *b, uint32_t offset, const void *bytes,
		       uint32_t len);
/* Unpins the block (a block the open transaction changed: when it ends). The node keeps its
 * mode until another node asks for the block. */
void coral_block_release(struct coral_session *s, struct coral_block *b);

/* On a standby ([replication] role = standby, until it takes over) a session reads the copy
 * of the primary's data files that its apply keeps (replicad(8)): coral_block_get in
 * CORAL_MODE_CR returns a block as of the applied SCN (every transaction the primary committed
 * up to it, none after), file ids as on the primary; S and X fail with CORAL_ERR_PERM, and so
 * does any change. A read while the copy is not a state of the primary's (seeding, or after a
 * crash in the middle of a batch) fails with CORAL_ERR_BUSY: read again. Each block is read
 * at the SCN the apply has reached then; coral_standby_hold keeps the copy at one applied SCN
 * (*applied_scn) for every read until coral_standby_release (the apply waits meanwhile: hold
 * it briefly). CORAL_ERR_INVAL on a cluster that is not a standby. */
int coral_standby_hold(struct coral_session *s, uint64_t *applied_scn);
void coral_standby_release(struct coral_session *s);

/* Writes a commit record and waits until the redo up to it is durable (group commit with
 * every other session of the node). *scn (if not NULL) gets the commit's SCN. Whatever it
 * returns, the transaction is over and its blocks are released; after a failure its outcome
 * is not known (it becomes durable if the log writer writes it later, else recovery takes
 * it back). */
int coral_commit(struct coral_session *s, uint64_t *scn);
/* Takes back every change of the open transaction, newest first (each by a change logged
 * with its own undo), then commits that: the blocks hold what they held before it. 0 if
 * there was nothing to take back. coral_session_close does it for a transaction left open. */
int coral_rollback(struct coral_session *s);

/* ---- Global enqueues (lmdd) --------------------------------------------------------------
 * A named lock (1 to 64 bytes of name) in one of the six modes of a DLM, mastered by one
 * node of the cluster (grdd's map), with a 32-byte value block. Modes (what goes with what):
 * NL with all; CR with all but EX; CW with NL, CR, CW; PR with NL, CR, PR; PW with NL, CR;
 * EX with NL. A request waits, in order behind the ones before it (conversions first), until
 * its mode goes with every granted one, or its timeout passes (CORAL_ERR_TIMEDOUT).
 * A conversion that closes a deadlock with another conversion on the same lock is refused
 * with CORAL_ERR_DEADLOCK and keeps the mode it held (or, with CORAL_LOCK_CONVDEADLK, its
 * granted mode is taken down to NL and it waits). A cycle of waits across locks and nodes
 * is found within milliseconds of closing: the wait of the session of lowest priority
 * (coral_session_set_priority), then the one that costs least to undo (its session holds the
 * least there, then the newest wait) is refused with CORAL_ERR_DEADLOCK, and
 * keeps what it held; the session rolls back and tries again. A lock of a session whose process ends is released; one held by a
 * node that was lost stays until the node's redo has been recovered. The value block is
 * written by a PW or EX holder as it converts down or unlocks (CORAL_LOCK_VALBLK) and read
 * with a grant; it is not valid when a PW or EX holder was lost without writing it.
 * When a node is lost or joins, or an lmdd restarts, the locks are put back at their
 * resources' masters before anything is granted there (lmdd(8), REBUILD and RESTART).
 * A synchronous call on a resource the session's own node masters, while nothing waits on
 * it, is done by the session in shared memory with no system call (lmdd(8), FAST PATH);
 * every other call is a round trip to lmdd (and from there to the master). */
#define CORAL_LOCK_NL 0
#define CORAL_LOCK_CR 1
#define CORAL_LOCK_CW 2
#define CORAL_LOCK_PR 3
#define CORAL_LOCK_PW 4
#define CORAL_LOCK_EX 5
#define CORAL_LOCK_NOQUEUE 0x01      /* not granted at once: CORAL_ERR_HELD */
#define CORAL_LOCK_QUECVT 0x02       /* a conversion waits behind those already waiting */
#define CORAL_LOCK_CONVDEADLK 0x04   /* in a conversion deadlock, go down to NL and wait */
#define CORAL_LOCK_VALBLK 0x08       /* read the value block with the grant, write it down */
#define CORAL_LOCK_EXPEDITE 0x10     /* NL only: granted ahead of what waits */
#define CORAL_LOCK_NODLCKWT 0x20     /* never chosen to break a deadlock: it waits */
#define CORAL_LVB_LEN 32

/* Takes lock name[len] in mode (waiting up to timeout_ms, 0: as long as it takes); *lkid
 * names it from then on. With CORAL_LOCK_VALBLK, lvb (CORAL_LVB_LEN bytes) gets the value
 * block and *lvb_valid whether it is valid (either may be NULL). */
int coral_lock(struct coral_session *s, const void *name, size_t len, int mode, unsigned flags, int timeout_ms,
	       uint64_t *lkid, void *lvb, int *lvb_valid);
/* The session's priority in the choice of a deadlock's victim, for the locks it asks for from
 * now on: -100 (chosen first) to 100 (chosen last), 0 by default. CORAL_ERR_INVAL beyond. */
int coral_session_set_priority(struct coral_session *s, int priority);
/* Blocking notifications: a lock the session holds is in the way of another's request (a
 * DLM's blocking AST), so that the session may give way (convert down, or unlock) when it
 * can. The session subscribes once, on a connection of its own to lmdd, then either polls
 * *fd (readable when an event waits) and takes each with coral_lock_event_next, or has
 * libcoral's own thread call fn for each (coral_lock_on_event; fn must not use the session:
 * it is not for two threads at once). An lmdd restart ends the subscription: the next call
 * says so (CORAL_ERR_CLOSED) and subscribing again gives a new descriptor. */
#define CORAL_LOCK_EVENT_BLOCKING 1
#define CORAL_LOCK_EVENT_DONE 2
struct coral_lock_event {
	int kind;          /* CORAL_LOCK_EVENT_BLOCKING or CORAL_LOCK_EVENT_DONE */
	uint64_t lkid;     /* blocking: the session's lock in the way; done: the lock asked for */
	int mode;          /* blocking: the mode the other asks for; done: the mode now held */
	int code;          /* done: 0 granted, or as coral_lock's (the lock is gone if it was new) */
	unsigned char lvb[CORAL_LVB_LEN];  /* done, with CORAL_LOCK_VALBLK: the value block */
	int lvb_valid;
	int demoted;       /* done: taken down to NL in a conversion deadlock meanwhile */
};
int coral_lock_events(struct coral_session *s, int *fd);
/* 1 with *ev, 0 when none waits, or an error (CORAL_ERR_CLOSED: subscribe again). */
int coral_lock_event_next(struct coral_session *s, struct coral_lock_event *ev);
int coral_lock_on_event(struct coral_session *s, void (*fn)(void *arg, const struct coral_lock_event *ev), void *arg);
/* Asynchronous requests: answered at once with the lock's id (the request is under way); its
 * end comes as a CORAL_LOCK_EVENT_DONE event on the session's subscription (coral_lock_events
 * first, else CORAL_ERR_INVAL). An lmdd restart cancels those under way (as it does the
 * synchronous ones) and ends the subscription. */
int coral_lock_async(struct coral_session *s, const void *name, size_t len, int mode, unsigned flags, int timeout_ms,
		     uint64_t *lkid);
int coral_lock_convert_async(struct coral_session *s, uint64_t lkid, int mode, unsigned flags, int timeout_ms,
			     const void *lvb_write);
/* Converts a held lock to mode. lvb_write (NULL: none), from a PW or EX holder going down
 * with CORAL_LOCK_VALBLK, becomes the value block; lvb_read gets it with the grant. */
int coral_lock_convert(struct coral_session *s, uint64_t lkid, int mode, unsigned flags, int timeout_ms,
		       const void *lvb_write, void *lvb_read, int *lvb_valid);
/* A conversion or unlock whose connection to lmdd broke (lmdd restarted) is asked again as
 * lmdd comes back ([cache] restart_wait_ms at most): it ends as if lmdd had not restarted.
 * Past that bound it fails, and the lock's mode is the one before or the one asked for:
 * convert again (or unlock) before relying on it. */
/* Releases a held lock (lvb_write as for a conversion down). Done when it returns as far as
 * the session is concerned; the master frees the lock a moment later (a remote master's lock:
 * the call returns once the unlock has left the node, before anything the node asks after
 * it), and another node's request waits there until it has. */
int coral_unlock(struct coral_session *s, uint64_t lkid, const void *lvb_write);

/* The resource manager (rsrcmgrd(8)). A session belongs to a consumer group: the mapping rule
 * of highest priority that matches its attributes (user and program as given to
 * coral_session_open, machine: the host's name, service and module: as set below) puts it
 * there when it opens and whenever they or the rules change; OTHER if none matches. The
 * plan in force gives each group its limits. A unit of work (a database call) is bracketed by
 * coral_call_begin and coral_call_end: in a group with an active session pool of N, at most N
 * calls run at once on the node and the others wait in order of arrival, up to the group's
 * queue timeout (then CORAL_ERR_TIMEDOUT: nothing was begun). timeout_ms (negative: the
 * group's alone) shortens the wait. A group with no pool costs the call no system call. A
 * process that dies in a call gives its place back within about a second. */
int coral_session_set_attr(struct coral_session *s, const char *name, const char *value); /* "service", "module" */
/* The name of the session's group now, into buf. */
int coral_session_group(struct coral_session *s, char *buf, size_t len);
int coral_call_begin(struct coral_session *s, int timeout_ms);
int coral_call_end(struct coral_session *s);
/* A call past its group's execution-time limit may be cancelled: its next block get, change or
 * commit fails with CORAL_ERR_CANCELED, and so does coral_call_end (roll back what it changed);
 * or its session ended; or moved to another group. A session idle (in no call) past its
 * group's idle limit is ended, and so is one idle past its idle-blocker limit while another
 * session waits for a lock or a block it holds. An ended session (these, or coralctl rsrc
 * kill) loses what it held: once no call of it is under way, the node takes its open
 * transaction back and releases its blocks and locks, as for a process that died; its every
 * call fails with CORAL_ERR_CANCELED, saying why, until it is closed (a coral_block_data
 * pointer it kept reads a buffer that is no longer its own). Its group's I/O limits pace
 * the blocks it reads that the node did not have and the redo it commits (the get or commit
 * waits for tokens). */
/* Parallel servers for a statement of the session: at most its group's max_dop and the node's
 * pool ([rsrc] px_servers), in *granted; when the pool has too few free it waits its turn, in
 * order of arrival, up to the group's queue timeout or timeout_ms if shorter (negative: the
 * group's alone): then CORAL_ERR_TIMEDOUT and none granted. coral_px_release gives them back
 * (before the next request; closing the session does too). */
int coral_px_request(struct coral_session *s, int dop, int timeout_ms, int *granted);
int coral_px_release(struct coral_session *s);

struct coral_session_stats {
	uint64_t gets, local_hits, remote_gets, pin_waits, modifies, commits;
	uint64_t cr_direct;          /* CR copies read straight from the holder's lmsd */
	uint64_t cr_direct_missed;   /* ... tried there, then taken the full path */
	uint64_t commit_wait_us;
};
void coral_session_stats(const struct coral_session *s, struct coral_session_stats *out);

#ifdef __cplusplus
}
#endif

#endif

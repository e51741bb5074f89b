/* libcoral: sessions, blocks and commits (see coral.h). The fast path is the SGA's buffer
 * cache under its chain latch (an uncontended robust mutex: no system call); the slow path is
 * one request to the node's lmsd over a Unix socket the session keeps open. A consistent-read
 * copy of a block another node holds is read straight from that node's lmsd once the session
 * knows the holder ([cache] cr_direct): a request and the block, into the session's own
 * memory. Redo goes into the SGA's redo buffer; a commit waits on its futex for replicad's
 * group commit. */
#include "coral.h"

#include "bufcache.h"
#include "cluster.h"
#include "conf.h"
#include "copy.h"
#include "ctl.h"
#include "errors.h"
#include "frame.h"
#include "ges_own.h"
#include "net.h"
#include "grd.h"
#include "redo.h"
#include "rsrc_sga.h"
#include "sga.h"
#include "storage.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define CR_HINTS 4096             /* blocks whose holder the session remembers (direct-mapped) */

struct coral_block {
	bool used;
	bool cr;
	bool own;                 /* a CR copy read straight from its holder: in `copy`, no pin */
	uint8_t pinned;           /* 1 shared, 2 exclusive */
	uint64_t scn;             /* own: the image's SCN */
	uint8_t *copy;            /* own: the answer's memory (block_size + CR_ARENA_EXTRA),
				   * kept for the slot's next use */
	uint32_t buf;
	uint32_t file;
	uint64_t block;
	const void *payload;
	bool changed;             /* changed by the open transaction: pinned until it ends */
	bool held;                /* ... and released by the caller: the pin waits for the commit */
	uint64_t since;           /* the cache's incarnation when it was pinned (void if evicted) */
};

/* The open transaction's undo, in the session's memory: each change's old bytes, in order, so
 * that coral_rollback can take them back (the redo records carry them too, for recovery). */
struct undo_ent {
	uint32_t pin, offset, len;
	uint64_t at;              /* in undo_bytes */
};
#define TXN_MAX_UNDO (4u << 20)  /* bytes of old images a transaction may hold */

struct coral_session {
	struct coral_conf conf;
	/* the resource manager ended the session and its slot was revoked: what it held locally
	 * (pins, the transaction) was forgotten, as the node reclaims it (enter()) */
	bool revoked;
	const struct coral_node_conf *node;
	struct coral_sga sga;
	bool attached;
	struct coral_cache *cache;
	struct coral_redo *redo;
	struct coral_cluster_sga *cl;
	/* the fast path of locks this node masters (lmdd(8), FAST PATH): NULL when off */
	struct coral_ges_own *ges;
	const struct coral_grd_map_sga *map;
	int fd;                   /* to lmsd */
	char sock[CORAL_STR_MAX + 32];
	int lmdd_fd;              /* to lmdd, kept from the first lock call on (-1: none yet) */
	int prio;                 /* for the choice of deadlock victims (coral_session_set_priority) */
	/* lock calls whose connection to lmdd broke before their answer came (lmdd restarted):
	 * granted or not, they are let go at lmdd (op abandon) before the next lock call */
	uint64_t lock_tag;
	uint64_t abandon[16];
	uint32_t nabandon;
	bool lmdd_broke;          /* the last ask_lmdd failed on its connection, not by an answer */
	bool lmdd_unsent;         /* ... before its request was written (no connection) */
	/* the lock whose last unlock's connection broke before the answer (0: none): lmdd may have
	 * let it go and died before answering, so a retry answered "no such lock" is that unlock done */
	uint64_t unlock_broke;
	/* the subscription to its locks' events (coral_lock_events): the connection, what was
	 * read of it and not yet taken, and coral_lock_on_event's thread */
	int ev_fd;
	uint8_t *ev_buf;
	size_t ev_len, ev_cap;
	pthread_t ev_thread;
	bool ev_threaded;
	_Atomic bool ev_stop;
	void (*ev_fn)(void *arg, const struct coral_lock_event *ev);
	void *ev_arg;
	char lmdd_sock[CORAL_STR_MAX + 32];
	uint32_t id;
	char user[64], program[64];
	struct coral_block pins[CORAL_SESSION_MAX_PINS];
	bool cr_direct;
	uint32_t max_spinners;                   /* half the node's CPUs, at least one */
	int cr_fd[CORAL_MAX_NODES + 1];          /* to each node's lmsd CR port, -1: none */
	SSL_CTX *tls;                            /* [tls] on: the node's certificate for the CR ports */
	SSL *cr_ssl[CORAL_MAX_NODES + 1];        /* ... and each connection's session */
	uint64_t cr_down_until[CORAL_MAX_NODES + 1]; /* a node that refused a connection: not before */
	struct cr_hint { uint32_t file, node; uint64_t block; } *hints;
	struct coral_frame_rd rd;                /* every call's request and answer, one at a time */
	int slot;                                /* the session's slot in the SGA (its pins), -1 none */
	bool txn;                                /* a transaction is open (it has changed something) */
	uint64_t txn_since;                      /* the cache's incarnation when it began */
	struct undo_ent *undo;
	uint32_t nundo, capundo;
	uint8_t *undo_bytes;
	size_t undo_used, undo_cap;
	struct coral_session_stats st;
	struct standby_copy *copy;               /* on a standby: its copy of the primary, read */
	struct coral_rsrc *rsrc;                 /* the resource manager's section (its group, calls) */
	uint64_t txn_redo_bytes;                 /* the open transaction's change records' bytes */
	uint64_t pool_lkid;                      /* its call's slot of a cluster-wide pool (lmdd lock) */
	char errmsg[CORAL_ERRMSG_MAX];
};

/* A standby's copy of its primary's data files, as its sessions read it (copy.h). */
struct standby_copy {
	struct coral_conf conf;                  /* the copy's: the primary's name, its directory */
	struct coral_ctlfile cf;
	int fds[CORAL_MAX_DATAFILES + 1];        /* by file id, -1: not open */
	int lock_fd;                             /* apply.lock: shared while a block is read */
	bool held;                               /* ... and from coral_standby_hold to its release */
};

static void copy_close(struct coral_session *s);

/* A switchover closed the node's thread (replicad; coral_redo_close). */
#define SWITCHING_MSG                                                                                                  \
	"a switchover to the standby is under way: this cluster takes no change and no commit (coralctl standby "      \
	"status); once the standby has taken over, its sessions take them"

static void cr_drop_conn(struct coral_session *s, uint32_t node)
{
	SSL_free(s->cr_ssl[node]);
	s->cr_ssl[node] = NULL;
	close(s->cr_fd[node]);
	s->cr_fd[node] = -1;
}

/* A connection of the session blocks in recv() for its answers (ctl.h: coral_ctl_call_rd),
 * waking at most every RECV_SLICE_MS to look at the call's deadline. */
#define RECV_SLICE_MS 20

/* A connection to a daemon of the node, blocking in recv() for its answers. */
static int sock_connect(struct coral_session *s, const char *sock, int *fd)
{
	int rc = coral_ctl_connect(sock, fd, s->errmsg, sizeof(s->errmsg));
	if (rc == 0 && coral_sock_blocking(*fd, RECV_SLICE_MS) != 0) {
		close(*fd);
		*fd = -1;
		snprintf(s->errmsg, sizeof(s->errmsg), "socket options on %s: %s", sock, strerror(errno));
		rc = CORAL_ESYS;
	}
	return rc;
}

static int lmsd_connect(struct coral_session *s) { return sock_connect(s, s->sock, &s->fd); }

/* A daemon's answer takes tens of microseconds: the session spins for it instead of sleeping,
 * so that no wake-up is added to it, if few enough other sessions of the node spin already
 * (their CPUs are the daemons' too). Marked in the session's slot, so that lmsd gives the
 * count back if this process dies spinning. Returns whether it spins (for spin_end). */
static bool spin_begin(struct coral_session *s)
{
	if (s->cache == NULL || s->slot < 0 || s->conf.cache.spin_us <= 0)
		return false;
	bool spin = atomic_fetch_add(&s->cache->spinners, 1) < s->max_spinners;
	if (!spin) {
		atomic_fetch_sub(&s->cache->spinners, 1);
		return false;
	}
	atomic_store(&coral_cache_sess(s->cache, (uint32_t)s->slot)->spinning, 1);
	coral_frame_spin((uint64_t)s->conf.cache.spin_us * 1000);
	return true;
}

static void spin_end(struct coral_session *s, bool spin)
{
	coral_frame_spin(0);
	if (spin && atomic_exchange(&coral_cache_sess(s->cache, (uint32_t)s->slot)->spinning, 0))
		atomic_fetch_sub(&s->cache->spinners, 1);
}

static int fail(struct coral_session *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* CORAL_ECANCELED (explained) when the resource manager cancelled the session's call or ended
 * the session (rsrcmgrd(8), LIMITS), else 0. */
static int call_stopped(struct coral_session *s);
static int fail(struct coral_session *s, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

/* Every call that touches the session's slot (its pins, its transaction, its locks) enters
 * and leaves: counted as under way, the node reclaims nothing of it meanwhile; once the
 * resource manager has ended the session and revoked its slot (rsrcmgrd(8), LIMITS), the
 * node takes its transaction back and releases its pins and locks as for a dead process,
 * and each call fails here, having forgotten what the session held. */
static int enter(struct coral_session *s)
{
	if (s->revoked)
		return fail(s, CORAL_ECANCELED, "the resource manager ended this session: its transaction was taken back and "
			    "its blocks and locks released (rsrcmgrd(8), LIMITS): close it");
	if (s->cache == NULL || s->slot < 0 || coral_cache_sess_enter(s->cache, s->slot) == 0)
		return 0;
	s->revoked = true;
	for (int i = 0; i < CORAL_SESSION_MAX_PINS; i++)
		s->pins[i].used = s->pins[i].changed = s->pins[i].held = false;
	s->txn = false;
	s->nundo = 0;
	s->undo_used = 0;
	s->txn_redo_bytes = 0;
	s->pool_lkid = 0;
	char why[256] = "";
	if (s->rsrc)
		coral_rsrc_sess_stopped(s->rsrc, s->slot, why, sizeof(why));
	size_t n = strlen(why), tail = strlen(": close it");
	if (n > tail && strcmp(why + n - tail, ": close it") == 0)
		why[n - tail] = '\0'; /* said once, at the end */
	return fail(s, CORAL_ECANCELED, "%s%sits transaction was taken back and its blocks and locks released: close it",
		    why, why[0] ? "; " : "the resource manager ended this session: ");
}

static void leave(struct coral_session *s)
{
	if (s->cache && s->slot >= 0)
		coral_cache_sess_leave(s->cache, s->slot);
}

/* coral.h's codes are errors.h's */
_Static_assert(CORAL_ERR_INVAL == CORAL_EINVAL && CORAL_ERR_PERM == CORAL_EPERM &&
		       CORAL_ERR_TIMEDOUT == CORAL_ETIMEDOUT && CORAL_ERR_BUSY == CORAL_EBUSY &&
		       CORAL_ERR_FULL == CORAL_EFULL && CORAL_ERR_NOTRUNNING == CORAL_ENOTRUNNING &&
		       CORAL_ERR_FENCED == CORAL_EFENCED && CORAL_ERR_CORRUPT == CORAL_ECORRUPT &&
		       CORAL_ERR_NOENT == CORAL_ENOENT && CORAL_ERR_CANCELED == CORAL_ECANCELED &&
		       CORAL_ERR_HELD == CORAL_EHELD && CORAL_ERR_DEADLOCK == CORAL_EDEADLK &&
		       CORAL_ERR_CLOSED == CORAL_ECLOSED,
	       "coral.h's error codes differ from errors.h's");

/* Whether an image pinned, or a transaction begun, at cache incarnation `since` was made void
 * by an eviction of the node since: the other nodes have recovered its blocks (taking back
 * what had not committed); a change or a commit on it now would be lost. */
static int evicted_since(struct coral_session *s, uint64_t since, const char *what)
{
	uint64_t ev = coral_cluster_evicted_inc(s->cl);
	if (since == 0 || ev < since)
		return 0;
	return fail(s, CORAL_EFENCED,
		    "node %lld was evicted (incarnation %llu) after %s: the other nodes recovered its blocks and "
		    "took back what had not committed; roll back, and start again",
		    (long long)s->node->id, (unsigned long long)ev, what);
}

static void nap_ms(long ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

/* A fence that lasts a moment is waited through ([cache] restart_wait_ms): a raftd restart,
 * a new leader, the node leaving and joining again after its lmsd died. What an eviction
 * made void meanwhile (the transaction, a block pinned at `since`) fails at once. */
static int wait_unfenced(struct coral_session *s, uint64_t since)
{
	if (!coral_cluster_fenced(s->cl))
		return 0;
	uint64_t t0 = coral_now_mono_ns(), bound = (uint64_t)s->conf.cache.restart_wait_ms * 1000000ull;
	for (;;) {
		if (evicted_since(s, since, "this block was taken") ||
		    (s->txn && evicted_since(s, s->txn_since, "this transaction began")))
			return CORAL_EFENCED;
		if (!coral_cluster_fenced(s->cl))
			return 0;
		uint64_t waited = coral_now_mono_ns() - t0;
		if (waited >= bound) {
			char why[192];
			coral_cluster_fence_reason(s->cl, why, sizeof(why));
			return fail(s, CORAL_EFENCED,
				    "node %lld is fenced (%s), still after %llu ms ([cache] restart_wait_ms): no blocks, "
				    "changes or commits until it is unfenced",
				    (long long)s->node->id, why, (unsigned long long)(waited / 1000000ull));
		}
		nap_ms(5);
	}
}

/* The node's lmsd, connected to: waited for while nothing listens (the supervisor restarts
 * it within a second) up to [cache] restart_wait_ms, then an error that says so. */
static int wait_lmsd(struct coral_session *s)
{
	if (s->fd >= 0)
		return 0;
	uint64_t t0 = coral_now_mono_ns(), bound = (uint64_t)s->conf.cache.restart_wait_ms * 1000000ull;
	while (lmsd_connect(s) != 0) {
		uint64_t waited = coral_now_mono_ns() - t0;
		if (waited >= bound) {
			char err[sizeof(s->errmsg)];
			snprintf(err, sizeof(err), "%s", s->errmsg);
			return fail(s, CORAL_ENOTRUNNING,
				    "%s, still after %llu ms ([cache] restart_wait_ms): is lmsd running on node %lld? "
				    "(coralctl status)", err, (unsigned long long)(waited / 1000000ull), (long long)s->node->id);
		}
		nap_ms(10);
	}
	return 0;
}

const char *coral_error_name(int code) { return coral_strerror(code); }
const char *coral_session_error(const struct coral_session *s) { return s ? s->errmsg : "no session"; }

int coral_session_open(const char *conf, int node, const char *user, const char *program,
		       struct coral_session **out)
{
	*out = NULL;
	struct coral_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CORAL_ENOMEM;
	*out = s;
	s->fd = -1;
	s->lmdd_fd = -1;
	s->ev_fd = -1;
	s->slot = -1;
	for (int i = 0; i <= CORAL_MAX_NODES; i++)
		s->cr_fd[i] = -1;
	snprintf(s->user, sizeof(s->user), "%s", user ? user : "");
	snprintf(s->program, sizeof(s->program), "%s", program ? program : "");
	int rc = coral_conf_load(&s->conf, conf ? conf : coral_conf_default_path());
	if (rc != 0)
		return fail(s, rc, "%s", s->conf.errmsg);
	s->node = coral_conf_node_by_id(&s->conf, node);
	if (s->node == NULL)
		return fail(s, CORAL_ENOENT, "node %d is not in %s", node, s->conf.path);
	rc = coral_sga_attach(&s->sga, &s->conf, s->node, false);
	if (rc != 0)
		return fail(s, rc, "%s", s->sga.errmsg);
	s->attached = true;
	s->cache = coral_cache_sga(&s->sga);
	s->redo = coral_redo_sga(&s->sga);
	s->cl = coral_cluster_sga(&s->sga);
	if (s->cache == NULL || s->redo == NULL || s->cl == NULL)
		return fail(s, CORAL_EVERSION, "the SGA of node %d has no cache, redo or cluster section: restart the node", node);
	s->cr_direct = s->conf.cache.cr_direct;
	if (s->cr_direct && s->conf.tls.enabled) {
		/* the CR ports are TLS: this node's certificate and key, as its daemons use them;
		 * a process that cannot read the key takes the full path for every CR read */
		char err[256];
		s->tls = coral_tls_ctx_from_conf(&s->conf, s->node, err, sizeof(err));
		s->cr_direct = s->tls != NULL;
	}
	if (s->conf.ges.fast_path) {
		s->ges = coral_ges_own_sga(&s->sga);
		s->map = coral_grd_map_sga(&s->sga);
		if (s->map == NULL)
			s->ges = NULL;
	}
	/* Spinners: half the node's share of the machine's CPUs (divided among this file's nodes
	 * on the same host), none under two. A spinner on a CPU its answer's lmsd needs only
	 * delays it: three nodes on two CPUs did 12-36% more bank transfers without spinning. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int here = 0;
	bool first = true;  /* the lowest id of the nodes on this host */
	for (int i = 0; i < s->conf.nnodes; i++)
		if (strcmp(s->conf.nodes[i].host, s->node->host) == 0) {
			here++;
			first &= s->conf.nodes[i].id >= s->node->id;
		}
	long share = cpus / (here > 0 ? here : 1);
	/* under two CPUs each, the machine's one spinner is the first node's */
	s->max_spinners = share >= 2 ? (uint32_t)(share / 2) : first && cpus >= 2 ? 1 : 0;
	if (s->cr_direct && (s->hints = calloc(CR_HINTS, sizeof(*s->hints))) == NULL)
		return CORAL_ENOMEM;
	coral_conf_sock_path(s->node, "lmsd", s->sock, sizeof(s->sock));
	rc = lmsd_connect(s);
	if (rc != 0)
		return rc;
	/* a session number for redo records: unique among the node's live processes and
	 * sessions of one process */
	static _Atomic uint32_t counter;
	s->id = ((uint32_t)getpid() << 8) ^ (atomic_fetch_add(&counter, 1) & 0xff);
	/* where its pins are recorded, for lmsd to release them if this process dies */
	s->slot = coral_cache_sess_claim(s->cache, s->id);
	if (s->slot < 0)
		return fail(s, CORAL_EFULL,
			    "node %d has %d sessions open already (those of processes that died are freed by lmsd "
			    "within a second)",
			    node, CORAL_CACHE_SESSIONS);
	/* its consumer group, by the rules rsrcmgrd put in force (rsrcmgrd(8)) */
	s->rsrc = coral_rsrc_sga(&s->sga);
	if (s->rsrc) {
		char host[CORAL_RSRC_ATTR] = "";
		gethostname(host, sizeof(host) - 1);
		const char *attrs[CORAL_RSRC_NATTR] = {[CORAL_RSRC_USER] = s->user, [CORAL_RSRC_PROGRAM] = s->program,
						       [CORAL_RSRC_MACHINE] = host};
		coral_rsrc_sess_open(s->rsrc, s->slot, s->id, attrs);
	}
	return 0;
}

void coral_session_close(struct coral_session *s)
{
	if (s == NULL)
		return;
	if (enter(s) == 0) {
		/* an open transaction is taken back: nobody else has seen its changes */
		if (s->txn)
			coral_rollback(s);
		/* a call's slot of a cluster-wide pool goes back at once, not when lmdd sees the
		 * session gone */
		if (s->pool_lkid) {
			coral_unlock(s, s->pool_lkid, NULL);
			s->pool_lkid = 0;
		}
		for (int i = 0; i < CORAL_SESSION_MAX_PINS; i++)
			if (s->pins[i].used) {
				s->pins[i].changed = false;
				coral_block_release(s, &s->pins[i]);
			}
		leave(s);
	}  /* (revoked: what it held is the node's to reclaim, and is forgotten here) */
	free(s->undo);
	free(s->undo_bytes);
	if (s->fd >= 0)
		close(s->fd);
	if (s->lmdd_fd >= 0)
		close(s->lmdd_fd);
	if (s->ev_threaded) {
		atomic_store(&s->ev_stop, true);
		pthread_join(s->ev_thread, NULL);
	}
	if (s->ev_fd >= 0)
		close(s->ev_fd);
	free(s->ev_buf);
	for (int i = 0; i <= CORAL_MAX_NODES; i++)
		if (s->cr_fd[i] >= 0)
			cr_drop_conn(s, (uint32_t)i);
	SSL_CTX_free(s->tls);
	for (int i = 0; i < CORAL_SESSION_MAX_PINS; i++)
		free(s->pins[i].copy);
	copy_close(s);
	if (s->rsrc)
		coral_rsrc_sess_close(s->rsrc, s->slot);
	if (s->cache)
		coral_cache_sess_free(s->cache, s->slot);
	free(s->hints);
	coral_frame_rd_free(&s->rd);
	if (s->attached)
		coral_sga_detach(&s->sga);
	free(s);
}

size_t coral_block_size(const struct coral_session *s) { return s->cache ? s->cache->block_size : 0; }
size_t coral_block_payload(const struct coral_session *s)
{
	return s->cache ? s->cache->block_size - CORAL_BLOCK_HDR : 0;
}

_Static_assert(CORAL_SESSION_MAX_PINS == CORAL_CACHE_SLOT_PINS, "a session slot records every pin");

/* The session's first free handle, or NULL when it holds CORAL_SESSION_MAX_PINS blocks
 * (a session holds a few: the scan ends early) */
static struct coral_block *free_slot(struct coral_session *s)
{
	for (int i = 0; i < CORAL_SESSION_MAX_PINS; i++)
		if (!s->pins[i].used)
			return &s->pins[i];
	return NULL;
}

static struct coral_block *handle(struct coral_session *s, struct coral_block *h, uint32_t buf, int pinned,
				  uint32_t file, uint64_t block)
{
	h->used = true;
	h->own = false;
	h->changed = false;
	h->held = false;
	h->since = atomic_load(&s->cache->since_inc);
	h->buf = buf;
	h->pinned = (uint8_t)pinned;
	h->file = file;
	h->block = block;
	h->cr = (coral_cache_buf(s->cache, buf)->flags & CORAL_BUFF_CR) != 0;
	h->payload = coral_cache_data(s->cache, buf) + CORAL_BLOCK_HDR;
	return h;
}

/* lmsd died after it had pinned a buffer for this handle and recorded the pin in the
 * session's slot, before its answer was sent: the pin is this session's and nobody else
 * will drop it, so it is dropped here before the request is asked again. Left, the buffer
 * would stay pinned for the session's life, and the block with it: no transfer takes a
 * pinned image (after the node's eviction, the image the block gets again goes into that
 * very buffer). */
static void drop_orphan_pin(struct coral_session *s, int pin)
{
	_Atomic uint32_t *rec = &coral_cache_sess(s->cache, (uint32_t)s->slot)->pins[pin];
	uint32_t v = atomic_load(rec);
	if (v == 0)
		return;
	uint32_t buf = (v & ~CORAL_PINREC_X) - 1;
	if (buf < s->cache->nbuf)
		coral_cache_unpin_if(s->cache, coral_cache_buf(s->cache, buf), rec, v);
	else
		atomic_store(rec, 0);
}

/* A direct CR answer is decoded into the pin slot's own memory: the block's bytes are copied
 * once, from the receive buffer to where the session reads them, with no malloc. Room for
 * the answer's small parts besides the block: */
#define CR_ARENA_EXTRA 2048

/* h holds a CR copy in the session's own memory (h->copy): read-only, no pin of the cache. */
static void own_cr(struct coral_block *h, uint32_t file, uint64_t block, uint64_t scn, const uint8_t *payload)
{
	h->used = true;
	h->own = true;
	h->cr = true;
	h->pinned = 1;
	h->buf = 0;
	h->file = file;
	h->block = block;
	h->scn = scn;
	h->payload = payload;
}

/* The fast path: pins the current buffer if the node's mode covers the request. Returns 1
 * (pinned), 2 (a CR read of a block an open transaction is changing, answered from its
 * consistent image into the slot's own memory), 0 (not here: ask lmsd) or -1 (here, but
 * pinned by another session: wait). */
static int fast_pin(struct coral_session *s, uint32_t file, uint64_t block, int mode, int pin, uint32_t *buf,
		    uint32_t *seen)
{
	struct coral_cache *c = s->cache;
	struct coral_block *h = &s->pins[pin];
	/* a CR read may be answered from a block's consistent image, copied into the slot's own
	 * memory (allocated once per slot, outside the latch) */
	if (mode == CORAL_MODE_CR && h->copy == NULL)
		h->copy = malloc(c->block_size + CR_ARENA_EXTRA);
	uint32_t ch = coral_cache_chain(c, file, block);
	coral_cache_lock(c, ch);
	struct coral_buf *b = coral_cache_find(c, file, block, false);
	int want = mode == CORAL_MODE_CR ? CORAL_BL_S : mode;
	int r = 0;
	const uint8_t *img;
	uint64_t scn;
	/* a block the checkpoint waits to copy takes no new exclusive pin: waited for as a pin */
	bool wwait = b && mode == CORAL_MODE_X && (b->flags & CORAL_BUFF_WRITEWAIT);
	if (b && mode == CORAL_MODE_CR && b->mode >= want && (b->flags & CORAL_BUFF_SHIPWAIT) && h->copy != NULL) {
		/* another node asked for the block and its ship waits for the pins to go (no new
		 * pin): a CR read copies the image without one, from its consistent image while an
		 * open transaction has it, else from the buffer, which nobody changes then */
		img = coral_cache_clone_of(c, b, &scn);
		if (img == NULL && !(atomic_load(&b->pins) & CORAL_BUF_XPIN)) {
			img = coral_cache_data(c, coral_cache_index(c, b));
			scn = b->scn;
		}
		if (img != NULL) {
			memcpy(h->copy, img, c->block_size);
			own_cr(h, file, block, scn, h->copy + CORAL_BLOCK_HDR);
			r = 2;
		}
	} else if (b && b->mode >= want && !(b->flags & CORAL_BUFF_SHIPWAIT)) {
		if (!wwait && coral_buf_try_pin(b, mode == CORAL_MODE_X)) {
			b->ref = 1;
			*buf = coral_cache_index(c, b);
			/* recorded in the latch hold that pins: a process that dies now leaves a
			 * pin lmsd can find */
			atomic_store(&coral_cache_sess(c, (uint32_t)s->slot)->pins[pin],
				     (*buf + 1) | (mode == CORAL_MODE_X ? CORAL_PINREC_X : 0));
			/* an X pin's image as it is (the last committed) kept for CR readers from the
			 * start: a transaction often holds a block a while before it changes it (while
			 * it gets its next one) */
			if (mode == CORAL_MODE_X)
				(void)coral_cache_clone_make(c, b);
			r = 1;
		} else if (mode == CORAL_MODE_CR && h->copy != NULL &&
			   (img = coral_cache_clone_of(c, b, &scn)) != NULL) {
			/* being changed by an open transaction: its last committed image, at once */
			memcpy(h->copy, img, c->block_size);
			own_cr(h, file, block, scn, h->copy + CORAL_BLOCK_HDR);
			r = 2;
		} else {
			*seen = atomic_load(&b->wake);
			*buf = coral_cache_index(c, b);
			r = -1;
		}
	}
	coral_cache_unlock(c, ch);
	return r;
}

static int ask_lmsd(struct coral_session *s, uint32_t file, uint64_t block, int mode, int pin, uint32_t *buf,
		    int *pinned, int timeout_ms)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__GcsGetRequest g = CORAL__GCS_GET_REQUEST__INIT;
	hdr.sender = s->program;
	req.hdr = &hdr;
	g.file = file;
	g.block = block;
	g.mode = (uint32_t)mode;
	g.session = s->id;
	g.slot = (uint32_t)s->slot + 1;  /* lmsd records the pin it takes for us there */
	g.pin = (uint32_t)pin + 1;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_GET;
	req.gcs_get = &g;
	Coral__CtlResponse *resp = NULL;
	char err[CORAL_ERRMSG_MAX];
	bool spin = spin_begin(s);
	int rc = coral_ctl_call_rd(s->fd, &s->rd, NULL, s->sock, &req, (size_t)s->conf.cluster.max_frame, timeout_ms, &resp,
				   err, sizeof(err));
	if ((rc == CORAL_ECLOSED || rc == CORAL_ECONN) && s->fd >= 0) {
		/* lmsd closed the connection while it was idle ([lmsd] client_idle_ms): nothing of
		 * this request reached it, so it is sent once more on a new one */
		close(s->fd);
		s->fd = -1;
		if (lmsd_connect(s) == 0)
			rc = coral_ctl_call_rd(s->fd, &s->rd, NULL, s->sock, &req, (size_t)s->conf.cluster.max_frame,
					       timeout_ms, &resp, err, sizeof(err));
	}
	spin_end(s, spin);
	if (rc != 0) {
		/* the connection is in an unknown state: a fresh one for the next call */
		close(s->fd);
		s->fd = -1;
		lmsd_connect(s);
		return fail(s, rc, "block %u:%llu: %s", file, (unsigned long long)block, err);
	}
	if (resp->code != 0 || resp->gcs_get == NULL) {
		rc = resp->code ? resp->code : CORAL_EDECODE;
		fail(s, rc, "block %u:%llu in %s: %s", file, (unsigned long long)block,
		     mode == CORAL_MODE_X ? "X" : mode == CORAL_MODE_S ? "S" : "CR",
		     resp->error && resp->error[0] ? resp->error : coral_strerror(rc));
		coral_ctl_response_free(resp);
		return rc;
	}
	*buf = resp->gcs_get->buf;
	*pinned = (int)resp->gcs_get->pinned;
	coral_ctl_response_free(resp);
	if (*buf >= s->cache->nbuf)
		return fail(s, CORAL_EDECODE, "lmsd named buffer %u of %u", *buf, s->cache->nbuf);
	return 0;
}

/* ---- consistent-read copies straight from the holder ---------------------------------- */

static struct cr_hint *hint_slot(struct coral_session *s, uint32_t file, uint64_t block)
{
	uint64_t h = (block * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)file << 40);
	return &s->hints[(h >> 32) % CR_HINTS];
}

static uint32_t hint_get(struct coral_session *s, uint32_t file, uint64_t block)
{
	struct cr_hint *h = hint_slot(s, file, block);
	return h->file == file && h->block == block ? h->node : 0;
}

static void hint_set(struct coral_session *s, uint32_t file, uint64_t block, uint32_t node)
{
	*hint_slot(s, file, block) = (struct cr_hint){file, node, block};
}


/* A CR copy of the block from the lmsd of `node`, which served it last: 0 and *out, or an
 * error after which the caller takes the full path (the node no longer holds the block, is
 * changing it, or cannot be reached). */
/* Under [tls]: the handshake, and the node's own certificate on the other end. */
static int cr_tls(struct coral_session *s, uint32_t node, int timeout)
{
	if (s->tls == NULL)
		return 0;
	char err[256];
	s->cr_ssl[node] = SSL_new(s->tls);
	if (s->cr_ssl[node] == NULL)
		return CORAL_ENOMEM;
	int rc = coral_tls_connect(s->cr_ssl[node], s->cr_fd[node],
				   coral_now_mono_ns() + (uint64_t)timeout * 1000000ull, err, sizeof(err));
	if (rc == 0)
		rc = coral_tls_peer_is(s->cr_ssl[node], node, err, sizeof(err));
	return rc;
}

/* A call on the CR connection to node: through its TLS session, if any. */
static int cr_call(struct coral_session *s, uint32_t node, ProtobufCAllocator *al, const char *what,
		   Coral__CtlRequest *req, int timeout, Coral__CtlResponse **resp, char *err, size_t errsz)
{
	s->rd.ssl = s->cr_ssl[node];
	int rc = coral_ctl_call_rd(s->cr_fd[node], &s->rd, al, what, req, (size_t)s->conf.cluster.max_frame, timeout,
				   resp, err, errsz);
	s->rd.ssl = NULL;
	return rc;
}

/* The hello that opens a connection to another node's consistent-read port: this cluster,
 * this node and its incarnation as raftd published it here. 0, or the port's refusal. */
static int cr_hello(struct coral_session *s, uint32_t node, const char *what, int timeout)
{
	struct coral_cluster_view v;
	coral_cluster_read(s->cl, &v);
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__GcsCrHello hello = CORAL__GCS_CR_HELLO__INIT;
	hdr.sender = s->program;
	hdr.sender_node = (uint32_t)s->node->id;
	hdr.incarnation = v.incarnation;
	hdr.epoch = v.epoch;
	req.hdr = &hdr;
	hello.cluster = s->conf.cluster.name;
	hello.node = (uint32_t)s->node->id;
	hello.incarnation = v.incarnation;
	hello.epoch = v.epoch;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_CR_HELLO;
	req.gcs_cr_hello = &hello;
	Coral__CtlResponse *resp = NULL;
	char err[CORAL_ERRMSG_MAX];
	int rc = cr_call(s, node, NULL, what, &req, timeout, &resp, err,
				   sizeof(err));
	if (rc == 0) {
		rc = resp->code;
		coral_ctl_response_free(resp);
	}
	return rc;
}

static int cr_direct(struct coral_session *s, struct coral_block *h, uint32_t node, uint32_t file, uint64_t block,
		     struct coral_block **out)
{
	const struct coral_node_conf *n = coral_conf_node_by_id(&s->conf, (int)node);
	if (n == NULL || (s->cr_down_until[node] != 0 && coral_now_mono_ns() < s->cr_down_until[node]))
		return CORAL_ENOTRUNNING;
	const char *what = n->label;
	char err[CORAL_ERRMSG_MAX];
	int timeout = (int)s->conf.cache.gcs_retry_ms * 5;
	if (s->cr_fd[node] < 0) {
		if (coral_ctl_connect_tcp(n->host, (int)(n->base_port + CORAL_PORT_LMSD_CR), timeout, &s->cr_fd[node],
					  err, sizeof(err)) != 0) {
			/* not on every read for a second */
			s->cr_down_until[node] = coral_now_mono_ns() + 1000000000ull;
			return CORAL_ENOTRUNNING;
		}
		if (coral_sock_blocking(s->cr_fd[node], RECV_SLICE_MS) != 0 || cr_tls(s, node, timeout) != 0 ||
		    cr_hello(s, node, what, timeout) != 0) {
			cr_drop_conn(s, node);
			s->cr_down_until[node] = coral_now_mono_ns() + 1000000000ull;
			return CORAL_ENOTRUNNING;
		}
	}
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__GcsCrReadRequest g = CORAL__GCS_CR_READ_REQUEST__INIT;
	hdr.sender = s->program;
	req.hdr = &hdr;
	g.file = file;
	g.block = block;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_CR_READ;
	req.gcs_cr_read = &g;
	if (h->copy == NULL)
		h->copy = malloc(s->cache->block_size + CR_ARENA_EXTRA);
	if (h->copy == NULL)
		return CORAL_ENOMEM;
	struct coral_pb_arena ar;
	coral_pb_arena_init(&ar, h->copy, s->cache->block_size + CR_ARENA_EXTRA);
	Coral__CtlResponse *resp = NULL;
	int rc = cr_call(s, node, &ar.al, what, &req, timeout, &resp, err, sizeof(err));
	if (rc != 0) {
		cr_drop_conn(s, node);
		return rc;
	}
	const Coral__GcsCrReadReply *r = resp->gcs_cr_read;
	const struct coral_block_hdr *bh = r ? (const struct coral_block_hdr *)r->data.data : NULL;
	if (resp->code != 0 || r == NULL || r->data.len != s->cache->block_size || bh->file != file ||
	    bh->block != block) {
		rc = resp->code ? resp->code : CORAL_EDECODE;
		if (rc != CORAL_ENOENT && rc != CORAL_EBUSY)
			cr_drop_conn(s, node);
		return rc;
	}
	/* nothing to free: the answer lives in h->copy until the slot's next use */
	own_cr(h, file, block, r->scn, r->data.data + CORAL_BLOCK_HDR);
	coral_scn_observe(s->cache, r->scn);
	*out = h;
	return 0;
}

static int copy_open(struct coral_session *s);
static int copy_check(struct coral_session *s);

static void copy_close(struct coral_session *s)
{
	struct standby_copy *c = s->copy;
	if (c == NULL)
		return;
	coral_standby_release(s);
	for (int i = 0; i <= CORAL_MAX_DATAFILES; i++)
		if (c->fds[i] >= 0)
			close(c->fds[i]);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	free(c);
	s->copy = NULL;
}

/* The copy's data file `file` (its control file read again for one it does not know: one
 * the seed copied since), open. */
static int copy_fd(struct coral_session *s, uint32_t file)
{
	struct standby_copy *c = s->copy;
	if (file < 1 || file > CORAL_MAX_DATAFILES)
		return fail(s, CORAL_EINVAL, "data file %u: ids are 1 to %d", file, CORAL_MAX_DATAFILES);
	if (c->fds[file] >= 0)
		return c->fds[file];
	char err[CORAL_ERRMSG_MAX], path[CORAL_STR_MAX + 300];
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < c->cf.nfiles; k++) {
			if (c->cf.files[k].id != file)
				continue;
			coral_datafile_path(&c->conf, c->cf.files[k].name, path, sizeof(path));
			c->fds[file] = open(path, O_RDONLY | O_CLOEXEC);
			if (c->fds[file] < 0)
				return fail(s, coral_err_from_errno(errno), "the standby's copy of %s: %s", path, strerror(errno));
			return c->fds[file];
		}
		if (pass == 0 && coral_ctlfile_load(&c->conf, &c->cf, err, sizeof(err)) != 0)
			return fail(s, CORAL_EIO, "the standby's copy: %s", err);
	}
	return fail(s, CORAL_ENOENT, "the standby's copy of '%s' has no data file %u (created on the primary after the "
		    "seed? seed again: coralctl standby seed)", c->conf.cluster.name, file);
}

/* On a standby that has not taken over: a CR get reads the copy the apply writes, under its
 * lock (no batch is half written meanwhile), at the applied SCN; S and X are refused (the
 * cluster changes nothing until it takes over). */
static int standby_get(struct coral_session *s, struct coral_block *h, uint32_t file, uint64_t block, int mode,
		       struct coral_block **out)
{
	if (mode != CORAL_MODE_CR)
		return fail(s, CORAL_EPERM, "this cluster is a standby of '%s' ([replication] role): its sessions read the "
			    "copy in CORAL_MODE_CR, at the applied SCN, and change nothing until it takes over (coralctl "
			    "standby failover)", s->conf.replication.primary_cluster);
	int rc = copy_open(s);
	if (rc != 0)
		return rc;
	struct standby_copy *c = s->copy;
	char err[CORAL_ERRMSG_MAX];
	if (h->copy == NULL && (h->copy = malloc(s->cache->block_size + CR_ARENA_EXTRA)) == NULL)
		return fail(s, CORAL_ENOMEM, "out of memory");
	if (!c->held)
		flock(c->lock_fd, LOCK_SH);
	rc = c->held ? 0 : copy_check(s);
	int fd = rc == 0 ? copy_fd(s, file) : rc;
	if (fd < 0)
		rc = fd;
	else if ((rc = coral_block_read(fd, s->cache->block_size, file, block, h->copy, err, sizeof(err))) != 0)
		rc = fail(s, rc, "the standby's copy: %s", err);
	if (!c->held)
		flock(c->lock_fd, LOCK_UN);
	if (rc != 0)
		return rc;
	uint64_t scn;
	memcpy(&scn, h->copy + offsetof(struct coral_block_hdr, scn), sizeof(scn));
	own_cr(h, file, block, scn, h->copy + CORAL_BLOCK_HDR);
	s->st.gets++;
	*out = h;
	return 0;
}

/* The copy's lock held: whether it is a state of the primary's (*applied: its SCN). */
static int copy_check_at(struct coral_session *s, uint64_t *applied)
{
	struct coral_copy_state st;
	int rc = coral_copy_state_read(s->copy->conf.storage.shared_dir, &st);
	if (rc == CORAL_ENOENT)
		return fail(s, rc, "this standby has no copy of '%s' yet: coralctl standby seed", s->copy->conf.cluster.name);
	if (rc != 0)
		return fail(s, rc, "the standby's apply state: %s (coralctl standby status)", coral_strerror(rc));
	if (!coral_copy_consistent(&st))
		return fail(s, CORAL_EBUSY, "the standby's copy is not a state of the primary's yet (applied SCN %llu, a "
			    "batch written in part reached %llu): read again once the apply has passed it",
			    (unsigned long long)st.applied_scn, (unsigned long long)st.torn_scn);
	if (applied)
		*applied = st.applied_scn;
	return 0;
}

static int copy_check(struct coral_session *s) { return copy_check_at(s, NULL); }

int coral_standby_hold(struct coral_session *s, uint64_t *applied_scn)
{
	if (s == NULL || s->redo == NULL)
		return CORAL_EINVAL;
	if (!atomic_load(&s->redo->standby))
		return fail(s, CORAL_EINVAL, "this cluster is not a standby (or it has taken over): nothing to hold");
	int rc = copy_open(s);
	if (rc != 0)
		return rc;
	if (s->copy->held)
		return fail(s, CORAL_EINVAL, "the copy is held already (coral_standby_release first)");
	flock(s->copy->lock_fd, LOCK_SH);
	if ((rc = copy_check_at(s, applied_scn)) != 0) {
		flock(s->copy->lock_fd, LOCK_UN);
		return rc;
	}
	s->copy->held = true;
	return 0;
}

void coral_standby_release(struct coral_session *s)
{
	if (s == NULL || s->copy == NULL || !s->copy->held)
		return;
	flock(s->copy->lock_fd, LOCK_UN);
	s->copy->held = false;
}

/* The session's reader of the copy, made at its first use. */
static int copy_open(struct coral_session *s)
{
	if (s->copy == NULL) {
		struct standby_copy *c = calloc(1, sizeof(*c));
		if (c == NULL)
			return fail(s, CORAL_ENOMEM, "out of memory");
		for (int i = 0; i <= CORAL_MAX_DATAFILES; i++)
			c->fds[i] = -1;
		c->lock_fd = -1;
		coral_copy_conf(&s->conf, &c->conf);
		s->copy = c;
	}
	struct standby_copy *c = s->copy;
	if (c->lock_fd < 0) {
		char p[CORAL_STR_MAX + 320];
		snprintf(p, sizeof(p), "%s/apply.lock", c->conf.storage.shared_dir);
		c->lock_fd = open(p, O_RDONLY | O_CLOEXEC);
		if (c->lock_fd < 0)
			return fail(s, CORAL_ENOENT, "this standby has no copy of '%s' to read yet (%s: %s): coralctl standby "
				    "seed", c->conf.cluster.name, p, strerror(errno));
	}
	return 0;
}

static int block_get(struct coral_session *s, uint32_t file, uint64_t block, int mode, struct coral_block **out);

/* A block read the node did not have (2-way, 3-way, from disk, or a CR copy from another
 * node) is charged to the session's consumer group: its I/O limits pace it (rsrcmgrd(8)). */
int coral_block_get(struct coral_session *s, uint32_t file, uint64_t block, int mode, struct coral_block **out)
{
	if (s == NULL || out == NULL)
		return CORAL_EINVAL;
	*out = NULL;
	uint64_t hits = s->st.local_hits;
	int rc = enter(s);
	if (rc != 0)
		return rc;
	rc = block_get(s, file, block, mode, out);
	leave(s);
	if (rc == 0 && s->rsrc && s->slot >= 0 && s->st.local_hits == hits)
		coral_rsrc_io_charge(s->rsrc, s->slot, 1, s->cache->block_size);
	return rc;
}

static int block_get(struct coral_session *s, uint32_t file, uint64_t block, int mode, struct coral_block **out)
{
	*out = NULL;
	if (s == NULL || s->cache == NULL)
		return CORAL_EINVAL;
	if (mode != CORAL_MODE_S && mode != CORAL_MODE_X && mode != CORAL_MODE_CR)
		return fail(s, CORAL_EINVAL, "mode %d: use CORAL_MODE_S, CORAL_MODE_X or CORAL_MODE_CR", mode);
	if (s->rsrc && call_stopped(s) != 0)
		return CORAL_ECANCELED;
	if (wait_unfenced(s, 0) != 0)
		return CORAL_EFENCED;
	if (wait_lmsd(s) != 0)
		return CORAL_ENOTRUNNING;
	/* a block this transaction changed and released is still pinned in X: it is the
	 * caller's again (waiting for its own pin would never end); none outside a transaction */
	for (int i = 0; s->txn && i < CORAL_SESSION_MAX_PINS; i++) {
		struct coral_block *k = &s->pins[i];
		if (k->used && k->held && k->file == file && k->block == block) {
			k->held = false;
			s->st.gets++;
			s->st.local_hits++;
			*out = k;
			return 0;
		}
	}
	struct coral_block *h = free_slot(s);  /* the handle this get fills */
	if (h == NULL)
		return fail(s, CORAL_EFULL, "the session already holds %d pinned blocks", CORAL_SESSION_MAX_PINS);
	if (atomic_load(&s->redo->standby))
		return standby_get(s, h, file, block, mode, out);
	int pin = (int)(h - s->pins);
	s->st.gets++;
	int timeout = (int)s->conf.cache.get_timeout_ms;
	uint64_t deadline = 0;  /* set at the first miss: a local hit reads no clock */
	uint64_t restart_t0 = 0;  /* since when lmsd says the node is fenced or leaving */
	for (;;) {
		uint32_t buf = 0, seen = 0;
		int r = fast_pin(s, file, block, mode, pin, &buf, &seen);
		if (r == 2) {
			s->st.local_hits++;
			atomic_fetch_add(&s->cache->st.gets, 1);
			atomic_fetch_add(&s->cache->st.local_hits, 1);
			*out = h;
			return 0;
		}
		if (r == 1) {
			s->st.local_hits++;
			atomic_fetch_add(&s->cache->st.gets, 1);
			atomic_fetch_add(&s->cache->st.local_hits, 1);
			*out = handle(s, h, buf, mode == CORAL_MODE_X ? 2 : 1, file, block);
			return 0;
		}
		uint64_t now = coral_now_mono_ns();
		if (deadline == 0)
			deadline = now + (uint64_t)timeout * 1000000ull;
		if (now >= deadline)
			return fail(s, CORAL_ETIMEDOUT, "block %u:%llu not obtained within %d ms", file,
				    (unsigned long long)block, timeout);
		if (r == -1) {
			/* another session of this node has it pinned: sleep until it unpins */
			s->st.pin_waits++;
			atomic_fetch_add(&s->cache->st.pin_waits, 1);
			coral_buf_wait(coral_cache_buf(s->cache, buf), seen, 10);
			continue;
		}
		if (mode == CORAL_MODE_CR && s->cr_direct) {
			/* the session's own memory first, then the CR copies other sessions of this
			 * node read through lmsd (their buffers say who served them) */
			uint32_t holder = hint_get(s, file, block);
			if (holder == 0)
				holder = coral_cache_cr_source(s->cache, file, block);
			if (holder != 0 && holder != (uint32_t)s->node->id) {
				if (cr_direct(s, h, holder, file, block, out) == 0) {
					s->st.cr_direct++;
					return 0;
				}
				s->st.cr_direct_missed++;
				hint_set(s, file, block, 0);
			}
		}
		int pinned = 0;
		s->st.remote_gets++;
		/* lmsd gives up at get_timeout_ms and says why; the socket waits a little longer */
		int rc = ask_lmsd(s, file, block, mode, pin, &buf, &pinned, (int)((deadline - now) / 1000000ull) + 2000);
		if (rc == CORAL_ECLOSED || rc == CORAL_ECONN || rc == CORAL_ENOTRUNNING) {
			/* lmsd died under the request: its restart is waited for, and the request
			 * asked again (the new lmsd answers, or says the node is leaving) */
			drop_orphan_pin(s, pin);
			if (restart_t0 == 0)
				restart_t0 = coral_now_mono_ns();
			if (coral_now_mono_ns() - restart_t0 >= (uint64_t)s->conf.cache.restart_wait_ms * 1000000ull)
				return rc;
			if (wait_lmsd(s) != 0)
				return CORAL_ENOTRUNNING;
			deadline = 0;
			continue;
		}
		if (rc == CORAL_EFENCED && s->conf.cache.restart_wait_ms > 0) {
			/* the node is leaving, or fenced a moment: waited through, then asked again */
			if (restart_t0 == 0)
				restart_t0 = coral_now_mono_ns();
			if (coral_now_mono_ns() - restart_t0 >= (uint64_t)s->conf.cache.restart_wait_ms * 1000000ull)
				return rc;
			nap_ms(5);
			if (wait_unfenced(s, 0) != 0)
				return CORAL_EFENCED;
			deadline = 0;
			continue;
		}
		if (rc != 0)
			return rc;
		if (pinned) {
			if (pinned == 2) {
				/* as on the fast path: the image kept for CR readers while the X pin lasts */
				struct coral_buf *xb = coral_cache_buf(s->cache, buf);
				uint32_t ch = coral_cache_chain(s->cache, file, block);
				coral_cache_lock(s->cache, ch);
				(void)coral_cache_clone_make(s->cache, xb);
				coral_cache_unlock(s->cache, ch);
			}
			*out = handle(s, h, buf, pinned, file, block);
			/* a CR copy remembers who served it: the next read of the block goes there */
			const struct coral_buf *cb = coral_cache_buf(s->cache, buf);
			if (mode == CORAL_MODE_CR && s->cr_direct && (cb->flags & CORAL_BUFF_CR) && cb->ack_from != 0)
				hint_set(s, file, block, cb->ack_from);
			return 0;
		}
		/* granted but pinned by someone else meanwhile: the fast path again */
	}
}

const void *coral_block_data(const struct coral_block *b) { return b ? b->payload : NULL; }

uint64_t coral_block_scn(const struct coral_session *s, const struct coral_block *b)
{
	return b->own ? b->scn : coral_cache_buf(s->cache, b->buf)->scn;
}

/* Keeps the old bytes of a change for coral_rollback; CORAL_EFULL past TXN_MAX_UNDO. */
static int undo_push(struct coral_session *s, uint32_t pin, uint32_t offset, const uint8_t *old, uint32_t len)
{
	if (s->undo_used + len > TXN_MAX_UNDO)
		return fail(s, CORAL_EFULL, "the transaction's changes passed %u bytes: commit more often", TXN_MAX_UNDO);
	if (s->nundo == s->capundo) {
		uint32_t cap = s->capundo ? 2 * s->capundo : 64;
		struct undo_ent *p = realloc(s->undo, cap * sizeof(*p));
		if (p == NULL)
			return fail(s, CORAL_ENOMEM, "no memory for the transaction's undo");
		s->undo = p;
		s->capundo = cap;
	}
	if (s->undo_used + len > s->undo_cap) {
		size_t cap = s->undo_cap ? s->undo_cap : 4096;
		while (cap < s->undo_used + len)
			cap *= 2;
		uint8_t *p = realloc(s->undo_bytes, cap);
		if (p == NULL)
			return fail(s, CORAL_ENOMEM, "no memory for the transaction's undo");
		s->undo_bytes = p;
		s->undo_cap = cap;
	}
	memcpy(s->undo_bytes + s->undo_used, old, len);
	s->undo[s->nundo++] = (struct undo_ent){pin, offset, len, s->undo_used};
	s->undo_used += len;
	return 0;
}

/* The change itself: redo (with the old bytes), then the buffer. keep_undo: also in the
 * session's undo (not for rollback's own changes). */
static int modify(struct coral_session *s, struct coral_block *b, uint32_t offset, const void *bytes, uint32_t len,
		  bool keep_undo)
{
	if (wait_unfenced(s, b->since) != 0)
		return CORAL_EFENCED;
	if (evicted_since(s, b->since, "this block was taken") ||
	    (s->txn && evicted_since(s, s->txn_since, "this transaction began")))
		return CORAL_EFENCED;
	/* refused before anything is kept of it (its undo, the buffer's dirty mark) */
	if (atomic_load(&s->redo->site_fenced))
		return fail(s, CORAL_EFENCED, "this cluster was failed over from (a standby took over at site epoch %llu): "
			    "it takes no change; coralctl standby status", (unsigned long long)atomic_load(&s->redo->site_fenced));
	if (atomic_load(&s->redo->standby))
		return fail(s, CORAL_EPERM, "this cluster is a standby ([replication] role): it takes no change until it "
			    "takes over (coralctl standby failover); coralctl standby status");
	if (keep_undo && atomic_load(&s->redo->closed))
		return fail(s, CORAL_EFENCED, SWITCHING_MSG);
	uint8_t *at = coral_cache_data(s->cache, b->buf) + CORAL_BLOCK_HDR + offset;
	if (keep_undo) {
		int rc = undo_push(s, (uint32_t)(b - s->pins), offset, at, len);
		if (rc != 0)
			return rc;
	}
	struct coral_buf *buf = coral_cache_buf(s->cache, b->buf);
	uint32_t ch = coral_cache_chain(s->cache, b->file, b->block);
	uint8_t flags = 0;
	if (!s->txn) {
		/* the transaction's first change: the checkpoint stays behind it from before
		 * its redo exists until it ends (see lmsd's publish_ckpt) */
		struct coral_sess_slot *slot = coral_cache_sess(s->cache, (uint32_t)s->slot);
		if (atomic_load(&slot->txn_first) == 0)
			atomic_store(&slot->txn_first, atomic_load(&s->redo->tail) + 1);
		flags = CORAL_REDO_F_BEGIN;
		s->txn_since = atomic_load(&s->cache->since_inc);
	}
	/* dirty before the redo exists, with where it will begin at the latest: lmsd's
	 * checkpoint never passes a change it has not seen (the X pin keeps the buffer here) */
	coral_cache_lock(s->cache, ch);
	/* the transaction's first change of the block: its image as it is (the last committed)
	 * kept for consistent reads, which are answered from it until the X pin goes instead of
	 * waiting for the transaction (kept already at the X pin unless none was free then;
	 * none free now either: they wait) */
	if (keep_undo && !b->changed)
		(void)coral_cache_clone_make(s->cache, buf);
	if (buf->first_lsn == 0)
		buf->first_lsn = atomic_load(&s->redo->tail) + 1;
	if (!(buf->flags & CORAL_BUFF_DIRTY)) {
		buf->flags |= CORAL_BUFF_DIRTY;
		atomic_fetch_add(&s->cache->dirty, 1);
	}
	coral_cache_unlock(s->cache, ch);
	/* the SCN is taken under the redo latch: the thread is in SCN order (a standby's apply
	 * relies on it, see coral_redo_mark) */
	uint64_t scn = 0;
	uint64_t lsn;
	if (!keep_undo)
		flags |= CORAL_REDO_F_ROLLBACK;
	int rc = coral_redo_append_clocked(s->redo, &s->cache->scn, CORAL_REDO_CHANGE, flags, &scn, s->id, b->file,
					   b->block, offset, bytes, at, len, (int)s->conf.cache.commit_timeout_ms, &lsn);
	if (rc != 0) {
		if (keep_undo)
			s->undo_used -= s->undo[--s->nundo].len;
		if (rc == CORAL_EFENCED)
			return fail(s, rc, SWITCHING_MSG);
		return fail(s, rc, "redo for block %u:%llu: %s%s", b->file, (unsigned long long)b->block,
			    coral_strerror(rc), rc == CORAL_ENOTRUNNING ? " (the log writer, replicad, is not running)" : "");
	}
	s->txn = true;
	s->txn_redo_bytes += 2u * len + 64u; /* the record: its header, the old bytes and the new */
	b->changed = true;
	memcpy(at, bytes, len);
	coral_cache_lock(s->cache, ch);
	buf->scn = scn;
	buf->redo_lsn = lsn;
	coral_cache_unlock(s->cache, ch);
	s->st.modifies++;
	return 0;
}

static int block_modify(struct coral_session *s, struct coral_block *b, uint32_t offset, const void *bytes,
			uint32_t len);

int coral_block_modify(struct coral_session *s, struct coral_block *b, uint32_t offset, const void *bytes,
		       uint32_t len)
{
	if (s == NULL)
		return CORAL_EINVAL;
	int rc = enter(s);
	if (rc != 0)
		return rc;
	rc = block_modify(s, b, offset, bytes, len);
	leave(s);
	return rc;
}

static int block_modify(struct coral_session *s, struct coral_block *b, uint32_t offset, const void *bytes,
			uint32_t len)
{
	if (b == NULL || !b->used || b->held)
		return fail(s, CORAL_EINVAL, "not a pinned block");
	if (b->pinned != 2)
		return fail(s, CORAL_EPERM, "block %u:%llu is not pinned in X", b->file, (unsigned long long)b->block);
	if (s->rsrc && call_stopped(s) != 0)
		return CORAL_ECANCELED;
	size_t payload = coral_block_payload(s);
	if ((size_t)offset + len > payload)
		return fail(s, CORAL_EINVAL, "change of %u bytes at %u is past the %zu-byte payload", len, offset,
			    payload);
	return modify(s, b, offset, bytes, len, true);
}

void coral_block_release(struct coral_session *s, struct coral_block *b)
{
	if (s == NULL || b == NULL || !b->used)
		return;
	if (b->changed) {
		b->held = true; /* until the transaction ends */
		return;
	}
	if (enter(s) != 0)
		return; /* revoked: the node released it */
	if (!b->own)
		coral_cache_unpin_rec(s->cache, coral_cache_buf(s->cache, b->buf), b->pinned == 2,
				      &coral_cache_sess(s->cache, (uint32_t)s->slot)->pins[b - s->pins]);
	b->used = false;
	leave(s);
}

/* The blocks the transaction changed carry its commit's SCN from now on (they are still
 * held): whoever changes one next, here or on another node (which observes the SCN with the
 * block), does so above the commit. Commit SCNs then follow the order in which a block's
 * transactions ended, which a standby's apply needs to hold a state the primary was in (the
 * transactions committed up to an SCN). */
static void stamp_commit(struct coral_session *s, uint64_t scn)
{
	for (int i = 0; i < CORAL_SESSION_MAX_PINS; i++) {
		struct coral_block *k = &s->pins[i];
		if (!k->used || !k->changed || k->own)
			continue;
		coral_cache_stamp_scn(s->cache, coral_cache_buf(s->cache, k->buf), scn);
	}
}

/* rollback: the commit that ends a rollback (taken by a thread closed for a switchover). */
static int commit(struct coral_session *s, uint64_t *scn_out, bool rollback)
{
	if (wait_unfenced(s, 0) != 0)
		return CORAL_EFENCED;
	if (s->txn && evicted_since(s, s->txn_since, "this transaction began"))
		return CORAL_EFENCED;
	if (atomic_load(&s->redo->site_fenced))
		return fail(s, CORAL_EFENCED, "this cluster was failed over from (a standby took over at site epoch %llu): "
			    "it takes no commit; coralctl standby status", (unsigned long long)atomic_load(&s->redo->site_fenced));
	if (!rollback && atomic_load(&s->redo->closed))
		return fail(s, CORAL_EFENCED, SWITCHING_MSG);
	uint64_t scn = 0, lsn;
	uint64_t t0 = coral_now_mono_ns();
	int timeout = (int)s->conf.cache.commit_timeout_ms;
	int rc = coral_redo_append_clocked(s->redo, &s->cache->scn, CORAL_REDO_COMMIT,
					   rollback ? CORAL_REDO_F_ROLLBACK : 0, &scn, s->id, 0, 0, 0, NULL,
					   NULL, 0, timeout, &lsn);
	if (rc == 0)
		stamp_commit(s, scn);
	if (rc == CORAL_EFENCED)
		return fail(s, rc, SWITCHING_MSG);
	if (rc != 0)
		return fail(s, rc, "commit record: %s%s", coral_strerror(rc),
			    rc == CORAL_ENOTRUNNING ? " (the log writer, replicad, is not running)"
			    : rc == CORAL_ENOSPC || rc == CORAL_EROFS || rc == CORAL_EIO ? " (the log writer cannot write the redo thread)"
										     : "");
	rc = coral_redo_wait(s->redo, lsn, timeout);
	while (rc == CORAL_EFENCED && s->conf.cache.restart_wait_ms > 0) {
		/* a fence that ends without an eviction (a raftd restart, a new leader) lets the
		 * log writer go on: the commit waits through it ([cache] restart_wait_ms) */
		if (wait_unfenced(s, 0) != 0)
			return CORAL_EFENCED;
		int64_t left = (int64_t)timeout - (int64_t)((coral_now_mono_ns() - t0) / 1000000ull);
		if (left <= 0)
			break;
		nap_ms(5);  /* the log writer sees the fence's end within its own 10 ms */
		rc = coral_redo_wait(s->redo, lsn, (int)left);
	}
	if (rc == CORAL_EFENCED)
		return fail(s, rc, "commit at LSN %llu: the node was fenced before it was durable (it becomes durable "
			    "only if the node is unfenced without being evicted)", (unsigned long long)lsn);
	if (rc == CORAL_ENOSPC || rc == CORAL_EROFS || rc == CORAL_EIO) {
		char dir[CORAL_STR_MAX + 64], seg[CORAL_STR_MAX + 96];
		coral_redo_thread_dir(s->conf.storage.shared_dir, (uint32_t)s->node->id, dir, sizeof(dir));
		coral_redo_seg_path(dir, atomic_load(&s->redo->io_error_seg), seg, sizeof(seg));
		return fail(s, rc, "commit at LSN %llu: %s writing the redo thread (%s): not durable; it becomes so if the "
			    "log writer succeeds later", (unsigned long long)lsn, coral_strerror(rc), seg);
	}
	if (rc != 0)
		return fail(s, rc, "commit at LSN %llu not durable within %d ms: is replicad running? (coralctl status)",
			    (unsigned long long)lsn, timeout);
	/* synchronous commit, or the RPO: the standbys' gate ([replication] sync, max_lag_*) */
	int left = timeout - (int)((coral_now_mono_ns() - t0) / 1000000ull);
	rc = coral_redo_gate_wait(s->redo, lsn, left > 0 ? left : 0);
	if (rc != 0)
		return fail(s, rc, "commit at LSN %llu is durable on this node, but the standbys did not acknowledge it "
			    "within %d ms ([replication] sync, max_lag_bytes, max_lag_ms; coralctl standby status): it stays "
			    "committed here and reaches them when they come back", (unsigned long long)lsn, timeout);
	s->st.commits++;
	s->st.commit_wait_us += (coral_now_mono_ns() - t0) / 1000;
	if (scn_out)
		*scn_out = scn;
	return 0;
}

/* The transaction is over, whatever its commit gave: its blocks go, its undo is forgotten.
 * The slot's first LSN stays after a failed commit (its outcome is not known: recovery may
 * still have to take it back) until a commit succeeds. */
static void txn_end(struct coral_session *s, bool committed)
{
	for (int i = 0; i < CORAL_SESSION_MAX_PINS; i++) {
		struct coral_block *k = &s->pins[i];
		if (!k->used || !k->changed)
			continue;
		k->changed = false;
		if (k->held) {
			k->held = false;
			coral_block_release(s, k);
		}
	}
	s->txn_redo_bytes = 0;
	s->nundo = 0;
	s->undo_used = 0;
	s->txn = false;
	if (committed && s->slot >= 0)
		atomic_store(&coral_cache_sess(s->cache, (uint32_t)s->slot)->txn_first, 0);
}

static int rollback(struct coral_session *s);

static int commit_call(struct coral_session *s, uint64_t *scn_out);

int coral_commit(struct coral_session *s, uint64_t *scn_out)
{
	if (s == NULL)
		return CORAL_EINVAL;
	int rc = enter(s);
	if (rc != 0)
		return rc;
	rc = commit_call(s, scn_out);
	leave(s);
	return rc;
}

static int commit_call(struct coral_session *s, uint64_t *scn_out)
{
	if (s->rsrc && call_stopped(s) != 0)
		return CORAL_ECANCELED; /* nothing committed: the caller rolls back */
	uint64_t redo_bytes = s->txn_redo_bytes;
	int rc = commit(s, scn_out, false);
	if (rc == 0 && redo_bytes && s->rsrc && s->slot >= 0)
		coral_rsrc_io_charge(s->rsrc, s->slot, 0, redo_bytes); /* its redo, to its group's I/O limit */
	if (rc == CORAL_EFENCED && s->txn && atomic_load(&s->redo->closed)) {
		/* refused by a switchover: it did not commit, and is taken back here (the thread
		 * still takes a rollback) rather than left in the blocks for the next session */
		char why[CORAL_ERRMSG_MAX];
		snprintf(why, sizeof(why), "%s", s->errmsg);
		int r = rollback(s);
		fail(s, rc, "%s (%s)", why, r == 0 ? "the transaction was taken back" : "taking it back failed too");
		return rc;
	}
	txn_end(s, rc == 0);
	return rc;
}

int coral_rollback(struct coral_session *s)
{
	if (s == NULL)
		return CORAL_EINVAL;
	if (!s->txn)
		return 0;
	int rc = enter(s);
	if (rc != 0)
		return rc;
	rc = rollback(s);
	leave(s);
	return rc;
}

static int rollback(struct coral_session *s)
{
	int rc = 0;
	/* newest first: each change is taken back by a change of its own (its redo carries
	 * what it undoes too), and the whole ends with a commit: recovery replays the pair or,
	 * without the commit, takes both back */
	for (uint32_t k = s->nundo; k-- > 0 && rc == 0;) {
		const struct undo_ent *u = &s->undo[k];
		struct coral_block *b = &s->pins[u->pin];
		if (!b->used || b->pinned != 2) {
			rc = fail(s, CORAL_EINVAL, "rollback: a changed block is no longer pinned");
			break;
		}
		rc = modify(s, b, u->offset, s->undo_bytes + u->at, u->len, false);
	}
	if (rc == 0)
		rc = commit(s, NULL, true);
	txn_end(s, rc == 0);
	return rc;
}

void coral_session_stats(const struct coral_session *s, struct coral_session_stats *out) { *out = s->st; }

/* ---- global enqueues (lmdd) -------------------------------------------------------------- */

/* One lock operation through the node's lmdd, answered once the resource's master has: the
 * call waits the request's own timeout and a little more (forever for none). *out is the
 * reply, to free, on 0. */
static int ask_lmdd(struct coral_session *s, Coral__GesLockRequest *g, int timeout_ms, Coral__GesLockReply **out,
		    Coral__CtlResponse **resp)
{
	*resp = NULL;
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.sender = s->program;
	req.hdr = &hdr;
	g->session = s->id;
	g->slot = (uint32_t)s->slot + 1;  /* lmdd releases the session's locks when its process ends */
	g->timeout_ms = timeout_ms > 0 ? (uint32_t)timeout_ms : 0;
	req.body_case = CORAL__CTL_REQUEST__BODY_GES_LOCK;
	req.ges_lock = g;
	char err[CORAL_ERRMSG_MAX];
	/* One connection for the session's lock calls. One lmdd closed (idle past [lmdd]
	 * client_idle_ms, or restarted) is seen before the request is written, and a new one
	 * made: a request is never sent twice (a lock asked twice would be two locks). */
	if (s->lmdd_fd >= 0) {
		struct pollfd p = {.fd = s->lmdd_fd, .events = POLLIN | POLLRDHUP};
		if (poll(&p, 1, 0) != 0) {
			close(s->lmdd_fd);
			s->lmdd_fd = -1;
		}
	}
	if (s->lmdd_fd < 0) {
		coral_conf_sock_path(s->node, "lmdd", s->lmdd_sock, sizeof(s->lmdd_sock));
		int rc = sock_connect(s, s->lmdd_sock, &s->lmdd_fd);
		if (rc != 0) {
			s->lmdd_broke = s->lmdd_unsent = true;
			return fail(s, rc, "lmdd (%s): %s", s->lmdd_sock, s->errmsg);
		}
	}
	s->lmdd_broke = s->lmdd_unsent = false;
	int wait = timeout_ms > 0 ? timeout_ms + 2000 : 7 * 24 * 3600 * 1000;
	bool spin = spin_begin(s);
	int rc = coral_ctl_call_rd(s->lmdd_fd, &s->rd, NULL, s->lmdd_sock, &req, (size_t)s->conf.cluster.max_frame, wait,
				   resp, err, sizeof(err));
	spin_end(s, spin);
	if (rc != 0) {
		/* the connection is in an unknown state: a new one for the next call */
		close(s->lmdd_fd);
		s->lmdd_fd = -1;
		s->lmdd_broke = true;
		return fail(s, rc, "lmdd (%s): %s", s->lmdd_sock, err);
	}
	if ((*resp)->code != 0 || (*resp)->ges_lock == NULL) {
		rc = (*resp)->code ? (*resp)->code : CORAL_EDECODE;
		fail(s, rc, "%s", (*resp)->error && (*resp)->error[0] ? (*resp)->error : coral_strerror(rc));
		coral_ctl_response_free(*resp);
		*resp = NULL;
		return rc;
	}
	*out = (*resp)->ges_lock;
	return 0;
}

static void lvb_out(const Coral__GesLockReply *r, void *lvb, int *lvb_valid)
{
	if (lvb && r->lvb.len == CORAL_LVB_LEN)
		memcpy(lvb, r->lvb.data, CORAL_LVB_LEN);
	if (lvb_valid)
		*lvb_valid = r->lvb.len == CORAL_LVB_LEN && r->lvb_valid;
}

#define LOCK_FLAGS 0x3fu

/* ---- lock events ------------------------------------------------------------------------ */

static void ev_close(struct coral_session *s)
{
	if (s->ev_fd >= 0)
		close(s->ev_fd);
	s->ev_fd = -1;
	s->ev_len = 0;
}

/* The next whole frame read from the subscription: 1 with *ev, 0 when none is there yet,
 * or an error (the subscription is closed then). */
static int ev_take(struct coral_session *s, struct coral_lock_event *ev, bool quiet)
{
	for (;;) {
		uint32_t len = 0;
		int rc = coral_frame_check(s->ev_buf, s->ev_len, (size_t)s->conf.cluster.max_frame, &len);
		if (rc < 0) {
			ev_close(s);
			return quiet ? rc : fail(s, rc, "lmdd's lock events: %s", coral_strerror(rc));
		}
		if (rc == 1) {
			Coral__CtlResponse *r = coral__ctl_response__unpack(NULL, len, s->ev_buf + CORAL_FRAME_HDR);
			memmove(s->ev_buf, s->ev_buf + CORAL_FRAME_HDR + len, s->ev_len - CORAL_FRAME_HDR - len);
			s->ev_len -= CORAL_FRAME_HDR + len;
			if (r == NULL || r->code != 0 || r->body_case != CORAL__CTL_RESPONSE__BODY_GES_EVENT) {
				int code = r == NULL ? CORAL_EDECODE : r->code ? r->code : CORAL_EDECODE;
				if (!quiet)
					fail(s, code, "lmdd's lock events: %s",
					     r && r->error && r->error[0] ? r->error : coral_strerror(code));
				if (r)
					coral__ctl_response__free_unpacked(r, NULL);
				ev_close(s);
				return code;
			}
			const Coral__GesEvent *e = r->ges_event;
			memset(ev, 0, sizeof(*ev));
			ev->kind = (int)e->kind;
			ev->lkid = e->lkid;
			ev->mode = (int)e->mode;
			ev->code = e->code;
			if (e->lvb.len == CORAL_LVB_LEN) {
				memcpy(ev->lvb, e->lvb.data, CORAL_LVB_LEN);
				ev->lvb_valid = e->lvb_valid;
			}
			ev->demoted = e->demoted;
			coral__ctl_response__free_unpacked(r, NULL);
			if (ev->kind == 0)
				continue;  /* "subscribed" */
			return 1;
		}
		if (s->ev_cap - s->ev_len < 4096) {
			size_t cap = s->ev_cap ? s->ev_cap * 2 : 8192;
			uint8_t *b = realloc(s->ev_buf, cap);
			if (b == NULL)
				return quiet ? CORAL_ENOMEM : fail(s, CORAL_ENOMEM, "no memory for lock events");
			s->ev_buf = b;
			s->ev_cap = cap;
		}
		ssize_t k = recv(s->ev_fd, s->ev_buf + s->ev_len, s->ev_cap - s->ev_len, MSG_DONTWAIT);
		if (k > 0) {
			s->ev_len += (size_t)k;
			continue;
		}
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		ev_close(s);
		return quiet ? CORAL_ECLOSED
			     : fail(s, CORAL_ECLOSED, "lmdd closed the session's lock events (it restarted?): subscribe again");
	}
}

int coral_lock_events(struct coral_session *s, int *fd)
{
	if (s == NULL || fd == NULL)
		return CORAL_EINVAL;
	if (s->ev_fd >= 0) {
		*fd = s->ev_fd;
		return 0;
	}
	if (s->slot < 0)
		return fail(s, CORAL_EINVAL, "the session has no slot on its node: it cannot hear lock events");
	char sock[CORAL_STR_MAX + 32];
	coral_conf_sock_path(s->node, "lmdd", sock, sizeof(sock));
	int rc = sock_connect(s, sock, &s->ev_fd);
	if (rc != 0)
		return fail(s, rc, "lmdd (%s): %s", sock, s->errmsg);
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.sender = s->program;
	req.hdr = &hdr;
	Coral__GesSubscribeRequest g = CORAL__GES_SUBSCRIBE_REQUEST__INIT;
	g.session = s->id;
	g.slot = (uint32_t)s->slot + 1;
	req.body_case = CORAL__CTL_REQUEST__BODY_GES_SUBSCRIBE;
	req.ges_subscribe = &g;
	Coral__CtlResponse *resp = NULL;
	char err[CORAL_ERRMSG_MAX];
	/* the first answer says it is subscribed (or why not) */
	rc = coral_ctl_call_fd(s->ev_fd, sock, &req, (size_t)s->conf.cluster.max_frame, 5000, &resp, err, sizeof(err));
	if (rc == 0 && (resp->code != 0 || resp->body_case != CORAL__CTL_RESPONSE__BODY_GES_EVENT)) {
		rc = resp->code ? resp->code : CORAL_EDECODE;
		snprintf(err, sizeof(err), "%s", resp->error && resp->error[0] ? resp->error : coral_strerror(rc));
	}
	if (resp)
		coral_ctl_response_free(resp);
	if (rc != 0) {
		ev_close(s);
		return fail(s, rc, "lock events from lmdd: %s", err);
	}
	*fd = s->ev_fd;
	return 0;
}

int coral_lock_event_next(struct coral_session *s, struct coral_lock_event *ev)
{
	if (s == NULL || ev == NULL)
		return CORAL_EINVAL;
	if (s->ev_threaded)
		return fail(s, CORAL_EBUSY, "the session's lock events go to its callback (coral_lock_on_event)");
	if (s->ev_fd < 0)
		return fail(s, CORAL_ECLOSED, "the session is not subscribed to its lock events (coral_lock_events)");
	return ev_take(s, ev, false);
}

/* coral_lock_on_event's thread: waits on the subscription and calls fn for each event, until
 * the session closes (or the subscription ends: lmdd restarted). */
static void *ev_main(void *arg)
{
	struct coral_session *s = arg;
	while (!atomic_load(&s->ev_stop) && s->ev_fd >= 0) {
		struct pollfd p = {.fd = s->ev_fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct coral_lock_event ev;
		int rc;
		while ((rc = ev_take(s, &ev, true)) == 1)
			s->ev_fn(s->ev_arg, &ev);
		if (rc < 0)
			break;
	}
	return NULL;
}

int coral_lock_on_event(struct coral_session *s, void (*fn)(void *arg, const struct coral_lock_event *ev), void *arg)
{
	if (s == NULL || fn == NULL)
		return CORAL_EINVAL;
	if (s->ev_threaded)
		return fail(s, CORAL_EEXIST, "the session's lock events already go to a callback");
	int fd;
	int rc = coral_lock_events(s, &fd);
	if (rc != 0)
		return rc;
	s->ev_fn = fn;
	s->ev_arg = arg;
	atomic_store(&s->ev_stop, false);
	if (pthread_create(&s->ev_thread, NULL, ev_main, s) != 0)
		return fail(s, CORAL_ESYS, "no thread for the session's lock events: %s", strerror(errno));
	s->ev_threaded = true;
	return 0;
}

int coral_session_set_priority(struct coral_session *s, int priority)
{
	if (s == NULL)
		return CORAL_EINVAL;
	if (priority < -100 || priority > 100)
		return fail(s, CORAL_EINVAL, "a session's priority is -100 to 100, not %d", priority);
	s->prio = priority;
	return 0;
}

/* The lock calls whose answers were lost with their connection are let go at lmdd (the
 * caller was told they failed): those lmdd cannot be told yet are kept for the next call. */
static void abandon_lost(struct coral_session *s)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < s->nabandon; i++) {
		Coral__GesLockRequest g = CORAL__GES_LOCK_REQUEST__INIT;
		g.op = 5;
		g.tag = s->abandon[i];
		Coral__GesLockReply *r;
		Coral__CtlResponse *resp;
		if (ask_lmdd(s, &g, 5000, &r, &resp) == 0)
			coral_ctl_response_free(resp);
		else if (s->lmdd_broke)
			s->abandon[k++] = s->abandon[i];  /* lmdd not there yet: again at the next call */
	}
	s->nabandon = k;
}

/* A conversion or an unlock whose connection to lmdd broke is asked again, as lmdd comes
 * back (a restart, [cache] restart_wait_ms at most): the restarted lmdd has settled the one
 * under way (CORAL_ERETRY until then: cancelled where it waited, the lock kept in the mode its
 * master granted), and one still under way at an lmdd that did not restart ends first
 * (CORAL_EBUSY until then); a conversion asked again to a mode already granted is granted at
 * once. Whether rc (the last answer) is worth another try. */
static bool ask_again(struct coral_session *s, int rc, bool *broke, uint64_t t0)
{
	if (rc == 0)
		return false;
	if (s->lmdd_broke && !s->lmdd_unsent)
		*broke = true;
	if (!(s->lmdd_broke || rc == CORAL_ERETRY || (*broke && rc == CORAL_EBUSY)))
		return false;
	if (coral_now_mono_ns() - t0 >= (uint64_t)s->conf.cache.restart_wait_ms * 1000000ull)
		return false;
	nap_ms(20);
	return true;
}

/* A lock (name given) or a conversion (*lkid given), answered when done or, async, at once
 * (its end comes as an event on the session's subscription). */
static int lock_call_in(struct coral_session *s, const void *name, size_t len, uint64_t *lkid, int mode, unsigned flags,
			int timeout_ms, const void *lvb_write, void *lvb_read, int *lvb_valid, bool async);

static int lock_call(struct coral_session *s, const void *name, size_t len, uint64_t *lkid, int mode, unsigned flags,
		     int timeout_ms, const void *lvb_write, void *lvb_read, int *lvb_valid, bool async)
{
	if (s == NULL)
		return CORAL_EINVAL;
	int rc = enter(s);
	if (rc != 0)
		return rc;
	rc = lock_call_in(s, name, len, lkid, mode, flags, timeout_ms, lvb_write, lvb_read, lvb_valid, async);
	leave(s);
	return rc;
}

static int lock_call_in(struct coral_session *s, const void *name, size_t len, uint64_t *lkid, int mode, unsigned flags,
			int timeout_ms, const void *lvb_write, void *lvb_read, int *lvb_valid, bool async)
{
	if ((name != NULL && (len == 0 || len > 64)) || mode < CORAL_LOCK_NL || mode > CORAL_LOCK_EX ||
	    (flags & ~LOCK_FLAGS) || lkid == NULL || timeout_ms < 0)
		return fail(s, CORAL_EINVAL, "a lock needs a name of 1 to 64 bytes, a mode CORAL_LOCK_NL..EX, known "
					     "flags and somewhere to put its id");
	if (!async && s->ges && s->slot >= 0 && !coral_cluster_fenced(s->cl)) {
		/* granted, converted or refused in shared memory when nothing waits on a resource
		 * this node masters; anything else goes to lmdd */
		bool valid = false;
		int rc = name ? coral_ges_fast_lock(s->ges, s->map, (uint32_t)s->node->id, name, len, mode, flags, s->id,
						   (uint32_t)s->slot + 1, s->prio, lkid, lvb_read, &valid)
			      : coral_ges_fast_convert(s->ges, *lkid, s->id, (uint32_t)s->slot + 1, mode, flags, lvb_write,
						       lvb_read, &valid);
		if (rc == 0 && lvb_valid)
			*lvb_valid = valid;
		if (rc == CORAL_EHELD)
			return fail(s, rc, "%s: %s", name ? "lock" : "convert", coral_strerror(rc));
		if (rc != CORAL_GES_SLOW)
			return rc;
	}
	if (s->nabandon)
		abandon_lost(s);
	Coral__GesLockRequest g = CORAL__GES_LOCK_REQUEST__INIT;
	g.op = name ? 1 : 2;
	g.priority = s->prio;
	if (name)
		g.tag = ++s->lock_tag;
	g.name.data = (uint8_t *)name;
	g.name.len = name ? len : 0;
	g.lkid = name ? 0 : *lkid;
	g.mode = (uint32_t)mode;
	g.flags = flags;
	g.async = async;
	if (lvb_write) {
		g.lvb.data = (uint8_t *)lvb_write;
		g.lvb.len = CORAL_LVB_LEN;
	}
	Coral__GesLockReply *r;
	Coral__CtlResponse *resp;
	int rc = ask_lmdd(s, &g, timeout_ms, &r, &resp);
	bool broke = false;
	for (uint64_t t0 = coral_now_mono_ns(); !name && ask_again(s, rc, &broke, t0);)
		rc = ask_lmdd(s, &g, timeout_ms, &r, &resp);
	if (rc != 0) {
		/* a lock asked for whose answer was lost may have been granted all the same: let go
		 * at once if lmdd is back, else before the next call (one never sent, with no
		 * connection to lmdd, is not: 16 of those in a row would push out the one that
		 * counts) */
		if (name && s->lmdd_broke && !s->lmdd_unsent) {
			if (s->nabandon == sizeof(s->abandon) / sizeof(s->abandon[0]))
				memmove(s->abandon, s->abandon + 1, sizeof(s->abandon) - sizeof(s->abandon[0]));
			else
				s->nabandon++;
			s->abandon[s->nabandon - 1] = g.tag;
			char msg[CORAL_ERRMSG_MAX];
			snprintf(msg, sizeof(msg), "%s", s->errmsg);
			abandon_lost(s);
			snprintf(s->errmsg, sizeof(s->errmsg), "%s", msg);
		}
		return rc;
	}
	*lkid = r->lkid;
	if (!async)
		lvb_out(r, lvb_read, lvb_valid);
	coral_ctl_response_free(resp);
	return 0;
}

int coral_lock(struct coral_session *s, const void *name, size_t len, int mode, unsigned flags, int timeout_ms,
	       uint64_t *lkid, void *lvb, int *lvb_valid)
{
	if (name == NULL)
		return s ? fail(s, CORAL_EINVAL, "a lock needs a name") : CORAL_EINVAL;
	return lock_call(s, name, len, lkid, mode, flags, timeout_ms, NULL, lvb, lvb_valid, false);
}

int coral_lock_convert(struct coral_session *s, uint64_t lkid, int mode, unsigned flags, int timeout_ms,
		       const void *lvb_write, void *lvb_read, int *lvb_valid)
{
	return lock_call(s, NULL, 0, &lkid, mode, flags, timeout_ms, lvb_write, lvb_read, lvb_valid, false);
}

int coral_lock_async(struct coral_session *s, const void *name, size_t len, int mode, unsigned flags, int timeout_ms,
		     uint64_t *lkid)
{
	if (name == NULL)
		return s ? fail(s, CORAL_EINVAL, "a lock needs a name") : CORAL_EINVAL;
	return lock_call(s, name, len, lkid, mode, flags, timeout_ms, NULL, NULL, NULL, true);
}

int coral_lock_convert_async(struct coral_session *s, uint64_t lkid, int mode, unsigned flags, int timeout_ms,
			     const void *lvb_write)
{
	return lock_call(s, NULL, 0, &lkid, mode, flags, timeout_ms, lvb_write, NULL, NULL, true);
}

static int unlock_in(struct coral_session *s, uint64_t lkid, const void *lvb_write);

int coral_unlock(struct coral_session *s, uint64_t lkid, const void *lvb_write)
{
	if (s == NULL)
		return CORAL_EINVAL;
	int rc = enter(s);
	if (rc != 0)
		return rc;
	rc = unlock_in(s, lkid, lvb_write);
	leave(s);
	return rc;
}

static int unlock_in(struct coral_session *s, uint64_t lkid, const void *lvb_write)
{
	if (s->ges && s->slot >= 0 &&
	    coral_ges_fast_unlock(s->ges, lkid, s->id, (uint32_t)s->slot + 1, lvb_write) == 0)
		return 0;
	Coral__GesLockRequest g = CORAL__GES_LOCK_REQUEST__INIT;
	g.op = 3;
	g.lkid = lkid;
	if (lvb_write) {
		g.lvb.data = (uint8_t *)lvb_write;
		g.lvb.len = CORAL_LVB_LEN;
	}
	Coral__GesLockReply *r;
	Coral__CtlResponse *resp;
	int rc = ask_lmdd(s, &g, 0, &r, &resp);
	bool broke = false;
	for (uint64_t t0 = coral_now_mono_ns(); ask_again(s, rc, &broke, t0);)
		rc = ask_lmdd(s, &g, 0, &r, &resp);
	if (broke && rc == CORAL_ENOENT)
		rc = 0;  /* the unlock that broke was done, its answer lost: the lmdd now has no such lock */
	else if (broke && rc != 0)
		s->unlock_broke = lkid;
	else if (rc == CORAL_ENOENT && s->unlock_broke == lkid)
		rc = 0;  /* (the same, asked again by the caller after a call that gave up) */
	if (rc != 0)
		return rc;
	if (s->unlock_broke == lkid)
		s->unlock_broke = 0;
	s->errmsg[0] = 0;
	if (resp)
		coral_ctl_response_free(resp);
	return 0;
}

/* ---- the resource manager (rsrcmgrd(8)) ------------------------------------------------ */

static int call_stopped(struct coral_session *s)
{
	char why[256];
	if (s->rsrc == NULL || s->slot < 0 || coral_rsrc_sess_stopped(s->rsrc, s->slot, why, sizeof(why)) == 0)
		return 0;
	return fail(s, CORAL_ECANCELED, "%s", why);
}

int coral_session_set_attr(struct coral_session *s, const char *name, const char *value)
{
	int a = name ? coral_rsrc_attr_parse(name) : -1;
	if (a != CORAL_RSRC_SERVICE && a != CORAL_RSRC_MODULE)
		return fail(s, CORAL_EINVAL, "a session sets its service or its module (\"%s\" is neither)", name ? name : "");
	if (value == NULL || strlen(value) >= CORAL_RSRC_ATTR)
		return fail(s, CORAL_EINVAL, "a %s name has at most %d bytes", name, CORAL_RSRC_ATTR - 1);
	if (s->rsrc == NULL || s->slot < 0)
		return fail(s, CORAL_EINVAL, "the session has no slot on its node");
	coral_rsrc_sess_set(s->rsrc, s->slot, a, value);
	return 0;
}

int coral_session_group(struct coral_session *s, char *buf, size_t len)
{
	if (buf == NULL || len == 0)
		return fail(s, CORAL_EINVAL, "no buffer for the group's name");
	buf[0] = '\0';
	if (s->rsrc == NULL || s->slot < 0)
		return fail(s, CORAL_EINVAL, "the session has no slot on its node");
	uint32_t g = atomic_load(&s->rsrc->sess[s->slot].group);
	if (g == 0 || g > CORAL_RSRC_GROUPS)
		return fail(s, CORAL_ENOENT, "the session is in no group");
	char name[CORAL_RSRC_NAME];
	memcpy(name, s->rsrc->groups[g - 1].name, sizeof(name));
	name[sizeof(name) - 1] = '\0';
	snprintf(buf, len, "%s", name);
	return 0;
}

/* A slot of group g's cluster-wide active session pool (scope=cluster): one of n EX locks
 * "rsrc-pool:GROUP:K" at lmdd, the first free one (tried without waiting, from a place of the
 * session's own so that sessions spread), else a wait on one for a fifth of a second at a
 * time and a new round, up to the group's queue timeout or timeout_ms if shorter. lmdd gives
 * the slot back if the process dies, and after its node's loss once smond has recovered it. */
static int cluster_slot(struct coral_session *s, int g, uint32_t n, int timeout_ms)
{
	struct coral_rsrc_group *G = &s->rsrc->groups[g];
	char gname[CORAL_RSRC_NAME];
	memcpy(gname, G->name, sizeof(gname));
	gname[sizeof(gname) - 1] = '\0';
	uint64_t deadline = coral_rsrc_deadline(atomic_load(&G->queue_timeout_ms), timeout_ms, coral_now_mono_ns());
	uint32_t start = s->id % n;
	char name[96];
	for (;;) {
		for (uint32_t i = 0; i < n; i++) {
			int len = snprintf(name, sizeof(name), "rsrc-pool:%s:%u", gname, (start + i) % n);
			uint64_t lkid = 0;
			int rc = coral_lock(s, name, (size_t)len, CORAL_LOCK_EX, CORAL_LOCK_NOQUEUE | CORAL_LOCK_NODLCKWT, 0,
					    &lkid, NULL, NULL);
			if (rc == 0) {
				s->pool_lkid = lkid;
				return 0;
			}
			if (rc != CORAL_ERR_HELD)
				return rc;
		}
		uint64_t now = coral_now_mono_ns();
		if (now >= deadline) {
			atomic_fetch_add(&G->timeouts, 1);
			return fail(s, CORAL_ETIMEDOUT, "the call waited for group %s's cluster-wide active session pool "
				    "(%u calls across the cluster) past its queue timeout", gname, n);
		}
		uint64_t left_ms = deadline == UINT64_MAX ? 200 : (deadline - now) / 1000000ull + 1;
		int len = snprintf(name, sizeof(name), "rsrc-pool:%s:%u", gname, start);
		uint64_t lkid = 0;
		int rc = coral_lock(s, name, (size_t)len, CORAL_LOCK_EX, CORAL_LOCK_NODLCKWT, left_ms < 200 ? (int)left_ms : 200,
				    &lkid, NULL, NULL);
		if (rc == 0) {
			s->pool_lkid = lkid;
			return 0;
		}
		if (rc != CORAL_ETIMEDOUT)
			return rc;
		start = (start + 1) % n;
	}
}

int coral_call_begin(struct coral_session *s, int timeout_ms)
{
	if (s->rsrc == NULL || s->slot < 0)
		return fail(s, CORAL_EINVAL, "the session has no slot on its node");
	if (call_stopped(s) != 0)
		return CORAL_ECANCELED;
	if (atomic_load(&s->rsrc->sess[s->slot].in_call) != 0)
		return fail(s, CORAL_EINVAL, "a call of this session is under way already (coral_call_end ends it)");
	/* a cluster-wide pool's slot first (the group has no pool of the node's then) */
	int g = coral_rsrc_sess_governing(s->rsrc, s->slot);
	uint32_t n = g >= 0 ? atomic_load(&s->rsrc->groups[g].cluster_pool) : 0;
	if (n) {
		int rc = cluster_slot(s, g, n, timeout_ms);
		if (rc != 0)
			return rc;
	}
	int rc = coral_rsrc_call_begin(s->rsrc, s->slot, timeout_ms);
	if (rc != 0 && s->pool_lkid) {
		coral_unlock(s, s->pool_lkid, NULL);
		s->pool_lkid = 0;
	}
	if (rc == CORAL_ECANCELED)
		return call_stopped(s);
	if (rc == CORAL_ETIMEDOUT) {
		char gr[CORAL_RSRC_NAME];
		coral_session_group(s, gr, sizeof(gr));
		return fail(s, rc, "the call waited in group %s's queue for its active session pool past its "
			    "queue timeout (coralctl rsrc groups shows the pool)", gr);
	}
	if (rc == CORAL_EINVAL)
		return fail(s, rc, "a call of this session is under way already (coral_call_end ends it)");
	return rc;
}

int coral_call_end(struct coral_session *s)
{
	if (s->rsrc == NULL || s->slot < 0)
		return fail(s, CORAL_EINVAL, "the session has no slot on its node");
	int rc = coral_rsrc_call_end(s->rsrc, s->slot);
	if (rc != CORAL_EINVAL && s->pool_lkid) {
		coral_unlock(s, s->pool_lkid, NULL); /* its slot of the cluster-wide pool */
		s->pool_lkid = 0;
	}
	if (rc == CORAL_ECANCELED)
		return fail(s, rc, "the call was cancelled by the resource manager: it ran past its group's "
			    "execution-time limit (it has ended; roll back what it changed if not done)");
	if (rc != 0)
		return fail(s, rc, "no call of this session is under way (coral_call_begin begins one)");
	return 0;
}

int coral_px_request(struct coral_session *s, int dop, int timeout_ms, int *granted)
{
	if (granted == NULL || dop < 1)
		return fail(s, CORAL_EINVAL, "a degree of parallelism of at least 1, and where to put the servers granted");
	*granted = 0;
	if (s->rsrc == NULL || s->slot < 0)
		return fail(s, CORAL_EINVAL, "the session has no slot on its node");
	uint32_t g = 0;
	int rc = coral_rsrc_px_request(s->rsrc, s->slot, (uint32_t)dop, timeout_ms, &g);
	if (rc == CORAL_EINVAL)
		return fail(s, rc, "the session holds parallel servers already (coral_px_release gives them back)");
	if (rc == CORAL_ETIMEDOUT)
		return fail(s, rc, "the statement waited for parallel servers past its group's queue timeout (coralctl "
			    "rsrc stats shows the node's pool)");
	*granted = (int)g;
	return rc;
}

int coral_px_release(struct coral_session *s)
{
	if (s->rsrc == NULL || s->slot < 0)
		return fail(s, CORAL_EINVAL, "the session has no slot on its node");
	coral_rsrc_px_release(s->rsrc, s->slot);
	return 0;
}

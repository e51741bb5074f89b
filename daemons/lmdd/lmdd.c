/* lmdd: the Global Enqueue Service. Its wiring on the daemon kit: the master side is the
 * pure core (ges.c) over the resources grdd's bucket map gives this node; the requester
 * side is this node's sessions' locks (own locks, in the SGA: they outlive a restart of
 * lmdd), each sent to its resource's master and answered to the session when the master
 * says, or told on the session's subscription (blocking notifications, asynchronous ends).
 * The rebuild puts the locks back at new masters when the map moves; the deadlock
 * coordinator (the lowest member) runs the pure dlk.c over the masters' reports. Sessions
 * ask through the control socket, their process checked against their slot. What is not
 * built yet is said in lmdd(8). */
#include "ges.h"
#include "ges_msg.h"
#include "dlk.h"

#include "bufcache.h"
#include "ges_own.h"
#include "cluster.h"
#include "ctl.h"
#include "daemon.h"
#include "errors.h"
#include "grd.h"
#include "ipc.h"
#include "kit.h"
#include "log.h"
#include "util.h"

#include <stdatomic.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 10
#define OWN_MAX CORAL_GES_OWN_MAX
#define ASYNC_COOKIE UINT64_MAX  /* an operation under way that no call waits for (kit.h: no wait) */
#define LVB_LEN GES_MSG_LVB
#define RESEND_MS 200          /* a request refused by a node that is not its master: asked again */
#define RESEND_MAX 50
#define OWED_BYTES_MAX (8u << 20)  /* owed to one peer (send_msg); more is refused, counted */
#define DIRTY_MAX 1024         /* resources whose waits changed, reported at the next tick */
#define HANDOFF_MAX 4096       /* value blocks handed over to new masters at a map change */
#define WAITS_MAX 256          /* edges reported for one resource (more: the first ones) */
#define DEADLOCK_HISTORY 64
#define SWEEP_WAITERS 256      /* waiters searched from at each sweep */
#define OWN_PASS_TICKS 5       /* on_tick: the pass for ended sessions' locks, every 50 ms */

enum { OP_LOCK = 1, OP_CONVERT, OP_UNLOCK, OP_CANCEL, OP_ABANDON };

/* A lock of this node's sessions: in the SGA (ges_own.h), so that a restarted lmdd has them. */
#define own coral_ges_own_lock

struct lmdd {
	struct coral_daemon *d;
	struct coral_kit kit;
	struct ges_core *core;
	uint32_t self;
	struct coral_cluster_sga *cl;
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir;
	struct coral_cache *cache;
	struct coral_ges_own *ownsec;  /* the SGA's: locks, their count, the next lock id */
	struct own *own;
	uint64_t instance;             /* this lmdd's, told to the others with REBUILD_DONE */
	bool restarted;                /* an lmdd served before this one: every lock is put back */
	uint64_t lost_seen[CORAL_MAX_NODES], done_seen[CORAL_MAX_NODES];
	/* the rebuild (lmdd(8), REBUILD): the map version it is for, the members that must say
	 * they have rebuilt, and the newest version each has said so for */
	uint64_t map_seen;
	uint32_t ring[CORAL_MAX_NODES], nring;
	/* each bucket's master in the map seen last and in the one before (mark_inherited): a
	 * bucket's inherited mark or value blocks are taken only from one of them */
	uint8_t owner_now[CORAL_GRD_BUCKETS], owner_before[CORAL_GRD_BUCKETS];
	uint64_t done_from[CORAL_MAX_NODES + 1];
	uint64_t inst_from[CORAL_MAX_NODES + 1];  /* the instance of each node's lmdd, as last told */
	uint64_t held_since_ms;
	uint64_t rebuild_to;           /* nodes (bit id-1) still owed this node's locks and word */
	uint64_t done_sent_ms;
	uint64_t sent, not_master, refused_msgs, basts_received, basts_delivered;
	uint64_t joining_refused, joining_waits; /* see on_request */
	uint64_t unlocks_early;                 /* see h_lock */
	uint32_t slow_made;                     /* entries made slow since fast_give_back's last full pass */
	uint32_t give_back_ticks;               /* ticks since then */
	uint64_t next_resend_ms;                /* no lock of this node's is sent again before (0: none known) */
	uint32_t own_ticks;                     /* ticks since the last pass over this node's locks */
	uint64_t orphans_settled;  /* conversions under way at a restart, settled (settle_orphan) */
	uint32_t fast_overflow;        /* resources of the core counted in a bucket's overflow */
	/* messages each peer is owed (send_msg): its connection was not up, or full */
	struct owed {
		struct owed_msg {
			uint8_t *buf;
			size_t len;
		} *msg;
		uint32_t head, n, cap;
		size_t bytes;
	} owed[CORAL_MAX_NODES + 1];
	uint64_t owed_now, owed_total, owed_refused;
	/* value blocks of the resources the map moved from this node to a live one, owed to
	 * their new masters before this node's word (flush_rebuilds) */
	struct handoff {
		uint32_t to;
		uint8_t len, valid;
		uint8_t name[GES_NAME_MAX];
		uint8_t lvb[LVB_LEN];
	} *handoff;
	uint32_t nhandoff;
	uint64_t handoffs_lost;
	/* buckets marked inherited (ges_own.h) that the map gave to another member: the mark is
	 * owed to it with the value blocks */
	struct bucket_handoff {
		uint32_t bucket, to;
	} *bhand;
	uint32_t nbhand;
	/* sessions subscribed to their locks' events (coral_lock_events), by slot index */
	struct sub {
		uint64_t conn, req_id;
		uint32_t session;
	} subs[CORAL_CACHE_SESSIONS];
	/* deadlock detection (lmdd(8), DEADLOCKS): the resources whose waits changed since they
	 * were last reported to the coordinator (all: too many to list), the coordinator they
	 * were reported to, and, while this node is it, the wait-for graph and what it found */
	uint8_t dirty[DIRTY_MAX][GES_NAME_MAX + 1];
	uint32_t ndirty;
	bool dirty_all;
	uint32_t coordinator;
	struct dlk *dlk;               /* the coordinator's graph and probes, while this node is it */
	struct dlk_stats dlk_before;   /* what earlier terms as the coordinator counted */
	struct deadlock {
		uint64_t at_ms;
		int n, victim;
		struct wfg_edge cycle[WFG_CYCLE_MAX];
	} history[DEADLOCK_HISTORY];
	uint64_t nhistory;
	uint64_t victims;
};

static uint64_t now_ms(void) { return coral_now_mono_ns() / 1000000ull; }

static bool in_ring(const struct lmdd *m, uint32_t n)
{
	for (uint32_t i = 0; i < m->nring; i++)
		if (m->ring[i] == n)
			return true;
	return false;
}

/* The coordinator leaves out the waits of sessions of nodes not in the map (lost: their
 * requests go at every master as it learns of the loss, so a cycle through one is no
 * deadlock), even from masters that have not learnt of it yet. */
static void dlk_members(struct lmdd *m)
{
	if (m->dlk == NULL || m->nring == 0)
		return;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
		dlk_node_lost(m->dlk, n, !in_ring(m, n));
}
static uint64_t bit(uint32_t n) { return 1ull << (n - 1); }

/* The master of a resource name: its bucket in grdd's map, as for blocks (a hash of the
 * name into a resource id of its own type). */
static uint32_t master_of(const struct lmdd *m, const uint8_t *name, size_t len, uint64_t *version)
{
	struct coral_resid r;
	coral_ges_resid(name, len, &r);
	struct coral_grd_where w;
	coral_grd_lookup(m->map, &r, &w);
	if (version)
		*version = w.version;
	return w.master;
}

static uint32_t bucket_of(const uint8_t *name, size_t len)
{
	struct coral_resid r;
	coral_ges_resid(name, len, &r);
	return coral_resid_bucket(&r);
}

/* Whether the resource's bucket came from a lost node (grdd's map says so until its
 * recovery, the inherited marks after): a value block it had there was lost with it. */
static bool from_lost(const struct lmdd *m, const uint8_t *name, size_t len)
{
	struct coral_resid r;
	coral_ges_resid(name, len, &r);
	struct coral_grd_where w;
	coral_grd_lookup(m->map, &r, &w);
	return w.lost_owner != 0 || coral_ges_inherited(m->ownsec, w.bucket);
}

/* Messages to a peer the interconnect could not take (its connection not up yet: a node's
 * first second, when its peers are still in their reconnect backoff towards it; or its send
 * queue full), in order, sent at the next tick before anything newer. A message the
 * interconnect refuses is otherwise lost, and a request, answer or unlock lost waits for
 * ever (a session's call, or every lock behind one never let go). */
static void owed_drop(struct lmdd *m, uint32_t to)
{
	struct owed *q = &m->owed[to];
	for (uint32_t i = 0; i < q->n; i++)
		free(q->msg[(q->head + i) % q->cap].buf);
	m->owed_now -= q->n;
	free(q->msg);
	memset(q, 0, sizeof(*q));
}

static int owed_push(struct lmdd *m, uint32_t to, const uint8_t *buf, size_t len)
{
	struct owed *q = &m->owed[to];
	if (q->bytes + len > OWED_BYTES_MAX) {
		m->owed_refused++;
		log_warn("%llu messages (%zu bytes) wait for node %u's connection: more are refused (lmdd(8), "
			 "Messages owed)", (unsigned long long)q->n, q->bytes, to);
		return CORAL_EBUSY;
	}
	if (q->n == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 64;
		struct owed_msg *a = malloc(cap * sizeof(*a));
		if (a == NULL)
			return CORAL_ENOMEM;
		for (uint32_t i = 0; i < q->n; i++)
			a[i] = q->msg[(q->head + i) % q->cap];
		free(q->msg);
		q->msg = a;
		q->cap = cap;
		q->head = 0;
	}
	uint8_t *copy = malloc(len ? len : 1);
	if (copy == NULL)
		return CORAL_ENOMEM;
	memcpy(copy, buf, len);
	q->msg[(q->head + q->n) % q->cap] = (struct owed_msg){copy, len};
	q->n++;
	q->bytes += len;
	m->owed_now++;
	m->owed_total++;
	return 0;
}

/* What is owed to each peer, oldest first, as far as its connection takes it. */
static void owed_flush(struct lmdd *m)
{
	if (m->owed_now == 0)
		return;
	for (uint32_t to = 1; to <= CORAL_MAX_NODES; to++) {
		struct owed *q = &m->owed[to];
		while (q->n > 0) {
			struct owed_msg *o = &q->msg[q->head];
			if (coral_kit_send(&m->kit, to, GES_NET_MSG, o->buf, o->len) != 0)
				break;
			m->sent++;
			q->bytes -= o->len;
			free(o->buf);
			q->head = (q->head + 1) % q->cap;
			q->n--;
			m->owed_now--;
		}
	}
}

/* Sends g to node `to`: 0 once the interconnect has it or it is owed (above), in order with
 * what went before. */
static int send_msg(struct lmdd *m, uint32_t to, const Coral__GesMsg *g)
{
	if (to < 1 || to > CORAL_MAX_NODES)
		return CORAL_EINVAL;
	uint8_t stack[512];
	size_t len;
	uint8_t *buf = ges_msg_pack(g, stack, sizeof(stack), &len);
	if (buf == NULL)
		return CORAL_ENOMEM;
	int rc = m->owed[to].n ? CORAL_EBUSY : coral_kit_send(&m->kit, to, GES_NET_MSG, buf, len);
	if (rc == 0)
		m->sent++;
	else if (rc == CORAL_ENOTCONN || rc == CORAL_EBUSY)
		rc = owed_push(m, to, buf, len);
	if (buf != stack)
		free(buf);
	return rc;
}

/* A resource name for coralctl (a proto string): printable ASCII, the rest as '?'. */
static char *printable(char *dst, const uint8_t *name, size_t len)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = name[i] >= 0x20 && name[i] < 0x7f ? (char)name[i] : '?';
	dst[len] = 0;
	return dst;
}

/* A session's call answered later (a lock queued behind its holder, for as long as it
 * takes): its connection is not closed as idle meanwhile ([lmdd] client_idle_ms). */
static uint64_t wait_add(struct lmdd *m, uint64_t conn, const Coral__CtlRequest *req, const uint32_t aux[3])
{
	uint64_t cookie = coral_kit_wait_add(&m->kit, conn, req, aux);
	if (cookie != 0)
		coral_ipc_conn_waiting(coral_ipc_server_conn(m->d->ipc, conn), true);
	return cookie;
}

static bool wait_take(struct lmdd *m, uint64_t cookie, struct coral_wait *w)
{
	if (!coral_kit_wait_take(&m->kit, cookie, w))
		return false;
	coral_ipc_conn_waiting(coral_ipc_server_conn(m->d->ipc, w->conn), false);
	return true;
}

/* ---- own locks ------------------------------------------------------------------------- */

/* Whether o is lmdd's (not free, not a session's fast lock). */
static bool mine(const struct own *o) { return atomic_load(&o->used) == CORAL_GES_OWN_LMDD; }

/* Own lock lkid, lmdd's (a fast lock is its session's: NULL). */
static struct own *own_find(struct lmdd *m, uint64_t lkid)
{
	struct own *o = coral_ges_own_find(m->ownsec, lkid);
	return o && mine(o) ? o : NULL;
}

static struct own *own_new(struct lmdd *m) { return coral_ges_own_claim(m->ownsec, CORAL_GES_OWN_LMDD); }

static void own_free(struct lmdd *m, struct own *o) { coral_ges_own_free(m->ownsec, o); }

/* Sends the session's operation on o to the resource's master. */
/* o is sent again in ms (on_tick's pass over the node's locks does it). */
static void set_resend(struct lmdd *m, struct own *o, uint64_t ms)
{
	o->resend_ms = now_ms() + ms;
	if (m->next_resend_ms == 0 || o->resend_ms < m->next_resend_ms)
		m->next_resend_ms = o->resend_ms;
}

static void own_send(struct lmdd *m, struct own *o)
{
	Coral__GesMsg g = CORAL__GES_MSG__INIT;
	g.kind = o->op == OP_LOCK ? GES_REQUEST : o->op == OP_CONVERT ? GES_CONVERT : o->op == OP_UNLOCK ? GES_UNLOCK : GES_CANCEL;
	g.name.data = o->name;
	g.name.len = o->len;
	g.lkid = o->lkid;
	g.session = (uint64_t)o->slot << 32 | o->session;
	g.mode = o->want;
	g.flags = o->flags;
	g.timeout_ms = o->timeout_ms;
	g.priority = o->prio;
	if (o->has_lvb) {
		g.lvb.data = o->lvb;
		g.lvb.len = LVB_LEN;
	}
	o->master = master_of(m, o->name, o->len, &g.map_version);
	if (o->master == 0) {
		set_resend(m, o, RESEND_MS);  /* no map yet */
		return;
	}
	if (send_msg(m, o->master, &g) != 0)
		set_resend(m, o, RESEND_MS);  /* not taken, not even owed (its bound): again */
}

static void own_release(struct lmdd *m, struct own *o);

static bool send_event(struct lmdd *m, const struct own *o, Coral__GesEvent *ev);

static void answer_session(struct lmdd *m, struct own *o, int code, int mode, const uint8_t *lvb, bool lvb_valid,
			   bool demoted)
{
	uint64_t cookie = o->cookie;
	o->cookie = 0;
	if (o->async) {
		/* asked asynchronously: the end goes to the session's subscription */
		o->async = 0;
		Coral__GesEvent ev = CORAL__GES_EVENT__INIT;
		ev.kind = 2;
		ev.lkid = o->lkid;
		ev.code = code;
		ev.mode = (uint32_t)(mode < 0 ? 0 : mode);
		if (lvb) {
			ev.lvb.data = (uint8_t *)lvb;
			ev.lvb.len = LVB_LEN;
		}
		ev.lvb_valid = lvb_valid;
		ev.demoted = demoted;
		if (!send_event(m, o, &ev) && code == 0 && o->op == OP_LOCK)
			own_release(m, o);  /* nobody hears it any more: given back, as below */
		return;
	}
	struct coral_wait w;
	if (cookie == 0 || !wait_take(m, cookie, &w)) {
		/* nobody waits any more (the session's call ended): a new lock it never heard of
		 * is given back; a conversion keeps its mode (never weaker than the one the session
		 * knows of: only a conversion up waits) */
		if (code == 0 && o->op == OP_LOCK)
			own_release(m, o);
		return;
	}
	if (code != 0) {
		coral_daemon_answer_error(m->d, w.conn, w.req_id, code, "%s %.*s: %s",
					  o->op == OP_LOCK ? "lock" : o->op == OP_CONVERT ? "convert" : o->op == OP_UNLOCK ? "unlock" : "cancel",
					  (int)o->len, (const char *)o->name, coral_strerror(code));
		return;
	}
	Coral__GesLockReply r = CORAL__GES_LOCK_REPLY__INIT;
	r.lkid = o->lkid;
	r.mode = (uint32_t)(mode < 0 ? 0 : mode);
	if (lvb) {
		r.lvb.data = (uint8_t *)lvb;
		r.lvb.len = LVB_LEN;
	}
	r.lvb_valid = lvb_valid;
	r.demoted = demoted;
	r.master = o->master;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_LOCK;
	resp.ges_lock = &r;
	coral_daemon_answer(m->d, w.conn, w.req_id, &resp);
}

/* The session is told its lock is gone (unlocked, or never granted) only once the lock is
 * out of the SGA: the answer leaves at once (coral_frame_send), and an lmdd killed between
 * the two would leave a record its successor puts back, a lock its session was told it no
 * longer has (what the kill -9 races found, about one run in ten). */
static void answer_gone(struct lmdd *m, struct own *o, int code, int mode, const uint8_t *lvb, bool lvb_valid,
			bool demoted)
{
	struct own copy = *o;
	own_free(m, o);
	answer_session(m, &copy, code, mode, lvb, lvb_valid, demoted);
}

/* Cancels the operation of o waiting at its master (the master refuses it: ECANCELED). */
static int send_cancel(struct lmdd *m, const struct own *o)
{
	Coral__GesMsg g = CORAL__GES_MSG__INIT;
	g.kind = GES_CANCEL;
	g.lkid = o->lkid;
	g.name.data = (uint8_t *)o->name;
	g.name.len = o->len;
	return send_msg(m, o->master, &g);
}

/* A lock nobody will use any more (its session ended, its grant came to nobody, or its
 * operation was under way when the lmdd before this one died): unlocked at its master,
 * cancelled first if it is still queued there (on_answer), and forgotten then; nothing is
 * answered to anyone. */
static void own_release_as(struct lmdd *m, struct own *o, bool keep_lvb)
{
	o->dying = 1;
	if (!keep_lvb)
		o->has_lvb = 0;
	o->resend_ms = 0;
	if (o->cookie != 0) {
		struct coral_wait w;
		wait_take(m, o->cookie, &w);  /* its connection is gone */
		o->cookie = 0;
	}
	o->op = OP_UNLOCK;
	own_send(m, o);
}

static void own_release(struct lmdd *m, struct own *o) { own_release_as(m, o, false); }

/* A released lock's answers: its unlock done (or nothing there to unlock) ends it; queued,
 * it is cancelled, and whatever that ends in is unlocked again. */
static void dying_answer(struct lmdd *m, struct own *o, const Coral__GesMsg *g)
{
	if (g->op == GES_UNLOCK && g->code == CORAL_EBUSY) {
		send_cancel(m, o);
		return;
	}
	if (g->op == GES_UNLOCK) {
		own_free(m, o);
		return;
	}
	o->op = OP_UNLOCK;
	own_send(m, o);
}

/* A conversion whose answer was lost with the lmdd before this one is over: cancelled at its
 * master if it still waited there, the lock left in the mode the master has granted it (the
 * one from before, or the new one if granted already). The session asks again (libcoral
 * does: answered CORAL_ERETRY until here). */
static void settle_orphan(struct lmdd *m, struct own *o, const Coral__GesMsg *g)
{
	o->orphan = 0;
	o->op = 0;
	if (g->code == CORAL_ENOENT) {
		own_free(m, o);  /* the master has no such lock (nothing left to keep) */
		return;
	}
	if ((int)g->mode != o->mode) {
		o->mode = (int)g->mode;
		o->lvb_cur_valid = 0;  /* (the value read with that grant was lost with it) */
	}
	m->orphans_settled++;
}

/* The master's answer about one of this node's locks: to the operation waiting on it (at
 * once, g->op its kind), or the completion of one that was queued (g->op 0). */
static void on_answer(struct lmdd *m, uint32_t from, const Coral__GesMsg *g)
{
	struct own *o = own_find(m, g->lkid);
	if (o == NULL || from != o->master) {
		if (g->op != GES_CANCEL)
			m->refused_msgs++;
		return;
	}
	if (g->op == GES_CANCEL) {
		/* the cancel itself: the cancelled operation's refusal came before it and says
		 * what matters, but for a conversion settled after a restart (its answer lost with
		 * the lmdd before), whose mode is the one the master says the lock keeps */
		if (o->orphan && o->op == OP_CANCEL)
			settle_orphan(m, o, g);
		return;
	}
	int code = g->code;
	if (code == CORAL_EJOINING && !o->dying) {
		/* this node is not on the master's ring yet: asked again until it is (the
		 * request's own timeout bounds the wait) */
		m->joining_waits++;
		set_resend(m, o, RESEND_MS / 10);
		return;
	}
	if (code == CORAL_ENOTMASTER && o->resends < RESEND_MAX) {
		/* the map moved on: asked again in a moment, at the master this node's map names */
		m->not_master++;
		o->resends++;
		set_resend(m, o, RESEND_MS / 10);
		return;
	}
	if (o->dying) {
		dying_answer(m, o, g);
		return;
	}
	bool gone = false;
	if (code == CORAL_ENOENT && o->op == OP_UNLOCK)
		code = 0;  /* the master has no such lock (its lmdd restarted since it was granted): gone */
	if (code == 0 && (o->op == OP_LOCK || o->op == OP_CONVERT)) {
		o->mode = (int)g->mode;
		atomic_store(&o->blocking_ms, 0);  /* the master says again if it is in the way */
	}
	else if (code == 0 && o->op == OP_UNLOCK)
		gone = true;
	else if (code != 0 && o->op == OP_LOCK)
		gone = true;  /* never granted */
	else if (code != 0 && o->op == OP_CONVERT && g->demoted)
		o->mode = GES_NL;  /* refused, and taken down to NL meanwhile */
	const uint8_t *lvb = g->lvb.len == LVB_LEN ? g->lvb.data : NULL;
	if (code == 0 && (o->op == OP_LOCK || o->op == OP_CONVERT)) {
		/* its copy of the value block, for a rebuild (only a grant with VALBLK has one) */
		o->lvb_cur_valid = lvb && g->lvb_valid;
		if (lvb)
			memcpy(o->lvb_cur, lvb, LVB_LEN);
	}
	if (gone)
		answer_gone(m, o, code, o->mode, lvb, g->lvb_valid, g->demoted);
	else
		answer_session(m, o, code, o->mode, lvb, g->lvb_valid, g->demoted);
}

/* ---- the master side ------------------------------------------------------------------ */

static void core_done(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int code, int gr, bool demoted,
		      const uint8_t *lvb, bool lvb_valid)
{
	(void)session;
	struct lmdd *m = arg;
	Coral__GesMsg g = CORAL__GES_MSG__INIT;
	g.kind = GES_ANSWER;
	g.lkid = lkid;
	g.code = code;
	g.mode = (uint32_t)(gr < 0 ? 0 : gr);
	g.demoted = demoted;
	if (lvb) {
		g.lvb.data = (uint8_t *)lvb;
		g.lvb.len = LVB_LEN;
		g.lvb_valid = lvb_valid;
	}
	send_msg(m, node, &g);
}

static void core_bast(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int mode)
{
	(void)session;
	struct lmdd *m = arg;
	Coral__GesMsg g = CORAL__GES_MSG__INIT;
	g.kind = GES_BAST;
	g.lkid = lkid;
	g.mode = (uint32_t)mode;
	send_msg(m, node, &g);
}

static void core_unbast(void *arg, uint32_t node, uint64_t session, uint64_t lkid)
{
	(void)session;
	struct lmdd *m = arg;
	Coral__GesMsg g = CORAL__GES_MSG__INIT;
	g.kind = GES_UNBAST;
	g.lkid = lkid;
	send_msg(m, node, &g);
}

/* ---- the fast path (lmdd(8), FAST PATH) ---------------------------------------------------- */

/* What the fast table says must hold: a resource in the core has an entry marked slow in
 * its bucket, or is counted in the bucket's overflow (no session makes a new entry there
 * then); a fast entry's locks are all CORAL_GES_OWN_FAST and nothing of it is in the core. */

static struct coral_ges_fast_bucket *bucket(struct lmdd *m, uint32_t b) { return &coral_ges_fast_buckets(m->ownsec)[b]; }

/* A bucket whose mutex's holder died (its mutex held here): its fast entries are made
 * again from the fast locks that name them, value blocks not valid (a write may have been
 * cut); a fast lock in no entry was being made by the dead process: it goes. */
static void fast_repair(struct lmdd *m, uint32_t b)
{
	struct coral_ges_fast_bucket *bk = bucket(m, b);
	for (int w = 0; w < CORAL_GES_FAST_WAYS; w++) {
		struct coral_ges_fast_res *e = &bk->res[w];
		if (!e->used || e->slow)
			continue;
		e->nholders = 0;
		e->lvb_valid = 0;
		e->lvb_written = 1;
	}
	for (uint32_t k = 0; k < OWN_MAX; k++) {
		struct own *o = &m->own[k];
		if (atomic_load(&o->used) != CORAL_GES_OWN_FAST || o->fast_b != b + 1)
			continue;
		struct coral_ges_fast_res *e = coral_ges_fast_find(bk, o->name, o->len);
		if (e && !e->slow && e->nholders < CORAL_GES_FAST_HOLDERS)
			e->holders[e->nholders++] = (uint16_t)(k + 1);
		else
			coral_ges_own_free(m->ownsec, o);
	}
	bk->dirty = 0;
	atomic_fetch_add(&m->ownsec->fast_repairs, 1);
	log_warn("fast table bucket %u: a process died holding its lock; its entries were made again", b);
}

/* false: the bucket's mutex cannot be taken (logged): nothing is done there */
static bool fast_lock_bucket(struct lmdd *m, uint32_t b)
{
	if (!coral_ges_fast_lock_bucket(m->ownsec, b))
		return false;
	if (bucket(m, b)->dirty)
		fast_repair(m, b);
	return true;
}

/* lmdd takes resource name[len], which it masters and does not have in its core, over from
 * the fast path: its fast locks go into the core's queues as granted (they become lmdd's
 * own locks, mastered here), with its value block, and its entry says slow; with no entry,
 * one is made slow, or the bucket counts it in its overflow. CORAL_EFULL: the core has no
 * room for them (nothing changed). */
static int fast_take(struct lmdd *m, const uint8_t *name, size_t len)
{
	uint32_t b = coral_ges_fast_bucket_of(name, len);
	if (!fast_lock_bucket(m, b))
		return CORAL_ESYS;
	struct coral_ges_fast_bucket *bk = bucket(m, b);
	struct coral_ges_fast_res *e = coral_ges_fast_find(bk, name, len);
	int rc = 0;
	if (e == NULL) {
		for (int w = 0; w < CORAL_GES_FAST_WAYS && e == NULL; w++)
			if (!bk->res[w].used)
				e = &bk->res[w];
		if (e == NULL) {
			bk->overflow++;
			m->fast_overflow++;
		} else {
			memset(e, 0, sizeof(*e));
			e->used = 1;
			e->slow = 1;
			m->slow_made++;
			e->len = (uint8_t)len;
			memcpy(e->name, name, len);
		}
	} else if (!e->slow) {
		if (ges_core_resources(m->core) >= (uint32_t)m->d->conf.ges.max_resources ||
		    ges_core_locks(m->core) + e->nholders > (uint32_t)m->d->conf.ges.max_locks) {
			rc = CORAL_EFULL;
		} else {
			uint64_t now = now_ms();
			for (int i = 0; i < e->nholders; i++) {
				struct own *o = &m->own[e->holders[i] - 1];
				uint64_t sess = (uint64_t)o->slot << 32 | o->session;
				ges_rebuild(m->core, m->self, sess, o->lkid, name, len, o->mode, GES_NONE, o->flags, now);
				if (o->prio != 0)
					ges_set_priority(m->core, m->self, o->lkid, o->prio);
				o->master = m->self;
				o->op = 0;
				o->fast_b = 0;
				atomic_store(&o->used, CORAL_GES_OWN_LMDD);
			}
			ges_set_lvb(m->core, name, len, e->lvb, e->lvb_valid, e->lvb_written);
			e->slow = 1;
			m->slow_made++;
			e->nholders = 0;
			atomic_fetch_add(&m->ownsec->fast_imports, 1);
		}
	}
	coral_ges_fast_unlock_bucket(m->ownsec, b);
	return rc;
}

/* Takes a resource over unless the core has it already (then its entry is slow). */
static int fast_take_new(struct lmdd *m, const uint8_t *name, size_t len)
{
	return ges_has(m->core, name, len) ? 0 : fast_take(m, name, len);
}

static void take_each(void *arg, const uint8_t *name, size_t len) { fast_take((struct lmdd *)arg, name, len); }

/* The fast path is closed while the map moves or an lmdd starts: no fast grant from now on,
 * and every fast lock is taken over (so that the rebuild knows it). */
static void fast_close(struct lmdd *m)
{
	atomic_store(&m->ownsec->fast_version, 0);
	for (uint32_t b = 0; b < CORAL_GES_FAST_BUCKETS; b++) {
		if (!fast_lock_bucket(m, b))
			continue;
		struct coral_ges_fast_bucket *bk = bucket(m, b);
		uint8_t names[CORAL_GES_FAST_WAYS][GES_NAME_MAX];
		uint8_t lens[CORAL_GES_FAST_WAYS];
		int n = 0;
		for (int w = 0; w < CORAL_GES_FAST_WAYS; w++)
			if (bk->res[w].used && !bk->res[w].slow) {
				memcpy(names[n], bk->res[w].name, bk->res[w].len);
				lens[n++] = bk->res[w].len;
			}
		coral_ges_fast_unlock_bucket(m->ownsec, b);
		for (int i = 0; i < n; i++)
			if (fast_take(m, names[i], lens[i]) != 0)
				log_error("the fast locks on %.*s could not be taken over: the core is full ([ges] "
					  "max_resources, max_locks)", lens[i], (const char *)names[i]);
	}
}

/* The fast table made right again for what the core has (after its resources moved, or a
 * bucket overflowed and may have room now): entries of resources gone are freed, overflow
 * counted anew. */
static void fast_resync(struct lmdd *m)
{
	for (uint32_t b = 0; b < CORAL_GES_FAST_BUCKETS; b++) {
		if (!fast_lock_bucket(m, b))
			continue;
		struct coral_ges_fast_bucket *bk = bucket(m, b);
		for (int w = 0; w < CORAL_GES_FAST_WAYS; w++)
			if (bk->res[w].used && bk->res[w].slow && !ges_has(m->core, bk->res[w].name, bk->res[w].len))
				bk->res[w].used = 0;
		bk->overflow = 0;
		coral_ges_fast_unlock_bucket(m->ownsec, b);
	}
	m->fast_overflow = 0;
	ges_each_resource(m->core, take_each, m);  /* each has its slow entry, or is counted */
}

/* Resources of the core with no lock left go back to the fast path, their value blocks with
 * them; slow entries whose resource the core no longer has are freed. */
static void fast_give_back(struct lmdd *m)
{
	if (atomic_load(&m->ownsec->fast_version) == 0)
		return;
	/* The pass reads every bucket of the table (most of an idle lmdd's CPU when it ran every
	 * tick): it runs while slow entries may be left (lmdd alone makes them: counted as made,
	 * and again from what a pass leaves), and once a second all the same (a bucket a dead
	 * process left marked is repaired then, if nothing locked it before; and the first pass
	 * after a restart finds what the lmdd before this one left slow). */
	if (m->slow_made == 0 && ++m->give_back_ticks < 1000 / TICK_MS)
		return;
	m->give_back_ticks = 0;
	uint32_t left = 0;
	for (uint32_t b = 0; b < CORAL_GES_FAST_BUCKETS; b++) {
		struct coral_ges_fast_bucket *bk = bucket(m, b);
		bool any = false;
		for (int w = 0; w < CORAL_GES_FAST_WAYS; w++)
			any |= bk->res[w].used && bk->res[w].slow;  /* (only lmdd makes entries slow) */
		if (!any && !bk->dirty)
			continue;
		if (!fast_lock_bucket(m, b)) {
			left += any;
			continue;
		}
		for (int w = 0; w < CORAL_GES_FAST_WAYS; w++) {
			struct coral_ges_fast_res *e = &bk->res[w];
			if (!e->used || !e->slow)
				continue;
			uint8_t lvb[LVB_LEN];
			bool valid, written;
			int rc = ges_take_idle(m->core, e->name, e->len, lvb, &valid, &written);
			if (rc == CORAL_EBUSY) {
				left++;
				continue;
			}
			e->slow = 0;
			e->nholders = 0;
			if (rc == 0 && written) {
				memcpy(e->lvb, lvb, LVB_LEN);
				e->lvb_valid = valid;
				e->lvb_written = 1;
			} else {
				e->used = 0;
			}
		}
		coral_ges_fast_unlock_bucket(m->ownsec, b);
	}
	m->slow_made = left;
	if (m->fast_overflow)
		fast_resync(m);
}

/* A fast lock whose session's process ended: it goes (a PW or EX one leaves the value block
 * not valid). */
static void fast_reap(struct lmdd *m, struct own *o)
{
	uint64_t lkid = o->lkid;
	uint32_t fb = __atomic_load_n(&o->fast_b, __ATOMIC_ACQUIRE);
	if (fb == 0 || fb > CORAL_GES_FAST_BUCKETS) {
		/* its session ended while making it (only the session writes a fast lock not yet in
		 * a bucket): in no entry, it goes */
		coral_ges_own_free(m->ownsec, o);
		return;
	}
	if (!fast_lock_bucket(m, fb - 1))
		return;
	if (atomic_load(&o->used) == CORAL_GES_OWN_FAST && o->lkid == lkid && o->fast_b == fb)
		coral_ges_fast_drop(m->ownsec, o, true);
	coral_ges_fast_unlock_bucket(m->ownsec, fb - 1);
}

/* A requester's operation at this master: answered at once unless queued (then core_done
 * answers). A node that is not the master at its own map answers so (the sender asks
 * again). */
static void refuse_request(struct lmdd *m, uint32_t from, const Coral__GesMsg *g, int code)
{
	Coral__GesMsg a = CORAL__GES_MSG__INIT;
	a.kind = GES_ANSWER;
	a.op = g->kind;
	a.lkid = g->lkid;
	a.code = code;
	send_msg(m, from, &a);
}

static void on_request(struct lmdd *m, uint32_t from, const Coral__GesMsg *g)
{
	if (g->name.len > 0 && g->name.len <= GES_NAME_MAX && master_of(m, g->name.data, g->name.len, NULL) != m->self) {
		refuse_request(m, from, g, CORAL_ENOTMASTER);
		return;
	}
	if ((g->kind == GES_REQUEST || g->kind == GES_CONVERT) && m->nring > 0 && !in_ring(m, from)) {
		/* a node not on grdd's ring at this master's map (it joined the cluster, its buckets
		 * are still on their way): nothing is granted to it, as lmsd gives it no block.
		 * Evicted before it comes on the ring, it is no loss in the map, so nothing would
		 * ever release a lock it held here */
		m->joining_refused++;
		refuse_request(m, from, g, CORAL_EJOINING);
		return;
	}
	int taken = 0;
	if (g->kind == GES_REQUEST && g->name.len > 0 && g->name.len <= GES_NAME_MAX &&
	    !ges_has(m->core, g->name.data, g->name.len)) {
		taken = fast_take(m, g->name.data, g->name.len);
		if (taken == 0 && !ges_has(m->core, g->name.data, g->name.len) && from_lost(m, g->name.data, g->name.len)) {
			/* new here, in a bucket a lost node mastered: its value may have been written
			 * there, so it is not valid until written again (never zeros taken for a value) */
			static const uint8_t zeros[GES_LVB_MAX];
			ges_set_lvb(m->core, g->name.data, g->name.len, zeros, false, true);
		}
	}
	if (taken != 0) {
		refuse_request(m, from, g, taken);
		return;
	}
	Coral__GesMsg a;
	struct ges_answer ans;
	if (!ges_msg_apply(m->core, from, g, now_ms(), &a, &ans))
		return;  /* queued: core_done answers */
	if (a.code == CORAL_EINVAL)
		m->refused_msgs++;
	send_msg(m, from, &a);
}

static void on_done(struct lmdd *m, uint32_t from, const Coral__GesMsg *g);
static void on_waits(struct lmdd *m, uint32_t from, const Coral__GesMsg *g);
static int report_waits(struct lmdd *m, const uint8_t *name, size_t len, uint64_t probe);
static int send_rebuild(struct lmdd *m, struct own *o);
static int send_done(struct lmdd *m, uint32_t to);

/* Whether node `from` mastered bucket b, in the map this node has or in the one before it (a
 * node hands a bucket's marks and value blocks over as it sees the new map, which this one
 * may not have seen yet): a hand-over from any other is refused. */
static bool had_bucket(const struct lmdd *m, uint32_t from, uint32_t b)
{
	if (b >= CORAL_GRD_BUCKETS || from == 0)
		return false;
	return m->owner_now[b] == from || m->owner_before[b] == from ||
	       __atomic_load_n(&m->map->owner[b], __ATOMIC_RELAXED) == from;
}

/* A holder's lock, put back at this master after the map moved its resource here. */
static void on_rebuild(struct lmdd *m, uint32_t from, const Coral__GesMsg *g)
{
	int gr = g->granted ? (int)g->granted - 1 : GES_NONE, rq = g->want ? (int)g->want - 1 : GES_NONE;
	if (gr == GES_NONE && rq == GES_NONE && g->name.len == 0) {
		/* a bucket's inherited mark handed over (kept, and dropped at the next map if the
		 * bucket is not this node's after all) */
		if (g->lkid >= 1 && g->lkid <= CORAL_GRD_BUCKETS && had_bucket(m, from, (uint32_t)(g->lkid - 1)))
			__atomic_or_fetch(&m->ownsec->inherited[(g->lkid - 1) / 8], (uint8_t)(1u << ((g->lkid - 1) % 8)),
					  __ATOMIC_RELAXED);
		else
			m->refused_msgs++;
		return;
	}
	if (gr == GES_NONE && rq == GES_NONE) {
		/* the old master hands over a value block (this node may not have seen the map that
		 * moves it here yet: kept, and dropped at that map if it is not this node's after all) */
		if (g->lvb.len == LVB_LEN && g->name.len > 0 && g->name.len <= GES_NAME_MAX &&
		    had_bucket(m, from, bucket_of(g->name.data, g->name.len)) && fast_take_new(m, g->name.data, g->name.len) == 0)
			ges_handoff_lvb(m->core, g->name.data, g->name.len, g->lvb.data, g->lvb_valid);
		else
			m->refused_msgs++;
		return;
	}
	if (g->name.len > 0 && g->name.len <= GES_NAME_MAX)
		fast_take_new(m, g->name.data, g->name.len);
	int rc = ges_rebuild(m->core, from, g->session, g->lkid, g->name.data, g->name.len, gr, rq, g->flags, now_ms());
	if (rc == 0 && g->priority != 0)
		ges_set_priority(m->core, from, g->lkid, g->priority);
	if (rc == 0 && g->lvb_valid && g->lvb.len == LVB_LEN)
		ges_recover_lvb(m->core, g->name.data, g->name.len, gr, g->lvb.data);  /* (if still unknown) */
	if (rc != 0 && rc != CORAL_EEXIST) {
		m->refused_msgs++;
		log_warn("a lock of node %u (%llu) could not be put back on %.*s: %s", from, (unsigned long long)g->lkid,
			 (int)g->name.len, (const char *)g->name.data, coral_strerror(rc));
	}
}

/* A master says a lock of this node's sessions is in the way of a request for `mode`: the
 * session hears it if it subscribed (one that did not, or whose connection is gone, does
 * not: it is counted as received only). */
/* An event of o's session on its subscription: whether it was handed over. */
static bool send_event(struct lmdd *m, const struct own *o, Coral__GesEvent *ev)
{
	if (o->slot == 0 || o->slot > CORAL_CACHE_SESSIONS)
		return false;
	struct sub *s = &m->subs[o->slot - 1];
	if (s->conn == 0 || s->session != o->session)
		return false;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_EVENT;
	resp.ges_event = ev;
	if (coral_daemon_answer(m->d, s->conn, s->req_id, &resp) == 0)
		return true;
	memset(s, 0, sizeof(*s));  /* the session's connection is gone */
	return false;
}

static void deliver_bast(struct lmdd *m, uint64_t lkid, uint32_t mode)
{
	struct own *o = own_find(m, lkid);
	if (o == NULL)
		return;
	uint64_t zero = 0;
	atomic_compare_exchange_strong(&o->blocking_ms, &zero, now_ms());
	Coral__GesEvent ev = CORAL__GES_EVENT__INIT;
	ev.kind = 1;
	ev.lkid = lkid;
	ev.mode = mode;
	if (send_event(m, o, &ev))
		m->basts_delivered++;
}

static void kit_recv(void *core, uint32_t from, uint8_t type, const uint8_t *data, size_t len)
{
	struct lmdd *m = core;
	Coral__GesMsg *g = ges_msg_decode(type, data, len, &m->refused_msgs);
	if (g == NULL)
		return;
	switch (g->kind) {
	case GES_REQUEST:
	case GES_CONVERT:
	case GES_UNLOCK:
	case GES_CANCEL:
		on_request(m, from, g);
		break;
	case GES_ANSWER:
		on_answer(m, from, g);
		break;
	case GES_BAST:
		m->basts_received++;
		deliver_bast(m, g->lkid, g->mode);
		break;
	case GES_UNBAST: {
		/* in nobody's way now (what the idle-blocker limit reads); the session is not told */
		struct own *o = own_find(m, g->lkid);
		if (o && from == o->master)
			atomic_store(&o->blocking_ms, 0);
		break;
	}
	case GES_REBUILD:
		on_rebuild(m, from, g);
		break;
	case GES_REBUILD_DONE:
		on_done(m, from, g);
		break;
	case GES_WAITS:
		on_waits(m, from, g);
		break;
	case GES_VICTIM:
		if (from == m->coordinator && ges_victim(m->core, g->node, g->lkid) == 0)
			m->victims++;
		break;
	case GES_PROBE:
		if (from == m->coordinator && g->lkid != 0 && g->name.len > 0 && g->name.len <= GES_NAME_MAX)
			report_waits(m, g->name.data, g->name.len, g->lkid);
		else
			m->refused_msgs++;
		break;
	default:
		m->refused_msgs++;
	}
	ges_msg_free(g);
}

static void kit_clock(void *core, uint64_t mono_ns, uint64_t real_ns)
{
	(void)core;
	(void)mono_ns;
	(void)real_ns;
}

/* ---- deadlocks ------------------------------------------------------------------------- */

static void core_waits(void *arg, const uint8_t *name, size_t len)
{
	struct lmdd *m = arg;
	if (m->dirty_all)
		return;
	for (uint32_t i = 0; i < m->ndirty; i++)
		if (m->dirty[i][0] == len && memcmp(m->dirty[i] + 1, name, len) == 0)
			return;
	if (m->ndirty == DIRTY_MAX) {
		m->dirty_all = true;
		return;
	}
	m->dirty[m->ndirty][0] = (uint8_t)len;
	memcpy(m->dirty[m->ndirty] + 1, name, len);
	m->ndirty++;
}

static void mark_dirty(void *arg, const uint8_t *name, size_t len) { core_waits(arg, name, len); }

/* The waits on one resource, to the coordinator (0 if sent); probe: the coordinator's probe
 * this answers (0: none, the waits changed). */
static int report_waits(struct lmdd *m, const uint8_t *name, size_t len, uint64_t probe)
{
	static struct ges_wait w[WAITS_MAX];
	static Coral__GesEdge e[WAITS_MAX];
	static Coral__GesEdge *ep[WAITS_MAX];
	int n = ges_waits(m->core, name, len, w, WAITS_MAX);
	if (n > WAITS_MAX)
		n = WAITS_MAX;
	for (int i = 0; i < n; i++) {
		coral__ges_edge__init(&e[i]);
		e[i].waiter_node = w[i].wnode;
		e[i].waiter_session = w[i].wsession;
		e[i].lkid = w[i].lkid;
		e[i].since_ms = w[i].since_ms;
		e[i].held = w[i].held;
		e[i].priority = w[i].prio;
		e[i].holder_node = w[i].hnode;
		e[i].holder_session = w[i].hsession;
		ep[i] = &e[i];
	}
	Coral__GesMsg g = CORAL__GES_MSG__INIT;
	g.kind = GES_WAITS;
	g.lkid = probe;
	g.name.data = (uint8_t *)name;
	g.name.len = len;
	g.edges = ep;
	g.n_edges = (size_t)n;
	return send_msg(m, m->coordinator, &g);
}

/* The coordinator is the lowest member of the map. A new one gets every wait reported anew;
 * one that is no longer it forgets its graph. */
static void report_all(struct lmdd *m)
{
	uint32_t coord = 0;
	for (uint32_t i = 0; i < m->nring; i++)
		if (m->ring[i] >= 1 && (coord == 0 || m->ring[i] < coord))
			coord = m->ring[i];
	if (coord != m->coordinator) {
		m->coordinator = coord;
		m->dirty_all = true;
		if (coord != m->self && m->dlk) {
			const struct dlk_stats *ds = dlk_stats(m->dlk);
			m->dlk_before.deadlocks += ds->deadlocks;
			m->dlk_before.phantoms += ds->phantoms;
			m->dlk_before.probes_lapsed += ds->probes_lapsed;
			m->dlk_before.swept += ds->swept;
			m->dlk_before.full += ds->full;
			dlk_free(m->dlk);
			m->dlk = NULL;
		}
	}
	if (m->coordinator == 0 || m->kit.net == NULL)
		return;
	if (m->dirty_all) {
		m->dirty_all = false;
		m->ndirty = 0;
		ges_each_waiting(m->core, mark_dirty, m);
		if (m->dirty_all)
			return;  /* more than the list holds: asked again at the next tick */
	}
	uint32_t k = 0;
	for (uint32_t i = 0; i < m->ndirty; i++)
		if (report_waits(m, m->dirty[i] + 1, m->dirty[i][0], 0) != 0)
			memmove(m->dirty[k++], m->dirty[i], sizeof(m->dirty[0]));  /* kept: sent again */
	m->ndirty = k;
}

/* A deadlock the coordinator confirmed: recorded, and its victim's wait refused at its master. */
static void dlk_victim(void *arg, const struct wfg_edge *cyc, int len, int v, bool by_sweep)
{
	struct lmdd *m = arg;
	struct deadlock *d = &m->history[m->nhistory++ % DEADLOCK_HISTORY];
	d->at_ms = coral_now_real_ns() / 1000000ull;
	d->n = len;
	d->victim = v;
	memcpy(d->cycle, cyc, (size_t)len * sizeof(cyc[0]));
	if (by_sweep)
		log_warn("deadlock found first by the sweep, not the search at a report: %d sessions, victim node %u's wait on %.*s", len,
			 cyc[v].waiter.node, (int)cyc[v].len, (const char *)cyc[v].name);
	log_notice("deadlock: %d sessions wait in a cycle; node %u's wait on %.*s (lock %llu) is refused", len,
		   cyc[v].waiter.node, (int)cyc[v].len, (const char *)cyc[v].name, (unsigned long long)cyc[v].lkid);
	Coral__GesMsg k = CORAL__GES_MSG__INIT;
	k.kind = GES_VICTIM;
	k.name.data = (uint8_t *)cyc[v].name;
	k.name.len = cyc[v].len;
	k.lkid = cyc[v].lkid;
	k.node = cyc[v].waiter.node;
	send_msg(m, cyc[v].master, &k);
}

/* The coordinator asks a master for its waits on a resource now (dlk.h). */
static void dlk_probe(void *arg, uint32_t master, const uint8_t *name, size_t len, uint64_t probe)
{
	Coral__GesMsg p = CORAL__GES_MSG__INIT;
	p.kind = GES_PROBE;
	p.lkid = probe;
	p.name.data = (uint8_t *)name;
	p.name.len = len;
	send_msg(arg, master, &p);  /* one not sent: probed again when it lapses */
}

/* At the coordinator: a master's waits on one resource (g->lkid: the probe it answers). */
static void on_waits(struct lmdd *m, uint32_t from, const Coral__GesMsg *g)
{
	if (m->coordinator != m->self || g->name.len == 0 || g->name.len > GES_NAME_MAX) {
		m->refused_msgs++;
		return;
	}
	if (m->dlk == NULL) {
		const struct coral_ges_conf *gc = &m->d->conf.ges;
		struct dlk_conf dc = {(uint32_t)gc->graph_edges, (uint32_t)gc->probe_ms, (uint32_t)gc->sweep_ms,
				      SWEEP_WAITERS};
		struct dlk_ops ops = {dlk_probe, dlk_victim, m};
		if ((m->dlk = dlk_new(&dc, &ops)) == NULL)
			return;
		dlk_members(m);
	}
	static struct wfg_edge e[WAITS_MAX];
	size_t n = g->n_edges < WAITS_MAX ? g->n_edges : WAITS_MAX;
	for (size_t i = 0; i < n; i++) {
		const Coral__GesEdge *x = g->edges[i];
		memset(&e[i], 0, sizeof(e[i]));
		e[i].waiter = (struct wfg_owner){x->waiter_node, x->waiter_session};
		e[i].holder = (struct wfg_owner){x->holder_node, x->holder_session};
		e[i].lkid = x->lkid;
		e[i].since_ms = x->since_ms;
		e[i].held = x->held ? 1 : 0;
		e[i].prio = x->priority;
	}
	if (dlk_report(m->dlk, from, g->name.data, g->name.len, e, (uint32_t)n, g->lkid, now_ms()) == CORAL_EFULL)
		log_warn("the wait-for graph is full (%u edges): the waits on %.*s are not looked at",
			 wfg_edges(dlk_graph(m->dlk)), (int)g->name.len, (const char *)g->name.data);
}

/* ---- the tick ------------------------------------------------------------------------- */

/* Losses as grdd counted them in the directory: a lost node's locks are held until its
 * recovery closes (smond), then released. */
static void check_losses(struct lmdd *m)
{
	uint64_t now = now_ms();
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		struct coral_grd_loss *L = &m->dir->loss[n - 1];
		uint64_t seq = atomic_load(&L->seq), done = atomic_load(&L->done);
		if (seq != 0 && seq != m->lost_seen[n - 1]) {
			m->lost_seen[n - 1] = seq;
			ges_node_lost(m->core, n, now);
		}
		if (done != 0 && done == seq && m->done_seen[n - 1] != done) {
			m->done_seen[n - 1] = done;
			ges_node_recovered(m->core, n, now);
		}
	}
}

/* This node has put back its locks for its map version (and which lmdd it is). */
static int send_done(struct lmdd *m, uint32_t to)
{
	Coral__GesMsg d = CORAL__GES_MSG__INIT;
	d.kind = GES_REBUILD_DONE;
	d.map_version = m->map_seen;
	d.lkid = m->instance;
	return send_msg(m, to, &d);
}

/* A member says it has put back its locks for a map version. One whose lmdd is new to this
 * node (it restarted: the queues it mastered are gone) gets back every lock of this node's
 * sessions it masters; one this node has not told yet, this node's own word. */
static void on_done(struct lmdd *m, uint32_t from, const Coral__GesMsg *g)
{
	if (from < 1 || from > CORAL_MAX_NODES)
		return;
	bool restarted = m->inst_from[from] != 0 && m->inst_from[from] != g->lkid;
	bool first = m->inst_from[from] != g->lkid;
	m->inst_from[from] = g->lkid;
	if (restarted || g->map_version > m->done_from[from])
		m->done_from[from] = g->map_version;
	if (restarted && from != m->self) {
		log_notice("node %u's lmdd restarted: the locks of this node's sessions it masters are put back there",
			   from);
		/* an unlock on its way there (a session's, or a release) is not put back: the new
		 * lmdd has nothing of that lock, so it is done (its answer, if the old one sent it,
		 * went with it; without this the session's call waited for ever) */
		for (uint32_t k = 0; k < OWN_MAX && m->ownsec->nused; k++) {
			struct own *o = &m->own[k];
			if (!mine(o) || o->master != from || o->op != OP_UNLOCK || (o->cookie == 0 && !o->dying))
				continue;
			if (!o->dying)
				answer_gone(m, o, 0, GES_NONE, NULL, false, false);
			else
				own_free(m, o);
		}
	}
	if (first && from != m->self)
		m->rebuild_to |= bit(from);  /* its queues may be new: this node's locks there, and its word */
}

static bool keep_mine(void *arg, const uint8_t *name, size_t len)
{
	struct lmdd *m = arg;
	return master_of(m, name, len, NULL) == m->self;
}

/* The inherited marks (ges_own.h) for the map now: a bucket this node got while its owner is
 * listed as lost is marked; one the map gives to another member loses its mark here, and the
 * mark is owed to that member (what it inherits, this node had inherited). */
static void mark_inherited(struct lmdd *m)
{
	static uint8_t owner[CORAL_GRD_BUCKETS], lost[CORAL_GRD_BUCKETS];
	uint32_t seq;
	do {
		seq = coral_seq_read_begin(&m->map->seq);
		memcpy(owner, m->map->owner, sizeof(owner));
		memcpy(lost, m->map->lost_owner, sizeof(lost));
	} while (coral_seq_read_retry(&m->map->seq, seq));
	memcpy(m->owner_before, m->owner_now, sizeof(m->owner_before));
	memcpy(m->owner_now, owner, sizeof(m->owner_now));
	m->nbhand = 0;
	uint8_t *bits = m->ownsec->inherited;
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
		bool had = coral_ges_inherited(m->ownsec, b);
		if (owner[b] == m->self) {
			if (lost[b] && !had)
				__atomic_or_fetch(&bits[b / 8], (uint8_t)(1u << (b % 8)), __ATOMIC_RELAXED);
		} else if (had) {
			__atomic_and_fetch(&bits[b / 8], (uint8_t)~(1u << (b % 8)), __ATOMIC_RELAXED);
			if (owner[b] != 0 && in_ring(m, owner[b]))
				m->bhand[m->nbhand++] = (struct bucket_handoff){b, owner[b]};
		}
	}
}

/* A resource the map moves from this node to another, with a value block to keep: owed to
 * its new master, which takes it unless written there since (a holder's copy tells it too,
 * but a resource with no lock, or only CR and NL ones, has no other). */
static void collect_handoff(void *arg, const uint8_t *name, size_t len)
{
	struct lmdd *m = arg;
	uint32_t to = master_of(m, name, len, NULL);
	uint8_t lvb[GES_LVB_MAX];
	bool valid, written;
	if (to == m->self || to == 0 || ges_lvb_state(m->core, name, len, lvb, &valid, &written) != 0 || !written)
		return;
	if (m->nhandoff == HANDOFF_MAX) {
		if (m->handoffs_lost++ % 1024 == 0)
			log_warn("more than %d value blocks to hand over at once: %.*s's starts afresh at node %u", HANDOFF_MAX,
				 (int)len, (const char *)name, to);
		return;
	}
	struct handoff *h = &m->handoff[m->nhandoff++];
	h->to = to;
	h->len = (uint8_t)len;
	h->valid = valid;
	memcpy(h->name, name, len);
	memcpy(h->lvb, lvb, LVB_LEN);
}

/* Tells the new master of o's resource what o holds and waits for. */
static int send_rebuild(struct lmdd *m, struct own *o)
{
	Coral__GesMsg g = CORAL__GES_MSG__INIT;
	g.kind = GES_REBUILD;
	atomic_store(&o->blocking_ms, 0);  /* the new master says again if it is in the way */
	g.name.data = o->name;
	g.name.len = o->len;
	g.lkid = o->lkid;
	g.session = (uint64_t)o->slot << 32 | o->session;
	g.flags = o->flags;
	g.granted = o->mode == GES_NONE ? 0 : (uint32_t)o->mode + 1;
	/* (an orphaned conversion is put back as granted: it is cancelled there, or settled) */
	bool waiting = (o->cookie != 0 || (o->orphan && o->op == OP_LOCK)) && (o->op == OP_LOCK || o->op == OP_CONVERT);
	g.want = waiting ? o->want + 1 : 0;
	g.priority = o->prio;
	g.map_version = m->map_seen;
	if (o->lvb_cur_valid && o->mode >= GES_CW) {
		g.lvb.data = o->lvb_cur;
		g.lvb.len = LVB_LEN;
		g.lvb_valid = true;
	}
	return g.granted || g.want ? send_msg(m, o->master, &g) : 0;
}

/* What this node owes each node in rebuild_to: every lock of its sessions mastered there
 * (one it already has says so and is left alone; one being released is not sent, it could
 * come back after its unlock), then its word for the map version. Kept owed while the
 * interconnect refuses a message (not up yet, or the peer's connection down): asked again
 * at the next tick, so that no lock is missing where a master starts granting. */
static void flush_rebuilds(struct lmdd *m)
{
	if (m->rebuild_to == 0 || m->kit.net == NULL || m->map_seen == 0)
		return;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (!(m->rebuild_to & bit(n)) || m->owed[n].n)
			continue;  /* (one owed messages gets its locks once they have gone: not twice) */
		int rc = 0;
		for (uint32_t i = 0; i < m->nbhand && rc == 0;) {
			if (m->bhand[i].to != n) {
				i++;
				continue;
			}
			Coral__GesMsg g = CORAL__GES_MSG__INIT;
			g.kind = GES_REBUILD;  /* no name: an inherited mark handed over, bucket + 1 */
			g.lkid = m->bhand[i].bucket + 1;
			g.map_version = m->map_seen;
			rc = send_msg(m, n, &g);
			if (rc == 0)
				m->bhand[i] = m->bhand[--m->nbhand];
		}
		for (uint32_t i = 0; i < m->nhandoff && rc == 0;) {
			struct handoff *h = &m->handoff[i];
			if (h->to != n) {
				i++;
				continue;
			}
			Coral__GesMsg g = CORAL__GES_MSG__INIT;
			g.kind = GES_REBUILD;  /* no mode held or asked: a value block handed over */
			g.name.data = h->name;
			g.name.len = h->len;
			g.lvb.data = h->lvb;
			g.lvb.len = LVB_LEN;
			g.lvb_valid = h->valid;
			g.map_version = m->map_seen;
			rc = send_msg(m, n, &g);
			if (rc == 0)
				*h = m->handoff[--m->nhandoff];
		}
		for (uint32_t k = 0; k < OWN_MAX && m->ownsec->nused && rc == 0; k++) {
			struct own *o = &m->own[k];
			if (mine(o) && !o->dying && o->master == n && !(o->op == OP_UNLOCK && o->cookie != 0))
				rc = send_rebuild(m, o);
			if (rc == 0 && mine(o) && o->orphan && o->op == OP_CANCEL && o->master == n)
				rc = send_cancel(m, o);  /* (after the lock, on the same connection) */
		}
		if (rc == 0)
			rc = send_done(m, n);
		if (rc == 0)
			m->rebuild_to &= ~bit(n);
	}
}

/* grdd's map moved on: what this node no longer masters goes (its holders put it back at
 * the new master), nothing is granted here until every member has said it has put back
 * its locks for this version (and no lost node's recovery is pending), and this node's
 * sessions' locks whose master changed are put back at their new masters. */
static void check_map(struct lmdd *m)
{
	uint64_t v;
	uint32_t ring[CORAL_MAX_NODES], nring;
	uint32_t seq;
	do {
		seq = coral_seq_read_begin(&m->map->seq);
		v = m->map->version;
		nring = m->map->nmembers < CORAL_MAX_NODES ? m->map->nmembers : CORAL_MAX_NODES;
		memcpy(ring, m->map->members, nring * sizeof(ring[0]));
	} while (coral_seq_read_retry(&m->map->seq, seq));
	if (v == 0 || v == m->map_seen || m->kit.net == NULL)
		return;  /* (before the interconnect is up, nothing could be put back) */
	m->map_seen = v;
	m->nring = nring;
	memcpy(m->ring, ring, sizeof(ring));
	/* a node out of the map is lost: what it was owed goes (the rebuild after it comes back
	 * puts back what matters) */
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
		if (m->owed[n].n && !in_ring(m, n))
			owed_drop(m, n);
	/* what masters no longer in the map reported of their waits is gone with them */
	for (uint32_t n = 1; m->dlk && n <= CORAL_MAX_NODES; n++)
		if (!in_ring(m, n))
			dlk_drop_master(m->dlk, n);
	dlk_members(m);
	/* the fast locks are taken over first: the rebuild below sends them where they go now */
	fast_close(m);
	m->nhandoff = 0;  /* (owed for an older map: the newer one decides where they go) */
	mark_inherited(m);
	ges_each_resource(m->core, collect_handoff, m);
	ges_drop(m->core, keep_mine, m);
	fast_resync(m);
	if (!ges_held(m->core))
		m->held_since_ms = now_ms();
	ges_hold(m->core, true);
	bool all = m->restarted;  /* the first map after a restart: every lock is put back */
	m->restarted = false;
	for (uint32_t k = 0; k < OWN_MAX && m->ownsec->nused; k++) {
		struct own *o = &m->own[k];
		if (!mine(o))
			continue;
		uint32_t nm = master_of(m, o->name, o->len, NULL);
		if (all) {
			o->master = nm;
			if (nm == 0)
				continue;
			if (o->orphan || o->dying)
				log_info("lock %llu of session %u (call %llu): %s", (unsigned long long)o->lkid, o->session,
					 (unsigned long long)o->tag, o->orphan && o->op == OP_CONVERT ? "its conversion is settled"
					 : o->orphan ? "its request was under way: let go" : "being let go");
			if (o->orphan && o->op == OP_CONVERT) {
				/* put back in the mode it had, its conversion cancelled where it may wait
				 * still (flush_rebuilds, right behind the lock): the answer to the cancel
				 * settles it (settle_orphan) */
				o->op = OP_CANCEL;
			} else if (o->dying || o->orphan) {
				/* put back as it was, then released (its session's call is over); an
				 * unlock under way keeps the value it writes: its session was told (or will
				 * be) that it is done, and the value put back with the lock is the one
				 * before it, which must not stay as the valid one */
				bool writes = o->dying && o->op == OP_UNLOCK && o->has_lvb;
				o->dying = 0;
				send_rebuild(m, o);
				o->orphan = 0;
				own_release_as(m, o, writes);
			}
			continue;
		}
		if (nm == o->master)
			continue;
		if (o->dying) {
			/* being let go at a master it is no longer at (lost, or the bucket moved): its
			 * unlock may never be answered there. Put back at the new master as it was,
			 * then let go there, as after a restart; an unlock the old master did do
			 * meets nothing at the new one, which ends it all the same. */
			if (nm == 0)
				continue;
			bool writes = o->op == OP_UNLOCK && o->has_lvb;
			o->master = nm;
			o->dying = 0;
			send_rebuild(m, o);
			own_release_as(m, o, writes);
			continue;
		}
		if (o->orphan) {
			/* being settled at a master it is no longer at: put back at the new one in the
			 * mode this node knows of (the session asks again) */
			o->orphan = 0;
			o->op = 0;
		}
		o->master = nm;
		if (nm == 0)
			continue;
		if (o->cookie != 0 && o->op == OP_UNLOCK) {
			/* whether the old master had done it or not, the lock is gone now */
			answer_gone(m, o, 0, GES_NONE, NULL, false, false);
			continue;
		}
	}
	for (uint32_t i = 0; i < nring; i++)
		if (ring[i] >= 1 && ring[i] <= CORAL_MAX_NODES)
			m->rebuild_to |= bit(ring[i]);
	flush_rebuilds(m);
}

/* The rebuild is over once every member of the map has put back its locks for it and no
 * lost node waits for its recovery (its locks, which nobody can put back, count as held
 * until then). */
static void check_rebuilt(struct lmdd *m)
{
	if (!ges_held(m->core) || m->map_seen == 0)
		return;  /* (held from the start until a map has been rebuilt: lmdd_init) */
	bool silent = false;
	uint64_t now = now_ms();
	for (uint32_t i = 0; i < m->nring; i++) {
		uint32_t n = m->ring[i];
		if (n >= 1 && n <= CORAL_MAX_NODES && m->done_from[n] < m->map_seen) {
			silent = true;
			if (now - m->done_sent_ms >= 500)
				m->rebuild_to |= bit(n);  /* our word may not have reached it: it answers ours */
		}
	}
	if (silent) {
		if (now - m->done_sent_ms >= 500)
			m->done_sent_ms = now;
		return;
	}
	for (uint32_t n = 0; n < CORAL_MAX_NODES; n++) {
		struct coral_grd_loss *L = &m->dir->loss[n];
		uint64_t seq = atomic_load(&L->seq);
		if (seq != 0 && atomic_load(&L->done) != seq)
			return;
	}
	ges_hold(m->core, false);
	atomic_store(&m->ownsec->fast_version, m->map_seen);  /* sessions may grant themselves again */
	log_info("map version %llu: every member has put its locks back; granting again after %llu ms",
		 (unsigned long long)m->map_seen, (unsigned long long)(now_ms() - m->held_since_ms));
}

static void on_tick(void *arg, const struct coral_cluster_view *v)
{
	(void)v;
	struct lmdd *m = arg;
	uint64_t now = now_ms();
	owed_flush(m);
	ges_tick(m->core, now);
	check_losses(m);
	check_map(m);
	check_rebuilt(m);
	flush_rebuilds(m);
	report_all(m);
	if (m->dlk && m->coordinator == m->self)
		dlk_tick(m->dlk, now);
	fast_give_back(m);
	/* The pass over the node's locks (a table of OWN_MAX in the SGA) runs when a lock's
	 * resend is due, and every OWN_PASS_TICKS for the locks of sessions that ended */
	bool resend_due = m->next_resend_ms != 0 && now >= m->next_resend_ms;
	if (!resend_due && ++m->own_ticks < OWN_PASS_TICKS)
		return;
	m->own_ticks = 0;
	if (resend_due)
		m->next_resend_ms = 0;  /* noted again below from what is left to send */
	for (uint32_t k = 0; k < OWN_MAX && m->ownsec->nused; k++) {
		struct own *o = &m->own[k];
		uint8_t state = atomic_load(&o->used);
		if (state == CORAL_GES_OWN_FREE)
			continue;
		/* a session whose process ended, or that the resource manager ended (once its
		 * transaction was taken back, as a dead process's is): its locks go */
		struct coral_sess_slot *ss = o->slot && o->slot <= CORAL_CACHE_SESSIONS ? coral_cache_sess(m->cache, o->slot - 1) : NULL;
		bool ended = ss && (atomic_load(&ss->pid) == 0 || ss->id != o->session ||
				    (atomic_load(&ss->revoked) & CORAL_REVOKE_DONE));
		if (state == CORAL_GES_OWN_FAST) {
			if (ended)
				fast_reap(m, o);
			continue;
		}
		if (!o->dying && ended) {
			own_release(m, o);
			continue;
		}
		if (o->resend_ms && now >= o->resend_ms) {
			o->resend_ms = 0;
			own_send(m, o);
		} else if (o->resend_ms && (m->next_resend_ms == 0 || o->resend_ms < m->next_resend_ms)) {
			m->next_resend_ms = o->resend_ms;
		}
	}
}

/* ---- control requests ----------------------------------------------------------------- */

/* Whether session `session` in slot index slot-1 is the calling process's, by the
 * connection's credentials (SO_PEERCRED), not by what the request says: no process takes,
 * releases or hears another's locks. If not, it is answered why. */
static bool session_is_callers(struct coral_daemon *d, uint64_t conn, uint64_t id, uint32_t session, uint32_t slot)
{
	struct lmdd *m = d->svc;
	const struct coral_ipc_peer *peer = coral_ipc_conn_peer(coral_ipc_server_conn(d->ipc, conn));
	if (slot == 0 || slot > CORAL_CACHE_SESSIONS) {
		coral_daemon_answer_error(d, conn, id, CORAL_EINVAL, "no session slot %u", slot);
		return false;
	}
	struct coral_sess_slot *sl = coral_cache_sess(m->cache, slot - 1);
	int32_t pid = atomic_load(&sl->pid);
	if (peer == NULL || pid <= 0 || (uint32_t)pid != (uint32_t)peer->pid || sl->id != session) {
		coral_daemon_answer_error(d, conn, id, CORAL_EPERM, "session %u in slot %u is not this process's (pid %d)",
					  session, slot, peer ? (int)peer->pid : -1);
		return false;
	}
	if (atomic_load(&sl->revoked)) {
		coral_daemon_answer_error(d, conn, id, CORAL_ECANCELED,
					  "session %u was ended by the resource manager: its locks are released (rsrcmgrd(8), LIMITS)",
					  session);
		return false;
	}
	return true;
}

/* A lock call's answer that says no more than a lock id (and a mode). */
static void answer_lkid(struct coral_daemon *d, uint64_t conn, uint64_t id, uint64_t lkid, uint32_t mode)
{
	Coral__GesLockReply r = CORAL__GES_LOCK_REPLY__INIT;
	r.lkid = lkid;
	r.mode = mode;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_LOCK;
	resp.ges_lock = &r;
	coral_daemon_answer(d, conn, id, &resp);
}

static void h_lock(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmdd *m = d->svc;
	const Coral__GesLockRequest *q = req->ges_lock;
	uint64_t id = coral_ctl_request_id(req);
	if (q->op < OP_LOCK || q->op > OP_ABANDON || q->mode >= GES_NMODES || (q->flags & ~GES_F_ALL) ||
	    (q->lvb.len && q->lvb.len > LVB_LEN) || (q->op == OP_LOCK && (q->name.len == 0 || q->name.len > GES_NAME_MAX))) {
		coral_daemon_answer_error(d, conn, id, CORAL_EINVAL,
					  "a lock request needs op 1-5, a mode NL..EX (0-5), known flags, a name of 1 to %d "
					  "bytes and a value block of at most %d", GES_NAME_MAX, LVB_LEN);
		return;
	}
	if (coral_cluster_fenced(m->cl)) {
		char why[192];
		coral_cluster_fence_reason(m->cl, why, sizeof(why));
		coral_daemon_answer_error(d, conn, id, CORAL_EFENCED, "node %u is fenced (%s)", m->self, why);
		return;
	}
	if (!session_is_callers(d, conn, id, q->session, q->slot))
		return;
	if (q->op == OP_ABANDON) {
		/* the session's lock call `tag` broke with its connection (this lmdd's predecessor
		 * died, say) before its answer came: whatever became of it, granted or queued, is
		 * let go, as the caller was told it failed */
		uint32_t n = 0;
		for (uint32_t k = 0; k < OWN_MAX && m->ownsec->nused && q->tag; k++) {
			struct own *o = &m->own[k];
			if (mine(o) && o->tag == q->tag && o->session == q->session && o->slot == q->slot && !o->dying) {
				own_release(m, o);
				n++;
			}
		}
		log_info("session %u: its lock call %llu broke before its answer: %u lock%s let go", q->session,
			 (unsigned long long)q->tag, n, n == 1 ? "" : "s");
		answer_lkid(d, conn, id, n, 0);
		return;
	}
	if (q->async && ((q->op != OP_LOCK && q->op != OP_CONVERT) || m->subs[q->slot - 1].conn == 0 ||
			 m->subs[q->slot - 1].session != q->session)) {
		coral_daemon_answer_error(d, conn, id, CORAL_EINVAL,
					  "an asynchronous lock or conversion needs the session subscribed to its lock "
					  "events (coral_lock_events), where its end is told");
		return;
	}
	struct own *o;
	if (q->op == OP_LOCK) {
		o = own_new(m);
		if (o == NULL) {
			coral_daemon_answer_error(d, conn, id, CORAL_EFULL, "this node's sessions hold %d locks", OWN_MAX);
			return;
		}
		memcpy(o->name, q->name.data, q->name.len);
		o->len = (uint8_t)q->name.len;
		o->session = q->session;
		o->slot = q->slot;
		o->tag = q->tag;
		o->prio = (int8_t)(q->priority < GES_PRIO_MIN ? GES_PRIO_MIN : q->priority > GES_PRIO_MAX ? GES_PRIO_MAX
													       : q->priority);
	} else {
		o = coral_ges_own_find(m->ownsec, q->lkid);
		if (o && atomic_load(&o->used) == CORAL_GES_OWN_FAST && o->session == q->session && o->slot == q->slot) {
			/* a fast lock whose session could not do this itself (it would wait, or its
			 * bucket is being repaired): its resource is taken over first */
			uint8_t name[GES_NAME_MAX];
			size_t len = o->len;
			memcpy(name, o->name, len);
			int rc = fast_take(m, name, len);
			if (rc != 0) {
				coral_daemon_answer_error(d, conn, id, rc, "lock %llu: %.*s cannot be taken over from the "
							  "fast path: %s", (unsigned long long)q->lkid, (int)len,
							  (const char *)name, rc == CORAL_EFULL ? "[ges] max_resources or "
							  "max_locks reached" : coral_strerror(rc));
				return;
			}
		}
		o = own_find(m, q->lkid);
		if (o == NULL || o->session != q->session || o->slot != q->slot) {
			coral_daemon_answer_error(d, conn, id, CORAL_ENOENT, "no lock %llu of this session",
						  (unsigned long long)q->lkid);
			return;
		}
		if (o->dying) {
			/* being let go already (its unlock was under way when the lmdd before this one
			 * died, say): an unlock is done; nothing else can be */
			if (q->op == OP_UNLOCK) {
				answer_lkid(d, conn, id, o->lkid, 0);
			} else {
				coral_daemon_answer_error(d, conn, id, CORAL_ENOENT, "lock %llu is being let go (its call "
							  "broke when lmdd restarted)", (unsigned long long)q->lkid);
			}
			return;
		}
		if (o->orphan) {
			coral_daemon_answer_error(d, conn, id, CORAL_ERETRY, "lock %llu: its conversion under way when lmdd "
						  "restarted is being settled at its master: again in a moment",
						  (unsigned long long)q->lkid);
			return;
		}
		if (o->cookie != 0 && q->op != OP_CANCEL) {
			coral_daemon_answer_error(d, conn, id, CORAL_EBUSY, "lock %llu has an operation under way",
						  (unsigned long long)q->lkid);
			return;
		}
	}
	if (q->op == OP_UNLOCK && o->cookie == 0) {
		/* An unlock of a lock with nothing under way is answered as soon as it is on its
		 * way to the master, not after the master's answer (a DLM's unlock is asynchronous
		 * too; this saves a synchronous caller the round trip to the master). Nothing is
		 * lost by it: the lock is let go as a released one is (dying: sent again until the
		 * master answers, put back and let go there if the map moves meanwhile, with the
		 * value block it writes); the master takes it before anything this node asks later
		 * (one connection, in order), a later request of the same session does not wait on
		 * it as a deadlock would (a session never waits for itself there), and a request of
		 * another node waits at the master until it arrives, as it would have anyway. If
		 * this node is lost first, its locks are held for recovery as every lost node's are
		 * (the value block marked invalid): what the caller was told still holds, since it
		 * had let the lock go. */
		o->has_lvb = q->lvb.len == LVB_LEN;
		if (o->has_lvb)
			memcpy(o->lvb, q->lvb.data, LVB_LEN);
		own_release_as(m, o, true);
		m->unlocks_early++;
		answer_lkid(d, conn, id, q->lkid, 0);
		return;
	}
	/* an asynchronous operation waits for nobody: it is told on the subscription, and the
	 * call is answered at once with the lock's id */
	uint64_t cookie = q->async ? ASYNC_COOKIE : wait_add(m, conn, req, (uint32_t[3]){q->session, q->slot, 0});
	if (cookie == 0) {
		if (q->op == OP_LOCK)
			own_free(m, o);
		coral_daemon_answer_error(d, conn, id, CORAL_EBUSY, "too many lock requests waiting");
		return;
	}
	if (q->op == OP_CANCEL && o->cookie != 0) {
		/* the waiting operation is answered by the master's refusal; this one at once */
		send_cancel(m, o);
		struct coral_wait w;
		if (wait_take(m, cookie, &w))
			answer_lkid(d, w.conn, w.req_id, o->lkid, 0);
		return;
	}
	o->cookie = cookie;
	o->async = q->async;
	o->op = q->op;
	o->want = q->mode;
	o->flags = q->flags;
	o->timeout_ms = q->timeout_ms;
	o->has_lvb = q->lvb.len == LVB_LEN;
	if (o->has_lvb)
		memcpy(o->lvb, q->lvb.data, LVB_LEN);
	o->resends = 0;
	if (q->async)
		answer_lkid(d, conn, id, o->lkid, o->mode < 0 ? 0 : (uint32_t)o->mode);
	own_send(m, o);
}

static void h_stats(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmdd *m = d->svc;
	const struct ges_stats *s = ges_core_stats(m->core);
	Coral__GesStatsReply r = CORAL__GES_STATS_REPLY__INIT;
	r.requests = s->requests;
	r.granted_now = s->granted_now;
	r.queued = s->queued;
	r.converts = s->converts;
	r.unlocks = s->unlocks;
	r.cancels = s->cancels;
	r.noqueue_refused = s->noqueue_refused;
	r.timeouts = s->timeouts;
	r.conv_deadlocks = s->conv_deadlocks;
	r.demoted = s->demoted;
	r.basts = s->basts;
	r.full = s->full;
	r.lvb_writes = s->lvb_writes;
	r.lvb_invalidated = s->lvb_invalidated;
	r.lvb_recovered = s->lvb_recovered;
	r.sessions_gone = s->sessions_gone;
	r.nodes_lost = s->nodes_lost;
	r.locks_lost = s->locks_lost;
	r.resources = ges_core_resources(m->core);
	r.locks = ges_core_locks(m->core);
	r.own_locks = m->ownsec->nused;
	r.sent = m->sent;
	r.not_master = m->not_master;
	r.joining_refused = m->joining_refused;
	r.joining_waits = m->joining_waits;
	r.unlocks_early = m->unlocks_early;
	r.orphans_settled = m->orphans_settled;
	r.refused_msgs = m->refused_msgs;
	r.owed = m->owed_now;
	r.owed_total = m->owed_total;
	r.owed_refused = m->owed_refused;
	r.basts_received = m->basts_received;
	r.basts_delivered = m->basts_delivered;
	r.rebuilt = s->rebuilt;
	r.dropped = s->dropped;
	r.held = ges_held(m->core);
	r.map_version = m->map_seen;
	r.victims = m->victims;
	const struct dlk_stats *ds = m->dlk ? dlk_stats(m->dlk) : &(struct dlk_stats){0}, *b = &m->dlk_before;
	r.deadlocks = b->deadlocks + ds->deadlocks;
	r.coordinator = m->coordinator;
	r.edges = m->dlk ? wfg_edges(dlk_graph(m->dlk)) : 0;
	r.phantoms = b->phantoms + ds->phantoms;
	r.probes_lapsed = b->probes_lapsed + ds->probes_lapsed;
	r.swept = b->swept + ds->swept;
	r.graph_full = b->full + ds->full;
	struct coral_ges_own *f = m->ownsec;
	r.fast_grants = atomic_load(&f->fast_grants);
	r.fast_converts = atomic_load(&f->fast_converts);
	r.fast_unlocks = atomic_load(&f->fast_unlocks);
	r.fast_refused = atomic_load(&f->fast_refused);
	r.fast_fallbacks = atomic_load(&f->fast_fallbacks);
	r.fast_imports = atomic_load(&f->fast_imports);
	r.fast_repairs = atomic_load(&f->fast_repairs);
	r.fast_open = atomic_load(&f->fast_version) != 0;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_STATS;
	resp.ges_stats = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

static void h_resource(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmdd *m = d->svc;
	const Coral__GesResourceRequest *q = req->ges_resource;
	if (q->name.len == 0 || q->name.len > GES_NAME_MAX) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_EINVAL, "a resource name has 1 to %d bytes",
					  GES_NAME_MAX);
		return;
	}
	static struct ges_lock_view v[256];
	uint8_t lvb[GES_LVB_MAX];
	bool valid = false;
	int n = ges_resource(m->core, q->name.data, q->name.len, v, 256, lvb, &valid);
	static const char *const qn[4] = {"granted", "converting", "waiting", "fast"};
	if (n < 0) {
		/* not in the core: its sessions' fast locks, if it has any */
		uint32_t b = coral_ges_fast_bucket_of(q->name.data, q->name.len);
		bool locked = fast_lock_bucket(m, b);
		const struct coral_ges_fast_res *e = locked ? coral_ges_fast_find(bucket(m, b), q->name.data, q->name.len) : NULL;
		if (e && !e->slow) {
			n = e->nholders;
			for (int i = 0; i < n; i++) {
				const struct own *o = &m->own[e->holders[i] - 1];
				v[i] = (struct ges_lock_view){m->self, (uint64_t)o->slot << 32 | o->session, o->lkid, o->mode,
							     GES_NONE, o->flags, 3, false, 0};
			}
			memcpy(lvb, e->lvb, LVB_LEN);
			valid = e->lvb_valid;
		}
		if (locked)
			coral_ges_fast_unlock_bucket(m->ownsec, b);
	}
	Coral__GesResourceReply r = CORAL__GES_RESOURCE_REPLY__INIT;
	r.master = master_of(m, q->name.data, q->name.len, NULL);
	r.here = n >= 0;
	int shown = n < 0 ? 0 : n > 256 ? 256 : n;
	static Coral__GesLockInfo info[256];
	static Coral__GesLockInfo *infop[256];
	uint64_t now = now_ms();
	for (int i = 0; i < shown; i++) {
		coral__ges_lock_info__init(&info[i]);
		info[i].node = v[i].node;
		info[i].session = v[i].session;
		info[i].lkid = v[i].lkid;
		info[i].granted = (char *)(v[i].gr == GES_NONE ? "" : ges_mode_name(v[i].gr));
		info[i].requested = (char *)(v[i].rq == GES_NONE ? "" : ges_mode_name(v[i].rq));
		info[i].queue = (char *)qn[v[i].queue];
		info[i].lost = v[i].lost;
		info[i].waited_ms = v[i].wait_since_ms && now > v[i].wait_since_ms ? now - v[i].wait_since_ms : 0;
		infop[i] = &info[i];
	}
	r.locks = infop;
	r.n_locks = (size_t)shown;
	if (n >= 0) {
		r.lvb.data = lvb;
		r.lvb.len = LVB_LEN;
		r.lvb_valid = valid;
	}
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_RESOURCE;
	resp.ges_resource = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* coralctl ges deadlocks: the cycles this node found as the coordinator, oldest first. */
static void h_deadlocks(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmdd *m = d->svc;
	static Coral__GesDeadlock dl[DEADLOCK_HISTORY];
	static Coral__GesDeadlock *dlp[DEADLOCK_HISTORY];
	static Coral__GesCycleStep st[DEADLOCK_HISTORY][WFG_CYCLE_MAX];
	static Coral__GesCycleStep *stp[DEADLOCK_HISTORY][WFG_CYCLE_MAX];
	static char names[DEADLOCK_HISTORY][WFG_CYCLE_MAX][GES_NAME_MAX + 1];
	uint64_t first = m->nhistory > DEADLOCK_HISTORY ? m->nhistory - DEADLOCK_HISTORY : 0;
	size_t n = (size_t)(m->nhistory - first);
	for (size_t i = 0; i < n; i++) {
		const struct deadlock *x = &m->history[(first + i) % DEADLOCK_HISTORY];
		coral__ges_deadlock__init(&dl[i]);
		dl[i].at_ms = x->at_ms;
		dl[i].victim = (uint32_t)x->victim;
		for (int k = 0; k < x->n; k++) {
			const struct wfg_edge *e = &x->cycle[k];
			coral__ges_cycle_step__init(&st[i][k]);
			st[i][k].node = e->waiter.node;
			st[i][k].session = e->waiter.session;
			st[i][k].resource = printable(names[i][k], e->name, e->len);
			st[i][k].master = e->master;
			st[i][k].lkid = e->lkid;
			stp[i][k] = &st[i][k];
		}
		dl[i].cycle = stp[i];
		dl[i].n_cycle = (size_t)x->n;
		dlp[i] = &dl[i];
	}
	Coral__GesDeadlocksReply r = CORAL__GES_DEADLOCKS_REPLY__INIT;
	r.coordinator = m->coordinator;
	r.deadlocks = dlp;
	r.n_deadlocks = n;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_DEADLOCKS;
	resp.ges_deadlocks = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* coralctl ges graph: the wait-for graph as this node (the coordinator) has it now. */
static void h_graph(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmdd *m = d->svc;
	enum { GRAPH_MAX = 4096 };
	static Coral__GesGraphEdge e[GRAPH_MAX];
	static Coral__GesGraphEdge *ep[GRAPH_MAX];
	static char names[GRAPH_MAX][GES_NAME_MAX + 1];
	const struct wfg *wg = m->dlk ? dlk_graph(m->dlk) : NULL;
	uint32_t total = wg ? wfg_edges(wg) : 0, n = total < GRAPH_MAX ? total : GRAPH_MAX;
	for (uint32_t i = 0; i < n; i++) {
		const struct wfg_edge *x = wfg_edge_at(wg, i);
		coral__ges_graph_edge__init(&e[i]);
		e[i].waiter_node = x->waiter.node;
		e[i].waiter_session = x->waiter.session;
		e[i].holder_node = x->holder.node;
		e[i].holder_session = x->holder.session;
		e[i].resource = printable(names[i], x->name, x->len);
		e[i].master = x->master;
		e[i].lkid = x->lkid;
		e[i].since_ms = x->since_ms;
		e[i].held = x->held;
		ep[i] = &e[i];
	}
	Coral__GesGraphReply r = CORAL__GES_GRAPH_REPLY__INIT;
	r.coordinator = m->coordinator;
	r.edges = ep;
	r.n_edges = n;
	r.total = total;
	r.probing = m->dlk ? dlk_probing(m->dlk) : 0;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_GRAPH;
	resp.ges_graph = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* A session subscribes to its locks' events: only the process holding its slot may. */
static void h_subscribe(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmdd *m = d->svc;
	const Coral__GesSubscribeRequest *q = req->ges_subscribe;
	uint64_t id = coral_ctl_request_id(req);
	if (!session_is_callers(d, conn, id, q->session, q->slot))
		return;
	m->subs[q->slot - 1] = (struct sub){conn, id, q->session};
	coral_ipc_conn_keep(coral_ipc_server_conn(d->ipc, conn));
	Coral__GesEvent ev = CORAL__GES_EVENT__INIT;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_EVENT;
	resp.ges_event = &ev;
	coral_daemon_answer(d, conn, id, &resp);
}

/* coralctl ges locks: the locks of this node's sessions, held and asked for, wherever mastered. */
static void h_locks(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct lmdd *m = d->svc;
	const Coral__GesLocksRequest *q = req->ges_locks;
	enum { LOCKS_MAX = 4096 };
	static Coral__GesOwnLock l[LOCKS_MAX];
	static Coral__GesOwnLock *lp[LOCKS_MAX];
	static char names[LOCKS_MAX][GES_NAME_MAX + 1];
	static const char *const ops[] = {"", "lock", "convert", "unlock", "cancel"};
	uint32_t n = 0, total = 0;
	for (uint32_t i = 0; i < OWN_MAX; i++) {
		const struct own *o = &m->own[i];
		bool under_way = o->cookie != 0 && o->op >= OP_LOCK && o->op <= OP_CANCEL;
		uint8_t state = atomic_load(&o->used);
		if (state == CORAL_GES_OWN_FREE || (q->waiting && !under_way) || (q->session && o->session != q->session))
			continue;
		total++;
		if (n == LOCKS_MAX)
			continue;
		coral__ges_own_lock__init(&l[n]);
		l[n].session = o->session;
		l[n].lkid = o->lkid;
		l[n].resource = printable(names[n], o->name, o->len);
		l[n].master = o->master;
		l[n].granted = (char *)(o->mode < 0 ? "" : ges_mode_name(o->mode));
		l[n].op = (char *)(under_way ? ops[o->op] : "");
		l[n].want = (char *)(under_way && o->op != OP_UNLOCK && o->op != OP_CANCEL ? ges_mode_name((int)o->want) : "");
		l[n].orphan = o->orphan;
		l[n].dying = o->dying;
		l[n].fast = state == CORAL_GES_OWN_FAST;
		lp[n] = &l[n];
		n++;
	}
	Coral__GesLocksReply r = CORAL__GES_LOCKS_REPLY__INIT;
	r.locks = lp;
	r.n_locks = n;
	r.total = total;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_GES_LOCKS;
	resp.ges_locks = &r;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
}

/* ges stats' figures that are levels, not counts (the rest are counters) */
static const char *const ges_gauges[] = {"resources", "locks", "own_locks", "held", "map_version",
	"coordinator", "edges", "fast_open", NULL};

static const struct coral_daemon_request lmdd_requests[] = {
	{CORAL__CTL_REQUEST__BODY_GES_LOCKS, false, h_locks, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GES_SUBSCRIBE, false, h_subscribe, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GES_GRAPH, false, h_graph, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GES_DEADLOCKS, false, h_deadlocks, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GES_LOCK, false, h_lock, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_GES_STATS, false, h_stats, "ges", ges_gauges},
	{CORAL__CTL_REQUEST__BODY_GES_RESOURCE, false, h_resource, NULL, NULL},
};

/* ---- lifecycle ------------------------------------------------------------------------- */

static const struct coral_kit_def lmdd_kit = {
	.port = CORAL_PORT_LMDD, .tick_ms = TICK_MS, .selfq = 4096, .waits = 4096,
	.clock = kit_clock, .recv = kit_recv, .tick = on_tick,
};

static int lmdd_init(struct coral_daemon *d)
{
	struct lmdd *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return CORAL_ENOMEM;
	d->svc = m;
	m->d = d;
	m->self = (uint32_t)d->node->id;
	m->cl = coral_cluster_sga(&d->sga);
	m->map = coral_grd_map_sga(&d->sga);
	m->dir = coral_grd_dir_sga(&d->sga, "grd_dir");
	m->cache = coral_cache_sga(&d->sga);
	if (!m->cl || !m->map || !m->dir || !m->cache) {
		log_error("the SGA has no cluster, grd_map, grd_dir or cache section: restart the node");
		return CORAL_EVERSION;
	}
	m->ownsec = coral_ges_own_sga(&d->sga);
	if (m->ownsec == NULL) {
		log_error("the SGA has no ges_own section: restart the node");
		return CORAL_EVERSION;
	}
	m->own = m->ownsec->locks;
	m->handoff = calloc(HANDOFF_MAX, sizeof(*m->handoff));
	m->bhand = calloc(CORAL_GRD_BUCKETS, sizeof(*m->bhand));
	if (m->handoff == NULL || m->bhand == NULL)
		return CORAL_ENOMEM;
	struct ges_ops ops = {.done = core_done, .bast = core_bast, .waits = core_waits, .arg = m, .unbast = core_unbast};
	m->core = ges_core_new((uint32_t)d->conf.ges.max_resources, (uint32_t)d->conf.ges.max_locks, LVB_LEN, &ops);
	if (m->core == NULL)
		return CORAL_ENOMEM;
	m->instance = coral_now_real_ns();
	if (m->ownsec->next_seq == 0)
		m->ownsec->next_seq = coral_now_real_ns() / 1000ull;
	/* an lmdd served before this one: what it was doing for the sessions is over (their
	 * calls ended with its connections); the locks are put back at their masters with the
	 * first map (check_map), waiting operations cancelled there */
	m->restarted = m->ownsec->lmdd_pid != 0;
	m->ownsec->lmdd_pid = (int32_t)getpid();
	/* nothing is granted, by this lmdd or by a session itself, until it has the map and every
	 * member has put its locks back: a restarted lmdd's queues are empty until then, and a
	 * request granted from them would pass a lock it does not know of yet */
	atomic_store(&m->ownsec->fast_version, 0);
	ges_hold(m->core, true);
	m->held_since_ms = now_ms();
	if (m->restarted) {
		uint32_t n = 0;
		for (uint32_t k = 0; k < OWN_MAX; k++) {
			struct own *o = &m->own[k];
			if (!mine(o))
				continue;  /* (a fast lock is its session's: taken over with the first map) */
			n++;
			o->orphan = o->cookie != 0 && (o->op == OP_LOCK || o->op == OP_CONVERT);
			if (o->cookie != 0 && o->op == OP_UNLOCK)
				o->dying = 1;  /* unlocked again once put back */
			o->cookie = 0;
			o->async = 0;
			o->resend_ms = 0;
			o->resends = 0;
		}
		log_warn("an lmdd served before this one: its %u locks of this node's sessions are put back at their "
			 "masters, and every node puts back the locks this node masters (lmdd(8), RESTART)", n);
	}
	/* the losses counted before this lmdd started are not news to it */
	for (uint32_t n = 0; n < CORAL_MAX_NODES; n++) {
		m->lost_seen[n] = atomic_load(&m->dir->loss[n].seq);
		m->done_seen[n] = atomic_load(&m->dir->loss[n].done);
	}
	int rc = coral_kit_init(&m->kit, d, &lmdd_kit, m);
	if (rc != 0)
		return rc;
	return coral_kit_start(&m->kit, m);  /* the "core" the kit hands recv is lmdd itself */
}

static void lmdd_fini(struct coral_daemon *d)
{
	struct lmdd *m = d->svc;
	if (m == NULL)
		return;
	coral_kit_fini(&m->kit);
	ges_core_free(m->core);
	dlk_free(m->dlk);
	free(m->handoff);
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
		owed_drop(m, n);
	free(m->bhand);
	free(m);
	d->svc = NULL;
}

static const struct coral_daemon_def lmdd_def = {
	.id = CORAL_D_LMDD,
	.service = "Global Enqueue Service: named locks in six modes, queues, value blocks (lmdd(8): what is not built yet)",
	.service_ready = true,
	.init = lmdd_init,
	.fini = lmdd_fini,
	.requests = lmdd_requests,
	.nrequests = CORAL_ARRAY_LEN(lmdd_requests),
	.min_clients = 2 * CORAL_CACHE_SESSIONS + 8,  /* a session's calls, and its events */
	.clients_limit = "two for each of the node's 1024 session slots and [lmdd] max_clients",
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &lmdd_def);
}

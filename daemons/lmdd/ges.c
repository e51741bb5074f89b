/* The GES master core (ges.h): resources in a hash table by name, locks in a hash table by
 * (node, lock id), each lock on one of its resource's three queues (doubly linked, in
 * order). Every change ends in grant_pending, which grants what has become grantable in
 * queue order and sends the blocking notifications still owed. Nothing here blocks, reads a
 * clock or does I/O. */
#include "ges.h"

#include "errors.h"
#include "ges_own.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lock {
	uint32_t node;
	uint64_t session, lkid;
	int8_t gr, rq;
	int8_t bast;          /* the strongest mode a blocking notification was sent for */
	int8_t prio;          /* its session's priority for the choice of deadlock victims */
	bool lost;
	bool demoted;         /* taken down to NL in a conversion deadlock, not reported yet */
	uint8_t queue;
	uint32_t flags;
	uint64_t since_ms, deadline_ms;
	struct res *res;
	struct lock *prev, *next;  /* on the resource's queue */
	struct lock *hnext;        /* in the lock table's chain */
};

struct queue {
	struct lock *head, *tail;
	uint32_t n;
};

struct res {
	uint8_t name[GES_NAME_MAX];
	uint8_t len;
	bool lvb_valid, lvb_written;  /* written: it has a state to keep (a value, or invalid) */
	bool lvb_unknown;             /* put back by a rebuild: its value stayed with the old master
				       * (a holder's copy may tell it: ges_recover_lvb) */
	uint8_t lvb[GES_LVB_MAX];
	struct queue q[3];
	struct res *hnext;
};

struct ges_core {
	struct ges_ops ops;
	uint32_t max_res, max_locks, lvb_len;
	uint32_t nres, nlocks;
	uint32_t res_buckets, lock_buckets;  /* powers of two */
	struct res **res_tab;
	struct lock **lock_tab;
	bool held;            /* a rebuild under way: nothing is granted */
	uint64_t next_deadline_ms;  /* no queued lock's timeout passes before (0: none queued
				     * with one): ges_tick scans nothing until then */
	struct ges_stats st;
};

/* A queued lock's timeout, noted for ges_tick. */
static void note_deadline(struct ges_core *c, const struct lock *l);

/* The DLM's matrix is libcommon's (ges_own.h): sessions' fast grants use it too. */
#define compat coral_ges_compat_matrix
_Static_assert(GES_F_NOQUEUE == CORAL_GES_F_NOQUEUE && GES_F_VALBLK == CORAL_GES_F_VALBLK && GES_NL == 0 && GES_EX == 5,
	       "ges.h's flags and modes differ from ges_own.h's");

static const char *const mode_names[GES_NMODES] = {"NL", "CR", "CW", "PR", "PW", "EX"};

static bool valid_mode(int m) { return m >= 0 && m < GES_NMODES; }

bool ges_compat(int a, int b) { return valid_mode(a) && valid_mode(b) && compat[a][b]; }

const char *ges_mode_name(int mode) { return valid_mode(mode) ? mode_names[mode] : "--"; }

int ges_mode_parse(const char *s)
{
	for (int m = 0; m < GES_NMODES; m++)
		if (s && strcmp(s, mode_names[m]) == 0)
			return m;
	return GES_NONE;
}

static bool not_stronger(int to, int from) { return coral_ges_not_stronger(to, from); }

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 16;
	while (p < n && p < (1u << 30))
		p <<= 1;
	return p;
}

/* FNV-1a over the name; the lock key mixes node and id. */
static uint32_t name_hash(const uint8_t *name, size_t len)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ name[i]) * 16777619u;
	return h;
}

static uint32_t lock_hash(uint32_t node, uint64_t lkid)
{
	uint64_t x = lkid * 0x9e3779b97f4a7c15ull ^ (uint64_t)node * 0xc2b2ae3d27d4eb4full;
	return (uint32_t)(x >> 32 ^ x);
}

struct ges_core *ges_core_new(uint32_t max_res, uint32_t max_locks, uint32_t lvb_len, const struct ges_ops *ops)
{
	if (max_res == 0 || max_locks == 0 || lvb_len == 0 || lvb_len > GES_LVB_MAX || ops == NULL)
		return NULL;
	struct ges_core *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->ops = *ops;
	c->max_res = max_res;
	c->max_locks = max_locks;
	c->lvb_len = lvb_len;
	c->res_buckets = pow2_at_least(max_res);
	c->lock_buckets = pow2_at_least(max_locks);
	c->res_tab = calloc(c->res_buckets, sizeof(*c->res_tab));
	c->lock_tab = calloc(c->lock_buckets, sizeof(*c->lock_tab));
	if (c->res_tab == NULL || c->lock_tab == NULL) {
		ges_core_free(c);
		return NULL;
	}
	return c;
}

void ges_core_free(struct ges_core *c)
{
	if (c == NULL)
		return;
	for (uint32_t b = 0; c->lock_tab && b < c->lock_buckets; b++)
		for (struct lock *l = c->lock_tab[b], *n; l; l = n) {
			n = l->hnext;
			free(l);
		}
	for (uint32_t b = 0; c->res_tab && b < c->res_buckets; b++)
		for (struct res *r = c->res_tab[b], *n; r; r = n) {
			n = r->hnext;
			free(r);
		}
	free(c->lock_tab);
	free(c->res_tab);
	free(c);
}

/* ---- tables ------------------------------------------------------------------------- */

static struct res *res_find(const struct ges_core *c, const uint8_t *name, size_t len)
{
	for (struct res *r = c->res_tab[name_hash(name, len) & (c->res_buckets - 1)]; r; r = r->hnext)
		if (r->len == len && memcmp(r->name, name, len) == 0)
			return r;
	return NULL;
}

static struct res *res_get(struct ges_core *c, const uint8_t *name, size_t len)
{
	struct res *r = res_find(c, name, len);
	if (r != NULL)
		return r;
	if (c->nres >= c->max_res)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	memcpy(r->name, name, len);
	r->len = (uint8_t)len;
	r->lvb_valid = true;  /* never written: zeros, and that is its value */
	uint32_t b = name_hash(name, len) & (c->res_buckets - 1);
	r->hnext = c->res_tab[b];
	c->res_tab[b] = r;
	c->nres++;
	return r;
}

/* A resource with no lock goes, unless its value block has a state to remember (written, or
 * made invalid): that is kept (it counts against max_res) so that the next holder reads it,
 * or learns that it is not valid; a fresh resource would say zeros, valid. */
static void res_maybe_free(struct ges_core *c, struct res *r)
{
	if (r->q[0].n || r->q[1].n || r->q[2].n || r->lvb_written)
		return;
	struct res **pp = &c->res_tab[name_hash(r->name, r->len) & (c->res_buckets - 1)];
	while (*pp && *pp != r)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = r->hnext;
	c->nres--;
	free(r);
}

static struct lock *lock_find(const struct ges_core *c, uint32_t node, uint64_t lkid)
{
	for (struct lock *l = c->lock_tab[lock_hash(node, lkid) & (c->lock_buckets - 1)]; l; l = l->hnext)
		if (l->node == node && l->lkid == lkid)
			return l;
	return NULL;
}

/* A lock of r in the lock table, on no queue yet (NULL: no memory). */
static struct lock *lock_new(struct ges_core *c, struct res *r, uint32_t node, uint64_t session, uint64_t lkid, int gr,
			     int rq, uint32_t flags)
{
	struct lock *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->node = node;
	l->session = session;
	l->lkid = lkid;
	l->gr = (int8_t)gr;
	l->rq = (int8_t)rq;
	l->bast = GES_NONE;
	l->flags = flags;
	l->res = r;
	uint32_t b = lock_hash(node, lkid) & (c->lock_buckets - 1);
	l->hnext = c->lock_tab[b];
	c->lock_tab[b] = l;
	c->nlocks++;
	return l;
}

static void q_append(struct queue *q, struct lock *l)
{
	l->next = NULL;
	l->prev = q->tail;
	if (q->tail)
		q->tail->next = l;
	else
		q->head = l;
	q->tail = l;
	q->n++;
}

static void q_remove(struct queue *q, struct lock *l)
{
	if (l->prev)
		l->prev->next = l->next;
	else
		q->head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else
		q->tail = l->prev;
	l->prev = l->next = NULL;
	q->n--;
}

static void move_to(struct lock *l, int queue)
{
	q_remove(&l->res->q[l->queue], l);
	l->queue = (uint8_t)queue;
	q_append(&l->res->q[queue], l);
}

static void lock_free(struct ges_core *c, struct lock *l)
{
	struct lock **pp = &c->lock_tab[lock_hash(l->node, l->lkid) & (c->lock_buckets - 1)];
	while (*pp && *pp != l)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = l->hnext;
	q_remove(&l->res->q[l->queue], l);
	c->nlocks--;
	free(l);
}

/* ---- granting ----------------------------------------------------------------------- */

/* Whether `mode` goes with the granted mode of every lock of r but `self` (granted and
 * converting locks hold theirs). */
static bool fits_granted(const struct res *r, const struct lock *self, int mode)
{
	for (int q = GES_Q_GRANTED; q <= GES_Q_CONVERT; q++)
		for (const struct lock *o = r->q[q].head; o; o = o->next)
			if (o != self && o->gr != GES_NONE && !compat[mode][o->gr])
				return false;
	return true;
}

static void answer_of(const struct ges_core *c, const struct lock *l, struct ges_answer *a)
{
	if (a == NULL)
		return;
	memset(a, 0, sizeof(*a));
	a->gr = l->gr;
	a->demoted = l->demoted;
	if (l->flags & GES_F_VALBLK) {
		memcpy(a->lvb, l->res->lvb, c->lvb_len);
		a->lvb_valid = l->res->lvb_valid;
	}
}

/* l is granted its requested mode; told through ops.done if it was queued. */
static void grant(struct ges_core *c, struct lock *l, bool tell)
{
	l->gr = l->rq;
	l->rq = GES_NONE;
	l->bast = GES_NONE;
	l->since_ms = l->deadline_ms = 0;
	move_to(l, GES_Q_GRANTED);
	if (tell) {
		struct ges_answer a;
		answer_of(c, l, &a);
		l->demoted = false;
		c->ops.done(c->ops.arg, l->node, l->session, l->lkid, 0, a.gr, a.demoted,
			    (l->flags & GES_F_VALBLK) ? a.lvb : NULL, a.lvb_valid);
	}
}

/* A queued request or conversion ends without a grant: a conversion goes back to granted at
 * its mode, a request goes (its resource stays: the caller frees it if it is left empty). */
static void refuse(struct ges_core *c, struct lock *l, int code)
{
	uint32_t node = l->node;
	uint64_t session = l->session, lkid = l->lkid;
	int gr = l->gr;
	bool demoted = l->demoted;
	l->demoted = false;
	if (l->queue == GES_Q_CONVERT) {
		l->rq = GES_NONE;
		l->since_ms = l->deadline_ms = 0;
		move_to(l, GES_Q_GRANTED);
	} else {
		lock_free(c, l);
	}
	c->ops.done(c->ops.arg, node, session, lkid, code, gr, demoted, NULL, false);
}

/* Conversion deadlock: l (converting) is blocked by another converting lock that its own
 * granted mode blocks in turn. */
static struct lock *conv_deadlock(const struct res *r, const struct lock *l)
{
	for (struct lock *o = r->q[GES_Q_CONVERT].head; o; o = o->next)
		if (o != l && o->gr != GES_NONE && !compat[l->rq][o->gr] && l->gr != GES_NONE && !compat[o->rq][l->gr])
			return o;
	return NULL;
}

/* Conversion deadlocks on r are ended: a lock in one that allows it (GES_F_CONVDEADLK) is
 * taken down to NL; else the later of the two is refused (CORAL_EDEADLK), unless both are
 * GES_F_NODLCKWT. Returns whether anything changed. */
static bool end_conv_deadlocks(struct ges_core *c, struct res *r)
{
	for (struct lock *l = r->q[GES_Q_CONVERT].head; l; l = l->next) {
		struct lock *o = conv_deadlock(r, l);
		if (o == NULL)
			continue;
		c->st.conv_deadlocks++;
		struct lock *give = (l->flags & GES_F_CONVDEADLK) ? l : (o->flags & GES_F_CONVDEADLK) ? o : NULL;
		if (give != NULL) {
			give->gr = GES_NL;
			give->demoted = true;
			c->st.demoted++;
			return true;
		}
		/* the one queued later gives way, unless it may not (GES_F_NODLCKWT) */
		bool o_later = false;
		for (struct lock *x = l->next; x && !o_later; x = x->next)
			o_later = x == o;
		struct lock *later = o_later ? o : l, *earlier = o_later ? l : o;
		struct lock *victim = !(later->flags & GES_F_NODLCKWT)     ? later
				      : !(earlier->flags & GES_F_NODLCKWT) ? earlier
									   : NULL;
		if (victim == NULL)
			continue;
		refuse(c, victim, CORAL_EDEADLK);
		return true;
	}
	return false;
}

/* Whether holder h is in the way of a request queued on its resource. */
static bool in_the_way(const struct res *r, const struct lock *h)
{
	if (h->gr == GES_NONE || h->lost)
		return false;
	for (int wq = GES_Q_CONVERT; wq <= GES_Q_WAIT; wq++)
		for (const struct lock *w = r->q[wq].head; w; w = w->next)
			if (w != h && !compat[w->rq][h->gr])
				return true;
	return false;
}

/* Blocking notifications owed: each holder in the way of a queued lock's requested mode is
 * told once per mode at least that strong; a holder told before that is in nobody's way now
 * (the waiters gave up, were granted elsewhere or went) is told that too (ops.unbast), so
 * that its node knows which of its locks block someone (rsrcmgrd's idle-blocker limit). */
static void send_basts(struct ges_core *c, struct res *r)
{
	if (c->ops.waits)
		c->ops.waits(c->ops.arg, r->name, r->len);
	for (int wq = GES_Q_CONVERT; wq <= GES_Q_WAIT; wq++)
		for (struct lock *w = r->q[wq].head; w; w = w->next)
			for (int q = GES_Q_GRANTED; q <= GES_Q_CONVERT; q++)
				for (struct lock *h = r->q[q].head; h; h = h->next) {
					if (h == w || h->gr == GES_NONE || compat[w->rq][h->gr] || h->lost)
						continue;
					if (h->bast != GES_NONE && h->bast >= w->rq)
						continue;
					h->bast = (int8_t)w->rq;
					c->st.basts++;
					c->ops.bast(c->ops.arg, h->node, h->session, h->lkid, w->rq);
				}
	for (int q = GES_Q_GRANTED; q <= GES_Q_CONVERT; q++)
		for (struct lock *h = r->q[q].head; h; h = h->next)
			if (h->bast != GES_NONE && !in_the_way(r, h)) {
				h->bast = GES_NONE;
				c->st.unbasts++;
				if (c->ops.unbast)
					c->ops.unbast(c->ops.arg, h->node, h->session, h->lkid);
			}
}

/* Grants what can be granted, conversions first, each queue in its order; a lock that
 * cannot be granted stops its queue (no starvation), and new requests wait while any
 * conversion does. Conversion deadlocks are ended as they are found. */
static void grant_pending(struct ges_core *c, struct res *r)
{
	if (c->held)
		return;
	for (;;) {
		bool changed = false;
		while (r->q[GES_Q_CONVERT].head) {
			struct lock *l = r->q[GES_Q_CONVERT].head;
			if (!fits_granted(r, l, l->rq))
				break;
			grant(c, l, true);
			changed = true;
		}
		if (r->q[GES_Q_CONVERT].head == NULL)
			while (r->q[GES_Q_WAIT].head) {
				struct lock *l = r->q[GES_Q_WAIT].head;
				if (!fits_granted(r, l, l->rq))
					break;
				grant(c, l, true);
				changed = true;
			}
		if (!changed && !end_conv_deadlocks(c, r))
			break;
	}
	send_basts(c, r);
}

/* ---- requests ------------------------------------------------------------------------ */

static void write_lvb(struct ges_core *c, struct lock *l, int to, const uint8_t *lvb)
{
	if (lvb == NULL || !(l->flags & GES_F_VALBLK) || l->gr < GES_PW || (to != GES_NONE && !not_stronger(to, l->gr)))
		return;
	memcpy(l->res->lvb, lvb, c->lvb_len);
	l->res->lvb_valid = true;
	l->res->lvb_written = true;
	l->res->lvb_unknown = false;
	c->st.lvb_writes++;
}

/* A PW or EX holder goes without writing the value block: nobody knows what it holds. */
static void lost_writer(struct ges_core *c, struct lock *l)
{
	if (l->gr >= GES_PW && (l->res->lvb_valid || l->res->lvb_unknown)) {
		l->res->lvb_valid = false;
		l->res->lvb_written = true;
		l->res->lvb_unknown = false;  /* not even a copy tells it now */
		c->st.lvb_invalidated++;
	}
}

int ges_request(struct ges_core *c, uint32_t node, uint64_t session, uint64_t lkid, const void *name, size_t len,
		int mode, uint32_t flags, uint32_t timeout_ms, uint64_t now_ms, struct ges_answer *a)
{
	if (name == NULL || len == 0 || len > GES_NAME_MAX || !valid_mode(mode) || (flags & ~GES_F_ALL) ||
	    ((flags & GES_F_EXPEDITE) && mode != GES_NL) || (flags & GES_F_QUECVT))
		return CORAL_EINVAL;
	c->st.requests++;
	if (lock_find(c, node, lkid) != NULL)
		return CORAL_EEXIST;
	if (c->nlocks >= c->max_locks) {
		c->st.full++;
		return CORAL_EFULL;
	}
	struct res *r = res_get(c, name, len);
	if (r == NULL) {
		c->st.full++;
		return CORAL_EFULL;
	}
	bool now = !c->held && ((flags & GES_F_EXPEDITE) ||
				(r->q[GES_Q_CONVERT].n == 0 && r->q[GES_Q_WAIT].n == 0 && fits_granted(r, NULL, mode)));
	if (!now && (flags & GES_F_NOQUEUE)) {
		c->st.noqueue_refused++;
		res_maybe_free(c, r);
		return CORAL_EHELD;
	}
	struct lock *l = lock_new(c, r, node, session, lkid, GES_NONE, mode, flags);
	if (l == NULL) {
		res_maybe_free(c, r);
		return CORAL_ENOMEM;
	}
	if (now) {
		l->queue = GES_Q_GRANTED;
		q_append(&r->q[GES_Q_GRANTED], l);
		l->gr = l->rq;
		l->rq = GES_NONE;
		c->st.granted_now++;
		answer_of(c, l, a);
		return 0;
	}
	l->queue = GES_Q_WAIT;
	l->since_ms = now_ms ? now_ms : 1;
	l->deadline_ms = timeout_ms ? now_ms + timeout_ms : 0;
	note_deadline(c, l);
	q_append(&r->q[GES_Q_WAIT], l);
	c->st.queued++;
	send_basts(c, r);
	return CORAL_EPENDING;
}

int ges_convert(struct ges_core *c, uint32_t node, uint64_t lkid, int mode, uint32_t flags, uint32_t timeout_ms,
		const uint8_t *lvb, uint64_t now_ms, struct ges_answer *a)
{
	if (!valid_mode(mode) || (flags & ~GES_F_ALL) || (flags & GES_F_EXPEDITE))
		return CORAL_EINVAL;
	struct lock *l = lock_find(c, node, lkid);
	if (l == NULL)
		return CORAL_ENOENT;
	if (l->queue != GES_Q_GRANTED || l->lost)
		return CORAL_EBUSY;
	c->st.converts++;
	struct res *r = l->res;
	/* the request's flags from now on, but the value block stays asked for if it was */
	l->flags = flags | (l->flags & GES_F_VALBLK);
	write_lvb(c, l, mode, lvb);
	/* down: at once; up: at once if it fits, unless it was asked to queue behind others */
	bool now = !c->held && (not_stronger(mode, l->gr) ||
				(fits_granted(r, l, mode) && !((flags & GES_F_QUECVT) && r->q[GES_Q_CONVERT].n > 0)));
	if (now) {
		l->gr = (int8_t)mode;
		l->bast = GES_NONE;
		answer_of(c, l, a);
		l->demoted = false;
		grant_pending(c, r);  /* a conversion down may let others in */
		return 0;
	}
	if (flags & GES_F_NOQUEUE) {
		c->st.noqueue_refused++;
		return CORAL_EHELD;
	}
	l->rq = (int8_t)mode;
	l->since_ms = now_ms ? now_ms : 1;
	l->deadline_ms = timeout_ms ? now_ms + timeout_ms : 0;
	note_deadline(c, l);
	move_to(l, GES_Q_CONVERT);
	c->st.queued++;
	/* a conversion deadlock it closes is answered now, to it if it is the victim */
	struct lock *o = conv_deadlock(r, l);
	if (o != NULL && !(l->flags & GES_F_CONVDEADLK) && !(o->flags & GES_F_CONVDEADLK) &&
	    !(l->flags & GES_F_NODLCKWT)) {
		c->st.conv_deadlocks++;
		l->rq = GES_NONE;
		l->since_ms = l->deadline_ms = 0;
		move_to(l, GES_Q_GRANTED);
		send_basts(c, r);
		return CORAL_EDEADLK;
	}
	grant_pending(c, r);  /* may grant it at once: then ops.done has said so already */
	return CORAL_EPENDING;
}

int ges_unlock(struct ges_core *c, uint32_t node, uint64_t lkid, const uint8_t *lvb, uint64_t now_ms)
{
	(void)now_ms;
	struct lock *l = lock_find(c, node, lkid);
	if (l == NULL)
		return CORAL_ENOENT;
	if (l->queue != GES_Q_GRANTED)
		return CORAL_EBUSY;
	c->st.unlocks++;
	struct res *r = l->res;
	write_lvb(c, l, GES_NONE, lvb);
	lock_free(c, l);
	grant_pending(c, r);
	res_maybe_free(c, r);
	return 0;
}

int ges_cancel(struct ges_core *c, uint32_t node, uint64_t lkid, uint64_t now_ms)
{
	(void)now_ms;
	struct lock *l = lock_find(c, node, lkid);
	if (l == NULL)
		return CORAL_ENOENT;
	if (l->queue == GES_Q_GRANTED)
		return CORAL_EINVAL;
	c->st.cancels++;
	struct res *r = l->res;
	refuse(c, l, CORAL_ECANCELED);
	grant_pending(c, r);
	res_maybe_free(c, r);
	return 0;
}

int ges_lock_mode(const struct ges_core *c, uint32_t node, uint64_t lkid)
{
	const struct lock *l = lock_find(c, node, lkid);
	return l ? l->gr : GES_NONE;
}

static void note_deadline(struct ges_core *c, const struct lock *l)
{
	if (l->deadline_ms != 0 && (c->next_deadline_ms == 0 || l->deadline_ms < c->next_deadline_ms))
		c->next_deadline_ms = l->deadline_ms;
}

/* Calls fn on every lock (it may free the lock it is given, and its resource), then grants
 * what became grantable on every resource touched. */
static void each_lock(struct ges_core *c, bool (*fn)(struct ges_core *, struct lock *, void *), void *arg)
{
	for (uint32_t b = 0; b < c->res_buckets; b++) {
		for (struct res *r = c->res_tab[b], *rn; r; r = rn) {
			rn = r->hnext;
			bool touched = false;
			for (int q = GES_Q_GRANTED; q <= GES_Q_WAIT; q++)
				for (struct lock *l = r->q[q].head, *n; l; l = n) {
					n = l->next;
					touched |= fn(c, l, arg);
				}
			if (touched) {
				grant_pending(c, r);
				res_maybe_free(c, r);
			}
		}
	}
}

static bool timeout_one(struct ges_core *c, struct lock *l, void *arg)
{
	uint64_t now = *(const uint64_t *)arg;
	if (l->queue == GES_Q_GRANTED || l->deadline_ms == 0)
		return false;
	if (l->deadline_ms > now) {
		note_deadline(c, l);  /* the next scan's time, from what still waits */
		return false;
	}
	c->st.timeouts++;
	refuse(c, l, CORAL_ETIMEDOUT);
	return true;
}

/* Refuses the queued requests whose timeout passed. The scan of every resource runs only
 * once the earliest timeout noted is due (every tick it cost an idle lmdd most of its CPU:
 * a walk of the whole table); a lock granted or gone before its timeout leaves the noted
 * time early, which costs one scan that notes the next. */
void ges_tick(struct ges_core *c, uint64_t now_ms)
{
	if (c->next_deadline_ms == 0 || now_ms < c->next_deadline_ms)
		return;
	c->next_deadline_ms = 0;
	each_lock(c, timeout_one, &now_ms);
}

struct who {
	uint32_t node;
	uint64_t session;
	bool all_of_node;
};

static bool session_one(struct ges_core *c, struct lock *l, void *arg)
{
	const struct who *w = arg;
	if (l->node != w->node || l->session != w->session)
		return false;
	lost_writer(c, l);
	lock_free(c, l);
	return true;
}

void ges_session_gone(struct ges_core *c, uint32_t node, uint64_t session, uint64_t now_ms)
{
	(void)now_ms;
	c->st.sessions_gone++;
	struct who w = {node, session, false};
	each_lock(c, session_one, &w);
}

static bool node_lost_one(struct ges_core *c, struct lock *l, void *arg)
{
	const struct who *w = arg;
	if (l->node != w->node)
		return false;
	if (l->queue == GES_Q_WAIT) {
		lock_free(c, l);
		return true;
	}
	if (l->queue == GES_Q_CONVERT) {
		l->rq = GES_NONE;
		l->since_ms = l->deadline_ms = 0;
		move_to(l, GES_Q_GRANTED);
	}
	if (!l->lost) {
		l->lost = true;
		c->st.locks_lost++;
		lost_writer(c, l);
	}
	return true;
}

void ges_node_lost(struct ges_core *c, uint32_t node, uint64_t now_ms)
{
	(void)now_ms;
	c->st.nodes_lost++;
	struct who w = {node, 0, true};
	each_lock(c, node_lost_one, &w);
}

static bool node_recovered_one(struct ges_core *c, struct lock *l, void *arg)
{
	const struct who *w = arg;
	if (l->node != w->node || !l->lost)
		return false;
	lock_free(c, l);
	return true;
}

void ges_node_recovered(struct ges_core *c, uint32_t node, uint64_t now_ms)
{
	(void)now_ms;
	struct who w = {node, 0, true};
	each_lock(c, node_recovered_one, &w);
}

/* ---- the rebuild ------------------------------------------------------------------------ */

void ges_hold(struct ges_core *c, bool hold)
{
	bool was = c->held;
	c->held = hold;
	if (was && !hold)
		for (uint32_t b = 0; b < c->res_buckets; b++)
			for (struct res *r = c->res_tab[b]; r; r = r->hnext)
				grant_pending(c, r);
}

bool ges_held(const struct ges_core *c) { return c->held; }

int ges_rebuild(struct ges_core *c, uint32_t node, uint64_t session, uint64_t lkid, const void *name, size_t len,
		int gr, int rq, uint32_t flags, uint64_t now_ms)
{
	if (name == NULL || len == 0 || len > GES_NAME_MAX || (gr != GES_NONE && !valid_mode(gr)) ||
	    (rq != GES_NONE && !valid_mode(rq)) || (gr == GES_NONE && rq == GES_NONE) || (flags & ~GES_F_ALL))
		return CORAL_EINVAL;
	if (lock_find(c, node, lkid) != NULL)
		return CORAL_EEXIST;
	if (c->nlocks >= c->max_locks) {
		c->st.full++;
		return CORAL_EFULL;
	}
	bool fresh = res_find(c, name, len) == NULL;
	struct res *r = res_get(c, name, len);
	if (r == NULL) {
		c->st.full++;
		return CORAL_EFULL;
	}
	if (fresh) {
		r->lvb_valid = false;  /* the value stayed with the old master */
		r->lvb_written = true;
		r->lvb_unknown = true;
	}
	struct lock *l = lock_new(c, r, node, session, lkid, gr, rq, flags);
	if (l == NULL) {
		res_maybe_free(c, r);
		return CORAL_ENOMEM;
	}
	l->queue = gr == GES_NONE ? GES_Q_WAIT : rq == GES_NONE ? GES_Q_GRANTED : GES_Q_CONVERT;
	if (rq != GES_NONE)
		l->since_ms = now_ms ? now_ms : 1;
	q_append(&r->q[l->queue], l);
	c->st.rebuilt++;
	return 0;
}

void ges_drop(struct ges_core *c, bool (*keep)(void *arg, const uint8_t *name, size_t len), void *arg)
{
	for (uint32_t b = 0; b < c->res_buckets; b++)
		for (struct res *r = c->res_tab[b], *rn; r; r = rn) {
			rn = r->hnext;
			if (keep(arg, r->name, r->len))
				continue;
			for (int q = GES_Q_GRANTED; q <= GES_Q_WAIT; q++)
				while (r->q[q].head)
					lock_free(c, r->q[q].head);
			r->lvb_written = false;
			res_maybe_free(c, r);
			c->st.dropped++;
		}
}

int ges_set_lvb(struct ges_core *c, const void *name, size_t len, const uint8_t *lvb, bool valid, bool written)
{
	if (name == NULL || len == 0 || len > GES_NAME_MAX || lvb == NULL)
		return CORAL_EINVAL;
	struct res *r = res_get(c, name, len);
	if (r == NULL) {
		c->st.full++;
		return CORAL_EFULL;
	}
	memcpy(r->lvb, lvb, c->lvb_len);
	r->lvb_valid = valid;
	r->lvb_written = written;
	r->lvb_unknown = false;
	res_maybe_free(c, r);
	return 0;
}

int ges_recover_lvb(struct ges_core *c, const void *name, size_t len, int gr, const uint8_t *lvb)
{
	struct res *r = name && len && len <= GES_NAME_MAX && lvb ? res_find(c, name, len) : NULL;
	if (r == NULL)
		return CORAL_ENOENT;
	if (!r->lvb_unknown || gr < GES_CW || gr > GES_EX)
		return CORAL_EINVAL;
	memcpy(r->lvb, lvb, c->lvb_len);
	r->lvb_valid = true;
	r->lvb_unknown = false;
	c->st.lvb_recovered++;
	return 0;
}

int ges_take_idle(struct ges_core *c, const void *name, size_t len, uint8_t *lvb, bool *valid, bool *written)
{
	struct res *r = name && len && len <= GES_NAME_MAX ? res_find(c, name, len) : NULL;
	if (r == NULL)
		return CORAL_ENOENT;
	if (r->q[0].n || r->q[1].n || r->q[2].n)
		return CORAL_EBUSY;
	memcpy(lvb, r->lvb, c->lvb_len);
	*valid = r->lvb_valid;
	*written = r->lvb_written;
	r->lvb_written = false;
	res_maybe_free(c, r);
	return 0;
}

int ges_lvb_state(const struct ges_core *c, const void *name, size_t len, uint8_t *lvb, bool *valid, bool *written)
{
	const struct res *r = name && len && len <= GES_NAME_MAX ? res_find(c, name, len) : NULL;
	if (r == NULL)
		return CORAL_ENOENT;
	memcpy(lvb, r->lvb, c->lvb_len);
	*valid = r->lvb_valid;
	*written = r->lvb_written && !r->lvb_unknown;
	return 0;
}

int ges_handoff_lvb(struct ges_core *c, const void *name, size_t len, const uint8_t *lvb, bool valid)
{
	if (name == NULL || len == 0 || len > GES_NAME_MAX || lvb == NULL)
		return CORAL_EINVAL;
	const struct res *r = res_find(c, name, len);
	if (r != NULL && r->lvb_written && !r->lvb_unknown)
		return CORAL_EEXIST;  /* written here since: newer than the old master's */
	int rc = ges_set_lvb(c, name, len, lvb, valid, true);
	if (rc == 0)
		c->st.lvb_recovered++;
	return rc;
}

bool ges_has(const struct ges_core *c, const void *name, size_t len)
{
	return name && len && len <= GES_NAME_MAX && res_find(c, name, len) != NULL;
}

void ges_each_resource(const struct ges_core *c, void (*fn)(void *arg, const uint8_t *name, size_t len), void *arg)
{
	for (uint32_t b = 0; b < c->res_buckets; b++)
		for (const struct res *r = c->res_tab[b]; r; r = r->hnext)
			fn(arg, r->name, r->len);
}

/* ---- waits and deadlocks ---------------------------------------------------------------- */

int ges_waits(const struct ges_core *c, const void *name, size_t len, struct ges_wait *out, int max)
{
	if (name == NULL || len == 0 || len > GES_NAME_MAX)
		return 0;
	const struct res *r = res_find(c, name, len);
	if (r == NULL)
		return 0;
	int n = 0;
	for (int wq = GES_Q_CONVERT; wq <= GES_Q_WAIT; wq++)
		for (const struct lock *w = r->q[wq].head; w; w = w->next) {
			if (w->flags & GES_F_NODLCKWT)
				continue;
			for (int q = GES_Q_GRANTED; q <= GES_Q_WAIT; q++)
				for (const struct lock *h = r->q[q].head; h; h = h->next) {
					if (h == w || (h->node == w->node && h->session == w->session))
						continue;
					bool before = false;  /* queued ahead of w in queue order */
					if (q != GES_Q_GRANTED && (q < wq || q == wq)) {
						if (q < wq)
							before = true;
						else
							for (const struct lock *x = h->next; x && !before; x = x->next)
								before = x == w;
					}
					bool in_way = (h->gr != GES_NONE && !compat[w->rq][h->gr]) ||
						      (before && h->rq != GES_NONE && !compat[w->rq][h->rq]);
					if (!in_way)
						continue;
					if (out && n < max)
						out[n] = (struct ges_wait){w->node, h->node, w->session, h->session, w->lkid,
									   w->since_ms, w->gr != GES_NONE, w->prio};
					n++;
				}
		}
	return n;
}

void ges_each_waiting(const struct ges_core *c, void (*fn)(void *arg, const uint8_t *name, size_t len), void *arg)
{
	for (uint32_t b = 0; b < c->res_buckets; b++)
		for (const struct res *r = c->res_tab[b]; r; r = r->hnext)
			if (r->q[GES_Q_CONVERT].n || r->q[GES_Q_WAIT].n)
				fn(arg, r->name, r->len);
}

int ges_set_priority(struct ges_core *c, uint32_t node, uint64_t lkid, int prio)
{
	if (prio < GES_PRIO_MIN || prio > GES_PRIO_MAX)
		return CORAL_EINVAL;
	struct lock *l = lock_find(c, node, lkid);
	if (l == NULL)
		return CORAL_ENOENT;
	l->prio = (int8_t)prio;
	return 0;
}

int ges_victim(struct ges_core *c, uint32_t node, uint64_t lkid)
{
	struct lock *l = lock_find(c, node, lkid);
	if (l == NULL)
		return CORAL_ENOENT;
	if (l->queue == GES_Q_GRANTED)
		return CORAL_EINVAL;
	c->st.deadlocks++;
	struct res *r = l->res;
	refuse(c, l, CORAL_EDEADLK);
	grant_pending(c, r);
	res_maybe_free(c, r);
	return 0;
}

/* ---- views and checks ------------------------------------------------------------------ */

const struct ges_stats *ges_core_stats(const struct ges_core *c) { return &c->st; }
uint32_t ges_core_resources(const struct ges_core *c) { return c->nres; }
uint32_t ges_core_locks(const struct ges_core *c) { return c->nlocks; }

int ges_resource(const struct ges_core *c, const void *name, size_t len, struct ges_lock_view *out, int max,
		 uint8_t *lvb, bool *lvb_valid)
{
	if (name == NULL || len == 0 || len > GES_NAME_MAX)
		return -1;
	const struct res *r = res_find(c, name, len);
	if (r == NULL)
		return -1;
	if (lvb)
		memcpy(lvb, r->lvb, c->lvb_len);
	if (lvb_valid)
		*lvb_valid = r->lvb_valid;
	int n = 0;
	for (int q = GES_Q_GRANTED; q <= GES_Q_WAIT; q++)
		for (const struct lock *l = r->q[q].head; l; l = l->next, n++)
			if (out && n < max)
				out[n] = (struct ges_lock_view){l->node, l->session, l->lkid, l->gr, l->rq, l->flags,
								l->queue, l->lost, l->since_ms};
	return n;
}

int ges_check(const struct ges_core *c, char *err, size_t n)
{
	uint32_t nres = 0, nlocks = 0;
	for (uint32_t b = 0; b < c->res_buckets; b++)
		for (const struct res *r = c->res_tab[b]; r; r = r->hnext) {
			nres++;
			for (int q = GES_Q_GRANTED; q <= GES_Q_WAIT; q++) {
				uint32_t k = 0;
				const struct lock *prev = NULL;
				for (const struct lock *l = r->q[q].head; l; prev = l, l = l->next, k++) {
					nlocks++;
					if (l->res != r || l->queue != q || l->prev != prev ||
					    lock_find(c, l->node, l->lkid) != l) {
						snprintf(err, n, "lock %u/%llu: queue links broken", l->node,
							 (unsigned long long)l->lkid);
						return -1;
					}
					bool want_gr = q != GES_Q_WAIT, want_rq = q != GES_Q_GRANTED;
					if ((l->gr != GES_NONE) != want_gr || (l->rq != GES_NONE) != want_rq) {
						snprintf(err, n, "lock %u/%llu on queue %d: granted %s, requested %s",
							 l->node, (unsigned long long)l->lkid, q, ges_mode_name(l->gr),
							 ges_mode_name(l->rq));
						return -1;
					}
					if (!c->held && l->bast != GES_NONE && !in_the_way(r, l)) {
						snprintf(err, n, "lock %u/%llu was told it blocks (%s) and blocks nobody",
							 l->node, (unsigned long long)l->lkid, ges_mode_name(l->bast));
						return -1;
					}
					if (l->gr != GES_NONE && !fits_granted(r, l, l->gr)) {
						snprintf(err, n, "lock %u/%llu holds %s beside an incompatible granted mode",
							 l->node, (unsigned long long)l->lkid, ges_mode_name(l->gr));
						return -1;
					}
				}
				if (k != r->q[q].n || r->q[q].tail != prev) {
					snprintf(err, n, "a queue's count or tail is wrong");
					return -1;
				}
			}
		}
	if (nres != c->nres || nlocks != c->nlocks) {
		snprintf(err, n, "counts: %u resources (%u counted), %u locks (%u counted)", nres, c->nres, nlocks,
			 c->nlocks);
		return -1;
	}
	return 0;
}

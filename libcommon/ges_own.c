/* The SGA section of lmdd's requester side and the fast path's table (see ges_own.h): its
 * layout, the claiming of own locks, and a session's fast grants, conversions and unlocks. */
#include "ges_own.h"

#include "errors.h"
#include "grd.h"
#include "sync.h"

#include <stddef.h>
#include <string.h>

_Static_assert(CORAL_GES_BUCKET_BYTES * 8 == CORAL_GRD_BUCKETS, "a bit of ges_own's inherited for each grdd bucket");

/* The DLM's matrix: NL goes with everything, CR with all but EX, CW with CW and the weaker,
 * PR with PR and the weaker, PW with CR, EX with NL. */
const bool coral_ges_compat_matrix[6][6] = {
	/*        NL     CR     CW     PR     PW     EX */
	/* NL */ {true, true, true, true, true, true},
	/* CR */ {true, true, true, true, true, false},
	/* CW */ {true, true, true, false, false, false},
	/* PR */ {true, true, false, true, false, false},
	/* PW */ {true, true, false, false, false, false},
	/* EX */ {true, false, false, false, false, false},
};

enum { M_PW = 4 };

bool coral_ges_not_stronger(int to, int from)
{
	for (int m = 0; m < 6; m++)
		if (coral_ges_compat_matrix[from][m] && !coral_ges_compat_matrix[to][m])
			return false;
	return true;
}

static size_t locks_end(void)
{
	size_t n = sizeof(struct coral_ges_own) + CORAL_GES_OWN_MAX * sizeof(struct coral_ges_own_lock);
	return (n + 63) & ~(size_t)63;
}

size_t coral_ges_own_sga_size(const struct coral_conf *conf)
{
	(void)conf;
	return locks_end() + CORAL_GES_FAST_BUCKETS * sizeof(struct coral_ges_fast_bucket);
}

int coral_ges_own_sga_init(void *section, size_t size, const struct coral_conf *conf, const struct coral_node_conf *node)
{
	(void)node;
	if (size < coral_ges_own_sga_size(conf))
		return CORAL_ESIZE;
	memset(section, 0, coral_ges_own_sga_size(conf));
	struct coral_ges_own *o = section;
	o->capacity = CORAL_GES_OWN_MAX;
	o->nbuckets = CORAL_GES_FAST_BUCKETS;
	o->buckets_off = locks_end();
	struct coral_ges_fast_bucket *b = coral_ges_fast_buckets(o);
	for (uint32_t i = 0; i < o->nbuckets; i++)
		if (coral_mutex_init_shared(&b[i].mu) != 0)
			return CORAL_ESYS;
	return 0;
}

void coral_ges_own_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_ges_own *o = section;
	*used = o->nused;
	*capacity = o->capacity;
}

struct coral_ges_own *coral_ges_own_sga(const struct coral_sga *sga)
{
	size_t size;
	struct coral_ges_own *o = coral_sga_section(sga, "ges_own", &size);
	if (o == NULL || size < sizeof(*o) || o->capacity != CORAL_GES_OWN_MAX || o->nbuckets != CORAL_GES_FAST_BUCKETS ||
	    o->buckets_off != locks_end() || size < coral_ges_own_sga_size(NULL))
		return NULL;
	return o;
}

/* The name's hash, as lmdd has always placed resources: FNV-1a for the id, a second one
 * mixed for the other half. */
void coral_ges_resid(const void *name, size_t len, struct coral_resid *r)
{
	const uint8_t *p = name;
	uint64_t h1 = 14695981039346656037ull, h2 = 1099511628211ull;
	for (size_t i = 0; i < len; i++) {
		h1 = (h1 ^ p[i]) * 1099511628211ull;
		h2 = (h2 + p[i]) * 0x9e3779b97f4a7c15ull;
	}
	*r = (struct coral_resid){.type = CORAL_RES_TYPE('E', 'Q'), .id1 = (uint32_t)(h2 >> 32), .id2 = h1};
}

uint32_t coral_ges_fast_bucket_of(const void *name, size_t len)
{
	struct coral_resid r;
	coral_ges_resid(name, len, &r);
	return (uint32_t)((r.id2 ^ (r.id2 >> 29)) % CORAL_GES_FAST_BUCKETS);
}

/* ---- own locks -------------------------------------------------------------------------- */

struct coral_ges_own_lock *coral_ges_own_claim(struct coral_ges_own *o, uint8_t state)
{
	for (uint32_t k = 0; k < o->capacity; k++) {
		uint64_t seq = atomic_fetch_add(&o->next_seq, 1);
		uint64_t lkid = seq * CORAL_GES_OWN_MAX + (seq % CORAL_GES_OWN_MAX);
		struct coral_ges_own_lock *l = &o->locks[lkid % CORAL_GES_OWN_MAX];
		uint8_t free_ = CORAL_GES_OWN_FREE;
		if (atomic_load_explicit(&l->used, memory_order_relaxed) != CORAL_GES_OWN_FREE ||
		    !atomic_compare_exchange_strong(&l->used, &free_, state))
			continue;
		size_t from = offsetof(struct coral_ges_own_lock, dying);
		memset((uint8_t *)l + from, 0, sizeof(*l) - from);
		l->lkid = lkid;
		l->mode = -1;
		atomic_fetch_add(&o->nused, 1);
		return l;
	}
	return NULL;
}

void coral_ges_own_free(struct coral_ges_own *o, struct coral_ges_own_lock *l)
{
	__atomic_store_n(&l->fast_b, 0, __ATOMIC_RELAXED);
	atomic_fetch_sub(&o->nused, 1);
	atomic_store(&l->used, CORAL_GES_OWN_FREE);
}

struct coral_ges_own_lock *coral_ges_own_find(struct coral_ges_own *o, uint64_t lkid)
{
	struct coral_ges_own_lock *l = &o->locks[lkid % CORAL_GES_OWN_MAX];
	return atomic_load(&l->used) != CORAL_GES_OWN_FREE && l->lkid == lkid ? l : NULL;
}

/* ---- the fast table ------------------------------------------------------------------- */

static void mark_dirty(void *arg)
{
	struct coral_ges_fast_bucket *b = arg;
	b->dirty = 1;
}

bool coral_ges_fast_lock_bucket(struct coral_ges_own *o, uint32_t b)
{
	struct coral_ges_fast_bucket *bk = &coral_ges_fast_buckets(o)[b];
	int rc = coral_mutex_lock(&bk->mu, mark_dirty, bk);
	return rc == 0 || rc == CORAL_EOWNERDEAD;
}

void coral_ges_fast_unlock_bucket(struct coral_ges_own *o, uint32_t b)
{
	coral_mutex_unlock(&coral_ges_fast_buckets(o)[b].mu);
}

struct coral_ges_fast_res *coral_ges_fast_find(struct coral_ges_fast_bucket *bk, const void *name, size_t len)
{
	for (int w = 0; w < CORAL_GES_FAST_WAYS; w++) {
		struct coral_ges_fast_res *e = &bk->res[w];
		if (e->used && e->len == len && memcmp(e->name, name, len) == 0)
			return e;
	}
	return NULL;
}

/* Whether `mode` goes with every fast lock on e but `except`. */
static bool fits(struct coral_ges_own *o, const struct coral_ges_fast_res *e, int mode, const struct coral_ges_own_lock *except)
{
	for (int i = 0; i < e->nholders; i++) {
		const struct coral_ges_own_lock *h = &o->locks[e->holders[i] - 1];
		if (h != except && !coral_ges_compat_matrix[mode][h->mode])
			return false;
	}
	return true;
}

static void put_lvb(struct coral_ges_fast_res *e, const uint8_t *lvb)
{
	memcpy(e->lvb, lvb, CORAL_GES_LVB);
	e->lvb_valid = 1;
	e->lvb_written = 1;
}

int coral_ges_fast_lock(struct coral_ges_own *o, const struct coral_grd_map_sga *map, uint32_t self,
			const void *name, size_t len, int mode, unsigned flags, uint32_t session, uint32_t slot,
			int prio, uint64_t *lkid, uint8_t *lvb, bool *lvb_valid)
{
	if (o == NULL || map == NULL || name == NULL || len == 0 || len > CORAL_GES_NAME_MAX || mode < 0 || mode > 5 ||
	    atomic_load(&o->fast_version) == 0)
		return CORAL_GES_SLOW;
	struct coral_resid r;
	coral_ges_resid(name, len, &r);
	struct coral_grd_where w;
	coral_grd_lookup(map, &r, &w);
	if (w.master != self || w.version == 0)
		return CORAL_GES_SLOW;  /* mastered elsewhere: lmdd sends it */
	uint32_t b = coral_ges_fast_bucket_of(name, len);
	struct coral_ges_fast_bucket *bk = &coral_ges_fast_buckets(o)[b];
	if (!coral_ges_fast_lock_bucket(o, b))
		return CORAL_GES_SLOW;
	int rc = CORAL_GES_SLOW;
	struct coral_ges_fast_res *e = NULL;
	bool fresh = false;
	/* the map this session read is the one the fast path is open for: a lock granted here
	 * under an older one is found by lmdd's walk of the table when it closes the path */
	if (bk->dirty || atomic_load(&o->fast_version) != w.version)
		goto out;
	e = coral_ges_fast_find(bk, name, len);
	if (e == NULL) {
		if (bk->overflow)
			goto out;  /* lmdd may have this resource without an entry */
		for (int k = 0; k < CORAL_GES_FAST_WAYS && e == NULL; k++)
			if (!bk->res[k].used)
				e = &bk->res[k];
		if (e == NULL)
			goto out;
		memset(e, 0, sizeof(*e));
		fresh = true;
		e->used = 1;
		e->len = (uint8_t)len;
		memcpy(e->name, name, len);
		/* never written: zeros, and that is its value; unless its bucket came from a lost
		 * node, where it may have been written: not valid until written again */
		bool lost = w.lost_owner != 0 || coral_ges_inherited(o, w.bucket);
		e->lvb_valid = !lost;
		e->lvb_written = lost;
	}
	if (e->slow)
		goto out;
	if (!fits(o, e, mode, NULL)) {
		if (flags & CORAL_GES_F_NOQUEUE) {
			rc = CORAL_EHELD;
			atomic_fetch_add(&o->fast_refused, 1);
		}
		goto out;
	}
	if (e->nholders == CORAL_GES_FAST_HOLDERS)
		goto out;
	struct coral_ges_own_lock *l = coral_ges_own_claim(o, CORAL_GES_OWN_FAST);
	if (l == NULL)
		goto out;
	l->len = (uint8_t)len;
	memcpy(l->name, name, len);
	l->mode = (int8_t)mode;
	l->session = session;
	l->slot = slot;
	l->master = self;
	l->op = 1;
	l->want = (uint32_t)mode;
	l->flags = flags;
	l->prio = (int8_t)(prio < -100 ? -100 : prio > 100 ? 100 : prio);
	e->holders[e->nholders++] = (uint16_t)(l - o->locks + 1);
	__atomic_store_n(&l->fast_b, (uint16_t)(b + 1), __ATOMIC_RELEASE);
	if (flags & CORAL_GES_F_VALBLK) {
		memcpy(l->lvb_cur, e->lvb, CORAL_GES_LVB);
		l->lvb_cur_valid = e->lvb_valid;
		if (lvb)
			memcpy(lvb, e->lvb, CORAL_GES_LVB);
	}
	if (lvb_valid)
		*lvb_valid = (flags & CORAL_GES_F_VALBLK) && e->lvb_valid;
	*lkid = l->lkid;
	atomic_fetch_add(&o->fast_grants, 1);
	rc = 0;
out:
	if (rc != 0 && fresh)
		e->used = 0;  /* made for this request */
	if (rc == CORAL_GES_SLOW)
		atomic_fetch_add(&o->fast_fallbacks, 1);
	coral_ges_fast_unlock_bucket(o, b);
	return rc;
}

/* Fast lock lkid of the session, its bucket's mutex taken (*b its index), with its entry:
 * NULL (nothing taken) when it is not one, or lmdd has its resource (counted: a fallback). */
static struct coral_ges_own_lock *fast_own(struct coral_ges_own *o, uint64_t lkid, uint32_t session, uint32_t slot,
					   uint32_t *b, struct coral_ges_fast_res **e)
{
	if (o == NULL)
		return NULL;
	struct coral_ges_own_lock *l = &o->locks[lkid % CORAL_GES_OWN_MAX];
	if (atomic_load(&l->used) != CORAL_GES_OWN_FAST)
		return NULL;
	uint32_t fb = __atomic_load_n(&l->fast_b, __ATOMIC_ACQUIRE);
	if (fb == 0 || fb > CORAL_GES_FAST_BUCKETS)
		return NULL;
	*b = fb - 1;
	struct coral_ges_fast_bucket *bk = &coral_ges_fast_buckets(o)[*b];
	if (!coral_ges_fast_lock_bucket(o, *b))
		return NULL;
	if (atomic_load(&l->used) == CORAL_GES_OWN_FAST && l->fast_b == fb && l->lkid == lkid && l->session == session &&
	    l->slot == slot && !bk->dirty) {
		*e = coral_ges_fast_find(bk, l->name, l->len);
		if (*e && !(*e)->slow)
			return l;
	}
	coral_ges_fast_unlock_bucket(o, *b);
	atomic_fetch_add(&o->fast_fallbacks, 1);
	return NULL;
}

int coral_ges_fast_convert(struct coral_ges_own *o, uint64_t lkid, uint32_t session, uint32_t slot, int mode,
			   unsigned flags, const uint8_t *lvb_write, uint8_t *lvb_read, bool *lvb_valid)
{
	uint32_t b;
	struct coral_ges_fast_res *e;
	if (mode < 0 || mode > 5)
		return CORAL_GES_SLOW;
	struct coral_ges_own_lock *l = fast_own(o, lkid, session, slot, &b, &e);
	if (l == NULL)
		return CORAL_GES_SLOW;
	int rc = 0;
	bool down = coral_ges_not_stronger(mode, l->mode);
	if (!down && !fits(o, e, mode, l)) {
		rc = CORAL_GES_SLOW;
		if (flags & CORAL_GES_F_NOQUEUE) {
			rc = CORAL_EHELD;
			atomic_fetch_add(&o->fast_refused, 1);
		} else {
			atomic_fetch_add(&o->fast_fallbacks, 1);
		}
	} else {
		if (lvb_write && (flags & CORAL_GES_F_VALBLK) && l->mode >= M_PW && down)
			put_lvb(e, lvb_write);
		l->mode = (int8_t)mode;
		l->want = (uint32_t)mode;
		l->flags = flags;
		l->lvb_cur_valid = (flags & CORAL_GES_F_VALBLK) && e->lvb_valid;
		memcpy(l->lvb_cur, e->lvb, CORAL_GES_LVB);
		if ((flags & CORAL_GES_F_VALBLK) && lvb_read)
			memcpy(lvb_read, e->lvb, CORAL_GES_LVB);
		if (lvb_valid)
			*lvb_valid = (flags & CORAL_GES_F_VALBLK) && e->lvb_valid;
		atomic_fetch_add(&o->fast_converts, 1);
	}
	coral_ges_fast_unlock_bucket(o, b);
	return rc;
}

void coral_ges_fast_drop(struct coral_ges_own *o, struct coral_ges_own_lock *l, bool lost)
{
	uint32_t b = l->fast_b - 1u;
	struct coral_ges_fast_res *e = coral_ges_fast_find(&coral_ges_fast_buckets(o)[b], l->name, l->len);
	uint16_t idx = (uint16_t)(l - o->locks + 1);
	for (int i = 0; e && i < e->nholders; i++)
		if (e->holders[i] == idx) {
			e->holders[i] = e->holders[--e->nholders];
			break;
		}
	if (e && lost && l->mode >= M_PW && e->lvb_valid) {
		e->lvb_valid = 0;  /* lost without writing it */
		e->lvb_written = 1;
	}
	if (e && e->nholders == 0 && !e->lvb_written)
		e->used = 0;
	coral_ges_own_free(o, l);
}

int coral_ges_fast_unlock(struct coral_ges_own *o, uint64_t lkid, uint32_t session, uint32_t slot,
			  const uint8_t *lvb_write)
{
	uint32_t b;
	struct coral_ges_fast_res *e;
	struct coral_ges_own_lock *l = fast_own(o, lkid, session, slot, &b, &e);
	if (l == NULL)
		return CORAL_GES_SLOW;
	if (lvb_write && (l->flags & CORAL_GES_F_VALBLK) && l->mode >= M_PW)
		put_lvb(e, lvb_write);
	coral_ges_fast_drop(o, l, false);
	atomic_fetch_add(&o->fast_unlocks, 1);
	coral_ges_fast_unlock_bucket(o, b);
	return 0;
}

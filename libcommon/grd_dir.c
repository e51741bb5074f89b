/* The directory table (see grd.h): entries chained per GRD bucket, a robust latch per
 * bucket, a free list and an LRU list of entries without holders. Lock order: a bucket
 * latch, then the lru latch; eviction takes a victim's bucket latch only with trylock, so
 * two inserters never wait on each other in opposite order. */
#include "grd.h"
#include "errors.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <string.h>

static pthread_mutex_t *coral__latches(struct coral_grd_dir *d)
{
	return (pthread_mutex_t *)((char *)d + d->off_latches);
}
static uint32_t *coral__heads(struct coral_grd_dir *d)
{
	return (uint32_t *)((char *)d + d->off_heads);
}
static struct coral_grd_entry *coral__entries(struct coral_grd_dir *d)
{
	return (struct coral_grd_entry *)((char *)d + d->off_entries);
}

static size_t coral__align(size_t v)
{
	return (v + 63) & ~(size_t)63;
}

size_t coral_grd_dir_size(uint32_t capacity)
{
	return coral__align(sizeof(struct coral_grd_dir)) +
	       coral__align(CORAL_GRD_BUCKETS * sizeof(pthread_mutex_t)) +
	       coral__align(CORAL_GRD_BUCKETS * sizeof(uint32_t)) +
	       (size_t)capacity * sizeof(struct coral_grd_entry);
}

int coral_grd_dir_init(struct coral_grd_dir *d, size_t size, uint32_t capacity)
{
	if (size < coral_grd_dir_size(capacity) || capacity == 0)
		return CORAL_ESIZE;
	memset(d, 0, sizeof(*d));
	d->capacity = capacity;
	d->off_latches = coral__align(sizeof(*d));
	d->off_heads = d->off_latches + coral__align(CORAL_GRD_BUCKETS * sizeof(pthread_mutex_t));
	d->off_entries = d->off_heads + coral__align(CORAL_GRD_BUCKETS * sizeof(uint32_t));
	if (coral_mutex_init_shared(&d->lru_latch) != 0)
		return CORAL_ESYS;
	pthread_mutex_t *l = coral__latches(d);
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		if (coral_mutex_init_shared(&l[b]) != 0)
			return CORAL_ESYS;
	memset(coral__heads(d), 0, CORAL_GRD_BUCKETS * sizeof(uint32_t));
	struct coral_grd_entry *e = coral__entries(d);
	memset(e, 0, (size_t)capacity * sizeof(*e));
	for (uint32_t i = 0; i < capacity; i++)
		e[i].next = i + 2 <= capacity ? i + 2 : 0;
	d->free_head = 1;
	return 0;
}

size_t coral_grd_dir_sga_size(const struct coral_conf *conf)
{
	return coral_grd_dir_size((uint32_t)conf->grd.directory_entries);
}

int coral_grd_dir_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node)
{
	(void)node;
	return coral_grd_dir_init(section, size, (uint32_t)conf->grd.directory_entries);
}

size_t coral_grd_held_sga_size(const struct coral_conf *conf)
{
	return coral_grd_dir_size((uint32_t)conf->grd.held_entries);
}

int coral_grd_held_sga_init(void *section, size_t size, const struct coral_conf *conf,
			    const struct coral_node_conf *node)
{
	(void)node;
	return coral_grd_dir_init(section, size, (uint32_t)conf->grd.held_entries);
}

void coral_grd_dir_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_grd_dir *d = section;
	*used = d->used;
	*capacity = d->capacity;
}

struct coral_grd_dir *coral_grd_dir_sga(const struct coral_sga *sga, const char *section)
{
	size_t sz;
	struct coral_grd_dir *d = coral_sga_section(sga, section, &sz);
	return d && sz >= sizeof(*d) && sz >= coral_grd_dir_size(d->capacity) ? d : NULL;
}

/* A process died holding a bucket latch: the chain edits it makes are a few stores each and
 * finish before the latch is released, but a half-linked entry is possible; walk the chain
 * and cut it at the first entry that does not belong to the bucket. */
struct coral__repair_arg {
	struct coral_grd_dir *d;
	uint32_t bucket;
};

static void coral__repair_bucket(void *arg)
{
	struct coral__repair_arg *a = arg;
	struct coral_grd_dir *d = a->d;
	uint32_t *link = &coral__heads(d)[a->bucket];
	uint32_t steps = 0;
	while (*link != 0) {
		struct coral_grd_entry *e = coral_grd_dir_entry(d, *link - 1);
		if (e == NULL || !(e->flags & CORAL_GRDE_USED) || e->bucket != a->bucket ||
		    ++steps > d->capacity) {
			*link = 0;
			break;
		}
		link = &e->next;
	}
	atomic_fetch_add(&d->latch_repairs, 1);
}

void coral_grd_dir_lock(struct coral_grd_dir *d, uint32_t bucket)
{
	struct coral__repair_arg a = {d, bucket % CORAL_GRD_BUCKETS};
	coral_mutex_lock(&coral__latches(d)[a.bucket], coral__repair_bucket, &a);
}

void coral_grd_dir_unlock(struct coral_grd_dir *d, uint32_t bucket)
{
	coral_mutex_unlock(&coral__latches(d)[bucket % CORAL_GRD_BUCKETS]);
}

struct coral_grd_entry *coral_grd_dir_entry(struct coral_grd_dir *d, uint32_t index)
{
	return index < d->capacity ? &coral__entries(d)[index] : NULL;
}

static uint32_t coral__index(struct coral_grd_dir *d, const struct coral_grd_entry *e)
{
	return (uint32_t)(e - coral__entries(d));
}

struct coral_grd_entry *coral_grd_dir_first(struct coral_grd_dir *d, uint32_t bucket)
{
	uint32_t h = coral__heads(d)[bucket % CORAL_GRD_BUCKETS];
	return h ? coral_grd_dir_entry(d, h - 1) : NULL;
}

struct coral_grd_entry *coral_grd_dir_next(struct coral_grd_dir *d, const struct coral_grd_entry *e)
{
	return e->next ? coral_grd_dir_entry(d, e->next - 1) : NULL;
}

struct coral_grd_entry *coral_grd_dir_find(struct coral_grd_dir *d, const struct coral_resid *id)
{
	atomic_fetch_add_explicit(&d->finds, 1, memory_order_relaxed);
	for (struct coral_grd_entry *e = coral_grd_dir_first(d, coral_resid_bucket(id)); e;
	     e = coral_grd_dir_next(d, e))
		if (coral_resid_eq(&e->id, id))
			return e;
	return NULL;
}

/* The LRU list and free list, rebuilt from the entries after a holder of the lru latch died. */
static void coral__repair_lru(void *arg)
{
	struct coral_grd_dir *d = arg;
	d->free_head = d->lru_head = d->lru_tail = 0;
	d->used = d->lru_len = 0;
	for (uint32_t i = d->capacity; i-- > 0;) {
		struct coral_grd_entry *e = &coral__entries(d)[i];
		if (!(e->flags & CORAL_GRDE_USED)) {
			e->next = d->free_head;
			d->free_head = i + 1;
			continue;
		}
		d->used++;
		e->lru_prev = e->lru_next = 0;
		if (e->flags & CORAL_GRDE_LRU) {
			e->lru_next = d->lru_head;
			if (d->lru_head)
				coral__entries(d)[d->lru_head - 1].lru_prev = i + 1;
			else
				d->lru_tail = i + 1;
			d->lru_head = i + 1;
			d->lru_len++;
		}
	}
}

static void coral__lru_lock(struct coral_grd_dir *d)
{
	coral_mutex_lock(&d->lru_latch, coral__repair_lru, d);
}

static void coral__lru_unlink(struct coral_grd_dir *d, struct coral_grd_entry *e)
{
	struct coral_grd_entry *all = coral__entries(d);
	if (e->lru_prev)
		all[e->lru_prev - 1].lru_next = e->lru_next;
	else
		d->lru_head = e->lru_next;
	if (e->lru_next)
		all[e->lru_next - 1].lru_prev = e->lru_prev;
	else
		d->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = 0;
	e->flags &= (uint16_t)~CORAL_GRDE_LRU;
	d->lru_len--;
}

static void coral__lru_push(struct coral_grd_dir *d, struct coral_grd_entry *e)
{
	uint32_t i = coral__index(d, e) + 1;
	e->lru_prev = 0;
	e->lru_next = d->lru_head;
	if (d->lru_head)
		coral__entries(d)[d->lru_head - 1].lru_prev = i;
	else
		d->lru_tail = i;
	d->lru_head = i;
	e->flags |= CORAL_GRDE_LRU;
	d->lru_len++;
}

/* Unlinks e from its bucket chain (the bucket latch is held). */
static void coral__chain_unlink(struct coral_grd_dir *d, struct coral_grd_entry *e)
{
	uint32_t *link = &coral__heads(d)[e->bucket];
	uint32_t i = coral__index(d, e) + 1;
	while (*link != 0 && *link != i)
		link = &coral__entries(d)[*link - 1].next;
	if (*link == i)
		*link = e->next;
}

static bool coral__evictable(const struct coral_grd_entry *e)
{
	return e->holders == 0 && e->pi == 0 && e->nconv == 0 && e->op_phase == 0 && e->cur == 0 &&
	       !(e->flags & (CORAL_GRDE_FROZEN | CORAL_GRDE_STAGED | CORAL_GRDE_RECOVERY));
}

struct coral_grd_entry *coral_grd_dir_insert(struct coral_grd_dir *d, const struct coral_resid *id)
{
	uint32_t bucket = coral_resid_bucket(id);
	struct coral_grd_entry *all = coral__entries(d), *e = NULL;
	coral__lru_lock(d);
	if (d->free_head) {
		e = &all[d->free_head - 1];
		d->free_head = e->next;
	} else {
		/* least recently used first; a victim whose bucket latch is busy is skipped */
		for (uint32_t v = d->lru_tail; v != 0; v = all[v - 1].lru_prev) {
			struct coral_grd_entry *c = &all[v - 1];
			bool own = c->bucket == bucket;
			if (!own && pthread_mutex_trylock(&coral__latches(d)[c->bucket]) != 0)
				continue;
			if (!coral__evictable(c)) { /* changed since it was listed */
				if (!own)
					pthread_mutex_unlock(&coral__latches(d)[c->bucket]);
				continue;
			}
			coral__lru_unlink(d, c);
			coral__chain_unlink(d, c);
			if (!own)
				pthread_mutex_unlock(&coral__latches(d)[c->bucket]);
			d->used--;
			atomic_fetch_add_explicit(&d->evictions, 1, memory_order_relaxed);
			e = c;
			break;
		}
	}
	if (e == NULL) {
		coral_mutex_unlock(&d->lru_latch);
		atomic_fetch_add_explicit(&d->refused_full, 1, memory_order_relaxed);
		return NULL;
	}
	memset(e, 0, sizeof(*e));
	e->id = *id;
	e->bucket = bucket;
	e->flags = CORAL_GRDE_USED;
	e->last_ns = coral_now_mono_ns();
	d->used++;
	coral__lru_push(d, e); /* no holders yet */
	coral_mutex_unlock(&d->lru_latch);
	e->next = coral__heads(d)[bucket];
	coral__heads(d)[bucket] = coral__index(d, e) + 1;
	atomic_fetch_add_explicit(&d->inserts, 1, memory_order_relaxed);
	return e;
}

void coral_grd_dir_remove(struct coral_grd_dir *d, struct coral_grd_entry *e)
{
	coral__chain_unlink(d, e);
	coral__lru_lock(d);
	if (e->flags & CORAL_GRDE_LRU)
		coral__lru_unlink(d, e);
	e->flags = 0;
	e->next = d->free_head;
	d->free_head = coral__index(d, e) + 1;
	d->used--;
	coral_mutex_unlock(&d->lru_latch);
	atomic_fetch_add_explicit(&d->removes, 1, memory_order_relaxed);
}

void coral_grd_dir_touch(struct coral_grd_dir *d, struct coral_grd_entry *e)
{
	e->last_ns = coral_now_mono_ns();
	bool evictable = coral__evictable(e);
	coral__lru_lock(d);
	if (e->flags & CORAL_GRDE_LRU)
		coral__lru_unlink(d, e);
	if (evictable)
		coral__lru_push(d, e);
	coral_mutex_unlock(&d->lru_latch);
}

void coral_grd_entry_set_mode(struct coral_grd_entry *e, uint32_t node, int mode)
{
	if (node == 0 || node > CORAL_MAX_NODES)
		return;
	e->mode[node - 1] = (uint8_t)mode;
	if (mode > 0)
		e->holders |= 1ull << (node - 1);
	else
		e->holders &= ~(1ull << (node - 1));
}

int coral_grd_entry_mode(const struct coral_grd_entry *e, uint32_t node)
{
	return node == 0 || node > CORAL_MAX_NODES ? 0 : e->mode[node - 1];
}

void coral_grd_entry_access(struct coral_grd_entry *e, uint32_t node)
{
	e->accesses++;
	int min = 0;
	for (int i = 0; i < CORAL_GRD_AFF; i++) {
		if (e->aff[i].node == node) {
			e->aff[i].count++;
			return;
		}
		if (e->aff[i].node == 0) {
			e->aff[i] = (struct coral_grd_aff){node, 1};
			return;
		}
		if (e->aff[i].count < e->aff[min].count)
			min = i;
	}
	/* space-saving: the newcomer takes the smallest slot and its count, an overestimate
	 * that keeps every true heavy hitter in the table */
	e->aff[min].node = node;
	e->aff[min].count++;
}

void coral_grd_entry_top(const struct coral_grd_entry *e, uint32_t except, uint32_t *node,
			 uint32_t *count, uint32_t *others)
{
	*node = 0;
	*count = 0;
	for (int i = 0; i < CORAL_GRD_AFF; i++)
		if (e->aff[i].node != 0 && e->aff[i].node != except && e->aff[i].count > *count) {
			*node = e->aff[i].node;
			*count = e->aff[i].count;
		}
	*others = 0;
	for (int i = 0; i < CORAL_GRD_AFF; i++)
		if (e->aff[i].node != 0 && e->aff[i].node != *node && e->aff[i].count > *others)
			*others = e->aff[i].count;
}

void coral_grd_entry_decay(struct coral_grd_entry *e)
{
	for (int i = 0; i < CORAL_GRD_AFF; i++) {
		e->aff[i].count /= 2;
		if (e->aff[i].count == 0)
			e->aff[i].node = 0;
	}
}

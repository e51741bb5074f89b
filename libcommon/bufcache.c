/* The buffer cache in the SGA: layout, chains and their latches, pins and the futex that
 * sessions sleep on, and the node's SCN. The GCS logic that decides modes lives in lmsd. */
#include "bufcache.h"
#include "errors.h"
#include "grd.h"
#include "sync.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static size_t coral__align(size_t n) { return (n + 63) & ~(size_t)63; }

static uint32_t coral__nchain(uint32_t nbuf)
{
	uint32_t n = 64;
	while (n < nbuf && n < (1u << 30))
		n <<= 1;
	return n;
}

size_t coral_cache_size(uint32_t nbuf, uint32_t block_size, uint32_t nclone)
{
	uint32_t nc = coral__nchain(nbuf);
	size_t n = coral__align(sizeof(struct coral_cache));
	n += coral__align((size_t)nbuf * sizeof(struct coral_buf));
	n += coral__align((size_t)nc * sizeof(pthread_mutex_t));
	n += coral__align((size_t)nc * sizeof(uint32_t));
	n += coral__align((size_t)CORAL_CACHE_SESSIONS * sizeof(struct coral_sess_slot));
	n += coral__align((size_t)nclone * sizeof(struct coral_clone));
	n += (size_t)nclone * block_size;
	n += (size_t)nbuf * block_size;
	return n;
}

static struct coral_clone *coral__clones(struct coral_cache *c)
{
	return (struct coral_clone *)((char *)c + c->off_clones);
}
static uint8_t *coral__clone_data(struct coral_cache *c, uint32_t i)
{
	return (uint8_t *)c + c->off_clone_data + (size_t)i * c->block_size;
}

static pthread_mutex_t *coral__latches(struct coral_cache *c)
{
	return (pthread_mutex_t *)((char *)c + c->off_latches);
}
static uint32_t *coral__heads(struct coral_cache *c)
{
	return (uint32_t *)((char *)c + c->off_heads);
}

int coral_cache_init(struct coral_cache *c, size_t size, uint32_t nbuf, uint32_t block_size, uint32_t nclone)
{
	if (size < coral_cache_size(nbuf, block_size, nclone) || block_size < 512)
		return CORAL_EINVAL;
	memset(c, 0, sizeof(*c));
	c->nbuf = nbuf;
	c->nchain = coral__nchain(nbuf);
	c->block_size = block_size;
	size_t off = coral__align(sizeof(struct coral_cache));
	c->off_bufs = off;
	off += coral__align((size_t)nbuf * sizeof(struct coral_buf));
	c->off_latches = off;
	off += coral__align((size_t)c->nchain * sizeof(pthread_mutex_t));
	c->off_heads = off;
	off += coral__align((size_t)c->nchain * sizeof(uint32_t));
	c->off_sess = off;
	off += coral__align((size_t)CORAL_CACHE_SESSIONS * sizeof(struct coral_sess_slot));
	c->nclone = nclone;
	c->off_clones = off;
	off += coral__align((size_t)nclone * sizeof(struct coral_clone));
	c->off_clone_data = off;
	off += (size_t)nclone * block_size;
	c->off_data = off;
	memset(coral__clones(c), 0, (size_t)nclone * sizeof(struct coral_clone));
	memset(coral_cache_buf(c, 0), 0, (size_t)nbuf * sizeof(struct coral_buf));
	memset(coral_cache_sess(c, 0), 0, (size_t)CORAL_CACHE_SESSIONS * sizeof(struct coral_sess_slot));
	for (uint32_t i = 0; i < c->nchain; i++) {
		int rc = coral_mutex_init_shared(&coral__latches(c)[i]);
		if (rc != 0)
			return rc;
		coral__heads(c)[i] = 0;
	}
	c->free_head = 1;
	atomic_store(&c->scn, 1);
	return 0;
}

size_t coral_cache_sga_size(const struct coral_conf *conf)
{
	return coral_cache_size((uint32_t)conf->cache.buffers, (uint32_t)conf->storage.block_size,
				(uint32_t)conf->cache.cr_clones);
}

int coral_cache_sga_init(void *section, size_t size, const struct coral_conf *conf,
			 const struct coral_node_conf *node)
{
	(void)node;
	return coral_cache_init(section, size, (uint32_t)conf->cache.buffers,
				(uint32_t)conf->storage.block_size, (uint32_t)conf->cache.cr_clones);
}

void coral_cache_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_cache *c = section;
	*used = atomic_load(&c->valid);
	*capacity = c->nbuf;
}

struct coral_cache *coral_cache_sga(const struct coral_sga *sga)
{
	size_t sz;
	return coral_sga_section(sga, "cache", &sz);
}

uint32_t coral_cache_chain(const struct coral_cache *c, uint32_t file, uint64_t block)
{
	struct coral_resid r = {.type = CORAL_RES_BLOCK, .id1 = file, .id2 = block};
	/* the upper bits of the hash: the lower ones choose the GRD bucket */
	return (uint32_t)(coral_resid_hash(&r) >> 20) & (c->nchain - 1);
}

/* A session died holding a chain latch: the chain is a list of indexes that lmsd alone
 * changes, and lmsd never dies holding one without its supervisor restarting the node's
 * cache... so nothing to repair but the pins the dead session held, which stay counted
 * (the buffer is then never shipped: coralctl cache shows it). */
static void coral__repair_chain(void *arg) { (void)arg; }

void coral_cache_lock(struct coral_cache *c, uint32_t chain)
{
	coral_mutex_lock(&coral__latches(c)[chain], coral__repair_chain, NULL);
}

void (*coral_cache_unlock_hook)(struct coral_cache *c);

void coral_cache_unlock(struct coral_cache *c, uint32_t chain)
{
	coral_mutex_unlock(&coral__latches(c)[chain]);
	if (coral_cache_unlock_hook)
		coral_cache_unlock_hook(c);
}

struct coral_buf *coral_cache_find(struct coral_cache *c, uint32_t file, uint64_t block, bool pi)
{
	uint32_t i = coral__heads(c)[coral_cache_chain(c, file, block)];
	while (i != 0) {
		struct coral_buf *b = coral_cache_buf(c, i - 1);
		if (b->file == file && b->block == block && (b->flags & CORAL_BUFF_VALID) &&
		    !(b->flags & CORAL_BUFF_CR) && ((b->flags & CORAL_BUFF_PI) != 0) == pi)
			return b;
		i = b->next;
	}
	return NULL;
}

uint32_t coral_cache_cr_source(struct coral_cache *c, uint32_t file, uint64_t block)
{
	uint32_t ch = coral_cache_chain(c, file, block), node = 0;
	coral_cache_lock(c, ch);
	for (uint32_t i = coral__heads(c)[ch]; i != 0 && node == 0;) {
		const struct coral_buf *b = coral_cache_buf(c, i - 1);
		if (b->file == file && b->block == block && (b->flags & CORAL_BUFF_VALID) && (b->flags & CORAL_BUFF_CR))
			node = b->ack_from;
		i = b->next;
	}
	coral_cache_unlock(c, ch);
	return node;
}

uint32_t *coral_cache_heads(struct coral_cache *c) { return coral__heads(c); }

bool coral_buf_try_pin(struct coral_buf *b, bool exclusive)
{
	uint32_t p = atomic_load(&b->pins);
	if (exclusive) {
		if (p != 0)
			return false;
		atomic_store(&b->pins, CORAL_BUF_XPIN);
		return true;
	}
	if (p & CORAL_BUF_XPIN)
		return false;
	atomic_fetch_add(&b->pins, 1);
	return true;
}

static long coral__futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

/* With the latch held: b's consistent image given back (its transaction's X pin goes). */
static void coral__clone_drop(struct coral_cache *c, struct coral_buf *b)
{
	uint32_t i = b->clone;
	b->clone = 0;
	if (i == 0 || i > c->nclone)
		return;
	atomic_store(&coral__clones(c)[i - 1].state, 0);
	atomic_fetch_sub(&c->clones_used, 1);
}

int coral_cache_clone_make(struct coral_cache *c, struct coral_buf *b)
{
	if (b->clone != 0)
		return 0;
	uint32_t n = c->nclone;
	if (n == 0)
		return CORAL_EFULL;
	uint32_t bi = coral_cache_index(c, b), start = atomic_fetch_add(&c->clone_hint, 1) % n;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (start + k) % n;
		struct coral_clone *cl = &coral__clones(c)[i];
		uint64_t zero = 0;
		if (atomic_load(&cl->state) != 0)
			continue;
		/* the allocation's number: a sweep tells a new taking of the slot from an old one */
		uint64_t v = (uint64_t)(bi + 1) << 32 | ((atomic_load(&c->st.clones) + 1) & 0xffffffffu);
		if (!atomic_compare_exchange_strong(&cl->state, &zero, v))
			continue;
		memcpy(coral__clone_data(c, i), coral_cache_data(c, bi), c->block_size);
		cl->scn = b->scn;
		b->clone = i + 1;
		atomic_fetch_add(&c->clones_used, 1);
		atomic_fetch_add(&c->st.clones, 1);
		return 0;
	}
	atomic_fetch_add(&c->st.clone_full, 1);
	return CORAL_EFULL;
}

const uint8_t *coral_cache_clone_of(struct coral_cache *c, const struct coral_buf *b, uint64_t *scn)
{
	uint32_t i = b->clone;
	if (i == 0 || i > c->nclone || !(atomic_load(&b->pins) & CORAL_BUF_XPIN))
		return NULL;
	*scn = coral__clones(c)[i - 1].scn;
	atomic_fetch_add(&c->st.clone_reads, 1);
	return coral__clone_data(c, i - 1);
}

uint32_t coral_cache_clone_sweep(struct coral_cache *c)
{
	uint32_t freed = 0;
	for (uint32_t i = 0; i < c->nclone; i++) {
		struct coral_clone *cl = &coral__clones(c)[i];
		uint64_t v = atomic_load(&cl->state);
		uint32_t bi = (uint32_t)(v >> 32);
		if (v == 0 || bi == 0 || bi > c->nbuf)
			continue;
		struct coral_buf *b = coral_cache_buf(c, bi - 1);
		/* under the latch of the buffer the slot names: a taking is whole there (the slot,
		 * the copy and the buffer's mark in one hold), so a slot its buffer does not point
		 * at, still of the same taking, is lost. The buffer's identity changes only by lmsd,
		 * which calls this. */
		uint32_t ch = coral_cache_chain(c, b->file, b->block);
		coral_cache_lock(c, ch);
		if (b->clone != i + 1 && atomic_compare_exchange_strong(&cl->state, &v, 0)) {
			atomic_fetch_sub(&c->clones_used, 1);
			atomic_fetch_add(&c->st.clone_leaks, 1);
			freed++;
		}
		coral_cache_unlock(c, ch);
	}
	return freed;
}

/* With the latch held: one pin less; the waiters are woken after the latch goes */
static void coral__unpin_locked(struct coral_cache *c, struct coral_buf *b, bool exclusive)
{
	if (exclusive) {
		atomic_fetch_and(&b->pins, ~CORAL_BUF_XPIN);
		if (b->clone != 0)
			coral__clone_drop(c, b);
	} else if ((atomic_load(&b->pins) & ~CORAL_BUF_XPIN) > 0)
		atomic_fetch_sub(&b->pins, 1);
	atomic_fetch_add(&b->wake, 1);
}

static void coral__wake_waiters(struct coral_buf *b)
{
	if (atomic_load(&b->waiters) > 0)
		coral__futex(&b->wake, FUTEX_WAKE, INT_MAX, NULL);
}

void coral_cache_unpin_rec(struct coral_cache *c, struct coral_buf *b, bool exclusive, _Atomic uint32_t *rec)
{
	uint32_t ch = coral_cache_chain(c, b->file, b->block);
	coral_cache_lock(c, ch);
	coral__unpin_locked(c, b, exclusive);
	if (rec)
		atomic_store(rec, 0);
	coral_cache_unlock(c, ch);
	coral__wake_waiters(b);
}

void coral_cache_unpin(struct coral_cache *c, struct coral_buf *b, bool exclusive)
{
	coral_cache_unpin_rec(c, b, exclusive, NULL);
}

int coral_cache_sess_claim(struct coral_cache *c, uint32_t id)
{
	int32_t me = (int32_t)getpid();
	for (int i = 0; i < CORAL_CACHE_SESSIONS; i++) {
		struct coral_sess_slot *s = coral_cache_sess(c, (uint32_t)i);
		int32_t free_ = 0;
		/* claimed as -pid first: the reaper takes no slot whose start it may not read yet */
		if (atomic_load(&s->pid) == 0 && atomic_compare_exchange_strong(&s->pid, &free_, -me)) {
			s->id = id;
			s->start = coral_pid_start(me);
			atomic_store(&s->spinning, 0);
			atomic_store(&s->txn_first, 0);
			atomic_store(&s->txn_dead, 0);
			atomic_store(&s->busy, 0);
			atomic_store(&s->revoked, 0);
			atomic_store(&s->pid, me);
			return i;
		}
	}
	return -1;
}

void coral_cache_sess_free(struct coral_cache *c, int slot)
{
	if (slot < 0 || slot >= CORAL_CACHE_SESSIONS)
		return;
	struct coral_sess_slot *s = coral_cache_sess(c, (uint32_t)slot);
	uint32_t r = atomic_load(&s->revoked);
	while (r & CORAL_REVOKE_ASKED) {
		if (r & CORAL_REVOKE_DONE)
			break; /* reclaimed: freed here */
		/* not reclaimed yet: the reaper frees it once it has (its transaction, pins and
		 * locks are still the slot's until then) */
		if (atomic_compare_exchange_weak(&s->revoked, &r, r | CORAL_REVOKE_CLOSED))
			return;
	}
	atomic_store(&s->txn_first, 0);
	atomic_store(&s->pid, 0);
}

int coral_cache_sess_enter(struct coral_cache *c, int slot)
{
	if (slot < 0 || slot >= CORAL_CACHE_SESSIONS)
		return 0;
	struct coral_sess_slot *s = coral_cache_sess(c, (uint32_t)slot);
	atomic_fetch_add(&s->busy, 1);
	if (atomic_load(&s->revoked) != 0) {
		atomic_fetch_sub(&s->busy, 1);
		return CORAL_ECANCELED;
	}
	return 0;
}

void coral_cache_sess_leave(struct coral_cache *c, int slot)
{
	if (slot >= 0 && slot < CORAL_CACHE_SESSIONS)
		atomic_fetch_sub(&coral_cache_sess(c, (uint32_t)slot)->busy, 1);
}

int coral_cache_sess_revoke(struct coral_cache *c, int slot, uint32_t id)
{
	if (slot < 0 || slot >= CORAL_CACHE_SESSIONS)
		return CORAL_ENOENT;
	struct coral_sess_slot *s = coral_cache_sess(c, (uint32_t)slot);
	if (atomic_load(&s->pid) <= 0 || s->id != id)
		return CORAL_ENOENT;
	uint32_t zero = 0;
	atomic_compare_exchange_strong(&s->revoked, &zero, CORAL_REVOKE_ASKED);
	return 0;
}

bool coral_cache_sess_revocable(struct coral_sess_slot *s)
{
	uint32_t r = atomic_load(&s->revoked);
	return (r & CORAL_REVOKE_ASKED) && !(r & CORAL_REVOKE_DONE) && atomic_load(&s->busy) == 0;
}

void coral_cache_sess_revoke_done(struct coral_sess_slot *s)
{
	uint32_t r = atomic_load(&s->revoked);
	for (;;) {
		if (r & CORAL_REVOKE_CLOSED) {
			atomic_store(&s->txn_first, 0);
			atomic_store(&s->pid, 0);
			return;
		}
		if (atomic_compare_exchange_weak(&s->revoked, &r, r | CORAL_REVOKE_DONE))
			return;
	}
}

bool coral_cache_unpin_if(struct coral_cache *c, struct coral_buf *b, _Atomic uint32_t *rec, uint32_t v)
{
	uint32_t ch = coral_cache_chain(c, b->file, b->block);
	coral_cache_lock(c, ch);
	bool still = atomic_load(rec) == v;
	if (still) {
		coral__unpin_locked(c, b, (v & CORAL_PINREC_X) != 0);
		atomic_store(rec, 0);
	}
	coral_cache_unlock(c, ch);
	if (still)
		coral__wake_waiters(b);
	return still;
}

void coral_buf_wait(struct coral_buf *b, uint32_t seen, int timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
	atomic_fetch_add(&b->waiters, 1);
	coral__futex(&b->wake, FUTEX_WAIT, seen, &ts);
	atomic_fetch_sub(&b->waiters, 1);
}

void coral_buf_wake(struct coral_buf *b)
{
	atomic_fetch_add(&b->wake, 1);
	coral__wake_waiters(b);
}

uint64_t coral_scn_next(struct coral_cache *c)
{
	return atomic_fetch_add(&c->scn, 1) + 1;
}

void coral_cache_stamp_scn(struct coral_cache *c, struct coral_buf *b, uint64_t scn)
{
	uint32_t ch = coral_cache_chain(c, b->file, b->block);
	coral_cache_lock(c, ch);
	if (scn > b->scn)
		b->scn = scn;
	coral_cache_unlock(c, ch);
}

uint64_t coral_scn_observe(struct coral_cache *c, uint64_t seen)
{
	uint64_t cur = atomic_load(&c->scn);
	while (seen > cur && !atomic_compare_exchange_weak(&c->scn, &cur, seen))
		;
	return seen > cur ? seen : cur;
}

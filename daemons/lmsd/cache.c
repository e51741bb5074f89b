/* What lmsd alone does to the buffer cache in the SGA (libcommon/bufcache.h): it links a
 * buffer into its block's hash chain and unlinks it (sessions only follow the chains), and it
 * gives back what sessions of dead processes held: their pins, their place among the
 * spinners, their slots. */
#include "cache.h"

#include "util.h"

void lmsd_cache_link(struct coral_cache *c, uint32_t i, uint32_t file, uint64_t block)
{
	struct coral_buf *b = coral_cache_buf(c, i);
	uint32_t ch = coral_cache_chain(c, file, block);
	coral_cache_lock(c, ch);
	b->file = file;
	b->block = block;
	b->next = coral_cache_heads(c)[ch];
	coral_cache_heads(c)[ch] = i + 1;
	coral_cache_unlock(c, ch);
}

void lmsd_cache_unlink(struct coral_cache *c, uint32_t i)
{
	struct coral_buf *b = coral_cache_buf(c, i);
	uint32_t ch = coral_cache_chain(c, b->file, b->block);
	coral_cache_lock(c, ch);
	uint32_t *link = &coral_cache_heads(c)[ch];
	while (*link != 0 && *link != i + 1)
		link = &coral_cache_buf(c, *link - 1)->next;
	if (*link == i + 1)
		*link = b->next;
	b->next = 0;
	b->flags = 0;
	b->mode = CORAL_BL_N;
	b->first_lsn = 0;
	coral_cache_unlock(c, ch);
}

bool lmsd_sess_revoke_pending(struct coral_cache *c)
{
	for (uint32_t i = 0; i < CORAL_CACHE_SESSIONS; i++) {
		struct coral_sess_slot *s = coral_cache_sess(c, i);
		if (atomic_load(&s->pid) > 0 && !atomic_load(&s->txn_dead) && coral_cache_sess_revocable(s))
			return true;
	}
	return false;
}

int lmsd_sess_reap(struct coral_cache *c, uint64_t *pins)
{
	int dead = 0;
	*pins = 0;
	for (uint32_t i = 0; i < CORAL_CACHE_SESSIONS; i++) {
		struct coral_sess_slot *s = coral_cache_sess(c, i);
		int32_t pid = atomic_load(&s->pid);
		if (pid == 0)
			continue;
		if (pid < 0) {
			/* died while claiming: nothing recorded yet */
			if (!coral_pid_alive(-pid))
				atomic_compare_exchange_strong(&s->pid, &pid, 0);
			continue;
		}
		if (atomic_load(&s->txn_dead))
			continue; /* smond's */
		/* a live session revoked by the resource manager is reclaimed as a dead one is, but
		 * its slot stays its own until it closes (coral_cache_sess_revoke_done) */
		bool revoke = coral_cache_sess_revocable(s);
		uint64_t start = coral_pid_start(pid);
		if (!revoke && start != 0 && (start == s->start || start == UINT64_MAX || s->start == UINT64_MAX))
			continue;
		if (atomic_exchange(&s->spinning, 0))
			atomic_fetch_sub(&c->spinners, 1);
		if (atomic_load(&s->txn_first) != 0) {
			/* its open transaction's blocks stay pinned in X, so that nobody sees or
			 * builds on its changes, until smond has taken it back */
			atomic_store(&s->txn_dead, 1);
			dead += !revoke;
			continue;
		}
		for (int k = 0; k < CORAL_CACHE_SLOT_PINS; k++) {
			uint32_t v = atomic_load(&s->pins[k]);
			uint32_t idx = (v & ~CORAL_PINREC_X) - 1;
			if (v == 0 || idx >= c->nbuf)
				continue;
			/* a pinned buffer stays in its chain: its block names the latch */
			if (coral_cache_unpin_if(c, coral_cache_buf(c, idx), &s->pins[k], v))
				(*pins)++;
		}
		if (revoke) {
			atomic_fetch_add(&c->st.revoked, 1);
			coral_cache_sess_revoke_done(s);
			continue;
		}
		atomic_store(&s->pid, 0);
		dead++;
	}
	atomic_fetch_add(&c->st.dead_sessions, (uint64_t)dead);
	atomic_fetch_add(&c->st.dead_pins, *pins);
	return dead;
}


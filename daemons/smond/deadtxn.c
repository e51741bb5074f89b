/* smond: the open transactions of processes that died while their node runs (Oracle's SMON
 * transaction recovery after PMON's clean-up).
 *
 * lmsd's reaper finds a dead process's session slot; if it has a transaction open, it leaves
 * the slot and its X pins alone and marks it (txn_dead): no other session reads or changes
 * those blocks meanwhile (libcoral's contract, coral.h). smond looks every DEADTXN_MS: it
 * makes the thread durable to its end, reads the session's records from the transaction's
 * first LSN, and unless a commit record ends them, takes each change back, newest first, in
 * the buffer the slot still pins (the undo bytes of its record), each by a change of its own
 * logged with its undo, then logs a commit for the session and waits for it. Then the pins
 * are released and the slot freed. A change whose block the slot no longer pins (its commit
 * failed and released them: the outcome was left to the log) is left as it is. */
#include "deadtxn.h"

#include "bufcache.h"
#include "errors.h"
#include "log.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
	uint8_t type, flags;
	uint32_t file, offset, nbytes;
	uint64_t block;
	uint8_t *bytes; /* new, then old */
};

struct collect {
	uint32_t session;
	struct rec *v;
	uint32_t n, cap;
	int rc;
};

static void clear(struct collect *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		free(c->v[i].bytes);
	c->n = 0;
}

static int collect_fn(void *arg, const struct coral_redo_rec *h, const uint8_t *bytes)
{
	struct collect *c = arg;
	if (h->session != c->session)
		return 0;
	if (h->type == CORAL_REDO_COMMIT) {
		clear(c); /* what came before is committed */
		return 0;
	}
	if (h->type != CORAL_REDO_CHANGE)
		return 0;
	if (h->flags & CORAL_REDO_F_BEGIN)
		clear(c); /* an earlier one was abandoned before this (or is someone else's) */
	if (c->n == c->cap) {
		uint32_t cap = c->cap ? 2 * c->cap : 32;
		struct rec *p = realloc(c->v, cap * sizeof(*p));
		if (p == NULL)
			return c->rc = CORAL_ENOMEM;
		c->v = p;
		c->cap = cap;
	}
	size_t nb = (size_t)h->nbytes * ((h->flags & CORAL_REDO_F_UNDO) ? 2 : 1);
	uint8_t *copy = malloc(nb ? nb : 1);
	if (copy == NULL)
		return c->rc = CORAL_ENOMEM;
	memcpy(copy, bytes, nb);
	c->v[c->n++] = (struct rec){h->type, h->flags, h->file, h->offset, h->nbytes, h->block, copy};
	return 0;
}

/* The buffer the slot's k-th pin holds in X, or NULL. */
static struct coral_buf *x_pinned(struct coral_cache *c, struct coral_sess_slot *ss, int k)
{
	uint32_t v = atomic_load(&ss->pins[k]);
	uint32_t idx = (v & ~CORAL_PINREC_X) - 1;
	return v == 0 || !(v & CORAL_PINREC_X) || idx >= c->nbuf ? NULL : coral_cache_buf(c, idx);
}

/* The slot's X pin on (file, block): its record index, or -1. */
static int pin_of(struct coral_cache *c, struct coral_sess_slot *ss, uint32_t file, uint64_t block)
{
	for (int k = 0; k < CORAL_CACHE_SLOT_PINS; k++) {
		struct coral_buf *b = x_pinned(c, ss, k);
		if (b && b->file == file && b->block == block)
			return k;
	}
	return -1;
}

/* Takes back one change in the buffer its slot pins: redo first (with the bytes it
 * replaces), then the bytes. */
static int undo_one(struct coral_cache *c, struct coral_redo *r, uint32_t session, struct coral_buf *b, uint32_t idx,
		    const struct rec *x, int timeout_ms)
{
	uint32_t ch = coral_cache_chain(c, x->file, x->block);
	uint8_t *at = coral_cache_data(c, idx) + CORAL_BLOCK_HDR + x->offset;
	uint8_t *now = malloc(x->nbytes ? x->nbytes : 1);
	if (now == NULL)
		return CORAL_ENOMEM;
	coral_cache_lock(c, ch);
	memcpy(now, at, x->nbytes);
	if (b->first_lsn == 0)
		b->first_lsn = atomic_load(&r->tail) + 1;
	if (!(b->flags & CORAL_BUFF_DIRTY)) {
		b->flags |= CORAL_BUFF_DIRTY;
		atomic_fetch_add(&c->dirty, 1);
	}
	coral_cache_unlock(c, ch);
	uint64_t scn = 0, lsn;
	const uint8_t *old = x->bytes + x->nbytes;
	/* a rollback: taken by a thread closed for a switchover too */
	int rc = coral_redo_append_clocked(r, &c->scn, CORAL_REDO_CHANGE, CORAL_REDO_F_ROLLBACK, &scn, session, x->file,
					   x->block, x->offset, old, now, x->nbytes, timeout_ms, &lsn);
	free(now);
	if (rc != 0)
		return rc;
	coral_cache_lock(c, ch);
	memcpy(at, old, x->nbytes);
	b->scn = scn;
	b->redo_lsn = lsn;
	coral_cache_unlock(c, ch);
	return 0;
}

/* One dead session's transaction; 0 when its slot is freed, else try again later. */
static int rollback_slot(struct smond_deadtxn *dt, uint32_t i)
{
	struct coral_cache *c = dt->cache;
	struct coral_redo *r = dt->redo;
	struct coral_sess_slot *ss = coral_cache_sess(c, i);
	uint64_t first = atomic_load(&ss->txn_first);
	int timeout = (int)dt->conf->cache.commit_timeout_ms;
	/* everything the session appended is in the thread before it is read (not long in
	 * smond's loop: tried again at the next step) */
	int rc = coral_redo_wait(r, atomic_load(&r->tail), 500);
	if (rc != 0)
		return rc;
	struct collect col = {.session = ss->id};
	char err[256];
	uint64_t end;
	if (first != 0) {
		int64_t n = coral_redo_scan(dt->conf->storage.shared_dir, r->thread, (uint64_t)dt->conf->cache.redo_segment,
					    first - 1, collect_fn, &col, &end, err, sizeof(err));
		if (n < 0 || col.rc != 0) {
			log_error("the transaction of dead session %u: reading the redo thread: %s", ss->id,
				  n < 0 ? err : coral_strerror(col.rc));
			clear(&col);
			free(col.v);
			return n < 0 ? (int)n : col.rc;
		}
	}
	uint32_t undone = 0, left = 0;
	uint64_t t0 = coral_now_mono_ns();
	struct rcv_event ev = {.kind = "dead transaction", .at_ms = coral_now_real_ns() / 1000000ull,
			       .session = ss->id, .pid = atomic_load(&ss->pid), .txns = 1, .txns_open = 1,
			       .records = col.n};
	if (atomic_load(&ss->revoked) & CORAL_REVOKE_ASKED)
		snprintf(ev.kind, sizeof(ev.kind), "ended session");
	for (uint32_t k = col.n; k-- > 0 && rc == 0;) {
		const struct rec *x = &col.v[k];
		int pin = pin_of(c, ss, x->file, x->block);
		if (pin < 0 || !(x->flags & CORAL_REDO_F_UNDO)) {
			left++;
			continue;
		}
		uint32_t idx = (atomic_load(&ss->pins[pin]) & ~CORAL_PINREC_X) - 1;
		rc = undo_one(c, r, ss->id, coral_cache_buf(c, idx), idx, x, timeout);
		if (rc == 0)
			undone++;
	}
	if (rc == 0 && undone > 0) {
		uint64_t lsn, scn = 0;
		rc = coral_redo_append_clocked(r, &c->scn, CORAL_REDO_COMMIT, CORAL_REDO_F_ROLLBACK, &scn, ss->id, 0, 0, 0,
					       NULL, NULL, 0,
					       timeout, &lsn);
		if (rc == 0) {
			/* the blocks carry the commit's SCN before their pins go (as libcoral's
			 * commit does): whoever changes one next does so above it */
			for (int k = 0; k < CORAL_CACHE_SLOT_PINS; k++) {
				struct coral_buf *b = x_pinned(c, ss, k);
				if (b)
					coral_cache_stamp_scn(c, b, scn);
			}
			rc = coral_redo_wait(r, lsn, timeout);
		}
	}
	clear(&col);
	free(col.v);
	if (rc != 0) {
		/* the pins stay: tried again (a change taken back twice restores the same bytes) */
		log_warn("the transaction of dead session %u (pid %d): %s; trying again", ss->id, (int)atomic_load(&ss->pid),
			 coral_strerror(rc));
		return rc;
	}
	uint32_t pins = 0;
	for (int k = 0; k < CORAL_CACHE_SLOT_PINS; k++) {
		uint32_t v = atomic_load(&ss->pins[k]);
		uint32_t idx = (v & ~CORAL_PINREC_X) - 1;
		if (v != 0 && idx < c->nbuf && coral_cache_unpin_if(c, coral_cache_buf(c, idx), &ss->pins[k], v))
			pins++;
	}
	log_notice("took back the open transaction of a %s (pid %d, session %u): %u change%s, %u left "
		   "(blocks no longer pinned); %u block%s released",
		   (atomic_load(&ss->revoked) & CORAL_REVOKE_ASKED) ? "session ended by the resource manager"
								     : "process that died",
		   (int)atomic_load(&ss->pid), ss->id, undone,
		   undone == 1 ? "" : "s", left, pins, pins == 1 ? "" : "s");
	ev.undone = undone;
	ev.kept = left;
	ev.blocks = pins;
	ev.total_ms = ev.apply_ms = (coral_now_mono_ns() - t0) / 1000000ull;
	snprintf(ev.result, sizeof(ev.result), "done");
	if (dt->history)
		rcv_history_add(dt->history, &ev);
	atomic_fetch_add(&c->st.dead_txns, 1);
	atomic_fetch_add(&c->st.dead_txn_changes, undone);
	atomic_fetch_add(&c->st.dead_pins, pins);
	atomic_store(&ss->txn_first, 0);
	atomic_store(&ss->txn_dead, 0);
	int32_t pid = atomic_load(&ss->pid);
	uint64_t start = pid > 0 ? coral_pid_start(pid) : 0;
	bool alive = start != 0 && (start == ss->start || start == UINT64_MAX || ss->start == UINT64_MAX);
	if ((atomic_load(&ss->revoked) & CORAL_REVOKE_ASKED) && alive) {
		/* a live session revoked by the resource manager: its slot stays its own until it
		 * closes */
		atomic_fetch_add(&c->st.revoked, 1);
		coral_cache_sess_revoke_done(ss);
	} else
		atomic_store(&ss->pid, 0);
	return 0;
}

uint32_t smond_deadtxn_pending(const struct smond_deadtxn *dt)
{
	uint32_t n = 0;
	for (uint32_t i = 0; dt->cache && i < CORAL_CACHE_SESSIONS; i++) {
		struct coral_sess_slot *ss = coral_cache_sess(dt->cache, i);
		n += atomic_load(&ss->pid) > 0 && atomic_load(&ss->txn_dead);
	}
	return n;
}

int smond_deadtxn_step(struct smond_deadtxn *dt)
{
	if (dt->cache == NULL || dt->redo == NULL || atomic_load(&dt->redo->writer_pid) == 0 ||
	    atomic_load(&dt->redo->fenced))
		return 0;
	int done = 0;
	for (uint32_t i = 0; i < CORAL_CACHE_SESSIONS; i++) {
		struct coral_sess_slot *ss = coral_cache_sess(dt->cache, i);
		if (atomic_load(&ss->pid) > 0 && atomic_load(&ss->txn_dead) && rollback_slot(dt, i) == 0)
			done++;
	}
	return done;
}

/* grdd's core: the current master's side of a move (freezing what moves, shipping it under
 * the bandwidth budget once no block operation is under way on it) and the new master's
 * (staging what comes, settled when a version commits or drops the move). */

#include "core_int.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void src_pump(struct grd_core *c);

/* ---- the current master's side of a move ------------------------------------------- */

static int item_cmp(const void *a, const void *b)
{
	const struct grd_item *x = a, *y = b;
	if (x->to != y->to)
		return x->to < y->to ? -1 : 1;
	if (x->is_res != y->is_res)
		return x->is_res ? 1 : -1;
	return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

static void send_ready(struct grd_core *c, uint32_t coord, uint64_t move_id, uint32_t source,
		       uint32_t dest, int code, const char *error, uint64_t entries, uint64_t bytes)
{
	Coral__GrdReady r = CORAL__GRD_READY__INIT;
	r.move_id = move_id;
	r.source = source;
	r.dest = dest;
	r.code = code;
	r.error = (char *)(error ? error : "");
	r.entries = entries;
	r.bytes = bytes;
	grd_send_msg(c, coord, GRD_MSG_READY, (const ProtobufCMessage *)&r);
}

void grd_src_unfreeze(struct grd_core *c)
{
	struct grd_src *s = &c->src;
	for (size_t i = 0; i < s->nitems; i++) {
		struct grd_item *it = &s->items[i];
		uint32_t b = it->is_res ? coral_resid_bucket(&it->id) : it->bucket;
		coral_grd_dir_lock(c->dir, b);
		for (struct coral_grd_entry *e = coral_grd_dir_first(c->dir, b), *nx; e; e = nx) {
			nx = coral_grd_dir_next(c->dir, e);
			if (it->is_res && !coral_resid_eq(&e->id, &it->id))
				continue;
			if (e->flags & CORAL_GRDE_MARK) {
				coral_grd_dir_remove(c->dir, e);
				continue;
			}
			e->flags &= (uint16_t)~CORAL_GRDE_FROZEN;
			coral_grd_dir_touch(c->dir, e);
		}
		if (!it->is_res)
			atomic_store(&c->dir->bstate[b], CORAL_GRDB_ACTIVE);
		coral_grd_dir_unlock(c->dir, b);
	}
	free(s->items);
	memset(s, 0, sizeof(*s));
}

/* A dry run: what would move, counted per destination, without freezing. */
static void freeze_dry_run(struct grd_core *c, uint32_t from, const Coral__GrdFreeze *f)
{
	uint64_t entries = 0, bytes = 0;
	for (size_t i = 0; i < f->n_items; i++) {
		const Coral__GrdMoveItem *it = f->items[i];
		struct coral_resid id;
		bool is_res = it->is_res && grd_res_from_msg(it->id, &id);
		uint32_t b = is_res ? coral_resid_bucket(&id) : it->bucket % CORAL_GRD_BUCKETS;
		coral_grd_dir_lock(c->dir, b);
		for (struct coral_grd_entry *e = coral_grd_dir_first(c->dir, b); e; e = coral_grd_dir_next(c->dir, e)) {
			if (is_res && !coral_resid_eq(&e->id, &id))
				continue;
			Coral__GrdEntry m;
			struct grd_entry_buf eb;
			grd_entry_to_msg(e, &m, &eb);
			entries++;
			bytes += grd_msg_size(&m.base);
		}
		coral_grd_dir_unlock(c->dir, b);
	}
	send_ready(c, from, f->move_id, c->self, 0, 0, NULL, entries, bytes);
}

/* Why this node cannot freeze for the move now (a CORAL_E* code, err saying why), 1 for a
 * FREEZE it has already taken, or 0. */
static int freeze_refused(struct grd_core *c, const Coral__GrdFreeze *f, char *err, size_t errsz)
{
	if (f->base_version != version(c)) {
		snprintf(err, errsz, "node %u is at map version %llu, the move at %llu", c->self,
			 (unsigned long long)version(c), (unsigned long long)f->base_version);
		return CORAL_ENOTMASTER;
	}
	for (size_t i = 0; i < f->n_items; i++) {
		struct coral_resid id;
		const Coral__GrdMoveItem *it = f->items[i];
		uint32_t b = it->is_res && grd_res_from_msg(it->id, &id) ? coral_resid_bucket(&id) : it->bucket % CORAL_GRD_BUCKETS;
		if (atomic_load(&c->dir->bstate[b]) == CORAL_GRDB_REBUILDING || (it->is_res && grd_rebuilding_res(c, &id))) {
			snprintf(err, errsz, "node %u is still rebuilding bucket %u after a loss", c->self, b);
			return CORAL_EBUSY;
		}
	}
	if (c->src.active) {
		if (c->src.move_id == f->move_id)
			return 1;
		snprintf(err, errsz, "node %u is still frozen for move %llu", c->self, (unsigned long long)c->src.move_id);
		return CORAL_EBUSY;
	}
	return 0;
}

/* The items to ship, sorted by destination; false when out of memory. */
static bool src_items(struct grd_src *s, const Coral__GrdFreeze *f)
{
	s->items = calloc(f->n_items + 1, sizeof(*s->items));
	if (s->items == NULL)
		return false;
	for (size_t i = 0; i < f->n_items; i++) {
		const Coral__GrdMoveItem *it = f->items[i];
		struct grd_item *x = &s->items[s->nitems];
		x->to = it->to;
		x->is_res = it->is_res;
		if (it->is_res) {
			if (!grd_res_from_msg(it->id, &x->id))
				continue;
			x->bucket = coral_resid_bucket(&x->id);
		} else {
			if (it->bucket >= CORAL_GRD_BUCKETS)
				continue;
			x->bucket = it->bucket;
		}
		s->nitems++;
	}
	qsort(s->items, s->nitems, sizeof(*s->items), item_cmp);
	return true;
}

/* Freezes only what moves: the bucket state first, so that no new request starts on it,
 * then its entries (a resource not held yet gets an entry that marks it frozen). */
static void freeze_items(struct grd_core *c, struct grd_src *s)
{
	for (size_t i = 0; i < s->nitems; i++) {
		struct grd_item *it = &s->items[i];
		if (!it->is_res)
			atomic_store(&c->dir->bstate[it->bucket], CORAL_GRDB_FROZEN);
		coral_grd_dir_lock(c->dir, it->bucket);
		bool found = false;
		for (struct coral_grd_entry *e = coral_grd_dir_first(c->dir, it->bucket); e; e = coral_grd_dir_next(c->dir, e))
			if (!it->is_res || coral_resid_eq(&e->id, &it->id)) {
				e->flags |= CORAL_GRDE_FROZEN;
				coral_grd_dir_touch(c->dir, e);
				found = true;
			}
		if (it->is_res && !found) {
			struct coral_grd_entry *e = coral_grd_dir_insert(c->dir, &it->id);
			if (e) {
				e->flags |= CORAL_GRDE_FROZEN | CORAL_GRDE_MARK;
				coral_grd_dir_touch(c->dir, e);
			}
		}
		coral_grd_dir_unlock(c->dir, it->bucket);
	}
}

void grd_on_freeze(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdFreeze *f = msg;
	if (f->coordinator != from) {
		c->st.msgs_refused++;
		return;
	}
	if (f->dry_run) {
		freeze_dry_run(c, from, f);
		return;
	}
	char err[128];
	int rc = freeze_refused(c, f, err, sizeof(err));
	if (rc == 1)
		return; /* a duplicate */
	if (rc != 0) {
		send_ready(c, from, f->move_id, c->self, 0, rc, err, 0, 0);
		return;
	}
	struct grd_src *s = &c->src;
	if (!src_items(s, f)) {
		send_ready(c, from, f->move_id, c->self, 0, CORAL_ENOMEM, "out of memory", 0, 0);
		return;
	}
	s->active = true;
	s->move_id = f->move_id;
	s->base_version = f->base_version;
	s->coordinator = from;
	s->since_ms = c->now_ms;
	freeze_items(c, s);
	grd_log(c, CORAL_LOG_INFO, "move %llu: froze %zu items at version %llu for coordinator %u",
		(unsigned long long)s->move_id, s->nitems, (unsigned long long)s->base_version, from);
	/* ship what the budget allows now rather than at the next tick: a small move is over
	 * in one round trip */
	src_pump(c);
}

/* An entry of the item has a block operation under way (the bucket's latch held). */
static bool item_busy(struct grd_core *c, const struct grd_item *it)
{
	for (struct coral_grd_entry *e = coral_grd_dir_first(c->dir, it->bucket); e; e = coral_grd_dir_next(c->dir, e))
		if ((!it->is_res || coral_resid_eq(&e->id, &it->id)) && coral_grd_entry_busy(e))
			return true;
	return false;
}

/* Ships what the budget allows. */
/* The bandwidth budget: tokens refill at remaster_bandwidth bytes per second, up to a burst
 * of a tenth of a second (64 KiB at least). */
static void refill_tokens(struct grd_core *c)
{
	double rate = (double)c->conf->remaster_bandwidth;
	double burst = rate / 10 > 65536 ? rate / 10 : 65536;
	if (c->tokens_ms == 0)
		c->tokens_ms = c->now_ms;
	c->tokens += rate * (double)(c->now_ms - c->tokens_ms) / 1000.0;
	c->tokens_ms = c->now_ms;
	if (c->tokens > burst)
		c->tokens = burst;
}

/* One shipment's entries, copied out of the directory. */
struct chunk {
	Coral__GrdEntry ents[GRD_CHUNK_ENTRIES];
	Coral__GrdEntry *entp[GRD_CHUNK_ENTRIES];
	struct grd_entry_buf bufs[GRD_CHUNK_ENTRIES];
	size_t n;
};

/* Copies the entries of one item, from where the last chunk stopped, while they fit; true
 * once the item is done. Latch held. */
static bool collect_item(struct grd_core *c, struct grd_src *s, const struct grd_item *it, struct chunk *ch)
{
	uint32_t k = 0;
	struct coral_grd_entry *e = coral_grd_dir_first(c->dir, it->bucket);
	for (; e && ch->n < GRD_CHUNK_ENTRIES; e = coral_grd_dir_next(c->dir, e)) {
		if (it->is_res && !coral_resid_eq(&e->id, &it->id))
			continue;
		if (e->flags & (CORAL_GRDE_STAGED | CORAL_GRDE_MARK))
			continue;
		if (k++ < s->skip)
			continue;
		/* the entry's lvb points into the SGA: a frozen entry does not change */
		grd_entry_to_msg(e, &ch->ents[ch->n], &ch->bufs[ch->n]);
		ch->entp[ch->n] = &ch->ents[ch->n];
		ch->n++;
		s->skip++;
	}
	return e == NULL;
}

/* Fills a chunk for destination `to` from the items in turn; false (nothing collected) when
 * the next item has a block operation under way: the tick tries again. A frozen bucket does
 * not change once the operations under way when it froze are over. */
static bool collect_chunk(struct grd_core *c, struct grd_src *s, uint32_t to, struct chunk *ch)
{
	while (ch->n < GRD_CHUNK_ENTRIES && s->cursor < s->nitems && s->items[s->cursor].to == to) {
		struct grd_item *it = &s->items[s->cursor];
		coral_grd_dir_lock(c->dir, it->bucket);
		if (s->skip == 0 && item_busy(c, it)) {
			coral_grd_dir_unlock(c->dir, it->bucket);
			return ch->n > 0;
		}
		bool done = collect_item(c, s, it, ch);
		coral_grd_dir_unlock(c->dir, it->bucket);
		if (!done)
			break;
		s->cursor++;
		s->skip = 0;
	}
	return true;
}

static void send_chunk(struct grd_core *c, struct grd_src *s, uint32_t to, struct chunk *ch)
{
	Coral__GrdShip sh = CORAL__GRD_SHIP__INIT;
	sh.move_id = s->move_id;
	sh.base_version = s->base_version;
	sh.coordinator = s->coordinator;
	sh.seq = s->seq++;
	sh.last = s->cursor >= s->nitems || s->items[s->cursor].to != to;
	sh.entries = ch->entp;
	sh.n_entries = ch->n;
	size_t len;
	uint8_t *buf = grd_msg_pack(&sh.base, &len);
	if (buf) {
		if (to != 0)
			c->ops.send(c->ops.arg, to, GRD_MSG_SHIP, buf, len);
		free(buf);
	}
	s->entries += ch->n;
	s->bytes += len;
	c->st.shipped_entries += ch->n;
	c->st.shipped_bytes += len;
	c->tokens -= (double)len;
}

/* Ships what the budget allows, a chunk at a time, in the order of destinations. */
static void src_pump(struct grd_core *c)
{
	struct grd_src *s = &c->src;
	if (!s->active || s->shipped)
		return;
	refill_tokens(c);
	while (c->tokens > 0 && !s->shipped) {
		uint32_t to = s->cursor < s->nitems ? s->items[s->cursor].to : 0;
		struct chunk *ch = calloc(1, sizeof(*ch));
		if (ch == NULL)
			return;
		if (!collect_chunk(c, s, to, ch)) {
			free(ch);
			return;
		}
		send_chunk(c, s, to, ch);
		free(ch);
		if (s->cursor >= s->nitems)
			s->shipped = true;
	}
}

void grd_on_ship(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdShip *sh = msg;
	struct grd_dst *d = &c->dst;
	if (sh->base_version != version(c)) {
		char err[128];
		snprintf(err, sizeof(err), "node %u is at map version %llu, the shipment at %llu", c->self,
			 (unsigned long long)version(c), (unsigned long long)sh->base_version);
		if (sh->last)
			send_ready(c, sh->coordinator, sh->move_id, from, c->self, CORAL_ENOTMASTER, err, 0, 0);
		return;
	}
	if (d->move_id != sh->move_id) {
		/* entries another move staged stay marked in staged_bm: the next settle drops them */
		d->done_sources = 0;
		memset(d->entries, 0, sizeof(d->entries));
		memset(d->bytes, 0, sizeof(d->bytes));
		d->move_id = sh->move_id;
		d->base_version = sh->base_version;
	}
	int code = 0;
	char err[160] = "";
	for (size_t i = 0; i < sh->n_entries; i++) {
		struct coral_resid id;
		if (!grd_res_from_msg(sh->entries[i]->id, &id))
			continue;
		uint32_t b = coral_resid_bucket(&id);
		coral_grd_dir_lock(c->dir, b);
		struct coral_grd_entry *e = coral_grd_dir_find(c->dir, &id);
		if (e == NULL)
			e = coral_grd_dir_insert(c->dir, &id);
		if (e == NULL) {
			coral_grd_dir_unlock(c->dir, b);
			code = CORAL_EFULL;
			snprintf(err, sizeof(err), "the directory of node %u is full (%u entries): raise [grd] directory_entries",
				 c->self, c->dir->capacity);
			break;
		}
		grd_entry_from_msg(e, sh->entries[i]);
		e->flags |= CORAL_GRDE_STAGED;
		d->staged_bm[b / 8] |= (uint8_t)(1u << (b % 8));
		e->move_id = sh->move_id;
		coral_grd_dir_touch(c->dir, e);
		coral_grd_dir_unlock(c->dir, b);
		d->staged++;
		c->st.staged_entries++;
	}
	if (from >= 1 && from <= CORAL_MAX_NODES) {
		d->entries[from - 1] += sh->n_entries;
		d->bytes[from - 1] += grd_msg_size(&sh->base);
	}
	if (code != 0 || sh->last) {
		d->done_sources |= bit(from);
		send_ready(c, sh->coordinator, sh->move_id, from, c->self, code, err,
			   from >= 1 && from <= CORAL_MAX_NODES ? d->entries[from - 1] : 0,
			   from >= 1 && from <= CORAL_MAX_NODES ? d->bytes[from - 1] : 0);
	}
}

/* Drops (or makes live) staged entries once a version decides their move. */
void grd_dst_settle(struct grd_core *c, const Coral__GrdMapRecord *r)
{
	struct grd_dst *d = &c->dst;
	if (d->staged == 0)
		return;
	bool committed = grd_committed_move(r, d->move_id);
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
		if (!(d->staged_bm[b / 8] & (1u << (b % 8))))
			continue;
		coral_grd_dir_lock(c->dir, b);
		for (struct coral_grd_entry *e = coral_grd_dir_first(c->dir, b), *next; e; e = next) {
			next = coral_grd_dir_next(c->dir, e);
			if (!(e->flags & CORAL_GRDE_STAGED))
				continue;
			if (committed && e->move_id == d->move_id) {
				e->flags &= (uint16_t)~CORAL_GRDE_STAGED;
				e->moved_ns = c->now_ms * 1000000ull;
				memset(e->aff, 0, sizeof(e->aff));
				coral_grd_dir_touch(c->dir, e);
			} else {
				coral_grd_dir_remove(c->dir, e);
			}
		}
		coral_grd_dir_unlock(c->dir, b);
	}
	memset(d, 0, sizeof(*d));
}

void grd_on_abort(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdAbort *a = msg;
	if (c->src.active && c->src.move_id == a->move_id && c->src.coordinator == from) {
		grd_log(c, CORAL_LOG_INFO, "move %llu aborted by node %u: %s", (unsigned long long)a->move_id, from, a->reason);
		grd_src_unfreeze(c);
	}
	if (c->dst.move_id == a->move_id && c->rec) {
		/* drop what was staged for it: settle against a record that does not commit it */
		Coral__GrdMapRecord none = CORAL__GRD_MAP_RECORD__INIT;
		grd_dst_settle(c, &none);
	}
}

void grd_src_tick(struct grd_core *c)
{
	struct grd_src *s = &c->src;
	if (!s->active)
		return;
	src_pump(c);
	/* the coordinator went quiet: commit a version that moves nothing, so its own commit
	 * (compare-and-swap on the version we froze at) can no longer succeed */
	if (!s->abandon_sent && c->rec && c->now_ms - s->since_ms >= (uint64_t)c->conf->freeze_timeout_ms + 1000) {
		Coral__GrdMapRecord *n = grd_rec_edit(c);
		if (n == NULL)
			return;
		char detail[128];
		snprintf(detail, sizeof(detail), "move %llu of coordinator %u abandoned by node %u",
			 (unsigned long long)s->move_id, s->coordinator, c->self);
		grd_record_stamp(c, n, CORAL_GRD_CAUSE_ABANDON, 0, detail, grd_wall_ms(c));
		grd_log(c, CORAL_LOG_NOTICE, "%s after %lld ms frozen", detail, (long long)(c->now_ms - s->since_ms));
		s->abandon_sent = true;
		if (grd_record_store(c, n, GRD_STORE_ABANDON) != 0)
			s->abandon_sent = false;
		grd_record_free(n);
	}
}

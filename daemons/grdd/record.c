/* grdd's core: the map record (raftd's grd/map) read into the published map, edited by the
 * coordinator and stored with compare-and-swap, and a committed one applied. */

#include "core_int.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- records ------------------------------------------------------------------------- */

static Coral__GrdMapRecord *rec_copy(const Coral__GrdMapRecord *r) { return grd_record_copy(r); }

/* The record's content as a map definition (pointers into scratch arrays owned by caller). */
struct map_scratch {
	struct grd_bucket_override *bo, *lbo, *away;
	struct grd_res_override *res, *lres;
	struct coral_grd_lost lost[CORAL_GRD_MAX_LOST];
};

static int rec_def(const Coral__GrdMapRecord *r, uint64_t index, struct grd_map_def *d,
		   struct map_scratch *s)
{
	memset(d, 0, sizeof(*d));
	memset(s, 0, sizeof(*s));
	d->version = r->version;
	d->record_index = index;
	for (size_t i = 0; i < r->n_members && d->nmembers < CORAL_MAX_NODES; i++)
		if (r->members[i] >= 1 && r->members[i] <= CORAL_MAX_NODES)
			d->members[d->nmembers++] = r->members[i];
	s->bo = calloc(r->n_bucket_overrides + 1, sizeof(*s->bo));
	s->lbo = calloc(r->n_lost_bucket_overrides + 1, sizeof(*s->lbo));
	s->res = calloc(r->n_res_overrides + 1, sizeof(*s->res));
	s->lres = calloc(r->n_lost_res_overrides + 1, sizeof(*s->lres));
	if (!s->bo || !s->lbo || !s->res || !s->lres)
		return CORAL_ENOMEM;
	for (size_t i = 0; i < r->n_lost_res_overrides; i++) {
		if (!grd_res_from_msg(r->lost_res_overrides[i]->id, &s->lres[d->nlost_res].id))
			continue;
		s->lres[d->nlost_res++].node = r->lost_res_overrides[i]->node;
	}
	d->lost_res = s->lres;
	for (size_t i = 0; i < r->n_bucket_overrides; i++)
		s->bo[d->nbo++] = (struct grd_bucket_override){r->bucket_overrides[i]->bucket,
								     r->bucket_overrides[i]->node};
	for (size_t i = 0; i < r->n_lost_bucket_overrides; i++)
		s->lbo[d->nlost_bo++] = (struct grd_bucket_override){
			r->lost_bucket_overrides[i]->bucket, r->lost_bucket_overrides[i]->node};
	for (size_t i = 0; i < r->n_res_overrides; i++) {
		if (!grd_res_from_msg(r->res_overrides[i]->id, &s->res[d->nres].id))
			continue;
		s->res[d->nres++].node = r->res_overrides[i]->node;
	}
	size_t naway = 0;
	for (size_t i = 0; i < r->n_lost; i++)
		naway += r->lost[i]->n_away;
	s->away = calloc(naway + 1, sizeof(*s->away));
	if (s->away == NULL)
		return CORAL_ENOMEM;
	for (size_t i = 0; i < r->n_lost && d->nlost < CORAL_GRD_MAX_LOST; i++) {
		const Coral__GrdLost *l = r->lost[i];
		struct coral_grd_lost *o = &s->lost[d->nlost++];
		o->node = l->node;
		o->incarnation = l->incarnation;
		o->since_version = l->since_version;
		for (size_t k = 0; k < l->n_ring && o->nring < CORAL_MAX_NODES; k++)
			if (l->ring[k] >= 1 && l->ring[k] <= CORAL_MAX_NODES) /* as members are */
				o->ring[o->nring++] = l->ring[k];
		for (size_t k = 0; k < l->n_away; k++)
			s->away[d->nlost_away++] = (struct grd_bucket_override){l->away[k], l->node};
	}
	d->lost_away = s->away;
	d->bo = s->bo;
	d->lost_bo = s->lbo;
	d->res = s->res;
	d->lost = s->lost;
	return 0;
}

static void scratch_free(struct map_scratch *s)
{
	free(s->away);
	free(s->lres);
	free(s->bo);
	free(s->lbo);
	free(s->res);
}

/* Owners under a record, into out (CORAL_GRD_BUCKETS). */
void grd_rec_owners(const Coral__GrdMapRecord *r, uint8_t *out)
{
	struct grd_map_def d;
	struct map_scratch s;
	if (rec_def(r, 0, &d, &s) == 0)
		grd_map_compute(d.members, d.nmembers, d.bo, d.nbo, out);
	else
		memset(out, 0, CORAL_GRD_BUCKETS);
	scratch_free(&s);
}

/* A resource's master under a record whose bucket owners are in owners. */
uint32_t grd_rec_master(const Coral__GrdMapRecord *r, const uint8_t *owners,
			   const struct coral_resid *id)
{
	for (size_t i = 0; i < r->n_res_overrides; i++) {
		struct coral_resid x;
		if (grd_res_from_msg(r->res_overrides[i]->id, &x) && coral_resid_eq(&x, id) &&
		    in_u32(r->members, r->n_members, r->res_overrides[i]->node))
			return r->res_overrides[i]->node;
	}
	return owners[coral_resid_bucket(id)];
}

bool grd_committed_move(const Coral__GrdMapRecord *r, uint64_t move_id)
{
	if (move_id == 0)
		return false;
	for (size_t i = 0; i < r->n_committed_moves; i++)
		if (r->committed_moves[i] == move_id)
			return true;
	return false;
}

void grd_record_stamp(struct grd_core *c, Coral__GrdMapRecord *n, int cause, uint64_t move_id,
			 const char *detail, uint64_t at_ms)
{
	n->version = version(c) + 1;
	n->cause = (uint32_t)cause;
	n->move_id = move_id;
	n->coordinator = c->self;
	n->at_ms = at_ms;
	grd_record_set_detail(n, detail);
	n->moved_buckets = n->moved_resources = 0;
	n->moved_entries = n->moved_bytes = n->freeze_ms = 0;
	if (move_id != 0) {
		/* the last moves committed, so a node that skips a version still learns of its move */
		size_t keep = n->n_committed_moves >= GRD_RECENT_MOVES ? GRD_RECENT_MOVES - 1 : n->n_committed_moves;
		uint64_t *m = malloc((keep + 1) * sizeof(uint64_t));
		if (m) {
			if (keep)
				memcpy(m, n->committed_moves + (n->n_committed_moves - keep), keep * sizeof(uint64_t));
			m[keep] = move_id;
			free(n->committed_moves);
			n->committed_moves = m;
			n->n_committed_moves = keep + 1;
		}
	}
}

int grd_record_store(struct grd_core *c, Coral__GrdMapRecord *n, uint64_t cookie_kind)
{
	size_t len;
	uint8_t *buf = grd_record_pack(n, &len);
	if (buf == NULL)
		return CORAL_ENOMEM;
	int rc = c->ops.store(c->ops.arg, buf, len, c->rec_index, cookie_kind);
	free(buf);
	return rc;
}

/* Wall clock for records, for display only. */
uint64_t grd_wall_ms(struct grd_core *c)
{
	return c->wall_ms;
}

/* A copy of the applied record to edit into the next version (NULL: none, or no memory). The records are edited in
 * place with protobuf-c's own allocator (malloc), since they were unpacked with it and are
 * freed with grd_record_free. */
Coral__GrdMapRecord *grd_rec_edit(struct grd_core *c)
{
	return c->rec ? rec_copy(c->rec) : NULL;
}

int grd_set_members(Coral__GrdMapRecord *n, const uint32_t *m, size_t k)
{
	uint32_t *a = malloc((k + 1) * sizeof(uint32_t));
	if (a == NULL)
		return CORAL_ENOMEM;
	if (k)
		memcpy(a, m, k * sizeof(uint32_t));
	free(n->members);
	n->members = a;
	n->n_members = k;
	return 0;
}

/* Replaces, adds or (node 0) removes the bucket override of b. */
int grd_set_bucket_override(Coral__GrdMapRecord *n, uint32_t b, uint32_t node, size_t max)
{
	for (size_t i = 0; i < n->n_bucket_overrides; i++) {
		if (n->bucket_overrides[i]->bucket != b)
			continue;
		if (node) {
			n->bucket_overrides[i]->node = node;
		} else {
			free(n->bucket_overrides[i]);
			n->bucket_overrides[i] = n->bucket_overrides[--n->n_bucket_overrides];
		}
		return 0;
	}
	if (node == 0)
		return 0;
	if (n->n_bucket_overrides >= max)
		return CORAL_EFULL;
	Coral__GrdBucketOverride **p = realloc(n->bucket_overrides, (n->n_bucket_overrides + 1) * sizeof(*p));
	if (p == NULL)
		return CORAL_ENOMEM;
	n->bucket_overrides = p;
	Coral__GrdBucketOverride *o = malloc(sizeof(*o));
	if (o == NULL)
		return CORAL_ENOMEM;
	coral__grd_bucket_override__init(o);
	o->bucket = b;
	o->node = node;
	p[n->n_bucket_overrides++] = o;
	return 0;
}

int grd_set_res_override(Coral__GrdMapRecord *n, const struct coral_resid *id, uint32_t node, size_t max)
{
	for (size_t i = 0; i < n->n_res_overrides; i++) {
		struct coral_resid x;
		if (!grd_res_from_msg(n->res_overrides[i]->id, &x) || !coral_resid_eq(&x, id))
			continue;
		if (node) {
			n->res_overrides[i]->node = node;
		} else {
			free(n->res_overrides[i]->id);
			free(n->res_overrides[i]);
			n->res_overrides[i] = n->res_overrides[--n->n_res_overrides];
		}
		return 0;
	}
	if (node == 0)
		return 0;
	if (n->n_res_overrides >= max)
		return CORAL_EFULL;
	Coral__GrdResOverride **p = realloc(n->res_overrides, (n->n_res_overrides + 1) * sizeof(*p));
	if (p == NULL)
		return CORAL_ENOMEM;
	n->res_overrides = p;
	Coral__GrdResOverride *o = malloc(sizeof(*o));
	Coral__GrdRes *r = malloc(sizeof(*r));
	if (o == NULL || r == NULL) {
		free(o);
		free(r);
		return CORAL_ENOMEM;
	}
	coral__grd_res_override__init(o);
	grd_res_to_msg(id, r);
	o->id = r;
	o->node = node;
	p[n->n_res_overrides++] = o;
	return 0;
}

/* ---- applying a committed record ---------------------------------------------------- */

/* Drops the non-staged entries of bucket b whose master is no longer this node. */
static void drop_bucket(struct grd_core *c, uint32_t b)
{
	coral_grd_dir_lock(c->dir, b);
	for (struct coral_grd_entry *e = coral_grd_dir_first(c->dir, b), *next; e; e = next) {
		next = coral_grd_dir_next(c->dir, e);
		if (e->flags & CORAL_GRDE_STAGED)
			continue;
		struct coral_grd_where w;
		coral_grd_lookup(c->map, &e->id, &w);
		if (w.master != c->self) {
			coral_grd_dir_remove(c->dir, e);
			c->st.dropped_unowned++;
		}
	}
	coral_grd_dir_unlock(c->dir, b);
}

static void drop_overridden(struct grd_core *c, Coral__GrdResOverride *const *o, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct coral_resid id;
		if (grd_res_from_msg(o[i]->id, &id))
			drop_bucket(c, coral_resid_bucket(&id));
	}
}

/* After a new version: entries this node no longer masters go. Only the buckets it lost
 * and the resources whose override changed are looked at, not the whole table, so that
 * applying a version costs what changed. */
static void drop_unowned(struct grd_core *c, const Coral__GrdMapRecord *old, const Coral__GrdMapRecord *r)
{
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		if (c->prev_owner[b] == c->self && c->map->owner[b] != c->self)
			drop_bucket(c, b);
	if (old)
		drop_overridden(c, old->res_overrides, old->n_res_overrides);
	drop_overridden(c, r->res_overrides, r->n_res_overrides);
}

/* Members of old that r neither keeps nor lists as lost (lost and recovered between two
 * versions this node saw): their buckets are rebuilt all the same, from the owners it had. */
static size_t gone_members(const Coral__GrdMapRecord *old, const Coral__GrdMapRecord *r, uint32_t *gone)
{
	size_t ngone = 0;
	for (size_t i = 0; old && i < old->n_members; i++) {
		uint32_t d = old->members[i];
		bool listed = in_u32(r->members, r->n_members, d);
		for (size_t k = 0; k < r->n_lost && !listed; k++)
			listed = r->lost[k]->node == d;
		if (!listed)
			gone[ngone++] = d;
	}
	return ngone;
}

static void count_remasters(struct grd_core *c, const Coral__GrdMapRecord *r)
{
	if (r->cause < 8 && r->version > 1 &&
	    (r->moved_buckets || r->moved_resources || r->cause == CORAL_GRD_CAUSE_LEAVE)) {
		atomic_fetch_add(&c->map->remasters[r->cause], 1);
		atomic_fetch_add(&c->map->remastered_buckets, r->moved_buckets);
		atomic_fetch_add(&c->map->remastered_resources, r->moved_resources);
		atomic_fetch_add(&c->map->remaster_bytes, r->moved_bytes);
	}
}

/* Nodes lost in r and not in old (a loss is its node and incarnation) start a rebuild. */
static void new_losses(struct grd_core *c, const Coral__GrdMapRecord *old, const Coral__GrdMapRecord *r)
{
	for (size_t i = 0; i < r->n_lost; i++) {
		bool was = false;
		for (size_t k = 0; old && k < old->n_lost; k++)
			was |= old->lost[k]->node == r->lost[i]->node && old->lost[k]->incarnation == r->lost[i]->incarnation;
		if (!was)
			grd_on_new_lost(c, r->lost[i]->node, NULL, NULL);
	}
}

/* Nodes lost in r and not in old are counted in the directory before r's map is published:
 * from the moment a survivor masters a lost node's bucket, a block of it that no survivor
 * reports waits for recovery (coral_grd_loss_pending) instead of being granted from a disk
 * that may lack the lost node's committed changes. */
static void count_losses(struct grd_core *c, const Coral__GrdMapRecord *old, const Coral__GrdMapRecord *r)
{
	for (size_t i = 0; i < r->n_lost; i++) {
		uint32_t n = r->lost[i]->node;
		bool was = false;
		for (size_t k = 0; old && k < old->n_lost; k++)
			was |= old->lost[k]->node == n && old->lost[k]->incarnation == r->lost[i]->incarnation;
		if (was || n == 0 || n > CORAL_MAX_NODES)
			continue;
		struct coral_grd_loss *l = &c->dir->loss[n - 1];
		atomic_store(&l->incarnation, r->lost[i]->incarnation);
		atomic_fetch_add(&l->seq, 1);
	}
}

/* Nodes old listed as lost and r does not were marked recovered: their entries are
 * available again. */
static void recovered_losses(struct grd_core *c, const Coral__GrdMapRecord *old, const Coral__GrdMapRecord *r)
{
	for (size_t k = 0; old && k < old->n_lost; k++) {
		bool still = false;
		for (size_t i = 0; i < r->n_lost; i++)
			still |= r->lost[i]->node == old->lost[k]->node;
		if (still)
			continue;
		uint32_t n = old->lost[k]->node;
		if (n >= 1 && n <= CORAL_MAX_NODES) {
			/* smond's part, if it had one, is over: recovered, or by hand */
			struct coral_grd_loss *l = &c->dir->loss[n - 1];
			uint64_t seq = atomic_load(&l->seq);
			atomic_store(&l->released, seq);
			atomic_store(&l->done, seq);
		}
		for (uint32_t i = 0; i < c->dir->capacity; i++) {
			struct coral_grd_entry *e = coral_grd_dir_entry(c->dir, i);
			if ((e->flags & CORAL_GRDE_RECOVERY) && e->recovery_node == old->lost[k]->node) {
				coral_grd_dir_lock(c->dir, e->bucket);
				e->flags &= (uint16_t)~CORAL_GRDE_RECOVERY;
				e->recovery_node = 0;
				coral_grd_dir_touch(c->dir, e);
				coral_grd_dir_unlock(c->dir, e->bucket);
			}
		}
	}
}

/* The coordinator's move: committed by r, or overtaken by another version. */
static void move_settle(struct grd_core *c, const Coral__GrdMapRecord *r)
{
	if (c->mv.state == MV_IDLE || c->mv.dry_run)
		return;
	if (!grd_committed_move(r, c->mv.id)) {
		grd_move_abort(c, CORAL_ECONFLICT, "the map changed while the move was prepared");
		return;
	}
	Coral__GrdRemasterReply rr;
	grd_move_reply(c, &rr);
	rr.map_version = r->version;
	rr.freeze_us = r->freeze_ms * 1000;
	grd_log(c, CORAL_LOG_INFO,
		"map version %llu committed move %llu (%s): %u buckets, %u resources, %llu entries, %llu bytes, %llu ms",
		(unsigned long long)r->version, (unsigned long long)c->mv.id, coral_grd_cause_name(c->mv.cause),
		c->mv.buckets, c->mv.resources, (unsigned long long)c->mv.entries, (unsigned long long)c->mv.bytes,
		(unsigned long long)(c->now_ms - c->mv.started_ms));
	grd_remaster_answer(c, c->mv.has_origin, c->mv.origin, c->mv.origin_cookie, 0, NULL, &rr);
	grd_move_clear(&c->mv);
}

/* Publishes r's map in the SGA; 0 or a CORAL_E* code (logged). */
static int publish(struct grd_core *c, const Coral__GrdMapRecord *r, uint64_t index)
{
	struct grd_map_def d;
	struct map_scratch s;
	int rc = rec_def(r, index, &d, &s);
	memcpy(c->prev_owner, c->map->owner, CORAL_GRD_BUCKETS);
	if (rc == 0)
		rc = grd_map_publish(c->map, &d);
	scratch_free(&s);
	if (rc != 0)
		grd_log(c, CORAL_LOG_WARNING, "map version %llu cannot be published: %s", (unsigned long long)r->version,
			coral_strerror(rc));
	return rc;
}

static bool known_member(const struct grd_core *c, uint32_t id)
{
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].id == id)
			return true;
	return false;
}

/* Whether a record that decodes can be trusted (raftd's store takes what grdd writes, so a
 * record is checked against what raftd says before it is applied): REC_OK; REC_WAIT when it
 * names a node raftd's view here does not know (yet: this node's raftd may lag the leader's,
 * so it waits for a view that does, and is never applied before); REC_BAD, with why, when it
 * cannot be right: no node twice on its ring, every override naming a node of the ring,
 * every lost node a node id. */
enum { REC_OK, REC_WAIT, REC_BAD };

static int untrusted(const struct grd_core *c, const Coral__GrdMapRecord *r, char *why, size_t n)
{
	if (r->n_members == 0 || r->n_members > CORAL_MAX_NODES)
		return snprintf(why, n, "%zu members on its ring", r->n_members), REC_BAD;
	for (size_t i = 0; i < r->n_members; i++)
		if (in_u32(r->members, i, r->members[i]))
			return snprintf(why, n, "node %u is on its ring twice", r->members[i]), REC_BAD;
	for (size_t i = 0; i < r->n_bucket_overrides; i++)
		if (!in_u32(r->members, r->n_members, r->bucket_overrides[i]->node))
			return snprintf(why, n, "a bucket override names node %u, not on its ring", r->bucket_overrides[i]->node), REC_BAD;
	for (size_t i = 0; i < r->n_res_overrides; i++)
		if (!in_u32(r->members, r->n_members, r->res_overrides[i]->node))
			return snprintf(why, n, "a resource override names node %u, not on its ring", r->res_overrides[i]->node), REC_BAD;
	for (size_t i = 0; i < r->n_lost; i++)
		if (r->lost[i]->node < 1 || r->lost[i]->node > CORAL_MAX_NODES)
			return snprintf(why, n, "it lists node %u as lost", r->lost[i]->node), REC_BAD;
	for (size_t i = 0; i < r->n_members; i++)
		if (!known_member(c, r->members[i]))
			return snprintf(why, n, "node %u on its ring is not a member raftd knows", r->members[i]), REC_WAIT;
	if (r->coordinator != 0 && !known_member(c, r->coordinator))
		return snprintf(why, n, "its coordinator, node %u, is not a member raftd knows", r->coordinator), REC_WAIT;
	return REC_OK;
}

/* Keeps a record that waits for raftd's view (none yet, or one without a node it names)
 * until the view changes (grd_core_set_cluster); a newer record replaces it. */
static void hold(struct grd_core *c, const uint8_t *buf, size_t len, uint64_t index)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (copy == NULL)
		return;
	memcpy(copy, buf, len);
	free(c->held_rec);
	c->held_rec = copy;
	c->held_len = len;
	c->held_index = index;
}

void grd_core_apply(struct grd_core *c, const uint8_t *buf, size_t len, uint64_t index)
{
	c->store_read = true;
	if (buf == NULL)
		return;
	Coral__GrdMapRecord *r = grd_record_decode(buf, len);
	if (r == NULL) {
		grd_log(c, CORAL_LOG_WARNING, "the map record at index %llu cannot be decoded; ignored", (unsigned long long)index);
		return;
	}
	if (r->version <= version(c)) {
		grd_record_free(r);
		return;
	}
	if (c->nmembers == 0) {
		hold(c, buf, len, index);
		grd_record_free(r);
		return;
	}
	char why[160];
	int trust = untrusted(c, r, why, sizeof(why));
	if (trust == REC_WAIT) {
		if (c->held_rec == NULL || c->held_index != index)
			grd_log(c, CORAL_LOG_NOTICE, "map record version %llu at index %llu waits for raftd's view here: %s",
				(unsigned long long)r->version, (unsigned long long)index, why);
		hold(c, buf, len, index);
		grd_record_free(r);
		return;
	}
	if (trust == REC_BAD) {
		c->st.records_refused++;
		grd_log(c, CORAL_LOG_WARNING, "map record version %llu at index %llu refused, not applied: %s",
			(unsigned long long)r->version, (unsigned long long)index, why);
		grd_record_free(r);
		return;
	}
	count_losses(c, c->rec, r);
	if (publish(c, r, index) != 0) {
		grd_record_free(r);
		return;
	}
	Coral__GrdMapRecord *old = c->rec;
	uint32_t gone[CORAL_MAX_NODES];
	size_t ngone = gone_members(old, r, gone);
	uint8_t *old_owner = ngone ? malloc(CORAL_GRD_BUCKETS) : NULL;
	if (old_owner)
		grd_rec_owners(old, old_owner);
	c->rec = r;
	c->rec_index = index;
	grd_history_push(c, r);
	count_remasters(c, r);
	/* a node that froze for a move is released by any newer version */
	if (c->src.active && r->version > c->src.base_version)
		grd_src_unfreeze(c);
	grd_dst_settle(c, r);
	drop_unowned(c, old, r);
	new_losses(c, old, r);
	for (size_t i = 0; i < ngone && old_owner; i++)
		grd_on_new_lost(c, gone[i], old_owner, old);
	free(old_owner);
	recovered_losses(c, old, r);
	move_settle(c, r);
	if (old)
		grd_record_free(old);
}

/* grdd's core (see core.h): serving requests at a master, moving mastership, rebuilding
 * after a loss. No I/O, no clock: everything comes in through the grd_core_* calls. */
#include "core.h"
#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRD_CHUNK_ENTRIES 256
#define GRD_RETRY_MS 20
#define GRD_RESEND_MS 1000
#define GRD_REPLAN_MS 1000

struct grd_item {
	bool is_res;
	uint32_t bucket;
	struct coral_resid id;
	uint32_t to;
};

/* A current master's side of a move. */
struct grd_src {
	bool active, dry_run;
	uint64_t move_id, base_version, since_ms;
	uint32_t coordinator;
	struct grd_item *items;       /* sorted by destination */
	size_t nitems;
	size_t cursor;                /* next item to ship */
	uint32_t skip;                /* entries of items[cursor] already shipped */
	uint32_t seq;
	bool shipped;                 /* every destination has had its last chunk */
	bool abandon_sent;
	uint64_t entries, bytes;
};

/* A new master's side: what it staged, per source. */
struct grd_dst {
	uint64_t move_id, base_version;
	uint64_t done_sources;        /* bit id-1 */
	uint64_t entries[CORAL_MAX_NODES], bytes[CORAL_MAX_NODES];
	size_t staged;
	uint8_t staged_bm[CORAL_GRD_BUCKETS / 8]; /* buckets with staged entries */
};

enum grd_mv_state { MV_IDLE, MV_FREEZING, MV_COMMITTING };

struct grd_request_q {
	Coral__GrdRemasterRequest req;  /* target copied */
	char target[96];
	uint32_t origin;                /* node that asked (answer goes back there) */
	uint64_t cookie;
	int cause;
};

/* The coordinator's move. */
struct grd_move {
	enum grd_mv_state state;
	uint64_t id, base_version;
	int cause;
	bool dry_run;
	uint64_t started_ms, deadline_ms;
	uint64_t need[CORAL_MAX_NODES];   /* per source (id-1): destinations still to report */
	uint64_t sources, dests;
	Coral__GrdMapRecord *next;        /* what the commit stores */
	uint8_t *packed;
	size_t packed_len;
	uint32_t buckets, resources;
	uint64_t entries, bytes;
	bool has_origin;
	uint32_t origin;
	uint64_t origin_cookie;
	char detail[160];
};

/* A rebuild outlives map versions: it ends when every survivor has reported (or is gone),
 * never earlier, since what survivors hold is known only from their reports. */
struct grd_rebuild {
	uint64_t id;
	uint32_t lost;
	uint64_t version;
	uint64_t waiting;                 /* bit id-1: survivors yet to report */
	uint64_t asked_ms;
	uint32_t buckets;
	uint8_t *bitmap;                  /* CORAL_GRD_BUCKETS bits: the buckets rebuilt */
	struct coral_resid *res;          /* and resources (the lost node's overrides) */
	size_t nres;
};

struct grd_pending {
	bool used;
	uint64_t cookie, req_id;
	struct coral_resid id;
	int op, mode;
	uint64_t started_ms, sent_ms, wait_version, retry_at_ms;
	uint32_t master, attempts;
	bool waiting_reply;
};

struct grd_core {
	uint32_t self;
	const struct coral_grd_conf *conf;
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir, *held;
	struct grd_core_ops ops;
	uint64_t now_ms, wall_ms;
	uint64_t await_version, await_until_ms; /* a commit of ours not yet applied here */

	uint32_t leader;
	bool fenced;
	struct grd_member members[CORAL_MAX_NODES];
	size_t nmembers;

	Coral__GrdMapRecord *rec;         /* the applied record (NULL: none yet) */
	uint64_t rec_index;
	bool store_read;                  /* the store has been read once (absent or not) */

	struct grd_src src;
	struct grd_dst dst;
	struct grd_move mv;
	uint64_t replan_after_ms;
	uint64_t next_move_seq;
	bool store_busy;                  /* a leave/init/recovered commit is in flight */

	struct grd_request_q queue[GRD_QUEUE];
	size_t nqueue;

	struct grd_rebuild rebuild[CORAL_GRD_MAX_LOST];
	size_t nrebuild;

	struct grd_pending *pending;
	size_t npending_cap;
	uint64_t next_req_id;

	double tokens;
	uint64_t tokens_ms;
	uint64_t decay_ms;

	Coral__GrdHistoryItem hist[GRD_HISTORY];
	char hist_detail[GRD_HISTORY][160];
	uint32_t hist_members[GRD_HISTORY][CORAL_MAX_NODES];
	size_t hist_start, hist_len;

	struct grd_stats st;
	uint8_t *scratch_owner;           /* CORAL_GRD_BUCKETS */
	uint8_t *prev_owner;              /* the owners before the version being applied */
};

static void core_log(struct grd_core *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void core_log(struct grd_core *c, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (c->ops.log)
		c->ops.log(c->ops.arg, level, buf);
}

/* ---- small helpers ------------------------------------------------------------------ */

static void res_to_msg(const struct coral_resid *r, Coral__GrdRes *m)
{
	coral__grd_res__init(m);
	m->type = r->type;
	m->id1 = r->id1;
	m->id2 = r->id2;
}

static bool res_from_msg(const Coral__GrdRes *m, struct coral_resid *r)
{
	memset(r, 0, sizeof(*r));
	if (m == NULL || m->type > UINT16_MAX)
		return false;
	r->type = (uint16_t)m->type;
	r->id1 = m->id1;
	r->id2 = m->id2;
	return true;
}

static uint64_t bit(uint32_t node)
{
	return node >= 1 && node <= CORAL_MAX_NODES ? 1ull << (node - 1) : 0;
}

static bool member_active(const struct grd_core *c, uint32_t id)
{
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].id == id)
			return c->members[i].active;
	return false;
}

static uint64_t member_inc(const struct grd_core *c, uint32_t id)
{
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].id == id)
			return c->members[i].incarnation;
	return 0;
}

static uint64_t version(const struct grd_core *c)
{
	return c->rec ? c->rec->version : 0;
}

static bool in_u32(const uint32_t *a, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] == v)
			return true;
	return false;
}

static int send_msg(struct grd_core *c, uint32_t to, uint8_t type, const ProtobufCMessage *m)
{
	if (to == 0)
		return CORAL_ENOENT;
	size_t len;
	uint8_t *buf = grd_msg_pack(m, &len);
	if (buf == NULL)
		return CORAL_ENOMEM;
	int rc = c->ops.send(c->ops.arg, to, type, buf, len);
	free(buf);
	return rc;
}

void grd_entry_to_msg(const struct coral_grd_entry *e, Coral__GrdEntry *m, struct grd_entry_buf *b)
{
	coral__grd_entry__init(m);
	res_to_msg(&e->id, &b->id);
	m->id = &b->id;
	size_t n = 0;
	for (uint32_t node = 1; node <= CORAL_MAX_NODES; node++) {
		if (!((e->holders | e->pi) & bit(node)))
			continue;
		coral__grd_holder__init(&b->h[n]);
		b->h[n].node = node;
		b->h[n].mode = e->mode[node - 1];
		b->h[n].pi = (e->pi & bit(node)) != 0;
		b->hp[n] = &b->h[n];
		n++;
	}
	m->holders = b->hp;
	m->n_holders = n;
	for (size_t i = 0; i < e->nconv && i < CORAL_GRD_CONVQ; i++) {
		coral__grd_convert__init(&b->cv[i]);
		b->cv[i].node = e->conv[i].node;
		b->cv[i].mode = e->conv[i].mode;
		b->cvp[i] = &b->cv[i];
	}
	m->converting = b->cvp;
	m->n_converting = e->nconv;
	size_t na = 0;
	for (int i = 0; i < CORAL_GRD_AFF; i++) {
		if (e->aff[i].node == 0)
			continue;
		coral__grd_affinity__init(&b->af[na]);
		b->af[na].node = e->aff[i].node;
		b->af[na].count = e->aff[i].count;
		b->afp[na] = &b->af[na];
		na++;
	}
	m->affinity = b->afp;
	m->n_affinity = na;
	m->lvb.data = (uint8_t *)e->lvb;
	m->lvb.len = CORAL_GRD_LVB;
	m->lvb_valid = (e->flags & CORAL_GRDE_LVB) != 0;
	m->accesses = e->accesses;
	m->grants = e->grants;
	m->scn = e->scn;
	m->recovery_node = (e->flags & CORAL_GRDE_RECOVERY) ? e->recovery_node : 0;
	m->current = e->cur;
	m->gen = e->gen;
	m->disk_scn = e->disk_scn;
}

/* Copies a shipped entry's state into e (holders, queue, lvb, counters). */
static void entry_from_msg(struct coral_grd_entry *e, const Coral__GrdEntry *m)
{
	e->holders = e->pi = 0;
	memset(e->mode, 0, sizeof(e->mode));
	for (size_t i = 0; i < m->n_holders; i++) {
		const Coral__GrdHolder *h = m->holders[i];
		if (h->node < 1 || h->node > CORAL_MAX_NODES)
			continue;
		coral_grd_entry_set_mode(e, h->node, (int)h->mode);
		if (h->pi)
			e->pi |= bit(h->node);
	}
	e->nconv = 0;
	for (size_t i = 0; i < m->n_converting && i < CORAL_GRD_CONVQ; i++) {
		e->conv[i].node = (uint8_t)m->converting[i]->node;
		e->conv[i].mode = (uint8_t)m->converting[i]->mode;
		e->nconv++;
	}
	if (m->lvb.len == CORAL_GRD_LVB)
		memcpy(e->lvb, m->lvb.data, CORAL_GRD_LVB);
	if (m->lvb_valid)
		e->flags |= CORAL_GRDE_LVB;
	memset(e->aff, 0, sizeof(e->aff));
	for (size_t i = 0; i < m->n_affinity && i < CORAL_GRD_AFF; i++) {
		e->aff[i].node = m->affinity[i]->node;
		e->aff[i].count = m->affinity[i]->count;
	}
	e->accesses = m->accesses;
	e->grants = m->grants;
	e->scn = m->scn;
	/* a block's queue and operation in progress stay behind: their requesters send again to
	 * the new master (lmsd retries), which goes on from the operation number */
	if (coral_resid_is_block(&e->id)) {
		e->nconv = 0;
		e->cur = (uint8_t)(m->current <= CORAL_MAX_NODES ? m->current : 0);
		e->gen = m->gen;
		e->disk_scn = m->disk_scn;
		e->op_phase = 0;
	}
	if (m->recovery_node) {
		e->flags |= CORAL_GRDE_RECOVERY;
		e->recovery_node = (uint8_t)m->recovery_node;
	}
}

/* ---- lifecycle ----------------------------------------------------------------------- */

struct grd_core *grd_core_new(uint32_t self, const struct coral_grd_conf *conf,
			      struct coral_grd_map_sga *map, struct coral_grd_dir *dir,
			      struct coral_grd_dir *held, const struct grd_core_ops *ops)
{
	struct grd_core *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->self = self;
	c->conf = conf;
	c->map = map;
	c->dir = dir;
	c->held = held;
	c->ops = *ops;
	c->npending_cap = (size_t)conf->max_pending;
	c->pending = calloc(c->npending_cap, sizeof(*c->pending));
	c->scratch_owner = malloc(CORAL_GRD_BUCKETS);
	c->prev_owner = malloc(CORAL_GRD_BUCKETS);
	if (c->pending == NULL || c->scratch_owner == NULL || c->prev_owner == NULL) {
		grd_core_free(c);
		return NULL;
	}
	c->next_move_seq = 1;
	c->next_req_id = 1;
	return c;
}

static void move_clear(struct grd_move *mv)
{
	if (mv->next)
		grd_record_free(mv->next);
	free(mv->packed);
	memset(mv, 0, sizeof(*mv));
}

void grd_core_free(struct grd_core *c)
{
	if (c == NULL)
		return;
	if (c->rec)
		grd_record_free(c->rec);
	move_clear(&c->mv);
	for (size_t i = 0; i < c->nrebuild; i++) {
		free(c->rebuild[i].bitmap);
		free(c->rebuild[i].res);
	}
	free(c->src.items);
	free(c->pending);
	free(c->scratch_owner);
	free(c->prev_owner);
	free(c);
}

uint64_t grd_core_version(const struct grd_core *c)
{
	return version(c);
}

uint32_t grd_core_coordinator(const struct grd_core *c)
{
	return c->leader;
}

const struct grd_stats *grd_core_stats(const struct grd_core *c)
{
	return &c->st;
}

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
		if (!res_from_msg(r->lost_res_overrides[i]->id, &s->lres[d->nlost_res].id))
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
		if (!res_from_msg(r->res_overrides[i]->id, &s->res[d->nres].id))
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
static void rec_owners(const Coral__GrdMapRecord *r, uint8_t *out)
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
static uint32_t rec_master(const Coral__GrdMapRecord *r, const uint8_t *owners,
			   const struct coral_resid *id)
{
	for (size_t i = 0; i < r->n_res_overrides; i++) {
		struct coral_resid x;
		if (res_from_msg(r->res_overrides[i]->id, &x) && coral_resid_eq(&x, id) &&
		    in_u32(r->members, r->n_members, r->res_overrides[i]->node))
			return r->res_overrides[i]->node;
	}
	return owners[coral_resid_bucket(id)];
}

static bool committed_move(const Coral__GrdMapRecord *r, uint64_t move_id)
{
	if (move_id == 0)
		return false;
	for (size_t i = 0; i < r->n_committed_moves; i++)
		if (r->committed_moves[i] == move_id)
			return true;
	return false;
}

/* ---- history ------------------------------------------------------------------------- */

static void history_push(struct grd_core *c, const Coral__GrdMapRecord *r)
{
	size_t i = (c->hist_start + c->hist_len) % GRD_HISTORY;
	if (c->hist_len == GRD_HISTORY)
		c->hist_start = (c->hist_start + 1) % GRD_HISTORY;
	else
		c->hist_len++;
	Coral__GrdHistoryItem *h = &c->hist[i];
	coral__grd_history_item__init(h);
	h->version = r->version;
	h->cause = r->cause;
	h->cause_name = (char *)coral_grd_cause_name((int)r->cause);
	h->at_ms = r->at_ms;
	h->moved_buckets = r->moved_buckets;
	h->moved_resources = r->moved_resources;
	h->moved_entries = r->moved_entries;
	h->moved_bytes = r->moved_bytes;
	h->freeze_ms = r->freeze_ms;
	h->coordinator = r->coordinator;
	coral_strlcpy(c->hist_detail[i], r->detail ? r->detail : "", sizeof(c->hist_detail[i]));
	h->detail = c->hist_detail[i];
	size_t n = r->n_members < CORAL_MAX_NODES ? r->n_members : CORAL_MAX_NODES;
	if (n)
		memcpy(c->hist_members[i], r->members, n * sizeof(uint32_t));
	h->members = c->hist_members[i];
	h->n_members = n;
}

size_t grd_core_history(const struct grd_core *c, Coral__GrdHistoryItem *out, size_t max)
{
	size_t n = c->hist_len < max ? c->hist_len : max;
	for (size_t k = 0; k < n; k++)
		out[k] = c->hist[(c->hist_start + c->hist_len - n + k) % GRD_HISTORY];
	return n;
}

/* ---- serving ------------------------------------------------------------------------- */

static bool rebuilding_res(const struct grd_core *c, const struct coral_resid *id);

bool grd_core_serving(struct grd_core *c, const struct coral_resid *id)
{
	if (c->fenced || c->rec == NULL)
		return false;
	struct coral_grd_where w;
	coral_grd_lookup(c->map, id, &w);
	if (w.master != c->self || atomic_load(&c->dir->bstate[w.bucket]) != CORAL_GRDB_ACTIVE)
		return false;
	coral_grd_dir_lock(c->dir, w.bucket);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, id);
	bool ok = e == NULL ? w.lost_owner == 0 && !rebuilding_res(c, id)
			    : !(e->flags & (CORAL_GRDE_FROZEN | CORAL_GRDE_STAGED | CORAL_GRDE_RECOVERY));
	coral_grd_dir_unlock(c->dir, w.bucket);
	return ok;
}

static void reply(struct grd_core *c, uint32_t to, uint64_t req_id, int code, uint64_t retry,
		  int mode, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void reply(struct grd_core *c, uint32_t to, uint64_t req_id, int code, uint64_t retry,
		  int mode, const char *fmt, ...)
{
	char err[200] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, sizeof(err), fmt, ap);
		va_end(ap);
	}
	Coral__GrdReply r = CORAL__GRD_REPLY__INIT;
	r.req_id = req_id;
	r.code = code;
	r.error = err;
	r.map_version = version(c);
	r.retry_version = retry;
	r.master = c->self;
	r.mode = (uint32_t)mode;
	if (code == 0)
		c->st.served++;
	else if (code == CORAL_ENOTMASTER)
		c->st.not_master++;
	else if (code == CORAL_EFROZEN)
		c->st.frozen_refusals++;
	else if (code == CORAL_ERECOVERY)
		c->st.recovery_refusals++;
	else if (code == CORAL_EFULL)
		c->st.full_refusals++;
	send_msg(c, to, GRD_MSG_REPLY, (const ProtobufCMessage *)&r);
}

static void maybe_propose(struct grd_core *c, struct coral_grd_entry *e)
{
	if (!c->conf->affinity || c->leader == 0)
		return;
	uint32_t node, count, others;
	coral_grd_entry_top(e, 0, &node, &count, &others);
	if (node == 0 || node == c->self || count < (uint32_t)c->conf->affinity_threshold ||
	    (uint64_t)count < (uint64_t)others * (uint64_t)c->conf->affinity_ratio)
		return;
	uint64_t now_ns = c->now_ms * 1000000ull;
	if (e->moved_ns != 0 && now_ns - e->moved_ns < (uint64_t)c->conf->affinity_cooldown_ms * 1000000ull)
		return;
	e->moved_ns = now_ns; /* also keeps us from proposing again before the cooldown */
	Coral__GrdPropose p = CORAL__GRD_PROPOSE__INIT;
	Coral__GrdRes r;
	res_to_msg(&e->id, &r);
	p.id = &r;
	p.to = node;
	p.count = count;
	p.version = version(c);
	c->st.proposals++;
	send_msg(c, c->leader, GRD_MSG_PROPOSE, (const ProtobufCMessage *)&p);
}

/* A resource (not a whole bucket: those are marked REBUILDING) still being rebuilt here. */
static bool rebuilding_res(const struct grd_core *c, const struct coral_resid *id)
{
	for (size_t i = 0; i < c->nrebuild; i++)
		for (size_t k = 0; k < c->rebuild[i].nres; k++)
			if (coral_resid_eq(&c->rebuild[i].res[k], id))
				return true;
	return false;
}

static void on_request(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdRequest *q = msg;
	struct coral_resid id;
	if (!res_from_msg(q->id, &id) || (q->op != 1 && q->op != 2)) {
		c->st.msgs_refused++;
		return;
	}
	bool block = coral_resid_is_block(&id);
	char rs[64];
	coral_resid_format(&id, rs, sizeof(rs));
	if (c->fenced) {
		reply(c, from, q->req_id, CORAL_EFENCED, 0, 0, "node %u is fenced", c->self);
		return;
	}
	uint64_t v = version(c);
	if (q->map_version != v) {
		reply(c, from, q->req_id, CORAL_ENOTMASTER, q->map_version > v ? q->map_version : v, 0,
		      "node %u is at map version %llu, the request at %llu", c->self,
		      (unsigned long long)v, (unsigned long long)q->map_version);
		return;
	}
	struct coral_grd_where w;
	coral_grd_lookup(c->map, &id, &w);
	if (w.master != c->self) {
		reply(c, from, q->req_id, CORAL_ENOTMASTER, v, 0, "%s is mastered by node %u at version %llu",
		      rs, w.master, (unsigned long long)v);
		return;
	}
	int bs = atomic_load(&c->dir->bstate[w.bucket]);
	if (bs != CORAL_GRDB_ACTIVE) {
		reply(c, from, q->req_id, CORAL_EFROZEN, v + 1, 0, "bucket %u is %s", w.bucket,
		      bs == CORAL_GRDB_FROZEN ? "moving" : "being rebuilt");
		return;
	}
	coral_grd_dir_lock(c->dir, w.bucket);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, &id);
	if (e && (e->flags & (CORAL_GRDE_FROZEN | CORAL_GRDE_STAGED))) {
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, CORAL_EFROZEN, v + 1, 0, "%s is moving", rs);
		return;
	}
	if (e && (e->flags & CORAL_GRDE_RECOVERY)) {
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, CORAL_ERECOVERY, 0, 0,
		      "%s was held by lost node %u in a mode that may have changed it: it needs instance "
		      "recovery before it is granted", rs, e->recovery_node);
		return;
	}
	if (e == NULL && rebuilding_res(c, &id)) {
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, CORAL_EFROZEN, v, 0, "%s is being rebuilt after its master was lost", rs);
		return;
	}
	if (e == NULL && w.lost_owner != 0) {
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, CORAL_ERECOVERY, 0, 0,
		      "%s was mastered by lost node %u and no survivor holds it: it needs instance "
		      "recovery before it is granted", rs, w.lost_owner);
		return;
	}
	if (e == NULL && q->op == 2) {
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, 0, 0, 0, NULL);
		return;
	}
	if (e == NULL && (e = coral_grd_dir_insert(c->dir, &id)) == NULL) {
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, CORAL_EFULL, 0, 0,
		      "the directory of node %u is full (%u entries, all with holders): raise [grd] "
		      "directory_entries", c->self, c->dir->capacity);
		return;
	}
	coral_grd_entry_access(e, from);
	if (q->op == 2) {
		coral_grd_entry_set_mode(e, from, 0);
		e->pi &= ~bit(from);
		coral_grd_dir_touch(c->dir, e);
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, 0, 0, 0, NULL);
		return;
	}
	int want = (int)q->mode;
	if (want < 0 || want >= (block ? CORAL_BL_NMODES : CORAL_LK_NMODES)) {
		coral_grd_dir_unlock(c->dir, w.bucket);
		reply(c, from, q->req_id, CORAL_EINVAL, 0, 0, "mode %d is not a mode of %s", want, rs);
		return;
	}
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (n == from || !(e->holders & bit(n)))
			continue;
		if (!coral_grd_compatible(block, e->mode[n - 1], want)) {
			int held = e->mode[n - 1];
			coral_grd_dir_touch(c->dir, e);
			coral_grd_dir_unlock(c->dir, w.bucket);
			reply(c, from, q->req_id, CORAL_EHELD, 0, 0, "%s is held by node %u in %s", rs, n,
			      coral_grd_mode_name(block, held));
			return;
		}
	}
	coral_grd_entry_set_mode(e, from, want);
	e->grants++;
	if (from != c->self)
		maybe_propose(c, e);
	coral_grd_dir_touch(c->dir, e);
	coral_grd_dir_unlock(c->dir, w.bucket);
	reply(c, from, q->req_id, 0, 0, want, NULL);
}

/* ---- the client side ------------------------------------------------------------------ */

static void pending_send(struct grd_core *c, struct grd_pending *p)
{
	struct coral_grd_where w;
	coral_grd_lookup(c->map, &p->id, &w);
	p->attempts++;
	p->sent_ms = c->now_ms;
	if (w.master == 0) {
		p->waiting_reply = false;
		p->retry_at_ms = c->now_ms + GRD_RETRY_MS;
		return;
	}
	p->master = w.master;
	p->req_id = c->next_req_id++;
	p->waiting_reply = true;
	Coral__GrdRequest q = CORAL__GRD_REQUEST__INIT;
	Coral__GrdRes r;
	res_to_msg(&p->id, &r);
	q.req_id = p->req_id;
	q.map_version = w.version;
	q.id = &r;
	q.op = (uint32_t)p->op;
	q.mode = (uint32_t)p->mode;
	send_msg(c, w.master, GRD_MSG_REQUEST, (const ProtobufCMessage *)&q);
}

static void pending_done(struct grd_core *c, struct grd_pending *p, int code, const char *err,
			 uint32_t master, uint64_t ver, int mode)
{
	struct grd_answer a = {master, ver, mode, p->attempts, (c->now_ms - p->started_ms) * 1000};
	if (code == 0)
		c->st.granted++;
	else
		c->st.refused++;
	p->used = false;
	c->ops.answer(c->ops.arg, p->cookie, code, err, &a);
}

static int held_record(struct grd_core *c, const struct coral_resid *id, int op, int mode);

int grd_core_lock(struct grd_core *c, const struct coral_resid *id, int op, int mode, uint64_t cookie)
{
	c->st.requests++;
	/* one request per resource at a time from a node: answers of overlapping requests
	 * could otherwise be applied to the held table in another order than the master's */
	for (size_t i = 0; i < c->npending_cap; i++)
		if (c->pending[i].used && coral_resid_eq(&c->pending[i].id, id))
			return CORAL_EBUSY;
	/* a release stops the use first: the held table never claims more than the master knows */
	if (op == 2)
		held_record(c, id, 2, 0);
	for (size_t i = 0; i < c->npending_cap; i++) {
		struct grd_pending *p = &c->pending[i];
		if (p->used)
			continue;
		memset(p, 0, sizeof(*p));
		p->used = true;
		p->cookie = cookie;
		p->id = *id;
		p->op = op;
		p->mode = mode;
		p->started_ms = c->now_ms;
		pending_send(c, p);
		return 0;
	}
	return CORAL_EBUSY;
}

/* Keeps this node's own table of what it holds: reported to a new master after a loss. */
static int held_record(struct grd_core *c, const struct coral_resid *id, int op, int mode)
{
	uint32_t b = coral_resid_bucket(id);
	coral_grd_dir_lock(c->held, b);
	struct coral_grd_entry *e = coral_grd_dir_find(c->held, id);
	int rc = 0;
	if (op == 2) {
		if (e)
			coral_grd_dir_remove(c->held, e);
	} else {
		if (e == NULL)
			e = coral_grd_dir_insert(c->held, id);
		if (e == NULL) {
			rc = CORAL_EFULL;
		} else {
			coral_grd_entry_set_mode(e, c->self, mode);
			coral_grd_dir_touch(c->held, e);
		}
	}
	coral_grd_dir_unlock(c->held, b);
	return rc;
}

static void on_reply(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdReply *r = msg;
	struct grd_pending *p = NULL;
	for (size_t i = 0; i < c->npending_cap; i++)
		if (c->pending[i].used && c->pending[i].waiting_reply && c->pending[i].req_id == r->req_id) {
			p = &c->pending[i];
			break;
		}
	if (p == NULL || from != p->master)
		return; /* late: an earlier attempt's answer */
	p->waiting_reply = false;
	if (r->code == 0) {
		int rc = held_record(c, &p->id, p->op, (int)r->mode);
		if (rc != 0) {
			/* granted but not recordable: give it back rather than hold it unreported */
			Coral__GrdRequest q = CORAL__GRD_REQUEST__INIT;
			Coral__GrdRes rr;
			res_to_msg(&p->id, &rr);
			q.req_id = 0;
			q.map_version = r->map_version;
			q.id = &rr;
			q.op = 2;
			send_msg(c, from, GRD_MSG_REQUEST, (const ProtobufCMessage *)&q);
			pending_done(c, p, rc, "this node's table of held resources is full: raise [grd] held_entries",
				     from, r->map_version, 0);
			return;
		}
		pending_done(c, p, 0, NULL, from, r->map_version, (int)r->mode);
		return;
	}
	if (r->code == CORAL_ENOTMASTER || r->code == CORAL_EFROZEN) {
		c->st.retried++;
		p->wait_version = r->retry_version;
		p->retry_at_ms = c->now_ms + GRD_RETRY_MS;
		return;
	}
	pending_done(c, p, r->code, r->error, from, r->map_version, 0);
}

static void pending_tick(struct grd_core *c)
{
	for (size_t i = 0; i < c->npending_cap; i++) {
		struct grd_pending *p = &c->pending[i];
		if (!p->used)
			continue;
		if (c->now_ms - p->started_ms >= (uint64_t)c->conf->request_timeout_ms) {
			char err[160];
			snprintf(err, sizeof(err), "no master answered within request_timeout_ms (%lld ms, %u attempts, map version %llu)",
				 (long long)c->conf->request_timeout_ms, p->attempts,
				 (unsigned long long)version(c));
			pending_done(c, p, CORAL_ETIMEDOUT, err, 0, version(c), 0);
			continue;
		}
		if (p->waiting_reply) {
			if (c->now_ms - p->sent_ms >= GRD_RESEND_MS)
				pending_send(c, p); /* lost or late: ask again (acquire and release are idempotent) */
			continue;
		}
		/* retry once the map has reached the version the master named, or after a longer
		 * wait if it has not (the master may be the one behind) */
		if (c->now_ms >= p->retry_at_ms &&
		    (version(c) >= p->wait_version || c->now_ms >= p->retry_at_ms + 10 * GRD_RETRY_MS))
			pending_send(c, p);
	}
}

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
	send_msg(c, coord, GRD_MSG_READY, (const ProtobufCMessage *)&r);
}

static void src_unfreeze(struct grd_core *c)
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

static void src_pump(struct grd_core *c);
static void coordinate(struct grd_core *c);

static void on_freeze(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdFreeze *f = msg;
	if (f->coordinator != from) {
		c->st.msgs_refused++;
		return;
	}
	if (f->dry_run) {
		/* count what would move, per destination, without freezing */
		uint64_t entries = 0, bytes = 0;
		for (size_t i = 0; i < f->n_items; i++) {
			const Coral__GrdMoveItem *it = f->items[i];
			struct coral_resid id;
			bool is_res = it->is_res && res_from_msg(it->id, &id);
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
		return;
	}
	if (f->base_version != version(c)) {
		char err[128];
		snprintf(err, sizeof(err), "node %u is at map version %llu, the move at %llu", c->self,
			 (unsigned long long)version(c), (unsigned long long)f->base_version);
		send_ready(c, from, f->move_id, c->self, 0, CORAL_ENOTMASTER, err, 0, 0);
		return;
	}
	for (size_t i = 0; i < f->n_items; i++) {
		struct coral_resid id;
		const Coral__GrdMoveItem *it = f->items[i];
		uint32_t b = it->is_res && res_from_msg(it->id, &id) ? coral_resid_bucket(&id) : it->bucket % CORAL_GRD_BUCKETS;
		if (atomic_load(&c->dir->bstate[b]) == CORAL_GRDB_REBUILDING || (it->is_res && rebuilding_res(c, &id))) {
			char err[128];
			snprintf(err, sizeof(err), "node %u is still rebuilding bucket %u after a loss", c->self, b);
			send_ready(c, from, f->move_id, c->self, 0, CORAL_EBUSY, err, 0, 0);
			return;
		}
	}
	if (c->src.active) {
		if (c->src.move_id == f->move_id)
			return; /* a duplicate */
		char err[128];
		snprintf(err, sizeof(err), "node %u is still frozen for move %llu", c->self,
			 (unsigned long long)c->src.move_id);
		send_ready(c, from, f->move_id, c->self, 0, CORAL_EBUSY, err, 0, 0);
		return;
	}
	struct grd_src *s = &c->src;
	s->items = calloc(f->n_items + 1, sizeof(*s->items));
	if (s->items == NULL) {
		send_ready(c, from, f->move_id, c->self, 0, CORAL_ENOMEM, "out of memory", 0, 0);
		return;
	}
	for (size_t i = 0; i < f->n_items; i++) {
		const Coral__GrdMoveItem *it = f->items[i];
		struct grd_item *x = &s->items[s->nitems];
		x->to = it->to;
		x->is_res = it->is_res;
		if (it->is_res) {
			if (!res_from_msg(it->id, &x->id))
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
	s->active = true;
	s->move_id = f->move_id;
	s->base_version = f->base_version;
	s->coordinator = from;
	s->since_ms = c->now_ms;
	/* freeze only what moves: the bucket state first, so no new request starts on it */
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
			/* an entry marks the resource frozen even if nobody holds it yet */
			struct coral_grd_entry *e = coral_grd_dir_insert(c->dir, &it->id);
			if (e) {
				e->flags |= CORAL_GRDE_FROZEN | CORAL_GRDE_MARK;
				coral_grd_dir_touch(c->dir, e);
			}
		}
		coral_grd_dir_unlock(c->dir, it->bucket);
	}
	core_log(c, CORAL_LOG_INFO, "move %llu: froze %zu items at version %llu for coordinator %u",
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
static void src_pump(struct grd_core *c)
{
	struct grd_src *s = &c->src;
	if (!s->active || s->shipped)
		return;
	double rate = (double)c->conf->remaster_bandwidth;
	double burst = rate / 10 > 65536 ? rate / 10 : 65536;
	if (c->tokens_ms == 0)
		c->tokens_ms = c->now_ms;
	c->tokens += rate * (double)(c->now_ms - c->tokens_ms) / 1000.0;
	c->tokens_ms = c->now_ms;
	if (c->tokens > burst)
		c->tokens = burst;
	while (c->tokens > 0 && !s->shipped) {
		uint32_t to = s->cursor < s->nitems ? s->items[s->cursor].to : 0;
		Coral__GrdEntry *ents = calloc(GRD_CHUNK_ENTRIES, sizeof(*ents));
		Coral__GrdEntry **entp = calloc(GRD_CHUNK_ENTRIES, sizeof(*entp));
		struct grd_entry_buf *bufs = calloc(GRD_CHUNK_ENTRIES, sizeof(*bufs));
		if (!ents || !entp || !bufs) {
			free(ents); free(entp); free(bufs);
			return;
		}
		size_t n = 0;
		bool last = false, wait = false;
		/* entries are copied out under the latch; a frozen bucket does not change, once the
		 * block operations that were under way when it froze are over */
		while (n < GRD_CHUNK_ENTRIES && s->cursor < s->nitems && s->items[s->cursor].to == to) {
			struct grd_item *it = &s->items[s->cursor];
			coral_grd_dir_lock(c->dir, it->bucket);
			if (s->skip == 0 && item_busy(c, it)) {
				coral_grd_dir_unlock(c->dir, it->bucket);
				wait = true;
				break;
			}
			uint32_t k = 0;
			struct coral_grd_entry *e = coral_grd_dir_first(c->dir, it->bucket);
			for (; e && n < GRD_CHUNK_ENTRIES; e = coral_grd_dir_next(c->dir, e)) {
				if (it->is_res && !coral_resid_eq(&e->id, &it->id))
					continue;
				if (e->flags & (CORAL_GRDE_STAGED | CORAL_GRDE_MARK))
					continue;
				if (k++ < s->skip)
					continue;
				grd_entry_to_msg(e, &ents[n], &bufs[n]);
				/* the entry's lvb pointer refers to the SGA; pack happens before unlock */
				entp[n] = &ents[n];
				n++;
				s->skip++;
			}
			bool done = e == NULL;
			if (done) {
				s->cursor++;
				s->skip = 0;
			}
			if (!done || n == GRD_CHUNK_ENTRIES) {
				/* pack now while the latch protects the entries we point into */
				coral_grd_dir_unlock(c->dir, it->bucket);
				break;
			}
			coral_grd_dir_unlock(c->dir, it->bucket);
		}
		if (wait && n == 0) {
			/* the tick tries again */
			free(ents); free(entp); free(bufs);
			return;
		}
		if (s->cursor >= s->nitems || s->items[s->cursor].to != to)
			last = true;
		Coral__GrdShip sh = CORAL__GRD_SHIP__INIT;
		sh.move_id = s->move_id;
		sh.base_version = s->base_version;
		sh.coordinator = s->coordinator;
		sh.seq = s->seq++;
		sh.last = last;
		sh.entries = entp;
		sh.n_entries = n;
		size_t len;
		uint8_t *buf = grd_msg_pack(&sh.base, &len);
		if (buf) {
			if (to != 0)
				c->ops.send(c->ops.arg, to, GRD_MSG_SHIP, buf, len);
			free(buf);
		}
		s->entries += n;
		s->bytes += len;
		c->st.shipped_entries += n;
		c->st.shipped_bytes += len;
		c->tokens -= (double)len;
		free(ents); free(entp); free(bufs);
		if (s->cursor >= s->nitems)
			s->shipped = true;
	}
}

static void on_ship(struct grd_core *c, uint32_t from, const void *msg)
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
		if (!res_from_msg(sh->entries[i]->id, &id))
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
		entry_from_msg(e, sh->entries[i]);
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
static void dst_settle(struct grd_core *c, const Coral__GrdMapRecord *r)
{
	struct grd_dst *d = &c->dst;
	if (d->staged == 0)
		return;
	bool committed = committed_move(r, d->move_id);
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

/* ---- the coordinator ------------------------------------------------------------------ */

static uint64_t new_move_id(struct grd_core *c)
{
	/* unique across coordinators: the node id in the top bits */
	return ((uint64_t)c->self << 48) | ((version(c) & 0xffffff) << 24) | (c->next_move_seq++ & 0xffffff);
}

static void remaster_answer(struct grd_core *c, bool has_origin, uint32_t origin, uint64_t cookie,
			    int code, const char *err, const Coral__GrdRemasterReply *r)
{
	if (!has_origin || origin == 0)
		return;
	if (origin == c->self) {
		c->ops.remastered(c->ops.arg, cookie, code, err, r);
		return;
	}
	Coral__GrdRemasterAns a = CORAL__GRD_REMASTER_ANS__INIT;
	a.cookie = cookie;
	a.code = code;
	a.error = (char *)(err ? err : "");
	a.reply = (Coral__GrdRemasterReply *)r;
	send_msg(c, origin, GRD_MSG_REMASTER_ANS, (const ProtobufCMessage *)&a);
}

static void move_reply(struct grd_core *c, Coral__GrdRemasterReply *r)
{
	coral__grd_remaster_reply__init(r);
	r->move_id = c->mv.id;
	r->buckets = c->mv.buckets;
	r->resources = c->mv.resources;
	r->entries = c->mv.entries;
	r->bytes = c->mv.bytes;
	r->elapsed_us = (c->now_ms - c->mv.started_ms) * 1000;
	r->detail = c->mv.detail;
}

static void move_abort(struct grd_core *c, int code, const char *why)
{
	struct grd_move *mv = &c->mv;
	if (mv->state == MV_IDLE)
		return;
	Coral__GrdAbort a = CORAL__GRD_ABORT__INIT;
	a.move_id = mv->id;
	a.reason = (char *)why;
	if (!mv->dry_run) {
		uint64_t notify = mv->sources | mv->dests;
		for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
			if (notify & bit(n))
				send_msg(c, n, GRD_MSG_ABORT, (const ProtobufCMessage *)&a);
		if (code == CORAL_ECANCELED)
			atomic_fetch_add(&c->map->moves_cancelled, 1);
		else
			atomic_fetch_add(&c->map->moves_failed, 1);
	}
	core_log(c, CORAL_LOG_NOTICE, "move %llu (%s) abandoned: %s", (unsigned long long)mv->id,
	     coral_grd_cause_name(mv->cause), why);
	Coral__GrdRemasterReply r;
	move_reply(c, &r);
	remaster_answer(c, mv->has_origin, mv->origin, mv->origin_cookie, code, why, &r);
	move_clear(mv);
	c->replan_after_ms = c->now_ms + GRD_REPLAN_MS;
}

static void record_stamp(struct grd_core *c, Coral__GrdMapRecord *n, int cause, uint64_t move_id,
			 const char *detail, uint64_t wall_ms)
{
	n->version = version(c) + 1;
	n->cause = (uint32_t)cause;
	n->move_id = move_id;
	n->coordinator = c->self;
	n->at_ms = wall_ms;
	free(n->detail);
	n->detail = strdup(detail ? detail : "");
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

static int record_store(struct grd_core *c, Coral__GrdMapRecord *n, uint64_t cookie_kind)
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
static uint64_t wall_ms(struct grd_core *c)
{
	return c->wall_ms;
}

static void move_commit(struct grd_core *c)
{
	struct grd_move *mv = &c->mv;
	if (mv->dry_run) {
		Coral__GrdRemasterReply r;
		move_reply(c, &r);
		remaster_answer(c, mv->has_origin, mv->origin, mv->origin_cookie, 0, NULL, &r);
		move_clear(mv);
		return;
	}
	mv->next->moved_buckets = mv->buckets;
	mv->next->moved_resources = mv->resources;
	mv->next->moved_entries = mv->entries;
	mv->next->moved_bytes = mv->bytes;
	mv->next->freeze_ms = c->now_ms - mv->started_ms;
	mv->state = MV_COMMITTING;
	if (record_store(c, mv->next, GRD_STORE_MOVE) != 0)
		move_abort(c, CORAL_ECONN, "the map could not be sent to raftd");
}

static void on_ready(struct grd_core *c, uint32_t from, const void *msg)
{
	(void)from;
	const Coral__GrdReady *r = msg;
	struct grd_move *mv = &c->mv;
	if (mv->state != MV_FREEZING || r->move_id != mv->id)
		return;
	if (r->code != 0) {
		char why[256];
		snprintf(why, sizeof(why), "node %u: %s", r->dest ? r->dest : r->source, r->error);
		move_abort(c, r->code, why);
		return;
	}
	if (r->source < 1 || r->source > CORAL_MAX_NODES)
		return;
	uint64_t need = mv->dry_run ? 0 : bit(r->dest);
	if (mv->dry_run) {
		if (!(mv->sources & bit(r->source)))
			return;
		mv->sources &= ~bit(r->source);
	} else {
		if (!(mv->need[r->source - 1] & need))
			return;
		mv->need[r->source - 1] &= ~need;
	}
	mv->entries += r->entries;
	mv->bytes += r->bytes;
	for (uint32_t n = 0; n < CORAL_MAX_NODES; n++)
		if (mv->need[n])
			return;
	if (mv->dry_run && mv->sources)
		return;
	move_commit(c);
}

/* Starts a move from the current record to `next` (members/overrides edited). */
static void move_start(struct grd_core *c, Coral__GrdMapRecord *next, int cause, bool dry_run,
		       bool has_origin, uint32_t origin, uint64_t cookie, const char *detail)
{
	struct grd_move *mv = &c->mv;
	uint8_t *newo = malloc(CORAL_GRD_BUCKETS);
	if (newo == NULL) {
		grd_record_free(next);
		remaster_answer(c, has_origin, origin, cookie, CORAL_ENOMEM, "out of memory", NULL);
		return;
	}
	rec_owners(c->rec, c->scratch_owner);
	rec_owners(next, newo);
	/* per source, the items it gives away */
	Coral__GrdMoveItem **items[CORAL_MAX_NODES] = {0};
	size_t nitems[CORAL_MAX_NODES] = {0}, cap[CORAL_MAX_NODES] = {0};
	Coral__GrdRes *resv = calloc(next->n_res_overrides + c->rec->n_res_overrides + 1, sizeof(*resv));
	size_t nresv = 0;
	memset(mv, 0, sizeof(*mv));
	mv->id = new_move_id(c);
	mv->base_version = version(c);
	mv->cause = cause;
	mv->dry_run = dry_run;
	mv->started_ms = c->now_ms;
	mv->deadline_ms = c->now_ms + (uint64_t)c->conf->freeze_timeout_ms;
	mv->has_origin = has_origin;
	mv->origin = origin;
	mv->origin_cookie = cookie;
	coral_strlcpy(mv->detail, detail, sizeof(mv->detail));
	bool oom = resv == NULL;
#define ADD_ITEM(src, fill)                                                                   \
	do {                                                                                  \
		uint32_t s_ = (src) - 1;                                                      \
		if (nitems[s_] == cap[s_]) {                                                  \
			size_t nc_ = cap[s_] ? cap[s_] * 2 : 64;                              \
			Coral__GrdMoveItem **p_ = realloc(items[s_], nc_ * sizeof(*p_));      \
			if (p_ == NULL) { oom = true; break; }                                \
			items[s_] = p_;                                                       \
			cap[s_] = nc_;                                                        \
		}                                                                             \
		Coral__GrdMoveItem *it_ = calloc(1, sizeof(*it_));                            \
		if (it_ == NULL) { oom = true; break; }                                       \
		coral__grd_move_item__init(it_);                                              \
		fill;                                                                         \
		items[s_][nitems[s_]++] = it_;                                                \
	} while (0)
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS && !oom; b++) {
		uint32_t from = c->scratch_owner[b], to = newo[b];
		if (from == to || from == 0 || to == 0 || !member_active(c, from))
			continue;
		ADD_ITEM(from, (it_->bucket = b, it_->to = to));
		mv->buckets++;
	}
	/* resources whose master changes through an override */
	for (int pass = 0; pass < 2 && !oom; pass++) {
		const Coral__GrdMapRecord *r = pass == 0 ? next : c->rec;
		for (size_t i = 0; i < r->n_res_overrides && !oom; i++) {
			struct coral_resid id;
			if (!res_from_msg(r->res_overrides[i]->id, &id))
				continue;
			uint32_t from = rec_master(c->rec, c->scratch_owner, &id);
			uint32_t to = rec_master(next, newo, &id);
			if (from == to || from == 0 || to == 0 || !member_active(c, from))
				continue;
			bool dup = false;
			for (size_t k = 0; k < nresv; k++) {
				struct coral_resid x;
				res_from_msg(&resv[k], &x);
				dup |= coral_resid_eq(&x, &id);
			}
			if (dup)
				continue;
			res_to_msg(&id, &resv[nresv]);
			Coral__GrdRes *rp = &resv[nresv++];
			ADD_ITEM(from, (it_->is_res = true, it_->id = rp, it_->to = to));
			mv->resources++;
		}
	}
#undef ADD_ITEM
	free(newo);
	if (oom) {
		for (uint32_t n = 0; n < CORAL_MAX_NODES; n++) {
			for (size_t i = 0; i < nitems[n]; i++)
				free(items[n][i]);
			free(items[n]);
		}
		free(resv);
		grd_record_free(next);
		memset(mv, 0, sizeof(*mv));
		remaster_answer(c, has_origin, origin, cookie, CORAL_ENOMEM, "out of memory", NULL);
		return;
	}
	mv->next = next;
	record_stamp(c, next, cause, mv->id, detail, wall_ms(c));
	mv->state = MV_FREEZING;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (nitems[n - 1] == 0)
			continue;
		mv->sources |= bit(n);
		for (size_t i = 0; i < nitems[n - 1]; i++)
			mv->need[n - 1] |= bit(items[n - 1][i]->to);
		mv->dests |= mv->need[n - 1];
	}
	/* send after the bookkeeping: a freeze sent to this node is delivered back later */
	uint64_t unreachable = 0;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++) {
		if (nitems[n - 1] == 0)
			continue;
		Coral__GrdFreeze f = CORAL__GRD_FREEZE__INIT;
		f.move_id = mv->id;
		f.base_version = mv->base_version;
		f.coordinator = c->self;
		f.items = items[n - 1];
		f.n_items = nitems[n - 1];
		f.dry_run = dry_run;
		if (send_msg(c, n, GRD_MSG_FREEZE, (const ProtobufCMessage *)&f) != 0)
			unreachable |= bit(n);
		for (size_t i = 0; i < nitems[n - 1]; i++)
			free(items[n - 1][i]);
		free(items[n - 1]);
	}
	free(resv);
	if (dry_run)
		memset(mv->need, 0, sizeof(mv->need));
	core_log(c, CORAL_LOG_INFO, "move %llu (%s%s): %u buckets, %u resources from version %llu: %s",
	     (unsigned long long)mv->id, coral_grd_cause_name(cause), dry_run ? ", dry run" : "",
	     mv->buckets, mv->resources, (unsigned long long)mv->base_version, detail);
	if (unreachable) {
		char why[96];
		snprintf(why, sizeof(why), "the freeze could not be sent to every current master");
		move_abort(c, CORAL_ENOTCONN, why);
		return;
	}
	if (mv->sources == 0) /* nothing held anywhere moves: commit (or answer) at once */
		move_commit(c);
}

/* An edited copy of the current record, or NULL. */
static Coral__GrdMapRecord *rec_edit(struct grd_core *c)
{
	return c->rec ? rec_copy(c->rec) : NULL;
}

static int set_members(Coral__GrdMapRecord *n, const uint32_t *m, size_t k)
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
static int set_bucket_override(Coral__GrdMapRecord *n, uint32_t b, uint32_t node, size_t max)
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

static int set_res_override(Coral__GrdMapRecord *n, const struct coral_resid *id, uint32_t node, size_t max)
{
	for (size_t i = 0; i < n->n_res_overrides; i++) {
		struct coral_resid x;
		if (!res_from_msg(n->res_overrides[i]->id, &x) || !coral_resid_eq(&x, id))
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
	res_to_msg(id, r);
	o->id = r;
	o->node = node;
	p[n->n_res_overrides++] = o;
	return 0;
}

/* The records are edited in place with protobuf-c's own allocator (malloc), since they were
 * unpacked with it and are freed with free_unpacked. */

static void start_request(struct grd_core *c, struct grd_request_q *q)
{
	const Coral__GrdRemasterRequest *req = &q->req;
	char err[256];
	if (c->rec == NULL) {
		remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOTRUNNING, "no map has been agreed yet", NULL);
		return;
	}
	if (req->recovered) {
		Coral__GrdMapRecord *n = rec_edit(c);
		bool found = false;
		/* every entry of the node (it may have been lost more than once), keeping the
		 * order: a later loss wins the buckets two lost nodes owned in turn */
		size_t kept = 0;
		for (size_t i = 0; n && i < n->n_lost; i++) {
			if (n->lost[i]->node == req->node) {
				grd_msg_free(n->lost[i]);
				found = true;
			} else {
				n->lost[kept++] = n->lost[i];
			}
		}
		if (n)
			n->n_lost = kept;
		if (n && found) {
			size_t k = 0;
			for (size_t i = 0; i < n->n_lost_bucket_overrides; i++) {
				if (n->lost_bucket_overrides[i]->node == req->node)
					free(n->lost_bucket_overrides[i]);
				else
					n->lost_bucket_overrides[k++] = n->lost_bucket_overrides[i];
			}
			n->n_lost_bucket_overrides = k;
			k = 0;
			for (size_t i = 0; i < n->n_lost_res_overrides; i++) {
				if (n->lost_res_overrides[i]->node == req->node) {
					free(n->lost_res_overrides[i]->id);
					free(n->lost_res_overrides[i]);
				} else {
					n->lost_res_overrides[k++] = n->lost_res_overrides[i];
				}
			}
			n->n_lost_res_overrides = k;
		}
		if (!n || !found) {
			if (n)
				grd_record_free(n);
			snprintf(err, sizeof(err), "node %u is not listed as lost at map version %llu", req->node,
				 (unsigned long long)version(c));
			remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOENT, err, NULL);
			return;
		}
		snprintf(err, sizeof(err), "node %u marked recovered", req->node);
		move_start(c, n, CORAL_GRD_CAUSE_RECOVERED, false, true, q->origin, q->cookie, err);
		return;
	}
	if (!in_u32(c->rec->members, c->rec->n_members, req->node) || !member_active(c, req->node)) {
		snprintf(err, sizeof(err), "node %u is not an active member of map version %llu", req->node,
			 (unsigned long long)version(c));
		remaster_answer(c, true, q->origin, q->cookie, CORAL_EINVAL, err, NULL);
		return;
	}
	Coral__GrdMapRecord *n = rec_edit(c);
	if (n == NULL) {
		remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOMEM, "out of memory", NULL);
		return;
	}
	struct coral_resid id;
	int64_t bucket;
	int rc;
	rec_owners(c->rec, c->scratch_owner);
	if (coral_parse_int(q->target, &bucket)) {
		if (bucket < 0 || bucket >= (int64_t)CORAL_GRD_BUCKETS) {
			grd_record_free(n);
			snprintf(err, sizeof(err), "bucket %lld is out of range 0-%u", (long long)bucket, CORAL_GRD_BUCKETS - 1);
			remaster_answer(c, true, q->origin, q->cookie, CORAL_EINVAL, err, NULL);
			return;
		}
		/* an override equal to what the ring gives is no override: drop it */
		uint8_t *ring = malloc(CORAL_GRD_BUCKETS);
		if (ring == NULL) {
			grd_record_free(n);
			remaster_answer(c, true, q->origin, q->cookie, CORAL_ENOMEM, "out of memory", NULL);
			return;
		}
		grd_map_compute(n->members, n->n_members, NULL, 0, ring);
		if (c->scratch_owner[bucket] == req->node) {
			free(ring);
			grd_record_free(n);
			Coral__GrdRemasterReply r = CORAL__GRD_REMASTER_REPLY__INIT;
			snprintf(err, sizeof(err), "bucket %lld is already mastered by node %u", (long long)bucket, req->node);
			r.map_version = version(c);
			r.detail = err;
			remaster_answer(c, true, q->origin, q->cookie, 0, NULL, &r);
			return;
		}
		rc = set_bucket_override(n, (uint32_t)bucket, ring[bucket] == req->node ? 0 : req->node,
					 (size_t)c->conf->max_overrides);
		free(ring);
		snprintf(err, sizeof(err), "bucket %lld from node %u to node %u", (long long)bucket,
			 c->scratch_owner[bucket], req->node);
	} else if (coral_resid_parse(q->target, &id, err, sizeof(err)) == 0) {
		uint32_t bo = c->scratch_owner[coral_resid_bucket(&id)];
		uint32_t now = rec_master(c->rec, c->scratch_owner, &id);
		if (now == req->node) {
			grd_record_free(n);
			Coral__GrdRemasterReply r = CORAL__GRD_REMASTER_REPLY__INIT;
			snprintf(err, sizeof(err), "%s is already mastered by node %u", q->target, now);
			r.map_version = version(c);
			r.detail = err;
			remaster_answer(c, true, q->origin, q->cookie, 0, NULL, &r);
			return;
		}
		rc = set_res_override(n, &id, bo == req->node ? 0 : req->node, (size_t)c->conf->max_overrides);
		snprintf(err, sizeof(err), "%s from node %u to node %u", q->target, now, req->node);
	} else {
		grd_record_free(n);
		remaster_answer(c, true, q->origin, q->cookie, CORAL_EINVAL, err, NULL);
		return;
	}
	if (rc != 0) {
		grd_record_free(n);
		snprintf(err, sizeof(err), rc == CORAL_EFULL ? "the map already carries max_overrides (%lld) overrides of that kind"
							     : "out of memory", (long long)c->conf->max_overrides);
		remaster_answer(c, true, q->origin, q->cookie, rc, err, NULL);
		return;
	}
	move_start(c, n, q->cause, req->dry_run, true, q->origin, q->cookie, err);
}

static void enqueue_request(struct grd_core *c, const Coral__GrdRemasterRequest *req, uint32_t origin,
			    uint64_t cookie, int cause)
{
	if (req->cancel) {
		if (c->mv.state == MV_FREEZING) {
			char why[96];
			snprintf(why, sizeof(why), "cancelled by an operator on node %u", origin);
			uint64_t id = c->mv.id;
			move_abort(c, CORAL_ECANCELED, why);
			Coral__GrdRemasterReply r = CORAL__GRD_REMASTER_REPLY__INIT;
			r.move_id = id;
			r.detail = why;
			remaster_answer(c, true, origin, cookie, 0, NULL, &r);
		} else {
			remaster_answer(c, true, origin, cookie, c->mv.state == MV_COMMITTING ? CORAL_EBUSY : CORAL_ENOENT,
					c->mv.state == MV_COMMITTING ? "the move is being committed and can no longer be cancelled"
								     : "no move is in flight", NULL);
		}
		return;
	}
	if (c->nqueue >= GRD_QUEUE) {
		remaster_answer(c, true, origin, cookie, CORAL_EBUSY, "the remaster queue is full", NULL);
		return;
	}
	struct grd_request_q *q = &c->queue[c->nqueue++];
	memset(q, 0, sizeof(*q));
	q->req = *req;
	coral_strlcpy(q->target, req->target ? req->target : "", sizeof(q->target));
	q->req.target = q->target;
	q->origin = origin;
	q->cookie = cookie;
	q->cause = cause;
	coordinate(c); /* start it now if nothing else is in flight, not at the next tick */
}

void grd_core_remaster(struct grd_core *c, const Coral__GrdRemasterRequest *req, uint64_t cookie)
{
	if (c->leader == 0) {
		c->ops.remastered(c->ops.arg, cookie, CORAL_ENOTLEADER, "no Raft leader, so no coordinator: retry", NULL);
		return;
	}
	if (c->leader != c->self) {
		Coral__GrdRemasterFwd f = CORAL__GRD_REMASTER_FWD__INIT;
		f.cookie = cookie;
		f.req = (Coral__GrdRemasterRequest *)req;
		send_msg(c, c->leader, GRD_MSG_REMASTER_FWD, (const ProtobufCMessage *)&f);
		return;
	}
	enqueue_request(c, req, c->self, cookie, CORAL_GRD_CAUSE_MANUAL);
}

static void on_propose(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdPropose *p = msg;
	(void)from;
	if (c->leader != c->self || p->version != version(c) || c->nqueue >= GRD_QUEUE / 2)
		return;
	char target[96];
	struct coral_resid id;
	if (!res_from_msg(p->id, &id))
		return;
	coral_resid_format(&id, target, sizeof(target));
	for (size_t i = 0; i < c->nqueue; i++)
		if (strcmp(c->queue[i].target, target) == 0)
			return;
	Coral__GrdRemasterRequest req = CORAL__GRD_REMASTER_REQUEST__INIT;
	req.target = target;
	req.node = p->to;
	enqueue_request(c, &req, 0, 0, CORAL_GRD_CAUSE_AFFINITY); /* origin 0: nobody waits */
}

/* Members that should be on the ring: the active ones whose grdd is reachable (a member
 * already on the ring stays while it is active: only raftd's eviction takes it off). */
static size_t wanted_members(const struct grd_core *c, uint32_t *out)
{
	size_t n = 0;
	for (size_t i = 0; i < c->nmembers; i++) {
		const struct grd_member *m = &c->members[i];
		bool on_ring = c->rec && in_u32(c->rec->members, c->rec->n_members, m->id);
		if (m->active && (m->reachable || on_ring || m->id == c->self))
			out[n++] = m->id;
	}
	return n;
}

/* Records in l which buckets the lost node owned in the current version: the ring (members)
 * of that version and, of the buckets its ring position gave it, those an override gave to
 * another node. The record frees both arrays. */
static int lost_buckets(struct grd_core *c, Coral__GrdLost *l)
{
	l->ring = malloc((c->rec->n_members + 1) * sizeof(uint32_t));
	if (l->ring == NULL)
		return CORAL_ENOMEM;
	memcpy(l->ring, c->rec->members, c->rec->n_members * sizeof(uint32_t));
	l->n_ring = c->rec->n_members;
	if (c->rec->n_bucket_overrides == 0)
		return 0;
	l->away = malloc(c->rec->n_bucket_overrides * sizeof(uint32_t));
	if (l->away == NULL)
		return CORAL_ENOMEM;
	grd_map_compute(c->rec->members, c->rec->n_members, NULL, 0, c->scratch_owner);
	for (size_t i = 0; i < c->rec->n_bucket_overrides; i++) {
		const Coral__GrdBucketOverride *o = c->rec->bucket_overrides[i];
		if (o->bucket < CORAL_GRD_BUCKETS && o->node != l->node &&
		    c->scratch_owner[o->bucket] == l->node)
			l->away[l->n_away++] = o->bucket;
	}
	return 0;
}

static void coordinate(struct grd_core *c)
{
	if (c->leader != c->self || c->fenced || !c->store_read || c->store_busy)
		return;
	if (c->mv.state != MV_IDLE) {
		if (c->mv.state == MV_FREEZING && c->now_ms >= c->mv.deadline_ms)
			move_abort(c, CORAL_ETIMEDOUT, "not every node was ready within freeze_timeout_ms");
		return;
	}
	uint32_t want[CORAL_MAX_NODES];
	size_t nwant = wanted_members(c, want);
	if (nwant == 0)
		return;
	if (c->rec == NULL) {
		Coral__GrdMapRecord r = CORAL__GRD_MAP_RECORD__INIT;
		r.version = 1;
		r.members = want;
		r.n_members = nwant;
		r.cause = CORAL_GRD_CAUSE_INIT;
		r.coordinator = c->self;
		r.at_ms = wall_ms(c);
		r.detail = (char *)"first map";
		c->store_busy = true;
		if (record_store(c, &r, GRD_STORE_INIT) != 0)
			c->store_busy = false;
		return;
	}
	if (c->now_ms < c->replan_after_ms)
		return;
	if (version(c) < c->await_version && c->now_ms < c->await_until_ms)
		return;
	/* departures first: nothing can be shipped from a lost node, so no freeze */
	uint32_t keep[CORAL_MAX_NODES];
	size_t nkeep = 0;
	bool departed = false;
	for (size_t i = 0; i < c->rec->n_members; i++) {
		if (in_u32(want, nwant, c->rec->members[i]))
			keep[nkeep++] = c->rec->members[i];
		else
			departed = true;
	}
	if (departed) {
		Coral__GrdMapRecord *n = rec_edit(c);
		if (n == NULL)
			return;
		char detail[160];
		int off = snprintf(detail, sizeof(detail), "lost");
		for (size_t i = 0; i < c->rec->n_members; i++) {
			uint32_t d = c->rec->members[i];
			if (in_u32(want, nwant, d))
				continue;
			off += snprintf(detail + off, sizeof(detail) - (size_t)off, " node %u", d);
			if (off >= (int)sizeof(detail))
				off = (int)sizeof(detail) - 1;
			if (n->n_lost < CORAL_GRD_MAX_LOST) {
				Coral__GrdLost **p = realloc(n->lost, (n->n_lost + 1) * sizeof(*p));
				Coral__GrdLost *l = malloc(sizeof(*l));
				if (p == NULL || l == NULL) {
					free(l);
					if (p)
						n->lost = p;
					break;
				}
				n->lost = p;
				coral__grd_lost__init(l);
				l->node = d;
				l->incarnation = member_inc(c, d);
				l->since_version = version(c) + 1;
				n->lost[n->n_lost++] = l;
				if (lost_buckets(c, l) != 0)
					break;
			}
			/* its overrides go with it, kept to know what was its: those buckets and
			 * resources are rebuilt by their new masters */
			for (size_t k = 0; k < n->n_bucket_overrides;) {
				if (n->bucket_overrides[k]->node != d) {
					k++;
					continue;
				}
				Coral__GrdBucketOverride **p = realloc(n->lost_bucket_overrides,
					(n->n_lost_bucket_overrides + 1) * sizeof(*p));
				if (p == NULL)
					break;
				n->lost_bucket_overrides = p;
				p[n->n_lost_bucket_overrides++] = n->bucket_overrides[k];
				n->bucket_overrides[k] = n->bucket_overrides[--n->n_bucket_overrides];
			}
			for (size_t k = 0; k < n->n_res_overrides;) {
				if (n->res_overrides[k]->node != d) {
					k++;
					continue;
				}
				Coral__GrdResOverride **p = realloc(n->lost_res_overrides,
					(n->n_lost_res_overrides + 1) * sizeof(*p));
				if (p == NULL)
					break;
				n->lost_res_overrides = p;
				p[n->n_lost_res_overrides++] = n->res_overrides[k];
				n->res_overrides[k] = n->res_overrides[--n->n_res_overrides];
			}
		}
		if (set_members(n, keep, nkeep) != 0) {
			grd_record_free(n);
			return;
		}
		record_stamp(c, n, CORAL_GRD_CAUSE_LEAVE, 0, detail, wall_ms(c));
		rec_owners(c->rec, c->scratch_owner);
		uint8_t *newo = malloc(CORAL_GRD_BUCKETS);
		if (newo) {
			rec_owners(n, newo);
			for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
				n->moved_buckets += c->scratch_owner[b] != newo[b];
			free(newo);
		}
		core_log(c, CORAL_LOG_NOTICE, "map version %llu: %s; %u buckets get new masters and are rebuilt",
		     (unsigned long long)n->version, detail, n->moved_buckets);
		c->store_busy = true;
		if (record_store(c, n, GRD_STORE_LEAVE) != 0)
			c->store_busy = false;
		grd_record_free(n);
		return;
	}
	if (nkeep < nwant) {
		Coral__GrdMapRecord *n = rec_edit(c);
		if (n == NULL || set_members(n, want, nwant) != 0) {
			if (n)
				grd_record_free(n);
			return;
		}
		char detail[160];
		int off = snprintf(detail, sizeof(detail), "joined");
		for (size_t i = 0; i < nwant; i++)
			if (!in_u32(keep, nkeep, want[i])) {
				off += snprintf(detail + off, sizeof(detail) - (size_t)off, " node %u", want[i]);
				if (off >= (int)sizeof(detail))
					off = (int)sizeof(detail) - 1;
			}
		move_start(c, n, CORAL_GRD_CAUSE_JOIN, false, false, 0, 0, detail);
		return;
	}
	if (c->nqueue > 0) {
		struct grd_request_q q = c->queue[0];
		memmove(&c->queue[0], &c->queue[1], (c->nqueue - 1) * sizeof(c->queue[0]));
		c->nqueue--;
		for (size_t i = 0; i < c->nqueue; i++)
			c->queue[i].req.target = c->queue[i].target;
		q.req.target = q.target;
		start_request(c, &q);
	}
}

void grd_core_move_line(const struct grd_core *c, char *buf, size_t n)
{
	const struct grd_move *mv = &c->mv;
	if (mv->state == MV_IDLE) {
		snprintf(buf, n, "%s", "");
		return;
	}
	snprintf(buf, n, "move %llu (%s) %s: %u buckets, %u resources, %llu entries so far, %llu ms",
		 (unsigned long long)mv->id, coral_grd_cause_name(mv->cause),
		 mv->state == MV_FREEZING ? "shipping" : "committing", mv->buckets, mv->resources,
		 (unsigned long long)mv->entries, (unsigned long long)(c->now_ms - mv->started_ms));
}

void grd_core_store_done(struct grd_core *c, uint64_t cookie, int code, uint64_t index)
{
	(void)index;
	if (code == CORAL_ECONFLICT)
		c->st.store_conflicts++;
	switch (cookie) {
	case GRD_STORE_INIT:
	case GRD_STORE_LEAVE:
		c->store_busy = false;
		if (code == 0) {
			/* do not plan again on the old record before this one comes back applied */
			c->await_version = version(c) + 1;
			c->await_until_ms = c->now_ms + 2000;
		} else {
			core_log(c, CORAL_LOG_NOTICE, "storing the map failed: %s", coral_strerror(code));
			c->replan_after_ms = c->now_ms + GRD_REPLAN_MS;
		}
		return;
	case GRD_STORE_MOVE:
		if (c->mv.state != MV_COMMITTING)
			return;
		if (code != 0) {
			move_abort(c, code, code == CORAL_ECONFLICT ? "the map changed while the move was prepared"
								    : coral_strerror(code));
			return;
		}
		/* answered once the record is applied here (it carries the new version) */
		return;
	case GRD_STORE_ABANDON:
		if (code == 0)
			c->st.abandoned++;
		c->src.abandon_sent = false;
		return;
	}
}

/* ---- rebuild after a loss ------------------------------------------------------------ */

struct report_buf {
	Coral__GrdEntry ents[GRD_CHUNK_ENTRIES], *entp[GRD_CHUNK_ENTRIES];
	Coral__GrdRes ids[GRD_CHUNK_ENTRIES];
	Coral__GrdHolder hs[GRD_CHUNK_ENTRIES], *hps[GRD_CHUNK_ENTRIES];
	size_t n;
};

static void report_flush(struct grd_core *c, struct report_buf *rb, uint32_t to,
			 const Coral__GrdReportRequest *q, bool last)
{
	Coral__GrdReport r = CORAL__GRD_REPORT__INIT;
	r.version = version(c);
	r.lost_node = q->lost_node;
	r.rebuild_id = q->rebuild_id;
	r.last = last;
	r.entries = rb->entp;
	r.n_entries = rb->n;
	send_msg(c, to, GRD_MSG_REPORT, (const ProtobufCMessage *)&r);
	rb->n = 0;
}

static bool in_rebuild(const struct coral_grd_entry *e, const uint8_t *bitmap, size_t bmlen,
		       Coral__GrdRes *const *res, size_t nres)
{
	if (bitmap && e->bucket / 8 < bmlen && (bitmap[e->bucket / 8] & (1u << (e->bucket % 8))))
		return true;
	for (size_t i = 0; i < nres; i++) {
		struct coral_resid x;
		if (res_from_msg(res[i], &x) && coral_resid_eq(&x, &e->id))
			return true;
	}
	return false;
}

/* What this node holds of what a rebuilding master asks for, in chunks. */
static void report_to(struct grd_core *c, uint32_t to, const Coral__GrdReportRequest *q)
{
	struct report_buf *rb = calloc(1, sizeof(*rb));
	if (rb == NULL)
		return;
	for (uint32_t i = 0; i < c->held->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->held, i);
		if (!(e->flags & CORAL_GRDE_USED))
			continue;
		uint32_t b = e->bucket;
		coral_grd_dir_lock(c->held, b);
		if ((e->flags & CORAL_GRDE_USED) &&
		    in_rebuild(e, q->buckets.data, q->buckets.len, q->resources, q->n_resources)) {
			size_t n = rb->n;
			coral__grd_entry__init(&rb->ents[n]);
			res_to_msg(&e->id, &rb->ids[n]);
			rb->ents[n].id = &rb->ids[n];
			coral__grd_holder__init(&rb->hs[n]);
			rb->hs[n].node = c->self;
			rb->hs[n].mode = (uint32_t)coral_grd_entry_mode(e, c->self);
			rb->hs[n].pi = (e->pi & bit(c->self)) != 0;
			rb->hps[n] = &rb->hs[n];
			rb->ents[n].holders = &rb->hps[n];
			rb->ents[n].n_holders = 1;
			rb->entp[n] = &rb->ents[n];
			if (++rb->n == GRD_CHUNK_ENTRIES)
				report_flush(c, rb, to, q, false);
		}
		coral_grd_dir_unlock(c->held, b);
	}
	report_flush(c, rb, to, q, true);
	free(rb);
}

static void on_report_req(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdReportRequest *q = msg;
	report_to(c, from, q);
}

static void rebuild_install(struct grd_core *c, uint32_t from, const Coral__GrdEntry *m)
{
	struct coral_resid id;
	if (!res_from_msg(m->id, &id))
		return;
	uint32_t b = coral_resid_bucket(&id);
	coral_grd_dir_lock(c->dir, b);
	struct coral_grd_entry *e = coral_grd_dir_find(c->dir, &id);
	if (e == NULL)
		e = coral_grd_dir_insert(c->dir, &id);
	if (e != NULL) {
		for (size_t i = 0; i < m->n_holders; i++)
			if (m->holders[i]->node == from) {
				coral_grd_entry_set_mode(e, from, (int)m->holders[i]->mode);
				if (m->holders[i]->pi)
					e->pi |= bit(from);
			}
		coral_grd_dir_touch(c->dir, e);
		c->st.rebuilt_entries++;
	} else {
		core_log(c, CORAL_LOG_WARNING, "rebuild: the directory is full; a resource reported by node %u is not recorded", from);
	}
	coral_grd_dir_unlock(c->dir, b);
}

static void rebuild_finish(struct grd_core *c, struct grd_rebuild *rb)
{
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		if (rb->bitmap[b / 8] & (1u << (b % 8)))
			atomic_store(&c->dir->bstate[b], CORAL_GRDB_ACTIVE);
	free(rb->bitmap);
	free(rb->res);
	core_log(c, CORAL_LOG_INFO, "rebuilt %u buckets of lost node %u at map version %llu", rb->buckets, rb->lost,
	     (unsigned long long)rb->version);
	*rb = c->rebuild[--c->nrebuild];
}

static void on_report(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdReport *r = msg;
	for (size_t i = 0; i < c->nrebuild; i++) {
		struct grd_rebuild *rb = &c->rebuild[i];
		if (rb->id != r->rebuild_id || !(rb->waiting & bit(from)))
			continue;
		for (size_t k = 0; k < r->n_entries; k++)
			rebuild_install(c, from, r->entries[k]);
		if (r->last) {
			rb->waiting &= ~bit(from);
			if (rb->waiting == 0)
				rebuild_finish(c, rb);
		}
		return;
	}
}

static void rebuild_ask(struct grd_core *c, struct grd_rebuild *rb)
{
	Coral__GrdReportRequest q = CORAL__GRD_REPORT_REQUEST__INIT;
	q.version = rb->version;
	q.lost_node = rb->lost;
	q.rebuild_id = rb->id;
	q.buckets.data = rb->bitmap;
	q.buckets.len = CORAL_GRD_BUCKETS / 8;
	Coral__GrdRes *rs = calloc(rb->nres + 1, sizeof(*rs));
	Coral__GrdRes **rp = calloc(rb->nres + 1, sizeof(*rp));
	if (rs == NULL || rp == NULL) {
		free(rs);
		free(rp);
		return;
	}
	for (size_t i = 0; i < rb->nres; i++) {
		res_to_msg(&rb->res[i], &rs[i]);
		rp[i] = &rs[i];
	}
	q.resources = rp;
	q.n_resources = rb->nres;
	rb->asked_ms = c->now_ms;
	for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
		if (rb->waiting & bit(n))
			send_msg(c, n, GRD_MSG_REPORT_REQ, (const ProtobufCMessage *)&q);
	free(rs);
	free(rp);
}

static void rebuild_tick(struct grd_core *c)
{
	for (size_t i = 0; i < c->nrebuild;) {
		struct grd_rebuild *rb = &c->rebuild[i];
		/* a survivor lost meanwhile will not answer; the next version covers its part */
		for (uint32_t n = 1; n <= CORAL_MAX_NODES; n++)
			if ((rb->waiting & bit(n)) && !member_active(c, n))
				rb->waiting &= ~bit(n);
		if (rb->waiting == 0) {
			rebuild_finish(c, rb);
			continue;
		}
		if (c->now_ms - rb->asked_ms >= 500)
			rebuild_ask(c, rb);
		i++;
	}
}

/* A lost node's holds on what this node masters: gone, and what it may have changed needs
 * recovery. Then the buckets this node inherits from it are rebuilt from the survivors. */
/* A node lost: its holds leave every entry here (those in a mode that may have changed the
 * data mark the entry as needing recovery), and the buckets and override resources it
 * mastered that this node masters now are rebuilt from every survivor's report. Normally
 * the record lists it as lost and the map's lost_owner says which buckets were its. If this
 * node skipped the versions between its loss and its recovery (watches coalesce), it is
 * already recovered: then old_owner (this node's previous map) and old's overrides say
 * what was its, and nothing is marked as needing recovery. */
static void on_new_lost(struct grd_core *c, uint32_t lost, const uint8_t *old_owner,
			const Coral__GrdMapRecord *old)
{
	if (bit(lost) == 0)
		return; /* not a node id: a damaged record */
	for (uint32_t i = 0; i < c->dir->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->dir, i);
		if (!(e->flags & CORAL_GRDE_USED) || !((e->holders | e->pi) & bit(lost)))
			continue;
		coral_grd_dir_lock(c->dir, e->bucket);
		if ((e->flags & CORAL_GRDE_USED) && ((e->holders | e->pi) & bit(lost))) {
			bool block = coral_resid_is_block(&e->id);
			if (old_owner == NULL &&
			    (coral_grd_mode_writes(block, e->mode[lost - 1]) || (e->pi & bit(lost)))) {
				e->flags |= CORAL_GRDE_RECOVERY;
				e->recovery_node = (uint8_t)lost;
			}
			coral_grd_entry_set_mode(e, lost, 0);
			e->pi &= ~bit(lost);
			coral_grd_dir_touch(c->dir, e);
		}
		coral_grd_dir_unlock(c->dir, e->bucket);
	}
	if (c->nrebuild >= CORAL_GRD_MAX_LOST)
		return;
	struct grd_rebuild *rb = &c->rebuild[c->nrebuild];
	memset(rb, 0, sizeof(*rb));
	rb->bitmap = calloc(CORAL_GRD_BUCKETS / 8, 1);
	const Coral__GrdMapRecord *ro = old_owner ? old : c->rec;
	size_t nro = old_owner ? (old ? old->n_res_overrides : 0) : c->rec->n_lost_res_overrides;
	rb->res = calloc(nro + 1, sizeof(*rb->res));
	if (rb->bitmap == NULL || rb->res == NULL) {
		free(rb->bitmap);
		free(rb->res);
		return;
	}
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		if ((old_owner ? old_owner[b] : c->map->lost_owner[b]) == lost && c->map->owner[b] == c->self) {
			/* moves refuse REBUILDING buckets until the rebuild ends */
			atomic_store(&c->dir->bstate[b], CORAL_GRDB_REBUILDING);
			rb->bitmap[b / 8] |= (uint8_t)(1u << (b % 8));
			rb->buckets++;
		}
	/* resources it mastered through overrides are rebuilt by their new master too */
	for (size_t i = 0; i < nro; i++) {
		const Coral__GrdResOverride *o = old_owner ? ro->res_overrides[i] : ro->lost_res_overrides[i];
		struct coral_resid id;
		struct coral_grd_where w;
		if (o->node != lost || !res_from_msg(o->id, &id))
			continue;
		coral_grd_lookup(c->map, &id, &w);
		if (w.master == c->self)
			rb->res[rb->nres++] = id;
	}
	if (rb->buckets == 0 && rb->nres == 0) {
		free(rb->bitmap);
		free(rb->res);
		return;
	}
	c->nrebuild++;
	rb->id = ((uint64_t)c->self << 48) | (c->next_move_seq++ & 0xffffffffffffull);
	rb->lost = lost;
	rb->version = version(c);
	/* every active member reports, not only those on the ring: a node that has joined but
	 * does not master anything yet may hold resources all the same */
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].active && c->members[i].id != c->self)
			rb->waiting |= bit(c->members[i].id);
	/* this node is a survivor too: its own holds, straight from its table */
	for (uint32_t i = 0; i < c->held->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->held, i);
		if (!(e->flags & CORAL_GRDE_USED))
			continue;
		bool mine = rb->bitmap[e->bucket / 8] & (1u << (e->bucket % 8));
		for (size_t k = 0; k < rb->nres && !mine; k++)
			mine = coral_resid_eq(&rb->res[k], &e->id);
		if (!mine)
			continue;
		coral_grd_dir_lock(c->held, e->bucket);
		if (e->flags & CORAL_GRDE_USED) {
			Coral__GrdEntry m;
			struct grd_entry_buf eb;
			grd_entry_to_msg(e, &m, &eb);
			rebuild_install(c, c->self, &m);
		}
		coral_grd_dir_unlock(c->held, e->bucket);
	}
	if (rb->waiting == 0)
		rebuild_finish(c, rb);
	else
		rebuild_ask(c, rb);
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
		if (res_from_msg(o[i]->id, &id))
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

void grd_core_apply(struct grd_core *c, const uint8_t *buf, size_t len, uint64_t index)
{
	c->store_read = true;
	if (buf == NULL)
		return;
	Coral__GrdMapRecord *r = grd_record_decode(buf, len);
	if (r == NULL) {
		core_log(c, CORAL_LOG_WARNING, "the map record at index %llu cannot be decoded; ignored", (unsigned long long)index);
		return;
	}
	if (r->version <= version(c)) {
		grd_record_free(r);
		return;
	}
	struct grd_map_def d;
	struct map_scratch s;
	int rc = rec_def(r, index, &d, &s);
	memcpy(c->prev_owner, c->map->owner, CORAL_GRD_BUCKETS);
	if (rc == 0)
		rc = grd_map_publish(c->map, &d);
	scratch_free(&s);
	if (rc != 0) {
		core_log(c, CORAL_LOG_WARNING, "map version %llu cannot be published: %s", (unsigned long long)r->version,
		     coral_strerror(rc));
		grd_record_free(r);
		return;
	}
	Coral__GrdMapRecord *old = c->rec;
	/* members gone without a lost entry (lost and recovered between two versions this node
	 * saw): their buckets are rebuilt all the same, from the owners it had */
	uint32_t gone[CORAL_MAX_NODES];
	size_t ngone = 0;
	for (size_t i = 0; old && i < old->n_members; i++) {
		uint32_t d = old->members[i];
		bool listed = in_u32(r->members, r->n_members, d);
		for (size_t k = 0; k < r->n_lost && !listed; k++)
			listed = r->lost[k]->node == d;
		if (!listed)
			gone[ngone++] = d;
	}
	uint8_t *old_owner = ngone ? malloc(CORAL_GRD_BUCKETS) : NULL;
	if (old_owner)
		rec_owners(old, old_owner);
	c->rec = r;
	c->rec_index = index;
	history_push(c, r);
	if (r->cause < 8 && r->version > 1 && (r->moved_buckets || r->moved_resources ||
						r->cause == CORAL_GRD_CAUSE_LEAVE)) {
		atomic_fetch_add(&c->map->remasters[r->cause], 1);
		atomic_fetch_add(&c->map->remastered_buckets, r->moved_buckets);
		atomic_fetch_add(&c->map->remastered_resources, r->moved_resources);
		atomic_fetch_add(&c->map->remaster_bytes, r->moved_bytes);
	}
	/* a node that froze for a move is released by any newer version */
	if (c->src.active && r->version > c->src.base_version)
		src_unfreeze(c);
	dst_settle(c, r);
	drop_unowned(c, old, r);
	/* nodes newly lost */
	for (size_t i = 0; i < r->n_lost; i++) {
		bool was = false;
		for (size_t k = 0; old && k < old->n_lost; k++)
			was |= old->lost[k]->node == r->lost[i]->node &&
			       old->lost[k]->incarnation == r->lost[i]->incarnation;
		if (!was)
			on_new_lost(c, r->lost[i]->node, NULL, NULL);
	}
	for (size_t i = 0; i < ngone && old_owner; i++)
		on_new_lost(c, gone[i], old_owner, old);
	free(old_owner);
	/* nodes marked recovered: their entries are available again */
	for (size_t k = 0; old && k < old->n_lost; k++) {
		bool still = false;
		for (size_t i = 0; i < r->n_lost; i++)
			still |= r->lost[i]->node == old->lost[k]->node;
		if (still)
			continue;
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
	/* the coordinator's move: committed, or overtaken by another version */
	if (c->mv.state != MV_IDLE && !c->mv.dry_run) {
		if (committed_move(r, c->mv.id)) {
			Coral__GrdRemasterReply rr;
			move_reply(c, &rr);
			rr.map_version = r->version;
			rr.freeze_us = r->freeze_ms * 1000;
			core_log(c, CORAL_LOG_INFO, "map version %llu committed move %llu (%s): %u buckets, %u resources, %llu entries, %llu bytes, %llu ms",
			     (unsigned long long)r->version, (unsigned long long)c->mv.id, coral_grd_cause_name(c->mv.cause),
			     c->mv.buckets, c->mv.resources, (unsigned long long)c->mv.entries,
			     (unsigned long long)c->mv.bytes, (unsigned long long)(c->now_ms - c->mv.started_ms));
			remaster_answer(c, c->mv.has_origin, c->mv.origin, c->mv.origin_cookie, 0, NULL, &rr);
			move_clear(&c->mv);
		} else {
			move_abort(c, CORAL_ECONFLICT, "the map changed while the move was prepared");
		}
	}
	if (old)
		grd_record_free(old);
}

/* ---- inputs -------------------------------------------------------------------------- */

void grd_core_set_cluster(struct grd_core *c, uint32_t leader, bool fenced,
			  const struct grd_member *m, size_t n)
{
	c->leader = leader;
	c->fenced = fenced;
	c->nmembers = n < CORAL_MAX_NODES ? n : CORAL_MAX_NODES;
	if (c->nmembers)
		memcpy(c->members, m, c->nmembers * sizeof(*m));
	if (leader != c->self && c->mv.state == MV_FREEZING)
		move_abort(c, CORAL_ENOTLEADER, "this node is no longer the coordinator");
}

static void on_abort(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdAbort *a = msg;
	if (c->src.active && c->src.move_id == a->move_id && c->src.coordinator == from) {
		core_log(c, CORAL_LOG_INFO, "move %llu aborted by node %u: %s", (unsigned long long)a->move_id, from, a->reason);
		src_unfreeze(c);
	}
	if (c->dst.move_id == a->move_id && c->rec) {
		/* drop what was staged for it: settle against a record that does not commit it */
		Coral__GrdMapRecord none = CORAL__GRD_MAP_RECORD__INIT;
		dst_settle(c, &none);
	}
}

static void on_remaster_fwd(struct grd_core *c, uint32_t from, const void *msg)
{
	const Coral__GrdRemasterFwd *f = msg;
	if (f->req == NULL)
		c->st.msgs_refused++;
	else if (c->leader != c->self)
		remaster_answer(c, true, from, f->cookie, CORAL_ENOTLEADER, "the coordinator changed: retry", NULL);
	else
		enqueue_request(c, f->req, from, f->cookie, CORAL_GRD_CAUSE_MANUAL);
}

static void on_remaster_ans(struct grd_core *c, uint32_t from, const void *msg)
{
	(void)from;
	const Coral__GrdRemasterAns *a = msg;
	c->ops.remastered(c->ops.arg, a->cookie, a->code, a->error, a->reply);
}

/* Who may send a message: any node the interconnect let in, the coordinator (the grdd next
 * to the Raft leader), or an active member. */
enum { FROM_ANY, FROM_COORDINATOR, FROM_ACTIVE };

static const struct grd_handler {
	uint8_t type;
	uint8_t from;
	void (*fn)(struct grd_core *c, uint32_t from, const void *msg);
} grd_handlers[] = {
	{GRD_MSG_REQUEST, FROM_ANY, on_request},
	{GRD_MSG_REPLY, FROM_ANY, on_reply},
	{GRD_MSG_FREEZE, FROM_COORDINATOR, on_freeze},
	{GRD_MSG_SHIP, FROM_ACTIVE, on_ship},
	{GRD_MSG_READY, FROM_ANY, on_ready},
	{GRD_MSG_ABORT, FROM_ANY, on_abort},
	{GRD_MSG_REPORT_REQ, FROM_ANY, on_report_req},
	{GRD_MSG_REPORT, FROM_ANY, on_report},
	{GRD_MSG_PROPOSE, FROM_ANY, on_propose},
	{GRD_MSG_REMASTER_FWD, FROM_ANY, on_remaster_fwd},
	{GRD_MSG_REMASTER_ANS, FROM_ANY, on_remaster_ans},
};

static bool sender_ok(struct grd_core *c, uint8_t who, uint32_t from)
{
	switch (who) {
	case FROM_COORDINATOR: return from == c->leader;
	case FROM_ACTIVE: return member_active(c, from);
	default: return true;
	}
}

void grd_core_recv(struct grd_core *c, uint32_t from, uint8_t type, const uint8_t *data, size_t len)
{
	const struct grd_handler *h = NULL;
	for (size_t i = 0; i < CORAL_ARRAY_LEN(grd_handlers) && h == NULL; i++)
		if (grd_handlers[i].type == type)
			h = &grd_handlers[i];
	if (h != NULL && !sender_ok(c, h->from, from)) {
		c->st.msgs_refused++;
		return;
	}
	const ProtobufCMessage *m = grd_msg_decode(type, data, len, &c->st.msgs_refused);
	if (m == NULL)
		return;
	if (h != NULL)
		h->fn(c, from, m);
	grd_msg_free(m);
}

static void src_tick(struct grd_core *c)
{
	struct grd_src *s = &c->src;
	if (!s->active)
		return;
	src_pump(c);
	/* the coordinator went quiet: commit a version that moves nothing, so its own commit
	 * (compare-and-swap on the version we froze at) can no longer succeed */
	if (!s->abandon_sent && c->rec && c->now_ms - s->since_ms >= (uint64_t)c->conf->freeze_timeout_ms + 1000) {
		Coral__GrdMapRecord *n = rec_edit(c);
		if (n == NULL)
			return;
		char detail[128];
		snprintf(detail, sizeof(detail), "move %llu of coordinator %u abandoned by node %u",
			 (unsigned long long)s->move_id, s->coordinator, c->self);
		record_stamp(c, n, CORAL_GRD_CAUSE_ABANDON, 0, detail, wall_ms(c));
		core_log(c, CORAL_LOG_NOTICE, "%s after %lld ms frozen", detail, (long long)(c->now_ms - s->since_ms));
		s->abandon_sent = true;
		if (record_store(c, n, GRD_STORE_ABANDON) != 0)
			s->abandon_sent = false;
		grd_record_free(n);
	}
}

static void affinity_decay(struct grd_core *c)
{
	if (c->now_ms - c->decay_ms < (uint64_t)c->conf->affinity_window_ms)
		return;
	c->decay_ms = c->now_ms;
	for (uint32_t i = 0; i < c->dir->capacity; i++) {
		struct coral_grd_entry *e = coral_grd_dir_entry(c->dir, i);
		if (!(e->flags & CORAL_GRDE_USED) || e->aff[0].node == 0)
			continue;
		coral_grd_dir_lock(c->dir, e->bucket);
		if (e->flags & CORAL_GRDE_USED)
			coral_grd_entry_decay(e);
		coral_grd_dir_unlock(c->dir, e->bucket);
	}
}

void grd_core_clock(struct grd_core *c, uint64_t now_ms, uint64_t wall_ms)
{
	if (now_ms > c->now_ms)
		c->now_ms = now_ms;
	c->wall_ms = wall_ms;
}

void grd_core_tick(struct grd_core *c, uint64_t now_ms, uint64_t wall_ms)
{
	c->now_ms = now_ms;
	c->wall_ms = wall_ms;
	if (c->decay_ms == 0)
		c->decay_ms = now_ms;
	src_tick(c);
	rebuild_tick(c);
	pending_tick(c);
	coordinate(c);
	affinity_decay(c);
}

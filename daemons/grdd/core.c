/* grdd's core (see core.h): its life, the messages it takes (a table of who may send
 * what), the tick, the history of applied versions and the helpers every part uses. The
 * other parts share core_int.h: serve.c (a master serving requests, and this node's own
 * requests), move.c (a current master's side of a move, and a new master's), coordinate.c
 * (the coordinator's step and its queue of requests), remaster.c (a move at the
 * coordinator), rebuild.c (rebuilding a lost node's buckets), record.c (the map record);
 * map.c computes and publishes the bucket map and grd_msg.c is the codec. No I/O, no clock:
 * everything comes in through the grd_core_* calls. */

#include "core_int.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void grd_core_free(struct grd_core *c);

void grd_log(struct grd_core *c, int level, const char *fmt, ...)
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

void grd_res_to_msg(const struct coral_resid *r, Coral__GrdRes *m)
{
	coral__grd_res__init(m);
	m->type = r->type;
	m->id1 = r->id1;
	m->id2 = r->id2;
}

bool grd_res_from_msg(const Coral__GrdRes *m, struct coral_resid *r)
{
	memset(r, 0, sizeof(*r));
	if (m == NULL || m->type > UINT16_MAX)
		return false;
	r->type = (uint16_t)m->type;
	r->id1 = m->id1;
	r->id2 = m->id2;
	return true;
}

int grd_send_msg(struct grd_core *c, uint32_t to, uint8_t type, const ProtobufCMessage *m)
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
	grd_res_to_msg(&e->id, &b->id);
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
void grd_entry_from_msg(struct coral_grd_entry *e, const Coral__GrdEntry *m)
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
	c->leave_hold_max_ms = GRD_LEAVE_HOLD_MS;
	return c;
}

void grd_core_set_leave_hold(struct grd_core *c, uint64_t ms)
{
	c->leave_hold_max_ms = ms;
}

void grd_core_free(struct grd_core *c)
{
	if (c == NULL)
		return;
	if (c->rec)
		grd_record_free(c->rec);
	free(c->held_rec);
	grd_move_clear(&c->mv);
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

/* ---- history ------------------------------------------------------------------------- */

void grd_history_push(struct grd_core *c, const Coral__GrdMapRecord *r)
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

/* ---- inputs -------------------------------------------------------------------------- */

void grd_core_set_cluster(struct grd_core *c, uint32_t leader, bool fenced,
			  const struct grd_member *m, size_t n)
{
	c->leader = leader;
	c->fenced = fenced;
	n = n < CORAL_MAX_NODES ? n : CORAL_MAX_NODES;
	bool view_changed = n != c->nmembers;
	for (size_t i = 0; i < n && !view_changed; i++)
		view_changed = m[i].id != c->members[i].id;
	c->nmembers = n;
	if (c->nmembers)
		memcpy(c->members, m, c->nmembers * sizeof(*m));
	if (leader != c->self && c->mv.state == MV_FREEZING)
		grd_move_abort(c, CORAL_ENOTLEADER, "this node is no longer the coordinator");
	if (c->held_rec != NULL && c->nmembers > 0 && view_changed) {
		uint8_t *buf = c->held_rec;
		c->held_rec = NULL;
		grd_core_apply(c, buf, c->held_len, c->held_index);
		free(buf);
	}
}

/* Who may send a message: any node the interconnect let in, the coordinator (the grdd next
 * to the Raft leader), or an active member. */
enum { FROM_ANY, FROM_COORDINATOR, FROM_ACTIVE };

static const struct grd_handler {
	uint8_t type;
	uint8_t from;
	void (*fn)(struct grd_core *c, uint32_t from, const void *msg);
} grd_handlers[] = {
	{GRD_MSG_REQUEST, FROM_ANY, grd_on_request},
	{GRD_MSG_REPLY, FROM_ANY, grd_on_reply},
	{GRD_MSG_FREEZE, FROM_COORDINATOR, grd_on_freeze},
	{GRD_MSG_SHIP, FROM_ACTIVE, grd_on_ship},
	{GRD_MSG_READY, FROM_ANY, grd_on_ready},
	{GRD_MSG_ABORT, FROM_ANY, grd_on_abort},
	{GRD_MSG_REPORT_REQ, FROM_ANY, grd_on_report_req},
	{GRD_MSG_REPORT, FROM_ANY, grd_on_report},
	{GRD_MSG_PROPOSE, FROM_ANY, grd_on_propose},
	{GRD_MSG_REMASTER_FWD, FROM_ANY, grd_on_remaster_fwd},
	{GRD_MSG_REMASTER_ANS, FROM_ANY, grd_on_remaster_ans},
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
	grd_src_tick(c);
	grd_rebuild_tick(c);
	grd_pending_tick(c);
	grd_coordinate(c);
	affinity_decay(c);
}

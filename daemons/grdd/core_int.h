/* grdd core's own header: the state every part of the core shares (struct grd_core and the
 * moves, rebuilds and requests in it), small helpers, and the functions one part calls in
 * another. Nothing outside daemons/grdd includes it; the core's interface is core.h. */

#ifndef CORAL_GRDD_CORE_INT_H
#define CORAL_GRDD_CORE_INT_H

#include "core.h"

#include <stdbool.h>
#include <stdint.h>

#define GRD_CHUNK_ENTRIES 256
#define GRD_RETRY_MS 20
#define GRD_RESEND_MS 1000
#define GRD_REPLAN_MS 1000
#define GRD_LEAVE_HOLD_MS 3000 /* a restarted member's leave waits this long for a silent kept one (default) */

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
	uint8_t *held_rec;                /* one that came before raftd's view: checked once it does */
	size_t held_len;
	uint64_t held_index;
	uint64_t rec_index;
	bool store_read;                  /* the store has been read once (absent or not) */

	struct grd_src src;
	struct grd_dst dst;
	struct grd_move mv;
	uint64_t replan_after_ms;
	uint64_t leave_hold_ms;         /* since when a leave waits for a silent kept member */
	uint64_t leave_hold_max_ms;     /* ... and for how long at most (grd_core_set_leave_hold) */
	uint64_t next_move_seq;
	bool store_busy;                  /* a leave/init/recovered commit is in flight */

	struct grd_request_q queue[GRD_QUEUE];
	size_t nqueue;

	struct grd_rebuild rebuild[CORAL_GRD_MAX_LOST];
	size_t nrebuild;

	struct grd_pending *pending;
	size_t npending_cap;
	size_t npending_used;     /* entries of pending[] in use: the tick walks none when 0 */
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
void grd_log(struct grd_core *c, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline uint64_t bit(uint32_t node)
{
	return node >= 1 && node <= CORAL_MAX_NODES ? 1ull << (node - 1) : 0;
}

static inline bool member_active(const struct grd_core *c, uint32_t id)
{
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].id == id)
			return c->members[i].active;
	return false;
}

static inline uint64_t member_inc(const struct grd_core *c, uint32_t id)
{
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].id == id)
			return c->members[i].incarnation;
	return 0;
}

static inline uint64_t member_instance(const struct grd_core *c, uint32_t id)
{
	for (size_t i = 0; i < c->nmembers; i++)
		if (c->members[i].id == id)
			return c->members[i].instance;
	return 0;
}

static inline uint64_t version(const struct grd_core *c)
{
	return c->rec ? c->rec->version : 0;
}

static inline bool in_u32(const uint32_t *a, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] == v)
			return true;
	return false;
}

/* coordinate.c */

void grd_coordinate(struct grd_core *c);
void grd_on_propose(struct grd_core *c, uint32_t from, const void *msg);
void grd_on_remaster_ans(struct grd_core *c, uint32_t from, const void *msg);
void grd_on_remaster_fwd(struct grd_core *c, uint32_t from, const void *msg);

/* core.c */

void grd_entry_from_msg(struct coral_grd_entry *e, const Coral__GrdEntry *m);
void grd_history_push(struct grd_core *c, const Coral__GrdMapRecord *r);
bool grd_res_from_msg(const Coral__GrdRes *m, struct coral_resid *r);
void grd_res_to_msg(const struct coral_resid *r, Coral__GrdRes *m);
int grd_send_msg(struct grd_core *c, uint32_t to, uint8_t type, const ProtobufCMessage *m);

/* remaster.c: a move at the coordinator (next is the move's from here on) */

void grd_move_start(struct grd_core *c, Coral__GrdMapRecord *next, int cause, bool dry_run, bool has_origin,
		    uint32_t origin, uint64_t cookie, const char *detail);
void grd_move_abort(struct grd_core *c, int code, const char *why);
void grd_move_clear(struct grd_move *mv);
void grd_move_reply(struct grd_core *c, Coral__GrdRemasterReply *r);
void grd_on_ready(struct grd_core *c, uint32_t from, const void *msg);
void grd_remaster_answer(struct grd_core *c, bool has_origin, uint32_t origin, uint64_t cookie,
			 int code, const char *err, const Coral__GrdRemasterReply *r);

/* move.c */

void grd_dst_settle(struct grd_core *c, const Coral__GrdMapRecord *r);
void grd_on_abort(struct grd_core *c, uint32_t from, const void *msg);
void grd_on_freeze(struct grd_core *c, uint32_t from, const void *msg);
void grd_on_ship(struct grd_core *c, uint32_t from, const void *msg);
void grd_src_tick(struct grd_core *c);
void grd_src_unfreeze(struct grd_core *c);

/* rebuild.c */

void grd_on_new_lost(struct grd_core *c, uint32_t lost, const uint8_t *old_owner,
			const Coral__GrdMapRecord *old);
void grd_on_report(struct grd_core *c, uint32_t from, const void *msg);
void grd_on_report_req(struct grd_core *c, uint32_t from, const void *msg);
void grd_rebuild_tick(struct grd_core *c);

/* record.c */

bool grd_committed_move(const Coral__GrdMapRecord *r, uint64_t move_id);
Coral__GrdMapRecord *grd_rec_edit(struct grd_core *c);
uint32_t grd_rec_master(const Coral__GrdMapRecord *r, const uint8_t *owners,
			   const struct coral_resid *id);
void grd_rec_owners(const Coral__GrdMapRecord *r, uint8_t *out);
void grd_record_stamp(struct grd_core *c, Coral__GrdMapRecord *n, int cause, uint64_t move_id,
			 const char *detail, uint64_t at_ms);
int grd_record_store(struct grd_core *c, Coral__GrdMapRecord *n, uint64_t cookie_kind);
int grd_set_bucket_override(Coral__GrdMapRecord *n, uint32_t b, uint32_t node, size_t max);
int grd_set_members(Coral__GrdMapRecord *n, const uint32_t *m, size_t k);
int grd_set_res_override(Coral__GrdMapRecord *n, const struct coral_resid *id, uint32_t node, size_t max);
uint64_t grd_wall_ms(struct grd_core *c);

/* serve.c */

void grd_on_reply(struct grd_core *c, uint32_t from, const void *msg);
void grd_on_request(struct grd_core *c, uint32_t from, const void *msg);
void grd_pending_tick(struct grd_core *c);
bool grd_rebuilding_res(const struct grd_core *c, const struct coral_resid *id);

#endif

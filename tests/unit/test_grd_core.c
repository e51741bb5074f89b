/* grdd's core, driven by hand: one node's core with the directory on the heap, its messages
 * captured. A move ships a block's entry only once the cache-fusion operation under way on it
 * is over (shipped in the middle, the new master believed the old holder still had the
 * image, granted it again from the disk, and coral-bank lost transfers). A map record that
 * disagrees with raftd's membership is refused, never applied (one naming a node 99, written
 * into raftd's store by anyone, once made grdd drop its directory and the bank lost money). */
#include "core.h"

#include "errors.h"
#include "grd.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

struct sent {
	uint32_t to;
	uint8_t type;
};

static struct sent sent[64];
static size_t nsent;
static uint8_t *stored;
static size_t stored_len;

static int op_send(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	(void)arg;
	(void)buf;
	(void)len;
	if (nsent < 64)
		sent[nsent++] = (struct sent){to, type};
	return 0;
}

static int op_store(void *arg, const uint8_t *buf, size_t len, uint64_t expect, uint64_t cookie)
{
	(void)arg;
	(void)expect;
	(void)cookie;
	free(stored);
	stored = malloc(len);
	memcpy(stored, buf, len);
	stored_len = len;
	return 0;
}

static void op_answer(void *arg, uint64_t cookie, int code, const char *error, const struct grd_answer *a)
{
	(void)arg, (void)cookie, (void)code, (void)error, (void)a;
}

static void op_remastered(void *arg, uint64_t cookie, int code, const char *error, const Coral__GrdRemasterReply *r)
{
	(void)arg, (void)cookie, (void)code, (void)error, (void)r;
}

static size_t count_sent(uint8_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < nsent; i++)
		n += sent[i].type == type;
	return n;
}

Test(grd_core, a_block_entry_ships_only_once_its_operation_is_over)
{
	struct coral_grd_conf gc = {
		.directory_entries = 64, .held_entries = 64, .max_overrides = 8, .affinity = 0,
		.remaster_bandwidth = 1000000, .freeze_timeout_ms = 5000, .request_timeout_ms = 1500,
		.max_pending = 16,
	};
	struct coral_conf cf;
	memset(&cf, 0, sizeof(cf));
	cf.grd = gc;
	size_t msz = coral_grd_map_sga_size(&cf), dsz = coral_grd_dir_size(64);
	struct coral_grd_map_sga *map = calloc(1, msz);
	struct coral_grd_dir *dir = calloc(1, dsz), *held = calloc(1, dsz);
	cr_assert(map && dir && held);
	cr_assert_eq(coral_grd_map_sga_init(map, msz, &cf, NULL), 0);
	cr_assert_eq(coral_grd_dir_init(dir, dsz, 64), 0);
	cr_assert_eq(coral_grd_dir_init(held, dsz, 64), 0);
	struct grd_core_ops ops = {op_send, op_store, op_answer, op_remastered, NULL, NULL};

	/* node 1 leads two active members: its first tick stores the first map, applied here */
	struct grd_core *c = grd_core_new(1, &gc, map, dir, held, &ops);
	cr_assert_not_null(c);
	grd_core_apply(c, NULL, 0, 0);
	struct grd_member m[2] = {{1, 1, 1, true, true}, {2, 1, 1, true, true}};
	grd_core_set_cluster(c, 1, false, m, 2);
	grd_core_tick(c, 1000, 1000);
	cr_assert_not_null(stored, "the leader stored no map");
	grd_core_store_done(c, 1, 0, 1);
	grd_core_apply(c, stored, stored_len, 1);
	cr_assert_eq(grd_core_version(c), 1);

	/* a block node 1 masters, with an operation under way */
	struct coral_resid id = {0};
	struct coral_grd_where w = {0};
	for (uint64_t b = 1; b < 1000; b++) {
		id = (struct coral_resid){.type = CORAL_RES_BLOCK, .id1 = 1, .id2 = b};
		coral_grd_lookup(map, &id, &w);
		if (w.master == 1)
			break;
	}
	cr_assert_eq(w.master, 1);
	coral_grd_dir_lock(dir, w.bucket);
	struct coral_grd_entry *e = coral_grd_dir_insert(dir, &id);
	cr_assert_not_null(e);
	e->cur = 2;
	e->gen = 7;
	e->op_phase = 2;   /* a transfer: the image may be on its way */
	coral_grd_dir_unlock(dir, w.bucket);

	/* the coordinator (node 1 itself) asks to move that bucket to node 2 */
	Coral__GrdMoveItem it = CORAL__GRD_MOVE_ITEM__INIT, *itp = &it;
	it.bucket = w.bucket;
	it.to = 2;
	Coral__GrdFreeze f = CORAL__GRD_FREEZE__INIT;
	f.move_id = 42;
	f.base_version = 1;
	f.coordinator = 1;
	f.items = &itp;
	f.n_items = 1;
	uint8_t buf[256];
	size_t len = coral__grd_freeze__pack(&f, buf);
	nsent = 0;
	grd_core_recv(c, 1, GRD_MSG_FREEZE, buf, len);
	cr_assert_eq(atomic_load(&dir->bstate[w.bucket]), CORAL_GRDB_FROZEN);
	grd_core_tick(c, 1010, 1010);
	grd_core_tick(c, 1020, 1020);
	cr_expect_eq(count_sent(GRD_MSG_SHIP), 0, "the entry was shipped in the middle of an operation");

	/* lmsd finishes the operation: the entry goes at the next tick */
	coral_grd_dir_lock(dir, w.bucket);
	e->op_phase = 0;
	coral_grd_dir_unlock(dir, w.bucket);
	grd_core_tick(c, 1030, 1030);
	cr_expect_eq(count_sent(GRD_MSG_SHIP), 1, "the entry was not shipped once idle");

	grd_core_free(c);
	free(stored);
	stored = NULL;
	free(map);
	free(dir);
	free(held);
}

/* A core of node 1 leading members 1 and 2, with map version 1 applied. */
struct one {
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir, *held;
	struct grd_core *c;
	struct coral_grd_conf gc;
};

static void one_start(struct one *o, bool view_first)
{
	o->gc = (struct coral_grd_conf){
		.directory_entries = 64, .held_entries = 64, .max_overrides = 8, .remaster_bandwidth = 1000000,
		.freeze_timeout_ms = 5000, .request_timeout_ms = 1500, .max_pending = 16,
	};
	struct coral_conf cf;
	memset(&cf, 0, sizeof(cf));
	cf.grd = o->gc;
	size_t msz = coral_grd_map_sga_size(&cf), dsz = coral_grd_dir_size(64);
	o->map = calloc(1, msz);
	o->dir = calloc(1, dsz);
	o->held = calloc(1, dsz);
	cr_assert_eq(coral_grd_map_sga_init(o->map, msz, &cf, NULL), 0);
	cr_assert_eq(coral_grd_dir_init(o->dir, dsz, 64), 0);
	cr_assert_eq(coral_grd_dir_init(o->held, dsz, 64), 0);
	struct grd_core_ops ops = {op_send, op_store, op_answer, op_remastered, NULL, NULL};
	o->c = grd_core_new(1, &o->gc, o->map, o->dir, o->held, &ops);
	struct grd_member m[2] = {{1, 1, 1, true, true}, {2, 1, 1, true, true}};
	uint32_t members[2] = {1, 2};
	Coral__GrdMapRecord r = CORAL__GRD_MAP_RECORD__INIT;
	r.version = 1;
	r.members = members;
	r.n_members = 2;
	r.coordinator = 1;
	size_t len;
	uint8_t *buf = grd_record_pack(&r, &len);
	if (view_first)
		grd_core_set_cluster(o->c, 1, false, m, 2);
	grd_core_apply(o->c, buf, len, 1);
	free(buf);
	if (!view_first) {
		cr_expect_eq(grd_core_version(o->c), 0, "applied before raftd's view came");
		grd_core_set_cluster(o->c, 1, false, m, 2);
	}
	cr_assert_eq(grd_core_version(o->c), 1);
}

static void one_stop(struct one *o)
{
	grd_core_free(o->c);
	free(o->map);
	free(o->dir);
	free(o->held);
}

Test(grd_core, a_record_naming_a_node_raftd_does_not_know_is_refused)
{
	struct one o;
	one_start(&o, true);
	uint32_t members[3] = {1, 2, 99};
	Coral__GrdMapRecord r = CORAL__GRD_MAP_RECORD__INIT;
	r.version = 2;
	r.members = members;
	r.n_members = 3;
	r.coordinator = 1;
	size_t len;
	uint8_t *buf = grd_record_pack(&r, &len);
	grd_core_apply(o.c, buf, len, 2);
	cr_expect_eq(grd_core_version(o.c), 1, "a record naming node 99 was applied");
	/* it waits for a view of raftd's that knows node 99; the same view again changes nothing */
	struct grd_member m[2] = {{1, 1, 1, true, true}, {2, 1, 1, true, true}};
	grd_core_set_cluster(o.c, 1, false, m, 2);
	cr_expect_eq(grd_core_version(o.c), 1, "a record naming node 99 was applied");
	/* a bucket override to a node off the ring, and a node twice, likewise */
	Coral__GrdBucketOverride bo = CORAL__GRD_BUCKET_OVERRIDE__INIT, *bop = &bo;
	bo.bucket = 7;
	bo.node = 3;
	r.n_members = 2;
	r.bucket_overrides = &bop;
	r.n_bucket_overrides = 1;
	free(buf);
	buf = grd_record_pack(&r, &len);
	grd_core_apply(o.c, buf, len, 3);
	members[1] = 1;
	r.n_bucket_overrides = 0;
	free(buf);
	buf = grd_record_pack(&r, &len);
	grd_core_apply(o.c, buf, len, 4);
	cr_expect_eq(grd_core_version(o.c), 1);
	cr_expect_eq(grd_core_stats(o.c)->records_refused, 2);
	/* the real next version goes in */
	members[1] = 2;
	free(buf);
	buf = grd_record_pack(&r, &len);
	grd_core_apply(o.c, buf, len, 5);
	cr_expect_eq(grd_core_version(o.c), 2);
	free(buf);
	one_stop(&o);
}

Test(grd_core, a_record_read_before_raftds_view_is_applied_once_it_comes)
{
	struct one o;
	one_start(&o, false);
	one_stop(&o);
}

/* The resource directory's shared structures: bucket distribution for 3, 5 and 16 nodes, what
 * a join or a leave moves, the map in its SGA form, resource ids and modes, and the bounded
 * directory table at capacity. */
#include "errors.h"
#include "grd.h"
#include "map.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void members(uint32_t *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		m[i] = (uint32_t)(i + 1);
}

static void distribution(size_t n)
{
	uint32_t m[CORAL_MAX_NODES];
	members(m, n);
	uint8_t *own = malloc(CORAL_GRD_BUCKETS);
	grd_map_compute(m, n, NULL, 0, own);
	uint32_t cnt[CORAL_MAX_NODES + 1] = {0};
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
		cr_assert(own[b] >= 1 && own[b] <= n, "bucket %u has owner %u", b, own[b]);
		cnt[own[b]]++;
	}
	double even = (double)CORAL_GRD_BUCKETS / (double)n, worst = 0;
	for (size_t i = 1; i <= n; i++) {
		double dev = ((double)cnt[i] - even) / even;
		cr_assert(dev < 0.10 && dev > -0.10, "node %zu of %zu has %u buckets, %.1f%% off even", i, n, cnt[i],
			  100 * dev);
		if (dev < 0)
			dev = -dev;
		if (dev > worst)
			worst = dev;
	}
	free(own);
}

Test(grd_map, distribution_3) { distribution(3); }
Test(grd_map, distribution_5) { distribution(5); }
Test(grd_map, distribution_16) { distribution(16); }

/* A join moves about 1/(N+1) of the buckets, all to the new node; a leave moves the leaver's
 * buckets and no others. */
static void join_leave(size_t n)
{
	uint32_t m[CORAL_MAX_NODES];
	members(m, n + 1);
	uint8_t *a = malloc(CORAL_GRD_BUCKETS), *b = malloc(CORAL_GRD_BUCKETS);
	grd_map_compute(m, n, NULL, 0, a);
	grd_map_compute(m, n + 1, NULL, 0, b);
	uint32_t moved = 0;
	for (uint32_t i = 0; i < CORAL_GRD_BUCKETS; i++)
		if (a[i] != b[i]) {
			cr_assert_eq(b[i], n + 1, "bucket %u moved from %u to %u, not to the new node", i, a[i], b[i]);
			moved++;
		}
	double frac = (double)moved / CORAL_GRD_BUCKETS, ideal = 1.0 / (double)(n + 1);
	cr_assert(frac > ideal * 0.85 && frac < ideal * 1.15, "join of node %zu moved %.2f%%, ideal %.2f%%", n + 1,
		  100 * frac, 100 * ideal);
	/* node 2 leaves the n+1 */
	uint32_t rest[CORAL_MAX_NODES];
	size_t k = 0;
	for (size_t i = 0; i < n + 1; i++)
		if (m[i] != 2)
			rest[k++] = m[i];
	grd_map_compute(rest, k, NULL, 0, a);
	moved = 0;
	for (uint32_t i = 0; i < CORAL_GRD_BUCKETS; i++)
		if (a[i] != b[i]) {
			cr_assert_eq(b[i], 2, "bucket %u of node %u moved when node 2 left", i, b[i]);
			moved++;
		}
	frac = (double)moved / CORAL_GRD_BUCKETS;
	cr_assert(frac > ideal * 0.85 && frac < ideal * 1.15, "leave moved %.2f%%, ideal %.2f%%", 100 * frac, 100 * ideal);
	free(a);
	free(b);
}

Test(grd_map, join_leave_3) { join_leave(3); }
Test(grd_map, join_leave_5) { join_leave(5); }
Test(grd_map, join_leave_16) { join_leave(16); }

Test(grd_map, publish_and_lookup)
{
	struct coral_conf cf;
	memset(&cf, 0, sizeof(cf));
	cf.grd.max_overrides = 8;
	size_t sz = coral_grd_map_sga_size(&cf);
	struct coral_grd_map_sga *m = calloc(1, sz);
	cr_assert_eq(coral_grd_map_sga_init(m, sz, &cf, NULL), 0);
	struct coral_resid r = {CORAL_RES_BLOCK, 0, 1, 42};
	struct coral_grd_where w;
	coral_grd_lookup(m, &r, &w);
	cr_assert_eq(w.master, 0, "no map: no master");
	struct grd_res_override ro = {r, 3};
	struct coral_grd_lost lost = {2, 7, 2, 3, {1, 2, 3}};
	struct grd_map_def d = {.version = 2, .nmembers = 2, .members = {1, 3}, .res = &ro, .nres = 1,
				      .lost = &lost, .nlost = 1};
	cr_assert_eq(grd_map_publish(m, &d), 0);
	coral_grd_lookup(m, &r, &w);
	cr_assert_eq(w.master, 3);
	cr_assert(w.overridden);
	cr_assert_eq(w.version, 2);
	/* the lost node's buckets are exactly those it would own among 1, 2, 3 */
	uint32_t with[3] = {1, 2, 3};
	uint8_t *own = malloc(CORAL_GRD_BUCKETS);
	grd_map_compute(with, 3, NULL, 0, own);
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
		cr_assert_eq(m->lost_owner[b], own[b] == 2 ? 2 : 0, "bucket %u", b);
	/* too many overrides for the table */
	struct grd_res_override many[20];
	for (int i = 0; i < 20; i++)
		many[i] = (struct grd_res_override){{CORAL_RES_BLOCK, 0, 1, (uint64_t)i}, 1};
	d.res = many;
	d.nres = 20;
	cr_assert_eq(grd_map_publish(m, &d), CORAL_EFULL);
	free(own);
	free(m);
}

/* Two nodes lost in turn, then a join: each lost node keeps exactly the buckets it owned in
 * the version before its loss (the later loss wins the buckets the first one's took over),
 * whatever the ring is now; overrides it had, and those away from it, count. */
Test(grd_map, lost_buckets_survive_later_changes)
{
	struct coral_conf cf;
	memset(&cf, 0, sizeof(cf));
	cf.grd.max_overrides = 8;
	size_t sz = coral_grd_map_sga_size(&cf);
	struct coral_grd_map_sga *m = calloc(1, sz);
	cr_assert_eq(coral_grd_map_sga_init(m, sz, &cf, NULL), 0);
	uint32_t v1[4] = {1, 2, 3, 4}, v2[3] = {1, 2, 4};
	uint8_t *o1 = malloc(CORAL_GRD_BUCKETS), *o2 = malloc(CORAL_GRD_BUCKETS);
	grd_map_compute(v1, 4, NULL, 0, o1);
	grd_map_compute(v2, 3, NULL, 0, o2);
	uint32_t given = 0, away = 0;
	while (o2[given] != 2)
		given++; /* node 1 had bucket `given` by an override */
	while (o2[away] != 1)
		away++;  /* and lost bucket `away` to node 4 by another */
	struct coral_grd_lost lost[2] = {{3, 1, 2, 4, {1, 2, 3, 4}}, {1, 1, 3, 3, {1, 2, 4}}};
	struct grd_bucket_override lbo = {given, 1}, aw = {away, 1};
	struct grd_map_def d = {.version = 4, .nmembers = 3, .members = {2, 4, 5},
				      .lost = lost, .nlost = 2, .lost_bo = &lbo, .nlost_bo = 1,
				      .lost_away = &aw, .nlost_away = 1};
	cr_assert_eq(grd_map_publish(m, &d), 0);
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
		uint32_t want = o1[b] == 3 ? 3 : 0;
		if ((o2[b] == 1 && b != away) || b == given)
			want = 1;
		cr_assert_eq(m->lost_owner[b], want, "bucket %u: lost owner %u, want %u", b,
			     m->lost_owner[b], want);
	}
	free(o1);
	free(o2);
	free(m);
}

Test(grd_res, parse_and_modes)
{
	struct coral_resid r;
	char err[256], buf[64];
	cr_assert_eq(coral_resid_parse("bl:1:42", &r, err, sizeof(err)), 0);
	cr_assert(coral_resid_is_block(&r));
	coral_resid_format(&r, buf, sizeof(buf));
	cr_assert_str_eq(buf, "BL:1:42");
	cr_assert_eq(coral_resid_parse("TX:7", &r, err, sizeof(err)), CORAL_EINVAL);
	cr_assert(strstr(err, "TYPE:ID1:ID2") != NULL);
	cr_assert_eq(coral_resid_parse("TX:-1:2", &r, err, sizeof(err)), CORAL_EINVAL);
	cr_assert(coral_grd_compatible(true, CORAL_BL_S, CORAL_BL_S));
	cr_assert(!coral_grd_compatible(true, CORAL_BL_S, CORAL_BL_X));
	cr_assert(!coral_grd_compatible(true, CORAL_BL_X, CORAL_BL_X));
	cr_assert(coral_grd_compatible(false, CORAL_LK_CR, CORAL_LK_PW));
	cr_assert(!coral_grd_compatible(false, CORAL_LK_PR, CORAL_LK_CW));
	cr_assert(!coral_grd_compatible(false, CORAL_LK_CR, CORAL_LK_EX));
	cr_assert_eq(coral_grd_mode_parse(false, "pw"), CORAL_LK_PW);
	cr_assert_eq(coral_grd_mode_parse(true, "PW"), -1);
}

/* At capacity the least recently used unheld entry goes; when all are held, a refusal. */
Test(grd_dir, bounded_at_capacity)
{
	const uint32_t cap = 64;
	size_t sz = coral_grd_dir_size(cap);
	struct coral_grd_dir *d = calloc(1, sz);
	cr_assert_eq(coral_grd_dir_init(d, sz, cap), 0);
	struct coral_resid ids[2 * 64];
	for (uint32_t i = 0; i < 2 * cap; i++)
		ids[i] = (struct coral_resid){CORAL_RES_BLOCK, 0, 1, i};
	for (uint32_t i = 0; i < cap; i++) {
		uint32_t b = coral_resid_bucket(&ids[i]);
		coral_grd_dir_lock(d, b);
		struct coral_grd_entry *e = coral_grd_dir_insert(d, &ids[i]);
		cr_assert_not_null(e);
		coral_grd_dir_touch(d, e);
		coral_grd_dir_unlock(d, b);
	}
	cr_assert_eq(d->used, cap);
	/* entry 0 used again: entry 1 is now the least recently used */
	uint32_t b0 = coral_resid_bucket(&ids[0]);
	coral_grd_dir_lock(d, b0);
	coral_grd_dir_touch(d, coral_grd_dir_find(d, &ids[0]));
	coral_grd_dir_unlock(d, b0);
	uint32_t b = coral_resid_bucket(&ids[cap]);
	coral_grd_dir_lock(d, b);
	cr_assert_not_null(coral_grd_dir_insert(d, &ids[cap]));
	coral_grd_dir_unlock(d, b);
	cr_assert_eq(d->evictions, 1);
	uint32_t b1 = coral_resid_bucket(&ids[1]);
	coral_grd_dir_lock(d, b1);
	cr_assert_null(coral_grd_dir_find(d, &ids[1]), "the least recently used entry was evicted");
	coral_grd_dir_unlock(d, b1);
	coral_grd_dir_lock(d, b0);
	cr_assert_not_null(coral_grd_dir_find(d, &ids[0]));
	coral_grd_dir_unlock(d, b0);
	/* every entry held: no room, a refusal and its counter */
	for (uint32_t i = 0; i <= cap; i++) {
		uint32_t bb = coral_resid_bucket(&ids[i]);
		coral_grd_dir_lock(d, bb);
		struct coral_grd_entry *e = coral_grd_dir_find(d, &ids[i]);
		if (e) {
			coral_grd_entry_set_mode(e, 2, CORAL_BL_S);
			coral_grd_dir_touch(d, e);
		}
		coral_grd_dir_unlock(d, bb);
	}
	b = coral_resid_bucket(&ids[cap + 1]);
	coral_grd_dir_lock(d, b);
	cr_assert_null(coral_grd_dir_insert(d, &ids[cap + 1]));
	coral_grd_dir_unlock(d, b);
	cr_assert_eq(d->refused_full, 1);
	cr_assert_eq(d->used, cap);
	/* a release makes one evictable again */
	coral_grd_dir_lock(d, b0);
	struct coral_grd_entry *e0 = coral_grd_dir_find(d, &ids[0]);
	coral_grd_entry_set_mode(e0, 2, 0);
	coral_grd_dir_touch(d, e0);
	coral_grd_dir_unlock(d, b0);
	coral_grd_dir_lock(d, b);
	cr_assert_not_null(coral_grd_dir_insert(d, &ids[cap + 1]));
	coral_grd_dir_unlock(d, b);
	free(d);
}

/* The heavy-hitter slots stay bounded and keep the heaviest node. */
Test(grd_dir, affinity_bounded)
{
	struct coral_grd_entry e;
	memset(&e, 0, sizeof(e));
	for (int i = 0; i < 150; i++)
		coral_grd_entry_access(&e, 3);
	for (uint32_t n = 4; n < 30; n++)
		coral_grd_entry_access(&e, n);
	uint32_t node, count, others;
	coral_grd_entry_top(&e, 1, &node, &count, &others);
	cr_assert_eq(node, 3);
	cr_assert_geq(count, 150);
	cr_assert_lt(others, 30);
	coral_grd_entry_decay(&e);
	coral_grd_entry_top(&e, 1, &node, &count, &others);
	cr_assert_eq(node, 3);
	cr_assert_lt(count, 100);
}

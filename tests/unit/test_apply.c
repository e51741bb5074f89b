/* A standby's apply, its core (daemons/replicad/apply.c): a transaction applied whole and
 * only once committed and under every thread's horizon; an idle thread's mark; a session's
 * BEGIN abandoning what it left open; where to read again after a restart; the memory bound;
 * a block's changes applied above its SCN only. The seeded model is tests/sim/test_apply_sim.c. */
#include "apply.h"
#include "errors.h"
#include "storage.h"

#include <criterion/criterion.h>
#include <string.h>

static uint64_t lsn[4];

static void rec(struct apply *a, uint32_t t, uint8_t type, uint8_t flags, uint32_t session, uint64_t scn,
		uint64_t block, uint32_t off, uint64_t v)
{
	struct coral_redo_rec h = {.magic = CORAL_REDO_MAGIC, .type = type, .flags = flags, .session = session,
				   .scn = scn, .file = 1, .block = block, .offset = off,
				   .nbytes = type == CORAL_REDO_CHANGE ? 8 : 0};
	h.len = (uint32_t)sizeof(h) + h.nbytes;
	lsn[t] += h.len;
	h.lsn = lsn[t];
	cr_assert_eq(apply_add(a, t, &h, (const uint8_t *)&v), 0);
}

static struct apply *two_threads(void)
{
	memset(lsn, 0, sizeof(lsn));
	struct apply *a = apply_new(1 << 20);
	cr_assert_not_null(a);
	apply_start(a, 1, 0, 0);
	apply_start(a, 2, 0, 0);
	return a;
}

Test(apply, a_commit_waits_for_every_threads_horizon)
{
	struct apply *a = two_threads();
	rec(a, 1, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 7, 10, 3, 0, 111);
	rec(a, 1, CORAL_REDO_COMMIT, 0, 7, 11, 0, 0, 0);
	const struct apply_change *c;
	uint32_t low;
	cr_expect_eq(apply_horizon(a, &low), 0);
	cr_expect_eq(low, 2, "thread 2 has said nothing: it holds the horizon");
	cr_expect_eq(apply_release(a, &c), 0);
	apply_done(a);
	/* thread 2 idle: its mark lets the commit go */
	apply_mark(a, 2, 11);
	cr_assert_eq(apply_release(a, &c), 1);
	cr_expect_eq(c[0].block, 3);
	cr_expect_eq(*(const uint64_t *)c[0].bytes, 111);
	cr_expect_eq(apply_batch_scn(a), 11);
	apply_done(a);
	cr_expect_eq(apply_stats(a)->applied_scn, 11);
	cr_expect_eq(apply_stats(a)->txns_applied, 1);
	apply_free(a);
}

Test(apply, an_open_transaction_is_never_applied_and_a_begin_abandons_it)
{
	struct apply *a = two_threads();
	rec(a, 1, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 7, 10, 3, 0, 111);
	rec(a, 2, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 9, 12, 4, 0, 222);
	rec(a, 2, CORAL_REDO_COMMIT, 0, 9, 13, 0, 0, 0);
	apply_mark(a, 1, 20);
	const struct apply_change *c;
	cr_assert_eq(apply_release(a, &c), 1);
	cr_expect_eq(c[0].block, 4, "only the committed one");
	apply_done(a);
	/* session 7 of thread 1 begins again: its open transaction was taken back */
	rec(a, 1, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 7, 21, 5, 0, 333);
	rec(a, 1, CORAL_REDO_COMMIT, 0, 7, 22, 0, 0, 0);
	apply_mark(a, 2, 30);
	cr_assert_eq(apply_release(a, &c), 1);
	cr_expect_eq(c[0].block, 5);
	apply_done(a);
	cr_expect_eq(apply_stats(a)->txns_abandoned, 1);
	cr_expect_eq(apply_stats(a)->open_txns, 0);
	apply_free(a);
}

Test(apply, the_resume_lsn_is_the_start_of_the_oldest_transaction_held)
{
	struct apply *a = two_threads();
	rec(a, 1, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 7, 10, 3, 0, 1);
	uint64_t first_end = lsn[1];
	rec(a, 1, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 8, 11, 4, 0, 2);
	rec(a, 1, CORAL_REDO_COMMIT, 0, 8, 12, 0, 0, 0);
	cr_expect_eq(apply_resume_lsn(a, 1), 0, "session 7's transaction began at 0");
	cr_expect_eq(apply_resume_lsn(a, 2), 0);
	apply_mark(a, 2, 50);
	rec(a, 1, CORAL_REDO_COMMIT, 0, 7, 13, 0, 0, 0);
	const struct apply_change *c;
	cr_assert_eq(apply_release(a, &c), 2);
	cr_expect_eq(apply_resume_lsn(a, 1), 0, "a batch not done is not applied yet");
	apply_done(a);
	cr_expect_eq(apply_resume_lsn(a, 1), lsn[1], "everything added is applied");
	cr_expect_gt(lsn[1], first_end);
	apply_free(a);
	/* read again from 0 after a restart: changes of applied transactions with no BEGIN seen
	 * are not held */
	a = two_threads();
	struct coral_redo_rec h = {.magic = CORAL_REDO_MAGIC, .type = CORAL_REDO_CHANGE, .session = 7, .scn = 10,
				   .file = 1, .block = 3, .nbytes = 8, .len = 64, .lsn = 64};
	uint64_t v = 5;
	cr_assert_eq(apply_add(a, 1, &h, (const uint8_t *)&v), 0);
	cr_expect_eq(apply_stats(a)->changes_before, 1);
	cr_expect_eq(apply_stats(a)->pending_bytes, 0);
	apply_free(a);
}

Test(apply, the_bytes_held_are_bounded)
{
	memset(lsn, 0, sizeof(lsn));
	struct apply *a = apply_new(20);
	apply_start(a, 1, 0, 0);
	rec(a, 1, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 7, 10, 3, 0, 1);
	rec(a, 1, CORAL_REDO_CHANGE, 0, 7, 11, 3, 8, 2);
	struct coral_redo_rec h = {.magic = CORAL_REDO_MAGIC, .type = CORAL_REDO_CHANGE, .session = 7, .scn = 12,
				   .file = 1, .block = 3, .nbytes = 8, .len = 64, .lsn = 999};
	uint64_t v = 3;
	cr_expect_eq(apply_add(a, 1, &h, (const uint8_t *)&v), CORAL_EFULL);
	cr_expect_eq(apply_add(a, 3, &h, (const uint8_t *)&v), CORAL_EINVAL, "a thread not declared");
	apply_free(a);
}

Test(apply, a_block_takes_the_changes_above_its_scn_only)
{
	_Alignas(8) uint8_t img[256] = {0};
	struct coral_block_hdr *h = (struct coral_block_hdr *)img;
	h->scn = 20;
	uint64_t a = 1, b = 2, c = 3;
	struct apply_change ch[3] = {{.scn = 15, .offset = 0, .nbytes = 8, .bytes = (uint8_t *)&a},
				     {.scn = 25, .offset = 8, .nbytes = 8, .bytes = (uint8_t *)&b},
				     {.scn = 30, .offset = 0, .nbytes = 8, .bytes = (uint8_t *)&c}};
	cr_assert_eq(apply_block(ch, 3, img, sizeof(img)), 2);
	uint64_t x, y;
	memcpy(&x, img + CORAL_BLOCK_HDR, 8);
	memcpy(&y, img + CORAL_BLOCK_HDR + 8, 8);
	cr_expect_eq(x, 3);
	cr_expect_eq(y, 2);
	cr_expect_eq(h->scn, 30);
	cr_expect_eq(apply_block(ch, 3, img, sizeof(img)), 0, "again: nothing twice");
	struct apply_change bad = {.scn = 40, .offset = 250, .nbytes = 8, .bytes = (uint8_t *)&a};
	cr_expect_eq(apply_block(&bad, 1, img, sizeof(img)), CORAL_ECORRUPT);
	cr_expect_eq(h->scn, 30, "left as it was");
}

Test(apply, every_horizon_lifted_releases_everything)
{
	struct apply *a = two_threads();
	rec(a, 1, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 7, 10, 3, 0, 111);
	rec(a, 1, CORAL_REDO_COMMIT, 0, 7, 11, 0, 0, 0);
	rec(a, 2, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, 9, 5, 4, 0, 222);
	rec(a, 2, CORAL_REDO_COMMIT, 0, 9, 6, 0, 0, 0);
	/* a failover: no more redo comes from any thread */
	apply_mark(a, 1, UINT64_MAX);
	apply_mark(a, 2, UINT64_MAX);
	cr_expect_eq(apply_horizon(a, NULL), UINT64_MAX);
	const struct apply_change *c;
	cr_expect_eq(apply_release(a, &c), 2);
	apply_done(a);
	cr_expect_eq(apply_stats(a)->txns_applied, 2);
	/* the copy holds everything up to the highest SCN there was, not "up to infinity" (a
	 * cluster taking it over raises its clocks to it) */
	cr_expect_eq(apply_stats(a)->applied_scn, 11, "applied SCN %llu", (unsigned long long)apply_stats(a)->applied_scn);
	apply_free(a);
}

/* lmdd's GES master core (daemons/lmdd/ges.c) driven by hand: the compatibility matrix,
 * queue order, conversions and their deadlocks, the flags, value blocks, timeouts, the loss
 * of a session and of a node, the bounds; then seeded random runs of every operation with
 * the invariants checked after each step. */
#include "ges.h"

#include "errors.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

/* What ops.done and ops.bast reported, in order. */
struct event {
	char kind;  /* 'd' done, 'b' bast, 'u' in nobody's way now */
	uint32_t node;
	uint64_t lkid;
	int code, mode;
	bool demoted, lvb_valid;
	uint8_t lvb[GES_LVB_MAX];
};
static struct event ev[4096];
static int nev;

static void on_done(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int code, int gr, bool demoted,
		    const uint8_t *lvb, bool lvb_valid)
{
	(void)arg;
	(void)session;
	if (nev < 4096) {
		ev[nev] = (struct event){'d', node, lkid, code, gr, demoted, lvb_valid, {0}};
		if (lvb)
			memcpy(ev[nev].lvb, lvb, 32);
		nev++;
	}
}

static void on_bast(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int mode)
{
	(void)arg;
	(void)session;
	if (nev < 4096)
		ev[nev++] = (struct event){'b', node, lkid, 0, mode, false, false, {0}};
}

static void on_unbast(void *arg, uint32_t node, uint64_t session, uint64_t lkid)
{
	(void)arg;
	(void)session;
	if (nev < 4096)
		ev[nev++] = (struct event){'u', node, lkid, 0, -1, false, false, {0}};
}

static const struct ges_ops ops = {on_done, on_bast, NULL, NULL, on_unbast};
static struct ges_core *c;

static void setup(void)
{
	nev = 0;
	c = ges_core_new(64, 256, 32, &ops);
	cr_assert_not_null(c);
}

static void teardown(void)
{
	char err[256];
	cr_expect_eq(ges_check(c, err, sizeof(err)), 0, "%s", err);
	ges_core_free(c);
}

TestSuite(ges, .init = setup, .fini = teardown);

#define R "TX-1-2"

/* Lock id k of node n (session n) asks for mode on R. */
static int req(uint32_t n, uint64_t k, int mode, uint32_t flags)
{
	struct ges_answer a;
	return ges_request(c, n, n, k, R, strlen(R), mode, flags, 0, 100, &a);
}

static int conv(uint32_t n, uint64_t k, int mode, uint32_t flags)
{
	struct ges_answer a;
	return ges_convert(c, n, k, mode, flags, 0, NULL, 100, &a);
}

static int modes_of(struct ges_lock_view *v)
{
	return ges_resource(c, R, strlen(R), v, 16, NULL, NULL);
}

/* The last event of a kind for a lock (-1: none). */
static int last_event(char kind, uint32_t node, uint64_t lkid)
{
	for (int i = nev - 1; i >= 0; i--)
		if (ev[i].kind == kind && ev[i].node == node && ev[i].lkid == lkid)
			return i;
	return -1;
}

Test(ges, the_compatibility_matrix_is_the_dlms)
{
	static const char *const rows[GES_NMODES] = {"111111", "111110", "111000", "110100", "110000", "100000"};
	for (int a = 0; a < GES_NMODES; a++)
		for (int b = 0; b < GES_NMODES; b++) {
			cr_expect_eq(ges_compat(a, b), rows[a][b] == '1', "%s/%s", ges_mode_name(a), ges_mode_name(b));
			cr_expect_eq(ges_compat(a, b), ges_compat(b, a));
		}
	cr_expect_not(ges_compat(GES_NONE, GES_NL));
	cr_expect_eq(ges_mode_parse("PW"), GES_PW);
	cr_expect_eq(ges_mode_parse("XX"), GES_NONE);
}

Test(ges, compatible_requests_are_granted_at_once_and_others_wait_in_order)
{
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	cr_expect_eq(req(2, 1, GES_CR, 0), 0);
	cr_expect_eq(req(3, 1, GES_EX, 0), CORAL_EPENDING);
	/* compatible with what is granted, but behind a waiter: it waits (no starvation) */
	cr_expect_eq(req(2, 2, GES_PR, 0), CORAL_EPENDING);
	cr_expect_gt(last_event('b', 1, 1), -1, "the PR holder was not asked to give way to EX");
	cr_expect_gt(last_event('b', 2, 1), -1, "the CR holder was not asked to give way to EX");
	cr_expect_eq(ges_unlock(c, 1, 1, NULL, 101), 0);
	cr_expect_eq(last_event('d', 3, 1), -1, "EX granted beside a CR");
	cr_expect_eq(ges_unlock(c, 2, 1, NULL, 102), 0);
	int e = last_event('d', 3, 1);
	cr_assert_gt(e, -1, "EX not granted once alone");
	cr_expect_eq(ev[e].code, 0);
	cr_expect_eq(ev[e].mode, GES_EX);
	cr_expect_eq(last_event('d', 2, 2), -1, "PR granted beside an EX");
	cr_expect_eq(ges_unlock(c, 3, 1, NULL, 103), 0);
	cr_expect_gt(last_event('d', 2, 2), -1);
	struct ges_lock_view v[16];
	cr_expect_eq(modes_of(v), 1);
	cr_expect_eq(v[0].gr, GES_PR);
}

Test(ges, noqueue_is_refused_and_expedite_jumps_the_queue)
{
	cr_expect_eq(req(1, 1, GES_EX, 0), 0);
	cr_expect_eq(req(2, 1, GES_PR, GES_F_NOQUEUE), CORAL_EHELD);
	cr_expect_eq(req(2, 2, GES_PR, 0), CORAL_EPENDING);
	cr_expect_eq(req(3, 1, GES_NL, 0), CORAL_EPENDING, "NL waits behind a waiter unless expedited");
	cr_expect_eq(req(3, 2, GES_NL, GES_F_EXPEDITE), 0);
	cr_expect_eq(req(3, 3, GES_PR, GES_F_EXPEDITE), CORAL_EINVAL, "expedite is for NL only");
	cr_expect_eq(req(1, 1, GES_PR, 0), CORAL_EEXIST);
}

Test(ges, a_conversion_down_is_at_once_and_lets_waiters_in)
{
	cr_expect_eq(req(1, 1, GES_EX, 0), 0);
	cr_expect_eq(req(2, 1, GES_PR, 0), CORAL_EPENDING);
	cr_expect_eq(conv(1, 1, GES_PR, 0), 0);
	int e = last_event('d', 2, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ev[e].mode, GES_PR);
	/* up again: blocked by the other PR */
	cr_expect_eq(conv(1, 1, GES_EX, 0), CORAL_EPENDING);
	cr_expect_eq(ges_unlock(c, 1, 1, NULL, 101), CORAL_EBUSY, "a queued conversion is cancelled, not unlocked");
	cr_expect_eq(ges_unlock(c, 2, 1, NULL, 101), 0);
	e = last_event('d', 1, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ev[e].mode, GES_EX);
}

Test(ges, conversions_come_before_new_requests)
{
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	cr_expect_eq(req(2, 1, GES_PR, 0), 0);
	cr_expect_eq(conv(1, 1, GES_EX, 0), CORAL_EPENDING);
	cr_expect_eq(req(3, 1, GES_PR, 0), CORAL_EPENDING, "a new PR beside PRs, but a conversion waits");
	cr_expect_eq(ges_unlock(c, 2, 1, NULL, 101), 0);
	cr_expect_gt(last_event('d', 1, 1), -1, "the conversion was not granted first");
	cr_expect_eq(last_event('d', 3, 1), -1);
}

Test(ges, quecvt_queues_a_conversion_that_would_fit)
{
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	cr_expect_eq(req(2, 1, GES_NL, 0), 0);
	cr_expect_eq(req(3, 1, GES_PR, 0), 0);
	cr_expect_eq(conv(1, 1, GES_EX, 0), CORAL_EPENDING);
	cr_expect_eq(conv(2, 1, GES_CR, GES_F_QUECVT), CORAL_EPENDING, "QUECVT: behind the waiting conversion");
	cr_expect_eq(conv(3, 1, GES_CR, 0), 0, "a conversion down is at once");
}

Test(ges, a_conversion_deadlock_is_refused_to_the_later_one)
{
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	cr_expect_eq(req(2, 1, GES_PR, 0), 0);
	cr_expect_eq(conv(1, 1, GES_EX, 0), CORAL_EPENDING);
	cr_expect_eq(conv(2, 1, GES_EX, 0), CORAL_EDEADLK);
	struct ges_lock_view v[16];
	cr_assert_eq(modes_of(v), 2);
	cr_expect(v[0].node == 2 || v[1].node == 2);
	for (int i = 0; i < 2; i++)
		if (v[i].node == 2)
			cr_expect(v[i].gr == GES_PR && v[i].queue == GES_Q_GRANTED, "the victim keeps what it held");
	cr_expect_eq(ges_unlock(c, 2, 1, NULL, 101), 0);
	cr_expect_gt(last_event('d', 1, 1), -1);
}

Test(ges, convdeadlk_takes_the_granted_mode_down_to_nl)
{
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	cr_expect_eq(req(2, 1, GES_PR, 0), 0);
	cr_expect_eq(conv(1, 1, GES_EX, 0), CORAL_EPENDING);
	cr_expect_eq(conv(2, 1, GES_EX, GES_F_CONVDEADLK), CORAL_EPENDING);
	/* node 2 went to NL: node 1's conversion is granted, node 2's waits for it */
	int e = last_event('d', 1, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ev[e].mode, GES_EX);
	cr_expect_eq(ges_unlock(c, 1, 1, NULL, 101), 0);
	e = last_event('d', 2, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ev[e].mode, GES_EX);
	cr_expect(ev[e].demoted, "the grant does not say the mode was taken down meanwhile");
}

Test(ges, the_value_block_is_written_down_read_with_grants_and_lost_with_its_writer)
{
	struct ges_answer a;
	uint8_t v1[32], got[GES_LVB_MAX];
	memset(v1, 0x5a, sizeof(v1));
	bool valid;
	cr_assert_eq(ges_request(c, 1, 1, 1, R, strlen(R), GES_EX, GES_F_VALBLK, 0, 100, &a), 0);
	cr_expect(a.lvb_valid);
	cr_expect_eq(ges_convert(c, 1, 1, GES_PR, GES_F_VALBLK, 0, v1, 101, &a), 0);
	cr_assert_eq(ges_request(c, 2, 2, 1, R, strlen(R), GES_PR, GES_F_VALBLK, 0, 102, &a), 0);
	cr_expect(a.lvb_valid && memcmp(a.lvb, v1, 32) == 0, "the value written on the way down was not read");
	/* a PR holder cannot write it */
	uint8_t v2[32];
	memset(v2, 0x77, sizeof(v2));
	cr_expect_eq(ges_unlock(c, 2, 1, v2, 103), 0);
	cr_expect_eq(ges_unlock(c, 1, 1, NULL, 103), 0);
	cr_assert_geq(ges_resource(c, R, strlen(R), NULL, 0, got, &valid), 0, "a written value block was dropped");
	cr_expect(valid && memcmp(got, v1, 32) == 0);
	/* a PW holder that goes without writing: invalid until written again */
	cr_assert_eq(ges_request(c, 3, 3, 1, R, strlen(R), GES_PW, GES_F_VALBLK, 0, 104, &a), 0);
	ges_session_gone(c, 3, 3, 105);
	cr_assert_geq(ges_resource(c, R, strlen(R), NULL, 0, got, &valid), 0);
	cr_expect_not(valid);
	cr_assert_eq(ges_request(c, 4, 4, 1, R, strlen(R), GES_EX, GES_F_VALBLK, 0, 106, &a), 0);
	cr_expect_not(a.lvb_valid, "a stale value block was handed out as valid");
	cr_expect_eq(ges_unlock(c, 4, 1, v2, 107), 0);
	cr_assert_geq(ges_resource(c, R, strlen(R), NULL, 0, got, &valid), 0);
	cr_expect(valid && memcmp(got, v2, 32) == 0);
}

Test(ges, a_request_past_its_timeout_is_refused_and_a_cancel_ends_a_wait)
{
	struct ges_answer a;
	cr_expect_eq(req(1, 1, GES_EX, 0), 0);
	cr_expect_eq(ges_request(c, 2, 2, 1, R, strlen(R), GES_PR, 0, 50, 100, &a), CORAL_EPENDING);
	cr_expect_eq(req(3, 1, GES_PR, 0), CORAL_EPENDING);
	ges_tick(c, 149);
	cr_expect_eq(last_event('d', 2, 1), -1);
	ges_tick(c, 150);
	int e = last_event('d', 2, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ev[e].code, CORAL_ETIMEDOUT);
	cr_expect_eq(ges_cancel(c, 3, 1, 151), 0);
	e = last_event('d', 3, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ev[e].code, CORAL_ECANCELED);
	cr_expect_eq(ges_cancel(c, 1, 1, 151), CORAL_EINVAL, "a granted lock is not cancelled");
	cr_expect_eq(ges_core_locks(c), 1);
}

/* ges_tick walks the resources only once the earliest timeout noted is due: a wait granted
 * before its timeout leaves that time noted early, and the scan then notes the next one, so
 * a later timeout still ends its wait on time, and a conversion's too. */
Test(ges, timeouts_are_kept_when_an_earlier_wait_ends_before_its_own)
{
	struct ges_answer a;
	cr_expect_eq(req(1, 1, GES_EX, 0), 0);
	cr_expect_eq(ges_request(c, 2, 2, 1, R, strlen(R), GES_PR, 0, 50, 100, &a), CORAL_EPENDING);   /* due 150 */
	cr_expect_eq(ges_request(c, 3, 3, 1, R, strlen(R), GES_EX, 0, 200, 100, &a), CORAL_EPENDING);  /* due 300 */
	cr_expect_eq(ges_unlock(c, 1, 1, NULL, 120), 0);  /* PR granted before its timeout; EX waits for it */
	int g2 = last_event('d', 2, 1);
	cr_assert(g2 > -1 && ev[g2].code == 0, "the PR wait was not granted");
	ges_tick(c, 150);  /* the noted time is due: a scan, which notes the EX wait's */
	cr_expect_eq(last_event('d', 3, 1), -1, "refused before its timeout");
	ges_tick(c, 299);
	cr_expect_eq(last_event('d', 3, 1), -1, "refused before its timeout");
	ges_tick(c, 300);
	int e = last_event('d', 3, 1);
	cr_assert_gt(e, -1, "the EX wait's timeout passed unseen");
	cr_expect_eq(ev[e].code, CORAL_ETIMEDOUT);
	/* a conversion up of holder 2 behind a new PR holder, due 600 */
	cr_expect_eq(req(4, 1, GES_PR, 0), 0);
	cr_expect_eq(ges_convert(c, 2, 1, GES_EX, 0, 400, NULL, 200, &a), CORAL_EPENDING);
	ges_tick(c, 599);
	cr_expect(last_event('d', 2, 1) == g2, "refused before its timeout");
	ges_tick(c, 600);
	e = last_event('d', 2, 1);
	cr_assert_gt(e, g2, "the conversion's timeout passed unseen");
	cr_expect_eq(ev[e].code, CORAL_ETIMEDOUT);
	cr_expect_eq(ges_lock_mode(c, 2, 1), GES_PR, "a refused conversion keeps its mode");
}

/* A holder told it is in the way is told when it no longer is: the waiters timed out, were
 * cancelled or granted (what rsrcmgrd's idle-blocker limit reads on the holder's node). */
Test(ges, a_holder_told_it_blocks_is_told_when_it_blocks_nobody)
{
	struct ges_answer a;
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	cr_expect_eq(req(4, 1, GES_PR, 0), 0);
	cr_expect_eq(ges_request(c, 2, 2, 1, R, strlen(R), GES_EX, 0, 50, 100, &a), CORAL_EPENDING);
	cr_expect_gt(last_event('b', 1, 1), -1);
	cr_expect_gt(last_event('b', 4, 1), -1);
	cr_expect_eq(req(3, 1, GES_PW, 0), CORAL_EPENDING);
	cr_expect_eq(last_event('u', 1, 1), -1);
	ges_tick(c, 150);  /* the EX request times out; the PW one still waits for both */
	cr_expect_eq(last_event('u', 1, 1), -1, "PW still waits for the PR holders");
	cr_expect_eq(ges_cancel(c, 3, 1, 151), 0);
	int u1 = last_event('u', 1, 1), u4 = last_event('u', 4, 1);
	cr_expect_gt(u1, -1, "nobody waits: holder 1 is told");
	cr_expect_gt(u4, -1, "and holder 4");
	/* told again when a new request queues, and told it is over when that is granted */
	cr_expect_eq(req(2, 2, GES_EX, 0), CORAL_EPENDING);
	cr_expect_gt(last_event('b', 1, 1), u1);
	cr_expect_eq(ges_unlock(c, 1, 1, NULL, 160), 0);
	cr_expect_eq(last_event('d', 2, 2), -1);
	cr_expect_eq(ges_unlock(c, 4, 1, NULL, 160), 0);
	cr_expect_gt(last_event('d', 2, 2), -1);
	cr_expect_eq(last_event('u', 2, 2), -1, "the new holder blocks nobody and was never told");
	cr_expect_eq(ges_core_stats(c)->unbasts, 2);
}

Test(ges, a_lost_nodes_locks_are_held_until_its_recovery)
{
	struct ges_answer a;
	cr_expect_eq(ges_request(c, 3, 3, 1, R, strlen(R), GES_EX, GES_F_VALBLK, 0, 100, &a), 0);
	cr_expect_eq(req(3, 2, GES_PR, 0), CORAL_EPENDING);
	cr_expect_eq(req(1, 1, GES_PR, 0), CORAL_EPENDING);
	ges_node_lost(c, 3, 200);
	struct ges_lock_view v[16];
	cr_assert_eq(modes_of(v), 2, "node 3's queued request stayed");
	cr_expect(v[0].node == 3 && v[0].lost && v[0].gr == GES_EX);
	cr_expect_eq(last_event('d', 1, 1), -1, "granted beside a lost node's EX before its recovery");
	ges_node_recovered(c, 3, 300);
	int e = last_event('d', 1, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ges_core_locks(c), 1);
	bool valid;
	uint8_t lvb[GES_LVB_MAX];
	cr_assert_geq(ges_resource(c, R, strlen(R), NULL, 0, lvb, &valid), 0);
	cr_expect_not(valid, "the lost EX holder's value block is still valid");
}

Test(ges, the_tables_have_bounds)
{
	struct ges_answer a;
	char name[16];
	int got = 0;
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "R%d", i);
		int rc = ges_request(c, 1, 1, (uint64_t)i + 1, name, strlen(name), GES_NL, 0, 0, 100, &a);
		cr_assert(rc == 0 || rc == CORAL_EFULL);
		got += rc == 0;
	}
	cr_expect_eq(got, 64);
	cr_expect_eq(ges_core_resources(c), 64);
	cr_expect_gt(ges_core_stats(c)->full, 0);
	cr_expect_eq(ges_request(c, 1, 1, 1000, "", 0, GES_NL, 0, 0, 100, &a), CORAL_EINVAL);
	char big[GES_NAME_MAX + 1];
	memset(big, 'a', sizeof(big));
	cr_expect_eq(ges_request(c, 1, 1, 1001, big, sizeof(big), GES_NL, 0, 0, 100, &a), CORAL_EINVAL);
	ges_session_gone(c, 1, 1, 101);
	cr_expect_eq(ges_core_resources(c), 0);
	cr_expect_eq(ges_core_locks(c), 0);
}

/* ---- seeded random runs ------------------------------------------------------------------ */

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* Random requests, conversions, unlocks, cancels, ticks, session and node losses on a few
 * resources; after every step the invariants hold and every queued request is answered or
 * still queued (never both, never twice). */
Test(ges, random_operations_keep_the_invariants)
{
	static const char *const names[] = {"A", "B", "C"};
	for (uint64_t seed = 1; seed <= 200; seed++) {
		rng = seed * 0x9e3779b97f4a7c15ull + 1;
		uint64_t now = 1000;
		for (int step = 0; step < 400; step++, now += 1 + rnd(5)) {
			nev = 0;
			uint32_t node = 1 + rnd(3), kind = rnd(100);
			uint64_t lkid = 1 + rnd(6);
			const char *nm = names[rnd(3)];
			struct ges_answer a;
			uint32_t flags = (rnd(4) == 0 ? GES_F_NOQUEUE : 0) | (rnd(3) == 0 ? GES_F_VALBLK : 0) |
					 (rnd(6) == 0 ? GES_F_CONVDEADLK : 0) | (rnd(10) == 0 ? GES_F_NODLCKWT : 0);
			uint8_t lvb[32];
			memset(lvb, (int)step, sizeof(lvb));
			if (kind < 35)
				ges_request(c, node, node, lkid, nm, 1, (int)rnd(GES_NMODES), flags, rnd(3) ? 0 : 1 + rnd(30), now,
					    &a);
			else if (kind < 60)
				ges_convert(c, node, lkid, (int)rnd(GES_NMODES), flags | (rnd(5) == 0 ? GES_F_QUECVT : 0),
					    rnd(3) ? 0 : 1 + rnd(30), lvb, now, &a);
			else if (kind < 80)
				ges_unlock(c, node, lkid, rnd(2) ? lvb : NULL, now);
			else if (kind < 88)
				ges_cancel(c, node, lkid, now);
			else if (kind < 95)
				ges_tick(c, now);
			else if (kind < 97)
				ges_session_gone(c, node, node, now);
			else if (kind < 99)
				ges_node_lost(c, node, now);
			else
				ges_node_recovered(c, node, now);
			char err[256];
			cr_assert_eq(ges_check(c, err, sizeof(err)), 0, "seed %llu step %d: %s", (unsigned long long)seed, step,
				     err);
			/* an answer for a lock that is still queued is a double answer */
			for (int i = 0; i < nev; i++) {
				if (ev[i].kind != 'd')
					continue;
				struct ges_lock_view v[64];
				for (int r = 0; r < 3; r++) {
					int n = ges_resource(c, names[r], 1, v, 64, NULL, NULL);
					for (int k = 0; k < n && k < 64; k++)
						cr_assert(!(v[k].node == ev[i].node && v[k].lkid == ev[i].lkid && v[k].queue != GES_Q_GRANTED),
							  "seed %llu step %d: lock %u/%llu answered but still queued",
							  (unsigned long long)seed, step, ev[i].node, (unsigned long long)ev[i].lkid);
				}
			}
		}
		for (uint32_t n = 1; n <= 3; n++) {
			ges_node_lost(c, n, now);
			ges_node_recovered(c, n, now);
		}
		cr_assert_eq(ges_core_locks(c), 0);
	}
}

static bool keep_none(void *arg, const uint8_t *name, size_t len)
{
	(void)arg, (void)name, (void)len;
	return false;
}

/* A new master rebuilt from its holders: held, nothing granted (not even what would fit),
 * the holders' modes as they were, the value block not valid; let go, the queue moves. */
Test(ges, a_rebuild_holds_grants_until_every_holder_has_told)
{
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	ges_drop(c, keep_none, NULL);
	cr_expect_eq(ges_core_locks(c), 0);
	cr_expect_eq(ges_core_resources(c), 0);
	ges_hold(c, true);
	cr_expect_eq(ges_rebuild(c, 1, 1, 1, R, strlen(R), GES_EX, GES_NONE, 0, 200), 0);
	cr_expect_eq(ges_rebuild(c, 1, 1, 1, R, strlen(R), GES_EX, GES_NONE, 0, 200), CORAL_EEXIST);
	cr_expect_eq(ges_rebuild(c, 2, 2, 1, R, strlen(R), GES_NONE, GES_PR, 0, 200), 0);
	cr_expect_eq(req(3, 1, GES_NL, GES_F_NOQUEUE), CORAL_EHELD, "granted during a rebuild");
	cr_expect_eq(req(3, 2, GES_NL, 0), CORAL_EPENDING, "granted during a rebuild");
	bool valid = true;
	uint8_t lvb[GES_LVB_MAX];
	struct ges_lock_view v[16];
	cr_assert_eq(ges_resource(c, R, strlen(R), v, 16, lvb, &valid), 3);
	cr_expect_not(valid, "a rebuilt value block is valid");
	cr_expect(v[0].node == 1 && v[0].gr == GES_EX && v[0].queue == GES_Q_GRANTED);
	ges_hold(c, false);
	cr_expect_eq(last_event('d', 2, 1), -1, "PR granted beside the rebuilt EX");
	cr_expect_eq(ges_unlock(c, 1, 1, NULL, 201), 0);
	cr_expect_gt(last_event('d', 2, 1), -1);
	cr_expect_gt(last_event('d', 3, 2), -1);
}

/* After a rebuild the value block is unknown until a holder's copy tells it: one held in CW,
 * PR, PW or EX is the value (nobody could have written since it read it); one in CR or NL is
 * not taken (a PW holder beside it could have written); a PW or EX holder lost first leaves
 * it not valid. */
Test(ges, a_rebuilt_value_block_is_taken_from_a_holder_that_no_writer_could_pass)
{
	uint8_t v[GES_LVB_MAX], got[GES_LVB_MAX];
	memset(v, 0x77, sizeof(v));
	bool valid = true;
	ges_hold(c, true);
	cr_expect_eq(ges_rebuild(c, 1, 1, 1, R, strlen(R), GES_CR, GES_NONE, 0, 200), 0);
	cr_expect_eq(ges_recover_lvb(c, R, strlen(R), GES_CR, v), CORAL_EINVAL, "a CR holder's copy taken");
	ges_resource(c, R, strlen(R), NULL, 0, got, &valid);
	cr_expect_not(valid);
	cr_expect_eq(ges_rebuild(c, 2, 2, 1, R, strlen(R), GES_PR, GES_NONE, 0, 200), 0);
	cr_expect_eq(ges_recover_lvb(c, R, strlen(R), GES_PR, v), 0);
	ges_resource(c, R, strlen(R), NULL, 0, got, &valid);
	cr_expect(valid);
	cr_expect_eq(memcmp(got, v, 32), 0);
	memset(v, 0x11, sizeof(v));
	cr_expect_eq(ges_recover_lvb(c, R, strlen(R), GES_PR, v), CORAL_EINVAL, "taken twice");
	cr_expect_eq(ges_recover_lvb(c, "other", 5, GES_PR, v), CORAL_ENOENT);
	/* an EX holder lost before any copy told the value: not valid, and no copy makes it so */
	const char *S = "TM-5";
	cr_expect_eq(ges_rebuild(c, 3, 3, 7, S, strlen(S), GES_EX, GES_NONE, 0, 200), 0);
	ges_node_lost(c, 3, 201);
	cr_expect_eq(ges_recover_lvb(c, S, strlen(S), GES_EX, v), CORAL_EINVAL);
	ges_resource(c, S, strlen(S), NULL, 0, got, &valid);
	cr_expect_not(valid);
	ges_hold(c, false);
}

/* A live old master hands its value block over as the map moves the resource: taken when the
 * resource is new here or its value unknown (put back by a holder), not once written here. */
Test(ges, a_handed_over_value_block_is_taken_unless_written_here_since)
{
	uint8_t v[GES_LVB_MAX], w[GES_LVB_MAX], got[GES_LVB_MAX];
	memset(v, 0x21, sizeof(v));
	memset(w, 0x42, sizeof(w));
	bool valid = false;
	cr_expect_eq(ges_handoff_lvb(c, "new", 3, v, true), 0);
	ges_resource(c, "new", 3, NULL, 0, got, &valid);
	cr_expect(valid && memcmp(got, v, 32) == 0, "a resource new here did not take it");
	ges_hold(c, true);
	cr_expect_eq(ges_rebuild(c, 1, 1, 1, R, strlen(R), GES_NL, GES_NONE, 0, 200), 0);
	cr_expect_eq(ges_handoff_lvb(c, R, strlen(R), v, true), 0, "an unknown value not taken");
	ges_hold(c, false);
	struct ges_answer a;
	cr_expect_eq(ges_request(c, 2, 2, 5, R, strlen(R), GES_EX, GES_F_VALBLK, 0, 201, &a), 0);
	cr_expect(a.lvb_valid && memcmp(a.lvb, v, 32) == 0);
	cr_expect_eq(ges_unlock(c, 2, 5, w, 202), 0);
	cr_expect_eq(ges_handoff_lvb(c, R, strlen(R), v, true), CORAL_EEXIST, "an older value over one written here");
	ges_resource(c, R, strlen(R), NULL, 0, got, &valid);
	cr_expect(valid && memcmp(got, w, 32) == 0);
}

/* ---- waits and the wait-for graph (wfg.c) -------------------------------------------- */

#include "wfg.h"

Test(ges, a_wait_is_an_edge_to_each_lock_in_its_way)
{
	cr_expect_eq(req(1, 1, GES_PR, 0), 0);
	cr_expect_eq(req(2, 1, GES_CR, 0), 0);
	cr_expect_eq(req(3, 1, GES_EX, 0), CORAL_EPENDING);
	cr_expect_eq(req(4, 1, GES_CR, 0), CORAL_EPENDING);
	struct ges_wait w[16];
	int n = ges_waits(c, R, strlen(R), w, 16);
	/* EX waits for the PR and the CR; the CR behind it waits for the EX queued before it */
	cr_assert_eq(n, 3);
	int to1 = 0, to2 = 0, to3 = 0;
	for (int i = 0; i < n; i++) {
		to1 += w[i].wnode == 3 && w[i].hnode == 1;
		to2 += w[i].wnode == 3 && w[i].hnode == 2;
		to3 += w[i].wnode == 4 && w[i].hnode == 3;
	}
	cr_expect(to1 == 1 && to2 == 1 && to3 == 1);
	cr_expect_eq(ges_victim(c, 3, 1), 0);
	int e = last_event('d', 3, 1);
	cr_assert_gt(e, -1);
	cr_expect_eq(ev[e].code, CORAL_EDEADLK);
	cr_expect_gt(last_event('d', 4, 1), -1, "the CR behind the victim was not granted");
	cr_expect_eq(ges_victim(c, 1, 1), CORAL_EINVAL, "a granted lock is no victim");
}

static struct wfg_edge edge(uint32_t wn, uint32_t hn, uint64_t lkid, uint64_t since, uint32_t held)
{
	struct wfg_edge e;
	memset(&e, 0, sizeof(e));
	e.waiter = (struct wfg_owner){wn, wn};
	e.holder = (struct wfg_owner){hn, hn};
	e.lkid = lkid;
	e.since_ms = since;
	e.held = held;
	return e;
}

/* Random reports from several masters: the graph (kept in waiter order, searched by
 * bisection) finds a cycle from a session exactly when one goes round through it by a
 * brute-force walk of every edge, its cycle is made of edges it has, and it lists each
 * waiter once. */
Test(ges, random_reports_find_exactly_the_cycles_a_walk_of_every_edge_finds)
{
	struct wfg *g = wfg_new(4096);
	cr_assert_not_null(g);
	uint64_t seed = 12345;
	enum { S = 12 };
	for (int round = 0; round < 3000; round++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		uint32_t master = 1 + (uint32_t)(seed >> 60) % 3, res = (uint32_t)(seed >> 50) % 8;
		uint32_t n = (uint32_t)(seed >> 40) % 4;
		struct wfg_edge e[4];
		for (uint32_t i = 0; i < n; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			uint32_t w = 1 + (uint32_t)(seed >> 33) % S, h = 1 + (uint32_t)(seed >> 45) % S;
			e[i] = edge(w, h, seed >> 20, (uint64_t)round, 0);
		}
		char name[4] = {'r', (char)('0' + res), 0, 0};
		cr_assert_eq(wfg_set(g, master, (const uint8_t *)name, 2, e, n), 0);
		/* brute force: reach[a][b] through every edge */
		static bool reach[S + 1][S + 1];
		memset(reach, 0, sizeof(reach));
		for (uint32_t i = 0; i < wfg_edges(g); i++) {
			const struct wfg_edge *x = wfg_edge_at(g, i);
			reach[x->waiter.node][x->holder.node] = true;
		}
		for (int k = 1; k <= S; k++)
			for (int a = 1; a <= S; a++)
				for (int b = 1; b <= S; b++)
					reach[a][b] |= reach[a][k] && reach[k][b];
		for (uint32_t s = 1; s <= S; s++) {
			struct wfg_edge cyc[WFG_CYCLE_MAX];
			int len = wfg_cycle_from(g, (struct wfg_owner){s, s}, cyc);
			if (!reach[s][s]) {
				cr_assert_eq(len, 0, "round %d: a cycle from %u that no walk finds", round, s);
				continue;
			}
			/* found from s, or a shorter one its chord cuts it down to */
			cr_assert_gt(len, 0, "round %d: no cycle found from %u, which a walk goes round", round, s);
			for (int k = 0; k < len; k++) {
				cr_assert(wfg_has(g, &cyc[k]), "round %d: a cycle edge the graph does not have", round);
				cr_assert_eq(cyc[k].holder.node, cyc[(k + 1) % len].waiter.node, "round %d: not a cycle", round);
			}
		}
		struct wfg_owner w[S + 1];
		uint32_t nw = wfg_waiters(g, w, S + 1);
		for (uint32_t a = 0; a < nw; a++)
			for (uint32_t b = a + 1; b < nw; b++)
				cr_assert(w[a].node != w[b].node, "round %d: waiter %u listed twice", round, w[a].node);
	}
	wfg_free(g);
}

Test(ges, the_wait_for_graph_finds_cycles_across_masters_and_nothing_else)
{
	struct wfg *g = wfg_new(16);
	cr_assert_not_null(g);
	struct wfg_edge cyc[WFG_CYCLE_MAX];
	struct wfg_edge ab = edge(1, 2, 11, 100, 1), bc = edge(2, 3, 21, 200, 1), ca = edge(3, 1, 31, 300, 1);
	cr_assert_eq(wfg_set(g, 1, (const uint8_t *)"r1", 2, &ab, 1), 0);
	cr_assert_eq(wfg_set(g, 2, (const uint8_t *)"r2", 2, &bc, 1), 0);
	cr_expect_eq(wfg_cycle_from(g, (struct wfg_owner){1, 1}, cyc), 0, "a chain is no cycle");
	cr_assert_eq(wfg_set(g, 3, (const uint8_t *)"r3", 2, &ca, 1), 0);
	int n = wfg_cycle_from(g, (struct wfg_owner){3, 3}, cyc);
	cr_assert_eq(n, 3);
	cr_expect_eq(cyc[wfg_victim(cyc, n)].lkid, 31, "the newest wait is not the victim");
	/* the report of r2 now says nothing waits there: the cycle is gone */
	cr_assert_eq(wfg_set(g, 2, (const uint8_t *)"r2", 2, NULL, 0), 0);
	cr_expect_eq(wfg_edges(g), 2);
	cr_expect_eq(wfg_cycle_from(g, (struct wfg_owner){3, 3}, cyc), 0);
	/* a cycle of two beside an unrelated one: the victim holds least */
	struct wfg_edge two[2] = {edge(4, 5, 41, 500, 3), edge(5, 4, 51, 400, 0)};
	cr_assert_eq(wfg_set(g, 1, (const uint8_t *)"r4", 2, &two[0], 1), 0);
	cr_assert_eq(wfg_set(g, 2, (const uint8_t *)"r5", 2, &two[1], 1), 0);
	n = wfg_cycle_from(g, (struct wfg_owner){4, 4}, cyc);
	cr_assert_eq(n, 2);
	cr_expect_eq(cyc[wfg_victim(cyc, n)].lkid, 51);
	wfg_drop_master(g, 2);
	cr_expect_eq(wfg_cycle_from(g, (struct wfg_owner){4, 4}, cyc), 0);
	struct wfg_edge many[20];
	for (int i = 0; i < 20; i++)
		many[i] = edge(9, 8, (uint64_t)i, 1, 0);
	cr_expect_eq(wfg_set(g, 7, (const uint8_t *)"r7", 2, many, 20), CORAL_EFULL);
	wfg_free(g);
}

/* A cycle's edges are checked against the masters' answers to a probe: the same wait, the
 * same session in its way; a wait granted and asked again (a new since) is not the same. */
Test(ges, an_edge_counts_only_as_the_same_wait_and_the_waiters_are_listed_once)
{
	struct wfg *g = wfg_new(16);
	cr_assert_not_null(g);
	struct wfg_edge two[2] = {edge(1, 2, 11, 100, 1), edge(1, 3, 11, 100, 1)};
	cr_assert_eq(wfg_set(g, 2, (const uint8_t *)"r1", 2, two, 2), 0);
	struct wfg_edge back = edge(2, 1, 21, 150, 1);
	cr_assert_eq(wfg_set(g, 1, (const uint8_t *)"r2", 2, &back, 1), 0);
	struct wfg_edge cyc[WFG_CYCLE_MAX];
	int n = wfg_cycle_from(g, (struct wfg_owner){1, 1}, cyc);
	cr_assert_eq(n, 2);
	for (int i = 0; i < n; i++)
		cr_expect(wfg_has(g, &cyc[i]), "edge %d of the cycle just found is not in the graph", i);
	/* r2's master answers: node 2's session waits again, a new wait since 400 */
	struct wfg_edge again = edge(2, 1, 21, 400, 1);
	cr_assert_eq(wfg_set(g, 1, (const uint8_t *)"r2", 2, &again, 1), 0);
	bool whole = true;
	for (int i = 0; i < n; i++)
		whole = whole && wfg_has(g, &cyc[i]);
	cr_expect_not(whole, "a cycle through a wait that ended is still taken whole");
	struct wfg_edge other = cyc[0];
	other.master = 3;
	cr_expect_not(wfg_has(g, &other), "an edge another master reported");
	struct wfg_owner w[4];
	cr_expect_eq(wfg_waiters(g, w, 4), 2, "node 1's session waits on two holders, listed once");
	cr_expect_eq(wfg_waiters(g, w, 1), 1);
	wfg_free(g);
}

/* S waits on r1 behind U's grant; T waits on r1 behind S's request (and U's grant), and U
 * waits on r2 that T holds. The search from S walks S -> U -> T -> S, but T -> U is a chord:
 * the deadlock is U <-> T, and S, holding nothing, must not be its victim. */
Test(ges, a_cycle_with_a_chord_is_cut_down_to_the_real_deadlock)
{
	struct wfg *g = wfg_new(16);
	cr_assert_not_null(g);
	struct wfg_edge r1[3] = {edge(1, 2, 11, 300, 0) /* S waits for U */,
				 edge(3, 2, 31, 200, 1) /* T waits for U */,
				 edge(3, 1, 31, 200, 1) /* T waits for S, queued ahead */};
	cr_assert_eq(wfg_set(g, 1, (const uint8_t *)"r1", 2, r1, 3), 0);
	struct wfg_edge r2 = edge(2, 3, 21, 100, 1);  /* U waits for T */
	cr_assert_eq(wfg_set(g, 2, (const uint8_t *)"r2", 2, &r2, 1), 0);
	struct wfg_edge cyc[WFG_CYCLE_MAX];
	int n = wfg_cycle_from(g, (struct wfg_owner){1, 1}, cyc);
	cr_assert_eq(n, 2, "the cycle found from S has %d waits, not the two of U and T", n);
	for (int i = 0; i < n; i++) {
		cr_expect_neq(cyc[i].waiter.node, 1, "S is in the cycle");
		cr_expect_eq(cyc[i].holder.node, cyc[(i + 1) % n].waiter.node, "the cycle does not close");
	}
	cr_expect_neq(cyc[wfg_victim(cyc, n)].waiter.node, 1);
	wfg_free(g);
}

/* A session's priority goes with its waits to the coordinator, and the victim is the wait of
 * the lowest priority, before what it holds or how new it is. */
Test(ges, the_lowest_priority_is_the_victim_first)
{
	cr_assert_eq(req(1, 11, GES_EX, 0), 0);
	cr_assert_eq(req(2, 21, GES_EX, 0), CORAL_EPENDING);
	cr_expect_eq(ges_set_priority(c, 2, 21, 101), CORAL_EINVAL);
	cr_expect_eq(ges_set_priority(c, 2, 99, 5), CORAL_ENOENT);
	cr_assert_eq(ges_set_priority(c, 2, 21, -7), 0);
	struct ges_wait w[4];
	cr_assert_eq(ges_waits(c, R, strlen(R), w, 4), 1);
	cr_expect_eq(w[0].prio, -7);
	/* the newest wait, holding least, would be chosen; a higher priority keeps it */
	struct wfg_edge cyc[2] = {edge(1, 2, 11, 100, 1), edge(2, 1, 21, 200, 0)};
	cr_expect_eq(wfg_victim(cyc, 2), 1);
	cyc[1].prio = 10;
	cr_expect_eq(wfg_victim(cyc, 2), 0, "the wait of priority 10 was chosen over one of 0");
	cyc[0].prio = 20;
	cr_expect_eq(wfg_victim(cyc, 2), 1);
	cr_assert_eq(ges_unlock(c, 1, 11, NULL, 100), 0);
	cr_assert_eq(ges_unlock(c, 2, 21, NULL, 100), 0);
}

/* Redo shipping's core (daemons/replicad/ship.c): resuming in the middle of a record from
 * what the standby says it has, a gap asked again once, duplicates skipped, the window and
 * the primary's durable LSN obeyed, a standby with another history refused. The seeded model
 * is tests/sim/test_ship_sim.c. */
#include "errors.h"
#include "ship.h"

#include <criterion/criterion.h>

Test(ship, resumes_in_the_middle_of_a_record_from_what_the_standby_has)
{
	struct ship_tx t;
	ship_tx_init(&t, 1 << 20, 4096);
	ship_tx_durable(&t, 13000);
	/* the standby has 5000 durable and 7123 written: a record was cut at 7123 */
	cr_assert_eq(ship_tx_connected(&t, 5000, 7123), 0);
	uint64_t from, to;
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 7123);
	cr_expect_eq(to, 7123 + 4096);
	ship_tx_sent(&t, to);
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 7123 + 4096);
	cr_expect_eq(to, 13000, "nothing past the primary's durable LSN is sent");
	ship_tx_sent(&t, to);
	cr_expect_not(ship_tx_next(&t, &from, &to));
	cr_expect_eq(ship_tx_ack(&t, 13000), 0);
	cr_expect_eq(t.acked, 13000);
	cr_expect_eq(ship_tx_ack(&t, 13001), CORAL_EINVAL, "an ack past what was sent");
	/* the standby side of the same */
	struct ship_rx r;
	ship_rx_init(&r, 5000);
	ship_rx_written(&r, 7123);
	uint64_t skip;
	cr_expect_eq(ship_rx_range(&r, 7123, 4096, &skip), SHIP_APPEND);
	cr_expect_eq(skip, 0);
}

Test(ship, a_gap_is_asked_again_once_and_then_filled)
{
	struct ship_rx r;
	ship_rx_init(&r, 1000);
	uint64_t skip;
	cr_expect_eq(ship_rx_range(&r, 1000, 500, &skip), SHIP_APPEND);
	ship_rx_written(&r, 1500);
	/* 1500..2000 was lost on the way */
	cr_expect_eq(ship_rx_range(&r, 2000, 500, &skip), SHIP_GAP);
	cr_expect_eq(ship_rx_range(&r, 2500, 500, &skip), SHIP_GAP_ASKED, "asked twice for the same gap");
	struct ship_tx t;
	ship_tx_init(&t, 1 << 20, 500);
	ship_tx_durable(&t, 3000);
	cr_assert_eq(ship_tx_connected(&t, 1000, 1000), 0);
	for (int i = 0; i < 4; i++)
		ship_tx_sent(&t, 1500 + 500 * (uint64_t)i);
	cr_expect_eq(ship_tx_resend(&t, 1500), 0);
	uint64_t from, to;
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 1500);
	cr_expect_eq(t.gaps, 1);
	cr_expect_eq(ship_rx_range(&r, from, to - from, &skip), SHIP_APPEND);
	ship_rx_written(&r, to);
	cr_expect_eq(r.received, 2000);
	cr_expect_not(r.asked);
	/* a resend it does not want: not between what it acknowledged and what was sent */
	cr_expect_eq(ship_tx_resend(&t, 999), CORAL_EINVAL);
	cr_expect_eq(ship_tx_resend(&t, 999999), CORAL_EINVAL);
}

Test(ship, duplicates_and_overlaps_are_skipped)
{
	struct ship_rx r;
	ship_rx_init(&r, 0);
	uint64_t skip;
	cr_expect_eq(ship_rx_range(&r, 0, 100, &skip), SHIP_APPEND);
	ship_rx_written(&r, 100);
	cr_expect_eq(ship_rx_range(&r, 0, 100, &skip), SHIP_DUPLICATE);
	cr_expect_eq(ship_rx_range(&r, 50, 100, &skip), SHIP_APPEND);
	cr_expect_eq(skip, 50);
	ship_rx_written(&r, 150);
	ship_rx_synced(&r, 1000);
	cr_expect_eq(r.durable, 150, "synced past what was written");
}

Test(ship, the_window_bounds_what_is_unacknowledged)
{
	struct ship_tx t;
	ship_tx_init(&t, 1000, 400);
	ship_tx_durable(&t, 100000);
	cr_assert_eq(ship_tx_connected(&t, 0, 0), 0);
	uint64_t from, to, sent = 0;
	while (ship_tx_next(&t, &from, &to)) {
		cr_assert_eq(from, sent);
		cr_assert_leq(to - from, 400);
		ship_tx_sent(&t, to);
		sent = to;
	}
	cr_expect_eq(sent, 1000, "sent %llu with a window of 1000", (unsigned long long)sent);
	cr_expect_eq(ship_tx_ack(&t, 2000), CORAL_EINVAL, "an ack past what was sent");
	cr_expect_eq(ship_tx_ack(&t, 600), 0);
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 1000);
	cr_expect_eq(to, 1400);
	ship_tx_disconnected(&t);
	cr_expect_not(ship_tx_next(&t, &from, &to), "sent while not connected");
}

Test(ship, a_standby_with_another_history_is_refused)
{
	struct ship_tx t;
	ship_tx_init(&t, 1000, 400);
	ship_tx_durable(&t, 5000);
	cr_expect_eq(ship_tx_connected(&t, 4000, 6000), CORAL_EDIVERGED);
	cr_expect_not(t.connected);
	cr_expect_eq(ship_tx_connected(&t, 6000, 4000), CORAL_EINVAL);
	cr_expect_eq(ship_tx_connected(&t, 5000, 5000), 0);
}

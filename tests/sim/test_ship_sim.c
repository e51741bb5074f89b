/* The seeded model of redo shipping (daemons/replicad/ship.c): a 200,000-byte thread made
 * durable bit by bit on the primary and shipped over a link that loses one range in fifteen,
 * duplicates one in ten, delivers one in eight out of order and breaks now and then (the
 * standby's hello resumes it), with both sides' timers (the standby asks again for a gap
 * still open; the primary, hearing nothing, sends again from what is acknowledged). Checked
 * at every step: nothing sent past the primary's durable LSN or the window, no ack past the
 * standby's durable copy, the bytes the standby has already equal to what comes again; every
 * 1000 steps and at the end, the copy equal to the primary's thread; and at the end, all of
 * it there (200 seeds). */
#include "errors.h"
#include "ship.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define THREAD_BYTES 200000
#define LINK_MAX 64

struct range {
	uint64_t from, to;
};

struct model {
	uint64_t seed;
	uint8_t *primary, *standby;
	struct ship_tx tx;
	struct ship_rx rx;
	struct range link[LINK_MAX];   /* primary -> standby, in flight */
	int nlink;
	uint64_t acks[LINK_MAX];       /* standby -> primary: acks (the high bit: a resend ask) */
	int nacks;
};

static uint64_t rnd(struct model *m)
{
	m->seed ^= m->seed << 13;
	m->seed ^= m->seed >> 7;
	m->seed ^= m->seed << 17;
	return m->seed;
}

#define ASK (1ull << 63)

static void standby_receives(struct model *m, struct range g)
{
	uint64_t skip;
	switch (ship_rx_range(&m->rx, g.from, g.to - g.from, &skip)) {
	case SHIP_APPEND:
		/* what it has already must be the same bytes: one history */
		cr_assert_eq(memcmp(m->standby + g.from, m->primary + g.from, skip), 0, "seed: bytes differ");
		memcpy(m->standby + g.from + skip, m->primary + g.from + skip, g.to - g.from - skip);
		ship_rx_written(&m->rx, g.to);
		break;
	case SHIP_GAP:
		if (m->nacks < LINK_MAX)
			m->acks[m->nacks++] = ASK | m->rx.received;
		break;
	case SHIP_DUPLICATE:
	case SHIP_GAP_ASKED:
		break;
	}
}

static void reconnect(struct model *m)
{
	m->nlink = 0;
	m->nacks = 0;
	ship_tx_disconnected(&m->tx);
	ship_rx_disconnected(&m->rx);
	cr_assert_eq(ship_tx_connected(&m->tx, m->rx.durable, m->rx.received), 0);
}

static void run_model(uint64_t seed)
{
	struct model *m = calloc(1, sizeof(*m));
	cr_assert_not_null(m);
	m->seed = seed * 2654435761u + 1;
	m->primary = malloc(THREAD_BYTES);
	m->standby = calloc(1, THREAD_BYTES);
	cr_assert(m->primary && m->standby);
	for (int i = 0; i < THREAD_BYTES; i++)
		m->primary[i] = (uint8_t)rnd(m);
	ship_tx_init(&m->tx, 1000 + rnd(m) % 20000, 1 + rnd(m) % 3000);
	ship_rx_init(&m->rx, 0);
	cr_assert_eq(ship_tx_connected(&m->tx, 0, 0), 0);
	uint64_t durable = 0;
	for (int step = 0; step < 200000 && m->rx.durable < THREAD_BYTES; step++) {
		uint64_t r = rnd(m) % 100;
		if (r < 20 && durable < THREAD_BYTES) {
			durable += rnd(m) % 5000;
			if (durable > THREAD_BYTES)
				durable = THREAD_BYTES;
			ship_tx_durable(&m->tx, durable);
		} else if (r < 45) {
			uint64_t from, to;
			if (ship_tx_next(&m->tx, &from, &to) && m->nlink < LINK_MAX) {
				cr_assert_leq(to, durable, "seed %llu: sent past the primary's durable LSN",
					      (unsigned long long)seed);
				cr_assert_leq(to - m->tx.acked, m->tx.window);
				ship_tx_sent(&m->tx, to);
				m->link[m->nlink++] = (struct range){from, to};
				if (rnd(m) % 10 == 0 && m->nlink < LINK_MAX) /* duplicated */
					m->link[m->nlink++] = (struct range){from, to};
			}
		} else if (r < 75 && m->nlink > 0) {
			/* delivered, mostly in order, sometimes another one first; one in 15 lost */
			int i = rnd(m) % 8 == 0 ? (int)(rnd(m) % (uint64_t)m->nlink) : 0;
			struct range g = m->link[i];
			memmove(&m->link[i], &m->link[i + 1], (size_t)(m->nlink - i - 1) * sizeof(g));
			m->nlink--;
			if (rnd(m) % 15 != 0)
				standby_receives(m, g);
		} else if (r < 85) {
			ship_rx_synced(&m->rx, m->rx.received - (rnd(m) % 2 ? 0 : (m->rx.received - m->rx.durable) / 2));
			if (m->nacks < LINK_MAX)
				m->acks[m->nacks++] = m->rx.durable;
		} else if (r < 97 && m->nacks > 0) {
			uint64_t a = m->acks[0];
			memmove(&m->acks[0], &m->acks[1], (size_t)(m->nacks - 1) * sizeof(a));
			m->nacks--;
			if (a & ASK) {
				if (ship_tx_resend(&m->tx, a & ~ASK) != 0)
					reconnect(m); /* an ask the primary cannot take: start again from the hello */
			} else {
				cr_assert_eq(ship_tx_ack(&m->tx, a), 0, "seed %llu: an ack past what was sent",
					     (unsigned long long)seed);
			}
		} else if (r >= 97 && rnd(m) % 20 == 0) {
			reconnect(m);
		}
		/* every step: the copy is a prefix of the primary's thread, acks never outrun it */
		cr_assert_leq(m->rx.durable, m->rx.received);
		cr_assert_leq(m->tx.acked, m->rx.durable, "seed %llu: acknowledged past the standby's durable copy",
			      (unsigned long long)seed);
		if (step % 1000 == 0)
			cr_assert_eq(memcmp(m->standby, m->primary, m->rx.received), 0, "seed %llu: copies differ",
				     (unsigned long long)seed);
		/* the timers: the standby asks again for a gap still open; the primary, hearing
		 * nothing while bytes are outstanding, sends again from what is acknowledged */
		if (rnd(m) % 100 == 0)
			ship_rx_tick(&m->rx);
		if (m->nlink == 0 && rnd(m) % 100 == 0)
			ship_tx_stalled(&m->tx);
	}
	cr_expect_eq(m->rx.durable, THREAD_BYTES, "seed %llu: the standby has %llu of %d bytes (sender: durable %llu, "
		     "acked %llu, next %llu, window %llu, %s; receiver: received %llu%s; %d in flight, %d acks)",
		     (unsigned long long)seed, (unsigned long long)m->rx.durable, THREAD_BYTES,
		     (unsigned long long)m->tx.durable, (unsigned long long)m->tx.acked, (unsigned long long)m->tx.next,
		     (unsigned long long)m->tx.window, m->tx.connected ? "connected" : "not connected",
		     (unsigned long long)m->rx.received, m->rx.asked ? ", asked" : "", m->nlink, m->nacks);
	cr_expect_eq(memcmp(m->standby, m->primary, THREAD_BYTES), 0, "seed %llu: the copy differs",
		     (unsigned long long)seed);
	free(m->primary);
	free(m->standby);
	free(m);
}

Test(ship, model_over_a_lossy_link_with_reconnects_200_seeds)
{
	for (uint64_t seed = 1; seed <= 200; seed++)
		run_model(seed);
}

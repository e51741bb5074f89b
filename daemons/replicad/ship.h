/* Redo shipping to a standby, the protocol's core (no I/O): what a primary's replicad sends
 * of its redo thread and what the standby's keeps. The unit shipped is a range of the
 * thread's byte stream, [from, to) in LSNs, not a record: a connection that breaks in the
 * middle of a record resumes in the middle of it, from what the standby has durable, which it
 * says first (its hello). Only what is durable on the primary is sent; at most a window of
 * bytes is unacknowledged; the standby appends a range only where its copy ends, asks again
 * from there when one comes after a gap, and skips what it has already (a resend). A
 * standby that claims more of a thread than the primary has is a copy of another history: it
 * is refused, never written over.
 *
 * Issue 20's first piece: this core and its tests (tests/unit/test_ship.c, the seeded model
 * in tests/sim). The wiring (replicad's connection to a standby cluster, its files, the
 * apply) is not written yet. */
#ifndef CORAL_SHIP_H
#define CORAL_SHIP_H

#include <stdbool.h>
#include <stdint.h>

/* The sending side, one per standby and thread. */
struct ship_tx {
	uint64_t durable;     /* the primary's durable LSN: nothing past it is sent */
	uint64_t acked;       /* the standby has it durable up to here */
	uint64_t next;        /* the next byte to send */
	uint64_t high;        /* the highest sent on this connection (a resend rewinds next only) */
	uint64_t window;      /* bytes sent and not yet acknowledged, at most */
	uint64_t max_chunk;   /* bytes in one range, at most */
	bool connected;
	/* counters */
	uint64_t sent_bytes, resent_bytes, gaps, resumes;
};

void ship_tx_init(struct ship_tx *t, uint64_t window, uint64_t max_chunk);
/* The primary's log writer made the thread durable up to lsn. */
void ship_tx_durable(struct ship_tx *t, uint64_t lsn);
/* A connection to the standby, whose copy of the thread is durable up to durable and written
 * up to received (its hello): sending resumes at received. CORAL_EDIVERGED if the copy goes
 * past what the primary has durable (another history); CORAL_EINVAL if durable > received. */
int ship_tx_connected(struct ship_tx *t, uint64_t durable, uint64_t received);
void ship_tx_disconnected(struct ship_tx *t);
/* The next range to send, if any (connected, something durable not yet sent, room in the
 * window); the caller sends it, then calls ship_tx_sent. */
bool ship_tx_next(const struct ship_tx *t, uint64_t *from, uint64_t *to);
void ship_tx_sent(struct ship_tx *t, uint64_t to);
/* The standby has up to lsn durable. CORAL_EINVAL if that is past what was sent. An ack
 * past a rewound next (a resend asked, then the missing range came late after all) moves next
 * on: what is acknowledged is not sent again. */
int ship_tx_ack(struct ship_tx *t, uint64_t lsn);
/* The standby found a gap: it has up to lsn and wants the rest again from there.
 * CORAL_EINVAL if lsn is not between what it acknowledged and the highest sent. */
int ship_tx_resend(struct ship_tx *t, uint64_t lsn);

/* Nothing acknowledged for a while with bytes outstanding (lost on the way, or the ask for
 * them lost): send again from what is acknowledged. */
void ship_tx_stalled(struct ship_tx *t);

/* The receiving side, one per thread on the standby. */
struct ship_rx {
	uint64_t received;    /* its copy of the thread ends here (written, maybe not durable) */
	uint64_t durable;     /* ... and is durable up to here */
	bool asked;           /* a resend from `received` was asked and has not come yet */
	uint64_t gaps, dup_bytes;
};

enum ship_verdict {
	SHIP_APPEND,          /* write bytes [skip, len) of the range at `received` */
	SHIP_DUPLICATE,       /* it has all of it: nothing to write */
	SHIP_GAP,             /* it starts past `received`: ask again from `received` (once) */
	SHIP_GAP_ASKED,       /* the same, already asked: drop it and wait */
};

/* What the standby starts from: its copy durable up to has (after a restart, its files'
 * whole records). */
void ship_rx_init(struct ship_rx *r, uint64_t has);
/* A range [from, from + len) came. For SHIP_APPEND, *skip bytes of it are had already; the
 * caller writes the rest at `received` and calls ship_rx_written. */
enum ship_verdict ship_rx_range(struct ship_rx *r, uint64_t from, uint64_t len, uint64_t *skip);
void ship_rx_written(struct ship_rx *r, uint64_t to);
/* The ask's timer: a gap still open is asked again at the next range past it. */
void ship_rx_tick(struct ship_rx *r);
/* Its copy was synced up to lsn (<= received): what it acknowledges. */
void ship_rx_synced(struct ship_rx *r, uint64_t lsn);
/* The connection broke (the standby's process lives: what it wrote stays): what was asked
 * is forgotten; the next hello says durable and received. */
void ship_rx_disconnected(struct ship_rx *r);

#endif

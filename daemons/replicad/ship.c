/* Redo shipping, the protocol's core (ship.h). */
#include "ship.h"

#include "errors.h"

void ship_tx_init(struct ship_tx *t, uint64_t window, uint64_t max_chunk)
{
	*t = (struct ship_tx){.window = window ? window : 1, .max_chunk = max_chunk ? max_chunk : 1};
}

void ship_tx_durable(struct ship_tx *t, uint64_t lsn)
{
	if (lsn > t->durable)
		t->durable = lsn;
}

int ship_tx_connected(struct ship_tx *t, uint64_t durable, uint64_t received)
{
	if (durable > received)
		return CORAL_EINVAL;
	if (received > t->durable)
		return CORAL_EDIVERGED;
	t->connected = true;
	t->acked = durable;
	if (received < t->next)
		t->resent_bytes += t->next - received;
	t->next = received;
	t->high = received;
	t->resumes++;
	return 0;
}

void ship_tx_disconnected(struct ship_tx *t) { t->connected = false; }

bool ship_tx_next(const struct ship_tx *t, uint64_t *from, uint64_t *to)
{
	if (!t->connected || t->next >= t->durable || t->next - t->acked >= t->window)
		return false;
	uint64_t end = t->durable;
	if (end - t->next > t->max_chunk)
		end = t->next + t->max_chunk;
	if (end - t->acked > t->window)
		end = t->acked + t->window;
	*from = t->next;
	*to = end;
	return true;
}

void ship_tx_sent(struct ship_tx *t, uint64_t to)
{
	if (to > t->next) {
		t->sent_bytes += to - t->next;
		t->next = to;
	}
	if (t->next > t->high)
		t->high = t->next;
}

int ship_tx_ack(struct ship_tx *t, uint64_t lsn)
{
	if (lsn > t->high)
		return CORAL_EINVAL;
	if (lsn > t->acked)
		t->acked = lsn;
	if (t->next < t->acked)
		t->next = t->acked;
	return 0;
}

int ship_tx_resend(struct ship_tx *t, uint64_t lsn)
{
	if (lsn < t->acked || lsn > t->high)
		return CORAL_EINVAL;
	if (lsn < t->next)
		t->resent_bytes += t->next - lsn;
	t->next = lsn;
	t->gaps++;
	return 0;
}

void ship_tx_stalled(struct ship_tx *t)
{
	if (t->next > t->acked) {
		t->resent_bytes += t->next - t->acked;
		t->next = t->acked;
		t->gaps++;
	}
}

void ship_rx_tick(struct ship_rx *r) { r->asked = false; }

void ship_rx_init(struct ship_rx *r, uint64_t has) { *r = (struct ship_rx){.received = has, .durable = has}; }

enum ship_verdict ship_rx_range(struct ship_rx *r, uint64_t from, uint64_t len, uint64_t *skip)
{
	*skip = 0;
	if (from > r->received) {
		r->gaps++;
		if (r->asked)
			return SHIP_GAP_ASKED;
		r->asked = true;
		return SHIP_GAP;
	}
	uint64_t end = from + len;
	if (end <= r->received) {
		r->dup_bytes += len;
		return SHIP_DUPLICATE;
	}
	*skip = r->received - from;
	r->dup_bytes += *skip;
	r->asked = false; /* the range asked for (or one covering it) came */
	return SHIP_APPEND;
}

void ship_rx_written(struct ship_rx *r, uint64_t to)
{
	if (to > r->received)
		r->received = to;
}

void ship_rx_synced(struct ship_rx *r, uint64_t lsn)
{
	if (lsn > r->received)
		lsn = r->received;
	if (lsn > r->durable)
		r->durable = lsn;
}

void ship_rx_disconnected(struct ship_rx *r) { r->asked = false; }

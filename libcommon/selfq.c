/* The self-delivery queue (see selfq.h): a ring of copies and one libevent event made active
 * when there is something to deliver. */
#include "selfq.h"
#include "errors.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

struct selfmsg {
	uint8_t type;
	uint8_t *data;
	size_t len;
};

struct coral_selfq {
	struct event *ev;
	coral_selfq_fn fn;
	void *arg;
	size_t cap, head, n;
	uint64_t dropped;
	struct selfmsg msgs[];
};

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral_selfq *q = arg;
	/* only what was queued before this round: handlers may queue more */
	size_t n = q->n;
	while (n-- > 0 && q->n > 0) {
		struct selfmsg m = q->msgs[q->head];
		q->head = (q->head + 1) % q->cap;
		q->n--;
		q->fn(q->arg, m.type, m.data, m.len);
		free(m.data);
	}
	if (q->n > 0)
		event_active(q->ev, EV_READ, 0);
}

struct coral_selfq *coral_selfq_new(struct event_base *base, size_t capacity, coral_selfq_fn fn, void *arg)
{
	struct coral_selfq *q = calloc(1, sizeof(*q) + capacity * sizeof(struct selfmsg));
	if (q == NULL)
		return NULL;
	q->cap = capacity;
	q->fn = fn;
	q->arg = arg;
	q->ev = event_new(base, -1, 0, on_ready, q);
	if (q->ev == NULL) {
		free(q);
		return NULL;
	}
	return q;
}

int coral_selfq_push(struct coral_selfq *q, uint8_t type, const void *data, size_t len)
{
	if (q->n == q->cap) {
		q->dropped++;
		return CORAL_EBUSY;
	}
	struct selfmsg *m = &q->msgs[(q->head + q->n) % q->cap];
	m->data = malloc(len ? len : 1);
	if (m->data == NULL)
		return CORAL_ENOMEM;
	if (len)
		memcpy(m->data, data, len);
	m->len = len;
	m->type = type;
	q->n++;
	event_active(q->ev, EV_READ, 0);
	return 0;
}

uint64_t coral_selfq_dropped(const struct coral_selfq *q) { return q->dropped; }

void coral_selfq_free(struct coral_selfq *q)
{
	if (q == NULL)
		return;
	while (q->n > 0) {
		free(q->msgs[q->head].data);
		q->head = (q->head + 1) % q->cap;
		q->n--;
	}
	event_free(q->ev);
	free(q);
}

/* A daemon's messages to itself: a core that sends to its own node (the master of a resource
 * is often the requester) gets the message back from the event loop, not from inside the
 * send, so handlers never re-enter. Bounded: past the capacity a send is refused as busy. */
#ifndef CORAL_SELFQ_H
#define CORAL_SELFQ_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct coral_selfq;

typedef void (*coral_selfq_fn)(void *arg, uint8_t type, const uint8_t *data, size_t len);

struct coral_selfq *coral_selfq_new(struct event_base *base, size_t capacity, coral_selfq_fn fn, void *arg);
/* Copies the message; CORAL_EBUSY at capacity (counted), CORAL_ENOMEM. */
int coral_selfq_push(struct coral_selfq *q, uint8_t type, const void *data, size_t len);
uint64_t coral_selfq_dropped(const struct coral_selfq *q);
/* Messages still queued are dropped. */
void coral_selfq_free(struct coral_selfq *q);

#endif

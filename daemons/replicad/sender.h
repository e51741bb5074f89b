/* One standby as a primary node's replicad ships to it (sender.c), and the set of them
 * (primary.c: the slot over all of them, the gate for commits, the mode's history). */
#ifndef CORAL_REPLICAD_SENDER_H
#define CORAL_REPLICAD_SENDER_H

#include "repl.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coral_daemon;
struct coral_redo;
struct sender;
struct ship_set;

struct sender *sender_new(struct coral_daemon *d, struct ship_set *set, struct coral_redo *redo, const char *host,
			  int port, int *rc);
void sender_free(struct sender *s);
/* What is durable may be sent (the log writer moved). */
void sender_pump(struct sender *s);

bool sender_connected(const struct sender *s);
uint64_t sender_acked(const struct sender *s);
/* The standby's [cluster] name ("" before its first challenge). */
const char *sender_name(const struct sender *s);
uint64_t sender_lag_ms(struct sender *s, uint64_t now_ns);
/* The slot: whether this standby holds the thread's recycling, and from where; past
 * slot_max_bytes it is dropped (logged, counted, in the history). */
bool sender_slot(struct sender *s, uint64_t durable, uint64_t *from);
/* Its status entry. */
void sender_status(struct sender *s, Coral__StandbyThread *t);

/* Whether the standby has answered a hello since the start (welcomed or refused). */
bool sender_answered(const struct sender *s);

/* The set, called by a sender when what it knows changed (an ack, a connection). */
void ship_set_changed(struct ship_set *set);
/* A standby refused this node because it took over at site epoch `epoch`: the node is
 * fenced, for good. */
void ship_set_fence(struct ship_set *set, uint64_t epoch, const char *why);
/* This node's site epoch (the hello says it). */
uint64_t ship_set_epoch(const struct ship_set *set);

#endif

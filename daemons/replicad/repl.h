/* replicad's two sides of redo shipping, wired on its event loop (the protocol's core is
 * ship.c, the messages repl_msg.c).
 *
 * The sender (a primary node): one connection to [replication] standby for this node's
 * redo thread. The standby speaks first (a challenge), the sender proves the token and says
 * which thread, the standby proves it too and says what its copy holds; then the durable
 * bytes of the thread are read from its files in shared storage and sent in ranges, at most
 * a window unacknowledged, lz4 when it shrinks them, and the standby acknowledges what it
 * made durable. The sender holds the log writer's recycling at what the standby has (the
 * slot) up to [replication] slot_max_bytes.
 *
 * The receiver (a standby node): listens on base_port+7; one connection per primary thread
 * (a newer one for the same thread replaces the older); the copies are kept under
 * SHARED_DIR/standby/PRIMARY_CLUSTER/redo/thread_N, appended where they end, synced once
 * per batch of messages, acknowledged after the sync. */
#ifndef CORAL_REPLICAD_REPL_H
#define CORAL_REPLICAD_REPL_H

#include <stdint.h>

struct coral_daemon;
struct coral_redo;
struct log_writer;
struct sender;
struct receiver;

/* NULL with nothing to do (no standby named), or on error (logged; *rc the code). */
struct sender *sender_new(struct coral_daemon *d, struct coral_redo *redo, struct log_writer *w, int *rc);
/* The log writer made more durable (any thread may call it). */
void sender_kick(struct sender *s);
void sender_free(struct sender *s);

struct receiver *receiver_new(struct coral_daemon *d, int *rc);
void receiver_free(struct receiver *r);

/* The threads each side ships or keeps, as status entries (at most max; strings point into
 * the side's state, valid until its next event). */
#include "repl.pb-c.h"
#include <stddef.h>
size_t sender_threads(struct sender *s, Coral__StandbyThread *out, size_t max);
size_t receiver_threads(struct receiver *r, Coral__StandbyThread *out, size_t max, uint64_t *bad_hellos);

#endif

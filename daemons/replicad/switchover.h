/* A switchover on the standby (switchover.c): every primary thread closed and here to its
 * end, then a takeover with nothing missing; the old primary fenced. */
#ifndef CORAL_REPLICAD_SWITCHOVER_H
#define CORAL_REPLICAD_SWITCHOVER_H

#include <stddef.h>
#include <stdint.h>

struct coral_daemon;
struct receiver;
struct applier;
struct switchover;

/* NULL on a node that is not a standby (no receiver or apply). */
struct switchover *switchover_new(struct coral_daemon *d, struct receiver *r, struct applier *a);
void switchover_free(struct switchover *s);
/* Begins one for coralctl's request (conn_id, req_id: answered at its end, within wait_ms,
 * 0: 30 s); 0, or an error and why in msg (nothing was asked of the primary). */
int switchover_start(struct switchover *s, uint64_t conn_id, uint64_t req_id, uint32_t wait_ms, char *msg,
		     size_t msgsz);

#endif

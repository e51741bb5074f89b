/* lmdd's messages (proto/ges.proto): the one interconnect type lmdd uses, the kinds of GES
 * message it carries, and every pack and unpack of them. Nothing else in lmdd calls
 * protobuf-c: a message that does not decode is refused here, counted and logged. */
#ifndef CORAL_LMDD_GES_MSG_H
#define CORAL_LMDD_GES_MSG_H

#include "ges.h"
#include "ges.pb-c.h"
#include "net.h"

#include <stdbool.h>

#include <stddef.h>
#include <stdint.h>

#define GES_NET_MSG CORAL_NET_APP     /* the one interconnect message type lmdd uses */

enum ges_kind {
	GES_REQUEST = 1, GES_CONVERT, GES_UNLOCK, GES_CANCEL, GES_ANSWER, GES_BAST, GES_REBUILD, GES_REBUILD_DONE,
	GES_WAITS, GES_VICTIM, GES_PROBE, GES_UNBAST, GES_NKINDS
};
const char *ges_kind_name(int kind);

/* The message, or NULL (refused: counted in *refused). Free with ges_msg_free. */
Coral__GesMsg *ges_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused);
void ges_msg_free(Coral__GesMsg *m);
/* m packed into stack when it fits (stacksz bytes), else into a new buffer to free; NULL
 * when out of memory. */
uint8_t *ges_msg_pack(const Coral__GesMsg *m, uint8_t *stack, size_t stacksz, size_t *len);

#define GES_MSG_LVB 32   /* the value block's bytes on the wire */

/* A requester's REQUEST, CONVERT, UNLOCK or CANCEL from node `from`, checked and applied to
 * the master's core. True if it is answered now: *a (an ANSWER naming the kind it answers;
 * its value block points into ans); false if queued (ops.done answers later). */
bool ges_msg_apply(struct ges_core *c, uint32_t from, const Coral__GesMsg *g, uint64_t now_ms, Coral__GesMsg *a,
		   struct ges_answer *ans);

#endif

/* lmsd's messages (proto/gcs.proto): the one interconnect type lmsd uses, the kinds of GCS
 * message it carries, and every pack and unpack of them. Nothing else in lmsd calls
 * protobuf-c: a message that does not decode is refused here, counted and logged. */
#ifndef CORAL_LMSD_GCS_MSG_H
#define CORAL_LMSD_GCS_MSG_H

#include "gcs.pb-c.h"
#include "net.h"

#include <stddef.h>
#include <stdint.h>

#define GCS_NET_MSG CORAL_NET_APP     /* the one interconnect message type lmsd uses */

enum gcs_kind {
	GCS_REQ = 1, GCS_GRANT, GCS_FWD, GCS_BLOCK, GCS_ACK, GCS_INV, GCS_INV_ACK, GCS_NOT_HERE,
	GCS_WRITTEN, GCS_PI_DROP, GCS_PI_ACK, GCS_RELEASE, GCS_RETRY, GCS_CR_REQ, GCS_CR_FWD,
	GCS_CR_BLOCK, GCS_ACKED, GCS_REPORT_REQ, GCS_REPORT, GCS_REPORT_END, GCS_QUERY, GCS_NKINDS
};
const char *gcs_kind_name(int kind);

/* The message, or NULL (refused: counted in *refused). Free with gcs_msg_free. */
Coral__GcsMsg *gcs_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused);
void gcs_msg_free(Coral__GcsMsg *m);
/* m packed into stack when it fits (stacksz bytes), else into a new buffer to free; NULL
 * when out of memory. */
uint8_t *gcs_msg_pack(const Coral__GcsMsg *m, uint8_t *stack, size_t stacksz, size_t *len);

#endif

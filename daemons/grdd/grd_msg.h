/* grdd's messages (proto/grd.proto): the interconnect types, and every pack and unpack of
 * them and of the map record grdd keeps in raftd's store. Nothing else in grdd calls
 * protobuf-c: a message that does not decode is refused here, counted and logged. */
#ifndef CORAL_GRDD_GRD_MSG_H
#define CORAL_GRDD_GRD_MSG_H

#include "grd.pb-c.h"
#include "net.h"

#include <stddef.h>
#include <stdint.h>

enum grd_msg {
	GRD_MSG_REQUEST = CORAL_NET_APP,
	GRD_MSG_REPLY,
	GRD_MSG_FREEZE,
	GRD_MSG_SHIP,
	GRD_MSG_READY,
	GRD_MSG_ABORT,
	GRD_MSG_REPORT_REQ,
	GRD_MSG_REPORT,
	GRD_MSG_PROPOSE,
	GRD_MSG_REMASTER_FWD,
	GRD_MSG_REMASTER_ANS,
};

/* The key of the map record in raftd's config store. */
#define GRD_MAP_KEY CORAL_GRD_MAP_KEY

/* A message of that type, or NULL (refused: counted in *refused). Free with grd_msg_free. */
const ProtobufCMessage *grd_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused);
void grd_msg_free(const void *m);
/* m packed into a new buffer (free it), or NULL. */
uint8_t *grd_msg_pack(const ProtobufCMessage *m, size_t *len);
size_t grd_msg_size(const ProtobufCMessage *m);

/* The map record. */
Coral__GrdMapRecord *grd_record_decode(const uint8_t *buf, size_t len);
uint8_t *grd_record_pack(const Coral__GrdMapRecord *r, size_t *len);
/* A deep copy that can be edited. */
Coral__GrdMapRecord *grd_record_copy(const Coral__GrdMapRecord *r);
void grd_record_free(Coral__GrdMapRecord *r);
/* Sets the record's detail in an edited copy: 0 or CORAL_ENOMEM. (An absent string of a
 * decoded message is protobuf-c's shared empty string, never to be freed: the fuzzer found
 * grdd freeing it for a record whose detail was empty.) */
int grd_record_set_detail(Coral__GrdMapRecord *r, const char *detail);

#endif

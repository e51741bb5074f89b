/* raftd's messages (proto/raft.proto): the interconnect types, and every pack and unpack of
 * them, of the registry's commands and of its snapshot. Nothing else in raftd calls
 * protobuf-c: a message that does not decode is refused here, counted and logged. */
#ifndef CORAL_RAFTD_RAFT_MSG_H
#define CORAL_RAFTD_RAFT_MSG_H

#include "net.h"
#include "raft.h"
#include "raft.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* raftd's interconnect types */
enum { MSG_RAFT = CORAL_NET_APP, MSG_BEAT, MSG_FORWARD, MSG_FORWARD_RESP };

/* A Raft message to and from its wire form; a decoded one owns its entries and snapshot
 * (raft_msg_free). decode refuses (CORAL_EDECODE, counted) what does not parse. */
int raft_msg_encode(const struct raft_msg *m, uint8_t **buf, size_t *len);
int raft_msg_decode(const uint8_t *data, size_t len, struct raft_msg *m, uint64_t *refused);

/* Beats, forwards and their answers: a message of that type or NULL (refused, counted). */
const ProtobufCMessage *raftd_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused);
void raftd_msg_free(const void *m);
/* m packed into buf (cap bytes) when it fits, else a new buffer to free; NULL out of memory. */
uint8_t *raftd_msg_pack(const ProtobufCMessage *m, uint8_t *buf, size_t cap, size_t *len);
size_t raftd_msg_size(const ProtobufCMessage *m);

/* The registry's command (a log entry's data) and snapshot. */
Coral__RegCmd *raft_cmd_decode(const uint8_t *data, size_t len);
void raft_cmd_free(Coral__RegCmd *c);
Coral__RegSnapshot *raft_snap_decode(const uint8_t *data, size_t len);
void raft_snap_free(Coral__RegSnapshot *s);
/* Any of them packed into a new buffer (*buf, to free): 0 or CORAL_ENOMEM. */
int raft_pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len);

#endif

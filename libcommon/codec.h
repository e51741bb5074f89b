/* Message codecs, the half every family shares. Each daemon keeps the codec of its own
 * messages in one file (grdd/grd_msg.c, lmsd/gcs_msg.c, raftd/raft_msg.c): a table of its
 * interconnect types with their protobuf descriptors, and typed helpers for the records it
 * stores. Packing and unpacking go through here and nowhere else in a daemon; a decode that
 * fails (unknown type, bytes that do not parse, a message over the bound) is counted in the
 * caller's counter and logged, rate-limited, with the family and the type. */
#ifndef CORAL_CODEC_H
#define CORAL_CODEC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

struct coral_codec_type {
	uint8_t type;                             /* the interconnect message type */
	const ProtobufCMessageDescriptor *desc;
	const char *name;
};

struct coral_codec {
	const char *family;                       /* "grd", "gcs", "raft": for the log */
	const struct coral_codec_type *types;
	size_t ntypes;
};

/* The message of that type in data, or NULL (refused: *refused counted, logged). Free it
 * with coral_codec_free. */
ProtobufCMessage *coral_codec_decode(const struct coral_codec *c, uint8_t type, const uint8_t *data, size_t len,
				     uint64_t *refused);
/* The same for a message known by its descriptor (a stored record, say); what names it. */
ProtobufCMessage *coral_codec_decode_as(const struct coral_codec *c, const ProtobufCMessageDescriptor *desc,
					const uint8_t *data, size_t len, uint64_t *refused);
void coral_codec_free(const ProtobufCMessage *m);

size_t coral_codec_size(const ProtobufCMessage *m);
/* Packs m into stack when it fits in stacksz bytes, else into a new malloc'ed buffer (free
 * it when it is not stack); NULL when out of memory. */
uint8_t *coral_codec_pack(const ProtobufCMessage *m, uint8_t *stack, size_t stacksz, size_t *len);
/* A deep copy of m (packed and unpacked again), or NULL. */
ProtobufCMessage *coral_codec_copy(const ProtobufCMessage *m);

#endif

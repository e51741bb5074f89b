/* Message codecs (see codec.h). */
#include "codec.h"
#include "log.h"

#include <stdlib.h>

static ProtobufCMessage *decode(const struct coral_codec *c, const ProtobufCMessageDescriptor *desc, const char *name,
				uint8_t type, const uint8_t *data, size_t len, uint64_t *refused)
{
	ProtobufCMessage *m = desc ? protobuf_c_message_unpack(desc, NULL, len, data) : NULL;
	if (m != NULL)
		return m;
	if (refused)
		(*refused)++;
	if (desc == NULL)
		log_notice("%s message of unknown type %u (%zu bytes) refused", c->family, type, len);
	else
		log_notice("%s %s message of %zu bytes could not be decoded: refused", c->family, name, len);
	return NULL;
}

ProtobufCMessage *coral_codec_decode(const struct coral_codec *c, uint8_t type, const uint8_t *data, size_t len,
				     uint64_t *refused)
{
	for (size_t i = 0; i < c->ntypes; i++)
		if (c->types[i].type == type)
			return decode(c, c->types[i].desc, c->types[i].name, type, data, len, refused);
	return decode(c, NULL, NULL, type, data, len, refused);
}

ProtobufCMessage *coral_codec_decode_as(const struct coral_codec *c, const ProtobufCMessageDescriptor *desc,
					const uint8_t *data, size_t len, uint64_t *refused)
{
	return decode(c, desc, desc->short_name, 0, data, len, refused);
}

void coral_codec_free(const ProtobufCMessage *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked((ProtobufCMessage *)m, NULL);
}

size_t coral_codec_size(const ProtobufCMessage *m)
{
	return protobuf_c_message_get_packed_size(m);
}

uint8_t *coral_codec_pack(const ProtobufCMessage *m, uint8_t *stack, size_t stacksz, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = stack && *len <= stacksz ? stack : malloc(*len ? *len : 1);
	if (buf != NULL)
		protobuf_c_message_pack(m, buf);
	return buf;
}

ProtobufCMessage *coral_codec_copy(const ProtobufCMessage *m)
{
	size_t len;
	uint8_t *buf = coral_codec_pack(m, NULL, 0, &len);
	if (buf == NULL)
		return NULL;
	ProtobufCMessage *out = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
	free(buf);
	return out;
}

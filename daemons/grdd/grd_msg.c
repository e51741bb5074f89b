/* grdd's codec (see grd_msg.h). */
#include "grd_msg.h"

#include "codec.h"
#include "errors.h"

#include <stdlib.h>
#include <string.h>
#include "util.h"

static const struct coral_codec_type grd_types[] = {
	{GRD_MSG_REQUEST, &coral__grd_request__descriptor, "request"},
	{GRD_MSG_REPLY, &coral__grd_reply__descriptor, "reply"},
	{GRD_MSG_FREEZE, &coral__grd_freeze__descriptor, "freeze"},
	{GRD_MSG_SHIP, &coral__grd_ship__descriptor, "ship"},
	{GRD_MSG_READY, &coral__grd_ready__descriptor, "ready"},
	{GRD_MSG_ABORT, &coral__grd_abort__descriptor, "abort"},
	{GRD_MSG_REPORT_REQ, &coral__grd_report_request__descriptor, "report request"},
	{GRD_MSG_REPORT, &coral__grd_report__descriptor, "report"},
	{GRD_MSG_PROPOSE, &coral__grd_propose__descriptor, "propose"},
	{GRD_MSG_REMASTER_FWD, &coral__grd_remaster_fwd__descriptor, "remaster forward"},
	{GRD_MSG_REMASTER_ANS, &coral__grd_remaster_ans__descriptor, "remaster answer"},
};

static const struct coral_codec grd_codec = {"grd", grd_types, CORAL_ARRAY_LEN(grd_types)};

const ProtobufCMessage *grd_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused)
{
	return coral_codec_decode(&grd_codec, type, data, len, refused);
}

void grd_msg_free(const void *m) { coral_codec_free(m); }

uint8_t *grd_msg_pack(const ProtobufCMessage *m, size_t *len) { return coral_codec_pack(m, NULL, 0, len); }

size_t grd_msg_size(const ProtobufCMessage *m) { return coral_codec_size(m); }

Coral__GrdMapRecord *grd_record_decode(const uint8_t *buf, size_t len)
{
	return (Coral__GrdMapRecord *)coral_codec_decode_as(&grd_codec, &coral__grd_map_record__descriptor, buf, len,
							    NULL);
}

uint8_t *grd_record_pack(const Coral__GrdMapRecord *r, size_t *len) { return grd_msg_pack(&r->base, len); }

Coral__GrdMapRecord *grd_record_copy(const Coral__GrdMapRecord *r)
{
	return (Coral__GrdMapRecord *)coral_codec_copy(&r->base);
}

void grd_record_free(Coral__GrdMapRecord *r) { coral_codec_free(r ? &r->base : NULL); }

int grd_record_set_detail(Coral__GrdMapRecord *r, const char *detail)
{
	char *d = strdup(detail ? detail : "");
	if (d == NULL)
		return CORAL_ENOMEM;
	if (r->detail != protobuf_c_empty_string)
		free(r->detail);
	r->detail = d;
	return 0;
}

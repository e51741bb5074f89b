/* lmsd's codec (see gcs_msg.h). */
#include "gcs_msg.h"

#include "codec.h"

static const struct coral_codec_type gcs_types[] = {
	{GCS_NET_MSG, &coral__gcs_msg__descriptor, "cache fusion"},
};

static const struct coral_codec gcs_codec = {"gcs", gcs_types, 1};

static const char *const kind_names[GCS_NKINDS] = {
	"?", "req", "grant", "fwd", "block", "ack", "inv", "inv-ack", "not-here", "written",
	"pi-drop", "pi-ack", "release", "retry", "cr-req", "cr-fwd", "cr-block", "acked",
	"report-req", "report", "report-end", "query",
};

const char *gcs_kind_name(int kind)
{
	return kind > 0 && kind < GCS_NKINDS ? kind_names[kind] : "?";
}

Coral__GcsMsg *gcs_msg_decode(uint8_t type, const uint8_t *data, size_t len, uint64_t *refused)
{
	return (Coral__GcsMsg *)coral_codec_decode(&gcs_codec, type, data, len, refused);
}

void gcs_msg_free(Coral__GcsMsg *m) { coral_codec_free(m ? &m->base : NULL); }

uint8_t *gcs_msg_pack(const Coral__GcsMsg *m, uint8_t *stack, size_t stacksz, size_t *len)
{
	return coral_codec_pack(&m->base, stack, stacksz, len);
}

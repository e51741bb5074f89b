/* Framing: the length check, and frames pulled out of an evbuffer as the IPC server and
 * the interconnect do, with a bounded maximum. */
#include "fuzz.h"

#include "errors.h"
#include "frame.h"

#include <event2/buffer.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint32_t flen;
	(void)coral_frame_check(data, len, 65536, &flen);
	struct evbuffer *in = evbuffer_new();
	evbuffer_add(in, data, len);
	for (;;) {
		const uint8_t *payload;
		uint32_t plen;
		int rc = coral_frame_next(in, 65536, &payload, &plen);
		if (rc != 1)
			break;
		coral_frame_consume(in, plen);
	}
	evbuffer_free(in);
	return 0;
}

/* The control message family, as every daemon's socket and coralctl decode it, and the
 * arena decode of lmsd's consistent-read port. */
#include "fuzz.h"

#include "ctl.h"
#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	Coral__CtlRequest *req = coral_ctl_request_decode(data, len);
	if (req) {
		(void)coral_ctl_request_name(req);
		(void)coral_ctl_request_id(req);
		coral_ctl_request_free(req);
	}
	Coral__CtlResponse *resp = coral_ctl_response_decode(data, len);
	if (resp)
		coral_ctl_response_free(resp);
	_Alignas(16) uint8_t mem[1024];
	struct coral_pb_arena ar;
	coral_pb_arena_init(&ar, mem, sizeof(mem));
	(void)coral_ctl_request_decode_in(&ar, data, len);
	return 0;
}

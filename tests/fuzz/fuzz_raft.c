/* raftd's messages: a Raft message into the core's form, beats and forwards, and the bytes
 * as a registry command applied to a registry and as a registry snapshot restored. */
#include "fuzz.h"

#include "raft_msg.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint64_t refused = 0;
	struct raft_msg m;
	if (raft_msg_decode(data, len, &m, &refused) == 0)
		raft_msg_free(&m);
	for (uint8_t t = MSG_BEAT; t <= MSG_FORWARD_RESP; t++) {
		const ProtobufCMessage *p = raftd_msg_decode(t, data, len, &refused);
		raftd_msg_free(p);
	}
	struct registry reg;
	registry_init(&reg, 64, 4096);
	struct reg_result res;
	registry_apply(&reg, 1, data, len, &res);
	registry_apply(&reg, 2, data, len, &res);
	(void)registry_restore(&reg, data, len);
	registry_free(&reg);
	return 0;
}

/* raftd: consensus and membership. Today the daemon runs on the skeleton alone: it starts,
 * registers in the proc table, answers status, ping, config and reload, and says in its
 * status line that its own service is not there yet. */
#include "daemon.h"

static const struct coral_daemon_def raftd_def = {
	.id = CORAL_D_RAFTD,
	.service = "service not built yet (Raft consensus, membership, failure detection, fencing); answers control requests only",
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &raftd_def);
}

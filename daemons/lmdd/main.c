/* lmdd: global enqueues and deadlock detection. Today the daemon runs on the skeleton alone: it starts,
 * registers in the proc table, answers status, ping, config and reload, and says in its
 * status line that its own service is not there yet. */
#include "daemon.h"

static const struct coral_daemon_def lmdd_def = {
	.id = CORAL_D_LMDD,
	.service = "service not built yet (global enqueues and deadlock detection); answers control requests only",
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &lmdd_def);
}

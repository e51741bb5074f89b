/* grdd: resource directory. Today the daemon runs on the skeleton alone: it starts,
 * registers in the proc table, answers status, ping, config and reload, and says in its
 * status line that its own service is not there yet. */
#include "daemon.h"

static const struct coral_daemon_def grdd_def = {
	.id = CORAL_D_GRDD,
	.service = "service not built yet (global resource directory: mastering, remastering, rebuild); answers control requests only",
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &grdd_def);
}

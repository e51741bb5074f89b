/* grdd: resource directory. Today the daemon runs on the skeleton alone: it starts,
 * registers in the proc table, answers status, ping, config and reload, and says in its
 * status line that its own service is not there yet. */
#include "daemon.h"

static const struct coral_daemon_def grdd_def = {
	.id = CORAL_D_GRDD,
	.service = "not yet: the global resource directory (mastering, remastering, rebuild) is not built yet (issue 4); this daemon only answers control requests",
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &grdd_def);
}

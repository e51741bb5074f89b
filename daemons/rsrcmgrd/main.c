/* rsrcmgrd: resource manager. Today the daemon runs on the skeleton alone: it starts,
 * registers in the proc table, answers status, ping, config and reload, and says in its
 * status line that its own service is not there yet. */
#include "daemon.h"

static const struct coral_daemon_def rsrcmgrd_def = {
	.id = CORAL_D_RSRCMGRD,
	.service = "service not built yet (resource manager: consumer groups, plans, session pools); answers control requests only",
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &rsrcmgrd_def);
}

/* raftd: consensus, membership and the config store. How the daemon is wired: its state
 * (raftd.h), its control requests (api.c's table), its HTTP API (http.c), and where each
 * kind of request is answered (pending.c calls the function of the request's origin). */
#include "raftd.h"

#include "errors.h"
#include "log.h"

#include <string.h>

static struct raftd g_raftd;   /* one per process; large, so not on the stack */

static int raftd_init(struct coral_daemon *d)
{
	struct raftd *r = &g_raftd;
	memset(r, 0, sizeof(*r));
	d->svc = r;
	r->answer[OR_CTL] = api_answer_ctl;
	r->answer[OR_HTTP] = http_answer;
	r->answer[OR_FWD] = forward_answer;
	r->rc = &d->conf.raft;
	int rc = pending_init(r);
	if (rc == 0)
		rc = raftd_start(r, d);
	if (rc == 0 && r->rc->http) {
		char err[CORAL_ERRMSG_MAX];
		rc = http_start(r, err, sizeof(err));
		if (rc != 0)
			log_error("HTTP: %s", err);
	}
	return rc;
}

static void raftd_fini(struct coral_daemon *d)
{
	struct raftd *r = d->svc;
	if (r == NULL)
		return;
	http_stop(r);
	pending_fini(r);
	raftd_stop(r);
}

int main(int argc, char **argv)
{
	struct coral_daemon_def def = {
		.id = CORAL_D_RAFTD,
		.service = "Raft consensus, membership, failure detection, fencing, config store",
		.service_ready = true,
		.init = raftd_init,
		.fini = raftd_fini,
		.requests = raftd_requests,
		.nrequests = raftd_nrequests,
	};
	return coral_daemon_main(argc, argv, &def);
}

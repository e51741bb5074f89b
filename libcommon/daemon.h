/* The daemon skeleton every Coral daemon runs on: options (-c FILE, -N NODE, -n, -nv),
 * configuration, pidfile, SGA attach, proc-table registration, one libevent loop with
 * signals (TERM/INT stop, HUP reloads the reloadable options and logs what changed), a
 * heartbeat timer, readiness reported through the proc table, and the control requests
 * every daemon answers (status, ping, config, reload) from one handler table. A daemon's
 * own service plugs in through init/fini and the status line. */
#ifndef CORAL_DAEMON_H
#define CORAL_DAEMON_H

#include "conf.h"
#include "ipc.h"
#include "proc.h"
#include "sga.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct event;

struct coral_daemon;
struct coral_ipc_conn;
struct Coral__CtlRequest;
struct coral_metrics_slot;

/* A request of a daemon's own service. The handler answers through coral_daemon_answer(),
 * at once or later (it keeps the connection id and request id, not the request). */
struct coral_daemon_request {
	int body;               /* Coral__CtlRequest__BodyCase */
	bool admin;
	void (*fn)(struct coral_daemon *d, uint64_t conn_id, const struct Coral__CtlRequest *req);
	/* Published as Prometheus metrics coral_METRICS_FIELD (metrics.h) once a second from the
	 * heartbeat timer: the daemon asks itself this request (empty) and flattens the answer,
	 * so the metrics are the figures coralctl prints. NULL: not published. gauges: the
	 * fields that are not counters (NULL terminated). The handler must answer at once. */
	const char *metrics;
	const char *const *gauges;
};

/* The connection id of the daemon's own metrics requests: coral_daemon_answer publishes. */
#define CORAL_DAEMON_CONN_SELF UINT64_MAX

struct coral_daemon_def {
	int id;                 /* CORAL_D_* */
	const char *service;    /* one line for status: the service, or why it is not there */
	bool service_ready;     /* false until the daemon's own service exists */
	int (*init)(struct coral_daemon *d);
	void (*fini)(struct coral_daemon *d);
	const struct coral_daemon_request *requests;
	size_t nrequests;
	int min_clients;            /* its socket serves at least this many clients */
	const char *clients_limit;  /* what caps them, told to a client refused (NULL: max_clients) */
	/* more figures for its metrics slot (histograms), after the requests' */
	void (*metrics)(struct coral_daemon *d, struct coral_metrics_slot *s);
};

struct coral_daemon {
	const struct coral_daemon_def *def;
	const char *name;
	struct coral_conf conf;
	const struct coral_node_conf *node;
	struct coral_sga sga;
	struct coral_proc_table *proc;
	struct event_base *base;
	struct coral_ipc_server *ipc;
	struct event *ev_sig[3];
	struct event *ev_heartbeat;
	struct event *ev_test_crash;
	int pidfd;
	char pidfile[CORAL_STR_MAX + 32];
	char sockpath[CORAL_STR_MAX + 32];
	char who[64], limit[96];    /* "node 2's lmsd", "[lmsd] max_clients": for refused clients */
	uint64_t start_mono_ns;
	uint64_t metrics_mono_ns;   /* last published */
	struct coral_metrics_slot *metrics;  /* while publishing: where answers go */
	const struct coral_daemon_request *metrics_req;
	int exit_code;
	void *svc;              /* the daemon's own state, set by its init */
};

/* Runs the daemon; returns the process exit status. */
int coral_daemon_main(int argc, char **argv, const struct coral_daemon_def *def);

/* Sends resp (its header is filled in) to the client with this id, if it is still there.
 * Returns CORAL_ECLOSED if it has gone. */
struct Coral__CtlResponse;
int coral_daemon_answer(struct coral_daemon *d, uint64_t conn_id, uint64_t request_id,
			struct Coral__CtlResponse *resp);
/* Answers with an error code and text. */
int coral_daemon_answer_error(struct coral_daemon *d, uint64_t conn_id, uint64_t request_id,
			      int code, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Re-reads the configuration file and applies what may be applied; each change (applied or
 * not) is logged and, if changes is not NULL, copied there (at most max lines). Returns the
 * number of lines, or a negative CORAL_E* code if the file is invalid (nothing applied). */
int coral_daemon_reload(struct coral_daemon *d, char (*changes)[CORAL_ERRMSG_MAX], int max);

#endif

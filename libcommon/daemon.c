/* The daemon skeleton (see daemon.h). */
#include "daemon.h"
#include "ctl.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* ---- control requests ------------------------------------------------------------- */

struct coral__cfg_item {
	Coral__ConfigItem item;
	char section[48];
	char value[CORAL_STR_MAX];
};

/* Storage for one answer: every body a handler may fill, and what it allocated. */
struct coral__reply {
	Coral__CtlResponse resp;
	Coral__Header hdr;
	Coral__DaemonStatus status;
	Coral__PingReply ping;
	Coral__ConfigReply config;
	Coral__ReloadReply reload;
	struct coral__cfg_item *items;
	Coral__ConfigItem **itemp;
	size_t nitems, capitems;
	char (*changes)[CORAL_ERRMSG_MAX];
	char **changep;
	char errbuf[CORAL_ERRMSG_MAX];
};

typedef void (*coral__ctl_fn)(struct coral_daemon *d, const Coral__CtlRequest *req,
			      struct coral__reply *r);

struct coral__ctl_handler {
	Coral__CtlRequest__BodyCase body;
	bool admin;             /* needs admin credentials */
	coral__ctl_fn fn;
};

static void coral__h_status(struct coral_daemon *d, const Coral__CtlRequest *req,
			    struct coral__reply *r)
{
	(void)req;
	struct coral_proc_slot *s = &d->proc->slots[d->def->id];
	Coral__DaemonStatus *st = &r->status;
	coral__daemon_status__init(st);
	st->daemon = (char *)d->name;
	st->node_id = (uint32_t)d->node->id;
	st->pid = (int32_t)getpid();
	st->state = (char *)coral_proc_state_name((int)__atomic_load_n(&s->state, __ATOMIC_RELAXED));
	st->uptime_ms = (coral_now_mono_ns() - d->start_mono_ns) / 1000000ull;
	st->service_ready = d->def->service_ready;
	st->service = (char *)d->def->service;
	st->requests = atomic_load(&s->requests);
	st->refused = atomic_load(&s->refused);
	st->clients = atomic_load(&s->clients);
	st->log_level = (char *)coral_loglevel_name(coral_log_level());
	st->config_path = d->conf.path;
	r->resp.body_case = CORAL__CTL_RESPONSE__BODY_STATUS;
	r->resp.status = st;
}

static void coral__h_ping(struct coral_daemon *d, const Coral__CtlRequest *req,
			  struct coral__reply *r)
{
	(void)d;
	coral__ping_reply__init(&r->ping);
	r->ping.sent_ns = req->ping->sent_ns;
	r->ping.server_ns = coral_now_mono_ns();
	r->resp.body_case = CORAL__CTL_RESPONSE__BODY_PING;
	r->resp.ping = &r->ping;
}

static void coral__cfg_visit(void *arg, const char *section, const struct coral_opt *opt,
			     const char *value, bool is_default)
{
	struct coral__reply *r = arg;
	if (r->nitems == r->capitems) {
		size_t cap = r->capitems ? r->capitems * 2 : 128;
		void *p = realloc(r->items, cap * sizeof(*r->items));
		if (p == NULL)
			return;
		r->items = p;
		r->capitems = cap;
	}
	struct coral__cfg_item *it = &r->items[r->nitems++];
	coral__config_item__init(&it->item);
	coral_strlcpy(it->section, section, sizeof(it->section));
	coral_strlcpy(it->value, value, sizeof(it->value));
	it->item.name = (char *)opt->name;
	it->item.is_default = is_default;
	it->item.reloadable = opt->reloadable;
}

static void coral__h_config(struct coral_daemon *d, const Coral__CtlRequest *req,
			    struct coral__reply *r)
{
	(void)req;
	coral_conf_foreach(&d->conf, coral__cfg_visit, r);
	r->itemp = calloc(r->nitems ? r->nitems : 1, sizeof(*r->itemp));
	if (r->itemp == NULL) {
		r->resp.code = CORAL_ENOMEM;
		return;
	}
	/* pointers are fixed up only now: the items array may have moved while growing */
	for (size_t i = 0; i < r->nitems; i++) {
		r->items[i].item.section = r->items[i].section;
		r->items[i].item.value = r->items[i].value;
		r->itemp[i] = &r->items[i].item;
	}
	coral__config_reply__init(&r->config);
	r->config.path = d->conf.path;
	r->config.n_items = r->nitems;
	r->config.items = r->itemp;
	r->resp.body_case = CORAL__CTL_RESPONSE__BODY_CONFIG;
	r->resp.config = &r->config;
}

#define CORAL__MAX_CHANGES 64

static void coral__h_reload(struct coral_daemon *d, const Coral__CtlRequest *req,
			    struct coral__reply *r)
{
	(void)req;
	r->changes = calloc(CORAL__MAX_CHANGES, sizeof(*r->changes));
	r->changep = calloc(CORAL__MAX_CHANGES, sizeof(*r->changep));
	if (r->changes == NULL || r->changep == NULL) {
		r->resp.code = CORAL_ENOMEM;
		return;
	}
	int n = coral_daemon_reload(d, r->changes, CORAL__MAX_CHANGES);
	if (n < 0) {
		r->resp.code = n;
		snprintf(r->errbuf, sizeof(r->errbuf), "%s", r->changes[0]);
		r->resp.error = r->errbuf;
		return;
	}
	coral__reload_reply__init(&r->reload);
	for (int i = 0; i < n; i++)
		r->changep[i] = r->changes[i];
	r->reload.n_changes = (size_t)n;
	r->reload.changes = r->changep;
	r->resp.body_case = CORAL__CTL_RESPONSE__BODY_RELOAD;
	r->resp.reload = &r->reload;
}

static const struct coral__ctl_handler coral__ctl_handlers[] = {
	{CORAL__CTL_REQUEST__BODY_STATUS, false, coral__h_status},
	{CORAL__CTL_REQUEST__BODY_PING, false, coral__h_ping},
	{CORAL__CTL_REQUEST__BODY_CONFIG, false, coral__h_config},
	{CORAL__CTL_REQUEST__BODY_RELOAD, true, coral__h_reload},
};

static void coral__on_frame(void *arg, struct coral_ipc_conn *conn, const uint8_t *data,
			    uint32_t len)
{
	struct coral_daemon *d = arg;
	Coral__CtlRequest *req = coral_ctl_request_decode(data, len);
	if (req == NULL) {
		coral_ipc_conn_refuse(conn, "undecodable request");
		return;
	}
	const struct coral_ipc_peer *peer = coral_ipc_conn_peer(conn);
	struct coral__reply r;
	memset(&r, 0, sizeof(r));
	coral__ctl_response__init(&r.resp);
	coral__header__init(&r.hdr);
	r.hdr.sender_node = (uint32_t)d->node->id;
	r.hdr.sender = (char *)d->name;
	r.hdr.request_id = req->hdr ? req->hdr->request_id : 0;
	r.resp.hdr = &r.hdr;

	const struct coral__ctl_handler *h = NULL;
	for (size_t i = 0; i < CORAL_ARRAY_LEN(coral__ctl_handlers); i++)
		if (coral__ctl_handlers[i].body == req->body_case)
			h = &coral__ctl_handlers[i];
	const struct coral_daemon_request *own = NULL;
	for (size_t i = 0; h == NULL && i < d->def->nrequests; i++)
		if (d->def->requests[i].body == (int)req->body_case)
			own = &d->def->requests[i];
	bool admin = h ? h->admin : own ? own->admin : false;
	if (h == NULL && own == NULL) {
		r.resp.code = CORAL_EUNSUPPORTED;
		snprintf(r.errbuf, sizeof(r.errbuf), "%s does not know this request", d->name);
		r.resp.error = r.errbuf;
		atomic_fetch_add(&d->proc->slots[d->def->id].refused, 1);
	} else if (admin && !peer->admin) {
		r.resp.code = CORAL_EPERM;
		snprintf(r.errbuf, sizeof(r.errbuf),
			 "%s needs admin rights: uid %d is not root, the daemon's user, admin_uid or "
			 "admin_gid of [cluster]", coral_ctl_request_name(req), (int)peer->uid);
		r.resp.error = r.errbuf;
		log_notice("refused %s from pid %d uid %d: not admin", coral_ctl_request_name(req),
			   (int)peer->pid, (int)peer->uid);
		atomic_fetch_add(&d->proc->slots[d->def->id].refused, 1);
	} else if (own) {
		/* the service answers, now or later, through coral_daemon_answer() */
		atomic_fetch_add(&d->proc->slots[d->def->id].requests, 1);
		own->fn(d, coral_ipc_conn_id(conn), req);
		coral_ctl_request_free(req);
		return;
	} else {
		atomic_fetch_add(&d->proc->slots[d->def->id].requests, 1);
		h->fn(d, req, &r);
	}
	int rc = coral_ipc_conn_send(conn, &r.resp.base);
	if (rc != 0)
		log_warn("could not answer %s: %s", coral_ctl_request_name(req), coral_strerror(rc));
	free(r.items);
	free(r.itemp);
	free(r.changes);
	free(r.changep);
	coral_ctl_request_free(req);
}

/* An answer to the daemon's own metrics request: its body's figures go to the slot. */
static void coral__publish_answer(struct coral_daemon *d, const Coral__CtlResponse *resp)
{
	if (d->metrics == NULL || d->metrics_req == NULL || resp->code != 0)
		return;
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field(&coral__ctl_response__descriptor, (unsigned)resp->body_case);
	if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return;
	const ProtobufCMessage *body = *(const ProtobufCMessage *const *)((const char *)resp + f->offset);
	char from[64];
	snprintf(from, sizeof(from), "%s's %s answer", d->name, f->name);
	coral_metrics_put_pb(d->metrics, d->metrics_req->metrics, body, d->metrics_req->gauges, from);
}

/* Once a second, from the heartbeat: the daemon asks itself each request it publishes and
 * its answers fill its metrics slot (metrics.h). */
static void coral__publish(struct coral_daemon *d)
{
	struct coral_metrics_sga *ms = coral_metrics_sga(&d->sga);
	uint64_t now = coral_now_mono_ns();
	if (ms == NULL || now - d->metrics_mono_ns < 1000000000ull)
		return;
	d->metrics_mono_ns = now;
	struct coral_metrics_slot *slot = &ms->slot[d->def->id];
	coral_metrics_begin(slot);
	d->metrics = slot;
	for (size_t i = 0; i < d->def->nrequests; i++) {
		const struct coral_daemon_request *q = &d->def->requests[i];
		if (q->metrics == NULL)
			continue;
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field(&coral__ctl_request__descriptor, (unsigned)q->body);
		if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		const ProtobufCMessageDescriptor *sd = f->descriptor;
		void *body = calloc(1, sd->sizeof_message);
		if (body == NULL)
			continue;
		protobuf_c_message_init(sd, body);
		Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
		Coral__Header hdr = CORAL__HEADER__INIT;
		req.hdr = &hdr;
		req.body_case = (Coral__CtlRequest__BodyCase)q->body;
		*(void **)((char *)&req + f->offset) = body;
		d->metrics_req = q;
		q->fn(d, CORAL_DAEMON_CONN_SELF, &req);
		d->metrics_req = NULL;
		free(body);
	}
	if (d->def->metrics)
		d->def->metrics(d, slot);
	d->metrics = NULL;
	coral_metrics_end(slot, (int32_t)getpid());
}

int coral_daemon_answer(struct coral_daemon *d, uint64_t conn_id, uint64_t request_id,
			Coral__CtlResponse *resp)
{
	if (conn_id == CORAL_DAEMON_CONN_SELF) {
		coral__publish_answer(d, resp);
		return 0;
	}
	struct coral_ipc_conn *conn = d->ipc ? coral_ipc_server_conn(d->ipc, conn_id) : NULL;
	if (conn == NULL)
		return CORAL_ECLOSED;
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.sender_node = (uint32_t)d->node->id;
	hdr.sender = (char *)d->name;
	hdr.request_id = request_id;
	resp->hdr = &hdr;
	int rc = coral_ipc_conn_send(conn, &resp->base);
	resp->hdr = NULL;
	return rc;
}

int coral_daemon_answer_error(struct coral_daemon *d, uint64_t conn_id, uint64_t request_id,
			      int code, const char *fmt, ...)
{
	char buf[CORAL_ERRMSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.code = code;
	resp.error = buf;
	return coral_daemon_answer(d, conn_id, request_id, &resp);
}

/* ---- reload, signals, timers ------------------------------------------------------ */

/* The heartbeat timer is re-armed on every tick so a reloaded interval takes effect. */
static void coral__arm_heartbeat(struct coral_daemon *d)
{
	int64_t ms = d->conf.daemon[d->def->id].heartbeat_ms;
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	if (d->ev_heartbeat)
		evtimer_add(d->ev_heartbeat, &tv);
}

/* [DAEMON] max_clients, or more when the daemon needs them (lmsd: a session slot each). */
static int coral__max_clients(const struct coral_daemon *d)
{
	int n = (int)d->conf.daemon[d->def->id].max_clients;
	return n > d->def->min_clients ? n : d->def->min_clients;
}

static void coral__apply_runtime(struct coral_daemon *d)
{
	const struct coral_daemon_conf *dc = &d->conf.daemon[d->def->id];
	coral_log_set_level((int)dc->log_level);
	coral_log_set_ratelimit((int)d->conf.cluster.log_burst, (int)d->conf.cluster.log_interval_ms);
	if (d->ipc)
		coral_ipc_server_set_limits(d->ipc, coral__max_clients(d), (size_t)dc->out_queue,
					    d->conf.cluster.admin_uid, d->conf.cluster.admin_gid, dc->client_idle_ms);
	coral__arm_heartbeat(d);
}

struct coral__changes {
	char (*out)[CORAL_ERRMSG_MAX];
	int max, n;
};

static void coral__change(void *arg, const char *line)
{
	struct coral__changes *c = arg;
	log_notice("reload: %s", line);
	if (c->out && c->n < c->max)
		coral_strlcpy(c->out[c->n], line, CORAL_ERRMSG_MAX);
	c->n++;
}

int coral_daemon_reload(struct coral_daemon *d, char (*changes)[CORAL_ERRMSG_MAX], int max)
{
	struct coral_conf *next = malloc(sizeof(*next));
	if (next == NULL)
		return CORAL_ENOMEM;
	int rc = coral_conf_load(next, d->conf.path);
	if (rc != 0) {
		log_error("reload refused, keeping the running configuration: %s", next->errmsg);
		if (changes && max > 0)
			coral_strlcpy(changes[0], next->errmsg, CORAL_ERRMSG_MAX);
		free(next);
		return rc;
	}
	struct coral__changes c = {.out = changes, .max = max};
	int applied = coral_conf_apply_reload(&d->conf, next, coral__change, &c);
	free(next);
	coral__apply_runtime(d);
	log_info("reload: %d option(s) applied, %d difference(s) in all", applied, c.n);
	return c.n < max ? c.n : max;
}

static void coral__on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct coral_daemon *d = arg;
	if (sig == SIGHUP) {
		log_info("SIGHUP: reloading %s", d->conf.path);
		coral_daemon_reload(d, NULL, 0);
		return;
	}
	log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	coral_proc_set_state(d->proc, d->def->id, CORAL_PROC_STOPPING, NULL);
	event_base_loopexit(d->base, NULL);
}

static void coral__on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral_daemon *d = arg;
	coral_proc_heartbeat(d->proc, d->def->id);
	coral__publish(d);
	coral__arm_heartbeat(d);
}

/* Test hook: CORAL_TEST_CRASH=DAEMON makes that daemon exit with status 70 a moment after it
 * became ready, every time it starts; the supervisor's restart cap is tested with it. */
static void coral__on_test_crash(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct coral_daemon *d = arg;
	log_error("test hook CORAL_TEST_CRASH: exiting with status 70");
	_exit(70);
	(void)d;
}

/* ---- start-up --------------------------------------------------------------------- */

static void coral__usage(const char *name, FILE *f)
{
	fprintf(f,
		"usage: %s [-c FILE] -N NODE      run on node NODE (id or label)\n"
		"       %s [-c FILE] -n [-v]      check the configuration; -v prints it\n"
		"Default FILE: $CORAL_CONF or /etc/coral/coral.conf. See %s(8).\n",
		name, name, name);
}

static int coral__pidfile(struct coral_daemon *d)
{
	coral_conf_run_path(d->node, d->name, d->pidfile, sizeof(d->pidfile));
	strncat(d->pidfile, ".pid", sizeof(d->pidfile) - strlen(d->pidfile) - 1);
	d->pidfd = open(d->pidfile, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (d->pidfd < 0) {
		log_error("cannot open pidfile %s: %s", d->pidfile, strerror(errno));
		return CORAL_ESYS;
	}
	if (flock(d->pidfd, LOCK_EX | LOCK_NB) != 0) {
		char buf[32] = "";
		ssize_t n = pread(d->pidfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_error("%s is already running on node %lld (pid %s, pidfile %s)", d->name,
			  (long long)d->node->id, buf, d->pidfile);
		close(d->pidfd);
		d->pidfd = -1;
		return CORAL_ERUNNING;
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(d->pidfd, 0) != 0 || pwrite(d->pidfd, buf, (size_t)n, 0) != n) {
		log_error("cannot write pidfile %s: %s", d->pidfile, strerror(errno));
		return CORAL_ESYS;
	}
	return 0;
}

static int coral__setup_loop(struct coral_daemon *d)
{
	d->base = event_base_new();
	if (d->base == NULL)
		return CORAL_ENOMEM;
	static const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; i < 3; i++) {
		d->ev_sig[i] = evsignal_new(d->base, sigs[i], coral__on_signal, d);
		if (d->ev_sig[i] == NULL || evsignal_add(d->ev_sig[i], NULL) != 0)
			return CORAL_ESYS;
	}
	signal(SIGPIPE, SIG_IGN);
	d->ev_heartbeat = evtimer_new(d->base, coral__on_heartbeat, d);
	if (d->ev_heartbeat == NULL)
		return CORAL_ENOMEM;
	coral_conf_sock_path(d->node, d->name, d->sockpath, sizeof(d->sockpath));
	const struct coral_daemon_conf *dc = &d->conf.daemon[d->def->id];
	struct coral_proc_slot *slot = &d->proc->slots[d->def->id];
	snprintf(d->who, sizeof(d->who), "node %lld's %s", (long long)d->node->id, d->name);
	if (d->def->clients_limit)
		snprintf(d->limit, sizeof(d->limit), "%s", d->def->clients_limit);
	else
		snprintf(d->limit, sizeof(d->limit), "[%s] max_clients", d->name);
	struct coral_ipc_server_opts o = {
		.path = d->sockpath,
		.max_frame = (size_t)d->conf.cluster.max_frame,
		.max_clients = coral__max_clients(d),
		.out_queue = (size_t)dc->out_queue,
		.admin_uid = d->conf.cluster.admin_uid,
		.admin_gid = d->conf.cluster.admin_gid,
		.idle_ms = dc->client_idle_ms,
		.who = d->who,
		.limit = d->limit,
		.on_frame = coral__on_frame,
		.arg = d,
		.counters = {.refused = &slot->refused, .clients = &slot->clients},
	};
	char err[256];
	d->ipc = coral_ipc_server_new(d->base, &o, err, sizeof(err));
	if (d->ipc == NULL) {
		log_error("%s", err);
		return CORAL_ESYS;
	}
	coral__apply_runtime(d);
	const char *crash = getenv("CORAL_TEST_CRASH");
	if (crash && strcmp(crash, d->name) == 0) {
		d->ev_test_crash = evtimer_new(d->base, coral__on_test_crash, d);
		struct timeval tv = {0, 200000};
		if (d->ev_test_crash)
			evtimer_add(d->ev_test_crash, &tv);
	}
	return 0;
}

static void coral__teardown(struct coral_daemon *d)
{
	coral_ipc_server_free(d->ipc);
	d->ipc = NULL;
	for (int i = 0; i < 3; i++)
		if (d->ev_sig[i])
			event_free(d->ev_sig[i]);
	if (d->ev_heartbeat)
		event_free(d->ev_heartbeat);
	if (d->ev_test_crash)
		event_free(d->ev_test_crash);
	if (d->base)
		event_base_free(d->base);
	if (d->proc)
		coral_proc_set_state(d->proc, d->def->id, CORAL_PROC_STOPPED, "stopped cleanly");
	coral_sga_detach(&d->sga);
	if (d->pidfd >= 0) {
		unlink(d->pidfile);
		close(d->pidfd);
	}
}

int coral_daemon_main(int argc, char **argv, const struct coral_daemon_def *def)
{
	static struct coral_daemon dstore; /* large: keep it off the stack */
	struct coral_daemon *d = &dstore;
	memset(d, 0, sizeof(*d));
	d->def = def;
	d->name = coral_daemon_names[def->id];
	d->pidfd = -1;
	const char *path = coral_conf_default_path();
	const char *node = getenv("CORAL_NODE");
	bool check = false, verbose = false;
	int c;
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"node", required_argument, NULL, 'N'},
		{"check", no_argument, NULL, 'n'},       {"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
	};
	while ((c = getopt_long(argc, argv, "c:N:nvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'N': node = optarg; break;
		case 'n': check = true; break;
		case 'v': verbose = true; break;
		case 'h': coral__usage(d->name, stdout); return 0;
		default: coral__usage(d->name, stderr); return 2;
		}
	}
	if (optind != argc) {
		coral__usage(d->name, stderr);
		return 2;
	}
	struct coral_log_opts lo = {.program = d->name, .level = CORAL_LOG_INFO, .to_stderr = true};
	coral_log_init(&lo);
	if (coral_conf_load(&d->conf, path) != 0) {
		fprintf(stderr, "%s: %s\n", d->name, d->conf.errmsg);
		return 1;
	}
	if (check) {
		for (int i = 0; i < d->conf.nnodes; i++) {
			char err[CORAL_ERRMSG_MAX];
			if (coral_sga_check(&d->conf, &d->conf.nodes[i], err, sizeof(err)) != 0) {
				fprintf(stderr, "%s: %s: %s\n", d->name, d->conf.path, err);
				return 1;
			}
		}
		if (verbose)
			coral_conf_print(&d->conf, stdout);
		else
			printf("%s: configuration %s is valid\n", d->name, d->conf.path);
		return 0;
	}
	if (node == NULL) {
		fprintf(stderr, "%s: which node? give -N NODE (see %s(8))\n", d->name, d->name);
		return 2;
	}
	d->node = coral_conf_node(&d->conf, node);
	if (d->node == NULL) {
		fprintf(stderr, "%s: %s: no node '%s' in the configuration\n", d->name, d->conf.path, node);
		return 1;
	}
	const struct coral_daemon_conf *dc = &d->conf.daemon[def->id];
	lo.node_id = (int)d->node->id;
	lo.level = (int)dc->log_level;
	lo.to_stderr = d->conf.cluster.log_stderr;
	lo.to_syslog = d->conf.cluster.log_syslog;
	lo.burst = (int)d->conf.cluster.log_burst;
	lo.interval_ms = (int)d->conf.cluster.log_interval_ms;
	coral_log_init(&lo);

	int rc = coral__pidfile(d);
	if (rc == 0) {
		rc = coral_sga_attach(&d->sga, &d->conf, d->node, false);
		if (rc != 0)
			log_error("%s", d->sga.errmsg);
	}
	if (rc == 0) {
		d->proc = coral_proc_table(&d->sga);
		if (d->proc == NULL) {
			log_error("SGA %s has no proc table", d->sga.name);
			rc = CORAL_EINVAL;
		}
	}
	if (rc == 0)
		rc = coral_proc_register(d->proc, def->id, getpid());
	d->start_mono_ns = coral_now_mono_ns();
	if (rc == 0)
		rc = coral__setup_loop(d);
	if (rc == 0 && def->init)
		rc = def->init(d);
	if (rc != 0) {
		log_error("start-up failed: %s", coral_strerror(rc));
		if (d->proc)
			coral_proc_set_state(d->proc, def->id, CORAL_PROC_FAILED, "start-up failed");
		d->proc = NULL; /* the supervisor records the exit */
		coral__teardown(d);
		return 1;
	}
	coral_proc_set_state(d->proc, def->id, CORAL_PROC_READY, NULL); /* keeps the last exit */
	log_info("ready on %s (%s)", d->sockpath, def->service);
	event_base_dispatch(d->base);
	if (def->fini)
		def->fini(d);
	coral__teardown(d);
	log_info("stopped");
	return d->exit_code;
}

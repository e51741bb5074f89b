/* coral-node: the per-node supervisor. `start` checks the configuration, creates the SGA,
 * starts the daemons in the order of one table, waits for each to report ready, then stays
 * behind as the node's supervisor: a daemon that exits is restarted with backoff, at most
 * restart_max times in restart_window_s, after which the node is reported degraded with
 * the reason; a daemon whose heartbeat stops is killed and restarted. `stop` signals the
 * supervisor, which stops the daemons in reverse order (TERM, then KILL after a grace
 * period) and removes the SGA, sockets and pidfiles; if the supervisor is gone, stop
 * cleans up what it left. It is a C program, not a shell script, because it owns the SGA
 * and the proc table. */
#include "conf.h"
#include "errors.h"
#include "log.h"
#include "metrics_http.h"
#include "proc.h"
#include "rsrc_sga.h"
#include "sga.h"
#include "status.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SUPERVISOR_PIDFILE "coral-node.pid"
#define NODE_LOG "node.log"
#define NODE_LOG_ROTATE (16 << 20)
#define RESTART_RING 1024   /* > the largest restart_max the config allows */

/* The children, in start order; stopped in reverse. */
struct child_def {
	const char *name;
	int id;             /* proc-table slot */
	const char *flags;  /* extra arguments */
};

static const struct child_def children[] = {
	/* smond before lmsd: after every node was lost, it recovers every redo thread before
	 * lmsd serves a block (and lmsd waits for that on the instance lock) */
	{"raftd", CORAL_D_RAFTD, NULL},       {"grdd", CORAL_D_GRDD, NULL},
	{"smond", CORAL_D_SMOND, NULL},       {"lmsd", CORAL_D_LMSD, NULL},
	{"lmdd", CORAL_D_LMDD, NULL},         {"replicad", CORAL_D_REPLICAD, NULL},
	{"rsrcmgrd", CORAL_D_RSRCMGRD, NULL},
};
#define NCHILDREN ((int)CORAL_ARRAY_LEN(children))

struct child {
	const struct child_def *def;
	char binary[PATH_MAX];
	pid_t pid;
	bool failed;                    /* gave up restarting it */
	uint64_t restarts[RESTART_RING];/* monotonic times of recent restarts, oldest first */
	int nrestarts;
	struct event *restart_timer;
	struct supervisor *sv;
};

struct supervisor {
	struct coral_conf *conf;
	const struct coral_node_conf *node;
	struct coral_sga sga;
	struct coral_proc_table *proc;
	struct event_base *base;
	struct event *ev_sig[4];
	struct event *ev_check;
	struct metrics_http *metrics;
	int pidfd;
	bool stopping;
	struct child child[NCHILDREN];
};

static const char *conf_path;
static bool opt_json;

/* ---- helpers ---------------------------------------------------------------------- */

static void describe_exit(int status, char *buf, size_t bufsz)
{
	if (WIFEXITED(status))
		snprintf(buf, bufsz, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, bufsz, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, bufsz, "ended (wait status %d)", status);
}

static bool is_program(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* bin_dir if set; else next to coral-node, then the build tree (daemons/NAME or
 * daemons/NAME/NAME), then ../sbin. */
static int find_binary(const struct coral_conf *conf, const char *name, char *out, size_t outsz)
{
	char self[PATH_MAX] = "";
	char cand[4][PATH_MAX + 64];
	int n = 0;
	if (conf->supervisor.bin_dir[0]) {
		snprintf(cand[n++], sizeof(cand[0]), "%s/%s", conf->supervisor.bin_dir, name);
	} else if (coral_self_dir(self, sizeof(self)) == 0) {
		snprintf(cand[n++], sizeof(cand[0]), "%s/%s", self, name);
		snprintf(cand[n++], sizeof(cand[0]), "%s/../daemons/%s", self, name);
		snprintf(cand[n++], sizeof(cand[0]), "%s/../daemons/%s/%s", self, name, name);
		snprintf(cand[n++], sizeof(cand[0]), "%s/../sbin/%s", self, name);
	}
	for (int i = 0; i < n; i++) {
		if (!is_program(cand[i]))
			continue;
		if (realpath(cand[i], out) == NULL)
			coral_strlcpy(out, cand[i], outsz);
		return 0;
	}
	return CORAL_ENOENT;
}

/* Holds an exclusive lock on the supervisor pidfile; -1 and errno EWOULDBLOCK if taken. */
static int lock_pidfile(const struct coral_node_conf *node, bool create)
{
	char path[CORAL_STR_MAX + 32];
	coral_conf_run_path(node, SUPERVISOR_PIDFILE, path, sizeof(path));
	int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0640);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static pid_t read_pidfile(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	int pid = 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

static pid_t supervisor_pid(const struct coral_node_conf *node)
{
	int fd = lock_pidfile(node, false);
	if (fd >= 0) { /* we got the lock: nobody holds it */
		close(fd);
		return 0;
	}
	if (errno != EWOULDBLOCK)
		return 0;
	char path[CORAL_STR_MAX + 32];
	coral_conf_run_path(node, SUPERVISOR_PIDFILE, path, sizeof(path));
	return read_pidfile(path);
}

/* Daemons of this node that are alive although no supervisor is: from the SGA if there is
 * one, else from their pidfiles. Returns how many, and names them in buf. */
static int orphans(const struct coral_conf *conf, const struct coral_node_conf *node,
		   pid_t pids[NCHILDREN], char *buf, size_t bufsz)
{
	struct coral_sga sga;
	struct coral_proc_snapshot snap;
	bool have_snap = false;
	if (coral_sga_attach(&sga, conf, node, true) == 0) {
		struct coral_proc_table *t = coral_proc_table(&sga);
		if (t) {
			coral_proc_snapshot(t, &snap);
			have_snap = true;
		}
		coral_sga_detach(&sga);
	}
	int n = 0;
	buf[0] = '\0';
	for (int i = 0; i < NCHILDREN; i++) {
		pid_t pid = 0;
		char pf[CORAL_STR_MAX + 32], name[32];
		snprintf(name, sizeof(name), "%s.pid", children[i].name);
		coral_conf_run_path(node, name, pf, sizeof(pf));
		pid_t cand[2] = {have_snap ? snap.slot[children[i].id].pid : 0, read_pidfile(pf)};
		for (int k = 0; k < 2 && pid == 0; k++)
			if (cand[k] > 0 && coral_pid_is(cand[k], children[i].name))
				pid = cand[k];
		pids[i] = pid;
		if (pid) {
			n++;
			size_t l = strlen(buf);
			snprintf(buf + l, bufsz - l, "%s%s pid %d", l ? ", " : "", children[i].name, (int)pid);
		}
	}
	return n;
}

static bool wait_gone(pid_t pid, bool is_child, uint64_t ms)
{
	uint64_t deadline = coral_now_mono_ns() + ms * 1000000ull;
	for (;;) {
		if (is_child) {
			int st;
			pid_t r = waitpid(pid, &st, WNOHANG);
			if (r == pid || (r < 0 && errno == ECHILD))
				return true;
		} else if (!coral_pid_alive(pid)) {
			return true;
		}
		if (coral_now_mono_ns() >= deadline)
			return false;
		usleep(10000);
	}
}

/* The supervisor holds its pidfile lock until it exits: its release is the sign. */
static bool wait_unlocked(const struct coral_node_conf *node, uint64_t ms)
{
	uint64_t deadline = coral_now_mono_ns() + ms * 1000000ull;
	while (supervisor_pid(node) > 0) {
		if (coral_now_mono_ns() >= deadline)
			return false;
		usleep(10000);
	}
	return true;
}

/* TERM, then KILL after the grace period. */
static void stop_pid(pid_t pid, bool is_child, int64_t grace_ms, const char *name)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	if (!wait_gone(pid, is_child, (uint64_t)grace_ms)) {
		log_warn("%s (pid %d) did not stop within %lld ms: killing it", name, (int)pid,
			 (long long)grace_ms);
		kill(pid, SIGKILL);
		wait_gone(pid, is_child, 5000);
	}
}

/* Removes what a node leaves in its run directory and /dev/shm. */
static int remove_node_files(const struct coral_conf *conf, const struct coral_node_conf *node,
			     bool with_supervisor_pidfile)
{
	int removed = 0;
	char path[CORAL_STR_MAX + 32], name[48];
	for (int i = 0; i < NCHILDREN; i++) {
		coral_conf_sock_path(node, children[i].name, path, sizeof(path));
		removed += unlink(path) == 0;
		snprintf(name, sizeof(name), "%s.pid", children[i].name);
		coral_conf_run_path(node, name, path, sizeof(path));
		removed += unlink(path) == 0;
	}
	if (with_supervisor_pidfile) {
		coral_conf_run_path(node, SUPERVISOR_PIDFILE, path, sizeof(path));
		removed += unlink(path) == 0;
	}
	removed += coral_sga_destroy(node->sga_name) == 0;
	/* the cgroups an rsrcmgrd killed left (one that stops removes its own) */
	removed += coral_rsrc_cgroup_cleanup(conf, (uint32_t)node->id);
	return removed;
}

/* ---- the supervisor process ------------------------------------------------------- */

static int spawn(struct supervisor *sv, struct child *c, bool is_restart)
{
	char id[24];
	snprintf(id, sizeof(id), "%lld", (long long)sv->node->id);
	pid_t pid = fork();
	if (pid < 0) {
		log_error("cannot fork %s: %s", c->def->name, strerror(errno));
		return CORAL_ESYS;
	}
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		char *argv[] = {(char *)c->def->name, "-c", (char *)conf_path, "-N", id, NULL};
		execv(c->binary, argv);
		fprintf(stderr, "coral-node: cannot run %s: %s\n", c->binary, strerror(errno));
		_exit(127);
	}
	c->pid = pid;
	coral_proc_spawned(sv->proc, c->def->id, pid, is_restart);
	log_info("%s %s (pid %d)", is_restart ? "restarted" : "started", c->def->name, (int)pid);
	return 0;
}

static const char *set_degraded(struct supervisor *sv, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *set_degraded(struct supervisor *sv, const char *fmt, ...)
{
	static char reason[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	coral_proc_set_node(sv->proc, CORAL_NODE_DEGRADED, reason, 0);
	log_error("node degraded: %s", reason);
	return reason;
}

static void on_restart_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct child *c = arg;
	struct supervisor *sv = c->sv;
	if (sv->stopping)
		return;
	if (c->nrestarts == RESTART_RING) {
		memmove(c->restarts, c->restarts + 1, sizeof(c->restarts[0]) * (RESTART_RING - 1));
		c->nrestarts--;
	}
	c->restarts[c->nrestarts++] = coral_now_mono_ns();
	if (spawn(sv, c, true) != 0)
		set_degraded(sv, "%s could not be restarted: fork failed", c->def->name);
}

static void child_exited(struct supervisor *sv, struct child *c, int status)
{
	char how[96], note[160];
	describe_exit(status, how, sizeof(how));
	c->pid = 0;
	if (sv->stopping)
		return;
	uint64_t now = coral_now_mono_ns();
	uint64_t window = (uint64_t)sv->conf->supervisor.restart_window_s * 1000000000ull;
	int keep = 0;
	for (int i = 0; i < c->nrestarts; i++)
		if (now - c->restarts[i] < window)
			c->restarts[keep++] = c->restarts[i];
	c->nrestarts = keep;
	if (keep >= sv->conf->supervisor.restart_max) {
		c->failed = true;
		snprintf(note, sizeof(note), "%s; not restarted: %d restarts in %llds", how, keep,
			 (long long)sv->conf->supervisor.restart_window_s);
		coral_proc_set_state(sv->proc, c->def->id, CORAL_PROC_FAILED, note);
		set_degraded(sv, "%s %s and was restarted %d times in %lld s (restart_max): "
			     "fix the cause (see %s/%s), then coral-node restart %lld",
			     c->def->name, how, keep, (long long)sv->conf->supervisor.restart_window_s,
			     sv->node->run_dir, NODE_LOG, (long long)sv->node->id);
		return;
	}
	int64_t delay = sv->conf->supervisor.restart_backoff_ms;
	for (int i = 0; i < keep && delay < sv->conf->supervisor.restart_backoff_max_ms; i++)
		delay *= 2;
	if (delay > sv->conf->supervisor.restart_backoff_max_ms)
		delay = sv->conf->supervisor.restart_backoff_max_ms;
	snprintf(note, sizeof(note), "last exit: %s", how);
	coral_proc_set_state(sv->proc, c->def->id, CORAL_PROC_RESTARTING, note);
	log_warn("%s %s; restart %d in the last %llds, in %lld ms", c->def->name, how, keep + 1,
		 (long long)sv->conf->supervisor.restart_window_s, (long long)delay);
	struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
	evtimer_add(c->restart_timer, &tv);
}

static void reap(struct supervisor *sv)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < NCHILDREN; i++)
			if (sv->child[i].pid == pid)
				child_exited(sv, &sv->child[i], status);
	}
}

static void stop_all(struct supervisor *sv, const char *why)
{
	sv->stopping = true;
	coral_proc_set_node(sv->proc, CORAL_NODE_STOPPING, why, 0);
	for (int i = NCHILDREN - 1; i >= 0; i--) {
		struct child *c = &sv->child[i];
		if (c->restart_timer) /* none yet for a daemon a failed start-up never reached */
			evtimer_del(c->restart_timer);
		if (c->pid <= 0)
			continue;
		coral_proc_set_state(sv->proc, c->def->id, CORAL_PROC_STOPPING, NULL);
		stop_pid(c->pid, true, sv->conf->supervisor.stop_grace_ms, c->def->name);
		log_info("stopped %s (pid %d)", c->def->name, (int)c->pid);
		c->pid = 0;
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct supervisor *sv = arg;
	if (sig == SIGCHLD) {
		reap(sv);
		return;
	}
	if (sig == SIGHUP) {
		log_info("SIGHUP: asking every daemon to reload");
		for (int i = 0; i < NCHILDREN; i++)
			if (sv->child[i].pid > 0)
				kill(sv->child[i].pid, SIGHUP);
		return;
	}
	log_info("%s: stopping node %lld", strsignal((int)sig), (long long)sv->node->id);
	stop_all(sv, "stop requested");
	event_base_loopexit(sv->base, NULL);
}

/* Once a second: a daemon whose heartbeat stopped, or that never became ready, is killed;
 * the exit then goes through the restart path like any other. */
static void on_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct supervisor *sv = arg;
	if (sv->stopping)
		return;
	struct coral_proc_snapshot snap;
	coral_proc_snapshot(sv->proc, &snap);
	uint64_t now = coral_now_mono_ns();
	uint64_t hang = (uint64_t)sv->conf->supervisor.hang_timeout_ms * 1000000ull;
	uint64_t ready = (uint64_t)sv->conf->supervisor.ready_timeout_ms * 1000000ull;
	for (int i = 0; i < NCHILDREN; i++) {
		struct child *c = &sv->child[i];
		const struct coral_proc_slot_snap *s = &snap.slot[c->def->id];
		if (c->pid <= 0)
			continue;
		if (s->state == CORAL_PROC_READY && hang && now > s->heartbeat_mono_ns &&
		    now - s->heartbeat_mono_ns > hang) {
			log_error("%s (pid %d) has not refreshed its heartbeat for %llu ms: killing it",
				  c->def->name, (int)c->pid,
				  (unsigned long long)((now - s->heartbeat_mono_ns) / 1000000));
			kill(c->pid, SIGKILL);
		} else if (s->state == CORAL_PROC_STARTING && now - s->start_mono_ns > ready) {
			log_error("%s (pid %d) did not become ready within %lld ms: killing it",
				  c->def->name, (int)c->pid, (long long)sv->conf->supervisor.ready_timeout_ms);
			kill(c->pid, SIGKILL);
		}
	}
}

/* Blocking wait for one daemon's readiness at start-up. */
static int wait_ready(struct supervisor *sv, struct child *c, char *err, size_t errsz)
{
	uint64_t deadline = coral_now_mono_ns() +
			    (uint64_t)sv->conf->supervisor.ready_timeout_ms * 1000000ull;
	for (;;) {
		uint32_t st = __atomic_load_n(&sv->proc->slots[c->def->id].state, __ATOMIC_ACQUIRE);
		if (st == CORAL_PROC_READY)
			return 0;
		int status;
		if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
			char how[96];
			describe_exit(status, how, sizeof(how));
			c->pid = 0;
			snprintf(err, errsz, "%s %s before it was ready; see %s/%s", c->def->name, how,
				 sv->node->run_dir, NODE_LOG);
			return CORAL_ECONN;
		}
		if (coral_now_mono_ns() >= deadline) {
			snprintf(err, errsz, "%s did not become ready within %lld ms; see %s/%s",
				 c->def->name, (long long)sv->conf->supervisor.ready_timeout_ms,
				 sv->node->run_dir, NODE_LOG);
			return CORAL_ETIMEDOUT;
		}
		usleep(5000);
	}
}

static void report(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int fd, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	if (write(fd, buf, (size_t)n) < 0) {
		/* the parent is gone: nothing to tell */
	}
}

static void redirect_output(const struct coral_node_conf *node)
{
	char path[CORAL_STR_MAX + 32], old[CORAL_STR_MAX + 40];
	coral_conf_run_path(node, NODE_LOG, path, sizeof(path));
	struct stat st;
	if (stat(path, &st) == 0 && st.st_size > NODE_LOG_ROTATE) {
		snprintf(old, sizeof(old), "%s.1", path);
		rename(path, old); /* one old generation: the log has a bound */
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	int nul = open("/dev/null", O_RDONLY);
	if (nul >= 0) {
		dup2(nul, 0);
		close(nul);
	}
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
}

/* The supervisor's life, in the forked child. Writes "OK ..." or "ERR ..." to fd. */
static int supervise(struct coral_conf *conf, const struct coral_node_conf *node, int fd, int pidfd)
{
	static struct supervisor svs;
	struct supervisor *sv = &svs;
	memset(sv, 0, sizeof(*sv));
	sv->conf = conf;
	sv->node = node;
	sv->pidfd = pidfd;
	setsid();
	redirect_output(node);
	struct coral_log_opts lo = {
		.program = "coral-node", .node_id = (int)node->id, .level = CORAL_LOG_INFO,
		.to_stderr = conf->cluster.log_stderr, .to_syslog = conf->cluster.log_syslog,
		.burst = (int)conf->cluster.log_burst, .interval_ms = (int)conf->cluster.log_interval_ms,
	};
	coral_log_init(&lo);
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(pidfd, 0) != 0 || pwrite(pidfd, buf, (size_t)n, 0) != n) {
		report(fd, "ERR cannot write the supervisor pidfile: %s\n", strerror(errno));
		return 1;
	}
	/* A stale SGA from a supervisor that died: its daemons are gone (checked by the
	 * caller), so it holds nothing of value. */
	if (coral_sga_exists(node->sga_name)) {
		log_warn("removing stale SGA %s left by an earlier run", node->sga_name);
		remove_node_files(conf, node, false);
	}
	int rc = coral_sga_create(&sv->sga, conf, node);
	if (rc != 0) {
		report(fd, "ERR %s\n", sv->sga.errmsg);
		return 1;
	}
	sv->proc = coral_proc_table(&sv->sga);
	coral_proc_set_node(sv->proc, CORAL_NODE_STARTING, "", getpid());
	log_info("node %lld starting: SGA %s (%lld bytes)", (long long)node->id, node->sga_name,
		 (long long)node->sga_size);

	sv->base = event_base_new();
	if (sv->base == NULL) {
		report(fd, "ERR cannot create an event loop\n");
		coral_sga_destroy(node->sga_name);
		return 1;
	}
	static const int sigs[4] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; i < 4; i++) {
		sv->ev_sig[i] = evsignal_new(sv->base, sigs[i], on_signal, sv);
		evsignal_add(sv->ev_sig[i], NULL);
	}
	signal(SIGPIPE, SIG_IGN);
	char err[512] = "";
	int i;
	sv->metrics = metrics_http_start(sv->base, conf, node, &sv->sga, err, sizeof(err));
	if (sv->metrics == NULL && err[0])
		rc = CORAL_ECONFIG;
	for (i = 0; i < NCHILDREN && rc == 0; i++) {
		struct child *c = &sv->child[i];
		c->def = &children[i];
		c->sv = sv;
		c->restart_timer = evtimer_new(sv->base, on_restart_timer, c);
		if (find_binary(conf, c->def->name, c->binary, sizeof(c->binary)) != 0) {
			snprintf(err, sizeof(err), "cannot find the %s binary (set [supervisor] bin_dir)",
				 c->def->name);
			rc = CORAL_ENOENT;
			break;
		}
		rc = spawn(sv, c, false);
		if (rc == 0)
			rc = wait_ready(sv, c, err, sizeof(err));
		else
			snprintf(err, sizeof(err), "cannot start %s", c->def->name);
	}
	if (rc != 0) {
		log_error("start-up failed: %s", err);
		/* said first, so that nothing in the clean-up can hide it (the caller waits for
		 * this process to exit before it returns) */
		report(fd, "ERR %s\n", err);
		metrics_http_stop(sv->metrics);
		sv->metrics = NULL;
		stop_all(sv, "start-up failed");
		remove_node_files(conf, node, false);
		return 1;
	}
	coral_proc_set_node(sv->proc, CORAL_NODE_RUNNING, "", 0);
	log_info("node %lld running: %d daemons ready", (long long)node->id, NCHILDREN);
	report(fd, "OK %d\n", (int)getpid());
	close(fd);

	sv->ev_check = event_new(sv->base, -1, EV_PERSIST, on_check, sv);
	struct timeval one = {1, 0};
	event_add(sv->ev_check, &one);
	reap(sv); /* anything that died between readiness and the loop */
	event_base_dispatch(sv->base);

	metrics_http_stop(sv->metrics);
	coral_sga_detach(&sv->sga);
	int removed = remove_node_files(conf, node, true);
	log_info("node %lld stopped; removed %d files and the SGA", (long long)node->id, removed);
	for (i = 0; i < NCHILDREN; i++)
		if (sv->child[i].restart_timer)
			event_free(sv->child[i].restart_timer);
	for (i = 0; i < 4; i++)
		event_free(sv->ev_sig[i]);
	event_free(sv->ev_check);
	event_base_free(sv->base);
	close(pidfd);
	return 0;
}

/* ---- commands --------------------------------------------------------------------- */

static int cmd_start(struct coral_conf *conf, const struct coral_node_conf *node)
{
	if (!coral_host_is_local(node->host)) {
		fprintf(stderr, "coral-node: node %lld is on host %s, not this machine: start it there\n",
			(long long)node->id, node->host);
		return 1;
	}
	if (coral_mkdir_p(node->run_dir, 0750) != 0) {
		fprintf(stderr, "coral-node: cannot create run directory %s: %s\n", node->run_dir,
			strerror(errno));
		return 1;
	}
	int pidfd = lock_pidfile(node, true);
	if (pidfd < 0) {
		pid_t p = supervisor_pid(node);
		if (p > 0)
			fprintf(stderr, "coral-node: node %lld is already running (supervisor pid %d)\n",
				(long long)node->id, (int)p);
		else
			fprintf(stderr, "coral-node: cannot lock the supervisor pidfile in %s: %s\n",
				node->run_dir, strerror(errno));
		return 1;
	}
	pid_t pids[NCHILDREN];
	char names[512];
	if (orphans(conf, node, pids, names, sizeof(names)) > 0) {
		fprintf(stderr, "coral-node: node %lld has daemons running without a supervisor (%s): "
			"coral-node stop %lld, then start it\n", (long long)node->id, names,
			(long long)node->id);
		close(pidfd);
		return 1;
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		perror("coral-node: pipe");
		close(pidfd);
		return 1;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		perror("coral-node: fork");
		return 1;
	}
	if (pid == 0) {
		close(p[0]);
		_exit(supervise(conf, node, p[1], pidfd));
	}
	close(p[1]);
	close(pidfd);
	char msg[1024];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof(msg) - 1 && (r = read(p[0], msg + len, sizeof(msg) - 1 - len)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)r;
	}
	close(p[0]);
	msg[len] = '\0';
	msg[strcspn(msg, "\n")] = '\0';
	if (strncmp(msg, "OK ", 3) == 0) {
		printf("node %lld started: %d daemons ready, supervisor pid %s, SGA %s, log %s/%s\n",
		       (long long)node->id, NCHILDREN, msg + 3, node->sga_name, node->run_dir, NODE_LOG);
		return 0;
	}
	waitpid(pid, NULL, 0);
	if (strncmp(msg, "ERR ", 4) == 0)
		fprintf(stderr, "coral-node: node %lld did not start: %s\n", (long long)node->id, msg + 4);
	else
		fprintf(stderr, "coral-node: node %lld did not start: the supervisor exited during "
			"start-up; see %s/%s\n", (long long)node->id, node->run_dir, NODE_LOG);
	return 1;
}

static int cmd_stop(struct coral_conf *conf, const struct coral_node_conf *node)
{
	pid_t sp = supervisor_pid(node);
	if (sp > 0) {
		if (kill(sp, SIGTERM) != 0) {
			fprintf(stderr, "coral-node: cannot signal supervisor pid %d: %s\n", (int)sp,
				strerror(errno));
			return 1;
		}
		uint64_t limit = (uint64_t)conf->supervisor.stop_grace_ms * (NCHILDREN + 1) + 10000;
		if (!wait_unlocked(node, limit)) {
			fprintf(stderr, "coral-node: supervisor pid %d did not stop within %llu ms\n",
				(int)sp, (unsigned long long)limit);
			return 1;
		}
	}
	/* Whatever is left (the supervisor was killed, or died): clean it up by hand. */
	pid_t pids[NCHILDREN];
	char names[512];
	int n = orphans(conf, node, pids, names, sizeof(names));
	for (int i = NCHILDREN - 1; i >= 0; i--)
		stop_pid(pids[i], false, conf->supervisor.stop_grace_ms, children[i].name);
	int removed = remove_node_files(conf, node, true);
	if (sp > 0)
		printf("node %lld stopped\n", (long long)node->id);
	else if (n > 0 || removed > 0)
		printf("node %lld had no supervisor: stopped %d orphaned daemon(s)%s%s, removed %d stale "
		       "file(s) and SGA\n", (long long)node->id, n, n ? ": " : "", names, removed);
	else
		printf("node %lld is not running\n", (long long)node->id);
	return 0;
}

static int cmd_status(struct coral_conf *conf, const struct coral_node_conf *node, json_t *arr)
{
	struct coral_node_status st;
	char err[CORAL_ERRMSG_MAX];
	int rc = coral_status_collect(conf, node, true, &st, err, sizeof(err));
	if (rc != 0) {
		if (arr)
			json_array_append_new(arr, json_pack("{s:I, s:s, s:s}", "node", (json_int_t)node->id,
							     "state", "down", "error", err));
		else
			printf("node %lld [node.%s] down: %s\n", (long long)node->id, node->label, err);
		return 3;
	}
	if (arr)
		json_array_append_new(arr, coral_status_json(&st));
	else
		coral_status_print(stdout, &st);
	return coral_status_health(&st);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: coral-node [-c FILE] [--json] start|stop|status|restart NODE|all\n"
		"       coral-node [-c FILE] -n [-v]     check the configuration; -v prints it\n"
		"NODE is a node id or label; all means every node of the file on this machine.\n"
		"status exits 0 when healthy, 1 when degraded, 3 when not running. See coral-node(8).\n");
}

int main(int argc, char **argv)
{
	static struct coral_conf conf;
	conf_path = coral_conf_default_path();
	bool check = false, verbose = false;
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'n'},
		{"verbose", no_argument, NULL, 'v'},      {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "+c:nvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': conf_path = optarg; break;
		case 'n': check = true; break;
		case 'v': verbose = true; break;
		case 'j': opt_json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	struct coral_log_opts lo = {.program = "coral-node", .level = CORAL_LOG_INFO, .to_stderr = true};
	coral_log_init(&lo);
	if (coral_conf_load(&conf, conf_path) != 0) {
		fprintf(stderr, "coral-node: %s\n", conf.errmsg);
		return 1;
	}
	static char abs_path[PATH_MAX];
	if (realpath(conf_path, abs_path) != NULL)
		conf_path = abs_path; /* daemons run with another working directory */
	if (check) {
		/* every node's SGA must hold the sections this configuration gives it */
		int bad = 0;
		for (int i = 0; i < conf.nnodes; i++) {
			char err[CORAL_ERRMSG_MAX];
			if (coral_sga_check(&conf, &conf.nodes[i], err, sizeof(err)) != 0) {
				fprintf(stderr, "coral-node: %s: %s\n", conf.path, err);
				bad++;
			}
		}
		if (bad)
			return 1;
		if (verbose)
			coral_conf_print(&conf, stdout);
		else
			printf("coral-node: configuration %s is valid\n", conf.path);
		return 0;
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind], *which = argv[optind + 1];
	if (strcmp(cmd, "start") && strcmp(cmd, "stop") && strcmp(cmd, "status") && strcmp(cmd, "restart")) {
		fprintf(stderr, "coral-node: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	const struct coral_node_conf *nodes[CORAL_MAX_NODES];
	int nn = 0;
	if (strcmp(which, "all") == 0) {
		for (int i = 0; i < conf.nnodes; i++)
			if (coral_host_is_local(conf.nodes[i].host))
				nodes[nn++] = &conf.nodes[i];
		if (nn == 0) {
			fprintf(stderr, "coral-node: no node of %s is on this machine\n", conf.path);
			return 1;
		}
	} else {
		nodes[0] = coral_conf_node(&conf, which);
		if (nodes[0] == NULL) {
			fprintf(stderr, "coral-node: %s has no node '%s'\n", conf.path, which);
			return 2;
		}
		nn = 1;
	}
	int worst = 0;
	json_t *arr = opt_json && strcmp(cmd, "status") == 0 ? json_array() : NULL;
	for (int i = 0; i < nn; i++) {
		int rc = 0;
		if (strcmp(cmd, "stop") == 0 || strcmp(cmd, "restart") == 0)
			rc = cmd_stop(&conf, nodes[i]);
		if (rc == 0 && (strcmp(cmd, "start") == 0 || strcmp(cmd, "restart") == 0))
			rc = cmd_start(&conf, nodes[i]);
		if (strcmp(cmd, "status") == 0)
			rc = cmd_status(&conf, nodes[i], arr);
		if (rc > worst)
			worst = rc;
	}
	if (arr) {
		json_dumpf(arr, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(arr);
	}
	return worst;
}

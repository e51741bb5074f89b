/* What coralctl's command files share: the context of the run (the configuration, the
 * node addressed, --json, the command being run), the table of commands, and one control
 * request to one daemon of that node. */
#ifndef CORAL_CORALCTL_H
#define CORAL_CORALCTL_H

#include "conf.h"
#include "ctl.h"

#include <jansson.h>
#include <stdbool.h>

/* One command: coralctl AREA [VERB] ARGUMENTS. coralctl.c holds the table of them, from
 * which the usage text, the argument counts checked before run and the shell completion
 * (coralctl completion bash; packaging/bash-completion/coralctl) are made. */
struct coralctl_cmd {
	const char *area;
	const char *verb;        /* NULL: the area is the whole command */
	int daemon;              /* CORAL_D_* that answers, or -1 (the SGA, files, several) */
	int min_args, max_args;  /* after AREA [VERB] */
	const char *args;        /* their usage: "ID HOST:PORT" */
	const char *help;
	int (*run)(int argc, char **argv);
};

/* The run: one per process, set up by main before a command runs. */
struct coralctl_ctx {
	struct coral_conf conf;
	const struct coral_node_conf *node;
	bool json;
	const struct coralctl_cmd *cmd;   /* the command being run */
};
extern struct coralctl_ctx ctx;

/* The running command's usage on stderr; returns 2 (the usage exit status). */
int coralctl_usage_error(void);

void print_json(json_t *j);
/* A wall-clock time in ns as 2026-12-05T23:13:01.123Z. */
void coralctl_time(uint64_t ns, char *buf, size_t bufsz);
/* On failure prints nothing, leaves what to do in err and returns NULL. */
Coral__CtlResponse *call(int daemon, Coral__CtlRequest *req, char *err, size_t errsz);
/* call(), and the error code (the daemon's, or the call's own) in *code on failure. */
Coral__CtlResponse *call_code(int daemon, Coral__CtlRequest *req, char *err, size_t errsz, int *code);

/* Sends req to one daemon of the node; prints the error (as JSON with --json) and returns
 * NULL on failure or when the answer is not of the kind wanted (0: any). */
Coral__CtlResponse *daemon_call(int daemon, Coral__CtlRequest *req, int want);
/* daemon_call() with a request that carries nothing but its kind (status, history, stats). */
Coral__CtlResponse *daemon_ask(int daemon, Coral__CtlRequest__BodyCase body, int want);
/* daemon_call(), asking again every 50 ms for up to busy_ms while the daemon answers busy
 * (CORAL_EBUSY: a refusal that says retry, which nothing was done for). */
Coral__CtlResponse *daemon_call_busy(int daemon, Coral__CtlRequest *req, int want, int busy_ms);

/* The commands, by file (argc, argv: the arguments after AREA [VERB], counted already). */
/* coralctl_top.c */
int run_top(int argc, char **argv);
/* coralctl_raft.c */
int run_raft_status(int argc, char **argv);
int run_raft_history(int argc, char **argv);
int run_raft_transfer(int argc, char **argv);
int run_cluster_members(int argc, char **argv);
int run_cluster_add_node(int argc, char **argv);
int run_cluster_remove_node(int argc, char **argv);
int run_kv_get(int argc, char **argv);
int run_kv_put(int argc, char **argv);
int run_kv_del(int argc, char **argv);
int run_kv_list(int argc, char **argv);
int run_kv_watch(int argc, char **argv);
/* coralctl_grd.c */
int run_grd_status(int argc, char **argv);
int run_grd_resource(int argc, char **argv);
int run_grd_top(int argc, char **argv);
int run_grd_remaster(int argc, char **argv);
int run_grd_recovered(int argc, char **argv);
int run_grd_history(int argc, char **argv);
int run_recovery_status(int argc, char **argv);
int run_recovery_history(int argc, char **argv);
int run_grd_lock(int argc, char **argv);
int run_grd_unlock(int argc, char **argv);
/* coralctl_standby.c */
int run_standby_status(int argc, char **argv);
int run_standby_seed(int argc, char **argv);
int run_standby_history(int argc, char **argv);
int run_standby_finish(int argc, char **argv);
int run_standby_failover(int argc, char **argv);
int run_standby_switchover(int argc, char **argv);
int run_standby_rejoin(int argc, char **argv);
/* coralctl_storage.c */
int run_datafile_create(int argc, char **argv);
int run_datafile_list(int argc, char **argv);
/* coralctl_ges.c */
int run_ges_stats(int argc, char **argv);
int run_ges_resource(int argc, char **argv);
int run_ges_deadlocks(int argc, char **argv);
int run_ges_graph(int argc, char **argv);
int run_ges_locks(int argc, char **argv);
/* coralctl_rsrc.c */
int run_rsrc_load(int argc, char **argv);
int run_rsrc_activate(int argc, char **argv);
int run_rsrc_switch(int argc, char **argv);
int run_rsrc_kill(int argc, char **argv);
int run_rsrc_groups(int argc, char **argv);
int run_rsrc_rules(int argc, char **argv);
int run_rsrc_plans(int argc, char **argv);
int run_rsrc_plan(int argc, char **argv);
int run_rsrc_sessions(int argc, char **argv);
int run_rsrc_stats(int argc, char **argv);
int run_rsrc_schedule(int argc, char **argv);
int run_rsrc_session(int argc, char **argv);
/* coralctl_gcs.c */
int run_gcs_stats(int argc, char **argv);
int run_gcs_block(int argc, char **argv);
int run_cache(int argc, char **argv);
int run_redo(int argc, char **argv);

#endif

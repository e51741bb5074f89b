/* What coralctl's command files share: the configuration, the node addressed, --json, and
 * one control request to one daemon of that node. */
#ifndef CORAL_CORALCTL_H
#define CORAL_CORALCTL_H

#include "conf.h"
#include "ctl.h"

#include <jansson.h>
#include <stdbool.h>

extern struct coral_conf conf;
extern const struct coral_node_conf *node;
extern bool opt_json;

void print_json(json_t *j);
/* On failure prints nothing, leaves what to do in err and returns NULL. */
Coral__CtlResponse *call(int daemon, Coral__CtlRequest *req, char *err, size_t errsz);
/* call(), and the error code (the daemon's, or the call's own) in *code on failure. */
Coral__CtlResponse *call_code(int daemon, Coral__CtlRequest *req, char *err, size_t errsz, int *code);

/* Sends req to one daemon of the node; prints the error (as JSON with --json) and returns
 * NULL on failure or when the answer is not of the kind wanted (0: any). */
Coral__CtlResponse *daemon_call(int daemon, Coral__CtlRequest *req, int want);
/* daemon_call(), asking again every 50 ms for up to busy_ms while the daemon answers busy
 * (CORAL_EBUSY: a refusal that says retry, which nothing was done for). */
Coral__CtlResponse *daemon_call_busy(int daemon, Coral__CtlRequest *req, int want, int busy_ms);

/* coralctl_grd.c: grd status|resource|top|remaster|history|lock|unlock */
int cmd_grd(int argc, char **argv);

/* coralctl_storage.c: datafile create|list */
int cmd_datafile(int argc, char **argv);

/* coralctl_gcs.c: gcs stats|block, cache, redo */
int cmd_gcs(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_redo(int argc, char **argv);

/* coralctl_raft.c: raft status|history|transfer-leader, cluster ..., kv ... */
int cmd_raft(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_kv(int argc, char **argv);

#endif

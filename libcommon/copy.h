/* A standby's copy of its primary (SHARED/standby/PRIMARY): where it is, and its apply's
 * state (apply.state). replicad's apply writes them; libcoral's sessions on a standby read
 * the copy, coral-bank --check-copy checks it, and the storage refuses a data file of the
 * standby's own before it has taken over (the copy's files become its own then). */
#ifndef CORAL_COPY_H
#define CORAL_COPY_H

#include "conf.h"
#include "sga.h"

#include <stdbool.h>
#include <stdint.h>

#define CORAL_COPY_STATE_MAGIC 0x59504c41u /* "APLY" */
#define CORAL_COPY_STATE_VERSION 3

/* apply.state, written whole (a temporary file, fsync, rename). */
struct coral_copy_state {
	uint32_t magic, version;
	uint64_t applied_scn;         /* every transaction committed up to here is in the copy */
	uint64_t torn_scn;            /* not a state of the primary's until applied_scn >= it */
	uint64_t seeded_ns;
	char source[256];
	uint8_t known[CORAL_MAX_NODES + 1];
	uint64_t resume[CORAL_MAX_NODES + 1];
	uint64_t finished_ns;         /* the apply finished (a failover): no more redo */
	uint64_t end[CORAL_MAX_NODES + 1];  /* ... each copy's end then */
	uint64_t took_over;           /* the copy became this cluster's at this site epoch */
	uint32_t pad;
	uint32_t crc;
};

/* Whether conf is a standby's ([replication] role = standby). */
bool coral_copy_is_standby(const struct coral_conf *conf);
/* The copy as a configuration of its own: the primary's cluster name, the copy's directory
 * as its shared storage (the rest is the standby's). */
void coral_copy_conf(const struct coral_conf *standby, struct coral_conf *copy);
/* The copy's apply state: 0, CORAL_ENOENT (never seeded), CORAL_ECORRUPT, CORAL_EIO. */
int coral_copy_state_read(const char *dir, struct coral_copy_state *s);
int coral_copy_state_write(const char *dir, struct coral_copy_state *s, char *err, size_t errsz);
/* SHARED/role: the role a switchover or coralctl standby rejoin gave the cluster, which
 * overrides [replication] role (the configuration loader reads it). read: 0 with "primary"
 * or "standby" in role, CORAL_ENOENT without one, CORAL_ECORRUPT for anything else. */
int coral_role_read(const char *shared_dir, char *role, size_t rolesz);
int coral_role_write(const char *shared_dir, const char *role, char *err, size_t errsz);

/* Whether the copy is a state the primary was in (seeded, and past a batch written in part). */
static inline bool coral_copy_consistent(const struct coral_copy_state *s) { return s->applied_scn >= s->torn_scn; }

#endif

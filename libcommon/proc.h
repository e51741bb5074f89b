/* The proc table: a section of the SGA with one slot per daemon of the node (pid, state,
 * start time, restarts, last exit, heartbeat, request counters) and the node's own state
 * as the supervisor sees it (running, degraded and why). The daemon writes its pid, state
 * and heartbeat; the supervisor writes restarts, exits and the node state. coralctl and
 * coral-node status read it without locks through the sequence counters, so status works
 * even when a daemon is hung. */
#ifndef CORAL_PROC_H
#define CORAL_PROC_H

#include "conf.h"
#include "sga.h"
#include "sync.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

enum coral_proc_state {
	CORAL_PROC_EMPTY,      /* never started */
	CORAL_PROC_STARTING,   /* spawned, not ready */
	CORAL_PROC_READY,      /* serving */
	CORAL_PROC_STOPPING,   /* asked to stop */
	CORAL_PROC_STOPPED,    /* stopped cleanly */
	CORAL_PROC_RESTARTING, /* exited unexpectedly; the supervisor will restart it */
	CORAL_PROC_FAILED,     /* gave up: restart cap reached or never became ready */
	CORAL_PROC_NSTATES
};

enum coral_node_state {
	CORAL_NODE_DOWN,
	CORAL_NODE_STARTING,
	CORAL_NODE_RUNNING,
	CORAL_NODE_DEGRADED,
	CORAL_NODE_STOPPING,
	CORAL_NODE_NSTATES
};

const char *coral_proc_state_name(int state);
const char *coral_node_state_name(int state);

struct coral_proc_slot {
	/* Fields under seq are written with proc_table.mu held. */
	struct coral_seq seq;
	int32_t pid;
	uint32_t state;
	uint64_t start_real_ns;
	uint64_t start_mono_ns;
	uint32_t restarts;
	char note[160];            /* last exit or failure, in words */
	/* Lock-free fields, written only by the daemon that owns the slot. */
	_Atomic uint64_t heartbeat_mono_ns;
	_Atomic uint64_t requests;
	_Atomic uint64_t refused;
	_Atomic uint32_t clients;
} __attribute__((aligned(CORAL_SGA_ALIGN)));

struct coral_proc_table {
	pthread_mutex_t mu;        /* serialises every seq writer below */
	struct coral_seq seq;      /* node fields */
	int32_t supervisor_pid;
	uint32_t node_state;
	char reason[256];          /* why the node is degraded */
	uint32_t nslots;
	struct coral_proc_slot slots[CORAL_NDAEMONS];
};

/* A consistent copy of the table for display. */
struct coral_proc_slot_snap {
	int32_t pid;
	uint32_t state;
	uint64_t start_real_ns, start_mono_ns;
	uint32_t restarts;
	char note[160];
	uint64_t heartbeat_mono_ns, requests, refused;
	uint32_t clients;
};

struct coral_proc_snapshot {
	int32_t supervisor_pid;
	uint32_t node_state;
	char reason[256];
	struct coral_proc_slot_snap slot[CORAL_NDAEMONS];
};

size_t coral_proc_sga_size(const struct coral_conf *conf);
int coral_proc_sga_init(void *section, size_t size, const struct coral_conf *conf,
			const struct coral_node_conf *node);
void coral_proc_sga_fill(const void *section, uint64_t *used, uint64_t *capacity);

struct coral_proc_table *coral_proc_table(const struct coral_sga *sga);

int coral_proc_lock(struct coral_proc_table *t);   /* 0 or CORAL_EOWNERDEAD (held) */
void coral_proc_unlock(struct coral_proc_table *t);
/* The EOWNERDEAD repair: makes every half-written sequence counter even again. */
void coral_proc_repair(void *table);

/* Daemon side. */
int coral_proc_register(struct coral_proc_table *t, int daemon, pid_t pid);
void coral_proc_set_state(struct coral_proc_table *t, int daemon, enum coral_proc_state st,
			  const char *note);
void coral_proc_heartbeat(struct coral_proc_table *t, int daemon);

/* Supervisor side. */
void coral_proc_spawned(struct coral_proc_table *t, int daemon, pid_t pid, bool is_restart);
void coral_proc_set_node(struct coral_proc_table *t, enum coral_node_state st, const char *reason,
			 pid_t supervisor);

void coral_proc_snapshot(const struct coral_proc_table *t, struct coral_proc_snapshot *out);

#endif

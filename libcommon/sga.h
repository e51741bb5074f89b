/* The SGA: one POSIX shared-memory segment per node, created by the supervisor before any
 * daemon starts and removed when the node stops. A header (magic, layout version, size,
 * cluster name, node id) is followed by a table of named sections; every subsystem that
 * keeps state in the SGA declares a size function and an init function in the one
 * registry in sga.c, in dependency order. Sections hold offsets, never pointers. */
#ifndef CORAL_SGA_H
#define CORAL_SGA_H

#include "conf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_SGA_MAGIC 0x4147534c41524f43ull /* "CORALSGA" little-endian */
#define CORAL_SGA_VERSION 20u  /* 2: the cache section has session slots; 3: with start times;
				  * 4: the redo section keeps the log writer's I/O error; 5: buffers
				  * keep their first change's LSN, the redo section the checkpoint; 6: session
				  * slots their open transaction's first LSN; 7: and whether it
				  * died open; 8: the directory counts nodes' losses; 9: and whether
				  * lmsd has written what may hold a lost node's changes; 10: the
				  * cache keeps lmsd's pid, the redo section its writer's incarnation;
				  * 11: lmdd's sessions' locks (ges_own); 12: and the fast table;
				  * 13: the daemons' published metrics; 14: the redo
				  * section's gate for synchronous commit; 15: and its fence
				  * after a failover; 16: and a standby's refusal of changes;
				  * 17: and a thread closed for a switchover; 18: the
				  * resource manager's section; 19: session slots can be
				  * revoked, own locks say whether they block someone; 20: the
				  * cache keeps consistent images of blocks under change */
#define CORAL_SGA_MAX_SECTIONS 16
#define CORAL_SGA_ALIGN 64

struct coral_sga_section {
	char name[24];
	uint64_t offset;
	uint64_t size;
};

struct coral_sga_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t nsections;
	uint64_t size;
	char cluster[CORAL_CLUSTER_NAME_MAX + 8];
	uint32_t node_id;
	int32_t creator_pid;
	uint64_t created_real_ns;
	_Atomic uint32_t ready;   /* set last by the creator; attach waits for it */
	struct coral_sga_section sections[CORAL_SGA_MAX_SECTIONS];
};

struct coral_sga {
	char name[CORAL_STR_MAX];
	void *base;
	size_t size;
	bool readonly;
	struct coral_sga_hdr *hdr;
	char errmsg[CORAL_ERRMSG_MAX];
};

/* One entry per subsystem that lives in the SGA. */
struct coral_sga_subsys {
	const char *name;
	size_t (*size)(const struct coral_conf *conf);
	int (*init)(void *section, size_t size, const struct coral_conf *conf,
		    const struct coral_node_conf *node);
	/* fill: entries in use and capacity, for coralctl sga */
	void (*fill)(const void *section, uint64_t *used, uint64_t *capacity);
};

const struct coral_sga_subsys *coral_sga_subsystems(size_t *n);

/* Creates the node's segment (fails with CORAL_EEXIST if it is there), initialises every
 * section and marks it ready. Only the supervisor calls this. */
int coral_sga_create(struct coral_sga *sga, const struct coral_conf *conf,
		     const struct coral_node_conf *node);
/* Attaches an existing segment after checking magic, version, size and layout. */
int coral_sga_attach(struct coral_sga *sga, const struct coral_conf *conf,
		     const struct coral_node_conf *node, bool readonly);
void coral_sga_detach(struct coral_sga *sga);
/* Removes the segment name; mappings stay valid until detached. */
int coral_sga_destroy(const char *name);
bool coral_sga_exists(const char *name);

/* Address and size of a named section, or NULL. */
void *coral_sga_section(const struct coral_sga *sga, const char *name, size_t *size);
/* Maps every page of the named section into this process now (reads one byte a page): a
 * process that will scan the section at a moment that counts (smond's recovery of a lost
 * node walks the whole directory) takes the page faults at its start instead. */
void coral_sga_prefault(const struct coral_sga *sga, const char *name);

/* Bytes of sections and header needed for this configuration (with overflow check). */
int coral_sga_layout_size(const struct coral_conf *conf, uint64_t *total);
/* Whether the node's sga_size holds the sections the configuration needs: 0, or CORAL_ESIZE
 * with why in err, naming each section's size and the options that set the big ones. */
int coral_sga_check(const struct coral_conf *conf, const struct coral_node_conf *node, char *err, size_t errsz);

#endif

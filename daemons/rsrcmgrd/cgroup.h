/* rsrcmgrd's CPU enforcement through cgroups (cgroup.c): the plan's shares and caps as the
 * weights and quotas of one cgroup per consumer group, and the sessions placed in them. */
#ifndef CORAL_RSRC_CGROUP_H
#define CORAL_RSRC_CGROUP_H

#include "conf.h"
#include "rsrc_sga.h"

#include <stdbool.h>
#include <stdint.h>

struct rsrc_def;

enum { RSRC_CG_OFF, RSRC_CG_V1, RSRC_CG_V2 };

/* A session placed: its thread (process, under v2), where it was before, and where it is. */
struct rsrc_cg_placed {
	int32_t pid, tid;
	uint64_t start;
	uint32_t group;               /* index + 1 of the group whose cgroup it is in (0: none) */
	uint32_t gen;
	char orig[256];               /* its cgroup before, under root */
};

struct rsrc_cg {
	int mode;
	bool made;                    /* base made (a plan came in force once) */
	int ncpus;
	char root[CORAL_STR_MAX];     /* the hierarchy's directory */
	char base[CORAL_STR_MAX + 64];/* root/coral-CLUSTER-nNODE */
	char why[400];                /* off: why */
	char last_error[400];
	uint64_t refused, moves;      /* writes the kernel refused; sessions moved */
	int refused_logged;
	uint32_t gen;
	struct rsrc_cg_placed placed[CORAL_RSRC_SESSIONS];
};

/* Finds the hierarchy ([rsrc] cgroup and cgroup_root) and makes the node's cgroup there; off
 * (with why) when there is none or it is not writable. */
void rsrc_cg_init(struct rsrc_cg *cg, const char *mode, const char *root, const char *cluster, uint32_t node);
/* The groups' cgroups made and given the plan's shares and caps (after the SGA has it). */
void rsrc_cg_plan(struct rsrc_cg *cg, struct coral_rsrc *r, const struct rsrc_def *def, const char *plan);
/* Every session in its governing group's cgroup; those gone put back where they were. With no
 * plan in force (enforce false) every session is put back: nothing is moved for nothing. */
void rsrc_cg_place(struct rsrc_cg *cg, struct coral_rsrc *r, bool enforce);
/* A group's cgroup ("" if none) and the CPU time its sessions were throttled (its cap). */
void rsrc_cg_group_info(const struct rsrc_cg *cg, const char *name, char *path, size_t n, uint64_t *throttled_ms);
/* Every session put back, the cgroups removed. */
void rsrc_cg_fini(struct rsrc_cg *cg);

#endif

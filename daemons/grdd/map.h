/* grdd's bucket map: computed from the members and overrides of a map version, and
 * published into the SGA (see map.c). */
#ifndef CORAL_GRDD_MAP_H
#define CORAL_GRDD_MAP_H

#include "grd.h"

#include <stddef.h>
#include <stdint.h>

struct grd_bucket_override {
	uint32_t bucket;
	uint32_t node;
};
struct grd_res_override {
	struct coral_resid id;
	uint32_t node;
};

/* Owners of every bucket for a member list and bucket overrides (overrides naming a node
 * that is not a member are ignored). out has CORAL_GRD_BUCKETS entries. */
void grd_map_compute(const uint32_t *members, size_t n, const struct grd_bucket_override *bo, size_t nbo,
		     uint8_t *out);

/* What a map version says: everything needed to compute owners. */
struct grd_map_def {
	uint64_t version, record_index;
	uint32_t nmembers;
	uint32_t members[CORAL_MAX_NODES];
	size_t nbo, nres, nlost;
	const struct grd_bucket_override *bo;
	const struct grd_res_override *res;
	const struct coral_grd_lost *lost;
	const struct grd_bucket_override *lost_bo;   /* bucket overrides the lost had */
	size_t nlost_bo;
	const struct grd_res_override *lost_res;     /* resource overrides the lost had */
	size_t nlost_res;
	/* buckets a lost node's ring position gave it but an override gave to another node
	 * (node: the lost node) */
	const struct grd_bucket_override *lost_away;
	size_t nlost_away;
};
/* Computes the owners outside the sequence counter, then swaps them in. CORAL_EFULL if
 * there are more resource overrides than slots, CORAL_ENOMEM. */
int grd_map_publish(struct coral_grd_map_sga *m, const struct grd_map_def *def);

#endif

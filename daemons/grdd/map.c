/* grdd's bucket map: which node masters each of the 65,536 buckets for a member set
 * (multi-probe consistent hashing over CORAL_GRD_VNODES virtual nodes per member: a join or
 * leave moves about 1/N, only to or from that node), with bucket and resource overrides and
 * the buckets of lost nodes, and its publication in the SGA behind the sequence counter
 * (libcommon/grd.h), where every program looks masters up. */
#include "map.h"

#include "errors.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* the same mixing as the resource hash's (libcommon/grd.c): placements must not change */
static uint64_t mix(uint64_t x)
{
	return coral_splitmix64(&x);
}

/* ---- the ring ---------------------------------------------------------------------- */

struct vnode {
	uint32_t point;
	uint32_t node;
};

static int vnode_cmp(const void *a, const void *b)
{
	const struct vnode *x = a, *y = b;
	if (x->point != y->point)
		return x->point < y->point ? -1 : 1;
	return x->node < y->node ? -1 : x->node > y->node;
}

static uint32_t vnode_point(uint32_t node, uint32_t k)
{
	return (uint32_t)(mix(((uint64_t)node << 32) | k) >> 32);
}

static uint32_t probe_point(uint32_t bucket, uint32_t probe)
{
	return (uint32_t)(mix(((uint64_t)(0x5bd1e995u + probe) << 32) | bucket) >> 32);
}

/* The owners a member set gives, before overrides, for the last few member sets asked:
 * grdd asks for the same few sets again and again (the current ring, each lost node's ring,
 * the ring of a move being planned), and one computation is half a million probes. */
#define CORAL__RING_CACHE 8
struct ring_cache {
	struct {
		size_t n;
		uint64_t used;
		uint32_t members[CORAL_MAX_NODES];
		uint8_t owner[CORAL_GRD_BUCKETS];
	} e[CORAL__RING_CACHE];
	uint64_t clock;
};

static void ring_owners(const uint32_t *members, size_t n, uint8_t *out);

void grd_map_compute(const uint32_t *members, size_t n,
			   const struct grd_bucket_override *bo, size_t nbo, uint8_t *out)
{
	memset(out, 0, CORAL_GRD_BUCKETS);
	if (n == 0)
		return;
	if (n > CORAL_MAX_NODES)
		n = CORAL_MAX_NODES;
	static _Thread_local struct ring_cache *cache;
	if (cache == NULL)
		cache = calloc(1, sizeof(*cache)); /* kept for the thread's life; NULL: no cache */
	int hit = -1, victim = 0;
	for (int i = 0; cache && i < CORAL__RING_CACHE; i++) {
		if (cache->e[i].n == n && memcmp(cache->e[i].members, members, n * sizeof(uint32_t)) == 0) {
			hit = i;
			break;
		}
		if (cache->e[i].used < cache->e[victim].used)
			victim = i;
	}
	if (hit >= 0) {
		memcpy(out, cache->e[hit].owner, CORAL_GRD_BUCKETS);
		cache->e[hit].used = ++cache->clock;
	} else {
		ring_owners(members, n, out);
		if (cache) {
			cache->e[victim].n = n;
			memcpy(cache->e[victim].members, members, n * sizeof(uint32_t));
			memcpy(cache->e[victim].owner, out, CORAL_GRD_BUCKETS);
			cache->e[victim].used = ++cache->clock;
		}
	}
	for (size_t i = 0; i < nbo; i++) {
		if (bo[i].bucket >= CORAL_GRD_BUCKETS)
			continue;
		for (size_t j = 0; j < n; j++)
			if (members[j] == bo[i].node)
				out[bo[i].bucket] = (uint8_t)bo[i].node;
	}
}

static void ring_owners(const uint32_t *members, size_t n, uint8_t *out)
{
	static _Thread_local struct vnode ring[CORAL_MAX_NODES * CORAL_GRD_VNODES];
	size_t nr = 0;
	for (size_t i = 0; i < n; i++)
		for (uint32_t k = 0; k < CORAL_GRD_VNODES; k++)
			ring[nr++] = (struct vnode){vnode_point(members[i], k), members[i]};
	qsort(ring, nr, sizeof(ring[0]), vnode_cmp);
	/* first ring position for each 16-bit prefix: a probe then scans a few entries instead
	 * of a binary search (the map is recomputed on every version and every lost node) */
	static _Thread_local uint32_t first[65537];
	for (uint32_t h = 0, i = 0; h <= 65536; h++) {
		while (i < nr && (ring[i].point >> 16) < h)
			i++;
		first[h] = i;
	}
	for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++) {
		uint32_t best = UINT32_MAX, owner = ring[0].node;
		for (uint32_t p = 0; p < CORAL_GRD_PROBES; p++) {
			uint32_t pt = probe_point(b, p);
			size_t lo = first[pt >> 16];
			while (lo < nr && ring[lo].point < pt)
				lo++;
			const struct vnode *v = &ring[lo == nr ? 0 : lo];
			uint32_t dist = v->point - pt; /* wraps around the ring */
			if (dist < best || (dist == best && v->node < owner)) {
				best = dist;
				owner = v->node;
			}
		}
		out[b] = (uint8_t)owner;
	}
}

int grd_map_publish(struct coral_grd_map_sga *m, const struct grd_map_def *def)
{
	if (def->nres + def->nlost_res > m->res_cap / 2 || def->nlost > CORAL_GRD_MAX_LOST ||
	    def->nmembers > CORAL_MAX_NODES)
		return CORAL_EFULL;
	uint8_t *owner = malloc(CORAL_GRD_BUCKETS), *lost = calloc(1, CORAL_GRD_BUCKETS);
	uint8_t *tmp = malloc(CORAL_GRD_BUCKETS);
	struct coral_grd_res_slot *slots = calloc(m->res_cap, sizeof(*slots));
	if (!owner || !lost || !tmp || !slots) {
		free(owner); free(lost); free(tmp); free(slots);
		return CORAL_ENOMEM;
	}
	grd_map_compute(def->members, def->nmembers, def->bo, def->nbo, owner);
	/* a lost node's buckets: exactly those it owned in the version before its loss (its
	 * ring then, less what was overridden away, plus its own overrides), whatever joined or
	 * was lost since; the later loss wins a bucket both owned in turn, since the later
	 * master had the state */
	for (size_t l = 0; l < def->nlost; l++) {
		const struct coral_grd_lost *L = &def->lost[l];
		if (L->nring == 0 || L->nring > CORAL_MAX_NODES)
			continue;
		grd_map_compute(L->ring, L->nring, NULL, 0, tmp);
		for (size_t i = 0; i < def->nlost_away; i++)
			if (def->lost_away[i].node == L->node && def->lost_away[i].bucket < CORAL_GRD_BUCKETS)
				tmp[def->lost_away[i].bucket] = 0;
		for (size_t i = 0; i < def->nlost_bo; i++)
			if (def->lost_bo[i].node == L->node && def->lost_bo[i].bucket < CORAL_GRD_BUCKETS)
				tmp[def->lost_bo[i].bucket] = (uint8_t)L->node;
		for (uint32_t b = 0; b < CORAL_GRD_BUCKETS; b++)
			if (tmp[b] == L->node)
				lost[b] = (uint8_t)L->node;
	}
	size_t nres = 0;
	for (size_t i = 0; i < def->nres; i++) {
		bool member = false;
		for (size_t j = 0; j < def->nmembers; j++)
			member |= def->members[j] == def->res[i].node;
		if (!member || def->res[i].node == 0)
			continue;
		uint32_t s = coral_grd_map_slot_of(m, &def->res[i].id);
		while (slots[s].node != 0 && !coral_resid_eq(&slots[s].id, &def->res[i].id))
			s = (s + 1) & (m->res_cap - 1);
		if (slots[s].node == 0)
			nres++;
		slots[s].id = def->res[i].id;
		slots[s].node = def->res[i].node;
	}
	for (size_t i = 0; i < def->nlost_res; i++) {
		uint32_t s = coral_grd_map_slot_of(m, &def->lost_res[i].id);
		while (slots[s].node != 0 && !coral_resid_eq(&slots[s].id, &def->lost_res[i].id))
			s = (s + 1) & (m->res_cap - 1);
		if (slots[s].node != 0)
			continue; /* overridden again since: that master has its state */
		slots[s].id = def->lost_res[i].id;
		slots[s].node = def->lost_res[i].node;
		slots[s].lost = def->lost_res[i].node;
		nres++;
	}
	coral_seq_write_begin(&m->seq);
	m->version = def->version;
	m->record_index = def->record_index;
	m->published_ns = coral_now_mono_ns();
	m->nmembers = def->nmembers;
	if (def->nmembers)
		memcpy(m->members, def->members, def->nmembers * sizeof(uint32_t));
	m->nlost = (uint32_t)def->nlost;
	if (def->nlost)
		memcpy(m->lost, def->lost, def->nlost * sizeof(*def->lost));
	m->nres = (uint32_t)nres;
	m->nbo = (uint32_t)def->nbo;
	memcpy(m->owner, owner, CORAL_GRD_BUCKETS);
	memcpy(m->lost_owner, lost, CORAL_GRD_BUCKETS);
	memcpy(coral_grd_map_slots(m), slots, (size_t)m->res_cap * sizeof(*slots));
	coral_seq_write_end(&m->seq);
	free(owner); free(lost); free(tmp); free(slots);
	return 0;
}


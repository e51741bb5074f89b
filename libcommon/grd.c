/* Resource ids, lock modes and the bucket map (see grd.h). The map computation is pure and
 * every node runs it on the same committed record, so for one version every node agrees on
 * every bucket's master; the SGA copy is swapped under a sequence counter. */
#include "grd.h"
#include "errors.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t coral__mix(uint64_t x)
{
	return coral_splitmix64(&x);
}

uint64_t coral_resid_hash(const struct coral_resid *r)
{
	uint64_t h = coral__mix(((uint64_t)r->type << 32) | r->id1);
	return coral__mix(h ^ r->id2);
}

int coral_resid_parse(const char *s, struct coral_resid *out, char *err, size_t errsz)
{
	memset(out, 0, sizeof(*out));
	char t[3] = {0};
	unsigned long long a, b;
	int used = 0;
	if (sscanf(s, "%2[A-Za-z]:%llu:%llu%n", t, &a, &b, &used) != 3 || s[used] != '\0' ||
	    strlen(t) != 2 || a > UINT32_MAX || strchr(s, '-') != NULL) {
		snprintf(err, errsz, "'%s' is not a resource: write TYPE:ID1:ID2 with a two-letter type, "
			 "e.g. BL:1:42 (block 42 of file 1) or TX:7:9 (an enqueue)", s);
		return CORAL_EINVAL;
	}
	out->type = CORAL_RES_TYPE(t[0] & ~0x20, t[1] & ~0x20);
	out->id1 = (uint32_t)a;
	out->id2 = (uint64_t)b;
	return 0;
}

void coral_resid_format(const struct coral_resid *r, char *buf, size_t n)
{
	snprintf(buf, n, "%c%c:%" PRIu32 ":%" PRIu64, (char)(r->type >> 8), (char)(r->type & 0xff),
		 r->id1, r->id2);
}

/* Enqueue compatibility, the classic DLM matrix: rows held, columns wanted. */
static const bool coral__lk_compat[CORAL_LK_NMODES][CORAL_LK_NMODES] = {
	/*         NL  CR  CW  PR  PW  EX */
	/* NL */ {1, 1, 1, 1, 1, 1},
	/* CR */ {1, 1, 1, 1, 1, 0},
	/* CW */ {1, 1, 1, 0, 0, 0},
	/* PR */ {1, 1, 0, 1, 0, 0},
	/* PW */ {1, 1, 0, 0, 0, 0},
	/* EX */ {1, 0, 0, 0, 0, 0},
};

bool coral_grd_compatible(bool block, int held, int want)
{
	if (block) {
		if (held < 0 || held >= CORAL_BL_NMODES || want < 0 || want >= CORAL_BL_NMODES)
			return false;
		return held == CORAL_BL_N || want == CORAL_BL_N ||
		       (held == CORAL_BL_S && want == CORAL_BL_S);
	}
	if (held < 0 || held >= CORAL_LK_NMODES || want < 0 || want >= CORAL_LK_NMODES)
		return false;
	return coral__lk_compat[held][want];
}

static const char *const coral__bl_names[CORAL_BL_NMODES] = {"N", "S", "X"};
static const char *const coral__lk_names[CORAL_LK_NMODES] = {"NL", "CR", "CW", "PR", "PW", "EX"};

const char *coral_grd_mode_name(bool block, int mode)
{
	if (block)
		return mode >= 0 && mode < CORAL_BL_NMODES ? coral__bl_names[mode] : "?";
	return mode >= 0 && mode < CORAL_LK_NMODES ? coral__lk_names[mode] : "?";
}

int coral_grd_mode_parse(bool block, const char *s)
{
	int n = block ? CORAL_BL_NMODES : CORAL_LK_NMODES;
	for (int i = 0; i < n; i++)
		if (strcasecmp(s, coral_grd_mode_name(block, i)) == 0)
			return i;
	return -1;
}

bool coral_grd_mode_writes(bool block, int mode)
{
	return block ? mode == CORAL_BL_X : (mode == CORAL_LK_PW || mode == CORAL_LK_EX);
}

static const char *const coral__causes[CORAL_GRD_NCAUSES] = {
	"initial", "join", "leave", "manual", "affinity", "abandoned", "recovered",
};

const char *coral_grd_cause_name(int cause)
{
	return cause >= 0 && cause < CORAL_GRD_NCAUSES ? coral__causes[cause] : "?";
}

/* ---- the ring ---------------------------------------------------------------------- */

struct coral__vnode {
	uint32_t point;
	uint32_t node;
};

static int coral__vnode_cmp(const void *a, const void *b)
{
	const struct coral__vnode *x = a, *y = b;
	if (x->point != y->point)
		return x->point < y->point ? -1 : 1;
	return x->node < y->node ? -1 : x->node > y->node;
}

static uint32_t coral__vnode_point(uint32_t node, uint32_t k)
{
	return (uint32_t)(coral__mix(((uint64_t)node << 32) | k) >> 32);
}

static uint32_t coral__probe_point(uint32_t bucket, uint32_t probe)
{
	return (uint32_t)(coral__mix(((uint64_t)(0x5bd1e995u + probe) << 32) | bucket) >> 32);
}

/* The owners a member set gives, before overrides, for the last few member sets asked:
 * grdd asks for the same few sets again and again (the current ring, each lost node's ring,
 * the ring of a move being planned), and one computation is half a million probes. */
#define CORAL__RING_CACHE 8
struct coral__ring_cache {
	struct {
		size_t n;
		uint64_t used;
		uint32_t members[CORAL_MAX_NODES];
		uint8_t owner[CORAL_GRD_BUCKETS];
	} e[CORAL__RING_CACHE];
	uint64_t clock;
};

static void coral__ring_owners(const uint32_t *members, size_t n, uint8_t *out);

void coral_grd_map_compute(const uint32_t *members, size_t n,
			   const struct coral_grd_bucket_override *bo, size_t nbo, uint8_t *out)
{
	memset(out, 0, CORAL_GRD_BUCKETS);
	if (n == 0)
		return;
	if (n > CORAL_MAX_NODES)
		n = CORAL_MAX_NODES;
	static _Thread_local struct coral__ring_cache *cache;
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
		coral__ring_owners(members, n, out);
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

static void coral__ring_owners(const uint32_t *members, size_t n, uint8_t *out)
{
	static _Thread_local struct coral__vnode ring[CORAL_MAX_NODES * CORAL_GRD_VNODES];
	size_t nr = 0;
	for (size_t i = 0; i < n; i++)
		for (uint32_t k = 0; k < CORAL_GRD_VNODES; k++)
			ring[nr++] = (struct coral__vnode){coral__vnode_point(members[i], k), members[i]};
	qsort(ring, nr, sizeof(ring[0]), coral__vnode_cmp);
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
			uint32_t pt = coral__probe_point(b, p);
			size_t lo = first[pt >> 16];
			while (lo < nr && ring[lo].point < pt)
				lo++;
			const struct coral__vnode *v = &ring[lo == nr ? 0 : lo];
			uint32_t dist = v->point - pt; /* wraps around the ring */
			if (dist < best || (dist == best && v->node < owner)) {
				best = dist;
				owner = v->node;
			}
		}
		out[b] = (uint8_t)owner;
	}
}

/* ---- the map in the SGA ------------------------------------------------------------- */

static uint32_t coral__res_slots(const struct coral_conf *conf)
{
	uint32_t want = (uint32_t)conf->grd.max_overrides * 2 + 2, cap = 4;
	while (cap < want)
		cap <<= 1;
	return cap;
}

size_t coral_grd_map_sga_size(const struct coral_conf *conf)
{
	return sizeof(struct coral_grd_map_sga) +
	       (size_t)coral__res_slots(conf) * sizeof(struct coral_grd_res_slot);
}

static struct coral_grd_res_slot *coral__slots(const struct coral_grd_map_sga *m)
{
	return (struct coral_grd_res_slot *)((char *)(uintptr_t)m + sizeof(*m));
}

int coral_grd_map_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node)
{
	(void)node;
	if (size < coral_grd_map_sga_size(conf))
		return CORAL_ESIZE;
	memset(section, 0, size);
	struct coral_grd_map_sga *m = section;
	m->res_cap = coral__res_slots(conf);
	return 0;
}

void coral_grd_map_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_grd_map_sga *m = section;
	*used = m->nres;
	*capacity = m->res_cap / 2;
}

struct coral_grd_map_sga *coral_grd_map_sga(const struct coral_sga *sga)
{
	size_t sz;
	struct coral_grd_map_sga *m = coral_sga_section(sga, "grd_map", &sz);
	return m && sz >= sizeof(*m) && sz >= sizeof(*m) + (size_t)m->res_cap * sizeof(struct coral_grd_res_slot)
		       ? m : NULL;
}

static uint32_t coral__slot_of(const struct coral_grd_map_sga *m, const struct coral_resid *id)
{
	return (uint32_t)(coral_resid_hash(id) >> 17) & (m->res_cap - 1);
}

int coral_grd_map_publish(struct coral_grd_map_sga *m, const struct coral_grd_map_def *def)
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
	coral_grd_map_compute(def->members, def->nmembers, def->bo, def->nbo, owner);
	/* a lost node's buckets: exactly those it owned in the version before its loss (its
	 * ring then, less what was overridden away, plus its own overrides), whatever joined or
	 * was lost since; the later loss wins a bucket both owned in turn, since the later
	 * master had the state */
	for (size_t l = 0; l < def->nlost; l++) {
		const struct coral_grd_lost *L = &def->lost[l];
		if (L->nring == 0 || L->nring > CORAL_MAX_NODES)
			continue;
		coral_grd_map_compute(L->ring, L->nring, NULL, 0, tmp);
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
		uint32_t s = coral__slot_of(m, &def->res[i].id);
		while (slots[s].node != 0 && !coral_resid_eq(&slots[s].id, &def->res[i].id))
			s = (s + 1) & (m->res_cap - 1);
		if (slots[s].node == 0)
			nres++;
		slots[s].id = def->res[i].id;
		slots[s].node = def->res[i].node;
	}
	for (size_t i = 0; i < def->nlost_res; i++) {
		uint32_t s = coral__slot_of(m, &def->lost_res[i].id);
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
	memcpy(coral__slots(m), slots, (size_t)m->res_cap * sizeof(*slots));
	coral_seq_write_end(&m->seq);
	free(owner); free(lost); free(tmp); free(slots);
	return 0;
}

void coral_grd_lookup(const struct coral_grd_map_sga *m, const struct coral_resid *r,
		      struct coral_grd_where *out)
{
	uint32_t b = coral_resid_bucket(r);
	const struct coral_grd_res_slot *slots = coral__slots(m);
	uint32_t s0 = coral__slot_of(m, r);
	uint32_t seq;
	do {
		seq = coral_seq_read_begin(&m->seq);
		out->version = m->version;
		out->bucket = b;
		out->master = m->owner[b];
		out->lost_owner = m->lost_owner[b];
		out->overridden = false;
		if (m->nres != 0) {
			for (uint32_t s = s0, i = 0; i < m->res_cap; i++, s = (s + 1) & (m->res_cap - 1)) {
				if (slots[s].node == 0)
					break;
				if (coral_resid_eq(&slots[s].id, r)) {
					if (slots[s].lost) {
						out->lost_owner = slots[s].lost;
					} else {
						out->master = slots[s].node;
						out->overridden = true;
					}
					break;
				}
			}
		}
	} while (coral_seq_read_retry(&m->seq, seq));
	if (out->version == 0)
		out->master = 0;
}

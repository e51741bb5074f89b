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

struct coral_grd_res_slot *coral_grd_map_slots(const struct coral_grd_map_sga *m)
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

uint32_t coral_grd_map_slot_of(const struct coral_grd_map_sga *m, const struct coral_resid *id)
{
	return (uint32_t)(coral_resid_hash(id) >> 17) & (m->res_cap - 1);
}

void coral_grd_lookup(const struct coral_grd_map_sga *m, const struct coral_resid *r,
		      struct coral_grd_where *out)
{
	uint32_t b = coral_resid_bucket(r);
	const struct coral_grd_res_slot *slots = coral_grd_map_slots(m);
	uint32_t s0 = coral_grd_map_slot_of(m, r);
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

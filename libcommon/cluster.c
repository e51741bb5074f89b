/* The cluster view in the SGA (see cluster.h). */
#include "cluster.h"
#include "errors.h"
#include "util.h"

#include <string.h>

static const char *const coral__member_states[CORAL_MEMBER_NSTATES] = {
	"none", "joining", "active", "evicted", "removed",
};

const char *coral_member_state_name(int state)
{
	return state >= 0 && state < CORAL_MEMBER_NSTATES ? coral__member_states[state] : "?";
}

size_t coral_cluster_sga_size(const struct coral_conf *conf)
{
	(void)conf;
	return sizeof(struct coral_cluster_sga);
}

int coral_cluster_sga_init(void *section, size_t size, const struct coral_conf *conf,
			   const struct coral_node_conf *node)
{
	(void)conf;
	(void)node;
	struct coral_cluster_sga *c = section;
	if (size < sizeof(*c))
		return CORAL_ESIZE;
	memset(c, 0, sizeof(*c));
	/* fenced until raftd says otherwise: nothing may serve before membership is known */
	c->v.fenced = true;
	coral_strlcpy(c->v.fence_reason, "raftd has not joined the cluster yet", sizeof(c->v.fence_reason));
	return 0;
}

void coral_cluster_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_cluster_sga *c = section;
	struct coral_cluster_view v;
	coral_cluster_read(c, &v);
	*used = v.nmembers;
	*capacity = CORAL_MAX_NODES;
}

struct coral_cluster_sga *coral_cluster_sga(const struct coral_sga *sga)
{
	size_t sz;
	struct coral_cluster_sga *c = coral_sga_section(sga, "cluster", &sz);
	return c && sz >= sizeof(*c) ? c : NULL;
}

void coral_cluster_read(const struct coral_cluster_sga *c, struct coral_cluster_view *out)
{
	uint32_t s;
	do {
		s = coral_seq_read_begin(&c->seq);
		memcpy(out, (const void *)&c->v, sizeof(*out));
	} while (coral_seq_read_retry(&c->seq, s));
}

void coral_cluster_publish(struct coral_cluster_sga *c, const struct coral_cluster_view *v)
{
	coral_seq_write_begin(&c->seq);
	uint64_t updates = c->v.updates + 1;
	memcpy((void *)&c->v, v, sizeof(*v));
	c->v.updates = updates;
	coral_seq_write_end(&c->seq);
}

bool coral_cluster_fence_reason(const struct coral_cluster_sga *c, char *buf, size_t n)
{
	struct coral_cluster_view v;
	coral_cluster_read(c, &v);
	uint64_t now = coral_now_mono_ns();
	if (v.fenced)
		snprintf(buf, n, "%s", v.fence_reason);
	else if (v.lease_until_ns != 0 && now > v.lease_until_ns)
		snprintf(buf, n, "lease ran out %llu ms ago and raftd has not renewed it: is raftd running?",
			 (unsigned long long)((now - v.lease_until_ns) / 1000000ull));
	else
		snprintf(buf, n, "not fenced");
	return v.fenced && v.joining;
}

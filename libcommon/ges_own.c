/* The SGA section of lmdd's requester side (see ges_own.h). */
#include "ges_own.h"

#include "errors.h"

#include <string.h>

size_t coral_ges_own_sga_size(const struct coral_conf *conf)
{
	(void)conf;
	return sizeof(struct coral_ges_own) + CORAL_GES_OWN_MAX * sizeof(struct coral_ges_own_lock);
}

int coral_ges_own_sga_init(void *section, size_t size, const struct coral_conf *conf, const struct coral_node_conf *node)
{
	(void)node;
	if (size < coral_ges_own_sga_size(conf))
		return CORAL_ESIZE;
	memset(section, 0, coral_ges_own_sga_size(conf));
	struct coral_ges_own *o = section;
	o->capacity = CORAL_GES_OWN_MAX;
	return 0;
}

void coral_ges_own_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_ges_own *o = section;
	*used = o->nused;
	*capacity = o->capacity;
}

struct coral_ges_own *coral_ges_own_sga(const struct coral_sga *sga)
{
	size_t size;
	struct coral_ges_own *o = coral_sga_section(sga, "ges_own", &size);
	if (o == NULL || size < sizeof(*o) || o->capacity != CORAL_GES_OWN_MAX ||
	    size < sizeof(*o) + o->capacity * sizeof(struct coral_ges_own_lock))
		return NULL;
	return o;
}

/* Creation, attachment and layout of the SGA (see sga.h). The registry below is the one
 * place that lists every subsystem living in shared memory, in dependency order; later
 * subsystems (membership, GRD, buffer cache, redo buffer...) are added here. */
#include "sga.h"
#include "bufcache.h"
#include "redo.h"
#include "errors.h"
#include "log.h"
#include "cluster.h"
#include "ges_own.h"
#include "rsrc_sga.h"
#include "metrics.h"
#include "grd.h"
#include "proc.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct coral_sga_subsys coral__registry[] = {
	{"proc", coral_proc_sga_size, coral_proc_sga_init, coral_proc_sga_fill},
	{"cluster", coral_cluster_sga_size, coral_cluster_sga_init, coral_cluster_sga_fill},
	{"grd_map", coral_grd_map_sga_size, coral_grd_map_sga_init, coral_grd_map_sga_fill},
	{"grd_dir", coral_grd_dir_sga_size, coral_grd_dir_sga_init, coral_grd_dir_sga_fill},
	{"grd_held", coral_grd_held_sga_size, coral_grd_held_sga_init, coral_grd_dir_sga_fill},
	{"cache", coral_cache_sga_size, coral_cache_sga_init, coral_cache_sga_fill},
	{"redo", coral_redo_sga_size, coral_redo_sga_init, coral_redo_sga_fill},
	{"ges_own", coral_ges_own_sga_size, coral_ges_own_sga_init, coral_ges_own_sga_fill},
	{"rsrc", coral_rsrc_sga_size, coral_rsrc_sga_init, coral_rsrc_sga_fill},
	{"metrics", coral_metrics_sga_size, coral_metrics_sga_init, coral_metrics_sga_fill},
};

const struct coral_sga_subsys *coral_sga_subsystems(size_t *n)
{
	*n = CORAL_ARRAY_LEN(coral__registry);
	return coral__registry;
}

static bool coral__add(uint64_t *acc, uint64_t v)
{
	uint64_t aligned = (v + CORAL_SGA_ALIGN - 1) & ~(uint64_t)(CORAL_SGA_ALIGN - 1);
	if (aligned < v || *acc + aligned < *acc)
		return false;
	*acc += aligned;
	return true;
}

int coral_sga_layout_size(const struct coral_conf *conf, uint64_t *total)
{
	uint64_t acc = 0;
	if (!coral__add(&acc, sizeof(struct coral_sga_hdr)))
		return CORAL_ESIZE;
	for (size_t i = 0; i < CORAL_ARRAY_LEN(coral__registry); i++)
		if (!coral__add(&acc, coral__registry[i].size(conf)))
			return CORAL_ESIZE;
	*total = acc;
	return 0;
}

/* What sets each section's size, for an operator who must make them fit. */
static const char *coral__sized_by(const char *section)
{
	static const struct {
		const char *section, *by;
	} by[] = {
		{"grd_map", "[grd] max_overrides"}, {"grd_dir", "[grd] directory_entries"},
		{"grd_held", "[grd] held_entries"}, {"cache", "[cache] buffers x [storage] block_size"},
		{"redo", "[cache] redo_buffer"},
	};
	for (size_t i = 0; i < CORAL_ARRAY_LEN(by); i++)
		if (strcmp(by[i].section, section) == 0)
			return by[i].by;
	return NULL;
}

int coral_sga_check(const struct coral_conf *conf, const struct coral_node_conf *node, char *err, size_t errsz)
{
	uint64_t need;
	if (coral_sga_layout_size(conf, &need) != 0) {
		snprintf(err, errsz, "[node.%s]: the SGA's size overflows: lower the section sizes", node->label);
		return CORAL_ESIZE;
	}
	if (need <= (uint64_t)node->sga_size)
		return 0;
	char a[32], b[32], s[32];
	coral_format_size((int64_t)need, a, sizeof(a));
	coral_format_size(node->sga_size, b, sizeof(b));
	int off = snprintf(err, errsz, "[node.%s] sga_size is %s but the SGA's sections need %s:", node->label, b, a);
	for (size_t i = 0; i < CORAL_ARRAY_LEN(coral__registry) && off > 0 && (size_t)off < errsz; i++) {
		const char *by = coral__sized_by(coral__registry[i].name);
		coral_format_size((int64_t)coral__registry[i].size(conf), s, sizeof(s));
		off += snprintf(err + off, errsz - (size_t)off, " %s %s%s%s%s", coral__registry[i].name, s, by ? " (" : "",
				by ? by : "", by ? ")" : "");
	}
	if (off > 0 && (size_t)off < errsz)
		snprintf(err + off, errsz - (size_t)off, ": raise sga_size to %s or lower those options", a);
	return CORAL_ESIZE;
}

static int coral__err(struct coral_sga *sga, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int coral__err(struct coral_sga *sga, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sga->errmsg, sizeof(sga->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

int coral_sga_create(struct coral_sga *sga, const struct coral_conf *conf,
		     const struct coral_node_conf *node)
{
	memset(sga, 0, sizeof(*sga));
	coral_strlcpy(sga->name, node->sga_name, sizeof(sga->name));
	if (coral_sga_check(conf, node, sga->errmsg, sizeof(sga->errmsg)) != 0)
		return CORAL_ESIZE;
	int fd = shm_open(sga->name, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (fd < 0) {
		if (errno == EEXIST)
			return coral__err(sga, CORAL_EEXIST,
					  "SGA %s already exists: is node %lld running? "
					  "(coral-node status %lld; coral-node stop %lld removes a stale one)",
					  sga->name, (long long)node->id, (long long)node->id,
					  (long long)node->id);
		return coral__err(sga, CORAL_ESYS, "cannot create SGA %s: %s", sga->name, strerror(errno));
	}
	/* shm_open honours the umask; the mode is part of the access policy, so set it. */
	if (fchmod(fd, 0640) != 0 || ftruncate(fd, node->sga_size) != 0) {
		int e = errno;
		close(fd);
		shm_unlink(sga->name);
		return coral__err(sga, CORAL_ESYS, "cannot size SGA %s: %s", sga->name, strerror(e));
	}
	void *base = mmap(NULL, (size_t)node->sga_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED) {
		shm_unlink(sga->name);
		return coral__err(sga, CORAL_ESYS, "cannot map SGA %s: %s", sga->name, strerror(errno));
	}
	sga->base = base;
	sga->size = (size_t)node->sga_size;
	sga->hdr = base;
	struct coral_sga_hdr *h = sga->hdr;
	h->magic = CORAL_SGA_MAGIC;
	h->version = CORAL_SGA_VERSION;
	h->size = (uint64_t)node->sga_size;
	coral_strlcpy(h->cluster, conf->cluster.name, sizeof(h->cluster));
	h->node_id = (uint32_t)node->id;
	h->creator_pid = (int32_t)getpid();
	h->created_real_ns = coral_now_real_ns();
	uint64_t off = 0;
	coral__add(&off, sizeof(*h));
	for (size_t i = 0; i < CORAL_ARRAY_LEN(coral__registry); i++) {
		const struct coral_sga_subsys *s = &coral__registry[i];
		struct coral_sga_section *sec = &h->sections[h->nsections++];
		coral_strlcpy(sec->name, s->name, sizeof(sec->name));
		sec->offset = off;
		sec->size = s->size(conf);
		int rc = s->init((char *)base + off, sec->size, conf, node);
		if (rc != 0) {
			coral_sga_detach(sga);
			shm_unlink(node->sga_name);
			return coral__err(sga, rc, "SGA section %s failed to initialise: %s", s->name,
					  coral_strerror(rc));
		}
		coral__add(&off, sec->size);
	}
	atomic_store_explicit(&h->ready, 1, memory_order_release);
	return 0;
}

int coral_sga_attach(struct coral_sga *sga, const struct coral_conf *conf,
		     const struct coral_node_conf *node, bool readonly)
{
	memset(sga, 0, sizeof(*sga));
	coral_strlcpy(sga->name, node->sga_name, sizeof(sga->name));
	sga->readonly = readonly;
	int fd = shm_open(sga->name, readonly ? O_RDONLY : O_RDWR, 0);
	if (fd < 0) {
		if (errno == ENOENT)
			return coral__err(sga, CORAL_ENOTRUNNING,
					  "node %lld is not running (no SGA %s): coral-node start %lld",
					  (long long)node->id, sga->name, (long long)node->id);
		if (errno == EACCES)
			return coral__err(sga, CORAL_EPERM,
					  "no permission to open SGA %s: run as the cluster's user or a member of its group",
					  sga->name);
		return coral__err(sga, CORAL_ESYS, "cannot open SGA %s: %s", sga->name, strerror(errno));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(struct coral_sga_hdr)) {
		close(fd);
		return coral__err(sga, CORAL_ESIZE,
				  "SGA %s is truncated (%lld bytes): coral-node stop %lld removes it",
				  sga->name, (long long)st.st_size, (long long)node->id);
	}
	void *base = mmap(NULL, (size_t)st.st_size, readonly ? PROT_READ : PROT_READ | PROT_WRITE,
			  MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return coral__err(sga, CORAL_ESYS, "cannot map SGA %s: %s", sga->name, strerror(errno));
	sga->base = base;
	sga->size = (size_t)st.st_size;
	sga->hdr = base;
	const struct coral_sga_hdr *h = sga->hdr;
	int rc = 0;
	char a[32], b[32];
	if (h->magic != CORAL_SGA_MAGIC) {
		rc = coral__err(sga, CORAL_EMAGIC,
				"%s is not a Coral SGA (bad magic): another program owns that name; "
				"set [node.%s] sga_name to another name",
				sga->name, node->label);
	} else if (h->version != CORAL_SGA_VERSION) {
		rc = coral__err(sga, CORAL_EVERSION,
				"SGA %s has layout version %u, this program expects %u: it was created by "
				"another Coral version; restart the node with this version (coral-node restart %lld)",
				sga->name, h->version, CORAL_SGA_VERSION, (long long)node->id);
	} else if (!atomic_load_explicit(&h->ready, memory_order_acquire)) {
		rc = coral__err(sga, CORAL_ENOTRUNNING,
				"SGA %s is still being created: wait for coral-node start %lld to finish",
				sga->name, (long long)node->id);
	} else if (h->size != (uint64_t)st.st_size || h->size != (uint64_t)node->sga_size) {
		coral_format_size((int64_t)h->size, a, sizeof(a));
		coral_format_size(node->sga_size, b, sizeof(b));
		rc = coral__err(sga, CORAL_ESIZE,
				"SGA %s was created with %s but the configuration says %s: the file changed "
				"since the node started; restart it (coral-node restart %lld)",
				sga->name, a, b, (long long)node->id);
	} else if (h->node_id != (uint32_t)node->id ||
		   strncmp(h->cluster, conf->cluster.name, sizeof(h->cluster)) != 0) {
		rc = coral__err(sga, CORAL_EINVAL,
				"SGA %s belongs to cluster '%.40s' node %u, not '%s' node %lld: "
				"check sga_name in the configuration", sga->name, h->cluster, h->node_id,
				conf->cluster.name, (long long)node->id);
	} else if (h->nsections != CORAL_ARRAY_LEN(coral__registry)) {
		rc = coral__err(sga, CORAL_EVERSION, "SGA %s has %u sections, expected %zu: "
				"restart the node (coral-node restart %lld)", sga->name, h->nsections,
				CORAL_ARRAY_LEN(coral__registry), (long long)node->id);
	} else {
		for (size_t i = 0; i < CORAL_ARRAY_LEN(coral__registry) && rc == 0; i++) {
			const struct coral_sga_section *sec = &h->sections[i];
			if (strcmp(sec->name, coral__registry[i].name) != 0 ||
			    sec->size != coral__registry[i].size(conf) || sec->offset + sec->size > h->size)
				rc = coral__err(sga, CORAL_ESIZE,
						"SGA %s section %s does not match this configuration "
						"(its capacity options changed): restart the node (coral-node restart %lld)",
						sga->name, coral__registry[i].name, (long long)node->id);
		}
	}
	if (rc != 0) {
		char keep[CORAL_ERRMSG_MAX];
		memcpy(keep, sga->errmsg, sizeof(keep));
		coral_sga_detach(sga);
		memcpy(sga->errmsg, keep, sizeof(keep));
	}
	return rc;
}

void coral_sga_detach(struct coral_sga *sga)
{
	if (sga->base)
		munmap(sga->base, sga->size);
	sga->base = NULL;
	sga->hdr = NULL;
	sga->size = 0;
}

int coral_sga_destroy(const char *name)
{
	if (shm_unlink(name) != 0)
		return errno == ENOENT ? CORAL_ENOENT : CORAL_ESYS;
	return 0;
}

bool coral_sga_exists(const char *name)
{
	int fd = shm_open(name, O_RDONLY, 0);
	if (fd < 0)
		return errno != ENOENT;
	close(fd);
	return true;
}

void *coral_sga_section(const struct coral_sga *sga, const char *name, size_t *size)
{
	if (sga->hdr == NULL)
		return NULL;
	for (uint32_t i = 0; i < sga->hdr->nsections && i < CORAL_SGA_MAX_SECTIONS; i++) {
		const struct coral_sga_section *s = &sga->hdr->sections[i];
		if (strncmp(s->name, name, sizeof(s->name)) == 0) {
			if (s->offset + s->size > sga->size)
				return NULL;
			if (size)
				*size = s->size;
			return (char *)sga->base + s->offset;
		}
	}
	return NULL;
}

void coral_sga_prefault(const struct coral_sga *sga, const char *name)
{
	size_t size = 0;
	const volatile uint8_t *p = coral_sga_section(sga, name, &size);
	if (p == NULL)
		return;
	long pg = sysconf(_SC_PAGESIZE);
	size_t step = pg > 0 ? (size_t)pg : 4096;
	for (size_t off = 0; off < size; off += step)
		(void)p[off];
}

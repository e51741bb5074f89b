/* rsrcmgrd's CPU enforcement through the kernel: one cgroup per consumer group of the plan
 * in force, under ROOT/coral-CLUSTER-nNODE, with the group's CPU share as its weight and its
 * utilization cap as its quota, and each session put in the cgroup of the group that governs
 * it. cgroup v1 (this machine's cpu controller): a session's thread (tasks takes thread ids),
 * so two sessions of one process may be in two groups. v2: the session's process
 * (cgroup.procs; threads of a process may not be split among domain cgroups), so the last
 * session placed decides for its process. Where a session's thread was before, it goes back
 * to when the session closes (or its process is gone); a thread found in a node's cgroup
 * (coral-*) goes back to the root instead. Every write the kernel refuses is
 * counted and logged once per cause; where no hierarchy is writable the shares are computed
 * and shown and the status says why they are not enforced. */
#include "cgroup.h"

#include "log.h"
#include "rsrc.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_file(const char *dir, const char *name)
{
	char p[CORAL_STR_MAX + 96];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static int write_file(struct rsrc_cg *cg, const char *dir, const char *name, const char *value)
{
	char p[CORAL_STR_MAX + 160];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_WRONLY | O_CLOEXEC);
	int err = 0;
	if (fd < 0 || write(fd, value, strlen(value)) < 0)
		err = errno;
	if (fd >= 0)
		close(fd);
	if (err) {
		cg->refused++;
		if (cg->refused_logged < 20) {
			cg->refused_logged++;
			log_warn("cgroup: writing '%s' to %s: %s", value, p, strerror(err));
		}
		snprintf(cg->last_error, sizeof(cg->last_error), "%s: %s", p, strerror(err));
		return -1;
	}
	return 0;
}

static void set_off(struct rsrc_cg *cg, const char *fmt, const char *a, const char *b)
{
	cg->mode = RSRC_CG_OFF;
	snprintf(cg->why, sizeof(cg->why), fmt, a, b);
}

void rsrc_cg_init(struct rsrc_cg *cg, const char *mode, const char *root, const char *cluster, uint32_t node)
{
	memset(cg, 0, sizeof(*cg));
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cg->ncpus = n > 0 ? (int)n : 1;
	if (strcmp(mode, "off") == 0) {
		set_off(cg, "[rsrc] cgroup = off%s%s", "", "");
		return;
	}
	char dir[CORAL_STR_MAX];
	bool v1 = false, v2 = false;
	if (strcmp(mode, "v1") == 0 || strcmp(mode, "auto") == 0) {
		snprintf(dir, sizeof(dir), "%s", root[0] ? root : "/sys/fs/cgroup/cpu");
		v1 = is_dir(dir) && has_file(dir, "cpu.shares");
	}
	if (!v1 && (strcmp(mode, "v2") == 0 || strcmp(mode, "auto") == 0)) {
		const char *tries[] = {root[0] ? root : "/sys/fs/cgroup", root[0] ? NULL : "/sys/fs/cgroup/unified"};
		for (size_t i = 0; i < 2 && !v2; i++) {
			if (tries[i] == NULL)
				continue;
			snprintf(dir, sizeof(dir), "%s", tries[i]);
			char p[CORAL_STR_MAX + 32];
			snprintf(p, sizeof(p), "%s/cgroup.controllers", dir);
			FILE *f = fopen(p, "r");
			char line[256] = "";
			if (f) {
				if (fgets(line, sizeof(line), f) == NULL)
					line[0] = '\0';
				fclose(f);
			}
			/* the cpu controller must be there for its children: in cgroup.controllers */
			char *save = NULL;
			for (char *t = strtok_r(line, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
				v2 |= strcmp(t, "cpu") == 0;
		}
	}
	if (!v1 && !v2) {
		set_off(cg, "no cgroup hierarchy with the cpu controller (%s%s): the plan's shares are "
			    "computed and shown, not enforced",
			root[0] ? root : "/sys/fs/cgroup/cpu, /sys/fs/cgroup, /sys/fs/cgroup/unified",
			strcmp(mode, "auto") ? ", as [rsrc] cgroup asks" : "");
		return;
	}
	cg->mode = v1 ? RSRC_CG_V1 : RSRC_CG_V2;
	snprintf(cg->root, sizeof(cg->root), "%s", dir);
	snprintf(cg->base, sizeof(cg->base), "%s/coral-%s-n%u", dir, cluster, node);
	log_notice("cgroups under %s once a plan is in force (%s)", cg->base,
		   v1 ? "v1, each session's thread" : "v2, each session's process");
}

/* The node's cgroup made (the first time a plan comes in force: a node that never has one
 * leaves nothing in the hierarchy); false, and off with why, when it cannot be. */
static bool make_base(struct rsrc_cg *cg)
{
	if (cg->made)
		return true;
	if (mkdir(cg->base, 0755) != 0 && errno != EEXIST) {
		char e[64];
		snprintf(e, sizeof(e), "%s", strerror(errno));
		set_off(cg, "cannot make %s (%s): the plan's shares are computed and shown, not enforced", cg->base, e);
		cg->refused++;
		return false;
	}
	if (cg->mode == RSRC_CG_V2) {
		/* the children of base get the cpu controller */
		write_file(cg, cg->root, "cgroup.subtree_control", "+cpu");
		write_file(cg, cg->base, "cgroup.subtree_control", "+cpu");
	}
	cg->made = true;
	return true;
}

/* The directory of group g's cgroup. */
static void group_dir(const struct rsrc_cg *cg, const char *name, char *out, size_t n)
{
	snprintf(out, n, "%s/%s", cg->base, name);
}

void rsrc_cg_plan(struct rsrc_cg *cg, struct coral_rsrc *r, const struct rsrc_def *def, const char *plan)
{
	if (cg->mode == RSRC_CG_OFF || (plan[0] == '\0' && !cg->made) || !make_base(cg))
		return;
	cg->gen++; /* every session placed again: a group's cgroup may have been made anew */
	for (uint32_t i = 0; i < r->ngroups && i < CORAL_RSRC_GROUPS; i++) {
		const struct coral_rsrc_group *G = &r->groups[i];
		if (G->name[0] == '\0' || atomic_load(&G->governs) != i)
			continue; /* governed by another group's directive: its sessions go there */
		char dir[CORAL_STR_MAX + 64];
		group_dir(cg, G->name, dir, sizeof(dir));
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			cg->refused++;
			snprintf(cg->last_error, sizeof(cg->last_error), "mkdir %s: %s", dir, strerror(errno));
			continue;
		}
		double frac = atomic_load(&G->share_ppm) / 1e6;
		const struct rsrc_directive *x = def && plan[0] ? rsrc_def_directive(def, plan, G->name) : NULL;
		char v[64];
		if (cg->mode == RSRC_CG_V1) {
			/* no plan: every group alike */
			snprintf(v, sizeof(v), "%u", plan[0] ? rsrc_shares_v1(frac) : 1024u);
			write_file(cg, dir, "cpu.shares", v);
			write_file(cg, dir, "cpu.cfs_period_us", "100000");
			if (x && x->cap > 0)
				snprintf(v, sizeof(v), "%lld", (long long)x->cap * cg->ncpus * 1000);
			else
				snprintf(v, sizeof(v), "-1");
			write_file(cg, dir, "cpu.cfs_quota_us", v);
		} else {
			snprintf(v, sizeof(v), "%u", plan[0] ? rsrc_weight_v2(frac) : 100u);
			write_file(cg, dir, "cpu.weight", v);
			if (x && x->cap > 0)
				snprintf(v, sizeof(v), "%lld 100000", (long long)x->cap * cg->ncpus * 1000);
			else
				snprintf(v, sizeof(v), "max 100000");
			write_file(cg, dir, "cpu.max", v);
		}
	}
}

/* Where a thread is now in the hierarchy (its path under root), from /proc. */
static void where_now(const struct rsrc_cg *cg, int32_t pid, int32_t tid, char *out, size_t n)
{
	char p[96];
	snprintf(p, sizeof(p), "/proc/%d/task/%d/cgroup", (int)pid, (int)tid);
	FILE *f = fopen(p, "r");
	snprintf(out, n, "/");
	if (f == NULL)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
		if (b == NULL)
			continue;
		*b = '\0';
		const char *ctl = a + 1, *path = b + 1;
		bool match = cg->mode == RSRC_CG_V2 ? ctl[0] == '\0' : false;
		if (cg->mode == RSRC_CG_V1) {
			char c[128];
			snprintf(c, sizeof(c), ",%s,", ctl);
			match = strstr(c, ",cpu,") != NULL;
		}
		if (match) {
			snprintf(out, n, "%s", path);
			break;
		}
	}
	fclose(f);
}

static int move_to(struct rsrc_cg *cg, const char *dir, int32_t pid, int32_t tid)
{
	char v[32];
	snprintf(v, sizeof(v), "%d", cg->mode == RSRC_CG_V1 ? (int)tid : (int)pid);
	return write_file(cg, dir, cg->mode == RSRC_CG_V1 ? "tasks" : "cgroup.procs", v);
}

static bool thread_alive(int32_t pid, int32_t tid)
{
	char p[96];
	snprintf(p, sizeof(p), "/proc/%d/task/%d", (int)pid, (int)tid);
	return access(p, F_OK) == 0;
}

/* A placed thread back where it was, if it is still there. */
static void put_back(struct rsrc_cg *cg, struct rsrc_cg_placed *pl)
{
	if (pl->tid > 0 && thread_alive(pl->pid, pl->tid)) {
		char dir[2 * CORAL_STR_MAX];
		snprintf(dir, sizeof(dir), "%s%s", cg->root, strcmp(pl->orig, "/") == 0 ? "" : pl->orig);
		move_to(cg, dir, pl->pid, pl->tid);
	}
	memset(pl, 0, sizeof(*pl));
}

void rsrc_cg_place(struct rsrc_cg *cg, struct coral_rsrc *r, bool enforce)
{
	if (cg->mode == RSRC_CG_OFF || !cg->made)
		return;
	if (!enforce) {
		/* no plan: nothing to enforce, and a session's thread is not moved for nothing */
		for (int i = 0; i < CORAL_RSRC_SESSIONS; i++)
			if (cg->placed[i].tid)
				put_back(cg, &cg->placed[i]);
		return;
	}
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &r->sess[i];
		struct rsrc_cg_placed *pl = &cg->placed[i];
		int32_t pid = atomic_load(&s->pid), tid = atomic_load(&s->tid);
		uint32_t g = atomic_load(&s->group);
		if (pid <= 0 || tid <= 0 || g == 0 || g > CORAL_RSRC_GROUPS) {
			if (pl->tid)
				put_back(cg, pl);
			continue;
		}
		uint32_t gov = atomic_load(&r->groups[g - 1].governs);
		if (gov >= CORAL_RSRC_GROUPS)
			gov = g - 1;
		if (pl->tid && (pl->pid != pid || pl->tid != tid || pl->start != s->start))
			put_back(cg, pl); /* another session in the slot now */
		if (pl->tid && pl->group == gov + 1 && pl->gen == cg->gen)
			continue;
		if (!thread_alive(pid, tid))
			continue; /* its process died: the sweep frees the slot */
		if (pl->tid == 0) {
			where_now(cg, pid, tid, pl->orig, sizeof(pl->orig));
			/* a node's cgroup is no place to go back to: this rsrcmgrd's (another session of
			 * the thread), one before it, or another node's on this machine (a process with
			 * sessions on two nodes: each node's rsrcmgrd moves the thread, and going back
			 * there would leave it in a group of the other's after both let it go) */
			if (strncmp(pl->orig, "/coral-", 7) == 0)
				snprintf(pl->orig, sizeof(pl->orig), "/");
		}
		char dir[CORAL_STR_MAX + 64];
		group_dir(cg, r->groups[gov].name, dir, sizeof(dir));
		pl->pid = pid;
		pl->tid = tid;
		pl->start = s->start;
		pl->gen = cg->gen;
		if (move_to(cg, dir, pid, tid) == 0) {
			pl->group = gov + 1;
			cg->moves++;
		} else {
			pl->group = 0;
		}
	}
}

void rsrc_cg_group_info(const struct rsrc_cg *cg, const char *name, char *path, size_t n, uint64_t *throttled_ms)
{
	*throttled_ms = 0;
	path[0] = '\0';
	if (cg->mode == RSRC_CG_OFF || !cg->made)
		return;
	char dir[CORAL_STR_MAX + 64];
	group_dir(cg, name, dir, sizeof(dir));
	if (!is_dir(dir))
		return;
	snprintf(path, n, "%s", dir);
	char p[CORAL_STR_MAX + 96];
	snprintf(p, sizeof(p), "%s/cpu.stat", dir);
	FILE *f = fopen(p, "r");
	if (f == NULL)
		return;
	char key[64];
	unsigned long long v;
	while (fscanf(f, "%63s %llu", key, &v) == 2) {
		if (strcmp(key, "throttled_time") == 0) /* v1: ns */
			*throttled_ms = v / 1000000ull;
		else if (strcmp(key, "throttled_usec") == 0) /* v2 */
			*throttled_ms = v / 1000ull;
	}
	fclose(f);
}

void rsrc_cg_fini(struct rsrc_cg *cg)
{
	if (cg->mode == RSRC_CG_OFF || !cg->made)
		return;
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++)
		if (cg->placed[i].tid)
			put_back(cg, &cg->placed[i]);
	/* the groups' cgroups and the node's go (those still holding a task stay, and say so) */
	DIR *d = opendir(cg->base);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.' || e->d_type != DT_DIR)
				continue;
			char p[CORAL_STR_MAX + 300];
			snprintf(p, sizeof(p), "%s/%s", cg->base, e->d_name);
			if (rmdir(p) != 0)
				log_warn("cgroup %s: %s (tasks still in it)", p, strerror(errno));
		}
		closedir(d);
	}
	if (rmdir(cg->base) != 0 && errno != ENOENT)
		log_warn("cgroup %s: %s", cg->base, strerror(errno));
}

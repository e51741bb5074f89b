/* A site's epoch and its fence (site.h). */
#include "site.h"

#include "errors.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t coral_site_epoch_read(const char *shared_dir)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/site_epoch", shared_dir);
	FILE *f = fopen(p, "r");
	unsigned long long e = 1;
	if (f) {
		if (fscanf(f, "%llu", &e) != 1 || e == 0)
			e = 1;
		fclose(f);
	}
	return e;
}

int coral_site_epoch_write(const char *shared_dir, uint64_t epoch, char *err, size_t errsz)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)epoch);
	return coral_write_file_atomic(shared_dir, "site_epoch", buf, (size_t)n, 0640, err, errsz);
}

uint64_t coral_site_fence_read(const char *shared_dir, char *why, size_t whysz)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/fenced", shared_dir);
	FILE *f = fopen(p, "r");
	if (f == NULL)
		return 0;
	unsigned long long e = 0;
	char line[512] = "";
	if (fscanf(f, "%llu ", &e) != 1)
		e = 1; /* a fence that does not say its epoch is a fence all the same */
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	line[strcspn(line, "\n")] = '\0';
	fclose(f);
	if (why)
		snprintf(why, whysz, "%s", line);
	return e;
}

int coral_site_fence_write(const char *shared_dir, uint64_t epoch, const char *why, char *err, size_t errsz)
{
	char buf[600];
	int n = snprintf(buf, sizeof(buf), "%llu %s\n", (unsigned long long)epoch, why);
	return coral_write_file_atomic(shared_dir, "fenced", buf, (size_t)(n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1),
				       0640, err, errsz);
}

int coral_site_witness_read(const char *path, uint64_t *epoch, char *cluster, size_t clustersz)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return errno == ENOENT ? CORAL_ENOENT : CORAL_EIO;
	unsigned long long e = 0;
	char name[256] = "";
	int n = fscanf(f, "%llu %255s", &e, name);
	fclose(f);
	if (n != 2 || e == 0)
		return CORAL_ECORRUPT;
	*epoch = e;
	snprintf(cluster, clustersz, "%s", name);
	return 0;
}

int coral_site_witness_write(const char *path, uint64_t epoch, const char *cluster, char *err, size_t errsz)
{
	char dir[4200], buf[300];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == NULL) {
		snprintf(err, errsz, "%s: the witness file needs an absolute path", path);
		return CORAL_EINVAL;
	}
	*slash = '\0';
	int n = snprintf(buf, sizeof(buf), "%llu %s\n", (unsigned long long)epoch, cluster);
	return coral_write_file_atomic(dir[0] ? dir : "/", slash + 1, buf, (size_t)n, 0640, err, errsz);
}

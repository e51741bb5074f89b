/* coralctl datafile create|list: the shared storage's data files, straight from the control
 * file in [storage] shared_dir (no daemon needs to run; creation takes the control lock, so
 * two nodes can add files at once). list --verify reads every block and reports each one
 * that fails its check, by file and block. */
#include "coralctl.h"
#include "errors.h"
#include "storage.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int df_create(const char *name, const char *nblocks)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(nblocks, &end, 10);
	if (errno || *end || nblocks[0] == '-' || n == 0) {
		fprintf(stderr, "coralctl: '%s' is not a number of blocks\n", nblocks);
		return 2;
	}
	char err[CORAL_ERRMSG_MAX];
	uint32_t id = 0;
	int rc = coral_datafile_create(&ctx.conf, name, n, &id, err, sizeof(err));
	if (rc != 0) {
		if (ctx.json)
			print_json(json_pack("{s:s}", "error", err));
		else
			fprintf(stderr, "coralctl: %s\n", err);
		return 1;
	}
	char path[CORAL_STR_MAX + 64];
	coral_datafile_path(&ctx.conf, name, path, sizeof(path));
	if (ctx.json)
		print_json(json_pack("{s:i, s:s, s:I, s:I, s:s}", "id", (int)id, "name", name, "blocks", (json_int_t)n,
				     "block_size", (json_int_t)ctx.conf.storage.block_size, "path", path));
	else
		printf("data file %u %s: %llu blocks of %lld bytes (%s)\n", id, name, n,
		       (long long)ctx.conf.storage.block_size, path);
	return 0;
}

/* Reads every block of f; prints each bad one; returns how many were bad (-1: unreadable). */
static long long df_verify(const struct coral_datafile *f, json_t *bad)
{
	char path[CORAL_STR_MAX + 64], err[CORAL_ERRMSG_MAX];
	coral_datafile_path(&ctx.conf, f->name, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (bad)
			json_array_append_new(bad, json_pack("{s:i, s:s}", "file", (int)f->id, "error", strerror(errno)));
		else
			fprintf(stderr, "coralctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	uint32_t bs = (uint32_t)ctx.conf.storage.block_size;
	uint8_t *buf = malloc(bs);
	long long nbad = 0;
	for (uint64_t b = 0; buf && b < f->blocks; b++) {
		if (coral_block_read(fd, bs, f->id, b, buf, err, sizeof(err)) == 0)
			continue;
		nbad++;
		if (bad)
			json_array_append_new(bad, json_pack("{s:i, s:I, s:s}", "file", (int)f->id, "block", (json_int_t)b,
							     "error", err));
		else
			printf("  %s (%s)\n", err, f->name);
	}
	free(buf);
	close(fd);
	return nbad;
}

static int df_list(bool verify)
{
	struct coral_ctlfile *cf = malloc(sizeof(*cf));
	char err[CORAL_ERRMSG_MAX];
	if (cf == NULL)
		return 1;
	int rc = coral_ctlfile_load(&ctx.conf, cf, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "coralctl: %s\n", err);
		free(cf);
		return 1;
	}
	json_t *arr = ctx.json ? json_array() : NULL, *bad = ctx.json && verify ? json_array() : NULL;
	long long total_bad = 0;
	if (!ctx.json)
		printf("%-5s %-24s %12s %10s  %s\n", "ID", "NAME", "BLOCKS", "SIZE", "CREATED");
	for (uint32_t i = 0; i < cf->nfiles; i++) {
		const struct coral_datafile *f = &cf->files[i];
		char size[32], when[32];
		coral_format_size((int64_t)(f->blocks * (uint64_t)ctx.conf.storage.block_size), size, sizeof(size));
		time_t t = (time_t)(f->created_ns / 1000000000ull);
		struct tm tm;
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		if (ctx.json)
			json_array_append_new(arr, json_pack("{s:i, s:s, s:I, s:s}", "id", (int)f->id, "name", f->name,
							     "blocks", (json_int_t)f->blocks, "created", when));
		else
			printf("%-5u %-24s %12llu %10s  %s\n", f->id, f->name, (unsigned long long)f->blocks, size, when);
		if (verify) {
			long long n = df_verify(f, bad);
			total_bad += n < 0 ? 1 : n;
		}
	}
	if (ctx.json) {
		json_t *o = json_pack("{s:s, s:i, s:I, s:o}", "shared_dir", ctx.conf.storage.shared_dir, "block_size",
				      (int)ctx.conf.storage.block_size, "control_seq", (json_int_t)cf->seq, "files", arr);
		if (bad)
			json_object_set_new(o, "bad", bad);
		print_json(o);
	} else if (verify) {
		printf("%s: %lld bad block%s\n", total_bad ? "verify FAILED" : "verified", total_bad,
		       total_bad == 1 ? "" : "s");
	}
	free(cf);
	return total_bad ? 1 : 0;
}

int run_datafile_create(int argc, char **argv)
{
	(void)argc;
	return df_create(argv[0], argv[1]);
}

int run_datafile_list(int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "--verify") != 0)
		return coralctl_usage_error();
	return df_list(argc == 1);
}

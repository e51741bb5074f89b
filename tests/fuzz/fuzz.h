/* What the fuzz targets share: a directory of their own for inputs that are files (a
 * configuration, a control file, a Raft log segment, a redo thread), made once per process,
 * and the cores' heap fixtures. Each target is one libFuzzer program (LLVMFuzzerTestOneInput):
 * whatever the bytes, the code under test must not crash, leak or overrun (ASan+UBSan). */
#ifndef CORAL_FUZZ_H
#define CORAL_FUZZ_H

#include <errno.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[256];

/* The target's own directory, made on first use under $CORAL_FUZZ_TMP (scripts/fuzz.sh
 * makes one and removes it after: libFuzzer ends a run without the target's clean-up),
 * else /tmp. */
__attribute__((unused)) static const char *fuzz_tmpdir(void)
{
	if (fuzz_dir[0] == '\0') {
		const char *base = getenv("CORAL_FUZZ_TMP");
		snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/coral-fuzz-XXXXXX", base && base[0] ? base : "/tmp");
		if (mkdtemp(fuzz_dir) == NULL)
			abort();
	}
	return fuzz_dir;
}

/* Writes data to DIR/name (directories on the way made); the path into out. */
__attribute__((unused)) static void fuzz_file(const char *name, const uint8_t *data, size_t len, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/%s", fuzz_tmpdir(), name);
	for (char *p = out + strlen(fuzz_tmpdir()) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		mkdir(out, 0700);
		*p = '/';
	}
	FILE *f = fopen(out, "w");
	if (f == NULL)
		abort();
	if (len && fwrite(data, 1, len, f) != len)
		abort();
	fclose(f);
}

static int fuzz__rm(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(p);
	return 0;
}

/* Removes DIR/sub and everything under it. */
__attribute__((unused)) static void fuzz_rmtree(const char *sub)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir(), sub);
	nftw(path, fuzz__rm, 16, FTW_DEPTH | FTW_PHYS);
}

#endif

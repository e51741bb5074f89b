/* recovery-bench: instance recovery's cost against its floor, in one run, alternating.
 *
 * Makes THREADS redo threads (the real appender, written out as segment files) holding
 * CHANGES changes of BYTES bytes each to BLOCKS blocks (every change its own committed
 * transaction, the blocks spread over the threads and changed in turn), then times, rounds
 * times alternately:
 *   read   a plain sequential read() of every segment file (the floor for the first pass);
 *   pass1  smond's first pass over the same files (recovery_read_thread: every record's
 *          checksum, the transactions, the changes kept) and the plan (sorted by block);
 *   apply  the second pass on images in memory (every change applied, in SCN order);
 *   write  the recovered blocks written to a data file and synced, against
 *   raw    a plain write of as many bytes to another file and its sync.
 * Prints each median and the ratios pass1/read and write/raw. The page cache is warm for
 * both sides of a ratio (the files were just written). */
#include "recovery.h"

#include "bench_util.h"
#include "errors.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEG (64ull << 20)
#define BS 8192u

static uint64_t now_ns(void) { return coral_now_mono_ns(); }

/* Appends through a ring and writes what it holds to the thread's segments whenever it is
 * half full (the log writer's job, without the fsync). */
struct writer {
	struct coral_redo *r;
	char dir[256];
	uint64_t written;
	uint8_t *buf;
};

static void flush(struct writer *w)
{
	uint64_t end = atomic_load(&w->r->tail);
	while (w->written < end) {
		uint64_t seg = w->written / SEG, off = w->written % SEG;
		uint64_t n = end - w->written;
		if (n > SEG - off)
			n = SEG - off;
		coral_redo_ring_read(w->r, w->written, w->buf, n);
		char path[320];
		coral_redo_seg_path(w->dir, seg, path, sizeof(path));
		int fd = open(path, O_WRONLY | O_CREAT, 0640);
		if (fd < 0 || pwrite(fd, w->buf, n, (off_t)off) != (ssize_t)n) {
			perror(path);
			exit(1);
		}
		close(fd);
		w->written += n;
	}
	coral_redo_made_durable(w->r, end, 0, 0, 0);
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

int main(int argc, char **argv)
{
	uint64_t blocks = 10000, changes = 200000;
	uint32_t threads = 3, bytes = 64;
	int rounds = 5;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--blocks") == 0)
			blocks = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--changes") == 0)
			changes = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = (uint32_t)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--bytes") == 0)
			bytes = (uint32_t)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--rounds") == 0)
			rounds = atoi(argv[i + 1]);
		else {
			fprintf(stderr, "usage: recovery-bench [--blocks N] [--changes N] [--threads N] [--bytes N] [--rounds N]\n");
			return 2;
		}
	}
	if (blocks == 0 || threads == 0 || threads > 16 || bytes == 0 || bytes > BS - CORAL_BLOCK_HDR || rounds < 1) {
		fprintf(stderr, "recovery-bench: bad arguments\n");
		return 2;
	}
	char shared[] = "/tmp/coral-rbench-XXXXXX";
	if (mkdtemp(shared) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	/* the threads */
	size_t ring = 64u << 20;
	uint8_t *payload = malloc(bytes), *old = malloc(bytes);
	struct writer w[16];
	for (uint32_t t = 0; t < threads; t++) {
		size_t sz = coral_redo_size(ring);
		w[t].r = aligned_alloc(64, (sz + 63) & ~(size_t)63);
		coral_redo_init(w[t].r, sz, ring, t + 1);
		atomic_store(&w[t].r->writer_pid, 1);
		coral_redo_thread_dir(shared, t + 1, w[t].dir, sizeof(w[t].dir));
		coral_mkdir_p(w[t].dir, 0750);
		w[t].written = 0;
		w[t].buf = malloc(ring);
	}
	uint64_t scn = 1, redo_bytes = 0;
	for (uint64_t k = 0; k < changes; k++) {
		uint64_t block = (k * 7919) % blocks;
		uint32_t t = (uint32_t)(block % threads);
		uint32_t off = (uint32_t)((k * 131) % (BS - CORAL_BLOCK_HDR - bytes));
		memset(payload, (int)(k & 0xff), bytes);
		memset(old, (int)((k - 1) & 0xff), bytes);
		uint64_t lsn;
		if (coral_redo_append(w[t].r, CORAL_REDO_CHANGE, CORAL_REDO_F_BEGIN, ++scn, 7, 1, block, off, payload, old,
				      bytes, 1000, &lsn) != 0 ||
		    coral_redo_append(w[t].r, CORAL_REDO_COMMIT, 0, ++scn, 7, 0, 0, 0, NULL, NULL, 0, 1000, &lsn) != 0) {
			fprintf(stderr, "recovery-bench: append failed\n");
			return 1;
		}
		if (atomic_load(&w[t].r->tail) - w[t].written > ring / 2)
			flush(&w[t]);
	}
	for (uint32_t t = 0; t < threads; t++) {
		flush(&w[t]);
		redo_bytes += w[t].written;
	}
	printf("recovery-bench: %u threads, %.1f MiB of redo: %llu changes of %u bytes to %llu blocks of %u bytes\n",
	       threads, (double)redo_bytes / (1 << 20), (unsigned long long)changes, bytes, (unsigned long long)blocks, BS);

	uint64_t *t_read = calloc((size_t)rounds, 8), *t_p1 = calloc((size_t)rounds, 8), *t_apply = calloc((size_t)rounds, 8);
	uint64_t *t_write = calloc((size_t)rounds, 8), *t_raw = calloc((size_t)rounds, 8);
	uint8_t *io = malloc(1 << 20);
	uint8_t *images = malloc(blocks * BS);
	char dbf[300], rawf[300];
	snprintf(dbf, sizeof(dbf), "%s/data.dbf", shared);
	snprintf(rawf, sizeof(rawf), "%s/raw.dat", shared);
	uint64_t nb = 0;
	for (int round = 0; round < rounds; round++) {
		/* the floor: read every segment file */
		uint64_t t0 = now_ns(), got = 0;
		for (uint32_t t = 0; t < threads; t++)
			for (uint64_t seg = 0; seg * SEG < w[t].written; seg++) {
				char path[320];
				coral_redo_seg_path(w[t].dir, seg, path, sizeof(path));
				int fd = open(path, O_RDONLY);
				ssize_t k;
				while (fd >= 0 && (k = read(fd, io, 1 << 20)) > 0)
					got += (uint64_t)k;
				if (fd >= 0)
					close(fd);
			}
		t_read[round] = now_ns() - t0;
		if (got != redo_bytes)
			fprintf(stderr, "recovery-bench: read %llu of %llu bytes\n", (unsigned long long)got,
				(unsigned long long)redo_bytes);
		/* the first pass and the plan */
		t0 = now_ns();
		struct recovery *r = recovery_new(1ull << 34);
		for (uint32_t t = 0; t < threads; t++) {
			uint64_t end;
			char why[256];
			if (recovery_read_thread(r, shared, t + 1, SEG, 0, &end, why, sizeof(why)) < 0) {
				fprintf(stderr, "recovery-bench: reading thread %u: %s\n", t + 1, why);
				return 1;
			}
		}
		nb = recovery_plan(r);
		t_p1[round] = now_ns() - t0;
		/* the second pass, in memory */
		for (uint64_t i = 0; i < nb; i++)
			coral_block_format(images + i * BS, BS, 1, i, 0);
		t0 = now_ns();
		for (uint64_t i = 0; i < nb; i++)
			recovery_apply(r, i, images + i * BS, BS);
		t_apply[round] = now_ns() - t0;
		recovery_free(r);
		/* the recovered blocks to a data file, and as many bytes written plainly */
		t0 = now_ns();
		int fd = open(dbf, O_WRONLY | O_CREAT | O_TRUNC, 0640);
		char err[256];
		for (uint64_t i = 0; i < nb; i++)
			coral_block_write(fd, BS, images + i * BS, err, sizeof(err));
		fdatasync(fd);
		close(fd);
		t_write[round] = now_ns() - t0;
		t0 = now_ns();
		fd = open(rawf, O_WRONLY | O_CREAT | O_TRUNC, 0640);
		for (uint64_t i = 0; i < nb; i += 128) {
			uint64_t n = nb - i < 128 ? nb - i : 128;
			if (write(fd, images + i * BS, n * BS) != (ssize_t)(n * BS))
				perror("write");
		}
		fdatasync(fd);
		close(fd);
		t_raw[round] = now_ns() - t0;
	}
	uint64_t mr = bench_median(t_read, (size_t)rounds), m1 = bench_median(t_p1, (size_t)rounds);
	uint64_t ma = bench_median(t_apply, (size_t)rounds), mw = bench_median(t_write, (size_t)rounds);
	uint64_t mraw = bench_median(t_raw, (size_t)rounds);
	printf("  recovery set         %llu blocks\n", (unsigned long long)nb);
	printf("  plain read           %8.1f ms  (%.0f MiB/s)\n", ms(mr), (double)redo_bytes / (1 << 20) / ((double)mr / 1e9));
	printf("  first pass + plan    %8.1f ms  (%.0f MiB/s)  ratio to the plain read %.2fx\n", ms(m1),
	       (double)redo_bytes / (1 << 20) / ((double)m1 / 1e9), (double)m1 / (double)mr);
	printf("  second pass (memory) %8.1f ms  (%.0f changes/ms)\n", ms(ma), (double)changes / ms(ma));
	printf("  blocks written+sync  %8.1f ms; plain write+sync of as many bytes %.1f ms: ratio %.2fx\n", ms(mw),
	       ms(mraw), (double)mw / (double)mraw);
	printf("  (medians of %d rounds, alternating; page cache warm)\n", rounds);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", shared);
	if (system(cmd) != 0)
		fprintf(stderr, "recovery-bench: could not remove %s\n", shared);
	return 0;
}

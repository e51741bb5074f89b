/* Instance recovery's core (smond/recovery.c) and the thread reader under it (redo.c): a
 * thread is made with the real appender (an in-memory ring) and written out as segment
 * files; then it is read back whole, from a checkpoint, torn and damaged, and its changes
 * applied and rolled back on block images. */
#include "recovery.h"

#include "errors.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEG 65536u
#define BS 512u

static char shared[64];
static struct coral_redo *th[3];

static void setup(void)
{
	snprintf(shared, sizeof(shared), "/tmp/coral-rcv-XXXXXX");
	cr_assert_not_null(mkdtemp(shared));
	for (int t = 1; t <= 2; t++) {
		size_t sz = coral_redo_size(1 << 20);
		th[t] = aligned_alloc(64, (sz + 63) & ~(size_t)63);
		cr_assert_eq(coral_redo_init(th[t], sz, 1 << 20, (uint32_t)t), 0);
		atomic_store(&th[t]->writer_pid, 1); /* appends need a log writer to be there */
	}
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", shared);
	cr_expect_eq(system(cmd), 0);
	free(th[1]);
	free(th[2]);
}

TestSuite(recovery, .init = setup, .fini = teardown);

/* A change record: new bytes at offset of block, the old ones as its undo; returns its LSN's
 * start (the LSN before it). */
static uint64_t change(int t, uint8_t flags, uint64_t scn, uint32_t session, uint64_t block, uint32_t off,
		       const char *now, const char *before)
{
	uint64_t start = atomic_load(&th[t]->tail), lsn;
	cr_assert_eq(coral_redo_append(th[t], CORAL_REDO_CHANGE, flags, scn, session, 1, block, off, now, before,
				       (uint32_t)strlen(now), 100, &lsn), 0);
	return start;
}

static void commit(int t, uint64_t scn, uint32_t session)
{
	uint64_t lsn;
	cr_assert_eq(coral_redo_append(th[t], CORAL_REDO_COMMIT, 0, scn, session, 0, 0, 0, NULL, NULL, 0, 100, &lsn), 0);
}

/* The thread's records so far, as its segment files (a record may cross into the next). */
static void write_thread(int t)
{
	char dir[128], path[192];
	cr_assert_eq(coral_redo_thread_dir(shared, (uint32_t)t, dir, sizeof(dir)), 0);
	cr_assert_eq(coral_mkdir_p(dir, 0750), 0);
	uint64_t end = atomic_load(&th[t]->tail);
	uint8_t *all = malloc(end + 1);
	coral_redo_ring_read(th[t], 0, all, end);
	for (uint64_t seg = 0; seg * SEG < end; seg++) {
		coral_redo_seg_path(dir, seg, path, sizeof(path));
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
		cr_assert_geq(fd, 0);
		uint64_t n = end - seg * SEG < SEG ? end - seg * SEG : SEG;
		cr_assert_eq(write(fd, all + seg * SEG, n), (ssize_t)n);
		close(fd);
	}
	free(all);
}

static struct recovery *read_all(int64_t want_records, const char *why_has)
{
	struct recovery *r = recovery_new(1 << 24);
	for (int t = 1; t <= 2; t++) {
		if (atomic_load(&th[t]->tail) == 0)
			continue;
		uint64_t end;
		char why[256];
		int64_t n = recovery_read_thread(r, shared, (uint32_t)t, SEG, 0, &end, why, sizeof(why));
		cr_assert_geq(n, 0);
		if (why_has)
			cr_expect(strstr(why, why_has) != NULL, "stopped: '%s'", why);
		else
			cr_expect_str_empty(why);
		want_records -= n;
	}
	cr_expect_eq(want_records, 0, "%lld records more or less than wanted", (long long)want_records);
	recovery_plan(r);
	return r;
}

static void image(uint8_t *img, uint64_t block, uint64_t scn, const char *payload)
{
	coral_block_format(img, BS, 1, block, scn);
	memcpy(img + CORAL_BLOCK_HDR, payload, strlen(payload));
}

/* The recovery set's entry for block, applied to img. */
static void apply(struct recovery *r, uint64_t block, uint8_t *img)
{
	for (uint64_t i = 0; i < recovery_plan(r); i++) {
		uint32_t f;
		uint64_t b;
		recovery_block(r, i, &f, &b);
		if (b == block) {
			cr_assert_eq(recovery_apply(r, i, img, BS), 0);
			return;
		}
	}
	cr_assert_fail("block %llu is not in the recovery set", (unsigned long long)block);
}

static const char *payload(const uint8_t *img) { return (const char *)img + CORAL_BLOCK_HDR; }
static uint64_t scn_of(const uint8_t *img) { return ((const struct coral_block_hdr *)img)->scn; }

Test(recovery, committed_changes_are_applied_and_an_open_transaction_rolled_back)
{
	change(1, CORAL_REDO_F_BEGIN, 10, 7, 5, 0, "AAAA", "....");
	change(1, 0, 11, 7, 6, 4, "xx", "..");
	commit(1, 12, 7);
	change(1, CORAL_REDO_F_BEGIN, 13, 7, 5, 2, "BB", "AA");  /* never committed */
	write_thread(1);
	struct recovery *r = read_all(4, NULL);
	cr_expect_eq(recovery_plan(r), 2);
	cr_expect(recovery_needs(r, 1, 5) && recovery_needs(r, 1, 6) && !recovery_needs(r, 1, 4));
	uint8_t img[BS];
	image(img, 5, 0, "....");
	apply(r, 5, img);
	cr_expect(memcmp(payload(img), "AAAA", 4) == 0, "%.4s", payload(img));
	cr_expect_gt(scn_of(img), 13, "a rolled-back image is newer than any of the thread");
	/* again, from what it wrote: the same */
	apply(r, 5, img);
	cr_expect(memcmp(payload(img), "AAAA", 4) == 0, "%.4s", payload(img));
	image(img, 6, 0, "........");
	apply(r, 6, img);
	cr_expect(memcmp(payload(img), "....xx..", 8) == 0, "%.8s", payload(img));
	cr_expect_eq(scn_of(img), 12, "the image carries its commit's SCN, as the live node's did (%llu)",
		     (unsigned long long)scn_of(img));
	const struct recovery_stats *st = recovery_stats(r);
	cr_expect_eq(st->txns, 2);
	cr_expect_eq(st->txns_open, 1);
	cr_expect_eq(st->undone, 2);
	recovery_free(r);
}

Test(recovery, an_image_already_newer_skips_what_it_has)
{
	change(1, CORAL_REDO_F_BEGIN, 10, 7, 5, 0, "AAAA", "....");
	commit(1, 11, 7);
	change(1, CORAL_REDO_F_BEGIN, 20, 7, 5, 0, "CCCC", "AAAA");
	commit(1, 21, 7);
	write_thread(1);
	struct recovery *r = read_all(4, NULL);
	uint8_t img[BS];
	image(img, 5, 20, "CCCC"); /* the disk has both (written before the commit's stamp) */
	apply(r, 5, img);
	cr_expect(memcmp(payload(img), "CCCC", 4) == 0);
	cr_expect_eq(scn_of(img), 21, "the commit's SCN, not the change's: %llu", (unsigned long long)scn_of(img));
	cr_expect_eq(recovery_stats(r)->skipped, 2);
	cr_expect_eq(recovery_stats(r)->applied, 0);
	recovery_free(r);
}

/* Two lost nodes changed one block in turn (it went from one to the other): the threads are
 * merged by SCN whichever is read first. */
Test(recovery, two_threads_merge_by_scn)
{
	change(1, CORAL_REDO_F_BEGIN, 10, 7, 9, 0, "1111", "....");
	commit(1, 11, 7);
	change(2, CORAL_REDO_F_BEGIN, 15, 3, 9, 2, "22", "11");
	commit(2, 16, 3);
	change(1, CORAL_REDO_F_BEGIN, 20, 7, 9, 0, "3", "1");
	commit(1, 21, 7);
	change(2, CORAL_REDO_F_BEGIN, 25, 3, 9, 3, "4", "2"); /* node 2's last: never committed */
	write_thread(1);
	write_thread(2);
	struct recovery *r = read_all(7, NULL);
	uint8_t img[BS];
	image(img, 9, 0, "....");
	apply(r, 9, img);
	cr_expect(memcmp(payload(img), "3122", 4) == 0, "%.4s", payload(img));
	recovery_free(r);
}

/* A session that began again without committing abandoned the first transaction; a committed
 * change made on an uncommitted one (libcoral's contract broken) keeps what it was made on. */
Test(recovery, abandoned_transactions_roll_back_and_committed_work_stays)
{
	change(1, CORAL_REDO_F_BEGIN, 10, 7, 1, 0, "AA", "..");
	change(1, CORAL_REDO_F_BEGIN, 11, 7, 2, 0, "BB", "..");
	commit(1, 12, 7);
	change(1, CORAL_REDO_F_BEGIN, 20, 8, 3, 0, "CC", "..");  /* session 8, never committed */
	change(1, CORAL_REDO_F_BEGIN, 21, 9, 3, 1, "DD", "C."); /* session 9 on top of it, committed */
	commit(1, 22, 9);
	write_thread(1);
	struct recovery *r = read_all(6, NULL);
	uint8_t img[BS];
	image(img, 1, 0, "..");
	apply(r, 1, img);
	cr_expect(memcmp(payload(img), "..", 2) == 0, "%.2s", payload(img));
	image(img, 2, 0, "..");
	apply(r, 2, img);
	cr_expect(memcmp(payload(img), "BB", 2) == 0, "%.2s", payload(img));
	image(img, 3, 0, "...");
	apply(r, 3, img);
	cr_expect(memcmp(payload(img), "CDD", 3) == 0, "%.3s", payload(img));
	cr_expect_eq(recovery_stats(r)->kept, 1);
	recovery_free(r);
}

/* After an eviction the log writer drops what was appended and not durable (replicad's
 * drop_evicted_tail): the next record goes where the dropped ones began, and the thread
 * read back holds the durable records and the new one only. */
Test(recovery, a_dropped_tail_is_never_read)
{
	change(1, CORAL_REDO_F_BEGIN, 10, 7, 1, 0, "AA", "..");
	commit(1, 11, 7);
	uint64_t durable = atomic_load(&th[1]->tail);
	coral_redo_made_durable(th[1], durable, 11, 1, 0);
	change(1, CORAL_REDO_F_BEGIN, 12, 8, 2, 0, "XX", "..");
	commit(1, 13, 8);
	uint64_t dropped = atomic_load(&th[1]->tail) - durable;
	cr_expect_eq(coral_redo_drop_tail(th[1]), dropped);
	cr_expect_eq(atomic_load(&th[1]->tail), durable);
	cr_expect_eq(atomic_load(&th[1]->dropped), dropped);
	cr_expect_eq(coral_redo_drop_tail(th[1]), 0, "nothing left to drop");
	cr_expect_eq(change(1, CORAL_REDO_F_BEGIN, 14, 9, 3, 0, "CC", ".."), durable);
	commit(1, 15, 9);
	write_thread(1);
	struct recovery *r = recovery_new(1 << 20);
	uint64_t end;
	char why[256];
	cr_assert_eq(recovery_read_thread(r, shared, 1, SEG, 0, &end, why, sizeof(why)), 4, "%s", why);
	cr_expect_eq(recovery_plan(r), 2);
	cr_expect(recovery_needs(r, 1, 1) && recovery_needs(r, 1, 3) && !recovery_needs(r, 1, 2),
		  "block 2's dropped change was read");
	recovery_free(r);
}

Test(recovery, the_reader_starts_at_a_checkpoint)
{
	change(1, CORAL_REDO_F_BEGIN, 10, 7, 1, 0, "AA", "..");
	commit(1, 11, 7);
	uint64_t ckpt = change(1, CORAL_REDO_F_BEGIN, 12, 7, 2, 0, "BB", "..");
	commit(1, 13, 7);
	write_thread(1);
	struct recovery *r = recovery_new(1 << 20);
	uint64_t end;
	char why[256];
	cr_assert_eq(recovery_read_thread(r, shared, 1, SEG, ckpt, &end, why, sizeof(why)), 2);
	cr_expect_eq(end, atomic_load(&th[1]->tail));
	cr_expect_eq(recovery_plan(r), 1);
	cr_expect(recovery_needs(r, 1, 2) && !recovery_needs(r, 1, 1));
	recovery_free(r);
	/* a checkpoint that is not a record's start is refused */
	r = recovery_new(1 << 20);
	cr_expect_lt(recovery_read_thread(r, shared, 1, SEG, ckpt + 4, &end, why, sizeof(why)), 0);
	recovery_free(r);
}

/* A torn last write ends the thread at the last whole record, and the reader says where; a
 * damaged record with whole ones after it is an error. Records cross segment boundaries. */
Test(recovery, torn_and_damaged_threads_end_at_the_last_whole_record)
{
	char big[3000];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	char old[3000];
	memset(old, '.', sizeof(old) - 1);
	old[sizeof(old) - 1] = '\0';
	int n = 0;
	uint64_t starts[64];
	while (atomic_load(&th[1]->tail) < 2 * SEG + 1000) {
		starts[n] = change(1, CORAL_REDO_F_BEGIN, 10 + (uint64_t)n, 7, (uint64_t)n, 0, big, old);
		commit(1, 100 + (uint64_t)n, 7);
		n++;
	}
	write_thread(1);
	struct recovery *r = read_all(2 * n, NULL);
	recovery_free(r);

	/* torn: the last segment cut in the middle of the last change record */
	char dir[128], path[192];
	coral_redo_thread_dir(shared, 1, dir, sizeof(dir));
	uint64_t last = starts[n - 1];
	coral_redo_seg_path(dir, last / SEG, path, sizeof(path));
	cr_assert_eq(truncate(path, (off_t)(last % SEG + 100)), 0);
	r = read_all(2 * (n - 1), "not whole");
	recovery_free(r);

	/* damaged: one byte of a record in the first segment */
	uint64_t at = starts[3] + sizeof(struct coral_redo_rec) + 17;
	coral_redo_seg_path(dir, at / SEG, path, sizeof(path));
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "#", 1, (off_t)(at % SEG)), 1);
	close(fd);
	/* ... with whole records after it: damage in the middle, not a torn end: an error,
	 * not a shorter thread (what follows would be lost without a word) */
	r = recovery_new(1 << 24);
	uint64_t end;
	char why[256];
	cr_expect_eq(recovery_read_thread(r, shared, 1, SEG, 0, &end, why, sizeof(why)), CORAL_ECORRUPT);
	cr_expect_eq(end, starts[3]);
	cr_expect(strstr(why, "checksum") != NULL && strstr(why, "damaged in the middle") != NULL, "%s", why);
	recovery_free(r);
}

Test(recovery, a_change_that_does_not_fit_the_block_leaves_the_image_alone)
{
	char big[BS];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	change(1, CORAL_REDO_F_BEGIN, 10, 7, 1, 0, big, big);
	commit(1, 11, 7);
	write_thread(1);
	struct recovery *r = read_all(2, NULL);
	uint8_t img[BS];
	image(img, 1, 0, "..");
	cr_expect_eq(recovery_apply(r, 0, img, BS), CORAL_ECORRUPT);
	cr_expect(memcmp(payload(img), "..", 2) == 0);
	cr_expect_eq(scn_of(img), 0);
	recovery_free(r);
}

/* The bound on what a recovery holds in memory is kept, with an error. */
Test(recovery, the_memory_bound_is_kept)
{
	for (int i = 0; i < 10; i++) {
		change(1, CORAL_REDO_F_BEGIN, 10 + (uint64_t)i, 7, 1, 0, "0123456789", "..........");
		commit(1, 100 + (uint64_t)i, 7);
	}
	write_thread(1);
	struct recovery *r = recovery_new(100);
	uint64_t end;
	cr_expect_eq(recovery_read_thread(r, shared, 1, SEG, 0, &end, NULL, 0), CORAL_EFULL);
	recovery_free(r);
}

/* No thread, or threads without a change: nothing to do, and nothing touched. */
Test(recovery, nothing_to_recover)
{
	struct recovery *r = recovery_new(1 << 20);
	cr_expect_eq(recovery_plan(r), 0);
	cr_expect(!recovery_needs(r, 1, 0));
	recovery_free(r);
	commit(1, 5, 7);
	write_thread(1);
	r = read_all(1, NULL);
	cr_expect_eq(recovery_plan(r), 0);
	recovery_free(r);
}

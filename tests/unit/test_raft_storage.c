/* raftd storage tests: round trip, segment roll-over, cutting a conflicting suffix, a torn
 * write at every byte offset of the last record (recovers), a bad checksum before the tail
 * (refuses, saying so), lost committed entries (refuses), and snapshots. */
#include "errors.h"
#include "raft_store.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/coral-store-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(storage, .init = setup, .fini = teardown);

static struct raft_entry mk(uint64_t index, uint64_t term, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(index * 7 + i);
	return (struct raft_entry){.term = term, .index = index, .type = RAFT_ENTRY_NORMAL,
				   .len = (uint32_t)len, .data = buf};
}

static struct raft_store *open_ok(size_t seg)
{
	struct raft_store *s;
	char err[512];
	int rc = raft_store_open(&s, dir, seg, err, sizeof(err));
	cr_assert_eq(rc, 0, "open failed: %s", err);
	return s;
}

/* Appends entries from..to (term t), each with 40 bytes of data, then hs if given. */
static void put(struct raft_store *s, uint64_t from, uint64_t to, uint64_t t,
		const struct raft_hard_state *hs)
{
	for (uint64_t i = from; i <= to; i++) {
		uint8_t buf[40];
		struct raft_entry e = mk(i, t, buf, sizeof(buf));
		cr_assert_eq(raft_store_append(s, &e, 1, i == to ? hs : NULL), 0, "%s", raft_store_error(s));
	}
	cr_assert_eq(raft_store_sync(s), 0);
}

static void expect_log(struct raft_store *s, uint64_t first, uint64_t last)
{
	struct raft_boot b;
	raft_store_boot(s, &b);
	cr_assert_eq(b.n_entries, last - first + 1, "%zu entries, wanted %llu..%llu", b.n_entries,
		     (unsigned long long)first, (unsigned long long)last);
	for (size_t i = 0; i < b.n_entries; i++) {
		cr_assert_eq(b.entries[i].index, first + i);
		uint8_t buf[40];
		struct raft_entry want = mk(first + i, 0, buf, sizeof(buf));
		cr_assert_eq(b.entries[i].len, 40);
		cr_assert_eq(memcmp(b.entries[i].data, want.data, 40), 0, "entry %zu data", i);
	}
}

static char *only_segment(void)
{
	static char path[128];
	DIR *d = opendir(dir);
	struct dirent *e;
	path[0] = '\0';
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".seg"))
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
	closedir(d);
	return path;
}

static long file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

Test(storage, round_trip_with_hard_state)
{
	struct raft_store *s = open_ok(1 << 20);
	cr_expect(raft_store_empty(s));
	struct raft_hard_state hs = {.term = 3, .vote = 2, .commit = 90};
	put(s, 1, 100, 3, &hs);
	raft_store_close(s);
	s = open_ok(1 << 20);
	expect_log(s, 1, 100);
	struct raft_boot b;
	raft_store_boot(s, &b);
	cr_expect_eq(b.hs.term, 3);
	cr_expect_eq(b.hs.vote, 2);
	cr_expect_eq(b.hs.commit, 90);
	cr_expect(!raft_store_empty(s));
	raft_store_close(s);
}

Test(storage, segments_roll_over)
{
	struct raft_store *s = open_ok(4096);
	struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = 0};
	put(s, 1, 500, 1, &hs);
	struct raft_store_stats st;
	raft_store_stats(s, &st);
	cr_expect_gt(st.segments, 5);
	cr_expect_eq(st.last_index, 500);
	raft_store_close(s);
	s = open_ok(4096);
	expect_log(s, 1, 500);
	struct raft_boot b;
	raft_store_boot(s, &b);
	cr_expect_eq(b.hs.term, 1);
	raft_store_close(s);
}

Test(storage, conflicting_suffix_is_cut)
{
	struct raft_store *s = open_ok(4096);
	struct raft_hard_state hs = {.term = 2, .vote = 1, .commit = 10};
	put(s, 1, 200, 1, &hs);
	/* a new leader overwrites from 150 with term 3 */
	struct raft_hard_state hs3 = {.term = 3, .vote = 0, .commit = 10};
	put(s, 150, 160, 3, &hs3);
	raft_store_close(s);
	s = open_ok(4096);
	struct raft_boot b;
	raft_store_boot(s, &b);
	cr_assert_eq(b.n_entries, 160);
	cr_expect_eq(b.entries[148].term, 1);
	cr_expect_eq(b.entries[149].term, 3);
	cr_expect_eq(b.entries[159].index, 160);
	cr_expect_eq(b.hs.term, 3);
	raft_store_close(s);
}

Test(storage, cut_keeps_the_hard_state)
{
	struct raft_store *s = open_ok(1 << 20);
	struct raft_hard_state hs = {.term = 5, .vote = 3, .commit = 4};
	put(s, 1, 20, 1, &hs);      /* hs record after entry 20 */
	put(s, 10, 12, 5, NULL);    /* cutting at 10 removes that record; the store rewrites it */
	raft_store_close(s);
	s = open_ok(1 << 20);
	struct raft_boot b;
	raft_store_boot(s, &b);
	cr_expect_eq(b.hs.term, 5);
	cr_expect_eq(b.hs.vote, 3);
	cr_expect_eq(b.n_entries, 12);
	raft_store_close(s);
}

Test(storage, torn_write_at_every_offset_of_the_last_record_recovers)
{
	struct raft_store *s = open_ok(1 << 20);
	struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = 29};
	put(s, 1, 29, 1, &hs);
	raft_store_close(s);
	char *seg = only_segment();
	long before = file_size(seg);
	s = open_ok(1 << 20);
	put(s, 30, 30, 1, NULL); /* the last record: not committed */
	raft_store_close(s);
	long after = file_size(seg);
	cr_assert_gt(after, before);
	FILE *f = fopen(seg, "rb");
	uint8_t *whole = malloc((size_t)after);
	cr_assert_eq(fread(whole, 1, (size_t)after, f), (size_t)after);
	fclose(f);
	for (long cut = before; cut < after; cut++) {
		f = fopen(seg, "wb");
		fwrite(whole, 1, (size_t)cut, f);
		fclose(f);
		s = open_ok(1 << 20);
		expect_log(s, 1, 29);
		struct raft_store_stats st;
		raft_store_stats(s, &st);
		cr_expect_eq(st.torn_bytes_truncated, (uint64_t)(cut - before), "cut at %ld", cut);
		raft_store_close(s);
		cr_expect_eq(file_size(seg), before, "the torn tail is truncated (cut %ld)", cut);
	}
	/* the last record complete but damaged: also a torn write */
	whole[after - 3] ^= 0x40;
	f = fopen(seg, "wb");
	fwrite(whole, 1, (size_t)after, f);
	fclose(f);
	s = open_ok(1 << 20);
	expect_log(s, 1, 29);
	raft_store_close(s);
	/* a zero-filled tail (pages allocated, never written) */
	f = fopen(seg, "ab");
	uint8_t zeros[100] = {0};
	fwrite(zeros, 1, sizeof(zeros), f);
	fclose(f);
	s = open_ok(1 << 20);
	expect_log(s, 1, 29);
	raft_store_close(s);
	free(whole);
}

Test(storage, bad_checksum_before_the_tail_refuses)
{
	struct raft_store *s = open_ok(1 << 20);
	struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = 10};
	put(s, 1, 30, 1, &hs);
	raft_store_close(s);
	char *seg = only_segment();
	FILE *f = fopen(seg, "r+b");
	fseek(f, file_size(seg) / 2, SEEK_SET);
	int c = fgetc(f);
	fseek(f, file_size(seg) / 2, SEEK_SET);
	fputc(c ^ 0x01, f);
	fclose(f);
	long size = file_size(seg);
	char err[512];
	cr_expect_eq(raft_store_open(&s, dir, 1 << 20, err, sizeof(err)), CORAL_EIO);
	cr_expect_null(s);
	cr_expect(strstr(err, "damaged, not torn") && strstr(err, "refusing to start") &&
		  strstr(err, "RECOVERY"), "%s", err);
	cr_expect_eq(file_size(seg), size, "nothing was truncated");
}

Test(storage, committed_entries_never_dropped_silently)
{
	struct raft_store *s = open_ok(1 << 20);
	struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = 30};
	put(s, 1, 29, 1, NULL);
	put(s, 30, 30, 1, NULL);
	cr_assert_eq(raft_store_append(s, NULL, 0, &hs), 0);
	cr_assert_eq(raft_store_sync(s), 0);
	raft_store_close(s);
	/* lose the hard state record and half of entry 30 as if torn, but keep a hard state
	 * that says 30 was committed: recovery must refuse rather than drop entry 30 */
	char *seg = only_segment();
	long size = file_size(seg);
	FILE *f = fopen(seg, "rb");
	uint8_t *whole = malloc((size_t)size);
	cr_assert_eq(fread(whole, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	/* move the hs record to before entry 30 and tear entry 30 */
	long hs_len = 8 + 21, e_len = 8 + 18 + 40;
	long e30 = size - hs_len - e_len;
	f = fopen(seg, "wb");
	fwrite(whole, 1, (size_t)e30, f);
	fwrite(whole + size - hs_len, 1, (size_t)hs_len, f);
	fwrite(whole + e30, 1, (size_t)e_len / 2, f);
	fclose(f);
	free(whole);
	char err[512];
	cr_expect_eq(raft_store_open(&s, dir, 1 << 20, err, sizeof(err)), CORAL_EIO);
	cr_expect(strstr(err, "committed entries are missing") != NULL, "%s", err);
}

Test(storage, snapshot_drops_covered_segments)
{
	struct raft_store *s = open_ok(4096);
	struct raft_hard_state hs = {.term = 4, .vote = 2, .commit = 300};
	put(s, 1, 400, 4, &hs);
	struct raft_store_stats st;
	raft_store_stats(s, &st);
	uint64_t segs_before = st.segments;
	uint8_t data[] = "state machine at 300";
	struct raft_snapshot snap = {.index = 300, .term = 4, .conf = {.voters = 7},
				     .data = data, .len = sizeof(data)};
	cr_assert_eq(raft_store_save_snapshot(s, &snap, false), 0, "%s", raft_store_error(s));
	raft_store_stats(s, &st);
	cr_expect_lt(st.segments, segs_before);
	raft_store_close(s);
	s = open_ok(4096);
	struct raft_boot b;
	raft_store_boot(s, &b);
	cr_expect_eq(b.snap.index, 300);
	cr_expect_eq(b.snap.term, 4);
	cr_expect_eq(b.snap.conf.voters, 7);
	cr_expect_str_eq((char *)b.snap.data, "state machine at 300");
	cr_expect_eq(b.hs.term, 4, "the hard state survives segment deletion");
	cr_expect_eq(b.hs.vote, 2);
	expect_log(s, 301, 400);
	raft_store_close(s);
}

Test(storage, snapshot_with_log_reset)
{
	struct raft_store *s = open_ok(4096);
	struct raft_hard_state hs = {.term = 2, .vote = 1, .commit = 50};
	put(s, 1, 120, 2, &hs);
	struct raft_snapshot snap = {.index = 500, .term = 6, .conf = {.voters = 3}};
	cr_assert_eq(raft_store_save_snapshot(s, &snap, true), 0, "%s", raft_store_error(s));
	put(s, 501, 510, 6, NULL);
	raft_store_close(s);
	s = open_ok(4096);
	struct raft_boot b;
	raft_store_boot(s, &b);
	cr_expect_eq(b.snap.index, 500);
	cr_expect_eq(b.hs.term, 2);
	expect_log(s, 501, 510);
	raft_store_close(s);
}

Test(storage, damaged_snapshot_refuses)
{
	struct raft_store *s = open_ok(4096);
	uint8_t data[64] = {1, 2, 3};
	struct raft_snapshot snap = {.index = 5, .term = 1, .data = data, .len = sizeof(data)};
	cr_assert_eq(raft_store_save_snapshot(s, &snap, true), 0);
	raft_store_close(s);
	char path[128];
	snprintf(path, sizeof(path), "%s/snapshot", dir);
	FILE *f = fopen(path, "r+b");
	fseek(f, 70, SEEK_SET);
	fputc(0x55, f);
	fclose(f);
	char err[512];
	cr_expect_eq(raft_store_open(&s, dir, 4096, err, sizeof(err)), CORAL_EIO);
	cr_expect(strstr(err, "fails its checksum") != NULL, "%s", err);
}

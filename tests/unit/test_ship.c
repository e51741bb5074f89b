/* Redo shipping's core (daemons/replicad/ship.c): resuming in the middle of a record from
 * what the standby says it has, a gap asked again once, duplicates skipped, the window and
 * the primary's durable LSN obeyed, a standby with another history refused; a real thread
 * copied range by range into a standby's files and resumed after a cut. The seeded model is
 * tests/sim/test_ship_sim.c. */
#include "errors.h"
#include "redo.h"
#include "ship.h"
#include "thread_file.h"

#include <sys/stat.h>

#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

Test(ship, resumes_in_the_middle_of_a_record_from_what_the_standby_has)
{
	struct ship_tx t;
	ship_tx_init(&t, 1 << 20, 4096);
	ship_tx_durable(&t, 13000);
	/* the standby has 5000 durable and 7123 written: a record was cut at 7123 */
	cr_assert_eq(ship_tx_connected(&t, 5000, 7123), 0);
	uint64_t from, to;
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 7123);
	cr_expect_eq(to, 7123 + 4096);
	ship_tx_sent(&t, to);
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 7123 + 4096);
	cr_expect_eq(to, 13000, "nothing past the primary's durable LSN is sent");
	ship_tx_sent(&t, to);
	cr_expect_not(ship_tx_next(&t, &from, &to));
	cr_expect_eq(ship_tx_ack(&t, 13000), 0);
	cr_expect_eq(t.acked, 13000);
	cr_expect_eq(ship_tx_ack(&t, 13001), CORAL_EINVAL, "an ack past what was sent");
	/* the standby side of the same */
	struct ship_rx r;
	ship_rx_init(&r, 5000);
	ship_rx_written(&r, 7123);
	uint64_t skip;
	cr_expect_eq(ship_rx_range(&r, 7123, 4096, &skip), SHIP_APPEND);
	cr_expect_eq(skip, 0);
}

Test(ship, a_gap_is_asked_again_once_and_then_filled)
{
	struct ship_rx r;
	ship_rx_init(&r, 1000);
	uint64_t skip;
	cr_expect_eq(ship_rx_range(&r, 1000, 500, &skip), SHIP_APPEND);
	ship_rx_written(&r, 1500);
	/* 1500..2000 was lost on the way */
	cr_expect_eq(ship_rx_range(&r, 2000, 500, &skip), SHIP_GAP);
	cr_expect_eq(ship_rx_range(&r, 2500, 500, &skip), SHIP_GAP_ASKED, "asked twice for the same gap");
	struct ship_tx t;
	ship_tx_init(&t, 1 << 20, 500);
	ship_tx_durable(&t, 3000);
	cr_assert_eq(ship_tx_connected(&t, 1000, 1000), 0);
	for (int i = 0; i < 4; i++)
		ship_tx_sent(&t, 1500 + 500 * (uint64_t)i);
	cr_expect_eq(ship_tx_resend(&t, 1500), 0);
	uint64_t from, to;
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 1500);
	cr_expect_eq(t.gaps, 1);
	cr_expect_eq(ship_rx_range(&r, from, to - from, &skip), SHIP_APPEND);
	ship_rx_written(&r, to);
	cr_expect_eq(r.received, 2000);
	cr_expect_not(r.asked);
	/* a resend it does not want: not between what it acknowledged and what was sent */
	cr_expect_eq(ship_tx_resend(&t, 999), CORAL_EINVAL);
	cr_expect_eq(ship_tx_resend(&t, 999999), CORAL_EINVAL);
}

Test(ship, duplicates_and_overlaps_are_skipped)
{
	struct ship_rx r;
	ship_rx_init(&r, 0);
	uint64_t skip;
	cr_expect_eq(ship_rx_range(&r, 0, 100, &skip), SHIP_APPEND);
	ship_rx_written(&r, 100);
	cr_expect_eq(ship_rx_range(&r, 0, 100, &skip), SHIP_DUPLICATE);
	cr_expect_eq(ship_rx_range(&r, 50, 100, &skip), SHIP_APPEND);
	cr_expect_eq(skip, 50);
	ship_rx_written(&r, 150);
	ship_rx_synced(&r, 1000);
	cr_expect_eq(r.durable, 150, "synced past what was written");
}

Test(ship, the_window_bounds_what_is_unacknowledged)
{
	struct ship_tx t;
	ship_tx_init(&t, 1000, 400);
	ship_tx_durable(&t, 100000);
	cr_assert_eq(ship_tx_connected(&t, 0, 0), 0);
	uint64_t from, to, sent = 0;
	while (ship_tx_next(&t, &from, &to)) {
		cr_assert_eq(from, sent);
		cr_assert_leq(to - from, 400);
		ship_tx_sent(&t, to);
		sent = to;
	}
	cr_expect_eq(sent, 1000, "sent %llu with a window of 1000", (unsigned long long)sent);
	cr_expect_eq(ship_tx_ack(&t, 2000), CORAL_EINVAL, "an ack past what was sent");
	cr_expect_eq(ship_tx_ack(&t, 600), 0);
	cr_assert(ship_tx_next(&t, &from, &to));
	cr_expect_eq(from, 1000);
	cr_expect_eq(to, 1400);
	ship_tx_disconnected(&t);
	cr_expect_not(ship_tx_next(&t, &from, &to), "sent while not connected");
}

Test(ship, a_standby_with_another_history_is_refused)
{
	struct ship_tx t;
	ship_tx_init(&t, 1000, 400);
	ship_tx_durable(&t, 5000);
	cr_expect_eq(ship_tx_connected(&t, 4000, 6000), CORAL_EDIVERGED);
	cr_expect_not(t.connected);
	cr_expect_eq(ship_tx_connected(&t, 6000, 4000), CORAL_EINVAL);
	cr_expect_eq(ship_tx_connected(&t, 5000, 5000), 0);
}

/* A real thread (records with their checksums, from a redo ring) shipped in ranges cut at
 * random places, written by the standby into its own thread files (thread_file.c, as the log
 * writer writes): the copy reads back record for record; cut in the middle of a record, a
 * restarted standby finds the end of its last whole record, cuts the rest and resumes there. */
static int count_fn(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	(void)rec;
	(void)bytes;
	(*(int *)arg)++;
	return 0;
}

/* Ships what the primary has to the standby's files, range by range, each written, synced and
 * acknowledged, until the standby's copy reaches cut (its process dying there). */
static void copy_until(struct ship_tx *t, struct ship_rx *r, struct thread_file *f, const uint8_t *thread, uint64_t cut)
{
	uint64_t from, to;
	while (r->received < cut && ship_tx_next(t, &from, &to)) {
		ship_tx_sent(t, to);
		uint64_t skip;
		cr_assert_eq(ship_rx_range(r, from, to - from, &skip), SHIP_APPEND);
		uint64_t end = to < cut ? to : cut;
		const char *what = "";
		cr_assert_eq(thread_file_write(f, from + skip, thread + from + skip, end - from - skip, &what), 0, "%s", what);
		ship_rx_written(r, end);
		cr_assert_eq(thread_file_sync(f), 0);
		ship_rx_synced(r, end);
		cr_assert_eq(ship_tx_ack(t, r->durable), 0);
	}
}

/* Thread 7's redo ring of `bytes` in memory (free it), as if its log writer ran. */
static struct coral_redo *test_ring(size_t bytes)
{
	size_t sz = coral_redo_size(bytes);
	struct coral_redo *ring = aligned_alloc(64, (sz + 63) / 64 * 64);
	cr_assert_not_null(ring);
	cr_assert_eq(coral_redo_init(ring, sz, bytes, 7), 0);
	atomic_store(&ring->writer_pid, 1); /* appends need a log writer to be there */
	return ring;
}

Test(ship, a_thread_copied_range_by_range_reads_back_and_resumes_after_a_cut)
{
	char dir[] = "/tmp/coral-ship-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	struct coral_redo *ring = test_ring(1 << 20);
	int records = 0;
	uint64_t lsn = 0;
	uint8_t bytes[300];
	for (int i = 0; i < 500; i++) {
		memset(bytes, i, sizeof(bytes));
		uint32_t n = 1 + (uint32_t)(i * 37 % 299);
		cr_assert_eq(coral_redo_append(ring, i % 5 ? CORAL_REDO_CHANGE : CORAL_REDO_COMMIT, 0, (uint64_t)i + 1, 1, 1,
					       (uint64_t)i, 0, i % 5 ? bytes : NULL, NULL, i % 5 ? n : 0, 100, &lsn),
			     0);
		records++;
	}
	/* the primary's thread, as bytes; the standby's copy under dir, segments of 4 KiB */
	uint8_t *thread = malloc(lsn);
	cr_assert_not_null(thread);
	coral_redo_ring_read(ring, 0, thread, lsn);
	struct ship_tx t;
	struct ship_rx r;
	ship_tx_init(&t, 1 << 16, 1000);
	ship_tx_durable(&t, lsn);
	ship_rx_init(&r, 0);
	cr_assert_eq(ship_tx_connected(&t, 0, 0), 0);
	struct thread_file f;
	char err[256];
	cr_assert_eq(thread_file_open(&f, dir, 7, 4096, err, sizeof(err)), 0, "%s", err);
	uint64_t cut = lsn / 2 + 13; /* the standby's process dies there, mid-record */
	copy_until(&t, &r, &f, thread, cut);
	thread_file_close(&f);
	/* restarted: the copy's last whole record, the torn one cut off */
	uint64_t has = 0;
	cr_assert_eq(thread_file_open(&f, dir, 7, 4096, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(thread_file_cut_at_end(&f, dir, 0, &has, NULL, err, sizeof(err)), 0, "%s", err);
	cr_expect_lt(has, cut);
	cr_expect_gt(has, cut - 400, "the last whole record ends at %llu, the cut at %llu", (unsigned long long)has,
		     (unsigned long long)cut);
	ship_rx_init(&r, has);
	cr_assert_eq(ship_tx_connected(&t, r.durable, r.received), 0);
	copy_until(&t, &r, &f, thread, UINT64_MAX);
	thread_file_close(&f);
	cr_expect_eq(r.durable, lsn);
	int read = 0;
	uint64_t end = 0;
	cr_expect_eq(coral_redo_scan(dir, 7, 4096, 0, count_fn, &read, &end, err, sizeof(err)), records, "%s", err);
	cr_expect_eq(read, records);
	cr_expect_eq(end, lsn);
	free(thread);
	free(ring);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* A segment is written ahead of its records with zeros up to the next MiB (thread_file.c):
 * the file's size moves once a MiB, not at every write; the zeros end the thread for a
 * reader, with no error; a torn record before them is cut at a restart, and the thread goes
 * on there, zeroed ahead again. */
Test(ship, a_segment_is_zeroed_ahead_and_its_zeros_end_the_thread)
{
	char dir[] = "/tmp/coral-ship-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	struct coral_redo *ring = test_ring(4 << 20);
	uint64_t lsn = 0;
	uint8_t bytes[200];
	memset(bytes, 0x5a, sizeof(bytes));
	int records = 0;
	for (int i = 0; i < 6000; i++, records++)
		cr_assert_eq(coral_redo_append(ring, CORAL_REDO_CHANGE, 0, (uint64_t)i + 1, 1, 1, (uint64_t)i, 0, bytes,
					       NULL, sizeof(bytes), 100, &lsn), 0);
	cr_assert_gt(lsn, 1u << 20, "the thread should pass one MiB");
	uint8_t *thread = malloc(lsn);
	cr_assert_not_null(thread);
	coral_redo_ring_read(ring, 0, thread, lsn);
	const uint64_t seg = 4u << 20;
	struct thread_file f;
	char err[256], path[400];
	cr_assert_eq(thread_file_open(&f, dir, 7, seg, err, sizeof(err)), 0, "%s", err);
	const char *what = "";
	uint64_t half = lsn / 2 + 5;  /* mid-record */
	for (uint64_t at = 0; at < half; at += 700) {
		uint64_t n = half - at < 700 ? half - at : 700;
		cr_assert_eq(thread_file_write(&f, at, thread + at, n, &what), 0, "%s", what);
	}
	cr_assert_eq(thread_file_sync(&f), 0);
	thread_file_close(&f);
	thread_file_seg_path(&f, 0, path, sizeof(path));
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, (half / (1u << 20) + 1) * (1u << 20), "size %lld after %llu bytes",
		     (long long)st.st_size, (unsigned long long)half);
	/* a reader stops at the zeros after the torn record's start, saying why (torn), and
	 * nothing follows */
	int read = 0;
	uint64_t end = 0;
	int64_t n = coral_redo_scan(dir, 7, seg, 0, count_fn, &read, &end, err, sizeof(err));
	cr_expect_geq(n, 0, "%s", err);
	cr_expect_lt(end, half);
	cr_expect_gt(end, half - 300);
	/* restarted: cut at the last whole record, written on from there to the end */
	cr_assert_eq(thread_file_open(&f, dir, 7, seg, err, sizeof(err)), 0, "%s", err);
	uint64_t has = 0;
	cr_assert_eq(thread_file_cut_at_end(&f, dir, 0, &has, NULL, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(has, end);
	cr_assert_eq(thread_file_write(&f, has, thread + has, lsn - has, &what), 0, "%s", what);
	cr_assert_eq(thread_file_sync(&f), 0);
	thread_file_close(&f);
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, (lsn / (1u << 20) + 1) * (1u << 20));
	/* the whole thread reads back, and its end is clean: no error past it */
	read = 0;
	err[0] = 'x';
	err[1] = 0;
	cr_expect_eq(coral_redo_scan(dir, 7, seg, 0, count_fn, &read, &end, err, sizeof(err)), records, "%s", err);
	cr_expect_eq(read, records);
	cr_expect_eq(end, lsn);
	cr_expect_str_empty(err, "a clean end read as: %s", err);
	free(thread);
	free(ring);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

/* Sessions append with the SCN taken under the redo latch while a marker takes marks: the
 * thread is in SCN order, and every mark (L, C) holds: each record with an SCN at most C
 * ends at or before L, each one after L has a higher SCN. A standby's apply counts on both. */
struct clocked_arg {
	struct coral_redo *ring;
	_Atomic uint64_t *clock;
	int n;
	_Atomic bool go;
};

static void *clocked_appender(void *p)
{
	struct clocked_arg *a = p;
	uint8_t bytes[24] = {1};
	while (!atomic_load(&a->go))
		sched_yield();
	for (int i = 0; i < a->n; i++) {
		if (i % 32 == 0)
			sched_yield(); /* the marker interleaves even on a loaded machine */
		uint64_t scn = 0, lsn;
		int rc = coral_redo_append_clocked(a->ring, a->clock, CORAL_REDO_CHANGE, 0, &scn, 1, 1, (uint64_t)i, 0, bytes,
						   NULL, sizeof(bytes), 1000, &lsn);
		if (rc != 0 || scn == 0)
			return (void *)1;
		if (i % 97 == 0) /* a block from another node: the clock jumps */
			atomic_fetch_add(a->clock, 5);
	}
	return NULL;
}

struct mark { uint64_t lsn, scn; };

Test(ship, clocked_appends_keep_the_thread_in_scn_order_and_marks_hold)
{
	size_t sz = coral_redo_size(4 << 20);
	struct coral_redo *ring = aligned_alloc(64, (sz + 63) / 64 * 64);
	cr_assert_not_null(ring);
	cr_assert_eq(coral_redo_init(ring, sz, 4 << 20, 3), 0);
	atomic_store(&ring->writer_pid, 1);
	_Atomic uint64_t clock = 100;
	struct clocked_arg a = {ring, &clock, 4000, false};
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, clocked_appender, &a), 0);
	static struct mark marks[2000];
	int nm = 0, taken = 0;
	atomic_store(&a.go, true);
	for (bool busy = true; busy; taken++) {
		/* the last 2000 are kept (spread out once there are more: every other one) */
		struct mark *m = &marks[nm < 2000 ? nm++ : 1000 + taken % 1000];
		coral_redo_mark(ring, &clock, &m->lsn, &m->scn);
		busy = m->lsn < 4ull * 4000 * 64;
	}
	for (int i = 0; i < 4; i++) {
		void *rv;
		pthread_join(th[i], &rv);
		cr_assert_null(rv, "an append failed");
	}
	uint64_t end = atomic_load(&ring->tail);
	uint8_t *thread = malloc(end);
	cr_assert_not_null(thread);
	coral_redo_ring_read(ring, 0, thread, end);
	uint64_t prev = 0;
	int records = 0;
	for (uint64_t at = 0; at < end;) {
		struct coral_redo_rec h;
		memcpy(&h, thread + at, sizeof(h));
		cr_assert_eq(h.magic, CORAL_REDO_MAGIC);
		cr_assert_gt(h.scn, prev, "record %d (LSN %llu) has SCN %llu after %llu", records, (unsigned long long)h.lsn,
			     (unsigned long long)h.scn, (unsigned long long)prev);
		prev = h.scn;
		for (int m = 0; m < nm; m++) {
			if (h.scn <= marks[m].scn)
				cr_assert_leq(h.lsn, marks[m].lsn, "mark %d: SCN %llu ends at %llu, past the mark's LSN %llu", m,
					      (unsigned long long)h.scn, (unsigned long long)h.lsn,
					      (unsigned long long)marks[m].lsn);
		}
		at += h.len;
		records++;
	}
	cr_expect_eq(records, 16000);
	cr_expect_gt(taken, 10, "the marks were taken while the sessions appended");
	free(thread);
	free(ring);
}

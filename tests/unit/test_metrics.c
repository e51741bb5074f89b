/* The metrics slot (metrics.h): a stats reply flattened through its descriptor (counters with
 * _total, gauges as named, _us and _ms in seconds, nested messages joined, strings and
 * repeated fields left out), the slot's bound, and lmsd's 8-per-octave histogram turned
 * into cumulative Prometheus buckets whose bounds are never below a value counted in them. */
#include "ctl.h"
#include "metrics.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct coral_metrics_slot slot;

static const struct coral_metric *find(const char *name)
{
	for (uint32_t i = 0; i < slot.n; i++)
		if (strcmp(slot.m[i].name, name) == 0)
			return &slot.m[i];
	return NULL;
}

Test(metrics, a_reply_is_flattened_by_its_descriptor)
{
	memset(&slot, 0, sizeof(slot));
	Coral__GcsStatsReply r = CORAL__GCS_STATS_REPLY__INIT;
	r.two_way = 42;
	r.scn = 7;
	r.log_wait_us = 2500000;
	Coral__GcsKindStats k = CORAL__GCS_KIND_STATS__INIT, *kp = &k;
	r.kinds = &kp;
	r.n_kinds = 1;
	static const char *const gauges[] = {"scn", NULL};
	coral_metrics_begin(&slot);
	coral_metrics_put_pb(&slot, "gcs", &r.base, gauges, "test");
	coral_metrics_end(&slot, 1234);
	const struct coral_metric *m = find("coral_gcs_two_way_total");
	cr_assert_not_null(m);
	cr_expect_eq(m->kind, CORAL_METRIC_COUNTER);
	cr_expect_eq(m->value, 42);
	m = find("coral_gcs_scn");
	cr_assert_not_null(m, "a gauge has no _total");
	cr_expect_eq(m->kind, CORAL_METRIC_GAUGE);
	cr_expect_null(find("coral_gcs_scn_total"));
	m = find("coral_gcs_log_wait_seconds_total");
	cr_assert_not_null(m, "microseconds are given in seconds");
	cr_expect(fabs(m->value - 2.5) < 1e-9);
	for (uint32_t i = 0; i < slot.n; i++)
		cr_expect_null(strstr(slot.m[i].name, "kinds"), "a repeated field was published: %s", slot.m[i].name);
	cr_expect_eq(slot.pid, 1234);
	cr_expect_eq(atomic_load(&slot.seq.v) & 1u, 0u, "the slot is left being written");
}

Test(metrics, nested_messages_join_their_names_and_a_star_matches_a_prefix)
{
	memset(&slot, 0, sizeof(slot));
	Coral__RecoveryReply r = CORAL__RECOVERY_REPLY__INIT;
	Coral__RecoveryEvent cur = CORAL__RECOVERY_EVENT__INIT;
	cur.blocks_done = 5;
	cur.total_ms = 1500;
	cur.kind = "lost node";
	r.current = &cur;
	r.dead_pending = 2;
	static const char *const gauges[] = {"dead_pending", "current_*", NULL};
	coral_metrics_begin(&slot);
	coral_metrics_put_pb(&slot, "recovery", &r.base, gauges, "test");
	coral_metrics_end(&slot, 1);
	const struct coral_metric *m = find("coral_recovery_current_blocks_done");
	cr_assert_not_null(m);
	cr_expect_eq(m->kind, CORAL_METRIC_GAUGE);
	m = find("coral_recovery_current_total_seconds");
	cr_assert_not_null(m);
	cr_expect(fabs(m->value - 1.5) < 1e-9);
	cr_expect_not_null(find("coral_recovery_dead_pending"));
	for (uint32_t i = 0; i < slot.n; i++)
		cr_expect_null(strstr(slot.m[i].name, "_kind"), "a string was published: %s", slot.m[i].name);
}

Test(metrics, a_full_slot_counts_what_it_drops)
{
	memset(&slot, 0, sizeof(slot));
	coral_metrics_begin(&slot);
	for (int i = 0; i < CORAL_METRICS_MAX + 5; i++)
		coral_metrics_put(&slot, "coral_x", NULL, CORAL_METRIC_GAUGE, i, "x");
	coral_metrics_end(&slot, 1);
	cr_expect_eq(slot.n, CORAL_METRICS_MAX);
	cr_expect_eq(slot.dropped, 5);
	coral_metrics_begin(&slot);  /* the next publication starts afresh */
	coral_metrics_end(&slot, 1);
	cr_expect_eq(slot.n, 0);
	cr_expect_eq(slot.dropped, 0);
}

/* lmsd's bucket of a value (gcs.c) */
static int log8_bucket(uint64_t us)
{
	int b = us == 0 ? 0 : (int)(8.0 * log2((double)us + 1.0));
	return b >= 160 ? 159 : b;
}

Test(metrics, histogram_buckets_bound_every_value_counted_in_them)
{
	uint32_t b[160] = {0};
	uint64_t vals[] = {0, 1, 2, 3, 6, 7, 100, 126, 127, 128, 1000, 65534, 65535, 1000000, 16777214};
	uint64_t sum = 0;
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		b[log8_bucket(vals[i])]++;
		sum += vals[i];
	}
	memset(&slot, 0, sizeof(slot));
	coral_metrics_begin(&slot);
	coral_metrics_put_hist_log8(&slot, "coral_t_seconds", "kind=\"x\"", b, 160, sizeof(vals) / sizeof(vals[0]), sum, "t");
	coral_metrics_end(&slot, 1);
	cr_assert_eq(slot.nh, 1);
	const struct coral_metric_hist *h = &slot.h[0];
	for (int k = 1; k <= CORAL_METRICS_BUCKETS; k++) {
		uint64_t le_us = (1ull << k) - 1, want = 0;
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
			want += vals[i] <= le_us;
		/* every value counted is at most the bound; none left out that is well below it */
		cr_expect_leq(h->le[k - 1], want, "le %llu us: %llu counted, %llu at most", (unsigned long long)le_us,
			      (unsigned long long)h->le[k - 1], (unsigned long long)want);
		uint64_t below = 0;
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
			below += vals[i] + 1 < le_us && log8_bucket(vals[i]) < 159;  /* the last holds all above */
		cr_expect_geq(h->le[k - 1], below, "le %llu us", (unsigned long long)le_us);
		if (k > 1)
			cr_expect_geq(h->le[k - 1], h->le[k - 2], "buckets are cumulative");
	}
	cr_expect_eq(h->count, sizeof(vals) / sizeof(vals[0]));
	cr_expect(fabs(h->sum - (double)sum / 1e6) < 1e-9);
}

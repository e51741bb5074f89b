/* The standbys' gate for commits (daemons/replicad/gate.c): FIRST and ANY k, the RPO in
 * bytes and in time, strict waiting when short, the fallback to async after
 * sync_fallback_ms and the return once the standbys have caught up. */
#include "gate.h"

#include <criterion/criterion.h>
#include <string.h>

#define MS 1000000ull

static struct gate_conf conf_of(const char *spec)
{
	struct gate_conf c;
	memset(&c, 0, sizeof(c));
	char why[200];
	cr_assert_eq(coral_sync_spec_parse(spec, &c.spec, why, sizeof(why)), 0, "%s", why);
	c.catch_up = 1000;
	return c;
}

Test(gate, first_k_takes_the_first_connected_in_order)
{
	struct gate_conf c = conf_of("FIRST 1 (a, b)");
	struct gate g = {0};
	struct gate_standby s[2] = {{"a", true, 500, 0}, {"b", true, 900, 0}};
	bool on;
	uint64_t lsn;
	cr_expect_eq(gate_eval(&g, &c, s, 2, 1000, 1 * MS, &on, &lsn), GATE_NONE);
	cr_expect(on);
	cr_expect_eq(lsn, 500, "a first, though b has more");
	s[0].connected = false;
	gate_eval(&g, &c, s, 2, 1000, 2 * MS, &on, &lsn);
	cr_expect_eq(lsn, 900, "a gone: b is the first connected");
}

Test(gate, any_k_takes_the_kth_highest)
{
	struct gate_conf c = conf_of("ANY 2 (a, b, c)");
	struct gate g = {0};
	struct gate_standby s[3] = {{"a", true, 100, 0}, {"b", true, 700, 0}, {"c", true, 400, 0}};
	bool on;
	uint64_t lsn;
	gate_eval(&g, &c, s, 3, 1000, MS, &on, &lsn);
	cr_expect(on);
	cr_expect_eq(lsn, 400);
}

Test(gate, short_of_k_it_is_strict_unless_a_fallback_is_set)
{
	struct gate_conf c = conf_of("FIRST 1 (a)");
	struct gate g = {0};
	struct gate_standby s[1] = {{"a", true, 300, 0}};
	bool on;
	uint64_t lsn;
	gate_eval(&g, &c, s, 1, 1000, MS, &on, &lsn);
	cr_expect_eq(lsn, 300);
	s[0].connected = false;
	for (uint64_t t = 2; t < 100000; t += 1000) {
		cr_expect_eq(gate_eval(&g, &c, s, 1, 5000, t * MS, &on, &lsn), GATE_NONE);
		cr_expect(on);
		cr_expect_eq(lsn, 300, "strict: commits past it wait, forever");
	}
	/* with a fallback of 5 s */
	struct gate g2 = {0};
	c.fallback_ms = 5000;
	s[0].connected = true;
	gate_eval(&g2, &c, s, 1, 1000, MS, &on, &lsn);
	s[0].connected = false;
	cr_expect_eq(gate_eval(&g2, &c, s, 1, 1000, 2 * MS, &on, &lsn), GATE_NONE);
	cr_expect(on);
	cr_expect_eq(gate_eval(&g2, &c, s, 1, 1000, 5002 * MS, &on, &lsn), GATE_FELL_BACK);
	cr_expect(!on);
	cr_expect_neq(strstr(g2.why, "0 of the 1 sync standbys"), NULL, "%s", g2.why);
	/* back, but far behind: still async until caught up */
	s[0].connected = true;
	s[0].acked = 1000;
	cr_expect_eq(gate_eval(&g2, &c, s, 1, 90000, 6000 * MS, &on, &lsn), GATE_NONE);
	cr_expect(!on);
	s[0].acked = 89500;
	cr_expect_eq(gate_eval(&g2, &c, s, 1, 90000, 6100 * MS, &on, &lsn), GATE_RESUMED);
	cr_expect(on);
	cr_expect_eq(lsn, 89500);
	cr_expect_eq(g2.switches, 2);
}

Test(gate, the_rpo_holds_against_the_best_standby)
{
	struct gate_conf c = conf_of("");
	c.max_lag_bytes = 4096;
	struct gate g = {0};
	struct gate_standby s[2] = {{"a", true, 1000, 0}, {"b", true, 3000, 0}};
	bool on;
	uint64_t lsn;
	gate_eval(&g, &c, s, 2, 100000, MS, &on, &lsn);
	cr_expect(on);
	cr_expect_eq(lsn, 3000 + 4096, "commits wait past the best standby's ack plus the bound");
	c.max_lag_bytes = 0;
	c.max_lag_ms = 200;
	s[1].lag_ms = 150;
	gate_eval(&g, &c, s, 2, 100000, 2 * MS, &on, &lsn);
	cr_expect_geq(lsn, 100000, "within the time bound: no wait");
	s[1].lag_ms = 250;
	gate_eval(&g, &c, s, 2, 100000, 3 * MS, &on, &lsn);
	cr_expect_eq(lsn, 3000, "past it: commits wait for the standby");
	/* none connected: strict */
	s[0].connected = s[1].connected = false;
	gate_eval(&g, &c, s, 2, 100000, 4 * MS, &on, &lsn);
	cr_expect(on);
	cr_expect_eq(lsn, 3000);
}

Test(gate, async_without_a_bound_has_no_gate)
{
	struct gate_conf c = conf_of("");
	struct gate g = {0};
	struct gate_standby s[1] = {{"a", false, 0, 0}};
	bool on = true;
	uint64_t lsn = 7;
	cr_expect_eq(gate_eval(&g, &c, s, 1, 100, MS, &on, &lsn), GATE_NONE);
	cr_expect(!on);
}

Test(gate, sync_specs_parse_or_say_why)
{
	struct coral_sync_spec sp;
	char why[200];
	cr_expect_eq(coral_sync_spec_parse("ANY 2 (x, y,z)", &sp, why, sizeof(why)), 0);
	cr_expect(sp.any);
	cr_expect_eq(sp.k, 2);
	cr_expect_eq(sp.n, 3);
	cr_expect_str_eq(sp.names[2], "z");
	cr_expect_neq(coral_sync_spec_parse("FIRST 3 (x, y)", &sp, why, sizeof(why)), 0);
	cr_expect_neq(strstr(why, "only 2"), NULL, "%s", why);
	cr_expect_neq(coral_sync_spec_parse("SOME 1 (x)", &sp, why, sizeof(why)), 0);
	cr_expect_neq(coral_sync_spec_parse("FIRST 1 (x, x)", &sp, why, sizeof(why)), 0);
	cr_expect_neq(coral_sync_spec_parse("FIRST 1 (x", &sp, why, sizeof(why)), 0);
	cr_expect_eq(coral_sync_spec_parse("", &sp, why, sizeof(why)), 0);
	cr_expect_eq(sp.k, 0);
}

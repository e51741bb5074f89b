/* The registry (raftd's state machine) and the phi-accrual detector, as pure code: joins,
 * evictions and rejoins with their epochs and refusals, the config store and its bounds,
 * snapshot and restore, the watch ring, and phi against silence. */
#include "errors.h"
#include "phi.h"
#include "registry.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static struct registry reg;
static uint64_t idx;

static void setup(void)
{
	registry_init(&reg, 4, 16);
	idx = 10;
}

static void teardown(void)
{
	registry_free(&reg);
}

static int apply(uint32_t op, uint32_t node, uint64_t inc, const char *key, const char *value)
{
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = op;
	c.node = node;
	c.incarnation = inc;
	c.key = (char *)(key ? key : "");
	c.address = (char *)"127.0.0.1:7100";
	c.reason = (char *)"test";
	if (value) {
		c.value.data = (uint8_t *)value;
		c.value.len = strlen(value);
	}
	uint8_t *buf;
	size_t len;
	cr_assert_eq(registry_cmd_pack(&c, &buf, &len), 0);
	struct reg_result res;
	registry_apply(&reg, ++idx, buf, len, &res);
	free(buf);
	return res.code;
}

TestSuite(registry, .init = setup, .fini = teardown);

Test(registry, join_evict_rejoin_and_epochs)
{
	cr_assert_eq(apply(REG_JOIN, 1, 1, NULL, NULL), 0);
	cr_assert_eq(apply(REG_JOIN, 2, 1, NULL, NULL), 0);
	cr_assert_eq(reg.epoch, 2);
	cr_assert_eq(apply(REG_JOIN, 2, 1, NULL, NULL), 0, "a repeated join is a no-op");
	cr_assert_eq(reg.epoch, 2, "and bumps no epoch");
	cr_assert_eq(apply(REG_EVICT, 2, 1, NULL, NULL), 0);
	cr_assert_eq(reg.members[2].state, CORAL_MEMBER_EVICTED);
	cr_assert_eq(reg.epoch, 3);
	cr_assert_eq(apply(REG_JOIN, 2, 1, NULL, NULL), CORAL_EEVICTED, "the evicted incarnation stays out");
	cr_assert_eq(apply(REG_EVICT, 2, 1, NULL, NULL), CORAL_ENOENT, "a stale eviction changes nothing");
	cr_assert_eq(reg.epoch, 3);
	cr_assert_eq(apply(REG_JOIN, 2, 2, NULL, NULL), 0, "a new incarnation comes back");
	cr_assert_eq(reg.members[2].state, CORAL_MEMBER_ACTIVE);
	cr_assert_eq(reg.members[2].incarnation, 2);
	cr_assert_eq(reg.epoch, 4);
	cr_assert_eq(apply(REG_JOIN, 2, 1, NULL, NULL), CORAL_EEVICTED, "an older incarnation is refused");
	cr_assert_eq(apply(REG_EVICT, 2, 1, NULL, NULL), CORAL_ENOENT, "evicting an old incarnation is refused");
	cr_assert_eq(reg.members[2].state, CORAL_MEMBER_ACTIVE);
}

Test(registry, ids_are_never_reused)
{
	cr_assert_eq(apply(REG_MEMBER_ADD, 5, 0, NULL, NULL), 0);
	cr_assert_eq(reg.members[5].state, CORAL_MEMBER_JOINING);
	cr_assert_eq(apply(REG_MEMBER_ADD, 5, 0, NULL, NULL), CORAL_EEXIST);
	cr_assert_eq(apply(REG_MEMBER_REMOVE, 5, 0, NULL, NULL), 0);
	cr_assert_eq(apply(REG_MEMBER_ADD, 5, 0, NULL, NULL), CORAL_EINVAL);
	cr_assert_eq(apply(REG_JOIN, 5, 9, NULL, NULL), CORAL_EINVAL);
	cr_assert_eq(apply(REG_JOIN, 0, 1, NULL, NULL), CORAL_EINVAL);
	cr_assert_eq(apply(REG_JOIN, 65, 1, NULL, NULL), CORAL_EINVAL);
}

Test(registry, kv_store_and_its_bounds)
{
	cr_assert_eq(apply(REG_PUT, 0, 0, "b", "2"), 0);
	cr_assert_eq(apply(REG_PUT, 0, 0, "a", "1"), 0);
	cr_assert_eq(apply(REG_PUT, 0, 0, "a", "one"), 0);
	const struct reg_kv *kv = registry_get(&reg, "a");
	cr_assert_not_null(kv);
	cr_assert_eq(kv->vlen, 3);
	cr_assert_eq(memcmp(kv->value, "one", 3), 0);
	cr_assert_lt(kv->create_index, kv->mod_index);
	cr_assert_eq(apply(REG_PUT, 0, 0, "c", "0123456789abcdefX"), CORAL_ETOOBIG);
	cr_assert_eq(apply(REG_PUT, 0, 0, "@members", "x"), CORAL_EINVAL);
	cr_assert_eq(apply(REG_PUT, 0, 0, "", "x"), CORAL_EINVAL);
	cr_assert_eq(apply(REG_PUT, 0, 0, "c", "3"), 0);
	cr_assert_eq(apply(REG_PUT, 0, 0, "d", "4"), 0);
	cr_assert_eq(apply(REG_PUT, 0, 0, "e", "5"), CORAL_EFULL, "max_keys is 4");
	cr_assert_eq(apply(REG_PUT, 0, 0, "d", "44"), 0, "an existing key may change at capacity");
	cr_assert_eq(apply(REG_DEL, 0, 0, "zz", NULL), CORAL_ENOENT);
	cr_assert_eq(apply(REG_DEL, 0, 0, "b", NULL), 0);
	size_t first, n;
	registry_range(&reg, "", &first, &n);
	cr_assert_eq(n, 3);
	cr_assert_str_eq(reg.kv[first].key, "a");
	cr_assert_str_eq(reg.kv[first + 2].key, "d");
	registry_range(&reg, "c", &first, &n);
	cr_assert_eq(n, 1);
}

Test(registry, snapshot_restores_the_same_state)
{
	apply(REG_JOIN, 1, 3, NULL, NULL);
	apply(REG_JOIN, 2, 1, NULL, NULL);
	apply(REG_EVICT, 2, 1, NULL, NULL);
	apply(REG_PUT, 0, 0, "k1", "v1");
	apply(REG_PUT, 0, 0, "k2", "v2");
	uint8_t *buf;
	size_t len;
	cr_assert_eq(registry_snapshot(&reg, &buf, &len), 0);
	struct registry other;
	registry_init(&other, 4, 16);
	cr_assert_eq(registry_restore(&other, buf, len), 0);
	free(buf);
	cr_assert_eq(other.epoch, reg.epoch);
	cr_assert_eq(other.applied, reg.applied);
	cr_assert_eq(other.members[1].incarnation, 3);
	cr_assert_eq(other.members[2].state, CORAL_MEMBER_EVICTED);
	cr_assert_eq(other.nkv, 2);
	cr_assert_eq(memcmp(registry_get(&other, "k2")->value, "v2", 2), 0);
	const struct reg_change *ch[4];
	size_t n;
	cr_assert_not(registry_changes(&other, 0, "", false, ch, 4, &n),
		      "watches from before a snapshot must re-read");
	registry_free(&other);
	cr_assert_eq(registry_restore(&other, (const uint8_t *)"\xff\xff\xff", 3), CORAL_EDECODE);
}

Test(registry, watch_ring_by_prefix_and_members)
{
	apply(REG_PUT, 0, 0, "grd/a", "1");
	uint64_t mark = idx;
	apply(REG_PUT, 0, 0, "rsrc/x", "1");
	apply(REG_PUT, 0, 0, "grd/b", "1");
	apply(REG_JOIN, 3, 1, NULL, NULL);
	const struct reg_change *ch[8];
	size_t n;
	cr_assert(registry_changes(&reg, mark, "grd/", false, ch, 8, &n));
	cr_assert_eq(n, 1);
	cr_assert_str_eq(ch[0]->key, "grd/b");
	cr_assert(registry_changes(&reg, 0, NULL, true, ch, 8, &n));
	cr_assert_eq(n, 1, "one membership change");
}

Test(phi, grows_with_silence_and_crosses_the_threshold_late_enough)
{
	struct phi p;
	cr_assert_eq(phi_init(&p, 100, 25, 100), 0);
	uint64_t t = 1000000000ull;
	cr_assert_eq(phi_value(&p, t), 0);
	for (int i = 0; i < 50; i++, t += 100000000ull)
		phi_heartbeat(&p, t);
	t -= 100000000ull;
	cr_assert_lt(phi_value(&p, t + 100000000ull), 1.0, "on time: no suspicion");
	cr_assert_lt(phi_value(&p, t + 150000000ull), 8.0, "50 ms late: not suspected");
	cr_assert_gt(phi_value(&p, t + 400000000ull), 8.0, "300 ms late: suspected");
	cr_assert_gt(phi_value(&p, t + 2000000000ull), phi_value(&p, t + 400000000ull));
	phi_free(&p);
}

Test(phi, suspects_a_peer_silent_after_its_first_heartbeat)
{
	struct phi p;
	cr_assert_eq(phi_init(&p, 100, 25, 100), 0);
	phi_heartbeat(&p, 1000000000ull);
	cr_assert_gt(phi_value(&p, 3000000000ull), 8.0);
	phi_free(&p);
	cr_assert_eq(phi_init(&p, 1, 25, 100), CORAL_EINVAL);
}

/* SGA tests: create and attach; magic, version and size mismatches refused with a message
 * that says what to do; a child dies holding the proc-table mutex mid-write and the next
 * locker recovers through EOWNERDEAD with the sequence counter repaired. */
#include "errors.h"
#include "proc.h"
#include "sga.h"
#include "sync.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct coral_conf conf;
static struct coral_node_conf *node;

static void setup(void)
{
	cr_assert_eq(coral_conf_load(&conf, CORAL_SRCDIR "/tests/unit/conf/minimal.conf"), 0);
	node = &conf.nodes[0];
	snprintf(node->sga_name, sizeof(node->sga_name), "/coral-unit-%d", (int)getpid());
	/* the grd sections need a latch per bucket: about 16 MiB with the default capacities */
	node->sga_size = 64 << 20;
	coral_sga_destroy(node->sga_name);
}

static void teardown(void)
{
	coral_sga_destroy(node->sga_name);
}

TestSuite(sga, .init = setup, .fini = teardown);

Test(sga, create_attach_sections)
{
	struct coral_sga a, b;
	cr_assert_eq(coral_sga_create(&a, &conf, node), 0, "%s", a.errmsg);
	cr_expect_eq(a.hdr->magic, CORAL_SGA_MAGIC);
	cr_expect_str_eq(a.hdr->cluster, "coral");
	cr_expect_eq(a.hdr->node_id, 7);
	cr_assert_eq(coral_sga_attach(&b, &conf, node, true), 0, "%s", b.errmsg);
	struct coral_proc_table *t = coral_proc_table(&b);
	cr_assert_not_null(t);
	cr_expect_eq(t->nslots, CORAL_NDAEMONS);
	/* a write through one mapping is seen through the other */
	coral_proc_register(coral_proc_table(&a), CORAL_D_LMSD, 4242);
	struct coral_proc_snapshot snap;
	coral_proc_snapshot(t, &snap);
	cr_expect_eq(snap.slot[CORAL_D_LMSD].pid, 4242);
	cr_expect_eq(snap.slot[CORAL_D_LMSD].state, CORAL_PROC_STARTING);
	uint64_t used, cap;
	coral_proc_sga_fill(t, &used, &cap);
	cr_expect_eq(used, 1);
	cr_expect_eq(cap, CORAL_NDAEMONS);
	struct coral_sga c;
	cr_expect_eq(coral_sga_create(&c, &conf, node), CORAL_EEXIST, "only one creator");
	cr_expect(strstr(c.errmsg, "coral-node stop 7") != NULL, "%s", c.errmsg);
	coral_sga_detach(&b);
	coral_sga_detach(&a);
}

/* The supervisor records a fork after the child has run: a child that has registered and
 * become ready already keeps its READY (it used to be put back to STARTING, and the node's
 * start waited out ready_timeout_ms for a readiness that had come). */
Test(sga, a_ready_child_stays_ready_when_its_spawn_is_recorded_late)
{
	struct coral_sga a;
	cr_assert_eq(coral_sga_create(&a, &conf, node), 0, "%s", a.errmsg);
	struct coral_proc_table *t = coral_proc_table(&a);
	coral_proc_register(t, CORAL_D_SMOND, 5151);
	coral_proc_set_state(t, CORAL_D_SMOND, CORAL_PROC_READY, NULL);
	coral_proc_spawned(t, CORAL_D_SMOND, 5151, true);
	struct coral_proc_snapshot snap;
	coral_proc_snapshot(t, &snap);
	cr_expect_eq(snap.slot[CORAL_D_SMOND].state, CORAL_PROC_READY);
	cr_expect_eq(snap.slot[CORAL_D_SMOND].restarts, 1, "the restart is still counted");
	/* the usual order: the fork recorded first, then the child registers */
	coral_proc_spawned(t, CORAL_D_LMSD, 6161, false);
	coral_proc_snapshot(t, &snap);
	cr_expect_eq(snap.slot[CORAL_D_LMSD].state, CORAL_PROC_STARTING);
	cr_expect_eq(snap.slot[CORAL_D_LMSD].pid, 6161);
	coral_sga_detach(&a);
}

Test(sga, attach_missing_says_start_the_node)
{
	struct coral_sga a;
	cr_expect_eq(coral_sga_attach(&a, &conf, node, false), CORAL_ENOTRUNNING);
	cr_expect(strstr(a.errmsg, "coral-node start 7") != NULL, "%s", a.errmsg);
}

Test(sga, version_mismatch_refused)
{
	struct coral_sga a, b;
	cr_assert_eq(coral_sga_create(&a, &conf, node), 0);
	a.hdr->version = CORAL_SGA_VERSION + 1;
	cr_expect_eq(coral_sga_attach(&b, &conf, node, false), CORAL_EVERSION);
	cr_expect(strstr(b.errmsg, "layout version") && strstr(b.errmsg, "coral-node restart 7"),
		  "%s", b.errmsg);
	cr_expect_null(b.base, "a refused attach leaves nothing mapped");
	coral_sga_detach(&a);
}

Test(sga, size_mismatch_refused)
{
	struct coral_sga a, b;
	cr_assert_eq(coral_sga_create(&a, &conf, node), 0);
	node->sga_size = 96 << 20;
	cr_expect_eq(coral_sga_attach(&b, &conf, node, false), CORAL_ESIZE);
	cr_expect(strstr(b.errmsg, "64 MiB") && strstr(b.errmsg, "96 MiB"), "%s", b.errmsg);
	node->sga_size = 64 << 20;
	coral_sga_detach(&a);
}

Test(sga, magic_mismatch_refused)
{
	struct coral_sga a, b;
	cr_assert_eq(coral_sga_create(&a, &conf, node), 0);
	a.hdr->magic = 0x1234;
	cr_expect_eq(coral_sga_attach(&b, &conf, node, false), CORAL_EMAGIC);
	cr_expect(strstr(b.errmsg, "not a Coral SGA") != NULL, "%s", b.errmsg);
	coral_sga_detach(&a);
}

Test(sga, too_small_for_sections)
{
	struct coral_sga a;
	node->sga_size = 1024;
	cr_expect_eq(coral_sga_create(&a, &conf, node), CORAL_ESIZE);
	cr_expect(strstr(a.errmsg, "raise sga_size") != NULL, "%s", a.errmsg);
	cr_expect(!coral_sga_exists(node->sga_name));
	/* the check coral-node -n and every daemon's -n run says what each section needs */
	char err[CORAL_ERRMSG_MAX];
	cr_expect_eq(coral_sga_check(&conf, node, err, sizeof(err)), CORAL_ESIZE);
	cr_expect(strstr(err, "sga_size is 1 KiB") != NULL, "%s", err);
	cr_expect(strstr(err, "cache ") != NULL && strstr(err, "([cache] buffers x [storage] block_size)") != NULL,
		  "%s", err);
	cr_expect(strstr(err, "([grd] directory_entries)") != NULL, "%s", err);
	node->sga_size = 1 << 20;
}

Test(sga, owner_dies_holding_robust_mutex)
{
	struct coral_sga a;
	cr_assert_eq(coral_sga_create(&a, &conf, node), 0);
	struct coral_proc_table *t = coral_proc_table(&a);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* die in the middle of a write: lock held, sequence counter odd */
		coral_proc_lock(t);
		coral_seq_write_begin(&t->slots[CORAL_D_GRDD].seq);
		t->slots[CORAL_D_GRDD].pid = 999;
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st));
	cr_expect_eq(atomic_load(&t->slots[CORAL_D_GRDD].seq.v) & 1u, 1u, "left mid-write");
	int rc = coral_proc_lock(t);
	cr_expect_eq(rc, CORAL_EOWNERDEAD);
	cr_expect_eq(atomic_load(&t->slots[CORAL_D_GRDD].seq.v) & 1u, 0u, "repaired");
	coral_proc_unlock(t);
	/* the mutex is consistent again: an ordinary lock now */
	cr_expect_eq(coral_proc_lock(t), 0);
	coral_proc_unlock(t);
	/* and lock-free readers do not spin forever */
	struct coral_proc_snapshot snap;
	coral_proc_snapshot(t, &snap);
	cr_expect_eq(snap.slot[CORAL_D_GRDD].pid, 999);
	coral_sga_detach(&a);
}

Test(sga, seqcount_reader_sees_whole_writes)
{
	struct coral_sga a;
	cr_assert_eq(coral_sga_create(&a, &conf, node), 0);
	struct coral_proc_table *t = coral_proc_table(&a);
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 1; i <= 20000; i++) {
			char note[32];
			snprintf(note, sizeof(note), "n%d", i);
			coral_proc_lock(t);
			coral_seq_write_begin(&t->slots[0].seq);
			t->slots[0].pid = i;
			t->slots[0].restarts = (uint32_t)i;
			memcpy(t->slots[0].note, note, sizeof(note));
			coral_seq_write_end(&t->slots[0].seq);
			coral_proc_unlock(t);
		}
		_exit(0);
	}
	int torn = 0;
	for (int k = 0; k < 20000; k++) {
		struct coral_proc_snapshot s;
		coral_proc_snapshot(t, &s);
		char want[32];
		snprintf(want, sizeof(want), "n%d", s.slot[0].pid);
		if ((uint32_t)s.slot[0].pid != s.slot[0].restarts ||
		    (s.slot[0].pid && strcmp(want, s.slot[0].note) != 0))
			torn++;
	}
	waitpid(pid, NULL, 0);
	cr_expect_eq(torn, 0);
	coral_sga_detach(&a);
}

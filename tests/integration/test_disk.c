/* A full disk under the shared storage (a small tmpfs mounted for the test): a commit fails
 * fast, within [cache] log_error_ms and a little, with "no space left on the device" and the
 * redo file named, and replicad's log says the same; once space is freed the node goes on
 * by itself, a commit succeeds, and coral-bank's check passes on the same cluster. */
#include "coral_harness.h"

#include "errors.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

static char shared[128];

static void teardown(void)
{
	run("%s -c %s stop all", CORAL_NODE, cl.conf);
	if (shared[0] && umount2(shared, MNT_DETACH) != 0)
		fprintf(stderr, "teardown: umount %s: %m\n", shared);
	cl_teardown();
}

TestSuite(disk, .fini = teardown, .timeout = 240);

Test(disk, a_commit_on_a_full_disk_fails_fast_and_the_node_goes_on_when_space_returns)
{
	cl_prepare("dsk", NULL);
	snprintf(shared, sizeof(shared), "%s/shared", cl.dir);
	cr_assert_eq(run("mkdir -p %s", shared)->code, 0);
	cr_assert_eq(mount("coral-test", shared, "tmpfs", 0, "size=24m"), 0, "mount tmpfs on %s: %m", shared);
	cr_assert_eq(run("%s -c %s start all", CORAL_NODE, cl.conf)->code, 0, "%s", res.out);
	cr_assert_geq(wait_leader(15000, 0xE), 1);
	for (int i = 0; i < 150 && (map_version(1) < 1 || map_version(2) < 1 || map_version(3) < 1); i++)
		usleep(100000);
	cr_assert_eq(run("%s -c %s datafile create disk 64", CORALCTL, cl.conf)->code, 0, "%s", res.out);
	struct coral_session *s;
	cr_assert_eq(coral_session_open(cl.conf, 1, "test", "test_disk", &s), 0, "%s", coral_session_error(s));
	coral_block_release(s, x_change_commit(s, 1, 1, 1));

	/* fill the device; the redo pages already there take a few more commits */
	run("dd if=/dev/zero of=%s/filler bs=1M count=64", shared);
	static uint8_t big[4000];
	int rc = 0;
	uint64_t ms = 0;
	for (int i = 0; i < 200 && rc == 0; i++) {
		struct coral_block *b = NULL;
		cr_assert_eq(coral_block_get(s, 1, 2, CORAL_MODE_X, &b), 0, "%s", coral_session_error(s));
		memset(big, i, sizeof(big));
		rc = coral_block_modify(s, b, 0, big, sizeof(big));
		uint64_t t0 = coral_now_mono_ns();
		if (rc == 0)
			rc = coral_commit(s, NULL);
		ms = (coral_now_mono_ns() - t0) / 1000000;
		coral_block_release(s, b);
	}
	cr_expect_eq(rc, CORAL_ENOSPC, "commit on a full disk: %d %s", rc, coral_session_error(s));
	cr_expect(strstr(coral_session_error(s), "no space left on the device") != NULL, "%s", coral_session_error(s));
	cr_expect(strstr(coral_session_error(s), "redo/thread_1/") != NULL, "the file is not named: %s",
		  coral_session_error(s));
	cr_expect_lt(ms, 4000, "the commit took %llu ms to fail", (unsigned long long)ms);
	fprintf(stderr, "disk: failed after %llu ms: %s\n", (unsigned long long)ms, coral_session_error(s));
	cr_expect_eq(run("grep -c 'No space left on device' %s/node1/node.log", cl.dir)->code, 0,
		     "replicad's log does not say no space");

	/* space returns: the node goes on by itself */
	cr_assert_eq(run("rm -f %s/filler", shared)->code, 0);
	rc = -1;
	for (int i = 0; i < 50 && rc != 0; i++) {
		struct coral_block *b = NULL;
		cr_assert_eq(coral_block_get(s, 1, 3, CORAL_MODE_X, &b), 0, "%s", coral_session_error(s));
		uint64_t v = 3;
		rc = coral_block_modify(s, b, 0, &v, sizeof(v));
		if (rc == 0)
			rc = coral_commit(s, NULL);
		coral_block_release(s, b);
		if (rc != 0)
			usleep(100000);
	}
	cr_expect_eq(rc, 0, "no commit after space came back: %s", coral_session_error(s));
	coral_session_close(s);
	cr_assert_eq(run("%s/tools/coral-bank -c %s --accounts 200 --per-block 8 --sessions 2 --readers 1 --seconds 3 "
			 "--json", CORAL_BUILDDIR, cl.conf)->code, 0, "%s", res.out);
	json_t *j = json_loads(res.out, 0, NULL);
	cr_assert_not_null(j, "%s", res.out);
	cr_expect(json_is_true(json_object_get(j, "ok")), "%s", res.out);
	json_decref(j);
}

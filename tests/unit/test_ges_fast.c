/* The fast path of global enqueues (ges_own.c): a session's own grants, conversions and
 * unlocks in the SGA on resources its node masters; when it must ask lmdd instead (closed,
 * another map, mastered elsewhere, in the way, taken over, full, another session's lock);
 * value blocks; a process that dies holding a bucket's mutex; and threads racing on a few
 * resources with the compatibility of every pair of holders checked throughout. */
#include "errors.h"
#include "ges_own.h"
#include "grd.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

enum { NL, CR, CW, PR, PW, EX };
#define VALBLK CORAL_GES_F_VALBLK
#define NOQUEUE CORAL_GES_F_NOQUEUE
#define SELF 1u

static struct coral_ges_own *own;
static struct coral_grd_map_sga *map;
static size_t own_size, map_size;

static void setup(void)
{
	struct coral_conf cf;
	memset(&cf, 0, sizeof(cf));
	own_size = coral_ges_own_sga_size(&cf);
	/* shared, so that a forked child's death holding a mutex is seen here */
	own = mmap(NULL, own_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(own, MAP_FAILED);
	cr_assert_eq(coral_ges_own_sga_init(own, own_size, &cf, NULL), 0);
	own->next_seq = 1000;
	map_size = coral_grd_map_sga_size(&cf);
	map = calloc(1, map_size);
	cr_assert_eq(coral_grd_map_sga_init(map, map_size, &cf, NULL), 0);
	map->version = 7;
	memset(map->owner, SELF, sizeof(map->owner));
	own->fast_version = 7;
}

static void teardown(void)
{
	munmap(own, own_size);
	free(map);
}

TestSuite(ges_fast, .init = setup, .fini = teardown);

static int lock(const char *name, int mode, unsigned flags, uint32_t session, uint64_t *lkid)
{
	return coral_ges_fast_lock(own, map, SELF, name, strlen(name), mode, flags, session, session, 0, lkid, NULL, NULL);
}

static struct coral_ges_fast_res *entry(const char *name)
{
	uint32_t b = coral_ges_fast_bucket_of(name, strlen(name));
	return coral_ges_fast_find(&coral_ges_fast_buckets(own)[b], name, strlen(name));
}

Test(ges_fast, compatible_modes_granted_others_refused_or_sent_to_lmdd)
{
	uint64_t a, b, c;
	cr_assert_eq(lock("TX-1", PR, 0, 1, &a), 0);
	cr_assert_eq(lock("TX-1", PR, 0, 2, &b), 0, "PR goes with PR");
	cr_assert_eq(lock("TX-1", CR, 0, 3, &c), 0, "CR goes with PR");
	cr_assert_neq(a, b);
	uint64_t x;
	cr_assert_eq(lock("TX-1", EX, NOQUEUE, 4, &x), CORAL_EHELD, "a NOQUEUE request in the way is refused here");
	cr_assert_eq(lock("TX-1", PW, 0, 4, &x), CORAL_GES_SLOW, "one that would wait goes to lmdd");
	cr_assert_eq(entry("TX-1")->nholders, 3);
	cr_assert_eq(own->fast_grants, 3);
	cr_assert_eq(own->fast_refused, 1);
	cr_assert_eq(own->nused, 3);
	struct coral_ges_own_lock *l = coral_ges_own_find(own, a);
	cr_assert_not_null(l);
	cr_assert_eq(l->used, CORAL_GES_OWN_FAST);
	cr_assert_eq(l->mode, PR);
	cr_assert_eq(l->slot, 1);
	cr_assert_eq(coral_ges_fast_unlock(own, a, 1, 1, NULL), 0);
	cr_assert_eq(coral_ges_fast_unlock(own, b, 2, 2, NULL), 0);
	cr_assert_eq(coral_ges_fast_unlock(own, c, 3, 3, NULL), 0);
	cr_assert_null(entry("TX-1"), "a resource with no lock and no value block goes");
	cr_assert_eq(own->nused, 0);
	cr_assert_eq(lock("TX-1", EX, 0, 4, &x), 0, "free again");
}

Test(ges_fast, closed_other_map_elsewhere_go_to_lmdd)
{
	uint64_t k;
	own->fast_version = 0;
	cr_assert_eq(lock("TM-9", EX, 0, 1, &k), CORAL_GES_SLOW, "closed while lmdd rebuilds");
	own->fast_version = 6;
	cr_assert_eq(lock("TM-9", EX, 0, 1, &k), CORAL_GES_SLOW, "open for another map than the session read");
	own->fast_version = 7;
	memset(map->owner, 2, sizeof(map->owner));
	cr_assert_eq(lock("TM-9", EX, 0, 1, &k), CORAL_GES_SLOW, "mastered by node 2");
	memset(map->owner, SELF, sizeof(map->owner));
	cr_assert_eq(lock("TM-9", EX, 0, 1, &k), 0);
	cr_assert_null(entry("TM-8"));
	cr_assert_eq(own->nused, 1);
}

Test(ges_fast, another_sessions_lock_is_not_touched)
{
	uint64_t k;
	cr_assert_eq(lock("R", EX, 0, 1, &k), 0);
	cr_assert_eq(coral_ges_fast_unlock(own, k, 2, 2, NULL), CORAL_GES_SLOW, "lmdd answers it (not this session's)");
	cr_assert_eq(coral_ges_fast_convert(own, k, 2, 2, NL, 0, NULL, NULL, NULL), CORAL_GES_SLOW);
	cr_assert_eq(coral_ges_fast_unlock(own, k + 1, 1, 1, NULL), CORAL_GES_SLOW, "no such lock");
	cr_assert_eq(entry("R")->nholders, 1);
	cr_assert_eq(coral_ges_fast_unlock(own, k, 1, 1, NULL), 0);
}

Test(ges_fast, conversions)
{
	uint64_t a, b;
	cr_assert_eq(lock("C", PR, 0, 1, &a), 0);
	cr_assert_eq(lock("C", PR, 0, 2, &b), 0);
	cr_assert_eq(coral_ges_fast_convert(own, a, 1, 1, EX, NOQUEUE, NULL, NULL, NULL), CORAL_EHELD);
	cr_assert_eq(coral_ges_own_find(own, a)->mode, PR, "a refused conversion keeps its mode");
	cr_assert_eq(coral_ges_fast_convert(own, a, 1, 1, EX, 0, NULL, NULL, NULL), CORAL_GES_SLOW, "it would wait");
	cr_assert_eq(coral_ges_fast_convert(own, b, 2, 2, NL, 0, NULL, NULL, NULL), 0, "down: at once");
	cr_assert_eq(coral_ges_fast_convert(own, a, 1, 1, EX, 0, NULL, NULL, NULL), 0, "up, NL is in nobody's way");
	cr_assert_eq(coral_ges_own_find(own, a)->mode, EX);
	cr_assert_eq(own->fast_converts, 2);
}

Test(ges_fast, value_blocks)
{
	uint8_t v[CORAL_GES_LVB], r[CORAL_GES_LVB];
	bool valid = false;
	uint64_t a, b;
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "V", 1, EX, VALBLK, 1, 1, 0, &a, r, &valid), 0);
	cr_assert(valid, "never written: zeros, valid");
	memset(v, 0xab, sizeof(v));
	cr_assert_eq(coral_ges_fast_convert(own, a, 1, 1, PR, VALBLK, v, r, &valid), 0, "written going down from EX");
	cr_assert(valid);
	cr_assert_eq(memcmp(r, v, sizeof(v)), 0);
	cr_assert_eq(coral_ges_fast_unlock(own, a, 1, 1, NULL), 0);
	cr_assert_not_null(entry("V"), "kept: its value block has a value");
	memset(r, 0, sizeof(r));
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "V", 1, PW, VALBLK, 2, 2, 0, &b, r, &valid), 0);
	cr_assert(valid);
	cr_assert_eq(memcmp(r, v, sizeof(v)), 0, "the next holder reads it");
	memset(v, 0xcd, sizeof(v));
	cr_assert_eq(coral_ges_fast_unlock(own, b, 2, 2, v), 0, "written by a PW holder's unlock");
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "V", 1, PR, VALBLK, 3, 3, 0, &a, r, &valid), 0);
	cr_assert_eq(memcmp(r, v, sizeof(v)), 0);
	cr_assert_eq(coral_ges_fast_unlock(own, a, 3, 3, v), 0, "(a PR holder's value is not written)");
	/* an EX holder lost without writing: not valid until written again */
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "V", 1, EX, VALBLK, 4, 4, 0, &a, r, &valid), 0);
	uint32_t bk = coral_ges_fast_bucket_of("V", 1);
	coral_ges_fast_lock_bucket(own, bk);
	coral_ges_fast_drop(own, coral_ges_own_find(own, a), true);
	coral_ges_fast_unlock_bucket(own, bk);
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "V", 1, PR, VALBLK, 5, 5, 0, &a, r, &valid), 0);
	cr_assert(!valid, "its value block is not valid");
}

Test(ges_fast, bounds_send_to_lmdd)
{
	uint64_t k;
	for (uint32_t s = 1; s <= CORAL_GES_FAST_HOLDERS; s++)
		cr_assert_eq(lock("MANY", NL, 0, s, &k), 0);
	cr_assert_eq(lock("MANY", NL, 0, 99, &k), CORAL_GES_SLOW, "a resource's fast holders are bounded");
	/* a bucket's entries are bounded: names that fall in one bucket, past its ways */
	char names[CORAL_GES_FAST_WAYS + 1][16];
	int n = 0;
	uint32_t want = coral_ges_fast_bucket_of("W0", 2);
	for (int i = 0; n <= CORAL_GES_FAST_WAYS && i < 10000000; i++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "W%d", i);
		if (coral_ges_fast_bucket_of(nm, strlen(nm)) == want)
			strcpy(names[n++], nm);
	}
	cr_assert_eq(n, CORAL_GES_FAST_WAYS + 1);
	for (int i = 0; i < CORAL_GES_FAST_WAYS; i++)
		cr_assert_eq(lock(names[i], EX, 0, 1, &k), 0);
	cr_assert_eq(lock(names[CORAL_GES_FAST_WAYS], EX, 0, 1, &k), CORAL_GES_SLOW, "no entry left in its bucket");
	/* lmdd's overflow and slow entries stop new fast grants */
	struct coral_ges_fast_res *e = entry(names[0]);
	e->slow = 1;
	cr_assert_eq(lock(names[0], NL, 0, 2, &k), CORAL_GES_SLOW, "lmdd has it");
	coral_ges_fast_buckets(own)[coral_ges_fast_bucket_of("X", 1)].overflow = 1;
	cr_assert_eq(lock("X", NL, 0, 2, &k), CORAL_GES_SLOW, "lmdd may have it");
}

Test(ges_fast, a_process_dying_in_a_bucket_leaves_it_dirty)
{
	uint32_t b = coral_ges_fast_bucket_of("D", 1);
	pid_t pid = fork();
	if (pid == 0) {
		coral_ges_fast_lock_bucket(own, b);
		_exit(0);  /* dies holding it */
	}
	int st;
	waitpid(pid, &st, 0);
	uint64_t k;
	cr_assert_eq(lock("D", EX, 0, 1, &k), CORAL_GES_SLOW, "nothing fast in a dirty bucket");
	cr_assert_eq(coral_ges_fast_buckets(own)[b].dirty, 1);
	coral_ges_fast_buckets(own)[b].dirty = 0;  /* (lmdd's repair) */
	cr_assert_eq(lock("D", EX, 0, 1, &k), 0);
}

/* Threads lock and unlock a few resources in random modes; each holder checks, while it
 * holds, that every other holder's mode goes with its own. */
#define RACE_NAMES 3
static _Atomic int holding[RACE_NAMES][6];
static _Atomic int bad, granted_total;

static void *racer(void *arg)
{
	uint32_t session = (uint32_t)(uintptr_t)arg;
	unsigned seed = session * 2654435761u;
	for (int i = 0; i < 20000; i++) {
		int r = rand_r(&seed) % RACE_NAMES, mode = rand_r(&seed) % 6;
		char name[8];
		snprintf(name, sizeof(name), "RACE%d", r);
		uint64_t k;
		int rc = coral_ges_fast_lock(own, map, SELF, name, strlen(name), mode, NOQUEUE, session, session, 0, &k, NULL,
					     NULL);
		if (rc != 0)
			continue;
		atomic_fetch_add(&holding[r][mode], 1);
		for (int m = 0; m < 6; m++) {
			int n = atomic_load(&holding[r][m]) - (m == mode);
			if (n > 0 && !coral_ges_compat_matrix[mode][m])
				atomic_fetch_add(&bad, 1);
		}
		atomic_fetch_add(&granted_total, 1);
		atomic_fetch_sub(&holding[r][mode], 1);
		if (coral_ges_fast_unlock(own, k, session, session, NULL) != 0)
			atomic_fetch_add(&bad, 1);
	}
	return NULL;
}

Test(ges_fast, racing_threads_hold_only_compatible_modes)
{
	pthread_t t[4];
	for (uintptr_t i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, racer, (void *)(i + 1));
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(bad, 0, "%d incompatible holds or failed unlocks", bad);
	cr_assert_gt(granted_total, 1000);
	cr_assert_eq(own->nused, 0, "every lock freed");
	for (int r = 0; r < RACE_NAMES; r++) {
		char name[8];
		snprintf(name, sizeof(name), "RACE%d", r);
		cr_assert_null(entry(name));
	}
}

Test(ges_fast, a_new_resource_in_a_bucket_from_a_lost_node_has_no_valid_value)
{
	memset(map->lost_owner, 3, sizeof(map->lost_owner));
	uint8_t r[CORAL_GES_LVB];
	bool valid = true;
	uint64_t k;
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "L", 1, PR, VALBLK, 1, 1, 0, &k, r, &valid), 0);
	cr_expect_not(valid, "zeros taken for the value a lost master may have had");
	uint64_t x;
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "L2", 2, EX, VALBLK | NOQUEUE, 1, 1, 0, &x, r, &valid), 0);
	cr_assert_eq(coral_ges_fast_unlock(own, x, 1, 1, (uint8_t[CORAL_GES_LVB]){7}), 0);
	cr_assert_eq(coral_ges_fast_lock(own, map, SELF, "L2", 2, PR, VALBLK, 2, 2, 0, &x, r, &valid), 0);
	cr_expect(valid && r[0] == 7, "written again: valid");
}

/* The buffer cache's session slots: lmsd's reaper releases the pins of a session whose
 * process died and gives back its place among the spinners, keeps the slots of live
 * processes, and takes a live pid that names a newer process (the pid reused) for the dead
 * one it is. The cache lives in shared anonymous memory, as in the SGA, so that a forked
 * child can claim a slot and die. */
#include "bufcache.h"
#include "cache.h"
#include "errors.h"
#include "storage.h"
#include "util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NBUF 8
#define BS 4096
#define NCLONE 2

static struct coral_cache *c;
static size_t csize;

static void setup(void)
{
	csize = coral_cache_size(NBUF, BS, NCLONE);
	c = mmap(NULL, csize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(c, MAP_FAILED);
	cr_assert_eq(coral_cache_init(c, csize, NBUF, BS, NCLONE), 0);
}

static void teardown(void)
{
	munmap(c, csize);
}

TestSuite(sessions, .init = setup, .fini = teardown);

/* As a session does under the block's latch: pin buffer i of (1, block) and record it. */
static void pin_recorded(int slot, int k, uint32_t i, uint64_t block, bool x)
{
	struct coral_buf *b = coral_cache_buf(c, i);
	uint32_t ch = coral_cache_chain(c, 1, block);
	coral_cache_lock(c, ch);
	b->file = 1;
	b->block = block;
	b->flags = CORAL_BUFF_VALID;
	atomic_fetch_add(&b->pins, x ? CORAL_BUF_XPIN : 1);
	atomic_store(&coral_cache_sess(c, (uint32_t)slot)->pins[k], (i + 1) | (x ? CORAL_PINREC_X : 0));
	coral_cache_unlock(c, ch);
}

static void spin_on(int slot)
{
	atomic_fetch_add(&c->spinners, 1);
	atomic_store(&coral_cache_sess(c, (uint32_t)slot)->spinning, 1);
}

Test(sessions, pins_and_spin_of_a_dead_process_are_released_live_ones_kept)
{
	int mine = coral_cache_sess_claim(c, 7);
	cr_assert_geq(mine, 0);
	pin_recorded(mine, 0, 0, 10, false);
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		int s = coral_cache_sess_claim(c, 8);
		if (s < 0)
			_exit(2);
		pin_recorded(s, 0, 1, 11, true);
		pin_recorded(s, 5, 2, 12, false);
		spin_on(s);
		_exit(0); /* without releasing anything, as a killed process */
	}
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_eq(atomic_load(&c->spinners), 1);

	uint64_t pins = 0;
	cr_assert_eq(lmsd_sess_reap(c, &pins), 1, "one session died");
	cr_assert_eq(pins, 2);
	cr_assert_eq(atomic_load(&coral_cache_buf(c, 1)->pins), 0, "the dead session's X pin is gone");
	cr_assert_eq(atomic_load(&coral_cache_buf(c, 2)->pins), 0, "and its shared pin");
	cr_assert_eq(atomic_load(&coral_cache_buf(c, 0)->pins), 1, "a live session's pin stays");
	cr_assert_eq(atomic_load(&c->spinners), 0, "the dead session's place among the spinners is given back");
	cr_assert_eq(atomic_load(&coral_cache_sess(c, (uint32_t)mine)->pid), (int32_t)getpid());
	cr_assert_eq(atomic_load(&c->st.dead_sessions), 1);
	cr_assert_eq(atomic_load(&c->st.dead_pins), 2);

	/* nothing more to do on a second pass */
	cr_assert_eq(lmsd_sess_reap(c, &pins), 0);
	cr_assert_eq(pins, 0);
}

Test(sessions, a_reused_pid_does_not_keep_the_dead_sessions_pins)
{
	int s = coral_cache_sess_claim(c, 9);
	cr_assert_geq(s, 0);
	struct coral_sess_slot *ss = coral_cache_sess(c, (uint32_t)s);
	uint64_t start = coral_pid_start(getpid());
	cr_assert(start != 0 && start != UINT64_MAX, "this process's start time from /proc");
	cr_assert_eq(ss->start, start);
	pin_recorded(s, 3, 4, 20, true);
	uint64_t pins = 0;
	cr_assert_eq(lmsd_sess_reap(c, &pins), 0, "the slot's process is alive");
	/* the slot as an earlier process with this pid would have left it */
	ss->start = start - 1;
	cr_assert_eq(lmsd_sess_reap(c, &pins), 1, "the pid names another process now");
	cr_assert_eq(pins, 1);
	cr_assert_eq(atomic_load(&coral_cache_buf(c, 4)->pins), 0);
	cr_assert_eq(atomic_load(&ss->pid), 0, "the slot is free again");
}

Test(sessions, a_slot_half_claimed_by_a_dead_process_is_freed)
{
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0)
		_exit(0);
	cr_assert_eq(waitpid(child, NULL, 0), child);
	struct coral_sess_slot *a = coral_cache_sess(c, 0), *b = coral_cache_sess(c, 1);
	atomic_store(&a->pid, -(int32_t)child);
	atomic_store(&b->pid, -(int32_t)getpid()); /* claiming now: left alone */
	uint64_t pins = 0;
	lmsd_sess_reap(c, &pins);
	cr_assert_eq(atomic_load(&a->pid), 0);
	cr_assert_eq(atomic_load(&b->pid), -(int32_t)getpid());
	cr_assert_eq(coral_cache_sess_claim(c, 1), 0, "the freed slot is claimed again");
}

/* A live session revoked by the resource manager: nothing is reclaimed while a call of it is
 * under way; then its pins go as a dead process's would, but the slot stays its own (its calls
 * fail) until it closes; closed before the reclaim, the reaper frees it when done. A transaction
 * left open is smond's (txn_dead), as for a dead process. */
Test(sessions, a_revoked_session_is_reclaimed_once_no_call_is_under_way_and_freed_at_its_close)
{
	int s = coral_cache_sess_claim(c, 21);
	cr_assert_geq(s, 0);
	struct coral_sess_slot *ss = coral_cache_sess(c, (uint32_t)s);
	pin_recorded(s, 0, 5, 30, true);
	cr_assert_eq(coral_cache_sess_enter(c, s), 0, "a call enters");
	cr_assert_eq(coral_cache_sess_revoke(c, s, 99), CORAL_ENOENT, "not that session");
	cr_assert_eq(coral_cache_sess_revoke(c, s, 21), 0);
	uint64_t pins = 0;
	cr_assert_eq(lmsd_sess_reap(c, &pins), 0);
	cr_assert_eq(atomic_load(&coral_cache_buf(c, 5)->pins), CORAL_BUF_XPIN, "kept while the call is under way");
	cr_assert_eq(coral_cache_sess_enter(c, s), CORAL_ECANCELED, "a new call is refused");
	cr_assert(!lmsd_sess_revoke_pending(c), "nothing to reclaim while a call is under way");
	coral_cache_sess_leave(c, s);
	cr_assert(lmsd_sess_revoke_pending(c), "lmsd's quick look sees it");
	cr_assert_eq(lmsd_sess_reap(c, &pins), 0, "not counted as a dead process");
	cr_assert(!lmsd_sess_revoke_pending(c), "reclaimed: nothing more");
	cr_assert_eq(pins, 1);
	cr_assert_eq(atomic_load(&coral_cache_buf(c, 5)->pins), 0, "its X pin is released");
	cr_assert_eq(atomic_load(&ss->pid), (int32_t)getpid(), "the slot stays the session's");
	cr_assert_eq(atomic_load(&ss->revoked), CORAL_REVOKE_ASKED | CORAL_REVOKE_DONE);
	cr_assert_eq(atomic_load(&c->st.revoked), 1);
	cr_assert_eq(lmsd_sess_reap(c, &pins), 0);
	cr_assert_eq(pins, 0, "nothing twice");
	coral_cache_sess_free(c, s);
	cr_assert_eq(atomic_load(&ss->pid), 0, "freed by its close");

	/* closed before the reclaim: freed by the reaper; an open transaction is left to smond */
	s = coral_cache_sess_claim(c, 22);
	ss = coral_cache_sess(c, (uint32_t)s);
	cr_assert_eq(atomic_load(&ss->revoked), 0, "a new claim starts clean");
	pin_recorded(s, 0, 6, 31, true);
	atomic_store(&ss->txn_first, 5);
	cr_assert_eq(coral_cache_sess_revoke(c, s, 22), 0);
	coral_cache_sess_free(c, s);
	cr_assert_eq(atomic_load(&ss->pid), (int32_t)getpid(), "not freed before the reclaim");
	cr_assert_eq(lmsd_sess_reap(c, &pins), 0);
	cr_assert_eq(atomic_load(&ss->txn_dead), 1, "its transaction is smond's");
	cr_assert_eq(atomic_load(&coral_cache_buf(c, 6)->pins), CORAL_BUF_XPIN, "its blocks stay pinned meanwhile");
	coral_cache_sess_revoke_done(ss);  /* as smond does once it has taken it back */
	cr_assert_eq(atomic_load(&ss->pid), 0, "freed: its session had closed");
}

/* The revocation's handshake under a race, seeded: a thread enters and leaves calls as fast as
 * it can, marking each one under way; the reaper's side asks for the revocation at a random
 * moment and then reclaims as soon as the slot is revocable. It must never find a call under
 * way when it may reclaim, and no call may enter after it did. */
static _Atomic int call_inside, call_entered_after, stop_calls;
static _Atomic int reclaimed;
static _Atomic long calls_made;
static int race_slot;

static void *caller(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop_calls)) {
		if (coral_cache_sess_enter(c, race_slot) != 0)
			continue;
		atomic_store(&call_inside, 1);
		atomic_fetch_add(&calls_made, 1);
		if (atomic_load(&reclaimed))
			atomic_store(&call_entered_after, 1);
		atomic_store(&call_inside, 0);
		coral_cache_sess_leave(c, race_slot);
	}
	return NULL;
}

Test(sessions, a_call_under_way_is_never_reclaimed_and_none_enters_after)
{
	unsigned seed = 12345;
	for (int round = 0; round < 200; round++) {
		race_slot = coral_cache_sess_claim(c, (uint32_t)(100 + round));
		cr_assert_geq(race_slot, 0);
		atomic_store(&stop_calls, 0);
		atomic_store(&reclaimed, 0);
		pthread_t t;
		atomic_store(&calls_made, 0);
		pthread_create(&t, NULL, caller, NULL);
		while (atomic_load(&calls_made) < 100)
			;  /* the caller is running */
		for (int k = rand_r(&seed) % 2000; k > 0; k--)
			__asm__ volatile("" ::: "memory");
		cr_assert_eq(coral_cache_sess_revoke(c, race_slot, (uint32_t)(100 + round)), 0);
		struct coral_sess_slot *ss = coral_cache_sess(c, (uint32_t)race_slot);
		while (!coral_cache_sess_revocable(ss))
			;
		cr_assert_eq(atomic_load(&call_inside), 0, "round %d: a call was under way at the reclaim", round);
		atomic_store(&reclaimed, 1);
		for (int k = 0; k < 20000; k++)
			__asm__ volatile("" ::: "memory");
		atomic_store(&stop_calls, 1);
		pthread_join(t, NULL);
		cr_assert_eq(atomic_load(&call_entered_after), 0, "round %d: a call entered after the reclaim", round);
		coral_cache_sess_revoke_done(ss);
		coral_cache_sess_free(c, race_slot);
		cr_assert_eq(atomic_load(&ss->pid), 0);
	}
}

/* Consistent images (bufcache.h): made from the buffer before a transaction's first change,
 * read while the X pin lasts, given back with it (also when the reaper drops a dead
 * session's pin); with every one in use a change goes without one (counted) and readers
 * find none; one lost by a process that died while taking it is given back by the sweep. */
static uint64_t word_of(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p + CORAL_BLOCK_HDR, sizeof(v));
	return v;
}

static void set_word(uint32_t i, uint64_t v)
{
	memcpy(coral_cache_data(c, i) + CORAL_BLOCK_HDR, &v, sizeof(v));
}

static int make_locked(uint32_t i, uint64_t block)
{
	uint32_t ch = coral_cache_chain(c, 1, block);
	coral_cache_lock(c, ch);
	int rc = coral_cache_clone_make(c, coral_cache_buf(c, i));
	coral_cache_unlock(c, ch);
	return rc;
}

Test(sessions, a_changed_block_keeps_its_consistent_image_until_its_x_pin_goes)
{
	int slot = coral_cache_sess_claim(c, 7);
	cr_assert_geq(slot, 0);
	for (uint32_t i = 0; i < 3; i++) {
		pin_recorded(slot, (int)i, i, 10 + i, true);
		coral_cache_buf(c, i)->scn = 100 + i;
		set_word(i, 1000 + i);
	}
	uint64_t scn = 0;
	cr_assert_null(coral_cache_clone_of(c, coral_cache_buf(c, 0), &scn), "none before a change");
	cr_assert_eq(make_locked(0, 10), 0);
	cr_assert_eq(make_locked(0, 10), 0, "a second change keeps the first image");
	set_word(0, 2000); /* the change */
	coral_cache_buf(c, 0)->scn = 200;
	const uint8_t *img = coral_cache_clone_of(c, coral_cache_buf(c, 0), &scn);
	cr_assert_not_null(img);
	cr_expect_eq(word_of(img), 1000, "the image before the change");
	cr_expect_eq(scn, 100);
	cr_assert_eq(make_locked(1, 11), 0);
	/* two in the pool: the third change goes without one */
	cr_expect_eq(make_locked(2, 12), CORAL_EFULL);
	cr_expect_eq(atomic_load(&c->st.clone_full), 1);
	cr_expect_null(coral_cache_clone_of(c, coral_cache_buf(c, 2), &scn));
	cr_expect_eq(atomic_load(&c->clones_used), 2);
	/* the transaction ends: the image goes with the pin, and the next change may have it */
	coral_cache_unpin_rec(c, coral_cache_buf(c, 0), true, &coral_cache_sess(c, (uint32_t)slot)->pins[0]);
	cr_expect_eq(coral_cache_buf(c, 0)->clone, 0);
	cr_expect_eq(atomic_load(&c->clones_used), 1);
	cr_expect_eq(make_locked(2, 12), 0);
	/* a shared pin's end leaves the image alone */
	pin_recorded(slot, 5, 3, 13, false);
	coral_cache_unpin_rec(c, coral_cache_buf(c, 3), false, &coral_cache_sess(c, (uint32_t)slot)->pins[5]);
	cr_expect_eq(atomic_load(&c->clones_used), 2);
	/* the process dies: the reaper drops its X pins, and their images with them */
	atomic_store(&coral_cache_sess(c, (uint32_t)slot)->pid, 999999);
	uint64_t pins = 0;
	cr_expect_eq(lmsd_sess_reap(c, &pins), 1);
	cr_expect_eq(atomic_load(&c->clones_used), 0);
	cr_expect_eq(coral_cache_buf(c, 1)->clone, 0);
	cr_expect_eq(coral_cache_buf(c, 2)->clone, 0);
	cr_expect_eq(coral_cache_clone_sweep(c), 0, "nothing lost");
}

Test(sessions, a_consistent_image_lost_in_a_latch_hold_is_given_back_by_the_sweep)
{
	int slot = coral_cache_sess_claim(c, 8);
	pin_recorded(slot, 0, 4, 20, true);
	cr_assert_eq(make_locked(4, 20), 0);
	cr_expect_eq(coral_cache_clone_sweep(c), 0, "in use: kept");
	/* a process that died between taking the image and marking the buffer */
	coral_cache_buf(c, 4)->clone = 0;
	cr_expect_eq(coral_cache_clone_sweep(c), 1);
	cr_expect_eq(atomic_load(&c->clones_used), 0);
	cr_expect_eq(atomic_load(&c->st.clone_leaks), 1);
	cr_expect_eq(make_locked(4, 20), 0, "and taken again");
}

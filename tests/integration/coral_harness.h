/* What the integration tests that link libcoral share on top of raft_harness.h: a session
 * that takes a block in X, changes its first 8 bytes and commits, the block left pinned.
 * Header-only, like the others. */
#ifndef CORAL_TEST_CORAL_HARNESS_H
#define CORAL_TEST_CORAL_HARNESS_H

#include "coral.h"
#include "raft_harness.h"

static inline struct coral_block *x_change_commit(struct coral_session *s, uint32_t fid, uint64_t block,
						  uint64_t v)
{
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, block, CORAL_MODE_X, &b), 0, "%s", coral_session_error(s));
	cr_assert_eq(coral_block_modify(s, b, 0, &v, sizeof(v)), 0, "%s", coral_session_error(s));
	cr_assert_eq(coral_commit(s, NULL), 0, "%s", coral_session_error(s));
	return b;
}

#endif

/* What the integration tests that link libcoral share on top of raft_harness.h: a session
 * that takes a block in X, changes its first 8 bytes and commits, the block left pinned; a
 * CR read of a block's first 8 bytes.
 * Header-only, like the others. */
#ifndef CORAL_TEST_CORAL_HARNESS_H
#define CORAL_TEST_CORAL_HARNESS_H

#include "coral.h"
#include "raft_harness.h"

#include <string.h>

static inline struct coral_block *x_change_commit(struct coral_session *s, uint32_t fid, uint64_t block,
						  uint64_t v)
{
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, block, CORAL_MODE_X, &b), 0, "%s", coral_session_error(s));
	cr_assert_eq(coral_block_modify(s, b, 0, &v, sizeof(v)), 0, "%s", coral_session_error(s));
	cr_assert_eq(coral_commit(s, NULL), 0, "%s", coral_session_error(s));
	return b;
}

/* A CR copy of block 0 of file fid: its first 8 bytes. */
static inline uint64_t cr_read(struct coral_session *s, uint32_t fid)
{
	struct coral_block *b = NULL;
	cr_assert_eq(coral_block_get(s, fid, 0, CORAL_MODE_CR, &b), 0, "%s", coral_session_error(s));
	uint64_t v;
	memcpy(&v, coral_block_data(b), sizeof(v));
	coral_block_release(s, b);
	return v;
}

#endif

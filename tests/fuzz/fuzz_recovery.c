/* Instance recovery (smond/recovery.c) over redo threads made of the input: every record is
 * well formed (the real appender writes it, so the checksums hold and recovery's own logic is
 * what gets explored), but its type, flags, session, block, offset, length, SCN and bytes are
 * the fuzzer's, in two threads. Then every block of the recovery set is recovered on a small
 * image, and:
 *  - recovery_apply gives 0 or CORAL_ECORRUPT (a change that does not fit), and leaves the
 *    image as it was when it refuses;
 *  - applying it again to what it gave changes nothing (recovery may be repeated);
 *  - a block outside the recovery set is not named by it. */
#include "fuzz.h"

#include "errors.h"
#include "recovery.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define BS 256u
#define SEG (1u << 20)
#define RING (1u << 20)

/* A thread's ring, made once and started afresh for every input. */
static struct coral_redo *ring_new(uint32_t thread)
{
	static struct coral_redo *rings[3];
	size_t sz = coral_redo_size(RING);
	if (rings[thread] == NULL && (rings[thread] = aligned_alloc(64, (sz + 63) & ~(size_t)63)) == NULL)
		abort();
	struct coral_redo *r = rings[thread];
	if (coral_redo_init(r, sz, RING, thread) != 0)
		abort();
	atomic_store(&r->writer_pid, 1);
	return r;
}

static void write_thread(struct coral_redo *r, uint32_t thread, const char *shared)
{
	char dir[300], path[400];
	coral_redo_thread_dir(shared, thread, dir, sizeof(dir));
	coral_mkdir_p(dir, 0750);
	coral_redo_seg_path(dir, 0, path, sizeof(path));
	uint64_t end = atomic_load(&r->tail);
	uint8_t *all = malloc(end + 1);
	coral_redo_ring_read(r, 0, all, end);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	if (fd < 0 || write(fd, all, end) != (ssize_t)end)
		abort();
	close(fd);
	free(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char shared[300];
	snprintf(shared, sizeof(shared), "%s/shared", fuzz_tmpdir());
	struct coral_redo *th[2] = {ring_new(1), ring_new(2)};
	uint64_t scn = 1;
	/* a record: thread+type+flags, session, block, offset (2), length, SCN step, then
	 * 2 x length bytes (new, old) */
	size_t at = 0;
	while (at + 8 <= len && atomic_load(&th[0]->tail) < RING / 2 && atomic_load(&th[1]->tail) < RING / 2) {
		const uint8_t *h = data + at;
		uint32_t t = h[0] & 1;
		uint8_t type = (h[0] >> 1) & 3 ? ((h[0] >> 1) & 1 ? CORAL_REDO_CHANGE : CORAL_REDO_COMMIT) : 7;
		uint8_t flags = (uint8_t)((h[0] >> 3) & (CORAL_REDO_F_BEGIN | CORAL_REDO_F_UNDO));
		uint32_t session = h[1] & 3, block = h[2] & 7;
		uint32_t off = (uint32_t)h[3] | (uint32_t)(h[4] & 1) << 8;
		uint32_t n = h[5] & 31;
		scn += h[6] & 3; /* equal SCNs too */
		at += 8;
		if (at + 2 * n > len)
			break;
		uint64_t lsn;
		const uint8_t *bytes = data + at, *old = data + at + n;
		at += 2 * n;
		if (coral_redo_append(th[t], type, flags, scn, session, 1, block, off, type == CORAL_REDO_CHANGE ? bytes : NULL,
				      type == CORAL_REDO_CHANGE && (flags & CORAL_REDO_F_UNDO) ? old : NULL,
				      type == CORAL_REDO_CHANGE ? n : 0, 0, &lsn) != 0)
			break;
	}
	write_thread(th[0], 1, shared);
	write_thread(th[1], 2, shared);
	struct recovery *r = recovery_new(1 << 24);
	char why[256];
	uint64_t end;
	for (uint32_t t = 1; t <= 2; t++)
		if (recovery_read_thread(r, shared, t, SEG, 0, &end, why, sizeof(why)) < 0)
			abort(); /* the appender's records are whole: reading them cannot fail */
	uint64_t nb = recovery_plan(r);
	for (uint64_t i = 0; i < nb; i++) {
		uint32_t f;
		uint64_t b;
		recovery_block(r, i, &f, &b);
		if (f != 1 || b > 7 || !recovery_needs(r, f, b))
			abort();
		uint8_t img[BS], before[BS], again[BS];
		coral_block_format(img, BS, 1, b, 0);
		memset(img + CORAL_BLOCK_HDR, 0x5a, BS - CORAL_BLOCK_HDR);
		memcpy(before, img, BS);
		int rc = recovery_apply(r, i, img, BS);
		if (rc != 0 && rc != CORAL_ECORRUPT)
			abort();
		if (rc != 0) {
			if (memcmp(img, before, BS) != 0)
				abort(); /* a refused block is left alone */
			continue;
		}
		memcpy(again, img, BS);
		if (recovery_apply(r, i, again, BS) != 0 || memcmp(again, img, BS) != 0)
			abort(); /* recovery repeated changes nothing */
	}
	if (recovery_needs(r, 2, 0))
		abort();
	recovery_free(r);
	return 0;
}

/* lmsd's messages: decoded and handed to a GCS core on the heap (a small buffer cache and a
 * directory) from a node the first byte picks, as lmsd's interconnect does. The core lives
 * for the whole run, so that inputs meet the waits, operations and images earlier ones left;
 * every input also starts a session's request of its own. */
#include "fuzz.h"

#include "gcs.h"
#include "storage.h"

#define BS 512

static int op_send(void *a, uint32_t to, uint8_t t, const uint8_t *b, size_t l) { (void)a, (void)to, (void)t, (void)b, (void)l; return 0; }
static uint32_t op_master(void *a, uint32_t f, uint64_t b, uint64_t *v) { (void)a, (void)f; *v = 1; return 1 + (uint32_t)(b % 3); }
static int op_read(void *a, uint32_t f, uint64_t b, uint8_t *d) { (void)a; coral_block_format(d, BS, f, b, 0); return 0; }
static int op_write(void *a, uint32_t f, uint64_t b, uint8_t *d, uint64_t s) { (void)a, (void)f, (void)b, (void)d, (void)s; return 0; }
static int op_sync(void *a) { (void)a; return 0; }
static int op_force(void *a, uint64_t l) { (void)a, (void)l; return 0; }
static void op_done(void *a, uint64_t c, int code, uint32_t b, int p, int s) { (void)a, (void)c, (void)code, (void)b, (void)p, (void)s; }

static struct gcs_core *make_core(void)
{
	size_t cs = coral_cache_size(8, BS, 4), ds = coral_grd_dir_size(64);
	struct coral_cache *cache = aligned_alloc(64, (cs + 63) & ~(size_t)63);
	struct coral_grd_dir *dir = aligned_alloc(64, (ds + 63) & ~(size_t)63);
	coral_cache_init(cache, cs, 8, BS, 4);
	coral_grd_dir_init(dir, ds, 64);
	struct gcs_ops ops = {.send = op_send, .master = op_master, .read = op_read, .write = op_write, .sync = op_sync,
			      .log_force = op_force, .done = op_done};
	return gcs_core_new(1, cache, dir, &ops, 20, 1000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct gcs_core *c;
	static uint64_t now = 1000000, cookie;
	if (c == NULL)
		c = make_core();
	if (len < 1)
		return 0;
	now += 5000;
	gcs_core_clock(c, now);
	/* a session's request for one of a few blocks, for the messages to meet */
	gcs_core_get(c, 1, data[0] >> 4, (data[0] & 8) ? CORAL_BL_X : CORAL_BL_S, ++cookie);
	gcs_core_recv(c, 1 + data[0] % 3, GCS_NET_MSG, data + 1, len - 1);
	gcs_core_clock(c, now + 2500);
	gcs_core_tick(c);
	return 0;
}

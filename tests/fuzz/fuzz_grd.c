/* grdd's messages: every type decoded (the first byte picks the type, the second the sender)
 * and handed to a core on the heap that leads two members with a map applied, as grdd's
 * interconnect does; and the bytes as a map record read from raftd's store. The core lives
 * for the whole run (made once: a map's publication is costly), so that inputs also meet the
 * state earlier ones left. */
#include "fuzz.h"

#include "core.h"
#include "grd.h"

static int op_send(void *a, uint32_t to, uint8_t t, const uint8_t *b, size_t l) { (void)a, (void)to, (void)t, (void)b, (void)l; return 0; }
static int op_store(void *a, const uint8_t *b, size_t l, uint64_t e, uint64_t c) { (void)a, (void)b, (void)l, (void)e, (void)c; return 0; }
static void op_answer(void *a, uint64_t c, int code, const char *e, const struct grd_answer *r) { (void)a, (void)c, (void)code, (void)e, (void)r; }
static void op_remastered(void *a, uint64_t c, int code, const char *e, const Coral__GrdRemasterReply *r) { (void)a, (void)c, (void)code, (void)e, (void)r; }

static struct grd_core *make_core(void)
{
	static struct coral_grd_conf gc = {.directory_entries = 64, .held_entries = 64, .max_overrides = 8,
					   .affinity = 1, .affinity_threshold = 2, .affinity_ratio = 1,
					   .affinity_window_ms = 1000, .remaster_bandwidth = 1 << 20,
					   .freeze_timeout_ms = 1000, .request_timeout_ms = 1000, .max_pending = 16};
	struct coral_conf cf;
	memset(&cf, 0, sizeof(cf));
	cf.grd = gc;
	size_t msz = coral_grd_map_sga_size(&cf), dsz = coral_grd_dir_size(64);
	struct coral_grd_map_sga *map = calloc(1, msz);
	struct coral_grd_dir *dir = calloc(1, dsz), *held = calloc(1, dsz);
	coral_grd_map_sga_init(map, msz, &cf, NULL);
	coral_grd_dir_init(dir, dsz, 64);
	coral_grd_dir_init(held, dsz, 64);
	struct grd_core_ops ops = {op_send, op_store, op_answer, op_remastered, NULL, NULL};
	struct grd_core *c = grd_core_new(1, &gc, map, dir, held, &ops);
	struct grd_member m[2] = {{1, 1, 1, true, true}, {2, 1, 1, true, true}};
	grd_core_set_cluster(c, 1, false, m, 2);
	uint32_t members[2] = {1, 2};
	Coral__GrdMapRecord r = CORAL__GRD_MAP_RECORD__INIT;
	r.version = 1;
	r.members = members;
	r.n_members = 2;
	r.coordinator = 1;
	size_t rlen;
	uint8_t *rbuf = grd_record_pack(&r, &rlen);
	grd_core_apply(c, rbuf, rlen, 1);
	free(rbuf);
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct grd_core *c;
	static uint64_t now = 1000, index = 2;
	if (c == NULL)
		c = make_core();
	if (len < 2)
		return 0;
	now += 7;
	grd_core_clock(c, now, now);
	grd_core_recv(c, 1 + data[1] % 3, (uint8_t)(GRD_MSG_REQUEST + data[0] % 12), data + 2, len - 2);
	grd_core_tick(c, now + 3, now + 3);
	if (data[0] & 0x80)
		grd_core_apply(c, data + 2, len - 2, index++);
	return 0;
}

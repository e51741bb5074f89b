/* lmdd's messages: decoded and applied to a GES master core on the heap (ges_msg_apply, as
 * lmdd's interconnect does) from a node the first byte picks; the core lives for the whole
 * run so that inputs meet the queues earlier ones left, its clock moves, and its invariants
 * are checked after every input (a broken one aborts, which libFuzzer reports). */
#include "fuzz.h"

#include "ges.h"
#include "ges_msg.h"

#include <stdio.h>
#include <stdlib.h>

static void on_done(void *a, uint32_t n, uint64_t s, uint64_t l, int code, int gr, bool d, const uint8_t *lvb, bool v)
{
	(void)a, (void)n, (void)s, (void)l, (void)code, (void)gr, (void)d, (void)lvb, (void)v;
}
static void on_bast(void *a, uint32_t n, uint64_t s, uint64_t l, int m) { (void)a, (void)n, (void)s, (void)l, (void)m; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct ges_core *c;
	static uint64_t now = 1000, refused;
	if (c == NULL) {
		struct ges_ops ops = {on_done, on_bast, NULL, NULL, NULL};
		c = ges_core_new(64, 256, GES_MSG_LVB, &ops);
	}
	if (len < 1)
		return 0;
	now += 7;
	Coral__GesMsg *g = ges_msg_decode(GES_NET_MSG, data + 1, len - 1, &refused);
	if (g != NULL) {
		Coral__GesMsg a;
		struct ges_answer ans;
		ges_msg_apply(c, 1 + data[0] % 3, g, now, &a, &ans);
		ges_msg_free(g);
	}
	if ((data[0] & 0xf0) == 0xf0)
		ges_node_lost(c, 1 + data[0] % 3, now);
	if ((data[0] & 0xf0) == 0xe0)
		ges_node_recovered(c, 1 + data[0] % 3, now);
	ges_tick(c, now);
	char err[256];
	if (ges_check(c, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_ges: %s\n", err);
		abort();
	}
	return 0;
}

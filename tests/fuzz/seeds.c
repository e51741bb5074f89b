/* fuzz-seeds DIR: writes a seed corpus for every fuzz target into DIR/TARGET/, made with the
 * project's own encoders and writers, so that each fuzzer starts from inputs that get past
 * the first checks (valid frames, messages of every family, a control file, a Raft log
 * segment, a redo record, HTTP requests). The configuration target is seeded by
 * scripts/fuzz.sh with etc/ and the unit tests' golden files. */
#include "codec.h"
#include "conf.h"
#include "crc32c.h"
#include "ctl.h"
#include "frame.h"
#include "gcs_msg.h"
#include "ges_msg.h"
#include "grd_msg.h"
#include "raft_msg.h"
#include "raft_store.h"
#include "redo.h"
#include "storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *top;

static void seed(const char *target, const char *name, const void *a, size_t alen, const void *b, size_t blen)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", top, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", top, target, name);
	FILE *f = fopen(path, "w");
	if (f == NULL || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen)) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

/* A message packed, with a prefix of bytes the target reads first (type, sender). */
static void seed_msg(const char *target, const char *name, const uint8_t *prefix, size_t np, const ProtobufCMessage *m)
{
	size_t len;
	uint8_t *buf = coral_codec_pack(m, NULL, 0, &len);
	seed(target, name, prefix, np, buf, len);
	free(buf);
}

static void ctl_seeds(void)
{
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	hdr.request_id = 7;
	hdr.sender = "seed";
	req.hdr = &hdr;
	Coral__KvRequest kv = CORAL__KV_REQUEST__INIT;
	kv.op = CORAL__KV_OP__KV_PUT;
	kv.key = "app/x";
	kv.value.data = (uint8_t *)"42";
	kv.value.len = 2;
	req.body_case = CORAL__CTL_REQUEST__BODY_KV;
	req.kv = &kv;
	seed_msg("fuzz_ctl", "kv", NULL, 0, &req.base);
	Coral__GcsCrHello h = CORAL__GCS_CR_HELLO__INIT;
	h.cluster = "coral";
	h.node = 2;
	h.incarnation = 3;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_CR_HELLO;
	req.gcs_cr_hello = &h;
	seed_msg("fuzz_ctl", "hello", NULL, 0, &req.base);
	/* framing: the same requests in frames, one after another */
	uint8_t *f1, *f2;
	size_t l1, l2;
	coral_frame_encode(&req.base, 1 << 20, &f1, &l1);
	req.body_case = CORAL__CTL_REQUEST__BODY_KV;
	coral_frame_encode(&req.base, 1 << 20, &f2, &l2);
	seed("fuzz_frame", "two", f1, l1, f2, l2);
	free(f1);
	free(f2);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.code = -983;
	resp.error = "busy";
	seed_msg("fuzz_ctl", "response", NULL, 0, &resp.base);
}

static void grd_seeds(void)
{
	Coral__GrdRes id = CORAL__GRD_RES__INIT;
	id.type = 0x424c; /* BL */
	id.id1 = 1;
	id.id2 = 5;
	Coral__GrdRequest q = CORAL__GRD_REQUEST__INIT;
	q.req_id = 1;
	q.map_version = 1;
	q.id = &id;
	q.op = 1;
	q.mode = 2;
	uint8_t pre[2] = {GRD_MSG_REQUEST - GRD_MSG_REQUEST, 1};
	seed_msg("fuzz_grd", "request", pre, 2, &q.base);
	Coral__GrdMoveItem it = CORAL__GRD_MOVE_ITEM__INIT, *itp = &it;
	it.bucket = 9;
	it.to = 2;
	Coral__GrdFreeze fr = CORAL__GRD_FREEZE__INIT;
	fr.move_id = 3;
	fr.base_version = 1;
	fr.coordinator = 1;
	fr.items = &itp;
	fr.n_items = 1;
	pre[0] = GRD_MSG_FREEZE - GRD_MSG_REQUEST;
	seed_msg("fuzz_grd", "freeze", pre, 2, &fr.base);
	Coral__GrdEntry e = CORAL__GRD_ENTRY__INIT, *ep = &e;
	Coral__GrdHolder ho = CORAL__GRD_HOLDER__INIT, *hop = &ho;
	ho.node = 2;
	ho.mode = 2;
	e.id = &id;
	e.holders = &hop;
	e.n_holders = 1;
	e.current = 2;
	e.gen = 4;
	Coral__GrdShip sh = CORAL__GRD_SHIP__INIT;
	sh.move_id = 3;
	sh.base_version = 1;
	sh.coordinator = 1;
	sh.last = true;
	sh.entries = &ep;
	sh.n_entries = 1;
	pre[0] = GRD_MSG_SHIP - GRD_MSG_REQUEST;
	pre[1] = 2;
	seed_msg("fuzz_grd", "ship", pre, 2, &sh.base);
	Coral__GrdReport rep = CORAL__GRD_REPORT__INIT;
	rep.entries = &ep;
	rep.n_entries = 1;
	pre[0] = GRD_MSG_REPORT - GRD_MSG_REQUEST;
	seed_msg("fuzz_grd", "report", pre, 2, &rep.base);
}

static void gcs_seeds(void)
{
	Coral__GcsMsg m = CORAL__GCS_MSG__INIT;
	uint8_t node = 1;
	m.kind = GCS_REQ;
	m.file = 1;
	m.block = 3;
	m.rid = 5;
	m.requester = 2;
	m.mode = 2;
	seed_msg("fuzz_gcs", "req", &node, 1, &m.base);
	uint8_t data[512] = {0};
	coral_block_format(data, sizeof(data), 1, 3, 9);
	m.kind = GCS_BLOCK;
	m.requester = 0;
	m.gen = 1;
	m.dirty = true;
	m.block_scn = 9;
	m.data.data = data;
	m.data.len = sizeof(data);
	node = 0;
	seed_msg("fuzz_gcs", "block", &node, 1, &m.base);
	m.kind = GCS_ACK;
	m.requester = 2;
	m.data.len = 0;
	node = 1;
	seed_msg("fuzz_gcs", "ack", &node, 1, &m.base);
}

static void ges_seeds(void)
{
	Coral__GesMsg m = CORAL__GES_MSG__INIT;
	uint8_t node = 1;
	m.kind = GES_REQUEST;
	m.name.data = (uint8_t *)"TX-1-2";
	m.name.len = 6;
	m.lkid = 7;
	m.session = 3;
	m.mode = 5;
	m.flags = GES_F_VALBLK;
	seed_msg("fuzz_ges", "request", &node, 1, &m.base);
	uint8_t lvb[GES_MSG_LVB] = "value";
	m.kind = GES_CONVERT;
	m.mode = 0;
	m.lvb.data = lvb;
	m.lvb.len = sizeof(lvb);
	seed_msg("fuzz_ges", "convert", &node, 1, &m.base);
	node = 2;
	m.kind = GES_REQUEST;
	m.lkid = 8;
	m.mode = 3;
	m.lvb.len = 0;
	m.timeout_ms = 20;
	seed_msg("fuzz_ges", "wait", &node, 1, &m.base);
	m.kind = GES_UNLOCK;
	m.lkid = 7;
	node = 1;
	seed_msg("fuzz_ges", "unlock", &node, 1, &m.base);
}

static void raft_seeds(void)
{
	struct raft_entry e[2] = {{.term = 1, .index = 1, .type = 0, .data = (uint8_t *)"put", .len = 3},
				  {.term = 1, .index = 2, .type = 0, .data = (uint8_t *)"del", .len = 3}};
	struct raft_msg m = {.type = 1, .from = 1, .to = 2, .term = 1, .index = 0, .commit = 1, .entries = e, .n_entries = 2};
	uint8_t *buf;
	size_t len;
	if (raft_msg_encode(&m, &buf, &len) == 0) {
		seed("fuzz_raft", "append", buf, len, NULL, 0);
		free(buf);
	}
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = 1;
	c.key = "app/x";
	c.value.data = (uint8_t *)"1";
	c.value.len = 1;
	seed_msg("fuzz_raft", "put", NULL, 0, &c.base);
}

/* A file a writer of the project made, read back whole. */
static void seed_file(const char *target, const char *name, uint8_t kind, const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return;
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	seed(target, name, &kind, 1, buf, n);
}

static void file_seeds(void)
{
	char dir[600], err[256];
	snprintf(dir, sizeof(dir), "%s/.work", top);
	mkdir(dir, 0755);
	/* a control file with one data file */
	static struct coral_conf conf;
	snprintf(conf.storage.shared_dir, sizeof(conf.storage.shared_dir), "%s", dir);
	snprintf(conf.cluster.name, sizeof(conf.cluster.name), "coral");
	conf.storage.block_size = 8192;
	uint32_t id;
	if (coral_datafile_create(&conf, "seed", 4, &id, err, sizeof(err)) == 0) {
		char p[700];
		snprintf(p, sizeof(p), "%s/control", dir);
		seed_file("fuzz_files", "control", 0, p);
	}
	/* a Raft log segment with two entries and the hard state */
	char rdir[700];
	snprintf(rdir, sizeof(rdir), "%s/raft", dir);
	struct raft_store *s;
	if (raft_store_open(&s, rdir, 1 << 20, err, sizeof(err)) == 0) {
		struct raft_entry e[2] = {{.term = 1, .index = 1, .data = (uint8_t *)"a", .len = 1},
					  {.term = 1, .index = 2, .data = (uint8_t *)"b", .len = 1}};
		struct raft_hard_state hs = {1, 1, 2};
		raft_store_append(s, e, 2, &hs);
		raft_store_sync(s);
		raft_store_close(s);
		char p[800];
		snprintf(p, sizeof(p), "%s/00000000000000000001.seg", rdir);
		seed_file("fuzz_files", "segment", 1, p);
	}
	/* a redo thread of one change and its commit */
	uint8_t rec[2][sizeof(struct coral_redo_rec) + 8];
	uint64_t lsn = 0;
	for (int i = 0; i < 2; i++) {
		struct coral_redo_rec h = {.magic = CORAL_REDO_MAGIC, .len = sizeof(rec[i]), .type = i ? CORAL_REDO_COMMIT : CORAL_REDO_CHANGE,
					   .scn = 10 + (uint64_t)i, .session = 1, .file = 1, .block = 3, .nbytes = i ? 0 : 8};
		lsn += sizeof(rec[i]);
		h.lsn = lsn;
		memset(rec[i], 0, sizeof(rec[i]));
		memcpy(rec[i] + sizeof(h), "changed!", i ? 0 : 8);
		memcpy(rec[i], &h, sizeof(h));
		h.crc = coral_crc32c(0, rec[i], sizeof(rec[i]));
		memcpy(rec[i], &h, sizeof(h));
	}
	uint8_t two[1 + sizeof(rec)];
	two[0] = 2;
	memcpy(two + 1, rec, sizeof(rec));
	seed("fuzz_files", "redo", two, sizeof(two), NULL, 0);
}

static void http_seeds(void)
{
	const char *reqs[] = {
		"GET /v1/kv/app/x?stale=1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"PUT /v1/kv/app%2Fy HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer fuzz-token-0123456789abcdef\r\nContent-Length: 2\r\n\r\n42",
		"PUT /v1/kv/grd%2Fmap HTTP/1.1\r\nAuthorization: Bearer fuzz-token-0123456789abcdef\r\nContent-Length: 1\r\n\r\nx",
		"GET /v1/kv/?prefix=app/ HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\nGET /v1/members HTTP/1.1\r\n\r\n",
		"DELETE /v1/kv/grd/map HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET /v1/status HTTP/1.1\r\n\r\n",
		"POST /v1/kv/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		char name[16];
		snprintf(name, sizeof(name), "req%zu", i);
		seed("fuzz_http", name, reqs[i], strlen(reqs[i]), NULL, 0);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-seeds DIR\n");
		return 2;
	}
	top = argv[1];
	mkdir(top, 0755);
	ctl_seeds();
	grd_seeds();
	gcs_seeds();
	ges_seeds();
	raft_seeds();
	file_seeds();
	http_seeds();
	return 0;
}

/* The raftd client (see kv.h). */
#include "kv.h"

#include <string.h>

static void init(struct coral_kv_req *r, Coral__CtlRequest__BodyCase body)
{
	memset(r, 0, sizeof(*r));
	coral__ctl_request__init(&r->req);
	coral__kv_request__init(&r->kv);
	coral__watch_request__init(&r->watch);
	r->req.body_case = body;
	if (body == CORAL__CTL_REQUEST__BODY_KV)
		r->req.kv = &r->kv;
	else
		r->req.watch = &r->watch;
}

void coral_kv_from(struct coral_kv_req *r, const char *sender, uint32_t node)
{
	coral__header__init(&r->hdr);
	r->hdr.sender = (char *)sender;
	r->hdr.sender_node = node;
	r->req.hdr = &r->hdr;
}

static void op(struct coral_kv_req *r, Coral__KvOp o, const char *key, bool stale)
{
	init(r, CORAL__CTL_REQUEST__BODY_KV);
	r->kv.op = o;
	r->kv.key = (char *)key;
	r->kv.stale = stale;
}

void coral_kv_get(struct coral_kv_req *r, const char *key, bool stale) { op(r, CORAL__KV_OP__KV_GET, key, stale); }

void coral_kv_list(struct coral_kv_req *r, const char *prefix, bool stale)
{
	op(r, CORAL__KV_OP__KV_LIST, prefix, stale);
}

void coral_kv_put(struct coral_kv_req *r, const char *key, const void *value, size_t len)
{
	op(r, CORAL__KV_OP__KV_PUT, key, false);
	r->kv.value.data = (uint8_t *)value;
	r->kv.value.len = len;
}

void coral_kv_cas(struct coral_kv_req *r, const char *key, const void *value, size_t len, uint64_t expect_index)
{
	coral_kv_put(r, key, value, len);
	r->kv.cas = true;
	r->kv.expect_index = expect_index;
}

void coral_kv_del(struct coral_kv_req *r, const char *key) { op(r, CORAL__KV_OP__KV_DEL, key, false); }

void coral_kv_watch(struct coral_kv_req *r, const char *prefix, bool members, uint64_t after_index,
		    uint32_t poll_ms)
{
	init(r, CORAL__CTL_REQUEST__BODY_WATCH);
	r->watch.prefix = (char *)prefix;
	r->watch.members = members;
	r->watch.after_index = after_index;
	r->watch.timeout_ms = poll_ms;
}

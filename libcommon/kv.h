/* The raftd client: requests to the cluster's config store (raftd's registry), built in one
 * place for every program that talks to it (grdd, coralctl, the tests and benchmarks, and
 * the daemons to come). A request is built into a struct coral_kv_req and sent as the
 * control request it holds (req): through an async client in a daemon
 * (coral_ctl_client_call), or blocking (coral_ctl_call). The answer's kv (get, list, put,
 * del, cas) or watch body says what raftd found; code CORAL_ECONFLICT is a compare-and-swap
 * that lost, CORAL_ENOENT a key that is not there. */
#ifndef CORAL_KV_H
#define CORAL_KV_H

#include "ctl.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coral_kv_req {
	Coral__CtlRequest req;      /* what to send */
	Coral__Header hdr;
	Coral__KvRequest kv;
	Coral__WatchRequest watch;
};

/* Names the sender (a daemon and its node) in the request's header. */
void coral_kv_from(struct coral_kv_req *r, const char *sender, uint32_t node);

/* stale: answered from the local registry, without a ReadIndex round through the leader */
void coral_kv_get(struct coral_kv_req *r, const char *key, bool stale);
void coral_kv_list(struct coral_kv_req *r, const char *prefix, bool stale);
void coral_kv_put(struct coral_kv_req *r, const char *key, const void *value, size_t len);
/* A put only if the key was last written at expect_index (0: only if it does not exist). */
void coral_kv_cas(struct coral_kv_req *r, const char *key, const void *value, size_t len, uint64_t expect_index);
void coral_kv_del(struct coral_kv_req *r, const char *key);
/* A long poll: answered once a key under prefix (or, with members, the membership) changes
 * after after_index, or after poll_ms with no events; UINT64_MAX: at once, with the index to
 * watch after. */
void coral_kv_watch(struct coral_kv_req *r, const char *prefix, bool members, uint64_t after_index,
		    uint32_t poll_ms);

#endif

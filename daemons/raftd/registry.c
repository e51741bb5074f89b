/* The cluster registry (see registry.h). */
#include "registry.h"
#include "raft_msg.h"
#include "errors.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[REG_NOPS] = {
	"?", "put", "delete", "join", "evict", "add-member", "remove-member",
};

const char *registry_op_name(int op)
{
	return op > 0 && op < REG_NOPS ? op_names[op] : "?";
}

void registry_init(struct registry *r, size_t max_keys, size_t max_value)
{
	memset(r, 0, sizeof(*r));
	r->max_keys = max_keys;
	r->max_value = max_value;
}

static void clear(struct registry *r)
{
	for (size_t i = 0; i < r->nkv; i++) {
		free(r->kv[i].key);
		free(r->kv[i].value);
	}
	free(r->kv);
	for (size_t i = 0; i < r->chg_count; i++)
		free(r->changes[(r->chg_start + i) % REG_CHANGES].key);
	r->kv = NULL;
	r->nkv = r->capkv = 0;
	r->chg_start = r->chg_count = 0;
}

void registry_free(struct registry *r)
{
	clear(r);
}

/* Binary search: index of key, or where it would go (*found false). */
static size_t find(const struct registry *r, const char *key, bool *found)
{
	size_t lo = 0, hi = r->nkv;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(r->kv[mid].key, key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

const struct reg_kv *registry_get(const struct registry *r, const char *key)
{
	bool found;
	size_t i = find(r, key, &found);
	return found ? &r->kv[i] : NULL;
}

void registry_range(const struct registry *r, const char *prefix, size_t *first, size_t *n)
{
	bool found;
	size_t i = find(r, prefix, &found);
	size_t plen = strlen(prefix), j = i;
	while (j < r->nkv && strncmp(r->kv[j].key, prefix, plen) == 0)
		j++;
	*first = i;
	*n = j - i;
}

static void record(struct registry *r, uint64_t index, const char *key, bool deleted)
{
	char *k = strdup(key);
	if (k == NULL)
		return;
	if (r->chg_count == REG_CHANGES) {
		struct reg_change *old = &r->changes[r->chg_start];
		r->oldest_change_index = old->index + 1;
		free(old->key);
		r->chg_start = (r->chg_start + 1) % REG_CHANGES;
		r->chg_count--;
	}
	struct reg_change *c = &r->changes[(r->chg_start + r->chg_count) % REG_CHANGES];
	c->index = index;
	c->key = k;
	c->deleted = deleted;
	r->chg_count++;
}

bool registry_changes(const struct registry *r, uint64_t after, const char *prefix, bool members,
		      const struct reg_change **out, size_t max, size_t *n)
{
	*n = 0;
	if (after + 1 < r->oldest_change_index)
		return false;
	size_t plen = prefix ? strlen(prefix) : 0;
	for (size_t i = 0; i < r->chg_count && *n < max; i++) {
		const struct reg_change *c = &r->changes[(r->chg_start + i) % REG_CHANGES];
		if (c->index <= after)
			continue;
		bool is_members = strcmp(c->key, REG_MEMBERS_KEY) == 0;
		if (members ? is_members : (!is_members && strncmp(c->key, prefix ? prefix : "", plen) == 0))
			out[(*n)++] = c;
	}
	return true;
}

static int refuse(struct reg_result *res, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int refuse(struct reg_result *res, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	res->code = code;
	return code;
}

static void put(struct registry *r, uint64_t index, const Coral__RegCmd *c, struct reg_result *res)
{
	size_t klen = strlen(c->key);
	if (klen == 0 || klen >= REG_KEY_MAX || c->key[0] == '@') {
		refuse(res, CORAL_EINVAL, "a key is 1-%d bytes and does not start with '@'", REG_KEY_MAX - 1);
		return;
	}
	if (c->value.len > r->max_value) {
		refuse(res, CORAL_ETOOBIG, "value of %zu bytes is larger than kv_max_value (%zu)",
		       c->value.len, r->max_value);
		return;
	}
	bool found;
	size_t i = find(r, c->key, &found);
	uint64_t now = found ? r->kv[i].mod_index : 0;
	if (c->cas && now != c->expect_index) {
		refuse(res, CORAL_ECONFLICT, "key '%s' was last written at index %llu, not %llu", c->key,
		       (unsigned long long)now, (unsigned long long)c->expect_index);
		return;
	}
	uint8_t *v = malloc(c->value.len ? c->value.len : 1);
	if (v == NULL) {
		refuse(res, CORAL_ENOMEM, "out of memory");
		return;
	}
	if (c->value.len)
		memcpy(v, c->value.data, c->value.len);
	if (found) {
		free(r->kv[i].value);
		r->kv[i].value = v;
		r->kv[i].vlen = (uint32_t)c->value.len;
		r->kv[i].mod_index = index;
	} else {
		if (r->nkv >= r->max_keys) {
			free(v);
			refuse(res, CORAL_EFULL, "the config store holds kv_max_keys (%zu) keys", r->max_keys);
			return;
		}
		if (r->nkv == r->capkv) {
			size_t cap = r->capkv ? r->capkv * 2 : 64;
			struct reg_kv *p = realloc(r->kv, cap * sizeof(*p));
			if (p == NULL) {
				free(v);
				refuse(res, CORAL_ENOMEM, "out of memory");
				return;
			}
			r->kv = p;
			r->capkv = cap;
		}
		char *k = strdup(c->key);
		if (k == NULL) {
			free(v);
			refuse(res, CORAL_ENOMEM, "out of memory");
			return;
		}
		memmove(&r->kv[i + 1], &r->kv[i], (r->nkv - i) * sizeof(*r->kv));
		r->kv[i] = (struct reg_kv){k, v, (uint32_t)c->value.len, index, index};
		r->nkv++;
	}
	record(r, index, c->key, false);
	res->key = r->kv[i].key;
	res->value = r->kv[i].value;
	res->vlen = r->kv[i].vlen;
}

static void del(struct registry *r, uint64_t index, const Coral__RegCmd *c, struct reg_result *res)
{
	bool found;
	size_t i = find(r, c->key, &found);
	if (!found) {
		refuse(res, CORAL_ENOENT, "no key '%s'", c->key);
		return;
	}
	free(r->kv[i].key);
	free(r->kv[i].value);
	memmove(&r->kv[i], &r->kv[i + 1], (r->nkv - i - 1) * sizeof(*r->kv));
	r->nkv--;
	record(r, index, c->key, true);
}

static void member_set(struct registry *r, uint64_t index, const Coral__RegCmd *c, uint8_t state,
		       struct reg_result *res)
{
	struct reg_member *m = &r->members[c->node];
	m->id = c->node;
	m->state = state;
	m->changed_index = index;
	m->changed_ns = c->at_ns;
	coral_strlcpy(m->reason, c->reason ? c->reason : "", sizeof(m->reason));
	r->epoch++;
	res->members_changed = true;
	record(r, index, REG_MEMBERS_KEY, false);
}

static void membership(struct registry *r, uint64_t index, const Coral__RegCmd *c,
		       struct reg_result *res)
{
	if (c->node == 0 || c->node > CORAL_MAX_NODES) {
		refuse(res, CORAL_EINVAL, "node id %u is out of range 1-%d", c->node, CORAL_MAX_NODES);
		return;
	}
	struct reg_member *m = &r->members[c->node];
	switch (c->op) {
	case REG_MEMBER_ADD:
		if (m->state == CORAL_MEMBER_REMOVED) {
			refuse(res, CORAL_EINVAL, "node id %u was removed and is never reused", c->node);
			return;
		}
		if (m->state != CORAL_MEMBER_NONE) {
			refuse(res, CORAL_EEXIST, "node %u is already a member (%s)", c->node,
			       coral_member_state_name(m->state));
			return;
		}
		coral_strlcpy(m->address, c->address ? c->address : "", sizeof(m->address));
		member_set(r, index, c, CORAL_MEMBER_JOINING, res);
		return;
	case REG_JOIN:
		if (m->state == CORAL_MEMBER_REMOVED) {
			refuse(res, CORAL_EINVAL, "node %u was removed from the cluster", c->node);
			return;
		}
		if (m->state != CORAL_MEMBER_NONE && c->incarnation < m->incarnation) {
			refuse(res, CORAL_EEVICTED, "incarnation %llu of node %u is older than %llu",
			       (unsigned long long)c->incarnation, c->node,
			       (unsigned long long)m->incarnation);
			return;
		}
		if (m->state == CORAL_MEMBER_EVICTED && c->incarnation == m->incarnation) {
			refuse(res, CORAL_EEVICTED, "incarnation %llu of node %u was evicted; rejoin with a new one",
			       (unsigned long long)c->incarnation, c->node);
			return;
		}
		if (m->state == CORAL_MEMBER_ACTIVE && c->incarnation == m->incarnation)
			return; /* already in: no new epoch */
		m->incarnation = c->incarnation;
		m->instance = c->instance;
		if (c->address && c->address[0])
			coral_strlcpy(m->address, c->address, sizeof(m->address));
		member_set(r, index, c, CORAL_MEMBER_ACTIVE, res);
		return;
	case REG_EVICT:
		if (m->state != CORAL_MEMBER_ACTIVE || m->incarnation != c->incarnation) {
			refuse(res, CORAL_ENOENT, "node %u incarnation %llu is not an active member",
			       c->node, (unsigned long long)c->incarnation);
			return;
		}
		member_set(r, index, c, CORAL_MEMBER_EVICTED, res);
		return;
	case REG_MEMBER_REMOVE:
		if (m->state == CORAL_MEMBER_REMOVED) {
			refuse(res, CORAL_ENOENT, "node %u is already removed", c->node);
			return;
		}
		member_set(r, index, c, CORAL_MEMBER_REMOVED, res);
		return;
	}
}

void registry_apply(struct registry *r, uint64_t index, const uint8_t *data, size_t len,
		    struct reg_result *res)
{
	memset(res, 0, sizeof(*res));
	if (index > r->applied)
		r->applied = index;
	Coral__RegCmd *c = raft_cmd_decode(data, len);
	if (c == NULL) {
		refuse(res, CORAL_EDECODE, "undecodable registry command at index %llu",
		       (unsigned long long)index);
		return;
	}
	res->op = (uint8_t)c->op;
	res->node = c->node;
	switch (c->op) {
	case REG_PUT: put(r, index, c, res); break;
	case REG_DEL: del(r, index, c, res); break;
	case REG_JOIN:
	case REG_EVICT:
	case REG_MEMBER_ADD:
	case REG_MEMBER_REMOVE: membership(r, index, c, res); break;
	default: refuse(res, CORAL_EINVAL, "unknown registry operation %u", c->op); break;
	}
	raft_cmd_free(c);
}

void registry_skip(struct registry *r, uint64_t index)
{
	if (index > r->applied)
		r->applied = index;
}

int registry_cmd_pack(const Coral__RegCmd *cmd, uint8_t **buf, size_t *len)
{
	return raft_pack(&cmd->base, buf, len);
}

int registry_snapshot(const struct registry *r, uint8_t **buf, size_t *len)
{
	Coral__RegSnapshot s = CORAL__REG_SNAPSHOT__INIT;
	s.epoch = r->epoch;
	s.applied = r->applied;
	Coral__RegMember mem[CORAL_MAX_NODES], *memp[CORAL_MAX_NODES];
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
		const struct reg_member *m = &r->members[id];
		if (m->state == CORAL_MEMBER_NONE)
			continue;
		Coral__RegMember *o = &mem[s.n_members];
		coral__reg_member__init(o);
		o->id = id;
		o->address = (char *)m->address;
		o->incarnation = m->incarnation;
		o->instance = m->instance;
		o->state = m->state;
		o->reason = (char *)m->reason;
		o->changed_index = m->changed_index;
		o->changed_ns = m->changed_ns;
		memp[s.n_members++] = o;
	}
	s.members = memp;
	Coral__RegKV *kv = calloc(r->nkv ? r->nkv : 1, sizeof(*kv));
	Coral__RegKV **kvp = calloc(r->nkv ? r->nkv : 1, sizeof(*kvp));
	if (kv == NULL || kvp == NULL) {
		free(kv);
		free(kvp);
		return CORAL_ENOMEM;
	}
	for (size_t i = 0; i < r->nkv; i++) {
		coral__reg_kv__init(&kv[i]);
		kv[i].key = r->kv[i].key;
		kv[i].value.data = r->kv[i].value;
		kv[i].value.len = r->kv[i].vlen;
		kv[i].create_index = r->kv[i].create_index;
		kv[i].mod_index = r->kv[i].mod_index;
		kvp[i] = &kv[i];
	}
	s.kv = kvp;
	s.n_kv = r->nkv;
	int rc = raft_pack(&s.base, buf, len);
	free(kv);
	free(kvp);
	return rc;
}

int registry_restore(struct registry *r, const uint8_t *buf, size_t len)
{
	Coral__RegSnapshot *s = raft_snap_decode(buf, len);
	if (s == NULL)
		return CORAL_EDECODE;
	size_t max_keys = r->max_keys, max_value = r->max_value;
	clear(r);
	registry_init(r, max_keys, max_value);
	r->epoch = s->epoch;
	r->applied = s->applied;
	r->oldest_change_index = s->applied + 1; /* watches from before the snapshot re-read */
	int rc = 0;
	for (size_t i = 0; i < s->n_members; i++) {
		const Coral__RegMember *o = s->members[i];
		if (o->id == 0 || o->id > CORAL_MAX_NODES)
			continue;
		struct reg_member *m = &r->members[o->id];
		m->id = o->id;
		m->state = (uint8_t)o->state;
		m->incarnation = o->incarnation;
		m->instance = o->instance;
		coral_strlcpy(m->address, o->address, sizeof(m->address));
		coral_strlcpy(m->reason, o->reason, sizeof(m->reason));
		m->changed_index = o->changed_index;
		m->changed_ns = o->changed_ns;
	}
	if (s->n_kv) {
		r->kv = calloc(s->n_kv, sizeof(*r->kv));
		if (r->kv == NULL)
			rc = CORAL_ENOMEM;
		else
			r->capkv = s->n_kv;
	}
	for (size_t i = 0; rc == 0 && i < s->n_kv; i++) {
		const Coral__RegKV *o = s->kv[i];
		struct reg_kv *k = &r->kv[i];
		k->key = strdup(o->key);
		k->value = malloc(o->value.len ? o->value.len : 1);
		if (k->key == NULL || k->value == NULL) {
			free(k->key);
			free(k->value);
			rc = CORAL_ENOMEM;
			break;
		}
		if (o->value.len)
			memcpy(k->value, o->value.data, o->value.len);
		k->vlen = (uint32_t)o->value.len;
		k->create_index = o->create_index;
		k->mod_index = o->mod_index;
		r->nkv++;
	}
	raft_snap_free(s);
	return rc;
}

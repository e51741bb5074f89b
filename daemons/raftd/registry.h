/* The cluster registry: raftd's replicated state machine. It holds the members (id,
 * address, incarnation, state), the cluster epoch, and the config store (keys and values
 * with the Raft index of their creation and last change), plus a bounded ring of recent
 * changes that watches are answered from. Every replica applies the same commands in the
 * same order and reaches the same state: apply() decides only from the command and the
 * current state, never from the clock or the node it runs on. Pure: no I/O. */
#ifndef CORAL_RAFTD_REGISTRY_H
#define CORAL_RAFTD_REGISTRY_H

#include "cluster.h"
#include "raft.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum reg_op {
	REG_PUT = 1,
	REG_DEL,
	REG_JOIN,          /* node, incarnation, address: becomes active under that incarnation */
	REG_EVICT,         /* node, incarnation, reason */
	REG_MEMBER_ADD,    /* node, address: a new member, joining */
	REG_MEMBER_REMOVE, /* node, reason */
	REG_NOPS
};

#define REG_KEY_MAX 512
#define REG_CHANGES 4096   /* watch ring */
#define REG_MEMBERS_KEY "@members"

struct reg_member {
	uint32_t id;
	uint8_t state;               /* enum coral_member_state */
	uint64_t incarnation;
	uint64_t instance;           /* its SGA at its last join (RegCmd.instance) */
	char address[128];
	char reason[160];
	uint64_t changed_index, changed_ns;
};

struct reg_kv {
	char *key;
	uint8_t *value;
	uint32_t vlen;
	uint64_t create_index, mod_index;
};

struct reg_change {
	uint64_t index;
	char *key;                   /* REG_MEMBERS_KEY for a membership change */
	bool deleted;
};

struct registry {
	uint64_t epoch, applied;
	struct reg_member members[CORAL_MAX_NODES + 1];   /* by id; state NONE: not a member */
	struct reg_kv *kv;           /* sorted by key */
	size_t nkv, capkv;
	size_t max_keys, max_value;
	struct reg_change changes[REG_CHANGES];
	size_t chg_start, chg_count;
	uint64_t oldest_change_index; /* changes before it are gone from the ring */
};

/* What applying one command did, for raftd to act on. */
struct reg_result {
	int code;                    /* 0 or CORAL_E*: the command was refused (state unchanged) */
	char error[160];
	bool members_changed;
	uint32_t node;               /* the member the command was about */
	uint8_t op;
	/* a put: its key and value (valid until the next command) */
	const char *key;
	const uint8_t *value;
	size_t vlen;
};

void registry_init(struct registry *r, size_t max_keys, size_t max_value);
void registry_free(struct registry *r);

/* Applies the command in data (a packed RegCmd) committed at index. */
void registry_apply(struct registry *r, uint64_t index, const uint8_t *data, size_t len,
		    struct reg_result *res);
/* The entry at index carries no command (no-op, configuration): only applied moves. */
void registry_skip(struct registry *r, uint64_t index);

const struct reg_kv *registry_get(const struct registry *r, const char *key);
/* Keys starting with prefix, in order: [*first, *first + *n). */
void registry_range(const struct registry *r, const char *prefix, size_t *first, size_t *n);

/* Changes after index whose key starts with prefix (or membership changes), at most max.
 * Returns false if the ring no longer reaches back to index (the caller must re-read). */
bool registry_changes(const struct registry *r, uint64_t after, const char *prefix, bool members,
		      const struct reg_change **out, size_t max, size_t *n);

int registry_snapshot(const struct registry *r, uint8_t **buf, size_t *len);
int registry_restore(struct registry *r, const uint8_t *buf, size_t len);

/* Packs a command; the caller frees *buf. */
int registry_cmd_pack(const Coral__RegCmd *cmd, uint8_t **buf, size_t *len);
const char *registry_op_name(int op);

#endif

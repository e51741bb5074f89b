/* The Global Enqueue Service's master side, as a pure core (no I/O, no clock of its own):
 * the resources this node masters, each with its granted, converting and waiting queues in
 * order, its lock value block, and what each change owes the requesters (completions) and
 * the holders in the way (blocking notifications). lmdd feeds it requests, cancels, ticks
 * and the losses of sessions and nodes, and carries out what it reports through ges_ops.
 *
 * Modes are the DLM's six, with its compatibility matrix. The rules (lmdd(8)):
 *  - a new request is granted at once only if it is compatible with every granted mode (the
 *    converting locks' granted modes too) and nothing is queued before it (no starvation);
 *    an NL request with GES_F_EXPEDITE is granted at once in any case;
 *  - a conversion to a mode at most as strong as the one held is granted at once; one up is
 *    granted at once if compatible with every other granted mode and no conversion waits
 *    (unless GES_F_QUECVT, which always queues behind the waiting ones); conversions come
 *    before new requests, each queue in its order;
 *  - a conversion that blocks, and is blocked by, another one waiting on the same resource is
 *    a conversion deadlock: with GES_F_CONVDEADLK its granted mode is taken down to NL; else
 *    it is refused with CORAL_EDEADLK and keeps its granted mode (GES_F_NODLCKWT: it waits);
 *  - a holder in the way of a queued request gets one blocking notification per mode it is
 *    asked to give way to;
 *  - the value block is written by a PW or EX holder as it converts down or unlocks, read with
 *    every grant of a request that asks for it, and marked invalid when a PW or EX holder is
 *    lost without writing it (its session or node died), until it is written again; after a
 *    rebuild it is unknown until a CW, PR, PW or EX holder's copy tells it (ges_recover_lvb). */
#ifndef CORAL_LMDD_GES_H
#define CORAL_LMDD_GES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { GES_NL, GES_CR, GES_CW, GES_PR, GES_PW, GES_EX, GES_NMODES };
#define GES_NONE (-1)
#define GES_NAME_MAX 64
#define GES_LVB_MAX 64

#define GES_F_NOQUEUE (1u << 0)    /* not granted at once: refused with CORAL_EAGAIN */
#define GES_F_QUECVT (1u << 1)     /* a conversion queues behind the waiting ones */
#define GES_F_CONVDEADLK (1u << 2) /* in a conversion deadlock, the granted mode goes to NL */
#define GES_F_VALBLK (1u << 3)     /* the value block is read with the grant, written down */
#define GES_F_EXPEDITE (1u << 4)   /* NL only: granted ahead of everything queued */
#define GES_F_NODLCKWT (1u << 5)   /* left out of deadlock detection: it waits */
#define GES_F_ALL ((1u << 6) - 1)

bool ges_compat(int a, int b);
const char *ges_mode_name(int mode);
/* "NL".."EX" to the mode, or GES_NONE. */
int ges_mode_parse(const char *s);

enum ges_queue { GES_Q_GRANTED, GES_Q_CONVERT, GES_Q_WAIT };

struct ges_lock_view {
	uint32_t node;
	uint64_t session, lkid;
	int gr, rq;             /* granted and requested modes (GES_NONE: none) */
	uint32_t flags;
	int queue;              /* enum ges_queue */
	bool lost;              /* its node is lost: held until its recovery */
	uint64_t wait_since_ms; /* queued since (0: granted) */
};

struct ges_ops {
	/* A queued request or conversion is over: granted (code 0: mode gr, the value block if
	 * it asked for it, and whether that is valid), or refused (CORAL_ETIMEDOUT, CORAL_EDEADLK,
	 * CORAL_ECANCELED; a conversion refused keeps gr). demoted: its granted mode was taken
	 * down to NL to end a conversion deadlock. */
	void (*done)(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int code, int gr, bool demoted,
		     const uint8_t *lvb, bool lvb_valid);
	/* A holder is in the way of a request for `mode`: it should give way (convert down or
	 * unlock) when it can. */
	void (*bast)(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int mode);
	/* The waits on resource name[len] may have changed (its edges are worth reporting to
	 * the deadlock coordinator); NULL: not told. */
	void (*waits)(void *arg, const uint8_t *name, size_t len);
	void *arg;
	/* A holder told it was in the way (bast) is in nobody's way now; NULL: not told. */
	void (*unbast)(void *arg, uint32_t node, uint64_t session, uint64_t lkid);
};

struct ges_stats {
	uint64_t requests, granted_now, queued, converts, unlocks, cancels, noqueue_refused;
	uint64_t timeouts, conv_deadlocks, demoted, basts, unbasts, full, lvb_writes, lvb_invalidated;
	uint64_t sessions_gone, nodes_lost, locks_lost, rebuilt, dropped, deadlocks, lvb_recovered;
};

struct ges_core;

/* max_res resources and max_locks locks at most (CORAL_EFULL beyond), value blocks of
 * lvb_len bytes (1..GES_LVB_MAX). NULL on bad arguments or no memory. */
struct ges_core *ges_core_new(uint32_t max_res, uint32_t max_locks, uint32_t lvb_len, const struct ges_ops *ops);
void ges_core_free(struct ges_core *c);

/* The result of a request or conversion answered at once. */
struct ges_answer {
	int gr;
	bool demoted;
	uint8_t lvb[GES_LVB_MAX];
	bool lvb_valid;
};

/* Lock (node, lkid) of session `session` asks for `mode` on resource name[len]: 0 (granted:
 * *a), CORAL_EPENDING (queued: ops.done later), CORAL_EAGAIN (GES_F_NOQUEUE), CORAL_EEXIST
 * (that lock id is known), CORAL_EFULL, CORAL_EINVAL. timeout_ms: 0 for none. */
int ges_request(struct ges_core *c, uint32_t node, uint64_t session, uint64_t lkid, const void *name, size_t len,
		int mode, uint32_t flags, uint32_t timeout_ms, uint64_t now_ms, struct ges_answer *a);
/* A granted lock converts to `mode` (lvb: its new value, written if it holds PW or EX,
 * GES_F_VALBLK is set and this is a down-conversion). The same answers, CORAL_EDEADLK (a
 * conversion deadlock: it keeps its mode), CORAL_ENOENT (no such lock), CORAL_EBUSY (it is
 * still queued). */
int ges_convert(struct ges_core *c, uint32_t node, uint64_t lkid, int mode, uint32_t flags, uint32_t timeout_ms,
		const uint8_t *lvb, uint64_t now_ms, struct ges_answer *a);
/* A granted lock goes (lvb as for ges_convert). CORAL_ENOENT, CORAL_EBUSY (queued: cancel it). */
int ges_unlock(struct ges_core *c, uint32_t node, uint64_t lkid, const uint8_t *lvb, uint64_t now_ms);
/* A queued request goes, a queued conversion goes back to its granted mode; ops.done gets
 * CORAL_ECANCELED. CORAL_ENOENT, CORAL_EINVAL (not queued). */
int ges_cancel(struct ges_core *c, uint32_t node, uint64_t lkid, uint64_t now_ms);
/* The mode lock (node, lkid) is granted, GES_NONE if none (not granted yet, or no such lock). */
int ges_lock_mode(const struct ges_core *c, uint32_t node, uint64_t lkid);
/* Requests past their timeout are refused (CORAL_ETIMEDOUT). */
void ges_tick(struct ges_core *c, uint64_t now_ms);
/* A session ended: every lock of it goes (a PW or EX one makes the value block invalid). */
void ges_session_gone(struct ges_core *c, uint32_t node, uint64_t session, uint64_t now_ms);
/* A node was evicted: its queued requests go; what it holds stays granted, marked lost,
 * until ges_node_recovered (so nothing its redo must still repair is read meanwhile); a PW
 * or EX hold makes the value block invalid. */
void ges_node_lost(struct ges_core *c, uint32_t node, uint64_t now_ms);
void ges_node_recovered(struct ges_core *c, uint32_t node, uint64_t now_ms);

/* The rebuild after grdd's map moved resources to this node (lmdd(8), REBUILD): while held,
 * nothing is granted (requests and conversions queue, NOQUEUE ones are refused), so that
 * no lock is granted before every holder has told the new master what it holds. */
void ges_hold(struct ges_core *c, bool hold);
bool ges_held(const struct ges_core *c);
/* A lock a requester says it holds (gr) or waits for (rq), as its old master had it, put
 * back on its resource's queues as it was (no grant, no check against the others: they
 * were granted together); a resource made so has a value block that is not valid (its
 * value stayed with the old master). 0, CORAL_EEXIST (known already), CORAL_EFULL,
 * CORAL_EINVAL. */
int ges_rebuild(struct ges_core *c, uint32_t node, uint64_t session, uint64_t lkid, const void *name, size_t len,
		int gr, int rq, uint32_t flags, uint64_t now_ms);
/* A holder put back by a rebuild says what value block it holds a copy of: it read it with
 * its grant, or wrote it going down, and in mode gr (CW, PR, PW or EX) nobody could have
 * written since, so that is the value. It is taken while the resource's value is unknown
 * (put back, and no PW or EX holder lost since): then valid. CORAL_ENOENT, CORAL_EINVAL
 * (known already, or a mode a writer could have held beside: CR or NL). */
int ges_recover_lvb(struct ges_core *c, const void *name, size_t len, int gr, const uint8_t *lvb);
/* Every resource for which keep() says false goes, with its locks, and nothing is told:
 * their holders rebuild them at their new masters. */
void ges_drop(struct ges_core *c, bool (*keep)(void *arg, const uint8_t *name, size_t len), void *arg);

/* The fast path (lmdd(8), FAST PATH) hands resources over both ways. ges_set_lvb: resource
 * name[len] (made if new) gets this value block state, as the fast table had it (CORAL_EFULL).
 * ges_take_idle: a resource with no lock goes, its value block state told (CORAL_ENOENT: no
 * such resource, CORAL_EBUSY: it has locks). ges_has: whether it is here. */
int ges_set_lvb(struct ges_core *c, const void *name, size_t len, const uint8_t *lvb, bool valid, bool written);
int ges_take_idle(struct ges_core *c, const void *name, size_t len, uint8_t *lvb, bool *valid, bool *written);
bool ges_has(const struct ges_core *c, const void *name, size_t len);
/* The value block's state of a resource here (written: it has one to keep, a value or not
 * valid, known here). CORAL_ENOENT. */
int ges_lvb_state(const struct ges_core *c, const void *name, size_t len, uint8_t *lvb, bool *valid, bool *written);
/* The old master of a resource, alive, hands over its value block as the map moves it here:
 * taken unless it was written here since (then that is newer), the resource made if new.
 * CORAL_EEXIST (written here since), CORAL_EFULL, CORAL_EINVAL. */
int ges_handoff_lvb(struct ges_core *c, const void *name, size_t len, const uint8_t *lvb, bool valid);
/* Calls fn on the name of every resource here. */
void ges_each_resource(const struct ges_core *c, void (*fn)(void *arg, const uint8_t *name, size_t len), void *arg);

/* A wait on resource name[len]: the queued lock (waiter) and one lock in its way (holder):
 * a granted mode that does not go with what the waiter asks, or a lock queued before it
 * asking for one that does not. held: whether the waiter holds a mode there (a conversion). */
struct ges_wait {
	uint32_t wnode, hnode;
	uint64_t wsession, hsession, lkid, since_ms;
	bool held;
	int prio;               /* the waiter's priority (ges_set_priority) */
};
/* The waits on the resource, locks with GES_F_NODLCKWT left out: up to max in out; returns
 * how many there are (0 for an unknown resource). */
int ges_waits(const struct ges_core *c, const void *name, size_t len, struct ges_wait *out, int max);
/* Calls fn on the name of every resource with a queued lock. */
void ges_each_waiting(const struct ges_core *c, void (*fn)(void *arg, const uint8_t *name, size_t len), void *arg);
/* Lock (node, lkid) gets the priority of its session for the choice of deadlock victims
 * (GES_PRIO_MIN..GES_PRIO_MAX, 0 by default: the lowest is chosen first). CORAL_ENOENT,
 * CORAL_EINVAL. */
#define GES_PRIO_MIN (-100)
#define GES_PRIO_MAX 100
int ges_set_priority(struct ges_core *c, uint32_t node, uint64_t lkid, int prio);
/* The deadlock coordinator chose lock (node, lkid) as the victim: refused with CORAL_EDEADLK
 * if it still waits (a conversion keeps its mode). CORAL_ENOENT, CORAL_EINVAL (not queued). */
int ges_victim(struct ges_core *c, uint32_t node, uint64_t lkid);

const struct ges_stats *ges_core_stats(const struct ges_core *c);
uint32_t ges_core_resources(const struct ges_core *c);
uint32_t ges_core_locks(const struct ges_core *c);
/* The locks of resource name[len] in queue order (granted, converting, waiting), up to max;
 * returns how many there are (-1: no such resource). lvb/lvb_valid: its value block. */
int ges_resource(const struct ges_core *c, const void *name, size_t len, struct ges_lock_view *out, int max,
		 uint8_t *lvb, bool *lvb_valid);
/* Checks the invariants (granted modes compatible, queues well formed, counts right): 0, or
 * -1 with what broke in err. */
int ges_check(const struct ges_core *c, char *err, size_t n);

#endif

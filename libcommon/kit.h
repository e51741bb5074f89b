/* The daemon kit: how a daemon with a pure core (a state machine that does no I/O) and
 * peers on the other nodes is wired to its event loop, written once. A daemon embeds a
 * struct coral_kit, says in a coral_kit_def where its interconnect listens, how often it
 * ticks and how its core takes the clock and a message, and the kit does the rest:
 *   - the interconnect, started once raftd has given the node an incarnation, moved to each
 *     new incarnation, and closed to every incarnation raftd has evicted;
 *   - the self-delivery queue: a message a core sends to its own node comes back from the
 *     loop, never from inside the send (selfq.h);
 *   - the tick, which hands the daemon the cluster view raftd published;
 *   - the bounded table of control requests answered later (a cookie per request, given to
 *     the core and handed back with its answer);
 *   - the core's send and log operations.
 * The core's clock is brought to now before every input the kit delivers, and by
 * coral_kit_core() before the daemon's own calls into it. */
#ifndef CORAL_KIT_H
#define CORAL_KIT_H

#include "cluster.h"
#include "daemon.h"
#include "net.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coral_selfq;
struct Coral__CtlRequest;

struct coral_kit_def {
	int port;                    /* CORAL_PORT_*: the interconnect listens on base_port + port */
	uint32_t tick_ms;
	size_t selfq;                /* messages to itself queued at once; more are refused as busy */
	size_t waits;                /* control requests waiting for a later answer, at once */
	/* the core's inputs; core is what coral_kit_start() was given */
	void (*clock)(void *core, uint64_t mono_ns, uint64_t real_ns);
	void (*recv)(void *core, uint32_t from, uint8_t type, const uint8_t *data, size_t len);
	/* the daemon's part of each tick, after the kit's own, with raftd's view */
	void (*tick)(void *arg, const struct coral_cluster_view *v);
};

/* A control request whose answer comes later: whom to answer, and the daemon's own. */
struct coral_wait {
	uint64_t conn, req_id;
	uint64_t started_ns;
	uint32_t aux[3];
};

struct coral_kit {
	struct coral_daemon *d;
	const struct coral_kit_def *def;
	void *arg;                   /* the daemon's state, given to def->tick */
	void *core;
	uint32_t self;
	struct coral_cluster_sga *cl;
	struct coral_net *net;       /* NULL until the node has an incarnation */
	struct coral_net_files files;
	uint64_t incarnation;
	uint64_t fenced_inc[CORAL_MAX_NODES + 1];   /* lowest incarnation accepted, per evicted node */
	struct coral_selfq *selfq;
	struct event *ev_tick;
	struct coral_wait *waits;    /* def->waits slots */
	bool *wait_used;
	size_t wait_hint, waits_used;
	uint64_t waits_full;         /* requests refused because every slot was taken */
};

/* Sets the kit up on the daemon (the SGA must have a cluster section). 0, or a CORAL_E*
 * code after logging why. */
int coral_kit_init(struct coral_kit *k, struct coral_daemon *d, const struct coral_kit_def *def, void *arg);
/* Starts the tick and the deliveries to core. */
int coral_kit_start(struct coral_kit *k, void *core);
void coral_kit_fini(struct coral_kit *k);

/* The core, its clock brought to now: timestamps taken between two ticks are then exact
 * rather than up to a tick old. */
void *coral_kit_core(struct coral_kit *k);

/* The core's send: to this node through the self-delivery queue, else over the
 * interconnect (CORAL_ENOTCONN before it has started). */
int coral_kit_send(struct coral_kit *k, uint32_t to, uint8_t type, const uint8_t *buf, size_t len);
/* The core's log, level a CORAL_LOG_* (arg is not used). */
void coral_kit_log(void *arg, int level, const char *msg);

/* A cookie for a request answered later (0: the table is full, which is counted), and the
 * wait it names, taken out of the table (false: unknown or already answered). */
uint64_t coral_kit_wait_add(struct coral_kit *k, uint64_t conn, const struct Coral__CtlRequest *req,
			    const uint32_t aux[3]);
bool coral_kit_wait_take(struct coral_kit *k, uint64_t cookie, struct coral_wait *out);

#endif

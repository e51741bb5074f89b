/* grdd's state, shared by its wiring (grdd.c: the kit, the core's operations, raftd's map
 * record, the tick) and its control requests (ctl.c). */
#ifndef CORAL_GRDD_GRDD_H
#define CORAL_GRDD_GRDD_H

#include "core.h"

#include "ctl.h"
#include "daemon.h"
#include "kit.h"

#include <stdbool.h>
#include <stdint.h>

struct grdd {
	struct coral_daemon *d;
	struct coral_kit kit;
	uint32_t self;
	struct grd_core *core;
	struct coral_ctl_client *raft;
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir, *held;
	bool read_done, get_out, watch_out;
	bool raft_answered;  /* the current connection to raftd has answered */
	uint64_t watch_index, raft_retry_ms;
	/* the core's cookie of the map store under way: the core has one at most (store_busy),
	 * so it lives here, not in an allocation a call dropped at shutdown would leak */
	uint64_t store_cookie;
};

static inline struct grd_core *grdd_core(struct grdd *g) { return coral_kit_core(&g->kit); }

/* ctl.c: the control requests */
void grdd_h_status(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);
void grdd_h_resource(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);
void grdd_h_top(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);
void grdd_h_remaster(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);
void grdd_h_history(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);
void grdd_h_lock(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);

#endif

/* lmsd's state, shared by its wiring (lmsd.c: the kit, the GCS core's operations on data
 * files and the log, sessions' block requests, the tick), its status requests (ctl.c) and its
 * consistent-read port (cr.c). */
#ifndef CORAL_LMSD_LMSD_H
#define CORAL_LMSD_LMSD_H

#include "gcs.h"

#include "bufcache.h"
#include "cluster.h"
#include "ctl.h"
#include "daemon.h"
#include "grd.h"
#include "ipc.h"
#include "kit.h"
#include "redo.h"
#include "storage.h"

#include <stdbool.h>
#include <stdint.h>

/* The thread's end at a moment: how far behind the checkpoint is, in time. */
struct lmsd_lsn_at {
	uint64_t lsn, ns;
};
#define LSN_HIST 256

struct lmsd {
	struct coral_daemon *d;
	struct coral_kit kit;
	uint32_t self;
	struct gcs_core *core;
	struct coral_cluster_sga *cl;
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir;
	struct coral_cache *cache;
	struct coral_redo *redo;
	bool fenced;                       /* the node is fenced: no sessions served, no writes */
	uint64_t next_checkpoint_ms, next_reap_ms, next_revoke_ms;
	int fds[CORAL_MAX_DATAFILES + 1];
	char *paths[CORAL_MAX_DATAFILES + 1];  /* each open data file's path, for the log */
	bool unsynced[CORAL_MAX_DATAFILES + 1];
	struct lmsd_worker *flusher;       /* a checkpoint's writes and fdatasync, off the loop */
	const struct gcs_write *flush;     /* ... the blocks it writes (the core's, until synced) */
	uint32_t nflush;
	struct coral_ipc_server *cr_srv;   /* base_port+4: CR copies for other nodes' sessions */
	struct ssl_ctx_st *cr_tls;         /* ... over TLS when [tls] is on */
	uint8_t *cr_scratch;               /* ... a block's consistent image copied out of the latch */
	uint64_t cr_direct, cr_direct_refused;
	uint64_t cr_port_refused;          /* CR connections closed: no hello, or a wrong one */
	struct lmsd_lsn_at lsn_hist[LSN_HIST];  /* ... one a checkpoint */
	uint32_t nlsn_hist;
	struct lmsd_logwait *logwait;      /* log forces: a thread waits, the loop does not */
	uint64_t log_warned_ns;            /* a failing log force is logged once a second */
	bool stopping;                     /* lmsd_fini: the last checkpoint may wait */
	int lock_fd;                       /* the instance lock, held shared */
	uint64_t loss_seen[CORAL_MAX_NODES];   /* each node's last loss handed to the core */
	/* started after an lmsd that died with the cache serving: the transfers it had under
	 * way are gone with its memory, so the node leaves and is recovered (lmsd(8), restart) */
	bool escalating;
	int32_t escalated_from;            /* the pid of the lmsd that died */
	uint64_t escalate_sent_ms, escalate_since_ms;
	uint64_t dropped_out;              /* peers' messages dropped while out of the cluster */
};

/* ctl.c: coralctl gcs stats, gcs block */
void lmsd_h_stats(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);
void lmsd_metrics(struct coral_daemon *d, struct coral_metrics_slot *s);
extern const char *const lmsd_gauges[];
void lmsd_h_block(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req);
/* cr.c: the consistent-read port on base_port+4 ([cache] cr_direct) */
int lmsd_cr_start(struct lmsd *l);

#endif

/* smond: taking back the open transactions of processes that died (see deadtxn.c). */
#ifndef SMOND_DEADTXN_H
#define SMOND_DEADTXN_H

#include "bufcache.h"
#include "conf.h"
#include "history.h"
#include "redo.h"

#define DEADTXN_MS 200 /* how often smond looks */

struct smond_deadtxn {
	const struct coral_conf *conf;
	struct coral_cache *cache;
	struct coral_redo *redo;
	struct rcv_history *history;   /* each transaction taken back is recorded here */
};

/* Dead processes' transactions waiting for smond now. */
uint32_t smond_deadtxn_pending(const struct smond_deadtxn *dt);

/* Takes back the transaction of every slot lmsd left to smond; how many slots were freed.
 * One that cannot be done now (the log writer stopped or slow, the node fenced) is tried at
 * the next step. */
int smond_deadtxn_step(struct smond_deadtxn *dt);

#endif

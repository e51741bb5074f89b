/* The standbys' gate for a primary node's commits, its core (no I/O): from what each
 * standby has acknowledged, up to which LSN a commit may return.
 *
 * Synchronous ([replication] sync): FIRST k (a, b, c) takes the first k of the named
 * standbys that are connected, in the order given, and the gate is the lowest of their
 * acknowledgements; ANY k takes the k-th highest acknowledgement of the connected named
 * ones. The RPO (max_lag_bytes, max_lag_ms) holds against the best standby: the gate is its
 * acknowledgement plus max_lag_bytes, and no more than its acknowledgement while its oldest
 * missing redo is older than max_lag_ms. The gate is the lower of the two.
 *
 * Short of k sync standbys connected (or past the RPO with none connected), the gate stays
 * where it is: commits wait (strict). With sync_fallback_ms, once short that long the node
 * falls back to asynchronous commits, and returns to the gate once k named standbys are
 * connected and caught up (each within catch_up bytes of the durable LSN); each switch is an
 * event with its reason. */
#ifndef CORAL_REPLICAD_GATE_H
#define CORAL_REPLICAD_GATE_H

#include "conf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gate_standby {
	const char *name;          /* its [cluster] name ("" until its challenge) */
	bool connected;
	uint64_t acked;            /* durable there up to here */
	uint64_t lag_ms;           /* how long its oldest missing redo has been durable here */
};

struct gate_conf {
	struct coral_sync_spec spec;
	uint64_t fallback_ms;      /* 0: strict */
	uint64_t max_lag_bytes, max_lag_ms;
	uint64_t catch_up;         /* bytes behind that count as caught up */
};

struct gate {
	bool fallen;               /* asynchronous after a fallback */
	uint64_t short_since_ns;   /* the gate has been short since (0: it is not) */
	uint64_t lsn;              /* the gate, as last computed */
	bool on;
	uint64_t switches;
	char why[200];             /* the last switch's reason */
};

enum gate_event { GATE_NONE, GATE_FELL_BACK, GATE_RESUMED };

/* Evaluates the gate at now_ns: *on and *lsn for coral_redo_gate_set. Returns the switch this
 * evaluation made, its reason in g->why. */
enum gate_event gate_eval(struct gate *g, const struct gate_conf *c, const struct gate_standby *s, int n,
			  uint64_t durable, uint64_t now_ns, bool *on, uint64_t *lsn);

#endif

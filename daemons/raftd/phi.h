/* Phi-accrual failure detector (Hayashibara et al.), one per peer. It keeps the last
 * `window` heartbeat inter-arrival times and says how unlikely the present silence is:
 * phi = -log10(P(an interval at least this long)), with intervals taken as normally
 * distributed around their mean. phi 8 means the silence had a 1e-8 chance. A floor on the
 * standard deviation keeps a very regular peer from being suspected after a few ms. */
#ifndef CORAL_RAFTD_PHI_H
#define CORAL_RAFTD_PHI_H

#include <stddef.h>
#include <stdint.h>

#define PHI_MAX_WINDOW 10000

struct phi {
	double *samples;     /* ms, ring */
	size_t window, start, n;
	double sum, sumsq;
	uint64_t last_ns;    /* last arrival, 0: none yet */
	double min_stddev_ms;
	double expected_ms;  /* the heartbeat interval, used until an interval is measured */
};

int phi_init(struct phi *p, size_t window, double min_stddev_ms, double expected_ms);
void phi_free(struct phi *p);
void phi_reset(struct phi *p);
void phi_heartbeat(struct phi *p, uint64_t now_ns);
/* 0 before any heartbeat was seen. */
double phi_value(const struct phi *p, uint64_t now_ns);

#endif

/* How many seeds a model test runs: n, or CORAL_SIM_SCALE percent of it (at least 1). The
 * ASan+UBSan stage of scripts/test-all.sh runs half: it looks for memory errors, which the
 * first seeds find as well as the last; the plain build runs them all. */
#ifndef CORAL_SIM_SCALE_H
#define CORAL_SIM_SCALE_H

#include <stdlib.h>

static inline int sim_seeds(int n)
{
	const char *e = getenv("CORAL_SIM_SCALE");
	long pct = e ? strtol(e, NULL, 10) : 100;
	if (pct <= 0 || pct > 100)
		pct = 100;
	long k = (long)n * pct / 100;
	return k > 0 ? (int)k : 1;
}

#endif

/* Phi-accrual failure detector (see phi.h). */
#include "phi.h"
#include "errors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int phi_init(struct phi *p, size_t window, double min_stddev_ms, double expected_ms)
{
	memset(p, 0, sizeof(*p));
	if (window < 2 || window > PHI_MAX_WINDOW)
		return CORAL_EINVAL;
	p->samples = calloc(window, sizeof(*p->samples));
	if (p->samples == NULL)
		return CORAL_ENOMEM;
	p->window = window;
	p->min_stddev_ms = min_stddev_ms;
	p->expected_ms = expected_ms;
	return 0;
}

void phi_free(struct phi *p)
{
	free(p->samples);
	p->samples = NULL;
}

void phi_reset(struct phi *p)
{
	p->start = p->n = 0;
	p->sum = p->sumsq = 0;
	p->last_ns = 0;
}

void phi_heartbeat(struct phi *p, uint64_t now_ns)
{
	if (p->last_ns && now_ns > p->last_ns) {
		double ms = (double)(now_ns - p->last_ns) / 1e6;
		if (p->n == p->window) {
			double old = p->samples[p->start];
			p->sum -= old;
			p->sumsq -= old * old;
			p->start = (p->start + 1) % p->window;
			p->n--;
		}
		p->samples[(p->start + p->n) % p->window] = ms;
		p->n++;
		p->sum += ms;
		p->sumsq += ms * ms;
	}
	if (now_ns > p->last_ns)
		p->last_ns = now_ns;
}

double phi_value(const struct phi *p, uint64_t now_ns)
{
	if (p->last_ns == 0 || now_ns <= p->last_ns)
		return 0;
	/* before the first interval is known, assume the configured one (Akka does the same):
	 * a peer that goes silent right after its first heartbeat is still suspected */
	double mean = p->n ? p->sum / (double)p->n : p->expected_ms;
	double var = p->n ? p->sumsq / (double)p->n - mean * mean : 0;
	double sd = var > 0 ? sqrt(var) : p->n ? 0 : p->expected_ms / 4;
	if (sd < p->min_stddev_ms)
		sd = p->min_stddev_ms;
	double t = (double)(now_ns - p->last_ns) / 1e6;
	double z = (t - mean) / sd;
	double tail = 0.5 * erfc(z / sqrt(2.0));   /* P(interval >= t) */
	if (tail < 1e-300)
		return 300;
	return -log10(tail);
}

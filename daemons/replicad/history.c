/* replicad's history of replication events (history.h). */
#include "history.h"

#include "util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct repl_event ring[REPL_HISTORY];
static uint64_t n;

void repl_history_add(const char *kind, const char *fmt, ...)
{
	struct repl_event e;
	e.at_ms = coral_now_real_ns() / 1000000ull;
	coral_strlcpy(e.kind, kind, sizeof(e.kind));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.text, sizeof(e.text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&mu);
	ring[n++ % REPL_HISTORY] = e;
	pthread_mutex_unlock(&mu);
}

size_t repl_history_get(struct repl_event *out, size_t max)
{
	pthread_mutex_lock(&mu);
	uint64_t first = n > REPL_HISTORY ? n - REPL_HISTORY : 0;
	size_t k = 0;
	for (uint64_t i = first; i < n && k < max; i++)
		out[k++] = ring[i % REPL_HISTORY];
	pthread_mutex_unlock(&mu);
	return k;
}

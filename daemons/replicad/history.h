/* replicad's history of replication events, for coralctl standby history: on a primary
 * node, commit mode switches (a fallback to async and its reason, the return to sync, a
 * changed [replication] sync) and slots dropped; on a standby, seeds and the apply's stops.
 * The last REPL_HISTORY events, in memory (each also logged); any thread may add. */
#ifndef CORAL_REPLICAD_HISTORY_H
#define CORAL_REPLICAD_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#define REPL_HISTORY 128

struct repl_event {
	uint64_t at_ms;
	char kind[24];
	char text[232];
};

void repl_history_add(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The events, oldest first, into out (at most max); how many. */
size_t repl_history_get(struct repl_event *out, size_t max);

#endif

/* Logging for every Coral program: to stderr and/or syslog, five levels, a "daemon/node"
 * tag on every line, and a per-call-site rate limit so that a flood of one message (a peer
 * sending garbage, say) is counted instead of printed. The log is per process by nature;
 * its state is the one piece of process-global state in libcommon. */
#ifndef CORAL_LOG_H
#define CORAL_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum coral_log_level {
	CORAL_LOG_ERROR,
	CORAL_LOG_WARNING,
	CORAL_LOG_NOTICE,
	CORAL_LOG_INFO,
	CORAL_LOG_DEBUG,
};

struct coral_log_opts {
	const char *program;    /* "lmsd", "coral-node" */
	int node_id;            /* 0: none */
	int level;
	bool to_stderr;
	bool to_syslog;
	int burst;              /* messages per call site per interval */
	int interval_ms;
};

void coral_log_init(const struct coral_log_opts *opts);
void coral_log_set_level(int level);
void coral_log_set_ratelimit(int burst, int interval_ms);
int coral_log_level(void);

/* The format string's address identifies the call site for rate limiting. */
void coral_log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* How many messages the rate limit has suppressed since start. */
uint64_t coral_log_suppressed(void);

#define log_error(...) coral_log_msg(CORAL_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) coral_log_msg(CORAL_LOG_WARNING, __VA_ARGS__)
#define log_notice(...) coral_log_msg(CORAL_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) coral_log_msg(CORAL_LOG_INFO, __VA_ARGS__)
#define log_debug(...) coral_log_msg(CORAL_LOG_DEBUG, __VA_ARGS__)

/* Logs and exits: only for a broken invariant, never for bad input. */
void coral_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif

/* Implementation of log.h. The rate limiter keeps a small fixed table of call sites
 * (format-string addresses); when a site exceeds its burst within an interval, further
 * messages are counted and one summary line is printed when the interval ends. */
#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define CORAL__LOG_SITES 64

struct coral__log_site {
	const char *fmt;
	uint64_t window_start_ns;
	int count;
	int suppressed;
};

static struct {
	pthread_mutex_t mu;
	char tag[48];
	int level;
	bool to_stderr, to_syslog;
	int burst;
	uint64_t interval_ns;
	uint64_t suppressed_total;
	struct coral__log_site sites[CORAL__LOG_SITES];
} coral__log = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.tag = "coral",
	.level = CORAL_LOG_INFO,
	.to_stderr = true,
	.burst = 20,
	.interval_ns = 5000000000ull,
};

static const char *const coral__lvl_name[] = {"error", "warning", "notice", "info", "debug"};
static const int coral__lvl_syslog[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG};

void coral_log_init(const struct coral_log_opts *o)
{
	pthread_mutex_lock(&coral__log.mu);
	if (o->node_id > 0)
		snprintf(coral__log.tag, sizeof(coral__log.tag), "%s/node%d", o->program, o->node_id);
	else
		snprintf(coral__log.tag, sizeof(coral__log.tag), "%s", o->program);
	coral__log.level = o->level;
	coral__log.to_stderr = o->to_stderr;
	if (o->to_syslog && !coral__log.to_syslog)
		openlog(o->program, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	coral__log.to_syslog = o->to_syslog;
	coral__log.burst = o->burst > 0 ? o->burst : 20;
	coral__log.interval_ns = (uint64_t)(o->interval_ms > 0 ? o->interval_ms : 5000) * 1000000ull;
	memset(coral__log.sites, 0, sizeof(coral__log.sites));
	pthread_mutex_unlock(&coral__log.mu);
}

void coral_log_set_level(int level)
{
	__atomic_store_n(&coral__log.level, level, __ATOMIC_RELAXED);
}

int coral_log_level(void)
{
	return __atomic_load_n(&coral__log.level, __ATOMIC_RELAXED);
}

void coral_log_set_ratelimit(int burst, int interval_ms)
{
	pthread_mutex_lock(&coral__log.mu);
	coral__log.burst = burst;
	coral__log.interval_ns = (uint64_t)interval_ms * 1000000ull;
	pthread_mutex_unlock(&coral__log.mu);
}

uint64_t coral_log_suppressed(void)
{
	pthread_mutex_lock(&coral__log.mu);
	uint64_t n = coral__log.suppressed_total;
	pthread_mutex_unlock(&coral__log.mu);
	return n;
}

/* Called with the mutex held. */
static void coral__emit(int level, const char *msg)
{
	if (coral__log.to_stderr) {
		struct timespec ts;
		struct tm tm;
		char when[32];
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %s[%d] %s: %s\n", when, ts.tv_nsec / 1000000, coral__log.tag,
			(int)getpid(), coral__lvl_name[level], msg);
	}
	if (coral__log.to_syslog)
		syslog(coral__lvl_syslog[level], "%s: %s", coral__log.tag, msg);
}

/* Returns true if this message may be printed; may print a summary of a finished window. */
static bool coral__ratelimit(int level, const char *fmt)
{
	uint64_t now = coral_now_mono_ns();
	size_t h = ((uintptr_t)fmt >> 3) % CORAL__LOG_SITES;
	struct coral__log_site *s = &coral__log.sites[h];
	if (s->fmt != fmt || now - s->window_start_ns >= coral__log.interval_ns) {
		if (s->suppressed > 0) {
			char sum[128];
			snprintf(sum, sizeof(sum), "previous message repeated %d more times (rate limited)",
				 s->suppressed);
			coral__emit(level, sum);
		}
		s->fmt = fmt;
		s->window_start_ns = now;
		s->count = 0;
		s->suppressed = 0;
	}
	if (++s->count <= coral__log.burst)
		return true;
	s->suppressed++;
	coral__log.suppressed_total++;
	return false;
}

static void coral__vlog(int level, bool limited, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	pthread_mutex_lock(&coral__log.mu);
	if (!limited || coral__ratelimit(level, fmt))
		coral__emit(level, msg);
	pthread_mutex_unlock(&coral__log.mu);
}

void coral_log_msg(int level, const char *fmt, ...)
{
	if (level < 0)
		level = 0;
	if (level > CORAL_LOG_DEBUG)
		level = CORAL_LOG_DEBUG;
	if (level > coral_log_level())
		return;
	va_list ap;
	va_start(ap, fmt);
	coral__vlog(level, true, fmt, ap);
	va_end(ap);
}

void coral_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	coral__vlog(CORAL_LOG_ERROR, false, fmt, ap);
	va_end(ap);
	abort();
}

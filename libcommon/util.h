/* Small helpers shared by every program: clocks, bounded string copy, number and size
 * parsing, directories, and the question "is this host address this machine?". */
#ifndef CORAL_UTIL_H
#define CORAL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CORAL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

uint64_t coral_now_mono_ns(void);   /* CLOCK_MONOTONIC: the same clock in every process */
uint64_t coral_now_real_ns(void);

/* splitmix64: a small reproducible generator; *state is the seed and advances. */
static inline uint64_t coral_splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}   /* CLOCK_REALTIME, for wall-clock display only */

/* Copies at most dstsz-1 bytes and terminates; returns false if src was cut. */
bool coral_strlcpy(char *dst, const char *src, size_t dstsz);

/* Parses a whole string as a signed integer; false on junk or overflow. */
bool coral_parse_int(const char *s, int64_t *out);
/* Parses "4096", "64K", "64M", "2G" (powers of 1024); false on junk or overflow. */
bool coral_parse_size(const char *s, int64_t *out);
/* Formats a byte count: "64 MiB" when exact, else "63.9 MiB", or bytes below 1 KiB. */
void coral_format_size(int64_t v, char *buf, size_t bufsz);

/* mkdir -p with the given mode for each created component. */
int coral_mkdir_p(const char *path, mode_t mode);
/* When this process is root and the directory dir belongs to another user (the daemons'
 * own: shared storage, a run or data dir of a packaged install), gives the file it just
 * made there (fd, or path when fd < 0) that directory's owner and group, so that what an
 * operator creates as root (coralctl datafile create, coral-bank) the daemons can open.
 * Otherwise does nothing. 0, or -1 with errno. */
int coral_own_like_dir(int fd, const char *path, const char *dir);

/* Writes dir/name whole or not at all: dir/name.tmp written and fsync'd, renamed over it, the
 * directory fsync'd (a reader finds the old file or the new one). 0, or a CORAL_E* code with
 * the file and cause in err. */
int coral_write_file_atomic(const char *dir, const char *name, const void *data, size_t len, mode_t mode, char *err,
			    size_t errsz);

/* True if host is a loopback name/address or an address or name of this machine. */
bool coral_host_is_local(const char *host);
/* True if host is a valid IPv4/IPv6 literal or a syntactically valid host name. */
bool coral_host_is_valid(const char *host);
/* "HOST:PORT" (an IPv6 address in brackets: "[::1]:7407") into host and port: false if it is
 * not one (a valid host, a port 1-65535). */
bool coral_parse_hostport(const char *s, char *host, size_t hostsz, int *port);

/* Directory holding the running executable, from /proc/self/exe. */
int coral_self_dir(char *buf, size_t bufsz);

/* True if a process with this pid exists (and we may or may not signal it). */
bool coral_pid_alive(pid_t pid);
/* When the process started (clock ticks after boot from /proc/PID/stat, plus one): with the
 * pid it names one process for good, as a pid alone does not once the pid is reused. 0 if the
 * process is gone or a zombie, UINT64_MAX if it exists but its start cannot be read. */
uint64_t coral_pid_start(pid_t pid);
/* True if /proc/PID/comm names this program (guards against pid reuse). */
bool coral_pid_is(pid_t pid, const char *comm);

#endif

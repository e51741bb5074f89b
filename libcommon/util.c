/* Implementation of the small helpers in util.h. */
#include "util.h"
#include "errors.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t coral__clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t coral_now_mono_ns(void) { return coral__clock_ns(CLOCK_MONOTONIC); }
uint64_t coral_now_real_ns(void) { return coral__clock_ns(CLOCK_REALTIME); }

bool coral_strlcpy(char *dst, const char *src, size_t dstsz)
{
	size_t n = strlen(src);
	if (dstsz == 0)
		return n == 0;
	size_t c = n < dstsz - 1 ? n : dstsz - 1;
	memcpy(dst, src, c);
	dst[c] = '\0';
	return c == n;
}

bool coral_parse_int(const char *s, int64_t *out)
{
	if (s == NULL || *s == '\0')
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || isspace((unsigned char)*s))
		return false;
	*out = v;
	return true;
}

bool coral_parse_size(const char *s, int64_t *out)
{
	if (s == NULL || !isdigit((unsigned char)*s))
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: return false;
	}
	if (*end == 'i' || *end == 'B') { /* accept KiB / KB spellings */
		if (*end == 'i')
			end++;
		if (*end == 'B')
			end++;
	}
	if (*end != '\0' || v > ((unsigned long long)INT64_MAX >> shift))
		return false;
	*out = (int64_t)(v << shift);
	return true;
}

void coral_format_size(int64_t v, char *buf, size_t bufsz)
{
	static const char *const unit[] = {"GiB", "MiB", "KiB"};
	static const int shift[] = {30, 20, 10};
	for (size_t i = 0; i < 3; i++) {
		int64_t u = (int64_t)1 << shift[i];
		if (v >= u && v % u == 0) {
			snprintf(buf, bufsz, "%lld %s", (long long)(v / u), unit[i]);
			return;
		}
	}
	for (size_t i = 0; i < 3; i++) {
		int64_t u = (int64_t)1 << shift[i];
		if (v >= u) {
			snprintf(buf, bufsz, "%.1f %s", (double)v / (double)u, unit[i]);
			return;
		}
	}
	snprintf(buf, bufsz, "%lld B", (long long)v);
}

int coral_own_like_dir(int fd, const char *path, const char *dir)
{
	struct stat st;
	if (geteuid() != 0 || stat(dir, &st) != 0 || (st.st_uid == 0 && st.st_gid == 0))
		return 0;
	return fd >= 0 ? fchown(fd, st.st_uid, st.st_gid) : chown(path, st.st_uid, st.st_gid);
}

/* mkdir of one component; a new one gets its parent's owner (coral_own_like_dir) */
static int mkdir_owned(char *tmp, mode_t mode)
{
	if (mkdir(tmp, mode) != 0)
		return errno == EEXIST ? 0 : -1;
	char *slash = strrchr(tmp, '/');
	if (slash == NULL || slash == tmp)
		return 0;
	*slash = '\0';
	char parent[PATH_MAX];
	coral_strlcpy(parent, tmp, sizeof(parent));
	*slash = '/';
	return coral_own_like_dir(-1, tmp, parent);
}

int coral_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	if (!coral_strlcpy(tmp, path, sizeof(tmp)))
		return CORAL_EINVAL;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir_owned(tmp, mode) != 0)
			return CORAL_ESYS;
		*p = '/';
	}
	if (mkdir_owned(tmp, mode) != 0)
		return CORAL_ESYS;
	struct stat st;
	if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode))
		return CORAL_ESYS;
	return 0;
}

static bool coral__addr_is_mine(const char *host)
{
	unsigned char want[16];
	int fam = AF_INET;
	if (inet_pton(AF_INET, host, want) != 1) {
		fam = AF_INET6;
		if (inet_pton(AF_INET6, host, want) != 1)
			return false;
	}
	if (fam == AF_INET && want[0] == 127)
		return true;
	if (fam == AF_INET6 && memcmp(want, &in6addr_loopback, 16) == 0)
		return true;
	struct ifaddrs *ifa, *it;
	if (getifaddrs(&ifa) != 0)
		return false;
	bool mine = false;
	for (it = ifa; it && !mine; it = it->ifa_next) {
		if (it->ifa_addr == NULL || it->ifa_addr->sa_family != fam)
			continue;
		if (fam == AF_INET)
			mine = memcmp(&((struct sockaddr_in *)it->ifa_addr)->sin_addr, want, 4) == 0;
		else
			mine = memcmp(&((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr, want, 16) == 0;
	}
	freeifaddrs(ifa);
	return mine;
}

bool coral_host_is_local(const char *host)
{
	if (strcmp(host, "localhost") == 0)
		return true;
	char name[256];
	if (gethostname(name, sizeof(name)) == 0) {
		name[sizeof(name) - 1] = '\0';
		if (strcmp(name, host) == 0)
			return true;
	}
	return coral__addr_is_mine(host);
}

bool coral_parse_hostport(const char *s, char *host, size_t hostsz, int *port)
{
	const char *colon = strrchr(s, ':');
	if (colon == NULL || colon == s)
		return false;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (colon[-1] != ']' || hl < 3)
			return false;
		h++;
		hl -= 2;
	}
	if (hl >= hostsz)
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	int64_t p;
	if (!coral_parse_int(colon + 1, &p) || p < 1 || p > 65535 || !coral_host_is_valid(host))
		return false;
	*port = (int)p;
	return true;
}

bool coral_host_is_valid(const char *host)
{
	unsigned char buf[16];
	if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)
		return true;
	size_t n = strlen(host);
	if (n == 0 || n > 253)
		return false;
	/* All digits and dots: it meant to be an IPv4 address and is not one. */
	if (strspn(host, "0123456789.") == n)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		char c = host[i];
		if (c == '.') {
			if (label == 0 || host[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-')
			return false;
		if (c == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && host[n - 1] != '-';
}

int coral_self_dir(char *buf, size_t bufsz)
{
	ssize_t n = readlink("/proc/self/exe", buf, bufsz - 1);
	if (n <= 0)
		return CORAL_ESYS;
	buf[n] = '\0';
	char *slash = strrchr(buf, '/');
	if (slash == NULL)
		return CORAL_ESYS;
	*slash = '\0';
	return 0;
}

/* Reads /proc/PID/stat: -1 if the process is gone or a zombie (it has exited; its parent,
 * maybe an init that reaps slowly, just has not collected it), 0 with *start its start time
 * (clock ticks after boot), 1 if it exists but its stat cannot be read. */
static int pid_stat(pid_t pid, uint64_t *start)
{
	*start = 0;
	if (pid <= 0)
		return -1;
	if (kill(pid, 0) != 0 && errno != EPERM)
		return -1;
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the fields after the parenthesised command name (which may hold anything) */
	char *rp = strrchr(buf, ')');
	if (rp == NULL || rp[1] != ' ')
		return 1;
	if (rp[2] == 'Z' || rp[2] == 'X')
		return -1;
	/* state is field 3, starttime field 22 */
	char *p = rp + 2;
	for (int field = 3; field < 22 && p; field++)
		if ((p = strchr(p, ' ')) != NULL)
			p++;
	if (p == NULL)
		return 1;
	*start = strtoull(p, NULL, 10);
	return 0;
}

bool coral_pid_alive(pid_t pid)
{
	uint64_t start;
	return pid_stat(pid, &start) >= 0;
}

uint64_t coral_pid_start(pid_t pid)
{
	uint64_t start;
	int rc = pid_stat(pid, &start);
	return rc < 0 ? 0 : rc > 0 ? UINT64_MAX : start + 1;
}

bool coral_pid_is(pid_t pid, const char *comm)
{
	char path[64], buf[64];
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	bool ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok)
		return false;
	buf[strcspn(buf, "\n")] = '\0';
	/* comm is cut at 15 characters; a zombie (killed, not yet reaped by a pid 1 that is
	 * slow to: containers) keeps its comm but runs nothing */
	return strncmp(buf, comm, 15) == 0 && coral_pid_alive(pid);
}

int coral_write_file_atomic(const char *dir, const char *name, const void *data, size_t len, mode_t mode, char *err,
			    size_t errsz)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	/* the temporary file is this process's: several may write the same file at once (every
	 * node of a cluster its shared fence), and the last rename wins whole */
	if (snprintf(tmp, sizeof(tmp), "%s/%s.%d.tmp", dir, name, (int)getpid()) >= (int)sizeof(tmp) ||
	    snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
		snprintf(err, errsz, "%s/%s: path too long", dir, name);
		return CORAL_EINVAL;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	int e = 0;
	if (fd >= 0 && coral_own_like_dir(fd, tmp, dir) != 0) {
		e = errno;
		close(fd);
	} else if (fd < 0) {
		e = errno;
	} else {
		const uint8_t *p = data;
		for (size_t left = len; left > 0 && e == 0;) {
			ssize_t k = write(fd, p, left);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				e = k < 0 ? errno : EIO;
			else {
				p += k;
				left -= (size_t)k;
			}
		}
		if (e == 0 && fsync(fd) != 0)
			e = errno;
		close(fd);
	}
	if (e == 0 && rename(tmp, path) != 0)
		e = errno;
	if (e == 0) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) != 0)
			e = errno ? errno : EIO;
		if (dfd >= 0)
			close(dfd);
	}
	if (e != 0) {
		snprintf(err, errsz, "writing %s: %s", path, strerror(e));
		if (fd >= 0)
			unlink(tmp);
		return coral_err_from_errno(e);
	}
	return 0;
}

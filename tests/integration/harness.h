/* What the integration tests share: running a command and capturing its output, and
 * writing a copy of etc/coral.conf for a test with its own directory, cluster name and
 * ports (a block of 128 in 10000-28047, reserved: below Linux's ephemeral range, which starts
 * at 32768, so an outgoing connection never holds a port a test is about to listen on, and
 * away from a developer's cluster on 7100-7399). Header-only: each test program is one file. */
#ifndef CORAL_TEST_HARNESS_H
#define CORAL_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

struct result {
	int code;
	char out[65536];
};

static struct result res;

/* Runs a shell command, capturing stdout and stderr together. */
static struct result *run(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static struct result *run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	strncat(cmd, " 2>&1", sizeof(cmd) - strlen(cmd) - 1);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(res.out, 1, sizeof(res.out) - 1, p);
	res.out[n] = '\0';
	int st = pclose(p);
	res.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	return &res;
}

/* Before a test's directory goes: what went wrong in its nodes stays in the test's log (a
 * node that did not start, a daemon that died, a sanitizer's report: the supervisor's and
 * daemons' stderr go to node.log). */
static void print_node_log_errors(const char *dir)
{
	if (run("grep -HE '\\] (error|warning): |exited|killed' %s/node*/node.log | grep -v 'stopped by' | tail -n 30",
		dir)->code == 0 && res.out[0])
		fprintf(stderr, "teardown: errors and warnings in the node logs:\n%s", res.out);
	if (run("grep -H -m1 -A40 -E 'Sanitizer|runtime error' %s/node*/node.log | head -n 120", dir)->code == 0 &&
	    res.out[0]) {
		fprintf(stderr, "teardown: sanitizer report in the node logs:\n%s", res.out);
		/* an assertion in a suite's fini does not fail the test; a crash there fails the
		 * program, which is what a daemon's memory error must do */
		run("rm -rf %s", dir);
		abort();
	}
}

static char *replace_all(char *text, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to);
	size_t cap = strlen(text) * 2 + 4096;
	char *out = malloc(cap), *o = out;
	cr_assert_not_null(out);
	for (char *p = text; *p;) {
		if (strncmp(p, from, fl) == 0) {
			memcpy(o, to, tl);
			o += tl;
			p += fl;
		} else {
			*o++ = *p++;
		}
	}
	*o = '\0';
	free(text);
	return out;
}

/* This test process's block of TEST_PORT_BLOCK ports: nodes 1-3 take +0..47, a standby
 * cluster +48..63, nodes 4 and 5 +64..95, a test's own listener the rest. Test programs run
 * side by side (meson runs several, criterion two tests of each), so a block is reserved:
 * an flock on /tmp/coral-test-ports/<base> held by this process and, through the inherited
 * descriptor, by every daemon it starts, so a block is not handed out again while anything
 * of the test that had it may still listen there; and no port of it may be held by anyone
 * else (a developer's cluster, a stray process). The search starts at a block derived from
 * the pid and walks on. */
#define TEST_PORT_BLOCK 128
#define TEST_PORT_FIRST 10000
#define TEST_PORT_BLOCKS ((28048 - TEST_PORT_FIRST) / TEST_PORT_BLOCK)

static bool test_ports_free(int base)
{
	for (int p = base; p < base + TEST_PORT_BLOCK; p++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return false;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int rc = bind(fd, (struct sockaddr *)&sin, sizeof(sin));
		close(fd);
		if (rc != 0)
			return false;
	}
	return true;
}

static int test_port_base(void)
{
	static pid_t owner;
	static int held;
	if (owner == getpid())
		return held;
	mkdir("/tmp/coral-test-ports", 01777);
	chmod("/tmp/coral-test-ports", 01777);
	int first = (int)(getpid() % TEST_PORT_BLOCKS);
	for (int i = 0; i < TEST_PORT_BLOCKS; i++) {
		int base = TEST_PORT_FIRST + ((first + i) % TEST_PORT_BLOCKS) * TEST_PORT_BLOCK;
		char path[64];
		snprintf(path, sizeof(path), "/tmp/coral-test-ports/%d", base);
		int fd = open(path, O_RDWR | O_CREAT, 0666);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 || !test_ports_free(base)) {
			close(fd);
			continue;
		}
		owner = getpid();
		held = base;  /* fd stays open: the reservation lasts as long as the process */
		return base;
	}
	cr_assert_fail("no free block of %d test ports in %d..28047", TEST_PORT_BLOCK, TEST_PORT_FIRST);
	return -1;
}

/* etc/coral.conf with run directories under dir, cluster name `name`, and ports of this
 * process's own; the caller applies its own replacements and writes it. */
static char *test_conf_text(const char *dir, const char *name, int *base_port)
{
	FILE *f = fopen(CORAL_SRCDIR "/etc/coral.conf", "r");
	cr_assert_not_null(f);
	char *text = calloc(1, 65536);
	cr_assert_not_null(text);
	size_t n = fread(text, 1, 65535, f);
	text[n] = '\0';
	fclose(f);
	text = replace_all(text, "/tmp/coral", dir);
	char buf[64];
	snprintf(buf, sizeof(buf), "name = %s", name);
	text = replace_all(text, "name = coral", buf);
	int base = test_port_base();
	for (int i = 1; i <= 3; i++) {
		char from[32], to[32];
		snprintf(from, sizeof(from), "base_port = 7%d00", i);
		snprintf(to, sizeof(to), "base_port = %d", base + (i - 1) * 16);
		text = replace_all(text, from, to);
	}
	if (base_port)
		*base_port = base;
	return text;
}

/* Garbage for a port (integration-security, integration-standby): seeded bytes. */
static uint64_t junk_state __attribute__((unused));
static inline uint8_t junk_byte(void)
{
	junk_state ^= junk_state << 13;
	junk_state ^= junk_state >> 7;
	junk_state ^= junk_state << 17;
	return (uint8_t)junk_state;
}

/* Opens a connection to TCP port `port` of 127.0.0.1, or to the Unix socket path; -1 if
 * nothing listens there. */
static inline int junk_connect(int port, const char *path)
{
	int fd;
	if (path) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
			close(fd);
			return -1;
		}
		return fd;
	}
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* What is thrown at each port: random bytes of random lengths, a frame header claiming 4 GiB,
 * an HTTP request, a TLS ClientHello's first bytes, 64 KiB of zeros, and a connection closed
 * half-way. Returns how many connections were taken. */
static inline int throw_junk(int port, const char *path)
{
	static const char http_req[] = "GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n\r\n";
	static const uint8_t tls_hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};
	static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2, 3, 4};
	static uint8_t buf[65536];
	int taken = 0;
	for (int k = 0; k < 24; k++) {
		int fd = junk_connect(port, path);
		if (fd < 0)
			return taken;
		taken++;
		size_t n;
		const void *p = buf;
		if (k == 0) {
			p = http_req;
			n = sizeof(http_req) - 1;
		} else if (k == 1) {
			p = tls_hello;
			n = sizeof(tls_hello);
		} else if (k == 2) {
			p = huge;
			n = sizeof(huge);
		} else if (k == 3) {
			memset(buf, 0, sizeof(buf));
			n = sizeof(buf);
		} else {
			n = 1 + junk_byte() % 4096u;
			for (size_t i = 0; i < n; i++)
				buf[i] = junk_byte();
		}
		/* the peer may close as soon as it sees what this is: a short write is fine */
		if (send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* refused at once */
		}
		if (k % 4 == 0)
			shutdown(fd, SHUT_WR); /* half-closed: the peer must not wait on it forever */
		else
			usleep(2000);
		close(fd);
	}
	return taken;
}

#endif

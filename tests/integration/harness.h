/* What the integration tests share: running a command and capturing its output, and
 * writing a copy of etc/coral.conf for a test with its own directory, cluster name and
 * ports (10000-28047: below Linux's ephemeral range, which starts at 32768, so an outgoing
 * connection never holds a port a test is about to listen on, and away from a developer's
 * cluster on 7100-7399). Header-only: each test program is one file. */
#ifndef CORAL_TEST_HARNESS_H
#define CORAL_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
	int base = 10000 + (int)(getpid() % 282) * 64;
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

#endif

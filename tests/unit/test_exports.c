/* libcoral.so exports exactly the functions coral.h declares (libcoral/coral.map): none of
 * the libcommon code it carries, and nothing of the header missing. Reads the library's
 * dynamic symbol table with nm(1). */
#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 4096

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the coral_* functions the header declares: "coral_name(" */
static size_t header_functions(char **out)
{
	FILE *f = fopen(CORAL_SRCDIR "/libcoral/coral.h", "r");
	cr_assert_not_null(f);
	regex_t re;
	cr_assert_eq(regcomp(&re, "\\b(coral_[a-z0-9_]+) *\\(", REG_EXTENDED), 0);
	char line[1024];
	size_t n = 0;
	while (fgets(line, sizeof(line), f)) {
		regmatch_t m[2];
		const char *p = line;
		while (n < MAXN && regexec(&re, p, 2, m, 0) == 0) {
			char *name = strndup(p + m[1].rm_so, (size_t)(m[1].rm_eo - m[1].rm_so));
			bool dup = false;
			for (size_t i = 0; i < n && !dup; i++)
				dup = strcmp(out[i], name) == 0;
			if (dup)
				free(name);
			else
				out[n++] = name;
			p += m[0].rm_eo;
		}
	}
	regfree(&re);
	fclose(f);
	qsort(out, n, sizeof(*out), cmp);
	return n;
}

/* the symbols libcoral.so defines and exports (any kind), version suffix cut */
static size_t exported(char **out)
{
	FILE *p = popen("nm -D --defined-only " LIBCORAL_SO " 2>&1", "r");
	cr_assert_not_null(p);
	char line[1024];
	size_t n = 0;
	while (n < MAXN && fgets(line, sizeof(line), p)) {
		char addr[64], kind[8], name[512];
		if (sscanf(line, "%63s %7s %511s", addr, kind, name) != 3 || strcmp(kind, "A") == 0)
			continue;  /* "A": the version node itself */
		char *at = strchr(name, '@');
		if (at)
			*at = 0;
		out[n++] = strdup(name);
	}
	cr_assert_eq(pclose(p), 0, "nm failed on " LIBCORAL_SO);
	qsort(out, n, sizeof(*out), cmp);
	return n;
}

Test(libcoral, exports_the_header_and_nothing_else)
{
	static char *want[MAXN], *got[MAXN];
	size_t nw = header_functions(want), ng = exported(got);
	cr_assert_gt(nw, 5, "coral.h declares functions");
	size_t i = 0, j = 0;
	while (i < nw || j < ng) {
		int c = i == nw ? 1 : j == ng ? -1 : strcmp(want[i], got[j]);
		cr_expect(c >= 0, "coral.h declares %s; libcoral.so does not export it", want[i]);
		cr_expect(c <= 0, "libcoral.so exports %s, which coral.h does not declare", got[j]);
		if (c <= 0)
			i++;
		if (c >= 0)
			j++;
	}
	for (size_t k = 0; k < nw; k++)
		free(want[k]);
	for (size_t k = 0; k < ng; k++)
		free(got[k]);
}

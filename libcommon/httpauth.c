/* Bearer tokens of the HTTP ports (httpauth.h). */
#include "httpauth.h"

#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int coral_token_load(const char *path, const char *option, char **out, char *err, size_t errsz)
{
	*out = NULL;
	if (path[0] == '\0')
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errsz, "%s %s: %s", option, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return CORAL_ECONFIG;
	}
	char buf[512];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(err, errsz, "%s %s is readable or writable by others: chmod o-rw %s", option, path, path);
		return CORAL_ECONFIG;
	}
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (strlen(buf) < 16) {
		snprintf(err, errsz, "%s %s holds a token shorter than 16 characters", option, path);
		OPENSSL_cleanse(buf, sizeof(buf));
		return CORAL_ECONFIG;
	}
	*out = strdup(buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	return *out ? 0 : CORAL_ENOMEM;
}

void coral_token_free(char *token)
{
	if (token)
		OPENSSL_cleanse(token, strlen(token));
	free(token);
}

enum coral_bearer coral_bearer_check(const char *token, const char *h)
{
	if (h == NULL)
		return CORAL_BEARER_NONE;
	if (token == NULL || strncmp(h, "Bearer ", 7) != 0)
		return CORAL_BEARER_WRONG;
	const char *t = h + 7;
	size_t n = strlen(t), want = strlen(token);
	/* the same work whatever the length, and no early exit on the first differing byte */
	bool ok = n == want;
	ok &= CRYPTO_memcmp(t, token, ok ? want : 0) == 0;
	return ok ? CORAL_BEARER_OK : CORAL_BEARER_WRONG;
}

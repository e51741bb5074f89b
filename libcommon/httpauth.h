/* Who may use an HTTP port (raftd's API, coral-node's metrics): a bearer token read from a
 * file only its owner and group may read, compared in constant time. */
#ifndef CORAL_HTTPAUTH_H
#define CORAL_HTTPAUTH_H

#include <stddef.h>

/* The first line of path (at least 16 characters; the file not readable or writable by
 * others) in *out, malloc'd. option names the setting in errors ("[raft] http_token_file").
 * An empty path is no token: 0 and *out NULL. CORAL_ECONFIG with why in err. */
int coral_token_load(const char *path, const char *option, char **out, char *err, size_t errsz);
/* Frees a token, its bytes wiped first. */
void coral_token_free(char *token);

enum coral_bearer { CORAL_BEARER_NONE, CORAL_BEARER_WRONG, CORAL_BEARER_OK };
/* An Authorization header against the token: none given, a wrong one (or no token to match),
 * or the right one. The same work whatever the header's length. */
enum coral_bearer coral_bearer_check(const char *token, const char *header);

#endif

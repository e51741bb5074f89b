/* A standby's copy of its primary: its place and its apply's state (copy.h). */
#include "copy.h"

#include "crc32c.h"
#include "errors.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool coral_copy_is_standby(const struct coral_conf *conf) { return strcmp(conf->replication.role, "standby") == 0; }

void coral_copy_conf(const struct coral_conf *standby, struct coral_conf *copy)
{
	*copy = *standby;
	coral_strlcpy(copy->cluster.name, standby->replication.primary_cluster, sizeof(copy->cluster.name));
	/* the primary's storage, as the apply keeps it */
	coral_strlcpy(copy->replication.role, "primary", sizeof(copy->replication.role));
	snprintf(copy->storage.shared_dir, sizeof(copy->storage.shared_dir), "%s/standby/%s",
		 standby->storage.shared_dir, standby->replication.primary_cluster);
}

static uint32_t state_crc(const struct coral_copy_state *s)
{
	struct coral_copy_state x = *s;
	x.crc = 0;
	return coral_crc32c(0, &x, sizeof(x));
}

int coral_copy_state_write(const char *dir, struct coral_copy_state *s, char *err, size_t errsz)
{
	s->magic = CORAL_COPY_STATE_MAGIC;
	s->version = CORAL_COPY_STATE_VERSION;
	s->crc = state_crc(s);
	return coral_write_file_atomic(dir, "apply.state", s, sizeof(*s), 0640, err, errsz);
}

int coral_copy_state_read(const char *dir, struct coral_copy_state *s)
{
	char p[CORAL_STR_MAX + 300];
	snprintf(p, sizeof(p), "%s/apply.state", dir);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? CORAL_ENOENT : CORAL_EIO;
	ssize_t n = read(fd, s, sizeof(*s));
	close(fd);
	if (n != (ssize_t)sizeof(*s) || s->magic != CORAL_COPY_STATE_MAGIC || s->version != CORAL_COPY_STATE_VERSION ||
	    s->crc != state_crc(s))
		return CORAL_ECORRUPT;
	return 0;
}

int coral_role_read(const char *shared_dir, char *role, size_t rolesz)
{
	char p[CORAL_STR_MAX + 16], buf[32] = "";
	snprintf(p, sizeof(p), "%s/role", shared_dir);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? CORAL_ENOENT : CORAL_EIO;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	buf[strcspn(buf, " \t\r\n")] = '\0';
	if (strcmp(buf, "primary") != 0 && strcmp(buf, "standby") != 0)
		return CORAL_ECORRUPT;
	snprintf(role, rolesz, "%s", buf);
	return 0;
}

int coral_role_write(const char *shared_dir, const char *role, char *err, size_t errsz)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%s\n", role);
	return coral_write_file_atomic(shared_dir, "role", buf, (size_t)n, 0640, err, errsz);
}

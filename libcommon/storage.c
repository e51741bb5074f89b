/* Shared storage: control file, data files, checked block I/O (see storage.h). The control
 * file is small (a header and one 72-byte entry per data file) and always written whole
 * through a temporary file and a rename, so a crash leaves the old one or the new one. */
#include "storage.h"

#include "copy.h"
#include "crc32c.h"
#include "errors.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CF_MAGIC "CORALCF1"
#define CF_VERSION 1

struct cf_hdr {
	char magic[8];
	uint32_t version;
	uint32_t block_size;
	char cluster[64];
	uint32_t nfiles;
	uint32_t next_id;
	uint64_t seq;
	uint32_t crc;            /* over the header with crc zero and every entry */
	uint32_t pad;
};

static void cf_path(const struct coral_conf *conf, const char *file, char *buf, size_t n)
{
	snprintf(buf, n, "%s/%s", conf->storage.shared_dir, file);
}

void coral_datafile_path(const struct coral_conf *conf, const char *name, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "%s/%s.dbf", conf->storage.shared_dir, name);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return CORAL_ESYS;
	int rc = fsync(fd) == 0 ? 0 : CORAL_ESYS;
	close(fd);
	return rc;
}

static int full_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	const uint8_t *p = buf;
	while (n > 0) {
		ssize_t k = pwrite(fd, p, n, off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return CORAL_EIO;
		p += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

static uint32_t cf_crc(const struct cf_hdr *h, const struct coral_datafile *files, uint32_t n)
{
	struct cf_hdr c = *h;
	c.crc = 0;
	uint32_t crc = coral_crc32c(0, &c, sizeof(c));
	return n ? coral_crc32c(crc, files, n * sizeof(*files)) : crc;
}

int coral_ctlfile_load(const struct coral_conf *conf, struct coral_ctlfile *cf, char *err, size_t errsz)
{
	memset(cf, 0, sizeof(*cf));
	coral_strlcpy(cf->cluster, conf->cluster.name, sizeof(cf->cluster));
	cf->block_size = (uint32_t)conf->storage.block_size;
	cf->next_id = 1;
	char path[CORAL_STR_MAX + 32];
	cf_path(conf, "control", path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errsz, "%s: %s", path, strerror(errno));
		return CORAL_EIO;
	}
	struct cf_hdr h;
	int rc = 0;
	ssize_t k = pread(fd, &h, sizeof(h), 0);
	if (k != (ssize_t)sizeof(h) || memcmp(h.magic, CF_MAGIC, 8) != 0) {
		snprintf(err, errsz, "%s is not a Coral control file", path);
		rc = CORAL_EMAGIC;
	} else if (h.version != CF_VERSION) {
		snprintf(err, errsz, "%s has layout version %u; this build reads %u", path, h.version, CF_VERSION);
		rc = CORAL_EVERSION;
	} else if (h.nfiles > CORAL_MAX_DATAFILES) {
		snprintf(err, errsz, "%s lists %u data files (at most %u)", path, h.nfiles, CORAL_MAX_DATAFILES);
		rc = CORAL_ECORRUPT;
	} else if ((k = pread(fd, cf->files, h.nfiles * sizeof(cf->files[0]), sizeof(h))) !=
		   (ssize_t)(h.nfiles * sizeof(cf->files[0]))) {
		snprintf(err, errsz, "%s is truncated", path);
		rc = CORAL_ECORRUPT;
	} else if (cf_crc(&h, cf->files, h.nfiles) != h.crc) {
		snprintf(err, errsz, "%s fails its checksum: it is damaged", path);
		rc = CORAL_ECORRUPT;
	} else if (strncmp(h.cluster, conf->cluster.name, sizeof(h.cluster)) != 0) {
		snprintf(err, errsz, "%s belongs to cluster '%.64s', not '%s'", path, h.cluster, conf->cluster.name);
		rc = CORAL_ECLUSTER;
	} else if (h.block_size != (uint32_t)conf->storage.block_size) {
		snprintf(err, errsz, "%s was created with block_size %u; [storage] block_size is %lld", path,
			 h.block_size, (long long)conf->storage.block_size);
		rc = CORAL_ECONFIG;
	}
	close(fd);
	if (rc != 0) {
		memset(cf->files, 0, sizeof(cf->files));
		return rc;
	}
	for (uint32_t i = 0; i < h.nfiles; i++) /* a name is used as a C string and a path */
		cf->files[i].name[sizeof(cf->files[i].name) - 1] = '\0';
	cf->nfiles = h.nfiles;
	cf->next_id = h.next_id;
	cf->seq = h.seq;
	return 0;
}

static int ctlfile_store(const struct coral_conf *conf, struct coral_ctlfile *cf, char *err, size_t errsz)
{
	struct cf_hdr h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, CF_MAGIC, 8);
	h.version = CF_VERSION;
	h.block_size = cf->block_size;
	coral_strlcpy(h.cluster, cf->cluster, sizeof(h.cluster));
	h.nfiles = cf->nfiles;
	h.next_id = cf->next_id;
	h.seq = ++cf->seq;
	h.crc = cf_crc(&h, cf->files, cf->nfiles);
	size_t len = sizeof(h) + cf->nfiles * sizeof(cf->files[0]);
	uint8_t *buf = malloc(len);
	if (buf == NULL)
		return CORAL_ENOMEM;
	memcpy(buf, &h, sizeof(h));
	if (cf->nfiles)
		memcpy(buf + sizeof(h), cf->files, cf->nfiles * sizeof(cf->files[0]));
	int rc = coral_write_file_atomic(conf->storage.shared_dir, "control", buf, len, 0640, err, errsz);
	free(buf);
	return rc;
}

/* The control lock (control.lock, fcntl, exclusive: every node and tool that changes the
 * control file takes it): its descriptor, or a CORAL_E* code with why in err. */
static int ctl_lock(const struct coral_conf *conf, char *err, size_t errsz)
{
	char lpath[CORAL_STR_MAX + 32];
	cf_path(conf, "control.lock", lpath, sizeof(lpath));
	int lfd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (lfd < 0 || coral_own_like_dir(lfd, lpath, conf->storage.shared_dir) != 0 || fcntl(lfd, F_SETLKW, &fl) != 0) {
		snprintf(err, errsz, "%s: %s", lpath, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return CORAL_EIO;
	}
	return lfd;
}

static void ctl_unlock(int lfd)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
	fcntl(lfd, F_SETLK, &fl);
	close(lfd);
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > CORAL_DATAFILE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

/* Formats the file block by block, 1 MiB at a time. */
static int datafile_format(int fd, uint32_t bs, uint32_t id, uint64_t blocks)
{
	size_t per = (1u << 20) / bs ? (1u << 20) / bs : 1;
	uint8_t *buf = malloc(per * bs);
	if (buf == NULL)
		return CORAL_ENOMEM;
	int rc = 0;
	for (uint64_t b = 0; b < blocks && rc == 0;) {
		size_t n = blocks - b < per ? (size_t)(blocks - b) : per;
		for (size_t i = 0; i < n; i++) {
			coral_block_format(buf + i * bs, bs, id, b + i, 0);
			coral_block_seal(buf + i * bs, bs);
		}
		rc = full_pwrite(fd, buf, n * bs, (off_t)(b * bs));
		b += n;
	}
	free(buf);
	if (rc == 0 && fsync(fd) != 0)
		rc = CORAL_EIO;
	return rc;
}

int coral_datafile_create(const struct coral_conf *conf, const char *name, uint64_t blocks, uint32_t *id,
			  char *err, size_t errsz)
{
	if (!name_ok(name)) {
		snprintf(err, errsz, "'%s' is not a data file name: 1-%d letters, digits, '_' or '-'", name,
			 CORAL_DATAFILE_NAME_MAX);
		return CORAL_EINVAL;
	}
	if (coral_copy_is_standby(conf)) {
		/* its storage takes the primary's data files at its takeover, ids and all: one of
		 * its own before would stand in their way (and nothing may change it meanwhile) */
		struct coral_conf *pc = malloc(sizeof(*pc));
		struct coral_copy_state st;
		if (pc == NULL)
			return CORAL_ENOMEM;
		coral_copy_conf(conf, pc);
		int r = coral_copy_state_read(pc->storage.shared_dir, &st);
		free(pc);
		if (r != 0 || st.took_over == 0) {
			snprintf(err, errsz, "this cluster is a standby of '%s' that has not taken over: its data files are the "
				 "primary's (create %s there; the standby's copy has it from its next seed)",
				 conf->replication.primary_cluster, name);
			return CORAL_EPERM;
		}
	}
	uint32_t bs = (uint32_t)conf->storage.block_size;
	if (blocks == 0 || blocks > (UINT64_C(1) << 40) / bs) {
		snprintf(err, errsz, "%llu blocks: a data file has 1 to %llu blocks of %u bytes", (unsigned long long)blocks,
			 (unsigned long long)((UINT64_C(1) << 40) / bs), bs);
		return CORAL_EINVAL;
	}
	if (coral_mkdir_p(conf->storage.shared_dir, 0750) != 0) {
		snprintf(err, errsz, "%s: %s", conf->storage.shared_dir, strerror(errno));
		return CORAL_EIO;
	}
	int lfd = ctl_lock(conf, err, errsz);
	if (lfd < 0)
		return lfd;
	struct coral_ctlfile *cf = malloc(sizeof(*cf));
	int rc = cf ? coral_ctlfile_load(conf, cf, err, errsz) : CORAL_ENOMEM;
	char path[CORAL_STR_MAX + 64];
	coral_datafile_path(conf, name, path, sizeof(path));
	int fd = -1;
	if (rc == 0) {
		for (uint32_t i = 0; i < cf->nfiles && rc == 0; i++)
			if (strcmp(cf->files[i].name, name) == 0) {
				snprintf(err, errsz, "data file %s exists already (id %u, %llu blocks)", name, cf->files[i].id,
					 (unsigned long long)cf->files[i].blocks);
				rc = CORAL_EEXIST;
			}
		if (rc == 0 && cf->nfiles >= CORAL_MAX_DATAFILES) {
			snprintf(err, errsz, "the control file lists %d data files, the most it can", CORAL_MAX_DATAFILES);
			rc = CORAL_EFULL;
		}
	}
	if (rc == 0 && (fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0) {
		snprintf(err, errsz, "%s: %s%s", path, strerror(errno),
			 errno == EEXIST ? " (not in the control file: remove it or choose another name)" : "");
		rc = errno == EEXIST ? CORAL_EEXIST : CORAL_EIO;
	}
	if (rc == 0 && coral_own_like_dir(fd, path, conf->storage.shared_dir) != 0) {
		snprintf(err, errsz, "%s: cannot give it the owner of %s: %s", path, conf->storage.shared_dir,
			 strerror(errno));
		rc = CORAL_EIO;
		close(fd);
		unlink(path);
		fd = -1;
	}
	if (rc == 0) {
		uint32_t nid = cf->next_id;
		rc = datafile_format(fd, bs, nid, blocks);
		if (rc != 0)
			snprintf(err, errsz, "formatting %s: %s", path, strerror(errno));
		if (rc == 0)
			rc = fsync_dir(conf->storage.shared_dir);
		if (rc == 0) {
			struct coral_datafile *f = &cf->files[cf->nfiles++];
			memset(f, 0, sizeof(*f));
			f->id = nid;
			f->blocks = blocks;
			f->created_ns = coral_now_real_ns();
			coral_strlcpy(f->name, name, sizeof(f->name));
			cf->next_id = nid + 1;
			rc = ctlfile_store(conf, cf, err, errsz);
			if (rc == 0 && id)
				*id = nid;
		}
		close(fd);
		if (rc != 0)
			unlink(path);
	}
	free(cf);
	ctl_unlock(lfd);
	return rc;
}

int coral_datafile_adopt(const struct coral_conf *conf, const struct coral_ctlfile *from, const char *from_dir,
			 char *err, size_t errsz)
{
	if (from->block_size != (uint32_t)conf->storage.block_size) {
		snprintf(err, errsz, "the files have blocks of %u bytes, this storage %lld", from->block_size,
			 (long long)conf->storage.block_size);
		return CORAL_EINVAL;
	}
	if (coral_mkdir_p(conf->storage.shared_dir, 0750) != 0) {
		snprintf(err, errsz, "%s: %s", conf->storage.shared_dir, strerror(errno));
		return CORAL_EIO;
	}
	int lfd = ctl_lock(conf, err, errsz);
	if (lfd < 0)
		return lfd;
	struct coral_ctlfile *cf = malloc(sizeof(*cf));
	int rc = cf ? coral_ctlfile_load(conf, cf, err, errsz) : CORAL_ENOMEM;
	for (uint32_t i = 0; i < from->nfiles && rc == 0; i++) {
		for (uint32_t j = 0; j < cf->nfiles && rc == 0; j++)
			if (strcmp(cf->files[j].name, from->files[i].name) == 0 || cf->files[j].id == from->files[i].id) {
				snprintf(err, errsz, "this storage has a data file %s (id %u) already: %s (id %u) cannot come in",
					 cf->files[j].name, cf->files[j].id, from->files[i].name, from->files[i].id);
				rc = CORAL_EEXIST;
			}
		if (rc == 0 && cf->nfiles + from->nfiles > CORAL_MAX_DATAFILES) {
			snprintf(err, errsz, "more than %d data files", CORAL_MAX_DATAFILES);
			rc = CORAL_EFULL;
		}
	}
	for (uint32_t i = 0; i < from->nfiles && rc == 0; i++) {
		char src[CORAL_STR_MAX + 64], dst[CORAL_STR_MAX + 64];
		snprintf(src, sizeof(src), "%s/%s.dbf", from_dir, from->files[i].name);
		coral_datafile_path(conf, from->files[i].name, dst, sizeof(dst));
		if (rename(src, dst) != 0) {
			snprintf(err, errsz, "moving %s to %s: %s", src, dst, strerror(errno));
			rc = CORAL_EIO;
			break;
		}
		cf->files[cf->nfiles++] = from->files[i];
		if (from->files[i].id >= cf->next_id)
			cf->next_id = from->files[i].id + 1;
	}
	if (rc == 0 && (rc = fsync_dir(conf->storage.shared_dir)) == 0)
		rc = ctlfile_store(conf, cf, err, errsz);
	free(cf);
	ctl_unlock(lfd);
	return rc;
}

void coral_block_format(void *buf, uint32_t block_size, uint32_t file, uint64_t block, uint64_t scn)
{
	memset(buf, 0, block_size);
	struct coral_block_hdr h = {CORAL_BLOCK_MAGIC, file, block, scn, 0, 0};
	memcpy(buf, &h, sizeof(h));
}

static uint32_t block_crc(const void *buf, uint32_t block_size)
{
	static const uint32_t zero = 0;
	size_t off = offsetof(struct coral_block_hdr, crc);
	uint32_t crc = coral_crc32c(0, buf, off);
	crc = coral_crc32c(crc, &zero, sizeof(zero));
	return coral_crc32c(crc, (const uint8_t *)buf + off + 4, block_size - off - 4);
}

void coral_block_seal(void *buf, uint32_t block_size)
{
	uint32_t crc = block_crc(buf, block_size);
	memcpy((uint8_t *)buf + offsetof(struct coral_block_hdr, crc), &crc, sizeof(crc));
}

int coral_block_check(const void *buf, uint32_t block_size, uint32_t file, uint64_t block, char *err,
		      size_t errsz)
{
	struct coral_block_hdr h;
	memcpy(&h, buf, sizeof(h));
	uint32_t crc = block_crc(buf, block_size);
	if (h.crc != crc) {
		snprintf(err, errsz, "data file %u block %llu: checksum mismatch (stored 0x%08x, computed 0x%08x): "
			 "the block is damaged and is not used", file, (unsigned long long)block, h.crc, crc);
		return CORAL_ECORRUPT;
	}
	if (h.magic != CORAL_BLOCK_MAGIC || h.file != file || h.block != block) {
		snprintf(err, errsz, "data file %u block %llu: the block there says it is file %u block %llu "
			 "(magic 0x%08x): a misplaced write; not used", file, (unsigned long long)block, h.file,
			 (unsigned long long)h.block, h.magic);
		return CORAL_ECORRUPT;
	}
	return 0;
}

int coral_block_read(int fd, uint32_t block_size, uint32_t file, uint64_t block, void *buf, char *err,
		     size_t errsz)
{
	uint8_t *p = buf;
	size_t left = block_size;
	off_t off = (off_t)(block * block_size);
	while (left > 0) {
		ssize_t k = pread(fd, p, left, off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(err, errsz, "data file %u block %llu: %s", file, (unsigned long long)block,
				 k == 0 ? "past the end of the file" : strerror(errno));
			return k == 0 ? CORAL_EINVAL : CORAL_EIO;
		}
		p += k;
		left -= (size_t)k;
		off += k;
	}
	return coral_block_check(buf, block_size, file, block, err, errsz);
}

int coral_block_write(int fd, uint32_t block_size, void *buf, char *err, size_t errsz)
{
	struct coral_block_hdr h;
	memcpy(&h, buf, sizeof(h));
	coral_block_seal(buf, block_size);
	int rc = full_pwrite(fd, buf, block_size, (off_t)(h.block * block_size));
	if (rc != 0)
		snprintf(err, errsz, "data file %u block %llu: write failed: %s", h.file, (unsigned long long)h.block,
			 strerror(errno));
	return rc;
}

int coral_instance_lock(const struct coral_conf *conf, bool exclusive, int wait_ms, int *fd, char *err, size_t errsz)
{
	char path[CORAL_STR_MAX + 32];
	snprintf(path, sizeof(path), "%s/instance.lock", conf->storage.shared_dir);
	if (*fd < 0) {
		if (coral_mkdir_p(conf->storage.shared_dir, 0750) != 0) {
			int e = errno;
			snprintf(err, errsz, "cannot create shared_dir %s: %s", conf->storage.shared_dir, strerror(e));
			return coral_err_from_errno(e);
		}
		*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
		if (*fd >= 0 && coral_own_like_dir(*fd, path, conf->storage.shared_dir) != 0) {
			close(*fd);
			*fd = -1;
		}
		if (*fd < 0) {
			int e = errno;
			snprintf(err, errsz, "cannot open %s: %s", path, strerror(e));
			return coral_err_from_errno(e);
		}
	}
	struct flock fl = {.l_type = exclusive ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET};
	uint64_t deadline = coral_now_mono_ns() + (uint64_t)(wait_ms > 0 ? wait_ms : 0) * 1000000ull;
	for (;;) {
		if (fcntl(*fd, F_OFD_SETLK, &fl) == 0)
			return 0;
		int e = errno;
		if (e != EAGAIN && e != EACCES && e != EINTR) {
			snprintf(err, errsz, "cannot lock %s: %s", path, strerror(e));
			return coral_err_from_errno(e);
		}
		if (exclusive) {
			snprintf(err, errsz, "%s is held: an instance runs", path);
			return CORAL_EBUSY;
		}
		if (coral_now_mono_ns() >= deadline) {
			snprintf(err, errsz, "%s stayed locked for %d ms: a cold-start recovery is under way on another "
				 "node (its smond's log says how far)", path, wait_ms);
			return CORAL_ETIMEDOUT;
		}
		usleep(50000);
	}
}

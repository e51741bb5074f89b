/* Shared storage: the control file that lists the data files, the data files themselves
 * (fixed-size blocks, each with a header naming its file and block and carrying the SCN of
 * its last change and a CRC32C of the whole block), and the block read and write that every
 * daemon and tool uses. A block that fails its check is reported with its file and number
 * and never handed to a caller.
 *
 * Layout of [storage] shared_dir:
 *   control        the control file (written whole: control.tmp, fsync, rename, dir fsync)
 *   control.lock   fcntl-locked while the control file is changed, by any node
 *   instance.lock  held shared by every running instance (its smond and its lmsd), taken
 *                  exclusive by a starting smond to know that no instance runs anywhere
 *                  (a cold start: every thread is recovered before anything is served);
 *                  across hosts this needs a cluster file system whose fcntl locks are
 *                  cluster-wide (NFSv4, GFS2, OCFS2)
 *   NAME.dbf       one data file per entry
 */
#ifndef CORAL_STORAGE_H
#define CORAL_STORAGE_H

#include "conf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORAL_MAX_DATAFILES 1024
#define CORAL_DATAFILE_NAME_MAX 40

/* Every block starts with this header; the payload follows. */
struct coral_block_hdr {
	uint32_t magic;          /* CORAL_BLOCK_MAGIC */
	uint32_t file;           /* data file id (1..) */
	uint64_t block;          /* block number in the file (0..) */
	uint64_t scn;            /* SCN of the last change written */
	uint32_t flags;
	uint32_t crc;            /* CRC32C of the whole block with this field zero */
};
#define CORAL_BLOCK_MAGIC 0x43424b31u /* "CBK1" */
#define CORAL_BLOCK_HDR ((uint32_t)sizeof(struct coral_block_hdr))

struct coral_datafile {
	uint32_t id;
	uint32_t flags;
	uint64_t blocks;
	uint64_t created_ns;     /* wall clock */
	char name[CORAL_DATAFILE_NAME_MAX + 8];
};

/* The control file, in memory. */
struct coral_ctlfile {
	char cluster[64];
	uint32_t block_size;
	uint32_t next_id;
	uint64_t seq;            /* bumped by every write */
	uint32_t nfiles;
	struct coral_datafile files[CORAL_MAX_DATAFILES];
};

/* Reads shared_dir/control. A missing file is an empty control file (CORAL_ENOENT is not
 * returned); a damaged one, or one from another cluster or block size, is an error with the
 * reason in err. */
int coral_ctlfile_load(const struct coral_conf *conf, struct coral_ctlfile *cf, char *err, size_t errsz);

/* Creates data file NAME of `blocks` formatted blocks (SCN 0, zero payload), fsyncs it and
 * adds it to the control file under the control lock. *id gets its id. */
int coral_datafile_create(const struct coral_conf *conf, const char *name, uint64_t blocks, uint32_t *id,
			  char *err, size_t errsz);

/* Takes the data files `from` lists, kept in from_dir (a standby's copy after its failover),
 * into this storage: each file moved (renamed: the same file system) under its name and id,
 * the control file written under the lock with them added. A name or id this storage has
 * already is refused (CORAL_EEXIST), and nothing is moved. */
int coral_datafile_adopt(const struct coral_conf *conf, const struct coral_ctlfile *from, const char *from_dir,
			 char *err, size_t errsz);
/* shared_dir/NAME.dbf into buf. */
void coral_datafile_path(const struct coral_conf *conf, const char *name, char *buf, size_t bufsz);

/* Formats buf (block_size bytes) as an empty block of (file, block). */
void coral_block_format(void *buf, uint32_t block_size, uint32_t file, uint64_t block, uint64_t scn);
/* Sets the CRC of buf. */
void coral_block_seal(void *buf, uint32_t block_size);
/* 0 if buf is block `block` of file `file` and its CRC matches; CORAL_ECORRUPT with the
 * reason in err otherwise. */
int coral_block_check(const void *buf, uint32_t block_size, uint32_t file, uint64_t block, char *err,
		      size_t errsz);

/* pread of one block, checked. CORAL_EINVAL past the end of the file (a block that does not
 * exist: the caller's), CORAL_EIO on a read error. */
int coral_block_read(int fd, uint32_t block_size, uint32_t file, uint64_t block, void *buf, char *err,
		     size_t errsz);
/* The instance lock (see above; an open file description lock, released when fd is closed or
 * the process dies). exclusive: tried once, CORAL_EBUSY if any instance holds it; shared:
 * waited for up to wait_ms (a cold-start recovery holds it exclusive), then CORAL_ETIMEDOUT.
 * *fd gets the descriptor that holds it. Converting: call again on the same *fd >= 0. */
int coral_instance_lock(const struct coral_conf *conf, bool exclusive, int wait_ms, int *fd, char *err, size_t errsz);

/* Seals buf and pwrites it at its block (the header says which). No fsync. */
int coral_block_write(int fd, uint32_t block_size, void *buf, char *err, size_t errsz);

#endif

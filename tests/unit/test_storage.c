/* Shared storage: data file creation and the control file, checked block reads (a damaged or
 * misplaced block is named and refused), block writes, and two processes creating data files
 * at once under the control lock; CRC32C (the CPU's instruction against the table). */
#include "crc32c.h"
#include "errors.h"
#include "storage.h"
#include "util.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct coral_conf cf;
static char dir[] = "/tmp/coral-test-storage-XXXXXX";

static void setup(void)
{
	strcpy(dir, "/tmp/coral-test-storage-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	memset(&cf, 0, sizeof(cf));
	strcpy(cf.cluster.name, "unit");
	snprintf(cf.storage.shared_dir, sizeof(cf.storage.shared_dir), "%s/shared", dir);
	cf.storage.block_size = 4096;
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(storage, .init = setup, .fini = teardown);

static int open_df(const char *name)
{
	char path[CORAL_STR_MAX + 64];
	coral_datafile_path(&cf, name, path, sizeof(path));
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0, "%s", path);
	return fd;
}

Test(storage, create_list_and_read)
{
	char err[256];
	uint32_t id = 0;
	cr_assert_eq(coral_datafile_create(&cf, "accounts", 64, &id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(id, 1);
	cr_assert_eq(coral_datafile_create(&cf, "idx_2", 8, &id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(id, 2);
	cr_assert_eq(coral_datafile_create(&cf, "accounts", 8, &id, err, sizeof(err)), CORAL_EEXIST);
	cr_assert(strstr(err, "exists already") != NULL, "%s", err);
	cr_assert_eq(coral_datafile_create(&cf, "a/b", 8, &id, err, sizeof(err)), CORAL_EINVAL);
	cr_assert_eq(coral_datafile_create(&cf, "zero", 0, &id, err, sizeof(err)), CORAL_EINVAL);
	struct coral_ctlfile *c = malloc(sizeof(*c));
	cr_assert_eq(coral_ctlfile_load(&cf, c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c->nfiles, 2);
	cr_assert_str_eq(c->files[0].name, "accounts");
	cr_assert_eq(c->files[0].blocks, 64);
	cr_assert_eq(c->next_id, 3);
	int fd = open_df("accounts");
	uint8_t buf[4096];
	for (uint64_t b = 0; b < 64; b++)
		cr_assert_eq(coral_block_read(fd, 4096, 1, b, buf, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(coral_block_read(fd, 4096, 1, 64, buf, err, sizeof(err)), CORAL_EINVAL, "past the end: %s", err);
	cr_assert(strstr(err, "past the end") != NULL, "%s", err);
	close(fd);
	free(c);
}

Test(storage, damaged_and_misplaced_blocks_are_refused)
{
	char err[256];
	cr_assert_eq(coral_datafile_create(&cf, "d", 32, NULL, err, sizeof(err)), 0, "%s", err);
	int fd = open_df("d");
	uint8_t buf[4096], other[4096];
	/* one flipped byte in the payload of block 17 */
	cr_assert_eq(pwrite(fd, "X", 1, 17 * 4096 + 100), 1);
	cr_assert_eq(coral_block_read(fd, 4096, 1, 17, buf, err, sizeof(err)), CORAL_ECORRUPT);
	cr_assert(strstr(err, "data file 1 block 17: checksum mismatch") != NULL, "%s", err);
	/* a valid block written at the wrong place */
	cr_assert_eq(coral_block_read(fd, 4096, 1, 3, other, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(pwrite(fd, other, 4096, 4 * 4096), 4096);
	cr_assert_eq(coral_block_read(fd, 4096, 1, 4, buf, err, sizeof(err)), CORAL_ECORRUPT);
	cr_assert(strstr(err, "misplaced") != NULL, "%s", err);
	/* the neighbours are untouched */
	cr_assert_eq(coral_block_read(fd, 4096, 1, 16, buf, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(coral_block_read(fd, 4096, 1, 18, buf, err, sizeof(err)), 0, "%s", err);
	close(fd);
}

Test(storage, write_then_read)
{
	char err[256];
	cr_assert_eq(coral_datafile_create(&cf, "w", 4, NULL, err, sizeof(err)), 0, "%s", err);
	int fd = open_df("w");
	uint8_t buf[4096];
	cr_assert_eq(coral_block_read(fd, 4096, 1, 2, buf, err, sizeof(err)), 0);
	struct coral_block_hdr h;
	memcpy(&h, buf, sizeof(h));
	h.scn = 77;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + CORAL_BLOCK_HDR, "balance=100", 11);
	cr_assert_eq(coral_block_write(fd, 4096, buf, err, sizeof(err)), 0, "%s", err);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(coral_block_read(fd, 4096, 1, 2, buf, err, sizeof(err)), 0, "%s", err);
	memcpy(&h, buf, sizeof(h));
	cr_assert_eq(h.scn, 77);
	cr_assert_eq(memcmp(buf + CORAL_BLOCK_HDR, "balance=100", 11), 0);
	close(fd);
}

Test(storage, control_file_checks)
{
	char err[256], path[CORAL_STR_MAX + 32];
	cr_assert_eq(coral_datafile_create(&cf, "c", 2, NULL, err, sizeof(err)), 0, "%s", err);
	struct coral_ctlfile *c = malloc(sizeof(*c));
	struct coral_conf other = cf;
	strcpy(other.cluster.name, "another");
	cr_assert_eq(coral_ctlfile_load(&other, c, err, sizeof(err)), CORAL_ECLUSTER);
	other = cf;
	other.storage.block_size = 8192;
	cr_assert_eq(coral_ctlfile_load(&other, c, err, sizeof(err)), CORAL_ECONFIG);
	cr_assert(strstr(err, "block_size 4096") != NULL, "%s", err);
	snprintf(path, sizeof(path), "%s/control", cf.storage.shared_dir);
	int fd = open(path, O_RDWR);
	/* flipped, not overwritten: byte 120 is in the first file's creation time, which is
	 * already 'Z' once in 256 runs (CI saw it) */
	uint8_t byte;
	cr_assert_eq(pread(fd, &byte, 1, 120), 1);
	byte ^= 0xff;
	cr_assert_eq(pwrite(fd, &byte, 1, 120), 1);
	close(fd);
	cr_assert_eq(coral_ctlfile_load(&cf, c, err, sizeof(err)), CORAL_ECORRUPT);
	cr_assert(strstr(err, "checksum") != NULL, "%s", err);
	/* and nothing is added to a damaged control file */
	cr_assert_eq(coral_datafile_create(&cf, "more", 2, NULL, err, sizeof(err)), CORAL_ECORRUPT);
	free(c);
}

Test(storage, concurrent_creators_get_distinct_ids)
{
	enum { PROCS = 4, EACH = 5 };
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		cr_assert_geq(pids[p], 0);
		if (pids[p] == 0) {
			char err[256], name[32];
			for (int i = 0; i < EACH; i++) {
				snprintf(name, sizeof(name), "p%d_%d", p, i);
				if (coral_datafile_create(&cf, name, 4, NULL, err, sizeof(err)) != 0)
					_exit(1);
			}
			_exit(0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int st;
		cr_assert_eq(waitpid(pids[p], &st, 0), pids[p]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	char err[256];
	struct coral_ctlfile *c = malloc(sizeof(*c));
	cr_assert_eq(coral_ctlfile_load(&cf, c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c->nfiles, PROCS * EACH);
	bool seen[PROCS * EACH + 1] = {false};
	for (uint32_t i = 0; i < c->nfiles; i++) {
		cr_assert(c->files[i].id >= 1 && c->files[i].id <= PROCS * EACH);
		cr_assert_not(seen[c->files[i].id], "id %u twice", c->files[i].id);
		seen[c->files[i].id] = true;
		/* every block of every file names its own file */
		int fd = open_df(c->files[i].name);
		uint8_t buf[4096];
		cr_assert_eq(coral_block_read(fd, 4096, c->files[i].id, 3, buf, err, sizeof(err)), 0, "%s", err);
		close(fd);
	}
	free(c);
}

Test(crc32c, instruction_agrees_with_the_table_and_the_standard_vector)
{
	cr_expect_eq(coral_crc32c(0, "123456789", 9), 0xe3069283u, "the CRC32C check value");
	cr_expect_eq(coral_crc32c_table(0, "123456789", 9), 0xe3069283u);
	cr_expect_eq(coral_crc32c(0, "", 0), 0);
	static uint8_t buf[8192 + 64];
	uint64_t seed = 3;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)coral_splitmix64(&seed);
	/* every alignment and short length, and whole blocks */
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; len < 80; len++)
			cr_assert_eq(coral_crc32c(7, buf + off, len), coral_crc32c_table(7, buf + off, len),
				     "offset %zu length %zu (%s)", off, len, coral_crc32c_impl());
		cr_assert_eq(coral_crc32c(0, buf + off, 8192), coral_crc32c_table(0, buf + off, 8192));
	}
	/* continuing over pieces is the CRC of the whole */
	uint32_t whole = coral_crc32c(0, buf, 8192);
	uint32_t parts = coral_crc32c(coral_crc32c(coral_crc32c(0, buf, 13), buf + 13, 4000), buf + 4013, 8192 - 4013);
	cr_expect_eq(parts, whole);
}

/* Files root makes in a shared_dir that belongs to the daemons' user (a packaged install)
 * get that user: the control file, its lock, the data file, and a shared_dir root creates
 * inside such a directory. */
Test(storage, what_root_creates_in_the_daemons_directory_is_theirs)
{
	if (geteuid() != 0)
		cr_skip_test("needs root");
	const uid_t uid = 65534;
	const gid_t gid = 65534;
	cr_assert_eq(chown(dir, uid, gid), 0);
	char err[256];
	cr_assert_eq(coral_datafile_create(&cf, "owned", 4, NULL, err, sizeof(err)), 0, "%s", err);
	static const char *const names[] = {"", "/control", "/control.lock", "/owned.dbf"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[256];
		snprintf(path, sizeof(path), "%s%s", cf.storage.shared_dir, names[i]);
		struct stat st;
		cr_assert_eq(stat(path, &st), 0, "%s", path);
		cr_expect(st.st_uid == uid && st.st_gid == gid, "%s is %d:%d", path, (int)st.st_uid, (int)st.st_gid);
	}
	/* a directory of root's own: files stay root's */
	cr_assert_eq(chown(dir, 0, 0), 0);
	cr_assert_eq(chown(cf.storage.shared_dir, 0, 0), 0);
	cr_assert_eq(coral_datafile_create(&cf, "rootown", 4, NULL, err, sizeof(err)), 0, "%s", err);
	char path[256];
	snprintf(path, sizeof(path), "%s/rootown.dbf", cf.storage.shared_dir);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_expect_eq(st.st_uid, 0);
}

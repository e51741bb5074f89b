/* What Coral reads back from disk, each as the bytes given: the control file of the shared
 * storage, a Raft log segment (raftd's storage opened on it), and a redo thread's segment
 * read by the thread reader recovery and coral-bank use. The first byte picks which. */
#include "fuzz.h"

#include "conf.h"
#include "raft_store.h"
#include "redo.h"
#include "storage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (len < 1)
		return 0;
	char path[256], err[256];
	static struct coral_conf conf;
	snprintf(conf.storage.shared_dir, sizeof(conf.storage.shared_dir), "%s/shared", fuzz_tmpdir());
	snprintf(conf.cluster.name, sizeof(conf.cluster.name), "coral");
	conf.storage.block_size = 8192;
	switch (data[0] % 3) {
	case 0: {
		fuzz_file("shared/control", data + 1, len - 1, path, sizeof(path));
		static struct coral_ctlfile cf;
		(void)coral_ctlfile_load(&conf, &cf, err, sizeof(err));
		unlink(path);
		break;
	}
	case 1: {
		fuzz_file("raft/00000000000000000001.seg", data + 1, len - 1, path, sizeof(path));
		char dir[128];
		snprintf(dir, sizeof(dir), "%s/raft", fuzz_tmpdir());
		struct raft_store *s = NULL;
		if (raft_store_open(&s, dir, 1 << 20, err, sizeof(err)) == 0)
			raft_store_close(s);
		/* opening may cut a torn tail or start a new segment: start clean */
		fuzz_rmtree("raft");
		break;
	}
	default: {
		fuzz_file("shared/redo/thread_1/00000000.redo", data + 1, len - 1, path, sizeof(path));
		uint64_t end;
		(void)coral_redo_scan(conf.storage.shared_dir, 1, 1 << 20, 0, NULL, NULL, &end, err, sizeof(err));
		unlink(path);
		break;
	}
	}
	return 0;
}

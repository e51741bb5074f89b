/* recovery-load: the load scripts/bench-recovery.sh puts on a cluster before it kills a node.
 * One session on a node takes `count` blocks of a data file from `from` on, in S (their
 * masters get directory entries) or in X with a committed change each (dirty blocks in the
 * node's cache, `per_txn` to a transaction), and prints what it did and how long it took.
 *
 * Usage: recovery-load -c CONF --node N --file ID --from B --count C --mode s|x [--per-txn K] */
#include "coral.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *conf = NULL, *mode = "s";
	int node = 0;
	uint32_t file = 0, per_txn = 32;
	uint64_t from = 0, count = 0;
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (strcmp(a, "-c") == 0) conf = v;
		else if (strcmp(a, "--node") == 0) node = atoi(v);
		else if (strcmp(a, "--file") == 0) file = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--from") == 0) from = strtoull(v, NULL, 10);
		else if (strcmp(a, "--count") == 0) count = strtoull(v, NULL, 10);
		else if (strcmp(a, "--mode") == 0) mode = v;
		else if (strcmp(a, "--per-txn") == 0) per_txn = (uint32_t)strtoul(v, NULL, 10);
		else {
			fprintf(stderr, "recovery-load: unknown option %s\n", a);
			return 2;
		}
	}
	bool x = strcmp(mode, "x") == 0;
	if (conf == NULL || node < 1 || file == 0 || count == 0 || per_txn == 0 || per_txn > 60 ||
	    (!x && strcmp(mode, "s") != 0)) {
		fprintf(stderr, "usage: recovery-load -c CONF --node N --file ID --from B --count C --mode s|x "
				"[--per-txn 1..60]\n");
		return 2;
	}
	struct coral_session *s;
	if (coral_session_open(conf, node, "bench", "recovery-load", &s) != 0) {
		fprintf(stderr, "recovery-load: %s\n", coral_session_error(s));
		return 1;
	}
	double t0 = now_s();
	uint64_t done = 0;
	for (uint64_t b = from; b < from + count; b++) {
		struct coral_block *blk;
		if (coral_block_get(s, file, b, x ? CORAL_MODE_X : CORAL_MODE_S, &blk) != 0) {
			fprintf(stderr, "recovery-load: block %u:%llu: %s\n", file, (unsigned long long)b,
				coral_session_error(s));
			return 1;
		}
		if (x) {
			uint64_t v = b * 7 + 1;
			if (coral_block_modify(s, blk, 0, &v, sizeof(v)) != 0) {
				fprintf(stderr, "recovery-load: %s\n", coral_session_error(s));
				return 1;
			}
		}
		coral_block_release(s, blk);
		done++;
		if (x && (done % per_txn == 0 || b + 1 == from + count) && coral_commit(s, NULL) != 0) {
			fprintf(stderr, "recovery-load: commit: %s\n", coral_session_error(s));
			return 1;
		}
	}
	double el = now_s() - t0;
	printf("node %d: %llu blocks of file %u from %llu in %s%s in %.2f s\n", node, (unsigned long long)done, file,
	       (unsigned long long)from, x ? "X, each changed and committed" : "S", x ? "" : " (read)", el);
	coral_session_close(s);
	return 0;
}

/* coral-bank: a workload for cache fusion. N accounts live in the blocks of a data file
 * (a few per block, so that transfers meet on blocks); sessions on every node (threads, each
 * with its own libcoral session) move money between two random accounts: both blocks in X,
 * in block order (no session waits for a block while holding a higher one), both balances
 * changed with redo, then commit. At the end one session reads every account back through
 * the cache: the total must be unchanged and every account must hold exactly its initial
 * balance plus the committed transfers that touched it (so each committed transfer is there,
 * and nothing else is). It also counts the commit records in every node's redo thread.
 *
 * Each block also holds the total of its accounts, changed in the same X hold as the
 * balances. Readers (--readers R sessions on every node) take consistent-read copies of
 * random blocks meanwhile and check each image: its balances add up to its total (a copy
 * taken while a session was changing the block would not), and no copy of a block is older
 * than the one the same reader saw before (SCNs never go back).
 *
 * With --ride-through MS the run goes on through a node's loss: a transfer whose commit
 * failed (or whose changes could not be taken back) is indeterminate, and the check accepts
 * it present entirely or not at all, while every acknowledged transfer must be there; a
 * session whose call failed opens a new session on its node, for up to MS, and stops if its
 * node does not come back by then.
 *
 * With --row-locks each transfer first takes an EX global enqueue (lmdd) on each of its two
 * accounts, in random order, so that sessions deadlock; the victim (CORAL_ERR_DEADLOCK) lets
 * its first lock go and the transfer is tried again later. The report counts the deadlocks
 * and the longest a victim waited before it was refused.
 *
 * Usage: coral-bank [-c FILE] [--accounts N] [--per-block K] [--seconds S] [--sessions P]
 *                   [--readers R] [--nodes 1,2,3] [--file NAME] [--seed X] [--ride-through MS]
 *                   [--row-locks] [--json]
 *        coral-bank -c STANDBY_FILE --check-copy [--accounts N] [--per-block K] [--file NAME] [--nodes N]
 *                   [--json]
 *
 * --check-copy reads a standby's copy of the accounts instead (replicad's apply, see
 * replicad(8)), through a session of a standby node held at one applied SCN: the money adds
 * up and every block's balances to its total. */
#include "coral.h"

#include "conf.h"
#include "copy.h"
#include "ctl.h"
#include "errors.h"
#include "redo.h"
#include "storage.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL 1000
#define ACCT_BYTES 16   /* u64 account id, i64 balance */
#define MAX_SESSIONS 512
#define LAT_BUCKETS 200

struct xfer {
	uint32_t from, to;
	int32_t amount;
	uint64_t scn;        /* the commit's SCN on its node: for the report of a failed check */
	int64_t from_after, to_after;   /* the balances it wrote, and */
	uint64_t from_scn, to_scn;      /* the SCN of each block after its change: likewise */
};

struct worker {
	pthread_t t;
	int node;
	uint64_t rng;
	struct coral_session *s;
	struct xfer *log;
	size_t nlog, caplog;
	uint64_t done, refused, errors;
	struct xfer *unk;              /* --ride-through: transfers whose outcome is not known */
	size_t nunk, capunk;
	bool gone;                     /* its node did not come back within --ride-through */
	uint32_t lat[LAT_BUCKETS];     /* 8 buckets per power of two of microseconds */
	uint64_t deadlocks, victim_wait_us;  /* --row-locks: victims, and the longest one's wait */
	uint64_t false_victims;        /* refused on its first lock: it held none, so no cycle was real */
	uint64_t queue_timeouts;       /* calls its group's active session pool did not admit in time */
	struct coral_session_stats st;
	char err[256];
};

static const char *conf_path;
static uint32_t file_id, accounts = 1000, per_block = 8;
static double seconds = 5;
static int64_t ride_ms;          /* --ride-through */
static bool row_locks;           /* --row-locks */
static _Atomic bool stop;

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static uint64_t block_of(uint32_t a) { return a / per_block; }
static uint32_t slot_of(uint32_t a) { return (a % per_block) * ACCT_BYTES; }
static uint32_t total_at(void) { return per_block * ACCT_BYTES; }  /* the block's total */

static int64_t balance(const struct coral_block *b, uint32_t a)
{
	int64_t v;
	memcpy(&v, (const uint8_t *)coral_block_data(b) + slot_of(a) + 8, 8);
	return v;
}

static int64_t block_total(const struct coral_block *b)
{
	int64_t v;
	memcpy(&v, (const uint8_t *)coral_block_data(b) + total_at(), 8);
	return v;
}

/* The sum of the balances in block blk's image, and the total it records */
static void block_sums(const struct coral_block *b, uint64_t blk, int64_t *sum, int64_t *total)
{
	*sum = 0;
	for (uint32_t a = (uint32_t)(blk * per_block); a < accounts && block_of(a) == blk; a++)
		*sum += balance(b, a);
	*total = block_total(b);
}

static void lat_add(struct worker *w, uint64_t us)
{
	int b = us == 0 ? 0 : (int)(8.0 * log2((double)us + 1.0));
	w->lat[b < LAT_BUCKETS ? b : LAT_BUCKETS - 1]++;
}

static int log_add(struct xfer **log, size_t *n, size_t *cap, const struct xfer *x)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 4096;
		struct xfer *p = realloc(*log, c * sizeof(*p));
		if (p == NULL)
			return CORAL_ENOMEM;
		*log = p;
		*cap = c;
	}
	(*log)[(*n)++] = *x;
	return 0;
}

static int move_money(struct worker *w, uint32_t a, uint32_t b, int32_t amount)
{
	uint64_t ba = block_of(a), bb = block_of(b);
	uint64_t lo = ba < bb ? ba : bb, hi = ba < bb ? bb : ba;
	struct coral_block *blo = NULL, *bhi = NULL;
	int rc = coral_block_get(w->s, file_id, lo, CORAL_MODE_X, &blo);
	if (rc == 0 && hi != lo)
		rc = coral_block_get(w->s, file_id, hi, CORAL_MODE_X, &bhi);
	if (rc != 0) {
		snprintf(w->err, sizeof(w->err), "%s", coral_session_error(w->s));
		if (blo)
			coral_block_release(w->s, blo);
		return rc;
	}
	struct coral_block *xa = ba == lo ? blo : bhi, *xb = bb == lo ? blo : bhi;
	if (hi == lo)
		xa = xb = blo;
	int64_t va = balance(xa, a), vb = balance(xb, b);
	if (va < amount) {
		coral_block_release(w->s, blo);
		if (bhi)
			coral_block_release(w->s, bhi);
		w->refused++;
		return 0;
	}
	va -= amount;
	vb += amount;
	struct xfer x = {a, b, amount, 0, va, vb, 0, 0};
	rc = coral_block_modify(w->s, xa, slot_of(a) + 8, &va, 8);
	if (rc == 0)
		rc = coral_block_modify(w->s, xb, slot_of(b) + 8, &vb, 8);
	if (rc == 0 && xa != xb) {
		int64_t ta = block_total(xa) - amount, tb = block_total(xb) + amount;
		rc = coral_block_modify(w->s, xa, total_at(), &ta, 8);
		if (rc == 0)
			rc = coral_block_modify(w->s, xb, total_at(), &tb, 8);
	}
	uint64_t scn_a = coral_block_scn(w->s, xa), scn_b = coral_block_scn(w->s, xb);
	coral_block_release(w->s, blo);
	if (bhi)
		coral_block_release(w->s, bhi);
	uint64_t scn = 0;
	if (rc == 0)
		rc = coral_commit(w->s, &scn);
	if (rc != 0) {
		snprintf(w->err, sizeof(w->err), "%s", coral_session_error(w->s));
		/* what a failed change left open is taken back (a failed commit has ended the
		 * transaction: nothing to do). A failed commit may still become durable, and a
		 * rollback that fails leaves it to recovery: its outcome is not known */
		coral_rollback(w->s);
		if (ride_ms > 0 && log_add(&w->unk, &w->nunk, &w->capunk, &x) != 0)
			return CORAL_ENOMEM;
		return rc;
	}
	x.scn = scn;
	x.from_scn = scn_a;
	x.to_scn = scn_b;
	return log_add(&w->log, &w->nlog, &w->caplog, &x);
}

/* --row-locks: EX on both accounts, in the order given (random: sessions deadlock). 0, 1 (a
 * deadlock's victim: nothing held, try again), or an error. */
static int lock_rows(struct worker *w, uint32_t first, uint32_t second, uint64_t lk[2])
{
	char n1[32], n2[32];
	snprintf(n1, sizeof(n1), "acct-%u", first);
	snprintf(n2, sizeof(n2), "acct-%u", second);
	int rc = coral_lock(w->s, n1, strlen(n1), CORAL_LOCK_EX, 0, 30000, &lk[0], NULL, NULL);
	if (rc != 0) {
		snprintf(w->err, sizeof(w->err), "%s", coral_session_error(w->s));
		if (rc != CORAL_ERR_DEADLOCK)
			return rc;
		w->false_victims++;
		return 1;
	}
	uint64_t t0 = coral_now_mono_ns();
	rc = coral_lock(w->s, n2, strlen(n2), CORAL_LOCK_EX, 0, 30000, &lk[1], NULL, NULL);
	if (rc == 0)
		return 0;
	snprintf(w->err, sizeof(w->err), "%s", coral_session_error(w->s));
	coral_unlock(w->s, lk[0], NULL);
	if (rc != CORAL_ERR_DEADLOCK)
		return rc;
	uint64_t us = (coral_now_mono_ns() - t0) / 1000;
	w->deadlocks++;
	if (us > w->victim_wait_us)
		w->victim_wait_us = us;
	return 1;
}

/* One transfer between two random accounts: 0 (done, or refused for funds), 1 (nothing
 * done: a deadlock's victim), or an error. */
static int transfer(struct worker *w)
{
	uint32_t a = (uint32_t)(rnd(&w->rng) % accounts), b;
	do
		b = (uint32_t)(rnd(&w->rng) % accounts);
	while (b == a);
	int32_t amount = (int32_t)(1 + rnd(&w->rng) % 100);
	if (!row_locks)
		return move_money(w, a, b, amount);
	uint64_t lk[2];
	bool swap = rnd(&w->rng) & 1;
	int rc = lock_rows(w, swap ? b : a, swap ? a : b, lk);
	if (rc != 0)
		return rc;
	rc = move_money(w, a, b, amount);
	coral_unlock(w->s, lk[1], NULL);
	coral_unlock(w->s, lk[0], NULL);
	return rc;
}

struct reader {
	pthread_t t;
	int node;
	uint64_t rng;
	struct coral_session *s;
	uint64_t *seen;               /* per block: the SCN of the last copy read */
	uint64_t reads, torn, went_back, errors, queue_timeouts;
	struct coral_session_stats st;
	char err[256];
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint64_t blocks = (accounts + per_block - 1) / per_block;
	while (!atomic_load(&stop)) {
		uint64_t blk = rnd(&r->rng) % blocks;
		struct coral_block *b;
		int q = coral_call_begin(r->s, -1); /* a read is one call: its group's pool */
		if (q == CORAL_ERR_TIMEDOUT) {
			r->queue_timeouts++;
			continue;
		}
		int rc = coral_block_get(r->s, file_id, blk, CORAL_MODE_CR, &b);
		if (rc != 0 && q == 0)
			coral_call_end(r->s);
		if (rc != 0) {
			snprintf(r->err, sizeof(r->err), "%s", coral_session_error(r->s));
			if (++r->errors > 100)
				break;
			continue;
		}
		int64_t sum, total;
		block_sums(b, blk, &sum, &total);
		uint64_t scn = coral_block_scn(r->s, b);
		coral_block_release(r->s, b);
		if (q == 0)
			coral_call_end(r->s);
		r->reads++;
		if (sum != total && r->torn++ == 0)
			snprintf(r->err, sizeof(r->err), "block %llu (SCN %llu): balances add up to %lld, its total is %lld",
				 (unsigned long long)blk, (unsigned long long)scn, (long long)sum, (long long)total);
		if (scn < r->seen[blk] && r->went_back++ == 0 && r->torn == 0)
			snprintf(r->err, sizeof(r->err), "block %llu: a copy at SCN %llu after one at SCN %llu",
				 (unsigned long long)blk, (unsigned long long)scn, (unsigned long long)r->seen[blk]);
		if (scn > r->seen[blk])
			r->seen[blk] = scn;
	}
	coral_session_stats(r->s, &r->st);
	return NULL;
}

/* --ride-through: a new session on the worker's node, tried until it opens or ride_ms has
 * passed; false if the node did not come back. */
static bool reopen(struct worker *w)
{
	coral_session_close(w->s);
	w->s = NULL;
	uint64_t t0 = coral_now_mono_ns();
	while (!atomic_load(&stop) && (int64_t)((coral_now_mono_ns() - t0) / 1000000ull) < ride_ms) {
		struct coral_session *s;
		if (coral_session_open(conf_path, w->node, "bank", "coral-bank", &s) == 0) {
			w->s = s;
			return true;
		}
		snprintf(w->err, sizeof(w->err), "%s", coral_session_error(s));
		coral_session_close(s);
		struct timespec ts = {0, 200 * 1000000L};
		nanosleep(&ts, NULL);
	}
	return false;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	while (!atomic_load(&stop)) {
		uint64_t t0 = coral_now_mono_ns();
		/* one transfer is one call for the resource manager (rsrcmgrd(8)): its group's pool */
		int q = coral_call_begin(w->s, -1);
		if (q == CORAL_ERR_TIMEDOUT) {
			w->queue_timeouts++;
			continue;
		}
		int rc = transfer(w);
		if (q == 0)
			coral_call_end(w->s);
		if (rc == 1)
			continue;  /* a deadlock's victim: tried again */
		if (rc != 0 && ride_ms > 0) {
			w->errors++;
			if (rc == CORAL_ENOMEM || (!reopen(w) && !atomic_load(&stop))) {
				w->gone = true;
				break;
			}
			continue;
		}
		if (rc != 0) {
			w->errors++;
			/* a failed commit leaves its outcome unknown: the check cannot be exact */
			if (w->errors > 100)
				break;
			continue;
		}
		w->done++;
		lat_add(w, (coral_now_mono_ns() - t0) / 1000);
	}
	if (w->s)
		coral_session_stats(w->s, &w->st);
	return NULL;
}

static uint64_t lat_pct(const uint32_t *lat, double pct)
{
	uint64_t n = 0, seen = 0;
	for (int i = 0; i < LAT_BUCKETS; i++)
		n += lat[i];
	if (n == 0)
		return 0;
	uint64_t want = (uint64_t)ceil((double)n * pct / 100.0);
	for (int i = 0; i < LAT_BUCKETS; i++) {
		seen += lat[i];
		if (seen >= want)
			return (uint64_t)(pow(2.0, (i + 1) / 8.0) - 1.0);
	}
	return 0;
}

/* A failed check says what it can to whoever chases the cause: the account, what it should
 * hold and holds, and where the chain of its committed transfers breaks. Each transfer
 * recorded the block's SCN after its change (a block's changes have increasing SCNs in
 * every order any session saw them) and the balance it left, so, in SCN order, each one
 * must have started from the balance the one before left. */
struct touch {
	uint64_t scn;
	int64_t before, after;
	int node;
	const struct xfer *x;
};
static int touch_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct touch *)a)->scn, y = ((const struct touch *)b)->scn;
	return x < y ? -1 : x > y;
}

static void report_wrong(const struct worker *w, int nw, uint32_t a, int64_t start, int64_t want, int64_t got,
			 uint64_t scn)
{
	fprintf(stderr, "coral-bank: account %u (block %llu) holds %lld, its committed transfers say %lld "
			"(image SCN %llu)\n",
		a, (unsigned long long)block_of(a), (long long)got, (long long)want, (unsigned long long)scn);
	size_t n = 0, cap = 0;
	struct touch *t = NULL;
	for (int i = 0; i < nw; i++)
		for (size_t k = 0; k < w[i].nlog; k++) {
			const struct xfer *x = &w[i].log[k];
			if (x->from != a && x->to != a)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				struct touch *nt = realloc(t, cap * sizeof(*t));
				if (nt == NULL) {
					free(t);
					return;
				}
				t = nt;
			}
			bool out = x->from == a;
			int64_t after = out ? x->from_after : x->to_after;
			t[n++] = (struct touch){out ? x->from_scn : x->to_scn, out ? after + x->amount : after - x->amount,
						after, w[i].node, x};
		}
	qsort(t, n, sizeof(*t), touch_cmp);
	int64_t prev = start;
	int shown = 0;
	for (size_t i = 0; i < n && shown < 4; i++) {
		if (t[i].before != prev) {
			shown++;
			fprintf(stderr, "  the chain breaks at transfer %zu of %zu: it found %lld where the one before left %lld\n",
				i + 1, n, (long long)t[i].before, (long long)prev);
			for (size_t j = i >= 2 ? i - 2 : 0; j < n && j <= i + 1; j++)
				fprintf(stderr, "    %s node %d block SCN %llu commit SCN %llu: %u -> %u amount %d, found %lld left %lld\n",
					j == i ? ">" : " ", t[j].node, (unsigned long long)t[j].scn,
					(unsigned long long)t[j].x->scn, t[j].x->from, t[j].x->to, t[j].x->amount,
					(long long)t[j].before, (long long)t[j].after);
		}
		prev = t[i].after;
	}
	if (shown == 0)
		fprintf(stderr, "  its %zu transfers chain without a break from %lld to %lld\n", n, (long long)start,
			(long long)prev);
	free(t);
}

/* One group of indeterminate transfers (those sharing accounts, transitively): the subset
 * present is the one that makes every account it touches hold what the data says. */
#define UNK_MAX_GROUP 20

static bool group_fits(const struct xfer *const *g, int n, uint32_t mask, const int64_t *expect, const int64_t *actual)
{
	for (int i = 0; i < n; i++) {
		uint32_t acct[2] = {g[i]->from, g[i]->to};
		for (int s = 0; s < 2; s++) {
			int64_t v = expect[acct[s]];
			for (int j = 0; j < n; j++) {
				if (!(mask & (1u << j)))
					continue;
				if (g[j]->from == acct[s])
					v -= g[j]->amount;
				if (g[j]->to == acct[s])
					v += g[j]->amount;
			}
			if (v != actual[acct[s]])
				return false;
		}
	}
	return true;
}

/* Places every indeterminate transfer: the present ones are added to expect; false when
 * some group has no subset that explains the data (a transfer present in part) or is too
 * large to try. */
static bool resolve_unknown(const struct worker *w, int nw, int64_t *expect, const int64_t *actual, uint64_t *present)
{
	size_t n = 0;
	for (int i = 0; i < nw; i++)
		n += w[i].nunk;
	if (n == 0)
		return true;
	const struct xfer **all = calloc(n, sizeof(*all));
	bool *used = calloc(n, sizeof(*used));
	const struct xfer **g = calloc(n, sizeof(*g));
	if (all == NULL || used == NULL || g == NULL)
		return false;
	n = 0;
	for (int i = 0; i < nw; i++)
		for (size_t k = 0; k < w[i].nunk; k++)
			all[n++] = &w[i].unk[k];
	bool ok = true;
	for (size_t s = 0; s < n; s++) {
		if (used[s])
			continue;
		int gn = 0;
		g[gn++] = all[s];
		used[s] = true;
		for (bool grew = true; grew;) {
			grew = false;
			for (size_t t = 0; t < n; t++) {
				if (used[t])
					continue;
				for (int j = 0; j < gn && !used[t]; j++)
					if (all[t]->from == g[j]->from || all[t]->from == g[j]->to || all[t]->to == g[j]->from ||
					    all[t]->to == g[j]->to) {
						used[t] = true;
						g[gn++] = all[t];
						grew = true;
					}
			}
		}
		if (gn > UNK_MAX_GROUP) {
			fprintf(stderr, "coral-bank: %d indeterminate transfers share accounts: too many to place\n", gn);
			ok = false;
			continue;
		}
		bool found = false;
		for (uint32_t mask = 0; mask < (1u << gn) && !found; mask++) {
			if (!group_fits(g, gn, mask, expect, actual))
				continue;
			found = true;
			for (int j = 0; j < gn; j++)
				if (mask & (1u << j)) {
					expect[g[j]->from] -= g[j]->amount;
					expect[g[j]->to] += g[j]->amount;
					(*present)++;
				}
		}
		if (!found) {
			fprintf(stderr, "coral-bank: %d indeterminate transfers (first: %u -> %u, %d) are present in part\n", gn,
				g[0]->from, g[0]->to, g[0]->amount);
			ok = false;
		}
	}
	free(all);
	free(used);
	free(g);
	return ok;
}

/* The data file: created on first use, every account set to INITIAL from node `node`. */
static int setup(struct coral_conf *conf, const char *name, int node)
{
	struct coral_ctlfile *cf = malloc(sizeof(*cf));
	char err[CORAL_ERRMSG_MAX];
	if (cf == NULL)
		return CORAL_ENOMEM;
	int rc = coral_ctlfile_load(conf, cf, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "coral-bank: %s\n", err);
		free(cf);
		return rc;
	}
	uint64_t blocks = (accounts + per_block - 1) / per_block;
	bool exists = false;
	for (uint32_t i = 0; i < cf->nfiles; i++) {
		if (strcmp(cf->files[i].name, name) == 0) {
			exists = true;
			file_id = cf->files[i].id;
			if (cf->files[i].blocks < blocks) {
				fprintf(stderr, "coral-bank: data file %s has %llu blocks; %u accounts at %u per block need %llu\n",
					name, (unsigned long long)cf->files[i].blocks, accounts, per_block,
					(unsigned long long)blocks);
				free(cf);
				return CORAL_EINVAL;
			}
		}
	}
	free(cf);
	if (!exists) {
		rc = coral_datafile_create(conf, name, blocks, &file_id, err, sizeof(err));
		if (rc != 0) {
			fprintf(stderr, "coral-bank: creating data file %s: %s\n", name, err);
			return rc;
		}
	}
	struct coral_session *s;
	rc = coral_session_open(conf_path, node, "bank", "coral-bank", &s);
	if (rc != 0) {
		fprintf(stderr, "coral-bank: session on node %d: %s\n", node, coral_session_error(s));
		coral_session_close(s);
		return rc;
	}
	for (uint64_t blk = 0; blk < blocks && rc == 0; blk++) {
		struct coral_block *b;
		rc = coral_block_get(s, file_id, blk, CORAL_MODE_X, &b);
		int64_t total = 0;
		for (uint32_t a = (uint32_t)(blk * per_block); rc == 0 && a < accounts && block_of(a) == blk; a++) {
			uint64_t rec[2] = {a, INITIAL};
			rc = coral_block_modify(s, b, slot_of(a), rec, sizeof(rec));
			total += INITIAL;
		}
		if (rc == 0)
			rc = coral_block_modify(s, b, total_at(), &total, sizeof(total));
		if (b)
			coral_block_release(s, b);
		/* a block a transaction, as a transaction keeps every block it changed pinned
		 * until its commit (coral.h) and a session holds 64 pins at most */
		if (rc == 0)
			rc = coral_commit(s, NULL);
	}
	if (rc != 0)
		fprintf(stderr, "coral-bank: setting up the accounts: %s\n", coral_session_error(s));
	coral_session_close(s);
	return rc;
}

struct redo_count {
	uint64_t commits;
};
static int count_commits(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	(void)bytes;
	if (rec->type == CORAL_REDO_COMMIT)
		((struct redo_count *)arg)->commits++;
	return 0;
}

static int gcs_counts(const struct coral_conf *conf, int node, uint64_t *two, uint64_t *three)
{
	const struct coral_node_conf *n = coral_conf_node_by_id(conf, node);
	char sock[CORAL_STR_MAX + 32];
	coral_conf_sock_path(n, "lmsd", sock, sizeof(sock));
	Coral__CtlRequest req = CORAL__CTL_REQUEST__INIT;
	Coral__Header hdr = CORAL__HEADER__INIT;
	Coral__GcsStatsRequest g = CORAL__GCS_STATS_REQUEST__INIT;
	req.hdr = &hdr;
	req.body_case = CORAL__CTL_REQUEST__BODY_GCS_STATS;
	req.gcs_stats = &g;
	Coral__CtlResponse *resp;
	char err[CORAL_ERRMSG_MAX];
	int rc = coral_ctl_call(sock, &req, (size_t)conf->cluster.max_frame, 5000, &resp, err, sizeof(err));
	if (rc != 0)
		return rc;
	if (resp->gcs_stats) {
		*two += resp->gcs_stats->two_way;
		*three += resp->gcs_stats->three_way;
	}
	coral_ctl_response_free(resp);
	return 0;
}

/* --check-copy: a standby's copy of the accounts, read by a session of the standby's node
 * (its apply's copy of the primary's data files, libcoral's CR reads there) held at one
 * applied SCN: every block's balances add up to its total and the money to what the accounts
 * began with. */
static int check_copy(const struct coral_conf *sconf, const char *name, int node, bool json)
{
	if (!coral_copy_is_standby(sconf)) {
		fprintf(stderr, "coral-bank: --check-copy reads a standby's copy: %s is not a standby's configuration\n",
			sconf->path);
		return 2;
	}
	static struct coral_conf pc;
	coral_copy_conf(sconf, &pc);
	static struct coral_ctlfile cf;
	char err[512];
	if (coral_ctlfile_load(&pc, &cf, err, sizeof(err)) != 0) {
		fprintf(stderr, "coral-bank: the standby's copy: %s\n", err);
		return 1;
	}
	uint32_t k = 0;
	while (k < cf.nfiles && strcmp(cf.files[k].name, name) != 0)
		k++;
	if (k == cf.nfiles) {
		fprintf(stderr, "coral-bank: the standby's copy has no data file '%s' (seeded before it was created?)\n", name);
		return 1;
	}
	file_id = cf.files[k].id;
	struct coral_session *s;
	uint64_t applied = 0;
	int rc = coral_session_open(conf_path, node, "bank", "coral-bank-copy", &s);
	if (rc == 0)
		rc = coral_standby_hold(s, &applied); /* no batch of the apply in the middle of the reads */
	if (rc != 0) {
		fprintf(stderr, "coral-bank: the standby's copy on node %d: %s\n", node, coral_session_error(s));
		coral_session_close(s);
		return 1;
	}
	int64_t total = 0;
	uint32_t wrong = 0;
	uint64_t nblocks = (accounts + per_block - 1) / per_block, top = 0;
	for (uint64_t blk = 0; blk < nblocks && rc == 0; blk++) {
		struct coral_block *b;
		if ((rc = coral_block_get(s, file_id, blk, CORAL_MODE_CR, &b)) != 0) {
			fprintf(stderr, "coral-bank: the standby's copy: %s\n", coral_session_error(s));
			break;
		}
		int64_t sum, bt;
		block_sums(b, blk, &sum, &bt);
		if (sum != bt)
			wrong++;
		total += sum;
		uint64_t scn = coral_block_scn(s, b);
		if (scn > top)
			top = scn;
		coral_block_release(s, b);
	}
	coral_standby_release(s);
	coral_session_close(s);
	if (rc != 0)
		return 1;
	int64_t want = (int64_t)accounts * INITIAL;
	bool ok = total == want && wrong == 0 && top <= applied;
	if (json)
		printf("{\"ok\":%s,\"copy\":\"%s\",\"accounts\":%u,\"total\":%lld,\"expected_total\":%lld,"
		       "\"wrong_block_totals\":%u,\"blocks\":%llu,\"max_scn\":%llu,\"applied_scn\":%llu}\n",
		       ok ? "true" : "false", pc.storage.shared_dir, accounts, (long long)total, (long long)want, wrong,
		       (unsigned long long)nblocks, (unsigned long long)top, (unsigned long long)applied);
	else
		printf("coral-bank: the standby's copy in %s at applied SCN %llu: %u accounts in %llu blocks hold %lld (%s "
		       "%lld), %u block%s whose balances do not add up to their total; highest block SCN %llu%s: %s\n",
		       pc.storage.shared_dir, (unsigned long long)applied, accounts, (unsigned long long)nblocks,
		       (long long)total, total == want ? "as they began:" : "they began with", (long long)want, wrong,
		       wrong == 1 ? "" : "s", (unsigned long long)top, top > applied ? " (past the applied SCN!)" : "",
		       ok ? "OK" : "WRONG");
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *name = "bank", *nodes_arg = NULL;
	bool check_copy_only = false;
	int sessions = 4, readers = 0;
	bool json = false;
	uint64_t seed = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--json") == 0) { json = true; continue; }
		if (strcmp(a, "--row-locks") == 0) { row_locks = true; continue; }
		if (strcmp(a, "--check-copy") == 0) { check_copy_only = true; continue; }
		if (v == NULL) goto usage;
		if (strcmp(a, "-c") == 0) conf_path = v;
		else if (strcmp(a, "--accounts") == 0) accounts = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--per-block") == 0) per_block = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--seconds") == 0) seconds = strtod(v, NULL);
		else if (strcmp(a, "--sessions") == 0) sessions = atoi(v);
		else if (strcmp(a, "--readers") == 0) readers = atoi(v);
		else if (strcmp(a, "--nodes") == 0) nodes_arg = v;
		else if (strcmp(a, "--file") == 0) name = v;
		else if (strcmp(a, "--seed") == 0) seed = strtoull(v, NULL, 10);
		else if (strcmp(a, "--ride-through") == 0) ride_ms = strtoll(v, NULL, 10);
		else goto usage;
		i++;
	}
	if (conf_path == NULL)
		conf_path = coral_conf_default_path();
	struct coral_conf *conf = calloc(1, sizeof(*conf));
	if (conf == NULL || coral_conf_load(conf, conf_path) != 0) {
		fprintf(stderr, "coral-bank: %s\n", conf ? conf->errmsg : "out of memory");
		return 2;
	}
	uint32_t payload = (uint32_t)conf->storage.block_size - CORAL_BLOCK_HDR;
	if (check_copy_only && accounts >= 2 && per_block >= 1 && per_block * ACCT_BYTES + 8 <= payload) {
		/* a session on the first node of --nodes, or of the standby's configuration */
		int rc = check_copy(conf, name, nodes_arg ? atoi(nodes_arg) : (int)conf->nodes[0].id, json);
		free(conf);
		return rc;
	}
	if (accounts < 2 || per_block < 1 || per_block * ACCT_BYTES + 8 > payload || sessions < 1 || readers < 0 ||
	    seconds <= 0) {
		fprintf(stderr, "coral-bank: need at least 2 accounts, 1..%u per block, 1 session, 0 or more readers "
				"and a duration\n",
			(payload - 8) / ACCT_BYTES);
		return 2;
	}
	int nodes[CORAL_MAX_NODES], nn = 0;
	if (nodes_arg) {
		for (const char *p = nodes_arg; *p && nn < CORAL_MAX_NODES;) {
			nodes[nn++] = atoi(p);
			p = strchr(p, ',');
			if (p == NULL)
				break;
			p++;
		}
	} else {
		for (int i = 0; i < conf->nnodes; i++)
			nodes[nn++] = (int)conf->nodes[i].id;
	}
	if (nn * (sessions + readers) > MAX_SESSIONS) {
		fprintf(stderr, "coral-bank: at most %d sessions in all\n", MAX_SESSIONS);
		return 2;
	}
	if (setup(conf, name, nodes[0]) != 0)
		return 1;
	/* the accounts as they are now: a previous run may have moved money already */
	int64_t *start = calloc(accounts, sizeof(int64_t)), *expect = calloc(accounts, sizeof(int64_t));
	struct worker *w = calloc((size_t)(nn * sessions), sizeof(*w));
	struct reader *rd = calloc((size_t)(nn * readers) + 1, sizeof(*rd));
	if (start == NULL || expect == NULL || w == NULL || rd == NULL)
		return 1;
	struct coral_session *chk;
	if (coral_session_open(conf_path, nodes[0], "bank", "coral-bank-check", &chk) != 0) {
		fprintf(stderr, "coral-bank: %s\n", coral_session_error(chk));
		return 1;
	}
	int64_t total0 = 0;
	for (uint64_t blk = 0; blk * per_block < accounts; blk++) {
		struct coral_block *b;
		if (coral_block_get(chk, file_id, blk, CORAL_MODE_S, &b) != 0) {
			fprintf(stderr, "coral-bank: reading block %llu: %s\n", (unsigned long long)blk,
				coral_session_error(chk));
			return 1;
		}
		for (uint32_t a = (uint32_t)(blk * per_block); a < accounts && block_of(a) == blk; a++)
			total0 += start[a] = balance(b, a);
		coral_block_release(chk, b);
	}
	uint64_t two0 = 0, three0 = 0;
	for (int i = 0; i < nn; i++)
		gcs_counts(conf, nodes[i], &two0, &three0);
	uint64_t ckpt0[CORAL_MAX_NODES];
	for (int i = 0; i < nn; i++) {
		struct coral_redo_ckpt k;
		char err[256];
		ckpt0[i] = coral_redo_ckpt_read(conf->storage.shared_dir, (uint32_t)nodes[i], &k, err, sizeof(err)) == 0 ? k.lsn : 0;
	}
	uint64_t t0 = coral_now_mono_ns();
	int nw = 0;
	for (int i = 0; i < nn; i++) {
		for (int k = 0; k < sessions; k++, nw++) {
			w[nw].node = nodes[i];
			w[nw].rng = seed * 0x9e3779b97f4a7c15ull + (uint64_t)nw * 7919 + 1;
			if (coral_session_open(conf_path, nodes[i], "bank", "coral-bank", &w[nw].s) != 0) {
				fprintf(stderr, "coral-bank: session on node %d: %s\n", nodes[i],
					coral_session_error(w[nw].s));
				return 1;
			}
		}
	}
	int nr = 0;
	uint64_t blocks = (accounts + per_block - 1) / per_block;
	for (int i = 0; i < nn; i++) {
		for (int k = 0; k < readers; k++, nr++) {
			rd[nr].node = nodes[i];
			rd[nr].rng = seed * 0x2545f4914f6cdd1dull + (uint64_t)nr * 104729 + 1;
			if ((rd[nr].seen = calloc(blocks, sizeof(uint64_t))) == NULL)
				return 1;
			if (coral_session_open(conf_path, nodes[i], "bank", "coral-bank-reader", &rd[nr].s) != 0) {
				fprintf(stderr, "coral-bank: reader on node %d: %s\n", nodes[i],
					coral_session_error(rd[nr].s));
				return 1;
			}
		}
	}
	for (int i = 0; i < nw; i++)
		pthread_create(&w[i].t, NULL, worker_main, &w[i]);
	for (int i = 0; i < nr; i++)
		pthread_create(&rd[i].t, NULL, reader_main, &rd[i]);
	struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
	nanosleep(&ts, NULL);
	atomic_store(&stop, true);
	for (int i = 0; i < nw; i++)
		pthread_join(w[i].t, NULL);
	uint64_t cr_reads = 0, torn = 0, went_back = 0, cr_errors = 0, cr_direct = 0, queue_timeouts = 0;
	for (int i = 0; i < nr; i++) {
		pthread_join(rd[i].t, NULL);
		cr_reads += rd[i].reads;
		queue_timeouts += rd[i].queue_timeouts;
		torn += rd[i].torn;
		went_back += rd[i].went_back;
		cr_errors += rd[i].errors;
		cr_direct += rd[i].st.cr_direct;
		if (rd[i].torn || rd[i].went_back || rd[i].errors)
			fprintf(stderr, "coral-bank: reader %d on node %d: %llu torn copies, %llu older than before, %llu errors; "
					"first: %s\n",
				i, rd[i].node, (unsigned long long)rd[i].torn, (unsigned long long)rd[i].went_back,
				(unsigned long long)rd[i].errors, rd[i].err);
		coral_session_close(rd[i].s);
		free(rd[i].seen);
	}
	free(rd);
	double elapsed = (double)(coral_now_mono_ns() - t0) / 1e9;
	uint64_t two1 = 0, three1 = 0;
	for (int i = 0; i < nn; i++)
		gcs_counts(conf, nodes[i], &two1, &three1);

	/* the check: every account as its committed transfers say */
	memcpy(expect, start, accounts * sizeof(int64_t));
	uint64_t done = 0, refused = 0, errors = 0, gets = 0, hits = 0, commits = 0, waits = 0, unknown = 0;
	uint64_t deadlocks = 0, victim_wait_us = 0, false_victims = 0;
	int lost_sessions = 0;
	uint32_t lat[LAT_BUCKETS] = {0};
	for (int i = 0; i < nw; i++) {
		for (size_t k = 0; k < w[i].nlog; k++) {
			expect[w[i].log[k].from] -= w[i].log[k].amount;
			expect[w[i].log[k].to] += w[i].log[k].amount;
		}
		done += w[i].nlog;
		deadlocks += w[i].deadlocks;
		queue_timeouts += w[i].queue_timeouts;
		false_victims += w[i].false_victims;
		if (w[i].victim_wait_us > victim_wait_us)
			victim_wait_us = w[i].victim_wait_us;
		refused += w[i].refused;
		errors += w[i].errors;
		gets += w[i].st.gets;
		hits += w[i].st.local_hits;
		commits += w[i].st.commits;
		waits += w[i].st.pin_waits;
		for (int b = 0; b < LAT_BUCKETS; b++)
			lat[b] += w[i].lat[b];
		if (w[i].errors)
			fprintf(stderr, "coral-bank: session %d on node %d: %llu errors%s, last: %s\n", i, w[i].node,
				(unsigned long long)w[i].errors, w[i].gone ? " (its node did not come back)" : "", w[i].err);
		unknown += w[i].nunk;
		lost_sessions += w[i].gone;
		coral_session_close(w[i].s);
	}
	/* the actual balances, then the indeterminate transfers: each present entirely or not
	 * at all (tried for every group of them that touch the same accounts) */
	int64_t *actual = calloc(accounts, sizeof(int64_t));
	uint64_t nblocks = (accounts + per_block - 1) / per_block;
	uint64_t *blk_scn = calloc(nblocks, sizeof(uint64_t));
	if (actual == NULL || blk_scn == NULL)
		return 1;
	/* one pass over the blocks: every balance, each image's SCN, each block's own total */
	int64_t total1 = 0;
	uint32_t wrong = 0, first_wrong = 0, reported = 0, wrong_totals = 0;
	for (uint64_t blk = 0; blk < nblocks; blk++) {
		struct coral_block *b;
		if (coral_block_get(chk, file_id, blk, CORAL_MODE_S, &b) != 0) {
			fprintf(stderr, "coral-bank: reading block %llu: %s\n", (unsigned long long)blk,
				coral_session_error(chk));
			return 1;
		}
		for (uint32_t a = (uint32_t)(blk * per_block); a < accounts && block_of(a) == blk; a++)
			total1 += actual[a] = balance(b, a);
		blk_scn[blk] = coral_block_scn(chk, b);
		int64_t sum, total;
		block_sums(b, blk, &sum, &total);
		if (sum != total && wrong_totals++ < 4)
			fprintf(stderr, "coral-bank: block %llu: balances add up to %lld, its total is %lld\n",
				(unsigned long long)blk, (long long)sum, (long long)total);
		coral_block_release(chk, b);
	}
	/* the indeterminate transfers placed (the present ones join expect), then every account
	 * as its transfers say */
	uint64_t present = 0;
	bool unknown_ok = resolve_unknown(w, nw, expect, actual, &present);
	for (uint32_t a = 0; a < accounts; a++) {
		if (actual[a] == expect[a])
			continue;
		if (wrong++ == 0)
			first_wrong = a;
		if (reported++ < 4)
			report_wrong(w, nw, a, start[a], expect[a], actual[a], blk_scn[block_of(a)]);
	}
	free(actual);
	free(blk_scn);
	coral_session_close(chk);
	/* the commit records written since the run began (from each thread's checkpoint then:
	 * a record's start), unless the log writer has recycled that segment meanwhile */
	uint64_t redo_commits = 0;
	bool redo_checked = true;
	for (int i = 0; i < nn; i++) {
		struct redo_count rcnt = {0};
		char err[256];
		uint64_t segsize = (uint64_t)conf->cache.redo_segment, nseg, first, last;
		coral_redo_segments(conf->storage.shared_dir, (uint32_t)nodes[i], &nseg, &first, &last);
		if (nseg == 0 || first > ckpt0[i] / segsize) {
			redo_checked = false;
			continue;
		}
		coral_redo_scan(conf->storage.shared_dir, (uint32_t)nodes[i], segsize, ckpt0[i], count_commits, &rcnt, NULL,
				err, sizeof(err));
		redo_commits += rcnt.commits;
	}
	if (!redo_checked)
		redo_commits = done; /* not known: said below */
	/* with --ride-through, errors are the transfers whose outcome is not known, which the
	 * check has placed */
	bool ok = total1 == total0 && wrong == 0 && wrong_totals == 0 && (errors == 0 || ride_ms > 0) && unknown_ok &&
		  redo_commits >= done && torn == 0 && went_back == 0 && (cr_errors == 0 || ride_ms > 0);
	if (json) {
		printf("{\"ok\":%s,\"transfers\":%llu,\"per_second\":%.0f,\"p50_us\":%llu,\"p99_us\":%llu,"
		       "\"refused\":%llu,\"errors\":%llu,\"total_before\":%lld,\"total_after\":%lld,"
		       "\"wrong_accounts\":%u,\"gets\":%llu,\"local_hits\":%llu,\"two_way\":%llu,\"three_way\":%llu,"
		       "\"redo_commits\":%lld,\"wrong_block_totals\":%u,\"cr_reads\":%llu,\"cr_torn\":%llu,"
		       "\"cr_went_back\":%llu,\"cr_errors\":%llu,\"cr_direct\":%llu,\"indeterminate\":%llu,"
		       "\"indeterminate_present\":%llu,\"sessions_lost\":%d,\"row_locks\":%s,\"deadlocks\":%llu,"
		       "\"false_deadlocks\":%llu,\"victim_wait_max_ms\":%.1f,\"queue_timeouts\":%llu}\n",
		       ok ? "true" : "false", (unsigned long long)done, (double)done / elapsed,
		       (unsigned long long)lat_pct(lat, 50), (unsigned long long)lat_pct(lat, 99),
		       (unsigned long long)refused, (unsigned long long)errors, (long long)total0, (long long)total1,
		       wrong, (unsigned long long)gets, (unsigned long long)hits,
		       (unsigned long long)(two1 - two0), (unsigned long long)(three1 - three0),
		       redo_checked ? (long long)redo_commits : -1ll, wrong_totals, (unsigned long long)cr_reads,
		       (unsigned long long)torn, (unsigned long long)went_back, (unsigned long long)cr_errors,
		       (unsigned long long)cr_direct, (unsigned long long)unknown, (unsigned long long)present,
		       lost_sessions, row_locks ? "true" : "false", (unsigned long long)deadlocks,
		       (unsigned long long)false_victims, (double)victim_wait_us / 1000.0,
		       (unsigned long long)queue_timeouts);
	} else {
		printf("coral-bank: %u accounts in %llu blocks of data file %s (%u per block), %d sessions on each of %d nodes, %.1f s\n",
		       accounts, (unsigned long long)((accounts + per_block - 1) / per_block), name, per_block, sessions, nn,
		       elapsed);
		printf("  transfers committed  %llu (%.0f/s), refused for funds %llu, errors %llu\n",
		       (unsigned long long)done, (double)done / elapsed, (unsigned long long)refused,
		       (unsigned long long)errors);
		printf("  latency              p50 %llu us, p99 %llu us\n", (unsigned long long)lat_pct(lat, 50),
		       (unsigned long long)lat_pct(lat, 99));
		printf("  block gets           %llu: %llu local hits (%.1f%%), 2-way %llu, 3-way %llu, pin waits %llu\n",
		       (unsigned long long)gets, (unsigned long long)hits, gets ? 100.0 * (double)hits / (double)gets : 0.0,
		       (unsigned long long)(two1 - two0), (unsigned long long)(three1 - three0), (unsigned long long)waits);
		if (redo_checked)
			printf("  commits              %llu by sessions, %llu commit records in the redo threads since the start\n",
			       (unsigned long long)commits, (unsigned long long)redo_commits);
		else
			printf("  commits              %llu by sessions (the redo they began in was recycled meanwhile: not "
			       "counted)\n", (unsigned long long)commits);
		if (nr > 0)
			printf("  CR reads             %llu by %d readers (%llu straight from the holder): %llu torn, %llu "
			       "older than the reader's previous copy, %llu errors\n",
			       (unsigned long long)cr_reads, nr, (unsigned long long)cr_direct, (unsigned long long)torn,
			       (unsigned long long)went_back, (unsigned long long)cr_errors);
		if (row_locks)
			printf("  row locks            EX on both accounts, in random order: %llu deadlocks found (each "
			       "victim let go and tried again), the longest a victim waited %.1f ms; %llu sessions "
			       "refused as victims while they held no row lock (no real cycle)\n",
			       (unsigned long long)deadlocks, (double)victim_wait_us / 1000.0,
			       (unsigned long long)false_victims);
		if (queue_timeouts)
			printf("  resource manager     %llu calls not admitted by their group's active session pool "
			       "within its queue timeout (not tried)\n", (unsigned long long)queue_timeouts);
		if (ride_ms > 0)
			printf("  indeterminate        %llu transfers whose commit failed: %llu of them present, the "
			       "others absent%s; %d sessions whose node did not come back\n",
			       (unsigned long long)unknown, (unsigned long long)present,
			       unknown_ok ? "" : " (NOT so: some are present in part)", lost_sessions);
		printf("  total                %lld before, %lld after: %s\n", (long long)total0, (long long)total1,
		       total1 == total0 ? "unchanged" : "CHANGED");
		if (wrong)
			printf("  accounts             %u differ from their committed transfers (first: %u)\n", wrong,
			       first_wrong);
		else
			printf("  accounts             every one holds exactly its committed transfers\n");
		if (wrong_totals)
			printf("  blocks               %u whose balances do not add up to their total\n", wrong_totals);
		printf("  check                %s\n", ok ? "PASSED" : "FAILED");
	}
	for (int i = 0; i < nw; i++) {
		free(w[i].log);
		free(w[i].unk);
	}
	free(w);
	free(start);
	free(expect);
	free(conf);
	return ok ? 0 : 1;
usage:
	fprintf(stderr, "usage: coral-bank [-c FILE] [--accounts N] [--per-block K] [--seconds S] [--sessions P]\n"
			"                  [--readers R] [--nodes 1,2,3] [--file NAME] [--seed X] [--ride-through MS]\n"
			"                  [--row-locks]\n"
			"                  [--json]\n"
			"       coral-bank -c STANDBY_FILE --check-copy [--accounts N] [--per-block K] [--file NAME] [--json]\n");
	return 2;
}

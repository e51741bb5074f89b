/* Instance recovery's core: the transactions and changes of the lost threads, sorted by
 * block, applied and rolled back on images in memory (see recovery.h). */
#include "recovery.h"

#include "errors.h"
#include "storage.h"

#include <stdlib.h>
#include <string.h>

struct change {
	uint64_t scn;
	uint64_t block;
	uint64_t at;          /* the new bytes in the arena, then (with undo) the old */
	uint32_t file, offset, len;
	uint32_t txn;
	bool has_undo;
};

struct txn {
	uint32_t thread, session;
	bool committed, open;  /* open: still the session's current one while reading */
	uint64_t commit_scn;   /* its commit record's (0: none read) */
};

#define RECOVERY_MAX_LIVE 64

struct recovery {
	uint64_t max_bytes;
	uint32_t live[RECOVERY_MAX_LIVE];  /* threads of running nodes: nothing of theirs is undone */
	uint32_t nlive;
	struct change *ch;
	uint64_t nch, capch;
	uint8_t *arena;
	uint64_t used, cap;
	struct txn *tx;
	uint32_t ntx, captx;
	uint32_t *open;       /* the transactions still open while reading: few (one a session) */
	uint32_t nopen, capopen;
	/* the blocks of the recovery set: the index of each block's first change */
	uint64_t *first;
	uint64_t nblocks;
	bool planned;
	struct recovery_stats st;
};

struct recovery *recovery_new(uint64_t max_bytes)
{
	struct recovery *r = calloc(1, sizeof(*r));
	if (r)
		r->max_bytes = max_bytes;
	return r;
}

void recovery_free(struct recovery *r)
{
	if (r == NULL)
		return;
	free(r->ch);
	free(r->arena);
	free(r->tx);
	free(r->open);
	free(r->first);
	free(r);
}

const struct recovery_stats *recovery_stats(const struct recovery *r) { return &r->st; }

/* The session's open transaction in thread, or -1 (among the open ones only: a thread holds
 * many closed ones). */
static int64_t open_txn(const struct recovery *r, uint32_t thread, uint32_t session)
{
	for (uint32_t k = 0; k < r->nopen; k++) {
		const struct txn *t = &r->tx[r->open[k]];
		if (t->thread == thread && t->session == session)
			return r->open[k];
	}
	return -1;
}

static void close_txn(struct recovery *r, uint32_t t)
{
	r->tx[t].open = false;
	for (uint32_t k = 0; k < r->nopen; k++)
		if (r->open[k] == t) {
			r->open[k] = r->open[--r->nopen];
			return;
		}
}

static int64_t new_txn(struct recovery *r, uint32_t thread, uint32_t session)
{
	if (r->ntx == r->captx) {
		uint32_t cap = r->captx ? 2 * r->captx : 256;
		struct txn *p = realloc(r->tx, cap * sizeof(*p));
		if (p == NULL)
			return CORAL_ENOMEM;
		r->tx = p;
		r->captx = cap;
	}
	if (r->nopen == r->capopen) {
		uint32_t cap = r->capopen ? 2 * r->capopen : 64;
		uint32_t *p = realloc(r->open, cap * sizeof(*p));
		if (p == NULL)
			return CORAL_ENOMEM;
		r->open = p;
		r->capopen = cap;
	}
	r->tx[r->ntx] = (struct txn){thread, session, false, true, 0};
	r->open[r->nopen++] = r->ntx;
	r->st.txns++;
	return r->ntx++;
}

int recovery_add_record(struct recovery *r, uint32_t thread, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	if (r->planned)
		return CORAL_EINVAL;
	r->st.records++;
	r->st.bytes += rec->len;
	if (rec->scn > r->st.max_scn)
		r->st.max_scn = rec->scn;
	int64_t t = open_txn(r, thread, rec->session);
	if (rec->type == CORAL_REDO_COMMIT) {
		r->st.commits++;
		if (t >= 0) {
			r->tx[t].committed = true;
			r->tx[t].commit_scn = rec->scn;
			close_txn(r, (uint32_t)t);
		}
		return 0;
	}
	if (rec->type != CORAL_REDO_CHANGE)
		return 0; /* a kind this version does not know changes no block */
	if (t >= 0 && (rec->flags & CORAL_REDO_F_BEGIN)) {
		/* the session began anew without a commit: the earlier one was abandoned */
		close_txn(r, (uint32_t)t);
		t = -1;
	}
	if (t < 0 && (t = new_txn(r, thread, rec->session)) < 0)
		return (int)t;
	bool undo = (rec->flags & CORAL_REDO_F_UNDO) != 0;
	uint64_t need = (uint64_t)rec->nbytes * (undo ? 2 : 1);
	if (r->used + need > r->max_bytes)
		return CORAL_EFULL;
	if (r->used + need > r->cap) {
		uint64_t cap = r->cap ? r->cap : 1 << 16;
		while (cap < r->used + need)
			cap *= 2;
		uint8_t *p = realloc(r->arena, cap);
		if (p == NULL)
			return CORAL_ENOMEM;
		r->arena = p;
		r->cap = cap;
	}
	if (r->nch == r->capch) {
		uint64_t cap = r->capch ? 2 * r->capch : 1024;
		struct change *p = realloc(r->ch, cap * sizeof(*p));
		if (p == NULL)
			return CORAL_ENOMEM;
		r->ch = p;
		r->capch = cap;
	}
	if (need > 0)
		memcpy(r->arena + r->used, bytes, need);
	r->ch[r->nch++] = (struct change){.scn = rec->scn, .block = rec->block, .at = r->used, .file = rec->file,
					  .offset = rec->offset, .len = rec->nbytes, .txn = (uint32_t)t,
					  .has_undo = undo};
	r->used += need;
	r->st.changes++;
	return 0;
}

struct read_ctx {
	struct recovery *r;
	uint32_t thread;
	int rc;
};

static int visit(void *arg, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	struct read_ctx *x = arg;
	x->rc = recovery_add_record(x->r, x->thread, rec, bytes);
	return x->rc;
}

int64_t recovery_read_thread(struct recovery *r, const char *shared_dir, uint32_t thread, uint64_t segment_size,
			     uint64_t from, uint64_t *end, char *why, size_t whysz)
{
	struct read_ctx x = {r, thread, 0};
	char buf[256];
	int64_t n = coral_redo_scan(shared_dir, thread, segment_size, from, visit, &x, end, why ? why : buf,
				    why ? whysz : sizeof(buf));
	if (x.rc != 0)
		return x.rc;
	/* transactions still open at the thread's end never committed, unless their node
	 * runs: then they are still open, on blocks its sessions hold (libcoral's contract),
	 * and what this recovery writes never holds them */
	bool live = false;
	for (uint32_t k = 0; k < r->nlive; k++)
		live |= r->live[k] == thread;
	for (uint32_t k = r->nopen; k-- > 0;)
		if (r->tx[r->open[k]].thread == thread) {
			r->tx[r->open[k]].committed = live;
			close_txn(r, r->open[k]);
		}
	return n;
}

static int by_block_scn(const void *a, const void *b)
{
	const struct change *x = a, *y = b;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->block != y->block)
		return x->block < y->block ? -1 : 1;
	if (x->scn != y->scn)
		return x->scn < y->scn ? -1 : 1;
	return 0;
}

uint64_t recovery_plan(struct recovery *r)
{
	if (r->planned)
		return r->nblocks;
	r->planned = true;
	/* records of one session in one thread are in LSN order and their SCNs grow, so a
	 * stable order is not needed: no two changes of one block share an SCN */
	if (r->nch > 0)
		qsort(r->ch, r->nch, sizeof(*r->ch), by_block_scn);
	uint64_t nb = 0;
	for (uint64_t i = 0; i < r->nch; i++)
		if (i == 0 || r->ch[i].file != r->ch[i - 1].file || r->ch[i].block != r->ch[i - 1].block)
			nb++;
	r->first = malloc((nb + 1) * sizeof(*r->first));
	if (r->first == NULL) {
		r->planned = false;
		return 0;
	}
	nb = 0;
	for (uint64_t i = 0; i < r->nch; i++)
		if (i == 0 || r->ch[i].file != r->ch[i - 1].file || r->ch[i].block != r->ch[i - 1].block)
			r->first[nb++] = i;
	r->first[nb] = r->nch;
	r->nblocks = nb;
	r->st.blocks = nb;
	for (uint32_t k = 0; k < r->ntx; k++)
		if (!r->tx[k].committed)
			r->st.txns_open++;
	return nb;
}

void recovery_block(const struct recovery *r, uint64_t i, uint32_t *file, uint64_t *block)
{
	const struct change *c = &r->ch[r->first[i]];
	*file = c->file;
	*block = c->block;
}

int recovery_set_live(struct recovery *r, uint32_t thread)
{
	if (r->nlive == RECOVERY_MAX_LIVE)
		return CORAL_EFULL;
	r->live[r->nlive++] = thread;
	return 0;
}

int64_t recovery_find(const struct recovery *r, uint32_t file, uint64_t block)
{
	uint64_t lo = 0, hi = r->nblocks;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const struct change *c = &r->ch[r->first[mid]];
		if (c->file < file || (c->file == file && c->block < block))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->nblocks && r->ch[r->first[lo]].file == file && r->ch[r->first[lo]].block == block ? (int64_t)lo
												     : -1;
}

bool recovery_needs(const struct recovery *r, uint32_t file, uint64_t block) { return recovery_find(r, file, block) >= 0; }

int recovery_apply(struct recovery *r, uint64_t i, uint8_t *image, uint32_t block_size)
{
	if (!r->planned || i >= r->nblocks || block_size <= CORAL_BLOCK_HDR)
		return CORAL_EINVAL;
	uint64_t a = r->first[i], b = r->first[i + 1];
	uint32_t payload = block_size - CORAL_BLOCK_HDR;
	bool rollback = false;
	for (uint64_t k = a; k < b; k++) {
		const struct change *c = &r->ch[k];
		if ((uint64_t)c->offset + c->len > payload)
			return CORAL_ECORRUPT;
		if (!r->tx[c->txn].committed) {
			if (!c->has_undo)
				return CORAL_ECORRUPT; /* cannot be taken back */
			rollback = true;
		}
	}
	struct coral_block_hdr *h = (struct coral_block_hdr *)image;
	uint8_t *data = image + CORAL_BLOCK_HDR;
	/* against the image's own SCN: changes of one SCN (none from libcoral, but records are
	 * not trusted to be so) all apply or none */
	uint64_t base = h->scn, scn = h->scn, applied = 0, skipped = 0, undone = 0, kept = 0, stamp = 0;
	for (uint64_t k = a; k < b; k++) {
		const struct change *c = &r->ch[k];
		/* the lost node's commit stamped its blocks with the commit's SCN (libcoral): the
		 * image carries it as a live one would, or a node reading it next could change it
		 * below that commit (and a reader who saw the stamped copy see the SCN go back) */
		if (r->tx[c->txn].committed && r->tx[c->txn].commit_scn > stamp)
			stamp = r->tx[c->txn].commit_scn;
		if (c->scn <= base) {
			skipped++;
			continue;
		}
		if (c->len > 0) /* a change of no bytes moves the SCN only (no arena if all are) */
			memcpy(data + c->offset, r->arena + c->at, c->len);
		scn = c->scn;
		applied++;
	}
	if (rollback) {
		/* a committed change after an uncommitted one would break libcoral's contract
		 * (a process's pins released without its transaction taken back): what it was
		 * made on stays, committed work is never taken away */
		uint64_t last_committed = 0;
		for (uint64_t k = a; k < b; k++)
			if (r->tx[r->ch[k].txn].committed)
				last_committed = r->ch[k].scn;
		for (uint64_t k = b; k-- > a;) {
			const struct change *c = &r->ch[k];
			if (r->tx[c->txn].committed)
				continue;
			if (c->scn < last_committed) {
				kept++;
				continue;
			}
			if (c->len > 0)
				memcpy(data + c->offset, r->arena + c->at + c->len, c->len);
			undone++;
		}
		/* an image that no node ever held: newer than every one that was */
		scn = r->st.max_scn + 1;
	}
	h->scn = stamp > scn ? stamp : scn;
	__atomic_fetch_add(&r->st.applied, applied, __ATOMIC_RELAXED);
	__atomic_fetch_add(&r->st.skipped, skipped, __ATOMIC_RELAXED);
	__atomic_fetch_add(&r->st.undone, undone, __ATOMIC_RELAXED);
	__atomic_fetch_add(&r->st.kept, kept, __ATOMIC_RELAXED);
	return 0;
}

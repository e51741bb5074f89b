/* A standby's apply, its core (apply.h). */
#include "apply.h"

#include "conf.h"
#include "errors.h"
#include "storage.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024

struct held {
	struct apply_change c;
	size_t at;                   /* its bytes in the transaction's buffer */
};

struct txn {
	uint32_t thread, session;
	uint64_t first_lsn;          /* where its first record starts */
	uint64_t commit_scn;
	struct held *ch;
	size_t n, cap;
	uint8_t *bytes;
	size_t used, bcap;
	struct txn *hnext;           /* open: its bucket's chain */
	struct txn *qnext;           /* committed: its thread's queue, in commit order */
};

struct thr {
	bool known;
	uint64_t horizon;
	uint64_t fed_end;            /* the end of the last record added */
	struct txn *qhead, *qtail;
};

struct apply {
	uint64_t max_bytes;
	struct thr th[CORAL_MAX_NODES + 1];
	struct txn *open[BUCKETS];
	struct apply_change *batch;
	size_t nbatch, batch_cap;
	struct txn **rel;
	size_t nrel, rel_cap;
	uint64_t batch_scn;
	uint64_t top_scn;              /* the highest SCN of a record or a mark (not a lifted horizon) */
	struct apply_stats st;
};

struct apply *apply_new(uint64_t max_bytes)
{
	struct apply *a = calloc(1, sizeof(*a));
	if (a)
		a->max_bytes = max_bytes;
	return a;
}

static void txn_free(struct apply *a, struct txn *t)
{
	a->st.pending_bytes -= t->used;
	free(t->ch);
	free(t->bytes);
	free(t);
}

void apply_free(struct apply *a)
{
	if (a == NULL)
		return;
	apply_done(a);
	for (int b = 0; b < BUCKETS; b++)
		for (struct txn *t = a->open[b], *n; t; t = n) {
			n = t->hnext;
			txn_free(a, t);
		}
	for (int i = 0; i <= CORAL_MAX_NODES; i++)
		for (struct txn *t = a->th[i].qhead, *n; t; t = n) {
			n = t->qnext;
			txn_free(a, t);
		}
	free(a->batch);
	free(a->rel);
	free(a);
}

void apply_thread(struct apply *a, uint32_t t)
{
	if (t >= 1 && t <= CORAL_MAX_NODES)
		a->th[t].known = true;
}

void apply_start(struct apply *a, uint32_t t, uint64_t lsn, uint64_t applied_scn)
{
	if (t < 1 || t > CORAL_MAX_NODES)
		return;
	a->th[t].known = true;
	a->th[t].fed_end = lsn;
	if (applied_scn > a->st.applied_scn)
		a->st.applied_scn = applied_scn;
}

static struct txn **slot(struct apply *a, uint32_t thread, uint32_t session)
{
	struct txn **p = &a->open[(thread * 2654435761u ^ session) % BUCKETS];
	while (*p && ((*p)->thread != thread || (*p)->session != session))
		p = &(*p)->hnext;
	return p;
}

static int hold(struct apply *a, struct txn *t, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	if (a->st.pending_bytes + rec->nbytes > a->max_bytes)
		return CORAL_EFULL;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		struct held *ch = realloc(t->ch, cap * sizeof(*ch));
		if (ch == NULL)
			return CORAL_ENOMEM;
		t->ch = ch;
		t->cap = cap;
	}
	if (t->used + rec->nbytes > t->bcap) {
		size_t cap = t->bcap ? t->bcap : 256;
		while (cap < t->used + rec->nbytes)
			cap *= 2;
		uint8_t *b = realloc(t->bytes, cap);
		if (b == NULL)
			return CORAL_ENOMEM;
		t->bytes = b;
		t->bcap = cap;
	}
	memcpy(t->bytes + t->used, bytes, rec->nbytes);
	t->ch[t->n++] = (struct held){{rec->scn, rec->block, rec->file, rec->offset, rec->nbytes, NULL}, t->used};
	t->used += rec->nbytes;
	a->st.pending_bytes += rec->nbytes;
	return 0;
}

int apply_add(struct apply *a, uint32_t tid, const struct coral_redo_rec *rec, const uint8_t *bytes)
{
	if (tid < 1 || tid > CORAL_MAX_NODES || !a->th[tid].known)
		return CORAL_EINVAL;
	struct thr *th = &a->th[tid];
	a->st.records++;
	if (rec->scn > a->top_scn)
		a->top_scn = rec->scn;
	if (rec->scn < th->horizon)
		a->st.disorder++;
	else
		th->horizon = rec->scn;
	uint64_t start = rec->lsn - rec->len;
	th->fed_end = rec->lsn;
	struct txn **p = slot(a, tid, rec->session);
	if (rec->type == CORAL_REDO_COMMIT) {
		a->st.commits++;
		struct txn *t = *p;
		if (t == NULL)
			return 0; /* applied before the resume LSN, or a transaction of no change */
		*p = t->hnext;
		a->st.open_txns--;
		t->hnext = NULL;
		t->commit_scn = rec->scn;
		if (th->qtail)
			th->qtail->qnext = t;
		else
			th->qhead = t;
		th->qtail = t;
		return 0;
	}
	if (rec->type != CORAL_REDO_CHANGE)
		return 0;
	a->st.changes++;
	if (rec->flags & CORAL_REDO_F_BEGIN) {
		if (*p) {
			/* the session began again: its earlier transaction never committed */
			struct txn *old = *p;
			*p = old->hnext;
			a->st.open_txns--;
			a->st.txns_abandoned++;
			txn_free(a, old);
			p = slot(a, tid, rec->session);
		}
		struct txn *t = calloc(1, sizeof(*t));
		if (t == NULL)
			return CORAL_ENOMEM;
		t->thread = tid;
		t->session = rec->session;
		t->first_lsn = start;
		*p = t;
		a->st.open_txns++;
	} else if (*p == NULL) {
		a->st.changes_before++; /* its transaction began before the resume LSN: applied */
		return 0;
	}
	return hold(a, *p, rec, bytes);
}

void apply_mark(struct apply *a, uint32_t t, uint64_t scn)
{
	if (t >= 1 && t <= CORAL_MAX_NODES && a->th[t].known && scn > a->th[t].horizon)
		a->th[t].horizon = scn;
	if (scn != UINT64_MAX && scn > a->top_scn)
		a->top_scn = scn;
}

uint64_t apply_horizon(const struct apply *a, uint32_t *lowest)
{
	uint64_t h = UINT64_MAX;
	uint32_t at = 0;
	bool any = false;
	for (uint32_t i = 1; i <= CORAL_MAX_NODES; i++)
		if (a->th[i].known && (!any || a->th[i].horizon < h)) {
			h = a->th[i].horizon;
			at = i;
			any = true;
		}
	if (lowest)
		*lowest = at;
	return any ? h : 0;
}

static int cmp_change(const void *x, const void *y)
{
	const struct apply_change *a = x, *b = y;
	if (a->file != b->file)
		return a->file < b->file ? -1 : 1;
	if (a->block != b->block)
		return a->block < b->block ? -1 : 1;
	return a->scn < b->scn ? -1 : a->scn > b->scn;
}

/* A transaction taken off its thread's queue goes back at its head (memory ran out): it is
 * released next time. */
static void put_back(struct apply *a, struct thr *th, struct txn *t)
{
	t->qnext = th->qhead;
	th->qhead = t;
	if (th->qtail == NULL)
		th->qtail = t;
	a->batch_scn = 0;
}

size_t apply_release(struct apply *a, const struct apply_change **out)
{
	if (a->nrel > 0) {
		/* the last batch was not done (its write failed): the same again */
		*out = a->batch;
		return a->nbatch;
	}
	uint64_t h = apply_horizon(a, NULL);
	/* every horizon lifted (the apply finishing): the copy then holds every transaction up to
	 * the highest SCN there is, not up to an SCN no clock could take after it */
	a->batch_scn = h == UINT64_MAX ? (a->top_scn > a->st.applied_scn ? a->top_scn : a->st.applied_scn) : h;
	for (uint32_t i = 1; i <= CORAL_MAX_NODES; i++) {
		struct thr *th = &a->th[i];
		while (th->qhead && th->qhead->commit_scn <= h) {
			struct txn *t = th->qhead;
			th->qhead = t->qnext;
			if (th->qhead == NULL)
				th->qtail = NULL;
			if (a->nrel == a->rel_cap) {
				size_t cap = a->rel_cap ? a->rel_cap * 2 : 64;
				struct txn **r = realloc(a->rel, cap * sizeof(*r));
				if (r == NULL) {
					put_back(a, th, t);
					goto sort;
				}
				a->rel = r;
				a->rel_cap = cap;
			}
			a->rel[a->nrel++] = t;
			if (a->nbatch + t->n > a->batch_cap) {
				size_t cap = a->batch_cap ? a->batch_cap : 256;
				while (cap < a->nbatch + t->n)
					cap *= 2;
				struct apply_change *b = realloc(a->batch, cap * sizeof(*b));
				if (b == NULL) {
					a->nrel--;
					put_back(a, th, t);
					goto sort;
				}
				a->batch = b;
				a->batch_cap = cap;
			}
			for (size_t k = 0; k < t->n; k++) {
				a->batch[a->nbatch] = t->ch[k].c;
				a->batch[a->nbatch++].bytes = t->bytes + t->ch[k].at;
			}
		}
	}
sort:
	if (a->nbatch > 1)
		qsort(a->batch, a->nbatch, sizeof(*a->batch), cmp_change);
	*out = a->batch;
	return a->nbatch;
}

uint64_t apply_batch_scn(const struct apply *a) { return a->batch_scn; }

void apply_done(struct apply *a)
{
	a->st.txns_applied += a->nrel;
	a->st.changes_applied += a->nbatch;
	for (size_t i = 0; i < a->nrel; i++)
		txn_free(a, a->rel[i]);
	a->nrel = a->nbatch = 0;
	if (a->batch_scn > a->st.applied_scn)
		a->st.applied_scn = a->batch_scn;
	a->batch_scn = 0;
}

uint64_t apply_resume_lsn(const struct apply *a, uint32_t tid)
{
	if (tid < 1 || tid > CORAL_MAX_NODES)
		return 0;
	uint64_t r = a->th[tid].fed_end;
	for (struct txn *t = a->th[tid].qhead; t; t = t->qnext)
		if (t->first_lsn < r)
			r = t->first_lsn;
	for (int b = 0; b < BUCKETS; b++)
		for (struct txn *t = a->open[b]; t; t = t->hnext)
			if (t->thread == tid && t->first_lsn < r)
				r = t->first_lsn;
	/* a batch released and not yet done is not applied yet */
	for (size_t i = 0; i < a->nrel; i++)
		if (a->rel[i]->thread == tid && a->rel[i]->first_lsn < r)
			r = a->rel[i]->first_lsn;
	return r;
}

const struct apply_stats *apply_stats(const struct apply *a) { return &a->st; }

int apply_block(const struct apply_change *c, size_t n, uint8_t *image, uint32_t block_size)
{
	/* the header's SCN through memcpy: an image need not be aligned */
	uint8_t *at_scn = image + offsetof(struct coral_block_hdr, scn);
	uint32_t payload = block_size - CORAL_BLOCK_HDR;
	for (size_t k = 0; k < n; k++)
		if ((uint64_t)c[k].offset + c[k].nbytes > payload)
			return CORAL_ECORRUPT;
	/* against the image's own SCN: changes of one SCN all apply or none */
	uint64_t base, scn;
	memcpy(&base, at_scn, sizeof(base));
	scn = base;
	int applied = 0;
	for (size_t k = 0; k < n; k++) {
		if (c[k].scn <= base)
			continue;
		if (c[k].nbytes)
			memcpy(image + CORAL_BLOCK_HDR + c[k].offset, c[k].bytes, c[k].nbytes);
		scn = c[k].scn;
		applied++;
	}
	memcpy(at_scn, &scn, sizeof(scn));
	return applied;
}

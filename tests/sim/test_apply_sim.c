/* The seeded model of a standby's apply (daemons/replicad/apply.c) against a primary of three
 * nodes. On the primary: sessions move amounts between accounts held in blocks (two blocks
 * in X per transaction, held until it ends, as libcoral does), a block moving to another node
 * only after its holder's redo is durable (lmsd's log force) and carrying its SCN (Lamport);
 * each node's thread in SCN order (SCNs taken under the redo latch); transactions committed,
 * rolled back (compensation records and a commit) or left open; nodes lost now and then: their
 * redo not yet durable gone, their open transactions taken back by instance recovery without
 * redo (the blocks' SCN above all), the node back later with its clock above its thread's.
 * Shipping: each thread's durable records reach the standby at random, with marks (tail,
 * clock) taken at random and the standby's highest horizon fed back to the nodes' clocks.
 * The standby adds what it received, applies the marks it may, releases and applies batches
 * block by block, and crashes now and then (in the middle of writing a batch, too): it starts
 * again from the resume LSNs and applied SCN of its last finished batch.
 *
 * Checked after every batch: the standby's blocks are exactly the primary's committed
 * transactions up to the applied SCN, applied in commit order (a state the primary was in),
 * and the amounts add up; at the end, with every node up and everything shipped and marked,
 * the standby has every committed transaction. 300 seeds. */
#include "apply.h"
#include "errors.h"
#include "storage.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define NODES 3
#define BLOCKS 8
#define ACCTS 4
#define BS 128                      /* block size: header and 4 accounts of 8 bytes */
#define MAXREC 20000
#define MAXTXN 8000
#define SESS 2

struct rec {
	struct coral_redo_rec h;
	uint8_t bytes[8];
};

struct chg {
	uint32_t block, offset;
	int64_t after;
	uint64_t scn;
};

struct ctxn {                       /* a committed transaction, for the expected state */
	uint64_t commit_scn;
	int n;
	struct chg c[4];
};

struct sess {
	bool open;
	uint32_t id;
	int nb;
	uint32_t blocks[2];
	int n;
	struct chg c[4];
	int64_t before[4];
};

struct node {
	bool up;
	uint64_t clock;
	struct rec *th;                 /* the thread */
	int n, durable;                 /* records; durable ones */
	struct sess s[SESS];
	uint32_t next_session;
	int shipped;                    /* records the standby received */
	uint64_t mark_lsn, mark_scn;    /* the mark in flight (0: none) */
};

struct model {
	uint64_t seed;
	struct node nd[NODES + 1];
	_Alignas(8) uint8_t img[BLOCKS][BS];   /* the primary's current blocks */
	int holder[BLOCKS];             /* node holding it (0: disk) */
	int held_by_sess[BLOCKS];       /* node*8+session+1 while a transaction holds it */
	struct ctxn *committed;
	int ncommitted;
	/* the standby */
	_Alignas(8) uint8_t sb[BLOCKS][BS];    /* its copy, as written */
	struct apply *ap;
	int fed[NODES + 1];             /* records added, per thread */
	uint64_t resume[NODES + 1], applied_scn;  /* as of the last finished batch */
	uint64_t torn_scn;              /* a batch written in part brought some blocks this far */
	uint64_t batches, crashes, node_losses, checks;
};

static uint64_t all_checks, all_losses, all_crashes, all_txns, all_abandoned;

static uint64_t cur_seed;

static uint64_t rnd(struct model *m)
{
	m->seed ^= m->seed << 13;
	m->seed ^= m->seed >> 7;
	m->seed ^= m->seed << 17;
	return m->seed;
}

static uint64_t lsn_end(struct node *n, int k) { return k ? n->th[k - 1].h.lsn : 0; }

static int64_t acct(const uint8_t *blk, uint32_t off)
{
	int64_t v;
	memcpy(&v, blk + CORAL_BLOCK_HDR + off, 8);
	return v;
}

static uint64_t blk_scn(const uint8_t *blk) { return ((const struct coral_block_hdr *)blk)->scn; }

static void append(struct model *m, int ni, uint8_t type, uint8_t flags, uint32_t session, uint32_t block,
		   uint32_t off, int64_t v, uint64_t *scn_out)
{
	struct node *n = &m->nd[ni];
	cr_assert_lt(n->n, MAXREC);
	struct rec *r = &n->th[n->n];
	memset(r, 0, sizeof(*r));
	r->h.magic = CORAL_REDO_MAGIC;
	r->h.type = type;
	r->h.flags = flags;
	r->h.len = sizeof(struct coral_redo_rec) + (type == CORAL_REDO_CHANGE ? 8 : 0);
	r->h.lsn = lsn_end(n, n->n) + r->h.len;
	r->h.scn = ++n->clock;            /* under the latch */
	r->h.session = session;
	r->h.file = 1;
	r->h.block = block;
	r->h.offset = off;
	r->h.nbytes = type == CORAL_REDO_CHANGE ? 8 : 0;
	memcpy(r->bytes, &v, 8);
	n->n++;
	if (scn_out)
		*scn_out = r->h.scn;
}

/* A block comes to node ni: its holder's redo is forced first, its SCN is observed. */
static bool take(struct model *m, int ni, uint32_t b)
{
	int h = m->holder[b];
	if (h != 0 && h != ni) {
		if (!m->nd[h].up)
			return false; /* with a lost node until its recovery: the model waits */
		m->nd[h].durable = m->nd[h].n;
	}
	if (blk_scn(m->img[b]) > m->nd[ni].clock)
		m->nd[ni].clock = blk_scn(m->img[b]);
	m->holder[b] = ni;
	return true;
}

static void end_txn(struct model *m, int ni, struct sess *s, bool commit)
{
	uint64_t cscn;
	if (!commit) {
		/* rollback: compensation, newest first, then a commit */
		for (int k = s->n; k-- > 0;) {
			struct chg *c = &s->c[k];
			append(m, ni, CORAL_REDO_CHANGE, 0, s->id, c->block, c->offset, s->before[k], NULL);
			memcpy(m->img[c->block] + CORAL_BLOCK_HDR + c->offset, &s->before[k], 8);
			((struct coral_block_hdr *)m->img[c->block])->scn = m->nd[ni].th[m->nd[ni].n - 1].h.scn;
		}
	}
	append(m, ni, CORAL_REDO_COMMIT, 0, s->id, 0, 0, 0, &cscn);
	m->nd[ni].durable = m->nd[ni].n; /* a commit returns once durable */
	if (commit && s->n > 0) {
		cr_assert_lt(m->ncommitted, MAXTXN);
		struct ctxn *t = &m->committed[m->ncommitted++];
		t->commit_scn = cscn;
		t->n = s->n;
		memcpy(t->c, s->c, sizeof(s->c));
	}
	/* the blocks carry the commit's SCN when they go (libcoral's commit): a later change
	 * anywhere is above it, so commit SCNs follow the order in which a block's
	 * transactions ended */
	for (int k = 0; k < s->nb; k++) {
		((struct coral_block_hdr *)m->img[s->blocks[k]])->scn = cscn;
		m->held_by_sess[s->blocks[k]] = 0;
	}
	s->open = false;
}

/* A session of node ni moves an amount between two accounts of two blocks. */
static void txn_step(struct model *m, int ni)
{
	struct node *n = &m->nd[ni];
	struct sess *s = &n->s[rnd(m) % SESS];
	int tag = ni * 8 + (int)(s - n->s) + 1;
	if (s->open) {
		end_txn(m, ni, s, rnd(m) % 5 != 0);
		return;
	}
	uint32_t b1 = (uint32_t)(rnd(m) % BLOCKS), b2 = (uint32_t)(rnd(m) % BLOCKS);
	if (b1 == b2)
		b2 = (b1 + 1) % BLOCKS;
	if (b1 > b2) {
		uint32_t x = b1;
		b1 = b2;
		b2 = x;
	}
	if ((m->held_by_sess[b1] && m->held_by_sess[b1] != tag) || (m->held_by_sess[b2] && m->held_by_sess[b2] != tag))
		return; /* held by another transaction: it would wait */
	if (!take(m, ni, b1) || !take(m, ni, b2))
		return;
	s->open = true;
	/* ids come back (a BEGIN abandons what a lost node left), never one a live session has */
	do
		s->id = n->next_session++ % 4 + 1;
	while ((&n->s[0] != s && n->s[0].open && n->s[0].id == s->id) ||
	       (&n->s[1] != s && n->s[1].open && n->s[1].id == s->id));
	s->nb = 2;
	s->blocks[0] = b1;
	s->blocks[1] = b2;
	s->n = 0;
	m->held_by_sess[b1] = m->held_by_sess[b2] = tag;
	int64_t amount = (int64_t)(rnd(m) % 50) + 1;
	uint32_t o1 = (uint32_t)(rnd(m) % ACCTS) * 8, o2 = (uint32_t)(rnd(m) % ACCTS) * 8;
	int64_t v1 = acct(m->img[b1], o1) - amount, v2 = acct(m->img[b2], o2) + amount;
	uint32_t bs[2] = {b1, b2}, os[2] = {o1, o2};
	int64_t vs[2] = {v1, v2};
	for (int k = 0; k < 2; k++) {
		uint64_t scn;
		s->before[k] = acct(m->img[bs[k]], os[k]);
		append(m, ni, CORAL_REDO_CHANGE, k == 0 ? CORAL_REDO_F_BEGIN : 0, s->id, bs[k], os[k], vs[k], &scn);
		memcpy(m->img[bs[k]] + CORAL_BLOCK_HDR + os[k], &vs[k], 8);
		((struct coral_block_hdr *)m->img[bs[k]])->scn = scn;
		s->c[s->n++] = (struct chg){bs[k], os[k], vs[k], scn};
	}
	if (rnd(m) % 3 == 0)
		end_txn(m, ni, s, rnd(m) % 6 != 0); /* else it stays open a while */
}

/* Node ni is lost: redo not durable is gone; instance recovery takes its open transactions
 * back on the primary's blocks without redo, above every SCN there is. */
static void lose(struct model *m, int ni)
{
	struct node *n = &m->nd[ni];
	n->up = false;
	n->n = n->durable;
	if (n->shipped > n->n)
		n->shipped = n->n;
	n->mark_lsn = n->mark_scn = 0;
	uint64_t top = 0;
	for (int i = 1; i <= NODES; i++)
		if (m->nd[i].clock > top)
			top = m->nd[i].clock;
	for (int b = 0; b < BLOCKS; b++)
		if (blk_scn(m->img[b]) > top)
			top = blk_scn(m->img[b]);
	for (int k = 0; k < SESS; k++) {
		struct sess *s = &n->s[k];
		if (!s->open)
			continue;
		for (int j = s->n; j-- > 0;)
			memcpy(m->img[s->c[j].block] + CORAL_BLOCK_HDR + s->c[j].offset, &s->before[j], 8);
		for (int j = 0; j < s->nb; j++) {
			((struct coral_block_hdr *)m->img[s->blocks[j]])->scn = top + 1;
			m->held_by_sess[s->blocks[j]] = 0;
		}
		s->open = false;
	}
	for (int b = 0; b < BLOCKS; b++)
		if (m->holder[b] == ni)
			m->holder[b] = 0;
	m->node_losses++;
}

static void come_back(struct model *m, int ni)
{
	struct node *n = &m->nd[ni];
	n->up = true;
	uint64_t top = n->n ? n->th[n->n - 1].h.scn : 0;
	if (top > n->clock)
		n->clock = top;
}

/* What the standby should hold at SCN h: the committed transactions up to it, in commit
 * order, from zero blocks. */
static void expected(struct model *m, uint64_t h, uint8_t out[BLOCKS][BS])
{
	memset(out, 0, BLOCKS * BS);
	/* committed[] is in commit order per node; merge by commit SCN */
	static int order[MAXTXN];
	int n = 0;
	for (int i = 0; i < m->ncommitted; i++)
		if (m->committed[i].commit_scn <= h)
			order[n++] = i;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && m->committed[order[j - 1]].commit_scn > m->committed[order[j]].commit_scn; j--) {
			int x = order[j];
			order[j] = order[j - 1];
			order[j - 1] = x;
		}
	for (int i = 0; i < n; i++) {
		const struct ctxn *t = &m->committed[order[i]];
		for (int k = 0; k < t->n; k++)
			memcpy(out[t->c[k].block] + CORAL_BLOCK_HDR + t->c[k].offset, &t->c[k].after, 8);
	}
}

static void standby_start(struct model *m)
{
	apply_free(m->ap);
	m->ap = apply_new(1 << 20);
	cr_assert_not_null(m->ap);
	for (int i = 1; i <= NODES; i++) {
		apply_start(m->ap, (uint32_t)i, m->resume[i], m->applied_scn);
		/* reading starts again at the resume LSN: the record ending past it */
		int k = 0;
		while (k < m->nd[i].n && lsn_end(&m->nd[i], k) < m->resume[i])
			k++;
		cr_assert_eq(lsn_end(&m->nd[i], k), m->resume[i], "resume LSN %llu is not a record's start",
			     (unsigned long long)m->resume[i]);
		m->fed[i] = k;
	}
}

static void check(struct model *m)
{
	static _Alignas(8) uint8_t want[BLOCKS][BS];
	uint64_t h = apply_stats(m->ap)->applied_scn;
	expected(m, h, want);
	int64_t sum = 0;
	m->checks++;
	for (int b = 0; b < BLOCKS; b++) {
		for (uint32_t o = 0; o < ACCTS * 8; o += 8) {
			if (acct(m->sb[b], o) != acct(want[b], o) && getenv("SIM_DEBUG")) {
				for (int i = 0; i < m->ncommitted; i++)
					for (int k = 0; k < m->committed[i].n; k++)
						if ((int)m->committed[i].c[k].block == b && m->committed[i].c[k].offset == o)
							fprintf(stderr, "txn %d commit %llu: change scn %llu -> %lld\n", i,
								(unsigned long long)m->committed[i].commit_scn,
								(unsigned long long)m->committed[i].c[k].scn,
								(long long)m->committed[i].c[k].after);
				fprintf(stderr, "standby block scn %llu\n", (unsigned long long)blk_scn(m->sb[b]));
				for (int i = 1; i <= NODES; i++)
					for (int k = 0; k < m->nd[i].n; k++) {
						const struct coral_redo_rec *h = &m->nd[i].th[k].h;
						if (h->scn + 60 >= apply_stats(m->ap)->applied_scn && h->scn <= apply_stats(m->ap)->applied_scn + 20 && (h->type == CORAL_REDO_COMMIT || (int)h->block == b))
							fprintf(stderr, "node %d rec %d lsn %llu: %s sess %u scn %llu block %llu off %u flags %u%s\n", i, k,
								(unsigned long long)h->lsn, h->type == CORAL_REDO_COMMIT ? "commit" : "change",
								h->session, (unsigned long long)h->scn, (unsigned long long)h->block, h->offset, h->flags,
								k < m->fed[i] ? " fed" : "");
					}
			}
			cr_assert_eq(acct(m->sb[b], o), acct(want[b], o),
				     "seed %llu: block %d account %u: the standby has %lld, the primary's committed state at "
				     "SCN %llu %lld (batch %llu)",
				     (unsigned long long)cur_seed, b, o / 8, (long long)acct(m->sb[b], o), (unsigned long long)h, (long long)acct(want[b], o),
				     (unsigned long long)m->batches);
			sum += acct(m->sb[b], o);
		}
	}
	cr_assert_eq(sum, 0, "the amounts on the standby do not add up: %lld", (long long)sum);
}

/* The standby: what arrived is added, marks applied, a batch released and written. */
static void standby_step(struct model *m, bool crash_midway)
{
	for (int i = 1; i <= NODES; i++) {
		struct node *n = &m->nd[i];
		while (m->fed[i] < n->shipped) {
			struct rec *r = &n->th[m->fed[i]++];
			cr_assert_eq(apply_add(m->ap, (uint32_t)i, &r->h, r->bytes), 0);
		}
		if (n->mark_lsn && lsn_end(n, m->fed[i]) >= n->mark_lsn)
			apply_mark(m->ap, (uint32_t)i, n->mark_scn);
	}
	const struct apply_change *c;
	size_t nc = apply_release(m->ap, &c);
	if (crash_midway && apply_batch_scn(m->ap) > m->torn_scn)
		m->torn_scn = apply_batch_scn(m->ap);
	for (size_t a = 0; a < nc;) {
		size_t b = a;
		while (b < nc && c[b].block == c[a].block)
			b++;
		if (crash_midway && rnd(m) % 2 == 0)
			break;
		cr_assert_geq(apply_block(c + a, b - a, m->sb[c[a].block], BS), 0);
		a = b;
	}
	if (crash_midway) {
		m->crashes++;
		standby_start(m);
		return;
	}
	apply_done(m->ap);
	m->batches++;
	for (int i = 1; i <= NODES; i++)
		m->resume[i] = apply_resume_lsn(m->ap, (uint32_t)i);
	m->applied_scn = apply_stats(m->ap)->applied_scn;
	/* after a batch written in part, the copy is a state of the primary's again once a
	 * batch has gone at least as far */
	if (m->applied_scn >= m->torn_scn)
		check(m);
	/* the standby's horizon back to the primary's nodes (the ack's hint) */
	uint64_t hint = 0;
	for (int i = 1; i <= NODES; i++)
		if (m->fed[i] > 0 && m->nd[i].th[m->fed[i] - 1].h.scn > hint)
			hint = m->nd[i].th[m->fed[i] - 1].h.scn;
	for (int i = 1; i <= NODES; i++)
		if (m->nd[i].up && hint > m->nd[i].clock)
			m->nd[i].clock = hint;
}

static void run(uint64_t seed, int steps)
{
	static struct model m;
	memset(&m, 0, sizeof(m));
	m.seed = seed * 0x9e3779b97f4a7c15ull + 1;
	cur_seed = seed;
	m.committed = calloc(MAXTXN, sizeof(*m.committed));
	for (int i = 1; i <= NODES; i++) {
		m.nd[i].th = calloc(MAXREC, sizeof(struct rec));
		m.nd[i].up = true;
		m.nd[i].clock = 1;
	}
	standby_start(&m);
	for (int step = 0; step < steps; step++) {
		int ni = 1 + (int)(rnd(&m) % NODES);
		struct node *n = &m.nd[ni];
		uint64_t r = rnd(&m) % 100;
		if (r < 55) {
			if (n->up)
				txn_step(&m, ni);
		} else if (r < 70) {
			/* shipping: some of the durable records arrive */
			if (n->shipped < n->durable)
				n->shipped += 1 + (int)(rnd(&m) % (uint64_t)(n->durable - n->shipped));
		} else if (r < 78) {
			/* a mark (tail, clock), sent once durable; idle nodes' clocks move with the hint */
			if (n->up && n->durable == n->n) {
				n->mark_lsn = lsn_end(n, n->n);
				n->mark_scn = n->clock;
				if (n->mark_lsn == 0)
					n->mark_scn = n->clock; /* an empty thread: every record to come is above */
			}
		} else if (r < 93) {
			standby_step(&m, false);
		} else if (r < 95) {
			standby_step(&m, true);
		} else if (r < 97) {
			if (n->up)
				lose(&m, ni);
			else
				come_back(&m, ni);
		}
	}
	/* the end: every node up, transactions ended, everything shipped and marked */
	for (int i = 1; i <= NODES; i++) {
		if (!m.nd[i].up)
			come_back(&m, i);
		for (int k = 0; k < SESS; k++)
			if (m.nd[i].s[k].open)
				end_txn(&m, i, &m.nd[i].s[k], true);
	}
	for (int round = 0; round < 3; round++) {
		for (int i = 1; i <= NODES; i++) {
			struct node *n = &m.nd[i];
			n->durable = n->shipped = n->n;
			n->mark_lsn = lsn_end(n, n->n);
			n->mark_scn = n->clock;
		}
		standby_step(&m, false);
	}
	uint64_t top = 0;
	for (int i = 0; i < m.ncommitted; i++)
		if (m.committed[i].commit_scn > top)
			top = m.committed[i].commit_scn;
	cr_assert_geq(apply_stats(m.ap)->applied_scn, top, "seed %llu: applied SCN %llu, last commit %llu",
		      (unsigned long long)seed, (unsigned long long)apply_stats(m.ap)->applied_scn,
		      (unsigned long long)top);
	check(&m);
	cr_assert_gt(m.batches, 10);
	cr_assert_eq(apply_stats(m.ap)->disorder, 0);
	all_checks += m.checks;
	all_losses += m.node_losses;
	all_crashes += m.crashes;
	all_txns += (uint64_t)m.ncommitted;
	all_abandoned += apply_stats(m.ap)->txns_abandoned;
	apply_free(m.ap);
	for (int i = 1; i <= NODES; i++)
		free(m.nd[i].th);
	free(m.committed);
}

Test(apply_sim, the_standby_holds_the_primarys_committed_state_at_its_applied_scn, .timeout = 300)
{
	uint64_t first = getenv("SIM_SEED") ? strtoull(getenv("SIM_SEED"), NULL, 10) : 1;
	for (uint64_t seed = first; seed <= 300; seed++)
		run(seed, 3000);
	/* the faults happened and the checks ran */
	cr_expect_gt(all_checks, 300 * 20, "%llu checks", (unsigned long long)all_checks);
	cr_expect_gt(all_losses, 300, "%llu node losses", (unsigned long long)all_losses);
	cr_expect_gt(all_crashes, 300, "%llu standby crashes", (unsigned long long)all_crashes);
	cr_expect_gt(all_abandoned, 10, "%llu transactions abandoned", (unsigned long long)all_abandoned);
	fprintf(stderr, "apply-sim: %llu committed transactions, %llu checks, %llu node losses, %llu standby crashes, "
		"%llu abandoned\n", (unsigned long long)all_txns, (unsigned long long)all_checks,
		(unsigned long long)all_losses, (unsigned long long)all_crashes, (unsigned long long)all_abandoned);
}

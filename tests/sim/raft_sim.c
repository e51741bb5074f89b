/* The Raft simulation (see raft_sim.h). One step: maybe inject a fault or a client action,
 * deliver due messages, tick every live node, carry out every node's ready batch (persist,
 * then send, then apply), then check the invariants. */
#include "raft_sim.h"
#include "util.h"
#include "raft.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 8             /* ids 1..7 used: up to 5 founders and 2 joiners */
#define MAXPKT 20000
#define MAXREADS 64

/* ---- randomness: splitmix64, one stream for the world, one per node ---------------- */

static uint64_t splitmix(uint64_t *s)
{
	return coral_splitmix64(s);
}

static uint64_t node_rand(void *arg)
{
	return splitmix((uint64_t *)arg);
}

/* ---- growable arrays indexed by log index or term ------------------------------------ */

struct slot {
	bool set;
	uint64_t term;     /* committed map: entry term; leaders map: unused */
	uint64_t value;    /* entry identity */
	uint64_t aux;      /* committed map: observed commit term; sm map: state hash */
	uint32_t who;      /* leaders map: leader id */
};

struct table {
	struct slot *s;
	size_t cap;
};

static struct slot *at(struct table *t, uint64_t i)
{
	if (i >= t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		while (cap <= i)
			cap *= 2;
		t->s = realloc(t->s, cap * sizeof(*t->s));
		memset(t->s + t->cap, 0, (cap - t->cap) * sizeof(*t->s));
		t->cap = cap;
	}
	return &t->s[i];
}

/* ---- nodes and their storage ------------------------------------------------------- */

struct node {
	uint32_t id;
	bool exists, up;
	int down_until;
	uint64_t rng;
	struct raft r;
	/* durable storage */
	struct raft_hard_state hs;
	struct raft_snapshot snap;
	struct raft_entry *log;
	size_t n, cap;
	/* the state machine: a running hash of applied values */
	uint64_t sm_index, sm_hash;
	/* invariant bookkeeping */
	uint64_t checked_commit;
	uint64_t lead_term, lead_last;  /* leader append-only: what it held when last seen */
	uint64_t *lead_terms;
	size_t lead_cap;
	uint64_t read_ctx[MAXREADS], read_floor[MAXREADS];
	int n_reads;
};

struct pkt {
	int due;
	struct raft_msg m;
};

struct proposal {
	uint64_t value, index, term;
	uint32_t leader;
	bool acked;
};

struct sim {
	const struct sim_opts *o;
	struct sim_result *res;
	uint64_t rng;
	int step;
	bool faults;
	struct node nodes[MAXN];
	int nfounders;
	uint32_t next_join;
	bool cut[MAXN][MAXN];    /* cut[a][b]: a's messages do not reach b */
	int heal_at;
	struct pkt *pkts;
	size_t npkts;
	struct table leaders;    /* by term */
	struct table committed;  /* by index */
	struct table sm;         /* by index: state hash after applying it */
	struct proposal *props;
	size_t nprops, capprops;
	uint64_t next_value;
	uint64_t max_acked_index;
};

static void trace(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(struct sim *s, const char *fmt, ...)
{
	if (!s->o->trace)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(s->o->trace, "[seed %llu step %d] ", (unsigned long long)s->o->seed, s->step);
	vfprintf(s->o->trace, fmt, ap);
	fputc('\n', s->o->trace);
	va_end(ap);
}

static void fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct sim *s, const char *fmt, ...)
{
	if (!s->res->ok)
		return;
	s->res->ok = false;
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(s->res->error, sizeof(s->res->error), "seed %llu (%d nodes) step %d: %s",
		 (unsigned long long)s->o->seed, s->nfounders, s->step, msg);
	trace(s, "VIOLATION: %s", msg);
}

static uint64_t rnd(struct sim *s, uint64_t n)
{
	return n ? splitmix(&s->rng) % n : 0;
}

static bool chance(struct sim *s, int per_thousand)
{
	return (int)rnd(s, 1000) < per_thousand;
}

static uint64_t entry_value(const struct raft_entry *e)
{
	uint64_t v = 0x100000000ull * e->type;
	for (uint32_t i = 0; i < e->len; i++)
		v = v * 131 + e->data[i];
	return v ^ ((uint64_t)e->len << 56);
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
}

/* ---- storage ----------------------------------------------------------------------- */

static void store_entry(struct node *n, const struct raft_entry *e)
{
	/* storage holds snap.index+1 ..; an entry cuts everything from its index on */
	uint64_t pos = e->index - n->snap.index - 1;
	while (n->n > pos) {
		free(n->log[n->n - 1].data);
		n->n--;
	}
	if (n->n == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 64;
		n->log = realloc(n->log, n->cap * sizeof(*n->log));
	}
	struct raft_entry *d = &n->log[n->n++];
	*d = *e;
	d->data = NULL;
	if (e->len) {
		d->data = malloc(e->len);
		memcpy(d->data, e->data, e->len);
	}
}

static void store_snapshot(struct node *n, const struct raft_snapshot *sn, bool reset)
{
	size_t drop = 0;
	while (drop < n->n && n->log[drop].index <= sn->index)
		drop++;
	if (reset)
		drop = n->n;
	for (size_t i = 0; i < drop; i++)
		free(n->log[i].data);
	if (n->n > drop)
		memmove(n->log, n->log + drop, (n->n - drop) * sizeof(*n->log));
	n->n -= drop;
	free(n->snap.data);
	n->snap = *sn;
	n->snap.data = malloc(sn->len ? sn->len : 1);
	if (sn->len)
		memcpy(n->snap.data, sn->data, sn->len);
}

static void free_storage(struct node *n)
{
	for (size_t i = 0; i < n->n; i++)
		free(n->log[i].data);
	free(n->log);
	free(n->snap.data);
	free(n->lead_terms);
	n->log = NULL;
	n->n = n->cap = 0;
	n->snap.data = NULL;
	n->lead_terms = NULL;
}

/* ---- node life --------------------------------------------------------------------- */

static void boot(struct sim *s, struct node *n)
{
	struct raft_opts ro = {
		.id = n->id, .election_ticks = 10, .heartbeat_ticks = 2, .pre_vote = true,
		.check_quorum = true, .auto_promote = true, .max_batch = 8, .max_inflight = 8,
		.max_uncommitted = 4096, .max_msgs = 4096, .rand = node_rand, .rand_arg = &n->rng,
	};
	struct raft_boot b = {.hs = n->hs, .snap = n->snap, .entries = n->log, .n_entries = n->n};
	int rc = raft_init(&n->r, &ro, &b);
	if (rc != 0) {
		fail(s, "node %u could not boot from its storage (%d)", n->id, rc);
		return;
	}
	/* the state machine restarts from the snapshot and replays committed entries */
	if (n->snap.len == 16) {
		memcpy(&n->sm_index, n->snap.data, 8);
		memcpy(&n->sm_hash, n->snap.data + 8, 8);
	} else {
		n->sm_index = n->snap.index;
		n->sm_hash = 0;
	}
	trace(s, "boot node %u: term %llu vote %u commit %llu last %llu voters %#llx learners %#llx",
	      n->id, (unsigned long long)n->r.term, n->r.vote, (unsigned long long)n->r.committed,
	      (unsigned long long)raft_last_index(&n->r), (unsigned long long)n->r.conf.voters,
	      (unsigned long long)n->r.conf.learners);
	n->checked_commit = n->snap.index;
	n->lead_term = 0;
	n->n_reads = 0;
	n->up = true;
}

static void crash(struct sim *s, struct node *n, const char *why)
{
	trace(s, "crash node %u (%s)", n->id, why);
	raft_free(&n->r);
	n->up = false;
	n->down_until = s->step + 5 + (int)rnd(s, 30);
	s->res->crashes++;
}

/* ---- the network ------------------------------------------------------------------- */

static void clone_msg(struct raft_msg *d, const struct raft_msg *m)
{
	*d = *m;
	d->entries = NULL;
	d->snap = NULL;
	if (m->n_entries) {
		d->entries = malloc(m->n_entries * sizeof(*d->entries));
		for (size_t i = 0; i < m->n_entries; i++) {
			d->entries[i] = m->entries[i];
			d->entries[i].data = NULL;
			if (m->entries[i].len) {
				d->entries[i].data = malloc(m->entries[i].len);
				memcpy(d->entries[i].data, m->entries[i].data, m->entries[i].len);
			}
		}
	}
	if (m->snap) {
		d->snap = malloc(sizeof(*d->snap));
		*d->snap = *m->snap;
		d->snap->data = malloc(m->snap->len ? m->snap->len : 1);
		if (m->snap->len)
			memcpy(d->snap->data, m->snap->data, m->snap->len);
	}
}

static void net_send(struct sim *s, const struct raft_msg *m)
{
	if (m->to < 1 || m->to >= MAXN)
		return;
	int copies = 1;
	if (s->faults) {
		if (chance(s, 50))
			return; /* lost */
		if (chance(s, 20))
			copies = 2; /* duplicated */
	}
	for (int c = 0; c < copies && s->npkts < MAXPKT; c++) {
		struct pkt *p = &s->pkts[s->npkts++];
		p->due = s->step + (s->faults ? (int)rnd(s, 5) : (int)rnd(s, 2));
		clone_msg(&p->m, m);
		if (m->type == RAFT_MSG_SNAPSHOT)
			s->res->snapshots_sent++;
	}
}

static void deliver(struct sim *s)
{
	size_t keep = 0;
	for (size_t i = 0; i < s->npkts; i++) {
		struct pkt *p = &s->pkts[i];
		if (p->due > s->step) {
			s->pkts[keep++] = *p;
			continue;
		}
		struct node *to = &s->nodes[p->m.to];
		if (to->up && p->m.from < MAXN && !s->cut[p->m.from][p->m.to])
			raft_step(&to->r, &p->m);
		raft_msg_free(&p->m);
	}
	s->npkts = keep;
}

/* ---- invariants -------------------------------------------------------------------- */

/* Leader Completeness for one leader against the committed entries recorded so far. */
static void check_completeness(struct sim *s, struct node *n, uint64_t from, uint64_t to)
{
	for (uint64_t i = from; i <= to && i < s->committed.cap; i++) {
		struct slot *c = at(&s->committed, i);
		if (!c->set || c->aux >= n->r.term || i <= n->r.snap.index)
			continue;
		if (raft_term_at(&n->r, i) != c->term)
			fail(s, "leader completeness: leader %u of term %llu lacks committed entry %llu "
				"(term %llu, committed by term %llu)", n->id, (unsigned long long)n->r.term,
			     (unsigned long long)i, (unsigned long long)c->term, (unsigned long long)c->aux);
	}
}

static void check_node(struct sim *s, struct node *n)
{
	struct raft *r = &n->r;
	/* committed entries: one value per index, whoever commits it */
	uint64_t lo = n->checked_commit > r->snap.index ? n->checked_commit : r->snap.index;
	for (uint64_t i = lo + 1; i <= r->committed; i++) {
		const struct raft_entry *e = raft_entry_at(r, i);
		if (e == NULL)
			continue;
		struct slot *c = at(&s->committed, i);
		if (!c->set) {
			*c = (struct slot){.set = true, .term = e->term, .value = entry_value(e), .aux = r->term};
			s->res->committed = i > s->res->committed ? i : s->res->committed;
			for (uint32_t id = 1; id < MAXN; id++) {
				struct node *l = &s->nodes[id];
				if (l->up && l->r.role == RAFT_LEADER)
					check_completeness(s, l, i, i);
			}
		} else if (c->term != e->term || c->value != entry_value(e)) {
			fail(s, "log matching: node %u committed index %llu term %llu, another term %llu",
			     n->id, (unsigned long long)i, (unsigned long long)e->term,
			     (unsigned long long)c->term);
		}
	}
	if (r->committed > n->checked_commit)
		n->checked_commit = r->committed;

	if (r->role != RAFT_LEADER) {
		n->lead_term = 0;
		return;
	}
	/* Election Safety */
	struct slot *l = at(&s->leaders, r->term);
	if (!l->set) {
		*l = (struct slot){.set = true, .who = n->id};
		s->res->elections++;
		trace(s, "node %u leads term %llu (voters %#llx, votes %#llx)", n->id,
		      (unsigned long long)r->term, (unsigned long long)r->conf.voters,
		      (unsigned long long)r->votes_for);
		check_completeness(s, n, 1, s->res->committed);
	} else if (l->who != n->id) {
		fail(s, "election safety: nodes %u and %u both lead term %llu", l->who, n->id,
		     (unsigned long long)r->term);
	}
	/* Leader Append-Only: what it held last step is still there */
	uint64_t last = raft_last_index(r);
	if (n->lead_term == r->term) {
		if (last < n->lead_last)
			fail(s, "leader append-only: leader %u shrank its log from %llu to %llu", n->id,
			     (unsigned long long)n->lead_last, (unsigned long long)last);
		for (uint64_t i = r->snap.index + 1; i <= n->lead_last && i <= last; i++)
			if (i < n->lead_cap && n->lead_terms[i] && raft_term_at(r, i) != n->lead_terms[i])
				fail(s, "leader append-only: leader %u rewrote index %llu", n->id,
				     (unsigned long long)i);
	}
	if (last + 1 > n->lead_cap) {
		n->lead_cap = (last + 1) * 2;
		n->lead_terms = realloc(n->lead_terms, n->lead_cap * sizeof(uint64_t));
	}
	uint64_t from = n->lead_term == r->term ? n->lead_last + 1 : 0;
	for (uint64_t i = from; i <= last; i++)
		n->lead_terms[i] = raft_term_at(r, i);
	n->lead_term = r->term;
	n->lead_last = last;
}

/* Log Matching over the uncommitted tails: the same (index, term) holds the same entry
 * after the same term. Committed prefixes are covered by the committed map. */
static void check_tails(struct sim *s)
{
	for (uint32_t a = 1; a < MAXN; a++) {
		struct node *x = &s->nodes[a];
		if (!x->up)
			continue;
		for (uint32_t b = a + 1; b < MAXN; b++) {
			struct node *y = &s->nodes[b];
			if (!y->up)
				continue;
			uint64_t lo = x->r.committed < y->r.committed ? x->r.committed : y->r.committed;
			uint64_t hi = raft_last_index(&x->r) < raft_last_index(&y->r) ? raft_last_index(&x->r)
										   : raft_last_index(&y->r);
			for (uint64_t i = hi; i > lo; i--) {
				const struct raft_entry *ex = raft_entry_at(&x->r, i);
				const struct raft_entry *ey = raft_entry_at(&y->r, i);
				if (!ex || !ey || ex->term != ey->term)
					continue;
				/* the highest index where both agree: everything below must agree too */
				for (uint64_t k = i; k > lo; k--) {
					ex = raft_entry_at(&x->r, k);
					ey = raft_entry_at(&y->r, k);
					if (ex && ey && (ex->term != ey->term || entry_value(ex) != entry_value(ey)))
						fail(s, "log matching: nodes %u and %u agree at %llu but differ at %llu",
						     a, b, (unsigned long long)i, (unsigned long long)k);
				}
				break;
			}
		}
	}
}

/* ---- ready ------------------------------------------------------------------------- */

static void apply(struct sim *s, struct node *n, const struct raft_entry *e)
{
	if (e->index != n->sm_index + 1) {
		fail(s, "node %u applied index %llu after %llu", n->id, (unsigned long long)e->index,
		     (unsigned long long)n->sm_index);
		return;
	}
	n->sm_hash = mix(n->sm_hash, entry_value(e));
	n->sm_index = e->index;
	struct slot *sm = at(&s->sm, e->index);
	if (!sm->set)
		*sm = (struct slot){.set = true, .term = e->term, .value = entry_value(e), .aux = n->sm_hash};
	else if (sm->value != entry_value(e) || sm->aux != n->sm_hash)
		fail(s, "state machine safety: node %u applied a different entry or state at %llu", n->id,
		     (unsigned long long)e->index);
	if (e->type == RAFT_ENTRY_NORMAL && e->len == 8) {
		uint64_t v;
		memcpy(&v, e->data, 8);
		for (size_t i = s->nprops; i-- > 0;) {
			struct proposal *p = &s->props[i];
			if (p->value == v && p->leader == n->id && p->index == e->index && !p->acked) {
				p->acked = true;
				s->res->acked++;
				if (e->index > s->max_acked_index)
					s->max_acked_index = e->index;
				break;
			}
		}
	}
	if (e->type >= RAFT_ENTRY_ADD_LEARNER)
		s->res->conf_changes++;
}

static void handle_ready(struct sim *s, struct node *n)
{
	for (int round = 0; round < 4 && n->up && raft_has_ready(&n->r); round++) {
		struct raft_ready rd;
		raft_ready(&n->r, &rd);
		if (s->faults && chance(s, 2)) {
			crash(s, n, "before its writes were durable");
			return;
		}
		/* 1. persist */
		if (rd.snapshot) {
			store_snapshot(n, rd.snapshot, rd.log_reset);
			if (rd.snapshot->len == 16) {
				uint64_t idx, h;
				memcpy(&idx, rd.snapshot->data, 8);
				memcpy(&h, rd.snapshot->data + 8, 8);
				struct slot *sm = at(&s->sm, idx);
				if (sm->set && sm->aux != h)
					fail(s, "state machine safety: node %u installed a snapshot at %llu "
						"whose state differs", n->id, (unsigned long long)idx);
				n->sm_index = idx;
				n->sm_hash = h;
			}
		}
		for (size_t i = 0; i < rd.n_entries; i++)
			store_entry(n, &rd.entries[i]);
		if (rd.hs_changed)
			n->hs = rd.hs;
		/* 2. send */
		for (size_t i = 0; i < rd.n_msgs; i++)
			net_send(s, &rd.msgs[i]);
		/* 3. apply */
		for (size_t i = 0; i < rd.n_committed; i++)
			apply(s, n, &rd.committed[i]);
		for (size_t i = 0; i < rd.n_reads; i++) {
			for (int k = 0; k < n->n_reads; k++) {
				if (n->read_ctx[k] != rd.reads[i].ctx)
					continue;
				if (rd.reads[i].index < n->read_floor[k])
					fail(s, "read index: node %u confirmed read %llu at index %llu, below "
						"acknowledged index %llu", n->id, (unsigned long long)rd.reads[i].ctx,
					     (unsigned long long)rd.reads[i].index,
					     (unsigned long long)n->read_floor[k]);
				s->res->reads_confirmed++;
				n->read_ctx[k] = n->read_ctx[--n->n_reads];
				n->read_floor[k] = n->read_floor[n->n_reads];
				break;
			}
		}
		raft_advance(&n->r, &rd);
		/* 4. snapshot now and then */
		if (s->o->snapshots && n->r.applied > n->r.snap.index + 24 && chance(s, 300)) {
			uint8_t data[16];
			memcpy(data, &n->sm_index, 8);
			memcpy(data + 8, &n->sm_hash, 8);
			if (raft_compact(&n->r, n->sm_index, data, 16) == 0) {
				store_snapshot(n, &n->r.snap, false);
				trace(s, "node %u compacted to %llu", n->id, (unsigned long long)n->sm_index);
			}
		}
	}
}

/* ---- faults and clients ------------------------------------------------------------ */

static struct node *leader(struct sim *s)
{
	struct node *best = NULL;
	for (uint32_t id = 1; id < MAXN; id++) {
		struct node *n = &s->nodes[id];
		if (n->up && n->r.role == RAFT_LEADER && (!best || n->r.term > best->r.term))
			best = n;
	}
	return best;
}

static void heal(struct sim *s)
{
	memset(s->cut, 0, sizeof(s->cut));
}

static void inject(struct sim *s)
{
	/* partitions */
	if (s->heal_at && s->step >= s->heal_at) {
		heal(s);
		s->heal_at = 0;
		trace(s, "partition healed");
	}
	if (!s->heal_at && chance(s, 8)) {
		if (chance(s, 500)) {
			uint32_t a = 1 + (uint32_t)rnd(s, MAXN - 1), b = 1 + (uint32_t)rnd(s, MAXN - 1);
			if (a != b) {
				s->cut[a][b] = true;
				trace(s, "one-way cut %u -> %u", a, b);
			}
		} else {
			int side[MAXN];
			for (int i = 1; i < MAXN; i++)
				side[i] = (int)rnd(s, 2);
			for (int a = 1; a < MAXN; a++)
				for (int b = 1; b < MAXN; b++)
					s->cut[a][b] = side[a] != side[b];
			trace(s, "partition");
		}
		s->heal_at = s->step + 10 + (int)rnd(s, 60);
	}
	/* crashes and restarts */
	for (uint32_t id = 1; id < MAXN; id++) {
		struct node *n = &s->nodes[id];
		if (!n->exists)
			continue;
		if (n->up && chance(s, 3))
			crash(s, n, "at random");
		else if (!n->up && s->step >= n->down_until) {
			trace(s, "restart node %u", id);
			boot(s, n);
		}
	}
	struct node *l = leader(s);
	if (l == NULL)
		return;
	/* membership */
	if (s->o->membership && chance(s, 6)) {
		if (s->next_join < MAXN && chance(s, 500)) {
			uint32_t id = s->next_join;
			if (raft_propose_conf(&l->r, RAFT_ENTRY_ADD_LEARNER, id, NULL) == 0) {
				struct node *j = &s->nodes[id];
				j->exists = true;
				boot(s, j);
				s->next_join++;
				trace(s, "leader %u adds learner %u", l->id, id);
			}
		} else if (raft_conf_voters(&l->r.conf) > 3) {
			uint32_t id = 1 + (uint32_t)rnd(s, MAXN - 1);
			if (id != l->id && raft_conf_is_voter(&l->r.conf, id) &&
			    raft_propose_conf(&l->r, RAFT_ENTRY_REMOVE, id, NULL) == 0)
				trace(s, "leader %u removes %u", l->id, id);
		}
	}
	/* leadership transfer */
	if (chance(s, 3)) {
		uint32_t id = 1 + (uint32_t)rnd(s, MAXN - 1);
		if (raft_transfer_leader(&l->r, id) == 0)
			trace(s, "leader %u transfers to %u", l->id, id);
	}
	/* reads */
	if (chance(s, 30) && l->n_reads < MAXREADS) {
		uint64_t ctx = s->next_value++;
		if (raft_read_index(&l->r, ctx) == 0) {
			l->read_ctx[l->n_reads] = ctx;
			l->read_floor[l->n_reads] = s->max_acked_index;
			l->n_reads++;
		}
	}
}

static void propose(struct sim *s)
{
	struct node *l = leader(s);
	/* the last half of the healing phase is quiet, so everyone can catch up */
	if (l == NULL || !chance(s, 400) || s->step > s->o->fault_steps + s->o->heal_steps / 2)
		return;
	uint64_t v = s->next_value++;
	uint64_t index;
	if (raft_propose(&l->r, &v, 8, &index) != 0)
		return;
	if (s->nprops == s->capprops) {
		s->capprops = s->capprops ? s->capprops * 2 : 256;
		s->props = realloc(s->props, s->capprops * sizeof(*s->props));
	}
	s->props[s->nprops++] = (struct proposal){.value = v, .index = index, .term = l->r.term,
						  .leader = l->id};
}

static void step(struct sim *s)
{
	s->step++;
	if (s->faults)
		inject(s);
	propose(s);
	deliver(s);
	for (uint32_t id = 1; id < MAXN; id++)
		if (s->nodes[id].up)
			raft_tick(&s->nodes[id].r);
	for (uint32_t id = 1; id < MAXN; id++)
		if (s->nodes[id].up)
			handle_ready(s, &s->nodes[id]);
	for (uint32_t id = 1; id < MAXN; id++)
		if (s->nodes[id].up)
			check_node(s, &s->nodes[id]);
	check_tails(s);
}

/* After the faults: the final configuration's members must hold every acknowledged entry. */
static void check_end(struct sim *s)
{
	struct node *l = leader(s);
	if (l == NULL) {
		fail(s, "liveness: no leader %d steps after the faults healed", s->o->heal_steps);
		return;
	}
	int leaders = 0;
	for (uint32_t id = 1; id < MAXN; id++)
		leaders += s->nodes[id].up && s->nodes[id].r.role == RAFT_LEADER &&
			   s->nodes[id].r.term == l->r.term;
	if (leaders != 1)
		fail(s, "%d leaders in term %llu at the end", leaders, (unsigned long long)l->r.term);
	for (uint32_t id = 1; id < MAXN; id++) {
		struct node *n = &s->nodes[id];
		if (!raft_conf_is_voter(&l->r.conf, id) && !raft_conf_is_learner(&l->r.conf, id))
			continue;
		if (!n->up) {
			fail(s, "member %u is down at the end", id);
			continue;
		}
		if (n->sm_index < s->max_acked_index)
			fail(s, "liveness: member %u applied up to %llu, acknowledged up to %llu", id,
			     (unsigned long long)n->sm_index, (unsigned long long)s->max_acked_index);
	}
	for (size_t i = 0; i < s->nprops; i++) {
		struct proposal *p = &s->props[i];
		if (!p->acked)
			continue;
		struct slot *sm = at(&s->sm, p->index);
		struct raft_entry e = {.type = RAFT_ENTRY_NORMAL, .len = 8, .data = (uint8_t *)&p->value};
		if (!sm->set || sm->value != entry_value(&e))
			fail(s, "acknowledged proposal at %llu is not what was applied there",
			     (unsigned long long)p->index);
	}
}

void sim_run(const struct sim_opts *o, struct sim_result *res)
{
	memset(res, 0, sizeof(*res));
	res->ok = true;
	struct sim *s = calloc(1, sizeof(*s));
	s->o = o;
	s->res = res;
	s->rng = o->seed * 0x2545f4914f6cdd1dull + 1;
	s->nfounders = o->nodes;
	s->next_join = (uint32_t)o->nodes + 1;
	s->next_value = 1;
	s->pkts = calloc(MAXPKT, sizeof(*s->pkts));
	uint64_t voters = 0;
	for (int i = 1; i <= o->nodes; i++)
		voters |= 1ull << (i - 1);
	for (uint32_t id = 1; id < MAXN; id++) {
		struct node *n = &s->nodes[id];
		n->id = id;
		n->rng = o->seed ^ (0x51ed27d3ull * id);
		if (id <= (uint32_t)o->nodes) {
			/* founders hold the bootstrap entry; joiners start empty and learn it */
			uint8_t buf[8];
			struct raft_entry e;
			raft_bootstrap_entry(&e, buf, voters);
			store_entry(n, &e);
			n->hs = (struct raft_hard_state){.term = 1, .commit = 1};
		}
	}
	for (int i = 1; i <= o->nodes; i++) {
		s->nodes[i].exists = true;
		boot(s, &s->nodes[i]);
	}
	s->faults = true;
	for (int i = 0; i < o->fault_steps && res->ok; i++)
		step(s);
	s->faults = false;
	heal(s);
	s->heal_at = 0;
	for (uint32_t id = 1; id < MAXN; id++)
		if (s->nodes[id].exists && !s->nodes[id].up)
			boot(s, &s->nodes[id]);
	trace(s, "faults over: healed, every node up");
	for (int i = 0; i < o->heal_steps && res->ok; i++)
		step(s);
	if (res->ok)
		check_end(s);
	for (size_t i = 0; i < s->npkts; i++)
		raft_msg_free(&s->pkts[i].m);
	for (uint32_t id = 1; id < MAXN; id++) {
		if (s->nodes[id].up)
			raft_free(&s->nodes[id].r);
		free_storage(&s->nodes[id]);
	}
	free(s->pkts);
	free(s->leaders.s);
	free(s->committed.s);
	free(s->sm.s);
	free(s->props);
	free(s);
}

/* The GES model (see ges_sim.h). What is real: every master's GES core (ges.c) and the
 * deadlock coordinator (dlk.c, with wfg.c). What is modelled, as lmdd wires them: each
 * master reports the waits on a resource to the coordinator at its tick after they change
 * and at once when probed; the coordinator's victims are refused at their masters; sessions
 * (three a node) take EX on two of six resources in random order, hold them a few ms and let
 * them go, each call waiting for its answer as libcoral's do (so a session that waits cannot
 * let go of anything). The network keeps each link's order and delays each message 0..3 ms
 * (one in fifty 15 ms); a connection breaks now and then, losing the probes and answers on
 * it (each such loss allows one more probe interval to the bound); the coordinator's
 * graph is lost now and then (a new coordinator), every master reporting anew once it sees it.
 *
 * Checked after every millisecond: every core's invariants (granted modes compatible, queues
 * well formed); no session sits in a real cycle of waits (the masters' queues as they are)
 * longer than the bound; and at each victim chosen, that it is in a real cycle then. Checked
 * as it happens: every grant of a queued lock is of the first queued on its resource (and
 * none at once with one queued), EX is exclusive as the sessions know it, nothing the lost
 * node held is granted before its recovery, and no value block read as valid holds another
 * value than the last one a master took from a writer. */
#include "ges_sim.h"

#include "dlk.h"
#include "errors.h"
#include "ges.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 6
#define SESS 3
#define NRES 6
#define TICK_MS 10
#define DELAY_MS 3
#define LONG_DELAY_MS 15
#define PROBE_MS 200
#define SWEEP_MS 100

#define LVB 32
#define RESEND_MS 5

enum kind { M_REQ, M_UNLOCK, M_ANSWER, M_UNLOCKED, M_WAITS, M_PROBE, M_VICTIM, M_REBUILD, M_DONE };
enum { S_IDLE, S_WAIT1, S_WAIT2, S_HOLD, S_UNLOCKING };
enum { L_NONE, L_WAIT, L_HELD, L_UNLOCK };  /* each lock of a session, as the session knows it */

struct msg {
	uint64_t at, seq;
	uint32_t from, to, epoch;
	int kind, res, code;
	uint64_t session, lkid, probe;
	uint32_t wnode;
	struct wfg_edge *edges;
	uint32_t nedges;
	bool gr, rq;              /* M_REBUILD: held, waited for */
	bool lvb_valid;           /* M_ANSWER: the value read; M_UNLOCK: written; M_REBUILD: a copy */
	uint64_t lvb;             /* (the value block's first 8 bytes: the rest are zeros) */
};

struct sess {
	uint32_t node;
	uint64_t id;
	int state, res[2], unlocking;
	uint64_t lk[2], until, cyc_since, resets_since;
	bool dead;                /* its node was lost */
	int lst[2];
	uint64_t copy[2];         /* the value block each lock read with its grant */
	bool copy_valid[2];
	uint64_t resend_at[2];    /* refused by a node that is not the master (yet): asked again */
	int resend_kind[2];
};

struct sim;
struct node {
	struct sim *sim;
	uint32_t id, epoch;       /* the coordinator epoch it has seen */
	uint64_t notice_at;       /* when it sees the newest (0: seen) */
	struct ges_core *core;
	bool dirty[NRES];
	bool alive, noticed;      /* noticed: it has seen the map without the lost node */
	uint64_t see_at;
	bool done_from[MAXN + 1]; /* members that have put their locks back for that map */
	/* the locks queued on each resource here, in the order they were queued: every grant of
	 * a queued one must be of the first (EX: no one passes another) */
	uint64_t fifo[NRES][MAXN * SESS * 2];
	int nfifo[NRES];
};

struct sim {
	uint64_t rng, now, seq, lkseq, resets;
	uint32_t n, epoch;
	struct node node[MAXN + 1];
	struct sess s[MAXN * SESS];
	int ns;
	struct msg *q;
	size_t nq, capq;
	uint64_t last_at[MAXN + 1][MAXN + 1];
	struct dlk *dlk;
	uint32_t bound;
	/* the loss of a node: which, when, its recovery (smond's), what its sessions held (nobody
	 * else may hold it before the recovery), when every survivor grants again */
	uint32_t dead;
	uint64_t loss_at, recover_at, released_at;
	bool recovered, dead_held[NRES];
	uint32_t nreleased;
	/* the value blocks: the last value a master took from a writer, per resource */
	uint64_t lvb_seq, last_lvb[NRES];
	struct ges_sim_result *r;
	char *err;
	size_t errsz;
	bool failed;
};

static bool tracing;

static void trace(const struct sim *m, const char *fmt, ...)
{
	if (!tracing)
		return;
	printf("%6llu ", (unsigned long long)m->now);
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static uint64_t rnd(struct sim *m)
{
	m->rng ^= m->rng << 13;
	m->rng ^= m->rng >> 7;
	m->rng ^= m->rng << 17;
	return m->rng;
}

static void fail(struct sim *m, const char *fmt, ...)
{
	if (m->failed)
		return;
	m->failed = true;
	int k = snprintf(m->err, m->errsz, "at %llu ms: ", (unsigned long long)m->now);
	va_list ap;
	va_start(ap, fmt);
	if (k > 0 && (size_t)k < m->errsz)
		vsnprintf(m->err + k, m->errsz - (size_t)k, fmt, ap);
	va_end(ap);
}

/* The master of res: its node by the map, or, in the map without the lost node (after), the
 * next one. master_for: by the map node `node` has seen. */
static uint32_t master_view(const struct sim *m, bool after, int res)
{
	uint32_t p = (uint32_t)res % m->n + 1;
	return after && p == m->dead ? p % m->n + 1 : p;
}

static uint32_t master_for(const struct sim *m, uint32_t node, int res)
{
	return master_view(m, m->dead && m->node[node].noticed, res);
}

static void res_name(int res, char *buf) { snprintf(buf, 8, "r%d", res); }

static int res_of(const uint8_t *name, size_t len)
{
	return len == 2 && name[0] == 'r' && name[1] >= '0' && name[1] < '0' + NRES ? name[1] - '0' : -1;
}

static struct sess *sess_by_id(struct sim *m, uint64_t id)
{
	for (int i = 0; i < m->ns; i++)
		if (m->s[i].id == id)
			return &m->s[i];
	return NULL;
}

static int sess_index(const struct sim *m, uint32_t node, uint64_t id)
{
	for (int i = 0; i < m->ns; i++)
		if (m->s[i].node == node && m->s[i].id == id)
			return i;
	return -1;
}

/* A message on link from -> to: after 0..DELAY_MS (one in fifty LONG_DELAY_MS), never before
 * one sent earlier on the same link. */
static void send(struct sim *m, uint32_t from, uint32_t to, struct msg x)
{
	if (!m->node[from].alive || !m->node[to].alive) {
		free(x.edges);
		return;  /* a lost node's messages go nowhere */
	}
	uint64_t d = rnd(m) % 50 == 0 ? LONG_DELAY_MS : rnd(m) % (DELAY_MS + 1);
	uint64_t at = m->now + d;
	if (at < m->last_at[from][to])
		at = m->last_at[from][to];
	m->last_at[from][to] = at;
	if (m->nq == m->capq) {
		m->capq = m->capq ? m->capq * 2 : 256;
		m->q = realloc(m->q, m->capq * sizeof(*m->q));
		if (m->q == NULL)
			abort();
	}
	x.at = at;
	x.seq = ++m->seq;
	x.from = from;
	x.to = to;
	m->q[m->nq++] = x;
	m->r->messages++;
}

/* The real cycles: on[i] when session i waits, through the masters' queues as they are now,
 * on a session that waits ... on session i. */
static void truth(struct sim *m, bool *on)
{
	static bool reach[MAXN * SESS][MAXN * SESS];
	memset(reach, 0, sizeof(reach));
	struct ges_wait w[64];
	for (int r = 0; r < NRES; r++) {
		char name[8];
		res_name(r, name);
		int k = ges_waits(m->node[master_view(m, m->dead != 0, r)].core, name, strlen(name), w, 64);
		for (int i = 0; i < k && i < 64; i++) {
			int a = sess_index(m, w[i].wnode, w[i].wsession), b = sess_index(m, w[i].hnode, w[i].hsession);
			if (a >= 0 && b >= 0 && !m->s[a].dead && !m->s[b].dead)
				reach[a][b] = true;
		}
	}
	for (int k = 0; k < m->ns; k++)
		for (int i = 0; i < m->ns; i++)
			if (reach[i][k])
				for (int j = 0; j < m->ns; j++)
					reach[i][j] |= reach[k][j];
	for (int i = 0; i < m->ns; i++)
		on[i] = reach[i][i];
}

/* ---- the masters' side ----------------------------------------------------------------- */

static uint64_t lvb_get(const uint8_t *lvb)
{
	uint64_t v;
	memcpy(&v, lvb, sizeof(v));
	return v;
}

/* A grant with a value block that says it is valid: it must be the last value a master took
 * from a writer (never a value lost with a node, nor zeros for it). */
static void check_read(struct sim *m, int r, const uint8_t *lvb, bool valid)
{
	if (r < 0 || lvb == NULL)
		return;
	if (!valid) {
		m->r->lvb_invalid++;
		return;
	}
	m->r->lvb_valid++;
	if (lvb_get(lvb) != m->last_lvb[r])
		fail(m, "r%d's value block read as valid holds %llu; the last value written is %llu", r,
		     (unsigned long long)lvb_get(lvb), (unsigned long long)m->last_lvb[r]);
}

static int res_of_lock(struct sim *m, uint64_t session, uint64_t lkid)
{
	struct sess *s = sess_by_id(m, session);
	return s == NULL ? -1 : s->lk[0] == lkid ? s->res[0] : s->lk[1] == lkid ? s->res[1] : -1;
}

static void fifo_push(struct sim *m, struct node *n, int r, uint64_t lkid)
{
	if (r < 0 || n->nfifo[r] == MAXN * SESS * 2) {
		fail(m, "node %u: more queued on r%d than sessions have locks", n->id, r);
		return;
	}
	n->fifo[r][n->nfifo[r]++] = lkid;
}

/* lkid leaves r's queue at node n: granted (it must be the first), or refused (anywhere). */
static void fifo_take(struct sim *m, struct node *n, int r, uint64_t lkid, bool granted)
{
	if (r < 0)
		return;
	for (int i = 0; i < n->nfifo[r]; i++)
		if (n->fifo[r][i] == lkid) {
			if (granted && i != 0)
				fail(m, "node %u granted lock %llu on r%d ahead of %d queued before it", n->id,
				     (unsigned long long)lkid, r, i);
			memmove(&n->fifo[r][i], &n->fifo[r][i + 1], (size_t)(n->nfifo[r] - i - 1) * sizeof(uint64_t));
			n->nfifo[r]--;
			return;
		}
	if (granted)
		fail(m, "node %u granted lock %llu on r%d, which was not queued there", n->id, (unsigned long long)lkid, r);
}

static void core_done(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int code, int gr, bool demoted,
		      const uint8_t *lvb, bool lvb_valid)
{
	(void)gr, (void)demoted;
	struct node *n = arg;
	struct sim *m = n->sim;
	int r = res_of_lock(m, session, lkid);
	fifo_take(m, n, r, lkid, code == 0);
	if (code == 0)
		check_read(m, r, lvb, lvb_valid);
	send(m, n->id, node, (struct msg){.kind = M_ANSWER, .session = session, .lkid = lkid, .code = code,
					  .lvb_valid = lvb && lvb_valid, .lvb = lvb ? lvb_get(lvb) : 0});
}

static void core_bast(void *arg, uint32_t node, uint64_t session, uint64_t lkid, int mode)
{
	(void)arg, (void)node, (void)session, (void)lkid, (void)mode;
}

static void core_waits(void *arg, const uint8_t *name, size_t len)
{
	struct node *n = arg;
	int r = res_of(name, len);
	if (r >= 0)
		n->dirty[r] = true;
}

static void report(struct sim *m, struct node *n, int r, uint64_t probe)
{
	char name[8];
	res_name(r, name);
	struct ges_wait w[64];
	int k = ges_waits(n->core, name, strlen(name), w, 64);
	if (k > 64)
		k = 64;
	struct wfg_edge *e = k ? calloc((size_t)k, sizeof(*e)) : NULL;
	for (int i = 0; i < k; i++) {
		e[i].waiter = (struct wfg_owner){w[i].wnode, w[i].wsession};
		e[i].holder = (struct wfg_owner){w[i].hnode, w[i].hsession};
		e[i].lkid = w[i].lkid;
		e[i].since_ms = w[i].since_ms;
		e[i].held = w[i].held;
	}
	send(m, n->id, 1, (struct msg){.kind = M_WAITS, .res = r, .probe = probe, .epoch = n->epoch, .edges = e,
				       .nedges = (uint32_t)k});
}

/* A master's tick: the coordinator it has just seen gets every wait anew; then each
 * resource whose waits changed is reported. */
static void master_tick(struct sim *m, struct node *n)
{
	if (n->notice_at && m->now >= n->notice_at) {
		n->notice_at = 0;
		n->epoch = m->epoch;
		for (int r = 0; r < NRES; r++) {
			char name[8];
			res_name(r, name);
			if (master_for(m, n->id, r) == n->id && ges_waits(n->core, name, strlen(name), NULL, 0) > 0)
				n->dirty[r] = true;
		}
	}
	for (int r = 0; r < NRES; r++)
		if (n->dirty[r]) {
			n->dirty[r] = false;
			report(m, n, r, 0);
		}
}

/* ---- the coordinator -------------------------------------------------------------------- */

static void dlk_probe(void *arg, uint32_t master, const uint8_t *name, size_t len, uint64_t probe)
{
	struct sim *m = arg;
	int r = res_of(name, len);
	if (r < 0) {
		fail(m, "a probe for a resource nobody reported");
		return;
	}
	trace(m, "coord: probe %llu -> node %u for r%d", (unsigned long long)probe, master, r);
	send(m, 1, master, (struct msg){.kind = M_PROBE, .res = r, .probe = probe, .epoch = m->epoch});
}

static void dlk_victim(void *arg, const struct wfg_edge *cyc, int len, int v, bool by_sweep)
{
	struct sim *m = arg;
	m->r->swept += by_sweep;
	trace(m, "coord: VICTIM%s lock %llu of %u/%llu on %.*s (cycle of %d)", by_sweep ? " (by the sweep)" : "", (unsigned long long)cyc[v].lkid,
	      cyc[v].waiter.node, (unsigned long long)cyc[v].waiter.session, (int)cyc[v].len, (const char *)cyc[v].name, len);
	bool on[MAXN * SESS];
	truth(m, on);
	int i = sess_index(m, cyc[v].waiter.node, cyc[v].waiter.session);
	/* a cycle through the lost node (a session of it, or a wait it mastered), found before
	 * the coordinator learnt of the loss, was a real one until then: the truth, by the new
	 * map, does not see it while its waits are on their way to their new master */
	bool through_lost = false;
	for (int k = 0; k < len; k++)
		through_lost |= m->dead && !m->node[1].noticed &&
				(cyc[k].waiter.node == m->dead || cyc[k].holder.node == m->dead || cyc[k].master == m->dead);
	if (through_lost)
		m->r->lost_cycles++;
	else if (i < 0 || !on[i])
		fail(m, "victim node %u session %llu (lock %llu on %.*s) was in no real cycle when chosen",
		     cyc[v].waiter.node, (unsigned long long)cyc[v].waiter.session, (unsigned long long)cyc[v].lkid,
		     (int)cyc[v].len, (const char *)cyc[v].name);
	send(m, 1, cyc[v].master, (struct msg){.kind = M_VICTIM, .res = res_of(cyc[v].name, cyc[v].len),
					       .lkid = cyc[v].lkid, .wnode = cyc[v].waiter.node});
}

static void take_stats(struct sim *m)
{
	if (m->dlk == NULL)
		return;
	const struct dlk_stats *ds = dlk_stats(m->dlk);
	m->r->phantoms += ds->phantoms;
	m->r->lapsed += ds->probes_lapsed;
}

static void new_coordinator_graph(struct sim *m)
{
	take_stats(m);
	dlk_free(m->dlk);
	struct dlk_conf dc = {4096, PROBE_MS, SWEEP_MS, 64};
	struct dlk_ops ops = {dlk_probe, dlk_victim, m};
	m->dlk = dlk_new(&dc, &ops);
	if (m->dlk == NULL)
		abort();
}

/* ---- sessions --------------------------------------------------------------------------- */

static void send_req(struct sim *m, struct sess *s, int k)
{
	send(m, s->node, master_for(m, s->node, s->res[k]),
	     (struct msg){.kind = M_REQ, .res = s->res[k], .session = s->id, .lkid = s->lk[k]});
}

static void request(struct sim *m, struct sess *s, int k)
{
	s->lk[k] = ((uint64_t)s->node << 40) | ++m->lkseq;
	s->lst[k] = L_WAIT;
	send_req(m, s, k);
}

/* The unlock writes a new value into the value block (every lock is EX with VALBLK). */
static void send_unlock(struct sim *m, struct sess *s, int k)
{
	send(m, s->node, master_for(m, s->node, s->res[k]),
	     (struct msg){.kind = M_UNLOCK, .res = s->res[k], .lkid = s->lk[k], .lvb_valid = true, .lvb = s->copy[k]});
}

static void unlock(struct sim *m, struct sess *s, int k)
{
	s->unlocking++;
	s->lst[k] = L_UNLOCK;
	s->copy[k] = ++m->lvb_seq;
	send_unlock(m, s, k);
}

static void unlocked(struct sim *m, struct sess *s, int k)
{
	s->lst[k] = L_NONE;
	if (--s->unlocking == 0) {
		s->state = S_IDLE;
		s->until = m->now + rnd(m) % 3;
	}
}

static void sess_step(struct sim *m, struct sess *s)
{
	if (s->dead)
		return;
	for (int k = 0; k < 2; k++)
		if (s->resend_at[k] && m->now >= s->resend_at[k]) {
			s->resend_at[k] = 0;
			if (s->resend_kind[k] == M_REQ)
				send_req(m, s, k);
			else
				send_unlock(m, s, k);
		}
	if (s->state == S_IDLE && m->now >= s->until) {
		s->res[0] = (int)(rnd(m) % NRES);
		do
			s->res[1] = (int)(rnd(m) % NRES);
		while (s->res[1] == s->res[0]);
		s->state = S_WAIT1;
		request(m, s, 0);
	} else if (s->state == S_HOLD && m->now >= s->until) {
		s->state = S_UNLOCKING;
		unlock(m, s, 1);
		unlock(m, s, 0);
		m->r->transfers++;
	}
}

static void sess_answer(struct sim *m, struct sess *s, const struct msg *x)
{
	int k = s->state == S_WAIT1 ? 0 : s->state == S_WAIT2 ? 1 : -1;
	if (k < 0 || x->lkid != s->lk[k]) {
		fail(m, "session %llu got an answer for lock %llu it does not wait for", (unsigned long long)s->id,
		     (unsigned long long)x->lkid);
		return;
	}
	if (x->code == CORAL_ENOTMASTER) {
		s->resend_at[k] = m->now + RESEND_MS;  /* that node has not seen the new map yet */
		s->resend_kind[k] = M_REQ;
		return;
	}
	if (x->code == 0) {
		m->r->grants++;
		s->lst[k] = L_HELD;
		s->copy[k] = x->lvb;
		s->copy_valid[k] = x->lvb_valid;
		if (k == 0) {
			s->state = S_WAIT2;
			request(m, s, 1);
		} else {
			s->state = S_HOLD;
			s->until = m->now + 1 + rnd(m) % 5;
		}
		return;
	}
	if (x->code != CORAL_EDEADLK) {
		fail(m, "session %llu's lock %llu refused: %s", (unsigned long long)s->id, (unsigned long long)x->lkid,
		     coral_strerror(x->code));
		return;
	}
	if (k == 0) {
		fail(m, "session %llu refused as a deadlock's victim while it held nothing", (unsigned long long)s->id);
		return;
	}
	s->lst[1] = L_NONE;
	s->state = S_UNLOCKING;  /* the victim lets its first lock go and tries again later */
	unlock(m, s, 0);
}

/* ---- the loss of a node and the rebuild (lmdd(8), REBUILD) --------------------------------- */

/* A master grants again once every member has put its locks back for the new map and the
 * lost node's recovery is over. */
static void try_release(struct sim *m, struct node *n)
{
	if (!n->noticed || !ges_held(n->core) || !m->recovered)
		return;
	for (uint32_t i = 1; i <= m->n; i++)
		if (m->node[i].alive && !n->done_from[i])
			return;
	ges_hold(n->core, false);
	trace(m, "node %u grants again", n->id);
	if (++m->nreleased == m->n - 1)
		m->released_at = m->now;
}

/* Node d is lost: its sessions with it, every message to or from it; what its sessions held
 * may be granted to nobody else before its recovery. */
static void lose(struct sim *m, uint32_t d)
{
	m->dead = d;
	m->loss_at = m->now;
	m->recover_at = m->now + 50 + rnd(m) % 150;
	m->r->node_losses++;
	trace(m, "node %u is lost; recovered at %llu", d, (unsigned long long)m->recover_at);
	/* what it held, by its masters' queues at this moment (a grant on its way to it counts) */
	for (int r = 0; r < NRES; r++) {
		char name[8];
		res_name(r, name);
		struct ges_lock_view v[64];
		int k = ges_resource(m->node[master_view(m, false, r)].core, name, strlen(name), v, 64, NULL, NULL);
		for (int i = 0; i < k && i < 64; i++)
			if (v[i].node == d && v[i].gr != GES_NONE)
				m->dead_held[r] = true;
	}
	for (int i = 0; i < m->ns; i++)
		if (m->s[i].node == d)
			m->s[i].dead = true;
	m->node[d].alive = false;
	for (size_t i = 0; i < m->nq;)
		if (m->q[i].from == d || m->q[i].to == d) {
			free(m->q[i].edges);
			m->q[i] = m->q[--m->nq];
		} else {
			i++;
		}
	for (uint32_t i = 1; i <= m->n; i++)
		if (m->node[i].alive)
			m->node[i].see_at = m->now + 1 + rnd(m) % 20;
}

/* Node n sees the map without the lost node (lmdd's check_map and check_losses): it holds its
 * grants; its sessions' locks whose master changed go to the new master as held or waited
 * for (an unlock under way is taken as done); then its word to every member. */
static void notice(struct sim *m, struct node *n)
{
	n->noticed = true;
	n->see_at = 0;
	ges_node_lost(n->core, m->dead, m->now);
	/* the lost node's queued requests went with it (its lock ids carry its node) */
	for (int r = 0; r < NRES; r++) {
		int k = 0;
		for (int i = 0; i < n->nfifo[r]; i++)
			if ((uint32_t)(n->fifo[r][i] >> 40) != m->dead)
				n->fifo[r][k++] = n->fifo[r][i];
		n->nfifo[r] = k;
	}
	if (m->recovered)
		ges_node_recovered(n->core, m->dead, m->now);
	ges_hold(n->core, true);
	if (n->id == 1) {
		dlk_drop_master(m->dlk, m->dead);
		dlk_node_lost(m->dlk, m->dead, true);
	}
	for (int i = 0; i < m->ns; i++) {
		struct sess *s = &m->s[i];
		if (s->node != n->id || s->dead)
			continue;
		for (int k = 0; k < 2; k++) {
			if (s->lst[k] == L_NONE || master_view(m, false, s->res[k]) != m->dead)
				continue;
			if (s->lst[k] == L_UNLOCK) {
				s->resend_at[k] = 0;
				unlocked(m, s, k);
				continue;
			}
			bool held = s->lst[k] == L_HELD;
			send(m, n->id, master_for(m, n->id, s->res[k]),
			     (struct msg){.kind = M_REBUILD, .res = s->res[k], .session = s->id, .lkid = s->lk[k], .gr = held,
					  .rq = !held, .lvb_valid = held && s->copy_valid[k], .lvb = s->copy[k]});
		}
	}
	for (uint32_t i = 1; i <= m->n; i++)
		if (m->node[i].alive)
			send(m, n->id, i, (struct msg){.kind = M_DONE});
	trace(m, "node %u has seen the map without node %u", n->id, m->dead);
}

/* ---- delivery --------------------------------------------------------------------------- */

static void deliver(struct sim *m, struct msg *x)
{
	struct node *n = &m->node[x->to];
	char name[8];
	res_name(x->res, name);
	switch (x->kind) {
	case M_REQ: {
		if (master_for(m, n->id, x->res) != n->id) {
			/* not the master at its own map (lmdd answers so; the requester asks again) */
			send(m, n->id, x->from, (struct msg){.kind = M_ANSWER, .session = x->session, .lkid = x->lkid,
							      .code = CORAL_ENOTMASTER});
			break;
		}
		if (m->dead && master_view(m, false, x->res) == m->dead && !ges_has(n->core, name, strlen(name))) {
			/* new here, in a bucket the lost node had (lmdd's from_lost) */
			static const uint8_t zeros[GES_LVB_MAX];
			ges_set_lvb(n->core, name, strlen(name), zeros, false, true);
		}
		struct ges_answer a;
		int rc = ges_request(n->core, x->from, x->session, x->lkid, name, strlen(name), GES_EX, GES_F_VALBLK, 0,
				     m->now, &a);
		if (rc == CORAL_EPENDING)
			fifo_push(m, n, x->res, x->lkid);
		if (rc == 0 && n->nfifo[x->res] > 0)
			fail(m, "node %u granted lock %llu on r%d at once, %d queued before it", n->id,
			     (unsigned long long)x->lkid, x->res, n->nfifo[x->res]);
		if (rc == 0) {
			check_read(m, x->res, a.lvb, a.lvb_valid);
			send(m, n->id, x->from, (struct msg){.kind = M_ANSWER, .session = x->session, .lkid = x->lkid,
							      .lvb_valid = a.lvb_valid, .lvb = lvb_get(a.lvb)});
		} else if (rc != CORAL_EPENDING) {
			fail(m, "a request on %s refused: %s", name, coral_strerror(rc));
		}
		break;
	}
	case M_UNLOCK: {
		if (master_for(m, n->id, x->res) != n->id) {
			send(m, n->id, x->from, (struct msg){.kind = M_UNLOCKED, .lkid = x->lkid, .code = CORAL_ENOTMASTER});
			break;
		}
		uint8_t v[GES_LVB_MAX] = {0};
		memcpy(v, &x->lvb, sizeof(x->lvb));
		/* an EX holder's value is taken as it goes (before the waiter it lets in reads it) */
		uint64_t before = m->last_lvb[x->res];
		m->last_lvb[x->res] = x->lvb;
		int rc = ges_unlock(n->core, x->from, x->lkid, v, m->now);
		if (rc != 0) {
			m->last_lvb[x->res] = before;
			fail(m, "an unlock of lock %llu on %s refused: %s", (unsigned long long)x->lkid, name,
			     coral_strerror(rc));
		}
		send(m, n->id, x->from, (struct msg){.kind = M_UNLOCKED, .lkid = x->lkid});
		break;
	}
	case M_REBUILD: {
		int rc = ges_rebuild(n->core, x->from, x->session, x->lkid, name, strlen(name), x->gr ? GES_EX : GES_NONE,
				     x->rq ? GES_EX : GES_NONE, GES_F_VALBLK, m->now);
		if (rc != 0)
			fail(m, "a rebuild of lock %llu on %s refused: %s", (unsigned long long)x->lkid, name,
			     coral_strerror(rc));
		if (rc == 0 && x->rq)
			fifo_push(m, n, x->res, x->lkid);  /* queued in the order put back */
		if (rc == 0 && x->gr && x->lvb_valid) {
			uint8_t v[GES_LVB_MAX] = {0};
			memcpy(v, &x->lvb, sizeof(x->lvb));
			if (ges_recover_lvb(n->core, name, strlen(name), GES_EX, v) == 0)
				m->r->lvb_recovered++;
		}
		break;
	}
	case M_DONE:
		n->done_from[x->from] = true;
		try_release(m, n);
		break;
	case M_ANSWER: {
		struct sess *s = sess_by_id(m, x->session);
		if (s)
			sess_answer(m, s, x);
		break;
	}
	case M_UNLOCKED:
		for (int i = 0; i < m->ns; i++) {
			struct sess *s = &m->s[i];
			int k = s->lk[0] == x->lkid ? 0 : s->lk[1] == x->lkid ? 1 : -1;
			if (s->node != x->to || k < 0 || s->lst[k] != L_UNLOCK)
				continue;
			if (x->code == CORAL_ENOTMASTER) {
				s->resend_at[k] = m->now + RESEND_MS;
				s->resend_kind[k] = M_UNLOCK;
			} else {
				unlocked(m, s, k);
			}
			break;
		}
		break;
	case M_WAITS:
		if (tracing) {
			char b[512];
			int o = 0;
			for (uint32_t i = 0; i < x->nedges && o < 400; i++)
				o += snprintf(b + o, sizeof(b) - (size_t)o, " %llu->%llu(l%llu)",
					      (unsigned long long)x->edges[i].waiter.session,
					      (unsigned long long)x->edges[i].holder.session,
					      (unsigned long long)(x->edges[i].lkid & 0xffffff));
			b[o] = 0;
			trace(m, "coord: waits from node %u on %s (probe %llu, epoch %u/%u):%s", x->from, name,
			      (unsigned long long)x->probe, x->epoch, m->epoch, b);
		}
		if (x->epoch == m->epoch &&
		    dlk_report(m->dlk, x->from, (const uint8_t *)name, strlen(name), x->edges, x->nedges, x->probe,
			       m->now) != 0)
			fail(m, "the coordinator's graph refused a report");
		break;
	case M_PROBE:
		trace(m, "node %u: probe %llu for %s (epoch %u/%u)", n->id, (unsigned long long)x->probe, name, x->epoch,
		      n->epoch);
		if (x->epoch == n->epoch)  /* a master answers only the coordinator it knows */
			report(m, n, x->res, x->probe);
		break;
	case M_VICTIM:
		if (ges_victim(n->core, x->wnode, x->lkid) == 0)
			m->r->victims_refused++;
		break;
	}
}

/* ---- the run ---------------------------------------------------------------------------- */

int ges_sim_run(uint64_t seed, uint32_t nodes, uint32_t steps, struct ges_sim_result *out, char *err, size_t errsz)
{
	struct ges_sim_result res0;
	if (out == NULL)
		out = &res0;
	memset(out, 0, sizeof(*out));
	if (nodes < 2 || nodes > MAXN)
		return CORAL_EINVAL;
	struct sim *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return CORAL_ENOMEM;
	tracing = getenv("GES_SIM_TRACE") != NULL;
	m->rng = seed * 0x9e3779b97f4a7c15ull + 1;
	m->n = nodes;
	m->r = out;
	m->err = err;
	m->errsz = errsz;
	/* lmdd(8)'s bound: from a cycle closing to its victim's refusal at most 100 ms (a report's
	 * tick, its way, a probe's round trip and the victim's way, even at the long delay; a new
	 * coordinator seen within two ticks); each connection broken meanwhile adds a probe's
	 * lapse (below) */
	m->bound = 100;
	out->bound_ms = m->bound;
	for (uint32_t i = 1; i <= nodes; i++) {
		struct node *n = &m->node[i];
		n->sim = m;
		n->id = i;
		/* (a holder told it is in the way is told when it no longer is: ges_check, run at
		 * every step, holds the core to it) */
		struct ges_ops ops = {core_done, core_bast, core_waits, n, NULL};
		n->core = ges_core_new(64, 256, LVB, &ops);
		if (n->core == NULL)
			abort();
		n->alive = true;
		for (int k = 0; k < SESS; k++)
			m->s[m->ns++] = (struct sess){.node = i, .id = i * 100 + (uint64_t)k};
	}
	new_coordinator_graph(m);
	/* with three nodes or more, one (never node 1, the coordinator) is lost a quarter to half
	 * way through */
	uint64_t lose_at = nodes >= 3 ? steps / 4 + rnd(m) % (steps / 4 + 1) : 0;
	for (m->now = 1; m->now <= steps && !m->failed; m->now++) {
		if (m->now == lose_at)
			lose(m, 2 + (uint32_t)(rnd(m) % (nodes - 1)));
		for (uint32_t i = 1; i <= nodes; i++)
			if (m->node[i].alive && m->node[i].see_at && m->now >= m->node[i].see_at)
				notice(m, &m->node[i]);
		if (m->dead && !m->recovered && m->now >= m->recover_at) {
			/* smond has recovered the lost node's thread: what it held goes */
			m->recovered = true;
			trace(m, "node %u recovered", m->dead);
			for (uint32_t i = 1; i <= nodes; i++)
				if (m->node[i].alive && m->node[i].noticed) {
					ges_node_recovered(m->node[i].core, m->dead, m->now);
					try_release(m, &m->node[i]);
				}
		}
		/* what is due, in the order sent */
		for (;;) {
			size_t best = m->nq;
			for (size_t i = 0; i < m->nq; i++)
				if (m->q[i].at <= m->now && (best == m->nq || m->q[i].seq < m->q[best].seq))
					best = i;
			if (best == m->nq)
				break;
			struct msg x = m->q[best];
			m->q[best] = m->q[--m->nq];
			deliver(m, &x);
			free(x.edges);
			if (m->failed)
				break;
		}
		/* a connection between two nodes breaks: the probes and their answers on it are lost
		 * (what the sessions' and masters' calls send is sent again by the kit) */
		if (rnd(m) % 1500 == 0) {
			uint32_t a = 1 + (uint32_t)(rnd(m) % nodes), b = 1 + (uint32_t)(rnd(m) % nodes);
			if (a != b && m->node[a].alive && m->node[b].alive) {
				m->resets++;
				for (size_t i = 0; i < m->nq;)
					if (m->q[i].from == a && m->q[i].to == b &&
					    (m->q[i].kind == M_PROBE || (m->q[i].kind == M_WAITS && m->q[i].probe))) {
						trace(m, "lost: kind %d %u -> %u r%d probe %llu", m->q[i].kind, a, b, m->q[i].res,
						      (unsigned long long)m->q[i].probe);
						free(m->q[i].edges);
						m->q[i] = m->q[--m->nq];
						m->r->lost++;
					} else
						i++;
			}
		}
		for (int i = 0; i < m->ns; i++)
			sess_step(m, &m->s[i]);
		for (uint32_t i = 1; i <= nodes; i++)
			if (m->node[i].alive && (m->now + i * 3) % TICK_MS == 0)
				master_tick(m, &m->node[i]);
		if (m->now % TICK_MS == 0)
			dlk_tick(m->dlk, m->now);
		/* the coordinator's graph is lost (another node is it now): every master sees it
		 * within two ticks and reports every wait anew */
		if (rnd(m) % 4000 == 0) {
			out->coordinator_changes++;
			trace(m, "a new coordinator's graph");
			m->epoch++;
			new_coordinator_graph(m);
			if (m->dead && m->node[1].noticed)
				dlk_node_lost(m->dlk, m->dead, true);
			for (uint32_t i = 1; i <= nodes; i++)
				if (m->node[i].alive)
					m->node[i].notice_at = m->now + rnd(m) % (2 * TICK_MS);
		}
		for (uint32_t i = 1; i <= nodes && !m->failed; i++) {
			char e[256];
			if (m->node[i].alive && ges_check(m->node[i].core, e, sizeof(e)) != 0)
				fail(m, "node %u's GES core: %s", i, e);
		}
		/* EX is exclusive, as the sessions know it, across the rebuild too; what the lost node
		 * held is nobody's before its recovery */
		for (int r = 0; r < NRES && !m->failed; r++) {
			int holders = 0;
			for (int i = 0; i < m->ns; i++)
				for (int k = 0; k < 2; k++)
					holders += !m->s[i].dead && m->s[i].lst[k] == L_HELD && m->s[i].res[k] == r;
			if (holders > 1)
				fail(m, "%d sessions hold r%d in EX at once", holders, r);
			else if (holders && m->dead_held[r] && !m->recovered)
				fail(m, "r%d granted before the recovery of node %u, which held it", r, m->dead);
		}
		bool on[MAXN * SESS];
		truth(m, on);
		for (int i = 0; i < m->ns && !m->failed; i++) {
			struct sess *s = &m->s[i];
			if (!on[i] || s->dead) {
				s->cyc_since = 0;
				continue;
			}
			if (s->cyc_since == 0) {
				s->cyc_since = m->now;
				s->resets_since = m->resets;
				trace(m, "truth: session %llu in a cycle", (unsigned long long)s->id);
			}
			/* a cycle through a lost master is seen once the rebuild is over (nothing is granted
			 * or reported as changed before): it counts from then */
			uint64_t from = s->cyc_since;
			if (m->dead && (m->released_at == 0 || from < m->released_at)) {
				if (m->released_at == 0)
					continue;
				from = m->released_at;
			}
			uint32_t d = (uint32_t)(m->now - from);
			if (d > out->worst_ms)
				out->worst_ms = d;
			if (m->resets == s->resets_since && d > out->worst_clean_ms)
				out->worst_clean_ms = d;
			/* each connection broken meanwhile may have cost a probe: one more lapse allowed */
			uint32_t bound = m->bound + PROBE_MS * (uint32_t)(m->resets - s->resets_since);
			if (d > bound)
				fail(m, "node %u session %llu has been in a real cycle of waits for %u ms (bound %u ms)",
				     s->node, (unsigned long long)s->id, d, bound);
		}
	}
	take_stats(m);
	out->deadlocks = out->victims_refused;
	int rc = m->failed ? CORAL_EINVAL : 0;
	for (size_t i = 0; i < m->nq; i++)
		free(m->q[i].edges);
	free(m->q);
	dlk_free(m->dlk);
	for (uint32_t i = 1; i <= nodes; i++)
		ges_core_free(m->node[i].core);
	free(m);
	return rc;
}

/* The Raft core (see raft.h). Section numbers refer to Ongaro's dissertation; the shape of
 * progress tracking (probe, replicate, snapshot) follows etcd/raft. */
#include "raft.h"
#include "errors.h"

#include <stdlib.h>
#include <string.h>

enum { PR_PROBE, PR_REPLICATE, PR_SNAPSHOT };

#define BIT(id) (1ull << ((id) - 1))

/* ---- configuration ------------------------------------------------------------------ */

bool raft_conf_is_voter(const struct raft_conf *c, uint32_t id)
{
	return id >= 1 && id <= RAFT_MAX_NODES && (c->voters & BIT(id));
}

bool raft_conf_is_learner(const struct raft_conf *c, uint32_t id)
{
	return id >= 1 && id <= RAFT_MAX_NODES && (c->learners & BIT(id));
}

int raft_conf_voters(const struct raft_conf *c)
{
	return __builtin_popcountll(c->voters);
}

static bool conf_is_member(const struct raft_conf *c, uint32_t id)
{
	return raft_conf_is_voter(c, id) || raft_conf_is_learner(c, id);
}

static bool is_conf_entry(uint8_t type)
{
	return type == RAFT_ENTRY_ADD_LEARNER || type == RAFT_ENTRY_PROMOTE ||
	       type == RAFT_ENTRY_REMOVE || type == RAFT_ENTRY_BOOTSTRAP;
}

void raft_bootstrap_entry(struct raft_entry *e, uint8_t buf[8], uint64_t voters)
{
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(voters >> (8 * i));
	*e = (struct raft_entry){.term = 1, .index = 1, .type = RAFT_ENTRY_BOOTSTRAP, .len = 8,
				 .data = buf};
}

static uint32_t conf_entry_node(const struct raft_entry *e)
{
	if (e->len != 4)
		return 0;
	return (uint32_t)e->data[0] << 24 | (uint32_t)e->data[1] << 16 | (uint32_t)e->data[2] << 8 |
	       e->data[3];
}

static void conf_apply(struct raft_conf *c, const struct raft_entry *e)
{
	if (e->type == RAFT_ENTRY_BOOTSTRAP) {
		uint64_t voters = 0;
		for (uint32_t i = 0; i < 8 && i < e->len; i++)
			voters |= (uint64_t)e->data[i] << (8 * i);
		*c = (struct raft_conf){.voters = voters};
		return;
	}
	uint32_t id = conf_entry_node(e);
	if (id < 1 || id > RAFT_MAX_NODES)
		return;
	switch (e->type) {
	case RAFT_ENTRY_ADD_LEARNER:
		if (!(c->removed & BIT(id)) && !(c->voters & BIT(id)))
			c->learners |= BIT(id);
		break;
	case RAFT_ENTRY_PROMOTE:
		if (c->learners & BIT(id)) {
			c->learners &= ~BIT(id);
			c->voters |= BIT(id);
		}
		break;
	case RAFT_ENTRY_REMOVE:
		c->voters &= ~BIT(id);
		c->learners &= ~BIT(id);
		c->removed |= BIT(id);
		break;
	default:
		break;
	}
}

static bool quorum(const struct raft *r, uint64_t mask)
{
	return (unsigned)(2 * __builtin_popcountll(mask & r->conf.voters)) > (unsigned)raft_conf_voters(&r->conf);
}

/* ---- log ---------------------------------------------------------------------------- */

uint64_t raft_last_index(const struct raft *r)
{
	return r->snap.index + r->n;
}

const struct raft_entry *raft_entry_at(const struct raft *r, uint64_t index)
{
	if (index <= r->snap.index || index > raft_last_index(r))
		return NULL;
	return &r->log[index - r->snap.index - 1];
}

uint64_t raft_term_at(const struct raft *r, uint64_t index)
{
	if (index == r->snap.index)
		return r->snap.term;
	const struct raft_entry *e = raft_entry_at(r, index);
	return e ? e->term : 0;
}

static uint64_t last_term(const struct raft *r)
{
	return raft_term_at(r, raft_last_index(r));
}

static bool entry_copy(struct raft_entry *dst, const struct raft_entry *src)
{
	*dst = *src;
	dst->data = NULL;
	if (src->len) {
		dst->data = malloc(src->len);
		if (dst->data == NULL)
			return false;
		memcpy(dst->data, src->data, src->len);
	}
	return true;
}

static void entry_free(struct raft_entry *e)
{
	free(e->data);
	e->data = NULL;
}

/* Recomputes the configuration from the snapshot and the log (after a truncation). */
static void conf_rebuild(struct raft *r)
{
	r->conf = r->snap.conf;
	r->conf_index = 0;
	for (size_t i = 0; i < r->n; i++)
		if (is_conf_entry(r->log[i].type)) {
			conf_apply(&r->conf, &r->log[i]);
			r->conf_index = r->log[i].index;
		}
}

static void progress_reset(struct raft *r, uint32_t id)
{
	struct raft_progress *p = &r->pr[id - 1];
	memset(p, 0, sizeof(*p));
	p->next = raft_last_index(r) + 1;
	p->state = PR_PROBE;
}

static void conf_changed(struct raft *r, const struct raft_conf *before)
{
	if (r->role != RAFT_LEADER)
		return;
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++)
		if (conf_is_member(&r->conf, id) && !conf_is_member(before, id))
			progress_reset(r, id);
}

/* Drops entries from index on (they conflict with the leader's). */
static void log_truncate(struct raft *r, uint64_t index)
{
	while (raft_last_index(r) >= index && r->n > 0) {
		struct raft_entry *e = &r->log[r->n - 1];
		if (e->index > r->committed && r->uncommitted_bytes >= e->len)
			r->uncommitted_bytes -= e->len;
		entry_free(e);
		r->n--;
	}
	if (r->stable >= index)
		r->stable = index - 1;
	if (r->conf_index >= index)
		conf_rebuild(r);
}

static int log_append(struct raft *r, const struct raft_entry *src)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct raft_entry *p = realloc(r->log, cap * sizeof(*p));
		if (p == NULL)
			return CORAL_ENOMEM;
		r->log = p;
		r->cap = cap;
	}
	if (!entry_copy(&r->log[r->n], src))
		return CORAL_ENOMEM;
	r->n++;
	if (src->index > r->committed)
		r->uncommitted_bytes += src->len;
	if (is_conf_entry(src->type)) {
		struct raft_conf before = r->conf;
		conf_apply(&r->conf, src);
		r->conf_index = src->index;
		conf_changed(r, &before);
	}
	return 0;
}

static void commit_to(struct raft *r, uint64_t index)
{
	if (index > raft_last_index(r))
		index = raft_last_index(r);
	if (index <= r->committed)
		return;
	for (uint64_t i = r->committed + 1; i <= index; i++) {
		const struct raft_entry *e = raft_entry_at(r, i);
		if (e && r->uncommitted_bytes >= e->len)
			r->uncommitted_bytes -= e->len;
	}
	r->committed = index;
}

/* ---- messages ----------------------------------------------------------------------- */

void raft_msg_free(struct raft_msg *m)
{
	for (size_t i = 0; i < m->n_entries; i++)
		entry_free(&m->entries[i]);
	free(m->entries);
	if (m->snap) {
		free(m->snap->data);
		free(m->snap);
	}
	m->entries = NULL;
	m->n_entries = 0;
	m->snap = NULL;
}

/* Queues a message; past max_msgs it is dropped (as a lossy network would). */
static struct raft_msg *msg_new(struct raft *r, uint8_t type, uint32_t to)
{
	if (r->n_msgs == r->cap_msgs) {
		if (r->cap_msgs >= r->o.max_msgs) {
			r->dropped_msgs++;
			return NULL;
		}
		size_t cap = r->cap_msgs ? r->cap_msgs * 2 : 16;
		if (cap > r->o.max_msgs)
			cap = r->o.max_msgs;
		struct raft_msg *p = realloc(r->msgs, cap * sizeof(*p));
		if (p == NULL) {
			r->dropped_msgs++;
			return NULL;
		}
		r->msgs = p;
		r->cap_msgs = cap;
	}
	struct raft_msg *m = &r->msgs[r->n_msgs++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = r->o.id;
	m->to = to;
	m->term = r->term;
	return m;
}

/* ---- roles -------------------------------------------------------------------------- */

static void reset_timers(struct raft *r)
{
	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	uint64_t span = (uint64_t)r->o.election_ticks;
	r->randomized_timeout = r->o.election_ticks + (int)(r->o.rand(r->o.rand_arg) % span);
	r->lost_leader = 0;
}

static void reset_term(struct raft *r, uint64_t term)
{
	if (r->term != term) {
		r->term = term;
		r->vote = 0;
	}
	r->leader = 0;
	r->transferee = 0;
	r->votes_for = r->votes_against = 0;
	r->n_reads = 0; /* reads waiting on this node's leadership cannot be confirmed any more */
	reset_timers(r);
}

static void become_follower(struct raft *r, uint64_t term, uint32_t leader, enum raft_event why)
{
	if (r->role == RAFT_LEADER && why != RAFT_EV_NONE)
		r->last_event = why;
	r->role = RAFT_FOLLOWER;
	reset_term(r, term);
	r->leader = leader;
}

static bool promotable(const struct raft *r)
{
	return raft_conf_is_voter(&r->conf, r->o.id);
}

static void broadcast_append(struct raft *r);

static void become_leader(struct raft *r)
{
	r->role = RAFT_LEADER;
	r->leader = r->o.id;
	r->transferee = 0;
	r->last_event = RAFT_EV_ELECTED;
	reset_timers(r);
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++)
		if (conf_is_member(&r->conf, id))
			progress_reset(r, id);
	r->pr[r->o.id - 1].match = r->stable;
	r->pr[r->o.id - 1].active = true;
	/* An uncommitted configuration change in the log stays pending (section 4.1). */
	r->pending_conf = r->conf_index > r->committed ? r->conf_index : 0;
	/* A no-op of the new term lets earlier entries commit (section 3.6.2) and ReadIndex
	 * start (section 6.4). */
	struct raft_entry noop = {.term = r->term, .index = raft_last_index(r) + 1,
				  .type = RAFT_ENTRY_NOOP};
	log_append(r, &noop);
	broadcast_append(r);
}

static void campaign(struct raft *r, bool pre, bool transfer)
{
	uint64_t msg_term;
	uint32_t lost = r->lost_leader, was_leader = r->leader; /* both reset below */
	if (pre) {
		r->role = RAFT_PRECANDIDATE;
		r->leader = 0;
		r->votes_for = r->votes_against = 0;
		reset_timers(r);
		msg_term = r->term + 1; /* asked about, not taken */
	} else {
		r->role = RAFT_CANDIDATE;
		reset_term(r, r->term + 1);
		r->vote = r->o.id;
		msg_term = r->term;
	}
	r->last_event = transfer ? RAFT_EV_TRANSFER : lost ? RAFT_EV_LEADER_LOST : RAFT_EV_ELECTION_TIMEOUT;
	r->last_event_peer = transfer ? was_leader : lost;
	r->votes_for = BIT(r->o.id);
	if (quorum(r, r->votes_for)) {
		if (pre)
			campaign(r, false, transfer);
		else
			become_leader(r);
		return;
	}
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++) {
		if (id == r->o.id || !raft_conf_is_voter(&r->conf, id))
			continue;
		struct raft_msg *m = msg_new(r, pre ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE, id);
		if (m == NULL)
			continue;
		m->term = msg_term;
		m->index = raft_last_index(r);
		m->log_term = last_term(r);
		m->transfer = transfer;
	}
}

/* ---- replication (leader) ----------------------------------------------------------- */

static bool pr_window_full(const struct raft *r, const struct raft_progress *p)
{
	return p->in_count >= r->o.max_inflight;
}

static bool pr_paused(const struct raft *r, const struct raft_progress *p)
{
	switch (p->state) {
	case PR_PROBE: return p->probe_sent;
	case PR_REPLICATE: return pr_window_full(r, p);
	default: return true;
	}
}

static void pr_free_upto(struct raft_progress *p, uint64_t index)
{
	while (p->in_count > 0 && p->inflight[p->in_start] <= index) {
		p->in_start = (p->in_start + 1) % RAFT_MAX_INFLIGHT;
		p->in_count--;
	}
}

static void pr_become(struct raft_progress *p, uint8_t state)
{
	p->state = state;
	p->probe_sent = false;
	p->in_start = p->in_count = 0;
	p->snap_ticks = 0;
}

static void send_snapshot(struct raft *r, uint32_t to, struct raft_progress *p)
{
	struct raft_msg *m = msg_new(r, RAFT_MSG_SNAPSHOT, to);
	if (m == NULL)
		return;
	m->snap = calloc(1, sizeof(*m->snap));
	if (m->snap == NULL) {
		r->n_msgs--;
		return;
	}
	*m->snap = r->snap;
	m->snap->data = NULL;
	if (r->snap.len) {
		m->snap->data = malloc(r->snap.len);
		if (m->snap->data == NULL) {
			free(m->snap);
			r->n_msgs--;
			return;
		}
		memcpy(m->snap->data, r->snap.data, r->snap.len);
	}
	pr_become(p, PR_SNAPSHOT);
	p->pending_snap = r->snap.index;
}

static void send_append(struct raft *r, uint32_t to)
{
	struct raft_progress *p = &r->pr[to - 1];
	if (pr_paused(r, p))
		return;
	uint64_t prev = p->next - 1;
	if (prev < r->snap.index) {
		send_snapshot(r, to, p);
		return;
	}
	uint64_t last = raft_last_index(r);
	size_t n = 0;
	if (p->next <= last) {
		n = (size_t)(last - p->next + 1);
		if (n > r->o.max_batch)
			n = r->o.max_batch;
	}
	struct raft_msg *m = msg_new(r, RAFT_MSG_APPEND, to);
	if (m == NULL)
		return;
	m->index = prev;
	m->log_term = raft_term_at(r, prev);
	m->commit = r->committed;
	if (n > 0) {
		m->entries = malloc(n * sizeof(*m->entries));
		if (m->entries == NULL) {
			r->n_msgs--;
			return;
		}
		for (size_t i = 0; i < n; i++) {
			if (!entry_copy(&m->entries[i], raft_entry_at(r, p->next + i))) {
				m->n_entries = i;
				raft_msg_free(m);
				r->n_msgs--;
				return;
			}
		}
		m->n_entries = n;
		uint64_t sent_last = p->next + n - 1;
		if (p->state == PR_REPLICATE) {
			p->next = sent_last + 1;
			p->inflight[(p->in_start + p->in_count) % RAFT_MAX_INFLIGHT] = sent_last;
			p->in_count++;
		} else {
			p->probe_sent = true;
		}
	} else if (p->state == PR_PROBE) {
		p->probe_sent = true;
	}
}

static void broadcast_append(struct raft *r)
{
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++)
		if (id != r->o.id && conf_is_member(&r->conf, id))
			send_append(r, id);
}

static void send_heartbeat(struct raft *r, uint32_t to, uint64_t ctx)
{
	struct raft_msg *m = msg_new(r, RAFT_MSG_HEARTBEAT, to);
	if (m == NULL)
		return;
	/* never tell a follower to commit past what it is known to hold */
	uint64_t match = r->pr[to - 1].match;
	m->commit = match < r->committed ? match : r->committed;
	m->ctx = ctx;
}

static void broadcast_heartbeat(struct raft *r, uint64_t ctx)
{
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++)
		if (id != r->o.id && conf_is_member(&r->conf, id))
			send_heartbeat(r, id, ctx);
}

static int cmp_u64_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

static void release_reads(struct raft *r);
static int propose_entry(struct raft *r, uint8_t type, const void *data, uint32_t len,
			 uint64_t *index);

/* Commit by counting replicas, for entries of the current term only (section 3.6.2). */
static bool maybe_commit(struct raft *r)
{
	uint64_t match[RAFT_MAX_NODES];
	int n = 0;
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++)
		if (raft_conf_is_voter(&r->conf, id))
			match[n++] = id == r->o.id ? r->stable : r->pr[id - 1].match;
	if (n == 0)
		return false;
	qsort(match, (size_t)n, sizeof(match[0]), cmp_u64_desc);
	uint64_t idx = match[n / 2]; /* the largest index a majority holds */
	if (idx <= r->committed || raft_term_at(r, idx) != r->term)
		return false;
	commit_to(r, idx);
	if (r->pending_conf && r->pending_conf <= r->committed) {
		r->pending_conf = 0;
		if (!raft_conf_is_voter(&r->conf, r->o.id)) {
			/* our own removal is committed: hand over by stepping down (section 4.2.2) */
			become_follower(r, r->term, 0, RAFT_EV_STEPDOWN_REMOVED);
			return true;
		}
	}
	release_reads(r);
	return true;
}

static void maybe_promote(struct raft *r)
{
	if (!r->o.auto_promote || r->pending_conf || r->committed == 0)
		return;
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++) {
		if (!raft_conf_is_learner(&r->conf, id))
			continue;
		if (r->pr[id - 1].match >= r->committed) {
			uint8_t data[4] = {(uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8),
					   (uint8_t)id};
			propose_entry(r, RAFT_ENTRY_PROMOTE, data, 4, NULL);
			return; /* one change at a time */
		}
	}
}

/* ---- ReadIndex (section 6.4) -------------------------------------------------------- */

static void read_ready(struct raft *r, uint64_t ctx, uint64_t index)
{
	if (r->n_ready_reads < RAFT_MAX_READS)
		r->ready_reads[r->n_ready_reads++] = (struct raft_read_state){ctx, index};
}

/* A read is confirmed once a majority answered a heartbeat sent after it was asked, and
 * the leader has committed an entry of its own term. */
static void release_reads(struct raft *r)
{
	if (r->role != RAFT_LEADER || raft_term_at(r, r->committed) != r->term)
		return;
	size_t keep = 0;
	for (size_t i = 0; i < r->n_reads; i++) {
		struct raft_pending_read *p = &r->reads[i];
		if (quorum(r, p->acks | BIT(r->o.id))) {
			read_ready(r, p->ctx, p->index > r->committed ? p->index : r->committed);
		} else {
			r->reads[keep++] = *p;
		}
	}
	r->n_reads = keep;
}

int raft_read_index(struct raft *r, uint64_t ctx)
{
	if (r->role != RAFT_LEADER)
		return CORAL_ENOTLEADER;
	if (r->n_reads >= RAFT_MAX_READS)
		return CORAL_EBUSY;
	struct raft_pending_read *p = &r->reads[r->n_reads++];
	p->ctx = ctx;
	p->index = r->committed;
	p->round = ++r->read_round;
	p->acks = 0;
	if (raft_conf_voters(&r->conf) == 1) {
		release_reads(r);
		return 0;
	}
	broadcast_heartbeat(r, p->round);
	return 0;
}

static void read_ack(struct raft *r, uint32_t from, uint64_t round)
{
	if (round == 0)
		return;
	for (size_t i = 0; i < r->n_reads; i++)
		if (r->reads[i].round <= round)
			r->reads[i].acks |= BIT(from);
	release_reads(r);
}

/* ---- step --------------------------------------------------------------------------- */

static bool log_up_to_date(const struct raft *r, uint64_t index, uint64_t term)
{
	uint64_t lt = last_term(r);
	return term > lt || (term == lt && index >= raft_last_index(r));
}

static void handle_vote_request(struct raft *r, const struct raft_msg *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	bool can_vote = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
			(pre && m->term > r->term);
	struct raft_msg *resp = msg_new(r, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
	if (resp == NULL)
		return;
	if (can_vote && log_up_to_date(r, m->index, m->log_term)) {
		/* a granted pre-vote answers in the term asked about, so the candidate counts it */
		resp->term = m->term;
		if (!pre) {
			r->vote = m->from;
			r->election_elapsed = 0;
		}
	} else {
		resp->reject = true;
	}
}

static void handle_append(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg *resp;
	if (m->index < r->committed) {
		resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
		if (resp)
			resp->index = r->committed;
		return;
	}
	uint64_t t = raft_term_at(r, m->index);
	if (m->index > raft_last_index(r) || (m->index > r->snap.index && t != m->log_term) ||
	    (m->index == r->snap.index && m->log_term != r->snap.term)) {
		resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
		if (resp) {
			resp->reject = true;
			resp->index = m->index;
			resp->hint = raft_last_index(r) < m->index ? raft_last_index(r) : m->index - 1;
		}
		return;
	}
	uint64_t last_new = m->index + m->n_entries;
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct raft_entry *e = &m->entries[i];
		if (e->index <= r->snap.index)
			continue;
		uint64_t have = raft_term_at(r, e->index);
		if (have == e->term && e->index <= raft_last_index(r))
			continue;
		if (e->index <= raft_last_index(r)) {
			if (e->index <= r->committed)
				return; /* would rewrite a committed entry: a broken leader, refuse */
			log_truncate(r, e->index);
		}
		if (log_append(r, e) != 0)
			return;
	}
	commit_to(r, m->commit < last_new ? m->commit : last_new);
	resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
	if (resp)
		resp->index = last_new;
}

static void handle_snapshot(struct raft *r, const struct raft_msg *m)
{
	const struct raft_snapshot *s = m->snap;
	struct raft_msg *resp;
	if (s == NULL)
		return;
	if (s->index <= r->committed) {
		resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
		if (resp)
			resp->index = r->committed;
		return;
	}
	uint8_t *data = NULL;
	if (s->len) {
		data = malloc(s->len);
		if (data == NULL)
			return;
		memcpy(data, s->data, s->len);
	}
	if (raft_term_at(r, s->index) == s->term && s->index <= raft_last_index(r)) {
		/* we hold the entry the snapshot ends at: keep what follows it */
		size_t drop = (size_t)(s->index - r->snap.index);
		for (size_t i = 0; i < drop; i++)
			entry_free(&r->log[i]);
		if (r->n > drop)
			memmove(r->log, r->log + drop, (r->n - drop) * sizeof(*r->log));
		r->n -= drop;
		if (r->stable < s->index)
			r->stable = s->index;
	} else {
		for (size_t i = 0; i < r->n; i++)
			entry_free(&r->log[i]);
		r->n = 0;
		r->uncommitted_bytes = 0;
		r->stable = s->index;
		r->log_reset = true; /* what the host stored beyond the snapshot conflicts */
	}
	free(r->snap.data);
	r->snap = *s;
	r->snap.data = data;
	r->snap_pending = true;
	r->committed = s->index;
	conf_rebuild(r);
	resp = msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
	if (resp)
		resp->index = raft_last_index(r);
}

static void step_leader(struct raft *r, const struct raft_msg *m)
{
	if (m->from < 1 || m->from > RAFT_MAX_NODES || !conf_is_member(&r->conf, m->from))
		return;
	struct raft_progress *p = &r->pr[m->from - 1];
	switch (m->type) {
	case RAFT_MSG_APPEND_RESP:
		p->active = true;
		if (m->reject) {
			/* only a rejection of what we last sent moves next back (stale ones do not) */
			if (p->state == PR_REPLICATE ? m->index > p->match : m->index == p->next - 1) {
				uint64_t next = m->hint + 1 < m->index ? m->hint + 1 : m->index;
				p->next = next > p->match + 1 ? next : p->match + 1;
				if (p->next < 1)
					p->next = 1;
				pr_become(p, PR_PROBE);
				send_append(r, m->from);
			}
			return;
		}
		if (m->index > p->match) {
			p->match = m->index;
			if (p->next < m->index + 1)
				p->next = m->index + 1;
			if (p->state == PR_PROBE) {
				pr_become(p, PR_REPLICATE);
			} else if (p->state == PR_SNAPSHOT && p->match >= p->pending_snap) {
				pr_become(p, PR_PROBE);
				p->next = p->match + 1;
			}
			pr_free_upto(p, m->index);
			if (maybe_commit(r) && r->role == RAFT_LEADER)
				broadcast_append(r);
			else if (r->role == RAFT_LEADER)
				send_append(r, m->from);
			if (r->role == RAFT_LEADER && m->from == r->transferee &&
			    p->match == raft_last_index(r))
				msg_new(r, RAFT_MSG_TIMEOUT_NOW, m->from);
			if (r->role == RAFT_LEADER)
				maybe_promote(r);
		} else if (p->state == PR_PROBE) {
			p->probe_sent = false;
			send_append(r, m->from);
		}
		return;
	case RAFT_MSG_HEARTBEAT_RESP:
		p->active = true;
		p->probe_sent = false;
		if (p->state == PR_REPLICATE && pr_window_full(r, p))
			pr_free_upto(p, p->inflight[p->in_start]); /* a lost append must not stall us */
		if (p->match < raft_last_index(r))
			send_append(r, m->from);
		read_ack(r, m->from, m->ctx);
		return;
	default:
		return;
	}
}

static void step_candidate(struct raft *r, const struct raft_msg *m)
{
	bool pre = r->role == RAFT_PRECANDIDATE;
	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
		/* a leader of our term exists (term is equal here: higher was handled) */
		become_follower(r, m->term, m->from, RAFT_EV_NONE);
		if (m->type == RAFT_MSG_APPEND)
			handle_append(r, m);
		else if (m->type == RAFT_MSG_SNAPSHOT)
			handle_snapshot(r, m);
		else {
			commit_to(r, m->commit);
			struct raft_msg *resp = msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
			if (resp)
				resp->ctx = m->ctx;
		}
		return;
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP:
		if ((m->type == RAFT_MSG_PREVOTE_RESP) != pre)
			return;
		if (m->from < 1 || m->from > RAFT_MAX_NODES)
			return;
		if (m->reject)
			r->votes_against |= BIT(m->from);
		else
			r->votes_for |= BIT(m->from);
		if (quorum(r, r->votes_for)) {
			if (pre)
				campaign(r, false, false);
			else
				become_leader(r);
		} else if (quorum(r, r->votes_against)) {
			become_follower(r, r->term, 0, RAFT_EV_NONE);
		}
		return;
	default:
		return;
	}
}

static void step_follower(struct raft *r, const struct raft_msg *m)
{
	struct raft_msg *resp;
	switch (m->type) {
	case RAFT_MSG_APPEND:
		r->election_elapsed = 0;
		r->leader = m->from;
		handle_append(r, m);
		return;
	case RAFT_MSG_HEARTBEAT:
		r->election_elapsed = 0;
		r->leader = m->from;
		commit_to(r, m->commit);
		resp = msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
		if (resp)
			resp->ctx = m->ctx;
		return;
	case RAFT_MSG_SNAPSHOT:
		r->election_elapsed = 0;
		r->leader = m->from;
		handle_snapshot(r, m);
		return;
	case RAFT_MSG_TIMEOUT_NOW:
		if (promotable(r))
			campaign(r, false, true); /* a transfer skips pre-vote: the leader asked */
		return;
	default:
		return;
	}
}

void raft_step(struct raft *r, const struct raft_msg *m)
{
	if (m->to != r->o.id || m->type >= RAFT_MSG_NTYPES)
		return;
	bool is_vote = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
	if (m->term > r->term) {
		if (is_vote && !m->transfer && r->o.check_quorum && r->leader != 0 &&
		    r->election_elapsed < r->o.election_ticks) {
			/* leader lease (section 4.2.3): we heard from a leader recently, so this
			 * candidate cannot win; ignore it without adopting its term */
			return;
		}
		if (m->type == RAFT_MSG_PREVOTE) {
			/* a pre-vote does not change our term */
		} else if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject) {
			/* the answer to our pre-vote in the term we asked about */
		} else {
			bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
					   m->type == RAFT_MSG_SNAPSHOT;
			become_follower(r, m->term, from_leader ? m->from : 0, RAFT_EV_STEPDOWN_TERM);
		}
	} else if (m->term < r->term) {
		if ((r->o.check_quorum || r->o.pre_vote) &&
		    (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)) {
			/* tell a stale leader about the new term so it steps down */
			msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
		} else if (m->type == RAFT_MSG_PREVOTE) {
			struct raft_msg *resp = msg_new(r, RAFT_MSG_PREVOTE_RESP, m->from);
			if (resp)
				resp->reject = true;
		}
		return;
	}
	if (is_vote) {
		handle_vote_request(r, m);
		return;
	}
	switch (r->role) {
	case RAFT_LEADER: step_leader(r, m); break;
	case RAFT_CANDIDATE:
	case RAFT_PRECANDIDATE: step_candidate(r, m); break;
	case RAFT_FOLLOWER: step_follower(r, m); break;
	}
}

/* ---- tick --------------------------------------------------------------------------- */

static void tick_leader(struct raft *r)
{
	r->heartbeat_elapsed++;
	r->election_elapsed++;
	if (r->transferee && ++r->transfer_elapsed >= r->o.election_ticks)
		r->transferee = 0; /* the transfer did not happen in time: abort it */
	if (r->election_elapsed >= r->o.election_ticks) {
		r->election_elapsed = 0;
		if (r->o.check_quorum) {
			uint64_t active = BIT(r->o.id);
			for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++)
				if (id != r->o.id && r->pr[id - 1].active)
					active |= BIT(id);
			if (!quorum(r, active)) {
				become_follower(r, r->term, 0, RAFT_EV_STEPDOWN_QUORUM);
				return;
			}
			for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++)
				if (id != r->o.id)
					r->pr[id - 1].active = false;
		}
	}
	for (uint32_t id = 1; id <= RAFT_MAX_NODES; id++) {
		struct raft_progress *p = &r->pr[id - 1];
		if (id != r->o.id && p->state == PR_SNAPSHOT && ++p->snap_ticks >= r->o.election_ticks) {
			/* no answer to the snapshot: probe again, which resends it if needed */
			pr_become(p, PR_PROBE);
			p->next = p->match + 1;
		}
	}
	if (r->heartbeat_elapsed >= r->o.heartbeat_ticks) {
		r->heartbeat_elapsed = 0;
		broadcast_heartbeat(r, r->read_round);
	}
}

void raft_tick(struct raft *r)
{
	if (r->role == RAFT_LEADER) {
		tick_leader(r);
		return;
	}
	r->election_elapsed++;
	if (promotable(r) && r->election_elapsed >= r->randomized_timeout)
		campaign(r, r->o.pre_vote, false);
}

void raft_leader_lost(struct raft *r, uint32_t peer)
{
	if (!r->o.pre_vote || r->role != RAFT_FOLLOWER || peer == 0 || r->leader != peer ||
	    !promotable(r))
		return;
	/* past the lease, so that we grant the other followers' (pre-)votes too; the wait is
	 * random so that two followers who both saw the link close rarely split the vote */
	if (r->election_elapsed < r->o.election_ticks)
		r->election_elapsed = r->o.election_ticks;
	r->randomized_timeout =
		r->election_elapsed + 1 + (int)(r->o.rand(r->o.rand_arg) % (uint64_t)r->o.election_ticks);
	r->lost_leader = peer;
}

/* ---- proposals ---------------------------------------------------------------------- */

static int propose_entry(struct raft *r, uint8_t type, const void *data, uint32_t len,
			 uint64_t *index)
{
	if (r->role != RAFT_LEADER)
		return CORAL_ENOTLEADER;
	if (r->transferee)
		return CORAL_EBUSY;
	if (r->uncommitted_bytes + len > r->o.max_uncommitted && r->uncommitted_bytes > 0)
		return CORAL_EBUSY;
	if (is_conf_entry(type)) {
		if (r->pending_conf)
			return CORAL_EBUSY;
		/* a configuration change waits for an entry of this term to commit, so a new
		 * leader never stacks one on an unknown predecessor's (the one-server bug) */
		if (raft_term_at(r, r->committed) != r->term)
			return CORAL_EBUSY;
	}
	struct raft_entry e = {.term = r->term, .index = raft_last_index(r) + 1, .type = type,
			       .len = len, .data = (uint8_t *)data};
	int rc = log_append(r, &e);
	if (rc != 0)
		return rc;
	if (is_conf_entry(type))
		r->pending_conf = e.index;
	if (index)
		*index = e.index;
	broadcast_append(r); /* a lone voter commits on advance, once the entry is durable */
	return 0;
}

int raft_propose(struct raft *r, const void *data, uint32_t len, uint64_t *index)
{
	return propose_entry(r, RAFT_ENTRY_NORMAL, data, len, index);
}

int raft_propose_conf(struct raft *r, enum raft_entry_type type, uint32_t node, uint64_t *index)
{
	if (!is_conf_entry(type) || node < 1 || node > RAFT_MAX_NODES)
		return CORAL_EINVAL;
	if (type == RAFT_ENTRY_ADD_LEARNER &&
	    ((r->conf.removed & BIT(node)) || conf_is_member(&r->conf, node)))
		return CORAL_EINVAL; /* ids are never reused */
	if (type == RAFT_ENTRY_PROMOTE && !raft_conf_is_learner(&r->conf, node))
		return CORAL_EINVAL;
	if (type == RAFT_ENTRY_REMOVE && !conf_is_member(&r->conf, node))
		return CORAL_EINVAL;
	uint8_t data[4] = {(uint8_t)(node >> 24), (uint8_t)(node >> 16), (uint8_t)(node >> 8),
			   (uint8_t)node};
	return propose_entry(r, (uint8_t)type, data, 4, index);
}

int raft_transfer_leader(struct raft *r, uint32_t to)
{
	if (r->role != RAFT_LEADER)
		return CORAL_ENOTLEADER;
	if (to == r->o.id)
		return 0;
	if (!raft_conf_is_voter(&r->conf, to))
		return CORAL_EINVAL;
	r->transferee = to;
	r->transfer_elapsed = 0;
	if (r->pr[to - 1].match == raft_last_index(r))
		msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
	else
		send_append(r, to);
	return 0;
}

/* ---- ready / advance ---------------------------------------------------------------- */

static uint64_t apply_limit(const struct raft *r)
{
	/* apply only what is committed and will be durable here once this batch is */
	uint64_t last = raft_last_index(r);
	return r->committed < last ? r->committed : last;
}

bool raft_has_ready(const struct raft *r)
{
	return r->n_msgs > 0 || r->snap_pending || raft_last_index(r) > r->stable ||
	       apply_limit(r) > r->applied || r->n_ready_reads > 0 || r->term != r->last_hs.term ||
	       r->vote != r->last_hs.vote || r->committed != r->last_hs.commit;
}

void raft_ready(struct raft *r, struct raft_ready *rd)
{
	memset(rd, 0, sizeof(*rd));
	struct raft_hard_state hs = {r->term, r->vote, r->committed};
	if (hs.term != r->last_hs.term || hs.vote != r->last_hs.vote || hs.commit != r->last_hs.commit) {
		rd->hs_changed = true;
		rd->hs = hs;
	}
	if (r->snap_pending) {
		rd->snapshot = &r->snap;
		rd->log_reset = r->log_reset;
	}
	uint64_t first = r->stable + 1 > r->snap.index + 1 ? r->stable + 1 : r->snap.index + 1;
	if (first <= raft_last_index(r)) {
		rd->entries = raft_entry_at(r, first);
		rd->n_entries = (size_t)(raft_last_index(r) - first + 1);
	}
	rd->msgs = r->msgs;
	rd->n_msgs = r->n_msgs;
	uint64_t from = r->applied + 1 > r->snap.index + 1 ? r->applied + 1 : r->snap.index + 1;
	uint64_t to = apply_limit(r);
	if (rd->snapshot && r->applied < r->snap.index)
		from = r->snap.index + 1; /* the snapshot brings the state up to its index */
	if (from <= to) {
		rd->committed = raft_entry_at(r, from);
		rd->n_committed = (size_t)(to - from + 1);
	}
	rd->reads = r->ready_reads;
	rd->n_reads = r->n_ready_reads;
}

void raft_advance(struct raft *r, const struct raft_ready *rd)
{
	if (rd->hs_changed)
		r->last_hs = rd->hs;
	if (rd->snapshot) {
		r->snap_pending = false;
		r->log_reset = false;
		if (r->applied < r->snap.index)
			r->applied = r->snap.index;
		if (r->stable < r->snap.index)
			r->stable = r->snap.index;
	}
	if (rd->n_entries)
		r->stable = rd->entries[rd->n_entries - 1].index;
	if (rd->n_committed)
		r->applied = rd->committed[rd->n_committed - 1].index;
	for (size_t i = 0; i < rd->n_msgs; i++)
		raft_msg_free(&r->msgs[i]);
	/* messages queued during this batch (none: the host may not step in between) stay */
	if (r->n_msgs > rd->n_msgs)
		memmove(r->msgs, r->msgs + rd->n_msgs, (r->n_msgs - rd->n_msgs) * sizeof(*r->msgs));
	r->n_msgs -= rd->n_msgs;
	r->n_ready_reads = 0;
	if (r->role == RAFT_LEADER) {
		r->pr[r->o.id - 1].match = r->stable;
		if (maybe_commit(r) && r->role == RAFT_LEADER)
			broadcast_append(r);
	}
}

/* ---- snapshots ---------------------------------------------------------------------- */

int raft_compact(struct raft *r, uint64_t index, const void *data, size_t len)
{
	if (index <= r->snap.index)
		return 0;
	if (index > r->applied)
		return CORAL_EINVAL;
	uint8_t *copy = NULL;
	if (len) {
		copy = malloc(len);
		if (copy == NULL)
			return CORAL_ENOMEM;
		memcpy(copy, data, len);
	}
	/* the configuration as of index: replay conf entries up to it */
	struct raft_conf conf = r->snap.conf;
	size_t drop = (size_t)(index - r->snap.index);
	for (size_t i = 0; i < drop; i++)
		if (is_conf_entry(r->log[i].type))
			conf_apply(&conf, &r->log[i]);
	uint64_t term = raft_term_at(r, index);
	for (size_t i = 0; i < drop; i++)
		entry_free(&r->log[i]);
	if (r->n > drop)
		memmove(r->log, r->log + drop, (r->n - drop) * sizeof(*r->log));
	r->n -= drop;
	free(r->snap.data);
	r->snap = (struct raft_snapshot){.index = index, .term = term, .conf = conf, .data = copy,
					 .len = len};
	return 0;
}

/* ---- life --------------------------------------------------------------------------- */

int raft_init(struct raft *r, const struct raft_opts *o, const struct raft_boot *b)
{
	memset(r, 0, sizeof(*r));
	if (o->id < 1 || o->id > RAFT_MAX_NODES || o->election_ticks < 2 || o->heartbeat_ticks < 1 ||
	    o->heartbeat_ticks >= o->election_ticks || o->rand == NULL || o->max_batch == 0 ||
	    o->max_inflight == 0 || o->max_inflight > RAFT_MAX_INFLIGHT || o->max_msgs == 0)
		return CORAL_EINVAL;
	r->o = *o;
	r->snap = b->snap;
	r->snap.data = NULL;
	if (b->snap.len) {
		r->snap.data = malloc(b->snap.len);
		if (r->snap.data == NULL)
			return CORAL_ENOMEM;
		memcpy(r->snap.data, b->snap.data, b->snap.len);
	}
	r->conf = r->snap.conf;
	r->committed = r->snap.index;
	for (size_t i = 0; i < b->n_entries; i++) {
		if (b->entries[i].index != r->snap.index + 1 + i) {
			raft_free(r);
			return CORAL_EINVAL; /* a hole in what storage gave us */
		}
		int rc = log_append(r, &b->entries[i]);
		if (rc != 0) {
			raft_free(r);
			return rc;
		}
	}
	r->stable = raft_last_index(r);
	r->term = b->hs.term;
	r->vote = b->hs.vote;
	if (b->hs.commit > r->committed)
		commit_to(r, b->hs.commit);
	r->uncommitted_bytes = 0;
	for (uint64_t i = r->committed + 1; i <= raft_last_index(r); i++)
		r->uncommitted_bytes += raft_entry_at(r, i)->len;
	r->applied = r->snap.index;
	r->last_hs = (struct raft_hard_state){r->term, r->vote, r->committed};
	r->role = RAFT_FOLLOWER;
	reset_timers(r);
	return 0;
}

void raft_free(struct raft *r)
{
	for (size_t i = 0; i < r->n; i++)
		entry_free(&r->log[i]);
	free(r->log);
	for (size_t i = 0; i < r->n_msgs; i++)
		raft_msg_free(&r->msgs[i]);
	free(r->msgs);
	free(r->snap.data);
	memset(r, 0, sizeof(*r));
}

const char *raft_role_name(enum raft_role role)
{
	static const char *const names[] = {"follower", "pre-candidate", "candidate", "leader"};
	return role <= RAFT_LEADER ? names[role] : "?";
}

const char *raft_msg_name(int type)
{
	static const char *const names[RAFT_MSG_NTYPES] = {
		"append", "append-resp", "vote", "vote-resp", "prevote", "prevote-resp",
		"snapshot", "heartbeat", "heartbeat-resp", "timeout-now",
	};
	return type >= 0 && type < RAFT_MSG_NTYPES ? names[type] : "?";
}

/* raftd: consensus and membership. One event loop drives the Raft core (raft.c) with
 * ticks, messages from the interconnect and proposals; what the core hands back is made
 * durable by a separate I/O thread (group commit: while one fdatasync runs, everything that
 * arrives is batched into the next) before its messages are sent and its committed entries
 * applied to the registry. Beats between peers feed a phi-accrual detector per peer and
 * renew leases; the leader evicts a node suspected past the grace period once its lease has
 * surely run out; a node without a lease, or evicted, marks itself fenced in the SGA. */
#include "raftd.h"
#include "ctl.h"
#include "grd.h"
#include "grd.pb-c.h"
#include "errors.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

static uint64_t now_ns(void) { return coral_now_mono_ns(); }

static uint64_t rnd(void *arg)
{
	return coral_splitmix64(&((struct raftd *)arg)->rng);
}

bool raftd_is_leader(const struct raftd *r)
{
	return r->raft.role == RAFT_LEADER;
}

const char *raftd_role_of(const struct raftd *r, uint32_t id)
{
	if (raft_conf_is_voter(&r->raft.conf, id))
		return "voter";
	if (raft_conf_is_learner(&r->raft.conf, id))
		return "learner";
	return "none";
}

/* ---- history ------------------------------------------------------------------------ */

void raftd_history(struct raftd *r, const char *kind, uint32_t node, const char *fmt, ...)
{
	size_t cap = (size_t)r->rc->history_size;
	struct history_event *e;
	if (r->hist_n == cap) {
		e = &r->hist[r->hist_start];
		r->hist_start = (r->hist_start + 1) % cap;
		r->hist_dropped++;
	} else {
		e = &r->hist[(r->hist_start + r->hist_n) % cap];
		r->hist_n++;
	}
	memset(e, 0, sizeof(*e));
	e->at_ns = coral_now_real_ns();
	e->term = r->raft.term;
	e->epoch = r->reg.epoch;
	e->node = node;
	coral_strlcpy(e->kind, kind, sizeof(e->kind));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
	va_end(ap);
	log_notice("%s node %u: %s (term %llu, epoch %llu)", kind, node, e->reason,
		   (unsigned long long)e->term, (unsigned long long)e->epoch);
}

static void send_beat(struct raftd *r, uint32_t to, bool ack, uint64_t sent_ns);

/* Records what the core did since we last looked. */
static void note_events(struct raftd *r)
{
	struct raft *c = &r->raft;
	if (r->last_role == RAFT_LEADER && c->role != RAFT_LEADER) {
		/* a deposed leader keeps the lease its majority gave it, as a follower */
		uint64_t until = r->leader_lease_cache;
		uint64_t lease = (uint64_t)r->rc->lease_ms * 1000000ull;
		if (until > lease && until - lease > r->lease_from_ns)
			r->lease_from_ns = until - lease;
	}
	if (c->last_event != RAFT_EV_NONE) {
		switch (c->last_event) {
		case RAFT_EV_ELECTED:
			r->leader_since_ns = now_ns();
			/* nobody answered us as leader yet: leases run from now */
			for (uint32_t i = 1; i <= CORAL_MAX_NODES; i++) {
				r->peers[i].last_answered_ns = now_ns();
				r->peers[i].acked_sent_ns = 0;
			}
			raftd_history(r, "elected", r->self, "won the election of term %llu",
				      (unsigned long long)c->term);
			break;
		case RAFT_EV_STEPDOWN_TERM:
			raftd_history(r, "stepdown", r->self, "saw a higher term (%llu)",
				      (unsigned long long)c->term);
			break;
		case RAFT_EV_STEPDOWN_QUORUM:
			raftd_history(r, "stepdown", r->self,
				      "check-quorum: no majority heard within an election timeout");
			break;
		case RAFT_EV_STEPDOWN_REMOVED:
			raftd_history(r, "stepdown", r->self, "removed from the configuration");
			break;
		case RAFT_EV_ELECTION_TIMEOUT:
			if (r->last_role != RAFT_PRECANDIDATE) /* the vote after a pre-vote is one election */
				raftd_history(r, "election", r->self,
					      "election timeout: no leader heard (last leader node %u)",
					      r->last_leader);
			break;
		case RAFT_EV_LEADER_LOST:
			raftd_history(r, "election", r->self,
				      "the connection to leader node %u closed (its process ended?)",
				      c->last_event_peer);
			break;
		case RAFT_EV_TRANSFER:
			raftd_history(r, "election", r->self, "leadership transfer from node %u",
				      c->last_event_peer);
			break;
		default:
			break;
		}
		c->last_event = RAFT_EV_NONE;
	}
	if (c->leader != r->last_leader) {
		if (c->leader && c->leader != r->self)
			raftd_history(r, "leader", c->leader, "node %u is leader of term %llu", c->leader,
				      (unsigned long long)c->term);
		r->last_leader = c->leader;
		pending_leader_changed(r, c->leader);
		/* The lease granted by the last leader runs its course: a new leader waits a lease
		 * before it evicts anyone, so it stays sound; only the current leader renews it. */
		if (c->leader && c->leader != r->self)
			send_beat(r, c->leader, false, now_ns()); /* ask at once, not a beat later */
	}
	r->last_role = c->role;
}

/* ---- incarnation -------------------------------------------------------------------- */

/* Every start, and every rejoin after an eviction, is a new incarnation: the counter in
 * data_dir/incarnation goes up by one and is synced before the node says it. */
static int bump_incarnation(struct raftd *r)
{
	char path[CORAL_STR_MAX + 64], buf[32] = "";
	snprintf(path, sizeof(path), "%s/incarnation", r->data_dir);
	uint64_t inc = 0;
	FILE *f = fopen(path, "r");
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			inc = strtoull(buf, NULL, 10);
		fclose(f);
	}
	if (inc < r->incarnation)
		inc = r->incarnation;
	inc++;
	snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)inc);
	char err[CORAL_STR_MAX + 128];
	int rc = coral_write_file_atomic(r->data_dir, "incarnation", buf, strlen(buf), 0640, err, sizeof(err));
	if (rc != 0) {
		log_error("cannot keep the incarnation: %s", err);
		return rc;
	}
	r->incarnation = inc;
	r->last_bump_ns = now_ns();
	return 0;
}

/* ---- the SGA view and fencing --------------------------------------------------------- */

static uint64_t leader_lease_until(struct raftd *r)
{
	/* the quorum-th latest send time among voters' answers (ours: now) */
	uint64_t t[CORAL_MAX_NODES];
	int n = 0;
	for (uint32_t id = 1; id <= RAFT_MAX_NODES && id <= CORAL_MAX_NODES; id++) {
		if (!raft_conf_is_voter(&r->raft.conf, id))
			continue;
		t[n++] = id == r->self ? now_ns() : r->peers[id].acked_sent_ns;
	}
	if (n == 0)
		return 0;
	for (int i = 1; i < n; i++)   /* descending */
		for (int j = i; j > 0 && t[j] > t[j - 1]; j--) {
			uint64_t x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	uint64_t q = t[n / 2];
	return q ? q + (uint64_t)r->rc->lease_ms * 1000000ull : 0;
}

static uint64_t lease_until(struct raftd *r)
{
	uint64_t follower = r->lease_from_ns ? r->lease_from_ns + (uint64_t)r->rc->lease_ms * 1000000ull : 0;
	if (r->raft.role != RAFT_LEADER)
		return follower;
	/* a new leader keeps the lease the last leader's majority gave it until its own
	 * majority's answers carry it further: nobody evicts it before that lease has run out
	 * (a new leader waits lease_ms before it evicts anyone), and without this a leader
	 * elected after its predecessor died was fenced until the first answers came back */
	uint64_t own = leader_lease_until(r);
	return r->leader_lease_cache = own > follower ? own : follower;
}

static void publish(struct raftd *r)
{
	struct coral_cluster_view v;
	memset(&v, 0, sizeof(v));
	v.epoch = r->reg.epoch;
	v.term = r->raft.term;
	v.leader = r->raft.leader;
	v.commit = r->raft.committed;
	v.applied = r->raft.applied;
	v.incarnation = r->incarnation;
	v.evicted_inc = r->evicted_inc;
	uint64_t now = now_ns(), until = lease_until(r);
	v.lease_until_ns = until;
	const struct reg_member *me = &r->reg.members[r->self];
	bool fenced = true, joining = false;
	char why[128];
	if (me->state == CORAL_MEMBER_EVICTED && me->incarnation == r->incarnation)
		snprintf(why, sizeof(why), "evicted (incarnation %llu): rejoining",
			 (unsigned long long)r->incarnation);
	else if ((joining = me->state != CORAL_MEMBER_ACTIVE || me->incarnation != r->incarnation))
		snprintf(why, sizeof(why), "not a member under incarnation %llu yet (joining)",
			 (unsigned long long)r->incarnation);
	else if (r->leave_inc != 0 && r->leave_inc == r->incarnation)
		snprintf(why, sizeof(why), "leaving the cluster: %s", r->leave_reason);
	else if (until <= now)
		snprintf(why, sizeof(why), "lease expired: no quorum reached for %lld ms",
			 (long long)r->rc->lease_ms);
	else
		fenced = false;
	if (fenced != r->fenced || (fenced && strcmp(why, r->fence_reason) != 0)) {
		if (fenced && joining) /* every start: nothing to worry about */
			log_notice("fenced: %s", why);
		else if (fenced)
			log_warn("fenced: %s", why);
		else
			log_notice("unfenced: member under incarnation %llu, lease held",
				   (unsigned long long)r->incarnation);
		if (fenced && !r->fenced)
			raftd_history(r, "fenced", r->self, "%s", why);
		else if (!fenced && r->fenced)
			raftd_history(r, "unfenced", r->self, "member under incarnation %llu, lease held",
				      (unsigned long long)r->incarnation);
	}
	r->fenced = fenced;
	coral_strlcpy(r->fence_reason, fenced ? why : "", sizeof(r->fence_reason));
	v.fenced = fenced;
	v.joining = fenced && joining;
	coral_strlcpy(v.fence_reason, r->fence_reason, sizeof(v.fence_reason));
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
		const struct reg_member *m = &r->reg.members[id];
		if (m->state == CORAL_MEMBER_NONE)
			continue;
		v.members[v.nmembers++] = (struct coral_member_view){id, m->state, m->incarnation, m->instance};
	}
	if (r->sga)
		coral_cluster_publish(r->sga, &v);
	if (!fenced && r->ev_lease) {
		uint64_t left = until - now + 1000000ull; /* 1 ms past, so the check sees it over */
		struct timeval tv = {(time_t)(left / 1000000000ull), (suseconds_t)(left % 1000000000ull / 1000)};
		event_add(r->ev_lease, &tv);
	}
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	publish(arg);
}

/* ---- peers -------------------------------------------------------------------------- */

static void add_peer_addr(struct raftd *r, uint32_t id, const char *addr)
{
	char host[128];
	coral_strlcpy(host, addr, sizeof(host));
	char *colon = strrchr(host, ':');
	if (colon == NULL)
		return;
	*colon = '\0';
	int port = atoi(colon + 1);
	if (id != r->self && port > 0)
		coral_net_add_peer(r->net, id, host, port);
}

static void node_addr(const struct coral_node_conf *n, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "%s:%lld", n->host, (long long)(n->base_port + CORAL_PORT_RAFTD));
}

/* ---- the I/O thread ----------------------------------------------------------------- */

static void *io_main(void *arg)
{
	struct raftd *r = arg;
	pthread_mutex_lock(&r->io_mu);
	for (;;) {
		while (!r->io_has_job && !r->io_stop)
			pthread_cond_wait(&r->io_cv, &r->io_mu);
		if (r->io_stop)
			break;
		pthread_mutex_unlock(&r->io_mu);
		struct io_job *j = &r->job;
		uint64_t t0 = now_ns();
		int rc = 0;
		if (j->snap)
			rc = raft_store_save_snapshot(r->store, j->snap, j->log_reset);
		if (rc == 0 && (j->n || j->hs))
			rc = raft_store_append(r->store, j->entries, j->n, j->hs ? &j->hsv : NULL);
		if (rc == 0 && j->sync)
			rc = raft_store_sync(r->store);
		j->rc = rc;
		j->ns = now_ns() - t0;
		pthread_mutex_lock(&r->io_mu);
		r->io_has_job = false;
		uint64_t one = 1;
		if (write(r->io_efd, &one, sizeof(one)) != sizeof(one))
			log_error("cannot wake the event loop: %s", strerror(errno));
	}
	pthread_mutex_unlock(&r->io_mu);
	return NULL;
}

static void submit_io(struct raftd *r)
{
	pthread_mutex_lock(&r->io_mu);
	r->io_has_job = true;
	r->io_busy = true;
	pthread_cond_signal(&r->io_cv);
	pthread_mutex_unlock(&r->io_mu);
}

/* ---- the core loop ------------------------------------------------------------------ */

static void pump(struct raftd *r);
static void run_queued(struct raftd *r);

static void send_msgs(struct raftd *r, const struct raft_msg *msgs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t *buf;
		size_t len;
		if (raft_msg_encode(&msgs[i], &buf, &len) != 0)
			continue;
		int rc = coral_net_send(r->net, msgs[i].to, MSG_RAFT, buf, len);
		if (rc != 0 && rc != CORAL_ENOTCONN)
			log_debug("%s to node %u not sent: %s", raft_msg_name(msgs[i].type), msgs[i].to,
				  coral_strerror(rc));
		free(buf);
	}
}

static void apply_conf_entry(struct raftd *r, const struct raft_entry *e)
{
	if (e->len < 4 || e->type == RAFT_ENTRY_BOOTSTRAP)
		return;
	uint32_t node = (uint32_t)e->data[0] << 24 | (uint32_t)e->data[1] << 16 |
			(uint32_t)e->data[2] << 8 | e->data[3];
	if (e->type == RAFT_ENTRY_ADD_LEARNER) {
		const struct coral_node_conf *nc = coral_conf_node_by_id(r->conf, node);
		char addr[300];
		if (r->reg.members[node].address[0])
			add_peer_addr(r, node, r->reg.members[node].address);
		else if (nc) {
			node_addr(nc, addr, sizeof(addr));
			add_peer_addr(r, node, addr);
		}
	}
}

/* smond's claim of a lost node's thread, and its end, in the history: recovery/<node> holds
 * "inc=<lost incarnation> claimer=<node> claimer_inc=<its incarnation> state=<claimed|done>" */
static void history_recovery(struct raftd *r, const struct reg_result *res)
{
	unsigned node;
	int end = 0;
	if (res->key == NULL || sscanf(res->key, "recovery/%u%n", &node, &end) != 1 || res->key[end] != '\0' ||
	    node < 1 || node > CORAL_MAX_NODES)
		return;
	char val[160];
	size_t n = res->vlen < sizeof(val) - 1 ? res->vlen : sizeof(val) - 1;
	memcpy(val, res->value, n);
	val[n] = '\0';
	unsigned long long inc, claimer_inc;
	unsigned claimer;
	char state[16];
	if (sscanf(val, "inc=%llu claimer=%u claimer_inc=%llu state=%15s", &inc, &claimer, &claimer_inc, state) != 4)
		return;
	if (strcmp(state, "done") == 0)
		raftd_history(r, "recovered", node, "incarnation %llu recovered: its thread closed by node %u", inc, claimer);
	else
		raftd_history(r, "recovery", node, "incarnation %llu: its recovery claimed by node %u (incarnation %llu)",
			      inc, claimer, claimer_inc);
}

static bool grd_ring_has(struct raftd *r, uint32_t node);

static void apply_committed(struct raftd *r, const struct raft_entry *es, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct raft_entry *e = &es[i];
		if (e->type != RAFT_ENTRY_NORMAL) {
			registry_skip(&r->reg, e->index);
			if (e->type == RAFT_ENTRY_ADD_LEARNER || e->type == RAFT_ENTRY_REMOVE)
				apply_conf_entry(r, e);
		} else {
			struct reg_result res;
			registry_apply(&r->reg, e->index, e->data, e->len, &res);
			if (res.code == 0 && res.op == REG_PUT)
				history_recovery(r, &res);
			if (res.code == 0 && res.members_changed) {
				const struct reg_member *m = &r->reg.members[res.node];
				switch (res.op) {
				case REG_EVICT:
					raftd_history(r, "eviction", res.node, "%s", m->reason);
					if (res.node == r->self && m->incarnation > r->evicted_inc) {
						/* this node's cache of that incarnation is void: the
						 * others recover it (lmsd drops it, libcoral refuses) */
						r->evicted_inc = m->incarnation;
						publish(r);
					}
					/* evicted before it came on grdd's ring: nothing to recover
					 * (rejoin_allowed); only as the eviction is applied, when the
					 * map is the one it was evicted under */
					if (res.node == r->self && !grd_ring_has(r, r->self))
						r->evicted_off_ring = m->incarnation;
					coral_net_fence_peer(r->net, res.node, m->incarnation + 1);
					r->peers[res.node].evict_sent_ns = 0;
					break;
				case REG_JOIN:
					raftd_history(r, "join", res.node, "incarnation %llu is an active member",
						      (unsigned long long)m->incarnation);
					coral_net_fence_peer(r->net, res.node, m->incarnation);
					phi_reset(&r->peers[res.node].phi);
					r->peers[res.node].suspect_since_ns = 0;
					if (res.node == r->self)
						r->join_pending = false;
					break;
				case REG_MEMBER_ADD:
					raftd_history(r, "add", res.node, "added at %s", m->address);
					add_peer_addr(r, res.node, m->address);
					break;
				case REG_MEMBER_REMOVE:
					raftd_history(r, "remove", res.node, "%s", m->reason);
					break;
				}
			} else if (res.code != 0 && res.op != REG_PUT && res.op != REG_DEL) {
				log_info("registry refused %s of node %u at index %llu: %s",
					 registry_op_name(res.op), res.node, (unsigned long long)e->index,
					 res.error);
			}
			/* the leader's pending write at this index learns its fate */
			for (size_t k = 0; k < r->pend_hi; k++) {
				struct pending *p = &r->pend[k];
				if (p->state != PS_COMMIT || p->index != e->index)
					continue;
				if (p->term != e->term) {
					pending_answer(r, p, CORAL_ERETRY,
						       "leadership changed before the write committed; it may not have been applied: retry");
				} else {
					p->code = res.code;
					coral_strlcpy(p->error, res.error, sizeof(p->error));
					pending_answer(r, p, res.code, res.code ? res.error : NULL);
				}
			}
		}
	}
}

static void maybe_compact(struct raftd *r)
{
	if (r->io_busy || r->raft.applied < r->raft.snap.index + (uint64_t)r->rc->snapshot_entries)
		return;
	uint8_t *buf;
	size_t len;
	if (registry_snapshot(&r->reg, &buf, &len) != 0)
		return;
	int rc = raft_compact(&r->raft, r->raft.applied, buf, len);
	free(buf);
	if (rc != 0) {
		log_warn("compaction at %llu failed: %s", (unsigned long long)r->raft.applied,
			 coral_strerror(rc));
		return;
	}
	/* the snapshot file is written by the I/O thread; the loop goes on meanwhile */
	memset(&r->job, 0, sizeof(r->job));
	memset(&r->rd, 0, sizeof(r->rd));
	r->job.snap = &r->raft.snap;
	r->job.sync = false;
	log_info("compacting: snapshot at index %llu (%zu bytes)",
		 (unsigned long long)r->raft.snap.index, r->raft.snap.len);
	submit_io(r);
}

/* The second half of a ready batch, once its writes are durable. */
static void finish_ready(struct raftd *r)
{
	struct raft_ready *rd = &r->rd;
	send_msgs(r, rd->msgs, rd->n_msgs);
	if (rd->snapshot && rd->snapshot->index > r->reg.applied) {
		if (registry_restore(&r->reg, rd->snapshot->data, rd->snapshot->len) != 0)
			coral_fatal("cannot restore the registry from the snapshot at index %llu",
				    (unsigned long long)rd->snapshot->index);
		log_notice("installed a snapshot at index %llu from the leader",
			   (unsigned long long)rd->snapshot->index);
		for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++)
			if (r->reg.members[id].address[0])
				add_peer_addr(r, id, r->reg.members[id].address);
	}
	apply_committed(r, rd->committed, rd->n_committed);
	for (size_t i = 0; i < rd->n_reads; i++) {
		struct pending *p = pending_find(r, rd->reads[i].ctx);
		if (p && p->state == PS_READINDEX) {
			p->index = rd->reads[i].index;
			if (p->origin == OR_FWD) {
				pending_answer(r, p, 0, NULL); /* the follower waits for its own apply */
			} else {
				p->state = PS_APPLY;
			}
		}
	}
	raft_advance(&r->raft, rd);
	memset(rd, 0, sizeof(*rd));
	pending_check_applied(r);
	pending_watch_notify(r);
}

static void drain_inbox(struct raftd *r)
{
	if (r->leader_link_lost) {
		raft_leader_lost(&r->raft, r->leader_link_lost);
		r->leader_link_lost = 0;
	}
	while (r->missed_ticks > 0) {
		raft_tick(&r->raft);
		r->missed_ticks--;
	}
	while (r->in_count > 0) {
		struct raft_msg *m = &r->inbox[r->in_head];
		raft_step(&r->raft, m);
		raft_msg_free(m);
		r->in_head = (r->in_head + 1) % INBOX_MAX;
		r->in_count--;
	}
}

static void pump(struct raftd *r)
{
	while (!r->io_busy) {
		run_queued(r);
		drain_inbox(r);
		note_events(r);
		if (!raft_has_ready(&r->raft)) {
			maybe_compact(r);
			break;
		}
		raft_ready(&r->raft, &r->rd);
		struct raft_ready *rd = &r->rd;
		bool must_sync = rd->n_entries > 0 || rd->snapshot ||
				 (rd->hs_changed && (rd->hs.term != r->raft.last_hs.term ||
						     rd->hs.vote != r->raft.last_hs.vote));
		if (must_sync) {
			memset(&r->job, 0, sizeof(r->job));
			r->job.entries = rd->entries;
			r->job.n = rd->n_entries;
			r->job.hs = rd->hs_changed;
			r->job.hsv = rd->hs;
			r->job.snap = rd->snapshot;
			r->job.log_reset = rd->log_reset;
			r->job.sync = true;
			submit_io(r);
			return; /* finish_ready runs when the I/O thread is done */
		}
		if (rd->hs_changed) {
			/* only the commit index moved: written, not synced (a commit index is
			 * re-learned from the leader; etcd does the same) */
			int rc = raft_store_append(r->store, NULL, 0, &rd->hs);
			if (rc != 0)
				coral_fatal("cannot write the hard state: %s", raft_store_error(r->store));
		}
		finish_ready(r);
	}
	publish(r);
}

static void on_io_done(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct raftd *r = arg;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	if (r->job.rc != 0)
		coral_fatal("storage failed: %s (%s); stopping rather than run on a log that may "
			    "not be durable", coral_strerror(r->job.rc), raft_store_error(r->store));
	r->io_busy = false;
	if (r->job.sync) {
		r->syncs++;
		r->entries_synced += r->job.n;
		r->sync_ns_total += r->job.ns;
	}
	bool was_ready = r->job.sync;
	memset(&r->job, 0, sizeof(r->job));
	if (was_ready)
		finish_ready(r);
	pump(r);
}

/* Gives the core a message now, or after the write in progress. */
static void step_or_queue(struct raftd *r, struct raft_msg *m)
{
	if (r->in_count == INBOX_MAX) {
		r->inbox_dropped++;
		raft_msg_free(m);
		return; /* Raft retransmits; a bound keeps a flood from growing memory */
	}
	r->inbox[(r->in_head + r->in_count) % INBOX_MAX] = *m;
	r->in_count++;
	pump(r);
}

/* ---- requests: from the control socket, HTTP and forwards ------------------------------- */

/* Proposes on the leader; the core must not be holding a write (callers check io_busy). */
static int propose_now(struct raftd *r, struct pending *p, const uint8_t *data, size_t len)
{
	uint64_t index;
	int rc = raft_propose(&r->raft, data, (uint32_t)len, &index);
	if (rc != 0) {
		if (rc == CORAL_EBUSY) {
			r->refused_busy++;
			snprintf(p->error, sizeof(p->error),
				 "too many uncommitted entries (max_uncommitted): retry later");
		} else if (rc == CORAL_ENOTLEADER) {
			snprintf(p->error, sizeof(p->error), "not the leader");
		}
		return rc;
	}
	r->proposals++;
	p->index = index;
	p->term = r->raft.term;
	p->state = PS_COMMIT;
	return 0;
}

static int read_now(struct raftd *r, struct pending *p)
{
	p->state = PS_READINDEX;
	int rc = raft_read_index(&r->raft, p->id);
	if (rc != 0)
		snprintf(p->error, sizeof(p->error), "%s", coral_strerror(rc));
	return rc;
}

/* While the I/O thread holds the core, requests wait in the pending table (bounded) and
 * go to the core together once it is free: that is what batches proposals into one sync. */
static void run_queued(struct raftd *r)
{
	if (r->n_queued == 0)
		return;
	for (size_t k = 0; k < r->pend_hi && r->n_queued; k++) {
		struct pending *p = &r->pend[k];
		if (p->state != PS_QUEUED)
			continue;
		r->n_queued--;
		int rc;
		if (!raftd_is_leader(r))
			rc = p->cmd ? forward_send(r, p, CORAL__RAFT_FORWARD_KIND__FORWARD_WRITE, p->cmd, p->cmd_len)
				    : forward_send(r, p, CORAL__RAFT_FORWARD_KIND__FORWARD_READ, NULL, 0);
		else if (p->cmd)
			rc = propose_now(r, p, p->cmd, p->cmd_len);
		else
			rc = read_now(r, p);
		free(p->cmd);
		p->cmd = NULL;
		if (rc != 0)
			pending_answer(r, p, rc, p->error[0] ? p->error : coral_strerror(rc));
	}
}

int raftd_submit_write(struct raftd *r, struct pending *p, const Coral__RegCmd *cmd)
{
	uint8_t *buf;
	size_t len;
	int rc = registry_cmd_pack(cmd, &buf, &len);
	if (rc != 0)
		return rc;
	if (raftd_is_leader(r) && r->io_busy) {
		p->cmd = buf;
		p->cmd_len = len;
		p->state = PS_QUEUED;
		r->n_queued++;
		return 0;
	}
	rc = raftd_is_leader(r) ? propose_now(r, p, buf, len)
				 : forward_send(r, p, CORAL__RAFT_FORWARD_KIND__FORWARD_WRITE, buf, len);
	free(buf);
	if (rc == 0)
		pump(r);
	return rc;
}

int raftd_submit_read(struct raftd *r, struct pending *p)
{
	if (p->stale) {
		p->index = 0;
		p->state = PS_APPLY;
		pending_check_applied(r);
		return 0;
	}
	if (!raftd_is_leader(r))
		return forward_send(r, p, CORAL__RAFT_FORWARD_KIND__FORWARD_READ, NULL, 0);
	if (r->io_busy) {
		p->state = PS_QUEUED;
		r->n_queued++;
		return 0;
	}
	int rc = read_now(r, p);
	if (rc == 0)
		pump(r);
	return rc;
}

int raftd_transfer(struct raftd *r, uint32_t to, char *why, size_t whysz)
{
	if (!raftd_is_leader(r)) {
		snprintf(why, whysz, "node %u is not the leader; ask node %u", r->self, r->raft.leader);
		return CORAL_ENOTLEADER;
	}
	if (to == r->self) {
		snprintf(why, whysz, "node %u is already the leader", to);
		return CORAL_EINVAL;
	}
	if (!raft_conf_is_voter(&r->raft.conf, to)) {
		snprintf(why, whysz, "node %u is not a voter", to);
		return CORAL_EINVAL;
	}
	if (r->io_busy) {
		snprintf(why, whysz, "log write in progress: retry");
		return CORAL_EBUSY;
	}
	int rc = raft_transfer_leader(&r->raft, to);
	if (rc != 0) {
		snprintf(why, whysz, "transfer refused: %s", coral_strerror(rc));
		return rc;
	}
	raftd_history(r, "transfer", to, "operator asked node %u to hand leadership to node %u",
		      r->self, to);
	pump(r);
	return 0;
}

int raftd_conf_change(struct raftd *r, enum raft_entry_type type, uint32_t node, char *why,
		      size_t whysz)
{
	if (!raftd_is_leader(r)) {
		snprintf(why, whysz, "not the leader (node %u is)", r->raft.leader);
		return CORAL_ENOTLEADER;
	}
	if (r->io_busy) {
		snprintf(why, whysz, "log write in progress: retry");
		return CORAL_EBUSY;
	}
	uint64_t index;
	int rc = raft_propose_conf(&r->raft, type, node, &index);
	if (rc != 0) {
		snprintf(why, whysz, "%s", rc == CORAL_EBUSY
			 ? "another membership change is not committed yet: retry"
			 : coral_strerror(rc));
		return rc;
	}
	pump(r);
	return 0;
}

/* Operator requests that only the leader can carry out: a transfer (to cmd->node), adding a
 * member (cmd: MEMBER_ADD), removing one. On a follower they are forwarded. */
int raftd_admin(struct raftd *r, struct pending *p, Coral__RaftForwardKind kind, const Coral__RegCmd *cmd)
{
	if (!raftd_is_leader(r)) {
		uint8_t *buf;
		size_t len;
		int rc = registry_cmd_pack(cmd, &buf, &len);
		if (rc == 0) {
			rc = forward_send(r, p, kind, buf, len);
			free(buf);
		}
		return rc;
	}
	uint32_t node = cmd->node;
	if (node == 0 || node > CORAL_MAX_NODES) {
		snprintf(p->error, sizeof(p->error), "node id %u is out of range 1-%d", node, CORAL_MAX_NODES);
		return CORAL_EINVAL;
	}
	if (kind == CORAL__RAFT_FORWARD_KIND__FORWARD_TRANSFER) {
		int rc = raftd_transfer(r, node, p->error, sizeof(p->error));
		if (rc == 0)
			pending_answer(r, p, 0, NULL);
		return rc == 0 ? 0 : rc;
	}
	const struct reg_member *m = &r->reg.members[node];
	bool in_raft = raft_conf_is_voter(&r->raft.conf, node) || raft_conf_is_learner(&r->raft.conf, node);
	if (kind == CORAL__RAFT_FORWARD_KIND__FORWARD_ADD_NODE) {
		if (m->state == CORAL_MEMBER_REMOVED || (r->raft.conf.removed & (1ull << (node - 1)))) {
			snprintf(p->error, sizeof(p->error), "node id %u was removed and is never reused", node);
			return CORAL_EINVAL;
		}
		if (in_raft || m->state != CORAL_MEMBER_NONE) {
			snprintf(p->error, sizeof(p->error), "node %u is already a member", node);
			return CORAL_EEXIST;
		}
		if (cmd->address == NULL || strchr(cmd->address, ':') == NULL) {
			snprintf(p->error, sizeof(p->error), "address must be HOST:PORT (the node's base_port)");
			return CORAL_EINVAL;
		}
		int rc = raftd_conf_change(r, RAFT_ENTRY_ADD_LEARNER, node, p->error, sizeof(p->error));
		if (rc != 0)
			return rc;
		add_peer_addr(r, node, cmd->address);
		return raftd_submit_write(r, p, cmd);
	}
	if (kind == CORAL__RAFT_FORWARD_KIND__FORWARD_REMOVE_NODE) {
		if (node == r->self) {
			snprintf(p->error, sizeof(p->error),
				 "node %u is the leader: transfer leadership first (coralctl raft transfer-leader)", node);
			return CORAL_EINVAL;
		}
		if (!in_raft && m->state == CORAL_MEMBER_NONE) {
			snprintf(p->error, sizeof(p->error), "node %u is not a member", node);
			return CORAL_ENOENT;
		}
		if (in_raft) {
			int rc = raftd_conf_change(r, RAFT_ENTRY_REMOVE, node, p->error, sizeof(p->error));
			if (rc != 0)
				return rc;
		}
		return raftd_submit_write(r, p, cmd);
	}
	snprintf(p->error, sizeof(p->error), "unknown request kind %u", kind);
	return CORAL_EINVAL;
}

/* ---- interconnect callbacks ------------------------------------------------------------ */

static void send_beat(struct raftd *r, uint32_t to, bool ack, uint64_t sent_ns)
{
	Coral__RaftBeat b = CORAL__RAFT_BEAT__INIT;
	b.sent_ns = sent_ns;
	b.term = r->raft.term;
	b.ack = ack;
	b.leader = raftd_is_leader(r);
	b.epoch = r->reg.epoch;
	uint8_t buf[64];
	size_t n;
	raftd_msg_pack(&b.base, buf, sizeof(buf), &n);  /* a beat is a few dozen bytes */
	coral_net_send(r->net, to, MSG_BEAT, buf, n);
}

static void on_beat(struct raftd *r, uint32_t from, const Coral__RaftBeat *b)
{
	if (from > CORAL_MAX_NODES)
		return;
	struct peerstate *ps = &r->peers[from];
	uint64_t now = now_ns();
	ps->last_heard_ns = now;
	if (!b->ack) {
		phi_heartbeat(&ps->phi, now);
		send_beat(r, from, true, b->sent_ns);
		/* an evicted incarnation is not answered as leader: the net layer already drops
		 * its messages, so reaching here means it is current */
		if (raftd_is_leader(r))
			ps->last_answered_ns = now;
		return;
	}
	if (b->term != r->raft.term || b->sent_ns > now)
		return;
	if (raftd_is_leader(r)) {
		if (b->sent_ns > ps->acked_sent_ns)
			ps->acked_sent_ns = b->sent_ns;
	} else if (b->leader && from == r->raft.leader) {
		if (b->sent_ns > r->lease_from_ns)
			r->lease_from_ns = b->sent_ns;
	}
}

static void on_raft_msg(struct raftd *r, uint32_t from, const uint8_t *data, size_t len)
{
	struct raft_msg m;
	if (raft_msg_decode(data, len, &m, &r->msgs_refused) != 0)
		return;
	if (m.from != from) {
		log_warn("Raft message from node %u claims to be from node %u: dropped", from, m.from);
		r->msgs_refused++;
		raft_msg_free(&m);
		return;
	}
	step_or_queue(r, &m);
}

static void k_beat(struct raftd *r, uint32_t from, const void *m) { on_beat(r, from, m); }
static void k_forward(struct raftd *r, uint32_t from, const void *m) { forward_recv(r, from, m); }
static void k_forward_resp(struct raftd *r, uint32_t from, const void *m) { (void)from; forward_recv_answer(r, m); }

/* Every node the interconnect let in (its hello checked, its incarnation not evicted) may
 * send each of these; a Raft message must also name its sender truly. */
static const struct raftd_handler {
	uint8_t type;
	void (*fn)(struct raftd *r, uint32_t from, const void *msg);
} raftd_handlers[] = {
	{MSG_BEAT, k_beat},
	{MSG_FORWARD, k_forward},
	{MSG_FORWARD_RESP, k_forward_resp},
};

static void on_net_msg(void *arg, uint32_t from, uint64_t inc, uint8_t type, const uint8_t *data,
		       size_t len)
{
	(void)inc;
	struct raftd *r = arg;
	if (type == MSG_RAFT) {  /* decoded into the core's own form, not a protobuf message */
		on_raft_msg(r, from, data, len);
		return;
	}
	const ProtobufCMessage *m = raftd_msg_decode(type, data, len, &r->msgs_refused);
	if (m == NULL)
		return;
	for (size_t i = 0; i < CORAL_ARRAY_LEN(raftd_handlers); i++)
		if (raftd_handlers[i].type == type)
			raftd_handlers[i].fn(r, from, m);
	raftd_msg_free(m);
}

/* Our connection to the leader closed: most often its process died (the kernel closes its
 * sockets), so the core may start an election at once rather than after a full timeout. */
static void on_net_link(void *arg, uint32_t peer, bool up)
{
	struct raftd *r = arg;
	if (up || peer != r->raft.leader || r->raft.role == RAFT_LEADER)
		return;
	r->leader_link_lost = peer;
	pump(r);
}

static void on_net_refused(void *arg, uint32_t peer, int code, const char *why)
{
	struct raftd *r = arg;
	if (code != CORAL_EEVICTED)
		return;
	/* one bump per eviction: later goodbyes to the old incarnation are echoes */
	if (now_ns() - r->last_bump_ns < 1000000000ull)
		return;
	if (bump_incarnation(r) != 0)
		return;
	raftd_history(r, "fenced", r->self, "node %u says %s; rejoining as incarnation %llu", peer, why,
		      (unsigned long long)r->incarnation);
	coral_net_set_incarnation(r->net, r->incarnation);
	publish(r);
}

/* ---- timers --------------------------------------------------------------------------- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct raftd *r = arg;
	if (r->io_busy)
		r->missed_ticks++;
	else
		raft_tick(&r->raft);
	pending_expire(r);
	pump(r);
}

/* Whether node is on grdd's ring, or lost from it and not recovered yet, in the map record
 * raftd has applied so far (the record unreadable: taken as on it; none: no ring). Asked as
 * the node's eviction is applied, it tells whether the evicted incarnation ever came on the
 * ring: a member's departure from it is always a loss in the map (grdd's commit_leave), which
 * stays in the record until the node's recovery is over. */
static bool grd_ring_has(struct raftd *r, uint32_t node)
{
	const struct reg_kv *kv = registry_get(&r->reg, CORAL_GRD_MAP_KEY);
	if (kv == NULL)
		return false;
	Coral__GrdMapRecord *m = coral__grd_map_record__unpack(NULL, kv->vlen, kv->value);
	if (m == NULL)
		return true;
	bool on = false;
	for (size_t i = 0; i < m->n_members && !on; i++)
		on = m->members[i] == node;
	for (size_t i = 0; i < m->n_lost && !on; i++)
		on = m->lost[i] && m->lost[i]->node == node;
	coral__grd_map_record__free_unpacked(m, NULL);
	return on;
}

/* Whether this node, evicted, may join again: once the others have recovered the evicted
 * incarnation (smond's recovery/<node> says done for it), as until then they read its redo
 * thread, which the new incarnation would write to (and move the checkpoint of). An
 * incarnation evicted before it came on grdd's ring is no loss in the map and nobody
 * recovers it, and there is nothing to: the masters gave it no block (lmsd) and no lock
 * (lmdd) off the ring, so its thread has nothing of it; it joins again at once. Past
 * [recovery] rejoin_wait_ms (no recovery came: no survivor runs) it joins anyway, said as an
 * error, as smond does at a start. */
static bool rejoin_allowed(struct raftd *r, const struct reg_member *me)
{
	if (me->state != CORAL_MEMBER_EVICTED) {
		r->rejoin_wait_ns = 0;
		r->off_ring_said = false;
		return true;
	}
	if (r->evicted_off_ring == me->incarnation) {
		if (!r->off_ring_said) {
			log_notice("evicted incarnation %llu never came on grdd's ring: nothing of it to recover, joining "
				   "again", (unsigned long long)me->incarnation);
			raftd_history(r, "fenced", r->self, "incarnation %llu evicted before it came on grdd's ring: "
				      "nothing to recover", (unsigned long long)me->incarnation);
			r->off_ring_said = true;
		}
		r->rejoin_wait_ns = 0;
		return true;
	}
	r->off_ring_said = false;
	char key[32];
	snprintf(key, sizeof(key), "recovery/%u", r->self);
	const struct reg_kv *kv = registry_get(&r->reg, key);
	if (kv != NULL) {
		char val[160];
		size_t n = kv->vlen < sizeof(val) - 1 ? kv->vlen : sizeof(val) - 1;
		memcpy(val, kv->value, n);
		val[n] = '\0';
		unsigned long long inc = 0;
		if (sscanf(val, "inc=%llu", &inc) == 1 && inc >= me->incarnation && strstr(val, "state=done") != NULL) {
			if (r->rejoin_wait_ns)
				log_notice("incarnation %llu recovered by the others after %llu ms: joining again",
					   (unsigned long long)me->incarnation,
					   (unsigned long long)((now_ns() - r->rejoin_wait_ns) / 1000000ull));
			r->rejoin_wait_ns = 0;
			return true;
		}
	}
	uint64_t now = now_ns();
	if (r->rejoin_wait_ns == 0) {
		r->rejoin_wait_ns = now;
		log_notice("evicted (incarnation %llu): joining again once the others have recovered it (up to %lld ms)",
			   (unsigned long long)me->incarnation, (long long)r->conf->recovery.rejoin_wait_ms);
	}
	if (now - r->rejoin_wait_ns < (uint64_t)r->conf->recovery.rejoin_wait_ms * 1000000ull)
		return false;
	log_error("evicted incarnation %llu not recovered by the others within [recovery] rejoin_wait_ms: joining "
		  "anyway (its committed changes to blocks no survivor held may be missing from the data files "
		  "if it was on grdd's ring; see coralctl recovery history on the others)",
		  (unsigned long long)me->incarnation);
	raftd_history(r, "fenced", r->self, "incarnation %llu not recovered within %lld ms: joining anyway",
		      (unsigned long long)me->incarnation, (long long)r->conf->recovery.rejoin_wait_ms);
	r->rejoin_wait_ns = 0;
	return true;
}

static void join_self(struct raftd *r)
{
	const struct reg_member *me = &r->reg.members[r->self];
	if (me->state == CORAL_MEMBER_ACTIVE && me->incarnation == r->incarnation)
		return;
	if (me->state == CORAL_MEMBER_REMOVED)
		return;
	if (me->state == CORAL_MEMBER_EVICTED && me->incarnation == r->incarnation &&
	    now_ns() - r->last_bump_ns > 1000000000ull) {
		if (bump_incarnation(r) != 0)
			return;
		raftd_history(r, "fenced", r->self, "evicted; rejoining as incarnation %llu",
			      (unsigned long long)r->incarnation);
		coral_net_set_incarnation(r->net, r->incarnation);
	}
	if (r->raft.leader == 0 || (r->join_pending && now_ns() - r->join_sent_ns < 2000000000ull))
		return;
	if (!rejoin_allowed(r, me))
		return;
	if (!raft_conf_is_voter(&r->raft.conf, r->self) && !raft_conf_is_learner(&r->raft.conf, r->self))
		return;
	struct pending *p = pending_new(r, RQ_JOIN, OR_INTERNAL, 3000);
	if (p == NULL)
		return;
	char addr[300];
	node_addr(r->d->node, addr, sizeof(addr));
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = REG_JOIN;
	c.node = r->self;
	c.incarnation = r->incarnation;
	c.instance = r->d->sga.hdr ? r->d->sga.hdr->created_real_ns : 0;
	c.address = addr;
	c.at_ns = coral_now_real_ns();
	c.reason = (char *)"node started or rejoined";
	r->join_pending = true;
	r->join_sent_ns = now_ns();
	int rc = raftd_submit_write(r, p, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

void raftd_leave(struct raftd *r, const char *reason)
{
	if (r->leave_inc == r->incarnation)
		return;  /* asked again: under way */
	r->leave_inc = r->incarnation;
	coral_strlcpy(r->leave_reason, reason && reason[0] ? reason : "asked by a daemon", sizeof(r->leave_reason));
	/* the fence first, then the eviction once every daemon has seen it (as a partitioned
	 * node's own fence comes lease_drift_ms before the majority evicts it): nothing of this
	 * incarnation is written to the shared files after the others begin to recover it */
	r->leave_at_ns = now_ns() + (uint64_t)r->rc->lease_drift_ms * 1000000ull;
	r->leave_sent_ns = 0;
	log_warn("leaving the cluster (incarnation %llu): %s", (unsigned long long)r->incarnation, r->leave_reason);
	publish(r);
}

/* A leave asked for: this node's incarnation evicted, through the leader like any write. */
static void leave_check(struct raftd *r)
{
	const struct reg_member *me = &r->reg.members[r->self];
	/* a leader whose node is out (it left, or was evicted and waits to join again) hands
	 * leadership on: grdd coordinates the map on the leader's node, and a fenced grdd does
	 * nothing, so the others' recovery of this node would never start */
	if (raftd_is_leader(r) && !r->io_busy && r->leave_inc != 0 && me->state == CORAL_MEMBER_EVICTED &&
	    now_ns() - r->leave_xfer_ns > 1000000000ull) {
		uint32_t to = 0;
		for (uint32_t id = 1; id <= CORAL_MAX_NODES && to == 0; id++)
			if (id != r->self && raft_conf_is_voter(&r->raft.conf, id) &&
			    r->reg.members[id].state == CORAL_MEMBER_ACTIVE && r->peers[id].acked_sent_ns != 0)
				to = id;
		r->leave_xfer_ns = now_ns();
		if (to != 0 && raft_transfer_leader(&r->raft, to) == 0) {
			raftd_history(r, "transfer", to, "node %u is out of the cluster (it left): leadership to node %u",
				      r->self, to);
			pump(r);
		}
	}
	if (r->leave_inc == 0 || r->leave_inc != r->incarnation || now_ns() < r->leave_at_ns)
		return;
	if (me->state != CORAL_MEMBER_ACTIVE || me->incarnation != r->leave_inc)
		return;  /* out already: the rejoin is join_self's */
	if (r->leave_sent_ns && now_ns() - r->leave_sent_ns < 2000000000ull)
		return;
	struct pending *p = pending_new(r, RQ_EVICT, OR_INTERNAL, 3000);
	if (p == NULL)
		return;
	char reason[200];
	snprintf(reason, sizeof(reason), "left: %s; incarnation %llu", r->leave_reason,
		 (unsigned long long)r->leave_inc);
	Coral__RegCmd c = CORAL__REG_CMD__INIT;
	c.op = REG_EVICT;
	c.node = r->self;
	c.incarnation = r->leave_inc;
	c.reason = reason;
	c.at_ns = coral_now_real_ns();
	r->leave_sent_ns = now_ns();
	int rc = raftd_submit_write(r, p, &c);
	if (rc != 0)
		pending_answer(r, p, rc, p->error);
}

static void evict_check(struct raftd *r)
{
	if (!raftd_is_leader(r) || r->fenced)
		return;
	uint64_t now = now_ns();
	uint64_t lease = (uint64_t)r->rc->lease_ms * 1000000ull;
	uint64_t drift = (uint64_t)r->rc->lease_drift_ms * 1000000ull;
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
		const struct reg_member *m = &r->reg.members[id];
		if (id == r->self || m->state != CORAL_MEMBER_ACTIVE)
			continue;
		struct peerstate *ps = &r->peers[id];
		double phi = phi_value(&ps->phi, now);
		if (ps->phi.last_ns == 0) {
			/* never heard since we became leader or it joined: silence counts from then */
			if (ps->suspect_since_ns == 0)
				ps->suspect_since_ns = now;
			phi = (double)r->rc->phi_threshold + 1;
		}
		if (phi <= (double)r->rc->phi_threshold) {
			ps->suspect_since_ns = 0;
			continue;
		}
		if (ps->suspect_since_ns == 0)
			ps->suspect_since_ns = now;
		if (now - ps->suspect_since_ns < (uint64_t)r->rc->evict_grace_ms * 1000000ull)
			continue;
		/* fencing first: its lease has surely run out, and we have led long enough */
		if (now - ps->last_answered_ns < lease + drift || now - r->leader_since_ns < lease)
			continue;
		if (ps->evict_sent_ns && now - ps->evict_sent_ns < 2000000000ull)
			continue;
		struct pending *p = pending_new(r, RQ_EVICT, OR_INTERNAL, 3000);
		if (p == NULL)
			return;
		char reason[160];
		snprintf(reason, sizeof(reason),
			 "phi %.1f above %lld for %llu ms (last heard %llu ms ago); incarnation %llu",
			 phi, (long long)r->rc->phi_threshold,
			 (unsigned long long)((now - ps->suspect_since_ns) / 1000000ull),
			 ps->last_heard_ns ? (unsigned long long)((now - ps->last_heard_ns) / 1000000ull) : 0,
			 (unsigned long long)m->incarnation);
		Coral__RegCmd c = CORAL__REG_CMD__INIT;
		c.op = REG_EVICT;
		c.node = id;
		c.incarnation = m->incarnation;
		c.reason = reason;
		c.at_ns = coral_now_real_ns();
		ps->evict_sent_ns = now;
		log_warn("evicting node %u: %s", id, reason);
		int rc = raftd_submit_write(r, p, &c);
		if (rc != 0)
			pending_answer(r, p, rc, p->error);
	}
}

static void on_beat_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct raftd *r = arg;
	uint64_t now = now_ns();
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
		if (id == r->self)
			continue;
		struct coral_net_peer_stats st;
		coral_net_peer_stats(r->net, id, &st);
		if (st.known)
			send_beat(r, id, false, now);
	}
	join_self(r);
	leave_check(r);
	evict_check(r);
	publish(r);
}

/* ---- start and stop --------------------------------------------------------------------- */

static int open_storage(struct raftd *r, uint64_t founders)
{
	char dir[CORAL_STR_MAX + 32], err[CORAL_ERRMSG_MAX];
	snprintf(dir, sizeof(dir), "%s/raft", r->data_dir);
	int rc = raft_store_open(&r->store, dir, (size_t)r->rc->segment_size, err, sizeof(err));
	if (rc != 0) {
		log_error("%s", err);
		return rc;
	}
	if (raft_store_empty(r->store)) {
		if (founders & (1ull << (r->self - 1))) {
			struct raft_entry e;
			uint8_t buf[8];
			raft_bootstrap_entry(&e, buf, founders);
			struct raft_hard_state hs = {1, 0, 1};
			rc = raft_store_append(r->store, &e, 1, &hs);
			if (rc == 0)
				rc = raft_store_sync(r->store);
			if (rc != 0) {
				log_error("cannot write the founding entry: %s", raft_store_error(r->store));
				return rc;
			}
			log_notice("founding the cluster with voters %#llx", (unsigned long long)founders);
			/* reopen: what raft_store_boot() hands out is what was read at open */
			raft_store_close(r->store);
			r->store = NULL;
			rc = raft_store_open(&r->store, dir, (size_t)r->rc->segment_size, err, sizeof(err));
			if (rc != 0) {
				log_error("%s", err);
				return rc;
			}
		} else {
			log_notice("not a founder: waiting to be added (coralctl cluster add-node %u ADDR)",
				   r->self);
		}
	}
	return 0;
}

int raftd_start(struct raftd *r, struct coral_daemon *d)
{
	r->d = d;
	r->conf = &d->conf;
	r->rc = &d->conf.raft;
	r->self = (uint32_t)d->node->id;
	r->io_efd = -1;
	r->rng = coral_now_real_ns() ^ ((uint64_t)getpid() << 20);
	snprintf(r->data_dir, sizeof(r->data_dir), "%s", d->node->data_dir);
	r->sga = coral_cluster_sga(&d->sga);
	if (r->sga == NULL) {
		log_error("the SGA has no cluster section: recreate it (coral-node stop; coral-node start)");
		return CORAL_EINVAL;
	}
	/* a restarted raftd goes on from what its predecessor published (the SGA outlives it) */
	r->evicted_inc = coral_cluster_evicted_inc(r->sga);
	if (coral_mkdir_p(r->data_dir, 0750) != 0) {
		log_error("cannot create data_dir %s: %s", r->data_dir, strerror(errno));
		return CORAL_ESYS;
	}
	uint64_t founders;
	char why[256];
	if (coral_conf_founders(r->conf, &founders, why, sizeof(why)) != 0) {
		log_error("[raft] founders: %s", why);
		return CORAL_ECONFIG;
	}
	int rc = bump_incarnation(r);
	if (rc != 0)
		return rc;
	r->last_bump_ns = 0;
	rc = open_storage(r, founders);
	if (rc != 0)
		return rc;

	registry_init(&r->reg, (size_t)r->rc->kv_max_keys, (size_t)r->rc->kv_max_value);
	struct raft_boot boot;
	raft_store_boot(r->store, &boot);
	if (boot.snap.len && registry_restore(&r->reg, boot.snap.data, boot.snap.len) != 0) {
		log_error("the snapshot at index %llu does not decode", (unsigned long long)boot.snap.index);
		return CORAL_EDECODE;
	}
	int election_ticks = (int)((r->rc->election_timeout_ms + r->rc->tick_ms - 1) / r->rc->tick_ms);
	struct raft_opts o = {
		.id = r->self, .election_ticks = election_ticks, .heartbeat_ticks = 1,
		.pre_vote = true, .check_quorum = true, .auto_promote = true,
		.max_batch = (size_t)r->rc->max_batch, .max_inflight = (size_t)r->rc->max_inflight,
		.max_uncommitted = (size_t)r->rc->max_uncommitted, .max_msgs = 65536,
		.rand = rnd, .rand_arg = r,
	};
	rc = raft_init(&r->raft, &o, &boot);
	if (rc != 0) {
		log_error("cannot start the Raft core from what storage holds: %s", coral_strerror(rc));
		return rc;
	}
	r->hist = calloc((size_t)r->rc->history_size, sizeof(*r->hist));
	r->inbox = calloc(INBOX_MAX, sizeof(*r->inbox));
	if (r->hist == NULL || r->inbox == NULL)
		return CORAL_ENOMEM;
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++)
		if (phi_init(&r->peers[id].phi, (size_t)r->rc->phi_window,
			     (double)r->rc->phi_min_stddev_ms, (double)r->rc->heartbeat_interval_ms) != 0)
			return CORAL_ENOMEM;

	/* the group-commit thread */
	r->io_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->io_efd < 0)
		return CORAL_ESYS;
	pthread_mutex_init(&r->io_mu, NULL);
	pthread_cond_init(&r->io_cv, NULL);
	if (pthread_create(&r->io_thread, NULL, io_main, r) != 0)
		return CORAL_ESYS;
	r->io_thread_up = true;
	r->ev_io = event_new(d->base, r->io_efd, EV_READ | EV_PERSIST, on_io_done, r);
	if (r->ev_io == NULL || event_add(r->ev_io, NULL) != 0)
		return CORAL_ESYS;

	/* the interconnect */
	static struct coral_net_files tls_files;
	struct coral_net_opts no;
	char err[CORAL_ERRMSG_MAX];
	rc = coral_net_opts_from_conf(&no, &tls_files, &d->conf, d->node, "raftd", CORAL_PORT_RAFTD,
				      r->incarnation, r->rng, err, sizeof(err));
	if (rc != 0) {
		log_error("%s", err);
		return rc;
	}
	no.on_msg = on_net_msg;
	no.on_refused = on_net_refused;
	no.on_link = on_net_link;
	no.arg = r;
	r->net = coral_net_new(d->base, &no, err, sizeof(err));
	if (r->net == NULL) {
		log_error("interconnect: %s", err);
		return CORAL_ESYS;
	}
	for (int i = 0; i < r->conf->nnodes; i++) {
		const struct coral_node_conf *n = &r->conf->nodes[i];
		if ((uint32_t)n->id == r->self)
			continue;
		char addr[300];
		node_addr(n, addr, sizeof(addr));
		add_peer_addr(r, (uint32_t)n->id, addr);
	}
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++) {
		const struct reg_member *m = &r->reg.members[id];
		if (m->address[0])
			add_peer_addr(r, id, m->address);
		if (m->state == CORAL_MEMBER_EVICTED)
			coral_net_fence_peer(r->net, id, m->incarnation + 1);
	}

	r->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, r);
	r->ev_beat = event_new(d->base, -1, EV_PERSIST, on_beat_timer, r);
	r->ev_lease = evtimer_new(d->base, on_lease_timer, r);
	struct timeval tt = {r->rc->tick_ms / 1000, (r->rc->tick_ms % 1000) * 1000};
	struct timeval bt = {r->rc->heartbeat_interval_ms / 1000, (r->rc->heartbeat_interval_ms % 1000) * 1000};
	if (r->ev_tick == NULL || r->ev_beat == NULL || r->ev_lease == NULL || event_add(r->ev_tick, &tt) != 0 ||
	    event_add(r->ev_beat, &bt) != 0)
		return CORAL_ENOMEM;
	raftd_history(r, "start", r->self, "incarnation %llu, term %llu, log %llu..%llu, commit %llu",
		      (unsigned long long)r->incarnation, (unsigned long long)r->raft.term,
		      (unsigned long long)r->raft.snap.index + 1,
		      (unsigned long long)raft_last_index(&r->raft),
		      (unsigned long long)r->raft.committed);
	pump(r);
	return 0;
}

/* The I/O thread stops first: nothing is written after this. */
void raftd_stop(struct raftd *r)
{
	if (r->io_thread_up) {
		pthread_mutex_lock(&r->io_mu);
		r->io_stop = true;
		pthread_cond_signal(&r->io_cv);
		pthread_mutex_unlock(&r->io_mu);
		pthread_join(r->io_thread, NULL);
		r->io_thread_up = false;
	}
	if (r->ev_io)
		event_free(r->ev_io);
	if (r->ev_tick)
		event_free(r->ev_tick);
	if (r->ev_beat)
		event_free(r->ev_beat);
	if (r->ev_lease)
		event_free(r->ev_lease);
	coral_net_free(r->net);
	if (r->io_efd >= 0)
		close(r->io_efd);
	while (r->inbox && r->in_count) {
		raft_msg_free(&r->inbox[r->in_head]);
		r->in_head = (r->in_head + 1) % INBOX_MAX;
		r->in_count--;
	}
	raft_free(&r->raft);
	raft_store_close(r->store);
	registry_free(&r->reg);
	for (uint32_t id = 1; id <= CORAL_MAX_NODES; id++)
		phi_free(&r->peers[id].phi);
	free(r->hist);
	free(r->inbox);
	if (r->sga) {
		struct coral_cluster_view v;
		coral_cluster_read(r->sga, &v);
		v.fenced = true;
		coral_strlcpy(v.fence_reason, "raftd stopped", sizeof(v.fence_reason));
		coral_cluster_publish(r->sga, &v);
	}
}

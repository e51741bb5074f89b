/* The grdd model: several nodes' cores (daemons/grdd/core.c, the code grdd runs) on heap
 * copies of the map and directory, an in-memory network that delays, reorders and loses
 * messages, and an in-memory config store with compare-and-swap whose committed records
 * reach each node after its own delay. A seeded schedule of client requests, manual
 * remasters, cancels, joins and node losses runs against it; after every step it checks
 * that no two live nodes would grant the same resource (so no lookup ever finds two masters
 * for one resource at one version) and that what live nodes hold is compatible. */
#include "grd_sim.h"
#include "core.h"
#include "errors.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_MAX_NODES 6
#define SIM_RES 48
#define SIM_QUEUE 200000

enum ev_kind { EV_MSG, EV_APPLY, EV_STORE_DONE };

struct ev {
	uint64_t at, seq;
	int kind;
	uint32_t from, to;
	uint8_t type;
	uint8_t *data;
	size_t len;
	uint64_t cookie, index;
	int code;
};

struct sim_node {
	uint32_t id;
	bool alive, active;          /* alive: running; active: a member */
	struct grd_core *core;
	struct coral_grd_map_sga *map;
	struct coral_grd_dir *dir, *held;
	uint64_t apply_last;         /* deliveries to this node stay in order */
	struct sim *sim;
};

struct sim {
	uint64_t rng, now, seq;
	struct sim_node nodes[SIM_MAX_NODES + 1];
	uint32_t n;
	struct ev *q;
	size_t nq;
	uint8_t *store;
	size_t store_len;
	uint64_t store_index, next_index;
	struct coral_grd_conf conf;
	struct coral_resid res[SIM_RES];
	struct grd_sim_result *out;
	char *err;
	size_t errsz;
	bool failed;
};

/* GRD_SIM_TRACE=1 prints the cores' logs and the schedule's actions, to follow a failing seed. */
static bool trace;

static uint64_t rnd(struct sim *s, uint64_t n)
{
	return n ? coral_splitmix64(&s->rng) % n : 0;
}

static void push(struct sim *s, struct ev e)
{
	if (s->nq == SIM_QUEUE) {
		free(e.data);
		return;
	}
	e.seq = s->seq++;
	s->q[s->nq++] = e;
}

static int op_send(void *arg, uint32_t to, uint8_t type, const uint8_t *buf, size_t len)
{
	struct sim_node *n = arg;
	struct sim *s = n->sim;
	if (to == 0 || to > s->n)
		return CORAL_ENOENT;
	if (to != n->id && !s->nodes[to].alive)
		return CORAL_ENOTCONN;
	if (to != n->id && rnd(s, 1000) < 5) /* 0.5% lost */
		return 0;
	uint8_t *d = malloc(len ? len : 1);
	if (d == NULL)
		return CORAL_ENOMEM;
	if (len)
		memcpy(d, buf, len);
	uint64_t delay = to == n->id ? 0 : 1 + rnd(s, 8);
	push(s, (struct ev){.at = s->now + delay, .kind = EV_MSG, .from = n->id, .to = to, .type = type,
			    .data = d, .len = len});
	return 0;
}

static void deliver_record(struct sim *s)
{
	for (uint32_t i = 1; i <= s->n; i++) {
		struct sim_node *n = &s->nodes[i];
		if (!n->alive)
			continue;
		uint8_t *d = malloc(s->store_len);
		if (d == NULL)
			continue;
		memcpy(d, s->store, s->store_len);
		uint64_t at = s->now + 1 + rnd(s, 15);
		if (at < n->apply_last)
			at = n->apply_last;
		n->apply_last = at;
		push(s, (struct ev){.at = at, .kind = EV_APPLY, .to = i, .data = d, .len = s->store_len,
				    .index = s->store_index});
	}
}

static int op_store(void *arg, const uint8_t *buf, size_t len, uint64_t expect, uint64_t cookie)
{
	struct sim_node *n = arg;
	struct sim *s = n->sim;
	int code = 0;
	uint64_t index = 0;
	if (expect != s->store_index) {
		code = CORAL_ECONFLICT;
	} else {
		uint8_t *v = malloc(len ? len : 1);
		if (v == NULL)
			return CORAL_ENOMEM;
		memcpy(v, buf, len);
		free(s->store);
		s->store = v;
		s->store_len = len;
		s->store_index = index = ++s->next_index;
		s->out->versions++;
		deliver_record(s);
	}
	push(s, (struct ev){.at = s->now + 1 + rnd(s, 4), .kind = EV_STORE_DONE, .to = n->id,
			    .cookie = cookie, .code = code, .index = index});
	return 0;
}

static void op_answer(void *arg, uint64_t cookie, int code, const char *error, const struct grd_answer *a)
{
	(void)cookie;
	(void)error;
	(void)a;
	struct sim_node *n = arg;
	if (trace)
		printf("%6llu node %u: answer %d %s (master %u v%llu)\n", (unsigned long long)n->sim->now, n->id, code,
		       error ? error : "", a ? a->master : 0, a ? (unsigned long long)a->version : 0ull);
	if (code == 0)
		n->sim->out->granted++;
	else if (code == CORAL_ERECOVERY)
		n->sim->out->recovery_refusals++;
	else
		n->sim->out->refused++;
}

static void op_remastered(void *arg, uint64_t cookie, int code, const char *error,
			  const Coral__GrdRemasterReply *r)
{
	(void)cookie;
	(void)error;
	struct sim_node *n = arg;
	if (code == 0 && r && r->map_version)
		n->sim->out->remasters++;
	else if (code == CORAL_ECANCELED)
		n->sim->out->cancelled++;
}


static void op_log(void *arg, int level, const char *msg)
{
	(void)level;
	struct sim_node *n = arg;
	if (trace)
		printf("%6llu node %u: %s\n", (unsigned long long)n->sim->now, n->id, msg);
}

static uint32_t leader_of(struct sim *s)
{
	for (uint32_t i = 1; i <= s->n; i++)
		if (s->nodes[i].alive && s->nodes[i].active)
			return i;
	return 0;
}

static void push_cluster(struct sim *s)
{
	struct grd_member m[SIM_MAX_NODES];
	size_t k = 0;
	for (uint32_t i = 1; i <= s->n; i++) {
		if (!s->nodes[i].active && s->nodes[i].alive)
			continue; /* not yet a member */
		m[k++] = (struct grd_member){.id = i, .incarnation = 1, .instance = 1,
					     .active = s->nodes[i].active && s->nodes[i].alive,
					     .reachable = s->nodes[i].alive};
	}
	uint32_t leader = leader_of(s);
	for (uint32_t i = 1; i <= s->n; i++)
		if (s->nodes[i].alive)
			grd_core_set_cluster(s->nodes[i].core, leader, !s->nodes[i].active, m, k);
}

static int node_start(struct sim *s, uint32_t id, bool active)
{
	struct sim_node *n = &s->nodes[id];
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->sim = s;
	n->alive = true;
	n->active = active;
	struct coral_conf cf;
	memset(&cf, 0, sizeof(cf));
	cf.grd = s->conf;
	size_t msz = coral_grd_map_sga_size(&cf);
	size_t dsz = coral_grd_dir_size((uint32_t)s->conf.directory_entries);
	size_t hsz = coral_grd_dir_size((uint32_t)s->conf.held_entries);
	n->map = calloc(1, msz);
	n->dir = calloc(1, dsz);
	n->held = calloc(1, hsz);
	if (!n->map || !n->dir || !n->held || coral_grd_map_sga_init(n->map, msz, &cf, NULL) != 0 ||
	    coral_grd_dir_init(n->dir, dsz, (uint32_t)s->conf.directory_entries) != 0 ||
	    coral_grd_dir_init(n->held, hsz, (uint32_t)s->conf.held_entries) != 0)
		return CORAL_ENOMEM;
	struct grd_core_ops ops = {op_send, op_store, op_answer, op_remastered, op_log, n};
	n->core = grd_core_new(id, &s->conf, n->map, n->dir, n->held, &ops);
	if (n->core == NULL)
		return CORAL_ENOMEM;
	/* the store is read at start: the current record or none */
	if (s->store)
		grd_core_apply(n->core, s->store, s->store_len, s->store_index);
	else
		grd_core_apply(n->core, NULL, 0, 0);
	return 0;
}

static void node_free(struct sim_node *n)
{
	grd_core_free(n->core);
	free(n->map);
	free(n->dir);
	free(n->held);
	n->core = NULL;
	n->map = NULL;
	n->dir = n->held = NULL;
}

static void fail(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct sim *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	s->failed = true;
	va_list ap;
	va_start(ap, fmt);
	int off = snprintf(s->err, s->errsz, "t=%llu ms: ", (unsigned long long)s->now);
	vsnprintf(s->err + off, s->errsz - (size_t)off, fmt, ap);
	va_end(ap);
}

static int held_mode(struct sim_node *n, const struct coral_resid *r)
{
	uint32_t b = coral_resid_bucket(r);
	coral_grd_dir_lock(n->held, b);
	struct coral_grd_entry *e = coral_grd_dir_find(n->held, r);
	int m = e ? coral_grd_entry_mode(e, n->id) : 0;
	coral_grd_dir_unlock(n->held, b);
	return m;
}

static void check(struct sim *s)
{
	for (int k = 0; k < SIM_RES && !s->failed; k++) {
		const struct coral_resid *r = &s->res[k];
		uint32_t serving = 0, count = 0;
		for (uint32_t i = 1; i <= s->n; i++) {
			struct sim_node *n = &s->nodes[i];
			if (!n->alive || !grd_core_serving(n->core, r))
				continue;
			if (count++ > 0) {
				char rs[64];
				coral_resid_format(r, rs, sizeof(rs));
				fail(s, "%s is served by node %u (version %llu) and node %u (version %llu)", rs,
				     serving, (unsigned long long)grd_core_version(s->nodes[serving].core), i,
				     (unsigned long long)grd_core_version(n->core));
			}
			serving = i;
		}
		bool block = coral_resid_is_block(r);
		for (uint32_t i = 1; i <= s->n; i++) {
			if (!s->nodes[i].alive)
				continue;
			int mi = held_mode(&s->nodes[i], r);
			for (uint32_t j = i + 1; j <= s->n && mi; j++) {
				if (!s->nodes[j].alive)
					continue;
				int mj = held_mode(&s->nodes[j], r);
				if (mj && !coral_grd_compatible(block, mi, mj)) {
					char rs[64];
					coral_resid_format(r, rs, sizeof(rs));
					fail(s, "%s is held by node %u in %s and node %u in %s", rs, i,
					     coral_grd_mode_name(block, mi), j, coral_grd_mode_name(block, mj));
				}
			}
		}
	}
}

static void run_event(struct sim *s, struct ev *e)
{
	struct sim_node *n = &s->nodes[e->to];
	if (e->to == 0 || e->to > s->n || !n->alive) {
		free(e->data);
		return;
	}
	switch (e->kind) {
	case EV_MSG:
		if (e->from != e->to && !s->nodes[e->from].alive)
			break; /* an evicted node's messages are refused by the interconnect */
		grd_core_recv(n->core, e->from, e->type, e->data, e->len);
		s->out->messages++;
		break;
	case EV_APPLY:
		grd_core_apply(n->core, e->data, e->len, e->index);
		if (trace)
			printf("%6llu node %u: at map version %llu\n", (unsigned long long)s->now, n->id,
			       (unsigned long long)grd_core_version(n->core));
		break;
	case EV_STORE_DONE:
		grd_core_store_done(n->core, e->cookie, e->code, e->index);
		break;
	}
	free(e->data);
}

static void random_action(struct sim *s)
{
	uint64_t x = rnd(s, 1000);
	uint32_t live[SIM_MAX_NODES], nl = 0;
	for (uint32_t i = 1; i <= s->n; i++)
		if (s->nodes[i].alive && s->nodes[i].active)
			live[nl++] = i;
	if (nl == 0)
		return;
	uint32_t who = live[rnd(s, nl)];
	struct sim_node *n = &s->nodes[who];
	if (x < 150) {
		const struct coral_resid *r = &s->res[rnd(s, SIM_RES)];
		bool block = coral_resid_is_block(r);
		int op = rnd(s, 3) == 0 ? 2 : 1;
		int mode = block ? 1 + (int)rnd(s, 2) : 1 + (int)rnd(s, 5);
		if (op == 2 || held_mode(n, r) == 0) {
			if (trace) {
				char rs[64];
				coral_resid_format(r, rs, sizeof(rs));
				struct coral_grd_where w;
				coral_grd_lookup(n->map, r, &w);
				printf("%6llu node %u: %s %s %s (master %u at v%llu, lost %u)\n", (unsigned long long)s->now, who,
				       op == 1 ? "acquire" : "release", rs, coral_grd_mode_name(block, mode), w.master,
				       (unsigned long long)w.version, w.lost_owner);
			}
			grd_core_lock(n->core, r, op, mode, 1);
		}
		s->out->requests++;
	} else if (x < 154) {
		Coral__GrdRemasterRequest q = CORAL__GRD_REMASTER_REQUEST__INIT;
		char t[64];
		if (rnd(s, 2))
			snprintf(t, sizeof(t), "%llu", (unsigned long long)rnd(s, CORAL_GRD_BUCKETS));
		else
			coral_resid_format(&s->res[rnd(s, SIM_RES)], t, sizeof(t));
		q.target = t;
		q.node = live[rnd(s, nl)];
		q.dry_run = rnd(s, 5) == 0;
		grd_core_remaster(n->core, &q, 2);
	} else if (x < 155) {
		Coral__GrdRemasterRequest q = CORAL__GRD_REMASTER_REQUEST__INIT;
		q.target = (char *)"";
		q.cancel = true;
		grd_core_remaster(n->core, &q, 3);
	} else if (x < 156 && s->out->joins + s->out->losses < 4) {
		/* a node joins (a new one) or one is lost, keeping at least two members */
		uint32_t idle = 0;
		for (uint32_t i = 1; i <= s->n; i++)
			if (!s->nodes[i].alive && s->nodes[i].core == NULL && !s->nodes[i].active)
				idle = i;
		if (idle && rnd(s, 2)) {
			if (node_start(s, idle, true) == 0)
				s->out->joins++;
		} else if (nl > 2) {
			struct sim_node *v = &s->nodes[live[rnd(s, nl)]];
			v->alive = false;
			v->active = false;
			s->out->losses++;
			if (trace)
				printf("%6llu node %u lost\n", (unsigned long long)s->now, v->id);
		}
		push_cluster(s);
	} else if (x < 157 && s->store) {
		/* an operator marks a lost node recovered */
		for (uint32_t i = 1; i <= s->n; i++)
			if (!s->nodes[i].alive && s->nodes[i].core) {
				Coral__GrdRemasterRequest q = CORAL__GRD_REMASTER_REQUEST__INIT;
				q.target = (char *)"";
				q.recovered = true;
				q.node = i;
				grd_core_remaster(n->core, &q, 4);
				break;
			}
	}
}

int grd_sim_run(uint64_t seed, uint32_t nodes, uint32_t steps, struct grd_sim_result *out,
		char *err, size_t errsz)
{
	memset(out, 0, sizeof(*out));
	trace = getenv("GRD_SIM_TRACE") != NULL;
	if (nodes < 2 || nodes > SIM_MAX_NODES - 1)
		return CORAL_EINVAL;
	struct sim *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CORAL_ENOMEM;
	s->q = calloc(SIM_QUEUE, sizeof(*s->q));
	s->rng = seed;
	s->n = nodes + 1; /* the last one joins later */
	s->out = out;
	s->err = err;
	s->errsz = errsz;
	err[0] = '\0';
	s->conf = (struct coral_grd_conf){
		.directory_entries = 256, .held_entries = 256, .max_overrides = 32, .affinity = 1,
		.affinity_threshold = 8, .affinity_ratio = 2, .affinity_window_ms = 2000,
		.affinity_cooldown_ms = 3000, .remaster_bandwidth = 200000, .freeze_timeout_ms = 400,
		.request_timeout_ms = 1500, .max_pending = 64,
	};
	for (int k = 0; k < SIM_RES; k++)
		s->res[k] = k % 2 ? (struct coral_resid){CORAL_RES_BLOCK, 0, 1, (uint64_t)k}
				  : (struct coral_resid){CORAL_RES_TYPE('T', 'X'), 0, (uint32_t)k, 7};
	int rc = 0;
	for (uint32_t i = 1; i <= nodes && rc == 0; i++)
		rc = node_start(s, i, true);
	if (rc == 0) {
		push_cluster(s);
		for (uint32_t step = 0; step < steps && !s->failed; step++) {
			s->now++;
			/* due events, in time order, ties broken by a random draw (reordering) */
			for (;;) {
				size_t best = SIZE_MAX;
				for (size_t i = 0; i < s->nq; i++)
					if (s->q[i].at <= s->now &&
					    (best == SIZE_MAX || s->q[i].at < s->q[best].at ||
					     (s->q[i].at == s->q[best].at && (s->q[i].seq ^ seed) < (s->q[best].seq ^ seed))))
						best = i;
				if (best == SIZE_MAX)
					break;
				struct ev e = s->q[best];
				s->q[best] = s->q[--s->nq];
				run_event(s, &e);
				check(s);
			}
			if (s->now % 5 == 0) {
				push_cluster(s);
				for (uint32_t i = 1; i <= s->n; i++)
					if (s->nodes[i].alive)
						grd_core_tick(s->nodes[i].core, s->now, s->now);
				check(s);
			}
			random_action(s);
			check(s);
		}
	}
	for (uint32_t i = 1; i <= s->n; i++)
		if (s->nodes[i].core || s->nodes[i].map)
			node_free(&s->nodes[i]);
	for (size_t i = 0; i < s->nq; i++)
		free(s->q[i].data);
	free(s->store);
	free(s->q);
	bool failed = s->failed;
	free(s);
	if (rc != 0)
		return rc;
	return failed ? CORAL_EINVAL : 0;
}

/* rsrcmgrd: the resource manager's wiring. The catalog (consumer groups, mapping rules,
 * plans) and the plan in force live in raftd's store, under keys only rsrcmgrd writes
 * (rsrcmgrd/catalog: its text; rsrcmgrd/active: the plan's name and the cause): set once on
 * any node, every node's rsrcmgrd watches them and puts them in force in its SGA (rsrc_sga.h),
 * where the sessions map themselves and take their places in the active session pools.
 * rsrcmgrd also frees what sessions of dead processes held there, enforces the plan's time
 * limits (ending a session revokes its slot: the node takes back its transaction and releases
 * its blocks and locks, as for a dead process), and answers coralctl rsrc. */
#include "bufcache.h"
#include "cgroup.h"
#include "ges_own.h"
#include "history.h"
#include "ctl.h"
#include "daemon.h"
#include "errors.h"
#include "kv.h"
#include "log.h"
#include "metrics.h"
#include "rsrc.h"
#include "rsrc_sga.h"
#include "util.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CATALOG_KEY "rsrcmgrd/catalog"
#define ACTIVE_KEY "rsrcmgrd/active"
#define PREFIX "rsrcmgrd/"
#define TICK_MS 100
#define SWEEP_MS 1000
#define SWITCHES_MAX 64
#define CATALOG_TEXT_MAX (256 * 1024)

struct rsrc_switch {
	uint64_t at_ms;
	char plan[RSRC_NAME_MAX], previous[RSRC_NAME_MAX];
	char cause[400];
};

struct rsrcmgrd {
	struct coral_daemon *d;
	struct coral_rsrc *sec;
	struct coral_cache *cache;       /* the sessions' slots: revoked when they are ended */
	struct coral_ges_own *own;       /* their locks: which block someone (NULL: none) */
	struct event *ev_tick;
	uint64_t last_sweep_ms, swept;
	/* raftd */
	struct coral_ctl_client *raft;
	bool raft_answered, read_done, list_out, watch_out;
	uint64_t watch_index, raft_retry_ms;
	/* what the store holds, as last read */
	char *catalog_text;              /* NULL: none loaded */
	uint64_t catalog_index;
	char active_plan[RSRC_NAME_MAX];
	char active_cause[200];
	uint64_t active_index;
	char catalog_error[300];
	struct rsrc_def *def;            /* the catalog in force (NULL: none) */
	/* what is in force here */
	char plan[RSRC_NAME_MAX];
	struct rsrc_switch sw[SWITCHES_MAX];
	size_t nsw, swhead;
	struct rsrc_cg *cg;              /* the CPU shares enforced */
	int sched;                       /* the schedule whose window is open (-1: none) */
	/* each group's time limits under the plan in force (by index), and per session slot the
	 * call a directive switched (so that it is switched once) */
	struct limits {
		uint32_t exec_ms, idle_ms;
		int action;
		char switch_to[RSRC_NAME_MAX];
		uint32_t idle_blocker_ms;
	} lim[CORAL_RSRC_GROUPS];
	uint64_t switched_call[CORAL_RSRC_SESSIONS];
	/* per session slot, since when (monotonic ms; 0: not) it blocks someone: by its locks
	 * (the earliest blocking notification of those it holds) and by its blocks (a pinned one
	 * another session waits for, seen by rsrcmgrd at every tick since) */
	uint64_t lock_blocks_ms[CORAL_RSRC_SESSIONS], pin_blocks_ms[CORAL_RSRC_SESSIONS];
	/* the demand recorded for coralctl rsrc plan simulate, and per session slot the call last
	 * seen under way: its number, group and how long it had run */
	struct rsrc_hist *hist;
	struct seen_call {
		uint64_t call, ms;
		uint32_t group;
		int32_t pid;
	} seen[CORAL_RSRC_SESSIONS];
	/* per session slot, its thread's CPU time when last read (once a second) */
	struct seen_cpu {
		int32_t pid, tid;
		uint64_t ns;
	} cpu[CORAL_RSRC_SESSIONS];
	uint64_t cpu_sec;
	uint32_t ncpu;
};

/* CPU time (ns) thread tid of process pid has run, from the kernel's schedstat; 0 if unknown. */
static uint64_t thread_cpu_ns(int32_t pid, int32_t tid)
{
	char path[64], buf[96];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", (int)pid, (int)tid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	unsigned long long ns = 0;
	if (fgets(buf, sizeof(buf), f) == NULL || sscanf(buf, "%llu", &ns) != 1)
		ns = 0;
	fclose(f);
	return ns;
}

/* Once a second: the CPU each session's thread used since the last look, to its group's
 * record (the dry run's CPU). A thread two sessions share is counted for the first. */
static void record_cpu(struct rsrcmgrd *m, uint64_t sec)
{
	if (sec == m->cpu_sec)
		return;
	m->cpu_sec = sec;
	struct coral_rsrc *r = m->sec;
	uint64_t per[CORAL_RSRC_GROUPS] = {0};
	/* threads already counted this second (several sessions of one thread count it once):
	 * an open-addressed set, twice the sessions, so a look is a probe or two */
	enum { SEEN = 2 * CORAL_RSRC_SESSIONS };
	static uint64_t seen[SEEN];
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &r->sess[i];
		struct seen_cpu *c = &m->cpu[i];
		int32_t pid = atomic_load(&s->pid), tid = atomic_load(&s->tid);
		uint32_t g = atomic_load(&s->group);
		if (pid <= 0 || tid <= 0) {
			c->pid = 0;
			continue;
		}
		uint64_t key = (uint64_t)(uint32_t)pid << 32 | (uint32_t)tid;
		uint32_t h = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 40) % SEEN;
		while (seen[h] != 0 && seen[h] != key)
			h = (h + 1) % SEEN;
		bool dup = seen[h] == key;
		seen[h] = key;
		uint64_t ns = dup ? 0 : thread_cpu_ns(pid, tid);
		if (c->pid == pid && c->tid == tid && ns >= c->ns && g && g <= CORAL_RSRC_GROUPS)
			per[g - 1] += ns - c->ns;
		*c = (struct seen_cpu){dup ? 0 : pid, tid, ns};
	}
	for (uint32_t g = 0; g < r->ngroups && g < CORAL_RSRC_GROUPS; g++)
		if (per[g])
			rsrc_hist_cpu(m->hist, sec, g, (uint32_t)(per[g] / 1000000ull));
}

static int scheduled_now(const struct rsrcmgrd *m)
{
	if (m->def == NULL || m->def->nschedules == 0)
		return -1;
	int day, minute;
	coral_rsrc_time_of_week(&day, &minute);
	return rsrc_def_scheduled(m->def, day, minute);
}

static uint64_t now_ms(void)
{
	return coral_now_mono_ns() / 1000000ull;
}

/* ---- putting the catalog and the plan in force --------------------------------------- */

static void record_switch(struct rsrcmgrd *m, const char *plan, const char *cause)
{
	struct rsrc_switch *s = &m->sw[(m->swhead + m->nsw) % SWITCHES_MAX];
	if (m->nsw == SWITCHES_MAX)
		m->swhead = (m->swhead + 1) % SWITCHES_MAX;
	else
		m->nsw++;
	s->at_ms = coral_now_real_ns() / 1000000ull;
	snprintf(s->plan, sizeof(s->plan), "%s", plan);
	snprintf(s->previous, sizeof(s->previous), "%s", m->plan);
	snprintf(s->cause, sizeof(s->cause), "%s", cause);
	log_notice("plan %s in force (was %s): %s", plan[0] ? plan : "(none)", m->plan[0] ? m->plan : "(none)", cause);
	snprintf(m->plan, sizeof(m->plan), "%s", plan);
}

/* The group table: the names kept at their indexes (sessions hold them), groups new to the
 * catalog in free entries, groups gone from it kept while sessions or calls are in them. */
static void put_groups(struct rsrcmgrd *m, const struct rsrc_def *def)
{
	struct coral_rsrc *r = m->sec;
	for (size_t i = 0; def && i < def->ngroups; i++) {
		if (coral_rsrc_group_find(r, def->groups[i]) >= 0)
			continue;
		int at = -1;
		for (uint32_t j = 5; j < CORAL_RSRC_GROUPS && at < 0; j++) {
			struct coral_rsrc_group *G = &r->groups[j];
			bool named = G->name[0] != '\0';
			bool wanted = false;
			for (size_t k = 0; named && k < def->ngroups; k++)
				wanted |= strcmp(def->groups[k], G->name) == 0;
			if (!named || (!wanted && atomic_load(&G->sessions) == 0 && atomic_load(&G->active) == 0 &&
				       atomic_load(&G->queued) == 0))
				at = (int)j;
		}
		if (at < 0) {
			log_error("group %s: the node's table of %d groups is full of groups with sessions in them",
				  def->groups[i], CORAL_RSRC_GROUPS);
			continue;
		}
		struct coral_rsrc_group *G = &r->groups[at];
		memset(G->name, 0, sizeof(G->name));
		snprintf(G->name, sizeof(G->name), "%s", def->groups[i]);
		atomic_store(&G->calls, 0);
		atomic_store(&G->queued_total, 0);
		atomic_store(&G->timeouts, 0);
		atomic_store(&G->queue_wait_ns, 0);
		atomic_store(&G->reaped, 0);
		if ((uint32_t)at >= r->ngroups)
			r->ngroups = (uint32_t)at + 1;
	}
}

/* Puts def (the catalog) and plan (in it, or "") in force in the SGA and maps every session
 * again; the pools' queues are admitted to their new limits. */
static void put_in_force(struct rsrcmgrd *m, const struct rsrc_def *def, const char *plan)
{
	struct coral_rsrc *r = m->sec;
	char gname[RSRC_GROUPS_MAX][RSRC_NAME_MAX];
	double frac[RSRC_GROUPS_MAX];
	int nshare = 0;
	if (def && plan[0]) {
		struct rsrc_catalog c = rsrc_def_catalog(def);
		nshare = rsrc_cpu_shares(&c, plan, gname, frac, RSRC_GROUPS_MAX);
	}
	coral_mutex_lock(&r->wmu, NULL, NULL);
	bool switching = strncmp(r->plan, plan, sizeof(r->plan)) != 0;
	coral_seq_write_begin(&r->seq);
	put_groups(m, def);
	int other = coral_rsrc_group_find(r, RSRC_OTHER);
	for (uint32_t i = 0; i < r->ngroups; i++) {
		struct coral_rsrc_group *G = &r->groups[i];
		const struct rsrc_directive *x = def && plan[0] && G->name[0] ? rsrc_def_directive(def, plan, G->name) : NULL;
		uint32_t governs = x || !plan[0] || other < 0 ? i : (uint32_t)other;
		atomic_store(&G->governs, governs);
		/* a cluster-wide pool is no limit on the node: its slots are lmdd's locks */
		atomic_store(&G->pool, x && !x->pool_cluster ? (uint32_t)x->pool : 0);
		atomic_store(&G->cluster_pool, x && x->pool_cluster ? (uint32_t)x->pool : 0);
		atomic_store(&G->queue_timeout_ms, x ? (uint32_t)x->queue_timeout_ms : 0);
		coral_rsrc_io_limit(r, i, x ? (uint32_t)x->io_iops : 0, x ? (uint32_t)x->io_mbps : 0);
		atomic_store(&G->max_dop, x ? (uint32_t)x->max_dop : 0);
		m->lim[i] = (struct limits){x ? (uint32_t)x->exec_ms : 0, x ? (uint32_t)x->idle_ms : 0,
					    x ? (int)x->exec_action : RSRC_ACT_NONE, "",
					    x ? (uint32_t)x->idle_blocker_ms : 0};
		if (x)
			snprintf(m->lim[i].switch_to, sizeof(m->lim[i].switch_to), "%s", x->switch_to);
		uint32_t ppm = 0;
		for (int k = 0; k < nshare; k++)
			if (strcmp(gname[k], G->name) == 0)
				ppm = (uint32_t)(frac[k] * 1e6 + 0.5);
		atomic_store(&G->share_ppm, ppm);
		if (switching)
			atomic_store(&G->active_max, atomic_load(&G->active));
	}
	size_t nr = def ? def->nrules : 0;
	for (size_t i = 0; i < nr; i++)
		r->rules[i] = def->rules[i];
	r->nrules = (uint32_t)nr;
	if (switching || atomic_load(&r->plan_since_ns) == 0) {
		memset(r->plan, 0, sizeof(r->plan));
		snprintf(r->plan, sizeof(r->plan), "%s", plan);
		atomic_store(&r->plan_since_ns, coral_now_real_ns());
	}
	atomic_store(&r->version, m->catalog_index);
	coral_seq_write_end(&r->seq);
	coral_mutex_unlock(&r->wmu);
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++)
		if (atomic_load(&r->sess[i].pid) != 0)
			coral_rsrc_sess_map(r, i);
	for (uint32_t i = 0; i < r->ngroups; i++)
		coral_rsrc_group_admit(r, i);
	rsrc_cg_plan(m->cg, r, def, plan);
	rsrc_cg_place(m->cg, r, plan[0] != '\0');
}

/* The store's keys as last read: the catalog parsed and checked again (a value in the store
 * is not trusted because rsrcmgrd wrote it: a bad one is refused and the last good one stays),
 * then the plan. */
static void apply_store(struct rsrcmgrd *m, bool catalog_changed)
{
	if (catalog_changed) {
		struct rsrc_def *def = NULL;
		if (m->catalog_text) {
			def = calloc(1, sizeof(*def));
			char err[256], problems[1024];
			if (def == NULL) {
				snprintf(m->catalog_error, sizeof(m->catalog_error), "out of memory");
			} else if (rsrc_def_parse(m->catalog_text, def, err, sizeof(err)) != 0) {
				snprintf(m->catalog_error, sizeof(m->catalog_error), "catalog at index %llu: %s",
					 (unsigned long long)m->catalog_index, err);
			} else if (rsrc_def_check(def, problems, sizeof(problems)) != 0) {
				snprintf(m->catalog_error, sizeof(m->catalog_error), "catalog at index %llu: %s",
					 (unsigned long long)m->catalog_index, problems);
			} else {
				m->catalog_error[0] = '\0';
				free(m->def);
				m->def = def;
				def = NULL;
				log_notice("catalog at index %llu in force: %zu groups, %zu rules, %zu plans",
					   (unsigned long long)m->catalog_index, m->def->ngroups, m->def->nrules,
					   m->def->nplans);
			}
			if (m->catalog_error[0])
				log_error("%s: the catalog before stays in force", m->catalog_error);
			free(def);
		}
	}
	char plan[RSRC_NAME_MAX];
	char cause[600];
	int sc = scheduled_now(m);
	if (sc >= 0) {
		char w[160];
		rsrc_schedule_text(&m->def->schedules[sc], w, sizeof(w));
		snprintf(plan, sizeof(plan), "%s", m->def->schedules[sc].plan);
		snprintf(cause, sizeof(cause), "schedule %d (%s): its window is open; the plan activated (%s) comes "
			 "back when it closes", sc + 1, w, m->active_plan[0] ? m->active_plan : "none");
	} else {
		snprintf(plan, sizeof(plan), "%s", m->active_plan);
		char was[200] = "";
		if (m->sched >= 0)
			snprintf(was, sizeof(was), "the window of the schedule that had %s in force closed; ", m->plan);
		snprintf(cause, sizeof(cause), "%s%s", was,
			 m->active_cause[0] ? m->active_cause : "rsrcmgrd started: raftd's store names no plan");
		if (plan[0] && (m->def == NULL || rsrc_def_plan(m->def, plan) == NULL)) {
			snprintf(cause, sizeof(cause), "plan %s, asked for (%s), is not in the catalog in force", plan,
				 m->active_cause);
			plan[0] = '\0';
		}
	}
	m->sched = sc;
	if (strcmp(plan, m->plan) != 0 || (plan[0] == '\0' && m->plan[0] == '\0' && m->nsw == 0))
		record_switch(m, plan, cause);
	put_in_force(m, m->def, plan);
}

/* Takes one key's value from the store (deleted: value NULL); whether it changed the catalog. */
static bool take_key(struct rsrcmgrd *m, const char *key, const uint8_t *v, size_t len, uint64_t index, bool *active)
{
	if (strcmp(key, CATALOG_KEY) == 0) {
		free(m->catalog_text);
		m->catalog_text = NULL;
		if (v) {
			m->catalog_text = malloc(len + 1);
			if (m->catalog_text) {
				memcpy(m->catalog_text, v, len);
				m->catalog_text[len] = '\0';
			}
		}
		m->catalog_index = index;
		return true;
	}
	if (strcmp(key, ACTIVE_KEY) == 0) {
		char buf[RSRC_NAME_MAX + 260];
		size_t n = v ? (len < sizeof(buf) - 1 ? len : sizeof(buf) - 1) : 0;
		memcpy(buf, v ? (const char *)v : "", n);
		buf[n] = '\0';
		char *nl = strchr(buf, '\n');
		if (nl)
			*nl++ = '\0';
		snprintf(m->active_plan, sizeof(m->active_plan), "%s", buf);
		snprintf(m->active_cause, sizeof(m->active_cause), "%s", nl ? nl : "");
		m->active_index = index;
		*active = true;
	}
	return false;
}

/* ---- execution-time and idle limits ------------------------------------------------------- */

/* A session ended (why: 1 a call past its limit, 2 idle, 3 an operator, 4 an idle blocker): its
 * calls fail, and its slot is revoked: once no call of it is under way, lmsd (or smond, for an
 * open transaction) reclaims what it holds as for a dead process, then lmdd its locks. */
static void end_session(struct rsrcmgrd *m, int i, uint32_t why)
{
	struct coral_rsrc_sess *s = &m->sec->sess[i];
	atomic_store(&s->ended, why);
	if (m->cache)
		coral_cache_sess_revoke(m->cache, i, s->id);
}

/* A session ended by an rsrcmgrd killed between its two stores (ended set, the slot not yet
 * revoked) would keep its locks and pins while its calls fail, and a restarted rsrcmgrd skips
 * ended sessions: finish every such ending as it starts. Revoking twice is harmless (only the
 * first asks), and a slot now of another session (another id) is left alone. */
static int finish_endings(struct rsrcmgrd *m)
{
	int n = 0;
	if (m->cache == NULL)
		return 0;
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &m->sec->sess[i];
		if (atomic_load(&s->pid) <= 0 || atomic_load(&s->ended) == 0)
			continue;
		struct coral_sess_slot *c = coral_cache_sess(m->cache, (uint32_t)i);
		if (atomic_load(&c->revoked) == 0 && coral_cache_sess_revoke(m->cache, i, s->id) == 0)
			n++;
	}
	return n;
}

/* Whether a block the session pins is wanted by another: a session of this node sleeps on it,
 * or another node asked for it (lmsd waits for the pin to go). */
static bool pins_wanted(struct rsrcmgrd *m, int i)
{
	struct coral_cache *c = m->cache;
	struct coral_sess_slot *ss = coral_cache_sess(c, (uint32_t)i);
	for (int k = 0; k < CORAL_CACHE_SLOT_PINS; k++) {
		uint32_t v = atomic_load(&ss->pins[k]);
		uint32_t idx = (v & ~CORAL_PINREC_X) - 1;
		if (v == 0 || idx >= c->nbuf)
			continue;
		struct coral_buf *b = coral_cache_buf(c, idx);
		if (atomic_load(&b->waiters) > 0)
			return true;
		uint32_t ch = coral_cache_chain(c, b->file, b->block);
		coral_cache_lock(c, ch);
		bool asked = b->ship_rid != 0 && (atomic_load(&b->pins) & CORAL_BUF_XPIN);
		coral_cache_unlock(c, ch);
		if (asked)
			return true;
	}
	return false;
}

/* What blocks someone, for the idle-blocker limit: per slot, the earliest blocking notification
 * of a lock it holds (lmdd's, node-local clock) and since when a block it pins is wanted. Only
 * when a group in force has the limit. */
static void find_blockers(struct rsrcmgrd *m, uint64_t now_ms_)
{
	bool any = false;
	for (int g = 0; g < CORAL_RSRC_GROUPS && !any; g++)
		any = m->lim[g].idle_blocker_ms != 0;
	memset(m->lock_blocks_ms, 0, sizeof(m->lock_blocks_ms));
	if (!any) {
		memset(m->pin_blocks_ms, 0, sizeof(m->pin_blocks_ms));
		return;
	}
	struct coral_rsrc *r = m->sec;
	for (uint32_t k = 0; m->own && k < CORAL_GES_OWN_MAX; k++) {
		struct coral_ges_own_lock *o = &m->own->locks[k];
		if (atomic_load(&o->used) == CORAL_GES_OWN_FREE)
			continue;
		uint64_t b = atomic_load(&o->blocking_ms);
		uint32_t slot = o->slot;
		if (b == 0 || slot == 0 || slot > CORAL_RSRC_SESSIONS || r->sess[slot - 1].id != o->session)
			continue;
		if (m->lock_blocks_ms[slot - 1] == 0 || b < m->lock_blocks_ms[slot - 1])
			m->lock_blocks_ms[slot - 1] = b;
	}
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &r->sess[i];
		bool idle = atomic_load(&s->pid) > 0 && !atomic_load(&s->ended) && atomic_load(&s->in_call) == 0;
		if (!idle || m->cache == NULL || coral_cache_sess(m->cache, (uint32_t)i)->id != s->id ||
		    !pins_wanted(m, i))
			m->pin_blocks_ms[i] = 0;
		else if (m->pin_blocks_ms[i] == 0)
			m->pin_blocks_ms[i] = now_ms_;
	}
}

/* A session's call past its group's execution-time limit: switched to another group, cancelled
 * (its next block get, change, commit or lock call fails, and so does its call's end) or the
 * session ended; a session idle past its group's idle limit, or idle past its idle-blocker
 * limit while another waits for a lock or a block it holds: ended. Looked at every tick (100
 * ms), so a limit acts within a tenth of a second of its passing. */
static void enforce_limits(struct rsrcmgrd *m)
{
	struct coral_rsrc *r = m->sec;
	if (m->plan[0] == '\0')
		return;
	uint64_t now = coral_now_mono_ns();
	find_blockers(m, now / 1000000ull);
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &r->sess[i];
		int32_t pid = atomic_load(&s->pid);
		if (pid <= 0 || atomic_load(&s->ended))
			continue;
		uint32_t call = atomic_load(&s->in_call), mapped = atomic_load(&s->group);
		uint64_t since = atomic_load(&s->since_ns);
		if (since == 0 || now < since)
			continue;
		uint64_t ms = (now - since) / 1000000ull;
		if (call != 0 && call <= CORAL_RSRC_GROUPS) {
			const struct limits *l = &m->lim[call - 1];
			struct coral_rsrc_group *G = &r->groups[call - 1];
			uint64_t n = atomic_load(&s->calls);
			if (l->exec_ms == 0 || ms < l->exec_ms)
				continue;
			if (l->action == RSRC_ACT_SWITCH && m->switched_call[i] != n) {
				m->switched_call[i] = n;
				if (coral_rsrc_sess_switch(r, i, l->switch_to, -3) == 0) {
					atomic_fetch_add(&G->exec_switches, 1);
					log_notice("session %u (pid %d): its call in %s ran %llu ms, past %u: switched to %s",
						   s->id, (int)pid, G->name, (unsigned long long)ms, l->exec_ms, l->switch_to);
				}
			} else if (l->action == RSRC_ACT_CANCEL_CALL && atomic_load(&s->cancel_call) != n) {
				atomic_store(&s->cancel_call, n);
				atomic_fetch_add(&G->exec_cancels, 1);
				log_notice("session %u (pid %d): its call in %s ran %llu ms, past %u: cancelled", s->id,
					   (int)pid, G->name, (unsigned long long)ms, l->exec_ms);
			} else if (l->action == RSRC_ACT_KILL_SESSION) {
				end_session(m, i, 1);
				atomic_fetch_add(&G->exec_kills, 1);
				log_notice("session %u (pid %d): its call in %s ran %llu ms, past %u: session ended", s->id,
					   (int)pid, G->name, (unsigned long long)ms, l->exec_ms);
			}
		} else if (call == 0 && atomic_load(&s->queued_in) == 0 && mapped != 0 && mapped <= CORAL_RSRC_GROUPS) {
			uint32_t gov = atomic_load(&r->groups[mapped - 1].governs);
			if (gov >= CORAL_RSRC_GROUPS)
				continue;
			const struct limits *l = &m->lim[gov];
			uint64_t lb = m->lock_blocks_ms[i], pb = m->pin_blocks_ms[i];
			uint64_t blocks = lb && pb ? (lb < pb ? lb : pb) : lb ? lb : pb;
			if (l->idle_blocker_ms && blocks) {
				/* idle and in someone's way, both for the limit */
				uint64_t from = since / 1000000ull > blocks ? since / 1000000ull : blocks;
				uint64_t both = now / 1000000ull > from ? now / 1000000ull - from : 0;
				if (both >= l->idle_blocker_ms) {
					end_session(m, i, 4);
					atomic_fetch_add(&r->groups[gov].idle_blocker_kills, 1);
					log_notice("session %u (pid %d) in %s: idle %llu ms, %llu ms of it in the way of another "
						   "session (%s), past %u: session ended, its transaction taken back and what it "
						   "held released", s->id, (int)pid, r->groups[gov].name, (unsigned long long)ms,
						   (unsigned long long)both,
						   lb && pb ? "a lock and a block it holds" : lb ? "a lock it holds" : "a block it holds",
						   l->idle_blocker_ms);
					continue;
				}
			}
			if (l->idle_ms == 0 || ms < l->idle_ms)
				continue;
			end_session(m, i, 2);
			atomic_fetch_add(&r->groups[gov].idle_kills, 1);
			log_notice("session %u (pid %d) in %s: idle %llu ms, past %u: session ended", s->id, (int)pid,
				   r->groups[gov].name, (unsigned long long)ms, l->idle_ms);
		}
	}
}

/* ---- the recorded demand ---------------------------------------------------------------------- */

/* Each tick: every group's calls under way and queued (the most in a second is kept), its
 * counters; each call seen under way, so that its length is known when it has ended (calls
 * shorter than a tick are seen by their count only). */
static void record_demand(struct rsrcmgrd *m)
{
	struct coral_rsrc *r = m->sec;
	uint64_t now_ns = coral_now_mono_ns(), sec = now_ns / 1000000000ull;
	for (uint32_t i = 0; i < r->ngroups && i < CORAL_RSRC_GROUPS; i++) {
		struct coral_rsrc_group *G = &r->groups[i];
		if (G->name[0] == '\0')
			continue;
		rsrc_hist_sample(m->hist, sec, i, G->name, atomic_load(&G->active) + atomic_load(&G->queued),
				 atomic_load(&G->calls), atomic_load(&G->io_reqs), atomic_load(&G->io_bytes));
	}
	record_cpu(m, sec);
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &r->sess[i];
		struct seen_call *c = &m->seen[i];
		int32_t pid = atomic_load(&s->pid);
		uint32_t in = atomic_load(&s->in_call);
		uint64_t n = atomic_load(&s->calls);
		if (c->call && (pid != c->pid || in == 0 || n != c->call)) {
			rsrc_hist_call(m->hist, sec, c->group, c->ms); /* it has ended */
			c->call = 0;
		}
		if (pid > 0 && in != 0 && in <= CORAL_RSRC_GROUPS) {
			uint64_t since = atomic_load(&s->since_ns);
			*c = (struct seen_call){n, since && now_ns > since ? (now_ns - since) / 1000000ull : 0, in - 1, pid};
		}
	}
}

static const char *action_name(int a)
{
	return a == RSRC_ACT_SWITCH ? "switch" : a == RSRC_ACT_CANCEL_CALL ? "cancel" : a == RSRC_ACT_KILL_SESSION ? "kill" : "";
}

static void h_simulate(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct rsrcmgrd *m = d->svc;
	const Coral__RsrcSimulateRequest *q = req->rsrc_simulate;
	uint64_t id = coral_ctl_request_id(req);
	const char *plan = q->plan ? q->plan : "";
	if (m->def == NULL || rsrc_def_plan(m->def, plan) == NULL) {
		coral_daemon_answer_error(d, conn, id, CORAL_ENOENT,
					  "plan %s is not in the catalog in force (coralctl rsrc plans lists them)", plan);
		return;
	}
	struct rsrc_sim sim[RSRC_GROUPS_MAX];
	int n = rsrc_simulate(m->hist, m->def, plan, q->seconds, m->ncpu, sim, RSRC_GROUPS_MAX);
	Coral__RsrcSimGroup gs[RSRC_GROUPS_MAX], *gp[RSRC_GROUPS_MAX];
	for (int i = 0; i < n; i++) {
		Coral__RsrcSimGroup *g = &gs[i];
		coral__rsrc_sim_group__init(g);
		g->group = sim[i].group;
		g->governed_by = sim[i].governed_by;
		g->pool = (uint32_t)sim[i].pool;
		g->io_iops = (uint32_t)sim[i].io_iops;
		g->io_mbps = (uint32_t)sim[i].io_mbps;
		g->exec_ms = (uint32_t)sim[i].exec_ms;
		g->action = (char *)action_name(sim[i].action);
		g->seconds = sim[i].seconds;
		g->demand_max = sim[i].demand_max;
		g->demand_avg = sim[i].demand_avg;
		g->calls = sim[i].calls;
		g->queued_seconds = sim[i].queued_seconds;
		g->queued_call_seconds = sim[i].queued_call_seconds;
		g->io_seconds = sim[i].io_seconds;
		g->io_excess_reqs = sim[i].io_excess_reqs;
		g->io_excess_bytes = sim[i].io_excess_bytes;
		g->calls_past_exec = sim[i].calls_past_exec;
		g->cpu_ms = sim[i].cpu_ms;
		g->cpu_would_ms = sim[i].cpu_would_ms;
		g->cpu_held_ms = sim[i].cpu_held_ms;
		g->cpu_held_seconds = sim[i].cpu_held_seconds;
		g->cap = (uint32_t)sim[i].cap;
		g->share = sim[i].share;
		gp[i] = g;
	}
	/* the CPU shares under saturation, now and under the plan */
	char gn[2][RSRC_GROUPS_MAX][RSRC_NAME_MAX];
	double fr[2][RSRC_GROUPS_MAX];
	struct rsrc_catalog c = rsrc_def_catalog(m->def);
	int nn = m->plan[0] ? rsrc_cpu_shares(&c, m->plan, gn[0], fr[0], RSRC_GROUPS_MAX) : 0;
	int np = rsrc_cpu_shares(&c, plan, gn[1], fr[1], RSRC_GROUPS_MAX);
	char st[RSRC_GROUPS_MAX][96];
	char *sp[RSRC_GROUPS_MAX];
	size_t ns = 0;
	for (int i = 0; i < np && ns < RSRC_GROUPS_MAX; i++) {
		double now = 0;
		for (int k = 0; k < nn; k++)
			if (strcmp(gn[0][k], gn[1][i]) == 0)
				now = fr[0][k];
		snprintf(st[ns], sizeof(st[ns]), "%s %.1f%% -> %.1f%%", gn[1][i], now * 100, fr[1][i] * 100);
		sp[ns] = st[ns];
		ns++;
	}
	Coral__RsrcSimulateReply rep = CORAL__RSRC_SIMULATE_REPLY__INIT;
	rep.plan = (char *)plan;
	rep.plan_now = m->plan;
	rep.seconds = n > 0 ? sim[0].seconds : 0;
	rep.groups = gp;
	rep.n_groups = n > 0 ? (size_t)n : 0;
	rep.shares = sp;
	rep.n_shares = ns;
	rep.ncpu = m->ncpu;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_RSRC_SIMULATE;
	resp.rsrc_simulate = &rep;
	coral_daemon_answer(d, conn, id, &resp);
}

/* ---- raftd ------------------------------------------------------------------------------ */

static void raft_poll(struct rsrcmgrd *m);

static int raft_call(struct rsrcmgrd *m, struct coral_kv_req *r, int timeout, coral_ctl_done_fn fn, void *arg)
{
	coral_kv_from(r, "rsrcmgrd", (uint32_t)m->d->node->id);
	if (m->raft == NULL || coral_ctl_client_call(m->raft, &r->req, timeout, fn, arg) != 0)
		return CORAL_ENOTCONN;
	return 0;
}

static void on_list(void *arg, int err, const Coral__CtlResponse *resp)
{
	struct rsrcmgrd *m = arg;
	m->list_out = false;
	m->raft_answered |= err == 0;
	int code = err ? err : resp->code;
	if ((code != 0 && code != CORAL_ENOENT) || resp->kv == NULL) {
		m->raft_retry_ms = now_ms() + 200;
		return;
	}
	bool cat = false, act = false, had_cat = false;
	for (size_t i = 0; i < resp->kv->n_kv; i++) {
		const Coral__RegKV *p = resp->kv->kv[i];
		had_cat |= strcmp(p->key, CATALOG_KEY) == 0;
		cat |= take_key(m, p->key, p->value.data, p->value.len, p->mod_index, &act);
	}
	if (!had_cat && m->catalog_text) /* deleted while not watched */
		cat |= take_key(m, CATALOG_KEY, NULL, 0, 0, &act);
	m->read_done = true;
	m->watch_index = resp->kv->index;
	apply_store(m, cat || m->def == NULL);
	raft_poll(m);
}

static void on_watch(void *arg, int err, const Coral__CtlResponse *resp)
{
	struct rsrcmgrd *m = arg;
	m->watch_out = false;
	m->raft_answered |= err == 0;
	int code = err ? err : resp->code;
	if (code != 0 || resp->watch == NULL) {
		if (code != CORAL_ETIMEDOUT)
			m->raft_retry_ms = now_ms() + 200;
		return;
	}
	const Coral__WatchReply *w = resp->watch;
	if (w->compacted) {
		m->read_done = false;
		return;
	}
	bool cat = false, act = false;
	for (size_t i = 0; i < w->n_events; i++) {
		const Coral__WatchEvent *e = w->events[i];
		cat |= take_key(m, e->key, e->deleted ? NULL : e->value.data, e->value.len, e->value_index, &act);
	}
	if (w->index > m->watch_index)
		m->watch_index = w->index;
	if (cat || act)
		apply_store(m, cat);
	raft_poll(m);
}

static void raft_poll(struct rsrcmgrd *m)
{
	if (m->list_out || m->watch_out || now_ms() < m->raft_retry_ms)
		return;
	struct coral_kv_req r;
	if (!m->read_done) {
		coral_kv_list(&r, PREFIX, false);
		m->list_out = true;
		if (raft_call(m, &r, 5000, on_list, m) != 0) {
			m->list_out = false;
			m->raft_retry_ms = now_ms() + 200;
		}
		return;
	}
	coral_kv_watch(&r, PREFIX, false, m->watch_index, 10000);
	m->watch_out = true;
	if (raft_call(m, &r, 12000, on_watch, m) != 0) {
		m->watch_out = false;
		m->raft_retry_ms = now_ms() + 200;
	}
}

/* raftd restarted by the supervisor: connect again and read the keys again. */
static void raft_reconnect(struct rsrcmgrd *m)
{
	if (m->raft != NULL && !coral_ctl_client_closed(m->raft))
		return;
	if (m->raft != NULL) {
		coral_ctl_client_free(m->raft);
		m->raft = NULL;
		if (m->raft_answered)
			log_notice("connection to raftd lost: connecting again");
		m->raft_answered = false;
	}
	char sock[CORAL_STR_MAX + 32];
	coral_conf_sock_path(m->d->node, "raftd", sock, sizeof(sock));
	m->raft = coral_ctl_client_new(m->d->base, sock, (size_t)m->d->conf.cluster.max_frame);
	if (m->raft == NULL)
		return;
	m->list_out = m->watch_out = false;
	m->read_done = false;
	m->raft_retry_ms = 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rsrcmgrd *m = arg;
	raft_reconnect(m);
	raft_poll(m);
	rsrc_cg_place(m->cg, m->sec, m->plan[0] != '\0'); /* new sessions, remapped ones, closed ones */
	enforce_limits(m);
	record_demand(m);
	uint64_t now = now_ms();
	if (now - m->last_sweep_ms >= SWEEP_MS) {
		m->last_sweep_ms = now;
		/* a schedule's window opened or closed */
		if (m->read_done && scheduled_now(m) != m->sched)
			apply_store(m, false);
		int n = coral_rsrc_sweep(m->sec);
		if (n > 0) {
			m->swept += (uint64_t)n;
			log_info("%d sessions of dead processes held a call or a place in a queue: given back", n);
		}
		/* a safety net for a wake lost to a process that died between a call's end and its
		 * admitting the next (the ends and the sweep admit at once otherwise) */
		for (uint32_t i = 0; i < m->sec->ngroups; i++)
			coral_rsrc_group_admit(m->sec, i);
	}
}

/* ---- control requests -------------------------------------------------------------------- */

struct put_wait {
	struct rsrcmgrd *m;
	uint64_t conn, req_id;
	int body;
	char what[200];
};

static void answer_action(struct coral_daemon *d, uint64_t conn, uint64_t req_id, int body, int code,
			  const char *result, char **problems, size_t nproblems, uint64_t index)
{
	Coral__RsrcActionReply a = CORAL__RSRC_ACTION_REPLY__INIT;
	a.result = (char *)(result ? result : "");
	a.problems = problems;
	a.n_problems = nproblems;
	a.index = index;
	/* a refusal's text carries its problems: coralctl prints the error alone */
	char error[4096] = "";
	int k = snprintf(error, sizeof(error), "%s", code && result ? result : "");
	for (size_t i = 0; code && i < nproblems && k >= 0 && (size_t)k < sizeof(error); i++)
		k += snprintf(error + k, sizeof(error) - (size_t)k, "\n  %s", problems[i]);
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.code = code;
	resp.error = error;
	resp.body_case = (Coral__CtlResponse__BodyCase)body;
	if (body == CORAL__CTL_RESPONSE__BODY_RSRC_LOAD)
		resp.rsrc_load = &a;
	else if (body == CORAL__CTL_RESPONSE__BODY_RSRC_ACTIVATE)
		resp.rsrc_activate = &a;
	else if (body == CORAL__CTL_RESPONSE__BODY_RSRC_KILL)
		resp.rsrc_kill = &a;
	else
		resp.rsrc_switch = &a;
	coral_daemon_answer(d, conn, req_id, &resp);
}

static void on_put(void *arg, int err, const Coral__CtlResponse *resp)
{
	struct put_wait *w = arg;
	int code = err ? err : resp->code;
	char msg[400];
	if (code != 0)
		snprintf(msg, sizeof(msg), "raftd did not take it: %s", err ? coral_strerror(err) : resp->error);
	else
		snprintf(msg, sizeof(msg), "%s: in force on every node as its rsrcmgrd reads it", w->what);
	answer_action(w->m->d, w->conn, w->req_id, w->body, code, msg, NULL, 0,
		      code == 0 && resp->kv ? resp->kv->index : 0);
	free(w);
}

static void put_key(struct rsrcmgrd *m, uint64_t conn, const Coral__CtlRequest *req, int body, const char *key,
		    const char *value, const char *what)
{
	struct put_wait *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		coral_daemon_answer_error(m->d, conn, coral_ctl_request_id(req), CORAL_ENOMEM, "out of memory");
		return;
	}
	*w = (struct put_wait){m, conn, coral_ctl_request_id(req), body, ""};
	snprintf(w->what, sizeof(w->what), "%s", what);
	struct coral_kv_req r;
	coral_kv_put(&r, key, value, strlen(value));
	if (raft_call(m, &r, 10000, on_put, w) != 0) {
		free(w);
		coral_daemon_answer_error(m->d, conn, coral_ctl_request_id(req), CORAL_ENOTCONN,
					  "raftd is not reachable from rsrcmgrd: nothing was changed");
	}
}

/* The problems' lines (NUL separated in buf) as an array for the answer. */
static size_t split_lines(char *buf, size_t size, char **out, size_t max)
{
	size_t n = 0;
	for (size_t at = 0; at < size && buf[at] && n < max; at += strlen(buf + at) + 1)
		out[n++] = buf + at;
	return n;
}

static void h_load(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct rsrcmgrd *m = d->svc;
	const Coral__RsrcLoadRequest *q = req->rsrc_load;
	int body = CORAL__CTL_RESPONSE__BODY_RSRC_LOAD;
	uint64_t id = coral_ctl_request_id(req);
	if (q->text == NULL || strlen(q->text) > CATALOG_TEXT_MAX) {
		answer_action(d, conn, id, body, CORAL_EINVAL, "a catalog of at most 256 KiB is wanted", NULL, 0, 0);
		return;
	}
	struct rsrc_def *def = calloc(1, sizeof(*def));
	if (def == NULL) {
		coral_daemon_answer_error(d, conn, id, CORAL_ENOMEM, "out of memory");
		return;
	}
	char err[300];
	char problems[8192];
	char *lines[64];
	if (rsrc_def_parse(q->text, def, err, sizeof(err)) != 0) {
		char *l[1] = {err};
		answer_action(d, conn, id, body, CORAL_EINVAL, "the catalog does not read: nothing was loaded", l, 1, 0);
	} else if (rsrc_def_check(def, problems, sizeof(problems)) != 0) {
		size_t n = split_lines(problems, sizeof(problems), lines, 64);
		answer_action(d, conn, id, body, CORAL_EINVAL, "the catalog has problems: nothing was loaded", lines, n, 0);
	} else if (m->plan[0] && rsrc_def_plan(def, m->plan) == NULL) {
		snprintf(err, sizeof(err), "plan %s is in force and this catalog has no such plan: activate another "
			 "first (coralctl rsrc activate PLAN, or \"\" for none)", m->plan);
		char *l[1] = {err};
		answer_action(d, conn, id, body, CORAL_EINVAL, "nothing was loaded", l, 1, 0);
	} else if (q->dry_run) {
		snprintf(err, sizeof(err), "the catalog is good (%zu groups, %zu rules, %zu plans): nothing was loaded "
			 "(a dry run)", def->ngroups, def->nrules, def->nplans);
		answer_action(d, conn, id, body, 0, err, NULL, 0, 0);
	} else {
		snprintf(err, sizeof(err), "catalog loaded (%zu groups, %zu rules, %zu plans)", def->ngroups, def->nrules,
			 def->nplans);
		put_key(m, conn, req, body, CATALOG_KEY, q->text, err);
	}
	free(def);
}

static void h_activate(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct rsrcmgrd *m = d->svc;
	const Coral__RsrcActivateRequest *q = req->rsrc_activate;
	int body = CORAL__CTL_RESPONSE__BODY_RSRC_ACTIVATE;
	uint64_t id = coral_ctl_request_id(req);
	const char *plan = q->plan ? q->plan : "";
	char msg[400];
	if (plan[0]) {
		if (m->def == NULL || rsrc_def_plan(m->def, plan) == NULL) {
			snprintf(msg, sizeof(msg), "plan %s is not in the catalog in force (coralctl rsrc plans lists them)",
				 plan);
			answer_action(d, conn, id, body, CORAL_ENOENT, msg, NULL, 0, 0);
			return;
		}
		char problems[4096];
		struct rsrc_catalog c = rsrc_def_catalog(m->def);
		if (rsrc_validate(&c, plan, problems, sizeof(problems)) != 0) {
			char *lines[32];
			size_t n = split_lines(problems, sizeof(problems), lines, 32);
			answer_action(d, conn, id, body, CORAL_EINVAL, "the plan has problems: not activated", lines, n, 0);
			return;
		}
	}
	const struct coral_ipc_peer *peer = coral_ipc_conn_peer(coral_ipc_server_conn(d->ipc, conn));
	char value[RSRC_NAME_MAX + 260];
	snprintf(value, sizeof(value), "%s\nactivated through node %d's rsrcmgrd by pid %d (uid %u)%s%.120s", plan,
		 (int)d->node->id, peer ? (int)peer->pid : 0, peer ? (unsigned)peer->uid : 0,
		 q->cause && q->cause[0] ? ": " : "", q->cause ? q->cause : "");
	snprintf(msg, sizeof(msg), "plan %s activated", plan[0] ? plan : "(none)");
	put_key(m, conn, req, body, ACTIVE_KEY, value, msg);
}

/* coralctl rsrc kill ID: the session ended (every block get, change, commit and call of it fails
 * with CORAL_ERR_CANCELED until it is closed; its call's place stays until its call ends or its
 * process dies). */
static void h_kill(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct rsrcmgrd *m = d->svc;
	uint32_t id = req->rsrc_kill->session;
	char msg[200];
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &m->sec->sess[i];
		int32_t pid = atomic_load(&s->pid);
		if (pid <= 0 || s->id != id)
			continue;
		end_session(m, i, 3);
		const struct coral_ipc_peer *peer = coral_ipc_conn_peer(coral_ipc_server_conn(d->ipc, conn));
		log_notice("session %u (pid %d) killed by an operator (pid %d, uid %u)", id, (int)pid,
			   peer ? (int)peer->pid : 0, peer ? (unsigned)peer->uid : 0);
		snprintf(msg, sizeof(msg),
			 "session %u (pid %d) ended: its transaction is taken back and its blocks and locks released once no "
			 "call of it is under way; its calls fail until it is closed", id, (int)pid);
		answer_action(d, conn, coral_ctl_request_id(req), CORAL__CTL_RESPONSE__BODY_RSRC_KILL, 0, msg, NULL, 0, 0);
		return;
	}
	snprintf(msg, sizeof(msg), "no session %u on this node (coralctl rsrc sessions lists them)", id);
	answer_action(d, conn, coral_ctl_request_id(req), CORAL__CTL_RESPONSE__BODY_RSRC_KILL, CORAL_ENOENT, msg, NULL, 0, 0);
}

static void h_switch(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct rsrcmgrd *m = d->svc;
	const Coral__RsrcSwitchRequest *q = req->rsrc_switch;
	uint64_t id = coral_ctl_request_id(req);
	char msg[200];
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &m->sec->sess[i];
		if (atomic_load(&s->pid) == 0 || s->id != q->session)
			continue;
		if (coral_rsrc_sess_switch(m->sec, i, q->group ? q->group : "", -2) != 0) {
			snprintf(msg, sizeof(msg), "group %s does not exist on this node", q->group ? q->group : "");
			answer_action(d, conn, id, CORAL__CTL_RESPONSE__BODY_RSRC_SWITCH, CORAL_ENOENT, msg, NULL, 0, 0);
			return;
		}
		log_notice("session %u (pid %d) switched to group %s by an operator", q->session, (int)s->pid, q->group);
		snprintf(msg, sizeof(msg), "session %u switched to group %s (its call under way ends where it began)",
			 q->session, q->group);
		answer_action(d, conn, id, CORAL__CTL_RESPONSE__BODY_RSRC_SWITCH, 0, msg, NULL, 0, 0);
		return;
	}
	snprintf(msg, sizeof(msg), "no session %u on this node (coralctl rsrc sessions lists them)", q->session);
	answer_action(d, conn, id, CORAL__CTL_RESPONSE__BODY_RSRC_SWITCH, CORAL_ENOENT, msg, NULL, 0, 0);
}

static void h_status(struct coral_daemon *d, uint64_t conn, const Coral__CtlRequest *req)
{
	struct rsrcmgrd *m = d->svc;
	struct coral_rsrc *r = m->sec;
	Coral__RsrcStatusReply rep = CORAL__RSRC_STATUS_REPLY__INIT;
	rep.plan = m->plan;
	rep.plan_since_ms = atomic_load(&r->plan_since_ns) / 1000000ull;
	rep.cause = m->nsw ? m->sw[(m->swhead + m->nsw - 1) % SWITCHES_MAX].cause : "";
	rep.catalog_index = m->def ? m->catalog_index : 0;
	rep.store_read = m->read_done;
	rep.swept = m->swept;
	rep.catalog_error = m->catalog_error;
	char cpu[CORAL_STR_MAX + 500];
	if (m->cg->mode == RSRC_CG_OFF)
		snprintf(cpu, sizeof(cpu), "not enforced: %s", m->cg->why);
	else
		snprintf(cpu, sizeof(cpu), "cgroup %s %s (%s)", m->cg->mode == RSRC_CG_V1 ? "v1" : "v2", m->cg->base,
			 m->cg->mode == RSRC_CG_V1 ? "each session's thread" : "each session's process");
	rep.cpu = cpu;
	rep.cgroup_refused = m->cg->refused;
	rep.cgroup_moves = m->cg->moves;
	rep.cgroup_error = m->cg->last_error;
	/* groups */
	Coral__RsrcGroup gs[CORAL_RSRC_GROUPS], *gp[CORAL_RSRC_GROUPS];
	char dtext[CORAL_RSRC_GROUPS][200];
	char cgpath[CORAL_RSRC_GROUPS][CORAL_STR_MAX + 64];
	size_t ng = 0;
	for (uint32_t i = 0; i < r->ngroups && i < CORAL_RSRC_GROUPS; i++) {
		struct coral_rsrc_group *G = &r->groups[i];
		if (G->name[0] == '\0')
			continue;
		Coral__RsrcGroup *g = &gs[ng];
		coral__rsrc_group__init(g);
		g->name = G->name;
		g->system = i < 5;
		uint32_t gov = atomic_load(&G->governs);
		g->governed_by = gov < CORAL_RSRC_GROUPS ? r->groups[gov].name : "";
		const struct rsrc_directive *x = m->def && m->plan[0] ? rsrc_def_directive(m->def, m->plan, G->name) : NULL;
		dtext[ng][0] = '\0';
		if (x)
			rsrc_directive_text(x, dtext[ng], sizeof(dtext[ng]));
		g->directive = dtext[ng];
		g->share_ppm = atomic_load(&G->share_ppm);
		g->pool = atomic_load(&G->pool);
		g->cluster_pool = atomic_load(&G->cluster_pool);
		g->queue_timeout_ms = atomic_load(&G->queue_timeout_ms);
		g->sessions = atomic_load(&G->sessions);
		g->active = atomic_load(&G->active);
		g->queued = atomic_load(&G->queued);
		g->active_max = atomic_load(&G->active_max);
		g->calls = atomic_load(&G->calls);
		g->queued_total = atomic_load(&G->queued_total);
		g->timeouts = atomic_load(&G->timeouts);
		g->queue_wait_us = atomic_load(&G->queue_wait_ns) / 1000;
		g->reaped = atomic_load(&G->reaped);
		g->exec_cancels = atomic_load(&G->exec_cancels);
		g->exec_switches = atomic_load(&G->exec_switches);
		g->exec_kills = atomic_load(&G->exec_kills);
		g->idle_kills = atomic_load(&G->idle_kills);
		g->idle_blocker_kills = atomic_load(&G->idle_blocker_kills);
		g->io_reqs = atomic_load(&G->io_reqs);
		g->io_bytes = atomic_load(&G->io_bytes);
		g->io_waits = atomic_load(&G->io_waits);
		g->io_wait_us = atomic_load(&G->io_wait_ns) / 1000;
		g->max_dop = atomic_load(&G->max_dop);
		g->px_requests = atomic_load(&G->px_requests);
		g->px_downgraded = atomic_load(&G->px_downgraded);
		g->px_queued = atomic_load(&G->px_queued);
		g->px_timeouts = atomic_load(&G->px_timeouts);
		rsrc_cg_group_info(m->cg, G->name, cgpath[ng], sizeof(cgpath[ng]), &g->throttled_ms);
		g->cgroup = cgpath[ng];
		gp[ng] = g;
		ng++;
	}
	rep.groups = gp;
	rep.n_groups = ng;
	/* rules and plans, from the catalog in force */
	size_t nrules = m->def ? m->def->nrules : 0, nplans = m->def ? m->def->nplans : 0;
	char(*rtext)[200] = calloc(nrules + 1, sizeof(*rtext));
	char **rp = calloc(nrules + 1, sizeof(*rp));
	Coral__RsrcPlan *ps = calloc(nplans + 1, sizeof(*ps));
	Coral__RsrcPlan **pp = calloc(nplans + 1, sizeof(*pp));
	size_t ndir = 0;
	for (size_t i = 0; i < nplans; i++)
		ndir += m->def->plans[i].n;
	char(*ptext)[260] = calloc(ndir + 1, sizeof(*ptext));
	char **pl = calloc(ndir + 1, sizeof(*pl));
	/* sessions */
	Coral__RsrcSession *ss = calloc(CORAL_RSRC_SESSIONS, sizeof(*ss));
	Coral__RsrcSession **sp = calloc(CORAL_RSRC_SESSIONS, sizeof(*sp));
	char(*stext)[CORAL_RSRC_NATTR][CORAL_RSRC_ATTR + 12] = calloc(CORAL_RSRC_SESSIONS, sizeof(*stext));
	char *(*sattr)[CORAL_RSRC_NATTR] = calloc(CORAL_RSRC_SESSIONS, sizeof(*sattr));
	char(*srule)[220] = calloc(CORAL_RSRC_SESSIONS, sizeof(*srule));
	Coral__RsrcSwitch sw[SWITCHES_MAX], *swp[SWITCHES_MAX];
	if (!rtext || !rp || !ps || !pp || !ptext || !pl || !ss || !sp || !stext || !sattr || !srule) {
		coral_daemon_answer_error(d, conn, coral_ctl_request_id(req), CORAL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nrules; i++) {
		rsrc_rule_text(&m->def->rules[i], rtext[i], sizeof(rtext[i]));
		rp[i] = rtext[i];
	}
	rep.rules = rp;
	rep.n_rules = nrules;
	size_t k = 0;
	for (size_t i = 0; i < nplans; i++) {
		const struct rsrc_plan *p = &m->def->plans[i];
		coral__rsrc_plan__init(&ps[i]);
		ps[i].name = (char *)p->name;
		ps[i].directives = &pl[k];
		for (size_t j = 0; j < p->n; j++) {
			char t[200];
			rsrc_directive_text(&p->d[j], t, sizeof(t));
			if (p->d[j].subplan)
				snprintf(ptext[k], sizeof(ptext[k]), "subplan %s level=%d share=%d", p->d[j].group,
					 p->d[j].level, p->d[j].share);
			else
				snprintf(ptext[k], sizeof(ptext[k]), "%s %s", p->d[j].group, t);
			pl[k] = ptext[k];
			k++;
		}
		ps[i].n_directives = p->n;
		pp[i] = &ps[i];
	}
	rep.plans = pp;
	rep.n_plans = nplans;
	char sch[RSRC_SCHEDULES_MAX][160];
	char *schp[RSRC_SCHEDULES_MAX];
	size_t nsch = m->def ? m->def->nschedules : 0;
	for (size_t i = 0; i < nsch; i++) {
		rsrc_schedule_text(&m->def->schedules[i], sch[i], sizeof(sch[i]));
		schp[i] = sch[i];
	}
	rep.schedules = schp;
	rep.n_schedules = nsch;
	rep.schedule_open = m->sched + 1;
	coral_mutex_lock(&r->px_mu, NULL, NULL);
	rep.px_servers = r->px_total;
	rep.px_used = r->px_used;
	rep.px_queued = r->px_qlen;
	coral_mutex_unlock(&r->px_mu);
	size_t ns = 0;
	uint64_t now = coral_now_mono_ns();
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &r->sess[i];
		int32_t pid = atomic_load(&s->pid);
		if (pid <= 0)
			continue;
		Coral__RsrcSession *x = &ss[ns];
		coral__rsrc_session__init(x);
		x->id = s->id;
		x->pid = pid;
		uint32_t g = atomic_load(&s->group);
		x->group = g && g <= CORAL_RSRC_GROUPS ? r->groups[g - 1].name : "";
		int rule = atomic_load(&s->rule);
		if (rule == -2)
			snprintf(srule[ns], sizeof(srule[ns]), "switched by an operator");
		else if (rule == -3)
			snprintf(srule[ns], sizeof(srule[ns]), "switched by its group's execution-time limit");
		else if (rule >= 0 && (uint32_t)rule < r->nrules)
			rsrc_rule_text(&r->rules[rule], srule[ns], sizeof(srule[ns]));
		else
			snprintf(srule[ns], sizeof(srule[ns]), "none (OTHER)");
		x->rule = srule[ns];
		size_t na = 0;
		for (int a = 0; a < CORAL_RSRC_NATTR; a++) {
			char v[CORAL_RSRC_ATTR];
			memcpy(v, s->attrs[a], sizeof(v));
			v[sizeof(v) - 1] = '\0';
			if (v[0] == '\0')
				continue;
			snprintf(stext[ns][na], sizeof(stext[ns][na]), "%s=%s", coral_rsrc_attr_name(a), v);
			sattr[ns][na] = stext[ns][na];
			na++;
		}
		x->attrs = sattr[ns];
		x->n_attrs = na;
		bool in_call = atomic_load(&s->in_call) != 0, queued = atomic_load(&s->queued_in) != 0;
		uint32_t ended = atomic_load(&s->ended);
		bool cancelled = in_call && atomic_load(&s->cancel_call) == atomic_load(&s->calls);
		x->state = ended == 1   ? "ended (a call past its execution-time limit)"
			   : ended == 2 ? "ended (idle past its limit)"
			   : ended == 3 ? "ended (killed by an operator)"
			   : ended == 4 ? "ended (idle while blocking another session, past its limit)"
			   : queued	? "queued"
			   : cancelled	? "in a call, cancelled (past its execution-time limit)"
			   : in_call	? "in a call"
					: "idle";
		uint64_t since = atomic_load(&s->since_ns);
		x->since_ms = since && now > since ? (now - since) / 1000000ull : 0;
		x->calls = atomic_load(&s->calls);
		x->io_wait_us = atomic_load(&s->io_wait_ns) / 1000;
		x->px_held = s->px_held;
		uint32_t qg = atomic_load(&s->queued_in);
		x->queue_group = "";
		if (qg && qg <= CORAL_RSRC_GROUPS) {
			struct coral_rsrc_group *Q = &r->groups[qg - 1];
			coral_mutex_lock(&Q->mu, NULL, NULL);
			for (uint32_t k = 0; k < Q->qlen; k++)
				if (Q->q[(Q->qhead + k) % CORAL_RSRC_SESSIONS] == i)
					x->queue_position = k + 1;
			coral_mutex_unlock(&Q->mu);
			x->queue_group = Q->name;
		}
		uint32_t placed = m->cg->placed[i].tid == atomic_load(&s->tid) ? m->cg->placed[i].group : 0;
		x->cgroup = placed && placed <= CORAL_RSRC_GROUPS ? r->groups[placed - 1].name : "";
		sp[ns] = x;
		ns++;
	}
	rep.sessions = sp;
	rep.n_sessions = ns;
	for (size_t i = 0; i < m->nsw; i++) {
		const struct rsrc_switch *s = &m->sw[(m->swhead + i) % SWITCHES_MAX];
		coral__rsrc_switch__init(&sw[i]);
		sw[i].at_ms = s->at_ms;
		sw[i].plan = (char *)s->plan;
		sw[i].previous = (char *)s->previous;
		sw[i].cause = (char *)s->cause;
		swp[i] = &sw[i];
	}
	rep.switches = swp;
	rep.n_switches = m->nsw;
	Coral__CtlResponse resp = CORAL__CTL_RESPONSE__INIT;
	resp.body_case = CORAL__CTL_RESPONSE__BODY_RSRC_STATUS;
	resp.rsrc_status = &rep;
	coral_daemon_answer(d, conn, coral_ctl_request_id(req), &resp);
out:
	free(rtext);
	free(rp);
	free(ps);
	free(pp);
	free(ptext);
	free(pl);
	free(ss);
	free(sp);
	free(stext);
	free(sattr);
	free(srule);
}

/* ---- metrics --------------------------------------------------------------------------------- */

/* Per consumer group with sessions or calls (labelled group="NAME"; at most 12 groups, the
 * metrics slot's bound), and the node's plan, pool of parallel servers and cgroup refusals. */
static void rsrcmgrd_metrics(struct coral_daemon *d, struct coral_metrics_slot *ms)
{
	struct rsrcmgrd *m = d->svc;
	if (m == NULL || m->sec == NULL)
		return;
	struct coral_rsrc *r = m->sec;
	char l[96];
	snprintf(l, sizeof(l), "plan=\"%s\"", m->plan[0] ? m->plan : "none");
	coral_metrics_put(ms, "coral_rsrc_plan_info", l, CORAL_METRIC_GAUGE, 1, "the plan in force on the node");
	coral_metrics_put(ms, "coral_rsrc_plan_switches_total", NULL, CORAL_METRIC_COUNTER, (double)m->nsw,
			  "plan switches this rsrcmgrd saw (the last 64)");
	coral_metrics_put(ms, "coral_rsrc_px_servers", NULL, CORAL_METRIC_GAUGE, r->px_total, "the node's parallel servers");
	coral_metrics_put(ms, "coral_rsrc_px_used", NULL, CORAL_METRIC_GAUGE, r->px_used, "parallel servers held");
	coral_metrics_put(ms, "coral_rsrc_cgroup_refused_total", NULL, CORAL_METRIC_COUNTER, (double)m->cg->refused,
			  "cgroup writes the kernel refused");
	int shown = 0;
	for (uint32_t i = 0; i < r->ngroups && i < CORAL_RSRC_GROUPS && shown < 12; i++) {
		struct coral_rsrc_group *G = &r->groups[i];
		if (G->name[0] == '\0' || (atomic_load(&G->sessions) == 0 && atomic_load(&G->calls) == 0))
			continue;
		shown++;
		snprintf(l, sizeof(l), "group=\"%s\"", G->name);
		coral_metrics_put(ms, "coral_rsrc_sessions", l, CORAL_METRIC_GAUGE, atomic_load(&G->sessions),
				  "sessions in the consumer group");
		coral_metrics_put(ms, "coral_rsrc_active", l, CORAL_METRIC_GAUGE, atomic_load(&G->active),
				  "calls under way in the group");
		coral_metrics_put(ms, "coral_rsrc_queued", l, CORAL_METRIC_GAUGE, atomic_load(&G->queued),
				  "calls waiting for the group's active session pool");
		coral_metrics_put(ms, "coral_rsrc_calls_total", l, CORAL_METRIC_COUNTER, (double)atomic_load(&G->calls),
				  "calls begun in the group");
		coral_metrics_put(ms, "coral_rsrc_queue_timeouts_total", l, CORAL_METRIC_COUNTER,
				  (double)atomic_load(&G->timeouts), "calls not admitted within the queue timeout");
		coral_metrics_put(ms, "coral_rsrc_queue_wait_seconds_total", l, CORAL_METRIC_COUNTER,
				  (double)atomic_load(&G->queue_wait_ns) / 1e9, "time calls waited in the pool's queue");
		coral_metrics_put(ms, "coral_rsrc_io_wait_seconds_total", l, CORAL_METRIC_COUNTER,
				  (double)atomic_load(&G->io_wait_ns) / 1e9, "time sessions waited for I/O tokens");
		coral_metrics_put(ms, "coral_rsrc_limit_actions_total", l, CORAL_METRIC_COUNTER,
				  (double)(atomic_load(&G->exec_cancels) + atomic_load(&G->exec_switches) +
					   atomic_load(&G->exec_kills) + atomic_load(&G->idle_kills) +
					   atomic_load(&G->idle_blocker_kills)),
				  "calls cancelled or switched and sessions ended by its limits");
	}
}

/* ---- the daemon -------------------------------------------------------------------------- */

static int rsrcmgrd_init(struct coral_daemon *d)
{
	struct rsrcmgrd *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return CORAL_ENOMEM;
	d->svc = m;
	m->d = d;
	m->sched = -1;
	m->sec = coral_rsrc_sga(&d->sga);
	if (m->sec == NULL) {
		log_error("the SGA has no rsrc section: restart the node (coral-node stop, start)");
		return CORAL_EVERSION;
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	m->ncpu = cpus > 0 ? (uint32_t)cpus : 1;
	m->cache = coral_cache_sga(&d->sga);
	m->own = coral_ges_own_sga(&d->sga);
	atomic_store(&m->sec->rsrcmgrd_pid, (int32_t)getpid());
	int finished = finish_endings(m);
	if (finished > 0)
		log_notice("%d sessions ended before a restart still held what they had: their slots revoked now",
			   finished);
	m->hist = malloc(sizeof(*m->hist));
	if (m->hist == NULL)
		return CORAL_ENOMEM;
	rsrc_hist_init(m->hist, coral_now_mono_ns() / 1000000000ull);
	m->cg = calloc(1, sizeof(*m->cg));
	if (m->cg == NULL)
		return CORAL_ENOMEM;
	rsrc_cg_init(m->cg, d->conf.rsrc.cgroup, d->conf.rsrc.cgroup_root, d->conf.cluster.name, (uint32_t)d->node->id);
	if (m->cg->mode == RSRC_CG_OFF)
		log_notice("CPU shares not enforced: %s", m->cg->why);
	m->ev_tick = event_new(d->base, -1, EV_PERSIST, on_tick, m);
	struct timeval tv = {0, TICK_MS * 1000};
	if (m->ev_tick == NULL || event_add(m->ev_tick, &tv) != 0)
		return CORAL_ENOMEM;
	return 0;
}

static void rsrcmgrd_fini(struct coral_daemon *d)
{
	struct rsrcmgrd *m = d->svc;
	if (m == NULL)
		return;
	if (m->ev_tick)
		event_free(m->ev_tick);
	if (m->raft)
		coral_ctl_client_free(m->raft);
	if (m->cg) {
		rsrc_cg_fini(m->cg);
		free(m->cg);
	}
	free(m->catalog_text);
	free(m->def);
	free(m->hist);
	free(m);
	d->svc = NULL;
}

static const struct coral_daemon_request rsrcmgrd_requests[] = {
	{CORAL__CTL_REQUEST__BODY_RSRC_STATUS, false, h_status, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_RSRC_LOAD, true, h_load, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_RSRC_ACTIVATE, true, h_activate, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_RSRC_SWITCH, true, h_switch, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_RSRC_SIMULATE, false, h_simulate, NULL, NULL},
	{CORAL__CTL_REQUEST__BODY_RSRC_KILL, true, h_kill, NULL, NULL},
};

static const struct coral_daemon_def rsrcmgrd_def = {
	.id = CORAL_D_RSRCMGRD,
	.service = "resource manager: consumer groups, rules, plans and schedules from raftd's store; CPU, active "
		   "session pools, parallel servers, I/O, time and idle-blocker limits",
	.service_ready = true,
	.init = rsrcmgrd_init,
	.fini = rsrcmgrd_fini,
	.requests = rsrcmgrd_requests,
	.nrequests = CORAL_ARRAY_LEN(rsrcmgrd_requests),
	.metrics = rsrcmgrd_metrics,
};

int main(int argc, char **argv)
{
	return coral_daemon_main(argc, argv, &rsrcmgrd_def);
}

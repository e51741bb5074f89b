/* The resource manager's SGA section (rsrc_sga.h): groups, rules, sessions, and the active
 * session pool's admission. Lock order: the section's wmu, then a group's mu. */
#include "rsrc_sga.h"

#include "errors.h"
#include "log.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

static const char *const attr_names[CORAL_RSRC_NATTR] = {"user", "program", "machine", "service", "module"};
static const char *const system_groups[] = {"SYS", "INTERACTIVE", "BATCH", "MAINTENANCE", "OTHER"};

const char *coral_rsrc_attr_name(int attr)
{
	return attr >= 0 && attr < CORAL_RSRC_NATTR ? attr_names[attr] : "?";
}

int coral_rsrc_attr_parse(const char *name)
{
	for (int i = 0; i < CORAL_RSRC_NATTR; i++)
		if (strcmp(attr_names[i], name) == 0)
			return i;
	return -1;
}

/* ---- mapping ------------------------------------------------------------------------ */

static bool pattern_matches(const char *pattern, const char *v)
{
	size_t n = strnlen(pattern, CORAL_RSRC_ATTR);
	if (n > 0 && pattern[n - 1] == '*')
		return strncmp(pattern, v, n - 1) == 0;
	return strncmp(pattern, v, CORAL_RSRC_ATTR) == 0;
}

static bool in_window(const struct coral_rsrc_rule *r, int day, int minute)
{
	if (r->days && !(r->days & (1u << day)))
		return false;
	if (r->from_min == 0 && r->to_min == 0)
		return true;
	if (r->from_min <= r->to_min)
		return minute >= r->from_min && minute < r->to_min;
	return minute >= r->from_min || minute < r->to_min; /* past midnight */
}

int coral_rsrc_map(const struct coral_rsrc_rule *rules, size_t n, const char *const v[CORAL_RSRC_NATTR], int day,
		   int minute)
{
	int best = -1;
	for (size_t i = 0; i < n; i++) {
		const struct coral_rsrc_rule *r = &rules[i];
		if (r->attr < 0 || r->attr >= CORAL_RSRC_NATTR)
			continue;
		const char *val = v[r->attr];
		if (val == NULL || val[0] == '\0' || !pattern_matches(r->pattern, val) || !in_window(r, day, minute))
			continue;
		if (best < 0 || r->priority < rules[best].priority)
			best = (int)i;
	}
	return best;
}

/* ---- the section ---------------------------------------------------------------------- */

void coral_rsrc_init(struct coral_rsrc *r)
{
	memset(r, 0, sizeof(*r));
	coral_mutex_init_shared(&r->wmu);
	coral_mutex_init_shared(&r->px_mu);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	r->px_total = cpus > 0 ? 2u * (uint32_t)cpus : 2u;
	for (size_t i = 0; i < CORAL_RSRC_GROUPS; i++) {
		coral_mutex_init_shared(&r->groups[i].mu);
		coral_mutex_init_shared(&r->groups[i].io_mu);
		atomic_store(&r->groups[i].governs, (uint32_t)i);
	}
	for (size_t i = 0; i < CORAL_ARRAY_LEN(system_groups); i++)
		snprintf(r->groups[i].name, CORAL_RSRC_NAME, "%s", system_groups[i]);
	r->ngroups = (uint32_t)CORAL_ARRAY_LEN(system_groups);
}

size_t coral_rsrc_sga_size(const struct coral_conf *conf)
{
	(void)conf;
	return sizeof(struct coral_rsrc);
}

int coral_rsrc_sga_init(void *section, size_t size, const struct coral_conf *conf, const struct coral_node_conf *node)
{
	(void)node;
	if (size < sizeof(struct coral_rsrc))
		return CORAL_ESIZE;
	coral_rsrc_init(section);
	struct coral_rsrc *r = section;
	if (conf->rsrc.px_servers > 0)
		r->px_total = (uint32_t)conf->rsrc.px_servers;
	return 0;
}

void coral_rsrc_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_rsrc *r = section;
	uint64_t n = 0;
	for (size_t i = 0; i < CORAL_RSRC_SESSIONS; i++)
		n += atomic_load(&r->sess[i].pid) != 0;
	*used = n;
	*capacity = CORAL_RSRC_SESSIONS;
}

struct coral_rsrc *coral_rsrc_sga(const struct coral_sga *sga)
{
	size_t size = 0;
	void *p = coral_sga_section(sga, "rsrc", &size);
	return p && size >= sizeof(struct coral_rsrc) ? p : NULL;
}

int coral_rsrc_group_find(const struct coral_rsrc *r, const char *name)
{
	for (uint32_t i = 0; i < r->ngroups && i < CORAL_RSRC_GROUPS; i++)
		if (strncmp(r->groups[i].name, name, CORAL_RSRC_NAME) == 0)
			return (int)i;
	return -1;
}

int coral_rsrc_sess_governing(const struct coral_rsrc *r, int slot)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return -1;
	uint32_t mapped = atomic_load(&r->sess[slot].group);
	if (mapped == 0 || mapped > CORAL_RSRC_GROUPS)
		return -1;
	uint32_t g = atomic_load(&r->groups[mapped - 1].governs);
	return g < CORAL_RSRC_GROUPS ? (int)g : (int)mapped - 1;
}

static int other_group(const struct coral_rsrc *r)
{
	int o = coral_rsrc_group_find(r, "OTHER");
	return o < 0 ? 0 : o;
}

/* A repair after a process died holding a lock of the section: the counts it was changing
 * may be one off; the sweep's reaping puts the pool's places back, so nothing more here. */
static void lock(pthread_mutex_t *m)
{
	coral_mutex_lock(m, NULL, NULL);
}

/* ---- sessions ------------------------------------------------------------------------- */

void coral_rsrc_time_of_week(int *day, int *minute)
{
	time_t t = time(NULL);
	struct tm tm;
	localtime_r(&t, &tm);
	*day = tm.tm_wday;
	*minute = tm.tm_hour * 60 + tm.tm_min;
}

/* With wmu held. */
static void map_locked(struct coral_rsrc *r, struct coral_rsrc_sess *s)
{
	if (atomic_load(&s->rule) <= -2 && atomic_load(&s->group) != 0)
		return; /* switched by an operator or a directive: stays */
	const char *v[CORAL_RSRC_NATTR];
	for (int i = 0; i < CORAL_RSRC_NATTR; i++)
		v[i] = s->attrs[i];
	int day, minute;
	coral_rsrc_time_of_week(&day, &minute);
	int rule = coral_rsrc_map(r->rules, r->nrules, v, day, minute);
	int g = rule >= 0 ? coral_rsrc_group_find(r, r->rules[rule].group) : -1;
	if (g < 0)
		g = other_group(r);
	uint32_t old = atomic_exchange(&s->group, (uint32_t)g + 1);
	if (old != 0)
		atomic_fetch_sub(&r->groups[old - 1].sessions, 1);
	atomic_fetch_add(&r->groups[g].sessions, 1);
	atomic_store(&s->rule, rule);
}

void coral_rsrc_sess_map(struct coral_rsrc *r, int slot)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return;
	lock(&r->wmu);
	if (atomic_load(&r->sess[slot].pid) != 0)
		map_locked(r, &r->sess[slot]);
	coral_mutex_unlock(&r->wmu);
}

void coral_rsrc_sess_set(struct coral_rsrc *r, int slot, int attr, const char *value)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS || attr < 0 || attr >= CORAL_RSRC_NATTR)
		return;
	lock(&r->wmu);
	struct coral_rsrc_sess *s = &r->sess[slot];
	if (atomic_load(&s->pid) != 0) {
		snprintf(s->attrs[attr], CORAL_RSRC_ATTR, "%s", value ? value : "");
		map_locked(r, s);
	}
	coral_mutex_unlock(&r->wmu);
}

/* With wmu held: the slot's session gone, whatever it held given back. */
static bool free_locked(struct coral_rsrc *r, int slot)
{
	struct coral_rsrc_sess *s = &r->sess[slot];
	bool held = coral_rsrc_sess_reap(r, slot);
	uint32_t g = atomic_exchange(&s->group, 0);
	if (g != 0)
		atomic_fetch_sub(&r->groups[g - 1].sessions, 1);
	atomic_store(&s->pid, 0);
	return held;
}

void coral_rsrc_sess_open(struct coral_rsrc *r, int slot, uint32_t id, const char *const attrs[CORAL_RSRC_NATTR])
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return;
	struct coral_rsrc_sess *s = &r->sess[slot];
	lock(&r->wmu);
	if (atomic_load(&s->pid) != 0)
		free_locked(r, slot); /* the cache slot was free: its last process is gone */
	s->id = id;
	s->start = coral_pid_start(getpid());
	for (int i = 0; i < CORAL_RSRC_NATTR; i++)
		snprintf(s->attrs[i], CORAL_RSRC_ATTR, "%s", attrs[i] ? attrs[i] : "");
	atomic_store(&s->rule, -1);
	atomic_store(&s->in_call, 0);
	atomic_store(&s->queued_in, 0);
	atomic_store(&s->admit, 0);
	atomic_store(&s->calls, 0);
	atomic_store(&s->cancel_call, 0);
	atomic_store(&s->ended, 0);
	atomic_store(&s->io_wait_ns, 0);
	atomic_store(&s->since_ns, coral_now_mono_ns());
	atomic_store(&s->tid, (int32_t)gettid());
	atomic_store(&s->pid, (int32_t)getpid());
	map_locked(r, s);
	coral_mutex_unlock(&r->wmu);
}

void coral_rsrc_sess_close(struct coral_rsrc *r, int slot)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return;
	lock(&r->wmu);
	if (atomic_load(&r->sess[slot].pid) == (int32_t)getpid())
		free_locked(r, slot);
	coral_mutex_unlock(&r->wmu);
}

int coral_rsrc_sess_switch(struct coral_rsrc *r, int slot, const char *group, int rule)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return CORAL_ENOENT;
	lock(&r->wmu);
	struct coral_rsrc_sess *s = &r->sess[slot];
	int g = coral_rsrc_group_find(r, group);
	int rc = CORAL_ENOENT;
	if (g >= 0 && atomic_load(&s->pid) != 0) {
		uint32_t old = atomic_exchange(&s->group, (uint32_t)g + 1);
		if (old != 0)
			atomic_fetch_sub(&r->groups[old - 1].sessions, 1);
		atomic_fetch_add(&r->groups[g].sessions, 1);
		atomic_store(&s->rule, rule);
		rc = 0;
	}
	coral_mutex_unlock(&r->wmu);
	return rc;
}

/* ---- the pool --------------------------------------------------------------------------- */

static void note_active(struct coral_rsrc_group *G, uint32_t now)
{
	uint32_t m = atomic_load(&G->active_max);
	while (now > m && !atomic_compare_exchange_weak(&G->active_max, &m, now))
		;
}

/* With G->mu held: queued calls admitted while there is room. */
static void admit_locked(struct coral_rsrc *r, uint32_t g)
{
	struct coral_rsrc_group *G = &r->groups[g];
	while (G->qlen > 0) {
		uint32_t limit = atomic_load(&G->pool);
		if (limit != 0 && atomic_load(&G->active) >= limit)
			break;
		uint16_t t = G->q[G->qhead];
		G->qhead = (G->qhead + 1) % CORAL_RSRC_SESSIONS;
		G->qlen--;
		struct coral_rsrc_sess *s = &r->sess[t];
		note_active(G, atomic_fetch_add(&G->active, 1) + 1);
		atomic_store(&s->in_call, g + 1);
		atomic_store(&s->queued_in, 0);
		atomic_fetch_sub(&G->queued, 1);
		atomic_store(&s->admit, 1);
		coral_futex_wake(&s->admit, 1);
	}
}

void coral_rsrc_group_admit(struct coral_rsrc *r, uint32_t g)
{
	if (g >= CORAL_RSRC_GROUPS)
		return;
	struct coral_rsrc_group *G = &r->groups[g];
	if (atomic_load(&G->queued) == 0)
		return;
	lock(&G->mu);
	admit_locked(r, g);
	coral_mutex_unlock(&G->mu);
}

/* Slot taken out of a FIFO of session slots (under its lock); whether it was there. */
static bool fifo_remove(uint16_t *q, uint32_t head, uint32_t *len, int slot)
{
	for (uint32_t i = 0; i < *len; i++) {
		if (q[(head + i) % CORAL_RSRC_SESSIONS] != slot)
			continue;
		for (uint32_t j = i; j + 1 < *len; j++)
			q[(head + j) % CORAL_RSRC_SESSIONS] = q[(head + j + 1) % CORAL_RSRC_SESSIONS];
		(*len)--;
		return true;
	}
	return false;
}

/* With G->mu held: slot taken out of G's queue; whether it was there. */
static bool unqueue_locked(struct coral_rsrc_group *G, int slot)
{
	if (!fifo_remove(G->q, G->qhead, &G->qlen, slot))
		return false;
	atomic_fetch_sub(&G->queued, 1);
	return true;
}

/* Sleeps on the futex *w until it reads 1 or deadline passes (a second at most a sleep). */
static void wait_admit(_Atomic uint32_t *w, uint64_t deadline)
{
	while (atomic_load(w) != 1) {
		uint64_t now = coral_now_mono_ns();
		if (now >= deadline)
			return;
		int ms = deadline == UINT64_MAX ? 1000 : (int)((deadline - now + 999999) / 1000000);
		coral_futex_wait(w, 0, ms > 1000 ? 1000 : ms);
	}
}

uint64_t coral_rsrc_deadline(uint32_t queue_timeout_ms, int timeout_ms, uint64_t now_ns)
{
	int64_t wait_ms = queue_timeout_ms ? (int64_t)queue_timeout_ms : -1;
	if (timeout_ms >= 0 && (wait_ms < 0 || timeout_ms < wait_ms))
		wait_ms = timeout_ms;
	return wait_ms < 0 ? UINT64_MAX : now_ns + (uint64_t)wait_ms * 1000000ull;
}

int coral_rsrc_call_begin(struct coral_rsrc *r, int slot, int timeout_ms)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return CORAL_EINVAL;
	struct coral_rsrc_sess *s = &r->sess[slot];
	uint32_t mapped = atomic_load(&s->group);
	if (atomic_load(&s->ended))
		return CORAL_ECANCELED;
	if (atomic_load(&s->pid) == 0 || atomic_load(&s->in_call) != 0 || mapped == 0 ||
	    mapped > CORAL_RSRC_GROUPS)
		return CORAL_EINVAL;
	uint32_t g = atomic_load(&r->groups[mapped - 1].governs);
	if (g >= CORAL_RSRC_GROUPS)
		g = mapped - 1;
	struct coral_rsrc_group *G = &r->groups[g];
	uint64_t t0 = coral_now_mono_ns();
	atomic_store(&s->since_ns, t0);
	atomic_fetch_add(&s->calls, 1);
	atomic_fetch_add(&G->calls, 1);
	if (atomic_load(&G->pool) == 0) {
		/* no limit: counted, nothing taken */
		atomic_store(&s->in_call, g + 1);
		note_active(G, atomic_fetch_add(&G->active, 1) + 1);
		return 0;
	}
	lock(&G->mu);
	uint32_t limit = atomic_load(&G->pool);
	if (G->qlen == 0 && (limit == 0 || atomic_load(&G->active) < limit)) {
		atomic_store(&s->in_call, g + 1);
		note_active(G, atomic_fetch_add(&G->active, 1) + 1);
		coral_mutex_unlock(&G->mu);
		return 0;
	}
	atomic_store(&s->admit, 0);
	G->q[(G->qhead + G->qlen) % CORAL_RSRC_SESSIONS] = (uint16_t)slot;
	G->qlen++;
	atomic_fetch_add(&G->queued, 1);
	atomic_fetch_add(&G->queued_total, 1);
	atomic_store(&s->queued_in, g + 1);
	uint32_t qt = atomic_load(&G->queue_timeout_ms);
	coral_mutex_unlock(&G->mu);

	wait_admit(&s->admit, coral_rsrc_deadline(qt, timeout_ms, t0));
	if (atomic_load(&s->admit) != 1) {
		lock(&G->mu);
		bool out = atomic_load(&s->admit) != 1 && unqueue_locked(G, slot);
		if (out) {
			atomic_store(&s->queued_in, 0);
			atomic_fetch_add(&G->timeouts, 1);
		}
		coral_mutex_unlock(&G->mu);
		if (out) {
			atomic_fetch_add(&G->queue_wait_ns, coral_now_mono_ns() - t0);
			return CORAL_ETIMEDOUT;
		}
	}
	uint64_t now = coral_now_mono_ns();
	atomic_fetch_add(&G->queue_wait_ns, now - t0);
	atomic_store(&s->since_ns, now);
	return 0;
}

/* The place of a call in group g+1 given back. */
static void leave(struct coral_rsrc *r, uint32_t g1)
{
	if (g1 == 0 || g1 > CORAL_RSRC_GROUPS)
		return;
	struct coral_rsrc_group *G = &r->groups[g1 - 1];
	if (atomic_load(&G->pool) == 0 && atomic_load(&G->queued) == 0) {
		atomic_fetch_sub(&G->active, 1);
		return;
	}
	lock(&G->mu);
	atomic_fetch_sub(&G->active, 1);
	admit_locked(r, g1 - 1);
	coral_mutex_unlock(&G->mu);
}

int coral_rsrc_call_end(struct coral_rsrc *r, int slot)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return CORAL_EINVAL;
	struct coral_rsrc_sess *s = &r->sess[slot];
	uint32_t g1 = atomic_exchange(&s->in_call, 0);
	if (g1 == 0)
		return CORAL_EINVAL;
	atomic_store(&s->since_ns, coral_now_mono_ns()); /* idle from now */
	leave(r, g1);
	return atomic_load(&s->cancel_call) == atomic_load(&s->calls) ? CORAL_ECANCELED : 0;
}

int coral_rsrc_sess_stopped(const struct coral_rsrc *r, int slot, char *why, size_t whysz)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return 0;
	const struct coral_rsrc_sess *s = &r->sess[slot];
	uint32_t ended = atomic_load(&s->ended);
	if (ended) {
		snprintf(why, whysz, "the resource manager ended this session: %s (rsrcmgrd(8), LIMITS): close it",
			 ended == 1   ? "a call ran past its group's execution-time limit"
			 : ended == 2 ? "it stayed idle past its group's idle limit"
			 : ended == 4 ? "it stayed idle past its group's idle-blocker limit while another session waited "
					"for a lock or a block it held"
				      : "an operator killed it (coralctl rsrc kill)");
		return CORAL_ECANCELED;
	}
	uint64_t c = atomic_load(&s->cancel_call);
	if (c != 0 && c == atomic_load(&s->calls) && atomic_load(&s->in_call) != 0) {
		snprintf(why, whysz, "the resource manager cancelled this call: it ran past its group's execution-time "
			 "limit (rsrcmgrd(8), LIMITS): roll back and end the call");
		return CORAL_ECANCELED;
	}
	return 0;
}

bool coral_rsrc_sess_reap(struct coral_rsrc *r, int slot)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return false;
	struct coral_rsrc_sess *s = &r->sess[slot];
	bool held = false;
	uint32_t q = atomic_load(&s->queued_in);
	if (q != 0 && q <= CORAL_RSRC_GROUPS) {
		struct coral_rsrc_group *G = &r->groups[q - 1];
		lock(&G->mu);
		if (atomic_load(&s->queued_in) == q && unqueue_locked(G, slot)) {
			atomic_store(&s->queued_in, 0);
			held = true;
		}
		coral_mutex_unlock(&G->mu);
	}
	uint32_t g1 = atomic_exchange(&s->in_call, 0);
	if (g1 != 0) {
		atomic_fetch_add(&r->groups[g1 - 1].reaped, 1);
		leave(r, g1);
		held = true;
	}
	/* parallel servers held, or a place in their queue */
	lock(&r->px_mu);
	held |= fifo_remove(r->px_q, r->px_qhead, &r->px_qlen, slot);
	coral_mutex_unlock(&r->px_mu);
	held |= coral_rsrc_px_release(r, slot) != 0;
	return held;
}

int coral_rsrc_sweep(struct coral_rsrc *r)
{
	int n = 0;
	for (int i = 0; i < CORAL_RSRC_SESSIONS; i++) {
		struct coral_rsrc_sess *s = &r->sess[i];
		int32_t pid = atomic_load(&s->pid);
		if (pid <= 0 || coral_pid_start(pid) == s->start)
			continue;
		lock(&r->wmu);
		if (atomic_load(&s->pid) == pid && coral_pid_start(pid) != s->start)
			n += free_locked(r, i);
		coral_mutex_unlock(&r->wmu);
	}
	return n;
}

/* ---- token buckets --------------------------------------------------------------------- */

void coral_rsrc_bucket_init(struct coral_rsrc_bucket *b, double rate, double burst, uint64_t now_ns)
{
	*b = (struct coral_rsrc_bucket){.rate = rate, .burst = burst, .tokens = burst, .at_ns = now_ns};
}

uint64_t coral_rsrc_bucket_take(struct coral_rsrc_bucket *b, double n, uint64_t now_ns)
{
	if (now_ns > b->at_ns) {
		b->tokens += b->rate * (double)(now_ns - b->at_ns) / 1e9;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->at_ns = now_ns;
	}
	if (b->tokens >= n || (n > b->burst && b->tokens >= b->burst)) {
		b->tokens -= n;
		return 0;
	}
	if (b->rate <= 0)
		return UINT64_MAX;
	double need = (n > b->burst ? b->burst : n) - b->tokens;
	uint64_t wait = (uint64_t)ceil(need / b->rate * 1e9);
	b->waited_ns += wait;
	return wait ? wait : 1;
}


/* ---- I/O limits ------------------------------------------------------------------------- */

/* A bucket for rate a second: a tenth of a second's worth at most kept (at least one taking) */
static void io_bucket(struct coral_rsrc_bucket *b, double rate, double least, uint64_t now)
{
	double burst = rate / 10.0 < least ? least : rate / 10.0;
	coral_rsrc_bucket_init(b, rate, burst, now);
}

void coral_rsrc_io_limit(struct coral_rsrc *r, uint32_t g, uint32_t iops, uint32_t mbps)
{
	if (g >= CORAL_RSRC_GROUPS)
		return;
	struct coral_rsrc_group *G = &r->groups[g];
	lock(&G->io_mu);
	uint64_t now = coral_now_mono_ns();
	io_bucket(&G->io_req, iops, 1, now);
	io_bucket(&G->io_byte, (double)mbps * 1048576.0, 8192, now);
	atomic_store(&G->io_iops, iops);
	atomic_store(&G->io_mbps, mbps);
	coral_mutex_unlock(&G->io_mu);
}

uint64_t coral_rsrc_io_charge(struct coral_rsrc *r, int slot, uint32_t reqs, uint64_t bytes)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return 0;
	struct coral_rsrc_sess *s = &r->sess[slot];
	uint32_t mapped = atomic_load(&s->group);
	if (mapped == 0 || mapped > CORAL_RSRC_GROUPS)
		return 0;
	uint32_t g = atomic_load(&r->groups[mapped - 1].governs);
	struct coral_rsrc_group *G = &r->groups[g < CORAL_RSRC_GROUPS ? g : mapped - 1];
	atomic_fetch_add(&G->io_reqs, reqs);
	atomic_fetch_add(&G->io_bytes, bytes);
	uint32_t iops = atomic_load(&G->io_iops), mbps = atomic_load(&G->io_mbps);
	if (iops == 0 && mbps == 0)
		return 0;
	uint64_t waited = 0;
	for (;;) {
		lock(&G->io_mu);
		uint64_t now = coral_now_mono_ns(), w = 0;
		iops = atomic_load(&G->io_iops);
		mbps = atomic_load(&G->io_mbps);
		if (iops && reqs)
			w = coral_rsrc_bucket_take(&G->io_req, reqs, now);
		if (w == 0 && mbps && bytes) {
			w = coral_rsrc_bucket_take(&G->io_byte, (double)bytes, now);
			if (w != 0 && iops && reqs)
				G->io_req.tokens += reqs; /* not taken after all: both or neither */
		}
		coral_mutex_unlock(&G->io_mu);
		if (w == 0)
			break;
		uint64_t nap = w > 100000000ull ? 100000000ull : w;
		struct timespec ts = {(time_t)(nap / 1000000000ull), (long)(nap % 1000000000ull)};
		nanosleep(&ts, NULL);
		waited += nap;
	}
	if (waited) {
		atomic_fetch_add(&G->io_waits, 1);
		atomic_fetch_add(&G->io_wait_ns, waited);
		atomic_fetch_add(&s->io_wait_ns, waited);
	}
	return waited;
}

/* ---- parallel servers --------------------------------------------------------------------- */

/* With px_mu held: the statements at the head of the queue granted while their servers are free. */
static void px_admit_locked(struct coral_rsrc *r)
{
	while (r->px_qlen > 0) {
		uint16_t t = r->px_q[r->px_qhead];
		struct coral_rsrc_sess *s = &r->sess[t];
		if (r->px_used + s->px_want > r->px_total)
			break; /* in order: the head waits, and those behind it */
		r->px_qhead = (r->px_qhead + 1) % CORAL_RSRC_SESSIONS;
		r->px_qlen--;
		r->px_used += s->px_want;
		s->px_held = s->px_want;
		atomic_store(&s->px_admit, 1);
		coral_futex_wake(&s->px_admit, 1);
	}
}

int coral_rsrc_px_request(struct coral_rsrc *r, int slot, uint32_t dop, int timeout_ms, uint32_t *granted)
{
	*granted = 0;
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS || dop < 1)
		return CORAL_EINVAL;
	struct coral_rsrc_sess *s = &r->sess[slot];
	uint32_t mapped = atomic_load(&s->group);
	if (mapped == 0 || mapped > CORAL_RSRC_GROUPS)
		return CORAL_EINVAL;
	uint32_t g = atomic_load(&r->groups[mapped - 1].governs);
	struct coral_rsrc_group *G = &r->groups[g < CORAL_RSRC_GROUPS ? g : mapped - 1];
	atomic_fetch_add(&G->px_requests, 1);
	uint32_t want = dop, cap = atomic_load(&G->max_dop);
	if (cap && want > cap)
		want = cap;
	lock(&r->px_mu);
	if (s->px_held) {
		coral_mutex_unlock(&r->px_mu);
		return CORAL_EINVAL;
	}
	if (want > r->px_total)
		want = r->px_total;
	if (want < dop)
		atomic_fetch_add(&G->px_downgraded, 1);
	s->px_want = want;
	if (r->px_qlen == 0 && r->px_used + want <= r->px_total) {
		r->px_used += want;
		s->px_held = want;
		coral_mutex_unlock(&r->px_mu);
		*granted = want;
		return 0;
	}
	atomic_store(&s->px_admit, 0);
	r->px_q[(r->px_qhead + r->px_qlen) % CORAL_RSRC_SESSIONS] = (uint16_t)slot;
	r->px_qlen++;
	coral_mutex_unlock(&r->px_mu);
	atomic_fetch_add(&G->px_queued, 1);
	wait_admit(&s->px_admit, coral_rsrc_deadline(atomic_load(&G->queue_timeout_ms), timeout_ms, coral_now_mono_ns()));
	lock(&r->px_mu);
	bool admitted = atomic_load(&s->px_admit) == 1;
	if (!admitted) {
		fifo_remove(r->px_q, r->px_qhead, &r->px_qlen, slot);
		px_admit_locked(r); /* those behind it may fit now */
	}
	coral_mutex_unlock(&r->px_mu);
	if (!admitted) {
		atomic_fetch_add(&G->px_timeouts, 1);
		return CORAL_ETIMEDOUT;
	}
	*granted = want;
	return 0;
}

uint32_t coral_rsrc_px_release(struct coral_rsrc *r, int slot)
{
	if (slot < 0 || slot >= CORAL_RSRC_SESSIONS)
		return 0;
	struct coral_rsrc_sess *s = &r->sess[slot];
	lock(&r->px_mu);
	uint32_t held = s->px_held;
	s->px_held = 0;
	r->px_used -= held <= r->px_used ? held : r->px_used;
	px_admit_locked(r);
	coral_mutex_unlock(&r->px_mu);
	return held;
}

/* ---- the node's cgroups, removed ----------------------------------------------------------- */

int coral_rsrc_cgroup_cleanup(const struct coral_conf *conf, uint32_t node)
{
	const char *roots[] = {conf->rsrc.cgroup_root[0] ? conf->rsrc.cgroup_root : "/sys/fs/cgroup/cpu",
			       conf->rsrc.cgroup_root[0] ? NULL : "/sys/fs/cgroup",
			       conf->rsrc.cgroup_root[0] ? NULL : "/sys/fs/cgroup/unified"};
	int n = 0;
	for (size_t i = 0; i < CORAL_ARRAY_LEN(roots); i++) {
		if (roots[i] == NULL)
			continue;
		char base[CORAL_STR_MAX + 96];
		snprintf(base, sizeof(base), "%s/coral-%s-n%u", roots[i], conf->cluster.name, node);
		DIR *d = opendir(base);
		if (d == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.' || e->d_type != DT_DIR)
				continue;
			char p[2 * CORAL_STR_MAX + 128];
			snprintf(p, sizeof(p), "%s/%s", base, e->d_name);
			n += rmdir(p) == 0;
		}
		closedir(d);
		n += rmdir(base) == 0;
	}
	return n;
}

/* The proc table section of the SGA (see proc.h). */
#include "proc.h"
#include "errors.h"
#include "util.h"

#include <string.h>

static const char *const coral__proc_states[CORAL_PROC_NSTATES] = {
	"empty", "starting", "ready", "stopping", "stopped", "restarting", "failed",
};
static const char *const coral__node_states[CORAL_NODE_NSTATES] = {
	"down", "starting", "running", "degraded", "stopping",
};

const char *coral_proc_state_name(int s)
{
	return s >= 0 && s < CORAL_PROC_NSTATES ? coral__proc_states[s] : "?";
}

const char *coral_node_state_name(int s)
{
	return s >= 0 && s < CORAL_NODE_NSTATES ? coral__node_states[s] : "?";
}

size_t coral_proc_sga_size(const struct coral_conf *conf)
{
	(void)conf;
	return sizeof(struct coral_proc_table);
}

int coral_proc_sga_init(void *section, size_t size, const struct coral_conf *conf,
			const struct coral_node_conf *node)
{
	(void)conf;
	(void)node;
	struct coral_proc_table *t = section;
	if (size < sizeof(*t))
		return CORAL_ESIZE;
	memset(t, 0, sizeof(*t));
	t->nslots = CORAL_NDAEMONS;
	return coral_mutex_init_shared(&t->mu);
}

void coral_proc_sga_fill(const void *section, uint64_t *used, uint64_t *capacity)
{
	const struct coral_proc_table *t = section;
	*capacity = t->nslots;
	*used = 0;
	for (uint32_t i = 0; i < t->nslots && i < CORAL_NDAEMONS; i++)
		if (__atomic_load_n(&t->slots[i].pid, __ATOMIC_RELAXED) != 0)
			(*used)++;
}

struct coral_proc_table *coral_proc_table(const struct coral_sga *sga)
{
	size_t sz;
	struct coral_proc_table *t = coral_sga_section(sga, "proc", &sz);
	return (t && sz >= sizeof(*t)) ? t : NULL;
}

void coral_proc_repair(void *arg)
{
	struct coral_proc_table *t = arg;
	coral_seq_repair(&t->seq);
	for (int i = 0; i < CORAL_NDAEMONS; i++)
		coral_seq_repair(&t->slots[i].seq);
}

int coral_proc_lock(struct coral_proc_table *t)
{
	return coral_mutex_lock(&t->mu, coral_proc_repair, t);
}

void coral_proc_unlock(struct coral_proc_table *t)
{
	coral_mutex_unlock(&t->mu);
}

static bool coral__slot_ok(int daemon)
{
	return daemon >= 0 && daemon < CORAL_NDAEMONS;
}

/* Takes the table lock; true when held (also after an EOWNERDEAD repair). */
static bool coral__lock(struct coral_proc_table *t)
{
	int rc = coral_proc_lock(t);
	return rc == 0 || rc == CORAL_EOWNERDEAD;
}

/* A new process in a slot: pid, starting, start times, fresh heartbeat. The supervisor
 * calls it at spawn (so a daemon dying before it registers is still attributed, and the
 * restart counted); the daemon again when it registers (fresh counters). */
static int coral__slot_begin(struct coral_proc_table *t, int daemon, pid_t pid, bool restart,
			     bool reset_counters)
{
	if (!coral__slot_ok(daemon))
		return CORAL_EINVAL;
	struct coral_proc_slot *s = &t->slots[daemon];
	if (!coral__lock(t))
		return CORAL_ESYS;
	/* the supervisor's record of a fork comes after the child runs: the child may have
	 * registered, even become ready, already (its pid is in the slot), and its state is the
	 * newer one; writing STARTING over READY left the supervisor waiting for a readiness
	 * that had come (a node failed to start in about one test run in five) */
	if (!reset_counters && s->pid == pid) {
		if (restart) {
			coral_seq_write_begin(&s->seq);
			s->restarts++;
			coral_seq_write_end(&s->seq);
		}
		coral_proc_unlock(t);
		return 0;
	}
	coral_seq_write_begin(&s->seq);
	s->pid = pid;
	s->state = CORAL_PROC_STARTING;
	s->start_real_ns = coral_now_real_ns();
	s->start_mono_ns = coral_now_mono_ns();
	if (restart)
		s->restarts++;
	coral_seq_write_end(&s->seq);
	atomic_store(&s->heartbeat_mono_ns, coral_now_mono_ns());
	if (reset_counters) {
		atomic_store(&s->requests, 0);
		atomic_store(&s->refused, 0);
		atomic_store(&s->clients, 0);
	}
	coral_proc_unlock(t);
	return 0;
}

int coral_proc_register(struct coral_proc_table *t, int daemon, pid_t pid)
{
	return coral__slot_begin(t, daemon, pid, false, true);
}

void coral_proc_set_state(struct coral_proc_table *t, int daemon, enum coral_proc_state st,
			  const char *note)
{
	if (!coral__slot_ok(daemon))
		return;
	struct coral_proc_slot *s = &t->slots[daemon];
	if (!coral__lock(t))
		return;
	coral_seq_write_begin(&s->seq);
	s->state = st;
	if (note)
		coral_strlcpy(s->note, note, sizeof(s->note));
	if (st == CORAL_PROC_STOPPED || st == CORAL_PROC_FAILED || st == CORAL_PROC_RESTARTING)
		s->pid = 0;
	coral_seq_write_end(&s->seq);
	coral_proc_unlock(t);
}

void coral_proc_heartbeat(struct coral_proc_table *t, int daemon)
{
	if (coral__slot_ok(daemon))
		atomic_store_explicit(&t->slots[daemon].heartbeat_mono_ns, coral_now_mono_ns(),
				      memory_order_relaxed);
}

void coral_proc_spawned(struct coral_proc_table *t, int daemon, pid_t pid, bool is_restart)
{
	coral__slot_begin(t, daemon, pid, is_restart, false);
}

void coral_proc_set_node(struct coral_proc_table *t, enum coral_node_state st, const char *reason,
			 pid_t supervisor)
{
	if (!coral__lock(t))
		return;
	coral_seq_write_begin(&t->seq);
	t->node_state = st;
	if (reason)
		coral_strlcpy(t->reason, reason, sizeof(t->reason));
	if (supervisor > 0)
		t->supervisor_pid = supervisor;
	coral_seq_write_end(&t->seq);
	coral_proc_unlock(t);
}

void coral_proc_snapshot(const struct coral_proc_table *t, struct coral_proc_snapshot *out)
{
	uint32_t v;
	do {
		v = coral_seq_read_begin(&t->seq);
		out->supervisor_pid = t->supervisor_pid;
		out->node_state = t->node_state;
		memcpy(out->reason, t->reason, sizeof(out->reason));
	} while (coral_seq_read_retry(&t->seq, v));
	out->reason[sizeof(out->reason) - 1] = '\0';
	for (int i = 0; i < CORAL_NDAEMONS; i++) {
		const struct coral_proc_slot *s = &t->slots[i];
		do {
			v = coral_seq_read_begin(&s->seq);
			out->slot[i].pid = s->pid;
			out->slot[i].state = s->state;
			out->slot[i].start_real_ns = s->start_real_ns;
			out->slot[i].start_mono_ns = s->start_mono_ns;
			out->slot[i].restarts = s->restarts;
			memcpy(out->slot[i].note, s->note, sizeof(out->slot[i].note));
		} while (coral_seq_read_retry(&s->seq, v));
		out->slot[i].note[sizeof(out->slot[i].note) - 1] = '\0';
		out->slot[i].heartbeat_mono_ns = atomic_load(&s->heartbeat_mono_ns);
		out->slot[i].requests = atomic_load(&s->requests);
		out->slot[i].refused = atomic_load(&s->refused);
		out->slot[i].clients = atomic_load(&s->clients);
	}
}

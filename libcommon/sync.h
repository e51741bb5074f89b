/* Cross-process synchronisation in the SGA: robust process-shared mutexes whose
 * EOWNERDEAD path repairs the protected structure instead of hanging, and a sequence
 * counter for readers that must not block (and may be read-only mappings). */
#ifndef CORAL_SYNC_H
#define CORAL_SYNC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

int coral_mutex_init_shared(pthread_mutex_t *m);

/* Locks m. If the previous owner died holding it, calls repair(arg) with the lock held,
 * marks the mutex consistent and returns CORAL_EOWNERDEAD (the caller holds the lock).
 * Returns 0 normally, or CORAL_ESYS if the mutex cannot be recovered. */
int coral_mutex_lock(pthread_mutex_t *m, void (*repair)(void *arg), void *arg);
void coral_mutex_unlock(pthread_mutex_t *m);

/* A futex on a word of shared memory: sleeps while *addr is val, up to timeout_ms (negative:
 * no bound); wakes up to n sleepers. */
void coral_futex_wait(_Atomic uint32_t *addr, uint32_t val, int timeout_ms);
void coral_futex_wake(_Atomic uint32_t *addr, int n);

/* Sequence counter: odd while a write is in progress. Writers must already be serialised
 * (by a mutex); readers retry until they saw an even, unchanged value. */
struct coral_seq {
	_Atomic uint32_t v;
};

static inline void coral_seq_write_begin(struct coral_seq *s)
{
	atomic_fetch_add_explicit(&s->v, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static inline void coral_seq_write_end(struct coral_seq *s)
{
	atomic_thread_fence(memory_order_release);
	atomic_fetch_add_explicit(&s->v, 1, memory_order_relaxed);
}

static inline uint32_t coral_seq_read_begin(const struct coral_seq *s)
{
	uint32_t v;
	while ((v = atomic_load_explicit(&s->v, memory_order_acquire)) & 1u)
		;
	return v;
}

static inline bool coral_seq_read_retry(const struct coral_seq *s, uint32_t start)
{
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&s->v, memory_order_relaxed) != start;
}

/* After a writer died mid-write (found through EOWNERDEAD), makes the counter even. */
static inline void coral_seq_repair(struct coral_seq *s)
{
	if (atomic_load_explicit(&s->v, memory_order_relaxed) & 1u)
		atomic_fetch_add_explicit(&s->v, 1, memory_order_release);
}

#endif

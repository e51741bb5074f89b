/* Robust process-shared mutexes (see sync.h). */
#include "sync.h"
#include "errors.h"
#include "log.h"

#include <errno.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int coral_mutex_init_shared(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	if (pthread_mutexattr_init(&a) != 0)
		return CORAL_ESYS;
	int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (rc == 0)
		rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (rc == 0)
		rc = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return rc == 0 ? 0 : CORAL_ESYS;
}

int coral_mutex_lock(pthread_mutex_t *m, void (*repair)(void *arg), void *arg)
{
	int rc = pthread_mutex_lock(m);
	if (rc == 0)
		return 0;
	if (rc == EOWNERDEAD) {
		log_warn("a process died holding a shared lock; repairing the structure it protects");
		if (repair)
			repair(arg);
		if (pthread_mutex_consistent(m) != 0) {
			log_error("shared lock could not be made consistent: %s", strerror(errno));
			pthread_mutex_unlock(m);
			return CORAL_ESYS;
		}
		return CORAL_EOWNERDEAD;
	}
	log_error("shared lock failed: %s", strerror(rc));
	return CORAL_ESYS;
}

void coral_mutex_unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
}

void coral_futex_wait(_Atomic uint32_t *addr, uint32_t val, int timeout_ms)
{
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, timeout_ms >= 0 ? &ts : NULL, NULL, 0);
}

void coral_futex_wake(_Atomic uint32_t *addr, int n)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* bench_util.h: what the benchmark programs share: medians and percentiles of samples, a
 * loopback TCP pair and a raw request/reply round trip over it (the floor every daemon round
 * trip is judged against). Header-only: each benchmark is one program. */
#ifndef CORAL_BENCH_UTIL_H
#define CORAL_BENCH_UTIL_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The p-quantile (0..1) of n samples (sorts them). */
static inline uint64_t bench_pct(uint64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), bench_cmp_u64);
	return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

static inline uint64_t bench_median(uint64_t *v, size_t n) { return bench_pct(v, n, 0.5); }

struct bench_pair {
	int a, b;
};

/* Two connected loopback TCP sockets with Nagle off (as every Coral connection). */
static inline int bench_tcp_pair(struct bench_pair *p)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	p->a = p->b = -1;
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 1) != 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) != 0) {
		if (l >= 0)
			close(l);
		return -1;
	}
	p->a = socket(AF_INET, SOCK_STREAM, 0);
	if (p->a < 0 || connect(p->a, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(l);
		return -1;
	}
	p->b = accept(l, NULL, NULL);
	close(l);
	int one = 1;
	setsockopt(p->a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(p->b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return p->b < 0 ? -1 : 0;
}

static inline int bench_full_io(int fd, void *buf, size_t n, bool wr)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t k = wr ? write(fd, p, n) : read(fd, p, n);
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* A raw round trip: `req` bytes one way, `reply` bytes back, answered by a thread (on CPU
 * server_cpu if it is not negative: see bench_rt_start_on). */
#define BENCH_RT_MAX 65536
struct bench_rt {
	struct bench_pair p;
	pthread_t th;
	size_t req, reply;
	int server_cpu;
	_Atomic int server_pin_failed;  /* set by the answering thread if it could not be pinned */
	uint8_t sbuf[BENCH_RT_MAX], cbuf[BENCH_RT_MAX];
};

/* Keeps the calling thread on one CPU (cpu >= 0), or gives it back the CPUs the process
 * started with (cpu < 0: not every online one, so a run under taskset stays inside it). */
static inline int bench_pin(int cpu)
{
	static cpu_set_t start;
	static int have_start;
	if (!have_start) {
		if (sched_getaffinity(0, sizeof(start), &start) != 0)
			return -1;
		have_start = 1;
	}
	cpu_set_t set = start;
	if (cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
	}
	return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0 ? 0 : -1;
}

static inline void *bench_rt_server(void *arg)
{
	struct bench_rt *rt = arg;
	if (rt->server_cpu >= 0 && bench_pin(rt->server_cpu) != 0)
		rt->server_pin_failed = 1;
	while (bench_full_io(rt->p.b, rt->sbuf, rt->req, false) == 0 &&
	       bench_full_io(rt->p.b, rt->sbuf, rt->reply, true) == 0)
		;
	return NULL;
}

/* The answering thread stays on CPU server_cpu (negative: anywhere). The caller pins its own
 * side with bench_pin around its bench_rt_once calls. */
static inline int bench_rt_start_on(struct bench_rt *rt, size_t req, size_t reply, int server_cpu)
{
	if (req == 0 || req > BENCH_RT_MAX || reply == 0 || reply > BENCH_RT_MAX || bench_tcp_pair(&rt->p) != 0)
		return -1;
	rt->req = req;
	rt->reply = reply;
	rt->server_cpu = server_cpu;
	rt->server_pin_failed = 0;
	return pthread_create(&rt->th, NULL, bench_rt_server, rt) == 0 ? 0 : -1;
}

static inline int bench_rt_start(struct bench_rt *rt, size_t req, size_t reply)
{
	return bench_rt_start_on(rt, req, reply, -1);
}

static inline int bench_rt_once(struct bench_rt *rt)
{
	if (bench_full_io(rt->p.a, rt->cbuf, rt->req, true) != 0 || bench_full_io(rt->p.a, rt->cbuf, rt->reply, false) != 0)
		return -1;
	return 0;
}

static inline void bench_rt_stop(struct bench_rt *rt)
{
	close(rt->p.a);
	pthread_join(rt->th, NULL);
	close(rt->p.b);
}

#endif

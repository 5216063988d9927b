/* tsan-thrd.c: under ThreadSanitizer only, C11 threads (thrd_*, mtx_*, cnd_*, call_once)
 * through the pthread calls that TSan intercepts.
 *
 * Debian's librdkafka starts its threads (rdk:main, rdk:broker-N, and the mock cluster's
 * rdk:mock) with C11 thrd_create(). glibc implements that with an internal call to its own
 * pthread_create, which ThreadSanitizer does not intercept, and TSan has no thrd_create
 * interceptor (google/sanitizers#1195 and #1603, still open in LLVM 14-22): such a thread has no
 * TSan state, and its first malloc() through TSan's allocator dies with SEGV near address 0
 * ("ThreadSanitizer: SEGV on unknown address 0x000000000c38 ... T<rdk:mock>", then "nested bug
 * in the same thread, aborting", exit 66). sagad-kafka-mock hit it at startup with topics and,
 * without, at shutdown, when rd_kafka_mock_cluster_destroy() makes rdk:mock free its brokers.
 *
 * Defined in the program, these functions interpose glibc's for librdkafka (which calls them
 * through its PLT). thrd_create() alone stops the SEGV, but TSan then reports every librdkafka
 * thread as leaked (its thrd_join() is not seen) and races between librdkafka's own malloc()
 * and free() in different threads (its mtx_lock()/cnd_wait() are not seen either); with all of
 * them routed, TSan reports only what is ours. In glibc thrd_t is a pthread_t and mtx_t, cnd_t,
 * once_flag have the pthread types' layout; the start routine's int result travels as the
 * pointer-sized exit value. Other builds compile nothing here. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SAGAD_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SAGAD_TSAN 1
#endif

#ifdef SAGAD_TSAN
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

/* What the new thread runs; freed by the thread itself. */
struct thrd_start {
	thrd_start_t func;
	void *arg;
};

static void *thrd_trampoline(void *p)
{
	struct thrd_start s = *(struct thrd_start *)p;

	free(p);
	return (void *)(intptr_t)s.func(s.arg);
}

/* glibc's thrd_err_map(). */
static int thrd_err(int rc)
{
	switch (rc) {
	case 0: return thrd_success;
	case ENOMEM: return thrd_nomem;
	case EBUSY: return thrd_busy;
	case ETIMEDOUT: return thrd_timedout;
	default: return thrd_error;
	}
}

int thrd_create(thrd_t *thr, thrd_start_t func, void *arg)
{
	struct thrd_start *s = malloc(sizeof(*s));
	int rc;

	if (!s)
		return thrd_nomem;
	s->func = func;
	s->arg = arg;
	rc = pthread_create((pthread_t *)thr, NULL, thrd_trampoline, s);
	if (rc != 0)
		free(s);
	return thrd_err(rc);
}

int thrd_join(thrd_t thr, int *res)
{
	void *v;
	int rc = pthread_join((pthread_t)thr, &v);

	if (rc == 0 && res)
		*res = (int)(intptr_t)v;
	return thrd_err(rc);
}

int thrd_detach(thrd_t thr)
{
	return thrd_err(pthread_detach((pthread_t)thr));
}

/* In glibc mtx_t, cnd_t and once_flag have the layout of pthread_mutex_t, pthread_cond_t and
 * pthread_once_t, and its C11 functions are these calls (C11 threads in nptl). */
_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is a pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is a pthread_cond_t");
_Static_assert(sizeof(once_flag) == sizeof(pthread_once_t), "once_flag is a pthread_once_t");

int mtx_init(mtx_t *m, int type)
{
	pthread_mutexattr_t a;
	int rc;

	pthread_mutexattr_init(&a);
	if (type & mtx_recursive)
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
	pthread_mutexattr_destroy(&a);
	return thrd_err(rc);
}

int mtx_lock(mtx_t *m)
{
	return thrd_err(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
	return thrd_err(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
	return thrd_err(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_unlock(mtx_t *m)
{
	return thrd_err(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
	pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
	return thrd_err(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
	return thrd_err(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
	return thrd_err(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
	return thrd_err(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
	return thrd_err(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
	pthread_cond_destroy((pthread_cond_t *)c);
}

void call_once(once_flag *flag, void (*func)(void))
{
	pthread_once((pthread_once_t *)flag, func);
}
#else
/* ISO C wants a declaration in every translation unit. */
typedef int tsan_thrd_unused;
#endif

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of coroutines: enter/yield, wake-ups, CoQueue, CoMutex, sleeping,
 * cross-thread scheduling and the checks for misuse.
 *
 * Built twice: against the default switch and, as test-coroutine-ucontext,
 * against the portable swapcontext one.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "coroutine.h"
#include "iothread.h"
#include "test-util.h"

/* ---- enter / yield ---------------------------------------------------- */

struct trace {
	char buf[256];
	int n;
};

static void trace_add(struct trace *t, char c)
{
	assert_true(t->n < (int)sizeof(t->buf) - 1);
	t->buf[t->n++] = c;
	t->buf[t->n] = '\0';
}

static void coroutine_fn yield_twice(void *opaque)
{
	struct trace *t = opaque;

	assert_true(in_coroutine());
	trace_add(t, 'a');
	co_yield();
	trace_add(t, 'b');
	co_yield();
	trace_add(t, 'c');
}

static void test_enter_yield_resume_finish(void **state)
{
	struct trace t = { .n = 0 };
	struct coroutine *co = co_create(yield_twice, &t);

	assert_non_null(co);
	assert_false(in_coroutine());
	assert_null(co_self());
	co_enter(co);
	trace_add(&t, '1');
	co_enter(co);
	trace_add(&t, '2');
	co_enter(co);      /* runs to the end; co is freed */
	trace_add(&t, '3');
	assert_string_equal(t.buf, "a1b2c3");
}

struct pingpong {
	struct coroutine *a, *b;
	struct trace t;
	int rounds;
	int finished;
};

static void coroutine_fn ping(void *opaque)
{
	struct pingpong *p = opaque;

	for (int i = 0; i < p->rounds; i++) {
		trace_add(&p->t, 'A');
		/* From a coroutine, a wake-up runs once we yield. */
		co_wake(p->b);
		co_yield();
	}
	p->finished++;
}

static void coroutine_fn pong(void *opaque)
{
	struct pingpong *p = opaque;

	for (int i = 0; i < p->rounds; i++) {
		trace_add(&p->t, 'B');
		if (i + 1 == p->rounds)
			break;
		co_wake(p->a);
		co_yield();
	}
	/* ping waits in its last yield: let it finish after us. */
	co_wake(p->a);
	p->finished++;
}

static void test_pingpong_keeps_order(void **state)
{
	struct pingpong p = { .rounds = 20 };

	p.a = co_create(ping, &p);
	p.b = co_create(pong, &p);
	assert_non_null(p.a);
	assert_non_null(p.b);
	/* One enter drives the whole exchange through wake-up lists. */
	co_enter(p.a);
	assert_int_equal(p.finished, 2);
	assert_int_equal(p.t.n, 40);
	for (int i = 0; i < 40; i++)
		assert_int_equal(p.t.buf[i], i % 2 ? 'B' : 'A');
}

struct nest {
	struct trace t;
	struct coroutine *inner;
};

static void coroutine_fn inner_fn(void *opaque)
{
	struct nest *n = opaque;

	trace_add(&n->t, 'i');
	co_yield();
	trace_add(&n->t, 'j');
}

static void coroutine_fn outer_fn(void *opaque)
{
	struct nest *n = opaque;

	trace_add(&n->t, 'o');
	/* Entering from a coroutine nests: inner's yield returns here. */
	co_enter(n->inner);
	trace_add(&n->t, 'p');
	co_enter(n->inner);
	trace_add(&n->t, 'q');
}

static void test_nested_enter_returns_to_coroutine(void **state)
{
	struct nest n = { .t = { .n = 0 } };
	struct coroutine *outer = co_create(outer_fn, &n);

	n.inner = co_create(inner_fn, &n);
	co_enter(outer);
	assert_string_equal(n.t.buf, "oipjq");
}

static atomic_int live_count;

static void coroutine_fn count_and_yield(void *opaque)
{
	bool *yield = opaque;

	atomic_fetch_add(&live_count, 1);
	if (*yield)
		co_yield();
	atomic_fetch_sub(&live_count, 1);
}

#ifdef VDISK_TSAN
/* TSan maps a trace per fiber: 10,000 live ones exceed vm.max_map_count. */
# define LIVE_COROUTINES 1000
#else
# define LIVE_COROUTINES 10000
#endif

static void test_10000_coroutines_created_and_freed(void **state)
{
	enum { N = 10000 };
	struct coroutine **cos = calloc(N, sizeof(*cos));
	bool yield = false;

	assert_non_null(cos);
	/* One after another: the pool recycles them. */
	for (int i = 0; i < N; i++) {
		struct coroutine *co = co_create(count_and_yield, &yield);

		assert_non_null(co);
		co_enter(co);
	}
	assert_int_equal(atomic_load(&live_count), 0);

	/* All alive at once: 10,000 stacks, each finished later.  The
	 * sanitizer build and valgrind check that none leaks. */
	yield = true;
	for (int i = 0; i < LIVE_COROUTINES; i++) {
		cos[i] = co_create(count_and_yield, &yield);
		assert_non_null(cos[i]);
		co_enter(cos[i]);
	}
	assert_int_equal(atomic_load(&live_count), LIVE_COROUTINES);
	for (int i = 0; i < LIVE_COROUTINES; i++)
		co_enter(cos[i]);
	assert_int_equal(atomic_load(&live_count), 0);

	/* Created but never entered. */
	co_free_unstarted(co_create(count_and_yield, &yield));
	co_free_unstarted(NULL);
	free(cos);
}

/* ---- CoQueue and CoMutex ---------------------------------------------- */

struct queue_test {
	struct co_queue q;
	int woken[16];
	int nwoken;
};

struct queue_arg {
	struct queue_test *qt;
	int id;
};

static void coroutine_fn queue_waiter(void *opaque)
{
	struct queue_arg *a = opaque;

	co_queue_wait(&a->qt->q);
	a->qt->woken[a->qt->nwoken++] = a->id;
}

static void test_coqueue_wakes_fifo(void **state)
{
	struct queue_test qt = { .nwoken = 0 };
	struct queue_arg args[10];

	co_queue_init(&qt.q);
	assert_true(co_queue_empty(&qt.q));
	assert_false(co_queue_wake_one(&qt.q));
	for (int i = 0; i < 10; i++) {
		args[i] = (struct queue_arg){ &qt, i };
		co_enter(co_create(queue_waiter, &args[i]));
	}
	assert_false(co_queue_empty(&qt.q));
	assert_int_equal(qt.nwoken, 0);
	/* Three one at a time, then the rest at once: arrival order. */
	for (int i = 0; i < 3; i++) {
		assert_true(co_queue_wake_one(&qt.q));
		assert_int_equal(qt.nwoken, i + 1);
	}
	co_queue_wake_all(&qt.q);
	assert_true(co_queue_empty(&qt.q));
	assert_int_equal(qt.nwoken, 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(qt.woken[i], i);
}

struct mutex_test {
	struct co_mutex m;
	struct co_queue gate;
	int inside;
	int max_inside;
	int order[8];
	int norder;
};

struct mutex_arg {
	struct mutex_test *mt;
	int id;
};

static void coroutine_fn mutex_user(void *opaque)
{
	struct mutex_arg *a = opaque;
	struct mutex_test *mt = a->mt;

	co_mutex_lock(&mt->m);
	mt->order[mt->norder++] = a->id;
	mt->inside++;
	if (mt->inside > mt->max_inside)
		mt->max_inside = mt->inside;
	/* Hold the lock across a yield so the others must queue. */
	co_queue_wait(&mt->gate);
	mt->inside--;
	co_mutex_unlock(&mt->m);
}

static void test_comutex_excludes_and_is_fair(void **state)
{
	struct mutex_test mt = { .inside = 0 };
	struct mutex_arg args[8];

	co_mutex_init(&mt.m);
	co_queue_init(&mt.gate);
	for (int i = 0; i < 8; i++) {
		args[i] = (struct mutex_arg){ &mt, i };
		co_enter(co_create(mutex_user, &args[i]));
	}
	/* Only the first got in; the rest wait on the mutex. */
	assert_int_equal(mt.norder, 1);
	for (int i = 1; i <= 8; i++) {
		/* Let the holder go: it unlocks, the next takes over. */
		assert_true(co_queue_wake_one(&mt.gate));
		assert_int_equal(mt.norder, i < 8 ? i + 1 : 8);
	}
	assert_int_equal(mt.max_inside, 1);
	for (int i = 0; i < 8; i++)
		assert_int_equal(mt.order[i], i);
	assert_null(mt.m.holder);
	co_mutex_destroy(&mt.m);
}

/* ---- sleeping --------------------------------------------------------- */

struct sleeper {
	uint64_t ns;
	uint64_t slept;
	bool done;
};

static void coroutine_fn sleeper_fn(void *opaque)
{
	struct sleeper *s = opaque;
	uint64_t start = loop_now_ns();

	co_sleep_ns(s->ns);
	s->slept = loop_now_ns() - start;
	s->done = true;
}

static void test_sleep_wakes_after_deadline(void **state)
{
	struct loop *ctx;
	struct sleeper s[3] = {
		{ .ns = 30000000 }, { .ns = 10000000 }, { .ns = 20000000 }
	};

	assert_int_equal(loop_new(&ctx), 0);
	loop_set_current(ctx);
	for (int i = 0; i < 3; i++)
		co_enter(co_create(sleeper_fn, &s[i]));
	while (!(s[0].done && s[1].done && s[2].done))
		loop_poll(ctx, true);
	for (int i = 0; i < 3; i++)
		assert_true(s[i].slept >= s[i].ns);
	loop_set_current(NULL);
	loop_free(ctx);
}

/* ---- cross-thread ----------------------------------------------------- */

#define XT_COROUTINES 64
#define XT_WAKERS 3
#define XT_TOTAL 100000

struct xt_slot {
	struct coroutine *co;
	atomic_int ready;        /* 1: yielded and waiting for a wake */
	atomic_int wakes;        /* wake-ups issued to it */
	int resumes;             /* iothread only */
	struct loop *ran_in;     /* iothread only */
	bool bad_ctx;
};

struct xt {
	struct loop *ctx;
	struct xt_slot slot[XT_COROUTINES];
	atomic_int issued;       /* wake-ups claimed by wakers */
	atomic_int resumed;      /* resumes done, all slots */
	atomic_bool stop;
	atomic_int started;
};

struct xt_arg {
	struct xt *x;
	int i;
};

static void coroutine_fn xt_coroutine(void *opaque)
{
	struct xt_arg *a = opaque;
	struct xt_slot *s = &a->x->slot[a->i];

	atomic_fetch_add(&a->x->started, 1);
	for (;;) {
		/* Publish "ready" before yielding: a waker that sees it
		 * schedules us into our own context, which cannot enter us
		 * until this yield has happened. */
		atomic_store(&s->ready, 1);
		co_yield();
		if (atomic_load(&a->x->stop))
			return;
		if (loop_get_current() != a->x->ctx)
			s->bad_ctx = true;
		s->resumes++;
		atomic_fetch_add(&a->x->resumed, 1);
	}
}

static void xt_start_bh(void *opaque)
{
	struct xt_arg *a = opaque;

	a->x->slot[a->i].co = co_create(xt_coroutine, a);
	co_enter(a->x->slot[a->i].co);
}

static void *xt_waker(void *opaque)
{
	struct xt *x = opaque;
	unsigned seed = (unsigned)(uintptr_t)&seed;

	while (atomic_load(&x->issued) < XT_TOTAL) {
		int i = (int)(rand_r(&seed) % XT_COROUTINES);
		int one = 1;

		if (!atomic_compare_exchange_strong(&x->slot[i].ready, &one, 0))
			continue;
		if (atomic_fetch_add(&x->issued, 1) >= XT_TOTAL) {
			/* Over the total: give the claim back. */
			atomic_store(&x->slot[i].ready, 1);
			break;
		}
		atomic_fetch_add(&x->slot[i].wakes, 1);
		co_wake(x->slot[i].co);
	}
	return NULL;
}

static void test_cross_thread_wakes_lose_none(void **state)
{
	struct iothread *io;
	struct xt *x = calloc(1, sizeof(*x));
	struct xt_arg args[XT_COROUTINES];
	pthread_t th[XT_WAKERS];
	unsigned long long end;
	int total = 0;

	assert_non_null(x);
	assert_int_equal(iothread_new(0, &io), 0);
	x->ctx = iothread_get_ctx(io);
	for (int i = 0; i < XT_COROUTINES; i++) {
		args[i] = (struct xt_arg){ x, i };
		assert_int_equal(loop_bh_schedule_oneshot(x->ctx, xt_start_bh,
							  &args[i]), 0);
	}
	end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	while (atomic_load(&x->started) < XT_COROUTINES && test_now_ns() < end)
		sched_yield();
	assert_int_equal(atomic_load(&x->started), XT_COROUTINES);

	for (int i = 0; i < XT_WAKERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, xt_waker, x), 0);
	for (int i = 0; i < XT_WAKERS; i++)
		pthread_join(th[i], NULL);

	/* Every wake-up issued is one resume: wait for the last ones. */
	end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	while (atomic_load(&x->resumed) < XT_TOTAL && test_now_ns() < end)
		sched_yield();
	assert_int_equal(atomic_load(&x->resumed), XT_TOTAL);

	/* Stop: each coroutine is ready again after its last resume. */
	atomic_store(&x->stop, true);
	for (int i = 0; i < XT_COROUTINES; i++) {
		int one = 1;

		end = test_now_ns() + TEST_WAIT_LIMIT_NS;
		while (!atomic_compare_exchange_strong(&x->slot[i].ready, &one, 0) &&
		       test_now_ns() < end) {
			one = 1;
			sched_yield();
		}
		assert_int_equal(one, 1);
		co_wake(x->slot[i].co);
	}
	iothread_free(io);   /* runs the final wake-ups, then joins */

	for (int i = 0; i < XT_COROUTINES; i++) {
		assert_int_equal(x->slot[i].resumes,
				 atomic_load(&x->slot[i].wakes));
		assert_false(x->slot[i].bad_ctx);
		total += x->slot[i].resumes;
	}
	assert_int_equal(total, XT_TOTAL);
	free(x);
}

struct hop {
	struct loop *a, *b;
	int hops;
	int wrong;
	atomic_bool done;
};

static void coroutine_fn hopper(void *opaque)
{
	struct hop *h = opaque;

	for (int i = 0; i < h->hops; i++) {
		struct loop *to = i % 2 ? h->a : h->b;

		co_reschedule_self(to);
		if (loop_get_current() != to || co_get_ctx(co_self()) != to)
			h->wrong++;
	}
	atomic_store(&h->done, true);
}

static void hop_start_bh(void *opaque)
{
	co_enter(co_create(hopper, opaque));
}

static void test_reschedule_self_moves_between_threads(void **state)
{
	struct iothread *ia, *ib;
	struct hop h = { .hops = 1000 };
	unsigned long long end;

	assert_int_equal(iothread_new(1, &ia), 0);
	assert_int_equal(iothread_new(2, &ib), 0);
	h.a = iothread_get_ctx(ia);
	h.b = iothread_get_ctx(ib);
	assert_int_equal(loop_bh_schedule_oneshot(h.a, hop_start_bh, &h), 0);
	end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	while (!atomic_load(&h.done) && test_now_ns() < end)
		sched_yield();
	assert_true(atomic_load(&h.done));
	iothread_free(ia);
	iothread_free(ib);
	assert_int_equal(h.wrong, 0);
}

/* ---- misuse aborts ---------------------------------------------------- */

static void coroutine_fn reenter_self(void *opaque)
{
	co_enter(co_self());
}

static void coroutine_fn yield_once(void *opaque)
{
	co_yield();
}

static void misuse_reenter(void)
{
	co_enter(co_create(reenter_self, NULL));
}

static void misuse_schedule_twice(void)
{
	struct loop *ctx;
	struct coroutine *co = co_create(yield_once, NULL);

	if (loop_new(&ctx) < 0)
		_exit(3);
	co_schedule(ctx, co);
	co_schedule(ctx, co);
}

/* Run fn in a child; it must die of SIGABRT. */
static void expect_abort(void (*fn)(void))
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The message goes to stderr; keep the test log readable. */
		freopen("/dev/null", "w", stderr);
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void test_entering_running_coroutine_aborts(void **state)
{
	expect_abort(misuse_reenter);
}

static void test_scheduling_twice_aborts(void **state)
{
	expect_abort(misuse_schedule_twice);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* Forking tests first, while the process has one thread. */
		cmocka_unit_test(test_entering_running_coroutine_aborts),
		cmocka_unit_test(test_scheduling_twice_aborts),
		cmocka_unit_test(test_enter_yield_resume_finish),
		cmocka_unit_test(test_pingpong_keeps_order),
		cmocka_unit_test(test_nested_enter_returns_to_coroutine),
		cmocka_unit_test(test_10000_coroutines_created_and_freed),
		cmocka_unit_test(test_coqueue_wakes_fifo),
		cmocka_unit_test(test_comutex_excludes_and_is_fair),
		cmocka_unit_test(test_sleep_wakes_after_deadline),
		cmocka_unit_test(test_cross_thread_wakes_lose_none),
		cmocka_unit_test(test_reschedule_self_moves_between_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the event loop: bottom halves, timers, fd handlers, wake-ups
 * from other threads and LOOP_WAIT_WHILE.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "loop.h"
#include "test-util.h"

struct order_log {
	int seen[64];
	int n;
};

struct tagged {
	struct order_log *log;
	int tag;
};

static void log_bh(void *opaque)
{
	struct tagged *t = opaque;

	assert_true(t->log->n < 64);
	t->log->seen[t->log->n++] = t->tag;
}

static struct loop *new_ctx(void)
{
	struct loop *ctx = NULL;

	assert_int_equal(loop_new(&ctx), 0);
	assert_non_null(ctx);
	return ctx;
}

static void test_bh_runs_once_in_schedule_order(void **state)
{
	struct loop *ctx = new_ctx();
	struct order_log log = { 0 };
	struct tagged t[3] = { { &log, 0 }, { &log, 1 }, { &log, 2 } };
	struct loop_bh bh[3];

	for (int i = 0; i < 3; i++)
		loop_bh_init(&bh[i], ctx, log_bh, &t[i]);
	/* Schedule 2, 0, 1, then 2 and 0 again: already scheduled BHs keep
	 * their place and run once. */
	loop_bh_schedule(&bh[2]);
	loop_bh_schedule(&bh[0]);
	loop_bh_schedule(&bh[1]);
	loop_bh_schedule(&bh[2]);
	loop_bh_schedule(&bh[0]);

	assert_true(loop_poll(ctx, false));
	assert_int_equal(log.n, 3);
	assert_int_equal(log.seen[0], 2);
	assert_int_equal(log.seen[1], 0);
	assert_int_equal(log.seen[2], 1);
	/* Nothing is left: a second poll makes no progress. */
	assert_false(loop_poll(ctx, false));
	assert_int_equal(log.n, 3);
	loop_free(ctx);
}

struct self_resched {
	struct loop_bh bh;
	int runs;
};

static void resched_bh(void *opaque)
{
	struct self_resched *s = opaque;

	s->runs++;
	loop_bh_schedule(&s->bh);
}

static void test_bh_rescheduling_itself_runs_once_per_pass(void **state)
{
	struct loop *ctx = new_ctx();
	struct self_resched s = { .runs = 0 };

	loop_bh_init(&s.bh, ctx, resched_bh, &s);
	loop_bh_schedule(&s.bh);
	assert_true(loop_poll(ctx, false));
	assert_int_equal(s.runs, 1);
	assert_true(loop_poll(ctx, false));
	assert_int_equal(s.runs, 2);
	loop_bh_cancel(&s.bh);
	assert_false(loop_poll(ctx, false));
	assert_int_equal(s.runs, 2);
	loop_free(ctx);
}

static void test_bh_cancel_and_delete(void **state)
{
	struct loop *ctx = new_ctx();
	struct order_log log = { 0 };
	struct tagged t = { &log, 7 };
	struct loop_bh *bh = loop_bh_new(ctx, log_bh, &t);

	assert_non_null(bh);
	loop_bh_schedule(bh);
	loop_bh_cancel(bh);
	assert_false(loop_poll(ctx, false));
	assert_int_equal(log.n, 0);

	/* Cancelled BHs can be scheduled again. */
	loop_bh_schedule(bh);
	assert_true(loop_poll(ctx, false));
	assert_int_equal(log.n, 1);

	/* Deleting a scheduled BH unschedules it. */
	loop_bh_schedule(bh);
	loop_bh_delete(bh);
	assert_false(loop_poll(ctx, false));
	assert_int_equal(log.n, 1);
	loop_bh_delete(NULL);
	loop_free(ctx);
}

static void test_bh_oneshot_runs_once(void **state)
{
	struct loop *ctx = new_ctx();
	struct order_log log = { 0 };
	struct tagged t[2] = { { &log, 1 }, { &log, 2 } };

	/* The same callback and argument twice gives two one-shot BHs. */
	assert_int_equal(loop_bh_schedule_oneshot(ctx, log_bh, &t[0]), 0);
	assert_int_equal(loop_bh_schedule_oneshot(ctx, log_bh, &t[1]), 0);
	assert_int_equal(loop_bh_schedule_oneshot(ctx, log_bh, &t[0]), 0);
	assert_true(loop_poll(ctx, false));
	assert_int_equal(log.n, 3);
	assert_int_equal(log.seen[0], 1);
	assert_int_equal(log.seen[1], 2);
	assert_int_equal(log.seen[2], 1);
	assert_false(loop_poll(ctx, false));
	/* A one-shot BH that never ran is freed with the context (ASan and
	 * valgrind see the leak otherwise). */
	assert_int_equal(loop_bh_schedule_oneshot(ctx, log_bh, &t[0]), 0);
	loop_free(ctx);
	assert_int_equal(log.n, 3);
}

static struct loop *current_in_bh;

static void current_bh(void *opaque)
{
	current_in_bh = loop_get_current();
}

static void test_current_context(void **state)
{
	struct loop *home = new_ctx();
	struct loop *other = new_ctx();

	loop_set_current(home);
	assert_ptr_equal(loop_get_current(), home);
	/* While other's callbacks run, other is current; then home again. */
	assert_int_equal(loop_bh_schedule_oneshot(other, current_bh, NULL), 0);
	assert_true(loop_poll(other, false));
	assert_ptr_equal(current_in_bh, other);
	assert_ptr_equal(loop_get_current(), home);
	loop_set_current(NULL);
	assert_null(loop_get_current());
	loop_free(other);
	loop_free(home);
}

/* ---- cross-thread scheduling ------------------------------------------ */

struct waker {
	struct loop *ctx;
	pid_t poller_tid;
	int rounds;
	atomic_int ran;
	atomic_int round;
	atomic_int errors;      /* failures seen by the helper thread */
};

static void count_bh(void *opaque)
{
	struct waker *w = opaque;

	atomic_fetch_add(&w->ran, 1);
}

static void *waker_thread(void *opaque)
{
	struct waker *w = opaque;

	for (int i = 0; i < w->rounds; i++) {
		/* Wait until the poller is asleep in the kernel, so the BH
		 * really has to wake a blocked loop_poll. */
		while (atomic_load(&w->round) != i)
			sched_yield();
		if (!wait_thread_sleeping(w->poller_tid))
			atomic_fetch_add(&w->errors, 1);
		if (loop_bh_schedule_oneshot(w->ctx, count_bh, w) < 0)
			atomic_fetch_add(&w->errors, 1);
	}
	return NULL;
}

static void test_bh_from_other_thread_wakes_blocked_poll(void **state)
{
	struct waker w = { .rounds = 50 };
	pthread_t th;

	w.ctx = new_ctx();
	w.poller_tid = gettid();
	assert_int_equal(pthread_create(&th, NULL, waker_thread, &w), 0);
	for (int i = 0; i < w.rounds; i++) {
		atomic_store(&w.round, i);
		/* Blocks until the other thread's BH arrives; it must run it. */
		while (atomic_load(&w.ran) == i)
			loop_poll(w.ctx, true);
		assert_int_equal(atomic_load(&w.ran), i + 1);
	}
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&w.errors), 0);
	loop_free(w.ctx);
}

#define ORDER_THREADS 4
#define ORDER_PER_THREAD 2000

struct ticket_bh {
	struct loop_bh bh;
	int ticket;
	int *next_expected;
	int *errors;
};

struct order_shared {
	struct loop *ctx;
	pthread_mutex_t lock;
	int next_ticket;
	struct ticket_bh *bhs;
};

static void ticket_cb(void *opaque)
{
	struct ticket_bh *t = opaque;

	if (t->ticket != *t->next_expected)
		(*t->errors)++;
	(*t->next_expected)++;
}

static void *order_thread(void *opaque)
{
	struct order_shared *s = opaque;

	for (int i = 0; i < ORDER_PER_THREAD; i++) {
		/* The ticket is taken and the BH scheduled under one lock,
		 * so ticket order is scheduling order. */
		pthread_mutex_lock(&s->lock);
		struct ticket_bh *t = &s->bhs[s->next_ticket];

		t->ticket = s->next_ticket++;
		loop_bh_schedule(&t->bh);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static void test_bhs_from_many_threads_run_in_schedule_order(void **state)
{
	enum { TOTAL = ORDER_THREADS * ORDER_PER_THREAD };
	struct order_shared s = { .next_ticket = 0 };
	pthread_t th[ORDER_THREADS];
	int next_expected = 0, errors = 0;

	s.ctx = new_ctx();
	pthread_mutex_init(&s.lock, NULL);
	s.bhs = calloc(TOTAL, sizeof(*s.bhs));
	assert_non_null(s.bhs);
	for (int i = 0; i < TOTAL; i++) {
		loop_bh_init(&s.bhs[i].bh, s.ctx, ticket_cb, &s.bhs[i]);
		s.bhs[i].next_expected = &next_expected;
		s.bhs[i].errors = &errors;
	}
	for (int i = 0; i < ORDER_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, order_thread, &s), 0);
	/* Poll while the threads schedule; every BH runs exactly once. */
	while (next_expected < TOTAL)
		loop_poll(s.ctx, true);
	for (int i = 0; i < ORDER_THREADS; i++)
		pthread_join(th[i], NULL);
	assert_false(loop_poll(s.ctx, false));
	assert_int_equal(next_expected, TOTAL);
	assert_int_equal(errors, 0);
	pthread_mutex_destroy(&s.lock);
	free(s.bhs);
	loop_free(s.ctx);
}

/* ---- timers ----------------------------------------------------------- */

struct fired {
	struct loop_timer t;
	uint64_t at;
	int order;
	int *counter;
};

static void fired_cb(void *opaque)
{
	struct fired *f = opaque;

	f->at = loop_now_ns();
	f->order = (*f->counter)++;
}

static void test_timers_fire_in_deadline_order_never_early(void **state)
{
	struct loop *ctx = new_ctx();
	/* Deadlines in ms, armed in this order; two share one deadline. */
	const int ms[] = { 30, 10, 20, 20, 5 };
	const int expect_order[] = { 4, 1, 2, 3, 0 };
	struct fired f[5];
	int counter = 0;
	uint64_t start = loop_now_ns();

	for (int i = 0; i < 5; i++) {
		loop_timer_init(&f[i].t, ctx, fired_cb, &f[i]);
		f[i].counter = &counter;
		f[i].at = 0;
		loop_timer_mod(&f[i].t, start + (uint64_t)ms[i] * 1000000);
		assert_true(loop_timer_pending(&f[i].t));
	}
	while (counter < 5)
		loop_poll(ctx, true);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(f[i].order, expect_order[i]);
		assert_true(f[i].at >= f[i].t.deadline_ns);
		assert_false(loop_timer_pending(&f[i].t));
	}
	loop_free(ctx);
}

static void test_timer_del_and_rearm(void **state)
{
	struct loop *ctx = new_ctx();
	struct fired a, b;
	int counter = 0;
	uint64_t now = loop_now_ns();

	loop_timer_init(&a.t, ctx, fired_cb, &a);
	loop_timer_init(&b.t, ctx, fired_cb, &b);
	a.counter = b.counter = &counter;
	a.order = b.order = -1;
	loop_timer_mod(&a.t, now + 5000000);
	loop_timer_mod(&b.t, now + 10000000);
	loop_timer_del(&a.t);
	loop_timer_del(&a.t);   /* deleting twice is harmless */
	/* Re-arming moves b earlier than its first deadline. */
	loop_timer_mod(&b.t, now + 1000000);
	while (counter < 1)
		loop_poll(ctx, true);
	assert_int_equal(b.order, 0);
	assert_int_equal(a.order, -1);
	assert_false(loop_poll(ctx, false));
	loop_free(ctx);
}

/* ---- fd handlers ------------------------------------------------------ */

struct pipe_state {
	struct loop *ctx;
	int fds[2];
	int reads;
	int writes;
	char last;
	bool remove_on_read;
};

static void pipe_read(void *opaque)
{
	struct pipe_state *p = opaque;

	assert_int_equal(read(p->fds[0], &p->last, 1), 1);
	p->reads++;
	if (p->remove_on_read)
		assert_int_equal(loop_set_fd_handler(p->ctx, p->fds[0], NULL,
						     NULL, NULL), 0);
}

static void pipe_write(void *opaque)
{
	struct pipe_state *p = opaque;

	p->writes++;
	/* Writable handlers fire on every pass: remove it after one. */
	assert_int_equal(loop_set_fd_handler(p->ctx, p->fds[1], NULL, NULL,
					     NULL), 0);
}

static void test_fd_handlers_see_readiness(void **state)
{
	struct pipe_state p = { .reads = 0 };

	p.ctx = new_ctx();
	assert_int_equal(pipe2(p.fds, O_NONBLOCK | O_CLOEXEC), 0);
	assert_int_equal(loop_set_fd_handler(p.ctx, p.fds[0], pipe_read, NULL,
					     &p), 0);
	/* Nothing written: no handler runs. */
	assert_false(loop_poll(p.ctx, false));
	assert_int_equal(p.reads, 0);

	assert_int_equal(write(p.fds[1], "x", 1), 1);
	assert_true(loop_poll(p.ctx, true));
	assert_int_equal(p.reads, 1);
	assert_int_equal(p.last, 'x');

	/* The write end of an empty pipe is writable at once. */
	assert_int_equal(loop_set_fd_handler(p.ctx, p.fds[1], NULL, pipe_write,
					     &p), 0);
	assert_true(loop_poll(p.ctx, false));
	assert_int_equal(p.writes, 1);
	assert_false(loop_poll(p.ctx, false));

	/* A handler that removes itself is not called again. */
	p.remove_on_read = true;
	assert_int_equal(write(p.fds[1], "yz", 2), 2);
	assert_true(loop_poll(p.ctx, false));
	assert_int_equal(p.reads, 2);
	assert_false(loop_poll(p.ctx, false));
	assert_int_equal(p.reads, 2);

	/* Bad input. */
	assert_int_equal(loop_set_fd_handler(p.ctx, p.fds[0], NULL, NULL, NULL),
			 -ENOENT);
	assert_int_equal(loop_set_fd_handler(p.ctx, -1, pipe_read, NULL, &p),
			 -EBADF);
	close(p.fds[0]);
	close(p.fds[1]);
	loop_free(p.ctx);
}

/* ---- LOOP_WAIT_WHILE -------------------------------------------------- */

struct flag_setter {
	struct loop *ctx;
	pid_t waiter_tid;
	atomic_bool done;
	bool saw_sleep;
};

static void *flag_thread(void *opaque)
{
	struct flag_setter *f = opaque;

	/* Change the condition only once the waiter sleeps in epoll_wait;
	 * no BH is involved, only the kick can wake it. */
	f->saw_sleep = wait_thread_sleeping(f->waiter_tid);
	atomic_store(&f->done, true);
	loop_wait_kick(f->ctx);
	return NULL;
}

static void test_wait_while_condition_changed_by_other_thread(void **state)
{
	for (int round = 0; round < 20; round++) {
		struct flag_setter f = { .done = false };
		pthread_t th;

		f.ctx = new_ctx();
		f.waiter_tid = gettid();
		assert_int_equal(pthread_create(&th, NULL, flag_thread, &f), 0);
		LOOP_WAIT_WHILE(f.ctx, !atomic_load(&f.done));
		assert_true(atomic_load(&f.done));
		pthread_join(th, NULL);
		assert_true(f.saw_sleep);
		loop_free(f.ctx);
	}
}

struct nested {
	struct loop *ctx;
	int inner_ran;
	bool outer_done;
};

static void inner_bh(void *opaque)
{
	struct nested *n = opaque;

	n->inner_ran++;
}

static void outer_bh(void *opaque)
{
	struct nested *n = opaque;

	/* A callback that waits (nested poll) for work scheduled after it. */
	assert_int_equal(loop_bh_schedule_oneshot(n->ctx, inner_bh, n), 0);
	LOOP_WAIT_WHILE(n->ctx, n->inner_ran == 0);
	n->outer_done = true;
}

static void test_nested_poll_from_callback(void **state)
{
	struct nested n = { .inner_ran = 0 };

	n.ctx = new_ctx();
	assert_int_equal(loop_bh_schedule_oneshot(n.ctx, outer_bh, &n), 0);
	assert_true(loop_poll(n.ctx, false));
	assert_true(n.outer_done);
	assert_int_equal(n.inner_ran, 1);
	assert_false(loop_poll(n.ctx, false));
	loop_free(n.ctx);
}

/* ---- loop_call_sync --------------------------------------------------- */

struct sync_call {
	struct loop *ctx;
	pid_t ran_tid;
	struct loop *ran_in;
	int calls;
	bool result_seen;             /* the caller saw the result */
};

static void sync_fn(void *opaque)
{
	struct sync_call *c = opaque;

	c->ran_tid = gettid();
	c->ran_in = loop_get_current();
	c->calls++;
}

static void *sync_caller(void *opaque)
{
	struct sync_call *c = opaque;

	/* Returns only once sync_fn has run in the context's thread. */
	loop_call_sync(c->ctx, sync_fn, c);
	c->result_seen = c->calls == 1;
	return NULL;
}

static void test_call_sync_runs_in_context_thread(void **state)
{
	struct sync_call c = { .calls = 0 };
	pthread_t th;

	c.ctx = new_ctx();
	loop_set_current(c.ctx);

	/* From the context's own thread it runs at once. */
	loop_call_sync(c.ctx, sync_fn, &c);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.ran_tid, gettid());

	/* From another thread: that thread blocks until this one polled. */
	c.calls = 0;
	assert_int_equal(pthread_create(&th, NULL, sync_caller, &c), 0);
	while (c.calls == 0)
		loop_poll(c.ctx, true);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(c.result_seen);
	assert_int_equal(c.ran_tid, gettid());
	assert_ptr_equal(c.ran_in, c.ctx);
	loop_set_current(NULL);
	loop_free(c.ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bh_runs_once_in_schedule_order),
		cmocka_unit_test(test_bh_rescheduling_itself_runs_once_per_pass),
		cmocka_unit_test(test_bh_cancel_and_delete),
		cmocka_unit_test(test_bh_oneshot_runs_once),
		cmocka_unit_test(test_current_context),
		cmocka_unit_test(test_bh_from_other_thread_wakes_blocked_poll),
		cmocka_unit_test(test_bhs_from_many_threads_run_in_schedule_order),
		cmocka_unit_test(test_timers_fire_in_deadline_order_never_early),
		cmocka_unit_test(test_timer_del_and_rearm),
		cmocka_unit_test(test_fd_handlers_see_readiness),
		cmocka_unit_test(test_wait_while_condition_changed_by_other_thread),
		cmocka_unit_test(test_nested_poll_from_callback),
		cmocka_unit_test(test_call_sync_runs_in_context_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

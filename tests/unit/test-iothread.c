/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of iothreads: naming, where work runs, and a stop that runs the
 * work scheduled before it.
 */
#include "config.h"

#include <errno.h>
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

#include "iothread.h"
#include "test-util.h"

struct probe {
	struct loop *expect_ctx;
	char name[16];
	pid_t tid;
	struct loop *current;
	atomic_bool done;
};

static void probe_bh(void *opaque)
{
	struct probe *p = opaque;

	pthread_getname_np(pthread_self(), p->name, sizeof(p->name));
	p->tid = gettid();
	p->current = loop_get_current();
	atomic_store(&p->done, true);
}

static void test_work_runs_in_named_thread(void **state)
{
	struct iothread *t;
	struct probe p = { .done = false };
	unsigned long long end;

	assert_int_equal(iothread_new(7, &t), 0);
	p.expect_ctx = iothread_get_ctx(t);
	assert_non_null(p.expect_ctx);
	assert_int_equal(loop_bh_schedule_oneshot(p.expect_ctx, probe_bh, &p), 0);
	end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	while (!atomic_load(&p.done) && test_now_ns() < end)
		sched_yield();
	assert_true(atomic_load(&p.done));
	assert_string_equal(p.name, "vdisk-io/7");
	assert_int_not_equal(p.tid, gettid());
	assert_ptr_equal(p.current, p.expect_ctx);
	iothread_free(t);
}

struct chain {
	struct loop *ctx;
	int left;
	int ran;
};

static void chain_bh(void *opaque)
{
	struct chain *c = opaque;

	c->ran++;
	/* Work that schedules more work still runs before the join. */
	if (--c->left > 0 && loop_bh_schedule_oneshot(c->ctx, chain_bh, c) < 0)
		c->left = -1000;
}

static void test_free_runs_scheduled_work_first(void **state)
{
	struct iothread *t;
	struct chain c[100];

	assert_int_equal(iothread_new(0, &t), 0);
	for (int i = 0; i < 100; i++) {
		c[i] = (struct chain){ iothread_get_ctx(t), 5, 0 };
		assert_int_equal(loop_bh_schedule_oneshot(c[i].ctx, chain_bh,
							  &c[i]), 0);
	}
	iothread_free(t);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(c[i].ran, 5);
		assert_int_equal(c[i].left, 0);
	}
}

static void test_many_start_stop(void **state)
{
	/* Start and stop quickly, with nothing to do: no hang, no leak. */
	for (int i = 0; i < 50; i++) {
		struct iothread *t[2];

		assert_int_equal(iothread_new(0, &t[0]), 0);
		assert_int_equal(iothread_new(1, &t[1]), 0);
		iothread_free(t[1]);
		iothread_free(t[0]);
	}
	iothread_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_work_runs_in_named_thread),
		cmocka_unit_test(test_free_runs_scheduled_work_first),
		cmocka_unit_test(test_many_start_stop),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

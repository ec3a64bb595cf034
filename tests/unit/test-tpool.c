/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the thread pool: where work and completions run, the worker
 * limit, idle exit, cancel and the coroutine variant.
 *
 * The test's thread owns a context (set up per test) and polls it until a
 * condition holds, bounded by TEST_WAIT_LIMIT_NS.  Work functions run in
 * workers, where cmocka asserts are not allowed: they record what they saw
 * and the test asserts on it after the completion reached its thread.
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

#include "coroutine.h"
#include "tpool.h"
#include "test-util.h"

/* ---- helpers ------------------------------------------------------- */

static int setup_ctx(void **state)
{
	struct loop *ctx;

	if (loop_new(&ctx) < 0)
		return -1;
	loop_set_current(ctx);
	*state = ctx;
	return 0;
}

static int teardown_ctx(void **state)
{
	loop_set_current(NULL);
	loop_free(*state);
	return 0;
}

static void tick_cb(void *opaque)
{
	(void)opaque;
}

/*
 * One blocking poll of ctx that lasts at most about a millisecond: a
 * completion BH ends it at once, and the tick re-tests conditions that
 * workers change without a BH (worker counts, running counters).
 */
static void poll_once(struct loop *ctx)
{
	struct loop_timer tick;

	loop_timer_init(&tick, ctx, tick_cb, NULL);
	loop_timer_mod(&tick, loop_now_ns() + 1000000);
	loop_poll(ctx, true);
	loop_timer_del(&tick);
}

/* Poll ctx until cond holds or the wait limit passes, then assert cond. */
#define WAIT_FOR(ctx, cond)                                                 \
	do {                                                                \
		unsigned long long end_ = test_now_ns() + TEST_WAIT_LIMIT_NS; \
		while (!(cond) && test_now_ns() < end_)                     \
			poll_once(ctx);                                     \
		assert_true(cond);                                          \
	} while (0)

static struct tpool *new_pool(unsigned max_workers, uint64_t idle_ns)
{
	struct tpool_params p = {
		.max_workers = max_workers,
		.idle_timeout_ns = idle_ns,
	};
	struct tpool *pool = NULL;

	assert_int_equal(tpool_new(&p, &pool), 0);
	assert_non_null(pool);
	return pool;
}

/* A gate that work functions block on until the test opens it. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
};

static void gate_init(struct gate *g)
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->open = false;
}

static void gate_destroy(struct gate *g)
{
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
}

static void gate_wait(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* ---- where work and completions run -------------------------------- */

struct probe {
	int result;              /* what the work returns */
	/* written by the work: */
	pid_t work_tid;
	char work_name[16];
	/* written by done: */
	pid_t done_tid;
	struct loop *done_ctx;
	int done_ret;
	int done_calls;
};

static int probe_work(void *arg)
{
	struct probe *p = arg;

	p->work_tid = gettid();
	if (pthread_getname_np(pthread_self(), p->work_name,
			       sizeof(p->work_name)) != 0)
		strcpy(p->work_name, "?");
	return p->result;
}

static void probe_done(void *opaque, int ret)
{
	struct probe *p = opaque;

	p->done_tid = gettid();
	p->done_ctx = loop_get_current();
	p->done_ret = ret;
	p->done_calls++;
}

static void test_work_in_worker_done_in_submitter(void **state)
{
	struct loop *ctx = *state;
	struct tpool *pool = new_pool(2, 10ull * 1000000000ull);
	struct probe ok = { .result = 42 }, fail = { .result = -EIO };
	struct tpool_stats st;

	assert_int_equal(tpool_submit(pool, ctx, probe_work, &ok, probe_done,
				      &ok, NULL), 0);
	assert_int_equal(tpool_submit(pool, ctx, probe_work, &fail,
				      probe_done, &fail, NULL), 0);
	/* Completions come through the context's BHs: nothing yet. */
	assert_int_equal(ok.done_calls, 0);
	assert_int_equal(fail.done_calls, 0);

	WAIT_FOR(ctx, ok.done_calls > 0 && fail.done_calls > 0);
	assert_int_not_equal(ok.work_tid, gettid());
	assert_int_not_equal(fail.work_tid, gettid());
	assert_string_equal(ok.work_name, "vdisk-pool");
	assert_string_equal(fail.work_name, "vdisk-pool");
	assert_int_equal(ok.done_tid, gettid());
	assert_int_equal(fail.done_tid, gettid());
	assert_ptr_equal(ok.done_ctx, ctx);
	assert_ptr_equal(fail.done_ctx, ctx);
	assert_int_equal(ok.done_ret, 42);
	assert_int_equal(fail.done_ret, -EIO);

	/* Nothing is delivered twice. */
	while (loop_poll(ctx, false))
		;
	assert_int_equal(ok.done_calls, 1);
	assert_int_equal(fail.done_calls, 1);

	tpool_get_stats(pool, &st);
	assert_int_equal(st.submitted, 2);
	assert_int_equal(st.completed, 2);
	assert_int_equal(st.cancelled, 0);
	assert_true(st.workers >= 1 && st.workers <= 2);
	tpool_free(pool);
}

/* ---- many requests -------------------------------------------------- */

#define MANY 1000

struct many {
	int calls[MANY];
	int wrong_ret;
	int finished;
};

struct many_item {
	struct many *m;
	int index;
};

static int many_work(void *arg)
{
	struct many_item *it = arg;

	return it->index;
}

static void many_done(void *opaque, int ret)
{
	struct many_item *it = opaque;

	if (ret != it->index)
		it->m->wrong_ret++;
	it->m->calls[it->index]++;
	it->m->finished++;
}

static void test_many_requests_complete_once(void **state)
{
	struct loop *ctx = *state;
	struct tpool *pool = NULL;
	struct many *m = calloc(1, sizeof(*m));
	struct many_item *items = calloc(MANY, sizeof(*items));
	struct tpool_stats st;

	assert_non_null(m);
	assert_non_null(items);
	/* The defaults: up to 64 workers. */
	assert_int_equal(tpool_new(NULL, &pool), 0);
	for (int i = 0; i < MANY; i++) {
		items[i] = (struct many_item){ m, i };
		assert_int_equal(tpool_submit(pool, ctx, many_work, &items[i],
					      many_done, &items[i], NULL), 0);
	}
	WAIT_FOR(ctx, m->finished == MANY);
	while (loop_poll(ctx, false))
		;
	assert_int_equal(m->finished, MANY);
	assert_int_equal(m->wrong_ret, 0);
	for (int i = 0; i < MANY; i++)
		assert_int_equal(m->calls[i], 1);

	tpool_get_stats(pool, &st);
	assert_int_equal(st.submitted, MANY);
	assert_int_equal(st.completed, MANY);
	assert_int_equal(st.cancelled, 0);
	assert_true(st.peak_workers >= 1 &&
		    st.peak_workers <= TPOOL_DEFAULT_MAX_WORKERS);
	assert_true(st.workers <= st.peak_workers);
	tpool_free(pool);
	free(items);
	free(m);
}

/* ---- the worker limit ----------------------------------------------- */

struct limited {
	struct gate gate;
	atomic_int running;
	atomic_int peak_running;
	int rets[10];
	int finished;
};

struct limited_item {
	struct limited *l;
	int index;
};

static int limited_work(void *arg)
{
	struct limited_item *it = arg;
	struct limited *l = it->l;
	int now = atomic_fetch_add(&l->running, 1) + 1;
	int peak = atomic_load(&l->peak_running);

	while (now > peak &&
	       !atomic_compare_exchange_weak(&l->peak_running, &peak, now))
		;
	gate_wait(&l->gate);
	atomic_fetch_sub(&l->running, 1);
	return it->index + 100;
}

static void limited_done(void *opaque, int ret)
{
	struct limited_item *it = opaque;

	it->l->rets[it->index] = ret;
	it->l->finished++;
}

static void test_max_workers_honoured(void **state)
{
	struct loop *ctx = *state;
	struct tpool *pool = new_pool(3, 10ull * 1000000000ull);
	struct limited l = { .finished = 0 };
	struct limited_item items[10];
	struct tpool_stats st;

	gate_init(&l.gate);
	atomic_init(&l.running, 0);
	atomic_init(&l.peak_running, 0);
	for (int i = 0; i < 10; i++) {
		items[i] = (struct limited_item){ &l, i };
		assert_int_equal(tpool_submit(pool, ctx, limited_work,
					      &items[i], limited_done,
					      &items[i], NULL), 0);
	}
	/* Three workers take the first three works and block on the gate;
	 * the other seven wait in the queue. */
	WAIT_FOR(ctx, atomic_load(&l.running) == 3);
	tpool_get_stats(pool, &st);
	assert_int_equal(st.workers, 3);
	assert_int_equal(st.idle_workers, 0);
	assert_int_equal(st.peak_workers, 3);
	assert_int_equal(st.submitted, 10);
	assert_int_equal(st.completed, 0);
	assert_int_equal(l.finished, 0);

	/* Open the gate: the three workers work through the queue. */
	gate_open(&l.gate);
	WAIT_FOR(ctx, l.finished == 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(l.rets[i], i + 100);
	assert_int_equal(atomic_load(&l.peak_running), 3);
	assert_int_equal(atomic_load(&l.running), 0);

	tpool_get_stats(pool, &st);
	assert_int_equal(st.peak_workers, 3);
	assert_int_equal(st.workers, 3);
	assert_int_equal(st.completed, 10);
	assert_int_equal(st.idle_exits, 0);
	tpool_free(pool);
	gate_destroy(&l.gate);
}

/* ---- idle exit ------------------------------------------------------ */

static void test_idle_workers_exit(void **state)
{
	struct loop *ctx = *state;
	struct tpool *pool = new_pool(4, 50ull * 1000000ull);
	struct probe first = { .result = 1 }, second = { .result = 2 };
	struct tpool_stats st;

	assert_int_equal(tpool_submit(pool, ctx, probe_work, &first,
				      probe_done, &first, NULL), 0);
	WAIT_FOR(ctx, first.done_calls == 1);
	assert_int_equal(first.done_ret, 1);

	/* 50 ms after its work the worker finds nothing to do and exits. */
	WAIT_FOR(ctx, (tpool_get_stats(pool, &st), st.workers == 0));
	assert_int_equal(st.idle_workers, 0);
	assert_int_equal(st.idle_exits, 1);
	assert_int_equal(st.peak_workers, 1);

	/* New work starts a new worker, which exits in its turn. */
	assert_int_equal(tpool_submit(pool, ctx, probe_work, &second,
				      probe_done, &second, NULL), 0);
	WAIT_FOR(ctx, second.done_calls == 1);
	assert_int_equal(second.done_ret, 2);
	assert_string_equal(second.work_name, "vdisk-pool");

	WAIT_FOR(ctx, (tpool_get_stats(pool, &st), st.workers == 0));
	assert_int_equal(st.idle_exits, 2);
	assert_int_equal(st.completed, 2);
	assert_int_equal(st.peak_workers, 1);
	tpool_free(pool);
}

/* ---- cancel --------------------------------------------------------- */

struct cancel_log {
	struct gate gate;
	atomic_bool gated_running;
	atomic_int work_order[4];    /* written by the single worker */
	atomic_int nr_work;
	int done_order[4];
	int rets[4];
	int nr_done;
};

struct cancel_item {
	struct cancel_log *log;
	int index;
};

static int cancel_work(void *arg)
{
	struct cancel_item *it = arg;
	struct cancel_log *log = it->log;
	int n = atomic_fetch_add(&log->nr_work, 1);

	if (n < 4)
		atomic_store(&log->work_order[n], it->index);
	if (it->index == 0) {
		atomic_store(&log->gated_running, true);
		gate_wait(&log->gate);
	}
	return it->index + 10;
}

static void cancel_done(void *opaque, int ret)
{
	struct cancel_item *it = opaque;
	struct cancel_log *log = it->log;

	log->rets[it->index] = ret;
	if (log->nr_done < 4)
		log->done_order[log->nr_done] = it->index;
	log->nr_done++;
}

static void test_cancel_queued_request(void **state)
{
	struct loop *ctx = *state;
	struct tpool *pool = new_pool(1, 10ull * 1000000000ull);
	struct cancel_log log = { .nr_done = 0 };
	struct cancel_item items[4];
	struct tpool_req *req[4];
	struct tpool_stats st;

	gate_init(&log.gate);
	atomic_init(&log.gated_running, false);
	atomic_init(&log.nr_work, 0);
	for (int i = 0; i < 4; i++) {
		atomic_init(&log.work_order[i], -1);
		items[i] = (struct cancel_item){ &log, i };
	}

	/* Request 0 occupies the only worker until the gate opens. */
	assert_int_equal(tpool_submit(pool, ctx, cancel_work, &items[0],
				      cancel_done, &items[0], &req[0]), 0);
	WAIT_FOR(ctx, atomic_load(&log.gated_running));
	for (int i = 1; i < 4; i++)
		assert_int_equal(tpool_submit(pool, ctx, cancel_work,
					      &items[i], cancel_done,
					      &items[i], &req[i]), 0);

	/* Request 2 is still queued: cancelled, done comes later. */
	assert_int_equal(tpool_cancel(pool, req[2]), 0);
	assert_int_equal(log.nr_done, 0);
	/* Request 0 is running: too late. */
	assert_int_equal(tpool_cancel(pool, req[0]), -EBUSY);

	/* The cancelled one completes while the worker is still blocked. */
	WAIT_FOR(ctx, log.nr_done == 1);
	assert_int_equal(log.done_order[0], 2);
	assert_int_equal(log.rets[2], -ECANCELED);
	assert_int_equal(atomic_load(&log.nr_work), 1);

	gate_open(&log.gate);
	WAIT_FOR(ctx, log.nr_done == 4);
	/* One worker: the others ran in submission order, 2 never ran. */
	assert_int_equal(atomic_load(&log.nr_work), 3);
	assert_int_equal(atomic_load(&log.work_order[0]), 0);
	assert_int_equal(atomic_load(&log.work_order[1]), 1);
	assert_int_equal(atomic_load(&log.work_order[2]), 3);
	assert_int_equal(atomic_load(&log.work_order[3]), -1);
	assert_int_equal(log.done_order[1], 0);
	assert_int_equal(log.done_order[2], 1);
	assert_int_equal(log.done_order[3], 3);
	assert_int_equal(log.rets[0], 10);
	assert_int_equal(log.rets[1], 11);
	assert_int_equal(log.rets[3], 13);

	tpool_get_stats(pool, &st);
	assert_int_equal(st.submitted, 4);
	assert_int_equal(st.completed, 3);
	assert_int_equal(st.cancelled, 1);
	assert_int_equal(st.peak_workers, 1);
	tpool_free(pool);
	gate_destroy(&log.gate);
}

/* ---- the coroutine variant ------------------------------------------ */

#define NR_CO 100

struct co_job {
	struct tpool *pool;
	struct gate *gate;          /* NULL: do not block */
	atomic_int *in_work;
	int value;
	int result;
	struct loop *resumed_in;
	bool finished;
};

static int co_job_work(void *arg)
{
	struct co_job *j = arg;

	if (j->gate) {
		atomic_fetch_add(j->in_work, 1);
		gate_wait(j->gate);
	}
	return j->value;
}

static void coroutine_fn co_job_entry(void *opaque)
{
	struct co_job *j = opaque;

	j->result = tpool_co_submit(j->pool, co_job_work, j);
	j->resumed_in = loop_get_current();
	j->finished = true;
}

static void test_co_submit_returns_work_value(void **state)
{
	struct loop *ctx = *state;
	struct tpool *pool = new_pool(4, 10ull * 1000000000ull);
	struct co_job ok = { .pool = pool, .value = 7 };
	struct co_job fail = { .pool = pool, .value = -EIO };
	struct coroutine *co;

	co = co_create(co_job_entry, &ok);
	assert_non_null(co);
	co_enter(co);
	/* The coroutine yielded inside tpool_co_submit. */
	assert_false(ok.finished);
	WAIT_FOR(ctx, ok.finished);
	assert_int_equal(ok.result, 7);
	assert_ptr_equal(ok.resumed_in, ctx);

	co = co_create(co_job_entry, &fail);
	assert_non_null(co);
	co_enter(co);
	WAIT_FOR(ctx, fail.finished);
	assert_int_equal(fail.result, -EIO);
	tpool_free(pool);
}

static int count_finished(const struct co_job *jobs)
{
	int n = 0;

	for (int i = 0; i < NR_CO; i++)
		n += jobs[i].finished;
	return n;
}

static void test_co_submit_many_coroutines(void **state)
{
	struct loop *ctx = *state;
	struct tpool *pool = NULL;
	struct co_job *jobs = calloc(NR_CO, sizeof(*jobs));
	struct gate gate;
	atomic_int in_work;

	assert_non_null(jobs);
	assert_int_equal(tpool_new(NULL, &pool), 0);
	gate_init(&gate);
	atomic_init(&in_work, 0);
	for (int i = 0; i < NR_CO; i++) {
		struct coroutine *co;

		jobs[i] = (struct co_job){ .pool = pool, .gate = &gate,
					   .in_work = &in_work,
					   .value = i * 3 };
		co = co_create(co_job_entry, &jobs[i]);
		assert_non_null(co);
		co_enter(co);
	}
	/* All 100 coroutines wait at once; the default 64 workers are all
	 * blocked on the gate, the other 36 requests are queued. */
	WAIT_FOR(ctx, atomic_load(&in_work) == (int)TPOOL_DEFAULT_MAX_WORKERS);
	for (int i = 0; i < NR_CO; i++)
		assert_false(jobs[i].finished);

	gate_open(&gate);
	WAIT_FOR(ctx, count_finished(jobs) == NR_CO);
	for (int i = 0; i < NR_CO; i++) {
		assert_int_equal(jobs[i].result, i * 3);
		assert_ptr_equal(jobs[i].resumed_in, ctx);
	}
	assert_int_equal(atomic_load(&in_work), NR_CO);
	tpool_free(pool);
	gate_destroy(&gate);
	free(jobs);
}

/* ---- parameters ----------------------------------------------------- */

static void test_new_rejects_zero_workers(void **state)
{
	struct tpool_params p = { .max_workers = 0, .idle_timeout_ns = 1 };
	static char sentinel;
	struct tpool *pool = (struct tpool *)&sentinel; /* stays untouched */
	struct tpool_stats st;

	assert_int_equal(tpool_new(&p, &pool), -EINVAL);
	assert_ptr_equal(pool, (struct tpool *)&sentinel);

	/* The defaults start with no worker. */
	assert_int_equal(tpool_new(NULL, &pool), 0);
	memset(&st, 0xff, sizeof(st));
	tpool_get_stats(pool, &st);
	assert_int_equal(st.workers, 0);
	assert_int_equal(st.idle_workers, 0);
	assert_int_equal(st.peak_workers, 0);
	assert_int_equal(st.submitted, 0);
	assert_int_equal(st.completed, 0);
	assert_int_equal(st.cancelled, 0);
	assert_int_equal(st.idle_exits, 0);
	tpool_free(pool);

	tpool_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_work_in_worker_done_in_submitter,
			setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(
			test_many_requests_complete_once,
			setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_max_workers_honoured,
						setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_idle_workers_exit,
						setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_cancel_queued_request,
						setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(
			test_co_submit_returns_work_value,
			setup_ctx, teardown_ctx),
		cmocka_unit_test_setup_teardown(test_co_submit_many_coroutines,
						setup_ctx, teardown_ctx),
		cmocka_unit_test(test_new_rejects_zero_workers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The thread pool: worker threads that run blocking system calls for the
 * block engine and hand each result back to the context that asked, so
 * that event loops and coroutines never block in the kernel.
 *
 * Design notes
 *
 * Data structures.  One mutex protects everything that changes: the FIFO
 * queue of requests no worker has picked up yet, each request's state
 * (queued -> running -> done, or queued -> done by a cancel), the worker
 * counts and the statistics.  Workers sleep on one condition variable
 * (work_cond) bound to CLOCK_MONOTONIC; tpool_free sleeps on another
 * (exit_cond).  A request is allocated by tpool_submit and freed after its
 * done callback ran; it embeds the bottom half that completes it, so a
 * completion costs no allocation.
 *
 * Starting workers.  nr_idle counts workers that will take a request
 * without being started: those waiting on work_cond and those just
 * created.  Every queued request is "covered" by one of them; when the
 * queue grows longer than nr_idle, tpool_submit starts a worker (up to
 * max_workers), otherwise it signals one.  Above the limit requests wait
 * in the queue for a busy worker to come back.  If starting a worker fails
 * while others exist, the request just waits for them; with no worker at
 * all the submission fails.
 *
 * Completions.  A worker runs the work without the lock, stores the result
 * in the request, marks it done under the lock, drops the lock and
 * schedules the request's BH in the submitting context.  The BH list lock
 * of loop.c orders the store of the result before the BH reads it, and the
 * context's notifier wakes its poller.  The BH calls done and frees the
 * request; it never touches the pool.  The pool lock is never held while
 * calling into loop.c, so it nests inside nothing and nothing nests in it.
 *
 * Cancel races.  A worker takes a request off the queue and marks it
 * running in one critical section; tpool_cancel tests "queued" and removes
 * it in one critical section of the same lock.  So exactly one of them
 * wins: either the work never runs and done gets -ECANCELED, or cancel
 * answers -EBUSY and done gets the work's result.  Either way done runs
 * from the BH, later, never from inside tpool_cancel.
 *
 * Idle exit and joining.  An idle worker waits with a deadline fixed when
 * it became idle (wake-ups that find the queue empty do not extend it); on
 * time-out with the queue still empty it exits.  Exiting workers are joined
 * without anyone blocking in a context: each one leaves itself in
 * pool->zombie and joins the worker it found there, which has already
 * dropped the lock and is about to return.  tpool_free sets stopping,
 * waits until nr_workers is 0 and joins the last zombie; that join
 * completes only after the chain of joins before it, so every thread has
 * left the pool's memory when it is freed.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <sys/queue.h>

#include "coroutine.h"
#include "tpool.h"

#define NS_PER_SEC 1000000000ull

enum tpool_req_state {
	TPOOL_REQ_QUEUED,        /* on pool->queue */
	TPOOL_REQ_RUNNING,       /* a worker runs its work */
	TPOOL_REQ_DONE,          /* ret is set; the BH is (about to be) scheduled */
};

struct tpool_req {
	/* Set by tpool_submit, constant afterwards. */
	tpool_work_fn *work;
	void *arg;
	tpool_done_fn *done;
	void *opaque;
	struct loop_bh bh;               /* completes it in the submitting ctx */

	/* Protected by pool->lock. */
	enum tpool_req_state state;
	TAILQ_ENTRY(tpool_req) link;     /* in pool->queue while queued */

	/*
	 * Written once, by the worker or by tpool_cancel, before the BH is
	 * scheduled; read by the BH (ordered by the BH list lock).
	 */
	int ret;
};

struct tpool_worker {
	struct tpool *pool;
	pthread_t thread;                /* written under pool->lock at start */
};

/* Lock order: pool->lock is a leaf (see the design notes). */
struct tpool {
	/* Constant after tpool_new. */
	unsigned max_workers;
	uint64_t idle_timeout_ns;

	pthread_mutex_t lock;
	pthread_cond_t work_cond;        /* queue or stopping changed */
	pthread_cond_t exit_cond;        /* nr_workers dropped to 0 */

	/* Protected by lock. */
	TAILQ_HEAD(, tpool_req) queue;
	unsigned nr_queued;
	unsigned nr_workers;
	unsigned nr_idle;                /* waiting for work, or starting */
	struct tpool_worker *zombie;     /* exited, not joined yet */
	bool stopping;                   /* tpool_free runs */
	unsigned peak_workers;
	uint64_t submitted;
	uint64_t completed;
	uint64_t cancelled;
	uint64_t idle_exits;
};

int tpool_new(const struct tpool_params *p, struct tpool **out)
{
	static const struct tpool_params defaults = {
		.max_workers = TPOOL_DEFAULT_MAX_WORKERS,
		.idle_timeout_ns = TPOOL_DEFAULT_IDLE_TIMEOUT_NS,
	};
	pthread_condattr_t attr;
	struct tpool *pool;
	int ret;

	if (!p)
		p = &defaults;
	if (p->max_workers == 0)
		return -EINVAL;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->max_workers = p->max_workers;
	pool->idle_timeout_ns = p->idle_timeout_ns;
	TAILQ_INIT(&pool->queue);

	ret = -pthread_mutex_init(&pool->lock, NULL);
	if (ret < 0)
		goto out_free;
	ret = -pthread_condattr_init(&attr);
	if (ret < 0)
		goto out_destroy_lock;
	/* Idle deadlines must not move with the wall clock. */
	ret = -pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (ret < 0)
		goto out_destroy_attr;
	ret = -pthread_cond_init(&pool->work_cond, &attr);
	if (ret < 0)
		goto out_destroy_attr;
	ret = -pthread_cond_init(&pool->exit_cond, NULL);
	if (ret < 0)
		goto out_destroy_work_cond;
	pthread_condattr_destroy(&attr);
	*out = pool;
	return 0;

out_destroy_work_cond:
	pthread_cond_destroy(&pool->work_cond);
out_destroy_attr:
	pthread_condattr_destroy(&attr);
out_destroy_lock:
	pthread_mutex_destroy(&pool->lock);
out_free:
	free(pool);
	return ret;
}

void tpool_free(struct tpool *pool)
{
	struct tpool_worker *last;

	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->work_cond);
	while (pool->nr_workers > 0)
		pthread_cond_wait(&pool->exit_cond, &pool->lock);
	last = pool->zombie;
	pool->zombie = NULL;
	pthread_mutex_unlock(&pool->lock);

	if (last) {
		pthread_join(last->thread, NULL);
		free(last);
	}
	pthread_cond_destroy(&pool->exit_cond);
	pthread_cond_destroy(&pool->work_cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

/* ---- workers ------------------------------------------------------- */

/* *ts = now + ns on CLOCK_MONOTONIC, saturating instead of overflowing. */
static void deadline_after(struct timespec *ts, uint64_t ns)
{
	const time_t time_max =
		(time_t)((1ull << (sizeof(time_t) * 8 - 1)) - 1);
	uint64_t sec = ns / NS_PER_SEC;

	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += (long)(ns % NS_PER_SEC);
	if (ts->tv_nsec >= (long)NS_PER_SEC) {
		ts->tv_nsec -= (long)NS_PER_SEC;
		sec++;
	}
	if (sec > (uint64_t)(time_max - ts->tv_sec))
		ts->tv_sec = time_max;
	else
		ts->tv_sec += (time_t)sec;
}

/*
 * Wait for a request and take it (marked running), or return NULL when the
 * worker should exit: the pool stops, or the idle time-out passed with the
 * queue empty.  Called and returns with pool->lock held, counted in
 * nr_idle.
 */
static struct tpool_req *worker_next_locked(struct tpool *pool)
{
	struct timespec deadline;
	bool have_deadline = false;
	struct tpool_req *req;

	while (TAILQ_EMPTY(&pool->queue)) {
		int rc;

		/* Requests queued before tpool_free still run first. */
		if (pool->stopping)
			return NULL;
		if (!have_deadline) {
			deadline_after(&deadline, pool->idle_timeout_ns);
			have_deadline = true;
		}
		rc = pthread_cond_timedwait(&pool->work_cond, &pool->lock,
					    &deadline);
		if (rc == ETIMEDOUT && TAILQ_EMPTY(&pool->queue) &&
		    !pool->stopping) {
			pool->idle_exits++;
			return NULL;
		}
	}
	req = TAILQ_FIRST(&pool->queue);
	TAILQ_REMOVE(&pool->queue, req, link);
	pool->nr_queued--;
	pool->nr_idle--;
	req->state = TPOOL_REQ_RUNNING;
	return req;
}

static void *worker_main(void *opaque)
{
	struct tpool_worker *self = opaque;
	struct tpool *pool = self->pool;
	struct tpool_worker *prev;
	struct tpool_req *req;

	pthread_setname_np(pthread_self(), "vdisk-pool");
	pthread_mutex_lock(&pool->lock);
	while ((req = worker_next_locked(pool))) {
		int ret;

		pthread_mutex_unlock(&pool->lock);
		ret = req->work(req->arg);
		req->ret = ret;

		pthread_mutex_lock(&pool->lock);
		req->state = TPOOL_REQ_DONE;
		pool->completed++;
		pool->nr_idle++;
		pthread_mutex_unlock(&pool->lock);

		/* The BH may run and free req from here on. */
		loop_bh_schedule(&req->bh);
		pthread_mutex_lock(&pool->lock);
	}

	pool->nr_idle--;
	pool->nr_workers--;
	prev = pool->zombie;
	pool->zombie = self;
	if (pool->nr_workers == 0)
		pthread_cond_broadcast(&pool->exit_cond);
	pthread_mutex_unlock(&pool->lock);

	/* prev has dropped the lock and is returning: this join is short. */
	if (prev) {
		pthread_join(prev->thread, NULL);
		free(prev);
	}
	return NULL;
}

/* Start a worker; it counts as idle until it takes a request. */
static int spawn_worker_locked(struct tpool *pool)
{
	struct tpool_worker *w;
	pthread_attr_t attr;
	sigset_t all;
	int ret;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->pool = pool;
	ret = -pthread_attr_init(&attr);
	if (ret < 0)
		goto out_free;
	/* Signals are for the daemon's main thread, never for a worker. */
	sigfillset(&all);
	ret = -pthread_attr_setsigmask_np(&attr, &all);
	if (ret < 0)
		goto out_destroy_attr;
	/* The lock is held: the worker cannot run (or be joined) before
	 * w->thread is written. */
	ret = -pthread_create(&w->thread, &attr, worker_main, w);
	if (ret < 0)
		goto out_destroy_attr;
	pthread_attr_destroy(&attr);

	pool->nr_workers++;
	pool->nr_idle++;
	if (pool->nr_workers > pool->peak_workers)
		pool->peak_workers = pool->nr_workers;
	return 0;

out_destroy_attr:
	pthread_attr_destroy(&attr);
out_free:
	free(w);
	return ret;
}

/* ---- requests ------------------------------------------------------ */

static void tpool_complete_bh(void *opaque)
{
	struct tpool_req *req = opaque;

	req->done(req->opaque, req->ret);
	free(req);
}

int tpool_submit(struct tpool *pool, struct loop *ctx, tpool_work_fn *work,
		 void *arg, tpool_done_fn *done, void *opaque,
		 struct tpool_req **reqp)
{
	struct tpool_req *req;
	bool spawned = false, wake;
	int ret = 0;

	assert(ctx && ctx == loop_get_current());
	req = calloc(1, sizeof(*req));
	if (!req)
		return -ENOMEM;
	req->work = work;
	req->arg = arg;
	req->done = done;
	req->opaque = opaque;
	req->state = TPOOL_REQ_QUEUED;
	loop_bh_init(&req->bh, ctx, tpool_complete_bh, req);

	pthread_mutex_lock(&pool->lock);
	assert(!pool->stopping);
	TAILQ_INSERT_TAIL(&pool->queue, req, link);
	pool->nr_queued++;
	if (pool->nr_queued > pool->nr_idle &&
	    pool->nr_workers < pool->max_workers) {
		ret = spawn_worker_locked(pool);
		spawned = ret == 0;
		/* With workers left, the request waits for one of them. */
		if (ret < 0 && pool->nr_workers > 0)
			ret = 0;
	}
	if (ret < 0) {
		TAILQ_REMOVE(&pool->queue, req, link);
		pool->nr_queued--;
		pthread_mutex_unlock(&pool->lock);
		free(req);
		return ret;
	}
	pool->submitted++;
	/* A new worker looks at the queue before it ever waits. */
	wake = !spawned && pool->nr_idle > 0;
	pthread_mutex_unlock(&pool->lock);
	/*
	 * Signal after the unlock: a woken worker would otherwise run
	 * straight into the lock we still hold (engine-bench counted the
	 * futex calls).  No wake-up is lost: the request is queued under
	 * the lock, and a worker tests the queue under it before waiting.
	 */
	if (wake)
		pthread_cond_signal(&pool->work_cond);

	/* done runs only from ctx's loop_poll, so req is still valid. */
	if (reqp)
		*reqp = req;
	return 0;
}

int tpool_cancel(struct tpool *pool, struct tpool_req *req)
{
	bool cancelled = false;

	assert(req->bh.ctx == loop_get_current());
	pthread_mutex_lock(&pool->lock);
	if (req->state == TPOOL_REQ_QUEUED) {
		TAILQ_REMOVE(&pool->queue, req, link);
		pool->nr_queued--;
		req->state = TPOOL_REQ_DONE;
		req->ret = -ECANCELED;
		pool->cancelled++;
		cancelled = true;
	}
	pthread_mutex_unlock(&pool->lock);
	if (!cancelled)
		return -EBUSY;
	/* Even when called from a BH, this one runs in a later pass. */
	loop_bh_schedule(&req->bh);
	return 0;
}

/* ---- the coroutine variant ------------------------------------------ */

struct tpool_co_wait {
	struct coroutine *co;
	int ret;
	bool done;
};

static void tpool_co_done(void *opaque, int ret)
{
	struct tpool_co_wait *w = opaque;

	w->ret = ret;
	w->done = true;
	co_wake(w->co);
}

int coroutine_fn tpool_co_submit(struct tpool *pool, tpool_work_fn *work,
				 void *arg)
{
	struct tpool_co_wait w = { .co = co_self() };
	int ret;

	assert(w.co && co_get_ctx(w.co));
	ret = tpool_submit(pool, co_get_ctx(w.co), work, arg, tpool_co_done,
			   &w, NULL);
	if (ret < 0)
		return ret;
	/* done never runs inside tpool_submit, so this yield comes first. */
	while (!w.done)
		co_yield();
	return w.ret;
}

/* ---- statistics ---------------------------------------------------- */

void tpool_get_stats(struct tpool *pool, struct tpool_stats *st)
{
	pthread_mutex_lock(&pool->lock);
	st->workers = pool->nr_workers;
	st->idle_workers = pool->nr_idle;
	st->peak_workers = pool->peak_workers;
	st->submitted = pool->submitted;
	st->completed = pool->completed;
	st->cancelled = pool->cancelled;
	st->idle_exits = pool->idle_exits;
	pthread_mutex_unlock(&pool->lock);
}

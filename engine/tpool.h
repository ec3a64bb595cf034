/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The thread pool: worker threads that run the blocking system calls of the
 * block engine (pread, pwrite, fdatasync, fallocate, ...) so that no event
 * loop ever blocks on them.
 *
 * Threading:
 *  - tpool_new and tpool_free: the thread that owns the pool (normally
 *    main), never a worker.  tpool_free needs every request to have
 *    completed (its done callback run) and waits for every worker to exit.
 *  - tpool_submit and tpool_cancel: the thread of the context (struct loop)
 *    the request is submitted to; tpool_co_submit: a coroutine, with the
 *    coroutine's context.  One pool serves any number of contexts.
 *  - A request's work function runs in a worker thread named "vdisk-pool"
 *    with every signal blocked; it may block, and must not touch state
 *    that belongs to a context.
 *  - A request's done callback runs later in its context's thread, from a
 *    bottom half (loop_poll), never inside tpool_submit or tpool_cancel.
 *  - tpool_get_stats: any thread.
 *  - Lifetime: a context that received requests must stay alive until the
 *    pool is freed: a worker still touches the context's notifier just
 *    after it handed the completion over.
 */
#ifndef VDISK_TPOOL_H
#define VDISK_TPOOL_H

#include <stdint.h>

#include "compiler.h"
#include "loop.h"

struct tpool;
struct tpool_req;

/* Defaults, used when tpool_new gets NULL parameters. */
#define TPOOL_DEFAULT_MAX_WORKERS     64u
#define TPOOL_DEFAULT_IDLE_TIMEOUT_NS (10ull * 1000000000ull)

struct tpool_params {
	/* Most worker threads at once; at least 1. */
	unsigned max_workers;
	/*
	 * A worker that found no work for this long exits; 0 makes workers
	 * exit as soon as the queue is empty.
	 */
	uint64_t idle_timeout_ns;
};

/* A snapshot of the pool's counters (tpool_get_stats). */
struct tpool_stats {
	unsigned workers;          /* worker threads alive now */
	unsigned idle_workers;     /* of those, waiting for work (or starting) */
	unsigned peak_workers;     /* most workers alive at once, ever */
	uint64_t submitted;        /* requests accepted by tpool_submit */
	uint64_t completed;        /* requests whose work ran to its end */
	uint64_t cancelled;        /* requests removed by tpool_cancel */
	uint64_t idle_exits;       /* workers that exited for lack of work */
};

/*
 * Runs in a worker thread.  Returns 0 or a count on success, -errno on
 * failure; the value is handed to the done callback as it is.
 */
typedef int tpool_work_fn(void *arg);

/*
 * Runs in the submitting context's thread once the request is over: ret is
 * the work's return value, or -ECANCELED for a request that was cancelled
 * before it started.  The request handle is freed after it returns.
 */
typedef void tpool_done_fn(void *opaque, int ret);

/*
 * Create a pool with no worker yet (workers start on demand).  p NULL means
 * the defaults above.  Returns 0 and sets *out, -EINVAL if p->max_workers
 * is 0, or another -errno.  The caller owns the pool (tpool_free).
 */
int tpool_new(const struct tpool_params *p, struct tpool **out);

/*
 * Stop every worker, join it and free the pool.  NULL is a no-op.
 * Precondition: no request is pending, i.e. every done callback has run.
 * (A request still queued or running is carried out by the workers before
 * they stop, but its done callback then runs after the pool is gone, in a
 * context that must still be polled: do not rely on it.)
 */
void tpool_free(struct tpool *pool);

/*
 * Queue work(arg) for a worker; when it returns, done(opaque, ret) runs in
 * ctx's thread.  Called from ctx's thread.  Starts a worker if none is idle
 * and fewer than max_workers run.
 *
 * Returns 0, and sets *reqp (if reqp is not NULL) to a handle for
 * tpool_cancel that stays valid until done has run; or -ENOMEM, or
 * -EAGAIN if no worker could be started and none exists.  On error
 * neither work nor done will run.  arg and opaque are borrowed until done
 * has run.
 */
int tpool_submit(struct tpool *pool, struct loop *ctx, tpool_work_fn *work,
		 void *arg, tpool_done_fn *done, void *opaque,
		 struct tpool_req **reqp);

/*
 * tpool_submit from a coroutine, in the coroutine's context: yields until
 * the work has run and returns its return value, or a tpool_submit error.
 */
int coroutine_fn tpool_co_submit(struct tpool *pool, tpool_work_fn *work,
				 void *arg);

/*
 * Cancel a request whose work has not started: it is taken off the queue,
 * its work never runs and its done callback runs later (from the context,
 * not from here) with -ECANCELED; returns 0.  If a worker has already
 * picked the request up (or finished it), returns -EBUSY and nothing
 * changes: done will get the work's result.  Called from the request's
 * context thread, with a handle whose done has not run yet.
 */
int tpool_cancel(struct tpool *pool, struct tpool_req *req);

/* Copy the pool's counters to *st, consistently.  Any thread. */
void tpool_get_stats(struct tpool *pool, struct tpool_stats *st);

#endif /* VDISK_TPOOL_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AioContext: one epoll event loop per I/O thread.
 *
 * A context owns fd handlers, timers and bottom halves (BHs).  Everything
 * registered in a context runs in the thread that polls it, one callback at
 * a time, so state that belongs to a context needs no lock.  Other threads
 * hand work to a context by scheduling a BH (or a coroutine, see
 * coroutine.h) there; the context's eventfd notifier wakes the poller.
 *
 * Threading:
 *  - loop_new/loop_free: any thread, but loop_free only once nothing polls
 *    the context any more and no other thread can schedule into it.
 *  - loop_poll, loop_set_fd_handler, timers, LOOP_WAIT_WHILE: the thread that
 *    polls the context (its "home" thread), and nowhere else.
 *  - loop_notify, loop_bh_schedule, loop_bh_schedule_oneshot,
 *    loop_wait_kick, loop_call_sync: any thread.
 *  - Callbacks (fd handlers, BHs, timers) run in the home thread from inside
 *    loop_poll; loop_get_current() returns the context while they run.
 */
#ifndef VDISK_LOOP_H
#define VDISK_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

struct loop;

typedef void loop_fd_fn(void *opaque);
typedef void loop_bh_fn(void *opaque);
typedef void loop_timer_fn(void *opaque);

/*
 * A bottom half: a callback that runs once in its context's thread after it
 * is scheduled.  Scheduling an already scheduled BH does nothing, so a BH
 * runs once however often it was scheduled before it ran.  BHs run in the
 * order they were scheduled, across all scheduling threads.
 *
 * The struct is public so that it can be embedded in a longer-lived object
 * (a request, a coroutine): that costs no allocation per schedule.
 */
struct loop_bh {
	struct loop *ctx;
	loop_bh_fn *cb;
	void *opaque;
	/* The fields below are protected by ctx's BH lock. */
	TAILQ_ENTRY(loop_bh) link;
	uint64_t seq;
	unsigned flags;
};

/* A timer on the monotonic clock.  Embedded by its user; home thread only. */
struct loop_timer {
	struct loop *ctx;
	loop_timer_fn *cb;
	void *opaque;
	uint64_t deadline_ns;   /* valid while pending */
	bool pending;
	TAILQ_ENTRY(loop_timer) link;
};

/*
 * Create an event loop.  Returns 0 and sets *out, or -errno.  The caller
 * owns the context and frees it with loop_free.
 */
int loop_new(struct loop **out);

/* Free a context; scheduled BHs that never ran are dropped.  NULL is a no-op. */
void loop_free(struct loop *ctx);

/*
 * The context whose callbacks are running in this thread (set while
 * loop_poll runs), else the thread's home context (loop_set_current), else
 * NULL.
 */
struct loop *loop_get_current(void);

/* Make ctx this thread's home context (iothreads and main() do this). */
void loop_set_current(struct loop *ctx);

/*
 * Run what is ready: fd handlers, bottom halves, expired timers.  With
 * blocking set, wait until something is ready first (or until loop_notify).
 * Returns true if a callback ran.  Home thread only; may be nested from a
 * callback.
 */
bool loop_poll(struct loop *ctx, bool blocking);

/* Wake the poller of ctx if it is blocked.  Any thread. */
void loop_notify(struct loop *ctx);

/*
 * Watch fd for readability (io_read) and/or writability (io_write), both
 * called with opaque.  Calling again for the same fd replaces the handlers;
 * both NULL removes the fd.  A handler may remove itself or others.
 * Returns 0 or -errno.  Home thread only.
 */
int loop_set_fd_handler(struct loop *ctx, int fd, loop_fd_fn *io_read,
			loop_fd_fn *io_write, void *opaque);

/* Bottom halves. */

/* Prepare an embedded BH.  Not scheduled yet. */
void loop_bh_init(struct loop_bh *bh, struct loop *ctx, loop_bh_fn *cb,
		  void *opaque);

/* Allocate a BH; free with loop_bh_delete.  NULL on out of memory. */
struct loop_bh *loop_bh_new(struct loop *ctx, loop_bh_fn *cb, void *opaque);

/*
 * Schedule bh to run in its context.  Any thread.  An embedded BH may be
 * moved to another context by setting bh->ctx while it is not scheduled.
 */
void loop_bh_schedule(struct loop_bh *bh);

/* Unschedule bh if it has not started running.  Home thread only. */
void loop_bh_cancel(struct loop_bh *bh);

/*
 * Cancel and free a BH from loop_bh_new.  Home thread, or any thread once
 * no other thread can still schedule it.  NULL is a no-op.
 */
void loop_bh_delete(struct loop_bh *bh);

/*
 * Run cb(opaque) once in ctx, then forget it: the BH is allocated here and
 * freed after it ran.  Any thread.  Returns 0 or -ENOMEM.
 */
int loop_bh_schedule_oneshot(struct loop *ctx, loop_bh_fn *cb, void *opaque);

/* Timers. */

/* Current CLOCK_MONOTONIC time in nanoseconds. */
uint64_t loop_now_ns(void);

void loop_timer_init(struct loop_timer *t, struct loop *ctx,
		     loop_timer_fn *cb, void *opaque);

/*
 * (Re)arm t to fire at deadline_ns (loop_now_ns() clock).  Timers fire in
 * deadline order, equal deadlines in the order they were armed, and never
 * before their deadline.  Home thread only.
 */
void loop_timer_mod(struct loop_timer *t, uint64_t deadline_ns);

/* Disarm t if pending.  Home thread only. */
void loop_timer_del(struct loop_timer *t);

static inline bool loop_timer_pending(const struct loop_timer *t)
{
	return t->pending;
}

/*
 * Run fn(arg) in ctx's thread and return once it has returned: directly
 * when the caller already runs in ctx's thread, else from a bottom half
 * while the caller blocks.  For code outside the context (an ioctl
 * handler, a FUSE worker) that needs a synchronous answer.  Any thread,
 * but never one that ctx's thread itself waits for.
 */
void loop_call_sync(struct loop *ctx, void (*fn)(void *), void *arg);

/* Waiting for a condition. */

/*
 * Internal: waiter count of ctx, used by LOOP_WAIT_WHILE.  Not for direct
 * use.
 */
atomic_int *loop_waiters_(struct loop *ctx);

/*
 * Tell a context that waits in LOOP_WAIT_WHILE that a condition it waits on
 * may have changed.  Call it from any thread after changing state that
 * another thread's LOOP_WAIT_WHILE tests; within the home thread it is not
 * needed (callbacks that run there are seen by the next test).
 */
void loop_wait_kick(struct loop *ctx);

/*
 * Poll ctx until cond is false.  Home thread only, never in a coroutine.
 * cond is evaluated in the home thread; when another thread makes it false,
 * that thread calls loop_wait_kick(ctx) afterwards.  The waiter count is
 * raised before the first test, so a kick can never fall between a test
 * and the blocking poll.
 */
#define LOOP_WAIT_WHILE(ctx, cond)                                          \
	do {                                                                \
		struct loop *wait_ctx_ = (ctx);                             \
		atomic_fetch_add(loop_waiters_(wait_ctx_), 1);              \
		while (cond)                                                \
			loop_poll(wait_ctx_, true);                         \
		atomic_fetch_sub(loop_waiters_(wait_ctx_), 1);              \
	} while (0)

#endif /* VDISK_LOOP_H */

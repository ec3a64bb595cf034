/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stackful coroutines and the primitives that block them.
 *
 * A coroutine runs on its own stack until it yields; whoever entered it then
 * continues.  A coroutine belongs to the context (loop.h) that was current
 * when it was last entered: after a yield it is resumed only in that
 * context's thread, by co_wake/co_schedule or by a direct co_enter from
 * that thread.  co_reschedule_self moves a coroutine to another context.
 *
 * Threading:
 *  - co_create, co_enter, co_yield, co_self, in_coroutine, the CoQueue
 *    functions and co_sleep_ns: the thread of the coroutine's context.
 *  - co_schedule and co_wake: any thread.
 *  - CoMutex: any coroutine in any context; a waiter is resumed in its own
 *    context.
 *  - Entering a coroutine that is running, or scheduling one twice before
 *    it ran, is a programming error and aborts with a message.
 */
#ifndef VDISK_COROUTINE_H
#define VDISK_COROUTINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "compiler.h"
#include "loop.h"

struct coroutine;

typedef void coroutine_fn co_entry_fn(void *opaque);

/* Default stack size: 1 MiB of address space, pages used on demand. */
#define CO_STACK_SIZE (1u << 20)

/*
 * Make a coroutine that will run entry(opaque) when first entered.  Any
 * thread.  The
 * stack comes from a pool, so create and free are cheap; a guard page under
 * it turns an overflow into SIGSEGV.  Returns NULL on out of memory.  The
 * coroutine frees itself when entry returns; one that is never entered is
 * freed with co_free_unstarted.
 */
struct coroutine *co_create(co_entry_fn *entry, void *opaque);

/* Free a coroutine that was created but never entered.  NULL is a no-op. */
void co_free_unstarted(struct coroutine *co);

/*
 * Switch to co now; return when it yields or finishes.  The caller may be a
 * coroutine (co then returns to it) or plain code.  co is bound to
 * loop_get_current() (when there is one).  Thread of co's context, or any
 * thread for a coroutine never entered.
 */
void co_enter(struct coroutine *co);

/* Give control back to whoever entered the running coroutine. */
void coroutine_fn co_yield(void);

/*
 * Continue the running coroutine in ctx's thread: it yields here and is
 * scheduled into ctx once it has left this thread's stack, so the other
 * thread can never enter it while it is still running here.
 */
void coroutine_fn co_reschedule_self(struct loop *ctx);

/* The running coroutine, or NULL outside one. */
struct coroutine *co_self(void);

static inline bool in_coroutine(void)
{
	return co_self() != NULL;
}

/* The context a coroutine belongs to (NULL before its first enter). */
struct loop *co_get_ctx(const struct coroutine *co);

/*
 * Enter co in ctx's thread, from a BH.  Any thread.  co must be yielded
 * (or new) and not scheduled already.  Scheduled coroutines of one context
 * run in the order they were scheduled.
 */
void co_schedule(struct loop *ctx, struct coroutine *co);

/*
 * Resume a yielded coroutine in its own context.  Any thread.  From another
 * thread it is scheduled; from plain code in its thread it is entered at
 * once; from a coroutine in its thread it runs as soon as the caller yields
 * or finishes (no nesting, so wake-ups never grow the stack).
 */
void co_wake(struct coroutine *co);

/* Yield for at least ns nanoseconds on the context's timers. */
void coroutine_fn co_sleep_ns(uint64_t ns);

/*
 * CoQueue: coroutines waiting for something, woken in FIFO order.  All
 * functions run in the thread of the waiters' context (or under a lock the
 * caller holds for every access to the queue).
 */
struct co_queue {
	STAILQ_HEAD(, coroutine) waiters;
};

void co_queue_init(struct co_queue *q);

/* Wait until woken.  Queue order is arrival order. */
void coroutine_fn co_queue_wait(struct co_queue *q);

/* Wake the first waiter; returns false if there was none. */
bool co_queue_wake_one(struct co_queue *q);

/* Wake every waiter, in order. */
void co_queue_wake_all(struct co_queue *q);

static inline bool co_queue_empty(const struct co_queue *q)
{
	return STAILQ_EMPTY(&q->waiters);
}

/*
 * CoMutex: a lock that yields instead of blocking the thread.  Fair: the
 * lock is handed to waiters in arrival order.  Usable from coroutines of
 * any context.
 */
struct co_mutex {
	pthread_mutex_t lock;      /* protects the fields below */
	struct coroutine *holder;
	struct co_queue waiters;
};

void co_mutex_init(struct co_mutex *m);
void co_mutex_destroy(struct co_mutex *m);
void coroutine_fn co_mutex_lock(struct co_mutex *m);
/* Unlock; must be called by the holder. */
void coroutine_fn co_mutex_unlock(struct co_mutex *m);

#endif /* VDISK_COROUTINE_H */

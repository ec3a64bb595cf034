/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stackful coroutines: stack pool, context switch, wake-ups, CoQueue,
 * CoMutex and sleeping.
 *
 * Design notes
 *
 * Each thread has a "leader": a coroutine object that stands for the
 * thread's own stack, so every switch is between two struct coroutine.
 * co_enter records the enterer in co->caller; co_yield switches back to it
 * and clears it, so a non-NULL caller means "running", which is what the
 * re-entry check tests.
 *
 * A finished coroutine does not return from its trampoline: it switches
 * back to its caller one last time and goes to the pool with its stack.
 * When the pool hands it out again, entering it resumes the trampoline's
 * loop, which calls the new entry function.  So reuse costs no stack set-up.
 *
 * Wake-ups from a coroutine in the same thread go to the waker's wake-up
 * list and run, in order, when the waker yields or ends (co_enter's loop),
 * so chains of wake-ups never nest stacks.
 *
 * The switch: on x86-64 a short assembly routine saves the callee-saved
 * registers, MXCSR and the x87 control word on the old stack and restores
 * them from the new one (about as cheap as a function call).  Elsewhere,
 * and in the test built with CO_FORCE_UCONTEXT, swapcontext does it.  Both
 * announce every switch to ASan (start/finish_switch_fiber), TSan
 * (switch_to_fiber) and valgrind (registered stacks).
 *
 * Pool: a per-thread free list (no lock) that spills into a global one under
 * a mutex, so coroutines created in one thread and finished in another do
 * not pile up.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#if !defined(__x86_64__) || defined(CO_FORCE_UCONTEXT)
# define CO_USE_UCONTEXT 1
# include <ucontext.h>
#endif

#include "compiler.h"
#include "coroutine.h"

#ifdef VDISK_ASAN
# include <sanitizer/asan_interface.h>
# include <sanitizer/common_interface_defs.h>
#endif
#ifdef VDISK_TSAN
# include <sanitizer/tsan_interface.h>
#endif
#ifdef HAVE_VALGRIND_VALGRIND_H
# include <valgrind/valgrind.h>
#endif

#define CO_POOL_THREAD_MAX 64
#define CO_POOL_GLOBAL_MAX 256

struct coroutine {
	co_entry_fn *entry;
	void *opaque;
	struct loop *ctx;            /* context it was last entered in */
	struct coroutine *caller;    /* non-NULL while running */
	bool terminated;
	struct loop *move_to;        /* co_reschedule_self target */
	atomic_bool scheduled;       /* in a context's BH list */
	struct loop_bh bh;           /* for co_schedule */

	/* In one list at a time: a CoQueue, a wake-up list, co_enter's
	 * pending list, or the pool. */
	STAILQ_ENTRY(coroutine) link;
	STAILQ_HEAD(, coroutine) wakeup; /* to run when this one yields */
	struct coroutine *pool_next;

	/* Stack; NULL for a thread's leader. */
	void *map;                   /* the mapping, guard page first */
	size_t map_size;
	void *stack_bottom;          /* lowest usable address */
	size_t stack_size;
	unsigned valgrind_id;
	void *tsan_fiber;

#ifdef CO_USE_UCONTEXT
	ucontext_t uc;
#else
	void *sp;                    /* saved stack pointer while switched out */
#endif
};

STAILQ_HEAD(co_list, coroutine);

static __thread struct coroutine tls_leader;
static __thread struct coroutine *tls_current;
static __thread struct coroutine *tls_switch_from;
static __thread struct coroutine *tls_pool;     /* via pool_next */
static __thread unsigned tls_pool_len;
static __thread bool tls_pool_registered;

static pthread_mutex_t global_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct coroutine *global_pool;

static unsigned global_pool_len;
static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;

static void __attribute__((noreturn)) co_die(const char *what)
{
	fprintf(stderr, "coroutine: %s\n", what);
	abort();
}

static struct coroutine *current(void)
{
	if (!tls_current) {
		tls_current = &tls_leader;
#ifdef VDISK_TSAN
		tls_leader.tsan_fiber = __tsan_get_current_fiber();
#endif
	}
	return tls_current;
}

struct coroutine *co_self(void)
{
	struct coroutine *c = tls_current;

	return c == &tls_leader ? NULL : c;
}

struct loop *co_get_ctx(const struct coroutine *co)
{
	return co->ctx;
}

/* ---- the switch ---------------------------------------------------- */

static void __attribute__((noreturn, used)) co_trampoline(struct coroutine *co);

#ifdef CO_USE_UCONTEXT

static void co_trampoline_uc(unsigned hi, unsigned lo)
{
	uintptr_t p = ((uintptr_t)hi << 32) | lo;

	co_trampoline((struct coroutine *)p);
}

static int arch_init_stack(struct coroutine *co)
{
	uintptr_t p = (uintptr_t)co;

	if (getcontext(&co->uc) < 0)
		return -errno;
	co->uc.uc_stack.ss_sp = co->stack_bottom;
	co->uc.uc_stack.ss_size = co->stack_size;
	co->uc.uc_link = NULL;
	makecontext(&co->uc, (void (*)(void))co_trampoline_uc, 2,
		    (unsigned)(p >> 32), (unsigned)p);
	return 0;
}

static inline void arch_switch(struct coroutine *from, struct coroutine *to)
{
	swapcontext(&from->uc, &to->uc);
}

#else /* x86-64 assembly switch */

void vdisk_co_switch_asm(void **save_sp, void *new_sp);
void vdisk_co_start_asm(void);

/*
 * vdisk_co_switch_asm(save_sp, new_sp): push the callee-saved registers and
 * the FP control state, save rsp in *save_sp, load new_sp, pop the same
 * from there and return on the new stack.
 * vdisk_co_start_asm: first return target of a new stack; rbx holds the
 * coroutine, rsp is 16-byte aligned, so the call sees the ABI's alignment.
 */
__asm__(
	".text\n"
	".globl vdisk_co_switch_asm\n"
	".hidden vdisk_co_switch_asm\n"
	".type vdisk_co_switch_asm,@function\n"
	"vdisk_co_switch_asm:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	subq $8, %rsp\n"
	"	stmxcsr (%rsp)\n"
	"	fnstcw 4(%rsp)\n"
	"	movq %rsp, (%rdi)\n"
	"	movq %rsi, %rsp\n"
	"	ldmxcsr (%rsp)\n"
	"	fldcw 4(%rsp)\n"
	"	addq $8, %rsp\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size vdisk_co_switch_asm, .-vdisk_co_switch_asm\n"
	".globl vdisk_co_start_asm\n"
	".hidden vdisk_co_start_asm\n"
	".type vdisk_co_start_asm,@function\n"
	"vdisk_co_start_asm:\n"
	"	movq %rbx, %rdi\n"
	"	call co_trampoline\n"
	"	ud2\n"
	".size vdisk_co_start_asm, .-vdisk_co_start_asm\n"
);

static int arch_init_stack(struct coroutine *co)
{
	uintptr_t top = ((uintptr_t)co->stack_bottom + co->stack_size) & ~15ul;
	uint64_t *sp = (uint64_t *)(top - 80);

	/* The frame vdisk_co_switch_asm pops, lowest address first:
	 * MXCSR + x87 control word, r15, r14, r13, r12, rbx, rbp, return
	 * address.  After the ret, rsp = top - 16, 16-byte aligned. */
	sp[0] = 0x1f80 | ((uint64_t)0x037f << 32);
	sp[1] = sp[2] = sp[3] = sp[4] = 0;
	sp[5] = (uint64_t)(uintptr_t)co;
	sp[6] = 0;
	sp[7] = (uint64_t)(uintptr_t)vdisk_co_start_asm;
	sp[8] = sp[9] = 0;
	co->sp = sp;
	return 0;
}

static inline void arch_switch(struct coroutine *from, struct coroutine *to)
{
	vdisk_co_switch_asm(&from->sp, to->sp);
}

#endif

/*
 * Switch from the running coroutine to another.  Returns when something
 * switches back to from (never, for a finished coroutine).
 */
static void __attribute__((noinline))
co_switch(struct coroutine *from, struct coroutine *to, bool finishing)
{
#ifdef VDISK_ASAN
	void *fake_stack = NULL;

	__sanitizer_start_switch_fiber(finishing ? NULL : &fake_stack,
				       to->stack_bottom, to->stack_size);
#else
	(void)finishing;
#endif
#ifdef VDISK_TSAN
	__tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
	tls_switch_from = from;
	tls_current = to;
	arch_switch(from, to);
#ifdef VDISK_ASAN
	/* Back on from's stack; learn the bounds of the one we came from
	 * (this is how the leader's stack becomes known). */
	__sanitizer_finish_switch_fiber(fake_stack,
					(const void **)&tls_switch_from->stack_bottom,
					&tls_switch_from->stack_size);
#endif
}

static void co_trampoline(struct coroutine *co)
{
#ifdef VDISK_ASAN
	__sanitizer_finish_switch_fiber(NULL,
					(const void **)&tls_switch_from->stack_bottom,
					&tls_switch_from->stack_size);
#endif
	for (;;) {
		co->entry(co->opaque);
		co->terminated = true;
		/* The pool may hand this coroutine out again; entering it
		 * then continues here, with a new entry. */
		co_switch(co, co->caller, true);
	}
}

/* ---- allocation and pool ------------------------------------------- */

static void co_unmap(struct coroutine *co)
{
#ifdef HAVE_VALGRIND_VALGRIND_H
	VALGRIND_STACK_DEREGISTER(co->valgrind_id);
#endif
#ifdef VDISK_TSAN
	__tsan_destroy_fiber(co->tsan_fiber);
#endif
	munmap(co->map, co->map_size);
	free(co);
}

static void pool_thread_exit(void *arg)
{
	struct coroutine *co;

	(void)arg;
	/* Give this thread's spare coroutines to the global pool or free
	 * them; they are no use to a thread that is going away. */
	while ((co = tls_pool)) {
		tls_pool = co->pool_next;
		pthread_mutex_lock(&global_pool_lock);
		if (global_pool_len < CO_POOL_GLOBAL_MAX) {
			co->pool_next = global_pool;
			global_pool = co;
			global_pool_len++;
			co = NULL;
		}
		pthread_mutex_unlock(&global_pool_lock);
		if (co)
			co_unmap(co);
	}
	tls_pool_len = 0;
	tls_pool_registered = false;
}

static void pool_key_init(void)
{
	pthread_key_create(&pool_key, pool_thread_exit);
}

static struct coroutine *co_alloc(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct coroutine *co = calloc(1, sizeof(*co));
	void *map;

	if (!co)
		return NULL;
	co->map_size = CO_STACK_SIZE + (size_t)page;
	map = mmap(NULL, co->map_size, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
		   -1, 0);
	if (map == MAP_FAILED)
		goto out_free;
	/* Stacks grow down: the guard page is the lowest one. */
	if (mprotect(map, (size_t)page, PROT_NONE) < 0)
		goto out_unmap;
	co->map = map;
	co->stack_bottom = (char *)map + page;
	co->stack_size = CO_STACK_SIZE;
	if (arch_init_stack(co) < 0)
		goto out_unmap;
#ifdef HAVE_VALGRIND_VALGRIND_H
	co->valgrind_id = VALGRIND_STACK_REGISTER(co->stack_bottom,
			(char *)co->stack_bottom + co->stack_size);
#endif
#ifdef VDISK_TSAN
	co->tsan_fiber = __tsan_create_fiber(0);
#endif
	return co;

out_unmap:
	munmap(map, co->map_size);
out_free:
	free(co);
	return NULL;
}

static struct coroutine *pool_get(void)
{
	struct coroutine *co = tls_pool;

	if (co) {
		tls_pool = co->pool_next;
		tls_pool_len--;
		return co;
	}
	pthread_mutex_lock(&global_pool_lock);
	co = global_pool;
	if (co) {
		global_pool = co->pool_next;
		global_pool_len--;
	}
	pthread_mutex_unlock(&global_pool_lock);
	return co;
}

static void pool_put(struct coroutine *co)
{
	if (tls_pool_len < CO_POOL_THREAD_MAX) {
		if (!tls_pool_registered) {
			pthread_once(&pool_key_once, pool_key_init);
			/* Any non-NULL value makes the destructor run. */
			pthread_setspecific(pool_key, &tls_pool_len);
			tls_pool_registered = true;
		}
		co->pool_next = tls_pool;
		tls_pool = co;
		tls_pool_len++;
		return;
	}
	pthread_mutex_lock(&global_pool_lock);
	if (global_pool_len < CO_POOL_GLOBAL_MAX) {
		co->pool_next = global_pool;
		global_pool = co;
		global_pool_len++;
		co = NULL;
	}
	pthread_mutex_unlock(&global_pool_lock);
	if (co)
		co_unmap(co);
}

struct coroutine *co_create(co_entry_fn *entry, void *opaque)
{
	struct coroutine *co = pool_get();

	if (!co) {
		co = co_alloc();
		if (!co)
			return NULL;
	}
	co->entry = entry;
	co->opaque = opaque;
	co->ctx = NULL;
	co->caller = NULL;
	co->terminated = false;
	co->move_to = NULL;
	atomic_store(&co->scheduled, false);
	STAILQ_INIT(&co->wakeup);
	return co;
}

void co_free_unstarted(struct coroutine *co)
{
	if (!co)
		return;
	if (co->caller || atomic_load(&co->scheduled))
		co_die("co_free_unstarted on a running or scheduled coroutine");
	pool_put(co);
}

/* ---- entering, yielding, waking ------------------------------------ */

static void co_schedule_bh(void *opaque);

void co_enter(struct coroutine *co)
{
	struct co_list pending = STAILQ_HEAD_INITIALIZER(pending);
	struct coroutine *self = current();
	struct loop *ctx = loop_get_current();

	STAILQ_INSERT_TAIL(&pending, co, link);
	while ((co = STAILQ_FIRST(&pending))) {
		STAILQ_REMOVE_HEAD(&pending, link);
		if (co->caller)
			co_die("entering a coroutine that is already running");
		if (ctx)
			co->ctx = ctx;
		co->caller = self;
		co_switch(self, co, false);

		/* co yielded or finished.  Its wake-ups go first. */
		if (!STAILQ_EMPTY(&co->wakeup)) {
			STAILQ_CONCAT(&co->wakeup, &pending);
			STAILQ_CONCAT(&pending, &co->wakeup);
		}
		if (co->terminated) {
			pool_put(co);
		} else if (co->move_to) {
			struct loop *to = co->move_to;

			co->move_to = NULL;
			co_schedule(to, co);
		}
	}
}

void coroutine_fn co_yield(void)
{
	struct coroutine *self = current();
	struct coroutine *to = self->caller;

	if (!to)
		co_die("co_yield outside a coroutine");
	self->caller = NULL;
	co_switch(self, to, false);
}

void coroutine_fn co_reschedule_self(struct loop *ctx)
{
	struct coroutine *self = co_self();

	if (!self)
		co_die("co_reschedule_self outside a coroutine");
	if (ctx == self->ctx)
		return;
	self->move_to = ctx;
	co_yield();
}

static void co_schedule_bh(void *opaque)
{
	struct coroutine *co = opaque;

	atomic_store(&co->scheduled, false);
	co_enter(co);
}

void co_schedule(struct loop *ctx, struct coroutine *co)
{
	if (atomic_exchange(&co->scheduled, true))
		co_die("coroutine scheduled twice");
	loop_bh_init(&co->bh, ctx, co_schedule_bh, co);
	loop_bh_schedule(&co->bh);
}

void co_wake(struct coroutine *co)
{
	struct coroutine *self;

	if (co->ctx != loop_get_current()) {
		if (!co->ctx)
			co_die("co_wake from another thread of a coroutine "
			       "that belongs to no context");
		co_schedule(co->ctx, co);
		return;
	}
	self = co_self();
	if (self) {
		if (self == co)
			co_die("a coroutine woke itself");
		STAILQ_INSERT_TAIL(&self->wakeup, co, link);
		return;
	}
	co_enter(co);
}

/* ---- sleeping ------------------------------------------------------ */

static void co_sleep_cb(void *opaque)
{
	co_wake(opaque);
}

void coroutine_fn co_sleep_ns(uint64_t ns)
{
	struct coroutine *self = co_self();
	struct loop_timer t;

	if (!self || !self->ctx)
		co_die("co_sleep_ns needs a coroutine in a context");
	loop_timer_init(&t, self->ctx, co_sleep_cb, self);
	loop_timer_mod(&t, loop_now_ns() + ns);
	co_yield();
	/* Woken early by someone else: the timer lives on this frame. */
	loop_timer_del(&t);
}

/* ---- CoQueue ------------------------------------------------------- */

void co_queue_init(struct co_queue *q)
{
	STAILQ_INIT(&q->waiters);
}

void coroutine_fn co_queue_wait(struct co_queue *q)
{
	struct coroutine *self = co_self();

	if (!self)
		co_die("co_queue_wait outside a coroutine");
	STAILQ_INSERT_TAIL(&q->waiters, self, link);
	co_yield();
}

bool co_queue_wake_one(struct co_queue *q)
{
	struct coroutine *co = STAILQ_FIRST(&q->waiters);

	if (!co)
		return false;
	STAILQ_REMOVE_HEAD(&q->waiters, link);
	co_wake(co);
	return true;
}

void co_queue_wake_all(struct co_queue *q)
{
	while (co_queue_wake_one(q))
		;
}

/* ---- CoMutex ------------------------------------------------------- */

void co_mutex_init(struct co_mutex *m)
{
	pthread_mutex_init(&m->lock, NULL);
	m->holder = NULL;
	co_queue_init(&m->waiters);
}

void co_mutex_destroy(struct co_mutex *m)
{
	pthread_mutex_destroy(&m->lock);
}

void coroutine_fn co_mutex_lock(struct co_mutex *m)
{
	struct coroutine *self = co_self();

	if (!self)
		co_die("co_mutex_lock outside a coroutine");
	pthread_mutex_lock(&m->lock);
	if (!m->holder) {
		m->holder = self;
		pthread_mutex_unlock(&m->lock);
		return;
	}
	if (m->holder == self)
		co_die("co_mutex_lock: the holder locked it again");
	/* The unlocker hands the lock over and wakes us in our own
	 * context, which cannot run us before we have yielded here. */
	STAILQ_INSERT_TAIL(&m->waiters.waiters, self, link);
	pthread_mutex_unlock(&m->lock);
	co_yield();
}

void coroutine_fn co_mutex_unlock(struct co_mutex *m)
{
	struct coroutine *next;

	pthread_mutex_lock(&m->lock);
	if (m->holder != co_self())
		co_die("co_mutex_unlock by a coroutine that does not hold it");
	next = STAILQ_FIRST(&m->waiters.waiters);
	if (next)
		STAILQ_REMOVE_HEAD(&m->waiters.waiters, link);
	m->holder = next;
	pthread_mutex_unlock(&m->lock);
	if (next)
		co_wake(next);
}

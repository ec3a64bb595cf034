/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The AioContext event loop: epoll, an eventfd notifier, bottom halves and
 * timers.
 *
 * Design notes
 *
 * Bottom halves sit on one FIFO list per context under a mutex, each with a
 * sequence number taken when it was scheduled.  A pass runs the BHs whose
 * number is below the one current when the pass began, popping one at a
 * time under the lock, so a BH that reschedules itself runs again in the
 * next pass, not forever in this one, and BHs from every thread run in
 * scheduling order.  Popping one at a time also makes nested loop_poll calls
 * (LOOP_WAIT_WHILE inside a callback) safe.
 *
 * Wake-ups: a poller that is about to block raises notify_me, then checks
 * for pending BHs and kicks, then calls epoll_wait.  loop_notify writes the
 * eventfd only when notify_me is up.  Both sides use sequentially
 * consistent accesses, so either the poller sees the work or the notifier
 * sees notify_me (the classic store-load pairing).
 *
 * Timers are kept on a list sorted by deadline; armed timers are few (jobs,
 * sleeps, time-outs), and a new one usually goes near the tail.
 *
 * fd handlers are never freed while a dispatch pass may still hold a
 * pointer to them: removal marks them deleted and the outermost loop_poll
 * frees them.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "compiler.h"
#include "loop.h"

#define LOOP_MAX_EVENTS 64

enum {
	BH_SCHEDULED = 1u << 0,
	BH_ONESHOT   = 1u << 1,
};

struct loop_handler {
	int fd;
	loop_fd_fn *io_read;
	loop_fd_fn *io_write;
	void *opaque;
	bool deleted;
	LIST_ENTRY(loop_handler) link;
};

struct loop {
	int epfd;
	int efd;                         /* the notifier */

	pthread_mutex_t bh_lock;         /* protects bh_list, bh_seq, bh flags */
	TAILQ_HEAD(, loop_bh) bh_list;
	uint64_t bh_seq;
	atomic_bool bh_pending;          /* bh_list is not empty */

	atomic_int notify_me;            /* the poller may block */
	atomic_bool notified;            /* the eventfd may be readable */
	atomic_bool kicked;              /* loop_wait_kick since last poll */
	atomic_int waiters;              /* in LOOP_WAIT_WHILE */

	/* home thread only: */
	LIST_HEAD(, loop_handler) handlers;
	unsigned nr_handlers;            /* not counting deleted ones */
	TAILQ_HEAD(loop_timer_list_, loop_timer) timers;
	unsigned poll_depth;
	bool handlers_deleted;
};

static __thread struct loop *tls_home_ctx;
static __thread struct loop *tls_running_ctx;

struct loop *loop_get_current(void)
{
	return tls_running_ctx ? tls_running_ctx : tls_home_ctx;
}

void loop_set_current(struct loop *ctx)
{
	tls_home_ctx = ctx;
}

uint64_t loop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int loop_new(struct loop **out)
{
	struct loop *ctx;
	struct epoll_event ev = { .events = EPOLLIN };
	int ret;

	ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return -ENOMEM;
	ctx->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (ctx->epfd < 0) {
		ret = -errno;
		goto out_free;
	}
	ctx->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctx->efd < 0) {
		ret = -errno;
		goto out_close_epfd;
	}
	/* data.ptr NULL marks the notifier among the handlers. */
	ev.data.ptr = NULL;
	if (epoll_ctl(ctx->epfd, EPOLL_CTL_ADD, ctx->efd, &ev) < 0) {
		ret = -errno;
		goto out_close_efd;
	}
	pthread_mutex_init(&ctx->bh_lock, NULL);
	TAILQ_INIT(&ctx->bh_list);
	LIST_INIT(&ctx->handlers);
	TAILQ_INIT(&ctx->timers);
	*out = ctx;
	return 0;

out_close_efd:
	close(ctx->efd);
out_close_epfd:
	close(ctx->epfd);
out_free:
	free(ctx);
	return ret;
}

static void free_deleted_handlers(struct loop *ctx)
{
	struct loop_handler *h, *next;

	for (h = LIST_FIRST(&ctx->handlers); h; h = next) {
		next = LIST_NEXT(h, link);
		if (h->deleted) {
			LIST_REMOVE(h, link);
			free(h);
		}
	}
	ctx->handlers_deleted = false;
}

void loop_free(struct loop *ctx)
{
	struct loop_handler *h;
	struct loop_bh *bh;

	if (!ctx)
		return;
	while ((h = LIST_FIRST(&ctx->handlers))) {
		LIST_REMOVE(h, link);
		free(h);
	}
	/* A thread that scheduled the last BH may still be inside
	 * bh_enqueue, holding the lock: taking it waits for that thread to
	 * leave.  Dropped BHs: free the one-shot ones, which nobody else
	 * owns. */
	pthread_mutex_lock(&ctx->bh_lock);
	while ((bh = TAILQ_FIRST(&ctx->bh_list))) {
		TAILQ_REMOVE(&ctx->bh_list, bh, link);
		bh->flags &= ~BH_SCHEDULED;
		if (bh->flags & BH_ONESHOT)
			free(bh);
	}
	pthread_mutex_unlock(&ctx->bh_lock);
	pthread_mutex_destroy(&ctx->bh_lock);
	close(ctx->efd);
	close(ctx->epfd);
	if (tls_home_ctx == ctx)
		tls_home_ctx = NULL;
	free(ctx);
}

void loop_notify(struct loop *ctx)
{
	uint64_t one = 1;

	/* Pairs with the seq_cst store of notify_me in loop_poll. */
	if (atomic_load(&ctx->notify_me)) {
		atomic_store(&ctx->notified, true);
		if (write(ctx->efd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
			/* An eventfd write fails only on counter overflow,
			 * which still leaves it readable: nothing is lost. */
		}
	}
}

/*
 * One read resets an eventfd's whole counter.  A write that lands after
 * the read leaves the fd readable, and the level-triggered epoll reports it
 * on the next pass: nothing is lost, at worst one pass is spurious.
 */
static void notifier_clear(struct loop *ctx)
{
	uint64_t v;

	atomic_store(&ctx->notified, false);
	if (read(ctx->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: the write has not happened yet; see above. */
	}
}

/* fd handlers */

static struct loop_handler *find_handler(struct loop *ctx, int fd)
{
	struct loop_handler *h;

	LIST_FOREACH(h, &ctx->handlers, link) {
		if (h->fd == fd && !h->deleted)
			return h;
	}
	return NULL;
}

int loop_set_fd_handler(struct loop *ctx, int fd, loop_fd_fn *io_read,
			loop_fd_fn *io_write, void *opaque)
{
	struct loop_handler *h = find_handler(ctx, fd);
	struct epoll_event ev = { 0 };
	bool is_new = false;

	if (fd < 0)
		return -EBADF;
	if (!io_read && !io_write) {
		if (!h)
			return -ENOENT;
		epoll_ctl(ctx->epfd, EPOLL_CTL_DEL, fd, NULL);
		h->deleted = true;
		ctx->nr_handlers--;
		h->io_read = NULL;
		h->io_write = NULL;
		if (ctx->poll_depth)
			ctx->handlers_deleted = true;
		else
			free_deleted_handlers(ctx);
		return 0;
	}
	if (!h) {
		h = calloc(1, sizeof(*h));
		if (!h)
			return -ENOMEM;
		h->fd = fd;
		is_new = true;
	}
	ev.events = (io_read ? EPOLLIN : 0) | (io_write ? EPOLLOUT : 0);
	ev.data.ptr = h;
	if (epoll_ctl(ctx->epfd, is_new ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
		      fd, &ev) < 0) {
		int ret = -errno;

		if (is_new)
			free(h);
		return ret;
	}
	h->io_read = io_read;
	h->io_write = io_write;
	h->opaque = opaque;
	if (is_new) {
		LIST_INSERT_HEAD(&ctx->handlers, h, link);
		ctx->nr_handlers++;
	}
	return 0;
}

/* bottom halves */

void loop_bh_init(struct loop_bh *bh, struct loop *ctx, loop_bh_fn *cb,
		  void *opaque)
{
	memset(bh, 0, sizeof(*bh));
	bh->ctx = ctx;
	bh->cb = cb;
	bh->opaque = opaque;
}

struct loop_bh *loop_bh_new(struct loop *ctx, loop_bh_fn *cb, void *opaque)
{
	struct loop_bh *bh = malloc(sizeof(*bh));

	if (bh)
		loop_bh_init(bh, ctx, cb, opaque);
	return bh;
}

static void bh_enqueue(struct loop_bh *bh, unsigned extra_flags)
{
	struct loop *ctx = bh->ctx;

	pthread_mutex_lock(&ctx->bh_lock);
	if (!(bh->flags & BH_SCHEDULED)) {
		bh->flags |= BH_SCHEDULED | extra_flags;
		bh->seq = ctx->bh_seq++;
		TAILQ_INSERT_TAIL(&ctx->bh_list, bh, link);
		atomic_store(&ctx->bh_pending, true);
		/* Notify under the lock: once it is released the BH may
		 * have run and its owner may have freed the context. */
		loop_notify(ctx);
	}
	pthread_mutex_unlock(&ctx->bh_lock);
}

void loop_bh_schedule(struct loop_bh *bh)
{
	bh_enqueue(bh, 0);
}

int loop_bh_schedule_oneshot(struct loop *ctx, loop_bh_fn *cb, void *opaque)
{
	struct loop_bh *bh = loop_bh_new(ctx, cb, opaque);

	if (!bh)
		return -ENOMEM;
	bh_enqueue(bh, BH_ONESHOT);
	return 0;
}

static void bh_dequeue_locked(struct loop *ctx, struct loop_bh *bh)
{
	TAILQ_REMOVE(&ctx->bh_list, bh, link);
	bh->flags &= ~BH_SCHEDULED;
	if (TAILQ_EMPTY(&ctx->bh_list))
		atomic_store(&ctx->bh_pending, false);
}

void loop_bh_cancel(struct loop_bh *bh)
{
	struct loop *ctx = bh->ctx;

	pthread_mutex_lock(&ctx->bh_lock);
	if (bh->flags & BH_SCHEDULED)
		bh_dequeue_locked(ctx, bh);
	pthread_mutex_unlock(&ctx->bh_lock);
}

void loop_bh_delete(struct loop_bh *bh)
{
	if (!bh)
		return;
	loop_bh_cancel(bh);
	free(bh);
}

/* Run the BHs scheduled before this pass began.  Home thread. */
static bool run_bhs(struct loop *ctx)
{
	struct loop_bh *bh;
	uint64_t limit;
	bool progress = false;

	if (!atomic_load(&ctx->bh_pending))
		return false;
	pthread_mutex_lock(&ctx->bh_lock);
	limit = ctx->bh_seq;
	for (;;) {
		loop_bh_fn *cb;
		void *opaque;
		bool oneshot;

		bh = TAILQ_FIRST(&ctx->bh_list);
		if (!bh || bh->seq >= limit)
			break;
		bh_dequeue_locked(ctx, bh);
		cb = bh->cb;
		opaque = bh->opaque;
		oneshot = bh->flags & BH_ONESHOT;
		bh->flags &= ~BH_ONESHOT;
		pthread_mutex_unlock(&ctx->bh_lock);

		/* From here the BH may be rescheduled or freed by cb. */
		if (oneshot)
			free(bh);
		cb(opaque);
		progress = true;

		pthread_mutex_lock(&ctx->bh_lock);
	}
	pthread_mutex_unlock(&ctx->bh_lock);
	return progress;
}

/* timers */

void loop_timer_init(struct loop_timer *t, struct loop *ctx,
		     loop_timer_fn *cb, void *opaque)
{
	memset(t, 0, sizeof(*t));
	t->ctx = ctx;
	t->cb = cb;
	t->opaque = opaque;
}

void loop_timer_del(struct loop_timer *t)
{
	if (t->pending) {
		TAILQ_REMOVE(&t->ctx->timers, t, link);
		t->pending = false;
	}
}

void loop_timer_mod(struct loop_timer *t, uint64_t deadline_ns)
{
	struct loop *ctx = t->ctx;
	struct loop_timer *pos;

	loop_timer_del(t);
	t->deadline_ns = deadline_ns;
	t->pending = true;
	/* Walk back from the tail: equal deadlines keep arming order. */
	TAILQ_FOREACH_REVERSE(pos, &ctx->timers, loop_timer_list_, link) {
		if (pos->deadline_ns <= deadline_ns) {
			TAILQ_INSERT_AFTER(&ctx->timers, pos, t, link);
			return;
		}
	}
	TAILQ_INSERT_HEAD(&ctx->timers, t, link);
}

static bool run_timers(struct loop *ctx)
{
	struct loop_timer *t;
	uint64_t now = loop_now_ns();
	bool progress = false;

	/* A timer armed by a callback for "now" waits for the next pass. */
	while ((t = TAILQ_FIRST(&ctx->timers)) && t->deadline_ns <= now) {
		TAILQ_REMOVE(&ctx->timers, t, link);
		t->pending = false;
		t->cb(t->opaque);
		progress = true;
	}
	return progress;
}

/* Milliseconds to the first deadline for epoll_wait, -1 for none. */
static int timers_timeout_ms(struct loop *ctx)
{
	struct loop_timer *t = TAILQ_FIRST(&ctx->timers);
	uint64_t now, left;

	if (!t)
		return -1;
	now = loop_now_ns();
	if (t->deadline_ns <= now)
		return 0;
	left = t->deadline_ns - now;
	/* Round up: waking early would only cost another pass, but never
	 * firing early is the contract, and run_timers checks the clock. */
	left = DIV_ROUND_UP(left, 1000000ull);
	return left > 1000000 ? 1000000 : (int)left;
}

/* the poll */

static bool dispatch(struct loop *ctx, struct epoll_event *events, int n)
{
	bool progress = false;

	for (int i = 0; i < n; i++) {
		struct loop_handler *h = events[i].data.ptr;
		uint32_t ev = events[i].events;

		if (!h) {
			notifier_clear(ctx);
			continue;
		}
		/* Errors and hang-ups go to whichever handler exists, so the
		 * owner sees the condition through its own read or write. */
		if (!h->deleted && h->io_read &&
		    (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
			h->io_read(h->opaque);
			progress = true;
		}
		if (!h->deleted && h->io_write &&
		    (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
			h->io_write(h->opaque);
			progress = true;
		}
	}
	return progress;
}

bool loop_poll(struct loop *ctx, bool blocking)
{
	struct epoll_event events[LOOP_MAX_EVENTS];
	struct loop *prev_running = tls_running_ctx;
	bool progress = false;
	int timeout = 0;
	int n;

	tls_running_ctx = ctx;
	ctx->poll_depth++;

	if (blocking) {
		/* seq_cst store, then the loads below: pairs with
		 * loop_notify's load of notify_me after its enqueue. */
		atomic_store(&ctx->notify_me, 1);
		if (atomic_load(&ctx->bh_pending) ||
		    atomic_exchange(&ctx->kicked, false))
			timeout = 0;
		else
			timeout = timers_timeout_ms(ctx);
	}

	if (timeout == 0 && ctx->nr_handlers == 0) {
		/* Only the notifier could be ready: skip the system call,
		 * and read the eventfd only if someone wrote it. */
		n = 0;
		if (atomic_load(&ctx->notified))
			notifier_clear(ctx);
	} else {
		n = epoll_wait(ctx->epfd, events, LOOP_MAX_EVENTS, timeout);
	}
	if (blocking)
		atomic_store(&ctx->notify_me, 0);
	if (n > 0)
		progress |= dispatch(ctx, events, n);

	progress |= run_bhs(ctx);
	progress |= run_timers(ctx);

	if (--ctx->poll_depth == 0 && ctx->handlers_deleted)
		free_deleted_handlers(ctx);
	tls_running_ctx = prev_running;
	return progress;
}

struct loop_call {
	void (*fn)(void *);
	void *arg;
	struct loop_bh bh;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;                       /* protected by lock */
};

static void loop_call_bh(void *opaque)
{
	struct loop_call *c = opaque;

	c->fn(c->arg);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

void loop_call_sync(struct loop *ctx, void (*fn)(void *), void *arg)
{
	struct loop_call c = { .fn = fn, .arg = arg };

	if (loop_get_current() == ctx) {
		fn(arg);
		return;
	}
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	loop_bh_init(&c.bh, ctx, loop_call_bh, &c);
	loop_bh_schedule(&c.bh);
	pthread_mutex_lock(&c.lock);
	while (!c.done)
		pthread_cond_wait(&c.cond, &c.lock);
	pthread_mutex_unlock(&c.lock);
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
}

atomic_int *loop_waiters_(struct loop *ctx)
{
	return &ctx->waiters;
}

void loop_wait_kick(struct loop *ctx)
{
	/* The caller's state change happens before this seq_cst load; pairs
	 * with the waiter's increment before its first test. */
	if (atomic_load(&ctx->waiters) > 0) {
		atomic_store(&ctx->kicked, true);
		loop_notify(ctx);
	}
}

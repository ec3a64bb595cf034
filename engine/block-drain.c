/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Holding an image's users off, and handing them on: drain, the drain and
 * write notifier lists, the size lock, redirect and retire (a mirror's
 * pivot), and plugging Linux AIO submissions.  The request path that obeys
 * all of this is in block.c.
 *
 * Design notes.
 *
 * Drain.  drain_count > 0 closes the request path's gate (block.c, stage
 * 1) to all but BLK_REQ_INTERNAL requests.  Beginning a drain waits for
 * in_flight == 0 (LOOP_WAIT_WHILE outside coroutines, img->drain_waiters
 * inside, which the request path wakes) and then flushes with an internal
 * request.  Drains nest; drain notifiers run at the 0->1 and 1->0
 * transitions, and at 1->0 the gate's waiters are woken in order.  A
 * thread other than the image's context hands the work to a coroutine
 * there (a bottom half) and waits on a condition variable.
 *
 * Redirect and retire.  A redirected image sends every request that
 * reaches its gate, and every one waiting there, on to its successor.  A
 * retired image (redirected first) has let go of its file and its Linux AIO
 * context; its driver answers flushes and fails the rest.
 *
 * All image state belongs to the image's context thread; the only lock is
 * the one a cross-thread drain call waits on.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include "block-internal.h"

/* ---- drain --------------------------------------------------------- */

static void blk_drain_inc(struct blk_image *img)
{
	struct blk_drain_notifier *n;

	if (img->drain_count++ > 0)
		return;
	LIST_FOREACH(n, &img->drain_notifiers, link)
		if (n->begin)
			n->begin(n->opaque);
}

static void blk_drain_dec(struct blk_image *img)
{
	struct blk_drain_notifier *n;

	assert(img->drain_count > 0);
	if (--img->drain_count > 0)
		return;
	LIST_FOREACH(n, &img->drain_notifiers, link)
		if (n->end)
			n->end(n->opaque);
	co_queue_wake_all(&img->drain_gate);
}

struct blk_sync_flush {
	struct blk_image *img;
	bool done;
};

static void coroutine_fn blk_sync_flush_entry(void *opaque)
{
	struct blk_sync_flush *s = opaque;

	/* Errors are seen again by the next flush a caller sends. */
	(void)blk_co_flush_internal(s->img);
	s->done = true;
}

/*
 * A drain asked for by another thread (an ioctl handler, a FUSE worker):
 * a coroutine in the image's context does the work while the caller's
 * thread waits on a condition variable.
 */
struct blk_drain_call {
	struct blk_image *img;
	bool begin;
	struct loop_bh bh;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;                      /* protected by lock */
};

/* The caller's frame, c, may be gone once this returns. */
static void blk_drain_call_done(struct blk_drain_call *c)
{
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void coroutine_fn blk_drain_call_co(void *opaque)
{
	struct blk_drain_call *c = opaque;

	if (c->begin)
		blk_co_drained_begin(c->img);
	else
		blk_co_drained_end(c->img);
	blk_drain_call_done(c);
}

static void blk_drain_call_bh(void *opaque)
{
	struct blk_drain_call *c = opaque;
	struct coroutine *co;

	/* Without a coroutine, run the plain version here: it only polls
	 * this context, which is the thread we are in. */
	co = co_create(blk_drain_call_co, c);
	if (co) {
		co_enter(co);
		return;
	}
	if (c->begin)
		blk_drained_begin(c->img);
	else
		blk_drained_end(c->img);
	blk_drain_call_done(c);
}

static void blk_drain_call(struct blk_image *img, bool begin)
{
	struct blk_drain_call c = { .img = img, .begin = begin };

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.cond, NULL);
	loop_bh_init(&c.bh, img->ctx, blk_drain_call_bh, &c);
	loop_bh_schedule(&c.bh);
	pthread_mutex_lock(&c.lock);
	while (!c.done)
		pthread_cond_wait(&c.cond, &c.lock);
	pthread_mutex_unlock(&c.lock);
	pthread_cond_destroy(&c.cond);
	pthread_mutex_destroy(&c.lock);
}

void blk_drained_begin(struct blk_image *img)
{
	struct blk_sync_flush s = { .img = img };
	struct coroutine *co;

	assert(!in_coroutine());
	if (loop_get_current() != img->ctx) {
		blk_drain_call(img, true);
		return;
	}
	blk_drain_inc(img);
	LOOP_WAIT_WHILE(img->ctx, img->in_flight > 0);
	co = co_create(blk_sync_flush_entry, &s);
	if (!co)
		return;
	co_enter(co);
	LOOP_WAIT_WHILE(img->ctx, !s.done);
}

void blk_drained_end(struct blk_image *img)
{
	assert(!in_coroutine());
	if (loop_get_current() != img->ctx) {
		blk_drain_call(img, false);
		return;
	}
	blk_drain_dec(img);
}

void coroutine_fn blk_co_drained_begin(struct blk_image *img)
{
	assert(in_coroutine());
	blk_drain_inc(img);
	while (img->in_flight > 0)
		co_queue_wait(&img->drain_waiters);
	(void)blk_co_flush_internal(img);
}

void coroutine_fn blk_co_drained_end(struct blk_image *img)
{
	assert(in_coroutine());
	blk_drain_dec(img);
}

/* ---- notifiers, size lock, plugging ------------------------------- */

void blk_add_drain_notifier(struct blk_image *img,
			    struct blk_drain_notifier *n)
{
	LIST_INSERT_HEAD(&img->drain_notifiers, n, link);
}

void blk_add_write_notifier(struct blk_image *img,
			    struct blk_write_notifier *n)
{
	LIST_INSERT_HEAD(&img->write_notifiers, n, link);
}

void blk_remove_drain_notifier(struct blk_drain_notifier *n)
{
	LIST_REMOVE(n, link);
}

void blk_remove_write_notifier(struct blk_write_notifier *n)
{
	LIST_REMOVE(n, link);
}

int blk_size_lock(struct blk_image *img)
{
	if (img->size_locked)
		return -EBUSY;
	img->size_locked = true;
	return 0;
}

void blk_size_unlock(struct blk_image *img)
{
	img->size_locked = false;
}

void blk_io_plug(struct blk_image *img)
{
	if (img->laio)
		laio_plug(img->laio);
}

void blk_io_unplug(struct blk_image *img)
{
	if (img->laio)
		laio_unplug(img->laio);
}

/* ---- redirect and retire ------------------------------------------ */

/* What a retired image would answer: a safety net, since every request,
 * its own drains' flushes included, follows the redirect. */
static int coroutine_fn blk_retired_co_io(void *opaque, enum blk_op op,
					  uint64_t offset, uint64_t bytes,
					  const struct iovec *iov, int iovcnt)
{
	(void)opaque;
	(void)offset;
	(void)bytes;
	(void)iov;
	(void)iovcnt;
	return op == BLK_OP_FLUSH ? 0 : -EIO;
}

static const struct blk_driver blk_drv_retired = {
	.name = "retired",
	.co_io = blk_retired_co_io,
};

void blk_retire(struct blk_image *img)
{
	assert(img->redirect);
	blk_drained_begin(img);
	blk_laio_put(img->laio);
	img->laio = NULL;
	if (img->fd >= 0)
		close(img->fd);
	img->fd = -1;
	img->drv = &blk_drv_retired;
	img->drv_opaque = img;
	img->req_align = img->mem_align = 1;
	blk_drained_end(img);
}

void blk_set_redirect(struct blk_image *img, struct blk_image *next)
{
	assert(img->ctx == next->ctx && img != next);
	img->redirect = next;
	/* Waiters at the gate move on to next's gate at once. */
	co_queue_wake_all(&img->drain_gate);
}

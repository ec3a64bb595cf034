/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Images and the request path.
 *
 * An image is a backing file (or a caller's object, blk_open_driver) with
 * a driver that moves the bytes.  Every request of every caller, FUSE,
 * vring, ioctl or job, passes through blk_co_request, so barriers, drain,
 * alignment and statistics are enforced in one place.  The two built-in
 * drivers (thread pool, Linux AIO) and the O_DIRECT bounce buffers live in
 * block-drv.c.  Drain, adding and removing notifiers, the size lock,
 * redirect and retire, and plugging live in block-drain.c.
 *
 * Design notes.
 *
 * Request path, in this order:
 *  1. Drain gate: while the image is drained, a request that is not
 *     BLK_REQ_INTERNAL waits on img->drain_gate, a FIFO CoQueue, so
 *     postponed requests resume in arrival order when the drain ends.
 *     A redirected image (a mirror pivot) hands the request on to its
 *     successor here.  From here it counts in in_flight; a job's size
 *     lock is checked.
 *  2. Write notifiers' before_write (writes, discards, write-zeroes),
 *     untracked: a mirror may wait there for its copy of the same area,
 *     and that copy may wait for tracked requests (serialising).
 *  3. Tracking: the request joins img->tracked (arrival order) and waits
 *     for serialising conflicts (below).  after_write runs after the
 *     driver, still tracked.
 *  4. Barrier queue: the request is submitted to img->queue and yields
 *     until the queue's start callback wakes it.  FUA writes, flushes and
 *     truncates are barriers: a FUA write runs as flush, write, flush.
 *  5. Driver, through an aligned bounce buffer where O_DIRECT needs one.
 *  6. blk_queue_complete, untrack (waking waiters), statistics; when
 *     in_flight drops to zero, coroutines waiting for a drain are woken.
 *
 * Serialising.  An unaligned write to an O_DIRECT image is a
 * read-modify-write of whole blocks, which would lose a concurrent write
 * to the same blocks.  Its tracked entry is marked serialising over its
 * aligned bounds (to infinity if it may extend the file, because it may
 * truncate the file back afterwards) and waits for every earlier entry it
 * overlaps; every later entry that overlaps a serialising one waits for
 * it.  Waits go only to earlier entries, so there is no cycle; a waiter is
 * not yet in the barrier queue, so the queue never waits on it either.
 * Each entry has a CoQueue that untracking wakes; a woken waiter rescans
 * from the head of the list (which has only shrunk before it).
 *
 * Drain.  drain_count > 0 closes the gate (stage 1) to all but
 * BLK_REQ_INTERNAL requests, and in_flight dropping to zero wakes
 * img->drain_waiters (stage 6).  Beginning and ending a drain, with its
 * internal flush (blk_co_flush_internal) and its notifiers, is
 * block-drain.c's part.
 *
 * All image state belongs to the image's context thread; nothing here
 * takes a lock.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "block-internal.h"

#define BLK_MAX_BYTES    ((uint64_t)INT_MAX)

struct blk_tracked {
	TAILQ_ENTRY(blk_tracked) link;
	uint64_t off, end;          /* the request's bytes */
	uint64_t s_off, s_end;      /* serialising bounds (⊇ off..end) */
	bool serialising;
	struct co_queue waiters;    /* later requests waiting for this one */
};

struct blk_req {
	struct blk_image *img;
	enum blk_op op;
	uint64_t offset, bytes;
	const struct iovec *iov;
	int iovcnt;
	unsigned flags;
	uint64_t *pnum;             /* block status */
	bool *is_data;
	struct blk_tracked t;
	struct blk_queue_req qr;
	struct coroutine *co;
	bool started, cancelled, waiting;
};

static ssize_t coroutine_fn blk_co_request(struct blk_req *r);

/* ---- helpers ------------------------------------------------------- */

static bool blk_overlaps(uint64_t a, uint64_t a_end, uint64_t b,
			 uint64_t b_end)
{
	return a < b_end && b < a_end;
}

static uint64_t blk_iov_size(const struct iovec *iov, int iovcnt)
{
	uint64_t n = 0;

	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	return n;
}

static bool blk_is_write_op(enum blk_op op)
{
	return op == BLK_OP_WRITE || op == BLK_OP_DISCARD ||
	       op == BLK_OP_WRITE_ZEROES || op == BLK_OP_TRUNCATE ||
	       op == BLK_OP_ALLOCATE;
}

/* ---- tracking ------------------------------------------------------ */

/* The range others must not overlap while e is in flight. */
static void blk_tracked_range(const struct blk_tracked *e, uint64_t *off,
			      uint64_t *end)
{
	*off = e->serialising ? e->s_off : e->off;
	*end = e->serialising ? e->s_end : e->end;
}

static bool blk_must_wait(const struct blk_tracked *t,
			  const struct blk_tracked *earlier)
{
	uint64_t o, e;

	blk_tracked_range(earlier, &o, &e);
	if (t->serialising)
		return blk_overlaps(t->s_off, t->s_end, o, e);
	return earlier->serialising && blk_overlaps(t->off, t->end, o, e);
}

static void coroutine_fn blk_track(struct blk_image *img,
				   struct blk_tracked *t)
{
	struct blk_tracked *e;

	co_queue_init(&t->waiters);
	TAILQ_INSERT_TAIL(&img->tracked, t, link);
retry:
	for (e = TAILQ_FIRST(&img->tracked); e != t; e = TAILQ_NEXT(e, link)) {
		if (blk_must_wait(t, e)) {
			co_queue_wait(&e->waiters);
			goto retry;
		}
	}
}

static void blk_untrack(struct blk_image *img, struct blk_tracked *t)
{
	TAILQ_REMOVE(&img->tracked, t, link);
	co_queue_wake_all(&t->waiters);
}

void coroutine_fn blk_co_wait_overlapping(struct blk_image *img,
					  uint64_t offset, uint64_t bytes)
{
	struct blk_tracked *e;
	uint64_t o, end;

	assert(in_coroutine());
retry:
	TAILQ_FOREACH(e, &img->tracked, link) {
		blk_tracked_range(e, &o, &end);
		if (blk_overlaps(offset, offset + bytes, o, end)) {
			co_queue_wait(&e->waiters);
			goto retry;
		}
	}
}

/* ---- the request path ---------------------------------------------- */

static void blk_queue_start_cb(void *opaque, struct blk_queue_req *qr)
{
	struct blk_req *r = container_of(qr, struct blk_req, qr);

	r->started = true;
	if (r->waiting)
		co_wake(r->co);
}

static void blk_queue_cancelled_cb(void *opaque, struct blk_queue_req *qr)
{
	struct blk_req *r = container_of(qr, struct blk_req, qr);

	r->cancelled = true;
	if (r->waiting)
		co_wake(r->co);
}

static const struct blk_queue_ops blk_queue_ops = {
	.start = blk_queue_start_cb,
	.cancelled = blk_queue_cancelled_cb,
};

/* Stage 5: the driver. */
static ssize_t coroutine_fn blk_co_dispatch(struct blk_req *r)
{
	struct blk_image *img = r->img;
	bool fua = r->op == BLK_OP_WRITE && (r->flags & BLK_REQ_FUA);
	ssize_t ret;
	int ret2;

	switch (r->op) {
	case BLK_OP_READ:
		if (r->offset >= img->size || r->bytes == 0)
			return 0;
		return blk_co_drv_rw(img, r->op, r->offset, r->bytes, r->iov,
				     r->iovcnt);
	case BLK_OP_WRITE:
		if (fua) {
			ret = blk_drv_io(img, BLK_OP_FLUSH, 0, 0, NULL, 0);
			if (ret < 0)
				return ret;
		}
		ret = r->bytes ? blk_co_drv_rw(img, r->op, r->offset, r->bytes,
					    r->iov, r->iovcnt) : 0;
		if (ret > 0)
			img->size = VDISK_MAX(img->size,
					      r->offset + (uint64_t)ret);
		if (ret >= 0 && fua) {
			ret2 = blk_drv_io(img, BLK_OP_FLUSH, 0, 0, NULL, 0);
			if (ret2 < 0)
				ret = ret2;
		}
		return ret;
	case BLK_OP_FLUSH:
		return blk_drv_io(img, BLK_OP_FLUSH, 0, 0, NULL, 0);
	case BLK_OP_DISCARD:
		return blk_drv_io(img, r->op, r->offset, r->bytes, NULL, 0);
	case BLK_OP_WRITE_ZEROES:
	case BLK_OP_ALLOCATE:
		ret = blk_drv_io(img, r->op, r->offset, r->bytes, NULL, 0);
		if (ret == 0)
			img->size = VDISK_MAX(img->size, r->offset + r->bytes);
		return ret;
	case BLK_OP_BLOCK_STATUS:
		return blk_co_drv_block_status(img, r->offset, r->bytes,
					       r->pnum, r->is_data);
	case BLK_OP_TRUNCATE:
		return blk_co_drv_truncate(img, r->offset);
	default:
		return -EINVAL;
	}
}

static unsigned blk_lat_bucket(uint64_t ns)
{
	unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;

	return VDISK_MIN(b, BLK_LAT_BUCKETS - 1u);
}

static void blk_account(struct blk_req *r, ssize_t ret, uint64_t t0)
{
	struct blk_stats *st = &r->img->stats;

	st->ops[r->op]++;
	st->bytes[r->op] += r->bytes;
	st->latency[r->op][blk_lat_bucket(loop_now_ns() - t0)]++;
	if (ret < 0)
		st->errors++;
	if (r->qr.barrier)
		st->barriers++;
}

static int coroutine_fn blk_co_notify_write(struct blk_req *r)
{
	struct blk_write_notifier *n;
	int ret;

	if (r->op != BLK_OP_WRITE && r->op != BLK_OP_DISCARD &&
	    r->op != BLK_OP_WRITE_ZEROES)
		return 0;
	LIST_FOREACH(n, &r->img->write_notifiers, link) {
		if (!n->before_write)
			continue;
		ret = n->before_write(n->opaque, r->offset, r->bytes);
		if (ret < 0)
			goto unwind;
	}
	return 0;

unwind:
	/* The hooks that said yes hear how it ended, as always. */
	for (struct blk_write_notifier *p = LIST_FIRST(&r->img->write_notifiers);
	     p != n; p = LIST_NEXT(p, link)) {
		if (p->after_write)
			p->after_write(p->opaque, r->op, r->offset, r->bytes,
				       r->iov, r->iovcnt, r->flags, ret);
	}
	return ret;
}

static void coroutine_fn blk_co_notify_written(struct blk_req *r,
					       ssize_t ret)
{
	struct blk_write_notifier *n, *next;

	if (!blk_is_write_op(r->op) || r->op == BLK_OP_ALLOCATE ||
	    r->op == BLK_OP_TRUNCATE)
		return;
	/* A hook may remove its own notifier (a job ending). */
	for (n = LIST_FIRST(&r->img->write_notifiers); n; n = next) {
		next = LIST_NEXT(n, link);
		if (n->after_write)
			n->after_write(n->opaque, r->op, r->offset, r->bytes,
				       r->iov, r->iovcnt, r->flags, ret);
	}
}

/* While a job holds the size: -EBUSY for truncate, -EFBIG past the end. */
static int blk_check_size_lock(struct blk_req *r)
{
	struct blk_image *img = r->img;

	if (!img->size_locked)
		return 0;
	switch (r->op) {
	case BLK_OP_TRUNCATE:
		return -EBUSY;
	case BLK_OP_WRITE:
	case BLK_OP_WRITE_ZEROES:
	case BLK_OP_ALLOCATE:
		return r->offset + r->bytes > img->size ? -EFBIG : 0;
	default:
		return 0;
	}
}

/* Set up tracking bounds; unaligned O_DIRECT writes serialise. */
static void blk_req_bounds(struct blk_req *r)
{
	struct blk_image *img = r->img;
	uint64_t al = img->req_align;
	bool unaligned;

	r->t.off = r->offset;
	r->t.end = r->offset + r->bytes;
	r->t.serialising = false;
	if (r->op == BLK_OP_TRUNCATE) {
		r->t.serialising = true;
		r->t.s_off = r->t.off = VDISK_MIN(img->size, r->offset);
		r->t.s_end = r->t.end = UINT64_MAX;
		return;
	}
	if (r->op != BLK_OP_WRITE || al == 1 || r->bytes == 0)
		return;
	unaligned = r->offset % al || r->bytes % al;
	if (!unaligned)
		return;
	r->t.serialising = true;
	r->t.s_off = ROUND_DOWN(r->offset, al);
	r->t.s_end = ROUND_UP(r->t.end, al);
	if (r->t.s_end > img->size)
		r->t.s_end = UINT64_MAX;
}

static ssize_t coroutine_fn blk_co_request(struct blk_req *r)
{
	struct blk_image *img = r->img;
	uint64_t t0;
	ssize_t ret;

	assert(in_coroutine());
	assert(loop_get_current() == img->ctx);

	/* FUA writes, flushes and truncates are barriers.  Decided once:
	 * the queue and the statistics both read r->qr.barrier. */
	blk_queue_req_init(&r->qr, r->op == BLK_OP_FLUSH ||
			   r->op == BLK_OP_TRUNCATE ||
			   (r->op == BLK_OP_WRITE && (r->flags & BLK_REQ_FUA)));

	/* 1. Drain gate, and the switch to another image (a pivot), which
	 * may happen while a request waits at the gate. */
	for (;;) {
		while (img->redirect)
			img = r->img = img->redirect;
		if (img->drain_count == 0 || (r->flags & BLK_REQ_INTERNAL))
			break;
		img->stats.postponed++;
		co_queue_wait(&img->drain_gate);
	}
	t0 = loop_now_ns();
	img->in_flight++;
	img->stats.max_in_flight = VDISK_MAX(img->stats.max_in_flight,
					     img->in_flight);

	ret = blk_check_size_lock(r);
	if (ret < 0) {
		blk_account(r, ret, t0);
		goto out_done;
	}

	/* 2. Write notifiers, before tracking (see block.h). */
	ret = blk_co_notify_write(r);
	if (ret < 0) {
		blk_account(r, ret, t0);
		goto out_done;
	}

	/* 3. Tracking. */
	blk_req_bounds(r);
	if (r->t.serialising)
		img->stats.serialised += r->op == BLK_OP_WRITE;
	blk_track(img, &r->t);

	/* 4. Barrier queue. */
	r->co = co_self();
	r->started = r->cancelled = r->waiting = false;
	blk_queue_submit(&img->queue, &r->qr);
	while (!r->started && !r->cancelled) {
		r->waiting = true;
		co_yield();
		r->waiting = false;
	}
	if (r->cancelled) {
		ret = -ECANCELED;
		blk_co_notify_written(r, ret);
		goto out_untrack;
	}

	/* 5. Driver. */
	ret = blk_co_dispatch(r);
	blk_queue_complete(&img->queue, &r->qr);
	blk_co_notify_written(r, ret);

out_untrack:
	/* 6. Completion. */
	blk_untrack(img, &r->t);
	blk_account(r, ret, t0);
out_done:
	if (--img->in_flight == 0)
		co_queue_wake_all(&img->drain_waiters);
	return ret;
}

/* Common checks; 1 means "go on", else the result to return. */
static ssize_t blk_check(struct blk_image *img, enum blk_op op,
			 uint64_t offset, uint64_t bytes)
{
	if (blk_is_write_op(op) && img->read_only)
		return -EROFS;
	if (offset > INT64_MAX || bytes > INT64_MAX - offset)
		return -EINVAL;
	if ((op == BLK_OP_READ || op == BLK_OP_WRITE) && bytes > BLK_MAX_BYTES)
		return -EINVAL;
	return 1;
}

static ssize_t coroutine_fn blk_co_rw_api(struct blk_image *img,
					  enum blk_op op, uint64_t offset,
					  const struct iovec *iov, int iovcnt,
					  unsigned flags)
{
	struct blk_req r = {
		.img = img, .op = op, .offset = offset, .iov = iov,
		.iovcnt = iovcnt, .flags = flags,
		.bytes = blk_iov_size(iov, iovcnt),
	};
	ssize_t ret = blk_check(img, op, offset, r.bytes);

	return ret == 1 ? blk_co_request(&r) : ret;
}

ssize_t coroutine_fn blk_co_preadv(struct blk_image *img, uint64_t offset,
				   const struct iovec *iov, int iovcnt,
				   unsigned flags)
{
	return blk_co_rw_api(img, BLK_OP_READ, offset, iov, iovcnt, flags);
}

ssize_t coroutine_fn blk_co_pwritev(struct blk_image *img, uint64_t offset,
				    const struct iovec *iov, int iovcnt,
				    unsigned flags)
{
	return blk_co_rw_api(img, BLK_OP_WRITE, offset, iov, iovcnt, flags);
}

static int coroutine_fn blk_co_simple(struct blk_image *img, enum blk_op op,
				      uint64_t offset, uint64_t bytes,
				      unsigned flags)
{
	struct blk_req r = {
		.img = img, .op = op, .offset = offset, .bytes = bytes,
		.flags = flags,
	};
	ssize_t ret = blk_check(img, op, offset, bytes);

	return (int)(ret == 1 ? blk_co_request(&r) : ret);
}

int coroutine_fn blk_co_flush(struct blk_image *img)
{
	return blk_co_simple(img, BLK_OP_FLUSH, 0, 0, 0);
}

int coroutine_fn blk_co_discard(struct blk_image *img, uint64_t offset,
				uint64_t bytes)
{
	if (!img->read_only && !img->discard)
		return -EOPNOTSUPP;
	return blk_co_simple(img, BLK_OP_DISCARD, offset, bytes, 0);
}

int coroutine_fn blk_co_write_zeroes(struct blk_image *img, uint64_t offset,
				     uint64_t bytes, unsigned flags)
{
	/* With UNMAP and discard on, a hole is the cheapest zeroes. */
	if ((flags & BLK_REQ_UNMAP) && img->discard &&
	    offset + bytes <= img->size && !img->read_only && img->fd >= 0) {
		int ret = blk_co_simple(img, BLK_OP_DISCARD, offset, bytes,
					flags);

		if (ret != -EOPNOTSUPP)
			return ret;
	}
	return blk_co_simple(img, BLK_OP_WRITE_ZEROES, offset, bytes, flags);
}

int coroutine_fn blk_co_block_status(struct blk_image *img, uint64_t offset,
				     uint64_t bytes, unsigned flags,
				     uint64_t *pnum, bool *is_data)
{
	struct blk_req r = {
		.img = img, .op = BLK_OP_BLOCK_STATUS, .offset = offset,
		.bytes = bytes, .pnum = pnum, .is_data = is_data,
		.flags = flags,
	};
	ssize_t ret = blk_check(img, r.op, offset, bytes);

	return (int)(ret == 1 ? blk_co_request(&r) : ret);
}

int coroutine_fn blk_co_truncate(struct blk_image *img, uint64_t size)
{
	return blk_co_simple(img, BLK_OP_TRUNCATE, size, 0, 0);
}

int coroutine_fn blk_co_allocate(struct blk_image *img, uint64_t offset,
				 uint64_t bytes)
{
	return blk_co_simple(img, BLK_OP_ALLOCATE, offset, bytes, 0);
}

/* A flush that passes a closed drain gate (block-internal.h). */
int coroutine_fn blk_co_flush_internal(struct blk_image *img)
{
	return blk_co_simple(img, BLK_OP_FLUSH, 0, 0, BLK_REQ_INTERNAL);
}

/* ---- callback API -------------------------------------------------- */

static void coroutine_fn blk_aio_co(void *opaque)
{
	struct blk_aio_req *r = opaque;
	struct blk_image *img = r->img;
	uint64_t pnum = 0;
	bool is_data;
	ssize_t ret;

	switch (r->op) {
	case BLK_OP_READ:
		ret = blk_co_preadv(img, r->offset, r->iov, r->iovcnt,
				    r->flags);
		break;
	case BLK_OP_WRITE:
		ret = blk_co_pwritev(img, r->offset, r->iov, r->iovcnt,
				     r->flags);
		break;
	case BLK_OP_FLUSH:
		ret = blk_co_flush(img);
		break;
	case BLK_OP_DISCARD:
		ret = blk_co_discard(img, r->offset, r->bytes);
		break;
	case BLK_OP_WRITE_ZEROES:
		ret = blk_co_write_zeroes(img, r->offset, r->bytes, r->flags);
		break;
	case BLK_OP_BLOCK_STATUS:
		ret = blk_co_block_status(img, r->offset, r->bytes, r->flags,
					  &pnum,
					  &is_data);
		if (ret == 0)
			ret = (ssize_t)pnum;
		break;
	case BLK_OP_TRUNCATE:
		ret = blk_co_truncate(img, r->offset);
		break;
	case BLK_OP_ALLOCATE:
		ret = blk_co_allocate(img, r->offset, r->bytes);
		break;
	default:
		ret = -EINVAL;
		break;
	}
	r->cb(r->opaque, ret);
}

static void blk_aio_bh(void *opaque)
{
	struct blk_aio_req *r = opaque;
	struct coroutine *co = co_create(blk_aio_co, r);

	if (!co) {
		r->cb(r->opaque, -ENOMEM);
		return;
	}
	co_enter(co);
}

void blk_aio_submit(struct blk_image *img, struct blk_aio_req *r)
{
	r->img = img;
	loop_bh_init(&r->bh, img->ctx, blk_aio_bh, r);
	loop_bh_schedule(&r->bh);
}

/* ---- open and close ------------------------------------------------ */

static int blk_image_new(const char *name, struct loop *ctx,
			 struct blk_image **out)
{
	struct blk_image *img = calloc(1, sizeof(*img));

	if (!img)
		return -ENOMEM;
	img->name = strdup(name ? name : "");
	if (!img->name) {
		free(img);
		return -ENOMEM;
	}
	img->ctx = ctx;
	img->fd = -1;
	img->req_align = img->mem_align = 1;
	blk_queue_init(&img->queue, &blk_queue_ops, img);
	TAILQ_INIT(&img->tracked);
	co_queue_init(&img->drain_gate);
	co_queue_init(&img->drain_waiters);
	LIST_INIT(&img->drain_notifiers);
	LIST_INIT(&img->write_notifiers);
	*out = img;
	return 0;
}

static void blk_image_free(struct blk_image *img)
{
	blk_laio_put(img->laio);
	if (img->fd >= 0)
		close(img->fd);
	free(img->name);
	free(img);
}

int blk_open_driver(const char *name, uint64_t size,
		    const struct blk_driver *drv, void *opaque,
		    struct loop *ctx, struct blk_image **out)
{
	struct blk_image *img;
	int ret = blk_image_new(name, ctx, &img);

	if (ret < 0)
		return ret;
	img->drv = drv;
	img->drv_opaque = opaque;
	img->size = size;
	img->discard = true;
	*out = img;
	return 0;
}

int blk_open(const struct blk_open_opts *o, struct loop *ctx,
	     struct tpool *pool, struct blk_image **out)
{
	struct blk_image *img;
	struct stat st;
	int flags = (o->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	int ret;

	if (o->cache == BLK_CACHE_NONE)
		flags |= O_DIRECT;
	ret = blk_image_new(o->path, ctx, &img);
	if (ret < 0)
		return ret;
	img->pool = pool;
	img->read_only = o->read_only;
	img->discard = o->discard;
	img->cache = o->cache;
	img->drv = &blk_drv_threads;
	img->drv_opaque = img;
	img->fd = open(o->path, flags);
	if (img->fd < 0) {
		ret = -errno;
		goto out_free;
	}
	if (fstat(img->fd, &st) < 0) {
		ret = -errno;
		goto out_free;
	}
	img->size = (uint64_t)st.st_size;
	if (o->cache == BLK_CACHE_NONE)
		blk_probe_align(img);
	if (o->aio == BLK_AIO_NATIVE) {
		ret = blk_laio_get(ctx, &img->laio);
		if (ret < 0)
			goto out_free;
		img->drv = &blk_drv_native;
	}
	*out = img;
	return 0;

out_free:
	blk_image_free(img);   /* closes the fd */
	return ret;
}

void blk_close(struct blk_image *img)
{
	if (!img)
		return;
	blk_drained_begin(img);
	assert(co_queue_empty(&img->drain_gate));
	blk_image_free(img);
}

uint64_t blk_get_size(struct blk_image *img)
{
	return img->size;
}

void blk_get_stats(struct blk_image *img, struct blk_stats *st)
{
	*st = img->stats;
	st->reads = st->ops[BLK_OP_READ];
	st->writes = st->ops[BLK_OP_WRITE];
	st->flushes = st->ops[BLK_OP_FLUSH];
	st->discards = st->ops[BLK_OP_DISCARD];
	st->write_zeroes = st->ops[BLK_OP_WRITE_ZEROES];
	st->read_bytes = st->bytes[BLK_OP_READ];
	st->write_bytes = st->bytes[BLK_OP_WRITE];
	st->in_flight = img->in_flight;
}

void blk_reset_stats(struct blk_image *img)
{
	memset(&img->stats, 0, sizeof(img->stats));
}

void blk_get_info(struct blk_image *img, struct blk_info *info)
{
	info->driver = img->drv->name;
	info->cache = img->cache;
	info->read_only = img->read_only;
	info->size = img->size;
	info->drain_depth = img->drain_count;
}

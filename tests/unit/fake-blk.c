/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The RAM-backed fake block driver of the unit tests, and a fake guest
 * that sends it requests (see fake-blk.h).  Coroutines here never call
 * cmocka: they record, and the test asserts.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fake-blk.h"

uint64_t fake_rng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void fake_wake_bh(void *opaque)
{
	co_wake(opaque);
}

/* Let the loop run other coroutines before this request goes on. */
static void coroutine_fn fake_yield(struct fake_blk *fk)
{
	unsigned n = fk->yields ? (unsigned)(fake_rng(&fk->rng) %
					     (fk->yields + 1)) : 0;

	for (unsigned i = 0; i < n; i++) {
		if (loop_bh_schedule_oneshot(fk->ctx, fake_wake_bh,
					     co_self()) < 0)
			return;
		co_yield();
	}
}

/* Zero [off, end) and free the blocks it covers whole. */
static void fake_unmap(struct fake_blk *fk, uint64_t off, uint64_t end)
{
	uint64_t b0 = DIV_ROUND_UP(off, FAKE_BLK_BLOCK);
	uint64_t b1 = end == fk->size ? DIV_ROUND_UP(end, FAKE_BLK_BLOCK) :
		      end / FAKE_BLK_BLOCK;

	memset(fk->data + off, 0, end - off);
	for (uint64_t b = b0; b < b1; b++)
		fk->alloc[b] = 0;
}

static void fake_map(struct fake_blk *fk, uint64_t off, uint64_t end)
{
	for (uint64_t b = off / FAKE_BLK_BLOCK;
	     b < DIV_ROUND_UP(end, FAKE_BLK_BLOCK); b++)
		fk->alloc[b] = 1;
}

static int fake_do(struct fake_blk *fk, enum blk_op op, uint64_t off,
		   uint64_t bytes, const struct iovec *iov, int iovcnt)
{
	uint64_t end, pos = off;

	if (op == BLK_OP_FLUSH) {
		fk->dirty_since_flush = 0;
		return 0;
	}
	if (op != BLK_OP_READ)
		fk->dirty_since_flush++;
	if (op == BLK_OP_ALLOCATE)
		return off + bytes > fk->size ? -ENOSPC : 0;
	if (off >= fk->size)
		return op == BLK_OP_READ ? 0 : -ENOSPC;
	end = VDISK_MIN(off + bytes, fk->size);
	switch (op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		for (int i = 0; i < iovcnt && pos < end; i++) {
			uint64_t l = VDISK_MIN(iov[i].iov_len, end - pos);

			if (op == BLK_OP_READ)
				memcpy(iov[i].iov_base, fk->data + pos, l);
			else
				memcpy(fk->data + pos, iov[i].iov_base, l);
			pos += l;
		}
		if (op == BLK_OP_WRITE) {
			if (end < off + bytes)
				return -ENOSPC;
			fake_map(fk, off, end);
		}
		return (int)(end - off);
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		if (end < off + bytes)
			return -ENOSPC;
		fake_unmap(fk, off, end);
		return 0;
	default:
		return -EINVAL;
	}
}

static int coroutine_fn fake_co_io(void *opaque, enum blk_op op,
				   uint64_t off, uint64_t bytes,
				   const struct iovec *iov, int iovcnt)
{
	struct fake_blk *fk = opaque;
	int ret;

	fk->ops[op]++;
	if (fk->hook)
		fk->hook(fk->hook_opaque, fk, op, off, bytes);
	if (fk->check_align && (op == BLK_OP_WRITE ||
				op == BLK_OP_WRITE_ZEROES ||
				op == BLK_OP_DISCARD) &&
	    (off % fk->check_align ||
	     (bytes % fk->check_align && off + bytes != fk->size)))
		fk->misaligned++;
	fk->in_flight[op]++;
	fk->max_in_flight[op] = VDISK_MAX(fk->max_in_flight[op],
					  fk->in_flight[op]);
	fake_yield(fk);
	if (fk->hold[op]) {
		fk->nheld++;
		co_queue_wait(&fk->held);
		fk->nheld--;
	}
	/* Faults are looked at once released, so that a test can hold
	 * several requests and then make them fail together. */
	if (fk->fail_count[op] > 0) {
		if (fk->fail_count[op] != FAKE_BLK_FOREVER)
			fk->fail_count[op]--;
		fk->failed++;
		ret = fk->fail_err[op];
	} else {
		ret = fake_do(fk, op, off, bytes, iov, iovcnt);
	}
	fake_yield(fk);
	fk->in_flight[op]--;
	return ret;
}

static const struct blk_driver fake_blk_driver = {
	.name = "fake",
	.co_io = fake_co_io,
};

struct fake_blk *fake_blk_new(struct loop *ctx, const char *name,
			      uint64_t size)
{
	struct fake_blk *fk = calloc(1, sizeof(*fk));

	if (!fk)
		return NULL;
	fk->ctx = ctx;
	fk->size = size;
	fk->rng = 0x9e3779b97f4a7c15ull ^ size;
	fk->data = calloc(1, size ? size : 1);
	fk->alloc = calloc(1, DIV_ROUND_UP(size, FAKE_BLK_BLOCK) + 1);
	co_queue_init(&fk->held);
	if (!fk->data || !fk->alloc ||
	    blk_open_driver(name, size, &fake_blk_driver, fk, ctx,
			    &fk->img) < 0) {
		free(fk->data);
		free(fk->alloc);
		free(fk);
		return NULL;
	}
	return fk;
}

void fake_blk_free(struct fake_blk *fk)
{
	if (!fk)
		return;
	blk_close(fk->img);
	free(fk->data);
	free(fk->alloc);
	free(fk);
}

void fake_blk_fill(struct fake_blk *fk, uint64_t off, uint64_t len,
		   uint64_t *seed)
{
	for (uint64_t i = off; i < off + len; i++) {
		/* Never a zero byte: a filled block is never all zeroes. */
		fk->data[i] = (uint8_t)(fake_rng(seed) >> 56) | 1;
	}
	fake_map(fk, off, off + len);
}

void fake_blk_fail(struct fake_blk *fk, enum blk_op op, uint32_t n, int err)
{
	fk->fail_count[op] = n;
	fk->fail_err[op] = err;
}

bool fake_blk_release(struct fake_blk *fk)
{
	return co_queue_wake_one(&fk->held);
}

void fake_blk_release_all(struct fake_blk *fk)
{
	memset(fk->hold, 0, sizeof(fk->hold));
	co_queue_wake_all(&fk->held);
}

bool fake_blk_allocated(const struct fake_blk *fk, uint64_t off,
			uint64_t len)
{
	uint64_t end = VDISK_MIN(off + len, fk->size);

	for (uint64_t b = off / FAKE_BLK_BLOCK;
	     b < DIV_ROUND_UP(end, FAKE_BLK_BLOCK); b++)
		if (fk->alloc[b])
			return true;
	return false;
}

void fake_blk_map(const struct fake_blk *fk, uint64_t g, bool *map)
{
	for (uint64_t i = 0; i < DIV_ROUND_UP(fk->size, g); i++)
		map[i] = fake_blk_allocated(fk, i * g, g);
}

void fake_blk_copy(struct fake_blk *dst, const struct fake_blk *src)
{
	memcpy(dst->data, src->data, src->size);
	memcpy(dst->alloc, src->alloc, DIV_ROUND_UP(src->size, FAKE_BLK_BLOCK));
}

/* ---- the fake guest ----------------------------------------------------- */

void fake_poll_some(struct loop *ctx)
{
	for (int i = 0; i < 50; i++) {
		if (!loop_poll(ctx, false))
			usleep(100);
	}
}

static void coroutine_fn fake_io_entry(void *opaque)
{
	struct fake_io *io = opaque;
	struct iovec v = { io->buf, io->len };

	switch (io->op) {
	case BLK_OP_WRITE:
		io->ret = blk_co_pwritev(io->img, io->off, &v, 1, 0);
		break;
	case BLK_OP_READ:
		io->ret = blk_co_preadv(io->img, io->off, &v, 1, 0);
		break;
	case BLK_OP_WRITE_ZEROES:
		io->ret = blk_co_write_zeroes(io->img, io->off, io->len, 0);
		break;
	case BLK_OP_DISCARD:
		io->ret = blk_co_discard(io->img, io->off, io->len);
		break;
	case BLK_OP_TRUNCATE:
		io->ret = blk_co_truncate(io->img, io->off);
		break;
	default:
		io->ret = -EINVAL;
		break;
	}
	io->done = true;
}

bool fake_io_start(struct fake_io *io)
{
	struct coroutine *co = co_create(fake_io_entry, io);

	if (!co)
		return false;
	io->done = false;
	co_enter(co);
	return true;
}

ssize_t fake_io_run(struct loop *ctx, struct blk_image *img, enum blk_op op,
		    uint64_t off, void *buf, uint64_t len)
{
	struct fake_io io = { img, op, off, len, buf, 0, false };

	if (!fake_io_start(&io))
		return -ENOMEM;
	if (!FAKE_WAIT_FOR(ctx, io.done))
		abort();        /* io lives on this stack: cannot go on */
	return io.ret;
}

static void coroutine_fn fake_writer_entry(void *opaque)
{
	struct fake_writer *w = opaque;
	uint64_t size = blk_get_size(w->img);
	uint8_t *buf = malloc(FAKE_WRITER_MAX);

	for (int i = 0; buf && i < w->n; i++) {
		uint64_t r = fake_rng(&w->seed);
		uint64_t off = (r >> 20) % size;
		uint64_t len = VDISK_MIN(1 + r % FAKE_WRITER_MAX, size - off);
		struct iovec v = { buf, len };
		ssize_t ret;

		switch ((r >> 60) % 8) {
		case 0:
			ret = blk_co_write_zeroes(w->img, off, len, 0);
			break;
		case 1:
			ret = blk_co_discard(w->img, off, len);
			break;
		default:
			for (uint64_t k = 0; k < len; k++)
				buf[k] = (uint8_t)(fake_rng(&w->seed) >> 40);
			ret = blk_co_pwritev(w->img, off, &v, 1, 0);
			break;
		}
		if (ret < 0)
			w->errors++;
		if (w->each)
			w->each(w->opaque);
	}
	if (!buf)
		w->errors++;
	free(buf);
	w->done = true;
}

bool fake_writer_start(struct fake_writer *w)
{
	struct coroutine *co = co_create(fake_writer_entry, w);

	if (!co)
		return false;
	w->done = false;
	co_enter(co);
	return true;
}

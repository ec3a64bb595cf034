/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mirror job's copying: the copy operations the main coroutine starts
 * (mirror_start_op), each in a coroutine of its own, and the hooks on the
 * source's writes that mark them dirty and, in write-blocking mode, write
 * them through to the target.  The rules that keep an older copy from
 * landing after a newer write (the two bitmaps, the in-flight chunks,
 * write-blocking) are in the design notes of mirror.c.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mirror-internal.h"

static uint64_t mirror_gran(const struct mirror *m)
{
	return m->o.granularity;
}

/* ---- iovec helpers --------------------------------------------------- */

/*
 * Point out[] (iovcnt entries at most) at [skip, skip + len) of iov.
 * Returns the count.
 */
static int mirror_iov_slice(const struct iovec *iov, int iovcnt,
			    uint64_t skip, uint64_t len, struct iovec *out)
{
	int n = 0;

	for (int i = 0; i < iovcnt && len > 0; i++) {
		uint64_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		out[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[n].iov_len = VDISK_MIN(l - skip, len);
		len -= out[n].iov_len;
		skip = 0;
		n++;
	}
	return n;
}

/*
 * The chunks of op covering [off, off + len) (relative to the image), in
 * out[] (op->nchunks entries at most).
 */
static int mirror_op_iov(struct mirror_op *op, uint64_t off, uint64_t len,
			 struct iovec *out)
{
	struct mirror *m = op->m;
	uint64_t g = mirror_gran(m);
	uint64_t rel = off - op->off;
	int n = 0;

	while (len > 0) {
		unsigned idx = (unsigned)(rel / g);
		uint64_t in = rel % g, l = VDISK_MIN(g - in, len);
		uint8_t *p = m->buf + (uint64_t)op->chunk[idx] * g + in;

		/* Neighbouring chunks that are neighbours in memory merge. */
		if (n > 0 && (uint8_t *)out[n - 1].iov_base +
		    out[n - 1].iov_len == p) {
			out[n - 1].iov_len += l;
		} else {
			out[n].iov_base = p;
			out[n].iov_len = l;
			n++;
		}
		rel += l;
		len -= l;
	}
	return n;
}

/* Whether op's buffer holds only zeroes for [off, off + len). */
static bool mirror_op_is_zero(const struct mirror_op *op, uint64_t off,
			      uint64_t len)
{
	const struct mirror *m = op->m;
	uint64_t g = mirror_gran(m), rel = off - op->off;

	while (len > 0) {
		uint64_t in = rel % g, l = VDISK_MIN(g - in, len);
		const uint8_t *p = m->buf +
				   (uint64_t)op->chunk[rel / g] * g + in;

		if (p[0] || memcmp(p, p + 1, l - 1))
			return false;
		rel += l;
		len -= l;
	}
	return true;
}

/* ---- copy operations -------------------------------------------------- */

/*
 * Copy [off, off + len), data known to be in the source, through op.  off
 * is unit-aligned; so is len unless it ends at the end of the image.
 */
static int coroutine_fn mirror_copy_data(struct mirror_op *op, uint64_t off,
					 uint64_t len, enum mirror_side *side)
{
	struct mirror *m = op->m;
	uint64_t a = m->align;
	ssize_t ret;
	int n;

	n = mirror_op_iov(op, off, len, op->iov);
	*side = MIRROR_SIDE_SOURCE;
	ret = blk_co_preadv(m->src, off, op->iov, n, BLK_REQ_INTERNAL);
	if (ret < 0)
		return (int)ret;
	if ((uint64_t)ret < len)
		return -EIO;     /* the size is locked: short means broken */

	/* Runs of zero units become holes, the rest is written. */
	*side = MIRROR_SIDE_TARGET;
	while (len > 0) {
		uint64_t run = 0;
		bool zero = false;

		while (run < len) {
			uint64_t l = VDISK_MIN(a - (off + run) % a, len - run);
			bool z = mirror_op_is_zero(op, off + run, l);

			if (run == 0)
				zero = z;
			else if (z != zero)
				break;
			run += l;
		}
		if (zero) {
			ret = blk_co_write_zeroes(m->target, off, run,
						  BLK_REQ_UNMAP);
		} else {
			n = mirror_op_iov(op, off, run, op->iov);
			ret = blk_co_pwritev(m->target, off, op->iov, n, 0);
		}
		if (ret < 0)
			return (int)ret;
		off += run;
		len -= run;
	}
	return 0;
}

static int coroutine_fn mirror_copy_range(struct mirror_op *op,
					  enum mirror_side *side)
{
	struct mirror *m = op->m;
	uint64_t pos = op->off, end = op->off + op->bytes, a = m->align;

	/* pos stays unit-aligned: op->off is, and each step ends on a
	 * unit boundary or at end. */
	while (pos < end) {
		uint64_t pnum = 0, next;
		bool is_data = true;
		int ret;

		*side = MIRROR_SIDE_SOURCE;
		if (pos >= m->data_start && pos < m->data_end) {
			/* Known data (see mirror.h on data_start). */
			pnum = m->data_end - pos;
		} else {
			/* Ask to the end of the image, so that one answer
			 * serves the operations that follow. */
			ret = blk_co_block_status(m->src, pos, m->size - pos,
						  BLK_REQ_INTERNAL, &pnum,
						  &is_data);
			if (ret < 0)
				return ret;
			if (is_data && pnum > 0) {
				m->data_start = pos;
				m->data_end = pos + pnum;
			}
		}
		if (pnum == 0 || pnum > end - pos)
			pnum = end - pos;
		/* Whole units: data that ends inside one takes all of it, a
		 * hole that does stops before it; a hole smaller than a unit
		 * is copied as data (it reads as zeroes). */
		next = pos + pnum;
		if (next < end)
			next = is_data ? VDISK_MIN(ROUND_UP(next, a), end) :
					 ROUND_DOWN(next, a);
		if (next == pos) {
			is_data = true;
			next = VDISK_MIN(pos + a, end);
		}
		if (is_data) {
			ret = mirror_copy_data(op, pos, next - pos, side);
		} else {
			/* Holes stay holes. */
			*side = MIRROR_SIDE_TARGET;
			ret = blk_co_write_zeroes(m->target, pos, next - pos,
						  BLK_REQ_UNMAP);
		}
		if (ret < 0)
			return ret;
		pos = next;
	}
	return 0;
}

static void coroutine_fn mirror_co_op(void *opaque)
{
	struct mirror_op *op = opaque;
	struct mirror *m = op->m;
	enum mirror_side side = MIRROR_SIDE_NONE;
	int ret = mirror_copy_range(op, &side);

	if (ret < 0) {
		hbitmap_set(m->dirty, op->off, op->bytes);
		mirror_error(m, side, ret);
	} else {
		mirror_account(m, op->bytes);
	}
	hbitmap_reset(m->in_flight, op->off, op->bytes);
	/* Back in reverse, so that the next operation pops them in
	 * ascending order: neighbouring chunks then merge into one iovec
	 * segment (mirror_op_iov) and the kernel maps one buffer. */
	for (unsigned i = op->nchunks; i-- > 0;)
		m->free_list[m->nfree++] = op->chunk[i];
	m->ops_in_flight--;
	m->bytes_in_flight -= op->bytes;
	free(op);
	co_queue_wake_all(&m->inflight_waiters);
	mirror_kick(m);
}

/*
 * The next dirty area from the cursor on (wrapping once), rounded out to
 * whole units and cut at max_op.  false if nothing is dirty.
 */
static bool mirror_next_area(struct mirror *m, uint64_t *off, uint64_t *end)
{
	uint64_t o = m->cursor, bytes = m->size - VDISK_MIN(o, m->size);

	if (!hbitmap_next_dirty_area(m->dirty, &o, &bytes, m->max_op)) {
		o = 0;
		bytes = m->size;
		if (!hbitmap_next_dirty_area(m->dirty, &o, &bytes,
					     m->max_op))
			return false;
	}
	*end = VDISK_MIN(ROUND_UP(o + bytes, m->align), m->size);
	*off = ROUND_DOWN(o, m->align);
	if (*end - *off > m->max_op)
		*end = *off + m->max_op;
	return true;
}

/*
 * Start one copy of the next dirty area if it can start now.  Returns
 * true if it did, false if the main coroutine must wait: for a kick
 * (nothing to do, all of it in flight, not enough free chunks) or, if
 * *delay is set, that many ns (the rate limit, only when limit; or out of
 * memory).
 */
bool mirror_start_op(struct mirror *m, bool limit, uint64_t *delay)
{
	uint64_t g = mirror_gran(m), off, end;
	size_t head;
	struct mirror_op *op;
	struct coroutine *co;
	unsigned n;
	int64_t fl, z;

	*delay = 0;
	if (m->ops_in_flight >= MIRROR_MAX_OPS)
		return false;
	/* Stop before the first chunk in flight; if the area starts in
	 * flight, look further (a few times: the kick at the end of any
	 * operation brings the main coroutine back here). */
	for (int tries = 0;; tries++) {
		if (tries == 2 * MIRROR_MAX_OPS || !mirror_next_area(m, &off,
								     &end))
			return false;
		fl = hbitmap_next_dirty(m->in_flight, off, end - off);
		if (fl < 0)
			break;
		if (ROUND_DOWN((uint64_t)fl, m->align) > off) {
			end = ROUND_DOWN((uint64_t)fl, m->align);
			break;
		}
		z = hbitmap_next_zero(m->in_flight, (uint64_t)fl,
				      m->size - (uint64_t)fl);
		m->cursor = z < 0 ? 0 : ROUND_UP((uint64_t)z, m->align);
		if (m->cursor >= m->size)
			m->cursor = 0;
	}
	n = (unsigned)DIV_ROUND_UP(end - off, g);
	if (n > m->nfree)
		return false;
	if (limit) {
		*delay = ratelimit_calculate_delay(&m->rl, loop_now_ns(),
						   end - off);
		if (*delay)
			return false;
	}

	head = ROUND_UP(sizeof(*op) + n * sizeof(op->chunk[0]),
			_Alignof(struct iovec));
	op = malloc(head + n * sizeof(struct iovec));
	co = op ? co_create(mirror_co_op, op) : NULL;
	if (!co) {
		free(op);
		mirror_error(m, MIRROR_SIDE_TARGET, -ENOMEM);
		*delay = MIRROR_BACKOFF_NS;     /* no kick may come */
		return false;
	}
	op->m = m;
	op->off = off;
	op->bytes = end - off;
	op->nchunks = n;
	op->iov = (struct iovec *)((uint8_t *)op + head);
	for (unsigned i = 0; i < n; i++)
		op->chunk[i] = m->free_list[--m->nfree];
	hbitmap_set(m->in_flight, off, op->bytes);
	hbitmap_reset(m->dirty, off, op->bytes);
	m->ops_in_flight++;
	m->bytes_in_flight += op->bytes;
	m->cursor = end < m->size ? end : 0;
	co_enter(co);
	return true;
}

/* ---- the source's write hooks ---------------------------------------- */

static struct mirror_active *mirror_find_active(struct mirror *m)
{
	struct mirror_active *a;

	LIST_FOREACH(a, &m->active, link) {
		if (a->co == co_self())
			return a;
	}
	return NULL;
}

int coroutine_fn mirror_before_write(void *opaque, uint64_t off,
				     uint64_t bytes)
{
	struct mirror *m = opaque;
	struct mirror_active *a;
	uint64_t g = mirror_gran(m), s, e;

	if (m->o.copy_mode != MIRROR_COPY_WRITE_BLOCKING || bytes == 0 ||
	    off >= m->size)
		return 0;
	a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	s = ROUND_DOWN(off, g);
	e = VDISK_MIN(ROUND_UP(off + bytes, g), m->size);
	m->hooks_busy++;
	while (hbitmap_next_dirty(m->in_flight, s, e - s) >= 0)
		co_queue_wait(&m->inflight_waiters);
	hbitmap_set(m->in_flight, s, e - s);
	*a = (struct mirror_active){ .co = co_self(), .off = s, .end = e };
	LIST_INSERT_HEAD(&m->active, a, link);
	return 0;
}

/*
 * Write [off, off + len) of the request through to the target.  0, 1 if
 * it could not be tried (no memory: the caller leaves the area dirty), or
 * the target's -errno.
 */
static int coroutine_fn mirror_write_through(struct mirror *m, enum blk_op op,
					     uint64_t req_off, uint64_t off,
					     uint64_t len,
					     const struct iovec *iov,
					     int iovcnt, unsigned flags)
{
	struct iovec small[8], *sl;
	ssize_t ret;
	int n;

	switch (op) {
	case BLK_OP_WRITE:
		sl = iovcnt <= (int)ARRAY_SIZE(small) ? small :
		     malloc((size_t)iovcnt * sizeof(*sl));
		if (!sl)
			return 1;
		n = mirror_iov_slice(iov, iovcnt, off - req_off, len, sl);
		ret = blk_co_pwritev(m->target, off, sl, n, 0);
		if (sl != small)
			free(sl);
		return ret < 0 ? (int)ret : 0;
	case BLK_OP_DISCARD:
		return blk_co_write_zeroes(m->target, off, len, BLK_REQ_UNMAP);
	default:
		return blk_co_write_zeroes(m->target, off, len,
					   flags & BLK_REQ_UNMAP);
	}
}

void coroutine_fn mirror_after_write(void *opaque, enum blk_op op,
				     uint64_t off, uint64_t bytes,
				     const struct iovec *iov, int iovcnt,
				     unsigned flags, ssize_t ret)
{
	struct mirror *m = opaque;
	struct mirror_active *a = NULL;
	uint64_t end, pos;

	if (off >= m->size || bytes == 0)
		return;
	end = VDISK_MIN(off + bytes, m->size);
	if (m->o.copy_mode == MIRROR_COPY_WRITE_BLOCKING)
		a = mirror_find_active(m);
	if (!a || ret < 0 || m->cancel_now) {
		/* Background, a write that began before the job, or one
		 * that failed (it may have landed in part): copy it later. */
		hbitmap_set(m->dirty, off, end - off);
		goto out;
	}

	/* Clean chunks: the target was current, so it gets the write now. */
	pos = off;
	while (pos < end) {
		int64_t d = hbitmap_next_dirty(m->dirty, pos, end - pos);
		uint64_t clean_end = d < 0 ? end : (uint64_t)d;
		int64_t z;
		int err;

		if (clean_end > pos) {
			err = mirror_write_through(m, op, off, pos,
						   clean_end - pos, iov,
						   iovcnt, flags);
			if (err != 0)
				hbitmap_set(m->dirty, pos, clean_end - pos);
			if (err < 0) {
				mirror_error(m, MIRROR_SIDE_TARGET, err);
			} else if (err == 0) {
				mirror_account(m, clean_end - pos);
			}
		}
		if (d < 0)
			break;
		z = hbitmap_next_zero(m->dirty, (uint64_t)d, end - (uint64_t)d);
		pos = z < 0 ? end : (uint64_t)z;
	}
out:
	if (a) {
		hbitmap_reset(m->in_flight, a->off, a->end - a->off);
		LIST_REMOVE(a, link);
		free(a);
		m->hooks_busy--;
		co_queue_wake_all(&m->inflight_waiters);
	}
	mirror_kick(m);
}

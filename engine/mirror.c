/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mirror job.
 *
 * Design notes.
 *
 * Coroutines.  One main coroutine decides what to copy; each copy
 * operation runs in a coroutine of its own (at most MIRROR_MAX_OPS).  Only
 * the main coroutine starts operations, so only it waits for free chunks;
 * it sleeps with m->main_wait set and whoever changes something it waits
 * for (an operation ending, a write dirtying, a pause ending, a request
 * from the user) calls mirror_kick.
 *
 * The two bitmaps, both at the granularity:
 *  - dirty: what the target lacks.  Writes mark it in after_write, once
 *    their data is in the source; an operation clears its range when it
 *    starts, before reading.  So a write that lands during a copy dirties
 *    the chunk again and it is copied once more.
 *  - in_flight: chunks being copied, and (write-blocking) chunks being
 *    written.  An operation never starts over an in-flight chunk, so two
 *    copies of one chunk never race at the target: the later one is not
 *    started before the earlier ends (whose end kicks the main
 *    coroutine); mirror_start_op looks past an area that starts in
 *    flight.  Write-blocking writes wait on m->inflight_waiters.
 *
 * Write-blocking mode.  before_write waits until the write's chunks are not
 * in flight and marks them; after_write copies the write's own bytes to
 * the target where the chunk is clean (the target was current there) and
 * leaves dirty chunks dirty, then unmarks.  A copy can thus never read the
 * source before such a write and land after it.  before_write runs
 * untracked (block.h), because a copy's source read may have to wait for
 * a tracked serialising write.
 *
 * Operations.  An operation covers whole units of m->align (the
 * granularity, or the target's cluster if that is larger), at most
 * m->max_op bytes (a multiple of the unit) and at most MIRROR_IOV_MAX
 * chunks, which also bounds its iovec array (allocated with the op).
 * Inside it, block status splits data from holes and the data read is
 * checked for zeroes, both per unit: a hole or zero run becomes a
 * write-zeroes (BLK_REQ_UNMAP) of whole units, so the target stays sparse
 * and never sees a request that is not unit-aligned (but for the image's
 * tail).  Write-blocking write-through is the exception: it writes the
 * guest's own bytes.  The rate limit is charged with an operation's bytes
 * only when it starts.
 *
 * Errors.  A failed operation dirties its range again and applies the
 * side's policy: report fails the job, stop pauses it (as one user pause,
 * however many operations fail together, so one resume retries), ignore
 * retries after MIRROR_BACKOFF_NS.  If the first block-status pass fails,
 * everything is dirty instead.  Once the job is completing, the source is
 * drained by the job: any error fails it rather than keep the source's
 * users waiting.
 *
 * Ending.  Every way out goes through the end of mirror_co_main: wait for
 * operations and write hooks, remove the notifiers, unlock the size, set
 * the final state, and run ops->finished from a bottom half so that it may
 * free the job.  The job concludes once the target was flushed in a
 * completion that is not a cancel: a force cancel that arrives while
 * ops->pivot runs is too late to stop it.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "coroutine.h"
#include "hbitmap.h"
#include "loop.h"
#include "mirror.h"
#include "ratelimit.h"

#define MIRROR_BACKOFF_NS    (100ull * 1000 * 1000)
#define MIRROR_SLEEP_MAX_NS  (100ull * 1000 * 1000)
#define MIRROR_TP_WINDOW_NS  (1000ull * 1000 * 1000)
#define MIRROR_IOV_MAX       1024   /* chunks per operation (IOV_MAX) */

/* A write-blocking write between its two hooks. */
struct mirror_active {
	LIST_ENTRY(mirror_active) link;
	struct coroutine *co;          /* the request's coroutine */
	uint64_t off, end;             /* chunk-rounded, marked in flight */
};

struct mirror_op {
	struct mirror *m;
	uint64_t off, bytes;
	unsigned nchunks;
	struct iovec *iov;             /* nchunks entries, after chunk[] */
	unsigned chunk[];              /* indices into m->buf */
};

struct mirror {
	struct job job;
	struct blk_image *src, *target;
	struct mirror_opts o;
	const struct mirror_ops *ops;
	void *opaque;
	uint64_t size;
	struct hbitmap *dirty, *in_flight;
	uint8_t *buf;
	unsigned nchunks, nfree;
	unsigned *free_list;
	uint64_t max_op, align;
	struct ratelimit rl;

	struct coroutine *co;          /* main; NULL once it ended */
	bool main_wait;
	struct co_queue inflight_waiters;
	unsigned ops_in_flight;
	uint64_t bytes_in_flight;
	unsigned hooks_busy;           /* write hooks that may yield */
	LIST_HEAD(, mirror_active) active;
	uint64_t cursor;

	bool cancel_now;               /* stop without a final sync */
	bool final_sync;               /* completing (or cancel after ready) */
	bool final_cancel;             /* ... ending in cancelled */
	bool no_pivot;
	bool ever_ready, consistent, pivoted;
	bool drain_paused;
	uint64_t backoff_until;        /* ignore policy: no copy before */
	int fail_err;                  /* fail the job with this */
	enum mirror_side err_side;

	uint64_t done;
	uint64_t tp_start, tp_bytes, throughput;

	struct blk_write_notifier wn;
	struct blk_drain_notifier dn;
	bool attached;
	struct loop_bh finished_bh;
};

static void mirror_kick(struct mirror *m)
{
	if (m->main_wait && m->co) {
		m->main_wait = false;
		co_wake(m->co);
	}
}

/* The main coroutine: wait for a kick (or at most ns, if not 0). */
static void coroutine_fn mirror_wait(struct mirror *m, uint64_t ns)
{
	m->main_wait = true;
	if (ns)
		co_sleep_ns(ns);
	else
		co_yield();
	m->main_wait = false;
}

static uint64_t mirror_gran(const struct mirror *m)
{
	return m->o.granularity;
}

static void mirror_account(struct mirror *m, uint64_t bytes)
{
	uint64_t now = loop_now_ns();

	m->done += bytes;
	m->tp_bytes += bytes;
	if (now - m->tp_start >= MIRROR_TP_WINDOW_NS) {
		m->throughput = m->tp_bytes * 1000000000ull /
				(now - m->tp_start);
		m->tp_start = now;
		m->tp_bytes = 0;
	}
}

/*
 * Record an error of side and apply its policy.  The caller has dirtied
 * the area again.
 */
static void mirror_error(struct mirror *m, enum mirror_side side, int err)
{
	enum mirror_on_error pol = side == MIRROR_SIDE_SOURCE ?
				   m->o.on_source_error : m->o.on_target_error;

	m->job.error = err;
	m->err_side = side;
	if (m->final_sync || pol == MIRROR_ERROR_REPORT) {
		if (!m->fail_err)
			m->fail_err = err;
	} else if (pol == MIRROR_ERROR_STOP) {
		/* One pause for errors that come together; a user's pause
		 * already stops the job, and its resume retries too. */
		if (m->job.user_pauses == 0)
			job_pause(&m->job, true);
	} else {
		m->backoff_until = loop_now_ns() + MIRROR_BACKOFF_NS;
	}
	mirror_kick(m);
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
		ret = blk_co_block_status(m->src, pos, end - pos,
					  BLK_REQ_INTERNAL, &pnum, &is_data);
		if (ret < 0)
			return ret;
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
	for (unsigned i = 0; i < op->nchunks; i++)
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
static bool mirror_start_op(struct mirror *m, bool limit, uint64_t *delay)
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

static int coroutine_fn mirror_before_write(void *opaque, uint64_t off,
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

static void coroutine_fn mirror_after_write(void *opaque, enum blk_op op,
					    uint64_t off, uint64_t bytes,
					    const struct iovec *iov,
					    int iovcnt, unsigned flags,
					    ssize_t ret)
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

static void mirror_drain_begin(void *opaque)
{
	struct mirror *m = opaque;

	if (!m->drain_paused && job_pause(&m->job, false) == 0)
		m->drain_paused = true;
}

static void mirror_drain_end(void *opaque)
{
	struct mirror *m = opaque;

	if (m->drain_paused) {
		m->drain_paused = false;
		job_resume(&m->job, false);
		mirror_kick(m);
	}
}

static void mirror_detach(struct mirror *m)
{
	if (!m->attached)
		return;
	blk_remove_write_notifier(&m->wn);
	blk_remove_drain_notifier(&m->dn);
	blk_size_unlock(m->src);
	m->attached = false;
}

/* ---- the main coroutine ------------------------------------------------ */

/* sync=full: everything the source holds (all of it if the target may
 * hold anything). */
static int coroutine_fn mirror_init_dirty(struct mirror *m)
{
	uint64_t pos = 0;

	if (m->o.sync == MIRROR_SYNC_NONE)
		return 0;
	if (!m->o.target_is_zero) {
		hbitmap_set(m->dirty, 0, m->size);
		return 0;
	}
	while (pos < m->size && !m->cancel_now) {
		uint64_t pnum = 0;
		bool is_data = true;
		int ret = blk_co_block_status(m->src, pos, m->size - pos,
					      BLK_REQ_INTERNAL, &pnum,
					      &is_data);

		if (ret < 0)
			return ret;
		if (pnum == 0)
			break;
		if (is_data)
			hbitmap_set(m->dirty, pos, pnum);
		pos += pnum;
	}
	return 0;
}

static bool mirror_idle(const struct mirror *m)
{
	return hbitmap_count_bits(m->dirty) == 0 && m->ops_in_flight == 0;
}

/* The final sync with the source drained, then the switch. */
static void coroutine_fn mirror_finish(struct mirror *m)
{
	uint64_t delay;
	int ret;

	blk_co_drained_begin(m->src);
	while (!m->cancel_now && !m->fail_err && !mirror_idle(m)) {
		if (!mirror_start_op(m, false, &delay))
			mirror_wait(m, 0);
	}
	while (m->ops_in_flight > 0)
		mirror_wait(m, 0);
	if (m->cancel_now || m->fail_err)
		goto out;
	ret = blk_co_flush(m->target);
	if (ret < 0) {
		mirror_error(m, MIRROR_SIDE_TARGET, ret);
		goto out;
	}
	m->consistent = true;
	if (!m->final_cancel && !m->no_pivot && m->ops->pivot) {
		/* Stop tracking first: after the switch the source is left
		 * alone, and its hooks must not run on the target's writes. */
		while (m->hooks_busy > 0)
			mirror_wait(m, 0);
		mirror_detach(m);
		ret = m->ops->pivot(m->opaque);
		if (ret < 0) {
			m->job.error = ret;
			m->err_side = MIRROR_SIDE_TARGET;
			m->fail_err = ret;
			goto out;
		}
		m->pivoted = true;
	}
out:
	while (m->hooks_busy > 0)
		mirror_wait(m, 0);
	mirror_detach(m);
	blk_co_drained_end(m->src);
}

static void mirror_finished_bh(void *opaque)
{
	struct mirror *m = opaque;

	if (m->ops->finished)
		m->ops->finished(m->opaque);
}

static void coroutine_fn mirror_co_main(void *opaque)
{
	struct mirror *m = opaque;
	enum job_state final;
	int ret;

	job_set_state(&m->job, JOB_RUNNING);
	ret = mirror_init_dirty(m);
	if (ret < 0) {
		/* No map of the source: copy all of it (each copy asks for
		 * block status again). */
		hbitmap_set(m->dirty, 0, m->size);
		mirror_error(m, MIRROR_SIDE_SOURCE, ret);
	}

	while (!m->cancel_now && !m->fail_err && !m->final_sync) {
		uint64_t delay, now;

		if (m->job.state == JOB_PAUSED) {
			mirror_wait(m, 0);
			continue;
		}
		/* A deadline, not a flag: the kicks of other operations
		 * ending must not cut the back-off short. */
		now = loop_now_ns();
		if (now < m->backoff_until) {
			mirror_wait(m, m->backoff_until - now);
			continue;
		}
		if (mirror_idle(m)) {
			if (!m->ever_ready) {
				m->ever_ready = true;
				job_set_state(&m->job, JOB_READY);
			}
			mirror_wait(m, 0);
			continue;
		}
		if (!mirror_start_op(m, true, &delay))
			mirror_wait(m, VDISK_MIN(delay, MIRROR_SLEEP_MAX_NS));
	}

	if (m->final_sync && !m->cancel_now && !m->fail_err)
		mirror_finish(m);

	/* Let every operation and write hook end before letting go. */
	while (m->ops_in_flight > 0 || m->hooks_busy > 0)
		mirror_wait(m, 0);
	mirror_detach(m);

	if (m->fail_err)
		final = JOB_FAILED;
	else if (m->consistent && !m->final_cancel)
		final = JOB_CONCLUDED;  /* flushed for a completion */
	else
		final = JOB_CANCELLED;
	if (final == JOB_FAILED)
		m->job.error = m->fail_err;
	m->job.state = final;   /* every state may end so */
	m->job.end_ns = loop_now_ns();
	m->co = NULL;
	loop_bh_schedule(&m->finished_bh);
}

/* ---- the public API ---------------------------------------------------- */

static bool mirror_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static int mirror_check_opts(struct mirror_opts *o, uint64_t size,
			     uint64_t target_size)
{
	uint64_t cl = o->target_cluster > 1 ? o->target_cluster : 1;

	if (o->sync > MIRROR_SYNC_NONE ||
	    o->copy_mode > MIRROR_COPY_WRITE_BLOCKING ||
	    o->on_source_error > MIRROR_ERROR_IGNORE ||
	    o->on_target_error > MIRROR_ERROR_IGNORE || !mirror_pow2(cl) ||
	    cl > MIRROR_GRANULARITY_MAX)
		return -EINVAL;
	if (target_size < size)
		return -EINVAL;
	if (!o->granularity)
		o->granularity = VDISK_MAX(MIRROR_GRANULARITY_DEF, cl);
	if (!mirror_pow2(o->granularity) ||
	    o->granularity < MIRROR_GRANULARITY_MIN ||
	    o->granularity > MIRROR_GRANULARITY_MAX)
		return -EINVAL;
	if (!o->buf_size)
		o->buf_size = VDISK_MAX(MIRROR_BUF_SIZE_DEF, o->granularity);
	if (o->buf_size % o->granularity || o->buf_size > (1ull << 32))
		return -EINVAL;
	return 0;
}

int mirror_start(struct blk_image *src, struct blk_image *target,
		 const struct mirror_opts *o, const struct mirror_ops *ops,
		 void *opaque, struct mirror **out)
{
	static const struct mirror_ops no_ops;
	struct mirror *m;
	unsigned shift;
	int ret;

	if (src == target)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->o = *o;
	m->src = src;
	m->target = target;
	m->ops = ops ? ops : &no_ops;
	m->opaque = opaque;
	m->size = blk_get_size(src);
	ret = mirror_check_opts(&m->o, m->size, blk_get_size(target));
	if (ret < 0)
		goto err;
	shift = (unsigned)__builtin_ctzll(m->o.granularity);
	m->align = VDISK_MAX(m->o.granularity, m->o.target_cluster);
	/* Whole units, within the buffer and the iovec bound. */
	m->max_op = VDISK_MIN(VDISK_MAX(MIRROR_MAX_OP_BYTES, m->align),
			      m->o.buf_size);
	m->max_op = VDISK_MIN(m->max_op, MIRROR_IOV_MAX * m->o.granularity);
	m->max_op = ROUND_DOWN(m->max_op, m->align);
	if (m->max_op == 0) {
		ret = -EINVAL;          /* a cluster larger than the buffer */
		goto err;
	}
	m->nchunks = m->nfree = (unsigned)(m->o.buf_size / m->o.granularity);
	ret = hbitmap_new(m->size, shift, &m->dirty);
	if (ret < 0)
		goto err;
	ret = hbitmap_new(m->size, shift, &m->in_flight);
	if (ret < 0)
		goto err;
	m->free_list = calloc(m->nchunks, sizeof(*m->free_list));
	if (!m->free_list ||
	    posix_memalign((void **)&m->buf, 4096, m->o.buf_size)) {
		ret = -ENOMEM;
		goto err;
	}
	for (unsigned i = 0; i < m->nchunks; i++)
		m->free_list[i] = m->nchunks - 1 - i;
	m->co = co_create(mirror_co_main, m);
	if (!m->co) {
		ret = -ENOMEM;
		goto err;
	}
	ret = blk_size_lock(src);
	if (ret < 0) {
		co_free_unstarted(m->co);
		goto err;
	}

	loop_bh_init(&m->finished_bh, loop_get_current(), mirror_finished_bh,
		     m);
	job_init(&m->job, "mirror");
	m->job.total = m->size;
	ratelimit_init(&m->rl);
	ratelimit_set_speed(&m->rl, m->o.speed, 0);
	co_queue_init(&m->inflight_waiters);
	LIST_INIT(&m->active);
	m->tp_start = loop_now_ns();
	m->wn = (struct blk_write_notifier){
		.before_write = mirror_before_write,
		.after_write = mirror_after_write,
		.opaque = m,
	};
	m->dn = (struct blk_drain_notifier){
		.begin = mirror_drain_begin,
		.end = mirror_drain_end,
		.opaque = m,
	};
	blk_add_write_notifier(src, &m->wn);
	blk_add_drain_notifier(src, &m->dn);
	m->attached = true;
	/* Started while drained: paused from the start. */
	{
		struct blk_info bi;

		blk_get_info(src, &bi);
		if (bi.drain_depth > 0)
			mirror_drain_begin(m);
	}
	*out = m;
	co_enter(m->co);
	return 0;

err:
	hbitmap_free(m->dirty);
	hbitmap_free(m->in_flight);
	free(m->free_list);
	free(m->buf);
	free(m);
	return ret;
}

int mirror_complete(struct mirror *m, bool no_pivot)
{
	if (job_state_is_final(m->job.state) || m->final_sync ||
	    m->cancel_now)
		return -EINVAL;
	/* Ready, or paused only by drains after it was ready (the final
	 * sync drains the source anyway). */
	if (!m->ever_ready || m->job.user_pauses > 0 ||
	    job_set_state(&m->job, JOB_COMPLETING) < 0)
		return -EBUSY;
	m->no_pivot = no_pivot;
	m->final_sync = true;
	mirror_kick(m);
	return 0;
}

int mirror_cancel(struct mirror *m, bool force)
{
	if (job_state_is_final(m->job.state) || m->cancel_now)
		return -EINVAL;
	if (force || !m->ever_ready) {
		m->cancel_now = true;
	} else {
		if (m->final_sync)
			return -EINVAL;
		m->final_sync = true;
		m->final_cancel = true;
		job_set_state(&m->job, JOB_COMPLETING);
	}
	/* Waiters in write hooks and a paused main loop must see it. */
	mirror_kick(m);
	return 0;
}

int mirror_pause(struct mirror *m)
{
	return job_pause(&m->job, true);
}

int mirror_resume(struct mirror *m)
{
	int ret;

	if (job_state_is_final(m->job.state))
		return -EINVAL;
	ret = job_resume(&m->job, true);

	if (ret == 0)
		mirror_kick(m);
	return ret;
}

void mirror_set_speed(struct mirror *m, uint64_t bytes_per_sec)
{
	m->o.speed = bytes_per_sec;
	ratelimit_set_speed(&m->rl, bytes_per_sec, 0);
	mirror_kick(m);
}

void mirror_get_status(struct mirror *m, struct mirror_status *st)
{
	uint64_t now = loop_now_ns();
	uint64_t dirty = hbitmap_count(m->dirty);

	*st = (struct mirror_status){
		.id = m->job.id,
		.state = m->job.state,
		.opts = m->o,
		.consistent = m->consistent,
		.ever_ready = m->ever_ready,
		.user_paused = m->job.user_pauses > 0,
		.drained = m->drain_paused,
		.pivoted = m->pivoted,
		.no_pivot = m->no_pivot,
		.bytes_done = m->done,
		.bytes_dirty = dirty,
		.bytes_in_flight = m->bytes_in_flight,
		.bytes_total = m->done + dirty + m->bytes_in_flight,
		.elapsed_ns = job_elapsed_ns(&m->job),
		.ops_in_flight = m->ops_in_flight,
		.error = m->job.error,
		.error_side = m->err_side,
	};
	/* A window without completions still tells how slow it is. */
	if (now - m->tp_start >= 2 * MIRROR_TP_WINDOW_NS ||
	    job_state_is_final(m->job.state))
		st->throughput = job_state_is_final(m->job.state) ? 0 :
				 m->tp_bytes * 1000000000ull /
				 (now - m->tp_start);
	else
		st->throughput = m->throughput;
}

void mirror_free(struct mirror *m)
{
	if (!m)
		return;
	if (m->co) {
		mirror_cancel(m, true);
		LOOP_WAIT_WHILE(loop_get_current(), m->co != NULL);
	}
	/* Freed first, the job tells no one it finished. */
	loop_bh_cancel(&m->finished_bh);
	mirror_detach(m);
	hbitmap_free(m->dirty);
	hbitmap_free(m->in_flight);
	free(m->free_list);
	free(m->buf);
	free(m);
}

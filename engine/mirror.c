/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mirror job.
 *
 * This file holds the job itself: the main coroutine that decides what to
 * copy and ends the job, the error policy, progress, and the public API
 * with its status.  The copy operations and the source's write hooks
 * (write-blocking mode) live in mirror-copy.c; the structures both share,
 * in mirror-internal.h.
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
 * Write-blocking mode (mirror-copy.c).  before_write waits until the write's chunks are not
 * in flight and marks them; after_write copies the write's own bytes to
 * the target where the chunk is clean (the target was current there) and
 * leaves dirty chunks dirty, then unmarks.  A copy can thus never read the
 * source before such a write and land after it.  before_write runs
 * untracked (block.h), because a copy's source read may have to wait for
 * a tracked serialising write.
 *
 * Operations (mirror-copy.c).  An operation covers whole units of m->align (the
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

#include "mirror-internal.h"

#define MIRROR_SLEEP_MAX_NS  (100ull * 1000 * 1000)
#define MIRROR_TP_WINDOW_NS  (1000ull * 1000 * 1000)

void mirror_kick(struct mirror *m)
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

void mirror_account(struct mirror *m, uint64_t bytes)
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
void mirror_error(struct mirror *m, enum mirror_side side, int err)
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

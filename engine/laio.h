/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Linux AIO (libaio) backend: one kernel io context per AioContext.
 *
 * This module only moves bytes between a file descriptor and memory.  The
 * rules of the file it talks to are the caller's business: with O_DIRECT
 * the offsets, lengths and buffer addresses must be aligned to the
 * device's block size, and padding, bounce buffers, barrier ordering and
 * the thread-pool fallback (for files or operations Linux AIO cannot do)
 * all live in the block layer above.
 *
 * A request is submitted at once, unless the backend is plugged:
 * laio_plug/laio_unplug let a caller that drains a whole queue (the vring
 * dataplane) submit everything it queued with one io_submit.
 * Completions arrive on an eventfd watched by the context.
 *
 * Threading:
 *  - Everything runs in the thread of the context the backend was created
 *    in (ctx of laio_new): laio_new, laio_free, laio_plug, laio_unplug,
 *    laio_set_fault and laio_get_stats are called there, from plain code or
 *    from a coroutine of that context.
 *  - laio_co_submit only from a coroutine whose context is ctx; it yields
 *    until the request is over and resumes in ctx.
 *  - Completions are reaped by an fd handler of ctx; they wake the waiting
 *    coroutines there.  Nothing ever runs in another thread, so the
 *    backend has no lock.
 */
#ifndef VDISK_LAIO_H
#define VDISK_LAIO_H

#include <stdint.h>
#include <sys/uio.h>

#include "compiler.h"
#include "loop.h"

struct laio;

/* Used by laio_new when max_events is 0. */
#define LAIO_DEFAULT_MAX_EVENTS 256u

enum laio_op {
	LAIO_READ,
	LAIO_WRITE,
	LAIO_FDSYNC,     /* fdatasync through the kernel's IOCB_CMD_FDSYNC */
};

/* A snapshot of the backend's counters (laio_get_stats). */
struct laio_stats {
	uint64_t submitted;     /* iocbs accepted by io_submit */
	uint64_t submit_calls;  /* io_submit calls; < submitted when plugged */
	uint64_t eagain;        /* io_submit calls that returned -EAGAIN;
				 * the rest waited for a completion */
	uint64_t queue_full;    /* submission passes that stopped because
				 * max_events iocbs were in flight */
	uint64_t short_io;      /* continuations after short reads/writes */
	uint64_t faults;        /* requests failed by laio_set_fault */
	unsigned in_flight;     /* iocbs in the kernel now */
	unsigned peak_in_flight;/* most iocbs in the kernel at once */
	unsigned pending;       /* iocbs queued, not submitted yet */
};

/*
 * Create the backend for ctx: an io context able to hold max_events
 * requests in flight (0 means LAIO_DEFAULT_MAX_EVENTS; at most that many
 * are ever given to the kernel at once, the rest wait in a queue), and an
 * eventfd registered in ctx for completions.  Call it from ctx's thread.
 * Returns 0 and sets *out, -EINVAL for a max_events above INT_MAX, or the
 * -errno of io_setup (-EAGAIN when fs.aio-max-nr is exhausted, -ENOSYS
 * without AIO support) or of another call.  The caller owns the backend
 * and frees it with laio_free.
 */
int laio_new(struct loop *ctx, unsigned max_events, struct laio **out);

/*
 * Free the backend.  Nothing may be in flight or queued: every
 * laio_co_submit must have returned.  ctx's thread.  NULL is a no-op.
 */
void laio_free(struct laio *l);

/*
 * Read, write or fdatasync fd and return when it is done.  A coroutine
 * of l's context only; it yields until the request completes.
 *
 * LAIO_READ/LAIO_WRITE transfer the bytes described by iov[0..iovcnt) at
 * offset.  Short transfers are continued until every byte is done, except
 * that a read stops at end of file.  Returns the number of bytes
 * transferred, which is less than requested only for a read that reached
 * end of file (0 for a read that starts at or after it), or -errno (the
 * first error the kernel reported, -EIO for a write that made no
 * progress, -EINVAL for bad arguments or more than INT_MAX bytes, -EAGAIN
 * if the kernel has no room while nothing else is in flight).
 *
 * LAIO_FDSYNC ignores offset, iov and iovcnt and returns 0 or -errno
 * (-EINVAL where the file system cannot do it asynchronously: the caller
 * then falls back to the thread pool).  It covers the writes that
 * completed before it was submitted, not those still in flight: ordering
 * is the block layer's (barriers).
 *
 * iov and the buffers it points to are borrowed until the call returns;
 * the array itself is never modified (a continuation works on a copy).
 * Request order is not kept: two overlapping requests in flight at once
 * may land in either order.
 */
int coroutine_fn laio_co_submit(struct laio *l, int fd, enum laio_op op,
				uint64_t offset, const struct iovec *iov,
				int iovcnt);

/*
 * Hold submissions: requests queued while plugged are kept and submitted
 * together when the matching laio_unplug brings the count back to zero.
 * Nestable.  ctx's thread (plain code or a coroutine).
 */
void laio_plug(struct laio *l);

/*
 * Undo one laio_plug; at zero, submit what is queued at once (errors are
 * returned to the requests' coroutines, never to the caller).  ctx's
 * thread.
 */
void laio_unplug(struct laio *l);

/*
 * Test only: fail every later request of op with -err at once, without
 * giving it to the kernel, until called again with err 0.  err is a
 * positive errno value (a negative one is taken as its opposite).  The
 * block layer's tests use it to reach their fallbacks (an fdsync the file
 * system refuses with EINVAL, a read error).  ctx's thread.
 */
void laio_set_fault(struct laio *l, enum laio_op op, int err);

/* Copy the counters into *st.  ctx's thread. */
void laio_get_stats(const struct laio *l, struct laio_stats *st);

#endif /* VDISK_LAIO_H */

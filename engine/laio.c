/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Linux AIO backend: reads, writes and fdatasyncs given to the kernel
 * with io_submit from a coroutine of an AioContext, at once or batched by
 * laio_plug/laio_unplug, and reaped from an eventfd that the context
 * watches.
 *
 * Design notes
 *
 * Request lifecycle.  A request is a struct laio_req on the stack of the
 * coroutine in laio_co_submit, which stays suspended for the request's
 * whole life, so a request costs no allocation.  The coroutine prepares
 * the iocb (with the eventfd attached), appends the request to the pending
 * queue and yields.  Submission moves it from the queue to the kernel
 * (in_flight counts it there); the completion handler takes it back and
 * wakes the coroutine, which reads the result from its own request and,
 * for a short transfer, queues a continuation of the same request.
 *
 * Batching.  An unplugged request goes to the kernel at once, in its own
 * io_submit.  Batching everything queued during one loop iteration was
 * measured slower here (engine-bench, docs/BENCHMARKS.md): the coroutines
 * woken by one completion pass resubmit together, so the device queue
 * runs full, empty, full again (fio --iodepth_batch_submit=16 loses the
 * same 15%).  A caller that knows a batch is coming (the vring dataplane
 * draining its ring) brackets it with laio_plug/laio_unplug: while
 * plugged nothing is submitted, and the last unplug submits the whole
 * queue in one call.
 *
 * Flow control.  At most max_events iocbs are in the kernel at once, which
 * io_setup guarantees it can hold, so the completion ring never overflows
 * and one io_getevents array of max_events always suffices.  What does not
 * fit stays queued, in order, and the completion handler schedules the BH
 * again once it has reaped.  When io_submit takes only part of a batch,
 * the rest is offered again at once, and that call tells why it stopped.
 * -EAGAIN (the kernel is short of resources) leaves the rest queued in
 * the same way, to be retried after the next completion; only when
 * nothing at all is in flight, so that no completion would ever come, is
 * the first request failed with -EAGAIN.  Any other io_submit error
 * belongs to the first iocb offered: that request fails with it and the
 * rest are offered again, so one bad request never holds up the others.
 *
 * Short I/O.  A read or write that transferred less than asked for is
 * continued by its coroutine from where it stopped, on a private copy of
 * the iovec array advanced past the bytes done.  A read that gets 0 bytes
 * has reached end of file and returns what it has.  With O_DIRECT the
 * kernel cuts a read that crosses end of file at the file's size, so the
 * continuation starts unaligned, exactly at end of file; the kernel
 * answers 0 there before it checks alignment (iomap), so the same rule
 * holds.  A write that gets 0 bytes fails with -EIO rather than spin.
 *
 * Waking.  Every path that completes requests first detaches them from
 * every list of the backend, onto a list on its own stack, and then wakes
 * them as its very last step.  A woken coroutine may thus queue new
 * requests (the queue is consistent) or even free the backend (nothing
 * touches it afterwards).  A request on a coroutine's stack is never read
 * after its wake: the coroutine may have returned.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/uio.h>
#include <libaio.h>

#include "compiler.h"
#include "coroutine.h"
#include "laio.h"

#define LAIO_NR_OPS 3

struct laio_req {
	struct iocb iocb;            /* the kernel's; container_of finds us */
	struct coroutine *co;        /* waits in laio_wait */
	long result;                 /* bytes or -errno, valid once completed */
	bool completed;
	TAILQ_ENTRY(laio_req) link;  /* pending queue, or a list to wake */
};

TAILQ_HEAD(laio_req_list, laio_req);

/* Every field belongs to ctx's thread: the backend has no lock. */
struct laio {
	struct loop *ctx;
	io_context_t ioctx;
	int efd;                     /* completion eventfd, in every iocb */
	unsigned max_events;         /* most iocbs in the kernel at once */

	struct laio_req_list pending;  /* queued, in arrival order */
	unsigned npending;
	unsigned in_flight;          /* submitted, not reaped */
	unsigned plugged;            /* laio_plug depth */
	struct loop_bh submit_bh;

	struct iocb **batch;         /* max_events, for io_submit */
	struct io_event *events;     /* max_events, for io_getevents */

	int fault[LAIO_NR_OPS];      /* laio_set_fault: errno or 0 */
	struct laio_stats stats;     /* in_flight and pending filled on read */
};

static void laio_submit_bh(void *opaque);
static void laio_completion_cb(void *opaque);

int laio_new(struct loop *ctx, unsigned max_events, struct laio **out)
{
	struct laio *l;
	int ret;

	if (max_events == 0)
		max_events = LAIO_DEFAULT_MAX_EVENTS;
	if (max_events > INT_MAX)
		return -EINVAL;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->ctx = ctx;
	l->max_events = max_events;
	TAILQ_INIT(&l->pending);
	loop_bh_init(&l->submit_bh, ctx, laio_submit_bh, l);

	l->batch = calloc(max_events, sizeof(*l->batch));
	l->events = calloc(max_events, sizeof(*l->events));
	if (!l->batch || !l->events) {
		ret = -ENOMEM;
		goto out_free_arrays;
	}

	l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->efd < 0) {
		ret = -errno;
		goto out_free_arrays;
	}

	/* libaio returns -errno itself; errno is not set. */
	ret = io_setup((int)max_events, &l->ioctx);
	if (ret < 0)
		goto out_close_efd;

	ret = loop_set_fd_handler(ctx, l->efd, laio_completion_cb, NULL, l);
	if (ret < 0)
		goto out_destroy_ioctx;

	*out = l;
	return 0;

out_destroy_ioctx:
	io_destroy(l->ioctx);
out_close_efd:
	close(l->efd);
out_free_arrays:
	free(l->events);
	free(l->batch);
	free(l);
	return ret;
}

void laio_free(struct laio *l)
{
	if (!l)
		return;
	/* A request still in the kernel would write into freed memory and
	 * its coroutine would never wake. */
	assert(l->in_flight == 0 && TAILQ_EMPTY(&l->pending));
	loop_set_fd_handler(l->ctx, l->efd, NULL, NULL, NULL);
	loop_bh_cancel(&l->submit_bh);
	io_destroy(l->ioctx);
	close(l->efd);
	free(l->events);
	free(l->batch);
	free(l);
}

/* ---- completing ------------------------------------------------------ */

/* Note req's result and put it on wake; req is on no other list now. */
static void laio_req_done(struct laio_req_list *wake, struct laio_req *req,
			  long result)
{
	req->result = result;
	req->completed = true;
	TAILQ_INSERT_TAIL(wake, req, link);
}

/*
 * Wake every request on the list.  The caller's last step: the coroutines
 * may queue requests or free the backend.  Each request is unlinked before
 * its wake, because it lives on the stack of the coroutine it wakes.
 */
static void laio_wake_list(struct laio_req_list *wake)
{
	struct laio_req *req;

	while ((req = TAILQ_FIRST(wake))) {
		struct coroutine *co = req->co;

		TAILQ_REMOVE(wake, req, link);
		co_wake(co);
	}
}

/* Reap every completed iocb without blocking; completed requests go on wake. */
static void laio_reap(struct laio *l, struct laio_req_list *wake)
{
	struct timespec zero = { 0, 0 };
	int n;

	for (;;) {
		/* With a zero timeout libaio checks the ring in user space
		 * first, so the last, empty call costs no system call. */
		n = io_getevents(l->ioctx, 0, (long)l->max_events, l->events,
				 &zero);
		if (n == -EINTR)
			continue;   /* the eventfd was read already: go on */
		if (n <= 0)
			break;      /* 0: all reaped */
		for (int i = 0; i < n; i++) {
			struct laio_req *req =
				container_of(l->events[i].obj, struct laio_req,
					     iocb);

			/* res carries a byte count or a negative errno. */
			laio_req_done(wake, req, (long)l->events[i].res);
		}
		l->in_flight -= (unsigned)n;
	}
}

static void laio_completion_cb(void *opaque)
{
	struct laio *l = opaque;
	struct laio_req_list wake = TAILQ_HEAD_INITIALIZER(wake);
	uint64_t count;

	/* Read the counter before reaping: an iocb that completes after the
	 * last io_getevents sets it again, and the level-triggered watch calls
	 * us once more. */
	if (read(l->efd, &count, sizeof(count)) < 0) {
		/* EAGAIN: a previous pass reaped this completion already. */
	}
	laio_reap(l, &wake);

	/* Slots were freed: requests that waited for them leave from the
	 * BH (or earlier, with the next request a woken coroutine submits). */
	if (!TAILQ_EMPTY(&l->pending) && !l->plugged)
		loop_bh_schedule(&l->submit_bh);
	laio_wake_list(&wake);
}

/* ---- submitting ------------------------------------------------------ */

/*
 * io_submit as much of the queue as the kernel takes.  Requests that fail
 * here go on wake (the caller wakes them last).  Afterwards the queue is
 * empty, or something is in flight whose completion retries it.
 */
static void laio_submit_pending(struct laio *l, struct laio_req_list *wake)
{
	while (!TAILQ_EMPTY(&l->pending)) {
		struct laio_req *req;
		unsigned room = l->max_events - l->in_flight;
		unsigned n = 0;
		int ret;

		if (room == 0) {
			l->stats.queue_full++;
			break;
		}
		TAILQ_FOREACH(req, &l->pending, link) {
			if (n == room)
				break;
			l->batch[n++] = &req->iocb;
		}

		ret = io_submit(l->ioctx, (long)n, l->batch);
		l->stats.submit_calls++;
		if (ret > 0) {
			for (int i = 0; i < ret; i++) {
				req = TAILQ_FIRST(&l->pending);
				TAILQ_REMOVE(&l->pending, req, link);
			}
			l->npending -= (unsigned)ret;
			l->in_flight += (unsigned)ret;
			l->stats.submitted += (uint64_t)ret;
			if (l->in_flight > l->stats.peak_in_flight)
				l->stats.peak_in_flight = l->in_flight;
			/* If it took fewer than offered, the next call says
			 * why: -EAGAIN, or the error of the iocb it stopped
			 * at. */
			continue;
		}

		if (ret == 0)
			ret = -EAGAIN;   /* took none without saying why */
		if (ret == -EAGAIN) {
			l->stats.eagain++;
			if (l->in_flight > 0)
				break;   /* a completion will retry */
		}
		/* The first iocb is the one the kernel refused (or, with
		 * nothing in flight, the one we give up on). */
		req = TAILQ_FIRST(&l->pending);
		TAILQ_REMOVE(&l->pending, req, link);
		l->npending--;
		laio_req_done(wake, req, ret);
	}
}

static void laio_submit_bh(void *opaque)
{
	struct laio *l = opaque;
	struct laio_req_list wake = TAILQ_HEAD_INITIALIZER(wake);

	if (l->plugged)
		return;   /* laio_unplug submits */
	laio_submit_pending(l, &wake);
	laio_wake_list(&wake);
}

static void laio_enqueue(struct laio *l, struct laio_req *req)
{
	struct laio_req_list wake = TAILQ_HEAD_INITIALIZER(wake);
	struct laio_req *w;

	TAILQ_INSERT_TAIL(&l->pending, req, link);
	l->npending++;
	if (l->plugged)
		return;   /* laio_unplug submits */
	/* Unplugged: to the kernel now, behind whatever waited for a slot
	 * (see "Batching" for why not later). */
	laio_submit_pending(l, &wake);
	/* If req itself failed in io_submit, its coroutine is the one
	 * running here and finds it completed without yielding. */
	while ((w = TAILQ_FIRST(&wake))) {
		TAILQ_REMOVE(&wake, w, link);
		if (w != req)
			co_wake(w->co);
	}
}

void laio_plug(struct laio *l)
{
	l->plugged++;
}

void laio_unplug(struct laio *l)
{
	struct laio_req_list wake = TAILQ_HEAD_INITIALIZER(wake);

	assert(l->plugged > 0);
	if (l->plugged == 0 || --l->plugged > 0)
		return;
	laio_submit_pending(l, &wake);
	laio_wake_list(&wake);
}

/* ---- the coroutine side ---------------------------------------------- */

/* Queue req and yield until it completed; returns its result. */
static long coroutine_fn laio_wait(struct laio *l, struct laio_req *req)
{
	req->co = co_self();
	req->completed = false;
	laio_enqueue(l, req);
	while (!req->completed)
		co_yield();
	return req->result;
}

static void laio_prep(struct laio_req *req, int fd, enum laio_op op,
		      uint64_t offset, const struct iovec *iov, int iovcnt,
		      int efd)
{
	switch (op) {
	case LAIO_READ:
		io_prep_preadv(&req->iocb, fd, iov, iovcnt, (long long)offset);
		break;
	case LAIO_WRITE:
		io_prep_pwritev(&req->iocb, fd, iov, iovcnt,
				(long long)offset);
		break;
	case LAIO_FDSYNC:
		io_prep_fdsync(&req->iocb, fd);
		break;
	}
	io_set_eventfd(&req->iocb, efd);
}

/* Drop the first n bytes of the array at *iov (which has *iovcnt entries). */
static void laio_iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
	while (*iovcnt > 0 && n >= (*iov)->iov_len) {
		n -= (*iov)->iov_len;
		(*iov)++;
		(*iovcnt)--;
	}
	if (*iovcnt > 0) {
		(*iov)->iov_base = (char *)(*iov)->iov_base + n;
		(*iov)->iov_len -= n;
	}
}

/* Sum the lengths; -EINVAL if the arguments cannot make one request. */
static int laio_check_rw(uint64_t offset, const struct iovec *iov,
			 int iovcnt, size_t *total)
{
	size_t sum = 0;

	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (size_t)INT_MAX - sum)
			return -EINVAL;
		sum += iov[i].iov_len;
	}
	if (offset > (uint64_t)INT64_MAX - sum)
		return -EINVAL;
	*total = sum;
	return 0;
}

/* Run a read or write to its end (see "Short I/O" above). */
static int coroutine_fn laio_co_rw(struct laio *l, int fd, enum laio_op op,
				   uint64_t offset, const struct iovec *iov,
				   int iovcnt, size_t total)
{
	struct laio_req req;
	struct iovec *copy = NULL;   /* allocated at the first short transfer */
	struct iovec *view = NULL;   /* the part of copy still to do */
	const struct iovec *cur = iov;
	int cnt = iovcnt;
	size_t done = 0;
	long ret;

	for (;;) {
		laio_prep(&req, fd, op, offset + done, cur, cnt, l->efd);
		ret = laio_wait(l, &req);
		if (ret < 0)
			break;
		if (ret == 0) {
			ret = op == LAIO_READ ? (long)done : -EIO;
			break;
		}
		if ((size_t)ret > total - done) {
			ret = -EIO;   /* the kernel claims more than asked */
			break;
		}
		done += (size_t)ret;
		if (done == total) {
			ret = (long)done;
			break;
		}

		/* Short: continue on a copy, never the caller's array. */
		if (!copy) {
			copy = malloc((size_t)iovcnt * sizeof(*copy));
			if (!copy) {
				ret = -ENOMEM;
				break;
			}
			memcpy(copy, iov, (size_t)iovcnt * sizeof(*copy));
			view = copy;
		}
		laio_iov_advance(&view, &cnt, (size_t)ret);
		cur = view;
		l->stats.short_io++;
	}
	free(copy);
	return (int)ret;
}

int coroutine_fn laio_co_submit(struct laio *l, int fd, enum laio_op op,
				uint64_t offset, const struct iovec *iov,
				int iovcnt)
{
	struct laio_req req;
	size_t total;
	int ret;

	assert(in_coroutine() && co_get_ctx(co_self()) == l->ctx);

	if ((unsigned)op >= LAIO_NR_OPS)
		return -EINVAL;
	if (l->fault[op]) {
		l->stats.faults++;
		return -l->fault[op];
	}

	if (op == LAIO_FDSYNC) {
		laio_prep(&req, fd, op, 0, NULL, 0, l->efd);
		ret = (int)laio_wait(l, &req);
		return ret < 0 ? ret : 0;
	}

	ret = laio_check_rw(offset, iov, iovcnt, &total);
	if (ret < 0)
		return ret;
	if (total == 0)
		return 0;
	return laio_co_rw(l, fd, op, offset, iov, iovcnt, total);
}

/* ---- tests and statistics ------------------------------------------- */

void laio_set_fault(struct laio *l, enum laio_op op, int err)
{
	if ((unsigned)op >= LAIO_NR_OPS)
		return;
	l->fault[op] = err < 0 ? -err : err;
}

void laio_get_stats(const struct laio *l, struct laio_stats *st)
{
	*st = l->stats;
	st->in_flight = l->in_flight;
	st->pending = l->npending;
}

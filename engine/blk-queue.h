/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The barrier-aware request queue of an image.  It sits between the block
 * layer and the drivers (thread pool, Linux AIO) and decides when a request
 * may start; it knows nothing about the I/O itself.
 *
 * Threading: a queue is not thread-safe and takes no lock.  It belongs to
 * the image's AioContext and every function here is called in that
 * context's thread only.  The callbacks in struct blk_queue_ops run in that
 * thread too, synchronously from inside blk_queue_submit, blk_queue_complete
 * or blk_queue_cancel, and they may call back into the queue (see below).
 * A driver that finishes I/O in another thread bounces the completion to
 * the AioContext before calling blk_queue_complete.
 *
 * Rules.  A request with .barrier set is a barrier; the others are plain.
 *
 *  1. From the moment a barrier is submitted until it completes (or is
 *     cancelled), every request submitted after it, barrier or not, waits in
 *     the post-barrier queue instead of starting.
 *  2. A barrier starts only when every request submitted before it has
 *     completed or been cancelled, and it runs alone.
 *  3. When the barrier completes, the post-barrier queue is spliced back in
 *     order up to and including the next barrier: the plain requests before
 *     that barrier start, the barrier becomes the pending one (rule 2), and
 *     what follows it stays queued.  With no barrier queued, everything
 *     starts and the queue stops holding requests back.
 *  4. A request that has not started can be cancelled; cancelling the
 *     pending barrier before it starts splices the post-barrier queue as if
 *     it had completed.  A started request cannot be cancelled.
 *
 * Requests start in the order they were submitted (cancelled ones aside),
 * whether they waited or not.
 *
 * Re-entrancy: ops->start and ops->cancelled may call blk_queue_submit,
 * blk_queue_complete and blk_queue_cancel on the same queue; in particular
 * a driver may complete a request from inside its own start callback (an
 * immediate error, a cache hit).  The queue keeps the order of rule 3 in
 * that case: a request submitted from inside a callback queues behind the
 * ones already waiting.
 */
#ifndef VDISK_BLK_QUEUE_H
#define VDISK_BLK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct blk_queue;

/* Where a request is.  Read it for diagnostics; only the queue writes it. */
enum blk_queue_req_state {
	/* Not in a queue: never submitted, completed, or cancelled. */
	BLK_QUEUE_REQ_DONE = 0,
	/* Waiting in the post-barrier queue; can be cancelled. */
	BLK_QUEUE_REQ_QUEUED,
	/* The pending barrier, waiting for earlier ones; can be cancelled. */
	BLK_QUEUE_REQ_WAITING,
	/* Handed to the driver by ops->start, not completed yet. */
	BLK_QUEUE_REQ_RUNNING,
};

/*
 * Embedded by the caller in its own request (find the request back with
 * container_of).  Set it up with blk_queue_req_init; a zeroed struct is a
 * plain request that is not in a queue.  The caller sets .barrier before
 * submitting and leaves the rest to the queue.  Once the request is done
 * (state BLK_QUEUE_REQ_DONE) it may be submitted again.
 */
struct blk_queue_req {
	TAILQ_ENTRY(blk_queue_req) link;  /* in the post-barrier queue */
	struct blk_queue *queue;          /* the queue it is in, else NULL */
	bool barrier;                     /* set by the caller before submit */
	enum blk_queue_req_state state;
};

/*
 * How the queue talks to its owner.  Both callbacks are required.
 *
 * start: hand req to the driver.  Called exactly once per request that is
 * not cancelled, when the rules above let it go.  The driver reports the
 * result later, or from inside start, by calling blk_queue_complete.  For a
 * barrier the whole sequence the block layer builds from it (a barrier
 * write is fdatasync, write, fdatasync; a barrier flush one fdatasync)
 * happens between start and blk_queue_complete: the queue sees it as one
 * request.
 *
 * cancelled: req was removed by blk_queue_cancel before it started, and will
 * never be started.  The owner completes its request with -ECANCELED.  The
 * queue does not touch req after this returns, so the owner may free it.
 */
struct blk_queue_ops {
	void (*start)(void *opaque, struct blk_queue_req *req);
	void (*cancelled)(void *opaque, struct blk_queue_req *req);
};

/* Counters since blk_queue_init, for statistics and tests. */
struct blk_queue_stats {
	uint64_t barriers_started;
	uint64_t barriers_completed;
	uint64_t barriers_cancelled;    /* before they started */
	/*
	 * The longest the post-barrier queue was between two calls into the
	 * queue (the waiting barrier is not in it).  Requests that pass
	 * through it while a splice runs are not counted.
	 */
	size_t max_post_queued;
};

/*
 * The queue.  Embedded by its owner; its fields are private and belong to
 * the image's AioContext thread.
 */
struct blk_queue {
	const struct blk_queue_ops *ops;
	void *opaque;
	TAILQ_HEAD(, blk_queue_req) post;   /* QUEUED requests, in order */
	size_t post_len;
	/* The barrier in WAITING or RUNNING state, or NULL. */
	struct blk_queue_req *barrier;
	size_t in_flight;                   /* RUNNING requests */
	bool dispatching;                   /* the splice loop is running */
	struct blk_queue_stats stats;
};

/*
 * Initialise q, empty, calling ops with opaque.  ops is borrowed and must
 * outlive q.  An empty queue holds no resources: it needs no destroy; its
 * owner drains it (completes or cancels every request) before freeing it.
 */
void blk_queue_init(struct blk_queue *q, const struct blk_queue_ops *ops,
		    void *opaque);

/* Set req up as a plain request (or a barrier) that is not in a queue. */
void blk_queue_req_init(struct blk_queue_req *req, bool barrier);

/*
 * Submit req (state BLK_QUEUE_REQ_DONE, .barrier set by the caller).  It
 * starts at once (ops->start is called before this returns) unless the rules
 * above hold it back.  req is borrowed until it completes or is cancelled
 * and must not move meanwhile.
 */
void blk_queue_submit(struct blk_queue *q, struct blk_queue_req *req);

/*
 * The driver finished req, which ops->start handed to it.  This may start
 * queued requests (ops->start is called from inside).  req must be valid
 * during the call; the queue does not touch it afterwards.
 */
void blk_queue_complete(struct blk_queue *q, struct blk_queue_req *req);

/*
 * Cancel req.  Returns 0 if it had not started: it is removed, ops->cancelled
 * is called before this returns and start never will be.  If req was the
 * waiting barrier, the requests behind it are spliced right after
 * ops->cancelled returns, so none of them starts before it.  Returns
 * -EBUSY if it is running (the driver will complete it), -EINVAL if it is
 * not in q (done, never submitted, or in another queue).
 */
int blk_queue_cancel(struct blk_queue *q, struct blk_queue_req *req);

/* Requests started and not completed yet (a running barrier included). */
size_t blk_queue_in_flight(const struct blk_queue *q);

/* Requests not started yet: the post-barrier queue plus a waiting barrier. */
size_t blk_queue_queued(const struct blk_queue *q);

/* True from a barrier's submission until it completes or is cancelled. */
bool blk_queue_barrier_pending(const struct blk_queue *q);

/* Copy q's counters to *stats. */
void blk_queue_get_stats(const struct blk_queue *q,
			 struct blk_queue_stats *stats);

#endif /* VDISK_BLK_QUEUE_H */

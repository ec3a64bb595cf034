/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The barrier-aware request queue: holds requests back so that a barrier
 * (a FUA write or a flush) runs alone, after everything submitted before it
 * and before everything submitted after it.  Both drivers are fed through
 * it, so they honour barriers the same way.  See blk-queue.h for the rules.
 *
 * Design notes
 *
 * Data structures.  One FIFO, post, of requests that have not started, in
 * submission order; one pointer, barrier, to the pending barrier; a count
 * of running requests, in_flight.  Every request a caller submits is
 * appended to post and the splice loop (blk_queue_dispatch) takes requests
 * from its head for as long as the rules allow:
 *  - a plain request at the head starts when no barrier is pending;
 *  - a barrier at the head becomes the pending barrier (WAITING) and leaves
 *    post; the loop then stops taking from post until it is gone;
 *  - the waiting barrier starts (RUNNING) once in_flight is 0.
 * Completing or cancelling the pending barrier clears the pointer and runs
 * the loop again, which is the splice of the seed design: it starts the
 * plain requests up to the next barrier, makes that barrier pending, and
 * stops.  Since only the loop starts requests and it takes them in order,
 * requests start in submission order.
 *
 * States.  DONE (not in a queue) -> QUEUED (in post) -> RUNNING for a plain
 * request; a barrier goes QUEUED -> WAITING -> RUNNING.  RUNNING -> DONE on
 * blk_queue_complete; QUEUED or WAITING -> DONE on blk_queue_cancel.
 *
 * Invariants, whenever no call into the queue is on the stack:
 *  - barrier == NULL implies post is empty (nothing is held back without a
 *    reason);
 *  - a WAITING barrier implies in_flight > 0 (else it would have started);
 *  - a RUNNING barrier implies in_flight == 1 (it runs alone);
 *  - every request in post was submitted after the pending barrier;
 *  - post_len is the length of post; req->queue is set exactly while req is
 *    QUEUED, WAITING or RUNNING.
 * While the loop runs (dispatching), the first invariant does not hold: a
 * completed barrier's followers are in post with barrier == NULL until the
 * loop reaches them.  Nor does it while ops->cancelled runs for a pending
 * barrier, which is called before the splice.
 *
 * Re-entrancy.  ops->start may complete the request, submit more or cancel
 * some before it returns.  A nested call changes the fields and then finds
 * dispatching set, so it leaves the starting to the loop already on the
 * stack, which re-reads the fields on every turn.  So a request submitted
 * from inside a callback is appended behind the ones waiting and cannot
 * overtake them, and the stack does not grow with the number of requests
 * started.  A call from inside ops->cancelled for a pending barrier finds
 * no loop on the stack and splices itself, still from the head of post, so
 * the order holds there too.  The queue never touches a request after
 * handing it to a callback, because the owner may free it there.
 *
 * Costs.  Submit is O(1) plus the starts it triggers; complete and cancel
 * are O(1) plus a splice, which is O(k) for the k requests it starts (at
 * most the plain ones before the next barrier).  No allocation.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <assert.h>
#include <errno.h>

#include "blk-queue.h"

void blk_queue_init(struct blk_queue *q, const struct blk_queue_ops *ops,
		    void *opaque)
{
	assert(ops && ops->start && ops->cancelled);
	*q = (struct blk_queue){
		.ops = ops,
		.opaque = opaque,
	};
	TAILQ_INIT(&q->post);
}

void blk_queue_req_init(struct blk_queue_req *req, bool barrier)
{
	*req = (struct blk_queue_req){ .barrier = barrier };
}

static void blk_queue_start(struct blk_queue *q, struct blk_queue_req *req)
{
	req->state = BLK_QUEUE_REQ_RUNNING;
	q->in_flight++;
	if (req->barrier)
		q->stats.barriers_started++;
	/* May complete req, which the owner may then free: do not touch it. */
	q->ops->start(q->opaque, req);
}

/* Start whatever the rules let start, in order.  See "Re-entrancy". */
static void blk_queue_dispatch(struct blk_queue *q)
{
	struct blk_queue_req *req;

	if (q->dispatching)
		return;
	q->dispatching = true;
	for (;;) {
		req = q->barrier;
		if (req) {
			if (req->state != BLK_QUEUE_REQ_WAITING || q->in_flight)
				break;
			blk_queue_start(q, req);
			continue;
		}
		req = TAILQ_FIRST(&q->post);
		if (!req)
			break;
		TAILQ_REMOVE(&q->post, req, link);
		q->post_len--;
		if (req->barrier) {
			req->state = BLK_QUEUE_REQ_WAITING;
			q->barrier = req;
		} else {
			blk_queue_start(q, req);
		}
	}
	q->dispatching = false;

	/* Sampled at rest, so requests merely passing through do not count. */
	if (q->post_len > q->stats.max_post_queued)
		q->stats.max_post_queued = q->post_len;
}

void blk_queue_submit(struct blk_queue *q, struct blk_queue_req *req)
{
	assert(req->state == BLK_QUEUE_REQ_DONE && !req->queue);
	req->queue = q;
	req->state = BLK_QUEUE_REQ_QUEUED;
	TAILQ_INSERT_TAIL(&q->post, req, link);
	q->post_len++;
	blk_queue_dispatch(q);
}

void blk_queue_complete(struct blk_queue *q, struct blk_queue_req *req)
{
	assert(req->queue == q && req->state == BLK_QUEUE_REQ_RUNNING);
	assert(q->in_flight > 0);
	req->state = BLK_QUEUE_REQ_DONE;
	req->queue = NULL;
	q->in_flight--;
	if (req == q->barrier) {
		q->barrier = NULL;
		q->stats.barriers_completed++;
	}
	/* A plain completion can let the waiting barrier go; a barrier's
	 * completion splices the post-barrier queue. */
	blk_queue_dispatch(q);
}

int blk_queue_cancel(struct blk_queue *q, struct blk_queue_req *req)
{
	bool was_pending = false;

	if (req->queue != q)
		return -EINVAL;
	switch (req->state) {
	case BLK_QUEUE_REQ_QUEUED:
		TAILQ_REMOVE(&q->post, req, link);
		q->post_len--;
		break;
	case BLK_QUEUE_REQ_WAITING:
		assert(req == q->barrier);
		q->barrier = NULL;
		was_pending = true;
		break;
	case BLK_QUEUE_REQ_RUNNING:
		return -EBUSY;
	case BLK_QUEUE_REQ_DONE:
	default:
		/* req->queue is NULL when DONE: cannot get here. */
		return -EINVAL;
	}
	req->state = BLK_QUEUE_REQ_DONE;
	req->queue = NULL;
	if (req->barrier)
		q->stats.barriers_cancelled++;

	/*
	 * Tell the owner first, so that it learns of the cancellation before
	 * any request behind the barrier starts.  Then those requests no
	 * longer wait for it: splice them (a call from inside the callback
	 * may already have).  Removing a queued request frees nothing: it is
	 * behind the pending barrier, which still holds the rest back.
	 */
	q->ops->cancelled(q->opaque, req);
	if (was_pending)
		blk_queue_dispatch(q);
	return 0;
}

size_t blk_queue_in_flight(const struct blk_queue *q)
{
	return q->in_flight;
}

size_t blk_queue_queued(const struct blk_queue *q)
{
	bool waiting = q->barrier && q->barrier->state == BLK_QUEUE_REQ_WAITING;

	return q->post_len + (waiting ? 1 : 0);
}

bool blk_queue_barrier_pending(const struct blk_queue *q)
{
	return q->barrier != NULL;
}

void blk_queue_get_stats(const struct blk_queue *q,
			 struct blk_queue_stats *stats)
{
	*stats = q->stats;
}

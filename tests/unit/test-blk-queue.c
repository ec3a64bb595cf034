/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for the barrier-aware request queue.
 *
 * The queue is driven by a fake driver whose requests complete only when the
 * test says so, in any order the test picks.  The fixed scenarios log every
 * start ("R1 ") and every cancellation ("-R1 ") and compare the whole log.
 * Then random schedules of submit / complete / cancel, with callbacks that
 * re-enter the queue, are checked step by step against an independent
 * model of the rules.  The random run prints its base seed; set
 * VDISK_TEST_SEED to replay.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "compiler.h"
#include "blk-queue.h"

/* ---- fake driver for the fixed scenarios ---------------------------- */

struct treq {
	struct blk_queue_req qr;
	const char *name;
	int ret;                        /* 1 = not ended, else the result */
	unsigned ends;                  /* completions + cancellations */
	bool sync_complete;             /* the driver completes it in start */
	struct treq *submit_on_start;   /* start submits this one */
	struct treq *cancel_on_start;   /* start cancels this one ... */
	int cancel_ret;                 /* ... and stores the result here */
};

struct fake {
	struct blk_queue q;
	char log[512];
};

static void fake_log(struct fake *f, const char *prefix, const char *name)
{
	size_t len = strlen(f->log);

	snprintf(f->log + len, sizeof(f->log) - len, "%s%s ", prefix, name);
}

static void fake_end(struct treq *r, int ret)
{
	assert_int_equal(r->ret, 1);
	r->ret = ret;
	r->ends++;
}

static void fake_start(void *opaque, struct blk_queue_req *qr)
{
	struct fake *f = opaque;
	struct treq *r = container_of(qr, struct treq, qr);

	assert_int_equal(qr->state, BLK_QUEUE_REQ_RUNNING);
	fake_log(f, "", r->name);
	if (r->submit_on_start)
		blk_queue_submit(&f->q, &r->submit_on_start->qr);
	if (r->cancel_on_start) {
		struct treq *victim = r->cancel_on_start;

		r->cancel_ret = blk_queue_cancel(&f->q, &victim->qr);
	}
	if (r->sync_complete) {
		fake_end(r, 0);
		blk_queue_complete(&f->q, qr);
	}
}

static void fake_cancelled(void *opaque, struct blk_queue_req *qr)
{
	struct fake *f = opaque;
	struct treq *r = container_of(qr, struct treq, qr);

	assert_int_equal(qr->state, BLK_QUEUE_REQ_DONE);
	fake_log(f, "-", r->name);
	fake_end(r, -ECANCELED);
}

static const struct blk_queue_ops fake_ops = {
	.start = fake_start,
	.cancelled = fake_cancelled,
};

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	blk_queue_init(&f->q, &fake_ops, f);
}

static void tr_init(struct treq *r, const char *name, bool barrier)
{
	memset(r, 0, sizeof(*r));
	blk_queue_req_init(&r->qr, barrier);
	r->name = name;
	r->ret = 1;
}

static void submit(struct fake *f, struct treq *r)
{
	blk_queue_submit(&f->q, &r->qr);
}

/* The driver finishes r, which must be running. */
static void complete(struct fake *f, struct treq *r)
{
	assert_int_equal(r->qr.state, BLK_QUEUE_REQ_RUNNING);
	fake_end(r, 0);
	blk_queue_complete(&f->q, &r->qr);
}

/* The whole log so far and the counters. */
static void expect(struct fake *f, const char *log, size_t in_flight,
		   size_t queued, bool barrier_pending)
{
	assert_string_equal(f->log, log);
	assert_int_equal(blk_queue_in_flight(&f->q), in_flight);
	assert_int_equal(blk_queue_queued(&f->q), queued);
	assert_int_equal(blk_queue_barrier_pending(&f->q), barrier_pending);
}

static void expect_stats(struct fake *f, uint64_t started, uint64_t completed,
			 uint64_t cancelled, size_t max_post)
{
	struct blk_queue_stats st;

	blk_queue_get_stats(&f->q, &st);
	assert_int_equal(st.barriers_started, started);
	assert_int_equal(st.barriers_completed, completed);
	assert_int_equal(st.barriers_cancelled, cancelled);
	assert_int_equal(st.max_post_queued, max_post);
}

/* ---- fixed scenarios ------------------------------------------------- */

static void test_plain_requests_start_at_once(void **state)
{
	struct fake f;
	struct treq r1, r2, r3;

	fake_init(&f);
	expect(&f, "", 0, 0, false);
	tr_init(&r1, "R1", false);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	submit(&f, &r1);
	submit(&f, &r2);
	submit(&f, &r3);
	expect(&f, "R1 R2 R3 ", 3, 0, false);

	complete(&f, &r2);
	complete(&f, &r1);
	complete(&f, &r3);
	expect(&f, "R1 R2 R3 ", 0, 0, false);
	assert_int_equal(r1.qr.state, BLK_QUEUE_REQ_DONE);
	expect_stats(&f, 0, 0, 0, 0);

	/* A done request may be submitted again. */
	submit(&f, &r1);
	expect(&f, "R1 R2 R3 R1 ", 1, 0, false);
}

static void test_barrier_with_nothing_in_flight_starts(void **state)
{
	struct fake f;
	struct treq b1;

	fake_init(&f);
	tr_init(&b1, "B1", true);
	submit(&f, &b1);
	expect(&f, "B1 ", 1, 0, true);
	assert_int_equal(b1.qr.state, BLK_QUEUE_REQ_RUNNING);
	expect_stats(&f, 1, 0, 0, 0);

	complete(&f, &b1);
	expect(&f, "B1 ", 0, 0, false);
	expect_stats(&f, 1, 1, 0, 0);
	assert_int_equal(b1.ret, 0);
}

static void test_barrier_waits_for_all_earlier_requests(void **state)
{
	struct fake f;
	struct treq r1, r2, r3, b1;

	fake_init(&f);
	tr_init(&r1, "R1", false);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	tr_init(&b1, "B1", true);
	submit(&f, &r1);
	submit(&f, &r2);
	submit(&f, &r3);
	submit(&f, &b1);
	/* B1 waits (it is the one queued request); it is not in the post
	 * queue, which stays empty. */
	expect(&f, "R1 R2 R3 ", 3, 1, true);
	assert_int_equal(b1.qr.state, BLK_QUEUE_REQ_WAITING);

	/* Completed in reverse order: B1 starts only after the last one. */
	complete(&f, &r3);
	expect(&f, "R1 R2 R3 ", 2, 1, true);
	complete(&f, &r2);
	expect(&f, "R1 R2 R3 ", 1, 1, true);
	complete(&f, &r1);
	expect(&f, "R1 R2 R3 B1 ", 1, 0, true);
	expect_stats(&f, 1, 0, 0, 0);

	complete(&f, &b1);
	expect(&f, "R1 R2 R3 B1 ", 0, 0, false);
	expect_stats(&f, 1, 1, 0, 0);
}

static void test_later_requests_wait_for_barrier(void **state)
{
	struct fake f;
	struct treq r1, b1, r2, r3, r4;

	fake_init(&f);
	tr_init(&r1, "R1", false);
	tr_init(&b1, "B1", true);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	submit(&f, &r1);
	submit(&f, &b1);
	submit(&f, &r2);
	submit(&f, &r3);
	expect(&f, "R1 ", 1, 3, true);
	assert_int_equal(r2.qr.state, BLK_QUEUE_REQ_QUEUED);
	expect_stats(&f, 0, 0, 0, 2);

	complete(&f, &r1);
	/* B1 runs alone; R2 and R3 still wait. */
	expect(&f, "R1 B1 ", 1, 2, true);

	complete(&f, &b1);
	expect(&f, "R1 B1 R2 R3 ", 2, 0, false);
	expect_stats(&f, 1, 1, 0, 2);

	/* Normal operation resumed: a new request starts at once. */
	tr_init(&r4, "R4", false);
	submit(&f, &r4);
	expect(&f, "R1 B1 R2 R3 R4 ", 3, 0, false);
}

static void test_splice_stops_at_next_barrier(void **state)
{
	struct fake f;
	struct treq r1, b1, r2, r3, b2, r4;

	fake_init(&f);
	tr_init(&r1, "R1", false);
	tr_init(&b1, "B1", true);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	tr_init(&b2, "B2", true);
	tr_init(&r4, "R4", false);
	submit(&f, &r1);
	submit(&f, &b1);
	submit(&f, &r2);
	submit(&f, &r3);
	submit(&f, &b2);
	submit(&f, &r4);
	expect(&f, "R1 ", 1, 5, true);
	expect_stats(&f, 0, 0, 0, 4);

	complete(&f, &r1);
	expect(&f, "R1 B1 ", 1, 4, true);

	/* The splice starts R2 and R3, makes B2 wait, and keeps R4. */
	complete(&f, &b1);
	expect(&f, "R1 B1 R2 R3 ", 2, 2, true);
	assert_int_equal(b2.qr.state, BLK_QUEUE_REQ_WAITING);
	assert_int_equal(r4.qr.state, BLK_QUEUE_REQ_QUEUED);

	complete(&f, &r2);
	expect(&f, "R1 B1 R2 R3 ", 1, 2, true);
	complete(&f, &r3);
	expect(&f, "R1 B1 R2 R3 B2 ", 1, 1, true);
	complete(&f, &b2);
	expect(&f, "R1 B1 R2 R3 B2 R4 ", 1, 0, false);
	complete(&f, &r4);
	expect(&f, "R1 B1 R2 R3 B2 R4 ", 0, 0, false);
	expect_stats(&f, 2, 2, 0, 4);
}

static void test_back_to_back_barriers(void **state)
{
	struct fake f;
	struct treq b1, b2, b3, r1;

	fake_init(&f);
	tr_init(&b1, "B1", true);
	tr_init(&b2, "B2", true);
	tr_init(&b3, "B3", true);
	tr_init(&r1, "R1", false);
	submit(&f, &b1);
	submit(&f, &b2);
	submit(&f, &b3);
	submit(&f, &r1);
	expect(&f, "B1 ", 1, 3, true);

	/* Nothing else is in flight: each next barrier starts at once. */
	complete(&f, &b1);
	expect(&f, "B1 B2 ", 1, 2, true);
	complete(&f, &b2);
	expect(&f, "B1 B2 B3 ", 1, 1, true);
	complete(&f, &b3);
	expect(&f, "B1 B2 B3 R1 ", 1, 0, false);
	expect_stats(&f, 3, 3, 0, 3);
}

static void test_cancel_queued_requests(void **state)
{
	struct fake f;
	struct treq r1, b1, r2, b2, r3;

	fake_init(&f);
	tr_init(&r1, "R1", false);
	tr_init(&b1, "B1", true);
	tr_init(&r2, "R2", false);
	tr_init(&b2, "B2", true);
	tr_init(&r3, "R3", false);
	submit(&f, &r1);
	submit(&f, &b1);
	submit(&f, &r2);
	submit(&f, &b2);
	submit(&f, &r3);
	expect(&f, "R1 ", 1, 4, true);

	assert_int_equal(blk_queue_cancel(&f.q, &r2.qr), 0);
	expect(&f, "R1 -R2 ", 1, 3, true);
	assert_int_equal(r2.ret, -ECANCELED);
	assert_int_equal(r2.qr.state, BLK_QUEUE_REQ_DONE);
	/* Once is enough. */
	assert_int_equal(blk_queue_cancel(&f.q, &r2.qr), -EINVAL);

	/* A queued barrier that is cancelled no longer splits the queue. */
	assert_int_equal(blk_queue_cancel(&f.q, &b2.qr), 0);
	expect(&f, "R1 -R2 -B2 ", 1, 2, true);
	expect_stats(&f, 0, 0, 1, 3);

	complete(&f, &r1);
	complete(&f, &b1);
	expect(&f, "R1 -R2 -B2 B1 R3 ", 1, 0, false);
	complete(&f, &r3);
	expect(&f, "R1 -R2 -B2 B1 R3 ", 0, 0, false);
	assert_int_equal(r2.ends, 1);
	assert_int_equal(b2.ends, 1);
	assert_int_equal(r2.ret, -ECANCELED);
	assert_int_equal(b2.ret, -ECANCELED);
	expect_stats(&f, 1, 1, 1, 3);
}

static void test_cancel_running_is_busy(void **state)
{
	struct fake f;
	struct treq r1, b1;

	fake_init(&f);
	tr_init(&r1, "R1", false);
	tr_init(&b1, "B1", true);
	submit(&f, &r1);
	assert_int_equal(blk_queue_cancel(&f.q, &r1.qr), -EBUSY);
	complete(&f, &r1);
	submit(&f, &b1);
	assert_int_equal(blk_queue_cancel(&f.q, &b1.qr), -EBUSY);
	expect(&f, "R1 B1 ", 1, 0, true);
	assert_int_equal(b1.qr.state, BLK_QUEUE_REQ_RUNNING);
	complete(&f, &b1);
	assert_int_equal(r1.ends, 1);
	assert_int_equal(b1.ends, 1);
	expect_stats(&f, 1, 1, 0, 0);
}

static void test_cancel_not_in_queue_is_invalid(void **state)
{
	struct fake f, g;
	struct treq fresh, done, other;

	fake_init(&f);
	fake_init(&g);
	tr_init(&fresh, "F", false);
	tr_init(&done, "D", false);
	tr_init(&other, "O", true);

	assert_int_equal(blk_queue_cancel(&f.q, &fresh.qr), -EINVAL);

	submit(&f, &done);
	complete(&f, &done);
	assert_int_equal(blk_queue_cancel(&f.q, &done.qr), -EINVAL);

	/* In g, not in f, whatever its state. */
	submit(&g, &other);
	assert_int_equal(blk_queue_cancel(&f.q, &other.qr), -EINVAL);
	complete(&g, &other);
	expect(&f, "D ", 0, 0, false);
	expect(&g, "O ", 0, 0, false);
}

static void test_cancel_waiting_barrier_releases_queue(void **state)
{
	struct fake f;
	struct treq r1, b1, r2, r3, b2, r4, b3, r5, r6;

	fake_init(&f);
	tr_init(&r1, "R1", false);
	tr_init(&b1, "B1", true);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	tr_init(&b2, "B2", true);
	tr_init(&r4, "R4", false);
	tr_init(&b3, "B3", true);
	tr_init(&r5, "R5", false);
	tr_init(&r6, "R6", false);
	submit(&f, &r1);
	submit(&f, &b1);
	submit(&f, &r2);
	submit(&f, &r3);
	submit(&f, &b2);
	submit(&f, &r4);
	expect(&f, "R1 ", 1, 5, true);

	/* B1 waits for R1.  Cancelling it splices as if it had completed:
	 * the owner hears first, then R2 and R3 start (while R1 still
	 * runs) and B2 becomes the waiting barrier. */
	assert_int_equal(blk_queue_cancel(&f.q, &b1.qr), 0);
	expect(&f, "R1 -B1 R2 R3 ", 3, 2, true);
	assert_int_equal(b1.ret, -ECANCELED);
	assert_int_equal(b2.qr.state, BLK_QUEUE_REQ_WAITING);
	expect_stats(&f, 0, 0, 1, 4);

	/* B2 still waits for R1 as well as R2 and R3. */
	complete(&f, &r2);
	complete(&f, &r3);
	expect(&f, "R1 -B1 R2 R3 ", 1, 2, true);
	complete(&f, &r1);
	expect(&f, "R1 -B1 R2 R3 B2 ", 1, 1, true);

	complete(&f, &b2);
	expect(&f, "R1 -B1 R2 R3 B2 R4 ", 1, 0, false);

	/* Cancelling the only pending barrier resumes normal operation. */
	submit(&f, &b3);        /* waits for R4 */
	submit(&f, &r5);
	expect(&f, "R1 -B1 R2 R3 B2 R4 ", 1, 2, true);
	assert_int_equal(blk_queue_cancel(&f.q, &b3.qr), 0);
	expect(&f, "R1 -B1 R2 R3 B2 R4 -B3 R5 ", 2, 0, false);
	submit(&f, &r6);
	expect(&f, "R1 -B1 R2 R3 B2 R4 -B3 R5 R6 ", 3, 0, false);
	expect_stats(&f, 1, 1, 2, 4);
}

/*
 * A driver that completes inside start (an immediate error): the splice
 * that this triggers from inside the splice must not reorder anything.
 *
 * R1 runs; B1 waits; R2 (sync), R3, B2 (sync), R4 (sync), R5 are queued.
 * Completing R1 starts B1, which completes inside its start; the splice
 * loop then starts R2, which completes inside its start, then R3, which
 * stays running, so B2 waits for R3 and R4, R5 stay queued.
 */
static void test_sync_completion_in_start_keeps_order(void **state)
{
	struct fake f;
	struct treq r1, b1, r2, r3, b2, r4, r5;
	struct treq s[5];
	static const char *const names[] = { "S0", "S1", "S2", "S3", "S4" };

	fake_init(&f);
	tr_init(&r1, "R1", false);
	tr_init(&b1, "B1", true);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	tr_init(&b2, "B2", true);
	tr_init(&r4, "R4", false);
	tr_init(&r5, "R5", false);
	b1.sync_complete = true;
	r2.sync_complete = true;
	b2.sync_complete = true;
	r4.sync_complete = true;
	submit(&f, &r1);
	submit(&f, &b1);
	submit(&f, &r2);
	submit(&f, &r3);
	submit(&f, &b2);
	submit(&f, &r4);
	submit(&f, &r5);
	expect(&f, "R1 ", 1, 6, true);

	complete(&f, &r1);
	expect(&f, "R1 B1 R2 R3 ", 1, 3, true);
	assert_int_equal(b1.ends, 1);
	assert_int_equal(r2.ends, 1);
	assert_int_equal(b2.qr.state, BLK_QUEUE_REQ_WAITING);

	/* R3 done: B2 starts and completes inside start, so R4 starts (and
	 * completes) and R5 starts, all from this one call. */
	complete(&f, &r3);
	expect(&f, "R1 B1 R2 R3 B2 R4 R5 ", 1, 0, false);
	complete(&f, &r5);
	expect(&f, "R1 B1 R2 R3 B2 R4 R5 ", 0, 0, false);
	expect_stats(&f, 2, 2, 0, 5);

	/* Everything synchronous: each request completes before the next
	 * one is submitted, barriers included. */
	f.log[0] = '\0';
	for (int i = 0; i < 5; i++) {
		tr_init(&s[i], names[i], i % 2 == 1);
		s[i].sync_complete = true;
		submit(&f, &s[i]);
	}
	expect(&f, "S0 S1 S2 S3 S4 ", 0, 0, false);
	expect_stats(&f, 4, 4, 0, 5);
}

/*
 * A start callback that submits or cancels: the new request queues behind
 * the ones already waiting, even while the splice is half done.
 */
static void test_reentrant_submit_and_cancel_in_start(void **state)
{
	struct fake f;
	struct treq b1, r2, r3, b2, r4, n1, n2;

	fake_init(&f);
	tr_init(&b1, "B1", true);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	tr_init(&b2, "B2", true);
	tr_init(&r4, "R4", false);
	tr_init(&n1, "N1", false);
	tr_init(&n2, "N2", true);
	/* R2's start submits N1 while R3 is still to be spliced; R3's start
	 * cancels R4, which is behind B2; B2's start submits barrier N2. */
	r2.submit_on_start = &n1;
	r3.cancel_on_start = &r4;
	r3.cancel_ret = 1;
	b2.submit_on_start = &n2;
	submit(&f, &b1);
	submit(&f, &r2);
	submit(&f, &r3);
	submit(&f, &b2);
	submit(&f, &r4);
	expect(&f, "B1 ", 1, 4, true);

	complete(&f, &b1);
	/* N1 went behind R4, so behind B2: it must not start yet. */
	expect(&f, "B1 R2 R3 -R4 ", 2, 2, true);
	assert_int_equal(r3.cancel_ret, 0);
	assert_int_equal(n1.qr.state, BLK_QUEUE_REQ_QUEUED);

	complete(&f, &r3);
	complete(&f, &r2);
	expect(&f, "B1 R2 R3 -R4 B2 ", 1, 2, true);
	complete(&f, &b2);
	/* N1 starts; N2 (submitted from inside B2's start) waits for it. */
	expect(&f, "B1 R2 R3 -R4 B2 N1 ", 1, 1, true);
	complete(&f, &n1);
	expect(&f, "B1 R2 R3 -R4 B2 N1 N2 ", 1, 0, true);
	complete(&f, &n2);
	expect(&f, "B1 R2 R3 -R4 B2 N1 N2 ", 0, 0, false);
	expect_stats(&f, 3, 3, 0, 4);
}

/*
 * A start that the splice called cancels a barrier that the splice has not
 * reached yet: the splice goes on past it, as if it had never been there.
 * (A waiting barrier cannot be cancelled from inside a start: while one
 * waits, the queue starts nothing but it.)
 */
static void test_cancel_queued_barrier_from_start(void **state)
{
	struct fake f;
	struct treq b1, r1, b2, r2, r3;

	fake_init(&f);
	tr_init(&b1, "B1", true);
	tr_init(&r1, "R1", false);
	tr_init(&b2, "B2", true);
	tr_init(&r2, "R2", false);
	tr_init(&r3, "R3", false);
	r1.cancel_on_start = &b2;
	r1.cancel_ret = 1;
	submit(&f, &b1);
	submit(&f, &r1);
	submit(&f, &b2);
	submit(&f, &r2);
	submit(&f, &r3);
	expect(&f, "B1 ", 1, 4, true);

	/* Completing B1 starts R1 while B2 is still in the post queue. */
	complete(&f, &b1);
	expect(&f, "B1 R1 -B2 R2 R3 ", 3, 0, false);
	assert_int_equal(r1.cancel_ret, 0);
	assert_int_equal(b2.ret, -ECANCELED);
	expect_stats(&f, 1, 1, 1, 4);

	complete(&f, &r3);
	complete(&f, &r1);
	complete(&f, &r2);
	expect(&f, "B1 R1 -B2 R2 R3 ", 0, 0, false);
	assert_int_equal(b2.ends, 1);
}

/* ---- random schedules against a model --------------------------------- */

#define RANDOM_RUNS       200
#define RANDOM_STEPS      2000
#define RANDOM_CAP        4096   /* requests per run, nested ones included */
#define NONE              SIZE_MAX

enum mstate { M_NEW, M_UNSTARTED, M_RUNNING, M_COMPLETED, M_CANCELLED };

struct mreq {
	struct blk_queue_req qr;
	size_t seq;             /* submission order = index in m->reqs */
	bool barrier;
	enum mstate st;
	unsigned ends;
	size_t idx;             /* position in running[] or unstarted[] */
};

/* A set of requests with O(1) insert, remove and random pick. */
struct mset {
	struct mreq **v;
	size_t n;
};

struct model {
	struct blk_queue q;
	uint64_t seed;
	uint64_t rng;
	unsigned step;

	struct mreq *reqs;
	size_t n;                       /* submitted so far */
	struct mset running, unstarted;
	size_t *barriers;               /* seqs of all barriers, in order */
	size_t n_barriers;

	/* Lazy cursors; what they skip never comes back. */
	size_t low_open;                /* lowest seq not ended */
	size_t open_barrier;            /* index in barriers[] of the first
					 * barrier not ended */
	size_t first_unstarted;         /* lowest seq still unstarted */

	size_t last_started;            /* seq, or NONE */
	size_t running_barriers;
	unsigned in_start;              /* start callbacks on the stack */
	struct mreq *cancel_target;     /* the blk_queue_cancel in progress */
	unsigned cancel_calls;

	uint64_t barriers_started, barriers_completed, barriers_cancelled;
	size_t max_post;
};

#define CHECK(m, cond) \
	do { \
		if (!(cond)) \
			check_failed((m), #cond, __LINE__); \
	} while (0)

static void check_failed(const struct model *m, const char *what, int line)
{
	print_error("line %d: %s fails (run seed %" PRIu64 ", step %u; set"
		    " VDISK_TEST_SEED=%" PRIu64 " to replay it first)\n",
		    line, what, m->seed, m->step, m->seed);
	fail();
}

static uint64_t rng_next(struct model *m)
{
	/* splitmix64 */
	uint64_t z = (m->rng += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* True with probability 1/n. */
static bool one_in(struct model *m, unsigned n)
{
	return rng_next(m) % n == 0;
}

static void mset_add(struct mset *s, struct mreq *r)
{
	r->idx = s->n;
	s->v[s->n++] = r;
}

static void mset_del(struct mset *s, struct mreq *r)
{
	struct mreq *last = s->v[--s->n];

	s->v[r->idx] = last;
	last->idx = r->idx;
}

static struct mreq *mset_pick(struct model *m, struct mset *s)
{
	return s->n ? s->v[rng_next(m) % s->n] : NULL;
}

static bool ended(const struct mreq *r)
{
	return r->st == M_COMPLETED || r->st == M_CANCELLED;
}

static size_t low_open(struct model *m)
{
	while (m->low_open < m->n && ended(&m->reqs[m->low_open]))
		m->low_open++;
	return m->low_open;
}

/* Seq of the first barrier not ended, or NONE. */
static size_t open_barrier(struct model *m)
{
	while (m->open_barrier < m->n_barriers &&
	       ended(&m->reqs[m->barriers[m->open_barrier]]))
		m->open_barrier++;
	return m->open_barrier < m->n_barriers ?
	       m->barriers[m->open_barrier] : NONE;
}

static size_t first_unstarted(struct model *m)
{
	while (m->first_unstarted < m->n &&
	       m->reqs[m->first_unstarted].st != M_UNSTARTED)
		m->first_unstarted++;
	return m->first_unstarted;
}

static void model_submit(struct model *m, bool barrier);
static void model_complete(struct model *m, struct mreq *r);
static int model_cancel(struct model *m, struct mreq *r);

/* Checks that need the queue at rest: no call into it on the stack. */
static void model_check_rest(struct model *m)
{
	struct blk_queue_stats st;
	size_t fu = first_unstarted(m);
	size_t ob = open_barrier(m);
	bool waiting = ob != NONE && m->reqs[ob].st == M_UNSTARTED;
	size_t post;

	CHECK(m, blk_queue_in_flight(&m->q) == m->running.n);
	CHECK(m, blk_queue_queued(&m->q) == m->unstarted.n);
	CHECK(m, blk_queue_barrier_pending(&m->q) == (ob != NONE));
	if (waiting)
		CHECK(m, m->reqs[ob].qr.state == BLK_QUEUE_REQ_WAITING);

	/* Nothing is held back without a reason: the first request not
	 * started waits for an earlier barrier, or is a barrier that waits
	 * for earlier requests.  (Everything after it then waits too.) */
	if (fu < m->n) {
		bool behind_barrier = ob != NONE && ob < fu;
		bool barrier_waits = m->reqs[fu].barrier && low_open(m) < fu;

		CHECK(m, behind_barrier || barrier_waits);
	}

	post = m->unstarted.n - (waiting ? 1 : 0);
	m->max_post = VDISK_MAX(m->max_post, post);
	blk_queue_get_stats(&m->q, &st);
	CHECK(m, st.max_post_queued == m->max_post);
	CHECK(m, st.barriers_started == m->barriers_started);
	CHECK(m, st.barriers_completed == m->barriers_completed);
	CHECK(m, st.barriers_cancelled == m->barriers_cancelled);
}

static void model_start(void *opaque, struct blk_queue_req *qr)
{
	struct model *m = opaque;
	struct mreq *r = container_of(qr, struct mreq, qr);
	size_t ob;

	/* (5) started at most once, never after a cancellation. */
	CHECK(m, r->st == M_UNSTARTED);
	CHECK(m, qr->state == BLK_QUEUE_REQ_RUNNING);
	/* (1) a barrier starts after everything before it has ended. */
	if (r->barrier)
		CHECK(m, low_open(m) == r->seq);
	/* (2) nothing starts before an earlier barrier has ended. */
	ob = open_barrier(m);
	CHECK(m, ob == NONE || ob >= r->seq);
	/* (3) a barrier runs alone. */
	if (r->barrier)
		CHECK(m, m->running.n == 0);
	else
		CHECK(m, m->running_barriers == 0);
	/* (4) requests start in submission order (stronger than the order
	 * relative to barriers that (1) and (2) already give). */
	CHECK(m, m->last_started == NONE || r->seq > m->last_started);
	m->last_started = r->seq;

	mset_del(&m->unstarted, r);
	mset_add(&m->running, r);
	r->st = M_RUNNING;
	if (r->barrier) {
		m->running_barriers++;
		m->barriers_started++;
	}

	/* Re-enter the queue now and then, as a driver may. */
	m->in_start++;
	if (m->n < RANDOM_CAP && m->in_start < 4 && one_in(m, 32))
		model_submit(m, one_in(m, 10));
	if (one_in(m, 64)) {
		struct mreq *victim = mset_pick(m, &m->unstarted);

		if (victim)
			CHECK(m, model_cancel(m, victim) == 0);
	}
	if (one_in(m, 16))
		model_complete(m, r);   /* r may be freed from here on */
	m->in_start--;
}

static void model_cancelled(void *opaque, struct blk_queue_req *qr)
{
	struct model *m = opaque;
	struct mreq *r = container_of(qr, struct mreq, qr);

	/* Only the request being cancelled, once, and before it started. */
	CHECK(m, r == m->cancel_target);
	CHECK(m, m->cancel_calls == 0);
	CHECK(m, r->st == M_UNSTARTED);
	CHECK(m, qr->state == BLK_QUEUE_REQ_DONE);
	m->cancel_calls++;
	mset_del(&m->unstarted, r);
	r->st = M_CANCELLED;
	r->ends++;
	if (r->barrier)
		m->barriers_cancelled++;

	if (m->n < RANDOM_CAP && one_in(m, 32))
		model_submit(m, one_in(m, 10));
}

static const struct blk_queue_ops model_ops = {
	.start = model_start,
	.cancelled = model_cancelled,
};

static void model_submit(struct model *m, bool barrier)
{
	struct mreq *r = &m->reqs[m->n];

	r->seq = m->n++;
	r->barrier = barrier;
	r->st = M_UNSTARTED;
	blk_queue_req_init(&r->qr, barrier);
	mset_add(&m->unstarted, r);
	if (barrier)
		m->barriers[m->n_barriers++] = r->seq;
	blk_queue_submit(&m->q, &r->qr);
	if (!m->in_start)
		model_check_rest(m);
}

/* The driver finishes r.  The model ends it first: the completion may
 * start others, which check against it. */
static void model_complete(struct model *m, struct mreq *r)
{
	CHECK(m, r->st == M_RUNNING);
	mset_del(&m->running, r);
	r->st = M_COMPLETED;
	r->ends++;
	if (r->barrier) {
		m->running_barriers--;
		m->barriers_completed++;
	}
	blk_queue_complete(&m->q, &r->qr);
}

/* Cancel r; checks that the callback came exactly when it should. */
static int model_cancel(struct model *m, struct mreq *r)
{
	struct mreq *saved_target = m->cancel_target;
	unsigned saved_calls = m->cancel_calls;
	bool unstarted = r->st == M_UNSTARTED;
	int ret;

	if (unstarted)
		CHECK(m, r->qr.state == BLK_QUEUE_REQ_QUEUED ||
			 r->qr.state == BLK_QUEUE_REQ_WAITING);
	m->cancel_target = r;
	m->cancel_calls = 0;
	ret = blk_queue_cancel(&m->q, &r->qr);
	CHECK(m, m->cancel_calls == (ret == 0 ? 1u : 0u));
	m->cancel_target = saved_target;
	m->cancel_calls = saved_calls;

	if (unstarted)
		CHECK(m, ret == 0);
	else if (r->st == M_RUNNING)
		CHECK(m, ret == -EBUSY);
	else
		CHECK(m, ret == -EINVAL);
	return ret;
}

static void model_step(struct model *m)
{
	unsigned dice = rng_next(m) % 100;
	struct mreq *r;

	if (dice < 45) {
		if (m->n < RANDOM_CAP)
			model_submit(m, one_in(m, 10));
	} else if (dice < 85) {
		r = mset_pick(m, &m->running);
		if (r)
			model_complete(m, r);
	} else if (dice < 94) {
		r = mset_pick(m, &m->unstarted);
		if (r)
			model_cancel(m, r);
	} else if (dice < 97) {
		r = mset_pick(m, &m->running);
		if (r)
			model_cancel(m, r);             /* -EBUSY */
	} else if (m->n) {
		/* Ended or not yet submitted: -EINVAL unless unstarted or
		 * running, which model_cancel handles too. */
		size_t i = rng_next(m) % (m->n + 1);

		if (i == m->n && i < RANDOM_CAP) {
			blk_queue_req_init(&m->reqs[i].qr, false);
			CHECK(m, blk_queue_cancel(&m->q, &m->reqs[i].qr) ==
				 -EINVAL);
		} else if (i < m->n) {
			model_cancel(m, &m->reqs[i]);
		}
	}
	model_check_rest(m);
}

static void model_run(struct model *m, uint64_t seed)
{
	struct mreq *r;

	memset(m->reqs, 0, RANDOM_CAP * sizeof(*m->reqs));
	m->seed = seed;
	m->rng = seed;
	m->n = 0;
	m->running.n = 0;
	m->unstarted.n = 0;
	m->n_barriers = 0;
	m->low_open = m->open_barrier = m->first_unstarted = 0;
	m->last_started = NONE;
	m->running_barriers = 0;
	m->in_start = 0;
	m->cancel_target = NULL;
	m->cancel_calls = 0;
	m->barriers_started = m->barriers_completed = 0;
	m->barriers_cancelled = 0;
	m->max_post = 0;
	blk_queue_init(&m->q, &model_ops, m);

	for (m->step = 0; m->step < RANDOM_STEPS; m->step++)
		model_step(m);

	/* Drain: completing what runs must start everything left. */
	while ((r = mset_pick(m, &m->running))) {
		model_complete(m, r);
		model_check_rest(m);
	}
	CHECK(m, m->unstarted.n == 0);
	CHECK(m, blk_queue_in_flight(&m->q) == 0);
	CHECK(m, blk_queue_queued(&m->q) == 0);
	CHECK(m, !blk_queue_barrier_pending(&m->q));
	/* (5) every request ended exactly once. */
	for (size_t i = 0; i < m->n; i++) {
		CHECK(m, ended(&m->reqs[i]));
		CHECK(m, m->reqs[i].ends == 1);
		CHECK(m, m->reqs[i].qr.state == BLK_QUEUE_REQ_DONE);
	}
	CHECK(m, m->barriers_started == m->barriers_completed);
	CHECK(m, m->barriers_completed + m->barriers_cancelled ==
		 m->n_barriers);
}

static void test_random_schedules_keep_barrier_rules(void **state)
{
	const char *env = getenv("VDISK_TEST_SEED");
	uint64_t base = env ? strtoull(env, NULL, 0) : UINT64_C(20240917);
	struct model *m = calloc(1, sizeof(*m));
	uint64_t total_barriers = 0, total_requests = 0;

	print_message("test-blk-queue: seed %" PRIu64
		      " (set VDISK_TEST_SEED to replay)\n", base);
	assert_non_null(m);
	m->reqs = calloc(RANDOM_CAP, sizeof(*m->reqs));
	m->running.v = calloc(RANDOM_CAP, sizeof(*m->running.v));
	m->unstarted.v = calloc(RANDOM_CAP, sizeof(*m->unstarted.v));
	m->barriers = calloc(RANDOM_CAP, sizeof(*m->barriers));
	assert_non_null(m->reqs);
	assert_non_null(m->running.v);
	assert_non_null(m->unstarted.v);
	assert_non_null(m->barriers);

	for (unsigned run = 0; run < RANDOM_RUNS; run++) {
		model_run(m, base + run);
		total_barriers += m->n_barriers;
		total_requests += m->n;
	}
	/* The schedules did exercise barriers (about one request in ten). */
	assert_true(total_requests > RANDOM_RUNS * RANDOM_STEPS / 3);
	assert_true(total_barriers > total_requests / 20);

	free(m->barriers);
	free(m->unstarted.v);
	free(m->running.v);
	free(m->reqs);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_requests_start_at_once),
		cmocka_unit_test(test_barrier_with_nothing_in_flight_starts),
		cmocka_unit_test(test_barrier_waits_for_all_earlier_requests),
		cmocka_unit_test(test_later_requests_wait_for_barrier),
		cmocka_unit_test(test_splice_stops_at_next_barrier),
		cmocka_unit_test(test_back_to_back_barriers),
		cmocka_unit_test(test_cancel_queued_requests),
		cmocka_unit_test(test_cancel_running_is_busy),
		cmocka_unit_test(test_cancel_not_in_queue_is_invalid),
		cmocka_unit_test(test_cancel_waiting_barrier_releases_queue),
		cmocka_unit_test(test_sync_completion_in_start_keeps_order),
		cmocka_unit_test(test_reentrant_submit_and_cancel_in_start),
		cmocka_unit_test(test_cancel_queued_barrier_from_start),
		cmocka_unit_test(test_random_schedules_keep_barrier_rules),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

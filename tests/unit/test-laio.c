/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the Linux AIO backend: data integrity under concurrency with
 * O_DIRECT, batching and plugging, end of file and short transfers,
 * fdatasync, fault injection, errors of single requests in a batch, the
 * max_events bound, and a backend that lives in an iothread.
 *
 * The main thread owns a context; it starts coroutines with co_enter
 * (each runs until it yields inside laio_co_submit) and then polls the
 * context until they report that they finished.  Coroutines run on the
 * main thread but on their own stacks, so they never call cmocka: they
 * store results that the test asserts on afterwards.
 *
 * The scratch file is made in the current directory, which for make check
 * is the build directory (O_DIRECT needs a real file system, not tmpfs),
 * and removed by the teardown, which cmocka runs even when a test fails.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>
#include <cmocka.h>

#include "coroutine.h"
#include "iothread.h"
#include "laio.h"
#include "loop.h"
#include "test-util.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

struct fixture {
	struct loop *ctx;
	struct laio *l;
	char path[32];
	int fd_direct;      /* O_DIRECT */
	int fd_buffered;    /* the same file through the page cache */
};

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: reproducible, good enough for offsets and data. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void fill_random(void *buf, size_t len, uint64_t *s)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(rng_next(s) >> 56);
}

/* Byte i of the file written by write_pattern. */
static unsigned char pattern_byte(uint64_t i)
{
	return (unsigned char)(i * 131u + (i >> 9) * 7u + 1u);
}

/* A 4 KiB aligned buffer, as O_DIRECT wants; out of memory ends the test
 * program (cmocka's fail is not known not to return). */
static void *aligned_buf(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, len) != 0) {
		fprintf(stderr, "test-laio: out of memory\n");
		abort();
	}
	return p;
}

/* Write the pattern over [0, len) through the page cache, synchronously. */
static void write_pattern(int fd, size_t len)
{
	unsigned char *buf = malloc(len);

	for (size_t i = 0; i < len; i++)
		buf[i] = pattern_byte(i);
	assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
	free(buf);
}

static bool matches_pattern(const unsigned char *buf, uint64_t off,
			    size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != pattern_byte(off + i))
			return false;
	}
	return true;
}

static void wake_timer_cb(void *opaque)
{
	/* Only there to end a blocking loop_poll at the time limit. */
}

typedef bool poll_cond_fn(const void *arg);

/*
 * Poll ctx (blocking) until done(arg) holds, at most TEST_WAIT_LIMIT_NS:
 * a timer ends the last blocking poll.  Returns false on time-out.
 */
static bool poll_until(struct loop *ctx, poll_cond_fn *done, const void *arg)
{
	uint64_t end = loop_now_ns() + TEST_WAIT_LIMIT_NS;
	struct loop_timer limit;

	loop_timer_init(&limit, ctx, wake_timer_cb, NULL);
	loop_timer_mod(&limit, end);
	while (!done(arg) && loop_now_ns() < end)
		loop_poll(ctx, true);
	loop_timer_del(&limit);
	return done(arg);
}

struct count_target {
	const int *count;
	int target;
};

static bool count_reached(const void *arg)
{
	const struct count_target *c = arg;

	return *c->count >= c->target;
}

/* Poll until *count reaches target; false on time-out. */
static bool poll_count(struct loop *ctx, const int *count, int target)
{
	struct count_target c = { count, target };

	return poll_until(ctx, count_reached, &c);
}

/* One request run by a coroutine. */
struct io_job {
	struct laio *l;
	int fd;
	enum laio_op op;
	uint64_t off;
	const struct iovec *iov;
	int iovcnt;
	int ret;
	int *ndone;
};

static void coroutine_fn io_job_co(void *opaque)
{
	struct io_job *j = opaque;

	j->ret = laio_co_submit(j->l, j->fd, j->op, j->off, j->iov,
				j->iovcnt);
	(*j->ndone)++;
}

/* Start j: it runs until it yields in laio_co_submit (or finishes). */
static void io_job_start(struct io_job *j)
{
	struct coroutine *co = co_create(io_job_co, j);

	assert_non_null(co);
	co_enter(co);
}

/* Run one request to its end and return its result. */
static int run_io(struct fixture *f, struct laio *l, int fd, enum laio_op op,
		  uint64_t off, const struct iovec *iov, int iovcnt)
{
	int ndone = 0;
	struct io_job j = {
		.l = l, .fd = fd, .op = op, .off = off, .iov = iov,
		.iovcnt = iovcnt, .ret = INT32_MIN, .ndone = &ndone,
	};

	io_job_start(&j);
	if (!poll_count(f->ctx, &ndone, 1))
		fail_msg("request did not complete in time");
	return j.ret;
}

static int run_io1(struct fixture *f, int fd, enum laio_op op, uint64_t off,
		   void *buf, size_t len)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };

	return run_io(f, f->l, fd, op, off, &iov, 1);
}

static struct laio_stats get_stats(const struct laio *l)
{
	struct laio_stats st;

	laio_get_stats(l, &st);
	return st;
}

/* ---- setup and teardown --------------------------------------------- */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int fd;

	if (!f)
		return -1;
	f->fd_direct = f->fd_buffered = -1;
	strcpy(f->path, "laio-test-XXXXXX");
	fd = mkstemp(f->path);
	if (fd < 0) {
		print_error("mkstemp in the current directory: %s\n",
			    strerror(errno));
		free(f);
		return -1;
	}
	f->fd_buffered = fd;
	*state = f;     /* from here the teardown cleans up */
	f->fd_direct = open(f->path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (f->fd_direct < 0) {
		print_error("O_DIRECT open of %s: %s (tmpfs?)\n", f->path,
			    strerror(errno));
		return -1;
	}
	if (loop_new(&f->ctx) < 0)
		return -1;
	loop_set_current(f->ctx);
	if (laio_new(f->ctx, 0, &f->l) < 0) {
		print_error("laio_new failed\n");
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (!f)
		return 0;
	if (f->l) {
		struct laio_stats st = get_stats(f->l);

		/* Only a failed test leaves requests out.  Their coroutines
		 * point into its dead stack frame and the kernel may still
		 * write into its buffers: no way to go on safely. */
		if (st.in_flight || st.pending) {
			unlink(f->path);
			fprintf(stderr, "test-laio: %u requests still out after "
				"a failure, stopping\n",
				st.in_flight + st.pending);
			exit(1);
		}
		laio_free(f->l);
	}
	if (f->ctx) {
		loop_set_current(NULL);
		loop_free(f->ctx);
	}
	if (f->fd_direct >= 0)
		close(f->fd_direct);
	if (f->fd_buffered >= 0)
		close(f->fd_buffered);
	unlink(f->path);
	free(f);
	return 0;
}

/* ---- data integrity --------------------------------------------------- */

#define RND_WORKERS  64
#define RND_REQS     6
#define RND_REGION   (1 * MiB)   /* each worker owns one region */

struct rnd_worker {
	struct laio *l;
	int fd;
	uint64_t base;              /* of the region in the file */
	unsigned char *model;       /* the whole file's expected content */
	unsigned char *buf;         /* RND_REGION, 4 KiB aligned */
	uint64_t seed;
	int errors;                 /* wrong return values */
	int mismatches;             /* reads that returned wrong data */
	int reads, writes;
	int *ndone;
};

/* Split [buf, buf+len) into 1..3 iovecs at 4 KiB boundaries. */
static int rnd_split(struct iovec *iov, unsigned char *buf, size_t len,
		     uint64_t *s)
{
	size_t blocks = len / 4096;
	int n = 1 + (int)(rng_next(s) % 3);
	size_t used = 0;
	int cnt = 0;

	for (int i = 0; i < n && used < blocks; i++) {
		size_t b = i == n - 1 ? blocks - used :
			   1 + rng_next(s) % (blocks - used);

		iov[cnt].iov_base = buf + used * 4096;
		iov[cnt].iov_len = b * 4096;
		used += b;
		cnt++;
	}
	if (used < blocks)
		iov[cnt - 1].iov_len += (blocks - used) * 4096;
	return cnt;
}

static void coroutine_fn rnd_worker_co(void *opaque)
{
	struct rnd_worker *w = opaque;

	for (int r = 0; r < RND_REQS; r++) {
		/* 4 KiB .. 1 MiB, a random number of 4 KiB blocks below a
		 * random power of two, at a 4 KiB aligned offset. */
		size_t max = (size_t)4096 << (rng_next(&w->seed) % 9);
		size_t len = 4096 * (1 + rng_next(&w->seed) % (max / 4096));
		uint64_t off = w->base + 4096 *
			(rng_next(&w->seed) % ((RND_REGION - len) / 4096 + 1));
		bool is_write = rng_next(&w->seed) & 1;
		struct iovec iov[3];
		int cnt = rnd_split(iov, w->buf, len, &w->seed);
		int ret;

		if (is_write) {
			fill_random(w->buf, len, &w->seed);
			ret = laio_co_submit(w->l, w->fd, LAIO_WRITE, off,
					     iov, cnt);
			if (ret != (int)len)
				w->errors++;
			else
				memcpy(w->model + off, w->buf, len);
			w->writes++;
		} else {
			memset(w->buf, 0xa5, len);
			ret = laio_co_submit(w->l, w->fd, LAIO_READ, off, iov,
					     cnt);
			if (ret != (int)len)
				w->errors++;
			else if (memcmp(w->buf, w->model + off, len) != 0)
				w->mismatches++;
			w->reads++;
		}
	}
	(*w->ndone)++;
}

static void test_random_direct_io_matches_model(void **state)
{
	struct fixture *f = *state;
	const size_t size = (size_t)RND_WORKERS * RND_REGION;
	struct rnd_worker *w = calloc(RND_WORKERS, sizeof(*w));
	unsigned char *model = calloc(1, size);
	unsigned char *back = malloc(size);
	struct laio_stats st;
	int ndone = 0, reads = 0, writes = 0;

	assert_non_null(w);
	assert_non_null(model);
	assert_non_null(back);
	/* A sparse file of zeros, like the model. */
	assert_int_equal(ftruncate(f->fd_buffered, (off_t)size), 0);

	/* All 64 workers queue their first request before the loop runs
	 * once; afterwards each completion lets its worker queue the next,
	 * so up to 64 requests are in flight in many batches. */
	for (int i = 0; i < RND_WORKERS; i++) {
		w[i] = (struct rnd_worker){
			.l = f->l, .fd = f->fd_direct,
			.base = (uint64_t)i * RND_REGION, .model = model,
			.buf = aligned_buf(RND_REGION),
			.seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1),
			.ndone = &ndone,
		};
	}
	for (int i = 0; i < RND_WORKERS; i++) {
		struct coroutine *co = co_create(rnd_worker_co, &w[i]);

		assert_non_null(co);
		co_enter(co);
	}
	assert_true(poll_count(f->ctx, &ndone, RND_WORKERS));

	for (int i = 0; i < RND_WORKERS; i++) {
		assert_int_equal(w[i].errors, 0);
		assert_int_equal(w[i].mismatches, 0);
		reads += w[i].reads;
		writes += w[i].writes;
		free(w[i].buf);
	}
	assert_int_equal(reads + writes, RND_WORKERS * RND_REQS);
	assert_true(reads > 0 && writes > 0);

	/* The file, read back through the page cache, is the model. */
	assert_int_equal(pread(f->fd_buffered, back, size, 0), (ssize_t)size);
	assert_memory_equal(back, model, size);

	st = get_stats(f->l);
	assert_int_equal(st.submitted, RND_WORKERS * RND_REQS);
	assert_int_equal(st.short_io, 0);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.peak_in_flight, RND_WORKERS);
	free(back);
	free(model);
	free(w);
}

/* ---- batching and plugging ------------------------------------------- */

#define BATCH 32

struct batch {
	struct io_job job[BATCH];
	struct iovec iov[BATCH];
	unsigned char *buf;          /* BATCH x 4 KiB */
	int ndone;
};

/* Prepare BATCH 4 KiB O_DIRECT reads of blocks 0..BATCH-1. */
static void batch_init(struct batch *b, struct fixture *f, struct laio *l)
{
	b->ndone = 0;
	b->buf = aligned_buf(BATCH * 4096);
	memset(b->buf, 0, BATCH * 4096);
	for (int i = 0; i < BATCH; i++) {
		b->iov[i] = (struct iovec){ b->buf + i * 4096, 4096 };
		b->job[i] = (struct io_job){
			.l = l, .fd = f->fd_direct, .op = LAIO_READ,
			.off = (uint64_t)i * 4096, .iov = &b->iov[i],
			.iovcnt = 1, .ret = INT32_MIN, .ndone = &b->ndone,
		};
	}
}

static void batch_check(struct batch *b)
{
	for (int i = 0; i < BATCH; i++) {
		assert_int_equal(b->job[i].ret, 4096);
		assert_true(matches_pattern(b->buf + i * 4096,
					    (uint64_t)i * 4096, 4096));
	}
	free(b->buf);
}

static void test_unplugged_requests_go_out_at_once(void **state)
{
	struct fixture *f = *state;
	struct batch b;
	struct laio_stats st;

	write_pattern(f->fd_buffered, BATCH * 4096);
	batch_init(&b, f, f->l);

	/* Unplugged, each coroutine's iocb reaches the kernel before it
	 * yields: one io_submit each, nothing left queued. */
	for (int i = 0; i < BATCH; i++)
		io_job_start(&b.job[i]);
	st = get_stats(f->l);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.submitted, BATCH);
	assert_int_equal(st.submit_calls, BATCH);

	assert_true(poll_count(f->ctx, &b.ndone, BATCH));
	st = get_stats(f->l);
	assert_int_equal(st.submit_calls, BATCH);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(st.pending, 0);
	batch_check(&b);
}

static void test_plug_holds_submissions_until_unplug(void **state)
{
	struct fixture *f = *state;
	struct batch b;
	struct laio_stats st;

	write_pattern(f->fd_buffered, BATCH * 4096);
	batch_init(&b, f, f->l);

	/* Nested plugs hold every request queued under them, whatever the
	 * loop does meanwhile; only the outermost unplug submits. */
	laio_plug(f->l);
	laio_plug(f->l);
	for (int i = 0; i < BATCH; i++)
		io_job_start(&b.job[i]);
	for (int i = 0; i < 10; i++)
		loop_poll(f->ctx, false);
	laio_unplug(f->l);
	for (int i = 0; i < 10; i++)
		loop_poll(f->ctx, false);
	st = get_stats(f->l);
	assert_int_equal(st.submitted, 0);
	assert_int_equal(st.submit_calls, 0);
	assert_int_equal(st.pending, BATCH);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(b.ndone, 0);

	/* The last unplug submits at once, in one call, before any poll. */
	laio_unplug(f->l);
	st = get_stats(f->l);
	assert_int_equal(st.submitted, BATCH);
	assert_int_equal(st.submit_calls, 1);
	assert_int_equal(st.pending, 0);

	assert_true(poll_count(f->ctx, &b.ndone, BATCH));
	st = get_stats(f->l);
	assert_int_equal(st.submit_calls, 1);
	assert_int_equal(st.in_flight, 0);
	batch_check(&b);
}

static void test_small_max_events_bounds_in_flight(void **state)
{
	struct fixture *f = *state;
	struct laio *small;
	struct batch b;
	struct laio_stats st;

	assert_int_equal(laio_new(f->ctx, 4, &small), 0);
	write_pattern(f->fd_buffered, BATCH * 4096);
	batch_init(&b, f, small);

	/* 32 requests queued at once: 4 go to the kernel, the others wait
	 * in the queue and follow as completions free slots. */
	for (int i = 0; i < BATCH; i++)
		io_job_start(&b.job[i]);
	assert_true(poll_count(f->ctx, &b.ndone, BATCH));
	batch_check(&b);

	st = get_stats(small);
	assert_int_equal(st.submitted, BATCH);
	assert_int_equal(st.peak_in_flight, 4);
	assert_true(st.queue_full >= 1);
	assert_true(st.submit_calls >= BATCH / 4);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(st.pending, 0);
	laio_free(small);
}

/* ---- end of file and short transfers ---------------------------------- */

static void test_read_crossing_eof_returns_short_count(void **state)
{
	struct fixture *f = *state;
	unsigned char *buf = aligned_buf(16 * KiB);
	struct laio_stats st;

	write_pattern(f->fd_buffered, 10000);

	/* 16 KiB at 8192 on a 10000-byte file: the kernel returns 1808,
	 * the continuation at 10000 returns 0, which is end of file. */
	memset(buf, 0, 16 * KiB);
	assert_int_equal(run_io1(f, f->fd_buffered, LAIO_READ, 8192, buf,
				 16 * KiB), 1808);
	assert_true(matches_pattern(buf, 8192, 1808));
	assert_int_equal(buf[1808], 0);
	st = get_stats(f->l);
	assert_int_equal(st.short_io, 1);

	/* Starting at or after end of file: 0 bytes, no continuation. */
	assert_int_equal(run_io1(f, f->fd_buffered, LAIO_READ, 10000, buf,
				 4096), 0);
	assert_int_equal(run_io1(f, f->fd_buffered, LAIO_READ, 1 * MiB, buf,
				 4096), 0);

	/* O_DIRECT on the same unaligned end: the kernel cuts the read at
	 * 10000 too, and answers the unaligned continuation there with 0
	 * (end of file is checked before alignment), not EINVAL. */
	memset(buf, 0, 16 * KiB);
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_READ, 8192, buf,
				 16 * KiB), 1808);
	assert_true(matches_pattern(buf, 8192, 1808));
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_READ, 12288, buf,
				 4096), 0);
	st = get_stats(f->l);
	assert_int_equal(st.short_io, 2);
	free(buf);
}

static bool has_pending(const void *arg)
{
	struct laio_stats st;

	laio_get_stats(arg, &st);
	return st.pending > 0;
}

static void test_short_read_continues_into_later_iovecs(void **state)
{
	struct fixture *f = *state;
	unsigned char a[4096], b[4096], c[8192];
	struct iovec iov[3] = {
		{ a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) },
	};
	struct iovec saved[3];
	int ndone = 0;
	struct io_job j = {
		.l = f->l, .fd = f->fd_buffered, .op = LAIO_READ, .off = 0,
		.iov = iov, .iovcnt = 3, .ret = INT32_MIN, .ndone = &ndone,
	};
	unsigned char *rest = malloc(16384);
	struct laio_stats st;

	assert_non_null(rest);
	memcpy(saved, iov, sizeof(iov));
	write_pattern(f->fd_buffered, 10000);

	/* The 16 KiB read goes out at once; plug before the loop reaps it:
	 * the kernel returns 10000 bytes, the coroutine queues a
	 * continuation at 10000 (1808 bytes into c) and the plug holds it. */
	io_job_start(&j);
	st = get_stats(f->l);
	assert_int_equal(st.submitted, 1);
	laio_plug(f->l);
	assert_true(poll_until(f->ctx, has_pending, f->l));
	st = get_stats(f->l);
	assert_int_equal(st.short_io, 1);
	assert_int_equal(st.pending, 1);
	assert_int_equal(ndone, 0);

	/* Grow the file meanwhile: the continuation now finds data. */
	for (unsigned i = 0; i < 16384; i++)
		rest[i] = pattern_byte(i);
	assert_int_equal(pwrite(f->fd_buffered, rest + 10000, 6384, 10000),
			 6384);
	laio_unplug(f->l);
	assert_true(poll_count(f->ctx, &ndone, 1));

	assert_int_equal(j.ret, 16384);
	assert_true(matches_pattern(a, 0, 4096));
	assert_true(matches_pattern(b, 4096, 4096));
	assert_true(matches_pattern(c, 8192, 8192));
	/* The caller's array was not touched by the continuation. */
	assert_memory_equal(iov, saved, sizeof(iov));
	st = get_stats(f->l);
	assert_int_equal(st.submitted, 2);
	free(rest);
}

/* ---- several iovecs --------------------------------------------------- */

static void test_multi_iovec_write_then_read(void **state)
{
	struct fixture *f = *state;
	unsigned char *w = aligned_buf(64 * KiB), *r = aligned_buf(64 * KiB);
	uint64_t seed = 42;
	/* Write as 4 + 8 + 4 + 48 KiB, read back as 16 + 4 + 44 KiB. */
	struct iovec wiov[4] = {
		{ w, 4 * KiB }, { w + 4 * KiB, 8 * KiB },
		{ w + 12 * KiB, 4 * KiB }, { w + 16 * KiB, 48 * KiB },
	};
	struct iovec riov[3] = {
		{ r, 16 * KiB }, { r + 16 * KiB, 4 * KiB },
		{ r + 20 * KiB, 44 * KiB },
	};
	struct iovec wsaved[4], rsaved[3];

	fill_random(w, 64 * KiB, &seed);
	memset(r, 0, 64 * KiB);
	memcpy(wsaved, wiov, sizeof(wiov));
	memcpy(rsaved, riov, sizeof(riov));

	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_WRITE, 128 * KiB,
				wiov, 4), 64 * KiB);
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_READ, 128 * KiB,
				riov, 3), 64 * KiB);
	assert_memory_equal(r, w, 64 * KiB);
	assert_memory_equal(wiov, wsaved, sizeof(wiov));
	assert_memory_equal(riov, rsaved, sizeof(riov));

	/* Nothing to move: 0 at once, without the kernel. */
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_READ, 0, riov, 0),
			 0);
	assert_int_equal(get_stats(f->l).submitted, 2);
	free(w);
	free(r);
}

/* ---- fdatasync and faults --------------------------------------------- */

static void test_fdsync_and_fault_injection(void **state)
{
	struct fixture *f = *state;
	unsigned char *buf = aligned_buf(4096);
	int pipefd[2];
	struct laio_stats st;

	memset(buf, 0x5a, 4096);
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_WRITE, 0, buf, 4096),
			 4096);
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_FDSYNC, 0, NULL,
				0), 0);
	assert_int_equal(run_io(f, f->l, f->fd_buffered, LAIO_FDSYNC, 0, NULL,
				0), 0);

	/* A file without fsync (a pipe): the kernel itself says EINVAL. */
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(run_io(f, f->l, pipefd[1], LAIO_FDSYNC, 0, NULL, 0),
			 -EINVAL);
	close(pipefd[0]);
	close(pipefd[1]);
	st = get_stats(f->l);
	assert_int_equal(st.submitted, 3);

	/* Injected: the block layer's fallback paths. */
	laio_set_fault(f->l, LAIO_FDSYNC, EINVAL);
	laio_set_fault(f->l, LAIO_READ, EIO);
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_FDSYNC, 0, NULL,
				0), -EINVAL);
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_FDSYNC, 0, NULL,
				0), -EINVAL);
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_READ, 0, buf, 4096),
			 -EIO);
	/* Writes are not affected. */
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_WRITE, 0, buf, 4096),
			 4096);
	st = get_stats(f->l);
	assert_int_equal(st.faults, 3);
	assert_int_equal(st.submitted, 4);   /* only the write reached it */

	laio_set_fault(f->l, LAIO_FDSYNC, 0);
	laio_set_fault(f->l, LAIO_READ, 0);
	memset(buf, 0, 4096);
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_FDSYNC, 0, NULL,
				0), 0);
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_READ, 0, buf, 4096),
			 4096);
	assert_int_equal(buf[0], 0x5a);
	assert_int_equal(buf[4095], 0x5a);
	st = get_stats(f->l);
	assert_int_equal(st.faults, 3);
	assert_int_equal(st.submitted, 6);
	free(buf);
}

/* ---- errors ----------------------------------------------------------- */

static void test_bad_request_fails_alone_in_its_batch(void **state)
{
	struct fixture *f = *state;
	unsigned char *buf = aligned_buf(3 * 4096);
	struct iovec iov[3];
	struct io_job j[3];
	int ndone = 0;
	struct laio_stats st;

	write_pattern(f->fd_buffered, 3 * 4096);
	for (int i = 0; i < 3; i++) {
		iov[i] = (struct iovec){ buf + i * 4096, 4096 };
		j[i] = (struct io_job){
			.l = f->l, .fd = f->fd_direct, .op = LAIO_READ,
			.off = (uint64_t)i * 4096, .iov = &iov[i], .iovcnt = 1,
			.ret = INT32_MIN, .ndone = &ndone,
		};
	}
	j[1].fd = -1;

	/* Each goes in its own io_submit; the bad fd fails there alone,
	 * and the others are not held up by it. */
	for (int i = 0; i < 3; i++)
		io_job_start(&j[i]);
	assert_true(poll_count(f->ctx, &ndone, 3));
	assert_int_equal(j[0].ret, 4096);
	assert_int_equal(j[1].ret, -EBADF);
	assert_int_equal(j[2].ret, 4096);
	assert_true(matches_pattern(buf, 0, 4096));
	assert_true(matches_pattern(buf + 8192, 8192, 4096));
	st = get_stats(f->l);
	assert_int_equal(st.submitted, 2);
	assert_int_equal(st.submit_calls, 3);
	assert_int_equal(st.eagain, 0);

	/* Arguments that make no request. */
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_READ, 0, iov, -1),
			 -EINVAL);
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_READ, 0, NULL, 1),
			 -EINVAL);
	assert_int_equal(run_io(f, f->l, f->fd_direct, (enum laio_op)7, 0,
				iov, 1), -EINVAL);
	assert_int_equal(run_io(f, f->l, f->fd_direct, LAIO_READ,
				UINT64_MAX - 100, iov, 1), -EINVAL);
	/* The O_DIRECT rules are the kernel's to enforce. */
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_READ, 100, buf, 4096),
			 -EINVAL);
	laio_free(NULL);
	free(buf);
}

/* ---- freeing from a woken coroutine ----------------------------------- */

struct last_user {
	struct laio *l;
	int fd;
	void *buf;
	int ret;
	int *ndone;
};

static void coroutine_fn last_user_co(void *opaque)
{
	struct last_user *u = opaque;
	struct iovec iov = { u->buf, 4096 };

	/* The last request of the backend's last user; once it is back,
	 * nothing is out, so the user may free the backend right here,
	 * inside the callback that woke it. */
	u->ret = laio_co_submit(u->l, u->fd, LAIO_READ, 0, &iov, 1);
	laio_free(u->l);
	(*u->ndone)++;
}

static void test_free_from_the_woken_coroutine(void **state)
{
	struct fixture *f = *state;
	unsigned char *buf = aligned_buf(2 * 4096);
	struct last_user u[2];
	int ndone = 0;

	write_pattern(f->fd_buffered, 4096);
	/* u[0] is woken by the completion handler; u[1], whose bad fd
	 * io_submit refuses, by the submission BH.  Under ASan any touch
	 * of a backend after its free is caught. */
	for (int i = 0; i < 2; i++) {
		u[i] = (struct last_user){
			.fd = i == 0 ? f->fd_direct : -1,
			.buf = buf + i * 4096, .ret = INT32_MIN,
			.ndone = &ndone,
		};
		assert_int_equal(laio_new(f->ctx, 0, &u[i].l), 0);
	}
	for (int i = 0; i < 2; i++) {
		struct coroutine *co = co_create(last_user_co, &u[i]);

		assert_non_null(co);
		co_enter(co);
	}
	assert_true(poll_count(f->ctx, &ndone, 2));
	assert_int_equal(u[0].ret, 4096);
	assert_true(matches_pattern(buf, 0, 4096));
	assert_int_equal(u[1].ret, -EBADF);
	/* The context still works, without the freed backends' handlers. */
	assert_int_equal(run_io1(f, f->fd_direct, LAIO_READ, 0, buf, 4096),
			 4096);
	free(buf);
}

/* ---- a backend in an iothread ----------------------------------------- */

#define IOT_JOBS 16

struct iot {
	struct loop *ctx;            /* the iothread's */
	struct laio *l;
	int fd;
	int new_ret;
	atomic_int setup_done;
	atomic_int ndone;
	int results[IOT_JOBS];
	unsigned char *bufs;         /* IOT_JOBS x 8 KiB */
	struct laio_stats st;
	atomic_int freed;
};

struct iot_job {
	struct iot *t;
	int i;
};

static void iot_setup_bh(void *opaque)
{
	struct iot *t = opaque;

	t->new_ret = laio_new(t->ctx, 0, &t->l);
	atomic_store(&t->setup_done, 1);
}

static void iot_free_bh(void *opaque)
{
	struct iot *t = opaque;

	laio_get_stats(t->l, &t->st);
	laio_free(t->l);
	atomic_store(&t->freed, 1);
}

static void coroutine_fn iot_job_co(void *opaque)
{
	struct iot_job *j = opaque;
	struct iot *t = j->t;
	unsigned char *wb = t->bufs + j->i * 8192;
	unsigned char *rb = wb + 4096;
	struct iovec wiov = { wb, 4096 }, riov = { rb, 4096 };
	uint64_t off = (uint64_t)j->i * 4096;
	int ret;

	/* Write a block, sync, read it back: three round trips, each
	 * resumed in the iothread. */
	memset(wb, 'A' + j->i, 4096);
	memset(rb, 0, 4096);
	ret = laio_co_submit(t->l, t->fd, LAIO_WRITE, off, &wiov, 1);
	if (ret == 4096)
		ret = laio_co_submit(t->l, t->fd, LAIO_FDSYNC, 0, NULL, 0);
	if (ret == 0)
		ret = laio_co_submit(t->l, t->fd, LAIO_READ, off, &riov, 1);
	if (ret == 4096 && memcmp(wb, rb, 4096) != 0)
		ret = -EILSEQ;
	if (loop_get_current() != t->ctx)
		ret = -EXDEV;
	t->results[j->i] = ret;
	atomic_fetch_add(&t->ndone, 1);
}

static bool wait_flag(atomic_int *flag, int target)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;

	while (atomic_load(flag) < target && test_now_ns() < end)
		usleep(100);
	return atomic_load(flag) >= target;
}

static void test_backend_in_iothread(void **state)
{
	struct fixture *f = *state;
	struct iothread *thr;
	struct iot t = { .fd = f->fd_direct };
	struct iot_job jobs[IOT_JOBS];

	t.bufs = aligned_buf(IOT_JOBS * 8192);
	assert_int_equal(iothread_new(0, &thr), 0);
	t.ctx = iothread_get_ctx(thr);

	/* The backend is made, used and freed in the iothread; the main
	 * thread only schedules work there and waits. */
	assert_int_equal(loop_bh_schedule_oneshot(t.ctx, iot_setup_bh, &t),
			 0);
	assert_true(wait_flag(&t.setup_done, 1));
	assert_int_equal(t.new_ret, 0);
	for (int i = 0; i < IOT_JOBS; i++) {
		struct coroutine *co;

		jobs[i] = (struct iot_job){ &t, i };
		co = co_create(iot_job_co, &jobs[i]);
		assert_non_null(co);
		co_schedule(t.ctx, co);
	}
	assert_true(wait_flag(&t.ndone, IOT_JOBS));
	assert_int_equal(loop_bh_schedule_oneshot(t.ctx, iot_free_bh, &t), 0);
	assert_true(wait_flag(&t.freed, 1));
	iothread_free(thr);

	for (int i = 0; i < IOT_JOBS; i++)
		assert_int_equal(t.results[i], 4096);
	assert_int_equal(t.st.submitted, 3 * IOT_JOBS);
	assert_int_equal(t.st.in_flight, 0);
	free(t.bufs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			test_random_direct_io_matches_model, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_unplugged_requests_go_out_at_once, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_plug_holds_submissions_until_unplug, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_small_max_events_bounds_in_flight, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_read_crossing_eof_returns_short_count, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_short_read_continues_into_later_iovecs, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_multi_iovec_write_then_read, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_fdsync_and_fault_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_bad_request_fails_alone_in_its_batch, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_free_from_the_woken_coroutine, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_backend_in_iothread, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the mirror job, mostly between two RAM fakes (fake-blk.h) that
 * can fail, hold or reorder requests, and once between real sparse files.
 *
 * The main thread owns the context.  Guest requests and the job run in
 * coroutines of it that never call cmocka: they record what happened, and
 * the test asserts after polling the context until a condition holds
 * (bounded by TEST_WAIT_LIMIT_NS).  Nothing waits on time for correctness;
 * the only timer that matters is the job's own back-off after an ignored
 * error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "block.h"
#include "fake-blk.h"
#include "loop.h"
#include "mirror.h"
#include "tpool.h"
#include "test-util.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define WAIT_FOR FAKE_WAIT_FOR

struct fixture {
	struct loop *ctx;
	struct tpool *pool;
	struct fake_blk *src, *dst;
	struct mirror *m;
	/* What the callbacks saw. */
	int pivots, finished, before_ready;
	int pivot_ret;                  /* what pivot answers */
	unsigned pivot_drain_depth;
	uint64_t pivot_unflushed;
	bool free_in_finished, done;
};

/* ---- helpers ------------------------------------------------------- */

static int coroutine_fn fx_pivot(void *opaque)
{
	struct fixture *f = opaque;
	struct blk_info bi;

	f->pivots++;
	blk_get_info(f->src->img, &bi);
	f->pivot_drain_depth = bi.drain_depth;
	f->pivot_unflushed = f->dst->dirty_since_flush;
	if (f->pivot_ret == 0)
		blk_set_redirect(f->src->img, f->dst->img);
	return f->pivot_ret;
}

static void fx_finished(void *opaque)
{
	struct fixture *f = opaque;

	f->finished++;
	f->done = true;
	if (f->free_in_finished) {
		mirror_free(f->m);
		f->m = NULL;
	}
}

static const struct mirror_ops fx_ops = {
	.pivot = fx_pivot,
	.finished = fx_finished,
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || loop_new(&f->ctx) < 0 || tpool_new(NULL, &f->pool) < 0)
		return -1;
	loop_set_current(f->ctx);
	*state = f;
	return 0;
}

/* Let go of the job and both fakes (also between rounds of a test). */
static void free_pair(struct fixture *f)
{
	if (f->src)
		fake_blk_release_all(f->src);
	if (f->dst) {
		f->dst->hook = NULL;
		fake_blk_release_all(f->dst);
	}
	mirror_free(f->m);
	fake_blk_free(f->src);
	fake_blk_free(f->dst);
	f->m = NULL;
	f->src = f->dst = NULL;
	f->pivots = f->finished = f->before_ready = f->pivot_ret = 0;
	f->done = f->free_in_finished = false;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free_pair(f);
	tpool_free(f->pool);
	loop_set_current(NULL);
	loop_free(f->ctx);
	free(f);
	return 0;
}

/* Two fakes: a source of size bytes full of data, an empty target. */
static void make_pair(struct fixture *f, uint64_t size, uint64_t seed)
{
	f->src = fake_blk_new(f->ctx, "src", size);
	f->dst = fake_blk_new(f->ctx, "dst", size);
	assert_non_null(f->src);
	assert_non_null(f->dst);
	fake_blk_fill(f->src, 0, size, &seed);
}

static struct mirror_opts opts(uint64_t granularity)
{
	return (struct mirror_opts){ .granularity = granularity };
}

static void start(struct fixture *f, const struct mirror_opts *o)
{
	f->done = false;
	assert_int_equal(mirror_start(f->src->img, f->dst->img, o, &fx_ops, f,
				      &f->m), 0);
}

static struct mirror_status status(struct fixture *f)
{
	struct mirror_status st;

	mirror_get_status(f->m, &st);
	return st;
}

static enum job_state state_of(struct fixture *f)
{
	return status(f).state;
}

static bool wait_state(struct fixture *f, enum job_state s)
{
	return WAIT_FOR(f->ctx, state_of(f) == s);
}

static bool idle(struct fixture *f)
{
	struct mirror_status st = status(f);

	return st.bytes_dirty == 0 && st.ops_in_flight == 0;
}

static void assert_same(struct fixture *f)
{
	assert_int_equal(memcmp(f->src->data, f->dst->data, f->src->size), 0);
}

/* A guest request on the source, run to its end. */
static ssize_t src_io(struct fixture *f, enum blk_op op, uint64_t off,
		      void *buf, uint64_t len)
{
	return fake_io_run(f->ctx, f->src->img, op, off, buf, len);
}

static void wait_finished(struct fixture *f, enum job_state final)
{
	assert_true(WAIT_FOR(f->ctx, f->done));
	assert_int_equal(f->finished, 1);
	if (f->m)
		assert_int_equal(state_of(f), final);
}

/* Complete a ready job and wait for its end. */
static void complete(struct fixture *f, bool no_pivot, enum job_state final)
{
	assert_true(wait_state(f, JOB_READY));
	assert_int_equal(mirror_complete(f->m, no_pivot), 0);
	wait_finished(f, final);
}

/* ---- data integrity --------------------------------------------------- */

/* Counts the guest's requests done before the job was ready. */
static void count_before_ready(void *opaque)
{
	struct fixture *f = opaque;

	if (!status(f).ever_ready)
		f->before_ready++;
}

#define NWRITERS 4

static void check_random_writes(struct fixture *f,
				enum mirror_copy_mode mode, uint64_t seed)
{
	struct mirror_opts o = opts(16 * KiB);
	struct fake_writer w[NWRITERS];
	struct mirror_status st;
	uint8_t buf[512];

	make_pair(f, 4 * MiB, seed);
	/* Holes in the source too. */
	memset(f->src->data + MiB, 0, MiB);
	memset(f->src->alloc + MiB / FAKE_BLK_BLOCK, 0, MiB / FAKE_BLK_BLOCK);
	f->src->yields = f->dst->yields = 2;
	f->src->rng = f->dst->rng = seed;
	o.copy_mode = mode;
	o.buf_size = 512 * KiB;
	o.target_is_zero = seed & 1;
	start(f, &o);
	for (int i = 0; i < NWRITERS; i++) {
		w[i] = (struct fake_writer){
			.img = f->src->img, .seed = seed * 1000 + i, .n = 40,
			.each = count_before_ready, .opaque = f,
		};
		assert_true(fake_writer_start(&w[i]));
	}
	for (int i = 0; i < NWRITERS; i++) {
		assert_true(WAIT_FOR(f->ctx, w[i].done));
		assert_int_equal(w[i].errors, 0);
	}
	/* The writes really raced the first pass. */
	assert_true(f->before_ready > 0);
	complete(f, false, JOB_CONCLUDED);
	st = status(f);
	assert_true(st.consistent);
	assert_true(st.pivoted);
	assert_int_equal(st.error, 0);
	assert_int_equal(f->pivots, 1);
	assert_true(f->pivot_drain_depth > 0);
	assert_int_equal(f->pivot_unflushed, 0);
	assert_same(f);
	/* Switched: a write through the source's handle lands in the target. */
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(src_io(f, BLK_OP_WRITE, 0, buf, 512), 512);
	assert_int_equal(f->dst->data[0], 0xee);
	assert_int_not_equal(f->src->data[0], 0xee);
}

static void test_random_writes(void **state)
{
	for (uint64_t seed = 1; seed <= 3; seed++) {
		check_random_writes(*state, MIRROR_COPY_BACKGROUND, seed);
		free_pair(*state);
		check_random_writes(*state, MIRROR_COPY_WRITE_BLOCKING, seed);
		free_pair(*state);
	}
}

/*
 * Background: a copy's target write is held; the chunk is written again,
 * so it is dirty again, but its second copy must wait for the first.
 */
static void test_inflight_wait_background(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint8_t a[1000], b[1000];
	uint64_t reads;

	make_pair(f, MiB, 5);
	fake_blk_copy(f->dst, f->src);      /* for sync=none */
	o.sync = MIRROR_SYNC_NONE;
	start(f, &o);
	assert_true(wait_state(f, JOB_READY));
	f->dst->hold[BLK_OP_WRITE] = true;
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	assert_int_equal(src_io(f, BLK_OP_WRITE, 100, a, 1000), 1000);
	/* The copy of chunk 0 read the source and is held at the target. */
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	reads = f->src->ops[BLK_OP_READ];
	assert_int_equal(src_io(f, BLK_OP_WRITE, 200, b, 1000), 1000);
	fake_poll_some(f->ctx);
	assert_int_equal(f->dst->nheld, 1);
	assert_int_equal(f->src->ops[BLK_OP_READ], reads);
	assert_int_equal(status(f).ops_in_flight, 1);
	assert_int_equal(status(f).bytes_dirty, 64 * KiB);
	/* The first copy lands; only now does the second start. */
	assert_true(fake_blk_release(f->dst));
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1 &&
			     f->src->ops[BLK_OP_READ] == reads + 1));
	fake_blk_release_all(f->dst);
	assert_true(WAIT_FOR(f->ctx, idle(f)));
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], 2);
	assert_same(f);
	assert_int_equal(mirror_cancel(f->m, false), 0);
	wait_finished(f, JOB_CANCELLED);
	assert_true(status(f).consistent);
	assert_int_equal(f->pivots, 0);
}

/* Write-blocking: a guest write to a chunk being copied waits for it. */
static void test_inflight_wait_write_blocking(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint8_t w[100];
	struct fake_io io = { .op = BLK_OP_WRITE, .off = 64 * KiB + 10,
			      .len = sizeof(w), .buf = w };

	make_pair(f, 256 * KiB, 6);
	o.copy_mode = MIRROR_COPY_WRITE_BLOCKING;
	f->dst->hold[BLK_OP_WRITE] = true;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	memset(w, 'w', sizeof(w));
	io.img = f->src->img;
	assert_true(fake_io_start(&io));
	fake_poll_some(f->ctx);
	assert_false(io.done);
	assert_int_equal(f->src->ops[BLK_OP_WRITE], 0);
	/* The old copy lands first, then the write, then its write-through. */
	fake_blk_release_all(f->dst);
	assert_true(WAIT_FOR(f->ctx, io.done));
	assert_int_equal(io.ret, sizeof(w));
	assert_true(wait_state(f, JOB_READY));
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], 2);
	assert_int_equal(f->dst->data[64 * KiB + 10], 'w');
	assert_same(f);
	complete(f, true, JOB_CONCLUDED);
	assert_int_equal(f->pivots, 0);
	assert_true(status(f).no_pivot);
}

/* ---- the buffer ---------------------------------------------------- */

struct sample {
	struct fixture *f;
	unsigned max_ops, violations;
};

/* At every target request: the buffer is never overdrawn. */
static void sample_hook(void *opaque, struct fake_blk *fk, enum blk_op op,
			uint64_t off, uint64_t bytes)
{
	struct sample *s = opaque;
	struct mirror_status st = status(s->f);

	s->max_ops = VDISK_MAX(s->max_ops, st.ops_in_flight);
	if (st.bytes_in_flight > st.opts.buf_size ||
	    st.ops_in_flight > MIRROR_MAX_OPS)
		s->violations++;
}

/* Two chunks of buffer, sixteen separate dirty chunks. */
static void test_free_list(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	struct sample s = { .f = f };
	uint8_t byte = 'x';

	make_pair(f, 2 * MiB, 7);
	fake_blk_copy(f->dst, f->src);      /* for sync=none */
	o.sync = MIRROR_SYNC_NONE;
	o.buf_size = 128 * KiB;
	f->src->yields = f->dst->yields = 3;
	f->dst->hook = sample_hook;
	f->dst->hook_opaque = &s;
	start(f, &o);
	assert_true(wait_state(f, JOB_READY));
	assert_int_equal(mirror_pause(f->m), 0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(src_io(f, BLK_OP_WRITE,
					2 * i * 64 * KiB + i, &byte, 1), 1);
	assert_int_equal(status(f).bytes_dirty, 16 * 64 * KiB);
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], 0);
	assert_int_equal(mirror_resume(f->m), 0);
	assert_true(WAIT_FOR(f->ctx, idle(f)));
	assert_int_equal(s.violations, 0);
	assert_int_equal(s.max_ops, 2);         /* ran dry, refilled */
	assert_true(f->dst->max_in_flight[BLK_OP_WRITE] <= 2);
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], 16);
	assert_int_equal(status(f).bytes_done, 16 * 64 * KiB);
	assert_same(f);
}

/* ---- rounding and sparseness ------------------------------------------ */

/* granularity 4 KiB, target cluster 64 KiB: whole clusters only. */
static void test_cluster_rounding(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(4 * KiB);
	struct fake_writer w = { .seed = 77, .n = 30 };

	make_pair(f, 2 * MiB, 8);
	/* Zeroes, aligned and not, so that some copies are write-zeroes. */
	memset(f->src->data + 512 * KiB, 0, 128 * KiB);
	memset(f->src->data + MiB + 4 * KiB, 0, 100 * KiB);
	f->src->yields = 1;
	f->dst->check_align = 64 * KiB;
	o.target_cluster = 64 * KiB;
	start(f, &o);
	assert_int_equal(status(f).opts.granularity, 4 * KiB);
	w.img = f->src->img;
	assert_true(fake_writer_start(&w));
	assert_true(WAIT_FOR(f->ctx, w.done));
	assert_int_equal(w.errors, 0);
	complete(f, true, JOB_CONCLUDED);
	assert_int_equal(f->dst->misaligned, 0);
	assert_true(f->dst->ops[BLK_OP_WRITE_ZEROES] > 0);
	assert_same(f);
}

/* The fake's holes read as zeroes: they become holes of the target. */
static void test_sparse_ram(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint64_t size = 4 * MiB, seed = 9, n = size / (64 * KiB);
	bool smap[64], dmap[64];
	unsigned data = 0;

	f->src = fake_blk_new(f->ctx, "src", size);
	f->dst = fake_blk_new(f->ctx, "dst", size);
	assert_non_null(f->src);
	assert_non_null(f->dst);
	fake_blk_fill(f->src, 0, 100 * KiB, &seed);
	fake_blk_fill(f->src, MiB + 4 * KiB, 196 * KiB, &seed);
	fake_blk_fill(f->src, 3 * MiB + 60 * KiB, 10 * KiB, &seed);
	fake_blk_fill(f->src, size - 1, 1, &seed);
	start(f, &o);
	complete(f, true, JOB_CONCLUDED);
	fake_blk_map(f->src, 64 * KiB, smap);
	fake_blk_map(f->dst, 64 * KiB, dmap);
	for (uint64_t i = 0; i < n; i++) {
		assert_int_equal(smap[i], dmap[i]);
		data += smap[i];
	}
	assert_true(data > 0 && data < n / 2);
	assert_same(f);
}

/* map[i]: whether granule i (of g bytes) of fd holds data. */
static void file_map(int fd, uint64_t size, uint64_t g, bool *map)
{
	for (uint64_t i = 0; i < size / g; i++) {
		off_t d = lseek(fd, (off_t)(i * g), SEEK_DATA);

		map[i] = d >= 0 && (uint64_t)d < (i + 1) * g;
	}
}

/* A scratch file of size in the current directory (the build tree). */
static int scratch(uint64_t size)
{
	char path[] = "test-mirror.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

static struct blk_image *open_fd(struct fixture *f, int fd)
{
	struct blk_open_opts bo = {
		.aio = BLK_AIO_THREADS, .cache = BLK_CACHE_NONE,
		.discard = true,
	};
	struct blk_image *img = NULL;
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	bo.path = path;
	assert_int_equal(blk_open(&bo, f->ctx, f->pool, &img), 0);
	return img;
}

#define SP_SIZE (8 * MiB)
#define SP_G    (64 * KiB)

/*
 * A file with holes mirrored to a fresh sparse file, the target known to
 * be zero or not: the SEEK_DATA maps agree granule by granule.
 */
static void test_sparse_file(void **state)
{
	static const uint64_t runs[][2] = {
		{ 0, 12 * KiB }, { MiB, 300 * KiB },
		{ 5 * MiB + 4 * KiB, 4 * KiB },
		{ SP_SIZE - 64 * KiB, 64 * KiB },
	};
	struct fixture *f = *state;
	uint8_t *buf = calloc(1, SP_SIZE), *back = malloc(SP_SIZE);
	bool smap[SP_SIZE / SP_G], dmap[SP_SIZE / SP_G];
	uint64_t seed = 10;
	int sfd = scratch(SP_SIZE);

	assert_non_null(buf);
	assert_non_null(back);
	for (size_t i = 0; i < ARRAY_SIZE(runs); i++) {
		uint64_t off = runs[i][0], len = runs[i][1];

		for (uint64_t k = 0; k < len; k++)
			buf[off + k] = (uint8_t)(fake_rng(&seed) >> 56) | 1;
		assert_int_equal(pwrite(sfd, buf + off, len, (off_t)off),
				 (ssize_t)len);
	}
	assert_int_equal(fsync(sfd), 0);
	if (lseek(sfd, 0, SEEK_HOLE) >= (off_t)SP_SIZE) {
		close(sfd);
		free(buf);
		free(back);
		skip();                  /* no holes on this file system */
	}
	for (int zero = 0; zero < 2; zero++) {
		struct mirror_opts o = opts(SP_G);
		int dfd = scratch(SP_SIZE);
		struct blk_image *si = open_fd(f, sfd), *di = open_fd(f, dfd);
		unsigned data = 0;

		o.target_is_zero = zero;
		f->done = false;
		f->finished = 0;
		assert_int_equal(mirror_start(si, di, &o, &fx_ops, f, &f->m),
				 0);
		complete(f, true, JOB_CONCLUDED);
		mirror_free(f->m);
		f->m = NULL;
		blk_close(si);
		blk_close(di);
		file_map(sfd, SP_SIZE, SP_G, smap);
		file_map(dfd, SP_SIZE, SP_G, dmap);
		for (size_t i = 0; i < ARRAY_SIZE(smap); i++) {
			assert_int_equal(smap[i], dmap[i]);
			data += smap[i];
		}
		assert_int_equal(data, 1 + 5 + 1 + 1);
		assert_int_equal(pread(dfd, back, SP_SIZE, 0),
				 (ssize_t)SP_SIZE);
		assert_int_equal(memcmp(buf, back, SP_SIZE), 0);
		close(dfd);
	}
	close(sfd);
	free(buf);
	free(back);
}

/* ---- errors ------------------------------------------------------------ */

/* The fake and the op that fail for side. */
static struct fake_blk *side_fake(struct fixture *f, int side,
				  enum blk_op *op)
{
	*op = side == MIRROR_SIDE_SOURCE ? BLK_OP_READ : BLK_OP_WRITE;
	return side == MIRROR_SIDE_SOURCE ? f->src : f->dst;
}

/*
 * A job of four 1 MiB copies, held at side until all four are in flight,
 * then released with the next n requests of that side failing.
 */
static struct fake_blk *start_failing(struct fixture *f, int side,
				      enum mirror_on_error pol, uint32_t n)
{
	struct mirror_opts o = opts(64 * KiB);
	struct fake_blk *fk;
	enum blk_op op;

	make_pair(f, 4 * MiB, 11 + (uint64_t)side);
	fk = side_fake(f, side, &op);
	fk->hold[op] = true;
	o.on_source_error = o.on_target_error = pol;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, fk->nheld == 4));
	fake_blk_fail(fk, op, n, -EIO);
	fake_blk_release_all(fk);
	return fk;
}

/* Report: the job fails, the source serves on, free of the job. */
static void test_error_report(void **state)
{
	struct fixture *f = *state;

	for (int side = MIRROR_SIDE_SOURCE; side <= MIRROR_SIDE_TARGET;
	     side++) {
		uint8_t buf[512] = { 0 };
		struct mirror_status st;

		start_failing(f, side, MIRROR_ERROR_REPORT, 1);
		wait_finished(f, JOB_FAILED);
		st = status(f);
		assert_int_equal(st.error, -EIO);
		assert_int_equal(st.error_side, side);
		assert_false(st.consistent);
		assert_int_equal(f->pivots, 0);
		assert_int_equal(src_io(f, BLK_OP_WRITE, 0, buf, 512), 512);
		assert_int_equal(src_io(f, BLK_OP_READ, 512, buf, 512), 512);
		assert_int_equal(blk_size_lock(f->src->img), 0);
		blk_size_unlock(f->src->img);
		assert_int_equal(mirror_complete(f->m, false), -EINVAL);
		free_pair(f);
	}
}

/* Stop: three copies fail together; one pause, one resume retries. */
static void test_error_stop(void **state)
{
	struct fixture *f = *state;

	for (int side = MIRROR_SIDE_SOURCE; side <= MIRROR_SIDE_TARGET;
	     side++) {
		struct mirror_status st;

		start_failing(f, side, MIRROR_ERROR_STOP, 3);
		assert_true(WAIT_FOR(f->ctx, status(f).ops_in_flight == 0));
		st = status(f);
		assert_int_equal(st.state, JOB_PAUSED);
		assert_true(st.user_paused);
		assert_int_equal(st.error, -EIO);
		assert_int_equal(st.error_side, side);
		assert_int_equal(st.bytes_dirty, 3 * MiB);
		assert_int_equal(st.bytes_done, MiB);
		fake_poll_some(f->ctx);
		assert_int_equal(status(f).bytes_done, MiB);
		assert_int_equal(mirror_resume(f->m), 0);
		complete(f, true, JOB_CONCLUDED);
		assert_same(f);
		free_pair(f);
	}
}

/*
 * Ignore: the areas stay dirty and are retried after a back-off (which a
 * guest write must not cut short) until the fault clears.  Once
 * completing, an error fails the job whatever the policy.
 */
static void test_error_ignore(void **state)
{
	struct fixture *f = *state;

	for (int side = MIRROR_SIDE_SOURCE; side <= MIRROR_SIDE_TARGET;
	     side++) {
		struct fake_blk *fk = start_failing(f, side,
						    MIRROR_ERROR_IGNORE,
						    FAKE_BLK_FOREVER);
		unsigned long long t0;
		struct mirror_status st;
		uint8_t byte = 0;

		assert_true(WAIT_FOR(f->ctx, status(f).ops_in_flight == 0));
		t0 = test_now_ns();
		assert_int_equal(fk->failed, 4);
		assert_int_equal(src_io(f, BLK_OP_WRITE, 5, &byte, 1), 1);
		fake_poll_some(f->ctx);
		if (test_now_ns() - t0 < 80ull * 1000 * 1000)
			assert_int_equal(fk->failed, 4);
		assert_true(WAIT_FOR(f->ctx, fk->failed > 4));  /* retried */
		st = status(f);
		assert_int_equal(st.state, JOB_RUNNING);
		assert_false(st.ever_ready);
		assert_int_equal(st.error, -EIO);
		assert_int_equal(st.error_side, side);
		assert_true(st.bytes_dirty + st.bytes_in_flight == 4 * MiB);
		fake_blk_fail(fk, side == MIRROR_SIDE_SOURCE ? BLK_OP_READ :
			      BLK_OP_WRITE, 0, 0);
		assert_true(wait_state(f, JOB_READY));
		assert_same(f);
		if (side == MIRROR_SIDE_TARGET) {
			fake_blk_fail(f->dst, BLK_OP_FLUSH, 1, -EIO);
			complete(f, false, JOB_FAILED);
			assert_int_equal(f->pivots, 0);
		} else {
			complete(f, true, JOB_CONCLUDED);
		}
		free_pair(f);
	}
}

/* A pivot that fails fails the job; nothing is switched. */
static void test_pivot_fails(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	struct mirror_status st;
	uint8_t buf[512];

	make_pair(f, MiB, 21);
	f->pivot_ret = -EIO;
	start(f, &o);
	complete(f, false, JOB_FAILED);
	st = status(f);
	assert_int_equal(st.error, -EIO);
	assert_int_equal(st.error_side, MIRROR_SIDE_TARGET);
	assert_false(st.pivoted);
	assert_int_equal(f->pivots, 1);
	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(src_io(f, BLK_OP_WRITE, 0, buf, 512), 512);
	assert_int_equal(f->src->data[0], 0xab);
	assert_int_not_equal(f->dst->data[0], 0xab);
}

/* ---- cancel ------------------------------------------------------------ */

static void test_cancel_before_ready(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	struct mirror_status st;

	make_pair(f, MiB, 14);
	f->dst->hold[BLK_OP_WRITE] = true;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	assert_int_equal(mirror_complete(f->m, false), -EBUSY);
	assert_int_equal(mirror_cancel(f->m, false), 0);
	assert_int_equal(mirror_cancel(f->m, false), -EINVAL);
	/* It ends once its copy is over. */
	fake_poll_some(f->ctx);
	assert_false(f->done);
	fake_blk_release_all(f->dst);
	wait_finished(f, JOB_CANCELLED);
	st = status(f);
	assert_false(st.consistent);
	assert_false(st.ever_ready);
	assert_int_equal(f->pivots, 0);
	assert_int_equal(mirror_cancel(f->m, true), -EINVAL);
	assert_int_equal(mirror_complete(f->m, false), -EINVAL);
	assert_int_equal(mirror_pause(f->m), -EINVAL);
	assert_int_equal(mirror_resume(f->m), -EINVAL);
}

/* After ready: a final sync (even paused), a consistent copy, no switch. */
static void test_cancel_after_ready(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	struct mirror_status st;
	uint8_t buf[3000];

	make_pair(f, MiB, 15);
	start(f, &o);
	assert_true(wait_state(f, JOB_READY));
	assert_int_equal(mirror_pause(f->m), 0);
	memset(buf, 'c', sizeof(buf));
	for (uint64_t i = 0; i < 3; i++)
		assert_int_equal(src_io(f, BLK_OP_WRITE, i * 300 * KiB + 7,
					buf, sizeof(buf)), sizeof(buf));
	assert_true(status(f).bytes_dirty > 0);
	assert_int_equal(mirror_cancel(f->m, false), 0);
	wait_finished(f, JOB_CANCELLED);
	st = status(f);
	assert_true(st.consistent);
	assert_false(st.pivoted);
	assert_int_equal(f->pivots, 0);
	assert_same(f);
}

/* Force cancel stops even a completing job at once. */
static void test_force_cancel(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint8_t byte = 1;

	make_pair(f, MiB, 16);
	start(f, &o);
	assert_true(wait_state(f, JOB_READY));
	f->dst->hold[BLK_OP_WRITE] = true;
	assert_int_equal(src_io(f, BLK_OP_WRITE, 5, &byte, 1), 1);
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	assert_int_equal(mirror_complete(f->m, false), 0);
	assert_int_equal(state_of(f), JOB_COMPLETING);
	assert_int_equal(mirror_cancel(f->m, false), -EINVAL);
	assert_int_equal(mirror_cancel(f->m, true), 0);
	fake_blk_release_all(f->dst);
	wait_finished(f, JOB_CANCELLED);
	assert_false(status(f).consistent);
	assert_int_equal(f->pivots, 0);
}

/* ---- pause, drain, size ------------------------------------------------ */

static void test_pause_resume(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	struct mirror_status st;
	uint64_t writes;

	make_pair(f, 2 * MiB, 17);
	o.buf_size = 256 * KiB;                 /* one copy at a time */
	f->dst->hold[BLK_OP_WRITE] = true;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	assert_int_equal(mirror_pause(f->m), 0);
	assert_int_equal(state_of(f), JOB_PAUSED);
	/* The copy under way ends; no other starts. */
	fake_blk_release_all(f->dst);
	assert_true(WAIT_FOR(f->ctx, status(f).ops_in_flight == 0));
	writes = f->dst->ops[BLK_OP_WRITE];
	fake_poll_some(f->ctx);
	st = status(f);
	assert_int_equal(st.state, JOB_PAUSED);
	assert_true(st.user_paused);
	assert_int_equal(st.bytes_done, 256 * KiB);
	assert_int_equal(st.bytes_dirty, 2 * MiB - 256 * KiB);
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], writes);
	/* Pauses count. */
	assert_int_equal(mirror_pause(f->m), 0);
	assert_int_equal(mirror_resume(f->m), 0);
	assert_int_equal(state_of(f), JOB_PAUSED);
	assert_int_equal(mirror_resume(f->m), 0);
	assert_int_equal(mirror_resume(f->m), -EINVAL);
	assert_true(wait_state(f, JOB_READY));
	assert_int_equal(status(f).bytes_done, 2 * MiB);
	assert_same(f);
}

static void test_drain_pauses(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	struct mirror_status st;
	uint64_t reads;

	make_pair(f, 2 * MiB, 18);
	o.buf_size = 256 * KiB;
	f->dst->hold[BLK_OP_WRITE] = true;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	blk_drained_begin(f->src->img);
	st = status(f);
	assert_int_equal(st.state, JOB_PAUSED);
	assert_true(st.drained);
	assert_false(st.user_paused);
	fake_blk_release_all(f->dst);
	assert_true(WAIT_FOR(f->ctx, status(f).ops_in_flight == 0));
	reads = f->src->ops[BLK_OP_READ];
	fake_poll_some(f->ctx);
	assert_int_equal(f->src->ops[BLK_OP_READ], reads);
	assert_int_equal(state_of(f), JOB_PAUSED);
	blk_drained_end(f->src->img);
	assert_false(status(f).drained);
	assert_true(wait_state(f, JOB_READY));

	/* Completing while someone else holds a drain. */
	blk_drained_begin(f->src->img);
	assert_int_equal(state_of(f), JOB_PAUSED);
	assert_int_equal(mirror_complete(f->m, false), 0);
	wait_finished(f, JOB_CONCLUDED);
	assert_int_equal(f->pivots, 1);
	assert_int_equal(f->pivot_drain_depth, 2);
	blk_drained_end(f->src->img);
	assert_same(f);
	free_pair(f);

	/* Started while drained: paused from the start. */
	make_pair(f, MiB, 19);
	blk_drained_begin(f->src->img);
	start(f, &o);
	fake_poll_some(f->ctx);
	st = status(f);
	assert_int_equal(st.state, JOB_PAUSED);
	assert_true(st.drained);
	assert_int_equal(f->src->ops[BLK_OP_READ], 0);
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], 0);
	blk_drained_end(f->src->img);
	assert_true(wait_state(f, JOB_READY));
	assert_same(f);
}

static void test_size_lock(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint8_t buf[512] = { 0 };

	make_pair(f, MiB, 20);
	start(f, &o);
	assert_true(wait_state(f, JOB_READY));
	assert_int_equal(src_io(f, BLK_OP_TRUNCATE, 2 * MiB, NULL, 0), -EBUSY);
	assert_int_equal(src_io(f, BLK_OP_WRITE, MiB - 100, buf, 512), -EFBIG);
	assert_int_equal(src_io(f, BLK_OP_WRITE_ZEROES, MiB, NULL, 1), -EFBIG);
	assert_int_equal(src_io(f, BLK_OP_WRITE, MiB - 512, buf, 512), 512);
	assert_int_equal(blk_size_lock(f->src->img), -EBUSY);
	assert_int_equal(mirror_cancel(f->m, false), 0);
	wait_finished(f, JOB_CANCELLED);
	/* Let go: the fake has no file, so its driver answers now. */
	assert_int_equal(src_io(f, BLK_OP_TRUNCATE, 2 * MiB, NULL, 0),
			 -EOPNOTSUPP);
	assert_int_equal(blk_size_lock(f->src->img), 0);
	blk_size_unlock(f->src->img);
}

/* ---- start, complete and free ----------------------------------------- */

static void test_start_errors(void **state)
{
	struct fixture *f = *state;
	static const struct mirror_opts bad[] = {
		{ .granularity = 12 * KiB },            /* no power of two */
		{ .granularity = 2 * KiB },             /* too small */
		{ .granularity = 128 * MiB },           /* too large */
		{ .buf_size = 100 * KiB },              /* no multiple */
		{ .sync = 7 }, { .copy_mode = 5 },
		{ .on_source_error = 9 }, { .on_target_error = 9 },
		{ .target_cluster = 192 * KiB },
		{ .target_cluster = 128 * MiB },
	};
	struct fake_blk *small, *other;
	struct mirror_opts o = opts(4 * KiB);
	struct mirror_status st;
	struct mirror *m2 = NULL;

	make_pair(f, MiB, 22);
	small = fake_blk_new(f->ctx, "small", MiB - 4 * KiB);
	other = fake_blk_new(f->ctx, "other", MiB);
	assert_non_null(small);
	assert_non_null(other);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(mirror_start(f->src->img, f->dst->img,
					      &bad[i], &fx_ops, f, &m2),
				 -EINVAL);
	assert_int_equal(mirror_start(f->src->img, small->img, &o, &fx_ops, f,
				      &m2), -EINVAL);
	assert_int_equal(mirror_start(f->src->img, f->src->img, &o, &fx_ops,
				      f, &m2), -EINVAL);
	assert_null(m2);
	/* Refusals leave nothing behind. */
	assert_int_equal(blk_size_lock(f->src->img), 0);
	blk_size_unlock(f->src->img);

	/* 4 KiB granularity with the default buffer; one job per source. */
	start(f, &o);
	st = status(f);
	assert_int_equal(st.opts.granularity, 4 * KiB);
	assert_int_equal(st.opts.buf_size, MIRROR_BUF_SIZE_DEF);
	assert_int_equal(mirror_start(f->src->img, other->img, &o, &fx_ops, f,
				      &m2), -EBUSY);
	assert_true(wait_state(f, JOB_READY));
	assert_same(f);
	assert_int_equal(mirror_cancel(f->m, true), 0);
	wait_finished(f, JOB_CANCELLED);
	mirror_free(f->m);
	f->m = NULL;

	/* Defaults: the granularity follows a larger cluster. */
	o = opts(0);
	o.target_cluster = 128 * KiB;
	assert_int_equal(mirror_start(f->src->img, other->img, &o, &fx_ops, f,
				      &m2), 0);
	mirror_get_status(m2, &st);
	assert_int_equal(st.opts.granularity, 128 * KiB);
	assert_int_equal(st.opts.buf_size, MIRROR_BUF_SIZE_DEF);
	assert_int_equal(st.opts.sync, MIRROR_SYNC_FULL);
	mirror_free(m2);
	fake_blk_free(small);
	fake_blk_free(other);
}

static void test_free_running(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint8_t buf[512] = { 0 };

	mirror_free(NULL);

	/* A job in full flight: force-cancelled, never tells it finished. */
	make_pair(f, 4 * MiB, 23);
	f->src->yields = f->dst->yields = 2;
	start(f, &o);
	assert_int_equal(state_of(f), JOB_RUNNING);
	mirror_free(f->m);
	f->m = NULL;
	fake_poll_some(f->ctx);
	assert_int_equal(f->finished, 0);
	assert_int_equal(src_io(f, BLK_OP_WRITE, 0, buf, 512), 512);
	assert_int_equal(blk_size_lock(f->src->img), 0);
	blk_size_unlock(f->src->img);

	/* A job over, its finished callback not run yet. */
	f->src->yields = f->dst->yields = 0;
	fake_blk_fail(f->src, BLK_OP_READ, 1, -EIO);
	start(f, &o);
	mirror_free(f->m);
	f->m = NULL;
	fake_poll_some(f->ctx);
	assert_int_equal(f->finished, 0);

	/* From the finished callback itself. */
	f->free_in_finished = true;
	start(f, &o);
	assert_true(wait_state(f, JOB_READY));
	assert_int_equal(mirror_cancel(f->m, false), 0);
	wait_finished(f, JOB_CANCELLED);
	assert_null(f->m);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_random_writes),
		T(test_inflight_wait_background),
		T(test_inflight_wait_write_blocking),
		T(test_free_list),
		T(test_cluster_rounding),
		T(test_sparse_ram),
		T(test_sparse_file),
		T(test_error_report),
		T(test_error_stop),
		T(test_error_ignore),
		T(test_pivot_fails),
		T(test_cancel_before_ready),
		T(test_cancel_after_ready),
		T(test_force_cancel),
		T(test_pause_resume),
		T(test_drain_pauses),
		T(test_size_lock),
		T(test_start_errors),
		T(test_free_running),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}

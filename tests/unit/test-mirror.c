/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the mirror job, mostly between two RAM fakes (fake-blk.h) that
 * can fail, hold or reorder requests, and once between real sparse files.
 *
 * The main thread owns the context.  Guest writes and the job run in
 * coroutines of it that never call cmocka: they record what happened and
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
#include <sys/uio.h>
#include <cmocka.h>

#include "block.h"
#include "coroutine.h"
#include "fake-blk.h"
#include "loop.h"
#include "mirror.h"
#include "tpool.h"
#include "test-util.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

/* Poll ctx until cond holds or the limit passes; the value of cond. */
#define WAIT_FOR(ctx, cond)                                                \
	({                                                                 \
		unsigned long long end_ = test_now_ns() + TEST_WAIT_LIMIT_NS; \
		while (!(cond) && test_now_ns() < end_) {                  \
			if (!loop_poll((ctx), false))                      \
				usleep(20);                                \
		}                                                          \
		(bool)(cond);                                              \
	})

struct fixture {
	struct loop *ctx;
	struct tpool *pool;
	struct fake_blk *src, *dst;
	struct mirror *m;
	/* What the callbacks saw. */
	int pivots, finished;
	int pivot_ret;                  /* what pivot answers */
	unsigned pivot_drain_depth;
	uint64_t pivot_unflushed;
	bool free_in_finished;
	bool done;
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

static int teardown(void **state)
{
	struct fixture *f = *state;

	mirror_free(f->m);
	if (f->src)
		fake_blk_release_all(f->src);
	if (f->dst) {
		f->dst->hook = NULL;
		fake_blk_release_all(f->dst);
	}
	fake_blk_free(f->src);
	fake_blk_free(f->dst);
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

static bool idle(struct fixture *f)
{
	struct mirror_status st = status(f);

	return st.bytes_dirty == 0 && st.ops_in_flight == 0;
}

/* For sync=none: the target starts as a copy of the source. */
static void copy_to_target(struct fixture *f)
{
	memcpy(f->dst->data, f->src->data, f->src->size);
	memcpy(f->dst->alloc, f->src->alloc,
	       DIV_ROUND_UP(f->src->size, FAKE_BLK_BLOCK));
}

static void assert_same(struct fixture *f)
{
	assert_int_equal(memcmp(f->src->data, f->dst->data, f->src->size), 0);
}

/* Poll for a while without expecting anything. */
static void poll_some(struct loop *ctx)
{
	for (int i = 0; i < 50; i++) {
		if (!loop_poll(ctx, false))
			usleep(100);
	}
}

/* One guest request in a coroutine. */
struct gio {
	struct blk_image *img;
	enum blk_op op;
	uint64_t off, len;
	void *buf;
	ssize_t ret;
	bool done;
};

static void coroutine_fn gio_entry(void *opaque)
{
	struct gio *g = opaque;
	struct iovec v = { g->buf, g->len };

	switch (g->op) {
	case BLK_OP_WRITE:
		g->ret = blk_co_pwritev(g->img, g->off, &v, 1, 0);
		break;
	case BLK_OP_READ:
		g->ret = blk_co_preadv(g->img, g->off, &v, 1, 0);
		break;
	case BLK_OP_WRITE_ZEROES:
		g->ret = blk_co_write_zeroes(g->img, g->off, g->len, 0);
		break;
	case BLK_OP_DISCARD:
		g->ret = blk_co_discard(g->img, g->off, g->len);
		break;
	case BLK_OP_TRUNCATE:
		g->ret = blk_co_truncate(g->img, g->off);
		break;
	default:
		g->ret = -EINVAL;
	}
	g->done = true;
}

static void gio_start(struct gio *g)
{
	struct coroutine *co = co_create(gio_entry, g);

	assert_non_null(co);
	g->done = false;
	co_enter(co);
}

static ssize_t run_io(struct fixture *f, struct blk_image *img,
		      enum blk_op op, uint64_t off, void *buf, uint64_t len)
{
	struct gio g = { img, op, off, len, buf, 0, false };

	gio_start(&g);
	assert_true(WAIT_FOR(f->ctx, g.done));
	return g.ret;
}

static void wait_finished(struct fixture *f)
{
	assert_true(WAIT_FOR(f->ctx, f->done));
	assert_int_equal(f->finished, 1);
}

/* ---- data integrity --------------------------------------------------- */

/* A guest writing at random while the job copies. */
struct writer {
	struct fixture *f;
	uint64_t seed;
	int n;
	int before_ready, errors;
	bool done;
};

#define WRITER_MAX (48 * KiB)

static void coroutine_fn writer_entry(void *opaque)
{
	struct writer *w = opaque;
	struct blk_image *img = w->f->src->img;
	uint64_t size = w->f->src->size;
	uint8_t *buf = malloc(WRITER_MAX);

	for (int i = 0; buf && i < w->n; i++) {
		uint64_t r = fake_rng(&w->seed);
		uint64_t len = 1 + r % WRITER_MAX;
		uint64_t off = (r >> 20) % size;
		struct iovec v = { buf, 0 };
		ssize_t ret;

		len = VDISK_MIN(len, size - off);
		v.iov_len = len;
		switch ((r >> 60) % 8) {
		case 0:
			ret = blk_co_write_zeroes(img, off, len, 0);
			break;
		case 1:
			ret = blk_co_discard(img, off, len);
			break;
		default:
			for (uint64_t k = 0; k < len; k++)
				buf[k] = (uint8_t)(fake_rng(&w->seed) >> 40);
			ret = blk_co_pwritev(img, off, &v, 1, 0);
			break;
		}
		if (ret < 0)
			w->errors++;
		if (!status(w->f).ever_ready)
			w->before_ready++;
	}
	if (!buf)
		w->errors++;
	free(buf);
	w->done = true;
}

#define NWRITERS 4

static void check_random_writes(struct fixture *f,
				enum mirror_copy_mode mode, uint64_t seed)
{
	struct mirror_opts o = opts(16 * KiB);
	struct writer w[NWRITERS];
	struct mirror_status st;
	int before_ready = 0;
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
		struct coroutine *co;

		w[i] = (struct writer){ .f = f, .seed = seed * 1000 + i,
					.n = 40 };
		co = co_create(writer_entry, &w[i]);
		assert_non_null(co);
		co_enter(co);
	}
	for (int i = 0; i < NWRITERS; i++) {
		assert_true(WAIT_FOR(f->ctx, w[i].done));
		assert_int_equal(w[i].errors, 0);
		before_ready += w[i].before_ready;
	}
	/* The writes really raced the first pass. */
	assert_true(before_ready > 0);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(mirror_complete(f->m, false), 0);
	f->free_in_finished = false;
	wait_finished(f);
	st = status(f);
	assert_int_equal(st.state, JOB_CONCLUDED);
	assert_true(st.consistent);
	assert_true(st.pivoted);
	assert_int_equal(st.error, 0);
	assert_int_equal(f->pivots, 1);
	assert_true(f->pivot_drain_depth > 0);
	assert_int_equal(f->pivot_unflushed, 0);
	assert_same(f);
	/* Switched: a write through the source's handle lands in the target. */
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, 0, buf, 512),
			 512);
	assert_int_equal(f->dst->data[0], 0xee);
	assert_int_not_equal(f->src->data[0], 0xee);
	mirror_free(f->m);
	f->m = NULL;
}

static void test_random_writes(void **state)
{
	struct fixture *f = *state;

	for (uint64_t seed = 1; seed <= 3; seed++) {
		for (int mode = 0; mode < 2; mode++) {
			check_random_writes(f, (enum mirror_copy_mode)mode,
					    seed);
			fake_blk_free(f->src);
			fake_blk_free(f->dst);
			f->src = f->dst = NULL;
			f->pivots = f->finished = 0;
		}
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
	copy_to_target(f);
	o.sync = MIRROR_SYNC_NONE;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	f->dst->hold[BLK_OP_WRITE] = true;
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, 100, a, 1000),
			 1000);
	/* The copy of chunk 0 read the source and is held at the target. */
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	reads = f->src->ops[BLK_OP_READ];
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, 200, b, 1000),
			 1000);
	poll_some(f->ctx);
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
	wait_finished(f);
	assert_int_equal(state_of(f), JOB_CANCELLED);
	assert_true(status(f).consistent);
	assert_int_equal(f->pivots, 0);
}

/* Write-blocking: a guest write to a chunk being copied waits for it. */
static void test_inflight_wait_write_blocking(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint8_t w[100];
	struct gio g = { .op = BLK_OP_WRITE, .off = 64 * KiB + 10,
			 .len = sizeof(w), .buf = w };

	make_pair(f, 256 * KiB, 6);
	o.copy_mode = MIRROR_COPY_WRITE_BLOCKING;
	f->dst->hold[BLK_OP_WRITE] = true;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	memset(w, 'w', sizeof(w));
	g.img = f->src->img;
	gio_start(&g);
	poll_some(f->ctx);
	assert_false(g.done);
	assert_int_equal(f->src->ops[BLK_OP_WRITE], 0);
	/* The old copy lands first, then the write, then its write-through. */
	fake_blk_release_all(f->dst);
	assert_true(WAIT_FOR(f->ctx, g.done));
	assert_int_equal(g.ret, sizeof(w));
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], 2);
	assert_int_equal(f->dst->data[64 * KiB + 10], 'w');
	assert_same(f);
	assert_int_equal(mirror_complete(f->m, true), 0);
	wait_finished(f);
	assert_int_equal(state_of(f), JOB_CONCLUDED);
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
	copy_to_target(f);
	o.sync = MIRROR_SYNC_NONE;
	o.buf_size = 128 * KiB;
	f->src->yields = f->dst->yields = 3;
	f->dst->hook = sample_hook;
	f->dst->hook_opaque = &s;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(mirror_pause(f->m), 0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE,
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
	struct writer w = { .f = f, .seed = 77, .n = 30 };
	struct coroutine *co;

	make_pair(f, 2 * MiB, 8);
	/* Zeroes, aligned and not, so that some copies are write-zeroes. */
	memset(f->src->data + 512 * KiB, 0, 128 * KiB);
	memset(f->src->data + MiB + 4 * KiB, 0, 100 * KiB);
	f->src->yields = 1;
	f->dst->check_align = 64 * KiB;
	o.target_cluster = 64 * KiB;
	start(f, &o);
	assert_int_equal(status(f).opts.granularity, 4 * KiB);
	co = co_create(writer_entry, &w);
	assert_non_null(co);
	co_enter(co);
	assert_true(WAIT_FOR(f->ctx, w.done));
	assert_int_equal(w.errors, 0);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(mirror_complete(f->m, true), 0);
	wait_finished(f);
	assert_int_equal(state_of(f), JOB_CONCLUDED);
	assert_int_equal(f->dst->misaligned, 0);
	assert_true(f->dst->ops[BLK_OP_WRITE_ZEROES] > 0);
	assert_same(f);
}

/* Which granules of [0, size) hold data, by pred. */
static void data_map(bool *map, uint64_t size, uint64_t g,
		     bool (*pred)(void *, uint64_t, uint64_t), void *arg)
{
	for (uint64_t i = 0; i < size / g; i++)
		map[i] = pred(arg, i * g, g);
}

static bool fake_pred(void *arg, uint64_t off, uint64_t len)
{
	return fake_blk_allocated(arg, off, len);
}

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
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(mirror_complete(f->m, true), 0);
	wait_finished(f);
	data_map(smap, size, 64 * KiB, fake_pred, f->src);
	data_map(dmap, size, 64 * KiB, fake_pred, f->dst);
	for (uint64_t i = 0; i < n; i++) {
		assert_int_equal(smap[i], dmap[i]);
		data += smap[i];
	}
	assert_true(data > 0 && data < n / 2);
	assert_same(f);
}

static bool file_pred(void *arg, uint64_t off, uint64_t len)
{
	off_t d = lseek(*(int *)arg, (off_t)off, SEEK_DATA);

	return d >= 0 && (uint64_t)d < off + len;
}

/* A scratch file in the current directory (the build tree), unlinked. */
static int scratch(char *path, uint64_t size)
{
	int fd;

	strcpy(path, "test-mirror.XXXXXX");
	fd = mkstemp(path);
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

/* A sparse file mirrored to a fresh sparse file stays sparse. */
static void test_sparse_file(void **state)
{
	static const uint64_t runs[][2] = {
		{ 0, 12 * KiB }, { MiB, 300 * KiB }, { 5 * MiB + 4 * KiB, 4 * KiB },
		{ SP_SIZE - 64 * KiB, 64 * KiB },
	};
	struct fixture *f = *state;
	uint8_t *buf = malloc(SP_SIZE), *back = malloc(SP_SIZE);
	bool smap[SP_SIZE / SP_G], dmap[SP_SIZE / SP_G];
	char path[32];
	uint64_t seed = 10;
	int sfd;

	assert_non_null(buf);
	assert_non_null(back);
	sfd = scratch(path, SP_SIZE);
	memset(buf, 0, SP_SIZE);
	for (size_t i = 0; i < ARRAY_SIZE(runs); i++) {
		for (uint64_t k = 0; k < runs[i][1]; k++)
			buf[runs[i][0] + k] = (uint8_t)(fake_rng(&seed) >> 56) | 1;
		assert_int_equal(pwrite(sfd, buf + runs[i][0], runs[i][1],
					(off_t)runs[i][0]), (ssize_t)runs[i][1]);
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
		struct blk_image *si, *di;
		unsigned data = 0;
		int dfd = scratch(path, SP_SIZE);

		si = open_fd(f, sfd);
		di = open_fd(f, dfd);
		o.target_is_zero = zero;
		f->done = false;
		f->finished = 0;
		assert_int_equal(mirror_start(si, di, &o, &fx_ops, f, &f->m),
				 0);
		assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
		assert_int_equal(mirror_complete(f->m, true), 0);
		wait_finished(f);
		assert_int_equal(state_of(f), JOB_CONCLUDED);
		mirror_free(f->m);
		f->m = NULL;
		blk_close(si);
		blk_close(di);
		data_map(smap, SP_SIZE, SP_G, file_pred, &sfd);
		data_map(dmap, SP_SIZE, SP_G, file_pred, &dfd);
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

static void free_pair(struct fixture *f)
{
	mirror_free(f->m);
	f->m = NULL;
	fake_blk_free(f->src);
	fake_blk_free(f->dst);
	f->src = f->dst = NULL;
	f->pivots = f->finished = 0;
	f->done = false;
}

/* The fake and the op that fail for side. */
static struct fake_blk *side_fake(struct fixture *f, int side,
				  enum blk_op *op)
{
	*op = side == MIRROR_SIDE_SOURCE ? BLK_OP_READ : BLK_OP_WRITE;
	return side == MIRROR_SIDE_SOURCE ? f->src : f->dst;
}

static void test_error_report(void **state)
{
	struct fixture *f = *state;

	for (int side = MIRROR_SIDE_SOURCE; side <= MIRROR_SIDE_TARGET;
	     side++) {
		struct mirror_opts o = opts(64 * KiB);
		int err = side == MIRROR_SIDE_SOURCE ? -EIO : -ENOSPC;
		uint8_t buf[512] = { 0 };
		struct mirror_status st;
		struct fake_blk *fk;
		enum blk_op op;

		make_pair(f, MiB, 11);
		fk = side_fake(f, side, &op);
		fake_blk_fail(fk, op, 1, err);
		start(f, &o);
		wait_finished(f);
		st = status(f);
		assert_int_equal(st.state, JOB_FAILED);
		assert_int_equal(st.error, err);
		assert_int_equal(st.error_side, side);
		assert_false(st.consistent);
		assert_int_equal(f->pivots, 0);
		/* The source goes on serving, free of the job. */
		assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, 0, buf,
					512), 512);
		assert_int_equal(run_io(f, f->src->img, BLK_OP_READ, 512, buf,
					512), 512);
		assert_int_equal(blk_size_lock(f->src->img), 0);
		blk_size_unlock(f->src->img);
		assert_int_equal(mirror_complete(f->m, false), -EINVAL);
		free_pair(f);
	}
}

/*
 * Stop: four copies are held, three fail together.  The job pauses once
 * with the error; one resume retries and it completes.
 */
static void test_error_stop(void **state)
{
	struct fixture *f = *state;

	for (int side = MIRROR_SIDE_SOURCE; side <= MIRROR_SIDE_TARGET;
	     side++) {
		struct mirror_opts o = opts(64 * KiB);
		struct mirror_status st;
		struct fake_blk *fk;
		enum blk_op op;

		make_pair(f, 4 * MiB, 12);
		fk = side_fake(f, side, &op);
		fk->hold[op] = true;
		o.on_source_error = o.on_target_error = MIRROR_ERROR_STOP;
		start(f, &o);
		assert_true(WAIT_FOR(f->ctx, fk->nheld == 4));
		fake_blk_fail(fk, op, 3, -EIO);
		fake_blk_release_all(fk);
		assert_true(WAIT_FOR(f->ctx, status(f).ops_in_flight == 0));
		st = status(f);
		assert_int_equal(st.state, JOB_PAUSED);
		assert_true(st.user_paused);
		assert_int_equal(st.error, -EIO);
		assert_int_equal(st.error_side, side);
		assert_int_equal(st.bytes_dirty, 3 * MiB);
		assert_int_equal(st.bytes_done, MiB);
		poll_some(f->ctx);
		assert_int_equal(status(f).bytes_done, MiB);
		assert_int_equal(mirror_resume(f->m), 0);
		assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
		assert_int_equal(mirror_complete(f->m, true), 0);
		wait_finished(f);
		assert_int_equal(state_of(f), JOB_CONCLUDED);
		assert_same(f);
		free_pair(f);
	}
}

/*
 * Ignore: the area stays dirty and is retried until the fault clears.
 * Once completing, an error fails the job whatever the policy.
 */
static void test_error_ignore(void **state)
{
	struct fixture *f = *state;

	for (int side = MIRROR_SIDE_SOURCE; side <= MIRROR_SIDE_TARGET;
	     side++) {
		struct mirror_opts o = opts(64 * KiB);
		struct mirror_status st;
		struct fake_blk *fk;
		enum blk_op op;
		uint64_t failed;

		make_pair(f, MiB, 13);
		fk = side_fake(f, side, &op);
		fake_blk_fail(fk, op, FAKE_BLK_FOREVER, -EIO);
		o.on_source_error = o.on_target_error = MIRROR_ERROR_IGNORE;
		start(f, &o);
		assert_true(WAIT_FOR(f->ctx, status(f).error == -EIO));
		failed = fk->failed;
		assert_true(WAIT_FOR(f->ctx, fk->failed > failed));  /* retried */
		st = status(f);
		assert_int_equal(st.state, JOB_RUNNING);
		assert_false(st.ever_ready);
		assert_int_equal(st.error_side, side);
		assert_true(st.bytes_dirty + st.bytes_in_flight == MiB);
		fake_blk_fail(fk, op, 0, 0);
		assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
		assert_same(f);
		if (side == MIRROR_SIDE_TARGET) {
			fake_blk_fail(f->dst, BLK_OP_FLUSH, 1, -EIO);
			assert_int_equal(mirror_complete(f->m, false), 0);
			wait_finished(f);
			assert_int_equal(state_of(f), JOB_FAILED);
			assert_int_equal(f->pivots, 0);
		} else {
			assert_int_equal(mirror_complete(f->m, true), 0);
			wait_finished(f);
			assert_int_equal(state_of(f), JOB_CONCLUDED);
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
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(mirror_complete(f->m, false), 0);
	assert_int_equal(mirror_complete(f->m, false), -EINVAL);
	wait_finished(f);
	st = status(f);
	assert_int_equal(st.state, JOB_FAILED);
	assert_int_equal(st.error, -EIO);
	assert_int_equal(st.error_side, MIRROR_SIDE_TARGET);
	assert_false(st.pivoted);
	assert_int_equal(f->pivots, 1);
	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, 0, buf, 512),
			 512);
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
	poll_some(f->ctx);
	assert_false(f->done);
	fake_blk_release_all(f->dst);
	wait_finished(f);
	st = status(f);
	assert_int_equal(st.state, JOB_CANCELLED);
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
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(mirror_pause(f->m), 0);
	memset(buf, 'c', sizeof(buf));
	for (int i = 0; i < 3; i++)
		assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE,
					(uint64_t)i * 300 * KiB + 7, buf,
					sizeof(buf)), sizeof(buf));
	assert_true(status(f).bytes_dirty > 0);
	assert_int_equal(mirror_cancel(f->m, false), 0);
	wait_finished(f);
	st = status(f);
	assert_int_equal(st.state, JOB_CANCELLED);
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
	struct mirror_status st;
	uint8_t byte = 1;

	make_pair(f, MiB, 16);
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	f->dst->hold[BLK_OP_WRITE] = true;
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, 5, &byte, 1), 1);
	assert_true(WAIT_FOR(f->ctx, f->dst->nheld == 1));
	assert_int_equal(mirror_complete(f->m, false), 0);
	assert_int_equal(state_of(f), JOB_COMPLETING);
	assert_int_equal(mirror_cancel(f->m, false), -EINVAL);
	assert_int_equal(mirror_cancel(f->m, true), 0);
	fake_blk_release_all(f->dst);
	wait_finished(f);
	st = status(f);
	assert_int_equal(st.state, JOB_CANCELLED);
	assert_false(st.consistent);
	assert_int_equal(f->pivots, 0);
}

/* ---- pause, drain, size --------------------------------------------------- */

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
	poll_some(f->ctx);
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
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
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
	poll_some(f->ctx);
	assert_int_equal(f->src->ops[BLK_OP_READ], reads);
	assert_int_equal(state_of(f), JOB_PAUSED);
	blk_drained_end(f->src->img);
	assert_false(status(f).drained);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));

	/* Completing while someone else holds a drain. */
	blk_drained_begin(f->src->img);
	assert_int_equal(state_of(f), JOB_PAUSED);
	assert_int_equal(mirror_complete(f->m, false), 0);
	wait_finished(f);
	assert_int_equal(state_of(f), JOB_CONCLUDED);
	assert_int_equal(f->pivots, 1);
	assert_int_equal(f->pivot_drain_depth, 2);
	blk_drained_end(f->src->img);
	assert_same(f);
	free_pair(f);

	/* Started while drained: paused from the start. */
	make_pair(f, MiB, 19);
	blk_drained_begin(f->src->img);
	start(f, &o);
	poll_some(f->ctx);
	st = status(f);
	assert_int_equal(st.state, JOB_PAUSED);
	assert_true(st.drained);
	assert_int_equal(f->src->ops[BLK_OP_READ], 0);
	assert_int_equal(f->dst->ops[BLK_OP_WRITE], 0);
	blk_drained_end(f->src->img);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_same(f);
}

static void test_size_lock(void **state)
{
	struct fixture *f = *state;
	struct mirror_opts o = opts(64 * KiB);
	uint8_t buf[512] = { 0 };

	make_pair(f, MiB, 20);
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(run_io(f, f->src->img, BLK_OP_TRUNCATE, 2 * MiB,
				NULL, 0), -EBUSY);
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, MiB - 100, buf,
				512), -EFBIG);
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE_ZEROES, MiB,
				NULL, 1), -EFBIG);
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, MiB - 512, buf,
				512), 512);
	assert_int_equal(blk_size_lock(f->src->img), -EBUSY);
	assert_int_equal(mirror_cancel(f->m, false), 0);
	wait_finished(f);
	/* Let go: the fake has no file, so the driver answers now. */
	assert_int_equal(run_io(f, f->src->img, BLK_OP_TRUNCATE, 2 * MiB,
				NULL, 0), -EOPNOTSUPP);
	assert_int_equal(blk_size_lock(f->src->img), 0);
	blk_size_unlock(f->src->img);
}

/* ---- start, complete and free --------------------------------------------- */

static void test_start_errors(void **state)
{
	struct fixture *f = *state;
	struct fake_blk *small, *other;
	struct mirror_opts bad[10];
	struct mirror_opts o = opts(4 * KiB);
	struct mirror_status st;
	struct mirror *m2 = NULL;

	make_pair(f, MiB, 22);
	small = fake_blk_new(f->ctx, "small", MiB - 4 * KiB);
	other = fake_blk_new(f->ctx, "other", MiB);
	assert_non_null(small);
	assert_non_null(other);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		bad[i] = opts(64 * KiB);
	bad[0].granularity = 12 * KiB;                 /* no power of two */
	bad[1].granularity = 2 * KiB;                  /* too small */
	bad[2].granularity = 128 * MiB;                /* too large */
	bad[3].buf_size = 100 * KiB;                   /* no multiple */
	bad[4].sync = (enum mirror_sync)7;
	bad[5].copy_mode = (enum mirror_copy_mode)5;
	bad[6].on_source_error = (enum mirror_on_error)9;
	bad[7].on_target_error = (enum mirror_on_error)9;
	bad[8].target_cluster = 192 * KiB;
	bad[9].target_cluster = 128 * MiB;
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

	/* 4 KiB granularity with the default buffer. */
	start(f, &o);
	st = status(f);
	assert_int_equal(st.opts.granularity, 4 * KiB);
	assert_int_equal(st.opts.buf_size, MIRROR_BUF_SIZE_DEF);
	assert_int_equal(mirror_start(f->src->img, other->img, &o, &fx_ops, f,
				      &m2), -EBUSY);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_same(f);
	assert_int_equal(mirror_cancel(f->m, true), 0);
	wait_finished(f);
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

	/* A job in full flight. */
	make_pair(f, 4 * MiB, 23);
	f->src->yields = f->dst->yields = 2;
	start(f, &o);
	assert_int_equal(state_of(f), JOB_RUNNING);
	mirror_free(f->m);
	f->m = NULL;
	poll_some(f->ctx);
	assert_int_equal(f->finished, 0);
	assert_int_equal(run_io(f, f->src->img, BLK_OP_WRITE, 0, buf, 512),
			 512);
	assert_int_equal(blk_size_lock(f->src->img), 0);
	blk_size_unlock(f->src->img);

	/* A job that failed, its finished callback not run yet. */
	f->src->yields = f->dst->yields = 0;
	fake_blk_fail(f->src, BLK_OP_READ, 1, -EIO);
	start(f, &o);
	mirror_free(f->m);
	f->m = NULL;
	poll_some(f->ctx);
	assert_int_equal(f->finished, 0);

	/* From the finished callback itself. */
	f->free_in_finished = true;
	start(f, &o);
	assert_true(WAIT_FOR(f->ctx, state_of(f) == JOB_READY));
	assert_int_equal(mirror_cancel(f->m, false), 0);
	wait_finished(f);
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

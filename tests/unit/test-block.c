/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the block layer: data integrity of both file drivers with
 * O_DIRECT (aligned and unaligned requests against an in-memory model,
 * concurrent overlapping read-modify-writes), end of file, flush, discard,
 * write-zeroes, block status; and, with a fake driver, error propagation,
 * barrier ordering and drain.
 *
 * The main thread owns a context and a thread pool.  Coroutines run on
 * the main thread but never call cmocka: they store results that the test
 * asserts on after polling the context until they report that they are
 * done (bounded by TEST_WAIT_LIMIT_NS).
 *
 * Scratch files are made in the current directory (O_DIRECT needs a real
 * file system) and unlinked at once after opening.
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
#include <pthread.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <cmocka.h>

#include "block.h"
#include "block-internal.h"
#include "coroutine.h"
#include "laio.h"
#include "loop.h"
#include "tpool.h"
#include "test-util.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

struct fixture {
	struct loop *ctx;
	struct tpool *pool;
	char path[32];
	int fd;                 /* buffered view of the scratch file */
};

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void fill_random(unsigned char *p, size_t len, uint64_t *s)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(rng_next(s) >> 56);
}

/* Poll ctx until *flag is set or the limit passes. */
static bool wait_flag(struct loop *ctx, const bool *flag)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;

	while (!*flag && test_now_ns() < end) {
		if (!loop_poll(ctx, false))
			usleep(20);
	}
	return *flag;
}

/* Poll ctx for a while without expecting anything. */
static void poll_some(struct loop *ctx)
{
	for (int i = 0; i < 50; i++) {
		if (!loop_poll(ctx, false))
			usleep(100);
	}
}

/* One request run by a coroutine. */
struct job {
	struct blk_image *img;
	enum blk_op op;
	uint64_t offset, bytes;
	void *buf;
	unsigned flags;
	ssize_t ret;
	uint64_t pnum;
	bool is_data;
	bool done;
};

static void coroutine_fn job_entry(void *opaque)
{
	struct job *j = opaque;
	struct iovec v = { .iov_base = j->buf, .iov_len = j->bytes };

	switch (j->op) {
	case BLK_OP_READ:
		j->ret = blk_co_preadv(j->img, j->offset, &v, 1, j->flags);
		break;
	case BLK_OP_WRITE:
		j->ret = blk_co_pwritev(j->img, j->offset, &v, 1, j->flags);
		break;
	case BLK_OP_FLUSH:
		j->ret = blk_co_flush(j->img);
		break;
	case BLK_OP_DISCARD:
		j->ret = blk_co_discard(j->img, j->offset, j->bytes);
		break;
	case BLK_OP_WRITE_ZEROES:
		j->ret = blk_co_write_zeroes(j->img, j->offset, j->bytes,
					     j->flags);
		break;
	case BLK_OP_BLOCK_STATUS:
		j->ret = blk_co_block_status(j->img, j->offset, j->bytes, j->flags,
					     &j->pnum, &j->is_data);
		break;
	case BLK_OP_TRUNCATE:
		j->ret = blk_co_truncate(j->img, j->offset);
		break;
	case BLK_OP_ALLOCATE:
		j->ret = blk_co_allocate(j->img, j->offset, j->bytes);
		break;
	default:
		j->ret = -EINVAL;
		break;
	}
	j->done = true;
}

static void job_start(struct job *j)
{
	struct coroutine *co = co_create(job_entry, j);

	assert_non_null(co);
	j->done = false;
	co_enter(co);
}

/* Run one request to its end and return its result. */
static ssize_t run(struct fixture *f, struct blk_image *img, enum blk_op op,
		   uint64_t offset, void *buf, uint64_t bytes, unsigned flags)
{
	struct job j = {
		.img = img, .op = op, .offset = offset, .buf = buf,
		.bytes = bytes, .flags = flags,
	};

	job_start(&j);
	assert_true(wait_flag(f->ctx, &j.done));
	return j.ret;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (loop_new(&f->ctx) < 0 || tpool_new(NULL, &f->pool) < 0)
		return -1;
	loop_set_current(f->ctx);
	f->fd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->fd >= 0)
		close(f->fd);
	if (f->path[0])
		unlink(f->path);
	tpool_free(f->pool);
	loop_set_current(NULL);
	loop_free(f->ctx);
	free(f);
	return 0;
}

/* A scratch file of size bytes filled from model. */
static void make_file(struct fixture *f, const unsigned char *model,
		      size_t size)
{
	strcpy(f->path, "test-block.XXXXXX");
	f->fd = mkstemp(f->path);
	assert_true(f->fd >= 0);
	assert_int_equal(pwrite(f->fd, model, size, 0), (ssize_t)size);
}

static struct blk_image *open_file(struct fixture *f, enum blk_aio aio,
				   bool read_only)
{
	struct blk_open_opts o = {
		.path = f->path, .read_only = read_only, .aio = aio,
		.cache = BLK_CACHE_NONE, .discard = true,
	};
	struct blk_image *img = NULL;

	assert_int_equal(blk_open(&o, f->ctx, f->pool, &img), 0);
	return img;
}

/* ---- real files --------------------------------------------------------- */

#define FILE_SIZE (4 * MiB)

/* Random sizes 1 byte..1 MiB, aligned or not, memory aligned or not. */
static void check_random_io(void **state, enum blk_aio aio)
{
	struct fixture *f = *state;
	uint64_t seed = 0x1234567 + aio, max_size = FILE_SIZE + MiB;
	unsigned char *model = calloc(1, max_size);
	unsigned char *mem = malloc(MiB + 4096 + 1);
	unsigned char *back = malloc(max_size);
	uint64_t size = FILE_SIZE;
	struct blk_image *img;

	assert_non_null(model);
	assert_non_null(mem);
	assert_non_null(back);
	fill_random(model, FILE_SIZE, &seed);
	make_file(f, model, FILE_SIZE);
	img = open_file(f, aio, false);
	assert_int_equal(blk_get_size(img), FILE_SIZE);

	for (int i = 0; i < 300; i++) {
		uint64_t r = rng_next(&seed);
		uint64_t len = 1 + (r % (1u << (1 + (r >> 8) % 20)));
		uint64_t off = (r >> 32) % FILE_SIZE;
		unsigned char *buf = (unsigned char *)ROUND_UP(
			(uintptr_t)mem, 4096) + ((r >> 30) & 1);
		bool is_write = (r >> 29) & 1;
		ssize_t ret, want;

		if ((r >> 28) & 1) {   /* aligned request */
			off = ROUND_DOWN(off, 4096);
			len = ROUND_UP(len, 4096);
		}
		len = VDISK_MIN(len, MiB);
		if (off + len > FILE_SIZE + MiB)
			len = FILE_SIZE + MiB - off;
		if (is_write) {
			fill_random(buf, len, &seed);
			ret = run(f, img, BLK_OP_WRITE, off, buf, len, 0);
			assert_int_equal(ret, (ssize_t)len);
			memcpy(model + off, buf, len);
			size = VDISK_MAX(size, off + len);
			assert_int_equal(blk_get_size(img), size);
		} else {
			ret = run(f, img, BLK_OP_READ, off, buf, len, 0);
			want = off >= size ? 0 :
			       (ssize_t)VDISK_MIN(len, size - off);
			assert_int_equal(ret, want);
			assert_memory_equal(buf, model + off, (size_t)want);
		}
	}
	/* The file itself, through the page cache, and its size. */
	assert_int_equal(lseek(f->fd, 0, SEEK_END), (off_t)size);
	assert_int_equal(pread(f->fd, back, size, 0), (ssize_t)size);
	assert_memory_equal(back, model, size);
	blk_close(img);
	free(model);
	free(mem);
	free(back);
}

static void test_random_io_threads(void **state)
{
	check_random_io(state, BLK_AIO_THREADS);
}

static void test_random_io_native(void **state)
{
	check_random_io(state, BLK_AIO_NATIVE);
}

#define NCO 32
#define REGION (64 * KiB)

/*
 * 32 coroutines at once: each writes its own bytes to its own unaligned
 * sub-range of one 64 KiB region (neighbours share a block whether the
 * O_DIRECT alignment is 512 or 4096, so every write is a read-modify-write
 * of a block another one modifies too), and 32 more read across
 * neighbours meanwhile.  No write may be lost.
 */
static void check_concurrent(void **state, enum blk_aio aio)
{
	struct fixture *f = *state;
	unsigned char *model = calloc(1, REGION * 2);
	unsigned char *bufs = malloc(NCO * REGION);
	struct job jobs[2 * NCO];
	struct blk_image *img;
	uint64_t seed = 99;

	assert_non_null(model);
	assert_non_null(bufs);
	fill_random(model, REGION * 2, &seed);
	make_file(f, model, REGION * 2);
	img = open_file(f, aio, false);

	for (int round = 0; round < 4; round++) {
		uint64_t step = REGION / NCO;

		for (int i = 0; i < NCO; i++) {
			/* Ends 4..8 bytes before the next one starts, in
			 * the block the next one starts in. */
			uint64_t off = i * step + 256 + (unsigned)(i + round) % 5;
			uint64_t len = step - 8;
			struct job *w = &jobs[2 * i], *r = &jobs[2 * i + 1];

			memset(bufs + i * REGION, 'A' + i + round, len);
			memcpy(model + off, bufs + i * REGION, len);
			*w = (struct job){ .img = img, .op = BLK_OP_WRITE,
					   .offset = off, .bytes = len,
					   .buf = bufs + i * REGION };
			*r = (struct job){ .img = img, .op = BLK_OP_READ,
					   .offset = 0, .bytes = step * 2,
					   .buf = bufs + i * REGION + step };
			r->offset = (uint64_t)(i % (NCO - 1)) * step + 3;
			job_start(w);
			job_start(r);
		}
		for (int i = 0; i < 2 * NCO; i++) {
			assert_true(wait_flag(f->ctx, &jobs[i].done));
			assert_int_equal(jobs[i].ret, (ssize_t)jobs[i].bytes);
		}
		assert_int_equal(pread(f->fd, bufs, REGION * 2, 0),
				 (ssize_t)(REGION * 2));
		assert_memory_equal(bufs, model, REGION * 2);
	}
	blk_close(img);
	free(model);
	free(bufs);
}

static void test_concurrent_threads(void **state)
{
	check_concurrent(state, BLK_AIO_THREADS);
}

static void test_concurrent_native(void **state)
{
	check_concurrent(state, BLK_AIO_NATIVE);
}

/* EOF, flush, discard, write-zeroes, block status. */
static void check_misc(void **state, enum blk_aio aio)
{
	struct fixture *f = *state;
	size_t size = 2 * MiB + 100;
	unsigned char *model = malloc(size);
	unsigned char *buf = malloc(MiB);
	struct blk_image *img;
	struct job j;
	uint64_t seed = 7;

	assert_non_null(model);
	assert_non_null(buf);
	fill_random(model, size, &seed);
	make_file(f, model, size);
	img = open_file(f, aio, false);

	/* A read across EOF is short; one at or after EOF reads nothing. */
	assert_int_equal(run(f, img, BLK_OP_READ, size - 50, buf, 4096, 0),
			 50);
	assert_memory_equal(buf, model + size - 50, 50);
	assert_int_equal(run(f, img, BLK_OP_READ, 2 * MiB, buf, 4096, 0),
			 100);
	assert_int_equal(run(f, img, BLK_OP_READ, size, buf, 4096, 0), 0);
	assert_int_equal(run(f, img, BLK_OP_READ, size + 8192, buf, 10, 0),
			 0);
	assert_int_equal(run(f, img, BLK_OP_FLUSH, 0, NULL, 0, 0), 0);

	/* Discard leaves a hole that reads as zeroes. */
	assert_int_equal(run(f, img, BLK_OP_DISCARD, MiB, NULL, 64 * KiB, 0),
			 0);
	assert_int_equal(lseek(f->fd, MiB, SEEK_HOLE), (off_t)MiB);
	assert_int_equal(run(f, img, BLK_OP_READ, MiB - 10, buf, 64 * KiB, 0),
			 (ssize_t)(64 * KiB));
	assert_memory_equal(buf, model + MiB - 10, 10);
	for (size_t i = 10; i < 64 * KiB; i++)
		assert_int_equal(buf[i], 0);

	/* Block status: data, then the hole, then data again. */
	j = (struct job){ .img = img, .op = BLK_OP_BLOCK_STATUS,
			  .offset = 0, .bytes = 2 * MiB };
	job_start(&j);
	assert_true(wait_flag(f->ctx, &j.done));
	assert_int_equal(j.ret, 0);
	assert_true(j.is_data);
	assert_int_equal(j.pnum, MiB);
	j.offset = MiB;
	job_start(&j);
	assert_true(wait_flag(f->ctx, &j.done));
	assert_int_equal(j.ret, 0);
	assert_false(j.is_data);
	assert_int_equal(j.pnum, 64 * KiB);

	/* Write-zeroes, unaligned. */
	assert_int_equal(run(f, img, BLK_OP_WRITE_ZEROES, 100, NULL, 5000, 0),
			 0);
	assert_int_equal(run(f, img, BLK_OP_READ, 0, buf, 8192, 0), 8192);
	assert_memory_equal(buf, model, 100);
	for (size_t i = 100; i < 5100; i++)
		assert_int_equal(buf[i], 0);
	assert_memory_equal(buf + 5100, model + 5100, 8192 - 5100);

	/* Truncate grows and shrinks the file and the cached size. */
	assert_int_equal(run(f, img, BLK_OP_TRUNCATE, size + 5000, NULL, 0, 0),
			 0);
	assert_int_equal(blk_get_size(img), size + 5000);
	assert_int_equal(lseek(f->fd, 0, SEEK_END), (off_t)(size + 5000));
	assert_int_equal(run(f, img, BLK_OP_TRUNCATE, 3000, NULL, 0, 0), 0);
	assert_int_equal(blk_get_size(img), 3000);
	assert_int_equal(run(f, img, BLK_OP_READ, 1000, buf, 4096, 0), 2000);
	blk_close(img);
	free(model);
	free(buf);
}

static void test_misc_threads(void **state)
{
	check_misc(state, BLK_AIO_THREADS);
}

static void test_misc_native(void **state)
{
	check_misc(state, BLK_AIO_NATIVE);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	unsigned char data[8192] = { 1, 2, 3 };
	unsigned char buf[16];
	struct blk_image *img;

	make_file(f, data, sizeof(data));
	img = open_file(f, BLK_AIO_THREADS, true);
	assert_int_equal(run(f, img, BLK_OP_WRITE, 0, buf, 16, 0), -EROFS);
	assert_int_equal(run(f, img, BLK_OP_DISCARD, 0, NULL, 4096, 0),
			 -EROFS);
	assert_int_equal(run(f, img, BLK_OP_WRITE_ZEROES, 0, NULL, 4096, 0),
			 -EROFS);
	assert_int_equal(run(f, img, BLK_OP_READ, 1, buf, 2, 0), 2);
	assert_int_equal(buf[0], 2);
	assert_int_equal(run(f, img, BLK_OP_READ, UINT64_MAX - 1, buf, 16, 0),
			 -EINVAL);
	blk_close(img);
}

/* ---- the fake driver ---------------------------------------------------- */

struct fake_rec {
	enum blk_op op;
	uint64_t offset;
};

struct fake {
	int fail_next;          /* -errno for the next request, or 0 */
	bool block;             /* hold reads and writes until released */
	struct co_queue held;
	int nheld;
	int nrec;
	struct fake_rec rec[64];
};

static int coroutine_fn fake_co_io(void *opaque, enum blk_op op,
				   uint64_t offset, uint64_t bytes,
				   const struct iovec *iov, int iovcnt)
{
	struct fake *fk = opaque;
	int err = fk->fail_next;

	if (fk->nrec < (int)ARRAY_SIZE(fk->rec))
		fk->rec[fk->nrec++] = (struct fake_rec){ op, offset };
	fk->fail_next = 0;
	if (err)
		return err;
	if (fk->block && (op == BLK_OP_READ || op == BLK_OP_WRITE)) {
		fk->nheld++;
		co_queue_wait(&fk->held);
		fk->nheld--;
	}
	if (op == BLK_OP_READ) {
		for (int i = 0; i < iovcnt; i++)
			memset(iov[i].iov_base, 0, iov[i].iov_len);
	}
	return op == BLK_OP_READ || op == BLK_OP_WRITE ? (int)bytes : 0;
}

static const struct blk_driver fake_driver = {
	.name = "fake",
	.co_io = fake_co_io,
};

static struct blk_image *open_fake(struct fixture *f, struct fake *fk)
{
	struct blk_image *img = NULL;

	co_queue_init(&fk->held);
	assert_int_equal(blk_open_driver("fake", MiB, &fake_driver, fk,
					 f->ctx, &img), 0);
	return img;
}

/* Release the oldest held request (it runs now, from plain code). */
static void fake_release(struct fake *fk)
{
	assert_true(co_queue_wake_one(&fk->held));
}

/* Records of reads and writes only (the drains add flushes). */
static int fake_rw(const struct fake *fk, struct fake_rec *out)
{
	int n = 0;

	for (int i = 0; i < fk->nrec; i++)
		if (fk->rec[i].op != BLK_OP_FLUSH)
			out[n++] = fk->rec[i];
	return n;
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { 0 };
	struct blk_image *img = open_fake(f, &fk);
	unsigned char buf[512];
	struct blk_stats st;

	fk.fail_next = -EIO;
	assert_int_equal(run(f, img, BLK_OP_WRITE, 0, buf, 512, 0), -EIO);
	assert_int_equal(run(f, img, BLK_OP_WRITE, 0, buf, 512, 0), 512);
	fk.fail_next = -ENOSPC;
	assert_int_equal(run(f, img, BLK_OP_READ, 0, buf, 512, 0), -ENOSPC);
	assert_int_equal(run(f, img, BLK_OP_READ, 0, buf, 512, 0), 512);
	fk.fail_next = -EIO;
	assert_int_equal(run(f, img, BLK_OP_FLUSH, 0, NULL, 0, 0), -EIO);
	blk_get_stats(img, &st);
	assert_int_equal(st.errors, 3);
	assert_int_equal(st.writes, 2);
	assert_int_equal(st.reads, 2);
	assert_int_equal(st.flushes, 1);
	assert_int_equal(st.barriers, 1);
	assert_int_equal(st.in_flight, 0);
	blk_close(img);
}

/*
 * Writes A and B reach the driver and are held.  FUA write C then waits
 * for both (barrier), and read D waits behind C.
 */
static void test_barrier_order(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { .block = true };
	struct blk_image *img = open_fake(f, &fk);
	unsigned char buf[4][512];
	struct job a = { .img = img, .op = BLK_OP_WRITE, .offset = 0,
			 .bytes = 512, .buf = buf[0] };
	struct job b = a, c = a, d = a;
	struct fake_rec rec[64];

	b.offset = 4096;
	b.buf = buf[1];
	c.offset = 8192;
	c.buf = buf[2];
	c.flags = BLK_REQ_FUA;
	d.op = BLK_OP_READ;
	d.offset = 12288;
	d.buf = buf[3];
	job_start(&a);
	job_start(&b);
	job_start(&c);
	job_start(&d);
	poll_some(f->ctx);
	assert_int_equal(fk.nrec, 2);          /* only A and B */
	fake_release(&fk);                     /* A */
	poll_some(f->ctx);
	assert_true(a.done);
	assert_int_equal(fk.nrec, 2);          /* C still waits for B */
	fake_release(&fk);                     /* B */
	poll_some(f->ctx);
	assert_true(b.done);
	/* C's leading flush and its write; D still waits for C. */
	assert_int_equal(fk.nrec, 4);
	assert_int_equal(fk.rec[2].op, BLK_OP_FLUSH);
	assert_int_equal(fk.rec[3].op, BLK_OP_WRITE);
	assert_int_equal(fk.rec[3].offset, 8192);
	assert_false(c.done);
	fake_release(&fk);                     /* C */
	poll_some(f->ctx);
	assert_true(c.done);
	assert_int_equal(c.ret, 512);
	assert_int_equal(fk.nrec, 6);          /* C's flush, then D */
	assert_int_equal(fk.rec[4].op, BLK_OP_FLUSH);
	assert_int_equal(fk.rec[5].op, BLK_OP_READ);
	fake_release(&fk);                     /* D */
	assert_true(wait_flag(f->ctx, &d.done));
	assert_int_equal(d.ret, 512);
	assert_int_equal(fake_rw(&fk, rec), 4);
	blk_close(img);
}

struct notes {
	int begins, ends;
};

static void note_begin(void *opaque)
{
	((struct notes *)opaque)->begins++;
}

static void note_end(void *opaque)
{
	((struct notes *)opaque)->ends++;
}

/* Requests that arrive while drained run after the end, in order. */
static void test_drain_postpones(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { 0 };
	struct blk_image *img = open_fake(f, &fk);
	struct notes nt = { 0 };
	struct blk_drain_notifier n = { note_begin, note_end, &nt, { 0 } };
	unsigned char buf[512];
	struct job jobs[5];
	struct fake_rec rec[64];
	struct blk_stats st;

	blk_add_drain_notifier(img, &n);
	blk_drained_begin(img);
	blk_drained_begin(img);                /* nested */
	assert_int_equal(nt.begins, 1);
	for (int i = 0; i < 5; i++) {
		jobs[i] = (struct job){ .img = img, .op = BLK_OP_WRITE,
					.offset = (uint64_t)(4 - i) * 512,
					.bytes = 512, .buf = buf };
		job_start(&jobs[i]);
	}
	poll_some(f->ctx);
	assert_int_equal(fake_rw(&fk, rec), 0);
	blk_drained_end(img);                  /* still drained */
	poll_some(f->ctx);
	assert_int_equal(fake_rw(&fk, rec), 0);
	assert_int_equal(nt.ends, 0);
	blk_drained_end(img);
	assert_int_equal(nt.ends, 1);
	for (int i = 0; i < 5; i++) {
		assert_true(wait_flag(f->ctx, &jobs[i].done));
		assert_int_equal(jobs[i].ret, 512);
	}
	assert_int_equal(fake_rw(&fk, rec), 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(rec[i].offset, (uint64_t)(4 - i) * 512);
	blk_get_stats(img, &st);
	assert_int_equal(st.postponed, 5);
	blk_close(img);
}

struct releaser {
	struct fake *fk;
	struct loop_timer t;
	int released;
};

/* Timer: release one held request every millisecond. */
static void release_cb(void *opaque)
{
	struct releaser *r = opaque;

	if (co_queue_wake_one(&r->fk->held))
		r->released++;
	if (r->released < 3)
		loop_timer_mod(&r->t, loop_now_ns() + 1000000);
}

/* blk_drained_begin returns only once nothing is in flight. */
static void test_drain_waits(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { .block = true };
	struct blk_image *img = open_fake(f, &fk);
	struct releaser rel = { .fk = &fk };
	unsigned char buf[3][512];
	struct job jobs[3];
	struct blk_stats st;

	for (int i = 0; i < 3; i++) {
		jobs[i] = (struct job){ .img = img, .op = BLK_OP_WRITE,
					.offset = (uint64_t)i * 512,
					.bytes = 512, .buf = buf[i] };
		job_start(&jobs[i]);
	}
	assert_int_equal(fk.nheld, 3);
	loop_timer_init(&rel.t, f->ctx, release_cb, &rel);
	loop_timer_mod(&rel.t, loop_now_ns() + 1000000);
	blk_drained_begin(img);
	blk_get_stats(img, &st);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(st.max_in_flight, 3);
	assert_int_equal(rel.released, 3);
	for (int i = 0; i < 3; i++) {
		assert_true(jobs[i].done);
		assert_int_equal(jobs[i].ret, 512);
	}
	/* The drain flushed after the writes. */
	assert_int_equal(fk.rec[fk.nrec - 1].op, BLK_OP_FLUSH);
	blk_drained_end(img);
	loop_timer_del(&rel.t);
	blk_close(img);
}

struct wn_state {
	int calls;
	int fail;
	uint64_t last_off, last_bytes;
	int after_calls;
	enum blk_op after_op;
	ssize_t after_ret;
	const struct iovec *after_iov;
};

static void coroutine_fn wn_after_write(void *opaque, enum blk_op op,
					uint64_t off, uint64_t bytes,
					const struct iovec *iov, int iovcnt,
					unsigned flags, ssize_t ret)
{
	struct wn_state *w = opaque;

	(void)off;
	(void)bytes;
	(void)iovcnt;
	(void)flags;
	w->after_calls++;
	w->after_op = op;
	w->after_ret = ret;
	w->after_iov = iov;
}

static int coroutine_fn wn_before_write(void *opaque, uint64_t off,
					uint64_t bytes)
{
	struct wn_state *w = opaque;

	w->calls++;
	w->last_off = off;
	w->last_bytes = bytes;
	return w->fail;
}

/* Write notifiers see writes, discards and write-zeroes, not reads. */
static void test_write_notifier(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { 0 };
	struct blk_image *img = open_fake(f, &fk);
	struct wn_state w = { 0 };
	struct blk_write_notifier n = {
		.before_write = wn_before_write,
		.after_write = wn_after_write,
		.opaque = &w,
	};
	unsigned char buf[512];

	blk_add_write_notifier(img, &n);
	assert_int_equal(run(f, img, BLK_OP_WRITE, 1024, buf, 512, 0), 512);
	assert_int_equal(w.after_calls, 1);
	assert_int_equal(w.after_op, BLK_OP_WRITE);
	assert_int_equal(w.after_ret, 512);
	assert_non_null(w.after_iov);
	assert_int_equal(run(f, img, BLK_OP_READ, 0, buf, 512, 0), 512);
	assert_int_equal(run(f, img, BLK_OP_DISCARD, 4096, NULL, 100, 0), 0);
	assert_int_equal(run(f, img, BLK_OP_WRITE_ZEROES, 8192, NULL, 7, 0),
			 0);
	assert_int_equal(w.calls, 3);
	assert_int_equal(w.after_calls, 3);
	assert_int_equal(w.after_op, BLK_OP_WRITE_ZEROES);
	assert_null(w.after_iov);
	assert_int_equal(w.last_off, 8192);
	assert_int_equal(w.last_bytes, 7);
	/* after_write sees the driver's error. */
	fk.fail_next = -EIO;
	assert_int_equal(run(f, img, BLK_OP_WRITE, 0, buf, 512, 0), -EIO);
	assert_int_equal(w.after_ret, -EIO);
	/* A failing notifier fails the write before the driver sees it. */
	w.fail = -EPERM;
	fk.nrec = 0;
	w.after_calls = 0;
	assert_int_equal(run(f, img, BLK_OP_WRITE, 0, buf, 512, 0), -EPERM);
	assert_int_equal(fk.nrec, 0);
	assert_int_equal(w.after_calls, 0);
	/* Removed, it sees nothing more. */
	blk_remove_write_notifier(&n);
	w.fail = 0;
	assert_int_equal(run(f, img, BLK_OP_WRITE, 0, buf, 512, 0), 512);
	assert_int_equal(w.after_calls, 0);
	blk_close(img);
}

/* A job's size lock: truncate EBUSY, writes past the end EFBIG. */
static void test_size_lock(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { 0 };
	struct blk_image *img = open_fake(f, &fk);
	unsigned char buf[512] = { 0 };

	assert_int_equal(blk_size_lock(img), 0);
	assert_int_equal(blk_size_lock(img), -EBUSY);
	assert_int_equal(run(f, img, BLK_OP_TRUNCATE, 2 * MiB, NULL, 0, 0),
			 -EBUSY);
	assert_int_equal(run(f, img, BLK_OP_WRITE, MiB - 256, buf, 512, 0),
			 -EFBIG);
	assert_int_equal(run(f, img, BLK_OP_WRITE_ZEROES, MiB, NULL, 1, 0),
			 -EFBIG);
	assert_int_equal(run(f, img, BLK_OP_ALLOCATE, MiB - 1, NULL, 2, 0),
			 -EFBIG);
	/* Inside the image everything still works. */
	assert_int_equal(run(f, img, BLK_OP_WRITE, MiB - 512, buf, 512, 0),
			 512);
	assert_int_equal(run(f, img, BLK_OP_READ, MiB - 512, buf, 512, 0),
			 512);
	assert_int_equal(blk_get_size(img), MiB);
	blk_size_unlock(img);
	assert_int_equal(run(f, img, BLK_OP_WRITE, MiB - 256, buf, 512, 0),
			 512);
	assert_int_equal(blk_get_size(img), MiB + 256);
	blk_close(img);
}

/*
 * A redirected image hands new requests and those postponed at its drain
 * gate to its successor, in their order.
 */
static void test_redirect(void **state)
{
	struct fixture *f = *state;
	struct fake fa = { 0 }, fb = { 0 };
	struct blk_image *a = open_fake(f, &fa), *b = open_fake(f, &fb);
	unsigned char buf[512];
	struct job jobs[3];
	struct fake_rec rec[64];

	blk_drained_begin(a);
	fa.nrec = 0;
	for (int i = 0; i < 3; i++) {
		jobs[i] = (struct job){
			.img = a, .op = BLK_OP_WRITE, .offset = i * 512u,
			.buf = buf, .bytes = 512,
		};
		job_start(&jobs[i]);
	}
	blk_set_redirect(a, b);
	blk_drained_end(a);
	for (int i = 0; i < 3; i++) {
		assert_true(wait_flag(f->ctx, &jobs[i].done));
		assert_int_equal(jobs[i].ret, 512);
	}
	assert_int_equal(fake_rw(&fa, rec), 0);
	assert_int_equal(fake_rw(&fb, rec), 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rec[i].offset, i * 512u);
	/* A late request on the old image goes to the new one too. */
	assert_int_equal(run(f, a, BLK_OP_READ, 0, buf, 512, 0), 512);
	assert_int_equal(fake_rw(&fb, rec), 4);
	/* Retired, the old image's driver is never called again, and
	 * requests still reach the new one. */
	fa.nrec = 0;
	blk_retire(a);
	assert_int_equal(run(f, a, BLK_OP_WRITE, 0, buf, 512, 0), 512);
	assert_int_equal(fa.nrec, 0);
	assert_int_equal(fake_rw(&fb, rec), 5);
	blk_close(a);
	blk_close(b);
}

struct co_drain {
	struct blk_image *img;
	struct fake *fk;
	int nheld_at_begin;
	bool drained, release, done;
};

/* Drains from a coroutine; waits for the test's go to end the drain. */
static void coroutine_fn co_drain_entry(void *opaque)
{
	struct co_drain *d = opaque;

	blk_co_drained_begin(d->img);
	d->nheld_at_begin = d->fk->nheld;
	d->drained = true;
	while (!d->release)
		co_sleep_ns(100000);
	blk_co_drained_end(d->img);
	d->done = true;
}

/*
 * A coroutine drain waits for a held write; a write sent meanwhile is
 * postponed until the coroutine ends the drain.
 */
static void test_co_drain(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { .block = true };
	struct blk_image *img = open_fake(f, &fk);
	struct co_drain d = { .img = img, .fk = &fk };
	unsigned char buf[2][512];
	struct job a = { .img = img, .op = BLK_OP_WRITE, .offset = 0,
			 .bytes = 512, .buf = buf[0] };
	struct job b = a;
	struct coroutine *co;

	b.buf = buf[1];
	job_start(&a);                          /* held in the driver */
	co = co_create(co_drain_entry, &d);
	assert_non_null(co);
	co_enter(co);                           /* waits for a */
	job_start(&b);                          /* postponed */
	poll_some(f->ctx);
	assert_false(d.drained);
	fake_release(&fk);                      /* a completes */
	assert_true(wait_flag(f->ctx, &d.drained));
	assert_true(a.done);
	assert_int_equal(d.nheld_at_begin, 0);
	assert_false(b.done);
	assert_int_equal(fk.nheld, 0);
	d.release = true;
	assert_true(wait_flag(f->ctx, &d.done));
	poll_some(f->ctx);
	assert_int_equal(fk.nheld, 1);          /* b reached the driver */
	fake_release(&fk);
	assert_true(wait_flag(f->ctx, &b.done));
	assert_int_equal(b.ret, 512);
	blk_close(img);
}

/* The callback API, from another thread. */
struct aio_ctx {
	struct blk_image *img;
	struct blk_aio_req req;
	unsigned char buf[512];
	struct iovec iov;
	ssize_t ret;
	bool done;
};

static void aio_cb(void *opaque, ssize_t ret)
{
	struct aio_ctx *a = opaque;

	a->ret = ret;
	a->done = true;
}

static void *aio_thread(void *opaque)
{
	struct aio_ctx *a = opaque;

	blk_aio_submit(a->img, &a->req);
	return NULL;
}

static void test_aio_submit(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { 0 };
	struct aio_ctx a = { 0 };
	pthread_t th;

	a.img = open_fake(f, &fk);
	a.iov = (struct iovec){ a.buf, sizeof(a.buf) };
	a.req = (struct blk_aio_req){
		.op = BLK_OP_WRITE, .offset = 512, .bytes = 512,
		.iov = &a.iov, .iovcnt = 1, .cb = aio_cb, .opaque = &a,
	};
	assert_int_equal(pthread_create(&th, NULL, aio_thread, &a), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(wait_flag(f->ctx, &a.done));
	assert_int_equal(a.ret, 512);
	blk_close(a.img);
}

/* ---- native driver internals ---------------------------------------- */

/*
 * The kernel may refuse IOCB_CMD_FDSYNC with EINVAL: the flush must then
 * go to the thread pool, and keep going there.
 */
static void test_native_fdsync_fallback(void **state)
{
	struct fixture *f = *state;
	static unsigned char model[64 * KiB];
	struct tpool_stats before, after;
	struct laio_stats lst1, lst2;
	struct blk_image *img;

	make_file(f, model, sizeof(model));
	img = open_file(f, BLK_AIO_NATIVE, false);
	assert_non_null(img->laio);

	/* A working FDSYNC goes through Linux AIO, not the pool. */
	tpool_get_stats(f->pool, &before);
	assert_int_equal(run(f, img, BLK_OP_FLUSH, 0, NULL, 0, 0), 0);
	tpool_get_stats(f->pool, &after);
	assert_int_equal(after.completed, before.completed);
	assert_false(img->fdsync_fallback);

	/* Refused: the same flush succeeds through a worker. */
	laio_set_fault(img->laio, LAIO_FDSYNC, EINVAL);
	assert_int_equal(run(f, img, BLK_OP_FLUSH, 0, NULL, 0, 0), 0);
	tpool_get_stats(f->pool, &after);
	assert_int_equal(after.completed, before.completed + 1);
	assert_true(img->fdsync_fallback);

	/* Remembered: later flushes skip Linux AIO altogether. */
	laio_set_fault(img->laio, LAIO_FDSYNC, 0);
	laio_get_stats(img->laio, &lst1);
	assert_int_equal(run(f, img, BLK_OP_FLUSH, 0, NULL, 0, BLK_REQ_FUA),
			 0);
	laio_get_stats(img->laio, &lst2);
	assert_int_equal(lst2.submitted, lst1.submitted);
	tpool_get_stats(f->pool, &after);
	assert_int_equal(after.completed, before.completed + 2);
	blk_close(img);
}

/* Images of one context share its Linux AIO context. */
static void test_native_laio_shared_per_context(void **state)
{
	struct fixture *f = *state;
	static unsigned char model[64 * KiB];
	static unsigned char buf[4096] __attribute__((aligned(4096)));
	struct blk_image *a, *b;

	memset(model, 0x5a, sizeof(model));
	make_file(f, model, sizeof(model));
	a = open_file(f, BLK_AIO_NATIVE, false);
	b = open_file(f, BLK_AIO_NATIVE, false);
	assert_ptr_equal(a->laio, b->laio);

	/* Closing one leaves the other working on the shared context. */
	memset(buf, 0xa5, 4096);
	assert_int_equal(run(f, a, BLK_OP_WRITE, 8192, buf, 4096, 0), 4096);
	blk_close(a);
	memset(buf, 0, 4096);
	assert_int_equal(run(f, b, BLK_OP_READ, 8192, buf, 4096, 0), 4096);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0xa5);
	blk_close(b);
}

/* ---- drain from another thread ---------------------------------------- */

struct remote_drain {
	struct blk_image *img;
	atomic_bool began;
	atomic_bool go_end;
	atomic_bool ended;
};

static void *remote_drain_thread(void *opaque)
{
	struct remote_drain *r = opaque;

	/* This thread has no context: both calls hand over to the image's
	 * context and block until it has done them. */
	blk_drained_begin(r->img);
	atomic_store(&r->began, true);
	while (!atomic_load(&r->go_end))
		sched_yield();
	blk_drained_end(r->img);
	atomic_store(&r->ended, true);
	return NULL;
}

/* Poll ctx until *flag is set or the limit passes. */
static bool wait_atomic(struct loop *ctx, atomic_bool *flag)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;

	while (!atomic_load(flag) && test_now_ns() < end) {
		if (!loop_poll(ctx, false))
			usleep(20);
	}
	return atomic_load(flag);
}

static void test_drain_from_other_thread(void **state)
{
	struct fixture *f = *state;
	struct fake fk = { .block = true };
	struct remote_drain r = { .began = false };
	struct blk_drain_notifier n = { .begin = note_begin, .end = note_end };
	struct notes notes = { 0, 0 };
	unsigned char buf[512];
	struct job w, rd;
	struct blk_stats st;
	struct fake_rec rec[8];
	pthread_t th;

	r.img = open_fake(f, &fk);
	n.opaque = &notes;
	blk_add_drain_notifier(r.img, &n);

	/* A write is held in the driver when the other thread drains. */
	w = (struct job){ .img = r.img, .op = BLK_OP_WRITE, .offset = 0,
			  .buf = buf, .bytes = 512 };
	job_start(&w);
	assert_int_equal(fk.nheld, 1);
	assert_int_equal(pthread_create(&th, NULL, remote_drain_thread, &r), 0);

	/* The drain began in this context (the notifier ran), but it cannot
	 * return while the write is in flight. */
	while (notes.begins == 0)
		loop_poll(f->ctx, true);
	assert_int_equal(notes.begins, 1);
	assert_false(atomic_load(&r.began));

	/* A read that arrives now is postponed. */
	rd = (struct job){ .img = r.img, .op = BLK_OP_READ, .offset = 512,
			   .buf = buf, .bytes = 512 };
	job_start(&rd);
	blk_get_stats(r.img, &st);
	assert_int_equal(st.postponed, 1);

	/* The write completes: the drain flushes and the thread returns. */
	fake_release(&fk);
	assert_true(w.done);
	assert_true(wait_atomic(f->ctx, &r.began));
	assert_false(rd.done);

	/* The other thread ends it; the read runs. */
	fk.block = false;
	atomic_store(&r.go_end, true);
	assert_true(wait_atomic(f->ctx, &r.ended));
	assert_true(wait_flag(f->ctx, &rd.done));
	assert_int_equal(rd.ret, 512);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(notes.ends, 1);

	assert_int_equal(fake_rw(&fk, rec), 2);
	assert_int_equal(rec[0].op, BLK_OP_WRITE);
	assert_int_equal(rec[1].op, BLK_OP_READ);
	blk_close(r.img);
}

/* Allocation grows the file; info and statistics reset. */
static void test_allocate_info_reset(void **state)
{
	struct fixture *f = *state;
	static unsigned char model[64 * KiB];
	struct blk_info info;
	struct blk_stats st;
	struct blk_image *img, *ro;
	struct stat sb;

	make_file(f, model, sizeof(model));
	img = open_file(f, BLK_AIO_THREADS, false);
	blk_get_info(img, &info);
	assert_string_equal(info.driver, "threads");
	assert_int_equal(info.cache, BLK_CACHE_NONE);
	assert_false(info.read_only);
	assert_int_equal(info.size, 64 * KiB);
	assert_int_equal(info.drain_depth, 0);

	/* Allocation past the end grows the file and the cached size;
	 * inside it changes nothing that a read sees. */
	assert_int_equal(run(f, img, BLK_OP_ALLOCATE, 60 * KiB, NULL,
			     68 * KiB, 0), 0);
	assert_int_equal(blk_get_size(img), 128 * KiB);
	assert_int_equal(fstat(f->fd, &sb), 0);
	assert_int_equal(sb.st_size, 128 * KiB);

	blk_get_stats(img, &st);
	assert_int_equal(st.ops[BLK_OP_ALLOCATE], 1);
	blk_reset_stats(img);
	blk_get_stats(img, &st);
	assert_int_equal(st.ops[BLK_OP_ALLOCATE], 0);
	assert_int_equal(st.max_in_flight, 0);
	blk_close(img);

	/* A read-only image refuses it. */
	ro = open_file(f, BLK_AIO_NATIVE, true);
	blk_get_info(ro, &info);
	assert_string_equal(info.driver, "native");
	assert_true(info.read_only);
	assert_int_equal(run(f, ro, BLK_OP_ALLOCATE, 0, NULL, 4096, 0),
			 -EROFS);
	blk_close(ro);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_random_io_threads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_io_native,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_threads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_native,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_misc_threads,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_misc_native,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_barrier_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_postpones,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_waits,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_notifier,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_lock, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_redirect, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_co_drain,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_allocate_info_reset,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_native_fdsync_fallback,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_native_laio_shared_per_context,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_from_other_thread,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_aio_submit,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

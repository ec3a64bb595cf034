/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the simulated guest: verified runs of each workload against a
 * RAM fake image (with and without EVENT_IDX, direct and indirect),
 * bounded by requests or by time, every kind of fault injection, bad
 * options, guest_free from the image's own context thread, and a fake
 * that corrupts what it reads, to show that verify can fail.  The
 * building blocks (DISCARD and WRITE_ZEROES chains, the pattern, the
 * histogram) are tested against a device in the main thread.
 *
 * The image lives in an iothread, as in the daemon; the test thread
 * starts guests and waits for them with bounded polls of guest_finished.
 * Fake driver fields are touched only inside the iothread
 * (loop_call_sync).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <cmocka.h>

#include "block-internal.h"
#include "fake-blk.h"
#include "guest-internal.h"
#include "guest.h"
#include "iothread.h"
#include "loop.h"
#include "vblk.h"
#include "test-util.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define IMG_SIZE (4 * MiB)
#define BIT(n) (UINT64_C(1) << (n))

struct gfx {
	struct iothread *io;
	struct loop *ctx;
	struct fake_blk *fk;
};

static void fake_new_fn(void *opaque)
{
	struct gfx *f = opaque;

	f->fk = fake_blk_new(f->ctx, "fake", IMG_SIZE);
}

static void fake_free_fn(void *opaque)
{
	struct gfx *f = opaque;

	fake_blk_free(f->fk);
}

static int setup(void **state)
{
	struct gfx *f = calloc(1, sizeof(*f));

	if (!f || iothread_new(0, &f->io) < 0)
		return -1;
	f->ctx = iothread_get_ctx(f->io);
	loop_call_sync(f->ctx, fake_new_fn, f);
	*state = f;
	return f->fk ? 0 : -1;
}

static int teardown(void **state)
{
	struct gfx *f = *state;

	loop_call_sync(f->ctx, fake_free_fn, f);
	iothread_free(f->io);
	free(f);
	return 0;
}

static struct guest_opts base_opts(enum guest_rw rw)
{
	return (struct guest_opts){
		.rw = rw, .bs = 4096, .iodepth = 16, .queue_size = 64,
		.requests = 1000, .rwmix_read = 50, .verify = true,
		.seed = 42,
	};
}

/* Wait (bounded) until g is finished. */
static bool wait_finished(struct guest *g)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;

	while (!guest_finished(g) && test_now_ns() < end)
		usleep(500);
	return guest_finished(g);
}

/* Run a guest to its end; returns its statistics. */
static struct guest_stats run(struct gfx *f, const struct guest_opts *o)
{
	struct guest_stats st;
	struct guest *g = NULL;

	assert_int_equal(guest_start(f->fk->img, f->ctx, o, &g), 0);
	assert_true(wait_finished(g));
	guest_get_stats(g, &st);
	guest_free(g);
	return st;
}

/* Wait (bounded) until the guest completed at least n reads and writes. */
static struct guest_stats wait_ops(struct guest *g, uint64_t n)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	struct guest_stats st;

	do {
		usleep(500);
		guest_get_stats(g, &st);
	} while (st.ops[0] + st.ops[1] < n && test_now_ns() < end);
	assert_true(st.ops[0] + st.ops[1] >= n);
	return st;
}

/* What every clean run has. */
static void check_clean(const struct guest_stats *st)
{
	assert_int_equal(st->state, GUEST_DONE);
	assert_int_equal(st->unexpected, 0);
	assert_int_equal(st->verify_mismatches, 0);
	assert_int_equal(st->status[VIRTIO_BLK_S_IOERR], 0);
	assert_int_equal(st->status[VIRTIO_BLK_S_UNSUPP], 0);
	assert_int_equal(st->ops[3], 1);               /* GET_ID */
	assert_false(st->broken);
	assert_true(st->lat_p50_ns > 0);
	assert_true(st->lat_p50_ns <= st->lat_p99_ns);
}

static void check_randwrite_verify(struct gfx *f, bool event_idx,
				   bool indirect)
{
	struct guest_opts o = base_opts(GUEST_RW_RANDWRITE);
	struct guest_stats st;

	o.event_idx = event_idx;
	o.indirect = indirect;
	o.region = MiB;                                 /* 256 slots */
	st = run(f, &o);
	check_clean(&st);
	assert_int_equal(st.ops[1], 1000);
	assert_int_equal(st.bytes_written, 1000 * 4096);
	/* The read-back pass read every slot written: nearly all of 256. */
	assert_true(st.verify_checked > 200 && st.verify_checked <= 256);
	assert_int_equal(st.ops[0], st.verify_checked);
	assert_int_equal(!!(st.features & BIT(VIRTIO_RING_F_EVENT_IDX)),
			 event_idx);
	assert_int_equal(!!(st.features & BIT(VIRTIO_RING_F_INDIRECT_DESC)),
			 indirect);
	assert_true(st.irqs_received > 0);
	assert_true(st.irqs_raised >= st.irqs_received);
}

static void test_randwrite_verify(void **state)
{
	check_randwrite_verify(*state, false, false);
}

static void test_randwrite_verify_event_idx(void **state)
{
	check_randwrite_verify(*state, true, false);
}

static void test_randwrite_verify_indirect(void **state)
{
	check_randwrite_verify(*state, false, true);
}

static void test_randwrite_verify_both(void **state)
{
	check_randwrite_verify(*state, true, true);
}

/* Reads check what writes left; flushes go to the driver. */
static void test_randrw_flush(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o = base_opts(GUEST_RW_RANDRW);
	struct guest_stats st;

	o.bs = 12 * KiB;                                /* 3 descriptors */
	o.iodepth = 32;
	o.queue_size = 128;
	o.requests = 2000;
	o.flush_every = 10;
	o.region = 2 * MiB;
	o.event_idx = true;
	st = run(f, &o);
	check_clean(&st);
	/* 2000 in the run, then the read-back pass. */
	assert_true(st.ops[0] + st.ops[1] >= 2000);
	assert_true(st.ops[1] > 800 && st.ops[1] < 1200);
	assert_true(st.ops[2] >= st.ops[1] / 10 - 1);
	assert_true(st.ops[2] > 0);
	assert_true(st.verify_checked > 0);
	assert_true(f->fk->ops[BLK_OP_FLUSH] >= st.ops[2]);
}

/* Sequential writes then reads with 4 data descriptors a request. */
static void test_sequential(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o = base_opts(GUEST_RW_WRITE);
	struct guest_stats st;

	o.bs = 16 * KiB;
	o.offset = 64 * KiB;
	o.region = 512 * KiB;                           /* 32 slots */
	o.requests = 64;
	st = run(f, &o);
	check_clean(&st);
	assert_int_equal(st.verify_checked, 32);
	assert_true(fake_blk_allocated(f->fk, 64 * KiB, 512 * KiB));
	assert_false(fake_blk_allocated(f->fk, 0, 64 * KiB));
	assert_false(fake_blk_allocated(f->fk, 576 * KiB, 64 * KiB));
	o.rw = GUEST_RW_READ;
	o.iodepth = 4;
	st = run(f, &o);
	check_clean(&st);
	assert_int_equal(st.ops[0], 64);
	assert_int_equal(st.bytes_read, 64 * 16 * KiB);
	assert_int_equal(st.verify_checked, 0);         /* nothing written */
}

/* A run bounded by time ends on time; one unbounded ends on stop. */
static void test_time_bounded(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o = base_opts(GUEST_RW_RANDREAD);
	struct guest_stats st;
	struct guest *g;

	o.requests = 0;
	o.run_ms = 200;
	o.iodepth = 4;
	st = run(f, &o);
	check_clean(&st);
	assert_true(st.elapsed_ns >= 200000000ull);
	assert_true(st.elapsed_ns < 5000000000ull);
	assert_true(st.ops[0] > 0);
	print_message("randread 4 KiB depth 4, 0.2 s: %" PRIu64 " requests/s, "
		      "p50 %" PRIu64 " us, p99 %" PRIu64 " us, %" PRIu64
		      " interrupts\n",
		      st.ops[0] * UINT64_C(1000000000) / st.elapsed_ns,
		      st.lat_p50_ns / 1000, st.lat_p99_ns / 1000,
		      st.irqs_received);

	o.run_ms = 0;
	o.rw = GUEST_RW_RANDRW;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), 0);
	wait_ops(g, 200);
	assert_false(guest_finished(g));
	guest_stop(g);
	assert_true(wait_finished(g));
	guest_get_stats(g, &st);
	assert_int_equal(st.state, GUEST_STOPPED);
	assert_int_equal(st.unexpected, 0);
	assert_int_equal(st.verify_mismatches, 0);
	guest_stop(g);                                  /* finished: no-op */
	guest_free(g);
}

static void check_inject(struct gfx *f, enum guest_inject kind,
			 bool indirect)
{
	struct guest_opts o = base_opts(GUEST_RW_RANDWRITE);
	struct guest_stats st;
	char want[128];

	o.inject = kind;
	o.indirect = indirect;
	o.iodepth = 4;
	o.queue_size = 16;
	st = run(f, &o);
	snprintf(want, sizeof(want), "queue broken: %s (as expected)",
		 vring_error_str(guest_inject_error(kind)));
	assert_string_equal(st.verdict, want);
	assert_int_equal(st.state, GUEST_DONE);
	assert_true(st.broken);
	assert_int_equal(st.device_error, guest_inject_error(kind));
	assert_int_equal(st.unexpected, 0);
	assert_int_equal(st.ops[1], 8);                 /* the good ones */
	assert_int_equal(st.status[VIRTIO_BLK_S_OK], 9);
}

static void test_inject(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o = base_opts(GUEST_RW_RANDWRITE);

	for (int k = GUEST_INJECT_LOOP; k <= GUEST_INJECT_READ_AFTER_WRITE;
	     k++) {
		check_inject(f, k, false);
		check_inject(f, k, true);
	}
	/* The daemon (this process) and the image are fine: a clean run. */
	o.requests = 200;
	check_clean((struct guest_stats[]){ run(f, &o) });
}

static void set_ro_fn(void *opaque)
{
	struct gfx *f = opaque;

	f->fk->img->read_only = !f->fk->img->read_only;
}

static void test_bad_opts(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o, good = base_opts(GUEST_RW_RANDWRITE);
	struct guest *g = NULL;
	const struct { const char *what; size_t off; uint64_t val; } bad[] = {
#define B(field, v) { #field, offsetof(struct guest_opts, field), v }
		B(bs, 0), B(bs, 1000), B(bs, 8 * MiB), B(iodepth, 0),
		B(iodepth, 65), B(queue_size, 100), B(queue_size, 65536),
		B(offset, 100), B(offset, IMG_SIZE + 4096),
		B(region, 700), B(region, IMG_SIZE + 4096), B(region, 2048),
		B(rwmix_read, 101), B(rw, 9), B(inject, 42),
#undef B
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		o = good;
		if (!strcmp(bad[i].what, "bs"))
			o.bs = (uint32_t)bad[i].val;
		else if (!strcmp(bad[i].what, "offset") ||
			 !strcmp(bad[i].what, "region"))
			*(uint64_t *)((char *)&o + bad[i].off) = bad[i].val;
		else
			*(unsigned *)((char *)&o + bad[i].off) =
				(unsigned)bad[i].val;
		assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g),
				 -EINVAL);
	}
	/* Region past the end once the offset is added. */
	o = good;
	o.offset = IMG_SIZE - 4096;
	o.region = 8192;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), -EINVAL);
	/* 16 KiB is 4 data descriptors: 6 do not fit a queue of 4. */
	o = good;
	o.bs = 16 * KiB;
	o.queue_size = 4;
	o.iodepth = 4;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), -EINVAL);
	o.indirect = true;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), -EINVAL);
	/* An injection needs room for its chains. */
	o = good;
	o.queue_size = 2;
	o.iodepth = 1;
	o.bs = 512;
	o.inject = GUEST_INJECT_LOOP;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), -EINVAL);
	/* A read-only image refuses writing workloads, serves reads. */
	loop_call_sync(f->ctx, set_ro_fn, f);
	o = good;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), -EROFS);
	o.rw = GUEST_RW_RANDRW;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), -EROFS);
	o.rwmix_read = 100;
	o.requests = 50;
	o.flush_every = 5;
	check_clean((struct guest_stats[]){ run(f, &o) });
	loop_call_sync(f->ctx, set_ro_fn, f);
	assert_null(g);
}

/* guest_free from a bottom half of the image's own context. */
struct free_call {
	struct guest *g;
	atomic_bool done;
};

static void free_bh(void *opaque)
{
	struct free_call *c = opaque;

	guest_free(c->g);
	atomic_store(&c->done, true);
}

static void test_free_in_context(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o = base_opts(GUEST_RW_RANDRW);
	struct free_call c = { .done = false };
	unsigned long long end;

	o.requests = 0;                                 /* until stopped */
	o.iodepth = 32;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &c.g), 0);
	wait_ops(c.g, 200);
	assert_int_equal(loop_bh_schedule_oneshot(f->ctx, free_bh, &c), 0);
	end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	while (!atomic_load(&c.done) && test_now_ns() < end)
		usleep(500);
	assert_true(atomic_load(&c.done));
}

/*
 * While the image is drained (from this thread: the drain is handed to
 * the iothread) the guest's requests are not popped, so nothing
 * completes; the end of the drain resumes the run.
 */
static void test_drain_during_run(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o = base_opts(GUEST_RW_RANDRW);
	struct guest_stats a, b;
	struct guest *g;

	o.requests = 0;                                 /* until stopped */
	o.iodepth = 8;
	assert_int_equal(guest_start(f->fk->img, f->ctx, &o, &g), 0);
	a = wait_ops(g, 100);
	blk_drained_begin(f->fk->img);
	/* What was in flight completed before the drain began; let the
	 * guest reap it, then watch for 20 ms: nothing moves. */
	usleep(10000);
	guest_get_stats(g, &a);
	usleep(20000);
	guest_get_stats(g, &b);
	assert_int_equal(a.ops[0] + a.ops[1], b.ops[0] + b.ops[1]);
	assert_int_equal(b.state, GUEST_RUNNING);
	blk_drained_end(f->fk->img);
	wait_ops(g, a.ops[0] + a.ops[1] + 100);
	guest_stop(g);
	assert_true(wait_finished(g));
	guest_get_stats(g, &b);
	assert_int_equal(b.state, GUEST_STOPPED);
	assert_int_equal(b.unexpected, 0);
	assert_int_equal(b.verify_mismatches, 0);
	guest_free(g);
}

/* A fake that flips a byte of what it reads: verify must notice. */
static void corrupt_hook(void *opaque, struct fake_blk *fk, enum blk_op op,
			 uint64_t off, uint64_t bytes)
{
	(void)opaque;
	if (op == BLK_OP_READ && bytes > 100)
		fk->data[off + 100] ^= 0x10;
}

static void set_hook_fn(void *opaque)
{
	struct gfx *f = opaque;

	f->fk->hook = f->fk->hook ? NULL : corrupt_hook;
}

static void test_verify_fails(void **state)
{
	struct gfx *f = *state;
	struct guest_opts o = base_opts(GUEST_RW_RANDRW);
	struct guest_stats st;

	o.region = 256 * KiB;
	o.requests = 500;
	loop_call_sync(f->ctx, set_hook_fn, f);
	st = run(f, &o);
	loop_call_sync(f->ctx, set_hook_fn, f);
	assert_int_equal(st.state, GUEST_DONE);
	assert_int_equal(st.unexpected, 0);
	assert_true(st.verify_checked > 0);
	assert_true(st.verify_mismatches > 0);
	assert_true(st.verify_mismatches <= st.verify_checked);
}

/* ---- building blocks ------------------------------------------------- */

static void test_pattern(void **state)
{
	static uint8_t buf[4096];

	(void)state;
	guest_pattern_fill(buf, sizeof(buf), 8192, 7, 99);
	assert_int_equal(guest_pattern_check(buf, sizeof(buf), 8192, 7, 99), 0);
	assert_int_equal(guest_pattern_check(buf, sizeof(buf), 8192, 6, 99), 8);
	assert_int_equal(guest_pattern_check(buf, sizeof(buf), 8704, 7, 99), 8);
	assert_int_equal(guest_pattern_check(buf, sizeof(buf), 8192, 7, 98), 8);
	buf[3000] ^= 1;                                 /* sector 5 */
	assert_int_equal(guest_pattern_check(buf, sizeof(buf), 8192, 7, 99), 1);
}

static void test_latency(void **state)
{
	static struct guest_lat l;

	(void)state;
	assert_int_equal(guest_lat_percentile(&l, 50), 0);
	for (int i = 0; i < 98; i++)
		guest_lat_add(&l, 1000);
	guest_lat_add(&l, 5);
	guest_lat_add(&l, 1000000);
	/* Good to about 12%. */
	assert_true(guest_lat_percentile(&l, 50) >= 880 &&
		    guest_lat_percentile(&l, 50) <= 1120);
	assert_true(guest_lat_percentile(&l, 99) <= 1120);
	assert_true(guest_lat_percentile(&l, 100) >= 880000);
	assert_int_equal(guest_lat_percentile(&l, 1), 5);
	assert_int_equal(l.count, 100);
}

/* Poll ctx until it has had nothing to do three times running. */
static void settle(struct loop *ctx)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	int idle = 0;

	while (idle < 3 && test_now_ns() < end)
		idle = loop_poll(ctx, false) ? 0 : idle + 1;
}

/* Publish, kick, let the device work, reap one; returns the status. */
static uint8_t blocks_run(struct loop *ctx, struct vring_drv *drv,
			  struct vring_mem *mem, int kick,
			  const struct guest_chain_mem *m,
			  const struct guest_io *io, bool indirect)
{
	uint64_t one = 1;
	uint32_t len;
	void *tok;

	assert_true(guest_chain_add(drv, mem, m, io, indirect, NULL) >= 0);
	vring_drv_publish(drv);
	if (vring_drv_kick_needed(drv))
		assert_int_equal(write(kick, &one, 8), 8);
	settle(ctx);
	assert_int_equal(vring_drv_get_used(drv, &tok, &len), 1);
	return guest_chain_status(mem, m);
}

/*
 * The guest's chains, by hand, against a device in this thread: a
 * pattern written and read back, DISCARD with several segments, WRITE_ZEROES
 * with UNMAP, and DISCARD with UNMAP refused.
 */
static void test_blocks_dwz(void **state)
{
	const struct virtio_blk_discard_write_zeroes d2[2] = {
		{ 0, 8, 0 }, { 16, 8, 0 },
	}, wz = { 8, 8, VIRTIO_BLK_WZ_F_UNMAP }, bad = { 8, 8, 1 };
	struct loop *ctx;
	struct fake_blk *fk;
	struct vring_mem *mem;
	struct vring_addrs a;
	struct vring_drv *drv;
	struct vblk *v;
	struct guest_chain_mem m;
	struct guest_io io;
	uint64_t seed = 1, feat;
	int kick = eventfd(0, EFD_NONBLOCK), call = eventfd(0, EFD_NONBLOCK);

	(void)state;
	assert_int_equal(loop_new(&ctx), 0);
	loop_set_current(ctx);
	fk = fake_blk_new(ctx, "fake", IMG_SIZE);
	assert_non_null(fk);
	fake_blk_fill(fk, 0, 16 * KiB, &seed);
	assert_int_equal(vring_mem_new(MiB, &mem), 0);
	assert_int_equal(vring_layout(16, 0, &a), 0);
	guest_chain_mem_init(&m, 64 * KiB, 128 * KiB, 16 * KiB);
	assert_int_equal(vblk_new(fk->img, mem, "blocks", &v), 0);
	feat = vblk_features(v);
	assert_int_equal(vring_drv_new(mem, 16, &a, feat, &drv), 0);
	assert_int_equal(vblk_start(v, 16, &a, feat, kick, call), 0);

	for (int indirect = 0; indirect < 2; indirect++) {
		guest_pattern_fill(vring_mem_ptr(mem, m.data, 16 * KiB),
				   16 * KiB, 32 * KiB, 3, 4);
		io = (struct guest_io){ VIRTIO_BLK_T_OUT, 64, m.data,
					16 * KiB, false };
		assert_int_equal(blocks_run(ctx, drv, mem, kick, &m, &io,
					    indirect), VIRTIO_BLK_S_OK);
		memset(vring_mem_ptr(mem, m.data, 16 * KiB), 0, 16 * KiB);
		io.type = VIRTIO_BLK_T_IN;
		io.writable = true;
		assert_int_equal(blocks_run(ctx, drv, mem, kick, &m, &io,
					    indirect), VIRTIO_BLK_S_OK);
		assert_int_equal(guest_pattern_check(
			vring_mem_ptr(mem, m.data, 16 * KiB), 16 * KiB,
			32 * KiB, 3, 4), 0);
	}
	assert_int_equal(guest_put_dwz(mem, m.small, d2, 2), 0);
	io = (struct guest_io){ VIRTIO_BLK_T_DISCARD, 0, m.small, 32, false };
	assert_int_equal(blocks_run(ctx, drv, mem, kick, &m, &io, false),
			 VIRTIO_BLK_S_OK);
	assert_false(fake_blk_allocated(fk, 0, 4 * KiB));
	assert_true(fake_blk_allocated(fk, 4 * KiB, 4 * KiB));
	assert_false(fake_blk_allocated(fk, 8 * KiB, 4 * KiB));
	assert_int_equal(guest_put_dwz(mem, m.small, &wz, 1), 0);
	io = (struct guest_io){ VIRTIO_BLK_T_WRITE_ZEROES, 0, m.small, 16,
				false };
	assert_int_equal(blocks_run(ctx, drv, mem, kick, &m, &io, true),
			 VIRTIO_BLK_S_OK);
	assert_false(fake_blk_allocated(fk, 4 * KiB, 4 * KiB));
	assert_int_equal(guest_put_dwz(mem, m.small, &bad, 1), 0);
	io.type = VIRTIO_BLK_T_DISCARD;
	assert_int_equal(blocks_run(ctx, drv, mem, kick, &m, &io, false),
			 VIRTIO_BLK_S_UNSUPP);

	vblk_free(v);
	vring_drv_free(drv);
	vring_mem_free(mem);
	fake_blk_free(fk);
	loop_set_current(NULL);
	loop_free(ctx);
	close(kick);
	close(call);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_randwrite_verify),
		T(test_randwrite_verify_event_idx),
		T(test_randwrite_verify_indirect),
		T(test_randwrite_verify_both),
		T(test_randrw_flush),
		T(test_sequential),
		T(test_time_bounded),
		T(test_inject),
		T(test_bad_opts),
		T(test_free_in_context),
		T(test_drain_during_run),
		T(test_verify_fails),
		cmocka_unit_test(test_pattern),
		cmocka_unit_test(test_latency),
		cmocka_unit_test(test_blocks_dwz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the virtio-blk dataplane's queue (part of test-vblk, whose
 * fixture they use): the queue breaking on chains it cannot answer,
 * oversized chains, batching, kicks while busy, drain, read-only images,
 * interrupt suppression and vblk_stop.
 */
#include "config.h"

#include "test-vblk.h"

/*
 * Two writes are held in the driver when a chain without a writable byte
 * arrives in the same kick: the queue breaks, the guest gets a config
 * interrupt, and the held writes finish without being pushed.
 */
void test_broken_no_status(void **state)
{
	struct fx *f = *state;
	struct vring_seg d, s[2];
	struct vblk_stats st;
	uint64_t n;

	start(f, 16, ~0ull);
	d = seg(f, 512);
	f->fk->hold[BLK_OP_WRITE] = true;
	add_req(f, VIRTIO_BLK_T_OUT, 0, &d, 1, false, false);
	add_req(f, VIRTIO_BLK_T_OUT, 8, &d, 1, false, false);
	s[0] = (struct vring_seg){ galloc(f, 16), 16 };
	s[1] = d;
	assert_true(vring_drv_add(f->drv, s, 2, 0, NULL) >= 0);
	add_req(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, false);
	kick(f);
	st = stats(f);
	assert_true(st.broken);
	assert_int_equal(st.error, VRING_ERR_NONE);
	assert_non_null(st.reason);
	assert_int_equal(st.config_irqs, 1);
	assert_int_equal(st.in_flight, 2);
	assert_int_equal(read(f->call, &n, 8), 8);
	fake_blk_release_all(f->fk);
	settle(f);
	st = stats(f);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(st.ops[1], 2);
	assert_int_equal(st.irqs_raised, 0);
	reap(f, 0);
	/* Later kicks pop nothing; stop still works. */
	kick(f);
	assert_int_equal(stats(f).ops[0], 0);
	vblk_stop(f->v);
}

/* A chain the ring itself refuses (it loops) breaks the queue too. */
void test_broken_loop(void **state)
{
	struct fx *f = *state;
	struct vring_seg d;
	struct virtq_desc *desc;
	struct treq t;

	start(f, 16, ~0ull);
	d = seg(f, 512);
	t = add_req(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, false);
	desc = hp(f, f->a.desc);
	/* Its last descriptor goes back to the data one (back to the
	 * readable head would be a readable after a writable). */
	for (int i = t.head; ; i = le16toh(desc[i].next)) {
		if (!(le16toh(desc[i].flags) & VIRTQ_DESC_F_NEXT)) {
			desc[i].flags = htole16(le16toh(desc[i].flags) |
						VIRTQ_DESC_F_NEXT);
			desc[i].next = desc[t.head].next;
			break;
		}
	}
	kick(f);
	assert_true(stats(f).broken);
	assert_int_equal(stats(f).error, VRING_ERR_LOOP);
	assert_string_equal(stats(f).reason, vring_error_str(VRING_ERR_LOOP));
	assert_int_equal(status(f, &t), 0xff);
	reap(f, 0);
}

/* A chain over seg_max: answered IOERR, the queue goes on. */
void test_oversized_chain(void **state)
{
	struct fx *f = *state;
	struct vring_seg d[VBLK_SEG_MAX + 4];
	struct treq t;

	start(f, 256, ~0ull);
	for (unsigned i = 0; i < ARRAY_SIZE(d); i++)
		d[i] = seg(f, 512);
	t = add_req(f, VIRTIO_BLK_T_IN, 0, d, ARRAY_SIZE(d), true, false);
	kick(f);
	assert_int_equal(reap(f, 1), 1);
	assert_int_equal(status(f, &t), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, 0, d, 4, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_false(stats(f).broken);
}

/* N requests in one kick: one round, one interrupt. */
void test_batch(void **state)
{
	struct fx *f = *state;
	struct vblk_stats st;
	struct vring_seg d;
	uint64_t n;

	start(f, 64, ~0ull);
	for (int i = 0; i < 16; i++) {
		d = seg(f, 4096);
		add_req(f, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, i * 8u,
			&d, 1, i % 2, false);
	}
	kick(f);
	reap(f, 16);
	st = stats(f);
	assert_int_equal(st.kicks, 1);
	assert_int_equal(st.batches, 1);
	assert_int_equal(st.max_batch, 16);
	assert_int_equal(st.irqs_raised, 1);
	assert_int_equal(st.irqs_suppressed, 15);
	assert_int_equal(read(f->call, &n, 8), 8);
	assert_int_equal(n, 1);
}

/* With aio=native, a kick's writes reach the kernel in one io_submit. */
void test_batch_native(void **state)
{
	struct fx *f = *state;
	struct blk_open_opts o = {
		.aio = BLK_AIO_NATIVE, .cache = BLK_CACHE_NONE,
	};
	struct laio_stats l0, l1;
	unsigned long long end;
	struct vring_seg d;
	uint32_t len;
	void *tok;
	int fd, got = 0;

	strcpy(f->path, "/var/tmp/test-vblk.XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
	assert_int_equal(tpool_new(NULL, &f->pool), 0);
	o.path = f->path;
	if (blk_open(&o, f->ctx, f->pool, &f->img) < 0) {
		f->img = f->fk->img;
		skip();                  /* no O_DIRECT on /var/tmp */
	}
	start(f, 64, ~0ull);
	laio_get_stats(f->img->laio, &l0);
	for (int i = 0; i < 16; i++) {
		f->brk = ROUND_UP(f->brk, 4096);
		d = seg(f, 4096);
		memset(hp(f, d.addr), i, 4096);
		add_req(f, VIRTIO_BLK_T_OUT, i * 8u, &d, 1, false, false);
	}
	kick(f);
	end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	while (got < 16 && test_now_ns() < end) {
		if (vring_drv_get_used(f->drv, &tok, &len) == 1)
			got++;
		else
			loop_poll(f->ctx, true);
	}
	assert_int_equal(got, 16);
	laio_get_stats(f->img->laio, &l1);
	assert_int_equal(l1.submitted - l0.submitted, 16);
	assert_int_equal(l1.submit_calls - l0.submit_calls, 1);
	assert_int_equal(stats(f).batches, 1);
	assert_int_equal(stats(f).status[VIRTIO_BLK_S_OK], 16);
}

/* The fake's hook adds a chain while the device is in its round. */
struct late {
	struct fx *f;
	struct vring_seg d;
	bool added, kick_needed;
};

static void late_hook(void *opaque, struct fake_blk *fk, enum blk_op op,
		      uint64_t off, uint64_t bytes)
{
	struct late *l = opaque;

	(void)fk;
	(void)off;
	(void)bytes;
	if (op != BLK_OP_READ || l->added)
		return;
	l->added = true;
	add_req(l->f, VIRTIO_BLK_T_IN, 8, &l->d, 1, true, false);
	vring_drv_publish(l->f->drv);
	l->kick_needed = vring_drv_kick_needed(l->f->drv);
}

/*
 * A chain published while the device is busy, without a kick (the device
 * asked for none), is served in the same round.
 */
void test_no_kick_while_busy(void **state)
{
	struct fx *f = *state;
	struct late l = { .f = f };
	struct vblk_stats st;
	struct vring_seg d;

	start(f, 16, ~BIT(VIRTIO_RING_F_EVENT_IDX));
	d = seg(f, 512);
	l.d = seg(f, 512);
	f->fk->hook = late_hook;
	f->fk->hook_opaque = &l;
	add_req(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, false);
	kick(f);
	assert_true(l.added);
	assert_false(l.kick_needed);
	reap(f, 2);
	st = stats(f);
	assert_int_equal(st.kicks, 1);
	assert_int_equal(st.batches, 1);
	assert_int_equal(st.max_batch, 2);
	f->fk->hook = NULL;
}

/* Nothing is popped while drained; the end of the drain resumes. */
void test_drain(void **state)
{
	struct fx *f = *state;
	struct vblk_stats st;
	struct vring_seg d;

	start(f, 16, ~0ull);
	blk_drained_begin(f->img);
	for (int i = 0; i < 4; i++) {
		d = seg(f, 512);
		add_req(f, VIRTIO_BLK_T_OUT, i * 8u, &d, 1, false, false);
	}
	kick(f);
	st = stats(f);
	assert_int_equal(st.kicks, 1);
	assert_int_equal(st.batches, 0);
	assert_int_equal(st.in_flight, 0);
	assert_int_equal(f->fk->ops[BLK_OP_WRITE], 0);
	reap(f, 0);
	blk_drained_end(f->img);
	settle(f);
	reap(f, 4);
	st = stats(f);
	assert_int_equal(st.batches, 1);
	assert_int_equal(st.max_batch, 4);
	assert_int_equal(st.status[VIRTIO_BLK_S_OK], 4);
	assert_int_equal(f->fk->ops[BLK_OP_WRITE], 4);
}

/* A read-only image: RO offered, writes refused, nothing written. */
void test_read_only(void **state)
{
	struct fx *f = *state;
	const struct virtio_blk_discard_write_zeroes one = { 0, 8, 0 };
	struct vring_seg d, z;
	uint64_t seed = 3;
	uint8_t copy[4096];

	fake_blk_fill(f->fk, 0, 4096, &seed);
	memcpy(copy, f->fk->data, 4096);
	f->img->read_only = true;
	start(f, 16, ~0ull);
	assert_true(f->features & BIT(VIRTIO_BLK_F_RO));
	d = seg(f, 4096);
	z = dwz(f, &one, 1);
	assert_int_equal(run1(f, VIRTIO_BLK_T_OUT, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_DISCARD, 0, &z, 1, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, &z, 1, false,
			      NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(hp(f, d.addr), copy, 4096);
	assert_memory_equal(f->fk->data, copy, 4096);
	assert_int_equal(f->fk->ops[BLK_OP_WRITE] + f->fk->ops[BLK_OP_DISCARD] +
			 f->fk->ops[BLK_OP_WRITE_ZEROES], 0);
	f->img->read_only = false;
}

/* EVENT_IDX: no interrupt until used idx passes used_event. */
void test_event_idx(void **state)
{
	struct fx *f = *state;
	struct vblk_stats st;
	struct vring_seg d;
	uint16_t *used_event;
	uint64_t n;

	start(f, 16, ~0ull);
	assert_true(f->features & BIT(VIRTIO_RING_F_EVENT_IDX));
	used_event = hp(f, f->a.avail + 4 + 2 * f->num);
	*used_event = htole16(1000);
	for (int i = 0; i < 5; i++) {
		d = seg(f, 512);
		add_req(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, false);
	}
	kick(f);
	st = stats(f);
	assert_int_equal(st.irqs_raised, 0);
	assert_int_equal(st.irqs_suppressed, 5);
	assert_int_equal(read(f->call, &n, 8), -1);
	/* Asking for the next one gets it. */
	assert_true(vring_drv_enable_cb(f->drv));    /* 5 are waiting */
	reap(f, 5);
	assert_false(vring_drv_enable_cb(f->drv));
	run1(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, NULL);
	st = stats(f);
	assert_int_equal(st.irqs_raised, 1);
	assert_int_equal(read(f->call, &n, 8), 8);
}

/* Without EVENT_IDX, NO_INTERRUPT suppresses them. */
void test_no_interrupt_flag(void **state)
{
	struct fx *f = *state;
	struct vring_seg d;

	start(f, 16, ~BIT(VIRTIO_RING_F_EVENT_IDX));
	d = seg(f, 512);
	vring_drv_disable_cb(f->drv);
	run1(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, NULL);
	run1(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, NULL);
	assert_int_equal(stats(f).irqs_raised, 0);
	assert_int_equal(stats(f).irqs_suppressed, 2);
	vring_drv_enable_cb(f->drv);
	run1(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, NULL);
	assert_int_equal(stats(f).irqs_raised, 1);
}

struct releaser {
	struct fake_blk *fk;
	struct loop_timer t;
	int released;
};

static void release_cb(void *opaque)
{
	struct releaser *r = opaque;

	if (fake_blk_release(r->fk))
		r->released++;
	if (r->released < 3)
		loop_timer_mod(&r->t, loop_now_ns() + 1000000);
}

/*
 * vblk_stop waits for the requests in flight (released one a millisecond
 * by a timer meanwhile), pushes them, and then hears no more kicks.
 */
void test_stop_waits(void **state)
{
	struct fx *f = *state;
	struct releaser rel = { .fk = f->fk };
	struct vring_seg d;

	start(f, 16, ~0ull);
	f->fk->hold[BLK_OP_WRITE] = true;
	for (int i = 0; i < 3; i++) {
		d = seg(f, 512);
		add_req(f, VIRTIO_BLK_T_OUT, i * 8u, &d, 1, false, false);
	}
	kick(f);
	assert_int_equal(f->fk->nheld, 3);
	loop_timer_init(&rel.t, f->ctx, release_cb, &rel);
	loop_timer_mod(&rel.t, loop_now_ns() + 1000000);
	vblk_stop(f->v);
	assert_int_equal(rel.released, 3);
	assert_int_equal(stats(f).in_flight, 0);
	assert_int_equal(stats(f).irqs_raised, 1);
	reap(f, 3);
	f->fk->hold[BLK_OP_WRITE] = false;
	d = seg(f, 512);
	add_req(f, VIRTIO_BLK_T_OUT, 0, &d, 1, false, false);
	kick(f);
	assert_int_equal(f->fk->ops[BLK_OP_WRITE], 3);
	loop_timer_del(&rel.t);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the virtio-blk dataplane: every request type and its status,
 * the layout rules, the queue breaking on a chain it cannot answer,
 * batching (one round per kick, one io_submit with aio=native), drain,
 * read-only images and interrupt suppression.
 *
 * The main thread owns a context and plays both sides: it builds chains
 * with vring_drv_* in guest memory, kicks through the eventfd, and polls
 * the context until the device has nothing left to do (bounded by
 * TEST_WAIT_LIMIT_NS); the device runs in the same context, so the only
 * concurrency is the one the loop creates.  The image is the RAM fake of
 * fake-blk.h, or a scratch file under /var/tmp for aio=native.
 *
 * This file holds the fixture and the request types; the queue's
 * behaviour is tested in test-vblk-queue.c.
 */
#include "config.h"

#include "test-vblk.h"

int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f || loop_new(&f->ctx) < 0)
		return -1;
	loop_set_current(f->ctx);
	f->fk = fake_blk_new(f->ctx, "fake", IMG_SIZE);
	if (!f->fk)
		return -1;
	f->img = f->fk->img;
	f->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	*state = f;
	return f->kick >= 0 && f->call >= 0 ? 0 : -1;
}

int teardown(void **state)
{
	struct fx *f = *state;

	vblk_free(f->v);
	vring_drv_free(f->drv);
	vring_mem_free(f->mem);
	if (f->img != f->fk->img)
		blk_close(f->img);
	if (f->path[0])
		unlink(f->path);
	tpool_free(f->pool);
	fake_blk_free(f->fk);
	close(f->kick);
	close(f->call);
	loop_set_current(NULL);
	loop_free(f->ctx);
	free(f);
	return 0;
}

/* Poll until the loop has had nothing to do three times running. */
void settle(struct fx *f)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;
	int idle = 0;

	while (idle < 3 && test_now_ns() < end) {
		if (loop_poll(f->ctx, false))
			idle = 0;
		else
			idle++;
	}
}

/* A device and a queue of num entries; features = offered & mask. */
void start(struct fx *f, unsigned num, uint64_t mask)
{
	f->num = num;
	assert_int_equal(vring_mem_new(MEM_SIZE, &f->mem), 0);
	assert_int_equal(vring_layout(num, 0, &f->a), 0);
	f->brk = ROUND_UP(f->a.end, 4096);
	assert_int_equal(vblk_new(f->img, f->mem, "serial-1234", &f->v), 0);
	f->features = vblk_features(f->v) & mask;
	assert_int_equal(vring_drv_new(f->mem, num, &f->a, f->features,
				       &f->drv), 0);
	assert_int_equal(vblk_start(f->v, num, &f->a, f->features, f->kick,
				    f->call), 0);
	settle(f);
}

uint64_t galloc(struct fx *f, uint64_t len)
{
	uint64_t a = f->brk;

	f->brk = ROUND_UP(f->brk + len, 64);
	assert_true(f->brk <= MEM_SIZE);
	return a;
}

void *hp(struct fx *f, uint64_t addr)
{
	return vring_mem_ptr(f->mem, addr, 0);
}

/*
 * Add a request: the header (split in two descriptors if split_hdr), the
 * data segments (writable or not), the status.
 */
struct treq add_req(struct fx *f, uint32_t type, uint64_t sector,
			   const struct vring_seg *data, unsigned nd,
			   bool writable, bool split_hdr)
{
	struct virtio_blk_outhdr h = { htole32(type), 0, htole64(sector) };
	struct vring_seg segs[300];
	struct treq r = { .hdr = galloc(f, 16), .status = galloc(f, 1) };
	unsigned n = 0;

	memcpy(hp(f, r.hdr), &h, sizeof(h));
	*(uint8_t *)hp(f, r.status) = 0xff;
	if (split_hdr) {
		segs[n++] = (struct vring_seg){ r.hdr, 4 };
		segs[n++] = (struct vring_seg){ r.hdr + 4, 12 };
	} else {
		segs[n++] = (struct vring_seg){ r.hdr, 16 };
	}
	if (nd)
		memcpy(segs + n, data, nd * sizeof(*data));
	n += nd;
	segs[n++] = (struct vring_seg){ r.status, 1 };
	r.head = vring_drv_add(f->drv, segs, writable ? n - nd - 1 : n - 1,
			       writable ? nd + 1 : 1, NULL);
	assert_true(r.head >= 0);
	return r;
}

/* One data segment of len bytes at a fresh address. */
struct vring_seg seg(struct fx *f, uint32_t len)
{
	return (struct vring_seg){ galloc(f, len), len };
}

uint8_t status(struct fx *f, const struct treq *r)
{
	return *(uint8_t *)hp(f, r->status);
}

/* Publish, kick if the device wants it, and let it work. */
void kick(struct fx *f)
{
	uint64_t one = 1;

	vring_drv_publish(f->drv);
	if (vring_drv_kick_needed(f->drv))
		assert_int_equal(write(f->kick, &one, 8), 8);
	settle(f);
}

/* Reap n used elements; returns the length of the last. */
uint32_t reap(struct fx *f, unsigned n)
{
	uint32_t len = 0;
	void *tok;

	for (unsigned i = 0; i < n; i++)
		assert_int_equal(vring_drv_get_used(f->drv, &tok, &len), 1);
	assert_int_equal(vring_drv_get_used(f->drv, &tok, &len), 0);
	return len;
}

/* One request to its end: returns its status, *len its used length. */
uint8_t run1(struct fx *f, uint32_t type, uint64_t sector,
		    const struct vring_seg *data, unsigned nd, bool writable,
		    uint32_t *len)
{
	struct treq r = add_req(f, type, sector, data, nd, writable, false);
	uint32_t l;

	kick(f);
	l = reap(f, 1);
	if (len)
		*len = l;
	return status(f, &r);
}

struct vblk_stats stats(struct fx *f)
{
	struct vblk_stats st;

	vblk_get_stats(f->v, &st);
	return st;
}

/* Segments of a DISCARD or WRITE_ZEROES in guest memory. */
struct vring_seg dwz(struct fx *f,
			    const struct virtio_blk_discard_write_zeroes *s,
			    unsigned n)
{
	struct vring_seg d = seg(f, n * 16);
	uint8_t *p = hp(f, d.addr);

	for (unsigned i = 0; i < n; i++) {
		struct virtio_blk_discard_write_zeroes le = {
			htole64(s[i].sector), htole32(s[i].num_sectors),
			htole32(s[i].flags),
		};

		memcpy(p + 16 * i, &le, 16);
	}
	return d;
}

bool zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- tests -------------------------------------------------------------- */

static void test_features_config(void **state)
{
	struct fx *f = *state;
	struct virtio_blk_config cfg;
	uint64_t want = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_BLK_F_SEG_MAX) |
			BIT(VIRTIO_BLK_F_SIZE_MAX) |
			BIT(VIRTIO_BLK_F_BLK_SIZE) |
			BIT(VIRTIO_BLK_F_FLUSH) | BIT(VIRTIO_BLK_F_DISCARD) |
			BIT(VIRTIO_BLK_F_WRITE_ZEROES) |
			BIT(VIRTIO_RING_F_EVENT_IDX) |
			BIT(VIRTIO_RING_F_INDIRECT_DESC);

	assert_int_equal(vring_mem_new(MEM_SIZE, &f->mem), 0);
	assert_int_equal(vring_layout(8, 0, &f->a), 0);
	assert_int_equal(vblk_new(f->img, f->mem, NULL, &f->v), 0);
	assert_int_equal(vblk_features(f->v), want);
	vblk_get_config(f->v, &cfg);
	assert_int_equal(le64toh(cfg.capacity), CAPACITY);
	assert_int_equal(le32toh(cfg.seg_max), VBLK_SEG_MAX);
	assert_int_equal(le32toh(cfg.size_max), VBLK_SIZE_MAX);
	assert_int_equal(le32toh(cfg.blk_size), 512);
	assert_int_equal(le32toh(cfg.max_discard_sectors),
			 VBLK_MAX_DWZ_SECTORS);
	assert_int_equal(le32toh(cfg.max_discard_seg), VBLK_MAX_DWZ_SEG);
	assert_int_equal(le32toh(cfg.max_write_zeroes_seg), VBLK_MAX_DWZ_SEG);
	assert_int_equal(le32toh(cfg.discard_sector_alignment),
			 VBLK_DISCARD_ALIGN);
	assert_int_equal(cfg.write_zeroes_may_unmap, 1);
	assert_int_equal(cfg.unused0 | cfg.unused1[0] | cfg.unused1[2], 0);
	assert_int_equal(offsetof(struct virtio_blk_config,
				  max_discard_sectors), 36);
	assert_int_equal(sizeof(cfg), 60);

	/* Negotiation: a subset with VERSION_1, a valid size, once. */
	assert_int_equal(vblk_start(f->v, 8, &f->a,
				    want & ~BIT(VIRTIO_F_VERSION_1), f->kick,
				    f->call), -EINVAL);
	assert_int_equal(vblk_start(f->v, 8, &f->a, want | BIT(VIRTIO_BLK_F_RO),
				    f->kick, f->call), -EINVAL);
	assert_int_equal(vblk_start(f->v, 12, &f->a, want, f->kick, f->call),
			 -EINVAL);
	assert_int_equal(vblk_start(f->v, 8, &f->a, want, f->kick, f->call), 0);
	assert_int_equal(vblk_start(f->v, 8, &f->a, want, f->kick, f->call),
			 -EBUSY);
	vblk_stop(f->v);
	vblk_stop(f->v);                        /* a no-op now */
}

/* Data split over descriptors both ways; the header split too. */
static void test_read_write(void **state)
{
	struct fx *f = *state;
	struct vring_seg w[3], r[2], s[3];
	struct virtio_blk_outhdr h;
	struct vblk_stats st;
	struct treq t;
	uint8_t *img = f->fk->data, *p;
	uint64_t hdr;
	uint32_t len;

	start(f, 16, ~0ull);
	w[0] = seg(f, 512);
	w[1] = seg(f, 3584);
	w[2] = seg(f, 4096);
	for (int i = 0; i < 3; i++)
		memset(hp(f, w[i].addr), 'a' + i, w[i].len);
	assert_int_equal(run1(f, VIRTIO_BLK_T_OUT, 8, w, 3, false, &len),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(len, 1);
	assert_int_equal(img[8 * 512], 'a');
	assert_int_equal(img[8 * 512 + 512], 'b');
	assert_int_equal(img[8 * 512 + 4095], 'b');
	assert_int_equal(img[8 * 512 + 4096], 'c');
	assert_int_equal(img[8 * 512 + 8191], 'c');
	assert_int_equal(img[8 * 512 + 8192], 0);

	r[0] = seg(f, 1024);
	r[1] = seg(f, 7168);
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, 8, r, 2, true, &len),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(len, 8193);
	assert_memory_equal(hp(f, r[0].addr), img + 8 * 512, 1024);
	assert_memory_equal(hp(f, r[1].addr), img + 10 * 512, 7168);

	/* Any layout: a header in two pieces and no data (a zero-length
	 * read); a header in two others and data and status in one. */
	t = add_req(f, VIRTIO_BLK_T_IN, 9, NULL, 0, true, true);
	r[0] = seg(f, 513);
	h = (struct virtio_blk_outhdr){ htole32(VIRTIO_BLK_T_IN), 0,
					htole64(9) };
	hdr = galloc(f, 16);
	memcpy(hp(f, hdr), &h, 16);
	s[0] = (struct vring_seg){ hdr, 7 };
	s[1] = (struct vring_seg){ hdr + 7, 9 };
	s[2] = r[0];
	assert_true(vring_drv_add(f->drv, s, 2, 1, NULL) >= 0);
	kick(f);
	reap(f, 2);
	assert_int_equal(status(f, &t), VIRTIO_BLK_S_OK);
	p = hp(f, r[0].addr);
	assert_memory_equal(p, img + 9 * 512, 512);
	assert_int_equal(p[512], VIRTIO_BLK_S_OK);

	st = stats(f);
	assert_int_equal(st.ops[0], 3);
	assert_int_equal(st.ops[1], 1);
	assert_int_equal(st.bytes_written, 8192);
	assert_int_equal(st.bytes_read, 8192 + 512);
	assert_int_equal(st.status[VIRTIO_BLK_S_OK], 4);
	assert_int_equal(st.in_flight, 0);
}

static void test_flush_get_id(void **state)
{
	struct fx *f = *state;
	struct vring_seg id;
	uint64_t flushes = f->fk->ops[BLK_OP_FLUSH];
	uint32_t len;
	uint8_t *p;

	start(f, 16, ~0ull);
	id = seg(f, 32);
	assert_int_equal(run1(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, &len),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(len, 1);
	assert_int_equal(f->fk->ops[BLK_OP_FLUSH], flushes + 1);

	/* The serial, NUL-padded to 20 bytes; nothing written past them. */
	p = hp(f, id.addr);
	memset(p, 'x', 32);
	assert_int_equal(run1(f, VIRTIO_BLK_T_GET_ID, 0, &id, 1, true, &len),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(len, 21);
	assert_memory_equal(p, "serial-1234\0\0\0\0\0\0\0\0\0", 20);
	assert_int_equal(p[20], 'x');
	/* Too short for the serial. */
	id.len = 10;
	assert_int_equal(run1(f, VIRTIO_BLK_T_GET_ID, 0, &id, 1, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(stats(f).ops[3], 2);
}

/* A 20-byte serial comes back without a terminator. */
static void test_get_id_full(void **state)
{
	struct fx *f = *state;
	struct vring_seg id;

	assert_int_equal(vring_mem_new(MEM_SIZE, &f->mem), 0);
	assert_int_equal(vring_layout(8, 0, &f->a), 0);
	f->brk = ROUND_UP(f->a.end, 4096);
	assert_int_equal(vblk_new(f->img, f->mem, "0123456789abcdefghijKLM",
				  &f->v), 0);
	f->features = vblk_features(f->v);
	assert_int_equal(vring_drv_new(f->mem, 8, &f->a, f->features, &f->drv),
			 0);
	assert_int_equal(vblk_start(f->v, 8, &f->a, f->features, f->kick,
				    f->call), 0);
	id = seg(f, 20);
	assert_int_equal(run1(f, VIRTIO_BLK_T_GET_ID, 0, &id, 1, true, NULL),
			 VIRTIO_BLK_S_OK);
	assert_memory_equal(hp(f, id.addr), "0123456789abcdefghij", 20);
}

static void test_bad_requests(void **state)
{
	struct fx *f = *state;
	struct vring_seg d, two[2];
	struct virtio_blk_outhdr h = { htole32(VIRTIO_BLK_T_IN), 0, 0 };
	struct vring_seg s[3];
	uint64_t hdr, st;
	struct treq t;

	start(f, 16, ~0ull);
	d = seg(f, 1024);
	/* Past the capacity, partly or wholly, and with an overflow. */
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, CAPACITY - 1, &d, 1, true,
			      NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_OUT, CAPACITY - 1, &d, 1, false,
			      NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, UINT64_MAX / 256, &d, 1,
			      true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(f->fk->ops[BLK_OP_WRITE], 0);
	assert_int_equal(blk_get_size(f->img), IMG_SIZE);
	/* The last two sectors are fine. */
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, CAPACITY - 2, &d, 1, true,
			      NULL), VIRTIO_BLK_S_OK);
	/* Not a multiple of 512. */
	d.len = 100;
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, 0, &d, 1, true, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* A write with a writable byte before its status, a read with a
	 * readable one after its header. */
	d.len = 512;
	two[0] = d;
	two[1] = seg(f, 1);
	t = add_req(f, VIRTIO_BLK_T_OUT, 0, two, 2, true, false);
	kick(f);
	reap(f, 1);
	assert_int_equal(status(f, &t), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_IN, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	/* Unknown type. */
	assert_int_equal(run1(f, 99, 0, NULL, 0, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(stats(f).unsupported, 1);
	/* A header of 8 bytes. */
	hdr = galloc(f, 16);
	st = galloc(f, 1);
	memcpy(hp(f, hdr), &h, 16);
	s[0] = (struct vring_seg){ hdr, 8 };
	s[1] = (struct vring_seg){ st, 1 };
	assert_true(vring_drv_add(f->drv, s, 1, 1, NULL) >= 0);
	kick(f);
	reap(f, 1);
	assert_int_equal(*(uint8_t *)hp(f, st), VIRTIO_BLK_S_IOERR);
	/* The block layer's error. */
	fake_blk_fail(f->fk, BLK_OP_WRITE, 1, -EIO);
	assert_int_equal(run1(f, VIRTIO_BLK_T_OUT, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run1(f, VIRTIO_BLK_T_OUT, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_OK);
	assert_false(stats(f).broken);
}


static void test_discard_write_zeroes(void **state)
{
	struct fx *f = *state;
	const struct virtio_blk_discard_write_zeroes three[3] = {
		{ 0, 8, 0 }, { 16, 8, 0 }, { 40, 16, 0 },
	}, wz[2] = { { 64, 8, VIRTIO_BLK_WZ_F_UNMAP }, { 80, 1, 0 } },
	   unmap = { 100, 8, VIRTIO_BLK_WZ_F_UNMAP }, odd = { 100, 8, 2 },
	   past = { CAPACITY - 4, 8, 0 };
	struct virtio_blk_discard_write_zeroes many[VBLK_MAX_DWZ_SEG + 1];
	uint8_t *img = f->fk->data, copy[64 * KiB];
	uint64_t seed = 5;
	struct vring_seg d;

	start(f, 16, ~0ull);
	fake_blk_fill(f->fk, 0, 64 * KiB, &seed);
	memcpy(copy, img, sizeof(copy));

	d = dwz(f, three, 3);
	assert_int_equal(run1(f, VIRTIO_BLK_T_DISCARD, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_OK);
	assert_int_equal(f->fk->ops[BLK_OP_DISCARD], 3);
	assert_true(zero(img, 4 * KiB));
	assert_memory_equal(img + 4 * KiB, copy + 4 * KiB, 4 * KiB);
	assert_true(zero(img + 8 * KiB, 4 * KiB));
	assert_memory_equal(img + 12 * KiB, copy + 12 * KiB, 8 * KiB);
	assert_true(zero(img + 20 * KiB, 8 * KiB));

	d = dwz(f, wz, 2);
	assert_int_equal(run1(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, &d, 1, false,
			      NULL), VIRTIO_BLK_S_OK);
	assert_true(zero(img + 32 * KiB, 4 * KiB));
	assert_true(zero(img + 40 * KiB, 512));
	assert_memory_equal(img + 40 * KiB + 512, copy + 40 * KiB + 512, 512);

	/* UNMAP is for WRITE_ZEROES only; unknown flags for none. */
	d = dwz(f, &unmap, 1);
	assert_int_equal(run1(f, VIRTIO_BLK_T_DISCARD, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	d = dwz(f, &odd, 1);
	assert_int_equal(run1(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, &d, 1, false,
			      NULL), VIRTIO_BLK_S_UNSUPP);
	assert_memory_equal(img + 50 * KiB, copy + 50 * KiB, 4 * KiB);
	/* Past the end, a partial segment, too many segments. */
	d = dwz(f, &past, 1);
	assert_int_equal(run1(f, VIRTIO_BLK_T_DISCARD, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	d.len = 20;
	assert_int_equal(run1(f, VIRTIO_BLK_T_DISCARD, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	for (unsigned i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = (struct virtio_blk_discard_write_zeroes){ i, 1, 0 };
	d = dwz(f, many, ARRAY_SIZE(many));
	assert_int_equal(run1(f, VIRTIO_BLK_T_DISCARD, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(f->fk->ops[BLK_OP_DISCARD], 3);
	assert_int_equal(stats(f).ops[4], 5);
	assert_int_equal(stats(f).ops[5], 2);
}

/* Not negotiated, FLUSH, DISCARD and WRITE_ZEROES are unsupported. */
static void test_not_negotiated(void **state)
{
	struct fx *f = *state;
	const struct virtio_blk_discard_write_zeroes one = { 0, 8, 0 };
	struct vring_seg d;

	start(f, 16, ~(BIT(VIRTIO_BLK_F_FLUSH) | BIT(VIRTIO_BLK_F_DISCARD) |
		       BIT(VIRTIO_BLK_F_WRITE_ZEROES)));
	d = dwz(f, &one, 1);
	assert_int_equal(run1(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(run1(f, VIRTIO_BLK_T_DISCARD, 0, &d, 1, false, NULL),
			 VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(run1(f, VIRTIO_BLK_T_WRITE_ZEROES, 0, &d, 1, false,
			      NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(f->fk->ops[BLK_OP_DISCARD], 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_features_config),
		T(test_read_write),
		T(test_flush_get_id),
		T(test_get_id_full),
		T(test_bad_requests),
		T(test_discard_write_zeroes),
		T(test_not_negotiated),
		T(test_broken_no_status),
		T(test_broken_loop),
		T(test_oversized_chain),
		T(test_batch),
		T(test_batch_native),
		T(test_no_kick_while_busy),
		T(test_drain),
		T(test_read_only),
		T(test_event_idx),
		T(test_no_interrupt_flag),
		T(test_stop_waits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

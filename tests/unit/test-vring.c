/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of guest memory and the split virtqueue: the layout, every chain
 * shape, the 16-bit indices wrapping, the notification decisions at each
 * edge, every way a guest can break a chain (and the queue working again
 * after a reset), and a driver and a device on two threads pushing a
 * million requests through a queue of 256.
 *
 * The test thread plays the guest, through struct vring_drv or, to build
 * chains no correct driver would, by writing guest memory itself (the raw_
 * helpers).  Only the two-thread test has a second thread; it records
 * failures in counters that the test thread asserts on afterwards, since
 * cmocka's assertions may only run in the test's own thread.
 *
 * VRING_TEST_REQUESTS sets the number of requests of the two-thread runs
 * (default 1000000); the TSan build may lower it.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
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

#include "compiler.h"
#include "vring.h"
#include "test-util.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

#define F_INDIRECT (UINT64_C(1) << VIRTIO_RING_F_INDIRECT_DESC)
#define F_EVENT_IDX (UINT64_C(1) << VIRTIO_RING_F_EVENT_IDX)

/* ---- a queue in its guest memory ------------------------------------- */

struct q {
	struct vring_mem *mem;
	unsigned num;
	uint64_t features;
	struct vring_addrs a;
	struct vring_dev *dev;
	struct vring_drv *drv;
	uint64_t data;          /* guest address of free room for buffers */
};

/* The rings at guest address 0, buffers from the next 4 KiB boundary. */
static void q_open(struct q *q, unsigned num, uint64_t features,
		   uint64_t mem_size)
{
	memset(q, 0, sizeof(*q));
	q->num = num;
	q->features = features;
	assert_int_equal(vring_mem_new(mem_size, &q->mem), 0);
	assert_int_equal(vring_layout(num, 0, &q->a), 0);
	q->data = ROUND_UP(q->a.end, 4 * KiB);
	assert_true(q->data < mem_size);
	assert_int_equal(vring_drv_new(q->mem, num, &q->a, features, &q->drv),
			 0);
	assert_int_equal(vring_dev_new(q->mem, num, &q->dev), 0);
	assert_int_equal(vring_dev_setup(q->dev, &q->a, features), 0);
}

static void q_close(struct q *q)
{
	vring_dev_free(q->dev);
	vring_drv_free(q->drv);
	vring_mem_free(q->mem);
}

/* The guest resets the device and sets the queue up again. */
static void q_restart(struct q *q)
{
	vring_dev_reset(q->dev);
	vring_drv_free(q->drv);
	assert_int_equal(vring_drv_new(q->mem, q->num, &q->a, q->features,
				       &q->drv), 0);
	assert_int_equal(vring_dev_setup(q->dev, &q->a, q->features), 0);
}

static void *gptr(struct q *q, uint64_t addr)
{
	return (char *)q->mem->base + addr;
}

/* Where the fields of the rings are, computed here from the spec. */
static uint64_t avail_flags_at(struct q *q) { return q->a.avail; }
static uint64_t avail_idx_at(struct q *q) { return q->a.avail + 2; }
static uint64_t used_event_at(struct q *q)
{
	return q->a.avail + 4 + 2 * (uint64_t)q->num;
}
static uint64_t used_flags_at(struct q *q) { return q->a.used; }
static uint64_t used_idx_at(struct q *q) { return q->a.used + 2; }
static uint64_t avail_event_at(struct q *q)
{
	return q->a.used + 4 + 8 * (uint64_t)q->num;
}

static uint16_t raw_get16(struct q *q, uint64_t addr)
{
	uint16_t v;

	memcpy(&v, gptr(q, addr), sizeof(v));
	return le16toh(v);
}

static void raw_set16(struct q *q, uint64_t addr, uint16_t v)
{
	v = htole16(v);
	memcpy(gptr(q, addr), &v, sizeof(v));
}

/* Write descriptor i of the table at guest address table. */
static void raw_desc(struct q *q, uint64_t table, unsigned i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		htole64(addr), htole32(len), htole16(flags), htole16(next)
	};

	memcpy(gptr(q, table + 16 * (uint64_t)i), &d, sizeof(d));
}

/* Offer head as the next available entry and publish it. */
static void raw_offer(struct q *q, uint16_t head)
{
	uint16_t idx = raw_get16(q, avail_idx_at(q));

	raw_set16(q, q->a.avail + 4 + 2 * (uint64_t)(idx % q->num), head);
	raw_set16(q, avail_idx_at(q), (uint16_t)(idx + 1));
}

/* Write a used element and publish it (a device that misbehaves). */
static void raw_used(struct q *q, uint32_t id, uint32_t len)
{
	uint16_t idx = raw_get16(q, used_idx_at(q));
	struct virtq_used_elem e = { htole32(id), htole32(len) };

	memcpy(gptr(q, q->a.used + 4 + 8 * (uint64_t)(idx % q->num)), &e,
	       sizeof(e));
	raw_set16(q, used_idx_at(q), (uint16_t)(idx + 1));
}

/*
 * One request all the way through: a one-byte writable buffer, added,
 * published, popped, pushed and reaped, with both notification decisions
 * taken so that their "since the previous call" marks follow.
 */
static void run_one(struct q *q)
{
	struct vring_seg seg = { q->data, 1 };
	struct vring_elem e;
	struct iovec iov[1];
	uint32_t len;
	void *tok;

	assert_true(vring_drv_add(q->drv, &seg, 0, 1, q) >= 0);
	vring_drv_publish(q->drv);
	(void)vring_drv_kick_needed(q->drv);
	assert_int_equal(vring_dev_pop(q->dev, iov, 1, &e), 1);
	assert_int_equal(vring_dev_push(q->dev, e.head, 1), 0);
	(void)vring_dev_should_notify(q->dev);
	assert_int_equal(vring_drv_get_used(q->drv, &tok, &len), 1);
	assert_ptr_equal(tok, q);
}

/* Run requests until used idx (and avail idx) reach target. */
static void advance_to(struct q *q, uint16_t target)
{
	while (raw_get16(q, used_idx_at(q)) != target)
		run_one(q);
	assert_int_equal(raw_get16(q, avail_idx_at(q)), target);
}

/* ---- guest memory and layout ----------------------------------------- */

static void test_mem(void **state)
{
	static int sentinel;
	struct vring_mem *orig = (struct vring_mem *)&sentinel;
	struct vring_mem *mem = orig;
	const uint64_t size = 64 * KiB;
	char buf[4] = "abc";

	assert_int_equal(vring_mem_new(0, &mem), -EINVAL);
	assert_int_equal(vring_mem_new(UINT64_MAX, &mem), -EINVAL);
	assert_ptr_equal(mem, orig);

	assert_int_equal(vring_mem_new(size, &mem), 0);
	assert_true(mem->fd >= 0);
	assert_int_equal(mem->size, size);
	for (uint64_t i = 0; i < size; i += 512)
		assert_int_equal(((char *)mem->base)[i], 0);
	/* Shared: what goes through the fd shows in the mapping. */
	assert_int_equal(pwrite(mem->fd, buf, sizeof(buf), 100), sizeof(buf));
	assert_string_equal((char *)mem->base + 100, "abc");

	assert_ptr_equal(vring_mem_ptr(mem, 0, size), mem->base);
	assert_ptr_equal(vring_mem_ptr(mem, size - 1, 1),
			 (char *)mem->base + size - 1);
	assert_ptr_equal(vring_mem_ptr(mem, size, 0),
			 (char *)mem->base + size);
	assert_null(vring_mem_ptr(mem, size, 1));
	assert_null(vring_mem_ptr(mem, size + 1, 0));
	assert_null(vring_mem_ptr(mem, 1, size));
	assert_null(vring_mem_ptr(mem, 0, size + 1));
	/* Sums that wrap around 2^64 must not pass. */
	assert_null(vring_mem_ptr(mem, UINT64_MAX, 1));
	assert_null(vring_mem_ptr(mem, 1, UINT64_MAX));
	assert_null(vring_mem_ptr(mem, UINT64_MAX, UINT64_MAX));
	assert_null(vring_mem_ptr(mem, 16, UINT64_MAX - 15));
	vring_mem_free(mem);
	vring_mem_free(NULL);
}

static void test_layout(void **state)
{
	struct vring_addrs a;

	assert_false(vring_size_valid(0));
	assert_false(vring_size_valid(3));
	assert_false(vring_size_valid(32767));
	assert_false(vring_size_valid(65536));
	for (unsigned n = 1; n <= VRING_MAX_SIZE; n *= 2)
		assert_true(vring_size_valid(n));

	assert_int_equal(vring_desc_bytes(256), 4096);
	assert_int_equal(vring_avail_bytes(256), 518);
	assert_int_equal(vring_used_bytes(256), 2054);

	assert_int_equal(vring_layout(256, 0, &a), 0);
	assert_int_equal(a.desc, 0);
	assert_int_equal(a.avail, 4096);
	assert_int_equal(a.used, 4616);         /* 4096 + 518, up to 4 */
	assert_int_equal(a.end, 4616 + 2054);

	assert_int_equal(vring_layout(1, 5, &a), 0);
	assert_int_equal(a.desc, 16);
	assert_int_equal(a.avail, 32);
	assert_int_equal(a.used, 40);
	assert_int_equal(a.end, 54);

	assert_int_equal(vring_layout(32768, 4096, &a), 0);
	assert_int_equal(a.avail, 4096 + 524288);
	assert_int_equal(a.used, ROUND_UP(a.avail + 65542, 4));
	assert_int_equal(a.end, a.used + 262150);

	assert_int_equal(vring_layout(3, 0, &a), -EINVAL);
	assert_int_equal(vring_layout(0, 0, &a), -EINVAL);
	assert_int_equal(vring_layout(4, UINT64_MAX - 100, &a), -EINVAL);
}

static void test_event_needed(void **state)
{
	/* event in [old, new) modulo 2^16, and nothing else. */
	assert_true(vring_event_needed(0, 1, 0));
	assert_false(vring_event_needed(1, 1, 0));
	assert_false(vring_event_needed(65535, 1, 0));
	assert_false(vring_event_needed(5, 5, 5));
	for (unsigned e = 0; e < 65536; e += 7)
		assert_false(vring_event_needed((uint16_t)e, 9, 9));
	for (unsigned e = 0; e < 10; e++)
		assert_true(vring_event_needed((uint16_t)e, 10, 0));
	assert_false(vring_event_needed(10, 10, 0));
	assert_false(vring_event_needed(65535, 10, 0));
	/* Across the wrap: old 65534, new 2 covers 65534, 65535, 0, 1. */
	assert_true(vring_event_needed(65534, 2, 65534));
	assert_true(vring_event_needed(65535, 2, 65534));
	assert_true(vring_event_needed(0, 2, 65534));
	assert_true(vring_event_needed(1, 2, 65534));
	assert_false(vring_event_needed(2, 2, 65534));
	assert_false(vring_event_needed(65533, 2, 65534));
}

/* ---- set-up -------------------------------------------------------- */

static void test_setup(void **state)
{
	struct vring_mem *mem;
	struct vring_dev *dev;
	struct vring_drv *drv;
	struct vring_addrs a, bad;
	struct iovec iov[1];
	struct vring_elem e;

	assert_int_equal(vring_mem_new(64 * KiB, &mem), 0);
	assert_int_equal(vring_layout(16, 0, &a), 0);

	/* The driver refuses what it cannot set up. */
	assert_int_equal(vring_drv_new(mem, 3, &a, 0, &drv), -EINVAL);
	bad = a, bad.desc = 8;
	assert_int_equal(vring_drv_new(mem, 16, &bad, 0, &drv), -EINVAL);
	bad = a, bad.avail++;
	assert_int_equal(vring_drv_new(mem, 16, &bad, 0, &drv), -EINVAL);
	bad = a, bad.used += 2;
	assert_int_equal(vring_drv_new(mem, 16, &bad, 0, &drv), -EINVAL);
	bad = a, bad.used = 64 * KiB - 16;
	assert_int_equal(vring_drv_new(mem, 16, &bad, 0, &drv), -EFAULT);
	bad = a, bad.desc = UINT64_MAX & ~UINT64_C(15);
	assert_int_equal(vring_drv_new(mem, 16, &bad, 0, &drv), -EFAULT);

	assert_int_equal(vring_dev_new(mem, 0, &dev), -EINVAL);
	assert_int_equal(vring_dev_new(mem, 65536, &dev), -EINVAL);
	assert_int_equal(vring_dev_new(mem, 16, &dev), 0);

	/* Before set-up there is nothing to pop and nothing to push. */
	assert_int_equal(vring_dev_pop(dev, iov, 1, &e), 0);
	assert_int_equal(vring_dev_push(dev, 0, 0), -EINVAL);
	assert_false(vring_dev_enable_notify(dev));
	assert_false(vring_dev_should_notify(dev));

	/* Bad ring addresses from the guest break the queue. */
	bad = a, bad.avail++;
	assert_int_equal(vring_dev_setup(dev, &bad, 0), -EIO);
	assert_int_equal(vring_dev_error(dev), VRING_ERR_RING_ALIGN);
	assert_int_equal(vring_dev_pop(dev, iov, 1, &e), -EIO);
	assert_int_equal(vring_dev_setup(dev, &a, 0), -EBUSY);
	vring_dev_reset(dev);
	assert_int_equal(vring_dev_error(dev), VRING_ERR_NONE);

	bad = a, bad.used = 64 * KiB - 4;
	assert_int_equal(vring_dev_setup(dev, &bad, 0), -EIO);
	assert_int_equal(vring_dev_error(dev), VRING_ERR_RING_ADDR);
	vring_dev_reset(dev);
	bad = a, bad.desc = UINT64_MAX & ~UINT64_C(15);
	assert_int_equal(vring_dev_setup(dev, &bad, 0), -EIO);
	assert_int_equal(vring_dev_error(dev), VRING_ERR_RING_ADDR);
	vring_dev_reset(dev);
	bad = a, bad.avail = 64 * KiB - vring_avail_bytes(16) + 2; /* 2 short */
	assert_int_equal(vring_dev_setup(dev, &bad, 0), -EIO);
	assert_int_equal(vring_dev_error(dev), VRING_ERR_RING_ADDR);
	vring_dev_reset(dev);

	assert_int_equal(vring_drv_new(mem, 16, &a, 0, &drv), 0);
	assert_int_equal(vring_drv_num_free(drv), 16);
	assert_int_equal(vring_dev_setup(dev, &a, 0), 0);
	assert_int_equal(vring_dev_setup(dev, &a, 0), -EBUSY);
	assert_int_equal(vring_dev_pop(dev, iov, 1, &e), 0);
	assert_int_equal(vring_dev_in_flight(dev), 0);

	vring_dev_free(dev);
	vring_drv_free(drv);
	vring_dev_free(NULL);
	vring_drv_free(NULL);
	vring_mem_free(mem);
}

/* ---- chain shapes -------------------------------------------------- */

static void test_direct_chain(void **state)
{
	struct q q;
	uint64_t b = 0;
	struct vring_seg segs[4];
	struct vring_elem e;
	struct iovec iov[4];
	uint32_t len;
	void *tok;
	int head;

	q_open(&q, 8, 0, 1 * MiB);
	b = q.data;
	segs[0] = (struct vring_seg){ b, 16 };
	segs[1] = (struct vring_seg){ b + 100, 100 };
	segs[2] = (struct vring_seg){ b + 1000, 50 };
	segs[3] = (struct vring_seg){ b + 2000, 1 };
	strcpy(gptr(&q, b), "header");
	memset(gptr(&q, b + 100), 'x', 100);

	head = vring_drv_add(q.drv, segs, 2, 2, &q);
	assert_true(head >= 0 && head < 8);
	assert_int_equal(vring_drv_num_free(q.drv), 4);
	/* Not visible before it is published. */
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 0);
	vring_drv_publish(q.drv);
	assert_true(vring_drv_kick_needed(q.drv));
	assert_false(vring_drv_kick_needed(q.drv));     /* nothing new */

	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 1);
	assert_int_equal(e.head, head);
	assert_int_equal(e.out_num, 2);
	assert_int_equal(e.in_num, 2);
	assert_int_equal(e.out_bytes, 116);
	assert_int_equal(e.in_bytes, 51);
	for (int i = 0; i < 4; i++) {
		assert_ptr_equal(iov[i].iov_base, gptr(&q, segs[i].addr));
		assert_int_equal(iov[i].iov_len, segs[i].len);
	}
	assert_string_equal(iov[0].iov_base, "header");
	assert_int_equal(vring_dev_in_flight(q.dev), 1);
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 0);

	memset(iov[2].iov_base, 'r', 50);
	*(char *)iov[3].iov_base = 0;
	assert_false(vring_dev_should_notify(q.dev));   /* nothing used */
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 0);
	assert_int_equal(vring_dev_push(q.dev, e.head, 51), 0);
	assert_int_equal(vring_dev_in_flight(q.dev), 0);
	assert_true(vring_dev_should_notify(q.dev));

	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_ptr_equal(tok, &q);
	assert_int_equal(len, 51);
	assert_int_equal(((char *)gptr(&q, b + 1049))[0], 'r');
	assert_int_equal(vring_drv_num_free(q.drv), 8);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 0);

	/* Readable only, writable only, and one segment are fine too. */
	assert_true(vring_drv_add(q.drv, segs, 1, 0, NULL) >= 0);
	assert_true(vring_drv_add(q.drv, segs + 2, 0, 2, NULL) >= 0);
	vring_drv_publish(q.drv);
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 1);
	assert_int_equal(e.out_num, 1);
	assert_int_equal(e.in_num, 0);
	assert_int_equal(vring_dev_push(q.dev, e.head, 0), 0);
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 1);
	assert_int_equal(e.out_num, 0);
	assert_int_equal(e.in_num, 2);
	assert_ptr_equal(iov[0].iov_base, gptr(&q, b + 1000));
	assert_int_equal(vring_dev_push(q.dev, e.head, 51), 0);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_int_equal(len, 51);
	q_close(&q);
}

static void test_indirect_chain(void **state)
{
	struct q q;
	struct vring_seg segs[3];
	struct vring_elem e;
	struct iovec iov[8];
	uint64_t b, table;
	uint32_t len;
	void *tok;
	int head;

	q_open(&q, 4, F_INDIRECT, 1 * MiB);
	b = q.data;
	table = b + 64 * KiB;
	segs[0] = (struct vring_seg){ b, 16 };
	segs[1] = (struct vring_seg){ b + 4096, 512 };
	segs[2] = (struct vring_seg){ b + 8192, 1 };

	assert_int_equal(vring_drv_add_indirect(q.drv, segs, 1, 2,
						q.mem->size - 32, NULL),
			 -EFAULT);
	assert_int_equal(vring_drv_add_indirect(q.drv, segs, 0, 0, table,
						NULL), -EINVAL);
	head = vring_drv_add_indirect(q.drv, segs, 1, 2, table, &q);
	assert_true(head >= 0);
	assert_int_equal(vring_drv_num_free(q.drv), 3);
	vring_drv_publish(q.drv);

	assert_int_equal(vring_dev_pop(q.dev, iov, 8, &e), 1);
	assert_int_equal(e.head, head);
	assert_int_equal(e.out_num, 1);
	assert_int_equal(e.in_num, 2);
	assert_int_equal(e.out_bytes, 16);
	assert_int_equal(e.in_bytes, 513);
	for (int i = 0; i < 3; i++) {
		assert_ptr_equal(iov[i].iov_base, gptr(&q, segs[i].addr));
		assert_int_equal(iov[i].iov_len, segs[i].len);
	}
	assert_int_equal(vring_dev_push(q.dev, e.head, 513), 0);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_ptr_equal(tok, &q);
	assert_int_equal(len, 513);
	assert_int_equal(vring_drv_num_free(q.drv), 4);

	/*
	 * Direct descriptors followed by an indirect one, which the device
	 * must accept; the WRITE flag on the indirect descriptor is ignored.
	 * 2 direct + 2 indirect = 4 data descriptors, exactly the queue size.
	 */
	raw_desc(&q, q.a.desc, 0, b, 8, VIRTQ_DESC_F_NEXT, 1);
	raw_desc(&q, q.a.desc, 1, b + 8, 8, VIRTQ_DESC_F_NEXT, 3);
	raw_desc(&q, q.a.desc, 3, table, 32,
		 VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	raw_desc(&q, table, 0, b + 16, 4, VIRTQ_DESC_F_NEXT, 1);
	raw_desc(&q, table, 1, b + 32, 2, VIRTQ_DESC_F_WRITE, 0);
	raw_offer(&q, 0);
	assert_int_equal(vring_dev_pop(q.dev, iov, 8, &e), 1);
	assert_int_equal(e.head, 0);
	assert_int_equal(e.out_num, 3);
	assert_int_equal(e.in_num, 1);
	assert_int_equal(e.out_bytes, 20);
	assert_int_equal(e.in_bytes, 2);
	assert_ptr_equal(iov[2].iov_base, gptr(&q, b + 16));
	assert_ptr_equal(iov[3].iov_base, gptr(&q, b + 32));
	assert_int_equal(vring_dev_push(q.dev, 0, 2), 0);
	q_close(&q);

	/* Without the feature the driver will not build one. */
	q_open(&q, 4, 0, 1 * MiB);
	assert_int_equal(vring_drv_add_indirect(q.drv, segs, 1, 2,
						q.data, NULL), -EINVAL);
	q_close(&q);
}

static void test_many_segments(void **state)
{
	enum { N = 256 };
	static struct vring_seg segs[N + 1];
	static struct iovec iov[N];
	struct vring_elem e;
	struct q q;
	uint64_t table, sum = 0;
	uint32_t len;
	uint16_t head;
	void *tok;

	q_open(&q, N, F_INDIRECT, 1 * MiB);
	table = q.data + 512 * KiB;
	for (unsigned i = 0; i <= N; i++) {
		segs[i] = (struct vring_seg){ q.data + 1000 * i, i + 1 };
		if (i < N)
			sum += i + 1;
	}
	assert_int_equal(vring_drv_add(q.drv, segs, 0, 0, NULL), -EINVAL);
	assert_int_equal(vring_drv_add(q.drv, segs, N, 1, NULL), -EINVAL);
	assert_int_equal(vring_drv_add_indirect(q.drv, segs, N, 1, table,
						NULL), -EINVAL);

	/* A chain that takes every descriptor. */
	assert_true(vring_drv_add(q.drv, segs, N / 2, N / 2, &q) >= 0);
	assert_int_equal(vring_drv_num_free(q.drv), 0);
	assert_int_equal(vring_drv_add(q.drv, segs, 1, 0, NULL), -ENOSPC);
	vring_drv_publish(q.drv);

	/* One iovec short: nothing is taken, the counts say what it needs. */
	assert_int_equal(vring_dev_pop(q.dev, iov, N - 1, &e), -ENOBUFS);
	assert_int_equal(e.out_num, N / 2);
	assert_int_equal(e.in_num, N / 2);
	assert_int_equal(vring_dev_error(q.dev), VRING_ERR_NONE);
	assert_int_equal(vring_dev_in_flight(q.dev), 0);
	assert_int_equal(vring_dev_pop(q.dev, iov, 0, &e), -ENOBUFS);
	/* Retried with room for it, it comes out whole. */
	assert_int_equal(vring_dev_pop(q.dev, iov, N, &e), 1);
	assert_int_equal(e.out_bytes + e.in_bytes, sum);
	for (unsigned i = 0; i < N; i++) {
		assert_ptr_equal(iov[i].iov_base, gptr(&q, segs[i].addr));
		assert_int_equal(iov[i].iov_len, i + 1);
	}
	assert_int_equal(vring_dev_push(q.dev, e.head, 0), 0);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_int_equal(vring_drv_num_free(q.drv), N);

	/* The same through an indirect table of N entries, then skipped. */
	assert_true(vring_drv_add_indirect(q.drv, segs, N - 1, 1, table,
					   &q) >= 0);
	vring_drv_publish(q.drv);
	assert_int_equal(vring_dev_pop(q.dev, iov, 10, &e), -ENOBUFS);
	assert_int_equal(e.out_num, N - 1);
	assert_int_equal(e.in_num, 1);
	assert_int_equal(vring_dev_skip(q.dev, &head), 1);
	assert_int_equal(head, e.head);
	assert_int_equal(vring_dev_in_flight(q.dev), 1);
	assert_int_equal(vring_dev_skip(q.dev, &head), 0);
	assert_int_equal(vring_dev_push(q.dev, head, 0), 0);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_ptr_equal(tok, &q);
	assert_int_equal(len, 0);
	q_close(&q);
}

static void test_zero_length(void **state)
{
	struct vring_seg segs[3];
	struct vring_elem e;
	struct iovec iov[4];
	struct q q;
	uint32_t len;
	void *tok;

	q_open(&q, 4, 0, 64 * KiB);
	segs[0] = (struct vring_seg){ q.data, 0 };
	segs[1] = (struct vring_seg){ q.mem->size, 0 };  /* at the very end */
	segs[2] = (struct vring_seg){ q.data + 8, 0 };
	assert_true(vring_drv_add(q.drv, segs, 2, 1, &q) >= 0);
	vring_drv_publish(q.drv);
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 1);
	assert_int_equal(e.out_num, 2);
	assert_int_equal(e.in_num, 1);
	assert_int_equal(e.out_bytes, 0);
	assert_int_equal(e.in_bytes, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(iov[i].iov_len, 0);
	assert_ptr_equal(iov[1].iov_base, gptr(&q, q.mem->size));
	assert_int_equal(vring_dev_push(q.dev, e.head, 0), 0);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_int_equal(len, 0);
	q_close(&q);
}

/* ---- the 16-bit indices wrap ----------------------------------------- */

/*
 * 70,000 requests through a queue of 4, in batches of 1 to 4 and in three
 * shapes, so that every index passes 65535 -> 0.  Each round the device
 * asks for a kick and the driver for a notification, so both decisions
 * must come out true every round, across the wrap too.
 */
static void run_wraparound(uint64_t features)
{
	const unsigned total = 70000;
	struct q q;
	unsigned done = 0, round = 0;

	q_open(&q, 4, features, 1 * MiB);
	while (done < total) {
		unsigned batch = 1 + round % 4, popped = 0;
		struct vring_elem e;
		struct iovec iov[4];

		for (unsigned k = 0; k < batch; k++) {
			unsigned id = done + k;
			uint64_t slot = q.data + 256 * (uint64_t)k;
			struct vring_seg segs[3] = {
				{ slot, 4 }, { slot + 64, 4 }, { slot + 128, 4 }
			};
			int ret;

			memcpy(gptr(&q, slot), &id, 4);
			if (id % 3 == 1 && (features & F_INDIRECT))
				ret = vring_drv_add_indirect(q.drv, segs, 1, 1,
							     slot + 192, NULL);
			else if (id % 3 == 2)
				ret = vring_drv_add(q.drv, segs, 2, 1, NULL);
			else
				ret = vring_drv_add(q.drv, segs, 1, 1, NULL);
			/* Some batches do not fit in 4 descriptors. */
			if (ret == -ENOSPC && k > 0) {
				batch = k;
				break;
			}
			assert_true(ret >= 0);
		}
		vring_drv_publish(q.drv);
		assert_true(vring_drv_kick_needed(q.drv));

		while (vring_dev_pop(q.dev, iov, 4, &e) == 1) {
			unsigned id;

			memcpy(&id, iov[0].iov_base, 4);
			assert_int_equal(id, done + popped);
			memcpy(iov[e.out_num].iov_base, &id, 4);
			assert_int_equal(vring_dev_push(q.dev, e.head, 4), 0);
			popped++;
		}
		assert_int_equal(popped, batch);
		assert_true(vring_dev_should_notify(q.dev));
		assert_false(vring_dev_enable_notify(q.dev));

		for (unsigned k = 0; k < batch; k++) {
			uint32_t len;
			void *tok;
			unsigned id;

			assert_int_equal(vring_drv_get_used(q.drv, &tok, &len),
					 1);
			assert_int_equal(len, 4);
			memcpy(&id, gptr(&q, q.data + 256 * k +
					 ((done + k) % 3 == 2 ? 128 : 64)), 4);
			assert_int_equal(id, done + k);
		}
		assert_false(vring_drv_enable_cb(q.drv));
		assert_int_equal(vring_drv_num_free(q.drv), 4);
		done += batch;
		round++;
	}
	assert_int_equal(raw_get16(&q, avail_idx_at(&q)), done % 65536);
	assert_int_equal(raw_get16(&q, used_idx_at(&q)), done % 65536);
	q_close(&q);
}

static void test_wraparound_event_idx(void **state)
{
	run_wraparound(F_EVENT_IDX | F_INDIRECT);
}

static void test_wraparound_flags(void **state)
{
	run_wraparound(0);
}

/* ---- notification decisions ---------------------------------------- */

/*
 * With EVENT_IDX, after m chains were used since the last decision (used
 * idx went from old to new = old + m), the device notifies iff used_event
 * is in [old, new): "just behind" new (new - 1, the index of the element
 * just written) and old notify; used_event == new, new + 1 (ahead) and
 * old - 1 (behind the batch) do not.  Tried around 0, in the middle and
 * across the wrap; the flags bit must not matter.
 */
static void test_notify_used_event_edges(void **state)
{
	static const uint16_t bases[] = { 5, 1000, 65533 };
	struct q q;

	q_open(&q, 4, F_EVENT_IDX, 1 * MiB);
	for (size_t b = 0; b < ARRAY_SIZE(bases); b++) {
		advance_to(&q, bases[b]);
		for (unsigned m = 1; m <= 3; m += 2) {
			static const int deltas[] = { -1, 0, 1, 99 };

			for (size_t d = 0; d <= ARRAY_SIZE(deltas); d++) {
				uint16_t old = raw_get16(&q, used_idx_at(&q));
				uint16_t new = (uint16_t)(old + m), ev;
				struct vring_seg seg = { q.data, 1 };
				struct vring_elem e[3];
				struct iovec iov[1];
				bool expect;

				/* The last round: used_event == old. */
				if (d == ARRAY_SIZE(deltas)) {
					ev = old;
					expect = true;
				} else if (deltas[d] == 99) {
					ev = (uint16_t)(old - 1);
					expect = false;
				} else {
					ev = (uint16_t)(new + deltas[d]);
					expect = deltas[d] < 0;
				}
				for (unsigned k = 0; k < m; k++)
					assert_true(vring_drv_add(q.drv, &seg,
								  0, 1, NULL) >= 0);
				vring_drv_publish(q.drv);
				for (unsigned k = 0; k < m; k++)
					assert_int_equal(vring_dev_pop(q.dev, iov, 1,
								       &e[k]), 1);
				raw_set16(&q, used_event_at(&q), ev);
				/* Ignored with EVENT_IDX. */
				raw_set16(&q, avail_flags_at(&q),
					  expect ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0);
				for (unsigned k = 0; k < m; k++)
					assert_int_equal(vring_dev_push(q.dev,
							 e[k].head, 0), 0);
				assert_int_equal(vring_dev_should_notify(q.dev),
						 expect);
				assert_false(vring_dev_should_notify(q.dev));
				for (unsigned k = 0; k < m; k++) {
					uint32_t len;
					void *tok;

					assert_int_equal(vring_drv_get_used(q.drv,
							 &tok, &len), 1);
				}
				(void)vring_drv_kick_needed(q.drv);
			}
		}
	}
	q_close(&q);
}

/* The same for kicks: avail_event against the avail indices published. */
static void test_kick_avail_event_edges(void **state)
{
	static const uint16_t bases[] = { 5, 1000, 65533 };
	struct q q;

	q_open(&q, 4, F_EVENT_IDX, 1 * MiB);
	for (size_t b = 0; b < ARRAY_SIZE(bases); b++) {
		advance_to(&q, bases[b]);
		for (unsigned m = 1; m <= 3; m += 2) {
			static const int deltas[] = { -1, 0, 1, 99 };

			for (size_t d = 0; d <= ARRAY_SIZE(deltas); d++) {
				uint16_t old = raw_get16(&q, avail_idx_at(&q));
				uint16_t new = (uint16_t)(old + m), ev;
				struct vring_seg seg = { q.data, 1 };
				bool expect;

				if (d == ARRAY_SIZE(deltas)) {
					ev = old;
					expect = true;
				} else if (deltas[d] == 99) {
					ev = (uint16_t)(old - 1);
					expect = false;
				} else {
					ev = (uint16_t)(new + deltas[d]);
					expect = deltas[d] < 0;
				}
				raw_set16(&q, avail_event_at(&q), ev);
				raw_set16(&q, used_flags_at(&q),
					  expect ? VIRTQ_USED_F_NO_NOTIFY : 0);
				for (unsigned k = 0; k < m; k++)
					assert_true(vring_drv_add(q.drv, &seg,
								  0, 1, NULL) >= 0);
				vring_drv_publish(q.drv);
				assert_int_equal(vring_drv_kick_needed(q.drv),
						 expect);
				assert_false(vring_drv_kick_needed(q.drv));
				for (unsigned k = 0; k < m; k++) {
					struct vring_elem e;
					struct iovec iov[1];
					uint32_t len;
					void *tok;

					assert_int_equal(vring_dev_pop(q.dev, iov,
								       1, &e), 1);
					assert_int_equal(vring_dev_push(q.dev,
							 e.head, 0), 0);
					assert_int_equal(vring_drv_get_used(q.drv,
							 &tok, &len), 1);
				}
				(void)vring_dev_should_notify(q.dev);
			}
		}
	}
	q_close(&q);
}

/* Without EVENT_IDX the flags decide, and the event fields do not. */
static void test_notify_flags(void **state)
{
	struct vring_seg seg;
	struct vring_elem e;
	struct iovec iov[1];
	struct q q;
	uint32_t len;
	void *tok;

	q_open(&q, 4, 0, 1 * MiB);
	seg = (struct vring_seg){ q.data, 1 };

	/* Kicks: NO_NOTIFY clear -> kick; set -> none; nothing new -> none. */
	raw_set16(&q, avail_event_at(&q), 1000);
	assert_true(vring_drv_add(q.drv, &seg, 0, 1, NULL) >= 0);
	vring_drv_publish(q.drv);
	assert_true(vring_drv_kick_needed(q.drv));
	assert_false(vring_drv_kick_needed(q.drv));
	vring_dev_disable_notify(q.dev);
	assert_int_equal(raw_get16(&q, used_flags_at(&q)),
			 VIRTQ_USED_F_NO_NOTIFY);
	assert_true(vring_drv_add(q.drv, &seg, 0, 1, NULL) >= 0);
	vring_drv_publish(q.drv);
	assert_false(vring_drv_kick_needed(q.drv));

	/* Notifications likewise with NO_INTERRUPT. */
	raw_set16(&q, used_event_at(&q), 1000);
	assert_int_equal(vring_dev_pop(q.dev, iov, 1, &e), 1);
	assert_int_equal(vring_dev_push(q.dev, e.head, 0), 0);
	assert_true(vring_dev_should_notify(q.dev));
	assert_false(vring_dev_should_notify(q.dev));
	vring_drv_disable_cb(q.drv);
	assert_int_equal(raw_get16(&q, avail_flags_at(&q)),
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	assert_int_equal(vring_dev_pop(q.dev, iov, 1, &e), 1);
	assert_int_equal(vring_dev_push(q.dev, e.head, 0), 0);
	assert_false(vring_dev_should_notify(q.dev));

	/* Re-enabling finds the two used elements waiting. */
	assert_true(vring_drv_enable_cb(q.drv));
	assert_int_equal(raw_get16(&q, avail_flags_at(&q)), 0);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_false(vring_drv_enable_cb(q.drv));
	assert_false(vring_dev_enable_notify(q.dev));
	assert_int_equal(raw_get16(&q, used_flags_at(&q)), 0);
	q_close(&q);
}

/*
 * The race that the re-check closes, played in order on one thread: the
 * device finds the ring empty; the driver publishes a chain while kicks are
 * still suppressed, so it does not kick; the device then enables kicks.
 * If it went to sleep now, the chain would wait for ever: enable_notify
 * must say that more is available.  The mirror image for the driver.
 */
static void run_recheck(uint64_t features)
{
	struct vring_seg seg;
	struct vring_elem e;
	struct iovec iov[1];
	struct q q;
	uint32_t len;
	void *tok;

	q_open(&q, 4, features, 1 * MiB);
	seg = (struct vring_seg){ q.data, 1 };

	/* A first round leaves both sides past their single event. */
	run_one(&q);
	vring_dev_disable_notify(q.dev);
	vring_drv_disable_cb(q.drv);

	assert_int_equal(vring_dev_pop(q.dev, iov, 1, &e), 0);
	assert_true(vring_drv_add(q.drv, &seg, 0, 1, NULL) >= 0);
	vring_drv_publish(q.drv);
	assert_false(vring_drv_kick_needed(q.drv));
	assert_true(vring_dev_enable_notify(q.dev));
	if (features & F_EVENT_IDX)
		assert_int_equal(raw_get16(&q, avail_event_at(&q)), 1);
	assert_int_equal(vring_dev_pop(q.dev, iov, 1, &e), 1);
	assert_false(vring_dev_enable_notify(q.dev));

	/* Now kicks are wanted: the next chain asks for one. */
	assert_true(vring_drv_add(q.drv, &seg, 0, 1, NULL) >= 0);
	vring_drv_publish(q.drv);
	assert_true(vring_drv_kick_needed(q.drv));

	/* The driver side: it reaped everything, the device pushes. */
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 0);
	assert_int_equal(vring_dev_push(q.dev, e.head, 0), 0);
	assert_false(vring_dev_should_notify(q.dev));
	assert_true(vring_drv_enable_cb(q.drv));
	if (features & F_EVENT_IDX)
		assert_int_equal(raw_get16(&q, used_event_at(&q)), 1);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_false(vring_drv_enable_cb(q.drv));

	/* And now notifications are wanted. */
	assert_int_equal(vring_dev_pop(q.dev, iov, 1, &e), 1);
	assert_int_equal(vring_dev_push(q.dev, e.head, 0), 0);
	assert_true(vring_dev_should_notify(q.dev));
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	q_close(&q);
}

static void test_recheck_event_idx(void **state)
{
	run_recheck(F_EVENT_IDX);
}

static void test_recheck_flags(void **state)
{
	run_recheck(0);
}

/* ---- misuse by the device and by the driver ---------------------------- */

static void test_push_errors(void **state)
{
	struct vring_seg seg;
	struct vring_elem e;
	struct iovec iov[1];
	struct q q;

	q_open(&q, 4, 0, 1 * MiB);
	seg = (struct vring_seg){ q.data, 1 };
	assert_int_equal(vring_dev_push(q.dev, 0, 0), -EINVAL);
	assert_int_equal(vring_dev_push(q.dev, 4, 0), -EINVAL);
	assert_int_equal(vring_dev_push(q.dev, 65535, 0), -EINVAL);
	assert_true(vring_drv_add(q.drv, &seg, 0, 1, NULL) >= 0);
	vring_drv_publish(q.drv);
	assert_int_equal(vring_dev_pop(q.dev, iov, 1, &e), 1);
	assert_int_equal(vring_dev_push(q.dev, (e.head + 1) % 4, 0), -EINVAL);
	assert_int_equal(vring_dev_push(q.dev, e.head, 1), 0);
	assert_int_equal(vring_dev_push(q.dev, e.head, 1), -EINVAL);
	/* Nothing reached the used ring but the one good push. */
	assert_int_equal(raw_get16(&q, used_idx_at(&q)), 1);
	q_close(&q);
}

/* A device that writes nonsense cannot fool the driver. */
static void test_driver_checks_used(void **state)
{
	struct vring_seg seg;
	struct q q;
	uint32_t len;
	void *tok;
	int head;

	q_open(&q, 4, 0, 1 * MiB);
	seg = (struct vring_seg){ q.data, 8 };
	head = vring_drv_add(q.drv, &seg, 0, 1, &q);
	assert_true(head >= 0);
	vring_drv_publish(q.drv);

	raw_used(&q, 4, 0);                     /* id out of range */
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), -EIO);
	raw_set16(&q, used_idx_at(&q), 0);
	raw_used(&q, (uint32_t)(head + 1) % 4, 0);     /* not in flight */
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), -EIO);
	raw_set16(&q, used_idx_at(&q), 0);
	raw_used(&q, (uint32_t)head, 9);        /* more than it offered */
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), -EIO);
	raw_set16(&q, used_idx_at(&q), 5);      /* too far ahead */
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), -EIO);
	assert_int_equal(vring_drv_num_free(q.drv), 3);

	raw_set16(&q, used_idx_at(&q), 0);
	raw_used(&q, (uint32_t)head, 8);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_ptr_equal(tok, &q);
	assert_int_equal(len, 8);
	assert_int_equal(vring_drv_num_free(q.drv), 4);
	q_close(&q);
}

/* ---- hand-built chains through the driver ------------------------------ */

static struct virtq_desc rd(uint64_t addr, uint32_t len, uint16_t flags,
			    uint16_t next)
{
	return (struct virtq_desc){
		htole64(addr), htole32(len), htole16(flags), htole16(next)
	};
}

/* Offer n hand-built descriptors and expect the device to break on them. */
static void expect_raw_breaks(struct q *q, const struct virtq_desc *d,
			      unsigned n, enum vring_error err)
{
	struct vring_elem e;
	struct iovec iov[8];

	assert_true(vring_drv_add_raw(q->drv, d, n, NULL) >= 0);
	vring_drv_publish(q->drv);
	assert_int_equal(vring_dev_pop(q->dev, iov, 8, &e), -EIO);
	assert_int_equal(vring_dev_error(q->dev), err);
	q_restart(q);
	run_one(q);
}

/*
 * What the simulated guest injects (the VDISK_VRING_INJECT_* kinds), built
 * with vring_drv_add_raw; and a hand-built chain that is fine goes through.
 */
static void test_driver_raw_chains(void **state)
{
	struct virtq_desc d[4];
	struct vring_elem e;
	struct iovec iov[4];
	uint64_t t;
	struct q q;
	uint32_t len;
	void *tok;
	int head;

	q_open(&q, 4, F_INDIRECT, 1 * MiB);
	t = q.data + 4096;
	d[0] = rd(q.data, 8, 0, 0);
	assert_int_equal(vring_drv_add_raw(q.drv, d, 0, NULL), -EINVAL);
	assert_int_equal(vring_drv_add_raw(q.drv, d, 5, NULL), -EINVAL);

	/*
	 * A good chain given out of order: d[0] skips d[1], which is never
	 * part of it (but its descriptor is taken and given back all the
	 * same).
	 */
	d[0] = rd(q.data, 8, VIRTQ_DESC_F_NEXT, 2);
	d[1] = rd(0, 0, 0, 0);
	d[2] = rd(q.data + 64, 4, VIRTQ_DESC_F_WRITE, 0);
	head = vring_drv_add_raw(q.drv, d, 3, &q);
	assert_true(head >= 0);
	assert_int_equal(vring_drv_num_free(q.drv), 1);
	assert_int_equal(vring_drv_add_raw(q.drv, d, 2, NULL), -ENOSPC);
	vring_drv_publish(q.drv);
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 1);
	assert_int_equal(e.head, head);
	assert_int_equal(e.out_num, 1);
	assert_int_equal(e.in_num, 1);
	assert_ptr_equal(iov[0].iov_base, gptr(&q, q.data));
	assert_ptr_equal(iov[1].iov_base, gptr(&q, q.data + 64));
	assert_int_equal(vring_dev_push(q.dev, e.head, 4), 0);
	assert_int_equal(vring_drv_get_used(q.drv, &tok, &len), 1);
	assert_ptr_equal(tok, &q);
	assert_int_equal(len, 4);
	assert_int_equal(vring_drv_num_free(q.drv), 4);

	/* NEXT to itself: a loop of one. */
	d[0] = rd(q.data, 8, VIRTQ_DESC_F_NEXT, 0);
	expect_raw_breaks(&q, d, 1, VRING_ERR_LOOP);

	/* VDISK_VRING_INJECT_LOOP */
	d[0] = rd(q.data, 8, VIRTQ_DESC_F_NEXT, 1);
	d[1] = rd(q.data, 8, VIRTQ_DESC_F_NEXT, 0);
	expect_raw_breaks(&q, d, 2, VRING_ERR_LOOP);

	/* VDISK_VRING_INJECT_TOO_LONG: 2 + 3 in a queue of 4. */
	d[0] = rd(q.data, 8, VIRTQ_DESC_F_NEXT, 1);
	d[1] = rd(q.data, 8, VIRTQ_DESC_F_NEXT, 2);
	d[2] = rd(t, 48, VIRTQ_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < 3; i++)
		raw_desc(&q, t, i, q.data, 8, i < 2 ? VIRTQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	expect_raw_breaks(&q, d, 3, VRING_ERR_CHAIN_TOO_LONG);

	/* VDISK_VRING_INJECT_OUT_OF_BOUNDS */
	d[0] = rd(q.mem->size - 4, 8, VIRTQ_DESC_F_WRITE, 0);
	expect_raw_breaks(&q, d, 1, VRING_ERR_DESC_ADDR);

	/* VDISK_VRING_INJECT_NESTED_INDIRECT */
	d[0] = rd(t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	raw_desc(&q, t, 0, t + 1024, 16, VIRTQ_DESC_F_INDIRECT, 0);
	expect_raw_breaks(&q, d, 1, VRING_ERR_INDIRECT_NESTED);

	/* VDISK_VRING_INJECT_BAD_INDIRECT_LEN */
	d[0] = rd(t, 24, VIRTQ_DESC_F_INDIRECT, 0);
	expect_raw_breaks(&q, d, 1, VRING_ERR_INDIRECT_LEN);

	/* VDISK_VRING_INJECT_READ_AFTER_WRITE */
	d[0] = rd(q.data, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	d[1] = rd(q.data, 8, 0, 0);
	expect_raw_breaks(&q, d, 2, VRING_ERR_READ_AFTER_WRITE);

	/* A next of n or more is written as it is. */
	d[0] = rd(q.data, 8, VIRTQ_DESC_F_NEXT, 4);
	expect_raw_breaks(&q, d, 1, VRING_ERR_DESC_INDEX);
	q_close(&q);
}

/* ---- broken chains ----------------------------------------------------- */

struct broken_case {
	const char *name;
	unsigned num;
	uint64_t features;
	uint64_t mem_size;
	/* Write the bad chain (into the free room at q->data) and offer it. */
	void (*build)(struct q *q);
	enum vring_error error;
};

static void build_loop(struct q *q)
{
	raw_desc(q, q->a.desc, 0, q->data, 8, VIRTQ_DESC_F_NEXT, 1);
	raw_desc(q, q->a.desc, 1, q->data, 8, VIRTQ_DESC_F_NEXT, 0);
	raw_offer(q, 0);
}

static void build_loop_self_writable(struct q *q)
{
	raw_desc(q, q->a.desc, 2, q->data, 8,
		 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	raw_offer(q, 2);
}

static void build_loop_indirect(struct q *q)
{
	uint64_t t = q->data + 4096;

	raw_desc(q, q->a.desc, 0, t, 48, VIRTQ_DESC_F_INDIRECT, 0);
	raw_desc(q, t, 0, q->data, 8, VIRTQ_DESC_F_NEXT, 1);
	raw_desc(q, t, 1, q->data, 8, VIRTQ_DESC_F_NEXT, 2);
	raw_desc(q, t, 2, q->data, 8, VIRTQ_DESC_F_NEXT, 1);
	raw_offer(q, 0);
}

static void build_too_long(struct q *q)
{
	uint64_t t = q->data + 4096;

	/* 2 direct + 3 indirect data descriptors in a queue of 4. */
	raw_desc(q, q->a.desc, 0, q->data, 8, VIRTQ_DESC_F_NEXT, 1);
	raw_desc(q, q->a.desc, 1, q->data, 8, VIRTQ_DESC_F_NEXT, 2);
	raw_desc(q, q->a.desc, 2, t, 48, VIRTQ_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < 3; i++)
		raw_desc(q, t, i, q->data, 8, i < 2 ? VIRTQ_DESC_F_NEXT : 0,
			 (uint16_t)(i + 1));
	raw_offer(q, 0);
}

static void build_head_out_of_range(struct q *q)
{
	raw_desc(q, q->a.desc, 0, q->data, 8, 0, 0);
	raw_offer(q, (uint16_t)q->num);
}

static void build_next_out_of_range(struct q *q)
{
	raw_desc(q, q->a.desc, 0, q->data, 8, VIRTQ_DESC_F_NEXT,
		 (uint16_t)q->num);
	raw_offer(q, 0);
}

static void build_indirect_next_out_of_range(struct q *q)
{
	uint64_t t = q->data + 4096;

	raw_desc(q, q->a.desc, 1, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
	raw_desc(q, t, 0, q->data, 8, VIRTQ_DESC_F_NEXT, 2);
	raw_offer(q, 1);
}

static void build_buffer_outside(struct q *q)
{
	raw_desc(q, q->a.desc, 0, q->data, 8, VIRTQ_DESC_F_NEXT, 1);
	raw_desc(q, q->a.desc, 1, q->mem->size - 8, 16, VIRTQ_DESC_F_WRITE,
		 0);
	raw_offer(q, 0);
}

static void build_buffer_wraps(struct q *q)
{
	raw_desc(q, q->a.desc, 0, UINT64_MAX - 3, 8, 0, 0);
	raw_offer(q, 0);
}

static void build_zero_length_outside(struct q *q)
{
	raw_desc(q, q->a.desc, 0, q->mem->size + 1, 0, 0, 0);
	raw_offer(q, 0);
}

static void build_table_outside(struct q *q)
{
	raw_desc(q, q->a.desc, 0, q->mem->size - 16, 32,
		 VIRTQ_DESC_F_INDIRECT, 0);
	raw_offer(q, 0);
}

static void build_read_after_write(struct q *q)
{
	raw_desc(q, q->a.desc, 0, q->data, 8,
		 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	raw_desc(q, q->a.desc, 1, q->data, 8, 0, 0);
	raw_offer(q, 0);
}

static void build_read_after_write_indirect(struct q *q)
{
	uint64_t t = q->data + 4096;

	raw_desc(q, q->a.desc, 0, q->data, 8,
		 VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	raw_desc(q, q->a.desc, 1, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	raw_desc(q, t, 0, q->data, 8, 0, 0);
	raw_offer(q, 0);
}

static void build_indirect(struct q *q, uint32_t table_len,
			   uint16_t extra_flags)
{
	uint64_t t = q->data + 4096;

	raw_desc(q, q->a.desc, 0, t, table_len,
		 VIRTQ_DESC_F_INDIRECT | extra_flags, 1);
	raw_desc(q, q->a.desc, 1, q->data, 8, 0, 0);
	raw_desc(q, t, 0, q->data, 8, 0, 0);
	raw_offer(q, 0);
}

static void build_indirect_plain(struct q *q)
{
	build_indirect(q, 16, 0);
}

static void build_indirect_with_next(struct q *q)
{
	build_indirect(q, 16, VIRTQ_DESC_F_NEXT);
}

static void build_indirect_len_zero(struct q *q)
{
	build_indirect(q, 0, 0);
}

static void build_indirect_len_odd(struct q *q)
{
	build_indirect(q, 24, 0);
}

static void build_indirect_too_big(struct q *q)
{
	build_indirect(q, 16 * (q->num + 1), 0);
}

static void build_indirect_nested(struct q *q)
{
	uint64_t t = q->data + 4096;

	raw_desc(q, q->a.desc, 0, t, 16, VIRTQ_DESC_F_INDIRECT, 0);
	raw_desc(q, t, 0, t + 1024, 16, VIRTQ_DESC_F_INDIRECT, 0);
	raw_desc(q, t + 1024, 0, q->data, 8, 0, 0);
	raw_offer(q, 0);
}

static void build_avail_jump(struct q *q)
{
	raw_set16(q, avail_idx_at(q), (uint16_t)(q->num + 1));
}

static void build_avail_backwards(struct q *q)
{
	raw_set16(q, avail_idx_at(q), 65535);
}

static void build_head_in_flight(struct q *q)
{
	struct vring_elem e;
	struct iovec iov[1];

	raw_desc(q, q->a.desc, 0, q->data, 8, 0, 0);
	raw_offer(q, 0);
	assert_int_equal(vring_dev_pop(q->dev, iov, 1, &e), 1);
	raw_offer(q, 0);
}

/*
 * Four 1 GiB descriptors over the same 1 GiB of a sparse memfd: 2^32
 * bytes, one more than a used length can say.  (Three and 1 GiB - 1 is
 * accepted: see test_chain_size_limit.)
 */
static void build_too_big(struct q *q)
{
	for (unsigned i = 0; i < 4; i++)
		raw_desc(q, q->a.desc, i, 0, (uint32_t)GiB,
			 i < 3 ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	raw_offer(q, 0);
}

static const struct broken_case broken_cases[] = {
	{ "loop", 4, 0, 0, build_loop, VRING_ERR_LOOP },
	{ "loop_self", 4, 0, 0, build_loop_self_writable, VRING_ERR_LOOP },
	{ "loop_indirect", 4, F_INDIRECT, 0, build_loop_indirect,
	  VRING_ERR_LOOP },
	{ "too_long", 4, F_INDIRECT, 0, build_too_long,
	  VRING_ERR_CHAIN_TOO_LONG },
	{ "too_big", 8, 0, GiB, build_too_big, VRING_ERR_CHAIN_TOO_BIG },
	{ "head_out_of_range", 4, 0, 0, build_head_out_of_range,
	  VRING_ERR_DESC_INDEX },
	{ "next_out_of_range", 4, 0, 0, build_next_out_of_range,
	  VRING_ERR_DESC_INDEX },
	{ "indirect_next_out_of_range", 4, F_INDIRECT, 0,
	  build_indirect_next_out_of_range, VRING_ERR_DESC_INDEX },
	{ "buffer_outside", 4, 0, 0, build_buffer_outside,
	  VRING_ERR_DESC_ADDR },
	{ "buffer_wraps", 4, 0, 0, build_buffer_wraps, VRING_ERR_DESC_ADDR },
	{ "zero_length_outside", 4, 0, 0, build_zero_length_outside,
	  VRING_ERR_DESC_ADDR },
	{ "table_outside", 4, F_INDIRECT, 0, build_table_outside,
	  VRING_ERR_DESC_ADDR },
	{ "read_after_write", 4, 0, 0, build_read_after_write,
	  VRING_ERR_READ_AFTER_WRITE },
	{ "read_after_write_indirect", 4, F_INDIRECT, 0,
	  build_read_after_write_indirect, VRING_ERR_READ_AFTER_WRITE },
	{ "indirect_not_negotiated", 4, F_EVENT_IDX, 0, build_indirect_plain,
	  VRING_ERR_INDIRECT_FEATURE },
	{ "indirect_nested", 4, F_INDIRECT, 0, build_indirect_nested,
	  VRING_ERR_INDIRECT_NESTED },
	{ "indirect_with_next", 4, F_INDIRECT, 0, build_indirect_with_next,
	  VRING_ERR_INDIRECT_NEXT },
	{ "indirect_len_zero", 4, F_INDIRECT, 0, build_indirect_len_zero,
	  VRING_ERR_INDIRECT_LEN },
	{ "indirect_len_odd", 4, F_INDIRECT, 0, build_indirect_len_odd,
	  VRING_ERR_INDIRECT_LEN },
	{ "indirect_too_big", 4, F_INDIRECT, 0, build_indirect_too_big,
	  VRING_ERR_INDIRECT_SIZE },
	{ "avail_idx_jump", 4, 0, 0, build_avail_jump, VRING_ERR_AVAIL_IDX },
	{ "avail_idx_backwards", 4, 0, 0, build_avail_backwards,
	  VRING_ERR_AVAIL_IDX },
	{ "head_in_flight", 4, 0, 0, build_head_in_flight,
	  VRING_ERR_HEAD_IN_FLIGHT },
};

/*
 * Each kind of bad chain breaks the queue: pop (and skip, push and the
 * notification helpers) refuse from then on, the error says why, and after
 * the guest resets the device the queue works again.
 */
static void test_broken(void **state)
{
	const struct broken_case *c = *state;
	struct vring_elem e;
	struct iovec iov[8];
	struct q q;
	uint16_t head;

	q_open(&q, c->num, c->features, c->mem_size ? c->mem_size : 1 * MiB);
	c->build(&q);
	assert_int_equal(vring_dev_pop(q.dev, iov, 8, &e), -EIO);
	assert_int_equal(vring_dev_error(q.dev), c->error);
	print_message("  %s: %s\n", c->name, vring_error_str(c->error));
	assert_int_equal(vring_dev_pop(q.dev, iov, 8, &e), -EIO);
	assert_int_equal(vring_dev_skip(q.dev, &head), -EIO);
	assert_int_equal(vring_dev_push(q.dev, 0, 0), -EIO);
	assert_false(vring_dev_enable_notify(q.dev));
	assert_false(vring_dev_should_notify(q.dev));
	assert_int_equal(vring_dev_setup(q.dev, &q.a, q.features), -EBUSY);

	q_restart(&q);
	assert_int_equal(vring_dev_error(q.dev), VRING_ERR_NONE);
	assert_int_equal(vring_dev_in_flight(q.dev), 0);
	assert_int_equal(vring_dev_pop(q.dev, iov, 8, &e), 0);
	for (int i = 0; i < 10; i++)
		run_one(&q);
	q_close(&q);
}

static void test_error_strings(void **state)
{
	const char *none = vring_error_str(VRING_ERR_NONE);

	assert_string_equal(vring_error_str(VRING_ERR_LOOP),
			    "descriptor chain loops");
	for (int i = VRING_ERR_NONE + 1; i <= VRING_ERR_HEAD_IN_FLIGHT; i++) {
		const char *s = vring_error_str((enum vring_error)i);

		assert_non_null(s);
		assert_string_not_equal(s, none);
		assert_string_not_equal(s, "unknown vring error");
		for (int j = VRING_ERR_NONE; j < i; j++)
			assert_string_not_equal(s,
				vring_error_str((enum vring_error)j));
	}
	assert_string_equal(vring_error_str((enum vring_error)999),
			    "unknown vring error");
}

/* The byte limit, from both sides: UINT32_MAX passes, one more breaks. */
static void test_chain_size_limit(void **state)
{
	struct vring_elem e;
	struct iovec iov[4];
	struct q q;

	q_open(&q, 8, 0, GiB);
	for (unsigned i = 0; i < 4; i++)
		raw_desc(&q, q.a.desc, i, 0,
			 (uint32_t)(i < 3 ? GiB : GiB - 1),
			 i < 3 ? VIRTQ_DESC_F_NEXT : VIRTQ_DESC_F_WRITE,
			 (uint16_t)(i + 1));
	raw_offer(&q, 0);
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), 1);
	assert_int_equal(e.out_bytes, 3 * GiB);
	assert_int_equal(e.in_bytes, GiB - 1);
	assert_int_equal((uint64_t)e.out_bytes + e.in_bytes, UINT32_MAX);
	assert_int_equal(vring_dev_push(q.dev, 0, (uint32_t)(GiB - 1)), 0);

	raw_desc(&q, q.a.desc, 3, 0, (uint32_t)GiB, VIRTQ_DESC_F_WRITE, 0);
	raw_offer(&q, 0);
	assert_int_equal(vring_dev_pop(q.dev, iov, 4, &e), -EIO);
	assert_int_equal(vring_dev_error(q.dev), VRING_ERR_CHAIN_TOO_BIG);
	q_close(&q);
}

/* ---- two threads ------------------------------------------------------ */

/*
 * The test thread is the guest: it keeps up to 256 requests in flight, each
 * with a unique id in its readable buffer, a third of them through an
 * indirect table.  The device thread copies the id into the writable buffer
 * and pushes.  The guest checks every completion against the id it sent and
 * that no id comes back twice or never.  Each side sleeps on an eventfd
 * (the kick, the interrupt) after enabling notifications and re-checking;
 * a sleep that outlasts TEST_WAIT_LIMIT_NS is a lost notification.
 */
#define SLOT_BYTES 64   /* id (8), reply (8), indirect table (2 x 16) */

struct threads {
	struct q q;
	uint64_t n;
	int kick_fd;            /* guest -> device */
	int call_fd;            /* device -> guest */
	atomic_bool stop;
	/* Written by the device thread, read after the join. */
	uint64_t processed;
	uint64_t kicks_waited;
	unsigned failures;
	const char *failure;
	/* Counted by the guest. */
	uint64_t kicks, calls, sleeps;
};

/* Wait for fd to be signalled; false after TEST_WAIT_LIMIT_NS. */
static bool wait_fd(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t v;
	int ret;

	do
		ret = poll(&p, 1, (int)(TEST_WAIT_LIMIT_NS / 1000000));
	while (ret < 0 && errno == EINTR);
	if (ret <= 0)
		return false;
	return read(fd, &v, sizeof(v)) == sizeof(v);
}

static void signal_fd(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one))
		abort();        /* an eventfd write of 1 cannot fail */
}

static void device_fail(struct threads *t, const char *why)
{
	if (!t->failures++)
		t->failure = why;
}

static void *device_thread(void *opaque)
{
	struct threads *t = opaque;
	struct vring_dev *dev = t->q.dev;

	vring_dev_disable_notify(dev);
	for (;;) {
		struct vring_elem e;
		struct iovec iov[4];
		int ret;

		while ((ret = vring_dev_pop(dev, iov, 4, &e)) > 0) {
			if (e.out_num != 1 || e.in_num != 1 ||
			    iov[0].iov_len != 8 || iov[1].iov_len != 8)
				device_fail(t, "unexpected chain shape");
			else
				memcpy(iov[1].iov_base, iov[0].iov_base, 8);
			if (vring_dev_push(dev, e.head, 8) < 0)
				device_fail(t, "push failed");
			t->processed++;
			if (vring_dev_should_notify(dev))
				signal_fd(t->call_fd);
		}
		if (ret < 0) {
			device_fail(t, vring_error_str(vring_dev_error(dev)));
			return NULL;
		}
		if (atomic_load(&t->stop))
			return NULL;
		if (vring_dev_enable_notify(dev)) {
			vring_dev_disable_notify(dev);
			continue;
		}
		t->kicks_waited++;
		if (!wait_fd(t->kick_fd)) {
			device_fail(t, "lost kick");
			return NULL;
		}
		vring_dev_disable_notify(dev);
	}
}

/* Offer request id in slot s; returns the add result. */
static int guest_add(struct threads *t, uint64_t id, unsigned s)
{
	uint64_t slot = t->q.data + (uint64_t)s * SLOT_BYTES;
	struct vring_seg segs[2] = { { slot, 8 }, { slot + 8, 8 } };
	void *tok = (void *)(uintptr_t)(s + 1);

	memcpy(gptr(&t->q, slot), &id, 8);
	memset(gptr(&t->q, slot + 8), 0xff, 8);
	if (id % 3 == 0)
		return vring_drv_add_indirect(t->q.drv, segs, 1, 1, slot + 16,
					      tok);
	return vring_drv_add(t->q.drv, segs, 1, 1, tok);
}

/* Kick the device if the chains published since the last time need it. */
static void guest_kick(struct threads *t)
{
	if (vring_drv_kick_needed(t->q.drv)) {
		t->kicks++;
		signal_fd(t->kick_fd);
	}
}

static void run_threads(uint64_t features, uint64_t n)
{
	enum { NUM = 256 };
	static unsigned free_slots[NUM];
	static uint64_t slot_id[NUM];
	struct threads *t = calloc(1, sizeof(*t));
	unsigned char *seen = calloc(n ? n : 1, 1);
	unsigned nfree = NUM;
	uint64_t next_id = 0, done = 0, bad = 0, rounds = 0;
	unsigned long long start = test_now_ns();
	bool lost = false;
	pthread_t th;

	assert_non_null(t);
	assert_non_null(seen);
	t->n = n;
	q_open(&t->q, NUM, features, 1 * MiB);
	assert_true(t->q.data + NUM * SLOT_BYTES <= t->q.mem->size);
	for (unsigned i = 0; i < NUM; i++)
		free_slots[i] = i;
	t->kick_fd = eventfd(0, EFD_CLOEXEC);
	t->call_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(t->kick_fd >= 0 && t->call_fd >= 0);
	atomic_init(&t->stop, false);
	assert_int_equal(pthread_create(&th, NULL, device_thread, t), 0);

	vring_drv_disable_cb(t->q.drv);
	while (done < n) {
		unsigned added = 0, reaped = 0;
		uint32_t len;
		void *tok;
		int ret;

		while (next_id < n && nfree) {
			unsigned s = free_slots[nfree - 1];

			ret = guest_add(t, next_id, s);
			if (ret == -ENOSPC)
				break;
			if (ret < 0) {
				bad++;
				break;
			}
			nfree--;
			slot_id[s] = next_id++;
			added++;
		}
		/*
		 * Every other batch is published without a kick decision,
		 * as a driver batching its kicks would: the next decision
		 * covers it.  So the release store of avail idx in publish
		 * is what the device's first look at the entries relies on.
		 */
		if (added) {
			vring_drv_publish(t->q.drv);
			if (++rounds % 2)
				guest_kick(t);
		}
		while ((ret = vring_drv_get_used(t->q.drv, &tok, &len)) > 0) {
			unsigned s = (unsigned)((uintptr_t)tok - 1);
			uint64_t id;

			memcpy(&id, gptr(&t->q, t->q.data +
					 (uint64_t)s * SLOT_BYTES + 8), 8);
			if (len != 8 || id != slot_id[s] || id >= n || seen[id])
				bad++;
			else
				seen[id] = 1;
			free_slots[nfree++] = s;
			done++;
			reaped++;
		}
		if (ret < 0 || bad)
			break;
		if (added || reaped)
			continue;
		/* Nothing to do until the device uses something. */
		guest_kick(t);
		if (vring_drv_enable_cb(t->q.drv)) {
			vring_drv_disable_cb(t->q.drv);
			continue;
		}
		t->sleeps++;
		if (!wait_fd(t->call_fd)) {
			lost = true;
			break;
		}
		t->calls++;
		vring_drv_disable_cb(t->q.drv);
	}
	atomic_store(&t->stop, true);
	signal_fd(t->kick_fd);
	assert_int_equal(pthread_join(th, NULL), 0);

	print_message("  %" PRIu64 " requests (%s) in %.2f s: %" PRIu64
		      " kicks, %" PRIu64 " guest sleeps, device slept %"
		      PRIu64 " times\n", n,
		      features & F_EVENT_IDX ? "EVENT_IDX" : "flags",
		      (double)(test_now_ns() - start) / 1e9, t->kicks,
		      t->sleeps, t->kicks_waited);
	if (t->failures)
		print_message("  device: %s\n", t->failure);
	assert_int_equal(t->failures, 0);
	assert_false(lost);
	assert_int_equal(bad, 0);
	assert_int_equal(done, n);
	assert_int_equal(t->processed, n);
	for (uint64_t i = 0; i < n; i++)
		assert_int_equal(seen[i], 1);
	assert_int_equal(vring_dev_in_flight(t->q.dev), 0);
	assert_int_equal(vring_drv_num_free(t->q.drv), NUM);
	close(t->kick_fd);
	close(t->call_fd);
	q_close(&t->q);
	free(seen);
	free(t);
}

static uint64_t requests(void)
{
	const char *env = getenv("VRING_TEST_REQUESTS");

	return env ? strtoull(env, NULL, 0) : 1000000;
}

static void test_threads_event_idx(void **state)
{
	run_threads(F_EVENT_IDX | F_INDIRECT, requests());
}

static void test_threads_flags(void **state)
{
	run_threads(F_INDIRECT, requests());
}

int main(void)
{
	struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mem),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_event_needed),
		cmocka_unit_test(test_setup),
		cmocka_unit_test(test_direct_chain),
		cmocka_unit_test(test_indirect_chain),
		cmocka_unit_test(test_many_segments),
		cmocka_unit_test(test_zero_length),
		cmocka_unit_test(test_wraparound_event_idx),
		cmocka_unit_test(test_wraparound_flags),
		cmocka_unit_test(test_notify_used_event_edges),
		cmocka_unit_test(test_kick_avail_event_edges),
		cmocka_unit_test(test_notify_flags),
		cmocka_unit_test(test_recheck_event_idx),
		cmocka_unit_test(test_recheck_flags),
		cmocka_unit_test(test_push_errors),
		cmocka_unit_test(test_driver_checks_used),
		cmocka_unit_test(test_driver_raw_chains),
		cmocka_unit_test(test_error_strings),
		cmocka_unit_test(test_chain_size_limit),
		cmocka_unit_test(test_threads_event_idx),
		cmocka_unit_test(test_threads_flags),
	};
	struct CMUnitTest broken[ARRAY_SIZE(broken_cases)];
	char names[ARRAY_SIZE(broken_cases)][64];
	int failed;

	for (size_t i = 0; i < ARRAY_SIZE(broken_cases); i++) {
		snprintf(names[i], sizeof(names[i]), "test_broken_%s",
			 broken_cases[i].name);
		broken[i] = (struct CMUnitTest){
			.name = names[i],
			.test_func = test_broken,
			.initial_state = (void *)&broken_cases[i],
		};
	}
	failed = cmocka_run_group_tests_name("vring", tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("vring broken chains", broken,
					      NULL, NULL);
	return failed ? 1 : 0;
}

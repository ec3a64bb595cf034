/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared by test-vblk.c (request types, the fixture) and
 * test-vblk-queue.c (the queue's behaviour): one test program for the
 * vblk module.
 */
#ifndef VDISK_TEST_VBLK_H
#define VDISK_TEST_VBLK_H

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
#include <sys/eventfd.h>
#include <cmocka.h>

#include "block-internal.h"
#include "fake-blk.h"
#include "laio.h"
#include "loop.h"
#include "vblk.h"
#include "vring.h"
#include "test-util.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define IMG_SIZE (1 * MiB)
#define CAPACITY (IMG_SIZE / 512)
#define MEM_SIZE (4 * MiB)
#define BIT(n) (UINT64_C(1) << (n))

struct fx {
	struct loop *ctx;
	struct tpool *pool;
	struct fake_blk *fk;
	struct blk_image *img;          /* fk->img unless a file */
	struct vring_mem *mem;
	struct vring_addrs a;
	struct vring_drv *drv;
	struct vblk *v;
	unsigned num;
	uint64_t features;
	int kick, call;
	uint64_t brk;                   /* next free guest address */
	char path[64];
};

/* A request the test built: where its header and status lie. */
struct treq {
	uint64_t hdr, status;
	int head;
};

/* The fixture: a context in this thread, a RAM fake, two eventfds. */
int setup(void **state);
int teardown(void **state);

/* Poll until the loop has had nothing to do three times running. */
void settle(struct fx *f);

/* A device and a queue of num entries; features = offered & mask. */
void start(struct fx *f, unsigned num, uint64_t mask);

/* len bytes of guest memory (64-byte aligned), and its host address. */
uint64_t galloc(struct fx *f, uint64_t len);
void *hp(struct fx *f, uint64_t addr);

/*
 * Add a request: the header (in two descriptors if split_hdr), the data
 * segments (device-writable or not), the status.
 */
struct treq add_req(struct fx *f, uint32_t type, uint64_t sector,
		    const struct vring_seg *data, unsigned nd, bool writable,
		    bool split_hdr);

/* One data segment of len bytes at a fresh address. */
struct vring_seg seg(struct fx *f, uint32_t len);

/* The status byte of r as the device left it. */
uint8_t status(struct fx *f, const struct treq *r);

/* Publish, kick if the device wants it, and let it work. */
void kick(struct fx *f);

/* Reap exactly n used elements; returns the length of the last. */
uint32_t reap(struct fx *f, unsigned n);

/* One request to its end: returns its status, *len its used length. */
uint8_t run1(struct fx *f, uint32_t type, uint64_t sector,
	     const struct vring_seg *data, unsigned nd, bool writable,
	     uint32_t *len);

struct vblk_stats stats(struct fx *f);

/* n DISCARD / WRITE_ZEROES segments in guest memory, as one segment. */
struct vring_seg dwz(struct fx *f,
		     const struct virtio_blk_discard_write_zeroes *s,
		     unsigned n);

/* Whether len bytes at p are all zero. */
bool zero(const uint8_t *p, size_t len);

/* test-vblk-queue.c */
void test_broken_no_status(void **state);
void test_broken_loop(void **state);
void test_oversized_chain(void **state);
void test_batch(void **state);
void test_batch_native(void **state);
void test_no_kick_while_busy(void **state);
void test_drain(void **state);
void test_read_only(void **state);
void test_event_idx(void **state);
void test_no_interrupt_flag(void **state);
void test_stop_waits(void **state);

#endif /* VDISK_TEST_VBLK_H */

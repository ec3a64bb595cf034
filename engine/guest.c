/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated guest (guest.h): setting up guest memory, the queue, the
 * device and the vCPU thread, and tearing them down from any thread.  The
 * vCPU itself is in guest-vcpu.c, the chains it builds in guest-req.c.
 *
 * Design notes
 *
 * Guest memory, from address 0: the rings (vring_layout), then iodepth
 * meta blocks (header, status, indirect table, small answers), then
 * iodepth data buffers of bs rounded up to 4 KiB, then the scratch area of
 * fault injection.  Each in-flight request owns one meta block and one
 * buffer (struct guest_req).
 *
 * Order of setup: options, memory and eventfds first; then, in the image's
 * context, the image's size and mode and the device (vblk_new); the
 * options that depend on the image; the driver end of the queue (which
 * zeroes the rings, as a driver must before enabling the queue); the
 * device's start in the context; the vCPU last.  Teardown runs it
 * backwards: the vCPU quits without reaping and is joined, then the
 * device is stopped in its context (which completes and pushes what the
 * vCPU left in flight) before guest memory goes away.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "compiler.h"
#include "guest-internal.h"
#include "guest.h"
#include "vblk.h"

#define PAGE   4096u
#define BIT(n) (UINT64_C(1) << (n))

/* ---- setup and teardown ------------------------------------------------ */

/* The number of data descriptors of a bs buffer. */
static unsigned data_segs(uint32_t bs)
{
	struct vring_seg segs[GUEST_MAX_DATA_SEGS];

	return guest_split(PAGE, bs, GUEST_MAX_DATA_SEGS, segs);
}

static bool writes(const struct guest_opts *o)
{
	return o->rw == GUEST_RW_WRITE || o->rw == GUEST_RW_RANDWRITE ||
	       (o->rw == GUEST_RW_RANDRW && o->rwmix_read < 100);
}

/* The checks that need no image. */
static int check_opts(const struct guest_opts *o)
{
	if (o->bs == 0 || o->bs % VIRTIO_BLK_SECTOR || o->bs > GUEST_MAX_BS ||
	    !vring_size_valid(o->queue_size) || o->iodepth == 0 ||
	    o->iodepth > o->queue_size || o->rwmix_read > 100 ||
	    o->rw > GUEST_RW_RANDRW ||
	    o->inject > GUEST_INJECT_READ_AFTER_WRITE ||
	    o->offset % VIRTIO_BLK_SECTOR || o->region % VIRTIO_BLK_SECTOR)
		return -EINVAL;
	if (2 + data_segs(o->bs) > o->queue_size)
		return -EINVAL;
	if (o->inject != GUEST_INJECT_NONE && o->queue_size < 4)
		return -EINVAL;
	if ((uint64_t)o->iodepth * ROUND_UP(o->bs, PAGE) > GUEST_MAX_BUFFERS)
		return -EINVAL;
	return 0;
}

struct setup_call {
	struct guest *g;
	bool read_only;
	uint64_t size;
	int ret;
};

static void setup_new_fn(void *opaque)
{
	struct setup_call *c = opaque;
	struct blk_info info;

	blk_get_info(c->g->img, &info);
	c->read_only = info.read_only;
	c->size = ROUND_DOWN(blk_get_size(c->g->img), VIRTIO_BLK_SECTOR);
	c->ret = vblk_new(c->g->img, c->g->mem, c->g->serial, &c->g->dev);
}

static void setup_start_fn(void *opaque)
{
	struct setup_call *c = opaque;
	struct guest *g = c->g;

	c->ret = vblk_start(g->dev, g->o.queue_size, &g->addrs, g->features,
			    g->kick_fd, g->call_fd);
}

static void teardown_fn(void *opaque)
{
	struct guest *g = opaque;

	vblk_stop(g->dev);
	vblk_free(g->dev);
	g->dev = NULL;
}

/* Free what guest_start set up; the vCPU is gone. */
static void guest_destroy(struct guest *g)
{
	if (g->dev)
		loop_call_sync(g->ctx, teardown_fn, g);
	vring_drv_free(g->drv);
	vring_mem_free(g->mem);
	if (g->kick_fd >= 0)
		close(g->kick_fd);
	if (g->call_fd >= 0)
		close(g->call_fd);
	if (g->stop_fd >= 0)
		close(g->stop_fd);
	free(g->reqs);
	free(g->slot_seq);
	free(g->slot_busy);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* Lay out and create guest memory (design notes). */
static int make_memory(struct guest *g)
{
	const struct guest_opts *o = &g->o;
	uint64_t end;
	int ret;

	ret = vring_layout(o->queue_size, 0, &g->addrs);
	if (ret < 0)
		return ret;
	g->buf_bytes = ROUND_UP(o->bs, PAGE);
	g->meta = ROUND_UP(g->addrs.end, PAGE);
	g->data = ROUND_UP(g->meta + (uint64_t)o->iodepth * GUEST_META_BYTES,
			   PAGE);
	g->scratch = g->data + (uint64_t)o->iodepth * g->buf_bytes;
	end = g->scratch + guest_inject_scratch_bytes(o->queue_size);
	return vring_mem_new(end, &g->mem);
}

/* Per-request state and the slot records. */
static int make_state(struct guest *g)
{
	const struct guest_opts *o = &g->o;

	g->reqs = calloc(o->iodepth, sizeof(*g->reqs));
	g->slot_busy = calloc(DIV_ROUND_UP(g->nslots, 64), sizeof(uint64_t));
	if (o->verify)
		g->slot_seq = calloc(g->nslots, sizeof(uint64_t));
	if (!g->reqs || !g->slot_busy || (o->verify && !g->slot_seq))
		return -ENOMEM;
	for (unsigned i = o->iodepth; i-- > 0;) {
		struct guest_req *rq = &g->reqs[i];

		guest_chain_mem_init(&rq->m, g->meta + (uint64_t)i *
				     GUEST_META_BYTES,
				     g->data + (uint64_t)i * g->buf_bytes,
				     g->buf_bytes);
		rq->next_free = g->free_reqs;
		g->free_reqs = rq;
	}
	return 0;
}

/* Check o against the image; set region and nslots. */
static int check_image(struct guest *g, const struct setup_call *c)
{
	struct guest_opts *o = &g->o;

	if (c->read_only && writes(o))
		return -EROFS;
	if (o->offset > c->size)
		return -EINVAL;
	if (o->region == 0)
		o->region = c->size - o->offset;
	if (o->region > c->size - o->offset || o->region < o->bs)
		return -EINVAL;
	g->nslots = o->region / o->bs;
	if (g->nslots > (o->verify ? GUEST_MAX_VERIFY_SLOTS : GUEST_MAX_SLOTS))
		return -EINVAL;
	return 0;
}

static uint64_t wanted_features(const struct guest_opts *o)
{
	uint64_t f = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_BLK_F_SEG_MAX) |
		     BIT(VIRTIO_BLK_F_SIZE_MAX) | BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     BIT(VIRTIO_BLK_F_FLUSH) | BIT(VIRTIO_BLK_F_DISCARD) |
		     BIT(VIRTIO_BLK_F_WRITE_ZEROES) | BIT(VIRTIO_BLK_F_RO);

	if (o->event_idx)
		f |= BIT(VIRTIO_RING_F_EVENT_IDX);
	if (o->indirect || guest_inject_needs_indirect(o->inject))
		f |= BIT(VIRTIO_RING_F_INDIRECT_DESC);
	return f;
}

static int make_eventfds(struct guest *g)
{
	g->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (g->kick_fd < 0)
		return -errno;
	g->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (g->call_fd < 0)
		return -errno;
	g->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (g->stop_fd < 0)
		return -errno;
	return 0;
}

int guest_start(struct blk_image *img, struct loop *ctx,
		const struct guest_opts *o, struct guest **out)
{
	struct setup_call c = { 0 };
	char serial[VIRTIO_BLK_ID_BYTES + 1];
	struct guest *g;
	int ret = check_opts(o);

	if (ret < 0)
		return ret;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->lock, NULL);
	g->img = img;
	g->ctx = ctx;
	g->o = *o;
	g->kick_fd = g->call_fd = g->stop_fd = -1;
	if (g->o.seed == 0)
		g->o.seed = loop_now_ns() ^ (uintptr_t)g;
	g->rng = g->o.seed | 1;
	/* 20 characters: GET_ID answers it without a terminator. */
	snprintf(serial, sizeof(serial), "vguest-%013" PRIx64,
		 g->o.seed & ((UINT64_C(1) << 52) - 1));
	memcpy(g->serial, serial, VIRTIO_BLK_ID_BYTES);
	g->inject_after = o->requests ?
			  VDISK_MIN(o->requests, GUEST_INJECT_AFTER) :
			  GUEST_INJECT_AFTER;

	ret = make_memory(g);
	if (ret == 0)
		ret = make_eventfds(g);
	if (ret < 0)
		goto out_destroy;
	c.g = g;
	loop_call_sync(ctx, setup_new_fn, &c);
	ret = c.ret;
	if (ret == 0)
		ret = check_image(g, &c);
	if (ret == 0)
		ret = make_state(g);
	if (ret < 0)
		goto out_destroy;
	g->features = vblk_features(g->dev) & wanted_features(&g->o);
	/* An injection may negotiate INDIRECT for itself only. */
	g->indirect = o->indirect &&
		      (g->features & BIT(VIRTIO_RING_F_INDIRECT_DESC));
	ret = vring_drv_new(g->mem, g->o.queue_size, &g->addrs, g->features,
			    &g->drv);
	if (ret < 0)
		goto out_destroy;
	loop_call_sync(ctx, setup_start_fn, &c);
	ret = c.ret;
	if (ret < 0)
		goto out_destroy;

	g->local.state = GUEST_RUNNING;
	g->local.features = g->features;
	g->st = g->local;
	ret = -pthread_create(&g->thread, NULL, guest_vcpu_main, g);
	if (ret < 0)
		goto out_destroy;
	pthread_setname_np(g->thread, "vdisk-vcpu");
	g->thread_started = true;
	*out = g;
	return 0;

out_destroy:
	guest_destroy(g);
	return ret;
}

void guest_get_stats(struct guest *g, struct guest_stats *st)
{
	struct vblk_stats ds;

	pthread_mutex_lock(&g->lock);
	*st = g->st;
	pthread_mutex_unlock(&g->lock);
	vblk_get_stats(g->dev, &ds);
	st->irqs_raised = ds.irqs_raised;
	st->irqs_suppressed = ds.irqs_suppressed;
	st->broken = ds.broken;
	st->device_error = ds.error;
}

bool guest_finished(struct guest *g)
{
	enum guest_state s;

	pthread_mutex_lock(&g->lock);
	s = g->st.state;
	pthread_mutex_unlock(&g->lock);
	return s == GUEST_DONE || s == GUEST_STOPPED || s == GUEST_FAILED;
}

static void wake(struct guest *g)
{
	uint64_t one = 1;

	if (write(g->stop_fd, &one, sizeof(one)) < 0)
		return;
}

void guest_stop(struct guest *g)
{
	atomic_store(&g->stop, true);
	wake(g);
}

void guest_free(struct guest *g)
{
	if (!g)
		return;
	atomic_store(&g->quit, true);
	wake(g);
	if (g->thread_started)
		pthread_join(g->thread, NULL);
	guest_destroy(g);
}

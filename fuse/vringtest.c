/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vring test ioctls (VDISK_IOC_VRING_TEST_START, _STATUS, _STOP): a
 * simulated guest (engine/guest.h) drives a virtio-blk device over the
 * image of a node, through the same block layer path as every other
 * request, and the node keeps the current or last test for STATUS.
 *
 * Design notes.
 *
 * Threads.  node->vring (struct vdfs_vring: the node's current or last
 * test) belongs to the image's context thread, like node->mirror: the
 * handlers, in FUSE workers, hand their work over with loop_call_sync.
 * The guest itself may be asked for its statistics or stopped from any
 * thread, but which guest is the node's is the context's to say.
 *
 * START runs in three steps, so that guest_start runs in the worker: it
 * allocates guest memory (iodepth * bs, up to 1 GiB) and starts the vCPU
 * thread, and it hands the device's setup to the context itself, which
 * must not be kept waiting meanwhile.
 *   1. claim (context): EBUSY if the node's test runs or another START
 *      has claimed the node; else mark it starting, keep the last test's
 *      final statistics and take its guest out of the record;
 *   2. (worker) free that guest, then guest_start;
 *   3. install (context): the new guest becomes the node's test with the
 *      next test id, and starting ends, whether the start worked or not
 *      (a failed start leaves the last test's record as it was).
 * Between 1 and 3 the node cannot be released: the worker's handle is
 * open, and at shutdown the workers are gone before images are closed.
 *
 * Permissions.  START of a workload that writes (any rw other than read
 * and randread, or flush_every > 0) needs what a mutating ioctl needs: a
 * handle opened for writing (EBADF) and root or the image's owner
 * (EPERM).  A read-only workload runs on any handle: it changes nothing
 * that a read through the mount would not.  An injection writes nothing
 * to the image either.  STOP needs root, the image's owner or the user
 * who started the test, on any handle: stopping only ends I/O, and
 * vdiskctl stops its own test on the read-only handle it started a
 * read-only test on; any other user could otherwise cut short a test
 * they did not start.
 *
 * Lifetime.  The record lives from the node's first START until its
 * image is closed: vdfs_vring_node_release, from close_fn, frees the
 * guest, stopping a running test at once (shutdown included).  An image
 * stays open while a handle is, and until the kernel forgets the node
 * after that; so a test outlives the handle that started it only until
 * then.  A finished test's guest (its memory, its device) is freed when
 * the next test starts; its final statistics stay for STATUS.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "guest.h"
#include "vblk.h"
#include "vdfs.h"
#include "vdisk-ioctl.h"

struct vdfs_vring {
	struct guest *g;               /* the current or last test, or NULL */
	uint64_t id;                   /* its test id; 0 before the first */
	uid_t uid;                     /* who started it */
	bool starting;                 /* a START between claim and install */
	bool have_last;                /* last: the final stats of a test
					* whose guest is freed */
	struct guest_stats last;
};

/* Test ids, for the whole daemon (so a new test never reuses one). */
static atomic_uint_fast64_t next_test_id = 1;

/* ---- the ABI's values ------------------------------------------------- */

/* rw that only reads: read, randread, no flushes. */
static bool start_writes(const struct vdisk_ioc_vring_start *in)
{
	return (in->rw != VDISK_VRING_RW_READ &&
		in->rw != VDISK_VRING_RW_RANDREAD) || in->flush_every > 0;
}

#define VRING_START_FLAGS (VDISK_VRING_VERIFY | VDISK_VRING_EVENT_IDX | \
			   VDISK_VRING_INDIRECT)

/*
 * The struct as guest options, the ABI's defaults applied.  Returns 0 or
 * -EINVAL for what the ABI itself rules out; guest_start checks the
 * rest (sizes, alignment, the queue) and answers -EINVAL as well.
 */
static int start_opts(const struct vdisk_ioc_vring_start *in,
		      struct guest_opts *o)
{
	static const enum guest_rw rw[] = {
		[VDISK_VRING_RW_READ] = GUEST_RW_READ,
		[VDISK_VRING_RW_WRITE] = GUEST_RW_WRITE,
		[VDISK_VRING_RW_RANDREAD] = GUEST_RW_RANDREAD,
		[VDISK_VRING_RW_RANDWRITE] = GUEST_RW_RANDWRITE,
		[VDISK_VRING_RW_RANDRW] = GUEST_RW_RANDRW,
	};
	static const enum guest_inject inject[] = {
		[VDISK_VRING_INJECT_NONE] = GUEST_INJECT_NONE,
		[VDISK_VRING_INJECT_LOOP] = GUEST_INJECT_LOOP,
		[VDISK_VRING_INJECT_TOO_LONG] = GUEST_INJECT_TOO_LONG,
		[VDISK_VRING_INJECT_OUT_OF_BOUNDS] = GUEST_INJECT_OUT_OF_BOUNDS,
		[VDISK_VRING_INJECT_NESTED_INDIRECT] =
			GUEST_INJECT_NESTED_INDIRECT,
		[VDISK_VRING_INJECT_BAD_INDIRECT_LEN] =
			GUEST_INJECT_BAD_INDIRECT_LEN,
		[VDISK_VRING_INJECT_READ_AFTER_WRITE] =
			GUEST_INJECT_READ_AFTER_WRITE,
	};

	if (in->pad0 || in->rw >= sizeof(rw) / sizeof(rw[0]) ||
	    in->inject >= sizeof(inject) / sizeof(inject[0]) ||
	    (in->flags & ~VRING_START_FLAGS) || in->rwmix_read > 100)
		return -EINVAL;
	*o = (struct guest_opts){
		.rw = rw[in->rw],
		.bs = in->bs ? in->bs : 4096,
		.iodepth = in->iodepth ? in->iodepth : 1,
		.queue_size = in->queue_size ? in->queue_size : 256,
		.offset = in->offset,
		.region = in->region,
		.seconds = in->seconds,
		.requests = in->requests,
		.rwmix_read = in->rwmix_read ? in->rwmix_read : 50,
		.flush_every = in->flush_every,
		.verify = in->flags & VDISK_VRING_VERIFY,
		.event_idx = in->flags & VDISK_VRING_EVENT_IDX,
		.indirect = in->flags & VDISK_VRING_INDIRECT,
		.inject = inject[in->inject],
		.seed = in->seed,
	};
	/* Never "until stopped": a forgotten test would run forever. */
	if (!o->requests && !o->seconds)
		o->seconds = 10;
	return 0;
}

static uint32_t state_of(enum guest_state s)
{
	switch (s) {
	case GUEST_RUNNING:
		return VDISK_VRING_RUNNING;
	case GUEST_VERIFYING:
		return VDISK_VRING_VERIFYING;
	case GUEST_DONE:
		return VDISK_VRING_DONE;
	case GUEST_STOPPED:
		return VDISK_VRING_STOPPED;
	case GUEST_FAILED:
	default:
		return VDISK_VRING_FAILED;
	}
}

static void fill_status(struct vdisk_ioc_vring_status *o, uint64_t id,
			const struct guest_stats *st)
{
	_Static_assert(VDISK_VRING_OP_WRITE_ZEROES == 5 &&
		       sizeof(st->ops) / sizeof(st->ops[0]) == 6,
		       "guest_stats.ops and enum vdisk_vring_op agree");
	_Static_assert(VIRTIO_BLK_S_OK == 0 && VIRTIO_BLK_S_IOERR == 1 &&
		       VIRTIO_BLK_S_UNSUPP == 2, "guest_stats.status");

	o->test_id = id;
	o->state = state_of(st->state);
	o->flags = st->broken ? VDISK_VRING_ST_BROKEN : 0;
	for (unsigned i = 0; i < 6; i++)
		o->ops[i] = st->ops[i];
	o->bytes_read = st->bytes_read;
	o->bytes_written = st->bytes_written;
	o->status_ok = st->status[VIRTIO_BLK_S_OK];
	o->status_ioerr = st->status[VIRTIO_BLK_S_IOERR];
	o->status_unsupp = st->status[VIRTIO_BLK_S_UNSUPP];
	o->unexpected = st->unexpected;
	o->verify_checked = st->verify_checked;
	o->verify_mismatches = st->verify_mismatches;
	o->kicks_sent = st->kicks_sent;
	o->kicks_suppressed = st->kicks_suppressed;
	o->irqs_raised = st->irqs_raised;
	o->irqs_suppressed = st->irqs_suppressed;
	o->lat_mean_ns = st->lat_mean_ns;
	o->lat_p50_ns = st->lat_p50_ns;
	o->lat_p99_ns = st->lat_p99_ns;
	o->elapsed_ns = st->elapsed_ns;
	o->device_error = (uint32_t)st->device_error;
	o->error = st->state == GUEST_FAILED ? -st->error : 0;
	memcpy(o->verdict, st->verdict, sizeof(o->verdict));
	o->verdict[sizeof(o->verdict) - 1] = '\0';
}

/* ---- calls in the image's context ------------------------------------- */

struct vring_call {
	struct vdfs_node *node;
	uid_t uid;                     /* the caller */
	bool owner;                    /* the caller is root or the owner */
	struct guest *g;               /* claim: the last guest, to free;
					* install: the new one, or NULL */
	uint64_t id;                   /* install: the new test's id */
	struct vdisk_ioc_vring_status *st;
	int ret;
};

static bool test_runs(const struct vdfs_vring *vr)
{
	return vr && vr->g && !guest_finished(vr->g);
}

static void claim_fn(void *opaque)
{
	struct vring_call *c = opaque;
	struct vdfs_node *n = c->node;
	struct vdfs_vring *vr = n->vring;

	if (vr && (vr->starting || test_runs(vr))) {
		c->ret = -EBUSY;
		return;
	}
	if (!vr) {
		vr = calloc(1, sizeof(*vr));
		if (!vr) {
			c->ret = -ENOMEM;
			return;
		}
		n->vring = vr;
	}
	if (vr->g) {
		guest_get_stats(vr->g, &vr->last);
		vr->have_last = true;
	}
	c->g = vr->g;
	vr->g = NULL;
	vr->starting = true;
	c->ret = 0;
}

static void install_fn(void *opaque)
{
	struct vring_call *c = opaque;
	struct vdfs_vring *vr = c->node->vring;

	vr->starting = false;
	if (!c->g)
		return;
	vr->g = c->g;
	vr->id = c->id;
	vr->uid = c->uid;
	vr->have_last = false;
}

static void status_fn(void *opaque)
{
	struct vring_call *c = opaque;
	struct vdfs_vring *vr = c->node->vring;
	struct guest_stats st;

	if (!vr || vr->id == 0) {
		c->st->state = VDISK_VRING_NONE;
		return;
	}
	if (vr->g)
		guest_get_stats(vr->g, &st);
	else
		st = vr->last;
	fill_status(c->st, vr->id, &st);
}

static void stop_fn(void *opaque)
{
	struct vring_call *c = opaque;
	struct vdfs_vring *vr = c->node->vring;

	if (!test_runs(vr)) {
		c->ret = -EINVAL;
		return;
	}
	if (!c->owner && c->uid != vr->uid) {
		c->ret = -EPERM;
		return;
	}
	guest_stop(vr->g);
	c->id = vr->id;
	c->ret = 0;
}

/* ---- in the worker ---------------------------------------------------- */

/* Root or the owner of the image (the rule of check_caller in ioctl.c). */
static int caller_owns(fuse_req_t req, struct vdfs_node *n, bool *owner)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	struct stat st;
	int ret;

	*owner = fc->uid == 0;
	if (*owner)
		return 0;
	ret = vdfs_node_stat(n, &st);
	if (ret < 0)
		return ret;
	*owner = fc->uid == st.st_uid;
	return 0;
}

/* For the log, indexed by the ABI's values (checked by start_opts). */
static const char *const rw_names[] = {
	"read", "write", "randread", "randwrite", "randrw",
};
static const char *const inject_names[] = {
	"", " inject=loop", " inject=too-long", " inject=out-of-bounds",
	" inject=nested-indirect", " inject=bad-indirect-len",
	" inject=read-after-write",
};
_Static_assert(sizeof(rw_names) / sizeof(rw_names[0]) ==
	       VDISK_VRING_RW_RANDRW + 1, "rw_names");
_Static_assert(sizeof(inject_names) / sizeof(inject_names[0]) ==
	       VDISK_VRING_INJECT_READ_AFTER_WRITE + 1, "inject_names");

static int vring_start(fuse_req_t req, struct vdfs_handle *h,
		       struct blk_image *img,
		       const struct vdisk_ioc_vring_start *in, uint64_t *id)
{
	struct vdfs_node *n = h->node;
	struct loop *ctx = vdfs_node_ctx(n);
	struct vring_call c = { .node = n, .uid = fuse_req_ctx(req)->uid };
	struct guest_opts o;
	int ret;

	ret = start_opts(in, &o);
	if (ret < 0)
		return ret;
	if (start_writes(in)) {
		if ((h->flags & O_ACCMODE) == O_RDONLY)
			return -EBADF;
		ret = caller_owns(req, n, &c.owner);
		if (ret < 0)
			return ret;
		if (!c.owner)
			return -EPERM;
	}
	loop_call_sync(ctx, claim_fn, &c);
	if (c.ret < 0)
		return c.ret;
	/* The last test's final statistics are kept; its guest goes. */
	guest_free(c.g);
	c.g = NULL;
	ret = guest_start(img, ctx, &o, &c.g);
	if (ret < 0)
		c.g = NULL;
	else
		c.id = atomic_fetch_add(&next_test_id, 1);
	loop_call_sync(ctx, install_fn, &c);
	if (ret < 0) {
		log_info("%s: vring test refused: %s", n->name,
			 strerror(-ret));
		return ret;
	}
	log_info("vring test %llu on %s started: %s bs=%u iodepth=%u "
		 "queue=%u%s%s%s%s", (unsigned long long)c.id, n->name,
		 rw_names[in->rw], o.bs, o.iodepth, o.queue_size,
		 o.verify ? " verify" : "", o.event_idx ? " event_idx" : "",
		 o.indirect ? " indirect" : "", inject_names[in->inject]);
	*id = c.id;
	return 0;
}

static int vring_stop(fuse_req_t req, struct vdfs_node *n)
{
	struct vring_call c = { .node = n, .uid = fuse_req_ctx(req)->uid };
	int ret;

	ret = caller_owns(req, n, &c.owner);
	if (ret < 0)
		return ret;
	loop_call_sync(vdfs_node_ctx(n), stop_fn, &c);
	if (c.ret == 0)
		log_info("vring test %llu on %s: stop asked",
			 (unsigned long long)c.id, n->name);
	return c.ret;
}

void vdfs_vring_ioctl(fuse_req_t req, struct vdfs_handle *h,
		      struct blk_image *img, unsigned cmd, const void *in,
		      size_t size)
{
	union {
		struct vdisk_ioc_vring_start start;
		struct vdisk_ioc_vring_status status;
		struct vdisk_ioc_vring_stop stop;
	} out;
	struct vring_call c = { .node = h->node };
	int ret;

	memset(&out, 0, sizeof(out));
	switch (cmd) {
	case VDISK_IOC_VRING_TEST_START:
		memcpy(&out.start, in, sizeof(out.start));
		ret = vring_start(req, h, img, in, &out.start.test_id);
		break;
	case VDISK_IOC_VRING_TEST_STATUS:
		out.status.version = VDISK_IOC_VERSION;
		out.status.size = sizeof(out.status);
		c.st = &out.status;
		loop_call_sync(vdfs_node_ctx(h->node), status_fn, &c);
		ret = 0;
		break;
	case VDISK_IOC_VRING_TEST_STOP:
		memcpy(&out.stop, in, sizeof(out.stop));
		ret = vring_stop(req, h->node);
		break;
	default:
		ret = -ENOTTY;
		break;
	}
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_ioctl(req, 0, &out, size);
}

/* ---- the node's end ----------------------------------------------------- */

void vdfs_vring_node_release(struct vdfs_node *n)
{
	struct vdfs_vring *vr = n->vring;

	if (!vr)
		return;
	if (test_runs(vr))
		log_info("vring test %llu on %s stopped: the image is closed",
			 (unsigned long long)vr->id, n->name);
	/* Safe in the context thread: the guest does not wait for it. */
	guest_free(vr->g);
	free(vr);
	n->vring = NULL;
}

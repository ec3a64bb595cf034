/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtio-blk dataplane: the device end of one split virtqueue, served
 * in the image's context.  It pops chains when the guest kicks, runs each
 * request in a coroutine through the block layer, pushes the answers and
 * raises the guest's interrupt when the ring's rules call for one.  See
 * vblk.h for what each request type is answered.
 *
 * Design notes
 *
 * A round.  A kick (or the end of a drain, or vblk_start) runs one round:
 * the image is plugged, kicks are suppressed (vring_dev_disable_notify),
 * every available chain is popped and its coroutine started, then kicks
 * are enabled again and, if chains arrived meanwhile, popping goes on;
 * the image is unplugged last, so a round's Linux AIO requests reach the
 * kernel in one io_submit.  A round counts as one batch.
 *
 * Requests.  A struct vblk_req holds the chain's iovecs (into guest
 * memory: zero copy), the header copied out of guest memory (the guest may
 * change it meanwhile; only the copy is used), the data iovecs and the
 * status byte's address.  Malformed requests and GET_ID are answered at
 * once; the others run in a coroutine of their own.  Free requests are
 * kept on a list (up to VBLK_REQ_CACHE of them).
 *
 * Completions.  A request ends by writing its status byte and pushing its
 * chain, then schedules notify_bh: one bottom half per loop iteration at
 * most, which asks vring_dev_should_notify about every push since the last
 * decision and writes the interrupt eventfd once if needed.
 *
 * Invariants: in_flight counts requests popped and not yet answered (every
 * one of them is answered, unless the queue broke meanwhile); nothing is
 * popped while !vblk_can_pop (not started, stopping, drained or broken).
 *
 * Counters are relaxed atomics written only by the context thread, so
 * vblk_get_stats may read them from any thread; each counter is exact,
 * a snapshot is not one instant.
 */
#include "config.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/queue.h>

#include "compiler.h"
#include "coroutine.h"
#include "loop.h"
#include "vblk.h"

#define VBLK_IOV_MAX   (VBLK_SEG_MAX + 2)   /* header and status too */
#define VBLK_REQ_CACHE 128u

#define BIT(n) (UINT64_C(1) << (n))

enum { OP_IN, OP_OUT, OP_FLUSH, OP_GET_ID, OP_DISCARD, OP_WZ, OP_NONE };

/* Counters: relaxed atomics, written by the context thread only. */
struct vblk_counters {
	_Atomic uint64_t ops[6], unsupported, status[3];
	_Atomic uint64_t bytes_read, bytes_written, kicks, batches, max_batch;
	_Atomic uint64_t irqs_raised, irqs_suppressed, config_irqs;
	atomic_uint in_flight;
	atomic_bool broken;
	atomic_int error;
	_Atomic(const char *) reason;
};

struct vblk_req {
	struct vblk *v;
	struct vring_elem elem;
	struct virtio_blk_outhdr hdr;          /* copied, CPU byte order */
	int op;                                /* OP_* */
	uint8_t *status;                       /* in guest memory */
	uint32_t used_len;
	int ndata;
	struct iovec iov[VBLK_IOV_MAX];        /* the chain */
	struct iovec data[VBLK_IOV_MAX];       /* its data part */
	struct virtio_blk_discard_write_zeroes segs[VBLK_MAX_DWZ_SEG];
	unsigned nsegs;
	SLIST_ENTRY(vblk_req) link;            /* free list */
};

/* Every field belongs to the context thread, but for the counters. */
struct vblk {
	struct blk_image *img;
	struct loop *ctx;
	struct vring_mem *mem;
	char serial[VIRTIO_BLK_ID_BYTES];
	uint64_t offered, features;
	struct vring_dev *vq;
	int kick_fd, call_fd;
	bool started, stopping, drained, broken;
	unsigned in_flight;                    /* popped, not answered */
	unsigned pushes;                       /* since the last decision */
	struct loop_bh notify_bh, rescan_bh;
	struct blk_drain_notifier drain;
	SLIST_HEAD(, vblk_req) free_reqs;
	unsigned nfree;
	struct vblk_counters c;
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- iovec helpers ---------------------------------------------------- */

/* Copy len bytes at offset skip of iov into buf; returns bytes copied. */
static size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip,
			 void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l = VDISK_MIN(l - skip, len - done);
		memcpy((char *)buf + done, (char *)iov[i].iov_base + skip, l);
		done += l;
		skip = 0;
	}
	return done;
}

/* The reverse of iov_to_buf. */
static size_t iov_from_buf(const struct iovec *iov, unsigned n,
			   const void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t l = VDISK_MIN(iov[i].iov_len, len - done);

		memcpy(iov[i].iov_base, (const char *)buf + done, l);
		done += l;
	}
	return done;
}

/* dst = [skip, skip + len) of src, at most cap entries; returns count. */
static int iov_slice(const struct iovec *src, unsigned n, size_t skip,
		     size_t len, struct iovec *dst, unsigned cap)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len > 0 && k < cap; i++) {
		size_t l = src[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l = VDISK_MIN(l - skip, len);
		dst[k].iov_base = (char *)src[i].iov_base + skip;
		dst[k++].iov_len = l;
		len -= l;
		skip = 0;
	}
	return (int)k;
}

/* The last writable byte of a chain (its status), or NULL if none. */
static uint8_t *status_byte(const struct iovec *iov,
			    const struct vring_elem *e)
{
	for (unsigned i = e->out_num + e->in_num; i > e->out_num; i--) {
		const struct iovec *v = &iov[i - 1];

		if (v->iov_len > 0)
			return (uint8_t *)v->iov_base + v->iov_len - 1;
	}
	return NULL;
}

/* ---- queue state -------------------------------------------------------- */

static bool vblk_can_pop(const struct vblk *v)
{
	return v->started && !v->stopping && !v->drained && !v->broken;
}

static void vblk_irq(struct vblk *v)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is full: the guest has a wake-up anyway. */
	if (write(v->call_fd, &one, sizeof(one)) < 0)
		return;
}

/*
 * The queue needs a reset: pop and push nothing more, and tell the guest
 * with a configuration-change interrupt.
 */
static void vblk_break(struct vblk *v, enum vring_error err,
		       const char *reason)
{
	if (v->broken)
		return;
	v->broken = true;
	atomic_store_explicit(&v->c.error, (int)err, memory_order_relaxed);
	atomic_store_explicit(&v->c.reason, reason, memory_order_relaxed);
	atomic_store_explicit(&v->c.broken, true, memory_order_relaxed);
	count(&v->c.config_irqs, 1);
	vblk_irq(v);
}

/* One decision for every push since the last one (vblk.h). */
static void vblk_notify_bh(void *opaque)
{
	struct vblk *v = opaque;
	unsigned n = v->pushes;

	if (n == 0)
		return;
	v->pushes = 0;
	if (vring_dev_should_notify(v->vq)) {
		/* Counted first: whoever saw the interrupt sees the count. */
		count(&v->c.irqs_raised, 1);
		vblk_irq(v);
		n--;
	}
	count(&v->c.irqs_suppressed, n);
}

/* ---- requests --------------------------------------------------------- */

static struct vblk_req *req_get(struct vblk *v)
{
	struct vblk_req *r = SLIST_FIRST(&v->free_reqs);

	if (r) {
		SLIST_REMOVE_HEAD(&v->free_reqs, link);
		v->nfree--;
	} else {
		r = malloc(sizeof(*r));
		if (!r)
			return NULL;
	}
	r->v = v;
	r->op = OP_NONE;
	r->used_len = 1;
	r->ndata = 0;
	r->nsegs = 0;
	r->status = NULL;
	return r;
}

static void req_put(struct vblk *v, struct vblk_req *r)
{
	if (v->nfree >= VBLK_REQ_CACHE) {
		free(r);
		return;
	}
	SLIST_INSERT_HEAD(&v->free_reqs, r, link);
	v->nfree++;
}

/* Answer r with status st and give its chain back. */
static void req_complete(struct vblk_req *r, uint8_t st)
{
	struct vblk *v = r->v;

	*r->status = st;
	count(&v->c.status[st], 1);
	if (r->op == OP_NONE)
		count(&v->c.unsupported, 1);
	else
		count(&v->c.ops[r->op], 1);
	/* After a break the guest gets nothing more: it must reset. */
	if (!v->broken &&
	    vring_dev_push(v->vq, r->elem.head, r->used_len) == 0) {
		v->pushes++;
		loop_bh_schedule(&v->notify_bh);
	}
	v->in_flight--;
	atomic_store_explicit(&v->c.in_flight, v->in_flight,
			      memory_order_relaxed);
	req_put(v, r);
}

/* Whether [sector, sector + bytes / 512) lies inside the capacity. */
static bool range_ok(struct vblk *v, uint64_t sector, uint64_t bytes)
{
	uint64_t cap = blk_get_size(v->img) / VIRTIO_BLK_SECTOR;
	uint64_t n = bytes / VIRTIO_BLK_SECTOR;

	return bytes % VIRTIO_BLK_SECTOR == 0 && sector <= cap &&
	       n <= cap - sector;
}

/*
 * Check a read or write and set its data iovecs.  Returns -1 to go on,
 * else the status to answer.
 */
static int prep_rw(struct vblk_req *r)
{
	const struct vring_elem *e = &r->elem;
	uint64_t len;

	if (r->op == OP_IN) {
		if (e->out_bytes != sizeof(r->hdr))
			return VIRTIO_BLK_S_IOERR;
		len = e->in_bytes - 1;
		r->ndata = iov_slice(r->iov + e->out_num, e->in_num, 0, len,
				     r->data, VBLK_IOV_MAX);
	} else {
		if (e->in_bytes != 1)
			return VIRTIO_BLK_S_IOERR;
		len = e->out_bytes - sizeof(r->hdr);
		r->ndata = iov_slice(r->iov, e->out_num, sizeof(r->hdr), len,
				     r->data, VBLK_IOV_MAX);
	}
	if (!range_ok(r->v, r->hdr.sector, len))
		return VIRTIO_BLK_S_IOERR;
	return -1;
}

/* Check a discard or write-zeroes and copy its segments out. */
static int prep_dwz(struct vblk_req *r)
{
	const struct vring_elem *e = &r->elem;
	size_t len = e->out_bytes - sizeof(r->hdr);
	unsigned n = (unsigned)(len / sizeof(r->segs[0]));
	uint32_t flag_mask = r->op == OP_WZ ? VIRTIO_BLK_WZ_F_UNMAP : 0;

	if (e->in_bytes != 1 || len == 0 || len % sizeof(r->segs[0]) ||
	    n > VBLK_MAX_DWZ_SEG)
		return VIRTIO_BLK_S_IOERR;
	iov_to_buf(r->iov, e->out_num, sizeof(r->hdr), r->segs, len);
	r->nsegs = n;
	for (unsigned i = 0; i < n; i++) {
		struct virtio_blk_discard_write_zeroes *s = &r->segs[i];

		s->sector = le64toh(s->sector);
		s->num_sectors = le32toh(s->num_sectors);
		s->flags = le32toh(s->flags);
		if (s->flags & ~flag_mask)
			return VIRTIO_BLK_S_UNSUPP;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct virtio_blk_discard_write_zeroes *s = &r->segs[i];

		if (s->num_sectors > VBLK_MAX_DWZ_SECTORS ||
		    !range_ok(r->v, s->sector,
			      (uint64_t)s->num_sectors * VIRTIO_BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	return -1;
}

/* GET_ID: answered at once, the image is not involved. */
static int do_get_id(struct vblk_req *r)
{
	const struct vring_elem *e = &r->elem;
	struct iovec id[VBLK_IOV_MAX];
	int n;

	if (e->in_bytes - 1 < VIRTIO_BLK_ID_BYTES)
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(r->iov + e->out_num, e->in_num, 0, VIRTIO_BLK_ID_BYTES,
		      id, VBLK_IOV_MAX);
	iov_from_buf(id, (unsigned)n, r->v->serial, VIRTIO_BLK_ID_BYTES);
	r->used_len = VIRTIO_BLK_ID_BYTES + 1;
	return VIRTIO_BLK_S_OK;
}

static const struct {
	uint32_t type;
	int op;
	uint64_t feature;                      /* 0: always there */
} vblk_types[] = {
	{ VIRTIO_BLK_T_IN, OP_IN, 0 },
	{ VIRTIO_BLK_T_OUT, OP_OUT, 0 },
	{ VIRTIO_BLK_T_FLUSH, OP_FLUSH, BIT(VIRTIO_BLK_F_FLUSH) },
	{ VIRTIO_BLK_T_GET_ID, OP_GET_ID, 0 },
	{ VIRTIO_BLK_T_DISCARD, OP_DISCARD, BIT(VIRTIO_BLK_F_DISCARD) },
	{ VIRTIO_BLK_T_WRITE_ZEROES, OP_WZ, BIT(VIRTIO_BLK_F_WRITE_ZEROES) },
};

/*
 * Everything that needs no I/O: the header, the type, the layout.
 * Returns -1 when the request must go to the block layer, else its status.
 */
static int req_prepare(struct vblk_req *r)
{
	struct vblk *v = r->v;
	uint32_t type;

	if (r->elem.out_bytes < sizeof(r->hdr))
		return VIRTIO_BLK_S_IOERR;
	iov_to_buf(r->iov, r->elem.out_num, 0, &r->hdr, sizeof(r->hdr));
	type = le32toh(r->hdr.type);
	r->hdr.type = type;
	r->hdr.sector = le64toh(r->hdr.sector);
	for (size_t i = 0; i < ARRAY_SIZE(vblk_types); i++) {
		if (vblk_types[i].type != type)
			continue;
		r->op = vblk_types[i].op;
		if (vblk_types[i].feature &&
		    !(v->features & vblk_types[i].feature))
			return VIRTIO_BLK_S_UNSUPP;
	}
	switch (r->op) {
	case OP_IN:
	case OP_OUT:
		return prep_rw(r);
	case OP_FLUSH:
		return -1;
	case OP_GET_ID:
		return do_get_id(r);
	case OP_DISCARD:
	case OP_WZ:
		return prep_dwz(r);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

static int coroutine_fn do_dwz(struct vblk_req *r)
{
	for (unsigned i = 0; i < r->nsegs; i++) {
		const struct virtio_blk_discard_write_zeroes *s = &r->segs[i];
		uint64_t off = s->sector * VIRTIO_BLK_SECTOR;
		uint64_t bytes = (uint64_t)s->num_sectors * VIRTIO_BLK_SECTOR;
		unsigned flags = s->flags & VIRTIO_BLK_WZ_F_UNMAP ?
				 BLK_REQ_UNMAP : 0;
		int ret;

		if (bytes == 0)
			continue;
		if (r->op == OP_DISCARD)
			ret = blk_co_discard(r->v->img, off, bytes);
		else
			ret = blk_co_write_zeroes(r->v->img, off, bytes, flags);
		if (ret == -EOPNOTSUPP)
			return VIRTIO_BLK_S_UNSUPP;
		if (ret < 0)
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* The request's coroutine: the block layer's one path. */
static void coroutine_fn req_co(void *opaque)
{
	struct vblk_req *r = opaque;
	struct vblk *v = r->v;
	uint64_t off = r->hdr.sector * VIRTIO_BLK_SECTOR;
	uint64_t len = 0;
	ssize_t ret;
	int st;

	switch (r->op) {
	case OP_IN:
		len = r->elem.in_bytes - 1;
		ret = blk_co_preadv(v->img, off, r->data, r->ndata, 0);
		/* The data may have been written even on failure. */
		r->used_len = r->elem.in_bytes;
		st = ret == (ssize_t)len ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
		if (st == VIRTIO_BLK_S_OK)
			count(&v->c.bytes_read, len);
		break;
	case OP_OUT:
		len = r->elem.out_bytes - sizeof(r->hdr);
		ret = blk_co_pwritev(v->img, off, r->data, r->ndata, 0);
		st = ret == (ssize_t)len ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
		if (st == VIRTIO_BLK_S_OK)
			count(&v->c.bytes_written, len);
		break;
	case OP_FLUSH:
		st = blk_co_flush(v->img) == 0 ? VIRTIO_BLK_S_OK :
						 VIRTIO_BLK_S_IOERR;
		break;
	default:
		st = do_dwz(r);
		break;
	}
	req_complete(r, (uint8_t)st);
}

/*
 * A valid chain with more descriptors than VBLK_IOV_MAX: map it with a
 * big enough array only to answer IOERR in its status byte.
 */
static void vblk_answer_oversized(struct vblk *v, const struct vring_elem *e)
{
	unsigned n = e->out_num + e->in_num;
	struct iovec *iov = calloc(n, sizeof(*iov));
	struct vring_elem big;
	uint16_t head;
	uint8_t *st;
	int ret;

	if (!iov) {
		/* No memory to answer properly: give it back unanswered. */
		if (vring_dev_skip(v->vq, &head) == 1 &&
		    vring_dev_push(v->vq, head, 0) == 0)
			v->pushes++;
		return;
	}
	ret = vring_dev_pop(v->vq, iov, n, &big);
	if (ret == 1) {
		st = status_byte(iov, &big);
		if (!st) {
			vblk_break(v, VRING_ERR_NONE,
				   "request without a writable status byte");
		} else {
			*st = VIRTIO_BLK_S_IOERR;
			count(&v->c.status[VIRTIO_BLK_S_IOERR], 1);
			if (vring_dev_push(v->vq, big.head, 1) == 0)
				v->pushes++;
		}
	} else if (ret == -EIO) {
		vblk_break(v, vring_dev_error(v->vq),
			   vring_error_str(vring_dev_error(v->vq)));
	}
	free(iov);
	loop_bh_schedule(&v->notify_bh);
}

/* Start the request r just popped. */
static void vblk_req_start(struct vblk *v, struct vblk_req *r)
{
	struct coroutine *co;
	int st;

	v->in_flight++;
	atomic_store_explicit(&v->c.in_flight, v->in_flight,
			      memory_order_relaxed);
	st = req_prepare(r);
	if (st < 0) {
		co = co_create(req_co, r);
		if (co) {
			co_enter(co);
			return;
		}
		st = VIRTIO_BLK_S_IOERR;
	}
	req_complete(r, (uint8_t)st);
}

/*
 * Pop one chain and start it.  Returns true when one was taken (and
 * answered or started), false when there is none or the queue broke.
 */
static bool vblk_pop_one(struct vblk *v)
{
	struct vblk_req *r = req_get(v);
	int ret;

	if (!r)
		return false;              /* the next kick tries again */
	ret = vring_dev_pop(v->vq, r->iov, VBLK_IOV_MAX, &r->elem);
	if (ret == 1) {
		r->status = status_byte(r->iov, &r->elem);
		if (r->status) {
			vblk_req_start(v, r);
			return true;
		}
		vblk_break(v, VRING_ERR_NONE,
			   "request without a writable status byte");
	} else if (ret == -ENOBUFS) {
		vblk_answer_oversized(v, &r->elem);
		req_put(v, r);
		return !v->broken;
	} else if (ret == -EIO) {
		vblk_break(v, vring_dev_error(v->vq),
			   vring_error_str(vring_dev_error(v->vq)));
	}
	req_put(v, r);
	return false;
}

/* One round (see the design notes). */
static void vblk_process(struct vblk *v)
{
	uint64_t batch = 0;

	if (!vblk_can_pop(v))
		return;
	blk_io_plug(v->img);
	for (;;) {
		vring_dev_disable_notify(v->vq);
		while (vblk_can_pop(v) && vblk_pop_one(v))
			batch++;
		if (!vblk_can_pop(v) || !vring_dev_enable_notify(v->vq))
			break;
	}
	blk_io_unplug(v->img);
	if (batch == 0)
		return;
	count(&v->c.batches, 1);
	if (batch > atomic_load_explicit(&v->c.max_batch, memory_order_relaxed))
		atomic_store_explicit(&v->c.max_batch, batch,
				      memory_order_relaxed);
}

static void vblk_kick(void *opaque)
{
	struct vblk *v = opaque;
	uint64_t n;

	if (read(v->kick_fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		count(&v->c.kicks, 1);
	vblk_process(v);
}

static void vblk_rescan_bh(void *opaque)
{
	vblk_process(opaque);
}

/*
 * Drain notifiers.  They may run in a coroutine (blk_co_drained_end), so
 * the rescan that resumes popping is a bottom half.
 */
static void vblk_drain_begin(void *opaque)
{
	struct vblk *v = opaque;

	v->drained = true;
}

static void vblk_drain_end(void *opaque)
{
	struct vblk *v = opaque;

	v->drained = false;
	loop_bh_schedule(&v->rescan_bh);
}

/* ---- the interface ---------------------------------------------------- */

int vblk_new(struct blk_image *img, struct vring_mem *mem,
	     const char *serial, struct vblk **out)
{
	struct blk_info info;
	struct vblk *v;

	if (!img || !mem)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->img = img;
	v->ctx = loop_get_current();
	assert(v->ctx);
	v->mem = mem;
	/* NUL-padded, without a terminator when it takes all 20 bytes. */
	if (serial)
		memcpy(v->serial, serial,
		       strnlen(serial, sizeof(v->serial)));
	v->kick_fd = v->call_fd = -1;
	blk_get_info(img, &info);
	v->offered = BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_BLK_F_SEG_MAX) |
		     BIT(VIRTIO_BLK_F_SIZE_MAX) | BIT(VIRTIO_BLK_F_BLK_SIZE) |
		     BIT(VIRTIO_BLK_F_FLUSH) | BIT(VIRTIO_BLK_F_DISCARD) |
		     BIT(VIRTIO_BLK_F_WRITE_ZEROES) |
		     BIT(VIRTIO_RING_F_EVENT_IDX) |
		     BIT(VIRTIO_RING_F_INDIRECT_DESC);
	if (info.read_only)
		v->offered |= BIT(VIRTIO_BLK_F_RO);
	loop_bh_init(&v->notify_bh, v->ctx, vblk_notify_bh, v);
	loop_bh_init(&v->rescan_bh, v->ctx, vblk_rescan_bh, v);
	v->drain = (struct blk_drain_notifier){
		.begin = vblk_drain_begin, .end = vblk_drain_end, .opaque = v,
	};
	SLIST_INIT(&v->free_reqs);
	*out = v;
	return 0;
}

uint64_t vblk_features(const struct vblk *v)
{
	return v->offered;
}

void vblk_get_config(const struct vblk *v, struct virtio_blk_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->capacity = htole64(blk_get_size(v->img) / VIRTIO_BLK_SECTOR);
	cfg->size_max = htole32(VBLK_SIZE_MAX);
	cfg->seg_max = htole32(VBLK_SEG_MAX);
	cfg->blk_size = htole32(VIRTIO_BLK_SECTOR);
	cfg->writeback = 1;
	cfg->max_discard_sectors = htole32(VBLK_MAX_DWZ_SECTORS);
	cfg->max_discard_seg = htole32(VBLK_MAX_DWZ_SEG);
	cfg->discard_sector_alignment = htole32(VBLK_DISCARD_ALIGN);
	cfg->max_write_zeroes_sectors = htole32(VBLK_MAX_DWZ_SECTORS);
	cfg->max_write_zeroes_seg = htole32(VBLK_MAX_DWZ_SEG);
	cfg->write_zeroes_may_unmap = 1;
}

int vblk_start(struct vblk *v, unsigned num, const struct vring_addrs *addrs,
	       uint64_t features, int kick_fd, int call_fd)
{
	struct blk_info info;
	int ret;

	if (v->started)
		return -EBUSY;
	if ((features & ~v->offered) || !(features & BIT(VIRTIO_F_VERSION_1)) ||
	    !vring_size_valid(num) || kick_fd < 0 || call_fd < 0)
		return -EINVAL;
	if (v->vq) {
		vring_dev_free(v->vq);
		v->vq = NULL;
	}
	ret = vring_dev_new(v->mem, num, &v->vq);
	if (ret < 0)
		return ret;
	v->features = features;
	v->kick_fd = kick_fd;
	v->call_fd = call_fd;
	v->broken = false;
	v->pushes = 0;
	atomic_store_explicit(&v->c.broken, false, memory_order_relaxed);
	atomic_store_explicit(&v->c.error, VRING_ERR_NONE,
			      memory_order_relaxed);
	atomic_store_explicit(&v->c.reason, NULL, memory_order_relaxed);
	ret = vring_dev_setup(v->vq, addrs, features);
	if (ret == -EIO) {
		vblk_break(v, vring_dev_error(v->vq),
			   vring_error_str(vring_dev_error(v->vq)));
		return ret;
	}
	if (ret < 0)
		return ret;
	ret = loop_set_fd_handler(v->ctx, kick_fd, vblk_kick, NULL, v);
	if (ret < 0)
		return ret;
	blk_get_info(v->img, &info);
	v->drained = info.drain_depth > 0;
	blk_add_drain_notifier(v->img, &v->drain);
	v->stopping = false;
	v->started = true;
	loop_bh_schedule(&v->rescan_bh);
	return 0;
}

void vblk_stop(struct vblk *v)
{
	assert(!in_coroutine());
	if (!v->started)
		return;
	v->stopping = true;
	loop_bh_cancel(&v->rescan_bh);
	LOOP_WAIT_WHILE(v->ctx, v->in_flight > 0);
	loop_bh_cancel(&v->notify_bh);
	vblk_notify_bh(v);
	loop_set_fd_handler(v->ctx, v->kick_fd, NULL, NULL, NULL);
	blk_remove_drain_notifier(&v->drain);
	v->started = false;
}

void vblk_get_stats(const struct vblk *v, struct vblk_stats *st)
{
	const struct vblk_counters *c = &v->c;

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < ARRAY_SIZE(st->ops); i++)
		st->ops[i] = LD(c->ops[i]);
	for (size_t i = 0; i < ARRAY_SIZE(st->status); i++)
		st->status[i] = LD(c->status[i]);
	st->unsupported = LD(c->unsupported);
	st->bytes_read = LD(c->bytes_read);
	st->bytes_written = LD(c->bytes_written);
	st->kicks = LD(c->kicks);
	st->batches = LD(c->batches);
	st->max_batch = LD(c->max_batch);
	st->irqs_raised = LD(c->irqs_raised);
	st->irqs_suppressed = LD(c->irqs_suppressed);
	st->config_irqs = LD(c->config_irqs);
	st->in_flight = LD(c->in_flight);
	st->broken = LD(c->broken);
	st->error = (enum vring_error)LD(c->error);
	st->reason = LD(c->reason);
#undef LD
}

void vblk_free(struct vblk *v)
{
	struct vblk_req *r;

	if (!v)
		return;
	vblk_stop(v);
	loop_bh_cancel(&v->notify_bh);
	loop_bh_cancel(&v->rescan_bh);
	while ((r = SLIST_FIRST(&v->free_reqs))) {
		SLIST_REMOVE_HEAD(&v->free_reqs, link);
		free(r);
	}
	vring_dev_free(v->vq);
	free(v);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest memory and the split virtqueue (virtio 1.x, "Split Virtqueues").
 *
 * Guest memory is one memfd region mapped into the process; a guest
 * physical address is an offset into it.  A split virtqueue lives in that
 * memory as three parts: the descriptor table, the available ring (written
 * by the driver) and the used ring (written by the device).  Both ends are
 * here so that the simulated guest (the driver, vring_drv_*) and the
 * virtio-blk dataplane (the device, vring_dev_*) share one description of
 * the layout and of the ordering rules.
 *
 * Threading: a struct vring_dev is not thread-safe and takes no lock; one
 * thread at a time uses it, the dataplane's.  The same holds for a struct
 * vring_drv and the guest's thread.  The driver and the device of one queue
 * may run at the same time on different threads: they meet only in guest
 * memory, through the index and event fields, which both sides access with
 * C11 atomics (release to publish, acquire to consume, seq_cst where a
 * store must be ordered before a later load).  A struct vring_mem may be
 * read (vring_mem_ptr) from any thread; it must outlive every driver and
 * device that uses it.
 *
 * A guest cannot crash the device.  Everything the device reads from guest
 * memory is checked before it is used; a chain that breaks the rules of the
 * specification puts the queue in the device's NEEDS_RESET state: it is
 * "broken", vring_dev_pop answers -EIO until vring_dev_reset, and
 * vring_dev_error says why.  The device never reads or writes outside guest
 * memory.
 *
 * Limits, decided here (the specification leaves them to the device):
 *  - A chain carries at most UINT32_MAX bytes in all (readable plus
 *    writable).  The specification forbids more than 2^32; one byte less
 *    keeps every total, and so every used length, inside a uint32_t.  A
 *    longer chain breaks the queue (VRING_ERR_CHAIN_TOO_BIG).
 *  - A chain holds at most queue-size data descriptors, counting those in
 *    an indirect table, and an indirect table holds at most queue-size
 *    entries (both as the specification says: "A driver MUST NOT create a
 *    descriptor chain longer than the Queue Size of the device").
 *  - Zero-length data descriptors are accepted and give zero-length
 *    iovecs; their address must still lie in guest memory (at most at its
 *    end).
 *  - A chain with more segments than the caller's iovec array is not an
 *    error of the guest: vring_dev_pop answers -ENOBUFS, says how many
 *    segments it needs and leaves the chain where it is (retry with a larger
 *    array, or give it back unprocessed with vring_dev_skip).
 *  - The device does not check that the three ring parts do not overlap:
 *    a guest that overlaps them only confuses itself.
 */
#ifndef VDISK_VRING_H
#define VDISK_VRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* ---- guest memory -------------------------------------------------- */

/*
 * A memfd of size bytes, mapped shared at base.  Guest address a is
 * base + a.  The fields are read-only for users; fd may be handed to
 * another process that maps the same memory.
 */
struct vring_mem {
	void *base;
	uint64_t size;
	int fd;
};

/*
 * Create guest memory of size bytes, zero-filled (the memfd is sparse:
 * pages cost nothing until touched).  Returns 0 and stores it in *out (free
 * it with vring_mem_free), -EINVAL when size is 0 or does not fit in the
 * address space, or the -errno of memfd_create, ftruncate or mmap.  *out is
 * untouched on failure.
 */
int vring_mem_new(uint64_t size, struct vring_mem **out);

/* Unmap, close and free.  vring_mem_free(NULL) does nothing. */
void vring_mem_free(struct vring_mem *mem);

/*
 * The host address of guest range [addr, addr + len), or NULL unless the
 * whole range lies inside guest memory (overflow-safe).  len 0 is accepted
 * for addr <= size (the result may then point at the end of the region).
 * The pointer stays valid until vring_mem_free.  Any thread.
 */
void *vring_mem_ptr(const struct vring_mem *mem, uint64_t addr, uint64_t len);

/* ---- the layout (the specification's names and values) ------------- */

#ifndef VIRTIO_RING_F_INDIRECT_DESC
#define VIRTIO_RING_F_INDIRECT_DESC 28
#endif
#ifndef VIRTIO_RING_F_EVENT_IDX
#define VIRTIO_RING_F_EVENT_IDX 29
#endif

#define VIRTQ_DESC_F_NEXT           1   /* the chain continues at .next */
#define VIRTQ_DESC_F_WRITE          2   /* device-writable (else readable) */
#define VIRTQ_DESC_F_INDIRECT       4   /* the buffer is a descriptor table */
#define VIRTQ_AVAIL_F_NO_INTERRUPT  1   /* driver: do not notify me */
#define VIRTQ_USED_F_NO_NOTIFY      1   /* device: do not kick me */

/* The largest queue size; every size is a power of two from 1 to this. */
#define VRING_MAX_SIZE 32768

/* Minimum alignment of each part, in bytes. */
#define VRING_DESC_ALIGN  16
#define VRING_AVAIL_ALIGN 2
#define VRING_USED_ALIGN  4

/*
 * A descriptor, as it lies in guest memory (all fields little-endian).
 * Named after the specification; the Linux uapi header calls it vring_desc,
 * a name we leave alone so that the two can never clash.
 */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* An element of the used ring, little-endian. */
struct virtq_used_elem {
	uint32_t id;    /* head of the chain */
	uint32_t len;   /* bytes the device wrote */
};

/*
 * Where each part of a queue starts in guest memory, and where the last
 * one ends (end is an output of vring_layout; setup ignores it).
 */
struct vring_addrs {
	uint64_t desc;
	uint64_t avail;
	uint64_t used;
	uint64_t end;
};

/* Whether num is a valid queue size: a power of two in [1, 32768]. */
bool vring_size_valid(unsigned num);

/*
 * Bytes of each part for queue size num: 16 * num, 6 + 2 * num (the
 * used_event field included) and 6 + 8 * num (avail_event included).
 */
uint64_t vring_desc_bytes(unsigned num);
uint64_t vring_avail_bytes(unsigned num);
uint64_t vring_used_bytes(unsigned num);

/*
 * Lay a queue of size num out from guest address base upward: the
 * descriptor table at base rounded up to 16, the available ring right
 * after it, the used ring after that rounded up to 4.  Fills *addrs (end =
 * the first byte after the used ring).  Returns 0, or -EINVAL for a bad
 * num or when the layout would pass 2^64.  Checks nothing against memory.
 */
int vring_layout(unsigned num, uint64_t base, struct vring_addrs *addrs);

/*
 * The "need event" test of the specification, wrap-safe on 16-bit indices:
 * true iff event_idx is one of the indices old_idx, ..., new_idx - 1, that
 * is, iff moving an index from old_idx to new_idx crossed the event the
 * other side asked for.
 */
static inline bool vring_event_needed(uint16_t event_idx, uint16_t new_idx,
				      uint16_t old_idx)
{
	return (uint16_t)(new_idx - event_idx - 1) <
	       (uint16_t)(new_idx - old_idx);
}

/* ---- the device side ------------------------------------------------ */

/* Why a queue broke.  VRING_ERR_NONE while it works. */
enum vring_error {
	VRING_ERR_NONE = 0,
	VRING_ERR_RING_ALIGN,       /* a ring part is misaligned */
	VRING_ERR_RING_ADDR,        /* a ring part lies outside memory */
	VRING_ERR_AVAIL_IDX,        /* avail idx ran > queue size ahead */
	VRING_ERR_DESC_INDEX,       /* head or next >= table size */
	VRING_ERR_DESC_ADDR,        /* buffer or table outside memory */
	VRING_ERR_LOOP,             /* the chain comes back on itself */
	VRING_ERR_CHAIN_TOO_LONG,   /* more data descriptors than num */
	VRING_ERR_CHAIN_TOO_BIG,    /* more than UINT32_MAX bytes */
	VRING_ERR_READ_AFTER_WRITE, /* readable after writable */
	VRING_ERR_INDIRECT_FEATURE, /* INDIRECT not negotiated */
	VRING_ERR_INDIRECT_NESTED,  /* INDIRECT inside an indirect table */
	VRING_ERR_INDIRECT_NEXT,    /* INDIRECT together with NEXT */
	VRING_ERR_INDIRECT_LEN,     /* table length 0 or not 16 * n */
	VRING_ERR_INDIRECT_SIZE,    /* table of more than num entries */
	VRING_ERR_HEAD_IN_FLIGHT,   /* a head offered again before use */
};

/*
 * A static, human-readable description of err ("descriptor chain loops"),
 * for logs.  Never NULL; an unknown value gives "unknown vring error".
 */
const char *vring_error_str(enum vring_error err);

struct vring_dev;

/* A chain that vring_dev_pop took off the available ring. */
struct vring_elem {
	uint16_t head;          /* give it back to vring_dev_push */
	unsigned out_num;       /* readable segments: iov[0, out_num) */
	unsigned in_num;        /* writable: iov[out_num, out_num + in_num) */
	uint32_t out_bytes;     /* their total lengths */
	uint32_t in_bytes;
};

/*
 * Create the device end of a queue of size num over mem (borrowed; it must
 * outlive the device).  The queue starts reset: not set up, nothing to pop.
 * Returns 0 and *out (free with vring_dev_free), -EINVAL for a bad num or
 * -ENOMEM.  Memory: about num / 8 bytes besides the struct.
 */
int vring_dev_new(struct vring_mem *mem, unsigned num,
		  struct vring_dev **out);

/* Free the device.  Guest memory is left as it is.  NULL does nothing. */
void vring_dev_free(struct vring_dev *dev);

/*
 * The driver enabled the queue at addrs (end is ignored) with the features
 * negotiated (bit VIRTIO_RING_F_INDIRECT_DESC and VIRTIO_RING_F_EVENT_IDX
 * are used, others ignored).  Indices start at 0.  Returns 0; -EBUSY if the
 * queue is set up or broken (reset it first); -EIO when a part is
 * misaligned or outside guest memory: that is the guest's error, so the
 * queue is then broken (VRING_ERR_RING_ALIGN or VRING_ERR_RING_ADDR).
 */
int vring_dev_setup(struct vring_dev *dev, const struct vring_addrs *addrs,
		    uint64_t features);

/*
 * Back to the state of vring_dev_new: not set up, not broken, nothing in
 * flight (chains popped and not pushed are forgotten), indices 0.  Guest
 * memory is not touched.
 */
void vring_dev_reset(struct vring_dev *dev);

/* Why the queue is broken, or VRING_ERR_NONE. */
enum vring_error vring_dev_error(const struct vring_dev *dev);

/*
 * Take the next available chain, if any, and map it: iov[0, out_num) get
 * its readable buffers and iov[out_num, out_num + in_num) its writable
 * ones, in chain order, pointing into guest memory (valid until the memory
 * is freed; the device may use them until it pushes the chain).  iov_cap is
 * the capacity of iov.  The whole chain is checked before anything is
 * returned.
 *
 * Returns 1 with *elem filled, 0 when nothing is available (also before
 * setup), -EIO when the queue is broken (now or earlier: see
 * vring_dev_error), or -ENOBUFS when the chain is valid but has more than
 * iov_cap segments: then elem->out_num and in_num say how many it needs,
 * elem->head names it, and the chain stays first in line (pop again with a
 * larger array, or vring_dev_skip it).  Cost: O(chain length).
 */
int vring_dev_pop(struct vring_dev *dev, struct iovec *iov, unsigned iov_cap,
		  struct vring_elem *elem);

/*
 * Take the next available chain without looking at it, and store its head
 * in *head: for a chain the device will not process (vring_dev_pop
 * answered -ENOBUFS); the caller gives it back with vring_dev_push(dev,
 * head, 0).  Returns 1, 0 when nothing is available, or -EIO when the
 * queue is broken (the head index is still checked).
 */
int vring_dev_skip(struct vring_dev *dev, uint16_t *head);

/*
 * Give a popped chain back: append (head, len) to the used ring and
 * publish the new used idx (release store; the driver's acquire load of
 * used idx in vring_drv_get_used is its partner).  len is the number of
 * bytes written into the chain's writable buffers, which must all be
 * written before this call.  Returns 0, -EINVAL if head is not in flight
 * (never popped, or pushed already), or -EIO when the queue is broken.
 * Does not notify: ask vring_dev_should_notify after one or several pushes.
 */
int vring_dev_push(struct vring_dev *dev, uint16_t head, uint32_t len);

/*
 * Whether the guest must be notified of the chains pushed since the
 * previous call.  With VIRTIO_RING_F_EVENT_IDX: iff used_event is one of
 * the used indices written since then (vring_event_needed); without: iff
 * the driver leaves VIRTQ_AVAIL_F_NO_INTERRUPT clear.  False when nothing
 * was pushed since the previous call, and on a broken queue.
 */
bool vring_dev_should_notify(struct vring_dev *dev);

/*
 * Ask the driver not to kick: set VIRTQ_USED_F_NO_NOTIFY.  With EVENT_IDX
 * there is nothing to do: avail_event, as vring_dev_enable_notify left it,
 * already asks for one kick only.  An advice; the driver may kick anyway.
 */
void vring_dev_disable_notify(struct vring_dev *dev);

/*
 * Ask the driver to kick on its next new chain (clear NO_NOTIFY, or set
 * avail_event to the next index to pop), then look again at avail idx.
 * Returns true when chains became available meanwhile: the caller must pop
 * them instead of waiting for a kick that may never come.  False on a
 * broken or not set up queue.
 */
bool vring_dev_enable_notify(struct vring_dev *dev);

/* Chains popped (or skipped) and not pushed yet. */
unsigned vring_dev_in_flight(const struct vring_dev *dev);

/* ---- the driver side (the simulated guest) --------------------------- */

/* One buffer of a chain, by guest address. */
struct vring_seg {
	uint64_t addr;
	uint32_t len;
};

struct vring_drv;

/*
 * Create the driver end of a queue of size num at addrs (end ignored) in
 * mem (borrowed; it must outlive the driver), with the features it
 * negotiated.  Zeroes the available and used rings, as the driver must
 * before it enables the queue, and frees every descriptor.  Returns 0 and
 * *out (free with vring_drv_free), -EINVAL for a bad num or a misaligned
 * part, -EFAULT for a part outside mem, or -ENOMEM.
 */
int vring_drv_new(struct vring_mem *mem, unsigned num,
		  const struct vring_addrs *addrs, uint64_t features,
		  struct vring_drv **out);

/* Free the driver; guest memory is left as it is.  NULL does nothing. */
void vring_drv_free(struct vring_drv *drv);

/*
 * Add a chain of out_num device-readable segments followed by in_num
 * device-writable ones (segs[0, out_num + in_num)), one descriptor each.
 * The segments are not checked against memory: a guest may offer anything,
 * and the device must cope.  token comes back from vring_drv_get_used.
 * The chain becomes visible to the device at the next vring_drv_publish.
 *
 * Returns the head index (>= 0), -EINVAL for no segment or more than num,
 * or -ENOSPC when fewer descriptors are free than needed.
 */
int vring_drv_add(struct vring_drv *drv, const struct vring_seg *segs,
		  unsigned out_num, unsigned in_num, void *token);

/*
 * The same through an indirect table the driver writes at guest address
 * table (16 * (out_num + in_num) bytes, owned by the chain until it comes
 * back); the chain takes one descriptor.  Also -EINVAL when
 * VIRTIO_RING_F_INDIRECT_DESC was not negotiated, -EFAULT when the table
 * does not fit in guest memory.
 */
int vring_drv_add_indirect(struct vring_drv *drv, const struct vring_seg *segs,
			   unsigned out_num, unsigned in_num, uint64_t table,
			   void *token);

/*
 * Add a chain built by hand, for fault injection (the simulated guest's
 * broken chains).  n descriptors (1 <= n <= num) are taken from the free
 * list and descs[k] is written to the k-th of them as it is (little-endian,
 * as in guest memory), except that a next field below n is taken as an
 * index into descs and translated to where descs[next] went, so that a
 * chain can loop or skip; a next of n or more is written unchanged.  The
 * head is where descs[0] went.  Indirect tables the descriptors point to
 * are the caller's to write.  Returns the head index, -EINVAL for a bad n,
 * -ENOSPC, or -ENOMEM.  Should the device use the chain anyway, vring_drv_get_used
 * gives its n descriptors back and does not check the length.
 */
int vring_drv_add_raw(struct vring_drv *drv, const struct virtq_desc *descs,
		      unsigned n, void *token);

/*
 * Make the chains added so far visible: store avail idx with release
 * ordering (the device's acquire load in vring_dev_pop is the partner).
 */
void vring_drv_publish(struct vring_drv *drv);

/*
 * Whether the device must be kicked for the chains published since the
 * previous call: with EVENT_IDX iff avail_event is one of the avail indices
 * published since then; without, iff VIRTQ_USED_F_NO_NOTIFY is clear.
 */
bool vring_drv_kick_needed(struct vring_drv *drv);

/*
 * Take the next used element: returns 1 with its token and written length,
 * 0 when there is none, or -EIO when the device wrote nonsense (an id not
 * in flight, a length above the chain's writable bytes, used idx more than
 * num ahead); the element is then left in place.  The chain's descriptors
 * are free again on return.
 */
int vring_drv_get_used(struct vring_drv *drv, void **token, uint32_t *len);

/*
 * Ask the device not to notify: set VIRTQ_AVAIL_F_NO_INTERRUPT.  With
 * EVENT_IDX nothing to do (used_event asks for one notification only).
 */
void vring_drv_disable_cb(struct vring_drv *drv);

/*
 * Ask to be notified of the next used element (clear NO_INTERRUPT, or set
 * used_event to the next used index), then look again at used idx.
 * Returns true when elements were used meanwhile: reap them instead of
 * waiting for a notification that may never come.
 */
bool vring_drv_enable_cb(struct vring_drv *drv);

/* Descriptors not in use by a chain. */
unsigned vring_drv_num_free(const struct vring_drv *drv);

#endif /* VDISK_VRING_H */

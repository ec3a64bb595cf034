/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest memory, the split virtqueue layout and the device end of a queue:
 * what the virtio-blk dataplane uses to take requests from the simulated
 * guest and give them back.  The driver end is in vring-drv.c.  See vring.h
 * for the interface and the limits.
 *
 * Design notes
 *
 * Data structures.  The device keeps, besides the host addresses of the
 * three parts: last_avail, the index of the next available entry to pop;
 * avail_shadow, the last avail idx it read (entries last_avail ..
 * avail_shadow - 1 are known to be there, so popping them needs no further
 * atomic load); used_idx, its own copy of used idx; signalled_used, used idx
 * at the last notification decision; and a bitmap of the heads in flight,
 * which lets push refuse a head that was never popped or is pushed twice
 * (a bug in the device, which must not corrupt the guest's ring).
 *
 * Ordering.  Who writes what: the driver writes descriptors, the avail ring
 * entries, avail flags, avail idx and used_event; the device writes the
 * used elements, used flags, used idx and avail_event.  Plain data
 * (descriptors, ring entries, buffers) is published by a release store of
 * an index and read after an acquire load of it:
 *   driver: descriptors, avail ring[i]  -> release avail idx
 *   device: acquire avail idx -> read them; write buffers, used ring[j]
 *           -> release used idx
 *   driver: acquire used idx -> read used ring[j] and the buffers.
 * Slots are reused safely because the driver cannot add more chains than
 * it has descriptors: it overwrites an avail entry or a descriptor only
 * after it reaped a chain the device pushed after reading them.
 *
 * Notifications need more: each side stores one field and then loads one
 * the other side stores (device: used idx then used_event; driver:
 * used_event then used idx; and the mirror image for kicks with avail idx
 * and avail_event).  Release/acquire do not order a store before a later
 * load, so both the stores and the loads of such a pair are seq_cst: in the
 * single total order of seq_cst operations one side's load comes after the
 * other side's store, so at least one of them sees the other, and no
 * notification is lost.  The device re-stores used idx with seq_cst in
 * vring_dev_should_notify rather than making every push seq_cst: a batch of
 * pushes then pays for one such store.
 *
 * Checks.  A descriptor is copied out of guest memory once and only the
 * copy is looked at, so a guest that changes it meanwhile cannot make a
 * checked value differ from a used one.  Loops need no visited set: a chain
 * in a table of n entries that takes more than n steps has visited some
 * entry twice.
 *
 * Costs.  pop is O(chain length), push and the notification helpers O(1).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compiler.h"
#include "vring.h"
#include "vring-internal.h"

/* ---- guest memory -------------------------------------------------- */

int vring_mem_new(uint64_t size, struct vring_mem **out)
{
	struct vring_mem *mem;
	void *base;
	int fd, ret;

	/* ftruncate takes an off_t, mmap a size_t. */
	if (size == 0 || size > (uint64_t)INT64_MAX || size > SIZE_MAX)
		return -EINVAL;
	mem = calloc(1, sizeof(*mem));
	if (!mem)
		return -ENOMEM;
	fd = memfd_create("vdisk-guest-mem", MFD_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out_free;
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		goto out_close;
	}
	base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, 0);
	if (base == MAP_FAILED) {
		ret = -errno;
		goto out_close;
	}
	mem->base = base;
	mem->size = size;
	mem->fd = fd;
	*out = mem;
	return 0;

out_close:
	close(fd);
out_free:
	free(mem);
	return ret;
}

void vring_mem_free(struct vring_mem *mem)
{
	if (!mem)
		return;
	munmap(mem->base, (size_t)mem->size);
	close(mem->fd);
	free(mem);
}

void *vring_mem_ptr(const struct vring_mem *mem, uint64_t addr, uint64_t len)
{
	/* Written so that nothing overflows: addr + len is never formed. */
	if (addr > mem->size || len > mem->size - addr)
		return NULL;
	return (char *)mem->base + addr;
}

/* ---- layout --------------------------------------------------------- */

bool vring_size_valid(unsigned num)
{
	return num >= 1 && num <= VRING_MAX_SIZE && (num & (num - 1)) == 0;
}

uint64_t vring_desc_bytes(unsigned num)
{
	return 16 * (uint64_t)num;
}

uint64_t vring_avail_bytes(unsigned num)
{
	return 6 + 2 * (uint64_t)num;
}

uint64_t vring_used_bytes(unsigned num)
{
	return 6 + 8 * (uint64_t)num;
}

int vring_layout(unsigned num, uint64_t base, struct vring_addrs *addrs)
{
	/* The whole queue is < 512 KiB, so this bound rules out overflow. */
	const uint64_t room = UINT64_MAX - 16 * (uint64_t)VRING_MAX_SIZE * 2;
	uint64_t avail_end;

	if (!vring_size_valid(num) || base > room)
		return -EINVAL;
	addrs->desc = ROUND_UP(base, VRING_DESC_ALIGN);
	addrs->avail = addrs->desc + vring_desc_bytes(num);
	avail_end = addrs->avail + vring_avail_bytes(num);
	addrs->used = ROUND_UP(avail_end, VRING_USED_ALIGN);
	addrs->end = addrs->used + vring_used_bytes(num);
	return 0;
}

/* ---- the device ------------------------------------------------------- */

const char *vring_error_str(enum vring_error err)
{
	switch (err) {
	case VRING_ERR_NONE:
		return "no error";
	case VRING_ERR_RING_ALIGN:
		return "virtqueue part misaligned";
	case VRING_ERR_RING_ADDR:
		return "virtqueue part outside guest memory";
	case VRING_ERR_AVAIL_IDX:
		return "available index moved more than the queue size";
	case VRING_ERR_DESC_INDEX:
		return "descriptor index out of range";
	case VRING_ERR_DESC_ADDR:
		return "descriptor buffer outside guest memory";
	case VRING_ERR_LOOP:
		return "descriptor chain loops";
	case VRING_ERR_CHAIN_TOO_LONG:
		return "descriptor chain longer than the queue size";
	case VRING_ERR_CHAIN_TOO_BIG:
		return "descriptor chain larger than 4 GiB - 1";
	case VRING_ERR_READ_AFTER_WRITE:
		return "device-readable descriptor after a device-writable one";
	case VRING_ERR_INDIRECT_FEATURE:
		return "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC";
	case VRING_ERR_INDIRECT_NESTED:
		return "indirect descriptor inside an indirect table";
	case VRING_ERR_INDIRECT_NEXT:
		return "indirect descriptor with the NEXT flag";
	case VRING_ERR_INDIRECT_LEN:
		return "indirect table length is 0 or not a multiple of 16";
	case VRING_ERR_INDIRECT_SIZE:
		return "indirect table larger than the queue size";
	case VRING_ERR_HEAD_IN_FLIGHT:
		return "chain head offered again while still in flight";
	}
	return "unknown vring error";
}

/* All fields belong to the thread that uses the device (vring.h). */
struct vring_dev {
	struct vring_mem *mem;
	unsigned num;
	bool ready;                     /* set up and not reset since */
	enum vring_error error;         /* != NONE: broken until reset */
	bool indirect;                  /* VIRTIO_RING_F_INDIRECT_DESC */
	bool event_idx;                 /* VIRTIO_RING_F_EVENT_IDX */
	const uint8_t *desc;            /* host addresses of the parts */
	const uint8_t *avail;
	uint8_t *used;
	uint16_t last_avail;            /* next avail entry to pop */
	uint16_t avail_shadow;          /* avail idx as last read */
	uint16_t used_idx;              /* used idx as last published */
	uint16_t signalled_used;        /* used idx at the last decision */
	unsigned in_flight;             /* bits set in in_flight_map */
	uint64_t in_flight_map[];       /* one bit per head */
};

/* A chain being mapped by vring_dev_pop. */
struct chain_walk {
	struct iovec *iov;
	unsigned cap;
	unsigned out_num, in_num;
	unsigned ndesc;                 /* data descriptors so far */
	uint64_t out_bytes, in_bytes;
};

static bool in_flight_test(const struct vring_dev *dev, uint16_t head)
{
	return dev->in_flight_map[head / 64] & (UINT64_C(1) << (head % 64));
}

static void in_flight_flip(struct vring_dev *dev, uint16_t head)
{
	dev->in_flight_map[head / 64] ^= UINT64_C(1) << (head % 64);
}

/* Break the queue (NEEDS_RESET) for reason err; returns -EIO to pass on. */
static int dev_break(struct vring_dev *dev, enum vring_error err)
{
	if (dev->error == VRING_ERR_NONE)
		dev->error = err;
	return -EIO;
}

int vring_dev_new(struct vring_mem *mem, unsigned num,
		  struct vring_dev **out)
{
	struct vring_dev *dev;
	size_t words;

	if (!vring_size_valid(num))
		return -EINVAL;
	words = DIV_ROUND_UP(num, 64);
	dev = calloc(1, sizeof(*dev) + words * sizeof(uint64_t));
	if (!dev)
		return -ENOMEM;
	dev->mem = mem;
	dev->num = num;
	*out = dev;
	return 0;
}

void vring_dev_free(struct vring_dev *dev)
{
	free(dev);
}

void vring_dev_reset(struct vring_dev *dev)
{
	dev->ready = false;
	dev->error = VRING_ERR_NONE;
	dev->indirect = false;
	dev->event_idx = false;
	dev->desc = dev->avail = NULL;
	dev->used = NULL;
	dev->last_avail = dev->avail_shadow = 0;
	dev->used_idx = dev->signalled_used = 0;
	dev->in_flight = 0;
	memset(dev->in_flight_map, 0,
	       DIV_ROUND_UP(dev->num, 64) * sizeof(uint64_t));
}

int vring_dev_setup(struct vring_dev *dev, const struct vring_addrs *addrs,
		    uint64_t features)
{
	unsigned num = dev->num;

	if (dev->ready || dev->error != VRING_ERR_NONE)
		return -EBUSY;
	if (addrs->desc % VRING_DESC_ALIGN || addrs->avail % VRING_AVAIL_ALIGN ||
	    addrs->used % VRING_USED_ALIGN)
		return dev_break(dev, VRING_ERR_RING_ALIGN);
	dev->desc = vring_mem_ptr(dev->mem, addrs->desc, vring_desc_bytes(num));
	dev->avail = vring_mem_ptr(dev->mem, addrs->avail,
				   vring_avail_bytes(num));
	dev->used = vring_mem_ptr(dev->mem, addrs->used, vring_used_bytes(num));
	if (!dev->desc || !dev->avail || !dev->used)
		return dev_break(dev, VRING_ERR_RING_ADDR);
	dev->indirect = features & (UINT64_C(1) << VIRTIO_RING_F_INDIRECT_DESC);
	dev->event_idx = features & (UINT64_C(1) << VIRTIO_RING_F_EVENT_IDX);
	dev->ready = true;
	return 0;
}

enum vring_error vring_dev_error(const struct vring_dev *dev)
{
	return dev->error;
}

unsigned vring_dev_in_flight(const struct vring_dev *dev)
{
	return dev->in_flight;
}

/*
 * Is an entry available?  Returns 1, 0, or -EIO when the driver moved avail
 * idx further than it can (it may have at most num entries outstanding).
 */
static int dev_avail_pending(struct vring_dev *dev)
{
	uint16_t idx;

	if (dev->last_avail != dev->avail_shadow)
		return 1;
	/* Pairs with the release store in vring_drv_publish. */
	idx = vring_load16(dev->avail + VRING_AVAIL_IDX, memory_order_acquire);
	if ((uint16_t)(idx - dev->last_avail) > dev->num)
		return dev_break(dev, VRING_ERR_AVAIL_IDX);
	dev->avail_shadow = idx;
	return idx != dev->last_avail;
}

/*
 * The head of the next available entry, checked but not taken.  Returns 1,
 * 0 when nothing is available (or the queue is not set up), or -EIO.
 */
static int dev_peek_head(struct vring_dev *dev, uint16_t *head)
{
	uint16_t v;
	int ret;

	if (dev->error != VRING_ERR_NONE)
		return -EIO;
	if (!dev->ready)
		return 0;
	ret = dev_avail_pending(dev);
	if (ret <= 0)
		return ret;
	memcpy(&v, dev->avail + VRING_AVAIL_RING +
		   2 * (size_t)(dev->last_avail % dev->num), sizeof(v));
	v = le16toh(v);
	if (v >= dev->num)
		return dev_break(dev, VRING_ERR_DESC_INDEX);
	/*
	 * A correct driver offers a head again only after it came back: else
	 * two chains in flight would share descriptors.
	 */
	if (in_flight_test(dev, v))
		return dev_break(dev, VRING_ERR_HEAD_IN_FLIGHT);
	*head = v;
	return 1;
}

/* Take the entry dev_peek_head looked at. */
static void dev_take_head(struct vring_dev *dev, uint16_t head)
{
	dev->last_avail++;
	in_flight_flip(dev, head);
	dev->in_flight++;
}

/* Account one data descriptor d (a checked copy) to the chain w. */
static int walk_data(struct vring_dev *dev, struct chain_walk *w,
		     const struct virtq_desc *d)
{
	uint64_t addr = le64toh(d->addr);
	uint32_t len = le32toh(d->len);
	uint16_t flags = le16toh(d->flags);
	void *p = vring_mem_ptr(dev->mem, addr, len);
	unsigned pos = w->out_num + w->in_num;

	if (!p)
		return dev_break(dev, VRING_ERR_DESC_ADDR);
	if (++w->ndesc > dev->num)
		return dev_break(dev, VRING_ERR_CHAIN_TOO_LONG);
	if (w->out_bytes + w->in_bytes + len > UINT32_MAX)
		return dev_break(dev, VRING_ERR_CHAIN_TOO_BIG);
	if (flags & VIRTQ_DESC_F_WRITE) {
		w->in_num++;
		w->in_bytes += len;
	} else {
		if (w->in_num)
			return dev_break(dev, VRING_ERR_READ_AFTER_WRITE);
		w->out_num++;
		w->out_bytes += len;
	}
	/* Past the caller's capacity keep checking, just store nothing. */
	if (pos < w->cap) {
		w->iov[pos].iov_base = p;
		w->iov[pos].iov_len = len;
	}
	return 0;
}

/* Follow the indirect table that d (a checked copy) points to. */
static int walk_indirect(struct vring_dev *dev, struct chain_walk *w,
			 const struct virtq_desc *d)
{
	uint32_t len = le32toh(d->len);
	const uint8_t *table;
	unsigned entries, steps = 0;
	uint16_t i = 0;
	int ret;

	if (!dev->indirect)
		return dev_break(dev, VRING_ERR_INDIRECT_FEATURE);
	/* Its WRITE flag means nothing: the specification says to ignore it. */
	if (le16toh(d->flags) & VIRTQ_DESC_F_NEXT)
		return dev_break(dev, VRING_ERR_INDIRECT_NEXT);
	if (len == 0 || len % sizeof(struct virtq_desc))
		return dev_break(dev, VRING_ERR_INDIRECT_LEN);
	entries = len / sizeof(struct virtq_desc);
	if (entries > dev->num)
		return dev_break(dev, VRING_ERR_INDIRECT_SIZE);
	table = vring_mem_ptr(dev->mem, le64toh(d->addr), len);
	if (!table)
		return dev_break(dev, VRING_ERR_DESC_ADDR);

	for (;;) {
		struct virtq_desc e;

		if (i >= entries)
			return dev_break(dev, VRING_ERR_DESC_INDEX);
		if (++steps > entries)
			return dev_break(dev, VRING_ERR_LOOP);
		memcpy(&e, table + (size_t)i * sizeof(e), sizeof(e));
		if (le16toh(e.flags) & VIRTQ_DESC_F_INDIRECT)
			return dev_break(dev, VRING_ERR_INDIRECT_NESTED);
		ret = walk_data(dev, w, &e);
		if (ret < 0)
			return ret;
		if (!(le16toh(e.flags) & VIRTQ_DESC_F_NEXT))
			return 0;
		i = le16toh(e.next);
	}
}

/*
 * Check and map the whole chain starting at head.  Returns 0, -EIO (the
 * queue broke), or -ENOBUFS (valid, but more than w->cap segments).
 */
static int walk_chain(struct vring_dev *dev, uint16_t head,
		      struct chain_walk *w)
{
	unsigned steps = 0;
	uint16_t i = head;
	int ret;

	for (;;) {
		struct virtq_desc d;
		uint16_t flags;

		if (i >= dev->num)
			return dev_break(dev, VRING_ERR_DESC_INDEX);
		if (++steps > dev->num)
			return dev_break(dev, VRING_ERR_LOOP);
		memcpy(&d, dev->desc + (size_t)i * sizeof(d), sizeof(d));
		flags = le16toh(d.flags);
		if (flags & VIRTQ_DESC_F_INDIRECT) {
			/* It ends the chain: NEXT is refused inside. */
			ret = walk_indirect(dev, w, &d);
			break;
		}
		ret = walk_data(dev, w, &d);
		if (ret < 0 || !(flags & VIRTQ_DESC_F_NEXT))
			break;
		i = le16toh(d.next);
	}
	if (ret == 0 && w->out_num + w->in_num > w->cap)
		ret = -ENOBUFS;
	return ret;
}

int vring_dev_pop(struct vring_dev *dev, struct iovec *iov, unsigned iov_cap,
		  struct vring_elem *elem)
{
	struct chain_walk w = { .iov = iov, .cap = iov_cap };
	uint16_t head;
	int ret;

	ret = dev_peek_head(dev, &head);
	if (ret <= 0)
		return ret;
	ret = walk_chain(dev, head, &w);
	if (ret < 0 && ret != -ENOBUFS)
		return ret;
	elem->head = head;
	elem->out_num = w.out_num;
	elem->in_num = w.in_num;
	elem->out_bytes = (uint32_t)w.out_bytes;
	elem->in_bytes = (uint32_t)w.in_bytes;
	if (ret < 0)
		return ret;
	dev_take_head(dev, head);
	return 1;
}

int vring_dev_skip(struct vring_dev *dev, uint16_t *head)
{
	int ret = dev_peek_head(dev, head);

	if (ret > 0)
		dev_take_head(dev, *head);
	return ret;
}

int vring_dev_push(struct vring_dev *dev, uint16_t head, uint32_t len)
{
	struct virtq_used_elem e = { htole32(head), htole32(len) };
	uint8_t *slot;

	if (dev->error != VRING_ERR_NONE)
		return -EIO;
	if (!dev->ready || head >= dev->num || !in_flight_test(dev, head))
		return -EINVAL;
	slot = dev->used + VRING_USED_RING +
	       sizeof(e) * (size_t)(dev->used_idx % dev->num);
	memcpy(slot, &e, sizeof(e));
	in_flight_flip(dev, head);
	dev->in_flight--;
	dev->used_idx++;
	/* Pairs with the acquire load in vring_drv_get_used. */
	vring_store16(dev->used + VRING_USED_IDX, dev->used_idx,
		      memory_order_release);
	return 0;
}

bool vring_dev_should_notify(struct vring_dev *dev)
{
	uint16_t old = dev->signalled_used, new = dev->used_idx;
	bool need;

	if (!dev->ready || dev->error != VRING_ERR_NONE || old == new)
		return false;
	/*
	 * Store used idx again, seq_cst, before reading what the driver
	 * wants: the partner of the seq_cst store of used_event (or flags)
	 * and load of used idx in vring_drv_enable_cb.  Either the driver
	 * sees this used idx, or this load sees its new used_event.
	 */
	vring_store16(dev->used + VRING_USED_IDX, new, memory_order_seq_cst);
	if (dev->event_idx) {
		uint16_t ev = vring_load16(dev->avail +
					   vring_off_used_event(dev->num),
					   memory_order_seq_cst);
		need = vring_event_needed(ev, new, old);
	} else {
		need = !(vring_load16(dev->avail + VRING_AVAIL_FLAGS,
				      memory_order_seq_cst) &
			 VIRTQ_AVAIL_F_NO_INTERRUPT);
	}
	dev->signalled_used = new;
	return need;
}

void vring_dev_disable_notify(struct vring_dev *dev)
{
	if (!dev->ready || dev->error != VRING_ERR_NONE || dev->event_idx)
		return;
	/* Only an advice: it needs no ordering. */
	vring_store16(dev->used + VRING_USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY,
		      memory_order_relaxed);
}

bool vring_dev_enable_notify(struct vring_dev *dev)
{
	uint16_t idx;

	if (!dev->ready || dev->error != VRING_ERR_NONE)
		return false;
	/*
	 * seq_cst store, then seq_cst load of avail idx: the partner of the
	 * seq_cst store of avail idx and load of avail_event (or flags) in
	 * vring_drv_kick_needed.  Either the driver sees this request for a
	 * kick, or this load sees its new entries.
	 */
	if (dev->event_idx)
		vring_store16(dev->used + vring_off_avail_event(dev->num),
			      dev->last_avail, memory_order_seq_cst);
	else
		vring_store16(dev->used + VRING_USED_FLAGS, 0,
			      memory_order_seq_cst);
	idx = vring_load16(dev->avail + VRING_AVAIL_IDX, memory_order_seq_cst);
	return idx != dev->last_avail;
}

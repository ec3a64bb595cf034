/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The driver end of a split virtqueue: what the simulated guest uses to
 * offer buffers to the device and take them back.  It writes the
 * descriptor table, the available ring and used_event, and reads the used
 * ring.  See vring.h for the interface and vring.c for the ordering rules
 * that both ends follow.
 *
 * Design notes
 *
 * Free descriptors.  The free list lives in a private array, next[], not in
 * the descriptors' next fields: guest memory is shared with the device, and
 * a device (buggy, or a test playing one) must not be able to corrupt the
 * driver's bookkeeping.  A direct chain of k descriptors is the first k
 * entries of the free list, already linked in next[] in the order the
 * chain uses, so adding costs O(k) and giving a chain back O(1): its tail
 * is linked to the old free head.
 *
 * Per head, the driver remembers the chain's token, its descriptor count
 * (0 = not in flight), its tail and its writable byte count, so that a used
 * element naming a head not in flight, or a length larger than the chain
 * could hold, is refused instead of believed.
 *
 * Hand-built chains (vring_drv_add_raw) take their descriptors from the
 * free list like a direct chain, so whatever their next fields say, the
 * driver gives back exactly the descriptors it took.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "vring.h"
#include "vring-internal.h"

struct drv_head {
	void *token;
	uint16_t ndesc;                 /* descriptors held; 0: not in flight */
	uint16_t tail;                  /* last descriptor of the chain */
	uint64_t in_bytes;              /* writable bytes offered */
};

/* All fields belong to the guest's thread (vring.h). */
struct vring_drv {
	struct vring_mem *mem;
	unsigned num;
	bool indirect;                  /* VIRTIO_RING_F_INDIRECT_DESC */
	bool event_idx;                 /* VIRTIO_RING_F_EVENT_IDX */
	uint8_t *desc;                  /* host addresses of the parts */
	uint8_t *avail;
	uint8_t *used;
	unsigned num_free;
	uint16_t free_head;             /* valid when num_free > 0 */
	uint16_t avail_idx;             /* next avail entry to fill */
	uint16_t published;             /* avail idx as last published */
	uint16_t kicked_avail;          /* avail idx at the last decision */
	uint16_t last_used;             /* next used entry to reap */
	uint16_t *next;                 /* free list / chain links */
	struct drv_head *heads;
};

int vring_drv_new(struct vring_mem *mem, unsigned num,
		  const struct vring_addrs *addrs, uint64_t features,
		  struct vring_drv **out)
{
	struct vring_drv *drv;
	int ret;

	if (!vring_size_valid(num) || addrs->desc % VRING_DESC_ALIGN ||
	    addrs->avail % VRING_AVAIL_ALIGN || addrs->used % VRING_USED_ALIGN)
		return -EINVAL;
	drv = calloc(1, sizeof(*drv));
	if (!drv)
		return -ENOMEM;
	drv->desc = vring_mem_ptr(mem, addrs->desc, vring_desc_bytes(num));
	drv->avail = vring_mem_ptr(mem, addrs->avail, vring_avail_bytes(num));
	drv->used = vring_mem_ptr(mem, addrs->used, vring_used_bytes(num));
	if (!drv->desc || !drv->avail || !drv->used) {
		ret = -EFAULT;
		goto out_free_drv;
	}
	drv->next = calloc(num, sizeof(*drv->next));
	if (!drv->next) {
		ret = -ENOMEM;
		goto out_free_drv;
	}
	drv->heads = calloc(num, sizeof(*drv->heads));
	if (!drv->heads) {
		ret = -ENOMEM;
		goto out_free_next;
	}
	drv->mem = mem;
	drv->num = num;
	drv->indirect = features & (UINT64_C(1) << VIRTIO_RING_F_INDIRECT_DESC);
	drv->event_idx = features & (UINT64_C(1) << VIRTIO_RING_F_EVENT_IDX);
	for (unsigned i = 0; i + 1 < num; i++)
		drv->next[i] = (uint16_t)(i + 1);
	drv->num_free = num;
	/*
	 * Plain stores: the device may look at the rings only once the queue
	 * is enabled, which happens after this (and after a hand-over between
	 * threads that orders it).
	 */
	memset(drv->avail, 0, vring_avail_bytes(num));
	memset(drv->used, 0, vring_used_bytes(num));
	*out = drv;
	return 0;

out_free_next:
	free(drv->next);
out_free_drv:
	free(drv);
	return ret;
}

void vring_drv_free(struct vring_drv *drv)
{
	if (!drv)
		return;
	free(drv->heads);
	free(drv->next);
	free(drv);
}

unsigned vring_drv_num_free(const struct vring_drv *drv)
{
	return drv->num_free;
}

/* Write descriptor i of table (host address) in guest byte order. */
static void put_desc(uint8_t *table, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct virtq_desc d = {
		.addr = htole64(addr),
		.len = htole32(len),
		.flags = htole16(flags),
		.next = htole16(next),
	};

	memcpy(table + (size_t)i * sizeof(d), &d, sizeof(d));
}

/*
 * Write the chain segs (total entries, the first out_num readable) into
 * table, starting at index first and going on at links[i] after index i;
 * links == NULL means i + 1 (an indirect table, filled from 0).  Returns the
 * writable bytes.
 */
static uint64_t fill_chain(uint8_t *table, const struct vring_seg *segs,
			   unsigned out_num, unsigned total,
			   const uint16_t *links, uint16_t first)
{
	uint64_t in_bytes = 0;
	uint16_t i = first;

	for (unsigned k = 0; k < total; k++) {
		uint16_t flags = 0, next = 0;

		if (k >= out_num) {
			flags |= VIRTQ_DESC_F_WRITE;
			in_bytes += segs[k].len;
		}
		if (k + 1 < total) {
			flags |= VIRTQ_DESC_F_NEXT;
			next = links ? links[i] : (uint16_t)(i + 1);
		}
		put_desc(table, i, segs[k].addr, segs[k].len, flags, next);
		i = next;
	}
	return in_bytes;
}

/* The first n free descriptors: the first is returned, the last in *tail. */
static uint16_t take_free(struct vring_drv *drv, unsigned n, uint16_t *tail)
{
	uint16_t head = drv->free_head, t = head;

	for (unsigned k = 1; k < n; k++)
		t = drv->next[t];
	drv->num_free -= n;
	if (drv->num_free)
		drv->free_head = drv->next[t];
	*tail = t;
	return head;
}

/* Record the chain at head and put it in the next available entry. */
static int offer(struct vring_drv *drv, uint16_t head, uint16_t tail,
		 unsigned ndesc, uint64_t in_bytes, void *token)
{
	struct drv_head *h = &drv->heads[head];
	uint16_t slot = htole16(head);

	h->token = token;
	h->ndesc = (uint16_t)ndesc;
	h->tail = tail;
	h->in_bytes = in_bytes;
	/* Plain store: published by the release store of avail idx. */
	memcpy(drv->avail + VRING_AVAIL_RING +
	       2 * (size_t)(drv->avail_idx % drv->num), &slot, sizeof(slot));
	drv->avail_idx++;
	return head;
}

/* Common part of the two add functions; table is NULL for a direct one. */
static int drv_add(struct vring_drv *drv, const struct vring_seg *segs,
		   unsigned out_num, unsigned in_num, uint8_t *table,
		   uint64_t table_addr, void *token)
{
	unsigned total = out_num + in_num;      /* <= num, checked */
	unsigned need = table ? 1 : total;
	uint64_t in_bytes;
	uint16_t head, tail;

	if (drv->num_free < need)
		return -ENOSPC;
	/* The links in next[] survive take_free: fill_chain follows them. */
	head = take_free(drv, need, &tail);
	if (table) {
		in_bytes = fill_chain(table, segs, out_num, total, NULL, 0);
		put_desc(drv->desc, head, table_addr,
			 (uint32_t)(total * sizeof(struct virtq_desc)),
			 VIRTQ_DESC_F_INDIRECT, 0);
	} else {
		in_bytes = fill_chain(drv->desc, segs, out_num, total,
				      drv->next, head);
	}
	return offer(drv, head, tail, need, in_bytes, token);
}

int vring_drv_add(struct vring_drv *drv, const struct vring_seg *segs,
		  unsigned out_num, unsigned in_num, void *token)
{
	uint64_t total = (uint64_t)out_num + in_num;

	if (total == 0 || total > drv->num)
		return -EINVAL;
	return drv_add(drv, segs, out_num, in_num, NULL, 0, token);
}

int vring_drv_add_indirect(struct vring_drv *drv, const struct vring_seg *segs,
			   unsigned out_num, unsigned in_num, uint64_t table,
			   void *token)
{
	uint64_t total = (uint64_t)out_num + in_num;
	uint8_t *t;

	if (!drv->indirect || total == 0 || total > drv->num)
		return -EINVAL;
	t = vring_mem_ptr(drv->mem, table, total * sizeof(struct virtq_desc));
	if (!t)
		return -EFAULT;
	return drv_add(drv, segs, out_num, in_num, t, table, token);
}

int vring_drv_add_raw(struct vring_drv *drv, const struct virtq_desc *descs,
		      unsigned n, void *token)
{
	uint16_t *at;                   /* where descs[k] goes */
	uint16_t head, tail, i;

	if (n == 0 || n > drv->num)
		return -EINVAL;
	if (drv->num_free < n)
		return -ENOSPC;
	/* Fault injection is rare: an allocation beats 64 KiB of stack. */
	at = malloc(n * sizeof(*at));
	if (!at)
		return -ENOMEM;
	head = take_free(drv, n, &tail);
	i = head;
	for (unsigned k = 0; k < n; k++) {
		at[k] = i;
		i = drv->next[i];
	}
	for (unsigned k = 0; k < n; k++) {
		struct virtq_desc d = descs[k];
		uint16_t next = le16toh(d.next);

		if (next < n)
			d.next = htole16(at[next]);
		memcpy(drv->desc + (size_t)at[k] * sizeof(d), &d, sizeof(d));
	}
	free(at);
	/* No length check at reap: what it could hold is unknown. */
	return offer(drv, head, tail, n, UINT32_MAX, token);
}

void vring_drv_publish(struct vring_drv *drv)
{
	drv->published = drv->avail_idx;
	/* Pairs with the acquire load in vring.c dev_avail_pending. */
	vring_store16(drv->avail + VRING_AVAIL_IDX, drv->avail_idx,
		      memory_order_release);
}

bool vring_drv_kick_needed(struct vring_drv *drv)
{
	uint16_t old = drv->kicked_avail, new = drv->published;
	bool need;

	if (old == new)
		return false;
	/*
	 * seq_cst store of avail idx, then seq_cst load: the partner of the
	 * seq_cst store of avail_event (or flags) and load of avail idx in
	 * vring_dev_enable_notify.  Either the device sees these entries or
	 * this load sees its request for a kick.
	 */
	vring_store16(drv->avail + VRING_AVAIL_IDX, new, memory_order_seq_cst);
	if (drv->event_idx) {
		uint16_t ev = vring_load16(drv->used +
					   vring_off_avail_event(drv->num),
					   memory_order_seq_cst);
		need = vring_event_needed(ev, new, old);
	} else {
		need = !(vring_load16(drv->used + VRING_USED_FLAGS,
				      memory_order_seq_cst) &
			 VIRTQ_USED_F_NO_NOTIFY);
	}
	drv->kicked_avail = new;
	return need;
}

int vring_drv_get_used(struct vring_drv *drv, void **token, uint32_t *len)
{
	struct virtq_used_elem e;
	struct drv_head *h;
	uint16_t idx;
	uint32_t id;

	/* Pairs with the release store in vring_dev_push. */
	idx = vring_load16(drv->used + VRING_USED_IDX, memory_order_acquire);
	if (idx == drv->last_used)
		return 0;
	if ((uint16_t)(idx - drv->last_used) > drv->num)
		return -EIO;
	memcpy(&e, drv->used + VRING_USED_RING +
		   sizeof(e) * (size_t)(drv->last_used % drv->num), sizeof(e));
	id = le32toh(e.id);
	if (id >= drv->num || drv->heads[id].ndesc == 0)
		return -EIO;
	h = &drv->heads[id];
	if (le32toh(e.len) > h->in_bytes)
		return -EIO;

	/* Give the chain back: its tail links to the old free head. */
	if (drv->num_free)
		drv->next[h->tail] = drv->free_head;
	drv->free_head = (uint16_t)id;
	drv->num_free += h->ndesc;
	h->ndesc = 0;
	drv->last_used++;
	*token = h->token;
	*len = le32toh(e.len);
	return 1;
}

void vring_drv_disable_cb(struct vring_drv *drv)
{
	if (drv->event_idx)
		return;
	/* Only an advice: it needs no ordering. */
	vring_store16(drv->avail + VRING_AVAIL_FLAGS,
		      VIRTQ_AVAIL_F_NO_INTERRUPT, memory_order_relaxed);
}

bool vring_drv_enable_cb(struct vring_drv *drv)
{
	/*
	 * seq_cst store, then seq_cst load of used idx: the partner of the
	 * seq_cst store of used idx and load of used_event (or flags) in
	 * vring_dev_should_notify.
	 */
	if (drv->event_idx)
		vring_store16(drv->avail + vring_off_used_event(drv->num),
			      drv->last_used, memory_order_seq_cst);
	else
		vring_store16(drv->avail + VRING_AVAIL_FLAGS, 0,
			      memory_order_seq_cst);
	return vring_load16(drv->used + VRING_USED_IDX,
			    memory_order_seq_cst) != drv->last_used;
}

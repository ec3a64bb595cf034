/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared by vring.c (guest memory, layout, device) and vring-drv.c (driver):
 * where the fields of the two rings lie, and how the index and event fields
 * are accessed.  Not for use outside the vring module.
 */
#ifndef VDISK_VRING_INTERNAL_H
#define VDISK_VRING_INTERNAL_H

#include <endian.h>
#include <stdatomic.h>
#include <stdint.h>

/* Byte offsets inside the available ring. */
#define VRING_AVAIL_FLAGS 0
#define VRING_AVAIL_IDX   2
#define VRING_AVAIL_RING  4

/* Byte offsets inside the used ring. */
#define VRING_USED_FLAGS  0
#define VRING_USED_IDX    2
#define VRING_USED_RING   4

/* used_event follows the available ring's num entries. */
static inline uint64_t vring_off_used_event(unsigned num)
{
	return VRING_AVAIL_RING + 2 * (uint64_t)num;
}

/* avail_event follows the used ring's num elements. */
static inline uint64_t vring_off_avail_event(unsigned num)
{
	return VRING_USED_RING + 8 * (uint64_t)num;
}

/*
 * The 16-bit fields that the other side reads while this side writes them
 * (flags, idx, used_event, avail_event) are accessed only through these, as
 * C11 atomics on guest memory.  Alignment is guaranteed: the rings are 2-
 * and 4-byte aligned and every such field sits at an even offset.
 * ThreadSanitizer understands these accesses; it would not understand
 * standalone fences, which is why there are none in the module.
 */
static inline uint16_t vring_load16(const void *p, memory_order mo)
{
	return le16toh(atomic_load_explicit((_Atomic uint16_t *)p, mo));
}

static inline void vring_store16(void *p, uint16_t v, memory_order mo)
{
	atomic_store_explicit((_Atomic uint16_t *)p, htole16(v), mo);
}

#endif /* VDISK_VRING_INTERNAL_H */

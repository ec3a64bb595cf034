/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated guest's building blocks (guest-internal.h): virtio-blk
 * request chains in guest memory, the pattern that lets verify prove
 * every byte read back is the last one written, the latency histogram and
 * the broken chains of fault injection.
 *
 * Design notes
 *
 * Pattern.  A sector is 64 little-endian words: GUEST_MAGIC, its byte
 * offset in the image, the write's sequence number, the seed, then 60
 * words of filler, each a mix (splitmix64's finaliser) of the four and its
 * index.  A sector copied from elsewhere fails on its offset, a stale one
 * on its sequence number, a flipped bit anywhere on the comparison; the
 * check regenerates the expected sector and compares all 512 bytes.
 *
 * Broken chains.  vring_drv_* only builds valid chains, so a broken one
 * is added as a valid read and then corrupted in guest memory before it
 * is published (the device reads nothing before that).  The driver keeps
 * its own copy of the chain's links, so it is never confused by what it
 * wrote; the chain simply never comes back.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "compiler.h"
#include "guest-internal.h"

#define GUEST_MAGIC UINT64_C(0x7664736b67756573)    /* "vdskgues" */
#define SECTOR_WORDS (VIRTIO_BLK_SECTOR / 8)
#define PAGE 4096u

void guest_chain_mem_init(struct guest_chain_mem *m, uint64_t meta,
			  uint64_t data, uint32_t data_len)
{
	m->hdr = meta + GUEST_META_HDR;
	m->status = meta + GUEST_META_STATUS;
	m->table = meta + GUEST_META_TABLE;
	m->small = meta + GUEST_META_SMALL;
	m->data = data;
	m->data_len = data_len;
}

unsigned guest_split(uint64_t addr, uint32_t len, unsigned max,
		     struct vring_seg *segs)
{
	uint32_t chunk;
	unsigned n = 0;

	if (len == 0 || max == 0)
		return 0;
	chunk = ROUND_UP(DIV_ROUND_UP(len, max), PAGE);
	while (len > 0) {
		uint32_t l = VDISK_MIN(chunk, len);

		segs[n++] = (struct vring_seg){ addr, l };
		addr += l;
		len -= l;
	}
	return n;
}

int guest_chain_add(struct vring_drv *drv, struct vring_mem *mem,
		    const struct guest_chain_mem *m, const struct guest_io *io,
		    bool indirect, void *token)
{
	struct vring_seg segs[GUEST_MAX_DATA_SEGS + 2];
	struct virtio_blk_outhdr hdr = {
		.type = htole32(io->type),
		.sector = htole64(io->sector),
	};
	void *h = vring_mem_ptr(mem, m->hdr, sizeof(hdr));
	uint8_t *st = vring_mem_ptr(mem, m->status, 1);
	unsigned nd, out, in;

	if (!h || !st)
		return -EFAULT;
	memcpy(h, &hdr, sizeof(hdr));
	*st = GUEST_STATUS_NONE;
	segs[0] = (struct vring_seg){ m->hdr, sizeof(hdr) };
	nd = guest_split(io->data, io->len, GUEST_MAX_DATA_SEGS, segs + 1);
	segs[1 + nd] = (struct vring_seg){ m->status, 1 };
	out = 1 + (io->writable ? 0 : nd);
	in = 1 + (io->writable ? nd : 0);
	if (indirect)
		return vring_drv_add_indirect(drv, segs, out, in, m->table,
					      token);
	return vring_drv_add(drv, segs, out, in, token);
}

uint8_t guest_chain_status(const struct vring_mem *mem,
			   const struct guest_chain_mem *m)
{
	const uint8_t *st = vring_mem_ptr(mem, m->status, 1);

	return st ? *st : GUEST_STATUS_NONE;
}

int guest_put_dwz(struct vring_mem *mem, uint64_t addr,
		  const struct virtio_blk_discard_write_zeroes *segs,
		  unsigned n)
{
	uint8_t *p = vring_mem_ptr(mem, addr, (uint64_t)n * sizeof(*segs));

	if (!p)
		return -EFAULT;
	for (unsigned i = 0; i < n; i++) {
		struct virtio_blk_discard_write_zeroes s = {
			.sector = htole64(segs[i].sector),
			.num_sectors = htole32(segs[i].num_sectors),
			.flags = htole32(segs[i].flags),
		};

		memcpy(p + i * sizeof(s), &s, sizeof(s));
	}
	return 0;
}

/* ---- the pattern ------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* The sector at byte offset off of write seq, as 64 LE words. */
static void pattern_sector(uint64_t *w, uint64_t off, uint64_t seq,
			   uint64_t seed)
{
	uint64_t base = mix64(off ^ mix64(seq ^ mix64(seed)));

	w[0] = htole64(GUEST_MAGIC);
	w[1] = htole64(off);
	w[2] = htole64(seq);
	w[3] = htole64(seed);
	for (unsigned i = 4; i < SECTOR_WORDS; i++)
		w[i] = htole64(mix64(base + i));
}

void guest_pattern_fill(void *buf, uint32_t len, uint64_t offset,
			uint64_t seq, uint64_t seed)
{
	uint64_t w[SECTOR_WORDS];

	for (uint32_t s = 0; s + VIRTIO_BLK_SECTOR <= len;
	     s += VIRTIO_BLK_SECTOR) {
		pattern_sector(w, offset + s, seq, seed);
		memcpy((char *)buf + s, w, sizeof(w));
	}
}

unsigned guest_pattern_check(const void *buf, uint32_t len, uint64_t offset,
			     uint64_t seq, uint64_t seed)
{
	uint64_t w[SECTOR_WORDS];
	unsigned bad = 0;

	for (uint32_t s = 0; s + VIRTIO_BLK_SECTOR <= len;
	     s += VIRTIO_BLK_SECTOR) {
		pattern_sector(w, offset + s, seq, seed);
		bad += memcmp((const char *)buf + s, w, sizeof(w)) != 0;
	}
	return bad;
}

/* ---- latency ---------------------------------------------------------- */

/* Values below 8 have a bucket each; above, 4 per power of two. */
static unsigned lat_index(uint64_t ns)
{
	unsigned msb;

	if (ns < 8)
		return (unsigned)ns;
	msb = 63u - (unsigned)__builtin_clzll(ns);
	return msb * 4 + (unsigned)((ns >> (msb - 2)) & 3);
}

static uint64_t lat_middle(unsigned idx)
{
	unsigned msb = idx / 4, sub = idx % 4;

	if (idx < 8)
		return idx;
	return ((uint64_t)(4 + sub) << (msb - 2)) +
	       (UINT64_C(1) << (msb - 2)) / 2;
}

void guest_lat_add(struct guest_lat *l, uint64_t ns)
{
	l->count++;
	l->sum_ns += ns;
	l->bucket[lat_index(ns)]++;
}

uint64_t guest_lat_percentile(const struct guest_lat *l, unsigned pct)
{
	uint64_t want = DIV_ROUND_UP(l->count * pct, 100), seen = 0;

	if (l->count == 0)
		return 0;
	for (unsigned i = 0; i < GUEST_LAT_BUCKETS; i++) {
		seen += l->bucket[i];
		if (seen >= want && l->bucket[i])
			return lat_middle(i);
	}
	return 0;
}

/* ---- fault injection ------------------------------------------------ */

enum vring_error guest_inject_error(enum guest_inject kind)
{
	switch (kind) {
	case GUEST_INJECT_LOOP:
		return VRING_ERR_LOOP;
	case GUEST_INJECT_TOO_LONG:
		return VRING_ERR_CHAIN_TOO_LONG;
	case GUEST_INJECT_OUT_OF_BOUNDS:
		return VRING_ERR_DESC_ADDR;
	case GUEST_INJECT_NESTED_INDIRECT:
		return VRING_ERR_INDIRECT_NESTED;
	case GUEST_INJECT_BAD_INDIRECT_LEN:
		return VRING_ERR_INDIRECT_LEN;
	case GUEST_INJECT_READ_AFTER_WRITE:
		return VRING_ERR_READ_AFTER_WRITE;
	case GUEST_INJECT_NONE:
		break;
	}
	return VRING_ERR_NONE;
}

bool guest_inject_needs_indirect(enum guest_inject kind)
{
	return kind == GUEST_INJECT_TOO_LONG ||
	       kind == GUEST_INJECT_NESTED_INDIRECT ||
	       kind == GUEST_INJECT_BAD_INDIRECT_LEN;
}

uint64_t guest_inject_scratch_bytes(unsigned num)
{
	return (uint64_t)num * sizeof(struct virtq_desc) + PAGE;
}

static void desc_get(const uint8_t *table, unsigned i, struct virtq_desc *d)
{
	memcpy(d, table + (size_t)i * sizeof(*d), sizeof(*d));
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
}

static void desc_put(uint8_t *table, unsigned i, const struct virtq_desc *d)
{
	struct virtq_desc le = {
		.addr = htole64(d->addr), .len = htole32(d->len),
		.flags = htole16(d->flags), .next = htole16(d->next),
	};

	memcpy(table + (size_t)i * sizeof(le), &le, sizeof(le));
}

/* The index of the last descriptor of the chain at first in table. */
static unsigned chain_last(const uint8_t *table, unsigned first)
{
	struct virtq_desc d;
	unsigned i = first;

	for (;;) {
		desc_get(table, i, &d);
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return i;
		i = d.next;
	}
}

/*
 * TOO_LONG: the chain's second descriptor becomes an indirect table of
 * num valid entries at scratch, one data descriptor more than allowed.
 */
static int inject_too_long(struct vring_drv *drv, struct vring_mem *mem,
			   uint8_t *desc, unsigned num,
			   const struct guest_chain_mem *m, uint64_t scratch,
			   void *token)
{
	struct vring_seg segs[2] = { { m->hdr, 16 }, { m->status, 1 } };
	uint8_t *t = vring_mem_ptr(mem, scratch, 16 * (uint64_t)num);
	struct virtq_desc d;
	int head;

	if (!t)
		return -EFAULT;
	for (unsigned i = 0; i < num; i++) {
		d = (struct virtq_desc){
			.addr = m->hdr, .len = 0,
			.flags = i + 1 < num ? VIRTQ_DESC_F_NEXT : 0,
			.next = (uint16_t)(i + 1 < num ? i + 1 : 0),
		};
		desc_put(t, i, &d);
	}
	head = vring_drv_add(drv, segs, 1, 1, token);
	if (head < 0)
		return head;
	d = (struct virtq_desc){ .addr = scratch,
				 .len = 16 * num,
				 .flags = VIRTQ_DESC_F_INDIRECT };
	desc_put(desc, chain_last(desc, (unsigned)head), &d);
	return head;
}

int guest_inject_add(struct vring_drv *drv, struct vring_mem *mem,
		     const struct vring_addrs *addrs, unsigned num,
		     enum guest_inject kind, bool indirect,
		     const struct guest_chain_mem *m, uint64_t scratch,
		     void *token)
{
	uint8_t *desc = vring_mem_ptr(mem, addrs->desc, vring_desc_bytes(num));
	uint8_t *table = vring_mem_ptr(mem, m->table,
				       GUEST_TABLE_MAX * sizeof(struct virtq_desc));
	struct guest_io io = {
		.type = VIRTIO_BLK_T_IN, .data = m->data,
		.len = VIRTIO_BLK_SECTOR, .writable = true,
	};
	struct guest_chain_mem bad = *m;
	struct virtq_desc d;
	uint8_t *t;
	unsigned last;
	int head;

	if (!desc || !table)
		return -EFAULT;
	if (guest_inject_needs_indirect(kind))
		indirect = true;
	switch (kind) {
	case GUEST_INJECT_TOO_LONG:
		return inject_too_long(drv, mem, desc, num, m, scratch, token);
	case GUEST_INJECT_OUT_OF_BOUNDS:
		/* The data buffer straddles the end of guest memory. */
		io.data = mem->size - VIRTIO_BLK_SECTOR / 2;
		return guest_chain_add(drv, mem, m, &io, indirect, token);
	case GUEST_INJECT_READ_AFTER_WRITE:
		/* Status before data; the data then loses its WRITE flag. */
		bad.status = m->data;
		io.data = m->status;
		io.len = 1;
		break;
	case GUEST_INJECT_NONE:
		return -EINVAL;
	default:
		break;
	}
	head = guest_chain_add(drv, mem, &bad, &io, indirect, token);
	if (head < 0)
		return head;
	t = indirect ? table : desc;
	last = indirect ? 2 : chain_last(desc, (unsigned)head);
	switch (kind) {
	case GUEST_INJECT_LOOP:
		desc_get(t, last, &d);
		d.flags |= VIRTQ_DESC_F_NEXT;
		d.next = indirect ? 0 : (uint16_t)head;
		desc_put(t, last, &d);
		break;
	case GUEST_INJECT_READ_AFTER_WRITE:
		desc_get(t, last, &d);
		d.flags &= (uint16_t)~VIRTQ_DESC_F_WRITE;
		desc_put(t, last, &d);
		break;
	case GUEST_INJECT_NESTED_INDIRECT:
		/* The data entry becomes an indirect table of its own. */
		desc_get(table, 1, &d);
		d.flags = VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT;
		d.addr = scratch;
		d.len = sizeof(d);
		desc_put(table, 1, &d);
		break;
	case GUEST_INJECT_BAD_INDIRECT_LEN:
		desc_get(desc, (unsigned)head, &d);
		d.len += sizeof(d) / 2;
		desc_put(desc, (unsigned)head, &d);
		break;
	default:
		break;
	}
	return head;
}

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
 * Broken chains.  Each is a read of sector 0 with one thing wrong, built
 * descriptor by descriptor and added with vring_drv_add_raw (which takes
 * the descriptors from the driver's free list and translates the next
 * fields); the indirect tables are written here.  Only that one rule is
 * broken, so the device must report exactly the matching vring_error: a
 * loop goes back from the status to the data descriptor (back to the
 * readable header would be a readable after a writable first), and
 * TOO_LONG is a header followed by an indirect table of num valid
 * entries.  The chain never comes back from a correct device.
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

/* A descriptor as it lies in guest memory (little-endian). */
static struct virtq_desc desc_le(uint64_t addr, uint32_t len, uint16_t flags,
				 uint16_t next)
{
	return (struct virtq_desc){
		.addr = htole64(addr), .len = htole32(len),
		.flags = htole16(flags), .next = htole16(next),
	};
}

#define F_N VIRTQ_DESC_F_NEXT
#define F_W VIRTQ_DESC_F_WRITE
#define F_I VIRTQ_DESC_F_INDIRECT

/* Write n descriptors at guest address addr. */
static int put_table(struct vring_mem *mem, uint64_t addr,
		     const struct virtq_desc *d, unsigned n)
{
	void *t = vring_mem_ptr(mem, addr, (uint64_t)n * sizeof(*d));

	if (!t)
		return -EFAULT;
	memcpy(t, d, n * sizeof(*d));
	return 0;
}

/*
 * TOO_LONG's indirect table at scratch: num valid readable entries, so
 * that with the header before it the chain holds num + 1 descriptors.
 */
static int put_long_table(struct vring_mem *mem, uint64_t scratch,
			  unsigned num, uint64_t addr)
{
	uint8_t *t = vring_mem_ptr(mem, scratch,
				   (uint64_t)num * sizeof(struct virtq_desc));

	if (!t)
		return -EFAULT;
	for (unsigned i = 0; i < num; i++) {
		struct virtq_desc d = desc_le(addr, 0, i + 1 < num ? F_N : 0,
					      (uint16_t)(i + 1 < num ? i + 1 : 0));

		memcpy(t + (size_t)i * sizeof(d), &d, sizeof(d));
	}
	return 0;
}

int guest_inject_add(struct vring_drv *drv, struct vring_mem *mem,
		     unsigned num, enum guest_inject kind, bool indirect,
		     const struct guest_chain_mem *m, uint64_t scratch,
		     void *token)
{
	struct virtio_blk_outhdr hdr = { .type = htole32(VIRTIO_BLK_T_IN) };
	void *h = vring_mem_ptr(mem, m->hdr, sizeof(hdr));
	uint8_t *st = vring_mem_ptr(mem, m->status, 1);
	const uint32_t len = VIRTIO_BLK_SECTOR;
	struct virtq_desc d[3];
	unsigned n = 3;
	int ret = 0;

	if (!h || !st)
		return -EFAULT;
	memcpy(h, &hdr, sizeof(hdr));
	*st = GUEST_STATUS_NONE;
	/* A read of sector 0; next fields index d[] (vring_drv_add_raw). */
	d[0] = desc_le(m->hdr, sizeof(hdr), F_N, 1);
	d[1] = desc_le(m->data, len, F_W | F_N, 2);
	d[2] = desc_le(m->status, 1, F_W, 0);
	switch (kind) {
	case GUEST_INJECT_LOOP:
		/* Status back to data: writable after writable, so nothing
		 * but the loop is wrong. */
		d[2] = desc_le(m->status, 1, F_W | F_N, 1);
		break;
	case GUEST_INJECT_OUT_OF_BOUNDS:
		/* The data buffer straddles the end of guest memory. */
		d[1] = desc_le(mem->size - len / 2, len, F_W | F_N, 2);
		break;
	case GUEST_INJECT_READ_AFTER_WRITE:
		d[1] = desc_le(m->status, 1, F_W | F_N, 2);
		d[2] = desc_le(m->data, len, 0, 0);
		break;
	case GUEST_INJECT_TOO_LONG:
		ret = put_long_table(mem, scratch, num, m->hdr);
		d[1] = desc_le(scratch, num * sizeof(d[0]), F_I, 0);
		n = 2;
		indirect = false;
		break;
	case GUEST_INJECT_NESTED_INDIRECT:
		/* The data entry of the table is a table itself. */
		d[1] = desc_le(scratch, sizeof(d[0]), F_I | F_N, 2);
		indirect = true;
		break;
	case GUEST_INJECT_BAD_INDIRECT_LEN:
		indirect = true;
		break;
	default:
		return -EINVAL;
	}
	if (ret < 0)
		return ret;
	if (indirect) {
		/* d[] indices are the table's: it goes there as it is. */
		ret = put_table(mem, m->table, d, n);
		if (ret < 0)
			return ret;
		d[0] = desc_le(m->table, n * sizeof(d[0]), F_I, 0);
		if (kind == GUEST_INJECT_BAD_INDIRECT_LEN)
			d[0].len = htole32(n * sizeof(d[0]) + sizeof(d[0]) / 2);
		n = 1;
	}
	return vring_drv_add_raw(drv, d, n, token);
}

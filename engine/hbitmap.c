/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The hierarchical dirty bitmap: which chunks of an image were written since
 * they were last copied.  The mirror job reads it to find what to copy next;
 * the write path sets it.  See hbitmap.h for the interface.
 *
 * Design notes
 *
 * Data structure.  Level 0 holds one bit per chunk, in 64-bit words.  Each
 * level above holds one bit per word of the level below, so level L + 1 has
 * as many bits as level L has words.  Levels are added until a level fits in
 * one word; that top word summarises the whole bitmap.  A bitmap of n chunks
 * has ceil(log64(n)) levels (at least one), at most 11 for 2^63 chunks, and
 * all levels share one allocation of about n / 63 words.
 *
 * Invariants.
 *  - Bit b of level L + 1 is set exactly when word b of level L is non-zero.
 *  - Bits at or beyond a level's used bit count are zero (in particular
 *    level 0 has no bit for a chunk at or beyond size).
 *  - count is the number of set bits in level 0.
 *
 * Costs.  Setting bits [first, last] sets the bit range [first >> 6k,
 * last >> 6k] at each level k: every word touched below becomes non-zero, so
 * its summary bit is set without looking.  Clearing needs a look: a summary
 * bit may only be cleared when its word became zero, and only the two edge
 * words of each level's range can still hold bits; the words strictly
 * between them were cleared whole.  Both touch O(range / 64) words at
 * level 0, 64 times fewer at each level above, and at least one per level:
 * O(range / 64 + log64 n) in all.
 *
 * Finding the next set bit from position p checks p's word at level 0; if
 * nothing is left in it, it moves up one level to look for a later non-zero
 * word, and so on.  Once a set bit is found at some level, the invariant
 * promises a non-zero word under it, so the way down takes the lowest set
 * bit of one word per level.  That is O(levels) = O(log64 n) words, with no
 * state kept between calls, which is what lets iterators survive changes.
 *
 * Finding the next clear bit scans level 0 word by word: there is no summary
 * of full words, so it costs O(length of the dirty run / 64).  Its callers
 * bound the range (hbitmap_next_dirty_area scans at most max_bytes).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "compiler.h"
#include "hbitmap.h"

#define HB_WORD_SHIFT   6               /* log2 of bits per word */
#define HB_WORD_BITS    64
#define HB_WORD_MASK    (HB_WORD_BITS - 1)
#define HB_MAX_LEVELS   11              /* enough for 2^63 chunks */
#define HB_NONE         UINT64_MAX      /* "no such bit" */

struct hbitmap {
	uint64_t size;                  /* bytes covered */
	unsigned shift;                 /* log2 of bytes per chunk */
	unsigned nlevels;               /* >= 1 */
	uint64_t count;                 /* set bits in level 0 */
	uint64_t nbits[HB_MAX_LEVELS];  /* used bits per level */
	uint64_t *levels[HB_MAX_LEVELS];/* levels[0] is one bit per chunk */
	uint64_t *store;                /* the allocation behind levels[] */
};

/* Mask of bits [first, last] of word number i (bit indices are global). */
static uint64_t word_mask(uint64_t i, uint64_t first, uint64_t last)
{
	uint64_t mask = ~UINT64_C(0);

	if (i == first >> HB_WORD_SHIFT)
		mask &= ~UINT64_C(0) << (first & HB_WORD_MASK);
	if (i == last >> HB_WORD_SHIFT)
		mask &= ~UINT64_C(0) >> (HB_WORD_MASK - (last & HB_WORD_MASK));
	return mask;
}

/* Set bits [first, last] of one level; return how many were clear. */
static uint64_t level_set(uint64_t *words, uint64_t first, uint64_t last)
{
	uint64_t added = 0;

	for (uint64_t i = first >> HB_WORD_SHIFT;
	     i <= last >> HB_WORD_SHIFT; i++) {
		uint64_t mask = word_mask(i, first, last);

		added += (uint64_t)__builtin_popcountll(mask & ~words[i]);
		words[i] |= mask;
	}
	return added;
}

/* Clear bits [first, last] of one level; return how many were set. */
static uint64_t level_clear(uint64_t *words, uint64_t first, uint64_t last)
{
	uint64_t removed = 0;

	for (uint64_t i = first >> HB_WORD_SHIFT;
	     i <= last >> HB_WORD_SHIFT; i++) {
		uint64_t mask = word_mask(i, first, last);

		removed += (uint64_t)__builtin_popcountll(mask & words[i]);
		words[i] &= ~mask;
	}
	return removed;
}

static bool bit_is_set(const struct hbitmap *hb, uint64_t bit)
{
	return (hb->levels[0][bit >> HB_WORD_SHIFT] >>
		(bit & HB_WORD_MASK)) & 1;
}

int hbitmap_new(uint64_t size, unsigned granularity_shift,
		struct hbitmap **out)
{
	struct hbitmap *hb;
	uint64_t bits, words, total = 0;
	unsigned l = 0;

	if (granularity_shift >= 63 || size > INT64_MAX)
		return -EINVAL;

	hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	hb->size = size;
	hb->shift = granularity_shift;

	/* Chunks, the last one possibly partial. */
	bits = (size >> granularity_shift) +
	       ((size & ((UINT64_C(1) << granularity_shift) - 1)) != 0);
	do {
		assert(l < HB_MAX_LEVELS);
		words = bits ? DIV_ROUND_UP(bits, HB_WORD_BITS) : 1;
		hb->nbits[l++] = bits;
		total += words;
		bits = words;
	} while (words > 1);
	hb->nlevels = l;

	hb->store = calloc(total, sizeof(uint64_t));
	if (!hb->store) {
		free(hb);
		return -ENOMEM;
	}
	total = 0;
	for (l = 0; l < hb->nlevels; l++) {
		hb->levels[l] = hb->store + total;
		total += hb->nbits[l] ?
			 DIV_ROUND_UP(hb->nbits[l], HB_WORD_BITS) : 1;
	}

	*out = hb;
	return 0;
}

void hbitmap_free(struct hbitmap *hb)
{
	if (!hb)
		return;
	free(hb->store);
	free(hb);
}

uint64_t hbitmap_size(const struct hbitmap *hb)
{
	return hb->size;
}

unsigned hbitmap_granularity_shift(const struct hbitmap *hb)
{
	return hb->shift;
}

/* Clamp [offset, offset + bytes) to size; false if nothing is left. */
static bool clamp_range(const struct hbitmap *hb, uint64_t offset,
			uint64_t bytes, uint64_t *end)
{
	if (bytes == 0 || offset >= hb->size)
		return false;
	*end = offset + VDISK_MIN(bytes, hb->size - offset);
	return true;
}

void hbitmap_set(struct hbitmap *hb, uint64_t offset, uint64_t bytes)
{
	uint64_t end, first, last;

	if (!clamp_range(hb, offset, bytes, &end))
		return;
	first = offset >> hb->shift;
	last = (end - 1) >> hb->shift;

	hb->count += level_set(hb->levels[0], first, last);
	for (unsigned l = 1; l < hb->nlevels; l++) {
		first >>= HB_WORD_SHIFT;
		last >>= HB_WORD_SHIFT;
		level_set(hb->levels[l], first, last);
	}
}

/*
 * Bits [first, last] of level l were just cleared: clear the summary bits
 * above them whose words became zero.
 */
static void propagate_clear(struct hbitmap *hb, unsigned l, uint64_t first,
			    uint64_t last)
{
	for (; l + 1 < hb->nlevels; l++) {
		const uint64_t *words = hb->levels[l];
		uint64_t pf = first >> HB_WORD_SHIFT;
		uint64_t pl = last >> HB_WORD_SHIFT;

		/* Only the edge words may still hold bits outside the range. */
		if (pf == pl) {
			if (words[pf] != 0)
				return;
		} else {
			if (words[pf] != 0)
				pf++;
			if (words[pl] != 0)
				pl--;
			if (pf > pl)
				return;
		}
		level_clear(hb->levels[l + 1], pf, pl);
		first = pf;
		last = pl;
	}
}

void hbitmap_reset(struct hbitmap *hb, uint64_t offset, uint64_t bytes)
{
	uint64_t gran_mask = (UINT64_C(1) << hb->shift) - 1;
	uint64_t end, first, end_bit;

	if (!clamp_range(hb, offset, bytes, &end))
		return;
	/* Inward: only chunks covered whole; the tail chunk ends at size. */
	first = (offset >> hb->shift) + ((offset & gran_mask) != 0);
	end_bit = end == hb->size ? hb->nbits[0] : end >> hb->shift;
	if (first >= end_bit)
		return;

	hb->count -= level_clear(hb->levels[0], first, end_bit - 1);
	propagate_clear(hb, 0, first, end_bit - 1);
}

void hbitmap_reset_all(struct hbitmap *hb)
{
	for (unsigned l = 0; l < hb->nlevels; l++) {
		uint64_t words = hb->nbits[l] ?
				 DIV_ROUND_UP(hb->nbits[l], HB_WORD_BITS) : 1;

		memset(hb->levels[l], 0, words * sizeof(uint64_t));
	}
	hb->count = 0;
}

bool hbitmap_get(const struct hbitmap *hb, uint64_t offset)
{
	if (offset >= hb->size)
		return false;
	return bit_is_set(hb, offset >> hb->shift);
}

uint64_t hbitmap_count_bits(const struct hbitmap *hb)
{
	return hb->count;
}

uint64_t hbitmap_count(const struct hbitmap *hb)
{
	uint64_t gran = UINT64_C(1) << hb->shift;
	uint64_t tail = hb->size & (gran - 1);
	uint64_t bytes = hb->count << hb->shift;

	/* A dirty partial last chunk only holds its bytes below size. */
	if (tail && bit_is_set(hb, hb->nbits[0] - 1))
		bytes -= gran - tail;
	return bytes;
}

/* The first set bit of level 0 at or after bit, or HB_NONE. */
static uint64_t find_next_set(const struct hbitmap *hb, uint64_t bit)
{
	unsigned l = 0;
	uint64_t w;

	if (bit >= hb->nbits[0])
		return HB_NONE;
	/* Up: find a level where a set bit lies at or after our position. */
	for (;;) {
		uint64_t i = bit >> HB_WORD_SHIFT;

		w = hb->levels[l][i] & (~UINT64_C(0) << (bit & HB_WORD_MASK));
		if (w) {
			bit = (i << HB_WORD_SHIFT) +
			      (uint64_t)__builtin_ctzll(w);
			break;
		}
		if (++l == hb->nlevels)
			return HB_NONE;
		bit = i + 1;    /* the next word of the level below */
		if (bit >= hb->nbits[l])
			return HB_NONE;
	}
	/* Down: each set summary bit has a non-zero word under it. */
	while (l > 0) {
		w = hb->levels[--l][bit];
		assert(w != 0);
		bit = (bit << HB_WORD_SHIFT) + (uint64_t)__builtin_ctzll(w);
	}
	return bit;
}

/* The first clear bit of level 0 in [first, last], or HB_NONE. */
static uint64_t find_next_zero(const struct hbitmap *hb, uint64_t first,
			       uint64_t last)
{
	const uint64_t *words = hb->levels[0];
	uint64_t i = first >> HB_WORD_SHIFT;
	uint64_t w = ~words[i] & (~UINT64_C(0) << (first & HB_WORD_MASK));
	uint64_t bit;

	while (!w) {
		if (++i > last >> HB_WORD_SHIFT)
			return HB_NONE;
		w = ~words[i];
	}
	bit = (i << HB_WORD_SHIFT) + (uint64_t)__builtin_ctzll(w);
	return bit <= last ? bit : HB_NONE;
}

int64_t hbitmap_next_dirty(const struct hbitmap *hb, uint64_t offset,
			   uint64_t bytes)
{
	uint64_t end, bit, pos;

	if (!clamp_range(hb, offset, bytes, &end))
		return -1;
	bit = find_next_set(hb, offset >> hb->shift);
	if (bit == HB_NONE)
		return -1;
	pos = VDISK_MAX(bit << hb->shift, offset);
	return pos < end ? (int64_t)pos : -1;
}

int64_t hbitmap_next_zero(const struct hbitmap *hb, uint64_t offset,
			  uint64_t bytes)
{
	uint64_t end, bit;

	if (!clamp_range(hb, offset, bytes, &end))
		return -1;
	bit = find_next_zero(hb, offset >> hb->shift, (end - 1) >> hb->shift);
	if (bit == HB_NONE)
		return -1;
	return (int64_t)VDISK_MAX(bit << hb->shift, offset);
}

bool hbitmap_next_dirty_area(const struct hbitmap *hb, uint64_t *offset,
			     uint64_t *bytes, uint64_t max_bytes)
{
	uint64_t end, start, limit, bit;
	int64_t dirty;

	if (max_bytes == 0 || !clamp_range(hb, *offset, *bytes, &end))
		return false;
	dirty = hbitmap_next_dirty(hb, *offset, *bytes);
	if (dirty < 0)
		return false;

	start = (uint64_t)dirty;
	limit = start + VDISK_MIN(max_bytes, end - start);
	/* start's chunk is dirty, so a clear chunk found lies after start. */
	bit = find_next_zero(hb, start >> hb->shift, (limit - 1) >> hb->shift);
	if (bit != HB_NONE)
		limit = VDISK_MIN(limit, bit << hb->shift);

	*offset = start;
	*bytes = limit - start;
	return true;
}

void hbitmap_iter_init(struct hbitmap_iter *it, const struct hbitmap *hb,
		       uint64_t offset)
{
	it->hb = hb;
	it->pos = offset >= hb->size ? hb->nbits[0] : offset >> hb->shift;
}

int64_t hbitmap_iter_next(struct hbitmap_iter *it)
{
	const struct hbitmap *hb = it->hb;
	uint64_t bit = find_next_set(hb, it->pos);

	if (bit == HB_NONE) {
		it->pos = hb->nbits[0];
		return -1;
	}
	it->pos = bit + 1;
	return (int64_t)(bit << hb->shift);
}

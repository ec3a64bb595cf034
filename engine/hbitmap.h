/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Threading: an hbitmap is not thread-safe and takes no lock.  It belongs to
 * the AioContext of the image whose writes it tracks; only that context's
 * thread may call any function below on it, iterators included.  Other
 * threads hand their work to that context (loop_bh_schedule) instead.
 *
 * A hierarchical bitmap for dirty tracking over a byte range [0, size).
 *
 * The range is cut into chunks of 2^granularity_shift bytes ("the
 * granularity"); one bit per chunk says whether any byte of the chunk is
 * dirty.  The last chunk may be partial when size is not a multiple of the
 * granularity: it ends at size.  Byte ranges passed in are clamped to
 * [0, size); a range that starts at or beyond size does nothing and finds
 * nothing.
 *
 * Rounding, chosen so that a dirty byte is never forgotten:
 *  - hbitmap_set rounds outward: every chunk that the range touches becomes
 *    dirty.
 *  - hbitmap_reset rounds inward: only chunks that the range covers whole
 *    become clean.  The last, partial chunk counts as covered when the range
 *    reaches size.  A reset of part of a chunk leaves the chunk dirty.
 *  For chunk-aligned ranges (the mirror's copies) both are exact.
 *
 * Queries answer with byte offsets.  A result is the start of a chunk, except
 * that it is raised to the query's own start offset when that offset lies
 * inside a dirty (or, for next_zero, clean) chunk, and a length is cut at
 * size, at the end of the query range and at max_bytes.
 */
#ifndef VDISK_HBITMAP_H
#define VDISK_HBITMAP_H

#include <stdbool.h>
#include <stdint.h>

struct hbitmap;

/*
 * Create a bitmap covering [0, size) bytes, all clean, one bit per
 * 2^granularity_shift bytes.  size may be 0 (nothing can then be set) and
 * need not be a multiple of the granularity.
 *
 * Returns 0 and stores the bitmap in *out (the caller frees it with
 * hbitmap_free), or -EINVAL when granularity_shift >= 63 or size > INT64_MAX
 * (offsets are returned as int64_t), or -ENOMEM.  *out is left untouched on
 * failure.  Memory: about size / 2^granularity_shift / 8 bytes.
 */
int hbitmap_new(uint64_t size, unsigned granularity_shift,
		struct hbitmap **out);

/* Free a bitmap.  hbitmap_free(NULL) does nothing. */
void hbitmap_free(struct hbitmap *hb);

/* The size in bytes and the granularity shift the bitmap was created with. */
uint64_t hbitmap_size(const struct hbitmap *hb);
unsigned hbitmap_granularity_shift(const struct hbitmap *hb);

/*
 * Mark dirty every chunk that [offset, offset + bytes) touches (rounding
 * outward).  bytes == 0 or offset >= size does nothing; the range is
 * clamped to size.  Cost: O(bytes / granularity / 64 + log64(chunks)).
 */
void hbitmap_set(struct hbitmap *hb, uint64_t offset, uint64_t bytes);

/*
 * Mark clean every chunk that [offset, offset + bytes) covers whole
 * (rounding inward; the last partial chunk is covered when the range reaches
 * size).  A chunk only partly in the range stays as it was: resetting after
 * copying part of a chunk must not drop the rest of the chunk's dirtiness.
 * Same clamping and cost as hbitmap_set.
 */
void hbitmap_reset(struct hbitmap *hb, uint64_t offset, uint64_t bytes);

/* Mark every chunk clean.  Cost: O(chunks / 64). */
void hbitmap_reset_all(struct hbitmap *hb);

/* Whether the chunk holding byte offset is dirty; false if offset >= size. */
bool hbitmap_get(const struct hbitmap *hb, uint64_t offset);

/*
 * The number of dirty bytes: dirty chunks times the granularity, except that
 * a dirty partial last chunk counts only its bytes below size.  O(1).
 */
uint64_t hbitmap_count(const struct hbitmap *hb);

/* The number of dirty chunks (set bits).  O(1). */
uint64_t hbitmap_count_bits(const struct hbitmap *hb);

/*
 * The first dirty byte in [offset, offset + bytes) (clamped to size), or -1
 * if there is none.  That is max(offset, start of the first dirty chunk).
 * Cost: O(log64(chunks)).
 */
int64_t hbitmap_next_dirty(const struct hbitmap *hb, uint64_t offset,
			   uint64_t bytes);

/*
 * The first clean byte in [offset, offset + bytes) (clamped to size), or -1
 * if every byte of the range is dirty.  That is max(offset, start of the
 * first clean chunk).  Cost: O(length of the dirty run / granularity / 64).
 */
int64_t hbitmap_next_zero(const struct hbitmap *hb, uint64_t offset,
			  uint64_t bytes);

/*
 * Find the first run of dirty bytes inside [*offset, *offset + *bytes)
 * (clamped to size).  On success return true with *offset set to the first
 * dirty byte (as hbitmap_next_dirty) and *bytes to the length of the run,
 * which ends at the first clean chunk, at the end of the range, at size, or
 * after max_bytes bytes, whichever comes first.  Return false, leaving
 * *offset and *bytes untouched, when the range holds no dirty byte or
 * max_bytes is 0.  Cost: O(log64(chunks) + max_bytes / granularity / 64).
 */
bool hbitmap_next_dirty_area(const struct hbitmap *hb, uint64_t *offset,
			     uint64_t *bytes, uint64_t max_bytes);

/*
 * Iterator over the dirty chunks, in increasing order.  Public so that it can
 * live on the caller's stack; its fields are private.
 *
 * It holds no copy of the bitmap, only a position, so the bitmap may change
 * between calls: a chunk dirtied ahead of the position is found, a chunk
 * dirtied behind it is not (until a new iteration), and a chunk cleaned
 * ahead of it is never returned.  The bitmap must outlive the iterator.
 */
struct hbitmap_iter {
	const struct hbitmap *hb;
	uint64_t pos;           /* next chunk index to look at */
};

/*
 * Start an iteration at the chunk that holds byte offset (so that chunk is
 * the first candidate, even if offset is not at its start).  An offset >=
 * size gives an iteration that is already at its end.
 */
void hbitmap_iter_init(struct hbitmap_iter *it, const struct hbitmap *hb,
		       uint64_t offset);

/*
 * Return the byte offset of the start of the next dirty chunk at or after
 * the iterator's position and move past it, or -1 at the end (and from then
 * on).  Cost: O(log64(chunks)), O(1) when the next dirty chunk shares a
 * 64-chunk word with the previous one.
 */
int64_t hbitmap_iter_next(struct hbitmap_iter *it);

#endif /* VDISK_HBITMAP_H */

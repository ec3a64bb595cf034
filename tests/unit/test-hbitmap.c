/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for the hierarchical dirty bitmap: hand-picked edge cases, then
 * a long run of random operations checked against a naive model (one byte
 * per chunk).  The random run prints its seed; set VDISK_TEST_SEED to replay
 * a failure.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "compiler.h"
#include "hbitmap.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

static struct hbitmap *new_or_fail(uint64_t size, unsigned shift)
{
	struct hbitmap *hb = NULL;

	assert_int_equal(hbitmap_new(size, shift, &hb), 0);
	assert_non_null(hb);
	return hb;
}

/* ---- edge cases ----------------------------------------------------- */

static void test_invalid_arguments(void **state)
{
	static int sentinel;
	struct hbitmap *orig = (struct hbitmap *)&sentinel;
	struct hbitmap *hb = orig;      /* must stay untouched on failure */

	assert_int_equal(hbitmap_new(100, 63, &hb), -EINVAL);
	assert_int_equal(hbitmap_new(100, 64, &hb), -EINVAL);
	assert_int_equal(hbitmap_new(100, 1000, &hb), -EINVAL);
	assert_int_equal(hbitmap_new((uint64_t)INT64_MAX + 1, 9, &hb),
			 -EINVAL);
	assert_int_equal(hbitmap_new(UINT64_MAX, 62, &hb), -EINVAL);
	assert_ptr_equal(hb, orig);

	/* The largest shift and the largest size are fine. */
	hb = new_or_fail(INT64_MAX, 62);
	assert_int_equal(hbitmap_granularity_shift(hb), 62);
	assert_int_equal(hbitmap_size(hb), INT64_MAX);
	hbitmap_set(hb, (uint64_t)INT64_MAX - 1, 1);
	assert_true(hbitmap_get(hb, UINT64_C(1) << 62));
	assert_false(hbitmap_get(hb, 0));
	assert_int_equal(hbitmap_count(hb),
			 (uint64_t)INT64_MAX - (UINT64_C(1) << 62));
	assert_int_equal(hbitmap_next_dirty(hb, 0, UINT64_MAX),
			 INT64_C(1) << 62);
	hbitmap_free(hb);

	hbitmap_free(NULL);
}

#ifdef VDISK_ASAN
/* Let ASan fail an impossible allocation instead of aborting the test. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "allocator_may_return_null=1";
}
#endif

static void test_out_of_memory(void **state)
{
	struct hbitmap *hb = NULL;

	/* 2^63 one-byte chunks would need 2^60 bytes. */
	assert_int_equal(hbitmap_new(INT64_MAX, 0, &hb), -ENOMEM);
	assert_null(hb);
}

static void test_size_zero(void **state)
{
	for (unsigned shift = 0; shift < 20; shift += 9) {
		struct hbitmap *hb = new_or_fail(0, shift);
		struct hbitmap_iter it;
		uint64_t off = 0, bytes = 100;

		hbitmap_set(hb, 0, 10);
		hbitmap_set(hb, 0, UINT64_MAX);
		hbitmap_reset(hb, 0, 10);
		assert_false(hbitmap_get(hb, 0));
		assert_int_equal(hbitmap_count(hb), 0);
		assert_int_equal(hbitmap_count_bits(hb), 0);
		assert_int_equal(hbitmap_next_dirty(hb, 0, 10), -1);
		assert_int_equal(hbitmap_next_zero(hb, 0, 10), -1);
		assert_false(hbitmap_next_dirty_area(hb, &off, &bytes, 100));
		assert_int_equal(off, 0);
		assert_int_equal(bytes, 100);
		hbitmap_iter_init(&it, hb, 0);
		assert_int_equal(hbitmap_iter_next(&it), -1);
		hbitmap_reset_all(hb);
		hbitmap_free(hb);
	}
}

static void test_one_byte(void **state)
{
	for (unsigned shift = 0; shift < 20; shift += 9) {
		struct hbitmap *hb = new_or_fail(1, shift);

		hbitmap_set(hb, 1, 10);         /* beyond the end: nothing */
		assert_int_equal(hbitmap_count(hb), 0);
		hbitmap_set(hb, 0, 1);
		assert_true(hbitmap_get(hb, 0));
		assert_false(hbitmap_get(hb, 1));
		assert_int_equal(hbitmap_count(hb), 1);
		assert_int_equal(hbitmap_count_bits(hb), 1);
		assert_int_equal(hbitmap_next_zero(hb, 0, 1), -1);
		/* The only chunk ends at size, so a 1-byte reset covers it. */
		hbitmap_reset(hb, 0, 1);
		assert_false(hbitmap_get(hb, 0));
		assert_int_equal(hbitmap_count(hb), 0);
		assert_int_equal(hbitmap_next_zero(hb, 0, 1), 0);
		hbitmap_free(hb);
	}
}

static void test_set_rounds_outward(void **state)
{
	struct hbitmap *hb = new_or_fail(16 * 4096, 12);

	hbitmap_set(hb, 4095, 2);
	assert_true(hbitmap_get(hb, 0));
	assert_true(hbitmap_get(hb, 4096 + 4095));
	assert_false(hbitmap_get(hb, 8192));
	assert_int_equal(hbitmap_count(hb), 8192);
	assert_int_equal(hbitmap_count_bits(hb), 2);
	hbitmap_free(hb);
}

static void test_reset_rounds_inward(void **state)
{
	struct hbitmap *hb = new_or_fail(16 * 4096, 12);

	hbitmap_set(hb, 0, 3 * 4096);
	/* [100, 8292) covers only chunk 1 whole. */
	hbitmap_reset(hb, 100, 8192);
	assert_true(hbitmap_get(hb, 0));
	assert_false(hbitmap_get(hb, 4096));
	assert_true(hbitmap_get(hb, 8192));
	assert_int_equal(hbitmap_count(hb), 2 * 4096);
	/* Part of a chunk: nothing changes. */
	hbitmap_reset(hb, 1, 4095);
	hbitmap_reset(hb, 8192, 4095);
	assert_int_equal(hbitmap_count(hb), 2 * 4096);
	/* Aligned: exact. */
	hbitmap_reset(hb, 8192, 4096);
	assert_int_equal(hbitmap_count(hb), 4096);
	assert_true(hbitmap_get(hb, 0));
	hbitmap_free(hb);
}

static void test_last_partial_chunk(void **state)
{
	/* 125 full 8-byte chunks plus a 1-byte one. */
	struct hbitmap *hb = new_or_fail(1001, 3);
	uint64_t off = 0, bytes = UINT64_MAX;

	hbitmap_set(hb, 999, 1);
	assert_true(hbitmap_get(hb, 992));
	assert_int_equal(hbitmap_count(hb), 8);
	hbitmap_set(hb, 1000, 50);
	assert_true(hbitmap_get(hb, 1000));
	assert_false(hbitmap_get(hb, 1001));
	assert_int_equal(hbitmap_count_bits(hb), 2);
	assert_int_equal(hbitmap_count(hb), 9);
	assert_int_equal(hbitmap_next_dirty(hb, 993, UINT64_MAX), 993);
	assert_int_equal(hbitmap_next_dirty(hb, 0, UINT64_MAX), 992);
	assert_int_equal(hbitmap_next_zero(hb, 992, UINT64_MAX), -1);
	assert_true(hbitmap_next_dirty_area(hb, &off, &bytes, UINT64_MAX));
	assert_int_equal(off, 992);
	assert_int_equal(bytes, 9);
	/* A reset that reaches size covers the last chunk; 999 does not. */
	hbitmap_reset(hb, 1000, 1);
	assert_int_equal(hbitmap_count(hb), 8);
	hbitmap_reset(hb, 992, 7);
	assert_int_equal(hbitmap_count(hb), 8);
	hbitmap_reset(hb, 992, UINT64_MAX);
	assert_int_equal(hbitmap_count(hb), 0);
	hbitmap_free(hb);
}

static void test_word_boundaries(void **state)
{
	struct hbitmap *hb = new_or_fail(200, 0);
	struct hbitmap_iter it;

	hbitmap_set(hb, 63, 2);
	hbitmap_iter_init(&it, hb, 0);
	assert_int_equal(hbitmap_iter_next(&it), 63);
	assert_int_equal(hbitmap_iter_next(&it), 64);
	assert_int_equal(hbitmap_iter_next(&it), -1);
	assert_int_equal(hbitmap_next_zero(hb, 63, 10), 65);
	assert_int_equal(hbitmap_next_zero(hb, 0, 200), 0);
	hbitmap_reset(hb, 64, 1);
	assert_int_equal(hbitmap_next_dirty(hb, 64, 100), -1);
	assert_int_equal(hbitmap_next_dirty(hb, 0, 64), 63);
	assert_int_equal(hbitmap_next_dirty(hb, 0, 63), -1);
	hbitmap_set(hb, 127, 2);
	hbitmap_reset(hb, 63, 1);
	assert_int_equal(hbitmap_next_dirty(hb, 0, 200), 127);
	assert_int_equal(hbitmap_next_zero(hb, 127, 73), 129);
	assert_int_equal(hbitmap_count(hb), 2);
	hbitmap_free(hb);

	/* Three levels: cross the boundary between two level-1 words. */
	hb = new_or_fail(64 * 64 * 64 + 1, 0);
	hbitmap_set(hb, 4095, 2);
	hbitmap_iter_init(&it, hb, 0);
	assert_int_equal(hbitmap_iter_next(&it), 4095);
	assert_int_equal(hbitmap_iter_next(&it), 4096);
	assert_int_equal(hbitmap_iter_next(&it), -1);
	hbitmap_reset(hb, 4095, 1);
	assert_int_equal(hbitmap_next_dirty(hb, 0, UINT64_MAX), 4096);
	hbitmap_reset(hb, 4096, 1);
	assert_int_equal(hbitmap_next_dirty(hb, 0, UINT64_MAX), -1);
	assert_int_equal(hbitmap_count(hb), 0);
	/* The very last bit, alone in the top level's second word. */
	hbitmap_set(hb, 64 * 64 * 64, 1);
	assert_int_equal(hbitmap_next_dirty(hb, 0, UINT64_MAX), 64 * 64 * 64);
	hbitmap_iter_init(&it, hb, 5);
	assert_int_equal(hbitmap_iter_next(&it), 64 * 64 * 64);
	assert_int_equal(hbitmap_iter_next(&it), -1);
	hbitmap_free(hb);
}

static void test_large_granularity(void **state)
{
	const uint64_t gran = UINT64_C(1) << 26;
	struct hbitmap *hb = new_or_fail(5 * gran - 3, 26);

	hbitmap_set(hb, 1, 1);
	assert_int_equal(hbitmap_count(hb), gran);
	assert_int_equal(hbitmap_next_dirty(hb, 100, UINT64_MAX), 100);
	assert_int_equal(hbitmap_next_zero(hb, 100, UINT64_MAX), gran);
	hbitmap_reset(hb, 0, gran / 2);
	assert_int_equal(hbitmap_count(hb), gran);
	hbitmap_reset(hb, 0, gran);
	assert_int_equal(hbitmap_count(hb), 0);
	hbitmap_set(hb, 5 * gran - 4, 1);
	assert_int_equal(hbitmap_count(hb), gran - 3);
	assert_int_equal(hbitmap_next_dirty(hb, 0, UINT64_MAX), 4 * gran);
	hbitmap_free(hb);
}

static void test_clamping(void **state)
{
	struct hbitmap *hb = new_or_fail(10 * 512 + 7, 9);

	hbitmap_set(hb, 10 * 512 + 7, 100);     /* at size: nothing */
	assert_int_equal(hbitmap_count(hb), 0);
	hbitmap_set(hb, 10 * 512 + 6, UINT64_MAX);
	assert_int_equal(hbitmap_count_bits(hb), 1);
	assert_int_equal(hbitmap_count(hb), 7);
	hbitmap_set(hb, UINT64_MAX, UINT64_MAX);
	hbitmap_set(hb, 0, UINT64_MAX);
	assert_int_equal(hbitmap_count(hb), 10 * 512 + 7);
	assert_int_equal(hbitmap_next_dirty(hb, 10 * 512 + 7, 1), -1);
	assert_int_equal(hbitmap_next_zero(hb, 0, UINT64_MAX), -1);
	hbitmap_reset(hb, 0, UINT64_MAX);
	assert_int_equal(hbitmap_count(hb), 0);
	assert_int_equal(hbitmap_next_zero(hb, UINT64_MAX, 1), -1);
	hbitmap_free(hb);
}

static void test_next_dirty_area(void **state)
{
	struct hbitmap *hb = new_or_fail(MiB, 9);
	uint64_t off, bytes;

	hbitmap_set(hb, 4 * KiB, 10 * 512);
	hbitmap_set(hb, 16 * KiB + 1, 1);

	off = 0, bytes = MiB;
	assert_true(hbitmap_next_dirty_area(hb, &off, &bytes, 2048));
	assert_int_equal(off, 4096);
	assert_int_equal(bytes, 2048);

	off = 0, bytes = MiB;
	assert_true(hbitmap_next_dirty_area(hb, &off, &bytes, UINT64_MAX));
	assert_int_equal(off, 4096);
	assert_int_equal(bytes, 5120);

	off = 4200, bytes = UINT64_MAX;
	assert_true(hbitmap_next_dirty_area(hb, &off, &bytes, UINT64_MAX));
	assert_int_equal(off, 4200);
	assert_int_equal(bytes, 5016);

	off = 0, bytes = 5000;
	assert_true(hbitmap_next_dirty_area(hb, &off, &bytes, UINT64_MAX));
	assert_int_equal(off, 4096);
	assert_int_equal(bytes, 904);

	off = 4096 + 5120, bytes = MiB;
	assert_true(hbitmap_next_dirty_area(hb, &off, &bytes, MiB));
	assert_int_equal(off, 16 * KiB);
	assert_int_equal(bytes, 512);

	off = 16 * KiB + 512, bytes = MiB;
	assert_false(hbitmap_next_dirty_area(hb, &off, &bytes, MiB));
	assert_int_equal(off, 16 * KiB + 512);
	assert_int_equal(bytes, MiB);

	off = 0, bytes = MiB;
	assert_false(hbitmap_next_dirty_area(hb, &off, &bytes, 0));
	assert_int_equal(off, 0);
	assert_int_equal(bytes, MiB);
	hbitmap_free(hb);
}

static void test_iter_survives_changes(void **state)
{
	struct hbitmap *hb = new_or_fail(5000, 0);
	struct hbitmap_iter it;

	hbitmap_set(hb, 1, 1);
	hbitmap_set(hb, 5, 1);
	hbitmap_set(hb, 70, 1);
	hbitmap_set(hb, 4000, 1);
	hbitmap_iter_init(&it, hb, 0);
	assert_int_equal(hbitmap_iter_next(&it), 1);

	hbitmap_reset(hb, 5, 1);        /* ahead, cleaned: never returned */
	hbitmap_set(hb, 3, 1);          /* ahead, dirtied: found */
	hbitmap_set(hb, 0, 1);          /* behind: not found */
	assert_int_equal(hbitmap_iter_next(&it), 3);
	assert_int_equal(hbitmap_iter_next(&it), 70);

	hbitmap_reset(hb, 4000, 1);     /* empties the whole upper path */
	hbitmap_set(hb, 4999, 1);
	assert_int_equal(hbitmap_iter_next(&it), 4999);
	assert_int_equal(hbitmap_iter_next(&it), -1);
	hbitmap_set(hb, 4998, 1);
	assert_int_equal(hbitmap_iter_next(&it), -1);

	hbitmap_reset_all(hb);
	assert_int_equal(hbitmap_count(hb), 0);
	hbitmap_iter_init(&it, hb, 0);
	assert_int_equal(hbitmap_iter_next(&it), -1);
	hbitmap_free(hb);
}

static void test_iter_start_inside_chunk(void **state)
{
	struct hbitmap *hb = new_or_fail(4 * KiB, 9);
	struct hbitmap_iter it;

	hbitmap_set(hb, 512, 1);
	hbitmap_set(hb, 3 * 512, 1);
	hbitmap_iter_init(&it, hb, 700);
	assert_int_equal(hbitmap_iter_next(&it), 512);
	assert_int_equal(hbitmap_iter_next(&it), 1536);
	assert_int_equal(hbitmap_iter_next(&it), -1);
	hbitmap_iter_init(&it, hb, 4 * KiB);
	assert_int_equal(hbitmap_iter_next(&it), -1);
	hbitmap_free(hb);
}

/* ---- random operations against a model ------------------------------ */

static uint64_t rng_state;

/* xorshift64*: small, and good enough to pick ranges. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

struct model {
	uint64_t size;
	unsigned shift;
	uint64_t gran;
	uint64_t nbits;
	uint8_t *bits;          /* one byte per chunk: 1 = dirty */
	uint64_t *next_set;     /* first dirty chunk >= i, or nbits */
	uint64_t *next_clear;   /* first clean chunk >= i, or nbits */
};

/* Where a failure happened, so that it can be replayed. */
static struct {
	uint64_t seed;
	uint64_t size;
	unsigned shift;
	unsigned op;
} where;

#define EXPECT_EQ(got, want, what) \
	expect_eq((int64_t)(got), (int64_t)(want), (what), __LINE__)

static void expect_eq(int64_t got, int64_t want, const char *what, int line)
{
	if (got == want)
		return;
	print_error("line %d: %s: got %" PRId64 ", want %" PRId64
		    " (seed %" PRIu64 ", size %" PRIu64 ", shift %u, op %u)\n",
		    line, what, got, want, where.seed, where.size, where.shift,
		    where.op);
	fail();
}

static void model_init(struct model *m, uint64_t size, unsigned shift)
{
	m->size = size;
	m->shift = shift;
	m->gran = UINT64_C(1) << shift;
	m->nbits = DIV_ROUND_UP(size, m->gran);
	m->bits = calloc(m->nbits + 1, 1);
	m->next_set = calloc(m->nbits + 1, sizeof(uint64_t));
	m->next_clear = calloc(m->nbits + 1, sizeof(uint64_t));
	assert_non_null(m->bits);
	assert_non_null(m->next_set);
	assert_non_null(m->next_clear);
}

static void model_destroy(struct model *m)
{
	free(m->bits);
	free(m->next_set);
	free(m->next_clear);
}

static uint64_t model_end(const struct model *m, uint64_t off, uint64_t bytes)
{
	return off + VDISK_MIN(bytes, m->size - off);
}

/* Outward: every chunk touched. */
static void model_set(struct model *m, uint64_t off, uint64_t bytes)
{
	uint64_t first, last;

	if (bytes == 0 || off >= m->size)
		return;
	first = off / m->gran;
	last = (model_end(m, off, bytes) - 1) / m->gran;
	memset(m->bits + first, 1, last - first + 1);
}

/* Inward: every chunk covered whole; the last one ends at size. */
static void model_reset(struct model *m, uint64_t off, uint64_t bytes)
{
	uint64_t end, first, end_bit;

	if (bytes == 0 || off >= m->size)
		return;
	end = model_end(m, off, bytes);
	first = DIV_ROUND_UP(off, m->gran);
	end_bit = end == m->size ? m->nbits : end / m->gran;
	if (first < end_bit)
		memset(m->bits + first, 0, end_bit - first);
}

static void model_index(struct model *m)
{
	m->next_set[m->nbits] = m->nbits;
	m->next_clear[m->nbits] = m->nbits;
	for (uint64_t i = m->nbits; i-- > 0;) {
		m->next_set[i] = m->bits[i] ? i : m->next_set[i + 1];
		m->next_clear[i] = m->bits[i] ? m->next_clear[i + 1] : i;
	}
}

/*
 * A random byte range: empty ones, ones inside a chunk, aligned ones, ones
 * that cross or start past the end, and ones that run to UINT64_MAX.
 */
static void random_range(const struct model *m, uint64_t *off, uint64_t *bytes)
{
	uint64_t span = m->size + 2 * m->gran + 1;

	*off = rnd_below(span);
	switch (rnd_below(10)) {
	case 0:
		*bytes = 0;
		break;
	case 1:
	case 2:
		*bytes = rnd_below(3 * m->gran) + 1;
		break;
	case 3:
	case 4:
		*bytes = rnd_below(256 * m->gran) + 1;
		break;
	case 5:
		*bytes = rnd_below(span) + 1;
		break;
	case 6:
		*off = m->size - rnd_below(VDISK_MIN(m->size, 3 * m->gran) + 1);
		*bytes = rnd_below(6 * m->gran) + 1;
		break;
	case 7:
		*bytes = UINT64_MAX - rnd_below(2);
		break;
	default:
		*off = rnd_below(m->nbits + 2) * m->gran;
		*bytes = (rnd_below(130) + 1) * m->gran;
		break;
	}
}

static void check_iteration(const struct hbitmap *hb, const struct model *m,
			    uint64_t start)
{
	struct hbitmap_iter it;
	uint64_t c = m->nbits;

	if (start < m->size)
		c = m->next_set[start >> m->shift];

	hbitmap_iter_init(&it, hb, start);
	for (;;) {
		int64_t got = hbitmap_iter_next(&it);

		if (c == m->nbits) {
			EXPECT_EQ(got, -1, "iteration end");
			return;
		}
		EXPECT_EQ(got, c << m->shift, "iteration");
		c = m->next_set[c + 1];
	}
}

static uint64_t random_max_bytes(const struct model *m)
{
	switch (rnd_below(4)) {
	case 0:
		return 0;
	case 1:
		return UINT64_MAX;
	case 2:
		return (rnd_below(70) + 1) * m->gran;
	default:
		return rnd_below(70 * m->gran) + 1;
	}
}

/* dirty: the model's answer to next_dirty for the same range. */
static void check_dirty_area(const struct hbitmap *hb, const struct model *m,
			     uint64_t off, uint64_t bytes, int64_t dirty)
{
	uint64_t max = random_max_bytes(m);
	uint64_t got_off = off, got_bytes = bytes;
	uint64_t start, limit, clean;
	bool found = hbitmap_next_dirty_area(hb, &got_off, &got_bytes, max);

	if (max == 0 || dirty < 0) {
		EXPECT_EQ(found, false, "dirty_area found");
		EXPECT_EQ(got_off, off, "dirty_area offset untouched");
		EXPECT_EQ(got_bytes, bytes, "dirty_area bytes untouched");
		return;
	}
	start = (uint64_t)dirty;
	limit = start + VDISK_MIN(max, model_end(m, off, bytes) - start);
	clean = m->next_clear[start >> m->shift] << m->shift;
	EXPECT_EQ(found, true, "dirty_area found");
	EXPECT_EQ(got_off, start, "dirty_area offset");
	EXPECT_EQ(got_bytes, VDISK_MIN(limit, clean) - start,
		  "dirty_area bytes");
}

static void check_queries(const struct hbitmap *hb, const struct model *m)
{
	uint64_t off, bytes, end, c;
	int64_t dirty = -1, zero = -1;

	random_range(m, &off, &bytes);
	if (bytes != 0 && off < m->size) {
		end = model_end(m, off, bytes);
		c = m->next_set[off >> m->shift];
		if (c < m->nbits && VDISK_MAX(c << m->shift, off) < end)
			dirty = (int64_t)VDISK_MAX(c << m->shift, off);
		c = m->next_clear[off >> m->shift];
		if (c < m->nbits && (c << m->shift) < end)
			zero = (int64_t)VDISK_MAX(c << m->shift, off);
	}
	EXPECT_EQ(hbitmap_next_dirty(hb, off, bytes), dirty, "next_dirty");
	EXPECT_EQ(hbitmap_next_zero(hb, off, bytes), zero, "next_zero");
	check_dirty_area(hb, m, off, bytes, dirty);
}

static void check_model(const struct hbitmap *hb, struct model *m)
{
	uint64_t bits = 0, bytes = 0;

	model_index(m);
	for (uint64_t i = 0; i < m->nbits; i++) {
		uint64_t start = i << m->shift;
		uint64_t len = VDISK_MIN(m->gran, m->size - start);

		EXPECT_EQ(hbitmap_get(hb, start), m->bits[i], "get start");
		EXPECT_EQ(hbitmap_get(hb, start + len - 1), m->bits[i],
			  "get last byte");
		bits += m->bits[i];
		bytes += m->bits[i] ? len : 0;
	}
	EXPECT_EQ(hbitmap_get(hb, m->size), false, "get size");
	EXPECT_EQ(hbitmap_count_bits(hb), bits, "count_bits");
	EXPECT_EQ(hbitmap_count(hb), bytes, "count");

	check_iteration(hb, m, 0);
	check_iteration(hb, m, rnd_below(m->size + m->gran));
	check_iteration(hb, m, rnd_below(m->size + m->gran));
	for (int i = 0; i < 20; i++)
		check_queries(hb, m);
}

static const struct random_config {
	uint64_t size;
	unsigned shift;
	unsigned ops;
} random_configs[] = {
	{ 0, 0, 1000 },
	{ 1, 0, 3000 },
	{ 1, 16, 3000 },
	{ 63, 0, 5000 },
	{ 64, 0, 5000 },
	{ 65, 0, 5000 },
	{ 1000, 3, 10000 },                     /* 125 chunks */
	{ 64 * 64, 0, 10000 },                  /* exactly two full levels */
	{ 64 * 64 * 512, 9, 10000 },            /* the same at 512 bytes */
	{ 64 * 64 * 512 + 1, 9, 10000 },        /* one more chunk: 3 levels */
	{ 64 * 64 * 512 - 100, 9, 5000 },       /* partial last chunk */
	{ 1234567, 6, 10000 },
	{ 100003, 12, 10000 },
	{ 64 * 64 * 64 * 2, 1, 3000 },          /* exactly three full levels */
	{ 64 * 64 * 64 * 2 + 3, 1, 2000 },      /* four levels */
	{ (UINT64_C(3) << 26) + 5, 26, 5000 },  /* 64 MiB chunks */
	{ UINT64_C(5) << 40, 30, 5000 },        /* 5 TiB in 1 GiB chunks */
};

static void run_random_config(const struct random_config *cfg)
{
	struct hbitmap *hb = new_or_fail(cfg->size, cfg->shift);
	struct model m;

	where.size = cfg->size;
	where.shift = cfg->shift;
	model_init(&m, cfg->size, cfg->shift);
	for (where.op = 0; where.op < cfg->ops; where.op++) {
		uint64_t off, bytes;
		uint64_t kind = rnd_below(100);

		random_range(&m, &off, &bytes);
		if (kind < 50) {
			hbitmap_set(hb, off, bytes);
			model_set(&m, off, bytes);
		} else if (kind < 99) {
			hbitmap_reset(hb, off, bytes);
			model_reset(&m, off, bytes);
		} else {
			hbitmap_reset_all(hb);
			memset(m.bits, 0, m.nbits);
		}
		if (where.op % 100 == 99)
			check_model(hb, &m);
	}
	check_model(hb, &m);
	model_destroy(&m);
	hbitmap_free(hb);
}

static void test_random_against_model(void **state)
{
	const char *env = getenv("VDISK_TEST_SEED");
	unsigned total = 0;

	where.seed = env ? strtoull(env, NULL, 0) : UINT64_C(20240611);
	print_message("test-hbitmap: seed %" PRIu64
		      " (set VDISK_TEST_SEED to replay)\n", where.seed);
	/* xorshift must not start at 0. */
	rng_state = where.seed ^ UINT64_C(0x9e3779b97f4a7c15);
	if (!rng_state)
		rng_state = 1;

	for (size_t i = 0; i < ARRAY_SIZE(random_configs); i++) {
		run_random_config(&random_configs[i]);
		total += random_configs[i].ops;
	}
	assert_true(total >= 100000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_invalid_arguments),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_size_zero),
		cmocka_unit_test(test_one_byte),
		cmocka_unit_test(test_set_rounds_outward),
		cmocka_unit_test(test_reset_rounds_inward),
		cmocka_unit_test(test_last_partial_chunk),
		cmocka_unit_test(test_word_boundaries),
		cmocka_unit_test(test_large_granularity),
		cmocka_unit_test(test_clamping),
		cmocka_unit_test(test_next_dirty_area),
		cmocka_unit_test(test_iter_survives_changes),
		cmocka_unit_test(test_iter_start_inside_chunk),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

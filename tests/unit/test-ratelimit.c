/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for the slice rate limiter.  Time is simulated: every call
 * passes its own "now", so the expected delays are exact.
 *
 * Most tests run at 1,000,000 bytes/s with the default 100 ms slice, which
 * gives a quota of exactly 100,000 bytes per slice.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compiler.h"
#include "ratelimit.h"

#define MS  UINT64_C(1000000)
#define SEC UINT64_C(1000000000)
#define KiB UINT64_C(1024)
#define MiB (UINT64_C(1024) * 1024)

static void init_limited(struct ratelimit *rl, uint64_t speed)
{
	ratelimit_init(rl);
	ratelimit_set_speed(rl, speed, 0);
}

static void test_init_is_unlimited(void **state)
{
	struct ratelimit rl;

	ratelimit_init(&rl);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(ratelimit_calculate_delay(&rl, 0, MiB), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 5, UINT64_MAX), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, UINT64_MAX, 1), 0);
}

static void test_within_quota(void **state)
{
	struct ratelimit rl;

	init_limited(&rl, 1000000);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 40000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 10 * MS, 40000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 20 * MS, 19999), 0);
	/* 99,999 accounted: one byte of quota left. */
	assert_int_equal(ratelimit_calculate_delay(&rl, 30 * MS, 1), 0);
	/* Exactly the quota: the slice is used up. */
	assert_int_equal(ratelimit_calculate_delay(&rl, 40 * MS, 1), 60 * MS);
}

static void test_exceeding_waits_until_slice_end(void **state)
{
	struct ratelimit rl;

	init_limited(&rl, 1000000);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 100000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 25 * MS, 1000),
			 75 * MS);
	/* Asking again does not account anything: same answer. */
	assert_int_equal(ratelimit_calculate_delay(&rl, 25 * MS, 1000),
			 75 * MS);
	assert_int_equal(ratelimit_calculate_delay(&rl, 100 * MS - 1, 1000), 1);
	/* After the wait the same send goes, in a new slice. */
	assert_int_equal(ratelimit_calculate_delay(&rl, 100 * MS, 1000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 100 * MS, 99000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 150 * MS, 1), 50 * MS);
}

static void test_crossing_chunk_stretches_slice(void **state)
{
	struct ratelimit rl;

	init_limited(&rl, 1000000);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 60000), 0);
	/* Quota left, so the whole 60,000 go; 120,000 take 120 ms. */
	assert_int_equal(ratelimit_calculate_delay(&rl, 10 * MS, 60000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 30 * MS, 1), 90 * MS);
	assert_int_equal(ratelimit_calculate_delay(&rl, 120 * MS, 1), 0);
}

static void test_large_chunk(void **state)
{
	struct ratelimit rl;

	init_limited(&rl, 1000000);
	/* 3.5 quotas at once: allowed, and the next send waits 350 ms. */
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 350000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 1), 350 * MS);
	assert_int_equal(ratelimit_calculate_delay(&rl, 200 * MS, 350000),
			 150 * MS);
	assert_int_equal(ratelimit_calculate_delay(&rl, 350 * MS, 350000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 350 * MS, 1), 350 * MS);
}

static void test_idle_time_is_not_saved(void **state)
{
	struct ratelimit rl;

	init_limited(&rl, 1000000);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 100000), 0);
	/* Ten idle seconds buy one slice's quota, no more. */
	assert_int_equal(ratelimit_calculate_delay(&rl, 10 * SEC, 100000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 10 * SEC, 1), 100 * MS);
}

static void test_speed_change(void **state)
{
	struct ratelimit rl;

	init_limited(&rl, 1000000);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 100000), 0);

	/* Slower: the 100,000 already sent now take 200 ms. */
	ratelimit_set_speed(&rl, 500000, 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 50 * MS, 1), 150 * MS);

	/* Faster: quota 200,000, so the slice has room again. */
	ratelimit_set_speed(&rl, 2000000, 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 50 * MS, 99999), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 60 * MS, 1), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 70 * MS, 1), 30 * MS);
}

static void test_unlimited_then_limited(void **state)
{
	struct ratelimit rl;

	init_limited(&rl, 1000000);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 100000), 0);
	ratelimit_set_speed(&rl, 0, 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 1 * MS, MiB), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 1 * MS, MiB), 0);
	/* Limited again: a fresh slice starts at the next send. */
	ratelimit_set_speed(&rl, 1000000, 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 2 * MS, 100000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 3 * MS, 1), 99 * MS);
}

static void test_slice_length(void **state)
{
	struct ratelimit rl;

	ratelimit_init(&rl);
	ratelimit_set_speed(&rl, 1000000, 10 * MS);     /* quota 10,000 */
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 10000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 1 * MS, 1), 9 * MS);
	assert_int_equal(ratelimit_calculate_delay(&rl, 10 * MS, 25000), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 10 * MS, 1), 25 * MS);
}

static void test_tiny_and_huge_speeds(void **state)
{
	struct ratelimit rl;

	/* 1 byte/s: the quota would round to 0; it is 1. */
	init_limited(&rl, 1);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 10), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 1), 10 * SEC);

	/* Rounded up, so the rate is never exceeded: 64e9 / 3 ns. */
	init_limited(&rl, 3);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 64), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 1),
			 UINT64_C(21333333334));

	/* No overflow at the extremes. */
	init_limited(&rl, UINT64_MAX);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, UINT64_MAX), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, 1), SEC);
	init_limited(&rl, 1);
	assert_int_equal(ratelimit_calculate_delay(&rl, 0, UINT64_MAX), 0);
	assert_int_equal(ratelimit_calculate_delay(&rl, 5, 1), UINT64_MAX - 5);
}

/*
 * Send chunk-sized pieces for ten simulated seconds, waiting whenever told
 * to, and return how much went.  At every send, check the bound from
 * ratelimit.h: sent <= speed * now + quota + chunk.
 */
static uint64_t run_for_ten_seconds(uint64_t speed, uint64_t chunk)
{
	struct ratelimit rl;
	uint64_t now = 0, sent = 0;

	init_limited(&rl, speed);
	while (now < 10 * SEC) {
		uint64_t delay = ratelimit_calculate_delay(&rl, now, chunk);

		if (delay) {
			now += delay;
			continue;
		}
		sent += chunk;
		assert_true(sent <= speed * now / SEC + rl.slice_quota + chunk);
	}
	return sent;
}

static void test_long_run_average(void **state)
{
	const uint64_t speed = MiB;
	const uint64_t quota = speed * RATELIMIT_SLICE_NS / SEC;   /* 104,857 */
	uint64_t sent;

	/*
	 * 64 KiB chunks: two go per slice (the second crosses the quota) and
	 * stretch it to 125 ms; 80 such slices fit in 10 s.
	 */
	sent = run_for_ten_seconds(speed, 64 * KiB);
	assert_int_equal(sent, 10 * MiB);
	assert_in_range(sent, 10 * speed - quota, 10 * speed + quota);

	/*
	 * 50,000-byte chunks: three per slice, stretched to 143,051,148 ns;
	 * 70 slices start before 10 s.
	 */
	sent = run_for_ten_seconds(speed, 50000);
	assert_int_equal(sent, 70 * 150000);
	assert_in_range(sent, 10 * speed - quota, 10 * speed + quota);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_is_unlimited),
		cmocka_unit_test(test_within_quota),
		cmocka_unit_test(test_exceeding_waits_until_slice_end),
		cmocka_unit_test(test_crossing_chunk_stretches_slice),
		cmocka_unit_test(test_large_chunk),
		cmocka_unit_test(test_idle_time_is_not_saved),
		cmocka_unit_test(test_speed_change),
		cmocka_unit_test(test_unlimited_then_limited),
		cmocka_unit_test(test_slice_length),
		cmocka_unit_test(test_tiny_and_huge_speeds),
		cmocka_unit_test(test_long_run_average),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

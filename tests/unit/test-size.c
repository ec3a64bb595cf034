/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for size_parse and size_format: every accepted form with its
 * exact value, every rejected form with its exact error, the uint64_t
 * boundaries, and format/parse round trips.
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
#include <string.h>

#include <cmocka.h>

#include "size.h"

#define SENTINEL UINT64_C(0x5a5a5a5a5a5a5a5a)

struct parse_ok {
	const char *s;
	uint64_t value;
};

struct parse_bad {
	const char *s;
	int err;
};

static void test_parse_valid(void **state)
{
	static const struct parse_ok cases[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "4096", 4096 },
		{ "007", 7 },
		{ "010", 10 },
		{ "512B", 512 },
		{ "512b", 512 },
		{ "0K", 0 },
		{ "64K", 64 << 10 },
		{ "64k", 64 << 10 },
		{ "16KB", 16 << 10 },
		{ "16kb", 16 << 10 },
		{ "16KiB", 16 << 10 },
		{ "16kib", 16 << 10 },
		{ "16KIB", 16 << 10 },
		{ "16M", UINT64_C(16) << 20 },
		{ "16MiB", UINT64_C(16) << 20 },
		{ "16MB", UINT64_C(16) << 20 },
		{ "1G", UINT64_C(1) << 30 },
		{ "1GiB", UINT64_C(1) << 30 },
		{ "3g", UINT64_C(3) << 30 },
		{ "2T", UINT64_C(2) << 40 },
		{ "2TiB", UINT64_C(2) << 40 },
		{ "1P", UINT64_C(1) << 50 },
		{ "1pb", UINT64_C(1) << 50 },
		{ "1E", UINT64_C(1) << 60 },
		{ "1EiB", UINT64_C(1) << 60 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = SENTINEL;
		int ret = size_parse(cases[i].s, &v);

		if (ret != 0 || v != cases[i].value)
			print_error("input \"%s\": ret %d value %" PRIu64 "\n",
				    cases[i].s, ret, v);
		assert_int_equal(ret, 0);
		assert_int_equal(v, cases[i].value);
	}
}

static void test_parse_invalid(void **state)
{
	static const struct parse_bad cases[] = {
		{ "", -EINVAL },
		{ "abc", -EINVAL },
		{ "12x", -EINVAL },
		{ "1.5G", -EINVAL },
		{ "K", -EINVAL },
		{ "KiB", -EINVAL },
		{ "B", -EINVAL },
		{ "-1", -EINVAL },
		{ "-0", -EINVAL },
		{ "+1", -EINVAL },
		{ "0x10", -EINVAL },
		{ "0X10", -EINVAL },
		{ " 1", -EINVAL },
		{ "1 ", -EINVAL },
		{ "1\n", -EINVAL },
		{ "1 K", -EINVAL },
		{ "1iB", -EINVAL },
		{ "1Ki", -EINVAL },
		{ "1KBB", -EINVAL },
		{ "1KiBB", -EINVAL },
		{ "1BB", -EINVAL },
		{ "1Bi", -EINVAL },
		{ "1KK", -EINVAL },
		{ "1Z", -EINVAL },
		{ "1Y", -EINVAL },
		{ "1e3", -EINVAL },
		{ "1,024", -EINVAL },
		{ "1_024", -EINVAL },
		/* Syntax is checked first: too big and malformed is -EINVAL. */
		{ "99999999999999999999x", -EINVAL },
		{ "18446744073709551616", -ERANGE },
		{ "99999999999999999999", -ERANGE },
		{ "99999999999999999999G", -ERANGE },
		{ "16E", -ERANGE },
		{ "16EiB", -ERANGE },
		{ "16384P", -ERANGE },
		{ "17179869184G", -ERANGE },
		{ "18014398509481984K", -ERANGE },
		{ "18446744073709551615K", -ERANGE },
		{ "18446744073709551615B0", -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = SENTINEL;
		int ret = size_parse(cases[i].s, &v);

		if (ret != cases[i].err)
			print_error("input \"%s\": ret %d, expected %d\n",
				    cases[i].s, ret, cases[i].err);
		assert_int_equal(ret, cases[i].err);
		/* *out is untouched on every error. */
		assert_int_equal(v, SENTINEL);
	}
}

static void test_parse_null(void **state)
{
	uint64_t v = SENTINEL;

	assert_int_equal(size_parse(NULL, &v), -EINVAL);
	assert_int_equal(v, SENTINEL);
}

static void test_parse_boundaries(void **state)
{
	uint64_t v;

	assert_int_equal(size_parse("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(size_parse("18446744073709551615B", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	assert_int_equal(size_parse("000000000000000000000018446744073709551615",
				    &v), 0);
	assert_int_equal(v, UINT64_MAX);

	v = SENTINEL;
	assert_int_equal(size_parse("18446744073709551616", &v), -ERANGE);
	assert_int_equal(v, SENTINEL);

	assert_int_equal(size_parse("15E", &v), 0);
	assert_int_equal(v, UINT64_C(15) << 60);
	v = SENTINEL;
	assert_int_equal(size_parse("16E", &v), -ERANGE);
	assert_int_equal(v, SENTINEL);

	/* The largest value each unit can express, and one more. */
	assert_int_equal(size_parse("18014398509481983K", &v), 0);
	assert_int_equal(v, (UINT64_MAX >> 10) << 10);
	assert_int_equal(size_parse("17179869183G", &v), 0);
	assert_int_equal(v, (UINT64_MAX >> 30) << 30);
	assert_int_equal(size_parse("17179869184G", &v), -ERANGE);
	assert_int_equal(size_parse("16383P", &v), 0);
	assert_int_equal(v, UINT64_C(16383) << 50);
}

struct format_case {
	uint64_t value;
	const char *s;
};

static void test_format(void **state)
{
	static const struct format_case cases[] = {
		{ 0, "0" },
		{ 1, "1" },
		{ 512, "512" },
		{ 1000, "1000" },
		{ 1023, "1023" },
		{ 1024, "1K" },
		{ 1536, "1536" },
		{ 65536, "64K" },
		{ 1048576, "1M" },
		{ 1048576 + 1024, "1025K" },
		{ UINT64_C(3) << 30, "3G" },
		{ UINT64_C(2) << 40, "2T" },
		{ UINT64_C(1) << 50, "1P" },
		{ UINT64_C(1) << 60, "1E" },
		{ UINT64_C(15) << 60, "15E" },
		{ UINT64_C(1) << 63, "8E" },
		{ UINT64_MAX, "18446744073709551615" },
		{ UINT64_MAX - 1023, "18014398509481983K" },
	};
	char buf[SIZE_FORMAT_MAX];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = size_format(cases[i].value, buf, sizeof(buf));

		assert_string_equal(buf, cases[i].s);
		assert_int_equal(ret, strlen(cases[i].s));
	}
}

static void test_format_nospace(void **state)
{
	char buf[SIZE_FORMAT_MAX];

	/* "64K" needs 4 bytes with its NUL. */
	assert_int_equal(size_format(65536, buf, 4), 3);
	assert_string_equal(buf, "64K");

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(size_format(65536, buf, 3), -ENOSPC);
	assert_string_equal(buf, "");

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(size_format(65536, buf, 0), -ENOSPC);
	assert_int_equal(buf[0], 'x');

	assert_int_equal(size_format(0, NULL, 0), -ENOSPC);

	/* The longest result fits SIZE_FORMAT_MAX exactly. */
	assert_int_equal(size_format(UINT64_MAX, buf, SIZE_FORMAT_MAX), 20);
	assert_int_equal(size_format(UINT64_MAX, buf, SIZE_FORMAT_MAX - 1),
			 -ENOSPC);
}

static void check_round_trip(uint64_t value)
{
	char buf[SIZE_FORMAT_MAX];
	uint64_t back = SENTINEL;

	assert_true(size_format(value, buf, sizeof(buf)) > 0);
	assert_int_equal(size_parse(buf, &back), 0);
	assert_int_equal(back, value);
}

static void test_round_trip(void **state)
{
	uint64_t x = UINT64_C(0x9e3779b97f4a7c15);

	for (unsigned int shift = 0; shift < 64; shift++) {
		check_round_trip(UINT64_C(1) << shift);
		check_round_trip((UINT64_C(1) << shift) - 1);
		check_round_trip(UINT64_C(3) << shift >> 1 << 1);
		check_round_trip(UINT64_MAX << shift);
	}

	/* Pseudo-random values with a random number of low zero bits. */
	for (int i = 0; i < 10000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		check_round_trip(x >> (x % 64) << (x % 64));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_parse_null),
		cmocka_unit_test(test_parse_boundaries),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_nospace),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

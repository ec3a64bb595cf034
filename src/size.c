/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Parsing and formatting of byte sizes.  See size.h for the accepted
 * syntax.
 *
 * The parser is written by hand rather than on strtoull(3), which skips
 * leading whitespace, accepts a sign (negating "-1" into UINT64_MAX) and
 * depends on the locale.  It checks the syntax of the whole string before
 * looking at the value, so a malformed string is -EINVAL even when its
 * digits would also overflow.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "size.h"

/* Unit letters in order: index i means a shift of 10 * (i + 1). */
static const char size_units[] = "KMGTPE";

static bool size_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char size_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/*
 * Parse a suffix (the whole rest of the string).  Returns the shift it
 * stands for, or -EINVAL.
 */
static int size_parse_suffix(const char *p)
{
	const char *unit;
	unsigned int shift;

	if (p[0] == '\0')
		return 0;
	if (size_upper(p[0]) == 'B')
		return p[1] == '\0' ? 0 : -EINVAL;

	unit = strchr(size_units, size_upper(p[0]));
	if (unit == NULL || *unit == '\0')
		return -EINVAL;
	shift = 10 * (unsigned int)(unit - size_units + 1);

	p++;
	if (size_upper(p[0]) == 'I')
		p++;
	else if (p[0] == '\0')
		return (int)shift;
	/* After the unit letter: "B" or "iB" and the end of the string. */
	if (size_upper(p[0]) != 'B' || p[1] != '\0')
		return -EINVAL;
	return (int)shift;
}

int size_parse(const char *s, uint64_t *out)
{
	uint64_t value = 0;
	const char *p;
	int shift;

	if (s == NULL || !size_is_digit(s[0]))
		return -EINVAL;

	for (p = s; size_is_digit(*p); p++)
		;
	shift = size_parse_suffix(p);
	if (shift < 0)
		return shift;

	for (p = s; size_is_digit(*p); p++) {
		unsigned int digit = (unsigned int)(*p - '0');

		if (value > (UINT64_MAX - digit) / 10)
			return -ERANGE;
		value = value * 10 + digit;
	}
	if (value > UINT64_MAX >> shift)
		return -ERANGE;

	*out = value << shift;
	return 0;
}

int size_format(uint64_t bytes, char *buf, size_t len)
{
	char tmp[SIZE_FORMAT_MAX];
	unsigned int i = 0;
	int n;

	/* Largest unit first; 0 would divide by all of them, so stays bare. */
	if (bytes != 0) {
		for (i = sizeof(size_units) - 1; i > 0; i--) {
			if ((bytes & ((UINT64_C(1) << (10 * i)) - 1)) == 0)
				break;
		}
	}

	if (i == 0)
		n = snprintf(tmp, sizeof(tmp), "%" PRIu64, bytes);
	else
		n = snprintf(tmp, sizeof(tmp), "%" PRIu64 "%c",
			     bytes >> (10 * i), size_units[i - 1]);

	if (n < 0 || buf == NULL || (size_t)n >= len) {
		if (buf != NULL && len > 0)
			buf[0] = '\0';
		return -ENOSPC;
	}
	memcpy(buf, tmp, (size_t)n + 1);
	return n;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Byte sizes as people write them on command lines and in config files
 * ("64K", "16MiB", "1G"), parsed into and formatted from uint64_t.
 *
 * Threading: no state; any thread.
 */
#ifndef VDISK_SIZE_H
#define VDISK_SIZE_H

#include <stddef.h>
#include <stdint.h>

/* Big enough for any size_format result, NUL included ("18446744073709551615"). */
#define SIZE_FORMAT_MAX 21

/*
 * Parse s, which must be exactly: one or more decimal digits, then an
 * optional suffix.  The suffixes, in any case, are
 *   B                    bytes (not 512-byte blocks as in dd(1))
 *   K, M, G, T, P, E     2^10, 2^20, 2^30, 2^40, 2^50, 2^60
 * and each unit letter may be followed by "B" or "iB" with the same meaning:
 * "16K", "16KB", "16KiB" and "16kib" are all 16384.  Units are always powers
 * of 1024, never of 1000.  Leading zeros are allowed and do not mean octal.
 *
 * Nothing else is accepted: no whitespace anywhere, no sign, no fraction,
 * no hex.
 *
 * Returns 0 and sets *out; -EINVAL if s is NULL or does not match; -ERANGE
 * if it matches but the value exceeds UINT64_MAX.  On error *out is
 * unchanged.
 */
int size_parse(const char *s, uint64_t *out);

/*
 * Format bytes exactly, with the largest unit that divides it: 65536 is
 * "64K", 1048576 "1M", 1000 "1000", 0 "0".  The result is accepted by
 * size_parse and gives back bytes.
 *
 * Returns the length of the string written to buf (NUL not counted), or
 * -ENOSPC if it needs more than len bytes with its NUL; buf is then the
 * empty string if len > 0.  SIZE_FORMAT_MAX bytes are always enough.
 */
int size_format(uint64_t bytes, char *buf, size_t len);

#endif /* VDISK_SIZE_H */

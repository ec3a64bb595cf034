/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small compiler helpers shared by every engine module.
 */
#ifndef VDISK_COMPILER_H
#define VDISK_COMPILER_H

#include <stddef.h>

/* Marks a function that may yield: call it only from a coroutine. */
#define coroutine_fn

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#define ROUND_UP(n, d)     (DIV_ROUND_UP(n, d) * (d))
#define ROUND_DOWN(n, d)   ((n) / (d) * (d))

#define VDISK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VDISK_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define VDISK_ASAN 1
# endif
# if __has_feature(thread_sanitizer)
#  define VDISK_TSAN 1
# endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(VDISK_ASAN)
# define VDISK_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(VDISK_TSAN)
# define VDISK_TSAN 1
#endif

#endif /* VDISK_COMPILER_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by the unit tests.
 *
 * cmocka's assertions jump back to the test on failure, which is only safe
 * in the thread running the test: helper threads record failures in a
 * counter that the test asserts on afterwards.
 */
#ifndef VDISK_TEST_UTIL_H
#define VDISK_TEST_UTIL_H

#include <ftw.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Longest any test waits for a condition before calling it failed. */
#define TEST_WAIT_LIMIT_NS (20ull * 1000000000ull)

static inline unsigned long long test_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull +
	       (unsigned long long)ts.tv_nsec;
}

/* State letter of a thread of this process from /proc, or 0. */
static inline char thread_state(pid_t tid)
{
	char path[64], buf[256];
	FILE *f;
	char *p;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The state follows the command name, which is in parentheses. */
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/*
 * Wait (bounded) until thread tid sleeps in the kernel.  Used to prove
 * that a wake-up really wakes a blocked poll; correctness never depends on
 * it.  Returns false if the limit passed.
 */
static inline bool wait_thread_sleeping(pid_t tid)
{
	unsigned long long end = test_now_ns() + TEST_WAIT_LIMIT_NS;

	while (test_now_ns() < end) {
		if (thread_state(tid) == 'S')
			return true;
		usleep(100);
	}
	return false;
}

/* ---- a private directory for a test ------------------------------------ */

static inline int test_rm_entry(const char *path, const struct stat *st,
				int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

/*
 * Make a directory /tmp/PREFIX.XXXXXX and put its canonical path in top
 * (size bytes).  Returns 0, or -1 (the directory stays if its path did
 * not fit).
 */
static inline int test_tmpdir_make(const char *prefix, char *top,
				   size_t size)
{
	char tmpl[PATH_MAX], real[PATH_MAX];

	snprintf(tmpl, sizeof(tmpl), "/tmp/%s.XXXXXX", prefix);
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, real) == NULL ||
	    strlen(real) >= size)
		return -1;
	strcpy(top, real);
	return 0;
}

/*
 * top/rel, in one of 4 static buffers used in turn (rename needs two):
 * valid until the fourth call after this one.
 */
static inline const char *test_tmpdir_at(const char *top, const char *rel)
{
	static char buf[4][PATH_MAX];
	static unsigned next;
	char *b = buf[next++ % 4];

	snprintf(b, PATH_MAX, "%s/%s", top, rel);
	return b;
}

/* Remove top and everything below it, following no link. */
static inline void test_tmpdir_remove(const char *top)
{
	nftw(top, test_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif /* VDISK_TEST_UTIL_H */

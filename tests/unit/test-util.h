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

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
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

#endif /* VDISK_TEST_UTIL_H */

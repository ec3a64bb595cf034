/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Threading: a ratelimit is not thread-safe and takes no lock.  It is
 * embedded in one job and used only from that job's context (the thread of
 * the image's AioContext); the job's owner changes the speed there too.
 *
 * A rate limiter in time slices, for jobs that copy data (the mirror).
 *
 * Time is cut into slices, RATELIMIT_SLICE_NS (100 ms) by default.  A slice
 * carries a quota of speed * slice_ns / 1e9 bytes (at least 1).  The caller
 * asks before each send with ratelimit_calculate_delay(rl, now, bytes):
 *
 *  1. Unlimited (speed 0): always 0; nothing is accounted.
 *  2. If now >= the end of the current slice, a new slice starts at now,
 *     empty.  Time spent idle is not saved up: there is no burst after a
 *     pause.
 *  3. If the slice has used its whole quota, the answer is the time left
 *     until the slice ends (slice end - now, > 0), and nothing is
 *     accounted.  The caller waits that long and asks again with the same
 *     bytes; the new slice then lets them go.
 *  4. Otherwise the bytes may go now: they are accounted to the slice and
 *     the answer is 0, however many they are.  So a chunk larger than the
 *     quota is never stalled, and the chunk that crosses the quota is sent
 *     whole.  In exchange the slice is stretched to last as long as its
 *     bytes take at the set speed: its end becomes
 *     start + max(slice_ns, ceil(accounted * 1e9 / speed)),
 *     which pushes the next send out in proportion to the excess.
 *
 * So by any time t after the first send, the bytes let through never exceed
 * speed * t + one quota + the last chunk let through.
 */
#ifndef VDISK_RATELIMIT_H
#define VDISK_RATELIMIT_H

#include <stdint.h>

/* The default slice length: 100 ms. */
#define RATELIMIT_SLICE_NS UINT64_C(100000000)

/*
 * Embedded by its user; its fields are private.  All of them belong to the
 * job's context (see Threading above).
 */
struct ratelimit {
	uint64_t speed;         /* bytes per second; 0 = unlimited */
	uint64_t slice_ns;      /* length of an unstretched slice */
	uint64_t slice_quota;   /* bytes per unstretched slice, >= 1 */
	uint64_t slice_start_ns;
	uint64_t slice_end_ns;  /* the slice is over once now >= this */
	uint64_t dispatched;    /* bytes accounted to the current slice */
};

/* Initialise rl as unlimited, with the default slice length. */
void ratelimit_init(struct ratelimit *rl);

/*
 * Set the speed in bytes per second (0 = unlimited) and the slice length in
 * ns (0 = RATELIMIT_SLICE_NS).  A limited speed keeps the current slice and
 * what it accounted: its end is recomputed under the new speed and slice
 * length by rule 4 above, so lowering the speed right after a burst still
 * delays the next send.  Setting the speed to 0 forgets the slice, so the
 * first send after limiting again starts a fresh one.
 */
void ratelimit_set_speed(struct ratelimit *rl, uint64_t bytes_per_sec,
			 uint64_t slice_ns);

/*
 * Ask whether bytes may be sent at time now_ns (any monotonic clock in ns,
 * passed in so that tests can drive time).  Returns 0 when they may go now,
 * and then they are accounted; otherwise returns the ns to wait before
 * asking again, and accounts nothing.  See the rules at the top.
 */
uint64_t ratelimit_calculate_delay(struct ratelimit *rl, uint64_t now_ns,
				   uint64_t bytes);

#endif /* VDISK_RATELIMIT_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The slice rate limiter that jobs use to keep to their speed.  See
 * ratelimit.h for the rules.
 *
 * Products of a speed or a byte count with a duration in ns overflow 64 bits
 * long before the values are absurd (1 GiB/s times 100 ms already needs 57
 * bits), so they are computed in 128 bits and saturated back.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdbool.h>

#include "compiler.h"
#include "ratelimit.h"

#define NS_PER_SEC UINT64_C(1000000000)

static uint64_t saturate(unsigned __int128 v)
{
	return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The end of the current slice, stretched for what it accounted. */
static uint64_t slice_end(const struct ratelimit *rl)
{
	unsigned __int128 ns = (unsigned __int128)rl->dispatched * NS_PER_SEC;
	uint64_t need = saturate((ns + rl->speed - 1) / rl->speed);

	return add_saturating(rl->slice_start_ns,
			      VDISK_MAX(rl->slice_ns, need));
}

void ratelimit_init(struct ratelimit *rl)
{
	*rl = (struct ratelimit){
		.slice_ns = RATELIMIT_SLICE_NS,
		.slice_quota = 1,
	};
}

void ratelimit_set_speed(struct ratelimit *rl, uint64_t bytes_per_sec,
			 uint64_t slice_ns)
{
	unsigned __int128 quota;

	rl->speed = bytes_per_sec;
	rl->slice_ns = slice_ns ? slice_ns : RATELIMIT_SLICE_NS;
	quota = (unsigned __int128)bytes_per_sec * rl->slice_ns / NS_PER_SEC;
	/* A quota of 0 would hold every send back forever. */
	rl->slice_quota = VDISK_MAX(saturate(quota), 1);

	if (!bytes_per_sec) {
		rl->slice_start_ns = 0;
		rl->slice_end_ns = 0;
		rl->dispatched = 0;
	} else if (rl->slice_end_ns) {
		rl->slice_end_ns = slice_end(rl);
	}
}

uint64_t ratelimit_calculate_delay(struct ratelimit *rl, uint64_t now_ns,
				   uint64_t bytes)
{
	if (!rl->speed)
		return 0;

	if (now_ns >= rl->slice_end_ns) {
		rl->slice_start_ns = now_ns;
		rl->slice_end_ns = add_saturating(now_ns, rl->slice_ns);
		rl->dispatched = 0;
	}
	if (rl->dispatched >= rl->slice_quota)
		return rl->slice_end_ns - now_ns;

	rl->dispatched = add_saturating(rl->dispatched, bytes);
	if (rl->dispatched > rl->slice_quota)
		rl->slice_end_ns = slice_end(rl);
	return 0;
}

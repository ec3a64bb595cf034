/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared by mirror.c (the job: main coroutine, error policy, progress,
 * public API) and mirror-copy.c (copy operations and the source's write
 * hooks).  Not for use outside the mirror module; see mirror.c for the
 * design notes.
 *
 * Threading: as mirror.h.  Every field of struct mirror, struct mirror_op
 * and struct mirror_active belongs to the images' context thread, and
 * nothing here takes a lock; the functions marked coroutine_fn run in
 * coroutines of that context.
 */
#ifndef VDISK_MIRROR_INTERNAL_H
#define VDISK_MIRROR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "block.h"
#include "coroutine.h"
#include "hbitmap.h"
#include "job.h"
#include "loop.h"
#include "mirror.h"
#include "ratelimit.h"

#define MIRROR_BACKOFF_NS    (100ull * 1000 * 1000)
#define MIRROR_IOV_MAX       1024   /* chunks per operation (IOV_MAX) */

/* A write-blocking write between its two hooks. */
struct mirror_active {
	LIST_ENTRY(mirror_active) link;
	struct coroutine *co;          /* the request's coroutine */
	uint64_t off, end;             /* chunk-rounded, marked in flight */
};

struct mirror_op {
	struct mirror *m;
	uint64_t off, bytes;
	unsigned nchunks;
	struct iovec *iov;             /* nchunks entries, after chunk[] */
	unsigned chunk[];              /* indices into m->buf */
};

struct mirror {
	struct job job;
	/*
	 * The last data extent the source reported: operations inside it
	 * skip the block-status call (a thread-pool round trip each).  Only
	 * data is remembered, never a hole: if the area became a hole since,
	 * copying it as data still gives zeroes, which the zero check turns
	 * into a hole; a hole that became data must never be skipped.
	 */
	uint64_t data_start, data_end;
	struct blk_image *src, *target;
	struct mirror_opts o;
	const struct mirror_ops *ops;
	void *opaque;
	uint64_t size;
	struct hbitmap *dirty, *in_flight;
	uint8_t *buf;
	unsigned nchunks, nfree;
	unsigned *free_list;
	uint64_t max_op, align;
	struct ratelimit rl;

	struct coroutine *co;          /* main; NULL once it ended */
	bool main_wait;
	struct co_queue inflight_waiters;
	unsigned ops_in_flight;
	uint64_t bytes_in_flight;
	unsigned hooks_busy;           /* write hooks that may yield */
	LIST_HEAD(, mirror_active) active;
	uint64_t cursor;

	bool cancel_now;               /* stop without a final sync */
	bool final_sync;               /* completing (or cancel after ready) */
	bool final_cancel;             /* ... ending in cancelled */
	bool no_pivot;
	bool ever_ready, consistent, pivoted;
	bool drain_paused;
	uint64_t backoff_until;        /* ignore policy: no copy before */
	int fail_err;                  /* fail the job with this */
	enum mirror_side err_side;

	uint64_t done;
	uint64_t tp_start, tp_bytes, throughput;

	struct blk_write_notifier wn;
	struct blk_drain_notifier dn;
	bool attached;
	struct loop_bh finished_bh;
};

/* ---- mirror.c ------------------------------------------------------------ */

/* Wake the main coroutine if it waits (mirror.c's mirror_wait). */
void mirror_kick(struct mirror *m);

/* Count bytes that reached the target, for progress and throughput. */
void mirror_account(struct mirror *m, uint64_t bytes);

/*
 * Record an error of side and apply its policy (fail, pause, or back off),
 * then kick the main coroutine.  The caller has dirtied the area again.
 */
void mirror_error(struct mirror *m, enum mirror_side side, int err);

/* ---- mirror-copy.c ------------------------------------------------------- */

/*
 * Start one copy of the next dirty area if it can start now.  Returns
 * true if it did, false if the main coroutine must wait: for a kick
 * (nothing to do, all of it in flight, not enough free chunks) or, if
 * *delay is set, that many ns (the rate limit, only when limit; or out of
 * memory).  Called by the main coroutine only.
 */
bool mirror_start_op(struct mirror *m, bool limit, uint64_t *delay);

/*
 * The source's write notifier (block.h struct blk_write_notifier); opaque
 * is the mirror.  before_write marks a write-blocking write's chunks in
 * flight (waiting for copies over them), after_write dirties the write or
 * writes it through to the target, then unmarks.  Write-blocking writes
 * count in m->hooks_busy from one to the other.
 */
int coroutine_fn mirror_before_write(void *opaque, uint64_t off,
				     uint64_t bytes);
void coroutine_fn mirror_after_write(void *opaque, enum blk_op op,
				     uint64_t off, uint64_t bytes,
				     const struct iovec *iov, int iovcnt,
				     unsigned flags, ssize_t ret);

#endif /* VDISK_MIRROR_INTERNAL_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mirror job: copy an image in use (the source) to another image (the
 * target), keep the copy current while the source is written, and on
 * completion hand over to the caller so it can switch to the target.
 *
 * The source's writes are tracked with write notifiers (block.h) into a
 * dirty bitmap of `granularity`; copy operations take the dirty areas,
 * clear their bits and copy them through a buffer of `buf_size` split into
 * granularity-sized chunks.  See mirror.c for the rules that keep an older
 * copy from landing after a newer write.
 *
 * Threading: the source and the target belong to one context; every
 * function here runs in its thread, outside a coroutine.  The job itself
 * runs in coroutines of that context.  ops->pivot runs in a coroutine,
 * ops->finished in a one-shot bottom half outside any coroutine.
 */
#ifndef VDISK_MIRROR_H
#define VDISK_MIRROR_H

#include <stdbool.h>
#include <stdint.h>

#include "block.h"
#include "compiler.h"
#include "job.h"

#define MIRROR_GRANULARITY_MIN   (4ull << 10)
#define MIRROR_GRANULARITY_MAX   (64ull << 20)
#define MIRROR_GRANULARITY_DEF   (64ull << 10)
#define MIRROR_BUF_SIZE_DEF      (16ull << 20)
#define MIRROR_MAX_OPS           16
#define MIRROR_MAX_OP_BYTES      (1ull << 20)  /* raised to granularity */

enum mirror_sync {
	MIRROR_SYNC_FULL,              /* everything allocated in the source */
	MIRROR_SYNC_NONE,              /* only writes from now on */
};

enum mirror_copy_mode {
	MIRROR_COPY_BACKGROUND,
	MIRROR_COPY_WRITE_BLOCKING,
};

enum mirror_on_error {
	MIRROR_ERROR_REPORT,           /* the job fails */
	MIRROR_ERROR_STOP,             /* the job pauses with the error */
	MIRROR_ERROR_IGNORE,           /* the area stays dirty; retried */
};

enum mirror_side {
	MIRROR_SIDE_NONE,
	MIRROR_SIDE_SOURCE,
	MIRROR_SIDE_TARGET,
};

struct mirror_opts {
	enum mirror_sync sync;
	uint64_t granularity;          /* 0: default (see mirror_start) */
	uint64_t buf_size;             /* 0: MIRROR_BUF_SIZE_DEF */
	uint64_t speed;                /* bytes/s, 0 = unlimited */
	enum mirror_copy_mode copy_mode;
	enum mirror_on_error on_source_error, on_target_error;
	/*
	 * The target's cluster or block size (0 or 1: none).  A copy is
	 * rounded out to it when it is larger than the granularity.
	 */
	uint64_t target_cluster;
	/* The target reads as zeroes (freshly created): holes need no copy. */
	bool target_is_zero;
};

struct mirror_ops {
	/*
	 * Called once at completion without no_pivot, while the source is
	 * drained and the target holds all of it, flushed.  Switch users
	 * to the target (block.h blk_set_redirect helps).  0, or -errno to
	 * fail the job without switching.  May be NULL (no switch).
	 */
	int coroutine_fn (*pivot)(void *opaque);
	/*
	 * Called once when the job reaches a final state, after it let go of
	 * both images (notifiers removed, size unlocked), unless mirror_free
	 * came first.  May call mirror_free.  May be NULL.
	 */
	void (*finished)(void *opaque);
};

struct mirror_status {
	uint64_t id;
	enum job_state state;
	struct mirror_opts opts;       /* with the defaults filled in */
	bool consistent;               /* target is a whole copy of the
					* source at some moment */
	bool ever_ready, user_paused, drained, pivoted, no_pivot;
	uint64_t bytes_done;           /* copied so far */
	uint64_t bytes_dirty;          /* to copy (dirty bitmap) */
	uint64_t bytes_in_flight;      /* being copied */
	uint64_t bytes_total;          /* done + dirty + in flight */
	uint64_t throughput;           /* bytes/s over the last second */
	uint64_t elapsed_ns;
	unsigned ops_in_flight;
	int error;                     /* last error, -errno, or 0 */
	enum mirror_side error_side;
};

struct mirror;

/*
 * Start mirroring src to target.  Defaults: granularity
 * MIRROR_GRANULARITY_DEF or target_cluster if larger (up to the maximum);
 * buf_size MIRROR_BUF_SIZE_DEF, raised to the granularity.  -EINVAL for a
 * granularity that is no power of two in [MIN, MAX], a buf_size that is not
 * a multiple of it or smaller than target_cluster, a target_cluster that
 * is no power of two or above MIRROR_GRANULARITY_MAX (or above 1024
 * granules), a bad enum, a target smaller than the source or the source
 * itself; -EBUSY if src already has a mirror; -ENOMEM.  Both images must
 * belong to the caller's context (block.h offers no way to check it).
 * From here on the source's size is locked (block.h blk_size_lock).  ops
 * (may be NULL) and opaque are borrowed until finished has run.
 */
int mirror_start(struct blk_image *src, struct blk_image *target,
		 const struct mirror_opts *o, const struct mirror_ops *ops,
		 void *opaque, struct mirror **out);

/*
 * Complete a ready job (also one paused only by drains since it was
 * ready): -EBUSY if it has not been ready yet or is paused by a user (or
 * stopped by an error), -EINVAL if it is completing, cancelled or over.
 */
int mirror_complete(struct mirror *m, bool no_pivot);

/*
 * Cancel: before ready, stop at once (the target is incomplete); after
 * ready, a final sync and no switch (the target is consistent); force
 * stops at once in any case.  -EINVAL if the job is over (or already
 * completing, unless force).
 */
int mirror_cancel(struct mirror *m, bool force);

/*
 * A user pause / resume (a resume also retries after a stop on error).
 * -EINVAL if over, a pause while completing, or a resume without pause.
 */
int mirror_pause(struct mirror *m);
int mirror_resume(struct mirror *m);

void mirror_set_speed(struct mirror *m, uint64_t bytes_per_sec);

void mirror_get_status(struct mirror *m, struct mirror_status *st);

/*
 * Free the job.  If it is not over, force-cancel it and run the context
 * until it is (so never from a coroutine, nor from a thread the context
 * waits for).  NULL is a no-op.
 */
void mirror_free(struct mirror *m);

#endif /* VDISK_MIRROR_H */

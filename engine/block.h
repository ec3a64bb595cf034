/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Images and the one request path every caller takes.
 *
 * An image (struct blk_image) is a backing file served by a driver (the
 * thread pool or Linux AIO), or any object served by a driver the caller
 * plugs in (blk_open_driver; the tests use fakes).  Every request goes
 * through the same stages: the drain gate, in-flight tracking (with
 * serialisation of read-modify-write), the barrier queue (blk-queue.h),
 * the driver, and completion with statistics.
 *
 * Threading:
 *  - An image belongs to the context (struct loop) it was opened in.
 *    blk_open, blk_open_driver, blk_close, blk_drained_begin/end,
 *    blk_add_*_notifier, blk_get_size and blk_get_stats run in that
 *    context's thread; blk_drained_begin/end and blk_close outside a
 *    coroutine.
 *  - blk_co_* functions run in a coroutine of the image's context and
 *    yield until the request is over.
 *  - blk_aio_submit: any thread.  The callback runs in the image's context
 *    thread.
 *  - Driver callbacks and notifier callbacks run in the image's context
 *    thread, in a coroutine.
 */
#ifndef VDISK_BLOCK_H
#define VDISK_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "compiler.h"
#include "loop.h"
#include "tpool.h"

struct blk_image;

enum blk_aio {
	BLK_AIO_THREADS,
	BLK_AIO_NATIVE,
};

enum blk_cache {
	BLK_CACHE_NONE,        /* O_DIRECT */
	BLK_CACHE_WRITEBACK,
};

enum blk_op {
	BLK_OP_READ,
	BLK_OP_WRITE,
	BLK_OP_FLUSH,
	BLK_OP_DISCARD,
	BLK_OP_WRITE_ZEROES,
	BLK_OP_ALLOCATE,       /* fallocate mode 0: reserve, may grow */
	BLK_OP_BLOCK_STATUS,   /* never given to a driver */
	BLK_OP_TRUNCATE,       /* never given to a driver */
	BLK_OP_NR,
};

/* Request flags. */
#define BLK_REQ_FUA      (1u << 0)  /* write: durable on return (barrier) */
#define BLK_REQ_UNMAP    (1u << 1)  /* write-zeroes: may punch a hole */
#define BLK_REQ_INTERNAL (1u << 2)  /* passes the drain gate */

struct blk_open_opts {
	const char *path;
	bool read_only;
	enum blk_aio aio;
	enum blk_cache cache;
	bool discard;
};

/*
 * A driver.  co_io runs one request in a coroutine of the image's context
 * and returns the bytes read (short at end of file) or written, 0 for the
 * other operations, or -errno.  iov is borrowed for the call.  The block
 * layer has already applied alignment, barriers and ordering.
 */
struct blk_driver {
	const char *name;
	int coroutine_fn (*co_io)(void *opaque, enum blk_op op, uint64_t offset,
				  uint64_t bytes, const struct iovec *iov,
				  int iovcnt);
	/*
	 * Optional: whether [offset, offset + bytes) (inside the image,
	 * bytes > 0) starts with data, and for how many bytes (0 < *pnum <=
	 * bytes).  Without it everything is data.
	 */
	int coroutine_fn (*co_block_status)(void *opaque, uint64_t offset,
					    uint64_t bytes, uint64_t *pnum,
					    bool *is_data);
};

#define BLK_LAT_BUCKETS 32

/* Counters (blk_get_stats). */
struct blk_stats {
	uint64_t ops[BLK_OP_NR];       /* completed requests per op */
	uint64_t bytes[BLK_OP_NR];     /* bytes asked per op */
	uint64_t reads, writes, flushes, discards, write_zeroes; /* = ops[] */
	uint64_t read_bytes, write_bytes;
	uint64_t barriers;             /* FUA writes, flushes, truncates */
	uint64_t errors;               /* requests that returned -errno */
	uint64_t postponed;            /* requests held at the drain gate */
	uint64_t serialised;           /* read-modify-write writes */
	uint64_t bounced;              /* requests through a bounce buffer */
	unsigned in_flight;            /* now */
	unsigned max_in_flight;
	/* Latency per op: bucket i counts requests of [2^i, 2^(i+1)) ns. */
	uint64_t latency[BLK_OP_NR][BLK_LAT_BUCKETS];
};

/* Called at the drain transitions 0->1 (begin) and 1->0 (end). */
struct blk_drain_notifier {
	void (*begin)(void *opaque);
	void (*end)(void *opaque);
	void *opaque;
	LIST_ENTRY(blk_drain_notifier) link;   /* private */
};

/*
 * Called for every write, discard and write-zeroes of the image (either
 * hook may be NULL):
 *  - before_write after the drain gate and before the request is tracked,
 *    so that it may wait for work that itself waits for tracked requests
 *    (a mirror's copy of the same area).  A negative return fails the
 *    request.
 *  - after_write once the driver is done (ret is its result), while the
 *    request is still tracked and before it is answered.  iov is the
 *    write's payload (NULL for discard and write-zeroes).
 */
struct blk_write_notifier {
	int coroutine_fn (*before_write)(void *opaque, uint64_t off,
					 uint64_t bytes);
	void coroutine_fn (*after_write)(void *opaque, enum blk_op op,
					 uint64_t off, uint64_t bytes,
					 const struct iovec *iov, int iovcnt,
					 unsigned flags, ssize_t ret);
	void *opaque;
	LIST_ENTRY(blk_write_notifier) link;   /* private */
};

/*
 * Open o->path in ctx (the caller's thread), with pool for blocking
 * calls.  pool and ctx are borrowed and must outlive the image.  Returns 0
 * and sets *out, or -errno.  The caller owns the image (blk_close).
 */
int blk_open(const struct blk_open_opts *o, struct loop *ctx,
	     struct tpool *pool, struct blk_image **out);

/*
 * An image of size bytes served by drv with opaque (both borrowed until
 * blk_close); no file, alignment 1, writable, discard on.  Returns 0 or
 * -errno.
 */
int blk_open_driver(const char *name, uint64_t size,
		    const struct blk_driver *drv, void *opaque,
		    struct loop *ctx, struct blk_image **out);

/* Drain, flush and free.  Nothing may be postponed.  NULL is a no-op. */
void blk_close(struct blk_image *img);

uint64_t blk_get_size(struct blk_image *img);
void blk_get_stats(struct blk_image *img, struct blk_stats *st);

/* Zero the statistics (in_flight is a state, not a statistic: kept). */
void blk_reset_stats(struct blk_image *img);

/* What an image is; strings are static.  Context thread. */
struct blk_info {
	const char *driver;            /* "threads", "native" or the fake's */
	enum blk_cache cache;
	bool read_only;
	uint64_t size;
	unsigned drain_depth;
};
void blk_get_info(struct blk_image *img, struct blk_info *info);

/*
 * The coroutine API.  Reads return the bytes read (0 at or after end of
 * file), writes the bytes written, the rest 0; or -errno: -EROFS for a
 * change to a read-only image, -EINVAL if offset + bytes overflows,
 * -EOPNOTSUPP for discard when it is off, -ECANCELED if the queue
 * cancelled the request.  iov is borrowed until return.
 */
ssize_t coroutine_fn blk_co_preadv(struct blk_image *img, uint64_t offset,
				   const struct iovec *iov, int iovcnt,
				   unsigned flags);
ssize_t coroutine_fn blk_co_pwritev(struct blk_image *img, uint64_t offset,
				    const struct iovec *iov, int iovcnt,
				    unsigned flags);
int coroutine_fn blk_co_flush(struct blk_image *img);
int coroutine_fn blk_co_discard(struct blk_image *img, uint64_t offset,
				uint64_t bytes);
int coroutine_fn blk_co_write_zeroes(struct blk_image *img, uint64_t offset,
				     uint64_t bytes, unsigned flags);
/*
 * Whether [offset, offset + bytes) starts with data (*is_data) and for how
 * many bytes (*pnum, > 0 unless offset is at or after end of file).
 */
int coroutine_fn blk_co_block_status(struct blk_image *img, uint64_t offset,
				     uint64_t bytes, unsigned flags,
				     uint64_t *pnum, bool *is_data);
int coroutine_fn blk_co_truncate(struct blk_image *img, uint64_t size);
/* Reserve [offset, offset + bytes) (fallocate mode 0); grows the file. */
int coroutine_fn blk_co_allocate(struct blk_image *img, uint64_t offset,
				 uint64_t bytes);

/* Wait until no in-flight request overlaps [offset, offset + bytes). */
void coroutine_fn blk_co_wait_overlapping(struct blk_image *img,
					  uint64_t offset, uint64_t bytes);

/*
 * Drain: stop new requests (they wait, in order), wait for those in
 * flight, flush.  Nestable.  The plain versions: outside a coroutine, in
 * the context's thread (which polls the context meanwhile) or in any other
 * thread (which hands the work to the context and blocks until it is
 * done; never from a thread the context waits on).  The _co versions: a
 * coroutine of the context.
 */
void blk_drained_begin(struct blk_image *img);
void blk_drained_end(struct blk_image *img);
void coroutine_fn blk_co_drained_begin(struct blk_image *img);
void coroutine_fn blk_co_drained_end(struct blk_image *img);

/* n is borrowed until removed or blk_close. */
void blk_add_drain_notifier(struct blk_image *img,
			    struct blk_drain_notifier *n);
void blk_add_write_notifier(struct blk_image *img,
			    struct blk_write_notifier *n);
void blk_remove_drain_notifier(struct blk_drain_notifier *n);
/* Not while one of n's hooks runs on a request that is still tracked. */
void blk_remove_write_notifier(struct blk_write_notifier *n);

/*
 * Fix the image's size for a job: until blk_size_unlock, a truncate fails
 * with -EBUSY and a write, write-zeroes or allocation past the end with
 * -EFBIG.  -EBUSY if it is locked already (one job per image).
 */
int blk_size_lock(struct blk_image *img);
void blk_size_unlock(struct blk_image *img);

/*
 * Send every request that reaches img from now on to next instead: those
 * postponed at img's drain gate go when the drain ends, in their order.
 * For a switch of backing (mirror pivot): callers that still hold img
 * keep working.  Both images in one context.  img must not be closed
 * until no caller can still hand it a request.
 */
void blk_set_redirect(struct blk_image *img, struct blk_image *next);

/*
 * Batch submission: between blk_io_plug and the matching blk_io_unplug,
 * Linux AIO requests of the image's context are queued and go to the
 * kernel in one io_submit (a vring kick's worth of requests).  No-ops for
 * the thread pool.  Context thread; nestable.
 */
void blk_io_plug(struct blk_image *img);
void blk_io_unplug(struct blk_image *img);

/*
 * Let go of a redirected image's file (after waiting for what is in
 * flight, and a flush).  What remains only forwards requests to its
 * successor until blk_close.  Context thread, outside a coroutine.
 */
void blk_retire(struct blk_image *img);

/*
 * A request from code that is not a coroutine, on any thread.  The caller
 * fills the public fields and keeps r (and iov and its buffers) alive
 * until cb has run; cb gets what the blk_co_* function returned (for
 * BLK_OP_BLOCK_STATUS: pnum, or -errno; BLK_OP_TRUNCATE: offset is the new
 * size).
 */
struct blk_aio_req {
	enum blk_op op;
	uint64_t offset;
	uint64_t bytes;
	struct iovec *iov;
	int iovcnt;
	unsigned flags;
	void (*cb)(void *opaque, ssize_t ret);
	void *opaque;
	/* private below */
	struct blk_image *img;
	struct loop_bh bh;
};

void blk_aio_submit(struct blk_image *img, struct blk_aio_req *r);

#endif /* VDISK_BLOCK_H */

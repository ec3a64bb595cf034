/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared between block.c (the request path), block-drain.c (drain,
 * notifiers, size lock, redirect) and block-drv.c (the file drivers and
 * O_DIRECT alignment).  Not for use outside the block module.
 *
 * Threading: as block.h; every field of struct blk_image belongs to the
 * image's context thread.
 */
#ifndef VDISK_BLOCK_INTERNAL_H
#define VDISK_BLOCK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "blk-queue.h"
#include "block.h"
#include "coroutine.h"
#include "laio.h"

struct blk_tracked;

struct blk_image {
	char *name;
	struct loop *ctx;
	struct tpool *pool;             /* NULL for blk_open_driver */
	const struct blk_driver *drv;
	void *drv_opaque;
	int fd;                         /* -1 for blk_open_driver */
	struct laio *laio;              /* aio=native only; ctx's shared one */
	bool read_only;
	bool discard;
	enum blk_cache cache;
	bool fdsync_fallback;           /* laio FDSYNC said -EINVAL once */
	uint32_t req_align, mem_align;  /* O_DIRECT rules, 1 otherwise */
	/* The fields below belong to ctx's thread. */
	uint64_t size;
	struct blk_queue queue;
	TAILQ_HEAD(, blk_tracked) tracked;
	unsigned in_flight;
	unsigned drain_count;
	struct co_queue drain_gate;     /* postponed requests */
	struct co_queue drain_waiters;  /* blk_co_drained_begin */
	LIST_HEAD(, blk_drain_notifier) drain_notifiers;
	LIST_HEAD(, blk_write_notifier) write_notifiers;
	struct blk_stats stats;
	bool size_locked;               /* blk_size_lock */
	struct blk_image *redirect;     /* blk_set_redirect */
};
/*
 * Flush img with BLK_REQ_INTERNAL, which passes a closed drain gate (a
 * drain's own flush).  0 or -errno.  In img's context, in a coroutine.
 */
int coroutine_fn blk_co_flush_internal(struct blk_image *img);

/* The built-in drivers; their opaque is the image. */
extern const struct blk_driver blk_drv_threads;
extern const struct blk_driver blk_drv_native;

/* Call the image's driver. */
int coroutine_fn blk_drv_io(struct blk_image *img, enum blk_op op,
			    uint64_t off, uint64_t bytes,
			    const struct iovec *iov, int iovcnt);

/*
 * Read or write through the driver, with an aligned bounce buffer when
 * img's O_DIRECT alignment demands one.  An unaligned write is a
 * read-modify-write: the caller must have serialised it over its aligned
 * bounds.  Returns bytes read (short at EOF) or written, or -errno.
 */
ssize_t coroutine_fn blk_co_drv_rw(struct blk_image *img, enum blk_op op,
				   uint64_t off, uint64_t bytes,
				   const struct iovec *iov, int iovcnt);

/* SEEK_DATA/SEEK_HOLE in a worker (all data for an image without fd). */
int coroutine_fn blk_co_drv_block_status(struct blk_image *img, uint64_t off,
					 uint64_t bytes, uint64_t *pnum,
					 bool *is_data);

/* ftruncate in a worker; -EOPNOTSUPP for an image without fd. */
int coroutine_fn blk_co_drv_truncate(struct blk_image *img, uint64_t size);

/*
 * The Linux AIO context of ctx, shared by all its images: created on the
 * first get, freed on the last put.  Call both from ctx's thread.
 */
int blk_laio_get(struct loop *ctx, struct laio **out);
void blk_laio_put(struct laio *laio);

/* Set img->req_align/mem_align from statx STATX_DIOALIGN (else 4096). */
void blk_probe_align(struct blk_image *img);

#endif /* VDISK_BLOCK_INTERNAL_H */

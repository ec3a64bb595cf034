/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtio-blk dataplane: one split virtqueue (vring.h) served in an
 * image's context.  The guest's kick is an eventfd (ioeventfd) registered
 * in the context's loop; the interrupt is an eventfd (irqfd) the device
 * writes when vring_dev_should_notify says so.  Every request goes
 * through the block layer's one path (block.h).
 *
 * What the device answers (virtio 1.x, 5.2.6; the layout of a chain is
 * free, VIRTIO_F_VERSION_1 implies any layout: the header is the first 16
 * readable bytes, the status the last writable byte):
 *  - IN, OUT: the data is a multiple of 512 bytes inside the capacity, a
 *    read has no readable byte after the header and a write no writable
 *    byte before the status; else VIRTIO_BLK_S_IOERR.  An error of the
 *    block layer (-EROFS on a read-only image included) is IOERR.
 *  - FLUSH: a barrier flush (blk_co_flush); its sector and any data are
 *    ignored.
 *  - GET_ID: at least 20 writable bytes before the status, else IOERR;
 *    the serial, NUL-padded, goes into the first 20.
 *  - DISCARD, WRITE_ZEROES: 1 to VBLK_MAX_DWZ_SEG segments, each inside
 *    the capacity and of at most VBLK_MAX_DWZ_SECTORS, else IOERR; a flag
 *    other than UNMAP, or UNMAP on a DISCARD, gives VIRTIO_BLK_S_UNSUPP
 *    (checked over all segments before anything is done).  Segments are
 *    done in order; the first failure answers IOERR.
 *  - FLUSH, DISCARD and WRITE_ZEROES without their feature negotiated,
 *    and every other type: VIRTIO_BLK_S_UNSUPP.
 *  - A header shorter than 16 bytes: IOERR.
 *  - A chain of more than VBLK_SEG_MAX + 2 descriptors: IOERR, answered
 *    at once (the guest broke seg_max).
 *  - A chain without a single writable byte has no room for the status:
 *    there is no way to answer it, so the queue is broken (NEEDS_RESET)
 *    as it is for chains vring_dev_pop refuses.
 * A broken queue pops and pushes nothing more (requests in flight still
 * finish in the block layer, unanswered); the device then writes the
 * interrupt eventfd once, as a configuration-change interrupt, so that a
 * waiting guest looks at vblk_get_stats.  Nothing a guest does makes the
 * device exit or abort.
 *
 * size_max is a hint: longer segments are served.  blk_size is 512.
 *
 * Threading: every function runs in the image's context thread, outside a
 * coroutine (vblk_stop polls the context until the device is idle), except
 * vblk_get_stats, which any thread may call (the counters are atomics),
 * and vblk_features (fixed at vblk_new; any thread that vblk_new's
 * caller handed the device to).
 */
#ifndef VDISK_VBLK_H
#define VDISK_VBLK_H

#include <stdbool.h>
#include <stdint.h>

#include "block.h"
#include "vring.h"

/* Request types (virtio 1.x, 5.2.6). */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_SECTOR   512u

/* Feature bits (virtio 1.x, 5.2.3 and 6). */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define VIRTIO_F_VERSION_1        32

/* The limits this device puts in its config space. */
#define VBLK_SEG_MAX          126u          /* data segments per request */
#define VBLK_SIZE_MAX         (1u << 20)    /* bytes per segment (hint) */
#define VBLK_MAX_DWZ_SECTORS  (1u << 21)    /* per discard/zeroes segment */
#define VBLK_MAX_DWZ_SEG      16u           /* segments per request */
#define VBLK_DISCARD_ALIGN    8u            /* sectors (hint) */

/* The request header and a DISCARD / WRITE_ZEROES segment (LE). */
struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

#define VIRTIO_BLK_WZ_F_UNMAP 1u

struct virtio_blk_discard_write_zeroes {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* The part of the config space this device fills (LE, spec layout). */
struct virtio_blk_config {
	uint64_t capacity;                    /* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	struct {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;
	uint8_t physical_block_exp;
	uint8_t alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
} __attribute__((packed));

struct vblk_stats {
	uint64_t ops[6];               /* completed: IN, OUT, FLUSH, GET_ID,
					* DISCARD, WRITE_ZEROES (this order) */
	uint64_t unsupported;          /* other types (answered UNSUPP) */
	uint64_t status[3];            /* answers per VIRTIO_BLK_S_* */
	uint64_t bytes_read, bytes_written;
	uint64_t kicks;                /* kick eventfd reads */
	uint64_t batches;              /* rounds of pops submitted together */
	uint64_t max_batch;            /* most requests in one round */
	uint64_t irqs_raised;          /* interrupt eventfd writes */
	uint64_t irqs_suppressed;      /* pushes that needed none (raised +
					* suppressed = pushes) */
	uint64_t config_irqs;          /* interrupts for a broken queue */
	unsigned in_flight;
	bool broken;                   /* the queue needs a reset */
	enum vring_error error;        /* why (VRING_ERR_NONE when the
					* device itself broke it: see reason) */
	const char *reason;            /* why, in words (static), or NULL */
};

struct vblk;

/*
 * A device over img (borrowed; the image's context is the caller's) whose
 * guest memory is mem (borrowed) and whose GET_ID answers serial (copied,
 * at most 20 bytes used; NULL is ""), offering VIRTIO_BLK_F_RO when img is
 * read-only.  Returns 0 and *out, -EINVAL without img or mem, or -ENOMEM.
 */
int vblk_new(struct blk_image *img, struct vring_mem *mem,
	     const char *serial, struct vblk **out);

/* The features the device offers (VIRTIO_BLK_F_*, VIRTIO_RING_F_*). */
uint64_t vblk_features(const struct vblk *v);

/* The config space, as the guest reads it (capacity is read now). */
void vblk_get_config(const struct vblk *v, struct virtio_blk_config *cfg);

/*
 * The driver set the queue up at addrs with num entries and negotiated
 * features (a subset of vblk_features with VIRTIO_F_VERSION_1, else
 * -EINVAL): start serving.  kick_fd and call_fd are non-blocking
 * eventfds, borrowed until vblk_stop.  Chains published before the call
 * are served too.  Returns 0 or -errno (-EBUSY: started already; -EIO:
 * the guest's rings are bad and the queue is broken).  A stopped device
 * may be started again; its queue starts afresh, its counters go on.
 */
int vblk_start(struct vblk *v, unsigned num, const struct vring_addrs *addrs,
	       uint64_t features, int kick_fd, int call_fd);

/*
 * Stop serving: no more pops, wait (polling the context) for the
 * requests in flight to complete and be pushed, give the guest the
 * interrupt those pushes call for, unregister the kick.  From plain code
 * or a bottom half of the context; a no-op on a device not started.
 * While the image is drained, requests postponed at its gate are waited
 * for too: they finish when the drain ends.
 */
void vblk_stop(struct vblk *v);

/* A snapshot of the counters.  Any thread (each counter is atomic). */
void vblk_get_stats(const struct vblk *v, struct vblk_stats *st);

/* Free a device, stopping it first if needed.  NULL does nothing. */
void vblk_free(struct vblk *v);

#endif /* VDISK_VBLK_H */

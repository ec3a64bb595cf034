/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vdiskfs ioctl ABI: commands on files of a vdiskfs mount.
 *
 * FUSE passes only "restricted" ioctls on regular files: the kernel copies
 * a fixed-size struct, whose size is encoded in the command number, in and
 * out.  So every argument here is a flat struct (no pointers, strings
 * inline), under 16 KiB, and every command is _IOWR so that the daemon
 * always receives the struct it must check.
 *
 * Every struct starts with version and size, which the caller sets to
 * VDISK_IOC_VERSION and sizeof(struct), and ends with reserved bytes that
 * must be zero.  The daemon answers:
 *   ENOTTY  an unknown command number (of this type letter);
 *   EINVAL  a known number with another size, a wrong version or size
 *           field, non-zero reserved bytes, or a bad value;
 *   EBADF   a mutating command on a handle not opened for writing;
 *   EPERM   a mutating command from a caller who is neither root nor the
 *           owner of the image.
 * Output fields are filled by the daemon and ignored on input.
 *
 * The header is installed with the programs; it needs only <linux/ioctl.h>
 * and <stdint.h>.
 */
#ifndef VDISK_IOCTL_H
#define VDISK_IOCTL_H

#include <stdint.h>
#include <linux/ioctl.h>

#define VDISK_IOC_VERSION 1u

/* The type letter: not used by any ioctl that the VFS handles itself. */
#define VDISK_IOC_TYPE 0xd7

#define VDISK_IOC_NAME_MAX 32
#define VDISK_IOC_PATH_MAX 4096
#define VDISK_IOC_LAT_BUCKETS 32

/* Request types in vdisk_ioc_stats.ops[] and friends. */
enum vdisk_ioc_op {
	VDISK_IOC_OP_READ,
	VDISK_IOC_OP_WRITE,
	VDISK_IOC_OP_FLUSH,
	VDISK_IOC_OP_DISCARD,
	VDISK_IOC_OP_WRITE_ZEROES,
	VDISK_IOC_OP_NR = 8           /* room to grow */
};

/* The engine's statistics of one image (output only). */
struct vdisk_ioc_stats {
	uint64_t ops[VDISK_IOC_OP_NR];
	uint64_t bytes[VDISK_IOC_OP_NR];
	uint64_t barriers;            /* FUA writes, flushes, truncates */
	uint64_t errors;
	uint64_t postponed;           /* requests held by a drain */
	uint64_t serialised;          /* read-modify-writes */
	uint64_t bounced;             /* through an aligned bounce buffer */
	uint32_t in_flight;
	uint32_t max_in_flight;
	/* latency[op][i]: requests that took [2^i, 2^(i+1)) ns. */
	uint64_t latency[VDISK_IOC_OP_NR][VDISK_IOC_LAT_BUCKETS];
};

/* vdisk_ioc_info.flags */
#define VDISK_IOC_INFO_READ_ONLY  (1u << 0)

/* VDISK_IOC_INFO: what the daemon knows of the image (output). */
struct vdisk_ioc_info {
	uint32_t version;
	uint32_t size;
	uint64_t image_size;                  /* bytes */
	char name[VDISK_IOC_NAME_MAX * 8];    /* file name in the mount */
	char backing[VDISK_IOC_PATH_MAX];     /* backing file path */
	char driver[VDISK_IOC_NAME_MAX];      /* "native" or "threads" */
	char cache[VDISK_IOC_NAME_MAX];       /* "none" or "writeback" */
	uint32_t flags;                       /* VDISK_IOC_INFO_* */
	uint32_t iothread;                    /* index of its I/O thread */
	uint32_t open_handles;
	uint32_t drain_depth;                 /* drains held now */
	uint32_t mirror_state;                /* 0: no mirror job */
	uint32_t pad0;
	struct vdisk_ioc_stats stats;
	uint8_t reserved[256];
};

/* VDISK_IOC_FLUSH: a barrier flush of the image. */
struct vdisk_ioc_flush {
	uint32_t version;
	uint32_t size;
	uint8_t reserved[56];
};

/*
 * VDISK_IOC_DRAIN_BEGIN: quiesce the image (requests through the mount
 * wait), wait for those in flight, flush.  The drain belongs to the
 * calling process and this handle; it ends on VDISK_IOC_DRAIN_END from the
 * same handle, when the process exits, when the handle is released, or
 * after timeout_sec seconds (0: no timeout).
 */
struct vdisk_ioc_drain_begin {
	uint32_t version;
	uint32_t size;
	uint32_t timeout_sec;
	uint32_t pad0;                        /* must be zero */
	uint8_t reserved[48];
};

/* VDISK_IOC_DRAIN_END: end the drain this handle began. */
struct vdisk_ioc_drain_end {
	uint32_t version;
	uint32_t size;
	uint8_t reserved[56];
};

/* VDISK_IOC_STATS_RESET: zero the image's statistics. */
struct vdisk_ioc_stats_reset {
	uint32_t version;
	uint32_t size;
	uint8_t reserved[56];
};

#define VDISK_IOC_INFO \
	_IOWR(VDISK_IOC_TYPE, 1, struct vdisk_ioc_info)
#define VDISK_IOC_FLUSH \
	_IOWR(VDISK_IOC_TYPE, 2, struct vdisk_ioc_flush)
#define VDISK_IOC_DRAIN_BEGIN \
	_IOWR(VDISK_IOC_TYPE, 3, struct vdisk_ioc_drain_begin)
#define VDISK_IOC_DRAIN_END \
	_IOWR(VDISK_IOC_TYPE, 4, struct vdisk_ioc_drain_end)
#define VDISK_IOC_STATS_RESET \
	_IOWR(VDISK_IOC_TYPE, 5, struct vdisk_ioc_stats_reset)

/* Numbers 6..31 are kept for the mirror and vring commands. */

/* A struct of 16 KiB or more would silently get size 0 in its number. */
_Static_assert(sizeof(struct vdisk_ioc_info) < (1u << _IOC_SIZEBITS),
	       "vdisk_ioc_info too large for an ioctl number");

#endif /* VDISK_IOCTL_H */

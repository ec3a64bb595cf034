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
#define VDISK_IOC_INFO_PIVOTED    (1u << 1)   /* backing is a mirror target */

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
	uint32_t mirror_state;                /* enum vdisk_mirror_state */
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

/* ---- mirror ------------------------------------------------------------ */

/* A mirror job's state (vdisk_ioc_info.mirror_state, _mirror_status.state). */
enum vdisk_mirror_state {
	VDISK_MIRROR_NONE,            /* no job on this image since start */
	VDISK_MIRROR_CREATED,
	VDISK_MIRROR_RUNNING,
	VDISK_MIRROR_PAUSED,          /* by a user, a drain or an error */
	VDISK_MIRROR_READY,           /* the target is current but for dirty */
	VDISK_MIRROR_COMPLETING,
	VDISK_MIRROR_CONCLUDED,       /* completed (pivoted unless no_pivot) */
	VDISK_MIRROR_FAILED,
	VDISK_MIRROR_CANCELLED,
};

enum vdisk_mirror_sync {
	VDISK_MIRROR_SYNC_FULL,       /* everything allocated in the source */
	VDISK_MIRROR_SYNC_NONE,       /* only what is written from now on */
};

enum vdisk_mirror_copy_mode {
	VDISK_MIRROR_COPY_BACKGROUND,
	VDISK_MIRROR_COPY_WRITE_BLOCKING,
};

enum vdisk_mirror_on_error {
	VDISK_MIRROR_ERROR_REPORT,    /* the job fails */
	VDISK_MIRROR_ERROR_STOP,      /* the job pauses; resume retries */
	VDISK_MIRROR_ERROR_IGNORE,    /* the area stays dirty, is retried */
};

/* Which side the last error came from. */
enum vdisk_mirror_error_side {
	VDISK_MIRROR_SIDE_NONE,
	VDISK_MIRROR_SIDE_SOURCE,
	VDISK_MIRROR_SIDE_TARGET,
};

/* vdisk_ioc_mirror_start.flags */
#define VDISK_MIRROR_START_EXISTING (1u << 0)  /* take an existing target */

/*
 * VDISK_IOC_MIRROR_START: copy the image to target and keep the copy
 * current.  target is an absolute path under the daemon's mirror_dir
 * (vdiskctl canonicalises it).  Zero granularity or buf_size take the
 * defaults (64 KiB or the target's block size; 16 MiB); speed is bytes/s,
 * 0 for no limit.  job_id is output.  Errors beyond the common ones:
 * EBUSY a job already runs, EPERM no mirror_dir or target outside it or
 * another user's, EEXIST target exists without EXISTING, EINVAL a bad
 * parameter or a target that is no regular file or is too small.
 */
struct vdisk_ioc_mirror_start {
	uint32_t version;
	uint32_t size;
	char target[VDISK_IOC_PATH_MAX];
	uint64_t granularity;
	uint64_t buf_size;
	uint64_t speed;
	uint32_t sync;                        /* enum vdisk_mirror_sync */
	uint32_t copy_mode;                   /* enum vdisk_mirror_copy_mode */
	uint32_t on_source_error;             /* enum vdisk_mirror_on_error */
	uint32_t on_target_error;
	uint32_t flags;                       /* VDISK_MIRROR_START_* */
	uint32_t pad0;                        /* must be zero */
	uint64_t job_id;                      /* out */
	uint8_t reserved[64];
};

/* vdisk_ioc_mirror_status.flags */
#define VDISK_MIRROR_ST_CONSISTENT  (1u << 0)  /* target is a whole copy */
#define VDISK_MIRROR_ST_EVER_READY  (1u << 1)
#define VDISK_MIRROR_ST_USER_PAUSED (1u << 2)
#define VDISK_MIRROR_ST_DRAINED     (1u << 3)  /* paused by a drain */
#define VDISK_MIRROR_ST_PIVOTED     (1u << 4)  /* the file now uses target */
#define VDISK_MIRROR_ST_NO_PIVOT    (1u << 5)  /* completing without pivot */

/*
 * VDISK_IOC_MIRROR_STATUS: the image's current or last mirror job
 * (output; state NONE if there was none).  Needs no write handle.
 */
struct vdisk_ioc_mirror_status {
	uint32_t version;
	uint32_t size;
	uint64_t job_id;
	uint32_t state;                       /* enum vdisk_mirror_state */
	uint32_t sync;
	uint32_t copy_mode;
	uint32_t on_source_error;
	uint32_t on_target_error;
	uint32_t flags;                       /* VDISK_MIRROR_ST_* */
	uint64_t bytes_total;                 /* done + dirty + in flight */
	uint64_t bytes_done;                  /* copied */
	uint64_t bytes_dirty;                 /* still to copy */
	uint64_t granularity;
	uint64_t buf_size;
	uint64_t speed;                       /* limit, bytes/s; 0 none */
	uint64_t throughput;                  /* bytes/s over the last second */
	uint64_t elapsed_ns;
	uint32_t ops_in_flight;
	uint32_t error_side;                  /* enum vdisk_mirror_error_side */
	int32_t error;                        /* last error, positive errno */
	uint32_t pad0;
	char target[VDISK_IOC_PATH_MAX];
	uint8_t reserved[128];
};

/* vdisk_ioc_mirror_complete.flags */
#define VDISK_MIRROR_COMPLETE_NO_PIVOT (1u << 0)

/*
 * VDISK_IOC_MIRROR_COMPLETE: start completing a ready job (drain, copy
 * the rest, flush the target, switch the file to it, end the drain);
 * returns at once, watch with MIRROR_STATUS.  EBUSY: not ready yet, or a
 * drain is held on the image.  EINVAL: the job is over.  ENOENT: no job.
 */
struct vdisk_ioc_mirror_complete {
	uint32_t version;
	uint32_t size;
	uint32_t flags;                       /* VDISK_MIRROR_COMPLETE_* */
	uint32_t pad0;                        /* must be zero */
	uint8_t reserved[48];
};

/* vdisk_ioc_mirror_cancel.flags */
#define VDISK_MIRROR_CANCEL_FORCE (1u << 0)

/*
 * VDISK_IOC_MIRROR_CANCEL: before ready, stop (the target is incomplete);
 * after ready, a final sync and no switch, so the target is a consistent
 * copy; FORCE stops at once.  Returns at once; EINVAL if the job is over.
 */
struct vdisk_ioc_mirror_cancel {
	uint32_t version;
	uint32_t size;
	uint32_t flags;                       /* VDISK_MIRROR_CANCEL_* */
	uint32_t pad0;                        /* must be zero */
	uint8_t reserved[48];
};

/* VDISK_IOC_MIRROR_PAUSE / _RESUME: a user pause (counts with drains). */
struct vdisk_ioc_mirror_pause {
	uint32_t version;
	uint32_t size;
	uint8_t reserved[56];
};

/* VDISK_IOC_MIRROR_SET_SPEED: bytes/s, 0 for no limit. */
struct vdisk_ioc_mirror_set_speed {
	uint32_t version;
	uint32_t size;
	uint64_t speed;
	uint8_t reserved[48];
};

#define VDISK_IOC_MIRROR_START \
	_IOWR(VDISK_IOC_TYPE, 6, struct vdisk_ioc_mirror_start)
#define VDISK_IOC_MIRROR_STATUS \
	_IOWR(VDISK_IOC_TYPE, 7, struct vdisk_ioc_mirror_status)
#define VDISK_IOC_MIRROR_COMPLETE \
	_IOWR(VDISK_IOC_TYPE, 8, struct vdisk_ioc_mirror_complete)
#define VDISK_IOC_MIRROR_CANCEL \
	_IOWR(VDISK_IOC_TYPE, 9, struct vdisk_ioc_mirror_cancel)
#define VDISK_IOC_MIRROR_PAUSE \
	_IOWR(VDISK_IOC_TYPE, 10, struct vdisk_ioc_mirror_pause)
#define VDISK_IOC_MIRROR_RESUME \
	_IOWR(VDISK_IOC_TYPE, 11, struct vdisk_ioc_mirror_pause)
#define VDISK_IOC_MIRROR_SET_SPEED \
	_IOWR(VDISK_IOC_TYPE, 12, struct vdisk_ioc_mirror_set_speed)

/* ---- virtio-blk vring tests -------------------------------------------- */

/*
 * A vring test: a simulated guest inside the daemon drives a virtio-blk
 * device over a real split virtqueue into the image, as a VM would.
 */
enum vdisk_vring_rw {
	VDISK_VRING_RW_READ,          /* sequential */
	VDISK_VRING_RW_WRITE,
	VDISK_VRING_RW_RANDREAD,
	VDISK_VRING_RW_RANDWRITE,
	VDISK_VRING_RW_RANDRW,        /* rwmix_read percent reads */
};

/* A broken chain to send after a few good requests (fault injection). */
enum vdisk_vring_inject {
	VDISK_VRING_INJECT_NONE,
	VDISK_VRING_INJECT_LOOP,            /* a chain that loops */
	VDISK_VRING_INJECT_TOO_LONG,        /* longer than the queue */
	VDISK_VRING_INJECT_OUT_OF_BOUNDS,   /* outside guest memory */
	VDISK_VRING_INJECT_NESTED_INDIRECT, /* indirect in indirect */
	VDISK_VRING_INJECT_BAD_INDIRECT_LEN,
	VDISK_VRING_INJECT_READ_AFTER_WRITE,/* readable after writable */
};

enum vdisk_vring_state {
	VDISK_VRING_NONE,             /* no test on this image since start */
	VDISK_VRING_RUNNING,
	VDISK_VRING_VERIFYING,        /* the read-back pass of verify */
	VDISK_VRING_DONE,             /* ran its course */
	VDISK_VRING_STOPPED,          /* by VRING_TEST_STOP or shutdown */
	VDISK_VRING_FAILED,           /* could not run (error) */
};

/* vdisk_ioc_vring_start.flags */
#define VDISK_VRING_VERIFY     (1u << 0)  /* check what is read back */
#define VDISK_VRING_EVENT_IDX  (1u << 1)  /* negotiate VIRTIO_RING_F_EVENT_IDX */
#define VDISK_VRING_INDIRECT   (1u << 2)  /* use indirect descriptors */

/*
 * VDISK_IOC_VRING_TEST_START: start a test; returns at once (watch with
 * _STATUS).  Zero fields take defaults: bs 4096, iodepth 1, queue_size
 * 256, size the image's size minus offset, seconds 10 when requests is 0
 * too, rwmix_read 50.  bs is a multiple of 512; offset and size too;
 * queue_size a power of two up to 32768; iodepth at most queue_size.
 * Needs a write handle and root or the owner unless the workload only
 * reads (read, randread, no flush).  EBUSY: a test runs on this image.
 */
struct vdisk_ioc_vring_start {
	uint32_t version;
	uint32_t size;
	uint32_t rw;                          /* enum vdisk_vring_rw */
	uint32_t bs;
	uint32_t iodepth;
	uint32_t queue_size;
	uint64_t offset;
	uint64_t region;                      /* bytes from offset; 0 all */
	uint32_t seconds;
	uint32_t rwmix_read;                  /* percent, 0..100 */
	uint64_t requests;                    /* stop after; 0 time-based */
	uint32_t flush_every;                 /* a FLUSH every N writes */
	uint32_t flags;                       /* VDISK_VRING_* */
	uint32_t inject;                      /* enum vdisk_vring_inject */
	uint32_t pad0;                        /* must be zero */
	uint64_t seed;                        /* 0: from the clock */
	uint64_t test_id;                     /* out */
	uint8_t reserved[64];
};

/* Request types in vdisk_ioc_vring_status.ops[]. */
enum vdisk_vring_op {
	VDISK_VRING_OP_IN,
	VDISK_VRING_OP_OUT,
	VDISK_VRING_OP_FLUSH,
	VDISK_VRING_OP_GET_ID,
	VDISK_VRING_OP_DISCARD,
	VDISK_VRING_OP_WRITE_ZEROES,
	VDISK_VRING_OP_NR = 8
};

/* vdisk_ioc_vring_status.flags */
#define VDISK_VRING_ST_BROKEN  (1u << 0)  /* the device broke the queue */

/* VDISK_IOC_VRING_TEST_STATUS: the current or last test (output). */
struct vdisk_ioc_vring_status {
	uint32_t version;
	uint32_t size;
	uint64_t test_id;
	uint32_t state;                       /* enum vdisk_vring_state */
	uint32_t flags;                       /* VDISK_VRING_ST_* */
	uint64_t ops[VDISK_VRING_OP_NR];      /* completed per type */
	uint64_t bytes_read;
	uint64_t bytes_written;
	uint64_t status_ok;                   /* VIRTIO_BLK_S_OK */
	uint64_t status_ioerr;                /* VIRTIO_BLK_S_IOERR */
	uint64_t status_unsupp;               /* VIRTIO_BLK_S_UNSUPP */
	uint64_t unexpected;                  /* requests that failed and
					       * should not have */
	uint64_t verify_checked;              /* blocks compared */
	uint64_t verify_mismatches;
	uint64_t kicks_sent;
	uint64_t kicks_suppressed;            /* the device said no need */
	uint64_t irqs_raised;                 /* device notifications */
	uint64_t irqs_suppressed;             /* completions without one */
	uint64_t lat_mean_ns;
	uint64_t lat_p50_ns;
	uint64_t lat_p99_ns;
	uint64_t elapsed_ns;
	uint32_t device_error;                /* the queue's error code */
	int32_t error;                        /* positive errno if FAILED */
	char verdict[128];                    /* the device's words on it */
	uint8_t reserved[128];
};

/*
 * VDISK_IOC_VRING_TEST_STOP: stop the running test (EINVAL if none).
 * From root, the image's owner or the user who started the test (else
 * EPERM), on any handle.
 */
struct vdisk_ioc_vring_stop {
	uint32_t version;
	uint32_t size;
	uint8_t reserved[56];
};

#define VDISK_IOC_VRING_TEST_START \
	_IOWR(VDISK_IOC_TYPE, 13, struct vdisk_ioc_vring_start)
#define VDISK_IOC_VRING_TEST_STATUS \
	_IOWR(VDISK_IOC_TYPE, 14, struct vdisk_ioc_vring_status)
#define VDISK_IOC_VRING_TEST_STOP \
	_IOWR(VDISK_IOC_TYPE, 15, struct vdisk_ioc_vring_stop)

/* Numbers 16..31 are free. */

/* A struct of 16 KiB or more would silently get size 0 in its number. */
_Static_assert(sizeof(struct vdisk_ioc_info) < (1u << _IOC_SIZEBITS),
	       "vdisk_ioc_info too large for an ioctl number");
_Static_assert(sizeof(struct vdisk_ioc_mirror_start) < (1u << _IOC_SIZEBITS),
	       "vdisk_ioc_mirror_start too large for an ioctl number");
_Static_assert(sizeof(struct vdisk_ioc_mirror_status) < (1u << _IOC_SIZEBITS),
	       "vdisk_ioc_mirror_status too large for an ioctl number");

#endif /* VDISK_IOCTL_H */

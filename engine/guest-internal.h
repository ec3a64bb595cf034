/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated guest's building blocks, shared by guest.c (the vCPU and
 * its workloads) and guest-req.c, and used by the unit tests to drive a
 * device by hand: request chains in guest memory, the verification
 * pattern, the latency histogram and the broken chains of fault
 * injection.  Not for use outside the guest module and its tests.
 *
 * Threading: the building blocks keep no state of their own; a chain is
 * built by the thread that owns the struct vring_drv (vring.h).  struct
 * guest says who owns each of its fields.
 */
#ifndef VDISK_GUEST_INTERNAL_H
#define VDISK_GUEST_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest.h"
#include "vblk.h"
#include "vring.h"

/* Per request, GUEST_META_BYTES of guest memory hold these. */
#define GUEST_META_BYTES   512u
#define GUEST_META_HDR     0u      /* struct virtio_blk_outhdr */
#define GUEST_META_STATUS  16u     /* the status byte */
#define GUEST_META_TABLE   64u     /* indirect table */
#define GUEST_TABLE_MAX    16u     /* its entries */
#define GUEST_META_SMALL   320u    /* GET_ID answer, DISCARD segments */
#define GUEST_SMALL_BYTES  192u

/* Data buffers are split into at most this many descriptors. */
#define GUEST_MAX_DATA_SEGS 4u

/* The status byte before the device writes it. */
#define GUEST_STATUS_NONE 0xffu

/* Where one request's pieces lie in guest memory (guest addresses). */
struct guest_chain_mem {
	uint64_t hdr, status, table, small;
	uint64_t data;                 /* the data buffer, 4 KiB aligned */
	uint32_t data_len;             /* its size */
};

/* Fill m for the meta block at meta and the data buffer at data. */
void guest_chain_mem_init(struct guest_chain_mem *m, uint64_t meta,
			  uint64_t data, uint32_t data_len);

/* A request to build. */
struct guest_io {
	uint32_t type;                 /* VIRTIO_BLK_T_* */
	uint64_t sector;
	uint64_t data;                 /* guest address of the data */
	uint32_t len;                  /* 0: no data descriptor */
	bool writable;                 /* data written by the device */
};

/*
 * Split [addr, addr + len) into at most max segments of equal 4 KiB
 * multiples (the last shorter).  Returns the count (0 for len 0).
 */
unsigned guest_split(uint64_t addr, uint32_t len, unsigned max,
		     struct vring_seg *segs);

/*
 * Write io's header at m->hdr, set the status byte to GUEST_STATUS_NONE
 * and add the chain header, data (split by guest_split), status: one
 * descriptor each, or one indirect descriptor with the table at m->table.
 * Returns the head, or -errno of vring_drv_add(_indirect) (-ENOSPC: not
 * enough free descriptors), or -EFAULT when m or io lies outside mem.
 * The chain goes to the device at the next vring_drv_publish.
 */
int guest_chain_add(struct vring_drv *drv, struct vring_mem *mem,
		    const struct guest_chain_mem *m, const struct guest_io *io,
		    bool indirect, void *token);

/* The status byte of m as the device left it. */
uint8_t guest_chain_status(const struct vring_mem *mem,
			   const struct guest_chain_mem *m);

/* Store n DISCARD / WRITE_ZEROES segments at addr, little-endian. */
int guest_put_dwz(struct vring_mem *mem, uint64_t addr,
		  const struct virtio_blk_discard_write_zeroes *segs,
		  unsigned n);

/*
 * The verification pattern.  Each 512-byte sector of a write starts with
 * a header (magic, its own byte offset in the image, the write's sequence
 * number, the run's seed) followed by filler derived from those, so a
 * sector read back proves where it belongs and which write put it there.
 */
void guest_pattern_fill(void *buf, uint32_t len, uint64_t offset,
			uint64_t seq, uint64_t seed);

/* How many sectors of buf differ from what write seq put there. */
unsigned guest_pattern_check(const void *buf, uint32_t len, uint64_t offset,
			     uint64_t seq, uint64_t seed);

/*
 * Latency: a log2 histogram with 4 sub-buckets per power of two, so a
 * percentile is good to about 12%.
 */
#define GUEST_LAT_BUCKETS 256
struct guest_lat {
	uint64_t count, sum_ns;
	uint64_t bucket[GUEST_LAT_BUCKETS];
};

void guest_lat_add(struct guest_lat *l, uint64_t ns);

/* The pct-th percentile (1..100), as its bucket's middle; 0 if empty. */
uint64_t guest_lat_percentile(const struct guest_lat *l, unsigned pct);

/* ---- fault injection ------------------------------------------------- */

/* The vring error the device must report for kind. */
enum vring_error guest_inject_error(enum guest_inject kind);

/* Whether kind needs VIRTIO_RING_F_INDIRECT_DESC to be expressed. */
bool guest_inject_needs_indirect(enum guest_inject kind);

/* Guest memory a broken chain needs at scratch: 16 * num + 4096 bytes. */
uint64_t guest_inject_scratch_bytes(unsigned num);

/*
 * Add one broken chain of the given kind (a read of sector 0 that breaks
 * one rule; indirect says whether LOOP, OUT_OF_BOUNDS and
 * READ_AFTER_WRITE come through an indirect table, the other kinds choose
 * for themselves), using m's meta block and data buffer and scratch
 * (guest_inject_scratch_bytes).  The queue has num entries; the kinds
 * guest_inject_needs_indirect names need VIRTIO_RING_F_INDIRECT_DESC
 * negotiated, else the device reports VRING_ERR_INDIRECT_FEATURE.
 * Returns the head, or -errno of vring_drv_add_raw, -EFAULT when m or
 * scratch lies outside mem, -EINVAL for GUEST_INJECT_NONE.
 */
int guest_inject_add(struct vring_drv *drv, struct vring_mem *mem,
		     unsigned num, enum guest_inject kind, bool indirect,
		     const struct guest_chain_mem *m, uint64_t scratch,
		     void *token);

/* ---- the guest itself (guest.c and guest-vcpu.c only) ------------------ */

#define GUEST_NO_SLOT     UINT64_MAX
#define GUEST_SEQ_UNKNOWN UINT64_MAX    /* a write failed: content unknown */
#define GUEST_INJECT_AFTER 8u

enum guest_phase { GUEST_PH_GET_ID, GUEST_PH_RUN, GUEST_PH_READBACK };

/* One request slot of the iodepth: its guest memory and what it carries. */
struct guest_req {
	struct guest_chain_mem m;
	struct guest_io io;
	uint64_t slot;                  /* GUEST_NO_SLOT: FLUSH, GET_ID */
	uint64_t seq;                   /* a write's sequence number */
	uint64_t t0;                    /* when published */
	struct guest_req *next_free;
};

/*
 * Lock order: lock is a leaf (nothing is called while it is held).  The
 * device belongs to the image's context: the guest reaches it only with
 * loop_call_sync (setup, teardown) and vblk_get_stats (atomics).
 */
struct guest {
	/* Set by guest_start before the vCPU starts, then read-only. */
	struct blk_image *img;
	struct loop *ctx;
	struct guest_opts o;            /* region and seed resolved */
	char serial[VIRTIO_BLK_ID_BYTES];
	struct vring_mem *mem;
	struct vring_addrs addrs;
	uint64_t meta, data, scratch;   /* guest addresses (guest.c) */
	uint32_t buf_bytes;             /* bs rounded up to 4 KiB */
	struct vblk *dev;
	uint64_t features;              /* negotiated */
	bool indirect;                  /* requests use indirect tables */
	uint64_t nslots;
	int kick_fd, call_fd, stop_fd;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop, quit;         /* guest_stop, guest_free */

	/* The vCPU thread's (guest_start's before it runs). */
	struct vring_drv *drv;
	struct guest_req *reqs, *free_reqs, *pending;
	unsigned inflight;
	uint64_t *slot_seq;             /* with verify only */
	uint64_t *slot_busy;            /* bitmap */
	uint64_t rng, next_seq, cursor, issued, writes_since_flush;
	uint64_t inject_after;
	uint64_t t_start, deadline;     /* deadline 0: none */
	enum guest_phase phase;
	bool id_sent, inject_accepted;
	char inject_token;              /* its address marks the bad chain */
	struct guest_lat lat;
	struct guest_stats local;

	pthread_mutex_t lock;
	struct guest_stats st;          /* protected by lock */
};

/* The vCPU thread's body (guest-vcpu.c); g is a struct guest. */
void *guest_vcpu_main(void *g);

#endif /* VDISK_GUEST_INTERNAL_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated guest: a driver-side thread (a vCPU) that owns its half of
 * one virtio-blk virtqueue (vring.h) and drives a device (vblk.h) over an
 * image exactly as a VM would: it builds request chains in guest memory,
 * publishes them, kicks through an eventfd, waits for the interrupt
 * eventfd, reaps the used ring and checks every status.
 *
 * Its notification policy is fixed, not tuned: after reaping it asks to
 * be notified of the next completion (vring_drv_enable_cb: used_event set
 * to the next used index, or NO_INTERRUPT cleared) and reaps again if
 * more arrived meanwhile, as a simple Linux driver does, so the interrupt
 * figures measure the device's batching.  It kicks only when
 * vring_drv_kick_needed says so.
 *
 * A run: GET_ID once (the answer must be the serial the guest gave its
 * device), then the workload until requests or seconds are used up, then,
 * with verify, a read-back pass (GUEST_VERIFYING) over every block it
 * wrote.  Each request reads or writes one block of bs bytes (a slot:
 * offset + i * bs) as a chain of header, data split into up to 4
 * descriptors at 4 KiB boundaries, and status, direct or through an
 * indirect table.  Written data carries in every 512-byte sector its
 * offset, the write's sequence number and the seed, plus filler derived
 * from them; the guest remembers the sequence number of the last
 * acknowledged write of each slot and never has two requests on one slot
 * in flight, so a read proves each byte is the last one written.  Slots
 * never written in the run are not checked (verify_checked counts the
 * blocks compared).
 *
 * Fault injection: after 8 good requests (fewer if the run asks fewer) are
 * reaped, the guest publishes one broken chain of the asked kind, kicks,
 * and watches: the device must break the queue with the matching
 * vring_error (it then pushes nothing more and sends a configuration
 * interrupt).  The verdict says what happened: "queue broken: descriptor
 * chain loops (as expected)" when it did; "queue broken: X (expected:
 * Y)", "device accepted the broken chain (expected: Y)" or "device did not
 * react to the broken chain" (after 10 s) count as unexpected.  The run
 * then ends DONE, without a read-back pass.  TOO_LONG, NESTED_INDIRECT
 * and BAD_INDIRECT_LEN negotiate indirect descriptors whatever
 * opts.indirect says: they cannot be expressed without.  A queue that
 * breaks without an injection ends the run FAILED (-EIO), the verdict
 * saying why.
 *
 * Threading: guest_start from any thread (it hands the device's setup to
 * the image's context with loop_call_sync, which runs at once when the
 * caller is that context's thread); guest_free, guest_get_stats,
 * guest_finished and guest_stop from any thread.  The vCPU thread is the
 * guest's own; it never waits for the context.
 */
#ifndef VDISK_GUEST_H
#define VDISK_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "block.h"
#include "loop.h"
#include "vring.h"

enum guest_rw {
	GUEST_RW_READ,
	GUEST_RW_WRITE,
	GUEST_RW_RANDREAD,
	GUEST_RW_RANDWRITE,
	GUEST_RW_RANDRW,
};

enum guest_inject {
	GUEST_INJECT_NONE,
	GUEST_INJECT_LOOP,
	GUEST_INJECT_TOO_LONG,
	GUEST_INJECT_OUT_OF_BOUNDS,
	GUEST_INJECT_NESTED_INDIRECT,
	GUEST_INJECT_BAD_INDIRECT_LEN,
	GUEST_INJECT_READ_AFTER_WRITE,
};

/*
 * Limits beyond those of the fields' comments: the area holds at least
 * one block and at most GUEST_MAX_SLOTS (GUEST_MAX_VERIFY_SLOTS with
 * verify: 8 bytes of memory each); a request's chain (bs split as above,
 * plus header and status) fits in queue_size descriptors; iodepth * bs is
 * at most GUEST_MAX_BUFFERS; an injection needs queue_size >= 4.
 */
#define GUEST_MAX_BS           (4u << 20)
#define GUEST_MAX_BUFFERS      (1ull << 30)
#define GUEST_MAX_SLOTS        (1ull << 28)
#define GUEST_MAX_VERIFY_SLOTS (1ull << 24)

struct guest_opts {
	enum guest_rw rw;
	uint32_t bs;                   /* bytes, multiple of 512, <= 4 MiB */
	unsigned iodepth;              /* 1..queue_size */
	unsigned queue_size;           /* power of two, up to 32768 */
	uint64_t offset, region;       /* the area used, bytes, 512-aligned;
					* region 0: up to the image's end */
	uint64_t seconds;              /* run time, if requests is 0 (both
					* 0, run_ms too: until guest_stop) */
	uint64_t run_ms;               /* run time in ms, instead of seconds
					* when not 0 (and requests is 0) */
	uint64_t requests;             /* stop after that many reads and
					* writes (flushes not counted) */
	unsigned rwmix_read;           /* percent of reads for RANDRW */
	unsigned flush_every;          /* a FLUSH after every N writes, 0 */
	bool verify;                   /* check reads; read-back pass at end */
	bool event_idx, indirect;      /* features to negotiate */
	enum guest_inject inject;
	uint64_t seed;                 /* 0: from the clock */
};

enum guest_state {
	GUEST_RUNNING,
	GUEST_VERIFYING,
	GUEST_DONE,
	GUEST_STOPPED,
	GUEST_FAILED,
};

struct guest_stats {
	enum guest_state state;
	uint64_t ops[6];               /* IN, OUT, FLUSH, GET_ID, DISCARD,
					* WRITE_ZEROES */
	uint64_t bytes_read, bytes_written;
	uint64_t status[3];            /* per VIRTIO_BLK_S_* */
	uint64_t unexpected;           /* failures not asked for */
	uint64_t verify_checked, verify_mismatches;
	uint64_t kicks_sent, kicks_suppressed;
	uint64_t irqs_raised, irqs_suppressed;     /* the device's */
	uint64_t irqs_received;                    /* eventfd reads */
	uint64_t lat_mean_ns, lat_p50_ns, lat_p99_ns;
	uint64_t elapsed_ns;
	bool broken;                   /* the device broke the queue */
	enum vring_error device_error;
	char verdict[128];             /* what happened to an injection,
					* or why the queue broke */
	int error;                     /* -errno when FAILED */
	uint64_t features;             /* negotiated */
};

struct guest;

/*
 * Check o (-EINVAL with a bad value, -EROFS for a workload that writes
 * on a read-only image), set up guest memory, the queue and a device on
 * img in ctx (img's context; features negotiated: what the device offers
 * of what the guest wants), and start the vCPU.  Returns 0 and *out, or
 * -errno.  img and ctx are borrowed until guest_free.
 */
int guest_start(struct blk_image *img, struct loop *ctx,
		const struct guest_opts *o, struct guest **out);

/*
 * Snapshot of the counters (the device's included: irqs_raised,
 * irqs_suppressed, broken, device_error).  Latencies are from publishing
 * a chain to reaping it.
 */
void guest_get_stats(struct guest *g, struct guest_stats *st);

/* Whether the test is over (done, stopped or failed). */
bool guest_finished(struct guest *g);

/*
 * Ask the vCPU to stop issuing; it reaps what is in flight, then the test
 * is STOPPED (no read-back pass; FAILED if the queue broke meanwhile, as
 * nothing more comes back then).  Returns at once.  Does nothing to a
 * finished test.
 */
void guest_stop(struct guest *g);

/*
 * Make the vCPU quit at once without waiting for what is in flight (it
 * may be the context thread calling, which completes those), join it,
 * stop the device in ctx (which completes and pushes them; requests held
 * at the gate of a drained image finish when the drain ends, see
 * vblk_stop) and free everything.  Any thread, the image's context thread
 * included (from a bottom half or plain code).  The guest's statistics
 * go with it: read them first.  NULL does nothing.
 */
void guest_free(struct guest *g);

#endif /* VDISK_GUEST_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fake block driver for unit tests: an image held in memory, with an
 * allocation map, fault injection and a way to hold requests in flight.
 *
 *  - Data: size bytes of RAM.  An allocation map at FAKE_BLK_BLOCK says
 *    which blocks hold data: a write allocates the blocks it touches;
 *    write-zeroes and discard free the blocks they cover whole (the
 *    driver is not told about BLK_REQ_UNMAP, so the fake always unmaps)
 *    and zero the rest.  The block layer asks no driver for block status
 *    (an image without a file reads as data throughout), so the map is
 *    for the test to look at, not for the engine.
 *  - Faults: fail the next fail_count[op] requests of op with
 *    fail_err[op] (-errno).  FAKE_BLK_FOREVER fails until cleared.
 *  - Holding: while hold[op] is set, requests of op wait on a CoQueue
 *    (before the fault check and before touching the data) until the test
 *    releases them, oldest first.
 *  - Interleaving: with yields > 0 each request yields to the loop 0..yields
 *    times (a one-shot bottom half wakes it), so requests of different
 *    coroutines overlap in a pseudo-random order without any sleep.
 *  - Checks: per-op counts, requests in flight and their maximum, the
 *    modifying requests since the last flush, and the writes, write-zeroes
 *    and discards not aligned to check_align (if set).  An optional hook
 *    sees every request as it arrives.
 *
 * Besides the driver, a fake guest: requests from coroutines and a random
 * writer, with FAKE_WAIT_FOR to poll until a condition holds.
 *
 * Threading: everything runs in the thread of the context the image was
 * opened in, like the image itself.
 */
#ifndef VDISK_FAKE_BLK_H
#define VDISK_FAKE_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include <unistd.h>

#include "block.h"
#include "coroutine.h"
#include "loop.h"
#include "test-util.h"

#define FAKE_BLK_BLOCK   4096u
#define FAKE_BLK_FOREVER UINT32_MAX

struct fake_blk {
	struct loop *ctx;
	struct blk_image *img;          /* owned: fake_blk_free closes it */
	uint64_t size;
	uint8_t *data;
	uint8_t *alloc;                 /* one byte per FAKE_BLK_BLOCK */

	int fail_err[BLK_OP_NR];
	uint32_t fail_count[BLK_OP_NR];
	bool hold[BLK_OP_NR];
	struct co_queue held;
	unsigned nheld;
	unsigned yields;
	uint64_t rng;

	uint64_t ops[BLK_OP_NR];        /* requests seen (failed included) */
	uint64_t failed;
	unsigned in_flight[BLK_OP_NR], max_in_flight[BLK_OP_NR];
	uint64_t dirty_since_flush;     /* writes, zeroes, discards */
	uint64_t check_align, misaligned;
	void (*hook)(void *opaque, struct fake_blk *fk, enum blk_op op,
		     uint64_t off, uint64_t bytes);
	void *hook_opaque;
};

/*
 * A fake image of size bytes (all holes) opened in ctx under name.
 * Returns NULL on out of memory.  Free with fake_blk_free.
 */
struct fake_blk *fake_blk_new(struct loop *ctx, const char *name,
			      uint64_t size);

/* Close the image and free everything.  No request may be held.  NULL ok. */
void fake_blk_free(struct fake_blk *fk);

/* Fill [off, off + len) with pseudo-random bytes from *seed (allocated). */
void fake_blk_fill(struct fake_blk *fk, uint64_t off, uint64_t len,
		   uint64_t *seed);

/* Fail the next n requests of op with err (-errno); n = 0 clears. */
void fake_blk_fail(struct fake_blk *fk, enum blk_op op, uint32_t n, int err);

/*
 * Release the oldest held request (it runs at once, from plain code).
 * Returns false if none is held.
 */
bool fake_blk_release(struct fake_blk *fk);

/* Stop holding any op and release every held request. */
void fake_blk_release_all(struct fake_blk *fk);

/* Whether [off, off + len) holds any allocated block. */
bool fake_blk_allocated(const struct fake_blk *fk, uint64_t off,
			uint64_t len);

/* map[i]: whether granule i (of g bytes) holds an allocated block. */
void fake_blk_map(const struct fake_blk *fk, uint64_t g, bool *map);

/* Make dst's data and allocation a copy of src's (same size). */
void fake_blk_copy(struct fake_blk *dst, const struct fake_blk *src);

/* xorshift64*: the tests' pseudo-random numbers. */
uint64_t fake_rng(uint64_t *s);

/* ---- a fake guest: requests from coroutines, polled for ---------------- */

/*
 * Poll ctx until cond holds or TEST_WAIT_LIMIT_NS passes; the value of
 * cond.  From the test's own (plain) code only.
 */
#define FAKE_WAIT_FOR(ctx, cond)                                           \
	({                                                                 \
		unsigned long long end_ = test_now_ns() + TEST_WAIT_LIMIT_NS; \
		while (!(cond) && test_now_ns() < end_) {                  \
			if (!loop_poll((ctx), false))                      \
				usleep(20);                                \
		}                                                          \
		(bool)(cond);                                              \
	})

/* Poll ctx a few ms without expecting anything. */
void fake_poll_some(struct loop *ctx);

/*
 * One request (read, write, write-zeroes, discard, truncate to off) run by
 * a coroutine of its own; ret and done tell how it ended.  buf is borrowed
 * until done.
 */
struct fake_io {
	struct blk_image *img;
	enum blk_op op;
	uint64_t off, len;
	void *buf;
	ssize_t ret;
	bool done;
};

/* Start io; false if no coroutine could be made. */
bool fake_io_start(struct fake_io *io);

/* Run one request to its end: its result, or -ETIMEDOUT past the limit. */
ssize_t fake_io_run(struct loop *ctx, struct blk_image *img, enum blk_op op,
		    uint64_t off, void *buf, uint64_t len);

/*
 * A guest that sends n requests one after the other to random places of
 * img: writes of random bytes (1 byte to FAKE_WRITER_MAX), and one in four
 * a write-zeroes or a discard.  each(opaque), if set, runs after each.
 */
#define FAKE_WRITER_MAX (48u * 1024)

struct fake_writer {
	struct blk_image *img;
	uint64_t seed;
	int n;
	void (*each)(void *opaque);
	void *opaque;
	int errors;                     /* requests that failed */
	bool done;
};

/* Start w; false if no coroutine could be made. */
bool fake_writer_start(struct fake_writer *w);

#endif /* VDISK_FAKE_BLK_H */

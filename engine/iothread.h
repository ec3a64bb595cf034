/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * I/O threads: a named thread ("vdisk-io/N") that runs one event loop.
 *
 * Threading:
 *  - iothread_new and iothread_free: the thread that owns the iothread
 *    (normally main), never the iothread itself.
 *  - iothread_get_ctx: any thread; the context lives as long as the
 *    iothread.  Work is handed to it with loop_bh_schedule* or
 *    co_schedule.
 *  - Callbacks scheduled there run in the iothread, one at a time.
 */
#ifndef VDISK_IOTHREAD_H
#define VDISK_IOTHREAD_H

#include "loop.h"

struct iothread;

/*
 * Start an iothread named "vdisk-io/<index>" polling a new context.
 * Returns 0 and sets *out, or -errno.
 */
int iothread_new(unsigned index, struct iothread **out);

/* The iothread's event loop. */
struct loop *iothread_get_ctx(struct iothread *t);

/*
 * Stop the thread and free it: work already scheduled runs first (the
 * loop is polled until it makes no more progress), then the thread exits
 * and is joined, and the context is freed.  NULL is a no-op.
 */
void iothread_free(struct iothread *t);

#endif /* VDISK_IOTHREAD_H */

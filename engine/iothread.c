/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * I/O threads: each polls its own event loop until told to stop.
 *
 * Stopping is itself a BH in the thread's context, so it is ordered after
 * every BH scheduled before iothread_free was called; after it the thread
 * keeps polling without blocking until a pass makes no progress, so
 * completions that those BHs started still run before the join.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>

#include "iothread.h"

struct iothread {
	pthread_t thread;
	struct loop *ctx;
	bool stopping;           /* iothread only: set by the stop BH */
	struct loop_bh stop_bh;
	char name[16];
};

static void iothread_stop_bh(void *opaque)
{
	struct iothread *t = opaque;

	t->stopping = true;
}

static void *iothread_run(void *opaque)
{
	struct iothread *t = opaque;

	pthread_setname_np(pthread_self(), t->name);
	loop_set_current(t->ctx);
	while (!t->stopping)
		loop_poll(t->ctx, true);
	while (loop_poll(t->ctx, false))
		;
	loop_set_current(NULL);
	return NULL;
}

int iothread_new(unsigned index, struct iothread **out)
{
	struct iothread *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	/* Thread names are limited to 15 characters. */
	snprintf(t->name, sizeof(t->name), "vdisk-io/%u", index);
	ret = loop_new(&t->ctx);
	if (ret < 0)
		goto out_free;
	loop_bh_init(&t->stop_bh, t->ctx, iothread_stop_bh, t);
	ret = -pthread_create(&t->thread, NULL, iothread_run, t);
	if (ret < 0)
		goto out_free_ctx;
	*out = t;
	return 0;

out_free_ctx:
	loop_free(t->ctx);
out_free:
	free(t);
	return ret;
}

struct loop *iothread_get_ctx(struct iothread *t)
{
	return t->ctx;
}

void iothread_free(struct iothread *t)
{
	if (!t)
		return;
	loop_bh_schedule(&t->stop_bh);
	pthread_join(t->thread, NULL);
	loop_free(t->ctx);
	free(t);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The simulated guest's vCPU (guest.h): the thread that drives the
 * device, phase after phase, and checks every answer.  guest.c sets it
 * up; guest-req.c builds its chains.
 *
 * Design notes
 *
 * The loop, per phase (GET_ID, the workload, the read-back pass): issue
 * requests while a struct guest_req is free and the phase has one to
 * give, publish them all, kick if vring_drv_kick_needed; sleep in poll()
 * on the interrupt and stop eventfds; reap, then vring_drv_enable_cb and
 * reap again while it says more came.  A chain that does not fit in the
 * free descriptors waits as `pending` for the next round.  The phase ends
 * when nothing is in flight and nothing could be issued.  A request's
 * token in the ring is its struct guest_req.
 *
 * Verification state: slot_seq[i] is the sequence number of the last
 * acknowledged write of slot i (0: never written in this run,
 * GUEST_SEQ_UNKNOWN: a write failed, so its content is unknown); the
 * slot_busy bitmap marks the slots a request is using, so no two requests
 * ever share one, and a read is checked against a record that cannot
 * change under it.
 *
 * Counters are kept in g->local and copied to g->st under g->lock once per
 * loop round, for guest_get_stats.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "compiler.h"
#include "guest-internal.h"
#include "vblk.h"

#define POLL_MS        100
#define INJECT_WAIT_NS (10ull * 1000000000ull)
#define BIT(n)         (UINT64_C(1) << (n))

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(0x2545f4914f6cdd1d);
}

static bool busy_test(const struct guest *g, uint64_t i)
{
	return g->slot_busy[i / 64] & BIT(i % 64);
}

static void busy_set(struct guest *g, uint64_t i, bool on)
{
	if (on)
		g->slot_busy[i / 64] |= BIT(i % 64);
	else
		g->slot_busy[i / 64] &= ~BIT(i % 64);
}

static void *host(const struct guest *g, uint64_t addr, uint64_t len)
{
	return vring_mem_ptr(g->mem, addr, len);
}

/* ---- statistics ------------------------------------------------------- */

static void publish(struct guest *g)
{
	struct guest_stats *l = &g->local;

	if (l->state == GUEST_RUNNING || l->state == GUEST_VERIFYING)
		l->elapsed_ns = loop_now_ns() - g->t_start;
	if (g->lat.count) {
		l->lat_mean_ns = g->lat.sum_ns / g->lat.count;
		l->lat_p50_ns = guest_lat_percentile(&g->lat, 50);
		l->lat_p99_ns = guest_lat_percentile(&g->lat, 99);
	}
	pthread_mutex_lock(&g->lock);
	g->st = *l;
	pthread_mutex_unlock(&g->lock);
}

static bool device_broken(const struct guest *g, struct vblk_stats *ds)
{
	vblk_get_stats(g->dev, ds);
	return ds->broken;
}

static const char *broken_reason(const struct vblk_stats *ds)
{
	if (ds->error != VRING_ERR_NONE)
		return vring_error_str(ds->error);
	return ds->reason ? ds->reason : "unknown reason";
}

/* ---- issuing ---------------------------------------------------------- */

/* A free slot for a read or a write, or GUEST_NO_SLOT. */
static uint64_t pick_slot(struct guest *g, bool random, bool readback)
{
	uint64_t i;

	if (readback) {
		for (; g->cursor < g->nslots; g->cursor++) {
			i = g->cursor;
			if (g->slot_seq[i] != 0 &&
			    g->slot_seq[i] != GUEST_SEQ_UNKNOWN) {
				g->cursor++;
				return i;
			}
		}
		return GUEST_NO_SLOT;
	}
	if (!random) {
		i = g->cursor % g->nslots;
		if (busy_test(g, i))
			return GUEST_NO_SLOT;
		g->cursor++;
		return i;
	}
	/* At most inflight slots are busy: the probe ends quickly. */
	i = rng_next(&g->rng) % g->nslots;
	for (unsigned k = 0; k <= g->inflight; k++) {
		if (!busy_test(g, i))
			return i;
		i = (i + 1) % g->nslots;
	}
	return GUEST_NO_SLOT;
}

/* Whether the workload phase may issue one more read or write. */
static bool run_may_issue(struct guest *g)
{
	const struct guest_opts *o = &g->o;

	if (atomic_load(&g->stop))
		return false;
	if (o->inject != GUEST_INJECT_NONE && g->issued >= g->inject_after)
		return false;
	if (o->requests && g->issued >= o->requests)
		return false;
	return !g->deadline || loop_now_ns() < g->deadline;
}

static bool is_read(struct guest *g)
{
	switch (g->o.rw) {
	case GUEST_RW_READ:
	case GUEST_RW_RANDREAD:
		return true;
	case GUEST_RW_RANDRW:
		return rng_next(&g->rng) % 100 < g->o.rwmix_read;
	default:
		return false;
	}
}

/* Fill rq with the next request of the phase; false if none now. */
static bool next_request(struct guest *g, struct guest_req *rq)
{
	bool random = g->o.rw >= GUEST_RW_RANDREAD, read;
	uint64_t off;

	rq->slot = GUEST_NO_SLOT;
	rq->io = (struct guest_io){ .data = rq->m.data, .len = g->o.bs };
	if (g->phase == GUEST_PH_GET_ID) {
		if (g->id_sent)
			return false;
		g->id_sent = true;
		rq->io = (struct guest_io){
			.type = VIRTIO_BLK_T_GET_ID, .data = rq->m.small,
			.len = VIRTIO_BLK_ID_BYTES, .writable = true,
		};
		return true;
	}
	if (g->phase == GUEST_PH_RUN) {
		if (!run_may_issue(g))
			return false;
		if (g->o.flush_every &&
		    g->writes_since_flush >= g->o.flush_every) {
			g->writes_since_flush = 0;
			rq->io = (struct guest_io){
				.type = VIRTIO_BLK_T_FLUSH,
			};
			return true;
		}
		read = is_read(g);
	} else {
		if (atomic_load(&g->stop))
			return false;
		read = true;
	}
	rq->slot = pick_slot(g, random, g->phase == GUEST_PH_READBACK);
	if (rq->slot == GUEST_NO_SLOT)
		return false;
	busy_set(g, rq->slot, true);
	off = g->o.offset + rq->slot * g->o.bs;
	rq->io.sector = off / VIRTIO_BLK_SECTOR;
	rq->io.type = read ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
	rq->io.writable = read;
	if (g->phase == GUEST_PH_RUN)
		g->issued++;
	if (!read) {
		rq->seq = ++g->next_seq;
		g->writes_since_flush++;
		guest_pattern_fill(host(g, rq->m.data, g->o.bs), g->o.bs, off,
				   rq->seq, g->o.seed);
	}
	return true;
}

static void kick(struct guest *g)
{
	uint64_t one = 1;

	vring_drv_publish(g->drv);
	if (!vring_drv_kick_needed(g->drv)) {
		g->local.kicks_suppressed++;
		return;
	}
	g->local.kicks_sent++;
	/* EAGAIN: the counter is full, the device will wake anyway. */
	if (write(g->kick_fd, &one, sizeof(one)) < 0)
		return;
}

/* Add what the phase has to give; returns the count or -errno. */
static int issue(struct guest *g)
{
	int n = 0, ret;

	for (;;) {
		struct guest_req *rq = g->pending;

		if (!rq) {
			rq = g->free_reqs;
			if (!rq || !next_request(g, rq))
				break;
			g->free_reqs = rq->next_free;
		}
		ret = guest_chain_add(g->drv, g->mem, &rq->m, &rq->io,
				      g->indirect, rq);
		if (ret == -ENOSPC) {
			g->pending = rq;          /* after the next reap */
			break;
		}
		if (ret < 0)
			return ret;
		g->pending = NULL;
		rq->t0 = loop_now_ns();
		g->inflight++;
		n++;
	}
	if (n)
		kick(g);
	return n;
}

/* ---- completions ------------------------------------------------------ */

static int op_index(uint32_t type)
{
	switch (type) {
	case VIRTIO_BLK_T_IN: return 0;
	case VIRTIO_BLK_T_OUT: return 1;
	case VIRTIO_BLK_T_FLUSH: return 2;
	case VIRTIO_BLK_T_GET_ID: return 3;
	case VIRTIO_BLK_T_DISCARD: return 4;
	default: return 5;
	}
}

/* Check a read's data against the slot's last acknowledged write. */
static void verify_read(struct guest *g, const struct guest_req *rq)
{
	uint64_t seq = g->slot_seq ? g->slot_seq[rq->slot] : 0;
	uint64_t off = g->o.offset + rq->slot * g->o.bs;

	if (!g->o.verify || seq == 0 || seq == GUEST_SEQ_UNKNOWN)
		return;
	g->local.verify_checked++;
	if (guest_pattern_check(host(g, rq->m.data, g->o.bs), g->o.bs, off,
				seq, g->o.seed))
		g->local.verify_mismatches++;
}

static void complete(struct guest *g, struct guest_req *rq, uint32_t len)
{
	struct guest_stats *l = &g->local;
	uint8_t st = guest_chain_status(g->mem, &rq->m);
	bool ok = st == VIRTIO_BLK_S_OK;
	uint32_t want = rq->io.writable ? rq->io.len + 1 : 1;
	const void *id;

	guest_lat_add(&g->lat, loop_now_ns() - rq->t0);
	l->ops[op_index(rq->io.type)]++;
	if (st < ARRAY_SIZE(l->status))
		l->status[st]++;
	if (!ok || len != want)
		l->unexpected++;
	switch (rq->io.type) {
	case VIRTIO_BLK_T_IN:
		if (ok) {
			l->bytes_read += rq->io.len;
			verify_read(g, rq);
		}
		break;
	case VIRTIO_BLK_T_OUT:
		if (ok)
			l->bytes_written += rq->io.len;
		if (g->slot_seq)
			g->slot_seq[rq->slot] = ok ? rq->seq :
						     GUEST_SEQ_UNKNOWN;
		break;
	case VIRTIO_BLK_T_GET_ID:
		id = host(g, rq->m.small, VIRTIO_BLK_ID_BYTES);
		if (ok && memcmp(id, g->serial, VIRTIO_BLK_ID_BYTES) != 0)
			l->unexpected++;
		break;
	default:
		break;
	}
	if (rq->slot != GUEST_NO_SLOT)
		busy_set(g, rq->slot, false);
	rq->next_free = g->free_reqs;
	g->free_reqs = rq;
	g->inflight--;
}

/* Reap until the ring is empty with notifications enabled again. */
static int reap(struct guest *g)
{
	void *tok;
	uint32_t len;
	int ret;

	do {
		while ((ret = vring_drv_get_used(g->drv, &tok, &len)) == 1) {
			if (tok == &g->inject_token)
				g->inject_accepted = true;
			else
				complete(g, tok, len);
		}
		if (ret < 0)
			return ret;
	} while (vring_drv_enable_cb(g->drv));
	return 0;
}

/* Sleep until the interrupt, a stop or timeout_ms. */
static void wait_irq(struct guest *g, int timeout_ms)
{
	struct pollfd p[2] = {
		{ .fd = g->call_fd, .events = POLLIN },
		{ .fd = g->stop_fd, .events = POLLIN },
	};
	uint64_t n;

	if (poll(p, 2, timeout_ms) <= 0)
		return;
	if ((p[0].revents & POLLIN) &&
	    read(g->call_fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		g->local.irqs_received++;
	/* The flags say what was asked; the eventfd only wakes us. */
	if ((p[1].revents & POLLIN) &&
	    read(g->stop_fd, &n, sizeof(n)) < 0)
		return;
}

/* ---- phases ----------------------------------------------------------- */

static int run_phase(struct guest *g, enum guest_phase ph)
{
	struct vblk_stats ds;
	int n, ret;

	g->phase = ph;
	g->cursor = 0;
	for (;;) {
		if (atomic_load(&g->quit))
			return 0;
		n = issue(g);
		if (n < 0)
			return n;
		if (g->inflight == 0 && n == 0 && !g->pending)
			return 0;
		if (device_broken(g, &ds))
			return -EIO;
		wait_irq(g, POLL_MS);
		ret = reap(g);
		if (ret < 0)
			return ret;
		publish(g);
	}
}

static void __attribute__((format(printf, 2, 3)))
set_verdict(struct guest *g, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g->local.verdict, sizeof(g->local.verdict), fmt, ap);
	va_end(ap);
}

/* Publish one broken chain and watch what the device does with it. */
static int run_inject(struct guest *g)
{
	enum vring_error want = guest_inject_error(g->o.inject);
	struct guest_req *rq = g->free_reqs;
	struct vblk_stats ds;
	uint64_t end;
	int ret;

	if (!rq)
		return -EIO;
	ret = guest_inject_add(g->drv, g->mem, g->o.queue_size, g->o.inject,
			       g->indirect, &rq->m, g->scratch,
			       &g->inject_token);
	if (ret < 0)
		return ret;
	kick(g);
	end = loop_now_ns() + INJECT_WAIT_NS;
	while (!atomic_load(&g->quit) && !atomic_load(&g->stop) &&
	       loop_now_ns() < end) {
		if (device_broken(g, &ds)) {
			if (ds.error == want) {
				set_verdict(g, "queue broken: %s (as expected)",
					    vring_error_str(ds.error));
			} else {
				set_verdict(g, "queue broken: %s "
					    "(expected: %s)",
					    broken_reason(&ds),
					    vring_error_str(want));
				g->local.unexpected++;
			}
			return 0;
		}
		ret = reap(g);
		if (ret < 0)
			return ret;
		if (g->inject_accepted) {
			set_verdict(g, "device accepted the broken chain "
				    "(expected: %s)", vring_error_str(want));
			g->local.unexpected++;
			return 0;
		}
		wait_irq(g, POLL_MS);
	}
	if (!atomic_load(&g->quit) && !atomic_load(&g->stop)) {
		set_verdict(g, "device did not react to the broken chain");
		g->local.unexpected++;
	}
	return 0;
}

static void finish(struct guest *g, int ret)
{
	struct guest_stats *l = &g->local;
	struct vblk_stats ds;

	l->elapsed_ns = loop_now_ns() - g->t_start;
	if (ret < 0) {
		l->state = GUEST_FAILED;
		l->error = ret;
		if (device_broken(g, &ds)) {
			set_verdict(g, "queue broken: %s", broken_reason(&ds));
			l->unexpected++;
		}
	} else {
		l->state = atomic_load(&g->stop) ? GUEST_STOPPED : GUEST_DONE;
	}
	publish(g);
}

void *guest_vcpu_main(void *opaque)
{
	struct guest *g = opaque;
	int ret;

	g->t_start = loop_now_ns();
	/* Beyond some 130 years the run is simply unbounded. */
	if (!g->o.requests && g->o.run_ms && g->o.run_ms < (1ull << 42))
		g->deadline = g->t_start + g->o.run_ms * 1000000ull;
	else if (!g->o.requests && g->o.seconds && g->o.seconds < (1ull << 32))
		g->deadline = g->t_start + g->o.seconds * 1000000000ull;
	ret = run_phase(g, GUEST_PH_GET_ID);
	if (ret == 0)
		ret = run_phase(g, GUEST_PH_RUN);
	if (atomic_load(&g->quit))
		return NULL;
	if (ret == 0 && !atomic_load(&g->stop)) {
		if (g->o.inject != GUEST_INJECT_NONE) {
			ret = run_inject(g);
		} else if (g->o.verify) {
			g->local.state = GUEST_VERIFYING;
			publish(g);
			ret = run_phase(g, GUEST_PH_READBACK);
		}
	}
	if (!atomic_load(&g->quit))
		finish(g, ret);
	return NULL;
}

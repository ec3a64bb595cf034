/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The ioctl ABI (src/vdisk-ioctl.h) and the drains users hold.
 *
 * Dispatch: the type letter, then the number (unknown: ENOTTY), then the
 * whole command, which encodes direction and size (another one: EINVAL),
 * then the struct's version, size and reserved bytes (EINVAL), then for
 * mutating commands the handle's open mode (EBADF; fi->flags is 0 in an
 * ioctl, so the mode kept at open is used) and the caller (root or the
 * backing file's owner, else EPERM).
 *
 * Design notes on drains.  A drain (struct vdfs_drain) belongs to a
 * handle and to the process that began it.  It ends exactly once, by
 * whoever claims it first under fs->drain_lock: DRAIN_END or RELEASE of
 * the handle (a FUSE worker), the process's exit (its pidfd becomes
 * readable) or the timeout (both watched by the control iothread), or
 * shutdown (main).  The claimer calls blk_drained_end outside the lock
 * and then schedules unwatch_bh in the control thread, which removes the
 * pidfd handler and timer and frees the drain; watch_bh, which installs
 * them, is scheduled before the drain becomes visible, and BHs run in
 * scheduling order, so unwatch always follows watch.  RELEASE alone would
 * not do: it is a background request and can queue in the kernel behind
 * the very requests the drain postpones (DESIGN.md "Drain"); the pidfd
 * ends the drain however full that queue is, and a twice-a-second look
 * at /proc ends it for a process stuck in its exit (drain_exit_check).
 * A release waits for an end in progress on its handle, so the image is
 * never closed under it.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "vdisk-ioctl.h"
#include "vdfs.h"

struct vdfs_drain {
	struct vdfs_handle *h;         /* const */
	struct vdfs_node *node;        /* const */
	struct blk_image *img;         /* const: the image drained */
	pid_t pid;                     /* const */
	int pidfd;                     /* const; closed by unwatch */
	uint32_t timeout_sec;          /* const */
	bool ended;                    /* drain_lock */
	LIST_ENTRY(vdfs_drain) link;   /* fs->drains, drain_lock */
	struct loop_timer timer;       /* control thread only */
	struct loop_timer exit_check;  /* control thread only */
	struct loop_bh watch_bh, unwatch_bh;
};

/* ---- checks ---------------------------------------------------------- */

static bool all_zero(const void *p, size_t len)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < len; i++)
		if (c[i])
			return false;
	return true;
}

struct ioc_desc {
	unsigned cmd;
	size_t size;
	size_t reserved_off;           /* reserved bytes up to the end */
	bool mutating;
};

#define IOC_DESC(c, type, mut) \
	{ c, sizeof(type), offsetof(type, reserved), mut }

static const struct ioc_desc ioc_descs[] = {
	[1] = IOC_DESC(VDISK_IOC_INFO, struct vdisk_ioc_info, false),
	[2] = IOC_DESC(VDISK_IOC_FLUSH, struct vdisk_ioc_flush, true),
	[3] = IOC_DESC(VDISK_IOC_DRAIN_BEGIN, struct vdisk_ioc_drain_begin,
		       true),
	[4] = IOC_DESC(VDISK_IOC_DRAIN_END, struct vdisk_ioc_drain_end, true),
	[5] = IOC_DESC(VDISK_IOC_STATS_RESET, struct vdisk_ioc_stats_reset,
		       true),
	[6] = IOC_DESC(VDISK_IOC_MIRROR_START, struct vdisk_ioc_mirror_start,
		       true),
	[7] = IOC_DESC(VDISK_IOC_MIRROR_STATUS,
		       struct vdisk_ioc_mirror_status, false),
	[8] = IOC_DESC(VDISK_IOC_MIRROR_COMPLETE,
		       struct vdisk_ioc_mirror_complete, true),
	[9] = IOC_DESC(VDISK_IOC_MIRROR_CANCEL, struct vdisk_ioc_mirror_cancel,
		       true),
	[10] = IOC_DESC(VDISK_IOC_MIRROR_PAUSE, struct vdisk_ioc_mirror_pause,
			true),
	[11] = IOC_DESC(VDISK_IOC_MIRROR_RESUME, struct vdisk_ioc_mirror_pause,
			true),
	[12] = IOC_DESC(VDISK_IOC_MIRROR_SET_SPEED,
			struct vdisk_ioc_mirror_set_speed, true),
	/* Not mutating as such: vringtest.c checks what each one needs. */
	[13] = IOC_DESC(VDISK_IOC_VRING_TEST_START,
			struct vdisk_ioc_vring_start, false),
	[14] = IOC_DESC(VDISK_IOC_VRING_TEST_STATUS,
			struct vdisk_ioc_vring_status, false),
	[15] = IOC_DESC(VDISK_IOC_VRING_TEST_STOP,
			struct vdisk_ioc_vring_stop, false),
};

/* The header every struct starts with. */
struct ioc_head {
	uint32_t version;
	uint32_t size;
};

static int check_struct(const struct ioc_desc *d, const void *in,
			size_t in_bufsz, size_t out_bufsz)
{
	struct ioc_head head;

	if (!in || in_bufsz < d->size || out_bufsz < d->size)
		return -EINVAL;
	memcpy(&head, in, sizeof(head));
	if (head.version != VDISK_IOC_VERSION || head.size != d->size)
		return -EINVAL;
	if (!all_zero((const char *)in + d->reserved_off,
		      d->size - d->reserved_off))
		return -EINVAL;
	return 0;
}

static int check_caller(fuse_req_t req, struct vdfs_handle *h)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	int ret;

	if ((h->flags & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	if (ctx->uid == 0)
		return 0;
	ret = vdfs_node_stat(h->node, &st);
	if (ret < 0)
		return ret;
	return ctx->uid == st.st_uid ? 0 : -EPERM;
}

/* ---- INFO and STATS_RESET: in the image's context -------------------- */

struct ctx_ioctl {
	struct loop_bh bh;
	fuse_req_t req;
	struct vdfs_node *node;
	struct blk_image *img;
	unsigned open_handles;
	struct vdisk_ioc_info info;    /* INFO's reply */
	struct vdisk_ioc_stats_reset reset;
};

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static void fill_stats(struct vdisk_ioc_stats *o, const struct blk_stats *s)
{
	static const enum blk_op map[] = {
		[VDISK_IOC_OP_READ] = BLK_OP_READ,
		[VDISK_IOC_OP_WRITE] = BLK_OP_WRITE,
		[VDISK_IOC_OP_FLUSH] = BLK_OP_FLUSH,
		[VDISK_IOC_OP_DISCARD] = BLK_OP_DISCARD,
		[VDISK_IOC_OP_WRITE_ZEROES] = BLK_OP_WRITE_ZEROES,
	};
	unsigned nb = VDISK_MIN(VDISK_IOC_LAT_BUCKETS, BLK_LAT_BUCKETS);

	_Static_assert(VDISK_IOC_OP_WRITE_ZEROES < VDISK_IOC_OP_NR, "ops");
	for (unsigned i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		o->ops[i] = s->ops[map[i]];
		o->bytes[i] = s->bytes[map[i]];
		for (unsigned b = 0; b < nb; b++)
			o->latency[i][b] = s->latency[map[i]][b];
	}
	o->barriers = s->barriers;
	o->errors = s->errors;
	o->postponed = s->postponed;
	o->serialised = s->serialised;
	o->bounced = s->bounced;
	o->in_flight = s->in_flight;
	o->max_in_flight = s->max_in_flight;
}

static void ctx_ioctl_done(struct ctx_ioctl *c)
{
	struct vdfs_node *n = c->node;

	free(c);
	atomic_fetch_sub(&n->pending, 1);
}

static void info_bh(void *opaque)
{
	struct ctx_ioctl *c = opaque;
	struct vdisk_ioc_info *o = &c->info;
	struct blk_stats st;
	struct blk_info bi;

	blk_get_info(c->img, &bi);
	blk_get_stats(c->img, &st);
	memset(o, 0, sizeof(*o));
	o->version = VDISK_IOC_VERSION;
	o->size = sizeof(*o);
	o->image_size = bi.size;
	copy_str(o->name, sizeof(o->name), c->node->name);
	copy_str(o->backing, sizeof(o->backing), c->node->backing);
	copy_str(o->driver, sizeof(o->driver), bi.driver);
	copy_str(o->cache, sizeof(o->cache),
		 bi.cache == BLK_CACHE_NONE ? "none" : "writeback");
	o->flags = (bi.read_only ? VDISK_IOC_INFO_READ_ONLY : 0) |
		   (atomic_load(&c->node->pivoted) ? VDISK_IOC_INFO_PIVOTED : 0);
	o->iothread = c->node->iothread;
	o->open_handles = c->open_handles;
	o->drain_depth = bi.drain_depth;
	o->mirror_state = vdfs_mirror_state(c->node);
	fill_stats(&o->stats, &st);
	fuse_reply_ioctl(c->req, 0, o, sizeof(*o));
	ctx_ioctl_done(c);
}

static void stats_reset_bh(void *opaque)
{
	struct ctx_ioctl *c = opaque;

	blk_reset_stats(c->img);
	fuse_reply_ioctl(c->req, 0, &c->reset, sizeof(c->reset));
	ctx_ioctl_done(c);
}

static void run_in_image_ctx(fuse_req_t req, struct vdfs_node *n,
			     struct blk_image *img, loop_bh_fn *fn,
			     const void *in, size_t in_size)
{
	struct ctx_ioctl *c = calloc(1, sizeof(*c));

	if (!c) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	c->req = req;
	c->node = n;
	c->img = img;
	pthread_mutex_lock(&n->lock);
	c->open_handles = n->open_count;
	pthread_mutex_unlock(&n->lock);
	if (fn == stats_reset_bh)
		memcpy(&c->reset, in, in_size);
	atomic_fetch_add(&n->pending, 1);
	loop_bh_init(&c->bh, vdfs_node_ctx(n), fn, c);
	loop_bh_schedule(&c->bh);
}

/* ---- drains ---------------------------------------------------------- */

/* Caller holds drain_lock.  True if the caller now ends d. */
static bool drain_claim_locked(struct vdfs_drain *d)
{
	if (d->ended)
		return false;
	d->ended = true;
	d->h->drain = NULL;
	d->h->drain_ending++;
	vdfs_g.drains_ending++;
	LIST_REMOVE(d, link);
	return true;
}

/* After a claim, without drain_lock: end it in the engine, forget it. */
static void drain_finish(struct vdfs_drain *d)
{
	struct vdfs_handle *h = d->h;

	blk_drained_end(d->img);
	/* d belongs to the control thread from here. */
	loop_bh_schedule(&d->unwatch_bh);
	pthread_mutex_lock(&vdfs_g.drain_lock);
	h->drain_ending--;
	vdfs_g.drains_ending--;
	pthread_cond_broadcast(&vdfs_g.drain_cond);
	pthread_mutex_unlock(&vdfs_g.drain_lock);
}

/* Control thread: the process or the clock ended d. */
static void drain_expire(struct vdfs_drain *d, bool timeout)
{
	bool mine;

	loop_set_fd_handler(vdfs_g.ctl_ctx, d->pidfd, NULL, NULL, NULL);
	loop_timer_del(&d->timer);
	loop_timer_del(&d->exit_check);
	pthread_mutex_lock(&vdfs_g.drain_lock);
	mine = drain_claim_locked(d);
	pthread_mutex_unlock(&vdfs_g.drain_lock);
	if (!mine)
		return;
	if (timeout)
		log_warn("drain of %s ended: timeout", d->node->name);
	else
		log_warn("drain of %s ended: process %d exited",
			 d->node->name, (int)d->pid);
	drain_finish(d);
}

static void drain_pid_exited(void *opaque)
{
	drain_expire(opaque, false);
}

/* Every thread of pid is exiting (PF_EXITING in its flags). */
static bool process_exiting(pid_t pid)
{
	char path[320], buf[512];
	struct dirent *de;
	bool any = false, all = true;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while (all && (de = readdir(dir))) {
		unsigned long flags = 0;
		char *p;
		FILE *f;
		size_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat",
			 (int)pid, de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;      /* that thread is gone */
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* After "(comm) ": state, ppid, pgrp, session, tty_nr,
		 * tpgid, then flags. */
		p = strrchr(buf, ')');
		if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %lu",
				 &flags) != 1)
			continue;
		any = true;
		all = (flags & 0x4) != 0;      /* PF_EXITING */
	}
	closedir(dir);
	return any && all;
}

/*
 * The pidfd turns readable only once the process has exited.  A process
 * killed while it holds a dirty writeback-cached file can stay in its
 * exit forever: closing the file writes the pages back, and those writes
 * wait for the very drain it holds.  So look for a process that is past
 * the point of no return, twice a second.
 */
#define DRAIN_EXIT_CHECK_NS (500ull * 1000000ull)

static void drain_exit_check(void *opaque)
{
	struct vdfs_drain *d = opaque;

	if (process_exiting(d->pid)) {
		drain_expire(d, false);
		return;
	}
	loop_timer_mod(&d->exit_check, loop_now_ns() + DRAIN_EXIT_CHECK_NS);
}

static void drain_timeout(void *opaque)
{
	drain_expire(opaque, true);
}

static void drain_watch_bh(void *opaque)
{
	struct vdfs_drain *d = opaque;
	int ret;

	loop_timer_init(&d->timer, vdfs_g.ctl_ctx, drain_timeout, d);
	loop_timer_init(&d->exit_check, vdfs_g.ctl_ctx, drain_exit_check, d);
	loop_timer_mod(&d->exit_check, loop_now_ns() + DRAIN_EXIT_CHECK_NS);
	if (d->timeout_sec)
		loop_timer_mod(&d->timer, loop_now_ns() +
			       (uint64_t)d->timeout_sec * 1000000000ull);
	ret = loop_set_fd_handler(vdfs_g.ctl_ctx, d->pidfd, drain_pid_exited,
				  NULL, d);
	if (ret < 0)
		log_warn("drain of %s: cannot watch process %d: %s",
			 d->node->name, (int)d->pid, strerror(-ret));
}

static void drain_unwatch_bh(void *opaque)
{
	struct vdfs_drain *d = opaque;

	loop_set_fd_handler(vdfs_g.ctl_ctx, d->pidfd, NULL, NULL, NULL);
	loop_timer_del(&d->timer);
	loop_timer_del(&d->exit_check);
	close(d->pidfd);
	free(d);
}

/* The process (thread group) of thread tid, from /proc/TID/status. */
static pid_t tgid_of(pid_t tid)
{
	char path[64], buf[1024];
	const char *p;
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return -ESRCH;
	buf[len] = '\0';
	p = strstr(buf, "\nTgid:");
	if (!p)
		return -ESRCH;
	return (pid_t)strtol(p + 6, NULL, 10);
}

static void drain_begin(fuse_req_t req, struct vdfs_handle *h,
			struct blk_image *img,
			const struct vdisk_ioc_drain_begin *in)
{
	struct vdfs_drain *d;
	pid_t pid;
	int pidfd, ret;

	if (in->pad0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	pthread_mutex_lock(&vdfs_g.drain_lock);
	ret = h->drain || h->drain_busy ? -EBUSY : 0;
	if (ret == 0)
		h->drain_busy = true;
	pthread_mutex_unlock(&vdfs_g.drain_lock);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* fuse_req_ctx gives the calling thread; the drain is the
	 * process's (MEASURED.md). */
	pid = tgid_of(fuse_req_ctx(req)->pid);
	pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
	d = pidfd >= 0 ? calloc(1, sizeof(*d)) : NULL;
	if (!d) {
		ret = pid <= 0 ? (int)pid : pidfd < 0 ? -errno : -ENOMEM;
		if (pidfd >= 0)
			close(pidfd);
		pthread_mutex_lock(&vdfs_g.drain_lock);
		h->drain_busy = false;
		pthread_mutex_unlock(&vdfs_g.drain_lock);
		fuse_reply_err(req, -ret);
		return;
	}
	d->h = h;
	d->node = h->node;
	d->img = img;
	d->pid = pid;
	d->pidfd = pidfd;
	d->timeout_sec = in->timeout_sec;
	loop_bh_init(&d->watch_bh, vdfs_g.ctl_ctx, drain_watch_bh, d);
	loop_bh_init(&d->unwatch_bh, vdfs_g.ctl_ctx, drain_unwatch_bh, d);

	/* Blocks this worker until nothing is in flight and the image is
	 * flushed; requests arriving meanwhile are postponed. */
	blk_drained_begin(img);

	pthread_mutex_lock(&vdfs_g.drain_lock);
	h->drain_busy = false;
	h->drain = d;
	LIST_INSERT_HEAD(&vdfs_g.drains, d, link);
	loop_bh_schedule(&d->watch_bh);
	pthread_mutex_unlock(&vdfs_g.drain_lock);
	log_info("drain of %s begun by process %d%s", d->node->name, (int)pid,
		 d->timeout_sec ? " with a timeout" : "");

	/* A caller who gave up (interrupted) must not leave it behind. */
	if (fuse_reply_ioctl(req, 0, in, sizeof(*in)) < 0) {
		bool mine;

		pthread_mutex_lock(&vdfs_g.drain_lock);
		mine = drain_claim_locked(d);
		pthread_mutex_unlock(&vdfs_g.drain_lock);
		if (mine)
			drain_finish(d);
	}
}

static void drain_end(fuse_req_t req, struct vdfs_handle *h,
		      const struct vdisk_ioc_drain_end *in)
{
	struct vdfs_drain *d;
	bool mine = false;

	pthread_mutex_lock(&vdfs_g.drain_lock);
	d = h->drain;
	if (d)
		mine = drain_claim_locked(d);
	pthread_mutex_unlock(&vdfs_g.drain_lock);
	if (!mine) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	log_info("drain of %s ended", d->node->name);
	drain_finish(d);
	fuse_reply_ioctl(req, 0, in, sizeof(*in));
}

void vdfs_drain_release(struct vdfs_handle *h)
{
	struct vdfs_drain *d;
	bool mine = false;

	pthread_mutex_lock(&vdfs_g.drain_lock);
	d = h->drain;
	if (d)
		mine = drain_claim_locked(d);
	pthread_mutex_unlock(&vdfs_g.drain_lock);
	if (mine) {
		log_info("drain of %s ended: handle released", d->node->name);
		drain_finish(d);
	}
	pthread_mutex_lock(&vdfs_g.drain_lock);
	while (h->drain_ending > 0)
		pthread_cond_wait(&vdfs_g.drain_cond, &vdfs_g.drain_lock);
	pthread_mutex_unlock(&vdfs_g.drain_lock);
}

void vdfs_drain_end_all(void)
{
	struct vdfs_drain *d;
	bool mine;

	for (;;) {
		pthread_mutex_lock(&vdfs_g.drain_lock);
		vdfs_g.shutting_down = true;
		d = LIST_FIRST(&vdfs_g.drains);
		mine = d && drain_claim_locked(d);
		pthread_mutex_unlock(&vdfs_g.drain_lock);
		if (!d)
			break;
		if (mine) {
			log_info("drain of %s ended: shutdown",
				 d->node->name);
			drain_finish(d);
		}
	}
	pthread_mutex_lock(&vdfs_g.drain_lock);
	while (vdfs_g.drains_ending > 0)
		pthread_cond_wait(&vdfs_g.drain_cond, &vdfs_g.drain_lock);
	pthread_mutex_unlock(&vdfs_g.drain_lock);
}

/* ---- dispatch -------------------------------------------------------- */

void vdfs_op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		   void *arg, struct fuse_file_info *fi, unsigned flags,
		   const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct vdfs_handle *h = (struct vdfs_handle *)(uintptr_t)fi->fh;
	const struct ioc_desc *d;
	struct blk_image *img;
	unsigned nr = _IOC_NR(cmd);
	int ret;

	if ((flags & FUSE_IOCTL_DIR) || _IOC_TYPE(cmd) != VDISK_IOC_TYPE ||
	    nr >= sizeof(ioc_descs) / sizeof(ioc_descs[0]) ||
	    !ioc_descs[nr].cmd) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	d = &ioc_descs[nr];
	/* Same number, other size or direction. */
	if (cmd != d->cmd) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	ret = check_struct(d, in_buf, in_bufsz, out_bufsz);
	if (ret == 0 && d->mutating)
		ret = check_caller(req, h);
	img = ret == 0 && h ? vdfs_node_image(h->node) : NULL;
	if (ret == 0 && !img)
		ret = -EBADF;
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	switch (cmd) {
	case VDISK_IOC_INFO:
		run_in_image_ctx(req, h->node, img, info_bh, NULL, 0);
		break;
	case VDISK_IOC_FLUSH:
		vdfs_io_flush_ioctl(req, h->node, img, in_buf,
				    sizeof(struct vdisk_ioc_flush));
		break;
	case VDISK_IOC_DRAIN_BEGIN:
		drain_begin(req, h, img, in_buf);
		break;
	case VDISK_IOC_DRAIN_END:
		drain_end(req, h, in_buf);
		break;
	case VDISK_IOC_STATS_RESET:
		run_in_image_ctx(req, h->node, img, stats_reset_bh, in_buf,
				 sizeof(struct vdisk_ioc_stats_reset));
		break;
	case VDISK_IOC_VRING_TEST_START:
	case VDISK_IOC_VRING_TEST_STATUS:
	case VDISK_IOC_VRING_TEST_STOP:
		vdfs_vring_ioctl(req, h, img, cmd, in_buf, d->size);
		break;
	default:
		vdfs_mirror_ioctl(req, h->node, img, cmd, in_buf, d->size);
		break;
	}
}

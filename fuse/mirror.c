/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mirror ioctls: a mirror job (engine/mirror.h) per image, its target
 * resolved under mirror_dir (target.h), and the switch of the mounted file
 * to the target, recorded in the pivot state file (pivot.h).
 *
 * Design notes.
 *
 * Threads.  Everything about a node's job (node->mirror and what hangs
 * from it) belongs to the image's context thread: the ioctl handlers hand
 * their work over with loop_call_sync, and the job's callbacks run there.
 * Only the target's creation runs in the FUSE worker, before the hand-over,
 * since it is a file system operation on behalf of the caller.
 *
 * The switch (mirror_pivot, in the job's coroutine with the source
 * drained and the target flushed): record NAME -> target durably, re-key
 * the node in the image table to the target's inode (under the table
 * lock, which lookups hold while they consult the pivot map, so no lookup
 * can see the record without the node), swap the node's O_PATH fd and
 * image pointer, and redirect the old image to the new one: a request
 * that picked up the old pointer just before the swap, or waits at its
 * drain gate, goes to the target.  Right after, a bottom half retires the
 * old image (its file is closed; the shell only forwards) and the shell
 * and the old fd are freed when the node is.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <urcu-bp.h>

#include "mirror.h"
#include "target.h"
#include "table.h"
#include "vdfs.h"
#include "vdisk-ioctl.h"

/* What a pivot left behind, freed with the node's image. */
struct vdfs_retired {
	struct blk_image *img;         /* redirect shell */
	int fd;                        /* the old O_PATH fd */
	char *backing;
	struct vdfs_retired *next;
};

struct vdfs_mirror {
	struct vdfs_node *node;
	struct blk_image *src;         /* the image when the job started */
	struct blk_image *target;      /* owned until the pivot */
	struct mirror *m;              /* NULL once over */
	int target_fd;                 /* O_RDWR, -1 once given away */
	char *target_path;
	struct mirror_status last;     /* the status when it ended */
	bool pivoted;
};

static const char *const side_names[] = { "", "source", "target" };

static int mirror_pivot(void *opaque);
static void mirror_finished(void *opaque);

static const struct mirror_ops vdfs_mirror_ops = {
	.pivot = mirror_pivot,
	.finished = mirror_finished,
};

static void vm_free(struct vdfs_mirror *vm)
{
	if (!vm)
		return;
	mirror_free(vm->m);
	if (!vm->pivoted)
		blk_close(vm->target);
	if (vm->target_fd >= 0)
		close(vm->target_fd);
	free(vm->target_path);
	free(vm);
}

/* ---- the switch ------------------------------------------------------- */

static void retire_bh(void *opaque)
{
	blk_retire(opaque);
}

static int coroutine_fn mirror_pivot(void *opaque)
{
	struct vdfs_mirror *vm = opaque;
	struct vdfs_node *n = vm->node;
	struct vdfs_retired *r;
	struct stat st;
	int fd, ret;

	r = calloc(1, sizeof(*r));
	fd = fcntl(vm->target_fd, F_DUPFD_CLOEXEC, 0);
	if (!r || fd < 0) {
		ret = r ? -errno : -ENOMEM;
		goto err;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto err;
	}
	ret = vdfs_table_pivot(n, vm->target_path, fd, &st, &r->fd,
			       &r->backing);
	if (ret < 0)
		goto err;
	r->img = vm->src;
	r->next = n->retired;
	n->retired = r;
	rcu_assign_pointer(n->img, vm->target);
	blk_set_redirect(vm->src, vm->target);
	atomic_store(&n->pivoted, true);
	vm->pivoted = true;
	if (loop_bh_schedule_oneshot(vdfs_node_ctx(n), retire_bh, vm->src) < 0)
		log_warn("%s: the old source stays open", n->name);
	log_info("%s now served from %s (was %s)", n->name, vm->target_path,
		 r->backing);
	return 0;

err:
	if (fd >= 0)
		close(fd);
	free(r);
	log_error("%s: cannot switch to %s: %s", n->name, vm->target_path,
		  strerror(-ret));
	return ret;
}

static void mirror_finished(void *opaque)
{
	struct vdfs_mirror *vm = opaque;
	struct mirror_status *st = &vm->last;
	struct blk_image *target = NULL;

	/* The node's release is freeing the job (see there). */
	if (!vm->m)
		return;
	mirror_get_status(vm->m, st);
	mirror_free(vm->m);
	vm->m = NULL;
	switch (st->state) {
	case JOB_CONCLUDED:
		log_info("mirror of %s to %s concluded%s", vm->node->name,
			 vm->target_path, vm->pivoted ? ", switched" :
			 " without switch");
		break;
	case JOB_CANCELLED:
		log_info("mirror of %s to %s cancelled: the target is %s",
			 vm->node->name, vm->target_path,
			 st->consistent ? "a consistent copy" : "incomplete");
		break;
	default:
		log_warn("mirror of %s to %s failed: %s error: %s",
			 vm->node->name, vm->target_path,
			 side_names[st->error_side],
			 strerror(-st->error));
		break;
	}
	if (vm->target_fd >= 0)
		close(vm->target_fd);
	vm->target_fd = -1;
	if (!vm->pivoted) {
		target = vm->target;
		vm->target = NULL;
	}
	/*
	 * Last, and without touching vm after: closing polls the context,
	 * which may run the node's release (daemon shutdown), which frees
	 * vm.
	 */
	blk_close(target);
}

/* ---- calls in the image's context --------------------------------------- */

struct mirror_call {
	struct vdfs_node *node;
	struct blk_image *img;
	unsigned cmd;
	const void *in;
	/* START */
	int target_fd;
	char *target_path;
	struct mirror_opts opts;
	uint64_t size;
	uint64_t job_id;
	/* STATUS */
	struct vdisk_ioc_mirror_status *st;
	int ret;
};

static bool job_live(const struct vdfs_node *n)
{
	return n->mirror && n->mirror->m;
}

static void start_fn(struct mirror_call *c)
{
	struct vdfs_node *n = c->node;
	struct blk_open_opts o = {
		.aio = vdfs_g.cfg.aio,
		.cache = vdfs_g.cfg.cache,
		.discard = true,
	};
	struct vdfs_mirror *vm;
	char path[64];
	int ret;

	if (job_live(n)) {
		c->ret = -EBUSY;
		return;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		c->ret = -ENOMEM;
		return;
	}
	vm->node = n;
	vm->src = c->img;
	vm->target_fd = -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", c->target_fd);
	o.path = path;
	ret = blk_open(&o, vdfs_node_ctx(n), vdfs_g.pool, &vm->target);
	if (ret < 0)
		goto err;
	ret = mirror_start(c->img, vm->target, &c->opts, &vdfs_mirror_ops, vm,
			   &vm->m);
	if (ret < 0)
		goto err;
	vm->target_fd = c->target_fd;
	vm->target_path = c->target_path;
	c->target_fd = -1;
	c->target_path = NULL;
	mirror_get_status(vm->m, &vm->last);
	c->job_id = vm->last.id;
	vm_free(n->mirror);             /* the last job's record */
	n->mirror = vm;
	atomic_store(&n->job_live, true);
	log_info("mirror job %llu started: %s -> %s",
		 (unsigned long long)c->job_id, n->name, vm->target_path);
	c->ret = 0;
	return;

err:
	vm_free(vm);
	c->ret = ret;
}

/*
 * The node's job as the ABI sees it: its status (live, or as it ended)
 * and its enum vdisk_mirror_state, which is the job's state one up (0 is
 * "none", and then st is left alone).
 */
static uint32_t vm_status(struct vdfs_mirror *vm, struct mirror_status *st)
{
	if (!vm)
		return VDISK_MIRROR_NONE;
	if (vm->m)
		mirror_get_status(vm->m, st);
	else
		*st = vm->last;
	return (uint32_t)st->state + 1;
}

static void status_fn(struct mirror_call *c)
{
	struct vdisk_ioc_mirror_status *o = c->st;
	struct vdfs_mirror *vm = c->node->mirror;
	struct mirror_status st;

	o->state = vm_status(vm, &st);
	if (o->state == VDISK_MIRROR_NONE)
		return;
	o->job_id = st.id;
	o->sync = st.opts.sync;
	o->copy_mode = st.opts.copy_mode;
	o->on_source_error = st.opts.on_source_error;
	o->on_target_error = st.opts.on_target_error;
	o->flags = (st.consistent ? VDISK_MIRROR_ST_CONSISTENT : 0) |
		   (st.ever_ready ? VDISK_MIRROR_ST_EVER_READY : 0) |
		   (st.user_paused ? VDISK_MIRROR_ST_USER_PAUSED : 0) |
		   (st.drained ? VDISK_MIRROR_ST_DRAINED : 0) |
		   (vm->pivoted ? VDISK_MIRROR_ST_PIVOTED : 0) |
		   (st.no_pivot ? VDISK_MIRROR_ST_NO_PIVOT : 0);
	o->bytes_total = st.bytes_total;
	o->bytes_done = st.bytes_done;
	o->bytes_dirty = st.bytes_dirty;
	o->granularity = st.opts.granularity;
	o->buf_size = st.opts.buf_size;
	o->speed = st.opts.speed;
	o->throughput = st.throughput;
	o->elapsed_ns = st.elapsed_ns;
	o->ops_in_flight = st.ops_in_flight;
	o->error_side = st.error_side;
	o->error = -st.error;
	snprintf(o->target, sizeof(o->target), "%s",
		 vm->target_path ? vm->target_path : "");
}

static void control_fn(struct mirror_call *c)
{
	struct vdfs_mirror *vm = c->node->mirror;
	const struct vdisk_ioc_mirror_complete *cp = c->in;
	const struct vdisk_ioc_mirror_cancel *cc = c->in;
	const struct vdisk_ioc_mirror_set_speed *ss = c->in;
	struct blk_info bi;

	/* Unknown flags and padding are refused before anything happens. */
	if ((c->cmd == VDISK_IOC_MIRROR_COMPLETE &&
	     (cp->pad0 || (cp->flags & ~VDISK_MIRROR_COMPLETE_NO_PIVOT))) ||
	    (c->cmd == VDISK_IOC_MIRROR_CANCEL &&
	     (cc->pad0 || (cc->flags & ~VDISK_MIRROR_CANCEL_FORCE)))) {
		c->ret = -EINVAL;
		return;
	}
	if (!vm) {
		c->ret = -ENOENT;
		return;
	}
	if (!vm->m) {
		c->ret = -EINVAL;       /* over */
		return;
	}
	switch (c->cmd) {
	case VDISK_IOC_MIRROR_COMPLETE:
		/* A drain held through the mount would not follow the
		 * switch: let its holder finish first. */
		blk_get_info(vm->src, &bi);
		if (bi.drain_depth > 0) {
			c->ret = -EBUSY;
			return;
		}
		c->ret = mirror_complete(vm->m, cp->flags &
					 VDISK_MIRROR_COMPLETE_NO_PIVOT);
		break;
	case VDISK_IOC_MIRROR_CANCEL:
		c->ret = mirror_cancel(vm->m, cc->flags &
				       VDISK_MIRROR_CANCEL_FORCE);
		break;
	case VDISK_IOC_MIRROR_PAUSE:
		c->ret = mirror_pause(vm->m);
		break;
	case VDISK_IOC_MIRROR_RESUME:
		c->ret = mirror_resume(vm->m);
		break;
	case VDISK_IOC_MIRROR_SET_SPEED:
		mirror_set_speed(vm->m, ss->speed);
		c->ret = 0;
		break;
	default:
		c->ret = -ENOTTY;
		break;
	}
}

static void mirror_call_fn(void *opaque)
{
	struct mirror_call *c = opaque;

	switch (c->cmd) {
	case VDISK_IOC_MIRROR_START:
		start_fn(c);
		break;
	case VDISK_IOC_MIRROR_STATUS:
		status_fn(c);
		break;
	default:
		control_fn(c);
		break;
	}
}

static void busy_fn(void *opaque)
{
	struct mirror_call *c = opaque;

	c->ret = job_live(c->node) ? -EBUSY : 0;
	c->size = blk_get_size(c->img);
}

/* ---- START in the worker ------------------------------------------------ */

static int start_opts(const struct vdisk_ioc_mirror_start *in,
		      struct mirror_opts *o)
{
	if (in->pad0 || (in->flags & ~VDISK_MIRROR_START_EXISTING) ||
	    in->sync > VDISK_MIRROR_SYNC_NONE ||
	    in->copy_mode > VDISK_MIRROR_COPY_WRITE_BLOCKING ||
	    in->on_source_error > VDISK_MIRROR_ERROR_IGNORE ||
	    in->on_target_error > VDISK_MIRROR_ERROR_IGNORE ||
	    !memchr(in->target, '\0', sizeof(in->target)))
		return -EINVAL;
	*o = (struct mirror_opts){
		.sync = in->sync == VDISK_MIRROR_SYNC_FULL ? MIRROR_SYNC_FULL :
			MIRROR_SYNC_NONE,
		.granularity = in->granularity,
		.buf_size = in->buf_size,
		.speed = in->speed,
		.copy_mode = in->copy_mode,
		.on_source_error = in->on_source_error,
		.on_target_error = in->on_target_error,
		.target_is_zero = !(in->flags & VDISK_MIRROR_START_EXISTING),
	};
	return 0;
}

static int mirror_start_ioctl(fuse_req_t req, struct mirror_call *c,
			      struct vdisk_ioc_mirror_start *out)
{
	const struct vdisk_ioc_mirror_start *in = c->in;
	const struct fuse_ctx *fc = fuse_req_ctx(req);
	bool existing = in->flags & VDISK_MIRROR_START_EXISTING;
	struct stat st;
	int ret;

	ret = start_opts(in, &c->opts);
	if (ret < 0)
		return ret;
	loop_call_sync(vdfs_node_ctx(c->node), busy_fn, c);
	if (c->ret < 0)
		return c->ret;
	ret = vdfs_target_open(vdfs_g.mirror_dir_fd, vdfs_g.cfg.mirror_dir,
			       in->target, existing, fc->uid, fc->gid,
			       c->size, &c->target_fd, &c->target_path);
	if (ret < 0) {
		log_info("%s: mirror target %s refused: %s", c->node->name,
			 in->target, strerror(-ret));
		return ret;
	}
	/* Copies are rounded out to the target's block size. */
	if (fstat(c->target_fd, &st) == 0 && st.st_blksize > 0 &&
	    !(st.st_blksize & (st.st_blksize - 1)))
		c->opts.target_cluster = (uint64_t)st.st_blksize;
	loop_call_sync(vdfs_node_ctx(c->node), mirror_call_fn, c);
	if (c->ret < 0) {
		/* A target made for this job goes with it. */
		ret = existing ? 0 :
		      vdfs_target_unlink(vdfs_g.mirror_dir_fd,
					 vdfs_g.cfg.mirror_dir,
					 c->target_path, c->target_fd);
		if (ret < 0)
			log_warn("%s: mirror target %s left behind: %s",
				 c->node->name, c->target_path,
				 ret == -ESTALE ? "another file has its name" :
				 strerror(-ret));
		close(c->target_fd);
		free(c->target_path);
		return c->ret;
	}
	memcpy(out, in, sizeof(*out));
	out->job_id = c->job_id;
	return 0;
}

void vdfs_mirror_ioctl(fuse_req_t req, struct vdfs_node *n,
		       struct blk_image *img, unsigned cmd, const void *in,
		       size_t size)
{
	struct mirror_call c = {
		.node = n, .img = img, .cmd = cmd, .in = in,
		.target_fd = -1,
	};
	union {
		struct vdisk_ioc_mirror_start start;
		struct vdisk_ioc_mirror_status status;
	} *out;
	int ret;

	out = calloc(1, sizeof(*out));
	if (!out) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	switch (cmd) {
	case VDISK_IOC_MIRROR_START:
		ret = mirror_start_ioctl(req, &c, &out->start);
		break;
	case VDISK_IOC_MIRROR_STATUS:
		out->status.version = VDISK_IOC_VERSION;
		out->status.size = sizeof(out->status);
		c.st = &out->status;
		loop_call_sync(vdfs_node_ctx(n), mirror_call_fn, &c);
		ret = 0;
		break;
	default:
		loop_call_sync(vdfs_node_ctx(n), mirror_call_fn, &c);
		ret = c.ret;
		if (ret == 0)
			memcpy(out, in, size);
		break;
	}
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_ioctl(req, 0, out, size);
	free(out);
}

/* ---- for INFO and for the node's end ------------------------------------ */

uint32_t vdfs_mirror_state(struct vdfs_node *n)
{
	struct mirror_status st;

	return vm_status(n->mirror, &st);
}

void vdfs_mirror_node_release(struct vdfs_node *n)
{
	struct vdfs_mirror *vm = n->mirror;
	struct vdfs_retired *r;

	struct vdfs_retired *oldest = NULL;

	n->mirror = NULL;
	if (vm && vm->m) {
		struct mirror *m = vm->m;

		log_warn("mirror of %s to %s stopped: the target is "
			 "incomplete", n->name, vm->target_path);
		/* Freeing polls the context: mirror_finished may run
		 * meanwhile and must see that the job is not its own. */
		vm->m = NULL;
		mirror_free(m);
		atomic_store(&n->job_live, false);
	}
	vm_free(vm);
	/*
	 * Oldest first: each shell redirects to the next newer image, and
	 * closing one flushes through that redirect.
	 */
	while ((r = n->retired)) {
		n->retired = r->next;
		r->next = oldest;
		oldest = r;
	}
	while ((r = oldest)) {
		oldest = r->next;
		blk_close(r->img);
		close(r->fd);
		free(r->backing);
		free(r);
	}
}

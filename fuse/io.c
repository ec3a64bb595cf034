/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * FUSE data operations: every one becomes an engine request in the
 * image's context and is answered from its completion.
 *
 * A FUSE worker allocates a struct vdfs_io, copies what the request owns
 * (a write's payload goes into an aligned buffer of its own: the receive
 * buffer is reused as soon as the worker returns, and a request may be
 * postponed by a drain for a long time), calls blk_aio_submit and
 * returns.  The callback runs in the image's iothread, replies with
 * fuse_reply_* (thread-safe) and frees the request.  node->pending counts
 * requests between submission and the end of their callback, so an image
 * is never closed under one.
 *
 * lseek (SEEK_DATA/SEEK_HOLE) and ZERO_RANGE with KEEP_SIZE need the
 * image's size and, for lseek, block status with its data/hole answer:
 * they run as coroutines of the image's context calling the blk_co_*
 * functions, which take the same request path.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>

#include "coroutine.h"
#include "vdfs.h"

/* Data buffers: page aligned, so O_DIRECT needs no bounce buffer. */
#define VDFS_BUF_ALIGN 4096

enum vdfs_io_kind {
	VDFS_IO_READ,
	VDFS_IO_WRITE,
	VDFS_IO_STATUS,                /* reply 0 or an error */
	VDFS_IO_ATTR,                  /* reply the node's attributes */
	VDFS_IO_SYNC,                  /* a waiting worker takes ret */
	VDFS_IO_IOCTL,                 /* reply the ioctl's struct */
};

struct vdfs_io {
	struct blk_aio_req r;
	enum vdfs_io_kind kind;
	fuse_req_t req;
	struct vdfs_node *node;
	struct iovec iov;
	void *buf;                     /* owned */
	size_t out_size;               /* VDFS_IO_IOCTL: bytes of buf */
	/* VDFS_IO_SYNC: */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;                     /* protected by lock */
	ssize_t ret;
};

static struct vdfs_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct vdfs_handle *)(uintptr_t)fi->fh;
}

static struct vdfs_io *io_new(fuse_req_t req, struct vdfs_node *n,
			      enum vdfs_io_kind kind, enum blk_op op)
{
	struct vdfs_io *io = calloc(1, sizeof(*io));

	if (!io)
		return NULL;
	io->req = req;
	io->node = n;
	io->kind = kind;
	io->r.op = op;
	io->r.opaque = io;
	return io;
}

static void io_reply(struct vdfs_io *io, ssize_t ret)
{
	struct stat st;
	int sret;

	if (ret < 0) {
		fuse_reply_err(io->req, (int)-ret);
		return;
	}
	switch (io->kind) {
	case VDFS_IO_READ:
		fuse_reply_buf(io->req, io->buf, (size_t)ret);
		break;
	case VDFS_IO_WRITE:
		fuse_reply_write(io->req, (size_t)ret);
		break;
	case VDFS_IO_ATTR:
		sret = vdfs_node_stat(io->node, &st);
		if (sret < 0)
			fuse_reply_err(io->req, -sret);
		else
			fuse_reply_attr(io->req, &st, VDFS_ATTR_TIMEOUT);
		break;
	case VDFS_IO_IOCTL:
		fuse_reply_ioctl(io->req, 0, io->buf, io->out_size);
		break;
	default:
		fuse_reply_err(io->req, 0);
		break;
	}
}

/* Completion: the image's context thread. */
static void io_done(void *opaque, ssize_t ret)
{
	struct vdfs_io *io = opaque;
	struct vdfs_node *n = io->node;

	if (io->kind == VDFS_IO_SYNC) {
		atomic_fetch_sub(&n->pending, 1);
		pthread_mutex_lock(&io->lock);
		io->ret = ret;
		io->done = true;
		pthread_cond_signal(&io->cond);
		pthread_mutex_unlock(&io->lock);
		return;
	}
	io_reply(io, ret);
	free(io->buf);
	free(io);
	/* Last: from here the image may be closed. */
	atomic_fetch_sub(&n->pending, 1);
}

static void io_submit(struct vdfs_io *io, struct blk_image *img)
{
	io->r.cb = io_done;
	atomic_fetch_add(&io->node->pending, 1);
	blk_aio_submit(img, &io->r);
}

/*
 * The image behind a handle, or NULL after replying an error.  The
 * handle's open count keeps it open for the whole request.
 */
static struct blk_image *handle_image(fuse_req_t req,
				      struct fuse_file_info *fi,
				      struct vdfs_node **np)
{
	struct vdfs_handle *h = handle_of(fi);
	struct blk_image *img = h ? vdfs_node_image(h->node) : NULL;

	if (!img) {
		fuse_reply_err(req, EBADF);
		return NULL;
	}
	*np = h->node;
	return img;
}

void vdfs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		  struct fuse_file_info *fi)
{
	struct vdfs_node *n;
	struct blk_image *img = handle_image(req, fi, &n);
	struct vdfs_io *io;

	if (!img)
		return;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	io = io_new(req, n, VDFS_IO_READ, BLK_OP_READ);
	if (!io || posix_memalign(&io->buf, VDFS_BUF_ALIGN,
				 size ? size : 1)) {
		free(io);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	io->iov.iov_base = io->buf;
	io->iov.iov_len = size;
	io->r.iov = &io->iov;
	io->r.iovcnt = 1;
	io->r.offset = (uint64_t)off;
	io->r.bytes = size;
	io_submit(io, img);
}

void vdfs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		   size_t size, off_t off, struct fuse_file_info *fi)
{
	struct vdfs_node *n;
	struct blk_image *img = handle_image(req, fi, &n);
	struct vdfs_io *io;

	if (!img)
		return;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	io = io_new(req, n, VDFS_IO_WRITE, BLK_OP_WRITE);
	if (!io || posix_memalign(&io->buf, VDFS_BUF_ALIGN,
				 size ? size : 1)) {
		free(io);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* The request owns its data until it completes (DESIGN.md). */
	memcpy(io->buf, buf, size);
	io->iov.iov_base = io->buf;
	io->iov.iov_len = size;
	io->r.iov = &io->iov;
	io->r.iovcnt = 1;
	io->r.offset = (uint64_t)off;
	io->r.bytes = size;
	/* O_SYNC includes O_DSYNC; fi->flags carries RWF_DSYNC too. */
	if (fi->flags & O_DSYNC)
		io->r.flags |= BLK_REQ_FUA;
	io_submit(io, img);
}

void vdfs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		   struct fuse_file_info *fi)
{
	struct vdfs_node *n;
	struct blk_image *img = handle_image(req, fi, &n);
	struct vdfs_io *io;

	if (!img)
		return;
	/* Answered only once the engine's flush reached the disk. */
	io = io_new(req, n, VDFS_IO_STATUS, BLK_OP_FLUSH);
	if (!io) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	io_submit(io, img);
}

void vdfs_io_truncate_reply(fuse_req_t req, struct vdfs_node *n,
			    uint64_t size)
{
	struct blk_image *img = vdfs_node_image(n);
	struct vdfs_io *io;

	if (!img) {
		fuse_reply_err(req, EBADF);
		return;
	}
	io = io_new(req, n, VDFS_IO_ATTR, BLK_OP_TRUNCATE);
	if (!io) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	io->r.offset = size;
	io_submit(io, img);
}

int vdfs_io_truncate_sync(struct vdfs_node *n, uint64_t size)
{
	struct blk_image *img = vdfs_node_image(n);
	struct vdfs_io io = { .node = n, .kind = VDFS_IO_SYNC };
	ssize_t ret;

	if (!img)
		return -EBADF;
	pthread_mutex_init(&io.lock, NULL);
	pthread_cond_init(&io.cond, NULL);
	io.r.op = BLK_OP_TRUNCATE;
	io.r.offset = size;
	io.r.opaque = &io;
	io_submit(&io, img);
	pthread_mutex_lock(&io.lock);
	while (!io.done)
		pthread_cond_wait(&io.cond, &io.lock);
	ret = io.ret;
	pthread_mutex_unlock(&io.lock);
	pthread_cond_destroy(&io.cond);
	pthread_mutex_destroy(&io.lock);
	return ret < 0 ? (int)ret : 0;
}

/* ---- ioctl FLUSH ----------------------------------------------------- */

void vdfs_io_flush_ioctl(fuse_req_t req, struct vdfs_node *n,
			 struct blk_image *img, const void *out, size_t size)
{
	struct vdfs_io *io = io_new(req, n, VDFS_IO_IOCTL, BLK_OP_FLUSH);

	if (!io || !(io->buf = malloc(size))) {
		free(io);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(io->buf, out, size);
	io->out_size = size;
	io_submit(io, img);
}

/* ---- coroutine requests --------------------------------------------- */

struct vdfs_co {
	fuse_req_t req;
	struct vdfs_node *node;
	struct blk_image *img;
	int whence;                    /* lseek */
	int mode;                      /* fallocate */
	uint64_t offset, length;
};

static void co_finish(struct vdfs_co *c)
{
	struct vdfs_node *n = c->node;

	free(c);
	atomic_fetch_sub(&n->pending, 1);
}

static void co_start(struct vdfs_co *c, co_entry_fn *entry)
{
	struct coroutine *co = co_create(entry, c);

	if (!co) {
		fuse_reply_err(c->req, ENOMEM);
		free(c);
		return;
	}
	atomic_fetch_add(&c->node->pending, 1);
	co_schedule(vdfs_node_ctx(c->node), co);
}

static void coroutine_fn lseek_co(void *opaque)
{
	struct vdfs_co *c = opaque;
	uint64_t size = blk_get_size(c->img), pos = c->offset, pnum;
	bool want_data = c->whence == SEEK_DATA, is_data;
	int ret;

	while (pos < size) {
		ret = blk_co_block_status(c->img, pos, size - pos, 0, &pnum,
					  &is_data);
		if (ret < 0) {
			fuse_reply_err(c->req, -ret);
			goto out;
		}
		if (pnum == 0)
			break;
		if (is_data == want_data) {
			fuse_reply_lseek(c->req, (off_t)pos);
			goto out;
		}
		pos += pnum;
	}
	/* Past the last data there is the implicit hole at end of file. */
	if (c->offset < size && !want_data)
		fuse_reply_lseek(c->req, (off_t)size);
	else
		fuse_reply_err(c->req, ENXIO);
out:
	co_finish(c);
}

void vdfs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		   struct fuse_file_info *fi)
{
	struct vdfs_node *n;
	struct blk_image *img = handle_image(req, fi, &n);
	struct vdfs_co *c;

	if (!img)
		return;
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	*c = (struct vdfs_co){ .req = req, .node = n, .img = img,
			       .whence = whence, .offset = (uint64_t)off };
	co_start(c, lseek_co);
}

/* ZERO_RANGE | KEEP_SIZE: zero only what lies below the size. */
static void coroutine_fn zero_keep_size_co(void *opaque)
{
	struct vdfs_co *c = opaque;
	uint64_t size = blk_get_size(c->img);
	uint64_t end = VDISK_MIN(size, c->offset + c->length);
	int ret = 0;

	if (c->offset < end)
		ret = blk_co_write_zeroes(c->img, c->offset, end - c->offset, 0);
	fuse_reply_err(c->req, ret < 0 ? -ret : 0);
	co_finish(c);
}

void vdfs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
		       off_t offset, off_t length, struct fuse_file_info *fi)
{
	struct vdfs_node *n;
	struct blk_image *img = handle_image(req, fi, &n);
	struct vdfs_io *io;
	struct vdfs_co *c;
	enum blk_op op;

	if (!img)
		return;
	if (offset < 0 || length <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (mode == 0) {
		op = BLK_OP_ALLOCATE;
	} else if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
		op = BLK_OP_DISCARD;
	} else if (mode == FALLOC_FL_ZERO_RANGE) {
		op = BLK_OP_WRITE_ZEROES;
	} else if (mode == (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)) {
		c = calloc(1, sizeof(*c));
		if (!c) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		*c = (struct vdfs_co){ .req = req, .node = n, .img = img,
				       .offset = (uint64_t)offset,
				       .length = (uint64_t)length };
		co_start(c, zero_keep_size_co);
		return;
	} else {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	io = io_new(req, n, VDFS_IO_STATUS, op);
	if (!io) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	io->r.offset = (uint64_t)offset;
	io->r.bytes = (uint64_t)length;
	io_submit(io, img);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file drivers of the block layer and the O_DIRECT rules.
 *
 * "threads" runs preadv/pwritev/fdatasync/fallocate/ftruncate/lseek in
 * thread-pool workers.  "native" sends reads, writes and fdatasync to
 * Linux AIO (laio.h) and the rest to the pool: writes that extend the
 * file (AIO would block in io_submit), discard, write-zeroes, and
 * fdatasync once the kernel said -EINVAL to IOCB_CMD_FDSYNC.
 *
 * With cache=none the file is O_DIRECT and requests whose offset, length
 * or memory are not aligned go through an aligned bounce buffer: a read
 * reads the aligned superset, a write reads the head and tail blocks,
 * patches them and writes the aligned range (the request path serialises
 * such writes, block.c), then cuts a partial last block that lengthened
 * the file back to the size asked for.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "block-internal.h"
#include "tpool.h"

#define BLK_BOUNCE_ALIGN 4096u

/* Copy up to len bytes between buf and the iovec, starting at its start. */
static void blk_iov_copy(const struct iovec *iov, int iovcnt, void *buf,
			 size_t len, bool to_iov)
{
	char *p = buf;

	for (int i = 0; i < iovcnt && len > 0; i++) {
		size_t n = VDISK_MIN(len, iov[i].iov_len);

		if (to_iov)
			memcpy(iov[i].iov_base, p, n);
		else
			memcpy(p, iov[i].iov_base, n);
		p += n;
		len -= n;
	}
}

static bool blk_is_aligned(const struct blk_image *img, uint64_t off,
			   uint64_t bytes, const struct iovec *iov, int iovcnt)
{
	if (img->req_align == 1 && img->mem_align == 1)
		return true;
	if (off % img->req_align || bytes % img->req_align)
		return false;
	for (int i = 0; i < iovcnt; i++) {
		if ((uintptr_t)iov[i].iov_base % img->mem_align ||
		    iov[i].iov_len % img->req_align)
			return false;
	}
	return true;
}

int coroutine_fn blk_drv_io(struct blk_image *img, enum blk_op op,
				   uint64_t off, uint64_t bytes,
				   const struct iovec *iov, int iovcnt)
{
	return img->drv->co_io(img->drv_opaque, op, off, bytes, iov, iovcnt);
}

static int coroutine_fn blk_drv_buf(struct blk_image *img, enum blk_op op,
				    uint64_t off, uint64_t bytes, void *buf)
{
	struct iovec v = { .iov_base = buf, .iov_len = bytes };

	return blk_drv_io(img, op, off, bytes, &v, 1);
}

/* ---- the thread-pool work items ------------------------------------ */

struct blk_work {
	int fd;
	enum blk_op op;
	uint64_t offset, bytes;
	struct iovec *iov;          /* a private copy, advanced as we go */
	int iovcnt;
	uint64_t pnum;              /* block status results */
	bool is_data;
};

static int blk_work_rw(struct blk_work *w)
{
	struct iovec *iov = w->iov;
	int cnt = w->iovcnt;
	uint64_t done = 0;

	while (done < w->bytes && cnt > 0) {
		ssize_t n;

		if (w->op == BLK_OP_READ)
			n = preadv(w->fd, iov, cnt, (off_t)(w->offset + done));
		else
			n = pwritev(w->fd, iov, cnt, (off_t)(w->offset + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* O_DIRECT refuses to continue at an unaligned EOF. */
			if (w->op == BLK_OP_READ && errno == EINVAL && done)
				break;
			return -errno;
		}
		if (n == 0) {
			if (w->op == BLK_OP_READ)
				break;
			return -EIO;
		}
		done += (uint64_t)n;
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return (int)done;
}

static int blk_work_block_status(struct blk_work *w)
{
	off_t data, hole;
	off_t off = (off_t)w->offset;

	data = lseek(w->fd, off, SEEK_DATA);
	if (data < 0) {
		if (errno != ENXIO)
			return -errno;
		/* Only a hole up to end of file. */
		w->is_data = false;
		w->pnum = w->bytes;
		return 0;
	}
	if (data > off) {
		w->is_data = false;
		w->pnum = VDISK_MIN((uint64_t)(data - off), w->bytes);
		return 0;
	}
	hole = lseek(w->fd, off, SEEK_HOLE);
	if (hole < 0)
		return -errno;
	w->is_data = true;
	w->pnum = VDISK_MIN((uint64_t)(hole - off), w->bytes);
	return 0;
}

static int blk_work_fn(void *arg)
{
	struct blk_work *w = arg;
	int mode;

	switch (w->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		return blk_work_rw(w);
	case BLK_OP_FLUSH:
		return fdatasync(w->fd) < 0 ? -errno : 0;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		mode = w->op == BLK_OP_DISCARD ?
		       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE :
		       FALLOC_FL_ZERO_RANGE;
		return fallocate(w->fd, mode, (off_t)w->offset,
				 (off_t)w->bytes) < 0 ? -errno : 0;
	case BLK_OP_ALLOCATE:
		return fallocate(w->fd, 0, (off_t)w->offset,
				 (off_t)w->bytes) < 0 ? -errno : 0;
	case BLK_OP_TRUNCATE:
		return ftruncate(w->fd, (off_t)w->offset) < 0 ? -errno : 0;
	case BLK_OP_BLOCK_STATUS:
		return blk_work_block_status(w);
	default:
		return -EINVAL;
	}
}

static int coroutine_fn blk_co_work(struct blk_image *img,
				    struct blk_work *w,
				    const struct iovec *iov, int iovcnt)
{
	int ret;

	w->fd = img->fd;
	w->iov = NULL;
	if (iovcnt > 0) {
		w->iov = malloc(sizeof(*iov) * (size_t)iovcnt);
		if (!w->iov)
			return -ENOMEM;
		memcpy(w->iov, iov, sizeof(*iov) * (size_t)iovcnt);
	}
	w->iovcnt = iovcnt;
	ret = tpool_co_submit(img->pool, blk_work_fn, w);
	free(w->iov);
	return ret;
}

/* ---- one Linux AIO context per event loop -------------------------- */

/*
 * Images of one context share its laio, so their requests are batched
 * into the same io_submit and complete through one eventfd.  The list is
 * global and short (one entry per iothread in use).
 */
struct blk_laio_ref {
	struct loop *ctx;
	struct laio *laio;
	unsigned refs;
	LIST_ENTRY(blk_laio_ref) link;
};

static pthread_mutex_t blk_laio_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, blk_laio_ref) blk_laio_refs =
	LIST_HEAD_INITIALIZER(blk_laio_refs);

int blk_laio_get(struct loop *ctx, struct laio **out)
{
	struct blk_laio_ref *ref;
	int ret = 0;

	pthread_mutex_lock(&blk_laio_lock);
	LIST_FOREACH(ref, &blk_laio_refs, link) {
		if (ref->ctx == ctx)
			break;
	}
	if (!ref) {
		ref = calloc(1, sizeof(*ref));
		if (!ref) {
			ret = -ENOMEM;
			goto out_unlock;
		}
		ret = laio_new(ctx, 0, &ref->laio);
		if (ret < 0) {
			free(ref);
			goto out_unlock;
		}
		ref->ctx = ctx;
		LIST_INSERT_HEAD(&blk_laio_refs, ref, link);
	}
	ref->refs++;
	*out = ref->laio;
out_unlock:
	pthread_mutex_unlock(&blk_laio_lock);
	return ret;
}

void blk_laio_put(struct laio *laio)
{
	struct blk_laio_ref *ref;

	if (!laio)
		return;
	pthread_mutex_lock(&blk_laio_lock);
	LIST_FOREACH(ref, &blk_laio_refs, link) {
		if (ref->laio == laio)
			break;
	}
	assert(ref && ref->refs > 0);
	if (--ref->refs == 0) {
		LIST_REMOVE(ref, link);
		laio_free(ref->laio);
		free(ref);
	}
	pthread_mutex_unlock(&blk_laio_lock);
}

/* ---- the built-in drivers ------------------------------------------ */

static int coroutine_fn blk_threads_co_io(void *opaque, enum blk_op op,
					  uint64_t offset, uint64_t bytes,
					  const struct iovec *iov, int iovcnt)
{
	struct blk_work w = { .op = op, .offset = offset, .bytes = bytes };

	return blk_co_work(opaque, &w, iov, iovcnt);
}

static int coroutine_fn blk_native_co_io(void *opaque, enum blk_op op,
					 uint64_t offset, uint64_t bytes,
					 const struct iovec *iov, int iovcnt)
{
	struct blk_image *img = opaque;
	int ret;

	switch (op) {
	case BLK_OP_READ:
		return laio_co_submit(img->laio, img->fd, LAIO_READ, offset,
				      iov, iovcnt);
	case BLK_OP_WRITE:
		/* Extending writes go to a worker: AIO would block on them. */
		if (offset + bytes <= img->size)
			return laio_co_submit(img->laio, img->fd, LAIO_WRITE,
					      offset, iov, iovcnt);
		break;
	case BLK_OP_FLUSH:
		if (img->fdsync_fallback)
			break;
		ret = laio_co_submit(img->laio, img->fd, LAIO_FDSYNC, 0,
				     NULL, 0);
		if (ret != -EINVAL)
			return ret;
		img->fdsync_fallback = true;
		break;
	default:
		break;
	}
	return blk_threads_co_io(opaque, op, offset, bytes, iov, iovcnt);
}

const struct blk_driver blk_drv_threads = {
	.name = "threads",
	.co_io = blk_threads_co_io,
};

const struct blk_driver blk_drv_native = {
	.name = "native",
	.co_io = blk_native_co_io,
};

/* ---- bounce buffers for O_DIRECT ----------------------------------- */

struct blk_rw {
	struct blk_image *img;
	enum blk_op op;
	uint64_t offset, bytes;
	const struct iovec *iov;
	int iovcnt;
};

static ssize_t coroutine_fn blk_co_bounce_read(struct blk_rw *r)
{
	struct blk_image *img = r->img;
	uint64_t al = img->req_align;
	uint64_t a_off = ROUND_DOWN(r->offset, al);
	uint64_t len = ROUND_UP(r->offset + r->bytes, al) - a_off;
	uint64_t skip = r->offset - a_off, avail;
	void *buf = NULL;
	int ret;

	if (posix_memalign(&buf, VDISK_MAX(BLK_BOUNCE_ALIGN, img->mem_align),
			   len))
		return -ENOMEM;
	img->stats.bounced++;
	ret = blk_drv_buf(img, BLK_OP_READ, a_off, len, buf);
	if (ret < 0)
		goto out_free;
	avail = (uint64_t)ret > skip ? (uint64_t)ret - skip : 0;
	avail = VDISK_MIN(avail, r->bytes);
	blk_iov_copy(r->iov, r->iovcnt, (char *)buf + skip, avail, true);
	ret = (int)avail;
out_free:
	free(buf);
	return ret;
}

/* Read the aligned block at off into buf; bytes past EOF stay zero. */
static int coroutine_fn blk_co_read_block(struct blk_image *img,
					  uint64_t off, void *buf)
{
	int ret = blk_drv_buf(img, BLK_OP_READ, off, img->req_align, buf);

	return ret < 0 ? ret : 0;
}

/*
 * Read-modify-write through an aligned buffer.  r is serialising (or
 * aligned in offset and length), so nobody touches the blocks meanwhile.
 */
static ssize_t coroutine_fn blk_co_bounce_write(struct blk_rw *r)
{
	struct blk_image *img = r->img;
	uint64_t al = img->req_align;
	uint64_t end = r->offset + r->bytes;
	uint64_t a_off = ROUND_DOWN(r->offset, al);
	uint64_t a_end = ROUND_UP(end, al);
	uint64_t len = a_end - a_off, target;
	bool head = r->offset != a_off;
	void *buf = NULL;
	int ret = 0;

	if (posix_memalign(&buf, VDISK_MAX(BLK_BOUNCE_ALIGN, img->mem_align),
			   len))
		return -ENOMEM;
	img->stats.bounced++;
	memset(buf, 0, len);
	if (head)
		ret = blk_co_read_block(img, a_off, buf);
	if (ret == 0 && end != a_end && !(head && a_end - al == a_off))
		ret = blk_co_read_block(img, a_end - al,
					(char *)buf + len - al);
	if (ret < 0)
		goto out_free;
	blk_iov_copy(r->iov, r->iovcnt, (char *)buf + (r->offset - a_off),
		     r->bytes, false);
	ret = blk_drv_buf(img, BLK_OP_WRITE, a_off, len, buf);
	if (ret < 0)
		goto out_free;
	/* A partial last block made the file longer than asked: cut it. */
	target = VDISK_MAX(img->size, end);
	if (a_end > target && img->fd >= 0) {
		struct blk_work w = { .op = BLK_OP_TRUNCATE, .offset = target };

		ret = blk_co_work(img, &w, NULL, 0);
		if (ret < 0)
			goto out_free;
	}
	ret = (int)r->bytes;
out_free:
	free(buf);
	return ret;
}

ssize_t coroutine_fn blk_co_drv_rw(struct blk_image *img, enum blk_op op,
				   uint64_t off, uint64_t bytes,
				   const struct iovec *iov, int iovcnt)
{
	struct blk_rw rw = {
		.img = img, .op = op, .offset = off, .bytes = bytes,
		.iov = iov, .iovcnt = iovcnt,
	};
	struct blk_rw *r = &rw;

	if (!blk_is_aligned(img, r->offset, r->bytes, r->iov, r->iovcnt))
		return r->op == BLK_OP_READ ? blk_co_bounce_read(r) :
					      blk_co_bounce_write(r);
	return blk_drv_io(img, r->op, r->offset, r->bytes, r->iov, r->iovcnt);
}

int coroutine_fn blk_co_drv_block_status(struct blk_image *img, uint64_t off,
					 uint64_t bytes, uint64_t *pnum,
					 bool *is_data)
{
	struct blk_work w = { .op = BLK_OP_BLOCK_STATUS, .offset = off };
	int ret;

	if (off >= img->size) {
		*pnum = 0;
		*is_data = false;
		return 0;
	}
	w.bytes = VDISK_MIN(bytes, img->size - off);
	if (img->fd < 0 && img->drv->co_block_status) {
		ret = img->drv->co_block_status(img->drv_opaque, off, w.bytes,
						pnum, is_data);
		if (ret == 0 && (*pnum == 0 || *pnum > w.bytes))
			return -EIO;    /* the driver broke its promise */
		return ret;
	}
	if (img->fd < 0) {
		*pnum = w.bytes;
		*is_data = true;
		return 0;
	}
	ret = blk_co_work(img, &w, NULL, 0);
	if (ret < 0)
		return ret;
	*pnum = w.pnum;
	*is_data = w.is_data;
	return 0;
}

int coroutine_fn blk_co_drv_truncate(struct blk_image *img, uint64_t size)
{
	struct blk_work w = { .op = BLK_OP_TRUNCATE, .offset = size };
	int ret;

	if (img->fd < 0)
		return -EOPNOTSUPP;
	ret = blk_co_work(img, &w, NULL, 0);
	if (ret == 0)
		img->size = size;
	return ret;
}

/* O_DIRECT alignment of fd: statx STATX_DIOALIGN, else 4096. */
void blk_probe_align(struct blk_image *img)
{
	struct statx stx;

	img->req_align = img->mem_align = 4096;
	if (statx(img->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0)
		return;
	if (!(stx.stx_mask & STATX_DIOALIGN) || !stx.stx_dio_offset_align ||
	    !stx.stx_dio_mem_align)
		return;
	img->req_align = stx.stx_dio_offset_align;
	img->mem_align = stx.stx_dio_mem_align;
}

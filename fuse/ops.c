/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * FUSE metadata operations: the directory of images and the life of
 * nodes and handles.
 *
 * The mount is one flat directory (the root, FUSE_ROOT_ID) holding the
 * regular, not hidden files of IMAGE_DIR.  Nothing is cached here: every
 * lookup, getattr and readdir asks IMAGE_DIR, so files added or removed
 * behind the daemon's back show at the next lookup.  A node keeps an
 * O_PATH fd of its backing inode, so an open image stays usable after its
 * name is gone.  Attribute changes go to the backing file through
 * /proc/self/fd/N of that fd; size changes go through the engine while the
 * image is open.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/statvfs.h>

#include "table.h"
#include "vdfs.h"

static void proc_path(const struct vdfs_node *n, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", n->fd);
}

int vdfs_node_stat(struct vdfs_node *n, struct stat *attr)
{
	return fstat(n->fd, attr) < 0 ? -errno : 0;
}

static struct vdfs_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct vdfs_handle *)(uintptr_t)fi->fh;
}

static void fill_entry(struct fuse_entry_param *e, struct vdfs_node *n,
		       const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = n->nodeid;
	e->generation = 0;          /* nodeids are never reused */
	e->attr = *st;
	e->attr_timeout = VDFS_ATTR_TIMEOUT;
	/*
	 * Entries are revalidated at every use: a name removed from or
	 * replaced in IMAGE_DIR must not keep pointing at the old file.
	 */
	e->entry_timeout = VDFS_ENTRY_TIMEOUT;
}

/* Look name up and stat it; on success the kernel gets one count. */
static int lookup_entry(const char *name, struct fuse_entry_param *e,
			struct vdfs_node **out)
{
	struct vdfs_node *n;
	struct stat st;
	int ret;

	ret = vdfs_table_lookup(vdfs_g.dir_fd, name, &n);
	if (ret < 0)
		return ret;
	ret = vdfs_node_stat(n, &st);
	if (ret < 0) {
		vdfs_table_forget(n->nodeid, 1);
		return ret;
	}
	fill_entry(e, n, &st);
	if (out)
		*out = n;
	return 0;
}

static void vdfs_op_lookup(fuse_req_t req, fuse_ino_t parent,
			   const char *name)
{
	struct fuse_entry_param e;
	int ret;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	ret = lookup_entry(name, &e, NULL);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* An interrupted LOOKUP never gave the kernel its count. */
	if (fuse_reply_entry(req, &e) < 0)
		vdfs_table_forget(e.ino, 1);
}

static void vdfs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (ino != FUSE_ROOT_ID)
		vdfs_table_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void vdfs_op_forget_multi(fuse_req_t req, size_t count,
				 struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		if (forgets[i].ino != FUSE_ROOT_ID)
			vdfs_table_forget(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* The attributes of ino: the root is IMAGE_DIR itself. */
static int stat_ino(fuse_ino_t ino, struct stat *st)
{
	struct vdfs_node *n;

	if (ino == FUSE_ROOT_ID) {
		if (fstat(vdfs_g.dir_fd, st) < 0)
			return -errno;
		st->st_ino = FUSE_ROOT_ID;
		return 0;
	}
	n = vdfs_table_get(ino);
	return n ? vdfs_node_stat(n, st) : -ESTALE;
}

static void vdfs_op_getattr(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_file_info *fi)
{
	struct stat st;
	int ret = stat_ino(ino, &st);

	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, VDFS_ATTR_TIMEOUT);
}

/* Mode, owner and times go to the backing file. */
static int setattr_meta(struct vdfs_node *n, const struct stat *attr,
			int to_set)
{
	struct timespec ts[2] = {
		{ .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT },
	};
	char path[64];

	proc_path(n, path, sizeof(path));
	if ((to_set & FUSE_SET_ATTR_MODE) &&
	    chmod(path, attr->st_mode & 07777) < 0)
		return -errno;
	if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) &&
	    chown(path,
		  (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
		  (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1) < 0)
		return -errno;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		ts[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		ts[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		ts[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		ts[1] = attr->st_mtim;
	if (ts[0].tv_nsec != UTIME_OMIT || ts[1].tv_nsec != UTIME_OMIT) {
		if (utimensat(AT_FDCWD, path, ts, 0) < 0)
			return -errno;
	}
	return 0;
}

/*
 * A resize without a handle (truncate(2) by path): through the engine if
 * the image is open (node->lock keeps it open meanwhile), else on the
 * backing file, which no engine image serves.
 */
static int truncate_by_path(struct vdfs_node *n, uint64_t size)
{
	char path[64];
	int ret = 0;

	pthread_mutex_lock(&n->lock);
	if (n->open_count > 0) {
		ret = vdfs_io_truncate_sync(n, size);
	} else {
		proc_path(n, path, sizeof(path));
		if (truncate(path, (off_t)size) < 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&n->lock);
	return ret;
}

static void vdfs_op_setattr(fuse_req_t req, fuse_ino_t ino,
			    struct stat *attr, int to_set,
			    struct fuse_file_info *fi)
{
	struct vdfs_node *n = vdfs_table_get(ino);
	struct stat st;
	int ret;

	if (!n) {
		fuse_reply_err(req, ino == FUSE_ROOT_ID ? EPERM : ESTALE);
		return;
	}
	ret = setattr_meta(n, attr, to_set);
	if (ret < 0)
		goto out_err;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (attr->st_size < 0) {
			ret = -EINVAL;
			goto out_err;
		}
		if (vdfs_g.cfg.read_only) {
			ret = -EROFS;
			goto out_err;
		}
		if (fi && fi->fh) {
			/* Replies from the completion. */
			vdfs_io_truncate_reply(req, n, (uint64_t)attr->st_size);
			return;
		}
		ret = truncate_by_path(n, (uint64_t)attr->st_size);
		if (ret < 0)
			goto out_err;
	}
	ret = vdfs_node_stat(n, &st);
	if (ret < 0)
		goto out_err;
	fuse_reply_attr(req, &st, VDFS_ATTR_TIMEOUT);
	return;

out_err:
	fuse_reply_err(req, -ret);
}

/* ---- the directory ------------------------------------------------- */

/*
 * A listing taken at offset 0 (opendir, rewinddir) and served by index:
 * 0 is ".", 1 is "..", 2 + i is names[i].  Offsets stay valid whatever
 * IMAGE_DIR does meanwhile.
 */
struct dir_snap {
	pthread_mutex_t lock;          /* readdir calls of one handle */
	size_t nr;
	char **names;
	ino_t *inos;
};

static void dir_snap_clear(struct dir_snap *d)
{
	for (size_t i = 0; i < d->nr; i++)
		free(d->names[i]);
	free(d->names);
	free(d->inos);
	d->names = NULL;
	d->inos = NULL;
	d->nr = 0;
}

static bool dirent_is_image(int dir_fd, const struct dirent *de)
{
	struct stat st;

	if (!vdfs_name_visible(de->d_name))
		return false;
	if (de->d_type == DT_REG)
		return true;
	if (de->d_type != DT_UNKNOWN)
		return false;
	return fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st.st_mode);
}

static int dir_snap_fill(struct dir_snap *d)
{
	size_t cap = 0;
	struct dirent *de;
	DIR *dir;
	int fd, ret = 0;

	dir_snap_clear(d);
	fd = openat(vdfs_g.dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(dir))) {
		if (!dirent_is_image(fd, de))
			continue;
		if (d->nr == cap) {
			char **nn;
			ino_t *ni;

			cap = cap ? 2 * cap : 32;
			nn = realloc(d->names, cap * sizeof(*nn));
			if (nn)
				d->names = nn;
			ni = realloc(d->inos, cap * sizeof(*ni));
			if (ni)
				d->inos = ni;
			if (!nn || !ni) {
				ret = -ENOMEM;
				break;
			}
		}
		d->names[d->nr] = strdup(de->d_name);
		if (!d->names[d->nr]) {
			ret = -ENOMEM;
			break;
		}
		d->inos[d->nr++] = de->d_ino;
	}
	closedir(dir);
	if (ret < 0)
		dir_snap_clear(d);
	return ret;
}

static void vdfs_op_opendir(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_file_info *fi)
{
	struct dir_snap *d;

	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&d->lock, NULL);
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) < 0) {
		pthread_mutex_destroy(&d->lock);
		free(d);
	}
}

static void vdfs_op_releasedir(fuse_req_t req, fuse_ino_t ino,
			       struct fuse_file_info *fi)
{
	struct dir_snap *d = (struct dir_snap *)(uintptr_t)fi->fh;

	if (d) {
		dir_snap_clear(d);
		pthread_mutex_destroy(&d->lock);
		free(d);
	}
	fuse_reply_err(req, 0);
}

/* Add entry idx to buf; returns the bytes it needs (> rem: did not fit). */
static size_t add_entry(fuse_req_t req, struct dir_snap *d, size_t idx,
			char *buf, size_t rem, bool plus, bool *skip)
{
	struct fuse_entry_param e;
	struct vdfs_node *n;
	const char *name;
	size_t len;

	*skip = false;
	memset(&e, 0, sizeof(e));
	if (idx < 2) {
		name = idx ? ".." : ".";
		e.attr.st_ino = FUSE_ROOT_ID;
		e.attr.st_mode = S_IFDIR;
		/* ino 0: no attributes for the kernel to keep. */
		return plus ? fuse_add_direntry_plus(req, buf, rem, name, &e,
						     (off_t)idx + 1) :
			      fuse_add_direntry(req, buf, rem, name, &e.attr,
						(off_t)idx + 1);
	}
	name = d->names[idx - 2];
	if (!plus) {
		e.attr.st_ino = d->inos[idx - 2];
		e.attr.st_mode = S_IFREG;
		return fuse_add_direntry(req, buf, rem, name, &e.attr,
					 (off_t)idx + 1);
	}
	if (lookup_entry(name, &e, &n) < 0) {
		*skip = true;          /* gone since the listing */
		return 0;
	}
	len = fuse_add_direntry_plus(req, buf, rem, name, &e, (off_t)idx + 1);
	if (len > rem)
		vdfs_table_forget(n->nodeid, 1);
	return len;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi, bool plus)
{
	struct dir_snap *d = (struct dir_snap *)(uintptr_t)fi->fh;
	size_t used = 0, len;
	char *buf;
	bool skip;
	int ret;

	buf = malloc(size ? size : 1);
	if (!buf || off < 0) {
		free(buf);
		fuse_reply_err(req, buf ? EINVAL : ENOMEM);
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (off == 0) {
		ret = dir_snap_fill(d);
		if (ret < 0) {
			pthread_mutex_unlock(&d->lock);
			free(buf);
			fuse_reply_err(req, -ret);
			return;
		}
	}
	for (size_t idx = (size_t)off; idx < d->nr + 2; idx++) {
		len = add_entry(req, d, idx, buf + used, size - used, plus,
				&skip);
		if (skip)
			continue;
		if (len > size - used)
			break;
		used += len;
	}
	pthread_mutex_unlock(&d->lock);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void vdfs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			    off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void vdfs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
				off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

/* ---- open, create, release, unlink ---------------------------------- */

/*
 * Open a handle on n for fi->flags and fill fi.  Returns 0 (fi->fh set)
 * or -errno.
 */
static int handle_open(struct vdfs_node *n, struct fuse_file_info *fi)
{
	bool want_write = (fi->flags & O_ACCMODE) != O_RDONLY;
	struct vdfs_handle *h;
	bool first;
	int ret;

	if (want_write && vdfs_g.cfg.read_only)
		return -EROFS;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->node = n;
	h->flags = fi->flags;
	ret = vdfs_node_open(n, want_write, &first);
	if (ret < 0) {
		free(h);
		return ret;
	}
	if ((fi->flags & O_TRUNC) && want_write) {
		ret = vdfs_io_truncate_sync(n, 0);
		if (ret < 0) {
			vdfs_node_close(n);
			free(h);
			return ret;
		}
	}
	if (vdfs_g.cfg.cache == BLK_CACHE_NONE) {
		/* Every read and write reaches the engine (O_DIRECT below):
		 * no page cache, hence no shared mmap. */
		fi->direct_io = 1;
		fi->keep_cache = 0;
	} else {
		/*
		 * All writes go through this mount while the image is open,
		 * so the kernel's cache stays valid for a further handle;
		 * at a first open the file may have changed behind us.
		 */
		fi->keep_cache = !first && !(fi->flags & O_TRUNC);
	}
	fi->fh = (uintptr_t)h;
	pthread_mutex_lock(&vdfs_g.handles_lock);
	LIST_INSERT_HEAD(&vdfs_g.handles, h, link);
	pthread_mutex_unlock(&vdfs_g.handles_lock);
	return 0;
}

static void handle_close(struct vdfs_handle *h)
{
	struct vdfs_node *n = h->node;

	/* The drain first: the image must not close under it. */
	vdfs_drain_release(h);
	pthread_mutex_lock(&vdfs_g.handles_lock);
	LIST_REMOVE(h, link);
	pthread_mutex_unlock(&vdfs_g.handles_lock);
	free(h);
	vdfs_node_close(n);
}

static void vdfs_op_open(fuse_req_t req, fuse_ino_t ino,
			 struct fuse_file_info *fi)
{
	struct vdfs_node *n = vdfs_table_get(ino);
	int ret;

	if (!n) {
		fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : ESTALE);
		return;
	}
	ret = handle_open(n, fi);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* An interrupted OPEN gets no RELEASE: undo it here. */
	if (fuse_reply_open(req, fi) < 0)
		handle_close(handle_of(fi));
}

static void vdfs_op_create(fuse_req_t req, fuse_ino_t parent,
			   const char *name, mode_t mode,
			   struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fuse_entry_param e;
	struct vdfs_node *n;
	int fd, ret;

	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	/* A hidden name would never show in the mount. */
	if (!vdfs_name_visible(name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (vdfs_g.cfg.read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fd = openat(vdfs_g.dir_fd, name,
		    O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW,
		    mode & 07777);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	/* Created files belong to the caller (DESIGN.md "Security"). */
	if ((ctx->uid != geteuid() || ctx->gid != getegid()) &&
	    fchown(fd, ctx->uid, ctx->gid) < 0) {
		ret = -errno;
		close(fd);
		goto out_unlink;
	}
	close(fd);
	ret = lookup_entry(name, &e, &n);
	if (ret < 0)
		goto out_unlink;
	ret = handle_open(n, fi);
	if (ret < 0) {
		vdfs_table_forget(n->nodeid, 1);
		goto out_unlink;
	}
	if (fuse_reply_create(req, &e, fi) < 0) {
		handle_close(handle_of(fi));
		vdfs_table_forget(n->nodeid, 1);
	}
	return;

out_unlink:
	unlinkat(vdfs_g.dir_fd, name, 0);
	fuse_reply_err(req, -ret);
}

static void vdfs_op_release(fuse_req_t req, fuse_ino_t ino,
			    struct fuse_file_info *fi)
{
	handle_close(handle_of(fi));
	fuse_reply_err(req, 0);
}

static void vdfs_op_flush(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	/* close(2) is not a durability point: fsync is (a barrier flush). */
	fuse_reply_err(req, 0);
}

static void vdfs_op_unlink(fuse_req_t req, fuse_ino_t parent,
			   const char *name)
{
	struct vdfs_node *n;
	struct stat st;
	int ret = 0;

	if (parent != FUSE_ROOT_ID || !vdfs_name_visible(name)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (fstatat(vdfs_g.dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	n = vdfs_table_find_inode(st.st_dev, st.st_ino);
	/* node->lock keeps an open from slipping in between. */
	if (n)
		pthread_mutex_lock(&n->lock);
	if (n && n->open_count > 0)
		ret = -EBUSY;
	else if (unlinkat(vdfs_g.dir_fd, name, 0) < 0)
		ret = -errno;
	if (n)
		pthread_mutex_unlock(&n->lock);
	fuse_reply_err(req, -ret);
}

static void vdfs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(vdfs_g.dir_fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops vdfs_ops = {
	.init = vdfs_op_init,
	.lookup = vdfs_op_lookup,
	.forget = vdfs_op_forget,
	.forget_multi = vdfs_op_forget_multi,
	.getattr = vdfs_op_getattr,
	.setattr = vdfs_op_setattr,
	.opendir = vdfs_op_opendir,
	.readdir = vdfs_op_readdir,
	.readdirplus = vdfs_op_readdirplus,
	.releasedir = vdfs_op_releasedir,
	.open = vdfs_op_open,
	.create = vdfs_op_create,
	.unlink = vdfs_op_unlink,
	.read = vdfs_op_read,
	.write = vdfs_op_write,
	.flush = vdfs_op_flush,
	.fsync = vdfs_op_fsync,
	.release = vdfs_op_release,
	.fallocate = vdfs_op_fallocate,
	.lseek = vdfs_op_lseek,
	.statfs = vdfs_op_statfs,
	.ioctl = vdfs_op_ioctl,
};

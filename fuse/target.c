/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mirror targets (target.h): where a mirror job may write.
 *
 * A target path comes from an unprivileged caller to a daemon that is
 * usually root: it is checked lexically against mirror_dir, then resolved
 * by the kernel from an fd of mirror_dir with openat2(RESOLVE_BENEATH),
 * which refuses any walk out of it whatever symlinks or renames do.  Every
 * operation on a target goes through the directory that holds it, opened
 * that way, so that the last component is handled with *at calls on a
 * directory already known to be inside.  A name is removed only while it
 * still is the inode the daemon created (unlink_same).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include "log.h"
#include "target.h"

/*
 * openat2 relative to dir_fd, never leaving it.  Returns an fd or -errno;
 * an attempt to escape (EXDEV) is -EPERM.
 */
static int open_beneath(int dir_fd, const char *path, uint64_t flags,
			uint64_t mode)
{
	struct open_how how = {
		.flags = flags,
		.mode = mode,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	unsigned tries = 0;
	long fd;

	/* EAGAIN: a rename raced with a ".." walk; the kernel asks to retry. */
	do
		fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN && ++tries < 16);
	if (fd < 0)
		return errno == EXDEV ? -EPERM : -errno;
	return (int)fd;
}

/*
 * Normalise an untrusted absolute path: drop empty and "." components.
 * Returns 0 and *out ("/a/b", or "" for "/"; caller frees), with *dir_form
 * set if the path ends in '/' or "." (it names a directory), or -EINVAL
 * (relative, too long), -EPERM (a ".." component: vdiskctl sends canonical
 * paths, so one is a mistake or an attack), -ENOMEM.
 */
static int normalise_path(const char *path, char **out, bool *dir_form)
{
	size_t len = strnlen(path, PATH_MAX);
	bool dotdot = false;
	char *buf, *w;

	if (len == PATH_MAX || path[0] != '/')
		return -EINVAL;
	buf = malloc(len + 1);
	if (buf == NULL)
		return -ENOMEM;
	w = buf;
	*dir_form = true;
	while (*path != '\0') {
		size_t n;

		while (*path == '/')
			path++;
		n = strcspn(path, "/");
		if (n == 0 || (n == 1 && path[0] == '.')) {
			*dir_form = true;
		} else {
			if (n == 2 && path[0] == '.' && path[1] == '.')
				dotdot = true;
			*w++ = '/';
			memcpy(w, path, n);
			w += n;
			*dir_form = false;
		}
		path += n;
	}
	*w = '\0';
	if (dotdot) {
		free(buf);
		return -EPERM;
	}
	*out = buf;
	return 0;
}

/*
 * The part of the normalised path below mirror_dir: "" for mirror_dir
 * itself, NULL if path is not under it.  Whole components are compared:
 * "/mirrorsX/a" is not under "/mirrors".
 */
static const char *below(const char *path, const char *mirror_dir)
{
	size_t mlen = strlen(mirror_dir);

	while (mlen > 0 && mirror_dir[mlen - 1] == '/')
		mlen--;
	if (strncmp(path, mirror_dir, mlen) != 0)
		return NULL;
	if (path[mlen] == '\0')
		return path + mlen;
	return path[mlen] == '/' ? path + mlen + 1 : NULL;
}

/*
 * Normalise abs_path and find the file it names under mirror_dir.
 * Returns 0, *path (normalised; caller frees) and *rel (inside *path, not
 * empty), or -errno as vdfs_target_open says for abs_path.
 */
static int name_under(const char *mirror_dir, const char *abs_path,
		      char **path, const char **rel)
{
	bool dir_form;
	int ret;

	ret = normalise_path(abs_path, path, &dir_form);
	if (ret < 0)
		return ret;
	*rel = below(*path, mirror_dir);
	if (*rel == NULL)
		ret = -EPERM;
	else if (**rel == '\0' || dir_form)
		ret = -EINVAL;
	if (ret < 0) {
		free(*path);
		*path = NULL;
	}
	return ret;
}

/*
 * Open the directory that holds rel (not empty) beneath mirror_dir_fd.
 * Returns an O_PATH fd and *name (the last component, inside rel), or
 * -errno.
 */
static int open_parent(int mirror_dir_fd, const char *rel, const char **name)
{
	const char *slash = strrchr(rel, '/');
	char *parent;
	int fd;

	*name = slash ? slash + 1 : rel;
	parent = slash ? strndup(rel, (size_t)(slash - rel)) : strdup(".");
	if (parent == NULL)
		return -ENOMEM;
	fd = open_beneath(mirror_dir_fd, parent,
			  O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	free(parent);
	return fd;
}

/*
 * Remove name from dir_fd if it still is the file behind fd: whoever may
 * write to the directory may have put another file there meanwhile.
 * Returns 0, -ESTALE (another file now) or -errno.
 */
static int unlink_same(int dir_fd, const char *name, int fd)
{
	struct stat ours, now;

	if (fstat(fd, &ours) < 0 ||
	    fstatat(dir_fd, name, &now, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (ours.st_dev != now.st_dev || ours.st_ino != now.st_ino)
		return -ESTALE;
	return unlinkat(dir_fd, name, 0) < 0 ? -errno : 0;
}

/*
 * Undo create_target's creation of name.  A failure is logged here: the
 * caller returns the error that made it undo.
 */
static void unlink_created(int dir_fd, const char *name, int fd)
{
	int ret = unlink_same(dir_fd, name, fd);

	if (ret == -ESTALE)
		log_warn("mirror target %s: replaced before it could be removed",
			 name);
	else if (ret < 0)
		log_warn("mirror target %s: cannot remove it: %s", name,
			 strerror(-ret));
}

/* Create name in dir_fd.  Returns an fd or -errno. */
static int create_target(int dir_fd, const char *name, uid_t uid, gid_t gid,
			 uint64_t min_size)
{
	int fd, ret;

	/* O_EXCL also refuses a symlink, dangling or not. */
	fd = open_beneath(dir_fd, name,
			  O_RDWR | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC,
			  0600);
	if (fd < 0)
		return fd;
	/* A daemon that is not root may still serve its own uid. */
	if (fchown(fd, uid, gid) < 0) {
		ret = -errno;
		if (ret != -EPERM || uid != geteuid())
			goto out_unlink;
	}
	/* 0600 whatever the daemon's umask: the copy is the caller's data. */
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)min_size) < 0) {
		ret = -errno;
		goto out_unlink;
	}
	return fd;

out_unlink:
	unlink_created(dir_fd, name, fd);
	close(fd);
	return ret;
}

/* Open the existing file name in dir_fd.  Returns an fd or -errno. */
static int open_target(int dir_fd, const char *name, uid_t uid,
		       uint64_t min_size)
{
	struct stat st;
	int fd, flags, ret;

	/* Opening a device can act (a tape rewinds): look first.  The fstat
	 * after the open is the check that counts. */
	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* O_NONBLOCK: should a FIFO be swapped in, opening it must not wait. */
	fd = open_beneath(dir_fd, name,
			  O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
			  O_CLOEXEC, 0);
	if (fd == -ELOOP || fd == -EISDIR || fd == -ENXIO)
		return -EINVAL;   /* now a symlink, a directory, a socket */
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < min_size) {
		ret = -EINVAL;
		goto out_close;
	}
	if (st.st_uid != uid && uid != 0) {
		ret = -EPERM;
		goto out_close;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		ret = -errno;
		goto out_close;
	}
	return fd;

out_close:
	close(fd);
	return ret;
}

int vdfs_target_open(int mirror_dir_fd, const char *mirror_dir,
		     const char *abs_path, bool existing, uid_t uid, gid_t gid,
		     uint64_t min_size, int *out_fd, char **out_path)
{
	const char *rel, *name;
	char *path;
	int dir_fd, fd, ret;

	if (mirror_dir_fd < 0)
		return -EPERM;
	if (mirror_dir == NULL || mirror_dir[0] != '/' || abs_path == NULL ||
	    uid == (uid_t)-1 || gid == (gid_t)-1)
		return -EINVAL;   /* -1 would mean "leave as is" to fchown */
	if (min_size > (uint64_t)INT64_MAX)
		return -EFBIG;
	ret = name_under(mirror_dir, abs_path, &path, &rel);
	if (ret < 0)
		return ret;

	/* The parent's fd also serves to remove a file we fail to set up. */
	dir_fd = open_parent(mirror_dir_fd, rel, &name);
	if (dir_fd < 0) {
		ret = dir_fd;
		goto out_free_path;
	}
	if (existing)
		fd = open_target(dir_fd, name, uid, min_size);
	else
		fd = create_target(dir_fd, name, uid, gid, min_size);
	close(dir_fd);
	if (fd < 0) {
		ret = fd;
		goto out_free_path;
	}
	*out_fd = fd;
	*out_path = path;
	return 0;

out_free_path:
	free(path);
	return ret;
}

int vdfs_target_unlink(int mirror_dir_fd, const char *mirror_dir,
		       const char *path, int fd)
{
	const char *rel, *name;
	char *norm;
	int dir_fd, ret;

	if (mirror_dir_fd < 0)
		return -EPERM;
	if (mirror_dir == NULL || mirror_dir[0] != '/' || path == NULL ||
	    fd < 0)
		return -EINVAL;
	ret = name_under(mirror_dir, path, &norm, &rel);
	if (ret < 0)
		return ret;
	dir_fd = open_parent(mirror_dir_fd, rel, &name);
	if (dir_fd < 0) {
		ret = dir_fd;
		goto out_free_norm;
	}
	ret = unlink_same(dir_fd, name, fd);
	close(dir_fd);
out_free_norm:
	free(norm);
	return ret;
}

int vdfs_target_reopen(int mirror_dir_fd, const char *mirror_dir,
		       const char *path)
{
	const char *rel = NULL;
	struct stat st;
	bool dir_form;
	char *norm;
	int fd, ret;

	if (path == NULL)
		return -EINVAL;
	ret = normalise_path(path, &norm, &dir_form);
	if (ret < 0)
		return ret;
	if (mirror_dir_fd >= 0 && mirror_dir != NULL && mirror_dir[0] == '/')
		rel = below(norm, mirror_dir);
	if (dir_form || (rel && *rel == '\0')) {
		fd = -EINVAL;
	} else if (rel) {
		fd = open_beneath(mirror_dir_fd, rel,
				  O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
	} else {
		/* Outside mirror_dir: trust the record, which we wrote. */
		fd = open(norm, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
	}
	free(norm);
	if (fd < 0)
		return fd;
	/* O_PATH | O_NOFOLLOW opens a symlink itself: the type tells. */
	if (fstat(fd, &st) < 0)
		ret = -errno;
	else if (!S_ISREG(st.st_mode))
		ret = -EINVAL;
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

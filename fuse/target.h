/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mirror targets: where a mirror job may write, resolved from a path that
 * an unprivileged caller sent in an ioctl, under the administrator's
 * -o mirror_dir, without letting "..", a symlink or a FIFO lead the daemon
 * astray.
 *
 * This header offers:
 *  - vdfs_target_open: resolve (and create, or check) a target for a new
 *    mirror job;
 *  - vdfs_target_unlink: remove a target that vdfs_target_open created,
 *    when the job could not start after all;
 *  - vdfs_target_reopen: open a target again that a pivot recorded
 *    (pivot.h), when a restarted daemon serves it.
 *
 * mirror_dir is the canonical absolute path of -o mirror_dir (a trailing
 * slash is ignored) and mirror_dir_fd an O_DIRECTORY fd of it (O_PATH or
 * O_RDONLY, borrowed); mirror_dir_fd < 0 means no mirror_dir is configured.
 * Paths are normalised first: empty and "." components and repeated
 * slashes are dropped, and a ".." component is refused (-EPERM), since
 * vdiskctl sends canonical paths.  What lies under mirror_dir is resolved
 * from mirror_dir_fd with openat2 (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS):
 * a relative symlink that stays inside mirror_dir is followed in directory
 * components, while an absolute symlink (even one pointing inside:
 * RESOLVE_BENEATH refuses them all) or one that climbs out is refused
 * (-EPERM).  The last component is never followed.  A kernel without
 * openat2 (Linux < 5.6) gets -ENOSYS: there is no unsafe fallback.
 *
 * Threading: every function may be called from any thread; none keeps
 * state or takes a lock.  They block on the file system (open, fchown,
 * ftruncate, unlink), so call them from a thread that may block (a FUSE
 * worker, or a tpool job), never from a loop.
 */
#ifndef VDISK_FUSE_TARGET_H
#define VDISK_FUSE_TARGET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * Open the mirror target abs_path for a caller with uid/gid.
 *
 * abs_path is untrusted.  After normalisation it must lie under
 * mirror_dir and name a file.
 *
 * existing == false: create a new file, mode 0600 (whatever the umask),
 * owned by uid:gid (when the daemon is not root, chown to its own uid is
 * allowed to fail), min_size bytes long (sparse).  If a step after the
 * creation fails, the new file is removed again.
 * existing == true: take a regular file that belongs to uid (any owner if
 * uid is 0) and is at least min_size bytes long; it is not changed.
 *
 * Returns 0, *out_fd (O_RDWR, O_CLOEXEC; the caller closes it) and
 * *out_path (the normalised absolute path, e.g. for display, for
 * vdfs_target_unlink and for vdfs_pivots_record; the caller frees it), or
 * -errno with neither set:
 *  -EPERM   no mirror_dir configured; abs_path outside mirror_dir, or
 *           with a ".." component, or escaping it through a symlink;
 *           existing file owned by someone else (and uid != 0)
 *  -EINVAL  abs_path NULL, relative (a caller bug, not an escape),
 *           PATH_MAX bytes or longer, naming mirror_dir itself or a
 *           directory ("x/", "x/."); uid or gid (uid_t)-1; existing
 *           target that is not a regular file (symlink, FIFO, directory,
 *           device, socket) or shorter than min_size
 *  -EEXIST  new target, but the name exists (whatever it is)
 *  -ENOENT  existing target missing, or a directory component missing
 *  -EFBIG   min_size too large for the file system or for off_t
 *  -ENOSYS  the kernel has no openat2
 *  other    as the system calls say (-ENOTDIR, -ENOSPC, -ELOOP, ...)
 */
int vdfs_target_open(int mirror_dir_fd, const char *mirror_dir,
		     const char *abs_path, bool existing, uid_t uid, gid_t gid,
		     uint64_t min_size, int *out_fd, char **out_path);

/*
 * Remove the target that vdfs_target_open created, e.g. when the mirror
 * job then failed to start.  path is the *out_path and fd the *out_fd it
 * returned, still open (both borrowed).
 *
 * The directory that holds path is resolved beneath mirror_dir_fd again,
 * and the name is removed only if it still is the file behind fd: whoever
 * may write to that directory may have renamed ours away and put another
 * file in its place.  (A swap between the check and the unlink is still
 * possible; only someone who could remove that name anyway can make it.)
 *
 * Returns 0, or -errno with nothing removed:
 *  -ESTALE  the name now holds another file (or a symlink, a directory)
 *  -ENOENT  the name or a directory component is gone
 *  -EPERM   no mirror_dir configured; path outside mirror_dir, with a
 *           ".." component, or escaping it through a symlink
 *  -EINVAL  path or mirror_dir NULL, fd < 0; path relative, naming
 *           mirror_dir itself or a directory
 *  -ENOSYS  the kernel has no openat2
 *  other    as the system calls say (-EBADF, -EACCES, -EROFS, ...)
 */
int vdfs_target_unlink(int mirror_dir_fd, const char *mirror_dir,
		       const char *path, int fd);

/*
 * Open the target of a recorded pivot again, when the daemon starts and
 * looks the image up.  path comes from the pivots file, which only the
 * daemon writes (vdfs_target_open's *out_path).
 *
 * If a mirror_dir is configured and path lies under it, path is resolved
 * beneath mirror_dir_fd like a new target.  Otherwise (no mirror_dir now,
 * or mirror_dir has changed since the pivot) path is opened as it is, with
 * O_NOFOLLOW on the last component only: the record itself is trusted.
 * In both cases the result must be a regular file.
 *
 * Returns an O_PATH | O_CLOEXEC fd (the caller closes it), or -errno:
 *  -EINVAL  path NULL, relative, PATH_MAX bytes or longer, naming
 *           mirror_dir itself or a directory ("x/"); not a regular file
 *           (symlink, FIFO, directory, device, socket)
 *  -EPERM   a ".." component; under mirror_dir but escaping it through a
 *           symlink
 *  -ENOENT  the target or a directory component is missing
 *  -ENOSYS  under mirror_dir, and the kernel has no openat2
 *  other    as the system calls say (-ENOTDIR, -EACCES, -ELOOP, ...)
 */
int vdfs_target_reopen(int mirror_dir_fd, const char *mirror_dir,
		       const char *path);

#endif /* VDISK_FUSE_TARGET_H */

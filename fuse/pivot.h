/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Durable pivots: which images are served from their mirror target after a
 * completed job.  struct vdfs_pivots is the map NAME -> TARGET kept in
 * IMAGE_DIR/.vdiskfs/pivots, so that a pivot survives a restart.  Where a
 * target may lie, and how it is opened, is target.h's business.
 *
 * Threading:
 *  - vdfs_pivots_get and vdfs_pivots_count: any thread, concurrently with
 *    everything but vdfs_pivots_free.  They take an internal mutex that is
 *    never held across I/O, so they do not wait for a disk.
 *  - vdfs_pivots_record: any thread that may block (it fsyncs); concurrent
 *    calls are serialised internally, so each one's file holds the effect
 *    of all calls that returned before it.
 *  - vdfs_pivots_load and vdfs_pivots_free: the owner, with no other call
 *    on the same map in progress (start-up and shutdown).
 *  - Nothing here takes another module's lock, so callers may hold any of
 *    their own locks around these calls.
 */
#ifndef VDISK_FUSE_PIVOT_H
#define VDISK_FUSE_PIVOT_H

/*
 * The state file, IMAGE_DIR/.vdiskfs/pivots:
 *
 *   # vdiskfs pivots v1
 *   NAME<TAB>TARGET
 *   ...
 *
 * In both fields '%' and every byte below 0x20 (TAB, CR, LF included) are
 * written as %XX (upper-case hex; either case is read, %00 is refused).
 * Every line ends in LF.  NAME is a file name: not empty, at most NAME_MAX
 * bytes, no '/', not "." or "..".  TARGET is an absolute path shorter than
 * PATH_MAX.  Names are unique: the daemon never writes a duplicate, so one
 * on load means a damaged or hand-edited file and is refused rather than
 * guessed at.
 */
struct vdfs_pivots;

/*
 * Read the state file of IMAGE_DIR (image_dir_fd: O_DIRECTORY, O_PATH is
 * fine; borrowed).  pivots.tmp, left by a crash, is ignored.  A missing
 * .vdiskfs or pivots gives an empty map.
 * Returns 0 and *out (free with vdfs_pivots_free), or -errno; every
 * failure is logged (log_error) with the file and, for a malformed file,
 * the line, so the caller need not report it again:
 *  -EINVAL  bad header, a line without a TAB or with two, a bad %XX, a
 *           raw control byte, an invalid NAME or TARGET, a duplicate
 *           NAME, a last line without LF, pivots not a regular file
 *  -ENOMEM, -EIO, -ENOTDIR (.vdiskfs not a directory), ...
 */
int vdfs_pivots_load(int image_dir_fd, struct vdfs_pivots **out);

/*
 * The target recorded for name.  Returns 0 and *target (caller frees), or
 * -ENOENT (no pivot for name), -ENOMEM.
 */
int vdfs_pivots_get(struct vdfs_pivots *p, const char *name, char **target);

/*
 * Record name -> target (add, or replace the target of name) and make it
 * durable before returning: create .vdiskfs (0700) if missing and fsync
 * IMAGE_DIR, write .vdiskfs/pivots.tmp, fsync it, rename it over pivots,
 * fsync .vdiskfs.  image_dir_fd: O_RDONLY | O_DIRECTORY (not O_PATH: it is
 * fsynced), borrowed.  The strings are copied; target is stored as given
 * (vdfs_target_open's *out_path, target.h, is the intended value).
 *
 * Returns 0, or -errno with the map unchanged, no pivots.tmp left behind
 * and the file holding the same map as before (if the failure came after
 * the rename, the old contents are written back, best effort):
 *  -EINVAL  name or target invalid (see the file format above)
 *  -ENOTDIR .vdiskfs exists and is not a directory
 *  -ENOMEM, -ENOSPC, -EIO, ...
 */
int vdfs_pivots_record(struct vdfs_pivots *p, int image_dir_fd,
		       const char *name, const char *target);

/* Number of recorded pivots. */
unsigned vdfs_pivots_count(struct vdfs_pivots *p);

/* Free the map (not the file).  NULL does nothing. */
void vdfs_pivots_free(struct vdfs_pivots *p);

#endif /* VDISK_FUSE_PIVOT_H */

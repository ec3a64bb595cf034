/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The image table: FUSE nodeid -> struct vdfs_node, read without locks.
 *
 * Threading:
 *  - vdfs_table_get: any thread, no lock (an RCU read-side section
 *    inside).  The node it returns stays valid while the kernel's lookup
 *    count on it is held, i.e. for the whole FUSE request that named it.
 *  - Everything else: any thread; writers serialise on the table lock.
 *    Removed nodes are freed with call_rcu.
 */
#ifndef VDISK_FUSE_TABLE_H
#define VDISK_FUSE_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "vdfs.h"

/* Returns 0 or -errno.  Main thread, before the session starts. */
int vdfs_table_init(void);

/*
 * Free every node (shutdown: no request can come any more) and the
 * table.  Waits for RCU callbacks.  Main thread.
 */
void vdfs_table_destroy(void);

/* The node of nodeid, or NULL. */
struct vdfs_node *vdfs_table_get(uint64_t nodeid);

/*
 * Look name up in IMAGE_DIR (dir_fd): a regular, not hidden file.
 * Returns 0 and a node whose lookup count was raised by one (the kernel
 * now owns that count), or -errno (-ENOENT for hidden names and anything
 * but a regular file).
 */
int vdfs_table_lookup(int dir_fd, const char *name, struct vdfs_node **out);

/* The kernel dropped nlookup counts on nodeid (FORGET). */
void vdfs_table_forget(uint64_t nodeid, uint64_t nlookup);

/*
 * The node of the backing inode (dev, ino), or NULL; raises nothing.
 * Valid while the caller holds a kernel reference (e.g. in UNLINK).
 */
struct vdfs_node *vdfs_table_find_inode(dev_t dev, ino_t ino);

/*
 * A mirror pivot of n to target (fd: an fd of it, taken over; st: its
 * stat): record name -> target in the pivot state file (durable), key the
 * node by the target's inode instead of the old one, and swap its fd and
 * backing path; the old ones go to *old_fd and *old_backing (the caller
 * frees them once no one can use them).  Under the table lock, which
 * lookups hold while they consult the pivot map.  Returns 0, or -errno
 * with nothing changed (fd then still the caller's).
 */
int vdfs_table_pivot(struct vdfs_node *n, const char *target, int fd,
		     const struct stat *st, int *old_fd, char **old_backing);

/* Whether name is served at all (not hidden, not reserved). */
bool vdfs_name_visible(const char *name);

/*
 * Call fn(node, opaque) for every node (shutdown).  fn may block but must
 * not change the table.
 */
void vdfs_table_for_each(void (*fn)(struct vdfs_node *n, void *opaque),
			 void *opaque);

#endif /* VDISK_FUSE_TABLE_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The FUSE front end of vdiskfs: declarations shared by the files of fuse/.
 *
 * Threading (the whole front end):
 *  - FUSE requests arrive in libfuse's worker threads (or in main with
 *    -s).  A worker looks the node up in the image table (table.h, RCU,
 *    no lock), hands every data request to the image's context with
 *    blk_aio_submit (or a coroutine scheduled there) and returns at once;
 *    the reply is sent from the completion callback in the image's
 *    iothread (fuse_reply_* is thread-safe).
 *  - Blocking work that must run in a context (blk_open, blk_close) is
 *    handed over with loop_call_sync, which blocks the calling worker
 *    until it ran: opening and closing are rare.
 *  - A control iothread (the last one) watches the pidfds and timers of
 *    drains (ioctl.c).
 *  - Lock order: table lock (table.c) -> node->lock -> fs->drain_lock.
 *    No lock is held inside an RCU read-side section, and no lock is held
 *    while waiting for a context except node->lock (open/close), which no
 *    context thread ever takes.
 */
#ifndef VDISK_FUSE_VDFS_H
#define VDISK_FUSE_VDFS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <fuse_lowlevel.h>

#include "block.h"
#include "iothread.h"
#include "log.h"
#include "loop.h"
#include "tpool.h"

#define VDFS_MAX_IOTHREADS 64

/* Start-up configuration, filled by main (src/vdiskfs.c). */
struct vdfs_config {
	char *image_dir;               /* absolute (realpath) */
	char *mountpoint;              /* absolute (realpath) */
	char *mirror_dir;              /* absolute or NULL */
	char *pidfile;                 /* absolute or NULL */
	bool foreground, debug, single_thread;
	bool read_only, allow_other;
	enum blk_aio aio;
	enum blk_cache cache;
	unsigned iothreads;            /* 1..VDFS_MAX_IOTHREADS */
	enum log_level log_level;
};

struct vdfs_drain;

/*
 * An open file handle (fi->fh).  Freed at release, or at shutdown for
 * handles the kernel never released.
 */
struct vdfs_handle {
	struct vdfs_node *node;        /* const; holds an open count */
	int flags;                     /* open flags, const (fi->flags is 0
					* in ioctl) */
	/* Protected by fs->drain_lock: */
	struct vdfs_drain *drain;      /* the drain this handle holds */
	bool drain_busy;               /* a DRAIN_BEGIN is in progress */
	unsigned drain_ending;         /* ends in progress (wait on
					* fs->drain_cond) */
	LIST_ENTRY(vdfs_handle) link;  /* fs->handles, fs->handles_lock */
};

/*
 * An image file of IMAGE_DIR known to the kernel (FUSE nodeid).  It lives
 * while the kernel holds a lookup count on it (kernel requests on a nodeid
 * never race its last FORGET), then is freed after an RCU grace period.
 */
struct vdfs_node {
	uint64_t nodeid;               /* const */
	dev_t dev;                     /* const: the first backing inode */
	ino_t ino;                     /* const */
	/*
	 * An O_PATH fd of the backing inode, so a rename or unlink in
	 * IMAGE_DIR does not change what this node is.  A mirror pivot
	 * swaps it (and backing) in the image's context under the table
	 * lock; an old fd stays open until the node is freed.
	 */
	atomic_int fd;
	char *name;                    /* const: name at first lookup */
	char *backing;                 /* IMAGE_DIR/name, or the target */

	/* Protected by node->lock: */
	pthread_mutex_t lock;
	unsigned open_count;           /* open handles */
	bool img_read_only;
	unsigned iothread;             /* index, valid while open */
	/*
	 * The image, from the first open until FORGET or shutdown; written
	 * under lock, read with rcu_dereference (the mirror will swap it).
	 */
	struct blk_image *img;
	/*
	 * Requests handed to the image's context that have not finished
	 * their callback yet.  Atomic.  Closing waits for 0 in the context.
	 */
	atomic_uint pending;

	/* Protected by the table lock (table.c): */
	uint64_t nlookup;              /* the kernel's lookup count */

	/* The image's context thread only (mirror.c): */
	struct vdfs_mirror *mirror;    /* the current or last job */
	struct vdfs_retired *retired;  /* what pivots left behind */
	struct vdfs_vring *vring;      /* the current or last vring test
					* (vringtest.c) */
	atomic_bool pivoted;           /* served from a mirror target */
	/*
	 * A mirror job ran on the node: FORGET must not close the image
	 * under a running job (the kernel forgets a closed file whenever it
	 * likes), and the last job's status stays readable until shutdown.
	 */
	atomic_bool job_live;
};

/* The daemon: one per process. */
struct vdfs {
	struct vdfs_config cfg;
	int dir_fd;                    /* IMAGE_DIR, O_DIRECTORY */
	struct fuse_session *se;
	struct tpool *pool;
	struct iothread *iothreads[VDFS_MAX_IOTHREADS];
	int mirror_dir_fd;             /* -1 without -o mirror_dir */
	struct vdfs_pivots *pivots;    /* IMAGE_DIR/.vdiskfs/pivots */
	struct iothread *ctl_thread;   /* drains' pidfds and timers */
	struct loop *ctl_ctx;
	atomic_uint next_iothread;     /* round-robin */

	pthread_mutex_t handles_lock;  /* protects handles */
	LIST_HEAD(, vdfs_handle) handles;

	pthread_mutex_t drain_lock;    /* protects drains and handle drain
					* fields */
	pthread_cond_t drain_cond;     /* an end finished */
	LIST_HEAD(, vdfs_drain) drains;
	unsigned drains_ending;
	bool shutting_down;            /* drain_lock */
};

extern struct vdfs vdfs_g;

/* ---- vdfs.c ------------------------------------------------------- */

/*
 * Mount, serve until a signal or an unmount, tear everything down.  cfg
 * is copied (its strings are borrowed until return).  Returns the exit
 * status for main: 0 or 1 (errors logged).  Called once, from main, after
 * option checks; daemonizes unless cfg->foreground.
 */
int vdfs_run(const struct vdfs_config *cfg, int argc, char **argv);

/* The context of the iothread an open node uses. */
struct loop *vdfs_node_ctx(struct vdfs_node *n);

/*
 * Open the node's image for one more handle (opening it in an iothread
 * when it is the first); *first tells whether it was.  Returns 0 or
 * -errno.  Worker thread.
 */
int vdfs_node_open(struct vdfs_node *n, bool want_write, bool *first);

/* Drop one open count; closes the image at the last.  Worker/main. */
void vdfs_node_close(struct vdfs_node *n);
/* Close the node's image (FORGET, shutdown); blocks until closed. */
void vdfs_node_release_image(struct vdfs_node *n);

/* Session tuning at FUSE INIT (libfuse's init callback). */
void vdfs_op_init(void *userdata, struct fuse_conn_info *conn);

/* The current image of an open node (RCU read inside). */
struct blk_image *vdfs_node_image(struct vdfs_node *n);

/* ---- ops.c / io.c / ioctl.c ---------------------------------------- */

extern const struct fuse_lowlevel_ops vdfs_ops;

/* struct stat of a node's backing file into attr; 0 or -errno. */
int vdfs_node_stat(struct vdfs_node *n, struct stat *attr);

/* Timeouts given to the kernel with entries and attributes. */
#define VDFS_ENTRY_TIMEOUT 0.0
#define VDFS_ATTR_TIMEOUT  1.0

void vdfs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		  struct fuse_file_info *fi);
void vdfs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		   size_t size, off_t off, struct fuse_file_info *fi);
void vdfs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		   struct fuse_file_info *fi);
void vdfs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
		       off_t offset, off_t length, struct fuse_file_info *fi);
void vdfs_op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		   struct fuse_file_info *fi);
void vdfs_op_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd,
		   void *arg, struct fuse_file_info *fi, unsigned flags,
		   const void *in_buf, size_t in_bufsz, size_t out_bufsz);

/*
 * Resize through the engine and reply with the attributes of n (or an
 * error) from the completion.  The node must be open.  Worker thread.
 */
void vdfs_io_truncate_reply(fuse_req_t req, struct vdfs_node *n,
			    uint64_t size);

/*
 * Resize through the engine and wait for it (O_TRUNC at open: rare, and
 * the open reply needs the result).  Returns 0 or -errno.
 */
int vdfs_io_truncate_sync(struct vdfs_node *n, uint64_t size);

/*
 * A barrier flush for the FLUSH ioctl: replies with the size bytes of out
 * (copied here) once the flush completed.  img is the handle's image.
 */
void vdfs_io_flush_ioctl(fuse_req_t req, struct vdfs_node *n,
			 struct blk_image *img, const void *out, size_t size);

/* ---- mirror.c ------------------------------------------------------ */

/*
 * The mirror commands (VDISK_IOC_MIRROR_*), after ioctl.c checked the
 * struct (size bytes at in) and the caller.  Replies.  Worker thread.
 */
void vdfs_mirror_ioctl(fuse_req_t req, struct vdfs_node *n,
		       struct blk_image *img, unsigned cmd, const void *in,
		       size_t size);

/* enum vdisk_mirror_state of the node's job.  Image's context thread. */
uint32_t vdfs_mirror_state(struct vdfs_node *n);

/*
 * Stop the node's job (its target is then incomplete), free it and what
 * pivots left behind.  Image's context thread, outside a coroutine,
 * before the image is closed.
 */
void vdfs_mirror_node_release(struct vdfs_node *n);

/* ---- vringtest.c --------------------------------------------------- */

/*
 * The vring test commands (VDISK_IOC_VRING_TEST_*), after ioctl.c checked
 * the struct (size bytes at in); checks the caller itself (a read-only
 * workload needs no write handle).  Replies.  Worker thread.
 */
void vdfs_vring_ioctl(fuse_req_t req, struct vdfs_handle *h,
		      struct blk_image *img, unsigned cmd, const void *in,
		      size_t size);

/*
 * Free the node's vring test, stopping it at once if it runs.  Image's
 * context thread, outside a coroutine, before the mirror's release (a
 * test may use an image that a pivot retired).
 */
void vdfs_vring_node_release(struct vdfs_node *n);

/* ioctl.c: end the handle's drain if it holds one (release). */
void vdfs_drain_release(struct vdfs_handle *h);

/* ioctl.c: end every drain (shutdown); waits for ends in progress. */
void vdfs_drain_end_all(void);

#endif /* VDISK_FUSE_VDFS_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The FUSE session of vdiskfs and the life of its images.
 *
 * vdfs_run mounts, tunes the session (vdfs_op_init: every choice says
 * why), starts the iothreads, the thread pool and the control iothread,
 * serves until a signal or an unmount and then shuts down in an order
 * that loses nothing: end the drains users hold (postponed requests then
 * run and are answered), close every image (which waits for its requests,
 * drains and flushes), and only then unmount.
 *
 * Images are opened at a node's first FUSE open and closed at its last
 * release, each in the context of an iothread chosen round-robin; blk_open
 * and blk_close must run in that thread, so the worker hands them over
 * with loop_call_sync and waits.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>

#include <urcu-bp.h>

#include "pivot.h"
#include "table.h"
#include "vdfs.h"

struct vdfs vdfs_g;

/* ---- images -------------------------------------------------------- */

struct loop *vdfs_node_ctx(struct vdfs_node *n)
{
	return iothread_get_ctx(vdfs_g.iothreads[n->iothread]);
}

struct blk_image *vdfs_node_image(struct vdfs_node *n)
{
	struct blk_image *img;

	/* The pointer may be swapped (mirror pivot); the image it names is
	 * kept alive by the caller's open handle, not by the read section. */
	rcu_read_lock();
	img = rcu_dereference(n->img);
	rcu_read_unlock();
	return img;
}

struct close_call {
	struct vdfs_node *n;
	struct loop *ctx;
	struct blk_image *img;
};

static void close_fn(void *opaque)
{
	struct close_call *c = opaque;

	/* A vring test, then a mirror job go first: they hold the image. */
	vdfs_vring_node_release(c->n);
	vdfs_mirror_node_release(c->n);
	c->img = c->n->img;
	rcu_assign_pointer(c->n->img, NULL);
	/* Callbacks of requests still on their way decrement pending in
	 * this thread, so no kick is needed. */
	LOOP_WAIT_WHILE(c->ctx, atomic_load(&c->n->pending) > 0);
	blk_close(c->img);
}

/* Caller holds n->lock; no handle is open. */
static void node_close_locked(struct vdfs_node *n)
{
	struct close_call c = { .n = n, .ctx = vdfs_node_ctx(n) };

	/* The image's context clears n->img (a pivot may still swap it
	 * until the job is stopped there). */
	if (n->img)
		loop_call_sync(c.ctx, close_fn, &c);
	log_debug("closed %s", n->name);
}

struct open_call {
	struct blk_open_opts o;
	struct loop *ctx;
	struct blk_image *img;
	int ret;
};

static void open_fn(void *opaque)
{
	struct open_call *c = opaque;

	c->ret = blk_open(&c->o, c->ctx, vdfs_g.pool, &c->img);
}

int vdfs_node_open(struct vdfs_node *n, bool want_write, bool *first)
{
	char path[64];
	struct open_call c = { 0 };
	unsigned idx;

	pthread_mutex_lock(&n->lock);
	*first = n->open_count == 0;
	/*
	 * The image stays open while the kernel knows the node (until
	 * FORGET), so its statistics and drains outlive a close and a
	 * sequence of short opens costs no reopen.  Only a writer finding
	 * it opened read-only, with no handle left, reopens it.
	 */
	if (n->img && want_write && n->img_read_only && n->open_count == 0)
		node_close_locked(n);
	if (n->img) {
		if (want_write && n->img_read_only) {
			pthread_mutex_unlock(&n->lock);
			return -EROFS;
		}
		n->open_count++;
		pthread_mutex_unlock(&n->lock);
		return 0;
	}
	idx = atomic_fetch_add(&vdfs_g.next_iothread, 1) %
	      vdfs_g.cfg.iothreads;
	/* Reopen the very inode this node names, whatever IMAGE_DIR now
	 * holds under its name. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", n->fd);
	c.ctx = iothread_get_ctx(vdfs_g.iothreads[idx]);
	c.o.path = path;
	c.o.read_only = vdfs_g.cfg.read_only;
	c.o.aio = vdfs_g.cfg.aio;
	c.o.cache = vdfs_g.cfg.cache;
	c.o.discard = true;
	loop_call_sync(c.ctx, open_fn, &c);
	if ((c.ret == -EACCES || c.ret == -EROFS || c.ret == -EPERM) &&
	    !want_write && !c.o.read_only) {
		/* A file the daemon may only read can still be read. */
		c.o.read_only = true;
		loop_call_sync(c.ctx, open_fn, &c);
	}
	if (c.ret < 0) {
		pthread_mutex_unlock(&n->lock);
		log_warn("cannot open image %s: %s", n->backing,
			 strerror(-c.ret));
		return c.ret;
	}
	n->iothread = idx;
	n->img_read_only = c.o.read_only;
	rcu_assign_pointer(n->img, c.img);
	n->open_count++;
	pthread_mutex_unlock(&n->lock);
	log_debug("opened %s in iothread %u", n->name, idx);
	return 0;
}

void vdfs_node_close(struct vdfs_node *n)
{
	pthread_mutex_lock(&n->lock);
	if (n->open_count > 0)
		n->open_count--;
	pthread_mutex_unlock(&n->lock);
}

void vdfs_node_release_image(struct vdfs_node *n)
{
	pthread_mutex_lock(&n->lock);
	n->open_count = 0;
	if (n->img)
		node_close_locked(n);
	pthread_mutex_unlock(&n->lock);
}

static void node_close_force(struct vdfs_node *n, void *opaque)
{
	vdfs_node_release_image(n);
}

/* ---- session tuning ------------------------------------------------ */

static void want_cap(struct fuse_conn_info *conn, unsigned cap, bool on)
{
	if (!on)
		conn->want &= ~cap;
	else if (conn->capable & cap)
		conn->want |= cap;
	else
		log_warn("the kernel lacks FUSE capability %#x", cap);
}

void vdfs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	const struct vdfs_config *cfg = &vdfs_g.cfg;

	/*
	 * Async direct I/O: without it the kernel sends one O_DIRECT
	 * request at a time per file, so a depth-16 libaio job runs at
	 * depth 1 (MEASURED.md: 0.18x raw instead of 0.8x).
	 */
	want_cap(conn, FUSE_CAP_ASYNC_DIO, true);
	/* Async reads: readahead and concurrent reads of one file go out in
	 * parallel instead of one by one. */
	want_cap(conn, FUSE_CAP_ASYNC_READ, true);
	/* O_TRUNC arrives with OPEN (one request, truncated through the
	 * engine) instead of as a separate SETATTR. */
	want_cap(conn, FUSE_CAP_ATOMIC_O_TRUNC, true);
	/* writeback: the kernel's page cache in front of the images. */
	want_cap(conn, FUSE_CAP_WRITEBACK_CACHE,
		 cfg->cache == BLK_CACHE_WRITEBACK);
	/*
	 * No splice: measured no gain here and it doubles the daemon's CPU
	 * on 1M reads; a write's payload is copied into an owned buffer
	 * anyway (a request owns its data until it completes).
	 */
	want_cap(conn, FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE |
		 FUSE_CAP_SPLICE_MOVE, false);
	/*
	 * 1 MiB writes: a 1M sequential write is one request, not eight.
	 * libfuse 3.14 sizes its receive buffers for 256 pages and derives
	 * the kernel's max_pages from max_write in its INIT reply.
	 */
	conn->max_write = 1u << 20;
	conn->max_read = 0;            /* no limit beyond max_pages */
	conn->max_readahead = VDISK_MAX(conn->max_readahead, 1u << 20);
	/*
	 * Async direct I/O requests are background requests.  The kernel's
	 * default of 12 caps the queue a client can keep: the tests run 4
	 * jobs at depth 32 (128 requests), so 256 leaves room, and a
	 * RELEASE (also background) is not stuck behind postponed I/O.
	 * Congestion (the writeback throttle) at three quarters of that.
	 */
	conn->max_background = 256;
	conn->congestion_threshold = 192;
	log_debug("FUSE protocol %u.%u, want %#x", conn->proto_major,
		  conn->proto_minor, conn->want);
}

/* ---- libfuse's messages -------------------------------------------- */

static char fuse_first_error[512];
static bool fuse_first_error_done;

/*
 * During start-up: keep libfuse's first error line (it may come in
 * pieces) for our one-line message.
 */
static void fuse_log_capture(enum fuse_log_level level, const char *fmt,
			     va_list ap)
{
	size_t len = strlen(fuse_first_error);
	char *nl;

	if (level > FUSE_LOG_ERR || fuse_first_error_done)
		return;
	vsnprintf(fuse_first_error + len, sizeof(fuse_first_error) - len, fmt,
		  ap);
	nl = strchr(fuse_first_error, '\n');
	if (nl) {
		*nl = '\0';
		fuse_first_error_done = true;
	}
	if (!strncmp(fuse_first_error, "fuse: ", 6))
		memmove(fuse_first_error, fuse_first_error + 6,
			strlen(fuse_first_error + 6) + 1);
}

/* At run time: libfuse's messages go to our log. */
static void fuse_log_forward(enum fuse_log_level level, const char *fmt,
			     va_list ap)
{
	enum log_level l = level <= FUSE_LOG_ERR ? LOG_LEVEL_ERROR :
			   level <= FUSE_LOG_WARNING ? LOG_LEVEL_WARN :
			   level <= FUSE_LOG_INFO ? LOG_LEVEL_INFO :
			   LOG_LEVEL_DEBUG;

	log_vmsg(l, fmt, ap);
}

static const char *fuse_error_or(const char *dflt)
{
	return fuse_first_error[0] ? fuse_first_error : dflt;
}

/* ---- start and stop ------------------------------------------------ */

static int write_pidfile(const char *path)
{
	char tmp[PATH_MAX + 16], buf[32];
	int fd, len, ret = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)len) != len)
		ret = -EIO;
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	/* Rename: a waiting test never reads a half-written pidfile. */
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0)
		unlink(tmp);
	return ret;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* One O_PATH fd per known image and one per open image. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int start_threads(struct vdfs *fs)
{
	sigset_t all, old;
	int ret;

	/*
	 * Only libfuse's threads and main may take SIGINT/SIGTERM/SIGHUP:
	 * the handler ends the session, which only a thread in the session
	 * loop notices.  Threads created here inherit the blocked mask.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = tpool_new(NULL, &fs->pool);
	for (unsigned i = 0; ret == 0 && i < fs->cfg.iothreads; i++)
		ret = iothread_new(i, &fs->iothreads[i]);
	if (ret == 0)
		ret = iothread_new(fs->cfg.iothreads, &fs->ctl_thread);
	if (ret == 0) {
		fs->ctl_ctx = iothread_get_ctx(fs->ctl_thread);
		/* Start call_rcu's thread now, with signals blocked. */
		(void)get_default_call_rcu_data();
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

static void stop_threads(struct vdfs *fs)
{
	/* The pool first: its workers still touch the contexts' notifiers
	 * (tpool.h); every request has completed by now. */
	tpool_free(fs->pool);
	fs->pool = NULL;
	for (unsigned i = 0; i < fs->cfg.iothreads; i++) {
		iothread_free(fs->iothreads[i]);
		fs->iothreads[i] = NULL;
	}
	iothread_free(fs->ctl_thread);
	fs->ctl_thread = NULL;
	fs->ctl_ctx = NULL;
}

static void free_handles(struct vdfs *fs)
{
	struct vdfs_handle *h;

	pthread_mutex_lock(&fs->handles_lock);
	while ((h = LIST_FIRST(&fs->handles))) {
		LIST_REMOVE(h, link);
		free(h);
	}
	pthread_mutex_unlock(&fs->handles_lock);
}

static int serve(struct vdfs *fs)
{
	struct fuse_loop_config lc = {
		/*
		 * One /dev/fuse fd per worker: workers do not all wake on
		 * one fd's wait queue (measured best in MEASURED.md).
		 */
		.clone_fd = 1,
		/*
		 * Workers never block on disk I/O, so few are busy at once;
		 * keep libfuse's default of 10 idle ones rather than
		 * creating threads per burst.
		 */
		.max_idle_threads = 10,
	};

	if (fs->cfg.single_thread)
		return fuse_session_loop(fs->se);
	return fuse_session_loop_mt(fs->se, &lc);
}

static int build_args(const struct vdfs_config *cfg, int argc, char **argv,
		      struct fuse_args *args)
{
	int ret = 0;

	for (int i = 0; ret == 0 && i < argc; i++)
		ret = fuse_opt_add_arg(args, argv[i]);
	/* The kernel checks modes and owners (DESIGN.md "Security"). */
	if (ret == 0)
		ret = fuse_opt_add_arg(args, "-odefault_permissions");
	if (ret == 0)
		ret = fuse_opt_add_arg(args, "-ofsname=vdiskfs,subtype=vdiskfs");
	if (ret == 0 && cfg->debug)
		ret = fuse_opt_add_arg(args, "-odebug");
	return ret < 0 ? -ENOMEM : 0;
}

int vdfs_run(const struct vdfs_config *cfg, int argc, char **argv)
{
	struct vdfs *fs = &vdfs_g;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	int ret, status = 1;

	fs->cfg = *cfg;
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_mutex_init(&fs->drain_lock, NULL);
	pthread_cond_init(&fs->drain_cond, NULL);
	LIST_INIT(&fs->handles);
	LIST_INIT(&fs->drains);

	fs->dir_fd = open(cfg->image_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->dir_fd < 0) {
		fprintf(stderr, "vdiskfs: %s: %s\n", cfg->image_dir,
			strerror(errno));
		return 2;
	}
	fs->mirror_dir_fd = -1;
	if (cfg->mirror_dir) {
		fs->mirror_dir_fd = open(cfg->mirror_dir, O_PATH | O_DIRECTORY |
					 O_CLOEXEC);
		if (fs->mirror_dir_fd < 0) {
			fprintf(stderr, "vdiskfs: mirror_dir %s: %s\n",
				cfg->mirror_dir, strerror(errno));
			goto out_close_dir;
		}
	}
	/* Pivots recorded by earlier runs: each NAME is served from its
	 * target.  A damaged state file stops the start (logged): serving
	 * the old sources instead would roll the images back. */
	ret = vdfs_pivots_load(fs->dir_fd, &fs->pivots);
	if (ret < 0)
		goto out_close_dir;
	if (build_args(cfg, argc, argv, &args) < 0) {
		fprintf(stderr, "vdiskfs: out of memory\n");
		goto out_close_dir;
	}

	fuse_set_log_func(fuse_log_capture);
	fs->se = fuse_session_new(&args, &vdfs_ops, sizeof(vdfs_ops), fs);
	if (!fs->se) {
		/* Nearly always an -o option libfuse does not know. */
		fprintf(stderr, "vdiskfs: %s\n",
			fuse_error_or("cannot create the FUSE session"));
		status = 2;
		goto out_free_args;
	}
	/*
	 * libfuse installs its handlers only over SIG_DFL, and a shell that
	 * starts us in the background without job control leaves SIGINT
	 * ignored: SIGINT and SIGTERM are documented to stop the daemon,
	 * so make sure they do.
	 */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (fuse_set_signal_handlers(fs->se) < 0) {
		fprintf(stderr, "vdiskfs: cannot set signal handlers\n");
		goto out_destroy;
	}
	if (fuse_session_mount(fs->se, cfg->mountpoint) < 0) {
		fprintf(stderr, "vdiskfs: cannot mount on %s: %s\n",
			cfg->mountpoint, fuse_error_or("mount failed"));
		goto out_signals;
	}
	if (fuse_daemonize(cfg->foreground) < 0) {
		fprintf(stderr, "vdiskfs: cannot become a daemon\n");
		goto out_unmount;
	}
	log_init("vdiskfs", cfg->log_level, !cfg->foreground);
	fuse_set_log_func(fuse_log_forward);
	raise_fd_limit();

	/*
	 * After the fork of fuse_daemonize: the table's resize worker is a
	 * thread of liburcu, and a thread does not survive a fork (the
	 * child would wait for it forever at exit).
	 */
	if (vdfs_table_init() < 0) {
		log_error("cannot create the image table: out of memory");
		goto out_unmount;
	}

	ret = start_threads(fs);
	if (ret < 0) {
		log_error("cannot start threads: %s", strerror(-ret));
		goto out_threads;
	}
	if (cfg->pidfile) {
		ret = write_pidfile(cfg->pidfile);
		if (ret < 0) {
			log_error("cannot write %s: %s", cfg->pidfile,
				  strerror(-ret));
			goto out_threads;
		}
	}
	log_info("serving %s on %s (aio=%s, cache=%s, iothreads=%u%s)",
		 cfg->image_dir, cfg->mountpoint,
		 cfg->aio == BLK_AIO_NATIVE ? "native" : "threads",
		 cfg->cache == BLK_CACHE_NONE ? "none" : "writeback",
		 cfg->iothreads, cfg->read_only ? ", ro" : "");
	if (vdfs_pivots_count(fs->pivots))
		log_info("%u image(s) served from mirror targets (%s/.vdiskfs/"
			 "pivots)", vdfs_pivots_count(fs->pivots),
			 cfg->image_dir);

	ret = serve(fs);
	if (ret < 0)
		log_error("session loop failed: %s", strerror(-ret));
	else
		status = 0;
	log_info("shutting down");

	/* Postponed requests run and are answered while still mounted. */
	vdfs_drain_end_all();
	vdfs_table_for_each(node_close_force, NULL);
	if (cfg->pidfile)
		unlink(cfg->pidfile);
out_threads:
	stop_threads(fs);
	free_handles(fs);
out_unmount:
	fuse_session_unmount(fs->se);
out_signals:
	fuse_remove_signal_handlers(fs->se);
out_destroy:
	fuse_session_destroy(fs->se);
	fs->se = NULL;
out_free_args:
	fuse_opt_free_args(&args);
out_close_dir:
	vdfs_table_destroy();
	vdfs_pivots_free(fs->pivots);
	fs->pivots = NULL;
	if (fs->mirror_dir_fd >= 0)
		close(fs->mirror_dir_fd);
	close(fs->dir_fd);
	return status;
}

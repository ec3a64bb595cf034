/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdiskfs: serve the raw disk images of a directory as files of a FUSE
 * mount, every request going through the block engine.
 *
 * This file is the command line: options, checks of the directories, the
 * O_DIRECT probe that picks the default aio and cache modes.  Every
 * start-up error is one line "vdiskfs: message" on stderr and exit status
 * 2.  The daemon itself is fuse/ (vdfs_run).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <fuse_lowlevel.h>
#include <fuse_opt.h>

#include "log.h"
#include "vdfs.h"

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_FOREGROUND,
	KEY_DEBUG,
	KEY_SINGLE,
	KEY_AIO,
	KEY_CACHE,
	KEY_IOTHREADS,
	KEY_RO,
	KEY_ALLOW_OTHER,
	KEY_MIRROR_DIR,
	KEY_PIDFILE,
	KEY_LOG_LEVEL,
};

struct cmdline {
	struct vdfs_config cfg;
	bool aio_set, cache_set;
	bool help, version;
	unsigned positional;
	char *error;                   /* the first error, owned */
};

static const struct fuse_opt opts[] = {
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("-s", KEY_SINGLE),
	FUSE_OPT_KEY("aio=", KEY_AIO),
	FUSE_OPT_KEY("cache=", KEY_CACHE),
	FUSE_OPT_KEY("iothreads=", KEY_IOTHREADS),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	FUSE_OPT_KEY("mirror_dir=", KEY_MIRROR_DIR),
	FUSE_OPT_KEY("--pidfile=", KEY_PIDFILE),
	FUSE_OPT_KEY("--pidfile ", KEY_PIDFILE),
	FUSE_OPT_KEY("--log-level=", KEY_LOG_LEVEL),
	FUSE_OPT_KEY("--log-level ", KEY_LOG_LEVEL),
	FUSE_OPT_END
};

static void usage(FILE *f)
{
	fprintf(f,
"Usage: vdiskfs [OPTIONS] IMAGE_DIR MOUNTPOINT\n"
"Serve the raw disk images (regular files) of IMAGE_DIR as files of a FUSE\n"
"mount at MOUNTPOINT.\n"
"\n"
"Options:\n"
"  -f                      stay in the foreground, log to stderr\n"
"  -d                      debug: -f, debug logging and FUSE tracing\n"
"  -s                      serve FUSE from a single thread\n"
"  -o aio=native|threads   Linux AIO or the thread pool (default native\n"
"                          where O_DIRECT works on IMAGE_DIR)\n"
"  -o cache=none|writeback none: O_DIRECT backing, direct_io files (no\n"
"                          shared mmap); writeback: page caches (default\n"
"                          none where O_DIRECT works)\n"
"  -o iothreads=N          I/O threads, 1..%u (default 1)\n"
"  -o ro                   read-only mount\n"
"  -o allow_other          let other users in (modes are always checked)\n"
"  -o mirror_dir=DIR       where mirror targets may be created\n"
"  --pidfile=FILE          write the daemon's pid once the mount is live\n"
"  --log-level=LEVEL       error, warning, info (default) or debug\n"
"  -h, --help              show this help\n"
"  -V, --version           show the version\n"
"Other -o options are passed to the FUSE mount.\n"
"See vdiskfs(8).\n", VDFS_MAX_IOTHREADS);
}

static void set_error(struct cmdline *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error(struct cmdline *c, const char *fmt, ...)
{
	va_list ap;

	if (c->error)
		return;
	va_start(ap, fmt);
	if (vasprintf(&c->error, fmt, ap) < 0)
		c->error = NULL;
	va_end(ap);
	if (!c->error)
		c->error = strdup("out of memory");
}

static const char *opt_value(const char *arg)
{
	const char *p = strchr(arg, '=');

	if (p)
		return p + 1;
	p = strchr(arg, ' ');
	return p ? p + 1 : arg;
}

static int parse_iothreads(struct cmdline *c, const char *v)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (!*v || *end || errno || *v == '-' || *v == '+' || n < 1 ||
	    n > VDFS_MAX_IOTHREADS) {
		set_error(c, "iothreads must be 1..%u, not '%s'",
			  VDFS_MAX_IOTHREADS, v);
		return -1;
	}
	c->cfg.iothreads = (unsigned)n;
	return 0;
}

static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *outargs)
{
	struct cmdline *c = data;
	const char *v = opt_value(arg);

	switch (key) {
	case KEY_HELP:
		c->help = true;
		return 0;
	case KEY_VERSION:
		c->version = true;
		return 0;
	case KEY_DEBUG:
		c->cfg.debug = true;
		/* fall through */
	case KEY_FOREGROUND:
		c->cfg.foreground = true;
		return 0;
	case KEY_SINGLE:
		c->cfg.single_thread = true;
		return 0;
	case KEY_AIO:
		c->aio_set = true;
		if (!strcmp(v, "native"))
			c->cfg.aio = BLK_AIO_NATIVE;
		else if (!strcmp(v, "threads"))
			c->cfg.aio = BLK_AIO_THREADS;
		else
			set_error(c, "aio must be native or threads, not '%s'",
				  v);
		return 0;
	case KEY_CACHE:
		c->cache_set = true;
		if (!strcmp(v, "none"))
			c->cfg.cache = BLK_CACHE_NONE;
		else if (!strcmp(v, "writeback"))
			c->cfg.cache = BLK_CACHE_WRITEBACK;
		else
			set_error(c, "cache must be none or writeback, not '%s'",
				  v);
		return 0;
	case KEY_IOTHREADS:
		parse_iothreads(c, v);
		return 0;
	case KEY_RO:
		c->cfg.read_only = true;
		return 1;              /* the kernel mount is read-only too */
	case KEY_ALLOW_OTHER:
		c->cfg.allow_other = true;
		return 1;
	case KEY_MIRROR_DIR:
		free(c->cfg.mirror_dir);
		c->cfg.mirror_dir = strdup(v);
		return 0;
	case KEY_PIDFILE:
		free(c->cfg.pidfile);
		c->cfg.pidfile = strdup(v);
		return 0;
	case KEY_LOG_LEVEL:
		if (log_parse_level(v, &c->cfg.log_level) < 0)
			set_error(c, "bad log level '%s' (error, warning, "
				  "info or debug)", v);
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (c->positional == 0)
			c->cfg.image_dir = strdup(arg);
		else if (c->positional == 1)
			c->cfg.mountpoint = strdup(arg);
		else
			set_error(c, "unexpected argument '%s'", arg);
		c->positional++;
		return 0;
	default:
		/* "-x" or "--x" we do not know; a bare word is an -o option
		 * that goes on to libfuse, which checks it. */
		if (arg[0] == '-') {
			set_error(c, "unknown option '%s' (see --help)", arg);
			return 0;
		}
		return 1;
	}
}

/* realpath into *out, or an error message.  Returns 0 or -1. */
static int canonical_dir(struct cmdline *c, const char *what,
			 const char *path, char **out)
{
	struct stat st;
	char *real;

	if (stat(path, &st) < 0) {
		set_error(c, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		set_error(c, "%s %s: Not a directory", what, path);
		return -1;
	}
	real = realpath(path, NULL);
	if (!real) {
		set_error(c, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	*out = real;
	return 0;
}

/* Whether a is b or lies below it (both canonical). */
static bool path_within(const char *a, const char *b)
{
	size_t lb = strlen(b);

	if (!strcmp(b, "/"))
		return true;
	return !strncmp(a, b, lb) && (a[lb] == '\0' || a[lb] == '/');
}

/*
 * Does O_DIRECT work in dir?  1 yes, 0 no.  An unnamed temporary file
 * where the file system has them, else a named one, else (a read-only
 * directory) an existing file.
 */
static int probe_direct(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	fd = open(dir, O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		close(fd);
		return 1;
	}
	if (errno == EINVAL)
		return 0;
	snprintf(path, sizeof(path), "%s/.vdiskfs-probe.%d", dir,
		 (int)getpid());
	fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_DIRECT | O_CLOEXEC,
		  0600);
	if (fd >= 0) {
		close(fd);
		unlink(path);
		return 1;
	}
	if (errno == EINVAL)
		return 0;
	/* Cannot create files here: assume O_DIRECT works; opening an
	 * image will say otherwise. */
	return 1;
}

static int check_config(struct cmdline *c)
{
	struct vdfs_config *cfg = &c->cfg;
	char *real;
	int direct;

	if (c->error)
		return -1;
	if (c->positional < 2) {
		set_error(c, "missing %s (see --help)",
			  c->positional ? "MOUNTPOINT" : "IMAGE_DIR");
		return -1;
	}
	if (canonical_dir(c, "image directory", cfg->image_dir, &real) < 0)
		return -1;
	free(cfg->image_dir);
	cfg->image_dir = real;
	if (canonical_dir(c, "mount point", cfg->mountpoint, &real) < 0)
		return -1;
	free(cfg->mountpoint);
	cfg->mountpoint = real;
	if (cfg->mirror_dir) {
		if (canonical_dir(c, "mirror_dir", cfg->mirror_dir, &real) < 0)
			return -1;
		free(cfg->mirror_dir);
		cfg->mirror_dir = real;
		if (path_within(cfg->mirror_dir, cfg->image_dir) ||
		    path_within(cfg->image_dir, cfg->mirror_dir)) {
			set_error(c, "mirror_dir %s overlaps the image "
				  "directory %s", cfg->mirror_dir,
				  cfg->image_dir);
			return -1;
		}
	}
	if (cfg->pidfile && cfg->pidfile[0] != '/') {
		/* The daemon changes to "/": keep the caller's meaning. */
		char *cwd = getcwd(NULL, 0), *abs = NULL;

		if (!cwd || asprintf(&abs, "%s/%s", cwd, cfg->pidfile) < 0)
			abs = NULL;
		free(cwd);
		if (!abs) {
			set_error(c, "out of memory");
			return -1;
		}
		free(cfg->pidfile);
		cfg->pidfile = abs;
	}

	direct = probe_direct(cfg->image_dir);
	if (!c->cache_set)
		cfg->cache = direct ? BLK_CACHE_NONE : BLK_CACHE_WRITEBACK;
	else if (cfg->cache == BLK_CACHE_NONE && !direct) {
		set_error(c, "cache=none needs O_DIRECT, which %s does not "
			  "support", cfg->image_dir);
		return -1;
	}
	if (!c->aio_set)
		cfg->aio = direct ? BLK_AIO_NATIVE : BLK_AIO_THREADS;
	if (!direct && !c->cache_set)
		fprintf(stderr, "vdiskfs: %s does not support O_DIRECT: "
			"using cache=writeback\n", cfg->image_dir);
	return 0;
}

static void free_config(struct vdfs_config *cfg)
{
	free(cfg->image_dir);
	free(cfg->mountpoint);
	free(cfg->mirror_dir);
	free(cfg->pidfile);
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct cmdline c = {
		.cfg = { .iothreads = 1, .log_level = LOG_LEVEL_INFO },
	};
	int status;

	if (fuse_opt_parse(&args, &c, opts, opt_proc) < 0)
		set_error(&c, "bad command line (see --help)");
	if (c.help && !c.error) {
		usage(stdout);
		status = 0;
		goto out;
	}
	if (c.version && !c.error) {
		printf("vdiskfs %s (libfuse %s)\n", PACKAGE_VERSION,
		       fuse_pkgversion());
		status = 0;
		goto out;
	}
	if (check_config(&c) < 0) {
		fprintf(stderr, "vdiskfs: %s\n", c.error);
		status = 2;
		goto out;
	}
	if (c.cfg.debug)
		c.cfg.log_level = LOG_LEVEL_DEBUG;
	log_init("vdiskfs", c.cfg.log_level, false);
	/* args now holds argv[0] and the -o options for libfuse. */
	status = vdfs_run(&c.cfg, args.argc, args.argv);
out:
	fuse_opt_free_args(&args);
	free_config(&c.cfg);
	free(c.error);
	return status;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdiskctl mirror: the command line of the mirror sub-commands, and those
 * that command a job through the MIRROR_* ioctls of vdisk-ioctl.h.
 *
 *   start FILE TARGET [...]   MIRROR_START (write handle)
 *   complete FILE [...]       MIRROR_COMPLETE, then wait until over
 *   cancel FILE [--force]     MIRROR_CANCEL, then wait until over
 *   pause, resume FILE        MIRROR_PAUSE, MIRROR_RESUME
 *   set-speed FILE RATE       MIRROR_SET_SPEED
 *   status, wait FILE         in vdiskctl-mirror-status.c
 *
 * Design notes.  TARGET: the daemon resolves it beneath its mirror_dir and
 * trusts nothing of it; vdiskctl only makes it absolute the way the user
 * means it, relative to our working directory: realpath(3) of the parent
 * directory plus the last component, unresolved (the daemon creates that
 * file, or opens an existing one without following a symlink).  The
 * syntax of every option and operand is checked before FILE is opened, so
 * a usage error (exit 2) never reaches the daemon.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "size.h"
#include "vdisk-ioctl.h"
#include "vdiskctl-internal.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#define MIRROR_TIMEOUT_MAX 31536000u      /* --timeout: a year, in s */

/* ---- the command line ------------------------------------------------ */

enum mirror_opt {
	MO_SYNC, MO_GRANULARITY, MO_BUF_SIZE, MO_SPEED, MO_MODE,
	MO_ON_SOURCE_ERROR, MO_ON_TARGET_ERROR, MO_EXISTING,
	MO_JSON, MO_READY, MO_DONE, MO_PROGRESS, MO_TIMEOUT,
	MO_NO_PIVOT, MO_FORCE,
	MO_NR
};

#define MO(o) (1u << (o))

static const struct {
	const char *name;
	const char *value;              /* what it takes, or NULL */
} mirror_opts[MO_NR] = {
	[MO_SYNC] = { "--sync", "full or none" },
	[MO_GRANULARITY] = { "--granularity", "SIZE" },
	[MO_BUF_SIZE] = { "--buf-size", "SIZE" },
	[MO_SPEED] = { "--speed", "RATE" },
	[MO_MODE] = { "--mode", "background or write-blocking" },
	[MO_ON_SOURCE_ERROR] = { "--on-source-error",
				 "report, stop or ignore" },
	[MO_ON_TARGET_ERROR] = { "--on-target-error",
				 "report, stop or ignore" },
	[MO_EXISTING] = { "--existing", NULL },
	[MO_JSON] = { "--json", NULL },
	[MO_READY] = { "--ready", NULL },
	[MO_DONE] = { "--done", NULL },
	[MO_PROGRESS] = { "--progress", NULL },
	[MO_TIMEOUT] = { "--timeout", "SECONDS" },
	[MO_NO_PIVOT] = { "--no-pivot", NULL },
	[MO_FORCE] = { "--force", NULL },
};

struct mirror_cmd {
	const char *name;
	int (*run)(const struct ctl_mirror_args *m);
	unsigned opts;                  /* MO(...) */
	const char *arg_name;           /* a second operand, or NULL */
	const char *usage;              /* after "Usage: " */
	const char *help;
};

static int __attribute__((format(printf, 2, 3)))
mirror_usage(const struct ctl_mirror_args *m, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = ctl_vusage_error(m->name, fmt, ap);
	va_end(ap);
	return ret;
}

/* Set *out to the index of s in names.  Returns 0 or a usage error. */
static int parse_enum(const struct ctl_mirror_args *m, int o, const char *s,
		      const char *const *names, size_t n, uint32_t *out)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		if (!strcmp(s, names[i])) {
			*out = i;
			return 0;
		}
	}
	return mirror_usage(m, "invalid %s '%s': %s", mirror_opts[o].name, s,
			    mirror_opts[o].value);
}

/* Bytes per second: a size, optionally followed by "/s".  0 or -EINVAL. */
static int parse_rate(const char *s, uint64_t *out)
{
	char buf[64];
	size_t n = strlen(s);

	if (n > 2 && s[n - 2] == '/' && (s[n - 1] == 's' || s[n - 1] == 'S'))
		n -= 2;
	if (n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return size_parse(buf, out) < 0 ? -EINVAL : 0;
}

/* Set option o from val (NULL for a flag).  Returns 0 or a usage error. */
static int mirror_set_option(struct ctl_mirror_args *m, int o, const char *val)
{
	bool *const flags[MO_NR] = {
		[MO_EXISTING] = &m->existing, [MO_JSON] = &m->json,
		[MO_READY] = &m->ready, [MO_DONE] = &m->done,
		[MO_PROGRESS] = &m->progress, [MO_NO_PIVOT] = &m->no_pivot,
		[MO_FORCE] = &m->force,
	};
	const char *name = mirror_opts[o].name;
	uint64_t secs;

	if (flags[o]) {
		*flags[o] = true;
		return 0;
	}
	switch (o) {
	case MO_SYNC:
		return parse_enum(m, o, val, ctl_mirror_sync_names,
				  CTL_MIRROR_SYNC_NR, &m->sync);
	case MO_MODE:
		return parse_enum(m, o, val, ctl_mirror_mode_names,
				  CTL_MIRROR_MODE_NR, &m->copy_mode);
	case MO_ON_SOURCE_ERROR:
		return parse_enum(m, o, val, ctl_mirror_on_error_names,
				  CTL_MIRROR_ON_ERROR_NR, &m->on_source_error);
	case MO_ON_TARGET_ERROR:
		return parse_enum(m, o, val, ctl_mirror_on_error_names,
				  CTL_MIRROR_ON_ERROR_NR, &m->on_target_error);
	case MO_GRANULARITY:
		if (size_parse(val, &m->granularity) < 0 || !m->granularity ||
		    (m->granularity & (m->granularity - 1)))
			return mirror_usage(m, "invalid %s '%s': a power of "
					    "two such as 64K", name, val);
		return 0;
	case MO_BUF_SIZE:
		if (size_parse(val, &m->buf_size) < 0 || !m->buf_size)
			return mirror_usage(m, "invalid %s '%s': a size such "
					    "as 16M", name, val);
		return 0;
	case MO_SPEED:
		if (parse_rate(val, &m->speed) < 0)
			return mirror_usage(m, "invalid %s '%s': bytes per "
					    "second such as 50M or 50M/s, 0 "
					    "for no limit", name, val);
		return 0;
	case MO_TIMEOUT:
		if (ctl_parse_uint(val, MIRROR_TIMEOUT_MAX, &secs) < 0 ||
		    secs == 0)
			return mirror_usage(m, "invalid %s '%s': whole seconds "
					    "from 1 to %u", name, val,
					    MIRROR_TIMEOUT_MAX);
		m->timeout = (uint32_t)secs;
		return 0;
	}
	return mirror_usage(m, "unknown option '%s'", name);
}

/*
 * Parse the option at argv[*i]: "--name", "--name=VALUE" or "--name VALUE".
 * Returns 0 or a usage error's exit status.
 */
static int mirror_option(struct ctl_mirror_args *m, int argc, char **argv,
			 int *i)
{
	const char *arg = argv[*i], *eq = strchr(arg, '='), *val = NULL;
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	int o;

	for (o = 0; o < MO_NR; o++)
		if ((m->cmd->opts & MO(o)) &&
		    strlen(mirror_opts[o].name) == len &&
		    !strncmp(arg, mirror_opts[o].name, len))
			break;
	if (o == MO_NR)
		return mirror_usage(m, "unknown option '%s'", arg);
	if (!mirror_opts[o].value) {
		if (eq)
			return mirror_usage(m, "%s takes no value",
					    mirror_opts[o].name);
	} else if (eq) {
		val = eq + 1;
	} else if (*i + 1 < argc && strcmp(argv[*i + 1], "--")) {
		val = argv[++*i];
	} else {
		return mirror_usage(m, "%s needs %s", mirror_opts[o].name,
				    mirror_opts[o].value);
	}
	return mirror_set_option(m, o, val);
}

/* Parse argv[1...] (argv[0] is the sub-command).  0 or a usage error. */
static int mirror_parse(struct ctl_mirror_args *m, int argc, char **argv)
{
	bool options_done = false;
	int i, ret;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (!options_done && !strcmp(arg, "--")) {
			options_done = true;
		} else if (!options_done && arg[0] == '-' && arg[1]) {
			ret = mirror_option(m, argc, argv, &i);
			if (ret)
				return ret;
		} else if (!m->file) {
			m->file = arg;
		} else if (m->cmd->arg_name && !m->arg) {
			m->arg = arg;
		} else {
			return mirror_usage(m, "unexpected argument '%s'", arg);
		}
	}
	if (!m->file)
		return mirror_usage(m, "missing FILE");
	if (m->cmd->arg_name && !m->arg)
		return mirror_usage(m, "missing %s", m->cmd->arg_name);
	if (m->ready && m->done)
		return mirror_usage(m, "--ready and --done exclude each other");
	return 0;
}

/* ---- errors ---------------------------------------------------------- */

/* Why the daemon may have answered err to the ioctl cmd, or NULL. */
static const char *mirror_why(unsigned long cmd, int err)
{
	if (err == ENOTTY)
		return "not a vdiskfs file, or a daemon without mirror support";
	if (err == EBADF)
		return "needs a handle opened for writing";
	if (err == ENOENT && cmd != VDISK_IOC_MIRROR_START)
		return "no mirror job on this image";
	switch (cmd) {
	case VDISK_IOC_MIRROR_START:
		if (err == EPERM)
			return "the target is outside the daemon's mirror_dir "
			       "or escapes it, no mirror_dir is configured, "
			       "the target belongs to another user, or you "
			       "are neither root nor the image's owner";
		if (err == EEXIST)
			return "target exists; use --existing to mirror "
			       "onto it";
		if (err == EINVAL)
			return "bad parameter, or the target is not a regular "
			       "file or is smaller than the image";
		if (err == EBUSY)
			return "a mirror job already runs on this image";
		break;
	case VDISK_IOC_MIRROR_COMPLETE:
		if (err == EBUSY)
			return "the mirror is not ready yet, is paused, or "
			       "the image is drained; see 'vdiskctl mirror "
			       "wait --ready'";
		if (err == EINVAL)
			return "the job is already over or completing";
		break;
	case VDISK_IOC_MIRROR_CANCEL:
		if (err == EINVAL)
			return "the job is already over, or completing; "
			       "--force stops a completing job";
		break;
	case VDISK_IOC_MIRROR_PAUSE:
		if (err == EINVAL)
			return "the job is over or completing";
		break;
	case VDISK_IOC_MIRROR_RESUME:
		if (err == EINVAL)
			return "the job is not paused by a user, or is over";
		break;
	case VDISK_IOC_MIRROR_SET_SPEED:
		if (err == EINVAL)
			return "the job is over";
		break;
	}
	return err == EPERM ? "only root or the image's owner" : NULL;
}

int ctl_mirror_fail(const struct ctl_mirror_args *m, unsigned long cmd,
		    int err)
{
	const char *why = mirror_why(cmd, err);

	fprintf(stderr, PROG ": %s: %s: %s%s%s%s\n", m->file, m->name,
		strerror(err), why ? " (" : "", why ? why : "", why ? ")" : "");
	return EXIT_FAILURE;
}

/* ---- the sub-commands that command a job ----------------------------- */

/*
 * Make m->arg absolute into out (len bytes): realpath(3) of its directory
 * plus its last component.  Returns 0, or an exit status after a message:
 * 2 for a TARGET that names no file, 1 if its directory cannot be used.
 */
static int mirror_target_path(const struct ctl_mirror_args *m, char *out,
			      size_t len)
{
	const char *t = m->arg, *slash = strrchr(t, '/');
	const char *base = slash ? slash + 1 : t;
	char *dir, *real;
	struct stat st;
	int n, err = 0;

	if (!*t)
		return mirror_usage(m, "TARGET is empty");
	if (!*base)
		return mirror_usage(m, "TARGET '%s' ends in '/': name the file "
				    "to mirror to", t);
	if (!strcmp(base, ".") || !strcmp(base, ".."))
		return mirror_usage(m, "TARGET '%s' ends in '%s': name the "
				    "file to mirror to", t, base);
	if (!slash)
		dir = strdup(".");
	else
		dir = strndup(t, slash == t ? 1 : (size_t)(slash - t));
	if (!dir)
		return ctl_sys_fail("malloc", ENOMEM);
	real = realpath(dir, NULL);
	if (!real)
		err = errno;
	else if (stat(real, &st) < 0)
		err = errno;
	else if (!S_ISDIR(st.st_mode))
		err = ENOTDIR;
	if (err) {
		fprintf(stderr, PROG ": %s: %s: directory '%s': %s\n", m->name,
			t, dir, strerror(err));
		free(real);
		free(dir);
		return EXIT_FAILURE;
	}
	n = snprintf(out, len, "%s%s%s", real, strcmp(real, "/") ? "/" : "",
		     base);
	free(real);
	free(dir);
	if (n < 0 || (size_t)n >= len) {
		fprintf(stderr, PROG ": %s: %s: %s (more than %zu bytes as an "
			"absolute path)\n", m->name, t, strerror(ENAMETOOLONG),
			len - 1);
		return EXIT_FAILURE;
	}
	return 0;
}

static int mirror_cmd_start(const struct ctl_mirror_args *m)
{
	static struct vdisk_ioc_mirror_start arg;   /* 4 KB: off the stack */
	int fd, ret;

	if (m->granularity && m->buf_size % m->granularity)
		return mirror_usage(m, "--buf-size must be a multiple of "
				    "--granularity");
	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	ret = mirror_target_path(m, arg.target, sizeof(arg.target));
	if (ret)
		return ret;
	arg.granularity = m->granularity;
	arg.buf_size = m->buf_size;
	arg.speed = m->speed;
	arg.sync = m->sync;
	arg.copy_mode = m->copy_mode;
	arg.on_source_error = m->on_source_error;
	arg.on_target_error = m->on_target_error;
	arg.flags = m->existing ? VDISK_MIRROR_START_EXISTING : 0;

	fd = ctl_image_open(m->file, O_WRONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	ret = ctl_ioctl(fd, VDISK_IOC_MIRROR_START, &arg);
	close(fd);
	if (ret < 0)
		return ctl_mirror_fail(m, VDISK_IOC_MIRROR_START, -ret);
	printf("mirror job %llu started: %s -> %s\n",
	       (unsigned long long)arg.job_id, m->file, arg.target);
	return ctl_finish_stdout();
}

static int mirror_cmd_complete(const struct ctl_mirror_args *m)
{
	struct vdisk_ioc_mirror_complete arg;
	struct vdisk_ioc_mirror_status st;
	int ret;

	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	arg.flags = m->no_pivot ? VDISK_MIRROR_COMPLETE_NO_PIVOT : 0;
	ret = ctl_mirror_send_wait(m, VDISK_IOC_MIRROR_COMPLETE, &arg,
				   VDISK_MIRROR_CONCLUDED, &st,
				   "it goes on completing");
	if (ret)
		return ret;
	printf("mirror of %s completed; ", m->file);
	if (st.flags & VDISK_MIRROR_ST_PIVOTED)
		printf("%s now uses %.*s\n", m->file, (int)sizeof(st.target),
		       st.target);
	else
		printf("%.*s is a copy of it, and %s still uses its backing "
		       "file\n", (int)sizeof(st.target), st.target, m->file);
	return ctl_finish_stdout();
}

static int mirror_cmd_cancel(const struct ctl_mirror_args *m)
{
	struct vdisk_ioc_mirror_cancel arg;
	struct vdisk_ioc_mirror_status st;
	int ret;

	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	arg.flags = m->force ? VDISK_MIRROR_CANCEL_FORCE : 0;
	ret = ctl_mirror_send_wait(m, VDISK_IOC_MIRROR_CANCEL, &arg,
				   VDISK_MIRROR_CANCELLED, &st,
				   "the cancel goes on");
	if (ret)
		return ret;
	printf("mirror job %llu on %s cancelled; %.*s is %s\n",
	       (unsigned long long)st.job_id, m->file, (int)sizeof(st.target),
	       st.target, st.flags & VDISK_MIRROR_ST_CONSISTENT ?
	       "a consistent copy of it as of the cancel" : "incomplete");
	return ctl_finish_stdout();
}

/* An ioctl that answers at once, on a write handle; silent success. */
static int mirror_simple(const struct ctl_mirror_args *m, unsigned long cmd,
			 void *arg)
{
	int fd, ret;

	fd = ctl_image_open(m->file, O_WRONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	ret = ctl_ioctl(fd, cmd, arg);
	close(fd);
	return ret < 0 ? ctl_mirror_fail(m, cmd, -ret) : 0;
}

static int mirror_pause_resume(const struct ctl_mirror_args *m,
			       unsigned long cmd)
{
	struct vdisk_ioc_mirror_pause arg;

	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	return mirror_simple(m, cmd, &arg);
}

static int mirror_cmd_pause(const struct ctl_mirror_args *m)
{
	return mirror_pause_resume(m, VDISK_IOC_MIRROR_PAUSE);
}

static int mirror_cmd_resume(const struct ctl_mirror_args *m)
{
	return mirror_pause_resume(m, VDISK_IOC_MIRROR_RESUME);
}

static int mirror_cmd_set_speed(const struct ctl_mirror_args *m)
{
	struct vdisk_ioc_mirror_set_speed arg;

	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	if (parse_rate(m->arg, &arg.speed) < 0)
		return mirror_usage(m, "invalid RATE '%s': bytes per second "
				    "such as 50M or 50M/s, 0 for no limit",
				    m->arg);
	return mirror_simple(m, VDISK_IOC_MIRROR_SET_SPEED, &arg);
}

/* ---- the table and help ---------------------------------------------- */

#define MO_START (MO(MO_SYNC) | MO(MO_GRANULARITY) | MO(MO_BUF_SIZE) | \
		  MO(MO_SPEED) | MO(MO_MODE) | MO(MO_ON_SOURCE_ERROR) | \
		  MO(MO_ON_TARGET_ERROR) | MO(MO_EXISTING))

static const struct mirror_cmd mirror_cmds[] = {
	{
		.name = "start", .run = mirror_cmd_start, .opts = MO_START,
		.arg_name = "TARGET",
		.usage = PROG " mirror start FILE TARGET [OPTIONS]\n",
		.help =
"Copy the image behind FILE to TARGET and keep the copy current while\n"
"FILE is in use.  TARGET must lie under the daemon's mirror_dir; it is\n"
"made absolute here (the real path of its directory, then its name) and\n"
"the daemon creates it, owned by you.  Prints the job's number.\n"
"\n"
"  --sync full|none       full (default): copy all the image; none: only\n"
"                         what is written from now on\n"
"  --granularity SIZE     unit of dirty tracking and copying, a power of\n"
"                         two (default 64K, or the target's block size)\n"
"  --buf-size SIZE        copy buffer, a multiple of it (default 16M)\n"
"  --speed RATE           limit in bytes per second (50M or 50M/s);\n"
"                         0 (default): none\n"
"  --mode background|write-blocking\n"
"                         write-blocking: a write to an area already\n"
"                         copied also goes to TARGET before it completes,\n"
"                         so the job always converges (default background)\n"
"  --on-source-error report|stop|ignore\n"
"  --on-target-error report|stop|ignore\n"
"                         on a read or write error: report (default): the\n"
"                         job fails; stop: it pauses until resumed;\n"
"                         ignore: the area stays dirty and is retried\n"
"  --existing             mirror onto an existing TARGET: a regular file\n"
"                         of yours, at least as large as the image\n",
	},
	{
		.name = "status", .run = ctl_mirror_status, .opts = MO(MO_JSON),
		.usage = PROG " mirror status FILE [--json]\n",
		.help =
"Show the image's current or last mirror job: state, progress, rate,\n"
"parameters, flags and last error, one 'key: value' per line.\n"
"\n"
"  --json    one JSON object instead, with every field of the status\n",
	},
	{
		.name = "wait", .run = ctl_mirror_wait,
		.opts = MO(MO_READY) | MO(MO_DONE) | MO(MO_PROGRESS) |
			MO(MO_TIMEOUT),
		.usage = PROG " mirror wait FILE [--ready|--done] [--progress] "
			 "[--timeout SECONDS]\n",
		.help =
"Wait for the image's mirror job.  Exits 0 once the condition holds, 1 if\n"
"the job ends without it (failed, cancelled) or on the timeout.\n"
"\n"
"  --done               until the job has concluded (the default)\n"
"  --ready              until it is ready to complete\n"
"  --progress           show progress on stderr: a bar on a terminal,\n"
"                       else a line a second\n"
"  --timeout SECONDS    give up after SECONDS (the job goes on)\n",
	},
	{
		.name = "complete", .run = mirror_cmd_complete,
		.opts = MO(MO_NO_PIVOT) | MO(MO_TIMEOUT),
		.usage = PROG " mirror complete FILE [--no-pivot] "
			 "[--timeout SECONDS]\n",
		.help =
"Complete a ready job: copy what is left, flush the target and switch\n"
"FILE to it, durably; then wait until that is done.\n"
"\n"
"  --no-pivot           end with the target a whole copy, but no switch\n"
"  --timeout SECONDS    stop waiting after SECONDS (the job goes on)\n",
	},
	{
		.name = "cancel", .run = mirror_cmd_cancel,
		.opts = MO(MO_FORCE) | MO(MO_TIMEOUT),
		.usage = PROG " mirror cancel FILE [--force] "
			 "[--timeout SECONDS]\n",
		.help =
"Cancel the job and wait until it is over.  Before it was ready, the\n"
"target is left incomplete; after, a last sync leaves it a consistent\n"
"copy.  FILE keeps its backing file.\n"
"\n"
"  --force              stop at once, even while completing\n"
"  --timeout SECONDS    stop waiting after SECONDS (the cancel goes on)\n",
	},
	{
		.name = "pause", .run = mirror_cmd_pause,
		.usage = PROG " mirror pause FILE\n",
		.help =
"Pause the job's copying (writes are still tracked).  Pauses count: each\n"
"needs its resume.\n",
	},
	{
		.name = "resume", .run = mirror_cmd_resume,
		.usage = PROG " mirror resume FILE\n",
		.help =
"Resume a job paused by 'mirror pause', or stopped by an error under\n"
"--on-*-error stop (the failed area is retried).\n",
	},
	{
		.name = "set-speed", .run = mirror_cmd_set_speed,
		.arg_name = "RATE",
		.usage = PROG " mirror set-speed FILE RATE\n",
		.help =
"Change the job's speed limit: RATE bytes per second (50M or 50M/s), 0\n"
"for none.\n",
	},
};

static void mirror_help(void)
{
	size_t i;

	fputs("Usage: " PROG " mirror SUBCOMMAND FILE [ARGS...]\n"
	      "\n"
	      "Copy an image in use to a target file and switch to it (a live\n"
	      "mirror).  FILE is a file of a vdiskfs mount:\n", stdout);
	for (i = 0; i < NELEM(mirror_cmds); i++)
		printf("  %s", mirror_cmds[i].usage);
	fputs("\n'" PROG " mirror SUBCOMMAND --help' describes one; see also "
	      "vdiskctl(8).\n"
	      "Exit status: 0 success, 1 the operation failed, 2 usage "
	      "error.\n", stdout);
}

/* Is --help or -h among the arguments (before any "--")? */
static bool mirror_wants_help(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

int ctl_mirror(const struct ctl_args *args)
{
	struct ctl_mirror_args m = { 0 };
	const char *sub = args->argc > 0 ? args->argv[0] : NULL;
	size_t i;
	int ret;

	strcpy(m.name, "mirror");
	if (!sub)
		return mirror_usage(&m, "missing SUBCOMMAND");
	if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
		mirror_help();
		return ctl_finish_stdout();
	}
	for (i = 0; i < NELEM(mirror_cmds); i++)
		if (!strcmp(sub, mirror_cmds[i].name))
			m.cmd = &mirror_cmds[i];
	if (!m.cmd)
		return mirror_usage(&m, "unknown %s '%s'",
				    sub[0] == '-' ? "option" : "subcommand",
				    sub);
	snprintf(m.name, sizeof(m.name), "mirror %s", m.cmd->name);
	if (mirror_wants_help(args->argc, args->argv)) {
		printf("Usage: %s%s", m.cmd->usage, m.cmd->help);
		return ctl_finish_stdout();
	}
	ret = mirror_parse(&m, args->argc, args->argv);
	if (ret)
		return ret;
	return m.cmd->run(&m);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdiskctl: commands on the files of a vdiskfs mount, sent as the ioctls of
 * vdisk-ioctl.h.  It knows the daemon only through that header.
 *
 *   info FILE [--json]          VDISK_IOC_INFO, read-only handle
 *   flush FILE                  VDISK_IOC_FLUSH
 *   stats-reset FILE            VDISK_IOC_STATS_RESET
 *   drain ... FILE -- COMMAND   DRAIN_BEGIN, run COMMAND, DRAIN_END
 *   drain --hold ... FILE       DRAIN_BEGIN, "drained", wait, DRAIN_END
 *                               (both in vdiskctl-drain.c)
 *   mirror SUBCOMMAND ...       the MIRROR_* commands (vdiskctl-mirror.c)
 *   vring-test FILE [...]       the VRING_TEST_* commands (vdiskctl-vring.c)
 *
 * Mutating commands open the file O_WRONLY: the daemon refuses them on a
 * handle not opened for writing.  Exit status: 0 success, 1 the operation
 * failed, 2 a usage error; drain with a COMMAND returns the command's.
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
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdisk-ioctl.h"
#include "vdiskctl-internal.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define DRAIN_TIMEOUT_MAX 86400u

/* Options a command accepts. */
#define OPT_JSON    (1u << 0)
#define OPT_TIMEOUT (1u << 1)
#define OPT_HOLD    (1u << 2)

struct ctl_cmd {
	const char *name;
	int (*run)(const struct ctl_args *args);
	unsigned opts;                  /* OPT_* */
	bool takes_command;             /* "-- COMMAND [ARGS...]" */
	bool own_args;                  /* run parses args->argc/argv itself,
					 * --help included */
	const char *usage;              /* usage lines, after "Usage: " */
	const char *help;               /* what it does, and its options */
};

/* ---- messages ------------------------------------------------------------ */

/* Why the daemon may have answered err, for an ioctl's error message. */
static const char *errno_hint(int err)
{
	switch (err) {
	case ENOTTY:
		return " (not a vdiskfs file?)";
	case EBADF:
		return " (needs a handle opened for writing)";
	case EPERM:
		return " (only root or the image's owner)";
	default:
		return "";
	}
}

int ctl_fail(const char *file, const char *op, int err, bool hint)
{
	fprintf(stderr, PROG ": %s: %s: %s%s\n", file, op, strerror(err),
		hint ? errno_hint(err) : "");
	return EXIT_FAILURE;
}

int ctl_sys_fail(const char *op, int err)
{
	fprintf(stderr, PROG ": %s: %s\n", op, strerror(err));
	return EXIT_FAILURE;
}

int ctl_vusage_error(const char *cmd, const char *fmt, va_list ap)
{
	fputs(PROG ": ", stderr);
	if (cmd)
		fprintf(stderr, "%s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nTry '" PROG " %s%s--help' for more information.\n",
		cmd ? cmd : "", cmd ? " " : "");
	return 2;
}

static int __attribute__((format(printf, 2, 3)))
usage_error(const struct ctl_cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = ctl_vusage_error(cmd ? cmd->name : NULL, fmt, ap);
	va_end(ap);
	return ret;
}

/* A failed write (a full disk, a closed pipe) is a failure too. */
int ctl_finish_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": write error: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	return 0;
}

/* ---- the image handle and the ioctls ------------------------------------- */

/*
 * Open file for an ioctl with accmode (O_RDONLY or O_WRONLY).  O_NONBLOCK
 * so that a FIFO named by mistake cannot hang us; anything but a regular
 * file is refused before any ioctl reaches it.  Returns the fd, or -1 after
 * reporting the error.
 */
int ctl_image_open(const char *file, int accmode)
{
	struct stat st;
	int fd, err;

	fd = open(file, accmode | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		ctl_fail(file, "open", errno, false);
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		err = errno;
		close(fd);
		ctl_fail(file, "stat", err, false);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		fprintf(stderr, PROG ": %s: not a regular file%s\n", file,
			errno_hint(ENOTTY));
		return -1;
	}
	return fd;
}

/* Returns 0 or -errno.  The daemon checks every byte of *arg. */
int ctl_ioctl(int fd, unsigned long cmd, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, cmd, arg);
	} while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : 0;
}

/* ---- info ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	uint32_t cp, min;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * A JSON string from the field s of at most max bytes (NUL-terminated only
 * if shorter).  JSON text must be UTF-8: a byte that is not part of a valid
 * sequence becomes U+FFFD.
 */
void ctl_json_string(const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strnlen(s, max), i = 0, len;

	putchar('"');
	while (i < n) {
		if (p[i] == '"' || p[i] == '\\') {
			printf("\\%c", p[i++]);
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			printf("\\u%04x", p[i++]);
		} else if ((len = utf8_len(p + i, n - i)) == 0) {
			fputs("\\ufffd", stdout);
			i++;
		} else {
			fwrite(p + i, 1, len, stdout);
			i += len;
		}
	}
	putchar('"');
}

/* A value of the plain output: control characters as \xNN keep it one line. */
void ctl_plain_string(const char *key, const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strnlen(s, max), i;

	printf("%s: ", key);
	for (i = 0; i < n; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			printf("\\x%02x", p[i]);
		else
			putchar(p[i]);
	}
	putchar('\n');
}

/* The counters of the stats object, in output order. */
struct stat_field {
	const char *key;
	uint64_t value;
};

static size_t stat_fields(const struct vdisk_ioc_stats *s,
			  struct stat_field *f)
{
	size_t n = 0;

	f[n++] = (struct stat_field){ "reads", s->ops[VDISK_IOC_OP_READ] };
	f[n++] = (struct stat_field){ "writes", s->ops[VDISK_IOC_OP_WRITE] };
	f[n++] = (struct stat_field){ "flushes", s->ops[VDISK_IOC_OP_FLUSH] };
	f[n++] = (struct stat_field){ "discards",
				      s->ops[VDISK_IOC_OP_DISCARD] };
	f[n++] = (struct stat_field){ "write_zeroes",
				      s->ops[VDISK_IOC_OP_WRITE_ZEROES] };
	f[n++] = (struct stat_field){ "read_bytes",
				      s->bytes[VDISK_IOC_OP_READ] };
	f[n++] = (struct stat_field){ "write_bytes",
				      s->bytes[VDISK_IOC_OP_WRITE] };
	f[n++] = (struct stat_field){ "barriers", s->barriers };
	f[n++] = (struct stat_field){ "errors", s->errors };
	f[n++] = (struct stat_field){ "postponed", s->postponed };
	f[n++] = (struct stat_field){ "serialised", s->serialised };
	f[n++] = (struct stat_field){ "bounced", s->bounced };
	f[n++] = (struct stat_field){ "in_flight", s->in_flight };
	f[n++] = (struct stat_field){ "max_in_flight", s->max_in_flight };
	return n;
}

#define STAT_FIELDS_MAX 16

static void info_print_plain(const struct vdisk_ioc_info *info)
{
	struct stat_field f[STAT_FIELDS_MAX];
	size_t i, n = stat_fields(&info->stats, f);

	ctl_plain_string("name", info->name, sizeof(info->name));
	ctl_plain_string("backing", info->backing, sizeof(info->backing));
	printf("size: %llu\n", (unsigned long long)info->image_size);
	ctl_plain_string("driver", info->driver, sizeof(info->driver));
	ctl_plain_string("cache", info->cache, sizeof(info->cache));
	printf("read_only: %s\n",
	       info->flags & VDISK_IOC_INFO_READ_ONLY ? "true" : "false");
	printf("iothread: %u\n", info->iothread);
	printf("open_handles: %u\n", info->open_handles);
	printf("drain_depth: %u\n", info->drain_depth);
	printf("mirror_state: %s\n",
	       ctl_mirror_state_name(info->mirror_state));
	printf("pivoted: %s\n",
	       info->flags & VDISK_IOC_INFO_PIVOTED ? "true" : "false");
	for (i = 0; i < n; i++)
		printf("%s: %llu\n", f[i].key, (unsigned long long)f[i].value);
}

static void json_latency(const char *key, const uint64_t *buckets, bool last)
{
	int i;

	printf("      \"%s\": [", key);
	for (i = 0; i < VDISK_IOC_LAT_BUCKETS; i++)
		printf("%s%llu", i ? ", " : "", (unsigned long long)buckets[i]);
	printf("]%s\n", last ? "" : ",");
}

static void info_print_json(const struct vdisk_ioc_info *info)
{
	const struct vdisk_ioc_stats *s = &info->stats;
	struct stat_field f[STAT_FIELDS_MAX];
	size_t i, n = stat_fields(s, f);

	fputs("{\n  \"name\": ", stdout);
	ctl_json_string(info->name, sizeof(info->name));
	fputs(",\n  \"backing\": ", stdout);
	ctl_json_string(info->backing, sizeof(info->backing));
	printf(",\n  \"size\": %llu,\n  \"driver\": ",
	       (unsigned long long)info->image_size);
	ctl_json_string(info->driver, sizeof(info->driver));
	fputs(",\n  \"cache\": ", stdout);
	ctl_json_string(info->cache, sizeof(info->cache));
	printf(",\n  \"read_only\": %s,\n",
	       info->flags & VDISK_IOC_INFO_READ_ONLY ? "true" : "false");
	printf("  \"iothread\": %u,\n  \"open_handles\": %u,\n"
	       "  \"drain_depth\": %u,\n  \"mirror_state\": \"%s\",\n"
	       "  \"pivoted\": %s,\n",
	       info->iothread, info->open_handles, info->drain_depth,
	       ctl_mirror_state_name(info->mirror_state),
	       info->flags & VDISK_IOC_INFO_PIVOTED ? "true" : "false");
	fputs("  \"stats\": {\n", stdout);
	for (i = 0; i < n; i++)
		printf("    \"%s\": %llu,\n", f[i].key,
		       (unsigned long long)f[i].value);
	fputs("    \"latency\": {\n", stdout);
	json_latency("read", s->latency[VDISK_IOC_OP_READ], false);
	json_latency("write", s->latency[VDISK_IOC_OP_WRITE], false);
	json_latency("flush", s->latency[VDISK_IOC_OP_FLUSH], true);
	fputs("    }\n  }\n}\n", stdout);
}

static int cmd_info(const struct ctl_args *a)
{
	static struct vdisk_ioc_info info;  /* 7 KB: off the stack */
	int fd, ret;

	fd = ctl_image_open(a->file, O_RDONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	memset(&info, 0, sizeof(info));
	info.version = VDISK_IOC_VERSION;
	info.size = sizeof(info);
	ret = ctl_ioctl(fd, VDISK_IOC_INFO, &info);
	close(fd);
	if (ret < 0)
		return ctl_fail(a->file, "info", -ret, true);

	if (a->json)
		info_print_json(&info);
	else
		info_print_plain(&info);
	return ctl_finish_stdout();
}

/* ---- flush, stats-reset -------------------------------------------------- */

static int cmd_flush(const struct ctl_args *a)
{
	struct vdisk_ioc_flush arg;
	int fd, ret;

	fd = ctl_image_open(a->file, O_WRONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	ret = ctl_ioctl(fd, VDISK_IOC_FLUSH, &arg);
	close(fd);
	return ret < 0 ? ctl_fail(a->file, "flush", -ret, true) : 0;
}

static int cmd_stats_reset(const struct ctl_args *a)
{
	struct vdisk_ioc_stats_reset arg;
	int fd, ret;

	fd = ctl_image_open(a->file, O_WRONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	ret = ctl_ioctl(fd, VDISK_IOC_STATS_RESET, &arg);
	close(fd);
	return ret < 0 ? ctl_fail(a->file, "stats-reset", -ret, true) : 0;
}

/* ---- the command line ---------------------------------------------------- */

static const struct ctl_cmd ctl_cmds[] = {
	{
		.name = "info", .run = cmd_info, .opts = OPT_JSON,
		.usage = PROG " info FILE [--json]\n",
		.help =
"Show the image behind FILE, a file of a vdiskfs mount: its name, backing\n"
"file, size, driver, cache mode, I/O thread, open handles (this one\n"
"included), drain depth, mirror state, whether a mirror switched it to\n"
"its target (pivoted) and the engine's statistics, one 'key: value' per\n"
"line.\n"
"\n"
"  --json    one JSON object instead, with the latency histograms\n",
	},
	{
		.name = "flush", .run = cmd_flush,
		.usage = PROG " flush FILE\n",
		.help =
"Flush the image to its backing file (a barrier flush).  Needs write\n"
"permission on FILE and root or the image's owner.\n",
	},
	{
		.name = "stats-reset", .run = cmd_stats_reset,
		.usage = PROG " stats-reset FILE\n",
		.help =
"Zero the image's statistics.  Needs write permission on FILE and root\n"
"or the image's owner.\n",
	},
	{
		.name = "drain", .run = ctl_drain,
		.opts = OPT_TIMEOUT | OPT_HOLD, .takes_command = true,
		.usage = PROG " drain [--timeout=SECONDS] FILE -- COMMAND [ARGS...]\n"
			 "       " PROG " drain --hold [--timeout=SECONDS] FILE\n",
		.help =
"Drain the image (requests through the mount wait, those in flight\n"
"complete, the backing file is flushed), run COMMAND, end the drain and\n"
"exit with COMMAND's status (128+N if a signal N killed it, 127 if it\n"
"could not be run).  I/O through the mount on this image waits until the\n"
"drain ends, so COMMAND should work on the backing file.  SIGINT, SIGTERM\n"
"and SIGHUP are passed on to COMMAND; vdiskctl then waits for it, ends\n"
"the drain and exits 128 + the signal.\n"
"\n"
"  --hold              print 'drained' once the drain is in place and hold\n"
"                      it until standard input reaches EOF or SIGINT,\n"
"                      SIGTERM or SIGHUP arrives; then end it and exit 0\n"
"  --timeout=SECONDS   the daemon ends the drain after SECONDS (1-86400)\n"
"                      even if vdiskctl does not\n",
	},
	{
		.name = "mirror", .run = ctl_mirror, .own_args = true,
		.usage = PROG " mirror SUBCOMMAND FILE [ARGS...] "
			 "(see 'mirror --help')\n",
		.help = "",             /* ctl_mirror prints its own */
	},
	{
		.name = "vring-test", .run = ctl_vring, .own_args = true,
		.usage = PROG " vring-test FILE [OPTIONS] "
			 "(see 'vring-test --help')\n",
		.help = "",             /* ctl_vring prints its own */
	},
};

#define CTL_NCMDS (sizeof(ctl_cmds) / sizeof(ctl_cmds[0]))

static void print_main_help(void)
{
	size_t i;

	fputs("Usage: " PROG " COMMAND [OPTIONS] FILE\n"
	      "       " PROG " --help | --version\n"
	      "\n"
	      "Commands on a file of a vdiskfs mount:\n", stdout);
	for (i = 0; i < CTL_NCMDS; i++)
		printf("  %s", ctl_cmds[i].usage);
	fputs("\n'" PROG " COMMAND --help' describes a command; see also "
	      "vdiskctl(8).\n"
	      "Exit status: 0 success, 1 the operation failed, 2 usage error.\n",
	      stdout);
}

static void print_cmd_help(const struct ctl_cmd *cmd)
{
	printf("Usage: %s\n%s", cmd->usage, cmd->help);
}

/* Checks before each digit, so that any max up to UINT64_MAX works. */
int ctl_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (max - (uint64_t)(*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

/*
 * Parse one option at argv[*i] for cmd.  Returns 0 or a usage error's
 * exit status.
 */
static int parse_option(struct ctl_args *a, int argc, char **argv, int *i)
{
	const struct ctl_cmd *cmd = a->cmd;
	const char *arg = argv[*i], *val;
	uint64_t secs;

	if ((cmd->opts & OPT_JSON) && !strcmp(arg, "--json")) {
		a->json = true;
	} else if ((cmd->opts & OPT_HOLD) && !strcmp(arg, "--hold")) {
		a->hold = true;
	} else if ((cmd->opts & OPT_TIMEOUT) &&
		   !strncmp(arg, "--timeout", 9) &&
		   (arg[9] == '=' || arg[9] == '\0')) {
		if (arg[9] == '=')
			val = arg + 10;
		else if (*i + 1 < argc && strcmp(argv[*i + 1], "--"))
			val = argv[++*i];
		else
			return usage_error(cmd, "--timeout needs SECONDS");
		if (ctl_parse_uint(val, DRAIN_TIMEOUT_MAX, &secs) < 0 ||
		    secs == 0)
			return usage_error(cmd, "invalid --timeout '%s': "
					   "whole seconds from 1 to %u", val,
					   DRAIN_TIMEOUT_MAX);
		a->timeout = (uint32_t)secs;
	} else {
		return usage_error(cmd, "unknown option '%s'", arg);
	}
	return 0;
}

/* Is --help or -h among cmd's arguments (before any "--")? */
static bool wants_help(int argc, char **argv)
{
	int i;

	for (i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

/* Parse argv[2...] for a->cmd.  Returns 0 or a usage error's status. */
static int parse_cmd_args(struct ctl_args *a, int argc, char **argv)
{
	const struct ctl_cmd *cmd = a->cmd;
	bool options_done = false;
	int i, ret;

	for (i = 2; i < argc; i++) {
		const char *arg = argv[i];

		if (!options_done && !strcmp(arg, "--")) {
			if (cmd->takes_command) {
				a->command = argv + i + 1;
				if (i + 1 == argc)
					return usage_error(cmd, "missing "
							   "COMMAND after '--'");
				break;
			}
			options_done = true;
		} else if (!options_done && arg[0] == '-' && arg[1]) {
			ret = parse_option(a, argc, argv, &i);
			if (ret)
				return ret;
		} else if (a->file) {
			return usage_error(cmd, "unexpected argument '%s'",
					   arg);
		} else {
			a->file = arg;
		}
	}
	if (!a->file)
		return usage_error(cmd, "missing FILE");
	if (cmd->takes_command && a->hold && a->command)
		return usage_error(cmd, "--hold takes no COMMAND");
	if (cmd->takes_command && !a->hold && !a->command)
		return usage_error(cmd, "missing '-- COMMAND' (or --hold)");
	return 0;
}

/*
 * Open /dev/null on whichever of fds 0, 1 and 2 is closed, so that no file
 * we open lands there (drain --hold then sees EOF on a closed stdin).
 */
static void std_fds_open(void)
{
	int fd;

	for (fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if (open("/dev/null", O_RDWR) < 0)
			exit(EXIT_FAILURE);
	}
}

int main(int argc, char **argv)
{
	struct ctl_args a = { 0 };
	size_t i;
	int ret;

	std_fds_open();
	if (argc < 2)
		return usage_error(NULL, "missing COMMAND");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		print_main_help();
		return ctl_finish_stdout();
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf(PROG " (vdiskfs) " PACKAGE_VERSION
		       ", ioctl ABI version %u\n", VDISK_IOC_VERSION);
		return ctl_finish_stdout();
	}
	for (i = 0; i < CTL_NCMDS; i++)
		if (!strcmp(argv[1], ctl_cmds[i].name))
			a.cmd = &ctl_cmds[i];
	if (!a.cmd) {
		if (argv[1][0] == '-')
			return usage_error(NULL, "unknown option '%s'",
					   argv[1]);
		return usage_error(NULL, "unknown command '%s'", argv[1]);
	}
	if (a.cmd->own_args) {
		a.argc = argc - 2;
		a.argv = argv + 2;
		return a.cmd->run(&a);
	}
	if (wants_help(argc, argv)) {
		print_cmd_help(a.cmd);
		return ctl_finish_stdout();
	}
	ret = parse_cmd_args(&a, argc, argv);
	if (ret)
		return ret;
	return a.cmd->run(&a);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ioctl-probe: send well-formed and malformed vdiskfs ioctls for the shell
 * tests and print what the daemon answered.
 *
 *   ioctl-probe [-r|-w|-W] FILE SPEC...
 *
 * FILE is opened O_RDONLY (-r, the default), O_RDWR (-w) or O_WRONLY (-W).
 * Each SPEC issues one ioctl on that one handle, in order, and prints one
 * line: "OK" or the errno name (EINVAL, ENOTTY, EBADF, EPERM...).  A SPEC is
 * a command name followed by ":key=value" settings:
 *
 *   info | flush | drain-begin | drain-end | stats-reset | raw
 *
 *   nr=N        command number (raw needs it)
 *   type=N      type letter (default VDISK_IOC_TYPE)
 *   size=N      size encoded in the command number (default: the struct's)
 *   dir=rw|r|w|none   direction bits (default rw, as every command uses)
 *   version=N   value of the version field (default VDISK_IOC_VERSION)
 *   sizefield=N value of the size field (default: the struct's size)
 *   reserved=I  set byte I of the reserved space to 0x5a
 *   pad=N       drain-begin's pad0 (default 0)
 *   timeout=N   drain-begin's timeout_sec (default 0)
 *
 * Two more SPECs do no ioctl: "hold" prints "holding" and waits until
 * stdin reaches EOF (so a test keeps a drain open as long as it likes),
 * and "drain-depth" prints the drain depth that INFO reports.
 *
 * Exit status: 0 once every SPEC ran (whatever the ioctls answered),
 * 1 if FILE cannot be opened (the errno name is printed), 2 on usage.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "vdisk-ioctl.h"

struct probe_cmd {
	const char *name;
	unsigned nr;
	size_t size;         /* sizeof the struct */
	size_t reserved_off; /* offsetof reserved[] */
	size_t reserved_len;
};

#define PROBE_CMD(n, nr_, type) \
	{ n, nr_, sizeof(type), offsetof(type, reserved), \
	  sizeof(((type *)0)->reserved) }

static const struct probe_cmd probe_cmds[] = {
	PROBE_CMD("info", 1, struct vdisk_ioc_info),
	PROBE_CMD("flush", 2, struct vdisk_ioc_flush),
	PROBE_CMD("drain-begin", 3, struct vdisk_ioc_drain_begin),
	PROBE_CMD("drain-end", 4, struct vdisk_ioc_drain_end),
	PROBE_CMD("stats-reset", 5, struct vdisk_ioc_stats_reset),
	{ "raw", 0, 64, 8, 56 },
};

/* Big enough for any size an ioctl number can encode (14 bits). */
static _Alignas(8) unsigned char probe_buf[1u << _IOC_SIZEBITS];

static const char *probe_errname(int err)
{
	switch (err) {
	case 0: return "OK";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case EBADF: return "EBADF";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case EBUSY: return "EBUSY";
	case ENOENT: return "ENOENT";
	case EFAULT: return "EFAULT";
	case ENOSYS: return "ENOSYS";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case EIO: return "EIO";
	case EAGAIN: return "EAGAIN";
	case EINTR: return "EINTR";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EROFS: return "EROFS";
	case ENODEV: return "ENODEV";
	case ENXIO: return "ENXIO";
	default: return NULL;
	}
}

static void probe_print_err(int err)
{
	const char *name = probe_errname(err);

	if (name)
		printf("%s\n", name);
	else
		printf("E%d\n", err);
	fflush(stdout);
}

static int probe_parse_num(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 0);
	return (errno || end == s || *end) ? -EINVAL : 0;
}

static void probe_usage(void)
{
	fprintf(stderr, "usage: ioctl-probe [-r|-w|-W] FILE SPEC...\n"
		"SPEC: info|flush|drain-begin|drain-end|stats-reset|raw"
		"[:key=value...] | hold | drain-depth\n");
}

static int probe_hold(void)
{
	char c;
	ssize_t n;

	printf("holding\n");
	fflush(stdout);
	do
		n = read(STDIN_FILENO, &c, 1);
	while (n > 0 || (n < 0 && errno == EINTR));
	return 0;
}

static int probe_drain_depth(int fd)
{
	struct vdisk_ioc_info *info = (struct vdisk_ioc_info *)probe_buf;

	memset(probe_buf, 0, sizeof(probe_buf));
	info->version = VDISK_IOC_VERSION;
	info->size = sizeof(*info);
	if (ioctl(fd, VDISK_IOC_INFO, info) < 0) {
		probe_print_err(errno);
		return 0;
	}
	printf("%u\n", info->drain_depth);
	fflush(stdout);
	return 0;
}

/* Issue one SPEC; -EINVAL on a malformed SPEC. */
static int probe_run(int fd, char *spec)
{
	const struct probe_cmd *cmd = NULL;
	unsigned long type = VDISK_IOC_TYPE, nr, size, version, sizefield;
	unsigned long v, pad = 0, timeout = 0;
	unsigned dir = _IOC_READ | _IOC_WRITE;
	long reserved = -1;
	char *key, *save = NULL;
	unsigned long req;
	size_t i;

	key = strtok_r(spec, ":", &save);
	if (!key)
		return -EINVAL;
	if (strcmp(key, "hold") == 0)
		return probe_hold();
	if (strcmp(key, "drain-depth") == 0)
		return probe_drain_depth(fd);
	for (i = 0; i < sizeof(probe_cmds) / sizeof(probe_cmds[0]); i++)
		if (strcmp(key, probe_cmds[i].name) == 0)
			cmd = &probe_cmds[i];
	if (!cmd)
		return -EINVAL;
	nr = cmd->nr;
	size = sizefield = cmd->size;
	version = VDISK_IOC_VERSION;

	while ((key = strtok_r(NULL, ":", &save))) {
		char *val = strchr(key, '=');

		if (!val)
			return -EINVAL;
		*val++ = '\0';
		if (strcmp(key, "dir") == 0) {
			if (strcmp(val, "rw") == 0)
				dir = _IOC_READ | _IOC_WRITE;
			else if (strcmp(val, "r") == 0)
				dir = _IOC_READ;
			else if (strcmp(val, "w") == 0)
				dir = _IOC_WRITE;
			else if (strcmp(val, "none") == 0)
				dir = _IOC_NONE;
			else
				return -EINVAL;
			continue;
		}
		if (probe_parse_num(val, &v) < 0)
			return -EINVAL;
		if (strcmp(key, "nr") == 0 && v <= _IOC_NRMASK)
			nr = v;
		else if (strcmp(key, "type") == 0 && v <= _IOC_TYPEMASK)
			type = v;
		else if (strcmp(key, "size") == 0 && v <= _IOC_SIZEMASK)
			size = v;
		else if (strcmp(key, "version") == 0)
			version = v;
		else if (strcmp(key, "sizefield") == 0)
			sizefield = v;
		else if (strcmp(key, "reserved") == 0 && v < cmd->reserved_len)
			reserved = (long)v;
		else if (strcmp(key, "pad") == 0)
			pad = v;
		else if (strcmp(key, "timeout") == 0)
			timeout = v;
		else
			return -EINVAL;
	}

	/* version and size lead every struct; the kernel copies `size`. */
	memset(probe_buf, 0, sizeof(probe_buf));
	((uint32_t *)probe_buf)[0] = (uint32_t)version;
	((uint32_t *)probe_buf)[1] = (uint32_t)sizefield;
	if (nr == 3 && cmd->nr == 3) {
		struct vdisk_ioc_drain_begin *d = (void *)probe_buf;

		d->timeout_sec = (uint32_t)timeout;
		d->pad0 = (uint32_t)pad;
	}
	if (reserved >= 0)
		probe_buf[cmd->reserved_off + (size_t)reserved] = 0x5a;

	req = _IOC(dir, type, nr, size);
	if (ioctl(fd, req, probe_buf) < 0)
		probe_print_err(errno);
	else
		probe_print_err(0);
	return 0;
}

int main(int argc, char **argv)
{
	int flags = O_RDONLY, fd, i = 1;

	if (argc > 1 && argv[1][0] == '-') {
		if (strcmp(argv[1], "-r") == 0)
			flags = O_RDONLY;
		else if (strcmp(argv[1], "-w") == 0)
			flags = O_RDWR;
		else if (strcmp(argv[1], "-W") == 0)
			flags = O_WRONLY;
		else {
			probe_usage();
			return 2;
		}
		i++;
	}
	if (argc - i < 2) {
		probe_usage();
		return 2;
	}
	fd = open(argv[i], flags | O_CLOEXEC);
	if (fd < 0) {
		int err = errno;

		printf("open: ");
		probe_print_err(err);
		return 1;
	}
	for (i++; i < argc; i++) {
		if (probe_run(fd, argv[i]) < 0) {
			fprintf(stderr, "ioctl-probe: bad SPEC '%s'\n", argv[i]);
			probe_usage();
			close(fd);
			return 2;
		}
	}
	close(fd);
	return 0;
}

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
 *   info | flush | drain-begin | drain-end | stats-reset |
 *   mirror-start | mirror-status | mirror-complete | mirror-cancel |
 *   mirror-pause | mirror-resume | mirror-set-speed |
 *   vring-start | vring-status | vring-stop | raw
 *
 * Settings that every command takes:
 *   nr=N        command number (raw needs it)
 *   type=N      type letter (default VDISK_IOC_TYPE)
 *   size=N      size encoded in the command number (default: the struct's)
 *   dir=rw|r|w|none   direction bits (default rw, as every command uses)
 *   version=N   value of the version field (default VDISK_IOC_VERSION)
 *   sizefield=N value of the size field (default: the struct's size)
 *   reserved=I  set byte I of the reserved space to 0x5a
 * Fields of one command's struct (all default 0):
 *   drain-begin       timeout, pad
 *   mirror-start      target=PATH, unterminated=1 (target fills its whole
 *                     array, no NUL), granularity, buf_size, speed, sync,
 *                     mode, source_error, target_error, flags, pad
 *   mirror-complete, mirror-cancel      flags, pad
 *   mirror-set-speed  speed
 *   vring-start       rw, bs, iodepth, queue_size, offset, region,
 *                     seconds, rwmix_read, requests, flush_every, flags,
 *                     inject, pad, seed
 *
 * More SPECs do no ioctl of their own: "hold" prints "holding" and waits
 * until stdin reaches EOF (so a test keeps a drain open as long as it
 * likes), "drain-depth" prints the drain depth that INFO reports, and
 * "mirror-state" the state of the image's mirror job as MIRROR_STATUS
 * reports it (none, created, running, paused, ready, completing,
 * concluded, failed, cancelled); "sizeof:CMD" prints the size of CMD's
 * struct.
 *
 * Exit status: 0 once every SPEC ran (whatever the ioctls answered),
 * 1 if FILE cannot be opened (the errno name is printed), 2 on usage.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "vdisk-ioctl.h"

/* A field of a struct that a SPEC may set: "key=value". */
struct probe_field {
	const char *key;
	size_t off;
	size_t width;        /* 4 or 8 */
};

#define PF(k, type, member) \
	{ k, offsetof(type, member), sizeof(((type *)0)->member) }

static const struct probe_field no_fields[] = { { NULL, 0, 0 } };

static const struct probe_field drain_begin_fields[] = {
	PF("timeout", struct vdisk_ioc_drain_begin, timeout_sec),
	PF("pad", struct vdisk_ioc_drain_begin, pad0),
	{ NULL, 0, 0 }
};

static const struct probe_field mirror_start_fields[] = {
	PF("granularity", struct vdisk_ioc_mirror_start, granularity),
	PF("buf_size", struct vdisk_ioc_mirror_start, buf_size),
	PF("speed", struct vdisk_ioc_mirror_start, speed),
	PF("sync", struct vdisk_ioc_mirror_start, sync),
	PF("mode", struct vdisk_ioc_mirror_start, copy_mode),
	PF("source_error", struct vdisk_ioc_mirror_start, on_source_error),
	PF("target_error", struct vdisk_ioc_mirror_start, on_target_error),
	PF("flags", struct vdisk_ioc_mirror_start, flags),
	PF("pad", struct vdisk_ioc_mirror_start, pad0),
	{ NULL, 0, 0 }
};

static const struct probe_field mirror_complete_fields[] = {
	PF("flags", struct vdisk_ioc_mirror_complete, flags),
	PF("pad", struct vdisk_ioc_mirror_complete, pad0),
	{ NULL, 0, 0 }
};

static const struct probe_field mirror_cancel_fields[] = {
	PF("flags", struct vdisk_ioc_mirror_cancel, flags),
	PF("pad", struct vdisk_ioc_mirror_cancel, pad0),
	{ NULL, 0, 0 }
};

static const struct probe_field mirror_set_speed_fields[] = {
	PF("speed", struct vdisk_ioc_mirror_set_speed, speed),
	{ NULL, 0, 0 }
};

static const struct probe_field vring_start_fields[] = {
	PF("rw", struct vdisk_ioc_vring_start, rw),
	PF("bs", struct vdisk_ioc_vring_start, bs),
	PF("iodepth", struct vdisk_ioc_vring_start, iodepth),
	PF("queue_size", struct vdisk_ioc_vring_start, queue_size),
	PF("offset", struct vdisk_ioc_vring_start, offset),
	PF("region", struct vdisk_ioc_vring_start, region),
	PF("seconds", struct vdisk_ioc_vring_start, seconds),
	PF("rwmix_read", struct vdisk_ioc_vring_start, rwmix_read),
	PF("requests", struct vdisk_ioc_vring_start, requests),
	PF("flush_every", struct vdisk_ioc_vring_start, flush_every),
	PF("flags", struct vdisk_ioc_vring_start, flags),
	PF("inject", struct vdisk_ioc_vring_start, inject),
	PF("pad", struct vdisk_ioc_vring_start, pad0),
	PF("seed", struct vdisk_ioc_vring_start, seed),
	{ NULL, 0, 0 }
};

struct probe_cmd {
	const char *name;
	unsigned nr;
	size_t size;         /* sizeof the struct */
	size_t reserved_off; /* offsetof reserved[] */
	size_t reserved_len;
	const struct probe_field *fields;
};

#define PROBE_CMD(n, nr_, type, f) \
	{ n, nr_, sizeof(type), offsetof(type, reserved), \
	  sizeof(((type *)0)->reserved), f }

static const struct probe_cmd probe_cmds[] = {
	PROBE_CMD("info", 1, struct vdisk_ioc_info, no_fields),
	PROBE_CMD("flush", 2, struct vdisk_ioc_flush, no_fields),
	PROBE_CMD("drain-begin", 3, struct vdisk_ioc_drain_begin,
		  drain_begin_fields),
	PROBE_CMD("drain-end", 4, struct vdisk_ioc_drain_end, no_fields),
	PROBE_CMD("stats-reset", 5, struct vdisk_ioc_stats_reset, no_fields),
	PROBE_CMD("mirror-start", 6, struct vdisk_ioc_mirror_start,
		  mirror_start_fields),
	PROBE_CMD("mirror-status", 7, struct vdisk_ioc_mirror_status,
		  no_fields),
	PROBE_CMD("mirror-complete", 8, struct vdisk_ioc_mirror_complete,
		  mirror_complete_fields),
	PROBE_CMD("mirror-cancel", 9, struct vdisk_ioc_mirror_cancel,
		  mirror_cancel_fields),
	PROBE_CMD("mirror-pause", 10, struct vdisk_ioc_mirror_pause,
		  no_fields),
	PROBE_CMD("mirror-resume", 11, struct vdisk_ioc_mirror_pause,
		  no_fields),
	PROBE_CMD("mirror-set-speed", 12, struct vdisk_ioc_mirror_set_speed,
		  mirror_set_speed_fields),
	PROBE_CMD("vring-start", 13, struct vdisk_ioc_vring_start,
		  vring_start_fields),
	PROBE_CMD("vring-status", 14, struct vdisk_ioc_vring_status,
		  no_fields),
	PROBE_CMD("vring-stop", 15, struct vdisk_ioc_vring_stop, no_fields),
	{ "raw", 0, 64, 8, 56, no_fields },
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
	case EEXIST: return "EEXIST";
	case EFBIG: return "EFBIG";
	case ENOSPC: return "ENOSPC";
	case ELOOP: return "ELOOP";
	case EXDEV: return "EXDEV";
	case ENOTDIR: return "ENOTDIR";
	case ESRCH: return "ESRCH";
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
		"SPEC: info|flush|drain-begin|drain-end|stats-reset|"
		"mirror-start|mirror-status|mirror-complete|mirror-cancel|"
		"mirror-pause|mirror-resume|mirror-set-speed|vring-start|"
		"vring-status|vring-stop|raw[:key=value...] | hold | "
		"drain-depth | mirror-state | sizeof:CMD\n");
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

static int probe_mirror_state(int fd)
{
	static const char *const names[] = {
		[VDISK_MIRROR_NONE] = "none",
		[VDISK_MIRROR_CREATED] = "created",
		[VDISK_MIRROR_RUNNING] = "running",
		[VDISK_MIRROR_PAUSED] = "paused",
		[VDISK_MIRROR_READY] = "ready",
		[VDISK_MIRROR_COMPLETING] = "completing",
		[VDISK_MIRROR_CONCLUDED] = "concluded",
		[VDISK_MIRROR_FAILED] = "failed",
		[VDISK_MIRROR_CANCELLED] = "cancelled",
	};
	struct vdisk_ioc_mirror_status *st =
		(struct vdisk_ioc_mirror_status *)probe_buf;

	memset(probe_buf, 0, sizeof(probe_buf));
	st->version = VDISK_IOC_VERSION;
	st->size = sizeof(*st);
	if (ioctl(fd, VDISK_IOC_MIRROR_STATUS, st) < 0) {
		probe_print_err(errno);
		return 0;
	}
	if (st->state < sizeof(names) / sizeof(names[0]))
		printf("%s\n", names[st->state]);
	else
		printf("state-%u\n", st->state);
	fflush(stdout);
	return 0;
}

/* Set the field key of cmd to v.  0, or -EINVAL if cmd has no such field. */
static int probe_set_field(const struct probe_cmd *cmd, const char *key,
			   unsigned long long v)
{
	const struct probe_field *f;

	for (f = cmd->fields; f->key; f++) {
		if (strcmp(f->key, key) != 0)
			continue;
		if (f->width == 4) {
			uint32_t u = (uint32_t)v;

			memcpy(probe_buf + f->off, &u, sizeof(u));
		} else {
			uint64_t u = (uint64_t)v;

			memcpy(probe_buf + f->off, &u, sizeof(u));
		}
		return 0;
	}
	return -EINVAL;
}

/* mirror-start's target: a string, or (unterminated) no NUL at all. */
static int probe_set_target(const struct probe_cmd *cmd, const char *val,
			    bool unterminated)
{
	struct vdisk_ioc_mirror_start *m =
		(struct vdisk_ioc_mirror_start *)probe_buf;

	if (cmd->nr != 6 || strcmp(cmd->name, "mirror-start") != 0)
		return -EINVAL;
	if (unterminated) {
		memset(m->target, 'a', sizeof(m->target));
		m->target[0] = '/';
		return 0;
	}
	if (strlen(val) >= sizeof(m->target))
		return -EINVAL;
	memset(m->target, 0, sizeof(m->target));
	memcpy(m->target, val, strlen(val));
	return 0;
}

static const struct probe_cmd *probe_find(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(probe_cmds) / sizeof(probe_cmds[0]); i++)
		if (strcmp(name, probe_cmds[i].name) == 0)
			return &probe_cmds[i];
	return NULL;
}

/* Issue one SPEC; -EINVAL on a malformed SPEC. */
static int probe_run(int fd, char *spec)
{
	const struct probe_cmd *cmd = NULL;
	unsigned long type = VDISK_IOC_TYPE, nr, size, version, sizefield;
	unsigned long v;
	unsigned dir = _IOC_READ | _IOC_WRITE;
	long reserved = -1;
	char *key, *save = NULL;
	unsigned long req;

	key = strtok_r(spec, ":", &save);
	if (!key)
		return -EINVAL;
	if (strcmp(key, "hold") == 0)
		return probe_hold();
	if (strcmp(key, "drain-depth") == 0)
		return probe_drain_depth(fd);
	if (strcmp(key, "mirror-state") == 0)
		return probe_mirror_state(fd);
	if (strcmp(key, "sizeof") == 0) {
		key = strtok_r(NULL, ":", &save);
		cmd = key ? probe_find(key) : NULL;
		if (!cmd)
			return -EINVAL;
		printf("%zu\n", cmd->size);
		fflush(stdout);
		return 0;
	}
	cmd = probe_find(key);
	if (!cmd)
		return -EINVAL;
	nr = cmd->nr;
	size = sizefield = cmd->size;
	version = VDISK_IOC_VERSION;

	/* Fields are written straight into the buffer, version and size
	 * after the loop (the kernel copies `size` bytes of it). */
	memset(probe_buf, 0, sizeof(probe_buf));
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
		if (strcmp(key, "target") == 0) {
			if (probe_set_target(cmd, val, false) < 0)
				return -EINVAL;
			continue;
		}
		if (probe_parse_num(val, &v) < 0)
			return -EINVAL;
		if (strcmp(key, "unterminated") == 0) {
			if (probe_set_target(cmd, val, v != 0) < 0)
				return -EINVAL;
		} else if (strcmp(key, "nr") == 0 && v <= _IOC_NRMASK)
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
		else if (probe_set_field(cmd, key, v) < 0)
			return -EINVAL;
	}

	/* version and size lead every struct. */
	((uint32_t *)probe_buf)[0] = (uint32_t)version;
	((uint32_t *)probe_buf)[1] = (uint32_t)sizefield;
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

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of vdiskctl share: the parsed command line, messages and
 * the image handle.  Not installed; vdiskctl is one single-threaded process.
 */
#ifndef VDISKCTL_INTERNAL_H
#define VDISKCTL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#define PROG "vdiskctl"

/* A command line, as parsed; pointers borrowed from argv. */
struct ctl_args {
	const struct ctl_cmd *cmd;
	const char *file;
	bool json;                      /* info --json */
	bool hold;                      /* drain --hold */
	uint32_t timeout;               /* drain --timeout, seconds; 0: none */
	char **command;                 /* drain's "-- COMMAND...", NULL-ended
					 * (argv's), or NULL */
};

/*
 * Report on stderr that op on file failed with the positive errno err, as
 * "vdiskctl: FILE: OP: strerror", with hint: why the daemon may have
 * answered err.  Returns EXIT_FAILURE.
 */
int ctl_fail(const char *file, const char *op, int err, bool hint);

/* The same for a call that concerns no file: "vdiskctl: OP: strerror". */
int ctl_sys_fail(const char *op, int err);

/* Flush stdout: 0, or EXIT_FAILURE after a message if writing failed. */
int ctl_finish_stdout(void);

/*
 * Open file for an ioctl with accmode (O_RDONLY or O_WRONLY), close-on-exec.
 * Returns the fd (the caller closes it), or -1 after a message.
 */
int ctl_image_open(const char *file, int accmode);

/* ioctl(fd, cmd, arg), restarted on EINTR.  Returns 0 or -errno. */
int ctl_ioctl(int fd, unsigned long cmd, void *arg);

/* The drain command (vdiskctl-drain.c).  Returns the exit status. */
int ctl_drain(const struct ctl_args *args);

#endif /* VDISKCTL_INTERNAL_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of vdiskctl share: the parsed command line, messages and
 * the image handle.  Not installed; vdiskctl is one single-threaded process.
 */
#ifndef VDISKCTL_INTERNAL_H
#define VDISKCTL_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdisk-ioctl.h"

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
	int argc;                       /* a command that parses its own: */
	char **argv;                    /* the arguments after its name */
};

/*
 * Report on stderr that op on file failed with the positive errno err, as
 * "vdiskctl: FILE: OP: strerror", with hint: why the daemon may have
 * answered err.  Returns EXIT_FAILURE.
 */
int ctl_fail(const char *file, const char *op, int err, bool hint);

/* The same for a call that concerns no file: "vdiskctl: OP: strerror". */
int ctl_sys_fail(const char *op, int err);

/*
 * Report a usage error of cmd (a name such as "info" or "mirror start", or
 * NULL for none) on stderr: the message, then where to find help.
 * Returns 2, the exit status of a usage error.
 */
int ctl_vusage_error(const char *cmd, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* Flush stdout: 0, or EXIT_FAILURE after a message if writing failed. */
int ctl_finish_stdout(void);

/*
 * Open file for an ioctl with accmode (O_RDONLY or O_WRONLY), close-on-exec.
 * Returns the fd (the caller closes it), or -1 after a message.
 */
int ctl_image_open(const char *file, int accmode);

/* ioctl(fd, cmd, arg), restarted on EINTR.  Returns 0 or -errno. */
int ctl_ioctl(int fd, unsigned long cmd, void *arg);

/*
 * Parse s, decimal digits only (no sign, no space), as a number of at
 * most max into *out.  Returns 0, or -EINVAL (*out untouched).  A caller
 * that refuses 0 checks it.
 */
int ctl_parse_uint(const char *s, uint64_t max, uint64_t *out);

/*
 * Print on stdout the field s of at most max bytes (NUL-terminated only if
 * shorter) as a JSON string: escaped, invalid UTF-8 as U+FFFD.
 */
void ctl_json_string(const char *s, size_t max);

/*
 * Print "key: s" and a newline on stdout, s (as above) with its control
 * characters as \xNN so that it stays one line.
 */
void ctl_plain_string(const char *key, const char *s, size_t max);

/* The drain command (vdiskctl-drain.c).  Returns the exit status. */
int ctl_drain(const struct ctl_args *args);

/*
 * The mirror command (vdiskctl-mirror.c): parses args->argc/argv, the
 * sub-command first, --help included.  Returns the exit status.
 */
int ctl_mirror(const struct ctl_args *args);

/*
 * The vring-test command (vdiskctl-vring.c): parses args->argc/argv,
 * --help included.  Returns the exit status.
 */
int ctl_vring(const struct ctl_args *args);

/* ---- inside the mirror command (vdiskctl-mirror*.c) -------------------- */

/* A mirror command line, as parsed; strings borrowed from argv. */
struct ctl_mirror_args {
	const struct mirror_cmd *cmd;   /* sub-command (vdiskctl-mirror.c) */
	char name[32];                  /* "mirror start", for messages */
	const char *file;
	const char *arg;                /* start's TARGET, set-speed's RATE */
	uint32_t sync, copy_mode;       /* enum vdisk_mirror_sync, _copy_mode */
	uint32_t on_source_error, on_target_error;  /* vdisk_mirror_on_error */
	uint64_t granularity, buf_size, speed;      /* 0: daemon's default */
	uint32_t timeout;               /* seconds; 0: none */
	bool existing, json, ready, done, progress, no_pivot, force;
};

/*
 * The names of the ABI's enum values, indexed by value, as the options of
 * 'mirror start' take them and the status shows them
 * (vdiskctl-mirror-status.c).
 */
#define CTL_MIRROR_SYNC_NR     2
#define CTL_MIRROR_MODE_NR     2
#define CTL_MIRROR_ON_ERROR_NR 3
extern const char *const ctl_mirror_sync_names[CTL_MIRROR_SYNC_NR];
extern const char *const ctl_mirror_mode_names[CTL_MIRROR_MODE_NR];
extern const char *const ctl_mirror_on_error_names[CTL_MIRROR_ON_ERROR_NR];

/*
 * The name of an enum vdisk_mirror_state value: "none", "running"...;
 * "unknown-N" for a value this vdiskctl does not know.  The string is
 * static, or valid until the fourth call after this one.
 */
const char *ctl_mirror_state_name(uint32_t state);

/*
 * Report that the mirror ioctl cmd on m->file failed with the positive
 * errno err, with what the daemon means by it for cmd:
 * "vdiskctl: FILE: mirror start: strerror (why)".  Returns EXIT_FAILURE.
 */
int ctl_mirror_fail(const struct ctl_mirror_args *m, unsigned long cmd,
		    int err);

/* 'mirror status' and 'mirror wait'.  Return the exit status. */
int ctl_mirror_status(const struct ctl_mirror_args *m);
int ctl_mirror_wait(const struct ctl_mirror_args *m);

/*
 * Open m->file for writing, check that it has a job, send cmd with arg
 * (borrowed) and wait, within m->timeout, until the job is over;
 * goes_on ends the timeout's message ("it goes on completing").  Returns
 * 0 with the job's last status in *st if it ended in state want (enum
 * vdisk_mirror_state), or 1 after a message (ctl_mirror_report_end's if
 * it ended otherwise).
 */
int ctl_mirror_send_wait(const struct ctl_mirror_args *m, unsigned long cmd,
			 void *arg, uint32_t want,
			 struct vdisk_ioc_mirror_status *st,
			 const char *goes_on);

/*
 * Report on stderr how the job of st ended when that is not what the
 * caller wanted (failed with its error, cancelled and whether the target
 * is consistent, or its state).  Returns EXIT_FAILURE.
 */
int ctl_mirror_report_end(const struct ctl_mirror_args *m,
			  const struct vdisk_ioc_mirror_status *st);

/* ---- inside the vring-test command (vdiskctl-vring*.c) ----------------- */

/* A vring-test command line, as parsed; file borrowed from argv. */
struct ctl_vring_args {
	const char *file;
	struct vdisk_ioc_vring_start start;   /* as sent (defaults made
					       * explicit); test_id out */
	uint32_t rwmix_read;            /* --rwmix-read as given */
	bool event_idx, indirect;       /* --event-idx, --indirect */
	bool json, status;              /* --json, --status */
	bool started;                   /* start describes the test shown */
};

/* The names of the ABI's rw and inject values, as the options take them. */
#define CTL_VRING_RW_NR     5
#define CTL_VRING_INJECT_NR 7
extern const char *const ctl_vring_rw_names[CTL_VRING_RW_NR];
extern const char *const ctl_vring_inject_names[CTL_VRING_INJECT_NR];

/* Is state (enum vdisk_vring_state) one a test ends in? */
bool ctl_vring_final(uint32_t state);

/*
 * Report that the vring ioctl cmd on file failed with the positive errno
 * err, with what the daemon means by it.  Returns EXIT_FAILURE.
 */
int ctl_vring_fail(const char *file, unsigned long cmd, int err);

/* The progress line on stderr, on a terminal only (vdiskctl-vring-report.c). */
struct ctl_vring_progress {
	bool tty;
	int drawn;                      /* length of the line on screen */
	uint64_t id;
	uint64_t last_ns, last_ops, last_bytes;   /* the last rate's sample */
	double iops, mib_s;             /* over the last second or so */
	bool windowed;                  /* they are (else: since the start) */
};

void ctl_vring_progress_init(struct ctl_vring_progress *pr, uint64_t id);
void ctl_vring_progress_show(struct ctl_vring_progress *pr,
			     const struct vdisk_ioc_vring_status *st,
			     uint64_t now_ns);
/* Erase the line, if one is drawn. */
void ctl_vring_progress_end(struct ctl_vring_progress *pr);

/*
 * Print st on stdout, as a table or (v->json) one JSON object; sig is
 * the signal that stopped the test (0: none), gave_up whether vdiskctl
 * stopped it for lack of progress.
 */
void ctl_vring_print(const struct ctl_vring_args *v,
		     const struct vdisk_ioc_vring_status *st, int sig,
		     bool gave_up);

/*
 * Print the results of the test v started (st: its final status), say on
 * stderr what went wrong, and return the exit status: 128 + sig after a
 * signal, 1 for a failure, else 0.
 */
int ctl_vring_report(const struct ctl_vring_args *v,
		     const struct vdisk_ioc_vring_status *st, int sig,
		     bool gave_up);

#endif /* VDISKCTL_INTERNAL_H */

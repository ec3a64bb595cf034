/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdiskctl drain: hold a drain of an image while a command runs, or until
 * standard input closes (--hold).
 *
 * Design notes.  The drain belongs to this process and its handle, so the
 * command must never hold that handle: a close of it by another process
 * (close-on-exec included) makes the kernel write back the inode's dirty
 * pages and send FUSE FLUSH, either of which can wait for requests that
 * the drain itself holds.  O_CLOEXEC alone still lets a child hold the
 * handle between fork and exec, so the child is forked first and waits on
 * a pipe; only then does the parent open the file and begin the drain, and
 * it lets the child exec once the drain is in place.  A second
 * close-on-exec pipe carries an exec failure's errno back.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP (those not ignored when vdiskctl
 * started) are blocked before the drain begins and taken synchronously
 * (sigwaitinfo with a COMMAND, a signalfd with --hold), so none is lost
 * between two checks.  With a COMMAND, a signal taken is forwarded to it
 * (unless the terminal sent it to the whole foreground process group, the
 * command's included); vdiskctl waits for the command, ends the drain and
 * exits 128 + the signal.  The command starts with the signal mask and
 * dispositions that vdiskctl started with.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vdisk-ioctl.h"
#include "vdiskctl-internal.h"

static int drain_begin(int fd, uint32_t timeout)
{
	struct vdisk_ioc_drain_begin arg;

	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	arg.timeout_sec = timeout;
	return ctl_ioctl(fd, VDISK_IOC_DRAIN_BEGIN, &arg);
}

static int drain_end(int fd)
{
	struct vdisk_ioc_drain_end arg;

	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	return ctl_ioctl(fd, VDISK_IOC_DRAIN_END, &arg);
}

static const int drain_signals[] = { SIGINT, SIGTERM, SIGHUP };

/*
 * Add to set the drain signals that are not ignored: a caller who ignores
 * one (nohup, a background job of a script) keeps it ignored.
 */
static void drain_sigset(sigset_t *set)
{
	struct sigaction sa;
	size_t i;

	sigemptyset(set);
	for (i = 0; i < sizeof(drain_signals) / sizeof(drain_signals[0]); i++) {
		if (sigaction(drain_signals[i], NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_IGN)
			continue;
		sigaddset(set, drain_signals[i]);
	}
}

/* Begin the drain on a new write handle of file; -1 after a message. */
static int drain_open_begin(const struct ctl_args *a)
{
	int fd, ret;

	fd = ctl_image_open(a->file, O_WRONLY);
	if (fd < 0)
		return -1;
	ret = drain_begin(fd, a->timeout);
	if (ret < 0) {
		close(fd);
		ctl_fail(a->file, "drain-begin", -ret, true);
		return -1;
	}
	return fd;
}

/* End the drain and close fd; returns 0 or 1 (after a message). */
static int drain_end_close(const struct ctl_args *a, int fd)
{
	int ret = drain_end(fd);

	close(fd);
	if (ret == -EINVAL && a->timeout) {
		/* The daemon's answer when the handle holds no drain. */
		fprintf(stderr, PROG ": %s: drain-end: %s (did the %u s "
			"timeout end the drain?)\n", a->file, strerror(EINVAL),
			a->timeout);
		return EXIT_FAILURE;
	}
	return ret < 0 ? ctl_fail(a->file, "drain-end", -ret, true) : 0;
}

/*
 * Wait for stdin to reach EOF (or fail) or for a signal of sfd.  Input
 * before EOF is read and dropped.
 */
static void drain_hold_wait(int sfd)
{
	struct pollfd pfd[2] = {
		{ .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = sfd, .events = POLLIN },
	};
	char buf[4096];
	ssize_t n;

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (pfd[1].revents)
			return;
		if (pfd[0].revents & POLLNVAL)
			return;               /* no stdin at all */
		if (!pfd[0].revents)
			continue;
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n == 0)
			return;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return;
	}
}

static int drain_hold(const struct ctl_args *a)
{
	sigset_t set;
	int sfd, fd, ret;

	/* Blocked before the drain begins: none can slip past the wait. */
	drain_sigset(&set);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (sfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0)
		return ctl_sys_fail("signalfd", errno);
	/* A reader that went away is an error to report, not a death. */
	signal(SIGPIPE, SIG_IGN);

	fd = drain_open_begin(a);
	if (fd < 0) {
		close(sfd);
		return EXIT_FAILURE;
	}
	fputs("drained\n", stdout);
	ret = ctl_finish_stdout();
	if (ret == 0)
		drain_hold_wait(sfd);
	close(sfd);
	return drain_end_close(a, fd) ? EXIT_FAILURE : ret;
}

/*
 * The child: wait until the parent says go (a byte on the go pipe) or
 * gives up (EOF), then exec the command with the caller's signal state.
 * An exec failure's errno goes to the err pipe.  Only async-signal-safe
 * calls here.
 */
static void __attribute__((noreturn))
drain_child(char **command, const int go[2], const int err_pipe[2],
	    const sigset_t *old_mask, const struct sigaction *old_chld)
{
	char c;
	int err;

	/* Our copy of the go pipe's write end would keep EOF from coming. */
	close(go[1]);
	close(err_pipe[0]);
	if (read(go[0], &c, 1) != 1)
		_exit(127);
	if (old_chld)
		sigaction(SIGCHLD, old_chld, NULL);
	sigprocmask(SIG_SETMASK, old_mask, NULL);
	execvp(command[0], command);
	err = errno;
	if (write(err_pipe[1], &err, sizeof(err)) < 0) {
		/* Nothing to do: the parent then reports a plain 127. */
	}
	_exit(127);
}

/*
 * Wait for the child pid, forwarding the signals of set.  The first signal
 * taken goes to *got_sig.  Returns 0 with its wait status in *status, or
 * -errno.
 */
static int drain_wait_child(pid_t pid, const sigset_t *set, int *got_sig,
			    int *status)
{
	siginfo_t si;
	pid_t r;
	int sig;

	for (;;) {
		r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		sig = sigwaitinfo(set, &si);
		if (sig <= 0 || sig == SIGCHLD)
			continue;
		if (!*got_sig)
			*got_sig = sig;
		/* The terminal signals the whole foreground group itself. */
		if (si.si_code == SI_KERNEL && getpgid(pid) == getpgrp())
			continue;
		kill(pid, sig);
	}
}

/* Reap pid after the parent gave up before exec; nothing to report. */
static void drain_reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/*
 * The exit status of drain with a COMMAND: that of the command, 128 + the
 * signal that vdiskctl took, and 1 if the command succeeded but the drain
 * could not be ended properly (a timeout may have ended it early).
 */
static int drain_status(int got_sig, int exec_err, int wstatus, int end_ret)
{
	int rc;

	if (got_sig)
		rc = 128 + got_sig;
	else if (exec_err)
		rc = 127;
	else if (WIFEXITED(wstatus))
		rc = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		rc = 128 + WTERMSIG(wstatus);
	else
		rc = EXIT_FAILURE;
	return rc == 0 && end_ret ? EXIT_FAILURE : rc;
}

static int drain_command(const struct ctl_args *a)
{
	struct sigaction old_chld, dfl = { .sa_handler = SIG_DFL };
	bool chld_changed = false;
	sigset_t set, block, old_mask;
	int go[2], err[2], fd, ret;
	int exec_err = 0, got_sig = 0, wstatus = 0;
	pid_t pid;

	/* With SIGCHLD ignored the child would be reaped behind our back. */
	if (sigaction(SIGCHLD, NULL, &old_chld) == 0 &&
	    old_chld.sa_handler == SIG_IGN) {
		sigaction(SIGCHLD, &dfl, NULL);
		chld_changed = true;
	}
	drain_sigset(&set);
	sigaddset(&set, SIGCHLD);
	/* SIGPIPE too, blocked but never waited for: a write to the go pipe
	 * of a child that died then fails with EPIPE instead of killing us. */
	block = set;
	sigaddset(&block, SIGPIPE);
	sigprocmask(SIG_BLOCK, &block, &old_mask);

	if (pipe2(go, O_CLOEXEC) < 0)
		return ctl_sys_fail("pipe", errno);
	if (pipe2(err, O_CLOEXEC) < 0) {
		ret = ctl_sys_fail("pipe", errno);
		goto out_close_go;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		ret = ctl_sys_fail("fork", errno);
		goto out_close_err;
	}
	if (pid == 0)
		drain_child(a->command, go, err, &old_mask,
			    chld_changed ? &old_chld : NULL);
	close(go[0]);
	close(err[1]);

	fd = drain_open_begin(a);
	if (fd < 0) {
		close(go[1]);              /* the child exits without exec */
		close(err[0]);
		drain_reap(pid);
		return EXIT_FAILURE;
	}
	if (write(go[1], "g", 1) != 1) {
		/* The child is gone; its wait status says why. */
	}
	close(go[1]);
	/* EOF once exec succeeded (close-on-exec), else the child's errno. */
	while ((ret = read(err[0], &exec_err, sizeof(exec_err))) < 0 &&
	       errno == EINTR)
		;
	close(err[0]);
	if (exec_err)
		ctl_fail(a->command[0], "exec", exec_err, false);

	ret = drain_wait_child(pid, &set, &got_sig, &wstatus);
	if (ret < 0)
		ctl_sys_fail("wait", -ret);
	return drain_status(got_sig, exec_err, wstatus,
			    drain_end_close(a, fd) || ret < 0);

out_close_err:
	close(err[0]);
	close(err[1]);
out_close_go:
	close(go[0]);
	close(go[1]);
	return ret;
}

int ctl_drain(const struct ctl_args *a)
{
	return a->hold ? drain_hold(a) : drain_command(a);
}

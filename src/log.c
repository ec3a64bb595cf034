/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging: level filtering, line formatting, and the two outputs (a file
 * descriptor, normally stderr, or syslog).  See log.h for the interface.
 *
 * The level and the sink fd are atomics read on every call, so changing them
 * needs no lock.  The ident and the syslog switch are plain variables that
 * only log_init writes, before other threads exist.
 *
 * A line is formatted in full into a stack buffer, with no lock held, and
 * then written with one write(2) under log_write_lock.  One write keeps it
 * whole against other processes sharing a pipe or an O_APPEND file.  The
 * lock keeps it whole against the other threads on sinks where the kernel
 * does not serialise writers: stream sockets (journald's stderr), memfds and
 * other files without an atomic file position.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

#define LOG_IDENT_MAX 64

static atomic_int log_cur_level = LOG_LEVEL_INFO;
static atomic_int log_sink_fd = -1;     /* negative: stderr */

/* Taken only around the write(2) of a line to the sink fd. */
static pthread_mutex_t log_write_lock = PTHREAD_MUTEX_INITIALIZER;

/* Written by log_init only, before other threads log. */
static char log_ident[LOG_IDENT_MAX];   /* empty: program's short name */
static bool log_use_syslog;

static const char *const log_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warning",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

static const int log_priorities[] = {
	[LOG_LEVEL_ERROR] = LOG_ERR,
	[LOG_LEVEL_WARN] = LOG_WARNING,
	[LOG_LEVEL_INFO] = LOG_INFO,
	[LOG_LEVEL_DEBUG] = LOG_DEBUG,
};

void log_init(const char *ident, enum log_level level, bool use_syslog)
{
	int saved_errno = errno;
	const char *slash;

	if (ident == NULL)
		ident = "";
	slash = strrchr(ident, '/');
	if (slash != NULL)
		ident = slash + 1;
	snprintf(log_ident, sizeof(log_ident), "%s", ident);

	if (log_use_syslog)
		closelog();
	log_use_syslog = use_syslog;
	/* openlog keeps the pointer: log_ident lives as long as the process. */
	if (use_syslog)
		openlog(log_ident[0] ? log_ident : NULL, LOG_PID, LOG_DAEMON);

	log_set_level(level);
	errno = saved_errno;
}

void log_set_level(enum log_level level)
{
	if ((unsigned int)level > LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	atomic_store_explicit(&log_cur_level, level, memory_order_relaxed);
}

enum log_level log_get_level(void)
{
	return atomic_load_explicit(&log_cur_level, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
	/* A negative value, cast, is huge: never enabled. */
	return (unsigned int)level <= (unsigned int)log_get_level();
}

int log_parse_level(const char *s, enum log_level *out)
{
	enum log_level level;

	if (s == NULL)
		return -EINVAL;
	if (strcasecmp(s, "error") == 0)
		level = LOG_LEVEL_ERROR;
	else if (strcasecmp(s, "warn") == 0 || strcasecmp(s, "warning") == 0)
		level = LOG_LEVEL_WARN;
	else if (strcasecmp(s, "info") == 0)
		level = LOG_LEVEL_INFO;
	else if (strcasecmp(s, "debug") == 0)
		level = LOG_LEVEL_DEBUG;
	else
		return -EINVAL;
	*out = level;
	return 0;
}

const char *log_level_name(enum log_level level)
{
	if ((unsigned int)level > LOG_LEVEL_DEBUG)
		return "unknown";
	return log_names[level];
}

void log_set_sink(int fd)
{
	atomic_store_explicit(&log_sink_fd, fd < 0 ? -1 : fd,
			      memory_order_relaxed);
}

static void log_write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t r = write(fd, p, len);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += r;
		len -= (size_t)r;
	}
}

/*
 * Format "message" into body[0..cap), NUL-terminated.  Returns its length.
 * A message that does not fit ends in "...".
 */
static size_t __attribute__((format(printf, 4, 0)))
log_format_body(char *body, size_t cap, int saved_errno, const char *fmt,
		va_list ap)
{
	int n;
	size_t len;

	/* For %m: the prefix formatting must not have changed errno. */
	errno = saved_errno;
	n = vsnprintf(body, cap, fmt, ap);
	if (n < 0) {
		snprintf(body, cap, "(bad log format \"%s\")", fmt);
		return strlen(body);
	}
	len = (size_t)n;
	if (len >= cap) {
		len = cap - 1;
		memcpy(body + len - 3, "...", 3);
	}
	if (len > 0 && body[len - 1] == '\n')
		body[--len] = '\0';
	return len;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	int saved_errno = errno;
	char line[LOG_LINE_MAX];
	const char *ident;
	size_t prefix, len;
	int fd, n;

	if (!log_enabled(level))
		return;

	ident = log_ident[0] ? log_ident : program_invocation_short_name;
	/* The precision bounds the prefix even for a long program name. */
	n = snprintf(line, sizeof(line), "%.*s: %s: ", LOG_IDENT_MAX - 1,
		     ident, log_level_name(level));
	prefix = n < 0 ? 0 : (size_t)n;

	/*
	 * The body may use every byte left: its terminating NUL becomes the
	 * newline, so a full line is exactly LOG_LINE_MAX bytes.
	 */
	len = prefix + log_format_body(line + prefix, sizeof(line) - prefix,
				       saved_errno, fmt, ap);

	if (log_use_syslog) {
		syslog(log_priorities[level], "%s", line + prefix);
	} else {
		line[len++] = '\n';
		fd = atomic_load_explicit(&log_sink_fd, memory_order_relaxed);
		pthread_mutex_lock(&log_write_lock);
		log_write_all(fd < 0 ? STDERR_FILENO : fd, line, len);
		pthread_mutex_unlock(&log_write_lock);
	}
	errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	/* Checked here too, so a dropped message costs no va_start. */
	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging for the daemon (vdiskfs), vdiskctl and the engine.
 *
 * A message is one line.  In the foreground it goes to stderr as
 * "ident: level: message\n"; a daemon sends it to syslog instead.  Messages
 * more verbose than the current level are dropped before any formatting.
 *
 * Threading:
 *  - log_init: once, from main(), before any other thread logs.  It may be
 *    called again (tests do) under the same condition.
 *  - Everything else: any thread, including coroutines (a line is built in
 *    a LOG_LINE_MAX buffer on the caller's stack; nothing yields).  Each
 *    line is written with a single write(2) under an internal lock, so
 *    lines from concurrent threads never mix, whatever stderr is.
 *  - No function here changes errno.
 */
#ifndef VDISK_LOG_H
#define VDISK_LOG_H

#include <stdarg.h>
#include <stdbool.h>

/* Ordered from least to most verbose; a level shows itself and all below. */
enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/*
 * The longest line written, prefix and newline included.  A longer message
 * is cut so that the line ends in "...\n".  It stays below PIPE_BUF, so a
 * line written to a pipe is atomic too.
 */
#define LOG_LINE_MAX 2048

/*
 * Set up logging.  ident names the program in every line: only its last
 * path component is kept, so argv[0] will do; it is copied and cut to 63
 * bytes; NULL or "" means the program's short name.  level is the most
 * verbose level shown.  With use_syslog, lines go to syslog(3) with
 * facility LOG_DAEMON, the process id and the matching priority instead of
 * to stderr.
 *
 * Without log_init, ident is the program's short name, the level is
 * LOG_LEVEL_INFO and lines go to stderr.
 */
void log_init(const char *ident, enum log_level level, bool use_syslog);

/* Change the level.  Values past LOG_LEVEL_DEBUG mean LOG_LEVEL_DEBUG. */
void log_set_level(enum log_level level);

enum log_level log_get_level(void);

/*
 * True if a message at level would be written.  For callers that would
 * otherwise compute expensive arguments for a message that is dropped.
 */
bool log_enabled(enum log_level level);

/*
 * Parse a level name: "error", "warn" or "warning", "info", "debug", in any
 * case.  Returns 0 and sets *out, or -EINVAL (s NULL or not a name; *out is
 * then unchanged).
 */
int log_parse_level(const char *s, enum log_level *out);

/*
 * The name used in log lines: "error", "warning", "info" or "debug" (all
 * accepted by log_parse_level); "unknown" for a value outside the enum.
 * Returns a static string.
 */
const char *log_level_name(enum log_level level);

/*
 * Write the lines that would go to stderr to fd instead; a negative fd
 * restores stderr.  The caller keeps owning fd and must keep it open until
 * the sink is changed again and no thread is still inside log_msg.  Meant
 * for tests; does nothing to syslog output.
 */
void log_set_sink(int fd);

/*
 * Log one message at level, formatted as printf(3) would (%m included: it
 * shows errno as it was at the call).  A trailing newline in the message is
 * dropped; the line gets its own.  Errors writing the line are ignored:
 * there is nowhere left to report them.
 */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* As log_msg, with a va_list. */
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif /* VDISK_LOG_H */

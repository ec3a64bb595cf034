/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for the logger: level filtering and parsing, the exact line
 * format, truncation of long messages, errno preservation, and lines from
 * concurrent threads arriving whole.
 *
 * Each test points the sink at a fresh memfd and reads back what was
 * written.  Syslog output is not tested: it would reach the real system log.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"

#define IDENT "test-log"

#define N_THREADS 4
#define N_LINES 1000

struct sink {
	int fd;
};

static int sink_setup(void **state)
{
	struct sink *s = malloc(sizeof(*s));

	if (s == NULL)
		return -1;
	s->fd = memfd_create("test-log", MFD_CLOEXEC);
	if (s->fd < 0) {
		free(s);
		return -1;
	}
	log_init(IDENT, LOG_LEVEL_INFO, false);
	log_set_sink(s->fd);
	*state = s;
	return 0;
}

static int sink_teardown(void **state)
{
	struct sink *s = *state;

	log_set_sink(-1);
	close(s->fd);
	free(s);
	return 0;
}

/* Everything written to the sink so far, NUL-terminated.  Caller frees. */
static char *sink_read(const struct sink *s, size_t *len_out)
{
	struct stat st;
	char *buf;
	ssize_t r;

	assert_int_equal(fstat(s->fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	r = pread(s->fd, buf, (size_t)st.st_size, 0);
	assert_int_equal(r, st.st_size);
	buf[r] = '\0';
	if (len_out != NULL)
		*len_out = (size_t)r;
	return buf;
}

/* Empty the sink between the steps of a test. */
static void sink_clear(const struct sink *s)
{
	assert_int_equal(ftruncate(s->fd, 0), 0);
	assert_int_equal(lseek(s->fd, 0, SEEK_SET), 0);
}

static void assert_sink(const struct sink *s, const char *expected)
{
	char *got = sink_read(s, NULL);

	assert_string_equal(got, expected);
	free(got);
	sink_clear(s);
}

static void test_level_filter(void **state)
{
	struct sink *s = *state;

	assert_int_equal(log_get_level(), LOG_LEVEL_INFO);
	assert_false(log_enabled(LOG_LEVEL_DEBUG));
	assert_true(log_enabled(LOG_LEVEL_INFO));

	log_debug("hidden %d", 1);
	assert_sink(s, "");

	log_info("shown");
	log_warn("shown");
	log_error("shown");
	assert_sink(s, IDENT ": info: shown\n"
		       IDENT ": warning: shown\n"
		       IDENT ": error: shown\n");

	log_set_level(LOG_LEVEL_WARN);
	log_info("hidden");
	log_debug("hidden");
	log_warn("shown");
	assert_sink(s, IDENT ": warning: shown\n");

	log_set_level(LOG_LEVEL_ERROR);
	log_warn("hidden");
	log_error("shown");
	assert_sink(s, IDENT ": error: shown\n");

	log_set_level(LOG_LEVEL_DEBUG);
	assert_true(log_enabled(LOG_LEVEL_DEBUG));
	log_debug("shown");
	assert_sink(s, IDENT ": debug: shown\n");

	/* Past the last level means the most verbose one. */
	log_set_level((enum log_level)42);
	assert_int_equal(log_get_level(), LOG_LEVEL_DEBUG);
	log_msg((enum log_level)42, "never shown");
	assert_sink(s, "");
}

static void test_line_format(void **state)
{
	struct sink *s = *state;

	log_error("disk %s: %d%%", "a.img", 5);
	assert_sink(s, IDENT ": error: disk a.img: 5%\n");

	/* The message's own trailing newline is not doubled. */
	log_info("with newline\n");
	assert_sink(s, IDENT ": info: with newline\n");

	log_info("%s", "");
	assert_sink(s, IDENT ": info: \n");

	/* Only the last component of a path is the ident. */
	log_init("/usr/local/bin/vdiskfs", LOG_LEVEL_INFO, false);
	log_info("x");
	assert_sink(s, "vdiskfs: info: x\n");

	/* No ident: the program's own short name. */
	log_init(NULL, LOG_LEVEL_INFO, false);
	log_info("x");
	{
		char expected[256];

		snprintf(expected, sizeof(expected), "%s: info: x\n",
			 program_invocation_short_name);
		assert_sink(s, expected);
	}
}

static void test_default_sink_is_stderr(void **state)
{
	struct sink *s = *state;
	int saved_stderr = dup(STDERR_FILENO);

	assert_true(saved_stderr >= 0);
	assert_int_equal(dup2(s->fd, STDERR_FILENO), STDERR_FILENO);
	log_set_sink(-1);
	log_warn("to stderr");
	assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
	close(saved_stderr);

	assert_sink(s, IDENT ": warning: to stderr\n");
}

struct parse_case {
	const char *s;
	enum log_level level;
};

static void test_parse_level_valid(void **state)
{
	static const struct parse_case cases[] = {
		{ "error", LOG_LEVEL_ERROR },
		{ "ERROR", LOG_LEVEL_ERROR },
		{ "warn", LOG_LEVEL_WARN },
		{ "Warn", LOG_LEVEL_WARN },
		{ "warning", LOG_LEVEL_WARN },
		{ "WARNING", LOG_LEVEL_WARN },
		{ "info", LOG_LEVEL_INFO },
		{ "iNfO", LOG_LEVEL_INFO },
		{ "debug", LOG_LEVEL_DEBUG },
		{ "Debug", LOG_LEVEL_DEBUG },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum log_level level = (enum log_level)-1;

		assert_int_equal(log_parse_level(cases[i].s, &level), 0);
		assert_int_equal(level, cases[i].level);
	}
}

static void test_parse_level_invalid(void **state)
{
	static const char *const cases[] = {
		"", "err", "errors", "warnings", "inf", "debug2", "verbose",
		"trace", "0", "3", " info", "info ", "info\n", "de bug",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum log_level level = LOG_LEVEL_WARN;

		assert_int_equal(log_parse_level(cases[i], &level), -EINVAL);
		assert_int_equal(level, LOG_LEVEL_WARN);
	}

	{
		enum log_level level = LOG_LEVEL_WARN;

		assert_int_equal(log_parse_level(NULL, &level), -EINVAL);
		assert_int_equal(level, LOG_LEVEL_WARN);
	}
}

static void test_level_name(void **state)
{
	assert_string_equal(log_level_name(LOG_LEVEL_ERROR), "error");
	assert_string_equal(log_level_name(LOG_LEVEL_WARN), "warning");
	assert_string_equal(log_level_name(LOG_LEVEL_INFO), "info");
	assert_string_equal(log_level_name(LOG_LEVEL_DEBUG), "debug");
	assert_string_equal(log_level_name((enum log_level)42), "unknown");

	for (int l = LOG_LEVEL_ERROR; l <= LOG_LEVEL_DEBUG; l++) {
		enum log_level back;

		assert_int_equal(log_parse_level(log_level_name(l), &back), 0);
		assert_int_equal(back, l);
	}
}

static void test_truncation(void **state)
{
	struct sink *s = *state;
	const char prefix[] = IDENT ": info: ";
	const size_t plen = sizeof(prefix) - 1;
	/* The longest body that fits: the line is then LOG_LINE_MAX bytes. */
	const size_t fit = LOG_LINE_MAX - plen - 1;
	char *msg = malloc(10000 + 1);
	char *got;
	size_t len;

	assert_non_null(msg);
	memset(msg, 'x', 10000);

	/* Just fits: written whole. */
	msg[fit] = '\0';
	log_info("%s", msg);
	got = sink_read(s, &len);
	assert_int_equal(len, LOG_LINE_MAX);
	assert_memory_equal(got, prefix, plen);
	assert_memory_equal(got + plen, msg, fit);
	assert_string_equal(got + len - 2, "x\n");
	free(got);
	sink_clear(s);

	/* One byte more: cut, still one line of LOG_LINE_MAX bytes. */
	msg[fit] = 'x';
	msg[fit + 1] = '\0';
	log_info("%s", msg);
	got = sink_read(s, &len);
	assert_int_equal(len, LOG_LINE_MAX);
	assert_memory_equal(got, prefix, plen);
	assert_memory_equal(got + plen, msg, fit - 3);
	assert_string_equal(got + len - 4, "...\n");
	free(got);
	sink_clear(s);

	/* Much longer: the same. */
	msg[10000] = '\0';
	log_warn("%s%s", msg, msg);
	got = sink_read(s, &len);
	assert_int_equal(len, LOG_LINE_MAX);
	assert_memory_equal(got, IDENT ": warning: ",
			    strlen(IDENT ": warning: "));
	assert_string_equal(got + len - 4, "...\n");
	assert_ptr_equal(strchr(got, '\n'), got + len - 1);
	free(got);
	sink_clear(s);

	free(msg);
}

static void test_errno_preserved(void **state)
{
	struct sink *s = *state;
	int pipefd[2];
	char expected[256];

	errno = EIO;
	log_info("written");
	assert_int_equal(errno, EIO);

	errno = EIO;
	log_debug("dropped");
	assert_int_equal(errno, EIO);
	sink_clear(s);

	/* %m shows errno as it was at the call. */
	errno = ENOSPC;
	log_error("failed: %m");
	assert_int_equal(errno, ENOSPC);
	snprintf(expected, sizeof(expected), IDENT ": error: failed: %s\n",
		 strerror(ENOSPC));
	assert_sink(s, expected);

	/* A failing write (EBADF on a pipe's read end) does not leak out. */
	assert_int_equal(pipe(pipefd), 0);
	log_set_sink(pipefd[0]);
	errno = EIO;
	log_error("lost");
	assert_int_equal(errno, EIO);
	log_set_sink(s->fd);
	close(pipefd[0]);
	close(pipefd[1]);

	errno = EIO;
	log_init(IDENT, LOG_LEVEL_INFO, false);
	log_set_level(LOG_LEVEL_DEBUG);
	assert_int_equal(errno, EIO);
}

/*
 * Concurrent writers.  N_THREADS threads wait on a barrier, then each logs
 * N_LINES numbered lines as fast as it can.  Every line must come back
 * whole, and each thread's lines in its own order (one write(2) per line on
 * one file description, so the kernel serialises them).
 */
static pthread_barrier_t writers_barrier;

static void *writer_thread(void *opaque)
{
	int id = (int)(intptr_t)opaque;

	pthread_barrier_wait(&writers_barrier);
	for (int i = 0; i < N_LINES; i++)
		log_info("thread %d line %d", id, i);
	return NULL;
}

static void run_writers(void)
{
	pthread_t threads[N_THREADS];

	assert_int_equal(pthread_barrier_init(&writers_barrier, NULL,
					      N_THREADS), 0);
	for (int t = 0; t < N_THREADS; t++)
		assert_int_equal(pthread_create(&threads[t], NULL,
						writer_thread,
						(void *)(intptr_t)t), 0);
	for (int t = 0; t < N_THREADS; t++)
		assert_int_equal(pthread_join(threads[t], NULL), 0);
	pthread_barrier_destroy(&writers_barrier);
}

/* Parse every line of buf back; all N_THREADS * N_LINES must be there. */
static void check_writer_lines(char *buf, size_t len)
{
	int next[N_THREADS] = { 0 };
	int lines = 0;
	char *p = buf;

	assert_true(len > 0);
	assert_int_equal(buf[len - 1], '\n');
	while (p < buf + len) {
		char *nl = strchr(p, '\n');
		int id, i, end = -1;

		assert_non_null(nl);
		*nl = '\0';
		assert_int_equal(sscanf(p, IDENT ": info: thread %d line %d%n",
					&id, &i, &end), 2);
		assert_int_equal(end, nl - p);
		assert_in_range(id, 0, N_THREADS - 1);
		assert_int_equal(i, next[id]);
		next[id]++;
		lines++;
		p = nl + 1;
	}
	assert_int_equal(lines, N_THREADS * N_LINES);
	for (int t = 0; t < N_THREADS; t++)
		assert_int_equal(next[t], N_LINES);
}

static void test_concurrent_writers(void **state)
{
	struct sink *s = *state;
	size_t len;
	char *buf;

	run_writers();
	buf = sink_read(s, &len);
	check_writer_lines(buf, len);
	free(buf);
}

/* The same through a pipe, as when stderr is a pipe to a supervisor. */
struct pipe_reader {
	int fd;
	char *buf;
	size_t len, cap;
};

static void *pipe_reader_thread(void *opaque)
{
	struct pipe_reader *r = opaque;

	for (;;) {
		ssize_t n;

		if (r->cap - r->len < 4096) {
			size_t cap = r->cap * 2 + 4096;
			char *buf = realloc(r->buf, cap + 1);

			if (buf == NULL) {
				free(r->buf);
				r->buf = NULL;
				return NULL;
			}
			r->buf = buf;
			r->cap = cap;
		}
		n = read(r->fd, r->buf + r->len, r->cap - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		r->len += (size_t)n;
	}
	r->buf[r->len] = '\0';
	return NULL;
}

static void test_concurrent_writers_pipe(void **state)
{
	struct sink *s = *state;
	struct pipe_reader r = { 0 };
	pthread_t reader;
	int pipefd[2];

	assert_int_equal(pipe(pipefd), 0);
	r.fd = pipefd[0];
	assert_int_equal(pthread_create(&reader, NULL, pipe_reader_thread, &r),
			 0);
	log_set_sink(pipefd[1]);
	run_writers();
	log_set_sink(s->fd);
	/* EOF for the reader once the last writer is done. */
	close(pipefd[1]);
	assert_int_equal(pthread_join(reader, NULL), 0);
	close(pipefd[0]);

	assert_non_null(r.buf);
	check_writer_lines(r.buf, r.len);
	free(r.buf);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, sink_setup, sink_teardown)
	const struct CMUnitTest tests[] = {
		T(test_level_filter),
		T(test_line_format),
		T(test_default_sink_is_stderr),
		T(test_parse_level_valid),
		T(test_parse_level_invalid),
		T(test_level_name),
		T(test_truncation),
		T(test_errno_preserved),
		T(test_concurrent_writers),
		T(test_concurrent_writers_pipe),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for fuse/pivot.c: the durable pivots file (round trips of
 * awkward names, every kind of damage refused with the line named in the
 * log, failed records that change nothing, concurrent readers).
 *
 * Each test makes its own directory under /tmp with mkdtemp and removes it.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "log.h"
#include "pivot.h"
#include "test-util.h"

struct fixture {
	char top[256];           /* the mkdtemp directory, canonical */
	int top_fd;              /* O_RDONLY of top: IMAGE_DIR for pivots */
	int log_fd;              /* memfd that receives log lines */
};

/* ---- helpers ------------------------------------------------------------- */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL ||
	    test_tmpdir_make("test-pivot", f->top, sizeof(f->top)) < 0)
		return -1;
	f->top_fd = open(f->top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	f->log_fd = memfd_create("test-pivot-log", MFD_CLOEXEC);
	if (f->top_fd < 0 || f->log_fd < 0)
		return -1;
	log_init("test-pivot", LOG_LEVEL_INFO, false);
	log_set_sink(f->log_fd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	log_set_sink(-1);
	close(f->log_fd);
	close(f->top_fd);
	test_tmpdir_remove(f->top);
	free(f);
	return 0;
}

static const char *at_top(const struct fixture *f, const char *rel)
{
	return test_tmpdir_at(f->top, rel);
}

static bool exists(const struct fixture *f, const char *rel)
{
	struct stat st;

	return fstatat(f->top_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* ---- durable pivots ------------------------------------------------------ */

/* The whole of top/rel, NUL-terminated; caller frees. */
static char *read_all(const struct fixture *f, const char *rel)
{
	FILE *fp = fopen(at_top(f, rel), "r");
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(fp);
	assert_non_null(buf);
	n = fread(buf, 1, 65535, fp);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static void write_all(const struct fixture *f, const char *rel,
		      const char *data, size_t len)
{
	FILE *fp = fopen(at_top(f, rel), "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* What was logged since the last call, NUL-terminated; caller frees. */
static char *take_log(const struct fixture *f)
{
	off_t len = lseek(f->log_fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)len + 1);

	assert_non_null(buf);
	assert_int_equal(pread(f->log_fd, buf, (size_t)len, 0), len);
	assert_int_equal(ftruncate(f->log_fd, 0), 0);
	assert_int_equal(lseek(f->log_fd, 0, SEEK_SET), 0);
	return buf;
}

static void assert_target(struct vdfs_pivots *p, const char *name,
			  const char *want)
{
	char *t = NULL;

	assert_int_equal(vdfs_pivots_get(p, name, &t), 0);
	assert_string_equal(t, want);
	free(t);
}

static void test_pivots_missing(void **state)
{
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL;
	char *t = NULL;

	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	assert_int_equal(vdfs_pivots_count(p), 0);
	assert_int_equal(vdfs_pivots_get(p, "a.img", &t), -ENOENT);
	assert_null(t);
	vdfs_pivots_free(p);

	/* .vdiskfs without pivots: still empty. */
	assert_int_equal(mkdir(at_top(f, ".vdiskfs"), 0700), 0);
	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	assert_int_equal(vdfs_pivots_count(p), 0);
	vdfs_pivots_free(p);
	vdfs_pivots_free(NULL);
}

static const struct {
	const char *name, *target;
} awkward[] = {
	{ "plain.img", "/mirrors/plain.img" },
	{ "tab\there.img", "/mirrors/tab\tthere.img" },
	{ "new\nline.img", "/mirrors/new\nline\n" },
	{ "cr\r.img", "/mirrors/cr\r\n.img" },
	{ "100%.img", "/mirrors/100%25%.img" },
	{ "%41", "/%" },
	{ "with spaces .img", "/mirrors/a dir/with spaces .img" },
	{ "d\xc3\xa9j\xc3\xa0-\xd0\xb4\xd0\xb8\xd1\x81\xd0\xba.img",
	  "/mirrors/\xe2\x9c\x93/\xc3\xa9.img" },
	{ "\x01\x1f\x7f ctl", "/\x01/\x1f\x7f" },
	{ "#not-a-comment", "/x" },
	{ ".hidden", "/y" },
};
#define N_AWKWARD (sizeof(awkward) / sizeof(awkward[0]))

static void test_pivots_round_trip(void **state)
{
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL, *q = NULL;
	struct stat st;
	char *data;

	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	for (size_t i = 0; i < N_AWKWARD; i++)
		assert_int_equal(vdfs_pivots_record(p, f->top_fd,
						    awkward[i].name,
						    awkward[i].target), 0);
	assert_int_equal(vdfs_pivots_count(p), N_AWKWARD);

	assert_int_equal(stat(at_top(f, ".vdiskfs"), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0077, 0);
	assert_false(exists(f, ".vdiskfs/pivots.tmp"));

	/* The escapes, as written on disk. */
	data = read_all(f, ".vdiskfs/pivots");
	assert_non_null(strstr(data, "# vdiskfs pivots v1\nplain.img\t"
				     "/mirrors/plain.img\n"));
	assert_non_null(strstr(data, "\ntab%09here.img\t/mirrors/tab%09there"));
	assert_non_null(strstr(data, "\nnew%0Aline.img\t/mirrors/new%0Aline%0A\n"));
	assert_non_null(strstr(data, "\n100%25.img\t/mirrors/100%2525%25.img\n"));
	assert_non_null(strstr(data, "\n%2541\t/%25\n"));
	assert_non_null(strstr(data, "\n%01%1F\x7f ctl\t/%01/%1F\x7f\n"));
	free(data);

	/* Everything comes back from the file alone. */
	assert_int_equal(vdfs_pivots_load(f->top_fd, &q), 0);
	assert_int_equal(vdfs_pivots_count(q), N_AWKWARD);
	for (size_t i = 0; i < N_AWKWARD; i++) {
		assert_target(p, awkward[i].name, awkward[i].target);
		assert_target(q, awkward[i].name, awkward[i].target);
	}
	vdfs_pivots_free(q);
	vdfs_pivots_free(p);
}

static void test_pivots_replace(void **state)
{
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL;
	char *data;

	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a.img", "/m/1"), 0);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "b.img", "/m/b"), 0);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a.img", "/m/2"), 0);
	assert_int_equal(vdfs_pivots_count(p), 2);
	assert_target(p, "a.img", "/m/2");
	vdfs_pivots_free(p);

	data = read_all(f, ".vdiskfs/pivots");
	assert_string_equal(data, "# vdiskfs pivots v1\n"
				  "a.img\t/m/2\nb.img\t/m/b\n");
	free(data);
	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	assert_int_equal(vdfs_pivots_count(p), 2);
	assert_target(p, "a.img", "/m/2");
	assert_target(p, "b.img", "/m/b");
	vdfs_pivots_free(p);
	assert_false(exists(f, ".vdiskfs/pivots.tmp"));
}

static void test_pivots_malformed(void **state)
{
	static const struct {
		const char *data;
		size_t len;      /* 0: strlen */
		unsigned line;
	} cases[] = {
		{ "", 0, 1 },
		{ "# vdiskfs pivots v2\n", 0, 1 },
		{ "# vdiskfs pivots v1", 0, 1 },
		{ "# vdiskfs pivots v1 \n", 0, 1 },
		{ "a\t/x\n", 0, 1 },
		{ "# vdiskfs pivots v1\na /x\n", 0, 2 },
		{ "# vdiskfs pivots v1\n\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\t/x\nb\t/y", 0, 3 },
		{ "# vdiskfs pivots v1\na\t/x\t\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\t/x\r\n", 0, 2 },
		{ "# vdiskfs pivots v1\na%G1\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\t/x%4\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\t/x%\n", 0, 2 },
		{ "# vdiskfs pivots v1\na%00b\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\x01\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\0b\t/x\n", 20 + 7, 2 },
		{ "# vdiskfs pivots v1\na\tx\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\t\n", 0, 2 },
		{ "# vdiskfs pivots v1\n\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\n.\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\n..\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\na/b\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\na%2Fb\t/x\n", 0, 2 },
		{ "# vdiskfs pivots v1\na\t/x\nb\t/y\na\t/z\n", 0, 4 },
	};
	struct fixture *f = *state;
	struct vdfs_pivots *p;
	char want[64], *log;

	assert_int_equal(mkdir(at_top(f, ".vdiskfs"), 0700), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len
					  : strlen(cases[i].data);

		write_all(f, ".vdiskfs/pivots", cases[i].data, len);
		p = NULL;
		if (vdfs_pivots_load(f->top_fd, &p) != -EINVAL)
			print_error("case %zu was accepted\n", i);
		assert_null(p);
		/* One error line naming the file and the line. */
		log = take_log(f);
		snprintf(want, sizeof(want), "/.vdiskfs/pivots, line %u: ",
			 cases[i].line);
		if (strstr(log, want) == NULL || strstr(log, f->top) == NULL)
			print_error("case %zu logged: %s", i, log);
		assert_non_null(strstr(log, "error: "));
		assert_non_null(strstr(log, want));
		assert_non_null(strstr(log, f->top));
		free(log);
	}

	/* Lower-case escapes are read too; a last line with LF is fine. */
	write_all(f, ".vdiskfs/pivots", "# vdiskfs pivots v1\na%0ab\t/%7e\n",
		  strlen("# vdiskfs pivots v1\na%0ab\t/%7e\n"));
	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	assert_target(p, "a\nb", "/~");
	vdfs_pivots_free(p);
}

static void test_pivots_load_errors(void **state)
{
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL;
	char *log;

	/* pivots is a directory: -EINVAL. */
	assert_int_equal(mkdir(at_top(f, ".vdiskfs"), 0700), 0);
	assert_int_equal(mkdir(at_top(f, ".vdiskfs/pivots"), 0700), 0);
	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), -EINVAL);
	log = take_log(f);
	assert_non_null(strstr(log, "pivots: not a regular file"));
	free(log);

	/* .vdiskfs is a file: the error of the system. */
	assert_int_equal(rmdir(at_top(f, ".vdiskfs/pivots")), 0);
	assert_int_equal(rmdir(at_top(f, ".vdiskfs")), 0);
	write_all(f, ".vdiskfs", "x", 1);
	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), -ENOTDIR);
	log = take_log(f);
	assert_non_null(strstr(log, "/.vdiskfs/pivots: "));
	free(log);
	assert_null(p);
}

static void test_pivots_record_invalid(void **state)
{
	static const char *bad_names[] = {
		"", ".", "..", "a/b", "/", "a/",
	};
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL;
	char name[NAME_MAX + 2];

	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
		assert_int_equal(vdfs_pivots_record(p, f->top_fd, bad_names[i],
						    "/m/x"), -EINVAL);
	memset(name, 'n', NAME_MAX + 1);
	name[NAME_MAX + 1] = '\0';
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, name, "/m/x"),
			 -EINVAL);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a", "m/x"), -EINVAL);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a", ""), -EINVAL);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, NULL, "/m"), -EINVAL);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a", NULL), -EINVAL);
	assert_int_equal(vdfs_pivots_count(p), 0);
	assert_false(exists(f, ".vdiskfs"));

	/* NAME_MAX itself is fine. */
	name[NAME_MAX] = '\0';
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, name, "/m/x"), 0);
	vdfs_pivots_free(p);
}

/* .vdiskfs is a file: nothing can be written, nothing changes. */
static void test_pivots_record_fails(void **state)
{
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL, *q = NULL;
	char *t = NULL, *data;

	write_all(f, ".vdiskfs", "not a dir", 9);
	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), -ENOTDIR);
	free(take_log(f));
	assert_int_equal(remove(at_top(f, ".vdiskfs")), 0);

	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a.img", "/m/1"), 0);
	assert_int_equal(rename(at_top(f, ".vdiskfs"),
				at_top(f, ".vdiskfs.saved")), 0);
	write_all(f, ".vdiskfs", "not a dir", 9);

	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a.img", "/m/2"),
			 -ENOTDIR);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "b.img", "/m/b"),
			 -ENOTDIR);
	assert_int_equal(vdfs_pivots_count(p), 1);
	assert_target(p, "a.img", "/m/1");
	assert_int_equal(vdfs_pivots_get(p, "b.img", &t), -ENOENT);
	data = read_all(f, ".vdiskfs");
	assert_string_equal(data, "not a dir");
	free(data);

	/* The saved file still says what the map says. */
	assert_int_equal(remove(at_top(f, ".vdiskfs")), 0);
	assert_int_equal(rename(at_top(f, ".vdiskfs.saved"),
				at_top(f, ".vdiskfs")), 0);
	assert_int_equal(vdfs_pivots_load(f->top_fd, &q), 0);
	assert_int_equal(vdfs_pivots_count(q), 1);
	assert_target(q, "a.img", "/m/1");
	vdfs_pivots_free(q);
	vdfs_pivots_free(p);
	assert_false(exists(f, ".vdiskfs/pivots.tmp"));
}

/* The rename fails after pivots.tmp was written: the tmp file goes too. */
static void test_pivots_record_fails_late(void **state)
{
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL;
	char *t = NULL;

	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	assert_int_equal(mkdir(at_top(f, ".vdiskfs"), 0700), 0);
	assert_int_equal(mkdir(at_top(f, ".vdiskfs/pivots"), 0700), 0);
	assert_int_equal(vdfs_pivots_record(p, f->top_fd, "a.img", "/m/1"),
			 -EISDIR);
	assert_int_equal(vdfs_pivots_count(p), 0);
	assert_int_equal(vdfs_pivots_get(p, "a.img", &t), -ENOENT);
	assert_false(exists(f, ".vdiskfs/pivots.tmp"));
	vdfs_pivots_free(p);
}

/* ---- concurrency --------------------------------------------------------- */

#define N_READERS 4
#define N_RECORDS 40

struct reader {
	struct vdfs_pivots *p;
	atomic_bool *stop;
	atomic_uint *errors;
};

/*
 * Readers see each pivot either absent or with its final target, and the
 * count never goes down, while the main thread records.
 */
static void *reader_fn(void *opaque)
{
	struct reader *r = opaque;
	unsigned last = 0;

	while (!atomic_load(r->stop)) {
		for (unsigned i = 0; i < N_RECORDS; i++) {
			char name[32], want[32], *t = NULL;
			int ret;

			snprintf(name, sizeof(name), "img%u", i);
			snprintf(want, sizeof(want), "/m/%u", i);
			ret = vdfs_pivots_get(r->p, name, &t);
			if ((ret != 0 && ret != -ENOENT) ||
			    (ret == 0 && strcmp(t, want) != 0))
				atomic_fetch_add(r->errors, 1);
			free(t);
		}
		if (vdfs_pivots_count(r->p) < last)
			atomic_fetch_add(r->errors, 1);
		last = vdfs_pivots_count(r->p);
	}
	return NULL;
}

static void test_pivots_threads(void **state)
{
	struct fixture *f = *state;
	struct vdfs_pivots *p = NULL;
	pthread_t th[N_READERS];
	atomic_bool stop = false;
	atomic_uint errors = 0;
	struct reader r;

	assert_int_equal(vdfs_pivots_load(f->top_fd, &p), 0);
	r = (struct reader){ .p = p, .stop = &stop, .errors = &errors };
	for (int i = 0; i < N_READERS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader_fn, &r), 0);
	for (unsigned i = 0; i < N_RECORDS; i++) {
		char name[32], target[32];

		snprintf(name, sizeof(name), "img%u", i);
		snprintf(target, sizeof(target), "/m/%u", i);
		assert_int_equal(vdfs_pivots_record(p, f->top_fd, name, target),
				 0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < N_READERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&errors), 0);
	assert_int_equal(vdfs_pivots_count(p), N_RECORDS);
	vdfs_pivots_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_pivots_missing),
		T(test_pivots_round_trip),
		T(test_pivots_replace),
		T(test_pivots_malformed),
		T(test_pivots_load_errors),
		T(test_pivots_record_invalid),
		T(test_pivots_record_fails),
		T(test_pivots_record_fails_late),
		T(test_pivots_threads),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

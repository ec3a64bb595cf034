/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for fuse/target.c: mirror target resolution (every way out of
 * mirror_dir is refused with its exact error, every way in works), the
 * removal of a target that a failed start created (only while the name
 * still is that file), and the reopening of a recorded pivot target
 * (beneath mirror_dir, or as recorded when it lies elsewhere).
 *
 * Each test makes its own directory under /tmp with mkdtemp and removes it.
 * The ownership checks need root (CI runs as root); without it they skip,
 * and targets are made for the daemon's own uid.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/openat2.h>

#include <cmocka.h>

#include "target.h"
#include "test-util.h"

#define MIB (UINT64_C(1) << 20)
#define USER_GID 4343
#define OTHER_UID 65534

struct fixture {
	char top[256];           /* the mkdtemp directory, canonical */
	char mirror[512];        /* top/mirror: the mirror_dir */
	int mirror_fd;           /* O_PATH of mirror */
	int top_fd;              /* O_PATH of top */
};

/* ---- helpers ------------------------------------------------------------- */

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL ||
	    test_tmpdir_make("test-target", f->top, sizeof(f->top)) < 0)
		return -1;
	snprintf(f->mirror, sizeof(f->mirror), "%s/mirror", f->top);
	if (mkdir(f->mirror, 0755) < 0)
		return -1;
	f->mirror_fd = open(f->mirror, O_PATH | O_DIRECTORY | O_CLOEXEC);
	f->top_fd = open(f->top, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (f->mirror_fd < 0 || f->top_fd < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	alarm(0);   /* a failed test may leave one armed */
	close(f->top_fd);
	close(f->mirror_fd);
	test_tmpdir_remove(f->top);
	free(f);
	return 0;
}

/*
 * The uid of the caller a target is for: as root, another user's, so that
 * the chown shows; otherwise our own, the only one we may give a file.
 */
static uid_t user_uid(void)
{
	return geteuid() == 0 ? 4242 : geteuid();
}

static const char *at_top(const struct fixture *f, const char *rel)
{
	return test_tmpdir_at(f->top, rel);
}

/* Create top/rel with size bytes, owned by uid.  Fails the test if not. */
static void make_file(const struct fixture *f, const char *rel, off_t size,
		      uid_t uid)
{
	int fd = open(at_top(f, rel), O_RDWR | O_CREAT | O_EXCL, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	if (geteuid() == 0)
		assert_int_equal(fchown(fd, uid, USER_GID), 0);
	close(fd);
}

static bool exists(const struct fixture *f, const char *rel)
{
	struct stat st;

	return fstatat(f->top_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* vdfs_target_open on top/rel; closes the fd and frees the path. */
static int try_open(const struct fixture *f, const char *rel, bool existing,
		    uid_t uid, uint64_t min_size)
{
	char *path = NULL;
	int fd = -1, ret;

	ret = vdfs_target_open(f->mirror_fd, f->mirror, at_top(f, rel),
			       existing, uid, USER_GID, min_size, &fd, &path);
	if (ret == 0) {
		assert_true(fd >= 0);
		assert_non_null(path);
		close(fd);
		free(path);
	} else {
		assert_int_equal(fd, -1);
		assert_null(path);
	}
	return ret;
}

/* ---- opening a target ------------------------------------------------- */

/*
 * openat2 is missing on Linux < 5.6 and under valgrind 3.19, which does not
 * know syscall 437 (make check-valgrind).  vdfs_target_open,
 * vdfs_target_reopen (under mirror_dir) and vdfs_target_unlink must then
 * refuse with -ENOSYS and never fall back to a plain path: check exactly
 * that and tell the caller to end the test.  Tests whose cases are all
 * refused before openat2 (lexical checks) run in full either way.
 */
static bool have_openat2(const struct fixture *f)
{
	struct open_how how = { .flags = O_PATH, .resolve = RESOLVE_BENEATH };
	long fd = syscall(SYS_openat2, f->mirror_fd, ".", &how, sizeof(how));
	int yfd;

	if (fd >= 0) {
		close((int)fd);
		return true;
	}
	assert_int_equal(errno, ENOSYS);
	assert_int_equal(try_open(f, "mirror/x.img", false, user_uid(), 0),
			 -ENOSYS);
	assert_false(exists(f, "mirror/x.img"));
	/* Nor is a target under mirror_dir reopened or removed. */
	make_file(f, "mirror/y.img", 0, user_uid());
	yfd = open(at_top(f, "mirror/y.img"), O_RDONLY | O_CLOEXEC);
	assert_true(yfd >= 0);
	assert_int_equal(vdfs_target_reopen(f->mirror_fd, f->mirror,
					    at_top(f, "mirror/y.img")),
			 -ENOSYS);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirror/y.img"), yfd),
			 -ENOSYS);
	close(yfd);
	assert_true(exists(f, "mirror/y.img"));
	print_message("no openat2: checked only that targets are refused\n");
	return false;
}

static void test_target_new(void **state)
{
	struct fixture *f = *state;
	char *path = NULL;
	struct stat st;
	int fd = -1, fl;

	if (!have_openat2(f))
		return;
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror,
					  at_top(f, "mirror/new.img"), false,
					  user_uid(), USER_GID, MIB, &fd, &path),
			 0);
	assert_string_equal(path, at_top(f, "mirror/new.img"));
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, MIB);
	assert_int_equal(st.st_mode & 07777, 0600);
	if (geteuid() == 0) {
		assert_int_equal(st.st_uid, user_uid());
		assert_int_equal(st.st_gid, USER_GID);
	}
	fl = fcntl(fd, F_GETFL);
	assert_int_equal(fl & O_ACCMODE, O_RDWR);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(fd);
	free(path);

	/* Zero bytes is a valid size too. */
	assert_int_equal(try_open(f, "mirror/empty.img", false, user_uid(), 0), 0);
}

static void test_target_new_exists(void **state)
{
	struct fixture *f = *state;

	if (!have_openat2(f))
		return;
	make_file(f, "mirror/old.img", 4096, user_uid());
	assert_int_equal(try_open(f, "mirror/old.img", false, user_uid(), 0),
			 -EEXIST);
	/* A dangling symlink is not followed to create its target. */
	assert_int_equal(symlink("../victim", at_top(f, "mirror/dangling")), 0);
	assert_int_equal(try_open(f, "mirror/dangling", false, user_uid(), 0),
			 -EEXIST);
	assert_false(exists(f, "victim"));
}

static void test_target_existing(void **state)
{
	struct fixture *f = *state;
	char *path = NULL;
	struct stat st;
	int fd = -1;

	if (!have_openat2(f))
		return;
	make_file(f, "mirror/disk.img", 8192, user_uid());
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror,
					  at_top(f, "mirror/disk.img"), true,
					  user_uid(), USER_GID, 4096, &fd, &path),
			 0);
	assert_string_equal(path, at_top(f, "mirror/disk.img"));
	/* Taken as it is, and O_NONBLOCK is gone again. */
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 8192);
	assert_int_equal(fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_RDWR);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(fd);
	free(path);

	/* Exactly min_size is enough; one byte less is not. */
	assert_int_equal(try_open(f, "mirror/disk.img", true, user_uid(), 8192), 0);
	assert_int_equal(try_open(f, "mirror/disk.img", true, user_uid(), 8193),
			 -EINVAL);
	assert_int_equal(try_open(f, "mirror/none.img", true, user_uid(), 0),
			 -ENOENT);
}

static void test_target_not_regular(void **state)
{
	struct fixture *f = *state;

	if (!have_openat2(f))
		return;
	/* A FIFO must neither block nor be taken; alarm() catches a hang. */
	assert_int_equal(mkfifo(at_top(f, "mirror/fifo"), 0600), 0);
	alarm(10);
	assert_int_equal(try_open(f, "mirror/fifo", true, 0, 0), -EINVAL);
	alarm(0);
	assert_int_equal(try_open(f, "mirror/fifo", false, 0, 0), -EEXIST);

	assert_int_equal(mkdir(at_top(f, "mirror/dir"), 0755), 0);
	assert_int_equal(try_open(f, "mirror/dir", true, 0, 0), -EINVAL);
	assert_int_equal(try_open(f, "mirror/dir", false, 0, 0), -EEXIST);

	/* A symlink as the last component, even to a good file inside. */
	make_file(f, "mirror/good.img", 4096, user_uid());
	assert_int_equal(symlink("good.img", at_top(f, "mirror/alias")), 0);
	assert_int_equal(try_open(f, "mirror/alias", true, user_uid(), 0),
			 -EINVAL);
}

static void test_target_symlink_inside(void **state)
{
	struct fixture *f = *state;
	char *path = NULL;
	int fd = -1;

	if (!have_openat2(f))
		return;
	/* mirror/link -> real: a relative link that stays inside works. */
	assert_int_equal(mkdir(at_top(f, "mirror/real"), 0755), 0);
	assert_int_equal(symlink("real", at_top(f, "mirror/link")), 0);
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror,
					  at_top(f, "mirror/link/t.img"), false,
					  user_uid(), USER_GID, 4096, &fd, &path),
			 0);
	/* The path stays as the caller named it (vdiskctl resolves links). */
	assert_string_equal(path, at_top(f, "mirror/link/t.img"));
	assert_true(exists(f, "mirror/real/t.img"));
	close(fd);
	free(path);
	assert_int_equal(try_open(f, "mirror/link/t.img", true, user_uid(), 4096),
			 0);

	/* A link that climbs out, even to come straight back, is refused. */
	assert_int_equal(symlink("../mirror/real", at_top(f, "mirror/loop")), 0);
	assert_int_equal(try_open(f, "mirror/loop/t.img", true, user_uid(), 0),
			 -EPERM);
}

static void test_target_symlink_outside(void **state)
{
	struct fixture *f = *state;
	char abs_real[PATH_MAX];   /* > mirror + "/real" */

	if (!have_openat2(f))
		return;
	assert_int_equal(mkdir(at_top(f, "outside"), 0755), 0);
	make_file(f, "outside/secret", 4096, user_uid());

	/* mirror/out -> ../outside: out through a directory component. */
	assert_int_equal(symlink("../outside", at_top(f, "mirror/out")), 0);
	assert_int_equal(try_open(f, "mirror/out/x.img", false, user_uid(), 0),
			 -EPERM);
	assert_false(exists(f, "outside/x.img"));
	assert_int_equal(try_open(f, "mirror/out/secret", true, user_uid(), 0),
			 -EPERM);

	/* An absolute link is refused even when it points inside. */
	assert_int_equal(mkdir(at_top(f, "mirror/real"), 0755), 0);
	snprintf(abs_real, sizeof(abs_real), "%s/real", f->mirror);
	assert_int_equal(symlink(abs_real, at_top(f, "mirror/abs")), 0);
	assert_int_equal(try_open(f, "mirror/abs/x.img", false, user_uid(), 0),
			 -EPERM);
	assert_false(exists(f, "mirror/real/x.img"));

	/* A last component pointing out is never followed. */
	assert_int_equal(symlink("../outside/secret",
				 at_top(f, "mirror/fin")), 0);
	assert_int_equal(try_open(f, "mirror/fin", true, user_uid(), 0), -EINVAL);
	assert_int_equal(try_open(f, "mirror/fin", false, user_uid(), MIB),
			 -EEXIST);
	assert_true(exists(f, "outside/secret"));
}

static void test_target_dotdot(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(mkdir(at_top(f, "outside"), 0755), 0);
	assert_int_equal(mkdir(at_top(f, "mirror/sub"), 0755), 0);
	/* mirror_dir + "/../x": lexically refused before openat2. */
	assert_int_equal(try_open(f, "mirror/../outside/x", false, user_uid(), 0),
			 -EPERM);
	/* Even a ".." that would stay inside: canonical paths have none. */
	assert_int_equal(try_open(f, "mirror/sub/../x", false, user_uid(), 0),
			 -EPERM);
	assert_int_equal(try_open(f, "mirror/..", false, user_uid(), 0), -EPERM);
	assert_false(exists(f, "outside/x"));
	assert_false(exists(f, "mirror/x"));
}

static void test_target_outside(void **state)
{
	struct fixture *f = *state;
	char *path = NULL;
	int fd = -1;

	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror,
					  "/etc/passwd", true, 0, 0, 0,
					  &fd, &path), -EPERM);
	assert_int_equal(mkdir(at_top(f, "outside"), 0755), 0);
	assert_int_equal(try_open(f, "outside/x", false, user_uid(), 0), -EPERM);
	assert_int_equal(try_open(f, "x", false, user_uid(), 0), -EPERM);
	assert_false(exists(f, "outside/x"));

	/* The prefix trick: top/mirrorX is not under top/mirror. */
	assert_int_equal(mkdir(at_top(f, "mirrorX"), 0755), 0);
	assert_int_equal(try_open(f, "mirrorX/a", false, user_uid(), 0), -EPERM);
	assert_false(exists(f, "mirrorX/a"));

	/* No mirror_dir configured. */
	assert_int_equal(vdfs_target_open(-1, f->mirror,
					  at_top(f, "mirror/a"), false,
					  user_uid(), USER_GID, 0, &fd, &path),
			 -EPERM);
	assert_false(exists(f, "mirror/a"));
	assert_int_equal(fd, -1);
	assert_null(path);
}

static void test_target_malformed(void **state)
{
	struct fixture *f = *state;
	char *path = NULL, *longp;
	int fd = -1;

	/* Relative paths are a caller bug, not an escape: -EINVAL. */
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror, "x.img",
					  false, 0, 0, 0, &fd, &path), -EINVAL);
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror,
					  "mirror/x.img", false, 0, 0, 0,
					  &fd, &path), -EINVAL);
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror, "",
					  false, 0, 0, 0, &fd, &path), -EINVAL);
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror, NULL,
					  false, 0, 0, 0, &fd, &path), -EINVAL);
	/* mirror_dir itself, and names of directories. */
	assert_int_equal(try_open(f, "mirror", false, 0, 0), -EINVAL);
	assert_int_equal(try_open(f, "mirror/", false, 0, 0), -EINVAL);
	assert_int_equal(try_open(f, "mirror/.", false, 0, 0), -EINVAL);
	assert_int_equal(try_open(f, "mirror/x/", false, 0, 0), -EINVAL);
	assert_int_equal(try_open(f, "mirror/x/.", false, 0, 0), -EINVAL);
	assert_false(exists(f, "mirror/x"));
	/* "Leave unchanged" uids are refused. */
	assert_int_equal(try_open(f, "mirror/x", false, (uid_t)-1, 0), -EINVAL);

	/* PATH_MAX bytes without the NUL is one too many. */
	longp = malloc(PATH_MAX + 1);
	assert_non_null(longp);
	snprintf(longp, PATH_MAX + 1, "%s/", f->mirror);
	memset(longp + strlen(longp), 'a', PATH_MAX - strlen(longp));
	longp[PATH_MAX] = '\0';
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror, longp,
					  false, 0, 0, 0, &fd, &path), -EINVAL);
	free(longp);
	assert_int_equal(fd, -1);
	assert_null(path);
}

static void test_target_normalised(void **state)
{
	struct fixture *f = *state;
	char *path = NULL, want[PATH_MAX], mirror_slash[PATH_MAX];
	int fd = -1;

	if (!have_openat2(f))
		return;
	assert_int_equal(mkdir(at_top(f, "mirror/sub"), 0755), 0);
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror,
					  at_top(f, "mirror//sub/./t.img"),
					  false, user_uid(), USER_GID, 0,
					  &fd, &path), 0);
	snprintf(want, sizeof(want), "%s/sub/t.img", f->mirror);
	assert_string_equal(path, want);
	close(fd);
	free(path);

	/* A trailing slash on mirror_dir changes nothing. */
	snprintf(mirror_slash, sizeof(mirror_slash), "%s/", f->mirror);
	assert_int_equal(vdfs_target_open(f->mirror_fd, mirror_slash,
					  at_top(f, "mirror/sub/t.img"), true,
					  user_uid(), USER_GID, 0, &fd, &path), 0);
	assert_string_equal(path, want);
	close(fd);
	free(path);
}

static void test_target_missing_parent(void **state)
{
	struct fixture *f = *state;

	if (!have_openat2(f))
		return;
	assert_int_equal(try_open(f, "mirror/nodir/x", false, user_uid(), 0),
			 -ENOENT);
	make_file(f, "mirror/file", 0, user_uid());
	assert_int_equal(try_open(f, "mirror/file/x", false, user_uid(), 0),
			 -ENOTDIR);
}

/* Too large: refused up front, or removed again when ftruncate fails. */
static void test_target_cleanup_on_failure(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, small;

	assert_int_equal(try_open(f, "mirror/huge", false, user_uid(),
				  (uint64_t)INT64_MAX + 1), -EFBIG);
	assert_false(exists(f, "mirror/huge"));

	/* RLIMIT_FSIZE makes ftruncate fail after the file was created. */
	if (!have_openat2(f))
		return;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 4096;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	assert_int_equal(try_open(f, "mirror/big", false, user_uid(), MIB),
			 -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_false(exists(f, "mirror/big"));
}

static void test_target_other_owner(void **state)
{
	struct fixture *f = *state;

	if (!have_openat2(f))
		return;
	if (geteuid() != 0) {
		print_message("not root: cannot make a file of another user\n");
		skip();
	}
	make_file(f, "mirror/theirs.img", 4096, OTHER_UID);
	assert_int_equal(try_open(f, "mirror/theirs.img", true, user_uid(), 0),
			 -EPERM);
	assert_int_equal(try_open(f, "mirror/theirs.img", true, OTHER_UID, 0),
			 0);
	assert_int_equal(try_open(f, "mirror/theirs.img", true, 0, 0), 0);
}


/* ---- removing a target that a failed start created ----------------------- */

/* A new target top/rel, as vdfs_target_open made it: its fd and *path. */
static int new_target(const struct fixture *f, const char *rel, char **path)
{
	int fd = -1;

	*path = NULL;
	assert_int_equal(vdfs_target_open(f->mirror_fd, f->mirror,
					  at_top(f, rel), false, user_uid(),
					  USER_GID, 4096, &fd, path), 0);
	return fd;
}

static void test_unlink(void **state)
{
	struct fixture *f = *state;
	char *path;
	int fd;

	if (!have_openat2(f))
		return;
	fd = new_target(f, "mirror/t.img", &path);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, path, fd),
			 0);
	assert_false(exists(f, "mirror/t.img"));
	/* Gone already: there is nothing to remove. */
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, path, fd),
			 -ENOENT);
	close(fd);
	free(path);

	/* Through a relative link that stays inside; the link stays. */
	assert_int_equal(mkdir(at_top(f, "mirror/real"), 0755), 0);
	assert_int_equal(symlink("real", at_top(f, "mirror/link")), 0);
	fd = new_target(f, "mirror//link/./t.img", &path);
	assert_string_equal(path, at_top(f, "mirror/link/t.img"));
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, path, fd),
			 0);
	assert_false(exists(f, "mirror/real/t.img"));
	assert_true(exists(f, "mirror/link"));
	close(fd);
	free(path);

	/* A path not normalised yet is normalised the same way. */
	fd = new_target(f, "mirror/real/u.img", &path);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirror//real/./u.img"),
					    fd), 0);
	assert_false(exists(f, "mirror/real/u.img"));
	close(fd);
	free(path);
}

/* Whoever can write to the directory swaps names: theirs must stay. */
static void test_unlink_replaced(void **state)
{
	struct fixture *f = *state;
	char *path;
	int fd;

	if (!have_openat2(f))
		return;
	fd = new_target(f, "mirror/t.img", &path);
	assert_int_equal(rename(at_top(f, "mirror/t.img"),
				at_top(f, "mirror/ours.img")), 0);

	/* Another file... */
	make_file(f, "mirror/t.img", 0, user_uid());
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, path, fd),
			 -ESTALE);
	assert_true(exists(f, "mirror/t.img"));
	assert_int_equal(remove(at_top(f, "mirror/t.img")), 0);

	/* ...a symlink to ours, which is not ours either... */
	assert_int_equal(symlink("ours.img", at_top(f, "mirror/t.img")), 0);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, path, fd),
			 -ESTALE);
	assert_true(exists(f, "mirror/t.img"));
	assert_int_equal(remove(at_top(f, "mirror/t.img")), 0);

	/* ...or a directory. */
	assert_int_equal(mkdir(at_top(f, "mirror/t.img"), 0755), 0);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, path, fd),
			 -ESTALE);
	assert_true(exists(f, "mirror/t.img"));
	assert_int_equal(rmdir(at_top(f, "mirror/t.img")), 0);
	assert_true(exists(f, "mirror/ours.img"));

	/* Ours back under its name: it goes. */
	assert_int_equal(rename(at_top(f, "mirror/ours.img"),
				at_top(f, "mirror/t.img")), 0);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, path, fd),
			 0);
	assert_false(exists(f, "mirror/t.img"));
	close(fd);
	free(path);
}

static void test_unlink_refused(void **state)
{
	struct fixture *f = *state;
	char abs_outside[PATH_MAX];
	int fd;

	/* The file behind fd outside mirror_dir: named, it is still refused. */
	assert_int_equal(mkdir(at_top(f, "outside"), 0755), 0);
	make_file(f, "outside/x", 0, user_uid());
	fd = open(at_top(f, "outside/x"), O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(vdfs_target_unlink(-1, f->mirror,
					    at_top(f, "mirror/x"), fd), -EPERM);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "outside/x"), fd),
			 -EPERM);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirror/../outside/x"),
					    fd), -EPERM);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirrorX/x"), fd),
			 -EPERM);

	/* Malformed: a caller bug. */
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror, NULL, fd),
			 -EINVAL);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, NULL,
					    at_top(f, "mirror/x"), fd),
			 -EINVAL);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirror/x"), -1),
			 -EINVAL);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    "mirror/x", fd), -EINVAL);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    f->mirror, fd), -EINVAL);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirror/x/"), fd),
			 -EINVAL);
	assert_true(exists(f, "outside/x"));

	if (!have_openat2(f))
		goto out_close;
	/* Out through a directory link, relative or absolute. */
	assert_int_equal(symlink("../outside", at_top(f, "mirror/out")), 0);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirror/out/x"), fd),
			 -EPERM);
	snprintf(abs_outside, sizeof(abs_outside), "%s/outside", f->top);
	assert_int_equal(symlink(abs_outside, at_top(f, "mirror/abs")), 0);
	assert_int_equal(vdfs_target_unlink(f->mirror_fd, f->mirror,
					    at_top(f, "mirror/abs/x"), fd),
			 -EPERM);
	assert_true(exists(f, "outside/x"));
out_close:
	close(fd);
}

/* ---- reopening a recorded target ----------------------------------------- */

/*
 * vdfs_target_reopen of top/rel, with mirror_fd as mirror_dir_fd.  Checks
 * what any fd it returns must be, then closes it.
 */
static int try_reopen(const struct fixture *f, int mirror_fd, const char *rel)
{
	struct stat st, want;
	int fd = vdfs_target_reopen(mirror_fd, f->mirror, at_top(f, rel));

	if (fd < 0)
		return fd;
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(stat(at_top(f, rel), &want), 0);
	assert_int_equal(st.st_ino, want.st_ino);
	assert_int_equal(fcntl(fd, F_GETFL) & O_PATH, O_PATH);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(fd);
	return 0;
}

static void test_reopen(void **state)
{
	struct fixture *f = *state;

	if (!have_openat2(f))
		return;
	make_file(f, "mirror/t.img", 4096, user_uid());
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/t.img"), 0);

	/* Through a relative link that stays inside, not normalised. */
	assert_int_equal(mkdir(at_top(f, "mirror/real"), 0755), 0);
	make_file(f, "mirror/real/u.img", 0, user_uid());
	assert_int_equal(symlink("real", at_top(f, "mirror/link")), 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror//link/./u.img"),
			 0);

	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/none.img"),
			 -ENOENT);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/nodir/u.img"),
			 -ENOENT);
}

static void test_reopen_escape(void **state)
{
	struct fixture *f = *state;
	char abs_real[PATH_MAX];

	if (!have_openat2(f))
		return;
	assert_int_equal(mkdir(at_top(f, "outside"), 0755), 0);
	make_file(f, "outside/secret", 4096, user_uid());
	assert_int_equal(mkdir(at_top(f, "mirror/real"), 0755), 0);
	make_file(f, "mirror/real/u.img", 0, user_uid());

	/* Under mirror_dir by name, outside by a link: refused. */
	assert_int_equal(symlink("../outside", at_top(f, "mirror/out")), 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/out/secret"),
			 -EPERM);
	/* Climbing out to come straight back, or absolute: refused too. */
	assert_int_equal(symlink("../mirror/real", at_top(f, "mirror/loop")),
			 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/loop/u.img"),
			 -EPERM);
	snprintf(abs_real, sizeof(abs_real), "%s/real", f->mirror);
	assert_int_equal(symlink(abs_real, at_top(f, "mirror/abs")), 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/abs/u.img"),
			 -EPERM);
	/* A last component pointing out is not followed. */
	assert_int_equal(symlink("../outside/secret", at_top(f, "mirror/fin")),
			 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/fin"), -EINVAL);
}

static void test_reopen_not_regular(void **state)
{
	struct fixture *f = *state;

	if (!have_openat2(f))
		return;
	make_file(f, "mirror/t.img", 0, user_uid());
	assert_int_equal(symlink("t.img", at_top(f, "mirror/alias")), 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/alias"), -EINVAL);
	assert_int_equal(mkdir(at_top(f, "mirror/dir"), 0755), 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/dir"), -EINVAL);
	/* O_PATH does not wait for a writer; alarm() catches a hang. */
	assert_int_equal(mkfifo(at_top(f, "mirror/fifo"), 0600), 0);
	alarm(10);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/fifo"), -EINVAL);
	alarm(0);
}

/* All refused before any open: runs without openat2 too. */
static void test_reopen_malformed(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(vdfs_target_reopen(f->mirror_fd, f->mirror, NULL),
			 -EINVAL);
	assert_int_equal(vdfs_target_reopen(f->mirror_fd, f->mirror,
					    "mirror/t.img"), -EINVAL);
	assert_int_equal(vdfs_target_reopen(f->mirror_fd, f->mirror, ""),
			 -EINVAL);
	assert_int_equal(vdfs_target_reopen(f->mirror_fd, f->mirror,
					    f->mirror), -EINVAL);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/"), -EINVAL);
	make_file(f, "mirror/t.img", 0, user_uid());
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/t.img/"),
			 -EINVAL);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/t.img/."),
			 -EINVAL);
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirror/x/../t.img"),
			 -EPERM);
	assert_int_equal(try_reopen(f, -1, "mirror/x/../t.img"), -EPERM);
}

/* Outside mirror_dir, or without one: the record is opened as it is. */
static void test_reopen_elsewhere(void **state)
{
	struct fixture *f = *state;
	int fd;

	assert_int_equal(mkdir(at_top(f, "outside"), 0755), 0);
	make_file(f, "outside/secret", 4096, user_uid());
	/* mirror_dir has changed since the pivot. */
	assert_int_equal(try_reopen(f, f->mirror_fd, "outside/secret"), 0);
	assert_int_equal(mkdir(at_top(f, "mirrorX"), 0755), 0);
	make_file(f, "mirrorX/a", 0, user_uid());
	assert_int_equal(try_reopen(f, f->mirror_fd, "mirrorX/a"), 0);
	/* No mirror_dir now: directory links are followed as recorded. */
	assert_int_equal(symlink("../outside", at_top(f, "mirror/out")), 0);
	assert_int_equal(try_reopen(f, -1, "mirror/out/secret"), 0);
	fd = vdfs_target_reopen(-1, NULL, at_top(f, "outside/secret"));
	assert_true(fd >= 0);
	close(fd);

	/* Still a regular file, and the last component is not followed. */
	assert_int_equal(symlink("secret", at_top(f, "outside/link")), 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "outside/link"), -EINVAL);
	assert_int_equal(try_reopen(f, -1, "mirror/out"), -EINVAL);
	assert_int_equal(mkdir(at_top(f, "outside/dir"), 0755), 0);
	assert_int_equal(try_reopen(f, f->mirror_fd, "outside/dir"), -EINVAL);
	assert_int_equal(mkfifo(at_top(f, "outside/fifo"), 0600), 0);
	alarm(10);
	assert_int_equal(try_reopen(f, f->mirror_fd, "outside/fifo"), -EINVAL);
	alarm(0);
	assert_int_equal(vdfs_target_reopen(f->mirror_fd, f->mirror,
					    "/dev/null"), -EINVAL);
	assert_int_equal(try_reopen(f, f->mirror_fd, "outside/none"), -ENOENT);
	assert_int_equal(try_reopen(f, f->mirror_fd, "outside/secret/"),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_target_new),
		T(test_target_new_exists),
		T(test_target_existing),
		T(test_target_not_regular),
		T(test_target_symlink_inside),
		T(test_target_symlink_outside),
		T(test_target_dotdot),
		T(test_target_outside),
		T(test_target_malformed),
		T(test_target_normalised),
		T(test_target_missing_parent),
		T(test_target_cleanup_on_failure),
		T(test_target_other_owner),
		T(test_unlink),
		T(test_unlink_replaced),
		T(test_unlink_refused),
		T(test_reopen),
		T(test_reopen_escape),
		T(test_reopen_not_regular),
		T(test_reopen_malformed),
		T(test_reopen_elsewhere),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Durable pivots (pivot.h): the map NAME -> TARGET of the images served
 * from their mirror target, and its state file.
 *
 * Design notes.  The map is a small array searched linearly: an image
 * directory holds few pivots.  write_lock serialises recorders across
 * their file I/O, so each file holds every earlier pivot; lock protects the
 * array and is held only for memory work, so readers never wait for an
 * fsync.  Only a recorder (holding write_lock) changes the array, so it
 * reads it without lock to build the file, and takes lock to grow it
 * (before any I/O: nothing may fail after the rename) and to install the
 * entry once the file is durable.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "log.h"
#include "pivot.h"

#define STATE_DIR ".vdiskfs"
#define STATE_FILE "pivots"
#define STATE_TMP "pivots.tmp"
#define STATE_HEADER "# vdiskfs pivots v1"

struct pivot {
	char *name;
	char *target;
};

/* Lock order: write_lock -> lock. */
struct vdfs_pivots {
	pthread_mutex_t write_lock;   /* held by vdfs_pivots_record */
	pthread_mutex_t lock;         /* protects the array (see the notes) */
	struct pivot *entries;        /* changed only under both locks */
	size_t n, cap;
};

static bool valid_name(const char *s)
{
	size_t n = strnlen(s, NAME_MAX + 1);

	return n > 0 && n <= NAME_MAX && strchr(s, '/') == NULL &&
	       strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static bool valid_target(const char *s)
{
	return s[0] == '/' && strnlen(s, PATH_MAX) < PATH_MAX;
}

/* Write s with '%' and control bytes as %XX, then the byte end. */
static void put_field(FILE *f, const char *s, char end)
{
	for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
		if (*u == '%' || *u < 0x20)
			fprintf(f, "%%%02X", *u);
		else
			putc(*u, f);
	}
	putc(end, f);
}

/*
 * The file for the map with name -> target added or replaced (name NULL:
 * the map as it is).  Returns 0 and *buf, *len (caller frees *buf), or
 * -ENOMEM.  Caller holds write_lock.
 */
static int serialise(const struct vdfs_pivots *p, const char *name,
		     const char *target, char **buf, size_t *len)
{
	bool replaced = false;
	FILE *f = open_memstream(buf, len);
	int failed;

	if (f == NULL)
		return -ENOMEM;
	fputs(STATE_HEADER "\n", f);
	for (size_t i = 0; i < p->n; i++) {
		const char *t = p->entries[i].target;

		if (name && strcmp(p->entries[i].name, name) == 0) {
			t = target;
			replaced = true;
		}
		put_field(f, p->entries[i].name, '\t');
		put_field(f, t, '\n');
	}
	if (name && !replaced) {
		put_field(f, name, '\t');
		put_field(f, target, '\n');
	}
	failed = ferror(f);
	if (fclose(f) != 0 || failed) {
		free(*buf);
		*buf = NULL;
		return -ENOMEM;   /* the only way a memory stream fails */
	}
	return 0;
}

/* Caller holds lock, or write_lock (only its holder changes the array). */
static struct pivot *find_locked(const struct vdfs_pivots *p,
				 const char *name)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->entries[i].name, name) == 0)
			return &p->entries[i];
	return NULL;
}

/* Make room for one more entry.  Caller holds lock. */
static int grow_locked(struct vdfs_pivots *p)
{
	size_t cap = p->cap ? 2 * p->cap : 8;
	struct pivot *e;

	if (p->n < p->cap)
		return 0;
	e = realloc(p->entries, cap * sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	p->entries = e;
	p->cap = cap;
	return 0;
}

/*
 * Replace STATE_FILE in state_fd by buf, durably.  Returns 0 or -errno;
 * *renamed tells whether STATE_FILE was replaced all the same (only the
 * last fsync failed).  STATE_TMP is gone in every case.
 */
static int write_state(int state_fd, const char *buf, size_t len,
		       bool *renamed)
{
	size_t off = 0;
	int fd, ret = 0;

	*renamed = false;
	/* A pivots.tmp left by a crash is simply overwritten. */
	fd = openat(state_fd, STATE_TMP,
		    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -errno;
	while (off < len && ret == 0) {
		ssize_t w = write(fd, buf + off, len - off);

		if (w >= 0)
			off += (size_t)w;
		else if (errno != EINTR)
			ret = -errno;
	}
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && renameat(state_fd, STATE_TMP, state_fd, STATE_FILE) < 0)
		ret = -errno;
	if (ret < 0) {
		unlinkat(state_fd, STATE_TMP, 0);
		return ret;
	}
	*renamed = true;
	return fsync(state_fd) < 0 ? -errno : 0;
}

/* Create (if missing) and open STATE_DIR.  Returns an fd or -errno. */
static int open_state_dir(int image_dir_fd, bool *created)
{
	int fd, ret;

	*created = false;
	if (mkdirat(image_dir_fd, STATE_DIR, 0700) == 0) {
		/* The new directory entry must be as durable as the file. */
		*created = true;
		if (fsync(image_dir_fd) < 0) {
			ret = -errno;
			goto out_rmdir;
		}
	} else if (errno != EEXIST) {
		return -errno;
	}
	fd = openat(image_dir_fd, STATE_DIR,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	ret = -errno;
out_rmdir:
	if (*created)
		unlinkat(image_dir_fd, STATE_DIR, AT_REMOVEDIR);
	return ret;
}

/*
 * Write the file for the map with name -> target; on failure put back what
 * was there (old: the map as it is).  Returns 0 or -errno.
 */
static int store(int image_dir_fd, const char *buf, size_t len,
		 const char *old, size_t old_len)
{
	bool created, renamed;
	int state_fd, ret, ret2 = 0;

	state_fd = open_state_dir(image_dir_fd, &created);
	if (state_fd < 0)
		return state_fd;
	ret = write_state(state_fd, buf, len, &renamed);
	if (ret < 0 && renamed) {
		/* Only the directory fsync failed: best effort to undo. */
		if (created)
			ret2 = unlinkat(state_fd, STATE_FILE, 0) < 0 ? -errno : 0;
		else
			ret2 = write_state(state_fd, old, old_len, &renamed);
	}
	close(state_fd);
	if (ret < 0 && created)
		unlinkat(image_dir_fd, STATE_DIR, AT_REMOVEDIR);
	if (ret2 < 0) {
		errno = -ret2;
		log_warn(STATE_DIR "/" STATE_FILE ": cannot undo a change: %m");
	}
	return ret;
}

int vdfs_pivots_record(struct vdfs_pivots *p, int image_dir_fd,
		       const char *name, const char *target)
{
	char *name_copy = NULL, *target_copy, *buf = NULL, *old = NULL;
	size_t len, old_len;
	struct pivot *e;
	int ret;

	if (p == NULL || name == NULL || target == NULL ||
	    !valid_name(name) || !valid_target(target))
		return -EINVAL;
	target_copy = strdup(target);
	if (target_copy == NULL)
		return -ENOMEM;

	pthread_mutex_lock(&p->write_lock);
	e = find_locked(p, name);
	if (e == NULL) {
		/* Allocate now: nothing may fail once the file is replaced. */
		name_copy = strdup(name);
		pthread_mutex_lock(&p->lock);
		ret = name_copy ? grow_locked(p) : -ENOMEM;
		pthread_mutex_unlock(&p->lock);
		if (ret < 0)
			goto out_unlock;
	}
	ret = serialise(p, NULL, NULL, &old, &old_len);
	if (ret == 0)
		ret = serialise(p, name, target, &buf, &len);
	if (ret == 0)
		ret = store(image_dir_fd, buf, len, old, old_len);
	if (ret < 0)
		goto out_unlock;

	/* Durable: now the map may show it. */
	pthread_mutex_lock(&p->lock);
	if (e) {
		free(e->target);
		e->target = target_copy;
	} else {
		p->entries[p->n].name = name_copy;
		p->entries[p->n].target = target_copy;
		p->n++;
		name_copy = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	target_copy = NULL;

out_unlock:
	pthread_mutex_unlock(&p->write_lock);
	free(old);
	free(buf);
	free(name_copy);
	free(target_copy);
	return ret;
}

int vdfs_pivots_get(struct vdfs_pivots *p, const char *name, char **target)
{
	const struct pivot *e;
	int ret = -ENOENT;

	pthread_mutex_lock(&p->lock);
	e = find_locked(p, name);
	if (e) {
		*target = strdup(e->target);
		ret = *target ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&p->lock);
	return ret;
}

unsigned vdfs_pivots_count(struct vdfs_pivots *p)
{
	unsigned n;

	pthread_mutex_lock(&p->lock);
	n = (unsigned)p->n;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void vdfs_pivots_free(struct vdfs_pivots *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->entries[i].name);
		free(p->entries[i].target);
	}
	free(p->entries);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->write_lock);
	free(p);
}

/* ---- loading ------------------------------------------------------------- */

static int hex_digit(char c)
{
	static const char digits[] = "0123456789abcdef";
	const char *d = c ? strchr(digits, tolower((unsigned char)c)) : NULL;

	return d ? (int)(d - digits) : -1;
}

/*
 * Decode the n bytes at s.  Returns 0 and *out (caller frees), or -EINVAL
 * with *why set, or -ENOMEM.
 */
static int decode_field(const char *s, size_t n, char **out, const char **why)
{
	char *buf = malloc(n + 1), *w = buf;

	if (buf == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int hi, lo;

		if (c < 0x20) {
			*why = c == '\t' ? "more than one TAB" :
			       "a control byte not written as %XX";
			goto out_invalid;
		}
		if (c != '%') {
			*w++ = (char)c;
			continue;
		}
		hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
		lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
		if (lo < 0 || (hi | lo) == 0) {
			*why = "a bad %XX escape";
			goto out_invalid;
		}
		*w++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*w = '\0';
	*out = buf;
	return 0;

out_invalid:
	free(buf);
	return -EINVAL;
}

/*
 * Parse one entry line (without its LF) into p, which is not shared yet.
 * Returns 0, or -EINVAL with *why set, or -ENOMEM.
 */
static int parse_entry(struct vdfs_pivots *p, const char *line, size_t len,
		       const char **why)
{
	const char *tab = memchr(line, '\t', len);
	char *name = NULL, *target = NULL;
	int ret;

	if (tab == NULL) {
		*why = "no TAB between name and target";
		return -EINVAL;
	}
	ret = decode_field(line, (size_t)(tab - line), &name, why);
	if (ret == 0)
		ret = decode_field(tab + 1, len - (size_t)(tab - line) - 1,
				   &target, why);
	if (ret < 0)
		goto out_free;
	ret = -EINVAL;
	if (!valid_name(name))
		*why = "invalid name (empty, \".\", \"..\", a '/' or too long)";
	else if (!valid_target(target))
		*why = "target is not an absolute path shorter than PATH_MAX";
	else if (find_locked(p, name))
		*why = "a name recorded twice";
	else
		ret = grow_locked(p);
	if (ret < 0)
		goto out_free;
	p->entries[p->n].name = name;
	p->entries[p->n].target = target;
	p->n++;
	return 0;

out_free:
	free(name);
	free(target);
	return ret;
}

/*
 * Parse the file f into p.  Returns 0 or -errno; for -EINVAL, *line_no
 * and *why say where and what.
 */
static int parse_state(struct vdfs_pivots *p, FILE *f, unsigned *line_no,
		       const char **why)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int ret = 0;

	*line_no = 0;
	/* getline, not fgets: a NUL in a line must not hide the rest. */
	while (ret == 0 && (n = getline(&line, &cap, f)) > 0) {
		++*line_no;
		if (line[n - 1] != '\n') {
			/* Only a damaged file lacks it: we write, then rename. */
			*why = "the last line does not end in a newline";
			ret = -EINVAL;
		} else if (*line_no == 1) {
			if ((size_t)n != sizeof(STATE_HEADER) ||
			    memcmp(line, STATE_HEADER, (size_t)n - 1) != 0) {
				*why = "the first line is not \"" STATE_HEADER "\"";
				ret = -EINVAL;
			}
		} else {
			ret = parse_entry(p, line, (size_t)n - 1, why);
		}
	}
	if (ret == 0 && ferror(f))
		ret = -EIO;
	if (ret == 0 && *line_no == 0) {
		*line_no = 1;
		*why = "the file is empty: no header";
		ret = -EINVAL;
	}
	free(line);
	return ret;
}

/*
 * Open the state file for reading.  Returns 0 and *f, or -errno (-EINVAL:
 * not a regular file; -ENOENT: no state file).
 */
static int open_state(int image_dir_fd, FILE **f)
{
	struct stat st;
	int dir_fd, fd, ret;

	dir_fd = openat(image_dir_fd, STATE_DIR,
			O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	/* O_NONBLOCK: a FIFO put there must not hang the start. */
	fd = openat(dir_fd, STATE_FILE,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	ret = fd < 0 ? -errno : 0;
	close(dir_fd);
	if (ret < 0)
		return ret;
	if (fstat(fd, &st) < 0)
		ret = -errno;
	else if (!S_ISREG(st.st_mode))
		ret = -EINVAL;
	else if ((*f = fdopen(fd, "r")) == NULL)
		ret = -errno;
	if (ret < 0)
		close(fd);
	return ret;
}

/*
 * Log an error about the state file of image_dir_fd: at line (0: none),
 * why (NULL: errno).
 */
static void log_state_error(int image_dir_fd, unsigned line, const char *why)
{
	char link[64], dir[PATH_MAX];
	int err = errno;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", image_dir_fd);
	n = readlink(link, dir, sizeof(dir) - 1);
	if (n < 0)
		n = snprintf(dir, sizeof(dir), "IMAGE_DIR");
	dir[n] = '\0';
	errno = err;
	if (why == NULL)
		log_error("%s/" STATE_DIR "/" STATE_FILE ": %m", dir);
	else if (line)
		log_error("%s/" STATE_DIR "/" STATE_FILE ", line %u: %s",
			  dir, line, why);
	else
		log_error("%s/" STATE_DIR "/" STATE_FILE ": %s", dir, why);
}

int vdfs_pivots_load(int image_dir_fd, struct vdfs_pivots **out)
{
	struct vdfs_pivots *p;
	const char *why = "not a regular file";
	unsigned line = 0;
	FILE *f = NULL;
	int ret;

	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		errno = ENOMEM;
		log_state_error(image_dir_fd, 0, NULL);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->write_lock, NULL);
	pthread_mutex_init(&p->lock, NULL);

	ret = open_state(image_dir_fd, &f);
	if (ret == -ENOENT) {
		*out = p;   /* never pivoted */
		return 0;
	}
	if (ret == 0) {
		ret = parse_state(p, f, &line, &why);
		fclose(f);
	}
	if (ret < 0) {
		errno = -ret;
		log_state_error(image_dir_fd, line, ret == -EINVAL ? why : NULL);
		vdfs_pivots_free(p);
		return ret;
	}
	*out = p;
	return 0;
}

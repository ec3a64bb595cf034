/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The block engine against fio on the same file, measured in one run.
 *
 * The program opens a scratch file as an image (blk_open, cache=none, that
 * is O_DIRECT) and drives it straight through the request path, with no
 * FUSE in between: queue depth N is N coroutines in the main thread's
 * event loop, each calling blk_co_preadv or blk_co_pwritev on its own
 * 4096-aligned buffer until the deadline.  Interleaved with it (see
 * "Timing"), fio runs the same workload on the same file as a child
 * process, and its terse output gives the peer's figure:
 *
 *   aio=native   fio --ioengine=libaio --direct=1 --iodepth=N
 *   aio=threads  fio --ioengine=psync --direct=1 --thread --numjobs=N
 *
 * The cases are 4k random read and write at QD1 and QD16, 1M sequential
 * read and write at QD4, each for both drivers, and a 4k random write at
 * QD16 where every 64th write carries BLK_REQ_FUA (a barrier).  That last
 * one has no fio peer: it is compared with the same driver without
 * barriers, measured next to it, and fio's --fdatasync=64 run is shown
 * beside it only as a reference (fio syncs, it does not drain the queue).
 *
 * Access patterns follow the peer, so that the ratio compares engines and
 * not patterns.  Random cases pick a uniformly random aligned block of the
 * whole region (fio runs with --norandommap --randrepeat=0 to do the
 * same).  Sequential cases differ by driver: fio's libaio job is one
 * sequential stream with N requests in flight, so the native coroutines
 * share one cursor and each takes the next block; fio's psync jobs are N
 * streams, so the threads coroutines each walk their own stripe of
 * size/N bytes, and the psync jobs get the same stripes (--size and
 * --offset_increment).  Streams wrap at the end of their region.
 *
 * Timing.  Each side gets --runtime seconds in two halves, in the order
 * A B B A (A being ours or fio, alternately from one case to the next), so
 * that a drift of the machine during the case (on a virtual disk, the
 * host's load comes and goes within seconds) hits both sides alike.  A
 * half of ours counts the requests completed from the start until the
 * last coroutine has finished, divided by that time; fio reports its own
 * figures.  Each side's figure is the mean of its two halves.  The CPU
 * time of each side (ours from getrusage, worker threads included; fio's
 * as its terse output reports it for its jobs) is shown as cores kept
 * busy, because on a small machine CPU is what runs out first.
 *
 * The program is a benchmark: it exits 0 whether or not targets are met,
 * 1 if a measurement could not be made, 2 on bad options.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "block.h"
#include "compiler.h"
#include "coroutine.h"
#include "loop.h"
#include "size.h"
#include "tpool.h"

#define PROG "engine-bench"

#define SCRATCH_NAME      "engine-bench.img"
#define SIZE_DEFAULT      (1ull << 30)
#define SIZE_MIN          (16ull << 20)
#define SIZE_UNIT         (1ull << 20)   /* sizes are whole MiB */
#define RUNTIME_DEFAULT   5
#define RUNTIME_MAX       3600
#define FILL_CHUNK        (1u << 20)
#define BUF_ALIGN         4096u
#define FUA_EVERY         64u
#define FIO_OUTPUT_MAX    (64u * 1024)
#define FIO_MAX_ARGS      32

/* The fields of fio's terse output, version 3, that we read (1-based). */
#define TERSE_VERSION     "3"
#define TERSE_READ_BW     7    /* KiB/s */
#define TERSE_READ_IOPS   8
#define TERSE_WRITE_BW    48
#define TERSE_WRITE_IOPS  49
#define TERSE_USR_CPU     88   /* percent of one CPU, mean over the jobs */
#define TERSE_SYS_CPU     89

enum bench_drv {
	DRV_NATIVE,
	DRV_THREADS,
	DRV_NR,
};

struct bench_driver {
	const char *key;           /* --aio name */
	enum blk_aio aio;
	const char *peer_name;
};

static const struct bench_driver drivers[DRV_NR] = {
	[DRV_NATIVE] = { "native", BLK_AIO_NATIVE, "fio libaio" },
	[DRV_THREADS] = { "threads", BLK_AIO_THREADS, "fio psync" },
};

struct bench_case {
	const char *key;           /* --cases name */
	const char *name;
	bool write;
	bool random;
	bool fua;                  /* FUA every FUA_EVERY writes; peer: us */
	uint32_t bs;
	unsigned qd;
	double target[DRV_NR];     /* lowest good ratio; 0: none */
};

#define KIB4 4096u
#define MIB1 (1u << 20)

static const struct bench_case cases[] = {
	{ .key = "randread-qd1", .name = "4k randread QD1",
	  .random = true, .bs = KIB4, .qd = 1, .target = { 0, 0.90 } },
	{ .key = "randread-qd16", .name = "4k randread QD16",
	  .random = true, .bs = KIB4, .qd = 16, .target = { 0.90, 0.90 } },
	{ .key = "randwrite-qd1", .name = "4k randwrite QD1", .write = true,
	  .random = true, .bs = KIB4, .qd = 1, .target = { 0, 0.90 } },
	{ .key = "randwrite-qd16", .name = "4k randwrite QD16", .write = true,
	  .random = true, .bs = KIB4, .qd = 16, .target = { 0.90, 0.90 } },
	{ .key = "seqread-qd4", .name = "1M seqread QD4",
	  .bs = MIB1, .qd = 4, .target = { 0.95, 0.90 } },
	{ .key = "seqwrite-qd4", .name = "1M seqwrite QD4", .write = true,
	  .bs = MIB1, .qd = 4, .target = { 0.95, 0.90 } },
	{ .key = "fua-qd16", .name = "4k randwrite QD16 FUA/64", .write = true,
	  .random = true, .fua = true, .bs = KIB4, .qd = 16 },
};

#define NR_CASES ARRAY_SIZE(cases)

struct bench_opts {
	const char *file;          /* NULL: SCRATCH_NAME, created and removed */
	uint64_t size;
	unsigned runtime;          /* seconds per measurement */
	bool case_on[NR_CASES];
	bool drv_on[DRV_NR];
	bool no_peer;
	bool csv;
};

/* One measurement of either side. */
struct bench_value {
	bool valid;
	double iops;
	double mibs;
	double cpu;                /* CPU seconds per second: cores busy */
};

struct bench_row {
	const struct bench_case *c;
	const struct bench_driver *d;
	struct bench_value ours;
	struct bench_value peer;   /* fio, or ours without FUA */
	struct bench_value ref;    /* FUA case: fio --fdatasync */
};

/* Main thread only. */
struct bench_env {
	const struct bench_opts *opts;
	const char *path;
	struct loop *ctx;
	struct tpool *pool;
	unsigned half_ms;          /* one half of --runtime */
	unsigned turn;             /* alternates who goes first */
};

/* Read by the signal handler; see on_fatal_signal. */
static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t scratch_created;

/* ---- small helpers ---------------------------------------------------- */

/* xorshift64*: enough randomness for offsets and data, and fast. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_seed(unsigned salt)
{
	uint64_t s = loop_now_ns() ^ ((uint64_t)getpid() << 32) ^
		     ((uint64_t)salt * 0x9E3779B97F4A7C15ull);

	return s ? s : 1;
}

static void fill_random(uint64_t *rng, void *buf, size_t len)
{
	uint64_t *p = buf;

	for (size_t i = 0; i < len / sizeof(*p); i++)
		p[i] = rng_next(rng);
}

static double tv_sec(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static double rusage_cpu(const struct rusage *ru)
{
	return tv_sec(&ru->ru_utime) + tv_sec(&ru->ru_stime);
}

static bool case_in_mibs(const struct bench_case *c)
{
	return c->bs >= MIB1;
}

static double value_of(const struct bench_case *c,
		       const struct bench_value *v)
{
	return case_in_mibs(c) ? v->mibs : v->iops;
}

/* ---- the scratch file -------------------------------------------------- */

/*
 * Make the first size bytes of the file hold random data: create it (the
 * default scratch file must not exist yet), or extend a --file that is
 * shorter.  Random data, written once, so that every read hits allocated
 * blocks and no layer can shortcut zeroes.  Returns 0 or -errno.
 */
static int scratch_prepare(const struct bench_opts *o, const char *path)
{
	int flags = O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC;
	uint64_t rng = rng_seed(0), off;
	void *buf = NULL;
	struct stat st;
	int fd, ret;

	if (!o->file)
		flags |= O_EXCL;
	fd = open(path, flags, 0644);
	if (fd < 0)
		return -errno;
	if (!o->file)
		scratch_created = 1;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "%s: %s is not a regular file\n", PROG, path);
		ret = -EINVAL;
		goto out_close;
	}
	ret = 0;
	off = ROUND_DOWN((uint64_t)st.st_size, FILL_CHUNK);
	if (off >= o->size)
		goto out_close;
	if (posix_memalign(&buf, BUF_ALIGN, FILL_CHUNK)) {
		ret = -ENOMEM;
		goto out_close;
	}
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "%s: writing %" PRIu64 " MiB of random data "
			"to %s\n", PROG, (o->size - off) >> 20, path);
	for (; off < o->size; off += FILL_CHUNK) {
		ssize_t n;

		fill_random(&rng, buf, FILL_CHUNK);
		n = pwrite(fd, buf, FILL_CHUNK, (off_t)off);
		if (n != (ssize_t)FILL_CHUNK) {
			ret = n < 0 ? -errno : -EIO;
			goto out_free;
		}
	}
	if (fdatasync(fd) < 0)
		ret = -errno;
out_free:
	free(buf);
out_close:
	close(fd);
	return ret;
}

/* ---- our side: N coroutines on one image ------------------------------- */

/* One measurement; main thread only, like every coroutine of it. */
struct bench_run {
	struct blk_image *img;
	const struct bench_case *c;
	bool fua;                   /* FUA every FUA_EVERY writes */
	uint64_t size;              /* bytes of the file in use */
	unsigned ms;                /* how long to run */
	uint64_t deadline_ns;
	uint64_t cursor;            /* shared sequential stream (native) */
	uint64_t writes;            /* counts towards the next FUA */
	uint64_t ops;
	unsigned running;           /* coroutines not finished yet */
	int error;                  /* the first -errno */
};

struct bench_job {
	struct bench_run *run;
	void *buf;                  /* c->bs bytes, BUF_ALIGN-aligned */
	uint64_t rng;
	bool striped;               /* own stripe, else the shared cursor */
	uint64_t pos, stripe_off, stripe_end;
};

static uint64_t job_next_offset(struct bench_job *j)
{
	struct bench_run *r = j->run;
	uint64_t bs = r->c->bs, off;

	if (r->c->random)
		return rng_next(&j->rng) % (r->size / bs) * bs;
	if (!j->striped) {
		off = r->cursor;
		r->cursor = off + bs >= r->size ? 0 : off + bs;
		return off;
	}
	off = j->pos;
	j->pos = off + bs >= j->stripe_end ? j->stripe_off : off + bs;
	return off;
}

static void coroutine_fn job_co(void *opaque)
{
	struct bench_job *j = opaque;
	struct bench_run *r = j->run;
	const struct bench_case *c = r->c;
	struct iovec iov = { .iov_base = j->buf, .iov_len = c->bs };

	while (!r->error && loop_now_ns() < r->deadline_ns) {
		uint64_t off = job_next_offset(j);
		unsigned flags = 0;
		ssize_t ret;

		if (c->write) {
			if (r->fua && ++r->writes % FUA_EVERY == 0)
				flags |= BLK_REQ_FUA;
			ret = blk_co_pwritev(r->img, off, &iov, 1, flags);
		} else {
			ret = blk_co_preadv(r->img, off, &iov, 1, 0);
		}
		if (ret != (ssize_t)c->bs) {
			r->error = ret < 0 ? (int)ret : -EIO;
			break;
		}
		r->ops++;
	}
	r->running--;
}

static void jobs_free(struct bench_job *jobs, unsigned n)
{
	if (!jobs)
		return;
	for (unsigned i = 0; i < n; i++)
		free(jobs[i].buf);
	free(jobs);
}

static int jobs_new(struct bench_run *r, enum bench_drv drv,
		    struct bench_job **out)
{
	const struct bench_case *c = r->c;
	uint64_t stripe = ROUND_DOWN(r->size / c->qd, c->bs);
	struct bench_job *jobs = calloc(c->qd, sizeof(*jobs));

	if (!jobs)
		return -ENOMEM;
	for (unsigned i = 0; i < c->qd; i++) {
		struct bench_job *j = &jobs[i];

		j->run = r;
		j->rng = rng_seed(i + 1);
		j->striped = drv == DRV_THREADS;
		j->stripe_off = j->pos = i * stripe;
		j->stripe_end = j->stripe_off + stripe;
		if (posix_memalign(&j->buf, BUF_ALIGN, c->bs)) {
			j->buf = NULL;
			jobs_free(jobs, c->qd);
			return -ENOMEM;
		}
		fill_random(&j->rng, j->buf, c->bs);
	}
	*out = jobs;
	return 0;
}

/* Start every coroutine at once and wait for the last one. */
static int run_jobs(struct bench_env *env, struct bench_run *r,
		    struct bench_job *jobs, struct bench_value *v)
{
	const struct bench_case *c = r->c;
	struct coroutine **co = calloc(c->qd, sizeof(*co));
	struct rusage ru0, ru1;
	uint64_t t0, t1;
	double secs;

	if (!co)
		return -ENOMEM;
	for (unsigned i = 0; i < c->qd; i++) {
		co[i] = co_create(job_co, &jobs[i]);
		if (!co[i]) {
			while (i-- > 0)
				co_free_unstarted(co[i]);
			free(co);
			return -ENOMEM;
		}
	}
	getrusage(RUSAGE_SELF, &ru0);
	t0 = loop_now_ns();
	r->deadline_ns = t0 + (uint64_t)r->ms * 1000000ull;
	r->running = c->qd;
	for (unsigned i = 0; i < c->qd; i++)
		co_enter(co[i]);
	/* The coroutines run in this thread: no kick is needed. */
	LOOP_WAIT_WHILE(env->ctx, r->running > 0);
	t1 = loop_now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	free(co);

	secs = (double)(t1 - t0) / 1e9;
	v->valid = true;
	v->iops = (double)r->ops / secs;
	v->mibs = v->iops * c->bs / (1024.0 * 1024.0);
	v->cpu = (rusage_cpu(&ru1) - rusage_cpu(&ru0)) / secs;
	return r->error;
}

static int run_ours(struct bench_env *env, const struct bench_case *c,
		    enum bench_drv drv, bool fua, unsigned ms,
		    struct bench_value *v)
{
	struct blk_open_opts o = {
		.path = env->path,
		.aio = drivers[drv].aio,
		.cache = BLK_CACHE_NONE,
	};
	struct bench_run r = {
		.c = c, .fua = fua, .size = env->opts->size,
		.ms = ms,
	};
	struct bench_job *jobs = NULL;
	int ret;

	ret = blk_open(&o, env->ctx, env->pool, &r.img);
	if (ret < 0) {
		fprintf(stderr, "%s: opening %s: %s\n", PROG, env->path,
			strerror(-ret));
		return ret;
	}
	ret = jobs_new(&r, drv, &jobs);
	if (ret == 0)
		ret = run_jobs(env, &r, jobs, v);
	if (ret < 0)
		fprintf(stderr, "%s: %s, aio=%s: %s\n", PROG, c->name,
			drivers[drv].key, strerror(-ret));
	/* Drains and flushes: outside the timed part. */
	blk_close(r.img);
	jobs_free(jobs, c->qd);
	return ret;
}

/* ---- the peer: fio as a child process ---------------------------------- */

struct fio_cmd {
	char *argv[FIO_MAX_ARGS + 1];
	int argc;
};

static int __attribute__((format(printf, 2, 3)))
fio_arg(struct fio_cmd *cmd, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (cmd->argc >= FIO_MAX_ARGS)
		return -E2BIG;
	va_start(ap, fmt);
	n = vasprintf(&cmd->argv[cmd->argc], fmt, ap);
	va_end(ap);
	if (n < 0) {
		cmd->argv[cmd->argc] = NULL;
		return -ENOMEM;
	}
	cmd->argc++;
	return 0;
}

static void fio_cmd_free(struct fio_cmd *cmd)
{
	for (int i = 0; i < cmd->argc; i++)
		free(cmd->argv[i]);
	cmd->argc = 0;
}

/* fio splits --filename at ':'; a literal colon is written "\:". */
static int fio_filename_arg(struct fio_cmd *cmd, const char *path)
{
	size_t len = strlen(path);
	char *esc = malloc(2 * len + 1), *p = esc;
	int ret;

	if (!esc)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		if (path[i] == ':')
			*p++ = '\\';
		*p++ = path[i];
	}
	*p = '\0';
	ret = fio_arg(cmd, "--filename=%s", esc);
	free(esc);
	return ret;
}

static int fio_build(const struct bench_env *env, const struct bench_case *c,
		     enum bench_drv drv, unsigned ms, struct fio_cmd *cmd)
{
	uint64_t size = env->opts->size;
	const char *rw = c->random ? (c->write ? "randwrite" : "randread") :
				     (c->write ? "write" : "read");
	int ret = 0;

	ret |= fio_arg(cmd, "fio");
	ret |= fio_arg(cmd, "--name=" PROG);
	ret |= fio_filename_arg(cmd, env->path);
	ret |= fio_arg(cmd, "--allow_file_create=0");
	ret |= fio_arg(cmd, "--direct=1");
	ret |= fio_arg(cmd, "--rw=%s", rw);
	ret |= fio_arg(cmd, "--bs=%" PRIu32, c->bs);
	ret |= fio_arg(cmd, "--time_based");
	ret |= fio_arg(cmd, "--runtime=%ums", ms);
	ret |= fio_arg(cmd, "--norandommap");
	ret |= fio_arg(cmd, "--randrepeat=0");
	ret |= fio_arg(cmd, "--group_reporting");
	ret |= fio_arg(cmd, "--output-format=terse");
	ret |= fio_arg(cmd, "--terse-version=" TERSE_VERSION);
	if (drv == DRV_NATIVE) {
		ret |= fio_arg(cmd, "--ioengine=libaio");
		ret |= fio_arg(cmd, "--iodepth=%u", c->qd);
		ret |= fio_arg(cmd, "--size=%" PRIu64, size);
	} else {
		ret |= fio_arg(cmd, "--ioengine=psync");
		ret |= fio_arg(cmd, "--thread");
		ret |= fio_arg(cmd, "--numjobs=%u", c->qd);
		if (c->random) {
			ret |= fio_arg(cmd, "--size=%" PRIu64, size);
		} else {
			/* The stripes of jobs_new. */
			uint64_t stripe = ROUND_DOWN(size / c->qd, c->bs);

			ret |= fio_arg(cmd, "--size=%" PRIu64, stripe);
			ret |= fio_arg(cmd, "--offset_increment=%" PRIu64,
				       stripe);
		}
	}
	if (c->fua)
		ret |= fio_arg(cmd, "--fdatasync=%u", FUA_EVERY);
	/* Every failure is a negative errno; any of them will do. */
	return ret < 0 ? -ENOMEM : 0;
}

/* Field n (1-based) of a ';'-separated line, as a number. */
static int terse_field(const char *line, unsigned n, double *out)
{
	const char *p = line;
	char *end;

	for (unsigned i = 1; i < n; i++) {
		p = strpbrk(p, ";\n");
		if (!p || *p == '\n')
			return -EINVAL;
		p++;
	}
	errno = 0;
	*out = strtod(p, &end);
	if (end > p && *end == '%')
		end++;
	if (end == p || errno || (*end != ';' && *end != '\n' && *end))
		return -EINVAL;
	return 0;
}

static int fio_parse(const char *out, const struct bench_case *c,
		     unsigned jobs, struct bench_value *v)
{
	const char *line = out;
	double bw, iops, usr, sys;

	/* Warnings may precede the result line, which starts "3;". */
	while (line && strncmp(line, TERSE_VERSION ";", 2) != 0) {
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	if (!line)
		return -EINVAL;
	if (terse_field(line, c->write ? TERSE_WRITE_BW : TERSE_READ_BW,
			&bw) < 0 ||
	    terse_field(line, c->write ? TERSE_WRITE_IOPS : TERSE_READ_IOPS,
			&iops) < 0 ||
	    terse_field(line, TERSE_USR_CPU, &usr) < 0 ||
	    terse_field(line, TERSE_SYS_CPU, &sys) < 0)
		return -EINVAL;
	v->iops = iops;
	v->mibs = bw / 1024.0;
	/* Each job's own CPU time over its run time: fio's start-up and
	 * reporting are left out, as ours are. */
	v->cpu = (usr + sys) / 100.0 * jobs;
	v->valid = true;
	return 0;
}

/* Read the child's stdout to EOF into buf (NUL-terminated). */
static int read_all(int fd, char *buf, size_t size)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = read(fd, buf + len, size - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == size - 1)
			break;   /* too much; the parse will say so */
	}
	buf[len] = '\0';
	return 0;
}

static void fio_print_cmd(const struct fio_cmd *cmd)
{
	fprintf(stderr, "%s: the command was:", PROG);
	for (int i = 0; i < cmd->argc; i++)
		fprintf(stderr, " %s", cmd->argv[i]);
	fputc('\n', stderr);
}

/* Run fio and wait for it; stdout is captured, stderr passes through. */
static int fio_exec(const struct fio_cmd *cmd, char *out, size_t size)
{
	int pfd[2], status, ret;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(pfd[0]);
		close(pfd[1]);
		return ret;
	}
	if (pid == 0) {
		if (dup2(pfd[1], STDOUT_FILENO) < 0)
			_exit(127);
		execvp(cmd->argv[0], cmd->argv);
		fprintf(stderr, "%s: cannot run fio: %s\n", PROG,
			strerror(errno));
		_exit(127);
	}
	child_pid = pid;
	close(pfd[1]);
	ret = read_all(pfd[0], out, size);
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			child_pid = 0;
			return -errno;
		}
	}
	child_pid = 0;
	if (ret < 0)
		return ret;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFEXITED(status))
			fprintf(stderr, "%s: fio exited with status %d\n",
				PROG, WEXITSTATUS(status));
		else
			fprintf(stderr, "%s: fio was killed by signal %d\n",
				PROG, WTERMSIG(status));
		return -ECHILD;
	}
	return 0;
}

static int run_fio(struct bench_env *env, const struct bench_case *c,
		   enum bench_drv drv, unsigned ms, struct bench_value *v)
{
	struct fio_cmd cmd = { .argc = 0 };
	char *out = malloc(FIO_OUTPUT_MAX);
	int ret;

	if (!out)
		return -ENOMEM;
	ret = fio_build(env, c, drv, ms, &cmd);
	if (ret == 0)
		ret = fio_exec(&cmd, out, FIO_OUTPUT_MAX);
	if (ret == 0) {
		ret = fio_parse(out, c, drv == DRV_NATIVE ? 1 : c->qd, v);
		if (ret < 0)
			fprintf(stderr, "%s: no terse v3 result in fio's "
				"output\n", PROG);
	}
	if (ret < 0) {
		if (ret != -ECHILD)
			fprintf(stderr, "%s: fio: %s\n", PROG, strerror(-ret));
		fio_print_cmd(&cmd);
	}
	fio_cmd_free(&cmd);
	free(out);
	return ret;
}

/* ---- the runner --------------------------------------------------------- */

enum bench_side {
	SIDE_OURS,
	SIDE_OURS_FUA,
	SIDE_FIO,
};

static int run_side(struct bench_env *env, const struct bench_case *c,
		    enum bench_drv drv, enum bench_side side, unsigned ms,
		    struct bench_value *v)
{
	static const char *const what[] = {
		[SIDE_OURS] = "vdiskfs",
		[SIDE_OURS_FUA] = "vdiskfs with FUA",
		[SIDE_FIO] = "fio",
	};

	if (isatty(STDERR_FILENO))
		fprintf(stderr, "%s: %s, aio=%s: %s, %u ms\n", PROG, c->name,
			drivers[drv].key, what[side], ms);
	if (side == SIDE_FIO)
		return run_fio(env, c, drv, ms, v);
	return run_ours(env, c, drv, side == SIDE_OURS_FUA, ms, v);
}

/* Halves of equal length: their mean is the figure of the whole. */
static void value_mean(const struct bench_value *x,
		       const struct bench_value *y, struct bench_value *out)
{
	out->valid = x->valid && y->valid;
	out->iops = (x->iops + y->iops) / 2;
	out->mibs = (x->mibs + y->mibs) / 2;
	out->cpu = (x->cpu + y->cpu) / 2;
}

/* a, b, b, a, half the runtime each; *va and *vb get the means. */
static int run_abba(struct bench_env *env, const struct bench_case *c,
		    enum bench_drv drv, enum bench_side a,
		    struct bench_value *va, enum bench_side b,
		    struct bench_value *vb)
{
	struct bench_value h[4] = { { 0 } };
	unsigned ms = env->half_ms;
	int ret;

	ret = run_side(env, c, drv, a, ms, &h[0]);
	if (ret == 0)
		ret = run_side(env, c, drv, b, ms, &h[1]);
	if (ret == 0)
		ret = run_side(env, c, drv, b, ms, &h[2]);
	if (ret == 0)
		ret = run_side(env, c, drv, a, ms, &h[3]);
	if (ret < 0)
		return ret;
	value_mean(&h[0], &h[3], va);
	value_mean(&h[1], &h[2], vb);
	return 0;
}

/* Our side and fio; who goes first alternates from one call to the next. */
static int run_pair(struct bench_env *env, struct bench_row *row,
		    enum bench_drv drv)
{
	const struct bench_case *c = row->c;
	struct bench_value dummy;

	if (env->opts->no_peer)
		return run_abba(env, c, drv, SIDE_OURS, &row->ours, SIDE_OURS,
				&dummy);
	if (env->turn++ % 2)
		return run_abba(env, c, drv, SIDE_FIO, &row->peer, SIDE_OURS,
				&row->ours);
	return run_abba(env, c, drv, SIDE_OURS, &row->ours, SIDE_FIO,
			&row->peer);
}

/*
 * The FUA case: ours without barriers (the peer) and with them, then
 * (or first) fio's --fdatasync run for the whole runtime as a reference.
 */
static int run_fua(struct bench_env *env, struct bench_row *row,
		   enum bench_drv drv)
{
	const struct bench_case *c = row->c;
	bool ref = !env->opts->no_peer;
	bool ref_first = env->turn++ % 2;
	unsigned ms = 2 * env->half_ms;
	int ret = 0;

	if (ref && ref_first)
		ret = run_side(env, c, drv, SIDE_FIO, ms, &row->ref);
	if (ret == 0 && ref_first)
		ret = run_abba(env, c, drv, SIDE_OURS_FUA, &row->ours,
			       SIDE_OURS, &row->peer);
	else if (ret == 0)
		ret = run_abba(env, c, drv, SIDE_OURS, &row->peer,
			       SIDE_OURS_FUA, &row->ours);
	if (ret == 0 && ref && !ref_first)
		ret = run_side(env, c, drv, SIDE_FIO, ms, &row->ref);
	return ret;
}

/* ---- output ------------------------------------------------------------- */

static double row_ratio(const struct bench_row *r)
{
	double p = value_of(r->c, &r->peer);

	if (!r->ours.valid || !r->peer.valid || p <= 0)
		return 0;
	return value_of(r->c, &r->ours) / p;
}

static const char *row_peer_name(const struct bench_row *r)
{
	return r->c->fua ? "vdiskfs no FUA" : r->d->peer_name;
}

static double row_target(const struct bench_row *r)
{
	return r->c->target[r->d - drivers];
}

static const char *row_verdict(const struct bench_row *r)
{
	double t = row_target(r);

	if (t <= 0 || !r->peer.valid)
		return "-";
	return row_ratio(r) >= t ? "ok" : "MISSED";
}

static void format_value(const struct bench_case *c,
			 const struct bench_value *v, char *buf, size_t len)
{
	if (!v->valid)
		snprintf(buf, len, "-");
	else if (case_in_mibs(c))
		snprintf(buf, len, "%.1f MiB/s", v->mibs);
	else
		snprintf(buf, len, "%.0f IOPS", v->iops);
}

static void print_table(const struct bench_opts *opts,
			const struct bench_row *rows, size_t nrows)
{
	bool any_fua = false;

	printf("%s: %" PRIu64 " MiB file, cache=none, %u s per "
	       "measurement; cpu = cores busy, vdiskfs/peer\n\n", PROG,
	       opts->size >> 20, opts->runtime);
	printf("%-25s %-7s %14s  %-15s %14s %6s %7s %-6s  %s\n", "case",
	       "driver", "vdiskfs", "peer", "peer value", "ratio", "target",
	       "result", "cpu");
	for (size_t i = 0; i < nrows; i++) {
		const struct bench_row *r = &rows[i];
		char ours[32], peer[32], ratio[16], target[16], cpu[32];

		format_value(r->c, &r->ours, ours, sizeof(ours));
		format_value(r->c, &r->peer, peer, sizeof(peer));
		if (r->peer.valid)
			snprintf(ratio, sizeof(ratio), "%.2f", row_ratio(r));
		else
			snprintf(ratio, sizeof(ratio), "-");
		if (row_target(r) > 0)
			snprintf(target, sizeof(target), ">=%.2f",
				 row_target(r));
		else
			snprintf(target, sizeof(target), "-");
		if (r->peer.valid)
			snprintf(cpu, sizeof(cpu), "%.2f/%.2f", r->ours.cpu,
				 r->peer.cpu);
		else
			snprintf(cpu, sizeof(cpu), "%.2f/-", r->ours.cpu);
		printf("%-25s %-7s %14s  %-15s %14s %6s %7s %-6s  %s\n",
		       r->c->name, r->d->key, ours, row_peer_name(r), peer,
		       ratio, target, row_verdict(r), cpu);
		any_fua |= r->c->fua && r->ref.valid;
	}
	if (!any_fua)
		return;
	printf("\nReference for the FUA/64 rows (fio syncs every %u writes "
	       "per job; no drain):\n", FUA_EVERY);
	for (size_t i = 0; i < nrows; i++) {
		const struct bench_row *r = &rows[i];
		char ref[32];

		if (!r->c->fua || !r->ref.valid)
			continue;
		format_value(r->c, &r->ref, ref, sizeof(ref));
		printf("  %s --fdatasync=%u: %s (cpu %.2f)\n",
		       r->d->peer_name, FUA_EVERY, ref, r->ref.cpu);
	}
}

static void print_csv(const struct bench_row *rows, size_t nrows)
{
	printf("case,driver,unit,vdiskfs,peer,peer_value,ratio,target,result,"
	       "vdiskfs_cpu,peer_cpu,reference,reference_value\n");
	for (size_t i = 0; i < nrows; i++) {
		const struct bench_row *r = &rows[i];

		printf("%s,%s,%s,%.1f,%s,", r->c->name, r->d->key,
		       case_in_mibs(r->c) ? "MiB/s" : "IOPS",
		       value_of(r->c, &r->ours), row_peer_name(r));
		if (r->peer.valid)
			printf("%.1f,%.3f,", value_of(r->c, &r->peer),
			       row_ratio(r));
		else
			printf(",,");
		if (row_target(r) > 0)
			printf("%.2f,", row_target(r));
		else
			printf(",");
		printf("%s,%.3f,", row_verdict(r), r->ours.cpu);
		if (r->peer.valid)
			printf("%.3f,", r->peer.cpu);
		else
			printf(",");
		if (r->c->fua && r->ref.valid)
			printf("%s --fdatasync=%u,%.1f\n", r->d->peer_name,
			       FUA_EVERY, value_of(r->c, &r->ref));
		else
			printf(",\n");
	}
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s [--file PATH] [--size SIZE] [--runtime SECONDS] [--cases LIST]\n"
"       [--aio LIST] [--no-peer] [--csv]\n"
"\n"
"Drives a file through the vdiskfs block engine (cache=none, no FUSE) and\n"
"runs fio on the same file right before or after each measurement:\n"
"  aio=native   vs  fio --ioengine=libaio --direct=1 --iodepth=N\n"
"  aio=threads  vs  fio --ioengine=psync --direct=1 --thread --numjobs=N\n"
"Targets are on the ratio vdiskfs/fio: native >= 0.90 at 4k QD16 and\n"
">= 0.95 on 1M sequential; threads >= 0.90 everywhere.  The FUA case\n"
"(a barrier every %u writes) is compared with the same driver without\n"
"barriers; fio --fdatasync=%u is shown as a reference.  The exit status\n"
"is 0 whether or not targets are met.\n"
"\n"
"Options:\n"
"  -f, --file PATH      use PATH (kept afterwards; its first SIZE bytes are\n"
"                       overwritten by the write cases, and it is extended\n"
"                       with random data if shorter); default: create\n"
"                       ./%s, fill it with random data, remove it\n"
"  -s, --size SIZE      bytes of the file to use, a multiple of 1M, at\n"
"                       least 16M (default 1G)\n"
"  -t, --runtime SECS   seconds per measurement (default %d)\n"
"  -c, --cases LIST     comma-separated subset (default all) of:\n"
"                      ",
		PROG, FUA_EVERY, FUA_EVERY, SCRATCH_NAME, RUNTIME_DEFAULT);
	for (size_t i = 0, col = 22; i < NR_CASES; i++) {
		size_t len = strlen(cases[i].key) + 2;

		if (col + len > 76) {
			fprintf(f, "\n                      ");
			col = 22;
		}
		fprintf(f, " %s%s", cases[i].key,
			i + 1 < NR_CASES ? "," : "");
		col += len;
	}
	fprintf(f,
"\n"
"  -a, --aio LIST       drivers: native,threads (default both)\n"
"      --no-peer        do not run fio (ratios are then left out)\n"
"      --csv            print CSV instead of a table\n"
"  -h, --help           show this help and exit\n");
}

/* One line on stderr, then exit 2. */
static void __attribute__((noreturn, format(printf, 1, 2)))
bad_option(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try --help)\n");
	exit(2);
}

/* Parse a decimal count in [1, max].  Returns 0 or -EINVAL. */
static int parse_count(const char *s, unsigned max, unsigned *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end || errno || v == 0 || v > max)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

/*
 * Turn on the names of a comma-separated list in on[] (keys[i] is the
 * name of on[i]); "all" turns on every one.  Returns 0, or -EINVAL with
 * *bad pointing at an unknown name (in a copy that the caller frees).
 */
static int parse_list(const char *list, const char *const *keys, size_t n,
		      bool *on, char **copy, const char **bad)
{
	char *save = NULL, *name;

	*copy = strdup(list);
	if (!*copy)
		return -ENOMEM;
	memset(on, 0, n * sizeof(*on));
	for (name = strtok_r(*copy, ",", &save); name;
	     name = strtok_r(NULL, ",", &save)) {
		size_t i;

		if (strcmp(name, "all") == 0) {
			for (i = 0; i < n; i++)
				on[i] = true;
			continue;
		}
		for (i = 0; i < n && strcmp(name, keys[i]) != 0; i++)
			;
		if (i == n) {
			*bad = name;
			return -EINVAL;
		}
		on[i] = true;
	}
	for (size_t i = 0; i < n; i++)
		if (on[i])
			return 0;
	*bad = list;
	return -EINVAL;
}

static void parse_cases(const char *arg, struct bench_opts *opts)
{
	const char *keys[NR_CASES], *bad = NULL;
	char *copy = NULL;

	for (size_t i = 0; i < NR_CASES; i++)
		keys[i] = cases[i].key;
	if (parse_list(arg, keys, NR_CASES, opts->case_on, &copy, &bad) < 0) {
		if (!copy)
			bad_option("out of memory");
		bad_option("--cases: unknown case '%s'", bad);
	}
	free(copy);
}

static void parse_aio(const char *arg, struct bench_opts *opts)
{
	const char *keys[DRV_NR], *bad = NULL;
	char *copy = NULL;

	for (size_t i = 0; i < DRV_NR; i++)
		keys[i] = drivers[i].key;
	if (parse_list(arg, keys, DRV_NR, opts->drv_on, &copy, &bad) < 0) {
		if (!copy)
			bad_option("out of memory");
		bad_option("--aio: unknown driver '%s'", bad);
	}
	free(copy);
}

enum { OPT_CSV = 256, OPT_NO_PEER };

static void parse_options(int argc, char **argv, struct bench_opts *opts)
{
	static const struct option long_opts[] = {
		{ "file", required_argument, NULL, 'f' },
		{ "size", required_argument, NULL, 's' },
		{ "runtime", required_argument, NULL, 't' },
		{ "cases", required_argument, NULL, 'c' },
		{ "aio", required_argument, NULL, 'a' },
		{ "no-peer", no_argument, NULL, OPT_NO_PEER },
		{ "csv", no_argument, NULL, OPT_CSV },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":f:s:t:c:a:h", long_opts,
				NULL)) != -1) {
		switch (c) {
		case 'f':
			if (!*optarg)
				bad_option("--file: empty path");
			opts->file = optarg;
			break;
		case 's':
			if (size_parse(optarg, &opts->size) < 0 ||
			    opts->size < SIZE_MIN || opts->size % SIZE_UNIT ||
			    opts->size > (uint64_t)INT64_MAX)
				bad_option("--size: '%s' is not a multiple of "
					   "1M of at least 16M", optarg);
			break;
		case 't':
			if (parse_count(optarg, RUNTIME_MAX, &opts->runtime))
				bad_option("--runtime: '%s' is not a number of "
					   "seconds from 1 to %d", optarg,
					   RUNTIME_MAX);
			break;
		case 'c':
			parse_cases(optarg, opts);
			break;
		case 'a':
			parse_aio(optarg, opts);
			break;
		case OPT_NO_PEER:
			opts->no_peer = true;
			break;
		case OPT_CSV:
			opts->csv = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case ':':
			bad_option("%s needs an argument", argv[optind - 1]);
			break;
		default:
			if (optopt > 0 && optopt < 256)
				bad_option("unknown option '-%c'", optopt);
			else if (optopt)
				bad_option("'%s' takes no argument",
					   argv[optind - 1]);
			else
				bad_option("unknown option '%s'",
					   argv[optind - 1]);
			break;
		}
	}
	if (optind < argc)
		bad_option("unexpected argument '%s'", argv[optind]);
}

/* ---- main --------------------------------------------------------------- */

/*
 * Ctrl-C or kill: stop fio and remove the scratch file, which nobody else
 * would.  Only async-signal-safe calls; the default path is relative and
 * the program never changes directory.
 */
static void on_fatal_signal(int sig)
{
	if (child_pid > 0)
		kill((pid_t)child_pid, SIGTERM);
	if (scratch_created)
		unlink(SCRATCH_NAME);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_fatal_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static int run_all(struct bench_env *env, struct bench_row *rows,
		   size_t *nrows)
{
	const struct bench_opts *opts = env->opts;
	int ret = 0;

	*nrows = 0;
	for (size_t i = 0; i < NR_CASES && ret == 0; i++) {
		if (!opts->case_on[i])
			continue;
		for (int d = 0; d < DRV_NR && ret == 0; d++) {
			struct bench_row *r = &rows[*nrows];

			if (!opts->drv_on[d])
				continue;
			memset(r, 0, sizeof(*r));
			r->c = &cases[i];
			r->d = &drivers[d];
			ret = cases[i].fua ? run_fua(env, r, d) :
					     run_pair(env, r, d);
			(*nrows)++;
		}
	}
	return ret;
}

int main(int argc, char **argv)
{
	struct bench_opts opts = {
		.size = SIZE_DEFAULT,
		.runtime = RUNTIME_DEFAULT,
	};
	struct bench_env env = { .opts = &opts };
	struct bench_row rows[NR_CASES * DRV_NR];
	size_t nrows = 0;
	int ret;

	for (size_t i = 0; i < NR_CASES; i++)
		opts.case_on[i] = true;
	for (size_t i = 0; i < DRV_NR; i++)
		opts.drv_on[i] = true;
	parse_options(argc, argv, &opts);
	env.path = opts.file ? opts.file : SCRATCH_NAME;
	env.half_ms = opts.runtime * 500;

	install_signals();
	ret = scratch_prepare(&opts, env.path);
	if (ret < 0) {
		fprintf(stderr, "%s: preparing %s: %s%s\n", PROG, env.path,
			strerror(-ret), ret == -EEXIST ?
			" (left by an interrupted run? remove it, or pass "
			"--file)" : "");
		goto out_remove;
	}
	ret = loop_new(&env.ctx);
	if (ret < 0) {
		fprintf(stderr, "%s: loop_new: %s\n", PROG, strerror(-ret));
		goto out_remove;
	}
	loop_set_current(env.ctx);
	ret = tpool_new(NULL, &env.pool);
	if (ret < 0) {
		fprintf(stderr, "%s: tpool_new: %s\n", PROG, strerror(-ret));
		goto out_free_ctx;
	}

	ret = run_all(&env, rows, &nrows);
	if (ret == 0) {
		if (opts.csv)
			print_csv(rows, nrows);
		else
			print_table(&opts, rows, nrows);
	}

	tpool_free(env.pool);
out_free_ctx:
	loop_set_current(NULL);
	loop_free(env.ctx);
out_remove:
	if (scratch_created && unlink(SCRATCH_NAME) < 0)
		fprintf(stderr, "%s: removing %s: %s\n", PROG, SCRATCH_NAME,
			strerror(errno));
	return ret < 0 ? 1 : 0;
}

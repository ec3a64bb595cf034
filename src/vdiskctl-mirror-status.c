/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdiskctl mirror: watching a job.  The status (plain or JSON), waiting
 * until a job is ready or over with an optional progress display, and the
 * wait that complete and cancel do after sending their command.
 *
 *   status FILE [--json]      MIRROR_STATUS (read-only handle)
 *   wait FILE [...]           MIRROR_STATUS every 100 ms until ready/over
 *
 * Design notes.  Waiting is polling: the ABI has nothing to block on, and
 * a STATUS costs one FUSE round trip, so 10 a second is cheap.  The status
 * describes the image's current or last job, so a wait follows one job_id;
 * another id (or state none: the daemon restarted) means ours is gone.
 * Progress on a terminal is one line redrawn after '\r', padded with
 * spaces over what a longer line before left; elsewhere (a log, a pipe) it
 * is a line a second at most.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "size.h"
#include "vdisk-ioctl.h"
#include "vdiskctl-internal.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#define MIRROR_POLL_NS     100000000ull   /* 100 ms between two STATUS */
#define MIRROR_BAR_WIDTH   24             /* the progress bar, in chars */
#define NS_PER_SEC         1000000000ull

/* ---- names of the ABI's values --------------------------------------- */

static const char *const state_names[] = {
	[VDISK_MIRROR_NONE] = "none",
	[VDISK_MIRROR_CREATED] = "created",
	[VDISK_MIRROR_RUNNING] = "running",
	[VDISK_MIRROR_PAUSED] = "paused",
	[VDISK_MIRROR_READY] = "ready",
	[VDISK_MIRROR_COMPLETING] = "completing",
	[VDISK_MIRROR_CONCLUDED] = "concluded",
	[VDISK_MIRROR_FAILED] = "failed",
	[VDISK_MIRROR_CANCELLED] = "cancelled",
};

const char *const ctl_mirror_sync_names[CTL_MIRROR_SYNC_NR] = {
	[VDISK_MIRROR_SYNC_FULL] = "full",
	[VDISK_MIRROR_SYNC_NONE] = "none",
};

const char *const ctl_mirror_mode_names[CTL_MIRROR_MODE_NR] = {
	[VDISK_MIRROR_COPY_BACKGROUND] = "background",
	[VDISK_MIRROR_COPY_WRITE_BLOCKING] = "write-blocking",
};

const char *const ctl_mirror_on_error_names[CTL_MIRROR_ON_ERROR_NR] = {
	[VDISK_MIRROR_ERROR_REPORT] = "report",
	[VDISK_MIRROR_ERROR_STOP] = "stop",
	[VDISK_MIRROR_ERROR_IGNORE] = "ignore",
};

_Static_assert(VDISK_MIRROR_SYNC_NONE + 1 == CTL_MIRROR_SYNC_NR,
	       "ctl_mirror_sync_names");
_Static_assert(VDISK_MIRROR_COPY_WRITE_BLOCKING + 1 == CTL_MIRROR_MODE_NR,
	       "ctl_mirror_mode_names");
_Static_assert(VDISK_MIRROR_ERROR_IGNORE + 1 == CTL_MIRROR_ON_ERROR_NR,
	       "ctl_mirror_on_error_names");

static const char *const side_names[] = {
	[VDISK_MIRROR_SIDE_NONE] = "none",
	[VDISK_MIRROR_SIDE_SOURCE] = "source",
	[VDISK_MIRROR_SIDE_TARGET] = "target",
};

/* The status flags, in output order: JSON key, plain word. */
static const struct {
	uint32_t bit;
	const char *key, *word;
} status_flags[] = {
	{ VDISK_MIRROR_ST_CONSISTENT, "consistent", "consistent" },
	{ VDISK_MIRROR_ST_EVER_READY, "ever_ready", "ever-ready" },
	{ VDISK_MIRROR_ST_USER_PAUSED, "user_paused", "user-paused" },
	{ VDISK_MIRROR_ST_DRAINED, "drained", "drained" },
	{ VDISK_MIRROR_ST_PIVOTED, "pivoted", "pivoted" },
	{ VDISK_MIRROR_ST_NO_PIVOT, "no_pivot", "no-pivot" },
};

/*
 * names[v], or "unknown-V" (from a daemon newer than us) in one of four
 * static buffers used in turn, so that one printf can show several.
 */
static const char *enum_name(const char *const *names, size_t n, uint32_t v)
{
	static char buf[4][24];
	static unsigned next;
	char *b;

	if (v < n && names[v])
		return names[v];
	b = buf[next++ % 4];
	snprintf(b, sizeof(buf[0]), "unknown-%u", v);
	return b;
}

#define ENUM_NAME(names, v) enum_name(names, NELEM(names), v)

const char *ctl_mirror_state_name(uint32_t state)
{
	return ENUM_NAME(state_names, state);
}

/* ---- status ---------------------------------------------------------- */

static int mirror_get_status(int fd, struct vdisk_ioc_mirror_status *st)
{
	memset(st, 0, sizeof(*st));
	st->version = VDISK_IOC_VERSION;
	st->size = sizeof(*st);
	return ctl_ioctl(fd, VDISK_IOC_MIRROR_STATUS, st);
}

static bool state_is_final(uint32_t state)
{
	return state == VDISK_MIRROR_CONCLUDED ||
	       state == VDISK_MIRROR_FAILED || state == VDISK_MIRROR_CANCELLED;
}

/* Ready, or past it on the way to a completion, or paused after it. */
static bool status_is_ready(const struct vdisk_ioc_mirror_status *st)
{
	return st->state == VDISK_MIRROR_READY ||
	       st->state == VDISK_MIRROR_COMPLETING ||
	       st->state == VDISK_MIRROR_CONCLUDED ||
	       (!state_is_final(st->state) &&
		(st->flags & VDISK_MIRROR_ST_EVER_READY));
}

static double status_percent(const struct vdisk_ioc_mirror_status *st)
{
	if (st->state == VDISK_MIRROR_CONCLUDED)
		return 100.0;
	if (st->bytes_total == 0)
		return st->state == VDISK_MIRROR_CREATED ? 0.0 : 100.0;
	if (st->bytes_done >= st->bytes_total)
		return 100.0;
	return 100.0 * (double)st->bytes_done / (double)st->bytes_total;
}

/* "512 B", "4.5 GiB" */
static const char *fmt_bytes(uint64_t b, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	double v = (double)b;
	int i = -1;

	if (b < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)b);
		return buf;
	}
	while (v >= 1024.0 && units[i + 1]) {
		v /= 1024.0;
		i++;
	}
	snprintf(buf, len, "%.1f %ciB", v, units[i]);
	return buf;
}

/* "42s", "3m07s", "2h05m09s" */
static const char *fmt_duration(uint64_t sec, char *buf, size_t len)
{
	if (sec >= 3600)
		snprintf(buf, len, "%lluh%02um%02us",
			 (unsigned long long)(sec / 3600),
			 (unsigned)(sec / 60 % 60), (unsigned)(sec % 60));
	else if (sec >= 60)
		snprintf(buf, len, "%um%02us", (unsigned)(sec / 60),
			 (unsigned)(sec % 60));
	else
		snprintf(buf, len, "%us", (unsigned)sec);
	return buf;
}

/* The state, and why the job is paused: "paused (user, error)". */
static const char *fmt_state(const struct vdisk_ioc_mirror_status *st,
			     char *buf, size_t len)
{
	bool user = st->flags & VDISK_MIRROR_ST_USER_PAUSED;
	bool drained = st->flags & VDISK_MIRROR_ST_DRAINED;

	if (st->state != VDISK_MIRROR_PAUSED || !(user || drained || st->error))
		snprintf(buf, len, "%s", ctl_mirror_state_name(st->state));
	else
		snprintf(buf, len, "paused (%s%s%s%s%s)", user ? "user" : "",
			 user && drained ? ", " : "", drained ? "drain" : "",
			 (user || drained) && st->error ? ", " : "",
			 st->error ? "error" : "");
	return buf;
}

static void status_print_json(const struct vdisk_ioc_mirror_status *st)
{
	size_t i;

	printf("{\n  \"job_id\": %llu,\n  \"state\": \"%s\",\n"
	       "  \"target\": ", (unsigned long long)st->job_id,
	       ctl_mirror_state_name(st->state));
	ctl_json_string(st->target, sizeof(st->target));
	printf(",\n  \"sync\": \"%s\",\n  \"mode\": \"%s\",\n"
	       "  \"on_source_error\": \"%s\",\n"
	       "  \"on_target_error\": \"%s\",\n  \"flags\": %u,\n",
	       ENUM_NAME(ctl_mirror_sync_names, st->sync),
	       ENUM_NAME(ctl_mirror_mode_names, st->copy_mode),
	       ENUM_NAME(ctl_mirror_on_error_names, st->on_source_error),
	       ENUM_NAME(ctl_mirror_on_error_names, st->on_target_error),
	       st->flags);
	for (i = 0; i < NELEM(status_flags); i++)
		printf("  \"%s\": %s,\n", status_flags[i].key,
		       st->flags & status_flags[i].bit ? "true" : "false");
	printf("  \"bytes_total\": %llu,\n  \"bytes_done\": %llu,\n"
	       "  \"bytes_dirty\": %llu,\n  \"granularity\": %llu,\n"
	       "  \"buf_size\": %llu,\n  \"speed\": %llu,\n"
	       "  \"throughput\": %llu,\n  \"elapsed_ns\": %llu,\n"
	       "  \"ops_in_flight\": %u,\n  \"error\": %d,\n"
	       "  \"error_side\": \"%s\",\n  \"error_text\": ",
	       (unsigned long long)st->bytes_total,
	       (unsigned long long)st->bytes_done,
	       (unsigned long long)st->bytes_dirty,
	       (unsigned long long)st->granularity,
	       (unsigned long long)st->buf_size,
	       (unsigned long long)st->speed,
	       (unsigned long long)st->throughput,
	       (unsigned long long)st->elapsed_ns, st->ops_in_flight,
	       st->error, ENUM_NAME(side_names, st->error_side));
	if (st->error) {
		const char *text = strerror(st->error);

		ctl_json_string(text, strlen(text));
	} else {
		fputs("null", stdout);
	}
	fputs("\n}\n", stdout);
}

static void status_print_plain(const struct vdisk_ioc_mirror_status *st)
{
	char a[32], b[32], c[32];
	size_t i;
	int n = 0;

	printf("job: %llu\nstate: %s\n", (unsigned long long)st->job_id,
	       fmt_state(st, a, sizeof(a)));
	ctl_plain_string("target", st->target, sizeof(st->target));
	printf("sync: %s\nmode: %s\n",
	       ENUM_NAME(ctl_mirror_sync_names, st->sync),
	       ENUM_NAME(ctl_mirror_mode_names, st->copy_mode));
	printf("progress: %.1f%% (%s of %s copied, %s dirty)\n",
	       status_percent(st), fmt_bytes(st->bytes_done, a, sizeof(a)),
	       fmt_bytes(st->bytes_total, b, sizeof(b)),
	       fmt_bytes(st->bytes_dirty, c, sizeof(c)));
	printf("bytes_done: %llu\nbytes_total: %llu\nbytes_dirty: %llu\n",
	       (unsigned long long)st->bytes_done,
	       (unsigned long long)st->bytes_total,
	       (unsigned long long)st->bytes_dirty);
	printf("ops_in_flight: %u\nthroughput: %s/s\n", st->ops_in_flight,
	       fmt_bytes(st->throughput, a, sizeof(a)));
	printf("elapsed: %s\n",
	       fmt_duration(st->elapsed_ns / NS_PER_SEC, a, sizeof(a)));
	size_format(st->speed, a, sizeof(a));
	printf("speed_limit: %s%s\n", st->speed ? a : "none",
	       st->speed ? "/s" : "");
	size_format(st->granularity, a, sizeof(a));
	size_format(st->buf_size, b, sizeof(b));
	printf("granularity: %s\nbuf_size: %s\n", a, b);
	printf("on_source_error: %s\non_target_error: %s\n",
	       ENUM_NAME(ctl_mirror_on_error_names, st->on_source_error),
	       ENUM_NAME(ctl_mirror_on_error_names, st->on_target_error));
	fputs("flags:", stdout);
	for (i = 0; i < NELEM(status_flags); i++)
		if (st->flags & status_flags[i].bit)
			n += printf(" %s", status_flags[i].word);
	puts(n ? "" : " none");
	if (st->error)
		printf("error: %s (%s, errno %d)\n", strerror(st->error),
		       ENUM_NAME(side_names, st->error_side), st->error);
	else
		puts("error: none");
}

/* ---- waiting --------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {
		.tv_sec = (time_t)(ns / NS_PER_SEC),
		.tv_nsec = (long)(ns % NS_PER_SEC),
	};

	/* A signal cuts it short; the caller polls and sleeps again. */
	nanosleep(&ts, NULL);
}

/* --progress on stderr: a bar redrawn in place on a terminal, else lines. */
struct mirror_progress {
	bool tty;
	int drawn;                      /* length of the bar line on screen */
	uint64_t last_ns;               /* of the last plain line */
	bool error_noted;               /* "paused after an error" said */
};

/* "running 45.2% (4.5 GiB of 10.0 GiB), 120.5 MiB/s, ETA 51s" */
static void progress_text(const struct vdisk_ioc_mirror_status *st,
			  char *buf, size_t len)
{
	char state[48], done[24], total[24], rate[24], tail[48] = "";
	uint64_t left;

	fmt_state(st, state, sizeof(state));
	fmt_bytes(st->bytes_done, done, sizeof(done));
	fmt_bytes(st->bytes_total, total, sizeof(total));
	fmt_bytes(st->throughput, rate, sizeof(rate));
	left = st->bytes_total > st->bytes_done ?
	       st->bytes_total - st->bytes_done : 0;
	if (status_is_ready(st) && !state_is_final(st->state)) {
		fmt_bytes(st->bytes_dirty, tail, sizeof(tail));
		strcat(tail, " dirty");
	} else if (st->state == VDISK_MIRROR_RUNNING && st->throughput &&
		   left) {
		strcpy(tail, "ETA ");
		fmt_duration((left + st->throughput - 1) / st->throughput,
			     tail + 4, sizeof(tail) - 4);
	}
	snprintf(buf, len, "%s %.1f%% (%s of %s), %s/s%s%s", state,
		 status_percent(st), done, total, rate, *tail ? ", " : "",
		 tail);
}

static void progress_show(struct mirror_progress *pr,
			  const struct ctl_mirror_args *m,
			  const struct vdisk_ioc_mirror_status *st,
			  uint64_t now, bool last)
{
	char text[160], bar[MIRROR_BAR_WIDTH + 1];
	int fill, n;

	progress_text(st, text, sizeof(text));
	if (!pr->tty) {
		if (!last && pr->last_ns && now - pr->last_ns < NS_PER_SEC)
			return;
		fprintf(stderr, PROG ": %s: mirror job %llu: %s\n", m->file,
			(unsigned long long)st->job_id, text);
		pr->last_ns = now;
		return;
	}
	fill = (int)(status_percent(st) * MIRROR_BAR_WIDTH / 100.0);
	memset(bar, '#', MIRROR_BAR_WIDTH);
	memset(bar + fill, '-', (size_t)(MIRROR_BAR_WIDTH - fill));
	bar[MIRROR_BAR_WIDTH] = '\0';
	/* Spaces over what a longer line before left on the screen. */
	n = fprintf(stderr, "\r[%s] %s", bar, text);
	fprintf(stderr, "%*s%s", pr->drawn > n ? pr->drawn - n : 0, "",
		last ? "\n" : "");
	pr->drawn = last ? 0 : n;
}

/* Once per wait: a job stopped by an error waits for 'resume'. */
static void note_error_pause(struct mirror_progress *pr,
			     const struct ctl_mirror_args *m,
			     const struct vdisk_ioc_mirror_status *st)
{
	uint32_t other = VDISK_MIRROR_ST_USER_PAUSED | VDISK_MIRROR_ST_DRAINED;

	if (pr->error_noted || st->state != VDISK_MIRROR_PAUSED ||
	    !st->error || (st->flags & other))
		return;
	pr->error_noted = true;
	if (pr->drawn) {
		fputc('\n', stderr);
		pr->drawn = 0;
	}
	fprintf(stderr, PROG ": %s: mirror job %llu paused after an error on "
		"the %s: %s; '" PROG " mirror resume %s' retries\n", m->file,
		(unsigned long long)st->job_id,
		ENUM_NAME(side_names, st->error_side), strerror(st->error),
		m->file);
}

/*
 * Poll job job_id on fd until it is ready (ready) or over, for at most
 * m->timeout seconds, with m->progress on stderr.  Returns 0 with the last
 * status in *st when ready or over; -ETIMEDOUT; -ESRCH if the image's job
 * is no longer job_id (*st shows what it is); or the ioctl's -errno.
 */
static int mirror_poll(const struct ctl_mirror_args *m, int fd, bool ready,
		       uint64_t job_id, struct vdisk_ioc_mirror_status *st)
{
	struct mirror_progress pr = { .tty = isatty(STDERR_FILENO) == 1 };
	uint64_t now = now_ns(), deadline = 0;
	int ret;

	if (m->timeout)
		deadline = now + (uint64_t)m->timeout * NS_PER_SEC;
	for (;;) {
		ret = mirror_get_status(fd, st);
		if (ret < 0)
			break;
		if (st->job_id != job_id || st->state == VDISK_MIRROR_NONE) {
			ret = -ESRCH;
			break;
		}
		now = now_ns();
		if (state_is_final(st->state) || (ready && status_is_ready(st)))
			break;
		if (m->progress)
			progress_show(&pr, m, st, now, false);
		note_error_pause(&pr, m, st);
		if (deadline && now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		sleep_ns(deadline && deadline - now < MIRROR_POLL_NS ?
			 deadline - now : MIRROR_POLL_NS);
	}
	/* The last state, unless the message of a failure follows. */
	if (m->progress && ret == 0)
		progress_show(&pr, m, st, now, true);
	else if (pr.drawn)
		fputc('\n', stderr);
	return ret;
}

int ctl_mirror_report_end(const struct ctl_mirror_args *m,
			  const struct vdisk_ioc_mirror_status *st)
{
	unsigned long long id = (unsigned long long)st->job_id;

	if (st->state == VDISK_MIRROR_FAILED && st->error)
		fprintf(stderr, PROG ": %s: mirror job %llu failed: %s (on "
			"the %s)\n", m->file, id, strerror(st->error),
			ENUM_NAME(side_names, st->error_side));
	else if (st->state == VDISK_MIRROR_FAILED)
		fprintf(stderr, PROG ": %s: mirror job %llu failed\n",
			m->file, id);
	else if (st->state == VDISK_MIRROR_CANCELLED)
		fprintf(stderr, PROG ": %s: mirror job %llu was cancelled; "
			"the target is %s\n", m->file, id,
			st->flags & VDISK_MIRROR_ST_CONSISTENT ?
			"a consistent copy" : "incomplete");
	else
		fprintf(stderr, PROG ": %s: mirror job %llu is %s\n", m->file,
			id, ctl_mirror_state_name(st->state));
	return EXIT_FAILURE;
}

/* A mirror_poll that did not get to a status.  Returns 1. */
static int mirror_poll_fail(const struct ctl_mirror_args *m, int ret,
			    uint64_t job_id,
			    const struct vdisk_ioc_mirror_status *st,
			    const char *goes_on)
{
	char state[48];

	if (ret == -ETIMEDOUT)
		fprintf(stderr, PROG ": %s: %s: timed out after %u s with "
			"the job %s; %s\n", m->file, m->name, m->timeout,
			fmt_state(st, state, sizeof(state)), goes_on);
	else if (ret == -ESRCH && st->job_id)
		fprintf(stderr, PROG ": %s: mirror job %llu is gone, replaced "
			"by job %llu\n", m->file, (unsigned long long)job_id,
			(unsigned long long)st->job_id);
	else if (ret == -ESRCH)
		fprintf(stderr, PROG ": %s: mirror job %llu is gone\n",
			m->file, (unsigned long long)job_id);
	else
		ctl_mirror_fail(m, VDISK_IOC_MIRROR_STATUS, -ret);
	return EXIT_FAILURE;
}

/*
 * The image's job, into *st.  Returns 0, or 1 after a message if there is
 * none or the status failed.
 */
static int mirror_job(const struct ctl_mirror_args *m, int fd,
		      struct vdisk_ioc_mirror_status *st)
{
	int ret = mirror_get_status(fd, st);

	if (ret < 0)
		return ctl_mirror_fail(m, VDISK_IOC_MIRROR_STATUS, -ret);
	if (st->state == VDISK_MIRROR_NONE) {
		fprintf(stderr, PROG ": no mirror job on %s\n", m->file);
		return EXIT_FAILURE;
	}
	return 0;
}

/* ---- the sub-commands that watch a job ------------------------------- */

int ctl_mirror_status(const struct ctl_mirror_args *m)
{
	struct vdisk_ioc_mirror_status st;
	int fd, ret;

	fd = ctl_image_open(m->file, O_RDONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	ret = mirror_get_status(fd, &st);
	close(fd);
	if (ret < 0)
		return ctl_mirror_fail(m, VDISK_IOC_MIRROR_STATUS, -ret);
	if (m->json)
		status_print_json(&st);
	else if (st.state == VDISK_MIRROR_NONE)
		printf("no mirror job on %s\n", m->file);
	else
		status_print_plain(&st);
	return ctl_finish_stdout();
}

int ctl_mirror_wait(const struct ctl_mirror_args *m)
{
	struct vdisk_ioc_mirror_status st;
	uint64_t id;
	int fd, ret;

	fd = ctl_image_open(m->file, O_RDONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	ret = mirror_job(m, fd, &st);
	if (ret) {
		close(fd);
		return ret;
	}
	id = st.job_id;
	ret = mirror_poll(m, fd, m->ready, id, &st);
	close(fd);
	if (ret < 0)
		return mirror_poll_fail(m, ret, id, &st, "it goes on");
	if (m->ready ? status_is_ready(&st) :
		       st.state == VDISK_MIRROR_CONCLUDED)
		return 0;
	return ctl_mirror_report_end(m, &st);
}

int ctl_mirror_send_wait(const struct ctl_mirror_args *m, unsigned long cmd,
			 void *arg, uint32_t want,
			 struct vdisk_ioc_mirror_status *st,
			 const char *goes_on)
{
	uint64_t id;
	int fd, ret;

	fd = ctl_image_open(m->file, O_WRONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	ret = mirror_job(m, fd, st);
	if (ret)
		goto out_close;
	id = st->job_id;
	ret = ctl_ioctl(fd, cmd, arg);
	if (ret < 0) {
		ret = ctl_mirror_fail(m, cmd, -ret);
		goto out_close;
	}
	ret = mirror_poll(m, fd, false, id, st);
	if (ret < 0)
		ret = mirror_poll_fail(m, ret, id, st, goes_on);
	else if (st->state != want)
		ret = ctl_mirror_report_end(m, st);
out_close:
	close(fd);
	return ret;
}

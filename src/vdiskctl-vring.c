/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdiskctl vring-test: run a workload of a simulated guest on an image,
 * over a virtio-blk device inside the daemon (a real split virtqueue, the
 * engine's one request path), and show what it measured.
 *
 *   vring-test FILE [OPTIONS]    VRING_TEST_START, then VRING_TEST_STATUS
 *                                every 100 ms until the test is over, and
 *                                VRING_TEST_STOP on SIGINT/TERM/HUP
 *   vring-test FILE --status     VRING_TEST_STATUS once
 *
 * Design notes.  Options are named after fio's.  Their syntax is checked
 * here (exit 2, before FILE is opened); their meaning (bs a multiple of
 * 512, the queue a power of two, the depth within it, the area inside the
 * image) is the daemon's to judge, and a refusal is an operation that
 * failed (exit 1, EINVAL).  Defaults are the ABI's, sent explicitly, so
 * that what is shown is what ran.  A workload that only reads opens FILE
 * read-only: the daemon runs it for anyone who may read the image.
 *
 * Waiting is polling, as for mirror jobs, and it is bounded: the test
 * must make progress (a request or a verified block completes) at least
 * every VRING_STALL_NS, and a time-based run must leave its run phase
 * within VRING_STALL_NS after its seconds; else vdiskctl stops it and
 * fails.  Signals are blocked and read from a signalfd, which is also the
 * poll's sleep, so none slips between two checks; the first one sends
 * STOP and the wait goes on until the test is over, a second one exits at
 * once.  The results are printed in vdiskctl-vring-report.c.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "size.h"
#include "vdisk-ioctl.h"
#include "vdiskctl-internal.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

#define NS_PER_SEC       1000000000ull
#define VRING_POLL_MS    100
#define VRING_STALL_NS   (60 * NS_PER_SEC)
#define VRING_SECONDS_MAX 31536000u      /* a year */

/* ---- the command line ------------------------------------------------ */

enum vring_opt {
	VO_RW, VO_BS, VO_IODEPTH, VO_QUEUE_SIZE, VO_SIZE, VO_OFFSET,
	VO_SECONDS, VO_REQUESTS, VO_RWMIX_READ, VO_FLUSH_EVERY, VO_VERIFY,
	VO_EVENT_IDX, VO_INDIRECT, VO_INJECT, VO_JSON, VO_STATUS,
	VO_NR
};

#define VO(o) (1u << (o))
/* Options that describe a workload (--status takes none of them). */
#define VO_WORKLOAD ((VO(VO_NR) - 1) & ~(VO(VO_JSON) | VO(VO_STATUS)))

static const struct {
	const char *name;
	const char *value;              /* what it takes, or NULL */
} vring_opts[VO_NR] = {
	[VO_RW] = { "--rw", "randread, randwrite, read, write or randrw" },
	[VO_BS] = { "--bs", "SIZE" },
	[VO_IODEPTH] = { "--iodepth", "N" },
	[VO_QUEUE_SIZE] = { "--queue-size", "N" },
	[VO_SIZE] = { "--size", "SIZE" },
	[VO_OFFSET] = { "--offset", "SIZE" },
	[VO_SECONDS] = { "--seconds", "S" },
	[VO_REQUESTS] = { "--requests", "N" },
	[VO_RWMIX_READ] = { "--rwmix-read", "PCT" },
	[VO_FLUSH_EVERY] = { "--flush-every", "N" },
	[VO_VERIFY] = { "--verify", NULL },
	[VO_EVENT_IDX] = { "--event-idx", "on or off" },
	[VO_INDIRECT] = { "--indirect", "on or off" },
	[VO_INJECT] = { "--inject", "loop, too-long, out-of-bounds, "
			"nested-indirect, bad-indirect-len or read-after-write" },
	[VO_JSON] = { "--json", NULL },
	[VO_STATUS] = { "--status", NULL },
};

const char *const ctl_vring_rw_names[CTL_VRING_RW_NR] = {
	[VDISK_VRING_RW_READ] = "read",
	[VDISK_VRING_RW_WRITE] = "write",
	[VDISK_VRING_RW_RANDREAD] = "randread",
	[VDISK_VRING_RW_RANDWRITE] = "randwrite",
	[VDISK_VRING_RW_RANDRW] = "randrw",
};

const char *const ctl_vring_inject_names[CTL_VRING_INJECT_NR] = {
	[VDISK_VRING_INJECT_NONE] = "none",
	[VDISK_VRING_INJECT_LOOP] = "loop",
	[VDISK_VRING_INJECT_TOO_LONG] = "too-long",
	[VDISK_VRING_INJECT_OUT_OF_BOUNDS] = "out-of-bounds",
	[VDISK_VRING_INJECT_NESTED_INDIRECT] = "nested-indirect",
	[VDISK_VRING_INJECT_BAD_INDIRECT_LEN] = "bad-indirect-len",
	[VDISK_VRING_INJECT_READ_AFTER_WRITE] = "read-after-write",
};

_Static_assert(VDISK_VRING_RW_RANDRW + 1 == CTL_VRING_RW_NR, "rw names");
_Static_assert(VDISK_VRING_INJECT_READ_AFTER_WRITE + 1 == CTL_VRING_INJECT_NR,
	       "inject names");

static int __attribute__((format(printf, 1, 2)))
vring_usage(const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = ctl_vusage_error("vring-test", fmt, ap);
	va_end(ap);
	return ret;
}

/* Set *out to the index of s in names[0..n).  Returns 0 or -EINVAL. */
static int parse_name(const char *s, const char *const *names, size_t n,
		      uint32_t *out)
{
	for (uint32_t i = 0; i < n; i++) {
		if (names[i] && !strcmp(s, names[i])) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

/* A number option o in [min, max] into *out.  0 or a usage error. */
static int set_uint(int o, const char *val, uint64_t min, uint64_t max,
		    uint64_t *out)
{
	if (ctl_parse_uint(val, max, out) < 0 || *out < min)
		return vring_usage("invalid %s '%s': a whole number from "
				   "%llu to %llu", vring_opts[o].name, val,
				   (unsigned long long)min,
				   (unsigned long long)max);
	return 0;
}

/* A size option o, at least min and at most max bytes.  0 or usage. */
static int set_size(int o, const char *val, uint64_t min, uint64_t max,
		    uint64_t *out)
{
	if (size_parse(val, out) < 0 || *out < min || *out > max)
		return vring_usage("invalid %s '%s': a size such as 4K or 1M%s",
				   vring_opts[o].name, val,
				   min ? ", not 0" : "");
	return 0;
}

static int set_on_off(int o, const char *val, bool *out)
{
	if (!strcmp(val, "on"))
		*out = true;
	else if (!strcmp(val, "off"))
		*out = false;
	else
		return vring_usage("invalid %s '%s': on or off",
				   vring_opts[o].name, val);
	return 0;
}

/* Set option o from val (NULL for a flag).  Returns 0 or a usage error. */
static int vring_set_option(struct ctl_vring_args *v, int o, const char *val)
{
	struct vdisk_ioc_vring_start *s = &v->start;
	uint64_t n = 0;
	int ret = 0;

	switch (o) {
	case VO_RW:
		if (parse_name(val, ctl_vring_rw_names, CTL_VRING_RW_NR,
			       &s->rw) < 0)
			return vring_usage("invalid --rw '%s': %s", val,
					   vring_opts[o].value);
		break;
	case VO_INJECT:
		if (parse_name(val, ctl_vring_inject_names + 1,
			       CTL_VRING_INJECT_NR - 1, &s->inject) < 0)
			return vring_usage("invalid --inject '%s': %s", val,
					   vring_opts[o].value);
		s->inject++;            /* names[0] is "none" */
		break;
	case VO_BS:
		ret = set_size(o, val, 1, UINT32_MAX, &n);
		s->bs = (uint32_t)n;
		break;
	case VO_IODEPTH:
	case VO_QUEUE_SIZE:
		ret = set_uint(o, val, 1, UINT32_MAX, &n);
		*(o == VO_IODEPTH ? &s->iodepth : &s->queue_size) = (uint32_t)n;
		break;
	case VO_SIZE:
		ret = set_size(o, val, 1, UINT64_MAX, &s->region);
		break;
	case VO_OFFSET:
		ret = set_size(o, val, 0, UINT64_MAX, &s->offset);
		break;
	case VO_SECONDS:
		ret = set_uint(o, val, 1, VRING_SECONDS_MAX, &n);
		s->seconds = (uint32_t)n;
		break;
	case VO_REQUESTS:
		ret = set_uint(o, val, 1, UINT64_MAX, &s->requests);
		break;
	case VO_RWMIX_READ:
		ret = set_uint(o, val, 0, 100, &n);
		v->rwmix_read = (uint32_t)n;
		break;
	case VO_FLUSH_EVERY:
		ret = set_uint(o, val, 0, UINT32_MAX, &n);
		s->flush_every = (uint32_t)n;
		break;
	case VO_EVENT_IDX:
		ret = set_on_off(o, val, &v->event_idx);
		break;
	case VO_INDIRECT:
		ret = set_on_off(o, val, &v->indirect);
		break;
	case VO_VERIFY:
		s->flags |= VDISK_VRING_VERIFY;
		break;
	case VO_JSON:
		v->json = true;
		break;
	case VO_STATUS:
		v->status = true;
		break;
	}
	return ret;
}

/*
 * Parse the option at argv[*i]: "--name", "--name=VALUE" or "--name VALUE".
 * Returns 0 or a usage error's exit status.
 */
static int vring_option(struct ctl_vring_args *v, int argc, char **argv,
			int *i, unsigned *given)
{
	const char *arg = argv[*i], *eq = strchr(arg, '='), *val = NULL;
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	int o;

	for (o = 0; o < VO_NR; o++)
		if (strlen(vring_opts[o].name) == len &&
		    !strncmp(arg, vring_opts[o].name, len))
			break;
	if (o == VO_NR)
		return vring_usage("unknown option '%s'", arg);
	if (*given & VO(o))
		return vring_usage("%s given twice", vring_opts[o].name);
	*given |= VO(o);
	if (!vring_opts[o].value) {
		if (eq)
			return vring_usage("%s takes no value",
					   vring_opts[o].name);
	} else if (eq) {
		val = eq + 1;
	} else if (*i + 1 < argc && strcmp(argv[*i + 1], "--")) {
		val = argv[++*i];
	} else {
		return vring_usage("%s needs %s", vring_opts[o].name,
				   vring_opts[o].value);
	}
	return vring_set_option(v, o, val);
}

/* The ABI's defaults, made explicit (what is shown is what runs). */
static void vring_defaults(struct ctl_vring_args *v)
{
	struct vdisk_ioc_vring_start *s = &v->start;

	memset(v, 0, sizeof(*v));
	s->version = VDISK_IOC_VERSION;
	s->size = sizeof(*s);
	s->rw = VDISK_VRING_RW_RANDREAD;
	s->bs = 4096;
	s->iodepth = 1;
	s->queue_size = 256;
	v->rwmix_read = 50;
	v->event_idx = true;
}

/* The combinations, once every option is known.  0 or a usage error. */
static int vring_check(struct ctl_vring_args *v, unsigned given)
{
	struct vdisk_ioc_vring_start *s = &v->start;

	if (v->status) {
		if (given & VO_WORKLOAD)
			return vring_usage("--status takes no workload "
					   "option");
		return 0;
	}
	if ((given & VO(VO_SECONDS)) && (given & VO(VO_REQUESTS)))
		return vring_usage("--seconds and --requests exclude each "
				   "other");
	if ((given & VO(VO_RWMIX_READ)) && s->rw != VDISK_VRING_RW_RANDRW)
		return vring_usage("--rwmix-read needs --rw randrw");
	if (!(given & (VO(VO_SECONDS) | VO(VO_REQUESTS))))
		s->seconds = 10;
	/* The ABI reads a zero percentage as its default: say it plainly. */
	if (s->rw == VDISK_VRING_RW_RANDRW && v->rwmix_read == 0)
		s->rw = VDISK_VRING_RW_RANDWRITE;
	else if (s->rw == VDISK_VRING_RW_RANDRW && v->rwmix_read == 100)
		s->rw = VDISK_VRING_RW_RANDREAD;
	s->rwmix_read = s->rw == VDISK_VRING_RW_RANDRW ? v->rwmix_read : 0;
	s->flags |= (v->event_idx ? VDISK_VRING_EVENT_IDX : 0) |
		    (v->indirect ? VDISK_VRING_INDIRECT : 0);
	return 0;
}

static int vring_parse(struct ctl_vring_args *v, int argc, char **argv)
{
	bool options_done = false;
	unsigned given = 0;
	int i, ret;

	vring_defaults(v);
	for (i = 0; i < argc; i++) {
		const char *arg = argv[i];

		if (!options_done && !strcmp(arg, "--")) {
			options_done = true;
		} else if (!options_done && arg[0] == '-' && arg[1]) {
			ret = vring_option(v, argc, argv, &i, &given);
			if (ret)
				return ret;
		} else if (!v->file) {
			v->file = arg;
		} else {
			return vring_usage("unexpected argument '%s'", arg);
		}
	}
	if (!v->file)
		return vring_usage("missing FILE");
	return vring_check(v, given);
}

/* ---- the ioctls --------------------------------------------------------- */

/* Why the daemon may have answered err to cmd, or NULL. */
static const char *vring_why(unsigned long cmd, int err)
{
	switch (err) {
	case ENOTTY:
		return "not a vdiskfs file, or a daemon without vring tests";
	case EBADF:
		return "a workload that writes needs a handle opened for "
		       "writing";
	case EBUSY:
		return "a vring test already runs on this image";
	case EROFS:
		return "the image is read-only";
	case EPERM:
		return cmd == VDISK_IOC_VRING_TEST_STOP ?
		       "only root, the image's owner or who started the test" :
		       "a workload that writes needs root or the image's owner";
	case EINVAL:
		if (cmd == VDISK_IOC_VRING_TEST_STOP)
			return "no test runs";
		if (cmd == VDISK_IOC_VRING_TEST_START)
			return "bad parameter: bs a multiple of 512 up to 4M, "
			       "queue size a power of two up to 32768, iodepth "
			       "at most the queue size, offset and size "
			       "multiples of 512 inside the image, a chain "
			       "within the queue";
		break;
	}
	return NULL;
}

int ctl_vring_fail(const char *file, unsigned long cmd, int err)
{
	const char *why = vring_why(cmd, err);
	const char *op = cmd == VDISK_IOC_VRING_TEST_START ? "start" :
			 cmd == VDISK_IOC_VRING_TEST_STOP ? "stop" : "status";

	fprintf(stderr, PROG ": %s: vring-test: %s: %s%s%s%s\n", file, op,
		strerror(err), why ? " (" : "", why ? why : "",
		why ? ")" : "");
	return EXIT_FAILURE;
}

static int vring_status(int fd, struct vdisk_ioc_vring_status *st)
{
	memset(st, 0, sizeof(*st));
	st->version = VDISK_IOC_VERSION;
	st->size = sizeof(*st);
	return ctl_ioctl(fd, VDISK_IOC_VRING_TEST_STATUS, st);
}

static int vring_stop(int fd)
{
	struct vdisk_ioc_vring_stop arg;

	memset(&arg, 0, sizeof(arg));
	arg.version = VDISK_IOC_VERSION;
	arg.size = sizeof(arg);
	return ctl_ioctl(fd, VDISK_IOC_VRING_TEST_STOP, &arg);
}

/* ---- waiting ------------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

bool ctl_vring_final(uint32_t state)
{
	return state == VDISK_VRING_DONE || state == VDISK_VRING_STOPPED ||
	       state == VDISK_VRING_FAILED;
}

/* Requests completed and blocks verified: what progress means. */
static uint64_t progress_count(const struct vdisk_ioc_vring_status *st)
{
	uint64_t n = st->verify_checked;

	for (int i = 0; i < VDISK_VRING_OP_NR; i++)
		n += st->ops[i];
	return n;
}

/* A wait on a test: what the poll loop keeps. */
struct vring_wait {
	const struct ctl_vring_args *v;
	int fd, sfd;
	uint64_t id;
	uint64_t start_ns, changed_ns, count;
	int sig;                        /* the first signal taken, or 0 */
	bool stop_sent, gave_up;
	struct ctl_vring_progress pr;
};

/* Send STOP once.  The test may have ended meanwhile (EINVAL). */
static void wait_stop(struct vring_wait *w)
{
	int ret;

	if (w->stop_sent)
		return;
	w->stop_sent = true;
	ret = vring_stop(w->fd);
	if (ret < 0 && ret != -EINVAL)
		ctl_vring_fail(w->v->file, VDISK_IOC_VRING_TEST_STOP, -ret);
}

/* Sleep one poll period, or less if a signal comes; take it. */
static int wait_sleep(struct vring_wait *w)
{
	struct pollfd pfd = { .fd = w->sfd, .events = POLLIN };
	struct signalfd_siginfo si;

	if (poll(&pfd, 1, VRING_POLL_MS) <= 0 || !(pfd.revents & POLLIN))
		return 0;
	if (read(w->sfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (w->sig)
		return -EINTR;          /* a second one: leave now */
	w->sig = (int)si.ssi_signo;
	ctl_vring_progress_end(&w->pr);
	fprintf(stderr, PROG ": %s: vring-test: stopping test %llu\n",
		w->v->file, (unsigned long long)w->id);
	wait_stop(w);
	return 0;
}

/* No progress for too long, or a run phase far past its seconds. */
static bool wait_stuck(struct vring_wait *w,
		       const struct vdisk_ioc_vring_status *st, uint64_t now)
{
	uint64_t seconds = w->v->start.seconds;
	uint64_t count = progress_count(st);

	if (count != w->count) {
		w->count = count;
		w->changed_ns = now;
	}
	if (now - w->changed_ns > VRING_STALL_NS)
		return true;
	return !w->v->status && seconds && st->state == VDISK_VRING_RUNNING &&
	       now - w->start_ns > seconds * NS_PER_SEC + VRING_STALL_NS;
}

/*
 * Poll the test until it is over.  Returns 0 with its last status in *st,
 * or 1 after a message (the status failed, the test is gone, a second
 * signal).  Sets w->gave_up if vdiskctl stopped a stuck test.
 */
static int vring_wait(struct vring_wait *w, struct vdisk_ioc_vring_status *st)
{
	uint64_t now, stop_deadline = 0;
	int ret;

	w->start_ns = w->changed_ns = now_ns();
	for (;;) {
		ret = vring_status(w->fd, st);
		if (ret < 0) {
			ctl_vring_progress_end(&w->pr);
			return ctl_vring_fail(w->v->file,
					      VDISK_IOC_VRING_TEST_STATUS,
					      -ret);
		}
		if (st->test_id != w->id || st->state == VDISK_VRING_NONE) {
			ctl_vring_progress_end(&w->pr);
			fprintf(stderr, PROG ": %s: vring-test: test %llu is "
				"gone (the image was closed?)\n", w->v->file,
				(unsigned long long)w->id);
			return EXIT_FAILURE;
		}
		now = now_ns();
		if (ctl_vring_final(st->state))
			break;
		if (!w->gave_up && wait_stuck(w, st, now)) {
			w->gave_up = true;
			ctl_vring_progress_end(&w->pr);
			fprintf(stderr, PROG ": %s: vring-test: test %llu made "
				"no progress for %llu s; stopping it\n",
				w->v->file, (unsigned long long)w->id,
				VRING_STALL_NS / NS_PER_SEC);
			wait_stop(w);
			stop_deadline = now + 10 * NS_PER_SEC;
		}
		if (stop_deadline && now > stop_deadline) {
			fprintf(stderr, PROG ": %s: vring-test: test %llu "
				"does not stop\n", w->v->file,
				(unsigned long long)w->id);
			return EXIT_FAILURE;
		}
		ctl_vring_progress_show(&w->pr, st, now);
		if (wait_sleep(w) < 0)
			return 128 + w->sig;
	}
	ctl_vring_progress_end(&w->pr);
	return 0;
}

/* ---- the command ---------------------------------------------------------- */

static const int vring_signals[] = { SIGINT, SIGTERM, SIGHUP };

/*
 * Block the signals that would stop us (those not ignored: nohup keeps
 * them ignored) and read them from a signalfd.  Returns it, or -1 after
 * a message.
 */
static int vring_signalfd(void)
{
	struct sigaction sa;
	sigset_t set;
	int sfd;

	sigemptyset(&set);
	for (size_t i = 0; i < NELEM(vring_signals); i++) {
		if (sigaction(vring_signals[i], NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_IGN)
			continue;
		sigaddset(&set, vring_signals[i]);
	}
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		ctl_sys_fail("signalfd", errno);
		return -1;
	}
	return sfd;
}

static bool start_writes(const struct vdisk_ioc_vring_start *s)
{
	return (s->rw != VDISK_VRING_RW_READ &&
		s->rw != VDISK_VRING_RW_RANDREAD) || s->flush_every > 0;
}

static int vring_run(struct ctl_vring_args *v)
{
	struct vring_wait w = { .v = v };
	struct vdisk_ioc_vring_status st;
	int ret;

	w.sfd = vring_signalfd();
	if (w.sfd < 0)
		return EXIT_FAILURE;
	w.fd = ctl_image_open(v->file, start_writes(&v->start) ? O_WRONLY :
			      O_RDONLY);
	if (w.fd < 0) {
		close(w.sfd);
		return EXIT_FAILURE;
	}
	ret = ctl_ioctl(w.fd, VDISK_IOC_VRING_TEST_START, &v->start);
	if (ret < 0) {
		ret = ctl_vring_fail(v->file, VDISK_IOC_VRING_TEST_START, -ret);
		goto out_close;
	}
	w.id = v->start.test_id;
	ctl_vring_progress_init(&w.pr, w.id);
	ret = vring_wait(&w, &st);
	if (ret)
		goto out_close;
	ret = ctl_vring_report(v, &st, w.sig, w.gave_up);
out_close:
	close(w.fd);
	close(w.sfd);
	return ret;
}

static int vring_show_status(const struct ctl_vring_args *v)
{
	struct vdisk_ioc_vring_status st;
	int fd, ret;

	fd = ctl_image_open(v->file, O_RDONLY);
	if (fd < 0)
		return EXIT_FAILURE;
	ret = vring_status(fd, &st);
	close(fd);
	if (ret < 0)
		return ctl_vring_fail(v->file, VDISK_IOC_VRING_TEST_STATUS,
				      -ret);
	if (!v->json && st.state == VDISK_VRING_NONE) {
		printf("no vring test on %s\n", v->file);
		return ctl_finish_stdout();
	}
	ctl_vring_print(v, &st, 0, false);
	return ctl_finish_stdout();
}

static const char vring_help[] =
"Usage: " PROG " vring-test FILE [OPTIONS]\n"
"       " PROG " vring-test FILE --status [--json]\n"
"\n"
"Run a workload of a simulated guest on the image behind FILE: inside the\n"
"daemon, a guest drives a virtio-blk device over a real split virtqueue\n"
"into the image, as a VM would.  Shows progress on a terminal, then the\n"
"results: requests, IOPS, MiB/s, latency, statuses, verification, kicks\n"
"and interrupts.  Options are named after fio's.  A workload that writes\n"
"(--rw other than read or randread, or --flush-every) needs write\n"
"permission on FILE and root or the image's owner.  SIGINT stops the test\n"
"and shows what was done.\n"
"\n"
"  --rw MODE             randread (default), randwrite, read, write or\n"
"                        randrw\n"
"  --bs SIZE             block size, a multiple of 512 (default 4K)\n"
"  --iodepth N           requests in flight (default 1)\n"
"  --queue-size N        virtqueue size, a power of two (default 256)\n"
"  --offset SIZE         start of the area used (default 0)\n"
"  --size SIZE           length of the area (default: to the end)\n"
"  --seconds S           run time (default 10)\n"
"  --requests N          stop after N reads and writes instead\n"
"  --rwmix-read PCT      randrw: percent of reads (default 50)\n"
"  --flush-every N       a FLUSH after every N writes\n"
"  --verify              check every read; read back what was written\n"
"  --event-idx on|off    negotiate VIRTIO_RING_F_EVENT_IDX (default on)\n"
"  --indirect on|off     indirect descriptors (default off)\n"
"  --inject KIND         after a few requests send a broken chain: loop,\n"
"                        too-long, out-of-bounds, nested-indirect,\n"
"                        bad-indirect-len or read-after-write; the device\n"
"                        must break the queue\n"
"  --json                the results as one JSON object\n"
"  --status              show the image's current or last test, start none\n"
"\n"
"Exit status: 0 the test ran its course without an unexpected failure\n"
"(with --inject: the device broke the queue), 1 a request failed\n"
"unexpectedly, verification found a mismatch, the test failed or was\n"
"stopped by someone else, or the operation failed; 2 usage error;\n"
"128+N after signal N.\n";

/* Is --help or -h among the arguments (before any "--")? */
static bool vring_wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

int ctl_vring(const struct ctl_args *args)
{
	struct ctl_vring_args v;
	int ret;

	if (vring_wants_help(args->argc, args->argv)) {
		fputs(vring_help, stdout);
		return ctl_finish_stdout();
	}
	ret = vring_parse(&v, args->argc, args->argv);
	if (ret)
		return ret;
	if (v.status)
		return vring_show_status(&v);
	v.started = true;
	return vring_run(&v);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdiskctl vring-test: what a test shows.  The progress line while it
 * runs, the results (a table, or one JSON object with every field of the
 * status and the figures derived from them), and the exit status they
 * call for.
 *
 * Figures: IOPS count the reads and writes (the workload; flushes and
 * GET_ID have their own rows) over the test's elapsed time, read-back
 * pass included; interrupts per request divide the interrupts the device
 * raised by every request it completed.  The progress line's rates are
 * over the last second or so, from the difference of two polls.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "size.h"
#include "vdisk-ioctl.h"
#include "vdiskctl-internal.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define NS_PER_SEC 1000000000ull
#define MIB        1048576.0

static const char *const state_names[] = {
	[VDISK_VRING_NONE] = "none",
	[VDISK_VRING_RUNNING] = "running",
	[VDISK_VRING_VERIFYING] = "verifying",
	[VDISK_VRING_DONE] = "done",
	[VDISK_VRING_STOPPED] = "stopped",
	[VDISK_VRING_FAILED] = "failed",
};

/* The request types: table row, JSON key. */
static const struct {
	const char *row, *key;
} op_names[] = {
	[VDISK_VRING_OP_IN] = { "read", "in" },
	[VDISK_VRING_OP_OUT] = { "write", "out" },
	[VDISK_VRING_OP_FLUSH] = { "flush", "flush" },
	[VDISK_VRING_OP_GET_ID] = { "get-id", "get_id" },
	[VDISK_VRING_OP_DISCARD] = { "discard", "discard" },
	[VDISK_VRING_OP_WRITE_ZEROES] = { "write-zeroes", "write_zeroes" },
};

/* names[v], or "unknown-V" (a daemon newer than us) in a static buffer. */
static const char *state_name(uint32_t v)
{
	static char buf[24];

	if (v < NELEM(state_names))
		return state_names[v];
	snprintf(buf, sizeof(buf), "unknown-%u", v);
	return buf;
}

/* ---- figures ---------------------------------------------------------- */

static double secs(const struct vdisk_ioc_vring_status *st)
{
	return (double)st->elapsed_ns / (double)NS_PER_SEC;
}

/* n per second of the test, 0 before any time passed. */
static double rate(const struct vdisk_ioc_vring_status *st, uint64_t n)
{
	return st->elapsed_ns ? (double)n / secs(st) : 0.0;
}

static uint64_t rw_ops(const struct vdisk_ioc_vring_status *st)
{
	return st->ops[VDISK_VRING_OP_IN] + st->ops[VDISK_VRING_OP_OUT];
}

static uint64_t all_ops(const struct vdisk_ioc_vring_status *st)
{
	uint64_t n = 0;

	for (size_t i = 0; i < VDISK_VRING_OP_NR; i++)
		n += st->ops[i];
	return n;
}

static double irqs_per_request(const struct vdisk_ioc_vring_status *st)
{
	uint64_t n = all_ops(st);

	return n ? (double)st->irqs_raised / (double)n : 0.0;
}

/* "950 ns", "85.1 us", "1.23 ms", "2.50 s" */
static const char *fmt_ns(uint64_t ns, char *buf, size_t len)
{
	if (ns < 1000)
		snprintf(buf, len, "%llu ns", (unsigned long long)ns);
	else if (ns < 1000000)
		snprintf(buf, len, "%.1f us", (double)ns / 1e3);
	else if (ns < NS_PER_SEC)
		snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", (double)ns / 1e9);
	return buf;
}

/* "12.3k", "1.25M", "950" */
static const char *fmt_count(double v, char *buf, size_t len)
{
	if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

/* ---- progress ----------------------------------------------------------- */

void ctl_vring_progress_init(struct ctl_vring_progress *pr, uint64_t id)
{
	memset(pr, 0, sizeof(*pr));
	pr->tty = isatty(STDERR_FILENO) == 1;
	pr->id = id;
}

void ctl_vring_progress_show(struct ctl_vring_progress *pr,
			     const struct vdisk_ioc_vring_status *st,
			     uint64_t now_ns)
{
	uint64_t ops = rw_ops(st), bytes = st->bytes_read + st->bytes_written;
	char iops[24];
	int n;

	if (!pr->tty)
		return;
	if (pr->last_ns && now_ns - pr->last_ns >= NS_PER_SEC) {
		double dt = (double)(now_ns - pr->last_ns) / (double)NS_PER_SEC;

		pr->iops = (double)(ops - pr->last_ops) / dt;
		pr->mib_s = (double)(bytes - pr->last_bytes) / dt / MIB;
		pr->windowed = true;
	}
	if (!pr->windowed) {
		/* Until a second passed: the average since the start. */
		pr->iops = rate(st, ops);
		pr->mib_s = rate(st, bytes) / MIB;
	}
	if (!pr->last_ns || now_ns - pr->last_ns >= NS_PER_SEC) {
		pr->last_ns = now_ns;
		pr->last_ops = ops;
		pr->last_bytes = bytes;
	}
	n = fprintf(stderr, "\rvring test %llu: %s %.1fs, %s IOPS, %.1f MiB/s",
		    (unsigned long long)pr->id, state_name(st->state),
		    secs(st), fmt_count(pr->iops, iops, sizeof(iops)),
		    pr->mib_s);
	/* Spaces over what a longer line before left on the screen. */
	fprintf(stderr, "%*s", pr->drawn > n ? pr->drawn - n : 0, "");
	pr->drawn = n;
}

void ctl_vring_progress_end(struct ctl_vring_progress *pr)
{
	if (!pr->drawn)
		return;
	fprintf(stderr, "\r%*s\r", pr->drawn, "");
	pr->drawn = 0;
}

/* ---- the table ------------------------------------------------------------ */

static void print_workload(const struct ctl_vring_args *v)
{
	const struct vdisk_ioc_vring_start *s = &v->start;
	char bs[SIZE_FORMAT_MAX], off[SIZE_FORMAT_MAX], size[SIZE_FORMAT_MAX];

	size_format(s->bs, bs, sizeof(bs));
	size_format(s->offset, off, sizeof(off));
	size_format(s->region, size, sizeof(size));
	printf("workload: %s", ctl_vring_rw_names[s->rw]);
	if (s->rw == VDISK_VRING_RW_RANDRW)
		printf(" rwmix_read=%u", s->rwmix_read);
	printf(" bs=%s iodepth=%u queue_size=%u offset=%s size=%s", bs,
	       s->iodepth, s->queue_size, off, s->region ? size : "all");
	if (s->requests)
		printf(" requests=%llu", (unsigned long long)s->requests);
	else
		printf(" seconds=%u", s->seconds);
	if (s->flush_every)
		printf(" flush_every=%u", s->flush_every);
	printf("%s event_idx=%s indirect=%s",
	       s->flags & VDISK_VRING_VERIFY ? " verify" : "",
	       s->flags & VDISK_VRING_EVENT_IDX ? "on" : "off",
	       s->flags & VDISK_VRING_INDIRECT ? "on" : "off");
	if (s->inject)
		printf(" inject=%s", ctl_vring_inject_names[s->inject]);
	putchar('\n');
}

static void print_ops(const struct vdisk_ioc_vring_status *st)
{
	uint64_t bytes[VDISK_VRING_OP_NR] = {
		[VDISK_VRING_OP_IN] = st->bytes_read,
		[VDISK_VRING_OP_OUT] = st->bytes_written,
	};

	printf("%-14s %12s %12s %10s\n", "op", "requests", "IOPS", "MiB/s");
	for (size_t i = 0; i < NELEM(op_names); i++) {
		char iops[24] = "-", mib[24] = "-";

		/* Reads and writes always; the others when there were any. */
		if (i > VDISK_VRING_OP_OUT && !st->ops[i])
			continue;
		if (i != VDISK_VRING_OP_GET_ID)
			snprintf(iops, sizeof(iops), "%.1f",
				 rate(st, st->ops[i]));
		if (i <= VDISK_VRING_OP_OUT)
			snprintf(mib, sizeof(mib), "%.2f",
				 rate(st, bytes[i]) / MIB);
		printf("%-14s %12llu %12s %10s\n", op_names[i].row,
		       (unsigned long long)st->ops[i], iops, mib);
	}
	printf("%-14s %12llu %12.1f %10.2f\n", "read+write",
	       (unsigned long long)rw_ops(st), rate(st, rw_ops(st)),
	       rate(st, st->bytes_read + st->bytes_written) / MIB);
}

static void print_plain(const struct ctl_vring_args *v,
			const struct vdisk_ioc_vring_status *st, int sig,
			bool gave_up)
{
	char a[32], b[32], c[32];

	printf("vring test %llu on %s: %s%s\n", (unsigned long long)st->test_id,
	       v->file, state_name(st->state),
	       sig ? " (interrupted)" : gave_up ? " (stopped: no progress)" :
	       "");
	if (v->started)
		print_workload(v);
	printf("elapsed: %.2f s\n", secs(st));
	print_ops(st);
	printf("latency: mean %s, p50 %s, p99 %s\n",
	       fmt_ns(st->lat_mean_ns, a, sizeof(a)),
	       fmt_ns(st->lat_p50_ns, b, sizeof(b)),
	       fmt_ns(st->lat_p99_ns, c, sizeof(c)));
	printf("status: ok %llu, ioerr %llu, unsupp %llu, unexpected %llu\n",
	       (unsigned long long)st->status_ok,
	       (unsigned long long)st->status_ioerr,
	       (unsigned long long)st->status_unsupp,
	       (unsigned long long)st->unexpected);
	printf("verify: checked %llu, mismatches %llu\n",
	       (unsigned long long)st->verify_checked,
	       (unsigned long long)st->verify_mismatches);
	printf("kicks: sent %llu, suppressed %llu\n",
	       (unsigned long long)st->kicks_sent,
	       (unsigned long long)st->kicks_suppressed);
	printf("interrupts: raised %llu, suppressed %llu, per request %.3f\n",
	       (unsigned long long)st->irqs_raised,
	       (unsigned long long)st->irqs_suppressed, irqs_per_request(st));
	if (st->flags & VDISK_VRING_ST_BROKEN)
		printf("queue: broken (device error %u)\n", st->device_error);
	else
		puts("queue: working");
	if (v->started && v->start.inject)
		printf("inject: %s\n", ctl_vring_inject_names[v->start.inject]);
	if (st->verdict[0])
		ctl_plain_string("verdict", st->verdict, sizeof(st->verdict));
	if (st->state == VDISK_VRING_FAILED)
		printf("error: %s (errno %d)\n", strerror(st->error),
		       st->error);
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_workload(const struct ctl_vring_args *v)
{
	const struct vdisk_ioc_vring_start *s = &v->start;

	if (!v->started) {
		fputs("  \"workload\": null,\n", stdout);
		return;
	}
	printf("  \"workload\": {\n    \"rw\": \"%s\",\n    \"bs\": %u,\n"
	       "    \"iodepth\": %u,\n    \"queue_size\": %u,\n"
	       "    \"offset\": %llu,\n    \"size\": %llu,\n"
	       "    \"seconds\": %u,\n    \"requests\": %llu,\n"
	       "    \"rwmix_read\": %u,\n    \"flush_every\": %u,\n"
	       "    \"verify\": %s,\n    \"event_idx\": %s,\n"
	       "    \"indirect\": %s,\n    \"inject\": \"%s\"\n  },\n",
	       ctl_vring_rw_names[s->rw], s->bs, s->iodepth, s->queue_size,
	       (unsigned long long)s->offset, (unsigned long long)s->region,
	       s->requests ? 0 : s->seconds,
	       (unsigned long long)s->requests, s->rwmix_read,
	       s->flush_every,
	       s->flags & VDISK_VRING_VERIFY ? "true" : "false",
	       s->flags & VDISK_VRING_EVENT_IDX ? "true" : "false",
	       s->flags & VDISK_VRING_INDIRECT ? "true" : "false",
	       ctl_vring_inject_names[s->inject]);
}

static void json_counters(const struct vdisk_ioc_vring_status *st)
{
	const struct {
		const char *key;
		uint64_t value;
	} f[] = {
		{ "bytes_read", st->bytes_read },
		{ "bytes_written", st->bytes_written },
		{ "status_ok", st->status_ok },
		{ "status_ioerr", st->status_ioerr },
		{ "status_unsupp", st->status_unsupp },
		{ "unexpected", st->unexpected },
		{ "verify_checked", st->verify_checked },
		{ "verify_mismatches", st->verify_mismatches },
		{ "kicks_sent", st->kicks_sent },
		{ "kicks_suppressed", st->kicks_suppressed },
		{ "irqs_raised", st->irqs_raised },
		{ "irqs_suppressed", st->irqs_suppressed },
		{ "lat_mean_ns", st->lat_mean_ns },
		{ "lat_p50_ns", st->lat_p50_ns },
		{ "lat_p99_ns", st->lat_p99_ns },
		{ "elapsed_ns", st->elapsed_ns },
	};

	fputs("  \"ops\": {", stdout);
	for (size_t i = 0; i < NELEM(op_names); i++)
		printf("%s\"%s\": %llu", i ? ", " : "", op_names[i].key,
		       (unsigned long long)st->ops[i]);
	fputs("},\n", stdout);
	for (size_t i = 0; i < NELEM(f); i++)
		printf("  \"%s\": %llu,\n", f[i].key,
		       (unsigned long long)f[i].value);
}

static int problems(const struct ctl_vring_args *v,
		    const struct vdisk_ioc_vring_status *st, bool gave_up,
		    bool say);

static void print_json(const struct ctl_vring_args *v,
		       const struct vdisk_ioc_vring_status *st, int sig,
		       bool gave_up)
{
	printf("{\n  \"test_id\": %llu,\n  \"state\": \"%s\",\n",
	       (unsigned long long)st->test_id, state_name(st->state));
	json_workload(v);
	json_counters(st);
	printf("  \"iops\": %.1f,\n  \"read_iops\": %.1f,\n"
	       "  \"write_iops\": %.1f,\n  \"read_mib_s\": %.3f,\n"
	       "  \"write_mib_s\": %.3f,\n  \"mib_s\": %.3f,\n"
	       "  \"irqs_per_request\": %.4f,\n",
	       rate(st, rw_ops(st)), rate(st, st->ops[VDISK_VRING_OP_IN]),
	       rate(st, st->ops[VDISK_VRING_OP_OUT]),
	       rate(st, st->bytes_read) / MIB,
	       rate(st, st->bytes_written) / MIB,
	       rate(st, st->bytes_read + st->bytes_written) / MIB,
	       irqs_per_request(st));
	printf("  \"flags\": %u,\n  \"broken\": %s,\n  \"device_error\": %u,\n"
	       "  \"verdict\": ", st->flags,
	       st->flags & VDISK_VRING_ST_BROKEN ? "true" : "false",
	       st->device_error);
	ctl_json_string(st->verdict, sizeof(st->verdict));
	printf(",\n  \"error\": %d,\n  \"error_text\": ", st->error);
	if (st->error) {
		const char *text = strerror(st->error);

		ctl_json_string(text, strlen(text));
	} else {
		fputs("null", stdout);
	}
	if (v->started)
		printf(",\n  \"interrupted\": %s,\n  \"gave_up\": %s,\n"
		       "  \"ok\": %s\n}\n", sig ? "true" : "false",
		       gave_up ? "true" : "false",
		       !sig && !problems(v, st, gave_up, false) ?
		       "true" : "false");
	else
		fputs(",\n  \"interrupted\": null,\n  \"gave_up\": null,\n"
		      "  \"ok\": null\n}\n", stdout);
}

void ctl_vring_print(const struct ctl_vring_args *v,
		     const struct vdisk_ioc_vring_status *st, int sig,
		     bool gave_up)
{
	if (v->json)
		print_json(v, st, sig, gave_up);
	else
		print_plain(v, st, sig, gave_up);
}

/* ---- the verdict ---------------------------------------------------------- */

static void __attribute__((format(printf, 3, 4)))
problem(const struct ctl_vring_args *v, bool say, const char *fmt, ...)
{
	va_list ap;

	if (!say)
		return;
	fprintf(stderr, PROG ": %s: vring-test: ", v->file);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* What went wrong in the test v started; said on stderr if say. */
static int problems(const struct ctl_vring_args *v,
		    const struct vdisk_ioc_vring_status *st, bool gave_up,
		    bool say)
{
	uint32_t inject = v->start.inject;
	bool broken = st->flags & VDISK_VRING_ST_BROKEN;
	int n = 0;

	if (st->state == VDISK_VRING_FAILED && ++n)
		problem(v, say, "the test failed: %s", st->error ?
			strerror(st->error) : "unknown error");
	if (st->unexpected && ++n)
		problem(v, say, "%llu request(s) failed unexpectedly",
			(unsigned long long)st->unexpected);
	if (st->verify_mismatches && ++n)
		problem(v, say, "verify found %llu mismatch(es)",
			(unsigned long long)st->verify_mismatches);
	if (inject && !broken && ++n)
		problem(v, say, "the device did not break the queue on the "
			"injected %s chain", ctl_vring_inject_names[inject]);
	if (!inject && broken && ++n)
		problem(v, say, "the device broke the queue (error %u): %.*s",
			st->device_error, (int)sizeof(st->verdict),
			st->verdict);
	if (gave_up && ++n)
		problem(v, say, "stopped after making no progress");
	else if (st->state == VDISK_VRING_STOPPED && ++n)
		problem(v, say, "the test was stopped before its end (by "
			"another vdiskctl, or the daemon's shutdown)");
	return n;
}

int ctl_vring_report(const struct ctl_vring_args *v,
		     const struct vdisk_ioc_vring_status *st, int sig,
		     bool gave_up)
{
	int ret, n;

	ctl_vring_print(v, st, sig, gave_up);
	ret = ctl_finish_stdout();
	if (sig)
		return 128 + sig;
	n = problems(v, st, gave_up, true);
	return n ? EXIT_FAILURE : ret;
}

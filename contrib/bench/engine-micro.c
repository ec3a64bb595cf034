/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Micro-benchmarks of the engine core, each against the cheapest thing that
 * does the same job without the engine, measured in one run.
 *
 *  1. Coroutine round trip: co_enter into a coroutine that loops on
 *     co_yield, against a bare swapcontext(3) ping-pong between two
 *     ucontext_t.  swapcontext is what a naive ucontext coroutine costs, so
 *     it is the floor any coroutine library must stay near (target: ratio
 *     at most 1.2).
 *  2. Bottom-half latency in one thread: loop_bh_schedule followed by the
 *     non-blocking loop_poll that runs it.  Nothing outside the engine
 *     does exactly this, so there is no peer; the figure is reported so
 *     that regressions show.
 *  3. Cross-thread hand-over: a coroutine of the main thread's context
 *     moves to an iothread and back with co_reschedule_self, against two
 *     threads that ping-pong through a pair of blocking eventfds.  The
 *     eventfd pair is the least any two threads that sleep while idle must
 *     pay (one write and one blocking read per hop), and the engine's
 *     notifier is an eventfd too (target: ratio at most 1.5).  Both pairs
 *     of threads are pinned the same way, to one CPU unless --split-cpus
 *     is given (see handover_setup for why).
 *
 * Every measurement is warmed up, then repeated; the report shows the
 * median of the repetitions.  Our repetitions and the peer's are
 * interleaved (alternating which goes first), so that noise on the machine
 * hits both sides alike and the ratio stays meaningful.
 *
 * The program is a benchmark: it exits 0 whether or not targets are met,
 * 1 if a measurement could not be set up, 2 on bad options.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "compiler.h"
#include "coroutine.h"
#include "iothread.h"
#include "loop.h"

#define PROG "engine-micro"

#define REPEAT_DEFAULT 5
#define REPEAT_MAX 1000
#define ITERATIONS_MAX 1000000000ull

/* The peer coroutine's stack; swap_peer_fn barely uses any. */
#define SWAP_STACK_SIZE (64u * 1024)

/* Written to the request eventfd to make the peer thread exit. */
#define EFD_STOP 2

struct bench_env;

/* Run n iterations; store the elapsed time of the timed part in *ns. */
typedef int bench_run_fn(struct bench_env *env, uint64_t n, uint64_t *ns);

struct bench_case {
	const char *name;
	const char *peer_name;          /* NULL: no peer */
	double target;                  /* highest good ratio; 0: none */
	uint64_t default_iterations;
	uint64_t split_iterations;      /* default with --split-cpus; 0: same */
	int (*setup)(struct bench_env *env);
	void (*teardown)(struct bench_env *env);
	bench_run_fn *ours;
	bench_run_fn *peer;
};

struct bench_opts {
	uint64_t iterations;            /* 0: each case's default */
	unsigned repeat;
	bool split_cpus;
	bool csv;
};

struct bench_result {
	uint64_t iterations;
	double ours, ours_min, ours_max;        /* ns per operation */
	double peer, peer_min, peer_max;
	double ratio;
};

/*
 * Everything the cases share; main thread only, except where noted.  What
 * the hand-over coroutine reads in the iothread was written before it was
 * first entered, and each hop's BH lock orders it.
 */
struct bench_env {
	struct loop *main_ctx;          /* the main thread's home context */

	/* case 1 */
	bool co_stop;                   /* tells yield_loop_co to return */
	ucontext_t uc_main;
	ucontext_t uc_peer;
	void *swap_stack;

	/* case 2 */
	struct loop_bh count_bh;
	uint64_t bh_count;

	/* case 3 */
	bool split_cpus;                /* main and the other thread apart */
	cpu_set_t saved_affinity;       /* main's, restored at teardown */
	struct iothread *iothread;
	struct loop *io_ctx;
	uint64_t handover_n;            /* read by the coroutine, both threads */
	bool handover_done;             /* set by the coroutine, in main */
	int efd_req;                    /* main writes, peer thread reads */
	int efd_resp;                   /* peer thread writes, main reads */
	pthread_t efd_thread;
};

/* ---- 1. coroutine round trip vs swapcontext --------------------------- */

static void coroutine_fn yield_loop_co(void *opaque)
{
	struct bench_env *env = opaque;

	while (!env->co_stop)
		co_yield();
}

static int co_roundtrip_run(struct bench_env *env, uint64_t n, uint64_t *ns)
{
	struct coroutine *co = co_create(yield_loop_co, env);
	uint64_t start;

	if (!co)
		return -ENOMEM;
	env->co_stop = false;
	/* The first entry starts the coroutine; time only the loop. */
	co_enter(co);
	start = loop_now_ns();
	for (uint64_t i = 0; i < n; i++)
		co_enter(co);
	*ns = loop_now_ns() - start;
	/* Let it return, which puts it back in the pool. */
	env->co_stop = true;
	co_enter(co);
	return 0;
}

/* makecontext passes only ints, so the peer finds its pair here. */
static struct bench_env *swap_env;

static void swap_peer_fn(void)
{
	for (;;)
		swapcontext(&swap_env->uc_peer, &swap_env->uc_main);
}

static int swap_setup(struct bench_env *env)
{
	env->swap_stack = malloc(SWAP_STACK_SIZE);
	if (!env->swap_stack)
		return -ENOMEM;
	if (getcontext(&env->uc_peer) < 0) {
		int ret = -errno;

		free(env->swap_stack);
		env->swap_stack = NULL;
		return ret;
	}
	env->uc_peer.uc_stack.ss_sp = env->swap_stack;
	env->uc_peer.uc_stack.ss_size = SWAP_STACK_SIZE;
	env->uc_peer.uc_link = NULL;
	makecontext(&env->uc_peer, swap_peer_fn, 0);
	swap_env = env;
	/* Start the peer so that the timed loops all resume it. */
	swapcontext(&env->uc_main, &env->uc_peer);
	return 0;
}

static void swap_teardown(struct bench_env *env)
{
	/* The peer is parked in swapcontext for good; drop its stack. */
	free(env->swap_stack);
	env->swap_stack = NULL;
	swap_env = NULL;
}

static int swap_roundtrip_run(struct bench_env *env, uint64_t n, uint64_t *ns)
{
	uint64_t start = loop_now_ns();

	for (uint64_t i = 0; i < n; i++)
		swapcontext(&env->uc_main, &env->uc_peer);
	*ns = loop_now_ns() - start;
	return 0;
}

/* ---- 2. BH schedule-to-run in one thread ------------------------------ */

static void count_bh_cb(void *opaque)
{
	uint64_t *count = opaque;

	(*count)++;
}

static int bh_setup(struct bench_env *env)
{
	loop_bh_init(&env->count_bh, env->main_ctx, count_bh_cb,
		     &env->bh_count);
	return 0;
}

static void bh_teardown(struct bench_env *env)
{
	loop_bh_cancel(&env->count_bh);
}

static int bh_latency_run(struct bench_env *env, uint64_t n, uint64_t *ns)
{
	uint64_t start;

	env->bh_count = 0;
	start = loop_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		loop_bh_schedule(&env->count_bh);
		loop_poll(env->main_ctx, false);
	}
	*ns = loop_now_ns() - start;
	if (env->bh_count != n) {
		fprintf(stderr, "%s: the BH ran %" PRIu64 " times, not %"
			PRIu64 "\n", PROG, env->bh_count, n);
		return -EIO;
	}
	return 0;
}

/* ---- 3. cross-thread hand-over vs eventfd ping-pong ------------------- */

static void coroutine_fn handover_co(void *opaque)
{
	struct bench_env *env = opaque;

	for (uint64_t i = 0; i < env->handover_n; i++) {
		co_reschedule_self(env->io_ctx);
		co_reschedule_self(env->main_ctx);
	}
	/* Back in the main thread: LOOP_WAIT_WHILE sees this without a kick. */
	env->handover_done = true;
}

static int handover_run(struct bench_env *env, uint64_t n, uint64_t *ns)
{
	struct coroutine *co = co_create(handover_co, env);
	uint64_t start;

	if (!co)
		return -ENOMEM;
	env->handover_n = n;
	env->handover_done = false;
	start = loop_now_ns();
	/* Bound to main_ctx, the home context; it leaves at once. */
	co_enter(co);
	LOOP_WAIT_WHILE(env->main_ctx, !env->handover_done);
	*ns = loop_now_ns() - start;
	return 0;
}

static void *efd_peer_thread(void *opaque)
{
	struct bench_env *env = opaque;
	const uint64_t one = 1;
	uint64_t v;

	pthread_setname_np(pthread_self(), "bench-efd-peer");
	for (;;) {
		if (read(env->efd_req, &v, sizeof(v)) != sizeof(v)) {
			perror(PROG ": peer read");
			break;
		}
		if (v == EFD_STOP)
			break;
		if (write(env->efd_resp, &one, sizeof(one)) != sizeof(one)) {
			perror(PROG ": peer write");
			break;
		}
	}
	return NULL;
}

static int efd_pingpong_run(struct bench_env *env, uint64_t n, uint64_t *ns)
{
	const uint64_t one = 1;
	uint64_t start, v;

	start = loop_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (write(env->efd_req, &one, sizeof(one)) != sizeof(one))
			return -errno;
		if (read(env->efd_resp, &v, sizeof(v)) != sizeof(v))
			return -errno;
	}
	*ns = loop_now_ns() - start;
	return 0;
}

/* Pin the calling thread to one CPU.  Returns 0 or -errno. */
static int pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/*
 * Choose the CPUs of the main thread and of the other thread (iothread or
 * eventfd peer) among those main may use: the first one for both, or the
 * first two with split_cpus.  Returns 0 or -errno.
 */
static int pick_cpus(struct bench_env *env, int *main_cpu, int *other_cpu)
{
	int found = 0;
	int ret;

	ret = -pthread_getaffinity_np(pthread_self(),
				      sizeof(env->saved_affinity),
				      &env->saved_affinity);
	if (ret < 0)
		return ret;
	for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++) {
		if (!CPU_ISSET(cpu, &env->saved_affinity))
			continue;
		if (found++ == 0)
			*main_cpu = *other_cpu = cpu;
		else if (env->split_cpus)
			*other_cpu = cpu;
	}
	if (found == 0 || (env->split_cpus && found < 2))
		return -ENODEV;
	return 0;
}

/*
 * Where the two threads run decides the figure far more than any code: on
 * one CPU a hop is a context switch, on two an idle CPU must be woken,
 * which in a VM costs tens of microseconds of hypervisor time.  The
 * scheduler's choice sticks to a thread, so left alone it can put the
 * iothread next to main and the peer apart, or the reverse, and the ratio
 * would compare placements.  So both pairs get the same placement: the
 * iothread and the peer thread inherit other_cpu from main when they are
 * created, then main moves to main_cpu.
 */
static int handover_setup(struct bench_env *env)
{
	int main_cpu = -1, other_cpu = -1;
	int ret;

	ret = pick_cpus(env, &main_cpu, &other_cpu);
	if (ret < 0)
		return ret;
	ret = pin_self(other_cpu);
	if (ret < 0)
		return ret;
	env->efd_req = eventfd(0, EFD_CLOEXEC);
	if (env->efd_req < 0) {
		ret = -errno;
		goto out_restore_affinity;
	}
	env->efd_resp = eventfd(0, EFD_CLOEXEC);
	if (env->efd_resp < 0) {
		ret = -errno;
		goto out_close_req;
	}
	ret = -pthread_create(&env->efd_thread, NULL, efd_peer_thread, env);
	if (ret < 0)
		goto out_close_resp;
	ret = iothread_new(0, &env->iothread);
	if (ret < 0)
		goto out_stop_peer;
	env->io_ctx = iothread_get_ctx(env->iothread);
	ret = pin_self(main_cpu);
	if (ret < 0)
		goto out_free_iothread;
	return 0;

out_free_iothread:
	iothread_free(env->iothread);
	env->iothread = NULL;
	env->io_ctx = NULL;
out_stop_peer:
	{
		const uint64_t stop = EFD_STOP;

		if (write(env->efd_req, &stop, sizeof(stop)) == sizeof(stop))
			pthread_join(env->efd_thread, NULL);
	}
out_close_resp:
	close(env->efd_resp);
out_close_req:
	close(env->efd_req);
out_restore_affinity:
	pthread_setaffinity_np(pthread_self(), sizeof(env->saved_affinity),
			       &env->saved_affinity);
	return ret;
}

static void handover_teardown(struct bench_env *env)
{
	const uint64_t stop = EFD_STOP;

	iothread_free(env->iothread);
	env->iothread = NULL;
	env->io_ctx = NULL;
	if (write(env->efd_req, &stop, sizeof(stop)) == sizeof(stop))
		pthread_join(env->efd_thread, NULL);
	else
		perror(PROG ": stopping the eventfd peer");
	close(env->efd_resp);
	close(env->efd_req);
	pthread_setaffinity_np(pthread_self(), sizeof(env->saved_affinity),
			       &env->saved_affinity);
}

/* ---- the cases and the runner ---------------------------------------- */

static const struct bench_case cases[] = {
	{
		.name = "co enter+yield round trip",
		.peer_name = "swapcontext pair",
		.target = 1.2,
		.default_iterations = 1000000,
		.setup = swap_setup,
		.teardown = swap_teardown,
		.ours = co_roundtrip_run,
		.peer = swap_roundtrip_run,
	},
	{
		.name = "BH schedule+poll (1 thread)",
		.peer_name = NULL,
		.target = 0,
		.default_iterations = 1000000,
		.setup = bh_setup,
		.teardown = bh_teardown,
		.ours = bh_latency_run,
		.peer = NULL,
	},
	{
		.name = "cross-thread hand-over",
		.peer_name = "eventfd ping-pong",
		.target = 1.5,
		.default_iterations = 40000,
		/* Waking another CPU is ~10 times slower (in a VM). */
		.split_iterations = 5000,
		.setup = handover_setup,
		.teardown = handover_teardown,
		.ours = handover_run,
		.peer = efd_pingpong_run,
	},
};

static uint64_t case_iterations(const struct bench_case *c,
				const struct bench_opts *opts)
{
	if (opts->iterations)
		return opts->iterations;
	if (opts->split_cpus && c->split_iterations)
		return c->split_iterations;
	return c->default_iterations;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v.  An even count gives the mean of the two middle values. */
static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	if (n % 2)
		return v[n / 2];
	return (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int measure(const struct bench_case *c, bench_run_fn *run,
		   struct bench_env *env, uint64_t n, double *ns_per_op)
{
	uint64_t ns = 0;
	int ret = run(env, n, &ns);

	if (ret < 0) {
		fprintf(stderr, "%s: %s: %s\n", PROG, c->name, strerror(-ret));
		return ret;
	}
	*ns_per_op = (double)ns / (double)n;
	return 0;
}

static int run_repetitions(const struct bench_case *c, struct bench_env *env,
			   uint64_t n, unsigned repeat, double *ours,
			   double *peer)
{
	uint64_t warm = VDISK_MAX(n / 10, 1);
	double dummy;
	int ret;

	/* Warm-up: caches, branch predictors, the coroutine pool, and the
	 * CPU frequency of both threads. */
	ret = measure(c, c->ours, env, warm, &dummy);
	if (ret == 0 && c->peer)
		ret = measure(c, c->peer, env, warm, &dummy);
	/* Alternate which side goes first, so that neither always runs
	 * right after the other has warmed or disturbed the machine. */
	for (unsigned r = 0; ret == 0 && r < repeat; r++) {
		bool peer_first = c->peer && (r % 2);

		if (peer_first)
			ret = measure(c, c->peer, env, n, &peer[r]);
		if (ret == 0)
			ret = measure(c, c->ours, env, n, &ours[r]);
		if (ret == 0 && c->peer && !peer_first)
			ret = measure(c, c->peer, env, n, &peer[r]);
	}
	return ret;
}

static int run_case(const struct bench_case *c, struct bench_env *env,
		    const struct bench_opts *opts, struct bench_result *res)
{
	unsigned repeat = opts->repeat;
	double *ours = calloc(repeat, sizeof(*ours));
	double *peer = calloc(repeat, sizeof(*peer));
	int ret = -ENOMEM;

	if (!ours || !peer)
		goto out_free;
	ret = c->setup(env);
	if (ret < 0) {
		fprintf(stderr, "%s: %s: set-up failed: %s\n", PROG, c->name,
			ret == -ENODEV ? "too few CPUs available" :
			strerror(-ret));
		goto out_free;
	}
	memset(res, 0, sizeof(*res));
	res->iterations = case_iterations(c, opts);
	ret = run_repetitions(c, env, res->iterations, repeat, ours, peer);
	c->teardown(env);
	if (ret < 0)
		goto out_free;

	/* median() sorts, so min and max are at the ends afterwards. */
	res->ours = median(ours, repeat);
	res->ours_min = ours[0];
	res->ours_max = ours[repeat - 1];
	if (c->peer) {
		res->peer = median(peer, repeat);
		res->peer_min = peer[0];
		res->peer_max = peer[repeat - 1];
		res->ratio = res->ours / res->peer;
	}
out_free:
	free(peer);
	free(ours);
	return ret;
}

/* ---- output ----------------------------------------------------------- */

static const char *verdict(const struct bench_case *c,
			   const struct bench_result *res)
{
	if (!c->peer || c->target <= 0)
		return "-";
	return res->ratio <= c->target ? "ok" : "MISSED";
}

static void print_table(const struct bench_opts *opts,
			const struct bench_result *res)
{
	printf("%s: %u repetitions, medians in ns/op; cross-thread case on %s\n\n",
	       PROG, opts->repeat, opts->split_cpus ? "two CPUs" : "one CPU");
	printf("%-28s %13s  %-18s %10s %6s %7s  %s\n", "case", "vdiskfs ns/op",
	       "peer", "peer ns/op", "ratio", "target", "result");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct bench_case *c = &cases[i];
		char target[16];

		printf("%-28s %13.1f  ", c->name, res[i].ours);
		if (!c->peer) {
			printf("%-18s %10s %6s %7s  %s\n", "-", "-", "-", "-",
			       "-");
			continue;
		}
		snprintf(target, sizeof(target), "<=%.2f", c->target);
		printf("%-18s %10.1f %6.2f %7s  %s\n", c->peer_name,
		       res[i].peer, res[i].ratio, target, verdict(c, &res[i]));
	}
}

static void print_csv(const struct bench_result *res)
{
	printf("case,vdiskfs_ns_per_op,peer,peer_ns_per_op,ratio,target,"
	       "result,iterations,vdiskfs_min,vdiskfs_max,peer_min,peer_max\n");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct bench_case *c = &cases[i];
		const struct bench_result *r = &res[i];

		if (c->peer)
			printf("%s,%.2f,%s,%.2f,%.3f,%.2f,%s,%" PRIu64
			       ",%.2f,%.2f,%.2f,%.2f\n", c->name, r->ours,
			       c->peer_name, r->peer, r->ratio, c->target,
			       verdict(c, r), r->iterations, r->ours_min,
			       r->ours_max, r->peer_min, r->peer_max);
		else
			printf("%s,%.2f,,,,,,%" PRIu64 ",%.2f,%.2f,,\n",
			       c->name, r->ours, r->iterations, r->ours_min,
			       r->ours_max);
	}
}

/* ---- options ---------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: %s [--iterations N] [--repeat N] [--split-cpus] [--csv]\n"
"\n"
"Micro-benchmarks of the vdiskfs engine core, each against a peer that\n"
"does the same job without the engine:\n"
"  co enter+yield round trip  vs  a bare swapcontext ping-pong  (target 1.2)\n"
"  BH schedule+poll           in one thread, no peer\n"
"  cross-thread hand-over     vs  an eventfd ping-pong between two threads\n"
"                                 (target 1.5)\n"
"Each case is warmed up and repeated; ours and the peer's repetitions are\n"
"interleaved and the medians are reported.  Targets are on the ratio\n"
"vdiskfs/peer.  The exit status is 0 whether or not targets are met.\n"
"\n"
"Options:\n"
"  -n, --iterations N  iterations per repetition, for every case (default:\n"
"                      %" PRIu64 " / %" PRIu64 " / %" PRIu64
" in the order above;\n"
"                      %" PRIu64 " for the last with --split-cpus)\n"
"  -r, --repeat N      repetitions of each measurement (default %d)\n"
"      --split-cpus    run the two threads of the cross-thread case on two\n"
"                      CPUs (default: both on one CPU; either way ours and\n"
"                      the peer get the same placement)\n"
"      --csv           print CSV, with the min and max of the repetitions,\n"
"                      instead of a table\n"
"  -h, --help          show this help and exit\n",
		PROG, cases[0].default_iterations,
		cases[1].default_iterations, cases[2].default_iterations,
		cases[2].split_iterations, REPEAT_DEFAULT);
}

/* Parse a decimal count in [1, max].  Returns 0, -EINVAL or -ERANGE. */
static int parse_count(const char *s, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v > max)
		return -ERANGE;
	if (v == 0)
		return -EINVAL;
	*out = v;
	return 0;
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

enum { OPT_CSV = 256, OPT_SPLIT_CPUS };

static void parse_options(int argc, char **argv, struct bench_opts *opts)
{
	static const struct option long_opts[] = {
		{ "iterations", required_argument, NULL, 'n' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "split-cpus", no_argument, NULL, OPT_SPLIT_CPUS },
		{ "csv", no_argument, NULL, OPT_CSV },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":n:r:h", long_opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_count(optarg, ITERATIONS_MAX, &v) < 0)
				bad_option("--iterations: '%s' is not a count "
					   "from 1 to %llu", optarg,
					   ITERATIONS_MAX);
			opts->iterations = v;
			break;
		case 'r':
			if (parse_count(optarg, REPEAT_MAX, &v) < 0)
				bad_option("--repeat: '%s' is not a count "
					   "from 1 to %d", optarg, REPEAT_MAX);
			opts->repeat = (unsigned)v;
			break;
		case OPT_SPLIT_CPUS:
			opts->split_cpus = true;
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
			/* optopt: the unknown short option, the long one
			 * given a value it does not take, or 0. */
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

int main(int argc, char **argv)
{
	struct bench_opts opts = { .repeat = REPEAT_DEFAULT };
	struct bench_env env = { 0 };
	struct bench_result res[ARRAY_SIZE(cases)];
	int ret;

	parse_options(argc, argv, &opts);
	env.split_cpus = opts.split_cpus;

	ret = loop_new(&env.main_ctx);
	if (ret < 0) {
		fprintf(stderr, "%s: loop_new: %s\n", PROG, strerror(-ret));
		return 1;
	}
	loop_set_current(env.main_ctx);

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		ret = run_case(&cases[i], &env, &opts, &res[i]);
		if (ret < 0)
			goto out_free_ctx;
	}
	if (opts.csv)
		print_csv(res);
	else
		print_table(&opts, res);

out_free_ctx:
	loop_set_current(NULL);
	loop_free(env.main_ctx);
	return ret < 0 ? 1 : 0;
}

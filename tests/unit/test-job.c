/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the job state machine: every edge of the table, the refused
 * ones, pause counting (user pauses and drains), ready while paused, the
 * final states and the names.  No context is needed: job.c only reads the
 * clock.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "job.h"

#define S(x) JOB_##x

/* The edges job.h draws, as (from, to) pairs. */
static const enum job_state edges[][2] = {
	{ S(CREATED), S(RUNNING) },
	{ S(CREATED), S(FAILED) },
	{ S(CREATED), S(CANCELLED) },
	{ S(RUNNING), S(PAUSED) },
	{ S(RUNNING), S(READY) },
	{ S(RUNNING), S(FAILED) },
	{ S(RUNNING), S(CANCELLED) },
	{ S(PAUSED), S(RUNNING) },
	{ S(PAUSED), S(READY) },
	{ S(PAUSED), S(COMPLETING) },
	{ S(PAUSED), S(FAILED) },
	{ S(PAUSED), S(CANCELLED) },
	{ S(READY), S(PAUSED) },
	{ S(READY), S(COMPLETING) },
	{ S(READY), S(FAILED) },
	{ S(READY), S(CANCELLED) },
	{ S(COMPLETING), S(CONCLUDED) },
	{ S(COMPLETING), S(FAILED) },
	{ S(COMPLETING), S(CANCELLED) },
};

static bool is_edge(enum job_state from, enum job_state to)
{
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		if (edges[i][0] == from && edges[i][1] == to)
			return true;
	return false;
}

/*
 * A job in state s, reached through the machine itself.  paused_from
 * says which state a paused job was paused in (running or ready).
 */
static void job_in(struct job *j, enum job_state s, enum job_state paused_from)
{
	job_init(j, "test");
	if (s == S(CREATED))
		return;
	if (s == S(FAILED) || s == S(CANCELLED)) {
		assert_int_equal(job_set_state(j, s), 0);
		return;
	}
	assert_int_equal(job_set_state(j, S(RUNNING)), 0);
	if (s == S(RUNNING))
		return;
	if (s == S(PAUSED)) {
		if (paused_from == S(READY))
			assert_int_equal(job_set_state(j, S(READY)), 0);
		assert_int_equal(job_pause(j, true), 0);
		assert_int_equal(j->state, S(PAUSED));
		return;
	}
	assert_int_equal(job_set_state(j, S(READY)), 0);
	if (s == S(READY))
		return;
	assert_int_equal(job_set_state(j, S(COMPLETING)), 0);
	if (s == S(COMPLETING))
		return;
	assert_int_equal(job_set_state(j, S(CONCLUDED)), 0);
}

static void test_every_edge(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		enum job_state from = edges[i][0], to = edges[i][1];
		/* From paused, completing needs a job that was ready. */
		enum job_state pf = to == S(COMPLETING) ? S(READY) :
				    S(RUNNING);
		struct job j;

		job_in(&j, from, pf);
		if (to == S(PAUSED)) {
			/* Paused is entered by counting a pause. */
			assert_int_equal(job_pause(&j, false), 0);
		} else {
			/* With a pause counted, paused -> running or ready
			 * is only remembered (test_ready_while_paused); the
			 * bare edge is taken once no pause is left. */
			if (from == S(PAUSED))
				j.user_pauses = j.pause_count = 0;
			assert_int_equal(job_set_state(&j, to), 0);
		}
		assert_int_equal(j.state, to);
		assert_int_equal(job_state_is_final(to), j.end_ns != 0);
	}
}

static void test_invalid_edges(void **state)
{
	(void)state;
	for (int from = 0; from < JOB_STATE_NR; from++) {
		for (int to = -1; to <= JOB_STATE_NR; to++) {
			struct job j;

			if (to >= 0 && to < JOB_STATE_NR &&
			    is_edge((enum job_state)from, (enum job_state)to))
				continue;
			job_in(&j, (enum job_state)from, S(READY));
			assert_int_equal(job_set_state(&j, (enum job_state)to),
					 -EINVAL);
			assert_int_equal(j.state, from);
		}
	}
}

/* paused -> running is no way back to running for a job that was ready,
 * and a job that was never ready cannot complete from paused. */
static void test_paused_remembers(void **state)
{
	struct job j;

	(void)state;
	job_in(&j, S(PAUSED), S(READY));
	j.pause_count = j.user_pauses = 0;   /* forced: edge checks only */
	assert_int_equal(job_set_state(&j, S(RUNNING)), -EINVAL);
	assert_int_equal(j.state, S(PAUSED));
	job_in(&j, S(PAUSED), S(RUNNING));
	assert_int_equal(job_set_state(&j, S(COMPLETING)), -EINVAL);
	assert_int_equal(j.state, S(PAUSED));
	/* Paused without a pause counted would never resume. */
	job_in(&j, S(RUNNING), S(RUNNING));
	assert_int_equal(job_set_state(&j, S(PAUSED)), -EINVAL);
	assert_int_equal(j.state, S(RUNNING));
}

static void test_pause_counting(void **state)
{
	struct job j;

	(void)state;
	job_in(&j, S(RUNNING), S(RUNNING));
	assert_int_equal(job_resume(&j, true), -EINVAL);
	assert_int_equal(job_resume(&j, false), -EINVAL);

	/* A user pause and a drain: both must go before it runs again. */
	assert_int_equal(job_pause(&j, true), 0);
	assert_int_equal(j.state, S(PAUSED));
	assert_int_equal(job_pause(&j, false), 0);
	assert_int_equal(j.pause_count, 2);
	assert_int_equal(j.user_pauses, 1);
	assert_int_equal(job_resume(&j, true), 0);
	assert_int_equal(j.state, S(PAUSED));
	assert_int_equal(job_resume(&j, true), -EINVAL);   /* none left */
	assert_int_equal(job_resume(&j, false), 0);
	assert_int_equal(j.state, S(RUNNING));
	assert_int_equal(job_resume(&j, false), -EINVAL);

	/* Two drains. */
	assert_int_equal(job_pause(&j, false), 0);
	assert_int_equal(job_pause(&j, false), 0);
	assert_int_equal(job_resume(&j, true), -EINVAL);
	assert_int_equal(job_resume(&j, false), 0);
	assert_int_equal(j.state, S(PAUSED));
	assert_int_equal(job_resume(&j, false), 0);
	assert_int_equal(j.state, S(RUNNING));
	assert_int_equal(j.pause_count, 0);

	/* Ready pauses and comes back ready. */
	assert_int_equal(job_set_state(&j, S(READY)), 0);
	assert_int_equal(job_pause(&j, true), 0);
	assert_int_equal(j.state, S(PAUSED));
	assert_int_equal(job_resume(&j, true), 0);
	assert_int_equal(j.state, S(READY));
}

/* Becoming ready while paused shows once the pauses are gone. */
static void test_ready_while_paused(void **state)
{
	struct job j;

	(void)state;
	job_in(&j, S(RUNNING), S(RUNNING));
	assert_int_equal(job_pause(&j, false), 0);
	assert_int_equal(job_set_state(&j, S(READY)), 0);
	assert_int_equal(j.state, S(PAUSED));
	/* No way back to running now. */
	assert_int_equal(job_set_state(&j, S(RUNNING)), -EINVAL);
	assert_int_equal(job_resume(&j, false), 0);
	assert_int_equal(j.state, S(READY));
}

/* A job paused before it ran starts paused. */
static void test_pause_before_start(void **state)
{
	struct job j;

	(void)state;
	job_init(&j, "test");
	assert_int_equal(job_pause(&j, false), 0);
	assert_int_equal(j.state, S(CREATED));
	assert_int_equal(job_set_state(&j, S(RUNNING)), 0);
	assert_int_equal(j.state, S(PAUSED));
	assert_int_equal(job_resume(&j, false), 0);
	assert_int_equal(j.state, S(RUNNING));
}

static void test_final_states(void **state)
{
	static const enum job_state finals[] = {
		S(CONCLUDED), S(FAILED), S(CANCELLED),
	};

	(void)state;
	for (int s = 0; s < JOB_STATE_NR; s++)
		assert_int_equal(job_state_is_final((enum job_state)s),
				 s == S(CONCLUDED) || s == S(FAILED) ||
				 s == S(CANCELLED));
	for (size_t i = 0; i < 3; i++) {
		struct job j;
		uint64_t end;

		job_in(&j, finals[i], S(READY));
		end = j.end_ns;
		assert_true(end >= j.start_ns);
		assert_int_equal(job_elapsed_ns(&j), end - j.start_ns);
		assert_int_equal(job_pause(&j, true), -EINVAL);
		assert_int_equal(job_pause(&j, false), -EINVAL);
		for (int to = 0; to < JOB_STATE_NR; to++)
			assert_int_equal(job_set_state(&j, (enum job_state)to),
					 -EINVAL);
		assert_int_equal(j.state, finals[i]);
		assert_int_equal(j.end_ns, end);
	}
	/* Completing holds its own drain: no pause then. */
	{
		struct job j;

		job_in(&j, S(COMPLETING), S(READY));
		assert_int_equal(job_pause(&j, true), -EINVAL);
		assert_int_equal(job_pause(&j, false), -EINVAL);
		assert_int_equal(j.end_ns, 0);
	}
}

static void test_names_and_ids(void **state)
{
	static const char *const names[] = {
		"created", "running", "paused", "ready", "completing",
		"concluded", "failed", "cancelled",
	};
	struct job a, b;

	(void)state;
	for (int s = 0; s < JOB_STATE_NR; s++)
		assert_string_equal(job_state_name((enum job_state)s),
				    names[s]);
	assert_string_equal(job_state_name(JOB_STATE_NR), "?");
	assert_string_equal(job_state_name((enum job_state)-1), "?");
	job_init(&a, "mirror");
	job_init(&b, "mirror");
	assert_true(a.id >= 1);
	assert_true(b.id > a.id);
	assert_string_equal(a.type, "mirror");
	assert_int_equal(a.state, S(CREATED));
	assert_int_equal(a.error, 0);
	assert_int_equal(a.end_ns, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_edge),
		cmocka_unit_test(test_invalid_edges),
		cmocka_unit_test(test_paused_remembers),
		cmocka_unit_test(test_pause_counting),
		cmocka_unit_test(test_ready_while_paused),
		cmocka_unit_test(test_pause_before_start),
		cmocka_unit_test(test_final_states),
		cmocka_unit_test(test_names_and_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

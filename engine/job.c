/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The job state machine.  The edges are a table rather than code spread
 * over the job kinds, so that the ABI's states mean the same for every
 * kind and a wrong request answers -EINVAL instead of corrupting a job.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>

#include "job.h"
#include "loop.h"

#define BIT(s) (1u << (s))

/* allowed[from] is the set of states "from" may move to. */
static const unsigned job_edges[JOB_STATE_NR] = {
	[JOB_CREATED] = BIT(JOB_RUNNING) | BIT(JOB_FAILED) |
			BIT(JOB_CANCELLED),
	[JOB_RUNNING] = BIT(JOB_PAUSED) | BIT(JOB_READY) | BIT(JOB_FAILED) |
			BIT(JOB_CANCELLED),
	/* paused -> completing: a cancel after ready syncs even if paused. */
	[JOB_PAUSED] = BIT(JOB_RUNNING) | BIT(JOB_READY) |
		       BIT(JOB_COMPLETING) | BIT(JOB_FAILED) |
		       BIT(JOB_CANCELLED),
	[JOB_READY] = BIT(JOB_PAUSED) | BIT(JOB_COMPLETING) | BIT(JOB_FAILED) |
		      BIT(JOB_CANCELLED),
	[JOB_COMPLETING] = BIT(JOB_CONCLUDED) | BIT(JOB_FAILED) |
			   BIT(JOB_CANCELLED),
	/* Final states have no way out. */
};

static const char *const job_names[JOB_STATE_NR] = {
	[JOB_CREATED] = "created",
	[JOB_RUNNING] = "running",
	[JOB_PAUSED] = "paused",
	[JOB_READY] = "ready",
	[JOB_COMPLETING] = "completing",
	[JOB_CONCLUDED] = "concluded",
	[JOB_FAILED] = "failed",
	[JOB_CANCELLED] = "cancelled",
};

static atomic_uint_fast64_t job_next_id = 1;

void job_init(struct job *j, const char *type)
{
	*j = (struct job){
		.id = atomic_fetch_add(&job_next_id, 1),
		.type = type,
		.state = JOB_CREATED,
		.resume_state = JOB_RUNNING,
		.start_ns = loop_now_ns(),
	};
}

bool job_state_is_final(enum job_state s)
{
	return s == JOB_CONCLUDED || s == JOB_FAILED || s == JOB_CANCELLED;
}

int job_set_state(struct job *j, enum job_state to)
{
	enum job_state from = j->state;

	if ((unsigned)to >= JOB_STATE_NR || !(job_edges[from] & BIT(to)))
		return -EINVAL;
	/* Paused without a pause counted would never resume. */
	if (to == JOB_PAUSED && j->pause_count == 0)
		return -EINVAL;
	/* Paused goes back where it came from: a ready job does not run
	 * again, and only a job that was ready completes. */
	if (from == JOB_PAUSED &&
	    ((to == JOB_RUNNING && j->resume_state != JOB_RUNNING) ||
	     (to == JOB_COMPLETING && j->resume_state != JOB_READY)))
		return -EINVAL;
	/* While a pause is counted, running or ready is only where the job
	 * goes once the pauses are gone (started or ready while paused). */
	if ((to == JOB_RUNNING || to == JOB_READY) && j->pause_count > 0) {
		j->resume_state = to;
		j->state = JOB_PAUSED;
		return 0;
	}
	if (to == JOB_PAUSED)
		j->resume_state = from;
	j->state = to;
	if (job_state_is_final(to))
		j->end_ns = loop_now_ns();
	return 0;
}

int job_pause(struct job *j, bool user)
{
	if (job_state_is_final(j->state) || j->state == JOB_COMPLETING)
		return -EINVAL;
	if (j->pause_count++ == 0 &&
	    (j->state == JOB_RUNNING || j->state == JOB_READY))
		job_set_state(j, JOB_PAUSED);
	if (user)
		j->user_pauses++;
	return 0;
}

int job_resume(struct job *j, bool user)
{
	if (user ? j->user_pauses == 0 : j->pause_count <= j->user_pauses)
		return -EINVAL;
	if (user)
		j->user_pauses--;
	if (--j->pause_count == 0 && j->state == JOB_PAUSED)
		j->state = j->resume_state;
	return 0;
}

const char *job_state_name(enum job_state s)
{
	return (unsigned)s < JOB_STATE_NR ? job_names[s] : "?";
}

uint64_t job_elapsed_ns(const struct job *j)
{
	return (j->end_ns ? j->end_ns : loop_now_ns()) - j->start_ns;
}

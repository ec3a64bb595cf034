/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A background job on an image (the mirror is the one kind so far): its
 * identity, its state machine, pause counting and progress.
 *
 * States:
 *
 *   created -> running -> ready -> completing -> concluded
 *                 |  ^      | ^        |
 *                 v  |      v |        +-----> cancelled, failed
 *                 paused <--+-+
 *
 * Every non-final state may also go to failed or cancelled, and paused
 * to completing (a cancel after ready makes a final sync).  paused
 * remembers whether it was entered from running or ready and returns
 * there: paused -> running only for a job paused while running, paused ->
 * completing only for one that was ready.  paused is entered only with a
 * pause counted (job_pause).  concluded, failed and cancelled are final.
 * job_set_state refuses anything else with -EINVAL and leaves the state
 * alone.
 *
 * Pausing is counted: each drain of the image and each user pause adds
 * one; the job runs again when the count drops to zero.  A move to
 * running or ready while a pause is counted (a job started while drained,
 * or ready while paused) leaves the job paused and is where it goes once
 * the count drops to zero.
 *
 * Threading: a job belongs to its image's context; every function here runs
 * in that context's thread.  None of them blocks.
 */
#ifndef VDISK_JOB_H
#define VDISK_JOB_H

#include <stdbool.h>
#include <stdint.h>

enum job_state {
	JOB_CREATED,
	JOB_RUNNING,
	JOB_PAUSED,
	JOB_READY,
	JOB_COMPLETING,
	JOB_CONCLUDED,
	JOB_FAILED,
	JOB_CANCELLED,
	JOB_STATE_NR,
};

struct job {
	uint64_t id;                   /* unique in the process, from 1 */
	const char *type;              /* static: "mirror" */
	enum job_state state;
	enum job_state resume_state;   /* where paused returns */
	unsigned pause_count;          /* drains + user pauses */
	unsigned user_pauses;
	uint64_t done, total;          /* progress, in bytes */
	int error;                     /* last error, -errno, or 0 */
	uint64_t start_ns, end_ns;     /* loop_now_ns; end_ns 0 while live */
};

/* Initialise j in state created with a new id. */
void job_init(struct job *j, const char *type);

/*
 * Move to state to (see the rules above: with a pause counted, running and
 * ready are only remembered); 0, or -EINVAL if the machine has no such
 * edge.
 */
int job_set_state(struct job *j, enum job_state to);

/* Whether s is concluded, failed or cancelled. */
bool job_state_is_final(enum job_state s);

/*
 * Count one more pause (user: a user pause, else a drain).  The first
 * moves running or ready to paused.  -EINVAL in a final state or in
 * completing (the job holds its own drain then; see mirror.c).
 */
int job_pause(struct job *j, bool user);

/*
 * Drop one pause.  -EINVAL if there is none of that kind.  The last one
 * returns to the state paused was entered from.
 */
int job_resume(struct job *j, bool user);

/* "created", "running", ...; "?" for a value out of range. */
const char *job_state_name(enum job_state s);

/* Elapsed time of the job in ns (up to end_ns once final). */
uint64_t job_elapsed_ns(const struct job *j);

#endif /* VDISK_JOB_H */

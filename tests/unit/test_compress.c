/* The compressor thread alone: jobs come back as frames that decompress
 * to their input, in any number and order of waiting; a compressor freed
 * with jobs queued ends them without output (their owners compress
 * themselves); a claimed job not yet started comes back without output;
 * a job never submitted is done at once; the thread is named for top -H
 * and perf. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "check.h"
#include "store/compress.h"

#define JOBS 64

static char *
text(size_t len, unsigned seed)
{
	char *s = malloc(len);
	for (size_t i = 0; i < len; i++)
		s[i] = (i % 61 == 60) ? '\n' : (char)('a' + (seed * 31 + i * 7 + i / 17) % 26);
	return s;
}

static int
round_trips(const struct compress_job *j)
{
	char *back = malloc(j->len + 1);
	size_t n;
	int ok;

	if (j->out == NULL || back == NULL) {
		free(back);
		return 0;
	}
	n = ZSTD_decompress(back, j->len + 1, j->out, j->out_len);
	ok = !ZSTD_isError(n) && n == j->len && memcmp(back, j->src, j->len) == 0;
	free(back);
	return ok;
}

static void
test_jobs_round_trip(void)
{
	struct compressor *c = compressor_new();
	struct compress_job jobs[JOBS];
	char *in[JOBS];

	CHECK(c != NULL);
	for (int i = 0; i < JOBS; i++) {
		size_t len = 4096 + (size_t)i * 997;
		in[i] = text(len, (unsigned)i);
		compress_job_init(&jobs[i], in[i], len, 3);
		CHECK_INT(compressor_submit(c, &jobs[i]), 0);
	}
	/* waited for out of order: the last first, then the rest */
	compress_job_wait(&jobs[JOBS - 1]);
	CHECK(round_trips(&jobs[JOBS - 1]));
	for (int i = 0; i < JOBS; i++) {
		compress_job_wait(&jobs[i]);
		CHECK(round_trips(&jobs[i]));
		CHECK(jobs[i].out_len < jobs[i].len);	/* text compresses */
		compress_job_destroy(&jobs[i]);
		free(in[i]);
	}
	compressor_free(c);
}

static void
test_free_with_jobs_queued(void)
{
	struct compressor *c = compressor_new();
	struct compress_job jobs[JOBS];
	char *in = text(1 << 20, 5);
	int ended_empty = 0, compressed = 0;

	CHECK(c != NULL);
	for (int i = 0; i < JOBS; i++) {
		compress_job_init(&jobs[i], in, 1 << 20, 19);	/* slow: most stay queued */
		CHECK_INT(compressor_submit(c, &jobs[i]), 0);
	}
	compressor_free(c);
	for (int i = 0; i < JOBS; i++) {
		compress_job_wait(&jobs[i]);	/* must not block: every job ended */
		if (jobs[i].out == NULL)
			ended_empty++;
		else
			compressed += round_trips(&jobs[i]);
		compress_job_destroy(&jobs[i]);
	}
	CHECK_INT(ended_empty + compressed, JOBS);
	CHECK(ended_empty > 0);
	free(in);
}

/* A job the thread has not started is taken back by a claim (no output:
 * its owner compresses it); the queue goes on without it; a job already
 * done or running is waited for as before. */
static void
test_claim_takes_back_a_queued_job(void)
{
	struct compressor *c = compressor_new();
	struct compress_job jobs[8];
	char *in = text(1 << 20, 7);

	CHECK(c != NULL);
	for (int i = 0; i < 8; i++) {
		compress_job_init(&jobs[i], in, 1 << 20, 19);	/* slow: the last stay queued */
		CHECK_INT(compressor_submit(c, &jobs[i]), 0);
	}
	compress_job_claim(&jobs[7], 0);
	CHECK(jobs[7].out == NULL);
	compress_job_claim(&jobs[6], 1000000);		/* 1 ms: still behind the others */
	CHECK(jobs[6].out == NULL);
	compress_job_wait(&jobs[0]);
	CHECK(round_trips(&jobs[0]));
	compress_job_claim(&jobs[0], 0);		/* done: stays done */
	CHECK(round_trips(&jobs[0]));
	for (int i = 1; i < 6; i++) {
		compress_job_wait(&jobs[i]);		/* the queue was not broken */
		CHECK(round_trips(&jobs[i]));
	}
	for (int i = 0; i < 8; i++)
		compress_job_destroy(&jobs[i]);
	/* taken back last: the queue's tail was mended, a new job still runs */
	compress_job_init(&jobs[0], in, 4096, 1);
	CHECK_INT(compressor_submit(c, &jobs[0]), 0);
	compress_job_wait(&jobs[0]);
	CHECK(round_trips(&jobs[0]));
	compress_job_destroy(&jobs[0]);
	compressor_free(c);
	free(in);
}

static void
test_unsubmitted_job(void)
{
	struct compress_job j;

	compress_job_init(&j, "abc", 3, 3);
	compress_job_wait(&j);
	CHECK(j.out == NULL);
	compress_job_destroy(&j);
}

/* Whether a thread of this process is called NAME (/proc/self/task/TID/comm). */
static int
thread_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int found = 0;

	if (d == NULL)
		return 0;
	while (!found && (de = readdir(d)) != NULL) {
		char path[300], comm[64] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) != NULL)
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
		found = strcmp(comm, name) == 0;
	}
	closedir(d);
	return found;
}

static void
test_thread_is_named(void)
{
	struct compressor *c = compressor_new();
	struct compress_job j;
	char *in = text(8192, 9);

	CHECK(c != NULL);
	compress_job_init(&j, in, 8192, 1);
	CHECK_INT(compressor_submit(c, &j), 0);
	compress_job_wait(&j);	/* the thread has run: it named itself first */
	CHECK(thread_named("ev-compress"));
	compress_job_destroy(&j);
	compressor_free(c);
	free(in);
}

int
main(void)
{
	RUN(test_jobs_round_trip);
	RUN(test_free_with_jobs_queued);
	RUN(test_claim_takes_back_a_queued_job);
	RUN(test_unsubmitted_job);
	RUN(test_thread_is_named);
	DONE();
}

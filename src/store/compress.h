#ifndef EMAILVAULT_STORE_COMPRESS_H
#define EMAILVAULT_STORE_COMPRESS_H
/*
 * zstd compression of a message held in memory, on a thread of its own:
 * the event loop receives the next message while this one is compressed
 * (zstd was a quarter of the loop's time importing small mail).
 *
 * A job belongs to whoever submits it (a pack writer). The thread only
 * reads the job's input, fills its output and says when it is done; the
 * input must stay unchanged until then. Waiting on a job, destroying it or
 * freeing the compressor never blocks for longer than one compression.
 */
#include <pthread.h>
#include <stddef.h>

struct compressor;

struct compress_job {
	const void *src;
	size_t len;
	int level;
	void *out;			/* malloc'd zstd frame once done; NULL: compress it yourself */
	size_t out_len;
	/* Optional, set before submitting: more work on the thread, after the
	 * compression, over the first also_len bytes of the input. Its result
	 * is the owner's; NULL when the thread did not get to it. */
	void *(*also)(const void *src, size_t len);
	size_t also_len;
	void *also_out;
	int state;			/* private, as are the two below */
	struct compressor *queue;	/* where it was submitted */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct compress_job *next;
};

/* NULL when no thread can be started: callers compress themselves. */
struct compressor *compressor_new(void);
/* Waits for the job running; jobs still queued end with out == NULL. */
void compressor_free(struct compressor *c);

void compress_job_init(struct compress_job *j, const void *src, size_t len, int level);
/* 0, or -1 (the compressor stopped): the job is then done, out == NULL. */
int compressor_submit(struct compressor *c, struct compress_job *j);
/* Until the job is done (at once if never submitted). */
void compress_job_wait(struct compress_job *j);
/*
 * For a caller that needs the result now: waits up to WAIT_NS for the
 * thread to start the job, then takes it back if it has not (out == NULL:
 * the caller compresses it), else waits for it to end. With the CPU taken
 * (many sources, a busy server on the same machine) the thread may not run
 * for tens of milliseconds, and the event loop would wait all that time.
 */
void compress_job_claim(struct compress_job *j, long wait_ns);
/* Waits, then frees what the job holds. */
void compress_job_destroy(struct compress_job *j);

#endif

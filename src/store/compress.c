#include "store/compress.h"
#include "deadline.h"
#include "thread_name.h"

#include <stdlib.h>

#include <zstd.h>

enum { JOB_IDLE, JOB_QUEUED, JOB_DONE };

struct compressor {
	pthread_t thread;
	pthread_mutex_t mu;		/* guards the queue and stopping */
	pthread_cond_t work;
	struct compress_job *head, **tail;
	int stopping;
	ZSTD_CCtx *cctx;		/* the thread's */
};

static void
finish(struct compress_job *j, void *out, size_t out_len)
{
	pthread_mutex_lock(&j->mu);
	j->out = out;
	j->out_len = out_len;
	j->state = JOB_DONE;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);	/* the job may be freed from here on */
}

static void
run(struct compressor *c, struct compress_job *j)
{
	size_t bound = ZSTD_compressBound(j->len), n;
	void *out = malloc(bound ? bound : 1);

	if (out != NULL) {
		n = ZSTD_compressCCtx(c->cctx, out, bound, j->src, j->len, j->level);
		if (ZSTD_isError(n)) {
			free(out);
			out = NULL;
			n = 0;
		}
	} else {
		n = 0;
	}
	if (j->also)
		j->also_out = j->also(j->src, j->also_len);
	finish(j, out, n);
}

static void *
worker(void *arg)
{
	struct compressor *c = arg;

	thread_name("ev-compress");
	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct compress_job *j;
		while (c->head == NULL && !c->stopping)
			pthread_cond_wait(&c->work, &c->mu);
		if (c->head == NULL)
			break;		/* stopping, and nothing left */
		j = c->head;
		if ((c->head = j->next) == NULL)
			c->tail = &c->head;
		pthread_mutex_unlock(&c->mu);
		run(c, j);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

struct compressor *
compressor_new(void)
{
	struct compressor *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->tail = &c->head;
	if ((c->cctx = ZSTD_createCCtx()) == NULL) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->work, NULL);
	if (pthread_create(&c->thread, NULL, worker, c) != 0) {
		pthread_cond_destroy(&c->work);
		pthread_mutex_destroy(&c->mu);
		ZSTD_freeCCtx(c->cctx);
		free(c);
		return NULL;
	}
	return c;
}

void
compressor_free(struct compressor *c)
{
	struct compress_job *j, *next;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;
	j = c->head;			/* not started: their owners compress them */
	c->head = NULL;
	c->tail = &c->head;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->mu);
	for (; j; j = next) {
		next = j->next;
		finish(j, NULL, 0);
	}
	pthread_join(c->thread, NULL);
	pthread_cond_destroy(&c->work);
	pthread_mutex_destroy(&c->mu);
	ZSTD_freeCCtx(c->cctx);
	free(c);
}

void
compress_job_init(struct compress_job *j, const void *src, size_t len, int level)
{
	j->src = src;
	j->len = len;
	j->level = level;
	j->out = NULL;
	j->out_len = 0;
	j->also = NULL;
	j->also_len = 0;
	j->also_out = NULL;
	j->state = JOB_IDLE;
	j->queue = NULL;
	j->next = NULL;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
}

int
compressor_submit(struct compressor *c, struct compress_job *j)
{
	pthread_mutex_lock(&c->mu);
	if (c->stopping) {
		pthread_mutex_unlock(&c->mu);
		j->state = JOB_DONE;
		return -1;
	}
	j->state = JOB_QUEUED;	/* before the thread can see it */
	j->queue = c;
	j->next = NULL;
	*c->tail = j;
	c->tail = &j->next;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

void
compress_job_wait(struct compress_job *j)
{
	pthread_mutex_lock(&j->mu);
	while (j->state == JOB_QUEUED)
		pthread_cond_wait(&j->cv, &j->mu);
	pthread_mutex_unlock(&j->mu);
}

/* Unlinks J if the thread has not taken it yet; whether it did. */
static int
take_back(struct compressor *c, struct compress_job *j)
{
	int found = 0;

	pthread_mutex_lock(&c->mu);
	for (struct compress_job **pp = &c->head; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			if ((*pp = j->next) == NULL)
				c->tail = pp;
			found = 1;
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return found;
}

void
compress_job_claim(struct compress_job *j, long wait_ns)
{
	struct timespec until = deadline_after_ns(wait_ns);
	int state;

	pthread_mutex_lock(&j->mu);
	while (j->state == JOB_QUEUED)
		if (pthread_cond_timedwait(&j->cv, &j->mu, &until) != 0)
			break;
	state = j->state;
	pthread_mutex_unlock(&j->mu);
	/* Still queued means taken by nobody or running: only the queue knows.
	 * A compressor freed meanwhile has ended the job (state DONE). */
	if (state == JOB_QUEUED && take_back(j->queue, j))
		finish(j, NULL, 0);
	compress_job_wait(j);
}

void
compress_job_destroy(struct compress_job *j)
{
	compress_job_wait(j);
	free(j->out);
	j->out = NULL;
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
}

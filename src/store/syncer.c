#define _GNU_SOURCE	/* pipe2 */
#include "store/syncer.h"
#include "thread_name.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

struct syncer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pipe[2];			/* thread -> loop: a request is done */
	struct event *ev;
	int fd;				/* the request: -1 when none waits */
	int busy;			/* a request is running or not yet reported (loop side) */
	int stop;
	int result;
	void (*done)(void *ud, int err);
	void *ud;
};

static void *
syncer_main(void *arg)
{
	struct syncer *s = arg;

	thread_name("ev-sync");
	for (;;) {
		int fd, rc;
		char one = 1;

		pthread_mutex_lock(&s->mu);
		while (s->fd < 0 && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->fd < 0) {	/* stopping, and nothing left to sync */
			pthread_mutex_unlock(&s->mu);
			break;
		}
		fd = s->fd;
		s->fd = -1;
		pthread_mutex_unlock(&s->mu);
		rc = fdatasync(fd) < 0 ? errno : 0;
		close(fd);
		pthread_mutex_lock(&s->mu);
		s->result = rc;
		pthread_mutex_unlock(&s->mu);
		while (write(s->pipe[1], &one, 1) < 0 && errno == EINTR)
			;
	}
	return NULL;
}

/* On the loop: the thread finished a request. */
static void
syncer_ready(evutil_socket_t fd, short what, void *arg)
{
	struct syncer *s = arg;
	char buf[16];
	int rc;
	void (*done)(void *, int);

	(void)what;
	if (read(fd, buf, sizeof(buf)) <= 0)
		return;
	pthread_mutex_lock(&s->mu);
	rc = s->result;
	pthread_mutex_unlock(&s->mu);
	done = s->done;
	s->busy = 0;
	s->done = NULL;
	if (done)
		done(s->ud, rc);
}

struct syncer *
syncer_new(struct event_base *base)
{
	struct syncer *s = calloc(1, sizeof(*s));
	int e;

	if (s == NULL)
		return NULL;
	s->fd = -1;
	s->pipe[0] = s->pipe[1] = -1;
	if (pipe2(s->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		goto fail;
	s->ev = event_new(base, s->pipe[0], EV_READ | EV_PERSIST, syncer_ready, s);
	if (s->ev == NULL || event_add(s->ev, NULL) < 0) {
		errno = ENOMEM;
		goto fail;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	if ((e = pthread_create(&s->thread, NULL, syncer_main, s)) != 0) {
		errno = e;
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		goto fail;
	}
	return s;
fail:
	e = errno;
	if (s->ev)
		event_free(s->ev);
	if (s->pipe[0] >= 0)
		close(s->pipe[0]);
	if (s->pipe[1] >= 0)
		close(s->pipe[1]);
	free(s);
	errno = e;
	return NULL;
}

int
syncer_start(struct syncer *s, int fd, void (*done)(void *ud, int err), void *ud)
{
	if (s->busy) {
		errno = EBUSY;
		return -1;
	}
	s->busy = 1;
	s->done = done;
	s->ud = ud;
	pthread_mutex_lock(&s->mu);
	s->fd = fd;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return 0;
}

void
syncer_free(struct syncer *s)
{
	if (s == NULL)
		return;
	/* A request still running is finished first: its file is made
	 * durable even if nobody hears of it. */
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	event_free(s->ev);
	close(s->pipe[0]);
	close(s->pipe[1]);
	free(s);
}

int
syncer_busy(const struct syncer *s)
{
	return s->busy;
}

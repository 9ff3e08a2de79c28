#define _GNU_SOURCE	/* ppoll */
#include "control/client.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/frame.h"

void
control_socket_path(const char *data_dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/control.sock", data_dir);
}

int
control_connect(const char *data_dir, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	char path[sizeof(sun.sun_path) + 64];
	int fd;

	control_socket_path(data_dir, path, sizeof(path));
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket path %s is too long", path);
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	/* A write to an engine that closed must fail with EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED)
			snprintf(err, errlen, "no engine is running with data folder %s "
			    "(start one with: emailvault run --data %s)", data_dir, data_dir);
		else if (e == EACCES)
			snprintf(err, errlen, "cannot connect to %s: permission denied "
			    "(the control socket serves only the user running the engine)", path);
		else
			snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(e));
		return -1;
	}
	return fd;
}

static volatile sig_atomic_t got_sigint;

static void
on_sigint(int sig)
{
	(void)sig;
	got_sigint++;
}

/* Runs CHUNK; with CAPTURE the result goes to *CAPTURE instead of stdout. */
static int
run_chunk(int fd, const char *chunk, int json, char **capture)
{
	size_t len = strlen(chunk);
	char *req = malloc(len + 1);
	struct sigaction sa, old_sa;
	sigset_t block, old_mask, wait_mask;
	int status = 1, interrupts_sent = 0;

	if (req == NULL)
		return 1;
	/* The handler is in place before the chunk leaves: a Ctrl-C right
	 * after it must cancel the chunk, not kill us while it runs on. */
	got_sigint = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigaction(SIGINT, &sa, &old_sa);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old_mask);
	wait_mask = old_mask;
	sigdelset(&wait_mask, SIGINT);

	req[0] = json ? EVAL_FLAG_JSON : 0;
	memcpy(req + 1, chunk, len);
	if (frame_write(fd, 'E', req, len + 1) < 0) {
		/* The engine may have refused us (an 'X' frame) and closed before
		 * the chunk went out: say why it did, not just EPIPE. */
		int e = errno;
		char type, *payload;
		size_t plen;
		int refused = 0;
		if (e == EMSGSIZE) {
			fprintf(stderr, "emailvault: the chunk is too big to send: %zu bytes "
			    "(at most %u)\n", len, FRAME_MAX - 2);
			free(req);
			goto out;
		}
		/* only an engine that closed may have said why: one that is
		 * still there would leave this read waiting */
		if ((e == EPIPE || e == ECONNRESET) &&
		    frame_read(fd, &type, &payload, &plen) == 0) {
			if (type == 'X') {
				fprintf(stderr, "%s\n", payload);
				refused = 1;
			}
			free(payload);
		}
		if (!refused)
			fprintf(stderr, "emailvault: cannot send to the engine: %s\n", strerror(e));
		free(req);
		goto out;
	}
	free(req);

	/* SIGINT is let in only while ppoll waits: a Ctrl-C at any moment
	 * after the chunk went out is seen before the next wait. */
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		char type, *payload;
		size_t plen;

		if (got_sigint > interrupts_sent) {
			if (interrupts_sent > 0) {
				/* second Ctrl-C: give up waiting; the reply
				 * would come late, so this connection is done */
				status = CONTROL_ABANDONED;
				break;
			}
			(void)frame_write(fd, 'I', NULL, 0);
			interrupts_sent = 1;
		}
		int ready = ppoll(&pfd, 1, NULL, &wait_mask);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0 || frame_read(fd, &type, &payload, &plen) < 0) {
			fprintf(stderr, "emailvault: the engine closed the connection%s%s\n",
			    errno ? ": " : "", errno ? strerror(errno) : "");
			status = CONTROL_LOST;
			break;
		}
		if (type == 'O') {
			if (!capture)
				fwrite(payload, 1, plen, stdout);
			fflush(stdout);
		} else if (type == 'R') {
			if (capture) {
				*capture = payload;	/* NUL-terminated by frame_read */
				status = 0;
				break;
			}
			fwrite(payload, 1, plen, stdout);
			if (plen > 0)
				fputc('\n', stdout);
			status = 0;
			free(payload);
			break;
		} else if (type == 'X') {
			fprintf(stderr, "%s\n", payload);
			free(payload);
			break;
		}
		free(payload);
	}
out:
	/* A Ctrl-C that came with the reply, not yet acted on, goes to the
	 * handler that was there before (eval's default ends the command;
	 * the REPL's drops its line): the handler first, then the mask. */
	sigaction(SIGINT, &old_sa, NULL);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	if (got_sigint > interrupts_sent && status != CONTROL_ABANDONED)
		raise(SIGINT);
	fflush(stdout);
	return status;
}

int
control_eval(int fd, const char *chunk, int json)
{
	return run_chunk(fd, chunk, json, NULL);
}

int
control_query(int fd, const char *chunk, char **reply)
{
	*reply = NULL;
	return run_chunk(fd, chunk, 1, reply);
}

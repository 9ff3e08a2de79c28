#include "control/client.h"

#include <errno.h>
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

int
control_eval(int fd, const char *chunk, int json)
{
	size_t len = strlen(chunk);
	char *req = malloc(len + 1);
	struct sigaction sa, old;
	int status = 1;

	if (req == NULL)
		return 1;
	got_sigint = 0;
	req[0] = json ? EVAL_FLAG_JSON : 0;
	memcpy(req + 1, chunk, len);
	/* An engine that refuses us closes at once: the write then fails with
	 * EPIPE (not a SIGPIPE that kills us), and its reason is still there
	 * to be read. */
	signal(SIGPIPE, SIG_IGN);
	if (frame_write(fd, 'E', req, len + 1) < 0) {
		char type, *payload;
		size_t plen;
		int saved = errno;
		free(req);
		if (frame_read(fd, &type, &payload, &plen) == 0) {
			if (type == 'X')
				fprintf(stderr, "%s\n", payload);
			free(payload);
			if (type == 'X')
				return 1;
		}
		fprintf(stderr, "emailvault: cannot send to the engine: %s\n", strerror(saved));
		return 1;
	}
	free(req);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;	/* no SA_RESTART: read() returns EINTR */
	sigaction(SIGINT, &sa, &old);
	for (;;) {
		char type, *payload;
		size_t plen;

		if (frame_read(fd, &type, &payload, &plen) < 0) {
			if (errno == EINTR) {
				if (got_sigint > 1) {
					/* second Ctrl-C: give up waiting; the reply
					 * would come late, so this connection is done */
					status = CONTROL_ABANDONED;
					break;
				}
				(void)frame_write(fd, 'I', NULL, 0);
				continue;
			}
			fprintf(stderr, "emailvault: the engine closed the connection%s%s\n",
			    errno ? ": " : "", errno ? strerror(errno) : "");
			status = CONTROL_LOST;
			break;
		}
		if (type == 'O') {
			fwrite(payload, 1, plen, stdout);
			fflush(stdout);
		} else if (type == 'R') {
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
	sigaction(SIGINT, &old, NULL);
	fflush(stdout);
	return status;
}

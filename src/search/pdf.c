#define _GNU_SOURCE	/* pipe2 */
/*
 * pdftotext in a child process.
 *
 * Its stdin is one end of a socketpair, not a pipe, so that writing after
 * it exited is an EPIPE from send(MSG_NOSIGNAL) and never a SIGPIPE: the
 * engine's signal dispositions are not ours to change from a worker
 * thread. pdftotext reads "-" into memory before it parses (a PDF needs
 * random access), so we need no temporary file.
 *
 * It is started by posix_spawn, which shares our memory until the exec
 * instead of copying the page tables as fork does: a fork of the engine
 * (its heap, archive.db mapped) cost more than pdftotext's own start. The
 * child gets its three descriptors and nothing else of ours. Its limits
 * (CPU time, address space, no files, no core) are set with prlimit once
 * it runs, before the first byte of the PDF is written to it: pdftotext
 * reads all of its input before it parses, so it has done nothing but
 * start by then. They back up the wall-clock limit enforced here. It gets
 * a fixed, minimal environment: nothing of the engine's (tokens,
 * passwords in variables) reaches it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "search/pdf.h"

#define CHILD_MEMORY	(1024L * 1024 * 1024)	/* address space of the child */

static char tool[PATH_MAX];
static pthread_once_t tool_once = PTHREAD_ONCE_INIT;

static void
find_tool(void)
{
	const char *path = getenv("PATH"), *p, *colon;
	char cand[PATH_MAX];
	size_t n;

	if (path == NULL)
		path = "/usr/bin:/bin";
	for (p = path; *p != '\0'; p = *colon ? colon + 1 : colon) {
		if ((colon = strchr(p, ':')) == NULL)
			colon = p + strlen(p);
		n = (size_t)(colon - p);
		if (n == 0 || n + sizeof "/pdftotext" > sizeof cand)
			continue;	/* "" means the current folder: not here */
		memcpy(cand, p, n);
		memcpy(cand + n, "/pdftotext", sizeof "/pdftotext");
		if (cand[0] == '/' && access(cand, X_OK) == 0) {
			memcpy(tool, cand, sizeof cand);
			return;
		}
	}
}

const char *
pdf_tool(void)
{
	pthread_once(&tool_once, find_tool);
	return tool[0] != '\0' ? tool : NULL;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Milliseconds left, 0 when the deadline passed. */
static int
left_ms(const struct pdf_job *j)
{
	double d = (j->deadline - now()) * 1000.0;

	if (d <= 0)
		return 0;
	return d > 60000 ? 60000 : (int)d + 1;
}

/* The child's stdin, stdout and stderr, and nothing else of ours. */
static int
spawn(pid_t *pid, int in, int out, int null)
{
	static char *const argv[] = {
		"pdftotext", "-q", "-enc", "UTF-8", "-", "-", NULL
	};
	static char *const envp[] = { "PATH=/usr/bin:/bin", "LC_ALL=C", NULL };
	posix_spawn_file_actions_t fa;
	int rc;

	if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
		errno = rc;
		return -1;
	}
	if ((rc = posix_spawn_file_actions_adddup2(&fa, in, 0)) == 0 &&
	    (rc = posix_spawn_file_actions_adddup2(&fa, out, 1)) == 0 &&
	    (rc = posix_spawn_file_actions_adddup2(&fa, null, 2)) == 0 &&
	    /* everything else the engine has open, CLOEXEC or not */
	    (rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) == 0)
		rc = posix_spawn(pid, tool, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return 0;
}

static int
limit(pid_t pid, int resource, rlim_t n)
{
	struct rlimit r = { n, n };

	return prlimit(pid, resource, &r, NULL);
}

/* The child's limits, before it is given anything to parse. */
static int
limit_child(pid_t pid, double seconds)
{
	if (limit(pid, RLIMIT_CPU, (rlim_t)seconds + 2) == -1 ||
	    limit(pid, RLIMIT_AS, CHILD_MEMORY) == -1 ||
	    limit(pid, RLIMIT_FSIZE, 0) == -1 || limit(pid, RLIMIT_CORE, 0) == -1)
		return -1;
	return 0;
}

int
pdf_start(struct pdf_job *j, double seconds, size_t max_out)
{
	int sv[2], po[2], null;

	memset(j, 0, sizeof *j);
	j->pid = -1;
	j->in = j->out = -1;
	if (pdf_tool() == NULL)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	if (pipe2(po, O_CLOEXEC) == -1) {
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if ((null = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1 ||
	    spawn(&j->pid, sv[1], po[1], null) == -1) {
		if (null != -1)
			close(null);
		close(sv[0]);
		close(sv[1]);
		close(po[0]);
		close(po[1]);
		j->pid = -1;
		return -1;
	}
	close(sv[1]);
	close(po[1]);
	close(null);
	if (limit_child(j->pid, seconds) == -1) {
		/* it must not run unlimited: stopped before it read a byte */
		kill(j->pid, SIGKILL);
		while (waitpid(j->pid, NULL, 0) == -1 && errno == EINTR)
			;
		close(sv[0]);
		close(po[0]);
		j->pid = -1;
		return -1;
	}
	j->in = sv[0];
	j->out = po[0];
	fcntl(j->in, F_SETFL, O_NONBLOCK);
	fcntl(j->out, F_SETFL, O_NONBLOCK);
	j->deadline = now() + seconds;
	j->max = max_out;
	return 0;
}

/* Reads what the child printed so far; stops at the cap or at EOF. */
static void
drain(struct pdf_job *j)
{
	char buf[16384];
	ssize_t r;
	size_t take, cap;
	char *t;

	while (!j->eof && !j->cut) {
		r = read(j->out, buf, sizeof buf);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return;		/* EAGAIN: nothing yet */
		if (r == 0) {
			j->eof = 1;
			return;
		}
		take = (size_t)r;
		if (take > j->max - j->len) {
			take = j->max - j->len;
			j->cut = 1;
		}
		if (take == 0)
			continue;
		if (j->len + take > j->cap) {
			cap = j->cap ? j->cap : sizeof buf;
			while (cap < j->len + take)
				cap *= 2;
			if (cap > j->max)
				cap = j->max;
			if ((t = realloc(j->text, cap)) == NULL) {
				j->cut = 1;	/* out of memory: keep what we have */
				return;
			}
			j->text = t;
			j->cap = cap;
		}
		memcpy(j->text + j->len, buf, take);
		j->len += take;
	}
}

/* Waits for the child to be readable or writable (WRITE), or time out. */
static int
wait_io(struct pdf_job *j, int write)
{
	struct pollfd p[2];
	int n = 0, r, ms;

	if ((ms = left_ms(j)) == 0) {
		j->timeout = 1;
		return -1;
	}
	if (!j->eof && !j->cut) {
		p[n].fd = j->out;
		p[n++].events = POLLIN;
	}
	if (write) {
		p[n].fd = j->in;
		p[n++].events = POLLOUT;
	}
	if (n == 0)
		return 0;
	r = poll(p, (nfds_t)n, ms);
	if (r == -1 && errno != EINTR)
		return -1;
	if (left_ms(j) == 0) {	/* poll waits whole ms: what came late is not read */
		j->timeout = 1;
		return -1;
	}
	if (r > 0 && !j->eof && !j->cut && p[0].revents != 0)
		drain(j);
	return 0;
}

int
pdf_write(struct pdf_job *j, const char *s, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if (j->timeout || j->cut || j->closed_in)
			return -1;
		w = send(j->in, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			s += w;
			n -= (size_t)w;
			continue;
		}
		if (w == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			j->closed_in = 1;	/* EPIPE: it stopped reading */
			return -1;
		}
		if (wait_io(j, 1) == -1)
			return -1;
	}
	return 0;
}

/* Sleeps until the child exits or the deadline passes: on its pidfd,
 * or a short pause to look again where the kernel has none. */
static void
wait_exit(struct pdf_job *j)
{
	struct timespec pause = { 0, 2000000 };
	struct pollfd p;
	int fd = pidfd_open(j->pid, 0);

	if (fd == -1) {
		nanosleep(&pause, NULL);
		return;
	}
	p.fd = fd;
	p.events = POLLIN;
	(void)poll(&p, 1, left_ms(j));
	close(fd);
}

/* Reaps the child; kills it first when KILL or when it outlives us. */
static int
reap(struct pdf_job *j, int kill_it)
{
	int st = 0;
	pid_t r;

	if (kill_it)
		kill(j->pid, SIGKILL);
	for (;;) {
		r = waitpid(j->pid, &st, WNOHANG);
		if (r == -1 && errno == EINTR)
			continue;
		if (r != 0)
			break;
		if (left_ms(j) == 0) {
			j->timeout = 1;
			kill(j->pid, SIGKILL);
			while (waitpid(j->pid, &st, 0) == -1 && errno == EINTR)
				;
			return -1;
		}
		wait_exit(j);
	}
	/* ECHILD (SIGCHLD ignored by the process): nothing to reap */
	return r == j->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int
pdf_finish(struct pdf_job *j, char **text, size_t *len)
{
	int status;

	close(j->in);
	j->in = -1;
	while (!j->eof && !j->cut && !j->timeout) {
		if (left_ms(j) == 0) {	/* what comes late is not read */
			j->timeout = 1;
			break;
		}
		drain(j);
		if (!j->eof && !j->cut && wait_io(j, 0) == -1)
			break;
	}
	status = reap(j, j->cut || j->timeout || !j->eof);
	close(j->out);
	j->out = -1;
	*text = j->text;
	*len = j->len;
	j->text = NULL;
	if (j->timeout)
		return PDF_TIMEOUT;
	if (j->cut)
		return PDF_CUT;
	return status == 0 || *len > 0 ? PDF_OK : PDF_FAILED;
}

void
pdf_abort(struct pdf_job *j)
{
	close(j->in);
	j->in = -1;
	(void)reap(j, 1);
	close(j->out);
	j->out = -1;
	free(j->text);
	j->text = NULL;
}

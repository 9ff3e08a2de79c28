#include "datalock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

void
datalock_path(const char *data_dir, char *buf, size_t len)
{
	snprintf(buf, len, "%s/engine.lock", data_dir);
}

/* The pid written in the file if that process is alive, else 0. */
static long
live_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long pid;
	char *end;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, &end, 10);
	if (end == buf || pid <= 0 || pid == (long)getpid() || (*end != '\n' && *end != '\0'))
		return 0;
	if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
		return pid;
	return 0;
}

int
datalock_take(const char *data_dir, long *engine_pid)
{
	char path[4096];
	int fd, e;

	*engine_pid = 0;
	datalock_path(data_dir, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	e = errno;
	if (e == EWOULDBLOCK)
		*engine_pid = live_pid(fd);
	close(fd);
	errno = e;
	return -1;
}

/*
 * faultfs: an LD_PRELOAD library for the disk tests. It makes chosen
 * write and sync calls of the process fail with a chosen errno, for what
 * filling a small filesystem cannot reach: fdatasync failing (ENOSPC on
 * some filesystems, EIO on a failing disk) and EIO anywhere.
 *
 * EVFAULT_CTL names a file of rules, read again whenever it is replaced
 * (so a test turns faults on and off while the engine runs), one a line:
 *
 *	OP PATH ERRNO SKIP COUNT
 *
 * OP is write (write, pwrite, pwrite64, pwritev, pwritev64) or sync (fdatasync, fsync); the
 * call fails when the file its descriptor names contains PATH, after SKIP
 * such calls passed, at most COUNT times (-1: always). ERRNO is ENOSPC,
 * EIO or EDQUOT. Each failure made is one line in EVFAULT_LOG.
 *
 * A sync that fails loses what was pwritten to that file since its last
 * good sync (those bytes read back as zeros), as a failed writeback
 * does: the page cache no longer holds them, and the kernel reports the
 * error once, so the next sync succeeds over the hole.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/types.h>
#include <unistd.h>

#define RULES_MAX 16

struct rule {
	int sync;		/* 1: sync calls, 0: write calls */
	char path[256];
	int err;
	long skip, count;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[RULES_MAX];
static int nrules;
static struct stat ctl_seen;

/* Per file (device and inode, as the kernel's page cache keeps it: any
 * descriptor of the file, a dup too, syncs and loses the same pages): the
 * span pwritten since the last good sync. Keyed by descriptor number, a
 * sync of a dup would lose nothing, and a number reused by another file
 * would zero a closed file's offsets in it. */
#define FILES_MAX 256
struct dirty {
	dev_t dev;
	ino_t ino;
	off_t lo, hi;		/* lo == hi: clean (the slot is free) */
};
static struct dirty dirty[FILES_MAX];

/* The slot of FD's file (a free one when CREATE), or NULL. Under lock. */
static struct dirty *
dirty_of(int fd, int create)
{
	struct stat st;
	struct dirty *free_slot = NULL;

	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	for (int i = 0; i < FILES_MAX; i++) {
		struct dirty *d = &dirty[i];
		if (d->lo == d->hi) {
			if (free_slot == NULL)
				free_slot = d;
		} else if (d->dev == st.st_dev && d->ino == st.st_ino) {
			return d;
		}
	}
	if (!create || free_slot == NULL)
		return NULL;
	free_slot->dev = st.st_dev;
	free_slot->ino = st.st_ino;
	return free_slot;
}

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_unlink)(const char *);

static void
resolve(void)
{
	if (real_write == NULL) {
		real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
		real_pwrite = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
		real_pwrite64 = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT,
		    "pwrite64");
		real_pwritev = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT,
		    "pwritev");
		real_pwritev64 = (ssize_t (*)(int, const struct iovec *, int, off_t))dlsym(RTLD_NEXT,
		    "pwritev64");
		real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
		real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
		real_unlink = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
	}
}

static int
errno_named(const char *s)
{
	if (strcmp(s, "ENOSPC") == 0)
		return ENOSPC;
	if (strcmp(s, "EDQUOT") == 0)
		return EDQUOT;
	return EIO;
}

/* The rules again when the control file was replaced. Under lock. */
static void
load_rules(void)
{
	const char *ctl = getenv("EVFAULT_CTL");
	struct stat st;
	char line[512], op[16], path[256], err[16];
	FILE *f;

	if (ctl == NULL || stat(ctl, &st) < 0) {
		nrules = 0;
		memset(&ctl_seen, 0, sizeof(ctl_seen));
		return;
	}
	if (st.st_ino == ctl_seen.st_ino && st.st_mtim.tv_sec == ctl_seen.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == ctl_seen.st_mtim.tv_nsec && st.st_size == ctl_seen.st_size)
		return;
	ctl_seen = st;
	nrules = 0;
	if ((f = fopen(ctl, "re")) == NULL)
		return;
	while (nrules < RULES_MAX && fgets(line, sizeof(line), f)) {
		struct rule *r = &rules[nrules];
		if (sscanf(line, "%15s %255s %15s %ld %ld", op, path, err, &r->skip, &r->count) != 5)
			continue;
		r->sync = strcmp(op, "sync") == 0;
		snprintf(r->path, sizeof(r->path), "%s", path);
		r->err = errno_named(err);
		nrules++;
	}
	fclose(f);
}

static void
note(const char *op, const char *path, int err)
{
	const char *logp = getenv("EVFAULT_LOG");
	char line[600];
	int fd, n;

	if (logp == NULL || (fd = open(logp, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return;
	n = snprintf(line, sizeof(line), "%s %s %s\n", op, path, strerror(err));
	if (n > 0)
		real_write(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	close(fd);
}

/* 0 to let the call through, or the errno it fails with. */
static int
fault(int fd, int sync, const char *op)
{
	char link[64], path[512];
	ssize_t n;
	int err = 0;

	if (getenv("EVFAULT_CTL") == NULL)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) <= 0)
		return 0;
	path[n] = '\0';
	pthread_mutex_lock(&lock);
	load_rules();
	for (int i = 0; i < nrules && err == 0; i++) {
		struct rule *r = &rules[i];
		if (r->sync != sync || strstr(path, r->path) == NULL || r->count == 0)
			continue;
		if (r->skip > 0) {
			r->skip--;
			continue;
		}
		if (r->count > 0)
			r->count--;
		err = r->err;
	}
	pthread_mutex_unlock(&lock);
	if (err)
		note(op, path, err);
	return err;
}

static void
dirtied(int fd, off_t off, ssize_t n)
{
	struct dirty *d;

	if (fd < 0 || n <= 0)
		return;
	pthread_mutex_lock(&lock);
	if ((d = dirty_of(fd, 1)) != NULL) {
		if (d->hi == d->lo) {
			d->lo = off;
			d->hi = off + n;
		} else {
			if (off < d->lo)
				d->lo = off;
			if (off + n > d->hi)
				d->hi = off + n;
		}
	}
	pthread_mutex_unlock(&lock);
}

/* After a sync: FAILED, what it should have written is lost. */
static void
synced(int fd, int failed)
{
	static const char zeros[65536];
	off_t lo, hi;

	struct dirty *d;

	if (fd < 0)
		return;
	pthread_mutex_lock(&lock);
	if ((d = dirty_of(fd, 0)) == NULL) {
		pthread_mutex_unlock(&lock);
		return;
	}
	lo = d->lo;
	hi = d->hi;
	d->lo = d->hi = 0;
	pthread_mutex_unlock(&lock);
	for (off_t o = lo; failed && o < hi;) {
		size_t n = hi - o < (off_t)sizeof(zeros) ? (size_t)(hi - o) : sizeof(zeros);
		if (real_pwrite(fd, zeros, n, o) <= 0)
			break;
		o += (off_t)n;
	}
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	int err;

	resolve();
	if (fd > 2 && (err = fault(fd, 0, "write")) != 0) {
		errno = err;
		return -1;
	}
	return real_write(fd, buf, len);
}

ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
	int err;

	resolve();
	if ((err = fault(fd, 0, "write")) != 0) {
		errno = err;
		return -1;
	}
	ssize_t n = real_pwrite(fd, buf, len, off);
	dirtied(fd, off, n);
	return n;
}

ssize_t
pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	int err;

	resolve();
	if ((err = fault(fd, 0, "write")) != 0) {
		errno = err;
		return -1;
	}
	ssize_t n = real_pwrite64(fd, buf, len, off);
	dirtied(fd, off, n);
	return n;
}

static ssize_t
faulty_pwritev(ssize_t (*real)(int, const struct iovec *, int, off_t), int fd,
    const struct iovec *iov, int n, off_t off)
{
	int err;

	if ((err = fault(fd, 0, "write")) != 0) {
		errno = err;
		return -1;
	}
	ssize_t w = real(fd, iov, n, off);
	dirtied(fd, off, w);
	return w;
}

ssize_t
pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
	resolve();
	return faulty_pwritev(real_pwritev, fd, iov, n, off);
}

ssize_t
pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
	resolve();
	return faulty_pwritev(real_pwritev64, fd, iov, n, off);
}

int
fdatasync(int fd)
{
	int err;

	resolve();
	if ((err = fault(fd, 1, "sync")) != 0) {
		synced(fd, 1);
		errno = err;
		return -1;
	}
	if ((err = real_fdatasync(fd)) == 0)
		synced(fd, 0);
	return err;
}

int
fsync(int fd)
{
	int err;

	resolve();
	if ((err = fault(fd, 1, "sync")) != 0) {
		synced(fd, 1);
		errno = err;
		return -1;
	}
	if ((err = real_fsync(fd)) == 0)
		synced(fd, 0);
	return err;
}

/* A removed file's pages go with it: its inode may come back as another
 * file's, which must not inherit the span. */
int
unlink(const char *path)
{
	struct stat st;

	resolve();
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
		pthread_mutex_lock(&lock);
		for (int i = 0; i < FILES_MAX; i++)
			if (dirty[i].lo != dirty[i].hi && dirty[i].dev == st.st_dev &&
			    dirty[i].ino == st.st_ino)
				dirty[i].lo = dirty[i].hi = 0;
		pthread_mutex_unlock(&lock);
	}
	return real_unlink(path);
}

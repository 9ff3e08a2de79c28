#include "store/reclaim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* The walk: blobs/ (d[0]), blobs/ab/ (d[1]), blobs/ab/cd/ (d[2]). Open
 * directories are kept across steps; entries added or removed meanwhile may
 * or may not be seen, which is harmless: each file is judged on its own. */
struct reclaim {
	DIR *d[3];
	char name[2][3];	/* "ab" and "cd" of the open d[1] and d[2] */
	int depth;		/* deepest open level, -1 when done */
	sqlite3_stmt *named;
	int dry_run;
	reclaim_fn fn;
	void *ud;
	struct reclaim_counts c;
	char errmsg[256];
};

static int
is_hex(const char *s, size_t want)
{
	size_t n = strlen(s);

	if (n != want)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

struct reclaim *
reclaim_new(const char *data_dir, sqlite3 *db, int dry_run, reclaim_fn fn, void *ud,
    char *err, size_t errlen)
{
	struct reclaim *r = calloc(1, sizeof(*r));
	char root[4096];

	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->dry_run = dry_run;
	r->fn = fn;
	r->ud = ud;
	/* A committed record names a blob through messages (and locations,
	 * which must agree with it): either keeps the file. */
	/* A blob file is needed while its message's bytes are not in a pack
	 * (the pack store's migration removes the files it has moved, but a
	 * crash between its commit and the unlink leaves them to us). */
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE hash = ?1 AND pack_segment IS NULL "
	    "UNION ALL SELECT 1 FROM locations WHERE hash = ?1 AND NOT EXISTS "
	    "(SELECT 1 FROM messages WHERE hash = ?1) LIMIT 1", -1, &r->named, NULL)
	    != SQLITE_OK) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		free(r);
		return NULL;
	}
	snprintf(root, sizeof(root), "%s/blobs", data_dir);
	r->d[0] = opendir(root);
	if (r->d[0] == NULL) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "cannot read %s: %s", root, strerror(errno));
			reclaim_free(r);
			return NULL;
		}
		r->depth = -1;	/* no blob stored yet */
	}
	return r;
}

void
reclaim_free(struct reclaim *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < 3; i++)
		if (r->d[i])
			closedir(r->d[i]);
	sqlite3_finalize(r->named);
	free(r);
}

const struct reclaim_counts *
reclaim_counts(const struct reclaim *r)
{
	return &r->c;
}

const char *
reclaim_error(const struct reclaim *r)
{
	return r->errmsg;
}

/* 1 if a committed record names HASH, 0 if none, -1 on a database error. */
static int
named(struct reclaim *r, const char *hash)
{
	int rc;

	sqlite3_bind_text(r->named, 1, hash, -1, SQLITE_STATIC);
	rc = sqlite3_step(r->named);
	sqlite3_reset(r->named);	/* no read transaction outlives the step */
	sqlite3_clear_bindings(r->named);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	snprintf(r->errmsg, sizeof(r->errmsg), "archive.db: %s",
	    sqlite3_errmsg(sqlite3_db_handle(r->named)));
	return -1;
}

/* One entry of blobs/ab/cd/. Only a regular file whose name is a full hash
 * that starts with "abcd" is a blob; anything else is not ours to remove. */
static int
consider(struct reclaim *r, const char *name)
{
	struct stat st;
	int dfd = dirfd(r->d[2]), k;

	if (!is_hex(name, 64) || memcmp(name, r->name[0], 2) != 0 ||
	    memcmp(name + 2, r->name[1], 2) != 0)
		return 0;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return 0;
	r->c.scanned++;
	if ((k = named(r, name)) != 0)
		return k < 0 ? -1 : 0;
	r->c.orphans++;
	if (r->dry_run) {
		if (r->fn)
			r->fn(r->ud, name, (uint64_t)st.st_size, 0);
		return 0;
	}
	if (unlinkat(dfd, name, 0) < 0) {
		int e = errno;
		if (e == ENOENT)
			return 0;	/* gone meanwhile */
		r->c.failed++;
		if (r->fn)
			r->fn(r->ud, name, (uint64_t)st.st_size, e);
		return 0;
	}
	r->c.reclaimed++;
	r->c.bytes += (uint64_t)st.st_size;
	if (r->fn)
		r->fn(r->ud, name, (uint64_t)st.st_size, 0);
	return 0;
}

/* Opens the subdirectory NAME of level DEPTH as level DEPTH + 1, without
 * following a symbolic link out of blobs/. */
static void
descend(struct reclaim *r, const char *name)
{
	int fd = openat(dirfd(r->d[r->depth]), name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return;
	r->d[r->depth + 1] = fdopendir(fd);
	if (r->d[r->depth + 1] == NULL) {
		close(fd);
		return;
	}
	memcpy(r->name[r->depth], name, 3);
	r->depth++;
}

int
reclaim_step(struct reclaim *r, unsigned budget)
{
	if (r->errmsg[0])
		return RECLAIM_ERROR;
	if (r->depth < 0)
		return RECLAIM_DONE;
	while (budget-- > 0) {
		struct dirent *de = readdir(r->d[r->depth]);

		if (de == NULL) {
			closedir(r->d[r->depth]);
			r->d[r->depth] = NULL;
			if (--r->depth < 0)
				return RECLAIM_DONE;
			continue;
		}
		if (r->depth < 2) {
			if (is_hex(de->d_name, 2))
				descend(r, de->d_name);
		} else if (consider(r, de->d_name) < 0) {
			return RECLAIM_ERROR;
		}
	}
	return RECLAIM_MORE;
}

#define _GNU_SOURCE	/* copy_file_range, syncfs */
#include "store/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "paths.h"
#include "store/pack.h"
#include "store/reader.h"

struct bk {
	const char *data, *out;
	const char *data_real;		/* for the manifest */
	FILE *warn;
	struct backup_result *r;
	sqlite3 *snap;			/* the snapshot: what this backup holds */
	struct store_reader *reader;	/* DATA's, opened for a blob moved meanwhile */
	char *err;
	size_t errlen;
};

static const char *
why(int e)
{
	if (e == ENOSPC || e == EDQUOT)
		return "no space left on the device (the disk is full)";
	return strerror(e);
}

/* ERR = "WHAT PATH: reason" from errno; -1. */
static int
failed(struct bk *b, const char *what, const char *path)
{
	int e = errno;

	snprintf(b->err, b->errlen, "%s %s: %s", what, path, why(e));
	errno = e;
	return -1;
}

static int
sql_failed(struct bk *b, sqlite3 *db, const char *what)
{
	int rc = sqlite3_errcode(db);

	snprintf(b->err, b->errlen, "%s: %s", what, rc == SQLITE_FULL ? why(ENOSPC) :
	    sqlite3_errmsg(db));
	return -1;
}

static void
damaged(struct bk *b, const char *fmt, ...)
{
	va_list ap;

	b->r->damaged++;
	if (b->warn == NULL)
		return;
	fprintf(b->warn, "emailvault: warning: ");
	va_start(ap, fmt);
	vfprintf(b->warn, fmt, ap);
	va_end(ap);
	fprintf(b->warn, "\n");
}

static void
hex_of(const unsigned char *md, char hex[65])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
}

static int
sync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

static int
make_dir(struct bk *b, const char *path)
{
	if (paths_mkdir_p(path, 0700) < 0 || chmod(path, 0700) < 0)
		return failed(b, "cannot create", path);
	return 0;
}

/* DIR/.NAME.tmp for DIR/NAME; "" (which no open finds) if it is too long. */
static void
tmp_name(const char *dst, char *buf, size_t len)
{
	const char *slash = strrchr(dst, '/');
	int dlen = slash ? (int)(slash - dst) : 0;
	int n = snprintf(buf, len, "%.*s%s.%s.tmp", dlen, dst, slash ? "/" : "",
	    slash ? slash + 1 : dst);

	if (n < 0 || (size_t)n >= len)
		buf[0] = '\0';
}

static int
pwrite_all(int fd, const char *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* LEN bytes of IN into OUT from the start; 1 if IN ended first (*DONE
 * tells where), -1 with errno. In the kernel where it can. */
static int
copy_bytes(int in, int out, uint64_t len, uint64_t *done)
{
	char buf[65536];
	int plain = 0;

	*done = 0;
	while (*done < len) {
		uint64_t left = len - *done;
		ssize_t n;

		if (!plain) {
			loff_t ioff = (loff_t)*done, ooff = (loff_t)*done;
			n = copy_file_range(in, &ioff, out, &ooff, left > (1u << 30) ? (1u << 30) :
			    (size_t)left, 0);
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
			    errno == EOPNOTSUPP)) {
				plain = 1;
				continue;
			}
		} else {
			n = pread(in, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf), (off_t)*done);
			if (n > 0 && pwrite_all(out, buf, (size_t)n, *done) < 0)
				return -1;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 1;
		*done += (uint64_t)n;
	}
	return 0;
}

/* DST becomes a copy of IN's first LEN bytes (fewer when IN is shorter:
 * *SHORT), through a synced temporary file renamed into place. */
static int
install_copy(struct bk *b, int in, const char *dst, uint64_t len, int *shortp)
{
	char tmp[PATH_MAX];
	uint64_t done = 0;
	int out, rc;

	*shortp = 0;
	tmp_name(dst, tmp, sizeof(tmp));
	unlink(tmp);
	if ((out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return failed(b, "cannot write", tmp);
	if ((rc = copy_bytes(in, out, len, &done)) < 0 || fsync(out) < 0) {
		failed(b, "cannot write", dst);
		close(out);
		unlink(tmp);
		return -1;
	}
	if (close(out) < 0 || rename(tmp, dst) < 0) {
		failed(b, "cannot write", dst);
		unlink(tmp);
		return -1;
	}
	*shortp = rc == 1;
	b->r->bytes_copied += done;
	return 0;
}

/* DST holds LEN bytes of DATA, through a synced temporary file. */
static int
install_bytes(struct bk *b, const char *dst, const char *data, size_t len)
{
	char tmp[PATH_MAX];
	int out;

	tmp_name(dst, tmp, sizeof(tmp));
	unlink(tmp);
	if ((out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return failed(b, "cannot write", tmp);
	if (pwrite_all(out, data, len, 0) < 0 || fsync(out) < 0) {
		failed(b, "cannot write", dst);
		close(out);
		unlink(tmp);
		return -1;
	}
	if (close(out) < 0 || rename(tmp, dst) < 0) {
		failed(b, "cannot write", dst);
		unlink(tmp);
		return -1;
	}
	b->r->bytes_copied += len;
	return 0;
}

/* DST as a hard link to SRC: 1 done, 0 not possible here (another
 * filesystem, links refused): copy instead, -1 error. */
static int
install_link(struct bk *b, const char *src, const char *dst)
{
	char tmp[PATH_MAX];

	tmp_name(dst, tmp, sizeof(tmp));
	unlink(tmp);
	if (link(src, tmp) < 0) {
		if (errno == EXDEV || errno == EPERM || errno == EMLINK || errno == EOPNOTSUPP ||
		    errno == EACCES)
			return 0;
		return failed(b, "cannot link", dst);
	}
	if (rename(tmp, dst) < 0) {
		failed(b, "cannot link", dst);
		unlink(tmp);
		return -1;
	}
	unlink(tmp);	/* rename leaves it when DST was a link to the same file */
	return 1;
}

/* 1 if FD is a sealed segment of SIZE bytes whose trailer holds the
 * checksum archive.db recorded (SHA256, hex). Sealed segments never
 * change, so such a file is the one the record names. */
static int
sealed_match(int fd, uint64_t size, const char *sha256)
{
	unsigned char t[PACK_TRAILER];
	char hex[65];
	struct stat st;

	if (sha256 == NULL || strlen(sha256) != 64 || size < PACK_HEADER + PACK_TRAILER ||
	    fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size ||
	    pread(fd, t, sizeof(t), (off_t)(size - PACK_TRAILER)) != (ssize_t)sizeof(t) ||
	    memcmp(t, "EVEND001", 8) != 0)
		return 0;
	hex_of(t + 16, hex);
	return strcmp(hex, sha256) == 0;
}

/* ---- the snapshot ------------------------------------------------------ */

/* archive.db through SQLite's online backup into TMP: one read transaction,
 * so it is the archive at one commit, while the engine goes on writing. */
static int
snapshot(struct bk *b, const char *tmp)
{
	sqlite3 *src = NULL, *dst = NULL;
	sqlite3_backup *job;
	char path[PATH_MAX];
	int rc, tries = 0;

	snprintf(path, sizeof(path), "%s/archive.db", b->data);
	unlink(tmp);
	if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(b->err, b->errlen, "cannot open %s: %s", path,
		    src ? sqlite3_errmsg(src) : "out of memory");
		sqlite3_close(src);
		return -1;
	}
	sqlite3_busy_timeout(src, 10000);
	if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		snprintf(b->err, b->errlen, "cannot write %s: %s", tmp,
		    dst ? sqlite3_errmsg(dst) : "out of memory");
		goto fail;
	}
	if ((job = sqlite3_backup_init(dst, "main", src, "main")) == NULL) {
		sql_failed(b, dst, "cannot copy archive.db");
		goto fail;
	}
	/* -1: every page in one step, so in one read transaction */
	while ((rc = sqlite3_backup_step(job, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED) {
		if (++tries > 100)
			break;
		sqlite3_sleep(100);
	}
	sqlite3_backup_finish(job);
	if (rc != SQLITE_DONE) {
		snprintf(b->err, b->errlen, "cannot copy archive.db to %s: %s", tmp,
		    rc == SQLITE_FULL ? why(ENOSPC) : sqlite3_errmsg(dst));
		goto fail;
	}
	/* One self-contained file (no -wal beside it); the engine turns WAL
	 * on again when it opens a restored archive. */
	if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK) {
		sql_failed(b, dst, "cannot write the copy of archive.db");
		goto fail;
	}
	chmod(tmp, 0600);
	sqlite3_close(src);
	b->snap = dst;
	return 0;
fail:
	sqlite3_close(dst);
	sqlite3_close(src);
	unlink(tmp);
	return -1;
}

/* SQL_NOW, or SQL_OLD on an archive from before the pack store. */
static sqlite3_stmt *
prepare2(struct bk *b, const char *sql_now, const char *sql_old)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(b->snap, sql_now, -1, &st, NULL) == SQLITE_OK)
		return st;
	if (sql_old && sqlite3_prepare_v2(b->snap, sql_old, -1, &st, NULL) == SQLITE_OK)
		return st;
	return NULL;
}

/* ---- segments ---------------------------------------------------------- */

static int
backup_segments(struct bk *b)
{
	char sdir[PATH_MAX], odir[PATH_MAX];
	sqlite3_stmt *st;
	int rc = 0, step;

	snprintf(sdir, sizeof(sdir), "%s/packs", b->data);
	snprintf(odir, sizeof(odir), "%s/packs", b->out);
	/* object: the segment is whole on S3 (schema 6, store/remote.h) */
	if ((st = prepare2(b, "SELECT id, committed, sealed, sha256, object FROM segments ORDER BY id",
	    "SELECT id, committed, sealed, sha256, NULL FROM segments ORDER BY id")) == NULL)
		return 0;	/* an archive from before the pack store */
	if (make_dir(b, odir) < 0) {
		sqlite3_finalize(st);
		return -1;
	}
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		uint64_t committed = (uint64_t)sqlite3_column_int64(st, 1);
		int sealed = sqlite3_column_int(st, 2), fd, shortp;
		const char *sha = (const char *)sqlite3_column_text(st, 3);
		int on_s3 = sealed && sqlite3_column_type(st, 4) != SQLITE_NULL;
		char src[PATH_MAX], dst[PATH_MAX];

		b->r->segments++;
		pack_segment_path(sdir, id, src, sizeof(src));
		pack_segment_path(odir, id, dst, sizeof(dst));
		if (sealed) {
			/* copied by an earlier backup: kept */
			fd = open(dst, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			int same = fd >= 0 && sealed_match(fd, committed, sha);
			if (fd >= 0)
				close(fd);
			if (same) {
				b->r->seg_kept++;
				continue;
			}
		}
		if ((fd = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
			if (errno != ENOENT) {
				rc = failed(b, "cannot read", src);
				break;
			}
			if (on_s3) {
				/* evicted from the local cache: S3 holds it whole,
				 * and the backup's archive.db names its object; it
				 * is not fetched (the backup reads only the data
				 * folder, and needs no keys: docs/operations.md) */
				b->r->seg_remote++;
				continue;
			}
			damaged(b, "segment %s is missing (run emailvault verify --data %s)", src,
			    b->data);
			continue;
		}
		if (sealed && sealed_match(fd, committed, sha)) {
			int k = install_link(b, src, dst);
			if (k != 0) {
				close(fd);
				if (k < 0) {
					rc = -1;
					break;
				}
				b->r->seg_linked++;
				continue;
			}
		}
		/* the open segment up to its committed length: what the
		 * snapshot's records may name; the engine only appends past it */
		rc = install_copy(b, fd, dst, committed, &shortp);
		close(fd);
		if (rc < 0)
			break;
		b->r->seg_copied++;
		if (shortp)
			damaged(b, "segment %s is shorter than the %llu bytes archive.db says are "
			    "committed: the backup has what there is (run emailvault verify --data %s)",
			    src, (unsigned long long)committed, b->data);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = sql_failed(b, b->snap, "reading the copy of archive.db");
	sqlite3_finalize(st);
	return rc;
}

/* Segment files the snapshot does not name (left by a backup of another
 * archive) and temporary files of an interrupted backup. */
static int
prune_segments(struct bk *b)
{
	char odir[PATH_MAX], path[PATH_MAX + 300];
	sqlite3_stmt *st;
	struct dirent *de;
	DIR *d;

	snprintf(odir, sizeof(odir), "%s/packs", b->out);
	if ((d = opendir(odir)) == NULL)
		return errno == ENOENT ? 0 : failed(b, "cannot read", odir);
	st = prepare2(b, "SELECT 1 FROM segments WHERE id = ?1", NULL);
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		size_t len = strlen(n);
		char *end;
		long long id;
		int keep = 0;

		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		if (n[0] != '.' && len > 4 && strcmp(n + len - 4, ".seg") == 0) {
			id = strtoll(n, &end, 10);
			if (st && end == n + len - 4) {
				sqlite3_bind_int64(st, 1, id);
				keep = sqlite3_step(st) == SQLITE_ROW;
				sqlite3_reset(st);
			}
		} else if (!(n[0] == '.' && len > 4 && strcmp(n + len - 4, ".tmp") == 0)) {
			continue;	/* not ours */
		}
		if (keep)
			continue;
		snprintf(path, sizeof(path), "%s/%s", odir, n);
		if (unlink(path) == 0)
			b->r->removed++;
	}
	closedir(d);
	sqlite3_finalize(st);
	return 0;
}

/* ---- the old layout's blob files --------------------------------------- */

/* DATA/blobs/ab/cd/HASH (or OUT's). */
static void
blob_path(const char *root, const char *hash, char *buf, size_t len)
{
	snprintf(buf, len, "%s/blobs/%.2s/%.2s/%s", root, hash, hash + 2, hash);
}

/* Where blob_from_store's bytes go: the temporary file, in order. */
struct blob_out {
	int fd;
	uint64_t off;
};

static int
blob_put(void *ud, const char *p, size_t n)
{
	struct blob_out *o = ud;

	if (pwrite_all(o->fd, p, n, o->off) < 0)
		return -1;
	o->off += n;
	return 0;
}

/* A blob file that was moved into packs after the snapshot: its bytes
 * from wherever DATA holds them now (the name is the content's hash, so
 * they are the same bytes), through a synced temporary file and in bounded
 * memory whatever the message's size. 1 if DATA has them nowhere or they
 * are damaged there (nothing is installed then). */
static int
blob_from_store(struct bk *b, const char *hash, const char *dst)
{
	char tmp[PATH_MAX];
	struct blob_out o = { -1, 0 };
	int rc, e;

	if (b->reader == NULL && (b->reader = store_reader_open(b->data)) == NULL)
		return failed(b, "cannot read", b->data);
	tmp_name(dst, tmp, sizeof(tmp));
	unlink(tmp);
	if ((o.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return failed(b, "cannot write", tmp);
	rc = store_reader_copy(b->reader, hash, blob_put, &o);
	e = errno;
	if (rc == 0 && fsync(o.fd) < 0) {
		rc = -2;
		e = errno;
	}
	if (rc != 0) {
		close(o.fd);
		unlink(tmp);
		errno = e;
		if (rc == -2)
			return failed(b, "cannot write", dst);
		return e == ENOENT || e == EIO || e == ENODATA ? 1 :
		    failed(b, "cannot read message", hash);
	}
	if (close(o.fd) < 0 || rename(tmp, dst) < 0) {
		failed(b, "cannot write", dst);
		unlink(tmp);
		return -1;
	}
	b->r->bytes_copied += o.off;
	return 0;
}

static int
backup_blobs(struct bk *b)
{
	char dir[PATH_MAX];
	sqlite3_stmt *st;
	int rc = 0, step;

	if ((st = prepare2(b, "SELECT hash, size FROM messages WHERE pack_segment IS NULL",
	    "SELECT hash, size FROM messages")) == NULL)
		return sql_failed(b, b->snap, "reading the copy of archive.db");
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		const char *hash = (const char *)sqlite3_column_text(st, 0);
		uint64_t size = (uint64_t)sqlite3_column_int64(st, 1);
		char src[PATH_MAX], dst[PATH_MAX];
		struct stat sb;
		int fd, k, shortp;

		if (hash == NULL || !store_hash_valid(hash)) {
			damaged(b, "archive.db names a message '%s' that is not a SHA-256",
			    hash ? hash : "");
			continue;
		}
		b->r->blobs++;
		blob_path(b->data, hash, src, sizeof(src));
		blob_path(b->out, hash, dst, sizeof(dst));
		/* named by their content: one of the right size is the one */
		if (lstat(dst, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == size) {
			b->r->blob_kept++;
			continue;
		}
		snprintf(dir, sizeof(dir), "%s/blobs/%.2s/%.2s", b->out, hash, hash + 2);
		if (make_dir(b, dir) < 0) {
			rc = -1;
			break;
		}
		if ((fd = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			if (errno != ENOENT) {
				rc = failed(b, "cannot read", src);
				break;
			}
			if ((k = blob_from_store(b, hash, dst)) < 0) {
				rc = -1;
				break;
			}
			if (k > 0)
				damaged(b, "message %s is missing or damaged in %s (run emailvault "
				    "verify --data %s)", hash, b->data, b->data);
			else
				b->r->blob_copied++;
			continue;
		}
		if ((k = install_link(b, src, dst)) != 0) {
			close(fd);
			if (k < 0) {
				rc = -1;
				break;
			}
			b->r->blob_linked++;
			continue;
		}
		rc = install_copy(b, fd, dst, size, &shortp);
		close(fd);
		if (rc < 0)
			break;
		b->r->blob_copied++;
		if (shortp)
			damaged(b, "message %s is shorter in %s than recorded", hash, src);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = sql_failed(b, b->snap, "reading the copy of archive.db");
	sqlite3_finalize(st);
	return rc;
}

static int
hex2(const char *n)
{
	return strlen(n) == 2 && strspn(n, "0123456789abcdef") == 2;
}

/* Blob files of an older backup that the snapshot no longer names (moved
 * into packs since), temporary files, and the folders left empty. */
static int
prune_blobs(struct bk *b)
{
	char root[PATH_MAX], d1[PATH_MAX + 300], d2[PATH_MAX + 600], path[PATH_MAX + 900];
	sqlite3_stmt *st;
	struct dirent *e1, *e2, *e3;
	DIR *r, *a, *c;

	snprintf(root, sizeof(root), "%s/blobs", b->out);
	if ((r = opendir(root)) == NULL)
		return errno == ENOENT ? 0 : failed(b, "cannot read", root);
	st = prepare2(b, "SELECT 1 FROM messages WHERE hash = ?1 AND pack_segment IS NULL",
	    "SELECT 1 FROM messages WHERE hash = ?1");
	while ((e1 = readdir(r)) != NULL) {
		if (!hex2(e1->d_name))
			continue;
		snprintf(d1, sizeof(d1), "%s/%s", root, e1->d_name);
		if ((a = opendir(d1)) == NULL)
			continue;
		while ((e2 = readdir(a)) != NULL) {
			if (!hex2(e2->d_name))
				continue;
			snprintf(d2, sizeof(d2), "%s/%s", d1, e2->d_name);
			if ((c = opendir(d2)) == NULL)
				continue;
			while ((e3 = readdir(c)) != NULL) {
				const char *n = e3->d_name;
				int keep = 0;
				if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
					continue;
				if (st && store_hash_valid(n) && memcmp(n, e1->d_name, 2) == 0 &&
				    memcmp(n + 2, e2->d_name, 2) == 0) {
					sqlite3_bind_text(st, 1, n, -1, SQLITE_STATIC);
					keep = sqlite3_step(st) == SQLITE_ROW;
					sqlite3_reset(st);
				}
				if (keep)
					continue;
				snprintf(path, sizeof(path), "%s/%s", d2, n);
				if (unlink(path) == 0)
					b->r->removed++;
			}
			closedir(c);
			rmdir(d2);	/* only when empty */
		}
		closedir(a);
		rmdir(d1);
	}
	closedir(r);
	rmdir(root);
	sqlite3_finalize(st);
	return 0;
}

/* ---- OAuth2 tokens ----------------------------------------------------- */

static int
token_name(const char *n)
{
	size_t len = strlen(n);

	return n[0] != '.' && len > 5 && strcmp(n + len - 5, ".json") == 0;
}

/* DATA/oauth2/ID.json as they are now (each is replaced whole by rename,
 * so each copy is one version of it), and none the data folder lost. */
static int
backup_tokens(struct bk *b)
{
	char sdir[PATH_MAX], odir[PATH_MAX], src[PATH_MAX + 300], dst[PATH_MAX + 300];
	struct dirent *de;
	struct stat sb;
	DIR *d;
	int rc = 0;

	snprintf(sdir, sizeof(sdir), "%s/oauth2", b->data);
	snprintf(odir, sizeof(odir), "%s/oauth2", b->out);
	if ((d = opendir(sdir)) != NULL) {
		if (make_dir(b, odir) < 0) {
			closedir(d);
			return -1;
		}
		while (rc == 0 && (de = readdir(d)) != NULL) {
			int fd, shortp;
			if (!token_name(de->d_name))
				continue;
			snprintf(src, sizeof(src), "%s/%s", sdir, de->d_name);
			snprintf(dst, sizeof(dst), "%s/%s", odir, de->d_name);
			if ((fd = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
				if (errno != ENOENT && errno != ELOOP)
					rc = failed(b, "cannot read", src);
				continue;
			}
			if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
				rc = install_copy(b, fd, dst, (uint64_t)sb.st_size, &shortp);
				if (rc == 0)
					b->r->tokens++;
			}
			close(fd);
		}
		closedir(d);
	} else if (errno != ENOENT) {
		return failed(b, "cannot read", sdir);
	}
	if (rc < 0)
		return -1;
	if ((d = opendir(odir)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		size_t len = strlen(n);
		if (token_name(n)) {
			snprintf(src, sizeof(src), "%s/%s", sdir, n);
			if (lstat(src, &sb) == 0)
				continue;
		} else if (!(n[0] == '.' && len > 4 && strcmp(n + len - 4, ".tmp") == 0)) {
			continue;
		}
		snprintf(dst, sizeof(dst), "%s/%s", odir, n);
		if (unlink(dst) == 0)
			b->r->removed++;
	}
	closedir(d);
	return sync_dir(odir) < 0 ? failed(b, "cannot sync", odir) : 0;
}

/* ---- the backup -------------------------------------------------------- */

/* 1 if PATH is PARENT or inside it (both real paths). */
static int
inside(const char *path, const char *parent)
{
	size_t n = strlen(parent);

	if (strcmp(parent, "/") == 0)
		return 1;
	return strncmp(path, parent, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* OUT must be empty or a backup: never a data folder, never a folder of
 * other things whose names we might reuse. */
static int
check_out(struct bk *b)
{
	struct dirent *de;
	int ours = 0, other = 0, live = 0;
	DIR *d = opendir(b->out);

	if (d == NULL)
		return failed(b, "cannot read", b->out);
	while ((de = readdir(d)) != NULL) {
		const char *n = de->d_name;
		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "lost+found") == 0)
			continue;
		if (strcmp(n, BACKUP_MANIFEST) == 0 || strcmp(n, BACKUP_PARTIAL) == 0)
			ours = 1;
		else if (strcmp(n, "engine.lock") == 0 || strcmp(n, "control.sock") == 0)
			live = 1;
		else
			other = 1;
	}
	closedir(d);
	if (live) {
		snprintf(b->err, b->errlen, "%s is a data folder (it has engine.lock or control.sock), "
		    "not a backup: back up into an empty or new folder", b->out);
		return -1;
	}
	if (other && !ours) {
		snprintf(b->err, b->errlen, "%s is not empty and holds no emailvault backup: back up "
		    "into an empty or new folder", b->out);
		return -1;
	}
	return 0;
}

static int
write_manifest(struct bk *b)
{
	char path[PATH_MAX], text[PATH_MAX + 1024], when[64];
	time_t t = time(NULL);
	struct tm tm;
	int n;

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(text, sizeof(text),
	    "emailvault backup (complete): restore by copying this folder to an empty data folder\n"
	    "version %s\ncreated %s\ndata %s\nmessages %llu\nsegments %llu\nblobs %llu\n"
	    "oauth2_tokens %llu\nsegments_only_on_s3 %llu\n", EMAILVAULT_VERSION, when, b->data_real,
	    (unsigned long long)b->r->messages, (unsigned long long)b->r->segments,
	    (unsigned long long)b->r->blobs, (unsigned long long)b->r->tokens,
	    (unsigned long long)b->r->seg_remote);
	snprintf(path, sizeof(path), "%s/%s", b->out, BACKUP_MANIFEST);
	return install_bytes(b, path, text, n < (int)sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

/* Everything copied so far durable: the names included, before the
 * archive.db that names them is put in place. */
static int
sync_out(struct bk *b)
{
	int fd = open(b->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return failed(b, "cannot sync", b->out);
	rc = syncfs(fd);
	close(fd);
	return rc < 0 ? failed(b, "cannot sync", b->out) : 0;
}

static int
count_messages(struct bk *b)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(b->snap, "SELECT count(*) FROM messages", -1, &st, NULL) !=
	    SQLITE_OK)
		return sql_failed(b, b->snap, "reading the copy of archive.db");
	if (sqlite3_step(st) == SQLITE_ROW)
		b->r->messages = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return 0;
}

void (*backup_snapshot_taken)(void);

static int
run(struct bk *b)
{
	char tmpdb[PATH_MAX], db[PATH_MAX], path[PATH_MAX];
	static const char note[] = "an emailvault backup is being written here, or was "
	    "interrupted: this folder is not a complete backup until BACKUP exists and this "
	    "file does not\n";
	int lock;

	snprintf(path, sizeof(path), "%s/%s", b->out, BACKUP_PARTIAL);
	if ((lock = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
		return failed(b, "cannot write to", b->out);
	if (flock(lock, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			snprintf(b->err, b->errlen, "another emailvault backup is writing to %s", b->out);
		else
			failed(b, "cannot lock", path);
		close(lock);
		return -1;
	}
	/* From here until the end DIR does not look complete. */
	if (ftruncate(lock, 0) < 0 || pwrite_all(lock, note, sizeof(note) - 1, 0) < 0 ||
	    fsync(lock) < 0) {
		failed(b, "cannot write", path);
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", b->out, BACKUP_MANIFEST);
	if ((unlink(path) < 0 && errno != ENOENT) || sync_dir(b->out) < 0) {
		failed(b, "cannot write to", b->out);
		goto fail;
	}
	snprintf(tmpdb, sizeof(tmpdb), "%s/.archive.db.tmp", b->out);
	snprintf(db, sizeof(db), "%s/archive.db", b->out);
	if (snapshot(b, tmpdb) < 0)
		goto fail;
	if (backup_snapshot_taken != NULL)
		backup_snapshot_taken();
	if (count_messages(b) < 0 || backup_segments(b) < 0 || backup_blobs(b) < 0)
		goto fail_db;
	sqlite3_close(b->snap);
	b->snap = NULL;
	/* the files first, then the archive.db that names them */
	if (sync_out(b) < 0)
		goto fail_db;
	if (rename(tmpdb, db) < 0 || sync_dir(b->out) < 0) {
		failed(b, "cannot write", db);
		goto fail_db;
	}
	if (sqlite3_open_v2(db, &b->snap, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		sql_failed(b, b->snap, "cannot read the copy of archive.db");
		goto fail;
	}
	if (prune_segments(b) < 0 || prune_blobs(b) < 0 || backup_tokens(b) < 0)
		goto fail;
	sqlite3_close(b->snap);
	b->snap = NULL;
	if (sync_out(b) < 0 || write_manifest(b) < 0 || sync_dir(b->out) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/%s", b->out, BACKUP_PARTIAL);
	if (unlink(path) < 0 || sync_dir(b->out) < 0) {
		failed(b, "cannot write to", b->out);
		goto fail;
	}
	close(lock);
	return 0;
fail_db:
	unlink(tmpdb);
fail:
	close(lock);
	return -1;
}

int
backup_run(const char *data_dir, const char *out_dir, FILE *warn, struct backup_result *r,
    char *err, size_t errlen)
{
	struct bk b = { data_dir, out_dir, data_dir, warn, r, NULL, NULL, err, errlen };
	char path[PATH_MAX], realdata[PATH_MAX], realout[PATH_MAX];
	struct stat sb;
	int rc;

	memset(r, 0, sizeof(*r));
	err[0] = '\0';
	snprintf(path, sizeof(path), "%s/archive.db", data_dir);
	if (stat(path, &sb) < 0) {
		snprintf(err, errlen, "no archive in %s (%s)", data_dir, strerror(errno));
		return -1;
	}
	if (paths_mkdir_p(out_dir, 0700) < 0)
		return failed(&b, "cannot create", out_dir);
	if (realpath(data_dir, realdata) == NULL)
		return failed(&b, "cannot resolve", data_dir);
	if (realpath(out_dir, realout) == NULL)
		return failed(&b, "cannot resolve", out_dir);
	if (inside(realout, realdata)) {
		snprintf(err, errlen, "%s is the data folder %s or inside it: back up to a folder "
		    "outside it", out_dir, data_dir);
		return -1;
	}
	b.data_real = realdata;
	if (check_out(&b) < 0)
		return -1;
	if (chmod(out_dir, 0700) < 0 && warn)
		fprintf(warn, "emailvault: warning: cannot make %s private (chmod 700): %s\n", out_dir,
		    strerror(errno));
	rc = run(&b);
	sqlite3_close(b.snap);
	store_reader_close(b.reader);
	return rc;
}

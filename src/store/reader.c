#include "store/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "log.h"
#include "store/pack.h"
#include "store/remote.h"

#define FD_CACHE 8

/* Segment files stay open between reads: export and the indexer read many
 * messages of the same few segments. */
struct open_segment {
	int64_t id;
	int fd;
};

struct store_reader {
	char root[4096];		/* DATA/blobs: the old layout */
	char packs[4096];		/* DATA/packs */
	sqlite3 *db;			/* where each message's bytes are */
	sqlite3_stmt *where;
	struct open_segment fds[FD_CACHE];
	unsigned next;
	struct pack_dctx *dctx;		/* made at the first packed read */
};

struct store_reader *
store_reader_open(const char *data_dir)
{
	struct store_reader *r = calloc(1, sizeof(*r));
	char path[4200];

	if (r == NULL)
		return NULL;
	for (int i = 0; i < FD_CACHE; i++)
		r->fds[i].fd = -1;
	snprintf(r->root, sizeof(r->root), "%s/blobs", data_dir);
	snprintf(r->packs, sizeof(r->packs), "%s/packs", data_dir);
	snprintf(path, sizeof(path), "%s/archive.db", data_dir);
	/* A reader of its own: it may run on another thread than the
	 * engine's connection (the indexer), and it only reads. */
	if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK || sqlite3_prepare_v2(r->db, "SELECT pack_segment, pack_offset, pack_length, "
	    "pack_codec, size FROM messages WHERE hash = ?1", -1, &r->where, NULL) != SQLITE_OK) {
		store_reader_close(r);
		errno = EIO;
		return NULL;
	}
	sqlite3_busy_timeout(r->db, 5000);
	return r;
}

void
store_reader_close(struct store_reader *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < FD_CACHE; i++)
		if (r->fds[i].fd >= 0)
			close(r->fds[i].fd);
	sqlite3_finalize(r->where);
	sqlite3_close(r->db);
	pack_dctx_free(r->dctx);
	free(r);
}

static int
segment_fd(struct store_reader *r, int64_t id)
{
	char path[4200];
	struct open_segment *slot;

	for (int i = 0; i < FD_CACHE; i++)
		if (r->fds[i].fd >= 0 && r->fds[i].id == id)
			return r->fds[i].fd;
	slot = &r->fds[r->next++ % FD_CACHE];
	if (slot->fd >= 0)
		close(slot->fd);
	pack_segment_path(r->packs, id, path, sizeof(path));
	slot->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	slot->id = id;
	if (slot->fd < 0 && errno == ENOENT && remote_current()) {
		/* on S3 and not in the local cache (evicted, or never here):
		 * the whole segment comes back, and stays for the next reads */
		struct s3_error err;
		if (remote_fetch_segment(remote_current(), r->db, id, path, &err) < 0) {
			log_error(NULL, "cannot fetch segment %lld from S3: %s", (long long)id, err.message);
			errno = EIO;
			return -1;
		}
		slot->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	return slot->fd;
}

int
store_hash_valid(const char *hash)
{
	size_t i;

	for (i = 0; hash[i]; i++)
		if (!((hash[i] >= '0' && hash[i] <= '9') || (hash[i] >= 'a' && hash[i] <= 'f')))
			return 0;
	return i == 64;
}

/* 1 when the SHA-256 finished in MD is HASH (hex). A blob file of the
 * old layout carries no checksum of its own: its name is the check. */
static int
digest_is(EVP_MD_CTX *md, const char *hash)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char sum[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char got[65];

	if (EVP_DigestFinal_ex(md, sum, &n) != 1 || n != 32)
		return 0;
	for (unsigned i = 0; i < 32; i++) {
		got[2 * i] = hex[sum[i] >> 4];
		got[2 * i + 1] = hex[sum[i] & 15];
	}
	got[64] = '\0';
	return strcmp(got, hash) == 0;
}

/* The old layout: DATA/blobs/ab/cd/<hash>. */
static int
read_blob_file(struct store_reader *r, const char *hash, size_t max, char **data, size_t *len)
{
	char path[4200];
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%.2s/%.2s/%s", r->root, hash, hash + 2, hash);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EIO;
		return -1;
	}
	if ((max && (uint64_t)st.st_size > max) || (uint64_t)st.st_size >= SIZE_MAX) {
		close(fd);
		errno = EFBIG;
		return -1;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;	/* cut short: the file changed */
			free(buf);
			close(fd);
			errno = e;
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(md, buf, got) == 1 && digest_is(md, hash);
	EVP_MD_CTX_free(md);
	if (!ok) {
		free(buf);
		errno = EIO;	/* not the message its name says */
		return -1;
	}
	buf[got] = '\0';
	*data = buf;
	*len = got;
	return 0;
}

int
store_reader_get(struct store_reader *r, const char *hash, size_t max, char **data, size_t *len)
{
	struct pack_location loc;
	uint64_t size;
	int rc, packed, fd;

	*data = NULL;
	*len = 0;
	if (!store_hash_valid(hash)) {
		errno = EINVAL;
		return -1;
	}
	sqlite3_bind_text(r->where, 1, hash, -1, SQLITE_STATIC);
	rc = sqlite3_step(r->where);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(r->where);
		errno = rc == SQLITE_DONE ? ENOENT : EIO;
		return -1;
	}
	packed = sqlite3_column_type(r->where, 0) != SQLITE_NULL;
	loc.segment = sqlite3_column_int64(r->where, 0);
	loc.offset = (uint64_t)sqlite3_column_int64(r->where, 1);
	loc.length = (uint64_t)sqlite3_column_int64(r->where, 2);
	loc.codec = sqlite3_column_int(r->where, 3);
	size = (uint64_t)sqlite3_column_int64(r->where, 4);
	sqlite3_reset(r->where);
	if (!packed)
		return read_blob_file(r, hash, max, data, len);
	if (max && size > max) {
		errno = EFBIG;
		return -1;
	}
	if ((fd = segment_fd(r, loc.segment)) < 0)
		return -1;
	if (loc.codec != PACK_RAW && r->dctx == NULL && (r->dctx = pack_dctx_new()) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	return pack_read(fd, &loc, hash, size, r->dctx, data, len);
}

/* ---- streams ---------------------------------------------------------------- */

struct store_stream {
	struct pack_stream *ps;		/* a packed message */
	int fd;				/* or a blob file of the old layout, */
	EVP_MD_CTX *md;			/* checked against its name at the end */
	char hash[65];
	uint64_t left;
};

struct store_stream *
store_reader_stream(struct store_reader *r, const char *hash, uint64_t *size)
{
	struct pack_location loc;
	struct store_stream *s;
	int rc, packed, fd;

	if (!store_hash_valid(hash)) {
		errno = EINVAL;
		return NULL;
	}
	sqlite3_bind_text(r->where, 1, hash, -1, SQLITE_STATIC);
	rc = sqlite3_step(r->where);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(r->where);
		errno = rc == SQLITE_DONE ? ENOENT : EIO;
		return NULL;
	}
	packed = sqlite3_column_type(r->where, 0) != SQLITE_NULL;
	loc.segment = sqlite3_column_int64(r->where, 0);
	loc.offset = (uint64_t)sqlite3_column_int64(r->where, 1);
	loc.length = (uint64_t)sqlite3_column_int64(r->where, 2);
	loc.codec = sqlite3_column_int(r->where, 3);
	*size = (uint64_t)sqlite3_column_int64(r->where, 4);
	sqlite3_reset(r->where);
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->fd = -1;
	s->left = *size;
	if (packed) {
		if ((fd = segment_fd(r, loc.segment)) < 0 ||
		    (s->ps = pack_stream_open(fd, &loc, hash, *size)) == NULL) {
			int e = errno;
			free(s);
			errno = e;
			return NULL;
		}
		return s;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/%.2s/%.2s/%s", r->root, hash, hash + 2, hash);
	memcpy(s->hash, hash, sizeof(s->hash));
	if ((s->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 ||
	    (s->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
		int e = s->fd < 0 ? errno : ENOMEM;
		store_stream_close(s);
		errno = e;
		return NULL;
	}
	return s;
}

ssize_t
store_stream_read(struct store_stream *s, void *buf, size_t cap)
{
	ssize_t n;

	if (s->ps)
		return pack_stream_read(s->ps, buf, cap);
	if (s->left == 0) {
		int ok = s->md == NULL || digest_is(s->md, s->hash);
		EVP_MD_CTX_free(s->md);
		s->md = NULL;
		if (!ok) {
			errno = EIO;	/* what was given is not the message */
			return -1;
		}
		return 0;
	}
	if (cap > s->left)
		cap = (size_t)s->left;
	do
		n = read(s->fd, buf, cap);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		errno = EIO;		/* shorter than recorded: the file changed */
		return -1;
	}
	if (n > 0) {
		s->left -= (uint64_t)n;
		if (EVP_DigestUpdate(s->md, buf, (size_t)n) != 1) {
			errno = EIO;
			return -1;
		}
	}
	return n;
}

void
store_stream_close(struct store_stream *s)
{
	if (s == NULL)
		return;
	pack_stream_close(s->ps);
	if (s->fd >= 0)
		close(s->fd);
	EVP_MD_CTX_free(s->md);
	free(s);
}

#define COPY_CHUNK (64 * 1024)

int
store_reader_copy(struct store_reader *r, const char *hash,
    int (*put)(void *ud, const char *p, size_t n), void *ud)
{
	struct store_stream *st;
	uint64_t size;
	char *data;
	size_t len;
	ssize_t n;
	int rc = 0, e;

	if (store_reader_get(r, hash, STORE_WHOLE_MAX, &data, &len) == 0) {
		rc = put(ud, data, len) < 0 ? -2 : 0;
		free(data);
		return rc;
	}
	if (errno != EFBIG || (st = store_reader_stream(r, hash, &size)) == NULL)
		return -1;
	if ((data = malloc(COPY_CHUNK)) == NULL) {
		store_stream_close(st);
		errno = ENOMEM;
		return -1;
	}
	errno = 0;
	while ((n = store_stream_read(st, data, COPY_CHUNK)) > 0)
		if (put(ud, data, (size_t)n) < 0) {
			rc = -2;
			break;
		}
	if (rc == 0 && n < 0)
		rc = -1;
	e = rc == -1 && errno == 0 ? EIO : errno;
	free(data);
	store_stream_close(st);
	errno = e;
	return rc;
}

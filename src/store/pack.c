#define _GNU_SOURCE	/* copy_file_range */
#include "store/pack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zstd.h>

#include "log.h"
#include "paths.h"
#include "store/compress.h"
#include "store/pack_internal.h"

/* Bigger messages spool to a file, compressed on the loop as they arrive;
 * smaller ones stay in memory and are compressed on the compressor thread
 * (at 1 MiB the loop compressed the realistic mix's big attachments). */
#define SPOOL_MEM	((size_t)4 << 20)
#define READ_IN		(64 * 1024)		/* pack_read's input buffer */
#define ZSTD_LEVEL	1			/* measured: see docs/performance.md */
#define COMPRESS_AWAY	4096			/* smaller ones are compressed in place */
/* How long the loop waits for the compressor to start a job it needs,
 * before it compresses the message itself (compress_job_claim): far more
 * than the thread takes to pick one up when it runs, far less than the
 * tens of ms it may not run for while fifty sources import. */
#define CLAIM_WAIT_NS	500000L

static const char seg_magic[8] = { 'E', 'V', 'S', 'E', 'G', '0', '0', '1' };
static const char end_magic[8] = { 'E', 'V', 'E', 'N', 'D', '0', '0', '1' };
static const char rec_magic[4] = { 'E', 'V', 'M', '1' };

struct pack_writer {
	struct pack_store *ps;
	EVP_MD_CTX *md;
	char *mem;			/* raw bytes while small */
	size_t mem_len, mem_cap;
	int spool_fd;			/* compressed bytes once big */
	void *(*also)(const void *, size_t);	/* pack_writer_also: still to run, or running */
	void (*also_free)(void *);
	void *also_out;			/* its result, once run here */
	int also_done;
	char spool_path[4096];
	ZSTD_CCtx *zs;
	uint64_t spool_len;
	uint64_t size;
	char hash[65];
	char *head;			/* once spooled: the first bytes (before, mem is) */
	size_t head_len;
	int head_dropped;
	int finished;
	int compressing;		/* job submitted: mem is the thread's to read */
	struct compress_job job;
};

/* ---- small helpers ----------------------------------------------------- */

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void
hex_of(const unsigned char *md, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

static int
unhex(const char *s, unsigned char *out)
{
	for (int i = 0; i < 32; i++) {
		int v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + k];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* All of IOV at OFF, through short writes and signals. IOV is used up. */
static int
pwritev_all(int fd, struct iovec *v, int nv, uint64_t off)
{
	while (nv > 0) {
		ssize_t n = pwritev(fd, v, nv, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		off += (uint64_t)n;
		while (nv > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			nv--;
		}
		if (nv > 0) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int
pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	struct iovec v = { (void *)buf, len };

	return pwritev_all(fd, &v, 1, off);
}

static int
pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			errno = n == 0 ? ENODATA : errno;	/* shorter than the record says */
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

void
pack_segment_path(const char *dir, int64_t segment, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%08lld.seg", dir, (long long)segment);
}

/* ---- what was appended since the store opened -------------------------- */

static size_t
seen_slot(const struct pack_store *ps, const char *hash)
{
	uint64_t h = 0;

	for (int i = 0; i < 16; i++)
		h = h * 31 + (unsigned char)hash[i];
	return (size_t)h & (ps->capseen - 1);
}

static const struct pack_location *
seen_find(const struct pack_store *ps, const char *hash)
{
	if (ps->capseen == 0)
		return NULL;
	for (size_t i = seen_slot(ps, hash);; i = (i + 1) & (ps->capseen - 1)) {
		if (ps->seen[i].hash[0] == '\0')
			return NULL;
		if (memcmp(ps->seen[i].hash, hash, 64) == 0)
			return &ps->seen[i].loc;
	}
}

static int
seen_add(struct pack_store *ps, const char *hash, const struct pack_location *loc)
{
	if ((ps->nseen + 1) * 2 > ps->capseen) {
		size_t cap = ps->capseen ? ps->capseen * 2 : 1024;
		struct seen *old = ps->seen, *grown = calloc(cap, sizeof(*grown));
		size_t oldcap = ps->capseen;
		if (grown == NULL)
			return -1;
		ps->seen = grown;
		ps->capseen = cap;
		ps->nseen = 0;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i].hash[0])
				seen_add(ps, old[i].hash, &old[i].loc);
		free(old);
	}
	size_t i = seen_slot(ps, hash);
	while (ps->seen[i].hash[0])
		i = (i + 1) & (ps->capseen - 1);
	memcpy(ps->seen[i].hash, hash, 65);
	ps->seen[i].loc = *loc;
	ps->nseen++;
	return 0;
}

/* Forgets what was appended to segment SEG at or past FROM: those bytes are
 * gone. Forgetting everything (out of memory) is safe too: a lookup then
 * falls back to archive.db, and the bytes are appended once more. */
static void
seen_drop(struct pack_store *ps, int64_t seg, uint64_t from)
{
	struct seen *old = ps->seen, *fresh;
	size_t cap = ps->capseen;

	if (cap == 0)
		return;
	if ((fresh = calloc(cap, sizeof(*fresh))) == NULL) {
		memset(ps->seen, 0, cap * sizeof(*ps->seen));
		ps->nseen = 0;
		return;
	}
	ps->seen = fresh;
	ps->nseen = 0;
	for (size_t i = 0; i < cap; i++)
		if (old[i].hash[0] && (old[i].loc.segment != seg || old[i].loc.offset < from))
			seen_add(ps, old[i].hash, &old[i].loc);	/* fewer: never grows */
	free(old);
}

/* ---- segments ---------------------------------------------------------- */

static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Starts segment SEG: its file with the header, durable, and its row. */
static int
new_segment(struct pack_store *ps, int64_t seg, char *err, size_t errlen)
{
	char path[4200];
	unsigned char hdr[PACK_HEADER];
	int fd;

	pack_segment_path(ps->dir, seg, path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	memcpy(hdr, seg_magic, 8);
	put64(hdr + 8, (uint64_t)seg);
	if (fd < 0 || pwrite_all(fd, hdr, sizeof(hdr), 0) < 0 || fdatasync(fd) < 0 ||
	    sync_dir(ps->dir) < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
		if (fd >= 0)
			close(fd);
		errno = e;
		return -1;
	}
	sqlite3_bind_int64(ps->create, 1, seg);
	sqlite3_bind_int64(ps->create, 2, PACK_HEADER);
	sqlite3_bind_double(ps->create, 3, (double)time(NULL));
	int rc = sqlite3_step(ps->create);
	sqlite3_reset(ps->create);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(ps->db));
		close(fd);
		errno = sqlite3_errcode(ps->db) == SQLITE_FULL ? ENOSPC : EIO;
		return -1;
	}
	if (ps->fd >= 0)
		close(ps->fd);
	ps->fd = fd;
	ps->seg = seg;
	ps->end = ps->synced = PACK_HEADER;
	ps->records = ps->records_synced = 0;
	EVP_DigestInit_ex(ps->sum, EVP_sha256(), NULL);
	EVP_DigestUpdate(ps->sum, hdr, sizeof(hdr));
	EVP_MD_CTX_copy_ex(ps->sum_synced, ps->sum);
	return 0;
}

/* After a seal whose next segment could not be started (a full disk):
 * nothing is appended until it is. */
static int
open_next(struct pack_store *ps)
{
	char err[512];

	return new_segment(ps, ps->seg + 1, err, sizeof(err));
}

/* The checksum of FD's first UPTO bytes, read again, and its records counted. */
static int
rehash(struct pack_store *ps, int fd, uint64_t upto)
{
	unsigned char hdr[PACK_RECORD_HEADER];
	char buf[65536];

	EVP_DigestInit_ex(ps->sum, EVP_sha256(), NULL);
	for (uint64_t off = 0; off < upto;) {
		size_t n = upto - off < sizeof(buf) ? (size_t)(upto - off) : sizeof(buf);
		if (pread_all(fd, buf, n, off) < 0)
			return -1;
		EVP_DigestUpdate(ps->sum, buf, n);
		off += n;
	}
	ps->records = 0;
	for (uint64_t off = PACK_HEADER; off + sizeof(hdr) <= upto;) {
		if (pread_all(fd, hdr, sizeof(hdr), off) < 0 || memcmp(hdr, rec_magic, 4) != 0)
			break;
		ps->records++;
		off += sizeof(hdr) + get64(hdr + 16);
	}
	return 0;
}

/* The open segment after a restart: cut back to what was committed. */
static int
resume_segment(struct pack_store *ps, int64_t seg, uint64_t committed, char *err, size_t errlen)
{
	char path[4200];
	struct stat st;
	int fd;

	pack_segment_path(ps->dir, seg, path, sizeof(path));
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size < committed) {
		snprintf(err, errlen, "%s is %lld bytes, shorter than the %llu bytes archive.db says "
		    "are committed: the messages at its end are lost (run emailvault verify)", path,
		    (long long)st.st_size, (unsigned long long)committed);
		close(fd);
		return -2;
	}
	/* Bytes past the commit belong to batches a crash interrupted. */
	if ((uint64_t)st.st_size > committed &&
	    (ftruncate(fd, (off_t)committed) < 0 || fdatasync(fd) < 0)) {
		snprintf(err, errlen, "cannot cut %s back to its committed length: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	/* Its checksum is read back before the first append (catch_up), not
	 * here: a start that appends nothing (a re-sync, every offline
	 * command) need not read up to 64 MiB. */
	ps->fd = fd;
	ps->seg = seg;
	ps->end = ps->synced = committed;
	ps->records = ps->records_synced = 0;
	ps->unhashed = 1;
	return 0;
}

/* The resumed segment's checksum and record count, read back once. */
static int
catch_up(struct pack_store *ps)
{
	if (!ps->unhashed)
		return 0;
	if (rehash(ps, ps->fd, ps->end) < 0)
		return -1;
	ps->records_synced = ps->records;
	EVP_MD_CTX_copy_ex(ps->sum_synced, ps->sum);
	ps->unhashed = 0;
	return 0;
}

static void
remove_spool_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4200];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);	/* a message a run that died was receiving */
	}
	closedir(d);
}

struct pack_store *
pack_store_open(const char *data_dir, sqlite3 *db, char *err, size_t errlen)
{
	struct pack_store *ps = calloc(1, sizeof(*ps));
	char buf[4096];
	sqlite3_stmt *st = NULL;
	int64_t seg = 0;
	uint64_t committed = 0;
	int found = 0;

	if (ps == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ps->fd = -1;
	ps->db = db;
	ps->segment_max = PACK_SEGMENT_MAX;
	snprintf(buf, sizeof(buf), "%s/packs", data_dir);
	ps->dir = strdup(buf);
	snprintf(buf, sizeof(buf), "%s/packs/spool", data_dir);
	ps->spool_dir = strdup(buf);
	ps->sum = EVP_MD_CTX_new();
	ps->sum_synced = EVP_MD_CTX_new();
	ps->mark = EVP_MD_CTX_new();
	ps->sum_syncing = EVP_MD_CTX_new();
	ps->cctx = ZSTD_createCCtx();
	if (ps->dir == NULL || ps->spool_dir == NULL || ps->sum == NULL || ps->sum_synced == NULL ||
	    ps->mark == NULL || ps->sum_syncing == NULL || ps->cctx == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (paths_mkdir_p(ps->spool_dir, 0700) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", ps->spool_dir, strerror(errno));
		goto fail;
	}
	remove_spool_files(ps->spool_dir);
	if (sqlite3_prepare_v2(db, "SELECT pack_segment, pack_offset, pack_length, pack_codec "
	    "FROM messages WHERE hash = ?1", -1, &ps->lookup, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE segments SET committed = ?2 WHERE id = ?1", -1,
	    &ps->commit, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE segments SET sealed = 1, committed = ?2, records = ?3, "
	    "sha256 = ?4 WHERE id = ?1", -1, &ps->seal, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO segments(id, committed, created) VALUES (?1, ?2, ?3)",
	    -1, &ps->create, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT id, committed FROM segments WHERE sealed = 0 "
	    "ORDER BY id DESC LIMIT 1", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		goto fail;
	}
	if (sqlite3_step(st) == SQLITE_ROW) {
		seg = sqlite3_column_int64(st, 0);
		committed = (uint64_t)sqlite3_column_int64(st, 1);
		found = 1;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (found) {
		int rc = resume_segment(ps, seg, committed, err, errlen);
		if (rc == -2) {
			/* Damaged under us (a lost disk block, a bad restore): said
			 * loudly, and never appended to again, but archiving goes
			 * on in a new segment. */
			log_error(NULL, "%s", err);
			if (sqlite3_exec(db, "UPDATE segments SET sealed = 1 WHERE sealed = 0", NULL, NULL,
			    NULL) != SQLITE_OK || new_segment(ps, seg + 1, err, errlen) < 0)
				goto fail;
		} else if (rc < 0) {
			goto fail;
		}
	} else {
		if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM segments", -1, &st, NULL) !=
		    SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
			snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
			goto fail;
		}
		seg = sqlite3_column_int64(st, 0) + 1;
		sqlite3_finalize(st);
		st = NULL;
		if (new_segment(ps, seg, err, errlen) < 0)
			goto fail;
	}
	return ps;
fail:
	sqlite3_finalize(st);
	pack_store_close(ps);
	return NULL;
}

void
pack_store_close(struct pack_store *ps)
{
	if (ps == NULL)
		return;
	pack_remote_free(ps);
	compressor_free(ps->compressor);
	if (ps->fd >= 0)
		close(ps->fd);
	sqlite3_finalize(ps->lookup);
	sqlite3_finalize(ps->commit);
	sqlite3_finalize(ps->seal);
	sqlite3_finalize(ps->create);
	EVP_MD_CTX_free(ps->sum);
	EVP_MD_CTX_free(ps->sum_synced);
	EVP_MD_CTX_free(ps->mark);
	EVP_MD_CTX_free(ps->sum_syncing);
	ZSTD_freeCCtx(ps->cctx);
	free(ps->seen);
	free(ps->dir);
	free(ps->spool_dir);
	free(ps);
}

const char *
pack_store_dir(const struct pack_store *ps)
{
	return ps->dir;
}

void
pack_store_set_segment_max(struct pack_store *ps, uint64_t bytes)
{
	ps->segment_max = bytes;
}

int64_t
pack_store_segment(const struct pack_store *ps)
{
	return ps->seg;
}

uint64_t
pack_store_appended(const struct pack_store *ps)
{
	return ps->appended;
}

/* A failed fdatasync: the tail since the last good one may not be on the
 * disk, and Linux reports a writeback error once, so a second fdatasync
 * would succeed over the hole. The tail is cut off and whatever named it
 * forgotten; its messages are appended again when they come again. */
static void
cut_unsynced(struct pack_store *ps, int why)
{
	struct cut *c = &ps->cuts[ps->ncuts % CUTS_KEPT];

	if (ftruncate(ps->fd, (off_t)ps->synced) < 0)
		log_warn(NULL, "cannot cut the unsynced tail off segment %lld: %s (written over, and "
		    "cut at the seal or the next start)", (long long)ps->seg, strerror(errno));
	ps->end = ps->synced;
	ps->records = ps->records_synced;
	EVP_MD_CTX_copy_ex(ps->sum, ps->sum_synced);
	c->seg = ps->seg;
	c->offset = ps->synced;
	ps->ncuts++;
	ps->cut_errno = why;
	seen_drop(ps, ps->seg, ps->synced);
}

int
pack_store_sync(struct pack_store *ps)
{
	if (ps->fd < 0 || ps->synced == ps->end)
		return 0;
	if (fdatasync(ps->fd) < 0) {
		int e = errno;
		cut_unsynced(ps, e);
		errno = e;
		return -1;
	}
	ps->synced = ps->end;
	ps->records_synced = ps->records;
	EVP_MD_CTX_copy_ex(ps->sum_synced, ps->sum);
	return 0;
}

int
pack_store_check(const struct pack_store *ps, const struct pack_location *loc)
{
	const struct cut *c;

	if (loc->segment <= 0 || loc->epoch == PACK_COMMITTED || loc->epoch >= ps->ncuts)
		return 0;
	/* The first cut after it was appended decides: a later one is never
	 * below it (cuts are at synced, which only grows in a segment). */
	c = &ps->cuts[loc->epoch % CUTS_KEPT];
	if (ps->ncuts - loc->epoch <= CUTS_KEPT &&
	    (c->seg != loc->segment || loc->offset < c->offset))
		return 0;	/* another segment: sealed, so synced, before the cut */
	errno = ps->cut_errno ? ps->cut_errno : EIO;
	return -1;
}

int
pack_store_sync_begin(struct pack_store *ps, int *fd, int64_t *seg, uint64_t *end)
{
	if (ps->fd < 0 || ps->synced == ps->end)
		return 1;
	if ((*fd = fcntl(ps->fd, F_DUPFD_CLOEXEC, 0)) < 0)
		return -1;
	if (EVP_MD_CTX_copy_ex(ps->sum_syncing, ps->sum) != 1) {
		close(*fd);
		errno = ENOMEM;
		return -1;
	}
	ps->records_syncing = ps->records;
	*seg = ps->seg;
	*end = ps->end;
	return 0;
}

void
pack_store_sync_end(struct pack_store *ps, int64_t seg, uint64_t end, int err)
{
	if (seg != ps->seg)
		return;		/* sealed meanwhile: a seal syncs everything itself */
	if (err) {
		cut_unsynced(ps, err);
		return;
	}
	/* A later append that failed may have cut the file back, never
	 * below END (it started past it). */
	if (end > ps->synced && end <= ps->end) {
		ps->synced = end;
		ps->records_synced = ps->records_syncing;
		EVP_MD_CTX_copy_ex(ps->sum_synced, ps->sum_syncing);
	}
}

int
pack_store_full(const struct pack_store *ps)
{
	return ps->end >= ps->segment_max;
}

int
pack_store_record(struct pack_store *ps)
{
	int rc;

	if (ps->fd < 0)
		return 0;	/* sealed: its row (and its parts, on S3) are final */
	if (ps->rs)
		return pack_remote_record(ps);
	sqlite3_bind_int64(ps->commit, 1, ps->seg);
	sqlite3_bind_int64(ps->commit, 2, (sqlite3_int64)ps->synced);
	rc = sqlite3_step(ps->commit);
	sqlite3_reset(ps->commit);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Writes the trailer, makes it durable and records the seal; then the
 * next segment. Runs between batches, when every byte is committed. */
int
pack_seal(struct pack_store *ps)
{
	unsigned char trailer[PACK_TRAILER], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[65], err[512];
	EVP_MD_CTX *copy = EVP_MD_CTX_new();
	int rc;

	if (catch_up(ps) < 0) {
		EVP_MD_CTX_free(copy);
		return -1;
	}
	if (copy == NULL || EVP_MD_CTX_copy_ex(copy, ps->sum) != 1 ||
	    EVP_DigestFinal_ex(copy, md, &mdlen) != 1) {
		EVP_MD_CTX_free(copy);
		errno = ENOMEM;
		return -1;
	}
	EVP_MD_CTX_free(copy);
	memcpy(trailer, end_magic, 8);
	put64(trailer + 8, ps->records);
	memcpy(trailer + 16, md, 32);
	/* A tail a failed cut left past the end goes first: the trailer must
	 * be the file's last bytes. */
	if (ftruncate(ps->fd, (off_t)ps->end) < 0 ||
	    pwrite_all(ps->fd, trailer, sizeof(trailer), ps->end) < 0 || fdatasync(ps->fd) < 0)
		return -1;	/* the trailer is past the end: written over or cut */
	hex_of(md, hex);
	sqlite3_bind_int64(ps->seal, 1, ps->seg);
	sqlite3_bind_int64(ps->seal, 2, (sqlite3_int64)(ps->end + sizeof(trailer)));
	sqlite3_bind_int64(ps->seal, 3, (sqlite3_int64)ps->records);
	sqlite3_bind_text(ps->seal, 4, hex, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(ps->seal);
	sqlite3_reset(ps->seal);
	if (rc != SQLITE_DONE) {
		errno = EIO;
		return -1;
	}
	if (ps->rs)
		pack_remote_sealed(ps, ps->seg, ps->fd, ps->end + sizeof(trailer));
	/* What was appended is committed and sealed now: the map only needs
	 * what the next segment will hold. */
	ps->nseen = 0;
	if (ps->seen)
		memset(ps->seen, 0, ps->capseen * sizeof(*ps->seen));
	/* Sealed: never written again, even when the next cannot be started. */
	close(ps->fd);
	ps->fd = -1;
	return new_segment(ps, ps->seg + 1, err, sizeof(err));
}

int
pack_store_committed(struct pack_store *ps)
{
	/* on S3: the parts just committed are named now; a full segment is
	 * sealed once all of it is in S3 */
	if (ps->rs && pack_remote_committed(ps) < 0)
		return -1;
	if (ps->fd < 0)
		return open_next(ps);
	if (!ps->rs && ps->end >= ps->segment_max && ps->synced == ps->end)
		return pack_seal(ps);
	return 0;
}

/* ---- writers ----------------------------------------------------------- */

struct pack_writer *
pack_writer_new(struct pack_store *ps)
{
	struct pack_writer *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->ps = ps;
	w->spool_fd = -1;
	w->md = EVP_MD_CTX_new();
	if (w->md == NULL || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
		pack_writer_free(w);
		errno = ENOMEM;
		return NULL;
	}
	return w;
}

/* Compresses DATA into the spool file (END: the frame's end). */
static int
spool_write(struct pack_writer *w, const void *data, size_t len, int end)
{
	char out[65536];
	ZSTD_inBuffer in = { data, len, 0 };

	for (;;) {
		ZSTD_outBuffer ob = { out, sizeof(out), 0 };
		size_t left = ZSTD_compressStream2(w->zs, &ob, &in, end ? ZSTD_e_end : ZSTD_e_continue);
		if (ZSTD_isError(left)) {
			errno = EIO;
			return -1;
		}
		for (size_t off = 0; off < ob.pos;) {
			ssize_t n = write(w->spool_fd, out + off, ob.pos - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
			off += (size_t)n;
		}
		w->spool_len += ob.pos;
		if (end ? left == 0 : in.pos == in.size)
			return 0;
	}
}

/* The message outgrew memory: from here on it is compressed into a file. */
static int
start_spool(struct pack_writer *w)
{
	snprintf(w->spool_path, sizeof(w->spool_path), "%s/%ld.%llu", w->ps->spool_dir,
	    (long)getpid(), (unsigned long long)++w->ps->spool_seq);
	w->spool_fd = open(w->spool_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (w->spool_fd < 0)
		return -1;
	if ((w->zs = ZSTD_createCCtx()) == NULL ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(w->zs, ZSTD_c_compressionLevel, ZSTD_LEVEL))) {
		errno = ENOMEM;
		return -1;
	}
	if (spool_write(w, w->mem, w->mem_len, 0) < 0)
		return -1;
	/* The header block's bytes stay readable once the raw bytes go. */
	if (!w->head_dropped) {
		if ((w->head = malloc(PACK_HEAD_MAX)) == NULL)
			return -1;
		w->head_len = w->mem_len < PACK_HEAD_MAX ? w->mem_len : PACK_HEAD_MAX;
		memcpy(w->head, w->mem, w->head_len);
	}
	free(w->mem);
	w->mem = NULL;
	w->mem_len = w->mem_cap = 0;
	return 0;
}

int
pack_writer_write(struct pack_writer *w, const void *data, size_t len)
{
	if (len == 0)
		return 0;	/* an empty body: there may be no buffer to copy into */
	EVP_DigestUpdate(w->md, data, len);
	w->size += len;
	if (w->spool_fd >= 0) {
		/* Only a spooled message copies its first bytes aside; a small
		 * one's are its buffer. */
		if (w->head && w->head_len < PACK_HEAD_MAX) {
			size_t take = PACK_HEAD_MAX - w->head_len < len ? PACK_HEAD_MAX - w->head_len : len;
			memcpy(w->head + w->head_len, data, take);
			w->head_len += take;
		}
		return spool_write(w, data, len, 0);
	}
	if (w->mem_len + len > SPOOL_MEM) {
		if (start_spool(w) < 0)
			return -1;
		return spool_write(w, data, len, 0);
	}
	if (w->mem_len + len > w->mem_cap) {
		size_t cap = w->mem_cap ? w->mem_cap : 16384;	/* pack_writer_expect: none */
		while (cap < w->mem_len + len)
			cap *= 2;
		char *grown = realloc(w->mem, cap);
		if (grown == NULL)
			return -1;
		w->mem = grown;
		w->mem_cap = cap;
	}
	memcpy(w->mem + w->mem_len, data, len);
	w->mem_len += len;
	return 0;
}

/* A message in memory is compressed on the compressor's thread from now
 * until it is appended (or freed); without a thread, when appended. */
static void
start_compression(struct pack_writer *w)
{
	struct pack_store *ps = w->ps;

	if (w->spool_fd >= 0 || w->mem_len < COMPRESS_AWAY)
		return;
	if (ps->compressor == NULL && !ps->compressor_tried) {
		ps->compressor_tried = 1;
		ps->compressor = compressor_new();
	}
	if (ps->compressor == NULL)
		return;
	compress_job_init(&w->job, w->mem, w->mem_len, ZSTD_LEVEL);
	if (w->also && !w->also_done) {
		w->job.also = w->also;
		w->job.also_len = w->mem_len < PACK_HEAD_MAX ? w->mem_len : PACK_HEAD_MAX;
	}
	w->compressing = 1;
	compressor_submit(ps->compressor, &w->job);	/* refused: done, out NULL */
}

int
pack_writer_finish(struct pack_writer *w)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (w->finished)
		return 0;
	if (EVP_DigestFinal_ex(w->md, md, &mdlen) != 1 || mdlen != 32) {
		errno = EIO;
		return -1;
	}
	hex_of(md, w->hash);
	if (w->spool_fd >= 0 && spool_write(w, "", 0, 1) < 0)
		return -1;
	w->finished = 1;
	start_compression(w);
	return 0;
}

const char *
pack_writer_hash(const struct pack_writer *w)
{
	return w->finished ? w->hash : NULL;
}

uint64_t
pack_writer_size(const struct pack_writer *w)
{
	return w->size;
}

const char *
pack_writer_head(const struct pack_writer *w, size_t *len)
{
	if (w->head_dropped) {
		*len = 0;
		return NULL;
	}
	if (w->spool_fd < 0) {
		*len = w->mem_len < PACK_HEAD_MAX ? w->mem_len : PACK_HEAD_MAX;
		return w->mem;
	}
	*len = w->head_len;
	return w->head;
}

/* Runs the work pack_writer_also asked for here, once. */
static void
also_here(struct pack_writer *w)
{
	const char *head;
	size_t len;

	if (w->also == NULL || w->also_done)
		return;
	if (w->spool_fd < 0) {		/* its own buffer, whatever drop_head said */
		head = w->mem;
		len = w->mem_len < PACK_HEAD_MAX ? w->mem_len : PACK_HEAD_MAX;
	} else {
		head = w->head;
		len = w->head_len;
	}
	w->also_out = w->also(head ? head : "", len);
	w->also_done = 1;
}

void
pack_writer_also(struct pack_writer *w, void *(*fn)(const void *head, size_t len),
    void (*free_fn)(void *))
{
	w->also = fn;
	w->also_free = free_fn;
}

void *
pack_writer_also_result(struct pack_writer *w)
{
	void *r;

	if (w->compressing && !w->also_done) {
		compress_job_claim(&w->job, CLAIM_WAIT_NS);
		if (w->job.also_out != NULL) {
			w->also_out = w->job.also_out;
			w->job.also_out = NULL;
			w->also_done = 1;
		}
	}
	also_here(w);		/* the thread did not: the bytes are still here */
	r = w->also_out;
	w->also_out = NULL;
	return r;
}

void
pack_writer_drop_head(struct pack_writer *w)
{
	if (w->spool_fd >= 0)
		also_here(w);	/* the copy is all that is left of the head */
	free(w->head);
	w->head = NULL;
	w->head_len = 0;
	w->head_dropped = 1;
}

int
pack_writer_expect(struct pack_writer *w, uint64_t size)
{
	/* The announced size of a small message: one buffer, no regrowing
	 * (a literal's size is the server's word: bounded by SPOOL_MEM). */
	if (w->mem_cap == 0 && size > 0 && size <= SPOOL_MEM) {
		if ((w->mem = malloc((size_t)size)) == NULL)
			return -1;
		w->mem_cap = (size_t)size;
	}
	return 0;
}

/* A copy of W's bytes already stored: in archive.db or appended lately. */
static int
already_stored(struct pack_writer *w, struct pack_location *loc)
{
	struct pack_store *ps = w->ps;
	const struct pack_location *s = seen_find(ps, w->hash);
	int rc, found = 0;

	if (s) {
		*loc = *s;
		return 1;
	}
	sqlite3_bind_text(ps->lookup, 1, w->hash, 64, SQLITE_STATIC);
	rc = sqlite3_step(ps->lookup);
	if (rc == SQLITE_ROW) {
		found = 1;
		loc->epoch = PACK_COMMITTED;
		if (sqlite3_column_type(ps->lookup, 0) == SQLITE_NULL) {
			loc->segment = -1;	/* a blob file of the old layout */
		} else {
			loc->segment = sqlite3_column_int64(ps->lookup, 0);
			loc->offset = (uint64_t)sqlite3_column_int64(ps->lookup, 1);
			loc->length = (uint64_t)sqlite3_column_int64(ps->lookup, 2);
			loc->codec = sqlite3_column_int(ps->lookup, 3);
		}
	}
	sqlite3_reset(ps->lookup);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		errno = EIO;
		return -1;
	}
	return found;
}

/* Appends LEN bytes at the segment's end, into its checksum too. */
static int
append(struct pack_store *ps, const void *data, size_t len)
{
	if (pwrite_all(ps->fd, data, len, ps->end) < 0)
		return -1;
	EVP_DigestUpdate(ps->sum, data, len);
	ps->end += len;
	return 0;
}

/* A record header and its bytes in one system call (one a message, not two). */
static int
append_record(struct pack_store *ps, const void *hdr, size_t hlen, const void *data, size_t len)
{
	struct iovec iov[2] = { { (void *)hdr, hlen }, { (void *)data, len } };

	if (pwritev_all(ps->fd, iov, 2, ps->end) < 0)
		return -1;
	EVP_DigestUpdate(ps->sum, hdr, hlen);
	EVP_DigestUpdate(ps->sum, data, len);
	ps->end += hlen + len;
	return 0;
}

/* The spool file's compressed bytes after the record header. */
static int
append_spool(struct pack_writer *w)
{
	struct pack_store *ps = w->ps;
	char buf[65536];
	uint64_t off = 0;

	while (off < w->spool_len) {
		size_t n = w->spool_len - off < sizeof(buf) ? (size_t)(w->spool_len - off) : sizeof(buf);
		if (pread_all(w->spool_fd, buf, n, off) < 0 || append(ps, buf, n) < 0)
			return -1;
		off += n;
	}
	return 0;
}

int
pack_writer_store(struct pack_writer *w, int *existed, struct pack_location *loc)
{
	int rc;

	*existed = 0;
	if (!w->finished) {
		errno = EINVAL;
		return -1;
	}
	if ((rc = already_stored(w, loc)) != 0) {
		*existed = rc > 0;
		return rc < 0 ? -1 : 0;
	}
	return pack_writer_append(w, loc);
}

int
pack_writer_append(struct pack_writer *w, struct pack_location *loc)
{
	struct pack_store *ps = w->ps;
	unsigned char hdr[PACK_RECORD_HEADER];
	void *packed = NULL;
	size_t plen = 0;
	int codec, rc;
	uint64_t start;

	if (!w->finished) {
		errno = EINVAL;
		return -1;
	}
	if (ps->fd < 0 && open_next(ps) < 0)
		return -1;
	if (catch_up(ps) < 0)
		return -1;
	start = ps->end;
	if (EVP_MD_CTX_copy_ex(ps->mark, ps->sum) != 1) {
		errno = ENOMEM;
		return -1;
	}
	if (w->compressing) {
		compress_job_claim(&w->job, CLAIM_WAIT_NS);
		packed = w->job.out;	/* ours now; NULL: the thread could not */
		plen = w->job.out_len;
		w->job.out = NULL;
	}
	if (w->spool_fd < 0) {
		/* small: compressed here (or on the compressor's thread), kept
		 * raw when that is no bigger */
		if (packed == NULL) {
			size_t bound = ZSTD_compressBound(w->mem_len);
			if ((packed = malloc(bound ? bound : 1)) == NULL)
				return -1;
			plen = ZSTD_compressCCtx(ps->cctx, packed, bound, w->mem ? w->mem : "",
			    w->mem_len, ZSTD_LEVEL);
		}
		codec = !ZSTD_isError(plen) && plen < w->mem_len ? PACK_ZSTD : PACK_RAW;
		if (codec == PACK_RAW)
			plen = w->mem_len;
	} else {
		codec = PACK_ZSTD;
		plen = (size_t)w->spool_len;
	}
	memcpy(hdr, rec_magic, 4);
	hdr[4] = (unsigned char)codec;
	hdr[5] = hdr[6] = hdr[7] = 0;
	put64(hdr + 8, w->size);
	put64(hdr + 16, plen);
	if (unhex(w->hash, hdr + 24) < 0) {
		free(packed);
		errno = EINVAL;
		return -1;
	}
	if (w->spool_fd >= 0) {
		rc = append(ps, hdr, sizeof(hdr));
		if (rc == 0)
			rc = append_spool(w);
	} else {
		rc = append_record(ps, hdr, sizeof(hdr),
		    codec == PACK_ZSTD ? packed : (w->mem ? w->mem : ""), plen);
	}
	free(packed);
	if (rc < 0) {
		/* Nothing names these bytes and the segment ends where it did: a
		 * full disk leaves no half record behind a later one. */
		int e = errno;
		ps->end = start;
		EVP_MD_CTX_copy_ex(ps->sum, ps->mark);
		if (ftruncate(ps->fd, (off_t)start) < 0)
			log_warn(NULL, "cannot cut a failed record off segment %lld: %s (written over, "
			    "and cut at the seal or the next start)", (long long)ps->seg, strerror(errno));
		errno = e;
		return -1;
	}
	loc->segment = ps->seg;
	loc->offset = start;
	loc->length = plen;
	loc->codec = codec;
	loc->epoch = ps->ncuts;
	ps->records++;
	ps->appended++;
	seen_add(ps, w->hash, loc);
	return 0;
}

void
pack_writer_free(struct pack_writer *w)
{
	if (w == NULL)
		return;
	if (w->spool_fd >= 0) {
		close(w->spool_fd);
		unlink(w->spool_path);
	}
	if (w->compressing) {
		compress_job_destroy(&w->job);	/* before mem goes */
		if (w->job.also_out && w->also_free)
			w->also_free(w->job.also_out);
	}
	if (w->also_out && w->also_free)
		w->also_free(w->also_out);
	ZSTD_freeCCtx(w->zs);
	EVP_MD_CTX_free(w->md);
	free(w->mem);
	free(w->head);
	free(w);
}

/* ---- reading ----------------------------------------------------------- */

/* The zstd frame of SLEN bytes at OFF in FD, decompressed with Z into RAW,
 * which it must fill exactly: 0; -1 with errno (a read failed); -2 corrupt. */
static int
read_zstd(ZSTD_DCtx *z, int fd, uint64_t off, uint64_t slen, char *raw, size_t rlen)
{
	unsigned char in[READ_IN];
	ZSTD_outBuffer out = { raw, rlen, 0 };
	size_t left = 1;
	int rc = 0;

	/* a read that failed half-way leaves its frame in Z */
	if (ZSTD_isError(ZSTD_DCtx_reset(z, ZSTD_reset_session_only))) {
		errno = EIO;
		return -1;
	}
	while (slen > 0) {
		size_t n = slen < sizeof(in) ? (size_t)slen : sizeof(in);
		ZSTD_inBuffer zin = { in, n, 0 };

		if (pread_all(fd, in, n, off) < 0) {
			rc = -1;
			break;
		}
		off += n;
		slen -= n;
		while (zin.pos < zin.size) {
			size_t in_was = zin.pos, out_was = out.pos;

			left = ZSTD_decompressStream(z, &out, &zin);
			if (ZSTD_isError(left) || (left == 0 && (zin.pos < zin.size || slen > 0)) ||
			    (zin.pos == in_was && out.pos == out_was)) {
				/* damaged, bytes after the frame, or more than
				 * the record's raw size (no room, no progress) */
				rc = -2;
				goto out;
			}
		}
	}
	if (rc == 0 && (left != 0 || out.pos != rlen))
		rc = -2;
out:
	return rc;
}

int
pack_read(int fd, const struct pack_location *loc, const char *hash, uint64_t raw_size,
    struct pack_dctx *dctx, char **data, size_t *len)
{
	unsigned char hdr[PACK_RECORD_HEADER], want[32], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *raw = NULL;
	uint64_t rlen, slen;

	*data = NULL;
	*len = 0;
	if (unhex(hash, want) < 0 || pread_all(fd, hdr, sizeof(hdr), loc->offset) < 0)
		return -1;
	rlen = get64(hdr + 8);
	slen = get64(hdr + 16);
	if (memcmp(hdr, rec_magic, 4) != 0 || hdr[4] != loc->codec || slen != loc->length ||
	    rlen != raw_size || memcmp(hdr + 24, want, 32) != 0 || rlen >= SIZE_MAX ||
	    slen >= SIZE_MAX)
		goto corrupt;
	if ((raw = malloc((size_t)rlen + 1)) == NULL)
		return -1;
	if (loc->codec == PACK_RAW) {
		if (slen != rlen || pread_all(fd, raw, (size_t)rlen, loc->offset + sizeof(hdr)) < 0)
			goto fail;
	} else {
		/* Decompressed straight from the file through a small buffer: a
		 * big message is held once, not also as its stored bytes. */
		ZSTD_DCtx *own = NULL, *z = dctx ? (ZSTD_DCtx *)dctx : (own = ZSTD_createDCtx());
		int zrc = z ? read_zstd(z, fd, loc->offset + sizeof(hdr), slen, raw, (size_t)rlen) : -1;
		ZSTD_freeDCtx(own);
		if (z == NULL)
			errno = ENOMEM;
		switch (zrc) {
		case -1:
			goto fail;
		case -2:
			goto corrupt;
		}
	}
	if (EVP_Digest(raw, (size_t)rlen, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    memcmp(md, want, 32) != 0)
		goto corrupt;
	raw[rlen] = '\0';
	*data = raw;
	*len = (size_t)rlen;
	return 0;
corrupt:
	errno = EIO;
fail:
	{
		int e = errno;
		free(raw);
		errno = e;
	}
	return -1;
}

struct pack_dctx *
pack_dctx_new(void)
{
	return (struct pack_dctx *)ZSTD_createDCtx();
}

void
pack_dctx_free(struct pack_dctx *d)
{
	ZSTD_freeDCtx((ZSTD_DCtx *)d);
}

/* ---- reading in chunks --------------------------------------------------- */

#define STREAM_IN	(64 * 1024)

struct pack_stream {
	int fd;				/* our own (dup) */
	uint64_t at, left;		/* stored bytes: next offset, how many remain */
	uint64_t raw_left;		/* raw bytes still to give */
	int codec;
	ZSTD_DStream *z;
	unsigned char *in;
	ZSTD_inBuffer zin;
	EVP_MD_CTX *md;
	unsigned char want[32];
};

struct pack_stream *
pack_stream_open(int fd, const struct pack_location *loc, const char *hash, uint64_t raw_size)
{
	unsigned char hdr[PACK_RECORD_HEADER];
	struct pack_stream *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->fd = -1;
	if (unhex(hash, s->want) < 0 || pread_all(fd, hdr, sizeof(hdr), loc->offset) < 0)
		goto fail;
	if (memcmp(hdr, rec_magic, 4) != 0 || hdr[4] != loc->codec || get64(hdr + 16) !=
	    loc->length || get64(hdr + 8) != raw_size || memcmp(hdr + 24, s->want, 32) != 0) {
		errno = EIO;
		goto fail;
	}
	s->codec = loc->codec;
	s->at = loc->offset + sizeof(hdr);
	s->left = loc->length;
	s->raw_left = raw_size;
	if ((s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0 || (s->md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1)
		goto fail;
	if (s->codec == PACK_ZSTD && ((s->z = ZSTD_createDStream()) == NULL ||
	    (s->in = malloc(STREAM_IN)) == NULL)) {
		errno = ENOMEM;
		goto fail;
	}
	return s;
fail:
	{
		int e = errno;
		pack_stream_close(s);
		errno = e;
	}
	return NULL;
}

/* The last bytes given: the hash must be the record's. */
static ssize_t
stream_end(struct pack_stream *s)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_DigestFinal_ex(s->md, md, &mdlen) != 1 || memcmp(md, s->want, 32) != 0) {
		errno = EIO;
		return -1;
	}
	return 0;
}

ssize_t
pack_stream_read(struct pack_stream *s, void *buf, size_t cap)
{
	size_t got = 0;

	if (s->raw_left == 0) {
		int rc = s->md ? (int)stream_end(s) : 0;
		EVP_MD_CTX_free(s->md);
		s->md = NULL;
		return rc;
	}
	if (cap > s->raw_left)
		cap = (size_t)s->raw_left;
	if (s->codec == PACK_RAW) {
		if (pread_all(s->fd, buf, cap, s->at) < 0)
			return -1;
		s->at += cap;
		s->left -= cap;
		got = cap;
	} else {
		ZSTD_outBuffer out = { buf, cap, 0 };
		while (out.pos == 0) {
			if (s->zin.pos == s->zin.size) {
				size_t n = s->left < STREAM_IN ? (size_t)s->left : STREAM_IN;
				if (n == 0) {
					errno = EIO;	/* the frame ends before the message */
					return -1;
				}
				if (pread_all(s->fd, s->in, n, s->at) < 0)
					return -1;
				s->at += n;
				s->left -= n;
				s->zin.src = s->in;
				s->zin.size = n;
				s->zin.pos = 0;
			}
			size_t rc = ZSTD_decompressStream(s->z, &out, &s->zin);
			if (ZSTD_isError(rc)) {
				errno = EIO;
				return -1;
			}
		}
		got = out.pos;
	}
	s->raw_left -= got;
	if (EVP_DigestUpdate(s->md, buf, got) != 1) {
		errno = EIO;
		return -1;
	}
	return (ssize_t)got;
}

void
pack_stream_close(struct pack_stream *s)
{
	if (s == NULL)
		return;
	if (s->fd >= 0)
		close(s->fd);
	ZSTD_freeDStream(s->z);
	free(s->in);
	EVP_MD_CTX_free(s->md);
	free(s);
}

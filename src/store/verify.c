#include "store/verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include <sys/stat.h>

#include "store/db.h"
#include "store/pack.h"
#include "store/reader.h"
#include "store/reclaim.h"

static void
hex_of(const unsigned char *md, char hex[65])
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
}

struct hashing {
	EVP_MD_CTX *ctx;
	uint64_t size;
};

static int
hash_put(void *ud, const char *p, size_t n)
{
	struct hashing *h = ud;

	h->size += n;
	return EVP_DigestUpdate(h->ctx, p, n) == 1 ? 0 : -1;
}

/*
 * The SHA-256 (*GOT) and size of the stored bytes of message HASH, read in
 * bounded memory whatever its size. 0, or -1 with errno as
 * store_reader_get sets it (EIO: the stored bytes are not the message's).
 */
static int
stored_hash(struct store_reader *reader, const char *hash, char got[65], uint64_t *size)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	struct hashing h = { EVP_MD_CTX_new(), 0 };
	int rc = -1;

	errno = ENOMEM;
	if (h.ctx != NULL && EVP_DigestInit_ex(h.ctx, EVP_sha256(), NULL) == 1) {
		rc = store_reader_copy(reader, hash, hash_put, &h);
		if (rc == -2)
			errno = ENOMEM;
		if (rc == 0 && EVP_DigestFinal_ex(h.ctx, md, NULL) == 1)
			hex_of(md, got);
		else if (rc == 0)
			rc = -1;
	}
	int e = errno;
	EVP_MD_CTX_free(h.ctx);
	*size = h.size;
	errno = e;
	return rc == 0 ? 0 : -1;
}

static int
read_all_at(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Each segment: its file as long as archive.db says, a sealed one's
 * checksum over all its bytes, and the records no message names (left by a
 * batch that failed after appending: harmless, counted). */
static int
check_segments(const char *data_dir, sqlite3 *db, FILE *out, struct verify_result *r)
{
	sqlite3_stmt *st, *refs;
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/packs", data_dir);
	if (sqlite3_prepare_v2(db, "SELECT id, committed, sealed, sha256 FROM segments ORDER BY id",
	    -1, &st, NULL) != SQLITE_OK)
		return 0;	/* an archive from before the pack store */
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE pack_segment = ?1 AND "
	    "pack_offset = ?2", -1, &refs, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		uint64_t committed = (uint64_t)sqlite3_column_int64(st, 1), end = committed;
		int sealed = sqlite3_column_int(st, 2);
		const char *want = (const char *)sqlite3_column_text(st, 3);
		char path[4200], got[65];
		struct stat sb;
		int fd;

		r->segments++;
		pack_segment_path(dir, id, path, sizeof(path));
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) < 0) {
			r->segments_bad++;
			fprintf(out, "segment %s: %s\n", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			continue;
		}
		if ((uint64_t)sb.st_size < committed) {
			r->segments_bad++;
			fprintf(out, "segment %s: %lld bytes, %llu committed\n", path,
			    (long long)sb.st_size, (unsigned long long)committed);
			close(fd);
			continue;
		}
		if (sealed) {
			unsigned char trailer[PACK_TRAILER];
			EVP_MD_CTX *md = EVP_MD_CTX_new();
			unsigned char sum[EVP_MAX_MD_SIZE], buf[65536];
			unsigned int n = 0;
			end = committed - PACK_TRAILER;
			EVP_DigestInit_ex(md, EVP_sha256(), NULL);
			for (uint64_t off = 0; off < end;) {
				size_t k = end - off < sizeof(buf) ? (size_t)(end - off) : sizeof(buf);
				if (read_all_at(fd, buf, k, off) < 0)
					break;
				EVP_DigestUpdate(md, buf, k);
				off += k;
			}
			EVP_DigestFinal_ex(md, sum, &n);
			EVP_MD_CTX_free(md);
			hex_of(sum, got);
			if (read_all_at(fd, trailer, sizeof(trailer), end) < 0 ||
			    memcmp(trailer, "EVEND001", 8) != 0 || memcmp(trailer + 16, sum, 32) != 0 ||
			    (want && strcmp(want, got) != 0)) {
				r->segments_bad++;
				fprintf(out, "segment %s: its checksum does not match (the file changed)\n",
				    path);
			}
		}
		/* records nobody names */
		for (uint64_t off = PACK_HEADER; off + PACK_RECORD_HEADER <= end;) {
			unsigned char hdr[PACK_RECORD_HEADER];
			uint64_t slen = 0;
			if (read_all_at(fd, hdr, sizeof(hdr), off) < 0 || memcmp(hdr, "EVM1", 4) != 0)
				break;
			for (int i = 7; i >= 0; i--)
				slen = slen << 8 | hdr[16 + i];
			sqlite3_bind_int64(refs, 1, id);
			sqlite3_bind_int64(refs, 2, (sqlite3_int64)off);
			if (sqlite3_step(refs) != SQLITE_ROW) {
				r->unreferenced++;
				r->unreferenced_bytes += sizeof(hdr) + slen;
			}
			sqlite3_reset(refs);
			off += sizeof(hdr) + slen;
		}
		close(fd);
	}
	sqlite3_finalize(refs);
	sqlite3_finalize(st);
	return 0;
}

struct orphan_report {
	FILE *out;
	int reclaim;
};

static void
report_orphan(void *ud, const char *hash, uint64_t size, int err)
{
	struct orphan_report *o = ud;

	if (err)
		fprintf(o->out, "orphan  %s: cannot remove it: %s\n", hash, strerror(err));
	else if (o->reclaim)
		fprintf(o->out, "reclaimed %s (%llu bytes, no record named it)\n", hash,
		    (unsigned long long)size);
	else
		fprintf(o->out, "orphan  %s (no record; harmless, left by an interrupted batch)\n",
		    hash);
}

/* Blobs on disk that no record names: counted, or removed with RECLAIM. */
static int
sweep_orphans(const char *data_dir, sqlite3 *db, int reclaim, FILE *out, struct verify_result *r,
    char *err, size_t errlen)
{
	struct orphan_report o = { out, reclaim };
	struct reclaim *sw = reclaim_new(data_dir, db, !reclaim, report_orphan, &o, err,
	    errlen);
	const struct reclaim_counts *c;
	int rc;

	if (sw == NULL)
		return -1;
	while ((rc = reclaim_step(sw, 4096)) == RECLAIM_MORE)
		;
	c = reclaim_counts(sw);
	r->orphans = c->orphans;
	r->reclaimed = c->reclaimed;
	r->reclaimed_bytes = c->bytes;
	r->reclaim_failed = c->failed;
	if (rc == RECLAIM_ERROR)
		snprintf(err, errlen, "%s", reclaim_error(sw));
	reclaim_free(sw);
	return rc == RECLAIM_ERROR ? -1 : 0;
}

/* Whether archive.db has the index's text table (not before migration 7:
 * a read-only verify of an archive the engine has not opened since). */
static int
has_index_text(sqlite3 *db)
{
	sqlite3_stmt *st;
	int yes = 0;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE name = 'fts_text'", -1, &st,
	    NULL) == SQLITE_OK) {
		yes = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
	}
	return yes;
}

/* Index rows without a message, a blob or their text, and messages
 * recorded as indexed without a row; REPAIR removes the first and queues
 * the others for the indexer again. MISSING: the rowids whose blob is
 * gone. */
static int
check_index(sqlite3 *db, int repair, const int64_t *missing, size_t nmissing, FILE *out,
    struct verify_result *r, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int64_t n, untexted = 0;
	int text = has_index_text(db);

	/* The index's rows are those of its own fts_docsize: a scan of fts
	 * itself would read (and inflate) the text of every message. */
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM fts_docsize", -1, &st, NULL) != SQLITE_OK)
		return 0;	/* an archive from before the index: nothing to check */
	if (sqlite3_step(st) == SQLITE_ROW)
		r->index_rows = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (repair && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	/* rows whose message record is gone */
	if (sqlite3_prepare_v2(db, "SELECT id FROM fts_docsize WHERE id NOT IN (SELECT rowid FROM "
	    "messages)", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	while (sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 0);
		r->index_orphans++;
		fprintf(out, "index   row %lld names no message\n", (long long)n);
	}
	sqlite3_finalize(st);
	/* rows whose text is gone: FTS5 could not take them out again */
	if (text && sqlite3_prepare_v2(db, "SELECT id FROM fts_docsize WHERE id IN (SELECT rowid "
	    "FROM messages) AND id NOT IN (SELECT id FROM fts_text)", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	while (text && sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 0);
		r->index_orphans++;
		untexted++;
		fprintf(out, "index   row %lld has lost its text\n", (long long)n);
	}
	if (text)
		sqlite3_finalize(st);
	/* rows whose blob is gone: search would find what show cannot give */
	for (size_t i = 0; i < nmissing; i++) {
		if (sqlite3_prepare_v2(db, "SELECT 1 FROM fts_docsize WHERE id = ?1", -1, &st, NULL) !=
		    SQLITE_OK)
			goto fail;
		sqlite3_bind_int64(st, 1, missing[i]);
		if (sqlite3_step(st) == SQLITE_ROW)
			r->index_orphans++;
		sqlite3_finalize(st);
	}
	/* messages said to be indexed that have no row */
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages WHERE indexed = 1 AND rowid NOT IN "
	    "(SELECT id FROM fts_docsize)", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_step(st) == SQLITE_ROW)
		r->index_holes = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (r->index_holes)
		fprintf(out, "index   %llu messages recorded as indexed have no index row\n",
		    (unsigned long long)r->index_holes);
	if (!repair)
		return 0;
	/* a row goes from the index before its text, which FTS5 reads to
	 * take it out */
	if (sqlite3_exec(db, "DELETE FROM fts WHERE rowid IN (SELECT id FROM fts_docsize WHERE id "
	    "NOT IN (SELECT rowid FROM messages)); "
	    "DELETE FROM fts_text WHERE id NOT IN (SELECT rowid FROM messages); "
	    "UPDATE messages SET indexed = 0 WHERE indexed = 1 AND rowid NOT IN "
	    "(SELECT id FROM fts_docsize)", NULL, NULL, NULL) != SQLITE_OK)
		goto rollback;
	for (size_t i = 0; i < nmissing; i++) {
		if (sqlite3_prepare_v2(db, "DELETE FROM fts WHERE rowid = ?1", -1, &st, NULL) !=
		    SQLITE_OK)
			goto rollback;
		sqlite3_bind_int64(st, 1, missing[i]);
		sqlite3_step(st);
		sqlite3_finalize(st);
		if (sqlite3_prepare_v2(db, "DELETE FROM fts_text WHERE id = ?1", -1, &st, NULL) !=
		    SQLITE_OK)
			goto rollback;
		sqlite3_bind_int64(st, 1, missing[i]);
		sqlite3_step(st);
		sqlite3_finalize(st);
		if (sqlite3_prepare_v2(db, "UPDATE messages SET indexed = 2, index_note = "
		    "'not indexed: its bytes are missing (verify)' WHERE rowid = ?1", -1, &st, NULL) !=
		    SQLITE_OK)
			goto rollback;
		sqlite3_bind_int64(st, 1, missing[i]);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	/* Rows without their text cannot be taken out one by one: the index
	 * is made again from the text of every other row (those without are
	 * indexed again by the engine, as holes). */
	if (untexted > 0) {
		if (sqlite3_exec(db, "INSERT INTO fts(fts) VALUES ('rebuild'); "
		    "UPDATE messages SET indexed = 0 WHERE indexed = 1 AND rowid NOT IN "
		    "(SELECT id FROM fts_text)", NULL, NULL, NULL) != SQLITE_OK)
			goto rollback;
		fprintf(out, "index   made again from the text of its rows\n");
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto rollback;
	r->index_repaired = r->index_orphans + r->index_holes;
	return 0;
rollback:
	snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
fail:
	snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
	if (repair)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

int
verify_archive(const char *data_dir, const struct verify_opts *o, FILE *out,
    struct verify_result *r, char *err, size_t errlen)
{
	struct archive_db *adb = db_open(data_dir, !o->repair_index, err, errlen);
	sqlite3_stmt *st;
	sqlite3 *db;
	struct store_reader *reader;
	int64_t *missing = NULL;
	size_t nmissing = 0, capmissing = 0;
	uint64_t total = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	if (adb == NULL)
		return -1;
	db = db_handle(adb);
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			total = (uint64_t)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	if ((reader = store_reader_open(data_dir)) == NULL) {
		snprintf(err, errlen, "cannot read the archive: %s", strerror(errno));
		db_close(adb);
		return -1;
	}
	/* in storage order: segments are read front to back */
	if (sqlite3_prepare_v2(db, "SELECT hash, size, rowid FROM messages "
	    "ORDER BY pack_segment, pack_offset", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		store_reader_close(reader);
		db_close(adb);
		return -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *hash = (const char *)sqlite3_column_text(st, 0);
		uint64_t want = (uint64_t)sqlite3_column_int64(st, 1);
		char got[65];
		uint64_t size;

		r->checked++;
		if (o->progress)
			o->progress(o->ud, r->checked, total);
		if (stored_hash(reader, hash, got, &size) < 0) {
			if (errno == EIO) {
				r->corrupt++;
				fprintf(out, "corrupt %s: its stored bytes are not the message's "
				    "(they do not hash to its id, or cannot be decompressed)\n", hash);
				continue;
			}
			r->missing++;
			fprintf(out, "missing %s: %s\n", hash, errno == ENODATA ?
			    "its segment ends before it" : strerror(errno));
			if (nmissing == capmissing) {
				size_t cap = capmissing ? capmissing * 2 : 16;
				int64_t *grown = realloc(missing, cap * sizeof(*grown));
				if (grown == NULL)
					continue;	/* counted; the index check misses it */
				missing = grown;
				capmissing = cap;
			}
			missing[nmissing++] = sqlite3_column_int64(st, 2);
			continue;
		}
		r->bytes += size;
		if (strcmp(got, hash) != 0 || size != want) {
			r->corrupt++;
			fprintf(out, "corrupt %s: its bytes hash to %s (%llu bytes, %llu recorded)\n",
			    hash, got, (unsigned long long)size, (unsigned long long)want);
		}
	}
	sqlite3_finalize(st);
	store_reader_close(reader);
	if (check_segments(data_dir, db, out, r) < 0) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		free(missing);
		db_close(adb);
		return -1;
	}
	rc = check_index(db, o->repair_index, missing, nmissing, out, r, err, errlen);
	free(missing);
	if (rc == 0)
		rc = sweep_orphans(data_dir, db, o->reclaim, out, r, err, errlen);
	db_close(adb);
	return rc;
}

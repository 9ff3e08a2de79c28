#include "store/verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/db.h"
#include "store/reclaim.h"

/* SHA-256 of a file as lowercase hex; -1 with errno. */
static int
hash_file(const char *path, char hex[65], uint64_t *size)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	*size = 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	close(fd);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (n < 0)
		return -1;
	for (unsigned i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
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
	struct reclaim *sw = reclaim_new(data_dir, db, NULL, !reclaim, report_orphan, &o, err,
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

/* Index rows without a message or without a blob, and messages recorded
 * as indexed without a row; REPAIR removes the first and queues the others
 * for the indexer again. MISSING: the rowids whose blob is gone. */
static int
check_index(sqlite3 *db, int repair, const int64_t *missing, size_t nmissing, FILE *out,
    struct verify_result *r, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int64_t n;

	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM fts", -1, &st, NULL) != SQLITE_OK)
		return 0;	/* an archive from before the index: nothing to check */
	if (sqlite3_step(st) == SQLITE_ROW)
		r->index_rows = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (repair && sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	/* rows whose message record is gone */
	if (sqlite3_prepare_v2(db, "SELECT rowid FROM fts WHERE rowid NOT IN (SELECT rowid FROM "
	    "messages)", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	while (sqlite3_step(st) == SQLITE_ROW) {
		n = sqlite3_column_int64(st, 0);
		r->index_orphans++;
		fprintf(out, "index   row %lld names no message\n", (long long)n);
	}
	sqlite3_finalize(st);
	/* rows whose blob is gone: search would find what show cannot give */
	for (size_t i = 0; i < nmissing; i++) {
		if (sqlite3_prepare_v2(db, "SELECT 1 FROM fts WHERE rowid = ?1", -1, &st, NULL) !=
		    SQLITE_OK)
			goto fail;
		sqlite3_bind_int64(st, 1, missing[i]);
		if (sqlite3_step(st) == SQLITE_ROW)
			r->index_orphans++;
		sqlite3_finalize(st);
	}
	/* messages said to be indexed that have no row */
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages WHERE indexed = 1 AND rowid NOT IN "
	    "(SELECT rowid FROM fts)", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_step(st) == SQLITE_ROW)
		r->index_holes = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (r->index_holes)
		fprintf(out, "index   %llu messages recorded as indexed have no index row\n",
		    (unsigned long long)r->index_holes);
	if (!repair)
		return 0;
	if (sqlite3_exec(db, "DELETE FROM fts WHERE rowid NOT IN (SELECT rowid FROM messages); "
	    "UPDATE messages SET indexed = 0 WHERE indexed = 1 AND rowid NOT IN (SELECT rowid FROM fts)",
	    NULL, NULL, NULL) != SQLITE_OK)
		goto rollback;
	for (size_t i = 0; i < nmissing; i++) {
		if (sqlite3_prepare_v2(db, "DELETE FROM fts WHERE rowid = ?1", -1, &st, NULL) !=
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
	if (sqlite3_prepare_v2(db, "SELECT hash, size, rowid FROM messages ORDER BY hash", -1, &st,
	    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		db_close(adb);
		return -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *hash = (const char *)sqlite3_column_text(st, 0);
		uint64_t want = (uint64_t)sqlite3_column_int64(st, 1), size;
		char path[4096], got[65];

		snprintf(path, sizeof(path), "%s/blobs/%.2s/%.2s/%s", data_dir, hash, hash + 2, hash);
		r->checked++;
		if (o->progress)
			o->progress(o->ud, r->checked, total);
		if (hash_file(path, got, &size) < 0) {
			r->missing++;
			fprintf(out, "missing %s: %s\n", hash, strerror(errno));
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
	rc = check_index(db, o->repair_index, missing, nmissing, out, r, err, errlen);
	free(missing);
	if (rc == 0)
		rc = sweep_orphans(data_dir, db, o->reclaim, out, r, err, errlen);
	db_close(adb);
	return rc;
}

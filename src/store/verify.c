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

int
verify_archive(const char *data_dir, int reclaim, FILE *out, struct verify_result *r, char *err,
    size_t errlen)
{
	struct archive_db *adb = db_open(data_dir, 1, err, errlen);
	sqlite3_stmt *st;
	sqlite3 *db;
	int rc;

	memset(r, 0, sizeof(*r));
	if (adb == NULL)
		return -1;
	db = db_handle(adb);
	if (sqlite3_prepare_v2(db, "SELECT hash, size FROM messages ORDER BY hash", -1, &st, NULL)
	    != SQLITE_OK) {
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
		if (hash_file(path, got, &size) < 0) {
			r->missing++;
			fprintf(out, "missing %s: %s\n", hash, strerror(errno));
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
	rc = sweep_orphans(data_dir, db, reclaim, out, r, err, errlen);
	db_close(adb);
	return rc;
}

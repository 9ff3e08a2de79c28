/*
 * emailvault storage migrate: a data folder's segments into S3 and back,
 * offline (the engine lock held), one segment at a time and each one
 * recorded in archive.db as soon as it is stored, so an interrupted move
 * (a crash, a kill, the network) is taken up again where it stopped by
 * running the same command. The local files are never changed on the way
 * to S3; on the way back, a file is only replaced by bytes that match its
 * committed length and, for a sealed segment, its checksum.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/db.h"
#include "store/pack.h"
#include "store/remote.h"
#include "store/store.h"

struct seg_row {
	int64_t id;
	uint64_t committed;
	int sealed;
	char object[200];
	char sha[65];
};

static long crash_after = -1;

static int
rows(sqlite3 *db, struct seg_row **out, size_t *n)
{
	sqlite3_stmt *st;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (sqlite3_prepare_v2(db, "SELECT id, committed, sealed, object, sha256 FROM segments "
	    "ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			struct seg_row *g = realloc(*out, cap * sizeof(**out));
			if (g == NULL) {
				sqlite3_finalize(st);
				return -1;
			}
			*out = g;
		}
		struct seg_row *r = &(*out)[(*n)++];
		memset(r, 0, sizeof(*r));
		r->id = sqlite3_column_int64(st, 0);
		r->committed = (uint64_t)sqlite3_column_int64(st, 1);
		r->sealed = sqlite3_column_int(st, 2);
		if (sqlite3_column_type(st, 3) != SQLITE_NULL)
			snprintf(r->object, sizeof(r->object), "%s", sqlite3_column_text(st, 3));
		if (sqlite3_column_type(st, 4) != SQLITE_NULL)
			snprintf(r->sha, sizeof(r->sha), "%s", sqlite3_column_text(st, 4));
	}
	sqlite3_finalize(st);
	return 0;
}

static int
sql(sqlite3 *db, const char *q, int64_t a, int64_t b, int64_t c, const char *text)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
		return -1;
	int n = sqlite3_bind_parameter_count(st);
	if (n >= 1)
		sqlite3_bind_int64(st, 1, a);
	if (n >= 2)
		sqlite3_bind_int64(st, 2, b);
	if (n >= 3)
		sqlite3_bind_int64(st, 3, c);
	if (n >= 4)
		sqlite3_bind_text(st, 4, text, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static int64_t
scalar(sqlite3 *db, const char *q, int64_t a)
{
	sqlite3_stmt *st;
	int64_t v = 0;

	if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(st, 1, a);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void
step_done(void)
{
	static long done;

	fflush(stdout);		/* each step said as it is done */
	if (crash_after >= 0 && ++done >= crash_after) {
		fprintf(stderr, "crash injection: abort after %ld segments\n", done);
		abort();
	}
}

static void
read_crash_env(void)
{
	const char *c = getenv("EMAILVAULT_CRASH_AFTER_SEGMENTS");

	if (c && *c)
		crash_after = strtol(c, NULL, 10);
}

int
remote_migrate_to_s3(struct remote *r, struct store *s, FILE *out, char *err, size_t errlen)
{
	sqlite3 *db = db_handle(s->db);
	struct s3_client *c = remote_client(r);
	struct seg_row *segs;
	struct s3_error e;
	size_t n;
	char path[4200], key[200];
	int rc = -1;

	read_crash_env();
	if (c == NULL || rows(db, &segs, &n) < 0) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		return -1;
	}
	/* parts get this run's number: never a name a crash left behind */
	if (sql(db, "INSERT INTO storage_info(key, value) VALUES ('run', '1') ON CONFLICT(key) "
	    "DO UPDATE SET value = CAST(value AS INTEGER) + 1", 0, 0, 0, NULL) < 0)
		goto dberr;
	int64_t run = scalar(db, "SELECT CAST(value AS INTEGER) FROM storage_info WHERE key = 'run' "
	    "AND ?1 = ?1", 0);
	for (size_t i = 0; i < n; i++) {
		struct seg_row *g = &segs[i];
		if (g->sealed && *g->object)
			continue;		/* stored already */
		pack_segment_path(pack_store_dir(s->packs), g->id, path, sizeof(path));
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			snprintf(err, errlen, "segment %lld is not in %s: %s", (long long)g->id, path,
			    strerror(errno));
			goto out;
		}
		if (g->sealed) {
			remote_segment_key(r, g->id, key, sizeof(key));
			if (s3_put_fd(c, key, fd, 0, g->committed, 0, &e) != 0) {
				close(fd);
				snprintf(err, errlen, "%s", e.message);
				goto out;
			}
			if (sql(db, "UPDATE segments SET object = ?4 WHERE id = ?1", g->id, 0, 0, key) < 0 ||
			    sql(db, "DELETE FROM segment_parts WHERE segment = ?1", g->id, 0, 0, NULL) < 0) {
				close(fd);
				goto dberr;
			}
			fprintf(out, "stored segment %lld (%llu bytes) as %s\n", (long long)g->id,
			    (unsigned long long)g->committed, key);
		} else {
			uint64_t covered = (uint64_t)scalar(db, "SELECT coalesce(max(offset + length), 0) "
			    "FROM segment_parts WHERE segment = ?1", g->id);
			if (covered < g->committed) {
				remote_part_key(r, g->id, covered, run, key, sizeof(key));
				if (s3_put_fd(c, key, fd, covered, g->committed - covered, S3_IF_NONE_MATCH,
				    &e) != 0) {
					close(fd);
					snprintf(err, errlen, "%s", e.message[0] ? e.message :
					    "the object exists already");
					goto out;
				}
				if (sql(db, "INSERT INTO segment_parts(segment, offset, length, key) VALUES "
				    "(?1, ?2, ?3, ?4)", g->id, (int64_t)covered,
				    (int64_t)(g->committed - covered), key) < 0) {
					close(fd);
					goto dberr;
				}
				fprintf(out, "stored the open segment %lld up to %llu bytes as %s\n",
				    (long long)g->id, (unsigned long long)g->committed, key);
			}
		}
		close(fd);
		step_done();
	}
	if (sql(db, "INSERT OR REPLACE INTO storage_info(key, value) VALUES ('location', 's3')", 0, 0,
	    0, NULL) < 0)
		goto dberr;
	rc = 0;
	goto out;
dberr:
	snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
out:
	free(segs);
	return rc;
}

/* FD's first LEN bytes hash to HEX. */
static int
hashes_to(int fd, uint64_t len, const char *hex)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char buf[65536], sum[EVP_MAX_MD_SIZE];
	unsigned int sl = 0;
	char got[65];
	int ok = 0;

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	for (uint64_t off = 0; off < len;) {
		size_t k = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
		ssize_t g = pread(fd, buf, k, (off_t)off);
		if (g <= 0)
			goto out;
		EVP_DigestUpdate(md, buf, (size_t)g);
		off += (uint64_t)g;
	}
	if (EVP_DigestFinal_ex(md, sum, &sl) != 1)
		goto out;
	for (unsigned i = 0; i < 32; i++)
		snprintf(got + 2 * i, 3, "%02x", sum[i]);
	ok = strcmp(got, hex) == 0;
out:
	EVP_MD_CTX_free(md);
	return ok;
}

/* The local file of G is whole: its committed length, and its checksum
 * when sealed. */
static int
local_whole(const char *path, const struct seg_row *g)
{
	struct stat st;
	int fd, ok;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	ok = fstat(fd, &st) == 0 && (uint64_t)st.st_size == g->committed &&
	    (!g->sealed || !*g->sha || (g->committed >= PACK_TRAILER &&
	    hashes_to(fd, g->committed - PACK_TRAILER, g->sha)));
	close(fd);
	return ok;
}

int
remote_migrate_to_local(struct remote *r, struct store *s, FILE *out, char *err, size_t errlen)
{
	sqlite3 *db = db_handle(s->db);
	struct seg_row *segs;
	struct s3_error e;
	size_t n;
	char path[4200];
	int rc = -1;

	read_crash_env();
	if (rows(db, &segs, &n) < 0) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct seg_row *g = &segs[i];
		int parts = scalar(db, "SELECT count(*) FROM segment_parts WHERE segment = ?1", g->id) > 0;
		if (!*g->object && !parts)
			continue;		/* local only */
		pack_segment_path(pack_store_dir(s->packs), g->id, path, sizeof(path));
		if (!local_whole(path, g)) {
			if (remote_fetch_segment(r, db, g->id, path, &e) < 0) {
				snprintf(err, errlen, "segment %lld: %s", (long long)g->id, e.message);
				goto out;
			}
			/* an open segment's file may be longer: cut to its commit */
			if (!g->sealed) {
				if (truncate(path, (off_t)g->committed) < 0) {
					snprintf(err, errlen, "%s: %s", path, strerror(errno));
					goto out;
				}
			}
			if (!local_whole(path, g)) {
				snprintf(err, errlen, "segment %lld from S3 is not what archive.db recorded "
				    "(length or checksum); the local file is left as fetched for a look",
				    (long long)g->id);
				goto out;
			}
			fprintf(out, "fetched segment %lld (%llu bytes)\n", (long long)g->id,
			    (unsigned long long)g->committed);
		}
		if (sql(db, "UPDATE segments SET object = NULL WHERE id = ?1", g->id, 0, 0, NULL) < 0 ||
		    sql(db, "DELETE FROM segment_parts WHERE segment = ?1", g->id, 0, 0, NULL) < 0)
			goto dberr;
		step_done();
	}
	if (sql(db, "INSERT OR REPLACE INTO storage_info(key, value) VALUES ('location', 'local')", 0,
	    0, 0, NULL) < 0)
		goto dberr;
	fprintf(out, "every segment is in the data folder; the objects under %s%s/ in the bucket are "
	    "no longer named and can be deleted\n", remote_config(r)->s3.prefix ?
	    remote_config(r)->s3.prefix : "", remote_engine_id(r));
	rc = 0;
	goto out;
dberr:
	snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
out:
	free(segs);
	return rc;
}

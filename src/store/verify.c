#include "store/verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/db.h"

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

static int
is_hex_name(const char *s, size_t want)
{
	size_t n = strlen(s);

	if (n != want)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int
known(sqlite3_stmt *q, const char *hash)
{
	int found;

	sqlite3_reset(q);
	sqlite3_bind_text(q, 1, hash, -1, SQLITE_STATIC);
	found = sqlite3_step(q) == SQLITE_ROW;
	sqlite3_reset(q);
	return found;
}

/* Blobs on disk that no message row names. */
static void
count_orphans(const char *data_dir, sqlite3 *db, FILE *out, struct verify_result *r)
{
	char root[4096], l1[4200], l2[4400];
	DIR *d1, *d2, *d3;
	struct dirent *a, *b, *c;
	sqlite3_stmt *q;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE hash = ?", -1, &q, NULL) != SQLITE_OK)
		return;
	snprintf(root, sizeof(root), "%s/blobs", data_dir);
	if ((d1 = opendir(root)) == NULL) {
		sqlite3_finalize(q);
		return;
	}
	while ((a = readdir(d1)) != NULL) {
		if (!is_hex_name(a->d_name, 2))
			continue;
		snprintf(l1, sizeof(l1), "%s/%.2s", root, a->d_name);
		if ((d2 = opendir(l1)) == NULL)
			continue;
		while ((b = readdir(d2)) != NULL) {
			if (!is_hex_name(b->d_name, 2))
				continue;
			snprintf(l2, sizeof(l2), "%s/%.2s", l1, b->d_name);
			if ((d3 = opendir(l2)) == NULL)
				continue;
			while ((c = readdir(d3)) != NULL) {
				if (!is_hex_name(c->d_name, 64) || known(q, c->d_name))
					continue;
				r->orphans++;
				fprintf(out, "orphan  %s (no record; harmless, left by an interrupted batch)\n",
				    c->d_name);
			}
			closedir(d3);
		}
		closedir(d2);
	}
	closedir(d1);
	sqlite3_finalize(q);
}

int
verify_archive(const char *data_dir, FILE *out, struct verify_result *r, char *err, size_t errlen)
{
	struct archive_db *adb = db_open(data_dir, 1, err, errlen);
	sqlite3_stmt *st;
	sqlite3 *db;

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
	count_orphans(data_dir, db, out, r);
	db_close(adb);
	return 0;
}

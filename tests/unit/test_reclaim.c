/* The orphan sweep (store/reclaim.c) on a real blob store and archive.db. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "check.h"
#include "paths.h"
#include "store/blob.h"
#include "store/db.h"
#include "store/reclaim.h"

static char dir[] = "/tmp/ev-reclaim-XXXXXX";

/* A blob file of the old layout holding TEXT; its hash into HASH. */
static void
put_blob(struct blob_store *bs, const char *text, char hash[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	char path[4096];
	unsigned int mdlen = 0;
	int fd;

	CHECK(EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL) == 1);
	for (int i = 0; i < 32; i++) {
		hash[2 * i] = hex[md[i] >> 4];
		hash[2 * i + 1] = hex[md[i] & 15];
	}
	hash[64] = '\0';
	blob_store_path(bs, hash, path, sizeof(path));
	*strrchr(path, '/') = '\0';
	CHECK_INT(paths_mkdir_p(path, 0700), 0);
	blob_store_path(bs, hash, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
}

static void
record(struct archive_db *db, const char *hash, uint64_t size)
{
	static uint32_t uid;
	struct db_message m;

	memset(&m, 0, sizeof(m));
	m.hash = hash;
	m.size = size;
	m.date_unix = -1;
	CHECK_INT(db_begin(db), 0);
	CHECK_INT(db_message_add(db, &m, NULL), 0);
	CHECK_INT(db_location_add(db, "s", "INBOX", 1, ++uid, hash, "", 0), 0);
	CHECK_INT(db_commit(db), 0);
}

static int
exists(struct blob_store *bs, const char *hash)
{
	char path[4096];
	struct stat st;

	blob_store_path(bs, hash, path, sizeof(path));
	return lstat(path, &st) == 0;
}

static int
run_to_end(struct reclaim *r, unsigned budget, int *steps)
{
	int rc;

	*steps = 0;
	while ((rc = reclaim_step(r, budget)) == RECLAIM_MORE)
		++*steps;
	return rc;
}

static int reported;

static void
count_report(void *ud, const char *hash, uint64_t size, int err)
{
	(void)ud;
	(void)hash;
	(void)size;
	if (err == 0)
		reported++;
}

static void
test_orphans_go_recorded_stay(void)
{
	char err[512], kept[65], orphan[65];
	struct blob_store *bs = blob_store_open(dir, err, sizeof(err));
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct reclaim *r;
	int steps;

	CHECK(bs != NULL && db != NULL);
	put_blob(bs, "recorded\r\n", kept);
	record(db, kept, 10);
	put_blob(bs, "orphan: a crash came before its commit\r\n", orphan);

	reported = 0;
	r = reclaim_new(dir, db_handle(db), 0, count_report, NULL, err, sizeof(err));
	CHECK(r != NULL);
	CHECK_INT(run_to_end(r, 1, &steps), RECLAIM_DONE);
	CHECK(steps > 3);	/* one entry per step: many steps */
	CHECK(exists(bs, kept));
	CHECK(!exists(bs, orphan));
	CHECK_INT(reclaim_counts(r)->scanned, 2);
	CHECK_INT(reclaim_counts(r)->orphans, 1);
	CHECK_INT(reclaim_counts(r)->reclaimed, 1);
	CHECK_INT(reclaim_counts(r)->bytes, strlen("orphan: a crash came before its commit\r\n"));
	CHECK_INT(reported, 1);
	CHECK_INT(reclaim_step(r, 10), RECLAIM_DONE);
	reclaim_free(r);
	db_close(db);
	blob_store_close(bs);
}

/* The database is asked right before each unlink, not when the sweep
 * starts: a blob that a batch deduplicated against meanwhile is kept. */
static void
test_recorded_after_the_sweep_began_is_kept(void)
{
	char err[512], hash[65];
	struct blob_store *bs = blob_store_open(dir, err, sizeof(err));
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct reclaim *r;
	int steps;

	put_blob(bs, "deduplicated later\r\n", hash);
	r = reclaim_new(dir, db_handle(db), 0, NULL, NULL, err, sizeof(err));
	CHECK(r != NULL);
	CHECK_INT(reclaim_step(r, 1), RECLAIM_MORE);	/* begun */
	record(db, hash, 20);
	CHECK_INT(run_to_end(r, 2, &steps), RECLAIM_DONE);
	CHECK(exists(bs, hash));
	CHECK_INT(reclaim_counts(r)->reclaimed, 0);
	reclaim_free(r);
	db_close(db);
	blob_store_close(bs);
}

static void
touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(write(fd, "x", 1) == 1);
		close(fd);
	}
}

/* Only regular files named by a full lower-case hash in their own ab/cd/
 * folder are blobs; nothing else under blobs/ is removed. */
static void
test_what_is_not_a_blob_is_left_alone(void)
{
	static const char h[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char err[512], path[4096], outside[4096];
	struct blob_store *bs = blob_store_open(dir, err, sizeof(err));
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	const char *names[] = {
		"blobs/01/23/notahash",
		"blobs/01/23/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"blobs/01/23/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
		"blobs/45/67/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"blobs/tmp/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"blobs/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	};
	struct reclaim *r;
	struct stat st;
	int steps;

	snprintf(path, sizeof(path), "%s/blobs/01/23", dir);
	CHECK_INT(paths_mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/blobs/45/67", dir);
	CHECK_INT(paths_mkdir_p(path, 0700), 0);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		touch(path);
	}
	/* a hash-named link to a file outside, and a hash-named folder */
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	touch(outside);
	snprintf(path, sizeof(path), "%s/blobs/01/23/%s", dir, h);
	CHECK_INT(symlink(outside, path), 0);
	snprintf(path, sizeof(path), "%s/blobs/ab/cd/abcd%.60s", dir, h);
	CHECK_INT(paths_mkdir_p(path, 0700), 0);

	r = reclaim_new(dir, db_handle(db), 0, NULL, NULL, err, sizeof(err));
	CHECK(r != NULL);
	CHECK_INT(run_to_end(r, 7, &steps), RECLAIM_DONE);
	CHECK_INT(reclaim_counts(r)->scanned, 2);	/* the blobs recorded above */
	CHECK_INT(reclaim_counts(r)->reclaimed, 0);
	reclaim_free(r);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		CHECK(stat(path, &st) == 0);
	}
	CHECK(stat(outside, &st) == 0);
	snprintf(path, sizeof(path), "%s/blobs/01/23/%s", dir, h);
	CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
	snprintf(path, sizeof(path), "%s/blobs/ab/cd/abcd%.60s", dir, h);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
	db_close(db);
	blob_store_close(bs);
}

static void
test_dry_run_counts_and_removes_nothing(void)
{
	char err[512], hash[65];
	struct blob_store *bs = blob_store_open(dir, err, sizeof(err));
	struct archive_db *db = db_open(dir, 1, err, sizeof(err));
	struct reclaim *r;
	int steps;

	put_blob(bs, "counted, not removed\r\n", hash);
	reported = 0;
	r = reclaim_new(dir, db_handle(db), 1, count_report, NULL, err, sizeof(err));
	CHECK(r != NULL);
	CHECK_INT(run_to_end(r, 4096, &steps), RECLAIM_DONE);
	CHECK_INT(reclaim_counts(r)->orphans, 1);
	CHECK_INT(reclaim_counts(r)->reclaimed, 0);
	CHECK_INT(reported, 1);
	CHECK(exists(bs, hash));
	reclaim_free(r);
	db_close(db);
	blob_store_close(bs);
}

static void
test_no_blobs_folder_yet(void)
{
	char err[512], empty[] = "/tmp/ev-reclaim-empty-XXXXXX";
	struct archive_db *db;
	struct reclaim *r;
	char path[4096];

	CHECK(mkdtemp(empty) != NULL);
	db = db_open(empty, 0, err, sizeof(err));
	CHECK(db != NULL);
	r = reclaim_new(empty, db_handle(db), 0, NULL, NULL, err, sizeof(err));
	CHECK(r != NULL);
	CHECK_INT(reclaim_step(r, 10), RECLAIM_DONE);
	reclaim_free(r);
	db_close(db);
	snprintf(path, sizeof(path), "rm -rf '%s'", empty);
	CHECK_INT(system(path), 0);
}

int
main(void)
{
	char cmd[256];

	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(test_orphans_go_recorded_stay);
	RUN(test_recorded_after_the_sweep_began_is_kept);
	RUN(test_what_is_not_a_blob_is_left_alone);
	RUN(test_dry_run_counts_and_removes_nothing);
	RUN(test_no_blobs_folder_yet);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	DONE();
}

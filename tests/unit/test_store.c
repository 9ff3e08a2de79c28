/* The blob store and archive.db, without the engine. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <sqlite3.h>

#include "check.h"
#include "paths.h"
#include "store/blob.h"
#include "store/db.h"

static char dir[] = "/tmp/ev-store-XXXXXX";

static void
hex(const unsigned char *md, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

static void
test_blob_hash_publish_dedup(void)
{
	char err[256], path[4096], want[65];
	unsigned char md[32];
	struct blob_store *bs = blob_store_open(dir, err, sizeof(err));
	const char msg[] = "Subject: hi\r\n\r\nbody\r\n";
	int existed = -1;
	struct stat st;

	CHECK(bs != NULL);
	SHA256((const unsigned char *)msg, sizeof(msg) - 1, md);
	hex(md, want);
	for (int round = 0; round < 2; round++) {
		struct blob_writer *w = blob_writer_new(bs);
		CHECK(w != NULL);
		/* in pieces, as a literal arrives */
		CHECK_INT(blob_writer_write(w, msg, 5), 0);
		CHECK_INT(blob_writer_write(w, msg + 5, sizeof(msg) - 1 - 5), 0);
		CHECK_INT(blob_writer_finish(w), 0);
		CHECK_STR(blob_writer_hash(w), want);
		CHECK_INT(blob_writer_size(w), sizeof(msg) - 1);
		CHECK_INT(blob_store_sync(bs), 0);
		CHECK_INT(blob_writer_publish(w, &existed), 0);
		CHECK_INT(existed, round);	/* the second copy is not stored again */
		blob_writer_free(w);
	}
	blob_store_path(bs, want, path, sizeof(path));
	CHECK(stat(path, &st) == 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(blob_store_published(bs), 1);
	/* an unpublished writer leaves nothing behind */
	struct blob_writer *w = blob_writer_new(bs);
	CHECK_INT(blob_writer_write(w, "x", 1), 0);
	blob_writer_free(w);
	snprintf(path, sizeof(path), "%s/blobs/tmp", dir);
	CHECK_INT(rmdir(path), 0);	/* empty */
	mkdir(path, 0700);
	blob_store_close(bs);
}

static void
test_db_migrates_and_refuses_newer(void)
{
	char err[512] = "", path[4096];
	struct archive_db *db;
	struct db_folder f;
	sqlite3 *raw;
	int is_new = -1;

	/* an archive made by an older engine (version 0: empty) */
	snprintf(path, sizeof(path), "%s/archive.db", dir);
	CHECK_INT(sqlite3_open(path, &raw), SQLITE_OK);
	CHECK_INT(sqlite3_exec(raw, "PRAGMA user_version = 0", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	db = db_open(dir, 0, err, sizeof(err));
	CHECK(db != NULL);
	CHECK_INT(db_folder_set_uidvalidity(db, "s", "INBOX", 7), 0);
	CHECK_INT(db_folder_set_progress(db, "s", "INBOX", 42), 0);
	CHECK_INT(db_folder_get(db, "s", "INBOX", &f), 0);
	CHECK_INT(f.found, 1);
	CHECK_INT(f.last_uid, 42);
	/* the same UIDVALIDITY keeps the progress, a new one starts over */
	CHECK_INT(db_folder_set_uidvalidity(db, "s", "INBOX", 7), 0);
	db_folder_get(db, "s", "INBOX", &f);
	CHECK_INT(f.last_uid, 42);
	CHECK_INT(db_folder_set_uidvalidity(db, "s", "INBOX", 8), 0);
	db_folder_get(db, "s", "INBOX", &f);
	CHECK_INT(f.last_uid, 0);
	CHECK_INT(f.uidvalidity, 8);
	struct db_message m = { .hash = "ab", .size = 3, .date_unix = -1 };
	CHECK_INT(db_message_add(db, &m, &is_new), 0);
	CHECK_INT(is_new, 1);
	CHECK_INT(db_message_add(db, &m, &is_new), 0);
	CHECK_INT(is_new, 0);

	/* owed UIDs: attempts counted only when asked, listed in order */
	uint32_t *uids;
	size_t n;
	CHECK_INT(db_pending_note(db, "s", "INBOX", 8, 9, 1, "NIL"), 1);
	CHECK_INT(db_pending_note(db, "s", "INBOX", 8, 3, 0, "split"), 0);
	CHECK_INT(db_pending_note(db, "s", "INBOX", 8, 9, 1, "NIL again"), 2);
	CHECK_INT(db_pending_note(db, "s", "INBOX", 9, 9, 1, "other uidvalidity"), 1);
	CHECK_INT(db_pending_list(db, "s", "INBOX", 8, &uids, &n), 0);
	CHECK_INT(n, 2);
	CHECK_INT(uids[0], 3);
	CHECK_INT(uids[1], 9);
	free(uids);
	CHECK_INT(db_pending_delete(db, "s", "INBOX", 8, 3), 0);
	CHECK_INT(db_pending_list(db, "s", "INBOX", 8, &uids, &n), 0);
	CHECK_INT(n, 1);
	free(uids);
	db_close(db);

	/* a newer engine's archive is refused with a clear message */
	CHECK_INT(sqlite3_open(path, &raw), SQLITE_OK);
	CHECK_INT(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	err[0] = '\0';
	db = db_open(dir, 0, err, sizeof(err));
	CHECK(db == NULL);
	CHECK(strstr(err, "newer than this emailvault") != NULL);
	CHECK_INT(sqlite3_open(path, &raw), SQLITE_OK);
	sqlite3_exec(raw, "PRAGMA user_version = 1", NULL, NULL, NULL);
	sqlite3_close(raw);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(test_blob_hash_publish_dedup);
	RUN(test_db_migrates_and_refuses_newer);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			return 1;
	}
	DONE();
}

/* The blob store and archive.db, without the engine. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "paths.h"
#include "store/blob.h"
#include "store/db.h"

static char dir[] = "/tmp/ev-store-XXXXXX";

/* The old layout: leftovers of an unfinished write removed at open, blob
 * paths by hash. (Writing is the pack store's: test_pack.) */
static void
test_old_layout_open_and_paths(void)
{
	static const char h[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char err[256], path[4096];
	struct blob_store *bs;
	struct stat st;
	FILE *f;

	snprintf(path, sizeof(path), "%s/blobs/tmp", dir);
	CHECK_INT(paths_mkdir_p(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/blobs/tmp/blob-1", dir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	fputs("half a message", f);
	fclose(f);
	bs = blob_store_open(dir, err, sizeof(err));
	CHECK(bs != NULL);
	CHECK(stat(path, &st) < 0);	/* the unfinished write is gone */
	blob_store_path(bs, h, path, sizeof(path));
	snprintf(err, sizeof(err), "%s/blobs/01/23/%s", dir, h);
	CHECK_STR(path, err);
	snprintf(err, sizeof(err), "%s/blobs", dir);
	CHECK_STR(blob_store_root(bs), err);
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

struct writer {
	struct archive_db *db;
	int yields;
	int rc;
};

static void *
write_progress(void *arg)
{
	struct writer *w = arg;

	if (w->yields)
		w->rc = sqlite3_exec(db_handle(w->db), "UPDATE folders SET last_uid = 5", NULL, NULL,
		    NULL) == SQLITE_OK ? 0 : -1;
	else
		w->rc = db_folder_set_progress(w->db, "s", "INBOX", 99);
	return NULL;
}

static int
wait_until_waiting(int want)
{
	for (int i = 0; i < 2000; i++) {
		if (db_writer_waiting() == want)
			return 1;
		usleep(1000);
	}
	return 0;
}

/* The indexer's connection yields: it sees when another of the process's
 * connections (the loop's) waits for the write lock, and only then. */
static void
test_a_waiting_writer_is_seen(void)
{
	char err[512] = "", sub[4096];
	struct archive_db *indexer, *loop;
	struct writer w;
	pthread_t t;

	snprintf(sub, sizeof(sub), "%s/yield", dir);
	CHECK_INT(mkdir(sub, 0700), 0);
	indexer = db_open(sub, 0, err, sizeof(err));
	loop = db_open(sub, 0, err, sizeof(err));
	if (indexer == NULL || loop == NULL) {
		CHECK_STR(err, "");
		return;
	}
	w = (struct writer){ loop, 0, -1 };
	db_yield_to_waiters(indexer);
	CHECK_INT(db_writer_waiting(), 0);
	CHECK_INT(sqlite3_exec(db_handle(indexer), "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	CHECK_INT(pthread_create(&t, NULL, write_progress, &w), 0);
	CHECK(wait_until_waiting(1));
	CHECK_INT(sqlite3_exec(db_handle(indexer), "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	pthread_join(t, NULL);
	CHECK_INT(w.rc, 0);
	CHECK(wait_until_waiting(0));

	/* the yielding connection waiting for the loop's transaction is no waiter */
	w = (struct writer){ indexer, 1, -1 };
	CHECK_INT(sqlite3_exec(db_handle(loop), "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	CHECK_INT(pthread_create(&t, NULL, write_progress, &w), 0);
	usleep(20000);
	CHECK_INT(db_writer_waiting(), 0);
	CHECK_INT(sqlite3_exec(db_handle(loop), "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	pthread_join(t, NULL);
	CHECK_INT(w.rc, 0);
	db_close(indexer);
	db_close(loop);
}

/* A fresh archive.db in DIR/NAME (SUB gets the folder's path), or NULL
 * with the reason checked. */
static struct archive_db *
open_fresh(const char *name, char *sub, size_t sublen)
{
	char err[512] = "";
	struct archive_db *db;

	snprintf(sub, sublen, "%s/%s", dir, name);
	CHECK_INT(mkdir(sub, 0700), 0);
	if ((db = db_open(sub, 0, err, sizeof(err))) == NULL)
		CHECK_STR(err, "");
	return db;
}

/* The loop's connection leaves the WAL's checkpoints to a thread: a commit
 * past the threshold wakes it, and it copies the pages into archive.db. */
static void
test_checkpoints_on_their_thread(void)
{
	char sub[4096], path[4200];
	struct archive_db *db = open_fresh("checkpoint", sub, sizeof(sub));
	struct stat st;
	int waited = 0;

	if (db == NULL)
		return;
	CHECK_INT(db_checkpoint_on_thread(db), 0);
	CHECK_INT(sqlite3_exec(db_handle(db), "CREATE TABLE t (b BLOB)", NULL, NULL, NULL),
	    SQLITE_OK);
	CHECK_INT(db_checkpoints(db), 0);	/* a few pages: no checkpoint yet */
	/* 1,200 pages of 4 KiB in one commit: past the threshold of 1,000 */
	CHECK_INT(sqlite3_exec(db_handle(db), "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
	    "SELECT i + 1 FROM n WHERE i < 1200) INSERT INTO t SELECT zeroblob(4000) FROM n; "
	    "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	while (db_checkpoints(db) == 0 && waited++ < 1000)
		usleep(10000);
	CHECK(db_checkpoints(db) >= 1);
	snprintf(path, sizeof(path), "%s/archive.db", sub);
	CHECK_INT(stat(path, &st), 0);
	CHECK(st.st_size >= 1200 * 4000);	/* the pages are in the file, not only the WAL */
	db_close(db);
}

/* A transaction far bigger than the usual grows the WAL; once it is
 * checkpointed, the next write starts the WAL over and cuts it back to
 * 64 MiB (journal_size_limit), where SQLite would keep it at its largest. */
static void
test_wal_cut_back_after_a_big_transaction(void)
{
	char sub[4096], wal[4200];
	struct archive_db *db = open_fresh("walsize", sub, sizeof(sub));
	struct stat st;
	int log = -1, done = -2;

	if (db == NULL)
		return;
	snprintf(wal, sizeof(wal), "%s/archive.db-wal", sub);
	/* 20,000 pages of 4 KiB: an 80 MB WAL */
	CHECK_INT(sqlite3_exec(db_handle(db), "CREATE TABLE t (b BLOB); BEGIN; WITH RECURSIVE "
	    "n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t "
	    "SELECT zeroblob(4000) FROM n; COMMIT", NULL, NULL, NULL), SQLITE_OK);
	CHECK_INT(stat(wal, &st), 0);
	CHECK(st.st_size > 80 * 1000 * 1000);
	CHECK_INT(sqlite3_wal_checkpoint_v2(db_handle(db), NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
	    &done), SQLITE_OK);
	CHECK_INT(done, log);
	CHECK_INT(sqlite3_exec(db_handle(db), "INSERT INTO t VALUES (1)", NULL, NULL, NULL),
	    SQLITE_OK);
	CHECK_INT(stat(wal, &st), 0);
	CHECK(st.st_size <= 64 << 20);
	db_close(db);
}

int
main(void)
{
	if (mkdtemp(dir) == NULL)
		return 1;
	RUN(test_old_layout_open_and_paths);
	RUN(test_db_migrates_and_refuses_newer);
	RUN(test_a_waiting_writer_is_seen);
	RUN(test_checkpoints_on_their_thread);
	RUN(test_wal_cut_back_after_a_big_transaction);
	{
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			return 1;
	}
	DONE();
}

#include "store/db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "search/tokenize.h"
#include "store/checkpointer.h"

/* The WAL's length (4-KiB pages) that has the thread checkpoint it:
 * SQLite's own threshold. */
#define CHECKPOINT_PAGES 1000

enum stmt {
	ST_FOLDER_GET, ST_FOLDER_UPSERT_UIDV, ST_FOLDER_PROGRESS, ST_FOLDER_ON_SERVER,
	ST_MESSAGE_ADD, ST_LOCATION_ADD, ST_SKIP_ADD, ST_EVENT_ADD,
	ST_PENDING_LIST, ST_PENDING_NOTE, ST_PENDING_DELETE, ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_FOLDER_GET] =
	    "SELECT uidvalidity, last_uid, on_server FROM folders WHERE source = ?1 AND name = ?2",
	[ST_FOLDER_UPSERT_UIDV] =
	    "INSERT INTO folders(source, name, uidvalidity, last_uid) VALUES (?1, ?2, ?3, 0) "
	    "ON CONFLICT(source, name) DO UPDATE SET "
	    "last_uid = CASE WHEN uidvalidity = excluded.uidvalidity THEN last_uid ELSE 0 END, "
	    "uidvalidity = excluded.uidvalidity",
	[ST_FOLDER_PROGRESS] =
	    "UPDATE folders SET last_uid = max(last_uid, ?3), last_sync = ?4 "
	    "WHERE source = ?1 AND name = ?2",
	[ST_FOLDER_ON_SERVER] =
	    "UPDATE folders SET on_server = ?3 WHERE source = ?1 AND name = ?2",
	[ST_MESSAGE_ADD] =
	    "INSERT INTO messages(hash, size, subject, from_text, to_text, cc_text, date_text, "
	    "date_unix, message_id, from_addrs, to_addrs, first_seen, sort_date, pack_segment, "
	    "pack_offset, pack_length, pack_codec) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) "
	    "ON CONFLICT(hash) DO NOTHING",
	[ST_LOCATION_ADD] =
	    "INSERT INTO locations(source, folder, uidvalidity, uid, hash, flags, internaldate, "
	    "archived_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
	    "ON CONFLICT(source, folder, uidvalidity, uid) DO NOTHING",
	[ST_SKIP_ADD] =
	    "INSERT INTO skipped(source, folder, uidvalidity, uid, size, reason, at) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
	    "ON CONFLICT(source, folder, uidvalidity, uid) DO NOTHING",
	[ST_EVENT_ADD] =
	    "INSERT INTO events(at, source, kind, detail) VALUES (?1, ?2, ?3, ?4)",
	[ST_PENDING_LIST] =
	    "SELECT uid FROM pending WHERE source = ?1 AND folder = ?2 AND uidvalidity = ?3 "
	    "ORDER BY uid",
	[ST_PENDING_NOTE] =
	    "INSERT INTO pending(source, folder, uidvalidity, uid, attempts, reason, first_seen, "
	    "last_try) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
	    "ON CONFLICT(source, folder, uidvalidity, uid) DO UPDATE SET "
	    "attempts = attempts + excluded.attempts, reason = excluded.reason, "
	    "last_try = excluded.last_try RETURNING attempts",
	[ST_PENDING_DELETE] =
	    "DELETE FROM pending WHERE source = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
};

/* Migration i brings the schema from version i to i + 1. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE sources ("
	"  id TEXT PRIMARY KEY, name TEXT, status TEXT, paused INTEGER NOT NULL DEFAULT 0,"
	"  import_done INTEGER NOT NULL DEFAULT 0, error_kind TEXT, error_message TEXT,"
	"  error_code TEXT, error_at REAL, error_attempt INTEGER, next_retry REAL,"
	"  last_sync REAL, progress TEXT, updated REAL);"
	"CREATE TABLE folders ("
	"  source TEXT NOT NULL, name TEXT NOT NULL, uidvalidity INTEGER,"
	"  last_uid INTEGER NOT NULL DEFAULT 0, on_server INTEGER, last_sync REAL,"
	"  PRIMARY KEY (source, name));"
	"CREATE TABLE messages ("
	"  hash TEXT PRIMARY KEY, size INTEGER NOT NULL, subject TEXT, from_text TEXT,"
	"  to_text TEXT, cc_text TEXT, date_text TEXT, date_unix INTEGER, message_id TEXT,"
	"  from_addrs TEXT, to_addrs TEXT, first_seen REAL);"
	"CREATE INDEX messages_date ON messages(date_unix);"
	"CREATE INDEX messages_message_id ON messages(message_id);"
	"CREATE TABLE locations ("
	"  source TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL, hash TEXT NOT NULL REFERENCES messages(hash), flags TEXT,"
	"  internaldate INTEGER, archived_at REAL,"
	"  PRIMARY KEY (source, folder, uidvalidity, uid));"
	"CREATE INDEX locations_hash ON locations(hash);"
	"CREATE TABLE skipped ("
	"  source TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL, size INTEGER, reason TEXT, at REAL,"
	"  PRIMARY KEY (source, folder, uidvalidity, uid));"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY, at REAL NOT NULL, source TEXT, kind TEXT NOT NULL, detail TEXT);"
	"CREATE INDEX events_source ON events(source, at);",
	/* 1 -> 2: UIDs the server did not give yet (asked again on the next
	 * passes, then skipped), and folder names as the server sent them. */
	"CREATE TABLE pending ("
	"  source TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
	"  uid INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, reason TEXT,"
	"  first_seen REAL, last_try REAL,"
	"  PRIMARY KEY (source, folder, uidvalidity, uid));"
	"ALTER TABLE folders ADD COLUMN raw BLOB;",
	/* 2 -> 3: the full-text index (docs/search.md), filled by the indexer
	 * after archiving: indexed 0 = to do, 1 = done, 2 = could not be read. */
	"ALTER TABLE messages ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE messages ADD COLUMN attachments INTEGER;"
	"ALTER TABLE messages ADD COLUMN sort_date INTEGER;"
	"ALTER TABLE messages ADD COLUMN index_note TEXT;"
	"CREATE INDEX messages_unindexed ON messages(indexed) WHERE indexed = 0;"
	"CREATE INDEX messages_sort_date ON messages(sort_date);"
	"CREATE INDEX locations_source_folder ON locations(source, folder);"
	"CREATE VIRTUAL TABLE fts USING fts5(subject, sender, recipient, cc, body, filename, "
	"attachment, tokenize = 'emailvault');",
	/* 3 -> 4: the pack store (store/pack.h): where each message's bytes
	 * are (NULL: still a blob file of the old layout), and the segments. */
	"ALTER TABLE messages ADD COLUMN pack_segment INTEGER;"
	"ALTER TABLE messages ADD COLUMN pack_offset INTEGER;"
	"ALTER TABLE messages ADD COLUMN pack_length INTEGER;"
	"ALTER TABLE messages ADD COLUMN pack_codec INTEGER;"
	"CREATE INDEX messages_pack ON messages(pack_segment, pack_offset);"
	"CREATE TABLE segments ("
	"  id INTEGER PRIMARY KEY, committed INTEGER NOT NULL DEFAULT 0,"
	"  sealed INTEGER NOT NULL DEFAULT 0, records INTEGER, sha256 TEXT, created REAL);",
	/* 4 -> 5: the IMAP view's mailboxes (docs/imap-view.md): UIDs of its
	 * own, given once and kept, so a client's cache stays right across
	 * restarts. owner '' for a source's folder (the same for every user),
	 * a user's name for their All; origin is what a UID stands for
	 * ("uidvalidity:uid" of the location, or the hash in All). */
	"CREATE TABLE imap_mailboxes ("
	"  id INTEGER PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL,"
	"  uidvalidity INTEGER NOT NULL, next_uid INTEGER NOT NULL DEFAULT 1, sources TEXT,"
	"  UNIQUE (owner, name));"
	"CREATE TABLE imap_uids ("
	"  mailbox INTEGER NOT NULL, uid INTEGER NOT NULL, hash TEXT NOT NULL, flags TEXT,"
	"  internaldate INTEGER, origin TEXT NOT NULL, PRIMARY KEY (mailbox, uid));"
	"CREATE UNIQUE INDEX imap_uids_origin ON imap_uids(mailbox, origin);",
	/* 5 -> 6: segments on S3 (store/remote.h): the engine id and run
	 * count, each uploaded part of a segment, a sealed segment's object. */
	"CREATE TABLE storage_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE segment_parts ("
	"  segment INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,"
	"  key TEXT NOT NULL UNIQUE, PRIMARY KEY (segment, offset));"
	"ALTER TABLE segments ADD COLUMN object TEXT;",
	/* 6 -> 7: the index's text compressed in a table of its own
	 * (search/index_text.h) instead of FTS5's uncompressed copy: the
	 * index is made again by the indexer, in the background. The
	 * (source, folder) index is the primary key's first two columns. */
	"DROP TABLE fts;"
	DB_FTS_TEXT_CREATE ";"
	DB_FTS_VIEW_CREATE ";"
	DB_FTS_CREATE ";"
	"UPDATE messages SET indexed = 0 WHERE indexed <> 0;"
	"DROP INDEX locations_source_folder;",
};

struct archive_db {
	sqlite3 *db;
	sqlite3_stmt *stmts[ST_COUNT];
	int wal_fd;			/* db_wal_fd; -1 until asked */
	int yields;			/* db_yield_to_waiters: lets this process's other writers in */
	struct checkpointer *checkpointer;	/* db_checkpoint_on_thread, or NULL */
};

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
exec(struct archive_db *db, const char *sql)
{
	return sqlite3_exec(db->db, sql, NULL, NULL, NULL);
}

/* The migration after which the index is empty and made again. */
#define INDEX_REMADE_AT 7

static int
has_messages(struct archive_db *db)
{
	sqlite3_stmt *st;
	int any = 0;

	if (sqlite3_prepare_v2(db->db, "SELECT 1 FROM messages LIMIT 1", -1, &st, NULL) ==
	    SQLITE_OK) {
		any = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
	}
	return any;
}

int
db_secure_delete_fast(sqlite3 *db)
{
	sqlite3_stmt *st;
	int was = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA secure_delete", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			was = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_exec(db, "PRAGMA secure_delete = FAST", NULL, NULL, NULL);
	return was;
}

void
db_secure_delete_restore(sqlite3 *db, int was)
{
	char restore[48];

	if (was < 0)
		return;
	snprintf(restore, sizeof(restore), "PRAGMA secure_delete = %s",
	    was == 2 ? "FAST" : was ? "ON" : "OFF");
	sqlite3_exec(db, restore, NULL, NULL, NULL);
}

static int
migrate(struct archive_db *db, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int version = 0, rc = -1, secure = -1;
	int target = (int)(sizeof(migrations) / sizeof(migrations[0]));

	if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > target) {
		snprintf(err, errlen, "archive.db has schema version %d, newer than this "
		    "emailvault understands (%d): upgrade emailvault", version, target);
		return -1;
	}
	if (version == target)
		return 0;
	/* what migrations drop is the index, made again from the messages */
	secure = db_secure_delete_fast(db->db);
	for (; version < target; version++) {
		char pragma[64];
		if (version + 1 == INDEX_REMADE_AT && has_messages(db))
			log_info(NULL, "archive.db: the search index moves to a smaller layout (once): "
			    "the old one is dropped now and the indexer makes it again in the "
			    "background; until it has caught up (emailvault status), search finds "
			    "only the messages it has indexed so far");
		if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK)
			goto fail;
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", version + 1);
		if (exec(db, migrations[version]) != SQLITE_OK || exec(db, pragma) != SQLITE_OK) {
			snprintf(err, errlen, "migrating archive.db to version %d failed: %s",
			    version + 1, sqlite3_errmsg(db->db));
			exec(db, "ROLLBACK");
			goto out;
		}
		if (exec(db, "COMMIT") != SQLITE_OK)
			goto fail;
	}
	rc = 0;
	goto out;
fail:
	snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db->db));
out:
	db_secure_delete_restore(db->db, secure);
	return rc;
}

/*
 * Waiting for the write lock (the indexer's short transactions, another
 * process): 5 s in steps of 0.5 ms. SQLite's own busy_timeout sleeps in
 * steps up to 100 ms, and in the engine the waiter is the event loop:
 * it would sleep on long after a 2 ms write ended, with every source and
 * the control socket waiting behind it.
 *
 * A connection that does not yield stamps when it last waited; one that
 * yields (the indexer's, on a thread of lower priority, writing a batch
 * in one transaction) asks db_writer_waiting between two rows and lets
 * the waiter in. Measured: without it the loop slept 1.2 s of a 4.4 s
 * import behind the indexer's batches.
 */
#define BUSY_STEP_US	500
#define BUSY_MAX_US	5000000
#define WAITING_NS	(2 * (int64_t)BUSY_STEP_US * 1000)	/* a stamp newer than two steps */

static _Atomic int64_t last_wait_ns;

static int64_t
monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
busy_wait(void *ud, int count)
{
	struct archive_db *db = ud;
	struct timespec ts = { 0, BUSY_STEP_US * 1000L };

	if ((long)count * BUSY_STEP_US >= BUSY_MAX_US)
		return 0;
	if (!db->yields)
		atomic_store(&last_wait_ns, monotonic_ns());
	nanosleep(&ts, NULL);
	return 1;
}

void
db_yield_to_waiters(struct archive_db *db)
{
	db->yields = 1;
}

int
db_writer_waiting(void)
{
	int64_t stamp = atomic_load(&last_wait_ns);

	return stamp != 0 && monotonic_ns() - stamp < WAITING_NS;
}

static _Atomic int64_t last_group_ns;

void
db_note_archived(void)
{
	atomic_store(&last_group_ns, monotonic_ns());
}

int
db_archived_within(int64_t ns)
{
	int64_t stamp = atomic_load(&last_group_ns);

	return stamp != 0 && monotonic_ns() - stamp < ns;
}

struct archive_db *
db_open(const char *data_dir, int readonly, char *err, size_t errlen)
{
	struct archive_db *db = calloc(1, sizeof(*db));
	char path[4096];
	int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

	if (db == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	db->wal_fd = -1;
	snprintf(path, sizeof(path), "%s/archive.db", data_dir);
	if (sqlite3_open_v2(path, &db->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: %s", path,
		    db->db ? sqlite3_errmsg(db->db) : "out of memory");
		db_close(db);
		return NULL;
	}
	if (!readonly)
		chmod(path, 0600);
	sqlite3_busy_handler(db->db, busy_wait, db);
	/* The index's tokenizer (and its text's ev_text()), before the
	 * migration that creates the index. */
	if (search_tokenizer_register(db->db) != SQLITE_OK) {
		snprintf(err, errlen, "%s: cannot register the search tokenizer: %s", path,
		    sqlite3_errmsg(db->db));
		db_close(db);
		return NULL;
	}
	if (!readonly) {
		/* WAL: readers (emailvault status) never block the engine.
		 * synchronous=FULL: a commit is durable when it returns. */
		if (exec(db, "PRAGMA journal_mode = WAL") != SQLITE_OK ||
		    exec(db, "PRAGMA synchronous = FULL") != SQLITE_OK ||
		    exec(db, "PRAGMA foreign_keys = ON") != SQLITE_OK ||
		    /* The savepoint of each batch in a commit group keeps its
		     * statement journal in memory: on disk it was a 4-KiB
		     * write per page a batch changed, never synced nor read. */
		    exec(db, "PRAGMA temp_store = MEMORY") != SQLITE_OK ||
		    /* Room for the pages a commit group of 1,000 messages
		     * changes: with SQLite's 2 MiB they spilled to the WAL
		     * before the commit (sqlite3PcacheFetchStress). */
		    exec(db, "PRAGMA cache_size = -8192") != SQLITE_OK ||
		    /* A big transaction (a reindex, a migration) grows the WAL,
		     * which SQLite otherwise keeps at its largest for good;
		     * with this it cuts it back to 64 MiB when it starts over. */
		    exec(db, "PRAGMA journal_size_limit = 67108864") != SQLITE_OK ||
		    migrate(db, err, errlen) < 0) {
			if (!err[0])
				snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db->db));
			db_close(db);
			return NULL;
		}
	}
	return db;
}

void
db_close(struct archive_db *db)
{
	if (db == NULL)
		return;
	checkpointer_stop(db->checkpointer);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(db->stmts[i]);
	if (db->wal_fd >= 0)
		close(db->wal_fd);
	sqlite3_close(db->db);
	free(db);
}

int
db_checkpoint_on_thread(struct archive_db *db)
{
	const char *path = sqlite3_db_filename(db->db, "main");

	if (db->checkpointer == NULL && path != NULL && path[0] != '\0')
		db->checkpointer = checkpointer_start(db->db, path, CHECKPOINT_PAGES);
	return db->checkpointer ? 0 : -1;
}

uint64_t
db_checkpoints(struct archive_db *db)
{
	return db->checkpointer ? checkpointer_runs(db->checkpointer) : 0;
}

sqlite3 *
db_handle(struct archive_db *db)
{
	return db->db;
}

const char *
db_errmsg(struct archive_db *db)
{
	return sqlite3_errmsg(db->db);
}

static sqlite3_stmt *
stmt(struct archive_db *db, enum stmt which)
{
	if (db->stmts[which] == NULL &&
	    sqlite3_prepare_v3(db->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
	    &db->stmts[which], NULL) != SQLITE_OK)
		return NULL;
	sqlite3_reset(db->stmts[which]);
	sqlite3_clear_bindings(db->stmts[which]);
	return db->stmts[which];
}

static int
done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static void
bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

int
db_begin(struct archive_db *db)
{
	return exec(db, "BEGIN IMMEDIATE") == SQLITE_OK ? 0 : -1;
}

int
db_commit(struct archive_db *db)
{
	return exec(db, "COMMIT") == SQLITE_OK ? 0 : -1;
}

void
db_rollback(struct archive_db *db)
{
	exec(db, "ROLLBACK");
}

void
db_synchronous(struct archive_db *db, int full)
{
	exec(db, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
}

int
db_wal_fd(struct archive_db *db)
{
	const char *main = sqlite3_db_filename(db->db, "main");
	char path[4096];

	if (db->wal_fd < 0) {
		if (main == NULL || !*main) {
			errno = ENOENT;
			return -1;
		}
		/* The WAL lives as long as the engine's connection: SQLite
		 * removes it only when the last connection closes. It holds
		 * no locks (those are on the -shm file), so closing a copy of
		 * this descriptor releases none of SQLite's. */
		snprintf(path, sizeof(path), "%s-wal", main);
		if ((db->wal_fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			return -1;
	}
	return fcntl(db->wal_fd, F_DUPFD_CLOEXEC, 0);
}

int
db_savepoint(struct archive_db *db)
{
	return exec(db, "SAVEPOINT batch") == SQLITE_OK ? 0 : -1;
}

int
db_release(struct archive_db *db)
{
	return exec(db, "RELEASE batch") == SQLITE_OK ? 0 : -1;
}

void
db_rollback_to(struct archive_db *db)
{
	exec(db, "ROLLBACK TO batch");
	exec(db, "RELEASE batch");
}

int
db_folder_get(struct archive_db *db, const char *source, const char *folder, struct db_folder *out)
{
	sqlite3_stmt *st = stmt(db, ST_FOLDER_GET);
	int rc;

	memset(out, 0, sizeof(*out));
	out->on_server = -1;
	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->found = 1;
		out->uidvalidity = (uint32_t)sqlite3_column_int64(st, 0);
		out->last_uid = (uint32_t)sqlite3_column_int64(st, 1);
		out->on_server = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 :
		    sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int
db_folder_set_uidvalidity(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity)
{
	sqlite3_stmt *st = stmt(db, ST_FOLDER_UPSERT_UIDV);

	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, uidvalidity);
	return done(st);
}

int
db_folder_set_progress(struct archive_db *db, const char *source, const char *folder,
    uint32_t last_uid)
{
	sqlite3_stmt *st = stmt(db, ST_FOLDER_PROGRESS);

	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, last_uid);
	sqlite3_bind_double(st, 4, now());
	return done(st);
}

int
db_folder_set_on_server(struct archive_db *db, const char *source, const char *folder,
    int64_t on_server)
{
	sqlite3_stmt *st = stmt(db, ST_FOLDER_ON_SERVER);

	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, on_server);
	return done(st);
}

int
db_message_add(struct archive_db *db, const struct db_message *m, int *is_new)
{
	sqlite3_stmt *st = stmt(db, ST_MESSAGE_ADD);

	if (st == NULL)
		return -1;
	bind_text(st, 1, m->hash);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)m->size);
	bind_text(st, 3, m->subject);
	bind_text(st, 4, m->from);
	bind_text(st, 5, m->to);
	bind_text(st, 6, m->cc);
	bind_text(st, 7, m->date);
	if (m->date_unix >= 0)
		sqlite3_bind_int64(st, 8, m->date_unix);
	bind_text(st, 9, m->message_id);
	bind_text(st, 10, m->from_addrs);
	bind_text(st, 11, m->to_addrs);
	sqlite3_bind_double(st, 12, now());
	if (m->sort_date >= 0)
		sqlite3_bind_int64(st, 13, m->sort_date);
	if (m->pack_segment > 0) {
		sqlite3_bind_int64(st, 14, m->pack_segment);
		sqlite3_bind_int64(st, 15, (sqlite3_int64)m->pack_offset);
		sqlite3_bind_int64(st, 16, (sqlite3_int64)m->pack_length);
		sqlite3_bind_int(st, 17, m->pack_codec);
	}
	if (done(st) < 0)
		return -1;
	if (is_new)
		*is_new = sqlite3_changes(db->db) > 0;
	return 0;
}

int
db_location_add(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid, const char *hash, const char *flags, int64_t internaldate)
{
	sqlite3_stmt *st = stmt(db, ST_LOCATION_ADD);

	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, uidvalidity);
	sqlite3_bind_int64(st, 4, uid);
	bind_text(st, 5, hash);
	bind_text(st, 6, flags);
	if (internaldate >= 0)
		sqlite3_bind_int64(st, 7, internaldate);
	sqlite3_bind_double(st, 8, now());
	return done(st);
}

int
db_skip_add(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid, uint64_t size, const char *reason)
{
	sqlite3_stmt *st = stmt(db, ST_SKIP_ADD);

	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, uidvalidity);
	sqlite3_bind_int64(st, 4, uid);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)size);
	bind_text(st, 6, reason);
	sqlite3_bind_double(st, 7, now());
	return done(st);
}

int
db_event_add(struct archive_db *db, const char *source, const char *kind, const char *detail)
{
	sqlite3_stmt *st = stmt(db, ST_EVENT_ADD);

	if (st == NULL)
		return -1;
	sqlite3_bind_double(st, 1, now());
	bind_text(st, 2, source);
	bind_text(st, 3, kind);
	bind_text(st, 4, detail);
	return done(st);
}

int
db_pending_list(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t **uids, size_t *n)
{
	sqlite3_stmt *st = stmt(db, ST_PENDING_LIST);
	size_t cap = 0;
	int rc;

	*uids = NULL;
	*n = 0;
	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, uidvalidity);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		sqlite3_int64 uid = sqlite3_column_int64(st, 0);
		if (uid < 1 || uid > UINT32_MAX)
			continue;
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			uint32_t *grown = realloc(*uids, ncap * sizeof(**uids));
			if (grown == NULL) {
				rc = SQLITE_NOMEM;
				break;
			}
			*uids = grown;
			cap = ncap;
		}
		(*uids)[(*n)++] = (uint32_t)uid;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		free(*uids);
		*uids = NULL;
		*n = 0;
		return -1;
	}
	return 0;
}

int
db_pending_note(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid, int count_attempt, const char *reason)
{
	sqlite3_stmt *st = stmt(db, ST_PENDING_NOTE);
	int rc, attempts = -1;

	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, uidvalidity);
	sqlite3_bind_int64(st, 4, uid);
	sqlite3_bind_int(st, 5, count_attempt ? 1 : 0);
	bind_text(st, 6, reason);
	sqlite3_bind_double(st, 7, now());
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		attempts = sqlite3_column_int(st, 0);
	sqlite3_reset(st);
	return attempts;
}

int
db_pending_delete(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid)
{
	sqlite3_stmt *st = stmt(db, ST_PENDING_DELETE);

	if (st == NULL)
		return -1;
	bind_text(st, 1, source);
	bind_text(st, 2, folder);
	sqlite3_bind_int64(st, 3, uidvalidity);
	sqlite3_bind_int64(st, 4, uid);
	return done(st);
}

int
db_date_sane(int64_t t)
{
	/* after 1980-01-01, at most two days ahead */
	return t >= 315532800 && t <= (int64_t)time(NULL) + 2 * 86400;
}

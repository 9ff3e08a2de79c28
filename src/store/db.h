#ifndef EMAILVAULT_STORE_DB_H
#define EMAILVAULT_STORE_DB_H
/*
 * archive.db: SQLite in WAL mode. The schema has a version (PRAGMA
 * user_version) and every older version is migrated forward on open, so a
 * newer binary opens an older archive. See docs/storage.md for the tables.
 */
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct archive_db;

/* The full-text index (docs/search.md): one row per message, rowid =
 * messages.rowid; filled by search/indexer.c. The text it was made from is
 * kept compressed in fts_text and read back through fts_view
 * (search/index_text.h); FTS5 keeps no copy of its own. */
#define DB_FTS_TEXT_CREATE \
	"CREATE TABLE fts_text (id INTEGER PRIMARY KEY, subject BLOB, sender BLOB, " \
	"recipient BLOB, cc BLOB, body BLOB, filename BLOB, attachment BLOB)"
#define DB_FTS_VIEW_CREATE \
	"CREATE VIEW fts_view AS SELECT id, ev_text(subject) AS subject, " \
	"ev_text(sender) AS sender, ev_text(recipient) AS recipient, ev_text(cc) AS cc, " \
	"ev_text(body) AS body, ev_text(filename) AS filename, " \
	"ev_text(attachment) AS attachment FROM fts_text"
#define DB_FTS_CREATE \
	"CREATE VIRTUAL TABLE fts USING fts5(subject, sender, recipient, cc, body, filename, " \
	"attachment, content = 'fts_view', content_rowid = 'id', tokenize = 'emailvault')"

/* For a transaction that drops the index: Debian's SQLite is built with
 * SECURE_DELETE, which would write every freed page over with zeros (see
 * index_reset). Returns the setting to give back to db_secure_delete_restore. */
int db_secure_delete_fast(sqlite3 *db);
void db_secure_delete_restore(sqlite3 *db, int was);

/* Opens DATA/archive.db (creating and migrating unless READONLY). */
struct archive_db *db_open(const char *data_dir, int readonly, char *err, size_t errlen);
void db_close(struct archive_db *db);
sqlite3 *db_handle(struct archive_db *db);
/* This connection lets the process's other writers in between its rows
 * (db_writer_waiting: one of them waits for the write lock now). */
void db_yield_to_waiters(struct archive_db *db);
int db_writer_waiting(void);

/* The archiver's commit groups say when they commit (db_note_archived);
 * the indexer asks whether one did in the last NS nanoseconds: messages
 * are being imported, and the CPU is theirs first. */
void db_note_archived(void);
int db_archived_within(int64_t ns);
const char *db_errmsg(struct archive_db *db);
/* From now on the WAL is checkpointed on a thread (store/checkpointer.h),
 * not in this connection's commits: for the loop's connection. -1 when the
 * thread cannot start (the commits checkpoint as before). */
int db_checkpoint_on_thread(struct archive_db *db);
/* Checkpoints the thread has run. */
uint64_t db_checkpoints(struct archive_db *db);

int db_begin(struct archive_db *db);
int db_commit(struct archive_db *db);
void db_rollback(struct archive_db *db);
/* A savepoint inside the transaction: released (kept) or rolled back to
 * (undone, the transaction goes on). */
int db_savepoint(struct archive_db *db);
/* synchronous = FULL (1) or NORMAL (0: a commit does not wait for the disk;
 * see db_wal_fd). */
void db_synchronous(struct archive_db *db, int full);
/* A new descriptor of the WAL file, for making commits made with
 * synchronous = NORMAL durable by an fdatasync of one's own (off the
 * loop); the caller closes it. -1 with errno. */
int db_wal_fd(struct archive_db *db);
int db_release(struct archive_db *db);
void db_rollback_to(struct archive_db *db);

struct db_folder {
	int found;
	uint32_t uidvalidity;
	uint32_t last_uid;
	int64_t on_server;
};

int db_folder_get(struct archive_db *db, const char *source, const char *folder,
    struct db_folder *out);
/* Records UIDVALIDITY; when it changed, last_uid starts again from 0. */
int db_folder_set_uidvalidity(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity);
int db_folder_set_progress(struct archive_db *db, const char *source, const char *folder,
    uint32_t last_uid);
int db_folder_set_on_server(struct archive_db *db, const char *source, const char *folder,
    int64_t on_server);

struct db_message {
	const char *hash;
	uint64_t size;
	const char *subject, *from, *to, *cc, *date, *message_id;
	const char *from_addrs, *to_addrs;
	int64_t date_unix;
	int64_t sort_date;	/* what search sorts and filters by; -1 unknown */
	int64_t pack_segment;	/* where its bytes are (store/pack.h); 0: not packed */
	uint64_t pack_offset, pack_length;
	int pack_codec;
};

/* 1 if T (a Date header's time) is worth sorting by. */
int db_date_sane(int64_t t);

/* Inserts the message unless its hash is known; *NEW tells which. */
int db_message_add(struct archive_db *db, const struct db_message *m, int *is_new);
int db_location_add(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid, const char *hash, const char *flags,
    int64_t internaldate);
int db_skip_add(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid, uint64_t size, const char *reason);
/* UIDs the server listed but did not give (yet): asked for again on later
 * passes, a bounded number of times. */
int db_pending_list(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t **uids, size_t *n);
/* Records UID as pending (one more attempt if COUNT_ATTEMPT); returns the
 * attempts so far, or -1. */
int db_pending_note(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid, int count_attempt, const char *reason);
int db_pending_delete(struct archive_db *db, const char *source, const char *folder,
    uint32_t uidvalidity, uint32_t uid);
int db_event_add(struct archive_db *db, const char *source, const char *kind,
    const char *detail);

#endif

#include "search/indexer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "deadline.h"
#include "log.h"
#include "search/extract.h"
#include "search/index_text.h"
#include "search/stored.h"
#include "store/db.h"
#include "store/reader.h"
#include "thread_name.h"

/* Extracted text held for one transaction; two batches are held at once
 * (one written while the next is extracted). */
#define BATCH_TEXT_MAX ((size_t)16 << 20)
#define EXTRACTORS_MAX 4			/* threads extracting one batch */
#define IDLE_WAIT_MS 500
#define YIELD_SLEEP_NS 1000000L		/* long enough for the waiter's next try */
#define INDEXER_NICE 19				/* the thread's priority below the loop's */
/* The extracting threads' below the writing one's: the writing is one
 * thread's, the extraction of the next rows fills the other cores. */
#define EXTRACTOR_NICE 5
#define ARCHIVING_NS 1000000000LL		/* a commit group this recent: importing */
#define INSERT_SQL "INSERT INTO fts(rowid, subject, sender, recipient, cc, body, filename, " \
	"attachment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
#define REMOVE_SQL "DELETE FROM fts WHERE rowid = ?1"
#define TEXT_SQL "INSERT OR REPLACE INTO fts_text(id, subject, sender, recipient, cc, body, " \
	"filename, attachment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
#define UNTEXT_SQL "DELETE FROM fts_text WHERE id = ?1"
#define NCOLS 7

struct index_run {
	struct archive_db *adb;
	sqlite3 *db;
	/* one reader per extracting thread: a reader is one thread's */
	struct store_reader *reader[EXTRACTORS_MAX];
	struct index_text_packer *packer[EXTRACTORS_MAX];	/* the same threads' */
	int extractors;
	struct extract_limits lim;
	sqlite3_stmt *pick, *insert, *remove, *text, *untext, *mark, *first_date, *lag, *backlog;
	struct batch *ahead;	/* the next step's rows, being extracted */
	int no_ahead;		/* index_run_set_ahead(r, 0) */
};

static void batch_free(struct batch *b);

/* One message between its extraction and the commit. */
struct pending_row {
	int64_t rowid;
	char hash[65];
	int taken;		/* an extractor had it (the others wait for the next step) */
	struct extract_text t;
	unsigned char *blob[NCOLS];	/* t's columns for fts_text (index_text.h) */
	size_t bloblen[NCOLS];
	int ok;			/* text extracted */
	int missing;		/* the blob could not be read */
	int deferred;		/* out of memory: left for the next step */
	int64_t sort_date;
	char note[300];
};

struct extractor {
	pthread_t thread;
	struct batch *b;
	int slot;		/* its reader and packer */
};

/* One step's rows, extracted by several threads, then written. */
struct batch {
	struct index_run *r;
	struct pending_row *rows;
	int n;
	int64_t last;		/* the highest rowid taken, once extracted */
	pthread_mutex_t mu;
	int next;		/* the next row to take */
	size_t text;		/* text extracted so far */
	int stop;		/* out of memory: take no more */
	struct extractor helper[EXTRACTORS_MAX];
	int helpers;		/* threads started (joined by batch_join) */
};

static int
prepare(struct index_run *r, sqlite3_stmt **st, const char *sql)
{
	return sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) == SQLITE_OK ?
	    0 : -1;
}

void
index_run_close(struct index_run *r)
{
	if (r == NULL)
		return;
	batch_free(r->ahead);
	sqlite3_finalize(r->pick);
	sqlite3_finalize(r->insert);
	sqlite3_finalize(r->remove);
	sqlite3_finalize(r->text);
	sqlite3_finalize(r->untext);
	sqlite3_finalize(r->mark);
	sqlite3_finalize(r->first_date);
	sqlite3_finalize(r->lag);
	sqlite3_finalize(r->backlog);
	/* The readers first: the last connection to close checkpoints and
	 * removes the WAL, and a read-only one cannot (a reindex left a WAL
	 * as big as the index it wrote). */
	for (int i = 0; i < EXTRACTORS_MAX; i++) {
		store_reader_close(r->reader[i]);
		index_text_packer_free(r->packer[i]);
	}
	db_close(r->adb);
	free(r);
}

struct index_run *
index_run_open(const char *data_dir, char *err, size_t errlen)
{
	struct index_run *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	extract_limits_default(&r->lim);
	if ((r->adb = db_open(data_dir, 0, err, errlen)) == NULL)
		goto fail;
	r->db = db_handle(r->adb);
	db_yield_to_waiters(r->adb);
	/* The index can always be rebuilt from the messages, and in WAL mode a
	 * commit that a power loss undoes takes its `indexed` flags with it: no
	 * fsync per indexer transaction. */
	sqlite3_exec(r->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
	/* FTS5's merges free the pages of the segments they replace. Debian's
	 * SQLite writes each over with zeros (SECURE_DELETE); what they held
	 * is in the merged segment, made from messages the archive keeps for
	 * good: FAST spares the writes (a reindex of 20,000 small messages
	 * went 9 % faster). */
	sqlite3_exec(r->db, "PRAGMA secure_delete = FAST", NULL, NULL, NULL);
	/* Extraction waits for pdftotext children and the disk as much as it
	 * computes: a thread more than there are cores keeps them busy. */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	r->extractors = cpus < 1 ? 2 : cpus + 1 > EXTRACTORS_MAX ? EXTRACTORS_MAX : (int)cpus + 1;
	for (int i = 0; i < r->extractors; i++)
		if ((r->reader[i] = store_reader_open(data_dir)) == NULL ||
		    (r->packer[i] = index_text_packer_new()) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	if (prepare(r, &r->pick, "SELECT rowid, hash, date_unix, first_seen FROM messages "
	    "WHERE indexed = 0 AND rowid > ?2 ORDER BY rowid LIMIT ?1") < 0 ||
	    prepare(r, &r->insert, INSERT_SQL) < 0 || prepare(r, &r->remove, REMOVE_SQL) < 0 ||
	    prepare(r, &r->text, TEXT_SQL) < 0 || prepare(r, &r->untext, UNTEXT_SQL) < 0 ||
	    prepare(r, &r->mark, "UPDATE messages SET indexed = ?2, attachments = ?3, "
	    "sort_date = ?4, index_note = ?5 WHERE rowid = ?1") < 0 ||
	    prepare(r, &r->first_date, "SELECT min(l.internaldate) FROM locations l "
	    "JOIN messages m ON m.hash = l.hash WHERE m.rowid = ?1") < 0 ||
	    prepare(r, &r->lag, "SELECT count(*) FROM messages WHERE indexed = 0") < 0 ||
	    prepare(r, &r->backlog, "SELECT count(*) FROM (SELECT 1 FROM messages "
	    "WHERE indexed = 0 LIMIT ?1)") < 0) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(r->db));
		goto fail;
	}
	return r;
fail:
	index_run_close(r);
	return NULL;
}

int64_t
index_run_lag(struct index_run *r)
{
	int64_t n = -1;

	if (sqlite3_step(r->lag) == SQLITE_ROW)
		n = sqlite3_column_int64(r->lag, 0);
	sqlite3_reset(r->lag);
	return n;
}

int64_t
index_run_backlog(struct index_run *r, int64_t limit)
{
	int64_t n = -1;

	sqlite3_bind_int64(r->backlog, 1, limit);
	if (sqlite3_step(r->backlog) == SQLITE_ROW)
		n = sqlite3_column_int64(r->backlog, 0);
	sqlite3_reset(r->backlog);
	return n;
}

/* The date a message sorts and filters by: its Date header when sane, else
 * when the server first had it (INTERNALDATE), else when it was archived. */
static int64_t
sort_date_of(struct index_run *r, int64_t rowid, sqlite3_int64 date_unix, int has_date,
    double first_seen)
{
	int64_t d = -1;

	if (has_date && db_date_sane(date_unix))
		return date_unix;
	sqlite3_bind_int64(r->first_date, 1, rowid);
	if (sqlite3_step(r->first_date) == SQLITE_ROW &&
	    sqlite3_column_type(r->first_date, 0) != SQLITE_NULL)
		d = sqlite3_column_int64(r->first_date, 0);
	sqlite3_reset(r->first_date);
	if (d >= 0)
		return d;
	if (has_date && date_unix > 0)
		return date_unix;
	return (int64_t)first_seen;
}

/* The row's columns, as extracted */
static const char *
column(const struct extract_text *t, int i)
{
	const char *c[NCOLS] = { t->subject, t->from, t->to, t->cc, t->body, t->filenames,
	    t->attachments };

	return c[i] ? c[i] : "";
}

/* Steps ST with ROWID bound first: 0 when done. */
static int
step_rowid(sqlite3_stmt *st, int64_t rowid)
{
	int rc;

	sqlite3_bind_int64(st, 1, rowid);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int
write_row(struct index_run *r, struct pending_row *p)
{
	/* The old row first: FTS5 reads the text it was made from in
	 * fts_text to know what to take out of the index. */
	if (step_rowid(r->remove, p->rowid) < 0 || step_rowid(r->untext, p->rowid) < 0)
		return -1;
	if (p->ok) {
		for (int i = 0; i < NCOLS; i++)
			if (p->blob[i])
				sqlite3_bind_blob(r->text, i + 2, p->blob[i], (int)p->bloblen[i],
				    SQLITE_STATIC);
			else
				sqlite3_bind_null(r->text, i + 2);
		if (step_rowid(r->text, p->rowid) < 0)
			return -1;
		sqlite3_bind_int64(r->insert, 1, p->rowid);
		for (int i = 0; i < NCOLS; i++) {
			const char *c = column(&p->t, i);
			sqlite3_bind_text(r->insert, i + 2, c, -1, SQLITE_STATIC);
		}
		int rc = sqlite3_step(r->insert);
		sqlite3_reset(r->insert);
		sqlite3_clear_bindings(r->insert);
		if (rc != SQLITE_DONE)
			return -1;
	}
	sqlite3_bind_int64(r->mark, 1, p->rowid);
	sqlite3_bind_int(r->mark, 2, p->ok ? 1 : 2);
	if (p->ok)
		sqlite3_bind_int(r->mark, 3, p->t.attachment_count);
	else
		sqlite3_bind_null(r->mark, 3);
	sqlite3_bind_int64(r->mark, 4, p->sort_date);
	if (p->note[0])
		sqlite3_bind_text(r->mark, 5, p->note, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(r->mark, 5);
	int rc = sqlite3_step(r->mark);
	sqlite3_reset(r->mark);
	sqlite3_clear_bindings(r->mark);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Frees what extract_row made of P. */
static void
row_free(struct pending_row *p)
{
	if (p->ok)
		extract_text_free(&p->t);
	for (int i = 0; i < NCOLS; i++) {
		free(p->blob[i]);
		p->blob[i] = NULL;
	}
}

/* Out of memory: P is left for the next step, and the batch takes no more. */
static void
defer_row(struct batch *b, struct pending_row *p)
{
	row_free(p);
	p->ok = 0;
	memset(&p->t, 0, sizeof(p->t));
	p->deferred = 1;
	pthread_mutex_lock(&b->mu);
	b->stop = 1;
	pthread_mutex_unlock(&b->mu);
}

/* Reads and extracts one message, and compresses its text for fts_text
 * (any thread, its own reader and packer). */
static void
extract_row(struct batch *b, struct store_reader *reader, struct index_text_packer *packer,
    struct pending_row *p)
{
	size_t text = 0;

	if (p->hash[0] == '\0' || extract_stored(reader, p->hash, &b->r->lim, &p->t) < 0) {
		if (p->hash[0] != '\0' && errno == ENOMEM) {
			memset(&p->t, 0, sizeof(p->t));
			defer_row(b, p);
			return;
		}
		p->missing = 1;
		memset(&p->t, 0, sizeof(p->t));
		snprintf(p->note, sizeof(p->note), "not indexed: cannot read the message: %s",
		    p->hash[0] == '\0' ? "no content hash" : strerror(errno));
		return;
	}
	p->ok = 1;
	for (int i = 0; i < NCOLS; i++) {
		const char *c = column(&p->t, i);
		size_t n = strlen(c);

		if (index_text_pack(packer, c, n, &p->blob[i], &p->bloblen[i]) < 0) {
			defer_row(b, p);
			return;
		}
		text += n;
	}
	if (p->t.truncated)
		snprintf(p->note, sizeof(p->note), "%s", p->t.note);
	pthread_mutex_lock(&b->mu);
	b->text += text;
	pthread_mutex_unlock(&b->mu);
}

/* Takes rows in order until they are all taken, the batch holds
 * BATCH_TEXT_MAX of text, or memory ran out. */
static void
extract_rows(struct batch *b, int slot)
{
	for (;;) {
		pthread_mutex_lock(&b->mu);
		int i = b->next < b->n && b->text < BATCH_TEXT_MAX && !b->stop ? b->next++ : -1;
		if (i >= 0)
			b->rows[i].taken = 1;
		pthread_mutex_unlock(&b->mu);
		if (i < 0)
			return;
		extract_row(b, b->r->reader[slot], b->r->packer[slot], &b->rows[i]);
	}
}

/* Lowers the calling thread's priority by NICE more (on Linux a thread has
 * a nice value of its own, which the threads and pdftotext children it
 * starts inherit). */
static void
lower_priority(int nice)
{
	id_t self = (id_t)syscall(SYS_gettid);
	int now;

	errno = 0;
	now = getpriority(PRIO_PROCESS, self);
	if (errno == 0 && setpriority(PRIO_PROCESS, self, now + nice) < 0)
		log_debug(NULL, "indexer: cannot lower a thread's priority: %s", strerror(errno));
}

static void *
extractor_main(void *arg)
{
	struct extractor *x = arg;

	thread_name("ev-extract");
	lower_priority(EXTRACTOR_NICE);
	extract_rows(x->b, x->slot);
	return NULL;
}

/* The event loop waits for the write lock: commit what is written, let it
 * take the lock, and go on in a new transaction (which waits for its). */
static int
give_way(struct index_run *r)
{
	struct timespec ts = { 0, YIELD_SLEEP_NS };

	if (sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return -1;	/* rolled back by the caller */
	nanosleep(&ts, NULL);
	return sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* Up to MAX messages not indexed yet with a rowid above AFTER, read on
 * this thread (the connection is its own). NULL when out of memory; a
 * batch of no rows when there are none. */
static struct batch *
batch_pick(struct index_run *r, int max, int64_t after)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (b == NULL || (b->rows = calloc((size_t)max, sizeof(*b->rows))) == NULL) {
		free(b);
		return NULL;
	}
	b->r = r;
	sqlite3_bind_int(r->pick, 1, max);
	sqlite3_bind_int64(r->pick, 2, after);
	while (b->n < max && sqlite3_step(r->pick) == SQLITE_ROW) {
		struct pending_row *p = &b->rows[b->n++];
		const char *hash = (const char *)sqlite3_column_text(r->pick, 1);
		int has_date = sqlite3_column_type(r->pick, 2) != SQLITE_NULL;

		p->rowid = sqlite3_column_int64(r->pick, 0);
		p->sort_date = sort_date_of(r, p->rowid, sqlite3_column_int64(r->pick, 2), has_date,
		    sqlite3_column_double(r->pick, 3));
		if (hash != NULL && strlen(hash) < sizeof(p->hash))
			memcpy(p->hash, hash, strlen(hash) + 1);	/* else unreadable */
	}
	sqlite3_reset(r->pick);
	pthread_mutex_init(&b->mu, NULL);
	return b;
}

/* Starts threads on B's rows, with the readers from slot FIRST on (slot 0
 * is the calling thread's when it extracts too). Fewer threads, if some
 * cannot start, do the same work; none at all leaves it to batch_join. */
static void
batch_start(struct batch *b, int first)
{
	for (int i = first; i < b->r->extractors && i - first < b->n; i++) {
		struct extractor *x = &b->helper[b->helpers];

		x->b = b;
		x->slot = i;
		if (pthread_create(&x->thread, NULL, extractor_main, x) != 0)
			break;
		b->helpers++;
	}
}

/* Waits for B's extraction to end; counts the rows it took. */
static int
batch_join(struct batch *b)
{
	int done = 0;

	if (b->helpers == 0)
		extract_rows(b, 0);	/* no thread could start */
	for (int i = 0; i < b->helpers; i++)
		pthread_join(b->helper[i].thread, NULL);
	b->helpers = 0;
	for (int i = 0; i < b->n; i++)
		if (b->rows[i].taken) {
			b->last = b->rows[i].rowid;
			if (!b->rows[i].deferred)
				done++;
		}
	return done;
}

static void
batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	if (b->helpers > 0)
		batch_join(b);
	for (int i = 0; i < b->n; i++)
		row_free(&b->rows[i]);
	pthread_mutex_destroy(&b->mu);
	free(b->rows);
	free(b);
}

/* The reason of the statement that failed, before a ROLLBACK (which
 * succeeds, and leaves "not an error") takes its place. */
static int
write_failed(struct index_run *r, char *err, size_t errlen)
{
	snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(r->db));
	if (!sqlite3_get_autocommit(r->db))
		sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* One transaction for B's extracted rows. */
static int
batch_write(struct batch *b, char *err, size_t errlen)
{
	struct index_run *r = b->r;

	if (sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return write_failed(r, err, errlen);
	for (int i = 0; i < b->n; i++) {
		if (!b->rows[i].taken || b->rows[i].deferred)
			continue;	/* a later step's */
		if (write_row(r, &b->rows[i]) < 0)
			return write_failed(r, err, errlen);
		/* Each row stands alone: the loop may commit in between. */
		if (db_writer_waiting() && give_way(r) < 0)
			return write_failed(r, err, errlen);
	}
	if (sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return write_failed(r, err, errlen);
	for (int i = 0; i < b->n; i++)
		if (b->rows[i].missing)
			log_warn(NULL, "message not indexed rowid=%lld reason=\"%s\"",
			    (long long)b->rows[i].rowid, b->rows[i].note);
	return 0;
}

void
index_run_set_ahead(struct index_run *r, int on)
{
	r->no_ahead = !on;
}

int
index_run_step(struct index_run *r, int max, char *err, size_t errlen)
{
	struct batch *b = r->ahead, *next;
	int done;

	/* 1. Read and extract outside any transaction: the archiver's commits
	 * never wait for text extraction. The rows are those the last step
	 * started on, or the first not indexed yet, extracted here and on
	 * more threads: one blocked on a pdftotext child or a read leaves the
	 * others working. */
	r->ahead = NULL;
	if (b == NULL) {
		if ((b = batch_pick(r, max, 0)) == NULL)
			goto oom;
		if (b->n > 0) {
			batch_start(b, 1);
			extract_rows(b, 0);
		}
	}
	done = batch_join(b);
	if (done == 0) {	/* none left, or out of memory at the first */
		batch_free(b);
		return 0;
	}
	/* 2. The next rows (those B left too) are extracted while B is
	 * written: the writing, FTS5's tokenizing and inserting, is one
	 * thread's, and the extraction would wait for it. The rows a step
	 * deferred are picked again when the chain ends, from the first. */
	if (r->no_ahead)
		next = NULL;
	else if ((next = batch_pick(r, max, b->last)) != NULL && next->n > 0) {
		batch_start(next, 0);
		r->ahead = next;
	} else {
		batch_free(next);	/* NULL, or no rows */
	}
	/* 3. One short transaction for B. */
	if (batch_write(b, err, errlen) < 0) {
		batch_free(b);
		/* after a failure, start again from the first not indexed */
		batch_free(r->ahead);
		r->ahead = NULL;
		return -1;
	}
	batch_free(b);
	return done;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

int
index_reset(sqlite3 *db, char *err, size_t errlen)
{
	int rc, was;

	/* Dropping and creating it again is much faster than deleting every
	 * row. Debian's SQLite is built with SECURE_DELETE: the drop would
	 * write every page of the index over with zeros, to the WAL and, as
	 * FTS5 drops its tables from within the DROP statement, to a statement
	 * journal in memory (temp_store, db.c): 271 MB of memory and a 250 MB
	 * WAL for the index of 20,000 small messages. FAST zeroes what it
	 * rewrites anyway and leaves the freed pages as they are: they hold
	 * only the index, made from messages the archive keeps. The index
	 * goes before its text, which its drop does not read. */
	was = db_secure_delete_fast(db);
	rc = sqlite3_exec(db, "BEGIN IMMEDIATE; DROP TABLE fts; DELETE FROM fts_text; "
	    DB_FTS_CREATE "; UPDATE messages SET indexed = 0; COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	db_secure_delete_restore(db, was);
	return rc == SQLITE_OK ? 0 : -1;
}

int
index_run_reset(struct index_run *r, char *err, size_t errlen)
{
	/* the prepared statements name the old table */
	batch_free(r->ahead);	/* start again from the first */
	r->ahead = NULL;
	sqlite3_finalize(r->insert);
	sqlite3_finalize(r->remove);
	r->insert = r->remove = NULL;
	if (index_reset(r->db, err, errlen) < 0)
		return -1;
	if (prepare(r, &r->insert, INSERT_SQL) < 0 || prepare(r, &r->remove, REMOVE_SQL) < 0) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(r->db));
		return -1;
	}
	return 0;
}

/* ---- the worker thread ------------------------------------------------- */

double
index_rest(double took, int rows, int64_t backlog, int archiving)
{
	if (!archiving || rows <= 0 || took <= 0 || backlog < 0)
		return 0;
	if ((double)backlog * took / rows > INDEX_CATCH_UP_S)
		return 0;	/* behind: catch up at full speed */
	return took < 1.0 ? took : 1.0;
}

struct indexer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop, poked;
	struct index_run *run;
	struct indexer_stats stats;
};

static struct indexer *current;

/* Rests SECONDS with ix->mu held (the thread waits unlocked), or until
 * stopped: a poke (new mail) does not end it. */
static void
wait_until_stopped(struct indexer *ix, double seconds)
{
	struct timespec until = deadline_after_ns((long long)(seconds * 1e9));

	while (!ix->stop && pthread_cond_timedwait(&ix->cv, &ix->mu, &until) == 0)
		;
}

static void *
indexer_main(void *arg)
{
	struct indexer *ix = arg;
	char err[512];
	int failing = 0;

	thread_name("ev-index");
	/* Below the event loop: on a small machine the loop (the network,
	 * the control socket) must get the CPU first; the index catches up
	 * when it is idle. On Linux a thread has a nice value of its own (and
	 * pdftotext, started from here, inherits it). */
	lower_priority(INDEXER_NICE);
	for (;;) {
		struct timespec t0, t1;
		double rest = 0;
		int n;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		/* While an import commits, one batch at a time: the import
		 * needs the cores more than the index does. */
		index_run_set_ahead(ix->run, !db_archived_within(ARCHIVING_NS));
		n = index_run_step(ix->run, 64, err, sizeof(err));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (n > 0 && db_archived_within(ARCHIVING_NS)) {
			double took = (double)(t1.tv_sec - t0.tv_sec) +
			    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
			/* counted only as far as decides it: a reindex of a big
			 * archive would count its whole backlog at every batch */
			int64_t enough = took > 0 ? (int64_t)(INDEX_CATCH_UP_S * n / took) + 1 : 1;

			rest = index_rest(took, n, index_run_backlog(ix->run, enough), 1);
		}

		pthread_mutex_lock(&ix->mu);
		if (n > 0) {
			ix->stats.indexed += (uint64_t)n;
			ix->stats.busy = 1;
			ix->stats.last_error[0] = '\0';
			failing = 0;
		} else {
			ix->stats.busy = 0;
			if (n < 0) {
				/* A locked or full database: said once, tried again later. */
				if (!failing)
					log_error(NULL, "indexer: %s (trying again)", err);
				failing = 1;
				snprintf(ix->stats.last_error, sizeof(ix->stats.last_error), "%.250s", err);
			}
		}
		if (rest > 0)
			wait_until_stopped(ix, rest);
		if (n <= 0 && !ix->stop && !ix->poked) {
			struct timespec ts = deadline_after_ns((failing ? 5000LL : IDLE_WAIT_MS) * 1000000LL);

			pthread_cond_timedwait(&ix->cv, &ix->mu, &ts);
		}
		ix->poked = 0;
		int stop = ix->stop;
		pthread_mutex_unlock(&ix->mu);
		if (stop)
			break;
	}
	return NULL;
}

struct indexer *
indexer_start(const char *data_dir, char *err, size_t errlen)
{
	struct indexer *ix = calloc(1, sizeof(*ix));

	if (ix == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((ix->run = index_run_open(data_dir, err, errlen)) == NULL) {
		free(ix);
		return NULL;
	}
	pthread_mutex_init(&ix->mu, NULL);
	pthread_cond_init(&ix->cv, NULL);
	if (pthread_create(&ix->thread, NULL, indexer_main, ix) != 0) {
		snprintf(err, errlen, "cannot start the indexer thread: %s", strerror(errno));
		index_run_close(ix->run);
		pthread_mutex_destroy(&ix->mu);
		pthread_cond_destroy(&ix->cv);
		free(ix);
		return NULL;
	}
	current = ix;
	return ix;
}

void
indexer_poke(struct indexer *ix)
{
	if (ix == NULL)
		return;
	pthread_mutex_lock(&ix->mu);
	ix->poked = 1;
	pthread_cond_signal(&ix->cv);
	pthread_mutex_unlock(&ix->mu);
}

void
indexer_get_stats(struct indexer *ix, struct indexer_stats *out)
{
	pthread_mutex_lock(&ix->mu);
	*out = ix->stats;
	pthread_mutex_unlock(&ix->mu);
}

void
indexer_stop(struct indexer *ix)
{
	if (ix == NULL)
		return;
	pthread_mutex_lock(&ix->mu);
	ix->stop = 1;
	pthread_cond_signal(&ix->cv);
	pthread_mutex_unlock(&ix->mu);
	pthread_join(ix->thread, NULL);
	if (current == ix)
		current = NULL;
	index_run_close(ix->run);
	pthread_mutex_destroy(&ix->mu);
	pthread_cond_destroy(&ix->cv);
	free(ix);
}

struct indexer *
indexer_current(void)
{
	return current;
}

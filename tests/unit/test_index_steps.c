/* The indexer's steps (index_run_step): each writes the rows the step
 * before extracted while it wrote its own, so the chain must index every
 * message once, take in mail archived meanwhile, come back for a row it
 * passed, and start again after a reset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "packed.h"
#include "search/indexer.h"
#include "search/tokenize.h"
#include "store/db.h"
#include "store/pack.h"

static char dir[] = "/tmp/ev-test-isteps-XXXXXX";

/* Archives message N, whose body holds the one word "quokkaN". */
static void
archive(struct archive_db *db, struct pack_store *ps, int n)
{
	char msg[256];
	struct pack_location loc;
	int len = snprintf(msg, sizeof(msg), "From: a@example.com\r\nSubject: note %d\r\n\r\n"
	    "a body with quokka%d in it\r\n", n, n);

	archive_bytes(db, ps, msg, (size_t)len, &loc);
}

static int64_t
query_int(sqlite3 *q, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	CHECK_INT(sqlite3_prepare_v2(q, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Every one of the first N messages found by its word, once, and FTS5's
 * own check of the index against its text. */
static void
check_index(int n)
{
	sqlite3 *q;
	char sql[200];

	snprintf(sql, sizeof(sql), "%s/archive.db", dir);
	CHECK_INT(sqlite3_open_v2(sql, &q, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	CHECK_INT(search_tokenizer_register(q), SQLITE_OK);
	CHECK_INT(query_int(q, "SELECT count(*) FROM messages WHERE indexed != 1"), 0);
	CHECK_INT(query_int(q, "SELECT count(*) FROM fts_docsize"), n);
	for (int i = 0; i < n; i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM fts WHERE fts MATCH 'quokka%d'", i);
		CHECK_INT(query_int(q, sql), 1);
	}
	CHECK_INT(sqlite3_exec(q, "INSERT INTO fts(fts, rank) VALUES ('integrity-check', 1)", NULL,
	    NULL, NULL), SQLITE_OK);
	sqlite3_close(q);
}

static void
test_chain(void)
{
	char err[512];
	struct archive_db *db = db_open(dir, 0, err, sizeof(err));
	struct pack_store *ps;
	struct index_run *r;
	int n, total = 0;

	CHECK(db != NULL);
	if (db == NULL)
		return;
	ps = pack_store_open(dir, db_handle(db), err, sizeof(err));
	CHECK(ps != NULL);
	for (int i = 0; i < 10; i++)
		archive(db, ps, i);
	r = index_run_open(dir, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		return;

	/* 3 at a time; the first step leaves the next 3 being extracted */
	CHECK_INT(index_run_step(r, 3, err, sizeof(err)), 3);
	CHECK_INT(index_run_lag(r), 7);
	/* mail archived meanwhile, and a row the chain has passed: the first
	 * message's flag cleared as when a step had to leave it */
	archive(db, ps, 10);
	archive(db, ps, 11);
	CHECK_INT(sqlite3_exec(db_handle(db), "UPDATE messages SET indexed = 0 WHERE rowid = "
	    "(SELECT min(rowid) FROM messages)", NULL, NULL, NULL), SQLITE_OK);
	while ((n = index_run_step(r, 3, err, sizeof(err))) > 0) {
		total += n;
	}
	CHECK_INT(n, 0);
	/* 7 + 2 new, and the passed one once the chain had ended */
	CHECK_INT(total, 10);
	CHECK_INT(index_run_lag(r), 0);
	check_index(12);

	/* A reset with rows being extracted: all of them again. */
	CHECK_INT(sqlite3_exec(db_handle(db), "UPDATE messages SET indexed = 0 WHERE rowid > "
	    "(SELECT max(rowid) - 6 FROM messages)", NULL, NULL, NULL), SQLITE_OK);
	CHECK_INT(index_run_step(r, 3, err, sizeof(err)), 3);	/* 3 more in flight */
	CHECK_INT(index_run_reset(r, err, sizeof(err)), 0);
	CHECK_INT(index_run_lag(r), 12);
	total = 0;
	while ((n = index_run_step(r, 5, err, sizeof(err))) > 0)
		total += n;
	CHECK_INT(total, 12);
	check_index(12);

	/* one batch at a time, as while an import commits: the same index */
	CHECK_INT(index_run_reset(r, err, sizeof(err)), 0);
	index_run_set_ahead(r, 0);
	total = 0;
	while ((n = index_run_step(r, 4, err, sizeof(err))) > 0)
		total += n;
	CHECK_INT(total, 12);
	check_index(12);
	index_run_set_ahead(r, 1);

	/* A write refused: the step says why, and the rows are done later. */
	CHECK_INT(index_run_reset(r, err, sizeof(err)), 0);
	CHECK_INT(sqlite3_exec(db_handle(db), "CREATE TRIGGER refuse BEFORE UPDATE OF indexed ON "
	    "messages BEGIN SELECT RAISE(ABORT, 'refused by the test'); END", NULL, NULL, NULL),
	    SQLITE_OK);
	err[0] = '\0';
	CHECK_INT(index_run_step(r, 5, err, sizeof(err)), -1);
	CHECK(strstr(err, "refused by the test") != NULL);
	CHECK_INT(index_run_lag(r), 12);
	CHECK_INT(sqlite3_exec(db_handle(db), "DROP TRIGGER refuse", NULL, NULL, NULL), SQLITE_OK);
	total = 0;
	while ((n = index_run_step(r, 5, err, sizeof(err))) > 0)
		total += n;
	CHECK_INT(total, 12);
	check_index(12);

	/* closed with a step's rows in flight: nothing left running */
	CHECK_INT(index_run_reset(r, err, sizeof(err)), 0);
	CHECK_INT(index_run_step(r, 4, err, sizeof(err)), 4);
	index_run_close(r);
	pack_store_close(ps);
	db_close(db);
}

static char dir2[] = "/tmp/ev-test-isteps2-XXXXXX";

/* A message of SIZE bytes, most of them base64 lines, then a text part
 * with WORD; malloc'd. */
static char *
big_message(size_t size, const char *word, size_t *len)
{
	char *m = malloc(size + 512);
	size_t n;

	n = (size_t)sprintf(m, "From: a@example.com\r\nSubject: big\r\n"
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
	    "Content-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	for (unsigned x = 1; n < size; n++) {
		x = x * 1103515245u + 12345u;
		m[n] = n % 78 == 76 ? '\r' : n % 78 == 77 ? '\n' :
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[x >> 26];
	}
	n += (size_t)sprintf(m + n, "\r\n--b\r\nContent-Type: text/plain\r\n\r\n%s\r\n--b--\r\n",
	    word);
	*len = n;
	return m;
}

/* Messages over what is read whole are walked as they are read; one
 * that cannot be read, large or small, is marked so with the reason. */
static void
test_big_and_damaged(void)
{
	char err[512], sql[200], *m;
	struct archive_db *db = db_open(dir2, 0, err, sizeof(err));
	struct pack_store *ps;
	struct pack_location loc;
	struct index_run *r;
	sqlite3 *q;
	size_t len;
	int n, total = 0;

	CHECK(db != NULL);
	if (db == NULL)
		return;
	ps = pack_store_open(dir2, db_handle(db), err, sizeof(err));
	CHECK(ps != NULL);
	m = big_message(3u << 20, "wombatfinal", &len);
	archive_bytes(db, ps, m, len, &loc);
	free(m);
	m = big_message(2u << 20, "numbatlost", &len);
	archive_bytes(db, ps, m, len, &loc);
	free(m);
	damage(pack_store_dir(ps), &loc);
	m = big_message(4096, "dingolost", &len);
	archive_bytes(db, ps, m, len, &loc);
	free(m);
	damage(pack_store_dir(ps), &loc);

	r = index_run_open(dir2, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		return;
	while ((n = index_run_step(r, 10, err, sizeof(err))) > 0)
		total += n;
	CHECK_INT(n, 0);
	CHECK_INT(total, 3);
	index_run_close(r);

	snprintf(sql, sizeof(sql), "%s/archive.db", dir2);
	CHECK_INT(sqlite3_open_v2(sql, &q, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	CHECK_INT(search_tokenizer_register(q), SQLITE_OK);
	CHECK_INT(query_int(q, "SELECT count(*) FROM fts WHERE fts MATCH 'wombatfinal'"), 1);
	CHECK_INT(query_int(q, "SELECT count(*) FROM fts WHERE fts MATCH 'numbatlost OR dingolost'"),
	    0);
	CHECK_INT(query_int(q, "SELECT count(*) FROM messages WHERE indexed = 1"), 1);
	CHECK_INT(query_int(q, "SELECT count(*) FROM messages WHERE indexed = 2 AND index_note "
	    "LIKE 'not indexed: cannot read the message: %'"), 2);
	sqlite3_close(q);
	pack_store_close(ps);
	db_close(db);
}

int
main(void)
{
	char cmd[200];

	CHECK(mkdtemp(dir) != NULL);
	CHECK(mkdtemp(dir2) != NULL);
	RUN(test_chain);
	RUN(test_big_and_damaged);
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", dir, dir2);
	CHECK_INT(system(cmd), 0);
	DONE();
}

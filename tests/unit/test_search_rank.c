/*
 * bm25_topk (src/search/rank.c) and the page of a text-only query that
 * uses it: on an in-memory archive of a few thousand generated messages
 * (lengths from 1 to 300 tokens, the words in every column, groups of
 * identical messages so that equal scores straddle page boundaries), every
 * page must be exactly the rows, order and values that plain bm25 gives,
 * while most matches are ruled out without their length being read. A bound
 * that is not a bound (a row's minimal length taken too long by one token,
 * say) or a tie ruled out drops rows that belong on a page.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "check.h"
#include "search/query.h"
#include "search/tokenize.h"

#define NMSG	2500
#define W	"3.0, 2.0, 1.0, 1.0, 1.0, 2.0, 0.5"	/* as query_sql.c */

static const char schema[] =
    "CREATE TABLE messages ("
    "  hash TEXT PRIMARY KEY, size INTEGER NOT NULL, subject TEXT, from_text TEXT,"
    "  to_text TEXT, cc_text TEXT, date_text TEXT, date_unix INTEGER, message_id TEXT,"
    "  from_addrs TEXT, to_addrs TEXT, first_seen REAL,"
    "  indexed INTEGER NOT NULL DEFAULT 0, attachments INTEGER, sort_date INTEGER,"
    "  index_note TEXT);"
    "CREATE VIRTUAL TABLE fts USING fts5(subject, sender, recipient, cc, body,"
    "  filename, attachment, tokenize = 'emailvault');";

static sqlite3 *db;
static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static void
exec(const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "%s: %s\n", sql, err);
		exit(1);
	}
}

/* kiwi and mango: each in a tenth of the messages, a few times there */
static unsigned pkiwi, pmango;

/* N words into B: filler, with kiwi and mango as the message has them. */
static void
words(char *b, size_t cap, int n)
{
	size_t len = 0;
	int i;

	b[0] = '\0';
	for (i = 0; i < n && len + 16 < cap; i++) {
		uint32_t r = rnd() % 1000;

		if (r < pkiwi)
			len += (size_t)snprintf(b + len, cap - len, "%skiwi", i ? " " : "");
		else if (r < pkiwi + pmango)
			len += (size_t)snprintf(b + len, cap - len, "%smango", i ? " " : "");
		else
			len += (size_t)snprintf(b + len, cap - len, "%sw%u", i ? " " : "",
			    rnd() % 300);
	}
}

static void
fill(void)
{
	static char col[7][4096];
	sqlite3_stmt *m, *f;
	int i, c;

	CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
	CHECK_INT(search_tokenizer_register(db), SQLITE_OK);
	exec(schema);
	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO messages(hash, size, indexed, sort_date)"
	    " VALUES (?1, 1000, 1, ?2)", -1, &m, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO fts(rowid, subject, sender, recipient, cc,"
	    " body, filename, attachment) VALUES (last_insert_rowid(), ?1, ?2, ?3, ?4, ?5,"
	    " ?6, ?7)", -1, &f, NULL), SQLITE_OK);
	for (i = 0; i < NMSG; i++) {
		char hash[16];
		uint32_t kind = rnd() % 100;

		if (i % 80 == 7) {
			/* the best: kiwi alone in the subject and the file
			 * name, where the bound is the exact value (32 of
			 * them, equal) */
			for (c = 0; c < 7; c++)
				snprintf(col[c], sizeof col[c], "%s", c == 0 ? "kiwi kiwi kiwi" :
				    c == 5 ? "kiwi kiwi" : "");
		} else if (i % 50 == 3) {
			/* equal too, further down: the same short message */
			snprintf(col[0], sizeof col[0], "w1 kiwi");
			snprintf(col[1], sizeof col[1], "Sender w2");
			snprintf(col[4], sizeof col[4], "w3 w4 mango kiwi w5 w6 w7 w8 w9"
			    " w10 w11 w12 w13 w14 w15 w16 w17 w18 w19 w20 w21 w22 w23 w24 w25");
			col[2][0] = col[3][0] = col[5][0] = col[6][0] = '\0';
		} else {
			pkiwi = rnd() % 10 == 0 ? 30 + rnd() % 100 : 0;
			pmango = rnd() % 10 == 0 ? 30 + rnd() % 100 : 0;
			words(col[0], sizeof col[0], 1 + (int)(rnd() % 8));
			snprintf(col[1], sizeof col[1], "Person%u", rnd() % 40);
			snprintf(col[2], sizeof col[2], "%s", kind < 50 ? "Someone Else" : "");
			words(col[3], sizeof col[3], kind < 10 ? 3 : 0);
			words(col[4], sizeof col[4], (int)(rnd() % 300));
			words(col[5], sizeof col[5], kind < 20 ? 2 : 0);
			words(col[6], sizeof col[6], kind < 20 ? (int)(rnd() % 200) : 0);
		}
		snprintf(hash, sizeof hash, "h%05d", i);
		sqlite3_bind_text(m, 1, hash, -1, SQLITE_TRANSIENT);
		/* every tenth without a date, a third on one day: ties by rowid */
		if (rnd() % 10 == 0)
			sqlite3_bind_null(m, 2);
		else
			sqlite3_bind_int64(m, 2, rnd() % 3 == 0 ? 1700000000 :
			    1600000000 + (int64_t)(rnd() % 100000000));
		CHECK_INT(sqlite3_step(m), SQLITE_DONE);
		sqlite3_reset(m);
		for (c = 0; c < 7; c++)
			sqlite3_bind_text(f, c + 1, col[c], -1, SQLITE_STATIC);
		CHECK_INT(sqlite3_step(f), SQLITE_DONE);
		sqlite3_reset(f);
	}
	sqlite3_finalize(m);
	sqlite3_finalize(f);
}

/* "rowid:rank" of each row of ST after binding, space-separated, into OUT. */
static void
rows(sqlite3_stmt *st, char *out, size_t cap)
{
	size_t len = 0;
	int rc;

	out[0] = '\0';
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && len + 64 < cap)
		len += (size_t)snprintf(out + len, cap - len, "%s%lld:%.17g", len ? " " : "",
		    (long long)sqlite3_column_int64(st, 0), sqlite3_column_double(st, 2));
	CHECK_INT(rc, SQLITE_DONE);
	sqlite3_finalize(st);
}

/* The page of Q as the search runs it (with or without a snippet). */
static void
page(const char *q, int64_t limit, int64_t offset, int snippet, char *out, size_t cap)
{
	struct search_opts o = { snippet ? "snippet(fts, -1, '[', ']', '...', 8)" : NULL,
	    limit, offset };
	struct search_query *sq;
	struct search_sql s;
	sqlite3_stmt *st;
	char err[256];

	CHECK_INT(search_query_parse(q, strlen(q), &sq, err, sizeof err, NULL), 0);
	CHECK_INT(search_query_sql(sq, &o, &s, err, sizeof err), 0);
	search_query_free(sq);
	CHECK(strstr(s.sql, "bm25_topk") != NULL);	/* the path under test */
	CHECK_INT(sqlite3_prepare_v2(db, s.sql, -1, &st, NULL), SQLITE_OK);
	CHECK_INT(search_sql_bind(st, &s), SQLITE_OK);
	rows(st, out, cap);
	search_sql_free(&s);
}

/* The same page from plain bm25 over every match of FTS5 expression E. */
static void
reference(const char *e, int64_t limit, int64_t offset, char *out, size_t cap)
{
	sqlite3_stmt *st;

	CHECK_INT(sqlite3_prepare_v2(db, "SELECT m.rowid, m.hash, bm25(fts, " W ") AS rank"
	    " FROM fts JOIN messages m ON m.rowid = fts.rowid WHERE fts MATCH ?1"
	    " ORDER BY rank, m.sort_date DESC, m.rowid DESC LIMIT ?2 OFFSET ?3", -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_text(st, 1, e, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, limit);
	sqlite3_bind_int64(st, 3, offset);
	rows(st, out, cap);
}

static int64_t
count(const char *sql, const char *e)
{
	sqlite3_stmt *st;
	int64_t n = -1;

	CHECK_INT(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, e, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	else
		fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return n;
}

/* the query, and the same as an FTS5 expression */
static const char *const queries[][2] = {
	{ "kiwi", "kiwi" },
	{ "kiwi OR mango", "kiwi OR mango" },
	{ "kiwi -mango", "kiwi NOT mango" },
	{ "kiwi mango", "kiwi AND mango" },
	{ "\"mango kiwi\"", "\"mango kiwi\"" },
	{ "kiwi*", "kiwi*" },
	{ "subject:kiwi", "subject : kiwi" },
};

static void
test_pages(void)
{
	static const int64_t pages[][2] = {
		{ 20, 0 }, { 20, 20 }, { 1, 0 }, { 5, 17 }, { 10, 25 }, { 7, 60 }, { 50, 0 },
		{ 3, 137 }, { 100, 400 }, { 20, 100000 },
	};
	static char got[65536], want[65536];
	size_t i, j;

	for (i = 0; i < sizeof queries / sizeof *queries; i++) {
		for (j = 0; j < sizeof pages / sizeof *pages; j++) {
			page(queries[i][0], pages[j][0], pages[j][1], (int)(j % 2), got, sizeof got);
			reference(queries[i][1], pages[j][0], pages[j][1], want, sizeof want);
			if (strcmp(got, want) != 0)
				fprintf(stderr, "%s, limit %lld offset %lld\n", queries[i][0],
				    (long long)pages[j][0], (long long)pages[j][1]);
			CHECK_STR(got, want);
		}
	}
}

/*
 * The function alone: it rules most rows out, never one whose bm25 is
 * among the K best (ties with the K-th included), answers the same when
 * asked twice for a row (without keeping its value twice) and rules
 * nothing out for K <= 0.
 */
static void
test_function(void)
{
	static const char missed[] =
	    "WITH s AS MATERIALIZED (SELECT bm25_topk(fts, 20, " W ") + bm25_topk(fts, 20, " W
	    ") AS t, bm25(fts, " W ") AS r FROM fts WHERE fts MATCH ?1)"
	    " SELECT count(*) FROM s WHERE t = 1 OR (t = 0 AND"
	    " r <= (SELECT r FROM s ORDER BY r LIMIT 1 OFFSET 19))";
	size_t i;

	for (i = 0; i < sizeof queries / sizeof *queries; i++) {
		const char *e = queries[i][1];
		int64_t n = count("SELECT count(*) FROM fts WHERE fts MATCH ?1", e),
		    kept = count("SELECT count(*) FROM fts WHERE fts MATCH ?1 AND"
		    " bm25_topk(fts, 20, " W ")", e);

		CHECK(n >= 20);
		CHECK(kept >= 20);
		if (i == 0)	/* the word alone: most of its matches ruled out */
			CHECK(kept * 3 < n);
		CHECK_INT(count(missed, e), 0);
		CHECK_INT(count("SELECT count(*) FROM fts WHERE fts MATCH ?1 AND"
		    " bm25_topk(fts, 0, " W ")", e), n);
	}
	/* the data has equal values across the 20th: more than 20 rows have
	 * a bm25 at most the 20th best, so ties at the boundary are tested */
	CHECK(count("WITH s AS MATERIALIZED (SELECT bm25(fts, " W ") AS r FROM fts"
	    " WHERE fts MATCH ?1) SELECT count(*) FROM s"
	    " WHERE r <= (SELECT r FROM s ORDER BY r LIMIT 1 OFFSET 19)", "kiwi") > 20);
}

static void
test_errors(void)
{
	static char got[65536], want[65536];
	sqlite3_stmt *st;

	/* a page past the end of a huge limit: no overflow, the same rows */
	page("kiwi", INT64_MAX, 5, 0, got, sizeof got);
	reference("kiwi", -1, 5, want, sizeof want);
	CHECK_STR(got, want);
	/* without MATCH there are no phrases: every row may rank */
	CHECK_INT(count("SELECT count(*) FROM fts WHERE bm25_topk(fts, 3, " W ") AND ?1 IS NOT NULL",
	    "x"), NMSG);

	CHECK_INT(sqlite3_prepare_v2(db, "SELECT bm25_topk(fts) FROM fts WHERE fts MATCH 'kiwi'",
	    -1, &st, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(st), SQLITE_ERROR);
	CHECK(strstr(sqlite3_errmsg(db), "bm25_topk") != NULL);
	sqlite3_finalize(st);
}

int
main(void)
{
	fill();
	RUN(test_pages);
	RUN(test_function);
	RUN(test_errors);
	sqlite3_close(db);
	DONE();
}

/*
 * libFuzzer target for the search query language and the tokenizer.
 *
 * The input is a query: parsed; an error must name a column inside the
 * query and end its message with it. A parsed query is compiled, and the
 * SQL must prepare against the archive schema and run to the end (FTS5
 * reports a bad MATCH expression only when it runs) over a few rows in
 * every script: once as a page with a snippet, once whole.
 *
 * The same bytes are tokenized as a document and as a query: offsets must
 * be in order and inside the input, tokens non-empty and bounded, and each
 * query token must tokenize to itself again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "search/query.h"
#include "search/tokenize.h"

static const char schema[] =
    "CREATE TABLE messages ("
    "  hash TEXT PRIMARY KEY, size INTEGER NOT NULL, subject TEXT, from_text TEXT,"
    "  to_text TEXT, cc_text TEXT, date_text TEXT, date_unix INTEGER, message_id TEXT,"
    "  from_addrs TEXT, to_addrs TEXT, first_seen REAL,"
    "  indexed INTEGER NOT NULL DEFAULT 0, attachments INTEGER, sort_date INTEGER,"
    "  index_note TEXT);"
    "CREATE TABLE locations ("
    "  source TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
    "  uid INTEGER NOT NULL, hash TEXT NOT NULL, flags TEXT, internaldate INTEGER,"
    "  archived_at REAL, PRIMARY KEY (source, folder, uidvalidity, uid));"
    "CREATE INDEX locations_hash ON locations(hash);"
    "CREATE VIRTUAL TABLE fts USING fts5(subject, sender, recipient, cc, body,"
    "  filename, attachment, tokenize = 'emailvault');"
    "INSERT INTO messages(hash, size, subject, attachments, sort_date) VALUES"
    "  ('a', 100, 'Invoice', 1, 1700000000), ('b', 5000000, 'Zürich', 0, NULL),"
    "  ('c', 2000, '北京', NULL, 1800000000);"
    "INSERT INTO fts(rowid, subject, sender, recipient, cc, body, filename, attachment)"
    "  VALUES (1, 'Invoice 42', 'Alice <alice@example.com>', 'bob@example.org', '',"
    "  'draft report q3', 'invoice.pdf', 'total'),"
    "  (2, 'Grüße aus Zürich', 'Jürgen', 'Анна', 'Οδυσσέας', 'Straße ΣΧΈΔΙΟ', '', ''),"
    "  (3, '会议通知', '山田', '', '', '我们在北京开会 東京タワー 회의', '', '');"
    "INSERT INTO locations VALUES ('work', 'INBOX', 1, 1, 'a', '', 0, 0),"
    "  ('home', 'Archive/2024', 1, 2, 'b', '', 0, 0), ('work', 'Sent', 1, 3, 'c', '', 0, 0);";

static sqlite3 *db;

static void
setup(void)
{
	char *err = NULL;

	if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
	    search_tokenizer_register(db) != SQLITE_OK ||
	    sqlite3_exec(db, schema, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "setup: %s\n", err ? err : sqlite3_errmsg(db));
		abort();
	}
}

struct tokcheck {
	int mode;
	size_t len;
	int last_start;
};

struct same {
	const char *tok;
	int len, n, ok;
};

static int
same_token(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct same *s = ud;

	(void)flags; (void)start; (void)end;
	if (s->n++ == 0)
		s->ok = len == s->len && memcmp(tok, s->tok, (size_t)len) == 0;
	return 0;
}

static int
check_token(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct tokcheck *c = ud;

	(void)flags;
	if (len <= 0 || len > SEARCH_TOKEN_MAX || start < 0 || end <= start ||
	    (size_t)end > c->len || start < c->last_start)
		abort();
	c->last_start = start;
	if (c->mode == SEARCH_TOKENIZE_QUERY && len < SEARCH_TOKEN_MAX) {
		struct same s = { tok, len, 0, 0 };

		search_tokenize(tok, (size_t)len, SEARCH_TOKENIZE_QUERY, same_token, &s);
		if (s.n != 1 || !s.ok)
			abort();
	}
	return 0;
}

static void
check_error(const char *q, size_t len, const char *err, int col)
{
	char tail[32];
	size_t chars = 0, i;

	for (i = 0; i < len; i++)
		if (((unsigned char)q[i] & 0xC0) != 0x80)
			chars++;
	if (col < 1 || (size_t)col > chars + 1)
		abort();
	snprintf(tail, sizeof tail, " at column %d", col);
	if (strstr(err, tail) == NULL)
		abort();
}

static void
run_sql(const struct search_sql *s)
{
	sqlite3_stmt *st;
	const char *sql = s->sql;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "prepare: %s\n%s\n", sqlite3_errmsg(db), sql);
		abort();
	}
	if (search_sql_bind(st, s) != SQLITE_OK)
		abort();
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE) {
		fprintf(stderr, "step: %s\n%s\n", sqlite3_errmsg(db), sql);
		for (int i = 0; i < s->nparams; i++)
			if (s->params[i].type == SEARCH_PARAM_TEXT)
				fprintf(stderr, "?%d = %s\n", i + 1, s->params[i].text);
		abort();
	}
	sqlite3_finalize(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct search_opts page = { "snippet(fts, -1, '[', ']', '...', 8)", 50, 1 };
	struct search_query *q = NULL;
	struct search_sql s;
	struct tokcheck tc;
	char err[256];
	int col = 0;

	if (db == NULL)
		setup();
	tc.mode = SEARCH_TOKENIZE_DOCUMENT;
	tc.len = size;
	tc.last_start = 0;
	search_tokenize((const char *)data, size, tc.mode, check_token, &tc);
	tc.mode = SEARCH_TOKENIZE_QUERY;
	tc.last_start = 0;
	search_tokenize((const char *)data, size, tc.mode, check_token, &tc);

	if (search_query_parse((const char *)data, size, &q, err, sizeof err, &col) != 0) {
		if (q != NULL)
			abort();
		check_error((const char *)data, size, err, col);
		return 0;
	}
	if (search_query_sql(q, &page, &s, err, sizeof err) != 0)
		abort();	/* only out of memory */
	run_sql(&s);
	search_sql_free(&s);
	if (search_query_sql(q, NULL, &s, err, sizeof err) != 0)
		abort();
	run_sql(&s);
	search_sql_free(&s);
	search_query_free(q);
	return 0;
}

#include "search/search.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/index_text.h"
#include "search/query.h"

#define ID_MIN 4
#define SNIPPET "snippet(fts, -1, '[', ']', '…', 12)"

int
search_resolve_id(sqlite3 *db, const char *id, char *hash, size_t cap)
{
	char lo[65], hi[66];
	size_t n = strlen(id);
	sqlite3_stmt *st;
	int rc, found = 0;

	if (n < ID_MIN || n > 64 || cap < 65)
		return SEARCH_ID_BAD;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return SEARCH_ID_BAD;
		lo[i] = hi[i] = c;
	}
	lo[n] = '\0';
	hi[n] = 'g';	/* after every hex digit: [lo, hi) holds every hash LO begins */
	hi[n + 1] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT hash FROM messages WHERE hash >= ?1 AND hash < ?2 LIMIT 2",
	    -1, &st, NULL) != SQLITE_OK)
		return SEARCH_ID_DB;
	sqlite3_bind_text(st, 1, lo, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, hi, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (found++ == 0)
			snprintf(hash, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return SEARCH_ID_DB;
	if (found == 0)
		return SEARCH_ID_NONE;
	return found == 1 ? 0 : SEARCH_ID_AMBIGUOUS;
}

/* QUERY compiled: 0, or SEARCH_ERR_QUERY / SEARCH_ERR_DB with ERR. */
static int
compile(const char *query, const struct search_opts *so, struct search_sql *out, char *err,
    size_t errlen, int *col)
{
	struct search_query *q;

	*col = 0;
	memset(out, 0, sizeof(*out));
	if (search_query_parse(query, strlen(query), &q, err, errlen, col) < 0)
		return SEARCH_ERR_QUERY;
	if (search_query_sql(q, so, out, err, errlen) < 0) {
		search_query_free(q);
		return SEARCH_ERR_DB;
	}
	search_query_free(q);
	return 0;
}

static int
db_error(sqlite3 *db, char *err, size_t errlen)
{
	const char *m = sqlite3_errmsg(db);

	if (index_text_damage_seen())
		snprintf(err, errlen, "the search index's copy of a message's text is damaged: "
		    "run emailvault reindex (archive.db: %s)", m);
	else if (strstr(m, "no such table: fts") || strstr(m, "no such column: sort_date"))
		snprintf(err, errlen, "this archive has no search index yet: start the engine once "
		    "(emailvault run) to upgrade it");
	else
		snprintf(err, errlen, "archive.db: %s", m);
	return SEARCH_ERR_DB;
}

int
search_run(sqlite3 *db, const char *query, const struct search_run_opts *o,
    int (*cb)(void *ud, const struct search_hit *h), void *ud, char *err, size_t errlen, int *col)
{
	struct search_opts so = { SNIPPET, o->limit, o->offset };
	struct search_sql sql;
	sqlite3_stmt *st = NULL, *msg = NULL;
	int rc;

	if ((rc = compile(query, &so, &sql, err, errlen, col)) < 0)
		return rc;
	if (sqlite3_prepare_v2(db, sql.sql, -1, &st, NULL) != SQLITE_OK ||
	    search_sql_bind(st, &sql) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT size, from_text, to_text, subject, date_unix FROM messages "
	    "WHERE rowid = ?1", -1, &msg, NULL) != SQLITE_OK) {
		rc = db_error(db, err, errlen);
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct search_hit h;
		memset(&h, 0, sizeof(h));
		h.hash = (const char *)sqlite3_column_text(st, 1);
		h.date = sqlite3_column_int64(st, 3);
		h.snippet = (const char *)sqlite3_column_text(st, 4);
		sqlite3_bind_int64(msg, 1, sqlite3_column_int64(st, 0));
		if (sqlite3_step(msg) == SQLITE_ROW) {
			h.size = sqlite3_column_int64(msg, 0);
			h.from = (const char *)sqlite3_column_text(msg, 1);
			h.to = (const char *)sqlite3_column_text(msg, 2);
			h.subject = (const char *)sqlite3_column_text(msg, 3);
			if (sqlite3_column_type(st, 3) == SQLITE_NULL)
				h.date = sqlite3_column_int64(msg, 4);
		}
		int stop = cb(ud, &h);
		sqlite3_reset(msg);
		if (stop) {
			rc = SQLITE_DONE;
			break;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(db, err, errlen);
out:
	sqlite3_finalize(msg);
	sqlite3_finalize(st);
	search_sql_free(&sql);
	return rc;
}

int
search_select_for_export(sqlite3 *db, const char *query, sqlite3_stmt **out, long *total,
    char *err, size_t errlen, int *col)
{
	struct search_opts so = { NULL, 0, 0 };
	struct search_sql sql;
	sqlite3_stmt *st = NULL;
	char *text;
	size_t n;
	int rc;

	*out = NULL;
	*total = 0;
	if ((rc = compile(query, &so, &sql, err, errlen, col)) < 0)
		return rc;
	/* Each message once, oldest first, with where it was first archived. */
	static const char head[] =
	    "SELECT m.hash, coalesce(m.sort_date, m.date_unix, CAST(m.first_seen AS INTEGER)), "
	    "l.source, l.folder, l.flags, "
	    "substr(m.from_addrs, 1, instr(coalesce(m.from_addrs, '') || ',', ',') - 1) "
	    "FROM messages m LEFT JOIN locations l ON l.rowid = (SELECT rowid FROM locations "
	    "WHERE hash = m.hash ORDER BY archived_at, source, folder, uid LIMIT 1) "
	    "WHERE m.rowid IN (SELECT rowid FROM (";
	static const char tail[] =
	    ")) ORDER BY coalesce(m.sort_date, m.date_unix, m.first_seen), m.rowid";
	n = strlen(head) + strlen(sql.sql) + strlen(tail) + 1;
	if ((text = malloc(n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		search_sql_free(&sql);
		return SEARCH_ERR_DB;
	}
	snprintf(text, n, "%s%s%s", head, sql.sql, tail);
	/* how many, for the progress bar */
	char *count = malloc(strlen(sql.sql) + 40);
	if (count) {
		sprintf(count, "SELECT count(*) FROM (%s)", sql.sql);
		if (sqlite3_prepare_v2(db, count, -1, &st, NULL) == SQLITE_OK &&
		    search_sql_bind(st, &sql) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
			*total = (long)sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
		free(count);
	}
	if (sqlite3_prepare_v2(db, text, -1, out, NULL) != SQLITE_OK ||
	    search_sql_bind(*out, &sql) != SQLITE_OK) {
		rc = db_error(db, err, errlen);
		sqlite3_finalize(*out);
		*out = NULL;
	}
	free(text);
	search_sql_free(&sql);
	return rc;
}

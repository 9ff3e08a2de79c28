#ifndef EMAILVAULT_SEARCH_QUERY_H
#define EMAILVAULT_SEARCH_QUERY_H
/*
 * The search query language (docs/search.md) and its translation to SQL
 * over archive.db: messages m, locations, and the fts table
 * (subject, sender, recipient, cc, body, filename, attachment; rowid =
 * messages.rowid; tokenizer "emailvault").
 *
 *   invoice "q3 report" zür* -draft  a OR b  (a OR b) -(c d)
 *   from: to: cc: subject: filename:  folder:INBOX folder:Archive*
 *   source:work  has:attachment  larger:10k smaller:5M
 *   after:2024-01-01 before:2024-07-01
 *
 * Parsing is pure (bytes in, a tree out); every user string reaches SQL
 * as a bound parameter only, text as FTS5 "quoted" tokens.
 */
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#define SEARCH_QUERY_MAX_BYTES	8192
#define SEARCH_QUERY_MAX_TERMS	200
#define SEARCH_QUERY_MAX_DEPTH	20	/* parentheses and negations */

struct search_query;

/*
 * Parses LEN bytes of Q (UTF-8). 0 and *OUT, or -1 with a message in ERR
 * that names the problem and ends with "at column N", and N in *ERRCOL
 * (1-based, in characters; may be NULL). An empty query (or only spaces)
 * is valid: it matches every message.
 */
int search_query_parse(const char *q, size_t len, struct search_query **out,
    char *err, size_t errlen, int *errcol);
void search_query_free(struct search_query *q);

enum { SEARCH_PARAM_TEXT, SEARCH_PARAM_INT };

struct search_param {
	int type;		/* SEARCH_PARAM_* */
	char *text;		/* TEXT: NUL-terminated UTF-8 */
	int64_t num;		/* INT */
};

/*
 * The SQL of a query, one statement:
 *
 *   rowid, hash, rank, sort_date[, snippet]   of messages m
 *
 * in result order: ranked first (rank is bm25 over the query's positive
 * text terms, lower is better; NULL for rows they do not match and for
 * queries without any), then newest first by m.sort_date (NULL last),
 * then by rowid.
 */
struct search_sql {
	char *sql;
	struct search_param *params;	/* bound as ?1 .. ?nparams */
	int nparams;
	int ranked;	/* the query has positive text terms: rank is set */
};

struct search_opts {
	/*
	 * NULL, or one SQL expression over the fts table written by the
	 * caller (never user text), e.g. "snippet(fts, -1, '[', ']', '...', 12)":
	 * a fifth column, computed only for the rows returned; NULL where
	 * rank is NULL.
	 */
	const char *snippet;
	int64_t limit;		/* at most this many rows; 0: all */
	int64_t offset;		/* skipped first */
};

/*
 * Compiles Q. OPTS may be NULL (no snippet, every row). 0, or -1 with ERR
 * (out of memory).
 */
int search_query_sql(const struct search_query *q, const struct search_opts *opts,
    struct search_sql *out, char *err, size_t errlen);
/* Binds OUT's parameters to ST: an SQLite result code. */
int search_sql_bind(sqlite3_stmt *st, const struct search_sql *s);
void search_sql_free(struct search_sql *s);

#endif

#ifndef EMAILVAULT_SEARCH_SEARCH_H
#define EMAILVAULT_SEARCH_SEARCH_H
/*
 * Running queries on archive.db: the query language (search/query.c)
 * compiled to SQL, then hits with what people need to recognise a message
 * (date, from, subject, a snippet with the match marked). Also message ids:
 * the SHA-256 of the bytes, or any unique prefix of at least 4 digits.
 */
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

enum { SEARCH_ID_DB = -1, SEARCH_ID_BAD = -2, SEARCH_ID_AMBIGUOUS = -3, SEARCH_ID_NONE = -4 };
enum { SEARCH_ERR_DB = -1, SEARCH_ERR_QUERY = -2 };

/* The full hash of the message ID names into HASH (65 bytes): 0, or one of
 * SEARCH_ID_*. */
int search_resolve_id(sqlite3 *db, const char *id, char *hash, size_t cap);

struct search_run_opts {
	long limit, offset;		/* limit 0: no limit */
};

struct search_hit {
	const char *hash;
	int64_t date;			/* what the message sorts by (unix seconds) */
	int64_t size;
	const char *from, *to, *subject;
	const char *snippet;		/* the matched text around [the match] */
};

/*
 * Runs QUERY, calling CB for each hit, best match first (bm25), then
 * newest (a non-zero return stops). 0, or
 * SEARCH_ERR_QUERY (a malformed query: ERR says what, *COL the 1-based
 * column) or SEARCH_ERR_DB.
 */
int search_run(sqlite3 *db, const char *query, const struct search_run_opts *o,
    int (*cb)(void *ud, const struct search_hit *h), void *ud, char *err, size_t errlen, int *col);

/*
 * A statement over the messages QUERY selects (each once), oldest first,
 * with the columns an export needs: hash, date, source, folder and flags of
 * its first location, and its first sender address. *TOTAL gets how many.
 */
int search_select_for_export(sqlite3 *db, const char *query, sqlite3_stmt **st, long *total,
    char *err, size_t errlen, int *col);

#endif

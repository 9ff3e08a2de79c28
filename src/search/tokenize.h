#ifndef EMAILVAULT_SEARCH_TOKENIZE_H
#define EMAILVAULT_SEARCH_TOKENIZE_H
/*
 * The "emailvault" FTS5 tokenizer (docs/search.md): words of alphabetic
 * scripts case-folded by Unicode with diacritics removed, runs of Han,
 * Hiragana, Katakana and Hangul cut into overlapping bigrams. The same
 * function tokenizes documents and queries, so both sides fold alike.
 *
 * Pure and bounded: no allocation per call, tokens at most
 * SEARCH_TOKEN_MAX bytes, invalid UTF-8 treated as a separator. Safe to
 * call from several threads at once.
 */
#include <stddef.h>

#include <sqlite3.h>

#define SEARCH_TOKEN_MAX 256	/* bytes; a longer word is cut to this */

/* Modes */
enum {
	SEARCH_TOKENIZE_DOCUMENT = 0,	/* indexing, and snippet()/highlight() */
	SEARCH_TOKENIZE_QUERY = 1	/* a MATCH string */
};

/* Token flags */
#define SEARCH_TOKEN_CJK	0x1	/* a CJK bigram or single character */
#define SEARCH_TOKEN_CJK_ONE	0x2	/* a single CJK character: as a query it
					 * must be a prefix to find the
					 * character inside bigrams */

/*
 * Called for each token: TOK (LEN bytes, folded UTF-8, not terminated)
 * comes from TEXT[START, END). A nonzero return stops the tokenizer, which
 * returns that value.
 */
typedef int (*search_token_fn)(void *ud, int flags, const char *tok, int len,
    int start, int end);

/*
 * Tokenizes LEN bytes of TEXT (only the first INT_MAX bytes: FTS5 offsets
 * are ints). MODE is SEARCH_TOKENIZE_*. Returns 0 or the callback's value.
 */
int search_tokenize(const char *text, size_t len, int mode, search_token_fn fn,
    void *ud);

/*
 * Registers the tokenizer as "emailvault" on DB through the fts5_api (on
 * each connection that uses the fts table), bm25_topk, which the search
 * SQL uses (search/rank.h), and ev_text(), through which FTS5 reads the
 * index's text (search/index_text.h). SQLITE_OK or an SQLite error code
 * (SQLITE_ERROR when this SQLite has no FTS5).
 */
int search_tokenizer_register(sqlite3 *db);

#endif

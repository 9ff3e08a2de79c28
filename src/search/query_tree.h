#ifndef EMAILVAULT_SEARCH_QUERY_TREE_H
#define EMAILVAULT_SEARCH_QUERY_TREE_H
/*
 * The parsed query, shared by the parser (query.c, query_value.c) and the
 * SQL compiler (query_sql.c); nobody else looks inside. The parser leaves the tree in
 * negation normal form: only leaves are negated, AND and OR nodes have at
 * least two children and no child of their own kind.
 */
#include <stddef.h>
#include <stdint.h>

enum qkind {
	Q_AND, Q_OR,
	Q_TEXT,		/* fts: an FTS5 phrase, maybe with a column filter */
	Q_FOLDER,	/* text: folder name (prefix: a subtree) */
	Q_SOURCE,	/* text: source id */
	Q_ATTACH,	/* has:attachment */
	Q_LARGER,	/* num: bytes */
	Q_SMALLER,
	Q_AFTER,	/* num: unix seconds, UTC midnight */
	Q_BEFORE
};

struct qnode {
	enum qkind kind;
	int neg;
	struct qnode **kids;	/* Q_AND, Q_OR */
	int nkids;
	char *text;		/* Q_TEXT: FTS5 expression; Q_FOLDER, Q_SOURCE */
	int prefix;		/* Q_FOLDER */
	int inbox;		/* Q_FOLDER: the name is INBOX in any case */
	int64_t num;
};

struct search_query {
	struct qnode *root;	/* NULL: every message */
};

/* query_value.c */
/* "300", "10k", "5M", "1G" (k/M/G: powers of 1024; a B may follow) in
 * bytes: 0, -1 when malformed, -2 when too large. */
int query_size(const char *s, size_t n, int64_t *out);
/* YYYY-MM-DD or YYYY/MM/DD as unix seconds of its UTC midnight: 0 or -1. */
int query_date(const char *s, size_t n, int64_t *out);
/* Edit distance of A[0, NA) (any case) to the lower-case name B. */
int query_edit_distance(const char *a, size_t na, const char *b);

#endif

#ifndef EMAILVAULT_SEARCH_QUERY_TREE_H
#define EMAILVAULT_SEARCH_QUERY_TREE_H
/*
 * The parsed query, shared by the parser (query.c) and the SQL compiler
 * (query_sql.c); nobody else looks inside. The parser leaves the tree in
 * negation normal form: only leaves are negated, AND and OR nodes have at
 * least two children and no child of their own kind.
 */
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

#endif

#ifndef EMAILVAULT_SERVE_IMAPD_ARGS_H
#define EMAILVAULT_SERVE_IMAPD_ARGS_H
/*
 * The arguments of the server's commands, read from a parsed command
 * (imapd_parse.h): sequence sets, FETCH items and SEARCH keys. Pure and
 * bounded like the parser; fuzzed with it.
 */
#include <stddef.h>
#include <stdint.h>

#include "serve/imapd_parse.h"

#define IMAPD_SEQ_MAX		1024	/* ranges in a set */
#define IMAPD_FETCH_MAX		64	/* items in one FETCH */
#define IMAPD_PART_DEPTH	16	/* BODY[1.2.3...] */
#define IMAPD_FIELDS_MAX	64	/* HEADER.FIELDS (...) names */
#define IMAPD_SEARCH_MAX	256	/* keys in one SEARCH */

/* A sequence set: ranges lo:hi, with 0 standing for '*' (the largest). */
struct imapd_seqset {
	struct { uint32_t lo, hi; } r[IMAPD_SEQ_MAX];
	int n;
};

/* 0, or -1 when S is not a sequence set. */
int imapd_seqset_parse(const char *s, size_t len, struct imapd_seqset *out);
/* Whether V is in SET, '*' being MAX. */
int imapd_seqset_has(const struct imapd_seqset *set, uint32_t v, uint32_t max);

enum imapd_fetch_kind {
	FETCH_UID, FETCH_FLAGS, FETCH_INTERNALDATE, FETCH_SIZE, FETCH_ENVELOPE,
	FETCH_BODYSTRUCTURE, FETCH_BODY /* non-extensible structure */, FETCH_SECTION,
	FETCH_RFC822, FETCH_RFC822_HEADER, FETCH_RFC822_TEXT
};

enum imapd_section_text {
	SECTION_ALL,		/* BODY[] or BODY[1.2] */
	SECTION_HEADER, SECTION_HEADER_FIELDS, SECTION_HEADER_FIELDS_NOT,
	SECTION_TEXT, SECTION_MIME
};

struct imapd_fetch_item {
	enum imapd_fetch_kind kind;
	int peek;			/* BODY.PEEK */
	uint32_t part[IMAPD_PART_DEPTH];
	int nparts;
	enum imapd_section_text text;
	const char *fields[IMAPD_FIELDS_MAX];	/* into fieldbuf */
	char fieldbuf[512];
	int nfields;
	int partial;			/* <start.len> given */
	uint32_t start, count;
	char name[160];			/* as the response names it: BODY[HEADER]<0> */
};

struct imapd_fetch {
	struct imapd_fetch_item items[IMAPD_FETCH_MAX];
	int n;
};

/* The FETCH items of node N (an atom, a macro or a list). 0, or -1 with ERR. */
int imapd_fetch_parse(const struct imapd_cmd *cmd, const struct imapd_node *n,
    struct imapd_fetch *out, char *err, size_t errlen);

enum imapd_search_op {
	S_ALL, S_AND, S_OR, S_NOT,
	S_FLAG, S_UNFLAG,		/* arg: \Seen, \Answered, ..., keyword */
	S_NONE,				/* NEW, RECENT: never true here */
	S_BEFORE, S_ON, S_SINCE,	/* internal date, num: days since the epoch */
	S_SENTBEFORE, S_SENTON, S_SENTSINCE,
	S_LARGER, S_SMALLER,
	S_SEQ, S_UID,			/* set */
	S_TEXT, S_BODY, S_SUBJECT, S_FROM, S_TO, S_CC, S_BCC,	/* arg: a string */
	S_HEADER			/* field, arg */
};

struct imapd_search_key {
	enum imapd_search_op op;
	int a, b;			/* children (AND: a list from a via next) */
	int next;
	const char *arg, *field;
	int64_t num;
	struct imapd_seqset *set;	/* S_SEQ, S_UID: owned by the search */
};

struct imapd_search {
	struct imapd_search_key keys[IMAPD_SEARCH_MAX];
	int n;
	int root;			/* an S_AND of the top-level keys */
	const char *charset;		/* NULL or as given */
};

/* The SEARCH keys of CMD from argument FIRST on. 0, or -1 with ERR. */
int imapd_search_parse(const struct imapd_cmd *cmd, int first, struct imapd_search *out,
    char *err, size_t errlen);
void imapd_search_free(struct imapd_search *s);

/* "1-Feb-1994" to days since the epoch; -1 if malformed. */
int64_t imapd_parse_date(const char *s);

#endif

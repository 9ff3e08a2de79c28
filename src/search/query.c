/*
 * The query parser: a recursive descent over the bytes of the query.
 *
 *   query   := item*                  implicit AND
 *   item    := unary ('OR' unary)*    OR binds tighter than AND (Gmail)
 *   unary   := '-' unary | 'NOT' unary | primary
 *   primary := '(' query ')' | OP ':' value | '"' text '"' ['*'] | word ['*']
 *
 * A bare "AND" between items is allowed and changes nothing. Text terms
 * are tokenized here with the index's tokenizer and kept as FTS5 phrases
 * of quoted tokens, so a word without letters or digits is an error with
 * its column rather than a term that silently matches nothing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "search/query.h"
#include "search/query_tree.h"
#include "search/tokenize.h"

struct parser {
	const char *q;
	size_t len, pos;
	char *err;
	size_t errlen;
	int *errcol;
	int failed;
	int terms;
	int depth;
};

/* A growing string; on failure to grow it is marked and stays short. */
struct sbuf {
	char *s;
	size_t len, cap;
	int oom;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->s, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* 1-based column of byte offset AT, in characters. */
static int
column(const struct parser *p, size_t at)
{
	size_t i;
	int col = 1;

	for (i = 0; i < at && i < p->len; i++)
		if (((unsigned char)p->q[i] & 0xC0) != 0x80)
			col++;
	return col;
}

/* "MESSAGE at column N" + TAIL; returns NULL for the callers' sake. */
static void *
fail(struct parser *p, size_t at, const char *tail, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	int col;

	if (p->failed)
		return NULL;
	p->failed = 1;
	col = column(p, at);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s at column %d%s", msg, col,
		    tail ? tail : "");
	if (p->errcol)
		*p->errcol = col;
	return NULL;
}

static void *
oom(struct parser *p)
{
	return fail(p, p->pos, NULL, "out of memory");
}

/* Byte length of the whitespace character at AT, 0 if there is none. */
static size_t
space_len(const struct parser *p, size_t at)
{
	const char *s = p->q + at, *e = p->q + p->len;
	const char *next;

	if (at >= p->len)
		return 0;
	if ((unsigned char)*s < 0x80)
		return ((unsigned char)*s <= ' ' || *s == 0x7f) ? 1 : 0;
	next = g_utf8_find_next_char(s, e);
	if (next == NULL)
		next = e;
	return g_unichar_isspace(g_utf8_get_char(s)) ? (size_t)(next - s) : 0;
}

static void
skip_space(struct parser *p)
{
	size_t n;

	while ((n = space_len(p, p->pos)) > 0)
		p->pos += n;
}

/* Does a word end at AT? */
static int
word_end(const struct parser *p, size_t at)
{
	char c;

	if (at >= p->len || space_len(p, at))
		return 1;
	c = p->q[at];
	return c == '(' || c == ')' || c == '"';
}

static int
keyword(const struct parser *p, const char *kw)
{
	size_t n = strlen(kw);

	return p->len - p->pos >= n && memcmp(p->q + p->pos, kw, n) == 0 &&
	    word_end(p, p->pos + n);
}

static struct qnode *
node_new(struct parser *p, enum qkind kind)
{
	struct qnode *n;

	if (++p->terms > SEARCH_QUERY_MAX_TERMS)
		return fail(p, p->pos, NULL, "too many terms (at most %d)",
		    SEARCH_QUERY_MAX_TERMS);
	if ((n = calloc(1, sizeof *n)) == NULL)
		return oom(p);
	n->kind = kind;
	return n;
}

static void
node_free(struct qnode *n)
{
	int i;

	if (n == NULL)
		return;
	for (i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->text);
	free(n);
}

static int
node_add(struct qnode *n, struct qnode *kid)
{
	struct qnode **k;

	if ((k = realloc(n->kids, (size_t)(n->nkids + 1) * sizeof *k)) == NULL)
		return -1;
	n->kids = k;
	n->kids[n->nkids++] = kid;
	return 0;
}

/* ---- text terms ---------------------------------------------------------- */

struct phrase {
	struct sbuf b;
	int ntok;
	int last_star;
};

static int
phrase_token(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct phrase *ph = ud;
	int i;

	(void)start;
	(void)end;
	if (ph->ntok++)
		sb_str(&ph->b, " + ");
	sb_str(&ph->b, "\"");
	for (i = 0; i < len; i++)
		sb_add(&ph->b, tok[i] == '"' ? "\"\"" : tok + i, tok[i] == '"' ? 2 : 1);
	sb_str(&ph->b, "\"");
	/* A lone CJK character is in the index as the start of bigrams. */
	ph->last_star = (flags & SEARCH_TOKEN_CJK_ONE) != 0;
	if (ph->last_star)
		sb_str(&ph->b, "*");
	return 0;
}

static const char *const field_names[] = {
	NULL, "subject", "sender", "recipient", "cc", "filename"
};
enum { F_ALL, F_SUBJECT, F_SENDER, F_RECIPIENT, F_CC, F_FILENAME };

/* A Q_TEXT node for the text Q[AT, AT + N) in FIELD. WHAT names it in errors. */
static struct qnode *
text_node(struct parser *p, int field, size_t at, size_t n, int prefix,
    const char *what)
{
	struct phrase ph;
	struct sbuf e;
	struct qnode *node;

	memset(&ph, 0, sizeof ph);
	search_tokenize(p->q + at, n, SEARCH_TOKENIZE_QUERY, phrase_token, &ph);
	if (ph.b.oom) {
		free(ph.b.s);
		return oom(p);
	}
	if (ph.ntok == 0) {
		free(ph.b.s);
		if (what)
			return fail(p, at, NULL, "%s wants letters or digits", what);
		return fail(p, at, NULL, "'%.*s' has no letters or digits to search for",
		    (int)(n > 40 ? 40 : n), p->q + at);
	}
	if (prefix && !ph.last_star)
		sb_str(&ph.b, "*");
	memset(&e, 0, sizeof e);
	if (field != F_ALL) {
		sb_str(&e, field_names[field]);
		sb_str(&e, " : (");
		sb_add(&e, ph.b.s, ph.b.len);
		sb_str(&e, ")");
	} else {
		sb_add(&e, ph.b.s, ph.b.len);
	}
	free(ph.b.s);
	if (e.oom || (node = node_new(p, Q_TEXT)) == NULL) {
		free(e.s);
		return e.oom ? oom(p) : NULL;
	}
	node->text = e.s;
	return node;
}

/* ---- values of operators ------------------------------------------------- */

/* The value after "op:" at p->pos: a "quoted" string or a word. */
struct value {
	size_t at, len;		/* the text, without quotes or a trailing '*' */
	int quoted, prefix;
};

static int
read_value(struct parser *p, const char *op, struct value *v)
{
	size_t start = p->pos;

	memset(v, 0, sizeof *v);
	if (p->pos < p->len && p->q[p->pos] == '"') {
		const char *close = memchr(p->q + p->pos + 1, '"', p->len - p->pos - 1);

		if (close == NULL) {
			fail(p, p->pos, NULL, "unclosed quote");
			return -1;
		}
		v->quoted = 1;
		v->at = p->pos + 1;
		v->len = (size_t)(close - (p->q + v->at));
		p->pos = (size_t)(close - p->q) + 1;
		if (p->pos < p->len && p->q[p->pos] == '*') {
			v->prefix = 1;
			p->pos++;
		}
	} else {
		while (!word_end(p, p->pos))
			p->pos++;
		v->at = start;
		v->len = p->pos - start;
		if (v->len > 0 && p->q[v->at + v->len - 1] == '*') {
			v->prefix = 1;
			v->len--;
		}
	}
	if (v->len == 0 && !v->quoted) {
		fail(p, start, NULL, "%s: wants a value", op);
		return -1;
	}
	return 0;
}

static int
no_prefix(struct parser *p, const struct value *v, const char *op)
{
	if (!v->prefix)
		return 0;
	fail(p, v->at + v->len, NULL, "%s: takes no '*'", op);
	return -1;
}

/* ---- operators ----------------------------------------------------------- */

enum op_kind { OP_TEXT, OP_FOLDER, OP_SOURCE, OP_HAS, OP_LARGER, OP_SMALLER,
	OP_AFTER, OP_BEFORE };

static const struct op {
	const char *name;
	enum op_kind kind;
	int field;
} ops[] = {
	{ "from", OP_TEXT, F_SENDER },
	{ "to", OP_TEXT, F_RECIPIENT },
	{ "cc", OP_TEXT, F_CC },
	{ "subject", OP_TEXT, F_SUBJECT },
	{ "filename", OP_TEXT, F_FILENAME },
	{ "folder", OP_FOLDER, 0 },
	{ "source", OP_SOURCE, 0 },
	{ "has", OP_HAS, 0 },
	{ "larger", OP_LARGER, 0 },
	{ "smaller", OP_SMALLER, 0 },
	{ "after", OP_AFTER, 0 },
	{ "before", OP_BEFORE, 0 },
};

/* Names people bring from other mail programs. */
static const struct { const char *name, *hint; } op_hints[] = {
	{ "in", "folder:" }, { "label", "folder:" }, { "mailbox", "folder:" },
	{ "account", "source:" }, { "bcc", "to:" }, { "sender", "from:" },
	{ "recipient", "to:" }, { "title", "subject:" }, { "size", "larger:" },
	{ "older", "before:" }, { "until", "before:" }, { "newer", "after:" },
	{ "since", "after:" }, { "date", "after: or before:" },
	{ "attachment", "has:attachment or filename:" }, { "file", "filename:" },
};

static void *
unknown_op(struct parser *p, size_t at, size_t n)
{
	char tail[160];
	const char *best = NULL;
	size_t i;
	int d, bestd = 3;

	for (i = 0; i < sizeof op_hints / sizeof op_hints[0]; i++)
		if (strlen(op_hints[i].name) == n &&
		    g_ascii_strncasecmp(op_hints[i].name, p->q + at, n) == 0) {
			snprintf(tail, sizeof tail, " (did you mean %s?)", op_hints[i].hint);
			return fail(p, at, tail, "unknown operator '%.*s:'", (int)n, p->q + at);
		}
	for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		d = query_edit_distance(p->q + at, n, ops[i].name);
		if (d < bestd && (size_t)d < n) {
			bestd = d;
			best = ops[i].name;
		}
	}
	if (best)
		snprintf(tail, sizeof tail, " (did you mean %s:?)", best);
	else
		snprintf(tail, sizeof tail, " (put \"%.*s:...\" in quotes to search "
		    "for the text)", (int)(n > 40 ? 40 : n), p->q + at);
	return fail(p, at, tail, "unknown operator '%.*s:'",
	    (int)(n > 40 ? 40 : n), p->q + at);
}

static struct qnode *
value_node(struct parser *p, enum qkind kind, const struct value *v)
{
	struct qnode *n = node_new(p, kind);

	if (n == NULL)
		return NULL;
	if ((n->text = malloc(v->len + 1)) == NULL) {
		node_free(n);
		return oom(p);
	}
	memcpy(n->text, p->q + v->at, v->len);
	n->text[v->len] = '\0';
	return n;
}

/* OP:VALUE with the operator's name at Q[AT, AT + N) and p->pos after ':'. */
static struct qnode *
operator(struct parser *p, size_t at, size_t n)
{
	const struct op *op = NULL;
	struct qnode *node;
	struct value v;
	size_t i;
	int rc;

	for (i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strlen(ops[i].name) == n &&
		    g_ascii_strncasecmp(ops[i].name, p->q + at, n) == 0)
			op = &ops[i];
	if (op == NULL)
		return unknown_op(p, at, n);
	if (p->pos < p->len && p->q[p->pos] == '(')
		return fail(p, p->pos, NULL, "%s: takes a word or a \"phrase\", "
		    "not parentheses", op->name);
	if (read_value(p, op->name, &v) != 0)
		return NULL;
	switch (op->kind) {
	case OP_TEXT: {
		char what[32];

		snprintf(what, sizeof what, "%s:", op->name);
		return text_node(p, op->field, v.at, v.len, v.prefix, what);
	}
	case OP_FOLDER:
		if (v.len == 0)
			return fail(p, v.at, NULL, "folder: wants a folder name");
		if ((node = value_node(p, Q_FOLDER, &v)) == NULL)
			return NULL;
		node->prefix = v.prefix;
		node->inbox = !v.prefix && g_ascii_strcasecmp(node->text, "INBOX") == 0;
		return node;
	case OP_SOURCE:
		if (v.len == 0)
			return fail(p, v.at, NULL, "source: wants a source id");
		if (no_prefix(p, &v, "source") != 0)
			return NULL;
		return value_node(p, Q_SOURCE, &v);
	case OP_HAS:
		if (!((v.len == 10 && g_ascii_strncasecmp(p->q + v.at, "attachment", 10) == 0) ||
		    (v.len == 11 && g_ascii_strncasecmp(p->q + v.at, "attachments", 11) == 0)) ||
		    v.quoted || v.prefix)
			return fail(p, v.at, NULL, "has: knows only has:attachment");
		return node_new(p, Q_ATTACH);
	case OP_LARGER:
	case OP_SMALLER:
		if (no_prefix(p, &v, op->name) != 0)
			return NULL;
		if ((node = node_new(p, op->kind == OP_LARGER ? Q_LARGER : Q_SMALLER)) == NULL)
			return NULL;
		if ((rc = query_size(p->q + v.at, v.len, &node->num)) != 0) {
			node_free(node);
			return fail(p, v.at, NULL, rc == -2 ? "%s: size too large" :
			    "%s: wants a size such as 300, 10k, 5M or 1G", op->name);
		}
		return node;
	case OP_AFTER:
	case OP_BEFORE:
		if (no_prefix(p, &v, op->name) != 0)
			return NULL;
		if ((node = node_new(p, op->kind == OP_AFTER ? Q_AFTER : Q_BEFORE)) == NULL)
			return NULL;
		if (query_date(p->q + v.at, v.len, &node->num) != 0) {
			node_free(node);
			return fail(p, v.at, NULL, "%s: wants a date YYYY-MM-DD", op->name);
		}
		return node;
	}
	return NULL;
}

/* ---- the grammar --------------------------------------------------------- */

static struct qnode *parse_and(struct parser *p, int nested);

static struct qnode *
parse_primary(struct parser *p)
{
	size_t start = p->pos, i, n;
	const char *star;
	struct qnode *node;
	int prefix = 0;

	if (p->q[p->pos] == '(') {
		if (++p->depth > SEARCH_QUERY_MAX_DEPTH)
			return fail(p, start, NULL, "too deeply nested (at most %d levels)",
			    SEARCH_QUERY_MAX_DEPTH);
		p->pos++;
		skip_space(p);
		if (p->pos < p->len && p->q[p->pos] == ')')
			return fail(p, start, NULL, "empty parentheses");
		if ((node = parse_and(p, 1)) == NULL)
			return NULL;
		if (p->pos >= p->len || p->q[p->pos] != ')') {
			node_free(node);
			return fail(p, start, NULL, "unclosed '('");
		}
		p->pos++;
		p->depth--;
		return node;
	}
	if (p->q[p->pos] == '"') {
		const char *close = memchr(p->q + start + 1, '"', p->len - start - 1);

		if (close == NULL)
			return fail(p, start, NULL, "unclosed quote");
		p->pos = (size_t)(close - p->q) + 1;
		if (p->pos < p->len && p->q[p->pos] == '*') {
			prefix = 1;
			p->pos++;
		}
		return text_node(p, F_ALL, start + 1, (size_t)(close - p->q) - start - 1,
		    prefix, NULL);
	}
	/* OP: is letters and a colon at the start of a word */
	for (i = start; i < p->len && g_ascii_isalpha(p->q[i]); i++)
		;
	if (i > start && i < p->len && p->q[i] == ':') {
		p->pos = i + 1;
		return operator(p, start, i - start);
	}
	while (!word_end(p, p->pos))
		p->pos++;
	n = p->pos - start;
	if (n > 0 && p->q[start + n - 1] == '*') {
		prefix = 1;
		n--;
	}
	star = n > 0 ? memchr(p->q + start, '*', n) : NULL;
	if (n == 0 || star)
		return fail(p, star ? (size_t)(star - p->q) : start, NULL,
		    "'*' goes only at the end of a word");
	return text_node(p, F_ALL, start, n, prefix, NULL);
}

static struct qnode *
parse_unary(struct parser *p)
{
	size_t start = p->pos;
	struct qnode *node;

	if (p->q[p->pos] == '-' || keyword(p, "NOT")) {
		p->pos += p->q[p->pos] == '-' ? 1 : 3;
		if (p->q[start] == 'N')
			skip_space(p);
		if (p->pos >= p->len || space_len(p, p->pos) || p->q[p->pos] == ')' ||
		    keyword(p, "OR") || keyword(p, "AND"))
			return fail(p, start, NULL, "'%s' needs a term right after it",
			    p->q[start] == '-' ? "-" : "NOT");
		if (++p->depth > SEARCH_QUERY_MAX_DEPTH)
			return fail(p, start, NULL, "too deeply nested (at most %d levels)",
			    SEARCH_QUERY_MAX_DEPTH);
		if ((node = parse_unary(p)) == NULL)
			return NULL;
		p->depth--;
		node->neg = !node->neg;
		return node;
	}
	return parse_primary(p);
}

/* True at an OR/AND keyword; FAILS when it has no term on its right. */
static int
binary_keyword(struct parser *p, const char *kw)
{
	size_t at = p->pos;

	if (!keyword(p, kw))
		return 0;
	p->pos += strlen(kw);
	skip_space(p);
	if (p->pos >= p->len || p->q[p->pos] == ')' || keyword(p, "OR") ||
	    keyword(p, "AND")) {
		fail(p, at, NULL, "%s needs a term after it", kw);
		return -1;
	}
	return 1;
}

static struct qnode *
parse_or(struct parser *p)
{
	struct qnode *left, *right, *or = NULL;
	int k;

	if ((left = parse_unary(p)) == NULL)
		return NULL;
	for (;;) {
		size_t save = p->pos;

		skip_space(p);
		if ((k = binary_keyword(p, "OR")) <= 0) {
			if (k < 0)
				goto bad;
			p->pos = save;
			return or ? or : left;
		}
		if ((right = parse_unary(p)) == NULL)
			goto bad;
		if (or == NULL) {
			if ((or = node_new(p, Q_OR)) == NULL || node_add(or, left) != 0) {
				node_free(right);
				goto bad;
			}
			left = NULL;
		}
		if (node_add(or, right) != 0) {
			node_free(right);
			oom(p);
			goto bad;
		}
	}
bad:
	if (!p->failed)
		oom(p);
	node_free(left);
	node_free(or);
	return NULL;
}

/* Items up to the end, or up to ')' when NESTED. NULL and no failure:
 * nothing there. */
static struct qnode *
parse_and(struct parser *p, int nested)
{
	struct qnode *and = NULL, *item, *first = NULL;
	int nitems = 0, after_and = 0;

	for (;;) {
		skip_space(p);
		if (p->pos >= p->len)
			break;
		if (p->q[p->pos] == ')') {
			if (nested)
				break;
			fail(p, p->pos, NULL, "unexpected ')'");
			goto bad;
		}
		if (keyword(p, "OR")) {
			fail(p, p->pos, NULL, "OR needs a term before it");
			goto bad;
		}
		if (keyword(p, "AND")) {
			if (nitems == 0 || after_and) {
				fail(p, p->pos, NULL, "AND needs a term before it");
				goto bad;
			}
			if (binary_keyword(p, "AND") < 0)
				goto bad;
			after_and = 1;
			continue;
		}
		after_and = 0;
		if ((item = parse_or(p)) == NULL)
			goto bad;
		if (nitems++ == 0) {
			first = item;
			continue;
		}
		if (and == NULL) {
			if ((and = node_new(p, Q_AND)) == NULL || node_add(and, first) != 0) {
				node_free(item);
				goto bad;
			}
			first = NULL;
		}
		if (node_add(and, item) != 0) {
			node_free(item);
			goto bad;
		}
	}
	return and ? and : first;
bad:
	if (!p->failed)
		oom(p);
	node_free(first);
	node_free(and);
	return NULL;
}

/*
 * Negation normal form: NEG is pushed down to the leaves (De Morgan), and
 * an AND (OR) child of an AND (OR) is merged into its parent. In place;
 * returns N, or NULL when out of memory (N is then freed).
 */
static struct qnode *
normalize(struct qnode *n, int neg)
{
	struct qnode **kids, *kid;
	int i, j, nk, count = 0;

	if (n->kind != Q_AND && n->kind != Q_OR) {
		n->neg ^= neg;
		return n;
	}
	neg ^= n->neg;
	n->neg = 0;
	if (neg)
		n->kind = n->kind == Q_AND ? Q_OR : Q_AND;
	for (i = 0; i < n->nkids; i++) {
		if ((n->kids[i] = normalize(n->kids[i], neg)) == NULL) {
			for (j = i + 1; j < n->nkids; j++)
				node_free(n->kids[j]);
			n->nkids = i;
			node_free(n);
			return NULL;
		}
		kid = n->kids[i];
		count += kid->kind == n->kind ? kid->nkids : 1;
	}
	if (count == n->nkids)
		return n;
	if ((kids = malloc((size_t)count * sizeof *kids)) == NULL) {
		node_free(n);
		return NULL;
	}
	for (i = 0, nk = 0; i < n->nkids; i++) {
		kid = n->kids[i];
		if (kid->kind == n->kind) {
			for (j = 0; j < kid->nkids; j++)
				kids[nk++] = kid->kids[j];
			kid->nkids = 0;
			node_free(kid);
		} else {
			kids[nk++] = kid;
		}
	}
	free(n->kids);
	n->kids = kids;
	n->nkids = nk;
	return n;
}

int
search_query_parse(const char *q, size_t len, struct search_query **out,
    char *err, size_t errlen, int *errcol)
{
	struct parser p;
	struct qnode *root;
	const char *bad;

	memset(&p, 0, sizeof p);
	p.q = q;
	p.len = len;
	p.err = err;
	p.errlen = errlen;
	p.errcol = errcol;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (errcol)
		*errcol = 0;
	if (len > SEARCH_QUERY_MAX_BYTES) {
		fail(&p, SEARCH_QUERY_MAX_BYTES, NULL, "query too long (at most %d bytes)",
		    SEARCH_QUERY_MAX_BYTES);
		return -1;
	}
	if (!g_utf8_validate(q, (gssize)len, &bad)) {
		fail(&p, (size_t)(bad - q), NULL, "invalid UTF-8");
		return -1;
	}
	root = parse_and(&p, 0);
	if (p.failed)
		return -1;
	if (root && (root = normalize(root, 0)) == NULL) {
		oom(&p);
		return -1;
	}
	if ((*out = calloc(1, sizeof **out)) == NULL) {
		node_free(root);
		oom(&p);
		return -1;
	}
	(*out)->root = root;
	return 0;
}

void
search_query_free(struct search_query *q)
{
	if (q == NULL)
		return;
	node_free(q->root);
	free(q);
}

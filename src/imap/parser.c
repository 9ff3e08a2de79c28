/*
 * IMAP response parser. See parser.h for the contract and
 * docs/imap-parser.md for the design.
 *
 * Input is cut into "segments": the bytes up to an LF. Every token of a
 * segment is complete in it (quoted strings and atoms cannot cross a line)
 * except a literal, which always ends its segment; so a segment is parsed
 * in one go, and only a segment split across feeds is copied into p->line.
 * The tree being built persists between segments, the literal bytes in
 * between go to the callbacks or into the arena.
 *
 * Memory of a response: the arena (token bytes, NUL-terminated, addressed
 * by offset while it may move) and the node array (pre-order, each list
 * followed by its descendants). Both are reused for the next response.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/parser.h"

#define NONE	UINT32_MAX
#define NF_LAST	0x01	/* last child of its list: next() stops */
#define NF_LIT8	0x02	/* literal8 */
#define SHRINK	(256 * 1024)	/* free buffers larger than this after use */

struct imap_node {
	union {
		size_t off;		/* while building: arena offset */
		const char *ptr;	/* after fixup */
		uint64_t size;		/* streamed literal */
	} u;
	uint32_t len;		/* bytes of atom/quoted/inline literal */
	uint32_t nchild;
	uint32_t span;		/* number of descendants */
	uint8_t type;
	uint8_t flags;
};

struct open_list {
	uint32_t node;
	uint32_t last;		/* last child so far, or NONE */
};

enum { ST_LINE, ST_LITERAL, ST_ERROR };
enum { SEG_DONE = 1, SEG_LITERAL = 2 };	/* segment results, errors < 0 */

struct imap_parser {
	struct imap_callbacks cb;
	struct imap_limits lim;
	int state;
	int err;
	char errmsg[192];
	size_t consumed;

	char *line;		/* a segment that spans feeds */
	size_t line_len, line_cap;

	/* the response being built */
	int started;		/* header parsed */
	uint64_t resp_bytes;	/* counted against max_response */
	uint64_t wire_bytes;
	struct imap_response r;	/* fields filled in at delivery */
	size_t tag_off, kw_off, text_off, name_off, raw_off;
	uint32_t data_root, code_root;

	char *arena;
	size_t arena_len, arena_cap;
	struct imap_node *nodes;
	size_t nnodes, nodes_cap;
	size_t ntokens;
	struct open_list *stack;	/* stack[0] is the root */
	unsigned depth;

	int has_uid;		/* FETCH: "UID n" seen so far */
	uint32_t uid;

	/* literal in progress */
	uint64_t lit_left, lit_size;
	int lit_stream;
	size_t lit_off;
};

static int
fail(struct imap_parser *p, int code, const char *fmt, ...)
{
	va_list ap;

	if (p->err)
		return p->err;
	p->err = code;
	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
	va_end(ap);
	return code;
}

/* ---- limits and lifetime ----------------------------------------------- */

void
imap_limits_default(struct imap_limits *l)
{
	l->max_response = 16u << 20;
	l->max_depth = 64;
	l->max_literal = (uint64_t)2 << 30;
	l->max_inline = 1u << 20;
	l->max_tokens = 2000000;
}

struct imap_parser *
imap_parser_new(const struct imap_callbacks *cb, const struct imap_limits *lim)
{
	struct imap_parser *p;

	if ((p = calloc(1, sizeof *p)) == NULL)
		return NULL;
	if (cb)
		p->cb = *cb;
	if (lim)
		p->lim = *lim;
	else
		imap_limits_default(&p->lim);
	/* node lengths and counts are 32-bit; keep every limit inside that */
	if (p->lim.max_response > UINT32_MAX - 1)
		p->lim.max_response = UINT32_MAX - 1;
	if (p->lim.max_inline > p->lim.max_response)
		p->lim.max_inline = p->lim.max_response;
	if (p->lim.max_tokens > UINT32_MAX / 2)
		p->lim.max_tokens = UINT32_MAX / 2;
	if (p->lim.max_depth > 100000)
		p->lim.max_depth = 100000;
	if (p->lim.max_literal > SIZE_MAX)
		p->lim.max_literal = SIZE_MAX;
	p->stack = calloc((size_t)p->lim.max_depth + 1, sizeof *p->stack);
	if (p->stack == NULL) {
		free(p);
		return NULL;
	}
	imap_parser_reset(p);
	return p;
}

/* Forget the response being built; drop buffers a big one left behind. */
static void
clear_response(struct imap_parser *p)
{
	p->started = 0;
	p->resp_bytes = p->wire_bytes = 0;
	memset(&p->r, 0, sizeof p->r);
	p->tag_off = p->kw_off = p->text_off = p->name_off = p->raw_off =
	    SIZE_MAX;
	p->data_root = p->code_root = NONE;
	p->has_uid = 0;
	p->arena_len = p->nnodes = p->ntokens = 0;
	p->depth = 0;
	if (p->arena_cap > SHRINK) {
		free(p->arena);
		p->arena = NULL;
		p->arena_cap = 0;
	}
	if (p->nodes_cap * sizeof *p->nodes > SHRINK) {
		free(p->nodes);
		p->nodes = NULL;
		p->nodes_cap = 0;
	}
	if (p->line_cap > SHRINK) {
		free(p->line);
		p->line = NULL;
		p->line_cap = 0;
	}
}

void
imap_parser_reset(struct imap_parser *p)
{
	p->state = ST_LINE;
	p->err = 0;
	p->errmsg[0] = '\0';
	p->line_len = 0;
	p->lit_left = 0;
	clear_response(p);
}

void
imap_parser_free(struct imap_parser *p)
{
	if (p == NULL)
		return;
	free(p->line);
	free(p->arena);
	free(p->nodes);
	free(p->stack);
	free(p);
}

size_t
imap_parser_consumed(const struct imap_parser *p)
{
	return p->consumed;
}

uint64_t
imap_parser_pending(const struct imap_parser *p)
{
	return p->wire_bytes;
}

int
imap_parser_error(const struct imap_parser *p)
{
	return p->err;
}

const char *
imap_parser_errmsg(const struct imap_parser *p)
{
	return p->errmsg;
}

/* ---- buffers ------------------------------------------------------------ */

/* Make room for need elements of size elem in *buf (capacity *cap). */
static int
grow(struct imap_parser *p, void **buf, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *nb;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 256;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2 / elem)
			return fail(p, IMAP_ERR_NOMEM, "out of memory");
		ncap *= 2;
	}
	if ((nb = realloc(*buf, ncap * elem)) == NULL)
		return fail(p, IMAP_ERR_NOMEM, "out of memory");
	*buf = nb;
	*cap = ncap;
	return 0;
}

/* Reserve len bytes plus a NUL in the arena; returns the offset or -1. */
static int
arena_reserve(struct imap_parser *p, size_t len, size_t *off)
{
	void *b = p->arena;

	if (len > SIZE_MAX - p->arena_len - 1)
		return fail(p, IMAP_ERR_NOMEM, "out of memory");
	if (grow(p, &b, &p->arena_cap, p->arena_len + len + 1, 1) < 0)
		return -1;
	p->arena = b;
	*off = p->arena_len;
	p->arena[p->arena_len + len] = '\0';
	p->arena_len += len + 1;
	return 0;
}

static int
arena_put(struct imap_parser *p, const char *s, size_t len, size_t *off)
{
	if (arena_reserve(p, len, off) < 0)
		return -1;
	if (len)
		memcpy(p->arena + *off, s, len);
	return 0;
}

/* A new node; root nodes are not tokens and not children. */
static int
new_node(struct imap_parser *p, int type, uint32_t *idx)
{
	void *b = p->nodes;
	struct imap_node *n;

	if (grow(p, &b, &p->nodes_cap, p->nnodes + 1, sizeof *p->nodes) < 0)
		return -1;
	p->nodes = b;
	n = &p->nodes[p->nnodes];
	memset(n, 0, sizeof *n);
	n->type = (uint8_t)type;
	*idx = (uint32_t)p->nnodes++;
	return 0;
}

/* A new child of the innermost open list. */
static int
add_child(struct imap_parser *p, int type, uint32_t *idx)
{
	struct open_list *top = &p->stack[p->depth];

	if (p->ntokens >= p->lim.max_tokens)
		return fail(p, IMAP_ERR_TOKENS,
		    "response has more than %zu tokens", p->lim.max_tokens);
	if (new_node(p, type, idx) < 0)
		return -1;
	p->ntokens++;
	p->nodes[top->node].nchild++;
	top->last = *idx;
	return 0;
}

static void
close_list(struct imap_parser *p)
{
	struct open_list *top = &p->stack[p->depth];

	if (top->last != NONE)
		p->nodes[top->last].flags |= NF_LAST;
	p->nodes[top->node].span = (uint32_t)(p->nnodes - top->node - 1);
}

/* ---- character classes -------------------------------------------------- */

static int
is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* ATOM-CHAR plus ']' (ASTRING-CHAR), 7-bit: tags and keywords. */
static int
is_astring_char(unsigned char c)
{
	if (is_ctl(c) || c >= 0x80)
		return 0;
	return strchr(" (){%*\"\\", c) == NULL;
}

static int
all_astring_chars(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!is_astring_char((unsigned char)s[i]))
			return 0;
	return n > 0;
}

/* ---- tokens --------------------------------------------------------------- */

struct seg {
	const char *s;
	size_t n;
	size_t pos;
	int code_mode;		/* reading [CODE args]: no literals, no errors */
	int nobracket;		/* no ']' left in the segment */
};

static int
tok_quoted(struct imap_parser *p, struct seg *g)
{
	const char *s = g->s;
	size_t start = g->pos + 1, j, k, len = 0, off;
	uint32_t idx;
	char *d;

	for (j = start; j < g->n && s[j] != '"'; j++) {
		if (s[j] == '\\') {
			if (j + 1 >= g->n || (s[j + 1] != '\\' && s[j + 1] != '"'))
				return fail(p, IMAP_ERR_SYNTAX,
				    "bad escape in quoted string at byte %zu of line",
				    j);
			j++;
		}
		len++;
	}
	if (j >= g->n)
		return fail(p, IMAP_ERR_SYNTAX,
		    "unterminated quoted string at byte %zu of line", g->pos);
	if (add_child(p, IMAP_NODE_QUOTED, &idx) < 0 ||
	    arena_reserve(p, len, &off) < 0)
		return -1;
	d = p->arena + off;
	for (k = start; k < j; k++) {
		if (s[k] == '\\')
			k++;
		*d++ = s[k];
	}
	p->nodes[idx].u.off = off;
	p->nodes[idx].len = (uint32_t)len;
	g->pos = j + 1;
	return 0;
}

static int
tok_atom(struct imap_parser *p, struct seg *g)
{
	const char *s = g->s, *close;
	size_t start = g->pos, pos = g->pos, off;
	unsigned char c;
	uint32_t idx, prev;

	while (pos < g->n) {
		c = (unsigned char)s[pos];
		if (c == '[' && !g->nobracket) {
			/* a section: BODY[HEADER.FIELDS (FROM TO)] is one atom */
			close = memchr(s + pos + 1, ']', g->n - pos - 1);
			if (close) {
				pos = (size_t)(close - s) + 1;
				continue;
			}
			g->nobracket = 1;	/* keeps this linear */
		}
		if (c == ' ' || c == '(' || c == ')' || c == '"' || c == '{')
			break;
		if (is_ctl(c))
			return fail(p, IMAP_ERR_SYNTAX,
			    "control character 0x%02x at byte %zu of line",
			    c, pos);
		pos++;
	}
	if (pos == start)
		return fail(p, IMAP_ERR_SYNTAX,
		    "unexpected '%c' at byte %zu of line", s[pos], pos);
	g->pos = pos;
	if (pos - start == 3 && strncasecmp(s + start, "NIL", 3) == 0)
		return add_child(p, IMAP_NODE_NIL, &idx);
	prev = p->stack[p->depth].last;
	if (add_child(p, IMAP_NODE_ATOM, &idx) < 0 ||
	    arena_put(p, s + start, pos - start, &off) < 0)
		return -1;
	p->nodes[idx].u.off = off;
	p->nodes[idx].len = (uint32_t)(pos - start);
	/* remember the UID of a FETCH for later literals: a value (odd
	 * position) in the item list, after the name UID */
	if (p->r.kw == IMAP_KW_FETCH && p->depth == 1 && prev != NONE &&
	    p->nodes[p->stack[1].node].nchild % 2 == 0 &&
	    p->nodes[prev].type == IMAP_NODE_ATOM && p->nodes[prev].len == 3 &&
	    strncasecmp(p->arena + p->nodes[prev].u.off, "UID", 3) == 0 &&
	    imap_parse_u32(s + start, pos - start, &p->uid) == 0)
		p->has_uid = 1;
	return 0;
}

/* The literal of size bytes that follows this segment: ask literal_begin
 * whether to stream it or keep it, and set up ST_LITERAL. */
static int
begin_literal(struct imap_parser *p, uint64_t size, int lit8, int nonsync)
{
	struct imap_literal_info li;
	struct open_list *top = &p->stack[p->depth];
	struct imap_node *n;
	uint32_t idx;
	int mode = IMAP_LIT_INLINE;

	memset(&li, 0, sizeof li);
	li.size = size;
	li.literal8 = lit8;
	li.nonsync = nonsync;
	li.item = "";
	if (top->last != NONE && p->nodes[top->last].type == IMAP_NODE_ATOM) {
		li.item = p->arena + p->nodes[top->last].u.off;
		li.item_len = p->nodes[top->last].len;
	}
	li.has_number = p->r.has_number;
	li.number = p->r.number;
	li.keyword = p->arena + p->kw_off;
	li.kw = p->r.kw;
	li.depth = p->depth;
	li.has_uid = p->has_uid;
	li.uid = p->uid;
	if (add_child(p, IMAP_NODE_STREAMED, &idx) < 0)
		return -1;
	if (p->cb.literal_begin) {
		mode = p->cb.literal_begin(p->cb.ud, &li);
		if (mode < 0)
			return fail(p, IMAP_ERR_ABORTED,
			    "aborted by literal_begin");
	}
	n = &p->nodes[idx];
	if (lit8)
		n->flags |= NF_LIT8;
	p->lit_size = p->lit_left = size;
	p->lit_stream = mode != IMAP_LIT_INLINE;
	if (p->lit_stream) {
		n->u.size = size;
	} else {
		if (size > p->lim.max_inline)
			return fail(p, IMAP_ERR_INLINE,
			    "inline literal of %llu bytes exceeds limit %zu",
			    (unsigned long long)size, p->lim.max_inline);
		if (p->resp_bytes + size > p->lim.max_response)
			return fail(p, IMAP_ERR_TOO_LONG,
			    "response exceeds %zu bytes", p->lim.max_response);
		if (arena_reserve(p, (size_t)size, &p->lit_off) < 0)
			return -1;
		n = &p->nodes[idx];
		n->type = IMAP_NODE_LITERAL;
		n->u.off = p->lit_off;
		n->len = (uint32_t)size;
		p->resp_bytes += size;
	}
	if (size == 0 && p->lit_stream && p->cb.literal_end &&
	    p->cb.literal_end(p->cb.ud) < 0)
		return fail(p, IMAP_ERR_ABORTED, "aborted by literal_end");
	p->state = size ? ST_LITERAL : ST_LINE;
	return SEG_LITERAL;
}

/* {n}, {n+} or ~{n} at g->pos; it must end the line. */
static int
tok_literal(struct imap_parser *p, struct seg *g)
{
	const char *s = g->s;
	size_t pos = g->pos, d0;
	uint64_t size = 0;
	int lit8 = 0, nonsync = 0, over = 0;
	unsigned dig;

	if (s[pos] == '~') {
		lit8 = 1;
		pos++;
	}
	pos++;			/* '{' */
	d0 = pos;
	while (pos < g->n && s[pos] >= '0' && s[pos] <= '9') {
		dig = (unsigned)(s[pos] - '0');
		if (size > (UINT64_MAX - dig) / 10)
			over = 1;
		else
			size = size * 10 + dig;
		pos++;
	}
	if (pos == d0)
		return fail(p, IMAP_ERR_SYNTAX,
		    "bad literal size at byte %zu of line", d0);
	if (pos < g->n && s[pos] == '+') {
		nonsync = 1;
		pos++;
	}
	if (pos >= g->n || s[pos] != '}')
		return fail(p, IMAP_ERR_SYNTAX,
		    "bad literal at byte %zu of line", g->pos);
	if (++pos != g->n)
		return fail(p, IMAP_ERR_SYNTAX,
		    "literal must end the line (byte %zu of line)", pos);
	if (g->code_mode)
		return fail(p, IMAP_ERR_SYNTAX, "literal in response code");
	if (over || size > p->lim.max_literal) {
		size_t nd = pos - d0 - 1 - (size_t)nonsync;
		return fail(p, IMAP_ERR_LITERAL,
		    "literal size %.*s%s exceeds limit %llu",
		    (int)(nd > 40 ? 40 : nd), s + d0, nd > 40 ? "..." : "",
		    (unsigned long long)p->lim.max_literal);
	}
	g->pos = pos;
	return begin_literal(p, size, lit8, nonsync);
}

/*
 * Read tokens from g->pos to the end of the segment into the open lists.
 * after_token: the previous token ended right before g->pos, so the next
 * one needs a space first. Returns SEG_DONE, SEG_LITERAL or an error.
 */
static int
tokens(struct imap_parser *p, struct seg *g, int after_token)
{
	const char *s = g->s;
	uint32_t idx;
	int rc, after_close = 0;
	char c;

	for (;;) {
		if (g->pos >= g->n) {
			if (p->depth > 0)
				return fail(p, IMAP_ERR_SYNTAX,
				    "line ends inside %u open list(s)", p->depth);
			close_list(p);
			return SEG_DONE;
		}
		c = s[g->pos];
		if (c == ' ') {
			g->pos++;
			after_token = after_close = 0;
			continue;
		}
		if (c == ')') {
			if (p->depth == 0)
				return fail(p, IMAP_ERR_SYNTAX,
				    "unexpected ')' at byte %zu of line", g->pos);
			close_list(p);
			p->depth--;
			g->pos++;
			after_token = after_close = 1;
			continue;
		}
		/* lists of addresses and body parts come without spaces:
		 * ((a)(b)) (RFC 3501 env-to, body-type-mpart) */
		if (after_token && !(c == '(' && after_close))
			return fail(p, IMAP_ERR_SYNTAX,
			    "expected space before '%c' at byte %zu of line",
			    c, g->pos);
		if (c == '(') {
			if (p->depth >= p->lim.max_depth)
				return fail(p, IMAP_ERR_TOO_DEEP,
				    "lists nested deeper than %u",
				    p->lim.max_depth);
			if (add_child(p, IMAP_NODE_LIST, &idx) < 0)
				return -1;
			p->depth++;
			p->stack[p->depth].node = idx;
			p->stack[p->depth].last = NONE;
			g->pos++;
			after_token = after_close = 0;
			continue;
		}
		if (c == '"')
			rc = tok_quoted(p, g);
		else if (c == '{' ||
		    (c == '~' && g->pos + 1 < g->n && s[g->pos + 1] == '{'))
			return tok_literal(p, g);
		else
			rc = tok_atom(p, g);
		if (rc < 0)
			return rc;
		after_token = 1;
		after_close = 0;
	}
}

/* Open a root list (data tokens or code arguments) as stack[0]. */
static int
open_root(struct imap_parser *p, uint32_t *idx)
{
	if (new_node(p, IMAP_NODE_LIST, idx) < 0)
		return -1;
	p->nodes[*idx].flags |= NF_LAST;
	p->depth = 0;
	p->stack[0].node = *idx;
	p->stack[0].last = NONE;
	return 0;
}

/* ---- response header ---------------------------------------------------- */

static const char *const status_names[] = {
	"", "OK", "NO", "BAD", "PREAUTH", "BYE"
};

const char *
imap_status_name(enum imap_status s)
{
	if ((unsigned)s >= sizeof status_names / sizeof status_names[0])
		return "";
	return status_names[s];
}

static enum imap_status
status_lookup(const char *s, size_t n)
{
	size_t i;

	for (i = 1; i < sizeof status_names / sizeof status_names[0]; i++)
		if (strlen(status_names[i]) == n &&
		    strncasecmp(status_names[i], s, n) == 0)
			return (enum imap_status)i;
	return IMAP_STATUS_NONE;
}

/* The word at g->pos up to a space or the end. */
static size_t
word(struct seg *g, const char **w)
{
	const char *sp;
	size_t len;

	*w = g->s + g->pos;
	sp = memchr(*w, ' ', g->n - g->pos);
	len = sp ? (size_t)(sp - *w) : g->n - g->pos;
	g->pos += len;
	return len;
}

/*
 * resp-text after a status word or '+': [SP] ["[" code [SP args] "]" [SP]]
 * text. Code arguments are read as tokens when they can be; free text in
 * them is fine (kept raw), only running out of memory is an error.
 */
static int
resp_text(struct imap_parser *p, struct seg *g)
{
	const char *s = g->s, *close, *name, *sp;
	size_t nlen, rawpos = 0, rawlen = 0, save_nodes, save_arena;
	struct seg cg;
	uint32_t root;
	int rc;

	if (g->pos < g->n && s[g->pos] == ' ')
		g->pos++;
	if (g->pos < g->n && s[g->pos] == '[' &&
	    (close = memchr(s + g->pos, ']', g->n - g->pos)) != NULL) {
		name = s + g->pos + 1;
		nlen = (size_t)(close - name);
		if ((sp = memchr(name, ' ', nlen)) != NULL) {
			rawpos = (size_t)(sp + 1 - s);
			rawlen = (size_t)(close - sp - 1);
			nlen = (size_t)(sp - name);
		}
		if (nlen > 0) {
			if (arena_put(p, name, nlen, &p->name_off) < 0 ||
			    arena_put(p, s + rawpos, rawlen, &p->raw_off) < 0)
				return -1;
			p->r.code.id = imap_code_lookup(name, nlen);
			p->r.code.raw_len = rawlen;
			g->pos = (size_t)(close - s) + 1;
			if (g->pos < g->n && s[g->pos] == ' ')
				g->pos++;
		}
		if (nlen > 0 && rawlen > 0) {
			save_nodes = p->nnodes;
			save_arena = p->arena_len;
			if (open_root(p, &root) < 0)
				return -1;
			memset(&cg, 0, sizeof cg);
			cg.s = s + rawpos;
			cg.n = rawlen;
			cg.code_mode = 1;
			rc = tokens(p, &cg, 0);
			if (rc == SEG_DONE) {
				p->code_root = root;
			} else if (p->err == IMAP_ERR_NOMEM) {
				return -1;
			} else {
				p->err = 0;
				p->errmsg[0] = '\0';
				p->nnodes = save_nodes;
				p->arena_len = save_arena;
				p->depth = 0;
			}
			p->ntokens = 0;
		}
	}
	if (arena_put(p, s + g->pos, g->n - g->pos, &p->text_off) < 0)
		return -1;
	p->r.text_len = g->n - g->pos;
	return SEG_DONE;
}

/* First segment of a response: who sent what. */
static int
header(struct imap_parser *p, struct seg *g)
{
	const char *s = g->s, *w;
	size_t wl;
	uint32_t root;

	p->started = 1;
	if (g->n == 0)
		return fail(p, IMAP_ERR_SYNTAX, "empty line");
	if (s[0] == '+') {
		p->r.kind = IMAP_RESP_CONTINUE;
		g->pos = 1;
		return resp_text(p, g);
	}
	if (s[0] == '*') {
		if (g->n < 2 || s[1] != ' ')
			return fail(p, IMAP_ERR_SYNTAX,
			    "expected space after '*'");
		g->pos = 2;
		wl = word(g, &w);
		if (wl > 0 && w[0] >= '0' && w[0] <= '9') {
			if (imap_parse_u32(w, wl, &p->r.number) < 0)
				return fail(p, IMAP_ERR_SYNTAX,
				    "bad message number at byte 2 of line");
			p->r.has_number = 1;
			if (g->pos < g->n)
				g->pos++;
			wl = word(g, &w);
		}
		if (wl == 0)
			return fail(p, IMAP_ERR_SYNTAX,
			    "missing keyword at byte %zu of line", g->pos);
		if (!p->r.has_number &&
		    (p->r.status = status_lookup(w, wl)) != IMAP_STATUS_NONE) {
			p->r.kind = IMAP_RESP_STATUS;
			return resp_text(p, g);
		}
		if (!all_astring_chars(w, wl))
			return fail(p, IMAP_ERR_SYNTAX,
			    "bad keyword at byte %zu of line",
			    (size_t)(w - s));
		p->r.kind = IMAP_RESP_DATA;
		p->r.kw = imap_kw_lookup(w, wl);
		if (arena_put(p, w, wl, &p->kw_off) < 0 ||
		    open_root(p, &root) < 0)
			return -1;
		p->data_root = root;
		if (g->pos < g->n)
			g->pos++;	/* the space after the keyword */
		return tokens(p, g, 0);
	}
	wl = word(g, &w);
	if (!all_astring_chars(w, wl) || memchr(w, '+', wl))
		return fail(p, IMAP_ERR_SYNTAX, "bad tag at byte 0 of line");
	if (arena_put(p, w, wl, &p->tag_off) < 0)
		return -1;
	if (g->pos < g->n)
		g->pos++;
	wl = word(g, &w);
	p->r.status = status_lookup(w, wl);
	if (p->r.status < IMAP_STATUS_OK || p->r.status > IMAP_STATUS_BAD)
		return fail(p, IMAP_ERR_SYNTAX,
		    "expected OK, NO or BAD at byte %zu of line",
		    (size_t)(w - s));
	p->r.kind = IMAP_RESP_TAGGED;
	return resp_text(p, g);
}

static int
segment(struct imap_parser *p, const char *s, size_t n)
{
	struct seg g;
	const char *bad;

	/* NUL and bare CR never belong outside a literal */
	if ((bad = memchr(s, '\0', n)) != NULL)
		return fail(p, IMAP_ERR_SYNTAX, "NUL at byte %zu of line",
		    (size_t)(bad - s));
	if ((bad = memchr(s, '\r', n)) != NULL)
		return fail(p, IMAP_ERR_SYNTAX, "bare CR at byte %zu of line",
		    (size_t)(bad - s));
	memset(&g, 0, sizeof g);
	g.s = s;
	g.n = n;
	if (!p->started)
		return header(p, &g);
	return tokens(p, &g, 1);	/* right after a literal */
}

/* ---- delivery ------------------------------------------------------------- */

static int
deliver(struct imap_parser *p)
{
	struct imap_response *r = &p->r;
	struct imap_node *n;
	size_t i;
	int rc = 0;

	for (i = 0; i < p->nnodes; i++) {
		n = &p->nodes[i];
		if (n->type == IMAP_NODE_ATOM || n->type == IMAP_NODE_QUOTED ||
		    n->type == IMAP_NODE_LITERAL)
			n->u.ptr = p->arena + n->u.off;
	}
	if (p->tag_off != SIZE_MAX)
		r->tag = p->arena + p->tag_off;
	if (p->kw_off != SIZE_MAX)
		r->keyword = p->arena + p->kw_off;
	r->text = p->text_off != SIZE_MAX ? p->arena + p->text_off : "";
	if (p->name_off != SIZE_MAX) {
		r->code.name = p->arena + p->name_off;
		r->code.raw = p->arena + p->raw_off;
	} else {
		r->code.raw = "";
	}
	if (p->code_root != NONE)
		r->code.args = &p->nodes[p->code_root];
	if (p->data_root != NONE)
		r->data = &p->nodes[p->data_root];
	r->wire_bytes = p->wire_bytes;
	if (p->cb.on_response)
		rc = p->cb.on_response(p->cb.ud, r);
	clear_response(p);
	if (rc < 0)
		return fail(p, IMAP_ERR_ABORTED, "aborted by on_response");
	return rc == IMAP_PAUSE ? IMAP_PAUSE : 0;
}

/* ---- feeding -------------------------------------------------------------- */

static int
failed(struct imap_parser *p, int rc)
{
	if (p->err)		/* helpers return -1, the code is in p->err */
		rc = p->err;
	else
		p->err = rc;
	p->state = ST_ERROR;
	if (p->cb.on_error)
		p->cb.on_error(p->cb.ud, rc, p->errmsg);
	return rc;
}

/* Bytes of the current literal: to the callbacks or into the arena. */
static int
literal_bytes(struct imap_parser *p, const char *s, size_t n)
{
	if (p->lit_stream) {
		if (p->cb.literal_data && p->cb.literal_data(p->cb.ud, s, n) < 0)
			return fail(p, IMAP_ERR_ABORTED,
			    "aborted by literal_data");
	} else {
		memcpy(p->arena + p->lit_off + (p->lit_size - p->lit_left),
		    s, n);
	}
	p->lit_left -= n;
	p->wire_bytes += n;
	if (p->lit_left == 0) {
		p->state = ST_LINE;
		if (p->lit_stream && p->cb.literal_end &&
		    p->cb.literal_end(p->cb.ud) < 0)
			return fail(p, IMAP_ERR_ABORTED,
			    "aborted by literal_end");
	}
	return 0;
}

int
imap_parser_feed(struct imap_parser *p, const void *data, size_t len)
{
	const char *s = data, *lf, *seg;
	size_t i = 0, take, segn;
	void *b;
	int rc;

	p->consumed = 0;
	if (p->state == ST_ERROR)
		return p->err;
	while (i < len) {
		if (p->state == ST_LITERAL) {
			take = len - i;
			if (take > p->lit_left)
				take = (size_t)p->lit_left;
			rc = literal_bytes(p, s + i, take);
			i += take;
			if (rc < 0)
				goto err;
			continue;
		}
		lf = memchr(s + i, '\n', len - i);
		take = lf ? (size_t)(lf - (s + i)) + 1 : len - i;
		if (p->resp_bytes + p->line_len + take > p->lim.max_response) {
			rc = fail(p, IMAP_ERR_TOO_LONG,
			    "response exceeds %zu bytes", p->lim.max_response);
			goto err;
		}
		p->wire_bytes += take;
		if (lf == NULL || p->line_len > 0) {
			b = p->line;
			if ((rc = grow(p, &b, &p->line_cap, p->line_len + take,
			    1)) < 0)
				goto err;
			p->line = b;
			memcpy(p->line + p->line_len, s + i, take);
			p->line_len += take;
			i += take;
			if (lf == NULL)
				break;
			seg = p->line;
			segn = p->line_len;
		} else {
			seg = s + i;	/* whole line at hand: no copy */
			segn = take;
			i += take;
		}
		p->resp_bytes += segn;
		p->line_len = 0;
		segn--;			/* LF; a bare LF is tolerated */
		if (segn > 0 && seg[segn - 1] == '\r')
			segn--;
		rc = segment(p, seg, segn);
		if (rc < 0)
			goto err;
		if (rc == SEG_DONE) {
			rc = deliver(p);
			if (rc < 0)
				goto err;
			if (rc == IMAP_PAUSE) {
				p->consumed = i;
				return IMAP_PAUSE;
			}
		}
	}
	p->consumed = len;
	return IMAP_OK;
err:
	p->consumed = i;
	return failed(p, rc);
}

/* ---- accessors ------------------------------------------------------------ */

enum imap_node_type
imap_node_type(const struct imap_node *n)
{
	return (enum imap_node_type)n->type;
}

const char *
imap_node_bytes(const struct imap_node *n, size_t *len)
{
	if (n == NULL || (n->type != IMAP_NODE_ATOM &&
	    n->type != IMAP_NODE_QUOTED && n->type != IMAP_NODE_LITERAL)) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = n->len;
	return n->u.ptr;
}

uint64_t
imap_node_size(const struct imap_node *n)
{
	return n->type == IMAP_NODE_STREAMED ? n->u.size : n->len;
}

int
imap_node_is_literal8(const struct imap_node *n)
{
	return (n->flags & NF_LIT8) != 0;
}

int
imap_node_atom_is(const struct imap_node *n, const char *name)
{
	return n != NULL && n->type == IMAP_NODE_ATOM &&
	    strlen(name) == n->len && strncasecmp(n->u.ptr, name, n->len) == 0;
}

int
imap_node_u32(const struct imap_node *n, uint32_t *out)
{
	if (n == NULL || n->type != IMAP_NODE_ATOM)
		return -1;
	return imap_parse_u32(n->u.ptr, n->len, out);
}

int
imap_node_u64(const struct imap_node *n, uint64_t *out)
{
	if (n == NULL || n->type != IMAP_NODE_ATOM)
		return -1;
	return imap_parse_u64(n->u.ptr, n->len, out);
}

const struct imap_node *
imap_node_child(const struct imap_node *list)
{
	if (list == NULL || list->type != IMAP_NODE_LIST || list->nchild == 0)
		return NULL;
	return list + 1;
}

const struct imap_node *
imap_node_next(const struct imap_node *n)
{
	if (n == NULL || (n->flags & NF_LAST))
		return NULL;
	return n + 1 + n->span;
}

size_t
imap_node_count(const struct imap_node *list)
{
	return list != NULL && list->type == IMAP_NODE_LIST ? list->nchild : 0;
}

const struct imap_node *
imap_node_after(const struct imap_node *list, const char *name)
{
	const struct imap_node *n;

	for (n = imap_node_child(list); n != NULL; n = imap_node_next(n))
		if (imap_node_atom_is(n, name))
			return imap_node_next(n);
	return NULL;
}

const struct imap_node *
imap_fetch_item(const struct imap_response *r, const char *name)
{
	const struct imap_node *n, *v;

	if (r->kind != IMAP_RESP_DATA || r->kw != IMAP_KW_FETCH)
		return NULL;
	for (n = imap_node_child(imap_node_child(r->data)); n != NULL;
	    n = imap_node_next(v)) {
		if ((v = imap_node_next(n)) == NULL)
			return NULL;
		if (imap_node_atom_is(n, name))
			return v;
	}
	return NULL;
}

int
imap_parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	unsigned d;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int
imap_parse_u32(const char *s, size_t len, uint32_t *out)
{
	uint64_t v;

	if (imap_parse_u64(s, len, &v) < 0 || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

/* ---- names ---------------------------------------------------------------- */

static const char *const code_names[] = {
	[IMAP_CODE_ALERT] = "ALERT",
	[IMAP_CODE_ALREADYEXISTS] = "ALREADYEXISTS",
	[IMAP_CODE_APPENDUID] = "APPENDUID",
	[IMAP_CODE_AUTHENTICATIONFAILED] = "AUTHENTICATIONFAILED",
	[IMAP_CODE_AUTHORIZATIONFAILED] = "AUTHORIZATIONFAILED",
	[IMAP_CODE_BADCHARSET] = "BADCHARSET",
	[IMAP_CODE_CANNOT] = "CANNOT",
	[IMAP_CODE_CAPABILITY] = "CAPABILITY",
	[IMAP_CODE_CLIENTBUG] = "CLIENTBUG",
	[IMAP_CODE_CLOSED] = "CLOSED",
	[IMAP_CODE_COMPRESSIONACTIVE] = "COMPRESSIONACTIVE",
	[IMAP_CODE_CONTACTADMIN] = "CONTACTADMIN",
	[IMAP_CODE_COPYUID] = "COPYUID",
	[IMAP_CODE_CORRUPTION] = "CORRUPTION",
	[IMAP_CODE_EXPIRED] = "EXPIRED",
	[IMAP_CODE_EXPUNGEISSUED] = "EXPUNGEISSUED",
	[IMAP_CODE_HASCHILDREN] = "HASCHILDREN",
	[IMAP_CODE_HIGHESTMODSEQ] = "HIGHESTMODSEQ",
	[IMAP_CODE_INUSE] = "INUSE",
	[IMAP_CODE_LIMIT] = "LIMIT",
	[IMAP_CODE_MODIFIED] = "MODIFIED",
	[IMAP_CODE_NOMODSEQ] = "NOMODSEQ",
	[IMAP_CODE_NONEXISTENT] = "NONEXISTENT",
	[IMAP_CODE_NOPERM] = "NOPERM",
	[IMAP_CODE_NOTSAVED] = "NOTSAVED",
	[IMAP_CODE_OVERQUOTA] = "OVERQUOTA",
	[IMAP_CODE_PARSE] = "PARSE",
	[IMAP_CODE_PERMANENTFLAGS] = "PERMANENTFLAGS",
	[IMAP_CODE_PRIVACYREQUIRED] = "PRIVACYREQUIRED",
	[IMAP_CODE_READ_ONLY] = "READ-ONLY",
	[IMAP_CODE_READ_WRITE] = "READ-WRITE",
	[IMAP_CODE_SERVERBUG] = "SERVERBUG",
	[IMAP_CODE_THROTTLED] = "THROTTLED",
	[IMAP_CODE_TRYCREATE] = "TRYCREATE",
	[IMAP_CODE_UIDNEXT] = "UIDNEXT",
	[IMAP_CODE_UIDNOTSTICKY] = "UIDNOTSTICKY",
	[IMAP_CODE_UIDVALIDITY] = "UIDVALIDITY",
	[IMAP_CODE_UNAVAILABLE] = "UNAVAILABLE",
	[IMAP_CODE_UNKNOWN_CTE] = "UNKNOWN-CTE",
	[IMAP_CODE_UNSEEN] = "UNSEEN",
	[IMAP_CODE_WEBALERT] = "WEBALERT",
};
#define NCODES (sizeof code_names / sizeof code_names[0])

static int
name_eq(const char *name, const char *s, size_t len)
{
	return strlen(name) == len && strncasecmp(name, s, len) == 0;
}

enum imap_code_id
imap_code_lookup(const char *name, size_t len)
{
	size_t i;

	for (i = IMAP_CODE_ALERT; i < NCODES; i++)
		if (name_eq(code_names[i], name, len))
			return (enum imap_code_id)i;
	return IMAP_CODE_OTHER;
}

const char *
imap_code_name(enum imap_code_id id)
{
	if ((unsigned)id >= NCODES || code_names[id] == NULL)
		return NULL;
	return code_names[id];
}

int
imap_code_u64(const struct imap_code *c, uint64_t *out)
{
	return imap_node_u64(imap_node_child(c->args), out);
}

static const char *const kw_names[] = {
	[IMAP_KW_EXISTS] = "EXISTS", [IMAP_KW_RECENT] = "RECENT",
	[IMAP_KW_EXPUNGE] = "EXPUNGE", [IMAP_KW_FETCH] = "FETCH",
	[IMAP_KW_CAPABILITY] = "CAPABILITY", [IMAP_KW_LIST] = "LIST",
	[IMAP_KW_LSUB] = "LSUB", [IMAP_KW_STATUS] = "STATUS",
	[IMAP_KW_SEARCH] = "SEARCH", [IMAP_KW_ESEARCH] = "ESEARCH",
	[IMAP_KW_FLAGS] = "FLAGS", [IMAP_KW_ENABLED] = "ENABLED",
	[IMAP_KW_ID] = "ID", [IMAP_KW_NAMESPACE] = "NAMESPACE",
	[IMAP_KW_VANISHED] = "VANISHED", [IMAP_KW_QUOTA] = "QUOTA",
	[IMAP_KW_QUOTAROOT] = "QUOTAROOT", [IMAP_KW_METADATA] = "METADATA",
	[IMAP_KW_SORT] = "SORT", [IMAP_KW_THREAD] = "THREAD",
};

enum imap_kw
imap_kw_lookup(const char *name, size_t len)
{
	size_t i;

	for (i = 1; i < sizeof kw_names / sizeof kw_names[0]; i++)
		if (name_eq(kw_names[i], name, len))
			return (enum imap_kw)i;
	return IMAP_KW_OTHER;
}

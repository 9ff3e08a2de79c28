/*
 * The server's command framer and parser (imapd_parse.h). Nothing here
 * trusts the client: every length is checked before it is used, a command
 * past a limit is skipped to its end (its literals included, so the next
 * command starts where the client thinks it does), and memory never grows
 * past IMAPD_COMMAND_MAX per connection.
 */
#include "serve/imapd_parse.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TAIL 24			/* enough for " {4294967295+}\r\n" */

struct imapd_framer {
	char *buf;
	size_t len, cap;
	size_t line_len;	/* bytes of the current line, past the cap included */
	uint64_t lit_left;	/* literal bytes still to come */
	int lines;		/* lines of this command so far */
	int bad;		/* the command is refused: bytes are skipped */
	int finished;		/* the last feed ended a command: start afresh */
	char err[96];
	char tag[IMAPD_TAG_MAX + 1];
	char tail[TAIL];	/* the last bytes of the line */
	size_t tail_len;
};

struct imapd_framer *
imapd_framer_new(void)
{
	return calloc(1, sizeof(struct imapd_framer));
}

void
imapd_framer_free(struct imapd_framer *f)
{
	if (f == NULL)
		return;
	free(f->buf);
	free(f);
}

static void
reset(struct imapd_framer *f)
{
	f->len = 0;
	f->line_len = 0;
	f->lit_left = 0;
	f->lines = 0;
	f->bad = 0;
	f->finished = 0;
	f->err[0] = '\0';
	f->tag[0] = '\0';
	f->tail_len = 0;
	/* A big command's buffer is not kept for the next small one. */
	if (f->cap > 8192) {
		free(f->buf);
		f->buf = NULL;
		f->cap = 0;
	}
}

static void
refuse(struct imapd_framer *f, const char *why)
{
	if (!f->bad)
		snprintf(f->err, sizeof(f->err), "%s", why);
	f->bad = 1;
}

static int
append(struct imapd_framer *f, const char *s, size_t n)
{
	if (f->bad)
		return 0;
	if (f->len + n > IMAPD_COMMAND_MAX) {
		refuse(f, "command too long");
		return -1;
	}
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 256;
		char *b;
		while (cap < f->len + n)
			cap *= 2;
		if (cap > IMAPD_COMMAND_MAX)
			cap = IMAPD_COMMAND_MAX;
		if ((b = realloc(f->buf, cap)) == NULL) {
			refuse(f, "out of memory");
			return -1;
		}
		f->buf = b;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, s, n);
	f->len += n;
	return 0;
}

static int
tag_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("(){%*\"\\+]", c);
}

/* The tag of the first line, from its first bytes (kept even when the
 * line itself is not). */
static void
note_tag(struct imapd_framer *f, const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && i < IMAPD_TAG_MAX && tag_char((unsigned char)s[i]))
		i++;
	if (i == 0 || (i < n && s[i] != ' ')) {
		strcpy(f->tag, "*");
		return;
	}
	memcpy(f->tag, s, i);
	f->tag[i] = '\0';
}

/* Whether the line (its last bytes in the tail, CRLF included) ends with
 * a literal's announcement: 1 with *N and *SYNC, else 0. */
static int
literal_at_end(const struct imapd_framer *f, uint64_t *n, int *sync)
{
	size_t e = f->tail_len;
	uint64_t v = 0, mul = 1;
	size_t digits = 0;

	if (e && f->tail[e - 1] == '\n')
		e--;
	if (e && f->tail[e - 1] == '\r')
		e--;
	if (e == 0 || f->tail[e - 1] != '}')
		return 0;
	e--;
	*sync = 1;
	if (e && f->tail[e - 1] == '+') {
		*sync = 0;
		e--;
	}
	while (e && isdigit((unsigned char)f->tail[e - 1])) {
		if (digits >= 10)
			return 0;
		v += (uint64_t)(f->tail[e - 1] - '0') * mul;
		mul *= 10;
		digits++;
		e--;
	}
	if (digits == 0 || e == 0 || f->tail[e - 1] != '{')
		return 0;
	*n = v;
	return 1;
}

enum imapd_status
imapd_framer_feed(struct imapd_framer *f, const char *data, size_t len, size_t *used)
{
	size_t i = 0;

	if (f->finished)
		reset(f);
	while (i < len) {
		if (f->lit_left) {
			size_t n = len - i;
			if (n > f->lit_left)
				n = (size_t)f->lit_left;
			append(f, data + i, n);
			f->lit_left -= n;
			i += n;
			continue;
		}
		/* The rest of the line, up to and with its LF. */
		const char *lf = memchr(data + i, '\n', len - i);
		size_t n = lf ? (size_t)(lf - (data + i)) + 1 : len - i;
		const char *s = data + i;
		if (f->lines == 0 && f->line_len == 0)
			note_tag(f, s, n);
		if (f->line_len + n > IMAPD_LINE_MAX + 2)
			refuse(f, "line too long");
		append(f, s, n);
		f->line_len += n;
		if (n >= TAIL) {
			memcpy(f->tail, s + n - TAIL, TAIL);
			f->tail_len = TAIL;
		} else {
			size_t keep = f->tail_len + n > TAIL ? TAIL - n : f->tail_len;
			memmove(f->tail, f->tail + f->tail_len - keep, keep);
			memcpy(f->tail + keep, s, n);
			f->tail_len = keep + n;
		}
		i += n;
		if (!lf)
			break;
		/* A whole line. */
		uint64_t lit;
		int sync;
		f->lines++;
		f->line_len = 0;
		if (literal_at_end(f, &lit, &sync)) {
			f->tail_len = 0;
			if (lit > IMAPD_LITERAL_MAX || f->len + lit > IMAPD_COMMAND_MAX)
				refuse(f, "literal too big");
			if (sync && f->bad) {
				/* The client waits for a "+" that never comes:
				 * the literal is not sent, the command ends here. */
				f->finished = 1;
				*used = i;
				return IMAPD_ERROR;
			}
			f->lit_left = lit;
			if (sync && lit > 0) {
				*used = i;
				return IMAPD_CONTINUE;
			}
			continue;
		}
		f->tail_len = 0;
		if (f->lines == 1 && !f->bad && (f->len == 1 || (f->len == 2 && f->buf[0] == '\r'))) {
			/* An empty line between commands is ignored. */
			f->len = 0;
			f->lines = 0;
			continue;
		}
		f->finished = 1;
		*used = i;
		if (f->bad)
			return IMAPD_ERROR;
		/* Without the final line end. */
		if (f->len && f->buf[f->len - 1] == '\n')
			f->len--;
		if (f->len && f->buf[f->len - 1] == '\r')
			f->len--;
		return IMAPD_COMMAND;
	}
	*used = i;
	return IMAPD_MORE;
}

const char *
imapd_framer_take(struct imapd_framer *f, size_t *len)
{
	*len = f->len;
	return f->buf ? f->buf : "";
}

const char *
imapd_framer_error(const struct imapd_framer *f, const char **tag)
{
	*tag = f->tag[0] ? f->tag : "*";
	return f->err[0] ? f->err : "malformed command";
}

size_t
imapd_framer_held(const struct imapd_framer *f)
{
	return f->cap;
}

/* ---- parsing one command ------------------------------------------------ */

struct lex {
	const char *p, *end;
	struct imapd_cmd *cmd;
	char *arena;		/* token copies, NUL-terminated */
	size_t used, cap;
	char *err;
	size_t errlen;
};

static int
fail(struct lex *x, const char *why)
{
	snprintf(x->err, x->errlen, "%s", why);
	return -1;
}

static int
new_node(struct lex *x, enum imapd_node_type type)
{
	struct imapd_cmd *c = x->cmd;

	if (c->nnodes >= IMAPD_NODES_MAX)
		return fail(x, "too many arguments");
	struct imapd_node *n = &c->nodes[c->nnodes];
	n->type = type;
	n->s = NULL;
	n->len = 0;
	n->child = n->next = -1;
	n->literal = 0;
	return c->nnodes++;
}

static char *
keep(struct lex *x, size_t n)
{
	char *s;

	if (x->used + n + 1 > x->cap)
		return NULL;
	s = x->arena + x->used;
	x->used += n + 1;
	s[n] = '\0';
	return s;
}

static int
atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '"';
}

static int
lex_atom(struct lex *x, int node)
{
	const char *start = x->p;
	char *s;

	while (x->p < x->end && atom_char((unsigned char)*x->p)) {
		if (*x->p == '[') {
			/* A section: anything up to its ']' (BODY[HEADER.FIELDS (A B)]). */
			const char *q = memchr(x->p, ']', (size_t)(x->end - x->p));
			if (q == NULL)
				return fail(x, "unterminated [");
			for (const char *r = x->p; r < q; r++)
				if (*r == '\r' || *r == '\n' || (unsigned char)*r >= 0x7f ||
				    (unsigned char)*r < 0x20)
					return fail(x, "bad character in [...]");
			x->p = q + 1;
			continue;
		}
		x->p++;
	}
	if (x->p == start)
		return fail(x, "expected an argument");
	if ((s = keep(x, (size_t)(x->p - start))) == NULL)
		return fail(x, "command too long");
	memcpy(s, start, (size_t)(x->p - start));
	x->cmd->nodes[node].s = s;
	x->cmd->nodes[node].len = (size_t)(x->p - start);
	return 0;
}

static int
lex_quoted(struct lex *x, int node)
{
	char *s = x->arena + x->used, *w = s;

	x->p++;
	for (;;) {
		if (x->p >= x->end)
			return fail(x, "unterminated quoted string");
		char c = *x->p++;
		if (c == '"')
			break;
		if (c == '\r' || c == '\n' || c == '\0')
			return fail(x, "bad character in a quoted string");
		if (c == '\\') {
			if (x->p >= x->end || (*x->p != '"' && *x->p != '\\'))
				return fail(x, "bad escape in a quoted string");
			c = *x->p++;
		}
		if ((size_t)(w - x->arena) + 2 > x->cap)
			return fail(x, "command too long");
		*w++ = c;
	}
	*w = '\0';
	x->cmd->nodes[node].s = s;
	x->cmd->nodes[node].len = (size_t)(w - s);
	x->used += (size_t)(w - s) + 1;
	return 0;
}

static int
lex_literal(struct lex *x, int node)
{
	uint64_t n = 0;
	int digits = 0;
	char *s;

	x->p++;
	while (x->p < x->end && isdigit((unsigned char)*x->p)) {
		if (++digits > 10)
			return fail(x, "literal too big");
		n = n * 10 + (uint64_t)(*x->p++ - '0');
	}
	if (digits == 0)
		return fail(x, "bad literal");
	if (x->p < x->end && *x->p == '+')
		x->p++;
	if (x->p >= x->end || *x->p != '}')
		return fail(x, "bad literal");
	x->p++;
	if (x->p < x->end && *x->p == '\r')
		x->p++;
	if (x->p >= x->end || *x->p != '\n')
		return fail(x, "a literal must end its line");
	x->p++;
	if (n > (uint64_t)(x->end - x->p))
		return fail(x, "literal cut short");
	if ((s = keep(x, (size_t)n)) == NULL)
		return fail(x, "command too long");
	memcpy(s, x->p, (size_t)n);
	x->p += n;
	x->cmd->nodes[node].s = s;
	x->cmd->nodes[node].len = (size_t)n;
	x->cmd->nodes[node].literal = 1;
	return 0;
}

/* Arguments up to the end (DEPTH 0) or to the ')' of a list; returns
 * the first node's index (or -1 when none) in *FIRST. */
static int
lex_args(struct lex *x, int depth, int *first)
{
	int prev = -1;

	*first = -1;
	for (;;) {
		int node;
		while (x->p < x->end && *x->p == ' ')
			x->p++;
		if (x->p >= x->end)
			return depth == 0 ? 0 : fail(x, "unterminated (");
		if (*x->p == ')') {
			if (depth == 0)
				return fail(x, "unexpected )");
			x->p++;
			return 0;
		}
		if (*x->p == '(') {
			if (depth + 1 > IMAPD_DEPTH_MAX)
				return fail(x, "lists nested too deep");
			if ((node = new_node(x, IMAPD_LIST)) < 0)
				return -1;
			x->p++;
			int child;
			if (lex_args(x, depth + 1, &child) < 0)
				return -1;
			x->cmd->nodes[node].child = child;
		} else if (*x->p == '"') {
			if ((node = new_node(x, IMAPD_STRING)) < 0 || lex_quoted(x, node) < 0)
				return -1;
		} else if (*x->p == '{') {
			if ((node = new_node(x, IMAPD_STRING)) < 0 || lex_literal(x, node) < 0)
				return -1;
		} else {
			if ((node = new_node(x, IMAPD_ATOM)) < 0 || lex_atom(x, node) < 0)
				return -1;
		}
		if (prev < 0)
			*first = node;
		else
			x->cmd->nodes[prev].next = node;
		prev = node;
		/* Arguments are separated by a space, or end at ')' or the end. */
		if (x->p < x->end && *x->p != ' ' && *x->p != ')')
			return fail(x, "expected a space between arguments");
	}
}

static int
read_word(struct lex *x, char *out, size_t cap)
{
	size_t n = 0;

	while (x->p < x->end && *x->p != ' ') {
		unsigned char c = (unsigned char)*x->p++;
		if (!isalnum(c) && c != '-' && c != '.')
			return fail(x, "bad command name");
		if (n + 1 >= cap)
			return fail(x, "unknown command");
		out[n++] = (char)toupper(c);
	}
	out[n] = '\0';
	return n ? 0 : fail(x, "missing command name");
}

int
imapd_parse(const char *buf, size_t len, struct imapd_cmd *cmd, char *err, size_t errlen)
{
	struct lex x = { buf, buf + len, cmd, NULL, 0, 0, err, errlen };
	size_t n = 0;

	memset(cmd, 0, sizeof(*cmd));
	cmd->first = -1;
	strcpy(cmd->tag, "*");
	while (n < len && n < IMAPD_TAG_MAX && tag_char((unsigned char)buf[n]))
		n++;
	if (n == 0 || n >= len || buf[n] != ' ')
		return fail(&x, n == 0 || n < len ? "bad tag" : "missing command name");
	memcpy(cmd->tag, buf, n);
	cmd->tag[n] = '\0';
	x.p = buf + n + 1;
	if (read_word(&x, cmd->name, 16) < 0)
		return -1;
	if (strcmp(cmd->name, "UID") == 0) {
		char sub[16];
		if (x.p >= x.end)
			return fail(&x, "UID needs a command");
		x.p++;
		if (read_word(&x, sub, sizeof(sub)) < 0)
			return -1;
		snprintf(cmd->name, sizeof(cmd->name), "UID %s", sub);
	}
	if (x.p < x.end && *x.p != ' ')
		return fail(&x, "bad command name");
	cmd->nodes = calloc(IMAPD_NODES_MAX, sizeof(*cmd->nodes));
	x.cap = len + IMAPD_NODES_MAX + 1;
	cmd->text = x.arena = malloc(x.cap);
	if (cmd->nodes == NULL || x.arena == NULL)
		return fail(&x, "out of memory");
	return lex_args(&x, 0, &cmd->first);
}

void
imapd_cmd_free(struct imapd_cmd *cmd)
{
	free(cmd->nodes);
	free(cmd->text);
	cmd->nodes = NULL;
	cmd->text = NULL;
	cmd->nnodes = 0;
	cmd->first = -1;
}

const struct imapd_node *
imapd_arg(const struct imapd_cmd *cmd, int i)
{
	int k = cmd->first;

	while (k >= 0 && i-- > 0)
		k = cmd->nodes[k].next;
	return k >= 0 ? &cmd->nodes[k] : NULL;
}

int
imapd_nargs(const struct imapd_cmd *cmd)
{
	int n = 0;

	for (int k = cmd->first; k >= 0; k = cmd->nodes[k].next)
		n++;
	return n;
}

const struct imapd_node *
imapd_child(const struct imapd_cmd *cmd, const struct imapd_node *n)
{
	return n && n->type == IMAPD_LIST && n->child >= 0 ? &cmd->nodes[n->child] : NULL;
}

const struct imapd_node *
imapd_next(const struct imapd_cmd *cmd, const struct imapd_node *n)
{
	return n && n->next >= 0 ? &cmd->nodes[n->next] : NULL;
}

int
imapd_is_astring(const struct imapd_node *n)
{
	return n && (n->type == IMAPD_ATOM || n->type == IMAPD_STRING);
}

int
imapd_atom_is(const struct imapd_node *n, const char *word)
{
	return n && n->type == IMAPD_ATOM && strcasecmp(n->s, word) == 0;
}

/*
 * The text of a message for the search index.
 *
 * The MIME structure is walked here, line by line over the message as it
 * comes (search/lines.c), rather than by GMime's parser: that parser
 * builds the whole tree first (an object and every header of every part,
 * however many), knows nothing of bare-CR line ends, and its own depth
 * limits (512 attached messages, about 1,000 multiparts in GMime 3.2) are
 * silent. Walking here, the limits stop the work where they are hit and
 * say so. Each line is checked against the boundaries of the multiparts
 * it is inside, outermost first (an outer boundary always ends an inner
 * part, as RFC 2046 wants), and a part's body goes on to its decoders in
 * fixed-size chunks. GMime still does the decoding: header blocks go to
 * mime/headers.c, transfer encodings to GMime's incremental decoders
 * (search/decode.c).
 *
 * Memory: the seven field buffers share one budget of max_text bytes; a
 * part in flight needs a few fixed buffers; a header block, and the
 * preamble of a multipart (which is read as a part when no delimiter of
 * its own opens one), are held until they end, over a source up to
 * LINES_HOLD_MAX; an encoded message/rfc822 (an illegal but real thing)
 * is decoded into memory only while the bytes so held stay under 4
 * max_text. A non-text attachment is never decoded, except a PDF, which
 * is streamed into pdftotext. So a message of any size is read with the
 * same memory.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <glib.h>

#include "mime/headers.h"
#include "search/body.h"
#include "search/charset.h"
#include "search/decode.h"
#include "search/extract.h"
#include "search/lines.h"
#include "search/params.h"

#define MAX_BOUNDARY	256	/* RFC 2046 allows 70 */
#define DEPTH_CEILING	200	/* whatever the caller asks: the stack */
#define CHUNK		8192	/* body bytes handed on at a time */
#define NONE		UINT64_MAX

struct ctx {
	const struct extract_limits *lim;
	struct text_budget budget;
	struct tbuf subject, from, to, cc, body, names, att;
	int parts, attachments;
	size_t held;		/* bytes of decoded messages in memory */
	int depth_cut, parts_cut, pdf_big, pdf_time, msg_big;
	int header_cut, lost;	/* a held header block or preamble was too long */
};

/*
 * One walk over one input: its lines, and the boundaries of the
 * multiparts the line being read is inside, outermost first.
 */
struct walk {
	struct ctx *c;
	struct lines *in;
	char **bnd;		/* g_malloc'd */
	size_t *bl;
	int nb, cap;
	int hit;		/* the entity ended at a delimiter of bnd[hit] (-1: not) */
	int close;		/* ...which closes its multipart */
	int end;		/* the input ended */
	struct line ln;		/* the line walk_next gave */
};

/* What the enclosing structure says about an entity. */
struct env {
	int msg;		/* a message (top level or attached): skip blanks */
	int nested;		/* inside an attached message: headers to body */
	int digest;		/* default type message/rfc822 */
	int related;		/* inside multipart/related */
};

static int entity(struct walk *, int, struct env);

void
extract_limits_default(struct extract_limits *l)
{
	l->max_text = 4 * 1024 * 1024;
	l->max_depth = 16;
	l->max_parts = 500;
	l->pdf = 1;
	l->pdf_seconds = 10;
	l->pdf_max = 32 * 1024 * 1024;
}

/* ---- lines and header blocks ------------------------------------------- */

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static int
blank_line(const char *s, size_t n)
{
	while (n > 0 && is_wsp(*s))
		s++, n--;
	return n == 0;
}

/* Whether S (N bytes) is "Name: value" with an RFC 5322 field name. */
static int
header_line(const char *s, size_t n)
{
	const char *c = memchr(s, ':', n);
	size_t len, i;

	if (c == NULL)
		return 0;
	len = (size_t)(c - s);
	while (len > 0 && is_wsp(s[len - 1]))
		len--;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126)
			return 0;
	return len > 0;
}

/* ---- the walk ----------------------------------------------------------- */

static void
walk_init(struct walk *w, struct ctx *c, struct lines *in)
{
	memset(w, 0, sizeof *w);
	w->c = c;
	w->in = in;
	w->hit = -1;
}

static void
walk_free(struct walk *w)
{
	while (w->nb > 0)
		g_free(w->bnd[--w->nb]);
	free(w->bnd);
	free(w->bl);
}

/* Enters a multipart of boundary B (taken): its index, or -1 (ENOMEM). */
static int
push(struct walk *w, char *b)
{
	char **nb;
	size_t *nl;
	int cap;

	if (w->nb == w->cap) {
		cap = w->cap > 0 ? w->cap * 2 : 8;
		if ((nb = realloc(w->bnd, (size_t)cap * sizeof *nb)) == NULL) {
			g_free(b);
			return -1;
		}
		w->bnd = nb;
		if ((nl = realloc(w->bl, (size_t)cap * sizeof *nl)) == NULL) {
			g_free(b);
			return -1;
		}
		w->bl = nl;
		w->cap = cap;
	}
	w->bnd[w->nb] = b;
	w->bl[w->nb] = strlen(b);
	return w->nb++;
}

static void
pop(struct walk *w)
{
	g_free(w->bnd[--w->nb]);
}

/*
 * Whether LN is a delimiter line, and of which boundary: the outermost
 * one it delimits, or -1. A delimiter is "--" B, then "--" for the last
 * one (*CLOSE), else anything but a character that could make a longer
 * boundary. RFC 2046 asks for a prefix match ("junk" after it is
 * ignored); the exception keeps "--foo" from ending parts at an inner
 * "--foobar".
 */
static int
delimiter_of(const struct walk *w, const struct line *ln, int *close)
{
	const char *r;
	size_t rest;
	int k;

	if (!ln->first || ln->len < 2 || ln->s[0] != '-' || ln->s[1] != '-')
		return -1;
	for (k = 0; k < w->nb; k++) {
		if (ln->len < 2 + w->bl[k] ||
		    memcmp(ln->s + 2, w->bnd[k], w->bl[k]) != 0)
			continue;
		r = ln->s + 2 + w->bl[k];
		rest = ln->len - 2 - w->bl[k];
		*close = rest >= 2 && r[0] == '-' && r[1] == '-';
		if (*close || rest == 0 ||
		    !(g_ascii_isalnum(*r) || strchr("'()+_,-./:=?", *r)))
			return k;
	}
	return -1;
}

/* The next line of the entity being read into w->ln: 1; 0 once it ended,
 * at a delimiter (w->hit) or the end of the input (w->end). */
static int
walk_next(struct walk *w)
{
	int k, close;

	if (w->hit >= 0 || w->end)
		return 0;
	if (!lines_next(w->in, &w->ln)) {
		w->end = 1;
		return 0;
	}
	if ((k = delimiter_of(w, &w->ln, &close)) >= 0) {
		w->hit = k;
		w->close = close;
		return 0;
	}
	return 1;
}

/* Where the rest of the entity starts: at the delimiter it ended at, if
 * it did (the delimiter is read again, should the caller go back). */
static uint64_t
walk_tell(const struct walk *w)
{
	return w->hit >= 0 ? w->ln.off : lines_tell(w->in);
}

/* Back to OFF, which is held: what follows is read again. */
static void
walk_seek(struct walk *w, uint64_t off)
{
	lines_seek(w->in, off);
	w->hit = -1;
	w->end = w->in->err != 0;
}

/* The rest of the entity, unread. */
static void
skip(struct walk *w)
{
	while (walk_next(w) == 1)
		;
}

/* Takes the delimiter the entity ended at: the input goes on after its
 * line (all of it, if it came in pieces). */
static void
take_delimiter(struct walk *w)
{
	struct line ln;

	w->hit = -1;
	while (lines_next(w->in, &ln))
		if (ln.first) {
			lines_seek(w->in, ln.off);
			return;
		}
	w->end = 1;
}

/*
 * After a delimiter of multipart OWN: whether its body ends right there
 * (at the end of the input or an outer delimiter), so no part follows.
 * An empty part before another delimiter of its own is still a part.
 */
static int
at_end(struct walk *w, int own)
{
	uint64_t off;

	if (walk_next(w) == 0) {
		if (w->hit != own)
			return 1;
		walk_seek(w, w->ln.off);
		return 0;
	}
	/* an empty line whose line end is the outer delimiter's is none (of
	 * a CRCRLF, the delimiter takes the CRLF: a CR is left) */
	off = w->ln.off;
	if (w->ln.len == 0 && w->ln.eol < 3 && walk_next(w) == 0 && w->hit >= 0 &&
	    w->hit != own)
		return 1;
	walk_seek(w, off);
	return 0;
}

/* Body bytes on their way to a decoder, in chunks of CHUNK. */
struct feed {
	text_emit emit;
	void *ud;
	const int *stop;
	char buf[CHUNK];
	size_t n;
};

static int
feed_put(struct feed *f, const char *s, size_t n)
{
	size_t k;

	while (n > 0) {
		k = CHUNK - f->n < n ? CHUNK - f->n : n;
		memcpy(f->buf + f->n, s, k);
		f->n += k;
		s += k;
		n -= k;
		if (f->n == CHUNK) {
			f->n = 0;
			if ((f->stop == NULL || !*f->stop) &&
			    f->emit(f->ud, f->buf, CHUNK) == -1)
				return -1;
		}
	}
	return 0;
}

/*
 * The body of the entity being read, to its end, to EMIT in chunks; none
 * once *STOP (if STOP) is set. The line end before a delimiter is the
 * delimiter's (of a CRCRLF, the CRLF). 0, or -1 when EMIT failed.
 */
static int
body_feed(struct walk *w, text_emit emit, void *ud, const int *stop)
{
	struct feed f;
	char eol[3];
	size_t neol = 0;

	f.emit = emit;
	f.ud = ud;
	f.stop = stop;
	f.n = 0;
	while (walk_next(w) == 1) {
		if (stop != NULL && *stop)
			continue;
		if (feed_put(&f, eol, neol) == -1 ||
		    feed_put(&f, w->ln.s, w->ln.len) == -1)
			return -1;
		neol = w->ln.eol;
		memcpy(eol, w->ln.s + w->ln.len, neol);
	}
	if (w->hit >= 0 && neol > 0 && eol[neol - 1] == '\n')
		neol--;
	if (w->hit >= 0 && neol > 0 && eol[neol - 1] == '\r')
		neol--;
	if (feed_put(&f, eol, neol) == -1)
		return -1;
	if (f.n > 0 && (stop == NULL || !*stop))
		return emit(ud, f.buf, f.n);
	return 0;
}

/*
 * Reads the header block of the entity that starts here, and leaves the
 * input at its body; the headers parsed, NULL when out of memory. The
 * block ends at the first empty line, or at a line of only white space
 * that text follows; when there is neither, at the first line that is not
 * a header (the separator is missing), so that such a body is still read.
 * A message skips a BOM and blank lines first. A block longer than can be
 * held ends before the line that made it so.
 */
static struct mime_headers *
header_block(struct walk *w, int msg)
{
	struct lines *in = w->in;
	uint64_t start = walk_tell(w), p = start, last = start, ws = NONE;
	uint64_t bad = NONE, over = NONE, lstart = start, hend, body, end;
	struct mime_headers *h;
	int lead = msg, lblank = 0, any = 0, hl;

	lines_mark(in, start);
	while (walk_next(w) == 1) {
		const char *s = w->ln.s;
		size_t n = w->ln.len;
		uint64_t off = w->ln.off;

		if (lead) {	/* a BOM and blank lines, not held */
			if (w->ln.first) {
				if (off == start && n >= 3 &&
				    memcmp(s, "\xef\xbb\xbf", 3) == 0)
					s += 3, n -= 3, off += 3;
				lstart = off;
				lblank = 1;
			}
			if (lblank && blank_line(s, n)) {
				if (w->ln.eol > 0) {
					p = off + n + w->ln.eol;
					lines_mark(in, p);
				} else if (lines_held(in) > lines_hold_max(in) / 2) {
					/* a long one: its white space so far is dropped */
					p = lstart = off + n;
					lines_mark(in, p);
				}
				last = off + n;
				continue;
			}
			lead = 0;
			p = lstart;
			if (!w->ln.first) {
				/* a long run of white space, then text: folded */
				ws = NONE;
				last = off + n;
				continue;
			}
		}
		if (lines_held(in) > lines_hold_max(in)) {
			w->c->header_cut = 1;
			over = w->ln.off;
			break;
		}
		last = off + n;
		if (!w->ln.first) {	/* more of a long line */
			if (ws != NONE && !blank_line(s, n))
				ws = NONE;
			continue;
		}
		if (n == 0) {
			/* not a line when the delimiter's line end is its */
			body = off + w->ln.eol;
			if (w->ln.eol < 3 && walk_next(w) == 0 && w->hit >= 0) {
				last = off;
				break;
			}
			hend = off;
			goto parse;
		}
		if (is_wsp(*s)) {
			ws = blank_line(s, n) ? off : NONE;
			continue;
		}
		hl = header_line(s, n);
		if (ws != NONE && !hl) {
			/* "a blank line with a space in it", then text */
			hend = ws;
			body = off;
			goto parse;
		}
		ws = NONE;
		if (!any && !msg && !hl) {
			hend = body = p;	/* a part that starts with text */
			goto parse;
		}
		if (hl)
			any = 1;
		else if (bad == NONE && (any || !msg || n < 5 ||
		    memcmp(s, "From ", 5) != 0))
			bad = off;	/* an mbox "From " line is not */
	}
	/* no separator: the entity ended (or the block is too long) */
	end = over != NONE ? over : w->hit >= 0 ? last : lines_tell(in);
	if (lead && lblank && over == NONE)
		p = end;	/* all blank, the last line without a line end */
	if (p > end)
		p = end;
	if (bad != NONE && bad > p) {
		hend = body = bad;
	} else if (bad != NONE && !any) {
		hend = body = p;	/* no headers at all: all body */
	} else {
		hend = body = end;
	}
	if (body == end && over == NONE) {
		h = mime_headers_parse(lines_at(in, p), (size_t)(hend - p));
		lines_unmark(in);
		return h;	/* at the end already */
	}
parse:
	h = mime_headers_parse(lines_at(in, p), (size_t)(hend - p));
	walk_seek(w, body);
	lines_unmark(in);
	return h;
}

static int
gstring_emit(void *ud, const char *s, size_t n)
{
	g_string_append_len(ud, s, (gssize)n);
	return 0;
}

/* ---- leaves ----------------------------------------------------------------- */

static int
type_is(const char *type, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(type, *list) == 0)
			return 1;
	return 0;
}

static const char *const text_like[] = {	/* text in all but name */
	"message/delivery-status", "message/disposition-notification",
	"message/feedback-report", "message/global-delivery-status",
	"message/global-headers", "message/global-disposition-notification",
	"application/xhtml+xml", NULL
};

static const char *const not_files[] = {	/* parts of a signature */
	"application/pgp-signature", "application/pkcs7-signature",
	"application/x-pkcs7-signature", "application/pgp-encrypted", NULL
};

static const char *const pdf_types[] = {
	"application/pdf", "application/x-pdf", "application/acrobat", NULL
};

static int
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && g_ascii_strcasecmp(s + n - k, suffix) == 0;
}

/* The type a text file sent as application/octet-stream has by its name. */
static const char *
text_by_name(const char *name, const char *type)
{
	static const char *const plain[] = {
		".txt", ".text", ".csv", ".log", ".md", ".ics", ".vcf", NULL
	};
	size_t i;

	for (i = 0; plain[i] != NULL; i++)
		if (ends_with(name, plain[i]))
			return "text/plain";
	if (ends_with(name, ".htm") || ends_with(name, ".html"))
		return "text/html";
	return type;
}

/* The attachment's name, if any: Content-Disposition, then Content-Type. */
static char *
file_name(struct mime_headers *h)
{
	char *name = param_get(mime_headers_raw(h, "Content-Disposition"),
	    "filename");

	if (name == NULL)
		name = param_get(mime_headers_raw(h, "Content-Type"), "name");
	return name;
}

/*
 * Counts and names an attachment. A part counts when it is marked as one,
 * has a file name or is not text; not when it is part of a signature or
 * an image of the HTML next to it (multipart/related, with a Content-ID).
 */
static int
attachment(struct ctx *c, struct mime_headers *h, const char *type,
    const char *disp, const char *name, int text, struct env env)
{
	int counted;

	counted = strcmp(disp, "attachment") == 0 || name != NULL || !text;
	if (type_is(type, not_files))
		counted = 0;
	if (env.related && strcmp(disp, "attachment") != 0 &&
	    mime_headers_raw(h, "Content-ID") != NULL)
		counted = 0;
	c->attachments += counted;
	if (name != NULL && *name != '\0') {
		tbuf_break(&c->names, 1);
		if (tbuf_put(&c->names, name, strlen(name)) == -1)
			return -1;
	}
	return counted;
}

static int
text_feed(void *ud, const char *s, size_t n)
{
	return body_text_feed(ud, s, n);
}

static int
pdf_feed(void *ud, const char *s, size_t n)
{
	return body_pdf_feed(ud, s, n);
}

static int
leaf(struct walk *w, struct mime_headers *h, const char *type, struct env env)
{
	struct ctx *c = w->c;
	const char *ct = mime_headers_raw(h, "Content-Type");
	char disp[32], *name, *charset;
	int enc, text, rc = 0, is_att, why = 0;
	struct body_text bt;
	struct body_pdf bp;
	struct tbuf *dest;

	param_token(mime_headers_raw(h, "Content-Disposition"), disp,
	    sizeof disp);
	enc = decode_kind(mime_headers_raw(h, "Content-Transfer-Encoding"));
	name = file_name(h);
	if (strcmp(type, "application/octet-stream") == 0 && name != NULL)
		type = text_by_name(name, type);
	text = strncmp(type, "text/", 5) == 0 || type_is(type, text_like);
	if ((is_att = attachment(c, h, type, disp, name, text, env)) == -1) {
		g_free(name);
		return -1;
	}
	if (text) {
		dest = is_att ? &c->att : &c->body;
		charset = param_get_raw(ct, "charset");
		tbuf_break(dest, 2);
		body_text_begin(&bt, enc, charset,
		    strcmp(type, "text/html") == 0 ||
		    strcmp(type, "application/xhtml+xml") == 0 ||
		    strcmp(type, "text/enriched") == 0, dest);
		rc = body_feed(w, text_feed, &bt, &dest->b->cut);
		if (body_text_end(&bt) == -1)
			rc = -1;
		g_free(charset);
	} else if (c->lim->pdf && (type_is(type, pdf_types) || (name != NULL &&
	    ends_with(name, ".pdf")))) {
		body_pdf_begin(&bp, enc, c->lim, &c->att);
		rc = body_feed(w, pdf_feed, &bp, NULL);
		if (body_pdf_end(&bp, &why) == -1)
			rc = -1;
		c->pdf_big |= why == BODY_PDF_BIG;
		c->pdf_time |= why == BODY_PDF_TIME;
	} else {
		skip(w);	/* not text: the name is all */
	}
	g_free(name);
	return rc;
}

/* ---- containers ------------------------------------------------------------- */

static int
multipart(struct walk *w, struct mime_headers *h, const char *type, int depth,
    struct env env)
{
	struct ctx *c = w->c;
	struct env sub = { 0, env.nested, 0, 0 };
	uint64_t start;
	char *b;
	size_t bl;
	int own, held = 1, rc = 0, n = 0, blank = 0, empty;

	if (strcmp(type, "multipart/encrypted") == 0) {
		skip(w);	/* nothing readable inside */
		return 0;
	}
	if (depth + 1 > c->lim->max_depth || depth + 1 > DEPTH_CEILING) {
		c->depth_cut = 1;
		skip(w);
		return 0;
	}
	b = param_get_raw(mime_headers_raw(h, "Content-Type"), "boundary");
	if (b == NULL || (bl = strlen(b)) == 0 || bl > MAX_BOUNDARY) {
		g_free(b);	/* no boundary: the body as one part */
		return entity(w, depth + 1, sub);
	}
	sub.digest = strcmp(type, "multipart/digest") == 0;
	sub.related = strcmp(type, "multipart/related") == 0;
	if ((own = push(w, b)) < 0)
		return -1;

	/* the preamble, held: it is a part if no delimiter opens one */
	start = walk_tell(w);
	lines_mark(w->in, start);
	while (walk_next(w) == 1) {
		if (n == 0)
			blank = w->ln.len == 0 && w->ln.eol < 3;
		n += n < 2;	/* only none, one or more matter */
		if (held && lines_held(w->in) > lines_hold_max(w->in)) {
			lines_unmark(w->in);
			held = 0;
		}
	}
	lines_unmark(w->in);	/* what was held stays until the next read */
	/* an empty body (a line end that is an outer delimiter's is none) */
	empty = n == 0 || (n == 1 && blank && w->hit >= 0);
	/*
	 * No delimiter of its own: the body (unless empty) is one part; only
	 * the last one: what was before it is. Either is read again.
	 */
	if (w->hit != own || w->close) {
		if (w->hit != own)
			pop(w);
		if (w->hit == own || !empty) {
			if (held) {
				walk_seek(w, start);
				rc = entity(w, depth + 1, sub);
			} else {
				c->lost = 1;
			}
		}
		if (w->nb <= own)
			return rc;
	}
	while (rc == 0 && w->hit == own && !w->close) {
		take_delimiter(w);
		if (c->parts >= c->lim->max_parts) {
			if (!at_end(w, own))
				c->parts_cut = 1;
			break;
		}
		if (at_end(w, own))
			break;
		rc = entity(w, depth + 1, sub);
	}
	if (rc == 0 && w->hit == own)
		take_delimiter(w);	/* the last one; the epilogue is no text */
	pop(w);
	if (rc == 0)
		skip(w);
	return rc;
}

struct held_message {
	struct ctx *c;
	struct decoder dec;
	GString *s;
	size_t n;		/* encoded bytes given */
	int big;
};

static int
held_feed(void *ud, const char *s, size_t n)
{
	struct held_message *m = ud;

	m->n += n;
	if (m->c->held + decode_bound(m->n, m->dec.enc) > 4 * m->c->lim->max_text) {
		m->big = 1;
		return 0;
	}
	return decoder_feed(&m->dec, s, n, gstring_emit, m->s);
}

static int walk_memory(struct ctx *, const char *, size_t, int, struct env);

/* An attached message: its text goes to the body of this one. */
static int
message(struct walk *w, struct mime_headers *h, int depth, struct env env)
{
	struct ctx *c = w->c;
	struct env sub = { 1, 1, 0, 0 };
	struct held_message m;
	char disp[32], *name;
	int enc, rc;
	size_t bound;

	param_token(mime_headers_raw(h, "Content-Disposition"), disp,
	    sizeof disp);
	name = file_name(h);
	rc = attachment(c, h, "message/rfc822", disp, name, 0, env);
	g_free(name);
	if (rc == -1)
		return -1;
	if (depth + 1 > c->lim->max_depth || depth + 1 > DEPTH_CEILING) {
		c->depth_cut = 1;
		skip(w);
		return 0;
	}
	enc = decode_kind(mime_headers_raw(h, "Content-Transfer-Encoding"));
	tbuf_break(&c->body, 2);
	if (enc == ENC_NONE)
		return entity(w, depth + 1, sub);
	/* an encoded message (not allowed, but sent): decoded in memory */
	memset(&m, 0, sizeof m);
	m.c = c;
	decoder_init(&m.dec, enc);
	m.s = g_string_new("");
	rc = body_feed(w, held_feed, &m, &m.big);
	if (rc == 0 && !m.big)
		rc = decoder_flush(&m.dec, gstring_emit, m.s);
	decoder_free(&m.dec);
	if (m.big) {
		c->msg_big = 1;
	} else if (rc == 0) {
		bound = decode_bound(m.n, enc);
		c->held += bound;
		rc = walk_memory(c, m.s->str, m.s->len, depth + 1, sub);
		c->held -= bound;
	}
	g_string_free(m.s, TRUE);
	return rc;
}

static int
put_line(struct tbuf *t, const char *s)
{
	if (*s == '\0')
		return 0;
	tbuf_break(t, 1);
	return tbuf_put(t, s, strlen(s));
}

/*
 * Header NAME of H when its raw value has 8-bit bytes that are not UTF-8
 * and the message declares a legacy charset (not Latin-1 or UTF-8): old
 * CJK and Cyrillic mailers write unencoded headers in the charset of the
 * body. Decoded from it, else NULL (mime/headers.c reads such bytes as
 * Windows-1252). g_malloc'd.
 */
static char *
legacy_header(struct mime_headers *h, const char *name, const char *charset)
{
	const char *raw = mime_headers_raw(h, name), *p;
	GString *u;
	struct conv cv;
	char buf[48], *s;
	int high = 0;

	if (raw == NULL || charset == NULL ||
	    conv_iconv_name(charset, buf, sizeof buf) == NULL)
		return NULL;
	for (p = raw; *p != '\0'; p++)
		high |= (unsigned char)*p >= 0x80;
	if (!high || g_utf8_validate(raw, -1, NULL))
		return NULL;
	u = g_string_new("");
	if (conv_open(&cv, charset, gstring_emit, u) == -1 ||
	    cv.cd == (iconv_t)-1) {
		conv_close(&cv);
		g_string_free(u, TRUE);
		return NULL;
	}
	(void)conv_feed(&cv, raw, strlen(raw));
	(void)conv_finish(&cv);
	conv_close(&cv);
	s = mime_decode_text(u->str, u->len);	/* encoded-words too */
	g_string_free(u, TRUE);
	return s;
}

/* The headers of the message: its own fields, or lines of the body. */
static int
message_headers(struct ctx *c, struct mime_headers *h, int nested)
{
	static const char *const names[4] = { "Subject", "From", "To", "Cc" };
	struct tbuf *dst[4] = { &c->subject, &c->from, &c->to, &c->cc };
	const char *v[4], *bcc[64];
	char *legacy[4], *charset;
	size_t i, n;
	int rc = 0;

	v[0] = mime_headers_subject(h);
	v[1] = mime_headers_from(h);
	v[2] = mime_headers_to(h);
	v[3] = mime_headers_cc(h);
	if (*v[1] == '\0' && (v[1] = mime_headers_get(h, "Sender")) == NULL)
		v[1] = "";
	charset = param_get_raw(mime_headers_raw(h, "Content-Type"), "charset");
	for (i = 0; i < 4; i++) {
		if ((legacy[i] = legacy_header(h, names[i], charset)) != NULL)
			v[i] = legacy[i];
		if (rc == 0)
			rc = put_line(nested ? &c->body : dst[i], v[i]);
	}
	for (i = 0; i < 4; i++)
		g_free(legacy[i]);
	g_free(charset);
	if (rc != 0 || nested)
		return rc;
	n = mime_headers_get_all(h, "Bcc", bcc, 64);
	for (i = 0; i < n && i < 64; i++)
		if (put_line(&c->to, bcc[i]) == -1)
			return -1;
	return 0;
}

/* One entity, a message or a MIME part at nesting DEPTH, read to its end. */
static int
entity(struct walk *w, int depth, struct env env)
{
	struct ctx *c = w->c;
	struct mime_headers *h;
	char type[128];
	int rc = 0;

	if (c->parts >= c->lim->max_parts) {
		c->parts_cut = 1;
		skip(w);
		return 0;
	}
	c->parts++;
	if ((h = header_block(w, env.msg)) == NULL)
		return -1;
	if (env.msg && message_headers(c, h, env.nested) == -1) {
		mime_headers_free(h);
		return -1;
	}
	param_token(mime_headers_raw(h, "Content-Type"), type, sizeof type);
	if (strchr(type, '/') == NULL)	/* none, or not a type: the default */
		strcpy(type, env.digest ? "message/rfc822" : "text/plain");
	env.msg = env.digest = 0;
	if (strncmp(type, "multipart/", 10) == 0)
		rc = multipart(w, h, type, depth, env);
	else if (strcmp(type, "message/rfc822") == 0 ||
	    strcmp(type, "message/global") == 0 ||
	    strcmp(type, "message/news") == 0)
		rc = message(w, h, depth, env);
	else if (strcmp(type, "message/partial") == 0 ||
	    strcmp(type, "message/external-body") == 0)
		skip(w);	/* no text of its own */
	else
		rc = leaf(w, h, type, env);
	mime_headers_free(h);
	return rc;
}

/* A walk over bytes in memory (an encoded attached message). */
static int
walk_memory(struct ctx *c, const char *data, size_t len, int depth, struct env env)
{
	struct lines in;
	struct walk w;
	int rc;

	lines_init_mem(&in, data, len);
	walk_init(&w, c, &in);
	rc = entity(&w, depth, env);
	walk_free(&w);
	return rc;
}

/* ---- API ------------------------------------------------------------------- */

static void
size_text(char *buf, size_t n, size_t v)
{
	if (v >= 1024 * 1024 && v % (1024 * 1024) == 0)
		snprintf(buf, n, "%zu MiB", v / (1024 * 1024));
	else if (v >= 1024 && v % 1024 == 0)
		snprintf(buf, n, "%zu KiB", v / 1024);
	else
		snprintf(buf, n, "%zu bytes", v);
}

static void
add_note(struct extract_text *t, const char *s)
{
	size_t len = strlen(t->note);

	t->truncated = 1;
	snprintf(t->note + len, sizeof t->note - len, "%s%s",
	    len > 0 ? "; " : "", s);
}

static void
notes(const struct ctx *c, struct extract_text *t)
{
	char s[128], z[32];

	if (c->budget.cut) {
		size_text(z, sizeof z, c->lim->max_text);
		snprintf(s, sizeof s, "text cut at %s", z);
		add_note(t, s);
	}
	if (c->parts_cut) {
		snprintf(s, sizeof s, "only the first %d parts read",
		    c->lim->max_parts);
		add_note(t, s);
	}
	if (c->depth_cut) {
		snprintf(s, sizeof s, "parts nested deeper than %d levels not read",
		    c->lim->max_depth);
		add_note(t, s);
	}
	if (c->pdf_big) {
		size_text(z, sizeof z, c->lim->pdf_max);
		snprintf(s, sizeof s, "PDF over %s not read", z);
		add_note(t, s);
	}
	if (c->pdf_time) {
		snprintf(s, sizeof s, "PDF text cut after %g s",
		    c->lim->pdf_seconds);
		add_note(t, s);
	}
	if (c->msg_big)
		add_note(t, "an encoded attached message too big to decode");
	if (c->header_cut) {
		size_text(z, sizeof z, LINES_HOLD_MAX);
		snprintf(s, sizeof s, "a header block over %s cut", z);
		add_note(t, s);
	}
	if (c->lost) {
		size_text(z, sizeof z, LINES_HOLD_MAX);
		snprintf(s, sizeof s, "a multipart without delimiters over %s not read", z);
		add_note(t, s);
	}
}

void
extract_text_free(struct extract_text *t)
{
	free(t->subject);
	free(t->from);
	free(t->to);
	free(t->cc);
	free(t->body);
	free(t->filenames);
	free(t->attachments);
	memset(t, 0, sizeof *t);
}

/* The walk of the input IN. 0, or -1 with errno (OUT is then empty). */
static int
extract_lines(struct lines *in, const struct extract_limits *lim,
    struct extract_text *out)
{
	struct extract_limits def;
	struct env top = { 1, 0, 0, 0 };
	struct ctx c;
	struct walk w;
	struct tbuf *all[7];
	char **dst[7];
	int rc, i;

	if (lim == NULL) {
		extract_limits_default(&def);
		lim = &def;
	}
	mime_init();
	memset(out, 0, sizeof *out);
	memset(&c, 0, sizeof c);
	c.lim = lim;
	c.budget.left = lim->max_text;
	all[0] = &c.subject, dst[0] = &out->subject;
	all[1] = &c.from, dst[1] = &out->from;
	all[2] = &c.to, dst[2] = &out->to;
	all[3] = &c.cc, dst[3] = &out->cc;
	all[4] = &c.body, dst[4] = &out->body;
	all[5] = &c.names, dst[5] = &out->filenames;
	all[6] = &c.att, dst[6] = &out->attachments;
	for (i = 0; i < 7; i++)
		tbuf_init(all[i], &c.budget);

	walk_init(&w, &c, in);
	rc = entity(&w, 0, top);
	walk_free(&w);
	if (rc != 0)
		errno = ENOMEM;
	if (rc == 0 && in->err != 0) {
		errno = in->err;
		rc = -1;
	}
	for (i = 0; i < 7; i++)
		if (rc == 0 && tbuf_take(all[i], dst[i]) == -1) {
			errno = ENOMEM;
			rc = -1;
		}
	for (i = 0; i < 7; i++)
		tbuf_free(all[i]);
	if (rc != 0) {
		i = errno;
		extract_text_free(out);
		errno = i;
		return -1;
	}
	out->attachment_count = c.attachments;
	notes(&c, out);
	return 0;
}

int
extract_message(const char *data, size_t len, const struct extract_limits *lim,
    struct extract_text *out)
{
	struct lines in;

	lines_init_mem(&in, data != NULL ? data : "", data != NULL ? len : 0);
	return extract_lines(&in, lim, out);
}

int
extract_stream(extract_read read, void *ud, const struct extract_limits *lim,
    struct extract_text *out)
{
	struct lines in;
	int rc, e;

	if (lines_init_source(&in, read, ud) == -1) {
		memset(out, 0, sizeof *out);
		errno = ENOMEM;
		return -1;
	}
	rc = extract_lines(&in, lim, out);
	e = errno;
	lines_free(&in);
	errno = e;
	return rc;
}

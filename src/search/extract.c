/*
 * The text of a message for the search index.
 *
 * The MIME structure is walked here, over the message bytes in place,
 * rather than by GMime's parser: that parser builds the whole tree first
 * (an object and every header of every part, however many), knows nothing
 * of bare-CR line ends, and its own depth limits (512 attached messages,
 * about 1,000 multiparts in GMime 3.2) are silent. Walking here, the
 * limits stop the work where they are hit and say so. A multipart is
 * split at its boundary lines top down (an outer boundary always ends an
 * inner part, as RFC 2046 wants), and a part's body is only ever looked at
 * through fixed-size chunks. GMime still does the decoding: header blocks go to
 * mime/headers.c, transfer encodings to GMime's incremental decoders
 * (search/decode.c).
 *
 * Memory: the seven field buffers share one budget of max_text bytes; a
 * part in flight needs a few fixed buffers; an encoded message/rfc822 (an
 * illegal but real thing) is decoded into memory only while the bytes so
 * held stay under 4 max_text. A non-text attachment is never decoded,
 * except a PDF, which is streamed into pdftotext.
 */
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
#include "search/params.h"

#define MAX_BOUNDARY	256	/* RFC 2046 allows 70 */
#define DEPTH_CEILING	200	/* whatever the caller asks: the stack */

struct ctx {
	const struct extract_limits *lim;
	struct text_budget budget;
	struct tbuf subject, from, to, cc, body, names, att;
	int parts, attachments;
	size_t held;		/* bytes of decoded messages in memory */
	int depth_cut, parts_cut, pdf_big, pdf_time, msg_big;
};

/* What the enclosing structure says about an entity. */
struct env {
	int msg;		/* a message (top level or attached): skip blanks */
	int nested;		/* inside an attached message: headers to body */
	int digest;		/* default type message/rfc822 */
	int related;		/* inside multipart/related */
};

static int entity(struct ctx *, const char *, size_t, int, struct env);

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

/* The line at *PP (end of line as in mime/headers.c: LF, CRLF, CRCRLF, CR). */
static int
next_line(const char **pp, const char *end, const char **line, size_t *len)
{
	const char *p = *pp;

	if (p >= end)
		return 0;
	*line = p;
	while (p < end && *p != '\n' && *p != '\r')
		p++;
	*len = (size_t)(p - *line);
	if (p < end) {
		if (*p == '\n')
			p++;
		else if (end - p >= 2 && p[1] == '\n')
			p += 2;
		else if (end - p >= 3 && p[1] == '\r' && p[2] == '\n')
			p += 3;
		else
			p++;
	}
	*pp = p;
	return 1;
}

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

/*
 * Splits an entity into its header block (*HDR, *HLEN) and body (*BODY,
 * *BLEN). The block ends at the first empty line, or at a line of only
 * white space that text follows; when there is neither, at the first line
 * that is not a header (the separator is missing), so that such a body is
 * still read. A message skips a BOM and blank lines first.
 */
static void
split_entity(const char *p, size_t n, int msg, const char **hdr, size_t *hlen,
    const char **body, size_t *blen)
{
	const char *end = p + n, *q, *line, *first_bad = NULL, *ws = NULL;
	size_t len;
	int any = 0;

	if (msg) {
		if (n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
			p += 3;
		for (q = p; next_line(&q, end, &line, &len) &&
		    blank_line(line, len); )
			p = q;
	}
	*hdr = p;
	for (q = p; next_line(&q, end, &line, &len); ) {
		if (len == 0) {
			*hlen = (size_t)(line - p);
			*body = q;
			*blen = (size_t)(end - q);
			return;
		}
		if (is_wsp(*line)) {
			ws = blank_line(line, len) ? line : NULL;
			continue;
		}
		if (ws != NULL && !header_line(line, len)) {
			/* "a blank line with a space in it", then text */
			*hlen = (size_t)(ws - p);
			*body = line;
			*blen = (size_t)(end - line);
			return;
		}
		ws = NULL;
		if (!any && !msg && !header_line(line, len)) {
			*hlen = 0;	/* a part that starts with text */
			*body = p;
			*blen = (size_t)(end - p);
			return;
		}
		if (header_line(line, len))
			any = 1;
		else if (first_bad == NULL && (any || !msg ||
		    len < 5 || memcmp(line, "From ", 5) != 0))
			first_bad = line;	/* an mbox "From " line is not */
	}
	if (first_bad != NULL && first_bad > p) {
		*hlen = (size_t)(first_bad - p);
		*body = first_bad;
	} else if (first_bad != NULL && !any) {
		*hlen = 0;		/* no headers at all: all body */
		*body = p;
	} else {
		*hlen = (size_t)(end - p);
		*body = end;
	}
	*blen = (size_t)(end - *body);
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
leaf(struct ctx *c, struct mime_headers *h, const char *type,
    const char *body, size_t n, struct env env)
{
	const char *ct = mime_headers_raw(h, "Content-Type");
	char disp[32], *name, *charset;
	int enc, text, rc = 0, is_att, why = 0;

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
		charset = param_get_raw(ct, "charset");
		tbuf_break(is_att ? &c->att : &c->body, 2);
		rc = body_text(body, n, enc, charset,
		    strcmp(type, "text/html") == 0 ||
		    strcmp(type, "application/xhtml+xml") == 0 ||
		    strcmp(type, "text/enriched") == 0,
		    is_att ? &c->att : &c->body);
		g_free(charset);
	} else if (c->lim->pdf && (type_is(type, pdf_types) || (name != NULL &&
	    ends_with(name, ".pdf")))) {
		rc = body_pdf(body, n, enc, c->lim, &c->att, &why);
		c->pdf_big |= why == BODY_PDF_BIG;
		c->pdf_time |= why == BODY_PDF_TIME;
	}
	g_free(name);
	return rc;
}

/* ---- containers ------------------------------------------------------------- */

/*
 * Whether the line at Q is a delimiter of boundary B: "--" B, then "--"
 * for the last one (*CLOSE), else anything but a character that could
 * make a longer boundary. RFC 2046 asks for a prefix match ("junk" after
 * it is ignored); the exception keeps "--foo" from ending parts at an
 * inner "--foobar".
 */
static int
delimiter(const char *q, const char *end, size_t bl, int *close)
{
	const char *r = q + 2 + bl;

	*close = 0;
	if (end - r >= 2 && r[0] == '-' && r[1] == '-') {
		*close = 1;
		return 1;
	}
	return r == end || !(g_ascii_isalnum(*r) || strchr("'()+_,-./:=?", *r));
}

/* The start of the line end before Q (it belongs to the delimiter). */
static const char *
before_eol(const char *start, const char *q)
{
	if (q > start && q[-1] == '\n')
		q--;
	if (q > start && q[-1] == '\r')
		q--;
	return q;
}

/* NEEDLE (N > 0 bytes) in HAY (HN bytes); memmem is a GNU extension. */
static const char *
find(const char *hay, size_t hn, const char *needle, size_t n)
{
	const char *p = hay, *end = hay + hn;

	while ((size_t)(end - p) >= n &&
	    (p = memchr(p, needle[0], (size_t)(end - p) - n + 1)) != NULL) {
		if (memcmp(p, needle, n) == 0)
			return p;
		p++;
	}
	return NULL;
}

static const char *
after_line(const char *q, const char *end)
{
	const char *line;
	size_t len;

	(void)next_line(&q, end, &line, &len);
	return q;
}

static int
multipart(struct ctx *c, struct mime_headers *h, const char *type,
    const char *body, size_t n, int depth, struct env env)
{
	const char *end = body + n, *q, *part = NULL;
	char *b, needle[MAX_BOUNDARY + 3];
	size_t bl;
	struct env sub = { 0, env.nested, 0, 0 };
	int close = 0, rc = 0;

	if (strcmp(type, "multipart/encrypted") == 0)
		return 0;	/* nothing readable inside */
	if (depth + 1 > c->lim->max_depth || depth + 1 > DEPTH_CEILING) {
		c->depth_cut = 1;
		return 0;
	}
	b = param_get_raw(mime_headers_raw(h, "Content-Type"), "boundary");
	if (b == NULL || (bl = strlen(b)) == 0 || bl > MAX_BOUNDARY) {
		g_free(b);	/* no boundary: the body as one part */
		return entity(c, body, n, depth + 1, sub);
	}
	sub.digest = strcmp(type, "multipart/digest") == 0;
	sub.related = strcmp(type, "multipart/related") == 0;
	needle[0] = needle[1] = '-';
	memcpy(needle + 2, b, bl);
	g_free(b);

	for (q = body; q < end && !close && rc == 0; q++) {
		if ((q = find(q, (size_t)(end - q), needle, bl + 2)) == NULL)
			break;
		if ((q > body && q[-1] != '\n' && q[-1] != '\r') ||
		    !delimiter(q, end, bl, &close))
			continue;
		if (part == NULL && close)
			part = body;	/* only a last one: before it is a part */
		if (part != NULL)
			rc = entity(c, part, (size_t)(before_eol(part, q) - part),
			    depth + 1, sub);
		part = after_line(q, end);
		if (c->parts >= c->lim->max_parts) {
			if (!close && part < end)
				c->parts_cut = 1;
			return rc;
		}
		q = part - 1;
	}
	if (part == NULL)	/* no delimiter at all: the body as a part */
		part = body;
	if (rc == 0 && !close && part < end)
		rc = entity(c, part, (size_t)(end - part), depth + 1, sub);
	return rc;
}

/* An attached message: its text goes to the body of this one. */
static int
message(struct ctx *c, struct mime_headers *h, const char *body, size_t n,
    int depth, struct env env)
{
	struct env sub = { 1, 1, 0, 0 };
	char disp[32], *name;
	GString *dec;
	int enc, rc, never = 0;
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
		return 0;
	}
	enc = decode_kind(mime_headers_raw(h, "Content-Transfer-Encoding"));
	tbuf_break(&c->body, 2);
	if (enc == ENC_NONE)
		return entity(c, body, n, depth + 1, sub);
	/* an encoded message (not allowed, but sent): decoded in memory */
	bound = decode_bound(n, enc);
	if (c->held + bound > 4 * c->lim->max_text) {
		c->msg_big = 1;
		return 0;
	}
	dec = g_string_sized_new(bound + 1);
	(void)decode_body(body, n, enc, gstring_emit, dec, &never);
	c->held += bound;
	rc = entity(c, dec->str, dec->len, depth + 1, sub);
	c->held -= bound;
	g_string_free(dec, TRUE);
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

/* One entity: a message or a MIME part, at nesting DEPTH. */
static int
entity(struct ctx *c, const char *p, size_t n, int depth, struct env env)
{
	struct mime_headers *h;
	const char *hdr, *body;
	size_t hlen, blen;
	char type[128];
	int rc = 0;

	if (c->parts >= c->lim->max_parts) {
		c->parts_cut = 1;
		return 0;
	}
	c->parts++;
	split_entity(p, n, env.msg, &hdr, &hlen, &body, &blen);
	if ((h = mime_headers_parse(hdr, hlen)) == NULL)
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
		rc = multipart(c, h, type, body, blen, depth, env);
	else if (strcmp(type, "message/rfc822") == 0 ||
	    strcmp(type, "message/global") == 0 ||
	    strcmp(type, "message/news") == 0)
		rc = message(c, h, body, blen, depth, env);
	else if (strcmp(type, "message/partial") == 0 ||
	    strcmp(type, "message/external-body") == 0)
		rc = 0;		/* no text of its own */
	else
		rc = leaf(c, h, type, body, blen, env);
	mime_headers_free(h);
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

int
extract_message(const char *data, size_t len, const struct extract_limits *lim,
    struct extract_text *out)
{
	struct extract_limits def;
	struct env top = { 1, 0, 0, 0 };
	struct ctx c;
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

	rc = entity(&c, data != NULL ? data : "", data != NULL ? len : 0, 0,
	    top);
	for (i = 0; i < 7; i++)
		if (rc == 0 && tbuf_take(all[i], dst[i]) == -1)
			rc = -1;
	for (i = 0; i < 7; i++)
		tbuf_free(all[i]);
	if (rc != 0) {
		extract_text_free(out);
		return -1;
	}
	out->attachment_count = c.attachments;
	notes(&c, out);
	return 0;
}

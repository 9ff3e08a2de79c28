/*
 * HTML to text, for the index only: no tree, no rendering, one pass over
 * the bytes with a fixed-size state, so hostile markup (an endless
 * attribute, a comment that never closes, a megabyte entity) costs time
 * linear in its size and no memory. What browsers do on broken markup is
 * followed where it is cheap: a '<' not followed by a tag name is text, an
 * unknown reference stays as written.
 */
#include <string.h>

#include "search/charset.h"
#include "search/html.h"

enum {
	TEXT,
	LT,		/* after '<' */
	TAGNAME,
	INTAG,		/* attributes, up to '>' */
	QUOTED,		/* an attribute value in quotes */
	BANG,		/* after "<!" */
	BANG1,		/* after "<!-" */
	COMMENT,
	DECL,		/* <!DOCTYPE ...>, <?xml ...?>: up to '>' */
	RAW,		/* inside <script> or <style> */
	ENTITY		/* after '&' */
};

/* Named references: the common ones, Latin-1 and Greek. */
static const char *const latin1[96] = {	/* U+00A0 .. U+00FF */
	"nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect",
	"uml", "copy", "ordf", "laquo", "not", "shy", "reg", "macr",
	"deg", "plusmn", "sup2", "sup3", "acute", "micro", "para", "middot",
	"cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34",
	"iquest", "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring",
	"AElig", "Ccedil", "Egrave", "Eacute", "Ecirc", "Euml", "Igrave",
	"Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
	"Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute",
	"Ucirc", "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute",
	"acirc", "atilde", "auml", "aring", "aelig", "ccedil", "egrave",
	"eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth",
	"ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide",
	"oslash", "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn",
	"yuml"
};

static const char *const greek[25] = {	/* U+0391 .. U+03A9, +0x20 lower */
	"Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta",
	"Iota", "Kappa", "Lambda", "Mu", "Nu", "Xi", "Omicron", "Pi", "Rho",
	NULL, "Sigma", "Tau", "Upsilon", "Phi", "Chi", "Psi", "Omega"
};

static const struct { const char *name; unsigned int c; } named[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
	{ "apos", '\'' }, { "AMP", '&' }, { "LT", '<' }, { "GT", '>' },
	{ "QUOT", '"' }, { "OElig", 0x152 }, { "oelig", 0x153 },
	{ "Scaron", 0x160 }, { "scaron", 0x161 }, { "Yuml", 0x178 },
	{ "fnof", 0x192 }, { "circ", 0x2c6 }, { "tilde", 0x2dc },
	{ "sigmaf", 0x3c2 }, { "ensp", 0x2002 }, { "emsp", 0x2003 },
	{ "thinsp", 0x2009 }, { "zwnj", 0x200c }, { "zwj", 0x200d },
	{ "lrm", 0x200e }, { "rlm", 0x200f }, { "ndash", 0x2013 },
	{ "mdash", 0x2014 }, { "lsquo", 0x2018 }, { "rsquo", 0x2019 },
	{ "sbquo", 0x201a }, { "ldquo", 0x201c }, { "rdquo", 0x201d },
	{ "bdquo", 0x201e }, { "dagger", 0x2020 }, { "Dagger", 0x2021 },
	{ "bull", 0x2022 }, { "hellip", 0x2026 }, { "permil", 0x2030 },
	{ "prime", 0x2032 }, { "Prime", 0x2033 }, { "lsaquo", 0x2039 },
	{ "rsaquo", 0x203a }, { "euro", 0x20ac }, { "trade", 0x2122 },
	{ "larr", 0x2190 }, { "uarr", 0x2191 }, { "rarr", 0x2192 },
	{ "darr", 0x2193 }, { "harr", 0x2194 }, { "minus", 0x2212 },
	{ "infin", 0x221e }, { "asymp", 0x2248 }, { "ne", 0x2260 },
	{ "le", 0x2264 }, { "ge", 0x2265 }, { NULL, 0 }
};

/* Tags after which the text goes on on a new line. */
static const char *const blocks[] = {
	"p", "div", "br", "tr", "li", "ul", "ol", "dl", "dt", "dd", "table",
	"h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
	"section", "article", "header", "footer", "nav", "aside", "form",
	"title", "address", "center", "fieldset", "figure", "figcaption",
	"main", "option", "caption", "thead", "tbody", "tfoot", "body",
	"head", "html", NULL
};

/* Tags that separate words without starting a line. */
static const char *const spaces[] = { "td", "th", "img", "input", NULL };

static int
in(const char *const *list, const char *s)
{
	for (; *list != NULL; list++)
		if (strcmp(*list, s) == 0)
			return 1;
	return 0;
}

static int
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
is_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

void
html_init(struct html *h, text_emit emit, void *ud)
{
	memset(h, 0, sizeof *h);
	h->emit = emit;
	h->ud = ud;
	h->state = TEXT;
}

static int
flush(struct html *h)
{
	int rc = 0;

	if (h->nout > 0)
		rc = h->emit(h->ud, h->out, h->nout);
	h->nout = 0;
	return rc;
}

static int
out(struct html *h, const char *s, size_t n)
{
	if (h->nout + n > sizeof h->out && flush(h) == -1)
		return -1;
	memcpy(h->out + h->nout, s, n);
	h->nout += n;
	return 0;
}

static int
outc(struct html *h, char c)
{
	return out(h, &c, 1);
}

/* The end of a tag: what its name means for the text. */
static int
tag_done(struct html *h)
{
	h->tag[h->ntag] = '\0';
	h->state = TEXT;
	if (!h->closing && strcmp(h->tag, "script") == 0)
		h->raw = "script";
	else if (!h->closing && strcmp(h->tag, "style") == 0)
		h->raw = "style";
	if (h->raw != NULL) {
		h->state = RAW;
		h->rawm = 0;
	}
	if (in(blocks, h->tag))
		return outc(h, '\n');
	if (in(spaces, h->tag))
		return outc(h, ' ');
	return 0;
}

/* The code point of the reference in h->ent, or 0 when there is none. */
static unsigned int
resolve(struct html *h)
{
	const char *e = h->ent;
	unsigned long v = 0;
	size_t i;
	int hex;

	h->ent[h->nent] = '\0';
	if (e[0] == '#') {
		hex = e[1] == 'x' || e[1] == 'X';
		i = hex ? 2 : 1;
		if (e[i] == '\0')
			return 0;
		for (; e[i] != '\0'; i++) {
			unsigned char c = (unsigned char)e[i];
			unsigned int d;

			if (is_digit(c))
				d = c - '0';
			else if (hex && lower(c) >= 'a' && lower(c) <= 'f')
				d = lower(c) - 'a' + 10u;
			else
				return 0;
			v = v * (hex ? 16 : 10) + d;
			if (v > 0x10ffff)
				v = 0x110000;	/* stays too big */
		}
		if (v >= 0x80 && v < 0xa0)	/* as HTML5: Windows-1252 */
			return cp1252_char((unsigned char)v);
		if (v == 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			return 0xfffd;
		return (unsigned int)v;
	}
	for (i = 0; i < 96; i++)
		if (strcmp(e, latin1[i]) == 0)
			return 0xa0 + (unsigned int)i;
	for (i = 0; i < 25; i++) {
		if (greek[i] == NULL)
			continue;
		if (strcmp(e, greek[i]) == 0)
			return 0x391 + (unsigned int)i;
		if (lower((unsigned char)e[0]) == lower((unsigned char)greek[i][0]) &&
		    e[0] >= 'a' && strcmp(e + 1, greek[i] + 1) == 0)
			return 0x3b1 + (unsigned int)i;
	}
	for (i = 0; named[i].name != NULL; i++)
		if (strcmp(e, named[i].name) == 0)
			return named[i].c;
	return 0;
}

/* The reference ended (by C, or by ';' when SEMI): its text out. */
static int
entity_done(struct html *h, int semi)
{
	unsigned int c = resolve(h);
	char u[4];

	h->state = TEXT;
	if (c != 0)
		return out(h, u, utf8_put(c, u));
	/* not a reference: as written */
	if (outc(h, '&') == -1 || out(h, h->ent, h->nent) == -1)
		return -1;
	return semi ? outc(h, ';') : 0;
}

/* One byte of script or style: looks for its end tag only. */
static int
raw_byte(struct html *h, unsigned char c)
{
	size_t len = strlen(h->raw);

	if (h->rawm == 0 || (h->rawm == 1 && c != '/')) {
		h->rawm = c == '<';
		return 0;
	}
	if (h->rawm == 1) {	/* "</" */
		h->rawm = 2;
		return 0;
	}
	if (h->rawm - 2 < len) {
		if (lower(c) == (unsigned char)h->raw[h->rawm - 2])
			h->rawm++;
		else
			h->rawm = c == '<';
		return 0;
	}
	if (is_blank(c) || c == '/' || c == '>') {
		memcpy(h->tag, h->raw, len + 1);
		h->ntag = len;
		h->closing = 1;
		h->raw = NULL;
		h->state = INTAG;
		h->eq = 0;
		if (c == '>')
			return tag_done(h);
		return 0;
	}
	h->rawm = c == '<';
	return 0;
}

/* One byte; returns 1 when C must be read again in the new state. */
static int
byte(struct html *h, unsigned char c)
{
	switch (h->state) {
	case TEXT:
		if (c == '<')
			h->state = LT;
		else if (c == '&') {
			h->state = ENTITY;
			h->nent = 0;
		} else if (is_blank(c))
			return outc(h, ' ');
		else
			return outc(h, (char)c);
		return 0;
	case LT:
		h->closing = 0;
		h->ntag = 0;
		if (c == '/') {
			h->closing = 1;
			h->state = TAGNAME;
		} else if (is_alpha(c)) {
			h->state = TAGNAME;
			return 1;
		} else if (c == '!')
			h->state = BANG;
		else if (c == '?')
			h->state = DECL;
		else {
			h->state = TEXT;	/* "a < b" */
			return outc(h, '<') == -1 ? -1 : 1;
		}
		return 0;
	case TAGNAME:
		if (is_alpha(c) || is_digit(c) || c == '-' || c == ':') {
			if (h->ntag < sizeof h->tag - 1)
				h->tag[h->ntag++] = (char)lower(c);
			return 0;
		}
		h->state = INTAG;
		h->eq = 0;
		return 1;
	case INTAG:
		if (c == '>')
			return tag_done(h);
		if ((c == '"' || c == '\'') && h->eq) {
			h->quote = (char)c;
			h->state = QUOTED;
		}
		if (!is_blank(c))
			h->eq = c == '=';
		return 0;
	case QUOTED:
		if (c == (unsigned char)h->quote) {
			h->state = INTAG;
			h->eq = 0;
		}
		return 0;
	case BANG:
		h->state = c == '-' ? BANG1 : c == '>' ? TEXT : DECL;
		return 0;
	case BANG1:
		h->dashes = 0;
		h->state = c == '-' ? COMMENT : c == '>' ? TEXT : DECL;
		return 0;
	case COMMENT:
		if (c == '>' && h->dashes >= 2)
			h->state = TEXT;
		else if (c == '-')
			h->dashes++;
		else if (c != '!')	/* "--!>" ends one too */
			h->dashes = 0;
		return 0;
	case DECL:
		if (c == '>')
			h->state = TEXT;
		return 0;
	case RAW:
		return raw_byte(h, c);
	case ENTITY:
		if (c == ';')
			return entity_done(h, 1);
		if ((is_alpha(c) || is_digit(c) || (c == '#' && h->nent == 0)) &&
		    h->nent < sizeof h->ent - 2) {
			h->ent[h->nent++] = (char)c;
			return 0;
		}
		return entity_done(h, 0) == -1 ? -1 : 1;
	}
	return 0;
}

int
html_feed(void *ud, const char *s, size_t n)
{
	struct html *h = ud;
	size_t i;
	int r;

	for (i = 0; i < n; ) {
		if ((r = byte(h, (unsigned char)s[i])) == -1)
			return -1;
		if (r == 0)
			i++;
	}
	return flush(h);
}

int
html_finish(struct html *h)
{
	if (h->state == ENTITY && entity_done(h, 0) == -1)
		return -1;
	if (h->state == LT && outc(h, '<') == -1)
		return -1;
	h->state = TEXT;
	return flush(h);
}

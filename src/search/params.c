/*
 * MIME parameters, parsed here rather than by GMime's Content-Type parser
 * for two reasons: GMime keeps every charset name an RFC 2231 value names,
 * for the life of the process (hostile mail grows it without bound), and
 * this extractor reads charsets one way everywhere (search/charset.c).
 * RFC 2047 words and raw 8-bit values do go to GMime, through
 * mime_decode_text, which vets charset names the same way the header
 * decoder does.
 *
 * The syntax is taken loosely, as mailers write it: a value runs to the
 * next ';' unless quoted, an unterminated quote runs to the end, white
 * space around '=' is allowed, the first of two equal parameters wins.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <glib.h>

#include "mime/headers.h"
#include "search/charset.h"
#include "search/params.h"

#define MAX_SECTIONS 64		/* RFC 2231 continuations kept */

struct section {
	int index;
	int encoded;		/* "*N*=": %XX and maybe charset'lang' */
	char *value;		/* g_malloc'd */
};

static int
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

void
param_token(const char *v, char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = '\0';
	if (v == NULL)
		return;
	while (blank(*v))
		v++;
	while (v[len] != '\0' && v[len] != ';' && !blank(v[len]) &&
	    v[len] != '(')
		len++;
	if (len == 0 || len >= n)
		return;
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)g_ascii_tolower(v[i]);
	buf[len] = '\0';
}

/* A value at *PP: quoted (backslash escapes) or up to ';'. */
static char *
read_value(const char **pp)
{
	const char *p = *pp, *start;
	GString *s;

	if (*p != '"') {
		start = p;
		while (*p != '\0' && *p != ';')
			p++;
		*pp = p;
		while (p > start && blank(p[-1]))
			p--;
		return g_strndup(start, (gsize)(p - start));
	}
	s = g_string_new("");
	for (p++; *p != '\0' && *p != '"'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		if (s->len < PARAM_MAX)
			g_string_append_c(s, *p);
	}
	if (*p == '"')
		p++;
	*pp = p;
	return g_string_free(s, FALSE);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)g_ascii_tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends S with %XX decoded (a lone '%' stays). */
static void
pct_append(GString *out, const char *s)
{
	int hi, lo;

	for (; *s != '\0' && out->len < PARAM_MAX; s++) {
		if (*s == '%' && (hi = hexval(s[1])) >= 0 &&
		    (lo = hexval(s[2])) >= 0) {
			g_string_append_c(out, (char)(hi << 4 | lo));
			s += 2;
		} else
			g_string_append_c(out, *s);
	}
}

static int
gstring_emit(void *ud, const char *s, size_t n)
{
	g_string_append_len(ud, s, (gssize)n);
	return 0;
}

/* RFC 2231 bytes RAW in CHARSET (may be "") to text. */
static char *
from_charset(const char *charset, const GString *raw)
{
	struct conv c;
	GString *out;

	if (*charset == '\0')	/* no charset: as a plain value */
		return mime_decode_text(raw->str, raw->len);
	out = g_string_sized_new(raw->len + 16);
	if (conv_open(&c, charset, gstring_emit, out) == 0) {
		(void)conv_feed(&c, raw->str, raw->len);	/* cannot fail */
		(void)conv_finish(&c);
		conv_close(&c);
	}
	return g_string_free(out, FALSE);
}

/*
 * Splits "charset'lang'rest" at *V: the charset into CS (N bytes) and *V
 * moved past the second quote. Without two quotes, nothing is taken.
 */
static void
take_charset(const char **v, char *cs, size_t n)
{
	const char *q1 = strchr(*v, '\''), *q2;

	cs[0] = '\0';
	if (q1 == NULL || (q2 = strchr(q1 + 1, '\'')) == NULL)
		return;
	if ((size_t)(q1 - *v) < n) {
		memcpy(cs, *v, (size_t)(q1 - *v));
		cs[q1 - *v] = '\0';
	}
	*v = q2 + 1;
}

static int
by_index(const void *a, const void *b)
{
	const struct section *x = a, *y = b;

	return (x->index > y->index) - (x->index < y->index);
}

/* The sections of a continued value, sorted, as one decoded value. */
static char *
join(struct section *sec, size_t n)
{
	GString *raw = g_string_new("");
	char cs[48] = "", *res;
	const char *v;
	size_t i;
	int encoded = 0;

	qsort(sec, n, sizeof *sec, by_index);
	for (i = 0; i < n; i++) {
		v = sec[i].value;
		if (i == 0 && sec[i].encoded)
			take_charset(&v, cs, sizeof cs);
		if (sec[i].encoded) {
			encoded = 1;
			pct_append(raw, v);
		} else if (raw->len < PARAM_MAX)
			g_string_append(raw, v);
	}
	if (!encoded)
		cs[0] = '\0';
	res = from_charset(cs, raw);
	g_string_free(raw, TRUE);
	return res;
}

static char *
get(const char *v, const char *name, int decode)
{
	struct section sec[MAX_SECTIONS];
	const char *p, *a, *star;
	char *val, *plain = NULL, *ext = NULL, *res = NULL, cs[48];
	size_t nsec = 0, alen, nlen = strlen(name), i;
	GString *raw;

	if (v == NULL || (p = strchr(v, ';')) == NULL)
		return NULL;
	while (*p != '\0') {
		while (*p == ';' || blank(*p))
			p++;
		a = p;
		while (*p != '\0' && *p != '=' && *p != ';' && !blank(*p))
			p++;
		alen = (size_t)(p - a);
		while (blank(*p))
			p++;
		if (*p != '=')
			continue;	/* not name=value: skipped */
		p++;
		while (blank(*p))
			p++;
		val = read_value(&p);
		star = memchr(a, '*', alen);
		if ((size_t)((star ? star : a + alen) - a) != nlen ||
		    g_ascii_strncasecmp(a, name, nlen) != 0) {
			g_free(val);
			continue;
		}
		if (star == NULL && plain == NULL)
			plain = val;
		else if (star != NULL && star + 1 == a + alen && ext == NULL)
			ext = val;		/* name*=charset'lang'%XX */
		else if (star != NULL && g_ascii_isdigit(star[1]) &&
		    nsec < MAX_SECTIONS) {	/* name*N= or name*N*= */
			char *end;
			long idx = strtol(star + 1, &end, 10);

			sec[nsec].index = idx > 9999 ? 9999 : (int)idx;
			sec[nsec].encoded = end < a + alen && *end == '*';
			sec[nsec++].value = val;
		} else
			g_free(val);
	}
	if (!decode) {		/* boundary, charset: plain values only */
		res = plain;
		plain = NULL;
	} else if (ext != NULL) {
		const char *e = ext;

		take_charset(&e, cs, sizeof cs);
		raw = g_string_new("");
		pct_append(raw, e);
		res = from_charset(cs, raw);
		g_string_free(raw, TRUE);
	} else if (nsec > 0)
		res = join(sec, nsec);
	else if (plain != NULL)
		res = mime_decode_text(plain, strlen(plain));
	for (i = 0; i < nsec; i++)
		g_free(sec[i].value);
	g_free(plain);
	g_free(ext);
	return res;
}

char *
param_get(const char *v, const char *name)
{
	return get(v, name, 1);
}

char *
param_get_raw(const char *v, const char *name)
{
	return get(v, name, 0);
}

/*
 * The text sink: the one place where extracted text is made fit for the
 * index. Every byte goes through tbuf_put, so the promises of
 * extract_message (valid UTF-8, no NULs, no controls but \n) hold however
 * sloppy the decoders before it are.
 *
 * White space is not written when seen but remembered, and only written
 * (one space, or one or two line ends) before the next character: runs
 * collapse, fields never end in white space, and the budget is not spent
 * on blanks nobody searches for.
 */
#include <stdlib.h>
#include <string.h>

#include "search/text.h"

void
tbuf_init(struct tbuf *t, struct text_budget *b)
{
	memset(t, 0, sizeof *t);
	t->b = b;
}

void
tbuf_free(struct tbuf *t)
{
	free(t->s);
	t->s = NULL;
	t->len = t->cap = 0;
}

size_t
utf8_put(unsigned int c, char *o)
{
	if (c < 0x80) {
		o[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (char)(0xc0 | c >> 6);
		o[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (char)(0xe0 | c >> 12);
		o[1] = (char)(0x80 | (c >> 6 & 0x3f));
		o[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | c >> 18);
	o[1] = (char)(0x80 | (c >> 12 & 0x3f));
	o[2] = (char)(0x80 | (c >> 6 & 0x3f));
	o[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

static int
grow(struct tbuf *t, size_t n)
{
	size_t cap;
	char *s;

	if (t->cap - t->len > n)
		return 0;
	cap = t->cap ? t->cap : 256;
	while (cap - t->len <= n)
		cap *= 2;
	if ((s = realloc(t->s, cap)) == NULL)
		return -1;
	t->s = s;
	t->cap = cap;
	return 0;
}

/*
 * Writes the pending white space and N bytes of characters at S. ASCII
 * runs may be cut anywhere (ASCII is true when N > 1 comes from the run
 * path); a multi-byte character is written whole or not at all.
 */
static int
emit(struct tbuf *t, const char *s, size_t n, int ascii)
{
	size_t sep = 0;

	if (t->b->cut)
		return 0;
	if (t->len > 0)
		sep = t->nl ? (size_t)t->nl : t->space ? 1 : 0;
	if (sep + n > t->b->left) {
		t->b->cut = 1;
		if (!ascii || sep >= t->b->left)
			return 0;
		n = t->b->left - sep;
	}
	if (grow(t, sep + n) == -1)
		return -1;
	if (sep > 0 && t->nl)
		memset(t->s + t->len, '\n', sep);
	else if (sep > 0)
		t->s[t->len] = ' ';
	memcpy(t->s + t->len + sep, s, n);
	t->len += sep + n;
	t->b->left -= sep + n;
	t->nl = t->space = 0;
	return 0;
}

static void
newline(struct tbuf *t)
{
	if (t->nl < 2)
		t->nl++;
}

/* One decoded character C (its UTF-8 bytes at S, N). */
static int
character(struct tbuf *t, unsigned int c, const char *s, size_t n)
{
	if (c <= 0xa0) {		/* C1 controls, no-break space */
		t->space = 1;
		return 0;
	}
	if (c == 0xfeff)			/* byte order mark */
		return 0;
	if (c == 0x2028 || c == 0x2029) {
		newline(t);
		return 0;
	}
	return emit(t, s, n, 0);
}

static int
replacement(struct tbuf *t)
{
	return emit(t, "\xef\xbf\xbd", 3, 0);
}

/* Whether B may follow the lead byte L as its first continuation byte. */
static int
second_ok(unsigned char l, unsigned char b)
{
	if (b < 0x80 || b > 0xbf)
		return 0;
	switch (l) {
	case 0xe0: return b >= 0xa0;		/* overlong */
	case 0xed: return b <= 0x9f;		/* surrogates */
	case 0xf0: return b >= 0x90;		/* overlong */
	case 0xf4: return b <= 0x8f;		/* past U+10FFFF */
	default: return 1;
	}
}

static unsigned int
decode_part(const unsigned char *p, int n)
{
	unsigned int c = p[0] & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
	int i;

	for (i = 1; i < n; i++)
		c = c << 6 | (p[i] & 0x3f);
	return c;
}

int
tbuf_put(void *ud, const char *str, size_t len)
{
	struct tbuf *t = ud;
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, j;
	unsigned char c;

	while (i < len) {
		if (t->b->cut)
			return 0;
		c = s[i];
		if (t->want > 0) {
			if (t->npart == 1 ? !second_ok(t->part[0], c) :
			    c < 0x80 || c > 0xbf) {
				t->want = t->npart = 0;	/* reread C */
				if (replacement(t) == -1)
					return -1;
				continue;
			}
			t->part[t->npart++] = c;
			i++;
			if (--t->want == 0) {
				if (character(t, decode_part(t->part, t->npart),
				    (const char *)t->part, (size_t)t->npart) == -1)
					return -1;
				t->npart = 0;
			}
			continue;
		}
		if (c > 0x20 && c < 0x7f) {
			for (j = i + 1; j < len && s[j] > 0x20 && s[j] < 0x7f; j++)
				;
			if (emit(t, str + i, j - i, 1) == -1)
				return -1;
			t->cr = 0;
			i = j;
			continue;
		}
		i++;
		if (c < 0x80) {
			if (c == '\n' && t->cr)
				;		/* CRLF: one line end */
			else if (c == '\n' || c == '\r')
				newline(t);
			else
				t->space = 1;	/* blanks, controls, DEL */
			t->cr = c == '\r';
			continue;
		}
		t->cr = 0;
		t->part[0] = c;
		t->npart = 1;
		if (c >= 0xc2 && c <= 0xdf)
			t->want = 1;
		else if (c >= 0xe0 && c <= 0xef)
			t->want = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			t->want = 3;
		else {
			t->npart = 0;
			if (replacement(t) == -1)
				return -1;
		}
	}
	return 0;
}

void
tbuf_break(struct tbuf *t, int lines)
{
	if (t->nl < lines)
		t->nl = lines;
}

int
tbuf_take(struct tbuf *t, char **out)
{
	if (t->want > 0) {
		t->want = t->npart = 0;
		if (replacement(t) == -1)
			return -1;
	}
	if (grow(t, 0) == -1)
		return -1;
	t->s[t->len] = '\0';
	*out = t->s;
	t->s = NULL;
	t->len = t->cap = 0;
	t->space = t->nl = t->cr = 0;
	return 0;
}

/*
 * Modified UTF-7 (RFC 3501 section 5.1.3): printable ASCII stands for
 * itself, "&" is "&-", anything else is UTF-16BE in base64 with ',' for
 * '/', no padding, between "&" and "-".
 */
#include <stdint.h>

#include "imap/utf7.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

struct out {
	char *p;
	size_t cap, len;
	int full;
};

static void
put(struct out *o, char c)
{
	if (o->len + 1 >= o->cap) {	/* keep room for the NUL */
		o->full = 1;
		return;
	}
	o->p[o->len++] = c;
}

static void
put_utf8(struct out *o, uint32_t cp)
{
	if (cp < 0x80) {
		put(o, (char)cp);
	} else if (cp < 0x800) {
		put(o, (char)(0xc0 | cp >> 6));
		put(o, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		put(o, (char)(0xe0 | cp >> 12));
		put(o, (char)(0x80 | ((cp >> 6) & 0x3f)));
		put(o, (char)(0x80 | (cp & 0x3f)));
	} else {
		put(o, (char)(0xf0 | cp >> 18));
		put(o, (char)(0x80 | ((cp >> 12) & 0x3f)));
		put(o, (char)(0x80 | ((cp >> 6) & 0x3f)));
		put(o, (char)(0x80 | (cp & 0x3f)));
	}
}

static int
finish(struct out *o, size_t *outlen)
{
	if (o->cap == 0)
		return IMAP_UTF7_ESPACE;
	o->p[o->len < o->cap ? o->len : o->cap - 1] = '\0';
	if (o->full)
		return IMAP_UTF7_ESPACE;
	if (outlen)
		*outlen = o->len;
	return 0;
}

/* One UTF-8 sequence at s[*i]: the code point, or -1 if invalid. */
static int32_t
utf8_next(const unsigned char *s, size_t len, size_t *i)
{
	uint32_t cp, min;
	size_t n, k;
	unsigned char c = s[*i];

	if (c < 0x80) {
		n = 0;
		cp = c;
		min = 0;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return -1;
	}
	if (n > len - *i - 1)
		return -1;
	for (k = 1; k <= n; k++) {
		if ((s[*i + k] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (s[*i + k] & 0x3f);
	}
	/* overlong, surrogate or beyond Unicode */
	if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return -1;
	*i += n + 1;
	return (int32_t)cp;
}

int
imap_utf8_valid(const char *s, size_t len)
{
	size_t i = 0;
	int32_t cp;

	while (i < len)
		if ((cp = utf8_next((const unsigned char *)s, len, &i)) <= 0)
			return 0;
	return 1;
}

int
imap_utf7_decode(const char *in, size_t len, char *out, size_t cap,
    size_t *outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	struct out o = { out, cap, 0, 0 };
	size_t i = 0, shift_end = (size_t)-1, units;
	uint32_t bits, nbits, u, hi, cp;
	int v;

	while (i < len) {
		if (s[i] != '&') {
			if (s[i] < 0x20 || s[i] > 0x7e)
				goto bad;
			put(&o, (char)s[i++]);
			continue;
		}
		if (i + 1 < len && s[i + 1] == '-') {
			put(&o, '&');
			i += 2;
			continue;
		}
		/* an encoder would have merged two adjacent runs */
		if (i == shift_end)
			goto bad;
		i++;
		bits = nbits = hi = 0;
		units = 0;
		for (; i < len && s[i] != '-'; i++) {
			if ((v = b64val(s[i])) < 0)
				goto bad;
			bits = (bits << 6 | (uint32_t)v) & 0xffffff;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			u = (bits >> nbits) & 0xffff;
			units++;
			if (hi) {
				if (u < 0xdc00 || u > 0xdfff)
					goto bad;
				cp = 0x10000 + ((hi - 0xd800) << 10) +
				    (u - 0xdc00);
				hi = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				hi = u;
				continue;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				goto bad;
			} else {
				cp = u;
			}
			/* printable ASCII must stand for itself; no NUL */
			if (cp == 0 || (cp >= 0x20 && cp <= 0x7e))
				goto bad;
			put_utf8(&o, cp);
		}
		/* unterminated, empty, dangling surrogate, spare bits */
		if (i >= len || units == 0 || hi || nbits >= 6 ||
		    (bits & ((1u << nbits) - 1)) != 0)
			goto bad;
		shift_end = ++i;
	}
	return finish(&o, outlen);
bad:
	finish(&o, NULL);
	return IMAP_UTF7_EINVAL;
}

/* Base64 of the pending UTF-16 bits, and the closing '-'. */
static void
flush(struct out *o, uint32_t bits, uint32_t nbits)
{
	if (nbits > 0)
		put(o, b64[(bits << (6 - nbits)) & 0x3f]);
	put(o, '-');
}

static void
push_unit(struct out *o, uint32_t *bits, uint32_t *nbits, uint32_t u)
{
	/* keep only the bits not yet written: at most 5 + 16 */
	*bits = (*bits & ((1u << *nbits) - 1)) << 16 | u;
	*nbits += 16;
	while (*nbits >= 6) {
		*nbits -= 6;
		put(o, b64[(*bits >> *nbits) & 0x3f]);
	}
}

int
imap_utf7_encode(const char *in, size_t len, char *out, size_t cap,
    size_t *outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	struct out o = { out, cap, 0, 0 };
	size_t i = 0;
	uint32_t bits = 0, nbits = 0, c;
	int32_t cp;
	int shifted = 0;

	while (i < len) {
		if ((cp = utf8_next(s, len, &i)) <= 0) {
			finish(&o, NULL);
			return IMAP_UTF7_EINVAL;
		}
		c = (uint32_t)cp;
		if (c >= 0x20 && c <= 0x7e) {
			if (shifted) {
				flush(&o, bits, nbits);
				shifted = 0;
				bits = nbits = 0;
			}
			put(&o, (char)c);
			if (c == '&')
				put(&o, '-');
			continue;
		}
		if (!shifted) {
			put(&o, '&');
			shifted = 1;
		}
		if (c >= 0x10000) {
			c -= 0x10000;
			push_unit(&o, &bits, &nbits, 0xd800 + (c >> 10));
			push_unit(&o, &bits, &nbits, 0xdc00 + (c & 0x3ff));
		} else {
			push_unit(&o, &bits, &nbits, c);
		}
	}
	if (shifted)
		flush(&o, bits, nbits);
	return finish(&o, outlen);
}

int
imap_name_escape(const char *in, size_t len, char *out, size_t cap, size_t *outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *s = (const unsigned char *)in;
	struct out o = { out, cap, 0, 0 };
	size_t i = 0;

	while (i < len) {
		size_t at = i;
		int32_t cp = utf8_next(s, len, &i);
		if (cp == '\\') {
			put(&o, '\\');
			put(&o, '\\');
		} else if (cp < 0x20 || cp == 0x7f) {
			/* not UTF-8 (cp -1, i unmoved), or a control character */
			put(&o, '\\');
			put(&o, 'x');
			put(&o, hex[s[at] >> 4]);
			put(&o, hex[s[at] & 15]);
			i = at + 1;
		} else {
			for (size_t k = at; k < i; k++)
				put(&o, (char)s[k]);
		}
	}
	return finish(&o, outlen);
}

#include "s3/xml.h"

#include <stdlib.h>
#include <string.h>

/* Where "<NAME" followed by '>', '/', or white space starts, from POS. */
static const char *
find_open(const char *xml, size_t len, const char *name, size_t pos, const char **after)
{
	size_t n = strlen(name);

	while (pos + n + 1 < len + 1) {
		const char *lt = memchr(xml + pos, '<', len - pos);
		if (lt == NULL)
			return NULL;
		size_t at = (size_t)(lt - xml);
		if (at + 1 + n < len && memcmp(lt + 1, name, n) == 0) {
			char c = lt[1 + n];
			if (c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\r' || c == '\n') {
				const char *gt = memchr(lt, '>', len - at);
				if (gt == NULL)
					return NULL;
				*after = gt + 1;
				return lt;
			}
		}
		pos = at + 1;
	}
	return NULL;
}

/* The "</NAME>" that closes an element whose content starts at FROM. S3's
 * answers do not nest an element inside one of the same name. */
static const char *
find_close(const char *xml, size_t len, const char *name, const char *from)
{
	size_t n = strlen(name);

	for (const char *p = from; p + n + 3 <= xml + len; p++) {
		p = memchr(p, '<', (size_t)(xml + len - p));
		if (p == NULL || p + n + 3 > xml + len)
			return NULL;
		if (p[1] == '/' && memcmp(p + 2, name, n) == 0 && p[2 + n] == '>')
			return p;
	}
	return NULL;
}

int
s3_xml_next(const char *xml, size_t len, const char *name, size_t *pos, const char **inner,
    size_t *inner_len)
{
	const char *after, *open, *close;

	if (*pos >= len || (open = find_open(xml, len, name, *pos, &after)) == NULL)
		return 0;
	if (after[-2] == '/') {		/* <NAME/> */
		*inner = after;
		*inner_len = 0;
		*pos = (size_t)(after - xml);
		return 1;
	}
	if ((close = find_close(xml, len, name, after)) == NULL)
		return 0;
	*inner = after;
	*inner_len = (size_t)(close - after);
	*pos = (size_t)(close - xml) + strlen(name) + 3;
	return 1;
}

/* One UTF-8 sequence for code point CP into OUT: its length (0 if invalid). */
static size_t
utf8(unsigned long cp, char *out)
{
	if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

int
s3_xml_text(const char *xml, size_t len, const char *name, char *out, size_t outlen)
{
	static const struct { const char *ent; char c; } ents[] = {
		{ "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&apos;", '\'' },
	};
	const char *inner;
	size_t ilen, pos = 0, o = 0;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (!s3_xml_next(xml, len, name, &pos, &inner, &ilen))
		return 0;
	for (size_t i = 0; i < ilen;) {
		char tmp[4];
		size_t n = 1;
		const char *src = inner + i;
		size_t adv = 1;
		if (inner[i] == '&') {
			const char *semi = memchr(inner + i, ';', ilen - i);
			size_t elen = semi ? (size_t)(semi - (inner + i)) + 1 : 0;
			n = 0;
			for (size_t k = 0; semi && k < sizeof(ents) / sizeof(ents[0]); k++)
				if (strlen(ents[k].ent) == elen && memcmp(inner + i, ents[k].ent, elen) == 0) {
					tmp[0] = ents[k].c;
					n = 1;
				}
			if (semi && n == 0 && elen > 3 && inner[i + 1] == '#') {
				int hexa = inner[i + 2] == 'x';
				char num[16];
				size_t dl = elen - 3 - (size_t)hexa;
				if (dl > 0 && dl < sizeof(num)) {
					memcpy(num, inner + i + 2 + hexa, dl);
					num[dl] = '\0';
					char *end;
					unsigned long cp = strtoul(num, &end, hexa ? 16 : 10);
					if (*end == '\0')
						n = utf8(cp, tmp);
				}
			}
			if (n == 0) {		/* not an entity we know: kept as it is */
				tmp[0] = '&';
				n = 1;
			} else {
				adv = elen;
			}
			src = tmp;
		}
		if (o + n >= outlen) {
			out[o] = '\0';
			return -1;
		}
		memcpy(out + o, src, n);
		o += n;
		i += adv;
	}
	out[o] = '\0';
	return 1;
}

char *
s3_xml_escape(const char *text)
{
	size_t n = 0;
	char *out, *p;

	for (const char *s = text; *s; s++)
		n += *s == '&' ? 5 : *s == '<' || *s == '>' ? 4 : *s == '"' || *s == '\'' ? 6 : 1;
	if ((out = malloc(n + 1)) == NULL)
		return NULL;
	p = out;
	for (const char *s = text; *s; s++) {
		const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" :
		    *s == '"' ? "&quot;" : *s == '\'' ? "&apos;" : NULL;
		if (e) {
			memcpy(p, e, strlen(e));
			p += strlen(e);
		} else {
			*p++ = *s;
		}
	}
	*p = '\0';
	return out;
}

/*
 * Building command arguments (RFC 3501 section 4 and 9; RFC 6855 for
 * UTF8=ACCEPT quoted strings).
 */
#include <stdio.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "imap/format.h"
#include "imap/utf7.h"

/* ASTRING-CHAR: ATOM-CHAR or ']'. */
static int
astring_char(unsigned char c)
{
	if (c < 0x20 || c >= 0x7f)
		return 0;
	return strchr(" (){%*\"\\", c) == NULL;
}

enum imap_str_form
imap_str_form(const char *s, size_t len, int flags)
{
	const unsigned char *u = (const unsigned char *)s;
	int atom = len > 0 && !(flags & IMAP_FMT_STRING), high = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (u[i] == '\0' || u[i] == '\r' || u[i] == '\n')
			return IMAP_FORM_LITERAL;
		if (u[i] >= 0x80)
			high = 1;
		if (!astring_char(u[i]))
			atom = 0;
	}
	if (high && !((flags & IMAP_FMT_UTF8) && imap_utf8_valid(s, len)))
		return IMAP_FORM_LITERAL;
	return atom ? IMAP_FORM_ATOM : IMAP_FORM_QUOTED;
}

static int
terminate(char *buf, size_t cap, size_t len, size_t *outlen)
{
	if (len >= cap) {
		if (cap > 0)
			buf[0] = '\0';
		return IMAP_FMT_ESPACE;
	}
	buf[len] = '\0';
	if (outlen)
		*outlen = len;
	return 0;
}

int
imap_format_astring(char *buf, size_t cap, const char *s, size_t len,
    int flags, size_t *outlen)
{
	size_t i, o = 0, need;

	switch (imap_str_form(s, len, flags)) {
	case IMAP_FORM_LITERAL:
		if (cap > 0)
			buf[0] = '\0';
		return IMAP_FMT_NEEDLIT;
	case IMAP_FORM_ATOM:
		if (len >= cap)
			return terminate(buf, cap, len, outlen);
		memcpy(buf, s, len);
		return terminate(buf, cap, len, outlen);
	case IMAP_FORM_QUOTED:
		break;
	}
	need = len + 2;
	for (i = 0; i < len; i++)
		if (s[i] == '"' || s[i] == '\\')
			need++;
	if (need >= cap)
		return terminate(buf, cap, need, outlen);
	buf[o++] = '"';
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf[o++] = '\\';
		buf[o++] = s[i];
	}
	buf[o++] = '"';
	return terminate(buf, cap, o, outlen);
}

int
imap_format_literal(char *buf, size_t cap, uint64_t len, int nonsync,
    int literal8, size_t *outlen)
{
	int n;

	n = snprintf(buf, cap, "%s{%llu%s}", literal8 ? "~" : "",
	    (unsigned long long)len, nonsync ? "+" : "");
	if (n < 0)
		return IMAP_FMT_EINVAL;
	return terminate(buf, cap, (size_t)n, outlen);
}

int
imap_format_mailbox(char *buf, size_t cap, const char *utf8, size_t len,
    int flags, size_t *outlen)
{
	size_t m, esc = 0, i, d;
	int rc;

	flags &= ~IMAP_FMT_STRING;
	if (flags & IMAP_FMT_UTF8) {
		if (!imap_utf8_valid(utf8, len))
			return IMAP_FMT_EINVAL;
		return imap_format_astring(buf, cap, utf8, len, flags, outlen);
	}
	rc = imap_utf7_encode(utf8, len, buf, cap, &m);
	if (rc == IMAP_UTF7_EINVAL) {
		if (cap > 0)
			buf[0] = '\0';
		return IMAP_FMT_EINVAL;
	}
	if (rc < 0)
		return terminate(buf, cap, cap, outlen);
	/* mUTF-7 is printable ASCII: an atom or a quoted string */
	if (imap_str_form(buf, m, 0) == IMAP_FORM_ATOM)
		return terminate(buf, cap, m, outlen);
	for (i = 0; i < m; i++)
		if (buf[i] == '"' || buf[i] == '\\')
			esc++;
	if (m + esc + 2 >= cap)
		return terminate(buf, cap, m + esc + 2, outlen);
	/* widen in place from the end: bytes only move right */
	d = m + esc + 1;
	buf[d] = '"';
	for (i = m; i > 0; i--) {
		char c = buf[i - 1];

		buf[--d] = c;
		if (c == '"' || c == '\\')
			buf[--d] = '\\';
	}
	buf[0] = '"';
	return terminate(buf, cap, m + esc + 2, outlen);
}

/* Decimal digits of v. */
static size_t
ndigits(uint32_t v)
{
	size_t n = 1;

	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

int
imap_format_uidset(char *buf, size_t cap, const uint32_t *uids, size_t n,
    size_t *used, size_t *outlen)
{
	size_t i = 0, j, o = 0, w;
	uint32_t lo, hi;

	if (cap > 0)
		buf[0] = '\0';
	if (n == 0 || uids[0] == 0)
		return IMAP_FMT_EINVAL;
	while (i < n) {
		/* the run starting at i: consecutive or repeated UIDs */
		lo = hi = uids[i];
		for (j = i + 1; j < n; j++) {
			if (uids[j] < hi)
				return IMAP_FMT_EINVAL;	/* not ascending */
			if (uids[j] > (uint64_t)hi + 1)
				break;
			hi = uids[j];
		}
		w = (o > 0) + ndigits(lo) + (lo != hi ? 1 + ndigits(hi) : 0);
		if (o + w >= cap)
			break;
		if (lo != hi)
			snprintf(buf + o, cap - o, "%s%u:%u", o ? "," : "",
			    (unsigned)lo, (unsigned)hi);
		else
			snprintf(buf + o, cap - o, "%s%u", o ? "," : "",
			    (unsigned)lo);
		o += w;
		i = j;
	}
	if (o == 0)
		return IMAP_FMT_ESPACE;
	if (used)
		*used = i;
	return terminate(buf, cap, o, outlen);
}

/* A number or '*' at s[*i]. */
static int
seq_number(const char *s, size_t len, size_t *i, uint32_t star, uint32_t *v)
{
	uint64_t x = 0;
	size_t start = *i;

	if (*i < len && s[*i] == '*') {
		(*i)++;
		if (star == 0)
			return -1;
		*v = star;
		return 0;
	}
	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		x = x * 10 + (uint64_t)(s[*i] - '0');
		if (x > UINT32_MAX)
			return -1;
		(*i)++;
	}
	if (*i == start || x == 0)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

int
imap_parse_seqset(const char *s, size_t len, uint32_t star,
    struct imap_range *out, size_t max, size_t *n)
{
	size_t i = 0, k = 0;
	uint32_t a, b;

	for (;;) {
		if (seq_number(s, len, &i, star, &a) < 0)
			return IMAP_FMT_EINVAL;
		b = a;
		if (i < len && s[i] == ':') {
			i++;
			if (seq_number(s, len, &i, star, &b) < 0)
				return IMAP_FMT_EINVAL;
		}
		if (k >= max)
			return IMAP_FMT_ESPACE;
		/* "5:2" is the same set as "2:5" (RFC 3501 seq-range) */
		out[k].lo = a < b ? a : b;
		out[k].hi = a < b ? b : a;
		k++;
		if (i == len)
			break;
		if (s[i] != ',')
			return IMAP_FMT_EINVAL;
		i++;
	}
	if (n)
		*n = k;
	return 0;
}

uint64_t
imap_ranges_count(const struct imap_range *r, size_t n)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < n; i++)
		total += (uint64_t)r[i].hi - r[i].lo + 1;
	return total;
}

/* N decimal digits at *P, advancing it; -1 if they are not there. */
static int
digits(const char **p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++, (*p)++) {
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

/* Days from 1970-01-01 to Y-M-D of the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * date-time = date-day-fixed "-" date-month "-" date-year SP time SP zone
 * (RFC 3501 9): every field has a fixed width, so nothing a server sends
 * can overflow; a day may also come without its padding space.
 */
int
imap_parse_internaldate(const char *s, int64_t *out)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const char *p = s;
	char mon[4];
	const char *m;
	int day, month, year, hh, mm, ss, zh, zm, sign, leap;

	if (s == NULL)
		return -1;
	if (*p == ' ')
		p++;
	if (p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9')
		day = digits(&p, 2);
	else
		day = digits(&p, 1);
	if (day < 1 || *p++ != '-')
		return -1;
	for (int i = 0; i < 3; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
			return -1;
		mon[i] = (char)(c | 0x20);
	}
	mon[3] = '\0';
	p += 3;
	m = strstr(months, mon);
	if (m == NULL || (m - months) % 3 != 0 || *p++ != '-')
		return -1;
	month = (int)((m - months) / 3) + 1;
	if ((year = digits(&p, 4)) < 0 || *p++ != ' ')
		return -1;
	if ((hh = digits(&p, 2)) < 0 || *p++ != ':' || (mm = digits(&p, 2)) < 0 || *p++ != ':' ||
	    (ss = digits(&p, 2)) < 0 || *p++ != ' ')
		return -1;
	if (*p != '+' && *p != '-')
		return -1;
	sign = *p++ == '-' ? -1 : 1;
	if ((zh = digits(&p, 2)) < 0 || (zm = digits(&p, 2)) < 0 || *p != '\0')
		return -1;
	leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
	if (day > mdays[month - 1] || (month == 2 && day == 29 && !leap) || hh > 23 || mm > 59 ||
	    ss > 60 || zh > 23 || zm > 59)
		return -1;
	*out = days_from_civil(year, month, day) * 86400 + hh * 3600 + mm * 60 + ss -
	    sign * (zh * 3600 + zm * 60);
	return 0;
}

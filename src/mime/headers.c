/*
 * Header block decoding on GMime 3.
 *
 * The header block is split here, not by GMime's parser: that parser knows
 * nothing of bare-CR line ends, and it would build a message object we do
 * not need in the per-message hot path. Each value is then handed to GMime
 * for what it does well: RFC 2047 encoded-words in any charset iconv knows,
 * address lists, dates and Message-IDs.
 *
 * Memory: one arena (malloc) holds every name and unfolded raw value and
 * is never larger than the header block plus two bytes; the field table
 * (malloc) has at most one entry per line. Decoded strings are g_malloc'd
 * and owned by the struct. Everything is bounded by a small multiple of
 * MIME_HEADER_MAX.
 */
#include <iconv.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "mime/headers.h"

/*
 * GMime's address parser recurses once per group, so a value made of
 * thousands of "a:" overflows the stack. Past this many colons they are
 * read as spaces: the addresses survive, the (hostile) groups do not.
 */
#define MAX_COLONS 64

struct field {
	const char *name;	/* in arena, NUL-terminated */
	const char *raw;	/* unfolded value in arena, NUL-terminated */
	size_t rawlen;
	char *decoded;		/* g_malloc'd by mime_headers_get, or NULL */
};

struct mime_headers {
	char *arena;		/* malloc */
	size_t alen, acap;
	struct field *f;	/* malloc */
	size_t nf;
	/* g_malloc'd, never NULL once parsed */
	char *subject, *from, *to, *cc, *date, *msgid;
	char *from_addrs, *to_addrs;
	int64_t date_unix;
};

/*
 * Set once by mime_init (pthread_once: the search indexer parses on a
 * worker thread while the main thread does too), then only read.
 */
static GMimeParserOptions *opts;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int shut;			/* GMime cannot start again */

/*
 * Charsets named by encoded-words. GMime keeps every charset name it is
 * given, for good (a header of made-up names grew it by megabytes), and
 * it opens and closes an iconv descriptor per encoded-word, on which glibc
 * loads and unloads the charset's gconv module: a dlopen and a dlclose per
 * word were most of the parse time. So names pass through this bounded
 * table first. A name iconv knows keeps one descriptor open, which keeps
 * its module loaded; once the table is full, a name not in it is
 * rewritten to one nobody knows, which GMime decodes with the fallback
 * charsets as it would any unknown charset.
 */
#define MAX_CHARSETS	128
#define MAX_CHARSET_NAME 48	/* the longest IANA name has 45 bytes */
#define NO_CHARSET	"x-unknown"

static struct charset {
	char name[MAX_CHARSET_NAME + 1];	/* lower case */
	iconv_t cd;		/* (iconv_t)-1 when iconv does not know it */
} charsets[MAX_CHARSETS];
static size_t ncharsets;
static pthread_mutex_t charsets_lock = PTHREAD_MUTEX_INITIALIZER;

static void
init_gmime(void)
{
	static const char *fallback[] = { "UTF-8", "windows-1252", NULL };

	g_mime_init();
	opts = g_mime_parser_options_new();
	g_mime_parser_options_set_rfc2047_compliance_mode(opts,
	    GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_address_compliance_mode(opts,
	    GMIME_RFC_COMPLIANCE_LOOSE);
	/* for encoded-words in a charset iconv does not know */
	g_mime_parser_options_set_fallback_charsets(opts, fallback);
}

void
mime_init(void)
{
	if (shut)
		g_error("mime_init after mime_shutdown");
	pthread_once(&init_once, init_gmime);
}

void
mime_shutdown(void)
{
	if (opts == NULL)
		return;
	while (ncharsets > 0)
		if (charsets[--ncharsets].cd != (iconv_t)-1)
			iconv_close(charsets[ncharsets].cd);
	g_mime_parser_options_free(opts);
	opts = NULL;
	shut = 1;
	g_mime_shutdown();
}

/* ---- splitting the header block ------------------------------------- */

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Bytes of the line end at P (a CR or LF). LF, CRLF and CRCRLF
 * (CRLF converted twice) are one line end each; a bare CR ends a line on
 * its own (old Mac files). Looking no further keeps a flood of CRs linear.
 */
static size_t
eol(const char *p, const char *end)
{
	if (*p == '\n')
		return 1;
	if (end - p >= 2 && p[1] == '\n')
		return 2;
	if (end - p >= 3 && p[1] == '\r' && p[2] == '\n')
		return 3;
	return 1;
}

/* The line at *PP: its start and length without the line end. */
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
	*pp = p < end ? p + eol(p, end) : end;
	return 1;
}

static int
blank(const char *s, size_t n)
{
	while (n > 0 && is_wsp(*s))
		s++, n--;
	return n == 0;
}

/*
 * Length of the field name of a header line, 0 if the line is not one
 * (no colon, or a byte outside RFC 5322 ftext); *COLON gets the colon's
 * offset. White space before the colon is obsolete syntax, accepted.
 */
static size_t
field_name(const char *s, size_t n, size_t *colon)
{
	const char *c;
	size_t i, len;

	if ((c = memchr(s, ':', n)) == NULL)
		return 0;
	*colon = len = (size_t)(c - s);
	while (len > 0 && is_wsp(s[len - 1]))
		len--;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126)
			return 0;
	return len;
}

/* Appends value bytes to the open field; NUL would cut the C string. */
static void
put_value(struct mime_headers *h, size_t vstart, const char *s, size_t n)
{
	char *d, *z;

	if (h->alen == vstart)
		while (n > 0 && is_wsp(*s))
			s++, n--;	/* no leading white space */
	if (n > h->acap - h->alen)
		n = h->acap - h->alen;	/* cannot happen; see split() */
	d = memcpy(h->arena + h->alen, s, n);
	h->alen += n;
	for (z = d; (z = memchr(z, '\0', (size_t)(d + n - z))) != NULL; )
		*z++ = ' ';
}

/* Trims the open field's value and terminates it. */
static void
close_field(struct mime_headers *h, size_t vstart)
{
	struct field *f = &h->f[h->nf - 1];

	while (h->alen > vstart && is_wsp(h->arena[h->alen - 1]))
		h->alen--;
	h->arena[h->alen++] = '\0';	/* room: see split() */
	f->raw = h->arena + vstart;
	f->rawlen = h->alen - 1 - vstart;
}

/*
 * Splits the header block of DATA into h->f. Lines that are not headers
 * (an mbox "From " line, a line without a colon) are skipped with their
 * continuation lines, as mail clients do. Returns -1 when out of memory.
 */
static int
split(struct mime_headers *h, const char *data, size_t len)
{
	const char *p, *end, *line, *start = NULL, *stop = NULL;
	size_t n, nl, colon, vstart = 0, maxf = 0;
	int open = 0;

	end = data + len;
	p = data;
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;

	/* Pass 1: the block's bounds and a bound on its field count. */
	while (next_line(&p, end, &line, &n)) {
		if (start == NULL) {
			if (blank(line, n))
				continue;	/* leading blank lines */
			start = line;
		} else if (n == 0)
			break;
		stop = line + n;
		if (!is_wsp(*line))
			maxf++;
	}
	if (start == NULL)
		return 0;

	/*
	 * A field takes at most its line's bytes, the name's NUL standing
	 * in for the colon and the value's for the line end, which only the
	 * block's last line may lack: hence +1 (and one spare).
	 */
	h->acap = (size_t)(stop - start) + 2;
	if ((h->arena = malloc(h->acap)) == NULL ||
	    (h->f = calloc(maxf + 1, sizeof *h->f)) == NULL)
		return -1;

	/* Pass 2: fields, unfolded (RFC 5322 2.2.3: drop the line ends). */
	p = start;
	while (next_line(&p, stop, &line, &n)) {
		if (n > 0 && is_wsp(*line)) {
			if (open)
				put_value(h, vstart, line, n);
			continue;
		}
		if (open)
			close_field(h, vstart);
		open = 0;
		if (n == 0 || (nl = field_name(line, n, &colon)) == 0 ||
		    h->nf == maxf)
			continue;
		h->f[h->nf++].name = h->arena + h->alen;
		memcpy(h->arena + h->alen, line, nl);
		h->alen += nl;
		h->arena[h->alen++] = '\0';
		vstart = h->alen;
		put_value(h, vstart, line + colon + 1, n - colon - 1);
		open = 1;
	}
	if (open)
		close_field(h, vstart);
	return 0;
}

/* ---- decoding ---------------------------------------------------------- */

/* Whether GMime may see charset NAME (LEN bytes); see struct charset. */
static int
charset_ok(const char *name, size_t len)
{
	struct charset *c;
	char low[MAX_CHARSET_NAME + 1];
	size_t i;
	int ok = 1;

	if (len == 0 || len > MAX_CHARSET_NAME)
		return 0;
	for (i = 0; i < len; i++)
		low[i] = g_ascii_tolower(name[i]);
	low[len] = '\0';
	pthread_mutex_lock(&charsets_lock);
	for (i = 0; i < ncharsets; i++)
		if (strcmp(charsets[i].name, low) == 0)
			goto out;
	if (ncharsets == MAX_CHARSETS) {
		ok = 0;
		goto out;
	}
	c = &charsets[ncharsets++];
	memcpy(c->name, low, len + 1);
	/* the descriptor GMime would open */
	c->cd = iconv_open("UTF-8", g_mime_charset_iconv_name(low));
out:
	pthread_mutex_unlock(&charsets_lock);
	return ok;
}

/*
 * The charset mailers mean when they write NAME (LEN bytes) in an
 * encoded-word, where it is a superset of the one named, or NULL: Windows-1252
 * (bytes 0x80-0x9F) sent as ISO-8859-1 or US-ASCII, CP949 as EUC-KR,
 * CP932 as Shift_JIS, GBK as GB2312, CP950 as Big5.
 */
static const char *
superset(const char *name, size_t len)
{
	static const char *const map[][2] = {
		{ "iso-8859-1", "windows-1252" }, { "iso8859-1", "windows-1252" },
		{ "latin1", "windows-1252" }, { "us-ascii", "windows-1252" },
		{ "euc-kr", "cp949" }, { "ks_c_5601-1987", "cp949" },
		{ "shift_jis", "cp932" }, { "sjis", "cp932" },
		{ "gb2312", "gb18030" }, { "gbk", "gb18030" },
		{ "big5", "cp950" },
	};
	size_t i;

	for (i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strlen(map[i][0]) == len &&
		    g_ascii_strncasecmp(name, map[i][0], len) == 0)
			return map[i][1];
	return NULL;
}

/*
 * S with the charset of each encoded-word ("=?charset?B|Q?") GMime may
 * not see replaced by NO_CHARSET, and a mislabel by its superset; an RFC 2231 "*lang" suffix counts as
 * part of the name, as a name with spaces or 8-bit bytes never passes.
 * Returns S itself, or a g_malloc'd copy also put in *TOFREE. Linear: the
 * scans for names never overlap, as a name never spans a '?'.
 */
static const char *
vet_charsets(const char *s, char **tofree)
{
	const char *p, *done = s, *cs, *q, *to;
	GString *out = NULL;
	int atext;

	*tofree = NULL;
	for (p = s; *p != '\0'; p++) {
		if (p[0] != '=' || p[1] != '?')
			continue;
		cs = p + 2;
		atext = 1;
		for (q = cs; *q != '\0' && *q != '?'; q++)
			if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
				atext = 0;
		if (*q == '\0')
			break;
		p = q - 2;	/* next round looks at q - 1: "a=?b?q?.." */
		if ((q[1] != 'B' && q[1] != 'b' && q[1] != 'Q' && q[1] != 'q') ||
		    q[2] != '?')
			continue;	/* not an encoded-word */
		to = atext ? superset(cs, (size_t)(q - cs)) : NULL;
		if (to == NULL && atext && charset_ok(cs, (size_t)(q - cs)))
			continue;
		if (to == NULL || !charset_ok(to, strlen(to)))
			to = NO_CHARSET;
		if (out == NULL)
			out = g_string_new("");
		g_string_append_len(out, done, cs - done);
		g_string_append(out, to);
		done = q;
	}
	if (out == NULL)
		return s;
	g_string_append(out, done);
	return *tofree = g_string_free(out, FALSE);
}

/* Windows-1252 0x80-0x9F; the five holes map to C1 as browsers do. */
static const uint16_t cp1252[32] = {
	0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
	0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

/*
 * Raw header bytes as UTF-8. Valid UTF-8 sequences stay (RFC 6532); any
 * other byte is read as Windows-1252, the usual charset of unlabelled
 * 8-bit headers and a superset of Latin-1's printable range. 7-bit text
 * with escape sequences is tried as raw ISO-2022-JP first. Returns RAW
 * itself when it needs no change, else a g_malloc'd copy also put in
 * *TOFREE.
 */
static const char *
raw_utf8(const char *raw, size_t len, char **tofree)
{
	const unsigned char *s = (const unsigned char *)raw;
	GString *out;
	size_t i;
	int high = 0, esc = 0;

	*tofree = NULL;
	for (i = 0; i < len; i++) {
		if (s[i] >= 0x80)
			high = 1;
		else if (s[i] == 0x1b)
			esc = 1;
	}
	if (!high) {
		if (esc) {
			(void)charset_ok("iso-2022-jp", 11);	/* pins it */
			*tofree = g_convert(raw, (gssize)len, "UTF-8",
			    "ISO-2022-JP", NULL, NULL, NULL);
		}
		return *tofree != NULL ? *tofree : raw;
	}
	if (g_utf8_validate(raw, (gssize)len, NULL))
		return raw;

	out = g_string_sized_new(len + len / 2);
	for (i = 0; i < len; ) {
		gunichar c = g_utf8_get_char_validated(raw + i,
		    (gssize)(len - i));

		if (c < 0x80 || c == (gunichar)-1 || c == (gunichar)-2) {
			c = s[i] < 0x80 || s[i] >= 0xa0 ? s[i] :
			    cp1252[s[i] - 0x80];
			g_string_append_unichar(out, c);
			i++;
		} else {
			size_t k = (size_t)g_utf8_skip[s[i]];

			g_string_append_len(out, raw + i, (gssize)k);
			i += k;
		}
	}
	return *tofree = g_string_free(out, FALSE);
}

/*
 * Takes S (g_malloc'd, may be NULL) and returns it fit for callers: valid
 * UTF-8 (bad bytes become U+FFFD) with every C0 control and DEL a space,
 * so a decoded "=0D=0A" cannot forge lines in a log or a hook.
 */
static char *
tidy(char *s)
{
	unsigned char *p;
	char *v;

	if (s == NULL)
		return g_strdup("");
	if (!g_utf8_validate(s, -1, NULL)) {
		v = g_utf8_make_valid(s, -1);
		g_free(s);
		s = v;
	}
	for (p = (unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = ' ';
	return s;
}

/* Unstructured text (RFC 2047 section 5 (1)): g_malloc'd. */
static char *
decode_text(const struct field *f)
{
	const char *u;
	char *tmp, *vetted, *s;

	u = raw_utf8(f->raw, f->rawlen, &tmp);
	if (strstr(u, "=?") == NULL)
		s = g_strdup(u);	/* nothing to decode: the common case */
	else {
		u = vet_charsets(u, &vetted);
		s = g_mime_utils_header_decode_text(opts, u);
		g_free(vetted);
	}
	g_free(tmp);
	return tidy(s);
}

/*
 * Writes LIST as GMime's internet_address_list_to_string would, except
 * that domains stay UTF-8 (GMime writes punycode) and a lone word without
 * '@' (a local user, or an encoded-word GMime took for one) is shown as
 * decoded text and left out of ADDRS. Depth is bounded: groups nest at
 * most MAX_COLONS deep.
 */
static void
walk_addrs(InternetAddressList *list, GString *disp, GString *addrs)
{
	InternetAddress *ia;
	const char *name, *addr;
	char *s;
	int i, n;

	n = internet_address_list_length(list);
	for (i = 0; i < n; i++) {
		ia = internet_address_list_get_address(list, i);
		name = internet_address_get_name(ia);
		if (i > 0)
			g_string_append(disp, ", ");
		if (name != NULL && *name != '\0') {
			s = g_mime_utils_quote_string(name);
			g_string_append(disp, s);
			g_free(s);
		}
		if (INTERNET_ADDRESS_IS_GROUP(ia)) {
			g_string_append(disp, ": ");
			walk_addrs(internet_address_group_get_members(
			    INTERNET_ADDRESS_GROUP(ia)), disp, addrs);
			g_string_append_c(disp, ';');
			continue;
		}
		if (!INTERNET_ADDRESS_IS_MAILBOX(ia))
			continue;
		addr = internet_address_mailbox_get_addr(
		    INTERNET_ADDRESS_MAILBOX(ia));
		if (addr == NULL)
			addr = "";
		if (strchr(addr, '@') != NULL) {	/* not "root" */
			if (addrs->len > 0)
				g_string_append_c(addrs, ',');
			g_string_append(addrs, addr);
		}
		if (name != NULL && *name != '\0')
			g_string_append_printf(disp, " <%s>", addr);
		else if (strchr(addr, '@') == NULL) {
			s = g_mime_utils_header_decode_text(opts, addr);
			g_string_append(disp, s);
			g_free(s);
		} else
			g_string_append(disp, addr);
	}
}

/*
 * One address header: its display form goes to DISP, its bare addresses
 * to ADDRS. A value GMime finds no address in is shown as decoded text.
 */
static void
decode_addresses(const struct field *f, GString *disp, GString *addrs)
{
	InternetAddressList *list;
	GString *one = g_string_new("");
	const char *u, *c;
	char *tmp, *vetted, *flat = NULL, *s;
	size_t colons = 0;

	u = raw_utf8(f->raw, f->rawlen, &tmp);
	u = vet_charsets(u, &vetted);
	for (c = u; *c != '\0'; c++)
		colons += *c == ':';
	if (colons > MAX_COLONS) {
		flat = g_strdelimit(g_strdup(u), ":", ' ');
		u = flat;
	}
	if ((list = internet_address_list_parse(opts, u)) != NULL) {
		walk_addrs(list, one, addrs);
		g_object_unref(list);
	} else {
		s = g_mime_utils_header_decode_text(opts, u);
		g_string_append(one, s);
		g_free(s);
	}
	if (one->len > 0 && disp->len > 0)
		g_string_append(disp, ", ");
	g_string_append_len(disp, one->str, (gssize)one->len);
	g_string_free(one, TRUE);
	g_free(flat);
	g_free(vetted);
	g_free(tmp);
}

static const struct field *
first(const struct mime_headers *h, const char *name)
{
	size_t i;

	for (i = 0; i < h->nf; i++)
		if (g_ascii_strcasecmp(h->f[i].name, name) == 0)
			return &h->f[i];
	return NULL;
}

/* NAME headers (ALL, or the first): display to *DISP, bare to ADDRS. */
static void
address_headers(const struct mime_headers *h, const char *name, int all,
    char **disp, GString *addrs)
{
	GString *d = g_string_new("");
	size_t i;

	for (i = 0; i < h->nf; i++) {
		if (g_ascii_strcasecmp(h->f[i].name, name) != 0)
			continue;
		decode_addresses(&h->f[i], d, addrs);
		if (!all)
			break;
	}
	if (disp != NULL)
		*disp = tidy(g_string_free(d, FALSE));
	else
		g_string_free(d, TRUE);
}

static char *
lower_addrs(GString *addrs)
{
	char *s, *low;

	s = tidy(g_string_free(addrs, FALSE));
	low = g_utf8_strdown(s, -1);
	g_free(s);
	return low;
}

/* A Message-ID GMime cannot read: trimmed, outer brackets dropped. */
static char *
bare_id(const char *s)
{
	size_t n;

	while (is_wsp(*s))
		s++;
	if (*s == '<')
		s++;
	n = strlen(s);
	while (n > 0 && is_wsp(s[n - 1]))
		n--;
	if (n > 0 && s[n - 1] == '>')
		n--;
	return g_strndup(s, n);
}

static void
decode_fixed(struct mime_headers *h)
{
	const struct field *f;
	GDateTime *dt;
	GString *addrs;
	const char *u;
	char *tmp;

	f = first(h, "Subject");
	h->subject = f != NULL ? decode_text(f) : g_strdup("");

	addrs = g_string_new("");
	address_headers(h, "From", 0, &h->from, addrs);
	h->from_addrs = lower_addrs(addrs);

	addrs = g_string_new("");
	address_headers(h, "To", 1, &h->to, addrs);
	address_headers(h, "Cc", 1, &h->cc, addrs);
	address_headers(h, "Bcc", 1, NULL, addrs);
	h->to_addrs = lower_addrs(addrs);

	h->date_unix = -1;
	if ((f = first(h, "Date")) != NULL) {
		u = raw_utf8(f->raw, f->rawlen, &tmp);
		h->date = tidy(g_strdup(u));
		g_free(tmp);
		if ((dt = g_mime_utils_header_decode_date(h->date)) != NULL) {
			h->date_unix = g_date_time_to_unix(dt);
			g_date_time_unref(dt);
		}
	} else
		h->date = g_strdup("");

	if ((f = first(h, "Message-ID")) != NULL) {
		u = raw_utf8(f->raw, f->rawlen, &tmp);
		h->msgid = g_mime_utils_decode_message_id(u);
		if (h->msgid == NULL)
			h->msgid = bare_id(u);
		h->msgid = tidy(h->msgid);
		g_free(tmp);
	} else
		h->msgid = g_strdup("");
}

/* ---- API ----------------------------------------------------------------- */

struct mime_headers *
mime_headers_parse(const char *data, size_t len)
{
	struct mime_headers *h;

	mime_init();
	if ((h = calloc(1, sizeof *h)) == NULL)
		return NULL;
	if (data == NULL)
		len = 0;
	if (len > MIME_HEADER_MAX)
		len = MIME_HEADER_MAX;
	if (split(h, data, len) == -1) {
		mime_headers_free(h);
		return NULL;
	}
	decode_fixed(h);
	return h;
}

void
mime_headers_free(struct mime_headers *h)
{
	size_t i;

	if (h == NULL)
		return;
	for (i = 0; i < h->nf; i++)
		g_free(h->f[i].decoded);
	g_free(h->subject);
	g_free(h->from);
	g_free(h->to);
	g_free(h->cc);
	g_free(h->date);
	g_free(h->msgid);
	g_free(h->from_addrs);
	g_free(h->to_addrs);
	free(h->f);
	free(h->arena);
	free(h);
}

const char *
mime_headers_subject(const struct mime_headers *h)
{
	return h->subject;
}

const char *
mime_headers_from(const struct mime_headers *h)
{
	return h->from;
}

const char *
mime_headers_to(const struct mime_headers *h)
{
	return h->to;
}

const char *
mime_headers_cc(const struct mime_headers *h)
{
	return h->cc;
}

const char *
mime_headers_date(const struct mime_headers *h)
{
	return h->date;
}

int64_t
mime_headers_date_unix(const struct mime_headers *h)
{
	return h->date_unix;
}

const char *
mime_headers_message_id(const struct mime_headers *h)
{
	return h->msgid;
}

const char *
mime_headers_from_addrs(const struct mime_headers *h)
{
	return h->from_addrs;
}

const char *
mime_headers_to_addrs(const struct mime_headers *h)
{
	return h->to_addrs;
}

static const char *
decoded(struct field *f)
{
	if (f->decoded == NULL)
		f->decoded = decode_text(f);
	return f->decoded;
}

const char *
mime_headers_get(struct mime_headers *h, const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < h->nf; i++)
		if (g_ascii_strcasecmp(h->f[i].name, name) == 0)
			return decoded(&h->f[i]);
	return NULL;
}

const char *
mime_headers_raw(const struct mime_headers *h, const char *name)
{
	const struct field *f;

	if (name == NULL || (f = first(h, name)) == NULL)
		return NULL;
	return f->raw;
}

char *
mime_decode_text(const char *s, size_t len)
{
	struct field f = { "", NULL, len, NULL };
	char *copy, *out, *z;

	/* decode_text wants a NUL-terminated value without NULs */
	mime_init();
	copy = g_malloc(len + 1);
	memcpy(copy, s, len);
	copy[len] = '\0';
	for (z = copy; (z = memchr(z, '\0', (size_t)(copy + len - z))) != NULL; )
		*z++ = ' ';
	f.raw = copy;
	out = decode_text(&f);
	g_free(copy);
	return out;
}

size_t
mime_headers_get_all(struct mime_headers *h, const char *name,
    const char **out, size_t max)
{
	size_t i, n = 0;

	if (name == NULL)
		return 0;
	for (i = 0; i < h->nf; i++) {
		if (g_ascii_strcasecmp(h->f[i].name, name) != 0)
			continue;
		if (n < max)
			out[n] = decoded(&h->f[i]);
		n++;
	}
	return n;
}

/*
 * Body charsets to UTF-8.
 *
 * The Latin-1 family (ISO-8859-1, US-ASCII, Windows-1252), no charset and
 * unknown charsets take one path that needs no iconv: each valid UTF-8
 * sequence is kept and every other byte is read as Windows-1252. That is
 * what those labels mean in practice (Windows-1252 sent as ISO-8859-1, UTF-8
 * sent as US-ASCII or unlabelled), and as UTF-8 sequences hardly ever occur
 * in Latin-1 text by chance, the mix costs nothing in real mail. Declared
 * UTF-8 takes the same path, so a Windows-1252 word in it stays a word.
 *
 * Everything else goes to iconv under the name of a superset where mailers
 * are known to send one (GBK for GB2312 and so on), in chunks, with an
 * incomplete sequence at the end of a chunk carried to the next one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "search/charset.h"

static const unsigned short cp1252[32] = {
	0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
	0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

unsigned int
cp1252_char(unsigned char b)
{
	return b >= 0x80 && b < 0xa0 ? cp1252[b - 0x80] : b;
}

/* ---- names ------------------------------------------------------------- */

/* Labels read as UTF-8 with Windows-1252 for the bytes that are not. */
static const char *const latin[] = {
	"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "iso-8859-1",
	"iso8859-1", "iso_8859-1", "iso-8859-1:1987", "latin1", "latin-1",
	"l1", "cp819", "ibm819", "iso-ir-100", "csisolatin1", "windows-1252",
	"cp1252", "x-cp1252", "utf-8", "utf8", "x-unknown", "unknown",
	"unknown-8bit", "x-user-defined", "default", "8bit", "binary", "none",
	"unicode-1-1-utf-8", NULL
};

/* Labels whose senders mean a superset, and names iconv does not know. */
static const struct { const char *label, *iconv; } alias[] = {
	{ "gb2312", "GB18030" }, { "gbk", "GB18030" }, { "x-gbk", "GB18030" },
	{ "euc-cn", "GB18030" }, { "x-euc-cn", "GB18030" },
	{ "cp936", "GB18030" }, { "windows-936", "GB18030" },
	{ "gb_2312-80", "GB18030" }, { "csgb2312", "GB18030" },
	{ "chinese", "GB18030" }, { "gb18030", "GB18030" },
	{ "euc-kr", "CP949" }, { "ks_c_5601-1987", "CP949" },
	{ "ks_c_5601", "CP949" }, { "ksc5601", "CP949" },
	{ "ksc_5601", "CP949" }, { "ks_c_5601-1989", "CP949" },
	{ "korean", "CP949" }, { "csksc56011987", "CP949" },
	{ "csEUCKR", "CP949" }, { "windows-949", "CP949" },
	{ "x-windows-949", "CP949" }, { "uhc", "CP949" },
	{ "shift_jis", "CP932" }, { "shift-jis", "CP932" }, { "sjis", "CP932" },
	{ "x-sjis", "CP932" }, { "ms_kanji", "CP932" },
	{ "csshiftjis", "CP932" }, { "windows-31j", "CP932" },
	{ "x-ms-cp932", "CP932" }, { "ms932", "CP932" },
	{ "euc-jp", "EUC-JP-MS" }, { "x-euc-jp", "EUC-JP-MS" },
	{ "eucjp", "EUC-JP-MS" }, { "iso-2022-jp", "ISO-2022-JP-2" },
	{ "csiso2022jp", "ISO-2022-JP-2" },
	{ "big5", "CP950" }, { "big-5", "CP950" }, { "cn-big5", "CP950" },
	{ "x-x-big5", "CP950" }, { "csbig5", "CP950" }, { "x-big5", "CP950" },
	{ "big5-hkscs", "BIG5-HKSCS" },
	{ "iso-8859-8-i", "ISO-8859-8" }, { "iso-8859-8-e", "ISO-8859-8" },
	{ "iso-8859-6-i", "ISO-8859-6" }, { "iso-8859-6-e", "ISO-8859-6" },
	{ "unicode", "UTF-16LE" }, { "unicodelittle", "UTF-16LE" },
	{ "unicodebig", "UTF-16BE" }, { "unicodefffe", "UTF-16BE" },
	{ "ucs-2", "UTF-16" }, { "unicode-1-1-utf-7", "UTF-7" },
	{ "x-unicode-2-0-utf-7", "UTF-7" }, { "csunicode11utf7", "UTF-7" },
	{ "x-mac-cyrillic", "MAC-CYRILLIC" }, { "x-mac-roman", "MACINTOSH" },
	{ "mac", "MACINTOSH" }, { "x-mac-ce", "MAC-CENTRALEUROPE" },
	{ "tis-620", "CP874" }, { "windows-874", "CP874" },
	{ NULL, NULL }
};

const char *
conv_iconv_name(const char *name, char *buf, size_t n)
{
	char low[48];
	size_t i, len;

	if (name == NULL)
		return NULL;
	while (*name == ' ' || *name == '\t' || *name == '"' || *name == '\'')
		name++;
	for (len = 0; name[len] != '\0' && len < sizeof low - 1; len++) {
		unsigned char c = (unsigned char)name[len];

		if (c == '"' || c == '\'' || c == ' ' || c == '\t' || c == ';')
			break;
		/* a name iconv could be asked about: keep it plain */
		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
		    !(c >= '0' && c <= '9') && !strchr("-_.:+()", c))
			return NULL;
		low[len] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	if (len == 0 || len == sizeof low - 1)
		return NULL;
	low[len] = '\0';
	for (i = 0; latin[i] != NULL; i++)
		if (strcmp(low, latin[i]) == 0)
			return NULL;
	for (i = 0; alias[i].label != NULL; i++)
		if (strcasecmp(low, alias[i].label) == 0)
			return alias[i].iconv;
	if (len >= n)
		return NULL;
	memcpy(buf, low, len + 1);
	return buf;
}

/* ---- the UTF-8/Windows-1252 reading --------------------------------------- */

/*
 * The valid UTF-8 sequence at P (AVAIL bytes): its length, 0 when P[0]
 * does not start one (P[0] is then read as Windows-1252), or -1 when the
 * bytes are a valid start but AVAIL is too short to tell.
 */
static int
seq(const unsigned char *p, size_t avail)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	int n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (i = 1; i < n; i++) {
		if ((size_t)i >= avail)
			return -1;
		if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xbf))
			return 0;
	}
	return n;
}

static int
put_cp1252(struct conv *c, unsigned char b)
{
	char u[4];

	return c->emit(c->ud, u, utf8_put(cp1252_char(b), u));
}

/*
 * Reads P (N bytes) and writes it out; a valid but incomplete sequence at
 * the end is left unread when MORE (more input follows). Returns the
 * bytes read, or -1 when out of memory.
 */
static long
mixed(struct conv *c, const unsigned char *p, size_t n, int more)
{
	size_t i = 0, span = 0;
	int k;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		k = seq(p + i, n - i);
		if (k > 0) {
			i += (size_t)k;
			continue;
		}
		if (k < 0 && more)
			break;
		if (i > span && c->emit(c->ud, (const char *)p + span,
		    i - span) == -1)
			return -1;
		if (put_cp1252(c, p[i]) == -1)
			return -1;
		span = ++i;
	}
	if (i > span && c->emit(c->ud, (const char *)p + span, i - span) == -1)
		return -1;
	return (long)i;
}

static int
mixed_feed(struct conv *c, const char *s, size_t n)
{
	unsigned char tmp[8];
	size_t old = c->ncarry, k;
	long r;

	if (old > 0) {
		/*
		 * The held sequence and up to 4 more bytes: enough to decide
		 * it. mixed() may read on into bytes of S; they count as read.
		 */
		k = n < 4 ? n : 4;
		memcpy(tmp, c->carry, old);
		memcpy(tmp + old, s, k);
		c->ncarry = 0;
		if ((r = mixed(c, tmp, old + k, 1)) < 0)
			return -1;
		if ((size_t)r < old) {	/* undecided: S was too short */
			memcpy(c->carry, tmp + r, old + k - (size_t)r);
			c->ncarry = old + k - (size_t)r;
			return 0;
		}
		s += (size_t)r - old;
		n -= (size_t)r - old;
	}
	if ((r = mixed(c, (const unsigned char *)s, n, 1)) < 0)
		return -1;
	memcpy(c->carry, s + r, n - (size_t)r);
	c->ncarry = n - (size_t)r;
	return 0;
}

/* ---- iconv --------------------------------------------------------------- */

/* Converts STAGE (N bytes); an incomplete end is carried unless LAST. */
static int
iconv_run(struct conv *c, size_t n, int last)
{
	char out[CONV_CHUNK], *in = c->stage, *o;
	size_t inleft = n, oleft;

	while (inleft > 0) {
		o = out;
		oleft = sizeof out;
		if (iconv(c->cd, &in, &inleft, &o, &oleft) != (size_t)-1 ||
		    errno == E2BIG) {
			if (o > out && c->emit(c->ud, out, (size_t)(o - out)) == -1)
				return -1;
			continue;
		}
		if (o > out && c->emit(c->ud, out, (size_t)(o - out)) == -1)
			return -1;
		if (errno == EINVAL && !last && inleft < sizeof c->carry) {
			memcpy(c->carry, in, inleft);
			c->ncarry = inleft;
			return 0;
		}
		/* EILSEQ, or an incomplete sequence at the very end */
		if (c->emit(c->ud, "\xef\xbf\xbd", 3) == -1)
			return -1;
		in++;
		inleft--;
	}
	return 0;
}

static int
iconv_feed(struct conv *c, const char *s, size_t n)
{
	size_t k, old;

	while (n > 0) {
		k = n < CONV_CHUNK ? n : CONV_CHUNK;
		old = c->ncarry;
		memcpy(c->stage, c->carry, old);
		memcpy(c->stage + old, s, k);
		c->ncarry = 0;
		if (iconv_run(c, old + k, 0) == -1)
			return -1;
		s += k;
		n -= k;
	}
	return 0;
}

/* ---- API ----------------------------------------------------------------- */

int
conv_open(struct conv *c, const char *name, text_emit emit, void *ud)
{
	char buf[48];
	const char *in = conv_iconv_name(name, buf, sizeof buf);

	memset(c, 0, sizeof *c);
	c->emit = emit;
	c->ud = ud;
	c->cd = (iconv_t)-1;
	if (in == NULL)
		return 0;
	if ((c->cd = iconv_open("UTF-8", in)) == (iconv_t)-1)
		return 0;	/* iconv does not know it: guess */
	if ((c->stage = malloc(sizeof c->carry + CONV_CHUNK)) == NULL) {
		iconv_close(c->cd);
		c->cd = (iconv_t)-1;
		return -1;
	}
	return 0;
}

int
conv_feed(struct conv *c, const char *s, size_t n)
{
	if (c->cd == (iconv_t)-1)
		return mixed_feed(c, s, n);
	return iconv_feed(c, s, n);
}

int
conv_finish(struct conv *c)
{
	char out[64], *o = out;
	size_t oleft = sizeof out, i, n = c->ncarry;

	c->ncarry = 0;
	if (c->cd == (iconv_t)-1) {
		for (i = 0; i < n; i++)
			if (put_cp1252(c, c->carry[i]) == -1)
				return -1;
		return 0;
	}
	memcpy(c->stage, c->carry, n);
	if (iconv_run(c, n, 1) == -1)
		return -1;
	/* the shift back to the initial state, for stateful charsets */
	if (iconv(c->cd, NULL, NULL, &o, &oleft) != (size_t)-1 && o > out)
		return c->emit(c->ud, out, (size_t)(o - out));
	return 0;
}

void
conv_close(struct conv *c)
{
	if (c->cd != (iconv_t)-1)
		iconv_close(c->cd);
	c->cd = (iconv_t)-1;
	free(c->stage);
	c->stage = NULL;
}

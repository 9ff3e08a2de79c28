/*
 * The stages of the text extractor one by one: the sink (text.c), body
 * charsets (charset.c), HTML to text (html.c), MIME parameters
 * (params.c), transfer decoding (decode.c). Each streaming stage is also
 * fed byte by byte, which must give what one call gives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "check.h"
#include "mime/headers.h"
#include "search/charset.h"
#include "search/decode.h"
#include "search/html.h"
#include "search/params.h"
#include "search/text.h"

/* ---- helpers -------------------------------------------------------------- */

static int
gs_emit(void *ud, const char *s, size_t n)
{
	g_string_append_len(ud, s, (gssize)n);
	return 0;
}

/* IN through a tbuf with BUDGET bytes, in pieces of STEP (0: whole). */
static char *
sink(const char *in, size_t n, size_t budget, size_t step, int *cut)
{
	struct text_budget b = { budget, 0 };
	struct tbuf t;
	size_t i, k;
	char *out;

	tbuf_init(&t, &b);
	for (i = 0; i < n; i += k) {
		k = step == 0 || n - i < step ? n - i : step;
		CHECK(tbuf_put(&t, in + i, k) == 0);
	}
	CHECK(tbuf_take(&t, &out) == 0);
	tbuf_free(&t);
	if (cut != NULL)
		*cut = b.cut;
	return out;
}

#define SINK_IS(lit, want) sink_is(lit, sizeof lit - 1, want)

static void
sink_is(const char *in, size_t n, const char *want)
{
	char *a = sink(in, n, 1000, 0, NULL), *b = sink(in, n, 1000, 1, NULL);

	CHECK_STR(a, want);
	CHECK_STR(b, want);
	free(a);
	free(b);
}

/* IN (N bytes) in CHARSET through a converter, in pieces of STEP. */
static char *
convert(const char *charset, const char *in, size_t n, size_t step)
{
	GString *out = g_string_new("");
	struct conv c;
	size_t i, k;

	CHECK(conv_open(&c, charset, gs_emit, out) == 0);
	for (i = 0; i < n; i += k) {
		k = step == 0 || n - i < step ? n - i : step;
		CHECK(conv_feed(&c, in + i, k) == 0);
	}
	CHECK(conv_finish(&c) == 0);
	conv_close(&c);
	return g_string_free(out, FALSE);
}

static void
convert_is(const char *charset, const char *in, size_t n, const char *want)
{
	size_t steps[] = { 0, 1, 2, 3, 5 }, i;
	char *got;

	for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		got = convert(charset, in, n, steps[i]);
		if (strcmp(got, want) != 0)
			fprintf(stderr, "charset %s step %zu: got \"%s\"\n",
			    charset ? charset : "(none)", steps[i], got);
		CHECK_STR(got, want);
		g_free(got);
	}
}

/* HTML through html.c and a sink, whole and byte by byte. */
static char *
html_text(const char *in, size_t step)
{
	struct text_budget b = { 1 << 22, 0 };
	struct tbuf t;
	struct html h;
	size_t i, k, n = strlen(in);
	char *out;

	tbuf_init(&t, &b);
	html_init(&h, tbuf_put, &t);
	for (i = 0; i < n; i += k) {
		k = step == 0 || n - i < step ? n - i : step;
		CHECK(html_feed(&h, in + i, k) == 0);
	}
	CHECK(html_finish(&h) == 0);
	CHECK(tbuf_take(&t, &out) == 0);
	tbuf_free(&t);
	return out;
}

static void
html_is(const char *in, const char *want)
{
	char *a = html_text(in, 0), *b = html_text(in, 1), *c = html_text(in, 7);

	if (strcmp(a, want) != 0)
		fprintf(stderr, "html \"%s\": got \"%s\"\n", in, a);
	CHECK_STR(a, want);
	CHECK_STR(b, want);
	CHECK_STR(c, want);
	free(a);
	free(b);
	free(c);
}

/* ---- the sink ------------------------------------------------------------- */

static void
test_sink(void)
{
	char *s;
	int cut;

	SINK_IS("plain words", "plain words");
	SINK_IS("  lead and trail  \n\n", "lead and trail");
	SINK_IS("a \t  b", "a b");
	SINK_IS("a\r\nb\rc\nd", "a\nb\nc\nd");
	SINK_IS("a\n\n\n\n\nb", "a\n\nb");			/* at most a blank line */
	SINK_IS("a \n \n \n b", "a\n\nb");
	SINK_IS("nul\0in\x01the\x1b[0mmiddle\x7f!", "nul in the [0mmiddle !");
	SINK_IS("c1 \xc2\x85\xc2\x9f nbsp\xc2\xa0x", "c1 nbsp x");
	SINK_IS("\xef\xbb\xbf" "bom", "bom");			/* U+FEFF dropped */
	SINK_IS("ls\xe2\x80\xa8" "next", "ls\nnext");
	SINK_IS("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80",
	    "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80");
	/* invalid UTF-8: each bad sequence is one U+FFFD, nothing dropped */
	SINK_IS("a\xff" "b", "a\xef\xbf\xbd" "b");
	SINK_IS("a\xc3" "b", "a\xef\xbf\xbd" "b");		/* cut short */
	SINK_IS("a\xe0\x80\xaf" "b",				/* overlong */
	    "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b");
	SINK_IS("a\xed\xa0\x80" "b",				/* surrogate */
	    "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b");
	SINK_IS("end\xe4\xb8", "end\xef\xbf\xbd");		/* at the end */

	/* the budget: never past it, never inside a character */
	s = sink("0123456789", 10, 4, 0, &cut);
	CHECK_STR(s, "0123");
	CHECK(cut);
	free(s);
	s = sink("ab\xe4\xb8\xad", 5, 4, 0, &cut);
	CHECK_STR(s, "ab");
	CHECK(cut);
	free(s);
	s = sink("ab cd", 5, 3, 1, &cut);	/* no dangling blank either */
	CHECK_STR(s, "ab");
	CHECK(cut);
	free(s);
	s = sink("ab", 2, 2, 0, &cut);
	CHECK_STR(s, "ab");
	CHECK(!cut);
	free(s);
}

/* ---- charsets --------------------------------------------------------------- */

static void
test_charset_names(void)
{
	char buf[48];

	CHECK(conv_iconv_name(NULL, buf, sizeof buf) == NULL);
	CHECK(conv_iconv_name("", buf, sizeof buf) == NULL);
	CHECK(conv_iconv_name("ISO-8859-1", buf, sizeof buf) == NULL);
	CHECK(conv_iconv_name("\"us-ascii\"", buf, sizeof buf) == NULL);
	CHECK(conv_iconv_name("UTF-8", buf, sizeof buf) == NULL);
	CHECK_STR(conv_iconv_name("GB2312", buf, sizeof buf), "GB18030");
	CHECK_STR(conv_iconv_name("ks_c_5601-1987", buf, sizeof buf), "CP949");
	CHECK_STR(conv_iconv_name("Shift_JIS", buf, sizeof buf), "CP932");
	CHECK_STR(conv_iconv_name("big5", buf, sizeof buf), "CP950");
	CHECK_STR(conv_iconv_name("KOI8-R", buf, sizeof buf), "koi8-r");
	CHECK_STR(conv_iconv_name(" windows-1251;", buf, sizeof buf),
	    "windows-1251");
	CHECK(conv_iconv_name("bad name", buf, sizeof buf) != NULL);	/* "bad" */
	CHECK(conv_iconv_name("\xc3\xa9t\xc3\xa9", buf, sizeof buf) == NULL);
	CHECK(conv_iconv_name("x/../../etc", buf, sizeof buf) == NULL);
	CHECK(conv_iconv_name(
	    "a-very-long-charset-name-that-no-registry-has-ever-seen-at-all",
	    buf, sizeof buf) == NULL);
}

static void
test_charsets(void)
{
	/* Latin-1 family: UTF-8 where it is, Windows-1252 elsewhere */
	convert_is("iso-8859-1", "caf\xe9 \x93q\x94 \x80", 10,
	    "caf\xc3\xa9 \xe2\x80\x9cq\xe2\x80\x9d \xe2\x82\xac");
	convert_is(NULL, "M\xfcller caf\xc3\xa9", 12,
	    "M\xc3\xbcller caf\xc3\xa9");
	convert_is("us-ascii", "\xe2\x82\xac 5", 5, "\xe2\x82\xac 5");
	convert_is("utf-8", "ok \xe9t\xe9 \xe4\xb8\xad", 10,
	    "ok \xc3\xa9t\xc3\xa9 \xe4\xb8\xad");
	/* an incomplete sequence at the very end is read as Windows-1252 */
	convert_is("utf-8", "end\xe4\xb8", 5, "end\xc3\xa4\xc2\xb8");
	/* a hole of Windows-1252 comes out as C1 (the sink makes it blank) */
	convert_is("windows-1252", "a\x81z", 3, "a\xc2\x81z");
	convert_is("no-such-charset", "na\xefve", 5, "na\xc3\xafve");

	/* iconv charsets, mislabels read as their supersets */
	convert_is("koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", 6,
	    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");	/* Привет */
	convert_is("iso-8859-7", "\xe1\xe2\xe3", 3,
	    "\xce\xb1\xce\xb2\xce\xb3");				/* αβγ */
	convert_is("gb2312", "\xd6\xec\xe9\x46\xbb\xf9", 6,	/* 朱镕基 (GBK) */
	    "\xe6\x9c\xb1\xe9\x95\x95\xe5\x9f\xba");
	convert_is("shift_jis", "\x87\x40", 2, "\xe2\x91\xa0");	/* ① CP932 */
	convert_is("euc-kr", "\x8c\x63", 2, "\xeb\x98\xa0");	/* 똠 CP949 */
	convert_is("big5", "\xa3\xe1", 2, "\xe2\x82\xac");	/* € CP950 */
	convert_is("iso-2022-jp", "\x1b$B$\"\x1b(B", 8, "\xe3\x81\x82");
	convert_is("utf-16", "\xff\xfe" "a\0b\0", 6, "ab");
	/* bytes a charset cannot read become U+FFFD, the rest stays */
	convert_is("shift_jis", "a\xa0" "b", 3, "a\xef\xbf\xbd" "b");
	convert_is("euc-kr", "x\xb0", 2, "x\xef\xbf\xbd");	/* cut short */
	CHECK_INT(cp1252_char(0x80), 0x20ac);
	CHECK_INT(cp1252_char(0x9f), 0x178);
	CHECK_INT(cp1252_char(0xe9), 0xe9);
}

/* ---- HTML ---------------------------------------------------------------------- */

static void
test_html(void)
{
	html_is("<p>Hello <b>wor</b>ld</p><p>next</p>", "Hello world\n\nnext");
	html_is("<div>a</div>b", "a\nb");
	html_is("a<br>b<br/>c<BR >d", "a\nb\nc\nd");
	html_is("<td>cell</td><td>two</td>", "cell two");
	html_is("x<script>var s = \"<p>no</p>\"; a < b;</script>y", "xy");
	html_is("x<script>a</scriptx>b</script >y", "xy");
	html_is("x<SCRIPT type=a>a</Script>y", "xy");
	html_is("x<style>p{}</style>y", "xy");
	html_is("x<scriptx>shown</scriptx>y", "xshowny");
	html_is("x<!-- a -- b --> y", "x y");
	html_is("x<!-- c --!>y", "xy");
	html_is("x<!DOCTYPE html>y<?xml v?>z<![CDATA[ q ]]>w", "xyzw");
	html_is("<a title=\"a>b\" href='c>d'>link</a>", "link");
	html_is("<a title=x>y>z</a>", "y>z");
	html_is("a < b and c <3", "a < b and c <3");
	html_is("&amp; &lt;&gt; &quot;&apos; &nbsp;x", "& <> \"' x");
	html_is("caf&eacute; &Eacute;t&eacute; &szlig; &yuml;",
	    "caf\xc3\xa9 \xc3\x89t\xc3\xa9 \xc3\x9f \xc3\xbf");
	html_is("&alpha;&Omega;&sigmaf;&mdash;&euro;&hellip;",
	    "\xce\xb1\xce\xa9\xcf\x82\xe2\x80\x94\xe2\x82\xac\xe2\x80\xa6");
	html_is("&#65;&#x42;&#X43; &#x4e2d;&#25991;", "ABC \xe4\xb8\xad\xe6\x96\x87");
	html_is("&#150;&#x80;", "\xe2\x80\x93\xe2\x82\xac");	/* as Windows-1252 */
	html_is("&#0;&#xd800;&#x110000;&#99999999999999999999;",
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	html_is("&nosuch; &amp &#; &# &x", "&nosuch; & &#; &# &x");
	html_is("AT&T", "AT&T");
	html_is("&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;",
	    "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;");
	html_is("line\none\ttab", "line one tab");
	html_is("<ul><li>one<li>two</ul>", "one\ntwo");
	html_is("trailing <", "trailing <");
	html_is("trailing &amp", "trailing &");
	html_is("<p title=\"never closed>text", "");
	html_is("<!-- never closed text", "");
}

/* Bounded state: a hostile document is linear and allocation-free. */
static void
test_html_hostile(void)
{
	size_t n = 1 << 20, i;
	char *s = malloc(n + 1), *out;

	for (i = 0; i < n; i++)
		s[i] = "<&#x;a-!"[i % 8];
	s[n] = '\0';
	out = html_text(s, 0);
	CHECK(g_utf8_validate(out, -1, NULL));
	free(out);
	memset(s, '&', n);
	out = html_text(s, 4096);
	CHECK(strlen(out) == n);	/* every '&' kept as written */
	free(out);
	free(s);
}

/* ---- parameters -------------------------------------------------------------- */

static void
param_is(const char *value, const char *name, const char *want)
{
	char *got = param_get(value, name);

	if (want == NULL)
		CHECK(got == NULL);
	else
		CHECK_STR(got, want);
	g_free(got);
}

static void
test_params(void)
{
	char tok[64], *s;

	param_token(" Text/HTML ; charset=x", tok, sizeof tok);
	CHECK_STR(tok, "text/html");
	param_token("attachment(comment)", tok, sizeof tok);
	CHECK_STR(tok, "attachment");
	param_token(NULL, tok, sizeof tok);
	CHECK_STR(tok, "");
	param_token("; name=x", tok, sizeof tok);
	CHECK_STR(tok, "");

	param_is("text/plain; charset=utf-8", "charset", "utf-8");
	param_is("text/plain; CHARSET = \"utf-8\" ", "charset", "utf-8");
	param_is("text/plain; a=1; b=2", "c", NULL);
	param_is("text/plain", "charset", NULL);
	param_is("attachment; filename=\"a \\\"q\\\" b.txt\"", "filename",
	    "a \"q\" b.txt");
	param_is("attachment; filename=\"never closed", "filename", "never closed");
	param_is("attachment; filename=plain name.txt ; x=y", "filename",
	    "plain name.txt");
	param_is("attachment; filename=first; filename=second", "filename", "first");
	param_is("attachment; filenamex=no; filename=yes", "filename", "yes");
	/* RFC 2231 */
	param_is("attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf", "filename",
	    "\xe2\x82\xac rates.pdf");
	param_is("attachment; filename*=iso-8859-1'en'caf%E9", "filename",
	    "caf\xc3\xa9");
	param_is("attachment; filename*=koi8-r''%F0%D2", "filename",
	    "\xd0\x9f\xd1\x80");
	param_is("attachment; filename*1=\"second\"; filename*0*=utf-8''first%20",
	    "filename", "first second");		/* out of order */
	param_is("x; filename*0=\"a\"; filename*1=\"b\"; filename*2=c",
	    "filename", "abc");
	param_is("x; filename*=''%41%4", "filename", "A%4");
	param_is("x; filename*0*=%41; filename=\"plain\"", "filename", "A");
	/* RFC 2047 inside a quoted value; raw 8-bit values */
	param_is("x; name=\"=?utf-8?B?4oKsLmRhdA==?=\"", "name", "\xe2\x82\xac.dat");
	param_is("x; name=\"=?iso-8859-1?q?gr=F6=DFe?=.txt\"", "name",
	    "gr\xc3\xb6\xc3\x9f" "e.txt");
	param_is("x; name=\"caf\xc3\xa9.txt\"", "name", "caf\xc3\xa9.txt");
	param_is("x; name=\"caf\xe9.txt\"", "name", "caf\xc3\xa9.txt");
	/* boundaries and charsets are taken as written */
	s = param_get_raw("multipart/mixed; boundary=\"=?a?q?b?=\"", "boundary");
	CHECK_STR(s, "=?a?q?b?=");
	g_free(s);
	s = param_get_raw("multipart/mixed; boundary=----=_Part_1", "boundary");
	CHECK_STR(s, "----=_Part_1");
	g_free(s);
}

/* ---- transfer decoding -------------------------------------------------------- */

static char *
decoded(const char *in, int enc)
{
	GString *out = g_string_new("");
	int stop = 0;

	CHECK(decode_body(in, strlen(in), enc, gs_emit, out, &stop) == 0);
	return g_string_free(out, FALSE);
}

static void
test_decode(void)
{
	char *s, *big;
	size_t i, n;

	CHECK_INT(decode_kind(NULL), ENC_NONE);
	CHECK_INT(decode_kind(" Base64 "), ENC_BASE64);
	CHECK_INT(decode_kind("QUOTED-PRINTABLE"), ENC_QP);
	CHECK_INT(decode_kind("x-uuencode"), ENC_UU);
	CHECK_INT(decode_kind("8bit"), ENC_NONE);
	CHECK_INT(decode_kind("x-made-up"), ENC_NONE);

	s = decoded("aGVsbG8g\nd29ybGQ=\n", ENC_BASE64);
	CHECK_STR(s, "hello world");
	g_free(s);
	s = decoded("caf=C3=A9 soft=\nbreak=\r\nhere=3D\n", ENC_QP);
	CHECK_STR(s, "caf\xc3\xa9 softbreakhere=\n");
	g_free(s);
	s = decoded("junk\nbegin 644 x\n):&D@=&AE<F4*\n`\nend\n", ENC_UU);
	CHECK_STR(s, "hi there\n");
	g_free(s);

	/* chunk boundaries fall inside quantums: 3 MB of base64 */
	n = 3 * 1024 * 1024;
	big = malloc(n + n / 76 + 1);
	for (i = 0; i < n; i++)
		big[i] = "QUJD"[i % 4];
	big[n] = '\0';
	s = decoded(big, ENC_BASE64);
	CHECK_INT(strlen(s), n / 4 * 3);
	CHECK(strspn(s, "ABC") == n / 4 * 3);
	g_free(s);
	free(big);
}

int
main(void)
{
	mime_init();
	RUN(test_sink);
	RUN(test_charset_names);
	RUN(test_charsets);
	RUN(test_html);
	RUN(test_html_hostile);
	RUN(test_params);
	RUN(test_decode);
	mime_shutdown();
	DONE();
}

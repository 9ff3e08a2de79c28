/*
 * Header block decoding: hand-written fixtures (tests/fixtures/mime), tables
 * of encoded-words, dates and Message-IDs, hostile input, and a sweep of the
 * real-world corpus when it is present (skipped when it is not).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <glib.h>

#include "check.h"
#include "mailfiles.h"
#include "mime/headers.h"

/* Valid UTF-8 without control characters: what every accessor promises. */
static int
clean(const char *s)
{
	if (s == NULL || !g_utf8_validate(s, -1, NULL))
		return 0;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static int
all_clean(struct mime_headers *h)
{
	const char *v[8];
	size_t i, n;

	if (!clean(mime_headers_subject(h)) || !clean(mime_headers_from(h)) ||
	    !clean(mime_headers_to(h)) || !clean(mime_headers_cc(h)) ||
	    !clean(mime_headers_date(h)) ||
	    !clean(mime_headers_message_id(h)) ||
	    !clean(mime_headers_from_addrs(h)) ||
	    !clean(mime_headers_to_addrs(h)))
		return 0;
	n = mime_headers_get_all(h, "Received", v, 8);
	for (i = 0; i < n && i < 8; i++)
		if (!clean(v[i]))
			return 0;
	return mime_headers_get(h, "Content-Type") == NULL ||
	    clean(mime_headers_get(h, "Content-Type"));
}

static struct mime_headers *
fixture(const char *name)
{
	struct mime_headers *h;
	const char *dir = getenv("EMAILVAULT_FIXTURES");
	char path[4096];
	char *buf;
	size_t len;

	snprintf(path, sizeof path, "%s/mime/%s", dir ? dir : "tests/fixtures",
	    name);
	if ((buf = slurp(path, &len)) == NULL) {
		fprintf(stderr, "cannot read %s\n", path);
		CHECK(!"fixture missing");
		return mime_headers_parse("", 0);
	}
	h = mime_headers_parse(buf, len);
	free(buf);		/* h must not point into DATA */
	CHECK(h != NULL);
	CHECK(all_clean(h));
	return h;
}

static struct mime_headers *
parse_str(const char *s)
{
	return mime_headers_parse(s, strlen(s));
}

static void
test_init(void)
{
	struct mime_headers *h;

	h = parse_str("Subject: =?utf-8?q?self-init?=\r\n\r\n");
	CHECK_STR(mime_headers_subject(h), "self-init");
	mime_init();
	mime_init();
	mime_headers_free(h);
	mime_headers_free(NULL);
	h = mime_headers_parse(NULL, 0);
	CHECK_STR(mime_headers_subject(h), "");
	CHECK(mime_headers_get(h, "Subject") == NULL);
	mime_headers_free(h);
}

static void
test_encoded_words(void)
{
	static const struct {
		const char *raw, *want;
	} t[] = {
		{ "=?UTF-8?B?w6l0w6kgY2hhdWQ=?=", "\xc3\xa9t\xc3\xa9 chaud" },
		{ "=?utf-8?b?R3LDvMOfZSBhdXMgS8O2bG4=?=",
		    "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln" },
		{ "=?ISO-8859-1?Q?caf=E9_au_lait?=", "caf\xc3\xa9 au lait" },
		{ "[Demuseum] =?iso-8859-1?Q?Re:_Multimedia_f=FCr_Preussen?=",
		    "[Demuseum] Re: Multimedia f\xc3\xbcr Preussen" },
		/* 日本語のテスト */
		{ "=?ISO-2022-JP?B?GyRCRnxLXDhsJE4lRiU5JUgbKEI=?=",
		    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86"
		    "\xe3\x82\xb9\xe3\x83\x88" },
		{ "=?koi8-r?B?8NLJ18XU?=",			/* Привет */
		    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
		{ "=?big5?B?pKSk5Q==?=", "\xe4\xb8\xad\xe6\x96\x87" },	/* 中文 */
		/* adjacent words: the white space between them goes */
		{ "=?utf-8?q?Hello?= =?utf-8?q?_World?=", "Hello World" },
		{ "=?utf-8?q?a?=\t =?iso-8859-1?q?=E9?= c", "a\xc3\xa9 c" },
		/* a character split across two words */
		{ "=?utf-8?q?=E2=9C?= =?utf-8?q?=88?=", "\xe2\x9c\x88" },
		{ "Re: =?utf-8?q?caf=C3=A9?= ok", "Re: caf\xc3\xa9 ok" },
		/* malformed words stay as text */
		{ "=?utf-8?Q?unterminated", "=?utf-8?Q?unterminated" },
		{ "=?utf-8?X?abc?=", "=?utf-8?X?abc?=" },
		{ "=?bad", "=?bad" },
		{ "a =? b ?= c", "a =? b ?= c" },
		/* control characters from a word cannot forge lines */
		{ "=?utf-8?Q?a=0D=0Ab?=", "a  b" },
		{ "=?x-unknown-charset?Q?abc?=", "abc" },
		/* mislabels read as the superset mailers mean */
		{ "=?iso-8859-1?q?=93q=94_=80?=",		/* Windows-1252 */
		    "\xe2\x80\x9cq\xe2\x80\x9d \xe2\x82\xac" },
		{ "=?us-ascii?q?=80?=", "\xe2\x82\xac" },
		{ "=?euc-kr?B?jGM=?=", "\xeb\x98\xa0" },	/* CP949 똠 */
		{ "=?shift_jis?B?h0A=?=", "\xe2\x91\xa0" },	/* CP932 ① */
		{ "=?big5?B?o+E=?=", "\xe2\x82\xac" },	/* CP950 € */
		{ "=?GB2312?B?6UY=?=", "\xe9\x95\x95" },	/* GBK 镕 */
	};
	struct mime_headers *h;
	char buf[512];
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		snprintf(buf, sizeof buf, "Subject: %s\r\n\r\nbody\r\n", t[i].raw);
		h = parse_str(buf);
		CHECK_STR(mime_headers_subject(h), t[i].want);
		CHECK_STR(mime_headers_get(h, "subject"), t[i].want);
		mime_headers_free(h);
	}

	/* undecodable bytes in a word: still valid UTF-8 */
	h = parse_str("Subject: =?utf-8?B?/w==?= =?utf-8?q?=C3=28?= "
	    "=?iso-2022-jp?B?GyRCJCQ=?=\n\n");
	CHECK(all_clean(h));
	mime_headers_free(h);
}

static void
test_addresses(void)
{
	struct mime_headers *h = fixture("addresses.eml");
	const char *v[4];

	CHECK_STR(mime_headers_from(h), "\"Doe, Jane\" <Jane.Doe@Example.COM>");
	CHECK_STR(mime_headers_from_addrs(h), "jane.doe@example.com");
	CHECK_STR(mime_headers_to(h),
	    "Alice Example <alice@example.com>, Bob Builder <bob@example.org>, "
	    "Quoted \"Nick\" Name <nick@example.net>, "
	    "Team: carol@example.com, Dave <dave@example.com>;");
	CHECK_STR(mime_headers_cc(h), "undisclosed-recipients: ;, "
	    "J\xc3\xb6rg M\xc3\xbcller <joerg@example.de>, eve@example.com");
	CHECK_STR(mime_headers_to_addrs(h),
	    "alice@example.com,bob@example.org,nick@example.net,"
	    "carol@example.com,dave@example.com,joerg@example.de,"
	    "eve@example.com,secret@example.com");
	CHECK_INT(mime_headers_get_all(h, "to", v, 4), 2);
	CHECK_STR(v[1], "Team: carol@example.com, Dave <dave@example.com>;");
	CHECK_STR(mime_headers_get(h, "CC"), "undisclosed-recipients:;, "
	    "J\xc3\xb6rg M\xc3\xbcller <joerg@example.de>");
	CHECK(mime_headers_get(h, "Body") == NULL);	/* after the blank line */
	mime_headers_free(h);

	/* no address in it: shown as text, no addresses for search */
	h = parse_str("From: =?utf-8?q?just_a_n=C3=A4me?=\nTo: ,,,\nCc:\n"
	    "Cc: root\nCc: Postmaster <postmaster>\n\n");
	CHECK_STR(mime_headers_from(h), "just a n\xc3\xa4me");
	CHECK_STR(mime_headers_from_addrs(h), "");
	CHECK_STR(mime_headers_to(h), ",,,");
	CHECK_STR(mime_headers_cc(h), "root, Postmaster <postmaster>");
	CHECK_STR(mime_headers_to_addrs(h), "");
	mime_headers_free(h);

	/* GMime shows punycode domains as UTF-8 */
	h = parse_str("To: X <X@xn--bcher-kva.Example>\n\n");
	CHECK_STR(mime_headers_to(h), "X <X@b\xc3\xbc" "cher.Example>");
	CHECK_STR(mime_headers_to_addrs(h), "x@b\xc3\xbc" "cher.example");
	mime_headers_free(h);
}

static void
test_folded(void)
{
	struct mime_headers *h = fixture("folded.eml");
	const char *v[3] = { NULL, NULL, "untouched" };

	CHECK_STR(mime_headers_subject(h),
	    "This is a long subject that was folded three times");
	CHECK_STR(mime_headers_get(h, "sUbJeCt"), mime_headers_subject(h));
	CHECK_INT(mime_headers_get_all(h, "Subject", NULL, 0), 1);
	CHECK_INT(mime_headers_get_all(h, "RECEIVED", v, 2), 3);
	CHECK_STR(v[0], "from a.example.com by b.example.com; "
	    "Tue, 14 May 2024 09:30:02 +0200");
	CHECK_STR(v[1], "from c.example.com        by a.example.com; "
	    "Tue, 14 May 2024 09:30:01 +0200");
	CHECK_STR(v[2], "untouched");
	CHECK_STR(mime_headers_get(h, "X-MIXED-CASE"), "first");
	CHECK_INT(mime_headers_get_all(h, "x-mixed-case", v, 3), 2);
	CHECK_STR(v[1], "second");
	CHECK_STR(mime_headers_message_id(h), "folded@example.com");
	CHECK_STR(mime_headers_date(h), "Tue, 14 May 2024 09:30:00 +0200");
	CHECK_INT(mime_headers_date_unix(h), 1715671800);
	CHECK_STR(mime_headers_from_addrs(h), "sender@example.com");
	CHECK(mime_headers_get(h, "X-Absent") == NULL);
	CHECK_INT(mime_headers_get_all(h, "X-Absent", v, 3), 0);
	mime_headers_free(h);
}

static void
test_bare_cr(void)
{
	struct mime_headers *h = fixture("bare-cr.eml");

	CHECK_STR(mime_headers_subject(h),
	    "Delivery Status Notification (Failure) and more");
	CHECK_STR(mime_headers_from(h), "Mac User <mac@example.com>");
	CHECK_STR(mime_headers_to(h), "shironeko <shironeko@example.org>");
	CHECK_STR(mime_headers_to_addrs(h), "shironeko@example.org");
	CHECK_INT(mime_headers_date_unix(h), 1452757512);
	CHECK_STR(mime_headers_message_id(h), "cr@example.com");
	CHECK_INT(mime_headers_get_all(h, "Subject", NULL, 0), 1);
	mime_headers_free(h);
}

/* The same message with every kind of line end gives the same result. */
static void
test_line_endings(void)
{
	static const char *const eols[] = { "\n", "\r\n", "\r", "\r\r\n" };
	static const char *const lines[] = {
		"From: A <a@example.com>", "Subject: one", "\ttwo",
		"Date: Mon, 2 Jan 2006 15:04:05 -0700", "", "Subject: body",
	};
	struct mime_headers *h;
	char buf[512];
	size_t i, j, n;

	for (i = 0; i < sizeof eols / sizeof eols[0]; i++) {
		n = 0;
		for (j = 0; j < sizeof lines / sizeof lines[0]; j++)
			n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s",
			    lines[j], eols[i]);
		h = mime_headers_parse(buf, n);
		CHECK_STR(mime_headers_subject(h), "one two");
		CHECK_STR(mime_headers_from_addrs(h), "a@example.com");
		CHECK_INT(mime_headers_date_unix(h), 1136239445);
		CHECK_INT(mime_headers_get_all(h, "subject", NULL, 0), 1);
		mime_headers_free(h);
	}
}

static void
test_raw_8bit(void)
{
	struct mime_headers *h;

	h = fixture("utf8-raw.eml");	/* RFC 6532 */
	CHECK_STR(mime_headers_subject(h), "Gr\xc3\xbc\xc3\x9f" "e aus K"
	    "\xc3\xb6ln \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
	CHECK_STR(mime_headers_from(h),
	    "J\xc3\xb6rg M\xc3\xbcller <j\xc3\xb6rg@b\xc3\xbc" "cher.example>");
	CHECK_STR(mime_headers_from_addrs(h), "j\xc3\xb6rg@b\xc3\xbc" "cher.example");
	/* ЁЛКА@пример.рф, lower-cased */
	CHECK_STR(mime_headers_to_addrs(h), "\xd1\x91\xd0\xbb\xd0\xba\xd0\xb0@"
	    "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1\x84");
	mime_headers_free(h);

	h = fixture("latin1-raw.eml");	/* unlabelled 8-bit: Windows-1252 */
	CHECK_STR(mime_headers_subject(h),
	    "Caf\xc3\xa9 cr\xc3\xa8me \xe2\x82\xac 5");
	CHECK_STR(mime_headers_from(h),
	    "Fran\xc3\xa7ois P\xc3\xa9rez <francois@example.fr>");
	mime_headers_free(h);

	/* mixed: valid UTF-8 stays, the stray byte is read as Latin-1 */
	h = parse_str("Subject: \xc3\xa9t\xc3\xa9 \xe9t\xe9\n\n");
	CHECK_STR(mime_headers_subject(h), "\xc3\xa9t\xc3\xa9 \xc3\xa9t\xc3\xa9");
	mime_headers_free(h);

	/* raw ISO-2022-JP (7-bit with escapes), as old Japanese mailers sent */
	h = parse_str("Subject: \x1b$BF|K\\8l\x1b(B test\n\n");
	CHECK_STR(mime_headers_subject(h),
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e test");
	mime_headers_free(h);

	h = fixture("iso-2022-jp.eml");
	CHECK_STR(mime_headers_subject(h), "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"
	    "\xe3\x81\xae\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88");
	CHECK_STR(mime_headers_from(h),
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e <jp@example.jp>");
	mime_headers_free(h);
}

static void
test_odd_blocks(void)
{
	struct mime_headers *h;

	h = fixture("bom-blank.eml");
	CHECK_STR(mime_headers_subject(h), "after BOM and blank line");
	CHECK_STR(mime_headers_from_addrs(h), "bom@example.com");
	mime_headers_free(h);

	h = fixture("malformed.eml");
	CHECK_STR(mime_headers_subject(h), "kept value");	/* NUL */
	CHECK_STR(mime_headers_from(h), "ok@example.com");	/* not From_ */
	CHECK_STR(mime_headers_date(h), "garbage date");
	CHECK_INT(mime_headers_date_unix(h), -1);
	CHECK_STR(mime_headers_message_id(h), "no-brackets@example.com");
	CHECK_STR(mime_headers_get(h, "X-Empty"), "");
	CHECK_STR(mime_headers_get(h, "X-Spaces"), "");
	CHECK(mime_headers_get(h, "Bad Name") == NULL);
	CHECK(mime_headers_get(h, "") == NULL);
	CHECK(mime_headers_get(h, "This line has no colon") == NULL);
	mime_headers_free(h);

	h = fixture("no-body.eml");
	CHECK_STR(mime_headers_subject(h), "no body at all");
	CHECK_STR(mime_headers_message_id(h), "nobody@example.com");
	CHECK_STR(mime_headers_from_addrs(h), "a@example.com");
	mime_headers_free(h);

	h = fixture("missing.eml");
	CHECK_STR(mime_headers_subject(h), "");
	CHECK_STR(mime_headers_from(h), "");
	CHECK_STR(mime_headers_to(h), "");
	CHECK_STR(mime_headers_cc(h), "");
	CHECK_STR(mime_headers_date(h), "");
	CHECK_INT(mime_headers_date_unix(h), -1);
	CHECK_STR(mime_headers_message_id(h), "");
	CHECK_STR(mime_headers_from_addrs(h), "");
	CHECK_STR(mime_headers_to_addrs(h), "");
	CHECK(mime_headers_get(h, "Subject") == NULL);
	CHECK_STR(mime_headers_get(h, "x-only"), "this");
	mime_headers_free(h);

	/* leading blank lines are skipped, whatever follows them */
	h = parse_str("\r\n \r\n\thello: world\r\nX: y\r\n");
	CHECK(mime_headers_get(h, "\thello") == NULL);	/* no header to fold into */
	CHECK_STR(mime_headers_get(h, "x"), "y");
	mime_headers_free(h);
}

static void
test_dates(void)
{
	static const struct {
		const char *raw;
		int64_t want;
	} t[] = {
		{ "Mon, 2 Jan 2006 15:04:05 -0700", 1136239445 },
		{ "2 Jan 2006 15:04:05 +0000", 1136214245 },	/* no weekday */
		{ "Mon, 02 Jan 2006 15:04:05 +0530", 1136194445 },
		{ "Mon, 2 Jan 2006 15:04 -0700", 1136239440 },	/* no seconds */
		{ "Mon, 2 Jan 2006 15:04:05 +0000 (UTC)", 1136214245 },
		{ "Thu, 1 Jan 1970 00:00:00 +0000", 0 },
		{ "Sun, 31 Dec 2023 23:59:59 -1200", 1704110399 },
		/* obsolete: two-digit years, named zones */
		{ "Mon, 2 Jan 06 15:04:05 EST", 1136232245 },
		{ "Sat, 1 Jan 99 00:00:00 GMT", 915148800 },
		{ "Fri, 13 Mar 2020 08:00:00 PST", 1584115200 },
		{ "Fri, 13 Mar 2020 16:00:00 UT", 1584115200 },
		{ "garbage", -1 },
		{ "", -1 },
		{ "Mon, 32 Jan 2006 15:04:05 +0000", -1 },
		{ "12345", -1 },
	};
	struct mime_headers *h;
	char buf[256];
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		snprintf(buf, sizeof buf, "Date: %s\r\n\r\n", t[i].raw);
		h = parse_str(buf);
		check_current = t[i].raw;
		CHECK_INT(mime_headers_date_unix(h), t[i].want);
		CHECK_STR(mime_headers_date(h), t[i].raw);
		mime_headers_free(h);
	}
	check_current = "test_dates";
	h = parse_str("Date: Mon, 2 Jan 2006\r\n 15:04:05 -0700\r\n\r\n");
	CHECK_STR(mime_headers_date(h), "Mon, 2 Jan 2006 15:04:05 -0700");
	CHECK_INT(mime_headers_date_unix(h), 1136239445);
	mime_headers_free(h);
}

static void
test_message_ids(void)
{
	static const struct {
		const char *raw, *want;
	} t[] = {
		{ "<abc@example.com>", "abc@example.com" },
		{ "abc@example.com", "abc@example.com" },
		{ "  <abc@example.com>  (comment)", "abc@example.com" },
		{ "(comment) <abc@example.com>", "abc@example.com" },
		{ "<abc@[192.0.2.1]>", "abc@[192.0.2.1]" },
		{ "<>", "" },
		{ "", "" },
	};
	struct mime_headers *h;
	char buf[256];
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++) {
		snprintf(buf, sizeof buf, "Message-Id: %s\n\n", t[i].raw);
		h = parse_str(buf);
		CHECK_STR(mime_headers_message_id(h), t[i].want);
		mime_headers_free(h);
	}
}

/* Every prefix of every fixture: a truncated message must not overrun. */
static void
test_prefixes(void)
{
	static const char *const names[] = {
		"addresses.eml", "folded.eml", "bare-cr.eml", "utf8-raw.eml",
		"latin1-raw.eml", "iso-2022-jp.eml", "bom-blank.eml",
		"malformed.eml", "no-body.eml", "missing.eml",
	};
	const char *dir = getenv("EMAILVAULT_FIXTURES");
	struct mime_headers *h;
	char path[4096], *buf, *copy;
	size_t i, n, len;

	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(path, sizeof path, "%s/mime/%s",
		    dir ? dir : "tests/fixtures", names[i]);
		if ((buf = slurp(path, &len)) == NULL)
			continue;	/* reported by the fixture tests */
		for (n = 0; n <= len; n++) {
			/* an exact-size copy, so ASan sees any overrun */
			copy = malloc(n ? n : 1);
			memcpy(copy, buf, n);
			h = mime_headers_parse(copy, n);
			CHECK(h != NULL && all_clean(h));
			mime_headers_free(h);
			free(copy);
		}
		free(buf);
	}
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Fills BUF (LEN bytes) with PAT repeated after PREFIX. */
static char *
repeat(const char *prefix, const char *pat, size_t len)
{
	char *buf = malloc(len);
	size_t i, n = strlen(prefix), m = strlen(pat);

	memcpy(buf, prefix, n < len ? n : len);
	for (i = n; i < len; i++)
		buf[i] = pat[(i - n) % m];
	return buf;
}

static void
hostile(const char *what, char *buf, size_t len)
{
	struct mime_headers *h;
	double t = now();

	h = mime_headers_parse(buf, len);
	CHECK(h != NULL && all_clean(h));
	mime_headers_get(h, "X-Nothing");
	mime_headers_free(h);
	t = now() - t;
	if (t > 0.2)
		printf("  slow: %-24s %.3f s\n", what, t);
	CHECK(t < 10);
	free(buf);
}

static void
test_hostile(void)
{
	static const char *const pats[] = {
		"a:", "a: b:", ":;", "(", "<", "\"", "\\", "=?", "@", ",", "[",
		"=?x?q?a?= ", "=?utf-8?b?", "a@b, ", "<a@b>", "x:<", "=?=?=?",
		"\"a:\" ", "(a:) ", "<a:", "\x1b$B", "\xff\xfe", "\xc3",
	};
	static const char *const hdrs[] = {
		"To: ", "From: ", "Cc: ", "Bcc: ", "Subject: ", "Date: ",
		"Message-ID: ",
	};
	const size_t max = MIME_HEADER_MAX;
	struct mime_headers *h;
	const char *v[1];
	char *buf, name[64];
	uint32_t x = 12345;
	size_t i, j, n;

	/* 256 KiB of garbage, with enough line ends and colons to matter */
	buf = malloc(max);
	for (i = 0; i < max; i++) {
		x = x * 1103515245 + 12345;
		buf[i] = (char)(x >> 16);
		if ((x >> 8) % 17 == 0)
			buf[i] = "\n\r: \t=?"[(x >> 4) % 7];
	}
	hostile("garbage", buf, max);

	/* a million tiny headers: only the first 256 KiB are looked at */
	n = 4 * 1000 * 1000;
	buf = repeat("", "X:y\n", n);
	h = mime_headers_parse(buf, n);
	CHECK_INT(mime_headers_get_all(h, "x", v, 1), max / 4);
	CHECK_STR(v[0], "y");
	mime_headers_free(h);
	free(buf);

	buf = repeat("Subject: ", "a", max + 100);	/* one long line */
	h = mime_headers_parse(buf, max + 100);
	CHECK_INT(strlen(mime_headers_subject(h)), max - 9);
	mime_headers_free(h);
	free(buf);

	hostile("no colon", repeat("", "abc def\n", max), max);
	hostile("no line end", repeat("", "abcdef", max), max);
	hostile("NULs", calloc(1, max), max);
	hostile("CRs", repeat("", "\r", max), max);
	hostile("continuations", repeat("S: x\n", " \n", max), max);
	hostile("To headers", repeat("", "To: a@b\n", max), max);
	hostile("group headers", repeat("", "To: a:;\n", max), max);
	hostile("words", repeat("", "Subject: =?utf-8?q?=C3?=\n", max), max);
	buf = malloc(max);	/* a new charset name in every word */
	memcpy(buf, "Subject: ", 9);
	for (n = 9, i = 0; n + 40 < max; i++)
		n += (size_t)snprintf(buf + n, max - n, "=?x-cs-%zu?q?a?= ", i);
	hostile("charsets", buf, n);
	/* charsets seen before the flood still decode */
	h = parse_str("Subject: =?koi8-r?B?8NLJ18XU?= =?utf 8?q?x?=\n\n");
	CHECK(strncmp(mime_headers_subject(h), "\xd0\x9f\xd1\x80\xd0\xb8"
	    "\xd0\xb2\xd0\xb5\xd1\x82", 12) == 0);
	CHECK(all_clean(h));
	mime_headers_free(h);

	for (i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++)
		for (j = 0; j < sizeof pats / sizeof pats[0]; j++) {
			snprintf(name, sizeof name, "%s%s", hdrs[i], pats[j]);
			hostile(name, repeat(hdrs[i], pats[j], max), max);
		}
}

/* ---- the real-world corpus ---------------------------------------------- */

static struct mime_headers *
corpus_file(const char *rel)
{
	char path[4096];
	size_t i;

	snprintf(path, sizeof path, "%s/%s", corpus, rel);
	for (i = 0; i < nmsgs; i++)
		if (strcmp(msgs[i].path, path) == 0)
			return mime_headers_parse(msgs[i].data, msgs[i].len);
	fprintf(stderr, "corpus file missing: %s\n", rel);
	CHECK(!"corpus file missing");
	return mime_headers_parse("", 0);
}

static void
test_corpus(void)
{
	struct mime_headers *h;
	size_t i, r, bytes = 0, bad = 0;
	double t;

	if (!find_corpus()) {
		printf("SKIP corpus sweep: %s not found\n", corpus);
		return;
	}
	load_dir(corpus);
	CHECK(nmsgs > 100);

	for (i = 0; i < nmsgs; i++) {
		h = mime_headers_parse(msgs[i].data, msgs[i].len);
		CHECK(h != NULL);
		if (!all_clean(h)) {
			fprintf(stderr, "not clean: %s\n", msgs[i].path);
			bad++;
		}
		mime_headers_free(h);
	}
	CHECK_INT(bad, 0);

	h = corpus_file("Kopano-dev-kopano-core/zcp-11713.eml");
	CHECK_STR(mime_headers_subject(h),	/* ISO-2022-JP: 開封 */
	    "\xe9\x96\x8b\xe5\xb0\x81 : BB.jp domain");
	mime_headers_free(h);
	h = corpus_file("cyrusimap-cyrus-imapd/mime/headers-utf8.bin.eml");
	CHECK_STR(mime_headers_subject(h),	/* raw UTF-8 */
	    "\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0 - \xd1\x81\xd1\x82"
	    "\xd0\xbe\xd0\xbb\xd0\xb8\xd1\x86\xd0\xb0 \xd0\xa0\xd0\xbe\xd1\x81"
	    "\xd1\x81\xd0\xb8\xd0\xb8.");
	CHECK_STR(mime_headers_from_addrs(h), "fyodor@local");
	mime_headers_free(h);
	h = corpus_file("sisimai-set-of-emails/mac/lhost-amazonworkmail-01.eml");
	CHECK_STR(mime_headers_subject(h),	/* bare CR, folded Received */
	    "Delivery Status Notification (Failure)");
	CHECK_STR(mime_headers_to_addrs(h), "shironeko@nyaan.example.awsapps.com");
	CHECK_INT(mime_headers_date_unix(h), 1452757512);
	mime_headers_free(h);
	h = corpus_file("mikel-mail/multi_charset/japanese_iso_2022.eml");
	CHECK_STR(mime_headers_subject(h),	/* まみむめも */
	    "\xe3\x81\xbe\xe3\x81\xbf\xe3\x82\x80\xe3\x82\x81\xe3\x82\x82");
	mime_headers_free(h);
	h = corpus_file("apache-spamassassin/mime-subject.txt.eml");
	CHECK_STR(mime_headers_subject(h),
	    "[Demuseum] Re: Multimedia f\xc3\xbcr Preussen");
	mime_headers_free(h);

	/* the rate in the hot path: every accessor is decoded in parse */
	t = now();
	for (r = 0; r < 20; r++)
		for (i = 0; i < nmsgs; i++) {
			h = mime_headers_parse(msgs[i].data, msgs[i].len);
			mime_headers_free(h);
			bytes += msgs[i].len;
		}
	t = now() - t;
	printf("corpus: %zu messages x 20 in %.3f s: %.0f headers/s, "
	    "%.0f MB/s of raw messages\n", nmsgs, t, 20.0 * (double)nmsgs / t,
	    (double)bytes / t / 1e6);

	for (i = 0; i < nmsgs; i++) {
		free(msgs[i].path);
		free(msgs[i].data);
	}
	free(msgs);
}

int
main(void)
{
	RUN(test_init);
	RUN(test_encoded_words);
	RUN(test_addresses);
	RUN(test_folded);
	RUN(test_bare_cr);
	RUN(test_line_endings);
	RUN(test_raw_8bit);
	RUN(test_odd_blocks);
	RUN(test_dates);
	RUN(test_message_ids);
	RUN(test_prefixes);
	RUN(test_hostile);
	RUN(test_corpus);
	mime_shutdown();	/* GMime's caches, so LSan sees no leak */
	DONE();
}

/*
 * Modified UTF-7 mailbox names: known encodings from RFC 3501 and real
 * servers, round trips, and inputs a strict decoder must refuse.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap/utf7.h"

static const struct {
	const char *utf8, *utf7;
} pairs[] = {
	{ "INBOX", "INBOX" },
	{ "", "" },
	{ "&", "&-" },
	{ "a&b&&", "a&-b&-&-" },
	{ "Entw\xc3\xbc" "rfe", "Entw&APw-rfe" },
	{ "\xd0\xaf\xd1\x89\xd0\xb8\xd0\xba", "&BC8ESQQ4BDo-" },	/* Ящик */
	{ "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-" },	/* 日本語 */
	/* RFC 3501 5.1.3 example */
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac"
	    "\xe8\xaa\x9e", "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "Gel\xc3\xb6schte Elemente", "Gel&APY-schte Elemente" },
	{ "\xc3\xa9t\xc3\xa9", "&AOk-t&AOk-" },
	{ "\xc3\xbc&", "&APw-&-" },
	{ "\xf0\x9f\x93\xa7 Mail", "&2D3c5w- Mail" },	/* U+1F4E7, a pair */
	{ "\x01", "&AAE-" },
	{ "a\x7f" "b", "a&AH8-b" },
	{ "\xef\xbf\xbf", "&,,8-" },			/* U+FFFF */
	{ "\xf4\x8f\xbf\xbf", "&2,,f,w-" },		/* U+10FFFF */
	{ "/", "/" },
	{ "~!\"#$%'()*+,-./:;<=>?@[\\]^_`{|}", "~!\"#$%'()*+,-./:;<=>?@[\\]^_`{|}" },
};

static void
test_pairs(void)
{
	char buf[256];
	size_t i, n;

	for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		n = 999;
		CHECK_INT(imap_utf7_encode(pairs[i].utf8, strlen(pairs[i].utf8),
		    buf, sizeof buf, &n), 0);
		CHECK_STR(buf, pairs[i].utf7);
		CHECK_INT(n, strlen(pairs[i].utf7));
		n = 999;
		CHECK_INT(imap_utf7_decode(pairs[i].utf7, strlen(pairs[i].utf7),
		    buf, sizeof buf, &n), 0);
		CHECK_STR(buf, pairs[i].utf8);
		CHECK_INT(n, strlen(pairs[i].utf8));
	}
}

static void
test_decode_invalid(void)
{
	static const char *const bad[] = {
		"&",		/* unterminated */
		"&AOk",		/* unterminated */
		"a&Jjo",	/* unterminated */
		"&AOk-&AOk-",	/* two runs an encoder would merge */
		"&=-",		/* not base64 */
		"&AOk=-",	/* padding */
		"&A/k-",	/* '/' is ',' here */
		"&A-",		/* too few bits for a unit */
		"&AO-",		/* too few bits for a unit */
		"&AOl-",	/* nonzero spare bits */
		"&AOkA-",	/* a spare base64 char */
		"&AGE-",	/* 'a' must be itself */
		"&ACY-",	/* '&' must be "&-" */
		"&AAA-",	/* U+0000 */
		"&2D0-",	/* high surrogate alone */
		"&2D3YPQ-",	/* high then high */
		"&3+c-",	/* low surrogate alone */
		"&2D0AQQ-",	/* high then a normal unit */
		"a\x80",	/* 8-bit */
		"\xc3\xa9",	/* raw UTF-8 */
		"a\tb",		/* control */
		"a\x7f",	/* DEL */
		"&-&",		/* & then unterminated */
	};
	char buf[64];
	size_t i, n;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		n = 999;
		if (imap_utf7_decode(bad[i], strlen(bad[i]), buf, sizeof buf,
		    &n) != IMAP_UTF7_EINVAL) {
			CHECK_STR(bad[i], "rejected");
		}
		CHECK_INT(n, 999);	/* untouched on error */
	}
	/* "&-" right after a run is a literal '&', not a second run */
	CHECK_INT(imap_utf7_decode("&AOk-&-", 7, buf, sizeof buf, &n), 0);
	CHECK_STR(buf, "\xc3\xa9&");
	/* an embedded NUL byte is not printable ASCII */
	CHECK_INT(imap_utf7_decode("a\0b", 3, buf, sizeof buf, &n),
	    IMAP_UTF7_EINVAL);
}

static void
test_encode_invalid(void)
{
	static const char *const bad[] = {
		"\x80",			/* lone continuation */
		"\xc3",			/* truncated */
		"\xc3\x28",		/* bad continuation */
		"\xc0\xaf",		/* overlong '/' */
		"\xe0\x80\xaf",		/* overlong */
		"\xed\xa0\x80",		/* surrogate D800 */
		"\xf4\x90\x80\x80",	/* > U+10FFFF */
		"\xf8\x88\x80\x80\x80",	/* 5 bytes */
		"\xff",
	};
	char buf[64];
	size_t i, n;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_INT(imap_utf7_encode(bad[i], strlen(bad[i]), buf,
		    sizeof buf, &n), IMAP_UTF7_EINVAL);
	CHECK_INT(imap_utf7_encode("a\0b", 3, buf, sizeof buf, &n),
	    IMAP_UTF7_EINVAL);
	CHECK(imap_utf8_valid("\xe6\x97\xa5", 3));
	CHECK(!imap_utf8_valid("\xe6\x97", 2));
	CHECK(!imap_utf8_valid("\0", 1));
	CHECK(imap_utf8_valid("", 0));
}

/* Output is bounded by cap, always NUL-terminated, never overrun. */
static void
test_bounds(void)
{
	const char *in = "Entw\xc3\xbc" "rfe";	/* -> Entw&APw-rfe (12) */
	char buf[32];
	size_t cap, n;
	int rc;

	for (cap = 0; cap < 20; cap++) {
		memset(buf, 'Z', sizeof buf);
		rc = imap_utf7_encode(in, strlen(in), buf, cap, &n);
		CHECK_INT(rc, cap >= 13 ? 0 : IMAP_UTF7_ESPACE);
		CHECK(buf[cap] == 'Z');
		if (cap > 0)
			CHECK(memchr(buf, '\0', cap) != NULL);
		memset(buf, 'Z', sizeof buf);
		rc = imap_utf7_decode("Entw&APw-rfe", 12, buf, cap, &n);
		CHECK_INT(rc, cap >= 10 ? 0 : IMAP_UTF7_ESPACE);
		CHECK(buf[cap] == 'Z');
	}
}

/* Every code point of the BMP and some beyond survive a round trip; the
 * worst case sizes hold. */
static void
test_roundtrip_all(void)
{
	char in[64], enc[512], dec[64];
	size_t n, len, m;
	uint32_t cp;
	int bad = 0, k;

	for (cp = 1; cp <= 0x10ffff && !bad; cp += (cp < 0x10000 ? 1 : 97)) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		/* three copies to exercise runs and bit carry-over */
		len = 0;
		for (k = 0; k < 3; k++) {
			if (cp < 0x80) {
				in[len++] = (char)cp;
			} else if (cp < 0x800) {
				in[len++] = (char)(0xc0 | cp >> 6);
				in[len++] = (char)(0x80 | (cp & 0x3f));
			} else if (cp < 0x10000) {
				in[len++] = (char)(0xe0 | cp >> 12);
				in[len++] = (char)(0x80 | ((cp >> 6) & 0x3f));
				in[len++] = (char)(0x80 | (cp & 0x3f));
			} else {
				in[len++] = (char)(0xf0 | cp >> 18);
				in[len++] = (char)(0x80 | ((cp >> 12) & 0x3f));
				in[len++] = (char)(0x80 | ((cp >> 6) & 0x3f));
				in[len++] = (char)(0x80 | (cp & 0x3f));
			}
			if (k == 1)
				in[len++] = 'x';
		}
		if (imap_utf7_encode(in, len, enc, IMAP_UTF7_ENCODED_MAX(len),
		    &n) != 0 ||
		    imap_utf7_decode(enc, n, dec, IMAP_UTF7_DECODED_MAX(n),
		    &m) != 0 || m != len || memcmp(in, dec, len) != 0) {
			fprintf(stderr, "  round trip failed for U+%04X\n",
			    (unsigned)cp);
			bad = 1;
		}
	}
	CHECK(!bad);
	/* worst case of the encoder: control bytes between letters */
	CHECK_INT(imap_utf7_encode("\x01" "a\x01", 3, enc,
	    IMAP_UTF7_ENCODED_MAX(3), &n), 0);
	CHECK_STR(enc, "&AAE-a&AAE-");
}

int
main(void)
{
	RUN(test_pairs);
	RUN(test_decode_invalid);
	RUN(test_encode_invalid);
	RUN(test_bounds);
	RUN(test_roundtrip_all);
	DONE();
}

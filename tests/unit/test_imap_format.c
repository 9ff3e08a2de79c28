/*
 * Command argument helpers: astring forms, literals, mailbox names,
 * UID sets and sequence-set parsing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "imap/format.h"

static void
test_forms(void)
{
	CHECK_INT(imap_str_form("INBOX", 5, 0), IMAP_FORM_ATOM);
	CHECK_INT(imap_str_form("a]b", 3, 0), IMAP_FORM_ATOM);
	CHECK_INT(imap_str_form("INBOX", 5, IMAP_FMT_STRING), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("", 0, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a b", 3, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a%", 2, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a*", 2, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a{", 2, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("(", 1, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a\"b", 3, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a\\b", 3, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a\tb", 3, 0), IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("a\rb", 3, 0), IMAP_FORM_LITERAL);
	CHECK_INT(imap_str_form("a\nb", 3, 0), IMAP_FORM_LITERAL);
	CHECK_INT(imap_str_form("a\0b", 3, 0), IMAP_FORM_LITERAL);
	CHECK_INT(imap_str_form("p\xc3\xa4ss", 5, 0), IMAP_FORM_LITERAL);
	CHECK_INT(imap_str_form("p\xc3\xa4ss", 5, IMAP_FMT_UTF8),
	    IMAP_FORM_QUOTED);
	CHECK_INT(imap_str_form("p\xe4ss", 4, IMAP_FMT_UTF8),
	    IMAP_FORM_LITERAL);	/* Latin-1: not UTF-8 */
	CHECK_INT(imap_str_form("a\rb", 3, IMAP_FMT_UTF8), IMAP_FORM_LITERAL);
}

static void
test_astring(void)
{
	char buf[64];
	size_t n;

	CHECK_INT(imap_format_astring(buf, sizeof buf, "alice", 5, 0, &n), 0);
	CHECK_STR(buf, "alice");
	CHECK_INT(n, 5);
	CHECK_INT(imap_format_astring(buf, sizeof buf, "my pass", 7, 0, &n), 0);
	CHECK_STR(buf, "\"my pass\"");
	CHECK_INT(imap_format_astring(buf, sizeof buf, "a\"b\\c", 5, 0, &n), 0);
	CHECK_STR(buf, "\"a\\\"b\\\\c\"");
	CHECK_INT(n, 9);
	CHECK_INT(imap_format_astring(buf, sizeof buf, "", 0, 0, &n), 0);
	CHECK_STR(buf, "\"\"");
	CHECK_INT(imap_format_astring(buf, sizeof buf, "x\r\n", 3, 0, &n),
	    IMAP_FMT_NEEDLIT);
	CHECK_STR(buf, "");
	CHECK_INT(imap_format_astring(buf, sizeof buf, "p\xc3\xa4ss", 5,
	    IMAP_FMT_UTF8, &n), 0);
	CHECK_STR(buf, "\"p\xc3\xa4ss\"");
	/* too small: never overrun, always terminated */
	memset(buf, 'Z', sizeof buf);
	CHECK_INT(imap_format_astring(buf, 5, "alice", 5, 0, &n),
	    IMAP_FMT_ESPACE);
	CHECK_STR(buf, "");
	CHECK(buf[5] == 'Z');
	CHECK_INT(imap_format_astring(buf, 6, "alice", 5, 0, &n), 0);
	CHECK_INT(imap_format_astring(buf, 9, "a\"b\\c", 5, 0, &n),
	    IMAP_FMT_ESPACE);
	CHECK_INT(imap_format_astring(buf, 10, "a\"b\\c", 5, 0, &n), 0);
	CHECK_INT(imap_format_astring(buf, 0, "a", 1, 0, &n), IMAP_FMT_ESPACE);
}

static void
test_literal(void)
{
	char buf[32];
	size_t n;

	CHECK_INT(imap_format_literal(buf, sizeof buf, 5, 0, 0, &n), 0);
	CHECK_STR(buf, "{5}");
	CHECK_INT(imap_format_literal(buf, sizeof buf, 1234, 1, 0, &n), 0);
	CHECK_STR(buf, "{1234+}");
	CHECK_INT(n, 7);
	CHECK_INT(imap_format_literal(buf, sizeof buf, 0, 0, 1, &n), 0);
	CHECK_STR(buf, "~{0}");
	CHECK_INT(imap_format_literal(buf, sizeof buf, UINT64_MAX, 0, 0, &n),
	    0);
	CHECK_STR(buf, "{18446744073709551615}");
	CHECK_INT(imap_format_literal(buf, 3, 5, 0, 0, &n), IMAP_FMT_ESPACE);
}

static void
test_mailbox(void)
{
	char buf[64];
	size_t n, cap;

	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "INBOX", 5, 0, &n), 0);
	CHECK_STR(buf, "INBOX");
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "Entw\xc3\xbc" "rfe", 9,
	    0, &n), 0);
	CHECK_STR(buf, "Entw&APw-rfe");
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "[Gmail]/Sent Mail", 17,
	    0, &n), 0);
	CHECK_STR(buf, "\"[Gmail]/Sent Mail\"");
	CHECK_INT(n, 19);
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "a\"b\\ \xc3\xa9", 7, 0,
	    &n), 0);
	CHECK_STR(buf, "\"a\\\"b\\\\ &AOk-\"");
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "", 0, 0, &n), 0);
	CHECK_STR(buf, "\"\"");
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "a\r\nb", 4, 0, &n), 0);
	CHECK_STR(buf, "a&AA0ACg-b");
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "\xff", 1, 0, &n),
	    IMAP_FMT_EINVAL);
	/* UTF8=ACCEPT: UTF-8 as is */
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "Entw\xc3\xbc" "rfe", 9,
	    IMAP_FMT_UTF8, &n), 0);
	CHECK_STR(buf, "\"Entw\xc3\xbc" "rfe\"");
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "Drafts", 6,
	    IMAP_FMT_UTF8 | IMAP_FMT_STRING, &n), 0);
	CHECK_STR(buf, "Drafts");
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "a\nb", 3,
	    IMAP_FMT_UTF8, &n), IMAP_FMT_NEEDLIT);
	CHECK_INT(imap_format_mailbox(buf, sizeof buf, "\xc3", 1,
	    IMAP_FMT_UTF8, &n), IMAP_FMT_EINVAL);
	/* every cap: either the full answer or ESPACE, never an overrun */
	for (cap = 0; cap < 24; cap++) {
		int rc;

		memset(buf, 'Z', sizeof buf);
		rc = imap_format_mailbox(buf, cap, "a\"b \xc3\xa9", 6, 0, &n);
		CHECK(buf[cap] == 'Z');
		/* "a\"b &AOk-" is 12 bytes */
		CHECK_INT(rc, cap >= 13 ? 0 : IMAP_FMT_ESPACE);
		if (rc == 0)
			CHECK_STR(buf, "\"a\\\"b &AOk-\"");
		else if (cap > 0)
			CHECK_STR(buf, "");
		memset(buf, 'Z', sizeof buf);
		rc = imap_format_mailbox(buf, cap, "Entw\xc3\xbc" "rfe", 9, 0,
		    &n);
		CHECK(buf[cap] == 'Z');
		CHECK_INT(rc, cap >= 13 ? 0 : IMAP_FMT_ESPACE);
	}
}

static void
test_uidset(void)
{
	static const uint32_t u1[] = { 1, 2, 3, 4, 5, 7, 9, 10, 11, 12 };
	static const uint32_t u2[] = { 4, 4, 5, 5, 9 };
	static const uint32_t u3[] = { 4294967294u, 4294967295u, 4294967295u };
	static const uint32_t bad1[] = { 0, 1 };
	static const uint32_t bad2[] = { 5, 4 };
	uint32_t many[1000];
	char buf[128];
	size_t n, used, i, total;

	CHECK_INT(imap_format_uidset(buf, sizeof buf, u1, 10, &used, &n), 0);
	CHECK_STR(buf, "1:5,7,9:12");
	CHECK_INT(used, 10);
	CHECK_INT(n, 10);
	CHECK_INT(imap_format_uidset(buf, sizeof buf, u2, 5, &used, &n), 0);
	CHECK_STR(buf, "4:5,9");
	CHECK_INT(imap_format_uidset(buf, sizeof buf, u3, 3, &used, &n), 0);
	CHECK_STR(buf, "4294967294:4294967295");
	CHECK_INT(used, 3);
	CHECK_INT(imap_format_uidset(buf, sizeof buf, u1, 1, &used, &n), 0);
	CHECK_STR(buf, "1");
	CHECK_INT(imap_format_uidset(buf, sizeof buf, bad1, 2, &used, &n),
	    IMAP_FMT_EINVAL);
	CHECK_INT(imap_format_uidset(buf, sizeof buf, bad2, 2, &used, &n),
	    IMAP_FMT_EINVAL);
	CHECK_INT(imap_format_uidset(buf, sizeof buf, u1, 0, &used, &n),
	    IMAP_FMT_EINVAL);
	/* the cap splits at whole ranges */
	CHECK_INT(imap_format_uidset(buf, 8, u1, 10, &used, &n), 0);
	CHECK_STR(buf, "1:5,7");
	CHECK_INT(used, 6);
	CHECK_INT(imap_format_uidset(buf, 8, u1 + used, 10 - used, &used, &n),
	    0);
	CHECK_STR(buf, "9:12");
	CHECK_INT(imap_format_uidset(buf, 4, u1, 10, &used, &n), 0);
	CHECK_STR(buf, "1:5");
	CHECK_INT(imap_format_uidset(buf, 3, u1, 10, &used, &n),
	    IMAP_FMT_ESPACE);
	CHECK_STR(buf, "");
	CHECK_INT(imap_format_uidset(buf, 22, u3, 3, &used, &n), 0);
	/* odd numbers only: split into chunks that cover everything */
	for (i = 0; i < 1000; i++)
		many[i] = (uint32_t)(2 * i + 100001);
	for (i = 0, total = 0; i < 1000; i += used) {
		CHECK_INT(imap_format_uidset(buf, 64, many + i, 1000 - i, &used,
		    &n), 0);
		CHECK(n < 64);
		CHECK(used > 0);
		total += used;
		if (used == 0)
			break;
	}
	CHECK_INT(total, 1000);
}

static void
test_seqset(void)
{
	struct imap_range r[8];
	size_t n;

	CHECK_INT(imap_parse_seqset("1:3,5,7:*", 9, 20, r, 8, &n), 0);
	CHECK_INT(n, 3);
	CHECK_INT(r[0].lo, 1);
	CHECK_INT(r[0].hi, 3);
	CHECK_INT(r[1].lo, 5);
	CHECK_INT(r[1].hi, 5);
	CHECK_INT(r[2].lo, 7);
	CHECK_INT(r[2].hi, 20);
	CHECK_INT(imap_ranges_count(r, n), 18);
	CHECK_INT(imap_parse_seqset("9:2", 3, 0, r, 8, &n), 0);
	CHECK_INT(r[0].lo, 2);
	CHECK_INT(r[0].hi, 9);
	CHECK_INT(imap_parse_seqset("*:4", 3, 10, r, 8, &n), 0);
	CHECK_INT(r[0].lo, 4);
	CHECK_INT(r[0].hi, 10);
	CHECK_INT(imap_parse_seqset("4294967295", 10, 0, r, 8, &n), 0);
	CHECK_INT(r[0].hi, 4294967295u);
	CHECK_INT(imap_parse_seqset("1:4294967295", 12, 0, r, 8, &n), 0);
	CHECK(imap_ranges_count(r, n) == 4294967295ull);
	CHECK_INT(imap_parse_seqset("1,2,3,4", 7, 0, r, 3, &n),
	    IMAP_FMT_ESPACE);
	CHECK_INT(imap_parse_seqset("1,2,3", 5, 0, r, 3, &n), 0);
	CHECK_INT(n, 3);
	{
		static const char *const bad[] = {
			"", "0", "1:0", ",", "1,", ",1", "1::2", "1:", ":1",
			"4294967296", "1 2", "a", "1,,2", "*", "1:*", "$",
			"-1", "+1", "99999999999999999999",
		};
		size_t i;

		for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
			if (imap_parse_seqset(bad[i], strlen(bad[i]), 0, r, 8,
			    &n) != IMAP_FMT_EINVAL)
				CHECK_STR(bad[i], "rejected");
	}
	CHECK_INT(imap_parse_seqset("*", 1, 7, r, 8, &n), 0);
	CHECK_INT(r[0].lo, 7);
}

static int64_t
idate(const char *s)
{
	int64_t t = 0;

	return imap_parse_internaldate(s, &t) == 0 ? t : -999;
}

static void
test_internaldate(void)
{
	static const char *const bad[] = {
		"17-Jux-1996 02:44:25 -0700", "32-Jul-1996 02:44:25 -0700", "yesterday", "",
		/* hostile numbers: a zone that would negate INT_MIN, overflowing fields */
		"17-Jul-1996 02:44:25 -2147483648", "17-Jul-1996 02:44:25 +99999999999",
		"99999999999-Jul-1996 02:44:25 +0000", "17-Jul-99999999999 02:44:25 +0000",
		"17-Jul-1996 99999999999:44:25 +0000", "17-Jul-1996 02:44:25 +2400",
		"17-Jul-1996 02:44:25 0700", "17-Jul-1996 02:44:25 +07", "17-Jul-1996 2:44:25 +0000",
		"17-Jul-1996 02:61:25 +0000", "29-Feb-2025 00:00:00 +0000", "31-Apr-2025 00:00:00 +0000",
		"00-Jan-2026 00:00:00 +0000", "17-Jul-1996 02:44:25 -0700 trailing", "-1-Jul-1996 02:44:25 +0000",
	};
	CHECK_INT(idate("17-Jul-1996 02:44:25 -0700"), 837596665);
	CHECK_INT(idate(" 1-Jan-2026 05:30:00 +0530"), 1767225600);
	CHECK_INT(idate("1-Jan-2026 00:00:00 -0500"), 1767243600);
	CHECK_INT(idate("01-JAN-2026 00:00:00 +0000"), 1767225600);
	CHECK_INT(idate("29-Feb-2024 12:00:00 +0000"), 1709208000);
	CHECK_INT(idate("31-Dec-1969 23:59:59 +0000"), -1);	/* before the epoch: still a date */
	CHECK_INT(idate("01-Jan-1900 00:00:00 +0000"), -2208988800LL);
	CHECK_INT(idate("31-Dec-9999 23:59:59 -2359"), 253402387139LL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (idate(bad[i]) != -999)
			CHECK_STR(bad[i], "rejected");
	CHECK_INT(imap_parse_internaldate(NULL, NULL), -1);
}

int
main(void)
{
	RUN(test_forms);
	RUN(test_astring);
	RUN(test_literal);
	RUN(test_mailbox);
	RUN(test_uidset);
	RUN(test_seqset);
	RUN(test_internaldate);
	DONE();
}

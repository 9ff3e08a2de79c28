/*
 * The IMAP view's command parser (src/serve/imapd_parse.c, imapd_args.c):
 * framing across any split, literals (synchronizing and not), the limits
 * (a long line or literal is refused with its tag and skipped to the end of
 * its command), the argument tree, sequence sets, FETCH items and SEARCH keys.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "serve/imapd_args.h"
#include "serve/imapd_parse.h"

/* Feeds S in pieces of STEP; collects results as a string of letters:
 * c = command (its text appended in [..]), + = continuation, E = error. */
static void
run(const char *s, size_t len, size_t step, char *out, size_t cap)
{
	struct imapd_framer *f = imapd_framer_new();
	size_t at = 0, o = 0;

	out[0] = '\0';
	while (at < len) {
		size_t n = len - at < step ? len - at : step, used;
		enum imapd_status st = imapd_framer_feed(f, s + at, n, &used);
		at += used;
		if (st == IMAPD_COMMAND) {
			size_t l;
			const char *b = imapd_framer_take(f, &l);
			o += (size_t)snprintf(out + o, cap - o, "c[%.*s]", (int)l, b);
		} else if (st == IMAPD_CONTINUE) {
			o += (size_t)snprintf(out + o, cap - o, "+");
		} else if (st == IMAPD_ERROR) {
			const char *tag, *why = imapd_framer_error(f, &tag);
			o += (size_t)snprintf(out + o, cap - o, "E[%s:%s]", tag, why);
		}
	}
	imapd_framer_free(f);
}

static void
test_framing_any_split(void)
{
	static const char in[] = "a1 NOOP\r\n\r\na2 LOGIN {5}\r\nalice {3+}\r\npw1\r\na3 CHECK\n";
	char want[256], got[256];

	run(in, sizeof(in) - 1, sizeof(in), want, sizeof(want));
	CHECK_STR(want, "c[a1 NOOP]+c[a2 LOGIN {5}\r\nalice {3+}\r\npw1]c[a3 CHECK]");
	for (size_t step = 1; step < sizeof(in); step++) {
		run(in, sizeof(in) - 1, step, got, sizeof(got));
		CHECK_STR(got, want);
	}
}

static void
test_limits(void)
{
	size_t n = IMAPD_LINE_MAX + 100;
	char *big = malloc(n + 64), got[256];

	/* A line too long: refused with its tag, the next command is fine. */
	memcpy(big, "t1 LOGIN ", 9);
	memset(big + 9, 'x', n - 9);
	memcpy(big + n, "\r\nt2 NOOP\r\n", 11);
	run(big, n + 11, 4096, got, sizeof(got));
	CHECK_STR(got, "E[t1:line too long]c[t2 NOOP]");
	/* A synchronizing literal too big: refused at once, never waited for. */
	run("t3 APPEND x {99999999}\r\nt4 NOOP\r\n", 33, 7, got, sizeof(got));
	CHECK_STR(got, "E[t3:literal too big]c[t4 NOOP]");
	/* A non-synchronizing one: its bytes are skipped. */
	{
		size_t l = IMAPD_LITERAL_MAX + 1, k;
		char *s = malloc(l + 64);
		k = (size_t)sprintf(s, "t5 APPEND x {%zu+}\r\n", l);
		memset(s + k, 'y', l);
		memcpy(s + k + l, "\r\nt6 NOOP\r\n", 11);
		run(s, k + l + 11, 1000, got, sizeof(got));
		CHECK_STR(got, "E[t5:literal too big]c[t6 NOOP]");
		free(s);
	}
	free(big);
}

static void
test_parse_tree(void)
{
	static const char c[] = "A7 uid fetch 1:3,9:* (UID BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> "
	    "BODY[1.2.MIME] FLAGS)";
	struct imapd_cmd cmd;
	struct imapd_fetch f;
	struct imapd_seqset s;
	char err[128];

	CHECK_INT(imapd_parse(c, sizeof(c) - 1, &cmd, err, sizeof(err)), 0);
	CHECK_STR(cmd.tag, "A7");
	CHECK_STR(cmd.name, "UID FETCH");
	CHECK_INT(imapd_nargs(&cmd), 2);
	CHECK_INT(imapd_seqset_parse(imapd_arg(&cmd, 0)->s, imapd_arg(&cmd, 0)->len, &s), 0);
	CHECK_INT(s.n, 2);
	CHECK(imapd_seqset_has(&s, 2, 20) && imapd_seqset_has(&s, 20, 20) && !imapd_seqset_has(&s, 5, 20));
	CHECK_INT(imapd_fetch_parse(&cmd, imapd_arg(&cmd, 1), &f, err, sizeof(err)), 0);
	CHECK_INT(f.n, 4);
	CHECK_INT(f.items[1].kind, FETCH_SECTION);
	CHECK(f.items[1].peek);
	CHECK_INT(f.items[1].text, SECTION_HEADER_FIELDS);
	CHECK_INT(f.items[1].nfields, 2);
	CHECK_STR(f.items[1].fields[0], "From");
	CHECK_STR(f.items[1].fields[1], "To");
	CHECK(f.items[1].partial && f.items[1].start == 0 && f.items[1].count == 100);
	CHECK_STR(f.items[1].name, "BODY[HEADER.FIELDS (From \"To\")]<0>");
	CHECK_INT(f.items[2].nparts, 2);
	CHECK_INT(f.items[2].text, SECTION_MIME);
	imapd_cmd_free(&cmd);

	static const char lit[] = "a LOGIN {5}\r\nal\"ce \"p\\\"w\"";
	CHECK_INT(imapd_parse(lit, sizeof(lit) - 1, &cmd, err, sizeof(err)), 0);
	CHECK_STR(imapd_arg(&cmd, 0)->s, "al\"ce");
	CHECK(imapd_arg(&cmd, 0)->literal);
	CHECK_STR(imapd_arg(&cmd, 1)->s, "p\"w");
	imapd_cmd_free(&cmd);

	static const char *const bad[] = { "a FETCH (", "a FETCH )", "a FETCH \"x", "a FETCH {9}\r\nab",
		"a FETCH BODY[", "FETCH", "a" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(imapd_parse(bad[i], strlen(bad[i]), &cmd, err, sizeof(err)), -1);
		imapd_cmd_free(&cmd);
	}
	static const char badf[] = "a FETCH 1 (BODY[HEADER.FIELDS ()] BODY[0])";
	CHECK_INT(imapd_parse(badf, sizeof(badf) - 1, &cmd, err, sizeof(err)), 0);
	CHECK_INT(imapd_fetch_parse(&cmd, imapd_arg(&cmd, 1), &f, err, sizeof(err)), -1);
	imapd_cmd_free(&cmd);
}

static void
test_search_keys(void)
{
	static const char c[] = "s SEARCH CHARSET UTF-8 OR (FROM alice SINCE 1-Feb-2024) NOT UID 3:* 1,2";
	struct imapd_cmd cmd;
	struct imapd_search *q = malloc(sizeof(*q));
	char err[128];

	CHECK_INT(imapd_parse(c, sizeof(c) - 1, &cmd, err, sizeof(err)), 0);
	CHECK_INT(imapd_search_parse(&cmd, 0, q, err, sizeof(err)), 0);
	CHECK_STR(q->charset, "UTF-8");
	const struct imapd_search_key *root = &q->keys[q->root];
	CHECK_INT(root->op, S_AND);
	const struct imapd_search_key *or = &q->keys[root->a];
	CHECK_INT(or->op, S_OR);
	CHECK_INT(q->keys[or->a].op, S_AND);
	CHECK_INT(q->keys[or->b].op, S_NOT);
	CHECK_INT(q->keys[q->keys[or->b].a].op, S_UID);
	CHECK(q->keys[root->a].next >= 0 && q->keys[q->keys[root->a].next].op == S_SEQ);
	CHECK_INT(imapd_parse_date("1-Feb-2024"), 19754);
	CHECK_INT(imapd_parse_date("31-Foo-2024"), -1);
	imapd_search_free(q);
	imapd_cmd_free(&cmd);
	static const char bad[] = "s SEARCH SINCE yesterday";
	CHECK_INT(imapd_parse(bad, sizeof(bad) - 1, &cmd, err, sizeof(err)), 0);
	CHECK_INT(imapd_search_parse(&cmd, 0, q, err, sizeof(err)), -1);
	imapd_search_free(q);
	imapd_cmd_free(&cmd);
	free(q);
}

int
main(void)
{
	RUN(test_framing_any_split);
	RUN(test_limits);
	RUN(test_parse_tree);
	RUN(test_search_keys);
	DONE();
}

/*
 * The emailvault tokenizer: tokens and their byte ranges in many scripts,
 * folding (case, diacritics, compatibility forms, the hand-made folds),
 * CJK bigrams in documents and queries, bounds, invalid input, and the
 * FTS5 registration (snippet/highlight offsets, prefix queries).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "check.h"
#include "search/tokenize.h"

struct out {
	char s[8192];
	size_t len;
	int n;
	int bad;		/* offsets out of order or out of range */
	int last_start;
	size_t textlen;
	int maxlen;
};

static int
collect(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct out *o = ud;
	char one[600];
	int w;

	if (start < 0 || end <= start || (size_t)end > o->textlen || start < o->last_start)
		o->bad = 1;
	o->last_start = start;
	if (len > o->maxlen)
		o->maxlen = len;
	w = snprintf(one, sizeof one, "%s%.*s%s", o->n ? " " : "", len, tok,
	    (flags & SEARCH_TOKEN_CJK_ONE) ? "^" : "");
	if (o->len + (size_t)w < sizeof o->s) {
		memcpy(o->s + o->len, one, (size_t)w + 1);
		o->len += (size_t)w;
	}
	o->n++;
	return 0;
}

/* The tokens of TEXT, space-separated; a lone CJK character gets '^'. */
static const char *
toks_mode(const char *text, int mode)
{
	static struct out o;

	memset(&o, 0, sizeof o);
	o.textlen = strlen(text);
	search_tokenize(text, strlen(text), mode, collect, &o);
	CHECK(!o.bad);
	return o.s;
}

static const char *
toks(const char *text)
{
	return toks_mode(text, SEARCH_TOKENIZE_DOCUMENT);
}

static const char *
qtoks(const char *text)
{
	return toks_mode(text, SEARCH_TOKENIZE_QUERY);
}

/* "tok@start-end ..." */
struct spans {
	char s[2048];
	size_t len;
};

static int
collect_spans(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct spans *sp = ud;
	int w;

	(void)flags;
	w = snprintf(sp->s + sp->len, sizeof sp->s - sp->len, "%s%.*s@%d-%d",
	    sp->len ? " " : "", len, tok, start, end);
	if (w > 0 && sp->len + (size_t)w < sizeof sp->s)
		sp->len += (size_t)w;
	return 0;
}

static const char *
spans(const char *text)
{
	static struct spans sp;

	memset(&sp, 0, sizeof sp);
	search_tokenize(text, strlen(text), SEARCH_TOKENIZE_DOCUMENT, collect_spans, &sp);
	return sp.s;
}

static void
test_ascii(void)
{
	CHECK_STR(toks("Hello, World! It's 2024-01-05."), "hello world it s 2024 01 05");
	CHECK_STR(toks("  \t\r\n  "), "");
	CHECK_STR(toks(""), "");
	CHECK_STR(toks("Q3 report v2.1 A1B2"), "q3 report v2 1 a1b2");
	CHECK_STR(spans("ab  Cd."), "ab@0-2 cd@4-6");
}

/* Addresses: split at '@', '.', '_', '-', '+', so the parts are words and
 * the whole address is the phrase of its parts. */
static void
test_addresses(void)
{
	CHECK_STR(toks("Alice Example <alice.smith+tag@mail.example.com>"),
	    "alice example alice smith tag mail example com");
	CHECK_STR(toks("q3_report-final"), "q3 report final");
	CHECK_STR(qtoks("alice@example.com"), "alice example com");
}

static void
test_diacritics(void)
{
	CHECK_STR(toks("Zürich Genève CAFÉ crème naïve Ångström Søren"),
	    "zurich geneve cafe creme naive angstrom soren");
	/* NFD input folds the same and the range covers the combining mark */
	CHECK_STR(toks("Zu\xcc\x88rich cafe\xcc\x81"), "zurich cafe");
	CHECK_STR(spans("Zu\xcc\x88rich"), "zurich@0-8");
	CHECK_STR(spans("cafe\xcc\x81!"), "cafe@0-6");
	CHECK_STR(spans("Zürich"), "zurich@0-7");
	/* Vietnamese stacks two marks */
	CHECK_STR(toks("Tiếng Việt"), "tieng viet");
	/* Polish, Croatian, Maltese: letters with strokes */
	CHECK_STR(toks("Łódź Đurđevac Ħamrun"), "lodz durdevac hamrun");
}

static void
test_special_folds(void)
{
	/* full case folding of ß, also from capital ẞ */
	CHECK_STR(toks("Straße STRASSE STRAẞE"), "strasse strasse strasse");
	/* ligatures by compatibility decomposition, æ/œ by hand */
	CHECK_STR(toks("ﬁnance ﬂow Æbler œuvre"), "finance flow aebler oeuvre");
	/* Turkish: not locale dependent; dotted İ loses its dot, dotless ı
	 * is i, so "ILIK", "ılık" and "ilik" are one word */
	CHECK_STR(toks("İstanbul ISTANBUL ılık ILIK"), "istanbul istanbul ilik ilik");
	/* Greek: final sigma, tonos and dialytika, upper case */
	CHECK_STR(toks("Οδυσσέας ΟΔΥΣΣΕΑΣ οδυσσεας"), "οδυσσεασ οδυσσεασ οδυσσεασ");
	CHECK_STR(toks("Ϊ ΐ Άθως"), "ι ι αθωσ");
	/* compatibility forms: full-width Latin and digits, micro sign, Ω,
	 * circled and superscript digits, fractions split at the slash */
	CHECK_STR(toks("ＡＢＣ１２３ µm Ω ① x² ½"), "abc123 μm ω 1 x2 1 2");
	/* digits of other scripts become ASCII */
	CHECK_STR(toks("٢٠٢٤ १२३"), "2024 123");
}

static void
test_cyrillic(void)
{
	CHECK_STR(toks("Привет ПРИВЕТ привет"), "привет привет привет");
	/* ё is е (Russian writes it either way); й folds to и with the
	 * other diacritics (documented) */
	CHECK_STR(toks("Ёлка ёлка елка СЧЁТ счет"), "елка елка елка счет счет");
	CHECK_STR(toks("Йогурт"), "иогурт");
	/* ї is і with a diaeresis */
	CHECK_STR(toks("Україна Їжак"), "украіна іжак");
}

static void
test_cjk(void)
{
	/* a document: overlapping bigrams and the run's last character */
	CHECK_STR(toks("北京"), "北京 京^");
	CHECK_STR(toks("北京欢迎你"), "北京 京欢 欢迎 迎你 你^");
	CHECK_STR(toks("京"), "京^");
	/* a query: the phrase of the bigrams; a lone character stays alone */
	CHECK_STR(qtoks("北京"), "北京");
	CHECK_STR(qtoks("北京欢迎你"), "北京 京欢 欢迎 迎你");
	CHECK_STR(qtoks("京"), "京^");
	/* punctuation and script changes end runs */
	CHECK_STR(toks("北京，上海。Gmail邮箱"), "北京 京^ 上海 海^ gmail 邮箱 箱^");
	CHECK_STR(qtoks("北京，上海"), "北京 上海");
	/* byte ranges of bigrams */
	CHECK_STR(spans("a北京b"), "a@0-1 北京@1-7 京@4-7 b@7-8");
	/* ideographic space separates */
	CHECK_STR(toks("北\xe3\x80\x80京"), "北^ 京^");
}

static void
test_japanese(void)
{
	/* kanji, hiragana and katakana (with ー) form one run */
	CHECK_STR(qtoks("東京タワーに行きます"), "東京 京タ タワ ワー ーに に行 行き きま ます");
	CHECK_STR(qtoks("コーヒー"), "コー ーヒ ヒー");
	/* half-width katakana and its dakuten compose to the full-width letter */
	CHECK_STR(qtoks("ｶﾞｽ"), "ガス");
	CHECK_STR(qtoks("ガス"), "ガス");
	/* NFD kana (as macOS file names have them) compose too */
	CHECK_STR(qtoks("\xe3\x82\xab\xe3\x82\x99\xe3\x82\xb9"), "ガス");
	CHECK_STR(spans("\xe3\x82\xab\xe3\x82\x99\xe3\x82\xb9"), "ガス@0-9 ス@6-9");
	/* が and か stay different */
	CHECK_STR(qtoks("がす"), "がす");
	CHECK_STR(qtoks("かす"), "かす");
	/* the middle dot and brackets separate */
	CHECK_STR(qtoks("「会議」・議事録"), "会議 議事 事録");
	/* iteration mark and 〆 are part of runs */
	CHECK_STR(qtoks("時々〆切"), "時々 々〆 〆切");
}

static void
test_korean(void)
{
	CHECK_STR(toks("회의를 합시다"), "회의 의를 를^ 합시 시다 다^");
	CHECK_STR(qtoks("회의"), "회의");
	/* NFD Hangul (conjoining jamo) composes to the same syllables */
	CHECK_STR(qtoks("\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab\xe1\x84\x80\xe1\x85\xb3\xe1\x86\xaf"),
	    "한글");
	CHECK_STR(qtoks("한글"), "한글");
}

static void
test_other_scripts(void)
{
	/* Devanagari and Thai keep their vowel marks (they spell the word) */
	CHECK_STR(toks("नमस्ते दुनिया"), "नमस्ते दुनिया");
	CHECK_STR(toks("नमसत"), "नमसत");
	/* Thai has no spaces between words: a run is one token */
	CHECK_STR(toks("ภาษาไทย ง่าย"), "ภาษาไทย ง่าย");
	/* Arabic and Hebrew lose their optional vowel points */
	CHECK_STR(toks("مَرْحَبًا مرحبا"), "مرحبا مرحبا");
	CHECK_STR(toks("שָׁלוֹם שלום"), "שלום שלום");
}

static void
test_symbols(void)
{
	/* emoji and symbols separate; variation selectors, joiners and the
	 * soft hyphen are invisible and do not cut a word */
	CHECK_STR(toks("a😀b ❤️ 👩‍💻 ok"), "a b ok");
	CHECK_STR(toks("infor\xc2\xadmation"), "information");
	CHECK_STR(toks("zero\xe2\x80\x8bwidth"), "zerowidth");
	CHECK_STR(toks("™ ©2024 №5"), "tm 2024 no5");
}

/* A 10 MB word is one token cut at SEARCH_TOKEN_MAX bytes on a character
 * boundary; its tokenization allocates nothing and ends. */
static void
test_long_tokens(void)
{
	size_t n = 10 * 1024 * 1024, i;
	char *big = malloc(n + 1);
	struct out *o = calloc(1, sizeof *o);

	for (i = 0; i < n; i++)
		big[i] = "abcdefghij"[i % 10];
	big[n] = '\0';
	o->textlen = n;
	search_tokenize(big, n, SEARCH_TOKENIZE_DOCUMENT, collect, o);
	CHECK_INT(o->n, 1);
	CHECK_INT(o->maxlen, SEARCH_TOKEN_MAX);
	CHECK(!o->bad);
	/* two-byte letters: cut before a character that does not fit */
	for (i = 0; i + 1 < n; i += 2) {
		big[i] = (char)0xc3;
		big[i + 1] = (char)0xa9;	/* é -> e: 1 byte each */
	}
	memset(o, 0, sizeof *o);
	o->textlen = n;
	search_tokenize(big, n, SEARCH_TOKENIZE_DOCUMENT, collect, o);
	CHECK_INT(o->n, 1);
	CHECK_INT(o->maxlen, SEARCH_TOKEN_MAX);
	for (i = 0; i + 1 < n; i += 2) {
		big[i] = (char)0xd0;
		big[i + 1] = (char)0xb6;	/* ж stays 2 bytes */
	}
	memset(o, 0, sizeof *o);
	o->textlen = n;
	search_tokenize(big, n, SEARCH_TOKENIZE_DOCUMENT, collect, o);
	CHECK_INT(o->n, 1);
	CHECK_INT(o->maxlen, SEARCH_TOKEN_MAX);
	/* a 10 MB CJK run: bigrams throughout, all offsets in order */
	for (i = 0; i + 2 < n; i += 3)
		memcpy(big + i, (i / 3) % 2 ? "\xe4\xba\xac" : "\xe5\x8c\x97", 3);
	memset(o, 0, sizeof *o);
	o->textlen = i;
	search_tokenize(big, i, SEARCH_TOKENIZE_DOCUMENT, collect, o);
	CHECK_INT(o->n, (int)(i / 3));
	CHECK(!o->bad);
	/* a word after the cut one starts fresh */
	CHECK_STR(toks("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaa next") + SEARCH_TOKEN_MAX, " next");
	free(o);
	free(big);
}

static void
test_invalid_utf8(void)
{
	/* each bad byte separates; the valid parts are still words */
	CHECK_STR(toks("bad\xff" "ok"), "bad ok");
	CHECK_STR(toks("a\xc3"), "a");			/* truncated */
	CHECK_STR(toks("a\xc0\xaf" "b"), "a b");		/* overlong '/' */
	CHECK_STR(toks("a\xed\xa0\x80" "b"), "a b");	/* surrogate */
	CHECK_STR(toks("a\xf4\x90\x80\x80" "b"), "a b");	/* past U+10FFFF */
	CHECK_STR(toks("\x80\x80\x80"), "");
	CHECK_STR(spans("x\xff" "y"), "x@0-1 y@2-3");
	/* a NUL byte in the middle separates (len is explicit) */
	{
		struct out o;

		memset(&o, 0, sizeof o);
		o.textlen = 5;
		search_tokenize("ab\0cd", 5, SEARCH_TOKENIZE_DOCUMENT, collect, &o);
		CHECK_STR(o.s, "ab cd");
	}
}

struct stop {
	int n;
};

static int
stop_at_two(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct stop *s = ud;

	(void)flags; (void)tok; (void)len; (void)start; (void)end;
	return ++s->n == 2 ? 77 : 0;
}

static void
test_callback_stops(void)
{
	struct stop s = { 0 };

	CHECK_INT(search_tokenize("one two three", 13, 0, stop_at_two, &s), 77);
	CHECK_INT(s.n, 2);
	s.n = 0;
	CHECK_INT(search_tokenize("北京欢迎", 12, 0, stop_at_two, &s), 77);
	CHECK_INT(s.n, 2);
}

/*
 * Folding is idempotent: a query token given to the tokenizer again is
 * that one token. The compiler relies on it (it sends tokens as quoted
 * FTS5 strings, which FTS5 tokenizes again). Checked for every code point.
 */
struct idem {
	char tok[SEARCH_TOKEN_MAX + 1];
	int len, n;
};

static int
first_token(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct idem *d = ud;

	(void)flags; (void)start; (void)end;
	if (d->n++ == 0) {
		memcpy(d->tok, tok, (size_t)len);
		d->len = len;
	}
	return 0;
}

struct idem_all {
	int failures;
	unsigned cp;
};

static int
check_again(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct idem_all *a = ud;
	struct idem d;

	(void)flags; (void)start; (void)end;
	memset(&d, 0, sizeof d);
	search_tokenize(tok, (size_t)len, SEARCH_TOKENIZE_QUERY, first_token, &d);
	if (d.n != 1 || d.len != len || memcmp(d.tok, tok, (size_t)len) != 0) {
		if (a->failures++ < 10)
			fprintf(stderr, "not idempotent: U+%04X -> %.*s\n", a->cp, len, tok);
	}
	return 0;
}

static void
test_idempotent(void)
{
	/* alone, and followed by a mark dropped after Latin letters or one
	 * kept after Devanagari letters */
	static const char *const after[] = { "", "\xcc\x81", "\xe0\xa4\xbc" };
	struct idem_all a = { 0, 0 };
	char buf[16];
	unsigned c, k;
	int n;

	for (k = 0; k < 3; k++)
	for (c = 1; c <= 0x10FFFF; c++) {
		if (c >= 0xD800 && c <= 0xDFFF)
			continue;
		n = 0;
		if (c < 0x80) buf[n++] = (char)c;
		else if (c < 0x800) {
			buf[n++] = (char)(0xC0 | c >> 6);
			buf[n++] = (char)(0x80 | (c & 0x3F));
		} else if (c < 0x10000) {
			buf[n++] = (char)(0xE0 | c >> 12);
			buf[n++] = (char)(0x80 | (c >> 6 & 0x3F));
			buf[n++] = (char)(0x80 | (c & 0x3F));
		} else {
			buf[n++] = (char)(0xF0 | c >> 18);
			buf[n++] = (char)(0x80 | (c >> 12 & 0x3F));
			buf[n++] = (char)(0x80 | (c >> 6 & 0x3F));
			buf[n++] = (char)(0x80 | (c & 0x3F));
		}
		memcpy(buf + n, after[k], strlen(after[k]));
		n += (int)strlen(after[k]);
		a.cp = c;
		search_tokenize(buf, (size_t)n, SEARCH_TOKENIZE_QUERY, check_again, &a);
	}
	CHECK_INT(a.failures, 0);
}

/* ---- through FTS5 -------------------------------------------------------- */

static sqlite3 *
fts_db(void)
{
	sqlite3 *db = NULL;

	CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
	CHECK_INT(search_tokenizer_register(db), SQLITE_OK);
	CHECK_INT(sqlite3_exec(db, "CREATE VIRTUAL TABLE t USING fts5(a, tokenize = 'emailvault')",
	    NULL, NULL, NULL), SQLITE_OK);
	return db;
}

static void
insert(sqlite3 *db, const char *text)
{
	sqlite3_stmt *st;

	CHECK_INT(sqlite3_prepare_v2(db, "INSERT INTO t(a) VALUES (?1)", -1, &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
	CHECK_INT(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

/* highlight() of the rows matching MATCH, joined with '|'. */
static const char *
hl(sqlite3 *db, const char *match)
{
	static char out[1024];
	sqlite3_stmt *st;
	size_t len = 0;

	out[0] = '\0';
	if (sqlite3_prepare_v2(db, "SELECT highlight(t, 0, '[', ']') FROM t WHERE t MATCH ?1 "
	    "ORDER BY rowid", -1, &st, NULL) != SQLITE_OK)
		return "prepare failed";
	sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW)
		len += (size_t)snprintf(out + len, sizeof out - len, "%s%s", len ? "|" : "",
		    (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out;
}

static void
test_fts5(void)
{
	sqlite3 *db = fts_db();

	insert(db, "Grüße aus Zürich!");
	insert(db, "我们在北京开会");
	insert(db, "北方的京剧");
	insert(db, "ΟΔΥΣΣΕΑΣ και Ёлка");
	CHECK_STR(hl(db, "zurich"), "Grüße aus [Zürich]!");
	CHECK_STR(hl(db, "\"ZÜRICH\""), "Grüße aus [Zürich]!");
	CHECK_STR(hl(db, "grusse"), "[Grüße] aus Zürich!");
	CHECK_STR(hl(db, "zür*"), "Grüße aus [Zürich]!");
	CHECK_STR(hl(db, "\"北京\""), "我们在[北京]开会");
	CHECK_STR(hl(db, "\"京剧\""), "北方的[京剧]");
	/* a lone character as a prefix finds it inside a run and at its end */
	CHECK_STR(hl(db, "\"京\"*"), "我们在北[京开]会|北方的[京剧]");
	CHECK_STR(hl(db, "\"会\"*"), "我们在北京开[会]");
	CHECK_STR(hl(db, "\"北京开会\""), "我们在[北京开会]");
	CHECK_STR(hl(db, "\"京北\""), "");
	CHECK_STR(hl(db, "οδυσσέας"), "[ΟΔΥΣΣΕΑΣ] και Ёлка");
	CHECK_STR(hl(db, "елка"), "ΟΔΥΣΣΕΑΣ και [Ёлка]");
	sqlite3_close(db);

	/* the tokenizer takes no options */
	CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
	CHECK_INT(search_tokenizer_register(db), SQLITE_OK);
	CHECK(sqlite3_exec(db, "CREATE VIRTUAL TABLE t USING fts5(a, tokenize = 'emailvault x')",
	    NULL, NULL, NULL) != SQLITE_OK);
	sqlite3_close(db);
}

int
main(void)
{
	RUN(test_ascii);
	RUN(test_addresses);
	RUN(test_diacritics);
	RUN(test_special_folds);
	RUN(test_cyrillic);
	RUN(test_cjk);
	RUN(test_japanese);
	RUN(test_korean);
	RUN(test_other_scripts);
	RUN(test_symbols);
	RUN(test_long_tokens);
	RUN(test_invalid_utf8);
	RUN(test_callback_stops);
	RUN(test_idempotent);
	RUN(test_fts5);
	DONE();
}

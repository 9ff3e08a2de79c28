/*
 * The "emailvault" FTS5 tokenizer. Two stages:
 *
 * 1. fold_cp maps one code point to its folded code points, each with a
 *    class: compatibility decomposition (NFKD), lower case, a few
 *    letters without a decomposition folded by hand (ß, æ, ø, ł...),
 *    digits of every script to ASCII. Combining marks that are accents on
 *    a base of Latin, Greek, Cyrillic (and a few more) are dropped here.
 *    The results for the BMP are cached in blocks of 256 built on first
 *    use from GLib's tables.
 * 2. tokenize walks the folded code points: letters, digits and kept
 *    marks make words; Han/Kana/Hangul make runs cut into overlapping
 *    bigrams; everything else separates. A mark after a CJK character is
 *    composed with it (NFD kana, half-width dakuten, conjoining jamo), so
 *    NFC and NFD input give the same tokens.
 *
 * Every token carries the byte range of the input it came from.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "search/index_text.h"
#include "search/rank.h"
#include "search/tokenize.h"

/* Classes of a folded code point */
enum {
	C_SEP,		/* separates tokens */
	C_WORD,		/* letter or digit; marks after it are dropped */
	C_WORDK,	/* letter or digit; marks after it are kept */
	C_CJK,		/* Han, Hiragana, Katakana, Hangul */
	C_MARK,		/* combining mark: kept, composed or dropped by context */
	C_IGNORE	/* invisible: soft hyphen, joiners, variation selectors */
};

#define ENT(cp, cls)	((uint32_t)(cp) | (uint32_t)(cls) << 24)
#define ENT_CP(e)	((e) & 0xFFFFFFu)
#define ENT_CLS(e)	((e) >> 24)
#define FOLD_MAX	(2 * G_UNICHAR_MAX_DECOMPOSITION_LENGTH + 2)

static int
cjk_char(gunichar c, GUnicodeScript s)
{
	return s == G_UNICODE_SCRIPT_HAN || s == G_UNICODE_SCRIPT_HIRAGANA ||
	    s == G_UNICODE_SCRIPT_KATAKANA || s == G_UNICODE_SCRIPT_HANGUL ||
	    c == 0x30FC ||	/* KATAKANA-HIRAGANA PROLONGED SOUND MARK */
	    c == 0x3006;	/* IDEOGRAPHIC CLOSING MARK (as in 〆切) */
}

/*
 * Scripts whose combining marks are accents or optional points: removed,
 * so "Zürich" matches "zurich", "Αθήνα" matches "ΑΘΗΝΑ", "ё" matches
 * "е". In the others (Devanagari, Thai, ...) marks spell vowels: kept.
 */
static int
strips_marks(GUnicodeScript s)
{
	switch (s) {
	case G_UNICODE_SCRIPT_COMMON:
	case G_UNICODE_SCRIPT_INHERITED:
	case G_UNICODE_SCRIPT_LATIN:
	case G_UNICODE_SCRIPT_GREEK:
	case G_UNICODE_SCRIPT_CYRILLIC:
	case G_UNICODE_SCRIPT_ARMENIAN:
	case G_UNICODE_SCRIPT_GEORGIAN:
	case G_UNICODE_SCRIPT_HEBREW:
	case G_UNICODE_SCRIPT_ARABIC:
		return 1;
	default:
		return 0;
	}
}

static int
is_letter_or_digit(GUnicodeType t)
{
	switch (t) {
	case G_UNICODE_LOWERCASE_LETTER:
	case G_UNICODE_MODIFIER_LETTER:
	case G_UNICODE_OTHER_LETTER:
	case G_UNICODE_TITLECASE_LETTER:
	case G_UNICODE_UPPERCASE_LETTER:
	case G_UNICODE_DECIMAL_NUMBER:
	case G_UNICODE_LETTER_NUMBER:
	case G_UNICODE_OTHER_NUMBER:
		return 1;
	default:
		return 0;
	}
}

static int
is_mark(GUnicodeType t)
{
	return t == G_UNICODE_NON_SPACING_MARK || t == G_UNICODE_SPACING_MARK ||
	    t == G_UNICODE_ENCLOSING_MARK;
}

/*
 * Lower case of one letter or digit that has no further decomposition,
 * with the folds simple lower-casing lacks: ß -> ss (full case folding),
 * final sigma, and letters people commonly type without their stroke or
 * as two letters (ı ł ø đ ħ æ œ). Returns the number of code points. The
 * class (are marks after it kept?) is that of the result, as it would be
 * if the result were tokenized again: a digit of a script that keeps its
 * marks becomes an ASCII digit, which does not.
 */
static int
fold_letter(gunichar c, uint32_t *out)
{
	int v, cls = C_WORD;

	c = g_unichar_tolower(c);
	switch (c) {
	case 0x00DF: out[0] = ENT('s', cls); out[1] = ENT('s', cls); return 2;
	case 0x00E6: out[0] = ENT('a', cls); out[1] = ENT('e', cls); return 2;
	case 0x0153: out[0] = ENT('o', cls); out[1] = ENT('e', cls); return 2;
	case 0x03C2: c = 0x03C3; break;	/* ς -> σ */
	case 0x0131: c = 'i'; break;
	case 0x0142: c = 'l'; break;
	case 0x00F8: c = 'o'; break;
	case 0x0111: c = 'd'; break;
	case 0x0127: c = 'h'; break;
	default:
		if (c >= 0x80 && (v = g_unichar_digit_value(c)) >= 0)
			c = '0' + (gunichar)v;
		break;
	}
	if (c >= 0x80 && !strips_marks(g_unichar_get_script(c)))
		cls = C_WORDK;
	out[0] = ENT(c, cls);
	return 1;
}

/* Stage 1: the folded code points of C into OUT[FOLD_MAX]; their number. */
static int
fold_cp(gunichar c, uint32_t *out)
{
	gunichar d[G_UNICHAR_MAX_DECOMPOSITION_LENGTH];
	GUnicodeType t;
	GUnicodeScript s;
	size_t nd, i;
	int n = 0, strip;

	if (c < 0x80) {
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
			out[0] = ENT(c, C_SEP);
			return 1;
		}
		out[0] = ENT(c, C_WORD);
		return 1;
	}
	t = g_unichar_type(c);
	if (t == G_UNICODE_FORMAT || (c >= 0xFE00 && c <= 0xFE0F) ||
	    (c >= 0xE0100 && c <= 0xE01EF)) {
		out[0] = ENT(c, C_IGNORE);
		return 1;
	}
	/* Hangul syllables and kana stay whole: they are the units of the
	 * bigrams (NFD would split them into jamo, or kana and dakuten). */
	if ((c >= 0xAC00 && c <= 0xD7A3) || (c >= 0x3040 && c <= 0x30FF)) {
		out[0] = ENT(c, is_letter_or_digit(t) ? C_CJK :
		    is_mark(t) ? C_MARK : C_SEP);	/* U+3099, U+309A */
		return 1;
	}
	nd = g_unichar_fully_decompose(c, TRUE, d, G_N_ELEMENTS(d));
	if (nd == 0)
		d[nd++] = c;
	s = g_unichar_get_script(d[0]);
	strip = !is_mark(g_unichar_type(d[0])) && strips_marks(s) &&
	    !cjk_char(d[0], s);
	for (i = 0; i < nd; i++) {
		t = i == 0 ? g_unichar_type(d[0]) : g_unichar_type(d[i]);
		if (is_mark(t)) {
			if (!strip)
				out[n++] = ENT(d[i], C_MARK);
		} else if (is_letter_or_digit(t)) {
			if (i > 0)
				s = g_unichar_get_script(d[i]);
			if (cjk_char(d[i], s))
				out[n++] = ENT(d[i], C_CJK);
			else
				n += fold_letter(d[i], out + n);
		} else if (t == G_UNICODE_FORMAT) {
			out[n++] = ENT(d[i], C_IGNORE);
		} else {
			out[n++] = ENT(d[i], C_SEP);
		}
	}
	return n;
}

/*
 * The BMP cache: 256 blocks of 256 code points, each built once on first
 * use and published atomically (two threads may build the same block; one
 * copy wins, the other is freed). An entry is ENT() for a single code
 * point, or MULTI | offset into the block's pool, where pool[offset] is a
 * count followed by that many entries. Blocks live as long as the process.
 */
#define MULTI 0x80000000u

struct block {
	uint32_t ent[256];
	uint32_t npool;
	uint32_t pool[];
};

static struct block *blocks[256];

static struct block *
block_build(unsigned hi)
{
	uint32_t tmp[FOLD_MAX], *pool = NULL;
	uint32_t ent[256], npool = 0, cap = 0;
	struct block *b;
	unsigned lo;
	int n;

	for (lo = 0; lo < 256; lo++) {
		gunichar c = hi << 8 | lo;

		/* Surrogates never come out of the decoder. */
		n = (c >= 0xD800 && c <= 0xDFFF) ? 0 : fold_cp(c, tmp);
		if (n == 1) {
			ent[lo] = tmp[0];
			continue;
		}
		if (npool + (uint32_t)n + 1 > cap) {
			uint32_t *p;

			cap = cap ? 2 * cap : 64;
			while (cap < npool + (uint32_t)n + 1)
				cap *= 2;
			if ((p = realloc(pool, cap * sizeof *p)) == NULL) {
				free(pool);
				return NULL;
			}
			pool = p;
		}
		ent[lo] = MULTI | npool;
		pool[npool++] = (uint32_t)n;
		memcpy(pool + npool, tmp, (size_t)n * sizeof *tmp);
		npool += (uint32_t)n;
	}
	b = malloc(sizeof *b + npool * sizeof *pool);
	if (b) {
		memcpy(b->ent, ent, sizeof ent);
		b->npool = npool;
		if (npool)
			memcpy(b->pool, pool, npool * sizeof *pool);
	}
	free(pool);
	return b;
}

/* Folded code points of C: a pointer to N entries (in the cache or TMP). */
static const uint32_t *
fold(gunichar c, uint32_t *tmp, int *n)
{
	struct block *b;
	uint32_t e;

	if (c > 0xFFFF) {
		*n = fold_cp(c, tmp);
		return tmp;
	}
	b = g_atomic_pointer_get(&blocks[c >> 8]);
	if (b == NULL) {
		struct block *nb = block_build(c >> 8);

		if (nb == NULL) {	/* out of memory: fold without the cache */
			*n = fold_cp(c, tmp);
			return tmp;
		}
		if (g_atomic_pointer_compare_and_exchange(&blocks[c >> 8], NULL, nb))
			b = nb;
		else {
			free(nb);
			b = g_atomic_pointer_get(&blocks[c >> 8]);
		}
	}
	e = b->ent[c & 0xFF];
	if (!(e & MULTI)) {
		tmp[0] = e;
		*n = 1;
		return tmp;
	}
	e &= ~MULTI;
	*n = (int)b->pool[e];
	return b->pool + e + 1;
}

/*
 * One valid UTF-8 sequence at S (N > 0 bytes left): its length, with the
 * code point in *CP; or 0 for an invalid byte (overlong forms, surrogates
 * and values past U+10FFFF are invalid).
 */
static int
utf8_next(const unsigned char *s, size_t n, gunichar *cp)
{
	gunichar c = s[0];
	int len, i;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, c &= 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, c &= 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, c &= 0x07;
	else
		return 0;
	if (n < (size_t)len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10FFFF)))
		return 0;
	*cp = c;
	return len;
}

static int
utf8_put(char *p, gunichar c)
{
	if (c < 0x80) {
		p[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		p[0] = (char)(0xC0 | c >> 6);
		p[1] = (char)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		p[0] = (char)(0xE0 | c >> 12);
		p[1] = (char)(0x80 | (c >> 6 & 0x3F));
		p[2] = (char)(0x80 | (c & 0x3F));
		return 3;
	}
	p[0] = (char)(0xF0 | c >> 18);
	p[1] = (char)(0x80 | (c >> 12 & 0x3F));
	p[2] = (char)(0x80 | (c >> 6 & 0x3F));
	p[3] = (char)(0x80 | (c & 0x3F));
	return 4;
}

/* Stage 2 */
struct unit {
	gunichar cp;
	int start, end;
};

struct tk {
	search_token_fn fn;
	void *ud;
	int mode;
	/* the word being built */
	int open, keep, cut, len, start, end;
	char buf[SEARCH_TOKEN_MAX + 4];
	/* the CJK run: the last two units and how many the run had */
	struct unit prev, cur;
	int nunits;
};

static int
word_end(struct tk *t)
{
	if (!t->open)
		return 0;
	t->open = 0;
	return t->fn(t->ud, 0, t->buf, t->len, t->start, t->end);
}

static int
word_put(struct tk *t, gunichar c, int end)
{
	char u[4];
	int n;

	if (t->cut)
		return 0;
	n = utf8_put(u, c);
	if (t->len + n > SEARCH_TOKEN_MAX) {
		t->cut = 1;
		return 0;
	}
	memcpy(t->buf + t->len, u, (size_t)n);
	t->len += n;
	t->end = end;
	return 0;
}

static int
cjk_emit(struct tk *t, const struct unit *a, const struct unit *b)
{
	char u[8];
	int n;

	n = utf8_put(u, a->cp);
	if (b == NULL)
		return t->fn(t->ud, SEARCH_TOKEN_CJK | SEARCH_TOKEN_CJK_ONE, u, n,
		    a->start, a->end);
	n += utf8_put(u + n, b->cp);
	return t->fn(t->ud, SEARCH_TOKEN_CJK, u, n, a->start, b->end);
}

/*
 * End of a CJK run: its last bigram, then the last character alone. In a
 * document the last character is always emitted alone too, so that every
 * character starts some token and a one-character query (a prefix query
 * on that character) finds it anywhere in a run. A query emits the lone
 * character only for a run of one.
 */
static int
run_end(struct tk *t)
{
	int rc = 0, n = t->nunits;

	if (n == 0)
		return 0;
	t->nunits = 0;
	if (n >= 2 && (rc = cjk_emit(t, &t->prev, &t->cur)) != 0)
		return rc;
	if (n == 1 || t->mode == SEARCH_TOKENIZE_DOCUMENT)
		rc = cjk_emit(t, &t->cur, NULL);
	return rc;
}

static int
cjk_put(struct tk *t, gunichar c, int start, int end)
{
	gunichar r;
	int rc;

	if ((rc = word_end(t)) != 0)
		return rc;
	/* Conjoining jamo (NFD Hangul) compose with the syllable before. */
	if (t->nunits > 0 && c >= 0x1160 && c <= 0x11FF &&
	    g_unichar_compose(t->cur.cp, c, &r)) {
		t->cur.cp = r;
		t->cur.end = end;
		return 0;
	}
	if (t->nunits >= 2 && (rc = cjk_emit(t, &t->prev, &t->cur)) != 0)
		return rc;
	t->prev = t->cur;
	t->cur.cp = c;
	t->cur.start = start;
	t->cur.end = end;
	if (t->nunits < 2)
		t->nunits++;
	else
		t->nunits = 3;
	return 0;
}

static int
mark_put(struct tk *t, gunichar c, int end)
{
	gunichar r;

	if (t->open) {
		if (t->keep)
			return word_put(t, c, end);
		if (!t->cut)
			t->end = end;	/* a dropped accent is still highlighted */
	} else if (t->nunits > 0) {
		if (g_unichar_compose(t->cur.cp, c, &r))
			t->cur.cp = r;
		t->cur.end = end;
	}
	return 0;
}

static int
put(struct tk *t, uint32_t e, int start, int end)
{
	gunichar c = ENT_CP(e);
	int rc;

	switch (ENT_CLS(e)) {
	case C_WORD:
	case C_WORDK:
		if ((rc = run_end(t)) != 0)
			return rc;
		if (!t->open) {
			t->open = 1;
			t->cut = 0;
			t->len = 0;
			t->start = start;
		}
		t->keep = ENT_CLS(e) == C_WORDK;
		return word_put(t, c, end);
	case C_CJK:
		return cjk_put(t, c, start, end);
	case C_MARK:
		return mark_put(t, c, end);
	case C_IGNORE:
		return 0;
	default:
		if ((rc = word_end(t)) != 0)
			return rc;
		return run_end(t);
	}
}

int
search_tokenize(const char *text, size_t len, int mode, search_token_fn fn, void *ud)
{
	const unsigned char *s = (const unsigned char *)text;
	uint32_t tmp[FOLD_MAX];
	const uint32_t *f;
	struct tk t;
	size_t i = 0;
	gunichar c;
	int n, k, j, rc;

	memset(&t, 0, sizeof t);
	t.fn = fn;
	t.ud = ud;
	t.mode = mode;
	if (len > INT_MAX)
		len = INT_MAX;
	while (i < len) {
		c = s[i];
		/* ASCII letters and digits: straight into the word. */
		if (c < 0x80 && t.open && !t.cut && t.len < SEARCH_TOKEN_MAX &&
		    ((c | 0x20) - 'a' < 26 || c - '0' < 10)) {
			t.buf[t.len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			t.end = (int)++i;
			t.keep = 0;
			continue;
		}
		if ((k = utf8_next(s + i, len - i, &c)) == 0) {
			if ((rc = put(&t, ENT(0, C_SEP), (int)i, (int)i + 1)) != 0)
				return rc;
			i++;
			continue;
		}
		f = fold(c, tmp, &n);
		for (j = 0; j < n; j++)
			if ((rc = put(&t, f[j], (int)i, (int)(i + (size_t)k))) != 0)
				return rc;
		i += (size_t)k;
	}
	if ((rc = word_end(&t)) != 0)
		return rc;
	return run_end(&t);
}

/* FTS5 glue */
struct fts_ctx {
	void *ctx;
	int (*xToken)(void *, int, const char *, int, int, int);
};

static int
fts_token(void *ud, int flags, const char *tok, int len, int start, int end)
{
	struct fts_ctx *c = ud;

	(void)flags;
	return c->xToken(c->ctx, 0, tok, len, start, end);
}

static int tokenizer_instance;	/* no state: every instance is this one */

static int
fts_create(void *ud, const char **argv, int argc, Fts5Tokenizer **out)
{
	(void)ud;
	(void)argv;
	if (argc != 0)
		return SQLITE_ERROR;	/* no options */
	*out = (Fts5Tokenizer *)&tokenizer_instance;
	return SQLITE_OK;
}

static void
fts_delete(Fts5Tokenizer *tok)
{
	(void)tok;
}

static int
fts_tokenize(Fts5Tokenizer *tok, void *ctx, int flags, const char *text, int len,
    int (*xToken)(void *, int, const char *, int, int, int))
{
	struct fts_ctx c = { ctx, xToken };

	(void)tok;
	if (len <= 0)
		return SQLITE_OK;
	return search_tokenize(text, (size_t)len,
	    (flags & FTS5_TOKENIZE_QUERY) ? SEARCH_TOKENIZE_QUERY :
	    SEARCH_TOKENIZE_DOCUMENT, fts_token, &c);
}

int
search_tokenizer_register(sqlite3 *db)
{
	static fts5_tokenizer tk = { fts_create, fts_delete, fts_tokenize };
	fts5_api *api = NULL;
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_pointer(st, 1, &api, "fts5_api_ptr", NULL);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW || api == NULL || api->iVersion < 2)
		return SQLITE_ERROR;
	if ((rc = api->xCreateTokenizer(api, "emailvault", NULL, &tk, NULL)) != SQLITE_OK)
		return rc;
	/* the search SQL ranks a page with it (search/rank.h) */
	if ((rc = search_rank_register(api)) != SQLITE_OK)
		return rc;
	/* and FTS5 reads the index's text through it (fts_view) */
	return index_text_register(db);
}

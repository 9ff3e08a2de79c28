/*
 * libFuzzer target for mboxrd quoting over pieces (export/mboxrd.c).
 *
 * The first two bytes seed how the rest, a message, is cut into pieces
 * (1 byte to the whole). Quoting it piece by piece must give the same
 * bytes as quoting it whole by the rule itself (a line that starts with
 * ">*From " gets one more '>'), and taking one '>' off every ">+From "
 * line of the result must give the message back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "export/mboxrd.h"

struct buf {
	char *p;
	size_t len, cap;
};

static int
put(void *ud, const char *p, size_t n)
{
	struct buf *b = ud;

	if (b->len + n > b->cap) {
		size_t cap = (b->len + n) * 2 + 16;
		char *q = realloc(b->p, cap);
		if (q == NULL)
			abort();
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* Length of ">*From " at P (N bytes), or 0 if the line does not start so;
 * *GTS gets how many '>'s. */
static size_t
from_line(const char *p, size_t n, size_t *gts)
{
	size_t i = 0;

	while (i < n && p[i] == '>')
		i++;
	*gts = i;
	return n - i >= 5 && memcmp(p + i, "From ", 5) == 0 ? i + 5 : 0;
}

/* Whole-message quoting, one line at a time. */
static void
quote_whole(const char *p, size_t n, struct buf *out)
{
	size_t i = 0, gts;

	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
		if (from_line(p + i, k, &gts))
			put(out, ">", 1);
		put(out, p + i, k);
		i += k;
	}
}

static void
unquote_whole(const char *p, size_t n, struct buf *out)
{
	size_t i = 0, gts;

	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t k = nl ? (size_t)(nl - (p + i)) + 1 : n - i;
		if (from_line(p + i, k, &gts) && gts > 0)
			put(out, p + i + 1, k - 1);
		else
			put(out, p + i, k);
		i += k;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole = { 0 }, pieces = { 0 }, back = { 0 };
	struct mboxrd_quoter q;
	unsigned seed;
	const char *msg;
	size_t n, at = 0;

	if (size < 2)
		return 0;
	seed = (unsigned)data[0] << 8 | data[1];
	msg = (const char *)data + 2;
	n = size - 2;

	quote_whole(msg, n, &whole);
	mboxrd_quote_init(&q);
	while (at < n) {
		size_t k, r;
		seed = seed * 1103515245u + 12345u;
		r = seed >> 16;
		/* mostly short pieces, some long ones, now and then the rest */
		k = r % 8 == 0 ? n - at : r % 8 < 3 ? 1 + r % 1024 : 1 + r % 7;
		if (k > n - at)
			k = n - at;
		if (mboxrd_quote(&q, msg + at, k, put, &pieces) < 0)
			abort();
		at += k;
	}
	if (mboxrd_quote_end(&q, put, &pieces) < 0)
		abort();
	if (pieces.len != whole.len || (whole.len && memcmp(pieces.p, whole.p, whole.len) != 0))
		abort();
	unquote_whole(pieces.p, pieces.len, &back);
	if (back.len != n || (n && memcmp(back.p, msg, n) != 0))
		abort();
	free(whole.p);
	free(pieces.p);
	free(back.p);
	return 0;
}

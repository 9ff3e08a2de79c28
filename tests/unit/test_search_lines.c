/*
 * The line reader of the MIME walk: line ends of every kind, split by the
 * reads at every place; long lines in pieces; a mark that holds what is
 * read after it, and a seek back into it; a failed read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "pieces.h"
#include "search/lines.h"

/* Every line of L as "text|eol-length" joined by spaces. */
static char *
all_lines(struct lines *l)
{
	static char out[4096];
	struct line ln;
	size_t n = 0;

	out[0] = '\0';
	while (lines_next(l, &ln) && n < sizeof out - 64)
		n += (size_t)snprintf(out + n, sizeof out - n, "%s%.*s|%zu",
		    n > 0 ? " " : "", (int)ln.len, ln.s, ln.eol);
	return out;
}

static void
test_line_ends(void)
{
	const char *in = "a\nb\r\nc\r\r\nd\re\r\rf\r\n\r\ng";
	const char *want = "a|1 b|2 c|3 d|1 e|1 |1 f|2 |2 g|0";
	struct lines l;
	size_t step;

	lines_init_mem(&l, in, strlen(in));
	CHECK_STR(all_lines(&l), want);
	lines_free(&l);
	/* reads that end at every byte: a CR at a read's end waits for more */
	for (step = 1; step <= strlen(in); step++) {
		struct src s = { in, strlen(in), 0, step, 0, 0 };

		CHECK_INT(lines_init_source(&l, src_read, &s), 0);
		CHECK_STR(all_lines(&l), want);
		CHECK_INT(l.err, 0);
		lines_free(&l);
	}
	/* a CR as the last byte, and CR CR as the last two */
	lines_init_mem(&l, "x\r", 2);
	CHECK_STR(all_lines(&l), "x|1");
	lines_init_mem(&l, "x\r\r", 3);
	CHECK_STR(all_lines(&l), "x|1 |1");
}

static void
test_pieces(void)
{
	size_t n = 3 * LINES_PIECE + 10, total = 0, pieces = 0, firsts = 0;
	char *in = malloc(n + 3);
	struct src s = { in, n + 3, 0, 1000, 0, 0 };
	struct lines l;
	struct line ln;

	memset(in, 'x', n);
	memcpy(in + n, "\nz\n", 3);
	CHECK_INT(lines_init_source(&l, src_read, &s), 0);
	while (lines_next(&l, &ln) && ln.s[0] == 'x') {
		CHECK(ln.len <= LINES_PIECE);
		total += ln.len;
		pieces++;
		firsts += ln.first;
		if (ln.eol > 0)
			break;
	}
	CHECK_INT(total, n);	/* all of it, in pieces, only the first a line */
	CHECK_INT(pieces, 4);
	CHECK_INT(firsts, 1);
	CHECK_INT(ln.eol, 1);
	CHECK_INT(lines_next(&l, &ln), 1);
	CHECK(ln.first && ln.len == 1 && ln.s[0] == 'z');
	CHECK_INT(lines_next(&l, &ln), 0);
	/* the buffer stayed small: nothing was marked */
	CHECK(l.cap <= 4 * LINES_PIECE + 64 * 1024);
	lines_free(&l);
	free(in);
}

static void
test_mark_and_seek(void)
{
	char *in;
	size_t n = 200000, i;
	struct src s;
	struct lines l;
	struct line ln;
	uint64_t mark, third = 0;
	int k = 0;

	/* lines "000000\n", "000001\n", ... read 7 bytes at a time */
	in = malloc(n * 7 + 1);
	for (i = 0; i < n; i++)
		snprintf(in + i * 7, 8, "%06zu\n", i);
	s = (struct src){ in, n * 7, 0, 7, 0, 0 };
	CHECK_INT(lines_init_source(&l, src_read, &s), 0);
	CHECK_INT(lines_next(&l, &ln), 1);
	mark = lines_tell(&l);
	lines_mark(&l, mark);
	while (lines_next(&l, &ln) && k++ < 100000)
		if (k == 3)
			third = ln.off;
	CHECK(lines_held(&l) >= 100000 * 7);	/* all of it since the mark */
	CHECK(memcmp(lines_at(&l, mark), "000001\n", 7) == 0);
	lines_seek(&l, third);
	lines_unmark(&l);
	CHECK_INT(lines_next(&l, &ln), 1);
	CHECK(ln.first && ln.len == 6 && memcmp(ln.s, "000003", 6) == 0);
	/* unmarked, the rest goes through without growing the buffer */
	{
		size_t cap = l.cap, last = 0;

		while (lines_next(&l, &ln))
			last = (size_t)atol(ln.s);
		CHECK_INT(last, n - 1);
		CHECK(l.cap == cap);
	}
	CHECK_INT(lines_held(&l), 0);
	CHECK_INT(lines_hold_max(&l), LINES_HOLD_MAX);
	lines_free(&l);

	lines_init_mem(&l, in, n * 7);
	CHECK(lines_hold_max(&l) == (size_t)-1);
	lines_free(&l);
	free(in);
}

static void
test_read_error(void)
{
	const char *in = "one\ntwo\nthree\nfour\n";
	struct src s = { in, strlen(in), 0, 3, 9, 1 };
	struct lines l;

	CHECK_INT(lines_init_source(&l, src_read, &s), 0);
	CHECK_STR(all_lines(&l), "one|1 two|1");
	CHECK_INT(l.err, EIO);
	lines_free(&l);
}

int
main(void)
{
	RUN(test_line_ends);
	RUN(test_pieces);
	RUN(test_mark_and_seek);
	RUN(test_read_error);
	DONE();
}

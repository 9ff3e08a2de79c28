/*
 * Lines of a message in a buffer that slides over the input (see
 * search/lines.h). Offsets are of the input, so that a mark, a cached LF
 * and a seek survive the buffer being moved or grown.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "search/lines.h"

#define READ_SIZE	(64 * 1024)
#define NONE		UINT64_MAX

void
lines_init_mem(struct lines *l, const char *data, size_t len)
{
	memset(l, 0, sizeof *l);
	l->buf = (char *)data;	/* never written: there is no source */
	l->cap = l->end = len;
	l->eof = 1;
	l->lf_from = NONE;
}

int
lines_init_source(struct lines *l, lines_source src, void *ud)
{
	memset(l, 0, sizeof *l);
	if ((l->buf = malloc(READ_SIZE)) == NULL)
		return -1;
	l->cap = READ_SIZE;
	l->src = src;
	l->ud = ud;
	l->lf_from = NONE;
	return 0;
}

void
lines_free(struct lines *l)
{
	if (l->src != NULL)
		free(l->buf);
	memset(l, 0, sizeof *l);
}

uint64_t
lines_tell(const struct lines *l)
{
	return l->base + l->pos;
}

void
lines_mark(struct lines *l, uint64_t off)
{
	l->marked = 1;
	l->mark = off;
}

void
lines_unmark(struct lines *l)
{
	l->marked = 0;
}

size_t
lines_held(const struct lines *l)
{
	return l->marked ? (size_t)(l->base + l->end - l->mark) : 0;
}

size_t
lines_hold_max(const struct lines *l)
{
	return l->src != NULL ? LINES_HOLD_MAX : SIZE_MAX;
}

const char *
lines_at(const struct lines *l, uint64_t off)
{
	return l->buf + (off - l->base);
}

void
lines_seek(struct lines *l, uint64_t off)
{
	l->pos = (size_t)(off - l->base);
	l->keep = off;
	l->mid = 0;
}

/* The first LF in input [FROM, TO), or NONE; each byte is looked at once
 * however often a line too long for the buffer is scanned again. */
static uint64_t
find_lf(struct lines *l, uint64_t from, uint64_t to)
{
	uint64_t start = from;
	const char *p;

	if (l->lf_from != NONE && l->lf_from <= from) {
		if (l->lf_at != NONE && l->lf_at >= from)
			return l->lf_at < to ? l->lf_at : NONE;
		if (l->lf_at == NONE && l->lf_to >= to)
			return NONE;
		if (l->lf_at == NONE && l->lf_to > from)
			start = l->lf_to;
	}
	p = memchr(l->buf + (start - l->base), '\n', (size_t)(to - start));
	l->lf_from = from;
	l->lf_at = p != NULL ? l->base + (uint64_t)(p - l->buf) : NONE;
	l->lf_to = to;
	return l->lf_at;
}

/* Reads more, keeping what is held. 0, or -1 at the end or on an error. */
static int
refill(struct lines *l)
{
	uint64_t keep = l->marked && l->mark < l->keep ? l->mark : l->keep;
	size_t drop = (size_t)(keep - l->base), ncap;
	ssize_t n;
	char *nb;

	if (l->eof)
		return -1;
	if (drop > 0) {
		memmove(l->buf, l->buf + drop, l->end - drop);
		l->base += drop;
		l->end -= drop;
		l->pos -= drop;
	}
	if (l->cap - l->end < READ_SIZE / 2) {
		ncap = l->cap * 2;
		if ((nb = realloc(l->buf, ncap)) == NULL) {
			l->err = ENOMEM;
			l->eof = 1;
			return -1;
		}
		l->buf = nb;
		l->cap = ncap;
	}
	errno = 0;
	n = l->src(l->ud, l->buf + l->end, l->cap - l->end);
	if (n < 0) {
		l->err = errno != 0 ? errno : EIO;
		l->eof = 1;
		return -1;
	}
	if (n == 0)
		l->eof = 1;
	l->end += (size_t)n;
	return 0;
}

static int
give(struct lines *l, struct line *ln, size_t len, size_t eol, int cut)
{
	ln->s = l->buf + l->pos;
	ln->len = len;
	ln->eol = eol;
	ln->off = l->base + l->pos;
	ln->first = !l->mid;
	l->mid = cut;
	l->keep = ln->off;
	l->pos += len + eol;
	return 1;
}

int
lines_next(struct lines *l, struct line *ln)
{
	for (;;) {
		size_t p = l->pos, e = l->end, lim, q;
		uint64_t lf;
		const char *cr;

		if (l->err != 0 || (p == e && l->eof))
			return 0;
		lim = e - p > LINES_PIECE ? p + LINES_PIECE + 1 : e;
		lf = find_lf(l, l->base + p, l->base + e);
		q = lf != NONE && lf - l->base < lim ? (size_t)(lf - l->base) : lim;
		if ((cr = memchr(l->buf + p, '\r', q - p)) != NULL)
			q = (size_t)(cr - l->buf);
		if (q < lim) {
			if (l->buf[q] == '\n')
				return give(l, ln, q - p, 1, 0);
			/* a CR: CRLF, CRCRLF or alone; the next two bytes tell */
			if (q + 1 < e && l->buf[q + 1] == '\n')
				return give(l, ln, q - p, 2, 0);
			if (q + 2 < e && l->buf[q + 1] == '\r')
				return give(l, ln, q - p, l->buf[q + 2] == '\n' ? 3 : 1, 0);
			if ((q + 1 < e && l->buf[q + 1] != '\r') || l->eof)
				return give(l, ln, q - p, 1, 0);
		} else if (e - p > LINES_PIECE) {
			return give(l, ln, LINES_PIECE, 0, 1);
		} else if (l->eof) {
			return give(l, ln, e - p, 0, 0);
		}
		if (refill(l) < 0 && l->err != 0)
			return 0;
	}
}

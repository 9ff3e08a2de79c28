#ifndef EMAILVAULT_SEARCH_LINES_H
#define EMAILVAULT_SEARCH_LINES_H
/*
 * Lines of a message for the MIME walk, from memory or pulled from a
 * source in fixed-size reads, so that a message of any size is walked
 * with a buffer of a few tens of KiB. Line ends are those of
 * mime/headers.c: LF, CRLF, CRCRLF or a lone CR. A line longer than
 * LINES_PIECE comes in pieces (only the first starts a line).
 *
 * A caller that may have to read some lines again (a header block whose
 * end is only known later) marks where they start: everything from the
 * mark stays held, and the caller may seek back into it. Over a source,
 * held bytes cost memory: lines_hold_max says how much a caller may hold.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LINES_PIECE	(16 * 1024)
#define LINES_HOLD_MAX	(1024 * 1024)	/* over a source */

/* Up to CAP bytes into BUF: how many, 0 at the end, -1 with errno. */
typedef ssize_t (*lines_source)(void *ud, void *buf, size_t cap);

struct line {
	const char *s;		/* LEN bytes, then EOL bytes of its line end */
	size_t len, eol;	/* EOL 0: a piece of a longer line, or the last line */
	uint64_t off;		/* of S in the input */
	int first;		/* S starts a line (else it goes on from the piece before) */
};

struct lines {
	lines_source src;	/* NULL: all the input is in buf */
	void *ud;
	char *buf;		/* input bytes [base, base + end) */
	size_t cap, end, pos;	/* the next byte is buf[pos] */
	uint64_t base;
	uint64_t keep;		/* bytes from here on stay held: the last line or the mark */
	uint64_t mark;
	int marked, eof, mid;	/* MID: the last piece ended inside a line */
	int err;		/* errno of a failed read, 0 if none */
	uint64_t lf_from, lf_at, lf_to;	/* the first LF from lf_from is at
					 * lf_at; UINT64_MAX: none before lf_to */
};

void lines_init_mem(struct lines *l, const char *data, size_t len);
int lines_init_source(struct lines *l, lines_source src, void *ud);	/* -1: ENOMEM */
void lines_free(struct lines *l);

/* The next line or piece into *LN (valid until the next call): 1; 0 at
 * the end of the input or on an error (l->err says which). */
int lines_next(struct lines *l, struct line *ln);

/* The offset of the next byte to be read. */
uint64_t lines_tell(const struct lines *l);

/* Holds every byte from OFF, which is at or after the start of the line
 * last given (or lines_tell), until lines_unmark. */
void lines_mark(struct lines *l, uint64_t off);
void lines_unmark(struct lines *l);

/* Bytes held from the mark to the read position, and how many a caller
 * may hold (SIZE_MAX in memory, where they cost nothing). */
size_t lines_held(const struct lines *l);
size_t lines_hold_max(const struct lines *l);

/* Byte OFF, which must be held; and going back to it, read as the start
 * of a line. */
const char *lines_at(const struct lines *l, uint64_t off);
void lines_seek(struct lines *l, uint64_t off);

#endif

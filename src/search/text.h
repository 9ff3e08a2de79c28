#ifndef EMAILVAULT_SEARCH_TEXT_H
#define EMAILVAULT_SEARCH_TEXT_H
/*
 * The text sink of the extractor: one growing buffer per index field, all
 * drawing on one byte budget. Whatever is put in comes out as valid UTF-8
 * without NULs or control characters other than \n, with white space
 * collapsed, so every stage before it may be sloppy (see docs/mime.md).
 */
#include <stddef.h>

/* A stage's output: LEN bytes of (mostly) UTF-8. Returns 0, or -1 when out
 * of memory. Stages are chained through these (decoder -> html -> tbuf). */
typedef int (*text_emit)(void *ud, const char *s, size_t len);

struct text_budget {
	size_t left;		/* bytes any field may still take */
	int cut;		/* something did not fit */
};

struct tbuf {
	char *s;		/* malloc, NUL-terminated once finished */
	size_t len, cap;
	struct text_budget *b;
	unsigned char part[4];	/* a UTF-8 sequence cut by the chunking */
	int npart, want;
	int space;		/* white space seen since the last character */
	int nl;			/* line ends seen since then (0..2) */
	int cr;			/* the last byte was a CR (CRLF is one) */
};

void tbuf_init(struct tbuf *t, struct text_budget *b);
/* Appends; text_emit with a struct tbuf as UD. */
int tbuf_put(void *t, const char *s, size_t len);
/* Asks for at least LINES (1 or 2) line ends before the next character. */
void tbuf_break(struct tbuf *t, int lines);
/* The finished string (never NULL unless out of memory, then -1); the
 * buffer is handed to the caller (free) and T is empty again. */
int tbuf_take(struct tbuf *t, char **out);
void tbuf_free(struct tbuf *t);

/* Unicode scalar value C as UTF-8 in OUT (4 bytes); returns the length. */
size_t utf8_put(unsigned int c, char *out);

#endif

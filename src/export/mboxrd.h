#ifndef EMAILVAULT_EXPORT_MBOXRD_H
#define EMAILVAULT_EXPORT_MBOXRD_H
/*
 * mboxrd quoting as a message's bytes come, in pieces of any size: every
 * line that starts with ">*From " gets one more '>', so that a reader who
 * takes one '>' off such lines gets the very same bytes back. Pure: bytes
 * in, bytes out through OUT; it holds no more than two counts.
 */
#include <stddef.h>

typedef int (*mboxrd_out)(void *ud, const char *p, size_t n);	/* 0, or -1: stop */

struct mboxrd_quoter {
	int mid_line;		/* past the start of the line: copy to its end */
	size_t gts;		/* the line's leading '>'s, not yet given */
	size_t from;		/* how much of "From " follows them */
};

void mboxrd_quote_init(struct mboxrd_quoter *q);
/* 0, or -1 as soon as OUT fails. */
int mboxrd_quote(struct mboxrd_quoter *q, const char *p, size_t n, mboxrd_out out, void *ud);
/* The end of the message: what a last, unfinished line still holds. */
int mboxrd_quote_end(struct mboxrd_quoter *q, mboxrd_out out, void *ud);

#endif

#ifndef EMAILVAULT_SEARCH_HTML_H
#define EMAILVAULT_SEARCH_HTML_H
/*
 * HTML to text for the index: a small state machine fed UTF-8 in pieces of
 * any size, with a fixed-size state. Tags go, block tags become line ends,
 * <script> and <style> content and comments are dropped, character
 * references (named common ones and numeric) are decoded.
 */
#include <stddef.h>

#include "search/text.h"

struct html {
	text_emit emit;
	void *ud;
	int state;
	int closing;		/* the tag being read is an end tag */
	char tag[16];		/* its name, lower case (cut at 15) */
	size_t ntag;
	char quote;		/* the quote of an attribute value */
	int eq;			/* last non-blank byte in the tag was '=' */
	int dashes;		/* '-' seen in a row inside a comment */
	const char *raw;	/* "script" or "style" while inside one */
	size_t rawm;		/* bytes of "</name" matched */
	char ent[34];		/* a character reference after '&' */
	size_t nent;
	char out[512];		/* text not yet emitted */
	size_t nout;
};

void html_init(struct html *h, text_emit emit, void *ud);
/* text_emit with a struct html as UD */
int html_feed(void *h, const char *s, size_t n);
int html_finish(struct html *h);

#endif

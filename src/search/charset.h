#ifndef EMAILVAULT_SEARCH_CHARSET_H
#define EMAILVAULT_SEARCH_CHARSET_H
/*
 * Body charsets to UTF-8, streaming, with the usual mislabels mended (see
 * docs/mime.md): ISO-8859-1, US-ASCII, no charset and unknown charsets are
 * read as UTF-8 where the bytes are UTF-8 and as Windows-1252 elsewhere;
 * GB2312/GBK as GB18030, EUC-KR as CP949, Shift_JIS as CP932, Big5 as
 * CP950. Bytes a charset cannot read become U+FFFD. No global state: each
 * converter owns its iconv descriptor.
 */
#include <iconv.h>
#include <stddef.h>

#include "search/text.h"

#define CONV_CHUNK 8192

struct conv {
	iconv_t cd;		/* (iconv_t)-1: the UTF-8/Windows-1252 reading */
	text_emit emit;
	void *ud;
	unsigned char carry[16];	/* an incomplete sequence */
	size_t ncarry;
	char *stage;		/* malloc, iconv only: carry + a chunk */
};

/*
 * Opens a converter from the MIME charset NAME (NULL or "" when there is
 * none) to UTF-8, writing to EMIT. Returns 0, or -1 when out of memory.
 */
int conv_open(struct conv *c, const char *name, text_emit emit, void *ud);
int conv_feed(struct conv *c, const char *s, size_t n);
/* Flushes what is held back; then conv_close. */
int conv_finish(struct conv *c);
void conv_close(struct conv *c);

/* The character of byte B in Windows-1252 (the five holes map to C1). */
unsigned int cp1252_char(unsigned char b);

/*
 * The iconv name used for MIME charset NAME, written to BUF (N bytes), or
 * NULL for the UTF-8/Windows-1252 reading (and for names not worth
 * asking iconv about). Exposed for the tests.
 */
const char *conv_iconv_name(const char *name, char *buf, size_t n);

#endif

#ifndef EMAILVAULT_SEARCH_DECODE_H
#define EMAILVAULT_SEARCH_DECODE_H
/*
 * Content-Transfer-Encoding, undone by GMime's incremental decoders in
 * fixed-size chunks, so a part is never decoded whole into memory.
 */
#include <stddef.h>

#include <gmime/gmime.h>

#include "search/text.h"

enum { ENC_NONE, ENC_BASE64, ENC_QP, ENC_UU };

/* The encoding a raw Content-Transfer-Encoding value names (NULL: none);
 * unknown ones are read as 8bit, as RFC 2045 readers do. */
int decode_kind(const char *cte);

/*
 * Decodes BODY (N bytes, encoded as ENC) and hands the bytes to EMIT in
 * chunks, in order; stops early once *STOP is set (the caller's sink is
 * full). Returns 0, or -1 when EMIT fails.
 */
int decode_body(const char *body, size_t n, int enc, text_emit emit,
    void *ud, const int *stop);

/*
 * The same as the bytes come: decoder_feed takes the body in chunks of
 * any size, decoder_flush hands over what the state still holds,
 * decoder_free frees it (feed and flush return -1 when EMIT fails or
 * memory runs out).
 */
struct decoder {
	int enc;
	GMimeEncoding st;
	int uu;			/* uuencode: 0 looking for "begin ", 1 in it, 2 decoding */
	size_t uu_match;	/* bytes of "begin " matched at a line start (7: not at one) */
	char *uubuf;		/* uuencoded data on its way, in CHUNKs (malloc) */
	size_t uun;
};

void decoder_init(struct decoder *d, int enc);
int decoder_feed(struct decoder *d, const char *s, size_t n, text_emit emit, void *ud);
int decoder_flush(struct decoder *d, text_emit emit, void *ud);
void decoder_free(struct decoder *d);	/* flushed or not */

/* An upper bound of the decoded size of N encoded bytes. */
size_t decode_bound(size_t n, int enc);

#endif

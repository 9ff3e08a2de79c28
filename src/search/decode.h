#ifndef EMAILVAULT_SEARCH_DECODE_H
#define EMAILVAULT_SEARCH_DECODE_H
/*
 * Content-Transfer-Encoding, undone by GMime's incremental decoders in
 * fixed-size chunks, so a part is never decoded whole into memory.
 */
#include <stddef.h>

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

/* An upper bound of the decoded size of N encoded bytes. */
size_t decode_bound(size_t n, int enc);

#endif

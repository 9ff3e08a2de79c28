#ifndef EMAILVAULT_SEARCH_BODY_H
#define EMAILVAULT_SEARCH_BODY_H
/*
 * The body of one leaf part into a field of the index text (see
 * docs/mime.md, "Text for the index").
 */
#include <stddef.h>

#include "search/extract.h"
#include "search/text.h"

/*
 * Text: BODY (N bytes, transfer-encoded as ENC, see search/decode.h) in
 * CHARSET (NULL when none is declared), as HTML when HTML, appended to
 * DEST. Stops when DEST's budget is full. Returns 0, or -1 when out of
 * memory.
 */
int body_text(const char *body, size_t n, int enc, const char *charset,
    int html, struct tbuf *dest);

#define BODY_PDF_BIG	1	/* over lim->pdf_max: not read */
#define BODY_PDF_TIME	2	/* pdftotext ran out of time */

/*
 * A PDF: its text through pdftotext (when installed) appended to DEST,
 * under LIM's time and size limits; *WHY says which limit was hit, if any.
 * Blocks for up to lim->pdf_seconds. Returns 0, or -1 when out of memory.
 */
int body_pdf(const char *body, size_t n, int enc,
    const struct extract_limits *lim, struct tbuf *dest, int *why);

/* Whether a PDF's bytes (encoded as ENC) name an object ("obj") at all:
 * without one pdftotext can find no text, and body_pdf starts none. */
int body_pdf_has_objects(const char *body, size_t n, int enc);

#endif

#ifndef EMAILVAULT_SEARCH_BODY_H
#define EMAILVAULT_SEARCH_BODY_H
/*
 * The body of one leaf part into a field of the index text (see
 * docs/mime.md, "Text for the index").
 */
#include <stddef.h>

#include "search/charset.h"
#include "search/decode.h"
#include "search/extract.h"
#include "search/html.h"
#include "search/pdf.h"
#include "search/text.h"

/*
 * A text part's body, given as it comes: transfer-decoded as ENC (see
 * search/decode.h), read in CHARSET (NULL when none is declared), as HTML
 * when HTML, appended to DEST. Bytes given once DEST's budget is full are
 * dropped. feed and end return 0, or -1 when out of memory; end is called
 * in any case and frees what begin made.
 */
struct body_text {
	struct tbuf *dest;
	const char *charset;	/* the caller's, until end */
	int html, opened, failed;
	struct decoder dec;
	struct conv conv;
	struct html h;
};

void body_text_begin(struct body_text *bt, int enc, const char *charset, int html,
    struct tbuf *dest);
int body_text_feed(struct body_text *bt, const char *s, size_t n);
int body_text_end(struct body_text *bt);

#define BODY_PDF_BIG	1	/* over lim->pdf_max: not read */
#define BODY_PDF_TIME	2	/* pdftotext ran out of time */

/*
 * A PDF's body, given as it comes: its text through pdftotext (when
 * installed) appended to DEST, under LIM's time and size limits. The
 * child is started once the decoded bytes name an object ("obj"; up to
 * BODY_PDF_LOOK of them are held while looking, and without one in those
 * there is no PDF pdftotext reads), and killed once the body
 * is known to be over lim->pdf_max. end says in *WHY which limit was hit,
 * if any, and frees what begin made. feed and end block for up to
 * lim->pdf_seconds in all; they return 0, or -1 when out of memory.
 */
#define BODY_PDF_LOOK	(256 * 1024)

struct body_pdf {
	const struct extract_limits *lim;
	struct tbuf *dest;
	struct decoder dec;
	int state;		/* looking for "obj", running, or off */
	int counting;		/* the size still matters (a note when over pdf_max) */
	int why;
	size_t encoded;		/* body bytes given so far */
	char *look;		/* decoded bytes held while looking */
	size_t nlook;
	char tail[2];		/* the last bytes looked at, for "obj" over an edge */
	size_t ntail;
	struct pdf_job job;
};

void body_pdf_begin(struct body_pdf *bp, int enc, const struct extract_limits *lim,
    struct tbuf *dest);
int body_pdf_feed(struct body_pdf *bp, const char *s, size_t n);
int body_pdf_end(struct body_pdf *bp, int *why);

/* Whether a PDF's bytes (encoded as ENC) name an object ("obj") at all:
 * without one pdftotext can find no text, and body_pdf starts none. */
int body_pdf_has_objects(const char *body, size_t n, int enc);

#endif

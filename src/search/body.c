#define _GNU_SOURCE	/* memmem */
/*
 * One leaf part's body into a field: transfer decoding, then for text the
 * charset (with what the first bytes say about it) and HTML to text, for
 * a PDF the pdftotext child. Fixed-size buffers only; see docs/mime.md.
 */
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "search/body.h"
#include "search/charset.h"
#include "search/decode.h"
#include "search/html.h"
#include "search/pdf.h"

enum { PDF_LOOKING, PDF_RUNNING, PDF_OFF };

/* A charset= in the first bytes of an HTML part that declares none. */
static void
sniff_meta(const char *s, size_t n, char *cs, size_t csn)
{
	size_t i, k;

	if (n > 4096)
		n = 4096;
	for (i = 0; i + 8 < n; i++) {
		if (g_ascii_strncasecmp(s + i, "charset=", 8) != 0)
			continue;
		i += 8;
		while (i < n && (s[i] == '"' || s[i] == '\'' || s[i] == ' '))
			i++;
		for (k = 0; i + k < n && k < csn - 1 &&
		    (g_ascii_isalnum(s[i + k]) || strchr("-_.:", s[i + k])); k++)
			cs[k] = s[i + k];
		cs[k] = '\0';
		return;
	}
}

static int
has_8bit(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

static int
pipeline_bytes(void *ud, const char *s, size_t n)
{
	struct body_text *pl = ud;
	char meta[48] = "";
	const char *cs = pl->charset;

	if (!pl->opened) {
		/* a byte order mark says more than a missing or odd label */
		if (n >= 2 && ((unsigned char)s[0] == 0xff &&
		    (unsigned char)s[1] == 0xfe) && (cs == NULL ||
		    g_ascii_strncasecmp(cs, "utf-16", 6) == 0 || *cs == '\0'))
			cs = "UTF-16";
		else if (n >= 2 && ((unsigned char)s[0] == 0xfe &&
		    (unsigned char)s[1] == 0xff) && (cs == NULL ||
		    g_ascii_strncasecmp(cs, "utf-16", 6) == 0 || *cs == '\0'))
			cs = "UTF-16";
		else if (pl->html && (cs == NULL || *cs == '\0')) {
			sniff_meta(s, n, meta, sizeof meta);
			cs = meta;
		} else if (cs != NULL && g_ascii_strncasecmp(cs, "iso-2022-jp",
		    11) == 0 && has_8bit(s, n)) {
			/* 8-bit "ISO-2022-JP" (Outlook): Shift_JIS, or what
			 * the HTML says it is */
			if (pl->html)
				sniff_meta(s, n, meta, sizeof meta);
			cs = *meta != '\0' ? meta : "shift_jis";
		}
		if (pl->html)
			html_init(&pl->h, tbuf_put, pl->dest);
		if (conv_open(&pl->conv, cs, pl->html ? html_feed : tbuf_put,
		    pl->html ? (void *)&pl->h : (void *)pl->dest) == -1)
			return -1;
		pl->opened = 1;
	}
	return conv_feed(&pl->conv, s, n);
}

void
body_text_begin(struct body_text *bt, int enc, const char *charset, int html,
    struct tbuf *dest)
{
	memset(bt, 0, sizeof *bt);
	bt->dest = dest;
	bt->charset = charset;
	bt->html = html;
	decoder_init(&bt->dec, enc);
}

int
body_text_feed(struct body_text *bt, const char *s, size_t n)
{
	if (bt->failed || bt->dest->b->cut)
		return bt->failed ? -1 : 0;
	if (decoder_feed(&bt->dec, s, n, pipeline_bytes, bt) == -1)
		bt->failed = 1;
	return bt->failed ? -1 : 0;
}

int
body_text_end(struct body_text *bt)
{
	int rc = bt->failed ? -1 : 0;

	if (rc == 0 && !bt->dest->b->cut)
		rc = decoder_flush(&bt->dec, pipeline_bytes, bt);
	decoder_free(&bt->dec);
	if (bt->opened) {
		if (rc == 0)
			rc = conv_finish(&bt->conv);
		if (rc == 0 && bt->html)
			rc = html_finish(&bt->h);
		conv_close(&bt->conv);
	}
	return rc;
}

/* Looks for the keyword "obj" across the chunks of a decoded body. */
struct obj_scan {
	char tail[2];			/* the last bytes of the chunk before */
	size_t ntail;
	int found;
};

static int
scan_bytes(void *ud, const char *s, size_t n)
{
	struct obj_scan *o = ud;
	char edge[4];
	size_t k = n < 2 ? n : 2, m;

	memcpy(edge, o->tail, o->ntail);
	memcpy(edge + o->ntail, s, k);
	m = o->ntail + k;
	if (memmem(edge, m, "obj", 3) || memmem(s, n, "obj", 3)) {
		o->found = 1;
		return 0;
	}
	/* the last two bytes seen, for the next chunk's edge */
	if (n >= 2) {
		memcpy(o->tail, s + n - 2, 2);
		o->ntail = 2;
	} else {
		o->ntail = m < 2 ? m : 2;
		memcpy(o->tail, edge + m - o->ntail, o->ntail);
	}
	return 0;
}

/* Every page, font and content stream of a PDF is an indirect object
 * ("12 0 obj"), so bytes without "obj" give no text whatever pdftotext
 * does with them: a damaged or mislabelled attachment (random bytes named
 * .pdf) then costs a decode instead of a process. */
int
body_pdf_has_objects(const char *body, size_t n, int enc)
{
	struct obj_scan o = { .ntail = 0, .found = 0 };

	if (decode_body(body, n, enc, scan_bytes, &o, &o.found) < 0)
		return 1;
	return o.found;
}

void
body_pdf_begin(struct body_pdf *bp, int enc, const struct extract_limits *lim,
    struct tbuf *dest)
{
	memset(bp, 0, sizeof *bp);
	bp->lim = lim;
	bp->dest = dest;
	decoder_init(&bp->dec, enc);
	bp->state = pdf_tool() == NULL || dest->b->cut ? PDF_OFF : PDF_LOOKING;
	bp->counting = bp->state != PDF_OFF;
}

/* Starts pdftotext and hands it what was held while looking. */
static void
pdf_run(struct body_pdf *bp)
{
	if (pdf_start(&bp->job, bp->lim->pdf_seconds, bp->dest->b->left) == -1) {
		bp->state = PDF_OFF;	/* cannot fork now: the name is still there */
	} else {
		bp->state = PDF_RUNNING;
		(void)pdf_write(&bp->job, bp->look, bp->nlook);
	}
	free(bp->look);
	bp->look = NULL;
	bp->nlook = 0;
}

/* Decoded bytes: held until they name an object, then to the child. */
static int
pdf_decoded(void *ud, const char *s, size_t n)
{
	struct body_pdf *bp = ud;
	struct obj_scan o;
	char *nl;

	if (bp->state == PDF_RUNNING) {
		(void)pdf_write(&bp->job, s, n);	/* a job over early drops them */
		return 0;
	}
	if (bp->state != PDF_LOOKING)
		return 0;
	memcpy(o.tail, bp->tail, sizeof o.tail);
	o.ntail = bp->ntail;
	o.found = 0;
	(void)scan_bytes(&o, s, n);
	memcpy(bp->tail, o.tail, sizeof o.tail);
	bp->ntail = o.ntail;
	if (!o.found && bp->nlook + n > BODY_PDF_LOOK) {
		/* pdftotext wants "%PDF" in the first KiB and objects after it:
		 * none so far is no PDF it reads */
		free(bp->look);
		bp->look = NULL;
		bp->state = PDF_OFF;
		return 0;
	}
	if ((nl = realloc(bp->look, bp->nlook + n + 1)) == NULL)
		return -1;
	bp->look = nl;
	memcpy(bp->look + bp->nlook, s, n);
	bp->nlook += n;
	if (o.found)
		pdf_run(bp);
	return 0;
}

int
body_pdf_feed(struct body_pdf *bp, const char *s, size_t n)
{
	if (!bp->counting)
		return 0;
	bp->encoded += n;
	if (decode_bound(bp->encoded, bp->dec.enc) > bp->lim->pdf_max) {
		bp->why = BODY_PDF_BIG;	/* whatever else stopped it */
		bp->counting = 0;
		if (bp->state == PDF_RUNNING)
			pdf_abort(&bp->job);
		free(bp->look);
		bp->look = NULL;
		bp->state = PDF_OFF;
		return 0;
	}
	if (bp->state == PDF_OFF)
		return 0;
	return decoder_feed(&bp->dec, s, n, pdf_decoded, bp);
}

int
body_pdf_end(struct body_pdf *bp, int *why)
{
	char *text;
	size_t len;
	int r, rc = 0;

	if (bp->state != PDF_OFF)
		rc = decoder_flush(&bp->dec, pdf_decoded, bp);
	decoder_free(&bp->dec);
	free(bp->look);
	bp->look = NULL;
	*why = bp->why;
	if (bp->state != PDF_RUNNING)
		return rc;
	r = pdf_finish(&bp->job, &text, &len);
	if (r == PDF_TIMEOUT)
		*why = BODY_PDF_TIME;
	if (rc == 0 && len > 0) {
		tbuf_break(bp->dest, 2);
		rc = tbuf_put(bp->dest, text, len);
	}
	if (r == PDF_CUT)	/* the budget was what was left: it is full */
		bp->dest->b->cut = 1;
	free(text);
	return rc;
}

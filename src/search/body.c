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


struct pipeline {
	struct tbuf *dest;
	const char *charset;	/* declared, may be NULL */
	int html;
	int opened;
	struct conv conv;
	struct html h;
};

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
	struct pipeline *pl = ud;
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

int
body_text(const char *body, size_t n, int enc, const char *charset, int html,
    struct tbuf *dest)
{
	struct pipeline pl;
	int rc;

	memset(&pl, 0, sizeof pl);
	pl.dest = dest;
	pl.charset = charset;
	pl.html = html;
	rc = decode_body(body, n, enc, pipeline_bytes, &pl, &dest->b->cut);
	if (pl.opened) {
		if (rc == 0)
			rc = conv_finish(&pl.conv);
		if (rc == 0 && html)
			rc = html_finish(&pl.h);
		conv_close(&pl.conv);
	}
	return rc;
}

static int
pdf_bytes(void *ud, const char *s, size_t n)
{
	struct pdf_job *j = ud;

	(void)pdf_write(j, s, n);	/* a job over early just drops them */
	return 0;
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

int
body_pdf(const char *body, size_t n, int enc, const struct extract_limits *lim,
    struct tbuf *dest, int *why)
{
	struct pdf_job j;
	char *text;
	size_t len;
	int r, rc, stop = 0;

	*why = 0;
	if (pdf_tool() == NULL || dest->b->cut)
		return 0;
	if (decode_bound(n, enc) > lim->pdf_max) {
		*why = BODY_PDF_BIG;
		return 0;
	}
	if (!body_pdf_has_objects(body, n, enc))
		return 0;
	if (pdf_start(&j, lim->pdf_seconds, dest->b->left) == -1)
		return 0;	/* cannot fork now: the name is still there */
	rc = decode_body(body, n, enc, pdf_bytes, &j, &stop);
	r = pdf_finish(&j, &text, &len);
	if (r == PDF_TIMEOUT)
		*why = BODY_PDF_TIME;
	if (rc == 0 && len > 0) {
		tbuf_break(dest, 2);
		rc = tbuf_put(dest, text, len);
	}
	if (r == PDF_CUT)	/* the budget was what was left: it is full */
		dest->b->cut = 1;
	free(text);
	return rc;
}

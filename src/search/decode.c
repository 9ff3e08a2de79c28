/*
 * Transfer decoding in chunks with GMime's GMimeEncoding state machines
 * (base64, quoted-printable, uuencode), which keep a few bytes of state
 * between calls and never allocate.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "search/decode.h"

#define CHUNK 8192

int
decode_kind(const char *cte)
{
	char tok[32];
	size_t n = 0;

	if (cte == NULL)
		return ENC_NONE;
	while (*cte == ' ' || *cte == '\t' || *cte == '"')
		cte++;
	while (cte[n] != '\0' && cte[n] != ' ' && cte[n] != '\t' &&
	    cte[n] != ';' && cte[n] != '"' && cte[n] != '(' &&
	    n < sizeof tok - 1) {
		tok[n] = cte[n];
		n++;
	}
	tok[n] = '\0';
	if (strcasecmp(tok, "base64") == 0)
		return ENC_BASE64;
	if (strcasecmp(tok, "quoted-printable") == 0)
		return ENC_QP;
	if (strcasecmp(tok, "x-uuencode") == 0 ||
	    strcasecmp(tok, "uuencode") == 0 || strcasecmp(tok, "x-uue") == 0)
		return ENC_UU;
	return ENC_NONE;
}

size_t
decode_bound(size_t n, int enc)
{
	return enc == ENC_BASE64 || enc == ENC_UU ? n / 4 * 3 + 3 : n;
}

void
decoder_init(struct decoder *d, int enc)
{
	memset(d, 0, sizeof *d);
	d->enc = enc;
	if (enc == ENC_NONE)
		return;
	g_mime_encoding_init_decode(&d->st, enc == ENC_BASE64 ?
	    GMIME_CONTENT_ENCODING_BASE64 : enc == ENC_QP ?
	    GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE :
	    GMIME_CONTENT_ENCODING_UUENCODE);
	if (enc == ENC_UU)
		d->st.state |= GMIME_UUDECODE_STATE_BEGIN;
}

/*
 * Uuencode: the bytes up to and with the line that starts "begin " are
 * not the data. How many of S (N bytes) are, from the end; 0 while that
 * line has not come yet.
 */
static size_t
uu_skip(struct decoder *d, const char **s, size_t n)
{
	static const char begin[] = "begin ";
	const char *p = *s, *end = *s + n;

	while (p < end && d->uu < 2) {
		if (d->uu == 1) {	/* the rest of the "begin" line */
			if (*p++ == '\n')
				d->uu = 2;
			continue;
		}
		if (*p == '\n')
			d->uu_match = 0;
		else if (d->uu_match < 6 && *p == begin[d->uu_match]) {
			if (++d->uu_match == 6)
				d->uu = 1;
		} else
			d->uu_match = 7;	/* not this line */
		p++;
	}
	*s = p;
	return (size_t)(end - p);
}

/* Steps the decoder over N bytes of S in CHUNK-sized calls. */
static int
step(struct decoder *d, const char *s, size_t n, text_emit emit, void *ud)
{
	char out[CHUNK + 64];
	size_t k, got;

	/* out holds g_mime_encoding_outlen(CHUNK): decoding never grows */
	for (; n > 0; s += k, n -= k) {
		k = n < CHUNK ? n : CHUNK;
		got = g_mime_encoding_step(&d->st, s, k, out);
		if (got > 0 && emit(ud, out, got) == -1)
			return -1;
	}
	return 0;
}

int
decoder_feed(struct decoder *d, const char *s, size_t n, text_emit emit, void *ud)
{
	size_t k;

	if (d->enc == ENC_NONE)
		return n > 0 ? emit(ud, s, n) : 0;
	if (d->enc != ENC_UU)
		return step(d, s, n, emit, ud);
	if (d->uu < 2 && (n = uu_skip(d, &s, n)) == 0)
		return 0;
	/*
	 * GMime's uudecoder gives other bytes for damaged data cut at other
	 * places: the data goes to it in CHUNKs counted from the end of the
	 * "begin" line, as when a whole body was decoded.
	 */
	if (d->uubuf == NULL && (d->uubuf = malloc(CHUNK)) == NULL)
		return -1;
	while (n > 0) {
		k = CHUNK - d->uun < n ? CHUNK - d->uun : n;
		memcpy(d->uubuf + d->uun, s, k);
		d->uun += k;
		s += k;
		n -= k;
		if (d->uun == CHUNK) {
			d->uun = 0;
			if (step(d, d->uubuf, CHUNK, emit, ud) == -1)
				return -1;
		}
	}
	return 0;
}

int
decoder_flush(struct decoder *d, text_emit emit, void *ud)
{
	char out[CHUNK + 64];
	size_t got;

	if (d->enc == ENC_NONE || (d->enc == ENC_UU && d->uu < 2))
		return 0;
	if (d->uun > 0 && step(d, d->uubuf, d->uun, emit, ud) == -1)
		return -1;
	d->uun = 0;
	got = g_mime_encoding_flush(&d->st, NULL, 0, out);
	return got > 0 ? emit(ud, out, got) : 0;
}

void
decoder_free(struct decoder *d)
{
	free(d->uubuf);
	d->uubuf = NULL;
	d->uun = 0;
}

int
decode_body(const char *body, size_t n, int enc, text_emit emit, void *ud,
    const int *stop)
{
	struct decoder d;
	size_t i, k;
	int rc = 0;

	decoder_init(&d, enc);
	for (i = 0; i < n && !*stop && rc == 0; i += k) {
		k = n - i < CHUNK ? n - i : CHUNK;
		rc = decoder_feed(&d, body + i, k, emit, ud);
	}
	if (rc == 0 && !*stop)
		rc = decoder_flush(&d, emit, ud);
	decoder_free(&d);
	return rc;
}

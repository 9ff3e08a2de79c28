/*
 * Transfer decoding in chunks with GMime's GMimeEncoding state machines
 * (base64, quoted-printable, uuencode), which keep a few bytes of state
 * between calls and never allocate.
 */
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

/* After the "begin MODE NAME" line of a uuencoded body, or N when none. */
static size_t
uu_start(const char *body, size_t n)
{
	size_t i = 0;
	const char *nl;

	while (i < n) {
		if (n - i >= 6 && memcmp(body + i, "begin ", 6) == 0) {
			nl = memchr(body + i, '\n', n - i);
			return nl != NULL ? (size_t)(nl - body) + 1 : n;
		}
		if ((nl = memchr(body + i, '\n', n - i)) == NULL)
			break;
		i = (size_t)(nl - body) + 1;
	}
	return n;
}

int
decode_body(const char *body, size_t n, int enc, text_emit emit, void *ud,
    const int *stop)
{
	GMimeEncoding st;
	char out[CHUNK + 64];
	size_t i, k, got;

	if (enc == ENC_NONE) {
		for (i = 0; i < n && !*stop; i += k) {
			k = n - i < CHUNK ? n - i : CHUNK;
			if (emit(ud, body + i, k) == -1)
				return -1;
		}
		return 0;
	}
	g_mime_encoding_init_decode(&st, enc == ENC_BASE64 ?
	    GMIME_CONTENT_ENCODING_BASE64 : enc == ENC_QP ?
	    GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE :
	    GMIME_CONTENT_ENCODING_UUENCODE);
	if (enc == ENC_UU) {
		i = uu_start(body, n);
		body += i;
		n -= i;
		st.state |= GMIME_UUDECODE_STATE_BEGIN;
	}
	/* out holds g_mime_encoding_outlen(CHUNK): decoding never grows */
	for (i = 0; i < n && !*stop; i += k) {
		k = n - i < CHUNK ? n - i : CHUNK;
		got = g_mime_encoding_step(&st, body + i, k, out);
		if (got > 0 && emit(ud, out, got) == -1)
			return -1;
	}
	if (*stop)
		return 0;
	got = g_mime_encoding_flush(&st, NULL, 0, out);
	if (got > 0 && emit(ud, out, got) == -1)
		return -1;
	return 0;
}

/*
 * libFuzzer target for mailbox names (imap/utf7.c): what a server calls
 * its folders, and the names the IMAP view is asked for.
 *
 * The input is a name. Checked: a name that decodes as modified UTF-7
 * gives valid UTF-8 that encodes back to the very same bytes (one
 * spelling); a valid UTF-8 name encodes and decodes back to itself; the
 * escaped form of any bytes is valid UTF-8 from which the bytes can be
 * read back (so two names never show the same), and a cap one byte too
 * small is refused, never overrun.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The bytes behind an escaped name: "\\" is '\', "\xHH" a byte. */
static size_t
unescape(const char *s, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '\\') {
			out[o++] = s[i];
			continue;
		}
		if (i + 1 < len && s[i + 1] == '\\') {
			out[o++] = '\\';
			i++;
			continue;
		}
		if (i + 3 >= len || s[i + 1] != 'x')
			abort();	/* an escape the escaper never writes */
		char hex[3] = { s[i + 2], s[i + 3], 0 };
		out[o++] = (char)strtol(hex, NULL, 16);
		i += 3;
	}
	return o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t dcap = IMAP_UTF7_DECODED_MAX(size) + 1;
	size_t ecap = IMAP_UTF7_ENCODED_MAX(size) + 1;
	size_t xcap = IMAP_NAME_ESCAPED_MAX(size) + 1;
	char *dec = malloc(dcap), *enc = malloc(ecap), *esc = malloc(xcap), *back = malloc(size + 1);
	size_t dlen, elen, xlen, blen;

	if (dec == NULL || enc == NULL || esc == NULL || back == NULL)
		abort();
	if (imap_utf7_decode(in, size, dec, dcap, &dlen) == 0) {
		if (!imap_utf8_valid(dec, dlen) || dec[dlen] != '\0')
			abort();
		if (imap_utf7_encode(dec, dlen, enc, ecap, &elen) != 0 || elen != size ||
		    memcmp(enc, in, size) != 0)
			abort();
	}
	if (imap_utf8_valid(in, size)) {
		if (imap_utf7_encode(in, size, enc, ecap, &elen) != 0)
			abort();
		if (imap_utf7_decode(enc, elen, dec, dcap, &dlen) != 0 || dlen != size ||
		    memcmp(dec, in, size) != 0)
			abort();
	}
	if (imap_name_escape(in, size, esc, xcap, &xlen) != 0)
		abort();
	if (!imap_utf8_valid(esc, xlen) || esc[xlen] != '\0')
		abort();
	blen = unescape(esc, xlen, back);
	if (blen != size || memcmp(back, in, size) != 0)
		abort();
	/* exactly the room it needs, and one byte less */
	char *tight = malloc(xlen + 1);
	if (tight == NULL)
		abort();
	if (imap_name_escape(in, size, tight, xlen + 1, &blen) != 0 || blen != xlen)
		abort();
	if (xlen > 0 && imap_name_escape(in, size, tight, xlen, &blen) != IMAP_UTF7_ESPACE)
		abort();
	free(tight);
	free(dec);
	free(enc);
	free(esc);
	free(back);
	return 0;
}

/*
 * libFuzzer target for header decoding (mime/headers.c): what the import
 * records of every message (subject, addresses, date, Message-ID) comes
 * from a stranger's header block.
 *
 * The input is a message's start. Checked: every getter gives valid
 * UTF-8 (shortest form, no surrogates, nothing past U+10FFFF) with no C0
 * control and no DEL; what is absent is "" (or NULL for
 * mime_headers_get/raw, which agree with get_all on what is there); raw
 * values are unfolded; the date is -1 or a time; mime_decode_text of any
 * bytes is such UTF-8 too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "mime/headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 if S is valid UTF-8 without C0 controls or DEL (they are made spaces:
 * a decoded "=0D=0A" must not forge lines in a log or a hook). */
static int
fine(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned c = *p, cp;
		int k;
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		for (int i = 1; i <= k; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += k + 1;
	}
	return 1;
}

static void
must(const char *s)
{
	if (s == NULL || !fine(s))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	const char *all[8];
	struct mime_headers *h = mime_headers_parse(msg, size);

	if (h == NULL)
		abort();
	must(mime_headers_subject(h));
	must(mime_headers_from(h));
	must(mime_headers_to(h));
	must(mime_headers_cc(h));
	must(mime_headers_date(h));
	must(mime_headers_message_id(h));
	must(mime_headers_from_addrs(h));
	must(mime_headers_to_addrs(h));
	if (mime_headers_date_unix(h) < -1)
		abort();
	static const char *const names[] = { "Subject", "From", "Received", "Content-Type",
		"X-Anything", "" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *v = mime_headers_get(h, names[i]);
		const char *raw = mime_headers_raw(h, names[i]);
		size_t n = mime_headers_get_all(h, names[i], all, 8);
		if (v != NULL)
			must(v);
		if ((n > 0) != (v != NULL) || (raw != NULL) != (v != NULL))
			abort();	/* one header, however it is asked for */
		for (size_t k = 0; k < n && k < 8; k++)
			must(all[k]);
		if (raw != NULL && memchr(raw, '\n', strlen(raw)) != NULL)
			abort();	/* unfolded */
	}
	mime_headers_free(h);

	char *t = mime_decode_text(msg, size < 4096 ? size : 4096);
	must(t);
	g_free(t);
	return 0;
}

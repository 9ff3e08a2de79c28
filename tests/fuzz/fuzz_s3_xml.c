/*
 * libFuzzer target for the S3 answers' XML reader (s3/xml.c): bytes from
 * a server, read without a general parser.
 *
 * The first byte sets the size of the output buffer (1 to 256 bytes, or
 * 64 KiB); the rest is the answer. For each name S3 answers carry:
 * s3_xml_text gives -1, 0 or 1 and a NUL-terminated text that fits, no
 * longer than the element it came from; s3_xml_next walks the elements
 * forward, each inside the answer, and ends. And any text escaped by
 * s3_xml_escape and read back from <K>...</K> is the text again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3/xml.h"

static const char *const names[] = {
	"Contents", "Key", "Size", "ETag", "IsTruncated", "NextContinuationToken", "Code",
	"Message", "UploadId", "K",
};

static char out[65536];

static void
check_name(const char *xml, size_t len, const char *name, size_t outlen)
{
	const char *inner;
	size_t ilen, pos = 0, last = 0;
	int rc = s3_xml_text(xml, len, name, out, outlen);

	if (rc < -1 || rc > 1 || memchr(out, '\0', outlen) == NULL)
		abort();
	if (rc == 0 && out[0] != '\0')
		abort();
	if (s3_xml_next(xml, len, name, &pos, &inner, &ilen) != (rc != 0))
		abort();		/* the text is that of the first element */
	if (rc == 1 && strlen(out) > ilen)
		abort();		/* entities only ever shorten */
	pos = 0;
	for (int n = 0; s3_xml_next(xml, len, name, &pos, &inner, &ilen); n++) {
		if (inner < xml || ilen > len || inner + ilen > xml + len)
			abort();
		if (pos <= last && n > 0)
			abort();	/* it moves forward, so it ends */
		if (pos > len)
			abort();
		last = pos;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *xml;
	size_t len, outlen, tlen;

	if (size < 1)
		return 0;
	outlen = data[0] == 255 ? sizeof(out) : (size_t)data[0] + 1;
	xml = (const char *)data + 1;
	len = size - 1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		check_name(xml, len, names[i], outlen);

	/* escape and back: the answer's bytes up to a NUL, as a text */
	tlen = strnlen(xml, len < 4096 ? len : 4096);
	char *text = malloc(tlen + 1), *esc, *doc;
	if (text == NULL)
		abort();
	memcpy(text, xml, tlen);
	text[tlen] = '\0';
	if ((esc = s3_xml_escape(text)) == NULL)
		abort();
	size_t elen = strlen(esc);
	if ((doc = malloc(elen + 8)) == NULL)
		abort();
	memcpy(doc, "<K>", 3);
	memcpy(doc + 3, esc, elen);
	memcpy(doc + 3 + elen, "</K>", 4);
	if (s3_xml_text(doc, elen + 7, "K", out, sizeof(out)) != 1 || strcmp(out, text) != 0)
		abort();
	free(doc);
	free(esc);
	free(text);
	return 0;
}

/*
 * libFuzzer target for the text extraction (raw message -> index text).
 *
 * Input starting with 0xff: the next two bytes choose small limits (text
 * budget, depth, parts), so the caps are reached; anything else runs with
 * the defaults. PDF extraction is off (no child processes here). Checked:
 * every field is valid UTF-8 without NULs or controls but \n, the fields
 * together stay within max_text, a note comes exactly with truncated, and
 * a second run, over a stream read in pieces of 1 to 64 bytes, gives the
 * same result (the input is far under what a stream may hold).
 */
#include <sys/types.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "search/extract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Valid UTF-8 (shortest form, no surrogates, <= U+10FFFF), no C0 but \n,
 * no DEL, no C1. Returns the length, or (size_t)-1. */
static size_t
check(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;
	unsigned int c;
	int k, i;

	while (p[n] != '\0') {
		c = p[n];
		if (c < 0x80) {
			if ((c < 0x20 && c != '\n') || c == 0x7f)
				return (size_t)-1;
			n++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, c &= 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, c &= 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, c &= 0x07;
		else
			return (size_t)-1;
		for (i = 1; i <= k; i++) {
			if ((p[n + i] & 0xc0) != 0x80)
				return (size_t)-1;
			c = c << 6 | (p[n + i] & 0x3f);
		}
		if ((k == 2 && c < 0x800) || (k == 3 && c < 0x10000) ||
		    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff) ||
		    (c >= 0x80 && c < 0xa0))
			return (size_t)-1;
		n += (size_t)k + 1;
	}
	return n;
}

static size_t
verify(const struct extract_text *t, const struct extract_limits *lim)
{
	const char *f[7] = { t->subject, t->from, t->to, t->cc, t->body,
	    t->filenames, t->attachments };
	size_t total = 0, n;
	int i;

	for (i = 0; i < 7; i++) {
		if (f[i] == NULL || (n = check(f[i])) == (size_t)-1)
			abort();
		total += n;
	}
	if (total > lim->max_text)
		abort();
	if (memchr(t->note, '\0', sizeof t->note) == NULL ||
	    (t->note[0] != '\0') != (t->truncated != 0))
		abort();
	if (t->attachment_count < 0 || t->attachment_count > lim->max_parts)
		abort();
	return total;
}

static int
same(const struct extract_text *a, const struct extract_text *b)
{
	return strcmp(a->subject, b->subject) == 0 &&
	    strcmp(a->from, b->from) == 0 && strcmp(a->to, b->to) == 0 &&
	    strcmp(a->cc, b->cc) == 0 && strcmp(a->body, b->body) == 0 &&
	    strcmp(a->filenames, b->filenames) == 0 &&
	    strcmp(a->attachments, b->attachments) == 0 &&
	    a->attachment_count == b->attachment_count &&
	    a->truncated == b->truncated && strcmp(a->note, b->note) == 0;
}

/* The input in reads of 1 to 64 bytes, their sizes from a generator. */
struct pieces {
	const char *data;
	size_t len, at;
	uint32_t state;
};

static ssize_t
pieces_read(void *ud, void *buf, size_t cap)
{
	struct pieces *p = ud;
	size_t k = p->len - p->at;

	p->state = p->state * 1664525u + 1013904223u;
	if (k > 1 + (p->state >> 26))
		k = 1 + (p->state >> 26);
	if (k > cap)
		k = cap;
	memcpy(buf, p->data + p->at, k);
	p->at += k;
	return (ssize_t)k;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct extract_limits lim;
	struct extract_text a, b;
	struct pieces p;
	char *copy;

	extract_limits_default(&lim);
	lim.pdf = 0;
	if (size >= 3 && data[0] == 0xff) {
		lim.max_text = (size_t)data[1] * 4;
		lim.max_depth = 1 + (data[2] & 7);
		lim.max_parts = 1 + (data[2] >> 3);
		data += 3;
		size -= 3;
	}
	/* a copy of exactly SIZE bytes, so a read past the end is caught */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(copy, data, size);
	if (extract_message(copy, size, &lim, &a) != 0) {
		free(copy);
		return 0;
	}
	verify(&a, &lim);
	p.data = copy;
	p.len = size;
	p.at = 0;
	p.state = (uint32_t)size;
	if (extract_stream(pieces_read, &p, &lim, &b) != 0)
		abort();	/* out of memory once but not twice: unlikely */
	if (!same(&a, &b))
		abort();
	extract_text_free(&a);
	extract_text_free(&b);
	free(copy);
	return 0;
}

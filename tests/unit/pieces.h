#ifndef EMAILVAULT_TEST_PIECES_H
#define EMAILVAULT_TEST_PIECES_H
/*
 * Bytes handed out the way a stream does: DATA in reads of at most STEP
 * bytes (0: as many as asked), failing with EIO at FAIL_AT when FAIL is
 * set. A read callback for search/lines.h and extract_stream.
 */
#include <sys/types.h>

#include <errno.h>
#include <string.h>

struct src {
	const char *data;
	size_t len, at, step, fail_at;
	int fail;
};

static ssize_t
src_read(void *ud, void *buf, size_t cap)
{
	struct src *s = ud;
	size_t k = s->len - s->at;

	if (s->fail && s->at >= s->fail_at) {
		errno = EIO;
		return -1;
	}
	if (s->step > 0 && k > s->step)
		k = s->step;
	if (k > cap)
		k = cap;
	if (s->fail && s->at + k > s->fail_at)
		k = s->fail_at - s->at;
	memcpy(buf, s->data + s->at, k);
	s->at += k;
	return (ssize_t)k;
}

#endif

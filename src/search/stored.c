#include "search/stored.h"

#include <errno.h>
#include <stdlib.h>

#include "store/reader.h"

static ssize_t
stream_read(void *ud, void *buf, size_t cap)
{
	return store_stream_read(ud, buf, cap);
}

int
extract_stored(struct store_reader *r, const char *hash, const struct extract_limits *lim,
    struct extract_text *t)
{
	struct store_stream *st;
	uint64_t size;
	char *data;
	size_t len;
	int rc, e;

	if (store_reader_get(r, hash, STORE_WHOLE_MAX, &data, &len) == 0) {
		rc = extract_message(data, len, lim, t);
		e = errno;
		free(data);
		errno = rc == 0 ? 0 : e;
		return rc;
	}
	if (errno != EFBIG || (st = store_reader_stream(r, hash, &size)) == NULL)
		return -1;
	rc = extract_stream(stream_read, st, lim, t);
	e = errno;
	store_stream_close(st);
	errno = e;
	return rc;
}

#include "control/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* 1 on success, 0 at EOF before any byte, -1 on error. EINTR is returned
 * to the caller so it can act on a signal (Ctrl-C) while waiting. */
static int
read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t r = read(fd, p + got, len - got);
		if (r < 0) {
			if (errno == EINTR && got > 0)
				continue;
			return -1;
		}
		if (r == 0) {
			if (got == 0)
				return 0;
			errno = EPROTO;
			return -1;
		}
		got += (size_t)r;
	}
	return 1;
}

int
frame_write(int fd, char type, const void *data, size_t len)
{
	unsigned char hdr[FRAME_HEADER];
	uint32_t n = (uint32_t)len + 1;

	if (len + 1 > FRAME_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	hdr[0] = (unsigned char)(n >> 24);
	hdr[1] = (unsigned char)(n >> 16);
	hdr[2] = (unsigned char)(n >> 8);
	hdr[3] = (unsigned char)n;
	hdr[4] = (unsigned char)type;
	if (write_all(fd, hdr, sizeof(hdr)) < 0)
		return -1;
	return len ? write_all(fd, data, len) : 0;
}

int
frame_read(int fd, char *type, char **payload, size_t *len)
{
	unsigned char hdr[FRAME_HEADER];
	uint32_t n;
	int r = read_all(fd, hdr, sizeof(hdr));

	if (r <= 0) {
		if (r == 0)
			errno = 0;
		return -1;
	}
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (n < 1 || n > FRAME_MAX) {
		errno = EPROTO;
		return -1;
	}
	*type = (char)hdr[4];
	*len = n - 1;
	*payload = malloc(n);
	if (*payload == NULL)
		return -1;
	for (;;) {
		r = *len ? read_all(fd, *payload, *len) : 1;
		if (r < 0 && errno == EINTR)
			continue;	/* mid-frame: finish reading it */
		break;
	}
	if (r <= 0) {
		free(*payload);
		*payload = NULL;
		if (r == 0)
			errno = EPROTO;
		return -1;
	}
	(*payload)[*len] = '\0';
	return 0;
}

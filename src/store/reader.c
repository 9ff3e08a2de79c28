#include "store/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct store_reader {
	char root[4096];	/* DATA/blobs */
};

struct store_reader *
store_reader_open(const char *data_dir)
{
	struct store_reader *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	if ((size_t)snprintf(r->root, sizeof(r->root), "%s/blobs", data_dir) >= sizeof(r->root)) {
		free(r);
		errno = ENAMETOOLONG;
		return NULL;
	}
	return r;
}

void
store_reader_close(struct store_reader *r)
{
	free(r);
}

int
store_hash_valid(const char *hash)
{
	size_t i;

	for (i = 0; hash[i]; i++)
		if (!((hash[i] >= '0' && hash[i] <= '9') || (hash[i] >= 'a' && hash[i] <= 'f')))
			return 0;
	return i == 64;
}

int
store_reader_get(struct store_reader *r, const char *hash, size_t max, char **data, size_t *len)
{
	char path[4200];
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd;

	*data = NULL;
	*len = 0;
	if (!store_hash_valid(hash)) {
		errno = EINVAL;
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%.2s/%.2s/%s", r->root, hash, hash + 2, hash);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EIO;
		return -1;
	}
	if ((max && (uint64_t)st.st_size > max) || (uint64_t)st.st_size >= SIZE_MAX) {
		close(fd);
		errno = EFBIG;
		return -1;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;	/* cut short: the file changed */
			free(buf);
			close(fd);
			errno = e;
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*data = buf;
	*len = got;
	return 0;
}

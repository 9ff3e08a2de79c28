#define _GNU_SOURCE	/* syncfs */
#include "store/blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "paths.h"

struct blob_store {
	char *root;		/* DATA/blobs */
	char *tmp;		/* DATA/blobs/tmp */
	int root_fd;
	uint64_t seq;
	uint64_t published;
	unsigned unsettled;	/* published writers not yet freed */
};

struct blob_writer {
	struct blob_store *bs;
	int fd;
	char tmp_path[4096];
	EVP_MD_CTX *md;
	uint64_t size;
	char hash[BLOB_HASH_HEX];
	char *head;
	size_t head_len;
	int finished, published;
};

static void
remove_tmp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4096];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);	/* an unfinished blob of a run that died */
	}
	closedir(d);
}

struct blob_store *
blob_store_open(const char *data_dir, char *err, size_t errlen)
{
	struct blob_store *bs = calloc(1, sizeof(*bs));
	char buf[4096];

	if (bs == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(buf, sizeof(buf), "%s/blobs", data_dir);
	bs->root = strdup(buf);
	snprintf(buf, sizeof(buf), "%s/blobs/tmp", data_dir);
	bs->tmp = strdup(buf);
	bs->root_fd = -1;
	if (bs->root == NULL || bs->tmp == NULL || paths_mkdir_p(bs->tmp, 0700) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", bs->tmp, strerror(errno));
		blob_store_close(bs);
		return NULL;
	}
	bs->root_fd = open(bs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (bs->root_fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", bs->root, strerror(errno));
		blob_store_close(bs);
		return NULL;
	}
	remove_tmp_files(bs->tmp);
	return bs;
}

void
blob_store_close(struct blob_store *bs)
{
	if (bs == NULL)
		return;
	if (bs->root_fd >= 0)
		close(bs->root_fd);
	free(bs->root);
	free(bs->tmp);
	free(bs);
}

int
blob_store_sync(struct blob_store *bs)
{
	return syncfs(bs->root_fd);
}

const char *
blob_store_root(const struct blob_store *bs)
{
	return bs->root;
}

uint64_t
blob_store_published(const struct blob_store *bs)
{
	return bs->published;
}

unsigned
blob_store_unsettled(const struct blob_store *bs)
{
	return bs->unsettled;
}

void
blob_store_path(const struct blob_store *bs, const char *hash, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%.2s/%.2s/%s", bs->root, hash, hash + 2, hash);
}

struct blob_writer *
blob_writer_new(struct blob_store *bs)
{
	struct blob_writer *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->bs = bs;
	snprintf(w->tmp_path, sizeof(w->tmp_path), "%s/%ld.%llu", bs->tmp, (long)getpid(),
	    (unsigned long long)++bs->seq);
	w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	w->md = EVP_MD_CTX_new();
	w->head = malloc(BLOB_HEAD_MAX);
	if (w->fd < 0 || w->md == NULL || w->head == NULL ||
	    EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
		int e = errno ? errno : ENOMEM;
		blob_writer_free(w);
		errno = e;
		return NULL;
	}
	return w;
}

int
blob_writer_write(struct blob_writer *w, const void *data, size_t len)
{
	const char *p = data;
	size_t left = len;

	if (w->head && w->head_len < BLOB_HEAD_MAX) {
		size_t take = BLOB_HEAD_MAX - w->head_len < len ? BLOB_HEAD_MAX - w->head_len : len;
		memcpy(w->head + w->head_len, data, take);
		w->head_len += take;
	}
	EVP_DigestUpdate(w->md, data, len);
	while (left > 0) {
		ssize_t n = write(w->fd, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	w->size += len;
	return 0;
}

int
blob_writer_finish(struct blob_writer *w)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";

	if (w->finished)
		return 0;
	if (EVP_DigestFinal_ex(w->md, md, &mdlen) != 1 || mdlen != 32) {
		errno = EIO;
		return -1;
	}
	for (unsigned i = 0; i < 32; i++) {
		w->hash[2 * i] = hex[md[i] >> 4];
		w->hash[2 * i + 1] = hex[md[i] & 15];
	}
	w->hash[64] = '\0';
	/* close() reports delayed write errors (NFS, quota). */
	if (close(w->fd) < 0) {
		w->fd = -1;
		return -1;
	}
	w->fd = -1;
	w->finished = 1;
	return 0;
}

const char *
blob_writer_hash(const struct blob_writer *w)
{
	return w->finished ? w->hash : NULL;
}

uint64_t
blob_writer_size(const struct blob_writer *w)
{
	return w->size;
}

const char *
blob_writer_head(const struct blob_writer *w, size_t *len)
{
	*len = w->head_len;
	return w->head;
}

void
blob_writer_drop_head(struct blob_writer *w)
{
	free(w->head);
	w->head = NULL;
	w->head_len = 0;
}

int
blob_writer_publish(struct blob_writer *w, int *existed)
{
	char dir[4096], path[4096];
	struct stat st;

	*existed = 0;
	if (!w->finished) {
		errno = EINVAL;
		return -1;
	}
	blob_store_path(w->bs, w->hash, path, sizeof(path));
	if (stat(path, &st) == 0) {
		/* Same bytes already stored: their name was durable before any
		 * record pointed at them. */
		unlink(w->tmp_path);
		*existed = 1;
		w->published = 1;
		w->bs->unsettled++;
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/%.2s/%.2s", w->bs->root, w->hash, w->hash + 2);
	if (paths_mkdir_p(dir, 0700) < 0)
		return -1;
	if (rename(w->tmp_path, path) < 0)
		return -1;
	w->published = 1;
	w->bs->published++;
	w->bs->unsettled++;
	return 0;
}

void
blob_writer_free(struct blob_writer *w)
{
	if (w == NULL)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (!w->published && w->tmp_path[0])
		unlink(w->tmp_path);
	if (w->published)
		w->bs->unsettled--;
	EVP_MD_CTX_free(w->md);
	free(w->head);
	free(w);
}

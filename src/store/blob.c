#include "store/blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"

struct blob_store {
	char *root;		/* DATA/blobs */
	char *tmp;		/* DATA/blobs/tmp */
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
	if (bs->root == NULL || bs->tmp == NULL || paths_mkdir_p(bs->tmp, 0700) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", bs->tmp, strerror(errno));
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
	free(bs->root);
	free(bs->tmp);
	free(bs);
}

const char *
blob_store_root(const struct blob_store *bs)
{
	return bs->root;
}

void
blob_store_path(const struct blob_store *bs, const char *hash, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%.2s/%.2s/%s", bs->root, hash, hash + 2, hash);
}

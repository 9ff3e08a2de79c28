#ifndef EMAILVAULT_STORE_BLOB_H
#define EMAILVAULT_STORE_BLOB_H
/*
 * The old layout: DATA/blobs/ab/cd/<sha256 hex>, one file per message, as
 * archives written before the pack store have it. Nothing new is written
 * there; the files are read (store/reader.c), moved into packs
 * (store/migrate.c) and swept when no record names them (store/reclaim.c).
 */
#include <stddef.h>

#define BLOB_HASH_HEX 65	/* 64 hex digits and a NUL */

struct blob_store;

/* Opens DATA/blobs and removes what a writer of the old layout left
 * unfinished in DATA/blobs/tmp. */
struct blob_store *blob_store_open(const char *data_dir, char *err, size_t errlen);
void blob_store_close(struct blob_store *bs);
/* DATA/blobs/ab/cd/<hash> into BUF. */
void blob_store_path(const struct blob_store *bs, const char *hash, char *buf, size_t len);
const char *blob_store_root(const struct blob_store *bs);

#endif

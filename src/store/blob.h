#ifndef EMAILVAULT_STORE_BLOB_H
#define EMAILVAULT_STORE_BLOB_H
/*
 * Content-addressed blobs: DATA/blobs/ab/cd/<sha256 hex> holds one message's
 * raw bytes exactly as the server sent them. A writer streams bytes into a
 * temporary file in DATA/blobs/tmp while hashing them; publishing renames it
 * to its name, or drops it when identical bytes are already stored.
 *
 * Durability is per batch, not per file: blob_store_sync (syncfs) makes the
 * temporary files durable, then they are published, then a second sync makes
 * the names durable, and only then may the database record them. A name
 * therefore never points at bytes that were not on disk first.
 */
#include <stddef.h>
#include <stdint.h>

#define BLOB_HASH_HEX 65	/* 64 hex digits and a NUL */
#define BLOB_HEAD_MAX (256 * 1024)	/* bytes kept in memory for header parsing */

struct blob_store;
struct blob_writer;

/* Opens (creating) DATA/blobs and removes leftover temporary files. */
struct blob_store *blob_store_open(const char *data_dir, char *err, size_t errlen);
void blob_store_close(struct blob_store *bs);
/* Flushes everything written so far to disk. 0, or -1 with errno. */
int blob_store_sync(struct blob_store *bs);
/* DATA/blobs/ab/cd/<hash> into BUF. */
void blob_store_path(const struct blob_store *bs, const char *hash, char *buf, size_t len);
const char *blob_store_root(const struct blob_store *bs);

/* A new temporary blob; NULL with errno. */
struct blob_writer *blob_writer_new(struct blob_store *bs);
/* Appends bytes; -1 with errno (ENOSPC, EIO...). */
int blob_writer_write(struct blob_writer *w, const void *data, size_t len);
/* No more bytes: the hash is final. -1 with errno. */
int blob_writer_finish(struct blob_writer *w);
const char *blob_writer_hash(const struct blob_writer *w);
uint64_t blob_writer_size(const struct blob_writer *w);
/* The first bytes (up to BLOB_HEAD_MAX), for parsing the header block. */
const char *blob_writer_head(const struct blob_writer *w, size_t *len);
/* Frees the kept first bytes once they were parsed. */
void blob_writer_drop_head(struct blob_writer *w);
/* Renames the finished blob into place (after blob_store_sync). *EXISTED
 * tells whether identical bytes were already stored. -1 with errno. */
int blob_writer_publish(struct blob_writer *w, int *existed);
/* Frees the writer; removes the temporary file if it was not published. */
void blob_writer_free(struct blob_writer *w);

/* Counts for tests and crash injection. */
uint64_t blob_store_published(const struct blob_store *bs);
/* Writers published but not yet freed: their batch may not have recorded
 * them yet, so no orphan sweep may run (store/reclaim.h). */
unsigned blob_store_unsettled(const struct blob_store *bs);

#endif

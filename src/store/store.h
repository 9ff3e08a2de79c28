#ifndef EMAILVAULT_STORE_STORE_H
#define EMAILVAULT_STORE_STORE_H
/*
 * The archive of one data folder: its blob store and its database, opened
 * once by the engine (or read-only by `emailvault status`).
 */
#include <stddef.h>

struct blob_store;
struct pack_store;
struct archive_db;
struct remote;

struct store {
	char *data_dir;
	struct pack_store *packs;	/* where messages go; NULL when read-only */
	struct blob_store *blobs;	/* the old layout, while an archive has one */
	struct archive_db *db;
	struct remote *remote;		/* segments on S3 too (store/remote.h), or NULL */
	int readonly;
};

struct store *store_open(const char *data_dir, int readonly, char *err, size_t errlen);
void store_close(struct store *s);

/* The store the Lua modules use (one per process). */
void store_set_current(struct store *s);
struct store *store_current(void);

#endif

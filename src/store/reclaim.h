#ifndef EMAILVAULT_STORE_RECLAIM_H
#define EMAILVAULT_STORE_RECLAIM_H
/*
 * Orphan blobs: published files that no committed record names. A crash
 * between publishing a batch's blobs and committing its records leaves
 * them. A sweep walks DATA/blobs/ab/cd/ a few entries at a time (so the
 * engine can run it between loop turns) and removes each orphan, asking
 * archive.db about that one file right before it is unlinked.
 *
 * That last-moment check is what makes it safe, given one more rule: no
 * record may name a blob that is not yet committed. Nothing writes blob
 * files any more (the pack store replaced them), so in the engine only
 * store/migrate.c changes them, and it records a message's new place
 * before it removes the file, within one synchronous step; offline the
 * caller must hold DATA/engine.lock.
 *
 * Only an archive that still has files of the old layout has any.
 */
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct reclaim;

enum { RECLAIM_DONE = 0, RECLAIM_MORE = 1, RECLAIM_ERROR = -1 };

struct reclaim_counts {
	uint64_t scanned;	/* blob files looked at */
	uint64_t orphans;	/* of those, named by no record */
	uint64_t reclaimed;	/* orphans removed (0 in a dry run) */
	uint64_t bytes;		/* their size */
	uint64_t failed;	/* orphans that could not be removed */
};

/* Called for each orphan: removed (or found, in a dry run) when ERR is 0,
 * else the errno of the failed unlink. */
typedef void (*reclaim_fn)(void *ud, const char *hash, uint64_t size, int err);

/*
 * A sweep of DATA_DIR/blobs that checks names against DB. DRY_RUN only
 * reports orphans (emailvault verify). NULL with ERR.
 */
struct reclaim *reclaim_new(const char *data_dir, sqlite3 *db, int dry_run, reclaim_fn fn,
    void *ud, char *err, size_t errlen);
/* Looks at up to BUDGET directory entries: RECLAIM_MORE, RECLAIM_DONE, or
 * RECLAIM_ERROR (archive.db could not be asked; nothing more is removed). */
int reclaim_step(struct reclaim *r, unsigned budget);
const struct reclaim_counts *reclaim_counts(const struct reclaim *r);
/* The database's message after RECLAIM_ERROR. */
const char *reclaim_error(const struct reclaim *r);
void reclaim_free(struct reclaim *r);

#endif

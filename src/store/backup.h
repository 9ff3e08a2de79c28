#ifndef EMAILVAULT_STORE_BACKUP_H
#define EMAILVAULT_STORE_BACKUP_H
/*
 * `emailvault backup`: a consistent snapshot of a data folder, taken with
 * or without the engine running (it only reads the data folder).
 *
 * The consistent point is archive.db's online backup (one read
 * transaction); the files are then copied as that snapshot names them:
 * each segment up to its committed length (sealed ones never change, so an
 * identical copy already in the backup is kept, or the file is hard-linked
 * on the same filesystem), the old layout's blob files, and the OAuth2
 * tokens. A sealed segment of an archive on S3 that is not in the local
 * cache is not fetched: the backup's archive.db names its object, and the
 * manifest counts such segments (segments_only_on_s3). Everything is written under temporary names, synced and renamed;
 * DIR/backup.partial says a backup is being written (or was interrupted)
 * and DIR/BACKUP, written last, says it is complete. archive.db is put in
 * place only after every file it names, so at every moment DIR's
 * archive.db is consistent with DIR's files.
 */
#include <stdint.h>
#include <stdio.h>

#define BACKUP_MANIFEST	"BACKUP"
#define BACKUP_PARTIAL	"backup.partial"

struct backup_result {
	uint64_t messages;			/* recorded in the snapshot */
	uint64_t segments, seg_copied, seg_linked, seg_kept;
	uint64_t seg_remote;			/* sealed, on S3 only (evicted here): named, not copied */
	uint64_t blobs, blob_copied, blob_linked, blob_kept;
	uint64_t tokens;			/* DATA/oauth2 files */
	uint64_t bytes_copied;
	uint64_t removed;			/* files of an older backup no longer named */
	uint64_t damaged;			/* named by the snapshot but missing or short in DATA */
};

/* Backs DATA_DIR up into OUT_DIR (created 0700; empty, or an earlier
 * backup). Damage found in DATA_DIR is reported on WARN and counted; the
 * backup goes on. 0, or -1 with a message in ERR (OUT_DIR then holds no
 * BACKUP manifest). */
int backup_run(const char *data_dir, const char *out_dir, FILE *warn, struct backup_result *r,
    char *err, size_t errlen);

/* For tests: called, when set, once the snapshot is taken and before any
 * file is copied (where a running engine goes on changing DATA_DIR). */
extern void (*backup_snapshot_taken)(void);

#endif

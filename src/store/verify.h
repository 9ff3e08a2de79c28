#ifndef EMAILVAULT_STORE_VERIFY_H
#define EMAILVAULT_STORE_VERIFY_H
/*
 * `emailvault verify`: every message the archive records has its blob, and
 * every blob re-hashes to its name. Blobs that no record points at (left by
 * a crash between publishing and committing) are counted, not errors, or
 * removed with `--reclaim` (store/reclaim.h).
 */
#include <stdint.h>
#include <stdio.h>

struct verify_result {
	uint64_t checked, bytes;
	uint64_t missing, corrupt, orphans;
	uint64_t reclaimed, reclaimed_bytes, reclaim_failed;
	/* the full-text index: rows whose message or blob is gone, messages
	 * recorded as indexed that have no row, and what --repair-index fixed */
	uint64_t index_rows, index_orphans, index_holes, index_repaired;
	/* the pack store: segments looked at, ones whose file or checksum is
	 * wrong, records no message names (harmless) and their bytes */
	uint64_t segments, segments_bad, unreferenced, unreferenced_bytes;
};

struct verify_opts {
	int reclaim;		/* remove orphan blobs (hold DATA/engine.lock) */
	int repair_index;	/* drop index rows without a blob, queue holes (hold the lock) */
	void (*progress)(void *ud, uint64_t done, uint64_t total);
	void *ud;
};

/* Reports each problem on OUT as it goes. 0, or -1 if the archive cannot
 * be read at all (message in ERR). */
int verify_archive(const char *data_dir, const struct verify_opts *o, FILE *out,
    struct verify_result *r, char *err, size_t errlen);

#endif

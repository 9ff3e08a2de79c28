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
};

/* Reports each problem on OUT as it goes. RECLAIM removes the orphans; the
 * caller must hold DATA/engine.lock then. 0, or -1 if the archive cannot be
 * read at all (message in ERR). */
int verify_archive(const char *data_dir, int reclaim, FILE *out, struct verify_result *r,
    char *err, size_t errlen);

#endif

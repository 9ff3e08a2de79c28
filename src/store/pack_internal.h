#ifndef EMAILVAULT_STORE_PACK_INTERNAL_H
#define EMAILVAULT_STORE_PACK_INTERNAL_H
/* The pack store as pack.c and pack_remote.c share it (internal). */
#include <stdint.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <zstd.h>

#include "store/pack.h"

struct remote_side;

/* Messages appended since the store opened, by hash: a second copy that
 * arrives before the first is committed is not stored twice. */
struct seen {
	char hash[65];
	struct pack_location loc;
};

/* Where the unsynced tail of a segment was cut off after a failed
 * fdatasync: the locations appended before it and at or past OFFSET name
 * bytes that may be lost. The last CUTS_KEPT are kept; a location older
 * than those is taken as lost (it is fetched again, nothing worse). */
#define CUTS_KEPT 16

struct cut {
	int64_t seg;
	uint64_t offset;
};

struct pack_store {
	char *dir, *spool_dir;
	sqlite3 *db;
	sqlite3_stmt *lookup, *commit, *seal, *create;
	int fd;				/* the open segment; -1 after a seal until the next opens */
	int64_t seg;
	uint64_t end;			/* where the next record goes */
	uint64_t synced;		/* durable up to here */
	uint64_t records;		/* in the open segment */
	uint64_t records_synced;	/* of those, before synced */
	EVP_MD_CTX *sum;		/* of the open segment's bytes, in order */
	EVP_MD_CTX *sum_synced;		/* the same as of synced */
	EVP_MD_CTX *mark;		/* the same before the record being appended */
	EVP_MD_CTX *sum_syncing;	/* the same as of the end a sync off the loop is at */
	uint64_t records_syncing;
	int unhashed;			/* resumed: sum and records not read back yet */
	struct cut cuts[CUTS_KEPT];	/* cut number n at n % CUTS_KEPT */
	uint64_t ncuts;
	int cut_errno;			/* why the last cut was made */
	ZSTD_CCtx *cctx;
	struct compressor *compressor;	/* NULL until a writer finishes, or none */
	int compressor_tried;
	struct seen *seen;
	size_t nseen, capseen;		/* open addressing, capseen a power of 2 */
	uint64_t appended, spool_seq;
	uint64_t segment_max;
	struct remote_side *rs;		/* segments on S3 too: pack_remote.c */
};

/* pack.c: the trailer, the seal recorded, the next segment. */
int pack_seal(struct pack_store *ps);

/* pack_remote.c, called by pack.c when PS->rs is set. */
int pack_remote_record(struct pack_store *ps);
int pack_remote_committed(struct pack_store *ps);
/* Segment SEG (file FD, SIZE bytes) was sealed: its object goes up. */
void pack_remote_sealed(struct pack_store *ps, int64_t seg, int fd, uint64_t size);
void pack_remote_free(struct pack_store *ps);

#endif

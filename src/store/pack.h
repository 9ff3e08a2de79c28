#ifndef EMAILVAULT_STORE_PACK_H
#define EMAILVAULT_STORE_PACK_H
/*
 * The pack store: messages appended, each compressed with zstd (or raw
 * when that is smaller), to large append-only segment files
 * DATA/packs/<id>.seg that are sealed when full and never rewritten.
 * archive.db maps each message's SHA-256 to (segment, offset, length,
 * codec) and records how far each segment is committed.
 *
 * Durability: a message's bytes are appended as soon as they have arrived;
 * before a batch's transaction, pack_store_sync makes every appended byte
 * durable (one fdatasync), and the transaction records the messages and the
 * segment's committed length (pack_store_record). After a crash the bytes
 * past the committed length are cut off when the store opens: nothing a
 * record names is ever lost, and nothing half-written is ever named.
 *
 * Identical bytes are stored once: a message whose hash is already stored
 * (in archive.db, or appended since the store opened) is not appended.
 *
 * Segment file: "EVSEG001" and the segment id (8 bytes, little endian),
 * then records, then, once sealed, a trailer: "EVEND001", the number of
 * records (8 bytes) and the SHA-256 of every byte before the trailer.
 * Record: "EVM1", codec (1 byte: 0 raw, 1 zstd), 3 zero bytes, raw length
 * (8), stored length (8), SHA-256 of the raw bytes (32), then the stored
 * bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#define PACK_SEGMENT_MAX	((uint64_t)64 << 20)	/* sealed once this big */
#define PACK_HEAD_MAX		(256 * 1024)	/* first bytes kept for header parsing */
#define PACK_HEADER		16		/* segment header */
#define PACK_RECORD_HEADER	56
#define PACK_TRAILER		48

enum pack_codec { PACK_RAW = 0, PACK_ZSTD = 1 };

struct pack_location {
	int64_t segment;
	uint64_t offset;		/* of the record header */
	uint64_t length;		/* stored bytes after the header */
	int codec;
	uint64_t epoch;			/* the store's cuts when appended (pack_store_check) */
};

#define PACK_COMMITTED	UINT64_MAX	/* epoch of a location read from archive.db */

struct pack_store;
struct pack_writer;

/* Opens DATA/packs with DB (archive.db, read-write), cutting an open
 * segment back to its committed length. NULL with ERR. */
struct pack_store *pack_store_open(const char *data_dir, sqlite3 *db, char *err, size_t errlen);
void pack_store_close(struct pack_store *ps);
const char *pack_store_dir(const struct pack_store *ps);

/* Makes everything appended so far durable. 0, or -1 with errno: then
 * the bytes appended since the last sync that succeeded are cut off (a
 * failed fdatasync may have lost them, and a second one would not say
 * so), and every location naming them fails pack_store_check. */
int pack_store_sync(struct pack_store *ps);
/* Before recording LOC, after pack_store_sync: 0 when its bytes are still
 * there, or -1 with errno (the failure that cut them off: fetch it again). */
int pack_store_check(const struct pack_store *ps, const struct pack_location *loc);
/* The same in two halves, for an fdatasync off the loop: what is not
 * durable yet (a dup of the open segment's fd for the caller to sync and
 * close, its id, and the length to be durable once that sync is done).
 * 1 when everything is durable already, 0, or -1 with errno. */
int pack_store_sync_begin(struct pack_store *ps, int *fd, int64_t *seg, uint64_t *end);
/* That fdatasync is over: SEG is durable up to END, or (ERR, its errno)
 * the tail since the last good sync is cut off as pack_store_sync does. */
void pack_store_sync_end(struct pack_store *ps, int64_t seg, uint64_t end, int err);
/* The open segment is at its size: the next sync seals it (on the loop). */
int pack_store_full(const struct pack_store *ps);
/* Inside the transaction after pack_store_sync: the segment's new
 * committed length. 0, or -1 (database error). */
int pack_store_record(struct pack_store *ps);
/* After that transaction committed: seals the segment if it is full and
 * opens the next one. 0, or -1 with errno (the seal, or opening the next
 * segment, is tried again later: nothing is appended to a sealed one). */
int pack_store_committed(struct pack_store *ps);
/* Segments are sealed once this big (default PACK_SEGMENT_MAX; tests). */
void pack_store_set_segment_max(struct pack_store *ps, uint64_t bytes);
/* The open segment's id. */
int64_t pack_store_segment(const struct pack_store *ps);
/* Records appended since the store opened (crash injection, tests). */
uint64_t pack_store_appended(const struct pack_store *ps);

/* A message being received: hashed while it streams in, kept in memory
 * while small and compressed into a spool file once big. */
struct pack_writer *pack_writer_new(struct pack_store *ps);
/* The size the message will have (an IMAP literal's): room for it at
 * once when it is kept in memory. 0, or -1 (out of memory). */
int pack_writer_expect(struct pack_writer *w, uint64_t size);
int pack_writer_write(struct pack_writer *w, const void *data, size_t len);
/* No more bytes: the hash is final. */
int pack_writer_finish(struct pack_writer *w);
const char *pack_writer_hash(const struct pack_writer *w);
uint64_t pack_writer_size(const struct pack_writer *w);
/* The first bytes (up to PACK_HEAD_MAX), for parsing the header block:
 * the message's own buffer while it is in memory, a copy once spooled. */
const char *pack_writer_head(const struct pack_writer *w, size_t *len);
/* Frees a spooled message's copy of its head (after running the work
 * pack_writer_also asked for, if it has not run yet). */
void pack_writer_drop_head(struct pack_writer *w);
/* Before finish: FN (the header parse) is to run over the head, on the
 * compressor's thread beside the compression when the message goes there,
 * else on the caller's when needed. FREE frees a result never taken. */
void pack_writer_also(struct pack_writer *w, void *(*fn)(const void *head, size_t len),
    void (*free_fn)(void *));
/* FN's result, waiting for the thread if it has it: the caller's to free. */
void *pack_writer_also_result(struct pack_writer *w);
/* Appends the finished message to the open segment, unless identical bytes
 * are stored already (*EXISTED = 1). *LOC tells where its bytes are, for
 * the record; with *EXISTED and an old-layout copy, LOC->segment is -1.
 * 0, or -1 with errno. */
int pack_writer_store(struct pack_writer *w, int *existed, struct pack_location *loc);
/* The same without looking for a stored copy: for moving a message of the
 * old layout, whose own record says it is not packed yet. */
int pack_writer_append(struct pack_writer *w, struct pack_location *loc);
void pack_writer_free(struct pack_writer *w);

/* ---- segments on S3 (pack_remote.c, docs/storage.md) ------------------ */

struct remote;

/* From now on what batches append is uploaded to R before they commit;
 * sealed segments go up whole. Also finishes what a crash interrupted
 * (sealed segments not uploaded yet). 0, or -1 with ERR. */
int pack_store_set_remote(struct pack_store *ps, struct remote *r, char *err, size_t errlen);
int pack_store_is_remote(const struct pack_store *ps);
/* This store's run: how many times it was opened with a remote. */
int64_t pack_store_run(const struct pack_store *ps);

/* Called with NULL once what pack_store_durable was asked for is stored
 * (for a remote store: uploaded), else with why not. */
typedef void (*pack_durable_fn)(void *ud, const char *error);
/* A local store: pack_store_sync. On S3: uploads what is durable on the
 * disk (after pack_store_sync or pack_store_sync_end), never the unsynced
 * tail a failed sync may cut off. 0 it is stored already (commit now), 1
 * DONE will be called from the loop (*TICKET names the wait), -1 errno. */
int pack_store_durable(struct pack_store *ps, pack_durable_fn done, void *ud, uint64_t *ticket);
/* The wait TICKET ends without its DONE being called. */
void pack_store_durable_cancel(struct pack_store *ps, uint64_t ticket);
/* Uploads in flight or waiting. */
int pack_store_uploading(const struct pack_store *ps);

/* ---- reading ----------------------------------------------------------- */

struct pack_dctx;

/* The bytes of the record at LOC of segment file DIR/<segment>.seg (FD
 * open on it), checked against HASH and RAW_SIZE: a malloc'd buffer, NUL
 * terminated. 0, or -1 with errno (EIO: the bytes are not what the record
 * says; ENODATA: the segment ends before the record). */
int pack_read(int fd, const struct pack_location *loc, const char *hash, uint64_t raw_size,
    struct pack_dctx *dctx, char **data, size_t *len);
/* A decompression context for pack_read to use again and again (NULL
 * there: one for that read alone). Creating one per message was 2-3 % of
 * reindex's CPU. One thread at a time. */
struct pack_dctx *pack_dctx_new(void);
void pack_dctx_free(struct pack_dctx *d);
/* The same in chunks, for a message too big to hold (the IMAP view's
 * BODY[]): pack_stream_read gives up to CAP raw bytes, 0 at the end once
 * the whole message hashed to HASH, -1 with errno (EIO: it did not; the
 * bytes already given are then not the message). The stream keeps its own
 * descriptor. */
struct pack_stream;
struct pack_stream *pack_stream_open(int fd, const struct pack_location *loc, const char *hash,
    uint64_t raw_size);
ssize_t pack_stream_read(struct pack_stream *s, void *buf, size_t cap);
void pack_stream_close(struct pack_stream *s);
/* DIR/<segment>.seg into BUF. */
void pack_segment_path(const char *dir, int64_t segment, char *buf, size_t len);

#endif

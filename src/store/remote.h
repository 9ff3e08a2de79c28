#ifndef EMAILVAULT_STORE_REMOTE_H
#define EMAILVAULT_STORE_REMOTE_H
/*
 * The pack store's segments on S3-compatible object storage
 * (docs/storage.md, "Segments on S3"). The local segment files stay the
 * write-ahead and a cache; what a batch appended is uploaded, before its
 * transaction commits, as an immutable object
 *     PREFIX<engine id>/seg/<segment>/<offset hex>-<run>
 * (a "segment part": the bytes [offset, offset+length) of the segment), and
 * a sealed segment as one object PREFIX<engine id>/seg/<segment>.seg, after
 * which its parts are deleted. The engine id is random, made once and kept
 * in archive.db, so engines sharing a bucket and a prefix never name the
 * same object; <run> counts the store's opens, so a part re-uploaded after
 * a crash never has the name of one that crash left behind.
 *
 * Uploads run on a thread of their own with the blocking client
 * (s3/client.c); their ends come back to the event loop through a pipe, so
 * the loop never waits on the network. Reads of a segment that is not on
 * the disk (evicted from the bounded cache, or never there) fetch the whole
 * segment into DATA/packs on the reading thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <sqlite3.h>

#include "s3/client.h"

struct event_base;
struct remote;

struct remote_config {
	struct s3_config s3;		/* strings are copied */
	int64_t cache_bytes;		/* local segment files kept; < 0: 1 GiB */
	uint64_t segment_max;		/* segments sealed at this size; 0: the default */
};

/* Opens the remote side of the archive DB (read-write): the engine id
 * (made on first use), the bucket checked with these keys. BASE is the
 * event loop (NULL offline: no uploads then). NULL with ERR (a message for
 * people; KIND "storage" or a network kind). */
struct remote *remote_open(const struct remote_config *cfg, sqlite3 *db, struct event_base *base,
    struct s3_error *err);
void remote_close(struct remote *r);
/* At the end: waits (at most SECONDS) for the uploads in flight and runs
 * their ends, so what they stored is recorded. */
void remote_drain(struct remote *r, double seconds);
const char *remote_engine_id(const struct remote *r);
const char *remote_hostport(const struct remote *r);
const struct remote_config *remote_config(const struct remote *r);

/* The process's remote (set by whoever opened it), for readers. */
void remote_set_current(struct remote *r);
struct remote *remote_current(void);

/* Object keys (relative to the prefix) into BUF. */
void remote_part_key(const struct remote *r, int64_t seg, uint64_t offset, int64_t run, char *buf,
    size_t len);
void remote_segment_key(const struct remote *r, int64_t seg, char *buf, size_t len);

/* ---- uploads (event loop thread) ---------------------------------------- */

/* DONE runs on the loop with ERR NULL once the object is stored (200 and
 * the expected ETag), else with what went wrong. */
typedef void (*remote_done_fn)(void *ud, const struct s3_error *err);
/* Uploads FD's bytes [OFF, OFF+LEN) as KEY; the caller made them durable
 * on the disk first (the upload does not sync). FD is duplicated. IF_NONE_MATCH for parts (immutable). 0, or -1 (ENOMEM). */
int remote_upload(struct remote *r, int fd, uint64_t off, uint64_t len, const char *key,
    int if_none_match, remote_done_fn done, void *ud);
/* Deletes KEY in the background (a failure is logged; the sweep retries). */
int remote_delete_later(struct remote *r, const char *key);
/* Uploads waiting or running. */
int remote_busy(const struct remote *r);

/* ---- reading (any thread, blocking) ------------------------------------- */

/* Segment SEG into the local file PATH (written to PATH.tmp, renamed): its
 * sealed object, or its parts named in DB in order. 0, or -1 with ERR. */
int remote_fetch_segment(struct remote *r, sqlite3 *db, int64_t seg, const char *path,
    struct s3_error *err);

/* ---- moving an archive (offline, blocking: store/remote_migrate.c) ------- */

struct store;
/* Every segment into S3 (sealed ones whole, the open one's committed bytes
 * as a part), each recorded once stored: an interrupted move goes on where
 * it stopped. Progress lines to OUT. 0, or -1 with ERR. */
int remote_migrate_to_s3(struct remote *r, struct store *s, FILE *out, char *err, size_t errlen);
/* Every segment back into the data folder (fetched where not there,
 * checked against its committed length and sealed checksum), then its
 * objects no longer named. 0, or -1 with ERR. */
int remote_migrate_to_local(struct remote *r, struct store *s, FILE *out, char *err,
    size_t errlen);
/* The blocking client of an offline remote (BASE NULL). */
struct s3_client *remote_client(struct remote *r);

/* ---- checking and sweeping (blocking: offline, or at start) -------------- */

/* Every object DB names exists with its size: FN for each one that does
 * not (or whose size differs). Returns the number of objects checked, or
 * -1 with ERR. */
typedef void (*remote_problem_fn)(void *ud, const char *key, const char *what);
long remote_verify(struct remote *r, sqlite3 *db, remote_problem_fn fn, void *ud,
    struct s3_error *err);
/* Deletes this engine's part objects from runs before RUN that DB does not
 * name (a crash between upload and commit left them). The number deleted,
 * or -1 with ERR. */
long remote_sweep(struct remote *r, sqlite3 *db, int64_t run, struct s3_error *err);

#endif

#ifndef EMAILVAULT_SYNC_ARCHIVE_H
#define EMAILVAULT_SYNC_ARCHIVE_H
/*
 * Archiving one folder's new messages over an open IMAP connection whose
 * folder is already EXAMINEd: the mechanism under lua/sync.lua.
 *
 * 1. UID FETCH last+1:* (UID RFC822.SIZE): which UIDs are new, and the
 *    totals for progress. One command, whatever the UIDs' spread.
 * 2. UID FETCH <batch> (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]) for
 *    each batch, pipelined by the client. Each body streams into a pack
 *    writer (the open segment + SHA-256) as it arrives; when its FETCH
 *    response is complete the filter decides, from the headers, whether it
 *    is kept.
 * 3. When a batch's tagged OK arrives it is queued; at the end of the loop's
 *    turn every queued batch (of any job) is committed together: one
 *    fdatasync of the open segment, then one SQLite transaction with a
 *    savepoint per batch records the messages, locations, skips and each
 *    folder's new last UID. A job's batches commit in order. That part is
 *    sync/commit.c.
 *
 * A crash at any point loses nothing (the folder's last UID only moves in
 * the transaction that records the messages) and duplicates nothing (messages
 * are named by content; locations are keyed by folder, UIDVALIDITY, UID).
 *
 * Nothing is skipped silently. A UID that was asked for but came back with
 * no body (left out, NIL, or refused with NO) is recorded as pending in the
 * same transaction: the folder's last UID may move past it because the
 * record says it is owed. Later passes (retry_pending) ask for it again;
 * after max_attempts passes it is recorded as skipped with the server's
 * reason, a WARN line and an event. A batch refused with NO is split in
 * halves until the refused messages are isolated, so one bad message does
 * not hold back the ones around it.
 */
#include <stddef.h>
#include <stdint.h>

#include "net/error.h"

struct event_base;
struct imap_client;
struct pack_store;
struct archive_db;
struct mime_headers;

struct archive_msg {
	const char *folder;
	uint32_t uid;
	uint64_t size;
	const char *flags;		/* "\\Seen \\Flagged" */
	int64_t internaldate;		/* -1 if unknown */
	const char *hash;
	struct mime_headers *headers;
};

struct archive_progress {
	uint64_t messages_total, bytes_total;	/* new on the server for this job */
	uint64_t messages_done, bytes_done;	/* committed (kept or skipped) */
	uint64_t archived, skipped, duplicates;	/* duplicates: bytes already stored */
	uint64_t pending;			/* not given this time: asked again later */
	uint32_t last_uid;			/* the folder's committed last UID */
};

struct archive_params {
	const char *source;
	const char *folder;
	uint32_t uidvalidity;
	uint32_t last_uid;		/* archive UIDs above this */
	int batch;			/* messages per FETCH and per transaction */
	uint64_t batch_bytes;		/* and at most these bytes (RFC822.SIZE); 0: no bound */
	int retry_pending;		/* ask again for the UIDs of pending */
	int max_attempts;		/* passes without a body before a UID is skipped */
	uint64_t exists;		/* messages in the folder: bounds the listing */
	struct pack_store *packs;
	struct archive_db *db;
	struct event_base *base;	/* the loop: batches commit at the end of its turn */
	void *ud;
	/* 1 keep, 0 skip, -1 error (REASON says why: the job fails, kind "hook"). */
	int (*filter)(void *ud, const struct archive_msg *m, char *reason, size_t rlen);
	/* After the batch holding M committed. */
	void (*on_message)(void *ud, const struct archive_msg *m, int kept);
	void (*on_progress)(void *ud, const struct archive_progress *p);
	/* Once: ERR NULL when every new message was archived or skipped. */
	void (*on_done)(void *ud, const struct archive_progress *p, const struct net_error *err);
};

struct archive_job;

/* Starts; NULL if the client is closed or out of memory. */
struct archive_job *archive_start(struct imap_client *c, const struct archive_params *p);
/* Frees a job after on_done was called. To abandon a running job, close
 * its client silently first (imap_client_close(c, 1)), then free it. */
void archive_free(struct archive_job *j);
/* At the engine's end, after every job was freed and before the loop's
 * base is: the commit thread stopped (a flush it runs is finished first). */
void archive_shutdown(void);

#endif

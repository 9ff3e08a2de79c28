#ifndef EMAILVAULT_SYNC_BATCH_H
#define EMAILVAULT_SYNC_BATCH_H
/*
 * What sync/archive.c (asking for batches and receiving their messages)
 * and sync/commit.c (making them durable and recording them, in groups)
 * share: a job, its batches and their messages. Not for other callers:
 * they use sync/archive.h.
 */
#include <stddef.h>
#include <stdint.h>

#include "imap/client.h"
#include "store/pack.h"
#include "sync/archive.h"

#define NO_BODY "the server returned no body for it"
/* Messages received but not yet appended, per job, while the compressor
 * thread works on them: enough that the loop seldom waits for it. */
#define HELD_MAX 16
#define HELD_BYTES (4u << 20)

/* One message of a batch, between its FETCH response and the commit. */
struct entry {
	int kept;			/* stored; 0 when the filter skipped it */
	int existed;			/* identical bytes were stored already */
	char hash[65];
	struct pack_location loc;	/* where its bytes are */
	uint32_t uid;
	uint64_t size;
	char *flags;
	int64_t internaldate;
	struct mime_headers *headers;
	char *skip_reason;		/* non-NULL: skipped */
	struct entry *next;
};

struct batch {
	struct archive_job *job;
	uint32_t max_uid;		/* the folder's last UID once it commits */
	uint32_t *uids;			/* what was asked for, ascending, distinct */
	size_t nuids;
	unsigned char *got;		/* per UID: a body (or a filter skip) came */
	char **why;			/* per UID: what the server said instead */
	struct pack_writer *cur;	/* the body streaming now */
	int discarding;			/* the job failed: bytes go nowhere */
	char *refused;			/* the tagged NO, when the server refused */
	struct entry *head, *tail;
	struct batch *next;
	struct batch *rnext;		/* in the queue of batches to commit */
};

struct uid_size {
	uint32_t uid;
	uint64_t size;
};

struct archive_job {
	struct imap_client *client;
	struct archive_params p;
	char *source, *folder;
	struct uid_size *todo;
	size_t ntodo, captodo;
	size_t max_listed;		/* distinct new UIDs the folder can hold */
	struct batch *batches;		/* in command order */
	int pending;			/* commands not yet answered */
	int queued;			/* answered batches waiting for the commit */
	int failed, done;
	struct held {			/* received, appended a few messages later */
		struct entry *e;
		struct pack_writer *w;
	} held[HELD_MAX];		/* oldest first */
	int nheld;
	uint64_t held_bytes;
	struct net_error err;
	struct archive_progress prog;
};

/* A UID of the batch that came back without a body, and what became of
 * it in the transaction. */
enum missing_fate { MISSING_SPLIT, MISSING_PENDING, MISSING_SKIPPED };

struct missing {
	uint32_t uid;
	enum missing_fate fate;
	int attempts;
	const char *why;
};

/* sync/archive.c */
void free_batch(struct batch *b);
void maybe_finish(struct archive_job *j);
void job_fail(struct archive_job *j, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void storage_fail(struct archive_job *j, const char *what);
void message_of(struct archive_job *j, const struct entry *e, struct archive_msg *m);
void split_batch(struct archive_job *j, const struct missing *missing, size_t n);
void crash_point_commit(const struct archive_job *j);

/* sync/commit.c */
void commit_queue(struct batch *b);		/* its commands were answered */
void commit_forget_job(struct archive_job *j);	/* its queued batches go */
void commit_shutdown(void);

#endif

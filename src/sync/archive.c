#include "sync/archive.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "imap/client.h"
#include "imap/format.h"
#include "log.h"
#include "mime/headers.h"
#include "store/pack.h"
#include "store/db.h"
#include "store/syncer.h"

#define UIDSET_MAX 4000		/* bytes of one command's UID set */
#define LISTING_SLACK 10000	/* new mail that may arrive while a folder is listed */
#define NO_BODY "the server returned no body for it"

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
	struct net_error err;
	struct archive_progress prog;
};

/* Crash injection for the recovery tests: abort after N commits, or after
 * N messages were stored (appended, not yet committed). */
static long crash_after_batches = -1, crash_after_blobs = -1;
static long commits_so_far, blobs_so_far;

static void
read_crash_env(void)
{
	static int read;
	const char *s;

	if (read)
		return;
	read = 1;
	if ((s = getenv("EMAILVAULT_CRASH_AFTER_BATCHES")) && *s)
		crash_after_batches = strtol(s, NULL, 10);
	if ((s = getenv("EMAILVAULT_CRASH_AFTER_BLOBS")) && *s)
		crash_after_blobs = strtol(s, NULL, 10);
}

static void
free_entry(struct entry *e)
{
	free(e->flags);
	if (e->headers)
		mime_headers_free(e->headers);
	free(e->skip_reason);
	free(e);
}

static void
free_batch(struct batch *b)
{
	struct entry *e, *next;

	for (e = b->head; e; e = next) {
		next = e->next;
		free_entry(e);
	}
	pack_writer_free(b->cur);
	if (b->why)
		for (size_t i = 0; i < b->nuids; i++)
			free(b->why[i]);
	free(b->why);
	free(b->got);
	free(b->refused);
	free(b->uids);
	free(b);
}

/* The position of UID in the batch, or -1. */
static long
batch_index(const struct batch *b, uint32_t uid)
{
	size_t lo = 0, hi = b->nuids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (b->uids[mid] == uid)
			return (long)mid;
		if (b->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* A batch asking for N UIDS (ascending, distinct); NULL when out of memory. */
static struct batch *
batch_new(struct archive_job *j, const uint32_t *uids, size_t n)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (b == NULL)
		return NULL;
	b->job = j;
	b->uids = malloc(n * sizeof(*b->uids));
	b->got = calloc(n, 1);
	if (b->uids == NULL || b->got == NULL) {
		free_batch(b);
		return NULL;
	}
	memcpy(b->uids, uids, n * sizeof(*b->uids));
	b->nuids = n;
	b->max_uid = uids[n - 1];
	return b;
}

static void
note_why(struct batch *b, long i, const char *why)
{
	if (i < 0)
		return;
	if (b->why == NULL && (b->why = calloc(b->nuids, sizeof(*b->why))) == NULL)
		return;
	free(b->why[i]);
	b->why[i] = strdup(why);
}

static void
job_fail(struct archive_job *j, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
job_fail(struct archive_job *j, const char *kind, const char *fmt, ...)
{
	va_list ap;

	if (j->failed)
		return;
	j->failed = 1;
	snprintf(j->err.kind, sizeof(j->err.kind), "%s", kind);
	va_start(ap, fmt);
	vsnprintf(j->err.message, sizeof(j->err.message), fmt, ap);
	va_end(ap);
}

/* A storage failure, said the way people act on it: a full disk names
 * itself. */
static void
storage_fail(struct archive_job *j, const char *what)
{
	int e = errno;

	if (e == ENOSPC || e == EDQUOT)
		job_fail(j, "storage", "%s: the disk holding %s is full (%s); free some space: "
		    "archiving goes on by itself then", what, pack_store_dir(j->p.packs), strerror(e));
	else
		job_fail(j, "storage", "%s in %s: %s", what, pack_store_dir(j->p.packs), strerror(e));
}

/* Why archive.db refused, into BUF: taken before any rollback, whose own
 * message would replace SQLite's ("no transaction is active" after a
 * COMMIT that failed on a full disk and rolled back by itself). */
static void
db_failure(struct archive_db *db, char *buf, size_t len)
{
	sqlite3 *h = db_handle(db);
	int code = sqlite3_errcode(h) & 0xff;
	const char *path = sqlite3_db_filename(h, "main");

	if (code == SQLITE_FULL)
		snprintf(buf, len, "cannot record messages in archive.db: the disk holding %s is "
		    "full (%s); free some space: archiving goes on by itself then",
		    path && *path ? path : "archive.db", sqlite3_errmsg(h));
	else
		snprintf(buf, len, "cannot record messages in archive.db: %s", sqlite3_errmsg(h));
}

/* A failed sync (of this group or an earlier one) may have cut off bytes
 * an entry of B names: then B is not recorded (its UIDs are fetched
 * again), and errno says why. */
static int
batch_cut_off(const struct batch *b, const struct pack_store *ps)
{
	for (const struct entry *e = b->head; e; e = e->next)
		if (e->kept && pack_store_check(ps, &e->loc) < 0)
			return 1;
	return 0;
}

/* Reports the end once every command has been answered. */
static void
maybe_finish(struct archive_job *j)
{
	if (j->done || j->pending > 0 || j->queued > 0)
		return;
	j->done = 1;
	j->p.on_done(j->p.ud, &j->prog, j->failed ? &j->err : NULL);
}

/* ---- reading FETCH responses ------------------------------------------- */

static uint32_t
fetch_uid(const struct imap_response *r)
{
	const struct imap_node *n = imap_fetch_item(r, "UID");
	uint32_t uid = 0;

	if (n)
		imap_node_u32(n, &uid);
	return uid;
}

/* FLAGS (\Seen $Label) as "\Seen $Label". */
static char *
fetch_flags(const struct imap_response *r)
{
	const struct imap_node *list = imap_fetch_item(r, "FLAGS");
	size_t total = 1, o = 0;
	char *s;

	if (list == NULL)
		return strdup("");
	for (const struct imap_node *n = imap_node_child(list); n; n = imap_node_next(n)) {
		size_t len;
		if (imap_node_bytes(n, &len))
			total += len + 1;
	}
	s = malloc(total);
	if (s == NULL)
		return NULL;
	for (const struct imap_node *n = imap_node_child(list); n; n = imap_node_next(n)) {
		size_t len;
		const char *b = imap_node_bytes(n, &len);
		if (b == NULL)
			continue;
		if (o)
			s[o++] = ' ';
		memcpy(s + o, b, len);
		o += len;
	}
	s[o] = '\0';
	return s;
}

static int
cmp_uid(const void *a, const void *b)
{
	uint32_t x = ((const struct uid_size *)a)->uid, y = ((const struct uid_size *)b)->uid;

	return x < y ? -1 : x > y;
}

/* Sorts the list and drops repeated UIDs (a server may list one twice). */
static void
compact_todo(struct archive_job *j)
{
	size_t o = 0;

	if (j->ntodo == 0)
		return;		/* todo may still be NULL */
	qsort(j->todo, j->ntodo, sizeof(*j->todo), cmp_uid);
	for (size_t i = 0; i < j->ntodo; i++) {
		if (o > 0 && j->todo[o - 1].uid == j->todo[i].uid) {
			if (j->todo[i].size > j->todo[o - 1].size)
				j->todo[o - 1].size = j->todo[i].size;
			continue;
		}
		j->todo[o++] = j->todo[i];
	}
	j->ntodo = o;
}

static int
todo_add(struct archive_job *j, uint32_t uid, uint64_t size)
{
	if (j->ntodo == j->captodo) {
		/* Memory stays bounded by what the folder can hold, however
		 * many lines the server sends: compact before growing. */
		if (j->captodo >= 2 * j->max_listed) {
			compact_todo(j);
			if (j->ntodo > j->max_listed) {
				job_fail(j, "protocol", "%s listed more than %zu new messages in %s, which "
				    "holds %llu", imap_client_hostport(j->client), j->max_listed, j->folder,
				    (unsigned long long)j->p.exists);
				return -1;
			}
		}
	}
	if (j->ntodo == j->captodo) {
		size_t cap = j->captodo ? j->captodo * 2 : 1024;
		struct uid_size *grown = realloc(j->todo, cap * sizeof(*grown));
		if (grown == NULL) {
			job_fail(j, "storage", "out of memory listing the new messages of %s", j->folder);
			return -1;
		}
		j->todo = grown;
		j->captodo = cap;
	}
	j->todo[j->ntodo].uid = uid;
	j->todo[j->ntodo].size = size;
	j->ntodo++;
	return 0;
}

/* An untagged OK [UIDVALIDITY n] with another value while the folder is
 * being read: the UIDs asked for may now name other messages, so nothing
 * more of this job may be recorded under the UIDVALIDITY it started with.
 * Returns 1 when the job failed for it. */
static int
uidvalidity_changed(struct archive_job *j, const struct imap_response *r)
{
	uint64_t v;

	if (r->kind != IMAP_RESP_STATUS || r->code.id != IMAP_CODE_UIDVALIDITY ||
	    imap_code_u64(&r->code, &v) < 0 || v == j->p.uidvalidity)
		return 0;
	job_fail(j, "protocol", "the UIDVALIDITY of %s changed from %u to %llu while it was "
	    "read; what was fetched since is dropped and the folder is examined again", j->folder,
	    (unsigned)j->p.uidvalidity, (unsigned long long)v);
	return 1;
}

static void
sizes_untagged(void *ud, const struct imap_response *r)
{
	struct archive_job *j = ud;
	const struct imap_node *sz;
	uint32_t uid;
	uint64_t size = 0;

	if (uidvalidity_changed(j, r))
		return;
	if (r->kind != IMAP_RESP_DATA || r->kw != IMAP_KW_FETCH || j->failed)
		return;
	uid = fetch_uid(r);
	if (uid <= j->p.last_uid)	/* "n:*" always names the highest UID */
		return;
	sz = imap_fetch_item(r, "RFC822.SIZE");
	if (sz)
		imap_node_u64(sz, &size);
	todo_add(j, uid, size);
}

static int
body_begin(void *ud, const struct imap_literal_info *li)
{
	struct batch *b = ud;
	struct archive_job *j = b->job;

	if (li->kw != IMAP_KW_FETCH || li->item_len != 6 || strncasecmp(li->item, "BODY[]", 6) != 0)
		return IMAP_LIT_INLINE;
	if (j->failed) {
		/* Read past it: the connection stays usable for the retry. */
		b->discarding = 1;
		return IMAP_LIT_STREAM;
	}
	pack_writer_free(b->cur);
	b->cur = pack_writer_new(j->p.packs);
	if (b->cur == NULL || pack_writer_expect(b->cur, li->size) < 0) {
		job_fail(j, "storage", "out of memory receiving a message of %s", j->folder);
		return -1;
	}
	return IMAP_LIT_STREAM;
}

static int
body_data(void *ud, const char *data, size_t len)
{
	struct batch *b = ud;

	if (b->discarding)
		return 0;
	if (b->cur == NULL)
		return -1;
	if (pack_writer_write(b->cur, data, len) < 0) {
		storage_fail(b->job, "cannot spool a message");
		pack_writer_free(b->cur);	/* the rest of it is read and dropped */
		b->cur = NULL;
		b->discarding = 1;
	}
	return 0;
}

static int
body_end(void *ud)
{
	struct batch *b = ud;

	if (b->discarding) {
		b->discarding = 0;
		return 0;
	}
	if (b->cur && pack_writer_finish(b->cur) < 0) {
		/* The job fails; the connection stays usable for the retry. */
		storage_fail(b->job, "cannot spool a message");
		pack_writer_free(b->cur);
		b->cur = NULL;
	}
	return 0;
}

static void
message_of(struct archive_job *j, const struct entry *e, struct archive_msg *m)
{
	m->folder = j->folder;
	m->uid = e->uid;
	m->size = e->size;
	m->flags = e->flags ? e->flags : "";
	m->internaldate = e->internaldate;
	m->hash = e->hash[0] ? e->hash : NULL;
	m->headers = e->headers;
}

/* A body sent as a quoted string or an inline literal: stored like a
 * streamed one. NULL on failure (the job failed). */
static struct pack_writer *
inline_body(struct archive_job *j, const struct imap_node *body)
{
	size_t len;
	const char *bytes = imap_node_bytes(body, &len);
	struct pack_writer *w = pack_writer_new(j->p.packs);

	if (w == NULL || pack_writer_write(w, bytes ? bytes : "", bytes ? len : 0) < 0 ||
	    pack_writer_finish(w) < 0) {
		storage_fail(j, "cannot spool a message");
		pack_writer_free(w);
		return NULL;
	}
	return w;
}

/* The body of one of the batch's UIDs arrived complete in W: keep it as an
 * entry, unless the filter says skip. W is owned from here on. */
/* The batch that asked for UID. A server may answer pipelined commands'
 * data before the earlier ones complete (RFC 3501 5.5), and the client
 * routes untagged data to the oldest command: ownership goes by UID. */
static struct batch *
owner_of(struct archive_job *j, uint32_t uid, long *idx)
{
	for (struct batch *b = j->batches; b; b = b->next)
		if ((*idx = batch_index(b, uid)) >= 0)
			return b;
	return NULL;
}

static void
add_message(struct archive_job *j, const struct imap_response *r, uint32_t uid,
    struct pack_writer *w)
{
	long i;
	struct batch *b = owner_of(j, uid, &i);
	struct entry *e;
	struct archive_msg m;
	const struct imap_node *n;
	char reason[512] = "";
	size_t hlen;
	const char *head;

	/* Not asked for (or a repeat): not ours to record. */
	if (b == NULL || b->got[i]) {
		pack_writer_free(w);
		return;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		pack_writer_free(w);
		job_fail(j, "storage", "out of memory");
		return;
	}
	e->kept = 1;
	e->uid = uid;
	e->size = pack_writer_size(w);
	snprintf(e->hash, sizeof(e->hash), "%s", pack_writer_hash(w));
	e->flags = fetch_flags(r);
	n = imap_fetch_item(r, "INTERNALDATE");
	if (n == NULL || imap_parse_internaldate(imap_node_bytes(n, &hlen), &e->internaldate) < 0)
		e->internaldate = -1;
	head = pack_writer_head(w, &hlen);
	e->headers = mime_headers_parse(head ? head : "", hlen);
	pack_writer_drop_head(w);	/* a batch would hold 256 KiB per message */
	if (j->p.filter) {
		message_of(j, e, &m);
		int keep = j->p.filter(j->p.ud, &m, reason, sizeof(reason));
		if (keep < 0) {
			job_fail(j, "hook", "%s", reason);
			pack_writer_free(w);
			free_entry(e);
			return;
		}
		if (keep == 0) {
			e->skip_reason = strdup(reason[0] ? reason : "filter");
			e->kept = 0;
		}
	}
	/* Stored now, not at the commit: the batch holds no message bytes,
	 * only where they are (or that they were stored already). */
	if (e->kept) {
		if (pack_writer_store(w, &e->existed, &e->loc) < 0) {
			storage_fail(j, "cannot store a message");
			pack_writer_free(w);
			free_entry(e);
			return;
		}
		if (!e->existed && crash_after_blobs >= 0 && ++blobs_so_far >= crash_after_blobs) {
			log_error(j->source, "crash injection: abort after %ld stored messages",
			    blobs_so_far);
			abort();
		}
	}
	pack_writer_free(w);
	b->got[i] = 1;
	if (b->tail)
		b->tail->next = e;
	else
		b->head = e;
	b->tail = e;
}

static void
body_untagged(void *ud, const struct imap_response *r)
{
	struct batch *b = ud;
	struct archive_job *j = b->job;
	const struct imap_node *body;
	struct pack_writer *w;
	uint32_t uid;

	if (uidvalidity_changed(j, r))
		return;
	if (r->kind != IMAP_RESP_DATA || r->kw != IMAP_KW_FETCH || j->failed)
		return;
	uid = fetch_uid(r);
	body = imap_fetch_item(r, "BODY[]");
	w = b->cur;		/* streamed literal */
	b->cur = NULL;
	if (w == NULL && body && (imap_node_type(body) == IMAP_NODE_QUOTED ||
	    imap_node_type(body) == IMAP_NODE_LITERAL)) {
		if ((w = inline_body(j, body)) == NULL)
			return;
	}
	if (w == NULL) {
		/* NIL is a legal answer that gives nothing; a FETCH without
		 * BODY[] is a flags update (the body may still come). */
		long i;
		struct batch *owner = body && imap_node_type(body) == IMAP_NODE_NIL ?
		    owner_of(j, uid, &i) : NULL;
		if (owner)
			note_why(owner, i, "the server sent NIL instead of the message");
		return;
	}
	if (uid == 0) {
		pack_writer_free(w);	/* whose? asked again later */
		return;
	}
	add_message(j, r, uid, w);
}

/* ---- committing a batch ------------------------------------------------ */

/* A UID of the batch that came back without a body, and what became of
 * it in the transaction. */
enum missing_fate { MISSING_SPLIT, MISSING_PENDING, MISSING_SKIPPED };

struct missing {
	uint32_t uid;
	enum missing_fate fate;
	int attempts;
	const char *why;
};

static const char *
missing_reason(const struct batch *b, size_t i)
{
	if (b->why && b->why[i])
		return b->why[i];
	if (b->refused)
		return b->refused;
	return NO_BODY;
}

/* Records what the batch asked for but did not get: pending (asked again
 * on the next pass), or skipped once it has failed max_attempts passes. A
 * refused batch of more than one UID is split instead of counting an
 * attempt, so the messages the server will give are not held back. */
static int
record_missing(struct archive_job *j, struct batch *b, struct missing *out, size_t *nout)
{
	struct archive_db *db = j->p.db;
	size_t nmissing = 0;
	int split;

	for (size_t i = 0; i < b->nuids; i++)
		nmissing += !b->got[i];
	split = b->refused != NULL && nmissing > 1;
	*nout = 0;
	for (size_t i = 0; i < b->nuids; i++) {
		struct missing *m;
		if (b->got[i])
			continue;
		m = &out[(*nout)++];
		m->uid = b->uids[i];
		m->why = missing_reason(b, i);
		m->attempts = db_pending_note(db, j->source, j->folder, j->p.uidvalidity, m->uid,
		    !split, m->why);
		if (m->attempts < 0)
			return -1;
		if (split) {
			m->fate = MISSING_SPLIT;
		} else if (m->attempts >= j->p.max_attempts) {
			char reason[700], detail[900];
			m->fate = MISSING_SKIPPED;
			snprintf(reason, sizeof(reason), "%s (asked %d times)", m->why, m->attempts);
			snprintf(detail, sizeof(detail), "%s: UID %u: %s", j->folder, m->uid, reason);
			if (db_pending_delete(db, j->source, j->folder, j->p.uidvalidity, m->uid) < 0 ||
			    db_skip_add(db, j->source, j->folder, j->p.uidvalidity, m->uid, 0, reason) < 0 ||
			    db_event_add(db, j->source, "skipped", detail) < 0)
				return -1;
		} else {
			m->fate = MISSING_PENDING;
		}
	}
	return 0;
}

/* Records batch B inside the open transaction: its messages, locations,
 * skips, what did not come, the folder's new last UID. 0, or -1 (the
 * caller rolls back to the batch's savepoint). */
static int
record_batch(struct archive_job *j, struct batch *b, struct missing *missing, size_t *nmissing)
{
	struct archive_db *db = j->p.db;
	struct entry *e;

	for (e = b->head; e; e = e->next) {
		if (db_pending_delete(db, j->source, j->folder, j->p.uidvalidity, e->uid) < 0)
			return -1;
		if (!e->kept) {
			if (db_skip_add(db, j->source, j->folder, j->p.uidvalidity, e->uid, e->size,
			    e->skip_reason) < 0)
				return -1;
			continue;
		}
		struct db_message m;
		memset(&m, 0, sizeof(m));
		m.hash = e->hash;
		m.size = e->size;
		/* A copy appended earlier (by a batch that then failed) has no
		 * record yet: this one names it. One with a record is kept as
		 * it is (ON CONFLICT). */
		if (e->loc.segment > 0) {
			m.pack_segment = e->loc.segment;
			m.pack_offset = e->loc.offset;
			m.pack_length = e->loc.length;
			m.pack_codec = e->loc.codec;
		}
		m.date_unix = -1;
		m.sort_date = -1;
		if (e->headers) {
			m.subject = mime_headers_subject(e->headers);
			m.from = mime_headers_from(e->headers);
			m.to = mime_headers_to(e->headers);
			m.cc = mime_headers_cc(e->headers);
			m.date = mime_headers_date(e->headers);
			m.date_unix = mime_headers_date_unix(e->headers);
			m.message_id = mime_headers_message_id(e->headers);
			m.from_addrs = mime_headers_from_addrs(e->headers);
			m.to_addrs = mime_headers_to_addrs(e->headers);
		}
		/* Search by date works before the indexer has seen it: the
		 * Date header when sane, else when the server got it. */
		m.sort_date = db_date_sane(m.date_unix) ? m.date_unix : e->internaldate;
		if (db_message_add(db, &m, NULL) < 0 ||
		    db_location_add(db, j->source, j->folder, j->p.uidvalidity, e->uid, m.hash,
		    e->flags, e->internaldate) < 0)
			return -1;
	}
	if (record_missing(j, b, missing, nmissing) < 0)
		return -1;
	return db_folder_set_progress(db, j->source, j->folder, b->max_uid);
}

static int send_batch(struct archive_job *j, const uint32_t *uids, size_t n);

/* Response codes of a NO that are about the server or the account, not
 * about some messages: splitting the batch would only hammer the server. */
static int
refusal_is_general(const struct imap_response *r)
{
	static const char *const codes[] = { "UNAVAILABLE", "THROTTLED", "LIMIT", "INUSE",
		"OVERQUOTA", "NOPERM", "AUTHORIZATIONFAILED", "PRIVACYREQUIRED", "CONTACTADMIN",
		"EXPIRED", NULL };

	if (r->code.name == NULL)
		return 0;
	for (int i = 0; codes[i]; i++)
		if (strcasecmp(r->code.name, codes[i]) == 0)
			return 1;
	return 0;
}

/* One of the job's commands ended: a lost connection, a BAD or a NO about
 * the server fails the job (the first reason wins). Returns the server's
 * text when it refused some messages with NO (the caller splits). */
static int
command_ended(struct archive_job *j, const struct imap_response *r, const struct net_error *err,
    int splittable, char *said, size_t saidlen)
{
	j->pending--;
	said[0] = '\0';
	if (err) {
		if (!j->failed) {
			j->failed = 1;
			j->err = *err;
		}
		return 0;
	}
	if (r->status == IMAP_STATUS_OK)
		return 0;
	imap_response_describe(r, said, saidlen);
	if (splittable && r->status == IMAP_STATUS_NO && !refusal_is_general(r))
		return 1;
	job_fail(j, "protocol", "UID FETCH in %s: the server said \"%s\"", j->folder, said);
	return 0;
}

/* After a batch committed: counters, log lines, the message callbacks. */
static void
report_batch(struct archive_job *j, struct batch *b, const struct missing *missing, size_t nmissing)
{
	struct archive_msg m;

	for (struct entry *e = b->head; e; e = e->next) {
		if (e->kept) {
			j->prog.archived++;
			if (e->existed)
				j->prog.duplicates++;
		} else {
			j->prog.skipped++;
			log_info(j->source, "message skipped folder=\"%s\" uid=%u size=%llu reason=\"%s\"",
			    j->folder, e->uid, (unsigned long long)e->size,
			    e->skip_reason ? e->skip_reason : "filter");
		}
		j->prog.messages_done++;
		j->prog.bytes_done += e->size;
		if (j->p.on_message) {
			message_of(j, e, &m);
			j->p.on_message(j->p.ud, &m, e->kept);
		}
	}
	for (size_t i = 0; i < nmissing; i++) {
		const struct missing *x = &missing[i];
		switch (x->fate) {
		case MISSING_SPLIT:
			break;
		case MISSING_PENDING:
			j->prog.pending++;
			log_warn(j->source, "message not received, asked again on the next pass "
			    "folder=\"%s\" uid=%u attempt=%d of=%d reason=\"%s\"", j->folder, x->uid,
			    x->attempts, j->p.max_attempts, x->why);
			break;
		case MISSING_SKIPPED:
			j->prog.skipped++;
			j->prog.messages_done++;
			log_warn(j->source, "message skipped folder=\"%s\" uid=%u attempts=%d "
			    "reason=\"%s\"", j->folder, x->uid, x->attempts, x->why);
			if (j->p.on_message) {
				memset(&m, 0, sizeof(m));
				m.folder = j->folder;
				m.uid = x->uid;
				m.flags = "";
				m.internaldate = -1;
				j->p.on_message(j->p.ud, &m, 0);
			}
			break;
		}
	}
	if (b->max_uid > j->prog.last_uid)
		j->prog.last_uid = b->max_uid;
	if (j->p.on_progress)
		j->p.on_progress(j->p.ud, &j->prog);
}

/* Asks for the UIDs of a refused batch that did not come, in two halves. */
static void
split_batch(struct archive_job *j, const struct missing *missing, size_t n)
{
	uint32_t *uids = malloc(n * sizeof(*uids));
	size_t half = (n + 1) / 2;

	if (uids == NULL) {
		job_fail(j, "storage", "out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++)
		uids[i] = missing[i].uid;
	log_info(j->source, "the server refused a batch: asking for its %zu missing messages in "
	    "smaller batches folder=\"%s\"", n, j->folder);
	if (send_batch(j, uids, half) < 0 || send_batch(j, uids + half, n - half) < 0)
		job_fail(j, "protocol", "the connection to %s closed", imap_client_hostport(j->client));
	free(uids);
}

/*
 * The commit. Batches whose commands were answered queue up; at the end of
 * the loop's turn (or once the group ahead is done) every queued batch,
 * whatever its source or folder, is committed as one group:
 *
 * 1. the open segment made durable: fdatasync on the syncer thread;
 *    for a store on S3 then those durable bytes uploaded as one part
 *    (answered 200 with their checksum: store/pack_remote.c), the loop
 *    going on meanwhile; a failed sync cuts the tail off before anything
 *    of it goes up, and a failed upload fails the group's jobs;
 * 2. on the loop, one transaction with a savepoint per batch (one that
 *    fails is undone alone and fails its job), committed without an fsync
 *    (synchronous = NORMAL);
 * 3. the WAL made durable: fdatasync on the syncer thread again;
 * 4. then the batches are reported (counters, hooks, the job's end).
 *
 * The order of writes is that of a batch committed alone: bytes durable,
 * then the records naming them, and nothing is said to be archived before
 * its records are durable. On a busy disk one fdatasync takes up to a
 * quarter of a second: on the loop, with fifty sources importing, the
 * control socket and every other source would wait behind each. When the
 * segment is full (it is sealed after the commit, which needs every byte
 * durable) or there is no thread, the group is committed on the loop as
 * before, with synchronous = FULL.
 */
struct group {
	struct batch **v;		/* NULL: a batch of a job abandoned meanwhile */
	size_t n;
	struct missing **missing;	/* per batch once recorded (NULL: not recorded) */
	size_t *nmissing;
	struct pack_store *ps;
	struct archive_db *db;
	struct event_base *base;
	int64_t seg;			/* step 1: the segment and length to be durable */
	uint64_t end;
	int on_loop;			/* step 2 on the loop (full segment, no thread) */
	int uploading;			/* step 1 on S3: waiting for the part (ticket) */
	uint64_t ticket;
};

static struct batch *ready_head, **ready_tail = &ready_head;
static int flush_scheduled;
static struct syncer *syncer;
static struct group *inflight;

static void schedule_flush(struct event_base *base);

static void
drop_batch(struct batch *b)
{
	struct archive_job *j = b->job;

	j->queued--;
	free_batch(b);
	maybe_finish(j);
}

static void
group_free(struct group *g)
{
	for (size_t i = 0; i < g->n; i++) {
		if (g->missing)
			free(g->missing[i]);
		if (g->v[i])
			drop_batch(g->v[i]);
	}
	free(g->missing);
	free(g->nmissing);
	free(g->v);
	free(g);
}

static void
group_fail(struct group *g, const char *what, const char *detail)
{
	for (size_t i = 0; i < g->n; i++)
		if (g->v[i])
			job_fail(g->v[i]->job, "storage", "%s%s", what, detail);
}

/* Step 4: the group's records are durable. */
static void
report_group(struct group *g)
{
	for (size_t i = 0; i < g->n; i++) {
		struct batch *b = g->v[i];
		struct archive_job *j;
		if (b == NULL || g->missing[i] == NULL)
			continue;	/* abandoned, or not recorded */
		j = b->job;
		if (crash_after_batches >= 0 && ++commits_so_far >= crash_after_batches) {
			log_error(j->source, "crash injection: abort after %ld batches", commits_so_far);
			abort();
		}
		report_batch(j, b, g->missing[i], g->nmissing[i]);
		if (!j->failed && g->nmissing[i] > 0 && g->missing[i][0].fate == MISSING_SPLIT)
			split_batch(j, g->missing[i], g->nmissing[i]);
	}
}

/* The group is over: its batches go, the next group may start. */
static void
group_done(struct group *g)
{
	struct event_base *base = g->base;

	if (inflight == g)
		inflight = NULL;
	group_free(g);
	if (ready_head)
		schedule_flush(base);
}

static void
wal_synced(void *ud, int err)
{
	struct group *g = ud;

	if (err) {
		errno = err;
		group_fail(g, "cannot make archive.db durable: ", strerror(err));
	} else {
		report_group(g);
	}
	group_done(g);
}

/* Step 2 (and 3 unless ON_LOOP): the transaction. With ON_LOOP the commit
 * waits for the disk. */
static void
commit_group(struct group *g, int on_loop)
{
	struct archive_db *db = g->db;
	int failed = 0, wal = -1;
	char why[512] = "";

	g->missing = calloc(g->n, sizeof(*g->missing));
	g->nmissing = calloc(g->n, sizeof(*g->nmissing));
	if (g->missing == NULL || g->nmissing == NULL) {
		group_fail(g, "out of memory", "");
		goto out;
	}
	if (!on_loop && (wal = db_wal_fd(db)) < 0)
		on_loop = 1;	/* no WAL to sync by hand: SQLite syncs it */
	if (!on_loop)
		db_synchronous(db, 0);
	if (db_begin(db) < 0) {
		db_failure(db, why, sizeof(why));
		failed = 1;
		goto out;
	}
	for (size_t i = 0; i < g->n; i++) {
		struct batch *b = g->v[i];
		struct archive_job *j;
		if (b == NULL)
			continue;
		j = b->job;
		/* A job that failed since (or on an earlier batch of this
		 * group) records nothing more: its later batches would move
		 * last_uid past what is not recorded. */
		if (j->failed)
			continue;
		if ((g->missing[i] = malloc(b->nuids * sizeof(**g->missing))) == NULL) {
			job_fail(j, "storage", "out of memory");
			continue;
		}
		if (batch_cut_off(b, g->ps)) {
			storage_fail(j, "cannot make the messages durable");
			free(g->missing[i]);
			g->missing[i] = NULL;
			continue;
		}
		if (db_savepoint(db) < 0 || record_batch(j, b, g->missing[i], &g->nmissing[i]) < 0) {
			char said[512];
			db_failure(db, said, sizeof(said));
			db_rollback_to(db);	/* after: it replaces the message */
			job_fail(j, "storage", "%s", said);
			free(g->missing[i]);
			g->missing[i] = NULL;
			continue;
		}
		if (db_release(db) < 0) {
			db_failure(db, why, sizeof(why));
			failed = 1;
			break;
		}
	}
	if (failed || pack_store_record(g->ps) < 0 || db_commit(db) < 0) {
		if (!failed)
			db_failure(db, why, sizeof(why));
		db_rollback(db);
		failed = 1;
		goto out;
	}
	/* on S3 the parts just recorded are forgotten as unrecorded then */
	if ((on_loop || pack_store_is_remote(g->ps)) && pack_store_committed(g->ps) < 0)
		log_warn(NULL, "cannot seal the full segment now (tried again after the next "
		    "batch): %s", strerror(errno));
out:
	if (wal >= 0 && !on_loop)
		db_synchronous(db, 1);
	if (failed)
		group_fail(g, why, "");
	if (!failed && wal >= 0 && g->missing) {
		if (syncer_start(syncer, wal, wal_synced, g) == 0)
			return;		/* step 3 */
		/* cannot happen (the group holds the syncer); be safe */
		if (fdatasync(wal) < 0)
			group_fail(g, "cannot make archive.db durable: ", strerror(errno));
		else
			report_group(g);
		close(wal);
	} else {
		if (wal >= 0)
			close(wal);
		if (!failed && g->missing)
			report_group(g);
	}
	group_done(g);
}

/* Step 1 on S3 is over: the durable bytes are in S3, or not. */
static void
group_uploaded(void *ud, const char *error)
{
	struct group *g = ud;

	g->uploading = 0;
	if (error) {
		group_fail(g, "cannot store the messages in S3: ", error);
		group_done(g);
		return;
	}
	commit_group(g, g->on_loop);
}

/* The segment is durable on the disk: for a store on S3 what that made
 * durable goes up before anything names it (step 1's second half). */
static void
upload_group(struct group *g, int on_loop)
{
	int rc;

	if (!pack_store_is_remote(g->ps)) {
		commit_group(g, on_loop);
		return;
	}
	g->on_loop = on_loop;
	rc = pack_store_durable(g->ps, group_uploaded, g, &g->ticket);
	if (rc == 1) {
		g->uploading = 1;
		return;
	}
	if (rc < 0) {
		for (size_t i = 0; i < g->n; i++)
			if (g->v[i])
				storage_fail(g->v[i]->job, "cannot store the messages in S3");
		group_done(g);
		return;
	}
	commit_group(g, on_loop);
}

/* Step 1 on the loop (a full segment, no thread, or the thread refused). */
static void
sync_on_loop(struct group *g)
{
	if (pack_store_sync(g->ps) < 0) {
		for (size_t i = 0; i < g->n; i++)
			if (g->v[i])
				storage_fail(g->v[i]->job, "cannot make the messages durable");
		group_done(g);
		return;
	}
	upload_group(g, 1);
}

/* Step 1's fdatasync is over. */
static void
segment_synced(void *ud, int err)
{
	struct group *g = ud;

	pack_store_sync_end(g->ps, g->seg, g->end, err);
	if (err) {
		errno = err;
		for (size_t i = 0; i < g->n; i++)
			if (g->v[i])
				storage_fail(g->v[i]->job, "cannot make the messages durable");
		group_done(g);
		return;
	}
	upload_group(g, 0);
}

static void
flush_ready(evutil_socket_t fd, short what, void *arg)
{
	struct event_base *base = arg;
	struct batch *b, **tail;
	struct group *g;
	size_t n = 0, k;
	int sfd, rc;

	(void)fd;
	(void)what;
	flush_scheduled = 0;
	if (ready_head == NULL || inflight != NULL)
		return;		/* the group in flight flushes again when done */
	if ((g = calloc(1, sizeof(*g))) == NULL)
		goto oom;
	/* The queued batches of the first one's store (the engine has one). */
	g->ps = ready_head->job->p.packs;
	g->db = ready_head->job->p.db;
	g->base = base;
	for (b = ready_head; b; b = b->rnext)
		n += b->job->p.db == g->db;
	if ((g->v = malloc(n * sizeof(*g->v))) == NULL) {
		free(g);
		goto oom;
	}
	for (k = 0, tail = &ready_head; (b = *tail) != NULL;) {
		if (b->job->p.db == g->db) {
			g->v[k++] = b;
			*tail = b->rnext;
		} else {
			tail = &b->rnext;
		}
	}
	ready_tail = tail;
	g->n = n;
	inflight = g;
	if (syncer == NULL)
		syncer = syncer_new(base);
	if (syncer == NULL || pack_store_full(g->ps)) {
		sync_on_loop(g);
		return;
	}
	rc = pack_store_sync_begin(g->ps, &sfd, &g->seg, &g->end);
	if (rc == 0 && syncer_start(syncer, sfd, segment_synced, g) == 0)
		return;
	if (rc == 0)
		close(sfd);
	if (rc == 1)
		upload_group(g, 0);	/* nothing to sync: on to the upload or step 2 */
	else
		sync_on_loop(g);
	return;
oom:
	while ((b = ready_head) != NULL) {
		ready_head = b->rnext;
		job_fail(b->job, "storage", "out of memory");
		drop_batch(b);
	}
	ready_tail = &ready_head;
}

static void
schedule_flush(struct event_base *base)
{
	static const struct timeval now = { 0, 0 };

	if (!flush_scheduled && event_base_once(base, -1, EV_TIMEOUT, flush_ready, base, &now) == 0)
		flush_scheduled = 1;
}

/* The batch's commands were answered: committed at the end of this turn
 * (or after the group ahead of it). */
static void
queue_commit(struct batch *b)
{
	struct archive_job *j = b->job;

	b->rnext = NULL;
	*ready_tail = b;
	ready_tail = &b->rnext;
	j->queued++;
	schedule_flush(j->p.base);
	if (!flush_scheduled && inflight == NULL)
		flush_ready(-1, 0, j->p.base);	/* no event: now rather than never */
}

/* A job abandoned with batches still queued: they go with it. */
static void
unqueue_job(struct archive_job *j)
{
	struct batch **pp = &ready_head;

	while (*pp) {
		struct batch *b = *pp;
		if (b->job == j) {
			*pp = b->rnext;
			free_batch(b);
		} else {
			pp = &b->rnext;
		}
	}
	ready_tail = &ready_head;
	while (*ready_tail)
		ready_tail = &(*ready_tail)->rnext;
	for (size_t i = 0; inflight && i < inflight->n; i++) {
		if (inflight->v[i] && inflight->v[i]->job == j) {
			free_batch(inflight->v[i]);
			inflight->v[i] = NULL;
		}
	}
	j->queued = 0;
}

static void
batch_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct batch *b = ud;
	struct archive_job *j = b->job;
	char said[600];

	if (command_ended(j, r, err, 1, said, sizeof(said)))
		b->refused = strdup(said);
	/* Batches must end in command order (tagged answers come in order on
	 * one connection); one that ends early would move last_uid past the
	 * messages of the batches before it. */
	if (j->batches != b) {
		job_fail(j, "protocol", "%s answered pipelined FETCH commands out of order; set "
		    "pipeline = 1 for this source", imap_client_hostport(j->client));
		for (struct batch **pp = &j->batches; *pp; pp = &(*pp)->next) {
			if (*pp == b) {
				*pp = b->next;
				break;
			}
		}
	} else {
		j->batches = b->next;
	}
	if (!j->failed) {
		queue_commit(b);	/* the job ends after its commit */
		return;
	}
	free_batch(b);
	maybe_finish(j);
}

/* Queues one UID FETCH for N UIDs (ascending, distinct, whose set fits). */
static int
send_batch(struct archive_job *j, const uint32_t *uids, size_t n)
{
	struct imap_handler h;
	struct batch **tail, *b;
	char set[UIDSET_MAX];
	size_t used, len;

	if (n == 0)
		return 0;
	if (imap_format_uidset(set, sizeof(set), uids, n, &used, &len) < 0 || used != n)
		return -1;
	if ((b = batch_new(j, uids, n)) == NULL)
		return -1;
	for (tail = &j->batches; *tail; tail = &(*tail)->next)
		;
	memset(&h, 0, sizeof(h));
	h.ud = b;
	h.on_untagged = body_untagged;
	h.literal_begin = body_begin;
	h.literal_data = body_data;
	h.literal_end = body_end;
	h.on_done = batch_done;
	*tail = b;
	j->pending++;
	if (imap_client_send(j->client, &h,
	    "UID FETCH %s (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", set) < 0) {
		j->pending--;
		*tail = NULL;
		free_batch(b);
		return -1;
	}
	return 0;
}

/* How many of the UIDs from OFF go in one command: at most p.batch, and
 * no more bytes (RFC822.SIZE) than p.batch_bytes, so a folder of big
 * messages is not asked for as hundreds of MiB in one transaction; a
 * message over the budget goes alone. */
static size_t
batch_take(const struct archive_job *j, size_t off)
{
	size_t batch = j->p.batch > 0 ? (size_t)j->p.batch : 200, n = 0;
	uint64_t bytes = 0;

	while (off + n < j->ntodo && n < batch) {
		uint64_t size = j->todo[off + n].size;
		if (n > 0 && j->p.batch_bytes > 0 && bytes + size > j->p.batch_bytes)
			break;
		bytes += size;
		n++;
	}
	return n;
}

/* The whole list in batches (batch_take) whose UID set fits in one
 * command. */
static int
send_batches(struct archive_job *j)
{
	uint32_t *uids;
	int rc = 0;

	if (j->ntodo == 0)
		return 0;
	uids = malloc(j->ntodo * sizeof(*uids));
	if (uids == NULL)
		return -1;
	for (size_t i = 0; i < j->ntodo; i++)
		uids[i] = j->todo[i].uid;
	for (size_t off = 0; off < j->ntodo && rc == 0;) {
		size_t take = batch_take(j, off), used, len;
		uint64_t bytes = 0;
		char set[UIDSET_MAX];

		if (imap_format_uidset(set, sizeof(set), uids + off, take, &used, &len) < 0 || used == 0) {
			rc = -1;
			break;
		}
		for (size_t i = 0; i < used; i++)
			bytes += j->todo[off + i].size;
		log_debug(j->source, "fetch batch folder=\"%s\" messages=%zu bytes=%llu", j->folder,
		    used, (unsigned long long)bytes);
		rc = send_batch(j, uids + off, used);
		off += used;
	}
	free(uids);
	return rc;
}

/* The UIDs earlier passes did not get, asked for again with the new ones. */
static int
add_pending(struct archive_job *j)
{
	uint32_t *uids;
	size_t n;

	if (db_pending_list(j->p.db, j->source, j->folder, j->p.uidvalidity, &uids, &n) < 0) {
		job_fail(j, "storage", "cannot read archive.db: %s", db_errmsg(j->p.db));
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (todo_add(j, uids[i], 0) < 0)
			break;
	free(uids);
	return j->failed ? -1 : 0;
}

static void
sizes_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct archive_job *j = ud;
	char said[600];

	command_ended(j, r, err, 0, said, sizeof(said));
	if (!j->failed && (!j->p.retry_pending || add_pending(j) == 0)) {
		compact_todo(j);
		j->prog.messages_total = j->ntodo;
		for (size_t i = 0; i < j->ntodo; i++)
			j->prog.bytes_total += j->todo[i].size;
		if (j->p.on_progress)
			j->p.on_progress(j->p.ud, &j->prog);
		if (send_batches(j) < 0)
			job_fail(j, "protocol", "the connection to %s closed", imap_client_hostport(j->client));
	}
	maybe_finish(j);
}

struct archive_job *
archive_start(struct imap_client *c, const struct archive_params *p)
{
	struct archive_job *j = calloc(1, sizeof(*j));
	struct imap_handler h;
	int rc;

	read_crash_env();
	if (j == NULL)
		return NULL;
	j->client = c;
	j->p = *p;
	j->source = strdup(p->source ? p->source : "");
	j->folder = strdup(p->folder);
	j->p.source = j->source;
	j->p.folder = j->folder;
	if (j->p.max_attempts < 1)
		j->p.max_attempts = 1;
	j->max_listed = (size_t)(p->exists < SIZE_MAX / 4 - LISTING_SLACK ? p->exists : 0) +
	    LISTING_SLACK;
	j->prog.last_uid = p->last_uid;
	if (j->source == NULL || j->folder == NULL) {
		archive_free(j);
		return NULL;
	}
	memset(&h, 0, sizeof(h));
	h.ud = j;
	h.on_untagged = sizes_untagged;
	h.on_done = sizes_done;
	j->pending = 1;
	/* Past the last possible UID nothing can be new ("4294967296:*" is
	 * not a set): only the pending ones are asked for. */
	if (p->last_uid == UINT32_MAX)
		rc = imap_client_send(c, &h, "NOOP");
	else
		rc = imap_client_send(c, &h, "UID FETCH %u:* (UID RFC822.SIZE)", p->last_uid + 1);
	if (rc < 0) {
		archive_free(j);
		return NULL;
	}
	return j;
}

void
archive_shutdown(void)
{
	struct batch *b;

	syncer_free(syncer);
	syncer = NULL;
	if (inflight) {		/* nobody is told any more: batches just go */
		if (inflight->uploading)
			pack_store_durable_cancel(inflight->ps, inflight->ticket);
		for (size_t i = 0; i < inflight->n; i++) {
			if (inflight->missing)
				free(inflight->missing[i]);
			if (inflight->v[i])
				free_batch(inflight->v[i]);
		}
		free(inflight->missing);
		free(inflight->nmissing);
		free(inflight->v);
		free(inflight);
		inflight = NULL;
	}
	while ((b = ready_head) != NULL) {
		ready_head = b->rnext;
		free_batch(b);
	}
	ready_tail = &ready_head;
}

void
archive_free(struct archive_job *j)
{
	struct batch *b, *next;

	if (j == NULL)
		return;
	if (j->queued > 0)
		unqueue_job(j);
	for (b = j->batches; b; b = next) {
		next = b->next;
		free_batch(b);
	}
	free(j->todo);
	free(j->source);
	free(j->folder);
	free(j);
}

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
#include "sync/batch.h"

#define UIDSET_MAX 4000		/* bytes of one command's UID set */
#define LISTING_SLACK 10000	/* new mail that may arrive while a folder is listed */

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

void
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

void
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
void
storage_fail(struct archive_job *j, const char *what)
{
	int e = errno;

	if (e == ENOSPC || e == EDQUOT)
		job_fail(j, "storage", "%s: the disk holding %s is full (%s); free some space: "
		    "archiving goes on by itself then", what, pack_store_dir(j->p.packs), strerror(e));
	else
		job_fail(j, "storage", "%s in %s: %s", what, pack_store_dir(j->p.packs), strerror(e));
}

/* A batch's records are durable: the recovery tests' crash point. */
void
crash_point_commit(const struct archive_job *j)
{
	if (crash_after_batches >= 0 && ++commits_so_far >= crash_after_batches) {
		log_error(j->source, "crash injection: abort after %ld batches", commits_so_far);
		abort();
	}
}

/* Reports the end once every command has been answered. */
void
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

/* The header parse as pack_writer_also runs it: off the loop, beside the
 * compression, when no filter needs the headers at once. */
static void *
parse_head(const void *head, size_t len)
{
	return mime_headers_parse(head, len);
}

static void
free_headers(void *h)
{
	mime_headers_free(h);
}

/* A new message's writer; with no filter its headers are parsed later. */
static struct pack_writer *
new_writer(struct archive_job *j)
{
	struct pack_writer *w = pack_writer_new(j->p.packs);

	if (w && !j->p.filter)
		pack_writer_also(w, parse_head, free_headers);
	return w;
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
	b->cur = new_writer(j);
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

void
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
	struct pack_writer *w = new_writer(j);

	if (w == NULL || pack_writer_write(w, bytes ? bytes : "", bytes ? len : 0) < 0 ||
	    pack_writer_finish(w) < 0) {
		storage_fail(j, "cannot spool a message");
		pack_writer_free(w);
		return NULL;
	}
	return w;
}

/* A failed or abandoned job's held messages go unstored. */
static void
drop_held(struct archive_job *j)
{
	for (int i = 0; i < j->nheld; i++)
		pack_writer_free(j->held[i].w);
	j->nheld = 0;
	j->held_bytes = 0;
}

/* Appends the oldest held messages until KEEP are left and, with ROOM,
 * until ROOM more bytes fit: 0, or -1 with the job failed. */
static int
store_held(struct archive_job *j, int keep, uint64_t room)
{
	while (j->nheld > keep || (j->nheld > 0 && j->held_bytes + room > HELD_BYTES)) {
		struct held h = j->held[0];
		int rc;

		memmove(j->held, j->held + 1, (size_t)(j->nheld - 1) * sizeof(j->held[0]));
		j->nheld--;
		j->held_bytes -= h.e->size;
		rc = pack_writer_store(h.w, &h.e->existed, &h.e->loc);
		if (rc < 0)
			storage_fail(j, "cannot store a message");	/* before free: errno */
		else if (h.e->headers == NULL)
			h.e->headers = pack_writer_also_result(h.w);
		pack_writer_free(h.w);
		if (rc < 0) {
			drop_held(j);	/* the job failed: the rest go unstored */
			return -1;
		}
		if (!h.e->existed && crash_after_blobs >= 0 && ++blobs_so_far >= crash_after_blobs) {
			log_error(j->source, "crash injection: abort after %ld stored messages",
			    blobs_so_far);
			abort();
		}
	}
	return 0;
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
	if (j->p.filter) {	/* else parsed beside the compression (new_writer) */
		head = pack_writer_head(w, &hlen);
		e->headers = mime_headers_parse(head ? head : "", hlen);
	}
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
	/* Stored a few messages later (HELD_MAX, HELD_BYTES) or when the batch
	 * ends, not at the commit: the batch holds no more bytes than that, and
	 * the compressor thread works on them meanwhile. */
	if (store_held(j, HELD_MAX - 1, e->kept ? e->size : 0) < 0) {
		pack_writer_free(w);
		free_entry(e);
		return;
	}
	if (e->kept) {
		j->held[j->nheld].e = e;
		j->held[j->nheld].w = w;
		j->nheld++;
		j->held_bytes += e->size;
	} else {
		pack_writer_free(w);
	}
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

/* Asks for the UIDs of a refused batch that did not come, in two halves. */
void
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

static void
batch_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct batch *b = ud;
	struct archive_job *j = b->job;
	char said[600];

	if (command_ended(j, r, err, 1, said, sizeof(said)))
		b->refused = strdup(said);
	/* Its last message is stored before it is committed. */
	if (j->failed)
		drop_held(j);
	else
		store_held(j, 0, 0);
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
		commit_queue(b);	/* the job ends after its commit */
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
	commit_shutdown();
}

void
archive_free(struct archive_job *j)
{
	struct batch *b, *next;

	if (j == NULL)
		return;
	drop_held(j);
	if (j->queued > 0)
		commit_forget_job(j);
	for (b = j->batches; b; b = next) {
		next = b->next;
		free_batch(b);
	}
	free(j->todo);
	free(j->source);
	free(j->folder);
	free(j);
}

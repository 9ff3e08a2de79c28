#include "sync/archive.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/client.h"
#include "imap/format.h"
#include "log.h"
#include "mime/headers.h"
#include "store/blob.h"
#include "store/db.h"

#define UIDSET_MAX 4000		/* bytes of one command's UID set */

/* One message of a batch, between its FETCH response and the commit. */
struct entry {
	struct blob_writer *w;		/* NULL when skipped */
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
	uint32_t *uids;			/* what was asked for, ascending */
	size_t nuids;
	struct blob_writer *cur;	/* the body streaming now */
	int discarding;			/* the job failed: bytes go nowhere */
	struct entry *head, *tail;
	struct batch *next;
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
	struct batch *batches;		/* in command order */
	int pending;			/* commands not yet answered */
	int failed, done;
	struct net_error err;
	struct archive_progress prog;
};

/* Crash injection for the recovery tests: abort after N commits or N blobs. */
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
	blob_writer_free(e->w);
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
	blob_writer_free(b->cur);
	free(b->uids);
	free(b);
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

/* Reports the end once every command has been answered. */
static void
maybe_finish(struct archive_job *j)
{
	if (j->done || j->pending > 0)
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

static void
sizes_untagged(void *ud, const struct imap_response *r)
{
	struct archive_job *j = ud;
	const struct imap_node *sz;
	uint32_t uid;
	uint64_t size = 0;

	if (r->kind != IMAP_RESP_DATA || r->kw != IMAP_KW_FETCH || j->failed)
		return;
	uid = fetch_uid(r);
	if (uid <= j->p.last_uid)	/* "n:*" always names the highest UID */
		return;
	sz = imap_fetch_item(r, "RFC822.SIZE");
	if (sz)
		imap_node_u64(sz, &size);
	if (j->ntodo == j->captodo) {
		size_t cap = j->captodo ? j->captodo * 2 : 1024;
		struct uid_size *grown = realloc(j->todo, cap * sizeof(*grown));
		if (grown == NULL) {
			job_fail(j, "storage", "out of memory listing the new messages of %s", j->folder);
			return;
		}
		j->todo = grown;
		j->captodo = cap;
	}
	j->todo[j->ntodo].uid = uid;
	j->todo[j->ntodo].size = size;
	j->ntodo++;
	j->prog.messages_total++;
	j->prog.bytes_total += size;
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
	blob_writer_free(b->cur);
	b->cur = blob_writer_new(j->p.blobs);
	if (b->cur == NULL) {
		job_fail(j, "storage", "cannot create a file in %s: %s", blob_store_root(j->p.blobs),
		    strerror(errno));
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
	if (blob_writer_write(b->cur, data, len) < 0) {
		job_fail(b->job, "storage", "cannot write to %s: %s", blob_store_root(b->job->p.blobs),
		    strerror(errno));
		blob_writer_free(b->cur);	/* the rest of it is read and dropped */
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
	if (b->cur && blob_writer_finish(b->cur) < 0) {
		job_fail(b->job, "storage", "cannot write to %s: %s", blob_store_root(b->job->p.blobs),
		    strerror(errno));
		return -1;
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
	m->hash = e->w ? blob_writer_hash(e->w) : NULL;
	m->headers = e->headers;
}

static void
body_untagged(void *ud, const struct imap_response *r)
{
	struct batch *b = ud;
	struct archive_job *j = b->job;
	struct entry *e;
	struct archive_msg m;
	const struct imap_node *n;
	char reason[512] = "";
	size_t hlen;
	const char *head;

	if (r->kind != IMAP_RESP_DATA || r->kw != IMAP_KW_FETCH || j->failed)
		return;
	if (b->cur == NULL)
		return;		/* a flags update, not one of ours */
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		job_fail(j, "storage", "out of memory");
		return;
	}
	e->w = b->cur;
	b->cur = NULL;
	e->uid = fetch_uid(r);
	e->size = blob_writer_size(e->w);
	e->flags = fetch_flags(r);
	n = imap_fetch_item(r, "INTERNALDATE");
	e->internaldate = n ? imap_parse_internaldate(imap_node_bytes(n, &hlen)) : -1;
	head = blob_writer_head(e->w, &hlen);
	e->headers = mime_headers_parse(head, hlen);
	blob_writer_drop_head(e->w);	/* a batch would hold 256 KiB per message */
	if (e->uid == 0 || e->uid <= j->p.last_uid) {
		free_entry(e);
		return;
	}
	if (j->p.filter) {
		message_of(j, e, &m);
		int keep = j->p.filter(j->p.ud, &m, reason, sizeof(reason));
		if (keep < 0) {
			job_fail(j, "hook", "%s", reason);
			free_entry(e);
			return;
		}
		if (keep == 0) {
			e->skip_reason = strdup(reason[0] ? reason : "filter");
			blob_writer_free(e->w);
			e->w = NULL;
		}
	}
	if (b->tail)
		b->tail->next = e;
	else
		b->head = e;
	b->tail = e;
}

/* ---- committing a batch ------------------------------------------------ */

static int
commit_batch(struct archive_job *j, struct batch *b)
{
	struct archive_db *db = j->p.db;
	struct entry *e;

	/* 1. the bytes, 2. their names, 3. the records. */
	if (blob_store_sync(j->p.blobs) < 0)
		goto storage;
	for (e = b->head; e; e = e->next) {
		int existed;
		if (e->w == NULL)
			continue;
		if (blob_writer_publish(e->w, &existed) < 0)
			goto storage;
		if (existed)
			j->prog.duplicates++;
		else if (crash_after_blobs >= 0 && ++blobs_so_far >= crash_after_blobs) {
			log_error(j->source, "crash injection: abort after %ld blobs", blobs_so_far);
			abort();
		}
	}
	if (blob_store_sync(j->p.blobs) < 0)
		goto storage;
	if (db_begin(db) < 0)
		goto database;
	for (e = b->head; e; e = e->next) {
		if (e->w == NULL) {
			if (db_skip_add(db, j->source, j->folder, j->p.uidvalidity, e->uid, e->size,
			    e->skip_reason) < 0)
				goto rollback;
			continue;
		}
		struct db_message m;
		memset(&m, 0, sizeof(m));
		m.hash = blob_writer_hash(e->w);
		m.size = e->size;
		m.date_unix = -1;
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
		if (db_message_add(db, &m, NULL) < 0 ||
		    db_location_add(db, j->source, j->folder, j->p.uidvalidity, e->uid, m.hash,
		    e->flags, e->internaldate) < 0)
			goto rollback;
	}
	/* Asked for but not returned (expunged meanwhile, or a server that
	 * answered without it): recorded, so the last UID can move on and
	 * reconciliation can tell. */
	for (size_t i = 0; i < b->nuids; i++) {
		int seen = 0;
		for (e = b->head; e && !seen; e = e->next)
			seen = e->uid == b->uids[i];
		if (!seen && db_skip_add(db, j->source, j->folder, j->p.uidvalidity, b->uids[i], 0,
		    "the server returned no body for it") < 0)
			goto rollback;
	}
	if (db_folder_set_progress(db, j->source, j->folder, b->max_uid) < 0 || db_commit(db) < 0)
		goto rollback;
	if (crash_after_batches >= 0 && ++commits_so_far >= crash_after_batches) {
		log_error(j->source, "crash injection: abort after %ld batches", commits_so_far);
		abort();
	}
	return 0;
storage:
	job_fail(j, "storage", "cannot store messages in %s: %s", blob_store_root(j->p.blobs),
	    strerror(errno));
	return -1;
rollback:
	db_rollback(db);
database:
	job_fail(j, "storage", "cannot record messages in archive.db: %s", db_errmsg(db));
	return -1;
}

/* One of the job's commands ended: a lost connection or a NO/BAD fails
 * the job (the first reason wins). */
static void
command_ended(struct archive_job *j, const struct imap_response *r, const struct net_error *err)
{
	char said[600];

	j->pending--;
	if (err) {
		if (!j->failed) {
			j->failed = 1;
			j->err = *err;
		}
	} else if (r->status != IMAP_STATUS_OK) {
		imap_response_describe(r, said, sizeof(said));
		job_fail(j, "protocol", "UID FETCH in %s: the server said \"%s\"", j->folder, said);
	}
}

static void
batch_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct batch *b = ud;
	struct archive_job *j = b->job;

	command_ended(j, r, err);
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
	if (!j->failed && commit_batch(j, b) == 0) {
		struct archive_msg m;
		for (struct entry *e = b->head; e; e = e->next) {
			if (e->w) {
				j->prog.archived++;
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
				j->p.on_message(j->p.ud, &m, e->w != NULL);
			}
		}
		j->prog.last_uid = b->max_uid;
		if (j->p.on_progress)
			j->p.on_progress(j->p.ud, &j->prog);
	}
	free_batch(b);
	maybe_finish(j);
}

static int
send_batches(struct archive_job *j)
{
	struct imap_handler h;
	struct batch **tail = &j->batches;
	uint32_t *uids;
	size_t batch = j->p.batch > 0 ? (size_t)j->p.batch : 200;

	if (j->ntodo == 0)
		return 0;
	uids = malloc(j->ntodo * sizeof(*uids));
	if (uids == NULL)
		return -1;
	for (size_t i = 0; i < j->ntodo; i++)
		uids[i] = j->todo[i].uid;
	for (size_t off = 0; off < j->ntodo;) {
		size_t take = j->ntodo - off < batch ? j->ntodo - off : batch, used, len;
		char set[UIDSET_MAX];
		struct batch *b;

		if (imap_format_uidset(set, sizeof(set), uids + off, take, &used, &len) < 0 || used == 0)
			break;
		b = calloc(1, sizeof(*b));
		if (b == NULL)
			break;
		b->job = j;
		b->max_uid = uids[off + used - 1];
		b->uids = malloc(used * sizeof(*b->uids));
		if (b->uids == NULL) {
			free(b);
			break;
		}
		memcpy(b->uids, uids + off, used * sizeof(*b->uids));
		b->nuids = used;
		memset(&h, 0, sizeof(h));
		h.ud = b;
		h.on_untagged = body_untagged;
		h.literal_begin = body_begin;
		h.literal_data = body_data;
		h.literal_end = body_end;
		h.on_done = batch_done;
		struct batch **link = tail;
		*link = b;
		tail = &b->next;
		j->pending++;
		if (imap_client_send(j->client, &h,
		    "UID FETCH %s (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", set) < 0) {
			j->pending--;
			*link = NULL;
			free_batch(b);
			free(uids);
			return -1;
		}
		off += used;
	}
	free(uids);
	return 0;
}

static int
cmp_uid(const void *a, const void *b)
{
	uint32_t x = ((const struct uid_size *)a)->uid, y = ((const struct uid_size *)b)->uid;

	return x < y ? -1 : x > y;
}

static void
sizes_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct archive_job *j = ud;

	command_ended(j, r, err);
	if (!j->failed) {
		qsort(j->todo, j->ntodo, sizeof(*j->todo), cmp_uid);
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

	read_crash_env();
	if (j == NULL)
		return NULL;
	j->client = c;
	j->p = *p;
	j->source = strdup(p->source ? p->source : "");
	j->folder = strdup(p->folder);
	j->p.source = j->source;
	j->p.folder = j->folder;
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
	if (imap_client_send(c, &h, "UID FETCH %u:* (UID RFC822.SIZE)", p->last_uid + 1) < 0) {
		archive_free(j);
		return NULL;
	}
	return j;
}

void
archive_free(struct archive_job *j)
{
	struct batch *b, *next;

	if (j == NULL)
		return;
	for (b = j->batches; b; b = next) {
		next = b->next;
		free_batch(b);
	}
	free(j->todo);
	free(j->source);
	free(j->folder);
	free(j);
}

/*
 * Committing answered batches, in groups: see the comment above struct
 * group. What a batch is comes from sync/batch.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "mime/headers.h"
#include "store/db.h"
#include "store/pack.h"
#include "store/syncer.h"
#include "sync/batch.h"

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
		crash_point_commit(j);
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
	db_note_archived();
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
void
commit_queue(struct batch *b)
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
void
commit_forget_job(struct archive_job *j)
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

/* The engine stops: nobody is told any more. */
void
commit_shutdown(void)
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

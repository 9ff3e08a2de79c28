/*
 * The pack store's segments on S3 (store/remote.h has the layout). The
 * open segment's file stays the write-ahead: a batch's bytes are appended
 * to it as before, then uploaded as one immutable part object, and only
 * when S3 answered 200 with the bytes' checksum does the batch's
 * transaction commit, recording the part (segment_parts) and the
 * segment's committed length together. One upload is in flight at a time;
 * batches that wait meanwhile are all covered by the next one. A sealed
 * segment goes up as one object; then its parts are deleted, and its
 * local file may be evicted from the cache.
 */
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "store/pack_internal.h"
#include "store/remote.h"

struct waiter {
	uint64_t ticket;
	int64_t seg;
	uint64_t need;			/* durable once the segment is uploaded this far */
	pack_durable_fn done;
	void *ud;
	struct waiter *next;
};

struct part {
	int64_t seg;
	uint64_t off, len;
	char key[160];
};

struct sealing {
	struct pack_store *ps;
	int64_t seg;
	uint64_t size;
	char key[160];
};

struct remote_side {
	struct remote *r;
	int64_t run;
	uint64_t seq;			/* uploads this run: in every part's name */
	uint64_t uploaded;		/* of the open segment: stored in S3 up to here */
	int uploading;			/* a part in flight */
	uint64_t upload_off, upload_end;
	char upload_key[160];
	struct part *unrecorded;	/* stored, not yet named by a committed row */
	size_t nunrec, capunrec, nrecording;
	struct waiter *waiters;
	uint64_t next_ticket;
	int sealing;			/* sealed objects in flight */
	sqlite3_stmt *part_insert;
};

static void start_upload(struct pack_store *ps);

/* Crash injection for the tests: abort once N parts are stored in S3,
 * before the batch that waited for the last one commits. */
static long crash_after_uploads = -1, uploads_so_far;

int
pack_store_is_remote(const struct pack_store *ps)
{
	return ps->rs != NULL;
}

int64_t
pack_store_run(const struct pack_store *ps)
{
	return ps->rs ? ps->rs->run : 0;
}

int
pack_store_uploading(const struct pack_store *ps)
{
	return ps->rs ? ps->rs->uploading + ps->rs->sealing : 0;
}

static int
exec1(sqlite3 *db, const char *sql, int64_t a, const char *text)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, a);
	if (text)
		sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static int64_t
query_int(sqlite3 *db, const char *sql, int64_t a, int64_t dflt)
{
	sqlite3_stmt *st;
	int64_t v = dflt;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return dflt;
	sqlite3_bind_int64(st, 1, a);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* ---- the cache ------------------------------------------------------------ */

/* Local files of sealed segments S3 has whole, oldest first, removed while
 * packs/ holds more than the cache's size. The open segment always stays;
 * a read fetches an evicted one back (store/reader.c). */
static void
evict(struct pack_store *ps)
{
	uint64_t total = 0, max = (uint64_t)remote_config(ps->rs->r)->cache_bytes;
	sqlite3_stmt *st;
	char path[4200];
	struct stat sb;

	if (sqlite3_prepare_v2(ps->db, "SELECT id FROM segments ORDER BY id", -1, &st, NULL) !=
	    SQLITE_OK)
		return;
	while (sqlite3_step(st) == SQLITE_ROW) {
		pack_segment_path(ps->dir, sqlite3_column_int64(st, 0), path, sizeof(path));
		if (stat(path, &sb) == 0)
			total += (uint64_t)sb.st_size;
	}
	sqlite3_finalize(st);
	if (total <= max || sqlite3_prepare_v2(ps->db, "SELECT id FROM segments WHERE sealed = 1 "
	    "AND object IS NOT NULL AND id <> ?1 ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, ps->seg);
	while (total > max && sqlite3_step(st) == SQLITE_ROW) {
		pack_segment_path(ps->dir, sqlite3_column_int64(st, 0), path, sizeof(path));
		if (stat(path, &sb) == 0 && unlink(path) == 0)
			total -= (uint64_t)sb.st_size;
	}
	sqlite3_finalize(st);
}

/* ---- sealed segments -------------------------------------------------------- */

static void
sealed_done(void *ud, const struct s3_error *err)
{
	struct sealing *s = ud;
	struct pack_store *ps = s->ps;
	sqlite3_stmt *st;

	ps->rs->sealing--;
	if (err) {
		log_warn(NULL, "S3: cannot store sealed segment %lld (tried again at the next start; its "
		    "parts keep it readable): %s", (long long)s->seg, err->message);
		free(s);
		return;
	}
	if (exec1(ps->db, "UPDATE segments SET object = ?2 WHERE id = ?1", s->seg, s->key) < 0) {
		log_warn(NULL, "archive.db: cannot record the object of segment %lld: %s",
		    (long long)s->seg, sqlite3_errmsg(ps->db));
		free(s);
		return;
	}
	/* the whole object is named: its parts are not needed any more */
	if (sqlite3_prepare_v2(ps->db, "SELECT key FROM segment_parts WHERE segment = ?1", -1, &st,
	    NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, s->seg);
		while (sqlite3_step(st) == SQLITE_ROW)
			remote_delete_later(ps->rs->r, (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		exec1(ps->db, "DELETE FROM segment_parts WHERE segment = ?1", s->seg, NULL);
	}
	log_info(NULL, "segment stored in S3 segment=%lld bytes=%llu key=%s", (long long)s->seg,
	    (unsigned long long)s->size, s->key);
	free(s);
	evict(ps);
}

static int
upload_sealed(struct pack_store *ps, int64_t seg, int fd, uint64_t size)
{
	struct sealing *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -1;
	s->ps = ps;
	s->seg = seg;
	s->size = size;
	remote_segment_key(ps->rs->r, seg, s->key, sizeof(s->key));
	/* not If-None-Match: the same segment's bytes again after a crash */
	if (remote_upload(ps->rs->r, fd, 0, size, s->key, 0, sealed_done, s) < 0) {
		free(s);
		return -1;
	}
	ps->rs->sealing++;
	return 0;
}

void
pack_remote_sealed(struct pack_store *ps, int64_t seg, int fd, uint64_t size)
{
	if (upload_sealed(ps, seg, fd, size) < 0)
		log_warn(NULL, "S3: cannot start storing sealed segment %lld (tried again at the next "
		    "start): %s", (long long)seg, strerror(errno));
	/* the next segment starts with nothing in S3 */
	ps->rs->uploaded = 0;
}

/* ---- parts of the open segment ----------------------------------------------- */

static int
add_unrecorded(struct remote_side *rs, int64_t seg, uint64_t off, uint64_t len, const char *key)
{
	if (rs->nunrec == rs->capunrec) {
		size_t cap = rs->capunrec ? rs->capunrec * 2 : 16;
		struct part *p = realloc(rs->unrecorded, cap * sizeof(*p));
		if (p == NULL)
			return -1;
		rs->unrecorded = p;
		rs->capunrec = cap;
	}
	struct part *p = &rs->unrecorded[rs->nunrec++];
	p->seg = seg;
	p->off = off;
	p->len = len;
	snprintf(p->key, sizeof(p->key), "%s", key);
	return 0;
}

static void
part_done(void *ud, const struct s3_error *err)
{
	struct pack_store *ps = ud;
	struct remote_side *rs = ps->rs;
	struct waiter *ready = NULL, **tail = &ready, **pp;

	rs->uploading = 0;
	if (err == NULL && crash_after_uploads >= 0 && ++uploads_so_far >= crash_after_uploads) {
		/* the window the durability order is about: stored, not committed */
		log_error(NULL, "crash injection: abort after %ld uploads", uploads_so_far);
		abort();
	}
	if (err == NULL) {
		static const struct s3_error oom = { "storage", 0, "", "out of memory" };
		if (add_unrecorded(rs, ps->seg, rs->upload_off, rs->upload_end - rs->upload_off,
		    rs->upload_key) < 0)
			err = &oom;
		else
			rs->uploaded = rs->upload_end;
	}
	/* who is served: every waiter, with the error; else those covered */
	for (pp = &rs->waiters; *pp;) {
		struct waiter *w = *pp;
		if (err || (w->seg == ps->seg && w->need <= rs->uploaded) || w->seg != ps->seg) {
			*pp = w->next;
			w->next = NULL;
			*tail = w;
			tail = &w->next;
		} else {
			pp = &w->next;
		}
	}
	if (rs->waiters)
		start_upload(ps);
	while (ready) {
		struct waiter *w = ready;
		ready = w->next;
		w->done(w->ud, err ? err->message : NULL);
		free(w);
	}
}

static void
start_upload(struct pack_store *ps)
{
	struct remote_side *rs = ps->rs;

	/* Only what is durable on the disk goes up: a failed sync cuts the
	 * tail off at ps->synced, and bytes in S3 past that point would be
	 * other bytes once the file is appended to again. */
	if (rs->uploading || ps->fd < 0 || ps->synced <= rs->uploaded)
		return;
	rs->upload_off = rs->uploaded;
	rs->upload_end = ps->synced;
	remote_part_key(rs->r, ps->seg, rs->upload_off, rs->run, rs->upload_key,
	    sizeof(rs->upload_key));
	snprintf(rs->upload_key + strlen(rs->upload_key), sizeof(rs->upload_key) -
	    strlen(rs->upload_key), ".%llu", (unsigned long long)++rs->seq);
	if (remote_upload(rs->r, ps->fd, rs->upload_off, rs->upload_end - rs->upload_off,
	    rs->upload_key, 1, part_done, ps) < 0) {
		/* every waiter learns it from the loop, never from inside its own call */
		static const struct s3_error e = { "storage", 0, "", "cannot start an upload" };
		log_error(NULL, "S3: %s: %s", e.message, strerror(errno));
		rs->uploading = 0;
		for (struct waiter *w = rs->waiters, *n; w; w = n) {
			n = w->next;
			w->done(w->ud, e.message);
			free(w);
		}
		rs->waiters = NULL;
		return;
	}
	rs->uploading = 1;
}

int
pack_store_durable(struct pack_store *ps, pack_durable_fn done, void *ud, uint64_t *ticket)
{
	struct remote_side *rs = ps->rs;
	struct waiter *w, **tail;

	if (rs == NULL)
		return pack_store_sync(ps) < 0 ? -1 : 0;
	if (ps->fd < 0 || ps->synced <= rs->uploaded)
		return 0;	/* sealed (it goes up whole), or all in S3 */
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return -1;
	w->ticket = *ticket = ++rs->next_ticket;
	w->seg = ps->seg;
	w->need = ps->synced;
	w->done = done;
	w->ud = ud;
	for (tail = &rs->waiters; *tail; tail = &(*tail)->next)
		;
	*tail = w;
	start_upload(ps);
	return 1;
}

void
pack_store_durable_cancel(struct pack_store *ps, uint64_t ticket)
{
	if (ps->rs == NULL)
		return;
	for (struct waiter **pp = &ps->rs->waiters; *pp; pp = &(*pp)->next) {
		if ((*pp)->ticket == ticket) {
			struct waiter *w = *pp;
			*pp = w->next;
			free(w);
			return;
		}
	}
}

/* Inside the batch's transaction: the parts stored since the last commit,
 * and the open segment committed up to what S3 has. */
int
pack_remote_record(struct pack_store *ps)
{
	struct remote_side *rs = ps->rs;
	uint64_t committed = rs->uploaded > PACK_HEADER ? rs->uploaded : PACK_HEADER;
	int rc;

	for (size_t i = 0; i < rs->nunrec; i++) {
		struct part *p = &rs->unrecorded[i];
		sqlite3_bind_int64(rs->part_insert, 1, p->seg);
		sqlite3_bind_int64(rs->part_insert, 2, (sqlite3_int64)p->off);
		sqlite3_bind_int64(rs->part_insert, 3, (sqlite3_int64)p->len);
		sqlite3_bind_text(rs->part_insert, 4, p->key, -1, SQLITE_STATIC);
		rc = sqlite3_step(rs->part_insert);
		sqlite3_reset(rs->part_insert);
		if (rc != SQLITE_DONE)
			return -1;
	}
	rs->nrecording = rs->nunrec;
	sqlite3_bind_int64(ps->commit, 1, ps->seg);
	sqlite3_bind_int64(ps->commit, 2, (sqlite3_int64)committed);
	rc = sqlite3_step(ps->commit);
	sqlite3_reset(ps->commit);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* After the transaction committed: its parts are named now; a full segment
 * is sealed once nothing of it is in flight. */
int
pack_remote_committed(struct pack_store *ps)
{
	struct remote_side *rs = ps->rs;

	memmove(rs->unrecorded, rs->unrecorded + rs->nrecording,
	    (rs->nunrec - rs->nrecording) * sizeof(*rs->unrecorded));
	rs->nunrec -= rs->nrecording;
	rs->nrecording = 0;
	if (ps->fd >= 0 && ps->end >= ps->segment_max && ps->synced == ps->end &&
	    rs->uploaded == ps->end && !rs->uploading && rs->waiters == NULL && rs->nunrec == 0)
		return pack_seal(ps);
	return 0;
}

/* ---- attaching ----------------------------------------------------------------- */

int
pack_store_set_remote(struct pack_store *ps, struct remote *r, char *err, size_t errlen)
{
	struct remote_side *rs;
	sqlite3_stmt *st;
	const struct remote_config *cfg = remote_config(r);

	if (ps->rs) {
		snprintf(err, errlen, "the archive's storage is attached already");
		return -1;
	}
	if ((rs = calloc(1, sizeof(*rs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rs->r = r;
	{
		const char *c = getenv("EMAILVAULT_CRASH_AFTER_UPLOADS");
		if (c && *c)
			crash_after_uploads = strtol(c, NULL, 10);
	}
	if (exec1(ps->db, "INSERT INTO storage_info(key, value) VALUES ('run', '1') "
	    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", 0, NULL) < 0 ||
	    exec1(ps->db, "INSERT OR REPLACE INTO storage_info(key, value) VALUES ('location', 's3')",
	    0, NULL) < 0 ||
	    sqlite3_prepare_v2(ps->db, "INSERT OR IGNORE INTO segment_parts(segment, offset, length, key) "
	    "VALUES (?1, ?2, ?3, ?4)", -1, &rs->part_insert, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(ps->db));
		sqlite3_finalize(rs->part_insert);
		free(rs);
		return -1;
	}
	rs->run = query_int(ps->db, "SELECT CAST(value AS INTEGER) FROM storage_info WHERE "
	    "key = 'run'", 0, 1);
	/* what S3 has of the open segment: its recorded parts end there */
	rs->uploaded = (uint64_t)query_int(ps->db, "SELECT max(offset + length) FROM segment_parts "
	    "WHERE segment = ?1", ps->seg, 0);
	if (rs->uploaded > ps->end)
		rs->uploaded = ps->end;		/* cannot be: the file was cut to its commit */
	ps->rs = rs;
	if (cfg->segment_max)
		ps->segment_max = cfg->segment_max;
	/* sealed segments a crash (or a failed upload) left without their
	 * object, whose bytes S3 holds only in parts, go up whole now */
	if (sqlite3_prepare_v2(ps->db, "SELECT id, committed FROM segments WHERE sealed = 1 AND "
	    "object IS NULL AND id IN (SELECT segment FROM segment_parts)", -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			int64_t seg = sqlite3_column_int64(st, 0);
			char path[4200];
			pack_segment_path(ps->dir, seg, path, sizeof(path));
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || upload_sealed(ps, seg, fd, (uint64_t)sqlite3_column_int64(st, 1)) < 0)
				log_warn(NULL, "S3: cannot store sealed segment %lld: %s", (long long)seg,
				    strerror(errno));
			if (fd >= 0)
				close(fd);
		}
		sqlite3_finalize(st);
	}
	return 0;
}

void
pack_remote_free(struct pack_store *ps)
{
	struct remote_side *rs = ps->rs;

	if (rs == NULL)
		return;
	for (struct waiter *w = rs->waiters, *n; w; w = n) {
		n = w->next;
		free(w);
	}
	sqlite3_finalize(rs->part_insert);
	free(rs->unrecorded);
	free(rs);
	ps->rs = NULL;
}

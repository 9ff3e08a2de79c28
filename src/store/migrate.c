#include "store/migrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/db.h"
#include "store/pack.h"
#include "store/reader.h"
#include "store/store.h"

/* Rowids already found broken this session: not picked again by a step. */
struct broken {
	int64_t *ids;
	size_t n, cap;
};

static struct broken broken;

static int
is_broken(int64_t id)
{
	for (size_t i = 0; i < broken.n; i++)
		if (broken.ids[i] == id)
			return 1;
	return 0;
}

static void
mark_broken(int64_t id)
{
	if (broken.n == broken.cap) {
		size_t cap = broken.cap ? broken.cap * 2 : 64;
		int64_t *grown = realloc(broken.ids, cap * sizeof(*grown));
		if (grown == NULL)
			return;
		broken.ids = grown;
		broken.cap = cap;
	}
	broken.ids[broken.n++] = id;
}

int64_t
migrate_left(struct store *s)
{
	sqlite3 *db = db_handle(s->db);
	sqlite3_stmt *st;
	int64_t n = -1;

	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages WHERE pack_segment IS NULL", -1,
	    &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0) - (int64_t)broken.n;
	sqlite3_finalize(st);
	return n < 0 ? 0 : n;
}

/* EMAILVAULT_CRASH_AFTER_MIGRATED=N: abort once N messages are recorded in
 * packs, before their files are removed (the recovery tests). */
static void
crash_injection(uint64_t now)
{
	static long after = -2;
	static uint64_t moved;

	moved += now;
	if (after == -2) {
		const char *v = getenv("EMAILVAULT_CRASH_AFTER_MIGRATED");
		after = v && *v ? strtol(v, NULL, 10) : -1;
	}
	if (after >= 0 && moved >= (uint64_t)after) {
		fprintf(stderr, "crash injection: abort after %llu migrated messages\n",
		    (unsigned long long)moved);
		abort();
	}
}

#define COPY_BUF (64 * 1024)

/* The bytes of IN into W through BUF (COPY_BUF bytes). 0; -2 when IN
 * cannot be read to its end (a file shorter than recorded, unreadable);
 * -1 with errno when W fails. */
static int
copy_into(struct store_stream *in, struct pack_writer *w, char *buf)
{
	ssize_t n;

	while ((n = store_stream_read(in, buf, COPY_BUF)) > 0)
		if (pack_writer_write(w, buf, (size_t)n) < 0)
			return -1;
	return n == 0 ? 0 : -2;
}

struct moved {
	int64_t rowid;
	char hash[65];
	struct pack_location loc;
};

int
migrate_step(struct store *s, int n, struct migrate_counts *c, char *err, size_t errlen)
{
	sqlite3 *db = db_handle(s->db);
	sqlite3_stmt *pick = NULL, *set = NULL;
	struct moved *moved = calloc((size_t)n, sizeof(*moved));
	struct store_reader *reader = store_reader_open(s->data_dir);
	char *buf = malloc(COPY_BUF);
	size_t nmoved = 0;
	int looked = 0, rc = -1;

	if (moved == NULL || reader == NULL || buf == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT rowid, hash FROM messages WHERE pack_segment IS NULL "
	    "ORDER BY rowid LIMIT ?1", -1, &pick, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE messages SET pack_segment = ?2, pack_offset = ?3, "
	    "pack_length = ?4, pack_codec = ?5 WHERE rowid = ?1", -1, &set, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_int(pick, 1, n + (int)broken.n);
	while (sqlite3_step(pick) == SQLITE_ROW && (int)nmoved < n) {
		int64_t id = sqlite3_column_int64(pick, 0);
		const char *hash = (const char *)sqlite3_column_text(pick, 1);
		struct pack_writer *w;
		struct store_stream *in;
		uint64_t len;
		int copied;

		if (is_broken(id))
			continue;
		looked++;
		/* The reader reads the old file (the row names no pack yet), in
		 * chunks: a big message costs no more memory than a small one. */
		if ((in = store_reader_stream(reader, hash, &len)) == NULL) {
			c->missing++;
			mark_broken(id);
			continue;
		}
		if ((w = pack_writer_new(s->packs)) == NULL) {
			store_stream_close(in);
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		if ((copied = copy_into(in, w, buf)) == -2) {
			store_stream_close(in);
			pack_writer_free(w);
			c->corrupt++;	/* cut short: verify names it; the file stays */
			mark_broken(id);
			continue;
		}
		store_stream_close(in);
		if (copied < 0 || pack_writer_finish(w) < 0) {
			pack_writer_free(w);
			snprintf(err, errlen, "cannot spool a message: %s", strerror(errno));
			goto out;
		}
		if (strcmp(pack_writer_hash(w), hash) != 0) {
			c->corrupt++;	/* verify names it; the file stays as it is */
			mark_broken(id);
			pack_writer_free(w);
			continue;
		}
		struct moved *m = &moved[nmoved];
		if (pack_writer_append(w, &m->loc) < 0) {
			pack_writer_free(w);
			snprintf(err, errlen, "cannot store a message in %s: %s", pack_store_dir(s->packs),
			    strerror(errno));
			goto out;
		}
		pack_writer_free(w);
		m->rowid = id;
		snprintf(m->hash, sizeof(m->hash), "%s", hash);
		c->bytes += len;
		nmoved++;
	}
	if (nmoved > 0) {
		/* the batch rule: bytes durable, then the records, then the files go */
		if (pack_store_sync(s->packs) < 0) {
			snprintf(err, errlen, "cannot make %s durable: %s", pack_store_dir(s->packs),
			    strerror(errno));
			goto out;
		}
		if (db_begin(s->db) < 0)
			goto dberr;
		for (size_t i = 0; i < nmoved; i++) {
			sqlite3_bind_int64(set, 1, moved[i].rowid);
			sqlite3_bind_int64(set, 2, moved[i].loc.segment);
			sqlite3_bind_int64(set, 3, (sqlite3_int64)moved[i].loc.offset);
			sqlite3_bind_int64(set, 4, (sqlite3_int64)moved[i].loc.length);
			sqlite3_bind_int(set, 5, moved[i].loc.codec);
			int st = sqlite3_step(set);
			sqlite3_reset(set);
			if (st != SQLITE_DONE) {
				db_rollback(s->db);
				goto dberr;
			}
		}
		if (pack_store_record(s->packs) < 0 || db_commit(s->db) < 0) {
			db_rollback(s->db);
			goto dberr;
		}
		pack_store_committed(s->packs);
		c->moved += nmoved;
		crash_injection(nmoved);
		for (size_t i = 0; i < nmoved; i++) {
			char path[4200];
			snprintf(path, sizeof(path), "%s/blobs/%.2s/%.2s/%s", s->data_dir, moved[i].hash,
			    moved[i].hash + 2, moved[i].hash);
			unlink(path);	/* gone already: the orphan sweep was faster */
		}
	}
	rc = looked;
	goto out;
dberr:
	snprintf(err, errlen, "archive.db: %s", sqlite3_errmsg(db));
out:
	sqlite3_finalize(pick);
	sqlite3_finalize(set);
	store_reader_close(reader);
	free(moved);
	free(buf);
	return rc;
}

/*
 * vault.archive: reading the archive from Lua: a message by its id (the
 * SHA-256 of its bytes, or a unique prefix of it), its text, search, the
 * state of the index, and an exporter stepped from Lua so a long export
 * never holds the event loop. Works on the engine's archive and on one
 * opened read-only (show, search and export without an engine).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <sqlite3.h>

#include "export/export.h"
#include "search/extract.h"
#include "search/indexer.h"
#include "search/search.h"
#include "search/stored.h"
#include "store/db.h"
#include "store/reader.h"
#include "store/store.h"

#define EXPORTER "vault.archive.exporter"

static struct store *
check_store(lua_State *L)
{
	struct store *s = store_current();

	if (s == NULL || s->db == NULL)
		luaL_error(L, "the archive is not open");
	return s;
}

static sqlite3 *
check_db(lua_State *L)
{
	return db_handle(check_store(L)->db);
}

/* Pushes the hash a message id names, or nil and why not. */
static int
push_resolved(lua_State *L, sqlite3 *db, const char *id)
{
	char hash[65];
	int rc = search_resolve_id(db, id, hash, sizeof(hash));

	if (rc == 0) {
		lua_pushstring(L, hash);
		return 1;
	}
	lua_pushnil(L);
	if (rc == SEARCH_ID_BAD)
		lua_pushfstring(L, "'%s' is not a message id (hex digits of its SHA-256, at least 4)", id);
	else if (rc == SEARCH_ID_AMBIGUOUS)
		lua_pushfstring(L, "the id '%s' names more than one message: give more of it", id);
	else if (rc == SEARCH_ID_NONE)
		lua_pushfstring(L, "no message with id '%s' in this archive", id);
	else
		lua_pushfstring(L, "archive.db: %s", sqlite3_errmsg(db));
	return 2;
}

/* archive.resolve(id) -> hash | nil, err */
static int
l_resolve(lua_State *L)
{
	return push_resolved(L, check_db(L), luaL_checkstring(L, 1));
}

static void
set_text(lua_State *L, sqlite3_stmt *st, int col, const char *k)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return;
	lua_pushlstring(L, (const char *)sqlite3_column_text(st, col),
	    (size_t)sqlite3_column_bytes(st, col));
	lua_setfield(L, -2, k);
}

static void
set_int(lua_State *L, sqlite3_stmt *st, int col, const char *k)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return;
	lua_pushinteger(L, sqlite3_column_int64(st, col));
	lua_setfield(L, -2, k);
}

/* The locations of HASH as a list, on the stack. */
static void
push_locations(lua_State *L, sqlite3 *db, const char *hash)
{
	sqlite3_stmt *st;
	lua_Integer i = 0;

	lua_newtable(L);
	if (sqlite3_prepare_v2(db, "SELECT source, folder, uidvalidity, uid, flags, internaldate "
	    "FROM locations WHERE hash = ?1 ORDER BY archived_at, source, folder, uid", -1, &st,
	    NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		lua_createtable(L, 0, 6);
		set_text(L, st, 0, "source");
		set_text(L, st, 1, "folder");
		set_int(L, st, 2, "uidvalidity");
		set_int(L, st, 3, "uid");
		set_text(L, st, 4, "flags");
		set_int(L, st, 5, "internaldate");
		lua_rawseti(L, -2, ++i);
	}
	sqlite3_finalize(st);
}

/* The text T as a table; frees T. */
static void
push_extracted(lua_State *L, struct extract_text *tp)
{
	struct extract_text t = *tp;

	lua_createtable(L, 0, 8);
	lua_pushstring(L, t.subject);
	lua_setfield(L, -2, "subject");
	lua_pushstring(L, t.from);
	lua_setfield(L, -2, "from");
	lua_pushstring(L, t.to);
	lua_setfield(L, -2, "to");
	lua_pushstring(L, t.cc);
	lua_setfield(L, -2, "cc");
	lua_pushstring(L, t.body);
	lua_setfield(L, -2, "body");
	lua_pushstring(L, t.filenames);
	lua_setfield(L, -2, "filenames");
	lua_pushstring(L, t.attachments);
	lua_setfield(L, -2, "attachments");
	if (t.truncated) {
		lua_pushstring(L, t.note);
		lua_setfield(L, -2, "cut");
	}
	extract_text_free(&t);
}

/* Closes R; nil and why message HASH cannot be read (an error when memory
 * ran out: nothing is wrong with the message). */
static int
unreadable(lua_State *L, struct store_reader *r, const char *hash, int e)
{
	store_reader_close(r);
	if (e == ENOMEM)
		return luaL_error(L, "not enough memory");
	lua_pushnil(L);
	lua_pushfstring(L, "message %s is recorded but its bytes cannot be read: %s "
	    "(run emailvault verify)", hash, strerror(e));
	return 2;
}

/*
 * archive.message(id [, { raw = true, text = true }]) -> record | nil, err
 * record: id, size, subject, from, to, cc, date (what it sorts by),
 * date_text, message_id, attachments, indexed, locations; raw = the bytes,
 * text = { subject, from, to, cc, body, filenames, attachments, cut }.
 */
static int
l_message(lua_State *L)
{
	struct store *s = check_store(L);
	sqlite3 *db = db_handle(s->db);
	const char *id = luaL_checkstring(L, 1);
	int want_raw = 0, want_text = 0, n;
	sqlite3_stmt *st;
	const char *hash;

	if (lua_istable(L, 2)) {
		lua_getfield(L, 2, "raw");
		want_raw = lua_toboolean(L, -1);
		lua_getfield(L, 2, "text");
		want_text = lua_toboolean(L, -1);
		lua_pop(L, 2);
	}
	if ((n = push_resolved(L, db, id)) != 1)
		return n;
	hash = lua_tostring(L, -1);
	if (sqlite3_prepare_v2(db, "SELECT hash, size, subject, from_text, to_text, cc_text, "
	    "coalesce(sort_date, date_unix), date_text, message_id, attachments, indexed "
	    "FROM messages WHERE hash = ?1", -1, &st, NULL) != SQLITE_OK)
		return luaL_error(L, "archive.db: %s", sqlite3_errmsg(db));
	sqlite3_bind_text(st, 1, hash, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		lua_pushnil(L);
		lua_pushfstring(L, "no message with id '%s' in this archive", id);
		return 2;
	}
	lua_createtable(L, 0, 14);
	set_text(L, st, 0, "id");
	set_int(L, st, 1, "size");
	set_text(L, st, 2, "subject");
	set_text(L, st, 3, "from");
	set_text(L, st, 4, "to");
	set_text(L, st, 5, "cc");
	set_int(L, st, 6, "date");
	set_text(L, st, 7, "date_text");
	set_text(L, st, 8, "message_id");
	set_int(L, st, 9, "attachments");
	lua_pushboolean(L, sqlite3_column_int(st, 10) == 1);
	lua_setfield(L, -2, "indexed");
	sqlite3_finalize(st);
	push_locations(L, db, hash);
	lua_setfield(L, -2, "locations");
	if (want_raw || want_text) {
		struct store_reader *r = store_reader_open(s->data_dir);
		struct extract_limits lim;
		struct extract_text t;
		char *data;
		size_t len;
		if (r == NULL)
			return luaL_error(L, "not enough memory");
		/* raw: a Lua string, so the whole message; the text is read in
		 * bounded memory whatever the size (archive.write for bytes) */
		if (want_raw) {
			if (store_reader_get(r, hash, 0, &data, &len) < 0)
				return unreadable(L, r, hash, errno);
			lua_pushlstring(L, data, len);
			free(data);
			lua_setfield(L, -2, "raw");
		}
		if (want_text) {
			extract_limits_default(&lim);
			if (extract_stored(r, hash, &lim, &t) < 0)
				return unreadable(L, r, hash, errno);
			push_extracted(L, &t);
			lua_setfield(L, -2, "text");
		}
		store_reader_close(r);
	}
	return 1;
}

/* Where archive.write puts the bytes; with HEADERS, only those before the
 * first empty line (the line end before it included, as `show --headers`
 * always gave). */
struct writing {
	FILE *f;
	int headers;
	int state;		/* 0; 1: after '\n'; 2: after "\n\r", the '\r' held */
	int ended;		/* the empty line was seen */
	int write_errno;
	lua_Integer written;
};

static int
write_out(struct writing *w, const char *p, size_t n)
{
	errno = 0;	/* fwrite need not set it: no stale one reported */
	if (n > 0 && fwrite(p, 1, n, w->f) != n) {
		w->write_errno = errno ? errno : EIO;
		return -1;
	}
	w->written += (lua_Integer)n;
	return 0;
}

/* The message, or its header block: up to and with the line end before
 * the first empty line (the whole message if it has none). What follows
 * the block is still read, unwritten, so that the message is checked. */
static int
write_put(void *ud, const char *p, size_t n)
{
	struct writing *w = ud;
	size_t from = 0;

	if (!w->headers)
		return write_out(w, p, n);
	if (w->ended)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (w->state == 2) {
			if (p[i] == '\n') {
				w->ended = 1;
				return 0;
			}
			if (write_out(w, "\r", 1) < 0)
				return -1;
			w->state = 0;
		}
		if (w->state == 1) {
			if (p[i] == '\n') {
				w->ended = 1;
				return write_out(w, p + from, i - from);
			}
			if (p[i] == '\r') {
				if (write_out(w, p + from, i - from) < 0)
					return -1;
				from = i + 1;
				w->state = 2;
				continue;
			}
			w->state = 0;
		}
		if (p[i] == '\n')
			w->state = 1;
	}
	return write_out(w, p + from, n - from);
}

/*
 * archive.write(id, file [, "raw" | "headers"]) -> bytes written | nil, err
 * The message's bytes into FILE (an io file), or only its header block,
 * in bounded memory whatever its size. A message over 1 MiB is written as
 * it is read and checked against its id at the end (with "headers" too:
 * the rest is read, not written): if that fails, what was written is not
 * the message, and the error says so.
 */
static int
l_write(lua_State *L)
{
	struct store *s = check_store(L);
	const char *id = luaL_checkstring(L, 1);
	luaL_Stream *file = luaL_checkudata(L, 2, LUA_FILEHANDLE);
	const char *part = luaL_optstring(L, 3, "raw");
	struct writing w = { .f = file->f };
	struct store_reader *r;
	const char *hash;
	int n, rc, e;

	if (file->closef == NULL)
		return luaL_error(L, "archive.write: the file is closed");
	if (strcmp(part, "raw") != 0 && strcmp(part, "headers") != 0)
		return luaL_error(L, "archive.write: part must be \"raw\" or \"headers\", not \"%s\"",
		    part);
	w.headers = part[0] == 'h';
	if ((n = push_resolved(L, db_handle(s->db), id)) != 1)
		return n;
	hash = lua_tostring(L, -1);
	if ((r = store_reader_open(s->data_dir)) == NULL)
		return luaL_error(L, "not enough memory");
	errno = 0;
	rc = store_reader_copy(r, hash, write_put, &w);
	e = errno;
	if (rc == 0 && !w.ended && w.state == 2 && write_out(&w, "\r", 1) < 0)
		rc = -2;	/* no empty line: the whole message, its last '\r' too */
	if (rc == 0 && fflush(w.f) != 0) {
		w.write_errno = errno;
		rc = -2;
	}
	/* The id resolved: ENOENT here is a segment or blob file gone, not
	 * an unknown message. */
	if (rc == -1)
		return unreadable(L, r, hash, e);
	store_reader_close(r);
	if (rc == -2) {
		lua_pushnil(L);
		lua_pushfstring(L, "cannot write message %s: %s", hash, strerror(w.write_errno));
		return 2;
	}
	lua_pushinteger(L, w.written);
	return 1;
}

/* ---- search ------------------------------------------------------------ */

struct hit_ctx {
	lua_State *L;
	sqlite3 *db;
	lua_Integer n;
};

static int
push_hit(void *ud, const struct search_hit *h)
{
	struct hit_ctx *c = ud;
	lua_State *L = c->L;

	lua_createtable(L, 0, 10);
	lua_pushstring(L, h->hash);
	lua_setfield(L, -2, "id");
	lua_pushinteger(L, h->date);
	lua_setfield(L, -2, "date");
	lua_pushstring(L, h->from ? h->from : "");
	lua_setfield(L, -2, "from");
	lua_pushstring(L, h->to ? h->to : "");
	lua_setfield(L, -2, "to");
	lua_pushstring(L, h->subject ? h->subject : "");
	lua_setfield(L, -2, "subject");
	lua_pushstring(L, h->snippet ? h->snippet : "");
	lua_setfield(L, -2, "snippet");
	lua_pushinteger(L, h->size);
	lua_setfield(L, -2, "size");
	push_locations(L, c->db, h->hash);
	lua_setfield(L, -2, "locations");
	lua_rawseti(L, -2, ++c->n);
	return 0;
}

/* archive.search(query [, { limit =, offset = }]) -> hits | nil, err, column */
static int
l_search(lua_State *L)
{
	sqlite3 *db = check_db(L);
	const char *q = luaL_optstring(L, 1, "");
	struct search_run_opts o = { .limit = 20, .offset = 0 };
	struct hit_ctx c = { L, db, 0 };
	char err[512];
	int col = 0;

	if (lua_istable(L, 2)) {
		lua_getfield(L, 2, "limit");
		if (!lua_isnil(L, -1))
			o.limit = (long)luaL_checkinteger(L, -1);
		lua_getfield(L, 2, "offset");
		if (!lua_isnil(L, -1))
			o.offset = (long)luaL_checkinteger(L, -1);
		lua_pop(L, 2);
	}
	lua_newtable(L);
	int rc = search_run(db, q, &o, push_hit, &c, err, sizeof(err), &col);
	if (rc < 0) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		if (col > 0)
			lua_pushinteger(L, col);
		else
			lua_pushnil(L);
		lua_pushboolean(L, rc == SEARCH_ERR_QUERY);	/* the user's query, not the archive */
		return 4;
	}
	return 1;
}

/* ---- the index --------------------------------------------------------- */

static lua_Integer
count(sqlite3 *db, const char *sql, const char *arg)
{
	sqlite3_stmt *st;
	lua_Integer n = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (arg)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/* archive.index([source]) -> { lag, indexed, unreadable, bytes, thread = {...} } */
static int
l_index(lua_State *L)
{
	sqlite3 *db = check_db(L);
	const char *source = luaL_optstring(L, 1, NULL);
	struct indexer *ix = indexer_current();

	lua_createtable(L, 0, 6);
	if (source)
		lua_pushinteger(L, count(db, "SELECT count(*) FROM messages m WHERE m.indexed = 0 AND "
		    "EXISTS (SELECT 1 FROM locations l WHERE l.hash = m.hash AND l.source = ?1)", source));
	else
		lua_pushinteger(L, count(db, "SELECT count(*) FROM messages WHERE indexed = 0", NULL));
	lua_setfield(L, -2, "lag");
	lua_pushinteger(L, count(db, "SELECT count(*) FROM messages WHERE indexed = 1", NULL));
	lua_setfield(L, -2, "indexed");
	lua_pushinteger(L, count(db, "SELECT count(*) FROM messages WHERE indexed = 2", NULL));
	lua_setfield(L, -2, "unreadable");
	/* The index's own pages (dbstat), or its size estimated from row data. */
	lua_Integer bytes = count(db, "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'fts%'", NULL);
	if (bytes < 0)
		bytes = count(db, "SELECT sum(length(block)) FROM fts_data", NULL);
	lua_pushinteger(L, bytes < 0 ? 0 : bytes);
	lua_setfield(L, -2, "bytes");
	if (ix) {
		struct indexer_stats s;
		indexer_get_stats(ix, &s);
		lua_createtable(L, 0, 4);
		lua_pushinteger(L, (lua_Integer)s.indexed);
		lua_setfield(L, -2, "indexed");
		lua_pushboolean(L, s.busy);
		lua_setfield(L, -2, "busy");
		if (s.last_error[0]) {
			lua_pushstring(L, s.last_error);
			lua_setfield(L, -2, "error");
		}
		lua_setfield(L, -2, "thread");
	}
	return 1;
}

/* archive.reindex() -> true: the running engine's index is emptied and the
 * indexer fills it again from the blobs. */
static int
l_reindex(lua_State *L)
{
	struct store *s = check_store(L);
	sqlite3 *db = db_handle(s->db);

	if (s->readonly)
		return luaL_error(L, "the archive is open read-only");
	char err[512];

	if (index_reset(db, err, sizeof(err)) < 0)
		return luaL_error(L, "%s", err);
	indexer_poke(indexer_current());
	lua_pushboolean(L, 1);
	return 1;
}

/* ---- export ------------------------------------------------------------ */

struct lexporter {
	struct exporter *x;
	struct store_reader *reader;
	sqlite3_stmt *st;	/* the selected messages, in date order */
	long done;
};

static struct lexporter *
check_exporter(lua_State *L)
{
	struct lexporter *e = luaL_checkudata(L, 1, EXPORTER);

	if (e->x == NULL)
		luaL_error(L, "this export is finished");
	return e;
}

static void
exporter_release(struct lexporter *e, int ok, char *err, size_t errlen)
{
	if (e->st)
		sqlite3_finalize(e->st);
	e->st = NULL;
	if (e->reader)
		store_reader_close(e->reader);
	e->reader = NULL;
	if (e->x && exporter_close(e->x, ok, err, errlen) < 0)
		ok = 0;
	e->x = NULL;
}

/*
 * archive.exporter(query, { format =, out =, by_folder = }) -> exporter, total
 *   | nil, err, column, is_query_error
 */
static int
l_exporter(lua_State *L)
{
	struct store *s = check_store(L);
	sqlite3 *db = db_handle(s->db);
	const char *q = luaL_optstring(L, 1, "");
	struct export_opts o;
	char err[600];
	int col = 0;
	struct lexporter *e;
	long total;

	luaL_checktype(L, 2, LUA_TTABLE);
	memset(&o, 0, sizeof(o));
	lua_getfield(L, 2, "format");
	if (export_format_parse(lua_tostring(L, -1), &o.format) < 0)
		return luaL_error(L, "export: format must be mbox, eml or maildir");
	lua_getfield(L, 2, "out");
	o.out = luaL_checkstring(L, -1);
	lua_getfield(L, 2, "by_folder");
	o.by_folder = lua_toboolean(L, -1);
	e = lua_newuserdatauv(L, sizeof(*e), 1);
	memset(e, 0, sizeof(*e));
	luaL_setmetatable(L, EXPORTER);
	lua_pushvalue(L, -3);		/* keep OUT alive with the exporter */
	lua_setiuservalue(L, -2, 1);
	int rc = search_select_for_export(db, q, &e->st, &total, err, sizeof(err), &col);
	if (rc < 0) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		if (col > 0)
			lua_pushinteger(L, col);
		else
			lua_pushnil(L);
		lua_pushboolean(L, rc == SEARCH_ERR_QUERY);
		return 4;
	}
	if ((e->reader = store_reader_open(s->data_dir)) == NULL ||
	    (e->x = exporter_open(&o, err, sizeof(err))) == NULL) {
		exporter_release(e, 0, err, sizeof(err));
		lua_pushnil(L);
		lua_pushstring(L, e->reader ? err : "not enough memory");
		return 2;
	}
	lua_pushinteger(L, total);
	return 2;
}

/* exporter:step(n) -> done so far, finished | raises on a write error */
static int
l_exporter_step(lua_State *L)
{
	struct lexporter *e = check_exporter(L);
	lua_Integer n = luaL_optinteger(L, 2, 100);
	char err[600];
	int finished = 0;

	for (lua_Integer i = 0; i < n; i++) {
		int rc = sqlite3_step(e->st);
		if (rc == SQLITE_DONE) {
			finished = 1;
			break;
		}
		if (rc != SQLITE_ROW) {
			snprintf(err, sizeof(err), "archive.db: %s", sqlite3_errmsg(sqlite3_db_handle(e->st)));
			exporter_release(e, 0, err, sizeof(err));
			return luaL_error(L, "%s", err);
		}
		struct export_msg m = {
			.hash = (const char *)sqlite3_column_text(e->st, 0),
			.date = sqlite3_column_int64(e->st, 1),
			.source = (const char *)sqlite3_column_text(e->st, 2),
			.folder = (const char *)sqlite3_column_text(e->st, 3),
			.flags = (const char *)sqlite3_column_text(e->st, 4),
			.sender = (const char *)sqlite3_column_text(e->st, 5),
		};
		if (exporter_add_stored(e->x, &m, e->reader, err, sizeof(err)) < 0) {
			exporter_release(e, 0, err, sizeof(err));
			return luaL_error(L, "%s", err);
		}
		e->done++;
	}
	if (finished) {
		err[0] = '\0';
		exporter_release(e, 1, err, sizeof(err));
		if (err[0])
			return luaL_error(L, "%s", err);
	}
	lua_pushinteger(L, e->done);
	lua_pushboolean(L, finished);
	return 2;
}

/* exporter:cancel(): stops; nothing half-written is left under OUT's name. */
static int
l_exporter_cancel(lua_State *L)
{
	struct lexporter *e = luaL_checkudata(L, 1, EXPORTER);
	char err[600];

	exporter_release(e, 0, err, sizeof(err));
	return 0;
}

static int
l_exporter_gc(lua_State *L)
{
	return l_exporter_cancel(L);
}

int
luaopen_vault_archive(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "resolve", l_resolve },
		{ "message", l_message },
		{ "write", l_write },
		{ "search", l_search },
		{ "index", l_index },
		{ "reindex", l_reindex },
		{ "exporter", l_exporter },
		{ NULL, NULL }
	};
	static const luaL_Reg methods[] = {
		{ "step", l_exporter_step },
		{ "cancel", l_exporter_cancel },
		{ NULL, NULL }
	};
	if (luaL_newmetatable(L, EXPORTER)) {
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_exporter_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}

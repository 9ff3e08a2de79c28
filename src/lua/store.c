/*
 * vault.store: SQL on archive.db for the Lua half. Policy code (statuses,
 * folder state, reconciliation, stats) reads and writes through
 * store.query / store.exec with bound parameters; the hot path (archiving
 * messages) stays in src/sync/archive.c. store.sweep() hands lua/reclaim.lua
 * an orphan-blob sweep to step (src/store/reclaim.c).
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "log.h"
#include "store/db.h"
#include "store/migrate.h"
#include "store/reclaim.h"
#include "store/store.h"

#define SWEEP_HANDLE "vault.store.sweep"

static sqlite3 *
check_db(lua_State *L)
{
	struct store *s = store_current();

	if (s == NULL || s->db == NULL)
		luaL_error(L, "the archive is not open");
	return db_handle(s->db);
}

static void
bind_args(lua_State *L, sqlite3_stmt *st, int first)
{
	int n = lua_gettop(L);

	for (int i = first; i <= n; i++) {
		int k = i - first + 1;
		switch (lua_type(L, i)) {
		case LUA_TNIL:
			sqlite3_bind_null(st, k);
			break;
		case LUA_TBOOLEAN:
			sqlite3_bind_int(st, k, lua_toboolean(L, i));
			break;
		case LUA_TNUMBER:
			if (lua_isinteger(L, i))
				sqlite3_bind_int64(st, k, lua_tointeger(L, i));
			else
				sqlite3_bind_double(st, k, lua_tonumber(L, i));
			break;
		default: {
			size_t len;
			const char *s = luaL_checklstring(L, i, &len);
			sqlite3_bind_text(st, k, s, (int)len, SQLITE_TRANSIENT);
		}
		}
	}
}

static void
push_column(lua_State *L, sqlite3_stmt *st, int c)
{
	switch (sqlite3_column_type(st, c)) {
	case SQLITE_INTEGER:
		lua_pushinteger(L, sqlite3_column_int64(st, c));
		break;
	case SQLITE_FLOAT:
		lua_pushnumber(L, sqlite3_column_double(st, c));
		break;
	case SQLITE_NULL:
		lua_pushnil(L);
		break;
	default:
		lua_pushlstring(L, (const char *)sqlite3_column_text(st, c),
		    (size_t)sqlite3_column_bytes(st, c));
	}
}

/* store.query(sql, ...) -> { {col = value, ...}, ... } */
/* SQLite's error as a Lua error; a full disk says which disk. */
static int
db_error_was(lua_State *L, sqlite3 *db, int code, const char *msg)
{
	const char *path = sqlite3_db_filename(db, "main");

	if ((code & 0xff) == SQLITE_FULL)
		return luaL_error(L, "archive.db: the disk holding %s is full (%s)",
		    path && *path ? path : "archive.db", msg);
	return luaL_error(L, "archive.db: %s", msg);
}

static int
db_error(lua_State *L, sqlite3 *db)
{
	return db_error_was(L, db, sqlite3_errcode(db), sqlite3_errmsg(db));
}

static int
l_query(lua_State *L)
{
	sqlite3 *db = check_db(L);
	const char *sql = luaL_checkstring(L, 1);
	sqlite3_stmt *st;
	lua_Integer row = 0;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(L, db);
	bind_args(L, st, 2);
	lua_newtable(L);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int ncol = sqlite3_column_count(st);
		lua_createtable(L, 0, ncol);
		for (int c = 0; c < ncol; c++) {
			push_column(L, st, c);
			lua_setfield(L, -2, sqlite3_column_name(st, c));
		}
		lua_rawseti(L, -2, ++row);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return db_error(L, db);
	return 1;
}

/* store.exec(sql, ...) -> number of rows changed */
static int
l_exec(lua_State *L)
{
	sqlite3 *db = check_db(L);
	const char *sql = luaL_checkstring(L, 1);
	sqlite3_stmt *st;
	int rc;

	if (store_current()->readonly)
		return luaL_error(L, "the archive is open read-only");
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(L, db);
	bind_args(L, st, 2);
	/* A statement of its own (no transaction open) does not wait for the
	 * disk: the WAL keeps it in order, and the next batch's commit (whose
	 * WAL is flushed, src/sync/archive.c) or a checkpoint makes it
	 * durable. Only a power loss before that can undo it, and what Lua
	 * writes (statuses, progress, folder rows, events) is written again
	 * by the next pass. On the loop, an fsync per status line would stall
	 * every source and the control socket. */
	int own = sqlite3_get_autocommit(db);
	if (own)
		sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	/* before the pragma below replaces them */
	int changes = sqlite3_changes(db), code = sqlite3_errcode(db);
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(db));
	if (own)
		sqlite3_exec(db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_error_was(L, db, code, msg);
	lua_pushinteger(L, changes);
	return 1;
}

static int
l_is_open(lua_State *L)
{
	struct store *s = store_current();

	lua_pushboolean(L, s != NULL && s->db != NULL);
	lua_pushboolean(L, s != NULL && s->readonly);
	return 2;
}

static int
l_data_dir(lua_State *L)
{
	struct store *s = store_current();

	if (s == NULL)
		return 0;
	lua_pushstring(L, s->data_dir);
	return 1;
}

/* ---- the orphan sweep ---------------------------------------------------- */

struct sweep {
	struct reclaim *r;	/* NULL once closed */
};

/* Every removal is logged: files are deleted, never silently. */
static void
sweep_report(void *ud, const char *hash, uint64_t size, int err)
{
	(void)ud;
	if (err)
		log_warn(NULL, "cannot remove orphan blob hash=%s error=\"%s\"", hash, strerror(err));
	else
		log_info(NULL, "orphan blob reclaimed hash=%s size=%llu", hash,
		    (unsigned long long)size);
}

/* store.sweep() -> a sweep over the blob store (the engine's only: a
 * read-only archive has no business removing files) */
static int
l_sweep(lua_State *L)
{
	struct store *s = store_current();
	struct sweep *sw;
	char err[512];

	if (s == NULL || s->db == NULL || s->readonly)
		return luaL_error(L, "reclaiming orphan blobs needs the running engine");
	sw = lua_newuserdatauv(L, sizeof(*sw), 0);
	sw->r = NULL;
	luaL_setmetatable(L, SWEEP_HANDLE);
	sw->r = reclaim_new(s->data_dir, db_handle(s->db), 0, sweep_report, NULL, err,
	    sizeof(err));
	if (sw->r == NULL)
		return luaL_error(L, "%s", err);
	return 1;
}

static struct sweep *
check_sweep(lua_State *L)
{
	struct sweep *sw = luaL_checkudata(L, 1, SWEEP_HANDLE);

	if (sw->r == NULL)
		luaL_error(L, "the sweep is closed");
	return sw;
}

/* sweep:step(n) -> "more" | "done"; raises on a database error.
 * The archive must still be open: the sweep asks it about every file. */
static int
l_sweep_step(lua_State *L)
{
	struct sweep *sw = check_sweep(L);
	lua_Integer n = luaL_optinteger(L, 2, 256);
	int rc;

	if (store_current() == NULL)
		return luaL_error(L, "the archive is not open");
	rc = reclaim_step(sw->r, n > 0 && n < 1000000 ? (unsigned)n : 256);
	switch (rc) {
	case RECLAIM_MORE: lua_pushliteral(L, "more"); break;
	case RECLAIM_DONE: lua_pushliteral(L, "done"); break;
	default: return luaL_error(L, "%s", reclaim_error(sw->r));
	}
	return 1;
}

static int
l_sweep_counts(lua_State *L)
{
	const struct reclaim_counts *c = reclaim_counts(check_sweep(L)->r);

	lua_createtable(L, 0, 5);
	lua_pushinteger(L, (lua_Integer)c->scanned);
	lua_setfield(L, -2, "scanned");
	lua_pushinteger(L, (lua_Integer)c->orphans);
	lua_setfield(L, -2, "orphans");
	lua_pushinteger(L, (lua_Integer)c->reclaimed);
	lua_setfield(L, -2, "reclaimed");
	lua_pushinteger(L, (lua_Integer)c->bytes);
	lua_setfield(L, -2, "bytes");
	lua_pushinteger(L, (lua_Integer)c->failed);
	lua_setfield(L, -2, "failed");
	return 1;
}

static int
l_sweep_close(lua_State *L)
{
	struct sweep *sw = luaL_checkudata(L, 1, SWEEP_HANDLE);

	reclaim_free(sw->r);
	sw->r = NULL;
	return 0;
}

/* store.migrate_step(n) -> looked, { moved, bytes, missing, corrupt, left }:
 * up to N messages of the old layout into the pack store (store/migrate.h). */
static int
l_migrate_step(lua_State *L)
{
	struct store *s = store_current();
	struct migrate_counts c;
	char err[512];
	int n = (int)luaL_optinteger(L, 1, 100);

	if (s == NULL || s->db == NULL || s->readonly || s->packs == NULL)
		return luaL_error(L, "moving messages into packs needs the running engine");
	memset(&c, 0, sizeof(c));
	int looked = migrate_step(s, n < 1 ? 1 : n, &c, err, sizeof(err));
	if (looked < 0)
		return luaL_error(L, "%s", err);
	lua_pushinteger(L, looked);
	lua_createtable(L, 0, 5);
	lua_pushinteger(L, (lua_Integer)c.moved);
	lua_setfield(L, -2, "moved");
	lua_pushinteger(L, (lua_Integer)c.bytes);
	lua_setfield(L, -2, "bytes");
	lua_pushinteger(L, (lua_Integer)c.missing);
	lua_setfield(L, -2, "missing");
	lua_pushinteger(L, (lua_Integer)c.corrupt);
	lua_setfield(L, -2, "corrupt");
	lua_pushinteger(L, (lua_Integer)migrate_left(s));
	lua_setfield(L, -2, "left");
	return 2;
}

int
luaopen_vault_store(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "query", l_query },
		{ "exec", l_exec },
		{ "is_open", l_is_open },
		{ "data_dir", l_data_dir },
		{ "sweep", l_sweep },
		{ "migrate_step", l_migrate_step },
		{ NULL, NULL }
	};
	static const luaL_Reg sweep_methods[] = {
		{ "step", l_sweep_step },
		{ "counts", l_sweep_counts },
		{ "close", l_sweep_close },
		{ NULL, NULL }
	};
	if (luaL_newmetatable(L, SWEEP_HANDLE)) {
		luaL_newlib(L, sweep_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_sweep_close);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, l_sweep_close);
		lua_setfield(L, -2, "__close");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}

/*
 * vault.store: SQL on archive.db for the Lua half. Policy code (statuses,
 * folder state, reconciliation, stats) reads and writes through
 * store.query / store.exec with bound parameters; the hot path (archiving
 * messages) stays in src/sync/archive.c.
 */
#include <string.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "store/db.h"
#include "store/store.h"

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
static int
l_query(lua_State *L)
{
	sqlite3 *db = check_db(L);
	const char *sql = luaL_checkstring(L, 1);
	sqlite3_stmt *st;
	lua_Integer row = 0;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return luaL_error(L, "archive.db: %s", sqlite3_errmsg(db));
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
		return luaL_error(L, "archive.db: %s", sqlite3_errmsg(db));
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
		return luaL_error(L, "archive.db: %s", sqlite3_errmsg(db));
	bind_args(L, st, 2);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return luaL_error(L, "archive.db: %s", sqlite3_errmsg(db));
	lua_pushinteger(L, sqlite3_changes(db));
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

int
luaopen_vault_store(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "query", l_query },
		{ "exec", l_exec },
		{ "is_open", l_is_open },
		{ "data_dir", l_data_dir },
		{ NULL, NULL }
	};
	luaL_newlib(L, funcs);
	return 1;
}

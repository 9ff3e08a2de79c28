/*
 * vault.storage: where the archive's segments are. attach{...} puts them
 * on S3 (store/remote.h, store/pack_remote.c) once, at engine start,
 * before any source runs: it checks the bucket with the keys, sweeps the
 * part objects a crash left unnamed, and from then on every batch is
 * uploaded before it commits. The settings come from emailvault.lua
 * (lua/config.lua) with secrets already revealed; they are not kept in Lua.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "log.h"
#include "lua/storage.h"
#include "lua/vm.h"
#include "store/db.h"
#include "store/pack.h"
#include "store/remote.h"
#include "store/store.h"

static const char *
opt_string(lua_State *L, int t, const char *name)
{
	const char *s;

	lua_getfield(L, t, name);
	s = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
	lua_pop(L, 1);		/* the table keeps the string alive */
	return s;
}

static uint64_t
opt_size(lua_State *L, int t, const char *name)
{
	lua_Integer v;

	lua_getfield(L, t, name);
	v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
	lua_pop(L, 1);
	return v > 0 ? (uint64_t)v : 0;
}

void
storage_config_from_lua(lua_State *L, int t, struct remote_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->s3.endpoint = opt_string(L, t, "endpoint");
	cfg->s3.region = opt_string(L, t, "region");
	cfg->s3.bucket = opt_string(L, t, "bucket");
	cfg->s3.prefix = opt_string(L, t, "prefix");
	cfg->s3.access_key = opt_string(L, t, "access_key");
	cfg->s3.secret_key = opt_string(L, t, "secret_key");
	cfg->s3.ca_file = opt_string(L, t, "ca_file");
	lua_getfield(L, t, "path_style");
	cfg->s3.path_style = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
	lua_pop(L, 1);
	cfg->s3.part_size = opt_size(L, t, "part_size");
	cfg->s3.multipart_threshold = opt_size(L, t, "multipart_threshold");
	cfg->s3.timeout = 60;
	cfg->segment_max = opt_size(L, t, "segment_size");
	lua_getfield(L, t, "cache_size");
	cfg->cache_bytes = lua_isinteger(L, -1) ? (int64_t)lua_tointeger(L, -1) : -1;
	lua_pop(L, 1);
}

/* location(): "s3" when archive.db says the segments are on S3 (the engine
 * then refuses to run without storage = s3 { ... }), else "local". */
static int
l_location(lua_State *L)
{
	struct store *s = store_current();
	sqlite3_stmt *st;
	const char *where = "local";

	if (s && s->db && sqlite3_prepare_v2(db_handle(s->db), "SELECT value FROM storage_info "
	    "WHERE key = 'location'", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0),
		    "s3") == 0)
			where = "s3";
		sqlite3_finalize(st);
	}
	lua_pushstring(L, where);
	return 1;
}

/* attach{ endpoint, region, bucket, prefix, access_key, secret_key,
 * path_style, ca_file, part_size, multipart_threshold, segment_size,
 * cache_size }: true and { engine_id, swept }, or nil, kind, message. */
static int
l_attach(lua_State *L)
{
	struct store *s = store_current();
	struct remote_config cfg;
	struct s3_error err;
	struct remote *r;
	char msg[512];
	long swept;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (s == NULL || s->packs == NULL)
		return luaL_error(L, "the archive is not open for writing");
	if (s->remote)
		return luaL_error(L, "the archive's storage is attached already");
	storage_config_from_lua(L, 1, &cfg);
	/* At start, before the loop runs any source: a bounded check. */
	r = remote_open(&cfg, db_handle(s->db), vm_of(L)->base, &err);
	if (r == NULL) {
		lua_pushnil(L);
		lua_pushstring(L, err.kind);
		lua_pushstring(L, err.message);
		return 3;
	}
	if (pack_store_set_remote(s->packs, r, msg, sizeof(msg)) < 0) {
		remote_close(r);
		lua_pushnil(L);
		lua_pushstring(L, "storage");
		lua_pushstring(L, msg);
		return 3;
	}
	s->remote = r;
	remote_set_current(r);
	swept = remote_sweep(r, db_handle(s->db), pack_store_run(s->packs), &err);
	if (swept < 0)
		log_warn(NULL, "S3: the sweep of unnamed objects failed (tried again at the next start): "
		    "%s", err.message);
	lua_pushboolean(L, 1);
	lua_createtable(L, 0, 3);
	lua_pushstring(L, remote_engine_id(r));
	lua_setfield(L, -2, "engine_id");
	lua_pushinteger(L, swept);
	lua_setfield(L, -2, "swept");
	lua_pushinteger(L, (lua_Integer)pack_store_run(s->packs));
	lua_setfield(L, -2, "run");
	return 2;
}

/* info(): nil for the data folder, else { kind = "s3", engine_id, endpoint
 * (host:port), bucket, prefix, uploading }. */
static int
l_info(lua_State *L)
{
	struct store *s = store_current();

	if (s == NULL || s->remote == NULL) {
		lua_pushnil(L);
		return 1;
	}
	const struct remote_config *c = remote_config(s->remote);
	lua_createtable(L, 0, 6);
	lua_pushstring(L, "s3");
	lua_setfield(L, -2, "kind");
	lua_pushstring(L, remote_engine_id(s->remote));
	lua_setfield(L, -2, "engine_id");
	lua_pushstring(L, remote_hostport(s->remote));
	lua_setfield(L, -2, "endpoint");
	lua_pushstring(L, c->s3.bucket);
	lua_setfield(L, -2, "bucket");
	lua_pushstring(L, c->s3.prefix ? c->s3.prefix : "");
	lua_setfield(L, -2, "prefix");
	lua_pushinteger(L, pack_store_uploading(s->packs));
	lua_setfield(L, -2, "uploading");
	return 1;
}

int
luaopen_vault_storage(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "attach", l_attach },
		{ "info", l_info },
		{ "location", l_location },
		{ NULL, NULL }
	};
	luaL_newlib(L, funcs);
	return 1;
}

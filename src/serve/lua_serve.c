/*
 * vault.serve: the IMAP view's mechanism for lua/serve.lua, which decides
 * from emailvault.lua's `serve = imap {...}` when to listen and who may
 * log in. One server per engine.
 *
 *   serve.start{ listen =, tls =, cert_file =, key_file =, allow_plaintext =,
 *                users = { { name =, password =, sources = {...} }, ... } }
 *   serve.set_users(users)    -- the same list; sessions of changed users end
 *   serve.stop()
 *   serve.info()              -- { listen, sessions, logins, failures, connections } or nil
 *
 * Passwords are hashed here (PBKDF2 with a fresh salt) and the plain
 * text is not kept.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "lua/vm.h"
#include "serve/lua_serve.h"
#include "serve/serve.h"
#include "store/db.h"
#include "store/store.h"

static struct server *running;

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *
json_list(char **v, int n)
{
	size_t cap = 3;
	char *out, *o;

	for (int i = 0; i < n; i++)
		cap += strlen(v[i]) * 6 + 3;
	if ((o = out = malloc(cap)) == NULL)
		return NULL;
	*o++ = '[';
	for (int i = 0; i < n; i++) {
		if (i)
			*o++ = ',';
		*o++ = '"';
		for (const unsigned char *c = (const unsigned char *)v[i]; *c; c++) {
			if (*c == '"' || *c == '\\') {
				*o++ = '\\';
				*o++ = (char)*c;
			} else if (*c < 0x20) {
				o += sprintf(o, "\\u%04x", *c);
			} else {
				*o++ = (char)*c;
			}
		}
		*o++ = '"';
	}
	*o++ = ']';
	*o = '\0';
	return out;
}

/* The users list at IDX into *OUT. Raises on a malformed list. */
static int
read_users(lua_State *L, int idx, struct serve_user **out)
{
	int n = (int)luaL_len(L, idx), k = 0;
	struct serve_user *v = calloc(n > 0 ? (size_t)n : 1, sizeof(*v));

	if (v == NULL)
		return luaL_error(L, "out of memory");
	for (int i = 1; i <= n; i++) {
		struct serve_user *u = &v[k];
		size_t pwlen;
		lua_rawgeti(L, idx, i);
		lua_getfield(L, -1, "name");
		lua_getfield(L, -2, "password");
		lua_getfield(L, -3, "sources");
		const char *name = lua_tostring(L, -3), *pw = lua_tolstring(L, -2, &pwlen);
		if (name == NULL || pw == NULL || !lua_istable(L, -1)) {
			for (int j = 0; j < k; j++)
				serve_user_free(&v[j]);
			free(v);
			return luaL_error(L, "serve: user %d needs a name, a password and sources", i);
		}
		u->name = strdup(name);
		int ns = (int)luaL_len(L, -1);
		u->sources = calloc(ns > 0 ? (size_t)ns : 1, sizeof(char *));
		for (int s = 1; u->sources && s <= ns; s++) {
			lua_rawgeti(L, -1, s);
			const char *src = lua_tostring(L, -1);
			int dup = 0;
			for (int t = 0; src && t < u->nsources; t++)
				dup |= strcmp(u->sources[t], src) == 0;
			if (src && !dup)
				u->sources[u->nsources++] = strdup(src);
			lua_pop(L, 1);
		}
		if (u->sources)
			qsort(u->sources, (size_t)u->nsources, sizeof(char *), cmp_str);
		u->sources_json = u->sources ? json_list(u->sources, u->nsources) : NULL;
		if (RAND_bytes(u->salt, SERVE_SALT) != 1 || u->name == NULL || u->sources_json == NULL ||
		    serve_hash_password(pw, pwlen, u->salt, u->hash) < 0) {
			lua_pop(L, 4);
			for (int j = 0; j <= k; j++)
				serve_user_free(&v[j]);
			free(v);
			return luaL_error(L, "serve: cannot prepare user %d", i);
		}
		k++;
		lua_pop(L, 4);
	}
	*out = v;
	return k;
}

static const char *
opt_string(lua_State *L, int idx, const char *field)
{
	lua_getfield(L, idx, field);
	const char *s = lua_tostring(L, -1);
	lua_pop(L, 1);	/* the table still holds it */
	return s;
}

static int
opt_bool(lua_State *L, int idx, const char *field)
{
	lua_getfield(L, idx, field);
	int b = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return b;
}

static int
l_start(lua_State *L)
{
	struct serve_opts o;
	struct store *st = store_current();
	struct serve_user *users;
	char err[512];
	int n;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (running)
		return luaL_error(L, "serve: already running (stop it first)");
	if (st == NULL || st->db == NULL) {
		lua_pushnil(L);
		lua_pushstring(L, "the archive is not open");
		return 2;
	}
	memset(&o, 0, sizeof(o));
	o.listen = opt_string(L, 1, "listen");
	o.tls = opt_bool(L, 1, "tls");
	o.cert_file = opt_string(L, 1, "cert_file");
	o.key_file = opt_string(L, 1, "key_file");
	o.allow_plaintext = opt_bool(L, 1, "allow_plaintext");
	if (o.listen == NULL)
		return luaL_error(L, "serve.start: listen is required");
	lua_getfield(L, 1, "users");
	luaL_checktype(L, -1, LUA_TTABLE);
	n = read_users(L, lua_gettop(L), &users);
	lua_pop(L, 1);
	running = server_start(vm_of(L)->base, db_handle(st->db), st->data_dir, &o, err, sizeof(err));
	if (running == NULL) {
		for (int i = 0; i < n; i++)
			serve_user_free(&users[i]);
		free(users);
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	server_set_users(running, users, n);
	lua_pushboolean(L, 1);
	return 1;
}

static int
l_set_users(lua_State *L)
{
	struct serve_user *users;
	int n;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (running == NULL)
		return luaL_error(L, "serve: not running");
	n = read_users(L, 1, &users);
	server_set_users(running, users, n);
	return 0;
}

static int
l_stop(lua_State *L)
{
	(void)L;
	serve_binding_shutdown();
	return 0;
}

static int
l_info(lua_State *L)
{
	if (running == NULL) {
		lua_pushnil(L);
		return 1;
	}
	lua_createtable(L, 0, 5);
	lua_pushstring(L, running->listen);
	lua_setfield(L, -2, "listen");
	lua_pushinteger(L, running->nsessions);
	lua_setfield(L, -2, "sessions");
	lua_pushinteger(L, running->logins);
	lua_setfield(L, -2, "logins");
	lua_pushinteger(L, running->failures);
	lua_setfield(L, -2, "failures");
	lua_pushinteger(L, running->connections);
	lua_setfield(L, -2, "connections");
	return 1;
}

void
serve_binding_shutdown(void)
{
	if (running) {
		server_stop(running);
		running = NULL;
	}
}

int
luaopen_vault_serve(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "start", l_start }, { "set_users", l_set_users }, { "stop", l_stop },
		{ "info", l_info }, { NULL, NULL },
	};
	luaL_newlib(L, fns);
	return 1;
}

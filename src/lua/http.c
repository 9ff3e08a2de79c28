/*
 * vault.http: HTTP requests for Lua on http/client.c. request{} waits inside
 * the calling task and returns { status, headers, body }, or nil and an error
 * table { kind, message }. One client serves the whole engine; its requests
 * live as long as the task waiting on them (cancelling the task ends the
 * transfer).
 */
#include "lua/http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "http/client.h"
#include "lua/task.h"
#include "lua/vm.h"

#define MAX_IN_FLIGHT 64
#define DEFAULT_TIMEOUT 30.0
#define MAX_SIZE_LIMIT ((lua_Integer)1 << 30)
#define MAX_REDIRECTS_LIMIT 20

static struct http_client *client;

struct lreq {
	struct vm *vm;
	struct task *task;
	struct task_token tok;
	void *cleanup;
	struct http_request *req;
};

struct outcome {
	const struct http_response *res;
	const struct net_error *err;
};

/* Response headers by lower-cased name; repeated ones joined with ", ". */
static void
push_headers(lua_State *L, const struct http_response *res)
{
	luaL_Buffer b;

	lua_createtable(L, 0, (int)res->nheaders);
	for (size_t i = 0; i < res->nheaders; i++) {
		const char *name = res->headers[i].name;
		luaL_buffinit(L, &b);
		for (const char *p = name; *p; p++)
			luaL_addchar(&b, (char)tolower((unsigned char)*p));
		luaL_pushresult(&b);
		lua_pushvalue(L, -1);
		if (lua_rawget(L, -3) == LUA_TSTRING) {
			lua_pushliteral(L, ", ");
			lua_pushstring(L, res->headers[i].value);
			lua_concat(L, 3);
		} else {
			lua_pop(L, 1);
			lua_pushstring(L, res->headers[i].value);
		}
		lua_rawset(L, -3);
	}
}

static int
push_outcome(lua_State *L, void *ud)
{
	const struct outcome *o = ud;

	if (o->err) {
		lua_pushnil(L);
		lua_createtable(L, 0, 2);
		lua_pushstring(L, o->err->kind);
		lua_setfield(L, -2, "kind");
		lua_pushstring(L, o->err->message);
		lua_setfield(L, -2, "message");
		return 2;
	}
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, o->res->status);
	lua_setfield(L, -2, "status");
	push_headers(L, o->res);
	lua_setfield(L, -2, "headers");
	lua_pushlstring(L, o->res->body ? o->res->body : "", o->res->body_len);
	lua_setfield(L, -2, "body");
	return 1;
}

static void
done_cb(struct http_request *req, const struct http_response *res,
    const struct net_error *err, void *ud)
{
	struct lreq *lr = ud;
	struct outcome o = { res, err };

	(void)req;
	task_remove_cleanup(lr->task, lr->cleanup);
	task_wake(lr->vm, lr->tok, push_outcome, &o);
	free(lr);
}

/* The waiting task was cancelled (interrupt, task.cancel, engine stop). */
static void
cancelled_cleanup(void *ud)
{
	struct lreq *lr = ud;

	http_request_cancel(lr->req);
	free(lr);
}

/* ---- options --------------------------------------------------------------- */

static const char *const known_fields[] = {
	"method", "url", "headers", "body", "timeout", "connect_timeout", "max_size",
	"max_redirects", "ca_file", "allow_insecure_cert", NULL
};

static void
check_fields(lua_State *L)
{
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		int ok = 0;
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING)
			for (int i = 0; known_fields[i] && !ok; i++)
				ok = strcmp(lua_tostring(L, -1), known_fields[i]) == 0;
		if (!ok)
			luaL_error(L, "vault.http.request: unknown field %s (known: method, url, "
			    "headers, body, timeout, connect_timeout, max_size, max_redirects, "
			    "ca_file, allow_insecure_cert)",
			    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a name)");
	}
}

static const char *
opt_string(lua_State *L, const char *k)
{
	const char *v = NULL;

	if (lua_getfield(L, 1, k) != LUA_TNIL) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "vault.http.request: %s must be a string", k);
		v = lua_tostring(L, -1);
	}
	lua_pop(L, 1);	/* still referenced by the options table */
	return v;
}

static double
opt_number(lua_State *L, const char *k, double def, double min, double max)
{
	double v = def;

	if (lua_getfield(L, 1, k) != LUA_TNIL) {
		if (!lua_isnumber(L, -1))
			luaL_error(L, "vault.http.request: %s must be a number", k);
		v = lua_tonumber(L, -1);
		if (!(v >= min && v <= max)) {
			char range[80];
			snprintf(range, sizeof(range), "from %g to %g", min, max);
			luaL_error(L, "vault.http.request: %s must be %s", k, range);
		}
	}
	lua_pop(L, 1);
	return v;
}

/* Splits "Name: value" (a list entry): pushes the value, then the name.
 * Blanks around the value are not part of it. The line is not repeated in
 * the error: it may hold a token. */
static void
split_line(lua_State *L, const char *line)
{
	const char *colon = strchr(line, ':'), *v, *end;

	if (colon == NULL || colon == line)
		luaL_error(L, "vault.http.request: a header list entry is not \"Name: value\"");
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (end = v + strlen(v); end > v && (end[-1] == ' ' || end[-1] == '\t'); end--)
		;
	lua_pushlstring(L, v, (size_t)(end - v));
	lua_pushlstring(L, line, (size_t)(colon - line));
}

/* headers: a table name -> value, a list of "Name: value", or both. The
 * strings stay referenced by ANCHOR (a table on the stack) until the
 * request has copied them. */
static struct http_field *
collect_headers(lua_State *L, int anchor, size_t *count)
{
	struct http_field *f;
	size_t n = 0, i = 0;

	if (lua_getfield(L, 1, "headers") == LUA_TNIL) {
		lua_pop(L, 1);
		*count = 0;
		return NULL;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "vault.http.request: headers must be a table");
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		lua_pop(L, 1);
		n++;
	}
	f = lua_newuserdatauv(L, (n ? n : 1) * sizeof(*f), 0);
	lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
	lua_pushnil(L);
	while (lua_next(L, -2)) {
		if (lua_type(L, -2) == LUA_TNUMBER) {
			if (lua_type(L, -1) != LUA_TSTRING)
				luaL_error(L, "vault.http.request: header list entries must be "
				    "strings \"Name: value\"");
			split_line(L, lua_tostring(L, -1));
			f[i].name = lua_tostring(L, -1);
			f[i].value = lua_tostring(L, -2);
			lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
			lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
		} else if (lua_type(L, -2) == LUA_TSTRING) {
			if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
				luaL_error(L, "vault.http.request: header %s must be a string",
				    lua_tostring(L, -2));
			f[i].name = lua_tostring(L, -2);
			lua_pushvalue(L, -1);
			f[i].value = lua_tostring(L, -1);	/* a number becomes its text */
			lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
		} else {
			luaL_error(L, "vault.http.request: headers must be names or a list");
		}
		lua_pop(L, 1);
		i++;
	}
	lua_pop(L, 1);	/* the headers table, referenced by the options */
	*count = i;
	return f;
}

/* vault.http.request{ method=, url=, headers=, body=, timeout=, ... } */
static int
l_request(lua_State *L)
{
	struct http_opts o;
	struct net_error err;
	struct task *t = task_current(L);
	struct lreq *lr;
	char method[40];
	const char *m, *name;
	size_t i;
	int anchor;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	if (t == NULL)
		return luaL_error(L, "vault.http.request must run in a task (eval, the REPL, "
		    "an event handler or a source's hook), not the main thread or a plain "
		    "coroutine");
	if (!lua_isyieldable(L))
		return luaL_error(L, "vault.http.request cannot wait here: it is called from a "
		    "function that cannot yield (such as a table.sort or string.gsub callback)");
	check_fields(L);
	memset(&o, 0, sizeof(o));
	lua_newtable(L);
	anchor = lua_gettop(L);

	o.url = opt_string(L, "url");
	if (o.url == NULL)
		return luaL_error(L, "vault.http.request: url is required");
	m = opt_string(L, "method");
	if (m) {
		for (i = 0; m[i] && i < sizeof(method) - 1; i++)
			method[i] = (char)toupper((unsigned char)m[i]);
		method[i] = '\0';
		o.method = method;
	}
	o.headers = collect_headers(L, anchor, &o.nheaders);
	if (lua_getfield(L, 1, "body") != LUA_TNIL) {
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_error(L, "vault.http.request: body must be a string");
		o.body = lua_tolstring(L, -1, &o.body_len);
	}
	lua_pop(L, 1);
	o.timeout = opt_number(L, "timeout", DEFAULT_TIMEOUT, 0.001, 86400);
	o.connect_timeout = opt_number(L, "connect_timeout", 0, 0.001, 86400);
	o.max_size = (uint64_t)opt_number(L, "max_size", (double)HTTP_DEFAULT_MAX_SIZE, 1,
	    (double)MAX_SIZE_LIMIT);
	o.max_redirects = (int)opt_number(L, "max_redirects", HTTP_DEFAULT_REDIRECTS, 0,
	    MAX_REDIRECTS_LIMIT);
	if (o.max_redirects == 0)
		o.max_redirects = HTTP_NO_REDIRECTS;
	o.ca_file = opt_string(L, "ca_file");
	lua_getfield(L, 1, "allow_insecure_cert");
	o.allow_insecure = lua_toboolean(L, -1);
	lua_pop(L, 1);
	name = task_name(t);
	if (strncmp(name, "source:", 7) == 0)
		o.log_source = name + 7;

	if (client == NULL && (client = http_client_new(vm_of(L)->base, MAX_IN_FLIGHT)) == NULL)
		return luaL_error(L, "vault.http.request: cannot start the HTTP client");
	if ((lr = calloc(1, sizeof(*lr))) == NULL)
		return luaL_error(L, "vault.http.request: out of memory");
	o.done = done_cb;
	o.ud = lr;
	lr->vm = vm_of(L);
	lr->task = t;
	lr->req = http_request_new(client, &o, &err);
	if (lr->req == NULL) {
		free(lr);
		return luaL_error(L, "vault.http.request: %s", err.message);
	}
	lr->cleanup = task_add_cleanup(t, cancelled_cleanup, lr);
	if (lr->cleanup == NULL) {
		http_request_cancel(lr->req);
		free(lr);
		return luaL_error(L, "vault.http.request: out of memory");
	}
	lr->tok = task_wait(t);
	return lua_yield(L, 0);
}

void
http_binding_shutdown(void)
{
	http_client_free(client);
	client = NULL;
}

int
luaopen_vault_http(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "request", l_request },
		{ NULL, NULL }
	};
	luaL_newlib(L, funcs);
	return 1;
}

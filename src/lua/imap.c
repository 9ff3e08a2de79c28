/*
 * vault.imap: IMAP connections for Lua. Every method waits inside the
 * calling task (it yields) and returns its result, or nil and an error table
 * { kind = ..., message = ..., code = ... }. A connection handle holds only
 * an id, so a handle that outlives its connection fails cleanly.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "imap/client.h"
#include "imap/format.h"
#include "imap/utf7.h"
#include "log.h"
#include "lua/imap_conn.h"
#include "lua/task.h"
#include "lua/vm.h"

static struct lconn *conns;
static uint64_t last_conn_id;
static int shutting_down;	/* no loop any more: free at once */

static struct lconn *
find_conn(uint64_t id)
{
	for (struct lconn *lc = conns; lc; lc = lc->next)
		if (lc->id == id)
			return lc;
	return NULL;
}

static void
unlink_conn(struct lconn *lc)
{
	for (struct lconn **pp = &conns; *pp; pp = &(*pp)->next) {
		if (*pp == lc) {
			*pp = lc->next;
			return;
		}
	}
}

static void
clear_lits(struct lconn *lc)
{
	for (int i = 0; i < lc->nlits; i++)
		free(lc->lits[i].data);
	lc->nlits = 0;
	free(lc->cur.data);
	memset(&lc->cur, 0, sizeof(lc->cur));
	lc->streaming = 0;
}


static void
destroy_conn(struct lconn *lc)
{
	unlink_conn(lc);
	if (lc->client)
		imap_client_free(lc->client);
	if (lc->job)
		archive_free(lc->job);
	unref_hooks(lc);
	if (lc->idle_timer)
		event_free(lc->idle_timer);
	clear_lits(lc);
	free(lc->lits);
	if (lc->result_ref != LUA_NOREF && lc->result_ref != 0)
		luaL_unref(lc->vm->L, LUA_REGISTRYINDEX, lc->result_ref);
	free(lc->source);
	free(lc);
}

/* ---- waking the task --------------------------------------------------- */

static void
push_error(lua_State *L, const char *kind, const char *message, const char *code)
{
	lua_createtable(L, 0, 3);
	lua_pushstring(L, kind);
	lua_setfield(L, -2, "kind");
	lua_pushstring(L, message);
	lua_setfield(L, -2, "message");
	if (code && code[0]) {
		lua_pushstring(L, code);
		lua_setfield(L, -2, "code");
	}
}

static int push_handle(lua_State *L, struct lconn *lc);

static int
push_result(lua_State *co, void *ud)
{
	struct lconn *lc = ud;

	if (lc->failed) {
		lua_pushnil(co);
		push_error(co, lc->err.kind, lc->err.message, lc->code);
		return 2;
	}
	if (lc->op == OP_CONNECT)
		return push_handle(co, lc);
	if (lc->op == OP_LOGOUT) {
		lua_pushboolean(co, 1);
		return 1;
	}
	if (lc->op == OP_ARCHIVE) {
		push_progress(co, &lc->result);
		return 1;
	}
	if (lc->result_ref != LUA_NOREF) {
		lua_rawgeti(co, LUA_REGISTRYINDEX, lc->result_ref);
		return 1;
	}
	lua_pushboolean(co, 1);
	return 1;
}

/* Ends the current op: wakes the waiting task with its result. */
void
finish_op(struct lconn *lc)
{
	struct task_token tok = lc->tok;

	if (lc->op == OP_NONE)
		return;
	if (lc->task && lc->cleanup)
		task_remove_cleanup(lc->task, lc->cleanup);
	lc->cleanup = NULL;
	lc->task = NULL;
	task_wake(lc->vm, tok, push_result, lc);
	lc->op = OP_NONE;
	clear_lits(lc);
	if (lc->result_ref != LUA_NOREF) {
		luaL_unref(lc->vm->L, LUA_REGISTRYINDEX, lc->result_ref);
		lc->result_ref = LUA_NOREF;
	}
	lc->failed = 0;
	lc->code[0] = '\0';
}

void
op_fail(struct lconn *lc, const char *kind, const char *code, const char *fmt, const char *arg)
{
	if (lc->failed)
		return;
	lc->failed = 1;
	snprintf(lc->err.kind, sizeof(lc->err.kind), "%s", kind);
	snprintf(lc->err.message, sizeof(lc->err.message), fmt, arg);
	snprintf(lc->code, sizeof(lc->code), "%s", code ? code : "");
}

/* A task waiting on this connection was cancelled: the protocol state is
 * unknown, so the connection goes. */
static void
deferred_destroy(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	destroy_conn(arg);
}

void
free_job_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	archive_free(arg);
}

/* Closes now, frees from the loop: this may run inside one of the client's
 * or the job's own callbacks (a hook that pauses its source), which must not
 * find their memory gone when they return. */
static void
destroy_conn_later(struct lconn *lc)
{
	struct timeval now = { 0, 0 };

	if (shutting_down) {
		destroy_conn(lc);
		return;
	}
	unlink_conn(lc);
	if (lc->client)
		imap_client_close(lc->client, 1);
	event_base_once(lc->vm->base, -1, EV_TIMEOUT, deferred_destroy, lc, &now);
}

/* A task waiting on this connection was cancelled: the protocol state is
 * unknown, so the connection goes. */
static void
cancelled_cleanup(void *ud)
{
	struct lconn *lc = ud;
	enum op op = lc->op;
	struct timeval now = { 0, 0 };

	lc->cleanup = NULL;
	lc->task = NULL;
	lc->op = OP_NONE;
	if (op == OP_CONNECT) {
		destroy_conn_later(lc);	/* no handle was ever given out */
		return;
	}
	if (lc->client)
		imap_client_close(lc->client, 1);	/* drops the job's commands silently */
	if (lc->job) {
		event_base_once(lc->vm->base, -1, EV_TIMEOUT, free_job_later, lc->job, &now);
		lc->job = NULL;
	}
}

int
wait_op(lua_State *L, struct lconn *lc, enum op op)
{
	struct task *t = task_current(L);

	lc->op = op;
	lc->task = t;
	lc->tok = task_wait(t);
	lc->cleanup = task_add_cleanup(t, cancelled_cleanup, lc);
	return lua_yield(L, 0);
}

static void idle_send_done(struct lconn *lc);

static void
on_untagged(void *ud, const struct imap_response *r)
{
	struct lconn *lc = ud;
	lua_State *L = lc->vm->L;
	struct convert cv = { lc, r };

	if (lc->op == OP_NONE || lc->result_ref == LUA_NOREF || lc->failed)
		return;
	lua_pushcfunction(L, convert_untagged);
	lua_pushlightuserdata(L, &cv);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		op_fail(lc, "protocol", NULL, "cannot hold the response: %s", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	if (lc->op == OP_FETCH)
		clear_lits(lc);	/* they belonged to this response */
	if (lc->op == OP_IDLE && r->kind == IMAP_RESP_DATA)
		idle_send_done(lc);	/* something happened: end the IDLE */
}

static int
on_lit_begin(void *ud, const struct imap_literal_info *li)
{
	struct lconn *lc = ud;

	if (lc->op != OP_FETCH)
		return IMAP_LIT_INLINE;
	if (li->size > LUA_LITERAL_MAX) {
		op_fail(lc, "protocol", NULL, "a literal of %s bytes is too large to return to Lua",
		    "more than 256 MiB");
		return -1;
	}
	lc->cur.len = 0;
	lc->cur.cap = (size_t)li->size + 1;
	lc->cur.data = malloc(lc->cur.cap);
	if (lc->cur.data == NULL)
		return -1;
	lc->streaming = 1;
	return IMAP_LIT_STREAM;
}

static int
on_lit_data(void *ud, const char *data, size_t len)
{
	struct lconn *lc = ud;

	if (!lc->streaming || lc->cur.len + len > lc->cur.cap)
		return -1;
	memcpy(lc->cur.data + lc->cur.len, data, len);
	lc->cur.len += len;
	return 0;
}

static int
on_lit_end(void *ud)
{
	struct lconn *lc = ud;

	if (!lc->streaming)
		return 0;
	if (lc->nlits == lc->lits_cap) {
		int cap = lc->lits_cap ? lc->lits_cap * 2 : 4;
		struct litbuf *grown = realloc(lc->lits, sizeof(*grown) * (size_t)cap);
		if (grown == NULL)
			return -1;
		lc->lits = grown;
		lc->lits_cap = cap;
	}
	lc->lits[lc->nlits++] = lc->cur;
	memset(&lc->cur, 0, sizeof(lc->cur));
	lc->streaming = 0;
	return 0;
}

static void
on_done(void *ud, const struct imap_response *r, const struct net_error *err)
{
	struct lconn *lc = ud;

	if (lc->op == OP_NONE)
		return;
	if (err) {
		if (!lc->failed) {
			lc->failed = 1;
			lc->err = *err;
		}
	} else if (r->status != IMAP_STATUS_OK && lc->op != OP_LOGOUT &&
	    lc->op != OP_STATUS_MANY) {	/* a refused folder is left out of the many */
		char said[600];
		imap_response_describe(r, said, sizeof(said));
		if (!lc->failed) {
			lc->failed = 1;
			snprintf(lc->err.kind, sizeof(lc->err.kind), "protocol");
			snprintf(lc->err.message, sizeof(lc->err.message),
			    "%.300s: the server said \"%s\"", lc->what, said);
			snprintf(lc->code, sizeof(lc->code), "%s", r->code.name ? r->code.name : "");
		}
	}
	if (--lc->pending > 0)
		return;
	if (lc->op == OP_LOGOUT && lc->client)
		imap_client_close(lc->client, 1);
	if (lc->idle_timer)
		evtimer_del(lc->idle_timer);
	if (lc->client)
		imap_client_set_idling(lc->client, 0);
	finish_op(lc);
}

static struct imap_handler
handler_for(struct lconn *lc)
{
	struct imap_handler h;

	memset(&h, 0, sizeof(h));
	h.ud = lc;
	h.on_untagged = on_untagged;
	h.on_done = on_done;
	h.literal_begin = on_lit_begin;
	h.literal_data = on_lit_data;
	h.literal_end = on_lit_end;
	return h;
}

/* ---- the connection object --------------------------------------------- */

struct handle {
	uint64_t id;
};

static int
push_handle(lua_State *L, struct lconn *lc)
{
	struct handle *h = lua_newuserdatauv(L, sizeof(*h), 0);

	h->id = lc->id;
	luaL_setmetatable(L, CONN_HANDLE);
	return 1;
}

struct lconn *
check_conn(lua_State *L, int need_open)
{
	struct handle *h = luaL_checkudata(L, 1, CONN_HANDLE);
	struct lconn *lc = find_conn(h->id);

	if (lc == NULL || lc->client == NULL)
		luaL_error(L, "this IMAP connection is closed");
	if (need_open && !imap_client_is_open(lc->client)) {
		/* Lost to the server or the network: an error of its kind
		 * (timeout, protocol...) for the caller, as any failed call. */
		const struct net_error *e = imap_client_error(lc->client);
		if (e == NULL)
			luaL_error(L, "this IMAP connection is closed");
		lua_pushnil(L);
		push_error(L, e->kind, e->message, NULL);
		return NULL;
	}
	if (lc->op != OP_NONE)
		luaL_error(L, "this IMAP connection is busy with another call");
	if (task_current(L) == NULL)
		luaL_error(L, "IMAP calls must run in a task (the REPL, eval or a source)");
	if (!lua_isyieldable(L))
		luaL_error(L, "IMAP calls wait, and cannot be made where the task cannot yield "
		    "(inside a table.sort comparator, a gsub callback or a metamethod)");
	return lc;
}

static void
begin_result(lua_State *L, struct lconn *lc)
{
	lua_newtable(L);
	lc->result_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lc->failed = 0;
	lc->code[0] = '\0';
}

/* Returns nil, err right away (no wait) when a command cannot be queued. */
int
closed_now(lua_State *L, struct lconn *lc)
{
	const struct net_error *e = imap_client_error(lc->client);

	if (lc->result_ref != LUA_NOREF) {
		luaL_unref(L, LUA_REGISTRYINDEX, lc->result_ref);
		lc->result_ref = LUA_NOREF;
	}
	lua_pushnil(L);
	push_error(L, e ? e->kind : "protocol", e ? e->message : "the connection is closed", NULL);
	return 2;
}

static void
ready_cb(struct imap_client *c, const struct net_error *err, void *ud)
{
	struct lconn *lc = ud;

	(void)c;
	if (err) {
		struct timeval now = { 0, 0 };
		lc->failed = 1;
		lc->err = *err;
		(void)now;
		finish_op(lc);
		/* No handle exists: free it once the client is out of its callback. */
		destroy_conn_later(lc);
		return;
	} else {
		log_info(lc->source, "connected server=%s security=\"%s\"",
		    imap_client_hostport(c), imap_client_security(c));
	}
	finish_op(lc);
}

const char *
opt_string(lua_State *L, int t, const char *k, const char *def)
{
	const char *v;

	lua_getfield(L, t, k);
	v = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
	lua_pop(L, 1);
	return v;
}

int
opt_boolean(lua_State *L, int t, const char *k)
{
	int v;

	lua_getfield(L, t, k);
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

double
opt_number(lua_State *L, int t, const char *k, double def)
{
	double v;

	lua_getfield(L, t, k);
	v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
	lua_pop(L, 1);
	return v;
}

/* vault.imap.connect{host, port, tls, allow_insecure_cert, username, password, ...} */
static int
l_connect(lua_State *L)
{
	struct imap_client_opts o;
	struct lconn *lc;
	const char *password;
	int tls_type;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (task_current(L) == NULL)
		return luaL_error(L, "vault.imap.connect must run in a task (the REPL, eval or a source)");
	memset(&o, 0, sizeof(o));
	o.host = opt_string(L, 1, "host", NULL);
	if (o.host == NULL)
		return luaL_error(L, "vault.imap.connect: host is required");
	lua_getfield(L, 1, "tls");
	tls_type = lua_type(L, -1);
	if (tls_type == LUA_TNIL || (tls_type == LUA_TBOOLEAN && lua_toboolean(L, -1)))
		o.tls = IMAP_TLS_IMPLICIT;
	else if (tls_type == LUA_TBOOLEAN)
		o.tls = IMAP_TLS_NONE;
	else if (tls_type == LUA_TSTRING && strcmp(lua_tostring(L, -1), "starttls") == 0)
		o.tls = IMAP_TLS_STARTTLS;
	else
		return luaL_error(L, "vault.imap.connect: tls must be true, \"starttls\" or false");
	lua_pop(L, 1);
	o.port = (int)opt_number(L, 1, "port", o.tls == IMAP_TLS_IMPLICIT ? 993 : 143);
	if (o.port < 1 || o.port > 65535)
		return luaL_error(L, "vault.imap.connect: port out of range");
	lua_getfield(L, 1, "allow_insecure_cert");
	o.allow_insecure = lua_toboolean(L, -1);
	lua_pop(L, 1);
	o.ca_file = opt_string(L, 1, "ca_file", NULL);
	o.username = opt_string(L, 1, "username", NULL);
	/* The password may be a secret object: reveal it through lua/secret.lua. */
	lua_getfield(L, 1, "password");
	if (lua_type(L, -1) == LUA_TTABLE) {
		lua_getglobal(L, "require");
		lua_pushliteral(L, "secret");
		lua_call(L, 1, 1);
		lua_getfield(L, -1, "reveal");
		lua_pushvalue(L, -3);
		lua_call(L, 1, 2);
		if (lua_isnil(L, -2))
			return luaL_error(L, "vault.imap.connect: %s", luaL_optstring(L, -1, "bad secret"));
		lua_pop(L, 1);
		lua_replace(L, -3);
		lua_pop(L, 1);
	}
	password = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
	/* An OAuth2 access token instead of the password (lua/oauth2.lua). */
	o.bearer = opt_string(L, 1, "oauth2_token", NULL);
	if (o.bearer && (password || o.username == NULL))
		return luaL_error(L, "vault.imap.connect: oauth2_token goes with a username and "
		    "no password");
	if (o.bearer == NULL && (o.username == NULL) != (password == NULL))
		return luaL_error(L, "vault.imap.connect: give both username and password");
	o.password = password;
	o.connect_timeout = opt_number(L, 1, "connect_timeout", 30);
	o.command_timeout = opt_number(L, 1, "timeout", 120);
	o.pipeline = (int)opt_number(L, 1, "pipeline", 4);
	if (o.pipeline < 1 || o.pipeline > 64)
		return luaL_error(L, "vault.imap.connect: pipeline must be 1 to 64");
	o.auth = opt_string(L, 1, "auth", NULL);
	if (o.auth && (o.bearer ? strcmp(o.auth, "oauthbearer") != 0 && strcmp(o.auth, "xoauth2") != 0 :
	    strcmp(o.auth, "login") != 0 && strcmp(o.auth, "plain") != 0))
		return luaL_error(L, "vault.imap.connect: auth must be %s", o.bearer ?
		    "\"oauthbearer\" or \"xoauth2\" with oauth2_token" : "\"login\" or \"plain\"");
	o.log_source = opt_string(L, 1, "source", NULL);
	if (o.log_source == NULL) {
		/* a source's task logs under the source's id */
		struct task *t = task_current(L);
		const char *n = task_name(t);
		if (strncmp(n, "source:", 7) == 0)
			o.log_source = n + 7;
	}

	lc = calloc(1, sizeof(*lc));
	if (lc == NULL)
		return luaL_error(L, "out of memory");
	lc->vm = vm_of(L);
	lc->id = ++last_conn_id;
	lc->result_ref = LUA_NOREF;
	lc->source = o.log_source ? strdup(o.log_source) : NULL;
	if (o.username == NULL) {
		o.username = "";
		o.password = "";
	}
	lc->next = conns;
	conns = lc;
	lc->client = imap_client_connect(lc->vm->base, &o, ready_cb, lc);
	lua_pop(L, 1);	/* the password */
	if (lc->client == NULL) {
		destroy_conn(lc);
		return luaL_error(L, "vault.imap.connect: out of memory");
	}
	return wait_op(L, lc, OP_CONNECT);
}

static int
send_simple(lua_State *L, struct lconn *lc, enum op op, const char *what, const char *cmd)
{
	struct imap_handler h = handler_for(lc);

	snprintf(lc->what, sizeof(lc->what), "%s", what);
	begin_result(L, lc);
	lc->pending = 1;
	if (imap_client_send(lc->client, &h, "%s", cmd) < 0)
		return closed_now(L, lc);
	return wait_op(L, lc, op);
}

/* conn:capabilities() -> sorted list of capability names */
static int
l_capabilities(lua_State *L)
{
	/* what the server offered: known even once the connection is lost
	 * (the next call that talks to it gives the error) */
	struct lconn *lc = check_conn(L, 0);
	const char *caps = imap_client_caps(lc->client);
	lua_Integer i = 1;

	lua_newtable(L);
	while (*caps) {
		while (*caps == ' ')
			caps++;
		const char *end = strchr(caps, ' ');
		if (end == NULL)
			end = caps + strlen(caps);
		if (end > caps) {
			lua_pushlstring(L, caps, (size_t)(end - caps));
			lua_rawseti(L, -2, i++);
		}
		caps = end;
	}
	lua_getglobal(L, "table");
	lua_getfield(L, -1, "sort");
	lua_pushvalue(L, -3);
	lua_call(L, 1, 0);
	lua_pop(L, 1);
	return 1;
}

static int
l_has(lua_State *L)
{
	/* what the server offered: known even once the connection is lost
	 * (the next call that talks to it gives the error) */
	struct lconn *lc = check_conn(L, 0);

	lua_pushboolean(L, imap_client_has_cap(lc->client, luaL_checkstring(L, 2)));
	return 1;
}

/* conn:list([pattern]) -> { {name=, raw=, delimiter=, flags=, selectable=, special_use=}, ... } */
static int
l_list(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	const char *pattern = luaL_optstring(L, 2, "*");
	char cmd[1024], pat[600];
	size_t plen;

	if (imap_format_astring(pat, sizeof(pat), pattern, strlen(pattern), 0, &plen) != 0)
		return luaL_error(L, "conn:list: the pattern cannot be sent");
	if (imap_client_has_cap(lc->client, "SPECIAL-USE") &&
	    imap_client_has_cap(lc->client, "LIST-EXTENDED"))
		snprintf(cmd, sizeof(cmd), "LIST \"\" %s RETURN (SPECIAL-USE)", pat);
	else
		snprintf(cmd, sizeof(cmd), "LIST \"\" %s", pat);
	return send_simple(L, lc, OP_LIST, "LIST", cmd);
}

/*
 * A folder argument: a UTF-8 name (sent as modified UTF-7), or a folder
 * record of conn:list() whose raw bytes are sent exactly as the server
 * listed them (a name that is not mUTF-7 cannot be re-encoded). Returns
 * the argument as command text into BUF, or -1 with the literal's bytes in
 * *LIT (sent after the server's "+").
 */
static void
folder_arg(lua_State *L, int idx, char *buf, size_t cap, size_t *outlen, const char **lit,
    size_t *litlen, const char **display)
{
	size_t len;
	const char *name;

	*lit = NULL;
	*litlen = 0;
	if (lua_istable(L, idx)) {
		lua_getfield(L, idx, "name");
		*display = lua_tostring(L, -1);
		lua_pop(L, 1);
		lua_getfield(L, idx, "raw");
		name = lua_tolstring(L, -1, &len);
		lua_pop(L, 1);	/* the record keeps the string alive */
		if (name == NULL)
			luaL_argerror(L, idx, "a folder record needs its raw name (from conn:list())");
		if (*display == NULL)
			*display = name;
		int rc = imap_format_astring(buf, cap, name, len, IMAP_FMT_STRING, outlen);
		if (rc == IMAP_FMT_NEEDLIT) {
			if (imap_format_literal(buf, cap, len, 0, 0, outlen) != 0)
				luaL_error(L, "folder name too long");
			*lit = name;
			*litlen = len;
		} else if (rc != 0) {
			luaL_error(L, "folder name too long");
		}
		return;
	}
	name = luaL_checklstring(L, idx, &len);
	*display = name;
	if (imap_format_mailbox(buf, cap, name, len, 0, outlen) != 0)
		luaL_error(L, "folder name %s is not valid UTF-8 or too long (pass the folder "
		    "record of conn:list() to use the server's own bytes)", name);
}

/* Queues VERB <folder at IDX> SUFFIX as one command (two parts with a
 * literal): 0, or -1 when the connection is closed. */
static int
queue_folder_cmd(lua_State *L, struct lconn *lc, const char *verb, int idx, const char *suffix)
{
	struct imap_handler h = handler_for(lc);
	char arg[2048], head[2200];
	const char *lit, *display;
	size_t alen, litlen;
	const char *parts[2];
	size_t lens[2];
	int rc;

	folder_arg(L, idx, arg, sizeof(arg), &alen, &lit, &litlen, &display);
	if (lit == NULL) {
		snprintf(head, sizeof(head), "%s %.*s%s", verb, (int)alen, arg, suffix);
		parts[0] = head;
		lens[0] = strlen(head);
		return imap_client_send_parts(lc->client, parts, lens, 1, &h) < 0 ? -1 : 0;
	}
	snprintf(head, sizeof(head), "%s %.*s", verb, (int)alen, arg);
	char *tail = malloc(litlen + strlen(suffix) + 1);
	if (tail == NULL)
		return luaL_error(L, "not enough memory");
	memcpy(tail, lit, litlen);
	memcpy(tail + litlen, suffix, strlen(suffix) + 1);
	parts[0] = head;
	lens[0] = strlen(head);
	parts[1] = tail;
	lens[1] = litlen + strlen(suffix);
	rc = imap_client_send_parts(lc->client, parts, lens, 2, &h);
	free(tail);
	return rc < 0 ? -1 : 0;
}

/* Sends VERB <folder> SUFFIX and waits for its answer. */
static int
send_folder_cmd(lua_State *L, struct lconn *lc, enum op op, const char *verb, int idx,
    const char *suffix)
{
	char arg[2048];
	const char *lit, *display;
	size_t alen, litlen;

	folder_arg(L, idx, arg, sizeof(arg), &alen, &lit, &litlen, &display);
	snprintf(lc->what, sizeof(lc->what), "%s %s", verb, display);
	begin_result(L, lc);
	lc->pending = 1;
	if (queue_folder_cmd(L, lc, verb, idx, suffix) < 0)
		return closed_now(L, lc);
	return wait_op(L, lc, op);
}

/* conn:examine(folder) -> { exists, uidvalidity, uidnext, highestmodseq, flags, ... } */
static int
l_examine(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */

	return send_folder_cmd(L, lc, OP_EXAMINE, "EXAMINE", 2,
	    imap_client_has_cap(lc->client, "CONDSTORE") ? " (CONDSTORE)" : "");
}

/* conn:status(folder [, "MESSAGES UIDNEXT UIDVALIDITY"]) -> { messages=, uidnext=, ... } */
static int
l_status(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	const char *items = luaL_optstring(L, 3, "MESSAGES UIDNEXT UIDVALIDITY UNSEEN");
	char suffix[300];

	for (const char *p = items; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == ' ' || *p == '-'))
			return luaL_error(L, "conn:status: items are names separated by spaces");
	if (strlen(items) > 200)
		return luaL_error(L, "conn:status: too many items");
	snprintf(suffix, sizeof(suffix), " (%s)", items);
	return send_folder_cmd(L, lc, OP_STATUS, "STATUS", 2, suffix);
}

/* conn:status_many(folders [, items]) -> { [raw name] = { messages=, ... } }:
 * one STATUS per folder, all sent at once (one round trip for a pass that
 * only needs to know what changed). A folder the server refuses is left
 * out; a lost connection gives nil, err. Keys are the names as the server
 * sends them back (a record's raw bytes). */
static int
l_status_many(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	luaL_checktype(L, 2, LUA_TTABLE);
	const char *items = luaL_optstring(L, 3, "MESSAGES UIDNEXT UIDVALIDITY");
	lua_Integer n = luaL_len(L, 2);
	char suffix[300];

	for (const char *p = items; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == ' ' || *p == '-'))
			return luaL_error(L, "conn:status_many: items are names separated by spaces");
	if (strlen(items) > 200)
		return luaL_error(L, "conn:status_many: too many items");
	snprintf(suffix, sizeof(suffix), " (%s)", items);
	snprintf(lc->what, sizeof(lc->what), "STATUS of %lld folders", (long long)n);
	begin_result(L, lc);
	if (n == 0) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, lc->result_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, lc->result_ref);
		lc->result_ref = LUA_NOREF;
		return 1;
	}
	lc->pending = 0;
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 2, i);
		int rc = queue_folder_cmd(L, lc, "STATUS", lua_gettop(L), suffix);
		lua_pop(L, 1);
		if (rc < 0)
			return closed_now(L, lc);
		lc->pending++;
	}
	return wait_op(L, lc, OP_STATUS_MANY);
}

/* conn:search(criteria) -> sorted UIDs (UID SEARCH; ESEARCH when offered) */
static int
l_search(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	const char *criteria = luaL_optstring(L, 2, "ALL");
	char cmd[2048];

	for (const char *p = criteria; *p; p++)
		if (*p == '\r' || *p == '\n')
			return luaL_error(L, "conn:search: criteria must be one line");
	if (imap_client_has_cap(lc->client, "ESEARCH"))
		snprintf(cmd, sizeof(cmd), "UID SEARCH RETURN (ALL) %s", criteria);
	else
		snprintf(cmd, sizeof(cmd), "UID SEARCH %s", criteria);
	return send_simple(L, lc, OP_SEARCH, "UID SEARCH", cmd);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * conn:fetch(uids, items [, {batch = 200}]) -> { {uid=, flags=, size=, body=...}, ... }
 * uids: a list of UIDs or a set string such as "1:*". Items default to
 * "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]". Batches of UIDs are
 * pipelined up to the connection's pipeline depth.
 */
static int
l_fetch(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	const char *items = luaL_optstring(L, 3, "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]");
	struct imap_handler h = handler_for(lc);
	lua_Integer batch = 200;
	char cmd[4096];

	for (const char *p = items; *p; p++)
		if (*p == '\r' || *p == '\n' || *p == '{')
			return luaL_error(L, "conn:fetch: items must be one line");
	/* BODY[...] would set \Seen: the archiver only ever peeks. */
	if (strstr(items, "BODY[") || strstr(items, "body[") || strstr(items, "RFC822 ") ||
	    strstr(items, "RFC822.TEXT") || strstr(items, "RFC822.HEADER") ||
	    (strlen(items) >= 6 && strcmp(items + strlen(items) - 6, "RFC822") == 0))
		return luaL_error(L, "conn:fetch: use BODY.PEEK[...] (BODY[...] and RFC822 would mark messages \\Seen)");
	if (lua_istable(L, 4)) {
		lua_getfield(L, 4, "batch");
		batch = luaL_optinteger(L, -1, 200);
		lua_pop(L, 1);
		if (batch < 1)
			batch = 1;
	}
	snprintf(lc->what, sizeof(lc->what), "UID FETCH");
	lc->pending = 0;
	if (lua_type(L, 2) == LUA_TSTRING) {
		const char *set = lua_tostring(L, 2);
		for (const char *p = set; *p; p++)
			if (!((*p >= '0' && *p <= '9') || *p == ':' || *p == ',' || *p == '*'))
				return luaL_error(L, "conn:fetch: a UID set has only digits, ':', ',' and '*'");
		begin_result(L, lc);
		lc->pending = 1;
		if (imap_client_send(lc->client, &h, "UID FETCH %s (%s)", set, items) < 0)
			return closed_now(L, lc);
		return wait_op(L, lc, OP_FETCH);
	}
	luaL_checktype(L, 2, LUA_TTABLE);
	size_t n = (size_t)luaL_len(L, 2);
	if (n == 0) {
		lua_newtable(L);
		return 1;
	}
	uint32_t *uids = malloc(n * sizeof(*uids));
	if (uids == NULL)
		return luaL_error(L, "out of memory");
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, 2, (lua_Integer)i + 1);
		lua_Integer u = lua_tointeger(L, -1);
		lua_pop(L, 1);
		if (u < 1 || u > 0xffffffffLL) {
			free(uids);
			return luaL_error(L, "conn:fetch: UIDs are integers from 1 to 4294967295");
		}
		uids[i] = (uint32_t)u;
	}
	qsort(uids, n, sizeof(*uids), cmp_u32);
	begin_result(L, lc);
	for (size_t off = 0; off < n;) {
		size_t take = n - off < (size_t)batch ? n - off : (size_t)batch, used, len;
		char set[3000];
		imap_format_uidset(set, sizeof(set), uids + off, take, &used, &len);
		if (used == 0)
			break;
		snprintf(cmd, sizeof(cmd), "UID FETCH %s (%s)", set, items);
		lc->pending++;
		if (imap_client_send(lc->client, &h, "%s", cmd) < 0) {
			free(uids);
			lc->pending = 0;
			return closed_now(L, lc);
		}
		off += used;
	}
	free(uids);
	return wait_op(L, lc, OP_FETCH);
}

static void
idle_send_done(struct lconn *lc)
{
	if (lc->idle_done_sent || lc->client == NULL)
		return;
	lc->idle_done_sent = 1;
	if (!lc->idle_started)
		return;		/* idle_continue sends it when the "+" comes */
	imap_client_write(lc->client, "DONE\r\n", 6);
	imap_client_set_idling(lc->client, 0);	/* the OK must come in time now */
}

static void
idle_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	idle_send_done(arg);
}

static void
idle_continue(void *ud, const struct imap_response *r)
{
	struct lconn *lc = ud;

	(void)r;
	lc->idle_started = 1;
	imap_client_set_idling(lc->client, 1);
	if (lc->idle_done_sent) {	/* asked to end before the "+" came */
		lc->idle_done_sent = 0;
		idle_send_done(lc);
	}
}

/* conn:idle(seconds) -> events ({type="EXISTS", n=12}, ...) once something
 * happens or the time is up (then an empty list). */
static int
l_idle(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	double seconds = luaL_optnumber(L, 2, 29 * 60);
	struct imap_handler h = handler_for(lc);
	struct timeval tv;

	if (!imap_client_has_cap(lc->client, "IDLE")) {
		lua_pushnil(L);
		push_error(L, "protocol", "the server does not support IDLE", "");
		return 2;
	}
	h.on_continue = idle_continue;
	snprintf(lc->what, sizeof(lc->what), "IDLE");
	begin_result(L, lc);
	lc->pending = 1;
	lc->idle_done_sent = 0;
	lc->idle_started = 0;
	if (lc->idle_timer == NULL)
		lc->idle_timer = evtimer_new(lc->vm->base, idle_timeout_cb, lc);
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	if (imap_client_send(lc->client, &h, "IDLE") < 0)
		return closed_now(L, lc);
	evtimer_add(lc->idle_timer, &tv);
	return wait_op(L, lc, OP_IDLE);
}

/* conn:noop() -> events the server reported */
static int
l_noop(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */

	return send_simple(L, lc, OP_SIMPLE, "NOOP", "NOOP");
}

/* conn:id([{name=..., version=...}]) -> the server's ID data as a list */
static int
l_id(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	char cmd[1024];

	if (!imap_client_has_cap(lc->client, "ID")) {
		lua_pushnil(L);
		push_error(L, "protocol", "the server does not support ID", "");
		return 2;
	}
	snprintf(cmd, sizeof(cmd), "ID (\"name\" \"MyEmailVault\" \"version\" \"%s\")",
	    EMAILVAULT_VERSION);
	return send_simple(L, lc, OP_SIMPLE, "ID", cmd);
}

/* conn:logout() -> true; the connection is closed afterwards */
static int
l_logout(lua_State *L)
{
	struct handle *h = luaL_checkudata(L, 1, CONN_HANDLE);
	struct lconn *lc = find_conn(h->id);

	if (lc == NULL || lc->client == NULL || !imap_client_is_open(lc->client)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	if ((lc = check_conn(L, 1)) == NULL)
		return 2;
	return send_simple(L, lc, OP_LOGOUT, "LOGOUT", "LOGOUT");
}

/* conn:wakeup(): ends a running IDLE early (from another task). */
static int
l_wakeup(lua_State *L)
{
	struct handle *h = luaL_checkudata(L, 1, CONN_HANDLE);
	struct lconn *lc = find_conn(h->id);

	if (lc && lc->op == OP_IDLE) {
		idle_send_done(lc);
		lua_pushboolean(L, 1);
		return 1;
	}
	lua_pushboolean(L, 0);
	return 1;
}

/* conn:close(): drop the connection now (no LOGOUT) */
static int
l_close(lua_State *L)
{
	struct handle *h = luaL_checkudata(L, 1, CONN_HANDLE);
	struct lconn *lc = find_conn(h->id);

	if (lc && lc->op == OP_NONE)
		destroy_conn_later(lc);
	return 0;
}

static int
l_gc(lua_State *L)
{
	return l_close(L);
}

/* conn:info() -> { server=, security=, open=, error= } */
static int
l_info(lua_State *L)
{
	struct handle *h = luaL_checkudata(L, 1, CONN_HANDLE);
	struct lconn *lc = find_conn(h->id);

	lua_createtable(L, 0, 4);
	if (lc == NULL || lc->client == NULL) {
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "open");
		return 1;
	}
	lua_pushstring(L, imap_client_hostport(lc->client));
	lua_setfield(L, -2, "server");
	lua_pushstring(L, imap_client_security(lc->client));
	lua_setfield(L, -2, "security");
	lua_pushboolean(L, imap_client_is_open(lc->client));
	lua_setfield(L, -2, "open");
	lua_pushinteger(L, (lua_Integer)imap_client_bytes_in(lc->client));
	lua_setfield(L, -2, "bytes_in");
	const struct net_error *e = imap_client_error(lc->client);
	if (e) {
		push_error(L, e->kind, e->message, NULL);
		lua_setfield(L, -2, "error");
	}
	if (imap_client_bye(lc->client)[0]) {
		lua_pushstring(L, imap_client_bye(lc->client));
		lua_setfield(L, -2, "bye");
		lua_pushstring(L, imap_client_bye_code(lc->client));
		lua_setfield(L, -2, "bye_code");
	}
	return 1;
}

static int
l_tostring(lua_State *L)
{
	struct handle *h = luaL_checkudata(L, 1, CONN_HANDLE);
	struct lconn *lc = find_conn(h->id);

	if (lc && lc->client)
		lua_pushfstring(L, "imap connection %d to %s (%s)", (int)h->id,
		    imap_client_hostport(lc->client), imap_client_is_open(lc->client) ? "open" : "closed");
	else
		lua_pushfstring(L, "imap connection %d (closed)", (int)h->id);
	return 1;
}

/* vault.imap.utf7_decode / utf7_encode: mailbox name conversions */
static int
l_utf7_decode(lua_State *L)
{
	size_t len, out;
	const char *s = luaL_checklstring(L, 1, &len);
	luaL_Buffer b;
	char *buf = luaL_buffinitsize(L, &b, IMAP_UTF7_DECODED_MAX(len) + 1);

	if (imap_utf7_decode(s, len, buf, IMAP_UTF7_DECODED_MAX(len) + 1, &out) != 0) {
		lua_pushnil(L);
		lua_pushliteral(L, "not valid modified UTF-7");
		return 2;
	}
	luaL_pushresultsize(&b, out);
	return 1;
}

static int
l_utf7_encode(lua_State *L)
{
	size_t len, out;
	const char *s = luaL_checklstring(L, 1, &len);
	luaL_Buffer b;
	char *buf = luaL_buffinitsize(L, &b, IMAP_UTF7_ENCODED_MAX(len) + 1);

	if (imap_utf7_encode(s, len, buf, IMAP_UTF7_ENCODED_MAX(len) + 1, &out) != 0) {
		lua_pushnil(L);
		lua_pushliteral(L, "not valid UTF-8");
		return 2;
	}
	luaL_pushresultsize(&b, out);
	return 1;
}

void
imap_binding_shutdown(void)
{
	shutting_down = 1;
	while (conns)
		destroy_conn(conns);
}

int
luaopen_vault_imap(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "capabilities", l_capabilities },
		{ "capability", l_capabilities },
		{ "has", l_has },
		{ "list", l_list },
		{ "examine", l_examine },
		{ "status", l_status },
		{ "status_many", l_status_many },
		{ "search", l_search },
		{ "fetch", l_fetch },
		{ "idle", l_idle },
		{ "noop", l_noop },
		{ "id", l_id },
		{ "logout", l_logout },
		{ "close", l_close },
		{ "info", l_info },
		{ "archive", l_archive },
		{ "wakeup", l_wakeup },
		{ NULL, NULL }
	};
	static const luaL_Reg funcs[] = {
		{ "connect", l_connect },
		{ "utf7_decode", l_utf7_decode },
		{ "utf7_encode", l_utf7_encode },
		{ NULL, NULL }
	};
	if (luaL_newmetatable(L, CONN_HANDLE)) {
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_gc);
		lua_setfield(L, -2, "__gc");
		lua_pushcfunction(L, l_gc);
		lua_setfield(L, -2, "__close");
		lua_pushcfunction(L, l_tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}

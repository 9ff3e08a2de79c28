/*
 * vault.imap: conn:archive, the binding of sync/archive.c, and the hooks it
 * calls (filter under the hook budget, on_message, on_progress).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "log.h"
#include "lua/imap_conn.h"
#include "lua/vm.h"
#include "mime/headers.h"
#include "store/store.h"

/* An archive job's counters as a table (its result and its progress). */
void
push_progress(lua_State *L, const struct archive_progress *p)
{
	static const struct { const char *name; size_t off; } fields[] = {
		{ "messages_total", offsetof(struct archive_progress, messages_total) },
		{ "bytes_total", offsetof(struct archive_progress, bytes_total) },
		{ "messages_done", offsetof(struct archive_progress, messages_done) },
		{ "bytes_done", offsetof(struct archive_progress, bytes_done) },
		{ "archived", offsetof(struct archive_progress, archived) },
		{ "skipped", offsetof(struct archive_progress, skipped) },
		{ "duplicates", offsetof(struct archive_progress, duplicates) },
		{ "pending", offsetof(struct archive_progress, pending) },
	};

	lua_createtable(L, 0, 8);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		lua_pushinteger(L, (lua_Integer)*(const uint64_t *)((const char *)p + fields[i].off));
		lua_setfield(L, -2, fields[i].name);
	}
	lua_pushinteger(L, (lua_Integer)p->last_uid);
	lua_setfield(L, -2, "last_uid");
}



void
unref_hooks(struct lconn *lc)
{
	lua_State *L = lc->vm->L;

	if (lc->filter_ref > 0)
		luaL_unref(L, LUA_REGISTRYINDEX, lc->filter_ref);
	if (lc->on_message_ref > 0)
		luaL_unref(L, LUA_REGISTRYINDEX, lc->on_message_ref);
	if (lc->on_progress_ref > 0)
		luaL_unref(L, LUA_REGISTRYINDEX, lc->on_progress_ref);
	lc->filter_ref = lc->on_message_ref = lc->on_progress_ref = 0;
}

/* msg:header(name): only while the filter runs (the headers go after). */
struct headers_box {
	struct mime_headers *h;
};

static int
l_msg_header(lua_State *L)
{
	struct headers_box *box = lua_touserdata(L, lua_upvalueindex(1));
	const char *name = luaL_checkstring(L, 2);
	const char *v;

	if (box == NULL || box->h == NULL)
		return luaL_error(L, "msg:header is only valid while the filter runs");
	v = mime_headers_get(box->h, name);
	if (v == NULL)
		return 0;
	lua_pushstring(L, v);
	return 1;
}

static void
set_str(lua_State *L, const char *k, const char *v)
{
	lua_pushstring(L, v ? v : "");
	lua_setfield(L, -2, k);
}

/* The table a filter sees; leaves it and the headers box on the stack. */
static struct headers_box *
push_msg(lua_State *L, const struct archive_msg *m)
{
	struct headers_box *box;

	lua_createtable(L, 0, 14);
	set_str(L, "folder", m->folder);
	lua_pushinteger(L, m->uid);
	lua_setfield(L, -2, "uid");
	lua_pushinteger(L, (lua_Integer)m->size);
	lua_setfield(L, -2, "size");
	if (m->internaldate >= 0) {
		lua_pushinteger(L, m->internaldate);
		lua_setfield(L, -2, "internaldate");
	}
	lua_newtable(L);
	{
		lua_Integer i = 1;
		const char *f = m->flags;
		while (f && *f) {
			const char *sp = strchr(f, ' ');
			size_t n = sp ? (size_t)(sp - f) : strlen(f);
			lua_pushlstring(L, f, n);
			lua_rawseti(L, -2, i++);
			f += n;
			while (*f == ' ')
				f++;
		}
	}
	lua_setfield(L, -2, "flags");
	if (m->hash)
		set_str(L, "hash", m->hash);
	if (m->headers) {
		set_str(L, "subject", mime_headers_subject(m->headers));
		set_str(L, "from", mime_headers_from(m->headers));
		set_str(L, "to", mime_headers_to(m->headers));
		set_str(L, "cc", mime_headers_cc(m->headers));
		set_str(L, "date", mime_headers_date(m->headers));
		set_str(L, "message_id", mime_headers_message_id(m->headers));
	}
	box = lua_newuserdatauv(L, sizeof(*box), 0);
	box->h = m->headers;
	lua_pushvalue(L, -1);
	lua_pushcclosure(L, l_msg_header, 1);
	lua_setfield(L, -3, "header");
	return box;
}

/* The hooks' arguments are built inside the protected call: near the
 * memory cap an allocation then fails as an error, not a panic. */
struct hook_call {
	struct lconn *lc;
	const struct archive_msg *m;
	const struct archive_progress *p;
	int kept;
	struct headers_box *box;
};

static int
filter_trampoline(lua_State *L)
{
	struct hook_call *hc = lua_touserdata(L, 1);

	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, hc->lc->filter_ref);
	hc->box = push_msg(L, hc->m);	/* fn, msg, box */
	lua_pop(L, 1);			/* the closure keeps the box */
	lua_call(L, 1, 2);
	return 2;
}

static int
archive_filter(void *ud, const struct archive_msg *m, char *reason, size_t rlen)
{
	struct lconn *lc = ud;
	lua_State *L = lc->vm->L;
	struct hook_call hc = { lc, m, NULL, 0, NULL };
	int keep = 1, top = lua_gettop(L);

	lua_pushcfunction(L, filter_trampoline);
	lua_pushlightuserdata(L, &hc);
	if (vm_pcall_budget(L, 1, 2, lc->hook_budget, lc->hook_seconds) != LUA_OK) {
		const char *e = lua_tostring(L, -1);
		char *nl;
		snprintf(reason, rlen, "filter failed on %s UID %u: %s", m->folder, m->uid,
		    e ? e : "error");
		if ((nl = strstr(reason, "\nstack traceback")) != NULL)
			*nl = '\0';
		keep = -1;
	} else if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
		keep = 0;
		snprintf(reason, rlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "filter");
	}
	if (hc.box)
		hc.box->h = NULL;	/* msg:header is over */
	lua_settop(L, top);
	return keep;
}

static int
message_trampoline(lua_State *L)
{
	struct hook_call *hc = lua_touserdata(L, 1);
	const struct archive_msg *m = hc->m;

	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, hc->lc->on_message_ref);
	lua_createtable(L, 0, 8);
	set_str(L, "folder", m->folder);
	lua_pushinteger(L, m->uid);
	lua_setfield(L, -2, "uid");
	lua_pushinteger(L, (lua_Integer)m->size);
	lua_setfield(L, -2, "size");
	if (m->hash)
		set_str(L, "hash", m->hash);
	if (m->headers) {
		set_str(L, "subject", mime_headers_subject(m->headers));
		set_str(L, "from", mime_headers_from(m->headers));
	}
	lua_pushboolean(L, hc->kept);
	lua_setfield(L, -2, "kept");
	lua_call(L, 1, 0);
	return 0;
}

static void
archive_message(void *ud, const struct archive_msg *m, int kept)
{
	struct lconn *lc = ud;
	lua_State *L = lc->vm->L;
	struct hook_call hc = { lc, m, NULL, kept, NULL };
	int top = lua_gettop(L);

	if (lc->on_message_ref <= 0)
		return;
	lua_pushcfunction(L, message_trampoline);
	lua_pushlightuserdata(L, &hc);
	if (vm_pcall(L, 1, 0) != LUA_OK)
		log_warn(lc->source, "message handler failed: %s", lua_tostring(L, -1));
	lua_settop(L, top);
}

static int
progress_trampoline(lua_State *L)
{
	struct hook_call *hc = lua_touserdata(L, 1);
	const struct archive_progress *p = hc->p;

	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, hc->lc->on_progress_ref);
	push_progress(L, p);
	lua_call(L, 1, 0);
	return 0;
}

static void
archive_progress(void *ud, const struct archive_progress *p)
{
	struct lconn *lc = ud;
	lua_State *L = lc->vm->L;
	struct hook_call hc = { lc, NULL, p, 0, NULL };
	int top = lua_gettop(L);

	lc->result = *p;
	if (lc->on_progress_ref <= 0)
		return;
	lua_pushcfunction(L, progress_trampoline);
	lua_pushlightuserdata(L, &hc);
	if (vm_pcall(L, 1, 0) != LUA_OK)
		log_warn(lc->source, "progress handler failed: %s", lua_tostring(L, -1));
	lua_settop(L, top);
}

static void
archive_done(void *ud, const struct archive_progress *p, const struct net_error *err)
{
	struct lconn *lc = ud;
	struct timeval now = { 0, 0 };

	lc->result = *p;
	if (err && !lc->failed) {
		lc->failed = 1;
		lc->err = *err;
	}
	/* The job is still on the stack of its own callback: free it later. */
	event_base_once(lc->vm->base, -1, EV_TIMEOUT, free_job_later, lc->job, &now);
	lc->job = NULL;
	unref_hooks(lc);
	finish_op(lc);
}

static int
opt_ref(lua_State *L, int t, const char *k)
{
	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	luaL_checktype(L, -1, LUA_TFUNCTION);
	return luaL_ref(L, LUA_REGISTRYINDEX);
}

/*
 * conn:archive{ folder=, uidvalidity=, last_uid=, batch=, batch_bytes=, source=, filter=fn,
 *   on_message=fn, on_progress=fn, hook_budget=, hook_seconds= } -> progress | nil, err
 * Archives the examined folder's messages above last_uid into the store.
 */
int
l_archive(lua_State *L)
{
	struct lconn *lc = check_conn(L, 1);
	if (lc == NULL)
		return 2;	/* nil, err: the connection was lost */
	struct store *st = store_current();
	struct archive_params p;

	luaL_checktype(L, 2, LUA_TTABLE);
	if (st == NULL || st->packs == NULL || st->readonly)
		return luaL_error(L, "conn:archive needs the engine's archive (open read-write)");
	memset(&p, 0, sizeof(p));
	p.folder = opt_string(L, 2, "folder", NULL);
	if (p.folder == NULL)
		return luaL_error(L, "conn:archive: folder is required");
	p.source = opt_string(L, 2, "source", lc->source ? lc->source : "");
	double uidv = opt_number(L, 2, "uidvalidity", 0), last = opt_number(L, 2, "last_uid", 0);
	if (!(uidv >= 0 && uidv <= UINT32_MAX) || !(last >= 0 && last <= UINT32_MAX))
		return luaL_error(L, "conn:archive: uidvalidity and last_uid are 32-bit numbers");
	p.uidvalidity = (uint32_t)uidv;
	p.last_uid = (uint32_t)last;
	p.batch = (int)opt_number(L, 2, "batch", 200);
	double batch_bytes = opt_number(L, 2, "batch_bytes", 0);
	p.batch_bytes = batch_bytes > 0 && batch_bytes < 1e15 ? (uint64_t)batch_bytes : 0;
	p.retry_pending = opt_boolean(L, 2, "retry_pending");
	p.max_attempts = (int)opt_number(L, 2, "max_attempts", 3);
	double exists = opt_number(L, 2, "exists", 0);
	p.exists = exists > 0 && exists < 1e15 ? (uint64_t)exists : 0;
	p.packs = st->packs;
	p.db = st->db;
	p.base = lc->vm->base;
	lc->hook_budget = (long)opt_number(L, 2, "hook_budget", 1000000);
	lc->hook_seconds = opt_number(L, 2, "hook_seconds", 2);
	lc->filter_ref = opt_ref(L, 2, "filter");
	lc->on_message_ref = opt_ref(L, 2, "on_message");
	lc->on_progress_ref = opt_ref(L, 2, "on_progress");
	p.ud = lc;
	p.filter = lc->filter_ref ? archive_filter : NULL;
	p.on_message = archive_message;
	p.on_progress = archive_progress;
	p.on_done = archive_done;
	memset(&lc->result, 0, sizeof(lc->result));
	lc->failed = 0;
	lc->code[0] = '\0';
	lc->result_ref = LUA_NOREF;
	lc->job = archive_start(lc->client, &p);
	if (lc->job == NULL) {
		unref_hooks(lc);
		return closed_now(L, lc);
	}
	return wait_op(L, lc, OP_ARCHIVE);
}

/*
 * A budget (lua/vm.c) is only worth something if the code under it cannot
 * catch its error and carry on, cannot run where the hook does not reach,
 * and cannot reach what other code uses. So, for the whole VM:
 *
 * - pcall, xpcall, coroutine.resume, coroutine.wrap and coroutine.close
 *   raise the spent budget's error again instead of returning it, and an
 *   xpcall handler is not run for it;
 * - a coroutine resumed under a budget gets the budget's hook first (hooks
 *   belong to threads; one made before the budget has none);
 * - the string metatable answers getmetatable with false, so no code can
 *   swap the functions every string method call uses;
 * - string.dump is gone (nothing needs it).
 *
 * vault.sandbox gives a source file a coroutine library that only resumes
 * or closes the file's own coroutines: the thread a file was loaded on, or
 * an engine task's, is not its to drive.
 */
#include "lua/sandbox.h"

#include <lauxlib.h>

#include "lua/vm.h"

static int
finish_pcall(lua_State *L, int status, lua_KContext extra)
{
	vm_check_exhausted(L);
	if (status != LUA_OK && status != LUA_YIELD) {
		lua_pushboolean(L, 0);
		lua_pushvalue(L, -2);
		return 2;
	}
	return lua_gettop(L) - (int)extra;
}

/* pcall(f, ...) -> true, results... | false, error */
static int
g_pcall(lua_State *L)
{
	int status;

	luaL_checkany(L, 1);
	vm_check_exhausted(L);
	lua_pushboolean(L, 1);
	lua_insert(L, 1);
	status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
	return finish_pcall(L, status, 0);
}

/* The message handler xpcall installs: the user's, but not for a spent
 * budget (it would run user code where none may run). */
static int
xpcall_handler(lua_State *L)
{
	if (vm_of(L)->exhausted)
		return 1;
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* xpcall(f, handler, ...) */
static int
g_xpcall(lua_State *L)
{
	int n = lua_gettop(L), status;

	luaL_checktype(L, 2, LUA_TFUNCTION);
	vm_check_exhausted(L);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, xpcall_handler, 1);
	lua_replace(L, 2);
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2);	/* f, handler, true, f, args... */
	status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
	return finish_pcall(L, status, 2);
}

static int
close_thread(lua_State *co, lua_State *L)
{
#if LUA_VERSION_RELEASE_NUM >= 50406
	return lua_closethread(co, L);
#else
	(void)L;
	return lua_resetthread(co);
#endif
}

/*
 * Resumes CO with the NARG values on top of L. Returns how many values it
 * yielded or returned (now on L), or -1 with the error on top of L.
 */
static int
resume(lua_State *L, lua_State *co, int narg)
{
	int status, nres;

	vm_check_exhausted(L);
	if (vm_budget_active(vm_of(L)))
		vm_hook_thread(co);
	if (!lua_checkstack(co, narg)) {
		lua_pushliteral(L, "too many arguments to resume");
		return -1;
	}
	lua_xmove(L, co, narg);
	status = lua_resume(co, L, narg, &nres);
	vm_check_exhausted(L);
	if (status == LUA_OK || status == LUA_YIELD) {
		if (!lua_checkstack(L, nres + 1)) {
			lua_pop(co, nres);
			lua_pushliteral(L, "too many results to resume");
			return -1;
		}
		lua_xmove(co, L, nres);
		return nres;
	}
	lua_xmove(co, L, 1);
	return -1;
}

static lua_State *
check_thread(lua_State *L, int arg)
{
	lua_State *co = lua_tothread(L, arg);

	luaL_argexpected(L, co != NULL, arg, "coroutine");
	return co;
}

static int
resume_results(lua_State *L, int r)
{
	if (r < 0) {
		lua_pushboolean(L, 0);
		lua_insert(L, -2);
		return 2;
	}
	lua_pushboolean(L, 1);
	lua_insert(L, -(r + 1));
	return r + 1;
}

/* coroutine.resume(co, ...) */
static int
g_resume(lua_State *L)
{
	lua_State *co = check_thread(L, 1);

	return resume_results(L, resume(L, co, lua_gettop(L) - 1));
}

/* The function coroutine.wrap returns: errors go on to its caller. */
static int
wrap_call(lua_State *L)
{
	lua_State *co = lua_tothread(L, lua_upvalueindex(1));
	int r = resume(L, co, lua_gettop(L)), status;

	if (r >= 0)
		return r;
	status = lua_status(co);
	if (status != LUA_OK && status != LUA_YIELD) {
		/* Dead by an error: close its to-be-closed variables, whose
		 * __close may put another error in place of the first. */
		lua_pushvalue(L, -1);
		lua_xmove(L, co, 1);
		status = close_thread(co, L);
		vm_check_exhausted(L);
		lua_xmove(co, L, 1);
	}
	if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
		luaL_where(L, 1);
		lua_insert(L, -2);
		lua_concat(L, 2);
	}
	return lua_error(L);
}

static lua_State *
new_coroutine(lua_State *L)
{
	lua_State *co;

	luaL_checktype(L, 1, LUA_TFUNCTION);
	co = lua_newthread(L);
	lua_pushvalue(L, 1);
	lua_xmove(L, co, 1);
	return co;
}

/* coroutine.wrap(f) */
static int
g_wrap(lua_State *L)
{
	new_coroutine(L);
	lua_pushcclosure(L, wrap_call, 1);
	return 1;
}

enum { CO_RUNNING, CO_DEAD, CO_SUSPENDED, CO_NORMAL };
static const char *const co_names[] = { "running", "dead", "suspended", "normal" };

static int
co_status(lua_State *L, lua_State *co)
{
	lua_Debug ar;

	if (L == co)
		return CO_RUNNING;
	switch (lua_status(co)) {
	case LUA_YIELD:
		return CO_SUSPENDED;
	case LUA_OK:
		if (lua_getstack(co, 0, &ar))
			return CO_NORMAL;	/* it resumed another one */
		return lua_gettop(co) == 0 ? CO_DEAD : CO_SUSPENDED;
	default:
		return CO_DEAD;
	}
}

/* coroutine.close(co) -> true | false, error */
static int
g_close(lua_State *L)
{
	lua_State *co = check_thread(L, 1);
	int st = co_status(L, co);

	vm_check_exhausted(L);
	if (st != CO_DEAD && st != CO_SUSPENDED)
		return luaL_error(L, "cannot close a %s coroutine", co_names[st]);
	if (vm_budget_active(vm_of(L)))
		vm_hook_thread(co);	/* __close methods run on it */
	st = close_thread(co, L);
	vm_check_exhausted(L);
	if (st == LUA_OK) {
		lua_pushboolean(L, 1);
		return 1;
	}
	lua_pushboolean(L, 0);
	lua_xmove(co, L, 1);
	return 2;
}

/* ---- a source file's coroutine library ---------------------------------- */

/* Upvalue 1 of each function: the weak set of the file's coroutines. */
static lua_State *
own_thread(lua_State *L, int arg)
{
	lua_State *co = check_thread(L, arg);

	lua_pushvalue(L, arg);
	if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TNIL)
		luaL_argerror(L, arg, "not a coroutine of this source file");
	lua_pop(L, 1);
	return co;
}

static void
adopt(lua_State *L)
{
	lua_pushvalue(L, -1);
	lua_pushboolean(L, 1);
	lua_rawset(L, lua_upvalueindex(1));
}

static int
s_create(lua_State *L)
{
	new_coroutine(L);
	adopt(L);
	return 1;
}

static int
s_wrap(lua_State *L)
{
	new_coroutine(L);
	adopt(L);
	lua_pushcclosure(L, wrap_call, 1);
	return 1;
}

static int
s_resume(lua_State *L)
{
	lua_State *co = own_thread(L, 1);

	return resume_results(L, resume(L, co, lua_gettop(L) - 1));
}

static int
s_close(lua_State *L)
{
	own_thread(L, 1);
	return g_close(L);
}

/* sandbox.coroutines() -> a coroutine library of its own */
static int
l_coroutines(lua_State *L)
{
	static const luaL_Reg own[] = {
		{ "create", s_create },
		{ "wrap", s_wrap },
		{ "resume", s_resume },
		{ "close", s_close },
		{ NULL, NULL }
	};
	static const char *const shared[] = { "running", "status", "isyieldable", "yield", NULL };

	lua_newtable(L);
	lua_getglobal(L, "coroutine");
	for (int i = 0; shared[i]; i++) {
		lua_getfield(L, -1, shared[i]);
		lua_setfield(L, -3, shared[i]);
	}
	lua_pop(L, 1);
	lua_newtable(L);		/* the file's coroutines */
	lua_newtable(L);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	luaL_setfuncs(L, own, 1);
	return 1;
}

int
luaopen_vault_sandbox(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "coroutines", l_coroutines },
		{ NULL, NULL }
	};
	luaL_newlib(L, funcs);
	return 1;
}

void
sandbox_install(lua_State *L)
{
	static const luaL_Reg base[] = {
		{ "pcall", g_pcall },
		{ "xpcall", g_xpcall },
		{ NULL, NULL }
	};
	static const luaL_Reg co[] = {
		{ "resume", g_resume },
		{ "wrap", g_wrap },
		{ "close", g_close },
		{ NULL, NULL }
	};

	lua_pushglobaltable(L);
	luaL_setfuncs(L, base, 0);
	lua_getfield(L, -1, "coroutine");
	luaL_setfuncs(L, co, 0);
	lua_pop(L, 1);
	lua_getfield(L, -1, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 2);

	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);

	pattern_install(L);
	bounded_install(L);
}

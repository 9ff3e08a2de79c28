#include "lua/vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lua/embedded.h"

/* How often the count hook runs: cheap enough, fine enough. */
#define BUDGET_STEP 1000

static void *
vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct vm *vm = ud;

	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		vm->mem_used -= osize;
		return NULL;
	}
	if (nsize > osize && vm->mem_used - osize + nsize > vm->mem_limit)
		return NULL;	/* Lua raises "not enough memory" */
	void *p = realloc(ptr, nsize);
	if (p != NULL)
		vm->mem_used = vm->mem_used - osize + nsize;
	return p;
}

struct vm *
vm_of(lua_State *L)
{
	void *ud;

	lua_getallocf(L, &ud);
	return ud;
}

static int
traceback_handler(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			return 1;
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

int
vm_pcall(lua_State *L, int nargs, int nresults)
{
	int base = lua_gettop(L) - nargs;
	int status;

	lua_pushcfunction(L, traceback_handler);
	lua_insert(L, base);
	status = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	return status;
}

static void
budget_hook(lua_State *L, lua_Debug *ar)
{
	struct vm *vm = vm_of(L);

	(void)ar;
	if (vm->interrupted) {
		vm->interrupted = 0;
		luaL_error(L, "interrupted");
	}
	if (vm->budget_depth == 0)
		return;
	vm->budget_left -= BUDGET_STEP;
	if (vm->budget_left <= 0) {
		vm->budget_left = BUDGET_STEP;	/* room for the error handler */
		luaL_error(L, "instruction budget exceeded (an endless loop?)");
	}
}

int
vm_pcall_budget(lua_State *L, int nargs, int nresults, long budget)
{
	struct vm *vm = vm_of(L);
	lua_Hook old_hook = lua_gethook(L);
	int old_mask = lua_gethookmask(L), old_count = lua_gethookcount(L);
	long old_left = vm->budget_left;
	int status;

	/* A nested budget may not grant more than its caller has left. */
	if (vm->budget_depth > 0 && budget > vm->budget_left)
		budget = vm->budget_left;
	vm->budget_left = budget;
	vm->budget_depth++;
	lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
	status = vm_pcall(L, nargs, nresults);
	lua_sethook(L, old_hook, old_mask, old_count);
	vm->budget_depth--;
	if (vm->budget_depth > 0)
		vm->budget_left = old_left - (budget - vm->budget_left);
	return status;
}

/* budget_pcall(n, f, ...) -> true, results... | false, message */
static int
l_budget_pcall(lua_State *L)
{
	lua_Integer budget = luaL_checkinteger(L, 1);
	int nargs, status;

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_remove(L, 1);
	nargs = lua_gettop(L) - 1;
	status = vm_pcall_budget(L, nargs, LUA_MULTRET, (long)budget);
	lua_pushboolean(L, status == LUA_OK);
	lua_insert(L, 1);
	return lua_gettop(L);
}

static int
l_memory(lua_State *L)
{
	struct vm *vm = vm_of(L);

	lua_pushinteger(L, (lua_Integer)vm->mem_used);
	lua_pushinteger(L, (lua_Integer)vm->mem_limit);
	return 2;
}

void
vm_preload(lua_State *L, const char *name, lua_CFunction open)
{
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushcfunction(L, open);
	lua_setfield(L, -2, name);
	lua_pop(L, 1);
}

static const struct embedded_module *
find_embedded(const char *name)
{
	for (const struct embedded_module *m = embedded_modules; m->name; m++)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

/* package.searchers entry for the lua/ modules compiled into the binary. */
static int
embedded_searcher(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const struct embedded_module *m = find_embedded(name);
	char chunkname[128];

	if (m == NULL) {
		lua_pushfstring(L, "no embedded module '%s'", name);
		return 1;
	}
	snprintf(chunkname, sizeof(chunkname), "@lua/%s.lua", name);
	if (luaL_loadbufferx(L, m->source, m->len, chunkname, "t") != LUA_OK)
		return lua_error(L);
	lua_pushstring(L, chunkname + 1);
	return 2;
}

static int
luaopen_vm_internal(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "budget_pcall", l_budget_pcall },
		{ "memory", l_memory },
		{ NULL, NULL }
	};
	luaL_newlib(L, funcs);
	return 1;
}

struct vm *
vm_new(struct event_base *base, size_t mem_limit)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (vm == NULL)
		return NULL;
	vm->mem_limit = mem_limit ? mem_limit : VM_DEFAULT_MEM_LIMIT;
	vm->base = base;
	vm->L = lua_newstate(vm_alloc, vm);
	if (vm->L == NULL) {
		free(vm);
		return NULL;
	}
	/* New threads copy the main thread's extra space (the task pointer
	 * of lua/task.c): it must start out empty. */
	memset(lua_getextraspace(vm->L), 0, LUA_EXTRASPACE);
	luaL_openlibs(vm->L);
	lua_gc(vm->L, LUA_GCGEN, 0, 0);

	/* Embedded modules come right after package.preload. */
	lua_getglobal(vm->L, "package");
	lua_getfield(vm->L, -1, "searchers");
	for (lua_Integer i = (lua_Integer)luaL_len(vm->L, -1); i >= 2; i--) {
		lua_rawgeti(vm->L, -1, i);
		lua_rawseti(vm->L, -2, i + 1);
	}
	lua_pushcfunction(vm->L, embedded_searcher);
	lua_rawseti(vm->L, -2, 2);
	lua_pop(vm->L, 2);

	vm_preload(vm->L, "vault.vm", luaopen_vm_internal);
	return vm;
}

void
vm_free(struct vm *vm)
{
	if (vm == NULL)
		return;
	lua_close(vm->L);
	free(vm);
}

int
vm_require(lua_State *L, const char *name)
{
	lua_getglobal(L, "require");
	lua_pushstring(L, name);
	if (vm_pcall(L, 1, 1) != LUA_OK)
		return -1;
	return 0;
}

const char *
vm_tostring(lua_State *L, int idx)
{
	const char *s = lua_tostring(L, idx);

	return s ? s : luaL_typename(L, idx);
}

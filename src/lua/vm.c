#include "lua/vm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>

#include "lua/embedded.h"
#include "lua/sandbox.h"

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

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void vm_hook(lua_State *L, lua_Debug *ar);

/* The spent budget's error; its text names where it ran out. */
static int
raise_exhausted(lua_State *L)
{
	lua_pushstring(L, vm_of(L)->why);
	return lua_error(L);
}

/*
 * The innermost budget is spent: so is every outer one with the same end
 * (a nested budget never outlasts its caller). The outermost of them stays
 * spent until its call returns, and the thread runs no instruction more
 * without the hook raising again. LEVEL is where the code stands for the
 * message: 0 in the hook, 1 in a C function.
 */
static int
spend(lua_State *L, struct vm *vm, int level)
{
	struct vm_budget *b, *outermost = vm->budget;
	int64_t now = now_ns();
	const char *where;

	for (b = vm->budget; b != NULL; b = b->outer) {
		if (vm->steps < b->end && now < b->deadline)
			break;
		outermost = b;
	}
	vm->exhausted = outermost->depth;
	luaL_where(L, level);
	where = lua_tostring(L, -1);
	if (vm->steps >= outermost->end)
		snprintf(vm->why, sizeof(vm->why), "%sinstruction budget exceeded "
		    "(%ld instructions: an endless loop?)", where ? where : "",
		    outermost->instructions);
	else
		snprintf(vm->why, sizeof(vm->why), "%stime limit exceeded (%g s: an "
		    "endless loop, or a pattern that backtracks?)", where ? where : "",
		    outermost->seconds);
	lua_pop(L, 1);
	lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1);
	return raise_exhausted(L);
}

/*
 * The one count hook of the VM: the running budget, and the interrupt
 * watch of lua/task.c (Ctrl-C in the REPL). Hooks belong to threads, so
 * every thread that runs budgeted code gets this one (vm_hook_thread).
 */
static void
vm_hook(lua_State *L, lua_Debug *ar)
{
	struct vm *vm = vm_of(L);

	(void)ar;
	if (vm->budget != NULL) {
		if (vm->exhausted) {
			lua_sethook(L, vm_hook, LUA_MASKCOUNT, 1);
			raise_exhausted(L);
		}
		vm->steps += lua_gethookcount(L);
		if (vm->steps >= vm->budget->end || now_ns() >= vm->budget->deadline)
			spend(L, vm, 0);
	}
	if (vm->watch != NULL && vm->watch(L))
		luaL_error(L, "interrupted");
}

void
vm_charge(lua_State *L, long steps)
{
	struct vm *vm = vm_of(L);

	if (vm->budget == NULL)
		return;
	if (vm->exhausted)
		raise_exhausted(L);
	vm->steps += steps;
	if (vm->steps >= vm->budget->end || now_ns() >= vm->budget->deadline)
		spend(L, vm, 1);
}

void
vm_check_exhausted(lua_State *L)
{
	if (vm_of(L)->exhausted)
		raise_exhausted(L);
}

void
vm_hook_thread(lua_State *co)
{
	lua_sethook(co, vm_hook, LUA_MASKCOUNT, vm_of(co)->exhausted ? 1 : BUDGET_STEP);
}

/* The message handler of budgeted calls: the message is a string, made
 * inside the budget (a __tostring of the error object is user code). */
static int
budget_handler(lua_State *L)
{
	if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER) {
		if (vm_of(L)->exhausted || !luaL_callmeta(L, 1, "__tostring") ||
		    lua_type(L, -1) != LUA_TSTRING)
			lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
		lua_replace(L, 1);
		lua_settop(L, 1);
	}
	luaL_traceback(L, L, lua_tostring(L, 1), 1);
	return 1;
}

int64_t
vm_now_ns(void)
{
	return now_ns();
}

void
vm_budget_push(lua_State *L, struct vm_budget *b, long instructions, int64_t deadline)
{
	struct vm *vm = vm_of(L);
	struct vm_budget *outer = vm->budget;

	b->end = vm->steps + (instructions > 0 ? instructions : 0);
	b->deadline = deadline;
	/* A nested budget may not grant more than its caller has left. */
	if (outer != NULL) {
		if (b->end > outer->end)
			b->end = outer->end;
		if (b->deadline > outer->deadline)
			b->deadline = outer->deadline;
	}
	b->depth = outer ? outer->depth + 1 : 1;
	b->outer = outer;
	b->start = vm->steps;
	vm->budget = b;
	lua_sethook(L, vm_hook, LUA_MASKCOUNT, vm->exhausted ? 1 : BUDGET_STEP);
}

long
vm_budget_pop(lua_State *L, struct vm_budget *b)
{
	struct vm *vm = vm_of(L);

	vm->budget = b->outer;
	if (vm->exhausted == b->depth)
		vm->exhausted = 0;
	return (long)(vm->steps - b->start);
}

int
vm_pcall_budget(lua_State *L, int nargs, int nresults, long instructions, double seconds)
{
	struct vm *vm = vm_of(L);
	struct vm_budget b;
	lua_Hook old_hook = lua_gethook(L);
	int old_mask = lua_gethookmask(L), old_count = lua_gethookcount(L);
	int base = lua_gettop(L) - nargs, status;
	int64_t now = now_ns(), deadline;

	if (vm->exhausted) {	/* only from C code while the error unwinds */
		lua_settop(L, base - 1);
		lua_pushstring(L, vm->why);
		return LUA_ERRRUN;
	}
	b.instructions = instructions;
	b.seconds = seconds;
	if (!(seconds > 0))
		deadline = now;
	else if (seconds >= 1e9)
		deadline = INT64_MAX;
	else
		deadline = now + (int64_t)(seconds * 1e9);
	vm_budget_push(L, &b, instructions, deadline);
	lua_pushcfunction(L, budget_handler);
	lua_insert(L, base);
	status = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	vm_budget_pop(L, &b);
	lua_sethook(L, old_hook, old_mask, old_count);
	return status;
}

/*
 * budget_pcall(instructions, [seconds,] f, ...) -> true, results... | false, message
 * Without SECONDS there is no limit in time.
 */
static int
l_budget_pcall(lua_State *L)
{
	lua_Integer instructions = luaL_checkinteger(L, 1);
	lua_Number seconds = 1e9;
	int status, skip = 1;

	if (lua_type(L, 2) != LUA_TFUNCTION) {
		seconds = luaL_checknumber(L, 2);
		skip = 2;
	}
	luaL_checktype(L, skip + 1, LUA_TFUNCTION);
	vm_check_exhausted(L);
	lua_rotate(L, 1, -skip);
	lua_pop(L, skip);
	status = vm_pcall_budget(L, lua_gettop(L) - 1, LUA_MULTRET,
	    instructions > LONG_MAX ? LONG_MAX : (long)instructions, (double)seconds);
	vm_check_exhausted(L);	/* the caller's budget is spent too */
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
	/* Library functions that loop in C count against budgets, catching
	 * functions pass a spent budget on, and the string metatable is the
	 * engine's own (lua/sandbox.c). */
	sandbox_install(vm->L);

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
	vm_preload(vm->L, "vault.sandbox", luaopen_vault_sandbox);
	/* lua-cjson, linked in: lua/json.lua makes its own instance of it. */
	vm_preload(vm->L, "cjson", luaopen_cjson);
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

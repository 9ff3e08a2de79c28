/* The Lua VM's limits and the task machinery, without the engine. */
#include <event2/event.h>
#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "engine.h"
#include "lua/task.h"
#include "lua/vm.h"

static int
run_lua(struct vm *vm, const char *code)
{
	if (luaL_loadstring(vm->L, code) != LUA_OK)
		return -1;
	return vm_pcall(vm->L, 0, 1);
}

static void
test_budget_stops_endless_loop(void)
{
	struct vm *vm = vm_new(NULL, 0);

	engine_preload_modules(vm);
	CHECK(run_lua(vm, "local vm = require 'vault.vm'\n"
	    "return select(2, vm.budget_pcall(100000, function() while true do end end))") == LUA_OK);
	CHECK(strstr(lua_tostring(vm->L, -1), "instruction budget exceeded") != NULL);
	lua_pop(vm->L, 1);
	/* A function within its budget returns its results. */
	CHECK(run_lua(vm, "local vm = require 'vault.vm'\n"
	    "local ok, a, b = vm.budget_pcall(100000, function(x) return x, 2 end, 1)\n"
	    "return ok and a == 1 and b == 2") == LUA_OK);
	CHECK(lua_toboolean(vm->L, -1));
	lua_pop(vm->L, 1);
	/* An inner budget cannot outlive the outer one. */
	CHECK(run_lua(vm, "local vm = require 'vault.vm'\n"
	    "local ok, err = vm.budget_pcall(50000, function()\n"
	    "  local ok2, e2 = vm.budget_pcall(10^9, function() while true do end end)\n"
	    "  return ok2, e2 end)\n"
	    "return ok and 'outer ok' or err") == LUA_OK);
	CHECK_STR(lua_tostring(vm->L, -1), "outer ok");
	lua_pop(vm->L, 1);
	/* Outside any budget, no limit applies and the hook is gone. */
	CHECK(run_lua(vm, "local n = 0 for i = 1, 3000000 do n = n + 1 end return n") == LUA_OK);
	CHECK_INT(lua_tointeger(vm->L, -1), 3000000);
	lua_pop(vm->L, 1);
	vm_free(vm);
}

static void
test_memory_cap(void)
{
	struct vm *vm = vm_new(NULL, 8 << 20);

	CHECK(run_lua(vm, "local t = {} for i = 1, 1e7 do t[i] = ('x'):rep(100) .. i end") != LUA_OK);
	CHECK(strstr(lua_tostring(vm->L, -1), "not enough memory") != NULL);
	lua_pop(vm->L, 1);
	lua_gc(vm->L, LUA_GCCOLLECT);
	/* The state stays usable after hitting the cap. */
	CHECK(run_lua(vm, "return 40 + 2") == LUA_OK);
	CHECK_INT(lua_tointeger(vm->L, -1), 42);
	CHECK(vm->mem_used <= vm->mem_limit);
	vm_free(vm);
}

static int pushed_value(lua_State *co, void *ud)
{
	lua_pushinteger(co, *(int *)ud);
	return 1;
}

static struct task_token saved;
static int waits;

static int
l_wait(lua_State *L)
{
	struct task *t = task_current(L);

	saved = task_wait(t);
	waits++;
	return lua_yield(L, 0);
}

static int done_ok = -1;
static long long done_value;

static void
on_done(struct task *t, int ok, lua_State *co, int nres, void *ud)
{
	(void)t;
	(void)ud;
	done_ok = ok;
	done_value = nres ? lua_tointeger(co, -1) : -1;
}

static void
test_tasks_wake_and_stale_tokens(void)
{
	struct event_base *base = event_base_new();
	struct vm *vm = vm_new(base, 0);
	struct task_token first;
	struct task *t;
	int v1 = 10, v2 = 32;

	engine_preload_modules(vm);
	lua_pushcfunction(vm->L, l_wait);
	lua_setglobal(vm->L, "wait");
	CHECK(luaL_loadstring(vm->L, "local a = wait() local b = wait() return a + b") == LUA_OK);
	t = task_spawn(vm->L, 0, "t", on_done, NULL);
	CHECK(t != NULL);
	CHECK_INT(waits, 0);		/* nothing runs before the loop does */
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(waits, 1);
	first = saved;
	CHECK_INT(task_wake(vm, first, pushed_value, &v1), 0);
	CHECK_INT(task_wake(vm, first, pushed_value, &v1), -1);	/* twice: stale */
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(waits, 2);
	CHECK_INT(task_wake(vm, first, pushed_value, &v2), -1);	/* old wait: stale */
	CHECK_INT(task_wake(vm, saved, pushed_value, &v2), 0);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(done_ok, 1);
	CHECK_INT(done_value, 42);
	CHECK_INT(task_count(vm), 0);
	CHECK_INT(task_wake(vm, saved, pushed_value, &v2), -1);	/* finished */

	/* A cancelled task reports "cancelled" and its token goes stale. */
	done_ok = -1;
	CHECK(luaL_loadstring(vm->L, "wait() return 1") == LUA_OK);
	t = task_spawn(vm->L, 0, "c", on_done, NULL);
	event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(task_cancel(t), 0);
	CHECK_INT(done_ok, 0);
	CHECK_INT(task_wake(vm, saved, pushed_value, &v1), -1);
	CHECK_INT(task_count(vm), 0);
	vm_free(vm);
	event_base_free(base);
}

static void
test_task_errors_carry_a_traceback(void)
{
	struct event_base *base = event_base_new();
	struct vm *vm = vm_new(base, 0);

	engine_preload_modules(vm);
	CHECK(run_lua(vm, "local task = require 'vault.task'\n"
	    "result = nil\n"
	    "task.spawn('x', function() task.sleep(0.01) error('bad thing') end,\n"
	    "  function(ok, err) result = err end)") == LUA_OK);
	lua_pop(vm->L, 1);
	event_base_dispatch(base);
	lua_getglobal(vm->L, "result");
	CHECK(lua_tostring(vm->L, -1) && strstr(lua_tostring(vm->L, -1), "bad thing"));
	CHECK(lua_tostring(vm->L, -1) && strstr(lua_tostring(vm->L, -1), "stack traceback"));
	lua_pop(vm->L, 1);
	/* suspend with a timeout returns nil, "timeout"; wake returns values. */
	CHECK(run_lua(vm, "local task = require 'vault.task'\n"
	    "r1, r2, r3 = nil\n"
	    "task.spawn('s', function() r1, r2 = task.suspend(0.01) end)\n"
	    "local h = task.spawn('w', function() r3 = task.suspend(5) end)\n"
	    "task.spawn('k', function() task.sleep(0.02) task.wake(h, 'woken') end)") == LUA_OK);
	lua_pop(vm->L, 1);
	event_base_dispatch(base);
	CHECK(run_lua(vm, "return tostring(r1) .. ',' .. tostring(r2) .. ',' .. tostring(r3)") == LUA_OK);
	CHECK_STR(lua_tostring(vm->L, -1), "nil,timeout,woken");
	lua_pop(vm->L, 1);
	vm_free(vm);
	event_base_free(base);
}

int
main(void)
{
	RUN(test_budget_stops_endless_loop);
	RUN(test_memory_cap);
	RUN(test_tasks_wake_and_stale_tokens);
	RUN(test_task_errors_carry_a_traceback);
	DONE();
}

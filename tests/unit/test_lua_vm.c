/* The Lua VM's limits and the task machinery, without the engine. */
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Runs CODE (a chunk returning a string) in a child process that may take
 * ten seconds: code that escapes its budget never returns, and the next
 * case must still run. Returns whether the string contains WANT.
 */
static int
returns(struct vm *vm, const char *what, const char *code, const char *want)
{
	char got[4096];
	size_t n = 0;
	ssize_t r;
	int fds[2], status;
	pid_t pid;

	if (pipe(fds) < 0 || (pid = fork()) < 0) {
		fprintf(stderr, "%s: no pipe or fork\n", what);
		return 0;
	}
	if (pid == 0) {
		const char *out;
		close(fds[0]);
		alarm(10);
		out = run_lua(vm, code) == LUA_OK ? lua_tostring(vm->L, -1) : lua_tostring(vm->L, -1);
		if (out == NULL)
			out = "(not a string)";
		if (write(fds[1], out, strlen(out)) < 0)
			_exit(3);
		_exit(0);
	}
	close(fds[1]);
	while (n < sizeof(got) - 1 && (r = read(fds[0], got + n, sizeof(got) - 1 - n)) > 0)
		n += (size_t)r;
	got[n] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "%s: did not return within 10 s (signal %d)\n", what, WTERMSIG(status));
		return 0;
	}
	if (strstr(got, want) == NULL) {
		fprintf(stderr, "%s: got \"%s\", want \"%s\"\n", what, got, want);
		return 0;
	}
	return 1;
}

/* BODY, run as a function under 200000 instructions, is stopped. */
#define STOPPED(vm, what, body) CHECK(returns((vm), (what), \
	"local vm = require 'vault.vm'\n" \
	"local ok, err = vm.budget_pcall(200000, function()\n" body "\nend)\n" \
	"return ok and 'not stopped' or err", "instruction budget exceeded"))

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
	/* A smaller inner budget fails alone: the outer one goes on. */
	CHECK(returns(vm, "inner budget", "local vm = require 'vault.vm'\n"
	    "local ok, err = vm.budget_pcall(10^7, function()\n"
	    "  local ok2 = vm.budget_pcall(10000, function() while true do end end)\n"
	    "  return ok2 == false and 'outer goes on' end)\n"
	    "return ok and err or 'outer failed: ' .. err", "outer goes on"));
	/* An inner budget cannot outlive the outer one, and what spends the
	 * outer's spends it for good: the inner's caller cannot go on. */
	CHECK(returns(vm, "inner spends the outer", "local vm = require 'vault.vm'\n"
	    "local ok, err = vm.budget_pcall(50000, function()\n"
	    "  vm.budget_pcall(10^9, function() while true do end end)\n"
	    "  return 'escaped' end)\n"
	    "return ok and err or err", "instruction budget exceeded"));
	STOPPED(vm, "a loop of budget_pcall",
	    "while true do vm.budget_pcall(10^9, function() while true do end end) end");
	/* Outside any budget, no limit applies and the hook is gone. */
	CHECK(run_lua(vm, "local n = 0 for i = 1, 3000000 do n = n + 1 end return n") == LUA_OK);
	CHECK_INT(lua_tointeger(vm->L, -1), 3000000);
	lua_pop(vm->L, 1);
	vm_free(vm);
}

/* Once a budget is spent, nothing the code does catches its error. */
static void
test_budget_cannot_be_caught(void)
{
	struct vm *vm = vm_new(NULL, 0);

	engine_preload_modules(vm);
	STOPPED(vm, "pcall in a loop", "while true do pcall(function() while true do end end) end");
	STOPPED(vm, "pcall of pcall", "while true do pcall(pcall, pcall, function() while true do end end) end");
	STOPPED(vm, "xpcall whose handler loops",
	    "while true do xpcall(function() while true do end end, function() while true do end end) end");
	STOPPED(vm, "xpcall whose handler retries",
	    "local function f() while true do end end\n"
	    "while true do xpcall(f, function() return pcall(f) end) end");
	STOPPED(vm, "error objects with a looping __tostring",
	    "local e = setmetatable({}, { __tostring = function() while true do end end })\n"
	    "while true do pcall(error, e) end");
	STOPPED(vm, "coroutine.resume",
	    "while true do coroutine.resume(coroutine.create(function() while true do end end)) end");
	STOPPED(vm, "coroutine.wrap under pcall",
	    "while true do pcall(coroutine.wrap(function() while true do end end)) end");
	STOPPED(vm, "a __close that loops, closed again and again",
	    "while true do\n"
	    "  local co = coroutine.create(function()\n"
	    "    local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
	    "    coroutine.yield() end)\n"
	    "  coroutine.resume(co) pcall(coroutine.close, co)\n"
	    "end");
	STOPPED(vm, "to-be-closed variables under pcall",
	    "while true do pcall(function()\n"
	    "  local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
	    "  while true do end end) end");
	/* A coroutine made before the budget has no hook of its own. */
	CHECK(returns(vm, "a coroutine made before the budget", "local vm = require 'vault.vm'\n"
	    "local co = coroutine.wrap(function() while true do end end)\n"
	    "local co2 = coroutine.create(function() while true do pcall(function() while true do end end) end end)\n"
	    "local ok, err = vm.budget_pcall(200000, co)\n"
	    "local ok2, err2 = vm.budget_pcall(200000, coroutine.resume, co2)\n"
	    "return (ok or ok2) and 'not stopped' or err .. err2", "instruction budget exceeded"));
	/* Catching still works as before where no budget is spent. */
	CHECK(returns(vm, "pcall and xpcall as usual", "local vm = require 'vault.vm'\n"
	    "local ok, r = vm.budget_pcall(200000, function()\n"
	    "  local a, b = pcall(error, 'x', 0)\n"
	    "  local c, d = xpcall(error, function(e) return 'handled ' .. e end, 'y', 0)\n"
	    "  local co = coroutine.wrap(function() return pcall(function() coroutine.yield(1) return 2 end) end)\n"
	    "  local e1 = co() local e2, e3 = co()\n"
	    "  return tostring(a) .. b .. tostring(c) .. d .. e1 .. tostring(e2) .. e3 end)\n"
	    "return r", "falsexfalsehandled y1true2"));
	/* A non-string error comes out as a string, made inside the budget. */
	CHECK(returns(vm, "error objects", "local vm = require 'vault.vm'\n"
	    "local _, a = vm.budget_pcall(1000, error, {})\n"
	    "local _, b = vm.budget_pcall(1000, error, setmetatable({}, { __tostring = function() return 'mine' end }))\n"
	    "local _, c = vm.budget_pcall(100000, error, setmetatable({}, { __tostring = function() while true do end end }))\n"
	    "local function first(m) return m:match('^[^\\n]*') end\n"
	    "return first(a) .. '|' .. first(b) .. '|' .. type(c)", "(error object is a table value)|mine|string"));
	vm_free(vm);
}

/* Time spent in C functions counts, and a budget has a wall-clock limit. */
static void
test_budget_counts_time_in_c(void)
{
	struct vm *vm = vm_new(NULL, 0);
	double t0;

	engine_preload_modules(vm);
	STOPPED(vm, "string.find that backtracks",
	    "return string.find(('a'):rep(3000), ('a-'):rep(8) .. 'b')");
	STOPPED(vm, "string.match that backtracks",
	    "return ('a'):rep(3000):match(('a*'):rep(8) .. 'b')");
	STOPPED(vm, "string.gmatch that backtracks",
	    "for x in ('a'):rep(3000):gmatch(('a?'):rep(30) .. ('a'):rep(30) .. 'b') do end");
	STOPPED(vm, "string.gsub that backtracks",
	    "return (('a'):rep(3000)):gsub(('a-'):rep(8) .. 'b', '')");
	STOPPED(vm, "%b over unbalanced text", "return string.find(('('):rep(200000), '%b()')");
	/* Nothing repeated is nothing, at once (Lua's own loops 1e15 times). */
	CHECK(returns(vm, "string.rep of nothing", "local vm = require 'vault.vm'\n"
	    "local ok, a, b = vm.budget_pcall(200000, function()\n"
	    "  return #string.rep('', 1e15), #string.rep('', 1e15, '') end)\n"
	    "return tostring(ok) .. a .. b", "true00"));
	STOPPED(vm, "table.move of nothing", "table.move({}, 1, 1e12, 1)");
	STOPPED(vm, "table.insert with a huge __len",
	    "table.insert(setmetatable({}, { __len = function() return 1e12 end }), 1, 0)");
	STOPPED(vm, "table.remove with a huge __len",
	    "table.remove(setmetatable({}, { __len = function() return 1e12 end }), 1)");

	/* The wall clock stops what the count does not reach first. */
	t0 = mono();
	CHECK(returns(vm, "time limit", "local vm = require 'vault.vm'\n"
	    "local ok, err = vm.budget_pcall(10^15, 0.3, function() while true do end end)\n"
	    "return ok and 'not stopped' or err", "time limit exceeded"));
	CHECK(mono() - t0 < 3);
	CHECK(mono() - t0 >= 0.29);
	t0 = mono();
	CHECK(returns(vm, "time limit in C", "local vm = require 'vault.vm'\n"
	    "local ok, err = vm.budget_pcall(10^15, 0.3, function()\n"
	    "  return string.find(('a'):rep(3000), ('a-'):rep(8) .. 'b') end)\n"
	    "return ok and 'not stopped' or err", "time limit exceeded"));
	CHECK(mono() - t0 < 3);
	/* Outside a budget the same functions run to the end. */
	CHECK(returns(vm, "unbudgeted", "return tostring(string.find(('a'):rep(100), ('a-'):rep(3) .. 'b')) .. #string.rep('ab', 3, ',')",
	    "nil8"));
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

/* The message RESULT holds after the loop ran CODE's tasks. */
static const char *
task_result(struct vm *vm, struct event_base *base, const char *code)
{
	static char out[512];

	if (run_lua(vm, code) != LUA_OK) {
		snprintf(out, sizeof(out), "error: %s", vm_tostring(vm->L, -1));
		lua_pop(vm->L, 1);
		return out;
	}
	lua_pop(vm->L, 1);
	event_base_dispatch(base);
	lua_getglobal(vm->L, "result");
	snprintf(out, sizeof(out), "%s", vm_tostring(vm->L, -1));
	lua_pop(vm->L, 1);
	return out;
}

#define SPAWN_BOUNDED(body, limits) "local task = require 'vault.task'\n" \
	"result = 'not run'\n" \
	"task.spawn('b', function() " body " end, function(ok, err) result = ok and 'ok' or err end, " \
	limits ")"

/* 2 instructions an iteration (FORLOOP, ADD): 200,000 per call. */
#define BURN "local function burn() local x = 0 for i = 1, 100000 do x = x + i end end "

static void
test_task_budget_spans_resumes(void)
{
	struct event_base *base = event_base_new();
	struct vm *vm = vm_new(base, 0);
	const char *r;
	double t0;

	engine_preload_modules(vm);
	/* An endless loop, even inside pcall, is stopped. */
	r = task_result(vm, base, SPAWN_BOUNDED("while true do pcall(function() while true do end end) end",
	    "{ instructions = 200000, seconds = 5 }"));
	CHECK(strstr(r, "instruction budget exceeded") != NULL);
	/* One burn fits in 300,000 instructions; two, with a wait between,
	 * do not: the count goes on where the last resume left it. */
	r = task_result(vm, base, SPAWN_BOUNDED(BURN "burn() task.sleep(0.01)",
	    "{ instructions = 300000, seconds = 5 }"));
	CHECK_STR(r, "ok");
	r = task_result(vm, base, SPAWN_BOUNDED(BURN "burn() task.sleep(0.01) burn()",
	    "{ instructions = 300000, seconds = 5 }"));
	CHECK(strstr(r, "instruction budget exceeded (300000 instructions") != NULL);
	/* The deadline counts waits: a task waiting past it is cancelled. */
	t0 = mono();
	r = task_result(vm, base, SPAWN_BOUNDED("task.sleep(10)", "{ instructions = 1e6, seconds = 0.2 }"));
	CHECK(strstr(r, "time limit exceeded (0.2 s, waits included)") != NULL);
	CHECK(mono() - t0 < 2);
	/* ... and running: a loop under a huge count stops at the deadline. */
	t0 = mono();
	r = task_result(vm, base, SPAWN_BOUNDED("task.sleep(0.05) while true do end",
	    "{ instructions = 1e15, seconds = 0.3 }"));
	CHECK(strstr(r, "time limit exceeded") != NULL);
	CHECK(mono() - t0 < 2);
	/* Nothing of it stays behind: an unbounded task runs as long as it likes. */
	r = task_result(vm, base, SPAWN_BOUNDED(BURN "for i = 1, 10 do burn() task.sleep(0) end", "nil"));
	CHECK_STR(r, "ok");
	r = task_result(vm, base, "require('vault.task').spawn('x', function() end, nil, { seconds = 1 })");
	CHECK(strstr(r, "limits.instructions must be a number > 0") != NULL);
	CHECK_INT(task_count(vm), 0);
	vm_free(vm);
	event_base_free(base);
}

int
main(void)
{
	RUN(test_budget_stops_endless_loop);
	RUN(test_budget_cannot_be_caught);
	RUN(test_budget_counts_time_in_c);
	RUN(test_memory_cap);
	RUN(test_tasks_wake_and_stale_tokens);
	RUN(test_task_errors_carry_a_traceback);
	RUN(test_task_budget_spans_resumes);
	DONE();
}

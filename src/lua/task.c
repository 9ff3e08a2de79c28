#include "lua/task.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "log.h"
#include "lua/vm.h"

#define TASK_HANDLE "vault.task"
#define WATCHDOG_EVERY 10	/* hook calls (of 1000 instructions) between looks */

enum task_state { TASK_READY, TASK_RUNNING, TASK_WAITING, TASK_DONE };

struct cleanup {
	task_cleanup_fn fn;
	void *ud;
	struct cleanup *next;
};

struct task {
	struct vm *vm;
	lua_State *co;
	int co_ref;
	uint64_t id;
	uint64_t seq;
	uint64_t timer_seq;
	enum task_state state;
	int nargs;			/* values pushed on co for the next resume */
	struct event *resume_ev;
	int normal_priority;		/* resume_ev's priority once the first resume ran */
	struct event *timer;
	struct cleanup *cleanups;
	task_done_fn done;
	void *done_ud;
	int (*watchdog)(void *ud);
	void *watchdog_ud;
	unsigned watch_calls;
	int budgeted;			/* task_set_budget: bounded over all resumes */
	long budget_total, budget_left;	/* instructions */
	double budget_seconds;
	int64_t deadline;		/* vm_now_ns() */
	struct event *deadline_ev;
	struct task *next;
	char name[64];
};

static void task_resume_cb(evutil_socket_t fd, short what, void *arg);

static void
unlink_task(struct task *t)
{
	for (struct task **pp = &t->vm->tasks; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			return;
		}
	}
}

static void
run_cleanups(struct task *t)
{
	while (t->cleanups) {
		struct cleanup *c = t->cleanups;
		t->cleanups = c->next;
		c->fn(c->ud);
		free(c);
	}
}

/* Frees everything but leaves results on co readable until unref. */
static void
task_free(struct task *t)
{
	unlink_task(t);
	run_cleanups(t);
	if (t->resume_ev)
		event_free(t->resume_ev);
	if (t->timer)
		event_free(t->timer);
	if (t->deadline_ev)
		event_free(t->deadline_ev);
	*(struct task **)lua_getextraspace(t->co) = NULL;
	luaL_unref(t->vm->L, LUA_REGISTRYINDEX, t->co_ref);
	free(t);
}

static void
schedule(struct task *t)
{
	event_active(t->resume_ev, EV_TIMEOUT, 0);
}

/* A task that yields only to let the rest run goes on at the next loop turn,
 * after the loop looked at sockets and timers: an immediate activation would
 * be run in the same pass and starve everything else. */
static void
schedule_later(struct task *t)
{
	static const struct timeval now = { 0, 0 };

	event_add(t->resume_ev, &now);
}

/*
 * The VM's hook asks this now and then (lua/vm.c): the task being resumed
 * has a watchdog (a REPL chunk), and the watchdog says stop. The running
 * task, not the thread's: coroutines a chunk made are its code too.
 */
static int
watch(lua_State *L)
{
	struct task *t = vm_of(L)->running;

	if (t == NULL || t->watchdog == NULL || ++t->watch_calls % WATCHDOG_EVERY != 0)
		return 0;
	return t->watchdog(t->watchdog_ud);
}

struct task *
task_spawn(lua_State *L, int nargs, const char *name, task_done_fn done, void *done_ud)
{
	struct vm *vm = vm_of(L);
	struct task *t = calloc(1, sizeof(*t));

	if (t == NULL || vm->base == NULL) {
		free(t);
		lua_pop(L, nargs + 1);
		return NULL;
	}
	t->vm = vm;
	t->id = ++vm->last_task_id;
	snprintf(t->name, sizeof(t->name), "%s", name ? name : "task");
	t->co = lua_newthread(L);
	t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	*(struct task **)lua_getextraspace(t->co) = t;
	lua_xmove(L, t->co, nargs + 1);
	t->nargs = nargs;
	t->done = done;
	t->done_ud = done_ud;
	t->resume_ev = event_new(vm->base, -1, 0, task_resume_cb, t);
	if (t->resume_ev == NULL) {
		luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
		free(t);
		return NULL;
	}
	t->normal_priority = event_get_priority(t->resume_ev);
	/* A control request's chunk starts ahead of the sources' events
	 * (priority 0 is the loop's most urgent, engine.c), so the REPL and the
	 * CLI answer while many sources import. Only its first resume: one
	 * that waits or yields in a loop would keep the rest from running. */
	if (vm->spawn_urgent)
		(void)event_priority_set(t->resume_ev, 0);
	t->state = TASK_READY;
	t->next = vm->tasks;
	vm->tasks = t;
	schedule(t);
	return t;
}

struct task *
task_current(lua_State *L)
{
	return *(struct task **)lua_getextraspace(L);
}

struct task *
task_find(struct vm *vm, uint64_t id)
{
	for (struct task *t = vm->tasks; t; t = t->next)
		if (t->id == id)
			return t;
	return NULL;
}

uint64_t
task_id(const struct task *t)
{
	return t->id;
}

const char *
task_name(const struct task *t)
{
	return t->name;
}

int
task_count(struct vm *vm)
{
	int n = 0;

	for (struct task *t = vm->tasks; t; t = t->next)
		n++;
	return n;
}

struct task_token
task_wait(struct task *t)
{
	struct task_token tok = { t->id, ++t->seq };

	t->state = TASK_WAITING;
	return tok;
}

struct push_ctx {
	task_push_fn push;
	void *ud;
};

static int
push_trampoline(lua_State *L)
{
	struct push_ctx *ctx = lua_touserdata(L, 1);

	lua_settop(L, 0);
	return ctx->push(L, ctx->ud);
}

int
task_wake(struct vm *vm, struct task_token tok, task_push_fn push, void *ud)
{
	struct task *t = task_find(vm, tok.id);
	lua_State *L = vm->L;
	int top, n = 0;

	if (t == NULL || t->state != TASK_WAITING || t->seq != tok.seq)
		return -1;
	t->seq++;	/* a second wake with the same token is stale */
	if (push) {
		/* The values are built on the main thread under pcall (near the
		 * memory cap an allocation fails with an error, not a panic),
		 * then moved to the suspended coroutine. */
		struct push_ctx ctx = { push, ud };
		top = lua_gettop(L);
		lua_pushcfunction(L, push_trampoline);
		lua_pushlightuserdata(L, &ctx);
		if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
			lua_settop(L, top);
			lua_pushnil(L);
			lua_pushliteral(L, "not enough memory");
		}
		n = lua_gettop(L) - top;
		if (!lua_checkstack(t->co, n + LUA_MINSTACK)) {
			lua_settop(L, top);
			n = 0;
		} else {
			lua_xmove(L, t->co, n);
		}
	}
	t->nargs = n;
	t->state = TASK_READY;
	schedule(t);
	return 0;
}

void *
task_add_cleanup(struct task *t, task_cleanup_fn fn, void *ud)
{
	struct cleanup *c = malloc(sizeof(*c));

	if (c == NULL)
		return NULL;
	c->fn = fn;
	c->ud = ud;
	c->next = t->cleanups;
	t->cleanups = c;
	return c;
}

void
task_remove_cleanup(struct task *t, void *handle)
{
	for (struct cleanup **pp = &t->cleanups; *pp; pp = &(*pp)->next) {
		if (*pp == handle) {
			struct cleanup *c = *pp;
			*pp = c->next;
			free(c);
			return;
		}
	}
}

static int cancel_with(struct task *t, const char *msg);

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	char msg[128];

	(void)fd;
	(void)what;
	if (t->state == TASK_RUNNING || t->state == TASK_DONE)
		return;
	snprintf(msg, sizeof(msg), "time limit exceeded (%g s, waits included): the task was "
	    "cancelled", t->budget_seconds);
	cancel_with(t, msg);
}

int
task_set_budget(struct task *t, long instructions, double seconds)
{
	struct timeval tv;

	if (t->deadline_ev == NULL)
		t->deadline_ev = evtimer_new(t->vm->base, deadline_cb, t);
	if (t->deadline_ev == NULL)
		return -1;
	if (seconds < 0)
		seconds = 0;
	if (seconds > 1e6)
		seconds = 1e6;
	t->budgeted = 1;
	t->budget_total = t->budget_left = instructions > 0 ? instructions : 0;
	t->budget_seconds = seconds;
	t->deadline = vm_now_ns() + (int64_t)(seconds * 1e9);
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	return evtimer_add(t->deadline_ev, &tv);
}

/* The hook a task's thread has between resumes: the REPL's watchdog, or none. */
static void
rest_hook(struct task *t)
{
	if (t->watchdog != NULL)
		vm_hook_thread(t->co);
	else if (!vm_budget_active(t->vm))
		lua_sethook(t->co, NULL, 0, 0);
}

void
task_set_watchdog(struct task *t, int (*check)(void *ud), void *ud)
{
	t->watchdog = check;
	t->watchdog_ud = ud;
	t->watch_calls = 0;
	if (check)
		t->vm->watch = watch;
	rest_hook(t);
}

static void
finish(struct task *t, int ok, int nres)
{
	t->state = TASK_DONE;
	unlink_task(t);	/* on_done may look for it (to cancel it): it is gone */
	if (t->done)
		t->done(t, ok, t->co, nres, t->done_ud);
	task_free(t);
}

static int
traceback_of(lua_State *L)
{
	lua_State *co = lua_touserdata(L, 1);
	const char *msg = lua_tostring(L, 2);

	luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
	return 1;
}

static void
task_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	struct vm_budget b;
	int nres = 0, status;

	(void)fd;
	(void)what;
	if (event_get_priority(t->resume_ev) != t->normal_priority)
		(void)event_priority_set(t->resume_ev, t->normal_priority);	/* not active now */
	if (t->state != TASK_READY)
		return;
	if (t->budgeted && vm_now_ns() >= t->deadline) {
		deadline_cb(-1, 0, t);
		return;
	}
	t->state = TASK_RUNNING;
	t->vm->running = t;	/* resumes never nest: they come from events */
	if (t->budgeted) {
		/* The budget spans resumes: each one gets what is left. */
		b.instructions = t->budget_total;
		b.seconds = t->budget_seconds;
		vm_budget_push(t->co, &b, t->budget_left, t->deadline);
	}
	status = lua_resume(t->co, t->vm->L, t->nargs, &nres);
	if (t->budgeted) {
		long used = vm_budget_pop(t->co, &b);
		t->budget_left = used < t->budget_left ? t->budget_left - used : 0;
	}
	t->vm->running = NULL;
	t->nargs = 0;
	if (status == LUA_YIELD) {
		lua_pop(t->co, nres);
		if (t->budgeted)
			rest_hook(t);
		/* A primitive set WAITING; a bare coroutine.yield() just lets
		 * the rest of the loop run and continues on the next turn. */
		if (t->state == TASK_RUNNING) {
			t->state = TASK_READY;
			schedule_later(t);
		}
		return;
	}
	if (status == LUA_OK) {
		finish(t, 1, nres);
		return;
	}
	if (status == LUA_ERRMEM) {
		/* Whatever filled the memory dies with the coroutine's stack. */
		lua_settop(t->co, 0);
		lua_gc(t->vm->L, LUA_GCCOLLECT);
		lua_pushliteral(t->co, "not enough memory (the engine's Lua memory cap)");
		finish(t, 0, 1);
		return;
	}
	{
		lua_State *L = t->vm->L;
		int top = lua_gettop(L);
		lua_pushcfunction(L, traceback_of);
		lua_pushlightuserdata(L, t->co);
		lua_pushvalue(t->co, -1);
		lua_xmove(t->co, L, 1);
		if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_checkstack(t->co, 2)) {
			lua_pop(t->co, 1);
			lua_xmove(L, t->co, 1);
		}
		lua_settop(L, top);
	}
	finish(t, 0, 1);
}

static int
cancel_with(struct task *t, const char *msg)
{
	if (t->state == TASK_RUNNING || t->state == TASK_DONE)
		return -1;
	t->state = TASK_DONE;
	unlink_task(t);
	run_cleanups(t);
	/* Closes pending to-be-closed variables of the abandoned coroutine. */
	lua_resetthread(t->co);
	lua_settop(t->co, 0);
	lua_pushstring(t->co, msg);
	if (t->done)
		t->done(t, 0, t->co, 1, t->done_ud);
	task_free(t);
	return 0;
}

int
task_cancel(struct task *t)
{
	return cancel_with(t, "cancelled");
}

void
task_cancel_all(struct vm *vm)
{
	struct task *t, *next;

	for (t = vm->tasks; t; t = next) {
		next = t->next;
		if (t->state != TASK_RUNNING)
			task_cancel(t);
	}
}

/* ---- Lua binding: vault.task ------------------------------------------ */

struct handle {
	uint64_t id;
};

static struct task *
check_task(lua_State *L, int idx)
{
	struct handle *h = luaL_checkudata(L, idx, TASK_HANDLE);

	return task_find(vm_of(L), h->id);
}

static void
push_handle(lua_State *L, struct task *t)
{
	struct handle *h = lua_newuserdatauv(L, sizeof(*h), 0);

	h->id = t->id;
	luaL_setmetatable(L, TASK_HANDLE);
}

/* The on_done Lua function of a spawned task, called as on_done(ok, ...). */
static void
lua_done(struct task *t, int ok, lua_State *co, int nres, void *ud)
{
	lua_State *L = t->vm->L;
	int ref = (int)(intptr_t)ud;

	if (ref == LUA_NOREF)
		return;
	if (!lua_checkstack(L, nres + 3)) {
		luaL_unref(L, LUA_REGISTRYINDEX, ref);
		log_error(NULL, "task %s: no room to report its end", t->name);
		return;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	luaL_unref(L, LUA_REGISTRYINDEX, ref);
	lua_pushboolean(L, ok);
	lua_xmove(co, L, nres);
	if (vm_pcall(L, nres + 1, 0) != LUA_OK) {
		log_error(NULL, "task %s: on_done failed: %s", t->name, lua_tostring(L, -1));
		lua_pop(L, 1);
	}
}

/* A number field of LIMITS at IDX, > 0. */
static lua_Number
limit_field(lua_State *L, int idx, const char *name)
{
	lua_Number v;

	lua_getfield(L, idx, name);
	v = lua_tonumber(L, -1);
	if (!lua_isnumber(L, -1) || !(v > 0))
		return luaL_error(L, "task.spawn: limits.%s must be a number > 0", name);
	lua_pop(L, 1);
	return v;
}

/* task.spawn(name, fn [, on_done [, limits]]) -> handle
 * LIMITS = { instructions = N, seconds = S }: task_set_budget. */
static int
l_spawn(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	int ref = LUA_NOREF;
	lua_Number instructions = 0, seconds = 0;
	struct task *t;

	luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!lua_isnoneornil(L, 4)) {
		luaL_checktype(L, 4, LUA_TTABLE);
		instructions = limit_field(L, 4, "instructions");
		seconds = limit_field(L, 4, "seconds");
	}
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TFUNCTION);
		lua_pushvalue(L, 3);
		ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pushvalue(L, 2);
	t = task_spawn(L, 0, name, lua_done, (void *)(intptr_t)ref);
	if (t == NULL) {
		luaL_unref(L, LUA_REGISTRYINDEX, ref);
		return luaL_error(L, "tasks need the running engine");
	}
	if (instructions > 0 && task_set_budget(t, instructions >= (lua_Number)LONG_MAX ?
	    LONG_MAX : (long)instructions, (double)seconds) < 0) {
		task_cancel(t);
		return luaL_error(L, "task.spawn: cannot arm the task's deadline");
	}
	push_handle(L, t);
	return 1;
}

static struct task *
must_be_in_task(lua_State *L, const char *what)
{
	struct task *t = task_current(L);

	if (t == NULL)
		luaL_error(L, "%s must be called from a task (the engine, a source "
		    "or a REPL chunk), not the main thread or a plain coroutine", what);
	return t;
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	struct task_token tok = { t->id, t->timer_seq };

	(void)fd;
	(void)what;
	task_wake(t->vm, tok, NULL, NULL);
}

static void
arm_timer(struct task *t, double seconds)
{
	struct timeval tv;

	t->timer_seq = t->seq;	/* the timer wakes this wait only */
	if (t->timer == NULL)
		t->timer = evtimer_new(t->vm->base, timer_cb, t);
	if (seconds < 0)
		seconds = 0;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	evtimer_add(t->timer, &tv);
}

static int
sleep_done(lua_State *L, int status, lua_KContext ctx)
{
	struct task *t = task_current(L);

	(void)status;
	(void)ctx;
	if (t && t->timer)
		evtimer_del(t->timer);	/* woken early by task.wake */
	return 0;
}

/* task.sleep(seconds) */
static int
l_sleep(lua_State *L)
{
	struct task *t = must_be_in_task(L, "vault.sleep");
	double seconds = luaL_checknumber(L, 1);

	task_wait(t);
	arm_timer(t, seconds);
	return lua_yieldk(L, 0, 0, sleep_done);
}

static int
suspend_done(lua_State *L, int status, lua_KContext ctx)
{
	struct task *t = task_current(L);

	(void)status;
	(void)ctx;
	if (t && t->timer)
		evtimer_del(t->timer);
	if (lua_gettop(L) == 0) {	/* woken by the timer */
		lua_pushnil(L);
		lua_pushliteral(L, "timeout");
		return 2;
	}
	return lua_gettop(L);
}

/* task.suspend([timeout]) -> values given to task.wake | nil, "timeout" */
static int
l_suspend(lua_State *L)
{
	struct task *t = must_be_in_task(L, "task.suspend");

	int timed = !lua_isnoneornil(L, 1);
	double seconds = timed ? luaL_checknumber(L, 1) : 0;

	lua_settop(L, 0);
	task_wait(t);
	if (timed)
		arm_timer(t, seconds);
	return lua_yieldk(L, 0, 0, suspend_done);
}

/* Copies the caller's arguments 2..n to TARGET (the main thread). */
static int
push_wake_values(lua_State *target, void *ud)
{
	lua_State *L = ud;
	int n = lua_gettop(L) - 1;

	if (n <= 0) {
		lua_pushboolean(target, 1);
		return 1;
	}
	luaL_checkstack(L, n, "wake values");
	luaL_checkstack(target, n, "wake values");
	for (int i = 2; i <= n + 1; i++)
		lua_pushvalue(L, i);
	lua_xmove(L, target, n);
	return n;
}

/* task.wake(handle, ...) -> true if it was suspended */
static int
l_wake(lua_State *L)
{
	struct task *t = check_task(L, 1);
	struct task_token tok;

	if (t == NULL || t->state != TASK_WAITING) {
		lua_pushboolean(L, 0);
		return 1;
	}
	tok.id = t->id;
	tok.seq = t->seq;
	lua_pushboolean(L, task_wake(t->vm, tok, push_wake_values, L) == 0);
	return 1;
}

static int
l_cancel(lua_State *L)
{
	struct task *t = check_task(L, 1);

	if (t == NULL) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (task_cancel(t) < 0)
		return luaL_error(L, "a task cannot cancel itself");
	lua_pushboolean(L, 1);
	return 1;
}

static int
l_current(lua_State *L)
{
	struct task *t = task_current(L);

	if (t == NULL)
		return 0;
	push_handle(L, t);
	return 1;
}

static int
l_status(lua_State *L)
{
	static const char *names[] = { "ready", "running", "waiting", "done" };
	struct task *t = check_task(L, 1);

	lua_pushstring(L, t ? names[t->state] : "done");
	return 1;
}

static int
l_handle_tostring(lua_State *L)
{
	struct handle *h = luaL_checkudata(L, 1, TASK_HANDLE);
	struct task *t = task_find(vm_of(L), h->id);

	lua_pushfstring(L, "task %d (%s)", (int)h->id, t ? t->name : "done");
	return 1;
}

static int
l_handle_eq(lua_State *L)
{
	struct handle *a = luaL_checkudata(L, 1, TASK_HANDLE);
	struct handle *b = luaL_checkudata(L, 2, TASK_HANDLE);

	lua_pushboolean(L, a->id == b->id);
	return 1;
}

static int
l_id(lua_State *L)
{
	struct handle *h = luaL_checkudata(L, 1, TASK_HANDLE);

	lua_pushinteger(L, (lua_Integer)h->id);
	return 1;
}

static int
l_name(lua_State *L)
{
	struct task *t = check_task(L, 1);

	if (t == NULL)
		return 0;
	lua_pushstring(L, t->name);
	return 1;
}

static int
l_count(lua_State *L)
{
	lua_pushinteger(L, task_count(vm_of(L)));
	return 1;
}

int
luaopen_vault_task(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "spawn", l_spawn },
		{ "sleep", l_sleep },
		{ "suspend", l_suspend },
		{ "wake", l_wake },
		{ "cancel", l_cancel },
		{ "current", l_current },
		{ "status", l_status },
		{ "count", l_count },
		{ "id", l_id },
		{ "name", l_name },
		{ NULL, NULL }
	};
	if (luaL_newmetatable(L, TASK_HANDLE)) {
		lua_pushcfunction(L, l_handle_tostring);
		lua_setfield(L, -2, "__tostring");
		lua_pushcfunction(L, l_handle_eq);
		lua_setfield(L, -2, "__eq");
	}
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	return 1;
}

#ifndef EMAILVAULT_LUA_TASK_H
#define EMAILVAULT_LUA_TASK_H
/*
 * Tasks: Lua coroutines driven by the libevent loop. A C primitive that must
 * wait (network, timer) calls task_wait, returns lua_yield(L, 0), and later
 * a libevent callback calls task_wake with the results. Resumes always happen
 * from a deferred event, never from inside another resume, and a wake whose
 * token is stale (the task ended, was cancelled, or waits for something
 * else now) is refused.
 */
#include <stdint.h>

#include <lua.h>

struct vm;
struct task;

struct task_token {
	uint64_t id;
	uint64_t seq;
};

/* Called once when the task ends: OK with NRES results on CO's stack, or
 * !OK with the error (a traceback string) on top of CO's stack. */
typedef void (*task_done_fn)(struct task *t, int ok, lua_State *co, int nres, void *ud);
typedef void (*task_cleanup_fn)(void *ud);
typedef int (*task_push_fn)(lua_State *co, void *ud);

/* Spawns the function under NARGS arguments at the top of L's stack (both
 * popped). NAME is for the log. The task first runs from the next loop turn. */
struct task *task_spawn(lua_State *L, int nargs, const char *name,
    task_done_fn done, void *done_ud);

/* The task running on L, or NULL (main thread, plain coroutine). */
struct task *task_current(lua_State *L);
struct task *task_find(struct vm *vm, uint64_t id);
uint64_t task_id(const struct task *t);
const char *task_name(const struct task *t);

/* Marks T as waiting and returns the token a waker must present. The C
 * function then returns lua_yield(L, 0); what the waker pushes becomes the
 * results of that C function. */
struct task_token task_wait(struct task *t);
/* Delivers results to a waiting task. PUSH pushes them onto the Lua state it
 * is given (the main thread, under pcall) and returns how many; they are then
 * moved to the coroutine. Returns 0, or -1 if the token is stale. */
int task_wake(struct vm *vm, struct task_token tok, task_push_fn push, void *ud);

/*
 * Bounds T, before it first runs: at most INSTRUCTIONS counted over all its
 * resumes (a budget of lua/vm.c that its code cannot catch, resumed where it
 * left off) and SECONDS of wall time from now, waits included: at the
 * deadline a waiting task is cancelled, its done callback seeing a "time
 * limit exceeded" message. Tasks it spawns are not bounded by it (the
 * engine's own, such as sources a reload starts, must not be). -1 if the
 * deadline's timer cannot be made.
 */
int task_set_budget(struct task *t, long instructions, double seconds);

/* Cleanups run when a task ends or is cancelled, in reverse order. */
void *task_add_cleanup(struct task *t, task_cleanup_fn fn, void *ud);
void task_remove_cleanup(struct task *t, void *handle);

/* Ends T now (it must not be the running task). Its done callback sees
 * !ok with the message "cancelled". */
int task_cancel(struct task *t);
void task_cancel_all(struct vm *vm);
int task_count(struct vm *vm);

/* Runs CHECK every STEP instructions while T runs (used to interrupt a REPL
 * chunk); CHECK returns non-zero to abort the task with an error. */
void task_set_watchdog(struct task *t, int (*check)(void *ud), void *ud);

int luaopen_vault_task(lua_State *L);

#endif

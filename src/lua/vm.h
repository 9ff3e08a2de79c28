#ifndef EMAILVAULT_LUA_VM_H
#define EMAILVAULT_LUA_VM_H
/*
 * The engine's one Lua state: a memory cap enforced by its allocator, a
 * budget for untrusted code (source files, hooks) in instructions and in
 * wall time that the code cannot catch, and the embedded lua/ modules
 * reachable through require.
 */
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

struct event_base;
struct task;

/* One budgeted call, kept on the C stack of vm_pcall_budget. */
struct vm_budget {
	long long end;			/* vm->steps at which it is spent */
	int64_t deadline;		/* CLOCK_MONOTONIC, nanoseconds */
	long long start;		/* vm->steps when it began */
	long instructions;		/* what was asked, for the message */
	double seconds;
	int depth;			/* 1 for the outermost */
	struct vm_budget *outer;
};

struct vm {
	lua_State *L;
	size_t mem_used;
	size_t mem_limit;
	struct event_base *base;	/* NULL when no event loop runs (check) */
	long long steps;		/* instructions and C steps counted under budgets */
	struct vm_budget *budget;	/* the innermost running budget, or NULL */
	int exhausted;			/* depth of the outermost spent budget, or 0 */
	char why[160];			/* its error message */
	int (*watch)(lua_State *L);	/* nonzero: interrupt (lua/task.c) */
	struct task *tasks;		/* live tasks (lua/task.c) */
	struct task *running;		/* the task being resumed, or NULL */
	uint64_t last_task_id;
	int spawn_urgent;		/* nonzero: tasks spawned now are urgent (lua/task.c) */
};

#define VM_DEFAULT_MEM_LIMIT ((size_t)1 << 30)

struct vm *vm_new(struct event_base *base, size_t mem_limit);
void vm_free(struct vm *vm);
struct vm *vm_of(lua_State *L);

/* lua_pcall with a traceback on error; the message is left on the stack. */
int vm_pcall(lua_State *L, int nargs, int nresults);
/*
 * Like vm_pcall, but the call may run at most INSTRUCTIONS instructions and
 * SECONDS of wall time (a nested budget gets no more than its caller has
 * left). Once spent, the budget's error passes through every pcall, xpcall
 * and coroutine.resume of the code until this call returns. On error the
 * message left on the stack is always a string.
 */
int vm_pcall_budget(lua_State *L, int nargs, int nresults, long instructions,
    double seconds);

/*
 * The two halves of a budget, for code that cannot keep one pcall open (a
 * task's budget spans its resumes, lua/task.c): from push to pop at most
 * INSTRUCTIONS more are counted and the monotonic clock may not pass
 * DEADLINE (vm_now_ns). The caller fills B->instructions and B->seconds
 * for the message. Push sets the count hook on L; pop returns the
 * instructions counted in between and ends the budget's spent state.
 */
int64_t vm_now_ns(void);
void vm_budget_push(lua_State *L, struct vm_budget *b, long instructions, int64_t deadline);
long vm_budget_pop(lua_State *L, struct vm_budget *b);

/*
 * For C functions that loop on behalf of Lua code (pattern matching, table
 * moves): counts STEPS against the running budget, if any, and raises its
 * error once it is spent.
 */
void vm_charge(lua_State *L, long steps);
static inline int
vm_budget_active(const struct vm *vm)
{
	return vm->budget != NULL;
}
/* Raises the spent budget's error again if there is one. */
void vm_check_exhausted(lua_State *L);
/* Puts thread CO under the running budget (and the interrupt watch). */
void vm_hook_thread(lua_State *CO);

/* require(NAME) leaving the module on the stack; -1 with the error there. */
int vm_require(lua_State *L, const char *name);

/* Registers a C module for require (package.preload). */
void vm_preload(lua_State *L, const char *name, lua_CFunction open);

/* lua_tolstring-style helper that never fails, for error text. */
const char *vm_tostring(lua_State *L, int idx);

#endif

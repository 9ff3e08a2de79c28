#ifndef EMAILVAULT_LUA_VM_H
#define EMAILVAULT_LUA_VM_H
/*
 * The engine's one Lua state: a memory cap enforced by its allocator, an
 * instruction budget for untrusted code (source files, hooks), and the
 * embedded lua/ modules reachable through require.
 */
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

struct event_base;
struct task;

struct vm {
	lua_State *L;
	size_t mem_used;
	size_t mem_limit;
	struct event_base *base;	/* NULL when no event loop runs (check) */
	long budget_left;		/* instructions left in the current budget */
	int budget_depth;		/* nested budget_pcall calls */
	int interrupted;		/* set from outside: abort running code */
	struct task *tasks;		/* live tasks (lua/task.c) */
	uint64_t last_task_id;
};

#define VM_DEFAULT_MEM_LIMIT ((size_t)1 << 30)

struct vm *vm_new(struct event_base *base, size_t mem_limit);
void vm_free(struct vm *vm);
struct vm *vm_of(lua_State *L);

/* lua_pcall with a traceback on error; the message is left on the stack. */
int vm_pcall(lua_State *L, int nargs, int nresults);
/* Like vm_pcall, but the call may run at most BUDGET instructions. */
int vm_pcall_budget(lua_State *L, int nargs, int nresults, long budget);

/* require(NAME) leaving the module on the stack; -1 with the error there. */
int vm_require(lua_State *L, const char *name);

/* Registers a C module for require (package.preload). */
void vm_preload(lua_State *L, const char *name, lua_CFunction open);

/* lua_tolstring-style helper that never fails, for error text. */
const char *vm_tostring(lua_State *L, int idx);

#endif

#ifndef EMAILVAULT_LUA_CORE_H
#define EMAILVAULT_LUA_CORE_H
#include <lua.h>

/* vault.core: the small OS surface the Lua half needs (files, clock, log,
 * running a password command) and the engine's exit request. */
int luaopen_vault_core(lua_State *L);

/* Set by core.exit(code): the engine leaves its loop with this status. */
struct core_exit {
	int requested;
	int code;
};
extern struct core_exit core_exit_request;

#endif

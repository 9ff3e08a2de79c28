#ifndef EMAILVAULT_LUA_STORE_H
#define EMAILVAULT_LUA_STORE_H
#include <lua.h>

/* vault.store: the archive database for the Lua half (queries, source
 * status, folder state, stats). */
int luaopen_vault_store(lua_State *L);

#endif

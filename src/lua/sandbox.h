#ifndef EMAILVAULT_LUA_SANDBOX_H
#define EMAILVAULT_LUA_SANDBOX_H
/*
 * What keeps a budget binding and sources apart, for the whole VM: catching
 * functions that pass a spent budget on, library functions that count their
 * loops (lua/pattern.c, lua/bounded.c), the string metatable kept out of
 * reach; and vault.sandbox, the pieces of a source file's environment.
 */
#include <lua.h>

void sandbox_install(lua_State *L);
int luaopen_vault_sandbox(lua_State *L);

/* lua/pattern.c: string.find, match, gmatch and gsub, counted. */
void pattern_install(lua_State *L);
/* lua/bounded.c: string.rep, table.insert, remove and move, counted. */
void bounded_install(lua_State *L);

#endif

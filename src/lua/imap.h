#ifndef EMAILVAULT_LUA_IMAP_H
#define EMAILVAULT_LUA_IMAP_H
#include <lua.h>

/* vault.imap: connect() and connection methods (see docs/lua-api.md). */
int luaopen_vault_imap(lua_State *L);

#endif

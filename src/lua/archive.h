#ifndef EMAILVAULT_LUA_ARCHIVE_H
#define EMAILVAULT_LUA_ARCHIVE_H
#include <lua.h>

/* vault.archive: messages by id, search, the index, export (src/lua/archive.c). */
int luaopen_vault_archive(lua_State *L);

#endif

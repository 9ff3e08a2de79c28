#ifndef EMAILVAULT_LUA_STORAGE_H
#define EMAILVAULT_LUA_STORAGE_H
#include <lua.h>
/* vault.storage: attaching the archive's segments to S3 (lua/storage.lua). */
int luaopen_vault_storage(lua_State *L);
#endif

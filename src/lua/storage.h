#ifndef EMAILVAULT_LUA_STORAGE_H
#define EMAILVAULT_LUA_STORAGE_H
#include <lua.h>
/* vault.storage: attaching the archive's segments to S3 (lua/storage.lua). */
int luaopen_vault_storage(lua_State *L);

struct remote_config;
/* The settings table at T (as lua/storage.lua's settings returns it) into
 * CFG; its strings stay the table's: keep it on the stack while CFG is used. */
void storage_config_from_lua(lua_State *L, int t, struct remote_config *cfg);
#endif

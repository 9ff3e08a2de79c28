#ifndef EMAILVAULT_LUA_IMAP_H
#define EMAILVAULT_LUA_IMAP_H
#include <lua.h>

/* vault.imap: connect() and connection methods (see docs/lua-api.md). */
int luaopen_vault_imap(lua_State *L);

/* After the event loop ended: closes and frees every connection left (their
 * deferred frees would never run). */
void imap_binding_shutdown(void);

#endif

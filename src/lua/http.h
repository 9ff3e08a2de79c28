#ifndef EMAILVAULT_LUA_HTTP_H
#define EMAILVAULT_LUA_HTTP_H
#include <lua.h>

/* vault.http: request{} (see docs/lua-api.md). */
int luaopen_vault_http(lua_State *L);

/* After the tasks were cancelled and the loop ended: frees the client and
 * the connections it kept. */
void http_binding_shutdown(void);

#endif

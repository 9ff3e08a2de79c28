#ifndef EMAILVAULT_SERVE_LUA_SERVE_H
#define EMAILVAULT_SERVE_LUA_SERVE_H
#include <lua.h>

/* vault.serve: the IMAP view (src/serve/lua_serve.c, docs/imap-view.md). */
int luaopen_vault_serve(lua_State *L);

/* Closes the listener and every session (engine shutdown). */
void serve_binding_shutdown(void);

#endif

#ifndef EMAILVAULT_CONTROL_SERVER_H
#define EMAILVAULT_CONTROL_SERVER_H
/*
 * The engine side of the control socket: a Unix socket in the data folder,
 * mode 0600, and only peers with the engine's own uid (or root) are served.
 * Each client runs one Lua chunk at a time through lua/repl.lua.
 */
#include <stddef.h>

#include <lua.h>

struct event_base;
struct vm;
struct control_server;

struct control_server *control_server_start(struct event_base *base, struct vm *vm,
    const char *path, char *err, size_t errlen);
void control_server_free(struct control_server *srv);

int luaopen_vault_control(lua_State *L);

#endif

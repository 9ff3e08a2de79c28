#ifndef EMAILVAULT_CONTROL_REPL_H
#define EMAILVAULT_CONTROL_REPL_H
#include <lua.h>

/* The interactive prompt. OFFLINE runs chunks in OFFLINE_STATE (a VM with
 * the archive open read-only) instead of the engine. Returns the exit status. */
int repl_run(const char *data_dir, int offline, lua_State *offline_state);

#endif

#ifndef EMAILVAULT_ENGINE_H
#define EMAILVAULT_ENGINE_H
/*
 * The running engine: data folder and its lock, the event loop, the Lua VM
 * with the engine's modules, the control socket and the signals (HUP reload
 * and log reopen, TERM/INT graceful stop).
 */
#include "log.h"

struct engine_options {
	const char *sources_dir;
	const char *data_dir;
	const char *config_file;	/* emailvault.lua (optional unless given) */
	int config_required;		/* named by --config */
	const char *log_file;		/* NULL: stderr */
	int once;			/* one complete pass, then exit */
};

/* Returns the process exit status. */
int engine_run(const struct engine_options *opt);

/* Registers the C modules (vault.core, vault.task, ...) in a fresh VM. */
struct vm;
void engine_preload_modules(struct vm *vm);

#endif

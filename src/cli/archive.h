#ifndef EMAILVAULT_CLI_ARCHIVE_H
#define EMAILVAULT_CLI_ARCHIVE_H
/*
 * Commands that read the archive, with or without a running engine:
 * search, show, export, reindex (and the helper status and repl --offline
 * use to open the archive read-only with a VM).
 */
struct store;
struct vm;

/* The archive read-only and a VM to run the Lua half on it, for commands
 * that work without an engine. 0, or 1 after saying why. */
int open_archive_vm(const char *data, struct store **st, struct vm **vm);

int cmd_search(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_reindex(int argc, char **argv);

#endif

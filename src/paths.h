#ifndef EMAILVAULT_PATHS_H
#define EMAILVAULT_PATHS_H
#include <stddef.h>

/* Default folders: $EMAILVAULT_SOURCES, else $XDG_CONFIG_HOME/emailvault/sources.d
 * (~/.config/...); $EMAILVAULT_DATA, else $XDG_DATA_HOME/emailvault (~/.local/share/...). */
void paths_default_sources(char *buf, size_t len);
void paths_default_data(char *buf, size_t len);
/* The engine configuration file: $EMAILVAULT_CONFIG, else emailvault.lua
 * beside the sources folder SOURCES (in its parent: ~/.config/emailvault/
 * for the default sources), in BUF. */
void paths_default_config(const char *sources, char *buf, size_t len);

/* mkdir -p with MODE for each created folder; 0 or -1 with errno. */
int paths_mkdir_p(const char *path, unsigned mode);

#endif

#ifndef EMAILVAULT_LUA_EMBEDDED_H
#define EMAILVAULT_LUA_EMBEDDED_H
#include <stddef.h>

/* The lua/ folder compiled into the binary (see embed.cmake). */
struct embedded_module {
	const char *name;	/* "sources" for lua/sources.lua */
	const char *source;
	size_t len;
};

extern const struct embedded_module embedded_modules[];

#endif

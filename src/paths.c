#include "paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *
home(void)
{
	const char *h = getenv("HOME");

	return h && *h ? h : ".";
}

void
paths_default_sources(char *buf, size_t len)
{
	const char *env = getenv("EMAILVAULT_SOURCES");
	const char *xdg = getenv("XDG_CONFIG_HOME");

	if (env && *env)
		snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		snprintf(buf, len, "%s/emailvault/sources.d", xdg);
	else
		snprintf(buf, len, "%s/.config/emailvault/sources.d", home());
}

void
paths_default_config(const char *sources, char *buf, size_t len)
{
	const char *env = getenv("EMAILVAULT_CONFIG");
	size_t n = strlen(sources);

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	/* beside SOURCES: its parent, trailing slashes ignored */
	while (n > 1 && sources[n - 1] == '/')
		n--;
	while (n > 0 && sources[n - 1] != '/')
		n--;
	while (n > 1 && sources[n - 1] == '/')
		n--;
	if (n == 0)
		snprintf(buf, len, "emailvault.lua");
	else if (n == 1 && sources[0] == '/')
		snprintf(buf, len, "/emailvault.lua");
	else
		snprintf(buf, len, "%.*s/emailvault.lua", (int)n, sources);
}

void
paths_default_data(char *buf, size_t len)
{
	const char *env = getenv("EMAILVAULT_DATA");
	const char *xdg = getenv("XDG_DATA_HOME");

	if (env && *env)
		snprintf(buf, len, "%s", env);
	else if (xdg && *xdg)
		snprintf(buf, len, "%s/emailvault", xdg);
	else
		snprintf(buf, len, "%s/.local/share/emailvault", home());
}

int
paths_mkdir_p(const char *path, unsigned mode)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

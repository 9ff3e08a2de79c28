#ifndef EMAILVAULT_CLI_OPTIONS_H
#define EMAILVAULT_CLI_OPTIONS_H
/*
 * The command line's options, shared by every command: each command says
 * which ones apply to it, and a wrong one is a usage error (exit 2).
 */
#include <stdio.h>

#define EXIT_USAGE 2

enum { OPT_SOURCES = 1000, OPT_DATA, OPT_LOG, OPT_LOG_LEVEL, OPT_ONCE, OPT_JSON, OPT_HELP,
	OPT_OFFLINE, OPT_RECLAIM, OPT_LIMIT, OPT_OFFSET, OPT_RAW, OPT_HEADERS, OPT_TEXT,
	OPT_FORMAT, OPT_OUT, OPT_BY_FOLDER, OPT_REPAIR_INDEX, OPT_CONFIG };

struct cli {
	const char *sources;
	const char *data;
	const char *config;		/* emailvault.lua: NULL, see paths_default_config */
	int config_given;		/* by --config: then it must exist */
	const char *log_file;
	const char *log_level;
	int once;
	int json;
	int offline;
	int reclaim;
	long limit, offset;		/* search; -1 when not given */
	int show;			/* show: 0, OPT_RAW, OPT_HEADERS or OPT_TEXT */
	const char *format, *out;	/* export */
	int by_folder;
	int repair_index;		/* verify */
};

/* The defaults of --sources and --data (main.c). */
extern char default_sources[4096];
extern char default_data[4096];

void cli_init(struct cli *cli);
/* Parses the options ALLOWED (0-terminated OPT_ values) for COMMAND.
 * Returns the index of the first operand, or -1 after a usage error. */
int parse_options(int argc, char **argv, const char *command, const int *allowed,
    struct cli *cli);
/* Prints "emailvault: FMT" and the usage hint; returns EXIT_USAGE. */
int usage_error(const char *fmt, const char *arg);
/* The --help text (main.c). */
void usage(FILE *f);

#endif

/*
 * Option parsing shared by every command.
 */
#include "cli/options.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

void
cli_init(struct cli *cli)
{
	memset(cli, 0, sizeof(*cli));
	cli->sources = default_sources;
	cli->data = default_data;
	cli->limit = cli->offset = -1;
}

int
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "emailvault: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nrun 'emailvault --help' for usage\n");
	return EXIT_USAGE;
}

/* Parses the options ALLOWED (a string of OPT_ letters) for COMMAND. Returns
 * the index of the first operand, or -1 after a usage error was printed. */
int
parse_options(int argc, char **argv, const char *command, const int *allowed, struct cli *cli)
{
	static const struct option all[] = {
		{ "sources", required_argument, NULL, OPT_SOURCES },
		{ "data", required_argument, NULL, OPT_DATA },
		{ "log", required_argument, NULL, OPT_LOG },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "offline", no_argument, NULL, OPT_OFFLINE },
		{ "reclaim", no_argument, NULL, OPT_RECLAIM },
		{ "limit", required_argument, NULL, OPT_LIMIT },
		{ "offset", required_argument, NULL, OPT_OFFSET },
		{ "raw", no_argument, NULL, OPT_RAW },
		{ "headers", no_argument, NULL, OPT_HEADERS },
		{ "text", no_argument, NULL, OPT_TEXT },
		{ "format", required_argument, NULL, OPT_FORMAT },
		{ "out", required_argument, NULL, OPT_OUT },
		{ "by-folder", no_argument, NULL, OPT_BY_FOLDER },
		{ "repair-index", no_argument, NULL, OPT_REPAIR_INDEX },
		{ "config", required_argument, NULL, OPT_CONFIG },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", all, NULL)) != -1) {
		int ok = 0;
		if (c == 'h' || c == OPT_HELP) {
			usage(stdout);
			exit(0);
		}
		for (const int *a = allowed; *a; a++)
			if (*a == c)
				ok = 1;
		if (c == '?' || c == ':' || !ok) {
			char opt[256];
			const char *bad = argv[optind - 1];
			if (c == '?' && optopt)
				snprintf(opt, sizeof(opt), "-%c", optopt);
			else
				snprintf(opt, sizeof(opt), "%s", bad);
			if (c == '?' && optopt == 0 && bad[0] == '-' && bad[1] != '-')
				fprintf(stderr, "emailvault %s: unknown option %s (a query that starts "
				    "with '-' goes after --: emailvault %s -- '%s')\n", command, opt,
				    command, bad);
			else if (c != '?' && !ok)
				fprintf(stderr, "emailvault %s: option %s does not apply to this command\n",
				    command, opt);
			else
				fprintf(stderr, "emailvault %s: unknown option or missing value: %s\n",
				    command, opt);
			fprintf(stderr, "run 'emailvault --help' for usage\n");
			return -1;
		}
		switch (c) {
		case OPT_SOURCES: cli->sources = optarg; break;
		case OPT_DATA: cli->data = optarg; break;
		case OPT_CONFIG: cli->config = optarg; cli->config_given = 1; break;
		case OPT_LOG: cli->log_file = optarg; break;
		case OPT_LOG_LEVEL: cli->log_level = optarg; break;
		case OPT_ONCE: cli->once = 1; break;
		case OPT_JSON: cli->json = 1; break;
		case OPT_OFFLINE: cli->offline = 1; break;
		case OPT_RECLAIM: cli->reclaim = 1; break;
		case OPT_LIMIT:
		case OPT_OFFSET: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || v < 0 || v > 100000000) {
				fprintf(stderr, "emailvault %s: --%s wants a number, got '%s'\n", command,
				    c == OPT_LIMIT ? "limit" : "offset", optarg);
				return -1;
			}
			if (c == OPT_LIMIT)
				cli->limit = v;
			else
				cli->offset = v;
			break;
		}
		case OPT_RAW:
		case OPT_HEADERS:
		case OPT_TEXT:
			if (cli->show && cli->show != c) {
				fprintf(stderr, "emailvault %s: --raw, --headers and --text go one at a time\n",
				    command);
				return -1;
			}
			cli->show = c;
			break;
		case OPT_FORMAT: cli->format = optarg; break;
		case OPT_OUT: cli->out = optarg; break;
		case OPT_BY_FOLDER: cli->by_folder = 1; break;
		case OPT_REPAIR_INDEX: cli->repair_index = 1; break;
		}
	}
	return optind;
}


/*
 * search, show, export and reindex: reading the archive from the command
 * line. They open archive.db read-only (SQLite's WAL lets them read while
 * the engine writes), so they work with or without a running engine;
 * reindex goes through the engine when one runs.
 */
#include "cli/archive.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "cli/options.h"
#include "control/client.h"
#include "datalock.h"
#include "engine.h"
#include "export/export.h"
#include "lua/vm.h"
#include "progress.h"
#include "search/indexer.h"
#include "search/search.h"
#include "store/db.h"
#include "store/reader.h"
#include "store/store.h"

int
open_archive_vm(const char *data, struct store **st, struct vm **vm)
{
	char err[1024], path[4096];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/archive.db", data);
	if (stat(path, &sb) < 0) {
		fprintf(stderr, "emailvault: no archive in %s yet (start the engine: emailvault run "
		    "--data %s)\n", data, data);
		return 1;
	}
	*st = store_open(data, 1, err, sizeof(err));
	if (*st == NULL) {
		fprintf(stderr, "emailvault: %s\n", err);
		return 1;
	}
	store_set_current(*st);
	*vm = vm_new(NULL, 0);
	if (*vm == NULL) {
		store_close(*st);
		return 1;
	}
	engine_preload_modules(*vm);
	return 0;
}

/*
 * Where the query starts for getopt's sake: a word like "-draft" is a
 * negated query term, not an option (these commands have no short
 * options). Long options and their values before it are left to getopt.
 */
static int
options_end(int argc, char **argv)
{
	static const char *const with_value[] = { "--data", "--limit", "--offset", "--format",
		"--out", NULL };

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || strcmp(a, "--") == 0)
			return argc;
		if (a[1] != '-' && strcmp(a, "-h") != 0)
			return i;
		for (int k = 0; with_value[k]; k++)
			if (strcmp(a, with_value[k]) == 0)
				i++;
	}
	return argc;
}

/* The operands from FIRST on, joined by spaces: the query. */
static char *
join_query(int argc, char **argv, int first)
{
	size_t n = 1;
	char *q;

	for (int i = first; i < argc; i++)
		n += strlen(argv[i]) + 1;
	if ((q = malloc(n)) == NULL)
		return NULL;
	q[0] = '\0';
	for (int i = first; i < argc; i++) {
		if (i > first)
			strcat(q, " ");
		strcat(q, argv[i]);
	}
	return q;
}

/* Calls archive.FN(args...) of lua/archive.lua, which returns (bytes, status);
 * writes the bytes to OUT. */
static int
run_archive_lua(const char *data, const char *fn, int (*push)(lua_State *L, void *ud), void *ud,
    FILE *out)
{
	struct store *st;
	struct vm *vm;
	int status = 1;

	if (open_archive_vm(data, &st, &vm) != 0)
		return 1;
	if (vm_require(vm->L, "archive") == 0) {
		lua_getfield(vm->L, -1, fn);
		int nargs = push(vm->L, ud);
		if (vm_pcall(vm->L, nargs, 2) == LUA_OK) {
			size_t len;
			const char *bytes = lua_tolstring(vm->L, -2, &len);
			status = (int)lua_tointeger(vm->L, -1);
			if (bytes) {
				FILE *f = status == 0 ? out : stderr;
				fwrite(bytes, 1, len, f);
				if (len > 0 && bytes[len - 1] != '\n' && f != out)
					fputc('\n', f);
			}
			fflush(out);
			vm_free(vm);
			store_close(st);
			return status;
		}
	}
	fprintf(stderr, "emailvault: %s\n", vm_tostring(vm->L, -1));
	vm_free(vm);
	store_close(st);
	return status;
}

struct search_args {
	const char *query;
	long limit, offset;
	int json;
};

static int
push_search(lua_State *L, void *ud)
{
	struct search_args *a = ud;

	lua_pushstring(L, a->query);
	lua_pushinteger(L, a->limit);
	lua_pushinteger(L, a->offset);
	lua_pushboolean(L, a->json);
	return 4;
}

int
cmd_search(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_LIMIT, OPT_OFFSET, OPT_JSON, 0 };
	struct cli cli;
	struct search_args a;
	int first, rc;

	cli_init(&cli);
	int end = options_end(argc, argv);
	if ((first = parse_options(end, argv, "search", allowed, &cli)) < 0)
		return EXIT_USAGE;
	if (first >= argc)
		return usage_error("%s", "search wants a query (emailvault search 'from:alice invoice')");
	a.query = join_query(argc, argv, first);
	a.limit = cli.limit >= 0 ? cli.limit : 20;
	a.offset = cli.offset >= 0 ? cli.offset : 0;
	a.json = cli.json;
	if (a.query == NULL)
		return 1;
	rc = run_archive_lua(cli.data, "cli_search", push_search, &a, stdout);
	free((char *)a.query);
	return rc;
}

struct show_args {
	const char *id;
	const char *mode;
};

static int
push_show(lua_State *L, void *ud)
{
	struct show_args *a = ud;

	lua_pushstring(L, a->id);
	if (a->mode)
		lua_pushstring(L, a->mode);
	else
		lua_pushnil(L);
	return 2;
}

int
cmd_show(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_RAW, OPT_HEADERS, OPT_TEXT, 0 };
	struct cli cli;
	struct show_args a;
	int first;

	cli_init(&cli);
	if ((first = parse_options(argc, argv, "show", allowed, &cli)) < 0)
		return EXIT_USAGE;
	if (first != argc - 1)
		return usage_error("%s", "show wants one message id (emailvault show [--raw | --headers "
		    "| --text] ID)");
	a.id = argv[first];
	a.mode = cli.show == OPT_RAW ? "raw" : cli.show == OPT_HEADERS ? "headers" :
	    cli.show == OPT_TEXT ? "text" : NULL;
	return run_archive_lua(cli.data, "cli_show", push_show, &a, stdout);
}

/* A malformed query: the message, the query, a caret under the column. */
static int
query_error(const char *cmd, const char *query, const char *err, int col)
{
	fprintf(stderr, "emailvault %s: %s\n", cmd, err);
	if (col > 0) {
		fprintf(stderr, "  %s\n  ", query);
		for (int i = 1; i < col; i++)
			fputc(' ', stderr);
		fprintf(stderr, "^\n");
	}
	return EXIT_USAGE;
}

int
cmd_export(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_FORMAT, OPT_OUT, OPT_BY_FOLDER, 0 };
	struct cli cli;
	struct export_opts o;
	struct store *st = NULL;
	struct store_reader *reader = NULL;
	struct exporter *x = NULL;
	sqlite3_stmt *q = NULL;
	struct progress bar;
	char err[1024], *query;
	long total = 0, done = 0;
	int first, col = 0, rc, status = 1;

	cli_init(&cli);
	int end = options_end(argc, argv);
	if ((first = parse_options(end, argv, "export", allowed, &cli)) < 0)
		return EXIT_USAGE;
	memset(&o, 0, sizeof(o));
	if (cli.format == NULL || export_format_parse(cli.format, &o.format) < 0)
		return usage_error("%s", "export wants --format mbox, eml or maildir");
	if (cli.out == NULL)
		return usage_error("%s", "export wants --out PATH");
	o.out = cli.out;
	o.by_folder = cli.by_folder;
	if ((query = join_query(argc, argv, first)) == NULL)
		return 1;
	if ((st = store_open(cli.data, 1, err, sizeof(err))) == NULL) {
		fprintf(stderr, "emailvault export: %s\n", err);
		goto out;
	}
	rc = search_select_for_export(db_handle(st->db), query, &q, &total, err, sizeof(err), &col);
	if (rc == SEARCH_ERR_QUERY) {
		status = query_error("export", query, err, col);
		goto out;
	}
	if (rc < 0) {
		fprintf(stderr, "emailvault export: %s\n", err);
		goto out;
	}
	if ((reader = store_reader_open(cli.data)) == NULL ||
	    (x = exporter_open(&o, err, sizeof(err))) == NULL) {
		fprintf(stderr, "emailvault export: %s\n", reader ? err : "out of memory");
		goto out;
	}
	progress_begin(&bar, "exporting", (uint64_t)total);
	int ok = 1;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct export_msg m = {
			.hash = (const char *)sqlite3_column_text(q, 0),
			.date = sqlite3_column_int64(q, 1),
			.source = (const char *)sqlite3_column_text(q, 2),
			.folder = (const char *)sqlite3_column_text(q, 3),
			.flags = (const char *)sqlite3_column_text(q, 4),
			.sender = (const char *)sqlite3_column_text(q, 5),
		};
		if (exporter_add_stored(x, &m, reader, err, sizeof(err)) < 0) {
			ok = 0;
			break;
		}
		progress_update(&bar, (uint64_t)++done);
	}
	progress_end(&bar);
	if (ok && rc != SQLITE_DONE) {
		snprintf(err, sizeof(err), "archive.db: %s", sqlite3_errmsg(db_handle(st->db)));
		ok = 0;
	}
	rc = exporter_close(x, ok, err, sizeof(err));
	x = NULL;
	if (!ok || rc < 0) {
		fprintf(stderr, "emailvault export: %s (stopped after %ld of %ld messages)\n", err, done,
		    total);
		goto out;
	}
	printf("exported %ld message%s to %s (%s)\n", done, done == 1 ? "" : "s", cli.out, cli.format);
	status = 0;
out:
	if (x)
		exporter_close(x, 0, err, sizeof(err));
	sqlite3_finalize(q);
	store_reader_close(reader);
	store_close(st);
	free(query);
	return status;
}

/* reindex through a running engine: it empties the index, its indexer
 * fills it again; we watch the lag. */
static int
reindex_in_engine(int fd, const char *data)
{
	char err[512], *reply = NULL;
	struct progress bar;
	long total = 0, lag = 0;

	if (control_query(fd, "vault.reindex() return vault.stats().index.lag", &reply) != 0) {
		close(fd);
		return 1;
	}
	close(fd);
	total = reply ? strtol(reply, NULL, 10) : 0;
	free(reply);
	progress_begin(&bar, "indexing", (uint64_t)total);
	for (;;) {
		if ((fd = control_connect(data, err, sizeof(err))) < 0) {
			progress_end(&bar);
			fprintf(stderr, "emailvault reindex: %s\n", err);
			return 1;
		}
		reply = NULL;
		int rc = control_query(fd, "return vault.stats().index.lag", &reply);
		close(fd);
		if (rc != 0) {
			progress_end(&bar);
			free(reply);
			return 1;
		}
		lag = reply ? strtol(reply, NULL, 10) : 0;
		free(reply);
		progress_update(&bar, (uint64_t)(total - lag > 0 ? total - lag : 0));
		if (lag <= 0)
			break;
		usleep(200000);
	}
	progress_end(&bar);
	printf("reindexed %ld message%s (by the running engine)\n", total, total == 1 ? "" : "s");
	return 0;
}

int
cmd_reindex(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, 0 };
	struct cli cli;
	struct index_run *r;
	struct progress bar;
	char err[1024];
	int first, lock, status = 1;
	long engine_pid = 0, done = 0;

	cli_init(&cli);
	if ((first = parse_options(argc, argv, "reindex", allowed, &cli)) < 0)
		return EXIT_USAGE;
	if (first < argc)
		return usage_error("reindex takes no arguments (got '%s')", argv[first]);
	int fd = control_connect(cli.data, err, sizeof(err));
	if (fd >= 0)
		return reindex_in_engine(fd, cli.data);
	/* No engine: rebuild here, under the engine's lock so none starts
	 * writing meanwhile. */
	if ((lock = datalock_take(cli.data, &engine_pid)) < 0) {
		if (errno == EWOULDBLOCK)
			fprintf(stderr, "emailvault reindex: %s is in use (%s); try again in a moment\n",
			    cli.data, engine_pid ? "an engine is starting" : "another command runs");
		else
			fprintf(stderr, "emailvault reindex: cannot lock %s: %s\n", cli.data, strerror(errno));
		return 1;
	}
	if ((r = index_run_open(cli.data, err, sizeof(err))) == NULL) {
		fprintf(stderr, "emailvault reindex: %s\n", err);
		close(lock);
		return 1;
	}
	if (index_run_reset(r, err, sizeof(err)) < 0) {
		fprintf(stderr, "emailvault reindex: %s\n", err);
		goto out;
	}
	int64_t total = index_run_lag(r);
	progress_begin(&bar, "indexing", total > 0 ? (uint64_t)total : 0);
	for (;;) {
		int n = index_run_step(r, 256, err, sizeof(err));
		if (n < 0) {
			progress_end(&bar);
			fprintf(stderr, "emailvault reindex: %s (after %ld messages; run it again)\n", err,
			    done);
			goto out;
		}
		if (n == 0)
			break;
		done += n;
		progress_update(&bar, (uint64_t)done);
	}
	progress_end(&bar);
	printf("reindexed %ld message%s\n", done, done == 1 ? "" : "s");
	status = 0;
out:
	index_run_close(r);
	close(lock);
	return status;
}

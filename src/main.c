/*
 * emailvault: the command line. Each command parses its own options and
 * hands over to the engine, the control socket client or the Lua half.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <gmime/gmime.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "cli/archive.h"
#include "cli/storage.h"
#include "cli/backup.h"
#include "cli/oauth2.h"
#include "cli/options.h"
#include "control/client.h"
#include "control/repl.h"
#include "datalock.h"
#include "engine.h"
#include "log.h"
#include "lua/vm.h"
#include "paths.h"
#include "progress.h"
#include "store/db.h"
#include "store/store.h"
#include "store/verify.h"
#include <sys/stat.h>

char default_sources[4096];
char default_data[4096];

void
usage(FILE *f)
{
	char config[4096];

	paths_default_config(default_sources, config, sizeof(config));
	fprintf(f,
	    "usage: emailvault COMMAND [OPTIONS]\n"
	    "\n"
	    "MyEmailVault keeps a complete, byte-exact, deduplicated archive of your\n"
	    "IMAP accounts and follows new mail as it arrives.\n"
	    "\n"
	    "commands:\n"
	    "  run      [--sources DIR] [--data DIR] [--config FILE] [--log FILE]\n"
	    "           [--log-level LEVEL] [--once]\n"
	    "           run the engine on every *.lua source file in DIR\n"
	    "  check    [--sources DIR] [--config FILE]\n"
	    "           validate every source file and the engine configuration file\n"
	    "           without connecting anywhere\n"
	    "  repl     [--data DIR] [--offline]\n"
	    "           an interactive Lua prompt inside the running engine (--offline: the\n"
	    "           archive as last recorded, no engine needed)\n"
	    "  eval     [--data DIR] [--json] 'CHUNK'\n"
	    "           run a Lua chunk inside the running engine and print its results\n"
	    "  status   [--data DIR] [--json]\n"
	    "           every source: status, progress or last sync, error (works without\n"
	    "           a running engine: as last recorded)\n"
	    "  pause    [--data DIR] ID    stop archiving a source until resumed (kept across restarts)\n"
	    "  resume   [--data DIR] ID    resume a paused source, or retry one in error now\n"
	    "  sync     [--data DIR] ID    look for new mail in every folder of a source now\n"
	    "  storage  check | verify | migrate s3|local [--sources DIR] [--data DIR]\n"
	    "           [--config FILE]: try emailvault.lua's storage = s3 { ... }, check every\n"
	    "           object the archive names, move the archive to S3 or back, resumably\n"
	    "           (docs/storage.md; migrate needs the engine stopped)\n"
	    "  oauth2 login [--sources DIR] [--data DIR] ID\n"
	    "           sign a source with password = oauth2{...} in: prints a URL and a code to\n"
	    "           enter in any browser, then stores the refresh token (docs/oauth2.md)\n"
	    "  search   [--data DIR] [--limit N] [--offset N] [--json] QUERY\n"
	    "           find messages: words, \"phrases\", prefix*, -word, OR, from: to: cc:\n"
	    "           subject: folder: source: filename: has:attachment larger: smaller:\n"
	    "           after: before: (docs/search.md)\n"
	    "  show     [--data DIR] [--raw | --headers | --text] ID\n"
	    "           one message (ID: its hash, or a unique prefix of it)\n"
	    "  export   [--data DIR] --format mbox|eml|maildir --out PATH [--by-folder] [QUERY]\n"
	    "           the messages QUERY finds (all when empty), byte-exact, each once, by date\n"
	    "  reindex  [--data DIR]\n"
	    "           rebuild the full-text index from the archived messages\n"
	    "  verify   [--data DIR] [--reclaim] [--repair-index]\n"
	    "           re-hash every archived message and check that none is missing\n"
	    "           (--reclaim: also remove orphan blobs, which no record names;\n"
	    "           only with no engine running)\n"
	    "  backup   [--data DIR] --out DIR\n"
	    "           a consistent copy of the data folder, also while the engine runs;\n"
	    "           again into the same DIR copies only what changed (docs/operations.md)\n"
	    "  version  the versions of emailvault and the libraries it runs with\n"
	    "  help     this text\n"
	    "\n"
	    "options:\n"
	    "  --sources DIR     source files, one per mail account (default: %s)\n"
	    "  --data DIR        the archive, its database and the control socket\n"
	    "                    (default: %s)\n"
	    "  --config FILE     the engine configuration file: event handlers (optional;\n"
	    "                    default: $EMAILVAULT_CONFIG, else emailvault.lua beside\n"
	    "                    the sources folder: %s)\n"
	    "  --log FILE        append the log to FILE instead of stderr (reopened on\n"
	    "                    SIGHUP and SIGUSR1, for logrotate)\n"
	    "  --log-level LEVEL debug, info, warn or error (default: info)\n"
	    "  --once            one complete pass over every source, then exit\n"
	    "                    (0 if every source finished, 1 if any ended in error)\n"
	    "  --json            print results as JSON\n"
	    "  --offline         repl without an engine, on the archive read-only\n"
	    "  --repair-index    verify: drop index rows without a message and queue missing\n"
	    "                    ones for indexing (needs no engine running)\n"
	    "  --reclaim         verify: remove orphan blobs too (needs no engine running;\n"
	    "                    a running engine does it with vault.reclaim())\n"
	    "\n"
	    "The engine reloads its configuration and sources on SIGHUP and stops cleanly\n"
	    "on SIGTERM. See docs/sources.md for the source file format, docs/configuration.md\n"
	    "for the engine configuration file.\n",
	    default_sources, default_data, config);
}

/* Unless --config named it, the engine configuration file is found beside
 * the sources folder (BUF holds its path). */
static void
default_config(struct cli *cli, char *buf, size_t len)
{
	if (!cli->config_given) {
		paths_default_config(cli->sources, buf, len);
		cli->config = buf;
	}
}

static int
cmd_run(int argc, char **argv)
{
	static const int allowed[] = { OPT_SOURCES, OPT_DATA, OPT_CONFIG, OPT_LOG, OPT_LOG_LEVEL, OPT_ONCE, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	struct engine_options opt;
	enum log_level level;
	char config[4096];
	int first = parse_options(argc, argv, "run", allowed, &cli);

	if (first < 0)
		return EXIT_USAGE;
	if (first < argc)
		return usage_error("run takes no arguments (got '%s')", argv[first]);
	if (cli.log_level) {
		if (log_parse_level(cli.log_level, &level) < 0)
			return usage_error("unknown log level '%s' (debug, info, warn or error)",
			    cli.log_level);
		log_set_level(level);
	}
	if (cli.log_file && log_open_file(cli.log_file) < 0) {
		perror(cli.log_file);
		return 1;
	}
	default_config(&cli, config, sizeof(config));
	opt.sources_dir = cli.sources;
	opt.data_dir = cli.data;
	opt.config_file = cli.config;
	opt.config_required = cli.config_given;
	opt.log_file = cli.log_file;
	opt.once = cli.once;
	return engine_run(&opt);
}

static int
cmd_check(int argc, char **argv)
{
	static const int allowed[] = { OPT_SOURCES, OPT_CONFIG, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	struct vm *vm;
	lua_State *L;
	char config[4096];
	int status = 1;
	int first = parse_options(argc, argv, "check", allowed, &cli);

	if (first < 0)
		return EXIT_USAGE;
	if (first < argc)
		return usage_error("check takes no arguments (got '%s')", argv[first]);
	default_config(&cli, config, sizeof(config));
	log_set_level(LOG_WARN);	/* warnings (a readable secret file) still show */
	vm = vm_new(NULL, 0);
	if (vm == NULL)
		return 1;
	engine_preload_modules(vm);
	L = vm->L;
	if (vm_require(L, "main") != 0)
		goto fail;
	lua_getfield(L, -1, "check");
	lua_pushstring(L, cli.sources);
	lua_pushstring(L, cli.config);
	lua_pushboolean(L, cli.config_given);
	if (vm_pcall(L, 3, 2) != LUA_OK)
		goto fail;
	status = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
		fprintf(status ? stderr : stdout, "%s\n", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	vm_free(vm);
	return status;
fail:
	fprintf(stderr, "emailvault: internal error: %s\n", vm_tostring(L, -1));
	vm_free(vm);
	return 1;
}

static int
cmd_eval(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_JSON, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	char err[1024];
	int fd, status;
	int first = parse_options(argc, argv, "eval", allowed, &cli);

	if (first < 0)
		return EXIT_USAGE;
	if (first != argc - 1) {
		fprintf(stderr, "usage: emailvault eval [--data DIR] [--json] 'CHUNK'\n");
		return EXIT_USAGE;
	}
	fd = control_connect(cli.data, err, sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "emailvault: %s\n", err);
		return 1;
	}
	status = control_eval(fd, argv[first], cli.json);
	close(fd);
	return status == 0 ? 0 : 1;
}

static int
valid_id(const char *id)
{
	if (*id == '\0')
		return 0;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

static int
cmd_status(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_JSON, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	struct store *st;
	struct vm *vm;
	int status = 1;
	int first = parse_options(argc, argv, "status", allowed, &cli);

	if (first < 0)
		return EXIT_USAGE;
	if (first < argc)
		return usage_error("status takes no arguments (got '%s')", argv[first]);
	/* A running engine knows better than archive.db (which it may not
	 * have been able to write, e.g. while another process locks it). */
	char err[1024], chunk[256];
	int fd = control_connect(cli.data, err, sizeof(err));
	if (fd >= 0) {
		snprintf(chunk, sizeof(chunk), "print(require(\"status\").print(%s, vault.now(), "
		    "vault.sources()))", cli.json ? "true" : "false");
		status = control_eval(fd, chunk, 0);
		close(fd);
		return status;
	}
	if (open_archive_vm(cli.data, &st, &vm) != 0)
		return 1;
	if (vm_require(vm->L, "status") == 0) {
		lua_getfield(vm->L, -1, "print");
		lua_pushboolean(vm->L, cli.json);
		lua_pushnumber(vm->L, (lua_Number)time(NULL));
		if (vm_pcall(vm->L, 2, 1) == LUA_OK) {
			printf("%s\n", lua_tostring(vm->L, -1));
			status = 0;
		}
	}
	if (status)
		fprintf(stderr, "emailvault: %s\n", vm_tostring(vm->L, -1));
	vm_free(vm);
	store_close(st);
	return status;
}

/* How long pause/resume/sync wait for an engine that holds the lock (it is
 * starting) to open its control socket. */
#define SOCKET_WAIT_TENTHS 50

/* pause / resume without an engine: the wish goes straight into archive.db,
 * which the engine reads when it starts. The caller holds DATA/engine.lock,
 * so no engine starts meanwhile, and only archive.db is opened: opening the
 * blob store would remove blobs/tmp/ files. */
static int
record_offline(const char *data, const char *action, const char *id)
{
	char err[1024];
	struct archive_db *adb = db_open(data, 0, err, sizeof(err));
	sqlite3_stmt *q;
	sqlite3 *db;
	int paused = strcmp(action, "pause") == 0;
	int changed = 0;

	if (adb == NULL) {
		fprintf(stderr, "emailvault: %s\n", err);
		return 1;
	}
	db = db_handle(adb);
	if (sqlite3_prepare_v2(db, paused ?
	    "INSERT INTO sources(id, name, status, paused) VALUES (?1, ?1, 'paused', 1) "
	    "ON CONFLICT(id) DO UPDATE SET paused = 1, status = 'paused'" :
	    "UPDATE sources SET paused = 0, error_attempt = NULL, next_retry = NULL WHERE id = ?1",
	    -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(q) == SQLITE_DONE)
			changed = sqlite3_changes(db);
		sqlite3_finalize(q);
	}
	db_close(adb);
	if (!changed) {
		fprintf(stderr, "emailvault: no source '%s' is recorded in %s\n", id, data);
		return 1;
	}
	printf("%s: %s (no engine is running; it applies when the engine starts)\n", action, id);
	return 0;
}

/* pause / resume / sync ID: through the running engine, or (pause and
 * resume) straight in archive.db under the engine lock when none runs. */
static int
cmd_source_action(int argc, char **argv, const char *action)
{
	static const int allowed[] = { OPT_DATA, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	char err[1024], chunk[512], lock[4096];
	const char *id;
	long engine_pid = 0;
	int fd, rc;
	int first = parse_options(argc, argv, action, allowed, &cli);

	if (first < 0)
		return EXIT_USAGE;
	if (first != argc - 1) {
		fprintf(stderr, "usage: emailvault %s [--data DIR] ID\n", action);
		return EXIT_USAGE;
	}
	id = argv[first];
	if (!valid_id(id))
		return usage_error("'%s' is not a source id (letters, digits, '.', '-', '_')", id);
	datalock_path(cli.data, lock, sizeof(lock));
	for (int tries = 0;; tries++) {
		fd = control_connect(cli.data, err, sizeof(err));
		if (fd >= 0) {
			snprintf(chunk, sizeof(chunk), "local ok, err = vault.%s(\"%s\") "
			    "if not ok then error(err, 0) end return \"%s: %s\"", action, id, action, id);
			rc = control_eval(fd, chunk, 0);
			close(fd);
			return rc;
		}
		fd = datalock_take(cli.data, &engine_pid);
		if (fd >= 0)
			break;	/* no engine runs, and none can start while we hold it */
		if (errno != EWOULDBLOCK) {
			if (errno == ENOENT)
				fprintf(stderr, "emailvault: no archive in %s yet (start the engine: "
				    "emailvault run --data %s)\n", cli.data, cli.data);
			else
				fprintf(stderr, "emailvault: cannot open %s: %s\n", lock, strerror(errno));
			return 1;
		}
		/* Held: an engine is starting (no socket yet), or another command
		 * writes. Never write beside either. */
		if (tries >= SOCKET_WAIT_TENTHS) {
			if (engine_pid > 0)
				fprintf(stderr, "emailvault: the engine (pid %ld) holding %s does not "
				    "answer on its control socket (%s); nothing was changed: try again "
				    "once it has started\n", engine_pid, lock, err);
			else
				fprintf(stderr, "emailvault: another emailvault command holds %s; "
				    "nothing was changed: try again when it has finished\n", lock);
			return 1;
		}
		usleep(100000);
	}
	if (strcmp(action, "sync") == 0) {
		close(fd);
		fprintf(stderr, "emailvault: %s\n", err);
		return 1;
	}
	rc = record_offline(cli.data, action, id);
	close(fd);
	return rc;
}

static int
cmd_repl(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_OFFLINE, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	struct store *st = NULL;
	struct vm *vm = NULL;
	int status;
	int first = parse_options(argc, argv, "repl", allowed, &cli);

	if (first < 0)
		return EXIT_USAGE;
	if (first < argc)
		return usage_error("repl takes no arguments (got '%s')", argv[first]);
	if (cli.offline && open_archive_vm(cli.data, &st, &vm) != 0)
		return 1;
	status = repl_run(cli.data, cli.offline, vm ? vm->L : NULL);
	vm_free(vm);
	store_close(st);
	return status;
}

static void
verify_progress(void *ud, uint64_t done, uint64_t total)
{
	struct progress *bar = ud;

	bar->total = total;
	progress_update(bar, done);
}

static int
cmd_verify(int argc, char **argv)
{
	static const int allowed[] = { OPT_DATA, OPT_RECLAIM, OPT_REPAIR_INDEX, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	struct verify_result r;
	struct verify_opts vo;
	struct progress bar;
	char err[1024];
	long engine_pid = 0;
	int lock = -1, rc;
	int first = parse_options(argc, argv, "verify", allowed, &cli);

	if (first < 0)
		return EXIT_USAGE;
	if (first < argc)
		return usage_error("verify takes no arguments (got '%s')", argv[first]);
	if (cli.reclaim || cli.repair_index) {
		/* Removing files is safe only where no batch can be between
		 * publishing and committing: with no engine, under its lock (the
		 * index is repaired under it too: no indexer writes meanwhile). */
		lock = datalock_take(cli.data, &engine_pid);
		if (lock < 0 && errno == EWOULDBLOCK && engine_pid > 0) {
			if (cli.reclaim)
				fprintf(stderr, "emailvault: an engine (pid %ld) is running with data folder %s; "
				    "reclaim orphan blobs through it: emailvault eval --data %s "
				    "'return vault.reclaim()'\n", engine_pid, cli.data, cli.data);
			else
				fprintf(stderr, "emailvault: an engine (pid %ld) is running with data folder %s; "
				    "stop it to repair the index, or rebuild it meanwhile: emailvault reindex "
				    "--data %s\n", engine_pid, cli.data, cli.data);
			return 1;
		}
		if (lock < 0 && errno == EWOULDBLOCK) {
			fprintf(stderr, "emailvault: another emailvault command holds %s/engine.lock; "
			    "try again when it has finished\n", cli.data);
			return 1;
		}
		if (lock < 0) {
			fprintf(stderr, "emailvault: cannot lock %s/engine.lock: %s\n", cli.data,
			    strerror(errno));
			return 1;
		}
	}
	memset(&vo, 0, sizeof(vo));
	vo.reclaim = cli.reclaim;
	vo.repair_index = cli.repair_index;
	vo.progress = verify_progress;
	vo.ud = &bar;
	progress_begin(&bar, "verifying", 0);
	rc = verify_archive(cli.data, &vo, stdout, &r, err, sizeof(err));
	progress_end(&bar);
	if (lock >= 0)
		close(lock);
	if (rc < 0) {
		fprintf(stderr, "emailvault: %s\n", err);
		return 1;
	}
	printf("%llu messages checked (%.1f MB): %llu missing, %llu corrupt, %llu orphan blobs",
	    (unsigned long long)r.checked, (double)r.bytes / 1e6, (unsigned long long)r.missing,
	    (unsigned long long)r.corrupt, (unsigned long long)r.orphans);
	if (cli.reclaim)
		printf(", %llu reclaimed (%.1f MB)", (unsigned long long)r.reclaimed,
		    (double)r.reclaimed_bytes / 1e6);
	printf("; index: %llu rows, %llu without a message or blob, %llu missing",
	    (unsigned long long)r.index_rows, (unsigned long long)r.index_orphans,
	    (unsigned long long)r.index_holes);
	if (cli.repair_index)
		printf(", %llu repaired", (unsigned long long)r.index_repaired);
	printf("; packs: %llu segments, %llu damaged, %llu unreferenced records (%.1f MB, "
	    "harmless)\n", (unsigned long long)r.segments, (unsigned long long)r.segments_bad,
	    (unsigned long long)r.unreferenced, (double)r.unreferenced_bytes / 1e6);
	return r.missing || r.corrupt || r.reclaim_failed || r.segments_bad ||
	    ((r.index_orphans || r.index_holes) && !cli.repair_index) ? 1 : 0;
}

static int
cmd_version(void)
{
	lua_State *L = luaL_newstate();
	const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);

	printf("emailvault %s\n", EMAILVAULT_VERSION);
	if (L) {
		luaL_openlibs(L);
		lua_getglobal(L, "_VERSION");
		printf("lua        %s (built with %s)\n", lua_tostring(L, -1), LUA_RELEASE);
		lua_close(L);
	}
	printf("libevent   %s\n", event_get_version());
	printf("openssl    %s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("libcurl    %s\n", curl->version);
	printf("sqlite     %s\n", sqlite3_libversion());
	printf("gmime      %u.%u.%u\n", gmime_major_version, gmime_minor_version, gmime_micro_version);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *cmd;

	paths_default_sources(default_sources, sizeof(default_sources));
	paths_default_data(default_data, sizeof(default_data));
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
		return cmd_version();
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(cmd, "eval") == 0)
		return cmd_eval(argc - 1, argv + 1);
	if (strcmp(cmd, "verify") == 0)
		return cmd_verify(argc - 1, argv + 1);
	if (strcmp(cmd, "repl") == 0)
		return cmd_repl(argc - 1, argv + 1);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc - 1, argv + 1);
	if (strcmp(cmd, "search") == 0)
		return cmd_search(argc - 1, argv + 1);
	if (strcmp(cmd, "show") == 0)
		return cmd_show(argc - 1, argv + 1);
	if (strcmp(cmd, "export") == 0)
		return cmd_export(argc - 1, argv + 1);
	if (strcmp(cmd, "backup") == 0)
		return cmd_backup(argc - 1, argv + 1);
	if (strcmp(cmd, "reindex") == 0)
		return cmd_reindex(argc - 1, argv + 1);
	if (strcmp(cmd, "storage") == 0)
		return cmd_storage(argc - 1, argv + 1);
	if (strcmp(cmd, "oauth2") == 0)
		return cmd_oauth2(argc - 1, argv + 1);
	if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 || strcmp(cmd, "sync") == 0)
		return cmd_source_action(argc - 1, argv + 1, cmd);
	if (cmd[0] == '-')
		return usage_error("unknown option '%s' (options go after the command)", cmd);
	return usage_error("unknown command '%s'", cmd);
}

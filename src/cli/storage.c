/*
 * emailvault storage: the commands about where the archive's segments are.
 * The settings are those of emailvault.lua (storage = s3 { ... }), read
 * by a Lua VM of this command's own (lua/storage.lua's settings), secrets
 * revealed there; the work is C and blocking (there is no event loop here).
 */
#include "cli/storage.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>

#include "cli/options.h"
#include "datalock.h"
#include "engine.h"
#include "log.h"
#include "lua/storage.h"
#include "lua/vm.h"
#include "paths.h"
#include "s3/client.h"
#include "store/db.h"
#include "store/remote.h"
#include "store/store.h"

static void
problem(void *ud, const char *key, const char *what)
{
	long *n = ud;

	(*n)++;
	printf("object %s: %s\n", key, what);
}

static int
usage_storage(void)
{
	fprintf(stderr, "usage: emailvault storage check | verify | migrate s3|local "
	    "[--sources DIR] [--data DIR] [--config FILE]\n");
	return EXIT_USAGE;
}

/* Runs SUB with the settings table on top of L's stack. */
static int
run(lua_State *L, const char *sub, const char *target, const char *data)
{
	struct remote_config cfg;
	struct s3_error e;
	struct store *s = NULL;
	struct remote *r = NULL;
	char err[1024];
	int lock = -1, status = 1;

	storage_config_from_lua(L, lua_gettop(L), &cfg);
	if (strcmp(sub, "check") == 0) {
		struct s3_client *c = s3_client_new(&cfg.s3, &e);
		if (c && s3_check(c, &e) == 0) {
			printf("S3 at %s, bucket %s: the keys and the clock are accepted\n",
			    s3_client_hostport(c), cfg.s3.bucket);
			status = 0;
		} else {
			fprintf(stderr, "emailvault: storage (%s): %s\n", e.kind, e.message);
		}
		s3_client_free(c);
		return status;
	}
	if (strcmp(sub, "migrate") == 0) {
		long pid = 0;
		if ((lock = datalock_take(data, &pid)) < 0) {
			if (errno == EWOULDBLOCK)
				fprintf(stderr, "emailvault: an engine runs on %s (pid %ld): stop it first\n",
				    data, pid);
			else
				fprintf(stderr, "emailvault: cannot lock %s: %s\n", data, strerror(errno));
			return 1;
		}
	}
	s = store_open(data, strcmp(sub, "verify") == 0, err, sizeof(err));
	if (s == NULL) {
		fprintf(stderr, "emailvault: cannot open the archive: %s\n", err);
		goto out;
	}
	if ((r = remote_open(&cfg, db_handle(s->db), NULL, &e)) == NULL) {
		fprintf(stderr, "emailvault: storage (%s): %s\n", e.kind, e.message);
		goto out;
	}
	if (strcmp(sub, "verify") == 0) {
		long bad = 0, n = remote_verify(r, db_handle(s->db), problem, &bad, &e);
		if (n < 0) {
			fprintf(stderr, "emailvault: storage (%s): %s\n", e.kind, e.message);
			goto out;
		}
		printf("%ld objects named by the archive checked in S3 at %s, bucket %s: %ld missing or "
		    "damaged\n", n, remote_hostport(r), cfg.s3.bucket, bad);
		status = bad ? 1 : 0;
	} else {
		int rc = strcmp(target, "s3") == 0 ?
		    remote_migrate_to_s3(r, s, stdout, err, sizeof(err)) :
		    remote_migrate_to_local(r, s, stdout, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "emailvault: storage migrate %s: %s (run it again to go on)\n",
			    target, err);
			goto out;
		}
		printf("the archive's segments are %s\n", strcmp(target, "s3") == 0 ?
		    "in S3 now (start the engine with storage = s3 { ... })" :
		    "in the data folder now (remove storage = s3 { ... } from emailvault.lua)");
		status = 0;
	}
out:
	remote_close(r);
	store_close(s);
	if (lock >= 0)
		close(lock);
	return status;
}

int
cmd_storage(int argc, char **argv)
{
	static const int allowed[] = { OPT_SOURCES, OPT_DATA, OPT_CONFIG, 0 };
	struct cli cli = { .sources = default_sources, .data = default_data };
	char config[4096];
	const char *sub, *target = NULL;
	struct vm *vm;
	lua_State *L;
	int first, status = 1;

	if (argc < 2)
		return usage_storage();
	sub = argv[1];
	if (strcmp(sub, "migrate") == 0) {
		/* emailvault storage migrate s3|local [OPTIONS] */
		if (argc < 3 || (strcmp(argv[2], "s3") != 0 && strcmp(argv[2], "local") != 0))
			return usage_storage();
		target = argv[2];
		argc--;
		argv++;
	} else if (strcmp(sub, "check") != 0 && strcmp(sub, "verify") != 0) {
		return usage_storage();
	}
	if ((first = parse_options(argc - 1, argv + 1, "storage", allowed, &cli)) < 0)
		return EXIT_USAGE;
	if (first + 1 < argc)
		return usage_storage();
	if (!cli.config_given) {
		paths_default_config(cli.sources, config, sizeof(config));
		cli.config = config;
	}
	log_set_level(LOG_WARN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((vm = vm_new(NULL, 0)) == NULL)
		return 1;
	engine_preload_modules(vm);
	L = vm->L;
	if (vm_require(L, "storage") != 0)
		goto fail;
	lua_getfield(L, -1, "settings");
	lua_pushstring(L, cli.config);
	lua_pushboolean(L, cli.config_given);
	if (vm_pcall(L, 2, 2) != LUA_OK)
		goto fail;
	if (lua_isnil(L, -2)) {
		fprintf(stderr, "emailvault: %s\n", lua_tostring(L, -1));
	} else {
		lua_pop(L, 1);
		status = run(L, sub, target, cli.data);
	}
	vm_free(vm);
	curl_global_cleanup();
	return status;
fail:
	fprintf(stderr, "emailvault: internal error: %s\n", vm_tostring(L, -1));
	vm_free(vm);
	curl_global_cleanup();
	return 1;
}

/*
 * `emailvault oauth2 login ID`: signs a source in with OAuth2 (the device
 * flow of lua/oauth2_login.lua) on a VM and event loop of its own, so it
 * needs no engine and works over SSH. The refresh token goes to
 * DATA/oauth2/ID.json; an engine running on DATA is then told, so a source
 * that stopped on a revoked token retries at once.
 */
#include "cli/oauth2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "cli/options.h"
#include "control/client.h"
#include "engine.h"
#include "log.h"
#include "lua/core.h"
#include "lua/http.h"
#include "lua/task.h"
#include "lua/vm.h"
#include "net/connect.h"
#include "paths.h"

static int
id_ok(const char *id)
{
	if (*id == '\0')
		return 0;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

/* Runs the flow; the process exit status. */
static int
run_login(const char *sources, const char *data, const char *id)
{
	struct event_base *base;
	struct vm *vm;
	lua_State *L;
	int status = 1;

	umask(077);
	if (paths_mkdir_p(data, 0700) < 0) {
		fprintf(stderr, "emailvault: cannot create data folder %s: %s\n", data, strerror(errno));
		return 1;
	}
	base = event_base_new();
	vm = base ? vm_new(base, 0) : NULL;
	if (vm == NULL) {
		fprintf(stderr, "emailvault: out of memory\n");
		if (base)
			event_base_free(base);
		return 1;
	}
	engine_preload_modules(vm);
	L = vm->L;
	if (vm_require(L, "oauth2_login") != 0)
		goto fail;
	lua_getfield(L, -1, "start");
	lua_createtable(L, 0, 3);
	lua_pushstring(L, sources);
	lua_setfield(L, -2, "sources_dir");
	lua_pushstring(L, data);
	lua_setfield(L, -2, "data_dir");
	lua_pushstring(L, id);
	lua_setfield(L, -2, "id");
	if (vm_pcall(L, 1, 0) != LUA_OK)
		goto fail;
	core_exit_request.requested = 0;
	event_base_dispatch(base);	/* until the task calls core.exit */
	status = core_exit_request.requested ? core_exit_request.code : 1;
	goto out;
fail:
	fprintf(stderr, "emailvault: internal error: %s\n", vm_tostring(L, -1));
out:
	task_cancel_all(vm);
	event_base_loop(base, EVLOOP_NONBLOCK);
	http_binding_shutdown();
	vm_free(vm);
	net_dns_free();
	event_base_free(base);
	return status;
}

/* Tells an engine running on DATA that ID has a new refresh token. */
static void
tell_engine(const char *data, const char *id)
{
	char err[1024], chunk[512], *reply = NULL;
	int fd = control_connect(data, err, sizeof(err));

	if (fd < 0)
		return;		/* none runs: it reads the token when it starts */
	snprintf(chunk, sizeof(chunk), "local r = vault.status(\"%s\") "
	    "if not r then return 0 end require(\"oauth2\").forget(\"%s\") "
	    "if r.status == \"error\" then vault.resume(\"%s\") return 1 end return 2", id, id, id);
	if (control_query(fd, chunk, &reply) == 0 && reply) {
		if (strcmp(reply, "1") == 0)
			printf("The running engine retries %s now.\n", id);
		else if (strcmp(reply, "2") == 0)
			printf("The running engine uses the new sign-in at the next login of %s.\n", id);
		else
			printf("The running engine has no source %s (reload it: kill -HUP the engine).\n", id);
	}
	free(reply);
	close(fd);
}

int
cmd_oauth2(int argc, char **argv)
{
	static const int allowed[] = { OPT_SOURCES, OPT_DATA, 0 };
	struct cli cli;
	int first, status;

	cli_init(&cli);
	if (argc < 2 || strcmp(argv[1], "login") != 0) {
		fprintf(stderr, "usage: emailvault oauth2 login [--sources DIR] [--data DIR] ID\n");
		return EXIT_USAGE;
	}
	first = parse_options(argc - 1, argv + 1, "oauth2 login", allowed, &cli);
	if (first < 0)
		return EXIT_USAGE;
	if (first != argc - 2) {
		fprintf(stderr, "usage: emailvault oauth2 login [--sources DIR] [--data DIR] ID\n");
		return EXIT_USAGE;
	}
	if (!id_ok(argv[first + 1]))
		return usage_error("'%s' is not a source id (letters, digits, '.', '-', '_')",
		    argv[first + 1]);
	log_set_level(LOG_WARN);	/* the command speaks for itself on stdout */
	status = run_login(cli.sources, cli.data, argv[first + 1]);
	if (status == 0)
		tell_engine(cli.data, argv[first + 1]);
	return status;
}

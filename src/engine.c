#include "engine.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "control/client.h"
#include "control/server.h"
#include "datalock.h"
#include "lua/archive.h"
#include "lua/core.h"
#include "lua/http.h"
#include "lua/storage.h"
#include "serve/lua_serve.h"
#include "lua/imap.h"
#include "lua/store.h"
#include "mime/headers.h"
#include "store/db.h"
#include "store/store.h"
#include "sync/archive.h"
#include "lua/task.h"
#include "lua/vm.h"
#include "net/connect.h"
#include "notify.h"
#include "paths.h"
#include "search/indexer.h"

/* After SIGTERM, how long in-flight work may take before we leave anyway. */
#define STOP_GRACE_SECONDS 8

#define LOOP_PRIORITIES 2	/* see new_loop */
#define LOOP_RECHECK_US 5000

struct engine {
	struct event_base *base;
	struct vm *vm;
	struct control_server *control;
	struct store *store;
	struct indexer *indexer;
	struct event *sighup, *sigterm, *sigint, *sigusr1, *stop_timer;
	int stopping;
	int stop_ticks;
	int lock_fd;
	const char *log_file;		/* --log, or NULL */
};

void
engine_preload_modules(struct vm *vm)
{
	vm_preload(vm->L, "vault.core", luaopen_vault_core);
	vm_preload(vm->L, "vault.task", luaopen_vault_task);
	vm_preload(vm->L, "vault.control", luaopen_vault_control);
	vm_preload(vm->L, "vault.imap", luaopen_vault_imap);
	vm_preload(vm->L, "vault.store", luaopen_vault_store);
	vm_preload(vm->L, "vault.archive", luaopen_vault_archive);
	vm_preload(vm->L, "vault.http", luaopen_vault_http);
	vm_preload(vm->L, "vault.storage", luaopen_vault_storage);
	vm_preload(vm->L, "vault.serve", luaopen_vault_serve);
}

/* Calls main.FN(...) from lua/main.lua with NARGS arguments on the stack;
 * leaves one result. -1 with the error logged. */
static int
call_main(struct vm *vm, const char *fn, int nargs)
{
	lua_State *L = vm->L;

	if (vm_require(L, "main") != 0)
		goto fail;
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	lua_insert(L, -1 - nargs);
	if (vm_pcall(L, nargs, 1) != LUA_OK)
		goto fail;
	return 0;
fail:
	log_error(NULL, "internal error in main.%s: %s", fn, vm_tostring(L, -1));
	lua_settop(L, 0);
	lua_pushnil(L);
	return -1;
}

static void
leave_loop(struct engine *e)
{
	event_base_loopexit(e->base, NULL);
}

/* While stopping: leave as soon as no task is left, or when time is up. */
static void
stop_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;

	(void)fd;
	(void)what;
	if (task_count(e->vm) == 0) {
		leave_loop(e);
		return;
	}
	if (++e->stop_ticks >= STOP_GRACE_SECONDS * 10) {
		log_warn(NULL, "stop: %d tasks still running after %d s; leaving anyway",
		    task_count(e->vm), STOP_GRACE_SECONDS);
		leave_loop(e);
	}
}

static void
begin_stop(struct engine *e, const char *why)
{
	struct timeval tv = { 0, 100000 };

	if (e->stopping)
		return;
	e->stopping = 1;
	log_info(NULL, "stopping (%s)", why);
	notify_send("STOPPING=1");
	if (call_main(e->vm, "stop", 0) == 0)
		lua_pop(e->vm->L, 1);
	control_server_free(e->control);
	e->control = NULL;
	/* Tasks still running (a polite LOGOUT) get the grace period. */
	e->stop_timer = event_new(e->base, -1, EV_PERSIST, stop_check_cb, e);
	evtimer_add(e->stop_timer, &tv);
	if (task_count(e->vm) == 0)
		leave_loop(e);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct engine *e = arg;

	(void)what;
	if (sig == SIGHUP || sig == SIGUSR1) {
		/* logrotate's postrotate sends either: the file was moved away */
		if (log_reopen() < 0)
			log_error(NULL, "cannot reopen the log file: %s", strerror(errno));
		else if (sig == SIGUSR1 && e->log_file) {
			char q[1024];
			log_info(NULL, "SIGUSR1: log file reopened path=%s",
			    log_quote(q, sizeof(q), e->log_file));
		}
	}
	if (sig == SIGHUP && !e->stopping) {
		log_info(NULL, "SIGHUP: reloading the configuration and sources");
		notify_reloading();
		if (call_main(e->vm, "reload", 0) == 0)
			lua_pop(e->vm->L, 1);
		notify_send("READY=1");
	}
	if (sig == SIGHUP || sig == SIGUSR1)
		return;
	begin_stop(e, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* How long a starting engine waits for a short command (pause, resume,
 * verify --reclaim) to release DATA/engine.lock. */
#define LOCK_WAIT_SECONDS 3

static int
lock_data_dir(struct engine *e, const char *data_dir)
{
	char path[4096], pid[32];
	long other = 0;
	int n, waited = 0;

	datalock_path(data_dir, path, sizeof(path));
	while ((e->lock_fd = datalock_take(data_dir, &other)) < 0) {
		if (errno != EWOULDBLOCK) {
			fprintf(stderr, "emailvault: cannot open %s: %s\n", path, strerror(errno));
			return -1;
		}
		if (other > 0) {
			fprintf(stderr, "emailvault: another engine (pid %ld) is already running with "
			    "data folder %s; stop it first, or use another --data folder\n",
			    other, data_dir);
			return -1;
		}
		if (waited++ >= LOCK_WAIT_SECONDS * 20) {
			fprintf(stderr, "emailvault: data folder %s is in use by another emailvault "
			    "command (pause, resume or verify --reclaim holds %s); try again when it "
			    "has finished\n", data_dir, path);
			return -1;
		}
		usleep(50000);
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(e->lock_fd, 0) < 0 || pwrite(e->lock_fd, pid, (size_t)n, 0) != n)
		log_warn(NULL, "cannot write the pid to %s", path);
	return 0;
}

/*
 * glibc gives each thread of its own a malloc arena (up to 8 a core), and
 * an arena keeps what its thread freed: the compressor's outputs, each
 * indexer extractor's decompressed message (2 MB on the realistic mix).
 * With one arena a core, freed buffers are reused by the next thread that
 * needs one. 5,000 realistic messages with the indexer on: peak RSS
 * 46-48 MiB against 55-59 MiB; with connections = 2, 56-59 against
 * 62-68 MiB (over the 64 MiB target); 20,000 small: 50-53 against
 * 54-55 MiB; no CPU cost seen. Before any thread starts.
 */
static void
share_arenas(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	mallopt(M_ARENA_MAX, cpus < 2 ? 2 : (int)cpus);
}

/*
 * The event loop, with two priorities: 0 for the control socket (its
 * listener, its clients, the chunks they run) and 1, the default, for all
 * else. Libevent runs a turn's most urgent events first, and after 5 ms of
 * the others it looks at the sockets again, so a REPL or CLI request waits
 * for at most one callback, not for a turn of fifty sources' reads and
 * commits. Falls back to a plain loop if the config is refused.
 */
static struct event_base *
new_loop(void)
{
	static const struct timeval recheck = { 0, LOOP_RECHECK_US };
	struct event_config *cfg = event_config_new();
	struct event_base *base = NULL;

	if (cfg != NULL && event_config_set_max_dispatch_interval(cfg, &recheck, -1, 1) == 0)
		base = event_base_new_with_config(cfg);
	if (cfg != NULL)
		event_config_free(cfg);
	if (base == NULL)
		base = event_base_new();
	if (base != NULL && event_base_priority_init(base, LOOP_PRIORITIES) < 0)
		log_warn(NULL, "the event loop has no priorities: the control socket "
		    "may answer slowly while sources import");
	return base;
}

int
engine_run(const struct engine_options *opt)
{
	struct engine e;
	char sock[4096], err[512];
	lua_State *L;
	int status = 0;
	struct stat st;

	memset(&e, 0, sizeof(e));
	e.lock_fd = -1;
	e.log_file = opt->log_file;
	share_arenas();
	umask(077);
	if (opt->log_file == NULL)
		log_detect_journal();
	if (paths_mkdir_p(opt->data_dir, 0700) < 0) {
		fprintf(stderr, "emailvault: cannot create data folder %s: %s\n",
		    opt->data_dir, strerror(errno));
		return 1;
	}
	if (stat(opt->data_dir, &st) == 0 && (st.st_mode & 077))
		log_warn(NULL, "data folder %s is accessible to other users (mode %o); "
		    "chmod 700 it", opt->data_dir, (unsigned)(st.st_mode & 0777));
	if (lock_data_dir(&e, opt->data_dir) < 0) {
		if (e.lock_fd >= 0)
			close(e.lock_fd);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	e.store = store_open(opt->data_dir, 0, err, sizeof(err));
	if (e.store == NULL) {
		log_error(NULL, "cannot open the archive: %s", err);
		close(e.lock_fd);
		return 1;
	}
	store_set_current(e.store);
	if (db_checkpoint_on_thread(e.store->db) < 0)
		log_warn(NULL, "archive.db's WAL is checkpointed on the event loop: its thread "
		    "cannot start");
	mime_init();
	/* The full-text index is filled beside archiving, on its own thread
	 * and connection (EMAILVAULT_INDEXER=off leaves it to `reindex`). */
	{
		const char *ix = getenv("EMAILVAULT_INDEXER");
		if (ix == NULL || strcmp(ix, "off") != 0) {
			e.indexer = indexer_start(opt->data_dir, err, sizeof(err));
			if (e.indexer == NULL)
				log_error(NULL, "the indexer cannot start (search lags until it does): %s", err);
		} else {
			log_info(NULL, "the indexer is off (EMAILVAULT_INDEXER=off)");
		}
	}
	e.base = new_loop();
	{
		/* EMAILVAULT_LUA_MEMORY: the Lua memory cap in MiB (default 1024). */
		const char *mem = getenv("EMAILVAULT_LUA_MEMORY");
		size_t cap = mem && atol(mem) > 0 ? (size_t)atol(mem) << 20 : 0;
		e.vm = e.base ? vm_new(e.base, cap) : NULL;
	}
	if (e.vm == NULL) {
		fprintf(stderr, "emailvault: out of memory\n");
		return 1;
	}
	engine_preload_modules(e.vm);
	L = e.vm->L;

	control_socket_path(opt->data_dir, sock, sizeof(sock));
	e.control = control_server_start(e.base, e.vm, sock, err, sizeof(err));
	if (e.control == NULL) {
		log_error(NULL, "%s", err);
		status = 1;
		goto out;
	}

	lua_createtable(L, 0, 6);
	lua_pushstring(L, opt->sources_dir);
	lua_setfield(L, -2, "sources_dir");
	lua_pushstring(L, opt->config_file);
	lua_setfield(L, -2, "config_file");
	lua_pushboolean(L, opt->config_required);
	lua_setfield(L, -2, "config_required");
	lua_pushstring(L, opt->data_dir);
	lua_setfield(L, -2, "data_dir");
	lua_pushboolean(L, opt->once);
	lua_setfield(L, -2, "once");
	lua_pushstring(L, sock);
	lua_setfield(L, -2, "control_socket");
	if (call_main(e.vm, "run", 1) < 0 || !lua_toboolean(L, -1)) {
		status = 1;
		goto out;
	}
	lua_pop(L, 1);

	e.sighup = evsignal_new(e.base, SIGHUP, signal_cb, &e);
	e.sigterm = evsignal_new(e.base, SIGTERM, signal_cb, &e);
	e.sigint = evsignal_new(e.base, SIGINT, signal_cb, &e);
	e.sigusr1 = evsignal_new(e.base, SIGUSR1, signal_cb, &e);
	evsignal_add(e.sighup, NULL);
	evsignal_add(e.sigterm, NULL);
	evsignal_add(e.sigint, NULL);
	evsignal_add(e.sigusr1, NULL);

	/* Started: the control socket answers and every source is loaded.
	 * (Type=notify units wait for this; the pid is in engine.lock.) */
	if (notify_send("READY=1") < 0)
		log_warn(NULL, "cannot notify the service manager at $NOTIFY_SOCKET: %s",
		    strerror(errno));
	log_info(NULL, "ready pid=%ld", (long)getpid());
	event_base_dispatch(e.base);
	if (!e.stopping)
		begin_stop(&e, core_exit_request.requested ? "done" : "loop ended");
	if (core_exit_request.requested)
		status = core_exit_request.code;
out:
	control_server_free(e.control);
	task_cancel_all(e.vm);
	/* Run what was deferred to the loop (frees), then close what is left. */
	event_base_loop(e.base, EVLOOP_NONBLOCK);
	imap_binding_shutdown();
	http_binding_shutdown();
	serve_binding_shutdown();
	if (e.stop_timer)
		event_free(e.stop_timer);
	if (e.sighup) {
		event_free(e.sighup);
		event_free(e.sigterm);
		event_free(e.sigint);
		event_free(e.sigusr1);
	}
	vm_free(e.vm);
	archive_shutdown();	/* the commit thread, before the base it answers on */
	net_dns_free();
	event_base_free(e.base);
	indexer_stop(e.indexer);
	store_close(e.store);
	if (e.lock_fd >= 0) {
		if (ftruncate(e.lock_fd, 0) < 0) {
			/* nothing to do: the lock goes with the process */
		}
		close(e.lock_fd);
	}
	log_info(NULL, "exit status=%d", status);
	return status;
}

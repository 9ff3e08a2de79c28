#include "lua/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <lauxlib.h>
#include <openssl/evp.h>

#include "log.h"
#include "lua/vm.h"
#include "paths.h"

extern char **environ;

struct core_exit core_exit_request;

#define READFILE_DEFAULT_MAX (4 << 20)
#define COMMAND_OUTPUT_MAX (64 << 10)

static int
push_errno(lua_State *L, const char *what)
{
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", what, strerror(errno));
	return 2;
}

/* core.log(level, source|nil, message) */
static int
l_log(lua_State *L)
{
	enum log_level level;
	const char *name = luaL_checkstring(L, 1);
	const char *source = luaL_optstring(L, 2, NULL);
	const char *msg = luaL_checkstring(L, 3);

	if (log_parse_level(name, &level) < 0)
		return luaL_error(L, "unknown log level '%s'", name);
	log_msg(level, source, "%s", msg);
	return 0;
}

static int
l_log_enabled(lua_State *L)
{
	enum log_level level;

	if (log_parse_level(luaL_checkstring(L, 1), &level) < 0)
		return luaL_error(L, "unknown log level");
	lua_pushboolean(L, level >= log_get_level());
	return 1;
}

static int
l_add_secret(lua_State *L)
{
	log_add_secret(luaL_checkstring(L, 1));
	return 0;
}

/* core.scrub(s): S with the registered secrets replaced by *** */
static int
l_scrub(lua_State *L)
{
	size_t len, outlen;
	const char *s = luaL_checklstring(L, 1, &len);
	char *out = log_scrub(s, len, &outlen);

	if (out == NULL)
		return luaL_error(L, "not enough memory");
	lua_pushlstring(L, out, outlen);
	free(out);
	return 1;
}

static int
l_now(lua_State *L)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

static int
l_monotonic(lua_State *L)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* core.listdir(path) -> sorted array of entry names | nil, err */
static int
l_listdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	DIR *d = opendir(path);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (d == NULL)
		return push_errno(L, path);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **grown = realloc(names, cap * sizeof(*names));
			if (grown == NULL)
				break;
			names = grown;
		}
		names[n] = strdup(de->d_name);
		if (names[n] == NULL)
			break;
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp_names);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_pushstring(L, names[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
		free(names[i]);
	}
	free(names);
	return 1;
}

/* core.readfile(path [, max]) -> contents | nil, err */
static int
l_readfile(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, READFILE_DEFAULT_MAX);
	luaL_Buffer b;
	char chunk[8192];
	ssize_t r;
	lua_Integer total = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return push_errno(L, path);
	luaL_buffinit(L, &b);
	while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			int saved = errno;
			close(fd);
			errno = saved;
			return push_errno(L, path);
		}
		total += r;
		if (total > max) {
			close(fd);
			lua_pushnil(L);
			lua_pushfstring(L, "%s: larger than %d bytes", path, (int)max);
			return 2;
		}
		luaL_addlstring(&b, chunk, (size_t)r);
	}
	close(fd);
	luaL_pushresult(&b);
	return 1;
}

/* core.stat(path) -> {size=, mtime=, mode=, type="file"|"dir"|"other"} | nil, err */
static int
l_stat(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;

	if (stat(path, &st) < 0)
		return push_errno(L, path);
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, (lua_Integer)st.st_size);
	lua_setfield(L, -2, "size");
	lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
	lua_setfield(L, -2, "mtime");
	lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
	lua_setfield(L, -2, "mode");
	lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
	lua_setfield(L, -2, "type");
	return 1;
}

static int
l_getenv(lua_State *L)
{
	const char *v = getenv(luaL_checkstring(L, 1));

	if (v == NULL)
		return 0;
	lua_pushstring(L, v);
	return 1;
}

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * core.run(argv, timeout) -> stdout, exit_status, stderr | nil, err
 * Runs a password command without a shell. It blocks the loop, so it is
 * bounded in time and output; it only runs when a source file is loaded.
 */
static int
l_run(lua_State *L)
{
	double timeout = luaL_optnumber(L, 2, 10);
	int n, out[2], err[2], status = 0;
	char **argv;
	pid_t pid;
	posix_spawn_file_actions_t fa;
	luaL_Buffer bout;
	char errbuf[1024];
	size_t errlen = 0, outlen = 0;
	double deadline;
	int open_fds = 2, killed = 0;

	luaL_checktype(L, 1, LUA_TTABLE);
	n = (int)luaL_len(L, 1);
	if (n < 1)
		return luaL_error(L, "empty command");
	argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, 1, i + 1);
		argv[i] = (char *)luaL_checkstring(L, -1);
		lua_pop(L, 1);	/* the table keeps the string alive */
	}
	argv[n] = NULL;
	if (pipe(out) < 0)
		return push_errno(L, "pipe");
	if (pipe(err) < 0) {
		close(out[0]);
		close(out[1]);
		return push_errno(L, "pipe");
	}
	for (int i = 0; i < 2; i++) {
		fcntl(out[i], F_SETFD, FD_CLOEXEC);
		fcntl(err[i], F_SETFD, FD_CLOEXEC);
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	close(err[1]);
	if (rc != 0) {
		close(out[0]);
		close(err[0]);
		lua_pushnil(L);
		lua_pushfstring(L, "cannot run %s: %s", argv[0], strerror(rc));
		return 2;
	}
	luaL_buffinit(L, &bout);
	deadline = mono_now() + timeout;
	struct pollfd pfd[2] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 } };
	while (open_fds > 0) {
		int left = (int)((deadline - mono_now()) * 1000);
		if (left <= 0) {
			kill(pid, SIGKILL);
			killed = 1;
			break;
		}
		if (poll(pfd, 2, left) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			char chunk[4096];
			ssize_t r;
			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = read(pfd[i].fd, chunk, sizeof(chunk));
			if (r <= 0) {
				close(pfd[i].fd);
				pfd[i].fd = -1;
				open_fds--;
				continue;
			}
			if (i == 0 && outlen + (size_t)r <= COMMAND_OUTPUT_MAX) {
				luaL_addlstring(&bout, chunk, (size_t)r);
				outlen += (size_t)r;
			} else if (i == 1) {
				size_t room = sizeof(errbuf) - 1 - errlen;
				size_t take = (size_t)r < room ? (size_t)r : room;
				memcpy(errbuf + errlen, chunk, take);
				errlen += take;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	luaL_pushresult(&bout);
	if (killed) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s did not finish within %d seconds", argv[0], (int)timeout);
		return 2;
	}
	lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	errbuf[errlen] = '\0';
	lua_pushstring(L, errbuf);
	return 3;
}

/* core.exit(code): leave the event loop with this exit status. */
static int
l_exit(lua_State *L)
{
	struct vm *vm = vm_of(L);

	core_exit_request.requested = 1;
	core_exit_request.code = (int)luaL_optinteger(L, 1, 0);
	if (vm->base)
		event_base_loopexit(vm->base, NULL);
	return 0;
}

static int
l_pid(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)getpid());
	return 1;
}

/* ---- small private files (lua/oauth2.lua's token store) -------------------- */

/* core.writefile(path, data [, mode]) -> true | nil, err. Atomic: a temporary
 * file beside PATH (MODE, default 0600, never following a link), synced,
 * renamed over PATH, and the folder synced; readers see the old or the new
 * file whole. */
static int
l_writefile(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len, off = 0;
	const char *data = luaL_checklstring(L, 2, &len);
	mode_t mode = (mode_t)luaL_optinteger(L, 3, 0600);
	char tmp[4096], dir[4096], *slash;
	int fd, saved;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid()) >= sizeof(tmp))
		return luaL_error(L, "core.writefile: path too long");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return push_errno(L, path);
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		off += (size_t)w;
	}
	if (fchmod(fd, mode) < 0 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	lua_pushboolean(L, 1);
	return 1;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return push_errno(L, path);
}

/* core.mkdir(path [, mode]) -> true | nil, err: mkdir -p, MODE (default
 * 0700) for each folder it creates. */
static int
l_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);

	if (paths_mkdir_p(path, (unsigned)luaL_optinteger(L, 2, 0700)) < 0)
		return push_errno(L, path);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.remove(path) -> true | nil, err; a file that is not there is removed. */
static int
l_remove(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);

	if (unlink(path) < 0 && errno != ENOENT)
		return push_errno(L, path);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.sha256(s) -> 64 hex digits */
static int
l_sha256(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	if (EVP_Digest(s, len, md, &n, EVP_sha256(), NULL) != 1)
		return luaL_error(L, "core.sha256: digest failed");
	for (unsigned int i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	lua_pushlstring(L, hex, 2 * (size_t)n);
	return 1;
}

int
luaopen_vault_core(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "log", l_log },
		{ "log_enabled", l_log_enabled },
		{ "add_secret", l_add_secret },
		{ "scrub", l_scrub },
		{ "now", l_now },
		{ "monotonic", l_monotonic },
		{ "listdir", l_listdir },
		{ "readfile", l_readfile },
		{ "stat", l_stat },
		{ "getenv", l_getenv },
		{ "run", l_run },
		{ "exit", l_exit },
		{ "pid", l_pid },
		{ "writefile", l_writefile },
		{ "mkdir", l_mkdir },
		{ "remove", l_remove },
		{ "sha256", l_sha256 },
		{ NULL, NULL }
	};
	luaL_newlib(L, funcs);
	return 1;
}

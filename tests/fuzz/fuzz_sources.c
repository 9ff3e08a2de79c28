/*
 * libFuzzer target for the source-file loader (lua/sources.lua load_file),
 * run through the engine's VM exactly as `emailvault check` runs it.
 *
 * The input is the text of a source file, written to a private folder and
 * loaded under a much smaller budget than the engine's (so an endless loop
 * costs milliseconds). Password commands are not run: a mutated file must
 * never start a program. Checked: the loader returns a definition or a
 * non-empty list of problems, never raises; each problem names the file
 * and a line inside it, in line order; a definition has every field in its
 * checked form (the password a secret, the port in range, the file's text
 * kept as read); and the VM's stack is left as it was.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "engine.h"
#include "log.h"
#include "lua/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Lua: the loader with the fuzzer's limits, and the checks of what it
 * returns. Errors raised here are findings. */
static const char harness[] =
    "local core = require 'vault.core'\n"
    "local sources = require 'sources'\n"
    "local secret = require 'secret'\n"
    "core.run = function() return nil, 'not run in the fuzzer' end\n"
    "sources.FILE_BUDGET = 100000\n"
    "sources.FILE_SECONDS = 1\n"
    "local function fail(...) error(string.format(...), 0) end\n"
    "-- Lines as Lua counts them: \\n, \\r, \\r\\n and \\n\\r each end one.\n"
    "local function count_lines(s)\n"
    "  local n, i = 1, 1\n"
    "  while true do\n"
    "    local j = s:find('[\\r\\n]', i)\n"
    "    if not j then return n end\n"
    "    local c, d = s:sub(j, j), s:sub(j + 1, j + 1)\n"
    "    if (d == '\\r' or d == '\\n') and d ~= c then j = j + 1 end\n"
    "    n, i = n + 1, j + 1\n"
    "  end\n"
    "end\n"
    "return function(path, text)\n"
    "  local nlines = count_lines(text)\n"
    "  local def, problems = sources.load_file(path, 'fuzz')\n"
    "  if def == nil then\n"
    "    if type(problems) ~= 'table' or #problems == 0 then fail('no problems listed') end\n"
    "    local last = 0\n"
    "    for i, p in ipairs(problems) do\n"
    "      if type(p) ~= 'string' then fail('problem %d is a %s', i, type(p)) end\n"
    "      local where, line = p:match('^(.-):(%d+): ')\n"
    "      if not where then where, line = p:match('^(.-):(%*%*%*): ') end\n"
    "      if not where then fail('problem without a file and line: %q', p) end\n"
    "      if where ~= path then\n"
    "        -- the path may share a word with a password, hidden as ***\n"
    "        local pat = '^' .. where:gsub('%p', '%%%0'):gsub('%%%*%%%*%%%*', '.-') .. '$'\n"
    "        if not where:find('***', 1, true) or not path:find(pat) then\n"
    "          fail('problem names another file: %q', p)\n"
    "        end\n"
    "      end\n"
    "      line = tonumber(line)\n"
    "      if line and (line < 1 or line > nlines) then fail('line %d outside 1..%d: %q', line, nlines, p) end\n"
    "      if line and where == path then\n"
    "        if line < last then fail('problems out of order: %q', p) end\n"
    "        last = line\n"
    "      end\n"
    "    end\n"
    "    return false\n"
    "  end\n"
    "  if type(def) ~= 'table' or problems ~= nil then fail('a definition and problems') end\n"
    "  if getmetatable(def) ~= nil then fail('definition with a metatable') end\n"
    "  if def.id ~= 'fuzz' or def.file ~= path or def.text ~= text then fail('id, file or text') end\n"
    "  for _, f in ipairs { 'host', 'username', 'name' } do\n"
    "    if type(def[f]) ~= 'string' or def[f] == '' then fail('%s is not a string', f) end\n"
    "  end\n"
    "  if not secret.is(def.password) then fail('password is not a secret') end\n"
    "  if math.type(def.port) ~= 'integer' or def.port < 1 or def.port > 65535 then fail('port') end\n"
    "  if def.tls ~= true and def.tls ~= false and def.tls ~= 'starttls' then fail('tls') end\n"
    "  if type(def.allow_insecure_cert) ~= 'boolean' then fail('allow_insecure_cert') end\n"
    "  if type(def.poll) ~= 'number' or not (def.poll >= 10) then fail('poll') end\n"
    "  for _, f in ipairs { 'fetch_batch', 'fetch_batch_bytes', 'pipeline', 'connections' } do\n"
    "    if math.type(def[f]) ~= 'integer' then fail('%s is not an integer', f) end\n"
    "  end\n"
    "  if type(def.folders) ~= 'table' then fail('folders') end\n"
    "  for k, list in next, def.folders do\n"
    "    if k ~= 'include' and k ~= 'exclude' then fail('folders key') end\n"
    "    for _, p in next, list do if type(p) ~= 'string' then fail('pattern') end end\n"
    "  end\n"
    "  for _, f in ipairs { 'filter', 'on_error' } do\n"
    "    if def[f] ~= nil and type(def[f]) ~= 'function' then fail('%s', f) end\n"
    "  end\n"
    "  local pub = sources.public(def)\n"
    "  if pub.password ~= '***' then fail('public() shows the password') end\n"
    "  return true\n"
    "end\n";

static struct vm *vm;
static char dir[] = "/tmp/fuzz-sources-XXXXXX";
static char path[4096];

static void
cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

static void
setup(void)
{
	lua_State *L;

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof path, "%s/fuzz.lua", dir);
	atexit(cleanup);
	/* The loader logs what a file prints; nobody reads it here. */
	log_set_level(LOG_ERROR);
	if (log_open_file("/dev/null") < 0)
		abort();
	if ((vm = vm_new(NULL, (size_t)64 << 20)) == NULL)
		abort();
	engine_preload_modules(vm);
	L = vm->L;
	if (luaL_loadbuffer(L, harness, sizeof harness - 1, "=fuzz") != LUA_OK ||
	    vm_pcall(L, 0, 1) != LUA_OK) {
		fprintf(stderr, "harness: %s\n", vm_tostring(L, -1));
		abort();
	}
	lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.check");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lua_State *L;
	FILE *f;
	int top;

	if (vm == NULL)
		setup();
	L = vm->L;
	if ((f = fopen(path, "wb")) == NULL)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	if (fclose(f) != 0)
		abort();
	top = lua_gettop(L);
	lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.check");
	lua_pushstring(L, path);
	lua_pushlstring(L, (const char *)data, size);
	if (vm_pcall(L, 2, 1) != LUA_OK) {
		fprintf(stderr, "fuzz_sources: %s\n", vm_tostring(L, -1));
		abort();
	}
	lua_pop(L, 1);
	if (lua_gettop(L) != top || vm->budget != NULL || vm->exhausted)
		abort();	/* the budget must be gone once load_file returns */
	/* The loader's garbage is the VM's, not a leak. Collected after every
	 * input: libFuzzer runs a leak check after each input that freed less
	 * than it allocated, and those scans would cost more than this. */
	lua_gc(L, LUA_GCCOLLECT);
	return 0;
}

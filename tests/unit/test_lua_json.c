/* lua/json.lua: bodies through lua-cjson, and the exact shape of --json
 * output (json.output), which scripts depend on. */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "engine.h"
#include "lua/vm.h"

static struct vm *vm;

/* The string CODE returns, or its error. */
static const char *
eval(const char *code)
{
	static char out[4096];

	lua_settop(vm->L, 0);
	if (luaL_loadstring(vm->L, code) != LUA_OK || vm_pcall(vm->L, 0, 1) != LUA_OK) {
		snprintf(out, sizeof(out), "error: %s", vm_tostring(vm->L, -1));
		return out;
	}
	snprintf(out, sizeof(out), "%s", vm_tostring(vm->L, -1));
	return out;
}

/* Byte for byte what eval --json, status --json and search --json print. */
static void
test_output_shape(void)
{
	CHECK_STR(eval("local json, secret = require 'json', require 'secret'\n"
	    "return json.output{ b = 1, a = { 1, 2, {} }, s = 'a/b\\1\\127\\t\"\\\\\\u{e9}\\xff',\n"
	    "  f = 2.5, i = math.maxinteger, w = 3.0, big = 2^53, nan = 0/0, inf = math.huge,\n"
	    "  o = json.object(), fn = print, t = true, sec = secret.literal('pw-xyz-1') }"),
	    "{\"a\":[1,2,[]],\"b\":1,\"big\":9007199254740992,\"f\":2.5,"
	    "\"i\":9223372036854775807,\"inf\":null,\"nan\":null,\"o\":{},"
	    "\"s\":\"a/b\\u0001\\u007f\\t\\\"\\\\\xc3\xa9\\ufffd\",\"sec\":\"***\",\"t\":true,\"w\":3}");
	CHECK_STR(eval("local json = require 'json' return json.results(2, 0.1, { [2] = 'x', [1] = -7 })"),
	    "[0.10000000000000001,[-7,\"x\"]]");
	CHECK_STR(eval("return require('json').results(0)"), "null");
	CHECK_STR(eval("return require('json').output({ [1] = 'a', [3] = 'c' })"), "{\"1\":\"a\",\"3\":\"c\"}");
}

static void
test_decode(void)
{
	CHECK_STR(eval("local json = require 'json'\n"
	    "local v = json.decode('{\"a\": 3600, \"b\": 2.5, \"c\": [1, null, 3], \"d\": null, '\n"
	    "  .. '\"e\": \"\\\\u00e9\\\\/\", \"f\": 1e3, \"g\": 9007199254740993}')\n"
	    "return table.concat({ math.type(v.a), tostring(v.a), math.type(v.b), tostring(v.c[2] == json.null),\n"
	    "  tostring(v.c[3]), tostring(v.d), v.e, tostring(v.f), math.type(v.g) }, ' ')"),
	    "integer 3600 float true 3 nil \xc3\xa9/ 1000 float");
	/* What servers send is read strictly: no NaN, Infinity, hex, nor
	 * nesting past 100 levels; errors are returned, not raised. */
	CHECK_STR(eval("local json = require 'json' local out = {}\n"
	    "for _, t in ipairs { '[NaN]', '[Infinity]', '[0x10]', '{\"a\":1} x', '', string.rep('[', 101) .. string.rep(']', 101) } do\n"
	    "  local v, err = json.decode(t) out[#out + 1] = tostring(v) .. ':' .. tostring(err and err:match('^invalid JSON') ~= nil)\n"
	    "end return table.concat(out, ' ')"),
	    "nil:true nil:true nil:true nil:true nil:true nil:true");
	CHECK_STR(eval("local json = require 'json' return tostring(#json.decode(string.rep('[', 100) .. string.rep(']', 100)))"),
	    "1");
	CHECK_STR(eval("local json = require 'json' return select(2, json.decode(42))"),
	    "expected JSON text (a string), got number");
}

static void
test_encode(void)
{
	/* Round trips through cjson; key order is cjson's, so compare values. */
	CHECK_STR(eval("local json = require 'json'\n"
	    "local v = json.decode(json.encode{ text = 'a/b \"q\" \\n', n = 1764100000, l = { 1, 2 }, e = {} })\n"
	    "return v.text .. '|' .. math.type(v.n) .. v.n .. '|' .. #v.l .. '|' .. tostring(next(v.e))"),
	    "a/b \"q\" \n|integer1764100000|2|nil");
	CHECK_STR(eval("local json = require 'json' return json.encode('x')"), "\"x\"");
	CHECK_STR(eval("local json = require 'json' local ok, err = pcall(json.encode, { f = print }) return err"),
	    "cannot encode as JSON: Cannot serialise function: type not supported");
	CHECK_STR(eval("local json = require 'json' local ok, err = pcall(json.encode, 0/0)\n"
	    "return tostring(ok) .. ' ' .. tostring(err:find('cannot encode as JSON', 1, true) ~= nil)"),
	    "false true");
	/* A secret is an empty table: cjson never sees its value. */
	CHECK_STR(eval("local json, secret = require 'json', require 'secret'\n"
	    "return json.encode{ password = secret.literal('pw-xyz-2') }"), "{\"password\":{}}");
}

int
main(void)
{
	vm = vm_new(NULL, 0);
	engine_preload_modules(vm);
	RUN(test_output_shape);
	RUN(test_decode);
	RUN(test_encode);
	vm_free(vm);
	DONE();
}

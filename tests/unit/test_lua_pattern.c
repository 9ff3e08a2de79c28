/*
 * The VM's string.find, match, gmatch, gsub (lua/pattern.c) and string.rep,
 * table.insert, remove, move (lua/bounded.c) against Lua's own: the same
 * chunk runs in the engine's VM and in a plain lua_State, and its results
 * (values or error messages) must be equal. Curated cases, then random
 * patterns and subjects from a fixed seed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "lua/vm.h"

/* Loaded in both states: ser() writes values so they can be compared,
 * run() calls one of the four functions, gmatch as a whole loop. */
static const char prelude[] =
    "function ser(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    if type(v) == 'string' then out[i] = string.format('%q', v)\n"
    "    elseif type(v) == 'number' then out[i] = math.type(v) .. ':' .. tostring(v)\n"
    "    else out[i] = tostring(v) end\n"
    "  end\n"
    "  return select('#', ...) .. '[' .. table.concat(out, ',') .. ']'\n"
    "end\n"
    "function try(f, ...)\n"
    "  local r = table.pack(pcall(f, ...))\n"
    "  if not r[1] then return 'E:' .. tostring(r[2]) end\n"
    "  return ser(table.unpack(r, 2, r.n))\n"
    "end\n"
    "R = {\n"
    "  t = { a = 'A', b = false, ab = 7, ['1'] = 'one', [1] = 'ONE' },\n"
    "  f = function(...) return select('#', ...) .. ':' .. table.concat({ ... }, '|') end,\n"
    "  keep = function() return nil end,\n"
    "  bad = function() return {} end,\n"
    "  num = function(x) return 2.5 end,\n"
    "}\n"
    "function run(name, s, p, a, b, nargs)\n"
    "  if name ~= 'gmatch' then\n"
    "    if nargs == 2 then return try(string[name], s, p) end\n"
    "    if nargs == 3 then return try(string[name], s, p, a) end\n"
    "    return try(string[name], s, p, a, b)\n"
    "  end\n"
    "  local ok, it = pcall(string.gmatch, s, p, a)\n"
    "  if not ok then return 'E:' .. it end\n"
    "  local out = {}\n"
    "  for n = 1, 40 do\n"
    "    local r = table.pack(pcall(it))\n"
    "    if not r[1] then out[#out + 1] = 'E:' .. tostring(r[2]) break end\n"
    "    if r.n == 1 then break end\n"
    "    out[#out + 1] = ser(table.unpack(r, 2, r.n))\n"
    "  end\n"
    "  return table.concat(out, ';')\n"
    "end\n";

struct pair {
	lua_State *ours;	/* the engine's VM */
	lua_State *ref;		/* Lua's own library */
	struct vm *vm;
	int cases, differ;
};

static char *
run_in(lua_State *L, const char *chunk)
{
	char *out;

	if (luaL_loadstring(L, chunk) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
		out = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
	else
		out = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no string)");
	lua_settop(L, 0);
	return out;
}

/* Runs CHUNK in both states and compares. */
static void
same(struct pair *p, const char *chunk)
{
	char *a = run_in(p->ours, chunk), *b = run_in(p->ref, chunk);

	p->cases++;
	if (strcmp(a, b) != 0) {
		if (p->differ++ < 15)
			fprintf(stderr, "differs: %s\n  ours: %s\n  lua:  %s\n", chunk, a, b);
	}
	free(a);
	free(b);
}

/* A Lua string literal for S..S+N, every byte escaped that could matter. */
static void
quote(char *out, size_t cap, const char *s, size_t n)
{
	size_t o = 0;

	out[o++] = '"';
	for (size_t i = 0; i < n && o + 5 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "\\%03u", c);
	}
	out[o++] = '"';
	out[o] = '\0';
}

static void
call(struct pair *p, const char *name, const char *s, size_t ls, const char *pat, size_t lp,
    const char *a, const char *b, int nargs)
{
	char qs[2048], qp[2048], chunk[4800];

	quote(qs, sizeof(qs), s, ls);
	quote(qp, sizeof(qp), pat, lp);
	snprintf(chunk, sizeof(chunk), "return run('%s', %s, %s, %s, %s, %d)", name, qs, qp,
	    a ? a : "nil", b ? b : "nil", nargs);
	same(p, chunk);
}

/* All four functions on S and PAT, with the usual optional arguments. */
static void
all4(struct pair *p, const char *s, const char *pat)
{
	size_t ls = strlen(s), lp = strlen(pat);

	call(p, "find", s, ls, pat, lp, NULL, NULL, 2);
	call(p, "match", s, ls, pat, lp, NULL, NULL, 2);
	call(p, "gmatch", s, ls, pat, lp, NULL, NULL, 2);
	call(p, "gsub", s, ls, pat, lp, "'<%0>'", NULL, 3);
}

static const char *curated[][2] = {
	{ "hello world", "o" }, { "hello world", "l+" }, { "hello world", "^h" },
	{ "hello world", "^w" }, { "hello world", "d$" }, { "hello world", "o$" },
	{ "hello world", "$" }, { "hello world", "^" }, { "hello world", "" },
	{ "", "" }, { "", "a*" }, { "", "^$" }, { "aaa", "a-" }, { "aaa", "a-$" },
	{ "aaa", "a*" }, { "aaa", "a?" }, { "aaab", "a+b" }, { "aaab", "a-b" },
	{ "  x  ", "^%s*(.-)%s*$" }, { "key = value", "(%w+)%s*=%s*(%w+)" },
	{ "THE (quick) fox", "%((%a+)%)" }, { "f(a(b)c)d", "%b()" }, { "f(a(b)c", "%b()" },
	{ "[[x]]", "%b[]" }, { "THE (quick) fox", "%f[%a]%a+" }, { "THE (quick) fox", "%f[%A]" },
	{ "hello", "()ll()" }, { "hello", "()" }, { "abcabc", "(abc)%1" }, { "abcab", "(abc)%1" },
	{ "abc", "%1" }, { "abc", "(a)%2" }, { "abc", "%0" }, { "abc", "(a" }, { "abc", "a)" },
	{ "abc", "%" }, { "abc", "[a" }, { "abc", "[]" }, { "a]b", "[]]" }, { "a]b", "[^]]" },
	{ "a-b", "[a-]" }, { "a-b", "[-a]" }, { "a^b", "[%^]" }, { "a^b", "[b^]" },
	{ "x%y", "%%" }, { "a.b", "%." }, { "a.b", "." }, { "abc", "%b" }, { "abc", "%ba" },
	{ "abc", "%f" }, { "abc", "%fa" }, { "abc", "%f[" }, { "abc", "[%a-z]" },
	{ "a1_B2", "[%w_]+" }, { "a1_B2", "[^%d]+" }, { "tab\there", "%c" },
	{ "0x1F", "%x+" }, { "UPPER lower", "%u+" }, { "UPPER lower", "%l+" },
	{ "p.u,n!c", "%p" }, { "p.u,n!c", "%P+" }, { "abc", "%z" }, { "a\tb c", "%S+" },
	{ "one two  three", "%s*" }, { "one two", "(%a+) (%a+)" }, { "aaa", "(a*(.)%w(%s*))" },
	{ "abc", "((a)(b)(c))" }, { "hello", "(h)(e)(l)(l)(o)" }, { "x", "(((((((((((x)))))))))))" },
	{ "date 2024-01-05", "(%d+)-(%d+)-(%d+)" }, { "a,b,,c", "([^,]*)" }, { "a,b,,c", "[^,]*" },
	{ "abc", ".-" }, { "abc", ".-c" }, { "abc", "a.-b" }, { "abcd", "a.-%f[d]" },
	{ "x = 1, y = 2", "(%w+) = (%w+)" }, { "$100", "%$%d+" }, { "a$b", "a$b" },
	{ "ab", "^(a)" }, { "aaa", "^a" }, { "^a", "^^a" }, { "a+b", "a+b" }, { "a+b", "a%+b" },
};

static void
test_curated(struct pair *p)
{
	for (size_t i = 0; i < sizeof(curated) / sizeof(curated[0]); i++)
		all4(p, curated[i][0], curated[i][1]);
	/* Embedded zeros in subject and pattern. */
	call(p, "find", "a\0b", 3, "\0", 1, NULL, NULL, 2);
	call(p, "find", "a\0b", 3, "%z", 2, NULL, NULL, 2);
	call(p, "match", "a\0b\0", 4, "[%z\0]", 5, NULL, NULL, 2);
	call(p, "gsub", "a\0b\0", 4, "\0", 1, "'-'", NULL, 3);
	call(p, "find", "a\0b", 3, ".\0.", 3, NULL, NULL, 2);
	call(p, "find", "a\0b", 3, "%f[%z]", 6, NULL, NULL, 2);
	/* init and plain. */
	for (int init = -6; init <= 7; init++) {
		char a[16];
		snprintf(a, sizeof(a), "%d", init);
		call(p, "find", "hello", 5, "l", 1, a, NULL, 3);
		call(p, "find", "hello", 5, "", 0, a, NULL, 3);
		call(p, "find", "hello", 5, "l*", 2, a, NULL, 3);
		call(p, "match", "hello", 5, "(l*)", 4, a, NULL, 3);
		call(p, "match", "hello", 5, "^h", 2, a, NULL, 3);
		call(p, "gmatch", "hello", 5, "l?", 2, a, NULL, 3);
	}
	call(p, "find", "a.b", 3, ".", 1, "1", "true", 4);
	call(p, "find", "a.b", 3, ".", 1, "1", "false", 4);
	call(p, "find", "a(b", 3, "(", 1, "1", "1", 4);
	call(p, "find", "a(b", 3, "(", 1, "1", NULL, 3);
	call(p, "find", "a(b", 3, "(", 1, "1.5", NULL, 3);
	call(p, "find", "a(b", 3, "(", 1, "'x'", NULL, 3);
	call(p, "find", "ab", 2, "b", 1, "math.maxinteger", NULL, 3);
	call(p, "find", "ab", 2, "b", 1, "math.mininteger", NULL, 3);
	/* Replacements: strings, %n, tables, functions, counts. */
	static const char *repls[] = { "'x'", "''", "'%0%0'", "'<%1>'", "'%2'", "'%%'", "'%'",
		"'%a'", "'a%'", "'%9'", "'%1%1'", "R.t", "R.f", "R.keep", "R.bad", "R.num", "5",
		"2.5", "true", "nil", "{}" };
	static const char *gsub_pats[] = { "%w+", "(%w)(%w)", "()", "(a)()", "", "^a", "^", "$",
		"a*", "(%w+)=(%w+)", "(b)", "x*", "%f[%w]", ".-", "(.)" };
	for (size_t r = 0; r < sizeof(repls) / sizeof(repls[0]); r++)
		for (size_t q = 0; q < sizeof(gsub_pats) / sizeof(gsub_pats[0]); q++)
			call(p, "gsub", "ab a=b 1", 8, gsub_pats[q], strlen(gsub_pats[q]), repls[r], NULL, 3);
	for (int n = -1; n <= 4; n++) {
		char b[8];
		snprintf(b, sizeof(b), "%d", n);
		call(p, "gsub", "aaa aaa", 7, "a", 1, "'b'", b, 4);
		call(p, "gsub", "aaa aaa", 7, "", 0, "'-'", b, 4);
	}
	call(p, "gsub", "abc", 3, "b", 1, "'x'", "'y'", 4);
	call(p, "gsub", "abc", 3, "b", 1, "'x'", "1.5", 4);
	/* Arguments of the wrong type, numbers as strings. */
	same(p, "return try(string.find, nil, 'x')");
	same(p, "return try(string.find, 'x')");
	same(p, "return try(string.find, 12345, 3)");
	same(p, "return try(string.match, 12.5, '%.')");
	same(p, "return try(string.gmatch, {}, 'x')");
	same(p, "return try(string.gsub, 'x', 'x')");
	same(p, "return try(string.gsub, 12, 1, 3)");
	same(p, "return try(('abc').find, 'abc', 'b')");
	same(p, "return ser(('key=val'):match('(%w+)=(%w+)'))");
	same(p, "local t = {} for k, v in ('a=1, b=2'):gmatch('(%w+)=(%w+)') do t[#t+1] = k .. v end return table.concat(t, ';')");
	same(p, "local it = ('ab'):gmatch('.') it() it() return ser(it(), it())");
	/* Too deep, too many captures. */
	same(p, "return try(string.find, ('a'):rep(300), ('a?'):rep(300))");
	same(p, "return try(string.find, ('a'):rep(199), ('a?'):rep(199))");
	same(p, "return try(string.find, 'a', ('('):rep(33) .. 'a' .. (')'):rep(33))");
	same(p, "return try(string.find, 'a', ('('):rep(32) .. 'a' .. (')'):rep(32))");
	same(p, "return try(string.match, ('x'):rep(50), ('(x)'):rep(40))");
	/* A gsub replacement function that itself matches. */
	same(p, "return ser(('a b c'):gsub('%a', function(c) return (c:rep(2):gsub('.', '%0!')) end))");
}

/* string.rep, table.insert, table.remove, table.move. */
static void
test_bounded(struct pair *p)
{
	static const char *chunks[] = {
		"return try(string.rep, 'ab', 3)",
		"return try(string.rep, 'ab', 3, ', ')",
		"return try(string.rep, 'ab', 1, ', ')",
		"return try(string.rep, 'ab', 0, ', ')",
		"return try(string.rep, 'ab', -5)",
		"return try(string.rep, '', 5, 'x')",
		"return try(string.rep, 'x', 5, '')",
		"return try(string.rep, '', 0)",
		"return try(string.rep, 'abc', 2.0)",
		"return try(string.rep, 'abc', 2.5)",
		"return try(string.rep, 'abc')",
		"return try(string.rep, 'abc', 'x')",
		"return try(string.rep, 12, 2, 3)",
		"return try(string.rep, 'x', 2^31)",
		"return try(string.rep, 'x', math.maxinteger, 'y')",
		"return try(string.rep, 'ab', 2^30 + 1)",
		"return try(string.rep, 'a\\0b', 3, '\\0')",
		"return #string.rep('abc', 100000, '--') .. string.rep('abc', 100000, '--'):sub(-20)",
		"local t = {1, 2, 3} table.insert(t, 'x') return ser(table.unpack(t, 1, 5))",
		"local t = {1, 2, 3} table.insert(t, 1, 'x') return ser(table.unpack(t, 1, 5))",
		"local t = {1, 2, 3} table.insert(t, 2, 'x') return ser(table.unpack(t, 1, 5))",
		"local t = {1, 2, 3} table.insert(t, 4, 'x') return ser(table.unpack(t, 1, 5))",
		"local t = {1, 2, 3} return try(table.insert, t, 5, 'x')",
		"local t = {1, 2, 3} return try(table.insert, t, 0, 'x')",
		"local t = {1, 2, 3} return try(table.insert, t, -1, 'x')",
		"local t = {1, 2, 3} return try(table.insert, t, 1, 2, 3)",
		"local t = {1, 2, 3} return try(table.insert, t)",
		"return try(table.insert, 'x', 1)",
		"return try(table.insert, nil, 1)",
		"return try(table.insert, {}, 'a', 1)",
		"return try(table.insert, {}, 1.5, 1)",
		"local t = {} table.insert(t, nil) return ser(#t, t[1])",
		"local t = {1, 2, 3} return ser(table.remove(t), table.unpack(t, 1, 4))",
		"local t = {1, 2, 3} return ser(table.remove(t, 1), table.unpack(t, 1, 4))",
		"local t = {1, 2, 3} return ser(table.remove(t, 2), table.unpack(t, 1, 4))",
		"local t = {1, 2, 3} return ser(table.remove(t, 4), table.unpack(t, 1, 4))",
		"local t = {1, 2, 3} return try(table.remove, t, 5)",
		"local t = {1, 2, 3} return try(table.remove, t, 0)",
		"local t = {} return ser(table.remove(t), table.remove(t, 0), table.remove(t, 1), #t)",
		"local t = {[0] = 'z'} return ser(table.remove(t, 0), t[0])",
		"return try(table.remove, {}, -1)",
		"return try(table.remove, 7)",
		"return ser(table.unpack(table.move({1, 2, 3, 4, 5}, 2, 4, 1), 1, 6))",
		"return ser(table.unpack(table.move({1, 2, 3, 4, 5}, 1, 3, 3), 1, 6))",
		"return ser(table.unpack(table.move({1, 2, 3}, 1, 3, 1, {}), 1, 4))",
		"local a = {1, 2, 3} return ser(table.move(a, 1, 3, 2, a) == a, table.unpack(a, 1, 5))",
		"return ser(table.unpack(table.move({1, 2, 3}, 3, 1, 1), 1, 3))",
		"return try(table.move, {}, -1, math.maxinteger, 1)",
		"return try(table.move, {1, 2}, 1, 2, math.maxinteger)",
		"return try(table.move, {1, 2}, 1, 2)",
		"return try(table.move, {1, 2}, 'a', 2, 1)",
		"return try(table.move, 1, 1, 2, 1)",
		"return try(table.move, {}, 1, 2, 1, 5)",
		"return ser(#table.move({}, math.mininteger, math.mininteger + 2, 1))",
		/* Values that are not tables but have the metamethods. */
		"local log = {}\n"
		"local p = setmetatable({}, { __index = function(_, k) log[#log + 1] = 'r' .. k return k * 10 end,\n"
		"  __newindex = function(_, k, v) log[#log + 1] = 'w' .. k .. '=' .. tostring(v) end,\n"
		"  __len = function() return 3 end })\n"
		"table.insert(p, 1, 'x') table.remove(p, 2) table.move(p, 1, 2, 3)\n"
		"return table.concat(log, ' ')",
		("local u = setmetatable({}, { __index = function() return 1 end, __newindex = function() end, __len = function() return 2 end })\n"
		 "return try(table.insert, u, 1, 'x')"),
		"local onlylen = setmetatable({}, { __len = function() return 2 end }) return try(table.insert, onlylen, 'x')",
		"return try(table.insert, setmetatable({}, { __len = function() return 'x' end }), 1)",
		"return try(table.insert, setmetatable({}, { __len = function() return 2.5 end }), 1)",
		"return try(table.remove, io.stdout)",
		"return try(table.move, {}, 1, 1, 1, io.stdout)",
	};

	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
		same(p, chunks[i]);
}

/* A small deterministic generator (xorshift), so a failure repeats. */
static uint64_t seed = 0x9E3779B97F4A7C15ull;

static unsigned
rnd(unsigned n)
{
	seed ^= seed << 13;
	seed ^= seed >> 7;
	seed ^= seed << 17;
	return (unsigned)(seed % n);
}

static void
test_random(struct pair *p, int rounds)
{
	static const char *atoms[] = { "a", "b", "c", ".", "%a", "%d", "%s", "%w", "%p", "%A",
		"[ab]", "[^a]", "[a-c]", "[%a_]", "[]a]", "[^%s]", "%b()", "%bab", "%f[%w]", "%f[%W]",
		"%f[a]", "(", ")", "()", "%1", "%2", "%0", "%", "[", "]", "^", "$", "-", "*", "+", "?",
		"%(", "%.", "%%", "x", " ", "\\0" };
	static const char *suffixes[] = { "", "", "", "*", "+", "-", "?" };
	static const char alphabet[] = "aabbc(() )1_.%x";
	static const char *repls[] = { "'<%0>'", "'%1'", "'%2-%1'", "R.t", "R.f", "R.keep", "'%'", "'x'" };
	static const char *inits[] = { NULL, "1", "2", "-1", "-3", "0", "9" };
	char pat[128], subj[32];

	for (int r = 0; r < rounds; r++) {
		size_t lp = 0, ls = rnd(12);
		int atoms_n = 1 + (int)rnd(6);

		if (rnd(8) == 0)
			pat[lp++] = '^';
		for (int i = 0; i < atoms_n; i++) {
			const char *a = atoms[rnd(sizeof(atoms) / sizeof(atoms[0]))];
			const char *q = suffixes[rnd(sizeof(suffixes) / sizeof(suffixes[0]))];
			if (strcmp(a, "\\0") == 0)
				pat[lp++] = '\0';
			else
				for (; *a; a++)
					pat[lp++] = *a;
			for (; *q; q++)
				pat[lp++] = *q;
		}
		if (rnd(8) == 0)
			pat[lp++] = '$';
		for (size_t i = 0; i < ls; i++)
			subj[i] = rnd(20) == 0 ? '\0' : alphabet[rnd(sizeof(alphabet) - 1)];
		switch (rnd(4)) {
		case 0:
			call(p, "find", subj, ls, pat, lp, inits[rnd(7)], rnd(5) == 0 ? "true" : NULL, 4);
			break;
		case 1:
			call(p, "match", subj, ls, pat, lp, inits[rnd(7)], NULL, 3);
			break;
		case 2:
			call(p, "gmatch", subj, ls, pat, lp, inits[rnd(7)], NULL, 3);
			break;
		default:
			call(p, "gsub", subj, ls, pat, lp, repls[rnd(8)], rnd(4) == 0 ? "2" : NULL, 4);
			break;
		}
	}
}

static void
test_same_as_lua(void)
{
	struct pair p = { 0 };

	p.vm = vm_new(NULL, 0);
	p.ours = p.vm->L;
	p.ref = luaL_newstate();
	luaL_openlibs(p.ref);
	CHECK(luaL_dostring(p.ours, prelude) == LUA_OK);
	CHECK(luaL_dostring(p.ref, prelude) == LUA_OK);
	/* The VM's functions are not the library's (or this compares Lua with itself). */
	lua_getglobal(p.ours, "string");
	lua_getfield(p.ours, -1, "find");
	lua_getglobal(p.ref, "string");
	lua_getfield(p.ref, -1, "find");
	CHECK(lua_tocfunction(p.ours, -1) != lua_tocfunction(p.ref, -1));
	lua_settop(p.ours, 0);
	lua_settop(p.ref, 0);

	test_curated(&p);
	test_bounded(&p);
	test_random(&p, 150000);
	printf("%d cases compared, %d differ\n", p.cases, p.differ);
	CHECK_INT(p.differ, 0);
	CHECK(p.cases > 150000);
	lua_close(p.ref);
	vm_free(p.vm);
}

int
main(void)
{
	RUN(test_same_as_lua);
	DONE();
}

/*
 * The library functions that loop in C on a small input, written again so
 * that their loops count against the running budget (lua/vm.c):
 *
 *   string.rep("", 1e15)                 loops 1e15 times making ""
 *   table.move({}, 1, 1e12, 1)           moves a trillion nils
 *   table.insert(t, 1, v), table.remove  shift up to #t elements, and #t
 *                                        is whatever t's __len says
 *
 * They behave as the 5.4 functions do (same results, same errors); outside
 * a budget nothing is limited. Other functions are bounded by the memory
 * cap (string.rep of a real string, table.concat) or call Lua code that
 * the hook counts (table.sort with a comparator, __index).
 */
#include "lua/sandbox.h"

#include <limits.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/vm.h"

#define REP_MAX ((size_t)INT_MAX)	/* the string library's own limit */
#define MOVES_PER_CHARGE 256

/* string.rep(s, n [, sep]) */
static int
b_rep(lua_State *L)
{
	size_t l, lsep, total, done, unit;
	const char *s = luaL_checklstring(L, 1, &l);
	lua_Integer n = luaL_checkinteger(L, 2);
	const char *sep = luaL_optlstring(L, 3, "", &lsep);
	luaL_Buffer b;
	char *p;

	if (n <= 0 || l + lsep == 0) {
		lua_pushliteral(L, "");
		return 1;
	}
	if (l + lsep < l || l + lsep > REP_MAX / (size_t)n)
		return luaL_error(L, "resulting string too large");
	total = (size_t)n * l + (size_t)(n - 1) * lsep;
	vm_charge(L, (long)(total / 256));	/* about the time of the copies */
	p = luaL_buffinitsize(L, &b, total);
	/* One "s sep", then the filled part copied onto the rest: the
	 * result is that unit over and over, less the last sep. */
	memcpy(p, s, l);
	unit = l;
	if (n > 1) {
		memcpy(p + l, sep, lsep);
		unit += lsep;
	}
	for (done = unit; done < total; ) {
		size_t chunk = done < total - done ? done : total - done;
		memcpy(p + done, p, chunk);
		done += chunk;
	}
	luaL_pushresultsize(&b, total);
	return 1;
}

#define NEED_READ	1
#define NEED_WRITE	2
#define NEED_LEN	4

static int
has_metamethod(lua_State *L, const char *name)
{
	int t;

	lua_pushstring(L, name);
	t = lua_rawget(L, -2);
	lua_pop(L, 1);
	return t != LUA_TNIL;
}

/* ARG is a table, or has the metamethods the operation needs. */
static void
check_table(lua_State *L, int arg, int need)
{
	int ok;

	if (lua_type(L, arg) == LUA_TTABLE)
		return;
	ok = lua_getmetatable(L, arg);
	if (ok) {
		ok = (!(need & NEED_READ) || has_metamethod(L, "__index")) &&
		    (!(need & NEED_WRITE) || has_metamethod(L, "__newindex")) &&
		    (!(need & NEED_LEN) || has_metamethod(L, "__len"));
		lua_pop(L, 1);
	}
	if (!ok)
		luaL_checktype(L, arg, LUA_TTABLE);
}

static lua_Integer
length_of(lua_State *L, int arg)
{
	check_table(L, arg, NEED_READ | NEED_WRITE | NEED_LEN);
	return luaL_len(L, arg);
}

/* t[to] = from[i]: one step of a shift or move, counted. */
static void
move_one(lua_State *L, int from, lua_Integer i, int to, lua_Integer j, long *moves)
{
	if (++*moves == MOVES_PER_CHARGE) {
		*moves = 0;
		vm_charge(L, MOVES_PER_CHARGE);
	}
	lua_geti(L, from, i);
	lua_seti(L, to, j);
}

/* table.insert(t, [pos,] v) */
static int
b_insert(lua_State *L)
{
	lua_Integer free_slot = luaL_intop(+, length_of(L, 1), 1), pos;
	long moves = 0;

	switch (lua_gettop(L)) {
	case 2:
		pos = free_slot;
		break;
	case 3:
		pos = luaL_checkinteger(L, 2);
		luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)free_slot, 2,
		    "position out of bounds");
		for (lua_Integer i = free_slot; i > pos; i--)
			move_one(L, 1, i - 1, 1, i, &moves);
		break;
	default:
		return luaL_error(L, "wrong number of arguments to 'insert'");
	}
	lua_seti(L, 1, pos);
	return 0;
}

/* table.remove(t [, pos]) -> the removed value */
static int
b_remove(lua_State *L)
{
	lua_Integer size = length_of(L, 1);
	lua_Integer pos = luaL_optinteger(L, 2, size);
	long moves = 0;

	/* Lua 5.4's own message names argument 1 here. */
	if (pos != size)
		luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 1,
		    "position out of bounds");
	lua_geti(L, 1, pos);
	for (; pos < size; pos++)
		move_one(L, 1, pos + 1, 1, pos, &moves);
	lua_pushnil(L);
	lua_seti(L, 1, pos);
	return 1;
}

/* table.move(a, f, e, t [, b]) -> b (or a) */
static int
b_move(lua_State *L)
{
	lua_Integer f = luaL_checkinteger(L, 2);
	lua_Integer e = luaL_checkinteger(L, 3);
	lua_Integer t = luaL_checkinteger(L, 4);
	int dst = lua_isnoneornil(L, 5) ? 1 : 5;
	long moves = 0;

	check_table(L, 1, NEED_READ);
	check_table(L, dst, NEED_WRITE);
	if (e >= f) {
		lua_Integer n;
		luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
		n = e - f + 1;
		luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
		/* Overlapping to the right within one table: copy from the end. */
		if (t > e || t <= f || (dst != 1 && !lua_compare(L, 1, dst, LUA_OPEQ))) {
			for (lua_Integer i = 0; i < n; i++)
				move_one(L, 1, f + i, dst, t + i, &moves);
		} else {
			for (lua_Integer i = n - 1; i >= 0; i--)
				move_one(L, 1, f + i, dst, t + i, &moves);
		}
	}
	lua_pushvalue(L, dst);
	return 1;
}

void
bounded_install(lua_State *L)
{
	static const luaL_Reg string_funcs[] = {
		{ "rep", b_rep },
		{ NULL, NULL }
	};
	static const luaL_Reg table_funcs[] = {
		{ "insert", b_insert },
		{ "remove", b_remove },
		{ "move", b_move },
		{ NULL, NULL }
	};

	lua_getglobal(L, "string");
	luaL_setfuncs(L, string_funcs, 0);
	lua_getglobal(L, "table");
	luaL_setfuncs(L, table_funcs, 0);
	lua_pop(L, 2);
}

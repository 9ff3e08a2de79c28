/*
 * Lua 5.4 string patterns for string.find, match, gmatch and gsub, with the
 * results and errors of the string library's own matcher, but counted. A
 * pattern such as ("a-"):rep(8) .. "b" backtracks for minutes on a few
 * thousand characters, inside one C call that no count hook can stop; here
 * every matching step is charged to the running budget (lua/vm.c), so it
 * fails the code that asked for it instead of freezing the engine. Outside
 * a budget nothing is limited, as before.
 *
 * The matcher backtracks in the same order as Lua's (greedy * and +, lazy
 * -, ? tries with then without), which is what makes results and errors
 * equal; tests/unit/test_lua_pattern.c compares the two on many patterns.
 */
#define _GNU_SOURCE	/* memmem */
#include "lua/sandbox.h"

#include <ctype.h>
#include <string.h>

#include <lauxlib.h>

#include "lua/vm.h"

#define ESC		'%'
#define SPECIALS	"^$*+?.([%-"
#define MAX_CAPTURES	32	/* as the string library's LUA_MAXCAPTURES */
#define MAX_DEPTH	200	/* recursion, as Lua's MAXCCALLS */
#define CHARGE_EVERY	1024	/* steps between two looks at the budget */
#define CAP_OPEN	(-1)
#define CAP_POSITION	(-2)

struct matcher {
	lua_State *L;
	const char *src, *src_end;	/* the subject */
	const char *pat_end;
	int depth;			/* recursion left */
	int level;			/* captures so far */
	long steps;			/* not yet charged */
	struct {
		const char *start;
		ptrdiff_t len;		/* or CAP_OPEN, CAP_POSITION */
	} cap[MAX_CAPTURES];
};

static const char *do_match(struct matcher *m, const char *s, const char *p);

static void
charge(struct matcher *m, long n)
{
	m->steps += n;
	if (m->steps >= CHARGE_EVERY) {
		long due = m->steps;
		m->steps = 0;
		vm_charge(m->L, due);
	}
}

static void
settle(struct matcher *m)
{
	long due = m->steps;

	m->steps = 0;
	if (due > 0)
		vm_charge(m->L, due);
}

static void
setup(struct matcher *m, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
	m->L = L;
	m->src = s;
	m->src_end = s + ls;
	m->pat_end = p + lp;
	m->steps = 0;
	m->level = 0;
	m->depth = MAX_DEPTH;
}

static void
restart(struct matcher *m)
{
	m->level = 0;
	m->depth = MAX_DEPTH;
}

/* The pattern byte at P, or '\0' past its end (where Lua reads the
 * terminator of the pattern string). */
static int
pat_at(const struct matcher *m, const char *p)
{
	return p < m->pat_end ? (unsigned char)*p : '\0';
}

/* Just past the single-character class that starts at P. */
static const char *
class_end(struct matcher *m, const char *p)
{
	int c = (unsigned char)*p++;

	if (c == ESC) {
		if (p >= m->pat_end)
			luaL_error(m->L, "malformed pattern (ends with '%%')");
		return p + 1;
	}
	if (c != '[')
		return p;
	if (pat_at(m, p) == '^')
		p++;
	/* The first character of a set is never its end: "[]]" holds ']'. */
	do {
		if (p >= m->pat_end)
			luaL_error(m->L, "malformed pattern (missing ']')");
		c = (unsigned char)*p++;
		if (c == ESC && p < m->pat_end)
			p++;
	} while (pat_at(m, p) != ']');
	return p + 1;
}

/* %a, %d, ... (upper case: the complement); any other character is itself. */
static int
class_has(int c, int cl)
{
	int r;

	switch (tolower(cl)) {
	case 'a': r = isalpha(c); break;
	case 'c': r = iscntrl(c); break;
	case 'd': r = isdigit(c); break;
	case 'g': r = isgraph(c); break;
	case 'l': r = islower(c); break;
	case 'p': r = ispunct(c); break;
	case 's': r = isspace(c); break;
	case 'u': r = isupper(c); break;
	case 'w': r = isalnum(c); break;
	case 'x': r = isxdigit(c); break;
	case 'z': r = c == '\0'; break;	/* deprecated, still in 5.4 */
	default: return cl == c;
	}
	if (isupper(cl))
		r = !r;
	return r != 0;
}

/* [set]: P is at '[', END at its closing ']'. */
static int
set_has(int c, const char *p, const char *end)
{
	int in = 1;

	p++;
	if (*p == '^') {
		in = 0;
		p++;
	}
	for (; p < end; p++) {
		if (*p == ESC) {
			p++;
			if (class_has(c, (unsigned char)*p))
				return in;
		} else if (p[1] == '-' && p + 2 < end) {
			if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
				return in;
			p += 2;
		} else if ((unsigned char)*p == c) {
			return in;
		}
	}
	return !in;
}

/* Does the character at S match the class P..EP? */
static int
single(const struct matcher *m, const char *s, const char *p, const char *ep)
{
	int c;

	if (s >= m->src_end)
		return 0;
	c = (unsigned char)*s;
	switch (*p) {
	case '.':
		return 1;
	case ESC:
		return class_has(c, (unsigned char)p[1]);
	case '[':
		return set_has(c, p, ep - 1);
	default:
		return (unsigned char)*p == c;
	}
}

/* %bxy at S; P is at x. */
static const char *
balanced(struct matcher *m, const char *s, const char *p)
{
	int open, close, depth = 1;

	if (p + 1 >= m->pat_end)
		luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
	if (s >= m->src_end || *s != *p)
		return NULL;
	open = *p;
	close = p[1];
	while (++s < m->src_end) {
		charge(m, 1);
		if (*s == close) {
			if (--depth == 0)
				return s + 1;
		} else if (*s == open) {
			depth++;
		}
	}
	return NULL;
}

/* %1 .. %9 (and the invalid %0) at S. */
static const char *
backref(struct matcher *m, const char *s, int digit)
{
	int i = digit - '1';
	size_t len;

	if (i < 0 || i >= m->level || m->cap[i].len == CAP_OPEN)
		luaL_error(m->L, "invalid capture index %%%d", i + 1);
	len = (size_t)m->cap[i].len;	/* a position capture never matches */
	if ((size_t)(m->src_end - s) < len || memcmp(m->cap[i].start, s, len) != 0)
		return NULL;
	charge(m, (long)(len / 16));
	return s + len;
}

/* X* and X+: as many as possible, then fewer. */
static const char *
greedy(struct matcher *m, const char *s, const char *p, const char *ep)
{
	ptrdiff_t n = 0;
	const char *r;

	while (single(m, s + n, p, ep)) {
		n++;
		charge(m, 1);
	}
	for (; n >= 0; n--)
		if ((r = do_match(m, s + n, ep + 1)) != NULL)
			return r;
	return NULL;
}

/* X-: as few as possible, then more. */
static const char *
lazy(struct matcher *m, const char *s, const char *p, const char *ep)
{
	const char *r;

	for (;;) {
		if ((r = do_match(m, s, ep + 1)) != NULL)
			return r;
		if (!single(m, s, p, ep))
			return NULL;
		s++;
	}
}

static const char *
open_capture(struct matcher *m, const char *s, const char *p, ptrdiff_t what)
{
	const char *r;

	if (m->level >= MAX_CAPTURES)
		luaL_error(m->L, "too many captures");
	m->cap[m->level].start = s;
	m->cap[m->level].len = what;
	m->level++;
	if ((r = do_match(m, s, p)) == NULL)
		m->level--;
	return r;
}

static const char *
close_capture(struct matcher *m, const char *s, const char *p)
{
	const char *r;
	int i;

	for (i = m->level - 1; i >= 0; i--)
		if (m->cap[i].len == CAP_OPEN)
			break;
	if (i < 0)
		luaL_error(m->L, "invalid pattern capture");
	m->cap[i].len = s - m->cap[i].start;
	if ((r = do_match(m, s, p)) == NULL)
		m->cap[i].len = CAP_OPEN;
	return r;
}

/* Matches pattern P against the subject at S: the end of the match, or NULL. */
static const char *
do_match(struct matcher *m, const char *s, const char *p)
{
	const char *ep;
	int q;

	if (m->depth-- == 0)
		luaL_error(m->L, "pattern too complex");
again:
	charge(m, 1);
	if (p == m->pat_end)
		goto done;
	switch (*p) {
	case '(':
		if (pat_at(m, p + 1) == ')')
			s = open_capture(m, s, p + 2, CAP_POSITION);
		else
			s = open_capture(m, s, p + 1, CAP_OPEN);
		goto done;
	case ')':
		s = close_capture(m, s, p + 1);
		goto done;
	case '$':
		if (p + 1 != m->pat_end)
			break;		/* a '$' anywhere else is itself */
		if (s != m->src_end)
			s = NULL;
		goto done;
	case ESC:
		q = pat_at(m, p + 1);
		if (q == 'b') {
			if ((s = balanced(m, s, p + 2)) == NULL)
				goto done;
			p += 4;
			goto again;
		}
		if (q == 'f') {
			int before, here;
			p += 2;
			if (pat_at(m, p) != '[')
				luaL_error(m->L, "missing '[' after '%%f' in pattern");
			ep = class_end(m, p);
			before = s == m->src ? '\0' : (unsigned char)s[-1];
			here = s < m->src_end ? (unsigned char)*s : '\0';
			if (set_has(before, p, ep - 1) || !set_has(here, p, ep - 1)) {
				s = NULL;
				goto done;
			}
			p = ep;
			goto again;
		}
		if (q >= '0' && q <= '9') {
			if ((s = backref(m, s, q)) == NULL)
				goto done;
			p += 2;
			goto again;
		}
		break;
	}
	/* One character class, maybe followed by *, +, - or ?. */
	ep = class_end(m, p);
	q = pat_at(m, ep);
	if (!single(m, s, p, ep)) {
		if (q == '*' || q == '?' || q == '-') {
			p = ep + 1;
			goto again;
		}
		s = NULL;
	} else if (q == '?') {
		const char *r = do_match(m, s + 1, ep + 1);
		if (r == NULL) {
			p = ep + 1;
			goto again;
		}
		s = r;
	} else if (q == '+') {
		s = greedy(m, s + 1, p, ep);
	} else if (q == '*') {
		s = greedy(m, s, p, ep);
	} else if (q == '-') {
		s = lazy(m, s, p, ep);
	} else {
		s++;
		p = ep;
		goto again;
	}
done:
	m->depth++;
	return s;
}

/* Capture I, or the whole match S..E when there are no captures: its text
 * and length, or CAP_POSITION with the position pushed. */
static ptrdiff_t
capture(struct matcher *m, int i, const char *s, const char *e, const char **text)
{
	if (i >= m->level) {
		if (i != 0)
			luaL_error(m->L, "invalid capture index %%%d", i + 1);
		*text = s;
		return e - s;
	}
	*text = m->cap[i].start;
	if (m->cap[i].len == CAP_OPEN)
		luaL_error(m->L, "unfinished capture");
	if (m->cap[i].len == CAP_POSITION)
		lua_pushinteger(m->L, (m->cap[i].start - m->src) + 1);
	return m->cap[i].len;
}

static void
push_capture(struct matcher *m, int i, const char *s, const char *e)
{
	const char *text;
	ptrdiff_t len = capture(m, i, s, e, &text);

	if (len != CAP_POSITION)
		lua_pushlstring(m->L, text, (size_t)len);
}

/* Every capture; the whole match S..E if there are none (and S is given). */
static int
push_captures(struct matcher *m, const char *s, const char *e)
{
	int n = (m->level == 0 && s != NULL) ? 1 : m->level;

	luaL_checkstack(m->L, n, "too many captures");
	for (int i = 0; i < n; i++)
		push_capture(m, i, s, e);
	return n;
}

/* A 1-based position, negative from the end, as a 1-based start. */
static size_t
start_of(lua_Integer pos, size_t len)
{
	if (pos > 0)
		return (size_t)pos;
	if (pos == 0 || pos < -(lua_Integer)len)
		return 1;
	return len + (size_t)pos + 1;
}

static int
has_specials(const char *p, size_t lp)
{
	for (size_t i = 0; i < lp; i++)
		if (p[i] != '\0' && strchr(SPECIALS, p[i]) != NULL)
			return 1;
	return 0;
}

static int
find_or_match(lua_State *L, int find)
{
	size_t ls, lp;
	const char *s = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	size_t init = start_of(luaL_optinteger(L, 3, 1), ls) - 1;
	struct matcher m;
	const char *from, *e;
	int anchor;

	if (init > ls) {
		luaL_pushfail(L);
		return 1;
	}
	if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
		const char *hit;
		vm_charge(L, (long)((ls - init) / 16));	/* memmem is linear */
		hit = lp == 0 ? s + init : memmem(s + init, ls - init, p, lp);
		if (hit != NULL) {
			lua_pushinteger(L, (hit - s) + 1);
			lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
			return 2;
		}
		luaL_pushfail(L);
		return 1;
	}
	anchor = lp > 0 && *p == '^';
	if (anchor) {
		p++;
		lp--;
	}
	setup(&m, L, s, ls, p, lp);
	from = s + init;
	do {
		restart(&m);
		if ((e = do_match(&m, from, p)) != NULL) {
			settle(&m);
			if (!find)
				return push_captures(&m, from, e);
			lua_pushinteger(L, (from - s) + 1);
			lua_pushinteger(L, e - s);
			return push_captures(&m, NULL, NULL) + 2;
		}
	} while (from++ < m.src_end && !anchor);
	settle(&m);
	luaL_pushfail(L);
	return 1;
}

static int
p_find(lua_State *L)
{
	return find_or_match(L, 1);
}

static int
p_match(lua_State *L)
{
	return find_or_match(L, 0);
}

/* The state of one gmatch loop, as offsets into its subject. */
struct gmatch {
	size_t next;		/* where the next search starts */
	ptrdiff_t last;		/* end of the last match, -1 before the first */
};

/* Upvalues: the subject, the pattern, the state. */
static int
gmatch_step(lua_State *L)
{
	size_t ls, lp;
	const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
	const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
	struct gmatch *g = lua_touserdata(L, lua_upvalueindex(3));
	struct matcher m;
	const char *e;

	setup(&m, L, s, ls, p, lp);
	for (size_t at = g->next; at <= ls; at++) {
		restart(&m);
		/* An empty match right where the last one ended does not count. */
		if ((e = do_match(&m, s + at, p)) != NULL && e - s != g->last) {
			g->next = (size_t)(e - s);
			g->last = e - s;
			settle(&m);
			return push_captures(&m, s + at, e);
		}
	}
	settle(&m);
	return 0;
}

/* string.gmatch(s, pattern [, init]); '^' is an ordinary character here. */
static int
p_gmatch(lua_State *L)
{
	size_t ls;
	struct gmatch *g;
	size_t init;

	luaL_checklstring(L, 1, &ls);
	luaL_checkstring(L, 2);
	init = start_of(luaL_optinteger(L, 3, 1), ls) - 1;
	lua_settop(L, 2);
	g = lua_newuserdatauv(L, sizeof(*g), 0);
	g->next = init > ls ? ls + 1 : init;
	g->last = -1;
	lua_pushcclosure(L, gmatch_step, 3);
	return 1;
}

/* A replacement string: %0-%9 are captures, %% is '%'. */
static void
add_template(struct matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
	lua_State *L = m->L;
	size_t left;
	const char *t = lua_tolstring(L, 3, &left), *pct;

	while ((pct = memchr(t, ESC, left)) != NULL) {
		int c;
		luaL_addlstring(b, t, (size_t)(pct - t));
		c = pct + 1 < t + left ? (unsigned char)pct[1] : '\0';
		if (c == ESC) {
			luaL_addchar(b, ESC);
		} else if (c == '0') {
			luaL_addlstring(b, s, (size_t)(e - s));
		} else if (isdigit(c)) {
			const char *text;
			ptrdiff_t len = capture(m, c - '1', s, e, &text);
			if (len == CAP_POSITION)
				luaL_addvalue(b);
			else
				luaL_addlstring(b, text, (size_t)len);
		} else {
			luaL_error(L, "invalid use of '%c' in replacement string", ESC);
		}
		left -= (size_t)(pct + 2 - t);
		t = pct + 2;
	}
	luaL_addlstring(b, t, left);
}

/* Adds the replacement of the match S..E; returns whether it changed it. */
static int
add_replacement(struct matcher *m, luaL_Buffer *b, const char *s, const char *e, int type)
{
	lua_State *L = m->L;

	if (type == LUA_TFUNCTION) {
		int n;
		lua_pushvalue(L, 3);
		n = push_captures(m, s, e);
		lua_call(L, n, 1);
	} else if (type == LUA_TTABLE) {
		push_capture(m, 0, s, e);
		lua_gettable(L, 3);
	} else {
		add_template(m, b, s, e);
		return 1;
	}
	if (!lua_toboolean(L, -1)) {	/* nil or false: keep the match */
		lua_pop(L, 1);
		luaL_addlstring(b, s, (size_t)(e - s));
		return 0;
	}
	if (!lua_isstring(L, -1))
		return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
	luaL_addvalue(b);
	return 1;
}

/* string.gsub(s, pattern, repl [, n]) -> string, count */
static int
p_gsub(lua_State *L)
{
	size_t ls, lp;
	const char *src = luaL_checklstring(L, 1, &ls);
	const char *p = luaL_checklstring(L, 2, &lp);
	int type = lua_type(L, 3);
	lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
	const char *s = src, *last = NULL, *e;
	lua_Integer n = 0;
	int anchor = lp > 0 && *p == '^', changed = 0;
	struct matcher m;
	luaL_Buffer b;

	luaL_argexpected(L, type == LUA_TNUMBER || type == LUA_TSTRING ||
	    type == LUA_TFUNCTION || type == LUA_TTABLE, 3, "string/function/table");
	luaL_buffinit(L, &b);
	if (anchor) {
		p++;
		lp--;
	}
	setup(&m, L, src, ls, p, lp);
	while (n < max) {
		restart(&m);
		if ((e = do_match(&m, s, p)) != NULL && e != last) {
			n++;
			changed |= add_replacement(&m, &b, s, e, type);
			s = last = e;
		} else if (s < m.src_end) {
			luaL_addchar(&b, *s++);
		} else {
			break;
		}
		if (anchor)
			break;
	}
	settle(&m);
	if (!changed) {
		lua_pushvalue(L, 1);
	} else {
		luaL_addlstring(&b, s, (size_t)(m.src_end - s));
		luaL_pushresult(&b);
	}
	lua_pushinteger(L, n);
	return 2;
}

void
pattern_install(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "find", p_find },
		{ "match", p_match },
		{ "gmatch", p_gmatch },
		{ "gsub", p_gsub },
		{ NULL, NULL }
	};

	lua_getglobal(L, "string");
	luaL_setfuncs(L, funcs, 0);
	lua_pop(L, 1);
}

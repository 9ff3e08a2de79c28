/*
 * vault.imap: responses as Lua values (LIST records, EXAMINE and STATUS
 * fields, SEARCH UIDs, FETCH items, IDLE events).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "imap/format.h"
#include "imap/utf7.h"
#include "lua/imap_conn.h"


static void push_node(lua_State *L, const struct imap_node *n, struct lconn *lc, int *litidx);

static void
push_node(lua_State *L, const struct imap_node *n, struct lconn *lc, int *litidx)
{
	size_t len;
	const char *b;
	uint64_t u;

	luaL_checkstack(L, 4, "imap response");
	switch (imap_node_type(n)) {
	case IMAP_NODE_ATOM:
		if (imap_node_u64(n, &u) == 0 && u <= (uint64_t)LUA_MAXINTEGER) {
			lua_pushinteger(L, (lua_Integer)u);
			return;
		}
		/* fall through */
	case IMAP_NODE_QUOTED:
	case IMAP_NODE_LITERAL:
		b = imap_node_bytes(n, &len);
		lua_pushlstring(L, b ? b : "", b ? len : 0);
		return;
	case IMAP_NODE_STREAMED:
		if (lc && litidx && *litidx < lc->nlits) {
			struct litbuf *lb = &lc->lits[(*litidx)++];
			lua_pushlstring(L, lb->data ? lb->data : "", lb->len);
		} else {
			lua_pushnil(L);
		}
		return;
	case IMAP_NODE_NIL:
		lua_pushboolean(L, 0);	/* NIL inside lists: a hole would end them */
		return;
	case IMAP_NODE_LIST: {
		lua_Integer i = 1;
		lua_createtable(L, (int)imap_node_count(n), 0);
		for (const struct imap_node *ch = imap_node_child(n); ch; ch = imap_node_next(ch)) {
			push_node(L, ch, lc, litidx);
			lua_rawseti(L, -2, i++);
		}
		return;
	}
	}
	lua_pushnil(L);
}

/* A FETCH response as { uid=, flags={...}, internaldate=, size=, ["BODY[]"]=... }. */
static void
push_fetch(lua_State *L, const struct imap_response *r, struct lconn *lc)
{
	int litidx = 0;

	lua_createtable(L, 0, 8);
	lua_pushinteger(L, r->number);
	lua_setfield(L, -2, "seq");
	if (r->data == NULL)
		return;
	const struct imap_node *list = imap_node_child(r->data);
	if (list == NULL || imap_node_type(list) != IMAP_NODE_LIST)
		return;
	for (const struct imap_node *k = imap_node_child(list); k; ) {
		const struct imap_node *v = imap_node_next(k);
		size_t klen;
		const char *kb = imap_node_bytes(k, &klen);
		if (v == NULL || kb == NULL)
			break;
		if (imap_node_atom_is(k, "UID")) {
			push_node(L, v, lc, &litidx);
			lua_setfield(L, -2, "uid");
		} else if (imap_node_atom_is(k, "RFC822.SIZE")) {
			push_node(L, v, lc, &litidx);
			lua_setfield(L, -2, "size");
		} else if (imap_node_atom_is(k, "FLAGS")) {
			push_node(L, v, lc, &litidx);
			lua_setfield(L, -2, "flags");
		} else if (imap_node_atom_is(k, "MODSEQ")) {
			push_node(L, v, lc, &litidx);
			if (lua_istable(L, -1))
				lua_rawgeti(L, -1, 1), lua_remove(L, -2);
			lua_setfield(L, -2, "modseq");
		} else if (imap_node_atom_is(k, "INTERNALDATE")) {
			size_t dlen;
			const char *d = imap_node_bytes(v, &dlen);
			lua_pushstring(L, d ? d : "");
			lua_setfield(L, -2, "internaldate_text");
			int64_t t;
			if (imap_parse_internaldate(d, &t) == 0) {
				lua_pushinteger(L, (lua_Integer)t);
				lua_setfield(L, -2, "internaldate");
			}
		} else {
			/* BODY[], BODY[HEADER], ENVELOPE, BODYSTRUCTURE...: by name */
			char name[256];
			size_t n = klen < sizeof(name) - 1 ? klen : sizeof(name) - 1;
			for (size_t i = 0; i < n; i++)
				name[i] = (char)((kb[i] >= 'a' && kb[i] <= 'z') ? kb[i] - 32 : kb[i]);
			name[n] = '\0';
			/* BODY.PEEK[] is answered as BODY[]; also expose it as "body" */
			push_node(L, v, lc, &litidx);
			if (strcmp(name, "BODY[]") == 0 || strcmp(name, "BINARY[]") == 0 ||
			    strcmp(name, "RFC822") == 0) {
				lua_pushvalue(L, -1);
				lua_setfield(L, -3, "body");
			}
			lua_setfield(L, -2, name);
		}
		k = imap_node_next(v);
	}
}

/* Runs under pcall, so an allocation failure in a libevent callback
 * becomes an op error instead of a panic. */
int
convert_untagged(lua_State *L)
{
	struct convert *cv = lua_touserdata(L, 1);
	struct lconn *lc = cv->lc;
	const struct imap_response *r = cv->r;

	lua_rawgeti(L, LUA_REGISTRYINDEX, lc->result_ref);
	switch (lc->op) {
	case OP_LIST: {
		if (r->kind != IMAP_RESP_DATA || (r->kw != IMAP_KW_LIST))
			break;
		const struct imap_node *flags = imap_node_child(r->data);
		const struct imap_node *delim = flags ? imap_node_next(flags) : NULL;
		const struct imap_node *name = delim ? imap_node_next(delim) : NULL;
		size_t nlen, dlen;
		const char *nb = name ? imap_node_bytes(name, &nlen) : NULL;
		const char *db = delim ? imap_node_bytes(delim, &dlen) : NULL;
		if (nb == NULL)
			break;
		lua_createtable(L, 0, 6);
		lua_pushlstring(L, nb, nlen);
		lua_setfield(L, -2, "raw");
		/* The name for people and for the archive: mUTF-7 decoded; a
		 * name that is not mUTF-7 as sent if it is UTF-8, else escaped
		 * without loss. Commands use the raw bytes. */
		char *utf8 = malloc(IMAP_NAME_ESCAPED_MAX(nlen) + 1);
		size_t ulen;
		if (utf8 == NULL)
			return luaL_error(L, "not enough memory");
		if (imap_utf7_decode(nb, nlen, utf8, IMAP_UTF7_DECODED_MAX(nlen) + 1, &ulen) == 0) {
			lua_pushlstring(L, utf8, ulen);
		} else if (imap_utf8_valid(nb, nlen)) {
			lua_pushlstring(L, nb, nlen);
		} else {
			imap_name_escape(nb, nlen, utf8, IMAP_NAME_ESCAPED_MAX(nlen) + 1, &ulen);
			lua_pushlstring(L, utf8, ulen);
			lua_pushboolean(L, 1);
			lua_setfield(L, -3, "escaped");
		}
		free(utf8);
		lua_setfield(L, -2, "name");
		if (db)
			lua_pushlstring(L, db, dlen);
		else
			lua_pushnil(L);
		lua_setfield(L, -2, "delimiter");
		int selectable = 1;
		lua_newtable(L);
		lua_Integer i = 1;
		for (const struct imap_node *f = imap_node_child(flags); f; f = imap_node_next(f)) {
			size_t flen;
			const char *fb = imap_node_bytes(f, &flen);
			if (fb == NULL)
				continue;
			lua_pushlstring(L, fb, flen);
			lua_rawseti(L, -2, i++);
			if (imap_node_atom_is(f, "\\Noselect") || imap_node_atom_is(f, "\\NonExistent"))
				selectable = 0;
			static const char *special[] = { "\\All", "\\Archive", "\\Drafts", "\\Flagged",
				"\\Junk", "\\Sent", "\\Trash", "\\Important", NULL };
			for (int s = 0; special[s]; s++) {
				if (imap_node_atom_is(f, special[s])) {
					lua_pushstring(L, special[s]);
					lua_setfield(L, -3, "special_use");
				}
			}
		}
		lua_setfield(L, -2, "flags");
		lua_pushboolean(L, selectable);
		lua_setfield(L, -2, "selectable");
		lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
		break;
	}
	case OP_EXAMINE: {
		if (r->kind == IMAP_RESP_STATUS) {
			uint64_t v;
			const char *field = NULL;
			switch (r->code.id) {
			case IMAP_CODE_UIDVALIDITY: field = "uidvalidity"; break;
			case IMAP_CODE_UIDNEXT: field = "uidnext"; break;
			case IMAP_CODE_HIGHESTMODSEQ: field = "highestmodseq"; break;
			case IMAP_CODE_UNSEEN: field = "unseen"; break;
			case IMAP_CODE_NOMODSEQ:
				lua_pushboolean(L, 1);
				lua_setfield(L, -2, "nomodseq");
				break;
			default: break;
			}
			if (field && imap_code_u64(&r->code, &v) == 0) {
				/* RFC 3501: nz-number, 32 bits. A bigger one would be
				 * stored cut in some places and whole in others.
				 * UIDNEXT may be one past the last possible UID. */
				uint64_t max = r->code.id == IMAP_CODE_UIDNEXT ? (uint64_t)UINT32_MAX + 1 :
				    UINT32_MAX;
				if ((r->code.id == IMAP_CODE_UIDVALIDITY || r->code.id == IMAP_CODE_UIDNEXT) &&
				    (v == 0 || v > max)) {
					char msg[160];
					snprintf(msg, sizeof(msg), "%s %llu, which is not a valid 32-bit number "
					    "(RFC 3501)", r->code.name, (unsigned long long)v);
					op_fail(lc, "protocol", NULL, "the server sent %s", msg);
					break;
				}
				lua_pushinteger(L, (lua_Integer)v);
				lua_setfield(L, -2, field);
			}
			if (r->code.id == IMAP_CODE_PERMANENTFLAGS && r->code.args) {
				const struct imap_node *l = imap_node_child(r->code.args);
				if (l) {
					push_node(L, l, NULL, NULL);
					lua_setfield(L, -2, "permanentflags");
				}
			}
		} else if (r->kind == IMAP_RESP_DATA) {
			if (r->kw == IMAP_KW_EXISTS) {
				lua_pushinteger(L, r->number);
				lua_setfield(L, -2, "exists");
			} else if (r->kw == IMAP_KW_RECENT) {
				lua_pushinteger(L, r->number);
				lua_setfield(L, -2, "recent");
			} else if (r->kw == IMAP_KW_FLAGS && r->data) {
				const struct imap_node *l = imap_node_child(r->data);
				if (l) {
					push_node(L, l, NULL, NULL);
					lua_setfield(L, -2, "flags");
				}
			}
		}
		break;
	}
	case OP_STATUS_MANY:
	case OP_STATUS: {
		if (r->kind != IMAP_RESP_DATA || r->kw != IMAP_KW_STATUS || r->data == NULL)
			break;
		const struct imap_node *name = imap_node_child(r->data);
		int sub = 0;
		if (lc->op == OP_STATUS_MANY) {
			/* one table per folder, under the name the server gave */
			size_t nlen;
			const char *nb = name ? imap_node_bytes(name, &nlen) : NULL;
			if (nb == NULL)
				break;
			lua_pushlstring(L, nb, nlen);
			if (lua_rawget(L, -2) != LUA_TTABLE) {
				lua_pop(L, 1);
				lua_newtable(L);
				lua_pushlstring(L, nb, nlen);
				lua_pushvalue(L, -2);
				lua_rawset(L, -4);
			}
			sub = 1;
		}
		const struct imap_node *items = name ? imap_node_next(name) : NULL;
		for (const struct imap_node *k = imap_node_child(items); k; ) {
			const struct imap_node *v = imap_node_next(k);
			size_t klen;
			const char *kb = imap_node_bytes(k, &klen);
			uint64_t u;
			if (v == NULL || kb == NULL)
				break;
			char key[64];
			size_t n = klen < sizeof(key) - 1 ? klen : sizeof(key) - 1;
			for (size_t i = 0; i < n; i++)
				key[i] = (char)((kb[i] >= 'A' && kb[i] <= 'Z') ? kb[i] + 32 : kb[i]);
			key[n] = '\0';
			if (imap_node_u64(v, &u) == 0)
				lua_pushinteger(L, (lua_Integer)u);
			else
				push_node(L, v, NULL, NULL);
			lua_setfield(L, -2, key);
			k = imap_node_next(v);
		}
		if (sub)
			lua_pop(L, 1);
		break;
	}
	case OP_SEARCH: {
		if (r->kind != IMAP_RESP_DATA)
			break;
		lua_Integer n = (lua_Integer)luaL_len(L, -1);
		if (r->kw == IMAP_KW_SEARCH) {
			for (const struct imap_node *x = imap_node_child(r->data); x; x = imap_node_next(x)) {
				uint32_t u;
				if (imap_node_u32(x, &u) == 0) {
					lua_pushinteger(L, u);
					lua_rawseti(L, -2, ++n);
				}
			}
		} else if (r->kw == IMAP_KW_ESEARCH) {
			const struct imap_node *all = imap_node_after(r->data, "ALL");
			size_t slen;
			const char *sb = all ? imap_node_bytes(all, &slen) : NULL;
			if (sb) {
				struct imap_range *ranges = malloc(sizeof(*ranges) * 65536);
				size_t nr = 0;
				if (ranges && imap_parse_seqset(sb, slen, 0, ranges, 65536, &nr) == 0) {
					for (size_t i = 0; i < nr; i++) {
						for (uint64_t u = ranges[i].lo; u <= ranges[i].hi; u++) {
							lua_pushinteger(L, (lua_Integer)u);
							lua_rawseti(L, -2, ++n);
						}
					}
				}
				free(ranges);
			}
		}
		break;
	}
	case OP_FETCH:
		if (r->kind == IMAP_RESP_DATA && r->kw == IMAP_KW_FETCH) {
			push_fetch(L, r, lc);
			lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
		}
		break;
	case OP_IDLE:
	case OP_SIMPLE:
		if (r->kind == IMAP_RESP_DATA) {
			/* events: { {type="EXISTS", n=5}, ... } */
			lua_createtable(L, 0, 3);
			lua_pushstring(L, r->keyword ? r->keyword : "");
			lua_setfield(L, -2, "type");
			if (r->has_number) {
				lua_pushinteger(L, r->number);
				lua_setfield(L, -2, "n");
			}
			if (r->data) {
				push_node(L, r->data, lc, NULL);
				lua_setfield(L, -2, "data");
			}
			lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
		}
		break;
	default:
		break;
	}
	lua_pop(L, 1);
	return 0;
}

#ifndef EMAILVAULT_LUA_IMAP_CONN_H
#define EMAILVAULT_LUA_IMAP_CONN_H
/*
 * Inside vault.imap: a connection as the Lua binding holds it, shared by
 * imap.c (connections and their methods), imap_convert.c (responses as Lua
 * values) and imap_archive.c (conn:archive and its hooks). Not an API.
 */
#include <stdint.h>

#include <event2/event.h>
#include <lua.h>

#include "imap/client.h"
#include "imap/parser.h"
#include "lua/task.h"
#include "net/error.h"
#include "sync/archive.h"

struct vm;

#define CONN_HANDLE "vault.imap.conn"
#define LUA_LITERAL_MAX ((size_t)256 << 20)

enum op { OP_NONE, OP_CONNECT, OP_SIMPLE, OP_LIST, OP_EXAMINE, OP_STATUS, OP_STATUS_MANY,
	OP_SEARCH, OP_FETCH, OP_IDLE, OP_LOGOUT, OP_ARCHIVE };

struct litbuf {
	char *data;
	size_t len, cap;
};

struct lconn {
	struct vm *vm;
	struct imap_client *client;
	uint64_t id;
	char *source;
	struct lconn *next;

	/* the operation in progress */
	enum op op;
	struct task_token tok;
	struct task *task;
	void *cleanup;
	int result_ref;			/* table being filled */
	int pending;			/* commands of this op still running */
	int failed;			/* the op failed: error in err */
	struct net_error err;
	char code[40];			/* response code of a NO/BAD */
	char what[300];			/* the command, for messages */
	/* FETCH: streamed literals of the current response, in order */
	struct litbuf *lits;
	int nlits, lits_cap;
	struct litbuf cur;
	int streaming;
	/* IDLE */
	struct event *idle_timer;
	int idle_done_sent;
	int idle_started;
	/* ARCHIVE */
	struct archive_job *job;
	int filter_ref, on_message_ref, on_progress_ref;
	long hook_budget;
	double hook_seconds;
	struct archive_progress result;
};

/* The operation in progress ends: the waiting task gets its result. */
void finish_op(struct lconn *lc);
void op_fail(struct lconn *lc, const char *kind, const char *code, const char *fmt, const char *arg);
/* Marks LC busy with OP and yields the calling task until finish_op. */
int wait_op(lua_State *L, struct lconn *lc, enum op op);
/* The connection of the handle at index 1, idle, in a task (or raises).
 * With NEED_OPEN, a connection the server or the network ended gives NULL
 * with nil and its error pushed: the method returns those 2 values. */
struct lconn *check_conn(lua_State *L, int need_open);
/* nil, err right away when a command cannot be queued. */
int closed_now(lua_State *L, struct lconn *lc);
/* An event callback that frees an archive job (ARG) from the loop. */
void free_job_later(evutil_socket_t fd, short what, void *arg);
const char *opt_string(lua_State *L, int t, const char *k, const char *def);
int opt_boolean(lua_State *L, int t, const char *k);
double opt_number(lua_State *L, int t, const char *k, double def);

/* imap_convert.c: an untagged response of LC's operation into its result
 * table; called under lua_pcall with a struct convert. */
struct convert {
	struct lconn *lc;
	const struct imap_response *r;
};
int convert_untagged(lua_State *L);

/* imap_archive.c */
void push_progress(lua_State *L, const struct archive_progress *p);
void unref_hooks(struct lconn *lc);
int l_archive(lua_State *L);

#endif

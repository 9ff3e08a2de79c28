#define _GNU_SOURCE	/* struct ucred */
#include "control/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <lauxlib.h>

#include "control/frame.h"
#include "log.h"
#include "lua/task.h"
#include "lua/vm.h"

struct client {
	struct control_server *srv;
	struct bufferevent *bev;
	int fd;
	lua_Integer id;
	uint64_t task_id;	/* the running chunk, or 0 */
	int interrupted;	/* sticky until the chunk ends */
	int held;		/* not read until the others had a pass (2: going on) */
	struct client *next;
};

struct control_server {
	struct event_base *base;
	struct vm *vm;
	int listen_fd;
	struct event *accept_ev;
	int accept_held;		/* until the others' pass */
	struct event *accept_retry;	/* out of descriptors: accept again later */
	int accept_paused;
	struct event *others_ran;	/* see give_others_a_pass */
	int others_pending;
	struct timespec others_waiting_since;
	struct client *clients;
	lua_Integer next_id;
	char *path;
};

/* One server per process; the Lua binding reaches it through this. */
static struct control_server *the_server;

static struct client *
find_client(struct control_server *srv, lua_Integer id)
{
	for (struct client *c = srv->clients; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* Writes what is queued at once rather than at the loop's next turn, which
 * may be a while coming while many sources import. What the socket does not
 * take now, the bufferevent writes later; its errors surface there too. */
static void
flush_now(struct client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (evbuffer_get_length(out) > 0)
		(void)evbuffer_write(out, c->fd);
}

static void
send_frame(struct client *c, char type, const char *data, size_t len)
{
	unsigned char hdr[FRAME_HEADER];
	uint32_t n;

	if (len + 1 > FRAME_MAX) {
		static const char cut[] = "\n... (output too large for one reply)";
		len = FRAME_MAX - sizeof(cut) - 1;
		n = (uint32_t)(len + sizeof(cut));	/* type + data + cut (no NUL) */
		hdr[0] = n >> 24; hdr[1] = n >> 16; hdr[2] = n >> 8; hdr[3] = (unsigned char)n;
		hdr[4] = (unsigned char)type;
		bufferevent_write(c->bev, hdr, sizeof(hdr));
		bufferevent_write(c->bev, data, len);
		bufferevent_write(c->bev, cut, sizeof(cut) - 1);
		flush_now(c);
		return;
	}
	n = (uint32_t)len + 1;
	hdr[0] = n >> 24; hdr[1] = n >> 16; hdr[2] = n >> 8; hdr[3] = (unsigned char)n;
	hdr[4] = (unsigned char)type;
	bufferevent_write(c->bev, hdr, sizeof(hdr));
	bufferevent_write(c->bev, data, len);
	flush_now(c);
}

static void
client_free(struct client *c)
{
	struct control_server *srv = c->srv;

	for (struct client **pp = &srv->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->task_id) {
		struct task *t = task_find(srv->vm, c->task_id);
		c->task_id = 0;
		if (t)
			task_cancel(t);
	}
	bufferevent_free(c->bev);
	free(c);
}

static int
is_interrupt(const unsigned char hdr[FRAME_HEADER])
{
	return hdr[0] == 0 && hdr[1] == 0 && hdr[2] == 0 && hdr[3] == 1 && hdr[4] == 'I';
}

/* Called every so many instructions while a chunk runs and the loop is
 * blocked: looks at the socket itself for an interrupt or a hang-up. */
static int
watchdog(void *ud)
{
	struct client *c = ud;
	struct evbuffer *in;
	unsigned char peek[FRAME_HEADER];
	ssize_t r;

	if (c->interrupted)
		return 1;
	in = bufferevent_get_input(c->bev);
	/* Only a whole interrupt frame (length 1, 'I'): taking the header of a
	 * longer one would leave its payload to be read as frames of its own. */
	if (evbuffer_get_length(in) >= FRAME_HEADER) {
		evbuffer_copyout(in, peek, FRAME_HEADER);
		if (is_interrupt(peek)) {
			evbuffer_drain(in, FRAME_HEADER);
			return c->interrupted = 1;
		}
	}
	r = recv(c->fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
	if (r == 0)
		return c->interrupted = 1;	/* the client went away */
	if (r == FRAME_HEADER && is_interrupt(peek)) {
		if (recv(c->fd, peek, sizeof(peek), MSG_DONTWAIT) == FRAME_HEADER)
			return c->interrupted = 1;
	}
	return 0;
}

static void
run_eval(struct client *c, const char *payload, size_t len)
{
	lua_State *L = c->srv->vm->L;
	int flags, status;

	if (c->task_id) {
		static const char busy[] = "a chunk is still running on this connection";
		send_frame(c, 'X', busy, sizeof(busy) - 1);
		return;
	}
	if (len < 1) {
		static const char bad[] = "empty eval request";
		send_frame(c, 'X', bad, sizeof(bad) - 1);
		return;
	}
	flags = (unsigned char)payload[0];
	if (vm_require(L, "repl") != 0)
		goto fail;
	lua_getfield(L, -1, "eval");
	lua_pushinteger(L, c->id);
	lua_pushlstring(L, payload + 1, len - 1);
	lua_pushboolean(L, flags & EVAL_FLAG_JSON);
	c->srv->vm->spawn_urgent = 1;
	status = vm_pcall(L, 3, 1);
	c->srv->vm->spawn_urgent = 0;
	if (status != LUA_OK)
		goto fail;
	if (lua_isinteger(L, -1)) {
		struct task *t = task_find(c->srv->vm, (uint64_t)lua_tointeger(L, -1));
		if (t) {
			c->task_id = task_id(t);
			c->interrupted = 0;
			task_set_watchdog(t, watchdog, c);
		}
	}
	lua_pop(L, 2);
	return;
fail:
	{
		size_t elen;
		const char *e = lua_tolstring(L, -1, &elen);
		send_frame(c, 'X', e ? e : "internal error", e ? elen : 14);
		lua_settop(L, 0);
	}
}

static void
run_complete(struct client *c, const char *payload, size_t len)
{
	lua_State *L = c->srv->vm->L;
	size_t n;
	const char *s;

	if (vm_require(L, "repl") != 0)
		goto fail;
	lua_getfield(L, -1, "complete");
	if (!lua_isfunction(L, -1)) {
		lua_pop(L, 2);
		send_frame(c, 'L', "", 0);
		return;
	}
	lua_pushlstring(L, payload, len);
	if (vm_pcall(L, 1, 1) != LUA_OK)
		goto fail;
	s = lua_tolstring(L, -1, &n);
	send_frame(c, 'L', s ? s : "", s ? n : 0);
	lua_pop(L, 2);
	return;
fail:
	lua_settop(L, 0);
	send_frame(c, 'L', "", 0);
}

/*
 * The control socket's events go first (priority 0, engine.c). Libevent
 * runs a lower priority only in a turn with nothing urgent, so a client
 * that sends without a pause would keep the loop from the sources for
 * ever. Each urgent callback makes sure others_ran, an event of the
 * default priority, is pending: it runs once the others have had a pass.
 * While it has waited for over FAIR_MS, the socket is neither read nor
 * accepted from until it has run.
 */
#define FAIR_MS 20

static int
give_others_a_pass(struct control_server *srv)
{
	struct timespec now;
	long waited_ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!srv->others_pending) {
		srv->others_pending = 1;
		srv->others_waiting_since = now;
		event_active(srv->others_ran, EV_TIMEOUT, 0);
		return 0;
	}
	waited_ms = (now.tv_sec - srv->others_waiting_since.tv_sec) * 1000 +
	    (now.tv_nsec - srv->others_waiting_since.tv_nsec) / 1000000;
	return waited_ms > FAIR_MS;
}

static void read_cb(struct bufferevent *bev, void *arg);

/* The others had their pass: what was held back goes on. */
static void
others_ran_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_server *srv = arg;
	struct client *c;

	(void)fd;
	(void)what;
	srv->others_pending = 0;
	if (srv->accept_held) {
		srv->accept_held = 0;
		if (!srv->accept_paused)
			event_add(srv->accept_ev, NULL);
	}
	for (c = srv->clients; c; c = c->next)
		if (c->held)
			c->held = 2;	/* to go on now; held again goes to 1 */
	/* From the list's head each time: reading may free a client. */
	for (;;) {
		for (c = srv->clients; c && c->held != 2; c = c->next)
			;
		if (c == NULL)
			break;
		c->held = 0;
		bufferevent_enable(c->bev, EV_READ);
		read_cb(c->bev, c);	/* what it had read already */
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (give_others_a_pass(c->srv)) {
		c->held = 1;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	for (;;) {
		unsigned char hdr[FRAME_HEADER];
		uint32_t n;
		char *payload;

		if (evbuffer_get_length(in) < FRAME_HEADER)
			return;
		evbuffer_copyout(in, hdr, FRAME_HEADER);
		n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
		if (n < 1 || n > FRAME_MAX) {
			log_warn(NULL, "control client sent a malformed frame; closing it");
			client_free(c);
			return;
		}
		if (evbuffer_get_length(in) < 4 + (size_t)n)
			return;
		evbuffer_drain(in, FRAME_HEADER);
		payload = malloc(n);
		if (payload == NULL) {
			client_free(c);
			return;
		}
		evbuffer_remove(in, payload, n - 1);
		payload[n - 1] = '\0';
		switch (hdr[4]) {
		case 'E':
			run_eval(c, payload, n - 1);
			break;
		case 'I':
			if (c->task_id) {
				struct task *t = task_find(c->srv->vm, c->task_id);
				c->interrupted = 1;
				if (t)
					task_cancel(t);	/* waiting: its done callback replies */
			}
			break;
		case 'C':
			run_complete(c, payload, n - 1);
			break;
		default:
			break;
		}
		free(payload);
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(arg);
}

static int
peer_allowed(int fd, char *why, size_t len)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		snprintf(why, len, "cannot read peer credentials: %s", strerror(errno));
		return 0;
	}
	if (cred.uid != geteuid() && cred.uid != 0) {
		snprintf(why, len, "peer uid %u is not the engine's uid %u",
		    (unsigned)cred.uid, (unsigned)geteuid());
		return 0;
	}
	return 1;
}

static void
accept_one(struct control_server *srv, int fd)
{
	struct client *c;
	char why[128];

	if (!peer_allowed(fd, why, sizeof(why))) {
		static const char msg[] = "refused: the control socket serves only its owner";
		log_warn(NULL, "control connection refused: %s", why);
		(void)frame_write(fd, 'X', msg, sizeof(msg) - 1);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	c->id = ++srv->next_id;
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	/* Priority 0, the loop's most urgent (engine.c): a request is read and
	 * answered before the sources' events of the same turn. */
	bufferevent_priority_set(c->bev, 0);
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = srv->clients;
	srv->clients = c;
	log_debug(NULL, "control client connected id=%lld", (long long)c->id);
}

/*
 * Out of file descriptors, the waiting client stays in the listen queue
 * and the socket stays readable: accepting again at once would spin the
 * loop and write a log line per try. One line, then a try a second.
 */
#define ACCEPT_RETRY_S 1

static void
pause_accepting(struct control_server *srv, int why)
{
	static const struct timeval later = { ACCEPT_RETRY_S, 0 };

	log_warn(NULL, "control socket: cannot accept a client: %s; trying again in %d s",
	    strerror(why), ACCEPT_RETRY_S);
	srv->accept_paused = 1;
	event_del(srv->accept_ev);
	event_add(srv->accept_retry, &later);
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct control_server *srv = arg;

	(void)fd;
	(void)what;
	srv->accept_paused = 0;
	if (!srv->accept_held)
		event_add(srv->accept_ev, NULL);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct control_server *srv = arg;

	(void)what;
	if (give_others_a_pass(srv)) {
		srv->accept_held = 1;
		event_del(srv->accept_ev);
		return;
	}
	/* A few at a time: a burst of clients must not hold the loop. */
	for (int i = 0; i < 16; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				pause_accepting(srv, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn(NULL, "control socket: accept: %s", strerror(errno));
			return;
		}
		accept_one(srv, fd);
	}
}

/* A listening Unix socket at SUN, 0600 from its creation; -1 and errno. */
static int
listen_unix(const struct sockaddr_un *sun)
{
	mode_t old_umask;
	int fd, saved;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	old_umask = umask(0177);
	if (bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0 || listen(fd, 16) < 0) {
		saved = errno;
		umask(old_umask);
		close(fd);
		errno = saved;
		return -1;
	}
	umask(old_umask);
	return fd;
}

struct control_server *
control_server_start(struct event_base *base, struct vm *vm, const char *path,
    char *err, size_t errlen)
{
	struct control_server *srv;
	struct sockaddr_un sun;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket path %s is too long (max %zu bytes); "
		    "use a shorter --data folder", path, sizeof(sun.sun_path) - 1);
		return NULL;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	unlink(path);	/* a stale socket of a dead engine: we hold the data lock */
	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	srv->base = base;
	srv->vm = vm;
	srv->path = strdup(path);
	srv->listen_fd = listen_unix(&sun);
	if (srv->listen_fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		free(srv->path);
		free(srv);
		return NULL;
	}
	srv->accept_ev = event_new(base, srv->listen_fd, EV_READ | EV_PERSIST, accept_cb, srv);
	srv->others_ran = event_new(base, -1, 0, others_ran_cb, srv);
	srv->accept_retry = evtimer_new(base, accept_retry_cb, srv);
	if (srv->accept_ev != NULL)
		(void)event_priority_set(srv->accept_ev, 0);	/* see accept_one */
	if (srv->accept_ev == NULL || srv->others_ran == NULL || srv->accept_retry == NULL ||
	    event_add(srv->accept_ev, NULL) < 0) {
		snprintf(err, errlen, "cannot listen on %s: out of memory", path);
		if (srv->accept_ev)
			event_free(srv->accept_ev);
		if (srv->others_ran)
			event_free(srv->others_ran);
		if (srv->accept_retry)
			event_free(srv->accept_retry);
		close(srv->listen_fd);
		unlink(path);
		free(srv->path);
		free(srv);
		return NULL;
	}
	chmod(path, 0600);
	the_server = srv;
	return srv;
}

void
control_server_free(struct control_server *srv)
{
	if (srv == NULL)
		return;
	while (srv->clients)
		client_free(srv->clients);
	event_free(srv->accept_ev);
	event_free(srv->others_ran);
	event_free(srv->accept_retry);
	close(srv->listen_fd);
	unlink(srv->path);
	free(srv->path);
	if (the_server == srv)
		the_server = NULL;
	free(srv);
}

/* control.send(client_id, kind, text): 'R'/'X' also end the client's chunk. */
static int
l_send(lua_State *L)
{
	lua_Integer id = luaL_checkinteger(L, 1);
	const char *kind = luaL_checkstring(L, 2);
	size_t len;
	const char *text = luaL_checklstring(L, 3, &len);
	struct client *c = the_server ? find_client(the_server, id) : NULL;

	if (c == NULL) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (kind[0] == 'R' || kind[0] == 'X') {
		c->task_id = 0;
		if (c->interrupted && kind[0] == 'X') {
			static const char msg[] = "interrupted";
			c->interrupted = 0;
			send_frame(c, 'X', msg, sizeof(msg) - 1);
			lua_pushboolean(L, 1);
			return 1;
		}
		c->interrupted = 0;
	}
	send_frame(c, kind[0], text, len);
	lua_pushboolean(L, 1);
	return 1;
}

static int
l_clients(lua_State *L)
{
	int n = 0;

	if (the_server)
		for (struct client *c = the_server->clients; c; c = c->next)
			n++;
	lua_pushinteger(L, n);
	return 1;
}

int
luaopen_vault_control(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "send", l_send },
		{ "clients", l_clients },
		{ NULL, NULL }
	};
	luaL_newlib(L, funcs);
	return 1;
}

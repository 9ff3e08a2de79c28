/*
 * libFuzzer target for the control socket's frames, both ends.
 *
 * The input is a byte stream as a client would send it: frames of a 4-byte
 * big-endian length, a type and a payload ('E' eval with a flags byte,
 * 'I' interrupt, 'C' complete), or anything else.
 *
 * 1. frame_read (the client's reader) reads the bytes from a file: every
 *    frame it returns must be exactly the next bytes of the input, its
 *    payload NUL-terminated, and it must stop with errno 0 exactly at the
 *    end of the input, EPROTO on a bad or cut frame.
 * 2. The engine's server (src/control/server.c) gets the same bytes on a
 *    real connection, in pieces, with the event loop turning in between,
 *    then the end of the stream. It runs the real lua/repl.lua, except that
 *    an eval's chunk is not compiled as Lua (a mutated chunk must not run
 *    os.execute): its first byte picks a behaviour (a value, an error, a
 *    print, a sleep, a busy loop, a compile error). Checked: every reply
 *    is a well-formed frame of a reply type, no more replies than requests,
 *    the server closes the connection, and no task is left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "control/frame.h"
#include "control/server.h"
#include "engine.h"
#include "log.h"
#include "lua/task.h"
#include "lua/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char stub[] =
    "local R = require 'repl'\n"
    "local task = require 'vault.task'\n"
    "R.compile = function(chunk)\n"
    "  local op = chunk:sub(1, 1)\n"
    "  if op == '' or op == 'x' then return nil, 'eval:1: unexpected symbol near ' .. chunk end\n"
    "  if op == 's' then return function() task.sleep(0.001) return chunk end end\n"
    "  if op == 'l' then return function() local n = 0 for i = 1, 100000 do n = n + i end return n end end\n"
    "  if op == 'p' then return function() R.env.print(chunk, #chunk) return chunk, { n = #chunk, chunk } end end\n"
    "  if op == 'e' then return function() error(chunk) end end\n"
    "  if op == 't' then return function() return { chunk, nested = { [chunk] = 1.5 } }, true, nil end end\n"
    "  return function() return chunk end\n"
    "end\n";

static struct event_base *base;
static struct vm *vm;
static char dir[] = "/tmp/fuzz-control-XXXXXX";
static char sock_path[108];
static char file_path[4096];

static void
cleanup(void)
{
	unlink(sock_path);
	unlink(file_path);
	rmdir(dir);
}

static void
setup(void)
{
	char err[512];
	lua_State *L;

	if (mkdtemp(dir) == NULL)
		abort();
	atexit(cleanup);
	snprintf(sock_path, sizeof sock_path, "%s/control.sock", dir);
	snprintf(file_path, sizeof file_path, "%s/frames", dir);
	log_set_level(LOG_ERROR);	/* "malformed frame" warnings by the thousand */
	if (log_open_file("/dev/null") < 0)
		abort();
	signal(SIGPIPE, SIG_IGN);	/* the server hangs up on a malformed frame */
	if ((base = event_base_new()) == NULL || (vm = vm_new(base, (size_t)64 << 20)) == NULL)
		abort();
	engine_preload_modules(vm);
	L = vm->L;
	if (luaL_loadbuffer(L, stub, sizeof stub - 1, "=fuzz") != LUA_OK ||
	    vm_pcall(L, 0, 0) != LUA_OK) {
		fprintf(stderr, "stub: %s\n", vm_tostring(L, -1));
		abort();
	}
	if (control_server_start(base, vm, sock_path, err, sizeof err) == NULL) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Part 1: frame_read over the input as a file. */
static void
read_frames(const uint8_t *data, size_t size)
{
	size_t at = 0, len;
	char type, *payload;
	int fd = open(file_path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) ||
	    lseek(fd, 0, SEEK_SET) != 0)
		abort();
	for (;;) {
		errno = 12345;
		if (frame_read(fd, &type, &payload, &len) < 0)
			break;
		if (size - at < FRAME_HEADER + len || be32(data + at) != len + 1 ||
		    (uint8_t)type != data[at + 4] ||
		    memcmp(payload, data + at + FRAME_HEADER, len) != 0 || payload[len] != '\0')
			abort();
		at += FRAME_HEADER + len;
		free(payload);
	}
	if (errno == 0) {
		if (at != size)
			abort();	/* "end of file" in the middle */
	} else if (errno != EPROTO || at == size) {
		abort();
	}
	close(fd);
}

/* The requests in the input, as the server will count them. Returns 0 if
 * the input is whole frames (the last may be unfinished), -1 if the server
 * meets a malformed frame and hangs up. */
static int
count_requests(const uint8_t *data, size_t size, unsigned *evals, unsigned *completes)
{
	size_t at = 0;
	uint32_t n;

	*evals = *completes = 0;
	while (size - at >= FRAME_HEADER) {
		n = be32(data + at);
		if (n < 1 || n > FRAME_MAX)
			return -1;
		if (size - at < 4 + (size_t)n)
			return 0;
		if (data[at + 4] == 'E')
			(*evals)++;
		else if (data[at + 4] == 'C')
			(*completes)++;
		at += 4 + (size_t)n;
	}
	return 0;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct conn {
	int fd;
	char *buf;		/* what the server sent */
	size_t got, cap;
	int closed;		/* the server hung up */
	long long deadline;
};

/* One turn of the loop, then everything the server has sent so far.
 * Returns the bytes that arrived. */
static size_t
turn(struct conn *c)
{
	size_t before = c->got;
	ssize_t r;

	if (now_ms() > c->deadline) {
		fprintf(stderr, "fuzz_control: no end after 10 s (%d tasks)\n", task_count(vm));
		abort();
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
	while (!c->closed) {
		if (c->cap - c->got < 4096 && (c->buf = realloc(c->buf, c->cap *= 2)) == NULL)
			abort();
		r = read(c->fd, c->buf + c->got, c->cap - c->got);
		if (r > 0)
			c->got += (size_t)r;
		else if (r == 0 || errno == ECONNRESET)
			c->closed = 1;
		else if (errno == EAGAIN)
			break;
		else
			abort();
	}
	return c->got - before;
}

/* Part 2: the server. Sends the input in pieces, lets every chunk finish,
 * then closes its end and waits for the server to close. Returns the reply
 * bytes (malloc'd) in *out. */
static size_t
talk(const uint8_t *data, size_t size, char **out)
{
	struct sockaddr_un sun;
	struct conn c = { -1, NULL, 0, 4096, 0, now_ms() + 10000 };
	size_t sent = 0;
	uint32_t h = 2166136261u;
	int idle;

	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, sock_path, strlen(sock_path));
	if ((c.buf = malloc(c.cap)) == NULL || (c.fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    connect(c.fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
	    fcntl(c.fd, F_SETFL, O_NONBLOCK) < 0)
		abort();
	while (sent < size && !c.closed) {
		/* pieces cut by the input's hash, so the same input cuts the same */
		size_t piece = size - sent, cut;
		ssize_t w;

		h = h * 1103515245u + 12345u;
		cut = 1 + (h >> 8) % 23;
		if ((h >> 31) && cut < piece)
			piece = cut;
		w = write(c.fd, data + sent, piece);
		if (w > 0)
			sent += (size_t)w;
		else if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
			c.closed = 1;
		else if (w < 0 && errno != EAGAIN)
			abort();
		turn(&c);
	}
	/* Settled: no task left and nothing new for a few turns. */
	for (idle = 0; idle < 3 && !c.closed;) {
		if (turn(&c) > 0 || task_count(vm) > 0) {
			struct pollfd p = { c.fd, POLLIN, 0 };

			idle = 0;
			if (task_count(vm) > 0)
				(void)poll(&p, 1, 1);	/* a sleeping chunk */
		} else {
			idle++;
		}
	}
	if (!c.closed)
		shutdown(c.fd, SHUT_WR);
	while (!c.closed) {
		struct pollfd p = { c.fd, POLLIN, 0 };

		if (turn(&c) == 0 && !c.closed)
			(void)poll(&p, 1, 1);
	}
	close(c.fd);
	*out = c.buf;
	return c.got;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned evals, completes, results = 0, lists = 0;
	int whole;
	size_t got, at = 0;
	char *reply;
	uint32_t n;

	if (vm == NULL)
		setup();
	read_frames(data, size);
	whole = count_requests(data, size, &evals, &completes) == 0;
	got = talk(data, size, &reply);
	/* Before a malformed frame the server may hang up with output unsent,
	 * so the last reply may be cut short; all before it are whole. */
	while (got - at >= FRAME_HEADER) {
		n = be32((uint8_t *)reply + at);
		if (n < 1 || n > FRAME_MAX)
			abort();
		switch (reply[at + 4]) {
		case 'O':
			break;
		case 'R': case 'X':
			results++;
			break;
		case 'L':
			lists++;
			break;
		default:
			abort();
		}
		if (got - at < 4 + (size_t)n)
			break;
		at += 4 + (size_t)n;
	}
	/* Every eval is answered once (a value, an error, "busy",
	 * "interrupted"), every completion once; unless the server hung up on
	 * a malformed frame, when some are not. */
	if (results > evals || lists > completes ||
	    (whole && (results != evals || lists != completes || at != got))) {
		fprintf(stderr, "fuzz_control: %u results for %u evals, %u lists for %u "
		    "completions, %zu of %zu reply bytes in whole frames\n", results, evals,
		    lists, completes, at, got);
		abort();
	}
	free(reply);
	/* Let the loop run what the close left deferred, then nothing may be
	 * left: a chunk's task ends with its connection. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	if (task_count(vm) != 0) {
		fprintf(stderr, "fuzz_control: %d tasks left\n", task_count(vm));
		abort();
	}
	lua_settop(vm->L, 0);
	/* as in fuzz_sources: garbage left for later makes libFuzzer scan for
	 * leaks after every input */
	lua_gc(vm->L, LUA_GCCOLLECT);
	return 0;
}

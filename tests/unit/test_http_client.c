/*
 * src/http/client.c against an evhttp server in the same event loop: what
 * the Lua binding does not reach (streamed bodies both ways, pause, the
 * header callback, the queue and its timeout, cancelling and aborting from
 * inside callbacks) and the helpers.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "check.h"
#include "http/client.h"

static struct event_base *base;
static struct evhttp *server;
static int port;
static int srv_active, srv_max_active;

/* ---- the server ------------------------------------------------------------ */

static void
slow_reply(evutil_socket_t fd, short what, void *arg)
{
	struct evhttp_request *req = arg;
	struct evbuffer *out = evbuffer_new();

	(void)fd;
	(void)what;
	evbuffer_add_printf(out, "slow done");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
	srv_active--;
}

static void
handler(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *out = evbuffer_new();
	struct timeval later = { 0, 200000 };

	(void)arg;
	if (strcmp(uri, "/echo") == 0) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		const char *te = evhttp_find_header(evhttp_request_get_input_headers(req),
		    "Transfer-Encoding");
		evhttp_add_header(evhttp_request_get_output_headers(req), "X-Chunked",
		    te ? "yes" : "no");
		evbuffer_add_buffer(out, in);
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strncmp(uri, "/big?n=", 7) == 0) {
		long n = atol(uri + 7);
		for (long i = 0; i < n; i++)
			evbuffer_add(out, &"0123456789"[i % 10], 1);
		evhttp_send_reply(req, 200, "OK", out);
	} else if (strcmp(uri, "/slow") == 0) {
		if (++srv_active > srv_max_active)
			srv_max_active = srv_active;
		event_base_once(base, -1, EV_TIMEOUT, slow_reply, req, &later);
	} else if (strcmp(uri, "/307") == 0) {
		/* the body is read but not wanted here */
		evbuffer_drain(evhttp_request_get_input_buffer(req), (size_t)-1);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/echo");
		evhttp_send_reply(req, 307, "Temporary Redirect", out);
	} else if (strcmp(uri, "/never") == 0) {
		/* no answer: evhttp_free drops it */
	} else {
		evbuffer_add_printf(out, "missing");
		evhttp_send_reply(req, 404, "Not Found", out);
	}
	evbuffer_free(out);
}

static void
start_server(void)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	server = evhttp_new(base);
	evhttp_set_gencb(server, handler, NULL);
	bs = evhttp_bind_socket_with_handle(server, "127.0.0.1", 0);
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
}

static const char *
url(const char *path)
{
	static char buf[4][128];
	static int n;
	char *b = buf[n++ % 4];

	snprintf(b, sizeof(buf[0]), "http://127.0.0.1:%d%s", port, path);
	return b;
}

/* ---- running the loop ------------------------------------------------------- */

static int pending;	/* DONE callbacks still expected */

static void
give_up(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(base);
}

/* Runs the loop until PENDING reaches 0 or SECONDS pass; 0 if it did. */
static int
run(double seconds)
{
	struct timeval tv = { (time_t)seconds, (suseconds_t)((seconds - (int)seconds) * 1e6) };
	struct event *ev = evtimer_new(base, give_up, NULL);

	evtimer_add(ev, &tv);
	while (pending > 0 && event_base_loop(base, EVLOOP_ONCE) == 0 && evtimer_pending(ev, NULL))
		;
	event_free(ev);
	return pending > 0 ? -1 : 0;
}

/* A streamed request body: a pattern, in odd-sized reads. */
struct source {
	size_t off, total;
	int fail_at_half;
	int seeks;
};

struct result {
	int done, status, headers_calls, writes;
	struct source src;
	char kind[16], message[1024];
	char body[65536];
	size_t body_len;
	char sunk[65536];
	size_t sunk_len;
	char chunked[8];
	struct http_request *victim;	/* cancelled from a callback */
	int pause_once, cancel_self_in_write, abort_in_headers, to_memory;
};

static void
on_done(struct http_request *req, const struct http_response *res,
    const struct net_error *err, void *ud)
{
	struct result *r = ud;
	const char *h;

	(void)req;
	r->done++;
	pending--;
	if (err) {
		snprintf(r->kind, sizeof(r->kind), "%s", err->kind);
		snprintf(r->message, sizeof(r->message), "%s", err->message);
	} else {
		r->status = (int)res->status;
		if (res->body) {
			r->body_len = res->body_len < sizeof(r->body) ? res->body_len : sizeof(r->body);
			memcpy(r->body, res->body, r->body_len);
		}
		h = http_response_header(res, "x-chunked");
		snprintf(r->chunked, sizeof(r->chunked), "%s", h ? h : "");
	}
	if (r->victim) {
		http_request_cancel(r->victim);
		pending--;
	}
}

static int
sink(struct http_request *req, const char *data, size_t len, void *ud)
{
	struct result *r = ud;

	r->writes++;
	if (r->cancel_self_in_write) {
		http_request_cancel(req);
		pending--;
		return HTTP_CB_ABORT;
	}
	if (r->pause_once) {
		r->pause_once = 0;
		return HTTP_CB_PAUSE;
	}
	if (r->sunk_len + len > sizeof(r->sunk))
		return HTTP_CB_ABORT;
	memcpy(r->sunk + r->sunk_len, data, len);
	r->sunk_len += len;
	return HTTP_CB_OK;
}

static int
headers(struct http_request *req, const struct http_response *res, void *ud)
{
	struct result *r = ud;

	(void)req;
	r->headers_calls++;
	r->status = (int)res->status;
	if (r->abort_in_headers)
		return HTTP_CB_ABORT;
	if (r->to_memory && res->status != 200)
		return HTTP_CB_TO_MEMORY;
	return HTTP_CB_OK;
}

static ssize_t
source_read(struct http_request *req, char *buf, size_t len, void *ud)
{
	struct result *r = ud;
	struct source *s = &r->src;

	(void)req;
	if (s->fail_at_half && s->off >= s->total / 2)
		return HTTP_CB_ABORT;
	if (len > 777)
		len = 777;
	if (len > s->total - s->off)
		len = s->total - s->off;
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)('a' + (s->off + i) % 26);
	s->off += len;
	return (ssize_t)len;
}

static int
source_seek(struct http_request *req, uint64_t offset, void *ud)
{
	struct result *r = ud;
	struct source *s = &r->src;

	(void)req;
	s->seeks++;
	s->off = (size_t)offset;
	return 0;
}

static struct http_request *
start(struct http_client *c, struct http_opts *o, struct result *r)
{
	struct net_error err;
	struct http_request *req;

	o->done = on_done;
	o->ud = r;
	req = http_request_new(c, o, &err);
	if (req)
		pending++;
	else
		fprintf(stderr, "http_request_new: %s\n", err.message);
	return req;
}

/* ---- the tests ------------------------------------------------------------- */

static void
test_helpers(void)
{
	char b[300];

	CHECK_INT(http_url_hostport("https://user:pw@host.example/p?token=x", b, sizeof(b)), 0);
	CHECK_STR(b, "host.example:443");
	CHECK_INT(http_url_hostport("http://[::1]:8080/", b, sizeof(b)), 0);
	CHECK_STR(b, "[::1]:8080");
	CHECK_INT(http_url_hostport("HTTP://Example.COM", b, sizeof(b)), 0);
	CHECK_STR(b, "Example.COM:80");
	CHECK_INT(http_url_hostport("no url at all", b, sizeof(b)), -1);
	CHECK_STR(b, "(invalid URL)");
}

static void
test_bad_options(void)
{
	struct http_client *c = http_client_new(base, 4);
	struct http_field bad_value[] = { { "X-A", "a\r\nX-B: b" } };
	struct http_field bad_name[] = { { "X A", "v" } };
	struct result r;
	struct http_opts o;
	struct net_error err;

	memset(&r, 0, sizeof(r));
#define REFUSED(field, value, text) do { \
	memset(&o, 0, sizeof(o)); \
	o.url = url("/echo"); \
	o.done = on_done; \
	o.ud = &r; \
	o.field = value; \
	CHECK(http_request_new(c, &o, &err) == NULL); \
	CHECK_STR(err.kind, "config"); \
	CHECK(strstr(err.message, text) != NULL); \
} while (0)
	REFUSED(url, "ftp://127.0.0.1/x", "not an http");
	REFUSED(url, "file:///etc/passwd", "not an http");
	REFUSED(method, "GE T", "not an HTTP method");
	REFUSED(method, "", "not an HTTP method");
	REFUSED(done, NULL, "done callback");
	memset(&o, 0, sizeof(o));
	o.url = url("/echo");
	o.done = on_done;
	o.headers = bad_value;
	o.nheaders = 1;
	CHECK(http_request_new(c, &o, &err) == NULL);
	CHECK(strstr(err.message, "line break") != NULL);
	o.headers = bad_name;
	CHECK(http_request_new(c, &o, &err) == NULL);
	CHECK(strstr(err.message, "not a valid HTTP header name") != NULL);
	CHECK_INT(http_client_queued(c) + http_client_in_flight(c), 0);
	CHECK_INT(r.done, 0);
	http_client_free(c);
}

static void
test_streamed_upload_and_download(void)
{
	struct http_client *c = http_client_new(base, 4);
	struct result *known = calloc(1, sizeof(*known)), *chunked = calloc(1, sizeof(*chunked));
	struct http_opts o;
	struct source *s;

	/* known size: Content-Length; unknown: chunked */
	memset(&o, 0, sizeof(o));
	o.method = "PUT";
	o.url = url("/echo");
	o.read = source_read;
	o.seek = source_seek;
	o.body_size = 40000;
	s = &known->src;
	s->total = 40000;
	start(c, &o, known);
	o.method = "POST";
	o.body_size = -1;
	s = &chunked->src;
	s->total = 40000;
	start(c, &o, chunked);
	CHECK_INT(pending, 2);
	CHECK_INT(known->done + chunked->done, 0);	/* never from inside http_request_new */
	CHECK_INT(run(10), 0);
	CHECK_INT(known->status, 200);
	CHECK_INT(known->body_len, 40000);
	CHECK_STR(known->chunked, "no");
	CHECK_INT(chunked->status, 200);
	CHECK_INT(chunked->body_len, 40000);
	CHECK_STR(chunked->chunked, "yes");
	for (size_t i = 0; i < 40000; i++) {
		if (known->body[i] != (char)('a' + i % 26) || chunked->body[i] != known->body[i]) {
			CHECK(!"the echoed body differs");
			break;
		}
	}
	free(known);
	free(chunked);
	http_client_free(c);
}

static void
test_sink_pause_and_headers(void)
{
	struct http_client *c = http_client_new(base, 4);
	struct result *r = calloc(1, sizeof(*r)), *missing = calloc(1, sizeof(*missing));
	struct http_opts o;
	struct http_request *req;

	memset(&o, 0, sizeof(o));
	o.url = url("/big?n=30000");
	o.write = sink;
	o.on_headers = headers;
	r->pause_once = 1;
	req = start(c, &o, r);
	CHECK(req != NULL);
	/* paused on its first write; unpaused once that happened */
	for (int i = 0; i < 200 && r->writes == 0; i++)
		event_base_loop(base, EVLOOP_ONCE);
	CHECK_INT(r->writes, 1);
	CHECK_INT(r->sunk_len, 0);
	for (int i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(r->done, 0);		/* stays paused */
	http_request_unpause(req);
	CHECK_INT(run(10), 0);
	CHECK_INT(r->done, 1);
	CHECK_INT(r->headers_calls, 1);
	CHECK_INT(r->status, 200);
	CHECK_INT(r->sunk_len, 30000);
	CHECK(memcmp(r->sunk, "0123456789", 10) == 0 && r->sunk[29999] == '9');
	CHECK_INT(r->body_len, 0);	/* streamed, not kept */

	/* an error answer's body goes to memory, not to the sink */
	o.url = url("/nothing-here");
	missing->to_memory = 1;
	start(c, &o, missing);
	CHECK_INT(run(10), 0);
	CHECK_INT(missing->status, 404);
	CHECK_INT(missing->writes, 0);
	CHECK_INT(missing->body_len, 7);
	CHECK(memcmp(missing->body, "missing", 7) == 0);

	/* abandoned on its headers */
	memset(missing, 0, sizeof(*missing));
	missing->abort_in_headers = 1;
	o.url = url("/big?n=10");
	start(c, &o, missing);
	CHECK_INT(run(10), 0);
	CHECK_STR(missing->kind, "protocol");
	CHECK(strstr(missing->message, "abandoned on its headers") != NULL);
	CHECK_INT(missing->writes, 0);

	/* a sink's max_size */
	memset(missing, 0, sizeof(*missing));
	o.url = url("/big?n=20000");
	o.on_headers = NULL;
	o.max_size = 5000;
	start(c, &o, missing);
	CHECK_INT(run(10), 0);
	CHECK_STR(missing->kind, "protocol");
	CHECK(strstr(missing->message, "max_size") != NULL);
	free(r);
	free(missing);
	http_client_free(c);
}

static void
test_queue_bound(void)
{
	struct http_client *c = http_client_new(base, 2);
	struct result *r = calloc(6, sizeof(*r));
	struct http_opts o;

	srv_max_active = 0;
	memset(&o, 0, sizeof(o));
	o.url = url("/slow");
	for (int i = 0; i < 6; i++)
		start(c, &o, &r[i]);
	CHECK_INT(http_client_in_flight(c), 2);
	CHECK_INT(http_client_queued(c), 4);
	CHECK_INT(run(10), 0);
	for (int i = 0; i < 6; i++) {
		CHECK_INT(r[i].status, 200);
		CHECK_INT(r[i].body_len, 9);
	}
	CHECK_INT(srv_max_active, 2);
	CHECK_INT(http_client_in_flight(c) + http_client_queued(c), 0);
	free(r);
	http_client_free(c);
}

static void
test_queue_timeout_abort_and_cancel(void)
{
	struct http_client *c = http_client_new(base, 1);
	struct result *hung = calloc(1, sizeof(*hung)), *waiting = calloc(1, sizeof(*waiting));
	struct result *other = calloc(1, sizeof(*other));
	struct http_opts o;
	struct http_request *req;

	memset(&o, 0, sizeof(o));
	o.url = url("/never");
	o.timeout = 30;
	req = start(c, &o, hung);
	o.timeout = 0.3;
	start(c, &o, waiting);
	pending = 1;		/* only the queued one is to end */
	CHECK_INT(run(5), 0);
	CHECK_STR(waiting->kind, "timeout");
	CHECK(strstr(waiting->message, "requests in flight") != NULL);
	CHECK_INT(hung->done, 0);

	/* aborted from outside: DONE gets that error */
	http_request_abort(req, "timeout", "given up by the test");
	CHECK_INT(hung->done, 0);	/* from the loop, not from inside the call */
	pending = 1;
	CHECK_INT(run(5), 0);
	CHECK_STR(hung->message, "given up by the test");

	free(hung);
	free(waiting);
	free(other);
	http_client_free(c);
}

static void
test_cancel_from_callbacks(void)
{
	struct http_client *c = http_client_new(base, 1);
	struct result *self = calloc(1, sizeof(*self)), *killer = calloc(1, sizeof(*killer));
	struct result *victim = calloc(1, sizeof(*victim)), *after = calloc(1, sizeof(*after));
	struct http_opts o;
	struct http_request *a, *b;

	/* its own write callback cancels it: no DONE, the client goes on */
	memset(&o, 0, sizeof(o));
	o.url = url("/big?n=60000");
	o.write = sink;
	self->cancel_self_in_write = 1;
	start(c, &o, self);
	CHECK_INT(run(5), 0);
	CHECK_INT(self->writes, 1);
	for (int i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	CHECK_INT(self->done, 0);
	CHECK_INT(http_client_in_flight(c) + http_client_queued(c), 0);

	/* a DONE cancels a queued request */
	memset(&o, 0, sizeof(o));
	o.url = url("/big?n=10");
	a = start(c, &o, killer);
	o.url = url("/never");
	b = start(c, &o, victim);
	CHECK(a && b);
	killer->victim = b;
	CHECK_INT(http_client_queued(c), 1);
	CHECK_INT(run(5), 0);
	CHECK_INT(killer->done, 1);
	CHECK_INT(victim->done, 0);
	CHECK_INT(http_client_in_flight(c) + http_client_queued(c), 0);

	/* cancelled in flight from outside, and while queued */
	memset(killer, 0, sizeof(*killer));
	o.url = url("/never");
	a = start(c, &o, killer);
	b = start(c, &o, victim);
	for (int i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	http_request_cancel(b);
	http_request_cancel(a);
	pending -= 2;
	CHECK_INT(http_client_in_flight(c) + http_client_queued(c), 0);

	/* a request body that cannot be read */
	memset(&o, 0, sizeof(o));
	o.method = "PUT";
	o.url = url("/echo");
	o.read = source_read;
	o.body_size = 40000;
	after->src.total = 40000;
	after->src.fail_at_half = 1;
	start(c, &o, after);
	CHECK_INT(run(5), 0);
	CHECK_STR(after->kind, "protocol");
	CHECK(strstr(after->message, "could not be read") != NULL);
	CHECK_INT(victim->done, 0);
	free(self);
	free(killer);
	free(victim);
	free(after);
	http_client_free(c);
}

/* A 307 makes curl send the body again: in memory, or rewound by SEEK. */
static void
test_body_resent_after_307(void)
{
	struct http_client *c = http_client_new(base, 4);
	struct result *mem = calloc(1, sizeof(*mem)), *streamed = calloc(1, sizeof(*streamed));
	struct http_opts o;

	memset(&o, 0, sizeof(o));
	o.method = "POST";
	o.url = url("/307");
	o.body = "the body, twice";
	o.body_len = strlen(o.body);
	start(c, &o, mem);
	o.body = NULL;
	o.body_len = 0;
	o.read = source_read;
	o.seek = source_seek;
	o.body_size = 3000;
	streamed->src.total = 3000;
	start(c, &o, streamed);
	CHECK_INT(run(10), 0);
	CHECK_INT(mem->status, 200);
	CHECK_INT(mem->body_len, 15);
	CHECK(memcmp(mem->body, "the body, twice", 15) == 0);
	CHECK_INT(streamed->status, 200);
	CHECK_INT(streamed->body_len, 3000);
	CHECK_INT(streamed->src.seeks, 1);
	CHECK(streamed->body[0] == 'a' && streamed->body[2999] == (char)('a' + 2999 % 26));
	free(mem);
	free(streamed);
	http_client_free(c);
}

int
main(void)
{
	base = event_base_new();
	start_server();
	RUN(test_helpers);
	RUN(test_bad_options);
	RUN(test_streamed_upload_and_download);
	RUN(test_sink_pause_and_headers);
	RUN(test_queue_bound);
	RUN(test_queue_timeout_abort_and_cancel);
	RUN(test_cancel_from_callbacks);
	RUN(test_body_resent_after_307);
	evhttp_free(server);
	event_base_free(base);
	DONE();
}

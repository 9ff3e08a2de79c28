/*
 * The HTTP client: libcurl's multi socket interface on libevent. curl tells
 * us which sockets to watch (socket_cb) and when to call it back (timer_cb);
 * libevent calls curl_multi_socket_action, and finished transfers are read
 * with curl_multi_info_read. curl refuses to be re-entered from its own
 * callbacks, so anything that would (removing a transfer, adding one) is
 * done at once when we are outside curl and otherwise from a deferred event
 * (reap_ev) on the next loop turn.
 */
#include "http/client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "http/diagnose.h"
#include "log.h"
#include "net/tls.h"

#define DEFAULT_IN_FLIGHT 16
#define WARNED_MAX 256

enum req_state { RQ_QUEUED, RQ_ACTIVE, RQ_DONE };

struct rlist {
	struct http_request *head, *tail;
};

struct http_request {
	struct http_client *c;
	struct http_request *prev, *next;	/* in c->queue or c->active */
	enum req_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct http_opts o;		/* callbacks and numbers; strings below */
	char *url, *method, *ca_file, *log_source;
	char *body;			/* the request body in memory */
	size_t body_len, body_off;
	char hostport[300];
	struct timespec created;
	struct event *queue_timer;

	/* the response */
	struct http_field *rh;
	size_t nrh, rh_cap, rh_bytes;
	char *rbody;
	size_t rlen, rcap;
	uint64_t rbytes, max_size;
	int to_memory, headers_seen;
	int unpause;			/* asked from inside curl: done by process */

	int cancelled;			/* ends without DONE */
	int reap;			/* ends at the next reap (cancelled or failed) */
	int failed;			/* ends with ERR, whatever curl says */
	struct net_error err;
	char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
	struct event_base *base;
	CURLM *multi;
	CURLSH *share;
	struct event *timer, *reap_ev;
	int max_in_flight, in_flight, queued;
	int busy;			/* inside curl: it must not be re-entered */
	struct rlist queue, active;
	char *warned[WARNED_MAX];	/* host:port whose insecure certificate was logged */
	int nwarned;
};

static void process(struct http_client *c);

/* ---- small helpers ------------------------------------------------------- */

static double
seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void
list_add(struct rlist *l, struct http_request *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static void
list_remove(struct rlist *l, struct http_request *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->prev = r->next = NULL;
}

static void
schedule_reap(struct http_client *c)
{
	event_active(c->reap_ev, EV_TIMEOUT, 0);
}

static void
wipe_free(char *s, size_t len)
{
	if (s) {
		explicit_bzero(s, len);
		free(s);
	}
}

static void
wipe_free_str(char *s)
{
	if (s)
		wipe_free(s, strlen(s));
}

/* RFC 9110 token characters (method and header names). */
static int
is_token(const char *s, size_t max)
{
	size_t n = 0;

	for (; *s; s++, n++) {
		unsigned char ch = (unsigned char)*s;
		if (n >= max || ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch))
			return 0;
	}
	return n > 0;
}

int
http_url_hostport(const char *url, char *buf, size_t len)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;
	int rc = -1;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && host[0] &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		snprintf(buf, len, "%.255s:%s", host, port);
		rc = 0;
	} else {
		snprintf(buf, len, "(invalid URL)");
	}
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return rc;
}

/* The scheme of URL if it is http or https (lower case), else NULL. */
static const char *
http_scheme(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL;
	const char *out = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK) {
		if (strcmp(scheme, "http") == 0)
			out = "http";
		else if (strcmp(scheme, "https") == 0)
			out = "https";
	}
	curl_free(scheme);
	curl_url_cleanup(u);
	return out;
}

static void
req_fail(struct http_request *r, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
req_fail(struct http_request *r, const char *kind, const char *fmt, ...)
{
	va_list ap;

	if (r->failed)
		return;
	r->failed = 1;
	snprintf(r->err.kind, sizeof(r->err.kind), "%s", kind);
	va_start(ap, fmt);
	vsnprintf(r->err.message, sizeof(r->err.message), fmt, ap);
	va_end(ap);
}

/* ---- the response as it arrives ----------------------------------------- */

static void
clear_response_headers(struct http_request *r)
{
	for (size_t i = 0; i < r->nrh; i++)
		wipe_free((char *)r->rh[i].name, strlen(r->rh[i].name) + 1 + strlen(r->rh[i].value));
	r->nrh = 0;
	r->rh_bytes = 0;
}

/* One header, stored as "name\0value\0" in one allocation. */
static int
add_header(struct http_request *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
	char *mem;

	if (r->nrh == r->rh_cap) {
		size_t cap = r->rh_cap ? r->rh_cap * 2 : 16;
		struct http_field *n = realloc(r->rh, cap * sizeof(*n));
		if (n == NULL)
			return -1;
		r->rh = n;
		r->rh_cap = cap;
	}
	if ((mem = malloc(nlen + vlen + 2)) == NULL)
		return -1;
	memcpy(mem, name, nlen);
	mem[nlen] = '\0';
	memcpy(mem + nlen + 1, value, vlen);
	mem[nlen + 1 + vlen] = '\0';
	r->rh[r->nrh].name = mem;
	r->rh[r->nrh].value = mem + nlen + 1;
	r->nrh++;
	return 0;
}

/* An obsolete folded line continues the previous header's value. */
static int
continue_header(struct http_request *r, const char *more, size_t mlen)
{
	struct http_field *f = &r->rh[r->nrh - 1];
	size_t nlen = strlen(f->name), vlen = strlen(f->value);
	char *mem = realloc((char *)f->name, nlen + vlen + mlen + 3);

	if (mem == NULL)
		return -1;
	mem[nlen + 1 + vlen] = ' ';
	memcpy(mem + nlen + 2 + vlen, more, mlen);
	mem[nlen + 2 + vlen + mlen] = '\0';
	f->name = mem;
	f->value = mem + nlen + 1;
	return 0;
}

static int
is_space(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Every header line of every response (interim ones, redirects, the final
 * one); a status line starts the next response's set. */
static size_t
header_cb(char *data, size_t size, size_t n, void *ud)
{
	struct http_request *r = ud;
	size_t len = size * n, end = len, i = 0, colon;

	if (r->cancelled || r->failed)
		return 0;
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		clear_response_headers(r);
		return len;
	}
	r->rh_bytes += len;
	if (r->rh_bytes > HTTP_MAX_HEADER_BYTES) {
		req_fail(r, "protocol", "%s sent more than %d KiB of response headers",
		    r->hostport, HTTP_MAX_HEADER_BYTES >> 10);
		return 0;
	}
	while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == '\r'))
		end--;
	if (end == 0)
		return len;	/* the blank line ending a header block */
	if (is_space(data[0])) {
		while (i < end && is_space(data[i]))
			i++;
		while (end > i && is_space(data[end - 1]))
			end--;
		if (r->nrh > 0 && continue_header(r, data + i, end - i) < 0)
			goto nomem;
		return len;
	}
	for (colon = 0; colon < end && data[colon] != ':'; colon++)
		;
	if (colon == end || colon == 0)
		return len;	/* not a header: ignored */
	i = colon + 1;
	while (i < end && is_space(data[i]))
		i++;
	while (end > i && is_space(data[end - 1]))
		end--;
	if (add_header(r, data, colon, data + i, end - i) < 0)
		goto nomem;
	return len;
nomem:
	req_fail(r, "protocol", "out of memory reading the response from %s", r->hostport);
	return 0;
}

/* After redirects, messages name the server that failed or answered. */
static void
refresh_hostport(struct http_request *r)
{
	char *url = NULL;

	if (curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url &&
	    http_scheme(url) != NULL)
		http_url_hostport(url, r->hostport, sizeof(r->hostport));
}

static void
fill_response(struct http_request *r, struct http_response *res)
{
	long status = 0, redirects = 0;
	char *url = NULL;
	double total = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
	curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_COUNT, &redirects);
	curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME, &total);
	memset(res, 0, sizeof(*res));
	res->status = status;
	res->headers = r->rh;
	res->nheaders = r->nrh;
	res->effective_url = url ? url : r->url;
	res->hostport = r->hostport;
	res->redirects = (int)redirects;
	res->seconds = total;
	res->body_bytes = r->rbytes;
	if (r->to_memory) {
		res->body = r->rbody ? r->rbody : "";
		res->body_len = r->rlen;
	}
}

/* The final response's headers are complete: the first body byte is here,
 * or the transfer ended without a body. */
static int
report_headers(struct http_request *r, int with_body)
{
	curl_off_t cl = -1;
	struct http_response res;
	int rc;

	r->headers_seen = 1;
	refresh_hostport(r);
	if (r->o.on_headers) {
		fill_response(r, &res);
		rc = r->o.on_headers(r, &res, r->o.ud);
		if (rc == HTTP_CB_TO_MEMORY) {
			r->to_memory = 1;
			if (r->max_size == 0)
				r->max_size = HTTP_DEFAULT_MAX_SIZE;
		} else if (rc != HTTP_CB_OK) {
			req_fail(r, "protocol", "the request to %s was abandoned on its headers",
			    r->hostport);
			return -1;
		}
	}
	if (!with_body)
		return 0;	/* a HEAD's Content-Length is not what it sends */
	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
	if (cl > 0 && r->max_size && (uint64_t)cl > r->max_size) {
		req_fail(r, "protocol", "the response from %s is %lld bytes, more than the "
		    "%llu allowed (max_size)", r->hostport, (long long)cl,
		    (unsigned long long)r->max_size);
		return -1;
	}
	if (r->to_memory && cl > 0 && r->rcap == 0) {
		r->rcap = (size_t)cl + 1;
		if ((r->rbody = malloc(r->rcap)) == NULL)
			r->rcap = 0;
	}
	return 0;
}

static int
append_body(struct http_request *r, const char *data, size_t len)
{
	if (r->rlen + len + 1 > r->rcap) {
		size_t cap = r->rcap ? r->rcap : 16384;
		char *n;
		while (cap < r->rlen + len + 1)
			cap *= 2;
		if (r->max_size && cap > r->max_size + 1)
			cap = (size_t)r->max_size + 1;
		if ((n = realloc(r->rbody, cap)) == NULL)
			return -1;
		r->rbody = n;
		r->rcap = cap;
	}
	memcpy(r->rbody + r->rlen, data, len);
	r->rlen += len;
	r->rbody[r->rlen] = '\0';
	return 0;
}

static size_t
write_cb(char *data, size_t size, size_t n, void *ud)
{
	struct http_request *r = ud;
	size_t len = size * n;
	int rc;

	if (r->cancelled || r->failed)
		return 0;
	if (!r->headers_seen && report_headers(r, 1) < 0)
		return 0;
	if (r->max_size && r->rbytes + len > r->max_size) {
		req_fail(r, "protocol", "the response from %s is larger than the %llu bytes "
		    "allowed (max_size)", r->hostport, (unsigned long long)r->max_size);
		return 0;
	}
	if (r->to_memory) {
		if (append_body(r, data, len) < 0) {
			req_fail(r, "protocol", "out of memory reading the response from %s",
			    r->hostport);
			return 0;
		}
	} else {
		rc = r->o.write(r, data, len, r->o.ud);
		if (rc == HTTP_CB_PAUSE)
			return CURL_WRITEFUNC_PAUSE;	/* curl offers the same bytes again */
		if (rc != HTTP_CB_OK || r->failed || r->cancelled) {
			req_fail(r, "protocol", "the receiver of the response from %s gave up",
			    r->hostport);
			return 0;
		}
	}
	r->rbytes += len;
	return len;
}

/* ---- the request body --------------------------------------------------- */

static size_t
read_cb(char *buf, size_t size, size_t n, void *ud)
{
	struct http_request *r = ud;
	size_t len = size * n;
	ssize_t got;

	if (r->cancelled || r->failed)
		return CURL_READFUNC_ABORT;
	if (r->o.read == NULL) {
		size_t left = r->body_len - r->body_off;
		if (len > left)
			len = left;
		memcpy(buf, r->body + r->body_off, len);
		r->body_off += len;
		return len;
	}
	got = r->o.read(r, buf, len, r->o.ud);
	if (got == HTTP_CB_PAUSE)
		return CURL_READFUNC_PAUSE;
	if (got < 0 || (size_t)got > len || r->failed || r->cancelled) {
		req_fail(r, "protocol", "the request body for %s could not be read", r->hostport);
		return CURL_READFUNC_ABORT;
	}
	return (size_t)got;
}

static int
seek_cb(void *ud, curl_off_t offset, int origin)
{
	struct http_request *r = ud;

	if (origin != SEEK_SET || offset < 0)
		return CURL_SEEKFUNC_CANTSEEK;
	if (r->o.read == NULL) {
		if ((size_t)offset > r->body_len)
			return CURL_SEEKFUNC_FAIL;
		r->body_off = (size_t)offset;
		return CURL_SEEKFUNC_OK;
	}
	if (r->o.seek == NULL)
		return CURL_SEEKFUNC_CANTSEEK;
	return r->o.seek(r, (uint64_t)offset, r->o.ud) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

/* ---- errors --------------------------------------------------------------- */

static void
classify(struct http_request *r, CURLcode code)
{
	struct http_diag d = { r->hostport, r->ca_file, seconds_since(&r->created),
	    r->o.stall_timeout, r->o.max_redirects };

	r->failed = 1;
	http_diagnose_failure(r->easy, code, r->errbuf, &d, &r->err);
}

/* With allow_insecure, says once per host:port why its certificate would
 * have been refused, and its fingerprint, as the IMAP side does. */
static void
note_insecure(struct http_request *r)
{
	struct http_client *c = r->c;
	const char *reason;
	char fp[TLS_FINGERPRINT_MAX];

	if (!r->o.allow_insecure || c->nwarned >= WARNED_MAX)
		return;
	for (int i = 0; i < c->nwarned; i++)
		if (strcmp(c->warned[i], r->hostport) == 0)
			return;
	if (http_diagnose_insecure(r->easy, r->hostport, &reason, fp, sizeof(fp)) < 0)
		return;		/* plain http, or a connection already noted */
	if (reason)
		log_warn(r->log_source, "accepting the certificate of %s although %s "
		    "(allow_insecure_cert = true); sha256 fingerprint %s", r->hostport, reason, fp);
	else
		log_info(r->log_source, "the certificate of %s is valid; it is not checked "
		    "(allow_insecure_cert = true); sha256 fingerprint %s", r->hostport, fp);
	if ((c->warned[c->nwarned] = strdup(r->hostport)) != NULL)
		c->nwarned++;
}

/* ---- the life of a request ---------------------------------------------- */

static void
free_request(struct http_request *r)
{
	if (r->queue_timer)
		event_free(r->queue_timer);
	if (r->easy)
		curl_easy_cleanup(r->easy);
	for (struct curl_slist *s = r->hdrs; s; s = s->next)
		explicit_bzero(s->data, strlen(s->data));	/* may hold a token */
	curl_slist_free_all(r->hdrs);
	wipe_free(r->body, r->body_len);
	wipe_free_str(r->url);
	free(r->method);
	free(r->ca_file);
	free(r->log_source);
	clear_response_headers(r);
	free(r->rh);
	wipe_free(r->rbody, r->rcap);
	free(r);
}

/* Takes R out of curl and the client's lists; calls DONE unless cancelled;
 * frees R. Only outside curl (busy == 0). curl keeps what getinfo reports
 * until the handle is freed. */
static void
end_request(struct http_request *r, CURLcode code)
{
	struct http_client *c = r->c;
	struct http_response res;
	int was_active = r->state == RQ_ACTIVE;

	if (was_active) {
		list_remove(&c->active, r);
		c->in_flight--;
		curl_multi_remove_handle(c->multi, r->easy);	/* stops a transfer under way */
	} else {
		list_remove(&c->queue, r);
		c->queued--;
	}
	r->state = RQ_DONE;
	if (r->cancelled) {
		free_request(r);
		return;
	}
	if (was_active) {
		refresh_hostport(r);
		if (!r->failed && code != CURLE_OK)
			classify(r, code);
		note_insecure(r);
		if (!r->failed && !r->headers_seen)
			report_headers(r, 0);
	}
	if (r->failed) {
		log_debug(r->log_source, "http %s %s failed kind=%s", r->method, r->hostport,
		    r->err.kind);
		r->o.done(r, NULL, &r->err, r->o.ud);
	} else {
		fill_response(r, &res);
		log_debug(r->log_source, "http %s %s status=%ld bytes=%llu redirects=%d seconds=%.3f",
		    r->method, r->hostport, res.status, (unsigned long long)res.body_bytes,
		    res.redirects, res.seconds);
		r->o.done(r, &res, NULL, r->o.ud);
	}
	free_request(r);
}

static void
queue_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_request *r = arg;

	(void)fd;
	(void)what;
	http_request_abort(r, "timeout", "the request to %s waited %.1f s for one of the %d "
	    "requests in flight to end (timeout)", r->hostport, seconds_since(&r->created),
	    r->c->in_flight);
}

/* Hands queued requests to curl while there is room. Failures are ended
 * by the next reap, never here (callers may not expect DONE). */
static void
pump(struct http_client *c)
{
	struct http_request *r, *next;

	for (r = c->queue.head; r && c->in_flight < c->max_in_flight; r = next) {
		next = r->next;
		if (r->reap)
			continue;
		if (r->o.timeout > 0) {
			double left = r->o.timeout - seconds_since(&r->created);
			if (left <= 0.001) {
				http_request_abort(r, "timeout", "the request to %s waited %.1f s "
				    "in the queue (timeout)", r->hostport, seconds_since(&r->created));
				continue;
			}
			curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)(left * 1000));
		}
		if (r->queue_timer)
			evtimer_del(r->queue_timer);
		list_remove(&c->queue, r);
		c->queued--;
		list_add(&c->active, r);
		c->in_flight++;
		r->state = RQ_ACTIVE;
		if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
			/* not in curl: ended by the reap as if queued */
			list_remove(&c->active, r);
			c->in_flight--;
			list_add(&c->queue, r);
			c->queued++;
			r->state = RQ_QUEUED;
			http_request_abort(r, "protocol", "cannot start the request to %s",
			    r->hostport);
		}
	}
}

static struct http_request *
first_to_reap(struct rlist *l)
{
	for (struct http_request *r = l->head; r; r = r->next)
		if (r->reap)
			return r;
	return NULL;
}

/* Ends what curl finished, what was cancelled or failed, resumes what was
 * unpaused from inside curl, and starts what the queue holds. Only outside
 * curl. A DONE may cancel other requests, so no list pointer is kept
 * across one. */
static void
process(struct http_client *c)
{
	struct http_request *r;
	CURLMsg *msg;
	int left;

	if (c->busy)
		return;
	while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		CURLcode code = msg->data.result;
		if (msg->msg != CURLMSG_DONE)
			continue;
		r = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r)
			end_request(r, code);
	}
	while ((r = first_to_reap(&c->active)) != NULL || (r = first_to_reap(&c->queue)) != NULL)
		end_request(r, CURLE_ABORTED_BY_CALLBACK);
	for (r = c->active.head; r; r = r->next) {
		if (r->unpause) {
			r->unpause = 0;
			c->busy++;
			curl_easy_pause(r->easy, CURLPAUSE_CONT);
			c->busy--;
			schedule_reap(c);	/* what it finished is read next turn */
		}
	}
	pump(c);
}

/* ---- curl <-> libevent -------------------------------------------------- */

static void
socket_action(struct http_client *c, curl_socket_t fd, int action)
{
	int running;

	c->busy++;
	curl_multi_socket_action(c->multi, fd, action, &running);
	c->busy--;
	process(c);
}

static void
sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	int action = 0;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	socket_action(arg, fd, action);
}

static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct http_client *c = userp;
	struct event *ev = socketp;
	short kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (ev)
			event_free(ev);
		return 0;
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	    ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (ev == NULL) {
		if ((ev = event_new(c->base, s, kind, sock_event_cb, c)) == NULL)
			return -1;
		curl_multi_assign(c->multi, s, ev);
	} else {
		event_del(ev);
		event_assign(ev, c->base, s, kind, sock_event_cb, c);
	}
	event_add(ev, NULL);
	return 0;
}

static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int
timer_cb(CURLM *multi, long ms, void *userp)
{
	struct http_client *c = userp;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	(void)multi;
	if (ms < 0)
		evtimer_del(c->timer);
	else
		evtimer_add(c->timer, &tv);
	return 0;
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	process(arg);
}

/* ---- the client ---------------------------------------------------------- */

struct http_client *
http_client_new(struct event_base *base, int max_in_flight)
{
	struct http_client *c = calloc(1, sizeof(*c));
	const curl_version_info_data *vi;

	if (c == NULL)
		return NULL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(c);
		return NULL;
	}
	vi = curl_version_info(CURLVERSION_NOW);
	if (!(vi->features & CURL_VERSION_ASYNCHDNS))
		log_warn(NULL, "libcurl %s resolves host names synchronously: a slow DNS "
		    "server stalls the engine during HTTP requests", vi->version);
	c->base = base;
	c->max_in_flight = max_in_flight > 0 ? max_in_flight : DEFAULT_IN_FLIGHT;
	c->multi = curl_multi_init();
	c->share = curl_share_init();
	c->timer = evtimer_new(base, timeout_cb, c);
	c->reap_ev = event_new(base, -1, 0, reap_cb, c);
	if (c->multi == NULL || c->share == NULL || c->timer == NULL || c->reap_ev == NULL) {
		http_client_free(c);
		return NULL;
	}
	/* TLS sessions are resumed across requests (each has its own handle). */
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	return c;
}

void
http_client_free(struct http_client *c)
{
	struct http_request *r;

	if (c == NULL)
		return;
	while ((r = c->active.head) != NULL) {
		list_remove(&c->active, r);
		curl_multi_remove_handle(c->multi, r->easy);
		free_request(r);
	}
	while ((r = c->queue.head) != NULL) {
		list_remove(&c->queue, r);
		free_request(r);
	}
	if (c->multi)
		curl_multi_cleanup(c->multi);	/* closes cached connections (socket_cb) */
	if (c->share)
		curl_share_cleanup(c->share);
	if (c->timer)
		event_free(c->timer);
	if (c->reap_ev)
		event_free(c->reap_ev);
	for (int i = 0; i < c->nwarned; i++)
		free(c->warned[i]);
	curl_global_cleanup();
	free(c);
}

int
http_client_in_flight(const struct http_client *c)
{
	return c->in_flight;
}

int
http_client_queued(const struct http_client *c)
{
	return c->queued;
}

/* ---- building a request --------------------------------------------------- */

static int
add_line(struct curl_slist **list, const char *line)
{
	struct curl_slist *n = curl_slist_append(*list, line);

	if (n == NULL)
		return -1;
	*list = n;
	return 0;
}

static int
build_headers(struct http_request *r, const struct http_opts *o, struct net_error *err)
{
	int has_expect = 0;

	for (size_t i = 0; i < o->nheaders; i++) {
		const char *name = o->headers[i].name, *value = o->headers[i].value;
		size_t len;
		char *line;
		int rc;

		if (name == NULL || !is_token(name, 256)) {
			net_error_set(err, "config", "header name \"%.60s\" is not a valid HTTP "
			    "header name", name ? name : "(null)");
			return -1;
		}
		if (value == NULL)
			value = "";
		if (strpbrk(value, "\r\n")) {
			net_error_set(err, "config", "the value of header %s holds a line break",
			    name);
			return -1;
		}
		if (strcasecmp(name, "Expect") == 0)
			has_expect = 1;
		len = strlen(name) + strlen(value) + 3;
		if ((line = malloc(len)) == NULL)
			goto nomem;
		/* "Name;" is how curl is told to send a header with no value. */
		if (value[0])
			snprintf(line, len, "%s: %s", name, value);
		else
			snprintf(line, len, "%s;", name);
		rc = add_line(&r->hdrs, line);
		wipe_free(line, len);
		if (rc < 0)
			goto nomem;
	}
	/* curl waits up to a second for "100 Continue" before larger bodies;
	 * only when asked for. */
	if (!has_expect && add_line(&r->hdrs, "Expect:") < 0)
		goto nomem;
	return 0;
nomem:
	net_error_set(err, "config", "out of memory");
	return -1;
}

static int
set_body(struct http_request *r, int has_body, curl_off_t size)
{
	CURL *e = r->easy;
	const char *m = r->method;

	if (strcmp(m, "HEAD") == 0)
		return curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK ? 0 : -1;
	if (!has_body) {
		if (strcmp(m, "GET") == 0)
			return 0;
		if (strcmp(m, "POST") == 0) {
			curl_easy_setopt(e, CURLOPT_POST, 1L);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
			return 0;
		}
		if (strcmp(m, "PUT") == 0) {
			curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
		}
		return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m) == CURLE_OK ? 0 : -1;
	}
	curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(e, CURLOPT_READDATA, r);
	curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_cb);
	curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
	if (strcmp(m, "POST") == 0) {
		/* A real POST, so that a 303 turns it into a GET as it should. */
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, size);
		return 0;
	}
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, size);
	if (strcmp(m, "PUT") != 0 &&
	    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m) != CURLE_OK)
		return -1;
	return 0;
}

static int
configure(struct http_request *r, const struct http_opts *o, struct net_error *err)
{
	CURL *e = r->easy;
	double connect = o->connect_timeout > 0 ? o->connect_timeout : HTTP_DEFAULT_CONNECT_TIMEOUT;
	int has_body = o->body != NULL || o->read != NULL;
	curl_off_t size = o->read ? (curl_off_t)o->body_size : (curl_off_t)o->body_len;
	CURLcode rc = CURLE_OK;

	if (o->timeout > 0 && connect > o->timeout)
		connect = o->timeout;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_PRIVATE, (char *)r);
	SET(CURLOPT_ERRORBUFFER, r->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	/* Cancelling while a name is resolved must not wait for the resolver thread. */
	SET(CURLOPT_QUICK_EXIT, 1L);
	SET(CURLOPT_SHARE, r->c->share);
	SET(CURLOPT_USERAGENT, "MyEmailVault/" EMAILVAULT_VERSION);
	SET(CURLOPT_HTTPHEADER, r->hdrs);
	SET(CURLOPT_HEADERFUNCTION, header_cb);
	SET(CURLOPT_HEADERDATA, r);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, r);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(connect * 1000));
	if (o->timeout > 0)
		SET(CURLOPT_TIMEOUT_MS, (long)(o->timeout * 1000));
	if (o->stall_timeout > 0) {
		SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
		SET(CURLOPT_LOW_SPEED_TIME, (long)(o->stall_timeout + 0.999));
	}
	if (o->max_redirects == HTTP_NO_REDIRECTS) {
		SET(CURLOPT_FOLLOWLOCATION, 0L);
	} else {
		SET(CURLOPT_FOLLOWLOCATION, 1L);
		SET(CURLOPT_MAXREDIRS, (long)r->o.max_redirects);
	}
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (r->ca_file)
		SET(CURLOPT_CAINFO, r->ca_file);
	if (o->allow_insecure) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
		SET(CURLOPT_CERTINFO, 1L);	/* for note_insecure */
	}
#undef SET
	if (rc != CURLE_OK || set_body(r, has_body, size) < 0) {
		net_error_set(err, "config", "cannot set up the request to %s: %s", r->hostport,
		    curl_easy_strerror(rc));
		return -1;
	}
	return 0;
}

struct http_request *
http_request_new(struct http_client *c, const struct http_opts *o, struct net_error *err)
{
	struct http_request *r;
	const char *method = o->method ? o->method : "GET";

	if (o->url == NULL || http_scheme(o->url) == NULL) {
		net_error_set(err, "config", "not an http:// or https:// URL");
		return NULL;
	}
	if (!is_token(method, 32)) {
		net_error_set(err, "config", "\"%.40s\" is not an HTTP method", method);
		return NULL;
	}
	if (o->done == NULL || (o->read && o->body)) {
		net_error_set(err, "config", "an HTTP request needs a done callback and at most "
		    "one kind of body");
		return NULL;
	}
	if (strcmp(method, "HEAD") == 0 && (o->body || o->read)) {
		net_error_set(err, "config", "a HEAD request has no body");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL)
		goto nomem;
	r->c = c;
	r->o = *o;
	r->o.headers = NULL;
	r->o.nheaders = 0;
	r->o.body = NULL;
	if (r->o.max_redirects == 0)
		r->o.max_redirects = HTTP_DEFAULT_REDIRECTS;
	r->to_memory = o->write == NULL;
	r->max_size = o->max_size ? o->max_size : r->to_memory ? HTTP_DEFAULT_MAX_SIZE : 0;
	clock_gettime(CLOCK_MONOTONIC, &r->created);
	http_url_hostport(o->url, r->hostport, sizeof(r->hostport));
	r->url = strdup(o->url);
	r->method = strdup(method);
	r->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
	r->log_source = o->log_source ? strdup(o->log_source) : NULL;
	if (r->url == NULL || r->method == NULL || (o->ca_file && r->ca_file == NULL) ||
	    (o->log_source && r->log_source == NULL))
		goto nomem_free;
	if (o->body) {
		r->body_len = o->body_len;
		if ((r->body = malloc(o->body_len ? o->body_len : 1)) == NULL)
			goto nomem_free;
		memcpy(r->body, o->body, o->body_len);
	}
	if ((r->easy = curl_easy_init()) == NULL)
		goto nomem_free;
	if (build_headers(r, o, err) < 0 || configure(r, o, err) < 0) {
		free_request(r);
		return NULL;
	}
	if (o->timeout > 0) {
		struct timeval tv = { (time_t)o->timeout,
		    (suseconds_t)((o->timeout - (double)(time_t)o->timeout) * 1e6) };
		if ((r->queue_timer = evtimer_new(c->base, queue_timeout_cb, r)) == NULL)
			goto nomem_free;
		evtimer_add(r->queue_timer, &tv);
	}
	r->state = RQ_QUEUED;
	list_add(&c->queue, r);
	c->queued++;
	if (c->busy)
		schedule_reap(c);	/* curl may not be re-entered: start it next turn */
	else
		pump(c);
	return r;
nomem_free:
	free_request(r);
nomem:
	net_error_set(err, "config", "out of memory");
	return NULL;
}

void
http_request_cancel(struct http_request *r)
{
	struct http_client *c = r->c;

	if (r->state == RQ_DONE || r->cancelled)
		return;
	r->cancelled = 1;
	r->reap = 1;
	if (c->busy)
		schedule_reap(c);	/* curl's callbacks see cancelled and stop */
	else {
		end_request(r, CURLE_OK);
		schedule_reap(c);	/* a slot is free for the queue */
	}
}

void
http_request_abort(struct http_request *r, const char *kind, const char *fmt, ...)
{
	va_list ap;

	if (r->state == RQ_DONE || r->cancelled)
		return;
	if (!r->failed) {
		r->failed = 1;
		snprintf(r->err.kind, sizeof(r->err.kind), "%s", kind);
		va_start(ap, fmt);
		vsnprintf(r->err.message, sizeof(r->err.message), fmt, ap);
		va_end(ap);
	}
	r->reap = 1;
	schedule_reap(r->c);
}

void
http_request_unpause(struct http_request *r)
{
	if (r->state == RQ_DONE || r->cancelled)
		return;
	r->unpause = 1;		/* a queued request starts unpaused anyway */
	if (r->state == RQ_QUEUED)
		r->unpause = 0;
	schedule_reap(r->c);
}

void *
http_request_ud(const struct http_request *r)
{
	return r->o.ud;
}

const char *
http_request_hostport(const struct http_request *r)
{
	return r->hostport;
}

const char *
http_response_header(const struct http_response *res, const char *name)
{
	for (size_t i = 0; i < res->nheaders; i++)
		if (strcasecmp(res->headers[i].name, name) == 0)
			return res->headers[i].value;
	return NULL;
}

#ifndef EMAILVAULT_HTTP_CLIENT_H
#define EMAILVAULT_HTTP_CLIENT_H
/*
 * HTTP and HTTPS requests on libcurl's multi socket interface, driven by the
 * libevent loop: nothing here blocks the loop (host names are resolved by
 * curl's threaded resolver). A client holds the connection and TLS session
 * caches and a bound on requests in flight; further requests wait in a queue,
 * in order. A request is options plus callbacks. It ends exactly once: DONE
 * is called with the response or an error (unless the request is cancelled),
 * and the client frees the request when DONE returns.
 *
 * URLs may carry secrets (user:password@, tokens in the query, a webhook's
 * path): this module never logs a URL nor puts one in an error; messages
 * name host:port only.
 *
 * The callbacks run from the loop. Inside any of them a caller may start
 * requests, cancel or abort any request (its own too) and unpause, but must
 * not free the client.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/error.h"

struct event_base;
struct http_client;
struct http_request;

struct http_field {
	const char *name;
	const char *value;
};

/* What the server answered: the final response after redirects. */
struct http_response {
	long status;
	const struct http_field *headers;	/* in order received; names as sent */
	size_t nheaders;
	const char *body;		/* kept in memory (NUL-terminated), else NULL */
	size_t body_len;
	uint64_t body_bytes;		/* bytes of body received, to memory or a sink */
	const char *effective_url;	/* after redirects: may hold secrets, never log it */
	const char *hostport;		/* host:port of effective_url: safe to show */
	int redirects;			/* redirects followed */
	double seconds;			/* from the start of the transfer */
};

/* Returned by the streaming callbacks. */
#define HTTP_CB_OK			0
#define HTTP_CB_ABORT		(-1)	/* end the request with an error (http_request_abort's, or a generic one) */
#define HTTP_CB_PAUSE		(-2)	/* stop this direction until http_request_unpause */
#define HTTP_CB_TO_MEMORY	1	/* from on_headers: keep this response's body in memory, not in the sink */

/* The request body, streamed: up to LEN bytes into BUF; returns how many,
 * 0 at the end, HTTP_CB_ABORT or HTTP_CB_PAUSE. */
typedef ssize_t (*http_read_fn)(struct http_request *req, char *buf, size_t len, void *ud);
/* Rewinds the streamed body to OFFSET (curl resends it after a 307/308
 * redirect or when a reused connection turns out dead): 0 or -1. */
typedef int (*http_seek_fn)(struct http_request *req, uint64_t offset, void *ud);
/* The response body, streamed: HTTP_CB_OK, HTTP_CB_ABORT or HTTP_CB_PAUSE. */
typedef int (*http_write_fn)(struct http_request *req, const char *data, size_t len, void *ud);
/* The final response's status and headers (RES has no body yet), called
 * once before its first body byte, or before DONE when it has none:
 * HTTP_CB_OK, HTTP_CB_ABORT or HTTP_CB_TO_MEMORY. */
typedef int (*http_headers_fn)(struct http_request *req, const struct http_response *res, void *ud);
/* The end: RES when the server answered (any status), else ERR with one of
 * the kinds dns, refused, timeout, tls, certificate, protocol, config. Both
 * are valid only during the call. */
typedef void (*http_done_fn)(struct http_request *req, const struct http_response *res,
    const struct net_error *err, void *ud);

#define HTTP_DEFAULT_REDIRECTS	5
#define HTTP_NO_REDIRECTS	(-1)
#define HTTP_DEFAULT_MAX_SIZE	((uint64_t)16 << 20)
#define HTTP_DEFAULT_CONNECT_TIMEOUT 30.0
#define HTTP_MAX_HEADER_BYTES	(256 << 10)	/* one response's header block */

struct http_opts {
	const char *method;		/* "GET" when NULL; "HEAD" reads no body */
	const char *url;		/* http:// or https:// only */
	const struct http_field *headers;	/* sent as given (an empty value too); they replace
					 * curl's own (User-Agent, Accept); no Expect unless given */
	size_t nheaders;

	/* The request body: in memory (copied), or streamed by READ; none
	 * when both are NULL. BODY_SIZE is the streamed body's length, or -1
	 * for unknown (chunked transfer coding). */
	const void *body;
	size_t body_len;
	http_read_fn read;
	http_seek_fn seek;
	int64_t body_size;

	/* The response body goes to WRITE, or to memory when it is NULL.
	 * MAX_SIZE bounds it either way (0: HTTP_DEFAULT_MAX_SIZE in memory,
	 * no bound for a sink); more ends the request with kind protocol. */
	http_write_fn write;
	http_headers_fn on_headers;
	uint64_t max_size;

	double timeout;			/* the whole request, queue included; 0 = none */
	double connect_timeout;		/* 0 = HTTP_DEFAULT_CONNECT_TIMEOUT */
	double stall_timeout;		/* fail when no byte moves for this long; 0 = never */
	int max_redirects;		/* 0 = HTTP_DEFAULT_REDIRECTS; HTTP_NO_REDIRECTS returns the 3xx */

	/* TLS: 1.2 or newer; the system's trust store, or only CA_FILE's.
	 * ALLOW_INSECURE accepts any certificate and logs why it would have
	 * been refused, with its fingerprint (once per host:port). */
	const char *ca_file;
	int allow_insecure;

	const char *log_source;		/* log lines go under this source id (or NULL) */
	http_done_fn done;
	void *ud;			/* given to every callback */
};

/* A client on BASE with at most MAX_IN_FLIGHT transfers at once (<= 0: 16). */
struct http_client *http_client_new(struct event_base *base, int max_in_flight);
/* Ends every request without calling its DONE. Not from a callback. */
void http_client_free(struct http_client *c);
int http_client_in_flight(const struct http_client *c);
int http_client_queued(const struct http_client *c);

/* Starts the request, or queues it. NULL with ERR (kind config) for options
 * that cannot work (not an http/https URL, a method or header that is not
 * well-formed, no DONE); DONE is never called from inside this call. */
struct http_request *http_request_new(struct http_client *c, const struct http_opts *o,
    struct net_error *err);
/* Ends REQ now: its transfer stops, DONE is not called, REQ is freed (from
 * inside REQ's own callbacks: once they return). No-op inside DONE. */
void http_request_cancel(struct http_request *req);
/* Ends REQ with this error: DONE is called with it, from the loop. */
void http_request_abort(struct http_request *req, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Resumes a transfer paused by HTTP_CB_PAUSE (both directions). */
void http_request_unpause(struct http_request *req);
void *http_request_ud(const struct http_request *req);
/* host:port of the server REQ talks to (its URL's, or a redirect's once
 * followed), safe to log. */
const char *http_request_hostport(const struct http_request *req);

/* The first header NAME (case-insensitive) of RES, or NULL. */
const char *http_response_header(const struct http_response *res, const char *name);

/* "host:port" of URL into BUF (the port made explicit, no user, path or
 * query); -1 and "(invalid URL)" when URL cannot be parsed. */
int http_url_hostport(const char *url, char *buf, size_t len);

#endif

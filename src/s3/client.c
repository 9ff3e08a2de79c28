#include "s3/client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "s3/sigv4.h"
#include "s3/xml.h"

#define DEFAULT_PART		((uint64_t)8 << 20)
#define DEFAULT_THRESHOLD	((uint64_t)16 << 20)
#define MAX_ERROR_BODY		(64 * 1024)	/* an error document is small */
#define MAX_LIST_BODY		(8 << 20)
#define MAX_PARTS		10000		/* S3's limit */

struct s3_client {
	char *endpoint;			/* scheme://authority, no trailing slash */
	char *authority;		/* host[:port] as in the endpoint */
	char *region, *bucket, *prefix, *access_key, *secret_key, *ca_file;
	int path_style;
	uint64_t part_size, threshold;
	int max_parallel, max_retries;
	long timeout_ms;
	CURL *easy;			/* reused: its connection stays open */
	uint64_t requests;
};

/* One request and what came back. */
struct req {
	const char *method;
	const char *key;		/* full key (prefix included); NULL: the bucket */
	const struct sigv4_pair *query;
	size_t nquery;
	const char *extra[4];		/* "Name: value" lines, signed too */
	/* body: memory, or a range of a file */
	const char *mem;
	int fd;
	uint64_t off, len;
	char payload[65];
	uint64_t sent;
	/* response */
	long status;
	char etag[130];
	uint64_t content_length;
	int sink_fd;			/* GET into a file, else memory */
	char *body;
	size_t body_len, body_cap, body_max;
	uint64_t received;
	long wire_status;		/* from the status line, for the body callback */
	int too_big, sink_failed;
	/* curl state for one attempt */
	struct curl_slist *headers;
	char *url, *auth;
	char curl_err[CURL_ERROR_SIZE];
};

/* ---- small helpers ----------------------------------------------------- */

static void
set_err(struct s3_error *err, const char *kind, long status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
set_err(struct s3_error *err, const char *kind, long status, const char *code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	snprintf(err->kind, sizeof(err->kind), "%s", kind);
	err->status = status;
	snprintf(err->code, sizeof(err->code), "%s", code ? code : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

static char *
dupz(const char *s)
{
	return strdup(s ? s : "");
}

static void
free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the client -------------------------------------------------------- */

struct s3_client *
s3_client_new(const struct s3_config *cfg, struct s3_error *err)
{
	struct s3_client *c;
	const char *ep = cfg->endpoint, *auth, *slash;

	if (ep == NULL || (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)) {
		set_err(err, "config", 0, NULL, "the endpoint must start with http:// or https://");
		return NULL;
	}
	if (cfg->bucket == NULL || !*cfg->bucket || cfg->access_key == NULL ||
	    cfg->secret_key == NULL) {
		set_err(err, "config", 0, NULL, "bucket, access_key and secret_key are required");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		set_err(err, "storage", 0, NULL, "out of memory");
		return NULL;
	}
	auth = strstr(ep, "://") + 3;
	slash = strchr(auth, '/');
	c->authority = slash ? strndup(auth, (size_t)(slash - auth)) : strdup(auth);
	c->endpoint = c->authority ? malloc((size_t)(auth - ep) + strlen(c->authority) + 1) : NULL;
	if (c->endpoint)
		sprintf(c->endpoint, "%.*s%s", (int)(auth - ep), ep, c->authority);
	c->region = dupz(cfg->region && *cfg->region ? cfg->region : "us-east-1");
	c->bucket = dupz(cfg->bucket);
	c->prefix = dupz(cfg->prefix);
	c->access_key = dupz(cfg->access_key);
	c->secret_key = dupz(cfg->secret_key);
	c->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
	c->path_style = cfg->path_style;
	c->part_size = cfg->part_size ? cfg->part_size : DEFAULT_PART;
	c->threshold = cfg->multipart_threshold ? cfg->multipart_threshold : DEFAULT_THRESHOLD;
	if (c->threshold < c->part_size)
		c->threshold = c->part_size;
	c->max_parallel = cfg->max_parallel > 0 ? cfg->max_parallel : 4;
	c->max_retries = cfg->max_retries > 0 ? cfg->max_retries : 5;
	c->timeout_ms = (long)((cfg->timeout > 0 ? cfg->timeout : 120.0) * 1000);
	c->easy = curl_easy_init();
	if (c->authority == NULL || c->endpoint == NULL || c->region == NULL || c->bucket == NULL ||
	    c->prefix == NULL || c->access_key == NULL || c->secret_key == NULL || c->easy == NULL ||
	    (cfg->ca_file && c->ca_file == NULL)) {
		s3_client_free(c);
		set_err(err, "storage", 0, NULL, "out of memory");
		return NULL;
	}
	return c;
}

void
s3_client_free(struct s3_client *c)
{
	if (c == NULL)
		return;
	if (c->easy)
		curl_easy_cleanup(c->easy);
	free(c->endpoint);
	free(c->authority);
	free(c->region);
	free(c->bucket);
	free(c->prefix);
	free_secret(c->access_key);
	free_secret(c->secret_key);
	free(c->ca_file);
	free(c);
}

const char *
s3_client_hostport(const struct s3_client *c)
{
	return c->authority;
}

uint64_t
s3_client_requests(const struct s3_client *c)
{
	return c->requests;
}

/* ---- one attempt ------------------------------------------------------- */

static size_t
on_header(char *line, size_t size, size_t n, void *ud)
{
	struct req *r = ud;
	size_t len = size * n;

	if (len > 5 && strncasecmp(line, "ETag:", 5) == 0) {
		const char *v = line + 5;
		size_t vl = len - 5;
		while (vl && (*v == ' ' || *v == '\t'))
			v++, vl--;
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"')
			v++, vl -= 2;
		snprintf(r->etag, sizeof(r->etag), "%.*s", (int)vl, v);
	} else if (len > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
		r->content_length = strtoull(line + 15, NULL, 10);
	} else if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
		const char *sp = memchr(line, ' ', len);
		r->etag[0] = '\0';	/* a new response (after a 100 Continue) */
		r->content_length = 0;
		r->wire_status = sp ? strtol(sp + 1, NULL, 10) : 0;
	}
	return len;
}

static size_t
on_body(char *data, size_t size, size_t n, void *ud)
{
	struct req *r = ud;
	size_t len = size * n;

	r->received += len;
	if (r->sink_fd >= 0 && r->wire_status / 100 == 2) {
		for (size_t off = 0; off < len;) {
			ssize_t w = write(r->sink_fd, data + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				r->sink_failed = errno ? errno : EIO;
				return 0;
			}
			off += (size_t)w;
		}
		return len;
	}
	size_t max = r->wire_status / 100 == 2 ? r->body_max : MAX_ERROR_BODY;
	if (r->body_len + len > max) {
		r->too_big = 1;
		return 0;
	}
	if (r->body_len + len + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		while (cap < r->body_len + len + 1)
			cap *= 2;
		char *grown = realloc(r->body, cap);
		if (grown == NULL) {
			r->too_big = 1;
			return 0;
		}
		r->body = grown;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return len;
}

static size_t
on_read(char *buf, size_t size, size_t n, void *ud)
{
	struct req *r = ud;
	size_t want = size * n;
	uint64_t left = r->len - r->sent;

	if (want > left)
		want = (size_t)left;
	if (want == 0)
		return 0;
	if (r->mem) {
		memcpy(buf, r->mem + r->sent, want);
	} else {
		ssize_t got;
		do
			got = pread(r->fd, buf, want, (off_t)(r->off + r->sent));
		while (got < 0 && errno == EINTR);
		if (got <= 0)
			return CURL_READFUNC_ABORT;
		want = (size_t)got;
	}
	r->sent += want;
	return want;
}

static int
on_seek(void *ud, curl_off_t offset, int origin)
{
	struct req *r = ud;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->sent = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* Tests: EMAILVAULT_S3_CLOCK_SKEW=SECONDS signs as if the clock were
 * that far off (the server's RequestTimeTooSkewed without faking time). */
static long
clock_skew(void)
{
	const char *s = getenv("EMAILVAULT_S3_CLOCK_SKEW");

	return s && *s ? strtol(s, NULL, 10) : 0;
}

/* The request's path, as signed: "/bucket/key" or "/key". */
static char *
request_path(struct s3_client *c, const struct req *r)
{
	size_t n = strlen(c->bucket) + (r->key ? strlen(r->key) : 0) + 3;
	char *p = malloc(n);

	if (p == NULL)
		return NULL;
	if (c->path_style)
		snprintf(p, n, "/%s%s%s", c->bucket, r->key ? "/" : "", r->key ? r->key : "");
	else
		snprintf(p, n, "/%s", r->key ? r->key : "");
	return p;
}

static void
attempt_reset(struct req *r)
{
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	free(r->url);
	r->url = NULL;
	free_secret(r->auth);
	r->auth = NULL;
	r->status = r->wire_status = 0;
	r->etag[0] = '\0';
	r->content_length = 0;
	r->body_len = 0;
	if (r->body)
		r->body[0] = '\0';
	r->received = r->sent = 0;
	r->too_big = r->sink_failed = 0;
	r->curl_err[0] = '\0';
}

/* Signs R for now and sets EASY up for it. 0, or -1 (out of memory). */
/* A request body read from R (and read again from its start on a retry). */
static void
body_from(CURL *easy, struct req *r)
{
	curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(easy, CURLOPT_READDATA, r);
	curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_seek);
	curl_easy_setopt(easy, CURLOPT_SEEKDATA, r);
}

static int
prepare(struct s3_client *c, CURL *easy, struct req *r)
{
	char date[17], host[600], line[700], *path, *epath, *query;
	struct sigv4_pair h[8];
	size_t nh = 0, ulen;

	attempt_reset(r);
	sigv4_amz_date(time(NULL) + clock_skew(), date);
	if (c->path_style)
		snprintf(host, sizeof(host), "%s", c->authority);
	else
		snprintf(host, sizeof(host), "%s.%s", c->bucket, c->authority);
	h[nh++] = (struct sigv4_pair){ "host", host };
	h[nh++] = (struct sigv4_pair){ "x-amz-content-sha256", r->payload };
	h[nh++] = (struct sigv4_pair){ "x-amz-date", date };
	char names[4][64];
	for (int i = 0; i < 4 && r->extra[i]; i++) {
		const char *colon = strchr(r->extra[i], ':');
		snprintf(names[i], sizeof(names[i]), "%.*s", (int)(colon - r->extra[i]), r->extra[i]);
		h[nh++] = (struct sigv4_pair){ names[i], colon + 1 };
	}
	if ((path = request_path(c, r)) == NULL)
		return -1;
	struct sigv4_input in = { r->method, path, r->query, r->nquery, h, nh, r->payload, date,
		c->region, "s3" };
	r->auth = sigv4_authorization(&in, c->access_key, c->secret_key);
	epath = sigv4_uri_encode(path, strlen(path), 1);
	query = sigv4_canonical_query(r->query, r->nquery);
	free(path);
	if (r->auth == NULL || epath == NULL || query == NULL)
		goto oom;
	ulen = strlen(c->endpoint) + strlen(c->bucket) + strlen(epath) + strlen(query) + 8;
	if ((r->url = malloc(ulen)) == NULL)
		goto oom;
	if (c->path_style) {
		snprintf(r->url, ulen, "%s%s%s%s", c->endpoint, epath, *query ? "?" : "", query);
	} else {
		const char *auth = strstr(c->endpoint, "://") + 3;
		snprintf(r->url, ulen, "%.*s%s.%s%s%s%s", (int)(auth - c->endpoint), c->endpoint,
		    c->bucket, c->authority, epath, *query ? "?" : "", query);
	}
	free(epath);
	free(query);
	epath = query = NULL;
	snprintf(line, sizeof(line), "Host: %s", host);
	r->headers = curl_slist_append(r->headers, line);
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", r->payload);
	r->headers = curl_slist_append(r->headers, line);
	snprintf(line, sizeof(line), "x-amz-date: %s", date);
	r->headers = curl_slist_append(r->headers, line);
	for (int i = 0; i < 4 && r->extra[i]; i++)
		r->headers = curl_slist_append(r->headers, r->extra[i]);
	r->headers = curl_slist_append(r->headers, "Expect:");	/* no 100-continue round trip */
	{
		size_t alen = strlen(r->auth) + 16;
		char *a = malloc(alen);
		if (a == NULL)
			goto oom;
		snprintf(a, alen, "Authorization: %s", r->auth);
		r->headers = curl_slist_append(r->headers, a);
		OPENSSL_cleanse(a, alen);
		free(a);
	}
	if (r->headers == NULL)
		goto oom;

	curl_easy_reset(easy);
	curl_easy_setopt(easy, CURLOPT_URL, r->url);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 30000L);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(easy, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(easy, CURLOPT_NOPROXY, "*");
	if (c->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, c->ca_file);
	if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->len);
		body_from(easy, r);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->len);
		body_from(easy, r);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, r->method);
	}
	return 0;
oom:
	free(epath);
	free(query);
	return -1;
}

static void
req_free(struct req *r)
{
	attempt_reset(r);
	free(r->body);
	r->body = NULL;
	r->body_cap = 0;
}

/* What the server's error document says, for people. */
static const char *
explain(const char *code)
{
	static const struct { const char *code, *what; } known[] = {
		{ "SignatureDoesNotMatch", "the secret key is wrong" },
		{ "InvalidAccessKeyId", "no such access key" },
		{ "NoSuchBucket", "no such bucket" },
		{ "RequestTimeTooSkewed", "this machine's clock is too far from the server's" },
		{ "AccessDenied", "the keys may not do this" },
		{ "XAmzContentSHA256Mismatch", "the bytes changed on the way" },
		{ "SlowDown", "the server asks to slow down" },
		{ "EntityTooSmall", "a multipart part is smaller than the server's minimum" },
		{ "PreconditionFailed", "the object exists already" },
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(code, known[i].code) == 0)
			return known[i].what;
	return NULL;
}

enum outcome { DONE_OK, RETRY, FAIL };

/* Classifies one attempt's end. */
static enum outcome
outcome(struct s3_client *c, struct req *r, CURLcode cc, struct s3_error *err)
{
	char code[64] = "", msg[300] = "";
	const char *why;

	if (cc != CURLE_OK) {
		const char *kind = "protocol";
		if (r->sink_failed) {
			set_err(err, "storage", 0, NULL, "cannot write what S3 at %s sent: %s",
			    c->authority, strerror(r->sink_failed));
			return FAIL;
		}
		if (r->too_big) {
			set_err(err, "protocol", r->wire_status, NULL, "S3 at %s sent more than expected",
			    c->authority);
			return FAIL;
		}
		switch (cc) {
		case CURLE_COULDNT_RESOLVE_HOST: kind = "dns"; break;
		case CURLE_COULDNT_CONNECT: kind = "refused"; break;
		case CURLE_OPERATION_TIMEDOUT: kind = "timeout"; break;
		case CURLE_SSL_CONNECT_ERROR: kind = "tls"; break;
		case CURLE_PEER_FAILED_VERIFICATION: kind = "certificate"; break;
		default: break;
		}
		set_err(err, kind, 0, NULL, "S3 at %s unreachable: %s", c->authority,
		    curl_easy_strerror(cc));
		/* a certificate or a name that does not resolve will not change */
		return strcmp(kind, "certificate") == 0 || cc == CURLE_SSL_CACERT_BADFILE ? FAIL : RETRY;
	}
	r->status = r->wire_status;
	if (r->status / 100 == 2)
		return DONE_OK;
	if (r->body)
		s3_xml_text(r->body, r->body_len, "Code", code, sizeof(code));
	if (r->body)
		s3_xml_text(r->body, r->body_len, "Message", msg, sizeof(msg));
	if (!*code && r->status == 404)
		snprintf(code, sizeof(code), "NoSuchKey");
	why = explain(code);
	set_err(err, "storage", r->status, code, "S3 at %s, bucket %s: %s (HTTP %ld%s%s)%s%s",
	    c->authority, c->bucket, why ? why : "the request was refused", r->status,
	    *code ? " " : "", code, *msg ? ": " : "", msg);
	if (r->status >= 500 || r->status == 408 || r->status == 429)
		return RETRY;
	return FAIL;
}

static long
backoff_ms(int attempt)
{
	long base = 100L << (attempt < 6 ? attempt : 6);

	return base / 2 + (long)((unsigned)rand() % (unsigned)(base / 2 + 1));
}

/* R, retried as it should be. 0 (any 2xx), or -1 with ERR (R->status says
 * which HTTP status, 0 for none). */
static int
perform(struct s3_client *c, struct req *r, struct s3_error *err)
{
	for (int attempt = 0;; attempt++) {
		if (prepare(c, c->easy, r) < 0) {
			set_err(err, "storage", 0, NULL, "out of memory");
			return -1;
		}
		c->requests++;
		CURLcode cc = curl_easy_perform(c->easy);
		enum outcome o = outcome(c, r, cc, err);
		if (o == DONE_OK)
			return 0;
		if (o == FAIL || attempt >= c->max_retries)
			return -1;
		sleep_ms(backoff_ms(attempt));
	}
}

static char *
full_key(struct s3_client *c, const char *key)
{
	size_t n = strlen(c->prefix) + strlen(key) + 1;
	char *k = malloc(n);

	if (k)
		snprintf(k, n, "%s%s", c->prefix, key);
	return k;
}

/* SHA-256 (hex, for the signature) and MD5 (hex, to check the ETag) of the
 * body. */
static int
hash_body(struct req *r, char md5hex[33])
{
	EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char buf[65536];
	int rc = -1;

	if (sha == NULL || md5 == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(md5, EVP_md5(), NULL) != 1)
		goto out;
	for (uint64_t done = 0; done < r->len;) {
		size_t k = r->len - done < sizeof(buf) ? (size_t)(r->len - done) : sizeof(buf);
		const void *p = buf;
		if (r->mem) {
			p = r->mem + done;
		} else {
			ssize_t got = pread(r->fd, buf, k, (off_t)(r->off + done));
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				goto out;
			k = (size_t)got;
		}
		EVP_DigestUpdate(sha, p, k);
		EVP_DigestUpdate(md5, p, k);
		done += k;
	}
	if (EVP_DigestFinal_ex(sha, md, &n) != 1)
		goto out;
	for (unsigned i = 0; i < 32; i++)
		snprintf(r->payload + 2 * i, 3, "%02x", md[i]);
	if (EVP_DigestFinal_ex(md5, md, &n) != 1)
		goto out;
	for (unsigned i = 0; i < 16; i++)
		snprintf(md5hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out:
	EVP_MD_CTX_free(sha);
	EVP_MD_CTX_free(md5);
	return rc;
}

/* An ETag that is a plain MD5 (single PUT, one part) must be the bytes'. */
static int
etag_matches(const char *etag, const char *md5hex)
{
	size_t n = strlen(etag);

	if (n != 32)
		return 1;	/* not an MD5 (encrypted, or the server's own form) */
	return strncasecmp(etag, md5hex, 32) == 0;
}

/* ---- operations -------------------------------------------------------- */

static int
put_body(struct s3_client *c, const char *key, struct req *r, int flags, struct s3_error *err)
{
	char md5hex[33];
	int rc;

	r->method = "PUT";
	r->key = key;
	r->sink_fd = -1;
	if (flags & S3_IF_NONE_MATCH)
		r->extra[0] = "If-None-Match: *";
	if (hash_body(r, md5hex) < 0) {
		set_err(err, "storage", 0, NULL, "cannot read what is to be stored: %s",
		    strerror(errno ? errno : EIO));
		return -1;
	}
	rc = perform(c, r, err);
	if (rc < 0 && r->status == 412 && (flags & S3_IF_NONE_MATCH))
		return 1;
	if (rc == 0 && !etag_matches(r->etag, md5hex)) {
		set_err(err, "storage", r->status, "BadDigest", "S3 at %s stored other bytes than sent "
		    "for %s (ETag %s, MD5 %s)", c->authority, key, r->etag, md5hex);
		return -1;
	}
	return rc;
}

int
s3_put(struct s3_client *c, const char *key, const void *data, size_t len, int flags,
    struct s3_error *err)
{
	struct req r = { 0 };
	char *k = full_key(c, key);
	int rc;

	if (k == NULL) {
		set_err(err, "storage", 0, NULL, "out of memory");
		return -1;
	}
	r.mem = data ? data : "";
	r.len = len;
	rc = put_body(c, k, &r, flags, err);
	req_free(&r);
	free(k);
	return rc;
}

static int multipart(struct s3_client *c, const char *key, int fd, uint64_t off, uint64_t len,
    struct s3_error *err);

int
s3_put_fd(struct s3_client *c, const char *key, int fd, uint64_t offset, uint64_t len,
    int flags, struct s3_error *err)
{
	struct req r = { 0 };
	char *k = full_key(c, key);
	int rc;

	if (k == NULL) {
		set_err(err, "storage", 0, NULL, "out of memory");
		return -1;
	}
	if (len > c->threshold) {
		/* multipart has no If-None-Match on every server: our keys are
		 * unique to one engine, so a check first is enough */
		if ((flags & S3_IF_NONE_MATCH) && (rc = s3_head(c, key, NULL, err)) != 1) {
			free(k);
			return rc == 0 ? 1 : -1;
		}
		rc = multipart(c, k, fd, offset, len, err);
	} else {
		r.fd = fd;
		r.off = offset;
		r.len = len;
		rc = put_body(c, k, &r, flags, err);
	}
	req_free(&r);
	free(k);
	return rc;
}

static int
get_into(struct s3_client *c, const char *key, uint64_t offset, uint64_t len, int fd,
    struct req *r, struct s3_error *err)
{
	char range[64];
	char *k = full_key(c, key);
	int rc;

	if (k == NULL) {
		set_err(err, "storage", 0, NULL, "out of memory");
		return -1;
	}
	r->method = "GET";
	r->key = k;
	r->sink_fd = fd;
	r->body_max = len ? (size_t)len : SIZE_MAX / 2;
	memcpy(r->payload, SIGV4_EMPTY_SHA256, 65);
	if (offset || len) {
		if (len)
			snprintf(range, sizeof(range), "Range: bytes=%llu-%llu",
			    (unsigned long long)offset, (unsigned long long)(offset + len - 1));
		else
			snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)offset);
		r->extra[0] = range;
	}
	rc = perform(c, r, err);
	free(k);
	if (rc < 0 && r->status == 404)
		return 1;
	return rc;
}

int
s3_get(struct s3_client *c, const char *key, uint64_t offset, uint64_t len, char **data,
    size_t *got, struct s3_error *err)
{
	struct req r = { 0 };
	int rc = get_into(c, key, offset, len, -1, &r, err);

	*data = NULL;
	*got = 0;
	if (rc == 0) {
		if (len && r.body_len != len) {
			set_err(err, "storage", r.status, NULL, "S3 at %s sent %zu bytes of %s, not %llu",
			    c->authority, r.body_len, key, (unsigned long long)len);
			rc = -1;
		} else {
			*data = r.body ? r.body : strdup("");
			*got = r.body_len;
			r.body = NULL;
			if (*data == NULL)
				rc = -1;
		}
	}
	req_free(&r);
	return rc;
}

int
s3_get_fd(struct s3_client *c, const char *key, int fd, uint64_t *got, struct s3_error *err)
{
	struct req r = { 0 };
	off_t start = lseek(fd, 0, SEEK_CUR);
	int rc;

	/* a retried GET starts over: the file goes back to where it was */
	for (int tries = 0;; tries++) {
		rc = get_into(c, key, 0, 0, fd, &r, err);
		if (rc != 0 || r.content_length == 0 || r.received == r.content_length || tries >= 2)
			break;
		if (lseek(fd, start, SEEK_SET) < 0 || ftruncate(fd, start) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && r.content_length && r.received != r.content_length) {
		set_err(err, "storage", r.status, NULL, "S3 at %s sent %s cut short", c->authority, key);
		rc = -1;
	}
	if (got)
		*got = r.received;
	req_free(&r);
	return rc;
}

/* A request without a body either way (HEAD, DELETE) on KEY; R keeps
 * the answer until bodyless_done. */
static int
bodyless(struct s3_client *c, const char *method, const char *key, struct req *r,
    struct s3_error *err)
{
	char *k = full_key(c, key);

	if (k == NULL) {
		set_err(err, "storage", 0, NULL, "out of memory");
		return -1;
	}
	r->method = method;
	r->key = k;
	r->sink_fd = -1;
	memcpy(r->payload, SIGV4_EMPTY_SHA256, 65);
	return perform(c, r, err);
}

static void
bodyless_done(struct req *r)
{
	req_free(r);
	free((char *)r->key);
}

int
s3_head(struct s3_client *c, const char *key, uint64_t *size, struct s3_error *err)
{
	struct req r = { 0 };
	int rc = bodyless(c, "HEAD", key, &r, err);

	if (rc < 0 && r.status == 404)
		rc = 1;
	if (rc == 0 && size)
		*size = r.content_length;
	bodyless_done(&r);
	return rc;
}

int
s3_delete(struct s3_client *c, const char *key, struct s3_error *err)
{
	struct req r = { 0 };
	int rc = bodyless(c, "DELETE", key, &r, err);

	if (rc < 0 && r.status == 404)
		rc = 0;
	bodyless_done(&r);
	return rc;
}

int
s3_list(struct s3_client *c, const char *prefix, int page, s3_list_fn fn, void *ud,
    struct s3_error *err)
{
	char *full = full_key(c, prefix ? prefix : ""), token[2048] = "", pagestr[16];
	size_t plen = strlen(c->prefix);
	int rc = 0;

	if (full == NULL) {
		set_err(err, "storage", 0, NULL, "out of memory");
		return -1;
	}
	snprintf(pagestr, sizeof(pagestr), "%d", page > 0 ? page : 1000);
	for (;;) {
		struct sigv4_pair q[4] = { { "list-type", "2" }, { "prefix", full },
			{ "max-keys", pagestr }, { "continuation-token", token } };
		struct req r = { 0 };
		char truncated[8], key[2048], size[32], etag[130];
		const char *inner;
		size_t ilen, pos = 0;

		r.method = "GET";
		r.query = q;
		r.nquery = *token ? 4 : 3;
		r.sink_fd = -1;
		r.body_max = MAX_LIST_BODY;
		memcpy(r.payload, SIGV4_EMPTY_SHA256, 65);
		if (perform(c, &r, err) < 0) {
			req_free(&r);
			rc = -1;
			break;
		}
		while (rc == 0 && r.body && s3_xml_next(r.body, r.body_len, "Contents", &pos, &inner,
		    &ilen)) {
			struct s3_object o;
			if (s3_xml_text(inner, ilen, "Key", key, sizeof(key)) != 1)
				continue;
			s3_xml_text(inner, ilen, "Size", size, sizeof(size));
			s3_xml_text(inner, ilen, "ETag", etag, sizeof(etag));
			if (strncmp(key, c->prefix, plen) != 0)
				continue;
			o.key = key + plen;
			o.size = strtoull(size, NULL, 10);
			o.etag = etag;
			rc = fn(&o, ud);
		}
		truncated[0] = '\0';
		if (r.body)
			s3_xml_text(r.body, r.body_len, "IsTruncated", truncated, sizeof(truncated));
		int more = strcmp(truncated, "true") == 0 && r.body &&
		    s3_xml_text(r.body, r.body_len, "NextContinuationToken", token, sizeof(token)) == 1 &&
		    *token;
		req_free(&r);
		if (rc != 0 || !more)
			break;
	}
	free(full);
	return rc;
}

int
s3_check(struct s3_client *c, struct s3_error *err)
{
	struct sigv4_pair q[3] = { { "list-type", "2" }, { "max-keys", "1" }, { "prefix", c->prefix } };
	struct req r = { 0 };
	int rc;

	r.method = "GET";
	r.query = q;
	r.nquery = 3;
	r.sink_fd = -1;
	r.body_max = MAX_LIST_BODY;
	memcpy(r.payload, SIGV4_EMPTY_SHA256, 65);
	rc = perform(c, &r, err);
	req_free(&r);
	return rc;
}

/* ---- multipart --------------------------------------------------------- */

struct part {
	struct req r;
	char md5[33];
	char qnum[16];
	struct sigv4_pair q[2];
	int attempt;
	long wait_until_ms;
	int done;
	CURL *easy;
};

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Sends every part, at most MAX_PARALLEL at once on a multi handle of
 * this call's own. 0, or -1 with ERR. */
static int
send_parts(struct s3_client *c, struct part *parts, size_t n, struct s3_error *err)
{
	CURLM *m = curl_multi_init();
	size_t next = 0, done = 0;
	int running = 0, rc = 0;
	size_t *queue = calloc(n, sizeof(*queue)), qhead = 0, qtail = 0;

	if (m == NULL || queue == NULL) {
		curl_multi_cleanup(m);
		free(queue);
		set_err(err, "storage", 0, NULL, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		queue[qtail++ % n] = i;
	while (done < n && rc == 0) {
		/* start what may start */
		while (running < c->max_parallel && qhead < qtail) {
			struct part *p = &parts[queue[qhead % n]];
			if (p->wait_until_ms > now_ms())
				break;
			qhead++;
			if ((p->easy == NULL && (p->easy = curl_easy_init()) == NULL) ||
			    prepare(c, p->easy, &p->r) < 0) {
				set_err(err, "storage", 0, NULL, "out of memory");
				rc = -1;
				break;
			}
			curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
			curl_multi_add_handle(m, p->easy);
			c->requests++;
			running++;
		}
		int still = 0;
		curl_multi_perform(m, &still);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct part *p;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&p);
			CURLcode cc = msg->data.result;
			curl_multi_remove_handle(m, p->easy);
			running--;
			enum outcome o = outcome(c, &p->r, cc, err);
			if (o == DONE_OK && !etag_matches(p->r.etag, p->md5)) {
				set_err(err, "storage", p->r.status, "BadDigest", "S3 at %s stored other "
				    "bytes than sent for part %s", c->authority, p->qnum);
				o = FAIL;
			}
			if (o == DONE_OK && !*p->r.etag) {
				set_err(err, "storage", p->r.status, NULL, "S3 at %s gave part %s no ETag",
				    c->authority, p->qnum);
				o = FAIL;
			}
			if (o == DONE_OK) {
				p->done = 1;
				done++;
			} else if (o == RETRY && p->attempt < c->max_retries) {
				p->wait_until_ms = now_ms() + backoff_ms(p->attempt++);
				queue[qtail++ % n] = (size_t)(p - parts);
			} else {
				rc = -1;
			}
		}
		if (done < n && rc == 0)
			curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	for (size_t i = 0; i < n; i++)
		if (parts[i].easy) {
			curl_multi_remove_handle(m, parts[i].easy);
			curl_easy_cleanup(parts[i].easy);
			parts[i].easy = NULL;
		}
	curl_multi_cleanup(m);
	free(queue);
	(void)next;
	return rc;
}

static int
multipart(struct s3_client *c, const char *key, int fd, uint64_t off, uint64_t len,
    struct s3_error *err)
{
	size_t n = (size_t)((len + c->part_size - 1) / c->part_size);
	struct sigv4_pair qc[1] = { { "uploads", "" } }, qu[1];
	struct req r = { 0 };
	struct part *parts = NULL;
	char upload[1024] = "";
	char *body = NULL;
	int rc = -1;

	if (n > MAX_PARTS) {
		set_err(err, "config", 0, NULL, "%llu bytes need more than %d parts: raise part_size",
		    (unsigned long long)len, MAX_PARTS);
		return -1;
	}
	/* create */
	r.method = "POST";
	r.key = key;
	r.query = qc;
	r.nquery = 1;
	r.sink_fd = -1;
	r.mem = "";
	r.body_max = MAX_ERROR_BODY;
	memcpy(r.payload, SIGV4_EMPTY_SHA256, 65);
	if (perform(c, &r, err) < 0)
		goto out;
	if (r.body == NULL || s3_xml_text(r.body, r.body_len, "UploadId", upload, sizeof(upload)) != 1 ||
	    !*upload) {
		set_err(err, "protocol", r.status, NULL, "S3 at %s started a multipart upload without "
		    "an UploadId", c->authority);
		goto out;
	}
	req_free(&r);
	/* parts */
	if ((parts = calloc(n, sizeof(*parts))) == NULL) {
		set_err(err, "storage", 0, NULL, "out of memory");
		goto abort;
	}
	for (size_t i = 0; i < n; i++) {
		struct part *p = &parts[i];
		snprintf(p->qnum, sizeof(p->qnum), "%zu", i + 1);
		p->q[0] = (struct sigv4_pair){ "partNumber", p->qnum };
		p->q[1] = (struct sigv4_pair){ "uploadId", upload };
		p->r.method = "PUT";
		p->r.key = key;
		p->r.query = p->q;
		p->r.nquery = 2;
		p->r.sink_fd = -1;
		p->r.fd = fd;
		p->r.off = off + i * c->part_size;
		p->r.len = i + 1 < n ? c->part_size : len - i * c->part_size;
		if (hash_body(&p->r, p->md5) < 0) {
			set_err(err, "storage", 0, NULL, "cannot read what is to be stored: %s",
			    strerror(errno ? errno : EIO));
			goto abort;
		}
	}
	if (send_parts(c, parts, n, err) < 0)
		goto abort;
	/* complete */
	{
		size_t cap = 128 + n * 200, used = 0;
		if ((body = malloc(cap)) == NULL) {
			set_err(err, "storage", 0, NULL, "out of memory");
			goto abort;
		}
		used += (size_t)snprintf(body + used, cap - used, "<CompleteMultipartUpload>");
		for (size_t i = 0; i < n; i++)
			used += (size_t)snprintf(body + used, cap - used, "<Part><PartNumber>%zu</PartNumber>"
			    "<ETag>\"%s\"</ETag></Part>", i + 1, parts[i].r.etag);
		used += (size_t)snprintf(body + used, cap - used, "</CompleteMultipartUpload>");
		qu[0] = (struct sigv4_pair){ "uploadId", upload };
		memset(&r, 0, sizeof(r));
		r.method = "POST";
		r.key = key;
		r.query = qu;
		r.nquery = 1;
		r.sink_fd = -1;
		r.mem = body;
		r.len = used;
		r.body_max = MAX_ERROR_BODY;
		sigv4_sha256_hex(body, used, r.payload);
		if (perform(c, &r, err) < 0)
			goto abort;
		/* S3 may answer 200 and then an error document */
		char code[64];
		if (r.body && s3_xml_text(r.body, r.body_len, "Code", code, sizeof(code)) == 1 &&
		    strstr(r.body, "<Error") != NULL) {
			set_err(err, "storage", r.status, code, "S3 at %s could not complete the upload of "
			    "%s (%s)", c->authority, key, code);
			goto abort;
		}
		if (r.body == NULL || strstr(r.body, "CompleteMultipartUploadResult") == NULL) {
			set_err(err, "protocol", r.status, NULL, "S3 at %s answered the completion of %s "
			    "with no result", c->authority, key);
			goto abort;
		}
	}
	rc = 0;
	goto out;
abort:
	{
		struct s3_error ignored;
		struct req a = { 0 };
		qu[0] = (struct sigv4_pair){ "uploadId", upload };
		req_free(&r);
		a.method = "DELETE";
		a.key = key;
		a.query = qu;
		a.nquery = 1;
		a.sink_fd = -1;
		memcpy(a.payload, SIGV4_EMPTY_SHA256, 65);
		perform(c, &a, &ignored);
		req_free(&a);
	}
out:
	if (parts)
		for (size_t i = 0; i < n; i++)
			req_free(&parts[i].r);
	free(parts);
	free(body);
	req_free(&r);
	return rc;
}

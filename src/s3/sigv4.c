#include "s3/sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>

/* A growing string; OOM is sticky and reported at the end. */
struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void
put(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *grown = realloc(b->p, cap);
		if (grown == NULL) {
			b->oom = 1;
			return;
		}
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

static char *
finish(struct buf *b)
{
	if (b->oom || b->p == NULL) {
		free(b->p);
		return b->oom ? NULL : strdup("");
	}
	return b->p;
}

static void
hex(const unsigned char *md, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[2 * n] = '\0';
}

void
sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
		out[0] = '\0';
		return;
	}
	hex(md, 32, out);
}

void
sigv4_amz_date(time_t t, char out[17])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static void
encode_into(struct buf *b, const char *s, size_t len, int keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && keep_slash)) {
			put(b, (const char *)&c, 1);
		} else {
			char e[3] = { '%', digits[c >> 4], digits[c & 15] };
			put(b, e, 3);
		}
	}
}

char *
sigv4_uri_encode(const char *s, size_t len, int keep_slash)
{
	struct buf b = { 0 };

	encode_into(&b, s, len, keep_slash);
	return finish(&b);
}

struct enc_pair {
	char *name, *value;
};

static int
cmp_pair(const void *a, const void *b)
{
	const struct enc_pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

char *
sigv4_canonical_query(const struct sigv4_pair *q, size_t n)
{
	struct enc_pair *e = n ? calloc(n, sizeof(*e)) : NULL;
	struct buf b = { 0 };

	if (n && e == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		e[i].name = sigv4_uri_encode(q[i].name, strlen(q[i].name), 0);
		e[i].value = sigv4_uri_encode(q[i].value ? q[i].value : "",
		    q[i].value ? strlen(q[i].value) : 0, 0);
		if (e[i].name == NULL || e[i].value == NULL)
			b.oom = 1;
	}
	if (!b.oom && n > 1)	/* E is NULL when N is 0 */
		qsort(e, n, sizeof(*e), cmp_pair);
	for (size_t i = 0; i < n && !b.oom; i++) {
		if (i)
			put(&b, "&", 1);
		puts_(&b, e[i].name);
		put(&b, "=", 1);
		puts_(&b, e[i].value);
	}
	for (size_t i = 0; i < n; i++) {
		free(e[i].name);
		free(e[i].value);
	}
	free(e);
	return finish(&b);
}

/* Headers lower-cased, values trimmed with inner runs of spaces made one,
 * sorted by name. */
struct canon_header {
	char *name, *value;
};

static int
cmp_header(const void *a, const void *b)
{
	return strcmp(((const struct canon_header *)a)->name, ((const struct canon_header *)b)->name);
}

static char *
trimmed(const char *v)
{
	struct buf b = { 0 };
	int space = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			space = 1;
			continue;
		}
		if (space && b.len)
			put(&b, " ", 1);
		space = 0;
		put(&b, v, 1);
	}
	return finish(&b);
}

static struct canon_header *
canon_headers(const struct sigv4_input *in)
{
	struct canon_header *h = calloc(in->nheaders ? in->nheaders : 1, sizeof(*h));
	int oom = h == NULL;

	for (size_t i = 0; !oom && i < in->nheaders; i++) {
		h[i].name = strdup(in->headers[i].name);
		h[i].value = trimmed(in->headers[i].value);
		if (h[i].name == NULL || h[i].value == NULL) {
			oom = 1;
			break;
		}
		for (char *p = h[i].name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	if (oom) {
		for (size_t i = 0; h && i < in->nheaders; i++) {
			free(h[i].name);
			free(h[i].value);
		}
		free(h);
		return NULL;
	}
	if (in->nheaders > 1)
		qsort(h, in->nheaders, sizeof(*h), cmp_header);
	return h;
}

static void
free_headers(struct canon_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
}

static void
signed_names(struct buf *b, const struct canon_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			put(b, ";", 1);
		puts_(b, h[i].name);
	}
}

char *
sigv4_canonical_request(const struct sigv4_input *in)
{
	struct canon_header *h = canon_headers(in);
	struct buf b = { 0 };
	char *q;

	if (h == NULL)
		return NULL;
	puts_(&b, in->method);
	put(&b, "\n", 1);
	encode_into(&b, in->path && *in->path ? in->path : "/",
	    in->path && *in->path ? strlen(in->path) : 1, 1);
	put(&b, "\n", 1);
	if ((q = sigv4_canonical_query(in->query, in->nquery)) == NULL)
		b.oom = 1;
	else
		puts_(&b, q);
	free(q);
	put(&b, "\n", 1);
	for (size_t i = 0; i < in->nheaders; i++) {
		puts_(&b, h[i].name);
		put(&b, ":", 1);
		puts_(&b, h[i].value);
		put(&b, "\n", 1);
	}
	put(&b, "\n", 1);
	signed_names(&b, h, in->nheaders);
	put(&b, "\n", 1);
	puts_(&b, in->payload_hash);
	free_headers(h, in->nheaders);
	return finish(&b);
}

static void
scope(struct buf *b, const struct sigv4_input *in)
{
	put(b, in->amz_date, 8);
	put(b, "/", 1);
	puts_(b, in->region);
	put(b, "/", 1);
	puts_(b, in->service);
	puts_(b, "/aws4_request");
}

char *
sigv4_string_to_sign(const struct sigv4_input *in, const char *canonical)
{
	struct buf b = { 0 };
	char h[65];

	if (strlen(in->amz_date) != 16)
		return NULL;
	sigv4_sha256_hex(canonical, strlen(canonical), h);
	puts_(&b, "AWS4-HMAC-SHA256\n");
	puts_(&b, in->amz_date);
	put(&b, "\n", 1);
	scope(&b, in);
	put(&b, "\n", 1);
	puts_(&b, h);
	return finish(&b);
}

static int
hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
	unsigned int n = 0;

	return HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out,
	    &n) != NULL && n == 32 ? 0 : -1;
}

int
sigv4_signing_key(const char *secret, const char *date8, const char *region,
    const char *service, unsigned char key[32])
{
	size_t slen = strlen(secret);
	char *k = malloc(slen + 5);
	char date[9];
	int rc;

	if (k == NULL)
		return -1;
	memcpy(k, "AWS4", 4);
	memcpy(k + 4, secret, slen + 1);
	snprintf(date, sizeof(date), "%.8s", date8);
	rc = hmac(k, slen + 4, date, key) < 0 || hmac(key, 32, region, key) < 0 ||
	    hmac(key, 32, service, key) < 0 || hmac(key, 32, "aws4_request", key) < 0 ? -1 : 0;
	OPENSSL_cleanse(k, slen + 4);
	free(k);
	return rc;
}

char *
sigv4_authorization(const struct sigv4_input *in, const char *access_key, const char *secret_key)
{
	char *canon = sigv4_canonical_request(in), *sts = NULL;
	struct canon_header *h = NULL;
	unsigned char key[32], sig[32];
	char sighex[65];
	struct buf b = { 0 };

	if (canon == NULL || (sts = sigv4_string_to_sign(in, canon)) == NULL ||
	    sigv4_signing_key(secret_key, in->amz_date, in->region, in->service, key) < 0 ||
	    hmac(key, 32, sts, sig) < 0 || (h = canon_headers(in)) == NULL) {
		OPENSSL_cleanse(key, sizeof(key));
		free(canon);
		free(sts);
		return NULL;
	}
	OPENSSL_cleanse(key, sizeof(key));
	hex(sig, 32, sighex);
	puts_(&b, "AWS4-HMAC-SHA256 Credential=");
	puts_(&b, access_key);
	put(&b, "/", 1);
	scope(&b, in);
	puts_(&b, ", SignedHeaders=");
	signed_names(&b, h, in->nheaders);
	puts_(&b, ", Signature=");
	puts_(&b, sighex);
	free_headers(h, in->nheaders);
	free(canon);
	free(sts);
	return finish(&b);
}
